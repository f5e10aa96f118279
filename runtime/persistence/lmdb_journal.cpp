#include "runtime/persistence/lmdb_journal.hpp"

#include <lmdb.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <functional>
#include <limits>
#include <mutex>
#include <new>
#include <optional>
#include <set>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <unordered_map>
#include <utility>
#include <variant>
#include <vector>

#include "runtime/core/log.hpp"
#include "runtime/persistence/file_preallocator.hpp"
#include "runtime/persistence/lmdb_error.hpp"

// On-disk layout (format "kontor-journal/2"), two LMDB environments per data directory:
//   <dir>/        the log environment, the truth: a group commit is fsynced before it is acknowledged
//     meta        "format" -> "kontor-journal/2", "shards" -> u32 BE
//     log         offset u64 BE (1, 2, 3, ... dense, commit order) -> record (written with MDB_APPEND)
//                 record = [version u8 = 1][shard u32 BE][seq u64 BE][written_at i64 BE]
//                          [id len u8][id][payload]
//     snapshots   [id len u8][id] -> [seq u64 BE][payload]
//   <dir>/index/  the index environment, derived from the log by the indexer thread, apart from
//                 the acknowledged commits (MDB_NOMETASYNC: an OS crash may lose its last commit)
//     meta        "format" -> "kontor-journal-index/1", "watermark" -> offset u64 BE: every log
//                 entry with offset <= watermark is in `index` (same commit as the entries)
//     index       [id len u8][id][seq u64 BE] -> offset u64 BE
// A shard's log is the log filtered by the shard in each record. A group commit writes only the
// log's tail pages; the index pages of its ids are written later, once per index commit for all
// the events of an interval. Committed entries above the watermark are in memory (the tail), so
// reads by id see every acknowledged append. The index can always be rebuilt from the log: a
// missing, corrupt or foreign one is deleted and rebuilt when the journal opens.

namespace kontor::persistence {

namespace {

namespace fs = std::filesystem;
using detail::lmdb_error;

constexpr std::string_view journal_format = "kontor-journal/2";
constexpr std::string_view index_format = "kontor-journal-index/1";
constexpr std::string_view format_key = "format";
constexpr std::string_view shards_key = "shards";
constexpr std::string_view watermark_key = "watermark";
constexpr const char* index_dir_name = "index";
constexpr const char* log_component = "journal";
constexpr std::uint8_t record_version = 1;
// Record header: version, shard, seq, written_at, id length; then the id and the payload.
constexpr std::size_t record_shard_at = 1;
constexpr std::size_t record_seq_at = record_shard_at + 4;
constexpr std::size_t record_time_at = record_seq_at + 8;
constexpr std::size_t record_id_size_at = record_time_at + 8;
constexpr std::size_t record_fixed_size = record_id_size_at + 1;
constexpr std::size_t index_value_size = 8; // offset
constexpr std::size_t max_id_size = 255;
constexpr std::size_t max_payload_size = std::numeric_limits<std::uint32_t>::max() - 1024;
constexpr std::uint32_t max_shards = 4096;
constexpr unsigned int max_readers = 512;
constexpr unsigned int max_log_dbs = 3;   // meta, log, snapshots
constexpr unsigned int max_index_dbs = 2; // meta, index
constexpr mdb_mode_t file_mode = 0644;
/// Log entries per index transaction: bounds the indexer's memory and the length of one commit.
constexpr std::size_t index_txn_entries = 20000;
/// How often a long index catch-up at open reports its progress.
constexpr std::chrono::seconds progress_every{2};
/// How long the indexer waits before it retries after a failed index commit.
constexpr std::chrono::seconds index_retry_delay{1};
/// The longest index interval accepted (longer ones would overflow the indexer's clock math).
constexpr std::chrono::hours max_index_interval{24};
/// Of a run of failed index commits, the first and then every this many are logged.
constexpr std::size_t index_failures_logged_every = 30;

// ---- byte encoding: big-endian, so LMDB's memcmp key order is numeric order ----

void store_be(char* p, std::uint64_t v, int bytes) noexcept {
  for (int i = bytes - 1; i >= 0; --i) {
    p[i] = static_cast<char>(v & 0xffu);
    v >>= 8;
  }
}

std::uint64_t load_be(const char* p, int bytes) noexcept {
  std::uint64_t v = 0;
  for (int i = 0; i < bytes; ++i)
    v = (v << 8) | static_cast<unsigned char>(p[i]);
  return v;
}

MDB_val to_val(std::string_view s) noexcept {
  return MDB_val{s.size(), const_cast<char*>(s.data())};
}

std::string_view to_view(const MDB_val& v) noexcept {
  return {static_cast<const char*>(v.mv_data), v.mv_size};
}

/// An 8-byte big-endian key or value (log offset) that an MDB_val can point to.
struct offset_key {
  char bytes[8];
  explicit offset_key(log_offset off) noexcept { store_be(bytes, off, 8); }
  MDB_val val() noexcept { return MDB_val{sizeof bytes, bytes}; }
};

/// Index keys [len][id][seq BE] and snapshot keys [len][id], built without allocating.
struct id_key {
  char bytes[1 + max_id_size + 8];
  std::size_t prefix_size;
  explicit id_key(std::string_view id) noexcept : prefix_size(1 + id.size()) {
    bytes[0] = static_cast<char>(static_cast<unsigned char>(id.size()));
    std::copy(id.begin(), id.end(), bytes + 1);
  }
  std::string_view prefix() const noexcept { return {bytes, prefix_size}; }
  MDB_val prefix_val() noexcept { return MDB_val{prefix_size, bytes}; }
  MDB_val with_seq(sequence_nr seq) noexcept {
    store_be(bytes + prefix_size, seq, 8);
    return MDB_val{prefix_size + 8, bytes};
  }
  /// The sequence number of `key` if it is an index key of this id.
  std::optional<sequence_nr> seq_of(const MDB_val& key) const noexcept {
    auto k = to_view(key);
    if (k.size() != prefix_size + 8 || k.substr(0, prefix_size) != prefix())
      return std::nullopt;
    return load_be(k.data() + prefix_size, 8);
  }
};

bool valid_id(std::string_view id) noexcept {
  return !id.empty() && id.size() <= max_id_size;
}

std::size_t record_size(std::string_view id, std::string_view payload) noexcept {
  return record_fixed_size + id.size() + payload.size();
}

/// Writes a log record into `out` (record_size(id, payload) bytes, reserved by LMDB).
void encode_record(char* out, shard_id shard, std::string_view id, sequence_nr seq, epoch_ms at,
                   std::string_view payload) noexcept {
  out[0] = static_cast<char>(record_version);
  store_be(out + record_shard_at, shard, 4);
  store_be(out + record_seq_at, seq, 8);
  store_be(out + record_time_at, static_cast<std::uint64_t>(at), 8);
  out[record_id_size_at] = static_cast<char>(static_cast<unsigned char>(id.size()));
  std::copy(id.begin(), id.end(), out + record_fixed_size);
  std::copy(payload.begin(), payload.end(), out + record_fixed_size + id.size());
}

/// The shard of a log record, read from its header alone; nullopt if the header is malformed.
std::optional<shard_id> record_shard(std::string_view rec, std::uint32_t shards) noexcept {
  if (rec.size() < record_fixed_size || static_cast<std::uint8_t>(rec[0]) != record_version)
    return std::nullopt;
  const auto shard = static_cast<shard_id>(load_be(rec.data() + record_shard_at, 4));
  if (shard >= shards)
    return std::nullopt;
  return shard;
}

/// Decodes a log record; false if it is not a well-formed version-1 record of a known shard.
bool decode_record(std::string_view rec, std::uint32_t shards, log_offset offset,
                   stored_event& out) {
  const auto shard = record_shard(rec, shards);
  if (!shard)
    return false;
  const std::size_t id_size = static_cast<unsigned char>(rec[record_id_size_at]);
  if (id_size == 0 || rec.size() < record_fixed_size + id_size)
    return false;
  out.persistence_id.assign(rec.substr(record_fixed_size, id_size));
  out.seq = load_be(rec.data() + record_seq_at, 8);
  out.shard = *shard;
  out.offset = offset;
  out.written_at = static_cast<epoch_ms>(load_be(rec.data() + record_time_at, 8));
  out.payload.assign(rec.substr(record_fixed_size + id_size));
  return true;
}

/// The offset after `off`, saturating: where a scan that examined `off` continues.
log_offset after(log_offset off) noexcept {
  return off == std::numeric_limits<log_offset>::max() ? off : off + 1;
}

/// At most 64 printable characters of `s`, for messages about unexpected on-disk values.
std::string printable(std::string_view s) {
  std::string out;
  for (char c : s.substr(0, 64))
    out.push_back(c >= 0x20 && c < 0x7f ? c : '?');
  if (s.size() > 64)
    out += "...";
  return out;
}

epoch_ms now_ms() noexcept {
  using namespace std::chrono;
  return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

/// The highest sequence number of the id in the index behind `cursor` (0 when none): seeks to
/// the first key after the id's last possible key and steps back.
int find_highest(MDB_cursor* cursor, id_key& key, sequence_nr& out) noexcept {
  out = 0;
  MDB_val k = key.with_seq(std::numeric_limits<sequence_nr>::max());
  MDB_val v;
  int rc = mdb_cursor_get(cursor, &k, &v, MDB_SET_RANGE);
  if (rc == MDB_SUCCESS) {
    if (auto seq = key.seq_of(k); seq && *seq == std::numeric_limits<sequence_nr>::max()) {
      out = *seq;
      return MDB_SUCCESS;
    }
    rc = mdb_cursor_get(cursor, &k, &v, MDB_PREV);
  } else if (rc == MDB_NOTFOUND) {
    rc = mdb_cursor_get(cursor, &k, &v, MDB_LAST); // past the end of the database
  }
  if (rc == MDB_NOTFOUND)
    return MDB_SUCCESS;
  if (rc != MDB_SUCCESS)
    return rc;
  out = key.seq_of(k).value_or(0);
  return MDB_SUCCESS;
}

/// The last offset of the log (0 when empty).
int find_log_end(MDB_cursor* cursor, log_offset& out) noexcept {
  out = 0;
  MDB_val k, v;
  int rc = mdb_cursor_get(cursor, &k, &v, MDB_LAST);
  if (rc == MDB_NOTFOUND)
    return MDB_SUCCESS;
  if (rc != MDB_SUCCESS)
    return rc;
  if (k.mv_size != 8)
    return MDB_CORRUPTED;
  out = load_be(static_cast<const char*>(k.mv_data), 8);
  return MDB_SUCCESS;
}

/// Aborts a transaction when leaving scope, unless released (committed or already ended).
class txn_guard {
public:
  explicit txn_guard(MDB_txn* txn) noexcept : txn_(txn) {}
  txn_guard(const txn_guard&) = delete;
  txn_guard& operator=(const txn_guard&) = delete;
  ~txn_guard() {
    if (txn_ != nullptr)
      mdb_txn_abort(txn_);
  }
  MDB_txn* get() const noexcept { return txn_; }
  MDB_txn* release() noexcept { return std::exchange(txn_, nullptr); }

private:
  MDB_txn* txn_;
};

/// Closes a read-only transaction's cursor (LMDB frees write-transaction cursors itself).
class read_cursor {
public:
  read_cursor() = default;
  read_cursor(const read_cursor&) = delete;
  read_cursor& operator=(const read_cursor&) = delete;
  ~read_cursor() {
    if (cursor_ != nullptr)
      mdb_cursor_close(cursor_);
  }
  int open(MDB_txn* txn, MDB_dbi dbi) noexcept { return mdb_cursor_open(txn, dbi, &cursor_); }
  MDB_cursor* get() const noexcept { return cursor_; }

private:
  MDB_cursor* cursor_ = nullptr;
};

/// Closes an environment that never made it into a journal.
struct env_closer {
  void operator()(MDB_env* env) const noexcept { mdb_env_close(env); }
};
using env_ptr = std::unique_ptr<MDB_env, env_closer>;

/// Data directories open in this process: LMDB must never open one environment twice in a
/// process (its POSIX locks would silently break). Held for the life of a journal.
class dir_claim {
public:
  dir_claim() = default;
  dir_claim(dir_claim&& other) noexcept : key_(std::exchange(other.key_, {})) {}
  dir_claim& operator=(dir_claim&&) = delete;
  ~dir_claim() {
    if (!key_.empty()) {
      std::lock_guard lock{mutex()};
      dirs().erase(key_);
    }
  }
  /// Claims `dir`; false when it is already open in this process.
  bool claim(std::string key) {
    std::lock_guard lock{mutex()};
    if (!dirs().insert(key).second)
      return false;
    key_ = std::move(key);
    return true;
  }

private:
  static std::mutex& mutex() {
    static std::mutex m;
    return m;
  }
  static std::set<std::string>& dirs() {
    static std::set<std::string> s;
    return s;
  }
  std::string key_;
};

/// The id and sequence number of a log record, read from its header alone; nullopt if the
/// record is malformed.
std::optional<std::pair<std::string_view, sequence_nr>> record_id_seq(std::string_view rec,
                                                                      std::uint32_t shards) noexcept {
  if (!record_shard(rec, shards))
    return std::nullopt;
  const std::size_t id_size = static_cast<unsigned char>(rec[record_id_size_at]);
  if (id_size == 0 || rec.size() < record_fixed_size + id_size)
    return std::nullopt;
  return std::pair{rec.substr(record_fixed_size, id_size), load_be(rec.data() + record_seq_at, 8)};
}

/// The database handles of the log environment, and the log's last offset when it was opened.
struct databases {
  MDB_dbi log = 0;
  MDB_dbi snapshots = 0;
  log_offset log_end = 0;
};

/// The index environment as opened: its database handles and its watermark.
struct opened_index {
  env_ptr env;
  MDB_dbi meta = 0;
  MDB_dbi index = 0;
  log_offset watermark = 0;
};

error make_error(errc code, std::string message) {
  return error{code, std::move(message)};
}

/// Creates an environment with the journal's settings and opens it in `dir` (which must exist).
expected<env_ptr> open_env(const fs::path& dir, unsigned int max_dbs, std::size_t map_size,
                           unsigned int flags) {
  MDB_env* raw_env = nullptr;
  if (int rc = mdb_env_create(&raw_env))
    return lmdb_error(rc, "mdb_env_create", dir);
  env_ptr env{raw_env};
  if (int rc = mdb_env_set_maxdbs(env.get(), max_dbs))
    return lmdb_error(rc, "mdb_env_set_maxdbs", dir);
  if (int rc = mdb_env_set_maxreaders(env.get(), max_readers))
    return lmdb_error(rc, "mdb_env_set_maxreaders", dir);
  if (map_size != 0)
    if (int rc = mdb_env_set_mapsize(env.get(), map_size))
      return lmdb_error(rc, "mdb_env_set_mapsize", dir);
  if (int rc = mdb_env_open(env.get(), dir.c_str(), flags, file_mode))
    return lmdb_error(rc, "mdb_env_open", dir);
  int dead_readers = 0;
  if (int rc = mdb_reader_check(env.get(), &dead_readers))
    return lmdb_error(rc, "mdb_reader_check", dir);
  return env;
}

/// Whether the main database of the transaction's environment is empty (a fresh environment).
expected<bool> env_is_empty(MDB_txn* txn, const fs::path& dir) {
  MDB_dbi main_db = 0;
  MDB_stat st;
  if (int rc = mdb_dbi_open(txn, nullptr, 0, &main_db))
    return lmdb_error(rc, "mdb_dbi_open(main)", dir);
  if (int rc = mdb_stat(txn, main_db, &st))
    return lmdb_error(rc, "mdb_stat(main)", dir);
  return st.ms_entries == 0;
}

/// Opens (creating on a fresh environment) the meta, log and snapshot databases, checks format
/// and shard count, and reads the log's last offset.
expected<databases> open_databases(MDB_env* env, const lmdb_options& opts) {
  const fs::path& dir = opts.dir;
  MDB_txn* raw_txn = nullptr;
  if (int rc = mdb_txn_begin(env, nullptr, 0, &raw_txn))
    return lmdb_error(rc, "mdb_txn_begin(open)", dir);
  txn_guard txn{raw_txn};

  MDB_dbi meta = 0;
  bool fresh = false;
  int rc = mdb_dbi_open(txn.get(), "meta", 0, &meta);
  if (rc == MDB_NOTFOUND) {
    // Fresh only if the environment holds nothing at all; anything else is not our journal.
    auto empty = env_is_empty(txn.get(), dir);
    if (!empty)
      return std::move(empty).error();
    if (!*empty)
      return make_error(errc::unknown_format,
                        "data dir " + dir.string()
                          + " was written by journal format <none> (an LMDB environment without"
                            " journal metadata), this build reads "
                          + std::string{journal_format});
    fresh = true;
    if (int rc2 = mdb_dbi_open(txn.get(), "meta", MDB_CREATE, &meta))
      return lmdb_error(rc2, "mdb_dbi_open(meta)", dir);
    MDB_val k = to_val(format_key);
    MDB_val v = to_val(journal_format);
    if (int rc2 = mdb_put(txn.get(), meta, &k, &v, 0))
      return lmdb_error(rc2, "mdb_put(meta format)", dir);
    char shards[4];
    store_be(shards, opts.number_of_shards, 4);
    k = to_val(shards_key);
    v = MDB_val{sizeof shards, shards};
    if (int rc2 = mdb_put(txn.get(), meta, &k, &v, 0))
      return lmdb_error(rc2, "mdb_put(meta shards)", dir);
  } else if (rc != MDB_SUCCESS) {
    return lmdb_error(rc, "mdb_dbi_open(meta)", dir);
  } else {
    MDB_val k = to_val(format_key);
    MDB_val v;
    rc = mdb_get(txn.get(), meta, &k, &v);
    if (rc != MDB_SUCCESS && rc != MDB_NOTFOUND)
      return lmdb_error(rc, "mdb_get(meta format)", dir);
    if (rc == MDB_NOTFOUND || to_view(v) != journal_format) {
      std::string found = rc == MDB_NOTFOUND ? "<none>" : printable(to_view(v));
      return make_error(errc::unknown_format, "data dir " + dir.string()
                                                + " was written by journal format " + found
                                                + ", this build reads "
                                                + std::string{journal_format});
    }
    k = to_val(shards_key);
    rc = mdb_get(txn.get(), meta, &k, &v);
    if (rc != MDB_SUCCESS && rc != MDB_NOTFOUND)
      return lmdb_error(rc, "mdb_get(meta shards)", dir);
    if (rc == MDB_NOTFOUND || v.mv_size != 4)
      return make_error(errc::corrupt,
                        "data dir " + dir.string() + " has no valid shard count in its metadata");
    auto stored = static_cast<std::uint32_t>(load_be(static_cast<const char*>(v.mv_data), 4));
    if (stored != opts.number_of_shards)
      return make_error(errc::config_mismatch,
                        "data dir " + dir.string() + " was created with "
                          + std::to_string(stored) + " shards, but is opened with "
                          + std::to_string(opts.number_of_shards));
  }

  const unsigned int flags = fresh ? MDB_CREATE : 0;
  auto open_db = [&](const std::string& name, MDB_dbi& out) -> std::optional<error> {
    int rc2 = mdb_dbi_open(txn.get(), name.c_str(), flags, &out);
    if (rc2 == MDB_NOTFOUND)
      return make_error(errc::corrupt, "data dir " + dir.string() + " misses database " + name);
    if (rc2 != MDB_SUCCESS)
      return lmdb_error(rc2, "mdb_dbi_open(" + name + ")", dir);
    return std::nullopt;
  };
  databases dbs;
  if (auto err = open_db("log", dbs.log))
    return *err;
  if (auto err = open_db("snapshots", dbs.snapshots))
    return *err;
  // Cursors of a write transaction are freed by LMDB when the transaction ends.
  MDB_cursor* log_cursor = nullptr;
  if (int rc2 = mdb_cursor_open(txn.get(), dbs.log, &log_cursor))
    return lmdb_error(rc2, "mdb_cursor_open(log)", dir);
  if (int rc2 = find_log_end(log_cursor, dbs.log_end))
    return lmdb_error(rc2, "reading the end of the log", dir);

  if (int rc2 = mdb_txn_commit(txn.release()))
    return lmdb_error(rc2, "mdb_txn_commit(open)", dir);
  return dbs;
}

/// Opens the index environment in `dir` (created when missing or empty, with watermark 0) and
/// reads its watermark. An error means that it cannot be used as it is: the caller deletes it
/// and tries once more.
expected<opened_index> open_index(const fs::path& dir, std::size_t map_size, log_offset log_end) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec)
    return detail::fs_error(ec, "creating the index dir", dir);
  // Data pages are fsynced at each commit, the meta page is not: integrity holds, an OS crash
  // may lose the last commit, which only means indexing again from an older watermark.
  auto env = open_env(dir, max_index_dbs, map_size, MDB_NOTLS | MDB_NOMETASYNC);
  if (!env)
    return std::move(env).error();
  opened_index out;
  out.env = std::move(*env);

  MDB_txn* raw_txn = nullptr;
  if (int rc = mdb_txn_begin(out.env.get(), nullptr, 0, &raw_txn))
    return lmdb_error(rc, "mdb_txn_begin(open index)", dir);
  txn_guard txn{raw_txn};
  int rc = mdb_dbi_open(txn.get(), "meta", 0, &out.meta);
  if (rc == MDB_NOTFOUND) {
    auto empty = env_is_empty(txn.get(), dir);
    if (!empty)
      return std::move(empty).error();
    if (!*empty)
      return make_error(errc::unknown_format,
                        "index dir " + dir.string() + " is an LMDB environment without metadata");
    if (int rc2 = mdb_dbi_open(txn.get(), "meta", MDB_CREATE, &out.meta))
      return lmdb_error(rc2, "mdb_dbi_open(index meta)", dir);
    if (int rc2 = mdb_dbi_open(txn.get(), "index", MDB_CREATE, &out.index))
      return lmdb_error(rc2, "mdb_dbi_open(index)", dir);
    MDB_val k = to_val(format_key);
    MDB_val v = to_val(index_format);
    if (int rc2 = mdb_put(txn.get(), out.meta, &k, &v, 0))
      return lmdb_error(rc2, "mdb_put(index meta format)", dir);
    offset_key zero{0};
    k = to_val(watermark_key);
    v = zero.val();
    if (int rc2 = mdb_put(txn.get(), out.meta, &k, &v, 0))
      return lmdb_error(rc2, "mdb_put(index meta watermark)", dir);
  } else if (rc != MDB_SUCCESS) {
    return lmdb_error(rc, "mdb_dbi_open(index meta)", dir);
  } else {
    MDB_val k = to_val(format_key);
    MDB_val v;
    rc = mdb_get(txn.get(), out.meta, &k, &v);
    if (rc != MDB_SUCCESS && rc != MDB_NOTFOUND)
      return lmdb_error(rc, "mdb_get(index meta format)", dir);
    if (rc == MDB_NOTFOUND || to_view(v) != index_format)
      return make_error(errc::unknown_format,
                        "index dir " + dir.string() + " has format "
                          + (rc == MDB_NOTFOUND ? std::string{"<none>"} : printable(to_view(v)))
                          + ", this build reads " + std::string{index_format});
    k = to_val(watermark_key);
    rc = mdb_get(txn.get(), out.meta, &k, &v);
    if (rc != MDB_SUCCESS && rc != MDB_NOTFOUND)
      return lmdb_error(rc, "mdb_get(index meta watermark)", dir);
    if (rc == MDB_NOTFOUND || v.mv_size != 8)
      return make_error(errc::corrupt, "index dir " + dir.string() + " has no valid watermark");
    out.watermark = load_be(static_cast<const char*>(v.mv_data), 8);
    if (out.watermark > log_end)
      return make_error(errc::corrupt, "index dir " + dir.string() + " indexes the log up to "
                                         + std::to_string(out.watermark)
                                         + ", beyond its end at " + std::to_string(log_end));
    rc = mdb_dbi_open(txn.get(), "index", 0, &out.index);
    if (rc == MDB_NOTFOUND)
      return make_error(errc::corrupt, "index dir " + dir.string() + " misses database index");
    if (rc != MDB_SUCCESS)
      return lmdb_error(rc, "mdb_dbi_open(index)", dir);
  }
  if (int rc2 = mdb_txn_commit(txn.release()))
    return lmdb_error(rc2, "mdb_txn_commit(open index)", dir);
  return out;
}

/// Hashes std::string keys and std::string_view probes alike (heterogeneous lookup).
struct string_hash {
  using is_transparent = void;
  std::size_t operator()(std::string_view s) const noexcept {
    return std::hash<std::string_view>{}(s);
  }
};

} // namespace

/// The LMDB journal: the log environment, written by one writer thread doing group commits, and
/// the index environment, derived from the log by one indexer thread; reads from any thread in
/// short read-only transactions.
class lmdb_journal final : public journal {
public:
  /// Opens or creates the journal described by `opts`, brings its index up to the log's end and
  /// starts its writer and indexer threads.
  static expected<std::unique_ptr<journal>> open(lmdb_options opts);

  /// Stops accepting appends, commits what is queued, joins the writer, then the indexer, and
  /// closes both environments.
  ~lmdb_journal() override;

  /// Queues the append for the writer thread; refused at once (errc::closed) while closing.
  void append_async(append_request req, append_callback done) override;
  /// Queues the snapshot for the writer thread; refused at once (errc::closed) while closing.
  void save_snapshot_async(snapshot snap, std::function<void(expected<void>)> done) override;
  /// The id's entries from the tail and the index (merged by seq), each looked up in the log.
  expected<std::vector<stored_event>> replay(const std::string& persistence_id, sequence_nr from,
                                             std::size_t max) const override;
  /// The id's last tail entry, else its last index key.
  expected<sequence_nr> highest_sequence_nr(const std::string& persistence_id) const override;
  /// The id's entry in the snapshots database.
  expected<std::optional<snapshot>> load_snapshot(const std::string& persistence_id) const override;
  /// A range scan of the log.
  expected<log_page> read_log(log_offset from, std::size_t max) const override;
  /// A range scan of the log that decodes only the records of `shard`.
  expected<log_page> read_shard_log(shard_id shard, log_offset from, std::size_t max,
                                    std::size_t max_scan) const override;
  /// The last key of the log.
  expected<log_offset> log_end() const override;
  /// The shard count the journal was created with.
  std::uint32_t number_of_shards() const noexcept override { return number_of_shards_; }

  /// Every log entry with an offset up to this one is in the index environment.
  log_offset index_watermark() const noexcept { return watermark_.load(); }
  /// Index commits that failed since open.
  std::uint64_t index_failures() const noexcept { return index_failures_.load(); }
  /// The log environment's flags (mdb_env_get_flags); nullopt if LMDB cannot tell.
  std::optional<unsigned> log_env_flags() const noexcept {
    unsigned flags = 0;
    if (mdb_env_get_flags(log_.env, &flags) != MDB_SUCCESS)
      return std::nullopt;
    return flags;
  }

private:
  struct pending_append {
    append_request req;
    append_callback done;
  };
  struct pending_snapshot {
    snapshot snap;
    std::function<void(expected<void>)> done;
  };
  using work = std::variant<pending_append, pending_snapshot>;
  /// The result of one work item: written append, written snapshot (monostate) or an error.
  using outcome = std::variant<std::monostate, append_result, error>;
  /// The highest committed seq per id, keyed by views of the ids in the batch.
  using highest_map = std::unordered_map<std::string_view, sequence_nr>;

  /// What one attempt at writing a batch did.
  struct batch_attempt {
    int rc = MDB_SUCCESS;      ///< an LMDB failure that fails the whole batch
    std::string operation;     ///< the call that failed
    bool committed = false;    ///< false also when nothing needed writing
    std::size_t appends = 0;
    std::size_t events = 0;
    std::chrono::nanoseconds commit_time{0};
  };

  /// One LMDB environment and what growing its map needs. Each has a single writer thread.
  struct env_state {
    env_state(fs::path d, MDB_env* e, std::size_t fallback_map_size) : dir(std::move(d)), env(e) {
      MDB_envinfo info;
      map_size = mdb_env_info(env, &info) == MDB_SUCCESS ? info.me_mapsize : fallback_map_size;
    }
    const fs::path dir;
    MDB_env* const env;
    /// Readers hold it shared for the life of their read transaction; a map resize holds it
    /// exclusively (mdb_env_set_mapsize must not run while a read transaction is open).
    mutable std::shared_mutex map_mutex;
    mutable std::atomic<bool> resize_pending{false}; ///< a resize waits for map_mutex
    std::size_t map_size = 0;        ///< current map size; only the env's writer changes it
    std::atomic<bool> broken{false}; ///< a failed remap left the environment unusable
  };

  /// Holds an environment's map lock (shared) and a read-only transaction for one read.
  class read_txn {
  public:
    explicit read_txn(const env_state& e) : lock_(wait_for_resize(e)), env_(e.env) {}
    read_txn(const read_txn&) = delete;
    read_txn& operator=(const read_txn&) = delete;
    ~read_txn() {
      if (txn_ != nullptr)
        mdb_txn_abort(txn_);
    }
    int begin() noexcept { return mdb_txn_begin(env_, nullptr, MDB_RDONLY, &txn_); }
    MDB_txn* get() const noexcept { return txn_; }

  private:
    // New readers hold back while a resize waits for the lock: glibc's rwlock prefers readers,
    // so a steady stream of overlapping reads could otherwise starve the resize (and the writer).
    static std::shared_lock<std::shared_mutex> wait_for_resize(const env_state& e) {
      e.resize_pending.wait(true);
      return std::shared_lock{e.map_mutex};
    }

    std::shared_lock<std::shared_mutex> lock_;
    MDB_env* env_;
    MDB_txn* txn_ = nullptr;
  };

  /// A committed event of the tail: its seq and where it is in the log.
  struct tail_entry {
    sequence_nr seq = 0;
    log_offset offset = 0;
  };
  /// Per id, its committed events above the watermark: always a suffix of its stream, in order.
  using tail_map =
    std::unordered_map<std::string, std::vector<tail_entry>, string_hash, std::equal_to<>>;

  /// One index entry to write: the index key ([len][id][seq]) and the log offset.
  struct index_entry {
    std::string key;
    log_offset offset = 0;
  };

  lmdb_journal(const lmdb_options& opts, env_ptr log_env, databases dbs, opened_index index,
               dir_claim claim);

  void run_writer();
  void run_batch(std::vector<work>& batch);
  batch_attempt write_batch(std::vector<work>& batch, epoch_ms at, std::vector<outcome>& results);
  /// The highest committed seq of every valid append's id in `batch`; LMDB code on failure.
  int committed_highest(const std::vector<work>& batch, highest_map& out,
                        std::string& operation) const;
  /// Adds the batch's written events to the tail (after the commit, before the callbacks).
  void add_to_tail(const std::vector<work>& batch, const std::vector<outcome>& results);
  std::optional<error> enqueue(work& item);
  std::optional<error> validate(const append_request& req) const;
  bool grow_map(env_state& e, std::string& failure);

  void run_indexer();
  /// Indexes the log entries (watermark, min(to, watermark + index_txn_entries)] in one index
  /// commit, then trims the tail and publishes the new watermark, which it returns.
  expected<log_offset> index_step(log_offset to);
  /// Reads the id and seq of the log entries (from, to] into index entries.
  expected<std::vector<index_entry>> read_for_index(log_offset from, log_offset to) const;
  /// Writes `entries` and the watermark in one index transaction; LMDB code on failure.
  int write_index(const std::vector<index_entry>& entries, log_offset watermark,
                  std::string& operation);
  /// Indexes everything up to the log's end (at open, before the threads start).
  expected<void> catch_up_index(bool rebuilding);
  /// Waits up to `d` unless the journal is closing; false when it is.
  bool indexer_sleep(std::chrono::steady_clock::duration d);

  error failure(int rc, std::string_view operation) const {
    return lmdb_error(rc, operation, log_.dir);
  }
  error index_failure(int rc, std::string_view operation) const {
    return lmdb_error(rc, operation, index_.dir);
  }
  error broken_error(const env_state& e) const;
  error corrupt_error(std::string what) const;
  /// Begins `txn` (a read transaction on the index env) and opens `cursor` on the index; the
  /// error to report when either fails. `caller` names the operation in the message.
  std::optional<error> open_index_cursor(read_txn& txn, read_cursor& cursor,
                                         std::string_view caller) const;
  /// Begins `txn` (a read transaction on the log env); the error to report when it fails.
  std::optional<error> begin_log_read(read_txn& txn, std::string_view caller) const;
  /// begin_log_read, then opens `cursor` on the log.
  std::optional<error> open_log_cursor(read_txn& txn, read_cursor& cursor,
                                       std::string_view caller) const;
  /// Reads the log from `from`: the records of `shard` (all when nullopt), at most `max` of
  /// them, examining at most `max_scan` entries.
  expected<log_page> scan_log(std::optional<shard_id> shard, log_offset from, std::size_t max,
                              std::size_t max_scan) const;

  const fs::path dir_;
  const std::uint32_t number_of_shards_;
  const std::size_t max_batch_;
  const std::chrono::milliseconds index_interval_;
  const commit_observer on_commit_;
  dir_claim claim_;
  env_state log_;
  env_state index_;
  const databases dbs_;
  const MDB_dbi index_meta_dbi_;
  const MDB_dbi index_dbi_;
  log_offset log_end_ = 0; ///< the last committed offset; only the writer thread uses it

  std::mutex queue_mutex_;
  std::condition_variable queue_cv_;
  std::deque<work> queue_;
  bool stopping_ = false;
  std::thread writer_;

  /// Guards the tail and the indexer's wake-up state below.
  mutable std::mutex tail_mutex_;
  std::condition_variable indexer_cv_;
  tail_map tail_;
  log_offset tail_end_ = 0;       ///< the last committed offset whose events are in the tail
  bool indexer_waiting_ = false;  ///< the indexer sleeps until tail_end_ passes the watermark
  bool indexer_stopping_ = false;
  std::atomic<log_offset> watermark_{0}; ///< changed by the indexer only, after its commit
  std::atomic<std::uint64_t> index_failures_{0}; ///< failed index commits since open
  std::thread indexer_;

  /// Zeros ahead of the log file's used end (null: off); topped up by the indexer thread.
  std::unique_ptr<file_preallocator> prealloc_;
  std::atomic<std::uint64_t> log_used_end_{0}; ///< bytes of the log file LMDB uses; writer sets it
  std::uint64_t log_page_size_ = 0;            ///< of the log env; fixed when the file was made
  /// Bytes of the log file LMDB uses as of its last commit.
  std::uint64_t log_file_used() const;
  /// At most how far `batch` can move the log file's used end (generous: LMDB's page overhead).
  static std::uint64_t growth_bound(const std::vector<work>& batch);
  /// Keeps the preallocated zeros ahead of the log's used end (indexer thread).
  void top_up_log_file();
};

lmdb_journal::lmdb_journal(const lmdb_options& opts, env_ptr log_env, databases dbs,
                           opened_index index, dir_claim claim)
  : dir_(opts.dir),
    number_of_shards_(opts.number_of_shards),
    max_batch_(opts.max_batch_appends),
    index_interval_(opts.index_interval),
    on_commit_(opts.on_commit),
    claim_(std::move(claim)),
    log_(opts.dir, log_env.release(), opts.initial_map_size),
    index_(opts.dir / index_dir_name, index.env.release(), opts.initial_map_size),
    dbs_(dbs),
    index_meta_dbi_(index.meta),
    index_dbi_(index.index),
    log_end_(dbs.log_end),
    tail_end_(dbs.log_end),
    watermark_(index.watermark) {}

expected<std::unique_ptr<journal>> lmdb_journal::open(lmdb_options opts) {
  const fs::path& dir = opts.dir;
  if (dir.empty())
    return make_error(errc::invalid_argument, "open_lmdb_journal: no data dir given");
  if (opts.number_of_shards == 0 || opts.number_of_shards > max_shards)
    return make_error(errc::invalid_argument,
                      "data dir " + dir.string() + ": number_of_shards must be 1.."
                        + std::to_string(max_shards) + ", is "
                        + std::to_string(opts.number_of_shards));
  if (opts.max_batch_appends == 0)
    return make_error(errc::invalid_argument,
                      "data dir " + dir.string() + ": max_batch_appends must be at least 1");
  if (opts.index_interval < std::chrono::milliseconds{0} || opts.index_interval > max_index_interval)
    return make_error(errc::invalid_argument,
                      "data dir " + dir.string() + ": index_interval must be 0..24 h, is "
                        + std::to_string(opts.index_interval.count()) + " ms");

  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec)
    return detail::fs_error(ec, "creating data dir", dir);
  if (!fs::is_directory(dir, ec))
    return detail::fs_error(ec ? ec : std::make_error_code(std::errc::not_a_directory),
                            "opening data dir", dir);
  auto canonical = fs::canonical(dir, ec);
  if (ec)
    return detail::fs_error(ec, "resolving data dir", dir);
  dir_claim claim;
  if (!claim.claim(canonical.string()))
    return make_error(errc::invalid_argument,
                      "data dir " + dir.string() + " is already open in this process");

  // Full durability for the log: no MDB_NOSYNC / MDB_NOMETASYNC / MDB_MAPASYNC, a commit
  // returns after fsync.
  auto env = open_env(dir, max_log_dbs, opts.initial_map_size, MDB_NOTLS);
  if (!env)
    return std::move(env).error();
  auto dbs = open_databases(env->get(), opts);
  if (!dbs)
    return std::move(dbs).error();

  // The index is derived data: one that cannot be used is deleted and rebuilt from the log.
  const fs::path index_dir = dir / index_dir_name;
  const bool index_existed = fs::exists(index_dir, ec);
  bool rebuilding = false;
  auto index = open_index(index_dir, opts.initial_map_size, dbs->log_end);
  if (!index) {
    kontor::log(log_level::warn, log_component,
                "journal index: cannot use it (" + index.error().message
                  + "); deleting it and rebuilding it from the log");
    fs::remove_all(index_dir, ec);
    if (ec)
      return detail::fs_error(ec, "deleting the unusable index dir", index_dir);
    index = open_index(index_dir, opts.initial_map_size, dbs->log_end);
    if (!index)
      return std::move(index).error();
    rebuilding = true;
  } else if (!index_existed && dbs->log_end > 0) {
    kontor::log(log_level::warn, log_component,
                "journal index: " + index_dir.string() + " is missing; rebuilding it from the log");
    rebuilding = true;
  }

  std::unique_ptr<lmdb_journal> j{new lmdb_journal(opts, std::move(*env), std::move(*dbs),
                                                   std::move(*index), std::move(claim))};
  // Everything committed before this open is indexed now, so the tail starts empty.
  if (auto caught_up = j->catch_up_index(rebuilding); !caught_up)
    return std::move(caught_up).error();
  if (opts.preallocate > 0) {
    std::string why_not;
    MDB_stat st;
    if (int rc = mdb_env_stat(j->log_.env, &st))
      why_not = mdb_strerror(rc);
    else
      j->prealloc_ = file_preallocator::open(dir / "data.mdb", opts.preallocate, why_not);
    if (j->prealloc_) {
      j->log_page_size_ = st.ms_psize;
      j->log_used_end_ = j->log_file_used();
    } else {
      kontor::log(log_level::info, log_component,
                  "journal: no preallocation of the log file (" + why_not + ")");
    }
  }
  try {
    j->indexer_ = std::thread{[raw = j.get()] { raw->run_indexer(); }};
    j->writer_ = std::thread{[raw = j.get()] { raw->run_writer(); }};
  } catch (const std::system_error& e) {
    return make_error(errc::io_error,
                      "data dir " + dir.string() + ": cannot start the journal's threads: "
                        + e.what());
  }
  return std::unique_ptr<journal>{std::move(j)};
}

lmdb_journal::~lmdb_journal() {
  {
    std::lock_guard lock{queue_mutex_};
    stopping_ = true;
  }
  queue_cv_.notify_all();
  if (writer_.joinable())
    writer_.join();
  // The writer is drained: what it committed is in the log; what the indexer has not reached
  // is indexed at the next open.
  {
    std::lock_guard lock{tail_mutex_};
    indexer_stopping_ = true;
  }
  indexer_cv_.notify_all();
  if (indexer_.joinable())
    indexer_.join();
  mdb_env_close(index_.env);
  mdb_env_close(log_.env);
}

// ---- write side ----

void lmdb_journal::append_async(append_request req, append_callback done) {
  work item{pending_append{std::move(req), std::move(done)}};
  if (auto refusal = enqueue(item)) {
    auto& a = std::get<pending_append>(item);
    if (a.done)
      a.done(make_error(refusal->code, refusal->message + "; append to '"
                                         + a.req.persistence_id + "' not written"));
  }
}

void lmdb_journal::save_snapshot_async(snapshot snap, std::function<void(expected<void>)> done) {
  work item{pending_snapshot{std::move(snap), std::move(done)}};
  if (auto refusal = enqueue(item)) {
    auto& s = std::get<pending_snapshot>(item);
    if (s.done)
      s.done(make_error(refusal->code, refusal->message + "; snapshot of '"
                                         + s.snap.persistence_id + "' not written"));
  }
}

std::optional<error> lmdb_journal::enqueue(work& item) {
  try {
    {
      std::lock_guard lock{queue_mutex_};
      if (stopping_)
        return make_error(errc::closed, "journal in " + dir_.string() + " is closing");
      queue_.push_back(std::move(item)); // strong guarantee: on bad_alloc `item` is intact
    }
    queue_cv_.notify_one();
    return std::nullopt;
  } catch (const std::bad_alloc&) {
    return make_error(errc::io_error, "journal in " + dir_.string() + " is out of memory");
  }
}

void lmdb_journal::run_writer() {
  std::vector<work> batch;
  for (;;) {
    batch.clear();
    {
      std::unique_lock lock{queue_mutex_};
      queue_cv_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
      if (queue_.empty())
        return; // stopping, and everything queued has been committed
      const std::size_t n = std::min(queue_.size(), max_batch_);
      for (std::size_t i = 0; i < n; ++i) {
        batch.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
    }
    run_batch(batch);
  }
}

void lmdb_journal::run_batch(std::vector<work>& batch) {
  std::vector<outcome> results(batch.size());
  const epoch_ms at = now_ms();
  batch_attempt attempt;
  for (;;) {
    std::unique_lock<std::mutex> guard;
    if (prealloc_)
      guard = prealloc_->guard(log_used_end_.load(), growth_bound(batch));
    try {
      attempt = write_batch(batch, at, results);
    } catch (const std::bad_alloc&) {
      attempt = batch_attempt{};
      attempt.rc = ENOMEM;
      attempt.operation = "writing a batch";
    }
    if (attempt.rc != MDB_MAP_FULL)
      break;
    std::string grow_failure;
    if (!grow_map(log_, grow_failure)) {
      attempt.operation = std::move(grow_failure);
      break;
    }
  }
  if (attempt.rc != MDB_SUCCESS) {
    // Nothing of the batch was written; the journal stays open for later batches.
    error err = failure(attempt.rc, attempt.operation);
    err.code = errc::io_error;
    for (auto& r : results)
      r = err;
  }
  // Readers find the batch's events in the tail (until the indexer has them) once its
  // callbacks run.
  if (attempt.committed) {
    if (prealloc_)
      log_used_end_ = log_file_used();
    add_to_tail(batch, results);
  }
  // The observer runs before the callbacks, so whoever waits for the last append of a run
  // also sees the observer's counts of it.
  if (attempt.committed && on_commit_) {
    try {
      on_commit_(attempt.appends, attempt.events, attempt.commit_time);
    } catch (...) {
      // A metrics hook must not take the writer thread down.
    }
  }
  for (std::size_t i = 0; i < batch.size(); ++i) {
    try {
      if (auto* a = std::get_if<pending_append>(&batch[i])) {
        if (!a->done)
          continue;
        if (auto* ok = std::get_if<append_result>(&results[i]))
          a->done(*ok);
        else if (auto* err = std::get_if<error>(&results[i]))
          a->done(std::move(*err));
        else
          a->done(make_error(errc::io_error, "append to '" + a->req.persistence_id + "' in "
                                               + dir_.string() + " has no outcome"));
      } else if (auto* s = std::get_if<pending_snapshot>(&batch[i])) {
        if (!s->done)
          continue;
        if (auto* err = std::get_if<error>(&results[i]))
          s->done(std::move(*err));
        else
          s->done(expected<void>{});
      }
    } catch (...) {
      // Callbacks must not throw; if one does, the other waiters still get their results.
    }
  }
}

void lmdb_journal::add_to_tail(const std::vector<work>& batch,
                               const std::vector<outcome>& results) {
  bool wake = false;
  try {
    std::lock_guard lock{tail_mutex_};
    for (std::size_t i = 0; i < batch.size(); ++i) {
      const auto* a = std::get_if<pending_append>(&batch[i]);
      const auto* r = std::get_if<append_result>(&results[i]);
      if (a == nullptr || r == nullptr)
        continue;
      // The events of one append have consecutive seqs and consecutive offsets.
      const std::size_t n = a->req.events.size();
      auto& entries = tail_[a->req.persistence_id];
      for (std::size_t e = 0; e < n; ++e)
        entries.push_back(tail_entry{r->last_seq - (n - 1) + e, r->last_offset - (n - 1) + e});
    }
    tail_end_ = log_end_;
    wake = indexer_waiting_;
  } catch (const std::bad_alloc&) {
    // The batch is durable but reads by id could not see it, and its waiters must not be told
    // it failed: there is no consistent way on. The next open indexes it from the log.
    kontor::log(log_level::error, log_component,
                "journal in " + dir_.string()
                  + ": out of memory while publishing a committed batch; aborting");
    std::terminate();
  }
  if (wake)
    indexer_cv_.notify_one();
}

std::optional<error> lmdb_journal::validate(const append_request& req) const {
  const auto& id = req.persistence_id;
  if (!valid_id(id))
    return make_error(errc::invalid_argument,
                      "append in " + dir_.string() + ": persistence id must be 1.."
                        + std::to_string(max_id_size) + " bytes, is "
                        + std::to_string(id.size()));
  if (req.shard >= number_of_shards_)
    return make_error(errc::invalid_argument,
                      "append to '" + id + "' in " + dir_.string() + ": shard "
                        + std::to_string(req.shard) + " is out of range (journal has "
                        + std::to_string(number_of_shards_) + " shards)");
  if (req.events.empty())
    return make_error(errc::invalid_argument,
                      "append to '" + id + "' in " + dir_.string() + " has no events");
  for (const auto& e : req.events)
    if (e.size() > max_payload_size)
      return make_error(errc::invalid_argument, "append to '" + id + "' in " + dir_.string()
                                                  + ": event of " + std::to_string(e.size())
                                                  + " bytes is too large");
  return std::nullopt;
}

int lmdb_journal::committed_highest(const std::vector<work>& batch, highest_map& out,
                                    std::string& operation) const {
  // The tail first, then the index, as in replay: an entry the indexer trims from the tail in
  // between is already in the index's newest snapshot.
  std::vector<std::string_view> not_in_tail;
  {
    std::lock_guard lock{tail_mutex_};
    for (const auto& item : batch) {
      const auto* a = std::get_if<pending_append>(&item);
      if (a == nullptr || !valid_id(a->req.persistence_id))
        continue;
      const std::string_view id = a->req.persistence_id;
      if (out.contains(id))
        continue;
      if (auto it = tail_.find(id); it != tail_.end() && !it->second.empty()) {
        out.emplace(id, it->second.back().seq);
      } else {
        out.emplace(id, 0);
        not_in_tail.push_back(id);
      }
    }
  }
  if (not_in_tail.empty())
    return MDB_SUCCESS;
  read_txn txn{index_};
  if (index_.broken.load()) {
    operation = "reading the index after a failed map resize of " + index_.dir.string();
    return EIO;
  }
  if (int rc = txn.begin()) {
    operation = "mdb_txn_begin(index) in " + index_.dir.string();
    return rc;
  }
  read_cursor cursor;
  if (int rc = cursor.open(txn.get(), index_dbi_)) {
    operation = "mdb_cursor_open(index) in " + index_.dir.string();
    return rc;
  }
  for (const auto id : not_in_tail) {
    id_key key{id};
    if (int rc = find_highest(cursor.get(), key, out[id])) {
      operation = "reading the highest seq of '" + std::string{id} + "' from "
                   + index_.dir.string();
      return rc;
    }
  }
  return MDB_SUCCESS;
}

lmdb_journal::batch_attempt lmdb_journal::write_batch(std::vector<work>& batch, epoch_ms at,
                                                      std::vector<outcome>& results) {
  batch_attempt out;
  auto fail = [&out](int rc, std::string operation) {
    out.rc = rc;
    out.operation = std::move(operation);
    out.committed = false;
    return out;
  };
  if (log_.broken.load())
    return fail(EIO, "writing after a failed map resize");

  // Highest seq per id, read before the write transaction (no index read inside it) and
  // advanced by the appends of this batch, so that earlier appends of the same batch count.
  highest_map highest;
  {
    std::string operation;
    if (int rc = committed_highest(batch, highest, operation))
      return fail(rc, std::move(operation));
  }

  MDB_txn* raw_txn = nullptr;
  if (int rc = mdb_txn_begin(log_.env, nullptr, 0, &raw_txn))
    return fail(rc, "mdb_txn_begin(write)");
  txn_guard txn{raw_txn};

  // The log's end advances in memory and is kept only if the commit succeeds.
  log_offset end = log_end_;
  std::size_t snapshots_written = 0;

  for (std::size_t i = 0; i < batch.size(); ++i) {
    if (auto* s = std::get_if<pending_snapshot>(&batch[i])) {
      const auto& snap = s->snap;
      if (!valid_id(snap.persistence_id) || snap.payload.size() > max_payload_size) {
        results[i] = make_error(errc::invalid_argument,
                                "snapshot in " + dir_.string()
                                  + ": persistence id must be 1..255 bytes (is "
                                  + std::to_string(snap.persistence_id.size())
                                  + ") and the payload below 4 GiB");
        continue;
      }
      id_key key{snap.persistence_id};
      MDB_val k = key.prefix_val();
      MDB_val v{8 + snap.payload.size(), nullptr};
      if (int rc = mdb_put(txn.get(), dbs_.snapshots, &k, &v, MDB_RESERVE))
        return fail(rc, "mdb_put(snapshots)");
      auto* p = static_cast<char*>(v.mv_data);
      store_be(p, snap.seq, 8);
      std::copy(snap.payload.begin(), snap.payload.end(), p + 8);
      results[i] = std::monostate{};
      ++snapshots_written;
      continue;
    }

    auto& a = std::get<pending_append>(batch[i]);
    const auto& req = a.req;
    if (auto err = validate(req)) {
      results[i] = std::move(*err);
      continue;
    }
    // Validate everything before the first put, so a refused append leaves no partial writes.
    const sequence_nr high = highest.at(req.persistence_id);
    if (high == std::numeric_limits<sequence_nr>::max() || req.first_seq != high + 1
        || req.events.size() - 1 > std::numeric_limits<sequence_nr>::max() - req.first_seq) {
      results[i] = make_error(errc::sequence_conflict,
                              "append to '" + req.persistence_id + "' in " + dir_.string()
                                + ": first_seq is " + std::to_string(req.first_seq)
                                + " but the highest written seq is " + std::to_string(high));
      continue;
    }
    // MDB_APPEND refuses a key that is not above the last one: a log end that is off (or
    // wraps) fails the batch instead of overwriting.
    for (std::size_t e = 0; e < req.events.size(); ++e) {
      const sequence_nr seq = req.first_seq + e;
      const std::string_view payload = req.events[e];
      offset_key log_key{++end};
      MDB_val k = log_key.val();
      MDB_val v{record_size(req.persistence_id, payload), nullptr};
      if (int rc = mdb_put(txn.get(), dbs_.log, &k, &v, MDB_APPEND | MDB_RESERVE))
        return fail(rc, "mdb_put(log)");
      encode_record(static_cast<char*>(v.mv_data), req.shard, req.persistence_id, seq, at, payload);
    }
    const sequence_nr last_seq = req.first_seq + req.events.size() - 1;
    highest[req.persistence_id] = last_seq;
    results[i] = append_result{last_seq, end, at};
    ++out.appends;
    out.events += req.events.size();
  }

  if (out.appends == 0 && snapshots_written == 0)
    return out; // nothing to write: the guard aborts the transaction, no fsync needed
  const auto started = std::chrono::steady_clock::now();
  if (int rc = mdb_txn_commit(txn.release())) // on failure LMDB has freed the transaction
    return fail(rc, "mdb_txn_commit");
  out.commit_time = std::chrono::steady_clock::now() - started;
  out.committed = true;
  log_end_ = end;
  return out;
}

bool lmdb_journal::grow_map(env_state& e, std::string& failure) {
  if (e.map_size > std::numeric_limits<std::size_t>::max() / 2) {
    failure = "growing the map of " + e.dir.string() + " beyond " + std::to_string(e.map_size)
              + " bytes";
    return false;
  }
  const std::size_t next = e.map_size * 2;
  e.resize_pending.store(true);
  int rc = MDB_SUCCESS;
  {
    std::unique_lock lock{e.map_mutex};
    rc = mdb_env_set_mapsize(e.env, next);
    if (rc != MDB_SUCCESS) {
      // LMDB unmapped the old map before failing to map the new one: the env is unusable.
      e.broken.store(true);
    } else {
      MDB_envinfo info;
      e.map_size = mdb_env_info(e.env, &info) == MDB_SUCCESS ? info.me_mapsize : next;
    }
  }
  e.resize_pending.store(false);
  e.resize_pending.notify_all();
  if (rc != MDB_SUCCESS) {
    failure = "mdb_env_set_mapsize(" + std::to_string(next) + ") of " + e.dir.string() + " ["
              + std::to_string(rc) + "]";
    return false;
  }
  return true;
}

// ---- the indexer ----

expected<void> lmdb_journal::catch_up_index(bool rebuilding) {
  const log_offset end = log_end_;
  const auto started = std::chrono::steady_clock::now();
  auto last_report = started;
  bool reported = false;
  while (watermark_.load() < end) {
    auto reached = index_step(end);
    if (!reached)
      return std::move(reached).error();
    const auto now = std::chrono::steady_clock::now();
    if (now - last_report >= progress_every && *reached < end) {
      kontor::log(log_level::info, log_component,
                  "journal index: rebuilding, offset " + std::to_string(*reached) + " of "
                    + std::to_string(end));
      last_report = now;
      reported = true;
    }
  }
  if (rebuilding || reported) {
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                      std::chrono::steady_clock::now() - started)
                      .count();
    kontor::log(log_level::info, log_component,
                "journal index: indexed the log up to offset " + std::to_string(end) + " in "
                  + std::to_string(ms) + " ms");
  }
  return {};
}

void lmdb_journal::run_indexer() {
  using clock = std::chrono::steady_clock;
  // The index was caught up at open, so the first commit comes an interval after it; each later
  // one an interval after the previous one, unless that one was capped (then there is a
  // backlog to work off without pause).
  auto last_commit = clock::now();
  bool backlog = false;
  std::size_t failures = 0;
  for (;;) {
    log_offset target = 0;
    {
      std::unique_lock lock{tail_mutex_};
      indexer_waiting_ = true;
      indexer_cv_.wait(lock, [this] { return indexer_stopping_ || tail_end_ > watermark_.load(); });
      indexer_waiting_ = false;
      if (indexer_stopping_)
        return;
      // Waiting lets the tail collect more events: each id's index pages are written once per
      // index commit, whatever the number of its events.
      if (!backlog
          && indexer_cv_.wait_until(lock, last_commit + index_interval_,
                                    [this] { return indexer_stopping_; }))
        return;
      target = tail_end_;
    }
    top_up_log_file();
    auto reached = index_step(target);
    if (!reached) {
      // Appends go on; the tail keeps their events until an index commit succeeds.
      ++index_failures_;
      if (failures++ % index_failures_logged_every == 0)
        kontor::log(log_level::warn, log_component,
                    "journal index: " + reached.error().message + " (failure "
                      + std::to_string(failures) + "); retrying in "
                      + std::to_string(index_retry_delay.count()) + " s");
      if (!indexer_sleep(index_retry_delay))
        return;
      backlog = false;
      last_commit = clock::now() - index_interval_;
      continue;
    }
    if (failures != 0) {
      kontor::log(log_level::info, log_component,
                  "journal index: writing works again after " + std::to_string(failures)
                    + " failures");
      failures = 0;
    }
    last_commit = clock::now();
    backlog = *reached < target;
  }
}

std::uint64_t lmdb_journal::log_file_used() const {
  MDB_envinfo info;
  if (mdb_env_info(log_.env, &info) != MDB_SUCCESS)
    return 0;
  return (static_cast<std::uint64_t>(info.me_last_pgno) + 1) * log_page_size_;
}

std::uint64_t lmdb_journal::growth_bound(const std::vector<work>& batch) {
  constexpr std::uint64_t per_record = 128; // key, node header, alignment
  std::uint64_t bytes = 0;
  for (const auto& w : batch) {
    if (const auto* a = std::get_if<pending_append>(&w)) {
      for (const auto& ev : a->req.events)
        bytes += ev.size() + a->req.persistence_id.size() + per_record;
    } else if (const auto* s = std::get_if<pending_snapshot>(&w)) {
      bytes += s->snap.payload.size() + s->snap.persistence_id.size() + per_record;
    }
  }
  // Copy-on-write branch pages, the free list and the meta records come on top of the data.
  return 2 * bytes + (1u << 20);
}

void lmdb_journal::top_up_log_file() {
  if (!prealloc_)
    return;
  constexpr std::uint64_t max_per_wake = 16u << 20;
  auto refused = prealloc_->top_up(log_used_end_.load(), max_per_wake);
  if (!refused.empty())
    kontor::log(log_level::warn, log_component,
                "journal: preallocating the log file paused (" + refused
                  + "); commits extend it themselves meanwhile");
}

bool lmdb_journal::indexer_sleep(std::chrono::steady_clock::duration d) {
  std::unique_lock lock{tail_mutex_};
  return !indexer_cv_.wait_for(lock, d, [this] { return indexer_stopping_; });
}

expected<log_offset> lmdb_journal::index_step(log_offset to) {
  const log_offset from = watermark_.load();
  const log_offset limit = std::min<log_offset>(to, from + index_txn_entries);
  if (limit <= from)
    return from;
  // Every log entry in (from, limit] is committed (limit <= the committed end), so once they
  // are in the index the watermark is `limit`.
  std::vector<index_entry> entries;
  try {
    auto read = read_for_index(from, limit);
    if (!read)
      return std::move(read).error();
    entries = std::move(*read);
    // Sorted by key, each leaf page is visited once and cursor puts stay on the current page.
    std::sort(entries.begin(), entries.end(),
              [](const index_entry& a, const index_entry& b) { return a.key < b.key; });
    for (;;) {
      std::string operation;
      const int rc = write_index(entries, limit, operation);
      if (rc == MDB_SUCCESS)
        break;
      if (rc != MDB_MAP_FULL)
        return index_failure(rc, operation);
      std::string grow_failure;
      if (!grow_map(index_, grow_failure))
        return index_failure(rc, operation + ", then " + grow_failure);
    }
  } catch (const std::bad_alloc&) {
    return make_error(errc::io_error, "journal in " + dir_.string()
                                        + " is out of memory while indexing the log");
  }
  // The index commit is visible to new read transactions: the entries may leave the tail.
  std::lock_guard lock{tail_mutex_};
  for (std::size_t i = 0; i < entries.size();) {
    const std::string_view key = entries[i].key;
    const std::string_view prefix = key.substr(0, 1 + static_cast<unsigned char>(key[0]));
    if (auto it = tail_.find(prefix.substr(1)); it != tail_.end()) {
      auto& v = it->second;
      auto keep = std::find_if(v.begin(), v.end(),
                               [limit](const tail_entry& e) { return e.offset > limit; });
      v.erase(v.begin(), keep);
      if (v.empty())
        tail_.erase(it);
    }
    // Entries are sorted by key: skip the rest of this id's ([len][id] is their common prefix).
    while (i < entries.size() && std::string_view{entries[i].key}.substr(0, prefix.size()) == prefix)
      ++i;
  }
  watermark_.store(limit);
  return limit;
}

expected<std::vector<lmdb_journal::index_entry>>
lmdb_journal::read_for_index(log_offset from, log_offset to) const {
  std::vector<index_entry> out;
  out.reserve(static_cast<std::size_t>(to - from));
  read_txn txn{log_};
  read_cursor cursor;
  if (auto err = open_log_cursor(txn, cursor, "read for index"))
    return *err;
  offset_key start{from + 1};
  MDB_val k = start.val();
  MDB_val v;
  int rc = mdb_cursor_get(cursor.get(), &k, &v, MDB_SET_RANGE);
  while (rc == MDB_SUCCESS) {
    if (k.mv_size != 8)
      return corrupt_error("the log has a key of " + std::to_string(k.mv_size) + " bytes");
    const log_offset off = load_be(static_cast<const char*>(k.mv_data), 8);
    if (off > to)
      break;
    const auto id_seq = record_id_seq(to_view(v), number_of_shards_);
    if (!id_seq)
      return corrupt_error("record at log offset " + std::to_string(off) + " is malformed");
    id_key key{id_seq->first};
    const MDB_val ik = key.with_seq(id_seq->second);
    out.push_back(index_entry{std::string{to_view(ik)}, off});
    rc = mdb_cursor_get(cursor.get(), &k, &v, MDB_NEXT);
  }
  if (rc != MDB_SUCCESS && rc != MDB_NOTFOUND)
    return failure(rc, "mdb_cursor_get(log)");
  return out;
}

int lmdb_journal::write_index(const std::vector<index_entry>& entries, log_offset watermark,
                              std::string& operation) {
  if (index_.broken.load()) {
    operation = "writing the index after a failed map resize";
    return EIO;
  }
  MDB_txn* raw_txn = nullptr;
  if (int rc = mdb_txn_begin(index_.env, nullptr, 0, &raw_txn)) {
    operation = "mdb_txn_begin(index write)";
    return rc;
  }
  txn_guard txn{raw_txn};
  // Cursors of a write transaction are freed by LMDB when the transaction ends.
  MDB_cursor* cursor = nullptr;
  if (int rc = mdb_cursor_open(txn.get(), index_dbi_, &cursor)) {
    operation = "mdb_cursor_open(index)";
    return rc;
  }
  for (const auto& e : entries) {
    // A plain put: indexing an entry again (after a lost index commit) is harmless.
    MDB_val k = to_val(e.key);
    offset_key value{e.offset};
    MDB_val v = value.val();
    if (int rc = mdb_cursor_put(cursor, &k, &v, 0)) {
      operation = "mdb_cursor_put(index)";
      return rc;
    }
  }
  offset_key mark{watermark};
  MDB_val k = to_val(watermark_key);
  MDB_val v = mark.val();
  if (int rc = mdb_put(txn.get(), index_meta_dbi_, &k, &v, 0)) {
    operation = "mdb_put(index meta watermark)";
    return rc;
  }
  if (int rc = mdb_txn_commit(txn.release())) { // on failure LMDB has freed the transaction
    operation = "mdb_txn_commit(index)";
    return rc;
  }
  return MDB_SUCCESS;
}

// ---- read side ----

std::optional<error> lmdb_journal::open_index_cursor(read_txn& txn, read_cursor& cursor,
                                                     std::string_view caller) const {
  if (index_.broken.load())
    return broken_error(index_);
  if (int rc = txn.begin())
    return index_failure(rc, "mdb_txn_begin(" + std::string(caller) + ")");
  if (int rc = cursor.open(txn.get(), index_dbi_))
    return index_failure(rc, "mdb_cursor_open(index)");
  return std::nullopt;
}

std::optional<error> lmdb_journal::begin_log_read(read_txn& txn, std::string_view caller) const {
  if (log_.broken.load())
    return broken_error(log_);
  if (int rc = txn.begin())
    return failure(rc, "mdb_txn_begin(" + std::string(caller) + ")");
  return std::nullopt;
}

std::optional<error> lmdb_journal::open_log_cursor(read_txn& txn, read_cursor& cursor,
                                                   std::string_view caller) const {
  if (auto err = begin_log_read(txn, caller))
    return err;
  if (int rc = cursor.open(txn.get(), dbs_.log))
    return failure(rc, "mdb_cursor_open(log)");
  return std::nullopt;
}

error lmdb_journal::broken_error(const env_state& e) const {
  return make_error(errc::io_error, "journal in " + dir_.string() + " is unusable after a failed"
                                      " map resize of " + e.dir.string() + "; reopen it");
}

error lmdb_journal::corrupt_error(std::string what) const {
  return make_error(errc::corrupt, "data dir " + dir_.string() + ": " + what);
}

expected<std::vector<stored_event>>
lmdb_journal::replay(const std::string& persistence_id, sequence_nr from, std::size_t max) const {
  if (!valid_id(persistence_id))
    return make_error(errc::invalid_argument, "replay in " + dir_.string()
                                                + ": persistence id must be 1..255 bytes, is "
                                                + std::to_string(persistence_id.size()));
  std::vector<stored_event> out;
  if (max == 0)
    return out;
  const sequence_nr first = std::max<sequence_nr>(from, 1); // seqs start at 1

  // 1. The tail first: the id's newest entries. Its smallest `max` entries from `first` on are
  // all that can make it into the result.
  std::vector<tail_entry> recent;
  {
    std::lock_guard lock{tail_mutex_};
    if (auto it = tail_.find(persistence_id); it != tail_.end()) {
      const auto& v = it->second;
      auto b = std::lower_bound(v.begin(), v.end(), first,
                                [](const tail_entry& e, sequence_nr s) { return e.seq < s; });
      const auto n = std::min<std::size_t>(max, static_cast<std::size_t>(v.end() - b));
      recent.assign(b, b + static_cast<std::ptrdiff_t>(n));
    }
  }

  // 2. Then the index: an entry trimmed from the tail since step 1 is in the index's newest
  // snapshot already (the indexer trims only after its commit). The tail holds a suffix of
  // the id's stream, so if it starts at `first` the index has nothing before it.
  std::vector<tail_entry> indexed;
  if (recent.empty() || recent.front().seq != first) {
    read_txn txn{index_};
    read_cursor cursor;
    if (auto err = open_index_cursor(txn, cursor, "replay"))
      return *err;
    id_key key{persistence_id};
    MDB_val k = key.with_seq(first);
    MDB_val v;
    int rc = mdb_cursor_get(cursor.get(), &k, &v, MDB_SET_RANGE);
    while (rc == MDB_SUCCESS && indexed.size() < max) {
      auto seq = key.seq_of(k);
      if (!seq)
        break; // past the last key of this id
      if (v.mv_size != index_value_size)
        return corrupt_error("index entry of '" + persistence_id + "' has a bad size");
      indexed.push_back(tail_entry{*seq, load_be(static_cast<const char*>(v.mv_data), 8)});
      rc = mdb_cursor_get(cursor.get(), &k, &v, MDB_NEXT);
    }
    if (rc != MDB_SUCCESS && rc != MDB_NOTFOUND)
      return index_failure(rc, "mdb_cursor_get(index)");
  }

  // Merge by seq; an entry in both (indexed while we read) is the same log entry.
  std::vector<tail_entry> refs;
  refs.reserve(std::min(max, indexed.size() + recent.size()));
  for (std::size_t i = 0, t = 0; refs.size() < max && (i < indexed.size() || t < recent.size());) {
    if (t == recent.size() || (i < indexed.size() && indexed[i].seq < recent[t].seq)) {
      refs.push_back(indexed[i++]);
    } else {
      if (i < indexed.size() && indexed[i].seq == recent[t].seq)
        ++i;
      refs.push_back(recent[t++]);
    }
  }
  if (refs.empty())
    return out;

  // 3. The records, from the log.
  read_txn txn{log_};
  if (auto err = begin_log_read(txn, "replay"))
    return *err;
  out.reserve(refs.size());
  for (const auto& ref : refs) {
    offset_key lk{ref.offset};
    MDB_val k = lk.val();
    MDB_val rec;
    if (int rc = mdb_get(txn.get(), dbs_.log, &k, &rec)) {
      if (rc == MDB_NOTFOUND)
        return corrupt_error("index entry '" + persistence_id + "' seq " + std::to_string(ref.seq)
                             + " points to missing log offset " + std::to_string(ref.offset));
      return failure(rc, "mdb_get(log)");
    }
    stored_event event;
    if (!decode_record(to_view(rec), number_of_shards_, ref.offset, event)
        || event.persistence_id != persistence_id || event.seq != ref.seq)
      return corrupt_error("record at log offset " + std::to_string(ref.offset)
                           + " does not match its index entry");
    out.push_back(std::move(event));
  }
  return out;
}

expected<sequence_nr> lmdb_journal::highest_sequence_nr(const std::string& persistence_id) const {
  if (!valid_id(persistence_id))
    return make_error(errc::invalid_argument, "highest_sequence_nr in " + dir_.string()
                                                + ": persistence id must be 1..255 bytes, is "
                                                + std::to_string(persistence_id.size()));
  // The tail first, then the index (see replay). An id in the tail has its newest entry there.
  {
    std::lock_guard lock{tail_mutex_};
    if (auto it = tail_.find(persistence_id); it != tail_.end() && !it->second.empty())
      return it->second.back().seq;
  }
  read_txn txn{index_};
  read_cursor cursor;
  if (auto err = open_index_cursor(txn, cursor, "highest_sequence_nr"))
    return *err;
  id_key key{persistence_id};
  sequence_nr high = 0;
  if (int rc = find_highest(cursor.get(), key, high))
    return index_failure(rc, "mdb_cursor_get(index)");
  return high;
}

expected<std::optional<snapshot>>
lmdb_journal::load_snapshot(const std::string& persistence_id) const {
  if (!valid_id(persistence_id))
    return make_error(errc::invalid_argument, "load_snapshot in " + dir_.string()
                                                + ": persistence id must be 1..255 bytes, is "
                                                + std::to_string(persistence_id.size()));
  read_txn txn{log_};
  if (auto err = begin_log_read(txn, "load_snapshot"))
    return *err;
  id_key key{persistence_id};
  MDB_val k = key.prefix_val();
  MDB_val v;
  int rc = mdb_get(txn.get(), dbs_.snapshots, &k, &v);
  if (rc == MDB_NOTFOUND)
    return std::optional<snapshot>{};
  if (rc != MDB_SUCCESS)
    return failure(rc, "mdb_get(snapshots)");
  if (v.mv_size < 8)
    return corrupt_error("snapshot of '" + persistence_id + "' is too short");
  auto bytes = to_view(v);
  return std::optional<snapshot>{
    snapshot{persistence_id, load_be(bytes.data(), 8), std::string{bytes.substr(8)}}};
}

expected<log_page> lmdb_journal::read_log(log_offset from, std::size_t max) const {
  // Reading every shard is reading the log: the shard filter never drops an entry.
  return scan_log(std::nullopt, from, max, std::numeric_limits<std::size_t>::max());
}

expected<log_page> lmdb_journal::read_shard_log(shard_id shard, log_offset from, std::size_t max,
                                                std::size_t max_scan) const {
  if (shard >= number_of_shards_)
    return make_error(errc::invalid_argument, "read_shard_log in " + dir_.string() + ": shard "
                                                + std::to_string(shard) + " is out of range ("
                                                + std::to_string(number_of_shards_)
                                                + " shards)");
  return scan_log(shard, from, max, max_scan);
}

expected<log_page> lmdb_journal::scan_log(std::optional<shard_id> shard, log_offset from,
                                          std::size_t max, std::size_t max_scan) const {
  log_page page;
  page.next = std::max<log_offset>(from, 1); // offsets start at 1
  if (max == 0 || max_scan == 0)
    return page;
  read_txn txn{log_};
  read_cursor cursor;
  if (auto err = open_log_cursor(txn, cursor, "read_log"))
    return *err;
  offset_key start{page.next};
  MDB_val k = start.val();
  MDB_val v;
  std::size_t scanned = 0;
  int rc = mdb_cursor_get(cursor.get(), &k, &v, MDB_SET_RANGE);
  while (rc == MDB_SUCCESS) {
    if (k.mv_size != 8)
      return corrupt_error("the log has a key of " + std::to_string(k.mv_size) + " bytes");
    const log_offset off = load_be(static_cast<const char*>(k.mv_data), 8);
    const auto rec = to_view(v);
    const auto rec_shard = record_shard(rec, number_of_shards_);
    if (!rec_shard)
      return corrupt_error("record at log offset " + std::to_string(off) + " is malformed");
    page.next = after(off);
    if (!shard || *rec_shard == *shard) {
      stored_event event;
      if (!decode_record(rec, number_of_shards_, off, event))
        return corrupt_error("record at log offset " + std::to_string(off) + " is malformed");
      page.events.push_back(std::move(event));
      if (page.events.size() >= max)
        return page;
    }
    if (++scanned >= max_scan)
      return page;
    rc = mdb_cursor_get(cursor.get(), &k, &v, MDB_NEXT);
  }
  if (rc != MDB_NOTFOUND)
    return failure(rc, "mdb_cursor_get(log)");
  return page;
}

expected<log_offset> lmdb_journal::log_end() const {
  read_txn txn{log_};
  read_cursor cursor;
  if (auto err = open_log_cursor(txn, cursor, "log_end"))
    return *err;
  log_offset end = 0;
  if (int rc = find_log_end(cursor.get(), end))
    return failure(rc, "mdb_cursor_get(log)");
  return end;
}

expected<std::unique_ptr<journal>> open_lmdb_journal(lmdb_options opts) {
  return lmdb_journal::open(std::move(opts));
}

std::optional<log_offset> lmdb_index_watermark(const journal& j) {
  if (const auto* lj = dynamic_cast<const lmdb_journal*>(&j))
    return lj->index_watermark();
  return std::nullopt;
}

std::optional<std::uint64_t> lmdb_index_failures(const journal& j) {
  if (const auto* lj = dynamic_cast<const lmdb_journal*>(&j))
    return lj->index_failures();
  return std::nullopt;
}

std::optional<unsigned> lmdb_log_env_flags(const journal& j) {
  if (const auto* lj = dynamic_cast<const lmdb_journal*>(&j))
    return lj->log_env_flags();
  return std::nullopt;
}

} // namespace kontor::persistence

#include "runtime/persistence/journal_index.hpp"

#include <limits>
#include <system_error>

#include "runtime/persistence/lmdb_error.hpp"
#include "runtime/persistence/log_record.hpp"

namespace kontor::persistence::detail {

namespace {

namespace fs = std::filesystem;

constexpr std::string_view index_format = "kontor-journal-index/2";
constexpr std::string_view format_key = "format";
constexpr std::string_view watermark_key = "watermark";
constexpr unsigned int max_index_dbs = 3; // meta, ids, shards
constexpr std::size_t index_value_size = 8;

/// The highest sequence number of the id behind `key` (0 when none): seeks to the first key
/// after the id's last possible key and steps back.
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

/// The last position of `shard` behind `cursor` (0 when none), the same way.
int find_shard_end(MDB_cursor* cursor, shard_id shard, shard_offset& out) noexcept {
  out = 0;
  shard_key after{shard + 1, 0};
  MDB_val k = after.val();
  MDB_val v;
  int rc = mdb_cursor_get(cursor, &k, &v, MDB_SET_RANGE);
  if (rc == MDB_SUCCESS)
    rc = mdb_cursor_get(cursor, &k, &v, MDB_PREV);
  else if (rc == MDB_NOTFOUND)
    rc = mdb_cursor_get(cursor, &k, &v, MDB_LAST);
  if (rc == MDB_NOTFOUND)
    return MDB_SUCCESS;
  if (rc != MDB_SUCCESS)
    return rc;
  if (auto parsed = shard_key::parse(k); parsed && parsed->first == shard)
    out = parsed->second;
  return MDB_SUCCESS;
}

} // namespace

journal_index::journal_index(fs::path dir, env_ptr env) : env_(std::move(dir), std::move(env)) {}

expected<std::unique_ptr<journal_index>> journal_index::open(const fs::path& dir,
                                                             std::size_t map_size,
                                                             log_offset log_end) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec)
    return fs_error(ec, "creating the index dir", dir);
  // Data pages are fsynced at each commit, the meta page is not: integrity holds, an OS crash
  // may lose the last commit, which only means indexing again from an older watermark.
  auto env = open_env(dir, max_index_dbs, map_size, MDB_NOTLS | MDB_NOMETASYNC);
  if (!env)
    return std::move(env).error();
  std::unique_ptr<journal_index> out{new journal_index(dir, std::move(*env))};

  MDB_txn* raw_txn = nullptr;
  if (int rc = mdb_txn_begin(out->env_.get(), nullptr, 0, &raw_txn))
    return lmdb_error(rc, "mdb_txn_begin(open index)", dir);
  txn_guard txn{raw_txn};
  int rc = mdb_dbi_open(txn.get(), "meta", 0, &out->meta_);
  const bool fresh = rc == MDB_NOTFOUND;
  if (fresh) {
    auto empty = env_is_empty(txn.get(), dir);
    if (!empty)
      return std::move(empty).error();
    if (!*empty)
      return make_error(errc::unknown_format,
                        "index dir " + dir.string() + " is an LMDB environment without metadata");
    if (int rc2 = mdb_dbi_open(txn.get(), "meta", MDB_CREATE, &out->meta_))
      return lmdb_error(rc2, "mdb_dbi_open(index meta)", dir);
    MDB_val k = to_val(format_key);
    MDB_val v = to_val(index_format);
    if (int rc2 = mdb_put(txn.get(), out->meta_, &k, &v, 0))
      return lmdb_error(rc2, "mdb_put(index meta format)", dir);
    u64_key zero{0};
    k = to_val(watermark_key);
    v = zero.val();
    if (int rc2 = mdb_put(txn.get(), out->meta_, &k, &v, 0))
      return lmdb_error(rc2, "mdb_put(index meta watermark)", dir);
  } else if (rc != MDB_SUCCESS) {
    return lmdb_error(rc, "mdb_dbi_open(index meta)", dir);
  } else {
    MDB_val k = to_val(format_key);
    MDB_val v;
    rc = mdb_get(txn.get(), out->meta_, &k, &v);
    if (rc != MDB_SUCCESS && rc != MDB_NOTFOUND)
      return lmdb_error(rc, "mdb_get(index meta format)", dir);
    if (rc == MDB_NOTFOUND || to_view(v) != index_format)
      return make_error(errc::unknown_format,
                        "index dir " + dir.string() + " has format "
                          + (rc == MDB_NOTFOUND ? std::string{"<none>"} : printable(to_view(v)))
                          + ", this build reads " + std::string{index_format});
    k = to_val(watermark_key);
    rc = mdb_get(txn.get(), out->meta_, &k, &v);
    if (rc != MDB_SUCCESS && rc != MDB_NOTFOUND)
      return lmdb_error(rc, "mdb_get(index meta watermark)", dir);
    if (rc == MDB_NOTFOUND || v.mv_size != 8)
      return make_error(errc::corrupt, "index dir " + dir.string() + " has no valid watermark");
    out->opened_watermark_ = load_be(static_cast<const char*>(v.mv_data), 8);
    if (out->opened_watermark_ > log_end)
      return make_error(errc::corrupt, "index dir " + dir.string() + " indexes the log up to "
                                         + std::to_string(out->opened_watermark_)
                                         + ", beyond its end at " + std::to_string(log_end));
  }
  for (auto [name, dbi] : {std::pair{"ids", &out->ids_}, std::pair{"shards", &out->shards_}}) {
    int rc2 = mdb_dbi_open(txn.get(), name, fresh ? MDB_CREATE : 0, dbi);
    if (rc2 == MDB_NOTFOUND)
      return make_error(errc::corrupt,
                        "index dir " + dir.string() + " misses database " + std::string{name});
    if (rc2 != MDB_SUCCESS)
      return lmdb_error(rc2, "mdb_dbi_open(" + std::string{name} + ")", dir);
  }
  if (int rc2 = mdb_txn_commit(txn.release()))
    return lmdb_error(rc2, "mdb_txn_commit(open index)", dir);
  return out;
}

expected<void> journal_index::write(const std::vector<index_entry>& entries,
                                    log_offset watermark) {
  for (;;) {
    std::string operation;
    const int rc = write_once(entries, watermark, operation);
    if (rc == MDB_SUCCESS)
      return {};
    if (rc != MDB_MAP_FULL)
      return env_.failure(rc, operation);
    std::string grow_failure;
    if (!env_.grow_map(grow_failure))
      return env_.failure(rc, operation + ", then " + grow_failure);
  }
}

int journal_index::write_once(const std::vector<index_entry>& entries, log_offset watermark,
                              std::string& operation) {
  if (env_.broken()) {
    operation = "writing the index after a failed map resize";
    return EIO;
  }
  MDB_txn* raw_txn = nullptr;
  if (int rc = mdb_txn_begin(env_.get(), nullptr, 0, &raw_txn)) {
    operation = "mdb_txn_begin(index write)";
    return rc;
  }
  txn_guard txn{raw_txn};
  // Cursors of a write transaction are freed by LMDB when the transaction ends.
  MDB_cursor* id_cursor = nullptr;
  MDB_cursor* shard_cursor = nullptr;
  if (int rc = mdb_cursor_open(txn.get(), ids_, &id_cursor)) {
    operation = "mdb_cursor_open(index ids)";
    return rc;
  }
  if (int rc = mdb_cursor_open(txn.get(), shards_, &shard_cursor)) {
    operation = "mdb_cursor_open(index shards)";
    return rc;
  }
  for (const auto& e : entries) {
    // A plain put: indexing an entry again (after a lost index commit) is harmless.
    MDB_val k = to_val(e.key);
    u64_key value{e.offset};
    MDB_val v = value.val();
    if (int rc = mdb_cursor_put(e.by_shard ? shard_cursor : id_cursor, &k, &v, 0)) {
      operation = e.by_shard ? "mdb_cursor_put(index shards)" : "mdb_cursor_put(index ids)";
      return rc;
    }
  }
  u64_key mark{watermark};
  MDB_val k = to_val(watermark_key);
  MDB_val v = mark.val();
  if (int rc = mdb_put(txn.get(), meta_, &k, &v, 0)) {
    operation = "mdb_put(index meta watermark)";
    return rc;
  }
  if (int rc = mdb_txn_commit(txn.release())) { // on failure LMDB has freed the transaction
    operation = "mdb_txn_commit(index)";
    return rc;
  }
  return MDB_SUCCESS;
}

expected<std::vector<tail_entry>> journal_index::by_id(std::string_view id, sequence_nr from,
                                                       std::size_t max) const {
  std::vector<tail_entry> out;
  read_txn txn{env_};
  read_cursor cursor;
  if (auto err = open_read_cursor(env_, txn, cursor, ids_, "index by id"))
    return *err;
  id_key key{id};
  MDB_val k = key.with_seq(from);
  MDB_val v;
  int rc = mdb_cursor_get(cursor.get(), &k, &v, MDB_SET_RANGE);
  while (rc == MDB_SUCCESS && out.size() < max) {
    auto seq = key.seq_of(k);
    if (!seq)
      break; // past the last key of this id
    if (v.mv_size != index_value_size)
      return make_error(errc::corrupt, "index dir " + env_.dir().string() + ": entry of '"
                                         + std::string{id} + "' has a bad size");
    out.push_back(tail_entry{*seq, load_be(static_cast<const char*>(v.mv_data), 8)});
    rc = mdb_cursor_get(cursor.get(), &k, &v, MDB_NEXT);
  }
  if (rc != MDB_SUCCESS && rc != MDB_NOTFOUND)
    return env_.failure(rc, "mdb_cursor_get(index ids)");
  return out;
}

expected<std::vector<sequence_nr>>
journal_index::highest_seqs(const std::vector<std::string_view>& ids) const {
  std::vector<sequence_nr> out(ids.size(), 0);
  if (ids.empty())
    return out;
  read_txn txn{env_};
  read_cursor cursor;
  if (auto err = open_read_cursor(env_, txn, cursor, ids_, "highest seq"))
    return *err;
  for (std::size_t i = 0; i < ids.size(); ++i) {
    id_key key{ids[i]};
    if (int rc = find_highest(cursor.get(), key, out[i]))
      return env_.failure(rc, "reading the highest seq of '" + std::string{ids[i]} + "'");
  }
  return out;
}

expected<std::vector<tail_entry>> journal_index::by_shard(shard_id shard, shard_offset from,
                                                          std::size_t max) const {
  std::vector<tail_entry> out;
  read_txn txn{env_};
  read_cursor cursor;
  if (auto err = open_read_cursor(env_, txn, cursor, shards_, "index by shard"))
    return *err;
  shard_key key{shard, from};
  MDB_val k = key.val();
  MDB_val v;
  int rc = mdb_cursor_get(cursor.get(), &k, &v, MDB_SET_RANGE);
  while (rc == MDB_SUCCESS && out.size() < max) {
    auto parsed = shard_key::parse(k);
    if (!parsed || parsed->first != shard)
      break;
    if (v.mv_size != index_value_size)
      return make_error(errc::corrupt, "index dir " + env_.dir().string() + ": entry of shard "
                                         + std::to_string(shard) + " has a bad size");
    out.push_back(tail_entry{parsed->second, load_be(static_cast<const char*>(v.mv_data), 8)});
    rc = mdb_cursor_get(cursor.get(), &k, &v, MDB_NEXT);
  }
  if (rc != MDB_SUCCESS && rc != MDB_NOTFOUND)
    return env_.failure(rc, "mdb_cursor_get(index shards)");
  return out;
}

expected<shard_offset> journal_index::shard_end(shard_id shard) const {
  read_txn txn{env_};
  read_cursor cursor;
  if (auto err = open_read_cursor(env_, txn, cursor, shards_, "shard end"))
    return *err;
  shard_offset end = 0;
  if (int rc = find_shard_end(cursor.get(), shard, end))
    return env_.failure(rc, "reading the end of shard " + std::to_string(shard));
  return end;
}

expected<std::vector<shard_offset>> journal_index::shard_ends(std::uint32_t shards) const {
  std::vector<shard_offset> out(shards, 0);
  read_txn txn{env_};
  read_cursor cursor;
  if (auto err = open_read_cursor(env_, txn, cursor, shards_, "shard ends"))
    return *err;
  for (shard_id s = 0; s < shards; ++s)
    if (int rc = find_shard_end(cursor.get(), s, out[s]))
      return env_.failure(rc, "reading the end of shard " + std::to_string(s));
  return out;
}

} // namespace kontor::persistence::detail

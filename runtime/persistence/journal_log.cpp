#include "runtime/persistence/journal_log.hpp"

#include <limits>

#include "runtime/persistence/lmdb_error.hpp"
#include "runtime/persistence/log_record.hpp"

namespace kontor::persistence::detail {

namespace {

namespace fs = std::filesystem;

constexpr std::string_view journal_format = "kontor-journal/3";
constexpr std::string_view format_key = "format";
constexpr std::string_view shards_key = "shards";
constexpr unsigned int max_log_dbs = 3; // meta, log, snapshots

/// The offset after `off`, saturating: where a scan that examined `off` continues.
log_offset after(log_offset off) noexcept {
  return off == std::numeric_limits<log_offset>::max() ? off : off + 1;
}

} // namespace

journal_log::journal_log(fs::path dir, env_ptr env, std::uint32_t shards)
  : env_(std::move(dir), std::move(env)), shards_(shards) {}

error journal_log::corrupt(std::string what) const {
  return make_error(errc::corrupt, "data dir " + env_.dir().string() + ": " + what);
}

expected<std::unique_ptr<journal_log>> journal_log::open(const lmdb_options& opts) {
  const fs::path& dir = opts.dir;
  // Full durability for the log: no MDB_NOSYNC / MDB_NOMETASYNC / MDB_MAPASYNC, a commit
  // returns after fsync.
  auto env = open_env(dir, max_log_dbs, opts.initial_map_size, MDB_NOTLS);
  if (!env)
    return std::move(env).error();
  std::unique_ptr<journal_log> out{new journal_log(dir, std::move(*env), opts.number_of_shards)};

  MDB_txn* raw_txn = nullptr;
  if (int rc = mdb_txn_begin(out->env_.get(), nullptr, 0, &raw_txn))
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
  for (auto [name, dbi] : {std::pair{"log", &out->log_}, std::pair{"snapshots", &out->snapshots_}}) {
    int rc2 = mdb_dbi_open(txn.get(), name, flags, dbi);
    if (rc2 == MDB_NOTFOUND)
      return make_error(errc::corrupt,
                        "data dir " + dir.string() + " misses database " + std::string{name});
    if (rc2 != MDB_SUCCESS)
      return lmdb_error(rc2, "mdb_dbi_open(" + std::string{name} + ")", dir);
  }
  // Cursors of a write transaction are freed by LMDB when the transaction ends.
  MDB_cursor* log_cursor = nullptr;
  if (int rc2 = mdb_cursor_open(txn.get(), out->log_, &log_cursor))
    return lmdb_error(rc2, "mdb_cursor_open(log)", dir);
  if (int rc2 = find_last_u64(log_cursor, out->opened_end_))
    return lmdb_error(rc2, "reading the end of the log", dir);

  if (int rc2 = mdb_txn_commit(txn.release()))
    return lmdb_error(rc2, "mdb_txn_commit(open)", dir);
  return out;
}

std::optional<error> journal_log::walk_log(
  log_offset first, const char* what,
  const std::function<expected<walk>(log_offset, std::string_view)>& visit) const {
  read_txn txn{env_};
  read_cursor cursor;
  if (auto err = open_read_cursor(env_, txn, cursor, log_, what))
    return *err;
  u64_key start{first};
  MDB_val k = start.val();
  MDB_val v;
  int rc = mdb_cursor_get(cursor.get(), &k, &v, MDB_SET_RANGE);
  while (rc == MDB_SUCCESS) {
    if (k.mv_size != 8)
      return corrupt("the log has a key of " + std::to_string(k.mv_size) + " bytes");
    auto next = visit(load_be(static_cast<const char*>(k.mv_data), 8), to_view(v));
    if (!next)
      return next.error();
    if (*next == walk::stop)
      return std::nullopt;
    rc = mdb_cursor_get(cursor.get(), &k, &v, MDB_NEXT);
  }
  if (rc != MDB_NOTFOUND)
    return env_.failure(rc, "mdb_cursor_get(log)");
  return std::nullopt;
}

expected<log_page> journal_log::scan(log_offset from, std::size_t max) const {
  log_page page;
  page.next = std::max<log_offset>(from, 1); // offsets start at 1
  if (max == 0)
    return page;
  auto failed = walk_log(page.next, "read_log", [&](log_offset off, std::string_view record)
                                                   -> expected<walk> {
    stored_event event;
    if (!decode_record(record, shards_, off, event))
      return corrupt("record at log offset " + std::to_string(off) + " is malformed");
    page.next = after(off);
    const bool end_of_append = event.append_end;
    page.events.push_back(std::move(event));
    return page.events.size() >= max && end_of_append ? walk::stop : walk::next;
  });
  if (failed)
    return *failed;
  return page;
}

expected<std::vector<stored_event>> journal_log::fetch(const std::vector<tail_entry>& refs,
                                                       ref_kind kind, std::string_view id,
                                                       shard_id shard) const {
  std::vector<stored_event> out;
  if (refs.empty())
    return out;
  read_txn txn{env_};
  if (auto err = begin_read(env_, txn, "fetch"))
    return *err;
  out.reserve(refs.size());
  for (const auto& ref : refs) {
    u64_key lk{ref.offset};
    MDB_val k = lk.val();
    MDB_val rec;
    auto what = [&] {
      return kind == ref_kind::by_id
               ? "index entry '" + std::string{id} + "' seq " + std::to_string(ref.key)
               : "index entry of shard " + std::to_string(shard) + " position "
                   + std::to_string(ref.key);
    };
    if (int rc = mdb_get(txn.get(), log_, &k, &rec)) {
      if (rc == MDB_NOTFOUND)
        return corrupt(what() + " points to missing log offset " + std::to_string(ref.offset));
      return env_.failure(rc, "mdb_get(log)");
    }
    stored_event event;
    const bool matches =
      decode_record(to_view(rec), shards_, ref.offset, event)
      && (kind == ref_kind::by_id ? event.persistence_id == id && event.seq == ref.key
                                  : event.shard == shard && event.shard_pos == ref.key);
    if (!matches)
      return corrupt("record at log offset " + std::to_string(ref.offset) + " does not match "
                     + what());
    out.push_back(std::move(event));
  }
  return out;
}

expected<std::vector<index_entry>> journal_log::read_for_index(log_offset from,
                                                               log_offset to) const {
  std::vector<index_entry> out;
  out.reserve(static_cast<std::size_t>(to - from) * 2);
  auto failed = walk_log(from + 1, "read for index", [&](log_offset off, std::string_view record)
                                                        -> expected<walk> {
    if (off > to)
      return walk::stop;
    const auto h = peek_record(record, shards_);
    if (!h)
      return corrupt("record at log offset " + std::to_string(off) + " is malformed");
    id_key ik{h->id};
    const MDB_val ikv = ik.with_seq(h->seq);
    out.push_back(index_entry{std::string{to_view(ikv)}, off, false});
    shard_key sk{h->shard, h->shard_pos};
    out.push_back(index_entry{std::string{to_view(sk.val())}, off, true});
    return walk::next;
  });
  if (failed)
    return *failed;
  return out;
}

expected<std::optional<snapshot>> journal_log::load_snapshot(const std::string& id) const {
  read_txn txn{env_};
  if (auto err = begin_read(env_, txn, "load_snapshot"))
    return *err;
  id_key key{id};
  MDB_val k = key.prefix_val();
  MDB_val v;
  int rc = mdb_get(txn.get(), snapshots_, &k, &v);
  if (rc == MDB_NOTFOUND)
    return std::optional<snapshot>{};
  if (rc != MDB_SUCCESS)
    return env_.failure(rc, "mdb_get(snapshots)");
  if (v.mv_size < 8)
    return corrupt("snapshot of '" + id + "' is too short");
  auto bytes = to_view(v);
  return std::optional<snapshot>{snapshot{id, load_be(bytes.data(), 8), std::string{bytes.substr(8)}}};
}

expected<log_offset> journal_log::end() const {
  read_txn txn{env_};
  read_cursor cursor;
  if (auto err = open_read_cursor(env_, txn, cursor, log_, "log_end"))
    return *err;
  log_offset end = 0;
  if (int rc = find_last_u64(cursor.get(), end))
    return env_.failure(rc, "mdb_cursor_get(log)");
  return end;
}

} // namespace kontor::persistence::detail

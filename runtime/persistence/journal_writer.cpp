#include "runtime/persistence/journal_writer.hpp"

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <limits>
#include <map>
#include <new>

#include "runtime/persistence/log_record.hpp"

namespace kontor::persistence::detail {

namespace {

constexpr std::size_t max_payload_size = std::numeric_limits<std::uint32_t>::max() - 1024;

epoch_ms now_ms() noexcept {
  using namespace std::chrono;
  return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

} // namespace

std::uint64_t log_file_space::used(MDB_env* env) const {
  MDB_envinfo info;
  if (mdb_env_info(env, &info) != MDB_SUCCESS)
    return 0;
  return (static_cast<std::uint64_t>(info.me_last_pgno) + 1) * page_size;
}

journal_writer::journal_writer(journal_log& log, const journal_index& index, journal_tail& tail,
                               std::vector<shard_offset> shard_ends, std::size_t max_batch,
                               commit_observer on_commit, log_file_space& space)
  : log_(log),
    index_(index),
    tail_(tail),
    dir_(log.env().dir().string()),
    max_batch_(max_batch),
    on_commit_(std::move(on_commit)),
    space_(space),
    log_end_(log.opened_end()),
    shard_ends_(std::move(shard_ends)) {}

journal_writer::~journal_writer() {
  stop();
}

void journal_writer::start() {
  thread_ = std::thread{[this] { run(); }};
}

void journal_writer::stop() {
  {
    std::lock_guard lock{queue_mutex_};
    stopping_ = true;
  }
  queue_cv_.notify_all();
  if (thread_.joinable())
    thread_.join();
}

void journal_writer::append(append_request req, append_callback done) {
  work item{pending_append{std::move(req), std::move(done)}};
  if (auto refusal = enqueue(item)) {
    auto& a = std::get<pending_append>(item);
    if (a.done)
      a.done(make_error(refusal->code, refusal->message + "; append to '"
                                         + a.req.persistence_id + "' not written"));
  }
}

void journal_writer::save_snapshot(snapshot snap, std::function<void(expected<void>)> done) {
  work item{pending_snapshot{std::move(snap), std::move(done)}};
  if (auto refusal = enqueue(item)) {
    auto& s = std::get<pending_snapshot>(item);
    if (s.done)
      s.done(make_error(refusal->code, refusal->message + "; snapshot of '"
                                         + s.snap.persistence_id + "' not written"));
  }
}

void journal_writer::import(shard_import batch, import_callback done) {
  work item{pending_import{std::move(batch), std::move(done)}};
  if (auto refusal = enqueue(item)) {
    auto& i = std::get<pending_import>(item);
    if (i.done)
      i.done(make_error(refusal->code, refusal->message + "; import into shard "
                                         + std::to_string(i.batch.shard) + " not written"));
  }
}

std::optional<error> journal_writer::enqueue(work& item) {
  try {
    {
      std::lock_guard lock{queue_mutex_};
      if (stopping_)
        return make_error(errc::closed, "journal in " + dir_ + " is closing");
      queue_.push_back(std::move(item)); // strong guarantee: on bad_alloc `item` is intact
    }
    queue_cv_.notify_one();
    return std::nullopt;
  } catch (const std::bad_alloc&) {
    return make_error(errc::io_error, "journal in " + dir_ + " is out of memory");
  }
}

void journal_writer::run() {
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

void journal_writer::run_batch(std::vector<work>& batch) {
  std::vector<outcome> results(batch.size());
  const epoch_ms at = now_ms();
  batch_attempt attempt;
  for (;;) {
    std::unique_lock<std::mutex> guard;
    if (space_.prealloc)
      guard = space_.prealloc->guard(space_.used_end.load(), growth_bound(batch));
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
    if (!log_.env().grow_map(grow_failure)) {
      attempt.operation = std::move(grow_failure);
      break;
    }
  }
  if (attempt.rc != MDB_SUCCESS) {
    // Nothing of the batch was written; the journal stays open for later batches.
    error err = log_.env().failure(attempt.rc, attempt.operation);
    err.code = errc::io_error;
    for (auto& r : results)
      r = err;
  }
  // Readers find the batch's events in the tail (until the indexer has them) once its
  // callbacks run.
  if (attempt.committed) {
    if (space_.prealloc)
      space_.used_end = space_.used(log_.env().get());
    tail_.publish(added_, log_end_);
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
  deliver(batch, results);
}

void journal_writer::deliver(std::vector<work>& batch, std::vector<outcome>& results) {
  for (std::size_t i = 0; i < batch.size(); ++i) {
    auto& r = results[i];
    try {
      if (auto* a = std::get_if<pending_append>(&batch[i])) {
        if (!a->done)
          continue;
        if (auto* ok = std::get_if<append_result>(&r))
          a->done(*ok);
        else if (auto* err = std::get_if<error>(&r))
          a->done(std::move(*err));
        else
          a->done(make_error(errc::io_error, "append to '" + a->req.persistence_id + "' in "
                                               + dir_ + " has no outcome"));
      } else if (auto* s = std::get_if<pending_snapshot>(&batch[i])) {
        if (!s->done)
          continue;
        if (auto* err = std::get_if<error>(&r))
          s->done(std::move(*err));
        else
          s->done(expected<void>{});
      } else if (auto* imp = std::get_if<pending_import>(&batch[i])) {
        if (!imp->done)
          continue;
        if (auto* ok = std::get_if<import_result>(&r))
          imp->done(*ok);
        else if (auto* err = std::get_if<error>(&r))
          imp->done(std::move(*err));
        else
          imp->done(make_error(errc::io_error, "import into shard "
                                                 + std::to_string(imp->batch.shard) + " in "
                                                 + dir_ + " has no outcome"));
      }
    } catch (...) {
      // Callbacks must not throw; if one does, the other waiters still get their results.
    }
  }
}

std::optional<error> journal_writer::validate(const append_request& req) const {
  const auto& id = req.persistence_id;
  if (!valid_id(id))
    return make_error(errc::invalid_argument,
                      "append in " + dir_ + ": persistence id must be 1.."
                        + std::to_string(max_id_size) + " bytes, is " + std::to_string(id.size()));
  if (req.shard >= log_.shards())
    return make_error(errc::invalid_argument,
                      "append to '" + id + "' in " + dir_ + ": shard " + std::to_string(req.shard)
                        + " is out of range (journal has " + std::to_string(log_.shards())
                        + " shards)");
  if (req.events.empty())
    return make_error(errc::invalid_argument, "append to '" + id + "' in " + dir_ + " has no events");
  for (const auto& e : req.events)
    if (e.size() > max_payload_size)
      return make_error(errc::invalid_argument, "append to '" + id + "' in " + dir_ + ": event of "
                                                  + std::to_string(e.size()) + " bytes is too large");
  return std::nullopt;
}

int journal_writer::committed_highest(const std::vector<work>& batch, highest_map& out,
                                      std::string& operation) const {
  // The tail first, then the index, as in replay: an entry the indexer trims from the tail in
  // between is already in the index's newest snapshot.
  std::vector<std::string_view> not_in_tail;
  auto note = [&](std::string_view id) {
    if (!valid_id(id) || out.contains(id))
      return;
    if (auto high = tail_.highest_seq(id)) {
      out.emplace(id, *high);
    } else {
      out.emplace(id, 0);
      not_in_tail.push_back(id);
    }
  };
  for (const auto& item : batch) {
    if (const auto* a = std::get_if<pending_append>(&item))
      note(a->req.persistence_id);
    else if (const auto* imp = std::get_if<pending_import>(&item))
      for (const auto& ev : imp->batch.events)
        note(ev.persistence_id);
  }
  if (not_in_tail.empty())
    return MDB_SUCCESS;
  auto highs = index_.highest_seqs(not_in_tail);
  if (!highs) {
    operation = highs.error().message;
    return EIO;
  }
  for (std::size_t i = 0; i < not_in_tail.size(); ++i)
    out[not_in_tail[i]] = (*highs)[i];
  return MDB_SUCCESS;
}

journal_writer::batch_attempt journal_writer::write_batch(std::vector<work>& batch, epoch_ms at,
                                                          std::vector<outcome>& results) {
  batch_attempt out;
  added_.clear();
  auto fail = [&out](int rc, std::string operation) {
    out.rc = rc;
    out.operation = std::move(operation);
    out.committed = false;
    return out;
  };
  if (log_.env().broken())
    return fail(EIO, "writing after a failed map resize");

  // Highest seq per id and end per shard, read before the write transaction (no index read
  // inside it) and advanced by this batch, so that earlier items of the same batch count.
  batch_view view;
  view.shard_ends = shard_ends_;
  {
    std::string operation;
    if (int rc = committed_highest(batch, view.highest, operation))
      return fail(rc, std::move(operation));
  }

  MDB_txn* raw_txn = nullptr;
  if (int rc = mdb_txn_begin(log_.env().get(), nullptr, 0, &raw_txn))
    return fail(rc, "mdb_txn_begin(write)");
  txn_guard txn{raw_txn};

  // The log's end advances in memory and is kept only if the commit succeeds.
  log_offset end = log_end_;
  std::size_t others_written = 0; // snapshots and imports

  for (std::size_t i = 0; i < batch.size(); ++i) {
    if (auto* s = std::get_if<pending_snapshot>(&batch[i])) {
      const auto& snap = s->snap;
      if (!valid_id(snap.persistence_id) || snap.payload.size() > max_payload_size) {
        results[i] = make_error(errc::invalid_argument,
                                "snapshot in " + dir_ + ": persistence id must be 1..255 bytes (is "
                                  + std::to_string(snap.persistence_id.size())
                                  + ") and the payload below 4 GiB");
        continue;
      }
      id_key key{snap.persistence_id};
      MDB_val k = key.prefix_val();
      MDB_val v{8 + snap.payload.size(), nullptr};
      if (int rc = mdb_put(txn.get(), log_.snapshots_dbi(), &k, &v, MDB_RESERVE))
        return fail(rc, "mdb_put(snapshots)");
      auto* p = static_cast<char*>(v.mv_data);
      store_be(p, snap.seq, 8);
      std::copy(snap.payload.begin(), snap.payload.end(), p + 8);
      results[i] = std::monostate{};
      ++others_written;
      continue;
    }

    if (auto* imp = std::get_if<pending_import>(&batch[i])) {
      int rc = MDB_SUCCESS;
      std::string operation;
      results[i] = write_import(txn.get(), imp->batch, view, end, rc, operation);
      if (rc != MDB_SUCCESS)
        return fail(rc, std::move(operation));
      if (const auto* r = std::get_if<import_result>(&results[i])) {
        ++others_written;
        out.events += r->imported;
      }
      continue;
    }

    auto& a = std::get<pending_append>(batch[i]);
    const auto& req = a.req;
    if (auto err = validate(req)) {
      results[i] = std::move(*err);
      continue;
    }
    // Validate everything before the first put, so a refused append leaves no partial writes.
    const sequence_nr high = view.highest.at(req.persistence_id);
    if (high == std::numeric_limits<sequence_nr>::max() || req.first_seq != high + 1
        || req.events.size() - 1 > std::numeric_limits<sequence_nr>::max() - req.first_seq) {
      results[i] = make_error(errc::sequence_conflict,
                              "append to '" + req.persistence_id + "' in " + dir_
                                + ": first_seq is " + std::to_string(req.first_seq)
                                + " but the highest written seq is " + std::to_string(high));
      continue;
    }
    // MDB_APPEND refuses a key that is not above the last one: a log end that is off (or
    // wraps) fails the batch instead of overwriting.
    auto& shard_end = view.shard_ends[req.shard];
    for (std::size_t e = 0; e < req.events.size(); ++e) {
      const std::string_view payload = req.events[e];
      record_header h{req.shard, ++shard_end, req.first_seq + e, at, e + 1 == req.events.size(),
                      req.persistence_id};
      u64_key log_key{++end};
      MDB_val k = log_key.val();
      MDB_val v{record_size(h.id, payload), nullptr};
      if (int rc = mdb_put(txn.get(), log_.log_dbi(), &k, &v, MDB_APPEND | MDB_RESERVE))
        return fail(rc, "mdb_put(log)");
      encode_record(static_cast<char*>(v.mv_data), h, payload);
      added_.push_back(tail_add{req.persistence_id, h.seq, h.shard, h.shard_pos, end});
    }
    const sequence_nr last_seq = req.first_seq + req.events.size() - 1;
    view.highest[req.persistence_id] = last_seq;
    results[i] = append_result{last_seq, end, at};
    ++out.appends;
    out.events += req.events.size();
  }

  if (out.appends == 0 && others_written == 0)
    return out; // nothing to write: the guard aborts the transaction, no fsync needed
  const auto started = std::chrono::steady_clock::now();
  if (int rc = mdb_txn_commit(txn.release())) // on failure LMDB has freed the transaction
    return fail(rc, "mdb_txn_commit");
  out.commit_time = std::chrono::steady_clock::now() - started;
  out.committed = true;
  log_end_ = end;
  shard_ends_ = std::move(view.shard_ends);
  return out;
}

journal_writer::outcome journal_writer::write_import(MDB_txn* txn, const shard_import& imp,
                                                     batch_view& view, log_offset& end, int& rc,
                                                     std::string& operation) {
  const std::string where = "import into shard " + std::to_string(imp.shard) + " in " + dir_;
  if (imp.shard >= log_.shards())
    return make_error(errc::invalid_argument, where + ": the journal has "
                                                + std::to_string(log_.shards()) + " shards");
  const auto& events = imp.events;
  // Check all of it before the first put, so a refused import leaves nothing behind.
  for (std::size_t k = 0; k < events.size(); ++k) {
    const auto& ev = events[k];
    if (ev.shard != imp.shard || !valid_id(ev.persistence_id) || ev.payload.size() > max_payload_size
        || ev.shard_pos == 0 || ev.seq == 0)
      return make_error(errc::invalid_argument,
                        where + ": event " + std::to_string(k) + " is not a valid event of the shard");
    if (k > 0 && ev.shard_pos != events[k - 1].shard_pos + 1)
      return make_error(errc::invalid_argument,
                        where + ": positions are not consecutive at " + std::to_string(ev.shard_pos));
  }
  if (!events.empty() && !events.back().append_end)
    return make_error(errc::invalid_argument, where + ": the last event ends in the middle of an append");
  auto& shard_end = view.shard_ends[imp.shard];
  std::size_t first_new = 0;
  while (first_new < events.size() && events[first_new].shard_pos <= shard_end)
    ++first_new;
  if (first_new < events.size() && events[first_new].shard_pos != shard_end + 1)
    return make_error(errc::invalid_argument,
                      where + ": a gap: the journal holds the shard up to "
                        + std::to_string(shard_end) + ", the import starts at "
                        + std::to_string(events[first_new].shard_pos));
  if (first_new > 0) {
    // The import overlaps what the journal holds: that part must be the same history.
    const std::vector<stored_event> overlap(events.begin(),
                                            events.begin() + static_cast<std::ptrdiff_t>(first_new));
    if (auto err = check_overlap(txn, imp.shard, overlap, where, rc, operation))
      return std::move(*err);
    if (rc != MDB_SUCCESS)
      return std::monostate{};
  }
  highest_map next = view.highest; // moved forward only if every event fits
  for (std::size_t k = first_new; k < events.size(); ++k) {
    const auto& ev = events[k];
    auto& high = next[ev.persistence_id];
    if (ev.seq != high + 1)
      return make_error(errc::sequence_conflict,
                        where + ": event at position " + std::to_string(ev.shard_pos) + " of '"
                          + ev.persistence_id + "' has seq " + std::to_string(ev.seq)
                          + ", the journal holds that id up to seq " + std::to_string(high));
    high = ev.seq;
  }
  for (std::size_t k = first_new; k < events.size(); ++k) {
    const auto& ev = events[k];
    record_header h{imp.shard, ev.shard_pos, ev.seq, ev.written_at, ev.append_end,
                    ev.persistence_id};
    u64_key log_key{++end};
    MDB_val key = log_key.val();
    MDB_val v{record_size(h.id, ev.payload), nullptr};
    if ((rc = mdb_put(txn, log_.log_dbi(), &key, &v, MDB_APPEND | MDB_RESERVE))) {
      operation = "mdb_put(log, import)";
      return std::monostate{};
    }
    encode_record(static_cast<char*>(v.mv_data), h, ev.payload);
    added_.push_back(tail_add{ev.persistence_id, h.seq, h.shard, h.shard_pos, end});
  }
  if ((rc = write_import_snapshots(txn, imp, next, operation)))
    return std::monostate{};
  view.highest = std::move(next);
  if (first_new < events.size())
    shard_end = events.back().shard_pos;
  return import_result{shard_end, events.size() - first_new};
}

std::optional<error> journal_writer::check_overlap(MDB_txn* txn, shard_id shard,
                                                   const std::vector<stored_event>& overlap,
                                                   const std::string& where, int& rc,
                                                   std::string& operation) const {
  if (overlap.empty())
    return std::nullopt;
  if (overlap.back().shard_pos > shard_ends_[shard])
    return make_error(errc::sequence_conflict,
                      where + ": the shard got local appends at the imported positions");
  // Where each overlapping position is in the log: the tail first, then the index (see replay).
  const auto from = overlap.front().shard_pos;
  const auto n = overlap.size();
  auto recent = tail_.by_shard(shard, from, n);
  std::vector<tail_entry> indexed;
  if (recent.empty() || recent.front().key != from) {
    auto found = index_.by_shard(shard, from, n);
    if (!found) {
      rc = EIO;
      operation = found.error().message;
      return std::nullopt;
    }
    indexed = std::move(*found);
  }
  std::map<shard_offset, log_offset> where_is;
  for (const auto& e : indexed)
    where_is.emplace(e.key, e.offset);
  for (const auto& e : recent)
    where_is[e.key] = e.offset;
  // Every overlapping event must be the journal's event at its position: the same id, seq and
  // write time (a retried or overlapping stream), or the histories diverged.
  for (const auto& ev : overlap) {
    auto i = where_is.find(ev.shard_pos);
    if (i == where_is.end())
      return make_error(errc::corrupt, where + ": position " + std::to_string(ev.shard_pos)
                                         + " is below the shard's end but not in its index");
    u64_key lk{i->second};
    MDB_val k = lk.val();
    MDB_val v;
    if ((rc = mdb_get(txn, log_.log_dbi(), &k, &v))) {
      operation = "mdb_get(log, import overlap)";
      return std::nullopt;
    }
    auto h = peek_record(to_view(v), log_.shards());
    if (!h || h->id != ev.persistence_id || h->seq != ev.seq || h->written_at != ev.written_at)
      return make_error(errc::sequence_conflict,
                        where + ": position " + std::to_string(ev.shard_pos)
                          + " holds another event here than in the import (diverged histories)");
  }
  return std::nullopt;
}

int journal_writer::write_import_snapshots(MDB_txn* txn, const shard_import& imp,
                                           const highest_map& highest, std::string& operation) {
  for (const auto& snap : imp.snapshots) {
    if (!valid_id(snap.persistence_id) || snap.payload.size() > max_payload_size)
      continue;
    // A snapshot ahead of the events it summarises would hide missing events: skip it. Ids
    // that the import does not touch are not checked against the journal, so skip those too.
    auto high = highest.find(snap.persistence_id);
    if (high == highest.end() || snap.seq > high->second || snap.seq == 0)
      continue;
    id_key key{snap.persistence_id};
    MDB_val k = key.prefix_val();
    MDB_val v;
    int rc = mdb_get(txn, log_.snapshots_dbi(), &k, &v);
    if (rc == MDB_SUCCESS && v.mv_size >= 8
        && load_be(static_cast<const char*>(v.mv_data), 8) >= snap.seq)
      continue;
    if (rc != MDB_SUCCESS && rc != MDB_NOTFOUND) {
      operation = "mdb_get(snapshots, import)";
      return rc;
    }
    v = MDB_val{8 + snap.payload.size(), nullptr};
    if ((rc = mdb_put(txn, log_.snapshots_dbi(), &k, &v, MDB_RESERVE))) {
      operation = "mdb_put(snapshots, import)";
      return rc;
    }
    auto* p = static_cast<char*>(v.mv_data);
    store_be(p, snap.seq, 8);
    std::copy(snap.payload.begin(), snap.payload.end(), p + 8);
  }
  return MDB_SUCCESS;
}

std::uint64_t journal_writer::growth_bound(const std::vector<work>& batch) {
  constexpr std::uint64_t per_record = 128; // key, node header, alignment
  std::uint64_t bytes = 0;
  for (const auto& w : batch) {
    if (const auto* a = std::get_if<pending_append>(&w)) {
      for (const auto& ev : a->req.events)
        bytes += ev.size() + a->req.persistence_id.size() + per_record;
    } else if (const auto* s = std::get_if<pending_snapshot>(&w)) {
      bytes += s->snap.payload.size() + s->snap.persistence_id.size() + per_record;
    } else if (const auto* imp = std::get_if<pending_import>(&w)) {
      for (const auto& ev : imp->batch.events)
        bytes += ev.payload.size() + ev.persistence_id.size() + per_record;
      for (const auto& s : imp->batch.snapshots)
        bytes += s.payload.size() + s.persistence_id.size() + per_record;
    }
  }
  // Copy-on-write branch pages, the free list and the meta records come on top of the data.
  return 2 * bytes + (1u << 20);
}

} // namespace kontor::persistence::detail

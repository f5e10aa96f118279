#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "runtime/core/ids.hpp"
#include "runtime/persistence/errc.hpp"

namespace kontor::persistence {

/// One atomic write for one persistence id: all events land, in order, or none does.
struct append_request {
  shard_id shard = 0;             ///< the shard the events belong to (must be < shard count)
  std::string persistence_id;     ///< 1..255 bytes
  sequence_nr first_seq = 0;      ///< must equal highest_sequence_nr(persistence_id) + 1
  std::vector<std::string> events;///< opaque payloads, at least one
};

/// What a durable append reports back.
struct append_result {
  sequence_nr last_seq = 0;       ///< sequence number of the last event written
  log_offset last_offset = 0;     ///< log offset of the last event written
  epoch_ms written_at = 0;        ///< commit time, the same for every event of the batch
};

/// One event as read back from the journal.
struct stored_event {
  std::string persistence_id;
  sequence_nr seq = 0;
  shard_id shard = 0;
  log_offset offset = 0;          ///< position in this node's log (global, 1-based, local)
  epoch_ms written_at = 0;        ///< commit time of the append that wrote it (kept on import)
  std::string payload;
  shard_offset shard_pos = 0;     ///< position in its shard's log (the same on every node)
  bool append_end = true;         ///< the last event of its append (appends are atomic units)
};

/// A page of the log and where the next page starts. Pages never split an append: a page holds
/// whole appends only, so it may hold a few more events than asked for.
struct log_page {
  std::vector<stored_event> events; ///< in offset order
  log_offset next = 1;              ///< pass as `from` to continue; > every offset examined
};

/// A page of one shard's log. Like log_page, it never splits an append.
struct shard_page {
  std::vector<stored_event> events; ///< in shard-position order
  shard_offset next = 1;            ///< pass as `from` to continue
  shard_offset end = 0;             ///< the shard's last position when the page was read
};

/// The latest snapshot of one persistence id: state as of `seq`.
struct snapshot {
  std::string persistence_id;
  sequence_nr seq = 0;
  std::string payload;
};

/// Events of one shard copied from another node's journal (the catch-up stream), in shard
/// order, with the snapshots of their ids. Importing is idempotent: events at positions the
/// journal already holds are skipped, so a retried or overlapping stream is harmless.
struct shard_import {
  shard_id shard = 0;
  /// Consecutive positions of `shard` (shard_pos, persistence_id, seq, written_at, append_end
  /// and payload are kept; offset is assigned locally). The first may be at or below the
  /// journal's end of the shard, but none may leave a gap after it.
  std::vector<stored_event> events;
  /// Written when newer than the journal's snapshot of the id and not ahead of its events.
  std::vector<snapshot> snapshots;
};

/// What an import reports back.
struct import_result {
  shard_offset shard_end = 0;   ///< the journal's last position of the shard after the import
  std::size_t imported = 0;     ///< events written (the others were already there)
};

/// Runs on the journal's writer thread once the append's batch is durable (fsynced) or failed,
/// or at once on the caller's thread when the append is refused before queueing (closed).
/// Must be quick; it may queue further appends (append_async) but must not block on them.
using append_callback = std::function<void(expected<append_result>)>;

/// Runs on the writer thread once an import is durable or failed (nothing of it written).
using import_callback = std::function<void(expected<import_result>)>;

/// Observes every group commit (for metrics): events and appends in the batch, commit+fsync time.
using commit_observer =
  std::function<void(std::size_t appends, std::size_t events, std::chrono::nanoseconds commit_time)>;

/// An event journal: per-id streams with atomic appends, all in one ordered log (journal order,
/// offsets strictly increasing, local to this node). Every event also has a position in its
/// shard's log, dense per shard and the same on every node that holds the shard: a shard's log
/// is what moves between nodes (handoff, replicas) and what the cluster's read side follows.
/// Every method is thread-safe. Reads see every append whose callback ran.
class journal {
public:
  virtual ~journal() = default;

  /// Queues an atomic append. `done` runs exactly once: with the result after the batch holding
  /// this append is fsynced, or with an error (then nothing of it was written).
  virtual void append_async(append_request req, append_callback done) = 0;

  /// Queues a snapshot write (replaces older snapshots of that id). Durable with the next batch.
  /// `done` may be empty.
  virtual void save_snapshot_async(snapshot snap, std::function<void(expected<void>)> done) = 0;

  /// Events of `persistence_id` with seq >= `from`, in order, at most `max`.
  virtual expected<std::vector<stored_event>>
  replay(const std::string& persistence_id, sequence_nr from, std::size_t max) const = 0;

  /// The highest sequence number written for `persistence_id` (0 when none).
  virtual expected<sequence_nr> highest_sequence_nr(const std::string& persistence_id) const = 0;

  /// The latest snapshot of `persistence_id`, if any.
  virtual expected<std::optional<snapshot>> load_snapshot(const std::string& persistence_id) const = 0;

  /// Events with offset >= `from` in journal order: at most `max`, rounded up to the end of
  /// the last append (0 reads nothing).
  virtual expected<log_page> read_log(log_offset from, std::size_t max) const = 0;

  /// Events of one shard with shard position >= `from`, in order: at most `max`, rounded up to
  /// the end of the last append (0 reads nothing). Found through the shard index, so the cost
  /// does not depend on other shards' events.
  virtual expected<shard_page> read_shard_log(shard_id shard, shard_offset from,
                                              std::size_t max) const = 0;

  /// The last position of `shard` in this journal (0 when it holds none of its events).
  virtual expected<shard_offset> shard_end(shard_id shard) const = 0;

  /// Queues an import of another node's shard events (the catch-up stream's receiving end).
  /// `done` runs exactly once: after the events are fsynced, or with an error (then nothing of
  /// this import was written: a gap, a sequence that does not continue an id's stream, ...).
  virtual void import_async(shard_import batch, import_callback done) = 0;

  /// The offset of the last event in the log (0 when empty).
  virtual expected<log_offset> log_end() const = 0;

  /// The number of shards (fixed when the journal is created).
  virtual std::uint32_t number_of_shards() const noexcept = 0;

  /// Blocking append: queues and waits for the result. For tools and tests, not for actors.
  expected<append_result> append(append_request req);

  /// Blocking import: queues and waits for the result. For tools and tests, not for actors.
  expected<import_result> import(shard_import batch);
};

} // namespace kontor::persistence

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
  log_offset offset = 0;          ///< position in the journal's log (global, 1-based)
  epoch_ms written_at = 0;
  std::string payload;
};

/// A page of the log and where the next page starts.
struct log_page {
  std::vector<stored_event> events; ///< in offset order
  log_offset next = 1;              ///< pass as `from` to continue; > every offset examined
};

/// The latest snapshot of one persistence id: state as of `seq`.
struct snapshot {
  std::string persistence_id;
  sequence_nr seq = 0;
  std::string payload;
};

/// Runs on the journal's writer thread once the append's batch is durable (fsynced) or failed,
/// or at once on the caller's thread when the append is refused before queueing (closed).
/// Must be quick; it may queue further appends (append_async) but must not block on them.
using append_callback = std::function<void(expected<append_result>)>;

/// Observes every group commit (for metrics): events and appends in the batch, commit+fsync time.
using commit_observer =
  std::function<void(std::size_t appends, std::size_t events, std::chrono::nanoseconds commit_time)>;

/// An event journal: per-id streams with atomic appends, all in one ordered log (journal order,
/// offsets strictly increasing) that the read side polls. Every record carries its shard, so a
/// shard's log is the log filtered by shard: what a later cluster issue streams between nodes
/// (handoff, replicas). Every method is thread-safe. Reads see every append whose callback ran.
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

  /// Events with offset >= `from` in journal order, at most `max`.
  virtual expected<log_page> read_log(log_offset from, std::size_t max) const = 0;

  /// Events of one shard with offset >= `from`, in order, at most `max`. Examines at most
  /// `max_scan` log entries (so a sparse shard cannot make one call unbounded); `next` says
  /// where to continue.
  virtual expected<log_page> read_shard_log(shard_id shard, log_offset from, std::size_t max,
                                            std::size_t max_scan = 65536) const = 0;

  /// The offset of the last event in the log (0 when empty).
  virtual expected<log_offset> log_end() const = 0;

  /// The number of shards (fixed when the journal is created).
  virtual std::uint32_t number_of_shards() const noexcept = 0;

  /// Blocking append: queues and waits for the result. For tools and tests, not for actors.
  expected<append_result> append(append_request req);
};

} // namespace kontor::persistence

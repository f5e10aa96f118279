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
  shard_id shard = 0;             ///< the shard log the events go to (must be < shard count)
  std::string persistence_id;     ///< 1..255 bytes
  sequence_nr first_seq = 0;      ///< must equal highest_sequence_nr(persistence_id) + 1
  std::vector<std::string> events;///< opaque payloads, at least one
};

/// What a durable append reports back.
struct append_result {
  sequence_nr last_seq = 0;       ///< sequence number of the last event written
  log_offset last_offset = 0;     ///< shard-log offset of the last event written
  epoch_ms written_at = 0;        ///< commit time, the same for every event of the batch
};

/// One event as read back from the journal.
struct stored_event {
  std::string persistence_id;
  sequence_nr seq = 0;
  shard_id shard = 0;
  log_offset offset = 0;          ///< position in the shard's log
  epoch_ms written_at = 0;
  std::string payload;
};

/// The latest snapshot of one persistence id: state as of `seq`.
struct snapshot {
  std::string persistence_id;
  sequence_nr seq = 0;
  std::string payload;
};

/// Runs on the journal's writer thread once the append's batch is durable (fsynced) or failed.
/// Must be quick and must not call back into the journal's write side.
using append_callback = std::function<void(expected<append_result>)>;

/// Observes every group commit (for metrics): events and appends in the batch, commit+fsync time.
using commit_observer =
  std::function<void(std::size_t appends, std::size_t events, std::chrono::nanoseconds commit_time)>;

/// An event journal: per-id streams with atomic appends, plus one ordered log per shard that the
/// read side polls and that a later cluster issue streams between nodes (handoff, replicas).
/// Every method is thread-safe. Reads see every append whose callback has run.
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

  /// Events of one shard's log with offset >= `from`, in offset order, at most `max`.
  virtual expected<std::vector<stored_event>>
  read_shard_log(shard_id shard, log_offset from, std::size_t max) const = 0;

  /// The offset of the last event in a shard's log (0 when empty).
  virtual expected<log_offset> shard_log_end(shard_id shard) const = 0;

  /// The number of shard logs (fixed when the journal is created).
  virtual std::uint32_t number_of_shards() const noexcept = 0;

  /// Blocking append: queues and waits for the result. For tools and tests, not for actors.
  expected<append_result> append(append_request req);
};

} // namespace kontor::persistence

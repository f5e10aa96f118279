#pragma once

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <caf/actor.hpp>
#include <caf/behavior.hpp>
#include <caf/fwd.hpp>

#include "runtime/core/metrics.hpp"
#include "runtime/persistence/journal.hpp"
#include "runtime/persistence/lmdb_store.hpp"

namespace kontor::projection {

/// The data side of a read model, written by the application (for Kontor: accounts).
class projection_handler {
public:
  virtual ~projection_handler() = default;
  /// The format of what apply() stores; a store written in another format is rebuilt from 0.
  virtual std::string format() const = 0;
  /// The tables apply() uses; their table_ids are 0..n-1 in this order.
  virtual std::vector<std::string> tables() const = 0;
  /// Applies one event inside the batch's transaction. The read model hands it each event of
  /// each shard once, in shard-position order (it skips what its stored positions say it has);
  /// an append's events always come in one transaction. Must not touch anything outside `txn`.
  virtual void apply(persistence::store_writer& txn, const persistence::stored_event& ev) = 0;
};

/// What a read model reports (metrics, X-Projection-Offset).
class read_model_stats {
public:
  std::atomic<std::uint64_t> applied{0};    ///< events stored in all (every shard's position - 1)
  std::atomic<std::uint64_t> events{0};     ///< events applied since start
  std::atomic<std::int64_t> lag_ms{0};      ///< apply time - write time of the last event
  metric_histogram* lag_seconds = nullptr;  ///< per-event lag, if set

  /// Per shard, the last position stored (0: none).
  std::vector<shard_offset> applied_by_shard() const;
  /// Per shard, the highest end the poller reported (the shard's last position where it lives).
  std::vector<shard_offset> known_ends() const;
  /// Records the positions after a commit and the ends the batch reported.
  void record(const std::vector<shard_offset>& next, const std::vector<shard_offset>& ends);

private:
  mutable std::mutex mutex_;
  std::vector<shard_offset> applied_;
  std::vector<shard_offset> ends_;
};

/// Settings of a read model.
struct read_model_settings {
  std::filesystem::path dir;
  std::uint32_t number_of_shards = 64;   ///< a store kept for another count is rebuilt
  std::shared_ptr<projection_handler> handler;
  std::shared_ptr<read_model_stats> stats = std::make_shared<read_model_stats>();
  std::chrono::milliseconds resubscribe_after{std::chrono::seconds(2)};
  /// Where it reports once promote() is called (a rebuild takes over the stats of the model it
  /// replaces, so metrics and X-Projection-Offset keep one source); unset: `stats` for good.
  std::shared_ptr<read_model_stats> promoted_stats;
};

/// A read model on this node: an LMDB store with the handler's tables and, per shard, the
/// position it has applied up to. Each batch and the positions after it commit in one
/// transaction, so a crash can neither lose nor double-apply an event. A missing, corrupt or
/// other-format store is rebuilt by replay from the start, with progress in the log.
class read_model {
public:
  /// Opens (or rebuilds) the store and starts the actor that applies batches.
  static persistence::expected<std::unique_ptr<read_model>> open(caf::actor_system& sys,
                                                                 read_model_settings settings);
  ~read_model();
  read_model(const read_model&) = delete;
  read_model& operator=(const read_model&) = delete;

  /// Subscribes to `poller` (or its singleton proxy) from the stored positions, and again
  /// whenever no batch came for `resubscribe_after` (a restarted or moved poller knows no
  /// subscribers).
  void subscribe(const caf::actor& poller);

  /// From now on reports into `settings.promoted_stats` (the positions it has go there at once).
  void promote();

  /// Stops its actors and waits until the one that commits has ended; queries may still read
  /// the store until it is destroyed.
  void stop_and_wait();

  /// The store, for queries (read transactions from any thread).
  const persistence::lmdb_store& store() const noexcept { return *store_; }
  const read_model_stats& stats() const noexcept {
    return promoted_ ? *settings_.promoted_stats : *settings_.stats;
  }
  /// The actor batches go to (its public face; an exit of it stops the model too).
  const caf::actor& actor() const noexcept { return actor_; }

private:
  read_model(read_model_settings s, std::unique_ptr<persistence::lmdb_store> store);

  read_model_settings settings_;
  std::unique_ptr<persistence::lmdb_store> store_;
  caf::actor actor_;  ///< the front
  caf::actor model_;  ///< the detached actor that commits batches
  std::atomic<bool> promoted_{false};
};

/// The handlers of a poller subscriber's public face: a scheduled actor that subscribes to the
/// poller in its own name and relays every batch to `inner` (a detached actor that blocks on
/// LMDB) and its answer back, so that the detached actor never talks to another node (in CAF
/// 0.17.6 that can hang the actor system's shutdown). Read models and policies use it.
caf::behavior subscriber_front(caf::event_based_actor* self, caf::actor inner);

} // namespace kontor::projection

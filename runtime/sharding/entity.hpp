#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/core/ids.hpp"

namespace kontor::persistence {
class journal;
} // namespace kontor::persistence

namespace kontor::sharding {

/// What handling one command produced.
struct effect {
  /// Encoded events to append atomically before answering. Empty: answer `reply` at once.
  std::vector<std::string> events;
  /// The answer when `events` is empty (a rejection, a query, a replayed outcome).
  std::string reply;
};

/// The behaviour of one live entity: its state plus decide/evolve on encoded commands and
/// events. The runtime owns one instance per live entity and calls it from one thread at a time.
/// Implementations live outside runtime/ (the runtime knows nothing of accounts).
class entity_logic {
public:
  virtual ~entity_logic() = default;

  /// What `restore` made of a snapshot.
  enum class restored {
    ok,         ///< the state is the snapshot's: recovery goes on with the events after it
    outdated,   ///< readable but unfit under the current settings; the state is still the
                ///< initial one: recovery replays every event from the first
    unreadable, ///< the bytes cannot be read: the entity fails to start
  };

  /// Recovery, phase 1: restores the state from a snapshot written by `snapshot()` as of `seq`.
  virtual restored restore(sequence_nr seq, std::string_view snapshot) = 0;

  /// Recovery, phase 2: applies one stored event. Returns false when it cannot be read.
  virtual bool recover(sequence_nr seq, std::string_view event) = 0;

  /// Decides `command` against the current state at time `now`; must not change the state.
  /// When the effect has events, exactly one of `persisted()` / `aborted()` follows.
  virtual effect handle(std::string_view command, epoch_ms now) = 0;

  /// The events of the last `handle` are durable: applies them and returns the answer.
  virtual std::string persisted() = 0;

  /// The events of the last `handle` were not written: forgets them (the state is unchanged).
  virtual void aborted() = 0;

  /// The state, encoded for a snapshot.
  virtual std::string snapshot() const = 0;
};

/// Makes the logic of a newly started entity, in its empty initial state.
using entity_factory = std::function<std::unique_ptr<entity_logic>(const entity_id&)>;

/// A further entity type of a region (Akka's EntityTypeKey): the entities whose ids are
/// "<key>:<name>" (entity_type_of(id) == key). They share the region's shards, journal, moves
/// and event feed with the default type; only their logic differs.
struct entity_type {
  std::string key;
  entity_factory factory;
};

/// Counters a region keeps for metrics; shared with whoever reports them.
struct region_stats {
  explicit region_stats(std::uint32_t shards = 4096) : live_by_shard(shards), queued_by_shard(shards) {}
  std::atomic<std::int64_t> live_entities{0};    ///< started and not yet stopped
  std::vector<std::atomic<std::int64_t>> live_by_shard; ///< the same per shard
  /// Requests handed to a shard's entities and not yet answered (in their mailboxes, stashed
  /// during a recovery, or waiting for their append), per shard: the shard's queue depth.
  std::vector<std::atomic<std::int64_t>> queued_by_shard;
  std::atomic<std::uint64_t> refused_entity_full{0}; ///< refused at once: the entity's queue was full
  std::atomic<std::uint64_t> refused_shard_full{0};  ///< refused at once: the shard's queue was full
  std::atomic<std::uint64_t> recoveries{0};      ///< entity starts (recovery runs)
  std::atomic<std::uint64_t> passivations{0};    ///< entities stopped for being idle
  std::atomic<std::uint64_t> events_appended{0}; ///< events made durable by entities
  std::atomic<std::uint64_t> journal_failures{0};///< appends the journal refused
};

/// Everything a shard region needs to run entities.
struct region_settings {
  std::uint32_t number_of_shards = 64;          ///< shard = stable_hash(id) % number_of_shards
  persistence::journal* journal = nullptr;      ///< not owned; outlives the region
  entity_factory factory;                       ///< makes the logic of default-type entities
  std::vector<entity_type> types;               ///< further types, by the key in their ids
  std::size_t snapshot_every = 1000;            ///< events between snapshots (0: never)
  bool recover_from_snapshots = true;           ///< false: replay every event, ignore snapshots
  std::chrono::milliseconds passivate_after{std::chrono::minutes(2)}; ///< idle time before stop
  std::size_t replay_batch = 1024;              ///< events read per recovery step
  std::shared_ptr<region_stats> stats = std::make_shared<region_stats>();
  /// In a cluster: the region serves only the shards the coordinator allocated to this node
  /// and passes the others on (attach it to the cluster with attach_region). Otherwise it serves
  /// every shard itself.
  bool clustered = false;
  std::string self_node;                        ///< this node's id (clustered)
  std::chrono::milliseconds route_timeout{std::chrono::seconds(3)}; ///< longest a request waits
  std::size_t route_buffer = 10000;             ///< requests waiting at most (then 503 at once)
  /// Backpressure: requests one entity may have queued (including the one it handles); one
  /// more is refused at once with errc::overloaded instead of waiting. 0: unbounded.
  std::size_t max_entity_queue = 0;
  /// The same for all entities of one shard together. 0: unbounded.
  std::size_t max_shard_queue = 0;
};

/// The logic of a newly started entity `id`: from the factory of its type (entity_type_of), the
/// default factory for ids without a registered type key.
std::unique_ptr<entity_logic> make_logic(const region_settings& settings, const entity_id& id);

} // namespace kontor::sharding

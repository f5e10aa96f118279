#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>

#include <caf/actor.hpp>
#include <caf/fwd.hpp>

namespace kontor::sharding {

/// Settings of the shard coordinator.
struct coordinator_settings {
  std::uint32_t number_of_shards = 64;
  caf::actor cluster;                 ///< the cluster daemon of the node that runs it
  std::size_t min_members = 1;        ///< no shard is allocated before this many members are up
  std::chrono::milliseconds rebalance_interval{std::chrono::seconds(2)};
  std::size_t max_simultaneous_rebalance = 4; ///< shards moving at once (rebalance and leaves)
  std::chrono::milliseconds quorum_timeout{std::chrono::seconds(2)};   ///< per table read/write
  std::chrono::milliseconds handoff_timeout{std::chrono::seconds(10)}; ///< old owner stops
  std::chrono::milliseconds take_over_timeout{std::chrono::seconds(60)}; ///< new owner copies
};

/// Spawns the shard coordinator, the cluster singleton that decides where shards live.
///
/// It starts by reading the allocation table from the table stores (service "tables") of a
/// majority of the up members — and of the members the newest table it finds was written by —
/// under a ballot higher than any they promised, and writes it back; only then does it answer
/// regions. Every later change is written to a majority before it takes effect and is pushed to
/// every region (shard_map). It allocates unallocated shards to the member with the fewest
/// (once `min_members` are up), moves the shards of leaving members away, and evens out the
/// spread every `rebalance_interval`, at most `max_simultaneous_rebalance` moves at a time. A
/// move: regions hold the shard's requests, the old owner stops its entities between commands,
/// the new owner copies the shard's log up to the old owner's last position, the table is
/// committed, and the held requests go to the new owner. A move that fails before the commit
/// leaves the shard where it was. The shards of a downed member stay allocated to it
/// (unavailable) until it returns.
caf::actor spawn_coordinator(caf::actor_system& sys, coordinator_settings settings);

} // namespace kontor::sharding

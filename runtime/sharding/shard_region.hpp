#pragma once

#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <caf/actor.hpp>
#include <caf/fwd.hpp>

#include "runtime/cluster/member.hpp"
#include "runtime/sharding/allocation.hpp"
#include "runtime/sharding/entity.hpp"

namespace kontor::sharding {

/// Where each shard lives as this node knows it (the coordinator's last table, the shards
/// moving, the cluster's reachability): read by other parts of the node (the read side's poller,
/// GET /cluster/shards) from any thread. The region keeps it up to date.
class shard_directory {
public:
  /// A shard as seen from here.
  struct entry {
    std::string owner;  ///< node id ("" = not allocated)
    bool moving = false;
    bool available = false; ///< the owner is up (or leaving) and reachable from here
  };

  /// The table version and every shard's entry.
  std::pair<std::uint64_t, std::vector<entry>> shards() const;
  /// The service `name` (e.g. "log") of the node that holds `shard` now, if it is reachable.
  caf::actor service_of(shard_id shard, const std::string& name) const;
  /// The cluster state the directory was last updated with.
  cluster::cluster_state cluster() const;
  /// Whether this node has received a table from the coordinator (it can route).
  bool routable() const;

  /// The region's update.
  void update(const allocation_table& table, const std::vector<shard_id>& moving,
              const cluster::cluster_state& cluster, bool have_table);

private:
  mutable std::mutex mutex_;
  allocation_table table_;
  std::vector<bool> moving_;
  cluster::cluster_state cluster_;
  bool have_table_ = false;
};

/// Starts the local shard region. It takes `entity_envelope` requests (from this node's gateway)
/// and `routed_envelope` ones (from other nodes' regions) and answers with the entity's reply;
/// `entity_read` and `entity_info_request` go to the owner the same way (its journal, its shard).
/// On its own (settings.clustered false) it serves every shard. In a cluster it serves the
/// shards the coordinator allocated to this node, passes the others on to their owner's
/// region, holds requests (bounded, with a deadline) while their shard moves or has no known
/// home, and answers `errc::shard_unavailable` at once when the owner is down. It stops a shard
/// for a handoff, copies one in to take it over, and resumes one whose move failed.
/// `directory` (may be null) is kept up to date. Send it an exit message to stop it.
caf::actor spawn_shard_region(caf::actor_system& sys, region_settings settings,
                              std::shared_ptr<shard_directory> directory = nullptr);

/// Connects a clustered region to this node's cluster daemon and the coordinator's proxy
/// (after both exist: the daemon needs the region among its services first).
void attach_region(const caf::actor& region, const caf::actor& cluster_daemon,
                   const caf::actor& coordinator_proxy);

} // namespace kontor::sharding

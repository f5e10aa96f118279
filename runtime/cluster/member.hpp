#pragma once

// Who is in the cluster: members, their states and the versioned membership view that the
// leader moves forward and every node applies (see cluster_daemon.hpp for the protocol).

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <caf/actor.hpp>
#include <caf/meta/type_name.hpp>

namespace kontor::cluster {

/// A node's durable identity: created once in its data dir, the same across restarts.
using node_id = std::string;

/// A member's state. joining → up → leaving → exiting → removed, and down (decided by the
/// keep-majority strategy, or because a new incarnation of the node replaced it).
enum class member_status : std::uint8_t { joining = 0, up, leaving, exiting, down, removed };

/// The API's name of a status ("up", ...).
const char* to_string(member_status s) noexcept;

/// One member: a node's incarnation (a start of it) with its place in the cluster.
struct member {
  node_id id;
  std::uint64_t incarnation = 0; ///< random per start; (id, incarnation) names a member
  std::string name;              ///< node-name from the config (the pod name on Kubernetes)
  std::string address;           ///< advertised host:port of its cluster port
  member_status status = member_status::joining;
  std::uint64_t age = 0;         ///< join order, 1 = oldest; never reused
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, member& x) {
  return f(caf::meta::type_name("member"), x.id, x.incarnation, x.name, x.address, x.status, x.age);
}

/// The membership as the leader decided it. Views are totally ordered by version; a node
/// applies only views newer than its own.
struct membership {
  std::uint64_t version = 0;
  std::uint64_t next_age = 1;   ///< the age the next joiner gets
  std::vector<member> members;  ///< sorted by age (oldest first)

  /// The member with `id`, if any.
  const member* find(const node_id& id) const;
  member* find(const node_id& id);
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, membership& x) {
  return f(caf::meta::type_name("membership"), x.version, x.next_age, x.members);
}

/// The actors a node offers to the others (its shard region, shard log server, ...), by name.
using service_map = std::map<std::string, caf::actor>;

/// What this node knows of the cluster right now: the view, which members it can reach, the
/// services each member it is connected to offers, and the leader. Sent to local subscribers
/// whenever any of it changes, and readable at any time (cluster_daemon.hpp).
struct cluster_state {
  node_id self;
  std::uint64_t self_incarnation = 0;
  membership view;
  std::map<node_id, bool> reachable;          ///< for every other member; self is always reachable
  std::map<node_id, service_map> services;    ///< of the members this node is connected to (and self)
  node_id leader;                             ///< the oldest up member this node can reach ("": none)
  bool joined = false;                        ///< this node is a member (welcomed or formed)

  /// Whether `id` is self or a member this node currently reaches.
  bool reaches(const node_id& id) const;
  /// The service `name` of member `id` (invalid when unknown).
  caf::actor service(const node_id& id, const std::string& name) const;
  /// The member `id`'s entry in the view (null when not a member).
  const member* find(const node_id& id) const { return view.find(id); }
  /// Members with status up or leaving, oldest first: those that may run singletons and shards.
  std::vector<const member*> serving() const;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, cluster_state& x) {
  return f(caf::meta::type_name("cluster_state"), x.self, x.self_incarnation, x.view, x.reachable,
           x.services, x.leader, x.joined);
}

} // namespace kontor::cluster

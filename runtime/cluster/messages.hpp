#pragma once

// The membership protocol between the nodes' cluster daemons. Every type here crosses nodes:
// it is in the kontor_cluster type-ID block.

#include <cstdint>
#include <string>

#include <caf/atom.hpp>
#include <caf/meta/type_name.hpp>
#include <caf/type_id.hpp>

#include "runtime/cluster/member.hpp"

namespace kontor::cluster {

/// The version of this protocol; a node speaking another one is refused.
inline constexpr std::uint32_t protocol_version = 1;

/// Joiner → a seed's daemon: (join_atom, join_request) → join_reply.
struct join_request {
  member joiner;                     ///< status joining, age 0 (the leader assigns it)
  std::string secret_digest;         ///< digest of the joiner's cluster secret
  std::uint32_t number_of_shards = 0;
  std::uint32_t protocol = protocol_version;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, join_request& x) {
  return f(caf::meta::type_name("join_request"), x.joiner, x.secret_digest, x.number_of_shards,
           x.protocol);
}

/// How a join request went.
enum class join_outcome : std::uint8_t {
  welcome = 0, ///< the joiner is a member (status joining); `view` includes it
  refused,     ///< it can never join this cluster (`reason`): another secret, shard count, ...
  redirect,    ///< ask the leader at `leader_address`
  not_ready,   ///< the seed is not in a cluster yet: try again later
  no_leader,   ///< the seed is in a cluster but reaches no leader now: try again later
};

/// The answer to a join_request.
struct join_reply {
  join_outcome outcome = join_outcome::not_ready;
  std::string reason;
  std::string leader_address;
  membership view;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, join_reply& x) {
  return f(caf::meta::type_name("join_reply"), x.outcome, x.reason, x.leader_address, x.view);
}

/// Every interval, from each daemon to every member's daemon: alive, and which view it has.
struct heartbeat {
  node_id from;
  std::uint64_t incarnation = 0;
  std::uint64_t version = 0;  ///< the sender's view version
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, heartbeat& x) {
  return f(caf::meta::type_name("heartbeat"), x.from, x.incarnation, x.version);
}

/// A member's request to the leader: (leave_atom | exit_atom, member_ref).
struct member_ref {
  node_id id;
  std::uint64_t incarnation = 0;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, member_ref& x) {
  return f(caf::meta::type_name("member_ref"), x.id, x.incarnation);
}

/// (join_atom, join_request) → join_reply
using join_atom = caf::atom_constant<caf::atom("cl_join")>;
/// (view_atom, membership): a newer view; (view_atom) → membership: ask for the current one.
using view_atom = caf::atom_constant<caf::atom("cl_view")>;
/// (services_atom) → service_map: the actors a node offers.
using services_atom = caf::atom_constant<caf::atom("cl_svcs")>;
/// (leave_atom, member_ref): to the leader, the member starts leaving.
using leave_atom = caf::atom_constant<caf::atom("cl_leave")>;
/// (exit_atom, member_ref): to the leader, a leaving member has handed everything over.
using exit_atom = caf::atom_constant<caf::atom("cl_exit")>;
/// Local: (subscribe_atom, actor) → the actor gets every cluster_state.
using subscribe_atom = caf::atom_constant<caf::atom("cl_sub")>;
/// Local: ticks and connection attempts of the daemon.
using tick_atom = caf::atom_constant<caf::atom("cl_tick")>;
using connected_atom = caf::atom_constant<caf::atom("cl_conn")>;
using attempt_atom = caf::atom_constant<caf::atom("cl_try")>;
using start_atom = caf::atom_constant<caf::atom("cl_start")>;

} // namespace kontor::cluster

CAF_BEGIN_TYPE_ID_BLOCK(kontor_cluster, caf::first_custom_type_id + 100)
  CAF_ADD_TYPE_ID(kontor_cluster, (kontor::cluster::member))
  CAF_ADD_TYPE_ID(kontor_cluster, (kontor::cluster::membership))
  CAF_ADD_TYPE_ID(kontor_cluster, (kontor::cluster::service_map))
  CAF_ADD_TYPE_ID(kontor_cluster, (kontor::cluster::cluster_state))
  CAF_ADD_TYPE_ID(kontor_cluster, (kontor::cluster::join_request))
  CAF_ADD_TYPE_ID(kontor_cluster, (kontor::cluster::join_reply))
  CAF_ADD_TYPE_ID(kontor_cluster, (kontor::cluster::heartbeat))
  CAF_ADD_TYPE_ID(kontor_cluster, (kontor::cluster::member_ref))
CAF_END_TYPE_ID_BLOCK(kontor_cluster)

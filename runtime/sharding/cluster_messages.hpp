#pragma once

// The sharding protocol between nodes: the coordinator's table pushes, handoffs, and requests
// that regions pass on to the shard's owner. Every type here crosses nodes: it is in the
// kontor_sharding type-ID block.

#include <cstdint>
#include <vector>

#include <caf/atom.hpp>
#include <caf/meta/type_name.hpp>
#include <caf/type_id.hpp>

#include "runtime/sharding/allocation.hpp"
#include "runtime/stream/messages.hpp" // stored_event's inspect
#include "runtime/sharding/messages.hpp"

namespace kontor::sharding {

/// What the coordinator tells every region: the committed table, and the shards being moved
/// now (requests for those wait in the regions until the move is over).
struct shard_map {
  allocation_table table;
  std::vector<shard_id> moving;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, shard_map& x) {
  return f(caf::meta::type_name("shard_map"), x.table, x.moving);
}

/// A request a region passes on to the region of the shard's owner (`hops` bounds the passing
/// on while regions disagree about the owner for a moment).
struct routed_envelope {
  entity_envelope envelope;
  std::uint8_t hops = 0;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, routed_envelope& x) {
  return f(caf::meta::type_name("routed_envelope"), x.envelope, x.hops);
}

/// A read of one entity's stored events, routed like a command to the node that owns its shard
/// (the audit log and temporal queries must read the owner's journal).
struct entity_read {
  entity_id id;
  sequence_nr from = 1;
  std::uint32_t max = 1000;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, entity_read& x) {
  return f(caf::meta::type_name("entity_read"), x.id, x.from, x.max);
}

/// The answer to an entity_read: events from `from` on (at most `max`) and the entity's
/// highest sequence number.
struct entity_events {
  std::vector<persistence::stored_event> events;
  sequence_nr highest = 0;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, entity_events& x) {
  return f(caf::meta::type_name("entity_events"), x.events, x.highest);
}

/// An entity_read a region passes on to the owner's region.
struct routed_read {
  entity_read read;
  std::uint8_t hops = 0;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, routed_read& x) {
  return f(caf::meta::type_name("routed_read"), x.read, x.hops);
}

/// A question about one entity, routed like a command to the node that owns its shard: where
/// it lives and how far its stream is (an operator's "why is this entity slow").
struct entity_info_request {
  entity_id id;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, entity_info_request& x) {
  return f(caf::meta::type_name("entity_info_request"), x.id);
}

/// The owner's answer to an entity_info_request, from its region and its journal.
struct entity_info {
  std::string node;               ///< the answering node's id (the shard's owner)
  bool live = false;              ///< an entity actor runs for it there now (false: passivated)
  sequence_nr highest = 0;        ///< its highest sequence number (0: no such entity)
  sequence_nr snapshot_seq = 0;   ///< the sequence number of its latest snapshot (0: none)
  shard_offset shard_end = 0;     ///< the last position of its shard's log there
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, entity_info& x) {
  return f(caf::meta::type_name("entity_info"), x.node, x.live, x.highest, x.snapshot_seq,
           x.shard_end);
}

/// An entity_info_request a region passes on to the owner's region.
struct routed_info {
  entity_info_request request;
  std::uint8_t hops = 0;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, routed_info& x) {
  return f(caf::meta::type_name("routed_info"), x.request, x.hops);
}

/// Coordinator → regions: (map_atom, shard_map). Region → coordinator: (map_atom) → shard_map.
using map_atom = caf::atom_constant<caf::atom("sh_map")>;
/// Region → coordinator: (allocate_atom, shard): a request for a shard nobody owns yet.
using allocate_atom = caf::atom_constant<caf::atom("sh_alloc")>;
/// Coordinator → the owner's region: (handoff_atom, shard) → (stopped_atom, last position):
/// stop the shard's entities between commands and hold its requests.
using handoff_atom = caf::atom_constant<caf::atom("sh_hand")>;
using stopped_atom = caf::atom_constant<caf::atom("sh_stopd")>;
/// Coordinator → the new owner's region: (take_over_atom, shard, source log server, position)
/// → (ready_atom, its last position): copy the shard's log up to the position.
using take_over_atom = caf::atom_constant<caf::atom("sh_take")>;
using ready_atom = caf::atom_constant<caf::atom("sh_ready")>;
/// Coordinator → the old owner's region: (resume_atom, shard): the move failed, serve it again.
using resume_atom = caf::atom_constant<caf::atom("sh_resume")>;
/// Region → its entity reader: (read_entity_atom, entity_read) → entity_events.
using read_entity_atom = caf::atom_constant<caf::atom("sh_readev")>;
/// Region → its entity reader: (info_atom, entity_id, shard) → entity_info (journal facts);
/// region → a shard: (info_atom, entity_id) → bool (whether the entity is live).
using info_atom = caf::atom_constant<caf::atom("sh_info")>;
/// Anyone → a region: (stats_atom) → shard_stats.
using stats_atom = caf::atom_constant<caf::atom("sh_stats")>;

/// A region's live entities per shard it serves.
struct shard_stats {
  std::vector<shard_id> shards;
  std::vector<std::uint64_t> entities;
  std::uint64_t events_appended = 0; ///< by this region's entities since the node started
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, shard_stats& x) {
  return f(caf::meta::type_name("shard_stats"), x.shards, x.entities, x.events_appended);
}

} // namespace kontor::sharding

CAF_BEGIN_TYPE_ID_BLOCK(kontor_sharding, caf::first_custom_type_id + 400)
  CAF_ADD_TYPE_ID(kontor_sharding, (kontor::sharding::allocation_table))
  CAF_ADD_TYPE_ID(kontor_sharding, (kontor::sharding::table_reply))
  CAF_ADD_TYPE_ID(kontor_sharding, (kontor::sharding::shard_map))
  CAF_ADD_TYPE_ID(kontor_sharding, (kontor::sharding::routed_envelope))
  CAF_ADD_TYPE_ID(kontor_sharding, (kontor::sharding::shard_stats))
  CAF_ADD_TYPE_ID(kontor_sharding, (kontor::sharding::entity_read))
  CAF_ADD_TYPE_ID(kontor_sharding, (kontor::sharding::entity_events))
  CAF_ADD_TYPE_ID(kontor_sharding, (kontor::sharding::routed_read))
  CAF_ADD_TYPE_ID(kontor_sharding, (kontor::sharding::entity_info_request))
  CAF_ADD_TYPE_ID(kontor_sharding, (kontor::sharding::entity_info))
  CAF_ADD_TYPE_ID(kontor_sharding, (kontor::sharding::routed_info))
CAF_END_TYPE_ID_BLOCK(kontor_sharding)

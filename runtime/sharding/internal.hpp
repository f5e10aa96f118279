#pragma once

// Internal to runtime/sharding: the shard and entity actors behind the region.

#include <chrono>
#include <memory>
#include <optional>
#include <unordered_map>
#include <vector>

#include <caf/actor.hpp>
#include <caf/allowed_unsafe_message_type.hpp>
#include <caf/behavior.hpp>
#include <caf/response_promise.hpp>
#include <caf/stateful_actor.hpp>
#include <caf/typed_response_promise.hpp>

#include "runtime/persistence/journal.hpp"
#include "runtime/sharding/entity.hpp"
#include "runtime/sharding/cluster_messages.hpp"
#include "runtime/sharding/messages.hpp"

namespace kontor::sharding {

/// The journal's answer to an entity's append, sent from the journal's writer thread.
struct append_done {
  persistence::expected<persistence::append_result> result;
};

/// The answer of the region's reader to (read_snapshot_atom, entity id); local only.
struct snapshot_answer {
  persistence::expected<std::optional<persistence::snapshot>> snapshot;
};

/// Entity → the region's reader: (read_snapshot_atom, entity_id) → snapshot_answer.
using read_snapshot_atom = caf::atom_constant<caf::atom("sh_readsn")>;
/// An entity asks its shard to stop it (local only): its stream is empty, nothing to keep.
using passivate_atom = caf::atom_constant<caf::atom("sh_pass")>;

/// Region settings shared (read-only) by all shards and entities of a region.
using shared_settings = std::shared_ptr<const region_settings>;

/// State of one persistent entity actor.
struct entity_state {
  entity_id id;
  shard_id shard = 0;
  caf::actor shard_actor;
  caf::actor reader;                ///< the region's journal reader (recovery reads off-thread)
  shared_settings settings;
  std::unique_ptr<entity_logic> logic;
  sequence_nr seq = 0;              ///< highest sequence number applied
  sequence_nr snapshot_seq = 0;     ///< sequence number of the latest snapshot written or read
  caf::response_promise pending;    ///< the command waiting for its append
  std::size_t pending_events = 0;
  /// Requests its shard handed it and it has not answered yet (the shard counts up, it down).
  std::shared_ptr<std::atomic<std::int64_t>> queued;
  static inline const char* name = "kontor.entity";
};

/// Behaviour of one persistent entity: recovers (snapshot, then events), then runs commands
/// one at a time, stashing what arrives while it recovers or waits for the journal.
caf::behavior entity_actor(caf::stateful_actor<entity_state>* self, entity_id id, shard_id shard,
                           caf::actor shard_actor, caf::actor reader, shared_settings settings,
                           std::shared_ptr<std::atomic<std::int64_t>> queued);

/// A request that arrived for an entity that is stopping; delivered to its successor.
struct buffered_request {
  caf::response_promise promise;
  entity_envelope envelope;
};

/// A live entity as its shard sees it.
struct live_entity {
  caf::actor actor;
  std::chrono::steady_clock::time_point last_active; ///< last request routed to it
  std::shared_ptr<std::atomic<std::int64_t>> queued; ///< shared with the entity (entity_state)
};

/// State of one shard actor.
struct shard_state {
  shard_id id = 0;
  shared_settings settings;
  std::unordered_map<entity_id, live_entity> live;
  bool sweep_scheduled = false;
  std::unordered_map<caf::actor_addr, entity_id> ids;
  /// Entities asked to stop (passivation), with the requests that arrived meanwhile.
  std::unordered_map<entity_id, std::vector<buffered_request>> stopping;
  caf::actor region;                 ///< its region (where requests go back during a handoff)
  caf::actor reader;                 ///< the region's journal reader, for its entities' recovery
  bool handing_off = false;          ///< stopping every entity for a move
  caf::typed_response_promise<stopped_atom, shard_offset> handoff; ///< answered when all stopped
  static inline const char* name = "kontor.shard";
};

/// Behaviour of one shard: starts entities on demand, tracks when each was last used, and
/// passivates idle ones with a periodic sweep (no timer per message).
caf::behavior shard_actor(caf::stateful_actor<shard_state>* self, shard_id shard,
                          shared_settings settings, caf::actor region, caf::actor reader);

} // namespace kontor::sharding

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(kontor::sharding::append_done)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(kontor::sharding::snapshot_answer)

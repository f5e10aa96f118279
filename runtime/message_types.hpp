#pragma once

// Every message type of Kontor's runtime, for registration in each process: a type that one
// process does not know arrives there as an empty message (STACK.md), so every binary calls
// add_message_types() on its actor_system_config before starting the actor system.
//
// Each module has its own type-ID block at a fixed start, so no module's header depends on
// another's: kontor (sharding) at first_custom_type_id, kontor_cluster at +100, kontor_stream
// at +200, kontor_projection at +300, kontor_sharding (the sharding protocol between nodes) at
// +400, kontor_policy (the policies' admin protocol) at +500. A block must stay below the next
// one's start.

#include <caf/actor_system_config.hpp>

#include "runtime/cluster/messages.hpp"
#include "runtime/policy/messages.hpp"
#include "runtime/projection/messages.hpp"
#include "runtime/sharding/cluster_messages.hpp"
#include "runtime/sharding/messages.hpp"
#include "runtime/stream/messages.hpp"

namespace kontor {

/// Registers the type-ID blocks of every runtime module with `cfg`.
inline void add_message_types(caf::actor_system_config& cfg) {
  cfg.add_message_types<caf::id_block::kontor>();
  cfg.add_message_types<caf::id_block::kontor_cluster>();
  cfg.add_message_types<caf::id_block::kontor_stream>();
  cfg.add_message_types<caf::id_block::kontor_projection>();
  cfg.add_message_types<caf::id_block::kontor_sharding>();
  cfg.add_message_types<caf::id_block::kontor_policy>();
}

} // namespace kontor

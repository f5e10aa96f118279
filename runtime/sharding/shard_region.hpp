#pragma once

#include <caf/fwd.hpp>

#include "runtime/sharding/entity.hpp"

namespace kontor::sharding {

/// Starts the local shard region: it takes `entity_envelope` requests, starts each shard on its
/// first message and each entity on its first command, and answers with the entity's reply.
/// Send it an exit message to stop it with all its shards and entities.
caf::actor spawn_shard_region(caf::actor_system& sys, region_settings settings);

} // namespace kontor::sharding

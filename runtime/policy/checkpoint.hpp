#pragma once

// A policy's progress kept in the cluster, not only on the node that runs it: a small entity
// (type key "policy", id "policy:<name>") in the sharding runtime whose state is, per shard, the
// position below which every event's effect was carried out. It lives in a shard like any
// entity, so it moves with its shard and survives the node running the policy; the node that
// runs the policy next starts there instead of from its own (maybe empty or stale) store.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/core/ids.hpp"
#include "runtime/sharding/entity.hpp"

namespace kontor::policy {

/// The type key of checkpoint entities.
inline constexpr std::string_view checkpoint_type = "policy";

/// The entity id of policy `name`'s checkpoint.
entity_id checkpoint_id(std::string_view name);

/// The checkpoint entities' type, for region_settings::types.
sharding::entity_type checkpoint_entity_type();

/// The command that raises the checkpoint to `done` (per shard, max with what it has).
std::string advance_command(const std::vector<shard_offset>& done);
/// The command that reads the checkpoint.
std::string read_command();
/// The positions in a checkpoint entity's reply (empty: none kept yet); nullopt: unreadable.
std::optional<std::vector<shard_offset>> parse_reply(std::string_view reply);

} // namespace kontor::policy

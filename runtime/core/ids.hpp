#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace kontor {

/// Position of an event in one entity's stream; the first event is 1, 0 means "none yet".
using sequence_nr = std::uint64_t;

/// A shard: the unit of placement, handoff and replication. Fixed count per cluster.
using shard_id = std::uint32_t;

/// Position of an event in the journal's global ordered log (all shards together); the first
/// event is 1, 0 means "none yet".
using log_offset = std::uint64_t;

/// Position of an event in its shard's log (the shard's own dense positions 1, 2, 3, ...; the
/// same on every node that holds the shard, across moves). 0 means "none yet".
using shard_offset = std::uint64_t;

/// Wall-clock milliseconds since the Unix epoch.
using epoch_ms = std::int64_t;

/// The id of one entity (for Kontor: an account id, or "email:<address>" for an e-mail
/// reservation), unique across the cluster.
using entity_id = std::string;

/// Entities of a type other than a region's default (Akka's entity type keys) have ids
/// "<type>:<name>"; the default type's ids contain no ':'.
inline constexpr char entity_type_separator = ':';

/// The type key of entity `id`: what precedes its first ':' ("" for the default type).
constexpr std::string_view entity_type_of(std::string_view id) noexcept {
  auto at = id.find(entity_type_separator);
  return at == std::string_view::npos ? std::string_view{} : id.substr(0, at);
}

/// Stable 64-bit FNV-1a hash: the same on every node, compiler and run (unlike std::hash).
constexpr std::uint64_t stable_hash(std::string_view s) noexcept {
  std::uint64_t h = 1469598103934665603ull;
  for (unsigned char c : s) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}

/// The shard an entity lives in: a stable hash of its id modulo the shard count.
constexpr shard_id shard_of(std::string_view id, std::uint32_t number_of_shards) noexcept {
  return static_cast<shard_id>(stable_hash(id) % number_of_shards);
}

} // namespace kontor

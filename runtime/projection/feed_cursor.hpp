#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/core/ids.hpp"

namespace kontor::projection {

/// A position in the event feed that is the same on every node and survives shard moves: per
/// shard, the last position delivered (0: none). Written as an opaque, URL-safe token
/// (base64url of a version byte and varint (shard, position) pairs for the shards past 0).
std::string encode_feed_cursor(const std::vector<shard_offset>& delivered);

/// Parses a token written by encode_feed_cursor for `shards` shards; nullopt when it is not one
/// (garbage, another version, a shard out of range, a shard twice).
std::optional<std::vector<shard_offset>> decode_feed_cursor(std::string_view token,
                                                            std::uint32_t shards);

} // namespace kontor::projection

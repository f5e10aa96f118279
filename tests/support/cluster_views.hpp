#pragma once

#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <boost/json/fwd.hpp>

namespace kontor::test {

/// One entry of GET /cluster/members (API.md).
struct member_view {
  std::string node;         ///< the node's name (config node-name)
  std::string address;      ///< host:port of its cluster port
  std::string status;       ///< joining, up, leaving, exiting, down or removed
  bool reachable = false;   ///< whether the answering node's failure detector trusts it
  std::int64_t age = 0;     ///< join order, 1 = oldest
  std::string incarnation;  ///< "" when absent
  std::vector<std::string> roles;
};

/// GET /cluster/members as one node sees it.
struct members_view {
  std::string self;   ///< the answering node's name
  std::string leader; ///< "" when null
  std::vector<member_view> members;

  /// The member named `node`, or nullptr.
  const member_view* find(const std::string& node) const;
  /// Names of the members with status up and reachable, sorted.
  std::vector<std::string> up_and_reachable() const;
  /// Names of the members with status up that are not reachable, sorted.
  std::vector<std::string> up_unreachable() const;
};

/// Reads a /cluster/members body; nullopt when a required field is missing or of the wrong type
/// (required: self, leader (string or null), members[] with node, address, status, reachable, age).
std::optional<members_view> parse_members(const boost::json::value& body);

/// One entry of GET /cluster/shards.
struct shard_view {
  std::int64_t shard = 0;
  std::optional<std::string> owner; ///< nullopt while unallocated (null)
  std::string state;                ///< allocated, handoff or unavailable
  std::int64_t entities = 0;
};

/// GET /cluster/shards as one node sees it.
struct shards_view {
  std::optional<std::string> coordinator; ///< nullopt when null
  std::vector<shard_view> shards;
};

/// Reads a /cluster/shards body; nullopt when a required field is missing or of the wrong type
/// (required: coordinator (string or null), shards[] with shard, owner (string or null), state,
/// entities).
std::optional<shards_view> parse_shards(const boost::json::value& body);

/// Whether `v` shows exactly `n` members up and reachable and no member up but unreachable.
bool converged_up(const members_view& v, std::size_t n);

/// Whether `v` shows exactly the members named `up` up and reachable and no other member up.
bool converged_up(const members_view& v, std::vector<std::string> up);

/// Whether every view names the same leader and sees it up and reachable.
bool leader_agreed(const std::vector<members_view>& views);

/// Whether `v` lists at least one shard and every shard is allocated to one of `nodes`.
bool all_allocated(const shards_view& v, const std::set<std::string>& nodes);

} // namespace kontor::test

// What the cluster tests share: node settings, request bodies, waits on the shard table, an
// account's events and the check that every acknowledged deposit is there exactly once.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

#include <boost/json.hpp>

#include "tests/support/cluster.hpp"

namespace kontor::test {

/// Settings the cluster tests start their nodes with: a quick first seed, shards spread once
/// `min_members` are up, quick rebalancing.
std::vector<std::string> quick_args(std::size_t min_members = 3);

std::string open_body(const std::string& id, std::int64_t limit = 0);
std::string tx_body(const std::string& tx, const std::string& kind, std::int64_t amount);

/// The answer's body as JSON; fails the test when it is not JSON.
boost::json::value body_json(const http_result& r);
/// The "error" field of an error answer ("" when there is none).
std::string error_of(const http_result& r);

/// Shards per owner in a node's /cluster/shards.
std::map<std::string, std::size_t> owners(const shards_view& v);
/// Owner per shard ("" for none), in shard order.
std::vector<std::string> owner_table(const shards_view& v);
/// The name of the oldest up member in a node's view ("" when none).
std::string oldest_up(const members_view& v);

/// Every node of `nodes` lists all shards allocated to one of `names`, spread within ±1, and
/// all of them show the same table.
wait_outcome wait_spread(test_cluster& c, const std::vector<std::size_t>& nodes,
                         const std::set<std::string>& names,
                         std::chrono::milliseconds timeout = std::chrono::seconds(60));

/// Starts nodes 0, 1 and 2, waits until they are ready and all three up, and (when `spread`)
/// until the shards are spread over them.
void start_three(test_cluster& c, bool spread = false);

/// The nodes whose log has `text` (e.g. "bonus runs on this node"), in index order.
std::vector<std::size_t> nodes_logging(test_cluster& c, const std::string& text);
/// Every node of the cluster but `i`.
std::vector<std::size_t> all_but(test_cluster& c, std::size_t i);
/// The value of the series `series` (name and labels, e.g. `kontor_x{policy="bonus"}`) in node
/// i's /metrics (-1 when absent or the node does not answer).
double metric_value(test_cluster& c, std::size_t i, const std::string& series);

/// The events of an account through node i (all pages of its audit log).
boost::json::array events_of(test_cluster& c, std::size_t i, const std::string& id);

/// Every acknowledged txId of `acked` (account → txIds answered 201) is in its account's events
/// exactly once, read through node `via`, and no transaction (deposit or purchase) is there twice.
void check_acked(test_cluster& c, std::size_t via,
                 const std::map<std::string, std::vector<std::string>>& acked);

} // namespace kontor::test

// GET /accounts/{id}/explain on one node: where the account lives, whether its entity runs,
// its last seq and snapshot, and how far the read model is — after commands, a snapshot and
// passivation.

#include <string>

#include <boost/json.hpp>
#include <catch2/catch.hpp>

#include "runtime/core/ids.hpp"
#include "tests/component/node_fixture.hpp"

using namespace kontor::test;
namespace json = boost::json;
using namespace std::chrono_literals;

namespace {

constexpr std::uint32_t shards = 16;

json::object explain(http_client& c, const std::string& id) {
  auto r = c.get("/accounts/" + id + "/explain");
  INFO(r.body);
  REQUIRE(r.status == 200);
  return body_json(r).as_object();
}

} // namespace

TEST_CASE("explain on one node: shard and owner, live or passivated entity, version, snapshot "
          "and read-model positions",
          "[component][explain]") {
  // A snapshot every 3 events; idle entities stop after 2 s (long enough for the checks of a
  // live entity right after a command, short enough to wait for).
  running_node node{{"--number-of-shards", std::to_string(shards), "--snapshot-every", "3",
                     "--passivate-after", "2s"}};
  http_client c{node.port()};
  const auto name = std::string(body_json(c.get("/health")).at("node").as_string());

  REQUIRE(c.post("/accounts", open_body("ex-1")).status == 201);
  for (int i = 0; i < 4; ++i)
    REQUIRE(c.post("/accounts/ex-1/transactions", tx_body("d" + std::to_string(i), "deposit", 10))
              .status
            == 201);

  auto e = explain(c, "ex-1");
  INFO(json::serialize(e));
  CHECK(e.at("id") == "ex-1");
  CHECK(e.at("shard") == kontor::shard_of("ex-1", shards));
  CHECK(e.at("node").as_string() == name);
  CHECK(e.at("owner").as_string() == name);
  CHECK(e.at("answeredBy").as_string() == name);
  CHECK(e.at("ownedHere") == true);
  CHECK(e.at("shardState") == "allocated");
  CHECK(e.at("tableVersion").to_number<std::int64_t>() >= 1);
  CHECK(e.at("entity") == "live");
  CHECK(e.at("version") == 5);
  // The only account on the node: its shard's log holds its 5 events.
  CHECK(e.at("ownerShardPosition") == 5);
  CHECK(e.at("ownerError").is_null());
  REQUIRE(e.at("readModel").is_object());

  // The snapshot written after seq 3 (every 3 events) becomes durable with a later commit.
  REQUIRE(wait_until([&] { return explain(c, "ex-1").at("snapshotSeq") == 3; }));

  // The read model catches up: the account's version and the shard's position.
  REQUIRE(caught_up(c));
  e = explain(c, "ex-1");
  CHECK(e.at("readModel").at("accountVersion") == 5);
  CHECK(e.at("readModel").at("shardPosition") == 5);
  CHECK(e.at("readModel").at("eventsBehind") == 0);

  // Idle: the entity passivates. Asking explain does not start it again.
  REQUIRE(wait_until([&] { return explain(c, "ex-1").at("entity") == "passivated"; }, 30s));
  e = explain(c, "ex-1");
  CHECK(e.at("entity") == "passivated");
  CHECK(e.at("version") == 5);
  CHECK(e.at("snapshotSeq") == 3);

  // A command starts it again (recovering from the snapshot); the next snapshot is after seq 6.
  REQUIRE(c.post("/accounts/ex-1/transactions", tx_body("d9", "deposit", 10)).status == 201);
  e = explain(c, "ex-1");
  CHECK(e.at("entity") == "live");
  CHECK(e.at("version") == 6);
  REQUIRE(wait_until([&] { return explain(c, "ex-1").at("snapshotSeq") == 6; }));

  // Errors like every account route's.
  auto unknown = c.get("/accounts/nobody/explain");
  CHECK(unknown.status == 404);
  CHECK(body_json(unknown).at("error") == "account_not_found");
  auto bad = c.get("/accounts/..%2Fx/explain");
  CHECK(bad.status == 400);
  CHECK(body_json(bad).at("error") == "invalid_field");
  auto post = c.post("/accounts/ex-1/explain", "{}");
  CHECK(post.status == 405);
  CHECK(post.header("allow") == "GET, HEAD");
  CHECK(node.stop() == 0);
}

TEST_CASE("explain with read-side = off: the owner's facts, no read model", "[component][explain]") {
  running_node node{{"--read-side", "off"}};
  http_client c{node.port()};
  REQUIRE(c.post("/accounts", open_body("ex-2")).status == 201);
  auto e = explain(c, "ex-2");
  CHECK(e.at("version") == 1);
  CHECK(e.at("readModel").is_null());
  CHECK(node.stop() == 0);
}

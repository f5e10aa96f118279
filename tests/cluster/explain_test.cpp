// GET /accounts/{id}/explain in a 3-node cluster: asked through any node, it names the owner
// that node's /cluster/shards names, and the owner's facts come from the owner itself; with the
// owner killed it still tells where the shard lives and why the owner's facts are missing.

#include <string>

#include <boost/json.hpp>
#include <catch2/catch.hpp>

#include "tests/cluster/common.hpp"
#include "tests/support/cluster.hpp"
#include "tests/support/wait.hpp"

using namespace kontor::test;
namespace json = boost::json;
using namespace std::chrono_literals;

TEST_CASE("explain through every node of three names the owner of /cluster/shards, the owner "
          "answers for the entity, and with the owner killed the others say why",
          "[cluster][explain]") {
  test_cluster c{{.nodes = 3, .args = quick_args()}};
  start_three(c, true);

  const std::string id = "explained";
  REQUIRE(c.request(0, "POST", "/accounts", open_body(id)).status == 201);
  REQUIRE(c.request(1, "POST", "/accounts/" + id + "/transactions", tx_body("t1", "deposit", 5))
            .status
          == 201);
  REQUIRE(c.request(2, "POST", "/accounts/" + id + "/transactions", tx_body("t2", "deposit", 5))
            .status
          == 201);

  std::size_t non_owners = 0;
  std::string owner_name;
  for (std::size_t i = 0; i < 3; ++i) {
    json::object e, shards;
    // The table may still change between the two answers: both must show the same version.
    auto agreed = wait_until([&] {
      auto a = c.get(i, "/accounts/" + id + "/explain");
      auto b = c.get(i, "/cluster/shards");
      if (a.status != 200 || b.status != 200)
        return false;
      e = body_json(a).as_object();
      shards = body_json(b).as_object();
      return e.at("tableVersion") == shards.at("version");
    });
    INFO("via " << c.name(i) << ": " << json::serialize(e) << "\n" << c.describe());
    REQUIRE(agreed);
    const auto shard = e.at("shard").to_number<std::size_t>();
    const auto& entry = shards.at("shards").as_array().at(shard).as_object();
    REQUIRE(entry.at("shard") == shard);
    REQUIRE(e.at("owner").is_string());
    CHECK(e.at("owner") == entry.at("owner"));
    CHECK(e.at("shardState") == entry.at("state"));
    CHECK(e.at("node").as_string() == c.name(i));
    // The owner's facts come from the owner, whichever node is asked.
    CHECK(e.at("answeredBy") == e.at("owner"));
    owner_name = e.at("owner").as_string();
    const bool here = owner_name == c.name(i);
    CHECK(e.at("ownedHere") == here);
    non_owners += here ? 0 : 1;
    CHECK(e.at("entity") == "live");
    CHECK(e.at("version") == 3);
    CHECK(e.at("ownerShardPosition").to_number<std::int64_t>() >= 3);
    // This node's read model catches up with the owner's journal.
    CHECK(wait_until([&] {
      auto a = c.get(i, "/accounts/" + id + "/explain");
      return a.status == 200 && body_json(a).at("readModel").at("accountVersion") == 3;
    }));
  }
  CHECK(non_owners == 2);

  auto unknown = c.get(1, "/accounts/nobody/explain");
  CHECK(unknown.status == 404);
  CHECK(error_of(unknown) == "account_not_found");

  // The owner dies: asked through another node, explain still says where the shard lives, that
  // it is unavailable, and why the owner's facts are missing.
  const auto owner = c.index_of(owner_name);
  c.kill(owner);
  const auto other = (owner + 1) % 3;
  json::object e;
  auto told = wait_until(
    [&] {
      auto a = c.get(other, "/accounts/" + id + "/explain", 10000);
      if (a.status != 200)
        return false;
      e = body_json(a).as_object();
      return e.at("shardState") == "unavailable" && e.at("ownerError").is_object();
    },
    30s);
  INFO(json::serialize(e) << "\n" << c.describe());
  REQUIRE(told);
  CHECK(e.at("owner").as_string() == owner_name);
  CHECK(e.at("ownedHere") == false);
  CHECK(e.at("answeredBy").is_null());
  CHECK(e.at("version").is_null());
  const auto why = std::string(e.at("ownerError").at("error").as_string());
  CHECK((why == "shard_unavailable" || why == "timeout"));
  CHECK(e.at("readModel").at("accountVersion") == 3);
}

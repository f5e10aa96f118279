// The /cluster/* views and the predicates the cluster waits use, against the JSON of API.md.

#include <boost/json.hpp>
#include <catch2/catch.hpp>

#include "tests/support/cluster_views.hpp"

using namespace kontor::test;

namespace {

boost::json::value parse(const std::string& text) {
  return boost::json::parse(text);
}

/// A /cluster/members body as alpha sees it: `entries` are (name, status, reachable).
boost::json::value members_body(const std::string& leader,
                                const std::vector<std::tuple<std::string, std::string, bool>>& entries) {
  boost::json::array members;
  std::int64_t age = 0;
  for (auto& [node, status, reachable] : entries)
    members.push_back({{"node", node},
                       {"address", "127.0.0.1:7355"},
                       {"status", status},
                       {"reachable", reachable},
                       {"age", ++age},
                       {"incarnation", "i-" + node},
                       {"roles", boost::json::array{}}});
  return {{"self", "alpha"}, {"leader", leader}, {"members", members}};
}

members_view members_of(const boost::json::value& body) {
  auto v = parse_members(body);
  REQUIRE(v);
  return *v;
}

} // namespace

TEST_CASE("parse_members reads the example of API.md", "[lab][views]") {
  auto v = parse_members(parse(
    R"({"self":"alpha","leader":"alpha","members":[{"node":"alpha","address":"10.0.0.5:7355","status":"up","reachable":true,"age":1,"incarnation":"abc","roles":[]}]})"));
  REQUIRE(v);
  CHECK(v->self == "alpha");
  CHECK(v->leader == "alpha");
  REQUIRE(v->members.size() == 1);
  auto& m = v->members[0];
  CHECK(m.node == "alpha");
  CHECK(m.address == "10.0.0.5:7355");
  CHECK(m.status == "up");
  CHECK(m.reachable);
  CHECK(m.age == 1);
  CHECK(m.incarnation == "abc");
  CHECK(v->find("alpha") == &m);
  CHECK(v->find("beta") == nullptr);
}

TEST_CASE("parse_members refuses bodies without the required fields", "[lab][views]") {
  CHECK_FALSE(parse_members(parse(R"([])")));
  CHECK_FALSE(parse_members(parse(R"({"leader":"a","members":[]})")));                  // no self
  CHECK_FALSE(parse_members(parse(R"({"self":"a","members":[]})")));                    // no leader
  CHECK_FALSE(parse_members(parse(R"({"self":"a","leader":"a","members":{}})")));       // not a list
  CHECK_FALSE(parse_members(parse(
    R"({"self":"a","leader":"a","members":[{"node":"a","address":"x:1","status":"up","reachable":"yes","age":1}]})")));
  CHECK_FALSE(parse_members(parse(
    R"({"self":"a","leader":"a","members":[{"node":"a","address":"x:1","status":"up","reachable":true}]})")));
  // A null leader (none yet) is allowed.
  auto v = parse_members(parse(R"({"self":"a","leader":null,"members":[]})"));
  REQUIRE(v);
  CHECK(v->leader.empty());
}

TEST_CASE("converged_up: exactly those members up and reachable, none up but unreachable",
          "[lab][views]") {
  auto three = members_of(
    members_body("alpha", {{"alpha", "up", true}, {"beta", "up", true}, {"gamma", "up", true}}));
  CHECK(converged_up(three, 3));
  CHECK_FALSE(converged_up(three, 2));
  CHECK(converged_up(three, {"gamma", "alpha", "beta"}));
  CHECK_FALSE(converged_up(three, {"alpha", "beta"}));

  auto suspect = members_of(
    members_body("alpha", {{"alpha", "up", true}, {"beta", "up", true}, {"gamma", "up", false}}));
  CHECK_FALSE(converged_up(suspect, 2));
  CHECK_FALSE(converged_up(suspect, 3));
  CHECK(suspect.up_unreachable() == std::vector<std::string>{"gamma"});

  auto downed = members_of(
    members_body("alpha", {{"alpha", "up", true}, {"beta", "up", true}, {"gamma", "down", false}}));
  CHECK(converged_up(downed, 2));
  CHECK(converged_up(downed, {"alpha", "beta"}));
  auto joining = members_of(members_body("alpha", {{"alpha", "up", true}, {"beta", "joining", true}}));
  CHECK(converged_up(joining, 1));
  CHECK_FALSE(converged_up(joining, {"alpha", "beta"}));
}

TEST_CASE("leader_agreed: one leader, seen up and reachable by every view", "[lab][views]") {
  auto by_alpha = members_of(members_body("alpha", {{"alpha", "up", true}, {"beta", "up", true}}));
  auto by_beta = members_of(members_body("alpha", {{"alpha", "up", true}, {"beta", "up", true}}));
  CHECK(leader_agreed({by_alpha, by_beta}));
  auto other = members_of(members_body("beta", {{"alpha", "up", true}, {"beta", "up", true}}));
  CHECK_FALSE(leader_agreed({by_alpha, other}));
  auto unreachable = members_of(members_body("alpha", {{"alpha", "up", false}, {"beta", "up", true}}));
  CHECK_FALSE(leader_agreed({by_alpha, unreachable}));
  auto none = members_of(members_body("", {{"alpha", "up", true}}));
  CHECK_FALSE(leader_agreed({none}));
  CHECK_FALSE(leader_agreed({}));
}

TEST_CASE("parse_shards and all_allocated read the example of API.md", "[lab][views]") {
  auto v = parse_shards(
    parse(R"({"coordinator":"alpha","shards":[{"shard":0,"owner":"alpha","state":"allocated","entities":12}]})"));
  REQUIRE(v);
  CHECK(v->coordinator == "alpha");
  REQUIRE(v->shards.size() == 1);
  CHECK(v->shards[0].shard == 0);
  CHECK(v->shards[0].owner == "alpha");
  CHECK(v->shards[0].state == "allocated");
  CHECK(v->shards[0].entities == 12);
  CHECK(all_allocated(*v, {"alpha", "beta"}));
  CHECK_FALSE(all_allocated(*v, {"beta"})); // an owner outside the cluster

  auto pending = parse_shards(parse(
    R"({"coordinator":null,"shards":[{"shard":0,"owner":"alpha","state":"allocated","entities":1},{"shard":1,"owner":null,"state":"unavailable","entities":0}]})"));
  REQUIRE(pending);
  CHECK_FALSE(pending->coordinator);
  CHECK_FALSE(pending->shards[1].owner);
  CHECK_FALSE(all_allocated(*pending, {"alpha"}));
  auto handoff = parse_shards(
    parse(R"({"coordinator":"alpha","shards":[{"shard":3,"owner":"alpha","state":"handoff","entities":1}]})"));
  REQUIRE(handoff);
  CHECK_FALSE(all_allocated(*handoff, {"alpha"}));
  CHECK_FALSE(all_allocated(shards_view{}, {"alpha"})); // no shards at all

  CHECK_FALSE(parse_shards(parse(R"({"coordinator":"a"})")));
  CHECK_FALSE(parse_shards(parse(R"({"coordinator":"a","shards":[{"shard":"0","owner":"a","state":"allocated","entities":1}]})")));
}

// The CEO bonus policy (event → command) on one node: every deposit into another account pays
// floor(amount * rate) into the bonus account, exactly once, through a kill -9 mid-backlog and a
// full redelivery of the history (the policy's store lost, as on a node that never ran it), and
// the bonus account's balance stops at its cap.

#include <filesystem>

#include "tests/component/node_fixture.hpp"

using namespace kontor::test;

namespace {

/// Node flags for the bonus policy into account "bonus" at 1 % (10 per mille).
std::vector<std::string> bonus_args(std::int64_t cap = 0) {
  return {"--bonus-account",        "bonus", "--bonus-rate",         "10",
          "--bonus-max-balance",    std::to_string(cap),
          "--policy-retry-initial", "5ms",   "--policy-retry-max",   "100ms",
          "--policy-attempt-timeout", "5s"};
}

/// Deposits of varied sizes, tiny ones (bonus 0) among them.
const std::vector<std::int64_t> amounts = {1, 5, 50, 99, 100, 101, 199, 250, 999, 1000, 12345, 77777};

/// The balance of `id` through the entity (linearizable).
std::int64_t balance(http_client& c, const std::string& id) {
  auto r = c.get("/accounts/" + id + "?consistent=true");
  REQUIRE(r.status == 200);
  return body_json(r).at("balance").as_int64();
}

const std::string delivered = R"(kontor_policy_deliveries_total{policy="bonus",outcome="delivered"})";
const std::string dead_letters = R"(kontor_policy_dead_letters{policy="bonus"})";
const std::string lag = R"(kontor_policy_lag_events{policy="bonus"})";

/// Opens "bonus" and three other accounts, deposits every amount `rounds` times into the others
/// and 700 into "bonus" itself; returns the sum of the bonuses and how many are not 0.
std::pair<std::int64_t, int> deposit_all(http_client& c, int rounds) {
  for (const auto* id : {"bonus", "b-a", "b-b", "b-c"})
    REQUIRE(c.post("/accounts", open_body(id)).status == 201);
  // The bonus account's own deposits earn nothing.
  REQUIRE(c.post("/accounts/bonus/transactions", tx_body("own", "deposit", 70000)).status == 201);
  std::int64_t sum = 0;
  int paying = 0;
  const char* ids[] = {"b-a", "b-b", "b-c"};
  for (int r = 0; r < rounds; ++r)
    for (std::size_t i = 0; i < amounts.size(); ++i) {
      auto tx = "d-" + std::to_string(r) + "-" + std::to_string(i);
      REQUIRE(c.post(std::string{"/accounts/"} + ids[(r + i) % 3] + "/transactions",
                     tx_body(tx, "deposit", amounts[i]))
                .status == 201);
      sum += amounts[i] / 100;
      paying += amounts[i] >= 100;
    }
  return {sum, paying};
}

} // namespace

TEST_CASE("CEO bonus: the bonus account gets exactly the sum of floor(amount * 1 %) through a "
          "kill -9 mid-backlog and a redelivery of every event",
          "[policy][bonus]") {
  running_node node{bonus_args()};
  http_client c{node.port()};
  auto [sum, paying] = deposit_all(c, 5);
  const std::int64_t expected = 70000 + sum;
  // Whatever the policy has done by now (often a backlog is left): kill -9.
  node.kill_hard();

  node.start();
  http_client c2{node.port()};
  REQUIRE(wait_until([&] { return balance(c2, "bonus") >= expected && metric(c2, lag) == 0; },
                     std::chrono::seconds(60)));
  CHECK(balance(c2, "bonus") == expected);
  CHECK(metric(c2, dead_letters) == 0);
  // Every bonus is a deposit with source "bonus" and the txId of its event.
  int bonuses = 0;
  for (const auto& ev : all_events(c2, "bonus")) {
    if (ev.at("type").as_string() != "MoneyDeposited")
      continue;
    const auto& o = ev.at("data").as_object();
    if (o.at("txId").as_string() == "own")
      continue;
    ++bonuses;
    CHECK(o.at("source").as_string() == "bonus");
    CHECK(std::string_view{o.at("txId").as_string()}.starts_with("bonus:b-"));
  }
  CHECK(bonuses == paying);
  REQUIRE(node.stop() == 0);

  // The policy's store lost (as on a node that never ran it): every event is delivered again;
  // the txIds make each a replay, not a second payment.
  std::filesystem::remove_all(std::filesystem::path(node.data_dir()) / "policy-bonus");
  node.start();
  http_client c3{node.port()};
  REQUIRE(wait_until([&] { return metric(c3, delivered) >= paying && metric(c3, lag) == 0; },
                     std::chrono::seconds(60)));
  CHECK(balance(c3, "bonus") == expected);
  // A deposit after all that still pays, once.
  REQUIRE(c3.post("/accounts/b-a/transactions", tx_body("late", "deposit", 4321)).status == 201);
  REQUIRE(wait_until([&] { return balance(c3, "bonus") >= expected + 43 && metric(c3, lag) == 0; }));
  CHECK(balance(c3, "bonus") == expected + 43);
  CHECK(node.stop() == 0);
}

TEST_CASE("CEO bonus: the bonus account's balance stops at bonus-max-balance and capped bonuses "
          "are no dead letters",
          "[policy][bonus]") {
  const std::int64_t cap = 70000 + 500;
  running_node node{bonus_args(cap)};
  http_client c{node.port()};
  auto [sum, paying] = deposit_all(c, 3);
  REQUIRE(sum > 500); // the cap is reached
  REQUIRE(wait_until([&] { return metric(c, delivered) >= paying && metric(c, lag) == 0; },
                     std::chrono::seconds(60)));
  CHECK(balance(c, "bonus") == cap);
  CHECK(metric(c, dead_letters) == 0);
  // The last bonus that fit was cut to what fit.
  auto events = all_events(c, "bonus");
  REQUIRE_FALSE(events.empty());
  CHECK(events.back().at("data").at("newBalance").as_int64() == cap);
  CHECK(node.stop() == 0);
}

TEST_CASE("CEO bonus: a bonus account that does not exist makes dead letters", "[policy][bonus]") {
  running_node node{bonus_args()};
  http_client c{node.port()};
  REQUIRE(c.post("/accounts", open_body("nb-a")).status == 201);
  REQUIRE(c.post("/accounts/nb-a/transactions", tx_body("t1", "deposit", 1000)).status == 201);
  REQUIRE(wait_until([&] { return metric(c, dead_letters) == 1; }));
  auto r = c.get("/admin/policies/bonus/dead-letters");
  REQUIRE(r.status == 200);
  CHECK(r.body.find("ACCOUNT_NOT_FOUND") != std::string::npos);
  CHECK(r.body.find("bonus:nb-a:2") != std::string::npos);
  CHECK(node.stop() == 0);
}

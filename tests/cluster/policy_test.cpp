// The thank-you policy on three nodes: a cluster singleton (one delivery per deposit while
// membership is stable), and after the node that runs it leaves, the next oldest delivers the
// rest (at least once: it resumes from its own store, so it may resend, with the same keys).

#include <set>

#include <catch2/catch.hpp>

#include "tests/cluster/common.hpp"
#include "tests/support/ports.hpp"
#include "tests/support/wait.hpp"
#include "tests/support/webhook_receiver.hpp"

using namespace kontor::test;
using namespace std::chrono_literals;

namespace {

constexpr std::int64_t threshold = 100;

/// Every key in `expected` was accepted by the receiver.
bool all_accepted(const webhook_receiver& rx, const std::set<std::string>& expected) {
  auto got = rx.accepted();
  return std::includes(got.begin(), got.end(), expected.begin(), expected.end());
}

/// Deposits through node `i`; returns the event id when the deposit qualifies, else "".
std::string deposit(test_cluster& c, std::size_t i, const std::string& id, const std::string& tx,
                    std::int64_t amount) {
  http_result r;
  // A shard that is moving answers 503 for a moment: the deposit is retried with its txId.
  REQUIRE(wait_until([&] {
    r = c.request(i, "POST", "/accounts/" + id + "/transactions", tx_body(tx, "deposit", amount));
    return r.status == 201;
  }));
  return id + ":" + std::to_string(body_json(r).at("version").as_int64());
}

} // namespace

TEST_CASE("thank-you webhook on three nodes: one delivery per deposit while members are stable, and "
          "after the node running the policy leaves the next one delivers the rest",
          "[cluster][policy]") {
  port_reservation port{1};
  webhook_receiver rx{port[0]};
  auto args = quick_args();
  for (const auto& a : std::vector<std::string>{"--thank-you-webhook-url", rx.url(), "--thank-you-min-amount",
                                                std::to_string(threshold), "--policy-retry-initial", "5ms",
                                                "--policy-retry-max", "100ms"})
    args.push_back(a);
  test_cluster c{{.nodes = 3, .args = args}};
  start_three(c, true);

  std::set<std::string> expected;
  for (int a = 0; a < 6; ++a) {
    const auto id = "pol-" + std::to_string(a);
    REQUIRE(c.request(a % 3, "POST", "/accounts", open_body(id)).status == 201);
  }
  for (int i = 0; i < 30; ++i) {
    const auto id = "pol-" + std::to_string(i % 6);
    expected.insert(deposit(c, i % 3, id, "big-" + std::to_string(i), threshold + i));
    deposit(c, (i + 1) % 3, id, "small-" + std::to_string(i), threshold - 1);
  }
  REQUIRE(wait_until([&] { return all_accepted(rx, expected); }, 60s));
  // One node runs the policy: each notification went out once (the receiver never failed).
  CHECK(rx.requests().size() == expected.size());
  const auto running = nodes_logging(c, "thank-you runs on this node");
  REQUIRE(running.size() == 1);
  const auto runner = running[0];

  // The node running it leaves; deposits go on through the others.
  CHECK(c.stop(runner, 40s) == 0);
  const auto stay = all_but(c, runner);
  REQUIRE(c.wait_members_up(stay, stay));
  for (int i = 0; i < 20; ++i)
    expected.insert(deposit(c, stay[i % 2], "pol-" + std::to_string(i % 6), "after-" + std::to_string(i),
                            threshold * 2));
  REQUIRE(wait_until([&] { return all_accepted(rx, expected); }, 60s));
  for (const auto& r : rx.requests()) {
    INFO(r.key);
    CHECK(expected.count(r.key) == 1);
  }
}

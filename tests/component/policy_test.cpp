// Policies: the thank-you webhook against a receiver in this process that fails, goes down,
// rejects and comes back; the node is killed mid-backlog. Every deposit at or above the
// threshold reaches the receiver (at least once, always with its event id as Idempotency-Key),
// none below it.

#include <map>

#include "tests/component/node_fixture.hpp"
#include "tests/support/ports.hpp"
#include "tests/support/webhook_receiver.hpp"

using namespace kontor::test;

namespace {

constexpr std::int64_t threshold = 100;

/// Node flags for the thank-you policy against `rx`, with quick retries.
std::vector<std::string> policy_args(const webhook_receiver& rx, const std::string& attempts = "100000") {
  return {"--thank-you-webhook-url", rx.url(),     "--thank-you-min-amount", std::to_string(threshold),
          "--policy-retry-initial",  "5ms",        "--policy-retry-max",     "100ms",
          "--policy-max-attempts",   attempts,     "--policy-attempt-timeout", "2s"};
}

/// Deposits `amount` into `id` and returns the event's id ("<account>:<version>").
std::string deposit(http_client& c, const std::string& id, const std::string& tx, std::int64_t amount) {
  auto r = c.post("/accounts/" + id + "/transactions", tx_body(tx, "deposit", amount));
  REQUIRE(r.status == 201);
  return id + ":" + std::to_string(body_json(r).at("version").as_int64());
}

/// Every key in `expected` was accepted by the receiver.
bool all_accepted(const webhook_receiver& rx, const std::set<std::string>& expected) {
  auto got = rx.accepted();
  return std::includes(got.begin(), got.end(), expected.begin(), expected.end());
}

/// No request carried a key outside `expected`; every request of one key carried the same body.
void check_requests(const webhook_receiver& rx, const std::set<std::string>& expected) {
  std::map<std::string, std::string> body_of;
  for (const auto& r : rx.requests()) {
    INFO("key '" << r.key << "' body " << r.body);
    CHECK(expected.count(r.key) == 1);
    auto [it, fresh] = body_of.emplace(r.key, r.body);
    CHECK(it->second == r.body);
    auto body = boost::json::parse(r.body);
    CHECK(body.at("eventId").as_string() == r.key);
    CHECK(body.at("amount").as_int64() >= threshold);
  }
}

} // namespace

TEST_CASE("thank-you webhook: every deposit at or above the threshold arrives with its event id as "
          "Idempotency-Key through 503s and a receiver that is down",
          "[policy]") {
  port_reservation port{1};
  webhook_receiver rx{port[0]};
  rx.fail_next(5);
  running_node node{policy_args(rx)};
  http_client c{node.port()};
  REQUIRE(c.post("/accounts", open_body("ty-a")).status == 201);
  REQUIRE(c.post("/accounts", open_body("ty-b")).status == 201);

  std::set<std::string> expected;
  for (int i = 0; i < 10; ++i) {
    expected.insert(deposit(c, i % 2 ? "ty-a" : "ty-b", "big-" + std::to_string(i), threshold + i));
    deposit(c, i % 2 ? "ty-b" : "ty-a", "small-" + std::to_string(i), threshold - 1 - i);
  }
  REQUIRE(wait_until([&] { return all_accepted(rx, expected); }, std::chrono::seconds(60)));
  CHECK(rx.failed() >= 5);

  // Down: connections refused while more deposits come; nothing is lost.
  rx.go_down();
  const auto retries_before = metric(c, "kontor_policy_retries_total{policy=\"thank-you\"}");
  for (int i = 0; i < 10; ++i) {
    expected.insert(deposit(c, "ty-a", "down-big-" + std::to_string(i), threshold * 10));
    deposit(c, "ty-b", "down-small-" + std::to_string(i), 1);
  }
  // It tried (and failed) while the receiver was down.
  REQUIRE(wait_until([&] {
    return metric(c, "kontor_policy_retries_total{policy=\"thank-you\"}") >= retries_before + 3;
  }));
  CHECK(metric(c, "kontor_policy_lag_events{policy=\"thank-you\"}") >= 1);
  rx.come_up();
  REQUIRE(wait_until([&] { return all_accepted(rx, expected); }, std::chrono::seconds(60)));
  check_requests(rx, expected);
  CHECK(wait_until([&] { return metric(c, "kontor_policy_lag_events{policy=\"thank-you\"}") == 0; }));
  CHECK(metric(c, "kontor_policy_deliveries_total{policy=\"thank-you\",outcome=\"delivered\"}") >= 20);
  CHECK(node.stop() == 0);
}

TEST_CASE("thank-you webhook: a 4xx answer makes a dead letter that the admin routes list and retry",
          "[policy]") {
  port_reservation port{1};
  webhook_receiver rx{port[0]};
  running_node node{policy_args(rx)};
  http_client c{node.port()};
  REQUIRE(c.post("/accounts", open_body("dl-a")).status == 201);
  REQUIRE(c.post("/accounts", open_body("dl-b")).status == 201);
  REQUIRE(c.get("/admin/policies/thank-you/dead-letters").body == "[]");
  CHECK(c.get("/admin/policies/no-such-policy/dead-letters").status == 404);

  rx.reject_key("dl-a:2");
  const auto refused = deposit(c, "dl-a", "refused", threshold);
  REQUIRE(refused == "dl-a:2");
  // The next events go on past the dead letter.
  std::set<std::string> others{deposit(c, "dl-a", "after", threshold), deposit(c, "dl-b", "other", threshold)};
  REQUIRE(wait_until([&] { return all_accepted(rx, others); }));

  boost::json::array letters;
  REQUIRE(wait_until([&] {
    auto r = c.get("/admin/policies/thank-you/dead-letters");
    letters = r.status == 200 ? body_json(r).as_array() : boost::json::array{};
    return letters.size() == 1;
  }));
  CHECK(letters[0].at("key").as_string() == refused);
  CHECK(letters[0].at("reason").as_string() == "HTTP 400");
  CHECK(letters[0].at("attempts").as_int64() == 1);
  CHECK(letters[0].at("payload").at("accountId").as_string() == "dl-a");
  CHECK(metric(c, "kontor_policy_dead_letters{policy=\"thank-you\"}") == 1);
  CHECK(metric(c, "kontor_policy_deliveries_total{policy=\"thank-you\",outcome=\"rejected\"}") == 1);

  // Fixed on the receiver's side: the retry route sends it again, with the same key.
  rx.reject_key(refused, false);
  auto retry = c.post("/admin/policies/thank-you/dead-letters/retry", "");
  REQUIRE(retry.status == 200);
  CHECK(body_json(retry).at("retried").as_int64() == 1);
  REQUIRE(wait_until([&] { return all_accepted(rx, {refused}); }));
  CHECK(c.get("/admin/policies/thank-you/dead-letters").body == "[]");
  CHECK(metric(c, "kontor_policy_dead_letters{policy=\"thank-you\"}") == 0);
  others.insert(refused);
  check_requests(rx, others);
  CHECK(node.stop() == 0);
}

TEST_CASE("thank-you webhook: kill -9 of the node mid-backlog loses no notification", "[policy]") {
  port_reservation port{1};
  webhook_receiver rx{port[0]};
  // The receiver takes 5 notifications, then answers 503 to everything: a backlog stays.
  rx.set_accept_budget(5);
  running_node node{policy_args(rx)};
  http_client c{node.port()};
  REQUIRE(c.post("/accounts", open_body("k-a")).status == 201);
  REQUIRE(c.post("/accounts", open_body("k-b")).status == 201);
  std::set<std::string> expected;
  for (int i = 0; i < 30; ++i) {
    expected.insert(deposit(c, i % 2 ? "k-a" : "k-b", "k-" + std::to_string(i), threshold + i));
    deposit(c, "k-a", "k-small-" + std::to_string(i), threshold / 2);
  }
  // Mid-backlog: 5 delivered, the sixth failing over and over, the rest waiting.
  REQUIRE(wait_until([&] { return rx.accepted().size() == 5 && rx.failed() >= 3; }));
  CHECK(wait_until([&] { return metric(c, "kontor_policy_lag_events{policy=\"thank-you\"}") >= 25; }));
  node.kill_hard();

  rx.set_accept_budget(-1);
  node.start();
  http_client c2{node.port()};
  REQUIRE(wait_until([&] { return all_accepted(rx, expected); }, std::chrono::seconds(60)));
  check_requests(rx, expected);
  // More deposits after the restart are delivered too.
  auto later = deposit(c2, "k-b", "k-later", threshold);
  expected.insert(later);
  REQUIRE(wait_until([&] { return all_accepted(rx, expected); }));
  CHECK(node.stop() == 0);
}

// A unique owner e-mail across three nodes: two accounts claim one address through two gateways
// at once, 20 rounds, exactly one wins each; a gateway killed mid-claims leaves no address
// claimed by nobody past the reservation timeout, and after its restart every address is free or
// held by the account that has it.

#include <atomic>
#include <mutex>
#include <set>
#include <thread>

#include <catch2/catch.hpp>

#include "tests/cluster/common.hpp"
#include "tests/support/wait.hpp"

using namespace kontor::test;
using namespace std::chrono_literals;
namespace json = boost::json;

namespace {

constexpr std::int64_t timeout_ms = 3000;

std::vector<std::string> email_args() {
  auto args = quick_args();
  for (const auto& a : std::vector<std::string>{"--email-reservation-timeout", std::to_string(timeout_ms) + "ms",
                                                "--policy-retry-initial", "20ms", "--policy-retry-max", "300ms"})
    args.push_back(a);
  return args;
}

std::string email_body(const std::string& address) { return R"({"email":")" + address + R"("})"; }

/// The reservation of `address` through node `i` (null when it cannot answer: its shard's
/// owner is down).
std::optional<json::object> reservation(test_cluster& c, std::size_t i, const std::string& address) {
  auto r = c.request(i, "GET", "/admin/emails/" + address);
  if (r.status != 200)
    return std::nullopt;
  return body_json(r).as_object();
}

/// The account's own e-mail through node `i` ("" for none; null when it cannot answer).
std::optional<std::string> email_of(test_cluster& c, std::size_t i, const std::string& id) {
  auto r = c.request(i, "GET", "/accounts/" + id + "?consistent=true");
  if (r.status != 200)
    return std::nullopt;
  const auto body = body_json(r);
  const auto& e = body.at("email");
  return e.is_null() ? std::string{} : std::string(e.as_string());
}

/// Whether `address` is settled: free, or held by the account that has it. Claims whose
/// reservation or account cannot answer count as settled when `reachable_only`.
bool settled(test_cluster& c, std::size_t via, const std::string& address, bool reachable_only,
             std::string& why) {
  auto r = reservation(c, via, address);
  if (!r) {
    why = address + ": its reservation does not answer";
    return reachable_only;
  }
  const auto status = std::string(r->at("status").as_string());
  if (status == "free")
    return true;
  const auto account = std::string(r->at("account").as_string());
  auto has = email_of(c, via, account);
  if (!has) {
    why = address + ": account " + account + " does not answer";
    return reachable_only;
  }
  if (status == "held" && *has == address)
    return true;
  why = address + " is " + status + " for " + account + ", which has '" + *has + "'";
  return false;
}

} // namespace

TEST_CASE("e-mail race on three nodes: in each of 20 rounds two accounts claim one address through "
          "two gateways at once and exactly one wins",
          "[cluster][email]") {
  test_cluster c{{.nodes = 3, .args = email_args()}};
  start_three(c, true);
  REQUIRE(c.request(0, "POST", "/accounts", open_body("ra")).status == 201);
  REQUIRE(c.request(1, "POST", "/accounts", open_body("rb")).status == 201);
  const std::string ids[2] = {"ra", "rb"};
  for (std::size_t round = 0; round < 20; ++round) {
    const auto address = "race-" + std::to_string(round) + "@example.com";
    const std::size_t via[2] = {round % 3, (round + 1) % 3};
    std::atomic<int> go{0};
    int status[2] = {0, 0};
    std::vector<std::thread> threads;
    for (int i = 0; i < 2; ++i)
      threads.emplace_back([&, i] {
        auto client = c.client(via[i]);
        client->get("/health");
        ++go;
        while (go.load() < 2) {
        }
        status[i] = client->put("/accounts/" + ids[i] + "/email", email_body(address)).status;
      });
    for (auto& t : threads)
      t.join();
    INFO("round " << round << " through " << c.name(via[0]) << " and " << c.name(via[1]) << ": "
                  << status[0] << " " << status[1]);
    CHECK(std::multiset<int>{status[0], status[1]} == std::multiset<int>{200, 409});
    auto held = reservation(c, 2, address);
    REQUIRE(held.has_value());
    CHECK(held->at("status") == "held");
    const auto winner = std::string(held->at("account").as_string());
    const int w = winner == "ra" ? 0 : 1;
    CHECK(status[w] == 200);
    CHECK(email_of(c, 2, winner) == address);
    // The loser recorded the failure.
    auto loser = events_of(c, 2, ids[1 - w]);
    REQUIRE_FALSE(loser.empty());
    CHECK(loser.back().at("type") == "EmailChangeFailed");
    CHECK(loser.back().at("data").at("email").as_string() == address);
  }
}

TEST_CASE("e-mail on three nodes: after kill -9 of a gateway mid-claims no address stays claimed by "
          "nobody past the reservation timeout, and after its restart every address is free or held "
          "by the account that has it",
          "[cluster][email]") {
  test_cluster c{{.nodes = 3, .args = email_args()}};
  start_three(c, true);
  std::vector<std::string> accounts;
  for (int a = 0; a < 6; ++a) {
    accounts.push_back("ek-" + std::to_string(a));
    REQUIRE(c.request(0, "POST", "/accounts", open_body(accounts.back())).status == 201);
  }
  std::set<std::string> addresses;
  std::mutex mutex;
  std::atomic<bool> stop{false};
  std::atomic<int> answered{0};
  std::vector<std::thread> threads;
  // Two clients per gateway, each changing its account's address again and again over a shared
  // pool (so claims compete), until the test stops them or their gateway dies.
  for (std::size_t t = 0; t < 6; ++t)
    threads.emplace_back([&, t] {
      auto client = c.client(t % 3, 5000);
      for (std::size_t n = 0; !stop.load(); ++n) {
        auto address = "pool-" + std::to_string((t * 7 + n) % 15) + "@example.com";
        {
          std::lock_guard lock{mutex};
          addresses.insert(address);
        }
        auto r = client->put("/accounts/" + accounts[t] + "/email", email_body(address));
        if (r.status == 0)
          return; // its gateway is gone
        ++answered;
      }
    });
  REQUIRE(wait_until([&] { return answered.load() >= 150; }, 90s));
  c.kill(2);
  const auto killed_at = std::chrono::steady_clock::now();
  stop = true;
  for (auto& t : threads)
    t.join();

  // Claims whose reservation and account live on the two that stay are settled by the timeout
  // (plus the policy's round trips) while the killed node is still down; the others wait for it.
  std::string why;
  bool reachable_settled = wait_until([&] {
    for (const auto& a : addresses)
      if (!settled(c, 0, a, true, why))
        return false;
    return true;
  }, std::chrono::milliseconds(timeout_ms) + 20s);
  INFO(why << " (" << std::chrono::duration_cast<std::chrono::milliseconds>(
                        std::chrono::steady_clock::now() - killed_at).count()
           << " ms after the kill)");
  CHECK(reachable_settled);

  c.start(2);
  REQUIRE(c.wait_ready(2, 60s));
  REQUIRE(c.wait_members_up(3));
  bool all_settled = wait_until([&] {
    for (const auto& a : addresses)
      if (!settled(c, 1, a, false, why))
        return false;
    return true;
  }, 60s);
  INFO(why);
  CHECK(all_settled);
  // And every account's address is held for it.
  for (const auto& id : accounts) {
    auto has = email_of(c, 1, id);
    REQUIRE(has.has_value());
    if (has->empty())
      continue;
    auto r = reservation(c, 1, *has);
    REQUIRE(r.has_value());
    CHECK(r->at("status") == "held");
    CHECK(r->at("account").as_string() == id);
  }
}

// spread_load and test_cluster::load: every request lands on the node it was meant for and
// every outcome is counted in its kind.

#include <signal.h>

#include <map>
#include <mutex>
#include <set>

#include <catch2/catch.hpp>

#include "tests/lab/fake_http_server.hpp"
#include "tests/support/cluster.hpp"
#include "tests/support/load.hpp"
#include "tests/support/ports.hpp"

using namespace kontor::test;

TEST_CASE("spread_load counts 2xx, 4xx, 503, other statuses and transport errors apart",
          "[lab][load]") {
  fake_http_server a, b;
  port_reservation closed{1}; // reserved, so nobody listens there: connections are refused
  std::vector<endpoint> endpoints{{"127.0.0.1", a.port()}, {"127.0.0.1", b.port()},
                                  {"127.0.0.1", closed[0]}};
  const int codes[] = {200, 201, 404, 409, 503, 500};
  std::mutex mtx;
  std::map<std::size_t, int> seen; // request index -> status
  auto result = spread_load(
    endpoints, 60, 4,
    [&](std::size_t i) {
      return load_request{"GET", "/status/" + std::to_string(codes[(i / 3) % 6]), {}, {}};
    },
    [&](std::size_t i, const load_request&, const http_result& r) {
      std::lock_guard<std::mutex> guard{mtx};
      seen[i] = r.status;
    },
    2000);
  INFO(result.summary());
  // Request i went to endpoint i % 3; i / 3 = k picks the code: codes 0 and 1 come up 4 times
  // among k = 0..19, the others 3 times, each time for two requests that reach a server.
  CHECK(result.total() == 60);
  CHECK(result.ok == 16);
  CHECK(result.client_error == 12);
  CHECK(result.unavailable == 6);
  CHECK(result.other == 6);
  CHECK(result.transport == 20);
  CHECK(result.by_status == std::map<int, std::size_t>{
                              {0, 20}, {200, 8}, {201, 8}, {404, 6}, {409, 6}, {500, 6}, {503, 6}});
  CHECK(a.served() == 20);
  CHECK(b.served() == 20);
  REQUIRE(seen.size() == 60);
  for (auto& [i, status] : seen)
    CHECK(status == (i % 3 == 2 ? 0 : codes[(i / 3) % 6]));
}

namespace {

std::string account_body(const std::string& id) {
  return R"({"id":")" + id + R"(","owner":"Lab","country":"DE","currency":"EUR","limit":100})";
}

} // namespace

TEST_CASE("test_cluster::load spreads requests over every node, and a dead node's share fails",
          "[lab][load]") {
  test_cluster cluster{{.nodes = 3, .clustered = false}};
  cluster.start_all();
  auto open = [](std::size_t i) {
    return load_request{"POST", "/accounts", account_body("spread-" + std::to_string(i)), {}};
  };
  auto first = cluster.load(30, 4, open);
  INFO(first.summary());
  CHECK(first.ok == 30);
  // Request i went to node i % 3: the account exists there and on no other node (single nodes).
  for (std::size_t i = 0; i < 30; ++i)
    for (std::size_t n = 0; n < 3; ++n)
      CHECK(cluster.get(n, "/accounts/spread-" + std::to_string(i) + "?consistent=true").status
            == (n == i % 3 ? 200 : 404));
  // The same ids again: each node has them already.
  auto again = cluster.load(30, 4, open);
  INFO(again.summary());
  CHECK(again.client_error == 30);
  CHECK(again.by_status == std::map<int, std::size_t>{{409, 30}});

  cluster.kill(2);
  auto health = cluster.load(30, 3, [](std::size_t) { return load_request{}; }, {}, 2000);
  INFO(health.summary());
  CHECK(health.ok == 20);
  CHECK(health.transport == 10);
}

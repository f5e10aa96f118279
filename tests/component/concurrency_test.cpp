// One writer per account: concurrent commands on one account are decided one at a time.

#include <atomic>
#include <barrier>
#include <thread>

#include "tests/component/node_fixture.hpp"

using namespace kontor::test;

TEST_CASE("the seeds' race: purchases of 500 and 700 on balance 700, twenty times",
          "[concurrency]") {
  running_node node;
  http_client setup{node.port()};
  for (int round = 0; round < 20; ++round) {
    auto id = "race-" + std::to_string(round);
    REQUIRE(setup.post("/accounts", open_body(id, 0)).status == 201);
    REQUIRE(setup.post("/accounts/" + id + "/transactions", tx_body("seed", "deposit", 700)).status
            == 201);

    http_client a{node.port()}, b{node.port()};
    REQUIRE(a.get("/health").status == 200); // connections open before the start signal
    REQUIRE(b.get("/health").status == 200);
    std::barrier start{2};
    int status_a = 0, status_b = 0;
    std::thread ta([&] {
      start.arrive_and_wait();
      status_a = a.post("/accounts/" + id + "/transactions", tx_body("buy-500", "purchase", 500)).status;
    });
    std::thread tb([&] {
      start.arrive_and_wait();
      status_b = b.post("/accounts/" + id + "/transactions", tx_body("buy-700", "purchase", 700)).status;
    });
    ta.join();
    tb.join();
    INFO("round " << round << ": " << status_a << " / " << status_b);
    CHECK(((status_a == 201 && status_b == 400) || (status_a == 400 && status_b == 201)));
    auto acc = body_json(setup.get("/accounts/" + id + "?consistent=true"));
    auto balance = acc.at("balance").as_int64();
    CHECK(balance >= 0);
    CHECK((balance == 200 || balance == 0));
    CHECK(acc.at("version") == 3);
  }
}

TEST_CASE("16 threads x 50 purchases of 10 on balance 5000: exactly 500 succeed", "[concurrency]") {
  running_node node;
  http_client setup{node.port()};
  REQUIRE(setup.post("/accounts", open_body("shared", 0)).status == 201);
  REQUIRE(setup.post("/accounts/shared/transactions", tx_body("seed", "deposit", 5000)).status == 201);

  std::atomic<int> accepted{0}, refused{0}, other{0};
  std::vector<std::thread> threads;
  std::barrier start{16};
  for (int t = 0; t < 16; ++t) {
    threads.emplace_back([&, t] {
      http_client c{node.port()};
      start.arrive_and_wait();
      for (int i = 0; i < 50; ++i) {
        auto tx = "t" + std::to_string(t) + "-" + std::to_string(i);
        auto r = c.post("/accounts/shared/transactions", tx_body(tx, "purchase", 10));
        if (r.status == 201)
          ++accepted;
        else if (r.status == 400)
          ++refused;
        else
          ++other;
      }
    });
  }
  for (auto& t : threads)
    t.join();
  CHECK(accepted == 500);
  CHECK(refused == 300);
  CHECK(other == 0);
  auto acc = body_json(setup.get("/accounts/shared?consistent=true"));
  CHECK(acc.at("balance") == 0);
  CHECK(acc.at("version") == 502);
  CHECK(all_events(setup, "shared").size() == 502);
}

// kill -9 under load: nothing acknowledged is lost and no command is half-applied.

#include <atomic>
#include <mutex>
#include <set>
#include <thread>

#include "tests/component/node_fixture.hpp"
#include "tests/support/wait.hpp"

using namespace kontor::test;

TEST_CASE("kill -9 while 8 clients send transactions loses no acknowledged event", "[crash]") {
  running_node node;
  constexpr int clients = 8;
  constexpr int accounts = 4;
  {
    http_client setup{node.port()};
    for (int a = 0; a < accounts; ++a)
      REQUIRE(setup.post("/accounts", open_body("crash-" + std::to_string(a), 1000)).status == 201);
  }

  std::mutex mtx;
  std::map<std::string, std::set<std::string>> acked_tx; // account -> txIds answered 2xx
  std::map<std::string, int> acked_locks;                // account -> locks answered 200
  std::atomic<int> acks{0};        // 2xx answers
  std::vector<std::string> unexpected; // answers other than 2xx, 400 and 409 (under mtx)
  std::atomic<bool> stop{false};
  std::vector<std::thread> threads;
  for (int t = 0; t < clients; ++t) {
    threads.emplace_back([&, t] {
      http_client c{node.port(), 3000};
      auto id = "crash-" + std::to_string(t % accounts);
      for (int i = 0; !stop; ++i) {
        http_result r;
        if (i % 10 == 9) {
          r = c.post("/accounts/" + id + "/lock", R"({"reason":"crash test"})");
          if (r.status == 200) {
            std::lock_guard<std::mutex> g{mtx};
            acked_locks[id]++;
          }
          if (r.status != 0)
            r = c.post("/accounts/" + id + "/unlock", "");
        } else {
          auto tx = "c" + std::to_string(t) + "-" + std::to_string(i);
          r = c.post("/accounts/" + id + "/transactions",
                     tx_body(tx, i % 3 == 0 ? "purchase" : "deposit", 7));
          if (r.status == 201) {
            std::lock_guard<std::mutex> g{mtx};
            acked_tx[id].insert(tx);
          }
        }
        if (r.status == 0)
          return; // the node is gone
        if (r.status / 100 == 2) {
          ++acks;
        } else if (r.status != 400 && r.status != 409) { // overdrawn, locked, not locked
          std::lock_guard<std::mutex> g{mtx};
          unexpected.push_back(std::to_string(r.status) + " " + r.body);
        }
      }
    });
  }
  // Crash in the middle of the load, after a good number of acknowledged commands, with the
  // node still running (not already dead of something else).
  bool loaded = wait_until([&] { return acks >= 600; }, std::chrono::seconds(60));
  const bool alive = node.process().running();
  node.kill_hard();
  stop = true;
  for (auto& th : threads)
    th.join();
  INFO("2xx answers before the kill: " << acks.load());
  REQUIRE(loaded);
  REQUIRE(alive);
  {
    std::lock_guard<std::mutex> g{mtx};
    INFO("first unexpected answer: " << (unexpected.empty() ? "" : unexpected.front()));
    CHECK(unexpected.empty());
  }

  node.start();
  http_client c{node.port()};
  for (int a = 0; a < accounts; ++a) {
    auto id = "crash-" + std::to_string(a);
    INFO(id);
    auto events = all_events(c, id);
    std::set<std::string> seen;
    std::int64_t balance = 0;
    int locks = 0;
    for (std::size_t i = 0; i < events.size(); ++i) {
      const auto& ev = events[i].as_object();
      CHECK(ev.at("seq").as_int64() == static_cast<std::int64_t>(i + 1));
      auto type = std::string(ev.at("type").as_string());
      const auto& data = ev.at("data").as_object();
      if (type == "ItemPurchased" || type == "MoneyDeposited") {
        auto tx = std::string(data.at("txId").as_string());
        CHECK(seen.insert(tx).second); // never applied twice
        balance += (type == "MoneyDeposited" ? 1 : -1) * data.at("amount").as_int64();
        CHECK(data.at("newBalance").as_int64() == balance);
      }
      // A lock is both events, adjacent, or neither.
      if (type == "LimitChanged") {
        REQUIRE(i + 1 < events.size());
        CHECK(events[i + 1].at("type") == "StatusChanged");
        CHECK(events[i + 1].at("data").at("to") == "locked");
        ++locks;
      }
      if (type == "StatusChanged" && data.at("to") == "locked") {
        REQUIRE(i > 0);
        CHECK(events[i - 1].at("type") == "LimitChanged");
      }
    }
    for (const auto& tx : acked_tx[id]) {
      INFO("acknowledged " << tx);
      CHECK(seen.count(tx) == 1);
    }
    CHECK(locks >= acked_locks[id]);
    auto acc = body_json(c.get("/accounts/" + id + "?consistent=true"));
    CHECK(acc.at("balance").as_int64() == balance);
    CHECK(acc.at("version").as_int64() == static_cast<std::int64_t>(events.size()));
  }
  // And the node takes new commands on the recovered accounts.
  CHECK(c.post("/accounts/crash-0/transactions", tx_body("after-crash", "deposit", 1)).status == 201);
}

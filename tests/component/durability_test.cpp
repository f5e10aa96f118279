// What the README promises across a stop: SIGTERM lets appends in flight finish, and the txId
// window lives in snapshots, so it survives a restart.

#include <atomic>
#include <mutex>
#include <set>
#include <thread>

#include "account.pb.h"
#include "runtime/persistence/lmdb_journal.hpp"
#include "tests/component/node_fixture.hpp"
#include "tests/support/wait.hpp"

using namespace kontor::test;

TEST_CASE("SIGTERM with appends in flight: exit 0, every 2xx durable, nothing half-applied",
          "[durability]") {
  running_node node;
  constexpr int clients = 8;
  {
    http_client setup{node.port()};
    for (int t = 0; t < clients; ++t) {
      REQUIRE(setup.post("/accounts", open_body("term-" + std::to_string(t), 0)).status == 201);
      REQUIRE(setup.post("/accounts", open_body("term-lock-" + std::to_string(t), 50)).status == 201);
    }
  }
  // Each client deposits on its own account and locks/unlocks another (a lock is two events),
  // without pause, until the node stops answering.
  std::mutex mtx;
  std::map<std::string, std::set<std::string>> acked_tx; // account -> txIds answered 201
  std::map<std::string, int> acked_locks;                // account -> locks answered 200
  std::vector<std::string> unexpected;                   // answers other than 2xx and 503
  std::atomic<int> acks{0};
  std::atomic<bool> give_up{false};
  std::vector<std::thread> threads;
  for (int t = 0; t < clients; ++t) {
    threads.emplace_back([&, t] {
      http_client c{node.port(), 5000};
      const auto id = "term-" + std::to_string(t);
      const auto lock_id = "term-lock-" + std::to_string(t);
      bool locked = false;
      for (int i = 0; !give_up; ++i) {
        http_result r;
        if (i % 4 == 3) {
          r = locked ? c.post("/accounts/" + lock_id + "/unlock", "")
                     : c.post("/accounts/" + lock_id + "/lock", R"({"reason":"term"})");
          if (r.status == 200) {
            std::lock_guard<std::mutex> g{mtx};
            if (!locked)
              acked_locks[lock_id]++;
            locked = !locked;
          }
        } else {
          auto tx = "t" + std::to_string(i);
          r = c.post("/accounts/" + id + "/transactions", tx_body(tx, "deposit", 3));
          if (r.status == 201) {
            std::lock_guard<std::mutex> g{mtx};
            acked_tx[id].insert(tx);
          }
        }
        if (r.status == 0)
          return; // the node stopped answering
        if (r.status / 100 == 2) {
          ++acks;
        } else if (r.status != 503) { // 503: refused while stopping
          std::lock_guard<std::mutex> g{mtx};
          unexpected.push_back(std::to_string(r.status) + " " + r.body);
          return;
        }
      }
    });
  }
  const bool loaded = wait_until([&] { return acks >= 400; }, std::chrono::seconds(60));
  const bool alive = node.process().running();
  const int exit_code = node.stop(); // SIGTERM while the clients keep sending
  give_up = true;
  for (auto& th : threads)
    th.join();
  INFO("2xx answers: " << acks.load());
  REQUIRE(loaded);
  REQUIRE(alive);
  CHECK(exit_code == 0);
  INFO("first unexpected answer: " << (unexpected.empty() ? "" : unexpected.front()));
  CHECK(unexpected.empty());
  CHECK(node.log().find("stopped") != std::string::npos);

  node.start();
  http_client c{node.port()};
  for (int t = 0; t < clients; ++t) {
    const auto id = "term-" + std::to_string(t);
    INFO(id);
    auto events = all_events(c, id);
    std::set<std::string> seen;
    std::int64_t balance = 0;
    for (std::size_t i = 1; i < events.size(); ++i) {
      const auto& data = events[i].at("data").as_object();
      CHECK(seen.insert(std::string(data.at("txId").as_string())).second);
      balance += 3;
      CHECK(data.at("newBalance").as_int64() == balance);
    }
    for (const auto& tx : acked_tx[id]) {
      INFO("acknowledged " << tx);
      CHECK(seen.count(tx) == 1);
    }
    CHECK(body_json(c.get("/accounts/" + id + "?consistent=true")).at("balance") == balance);

    // A lock is both of its events, adjacent, or neither.
    const auto lock_id = "term-lock-" + std::to_string(t);
    INFO(lock_id);
    auto lock_events = all_events(c, lock_id);
    int locks = 0;
    for (std::size_t i = 0; i < lock_events.size(); ++i) {
      if (lock_events[i].at("type") != "LimitChanged")
        continue;
      REQUIRE(i + 1 < lock_events.size());
      CHECK(lock_events[i + 1].at("type") == "StatusChanged");
      CHECK(lock_events[i + 1].at("data").at("to") == "locked");
      ++locks;
    }
    CHECK(locks >= acked_locks[lock_id]);
  }
}

TEST_CASE("the txId window survives a restart through a snapshot", "[durability]") {
  running_node node({"--snapshot-every", "5"});
  http_client c{node.port()};
  REQUIRE(c.post("/accounts", open_body("snap", 0)).status == 201);
  std::vector<std::int64_t> balance_after; // balance_after[i]: the answer to deposit "tx<i+1>"
  for (int i = 1; i <= 8; ++i) {
    auto r = c.post("/accounts/snap/transactions", tx_body("tx" + std::to_string(i), "deposit", 10 * i));
    REQUIRE(r.status == 201);
    balance_after.push_back(body_json(r).at("balance").as_int64());
  }
  REQUIRE(node.stop() == 0);

  // The journal on disk holds a snapshot past the first deposits, and it carries their txIds.
  {
    kontor::persistence::lmdb_options opts;
    opts.dir = std::filesystem::path(node.data_dir()) / "journal";
    opts.number_of_shards = 64;
    auto journal = kontor::persistence::open_lmdb_journal(opts);
    REQUIRE(journal);
    auto snap = (*journal)->load_snapshot("snap");
    REQUIRE(snap);
    REQUIRE(snap->has_value());
    CHECK((*snap)->seq >= 5);
    kontor::account::pb::Snapshot state;
    REQUIRE(state.ParseFromString((*snap)->payload));
    std::set<std::string> remembered;
    for (const auto& rec : state.recent_txs())
      remembered.insert(rec.tx_id());
    CHECK(remembered.count("tx1") == 1);
    CHECK(remembered.count("tx4") == 1);
  }

  // After the restart the account starts from that snapshot: old txIds are still known.
  node.start();
  http_client c2{node.port()};
  for (int i : {1, 4, 7}) {
    INFO("tx" << i);
    auto again = c2.post("/accounts/snap/transactions", tx_body("tx" + std::to_string(i), "deposit", 10 * i));
    REQUIRE(again.status == 201);
    CHECK(again.header("idempotent-replayed") == "true");
    CHECK(body_json(again).at("balance") == balance_after[static_cast<std::size_t>(i - 1)]);
  }
  auto reused = c2.post("/accounts/snap/transactions", tx_body("tx2", "deposit", 999));
  CHECK(reused.status == 409);
  CHECK(all_events(c2, "snap").size() == 9);
  CHECK(body_json(c2.get("/accounts/snap?consistent=true")).at("balance") == 360);
}

// A disk whose fsync hangs or fails (kontor_fault_fs preloaded into the node): 503s with the
// documented codes, nothing applied that was not acknowledged, and the node recovers.

#include <signal.h>

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <thread>

#include "runtime/core/ids.hpp"
#include "tests/component/node_fixture.hpp"
#include "tests/support/wait.hpp"

using namespace kontor::test;

namespace {

/// The control file of kontor_fault_fs for one node: what its fdatasync/fsync calls do next.
class fault_control {
public:
  fault_control() { set("ok"); }

  /// "ok", or "fail"/"hang" followed by a path fragment that selects the files affected.
  void set(const std::string& instruction) {
    const auto tmp = file() + ".tmp";
    {
      std::ofstream out(tmp, std::ios::trunc);
      out << instruction << "\n";
      REQUIRE(out.good());
    }
    std::filesystem::rename(tmp, file()); // atomic: the library never reads half an instruction
  }

  /// set("ok") for a destructor: no assertion, no exception.
  void release() noexcept {
    std::error_code ec;
    const auto tmp = file() + ".tmp";
    {
      std::ofstream out(tmp, std::ios::trunc);
      out << "ok\n";
    }
    std::filesystem::rename(tmp, file(), ec);
  }

  /// Whether a sync call is blocked by "hang" right now.
  bool hanging() const { return std::filesystem::exists(file() + ".hanging"); }

  /// The environment that preloads the library into a node and points it at this file.
  std::vector<std::string> node_env() const {
    const char* asan = std::getenv("ASAN_OPTIONS");
    return {"LD_PRELOAD=" KONTOR_FAULT_FS_LIBRARY, "FAULT_FS_FILE=" + file(),
            // A preloaded library comes before the sanitizer runtime of a sanitized build.
            std::string("ASAN_OPTIONS=") + (asan ? asan : "") + ":verify_asan_link_order=0"};
  }

private:
  std::string file() const { return (dir_.path() / "fsync").string(); }
  temp_dir dir_{"kontor-fault"};
};

/// The journal's log file (not its index, not the read models).
const std::string journal_log = "journal/data.mdb";

std::int64_t count_tx(const boost::json::array& events, const std::string& tx_id) {
  std::int64_t n = 0;
  for (const auto& e : events)
    if (const auto* tx = e.at("data").as_object().if_contains("txId"); tx && *tx == tx_id.c_str())
      ++n;
  return n;
}

} // namespace

TEST_CASE("a command whose fsync hangs gets 503 timeout, and retried with its txId it applies once",
          "[fault]") {
  fault_control fault;
  running_node node({"--command-timeout", "300ms"}, fault.node_env());
  http_client c{node.port()};
  REQUIRE(c.post("/accounts", open_body("slow", 0)).status == 201);

  fault.set("hang " + journal_log);
  auto r = c.post("/accounts/slow/transactions", tx_body("slow-1", "deposit", 10));
  INFO(r.body);
  REQUIRE(r.status == 503);
  CHECK(body_json(r).at("error") == "timeout");
  CHECK(!r.header("retry-after").empty());

  // The disk comes back: the retry with the same txId learns the outcome, and the deposit is in
  // the account exactly once.
  fault.set("ok");
  http_result retry;
  REQUIRE(wait_until([&] {
    retry = c.post("/accounts/slow/transactions", tx_body("slow-1", "deposit", 10));
    return retry.status != 503;
  }));
  INFO(retry.body);
  REQUIRE(retry.status == 201);
  CHECK(retry.header("idempotent-replayed") == "true"); // the first attempt was applied
  CHECK(body_json(retry).at("balance") == 10);
  auto events = all_events(c, "slow");
  CHECK(events.size() == 2);
  CHECK(count_tx(events, "slow-1") == 1);
  // And the node answers as usual.
  auto next = c.post("/accounts/slow/transactions", tx_body("slow-2", "deposit", 5));
  CHECK(next.status == 201);
  CHECK(body_json(next).at("balance") == 15);
}

TEST_CASE("a failing fsync gives 503 journal_unavailable, applies nothing, and the node recovers",
          "[fault]") {
  fault_control fault;
  running_node node({}, fault.node_env());
  http_client c{node.port()};
  REQUIRE(c.post("/accounts", open_body("eio", 1000)).status == 201);
  REQUIRE(c.post("/accounts/eio/transactions", tx_body("before", "deposit", 100)).status == 201);

  fault.set("fail " + journal_log);
  auto dep = c.post("/accounts/eio/transactions", tx_body("lost", "deposit", 50));
  INFO(dep.body);
  CHECK(dep.status == 503);
  CHECK(body_json(dep).at("error") == "journal_unavailable");
  CHECK(!dep.header("retry-after").empty());
  auto lock = c.post("/accounts/eio/lock", R"({"reason":"two events, or none"})");
  INFO(lock.body);
  CHECK(lock.status == 503);
  CHECK(body_json(lock).at("error") == "journal_unavailable");

  // Nothing of either command is visible.
  auto acc = body_json(c.get("/accounts/eio?consistent=true"));
  CHECK(acc.at("version") == 2);
  CHECK(acc.at("balance") == 100);
  CHECK(acc.at("status") == "active");
  CHECK(all_events(c, "eio").size() == 2);

  // The disk comes back: commands go through, and the refused txId was not remembered.
  fault.set("ok");
  auto after = c.post("/accounts/eio/transactions", tx_body("after", "deposit", 7));
  INFO(after.body);
  REQUIRE(after.status == 201);
  CHECK(body_json(after).at("balance") == 107);
  auto again = c.post("/accounts/eio/transactions", tx_body("lost", "deposit", 50));
  REQUIRE(again.status == 201);
  CHECK(again.header("idempotent-replayed").empty());
  CHECK(body_json(again).at("balance") == 157);

  // A restart shows the same history: nothing of the failed commands, everything acknowledged.
  CHECK(node.stop() == 0);
  node.start();
  http_client c2{node.port()};
  std::vector<std::string> types;
  auto events = all_events(c2, "eio");
  for (const auto& e : events)
    types.emplace_back(e.at("type").as_string());
  CHECK(types == std::vector<std::string>{"AccountOpened", "MoneyDeposited", "MoneyDeposited",
                                          "MoneyDeposited"});
  CHECK(count_tx(events, "lost") == 1);
  auto restarted = body_json(c2.get("/accounts/eio?consistent=true"));
  CHECK(restarted.at("balance") == 157);
  CHECK(restarted.at("version") == 4);
}

TEST_CASE("SIGTERM while an append waits for the disk: the node finishes it, then exits 0",
          "[fault]") {
  fault_control fault;
  // No preallocation: the only syncs of the journal's file are its commits.
  running_node node({"--journal-preallocate-mb", "0"}, fault.node_env());
  http_client c{node.port()};
  REQUIRE(c.post("/accounts", open_body("term", 0)).status == 201);

  // A deposit whose commit is inside fsync when the node is told to stop.
  fault.set("hang " + journal_log);
  http_result answer;
  std::thread client([&] {
    http_client slow{node.port()};
    answer = slow.post("/accounts/term/transactions", tx_body("in-flight", "deposit", 42));
  });
  const bool in_fsync = wait_until([&] { return fault.hanging(); });
  REQUIRE(::kill(node.process().pid(), SIGTERM) == 0);
  const bool stopping =
    wait_until([&] { return node.log().find("stopping on SIGTERM") != std::string::npos; });
  fault.set("ok"); // the disk answers only once the node is stopping
  const int exit_code = node.stop();
  client.join();
  REQUIRE(in_fsync);
  REQUIRE(stopping);
  CHECK(exit_code == 0);
  INFO("answer to the deposit in flight: " << answer.status << " " << answer.body);
  CHECK((answer.status == 0 || answer.status == 201 || answer.status == 503));

  // The append in flight was finished, not dropped.
  node.start();
  http_client c2{node.port()};
  auto events = all_events(c2, "term");
  CHECK(events.size() == 2);
  CHECK(count_tx(events, "in-flight") == 1);
  CHECK(body_json(c2.get("/accounts/term?consistent=true")).at("balance") == 42);
}

// Issue 7 item 1: a batch the read model could not commit is read again from its first position
// (the read model answers every batch with its durable positions).
TEST_CASE("a read model whose commits fail catches up once the disk is back", "[fault]") {
  fault_control fault;
  running_node node({}, fault.node_env());
  http_client c{node.port()};
  REQUIRE(c.post("/accounts", open_body("early", 10)).status == 201);
  REQUIRE(wait_until([&] { return c.get("/accounts/early").status == 200; }));

  fault.set("fail read/data.mdb"); // the read models' store only; the journal is fine
  REQUIRE(c.post("/accounts", open_body("late", 20)).status == 201);
  REQUIRE(wait_until([&] { return node.log().find("applying a batch failed") != std::string::npos; }));
  REQUIRE(c.post("/accounts/late/transactions", tx_body("d", "deposit", 5)).status == 201);
  fault.set("ok");

  auto consistent = c.get("/accounts/late?consistent=true");
  REQUIRE(consistent.status == 200);
  http_result projected;
  bool converged = wait_until(
    [&] {
      projected = c.get("/accounts/late");
      return projected.status == 200 && body_json(projected) == body_json(consistent);
    },
    std::chrono::seconds(5));
  INFO("read model: " << projected.status << " " << projected.body);
  CHECK(converged);
}

TEST_CASE("with log-format json every log line is a JSON object, answers carry X-Request-Id, and a "
          "503 is logged with its account and request id",
          "[fault]") {
  fault_control fault;
  running_node node({"--command-timeout", "300ms", "--log-format", "json", "--node-name", "jsonnode"},
                    fault.node_env());
  http_client c{node.port()};
  // A usable client id is passed through; none, or an unusable one, gets a new one.
  CHECK(c.request("GET", "/health", "", "X-Request-Id: trace-1.a:b_c\r\n").header("x-request-id")
        == "trace-1.a:b_c");
  auto is_generated = [](const std::string& id) {
    return id.size() == 16 && id.find_first_not_of("0123456789abcdef") == std::string::npos;
  };
  const auto first = c.get("/health").header("x-request-id");
  CHECK(is_generated(first));
  CHECK(c.get("/health").header("x-request-id") != first);
  CHECK(is_generated(c.request("GET", "/health", "", "X-Request-Id: a/b\r\n").header("x-request-id")));
  CHECK(is_generated(c.raw("GET /health HTTP/1.1\r\n\r\n").header("x-request-id"))); // no Host: 400

  REQUIRE(c.post("/accounts", open_body("slow-json", 0)).status == 201);
  fault.set("hang " + journal_log);
  auto r = c.request("POST", "/accounts/slow-json/transactions", tx_body("j-1", "deposit", 10),
                     "Content-Type: application/json\r\nX-Request-Id: req-503\r\n");
  fault.set("ok");
  REQUIRE(r.status == 503);
  CHECK(r.header("x-request-id") == "req-503");

  REQUIRE(wait_until([&] { return node.log().find("req-503") != std::string::npos; }));
  std::size_t lines = 0, failures = 0;
  std::istringstream in(node.log());
  for (std::string line; std::getline(in, line);) {
    INFO(line);
    boost::json::error_code ec;
    auto v = boost::json::parse(line, ec);
    REQUIRE(!ec);
    REQUIRE(v.is_object());
    ++lines;
    const auto& o = v.as_object();
    for (const char* key : {"time", "level", "node", "component", "message"})
      CHECK(o.contains(key));
    CHECK(o.at("node") == "jsonnode");
    if (o.contains("request_id") && o.at("request_id") == "req-503") {
      ++failures;
      CHECK(o.at("level") == "warn");
      CHECK(o.at("component") == "http");
      CHECK(o.at("account") == "slow-json");
      CHECK(std::string(o.at("message").as_string()).find("503 timeout") != std::string::npos);
    }
  }
  CHECK(lines >= 3); // journal, read model, ready, …
  CHECK(failures == 1);
}

// Issue 10 item 4: backpressure. With the disk stalled, commands pile up behind the accounts
// that wait for it; beyond max-entity-queue (one account) or max-shard-queue (one shard's
// accounts together) a command is refused at once with 503 overloaded, while accounts elsewhere
// still answer. What was accepted applies once the disk is back.
TEST_CASE("backpressure: behind a stalled disk a flood on one account gets 503 overloaded at "
          "once, a full shard refuses its other accounts too, other shards answer, and every "
          "accepted command applies",
          "[fault][backpressure]") {
  fault_control fault;
  running_node node({"--max-entity-queue", "4", "--max-shard-queue", "6", "--command-timeout", "60s",
                     "--journal-preallocate-mb", "0"},
                    fault.node_env());
  http_client c{node.port(), 60000};
  // Three accounts of one shard and one of another (64 shards, the default).
  auto shard = [](const std::string& id) { return kontor::shard_of(id, 64); };
  const std::string hot = "hot";
  std::string warm, third, cold;
  for (int k = 0; warm.empty() || third.empty() || cold.empty(); ++k) {
    auto id = "acct-" + std::to_string(k);
    if (shard(id) != shard(hot)) {
      if (cold.empty())
        cold = id;
    } else if (warm.empty()) {
      warm = id;
    } else if (third.empty()) {
      third = id;
    }
  }
  for (const auto& id : {hot, warm, third, cold})
    REQUIRE(c.post("/accounts", open_body(id, 0)).status == 201);
  CHECK(metric(c, "kontor_queued_commands") == 0);

  fault.set("hang " + journal_log);
  std::vector<std::thread> clients;
  std::vector<http_result> answers(6);
  // Also when a REQUIRE ends the test early: the disk comes back and every client returns.
  struct release_all {
    fault_control& fault;
    std::vector<std::thread>& clients;
    ~release_all() {
      fault.release();
      for (auto& t : clients)
        if (t.joinable())
          t.join();
    }
  } release{fault, clients};
  auto deposit_async = [&](std::size_t k, const std::string& id) {
    clients.emplace_back([&, k, id] {
      http_client slow{node.port(), 60000};
      answers[k] = slow.post("/accounts/" + id + "/transactions",
                             tx_body("flood-" + std::to_string(k), "deposit", 10));
    });
  };
  // The first deposit into hot waits in fsync; three more wait behind it: hot's queue is full.
  deposit_async(0, hot);
  REQUIRE(wait_until([&] { return fault.hanging(); }));
  for (std::size_t k = 1; k < 4; ++k)
    deposit_async(k, hot);
  REQUIRE(wait_until([&] { return metric(c, "kontor_queued_commands") == 4; }));

  // One more command for hot — a deposit or a consistent read — is refused at once.
  auto refused = c.post("/accounts/" + hot + "/transactions", tx_body("one-too-many", "deposit", 10));
  INFO(refused.body);
  CHECK(refused.status == 503);
  CHECK(body_json(refused).at("error") == "overloaded");
  CHECK(body_json(refused).at("message").as_string().find("max-entity-queue") != std::string::npos);
  CHECK(!refused.header("retry-after").empty());
  auto read_hot = c.get("/accounts/" + hot + "?consistent=true");
  CHECK(read_hot.status == 503);
  // An account of another shard answers meanwhile.
  auto read_cold = c.get("/accounts/" + cold + "?consistent=true");
  INFO(read_cold.body);
  CHECK(read_cold.status == 200);

  // Two deposits into warm fill the shard (4 + 2 = 6): its third account is refused as well.
  deposit_async(4, warm);
  deposit_async(5, warm);
  REQUIRE(wait_until([&] { return metric(c, "kontor_queued_commands") == 6; }));
  CHECK(metric(c, "kontor_shard_queue_depth_max") == 6);
  auto shard_full = c.post("/accounts/" + third + "/transactions", tx_body("t", "deposit", 10));
  INFO(shard_full.body);
  CHECK(shard_full.status == 503);
  CHECK(body_json(shard_full).at("error") == "overloaded");
  CHECK(body_json(shard_full).at("message").as_string().find("max-shard-queue") != std::string::npos);
  CHECK(c.get("/accounts/" + cold + "?consistent=true").status == 200);
  CHECK(metric(c, "kontor_commands_refused_total{queue=\"entity\"}") == 2);
  CHECK(metric(c, "kontor_commands_refused_total{queue=\"shard\"}") == 1);

  // The disk is back: every accepted deposit is applied, nothing refused is.
  fault.set("ok");
  for (auto& t : clients)
    t.join();
  for (std::size_t k = 0; k < answers.size(); ++k) {
    INFO("deposit " << k << ": " << answers[k].status << " " << answers[k].body);
    CHECK(answers[k].status == 201);
  }
  CHECK(body_json(c.get("/accounts/" + hot + "?consistent=true")).at("balance") == 40);
  CHECK(body_json(c.get("/accounts/" + warm + "?consistent=true")).at("balance") == 20);
  CHECK(body_json(c.get("/accounts/" + third + "?consistent=true")).at("balance") == 0);
  CHECK(count_tx(all_events(c, hot), "one-too-many") == 0);
  CHECK(metric(c, "kontor_queued_commands") == 0);
  CHECK(c.post("/accounts/" + third + "/transactions", tx_body("t", "deposit", 10)).status == 201);
}

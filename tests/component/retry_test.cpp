// What a client that retries sees: txIds remembered across snapshots and a changed tx-window,
// and 503s (not 500s) when nothing was written.

#include <filesystem>
#include <future>
#include <memory>

#include "runtime/persistence/lmdb_journal.hpp"
#include "tests/component/node_fixture.hpp"

using namespace kontor::test;

namespace {

/// A node process on one data directory, restartable with other flags.
class restartable_node {
public:
  void start(std::vector<std::string> args) {
    proc_.reset();
    auto n = std::to_string(++starts_);
    proc_ = std::make_unique<node_process>(data_dir(), (dir_.path() / ("node-" + n + ".log")).string(),
                                           std::move(args));
    if (!proc_->wait_ready())
      FAIL("node did not become ready; log:\n" << proc_->log());
  }
  int stop() { return proc_->stop(); }
  unsigned short port() const { return proc_->port(); }
  std::string data_dir() const { return (dir_.path() / "data").string(); }

private:
  temp_dir dir_;
  std::unique_ptr<node_process> proc_;
  int starts_ = 0;
};

/// Opens the journal of a stopped node (the node's default shard count).
std::unique_ptr<kontor::persistence::journal> open_journal(const std::string& data_dir) {
  kontor::persistence::lmdb_options opts;
  opts.dir = std::filesystem::path(data_dir) / "journal";
  auto j = kontor::persistence::open_lmdb_journal(opts);
  REQUIRE(j);
  return std::move(*j);
}

} // namespace

TEST_CASE("raising tx-window: a retry within the new window is recognised on an account with a "
          "snapshot", "[retry][snapshot]") {
  restartable_node node;
  node.start({"--snapshot-every", "5", "--tx-window", "3"});
  {
    http_client c{node.port()};
    REQUIRE(c.post("/accounts", open_body("w", 0)).status == 201);
    for (int i = 1; i <= 12; ++i)
      REQUIRE(c.post("/accounts/w/transactions", tx_body("t" + std::to_string(i), "deposit", 1))
                .status == 201);
  }
  REQUIRE(node.stop() == 0);
  {
    // The account has a snapshot, written under window 3 (t7-t9 at seq 10).
    auto journal = open_journal(node.data_dir());
    auto snap = journal->load_snapshot("w");
    REQUIRE(snap);
    REQUIRE(snap->has_value());
    CHECK((*snap)->seq == 10);
  }

  node.start({"--snapshot-every", "5", "--tx-window", "20"});
  http_client c{node.port()};
  // t2 is within the last 20 transactions: a replay of the events remembers it.
  auto retry = c.post("/accounts/w/transactions", tx_body("t2", "deposit", 1));
  CHECK(retry.status == 201);
  CHECK(retry.header("idempotent-replayed") == "true");
  CHECK(body_json(retry).at("balance") == 2);
  auto reused = c.post("/accounts/w/transactions", tx_body("t2", "deposit", 5));
  CHECK(reused.status == 409);
  CHECK(body_json(reused).at("error") == "tx_id_reused");
  CHECK(all_events(c, "w").size() == 13);
  CHECK(body_json(c.get("/accounts/w?consistent=true")).at("balance") == 12);
}

TEST_CASE("an account that cannot recover answers 503 entity_unavailable and writes nothing",
          "[retry]") {
  restartable_node node;
  node.start({});
  {
    http_client c{node.port()};
    REQUIRE(c.post("/accounts", open_body("broken", 0)).status == 201);
    REQUIRE(c.post("/accounts/broken/transactions", tx_body("d1", "deposit", 5)).status == 201);
    REQUIRE(c.post("/accounts", open_body("fine", 0)).status == 201);
  }
  REQUIRE(node.stop() == 0);
  {
    // A snapshot no build can read, as damage or a bug would leave it.
    auto journal = open_journal(node.data_dir());
    std::promise<bool> saved;
    journal->save_snapshot_async({"broken", 2, std::string("\xff\xff not a snapshot")},
                                 [&](kontor::persistence::expected<void> r) {
                                   saved.set_value(bool(r));
                                 });
    REQUIRE(saved.get_future().get());
  }

  node.start({});
  http_client c{node.port()};
  // Every command fails to start the account's entity: never decided, nothing written. That is
  // a 503 with Retry-After (like a refused journal write), not a 500.
  std::vector<http_result> answers{
    c.post("/accounts/broken/transactions", tx_body("d2", "deposit", 5)),
    c.post("/accounts/broken/lock", R"({"reason":"x"})"),
    c.put("/accounts/broken/limit", R"({"limit":5})"),
    c.get("/accounts/broken?consistent=true"),
  };
  for (const auto& r : answers) {
    INFO(r.body);
    CHECK(r.status == 503);
    CHECK(r.header("retry-after") == "1");
    auto err = body_json(r).as_object();
    CHECK(err.at("error") == "entity_unavailable");
  }
  // The reason, as far as the entity got to tell it (a command that reaches it just after it
  // stopped hears only that it stopped).
  CHECK(body_json(answers[0]).at("message")
        == "entity broken cannot recover: unreadable snapshot at 2");
  CHECK(all_events(c, "broken").size() == 2);
  // Other accounts are not affected.
  CHECK(c.post("/accounts/fine/transactions", tx_body("f1", "deposit", 5)).status == 201);
}

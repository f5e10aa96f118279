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
    auto log = (dir_.path() / ("node-" + n + ".log")).string();
    proc_ = std::make_unique<node_process>(data_dir(), log, std::move(args));
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

namespace {

/// Sends `method target body` with Idempotency-Key `key` (and `more` raw header lines).
http_result with_key(http_client& c, const std::string& method, const std::string& target,
                     const std::string& body, const std::string& key,
                     const std::string& more = {}) {
  return c.request(method, target, body,
                   "Content-Type: application/json\r\nIdempotency-Key: " + key + "\r\n" + more);
}

/// Requires `retry` to be `first` again, marked as a replay: same status, same events.
void require_replay_of(const http_result& first, const http_result& retry) {
  INFO(retry.body);
  CHECK(retry.status == first.status);
  CHECK(retry.header("idempotent-replayed") == "true");
  CHECK(first.header("idempotent-replayed").empty());
  auto a = body_json(first).as_object();
  auto b = body_json(retry).as_object();
  if (a.contains("events"))
    CHECK(a.at("events") == b.at("events"));
  CHECK(a.at("id") == b.at("id"));
}

} // namespace

TEST_CASE("Idempotency-Key: every command is safe to retry", "[retry][key]") {
  restartable_node node;
  node.start({});
  http_client c{node.port()};

  // Opening: the retry answers the first 201, not 409 account_exists.
  auto open = with_key(c, "POST", "/accounts", open_body("k", 1000), "open-1");
  REQUIRE(open.status == 201);
  auto open_again = with_key(c, "POST", "/accounts", open_body("k", 1000), "open-1");
  require_replay_of(open, open_again);
  CHECK(open_again.header("location") == "/accounts/k");
  CHECK(body_json(open_again).at("owner") == "Mike Magic");
  CHECK(c.post("/accounts", open_body("k", 1000)).status == 409);
  auto other_body = with_key(c, "POST", "/accounts", open_body("k", 5), "open-1");
  CHECK(other_body.status == 409);
  CHECK(body_json(other_body).at("error") == "idempotency_key_reused");
  CHECK(body_json(other_body).at("field") == "Idempotency-Key");

  // Every route; a retry's JSON may differ in form (spaces, order, unknown fields), not in values.
  struct step {
    std::string method, target, body, same_values, key;
  };
  std::vector<step> steps{
    {"PUT", "/accounts/k/limit", R"({"limit":2000})", R"({ "limit" : 2000, "note": 1 })",
     "limit-1"},
    {"POST", "/accounts/k/phones", R"({"number":"+49 126 555 555"})",
     R"({"number":"+49 126 555 555"})", "phone-1"},
    {"PUT", "/accounts/k/address",
     R"({"street":"Ring 1","city":"Wien","zip":"1010","country":"AT"})",
     R"({"country":"AT","zip":"1010","city":"Wien","street":"Ring 1"})", "address-1"},
    {"POST", "/accounts/k/transactions", tx_body("t1", "deposit", 700),
     R"({"amount":700,"currency":"EUR","kind":"deposit","txId":"t1"})", "tx-1"},
    {"POST", "/accounts/k/lock", R"({"reason":"card lost"})", R"({"reason":"card lost"})",
     "lock-1"},
    {"POST", "/accounts/k/unlock", "", "", "unlock-1"},
  };
  std::vector<http_result> firsts;
  for (const auto& s : steps) {
    INFO(s.method << " " << s.target);
    auto first = with_key(c, s.method, s.target, s.body, s.key);
    REQUIRE(first.status / 100 == 2);
    firsts.push_back(first);
  }
  auto version = body_json(c.get("/accounts/k?consistent=true")).at("version").as_int64();
  CHECK(version == 8); // opened, limit, phone, address, deposit, lock (2 events), unlock
  for (std::size_t i = 0; i < steps.size(); ++i) {
    const auto& s = steps[i];
    INFO(s.method << " " << s.target);
    // A stale If-Match is ignored for a replay, as it is for a repeated txId.
    require_replay_of(firsts[i], with_key(c, s.method, s.target, s.same_values, s.key,
                                          "If-Match: \"1\"\r\n"));
    // The key with another request: refused, nothing appended.
    auto reused = with_key(c, "PUT", "/accounts/k/limit", R"({"limit":3})", s.key);
    CHECK(reused.status == 409);
    CHECK(body_json(reused).at("error") == "idempotency_key_reused");
  }
  // The lock's retry has both events, the transaction's its first balance.
  CHECK(body_json(firsts[3]).at("balance") == 700);
  CHECK(body_json(firsts[4]).at("events").as_array().size() == 2);
  CHECK(all_events(c, "k").size() == static_cast<std::size_t>(version));

  // The keys are rebuilt from the events after a restart.
  REQUIRE(node.stop() == 0);
  node.start({});
  http_client c2{node.port()};
  for (std::size_t i = 0; i < steps.size(); ++i)
    require_replay_of(firsts[i],
                      with_key(c2, steps[i].method, steps[i].target, steps[i].body, steps[i].key));
  require_replay_of(open, with_key(c2, "POST", "/accounts", open_body("k", 1000), "open-1"));
  CHECK(all_events(c2, "k").size() == static_cast<std::size_t>(version));
}

TEST_CASE("Idempotency-Key: a malformed key is 400 and changes nothing, reads ignore it",
          "[retry][key]") {
  restartable_node node;
  node.start({});
  http_client c{node.port()};
  REQUIRE(c.post("/accounts", open_body("m", 0)).status == 201);
  for (std::string bad : {std::string{}, std::string(256, 'k'), std::string{"two words"}}) {
    INFO("key '" << bad << "'");
    auto r = with_key(c, "PUT", "/accounts/m/limit", R"({"limit":5})", bad);
    CHECK(r.status == 400);
    auto err = body_json(r).as_object();
    CHECK(err.at("error") == "invalid_field");
    CHECK(err.at("field") == "Idempotency-Key");
  }
  CHECK(with_key(c, "PUT", "/accounts/m/limit", R"({"limit":5})", std::string(255, 'k')).status
        == 200);
  CHECK(all_events(c, "m").size() == 2);
  auto read = c.request("GET", "/accounts/m?consistent=true", {}, "Idempotency-Key: \r\n");
  CHECK(read.status == 200);
  CHECK(read.header("idempotent-replayed").empty());
}

// Event upcasting against a journal written by the v1 binary (tests/fixtures/v1-journal, see its
// README): today's kontor-node starts on a copy of that data dir and every reader — the entity
// (from its v1 snapshot and v1 events), asOf, the read models the v1 node built or a rebuild of
// them, the audit log and the feed — answers what the v1 node answered, except that deposits
// now show `"source":"api"`; new deposits are appended as v2, and a restart changes nothing.

#include <filesystem>
#include <fstream>
#include <sstream>

#include "account.pb.h"
#include "runtime/persistence/lmdb_journal.hpp"
#include "tests/component/node_fixture.hpp"
#include "tests/support/command.hpp"

using namespace kontor::test;
namespace fs = std::filesystem;

namespace {

const fs::path fixture_dir = fs::path(KONTOR_SOURCE_DIR) / "tests/fixtures/v1-journal";
const std::vector<std::string> accounts = {"alice", "bob", "carol"};

/// The JSON in `name` under the fixture's expected/ (the v1 node's answer).
boost::json::value expected(const std::string& name) {
  std::ifstream in(fixture_dir / "expected" / name);
  REQUIRE(in);
  std::stringstream text;
  text << in.rdbuf();
  return boost::json::parse(text.str());
}

/// `events` (audit-log or feed entries) with `"source":"api"` added to every deposit's data:
/// what v1's answers become when its deposits are read as v2.
boost::json::array with_api_source(const boost::json::value& v1_events) {
  auto events = v1_events.as_array();
  for (auto& ev : events)
    if (ev.at("type") == "MoneyDeposited")
      ev.as_object()["data"].as_object()["source"] = "api";
  return events;
}

/// The fixture's data dir, unpacked into `dir` (as `dir/data`).
std::string unpack_fixture(const temp_dir& dir) {
  auto out = run_command({"tar", "-xzf", (fixture_dir / "data.tar.gz").string(), "-C", dir.str()});
  REQUIRE(out.exit_code == 0);
  return (dir.path() / "data").string();
}

/// A node on the unpacked fixture, ready. `n` numbers its log.
std::unique_ptr<node_process> start_on(const temp_dir& dir, int n) {
  auto node = std::make_unique<node_process>((dir.path() / "data").string(),
                                             (dir.path() / ("node-" + std::to_string(n) + ".log")).string(),
                                             std::vector<std::string>{"--journal-preallocate-mb", "0"});
  if (!node->wait_ready())
    FAIL("node did not become ready on the v1 data dir; log:\n" << node->log());
  return node;
}

/// GET `target` as JSON, requiring 200.
boost::json::value get_json(http_client& c, const std::string& target) {
  auto r = c.get(target);
  INFO(target << " -> " << r.status << " " << r.body);
  REQUIRE(r.status == 200);
  return body_json(r);
}

/// Every event of the feed from the start, and the cursor after it.
std::pair<boost::json::array, boost::json::value> whole_feed(http_client& c) {
  const auto page = get_json(c, "/events?limit=1000");
  return {page.at("events").as_array(), page.at("next")};
}

/// An account as the v1 node showed it, with the fields added since as a v1 account has them:
/// "email" null (v1 had no owner e-mails).
boost::json::object with_email_field(const boost::json::value& v1_account) {
  auto out = v1_account.as_object();
  out["email"] = nullptr;
  return out;
}

/// Checks what the v1 node answered for every read route; `new_deposit` says whether alice has
/// the deposit a-d4 appended by this binary after her 7 v1 events.
void check_reads_as_v2(http_client& c, bool new_deposit) {
  REQUIRE(caught_up(c));
  CHECK(get_json(c, "/stats/countries") == expected("stats.json")); // deposits move no totals
  for (const auto& id : accounts) {
    INFO("account " << id);
    // The v1 node's answer, plus what accounts gained since: an owner e-mail (none in v1).
    auto account = with_email_field(expected(id + ".json"));
    auto log = with_api_source(expected(id + ".events.json"));
    if (id == "alice" && new_deposit) {
      account["balance"] = 650;
      account["version"] = 8;
      auto now = get_json(c, "/accounts/alice/events?from=8");
      REQUIRE(now.as_array().size() == 1);
      account["updatedAt"] = now.as_array()[0].at("at");
      log.push_back(now.as_array()[0]);
    }
    // The entity (consistent), the read model, the audit log.
    CHECK(get_json(c, "/accounts/" + id + "?consistent=true") == account);
    CHECK(get_json(c, "/accounts/" + id) == account);
    auto events = get_json(c, "/accounts/" + id + "/events").as_array();
    CHECK(events == log);
    for (const auto& ev : events)
      if (ev.at("type") == "MoneyDeposited")
        CHECK(ev.at("data").at("source") == "api");
    // asOf at the time of each v1 event: the account as the v1 node rebuilt it then.
    const auto v1_events = expected(id + ".events.json");
    for (const auto& ev : v1_events.as_array()) {
      auto seq = ev.at("seq").as_int64();
      INFO("asOf event " << seq);
      std::string at{ev.at("at").as_string()};
      CHECK(get_json(c, "/accounts/" + id + "?asOf=" + at)
            == with_email_field(expected(id + ".asof." + std::to_string(seq) + ".json")));
    }
  }
  // The feed: v1's events in v1's order, deposits with their source, then the new deposit.
  auto [feed, next] = whole_feed(c);
  auto v1_feed = with_api_source(expected("feed.json").at("events"));
  REQUIRE(feed.size() == v1_feed.size() + (new_deposit ? 1 : 0));
  for (std::size_t i = 0; i < v1_feed.size(); ++i) {
    INFO("feed entry " << i);
    CHECK(feed[i] == v1_feed[i]);
  }
  if (new_deposit) {
    const auto& last = feed.back();
    CHECK(last.at("accountId") == "alice");
    CHECK(last.at("seq") == 8);
    CHECK(last.at("type") == "MoneyDeposited");
    CHECK(last.at("data").at("source") == "api");
    CHECK(last.at("data").at("txId") == "a-d4");
  } else {
    // A client that read the whole feed from the v1 node continues where it stopped.
    CHECK(next == expected("feed.json").at("next"));
  }
}

} // namespace

TEST_CASE("the fixture is a v1 journal: v1 events and a v1 snapshot without deposit sources",
          "[upcast]") {
  temp_dir dir{"kontor-upcast"};
  kontor::persistence::lmdb_options opts;
  opts.dir = fs::path(unpack_fixture(dir)) / "journal";
  opts.number_of_shards = 64;
  auto journal = kontor::persistence::open_lmdb_journal(opts);
  REQUIRE(journal);
  auto events = (*journal)->replay("alice", 1, 100);
  REQUIRE(events);
  REQUIRE(events->size() == 7);
  int deposits = 0;
  for (const auto& stored : *events) {
    kontor::account::pb::Event raw;
    REQUIRE(raw.ParseFromString(stored.payload));
    CHECK(raw.schema_version() == 1);
    if (raw.has_money_deposited()) {
      ++deposits;
      CHECK(raw.money_deposited().source().empty());
    }
  }
  CHECK(deposits == 3);
  auto snap = (*journal)->load_snapshot("alice");
  REQUIRE(snap);
  REQUIRE(snap->has_value());
  CHECK((*snap)->seq == 6); // after the lock
  kontor::account::pb::Snapshot state;
  REQUIRE(state.ParseFromString((*snap)->payload));
  CHECK(state.schema_version() == 1);
  bool has_deposit = false;
  for (const auto& rec : state.recent_txs())
    if (!rec.tx_id().empty() && !rec.purchase()) {
      has_deposit = true;
      CHECK(rec.source().empty());
    }
  CHECK(has_deposit);
}

TEST_CASE("a node on a v1 journal reads every deposit as v2 with source api, before and after "
          "a restart",
          "[upcast]") {
  temp_dir dir{"kontor-upcast"};
  unpack_fixture(dir);
  auto node = start_on(dir, 1);
  {
    http_client c{node->port()};
    // The read models the v1 node built, and the entities from the v1 snapshot and events.
    check_reads_as_v2(c, false);
    CHECK(get_json(c, "/accounts/alice/explain").at("snapshotSeq") == 6); // the v1 one

    // Retries of v1 deposits answer their first outcome, now with the source: a-d2 (keyed) is
    // remembered in alice's v1 snapshot, a-d3 in the v1 event after it.
    auto d2 = c.request("POST", "/accounts/alice/transactions", tx_body("a-d2", "deposit", 300),
                        "Idempotency-Key: key-a-d2\r\n");
    REQUIRE(d2.status == 201);
    CHECK(d2.header("idempotent-replayed") == "true");
    CHECK(body_json(d2).at("balance") == 1000);
    CHECK(body_json(d2).at("events").at(0).at("source") == "api");
    auto d3 = c.post("/accounts/alice/transactions", tx_body("a-d3", "deposit", 50));
    REQUIRE(d3.status == 201);
    CHECK(d3.header("idempotent-replayed") == "true");
    CHECK(body_json(d3).at("events").at(0).at("source") == "api");
    CHECK(body_json(d3).at("events").at(0).at("seq") == 7);
    // A v1 txId with another amount is still another transaction.
    CHECK(c.post("/accounts/alice/transactions", tx_body("a-d1", "deposit", 1)).status == 409);

    // A new deposit is appended as v2 with source api (a locked account takes deposits).
    auto d4 = c.post("/accounts/alice/transactions", tx_body("a-d4", "deposit", 100));
    REQUIRE(d4.status == 201);
    CHECK(body_json(d4).at("balance") == 650);
    CHECK(body_json(d4).at("events").at(0).at("source") == "api");
    CHECK(body_json(d4).at("events").at(0).at("seq") == 8);
    // Bad input still gets its clear error, and appends nothing.
    auto bad = c.post("/accounts/alice/transactions", tx_body("a-d5", "deposit", -1));
    CHECK(bad.status == 400);
    CHECK(body_json(bad).at("field") == "amount");
    check_reads_as_v2(c, true);
  }
  REQUIRE(node->stop() == 0);

  // The new deposit is stored as v2 with its source; the v1 events stay as they were written.
  {
    kontor::persistence::lmdb_options opts;
    opts.dir = dir.path() / "data" / "journal";
    opts.number_of_shards = 64;
    auto journal = kontor::persistence::open_lmdb_journal(opts);
    REQUIRE(journal);
    auto events = (*journal)->replay("alice", 1, 100);
    REQUIRE(events);
    REQUIRE(events->size() == 8);
    kontor::account::pb::Event first, last;
    REQUIRE(first.ParseFromString(events->at(1).payload));
    REQUIRE(last.ParseFromString(events->back().payload));
    CHECK(first.schema_version() == 1);
    CHECK(first.money_deposited().source().empty());
    CHECK(last.schema_version() == 2);
    CHECK(last.money_deposited().source() == "api");
  }

  node = start_on(dir, 2);
  http_client c{node->port()};
  check_reads_as_v2(c, true);
  REQUIRE(node->stop() == 0);
}

TEST_CASE("read models rebuilt from a v1 journal show deposits with source api", "[upcast]") {
  temp_dir dir{"kontor-upcast"};
  // Without the v1 node's read store: today's node rebuilds it by replaying the v1 journal.
  fs::remove_all(fs::path(unpack_fixture(dir)) / "read");
  auto node = start_on(dir, 1);
  http_client c{node->port()};
  check_reads_as_v2(c, false);
  REQUIRE(node->stop() == 0);
}

TEST_CASE("with deposit-event-version 1 deposits are stored as v1 with their source and read as "
          "v2",
          "[upcast]") {
  running_node node({"--deposit-event-version", "1", "--journal-preallocate-mb", "0"});
  {
    http_client c{node.port()};
    REQUIRE(c.post("/accounts", open_body("old-readers")).status == 201);
    auto dep = c.post("/accounts/old-readers/transactions", tx_body("o-d1", "deposit", 70));
    REQUIRE(dep.status == 201);
    CHECK(body_json(dep).at("events").at(0).at("source") == "api");
  }
  REQUIRE(node.stop() == 0);
  {
    kontor::persistence::lmdb_options opts;
    opts.dir = fs::path(node.data_dir()) / "journal";
    opts.number_of_shards = 64;
    auto journal = kontor::persistence::open_lmdb_journal(opts);
    REQUIRE(journal);
    auto events = (*journal)->replay("old-readers", 2, 1);
    REQUIRE(events);
    REQUIRE(events->size() == 1);
    kontor::account::pb::Event raw;
    REQUIRE(raw.ParseFromString(events->front().payload));
    CHECK(raw.schema_version() == 1); // what a node of a build before v2 reads
    CHECK(raw.money_deposited().source() == "api");
  }
  node.start();
  http_client c{node.port()};
  auto log = all_events(c, "old-readers");
  REQUIRE(log.size() == 2);
  CHECK(log[1].at("data").at("source") == "api");
  REQUIRE(caught_up(c));
  auto [feed, next] = whole_feed(c);
  REQUIRE(feed.size() == 2);
  CHECK(feed[1].at("data").at("source") == "api");
  CHECK(body_json(c.get("/accounts/old-readers")).at("balance") == 70);
}

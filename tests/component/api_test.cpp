// The command and query routes of API.md against a real node.

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <iterator>
#include <thread>
#include <tuple>

#include "tests/component/node_fixture.hpp"
#include "tests/support/wait.hpp"

using namespace kontor::test;
namespace json = boost::json;

namespace {

/// Milliseconds since the epoch of an RFC 3339 UTC time as the API prints it
/// ("2026-11-22T10:00:00.123Z").
std::int64_t epoch_ms(const std::string& text) {
  std::tm tm{};
  const char* rest = strptime(text.c_str(), "%Y-%m-%dT%H:%M:%S", &tm);
  REQUIRE(rest != nullptr);
  REQUIRE(std::string(rest).size() == 5); // ".123Z"
  return static_cast<std::int64_t>(timegm(&tm)) * 1000 + std::stoi(std::string(rest + 1, 3));
}

/// The RFC 3339 UTC time of `ms`, with milliseconds.
std::string format_ms(std::int64_t ms) {
  std::time_t secs = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char text[32];
  std::strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%S", &tm);
  char millis[8];
  std::snprintf(millis, sizeof millis, ".%03dZ", static_cast<int>(ms % 1000));
  return std::string(text) + millis;
}

/// This machine's clock in milliseconds since the epoch (the node runs on the same clock).
std::int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
           std::chrono::system_clock::now().time_since_epoch())
    .count();
}

/// `n` deposits of 1 on `id` from four clients at once (group commits keep this quick).
void append_deposits(unsigned short port, const std::string& id, int n) {
  std::atomic<int> failed{0};
  std::vector<std::thread> clients;
  for (int t = 0; t < 4; ++t) {
    clients.emplace_back([&, t] {
      http_client c{port};
      for (int i = t; i < n; i += 4)
        if (c.post("/accounts/" + id + "/transactions",
                   tx_body(id + "-" + std::to_string(i), "deposit", 1))
              .status
            != 201)
          ++failed;
    });
  }
  for (auto& th : clients)
    th.join();
  REQUIRE(failed == 0);
}

std::int64_t balance_of(http_client& c, const std::string& id) {
  auto r = c.get("/accounts/" + id + "?consistent=true");
  REQUIRE(r.status == 200);
  return body_json(r).at("balance").as_int64();
}

} // namespace

TEST_CASE("an opened account is created durably and reads back", "[api]") {
  running_node node;
  http_client c{node.port()};

  auto r = c.post("/accounts", open_body("333", 1000));
  REQUIRE(r.status == 201);
  CHECK(r.header("location") == "/accounts/333");
  CHECK(r.header("etag") == "\"1\"");
  auto acc = body_json(r).as_object();
  CHECK(acc.at("id") == "333");
  CHECK(acc.at("owner") == "Mike Magic");
  CHECK(acc.at("country") == "DE");
  CHECK(acc.at("currency") == "EUR");
  CHECK(acc.at("limit") == 1000);
  CHECK(acc.at("balance") == 0);
  CHECK(acc.at("status") == "active");
  CHECK(acc.at("version") == 1);

  auto again = c.post("/accounts", open_body("333", 5));
  CHECK(again.status == 409);
  CHECK(body_json(again).at("error") == "account_exists");

  auto got = c.get("/accounts/333?consistent=true");
  REQUIRE(got.status == 200);
  CHECK(body_json(got).at("limit") == 1000);

  // Survives a clean restart: the answer came after fsync.
  CHECK(node.stop() == 0);
  node.start();
  http_client c2{node.port()};
  auto after = c2.get("/accounts/333?consistent=true");
  REQUIRE(after.status == 200);
  CHECK(body_json(after).at("owner") == "Mike Magic");
}

TEST_CASE("opening validates every field", "[api]") {
  running_node node;
  http_client c{node.port()};
  struct bad_case {
    std::string body;
    std::string field;
  };
  std::vector<bad_case> cases = {
    {open_body("a", -1), "limit"},
    {open_body("a", 1'000'000'000'001), "limit"},
    {open_body("a", 10, "ZZZ"), "currency"},
    {open_body("a", 10, "EUR", "XX"), "country"},
    {open_body("bad/id", 10), "id"},
    {open_body(std::string(65, 'x'), 10), "id"},
    {R"({"id":"a","owner":"","country":"DE","currency":"EUR","limit":1})", "owner"},
    {R"({"id":"a","country":"DE","currency":"EUR","limit":1})", "owner"},
  };
  for (const auto& bc : cases) {
    INFO(bc.body);
    auto r = c.post("/accounts", bc.body);
    CHECK(r.status == 400);
    auto err = body_json(r).as_object();
    CHECK(err.at("error") == "invalid_field");
    CHECK(err.at("field").as_string() == bc.field);
  }
  CHECK(c.get("/accounts/a?consistent=true").status == 404);
}

TEST_CASE("limit updates, locks and unlocks follow the rules", "[api]") {
  running_node node;
  http_client c{node.port()};
  REQUIRE(c.post("/accounts", open_body("333", 1000)).status == 201);

  auto r = c.put("/accounts/333/limit", R"({"limit":2000})");
  REQUIRE(r.status == 200);
  auto body = body_json(r).as_object();
  CHECK(body.at("id") == "333");
  CHECK(body.at("version") == 2);
  auto& ev = body.at("events").as_array().at(0).as_object();
  CHECK(ev.at("type") == "LimitUpdated");
  CHECK(ev.at("newLimit") == 2000);
  CHECK(ev.at("oldLimit") == 1000);

  CHECK(c.put("/accounts/333/limit", R"({"limit":-5})").status == 400);
  CHECK(c.put("/accounts/nobody/limit", R"({"limit":5})").status == 404);

  // Lock: both events in one answer, limit 0.
  auto lock = c.post("/accounts/333/lock", R"({"reason":"fraud check"})");
  REQUIRE(lock.status == 200);
  auto events = body_json(lock).at("events").as_array();
  REQUIRE(events.size() == 2);
  CHECK(events[0].at("type") == "LimitChanged");
  CHECK(events[0].at("newLimit") == 0);
  CHECK(events[0].at("oldLimit") == 2000);
  CHECK(events[1].at("type") == "StatusChanged");
  CHECK(events[1].at("from") == "active");
  CHECK(events[1].at("to") == "locked");
  CHECK(events[1].at("seq").as_int64() == events[0].at("seq").as_int64() + 1);

  auto locked = c.put("/accounts/333/limit", R"({"limit":10})");
  CHECK(locked.status == 409);
  CHECK(body_json(locked).at("error") == "account_locked");
  CHECK(c.post("/accounts/333/lock", "{}").status == 409);
  CHECK(c.post("/accounts/333/transactions", tx_body("t1", "purchase", 1)).status == 409);
  // Deposits are still accepted on a locked account (only purchases and limit changes are not).
  CHECK(c.post("/accounts/333/transactions", tx_body("t2", "deposit", 5)).status == 201);

  auto unlock = c.post("/accounts/333/unlock", "");
  REQUIRE(unlock.status == 200);
  CHECK(body_json(unlock).at("events").as_array().size() == 1);
  CHECK(c.post("/accounts/333/unlock", "").status == 409);
  CHECK(c.put("/accounts/333/limit", R"({"limit":10})").status == 200);

  auto log = all_events(c, "333");
  std::vector<std::string> types;
  for (auto& e : log)
    types.emplace_back(e.at("type").as_string());
  CHECK(types == std::vector<std::string>{"AccountOpened", "LimitUpdated", "LimitChanged",
                                          "StatusChanged", "MoneyDeposited", "StatusChanged",
                                          "LimitUpdated"});
}

TEST_CASE("purchases and deposits keep the balance within the limit", "[api]") {
  running_node node;
  http_client c{node.port()};
  REQUIRE(c.post("/accounts", open_body("p1", 100)).status == 201);

  auto dep = c.post("/accounts/p1/transactions", tx_body("d1", "deposit", 500));
  REQUIRE(dep.status == 201);
  CHECK(body_json(dep).at("balance") == 500);
  auto ok = c.post("/accounts/p1/transactions", tx_body("b1", "purchase", 600));
  REQUIRE(ok.status == 201);
  CHECK(body_json(ok).at("balance") == -100);
  auto over = c.post("/accounts/p1/transactions", tx_body("b2", "purchase", 1));
  CHECK(over.status == 400);
  CHECK(body_json(over).at("error") == "insufficient_funds");
  auto usd = c.post("/accounts/p1/transactions", tx_body("b3", "deposit", 1, "USD"));
  CHECK(usd.status == 400);
  CHECK(body_json(usd).at("error") == "currency_mismatch");
  CHECK(c.post("/accounts/p1/transactions", tx_body("b4", "purchase", 0)).status == 400);
  CHECK(c.post("/accounts/p1/transactions", tx_body("b5", "refund", 5)).status == 400);
  CHECK(c.post("/accounts/nope/transactions", tx_body("b6", "deposit", 5)).status == 404);
  CHECK(balance_of(c, "p1") == -100);
}

TEST_CASE("a repeated txId appends nothing and returns the first outcome", "[api]") {
  running_node node;
  http_client c{node.port()};
  REQUIRE(c.post("/accounts", open_body("t", 0)).status == 201);
  REQUIRE(c.post("/accounts/t/transactions", tx_body("dep", "deposit", 1000)).status == 201);

  auto first = c.post("/accounts/t/transactions", tx_body("tx-42", "purchase", 300));
  REQUIRE(first.status == 201);
  auto second = c.post("/accounts/t/transactions", tx_body("tx-42", "purchase", 300));
  REQUIRE(second.status == 201);
  CHECK(second.header("idempotent-replayed") == "true");
  auto a = body_json(first).as_object();
  auto b = body_json(second).as_object();
  CHECK(a.at("balance") == 700);
  CHECK(b.at("balance") == 700);
  CHECK(a.at("events") == b.at("events"));
  CHECK(balance_of(c, "t") == 700);
  CHECK(all_events(c, "t").size() == 3);

  // Same txId, different amount: refused, nothing appended.
  auto reused = c.post("/accounts/t/transactions", tx_body("tx-42", "purchase", 1));
  CHECK(reused.status == 409);
  CHECK(body_json(reused).at("error") == "tx_id_reused");
  // Survives a restart (the window is rebuilt from events).
  CHECK(node.stop() == 0);
  node.start();
  http_client c2{node.port()};
  auto third = c2.post("/accounts/t/transactions", tx_body("tx-42", "purchase", 300));
  CHECK(third.status == 201);
  CHECK(body_json(third).at("balance") == 700);
  CHECK(all_events(c2, "t").size() == 3);
}

TEST_CASE("If-Match with a stale version gets 412 and appends nothing", "[api]") {
  running_node node;
  http_client c{node.port()};
  REQUIRE(c.post("/accounts", open_body("v", 10)).status == 201);
  auto stale = c.request("PUT", "/accounts/v/limit", R"({"limit":20})",
                         "Content-Type: application/json\r\nIf-Match: \"7\"\r\n");
  CHECK(stale.status == 412);
  CHECK(body_json(stale).at("error") == "version_mismatch");
  auto fresh = c.request("PUT", "/accounts/v/limit", R"({"limit":20})",
                         "Content-Type: application/json\r\nIf-Match: \"1\"\r\n");
  CHECK(fresh.status == 200);
  CHECK(fresh.header("etag") == "\"2\"");
  auto garbage = c.request("PUT", "/accounts/v/limit", R"({"limit":20})",
                           "Content-Type: application/json\r\nIf-Match: soon\r\n");
  CHECK(garbage.status == 400);
  auto acc = body_json(c.get("/accounts/v?consistent=true"));
  CHECK(acc.at("version") == 2);
  CHECK(acc.at("limit") == 20);
}

TEST_CASE("If-Match makes every command conditional, If-Match: * does not", "[api]") {
  running_node node;
  http_client c{node.port()};
  REQUIRE(c.post("/accounts", open_body("im", 100)).status == 201);
  struct command {
    std::string method, path, body;
  };
  // Each command runs against version v: with If-Match "v+5" it is refused and appends nothing,
  // with "v" it goes through and the answer's ETag is the new version.
  const std::vector<command> commands = {
    {"POST", "/accounts/im/transactions", tx_body("im-1", "deposit", 50)},
    {"POST", "/accounts/im/lock", R"({"reason":"check"})"},
    {"POST", "/accounts/im/unlock", ""},
    {"PUT", "/accounts/im/address", R"({"street":"Ring 1","city":"Wien","zip":"1010","country":"AT"})"},
    {"POST", "/accounts/im/phones", R"({"number":"+43 1 555 555"})"},
    {"PUT", "/accounts/im/limit", R"({"limit":200})"},
  };
  std::int64_t version = 1;
  for (const auto& cmd : commands) {
    INFO(cmd.method << " " << cmd.path);
    auto stale = c.request(cmd.method, cmd.path, cmd.body,
                           "Content-Type: application/json\r\nIf-Match: \"" + std::to_string(version + 5)
                             + "\"\r\n");
    CHECK(stale.status == 412);
    CHECK(body_json(stale).at("error") == "version_mismatch");
    CHECK(body_json(c.get("/accounts/im?consistent=true")).at("version") == version);

    auto fresh = c.request(cmd.method, cmd.path, cmd.body,
                           "Content-Type: application/json\r\nIf-Match: \"" + std::to_string(version)
                             + "\"\r\n");
    INFO(fresh.body);
    REQUIRE(fresh.status / 100 == 2);
    auto now = body_json(fresh).at("version").as_int64();
    CHECK(now > version);
    CHECK(fresh.header("etag") == "\"" + std::to_string(now) + "\"");
    version = now;
  }
  // The refused transaction was not remembered: its txId was applied once, by the fresh try.
  CHECK(body_json(c.get("/accounts/im?consistent=true")).at("balance") == 50);

  // "*" matches any version: unconditional, on an account at version 8.
  REQUIRE(version == 8);
  auto any = c.request("POST", "/accounts/im/transactions", tx_body("im-2", "deposit", 5),
                       "Content-Type: application/json\r\nIf-Match: *\r\n");
  CHECK(any.status == 201);
  CHECK(any.header("etag") == "\"9\"");
  auto any_lock = c.request("POST", "/accounts/im/lock", "", "If-Match: *\r\n");
  CHECK(any_lock.status == 200);
  CHECK(all_events(c, "im").size() == 11);
}

TEST_CASE("the audit log pages 100 events by default and 1000 at most", "[api]") {
  running_node node;
  http_client c{node.port()};
  REQUIRE(c.post("/accounts", open_body("long", 0)).status == 201);
  append_deposits(node.port(), "long", 1100); // events 2..1101
  auto page = [&](const std::string& query) {
    auto r = c.get("/accounts/long/events" + query);
    REQUIRE(r.status == 200);
    return body_json(r).as_array();
  };
  auto first = page("");
  REQUIRE(first.size() == 100);
  CHECK(first.front().at("seq") == 1);
  CHECK(first.back().at("seq") == 100);
  auto big = page("?limit=5000");
  REQUIRE(big.size() == 1000);
  CHECK(big.back().at("seq") == 1000);
  CHECK(page("?limit=1000").size() == 1000);
  auto rest = page("?from=1001&limit=1000");
  REQUIRE(rest.size() == 101);
  CHECK(rest.back().at("seq") == 1101);
  CHECK(page("?from=1002").front().at("seq") == 1002);
}

TEST_CASE("addresses and phone numbers", "[api]") {
  running_node node;
  http_client c{node.port()};
  REQUIRE(c.post("/accounts", open_body("a1", 10)).status == 201);
  auto addr = c.put("/accounts/a1/address",
                    R"({"street":"Ring 1","city":"Wien","zip":"1010","country":"AT"})");
  REQUIRE(addr.status == 200);
  auto ev = body_json(addr).at("events").at(0);
  CHECK(ev.at("type") == "AddressUpdated");
  CHECK(ev.at("oldCountry") == "DE");
  CHECK(c.put("/accounts/a1/address", R"({"street":"x","city":"y","zip":"z"})").status == 400);

  CHECK(c.post("/accounts/a1/phones", R"({"number":"+49 126 555 555"})").status == 200);
  auto dup = c.post("/accounts/a1/phones", R"({"number":"+49126555555"})");
  CHECK(dup.status == 409);
  CHECK(body_json(dup).at("error") == "duplicate_phone");
  CHECK(c.post("/accounts/a1/phones", R"({"number":"0049 12"})").status == 400);

  auto acc = body_json(c.get("/accounts/a1?consistent=true")).as_object();
  CHECK(acc.at("country") == "AT");
  CHECK(acc.at("address").at("city") == "Wien");
  CHECK(acc.at("phones").as_array().size() == 1);
}

TEST_CASE("the audit log pages through events", "[api]") {
  running_node node;
  http_client c{node.port()};
  REQUIRE(c.post("/accounts", open_body("h", 0)).status == 201);
  for (int i = 0; i < 25; ++i)
    REQUIRE(c.post("/accounts/h/transactions", tx_body("d" + std::to_string(i), "deposit", 10))
              .status == 201);
  auto page = c.get("/accounts/h/events?from=5&limit=10");
  REQUIRE(page.status == 200);
  auto evs = body_json(page).as_array();
  REQUIRE(evs.size() == 10);
  CHECK(evs[0].at("seq") == 5);
  CHECK(evs[9].at("seq") == 14);
  CHECK(evs[0].at("type") == "MoneyDeposited");
  CHECK(evs[0].at("data").at("amount") == 10);
  CHECK(body_json(c.get("/accounts/h/events?from=100")).as_array().empty());
  // from=0, like no from, is the beginning.
  CHECK(c.get("/accounts/h/events?from=0&limit=3").body == c.get("/accounts/h/events?limit=3").body);
  CHECK(body_json(c.get("/accounts/h/events?from=0&limit=3")).at(0).at("seq") == 1);
  CHECK(c.get("/accounts/h/events?from=-1").status == 400);
  CHECK(c.get("/accounts/h/events?limit=abc").status == 400);
  CHECK(c.get("/accounts/nobody/events").status == 404);

  CHECK(c.get("/accounts/h?asOf=2000-01-01T00:00:00Z").status == 404);
  CHECK(c.get("/accounts/h?asOf=yesterday").status == 400);
}

TEST_CASE("asOf shows exactly the account as it was after the commands up to that instant",
          "[api]") {
  running_node node;
  http_client c{node.port()};
  // Each command's events get their own millisecond: the next command waits until the clock has
  // passed the last one's time. After each, the account's state is recorded.
  std::vector<json::value> states;  // states[k]: the account after command k
  std::vector<std::int64_t> at_ms;  // at_ms[k]: the time of command k's events
  auto run = [&](const http_result& r) {
    INFO(r.body);
    REQUIRE(r.status / 100 == 2);
    auto events = all_events(c, "past");
    at_ms.push_back(epoch_ms(std::string(events.back().at("at").as_string())));
    states.push_back(body_json(c.get("/accounts/past?consistent=true")));
    REQUIRE(wait_until([&] { return now_ms() > at_ms.back(); }));
  };
  run(c.post("/accounts", open_body("past", 100)));
  run(c.post("/accounts/past/transactions", tx_body("d1", "deposit", 70)));
  run(c.put("/accounts/past/limit", R"({"limit":300})"));
  run(c.post("/accounts/past/transactions", tx_body("p1", "purchase", 250)));
  run(c.put("/accounts/past/address", R"({"street":"Ring 1","city":"Wien","zip":"1010","country":"AT"})"));
  run(c.post("/accounts/past/phones", R"({"number":"+43 1 555 555"})"));
  run(c.post("/accounts/past/lock", R"({"reason":"two events, one instant"})"));
  run(c.post("/accounts/past/transactions", tx_body("d2", "deposit", 5)));
  run(c.post("/accounts/past/unlock", ""));
  REQUIRE(states.size() == 9);
  REQUIRE(states.back() != states.front());

  for (std::size_t k = 0; k < states.size(); ++k) {
    INFO("command " << k << " at " << format_ms(at_ms[k]));
    // At the instant of command k: its events (both of the lock) and none later.
    auto at = c.get("/accounts/past?asOf=" + format_ms(at_ms[k]));
    REQUIRE(at.status == 200);
    CHECK(body_json(at) == states[k]);
    // One millisecond earlier: the account as it was before command k.
    auto before = c.get("/accounts/past?asOf=" + format_ms(at_ms[k] - 1));
    if (k == 0) {
      CHECK(before.status == 404);
    } else {
      REQUIRE(before.status == 200);
      CHECK(body_json(before) == states[k - 1]);
    }
  }
}

TEST_CASE("GET /events from=0 (or no from) starts at the beginning", "[api]") {
  running_node node;
  http_client c{node.port()};
  REQUIRE(c.post("/accounts", open_body("f1", 0)).status == 201);
  REQUIRE(c.post("/accounts", open_body("f2", 0)).status == 201);
  REQUIRE(c.post("/accounts/f1/transactions", tx_body("f1-1", "deposit", 3)).status == 201);
  // The feed is read from the read model: wait until it has all three events.
  auto feed_of = [&](const std::string& target) {
    return body_json(c.get(target)).at("events").as_array();
  };
  REQUIRE(wait_until([&] { return feed_of("/events?limit=10").size() == 3; }));
  auto beginning = c.get("/events?limit=10").body;
  for (auto target : {"/events?from=0", "/events", "/events?from=0&limit=10", "/events?limit=10",
                      "/events?from=%30"}) {
    INFO(target);
    auto r = c.get(target);
    REQUIRE(r.status == 200);
    if (std::string(target).find("limit") != std::string::npos)
      CHECK(r.body == beginning);
    else
      CHECK(body_json(r).at("events").as_array() == feed_of("/events?limit=10"));
  }
  auto first = feed_of("/events?from=0&limit=1");
  REQUIRE(first.size() == 1);
  CHECK(first[0].at("position") == 1);
  CHECK(first[0].at("seq") == 1);
  for (auto bad : {"/events?from=-1", "/events?from=x", "/events?from=", "/events?limit=0",
                   "/events?from=1"}) {
    INFO(bad);
    CHECK(c.get(bad).status == 400);
  }
}

TEST_CASE("an asOf copied from the event feed gives the state as of that event", "[api]") {
  running_node node;
  http_client c{node.port()};
  REQUIRE(c.post("/accounts", open_body("t", 500)).status == 201);
  for (int i = 1; i <= 20; ++i) {
    REQUIRE(c.post("/accounts/t/transactions", tx_body("t" + std::to_string(i), "deposit", i))
              .status == 201);
    if (i == 10)
      REQUIRE(c.put("/accounts/t/limit", R"({"limit":700})").status == 200);
  }
  auto feed_page = [&] { return body_json(c.get("/events?limit=1000")).at("events").as_array(); };
  REQUIRE(wait_until([&] { return feed_page().size() == 22; }));
  auto feed = feed_page();

  // The state as of time T folds every event stamped at or before T (times are milliseconds,
  // so events in the same millisecond as the chosen one count too).
  auto expected_at = [&](const std::string& at) {
    std::int64_t version = 0, balance = 0, limit = 0;
    for (const auto& e : feed) {
      if (std::string(e.at("at").as_string()) > at) // fixed-width UTC: text order is time order
        break;
      version = e.at("seq").as_int64();
      const auto& data = e.at("data");
      if (e.at("type") == "MoneyDeposited")
        balance += data.at("amount").as_int64();
      else if (e.at("type") == "AccountOpened")
        limit = data.at("limit").as_int64();
      else if (e.at("type") == "LimitUpdated")
        limit = data.at("newLimit").as_int64();
    }
    return std::tuple{version, balance, limit};
  };
  for (const auto& e : feed) {
    std::string at(e.at("at").as_string());
    INFO("event " << e.at("seq") << " at " << at);
    auto r = c.get("/accounts/t?asOf=" + at);
    REQUIRE(r.status == 200);
    CHECK(r.header("x-projection-offset").empty()); // rebuilt from events, not the read model
    auto acc = body_json(r);
    auto [version, balance, limit] = expected_at(at);
    CHECK(acc.at("version") == version);
    CHECK(acc.at("version").as_int64() >= e.at("seq").as_int64());
    CHECK(acc.at("balance") == balance);
    CHECK(acc.at("limit") == limit);
    // The same instant as a URL encoder writes it, and with an offset instead of Z.
    auto encoded = at;
    for (std::size_t p; (p = encoded.find(':')) != std::string::npos;)
      encoded.replace(p, 1, "%3A");
    CHECK(c.get("/accounts/t?asOf=" + encoded).body == r.body);
    auto zero_offset = at.substr(0, at.size() - 1);
    CHECK(c.get("/accounts/t?asOf=" + zero_offset + "%2B00:00").body == r.body);
    CHECK(c.get("/accounts/t?asOf=" + zero_offset + "+00:00").body == r.body);
    CHECK(c.get("/accounts/t?asOf=" + zero_offset + "-00:00").body == r.body);
  }
}

TEST_CASE("query names, values and path segments are percent-decoded", "[api]") {
  running_node node;
  http_client c{node.port()};
  REQUIRE(c.post("/accounts", open_body("a-b", 0)).status == 201);
  REQUIRE(c.post("/accounts/a-b/transactions", tx_body("x", "deposit", 9)).status == 201);
  auto now = c.get("/accounts/a-b?asOf=2099-01-01T00%3A00%3A00Z");
  REQUIRE(now.status == 200);
  CHECK(now.header("x-projection-offset").empty());
  CHECK(body_json(now).at("balance") == 9);
  CHECK(c.get("/accounts/a-b?asOf=2099-01-01T01%3A00%3A00%2B01%3A00").body == now.body);
  CHECK(c.get("/accounts/a-b?%61s%4Ff=2099-01-01T00:00:00Z").body == now.body);
  CHECK(c.get("/accounts/a-b?asOf=2000-01-01T00%3A00%3A00Z").status == 404);
  auto consistent = c.get("/accounts/a%2Db?consistent=tru%65");
  REQUIRE(consistent.status == 200);
  CHECK(consistent.header("x-projection-offset").empty()); // asked the account, not the read model
  CHECK(body_json(consistent).at("id") == "a-b");
  CHECK(c.get("/%61ccounts/a%2db/events").status == 200);
  CHECK(c.post("/accounts/a%2Db/transactions", tx_body("y", "deposit", 1)).status == 201);
  CHECK(c.get("/accounts/a-b?consistent=true&asOf=not+a+time").status == 400);
}

TEST_CASE("GET /metrics passes Prometheus's own linter (promtool check metrics)", "[api]") {
  running_node node;
  http_client c{node.port()};
  REQUIRE(c.post("/accounts", open_body("m", 0)).status == 201);
  REQUIRE(c.post("/accounts/m/transactions", tx_body("m1", "deposit", 5)).status == 201);
  REQUIRE(c.post("/accounts/m/transactions", tx_body("m2", "purchase", 50)).status == 400);
  REQUIRE(c.get("/nowhere").status == 404);
  // Every family is there once the read model has applied an event.
  REQUIRE(wait_until([&] { return c.get("/accounts/m").status == 200; }));
  auto r = c.get("/metrics");
  REQUIRE(r.status == 200);
  CHECK(r.header("content-type").rfind("text/plain", 0) == 0);
  for (auto family : {"kontor_http_requests_total", "kontor_journal_commit_seconds",
                      "kontor_projection_lag_seconds", "kontor_projection_last_event_lag_seconds",
                      "kontor_projection_lag_events", "kontor_projection_offset"}) {
    INFO(family);
    CHECK(r.body.find("\n# TYPE " + std::string(family) + " ") != std::string::npos);
  }

  temp_dir dir{"kontor-promtool"};
  auto exposition = dir.path() / "metrics.txt";
  auto report = dir.path() / "promtool.txt";
  std::ofstream(exposition) << r.body;
  REQUIRE(std::system("command -v promtool > /dev/null") == 0); // scripts/setup.sh installs it
  auto status = std::system(("promtool check metrics < " + exposition.string() + " > "
                             + report.string() + " 2>&1")
                              .c_str());
  std::ifstream in(report);
  std::string problems((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  INFO("promtool: " << problems << "\nexposition:\n" << r.body);
  CHECK(status == 0);
  CHECK(problems.empty());
}

TEST_CASE("health and readiness", "[api]") {
  running_node node;
  http_client c{node.port()};
  CHECK(c.get("/health").status == 200);
  CHECK(c.get("/ready").status == 200);
  CHECK(c.request("POST", "/health", "{}").status == 405);
}

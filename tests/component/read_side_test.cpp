// The read side against real nodes: convergence, exactly-once after kill -9, rebuild.

#include <atomic>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <thread>
#include <vector>

#include "tests/component/node_fixture.hpp"
#include "tests/support/wait.hpp"

using namespace kontor::test;
namespace json = boost::json;

namespace {

const std::vector<std::string> countries = {"DE", "AT", "FR", "IT"};

void open_accounts(unsigned short port, const std::string& prefix, int accounts) {
  http_client c{port};
  for (int a = 0; a < accounts; ++a)
    REQUIRE(c.post("/accounts", open_body(prefix + std::to_string(a), 1000 + a, "EUR",
                                          countries[static_cast<std::size_t>(a) % countries.size()]))
              .status
            == 201);
}

/// What the clients of mixed_load were answered.
struct load_counts {
  std::atomic<int> ok{0};         ///< 2xx
  std::atomic<int> refused{0};    ///< 400 or 409: overdrawn, locked, not locked
  std::atomic<int> no_answer{0};  ///< the connection failed (the node is gone)
  std::atomic<int> unexpected{0}; ///< anything else
  std::mutex mutex;
  std::string first_unexpected;   ///< status and body of the first unexpected answer

  void count(const http_result& r) {
    if (r.status / 100 == 2) {
      ++ok;
    } else if (r.status == 400 || r.status == 409) {
      ++refused;
    } else if (r.status == 0) {
      ++no_answer;
    } else if (++unexpected == 1) {
      std::lock_guard<std::mutex> g{mutex};
      first_unexpected = std::to_string(r.status) + " " + r.body;
    }
  }
};

/// Mixed commands from `threads` clients until each sent `per_thread` or `stop` is set; every
/// answer is counted in `counts`.
void mixed_load(unsigned short port, const std::string& prefix, int accounts, int threads,
                int per_thread, const std::atomic<bool>& stop, load_counts& counts) {
  std::vector<std::thread> ts;
  for (int t = 0; t < threads; ++t) {
    ts.emplace_back([=, &stop, &counts] {
      http_client c{port, 3000};
      for (int i = 0; i < per_thread && !stop; ++i) {
        auto id = prefix + std::to_string((t * 7 + i) % accounts);
        auto path = "/accounts/" + id;
        switch (i % 8) {
          case 0:
            counts.count(c.put(path + "/limit", "{\"limit\":" + std::to_string(100 * (i + 1)) + "}"));
            break;
          case 1:
            counts.count(c.post(path + "/lock", "{}"));
            break;
          case 2:
            counts.count(c.post(path + "/unlock", ""));
            break;
          case 3:
            counts.count(c.put(path + "/address", R"({"street":"s","city":"c","zip":"z","country":")"
                                                    + countries[static_cast<std::size_t>(i / 8 + t) % countries.size()] + "\"}"));
            break;
          default:
            counts.count(c.post(path + "/transactions",
                                tx_body(prefix + "t" + std::to_string(t) + "-" + std::to_string(i),
                                        i % 2 ? "deposit" : "purchase", 10 + i)));
        }
      }
    });
  }
  for (auto& th : ts)
    th.join();
}

/// A burst of mixed commands on `accounts` new accounts from `threads` clients: every command is
/// answered, with 2xx, 400 or 409, and at least a quarter of them with 2xx.
void burst(unsigned short port, const std::string& prefix, int accounts, int threads, int per_thread) {
  open_accounts(port, prefix, accounts);
  std::atomic<bool> never{false};
  load_counts counts;
  mixed_load(port, prefix, accounts, threads, per_thread, never, counts);
  INFO("2xx " << counts.ok << ", refused " << counts.refused << ", first unexpected answer: "
              << counts.first_unexpected);
  CHECK(counts.no_answer == 0);
  CHECK(counts.unexpected == 0);
  CHECK(counts.ok >= threads * per_thread / 4);
}

/// Country totals computed from the accounts' consistent state.
std::map<std::string, std::pair<std::int64_t, std::int64_t>>
expected_stats(http_client& c, const std::string& prefix, int accounts) {
  std::map<std::string, std::pair<std::int64_t, std::int64_t>> out;
  for (int a = 0; a < accounts; ++a) {
    auto acc = body_json(c.get("/accounts/" + prefix + std::to_string(a) + "?consistent=true"));
    auto& e = out[std::string(acc.at("country").as_string())];
    e.first += 1;
    e.second += acc.at("limit").as_int64();
  }
  return out;
}

std::map<std::string, std::pair<std::int64_t, std::int64_t>> served_stats(http_client& c) {
  std::map<std::string, std::pair<std::int64_t, std::int64_t>> out;
  auto r = c.get("/stats/countries");
  REQUIRE(r.status == 200);
  CHECK(!r.header("x-projection-offset").empty());
  auto body = body_json(r);
  for (const auto& kv : body.as_object())
    out[std::string(kv.key())] = {kv.value().at("totalAccounts").as_int64(),
                                  kv.value().at("combinedLimit").as_int64()};
  return out;
}

/// The whole event feed (GET /events), page after page from the beginning, each page checked:
/// 200, at most `limit` events plus the rest of an append, a `next` cursor.
std::vector<json::value> whole_feed(http_client& c, int limit) {
  std::vector<json::value> out;
  std::string after;
  for (;;) {
    auto r = c.get("/events?limit=" + std::to_string(limit) + (after.empty() ? "" : "&after=" + after));
    REQUIRE(r.status == 200);
    auto body = body_json(r).as_object();
    auto& page = body.at("events").as_array();
    after = std::string(body.at("next").as_string());
    if (page.empty())
      return out;
    REQUIRE(page.size() <= static_cast<std::size_t>(limit) + 1); // + the rest of an append
    for (auto& e : page)
      out.push_back(e);
  }
}

/// Everything the read side serves for the accounts: views, stats, the feed.
std::string read_side_snapshot(http_client& c, const std::string& prefix, int accounts) {
  std::string out;
  for (int a = 0; a < accounts; ++a) {
    auto r = c.get("/accounts/" + prefix + std::to_string(a));
    REQUIRE(r.status == 200);
    out += r.body + "\n";
  }
  out += c.get("/stats/countries").body + "\n";
  for (const auto& e : whole_feed(c, 1000))
    out += json::serialize(e);
  return out;
}

} // namespace

TEST_CASE("after a burst the read model equals every account's consistent state", "[read-side]") {
  running_node node;
  constexpr int accounts = 24;
  burst(node.port(), "cv", accounts, 6, 60);
  http_client c{node.port()};
  REQUIRE(caught_up(c));

  std::uint64_t total_events = 0;
  for (int a = 0; a < accounts; ++a) {
    auto id = "cv" + std::to_string(a);
    INFO(id);
    auto consistent = body_json(c.get("/accounts/" + id + "?consistent=true"));
    auto projected = c.get("/accounts/" + id);
    REQUIRE(projected.status == 200);
    CHECK(body_json(projected) == consistent);
    total_events += static_cast<std::uint64_t>(consistent.at("version").as_int64());
  }
  CHECK(served_stats(c) == expected_stats(c, "cv", accounts));

  // The feed: every event once, each shard's positions dense from 1, per-account seqs in order,
  // and a lock's two events never split over two pages (pages of 3 make that likely).
  std::map<std::string, std::int64_t> last_seq;
  std::map<std::int64_t, std::int64_t> last_position;
  std::uint64_t seen = 0;
  std::string after;
  for (;;) {
    auto r = c.get("/events?limit=3" + (after.empty() ? std::string{} : "&after=" + after));
    REQUIRE(r.status == 200);
    auto body = body_json(r).as_object();
    const auto& page = body.at("events").as_array();
    after = std::string(body.at("next").as_string());
    if (page.empty())
      break;
    for (std::size_t i = 0; i < page.size(); ++i) {
      const auto& e = page[i];
      auto& pos = last_position[e.at("shard").as_int64()];
      CHECK(e.at("position").as_int64() == pos + 1);
      pos = e.at("position").as_int64();
      auto& seq = last_seq[std::string(e.at("accountId").as_string())];
      CHECK(e.at("seq").as_int64() == seq + 1);
      seq = e.at("seq").as_int64();
      if (e.at("type").as_string() == "LimitChanged") {
        // A lock: its StatusChanged follows on the same page.
        REQUIRE(i + 1 < page.size());
        CHECK(page[i + 1].at("type").as_string() == "StatusChanged");
      }
      ++seen;
    }
  }
  CHECK(seen == total_events);
  // From the beginning: no parameter and from=0 are the same; other `from`s and foreign
  // cursors are refused.
  CHECK(body_json(c.get("/events?from=0&limit=7")) == body_json(c.get("/events?limit=7")));
  CHECK(c.get("/events?from=5").status == 400);
  CHECK(c.get("/events?from=-1").status == 400);
  CHECK(c.get("/events?after=not-a-cursor!").status == 400);
  CHECK(c.get("/events?limit=x").status == 400);
  CHECK(body_json(c.get("/events?limit=5000")).at("events").as_array().size() <= 1001);
}

TEST_CASE("kill -9 during a projection backlog: stats stay exact, equal to a rebuild",
          "[read-side][crash]") {
  // One-event batches make the read side fall behind the write side; the load runs until the
  // backlog is real, and the kill lands in it.
  running_node node({"--projection-batch", "1"});
  constexpr int accounts = 16;
  open_accounts(node.port(), "kb", accounts);
  std::atomic<bool> stop{false};
  load_counts counts;
  std::thread writer([&] { mixed_load(node.port(), "kb", accounts, 8, 1'000'000, stop, counts); });
  http_client probe{node.port()};
  double lag = 0;
  bool backlog = wait_until(
    [&] {
      lag = metric(probe, "kontor_projection_lag_events");
      return lag > 200;
    },
    std::chrono::seconds(60));
  const int ok_before_kill = counts.ok;
  const int unexpected_before_kill = counts.unexpected;
  const bool alive = node.process().running();
  node.kill_hard();
  stop = true;
  writer.join();
  INFO("lag when killed: " << lag << "; 2xx before the kill: " << ok_before_kill
                           << "; first unexpected answer: " << counts.first_unexpected);
  REQUIRE(backlog);
  REQUIRE(alive);
  CHECK(ok_before_kill >= 100); // the backlog is of acknowledged commands
  CHECK(unexpected_before_kill == 0);

  node.start();
  http_client c{node.port()};
  REQUIRE(caught_up(c));
  auto after_crash = served_stats(c);
  CHECK(after_crash == expected_stats(c, "kb", accounts));
  auto served = read_side_snapshot(c, "kb", accounts);

  // A from-scratch rebuild gives exactly the same answers.
  CHECK(node.stop() == 0);
  std::filesystem::remove_all(std::filesystem::path(node.data_dir()) / "read");
  node.start();
  http_client c2{node.port()};
  REQUIRE(caught_up(c2));
  CHECK(served_stats(c2) == after_crash);
  CHECK(read_side_snapshot(c2, "kb", accounts) == served);
}

TEST_CASE("a corrupt read-model store is rebuilt, the journal untouched", "[read-side]") {
  running_node node;
  burst(node.port(), "rb", 6, 2, 20);
  http_client c{node.port()};
  REQUIRE(caught_up(c));
  auto before = read_side_snapshot(c, "rb", 6);
  CHECK(node.stop() == 0);
  {
    std::ofstream garbage(std::filesystem::path(node.data_dir()) / "read" / "data.mdb",
                          std::ios::binary | std::ios::trunc);
    for (int i = 0; i < 50000; ++i)
      garbage.put(static_cast<char>(i * 31 % 253));
  }
  node.start();
  http_client c2{node.port()};
  REQUIRE(caught_up(c2));
  CHECK(read_side_snapshot(c2, "rb", 6) == before);
  CHECK(node.log().find("rebuilding") != std::string::npos);
}

TEST_CASE("the global event log pages 100 events by default and 1000 at most", "[read-side]") {
  running_node node;
  http_client c{node.port()};
  REQUIRE(c.post("/accounts", open_body("feed", 0)).status == 201);
  {
    std::vector<std::thread> clients;
    std::atomic<int> failed{0};
    for (int t = 0; t < 4; ++t) {
      clients.emplace_back([&, t] {
        http_client w{node.port()};
        for (int i = t; i < 1100; i += 4)
          if (w.post("/accounts/feed/transactions", tx_body("f" + std::to_string(i), "deposit", 1)).status
              != 201)
            ++failed;
      });
    }
    for (auto& th : clients)
      th.join();
    REQUIRE(failed == 0);
  }
  REQUIRE(caught_up(c));
  auto page = [&](const std::string& query) {
    auto r = c.get("/events" + query);
    REQUIRE(r.status == 200);
    return body_json(r).as_object();
  };
  // One account: one shard, so positions count its events 1, 2, 3, ...
  auto first = page("");
  REQUIRE(first.at("events").as_array().size() == 100);
  CHECK(first.at("events").as_array().front().at("position") == 1);
  CHECK(first.at("events").as_array().back().at("position") == 100);
  auto big = page("?limit=5000");
  REQUIRE(big.at("events").as_array().size() == 1000);
  CHECK(big.at("events").as_array().back().at("position") == 1000);
  auto rest = page("?limit=1000&after=" + std::string(big.at("next").as_string()));
  REQUIRE(rest.at("events").as_array().size() == 101);
  CHECK(rest.at("events").as_array().back().at("position") == 1101);
}

TEST_CASE("read-side = off: accounts answer for themselves, the read model's routes are 503",
          "[read-side]") {
  running_node node({"--read-side", "off"});
  http_client c{node.port()};
  REQUIRE(c.post("/accounts", open_body("solo", 10)).status == 201);
  REQUIRE(c.post("/accounts/solo/transactions", tx_body("s1", "deposit", 5)).status == 201);

  // Right after the command, without waiting for any projection: the account itself answers.
  auto plain = c.get("/accounts/solo");
  REQUIRE(plain.status == 200);
  CHECK(body_json(plain) == body_json(c.get("/accounts/solo?consistent=true")));
  CHECK(body_json(plain).at("balance") == 5);
  CHECK(c.get("/accounts/nobody").status == 404);
  for (const char* route : {"/stats/countries", "/events", "/events?from=1&limit=5"}) {
    INFO(route);
    auto r = c.get(route);
    CHECK(r.status == 503);
    CHECK(!r.header("retry-after").empty());
    CHECK(body_json(r).as_object().contains("error"));
  }
  // No read model was opened at all.
  CHECK(!std::filesystem::exists(std::filesystem::path(node.data_dir()) / "read"));
  CHECK(node.stop() == 0);
}

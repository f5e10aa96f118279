// Rebuild on demand (POST /admin/read-models/{name}/rebuild) against a real node: the old read
// model answers until the switch, the rebuilt one answers the same, a kill -9 mid-rebuild leaves
// a working node and no half-built directory.

#include <atomic>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <thread>
#include <vector>

#include "tests/component/node_fixture.hpp"

using namespace kontor::test;
namespace json = boost::json;

namespace {

// Small batches, paced: a rebuild of a few thousand events takes seconds, long enough to query
// it and to kill it half-way (the live read model is fed the same way and keeps up).
const std::vector<std::string> paced = {"--projection-batch", "50", "--projection-min-interval",
                                        "50ms"};
constexpr int accounts = 40;
const std::vector<std::string> countries = {"DE", "AT", "FR", "IT"};

/// Opens `accounts` accounts and deposits from 8 clients until about `events` events exist.
void write_events(unsigned short port, int events) {
  {
    http_client c{port};
    for (int a = 0; a < accounts; ++a)
      REQUIRE(c.post("/accounts", open_body("r" + std::to_string(a), 1000 + a, "EUR",
                                            countries[static_cast<std::size_t>(a) % countries.size()]))
                .status
              == 201);
  }
  constexpr int threads = 8;
  std::atomic<int> failures{0};
  std::vector<std::thread> ts;
  for (int t = 0; t < threads; ++t)
    ts.emplace_back([=, &failures] {
      http_client c{port};
      for (int i = t; i < events - accounts; i += threads) {
        auto r = c.post("/accounts/r" + std::to_string(i % accounts) + "/transactions",
                        tx_body("tx" + std::to_string(i), "deposit", 1 + i % 7));
        if (r.status != 201)
          ++failures;
      }
    });
  for (auto& t : ts)
    t.join();
  REQUIRE(failures == 0);
}

/// Every read-model answer: each account, the country totals and the whole feed.
struct answers {
  std::map<std::string, std::string> accounts;
  std::string countries;
  std::vector<std::string> feed_pages;

  bool operator==(const answers&) const = default;
};

/// The feed, page by page (1000 events each), until an empty page.
std::vector<std::string> feed(http_client& c) {
  std::vector<std::string> pages;
  std::string after;
  for (;;) {
    auto r = c.get("/events?limit=1000" + (after.empty() ? std::string{} : "&after=" + after));
    REQUIRE(r.status == 200);
    auto page = body_json(r).as_object();
    if (page.at("events").as_array().empty())
      return pages;
    pages.push_back(json::serialize(page.at("events")));
    after = std::string(page.at("next").as_string());
  }
}

answers read_all(http_client& c) {
  answers out;
  for (int a = 0; a < accounts; ++a) {
    auto id = "r" + std::to_string(a);
    auto r = c.get("/accounts/" + id);
    REQUIRE(r.status == 200);
    out.accounts[id] = r.body;
  }
  auto s = c.get("/stats/countries");
  REQUIRE(s.status == 200);
  out.countries = s.body;
  out.feed_pages = feed(c);
  return out;
}

/// The value of `kontor_read_model_rebuilds_total{outcome="switched"}` (-1 when absent).
double switched(http_client& c) {
  auto r = c.get("/metrics");
  const std::string name = "kontor_read_model_rebuilds_total{outcome=\"switched\"} ";
  auto pos = r.body.find(name);
  return pos == std::string::npos ? -1 : std::stod(r.body.substr(pos + name.size()));
}

/// The read models' directories in a data directory ("read", "read.rebuild-1", …).
std::set<std::string> read_dirs(const std::string& data_dir) {
  std::set<std::string> out;
  for (const auto& e : std::filesystem::directory_iterator(data_dir))
    if (e.path().filename().string().starts_with("read"))
      out.insert(e.path().filename().string());
  return out;
}

} // namespace

TEST_CASE("rebuild on demand: the old read model answers until the switch, the rebuilt one "
          "answers the same, also after a restart",
          "[read-side][rebuild]") {
  running_node node(paced);
  http_client c{node.port()};
  write_events(node.port(), 4000);
  REQUIRE(caught_up(c));
  const auto before = read_all(c);
  REQUIRE(before.feed_pages.size() >= 4);

  auto r = c.post("/admin/read-models/accounts/rebuild", "");
  REQUIRE(r.status == 202);
  auto body = body_json(r).as_object();
  CHECK(body.at("readModel") == "accounts");
  CHECK(body.at("directory") == "read.rebuild-1");
  CHECK(body.at("status") == "started");
  // One at a time: a second request while it runs is refused and names the running one.
  auto again = c.post("/admin/read-models/accounts/rebuild", "");
  CHECK(again.status == 409);
  CHECK(body_json(again).at("error") == "rebuild_running");

  // While it runs every answer is 200 and what the old model said (nothing is written meanwhile).
  int rounds = 0;
  bool rebuilding_seen = false;
  REQUIRE(wait_until(
    [&] {
      rebuilding_seen = rebuilding_seen || metric(c, "kontor_read_model_rebuilding") == 1;
      CHECK(read_all(c) == before);
      ++rounds;
      return switched(c) == 1;
    },
    std::chrono::seconds(120)));
  CHECK(rounds > 0);
  CHECK(rebuilding_seen);
  CHECK(metric(c, "kontor_read_model_rebuilding") == 0);
  CHECK(metric(c, "kontor_read_model_rebuild_events") >= 4000);
  const auto log = node.log();
  CHECK(log.find("rebuild 1 started in") != std::string::npos);
  CHECK(log.find("rebuild 1 switched in: ") != std::string::npos);

  // The rebuilt model answers exactly the same, has the canonical name, and is fed.
  CHECK(read_all(c) == before);
  CHECK(read_dirs(node.data_dir()) == std::set<std::string>{"read"});
  REQUIRE(c.post("/accounts/r0/transactions", tx_body("after-switch", "deposit", 5)).status == 201);
  REQUIRE(caught_up(c));
  const auto after = read_all(c);
  CHECK(after.accounts.at("r0") != before.accounts.at("r0"));

  // A restart opens the rebuilt model: same answers, no replay from the start.
  REQUIRE(node.stop() == 0);
  node.start();
  http_client c2{node.port()};
  REQUIRE(caught_up(c2));
  CHECK(read_all(c2) == after);
  CHECK(node.log().find("by replay from the start") == std::string::npos);
}

TEST_CASE("kill -9 during a rebuild: the node starts with a working read model and no leftover "
          "rebuild directory",
          "[read-side][rebuild]") {
  running_node node(paced);
  http_client c{node.port()};
  write_events(node.port(), 3000);
  REQUIRE(caught_up(c));
  const auto before = read_all(c);

  REQUIRE(c.post("/admin/read-models/accounts/rebuild", "").status == 202);
  REQUIRE(wait_until([&] { return metric(c, "kontor_read_model_rebuild_events") > 0; },
                     std::chrono::seconds(60)));
  node.kill_hard();
  // Killed half-way: the half-built directory is there.
  REQUIRE(read_dirs(node.data_dir()) == std::set<std::string>{"read", "read.rebuild-1"});

  node.start();
  http_client c2{node.port()};
  REQUIRE(caught_up(c2));
  CHECK(read_all(c2) == before);
  CHECK(read_dirs(node.data_dir()) == std::set<std::string>{"read"});
  CHECK(node.log().find("read.rebuild-1 (left by an interrupted rebuild)") != std::string::npos);

  // And a rebuild after it completes.
  REQUIRE(c2.post("/admin/read-models/accounts/rebuild", "").status == 202);
  REQUIRE(wait_until([&] { return switched(c2) == 1; }, std::chrono::seconds(120)));
  CHECK(read_all(c2) == before);
  CHECK(read_dirs(node.data_dir()) == std::set<std::string>{"read"});
}

TEST_CASE("rebuild route: unknown read model 404, POST only, admin scope with tokens",
          "[read-side][rebuild][auth]") {
  temp_dir dir{"kontor-rebuild-auth"};
  const auto file = (dir.path() / "tokens").string();
  std::ofstream(file) << "writer-token-0123456789 write\n"
                         "admin-token-01234567890 admin\n";
  running_node node({"--api-tokens-file", file});
  http_client c{node.port()};
  const std::string admin = "Authorization: Bearer admin-token-01234567890\r\n";
  const std::string writer = "Authorization: Bearer writer-token-0123456789\r\n";

  auto unknown = c.request("POST", "/admin/read-models/nosuch/rebuild", "", admin);
  CHECK(unknown.status == 404);
  CHECK(body_json(unknown).at("error") == "read_model_not_found");
  CHECK(c.request("GET", "/admin/read-models/accounts/rebuild", "", admin).status == 405);
  CHECK(c.request("POST", "/admin/read-models/accounts/rebuild", "").status == 401);
  CHECK(c.request("POST", "/admin/read-models/accounts/rebuild", "", writer).status == 403);
  auto ok = c.request("POST", "/admin/read-models/accounts/rebuild", "", admin);
  CHECK(ok.status == 202);
  // An empty journal: the rebuild has nothing to catch up with and switches at once.
  CHECK(wait_until([&] {
    auto m = c.request("GET", "/metrics", "", admin).body;
    return m.find("kontor_read_model_rebuilds_total{outcome=\"switched\"} 1") != std::string::npos;
  }));
  CHECK(read_dirs(node.data_dir()) == std::set<std::string>{"read"});
}

// The dashboard (GET /dashboard) in headless Chromium on a 3-node cluster: what the page shows
// once its scripts ran (Chromium's --dump-dom), before and after a node leaves. Chromium is a
// Debian package scripts/setup.sh installs; without it this test fails, it does not skip.

#include <map>
#include <regex>
#include <set>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "tests/cluster/common.hpp"
#include "tests/support/cluster.hpp"
#include "tests/support/command.hpp"
#include "tests/support/temp_dir.hpp"
#include "tests/support/wait.hpp"

using namespace kontor::test;
using namespace std::chrono_literals;

namespace {

/// The page at `url` as headless Chromium has it after `budget_ms` of (virtual) time: its
/// scripts have run and refreshed. Without D-Bus, and without the background connections this
/// machine's closed network refuses.
std::string rendered(const std::string& url, int budget_ms = 3500) {
  temp_dir profile{"kontor-chromium"};
  auto r = run_command({"env", "DBUS_SESSION_BUS_ADDRESS=disabled:", "DBUS_SYSTEM_BUS_ADDRESS=disabled:",
                        "chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                        "--no-first-run", "--disable-background-networking", "--disable-component-update",
                        "--disable-sync", "--user-data-dir=" + profile.path().string(),
                        "--virtual-time-budget=" + std::to_string(budget_ms), "--dump-dom", url},
                       60s);
  INFO("chromium: exit " << r.exit_code << "\n" << r.err);
  REQUIRE(r.exit_code == 0);
  return r.out;
}

/// What the dashboard shows, read from its DOM.
struct shown {
  std::string self;
  std::map<std::string, std::string> status;    ///< member → status
  std::map<std::string, std::string> reachable; ///< member → "true"/"false"
  std::map<std::string, int> shards;            ///< owner → cells in the shard map
  int cells = 0;
  std::string coordinator;
  std::set<std::string> rate_rows;               ///< nodes in the write-rate table
  int refreshes = 0;
  std::string error;
};

shown read_page(const std::string& dom) {
  shown s;
  std::smatch m;
  if (std::regex_search(dom, m, std::regex(R"re(id="self">([^<]*)<)re")))
    s.self = m[1];
  if (std::regex_search(dom, m, std::regex(R"re(id="coordinator">([^<]*)<)re")))
    s.coordinator = m[1];
  if (std::regex_search(dom, m, std::regex(R"re(data-refreshes="(\d+)")re")))
    s.refreshes = std::stoi(m[1]);
  if (std::regex_search(dom, m, std::regex(R"re(id="error">([^<]*)<)re")))
    s.error = m[1];
  std::regex member(R"re(<tr data-node="([^"]+)" data-status="([^"]+)" data-reachable="([^"]+)")re");
  for (auto i = std::sregex_iterator(dom.begin(), dom.end(), member); i != std::sregex_iterator(); ++i) {
    s.status[(*i)[1]] = (*i)[2];
    s.reachable[(*i)[1]] = (*i)[3];
  }
  std::regex cell(R"re(data-shard="\d+" data-owner="([^"]*)")re");
  for (auto i = std::sregex_iterator(dom.begin(), dom.end(), cell); i != std::sregex_iterator(); ++i) {
    ++s.cells;
    ++s.shards[(*i)[1]];
  }
  std::regex rate(R"re(<tr data-node="([^"]+)"><td>)re");
  for (auto i = std::sregex_iterator(dom.begin(), dom.end(), rate); i != std::sregex_iterator(); ++i)
    s.rate_rows.insert((*i)[1]);
  return s;
}

} // namespace

TEST_CASE("the dashboard in headless Chromium shows the members, the shard map, the singletons "
          "and every node's write rate, and after a node leaves it shows the two that stay",
          "[cluster]") {
  test_cluster c{{.nodes = 3, .args = quick_args()}};
  start_three(c, true);
  for (int a = 0; a < 6; ++a)
    REQUIRE(c.request(static_cast<std::size_t>(a) % 3, "POST", "/accounts", open_body("dash-" + std::to_string(a)))
              .status
            == 201);

  const auto url = [&](std::size_t i) {
    return "http://" + c.host(i) + ":" + std::to_string(c.http_port(i)) + "/dashboard";
  };
  auto page = rendered(url(1));
  auto before = read_page(page);
  INFO(page);
  CHECK(before.error.empty());
  CHECK(before.refreshes >= 2); // refreshed live: a second reading gives the rates
  CHECK(before.self == c.name(1));
  for (std::size_t i = 0; i < 3; ++i) {
    CHECK(before.status[c.name(i)] == "up");
    CHECK(before.reachable[c.name(i)] == "true");
    CHECK(before.rate_rows.count(c.name(i)) == 1);
    CHECK(before.shards[c.name(i)] >= 21); // 64 shards within ±1 of even
  }
  CHECK(before.cells == 64);
  CHECK(before.coordinator == c.name(0)); // the oldest

  // gamma leaves (SIGTERM: its shards move, it exits 0); the page through alpha shows the rest.
  REQUIRE(c.stop(2) == 0);
  REQUIRE(c.wait_members_up({0, 1}, {0, 1}));
  REQUIRE(wait_spread(c, {0, 1}, {c.name(0), c.name(1)}));
  // Its exit does not wait for the others to remove it: alpha's view may still list it as
  // exiting for a moment.
  REQUIRE(wait_until([&] {
    auto m = c.members(0);
    return m && m->find(c.name(2)) == nullptr;
  }));
  page = rendered(url(0));
  auto after = read_page(page);
  INFO("after gamma left: " << page);
  CHECK(after.error.empty());
  CHECK(after.self == c.name(0));
  CHECK(after.status[c.name(0)] == "up");
  CHECK(after.status[c.name(1)] == "up");
  CHECK(after.status.count(c.name(2)) == 0); // removed from the membership
  CHECK(after.cells == 64);
  CHECK(after.shards[c.name(0)] + after.shards[c.name(1)] == 64);
  CHECK(after.shards.count(c.name(2)) == 0);
  CHECK(after.rate_rows == std::set<std::string>{c.name(0), c.name(1)});
  CHECK(after.coordinator == c.name(0));
}

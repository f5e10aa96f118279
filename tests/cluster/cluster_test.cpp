// The cluster with real kontor-node processes on 127.0.0.1: forming, one writer per account
// across gateways, nodes joining, leaving, crashing and freezing under load, refused joins.

#include <algorithm>
#include <atomic>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <boost/json.hpp>
#include <catch2/catch.hpp>

#include "tests/cluster/common.hpp"
#include "tests/support/cluster.hpp"
#include "tests/support/wait.hpp"

using namespace kontor::test;
namespace json = boost::json;
using namespace std::chrono_literals;

namespace {

/// A deposit load over some nodes, recording every acknowledged txId per account. Its threads
/// stop and are joined when it goes away (also when a REQUIRE ends the test early).
struct deposit_load {
  std::vector<std::thread> threads;
  ~deposit_load() { finish(); }
  /// Stops the load and waits for its threads.
  void finish() {
    stop = true;
    for (auto& t : threads)
      if (t.joinable())
        t.join();
  }
  std::vector<std::string> accounts;
  std::mutex mutex;
  std::map<std::string, std::vector<std::string>> acked; ///< account → txIds answered 201
  std::map<int, std::size_t> statuses;                   ///< every answer's status (0: no answer)
  std::atomic<bool> stop{false};
  std::atomic<std::size_t> sent{0};

  /// Runs until stop, from `n` threads, each sending to the nodes in turn.
  void run(test_cluster& c, std::vector<std::size_t> nodes, int n, const std::string& tag) {
    std::vector<endpoint> eps;
    for (auto n : nodes)
      eps.push_back(c.http_endpoint(n));
    for (int t = 0; t < n; ++t)
      threads.emplace_back([this, eps, t, tag] {
        std::vector<std::unique_ptr<http_client>> clients;
        for (const auto& e : eps)
          clients.push_back(std::make_unique<http_client>(e.host, e.port, 5000));
        std::mt19937 rng(static_cast<unsigned>(t) * 7919u + 17u);
        for (std::size_t i = 0; !stop; ++i) {
          const auto& account = accounts[rng() % accounts.size()];
          auto tx = tag + "-" + std::to_string(t) + "-" + std::to_string(i);
          auto r = clients[i % clients.size()]->post("/accounts/" + account + "/transactions",
                                                     tx_body(tx, "deposit", 1));
          ++sent;
          std::lock_guard lock{mutex};
          ++statuses[r.status];
          if (r.status == 201)
            acked[account].push_back(tx);
        }
      });
  }

  /// Counts of answers that are neither 2xx nor 503 (business 4xx do not occur for deposits).
  std::size_t unexpected() {
    std::lock_guard lock{mutex};
    std::size_t n = 0;
    for (const auto& [status, count] : statuses)
      if (!(status >= 200 && status < 300) && status != 503)
        n += count;
    return n;
  }

  std::string summary() {
    std::lock_guard lock{mutex};
    std::string out;
    for (const auto& [status, count] : statuses)
      out += std::to_string(status) + ":" + std::to_string(count) + " ";
    return out;
  }
};

/// Every acknowledged deposit of the load is in its account's events exactly once.
void check_acked(test_cluster& c, std::size_t via, deposit_load& load) {
  std::lock_guard lock{load.mutex};
  auto acked = load.acked;
  for (const auto& a : load.accounts)
    acked[a]; // accounts with no acknowledged deposit are checked for duplicates too
  check_acked(c, via, acked);
}

/// Each live node's read model shows every account exactly as the account itself does.
void check_read_models(test_cluster& c, const std::vector<std::size_t>& nodes,
                       const std::vector<std::string>& accounts) {
  for (auto n : nodes) {
    std::string mismatch;
    bool equal = wait_until(
      [&] {
        for (const auto& a : accounts) {
          auto projected = c.get(n, "/accounts/" + a);
          auto consistent = c.get(n, "/accounts/" + a + "?consistent=true");
          if (projected.status != 200 || consistent.status != 200
              || body_json(projected) != body_json(consistent)) {
            mismatch = a + ": read model " + std::to_string(projected.status) + " " + projected.body
                       + "\n  account " + std::to_string(consistent.status) + " " + consistent.body;
            return false;
          }
        }
        return true;
      },
      30s);
    INFO("node " << c.name(n) << "\n" << mismatch);
    if (!equal)
      for (std::size_t i = 0; i < c.size(); ++i)
        UNSCOPED_INFO("log of " << c.name(i) << ":\n" << c.log(i));
    CHECK(equal);
  }
}

/// Opens `ids` through the first `nodes` nodes in turn (all nodes when 0), with a deposit.
void open_accounts(test_cluster& c, const std::vector<std::string>& ids, std::int64_t deposit = 0,
                   std::size_t nodes = 0) {
  const auto n = nodes == 0 ? c.size() : nodes;
  for (std::size_t k = 0; k < ids.size(); ++k) {
    auto node = k % n;
    REQUIRE(c.request(node, "POST", "/accounts", open_body(ids[k])).status == 201);
    if (deposit > 0)
      REQUIRE(c.request(node, "POST", "/accounts/" + ids[k] + "/transactions",
                        tx_body("open-" + ids[k], "deposit", deposit))
                .status
              == 201);
  }
}

} // namespace

TEST_CASE("three nodes from the 3-node config form a cluster: all up, shards spread, "
          "singletons on the oldest",
          "[cluster]") {
  test_cluster c{{.nodes = 3, .args = {"--seed-timeout", "500ms"}}};
  for (std::size_t i = 0; i < 3; ++i)
    c.node_args(i) = {"--config", std::string(KONTOR_SOURCE_DIR) + "/config/cluster/"
                                    + std::vector<std::string>{"alpha", "beta", "gamma"}[i] + ".conf"};
  c.start_all();
  REQUIRE(c.wait_members_up(3));
  REQUIRE(c.wait_leader_agreed({0, 1, 2}));
  REQUIRE(wait_spread(c, {0, 1, 2}, {c.name(0), c.name(1), c.name(2)}));

  auto members = c.members(0);
  REQUIRE(members);
  const auto oldest = oldest_up(*members);
  CHECK(members->leader == oldest);
  auto shards = c.shards(1);
  REQUIRE(shards);
  REQUIRE(shards->coordinator);
  CHECK(*shards->coordinator == oldest);
  // The singletons run on the oldest, and only there.
  const auto o = c.index_of(oldest);
  REQUIRE(wait_until([&] {
    return c.log(o).find("started coordinator on this node") != std::string::npos
           && c.log(o).find("started poller on this node") != std::string::npos;
  }));
  for (std::size_t i = 0; i < 3; ++i)
    if (i != o) {
      CHECK(c.log(i).find("started coordinator on this node") == std::string::npos);
      CHECK(c.log(i).find("started poller on this node") == std::string::npos);
    }
}

TEST_CASE("one writer per account across the gateways: the seeds' race and 16x50 purchases",
          "[cluster]") {
  test_cluster c{{.nodes = 3, .args = quick_args()}};
  start_three(c, true);

  // The seeds' race: balance 700, purchases of 500 and 700 at once through two gateways.
  for (int round = 0; round < 20; ++round) {
    const auto id = "race-" + std::to_string(round);
    // Answers within the command timeout (5 s) come back; the node logs tell about any other.
    auto opened = c.request(round % 3, "POST", "/accounts", open_body(id), 10000);
    if (opened.status != 201)
      FAIL("open " << id << ": " << opened.status << " " << opened.body << "\n" << c.describe());
    auto deposited = c.request(round % 3, "POST", "/accounts/" + id + "/transactions",
                               tx_body(id + "-d", "deposit", 700), 10000);
    if (deposited.status != 201)
      FAIL("deposit into " << id << ": " << deposited.status << " " << deposited.body << "\n"
                           << c.describe());
    http_result a, b;
    std::thread ta([&] {
      a = c.request((round + 1) % 3, "POST", "/accounts/" + id + "/transactions",
                    tx_body(id + "-500", "purchase", 500));
    });
    std::thread tb([&] {
      b = c.request((round + 2) % 3, "POST", "/accounts/" + id + "/transactions",
                    tx_body(id + "-700", "purchase", 700));
    });
    ta.join();
    tb.join();
    INFO("round " << round << ": " << a.status << " " << a.body << " / " << b.status << " " << b.body);
    CHECK(((a.status == 201) != (b.status == 201)));
    CHECK((a.status == 400 || b.status == 400));
  }

  // 16 clients x 50 purchases of 10 on a balance of 5000, spread over the three gateways.
  REQUIRE(c.request(0, "POST", "/accounts", open_body("stress")).status == 201);
  REQUIRE(c.request(1, "POST", "/accounts/stress/transactions", tx_body("fill", "deposit", 5000))
            .status
          == 201);
  auto result = c.load(16 * 50, 16, [](std::size_t i) {
    return load_request{"POST", "/accounts/stress/transactions",
                        tx_body("p-" + std::to_string(i), "purchase", 10), {}};
  });
  INFO(result.summary());
  CHECK(result.ok == 500);
  CHECK(result.by_status[400] == 300);
  CHECK(body_json(c.get(2, "/accounts/stress?consistent=true")).at("balance") == 0);
}

TEST_CASE("a fourth node joins under load: shards rebalance, nothing acknowledged is lost, "
          "read models equal the accounts",
          "[cluster]") {
  test_cluster c{{.nodes = 4, .args = quick_args()}};
  start_three(c);
  REQUIRE(wait_spread(c, {0, 1, 2}, {c.name(0), c.name(1), c.name(2)}));

  deposit_load load;
  for (int a = 0; a < 24; ++a)
    load.accounts.push_back("join-" + std::to_string(a));
  open_accounts(c, load.accounts, 0, 3);
  load.run(c, {0, 1, 2}, 6, "j");
  REQUIRE(wait_until([&] { return load.sent > 200; }));

  c.start(3);
  REQUIRE(c.wait_ready(3, 30s));
  {
    auto up = c.wait_members_up(4);
    INFO(c.describe());
    REQUIRE(up);
  }
  REQUIRE(wait_spread(c, {0, 1, 2, 3}, {c.name(0), c.name(1), c.name(2), c.name(3)}));
  const auto before = load.sent.load();
  REQUIRE(wait_until([&] { return load.sent > before + 200; })); // load goes on after the moves
  load.finish();

  INFO(load.summary());
  CHECK(load.unexpected() == 0);
  check_acked(c, 3, load);
  check_read_models(c, {0, 1, 2, 3}, load.accounts);
}

TEST_CASE("SIGTERM of the oldest under load: its shards and singletons move, it exits 0, "
          "nothing acknowledged is lost",
          "[cluster]") {
  test_cluster c{{.nodes = 3, .args = quick_args()}};
  start_three(c, true);
  auto members = c.members(0);
  REQUIRE(members);
  const auto leaving = c.index_of(oldest_up(*members));
  std::vector<std::size_t> stay;
  for (std::size_t i = 0; i < 3; ++i)
    if (i != leaving)
      stay.push_back(i);

  deposit_load load;
  for (int a = 0; a < 24; ++a)
    load.accounts.push_back("leave-" + std::to_string(a));
  open_accounts(c, load.accounts);
  // Clients use the nodes that stay (a leaving pod is taken out of its Service first).
  load.run(c, stay, 6, "l");
  REQUIRE(wait_until([&] { return load.sent > 200; }));

  CHECK(c.stop(leaving, 40s) == 0);
  REQUIRE(c.wait_members_up(stay, stay));
  REQUIRE(wait_spread(c, stay, {c.name(stay[0]), c.name(stay[1])}));
  CHECK(c.log(leaving).find("handing off shard") != std::string::npos);
  // The singletons run on the next oldest now.
  auto after = c.members(stay[0]);
  REQUIRE(after);
  const auto next = c.index_of(oldest_up(*after));
  REQUIRE(wait_until([&] {
    return c.log(next).find("started coordinator on this node") != std::string::npos
           && c.log(next).find("started poller on this node") != std::string::npos;
  }));
  const auto before = load.sent.load();
  REQUIRE(wait_until([&] { return load.sent > before + 200; }));
  load.finish();

  INFO(load.summary());
  CHECK(load.unexpected() == 0);
  check_acked(c, stay[0], load);
  check_read_models(c, stay, load.accounts);
}

TEST_CASE("kill -9 of a node: unreachable, then downed, its shards answer 503 until it returns "
          "with all their events, the others serve throughout",
          "[cluster]") {
  test_cluster c{{.nodes = 3, .args = quick_args()}};
  start_three(c, true);
  auto members = c.members(0);
  REQUIRE(members);
  // A node that is not the oldest (the coordinator's move is the next test).
  std::size_t victim = 0;
  for (std::size_t i = 0; i < 3; ++i)
    if (c.name(i) != oldest_up(*members))
      victim = i;
  std::vector<std::size_t> live;
  for (std::size_t i = 0; i < 3; ++i)
    if (i != victim)
      live.push_back(i);

  // Accounts on every node's shards, with a known history.
  std::vector<std::string> ids;
  for (int a = 0; a < 30; ++a)
    ids.push_back("crash-" + std::to_string(a));
  open_accounts(c, ids, 10);
  std::vector<std::string> on_victim, elsewhere;
  for (const auto& id : ids) {
    auto r = c.get(live[0], "/accounts/" + id + "?consistent=true");
    REQUIRE(r.status == 200);
  }
  // Which accounts the victim holds: those that answer 503 once it is down (checked below).
  c.kill(victim);
  REQUIRE(c.wait_members(live, [&](const members_view& v) {
    auto m = v.find(c.name(victim));
    return m && !m->reachable;
  }, 10s));
  REQUIRE(c.wait_members(live, [&](const members_view& v) {
    auto m = v.find(c.name(victim));
    return m && m->status == "down";
  }, 20s));
  for (const auto& id : ids) {
    auto r = c.get(live[0], "/accounts/" + id + "?consistent=true");
    INFO(id << ": " << r.status << " " << r.body);
    REQUIRE((r.status == 200 || r.status == 503));
    if (r.status == 503) {
      CHECK(body_json(r).at("error") == "shard_unavailable");
      CHECK(r.header("retry-after") == "1");
      on_victim.push_back(id);
    } else {
      elsewhere.push_back(id);
    }
  }
  CHECK(!on_victim.empty());
  CHECK(!elsewhere.empty());
  // The others keep serving their shards: commands succeed.
  for (const auto& id : elsewhere)
    CHECK(c.request(live[1], "POST", "/accounts/" + id + "/transactions",
                    tx_body(id + "-after", "deposit", 1))
            .status
          == 201);
  // The node returns with its data directory: its shards serve again, with all their events.
  c.start(victim);
  REQUIRE(c.wait_ready(victim, 30s));
  REQUIRE(c.wait_members_up(3));
  for (const auto& id : on_victim) {
    INFO(id);
    http_result r;
    REQUIRE(wait_until([&] {
      r = c.get(live[0], "/accounts/" + id + "?consistent=true");
      return r.status == 200;
    }, 20s));
    CHECK(body_json(r).at("balance") == 10);
    CHECK(events_of(c, live[1], id).size() == 2);
  }
}

TEST_CASE("SIGSTOP shorter than stable-after moves nothing, and after kill -9 of the "
          "coordinator's node the next oldest coordinates with the same table",
          "[cluster]") {
  auto args = quick_args();
  args.insert(args.end(), {"--stable-after", "5s"});
  test_cluster c{{.nodes = 3, .args = args}};
  start_three(c, true);
  auto members = c.members(0);
  REQUIRE(members);
  const auto oldest = c.index_of(oldest_up(*members));
  const auto frozen = (oldest + 1) % 3;
  const auto third = (oldest + 2) % 3;
  auto table_before = c.shards(oldest);
  REQUIRE(table_before);

  c.freeze(frozen);
  REQUIRE(c.wait_members({oldest, third}, [&](const members_view& v) {
    auto m = v.find(c.name(frozen));
    return m && !m->reachable;
  }, 10s));
  c.thaw(frozen);
  REQUIRE(c.wait_members_up(3));
  // Nothing moved: every node shows the same owners as before, and nobody was downed.
  for (std::size_t i = 0; i < 3; ++i) {
    auto now = c.shards(i);
    REQUIRE(now);
    CHECK(owners(*now) == owners(*table_before));
    auto m = c.members(i);
    REQUIRE(m);
    for (const auto& mv : m->members)
      CHECK(mv.status == "up");
  }

  // kill -9 the coordinator's node: after it is downed, the next oldest runs the coordinator,
  // which continues from the same table (the dead node's shards stay allocated to it).
  c.kill(oldest);
  std::vector<std::size_t> rest{frozen, third};
  REQUIRE(c.wait_members(rest, [&](const members_view& v) {
    auto m = v.find(c.name(oldest));
    return m && m->status == "down";
  }, 30s));
  REQUIRE(c.wait_all(rest, "/cluster/shards", [&](std::size_t, const json::value& body) {
    auto v = parse_shards(body);
    return v && v->coordinator && *v->coordinator != c.name(oldest);
  }, 30s));
  auto members_after = c.members(frozen);
  REQUIRE(members_after);
  const auto new_coordinator = c.index_of(oldest_up(*members_after));
  REQUIRE(wait_until([&] {
    return c.log(new_coordinator).find("[coordinator] active with table") != std::string::npos;
  }, 20s));
  for (auto i : rest) {
    auto now = c.shards(i);
    REQUIRE(now);
    CHECK(owners(*now) == owners(*table_before)); // the same table: nothing reallocated
  }
  // No shard on two nodes: the two nodes agree on every owner.
  auto a = c.shards(rest[0]);
  auto b = c.shards(rest[1]);
  REQUIRE(a);
  REQUIRE(b);
  REQUIRE(a->shards.size() == b->shards.size());
  for (std::size_t s = 0; s < a->shards.size(); ++s)
    CHECK(a->shards[s].owner == b->shards[s].owner);
}

TEST_CASE("a node with another secret or shard count is refused, and garbage on the cluster "
          "port changes nothing",
          "[cluster]") {
  test_cluster c{{.nodes = 4, .args = quick_args()}};
  start_three(c);

  SECTION("another secret") {
    c.node_args(3) = {"--cluster-secret", "not-the-cluster-secret"};
    c.start(3);
    REQUIRE(wait_until([&] { return !c.running(3); }, 30s));
    INFO(c.log(3));
    CHECK(c.exit_code(3) == 2);
    CHECK(c.log(3).find("refused this node: its cluster secret differs") != std::string::npos);
    bool logged = false;
    for (std::size_t i = 0; i < 3; ++i)
      logged = logged || c.log(i).find("refused the join of " + c.name(3)) != std::string::npos;
    CHECK(logged);
  }
  SECTION("another number of shards") {
    c.node_args(3) = {"--number-of-shards", "32"};
    c.start(3);
    REQUIRE(wait_until([&] { return !c.running(3); }, 30s));
    CHECK(c.exit_code(3) == 2);
    CHECK(c.log(3).find("it has 32 shards, this cluster 64") != std::string::npos);
  }
  SECTION("random bytes on every cluster port") {
    std::mt19937 rng(4242);
    for (std::size_t i = 0; i < 3; ++i) {
      auto address = c.cluster_address(i);
      auto colon = address.rfind(':');
      sockaddr_in sa{};
      sa.sin_family = AF_INET;
      sa.sin_port = htons(static_cast<std::uint16_t>(std::stoi(address.substr(colon + 1))));
      ::inet_pton(AF_INET, address.substr(0, colon).c_str(), &sa.sin_addr);
      for (int attempt = 0; attempt < 5; ++attempt) {
        int fd = ::socket(AF_INET, SOCK_STREAM, 0);
        REQUIRE(fd >= 0);
        if (::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0) {
          std::string junk(4096, '\0');
          for (auto& ch : junk)
            ch = static_cast<char>(rng());
          if (attempt == 0)
            junk = "GET / HTTP/1.1\r\nHost: x\r\n\r\n"; // a foreign protocol
          if (attempt == 1)
            junk = "\x16\x03"; // shorter than a header, then closed
          [[maybe_unused]] auto n = ::send(fd, junk.data(), junk.size(), MSG_NOSIGNAL);
        }
        ::close(fd);
      }
    }
    // Each connection is logged with its address and why, and dropped.
    for (std::size_t i = 0; i < 3; ++i) {
      INFO(c.log(i));
      auto count = [&](const std::string& what) {
        std::size_t n = 0;
        const auto log = c.log(i);
        for (auto at = log.find(what); at != std::string::npos; at = log.find(what, at + 1))
          ++n;
        return n;
      };
      CHECK(wait_until([&] { return count("cluster port: dropped the connection from 127.0.0.1:") >= 5; }, 30s));
      CHECK(count("a foreign protocol (starts \"GET / HTTP/1.1\")") == 1);
      CHECK(count("not a cluster peer (first bytes 16 03), then closed") == 1);
      CHECK(count("not a cluster peer (first bytes") == 4);
    }
    // The cluster is as it was and serves.
    REQUIRE(c.wait_members_up({0, 1, 2}, {0, 1, 2}));
    auto opened = c.request(0, "POST", "/accounts", open_body("after-garbage"));
    INFO(opened.body << "\n" << c.describe());
    for (std::size_t i = 0; i < 3; ++i)
      UNSCOPED_INFO("log of " << c.name(i) << ":\n" << c.log(i));
    REQUIRE(opened.status == 201);
    REQUIRE(c.request(2, "POST", "/accounts/after-garbage/transactions", tx_body("g", "deposit", 3))
              .status
            == 201);
    for (std::size_t i = 0; i < 3; ++i)
      CHECK(c.running(i));
  }
}

TEST_CASE("seeds that expand to fewer addresses than required-contact-points form no cluster, "
          "and the first seed says why",
          "[cluster]") {
  test_cluster c{{.nodes = 2, .args = quick_args(1)}};
  for (std::size_t i = 0; i < 2; ++i)
    c.node_args(i) = {"--required-contact-points", "3"};
  for (std::size_t i = 0; i < 2; ++i) {
    c.start(i);
    REQUIRE(c.wait_http(i, 30s));
  }
  const std::string line = "the seeds expand to 2 of the 3 addresses required to form a new cluster";
  REQUIRE(wait_until([&] { return c.log(0).find(line) != std::string::npos; }, 20s));
  // Past seed-timeout and with both nodes up, nobody formed a cluster: neither is ready.
  for (std::size_t i = 0; i < 2; ++i) {
    INFO(c.describe());
    CHECK(c.get(i, "/ready").status == 503);
    auto r = c.get(i, "/cluster/members");
    INFO(r.body);
    CHECK(r.status == 200);
    CHECK(body_json(r).at("members").as_array().empty());
  }
  // With the two addresses required that the seeds give, they form one cluster.
  for (std::size_t i = 0; i < 2; ++i) {
    CHECK(c.stop(i) == 0);
    c.node_args(i) = {"--required-contact-points", "2"};
  }
  c.start_all();
  REQUIRE(c.wait_members_up(2));
}

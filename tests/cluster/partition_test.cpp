// Network partitions between real kontor-node processes in network namespaces (netns_lab):
// keep-majority downing, one side at most keeps running shards (CLUSTER.md invariant 1), the
// singletons move only once the old member is down, nothing acknowledged is lost, and a cut
// shorter than stable-after changes nothing. Registered only when the process runs as root and
// `ip` exists (like tests/lab/netns_lab_test.cpp): a partition test that skips itself but reports
// success would prove nothing.

#include <algorithm>
#include <atomic>
#include <chrono>
#include <iostream>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <boost/json.hpp>
#include <catch2/catch.hpp>

#include "runtime/core/ids.hpp"
#include "tests/cluster/common.hpp"
#include "tests/support/cluster.hpp"
#include "tests/support/netns_lab.hpp"
#include "tests/support/wait.hpp"

using namespace kontor::test;
namespace json = boost::json;
using namespace std::chrono_literals;
using steady = std::chrono::steady_clock;

namespace {

/// What a node logs when it finds itself on the minority side (runtime/cluster/cluster.cpp).
constexpr const char* minority_line = "on the minority side of a partition";
/// What a node logs when a singleton starts on it (runtime/singleton/singleton_manager.cpp).
constexpr const char* coordinator_started = "started coordinator on this node";

std::size_t occurrences(const std::string& text, const std::string& needle) {
  std::size_t n = 0;
  for (auto at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1))
    ++n;
  return n;
}

/// Accounts with a known history: each opened through one node and given a deposit of 10
/// through the next one, so several gateways wrote them.
struct accounts_before {
  std::vector<std::string> ids;
  std::map<std::string, std::vector<std::string>> acked; ///< account → txIds answered 201

  void open(test_cluster& c, const std::string& prefix, std::size_t count) {
    for (std::size_t k = 0; k < count; ++k) {
      auto id = prefix + "-" + std::to_string(k);
      ids.push_back(id);
      auto opened = c.request(k % c.size(), "POST", "/accounts", open_body(id));
      INFO(id << ": " << opened.status << " " << opened.body);
      REQUIRE(opened.status == 201);
      auto tx = "first-" + id;
      auto deposited =
        c.request((k + 1) % c.size(), "POST", "/accounts/" + id + "/transactions", tx_body(tx, "deposit", 10));
      INFO(deposited.status << " " << deposited.body);
      REQUIRE(deposited.status == 201);
      acked[id].push_back(tx);
    }
  }
};

/// Deposits of 1 from the test process during a fault, one thread per node; every answer is
/// recorded with the time its request was sent. A thread stops at its node's first non-answer
/// (the node is gone: the root namespace reaches every node through any partition). The threads
/// stop and are joined when it goes away (also when a REQUIRE ends the test early).
class timed_deposits {
public:
  /// One answer.
  struct answer {
    std::size_t node;
    std::string account;
    std::string tx;
    steady::time_point sent;
    int status;
    std::string error;
  };

  ~timed_deposits() { finish(); }

  /// Starts one thread per node of `nodes`, each depositing into random `accounts` through it.
  void run(test_cluster& c, const std::vector<std::size_t>& nodes, std::vector<std::string> accounts) {
    for (auto n : nodes)
      threads_.emplace_back([this, n, accounts, e = c.http_endpoint(n), t = threads_.size()] {
        http_client client{e.host, e.port, 5000};
        std::mt19937 rng(static_cast<unsigned>(t) * 7919u + 17u);
        for (std::size_t i = 0; !stop_; ++i) {
          const auto& account = accounts[rng() % accounts.size()];
          auto tx = "load-" + std::to_string(t) + "-" + std::to_string(i);
          const auto sent = steady::now();
          auto r = client.post("/accounts/" + account + "/transactions", tx_body(tx, "deposit", 1));
          std::lock_guard lock{mutex_};
          answers_.push_back({n, account, tx, sent, r.status, error_of(r)});
          if (r.status == 0)
            return;
        }
      });
  }

  /// Stops the threads and waits for them.
  void finish() {
    stop_ = true;
    for (auto& t : threads_)
      if (t.joinable())
        t.join();
  }

  /// The answers so far.
  std::vector<answer> answers() {
    std::lock_guard lock{mutex_};
    return answers_;
  }

  /// How many answers so far had `status`.
  std::size_t count(int status) {
    std::lock_guard lock{mutex_};
    return static_cast<std::size_t>(
      std::count_if(answers_.begin(), answers_.end(), [&](const answer& a) { return a.status == status; }));
  }

  /// Answers per status and error code, for failure messages.
  std::string summary() {
    std::lock_guard lock{mutex_};
    std::map<std::string, std::size_t> by;
    for (const auto& a : answers_)
      ++by[std::to_string(a.status) + (a.error.empty() ? "" : " " + a.error)];
    std::string out;
    for (const auto& [what, n] : by)
      out += what + ": " + std::to_string(n) + "; ";
    return out;
  }

private:
  std::vector<std::thread> threads_;
  std::atomic<bool> stop_{false};
  std::mutex mutex_;
  std::vector<answer> answers_;
};

/// Node i's logs and the lab's network state, for a failed check.
void log_all(test_cluster& c, const netns_lab& lab) {
  for (std::size_t i = 0; i < c.size(); ++i)
    UNSCOPED_INFO("log of " << c.name(i) << ":\n" << c.log(i));
  UNSCOPED_INFO("the lab's network:\n" << lab.describe());
}

/// A partition of `n` nodes into a losing side of `losing` nodes (the oldest among them when
/// `oldest_loses`) and a keeping side: the losing nodes exit with code 3, the keeping side downs
/// them and runs the coordinator on its oldest member, serves its own shards and answers 503
/// shard_unavailable for the losing side's; no request succeeds on the losing side after its
/// decision, and no request crosses the partition. After the heal the losing nodes return on
/// their data directories and serve all their events again.
void partition_scenario(std::size_t n, std::size_t losing, bool oldest_loses) {
  netns_lab lab{n};
  test_cluster c{{.nodes = n, .args = quick_args(n), .lab = &lab}};
  c.start_all();
  REQUIRE(c.wait_members_up(n));
  std::vector<std::size_t> all(n);
  std::set<std::string> names;
  for (std::size_t i = 0; i < n; ++i) {
    all[i] = i;
    names.insert(c.name(i));
  }
  REQUIRE(wait_spread(c, all, names));

  // The sides, by age (join order): the oldest member on the side the test asks for.
  auto members = c.members(0);
  REQUIRE(members);
  std::vector<std::size_t> by_age = all;
  std::sort(by_age.begin(), by_age.end(),
            [&](std::size_t a, std::size_t b) { return members->find(c.name(a))->age < members->find(c.name(b))->age; });
  const auto oldest = by_age.front();
  REQUIRE(c.name(oldest) == oldest_up(*members));
  std::vector<std::size_t> lose, keep;
  if (oldest_loses) {
    lose.push_back(oldest);
    for (std::size_t k = 1; k < n; ++k)
      (lose.size() < losing ? lose : keep).push_back(by_age[k]);
  } else {
    keep.push_back(oldest);
    for (std::size_t k = 1; k < n; ++k)
      (keep.size() < n - losing ? keep : lose).push_back(by_age[k]);
  }
  // The keeping side's oldest member: it runs the coordinator once the losing side is down.
  const auto keeper = *std::min_element(keep.begin(), keep.end(), [&](std::size_t a, std::size_t b) {
    return members->find(c.name(a))->age < members->find(c.name(b))->age;
  });
  std::set<std::string> lose_names, keep_names;
  for (auto i : lose)
    lose_names.insert(c.name(i));
  for (auto i : keep)
    keep_names.insert(c.name(i));
  INFO("losing side: " << Catch::Detail::stringify(std::vector<std::string>(lose_names.begin(), lose_names.end()))
                       << ", keeping side: "
                       << Catch::Detail::stringify(std::vector<std::string>(keep_names.begin(), keep_names.end()))
                       << ", coordinator after: " << c.name(keeper));
  REQUIRE(wait_until([&] { return c.log(oldest).find(coordinator_started) != std::string::npos; }));
  const auto keeper_coordinator_starts = occurrences(c.log(keeper), coordinator_started);
  if (oldest_loses)
    CHECK(keeper_coordinator_starts == 0);

  // Data written before the partition, through every gateway; which side holds each account
  // follows from the shard table (a stable hash of the id modulo the shard count).
  auto table = c.shards(keeper);
  REQUIRE(table);
  const auto owners_before = owner_table(*table);
  accounts_before data;
  data.open(c, "part", 40);
  std::vector<std::string> on_losing, on_keeping;
  for (const auto& id : data.ids) {
    const auto& owner = owners_before.at(kontor::shard_of(id, static_cast<std::uint32_t>(owners_before.size())));
    (lose_names.count(owner) ? on_losing : on_keeping).push_back(id);
  }
  REQUIRE(!on_losing.empty());
  REQUIRE(!on_keeping.empty());

  // Deposits through every node while the partition happens: into accounts of its own side
  // (those keep working until the losing side decides) and of the other side (those cannot).
  timed_deposits load;
  load.run(c, lose, on_losing);
  load.run(c, lose, on_keeping);
  load.run(c, keep, on_keeping);
  load.run(c, keep, on_losing);
  REQUIRE(wait_until([&] { return load.count(201) >= 50; }));

  lab.partition(lose, keep);
  const auto partitioned = steady::now(); // no packet crosses from here on

  // The losing side decides it is the minority after stable-after and exits with code 3; when
  // it decided is when the test first sees the log line (so a little after the decision).
  std::map<std::size_t, steady::time_point> decided;
  const bool exited = wait_until(
    [&] {
      bool all_gone = true;
      for (auto i : lose) {
        if (!decided.count(i) && c.log(i).find(minority_line) != std::string::npos)
          decided[i] = steady::now();
        all_gone = all_gone && !c.running(i);
      }
      return all_gone;
    },
    30s);
  if (!exited)
    log_all(c, lab);
  REQUIRE(exited);
  for (auto i : lose) {
    INFO(c.name(i) << "'s log:\n" << c.log(i));
    CHECK(c.exit_code(i) == 3);
    CHECK(decided.count(i) == 1);
    CHECK(c.log(i).find(minority_line) != std::string::npos);
    CHECK(c.log(i).find("stopping its shards and exiting") != std::string::npos);
  }
  for (auto i : keep)
    CHECK(c.running(i));

  // The keeping side sees the losing one down, itself up.
  {
    auto down = c.wait_members(keep, [&](const members_view& v) {
      for (const auto& name : lose_names) {
        auto m = v.find(name);
        if (!m || m->status != "down")
          return false;
      }
      return converged_up(v, std::vector<std::string>(keep_names.begin(), keep_names.end()));
    }, 20s);
    if (!down)
      log_all(c, lab);
    REQUIRE(down);
  }
  // Its oldest member runs the coordinator now (moved there only after the old one was down).
  REQUIRE(c.wait_all(keep, "/cluster/shards", [&](std::size_t, const json::value& body) {
    auto v = parse_shards(body);
    return v && v->coordinator == c.name(keeper);
  }, 20s));
  REQUIRE(wait_until([&] {
    return c.log(keeper).find("active with table version") != std::string::npos
           && occurrences(c.log(keeper), coordinator_started) == (oldest_loses ? 1u : keeper_coordinator_starts);
  }, 20s));
  for (auto i : keep)
    if (i != keeper)
      CHECK(c.log(i).find(coordinator_started) == std::string::npos);
  // The losing side's shards stay allocated to it and are unavailable; the keeping side's serve.
  for (auto i : keep) {
    auto now = c.shards(i);
    REQUIRE(now);
    REQUIRE(now->shards.size() == owners_before.size());
    for (std::size_t s = 0; s < owners_before.size(); ++s) {
      INFO(c.name(i) << ", shard " << s << ": owner before " << owners_before[s]);
      REQUIRE(now->shards[s].owner);
      if (lose_names.count(owners_before[s])) {
        CHECK(*now->shards[s].owner == owners_before[s]);
        CHECK(now->shards[s].state == "unavailable");
      } else {
        CHECK(keep_names.count(*now->shards[s].owner) == 1);
        CHECK(now->shards[s].state == "allocated");
      }
    }
  }
  for (auto i : keep) {
    for (const auto& id : on_losing) {
      auto read = c.get(i, "/accounts/" + id + "?consistent=true");
      INFO(id << " through " << c.name(i) << ": " << read.status << " " << read.body);
      CHECK(read.status == 503);
      CHECK(error_of(read) == "shard_unavailable");
      CHECK(read.header("retry-after") == "1");
      auto write = c.request(i, "POST", "/accounts/" + id + "/transactions",
                             tx_body("refused-" + c.name(i) + "-" + id, "deposit", 1));
      INFO(write.status << " " << write.body);
      CHECK(write.status == 503);
      CHECK(error_of(write) == "shard_unavailable");
    }
    for (const auto& id : on_keeping) {
      auto tx = "after-" + c.name(i) + "-" + id;
      auto write = c.request(i, "POST", "/accounts/" + id + "/transactions", tx_body(tx, "deposit", 1));
      INFO(id << " through " << c.name(i) << ": " << write.status << " " << write.body);
      CHECK(write.status == 201);
      if (write.status == 201)
        data.acked[id].push_back(tx);
    }
  }
  // The losing side is gone: it answers nothing.
  for (auto i : lose)
    CHECK(c.get(i, "/health", 1000).status == 0);

  // What the load saw: on the losing side nothing succeeded once the node had decided, and
  // nothing sent after the partition crossed it (the keeping side never served the losing
  // side's shards, the losing side never the keeping side's).
  load.finish();
  INFO("load: " << load.summary());
  std::size_t losing_side_ok_during_partition = 0;
  for (const auto& a : load.answers()) {
    if (a.status == 201)
      data.acked[a.account].push_back(a.tx);
    if (a.status != 201 || a.sent < partitioned)
      continue;
    const bool from_losing = lose_names.count(c.name(a.node)) == 1;
    const bool account_losing =
      std::find(on_losing.begin(), on_losing.end(), a.account) != on_losing.end();
    INFO(a.tx << " to " << a.account << " through " << c.name(a.node) << " answered 201");
    CHECK(from_losing == account_losing);
    if (from_losing && account_losing) {
      // Neither the gateway nor the account's owner had decided to exit when it was sent.
      const auto owner = c.index_of(
        owners_before.at(kontor::shard_of(a.account, static_cast<std::uint32_t>(owners_before.size()))));
      ++losing_side_ok_during_partition;
      CHECK(a.sent < decided.at(a.node));
      CHECK(a.sent < decided.at(owner));
    }
  }
  // Until stable-after the losing side keeps serving its own shards (a partition does not stop
  // a node at once): those deposits are acknowledged, and must survive (checked below).
  CHECK(losing_side_ok_during_partition > 0);

  // Heal; the losing nodes return on their data directories (as their supervisor would start
  // them), rejoin and serve their shards with all their events.
  lab.heal();
  for (auto i : lose)
    c.start(i);
  for (auto i : lose) {
    auto ready = c.wait_ready(i, 30s);
    if (!ready)
      log_all(c, lab);
    REQUIRE(ready);
  }
  {
    auto up = c.wait_members_up(n, 30s);
    if (!up)
      log_all(c, lab);
    REQUIRE(up);
  }
  for (const auto& id : on_losing) {
    http_result r;
    auto served = wait_until([&] {
      r = c.get(keeper, "/accounts/" + id + "?consistent=true");
      return r.status == 200;
    }, 20s);
    INFO(id << ": " << r.status << " " << r.body);
    REQUIRE(served);
  }
  check_acked(c, keeper, data.acked);
  check_acked(c, lose.front(), data.acked);
  // The balance of each account is its acknowledged deposits (plus, at most, deposits whose
  // answer was lost when a node went away: the events decide).
  for (const auto& id : data.ids) {
    std::int64_t sum = 0;
    for (const auto& e : events_of(c, keeper, id))
      if (e.at("type") == "MoneyDeposited")
        sum += e.at("data").at("amount").as_int64();
    auto r = c.get(lose.back(), "/accounts/" + id + "?consistent=true");
    INFO(id << ": " << r.body);
    REQUIRE(r.status == 200);
    CHECK(body_json(r).at("balance").as_int64() == sum);
  }
}

void oldest_on_minority_side() {
  partition_scenario(5, 2, true);
}

void tie_goes_to_the_oldest() {
  partition_scenario(4, 2, false);
}

/// A node cut off for less than stable-after: both sides see the other unreachable, then all
/// reach all again; nobody is downed, no node exits, no shard moves, no singleton moves, and the
/// node serves its accounts again.
void short_cut_changes_nothing() {
  netns_lab lab{3};
  auto args = quick_args(3);
  args.insert(args.end(), {"--stable-after", "5s"});
  test_cluster c{{.nodes = 3, .args = args, .lab = &lab}};
  start_three(c, true);
  auto members = c.members(0);
  REQUIRE(members);
  // The oldest: it leads and runs the coordinator, so a wrong takeover would show.
  const auto cut = c.index_of(oldest_up(*members));
  std::vector<std::size_t> others;
  for (std::size_t i = 0; i < 3; ++i)
    if (i != cut)
      others.push_back(i);
  REQUIRE(wait_until([&] { return c.log(cut).find(coordinator_started) != std::string::npos; }));

  accounts_before data;
  data.open(c, "short", 24);
  auto table = c.shards(cut);
  REQUIRE(table);
  const auto owners_before = owner_table(*table);
  REQUIRE(table->coordinator == c.name(cut));

  lab.cut(cut);
  // The others see it unreachable …
  REQUIRE(c.wait_members(others, [&](const members_view& v) {
    auto m = v.find(c.name(cut));
    return m && !m->reachable;
  }, 10s));
  // … and it sees them unreachable (asked from inside its namespace: nothing else reaches it).
  std::string seen;
  const bool isolated = wait_until([&] {
    auto r = lab.in_namespace(cut, [&] {
      http_client client{c.host(cut), c.http_port(cut), 1000};
      return client.get("/cluster/members");
    });
    seen = std::to_string(r.status) + " " + r.body;
    json::error_code ec;
    auto v = json::parse(r.body, ec);
    if (r.status != 200 || ec)
      return false;
    auto view = parse_members(v);
    return view && view->up_unreachable().size() == 2;
  }, 10s);
  INFO("the cut node's view: " << seen);
  CHECK(isolated);
  lab.restore(cut);

  {
    auto up = c.wait_members_up(3, 20s);
    if (!up)
      log_all(c, lab);
    REQUIRE(up);
  }
  for (std::size_t i = 0; i < 3; ++i) {
    INFO(c.name(i) << "'s log:\n" << c.log(i));
    CHECK(c.running(i));
    CHECK(c.log(i).find(minority_line) == std::string::npos);
    CHECK(c.log(i).find("downing ") == std::string::npos);
    auto m = c.members(i);
    REQUIRE(m);
    for (const auto& mv : m->members)
      CHECK(mv.status == "up");
    auto now = c.shards(i);
    REQUIRE(now);
    CHECK(now->coordinator == c.name(cut));
    CHECK(owner_table(*now) == owners_before);
  }
  for (auto i : others)
    CHECK(c.log(i).find(coordinator_started) == std::string::npos);
  // It serves again: a deposit into every account through it, and every account's history.
  for (const auto& id : data.ids) {
    auto tx = "after-" + id;
    auto r = c.request(cut, "POST", "/accounts/" + id + "/transactions", tx_body(tx, "deposit", 1));
    INFO(id << ": " << r.status << " " << r.body);
    CHECK(r.status == 201);
    if (r.status == 201)
      data.acked[id].push_back(tx);
  }
  check_acked(c, others.front(), data.acked);
}

/// Registers the tests above when this machine can run them; says why not otherwise.
struct partition_registration {
  partition_registration() {
    auto why = netns_lab::unavailable_reason();
    if (!why.empty()) {
      std::cerr << "cluster_tests: the partition tests are not registered: " << why << "\n";
      return;
    }
    add(&oldest_on_minority_side,
        "partition 2 of 5 with the oldest on the minority side: the minority exits with code 3, "
        "the majority downs it, coordinates and serves its shards, the minority's answer 503 "
        "until they return with all their events");
    add(&short_cut_changes_nothing,
        "a cut shorter than stable-after downs nobody and moves nothing, the node serves again");
    add(&tie_goes_to_the_oldest,
        "partition 2 of 4: the tie goes to the side with the oldest, the other side exits with "
        "code 3 and returns with all its events");
  }

  static void add(void (*test)(), const char* name) {
    Catch::AutoReg registered{Catch::makeTestInvoker(test), CATCH_INTERNAL_LINEINFO, Catch::StringRef(),
                              Catch::NameAndTags{name, "[cluster][partition]"}};
  }
} const registration;

} // namespace

// A rolling update as Kubernetes does it to a StatefulSet of 3 pods, on real kontor-node
// processes: one node at a time, the endpoints drop it and it gets SIGTERM at once, it leaves and
// exits 0, the new binary starts on the same data dir, and the next node goes only once it is
// ready. Clients run the command mix through every node in the rotation meanwhile; a 503 is
// retried (same txId, same Idempotency-Key), anything else that is not an answer is a failure.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>

#include "tests/cluster/common.hpp"
#include "tests/support/cluster.hpp"
#include "tests/support/wait.hpp"

using namespace kontor::test;
using namespace std::chrono_literals;

namespace {

/// The nodes a client may send to, as a Service's endpoints: a node leaves the rotation when it
/// is told to terminate and comes back once ready. Each change bumps the generation, so clients
/// drop their connections to a node that left.
class rotation {
public:
  void add(std::size_t node, endpoint e) {
    {
      std::lock_guard lock{mutex_};
      endpoints_[node] = e;
      ++generation_;
    }
    changed_.notify_all();
  }
  void remove(std::size_t node) {
    {
      std::lock_guard lock{mutex_};
      endpoints_.erase(node);
      ++generation_;
    }
    changed_.notify_all();
  }
  /// A node of the rotation picked by `pick`, with its endpoint and the rotation's generation;
  /// false when the rotation is empty (the update takes out one node of three at a time).
  bool choose(std::uint64_t pick, std::size_t& node, endpoint& e, std::uint64_t& generation) {
    std::lock_guard lock{mutex_};
    if (endpoints_.empty())
      return false;
    auto i = endpoints_.begin();
    std::advance(i, static_cast<std::ptrdiff_t>(pick % endpoints_.size()));
    node = i->first;
    e = i->second;
    generation = generation_;
    return true;
  }
  /// Waits until the rotation is no longer at `generation`, at most `timeout`: a client's retry
  /// back-off that ends early when a node leaves or returns.
  void wait_change(std::uint64_t generation, std::chrono::milliseconds timeout) {
    std::unique_lock lock{mutex_};
    changed_.wait_for(lock, timeout, [&] { return generation_ != generation; });
  }

private:
  std::mutex mutex_;
  std::condition_variable changed_;
  std::map<std::size_t, endpoint> endpoints_;
  std::uint64_t generation_ = 0;
};

/// The command mix (45 % deposits, 40 % purchases, 10 % limit, 5 % address updates) from a few
/// client threads; every acknowledged transaction is recorded per account.
class mix_load {
public:
  std::vector<std::string> accounts;

  ~mix_load() { finish(); }

  void run(rotation& r, int threads) {
    for (int t = 0; t < threads; ++t)
      threads_.emplace_back([this, &r, t] { client(r, t); });
  }

  void finish() {
    stop_ = true;
    for (auto& t : threads_)
      if (t.joinable())
        t.join();
  }

  std::size_t answered() const { return answered_; }

  std::string summary() {
    std::lock_guard lock{mutex_};
    std::string out = "answers by status:";
    for (const auto& [status, n] : statuses_)
      out += " " + std::to_string(status) + "=" + std::to_string(n);
    out += "; retried 503s: " + std::to_string(retried_503_) + "; failed: " + std::to_string(failed_);
    for (const auto& f : failures_)
      out += "\n  " + f;
    return out;
  }

  std::size_t failed() {
    std::lock_guard lock{mutex_};
    return failed_;
  }
  std::size_t retried_503() {
    std::lock_guard lock{mutex_};
    return retried_503_;
  }
  std::map<std::string, std::vector<std::string>> acked() {
    std::lock_guard lock{mutex_};
    return acked_;
  }

private:
  struct command {
    std::string method, target, body, headers, tx; ///< tx: a transaction's txId ("" otherwise)
    std::string account;
  };

  command make(std::mt19937_64& rng, int t, std::size_t i) {
    command c;
    c.account = accounts[rng() % accounts.size()];
    const auto key = "r" + std::to_string(t) + "-" + std::to_string(i);
    const auto r = rng() % 100;
    if (r < 85) {
      c.method = "POST";
      c.target = "/accounts/" + c.account + "/transactions";
      c.tx = key;
      c.body = tx_body(key, r < 45 ? "deposit" : "purchase", static_cast<std::int64_t>(1 + rng() % 500));
    } else if (r < 95) {
      c.method = "PUT";
      c.target = "/accounts/" + c.account + "/limit";
      c.body = R"({"limit":)" + std::to_string(1'000'000'000 + rng() % 1'000'000'000) + "}";
    } else {
      c.method = "PUT";
      c.target = "/accounts/" + c.account + "/address";
      c.body = R"({"street":"Ring 1","city":"Wien","zip":"1010","country":"AT"})";
    }
    c.headers = "Content-Type: application/json\r\nIdempotency-Key: " + key + "\r\n";
    return c;
  }

  void client(rotation& r, int t) {
    std::mt19937_64 rng(static_cast<std::uint64_t>(t) * 7919u + 17u);
    std::map<std::size_t, std::pair<std::uint64_t, std::unique_ptr<http_client>>> clients;
    for (std::size_t i = 0; !stop_; ++i) {
      auto c = make(rng, t, i);
      // Retries on 503 (the shard moves, or its owner is leaving), each on a node of the
      // rotation as it is then; bounded, so a stuck shard shows as a failure.
      for (int attempt = 0;; ++attempt) {
        std::size_t node = 0;
        endpoint e;
        std::uint64_t generation = 0;
        if (!r.choose(rng(), node, e, generation)) {
          record_failure(c, "no node in the rotation");
          break;
        }
        auto& slot = clients[node];
        if (!slot.second || slot.first != generation) {
          slot.first = generation;
          slot.second = std::make_unique<http_client>(e.host, e.port, 10000);
        }
        auto res = slot.second->request(c.method, c.target, c.body, c.headers);
        ++answered_;
        if (record(c, res, attempt))
          break;
        r.wait_change(generation, 20ms); // a client's retry back-off
      }
    }
  }

  /// Records a command that failed (`what` happened), with the first 20 for the report.
  void failure(const command& c, const std::string& what) {
    ++failed_;
    if (failures_.size() < 20)
      failures_.push_back(c.method + " " + c.target + " " + c.body + " -> " + what);
  }
  void record_failure(const command& c, const std::string& what) {
    std::lock_guard lock{mutex_};
    failure(c, what);
  }

  /// Records an answer; false when the command is to be sent again (a 503, within bounds).
  bool record(const command& c, const http_result& res, int attempt) {
    std::lock_guard lock{mutex_};
    ++statuses_[res.status];
    if (res.status == 503 && attempt < 100) {
      ++retried_503_;
      return false;
    }
    const bool ok = res.status == 200 || res.status == 201;
    const bool business = res.status == 400 || res.status == 409;
    if (!ok && !business) {
      failure(c, std::to_string(res.status) + " " + res.body);
    } else if (ok && !c.tx.empty()) {
      acked_[c.account].push_back(c.tx);
    }
    return true;
  }

  std::vector<std::thread> threads_;
  std::atomic<bool> stop_{false};
  std::atomic<std::size_t> answered_{0};
  std::mutex mutex_;
  std::map<int, std::size_t> statuses_;
  std::size_t retried_503_ = 0;
  std::size_t failed_ = 0;
  std::vector<std::string> failures_;
  std::map<std::string, std::vector<std::string>> acked_;
};

} // namespace

TEST_CASE("a rolling update of 3 nodes under the command mix: every request answered (503s "
          "retried), each node exits 0, nothing acknowledged is lost",
          "[cluster]") {
  test_cluster c{{.nodes = 3, .args = quick_args()}};
  start_three(c, true);

  mix_load load;
  for (int a = 0; a < 30; ++a) {
    auto id = "roll-" + std::to_string(a);
    load.accounts.push_back(id);
    REQUIRE(c.request(static_cast<std::size_t>(a) % 3, "POST", "/accounts", open_body(id, 1'000'000'000))
              .status
            == 201);
  }
  rotation r;
  for (std::size_t i = 0; i < 3; ++i)
    r.add(i, c.http_endpoint(i));
  load.run(r, 6);
  REQUIRE(wait_until([&] { return load.answered() > 300; }));

  // Oldest first would move the singletons three times; Kubernetes updates a StatefulSet from
  // the highest ordinal down, which is what this does.
  for (std::size_t k = 0; k < 3; ++k) {
    const auto i = 2 - k;
    INFO("updating " << c.name(i));
    r.remove(i); // the endpoints drop a terminating pod while it gets SIGTERM
    const int code = c.stop(i, 60s);
    INFO(c.describe());
    REQUIRE(code == 0);
    c.start(i); // the new binary on the same data dir
    REQUIRE(c.wait_ready(i, 60s));
    r.add(i, c.http_endpoint(i));
    const auto before = load.answered();
    REQUIRE(wait_until([&] { return load.answered() > before + 200; }));
  }
  REQUIRE(c.wait_members_up({0, 1, 2}, {0, 1, 2}));
  load.finish();

  const auto summary = load.summary();
  INFO(summary);
  std::cout << "rolling update: " << summary << "\n";
  CHECK(load.failed() == 0);
  auto acked = load.acked();
  for (const auto& a : load.accounts)
    acked[a]; // accounts without an acknowledged transaction are checked for duplicates too
  check_acked(c, 0, acked);
}

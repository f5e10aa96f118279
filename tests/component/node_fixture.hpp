#pragma once

#include <memory>
#include <string>
#include <vector>

#include <boost/json.hpp>
#include <catch2/catch.hpp>

#include "tests/support/http_client.hpp"
#include "tests/support/node_process.hpp"
#include "tests/support/temp_dir.hpp"
#include "tests/support/wait.hpp"

namespace kontor::test {

/// A node on a fresh data dir, started and ready; restartable on the same data dir. `env`
/// ("NAME=value" items) is added to the node's environment at every start.
class running_node {
public:
  explicit running_node(std::vector<std::string> args = {}, std::vector<std::string> env = {})
    : args_(std::move(args)), env_(std::move(env)) {
    start();
  }

  void start() {
    auto n = std::to_string(++starts_);
    proc_ = std::make_unique<node_process>(data_dir(), (dir_.path() / ("node-" + n + ".log")).string(),
                                           args_, env_);
    bool ready = proc_->wait_ready();
    if (!ready)
      FAIL("node did not become ready; log:\n" << proc_->log());
  }

  void kill_hard() { proc_->kill_hard(); }
  int stop() { return proc_->stop(); }
  unsigned short port() const { return proc_->port(); }
  std::string data_dir() const { return (dir_.path() / "data").string(); }
  std::string log() const { return proc_->log(); }
  node_process& process() { return *proc_; }

private:
  temp_dir dir_;
  std::vector<std::string> args_;
  std::vector<std::string> env_;
  std::unique_ptr<node_process> proc_;
  int starts_ = 0;
};

/// A value of an unlabelled metric from GET /metrics (-1 when absent).
inline double metric(http_client& c, const std::string& name) {
  auto r = c.get("/metrics");
  if (r.status != 200)
    return -1;
  auto pos = r.body.find("\n" + name + " ");
  if (pos == std::string::npos)
    return -1;
  return std::stod(r.body.substr(pos + name.size() + 2));
}

/// Waits until the node's read model has applied every event its shards hold.
inline bool caught_up(http_client& c, std::chrono::milliseconds timeout = std::chrono::seconds(60)) {
  return wait_until([&] { return metric(c, "kontor_projection_lag_events") == 0; }, timeout);
}

/// Parses a response body as JSON (fails the test when it is not JSON).
inline boost::json::value body_json(const http_result& r) {
  boost::json::error_code ec;
  auto v = boost::json::parse(r.body, ec);
  if (ec)
    FAIL("not JSON (status " << r.status << "): " << r.body);
  return v;
}

/// The JSON for POST /accounts.
inline std::string open_body(const std::string& id, std::int64_t limit = 1000,
                             const std::string& currency = "EUR", const std::string& country = "DE") {
  return R"({"id":")" + id + R"(","owner":"Mike Magic","country":")" + country
         + R"(","currency":")" + currency + R"(","limit":)" + std::to_string(limit) + "}";
}

/// The JSON for POST /accounts/{id}/transactions.
inline std::string tx_body(const std::string& tx_id, const std::string& kind, std::int64_t amount,
                           const std::string& currency = "EUR") {
  return R"({"txId":")" + tx_id + R"(","kind":")" + kind + R"(","amount":)" + std::to_string(amount)
         + R"(,"currency":")" + currency + R"("})";
}

/// The whole event stream of an account via GET /accounts/{id}/events, all pages.
inline boost::json::array all_events(http_client& client, const std::string& id) {
  boost::json::array out;
  for (std::uint64_t from = 1;;) {
    auto r = client.get("/accounts/" + id + "/events?from=" + std::to_string(from) + "&limit=1000");
    REQUIRE(r.status == 200);
    auto page = body_json(r).as_array();
    for (auto& ev : page)
      out.push_back(ev);
    if (page.size() < 1000)
      return out;
    from += page.size();
  }
}

} // namespace kontor::test

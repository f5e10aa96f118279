#include "tests/support/load.hpp"

#include <atomic>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <thread>

namespace kontor::test {

namespace {

void count(load_result& r, int status) {
  r.by_status[status]++;
  if (status == 0)
    r.transport++;
  else if (status >= 200 && status < 300)
    r.ok++;
  else if (status == 503)
    r.unavailable++;
  else if (status >= 400 && status < 500)
    r.client_error++;
  else
    r.other++;
}

} // namespace

std::string load_result::summary() const {
  std::string s = "2xx=" + std::to_string(ok) + " 4xx=" + std::to_string(client_error)
                  + " 503=" + std::to_string(unavailable) + " other=" + std::to_string(other)
                  + " transport=" + std::to_string(transport) + " {";
  for (auto& [status, n] : by_status)
    s += " " + std::to_string(status) + ":" + std::to_string(n);
  return s + " }";
}

load_result spread_load(
  const std::vector<endpoint>& endpoints, std::size_t count_, std::size_t threads,
  const std::function<load_request(std::size_t)>& make,
  const std::function<void(std::size_t, const load_request&, const http_result&)>& observe,
  int timeout_ms) {
  if (endpoints.empty() || threads == 0)
    throw std::invalid_argument("spread_load: needs at least one endpoint and one thread");
  std::atomic<std::size_t> next{0};
  std::mutex mtx;
  load_result total;
  std::vector<std::thread> workers;
  for (std::size_t t = 0; t < threads; ++t) {
    workers.emplace_back([&] {
      std::vector<std::unique_ptr<http_client>> clients(endpoints.size());
      load_result mine;
      for (std::size_t i; (i = next++) < count_;) {
        auto req = make(i);
        auto e = i % endpoints.size();
        if (!clients[e])
          clients[e] = std::make_unique<http_client>(endpoints[e].host, endpoints[e].port, timeout_ms);
        auto headers = req.extra_headers;
        if (!req.body.empty())
          headers += "Content-Type: application/json\r\n";
        auto res = clients[e]->request(req.method, req.target, req.body, headers);
        count(mine, res.status);
        if (observe)
          observe(i, req, res);
      }
      std::lock_guard<std::mutex> guard{mtx};
      total.ok += mine.ok;
      total.client_error += mine.client_error;
      total.unavailable += mine.unavailable;
      total.other += mine.other;
      total.transport += mine.transport;
      for (auto& [status, n] : mine.by_status)
        total.by_status[status] += n;
    });
  }
  for (auto& w : workers)
    w.join();
  return total;
}

} // namespace kontor::test

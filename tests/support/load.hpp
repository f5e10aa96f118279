#pragma once

#include <cstddef>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "tests/support/http_client.hpp"

namespace kontor::test {

/// Where an HTTP server listens.
struct endpoint {
  std::string host = "127.0.0.1";
  unsigned short port = 0;
};

/// One request of a load run.
struct load_request {
  std::string method = "GET";
  std::string target = "/health";
  std::string body;          ///< sent with Content-Type: application/json when not empty
  std::string extra_headers; ///< raw "Name: value\r\n" lines
};

/// What a load run saw. Every request lands in exactly one of the five counts.
struct load_result {
  std::size_t ok = 0;           ///< 2xx
  std::size_t client_error = 0; ///< 4xx
  std::size_t unavailable = 0;  ///< 503
  std::size_t other = 0;        ///< any other status (1xx, 3xx, 5xx but 503)
  std::size_t transport = 0;    ///< no answer: connect, send or receive failed or timed out
  std::map<int, std::size_t> by_status; ///< every status seen (0: transport error)

  /// The number of requests sent.
  std::size_t total() const noexcept { return ok + client_error + unavailable + other + transport; }
  /// "2xx=… 4xx=… 503=… other=… transport=… {status: count}" for failure messages.
  std::string summary() const;
};

/// Sends request make(0) .. make(count - 1) from `threads` threads; request i goes to
/// endpoints[i % endpoints.size()], so the nodes share the load evenly. Each thread keeps one
/// keep-alive connection per endpoint (reconnecting after an error); `timeout_ms` bounds each
/// step of a request. Like http_client::request, a request whose connection fails is sent once
/// more on a fresh connection: it may reach a node twice (commands carry txIds) and take up to
/// twice the timeout. `make` and `observe` (when given, called with every answer) run on the
/// load threads concurrently: they must be thread-safe. Returns when every request has an
/// outcome.
load_result spread_load(
  const std::vector<endpoint>& endpoints, std::size_t count, std::size_t threads,
  const std::function<load_request(std::size_t i)>& make,
  const std::function<void(std::size_t i, const load_request&, const http_result&)>& observe = {},
  int timeout_ms = 5000);

} // namespace kontor::test

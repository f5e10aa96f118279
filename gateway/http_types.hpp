#pragma once

// HTTP as the API layer sees it: plain structs, so that only http_server.cpp includes Beast.

#include <chrono>
#include <cstddef>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace kontor::gateway {

/// One parsed HTTP request.
struct http_request {
  std::string method;       ///< "GET", "POST", ...
  std::string target;       ///< path and query, e.g. "/accounts/333?consistent=true"
  std::string body;
  std::string if_match;     ///< the If-Match header, empty when absent
  std::optional<std::string> idempotency_key; ///< the Idempotency-Key header, when present
  std::string request_id; ///< the client's X-Request-Id, or one the server made up; the answer carries it
};

/// One HTTP response. Content-Type defaults to application/json.
struct http_response {
  unsigned status = 200;
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string content_type = "application/json";
};

/// Sends the response for one request. Callable from any thread, exactly once.
using responder = std::function<void(http_response)>;

/// Handles one request; answers through the responder, possibly later and on another thread.
using http_handler = std::function<void(http_request&&, responder)>;

/// Settings of the HTTP server.
struct http_settings {
  std::string address = "0.0.0.0";
  unsigned short port = 8080;           ///< 0: pick a free port (see http_server::port)
  unsigned threads = 1;                 ///< I/O threads
  std::size_t body_limit = 64 * 1024;   ///< larger bodies get 413
  std::chrono::milliseconds read_timeout{std::chrono::seconds(30)}; ///< per request, incl. idle keep-alive
};

} // namespace kontor::gateway

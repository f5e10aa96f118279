#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <string>

#include "runtime/policy/policy.hpp"

namespace kontor::policy {

/// A webhook's address: http://host[:port][/path] (plain HTTP).
struct http_url {
  std::string host;
  std::string port = "80";
  std::string target = "/";
};

/// Parses `url`; nullopt when it is not an http:// URL with a host.
std::optional<http_url> parse_http_url(const std::string& url);

/// POSTs to one webhook over a kept-alive connection (HTTP/1.1; a new one when the receiver
/// closed it or answered `Connection: close`). For one thread at a time (a policy's delivery
/// thread).
class http_poster {
public:
  explicit http_poster(http_url url);
  ~http_poster();
  http_poster(const http_poster&) = delete;
  http_poster& operator=(const http_poster&) = delete;

  /// POSTs `body` (application/json) with the header `Idempotency-Key: key`, blocking, every
  /// step (resolve, connect, write, read) bounded by `timeout` in all. 2xx is done; a refused or
  /// dropped connection, a timeout, 408, 429 and 5xx are worth a retry; any other status (4xx, a
  /// redirect) is rejected for good. A kept connection that fails before any answer is replaced
  /// by a new one once (the receiver may have closed it while idle; the key makes a second
  /// arrival harmless).
  attempt_result post(const std::string& body, const std::string& key, std::chrono::milliseconds timeout);

private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

} // namespace kontor::policy

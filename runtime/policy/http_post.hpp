#pragma once

#include <chrono>
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

/// POSTs `body` (application/json) to `url` with the header `Idempotency-Key: key`, blocking,
/// every step (resolve, connect, write, read) bounded by `timeout` in all. 2xx is done; a
/// refused or dropped connection, a timeout, 408, 429 and 5xx are worth a retry; any other
/// status (4xx, a redirect) is rejected for good.
attempt_result http_post(const http_url& url, const std::string& body, const std::string& key,
                         std::chrono::milliseconds timeout);

} // namespace kontor::policy

#pragma once

#include <memory>

#include "gateway/http_types.hpp"

namespace kontor::gateway {

/// An asynchronous HTTP/1.1 server (Boost.Beast) with keep-alive, a body limit, read timeouts and
/// a pool of I/O threads. Malformed requests get 400, oversized bodies 413, and the connection
/// is closed; the server never blocks an I/O thread on a handler.
class http_server {
public:
  /// Binds and listens; throws std::runtime_error naming the address when it cannot.
  http_server(http_settings settings, http_handler handler);
  ~http_server();

  http_server(const http_server&) = delete;
  http_server& operator=(const http_server&) = delete;

  /// The port actually bound (useful with port 0).
  unsigned short port() const noexcept;

  /// Starts accepting and runs the I/O threads; returns at once.
  void start();

  /// Stops accepting, closes connections and joins the I/O threads.
  void stop();

private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

} // namespace kontor::gateway

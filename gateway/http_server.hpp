#pragma once

#include <memory>

#include "gateway/http_types.hpp"

namespace kontor::gateway {

/// An asynchronous HTTP/1.1 server (Boost.Beast) with keep-alive, pipelining (answered in order),
/// a body limit, read timeouts and a pool of I/O threads. Malformed requests (and HTTP/1.1 ones
/// without exactly one Host) get 400, oversized bodies 413 without waiting for the body, and the
/// connection is closed so that answers already written still arrive. HEAD answers carry no
/// body; `Expect: 100-continue` is answered. The server never blocks an I/O thread on a handler.
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

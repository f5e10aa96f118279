#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace kontor::test {

/// A minimal HTTP/1.1 server on 127.0.0.1 (ephemeral port) for testing test helpers: it answers
/// GET /status/<code> with that status and an empty body, anything else with 404; keep-alive.
class fake_http_server {
public:
  fake_http_server() {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    if (fd_ < 0 || ::bind(fd_, reinterpret_cast<sockaddr*>(&addr), len) != 0 || ::listen(fd_, 64) != 0
        || ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0)
      throw std::runtime_error("fake_http_server: cannot listen");
    port_ = ntohs(addr.sin_port);
    acceptor_ = std::thread([this] { accept_loop(); });
  }
  ~fake_http_server() {
    stopping_ = true;
    ::shutdown(fd_, SHUT_RDWR); // wakes accept()
    acceptor_.join();
    for (auto& t : connections_)
      t.join();
    ::close(fd_);
  }
  fake_http_server(const fake_http_server&) = delete;
  fake_http_server& operator=(const fake_http_server&) = delete;

  unsigned short port() const noexcept { return port_; }
  /// Requests answered so far.
  std::size_t served() const noexcept { return served_; }

private:
  void accept_loop() {
    for (;;) {
      int c = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (c < 0 || stopping_) {
        if (c >= 0)
          ::close(c);
        return;
      }
      connections_.emplace_back([this, c] { serve(c); });
    }
  }

  void serve(int c) {
    std::string buffer;
    char chunk[4096];
    for (;;) {
      auto end = buffer.find("\r\n\r\n");
      if (end == std::string::npos) {
        auto n = ::recv(c, chunk, sizeof chunk, 0);
        if (n <= 0)
          break;
        buffer.append(chunk, static_cast<std::size_t>(n));
        continue;
      }
      // Request line "METHOD TARGET HTTP/1.1"; the tests send no bodies.
      auto sp1 = buffer.find(' ');
      auto sp2 = buffer.find(' ', sp1 + 1);
      auto target = buffer.substr(sp1 + 1, sp2 - sp1 - 1);
      buffer.erase(0, end + 4);
      int status = target.rfind("/status/", 0) == 0 ? std::atoi(target.c_str() + 8) : 404;
      auto reply = "HTTP/1.1 " + std::to_string(status) + " X\r\nContent-Length: 0\r\n\r\n";
      ++served_;
      if (::send(c, reply.data(), reply.size(), MSG_NOSIGNAL) < 0)
        break;
    }
    ::close(c);
  }

  int fd_ = -1;
  unsigned short port_ = 0;
  std::atomic<bool> stopping_{false};
  std::atomic<std::size_t> served_{0};
  std::thread acceptor_;
  std::vector<std::thread> connections_;
};

} // namespace kontor::test

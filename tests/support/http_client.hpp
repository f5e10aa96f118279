#pragma once

#include <map>
#include <optional>
#include <string>

namespace kontor::test {

/// One HTTP response as the tests see it.
struct http_result {
  int status = 0;                          ///< 0: no answer (connection failed or closed)
  std::map<std::string, std::string> headers; ///< lower-case names
  std::string body;

  std::string header(const std::string& lower_name) const {
    auto i = headers.find(lower_name);
    return i == headers.end() ? std::string{} : i->second;
  }
};

/// A blocking HTTP/1.1 client on one keep-alive connection to 127.0.0.1:port or host:port (plain
/// POSIX sockets, so tests exercise the server with an independent implementation). Reconnects
/// when the server closed the connection. Not thread-safe: one client per thread.
class http_client {
public:
  explicit http_client(unsigned short port, int timeout_ms = 10000);
  /// A client of host:port (an IPv4 address such as a network-namespace lab's 10.77.x.y). The
  /// timeout bounds connect, send and each receive.
  http_client(std::string host, unsigned short port, int timeout_ms = 10000);
  ~http_client();
  http_client(const http_client&) = delete;
  http_client& operator=(const http_client&) = delete;

  /// Sends one request; extra_headers is raw "Name: value\r\n" lines.
  http_result request(const std::string& method, const std::string& target,
                      const std::string& body = {}, const std::string& extra_headers = {});

  http_result get(const std::string& target) { return request("GET", target); }
  http_result post(const std::string& target, const std::string& body) {
    return request("POST", target, body, "Content-Type: application/json\r\n");
  }
  http_result put(const std::string& target, const std::string& body) {
    return request("PUT", target, body, "Content-Type: application/json\r\n");
  }

  /// Sends raw bytes and reads one response (for malformed requests).
  http_result raw(const std::string& bytes);

private:
  bool connect();
  void close();
  http_result exchange(const std::string& bytes, bool retry);
  std::optional<http_result> read_response();

  std::string host_ = "127.0.0.1";
  unsigned short port_;
  int timeout_ms_;
  int fd_ = -1;
  std::string buffer_;
};

} // namespace kontor::test

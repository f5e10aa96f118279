#pragma once

#include <chrono>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

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

/// One raw TCP connection to 127.0.0.1:port for tests of the protocol itself: bytes go out as
/// given (pipelines, partial requests, garbage) and come back unparsed, with every wait bounded
/// by a deadline, and an orderly close (FIN) told apart from a reset.
class raw_connection {
public:
  /// Connects; connected() says whether that worked. `receive_buffer` > 0 sets SO_RCVBUF (a
  /// small one makes a client that cannot take all answers at once).
  explicit raw_connection(unsigned short port, int receive_buffer = 0);
  ~raw_connection();
  raw_connection(const raw_connection&) = delete;
  raw_connection& operator=(const raw_connection&) = delete;

  bool connected() const noexcept { return fd_ >= 0; }

  /// Sends all of `bytes`; false when the connection broke first.
  bool send_all(std::string_view bytes);

  /// Closes the sending side (FIN); reading goes on.
  void shutdown_send();

  /// What a read ended with.
  struct read_end {
    bool eof = false;       ///< the server closed in order (FIN) and everything before it was read
    int error = 0;          ///< errno of a failed read (ECONNRESET: a reset), 0 when none
    bool timed_out = false; ///< the deadline passed first
  };

  /// Reads into received() until the server closes, the read fails, or `timeout` passes.
  read_end read_until_closed(std::chrono::milliseconds timeout);

  /// Reads into received() until it contains `needle` (true) or the deadline / close (false).
  bool read_until(std::string_view needle, std::chrono::milliseconds timeout);

  /// Everything read so far (parse_responses takes it apart).
  std::string& received() noexcept { return received_; }

private:
  /// One recv with what is left of the deadline: bytes read, 0 at EOF, -1 error, -2 timeout.
  long read_some(std::chrono::steady_clock::time_point deadline);

  int fd_ = -1;
  std::string received_;
};

/// The complete HTTP/1.1 responses at the start of `bytes` (at most `max`), framed by
/// Content-Length, removed from it. `bodiless[i]` says that the i-th response answers a HEAD (a
/// Content-Length but no body); an interim 1xx response is returned like any other.
std::vector<http_result> take_responses(std::string& bytes, const std::vector<bool>& bodiless = {},
                                        std::size_t max = std::size_t(-1));

} // namespace kontor::test

#include "tests/support/http_client.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>

namespace kontor::test {

namespace {

/// The header fields of a response head (after its status line, which ends at `line_end`),
/// names lower-cased.
void read_headers(const std::string& head, std::size_t line_end, http_result& res) {
  std::size_t pos = line_end == std::string::npos ? head.size() : line_end + 2;
  while (pos < head.size()) {
    auto end = head.find("\r\n", pos);
    if (end == std::string::npos)
      end = head.size();
    auto line = head.substr(pos, end - pos);
    auto colon = line.find(':');
    if (colon != std::string::npos) {
      auto name = line.substr(0, colon);
      std::transform(name.begin(), name.end(), name.begin(),
                     [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
      auto value = line.substr(colon + 1);
      value.erase(0, value.find_first_not_of(' '));
      res.headers[name] = value;
    }
    pos = end + 2;
  }
}

} // namespace

http_client::http_client(unsigned short port, int timeout_ms) : port_(port), timeout_ms_(timeout_ms) {}

http_client::http_client(std::string host, unsigned short port, int timeout_ms)
  : host_(std::move(host)), port_(port), timeout_ms_(timeout_ms) {}

http_client::~http_client() {
  close();
}

void http_client::close() {
  if (fd_ >= 0)
    ::close(fd_);
  fd_ = -1;
  buffer_.clear();
}

bool http_client::connect() {
  close();
  fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd_ < 0)
    return false;
  timeval tv{timeout_ms_ / 1000, (timeout_ms_ % 1000) * 1000};
  ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(fd_, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  int one = 1;
  ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port_);
  if (::inet_pton(AF_INET, host_.c_str(), &addr.sin_addr) != 1) {
    close();
    return false;
  }
  // On Linux SO_SNDTIMEO also bounds connect: an unreachable host fails after the timeout.
  if (::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    close();
    return false;
  }
  return true;
}

http_result http_client::request(const std::string& method, const std::string& target,
                                 const std::string& body, const std::string& extra_headers) {
  std::string req = method + " " + target + " HTTP/1.1\r\nHost: " + host_ + "\r\n" + extra_headers;
  if (!body.empty() || method == "POST" || method == "PUT")
    req += "Content-Length: " + std::to_string(body.size()) + "\r\n";
  req += "\r\n" + body;
  return exchange(req, true);
}

http_result http_client::raw(const std::string& bytes) {
  return exchange(bytes, false);
}

http_result http_client::exchange(const std::string& bytes, bool retry) {
  for (int attempt = 0; attempt < (retry ? 2 : 1); ++attempt) {
    // A kept-alive connection may have been closed by the server meanwhile: reconnect once.
    if (fd_ < 0 && !connect())
      return {};
    std::size_t sent = 0;
    bool ok = true;
    while (sent < bytes.size()) {
      auto n = ::send(fd_, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
      if (n <= 0) {
        ok = false;
        break;
      }
      sent += static_cast<std::size_t>(n);
    }
    if (ok) {
      if (auto res = read_response())
        return *res;
    }
    close();
    if (sent > 0 && !retry)
      break;
  }
  return {};
}

std::optional<http_result> http_client::read_response() {
  auto fill = [&]() {
    char chunk[16384];
    auto n = ::recv(fd_, chunk, sizeof chunk, 0);
    if (n <= 0)
      return false;
    buffer_.append(chunk, static_cast<std::size_t>(n));
    return true;
  };
  std::size_t header_end;
  while ((header_end = buffer_.find("\r\n\r\n")) == std::string::npos)
    if (!fill())
      return std::nullopt;
  http_result res;
  std::string head = buffer_.substr(0, header_end);
  auto line_end = head.find("\r\n");
  auto status_line = head.substr(0, line_end);
  auto sp = status_line.find(' ');
  if (sp == std::string::npos)
    return std::nullopt;
  res.status = std::atoi(status_line.c_str() + sp + 1);
  read_headers(head, line_end, res);
  std::size_t length = 0;
  if (auto cl = res.header("content-length"); !cl.empty())
    length = std::stoul(cl);
  std::size_t body_start = header_end + 4;
  while (buffer_.size() < body_start + length)
    if (!fill())
      return std::nullopt;
  res.body = buffer_.substr(body_start, length);
  buffer_.erase(0, body_start + length);
  if (res.header("connection") == "close")
    close();
  return res;
}

raw_connection::raw_connection(unsigned short port, int receive_buffer) {
  fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd_ < 0)
    return;
  if (receive_buffer > 0)
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &receive_buffer, sizeof receive_buffer);
  int one = 1;
  ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  timeval tv{10, 0}; // send_all cannot hang
  ::setsockopt(fd_, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd_);
    fd_ = -1;
  }
}

raw_connection::~raw_connection() {
  if (fd_ >= 0)
    ::close(fd_);
}

bool raw_connection::send_all(std::string_view bytes) {
  std::size_t sent = 0;
  while (fd_ >= 0 && sent < bytes.size()) {
    auto n = ::send(fd_, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
    if (n <= 0)
      return false;
    sent += static_cast<std::size_t>(n);
  }
  return fd_ >= 0;
}

void raw_connection::shutdown_send() {
  if (fd_ >= 0)
    ::shutdown(fd_, SHUT_WR);
}

long raw_connection::read_some(std::chrono::steady_clock::time_point deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
    deadline - std::chrono::steady_clock::now());
  if (left.count() <= 0)
    return -2;
  pollfd p{fd_, POLLIN, 0};
  auto ready = ::poll(&p, 1, static_cast<int>(left.count()));
  if (ready == 0)
    return -2;
  char chunk[16384];
  auto n = ::recv(fd_, chunk, sizeof chunk, 0);
  if (n > 0)
    received_.append(chunk, static_cast<std::size_t>(n));
  return n;
}

raw_connection::read_end raw_connection::read_until_closed(std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  read_end out;
  for (;;) {
    auto n = read_some(deadline);
    if (n == 0) {
      out.eof = true;
      return out;
    }
    if (n == -2) {
      out.timed_out = true;
      return out;
    }
    if (n < 0) {
      out.error = errno;
      return out;
    }
  }
}

bool raw_connection::read_until(std::string_view needle, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (received_.find(needle) == std::string::npos)
    if (read_some(deadline) <= 0)
      return false;
  return true;
}

std::vector<http_result> take_responses(std::string& bytes, const std::vector<bool>& bodiless,
                                        std::size_t max) {
  std::vector<http_result> out;
  while (out.size() < max) {
    auto header_end = bytes.find("\r\n\r\n");
    if (header_end == std::string::npos)
      return out;
    http_result res;
    std::string head = bytes.substr(0, header_end);
    auto line_end = head.find("\r\n");
    auto status_line = head.substr(0, line_end);
    if (status_line.rfind("HTTP/1.", 0) != 0 || status_line.size() < 12)
      return out; // not a response: leave it for the caller to look at
    res.status = std::atoi(status_line.c_str() + 9);
    read_headers(head, line_end, res);
    std::size_t length = 0;
    bool no_body = (out.size() < bodiless.size() && bodiless[out.size()]) || res.status / 100 == 1;
    if (auto cl = res.header("content-length"); !cl.empty() && !no_body)
      length = std::stoul(cl);
    std::size_t body_start = header_end + 4;
    if (bytes.size() < body_start + length)
      return out;
    res.body = bytes.substr(body_start, length);
    bytes.erase(0, body_start + length);
    out.push_back(std::move(res));
  }
  return out;
}

} // namespace kontor::test

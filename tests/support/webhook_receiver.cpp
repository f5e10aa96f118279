#include "tests/support/webhook_receiver.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <stdexcept>

#include "tests/support/wait.hpp"

namespace kontor::test {

webhook_receiver::webhook_receiver(unsigned short port) : port_(port) {
  if (!open_port())
    throw std::runtime_error("webhook_receiver: cannot listen on 127.0.0.1:" + std::to_string(port));
  is_up_ = true;
  thread_ = std::thread([this] { serve(); });
}

webhook_receiver::~webhook_receiver() {
  running_ = false;
  thread_.join();
  if (listen_fd_ >= 0)
    ::close(listen_fd_);
}

std::string webhook_receiver::url() const {
  return "http://127.0.0.1:" + std::to_string(port_) + "/thanks";
}

bool webhook_receiver::open_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return false;
  int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port_);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || ::listen(fd, 64) != 0) {
    ::close(fd);
    return false;
  }
  listen_fd_ = fd;
  return true;
}

void webhook_receiver::fail_next(int n) {
  std::lock_guard lock{mutex_};
  fail_next_ = n;
}

void webhook_receiver::set_accept_budget(int n) {
  std::lock_guard lock{mutex_};
  budget_ = n;
}

void webhook_receiver::reject_key(const std::string& key, bool reject) {
  std::lock_guard lock{mutex_};
  if (reject)
    rejected_.insert(key);
  else
    rejected_.erase(key);
}

void webhook_receiver::go_down() {
  {
    std::lock_guard lock{mutex_};
    want_up_ = false;
  }
  wait_until([this] {
    std::lock_guard lock{mutex_};
    return !is_up_;
  });
}

void webhook_receiver::come_up() {
  {
    std::lock_guard lock{mutex_};
    want_up_ = true;
  }
  wait_until([this] {
    std::lock_guard lock{mutex_};
    return is_up_;
  });
}

std::vector<webhook_receiver::request> webhook_receiver::requests() const {
  std::lock_guard lock{mutex_};
  return requests_;
}

std::set<std::string> webhook_receiver::accepted() const {
  std::lock_guard lock{mutex_};
  std::set<std::string> out;
  for (const auto& r : requests_)
    if (r.status == 200)
      out.insert(r.key);
  return out;
}

std::size_t webhook_receiver::failed() const {
  std::lock_guard lock{mutex_};
  return static_cast<std::size_t>(
    std::count_if(requests_.begin(), requests_.end(), [](const request& r) { return r.status != 200; }));
}

void webhook_receiver::serve() {
  while (running_) {
    bool want_up = false;
    {
      std::lock_guard lock{mutex_};
      want_up = want_up_;
    }
    if (want_up && listen_fd_ < 0)
      open_port(); // retried on the next turn when the port is not free yet
    if (!want_up && listen_fd_ >= 0) {
      ::close(listen_fd_);
      listen_fd_ = -1;
    }
    {
      std::lock_guard lock{mutex_};
      is_up_ = listen_fd_ >= 0;
    }
    if (listen_fd_ < 0) {
      ::poll(nullptr, 0, 10); // down: look at the wish again shortly
      continue;
    }
    pollfd p{listen_fd_, POLLIN, 0};
    if (::poll(&p, 1, 20) <= 0)
      continue;
    int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0)
      continue;
    handle(fd);
    ::close(fd);
  }
}

void webhook_receiver::handle(int fd) {
  // Read the head, then Content-Length bytes of body; every read bounded by 5 s.
  std::string in;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  auto read_more = [&] {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    pollfd p{fd, POLLIN, 0};
    if (left.count() <= 0 || ::poll(&p, 1, static_cast<int>(left.count())) <= 0)
      return false;
    char buf[4096];
    auto n = ::read(fd, buf, sizeof buf);
    if (n <= 0)
      return false;
    in.append(buf, static_cast<std::size_t>(n));
    return true;
  };
  std::size_t head_end;
  while ((head_end = in.find("\r\n\r\n")) == std::string::npos)
    if (!read_more())
      return;
  std::string head = in.substr(0, head_end);
  std::string lower = head;
  std::transform(lower.begin(), lower.end(), lower.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  auto header = [&](const std::string& name) {
    auto pos = lower.find("\r\n" + name + ":");
    if (pos == std::string::npos)
      return std::string{};
    auto start = pos + name.size() + 3;
    auto end = head.find("\r\n", start);
    auto v = head.substr(start, end == std::string::npos ? std::string::npos : end - start);
    v.erase(0, v.find_first_not_of(' '));
    v.erase(v.find_last_not_of(' ') + 1);
    return v;
  };
  std::size_t length = 0;
  if (auto cl = header("content-length"); !cl.empty())
    length = std::stoul(cl);
  while (in.size() < head_end + 4 + length)
    if (!read_more())
      return;
  request r;
  r.key = header("idempotency-key");
  r.body = in.substr(head_end + 4, length);
  {
    std::lock_guard lock{mutex_};
    if (rejected_.count(r.key))
      r.status = 400;
    else if (fail_next_ > 0) {
      --fail_next_;
      r.status = 503;
    } else if (budget_ == 0)
      r.status = 503;
    else {
      if (budget_ > 0)
        --budget_;
      r.status = 200;
    }
    requests_.push_back(r);
  }
  const std::string reason = r.status == 200 ? "OK" : r.status == 400 ? "Bad Request" : "Service Unavailable";
  std::string out = "HTTP/1.1 " + std::to_string(r.status) + " " + reason
                    + "\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
  (void) ::send(fd, out.data(), out.size(), MSG_NOSIGNAL);
}

} // namespace kontor::test

#pragma once

#include <atomic>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

namespace kontor::test {

/// A small HTTP server on 127.0.0.1:port in the test process that stands in for a webhook
/// receiver: it records every request (Idempotency-Key, body, the status it answered) and answers
/// as the test scripts it: 200, 503 for the next N requests, 503 to all past an accept budget,
/// 400 for chosen keys, or nothing at all while it is down (its port closed). One connection at a
/// time, one request per connection; the destructor stops it.
class webhook_receiver {
public:
  /// Listens on `port` (a fixed port: it must be reopened there after go_down).
  explicit webhook_receiver(unsigned short port);
  ~webhook_receiver();
  webhook_receiver(const webhook_receiver&) = delete;
  webhook_receiver& operator=(const webhook_receiver&) = delete;

  /// http://127.0.0.1:port/thanks
  std::string url() const;

  /// One request as it arrived.
  struct request {
    std::string key;   ///< its Idempotency-Key ("" when absent)
    std::string body;
    int status = 0;    ///< what the receiver answered
  };

  /// The next `n` requests are answered 503.
  void fail_next(int n);
  /// Accept (200) at most `n` more requests, then answer 503 to all; -1: no limit.
  void set_accept_budget(int n);
  /// Requests with this key are answered 400, or accepted again (`reject` false).
  void reject_key(const std::string& key, bool reject = true);
  /// Closes the port (connections are refused) / opens it again; returns once done.
  void go_down();
  void come_up();

  /// Every request so far, in arrival order.
  std::vector<request> requests() const;
  /// The keys answered 200 so far.
  std::set<std::string> accepted() const;
  /// How many requests were answered with something else than 200.
  std::size_t failed() const;

private:
  void serve();
  void handle(int fd);
  bool open_port();

  unsigned short port_;
  mutable std::mutex mutex_;
  std::vector<request> requests_;
  std::set<std::string> rejected_;
  int fail_next_ = 0;
  int budget_ = -1;
  bool want_up_ = true;
  bool is_up_ = false;
  std::atomic<bool> running_{true};
  int listen_fd_ = -1;
  std::thread thread_;
};

} // namespace kontor::test

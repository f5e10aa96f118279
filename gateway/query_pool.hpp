#pragma once

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace kontor::gateway {

/// A few threads for queries that read the journal (audit log, asOf), so that such reads never
/// run on an HTTP I/O thread or an actor scheduler thread. The queue is bounded.
class query_pool {
public:
  query_pool(std::size_t threads, std::size_t max_queued) : max_queued_(max_queued) {
    for (std::size_t i = 0; i < threads; ++i)
      threads_.emplace_back([this] { run(); });
  }

  ~query_pool() {
    {
      std::lock_guard<std::mutex> guard{mtx_};
      stopping_ = true;
    }
    cv_.notify_all();
    for (auto& t : threads_)
      t.join();
  }

  query_pool(const query_pool&) = delete;
  query_pool& operator=(const query_pool&) = delete;

  /// Queues `job`; false when the queue is full or the pool is stopping (then `job` never runs).
  bool submit(std::function<void()> job) {
    {
      std::lock_guard<std::mutex> guard{mtx_};
      if (stopping_ || jobs_.size() >= max_queued_)
        return false;
      jobs_.push_back(std::move(job));
    }
    cv_.notify_one();
    return true;
  }

private:
  void run() {
    for (;;) {
      std::function<void()> job;
      {
        std::unique_lock<std::mutex> guard{mtx_};
        cv_.wait(guard, [this] { return stopping_ || !jobs_.empty(); });
        if (jobs_.empty())
          return;
        job = std::move(jobs_.front());
        jobs_.pop_front();
      }
      job();
    }
  }

  std::size_t max_queued_;
  std::mutex mtx_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> jobs_;
  bool stopping_ = false;
  std::vector<std::thread> threads_;
};

} // namespace kontor::gateway

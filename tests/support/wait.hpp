#pragma once

#include <chrono>
#include <thread>

namespace kontor::test {

/// Polls `condition` until it holds or `timeout` passes; returns whether it held. The poll
/// interval backs off from 1 ms to 50 ms. This is the only way tests wait: on a condition with a
/// deadline, never a fixed sleep.
template <class Predicate>
bool wait_until(Predicate condition, std::chrono::milliseconds timeout = std::chrono::seconds(20)) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  auto backoff = std::chrono::milliseconds(1);
  for (;;) {
    if (condition())
      return true;
    if (std::chrono::steady_clock::now() >= deadline)
      return false;
    std::this_thread::sleep_for(backoff); // poll backoff until the deadline
    backoff = std::min(backoff * 2, std::chrono::milliseconds(50));
  }
}

} // namespace kontor::test

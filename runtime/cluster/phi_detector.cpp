#include "runtime/cluster/phi_detector.hpp"

#include <algorithm>
#include <cmath>

namespace kontor::cluster {

void phi_detector::heartbeat(clock::time_point now) {
  if (!last_) {
    // Seed the history with the expected interval (deviation a quarter of it), as Akka does, so
    // the first real interval does not make a degenerate distribution.
    const double expected = static_cast<double>(settings_.heartbeat_interval.count());
    for (double d : {expected - expected / 4, expected + expected / 4}) {
      intervals_.push_back(d);
      sum_ += d;
      squared_sum_ += d * d;
    }
  } else {
    const double interval = std::chrono::duration<double, std::milli>(now - *last_).count();
    intervals_.push_back(interval);
    sum_ += interval;
    squared_sum_ += interval * interval;
    while (intervals_.size() > settings_.max_samples) {
      const double old = intervals_.front();
      intervals_.pop_front();
      sum_ -= old;
      squared_sum_ -= old * old;
    }
  }
  last_ = now;
}

double phi_detector::phi(clock::time_point now) const {
  if (!last_ || intervals_.empty())
    return 0.0;
  const double n = static_cast<double>(intervals_.size());
  const double mean = sum_ / n + static_cast<double>(settings_.acceptable_pause.count());
  const double variance = std::max(0.0, squared_sum_ / n - (sum_ / n) * (sum_ / n));
  const double std_dev =
    std::max(std::sqrt(variance), static_cast<double>(settings_.min_std_deviation.count()));
  const double elapsed = std::chrono::duration<double, std::milli>(now - *last_).count();
  // The logistic approximation of the normal CDF that Akka uses (error below 0.02 %).
  const double y = (elapsed - mean) / std_dev;
  const double e = std::exp(-y * (1.5976 + 0.070566 * y * y));
  if (elapsed > mean)
    return -std::log10(e / (1.0 + e));
  return -std::log10(1.0 - 1.0 / (1.0 + e));
}

void phi_detector::reset() {
  last_.reset();
  intervals_.clear();
  sum_ = 0;
  squared_sum_ = 0;
}

} // namespace kontor::cluster

#pragma once

#include <chrono>
#include <cstddef>
#include <deque>
#include <optional>

namespace kontor::cluster {

/// Settings of a phi-accrual failure detector (Hayashibara et al.; as in Akka and Cassandra).
struct phi_settings {
  double threshold = 8.0;                                 ///< phi above this: unreachable
  std::chrono::milliseconds heartbeat_interval{200};      ///< expected, seeds the history
  std::chrono::milliseconds acceptable_pause{800};        ///< added to the mean interval
  std::chrono::milliseconds min_std_deviation{100};       ///< floor of the interval deviation
  std::size_t max_samples = 200;                          ///< intervals remembered
};

/// Suspicion that one peer is dead, from the arrival times of its heartbeats: phi is -log10 of
/// the probability that a heartbeat still comes this late, under a normal distribution fitted to
/// the recent intervals (mean raised by `acceptable_pause`). Pure: callers pass the time in.
class phi_detector {
public:
  using clock = std::chrono::steady_clock;

  phi_detector() = default;
  explicit phi_detector(phi_settings s) : settings_(s) {}

  /// A heartbeat arrived at `now`.
  void heartbeat(clock::time_point now);

  /// The suspicion level at `now` (0 before the first heartbeat).
  double phi(clock::time_point now) const;

  /// Whether phi at `now` is at or below the threshold (true before the first heartbeat).
  bool available(clock::time_point now) const { return phi(now) <= settings_.threshold; }

  /// Forgets the history (a new incarnation of the peer, a new connection).
  void reset();

private:
  phi_settings settings_;
  std::optional<clock::time_point> last_;
  std::deque<double> intervals_; ///< milliseconds
  double sum_ = 0;
  double squared_sum_ = 0;
};

} // namespace kontor::cluster

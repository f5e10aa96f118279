#pragma once

#include <chrono>
#include <cstddef>

#include <caf/fwd.hpp>

#include "runtime/persistence/journal.hpp"

namespace kontor::projection {

/// Settings of the poller.
struct poller_settings {
  const persistence::journal* journal = nullptr; ///< not owned; outlives the poller
  std::size_t batch_size = 1000;                 ///< events per batch
  /// While a subscriber has a backlog, the next batch is read as soon as the previous one is
  /// applied. When the journal has nothing new, the poller waits `idle_min`, doubling up to
  /// `idle_max` while it stays idle (so an idle node polls 20 times a second at most, and the
  /// first event after a quiet period is seen within `idle_max`).
  std::chrono::milliseconds idle_min{2};
  std::chrono::milliseconds idle_max{50};
  /// At most one batch per subscriber per `min_interval`: under load batches grow instead of
  /// commits multiplying (each read-model commit rewrites the pages of every account it touches).
  std::chrono::milliseconds min_interval{20};
  std::chrono::milliseconds delivery_timeout{std::chrono::seconds(30)}; ///< per batch
};

/// Starts the poller on its own thread (its journal reads block). It reads the journal's log
/// for every subscriber from that subscriber's offset and delivers batches in journal order,
/// one batch in flight per subscriber. Subscribers keep their offsets durably themselves, so a
/// poller that moves or restarts needs no state: subscribers subscribe again with their offset.
caf::actor spawn_poller(caf::actor_system& sys, poller_settings settings);

} // namespace kontor::projection

#pragma once

#include <chrono>
#include <cstddef>
#include <functional>

#include <caf/actor.hpp>
#include <caf/fwd.hpp>

#include "runtime/core/ids.hpp"

namespace kontor::projection {

/// Where the poller reads shard `s` from: the shard log server (stream::spawn_log_server) of the
/// node that holds the shard now, or an invalid actor while none does (the shard is skipped
/// until it has a home again).
using shard_locator = std::function<caf::actor(shard_id)>;

/// Settings of the poller.
struct poller_settings {
  shard_locator locate;                          ///< required
  std::size_t batch_size = 1000;                 ///< events per batch (whole appends)
  /// While a subscriber has a backlog, the next batch is read as soon as the previous one is
  /// applied. When no shard has anything new, the poller waits `idle_min`, doubling up to
  /// `idle_max` while it stays idle (so an idle node polls 20 times a second at most, and the
  /// first event after a quiet period is seen within `idle_max`).
  std::chrono::milliseconds idle_min{2};
  std::chrono::milliseconds idle_max{50};
  /// At most one batch per subscriber per `min_interval`: under load batches grow instead of
  /// commits multiplying (each read-model commit rewrites the pages of every account it touches).
  std::chrono::milliseconds min_interval{20};
  std::chrono::milliseconds read_timeout{std::chrono::seconds(5)};      ///< per shard-log read
  std::chrono::milliseconds delivery_timeout{std::chrono::seconds(30)}; ///< per batch
};

/// Starts the poller. For each subscriber (a read model, on any node) it reads every shard's
/// log from the subscriber's position, from wherever the shard lives, and delivers batches in
/// shard-position order, one batch in flight per subscriber. Subscribers keep their positions
/// durably and answer every batch with them, so a failed commit is read again, and a poller
/// that moves or restarts needs no state: subscribers subscribe again with their positions.
caf::actor spawn_poller(caf::actor_system& sys, poller_settings settings);

} // namespace kontor::projection

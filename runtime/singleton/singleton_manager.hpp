#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>

#include <caf/actor.hpp>
#include <caf/fwd.hpp>

namespace kontor::singleton {

/// Makes the singleton's actor on the node that is to run it.
using singleton_factory = std::function<caf::actor(caf::actor_system&)>;

/// Runs named actors exactly once in the cluster and gives callers a proxy to reach them.
///
/// The contract is the cluster's (DESIGN.md): a singleton runs on the oldest up member, hands
/// over when that member leaves and is taken over when it is downed, never two at once; callers
/// talk to the proxy, which buffers while the singleton starts, moves or restarts. With one node
/// (this build) the oldest member is this node: the manager runs the singleton here and restarts
/// it after `restart_delay` if it fails.
class singleton_manager {
public:
  explicit singleton_manager(caf::actor_system& sys,
                             std::chrono::milliseconds restart_delay = std::chrono::seconds(1));
  ~singleton_manager();
  singleton_manager(const singleton_manager&) = delete;
  singleton_manager& operator=(const singleton_manager&) = delete;

  /// Starts singleton `name` made by `factory` and returns its proxy. The proxy forwards every
  /// message (requests keep their reply path) to the current instance and parks messages while
  /// there is none. A request that reaches an instance in the instant it fails gets an error
  /// (as any request to a failing actor): callers retry, as they must across nodes anyway.
  caf::actor start(const std::string& name, singleton_factory factory);

  /// Stops every singleton and proxy this manager started.
  void stop_all();

private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

} // namespace kontor::singleton

#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <string>

#include <caf/actor.hpp>
#include <caf/fwd.hpp>

namespace kontor::singleton {

/// Makes the singleton's actor on the node that is to run it.
using singleton_factory = std::function<caf::actor(caf::actor_system&)>;

/// Settings of a node's singleton manager.
struct singleton_settings {
  /// Whether the node is in a cluster: then attach() gives the manager the cluster daemon,
  /// whose cluster_state decides where singletons run, and nothing runs before. Otherwise the
  /// node runs every singleton itself.
  bool clustered = false;
  std::chrono::milliseconds restart_delay{std::chrono::seconds(1)}; ///< after an instance failed
  std::size_t buffer = 1000;                           ///< messages a proxy holds while none runs
  std::chrono::milliseconds buffer_timeout{std::chrono::seconds(10)}; ///< longest a message waits
};

/// Runs named actors exactly once in the cluster and gives callers a proxy to reach them.
///
/// A singleton runs on the oldest up member. When that member leaves, its manager stops the
/// instance and tells the next oldest, which starts it at once; when it crashes, the next oldest
/// starts it only once the old member is down (or removed) — never two at once. Every node has a
/// proxy per singleton that finds the instance through the manager of the node that should run
/// it (its own direct connection; no handles relayed by a third node), forwards every message
/// (requests keep their reply path), and holds messages while the singleton starts, moves or
/// restarts — at most `buffer` of them, none longer than `buffer_timeout`; past that, a request
/// gets an error at once.
class singleton_manager {
public:
  singleton_manager(caf::actor_system& sys, singleton_settings settings);
  /// A node on its own (no cluster): every singleton runs here.
  explicit singleton_manager(caf::actor_system& sys,
                             std::chrono::milliseconds restart_delay = std::chrono::seconds(1));
  ~singleton_manager();
  singleton_manager(const singleton_manager&) = delete;
  singleton_manager& operator=(const singleton_manager&) = delete;

  /// Registers singleton `name` made by `factory` and returns this node's proxy for it.
  caf::actor start(const std::string& name, singleton_factory factory);

  /// The manager actor: offer it to the other nodes as the service "singletons".
  const caf::actor& manager() const noexcept;

  /// Connects the manager and every proxy to this node's cluster daemon (kontor::cluster),
  /// once it exists (it needs manager() among its services first).
  void attach(const caf::actor& cluster_daemon);

  /// How many singleton instances run on this node now (a leaving node waits for 0).
  std::size_t running_here() const;

  /// Stops every singleton and proxy this manager started.
  void stop_all();

private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

} // namespace kontor::singleton

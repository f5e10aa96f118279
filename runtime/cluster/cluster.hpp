#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <caf/actor.hpp>
#include <caf/fwd.hpp>

#include "runtime/cluster/front_door.hpp"
#include "runtime/cluster/member.hpp"
#include "runtime/cluster/phi_detector.hpp"
#include "runtime/cluster/tls.hpp"
#include "runtime/core/expected.hpp"

namespace kontor::cluster {

/// Exit codes a cluster node ends with when the cluster, not an operator, stopped it.
enum class exit_code : int {
  graceful = 0,   ///< left the cluster after SIGTERM
  refused = 2,    ///< its join was refused (other secret, shard count, protocol)
  fenced = 3,     ///< downed, replaced by a newer incarnation, or on the minority side
};

/// Why the cluster could not start (a message naming the file or address).
struct cluster_error {
  std::string message;
};

/// Everything the cluster daemon needs.
struct cluster_settings {
  std::filesystem::path data_dir;          ///< holds node-id
  std::string node_name;
  std::uint16_t port = 0;                  ///< 0: a single node, no cluster port
  std::string bind_address = "0.0.0.0";
  std::string advertise_address;           ///< host other nodes reach this one at
  std::vector<std::string> seeds;          ///< host:port; a host may resolve to several addresses
  std::string secret;
  std::uint32_t number_of_shards = 64;
  phi_settings failure_detector;
  std::chrono::milliseconds stable_after{3000};
  std::chrono::milliseconds seed_timeout{5000};
  /// The first seed forms a new cluster only when the seeds expand to at least this many
  /// addresses (its own included): on Kubernetes, the replica count, so that a pod that sees too
  /// few of the others in DNS yet cannot start a cluster of its own. 0: no such condition.
  std::size_t required_contact_points = 0;
  /// The cluster port's TLS files (all empty: plaintext). With them, every connection between
  /// members is mutually authenticated TLS 1.3 against the cluster's CA.
  tls_settings tls;
  /// Loaded from `tls` by start() (set: TLS on).
  std::shared_ptr<const tls_context> tls_loaded;
  /// The actors this node offers to the others, by name (published with its membership).
  service_map services;
  /// The daemon decided this node must stop (downed, minority, refused, left): called once,
  /// from the daemon's thread; the node then shuts down and exits with `code`.
  std::function<void(exit_code code, const std::string& why)> on_exit;
};

/// This node's membership in the cluster: a cluster daemon (an actor on its own thread)
/// published on the cluster port, which joins through the seeds, keeps a full mesh of direct
/// connections to every member, detects failures with heartbeats and a phi-accrual detector,
/// downs by keep-majority, and hands every local subscriber each new cluster_state.
///
/// The protocol (see README "Cluster"): the leader — the oldest up member a node can reach — is
/// the only one that changes the membership view (joining → up, leaving → exiting → removed,
/// down); it broadcasts each new version to every member, and heartbeats carry each node's
/// version, so a node that missed one fetches it from any peer. A node that applies a view in
/// which it is down, removed or replaced exits.
class cluster {
public:
  /// Creates the node id in the data dir if needed, publishes the daemon on the cluster port
  /// (when there is one) and starts joining. Fails when the port cannot be bound.
  static kontor::expected<std::unique_ptr<cluster>, cluster_error> start(caf::actor_system& sys,
                                                                        cluster_settings settings);
  ~cluster();
  cluster(const cluster&) = delete;
  cluster& operator=(const cluster&) = delete;

  /// What this node knows of the cluster now (thread-safe copy).
  cluster_state state() const;
  /// This node's id.
  const node_id& self() const noexcept { return self_; }
  /// The cluster port actually bound (0 for a single node).
  std::uint16_t port() const noexcept { return port_; }
  /// The daemon (subscribe with (subscribe_atom, actor)).
  const caf::actor& daemon() const noexcept { return daemon_; }

  /// Starts a graceful leave: this member becomes `leaving`; shards and singletons move away.
  void leave();
  /// The leaving member has handed everything over: it becomes `exiting`, then `removed`, and
  /// on_exit(graceful) is called.
  void ready_to_exit();

  /// Stops the daemon (no more heartbeats; the others notice).
  void stop();

private:
  struct shared;
  cluster() = default;
  node_id self_;
  std::uint16_t port_ = 0;
  caf::actor daemon_;
  std::shared_ptr<shared> shared_;
  std::unique_ptr<front_door> door_;
};

/// Reads the node id from `data_dir`/node-id, creating it (32 random hex digits, written
/// atomically) on first start.
kontor::expected<node_id, cluster_error> load_or_create_node_id(const std::filesystem::path& data_dir);

} // namespace kontor::cluster

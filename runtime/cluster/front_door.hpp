#pragma once

// The cluster port's front door: it accepts connections itself and hands to CAF's BASP broker
// only those that open with a BASP client handshake (with cluster TLS: a TLS handshake with a
// certificate of the cluster's CA, then a BASP client handshake inside). Anything else (random
// bytes, HTTP, a TLS hello on a plaintext port or a plaintext peer on a TLS one, a failed TLS
// handshake, a peer that sends nothing) is logged with its address and the reason, and dropped;
// CAF never sees it. CAF 0.17.6 drops such connections too, but silently (its logging is compiled out), so a
// misconfigured client or a scan of the port would leave no trace.
//
// A CAF 0.17.6 client writes its handshake as soon as it is connected (before the server's),
// so the first bytes decide. They are only peeked, never consumed: the accepted socket goes to
// CAF untouched, as if CAF's own acceptor had taken it.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>

#include <caf/actor.hpp>
#include <caf/actor_system.hpp>

#include "runtime/cluster/tls.hpp"
#include "runtime/core/expected.hpp"

namespace kontor::cluster {

struct front_door_settings {
  std::string bind_address = "0.0.0.0";
  std::uint16_t port = 0;                             ///< 0: any free port
  std::chrono::milliseconds handshake_timeout{10'000}; ///< to send the first 32 bytes
  std::size_t max_pending = 64;                        ///< connections still to show a handshake
  /// Set: the port speaks only TLS (a peer shakes hands with a certificate the cluster's CA
  /// signed, then sends its BASP handshake inside); a plaintext peer is dropped, saying why.
  std::shared_ptr<const tls_context> tls;
};

class front_door {
public:
  /// Binds the port and starts the front door's thread; `published` answers remote_actor()
  /// on this port. Fails with a message when the port cannot be bound.
  static kontor::expected<std::unique_ptr<front_door>, std::string>
  open(caf::actor_system& sys, caf::actor published, front_door_settings settings);

  /// Stops accepting and closes the connections not yet handed over (those handed over belong
  /// to CAF). Call before the actor system shuts down.
  ~front_door();
  front_door(const front_door&) = delete;
  front_door& operator=(const front_door&) = delete;

  /// The port actually bound.
  std::uint16_t port() const noexcept { return port_; }
  /// Connections dropped so far (not a cluster peer, or silent until the deadline).
  std::uint64_t dropped() const noexcept { return dropped_.load(std::memory_order_relaxed); }
  /// Connections handed to CAF so far.
  std::uint64_t admitted() const noexcept { return admitted_.load(std::memory_order_relaxed); }

private:
  front_door() = default;
  void run();

  caf::actor_system* sys_ = nullptr;
  caf::actor published_;
  caf::actor basp_;
  front_door_settings settings_;
  int listener_ = -1;
  int wakeup_ = -1; ///< eventfd: the destructor's stop signal
  std::uint16_t port_ = 0;
  std::atomic<std::uint64_t> dropped_{0};
  std::atomic<std::uint64_t> admitted_{0};
  std::thread thread_;
};

} // namespace kontor::cluster

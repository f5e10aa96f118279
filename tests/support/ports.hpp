#pragma once

#include <cstddef>
#include <string>
#include <vector>

namespace kontor::test {

/// TCP ports for nodes' fixed ports (the cluster port, which cannot be 0: cluster-port 0 means
/// "no cluster"), held until the reservation is destroyed. Binding to port 0 and closing is
/// racy: the kernel may hand the port to anyone next. So the ports come from outside the
/// kernel's ephemeral range (/proc/sys/net/ipv4/ip_local_port_range; the kernel never picks
/// those for port-0 binds or outgoing connections), each is locked across test processes with
/// flock on /tmp/kontor-test-ports/<port>.lock (the kernel drops the lock when the holder dies),
/// and each was free on 127.0.0.1 (bind without SO_REUSEADDR) when reserved. What remains is a
/// program outside the tests listening on a fixed port there, which a node then reports at start.
class port_reservation {
public:
  /// Reserves `count` ports. Throws std::runtime_error when not enough are free.
  explicit port_reservation(std::size_t count);
  /// Releases the ports.
  ~port_reservation();
  port_reservation(const port_reservation&) = delete;
  port_reservation& operator=(const port_reservation&) = delete;

  /// The reserved ports, distinct.
  const std::vector<unsigned short>& ports() const noexcept { return ports_; }
  /// Port i.
  unsigned short operator[](std::size_t i) const { return ports_.at(i); }

  /// The ports candidates are taken from: [first, last], outside the ephemeral range.
  static std::pair<unsigned short, unsigned short> candidate_range();

private:
  std::vector<unsigned short> ports_;
  std::vector<int> lock_fds_;
};

} // namespace kontor::test

#pragma once

#include <cstddef>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

#include "tests/support/child_process.hpp"

namespace kontor::test {

/// A network of Linux network namespaces for partition tests (needs root and iproute2's `ip`).
/// Node i (0-based) lives in namespace kns<id>-<i+1> with address 10.77.<id>.<i+1>/24 on a veth
/// pair whose root end kv<id>-<i+1> is a port of bridge kbr<id>; the root namespace is
/// 10.77.<id>.254 on that bridge, so the test process reaches every node. The namespaces have no
/// other route: no traffic leaves 10.77.<id>.0/24.
///
/// Faults: cut() takes a node's veth down (it reaches nobody, nobody reaches it); partition()
/// moves each group's veths onto a bridge of its own, so links inside a group keep working while
/// nothing crosses groups; the root namespace keeps reaching every node (group g's bridge has the
/// root address 10.77.<id>.<254-g>/32 and a /32 route per node of the group). Every bridge has a
/// fixed MAC address, a moved node's neighbour cache is flushed, and heal() removes the group
/// bridges: after it the network is as it was built.
///
/// Ownership: a lab holds the lock file /run/kontor-lab/<id>.lock (flock) while it lives, and the
/// kernel drops the lock when its process dies however it dies. The destructor removes everything
/// the lab made; the constructor first removes the objects of every lab whose lock is free (a
/// crashed run), then claims a free id.
class netns_lab {
public:
  /// Why no lab can be built here ("" when it can): it needs root and the `ip` program.
  static std::string unavailable_reason();

  /// Removes the namespaces, veths and bridges of every lab whose owner process is gone; returns
  /// the names it removed. Labs that live (in this process or another) are left alone.
  static std::vector<std::string> sweep_stale();

  /// Whether a live lab (of this process or another) holds id `id`.
  static bool in_use(int id);

  /// The names of lab `id`'s namespaces and links that exist now (kns<id>-*, kv<id>-*, kbr<id>*).
  static std::vector<std::string> objects_of(int id);

  /// Sweeps stale labs, claims an id and builds `nodes` (1..200) namespaces, all connected.
  /// Throws std::runtime_error with the failing `ip` command's output after removing what it built.
  explicit netns_lab(std::size_t nodes);
  /// Kills whatever still runs in the lab's namespaces, then removes namespaces, veths, bridges.
  ~netns_lab();
  netns_lab(const netns_lab&) = delete;
  netns_lab& operator=(const netns_lab&) = delete;

  /// The lab's id (1..254): the third octet of its addresses.
  int id() const noexcept { return id_; }
  /// The number of nodes.
  std::size_t size() const noexcept { return size_; }
  /// Node i's address, 10.77.<id>.<i+1>.
  std::string address(std::size_t i) const;
  /// The root namespace's address on the main bridge, 10.77.<id>.254.
  std::string root_address() const;
  /// Node i's namespace name (under /run/netns), kns<id>-<i+1>.
  std::string namespace_name(std::size_t i) const;
  /// The root end of node i's veth pair, kv<id>-<i+1>.
  std::string veth(std::size_t i) const;
  /// The main bridge, kbr<id>.
  std::string bridge() const;
  /// The main bridge's MAC address (fixed: 02:6b:<id>:00:00:00).
  std::string bridge_mac() const { return group_bridge_mac(0); }
  /// Node i's neighbour cache: address → MAC, for the entries that have one.
  std::map<std::string, std::string> neighbours(std::size_t i) const;

  /// Cuts node i off: its veth goes down (nothing in or out, the root namespace included).
  void cut(std::size_t i);
  /// Undoes cut(i).
  void restore(std::size_t i);
  /// Whether node i is cut off.
  bool is_cut(std::size_t i) const { return cut_.at(i); }

  /// Splits the nodes into groups: nodes of one group reach each other, no packet crosses groups.
  /// Every node must be in exactly one group (std::invalid_argument otherwise). Cut nodes stay
  /// cut. Replaces the previous partition.
  void partition(const std::vector<std::vector<std::size_t>>& groups);
  /// Two sides: partition({side_a, side_b}).
  void partition(const std::vector<std::size_t>& side_a, const std::vector<std::size_t>& side_b) {
    partition(std::vector<std::vector<std::size_t>>{side_a, side_b});
  }
  /// Every node on the main bridge and no node cut: all reach all again.
  void heal();
  /// The lab's network state for a failure report: links with their MACs and bridges, routes,
  /// neighbour caches and the bridges' forwarding tables of the root namespace, and each
  /// namespace's addresses, neighbours and TCP sockets.
  std::string describe() const;
  /// The group node i is in (0: the main bridge).
  std::size_t group_of(std::size_t i) const { return group_.at(i); }

  /// The lab's stand-in for DNS: writes `hosts` to /etc/netns/<ns>/hosts for every node's
  /// namespace, and spawn() then starts processes through `ip netns exec`, which bind-mounts that
  /// file over /etc/hosts for them (a name on several lines resolves to all its addresses). The
  /// files go with the lab (and with a stale lab's sweep).
  void set_hosts(const std::string& hosts);

  /// Starts `spec` inside node i's network namespace (through `ip netns exec` after set_hosts()).
  std::unique_ptr<child_process> spawn(std::size_t i, spawn_spec spec) const;

  /// Runs `f` on a new thread inside node i's network namespace and returns its result
  /// (an exception is rethrown here). Sockets `f` opens belong to that namespace. No Catch2
  /// assertions inside `f` (Catch2 v2 is not thread-safe): return what to assert.
  template <class F>
  auto in_namespace(std::size_t i, F&& f) const -> std::invoke_result_t<F&> {
    using result = std::invoke_result_t<F&>;
    if constexpr (std::is_void_v<result>) {
      run_in(i, [&] { f(); });
    } else {
      std::optional<result> out;
      run_in(i, [&] { out.emplace(f()); });
      return std::move(*out);
    }
  }

private:
  void run_in(std::size_t i, const std::function<void()>& f) const;
  void build();
  void teardown() noexcept;
  std::string group_bridge(std::size_t g) const;
  std::string group_root_address(std::size_t g) const;
  std::string group_bridge_mac(std::size_t g) const;
  void check_node(std::size_t i) const;

  int id_ = 0;
  int lock_fd_ = -1;
  std::size_t size_ = 0;
  std::size_t bridges_ = 1;  ///< group bridges made so far (the main one included)
  bool hosts_ = false;       ///< set_hosts() was called: spawn through `ip netns exec`
  std::vector<bool> cut_;
  std::vector<std::size_t> group_;
};

} // namespace kontor::test

#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstddef>
#include <functional>
#include <iosfwd>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <boost/json/fwd.hpp>

#include "tests/support/child_process.hpp"
#include "tests/support/cluster_views.hpp"
#include "tests/support/http_client.hpp"
#include "tests/support/load.hpp"
#include "tests/support/ports.hpp"
#include "tests/support/temp_dir.hpp"

namespace kontor::test {

class netns_lab;

/// The outcome of a wait on nodes' answers: whether the condition held before the deadline, and
/// what each node answered last. `REQUIRE(cluster.wait_...())` prints the report when it fails.
struct wait_outcome {
  bool ok = false;
  std::string report;
  explicit operator bool() const noexcept { return ok; }
};

/// Prints the report (Catch2 uses it to show a failed wait).
std::ostream& operator<<(std::ostream& os, const wait_outcome& w);

/// The port in kontor-node's "ready: HTTP on ADDRESS:PORT" log line; 0 while it is not logged.
unsigned short logged_http_port(const std::string& log);

/// Which cluster addresses a node gets as --seeds.
enum class seed_list {
  all,   ///< every node's, in node order, the same list on every node: node 0 is the first seed
  others ///< every node's but its own
};

/// A node's whole command line, when the test gives it (cluster_options::launch).
struct node_launch {
  std::vector<std::string> args; ///< every argument after the program
  std::vector<std::string> env;  ///< "NAME=value"
};

/// How a test_cluster starts its nodes.
struct cluster_options {
  std::size_t nodes = 3;
  /// false: no cluster flags at all (single nodes; the only kind today's kontor-node runs).
  bool clustered = true;
  seed_list seeds = seed_list::all;
  std::string secret = "kontor-lab-secret";
  std::vector<std::string> args = {}; ///< more command-line arguments for every node (they come last)
  std::vector<std::string> env = {}; ///< "NAME=value" for every node
  /// When set, node i runs in the lab's namespace i, HTTP and cluster port on lab->address(i),
  /// so lab->cut()/partition() cut its traffic. The lab must outlive the cluster.
  netns_lab* lab = nullptr;
  /// The cluster port in a lab (each namespace has its own ports, so one fixed port for all).
  unsigned short lab_cluster_port = 7355;
  std::chrono::milliseconds ready_timeout = std::chrono::seconds(30);
  /// Node names; empty: default_name(i).
  std::vector<std::string> names = {};
  /// When set, node i is started with exactly these arguments and environment instead of the
  /// cluster's flags (args, env and node_args are not used): for a deployment's own command line.
  /// `dir` is node i's directory, kept for the cluster's life. The node must log its HTTP port
  /// and listen on host(i) (its lab address, or 0.0.0.0); in a lab its cluster port is
  /// lab_cluster_port.
  std::function<node_launch(std::size_t i, const std::string& dir)> launch = {};
};

/// Several kontor-node processes for cluster tests, on 127.0.0.1 (or in a netns_lab). Node i is
/// named alpha, beta, gamma, …; it has its own data dir, an HTTP port the kernel picks (read from
/// its "ready: HTTP on ADDR:PORT" log line) and a cluster port reserved for the cluster's life
/// (see port_reservation; cluster-port 0 cannot be used: it means "no cluster"). Every node
/// started is killed by the destructor, and dies with the test process (child_process).
/// Node-control functions are for the test's main thread; load() and the waits may overlap them.
class test_cluster {
public:
  /// Prepares the nodes' directories and ports; starts nothing (call start_all()).
  explicit test_cluster(cluster_options options = {});
  /// SIGKILLs every node that runs (frozen ones too) and removes the directories.
  ~test_cluster();
  test_cluster(const test_cluster&) = delete;
  test_cluster& operator=(const test_cluster&) = delete;

  /// alpha, beta, gamma, … (the Greek alphabet), then node-25, node-26, …
  static std::string default_name(std::size_t i);

  /// The number of nodes.
  std::size_t size() const noexcept { return nodes_.size(); }
  /// Node i's name (its --node-name).
  const std::string& name(std::size_t i) const { return node(i).name; }
  /// The index of the node named `name` (std::out_of_range when none).
  std::size_t index_of(const std::string& name) const;
  /// The address node i's HTTP and cluster ports listen on (127.0.0.1 or its lab address).
  const std::string& host(std::size_t i) const { return node(i).host; }
  /// Node i's HTTP port of its current (or last) start; 0 until it logged it.
  unsigned short http_port(std::size_t i) const { return node(i).http_port; }
  /// host:port the other nodes reach node i's cluster port at.
  std::string cluster_address(std::size_t i) const;
  /// Node i's data directory (the same for every start).
  std::string data_dir(std::size_t i) const;
  /// The arguments node i's next start gets (without the program).
  std::vector<std::string> command_line(std::size_t i) const;
  /// Extra arguments for node i alone, appended to its next starts (after options.args). A
  /// --cluster-secret among them replaces the cluster's secret for that node.
  std::vector<std::string>& node_args(std::size_t i) { return node(i).extra_args; }

  /// Starts node i (it must not run), without waiting for it.
  void start(std::size_t i);
  /// Waits until node i logged its HTTP port and answers GET /health with 200.
  wait_outcome wait_http(std::size_t i, std::chrono::milliseconds timeout);
  /// Waits until node i answers GET /ready with 200 (after wait_http).
  wait_outcome wait_ready(std::size_t i, std::chrono::milliseconds timeout);
  /// Starts every node that does not run, then waits until each is ready (options.ready_timeout).
  /// Throws std::runtime_error with describe() when one does not become ready.
  void start_all();
  /// Stops node i (SIGTERM) when it runs, starts it again on its data dir and waits until it is
  /// ready; throws like start_all().
  void restart(std::size_t i);
  /// SIGTERM to node i, waits for its exit: the exit code (-1 when it had to be killed).
  int stop(std::size_t i, std::chrono::milliseconds timeout = std::chrono::seconds(20));
  /// SIGKILL to node i and reap it: a crash.
  void kill(std::size_t i);
  /// SIGSTOP to node i: it keeps its sockets, answers nothing (a long GC pause, a hung VM).
  void freeze(std::size_t i);
  /// SIGCONT to node i after freeze().
  void thaw(std::size_t i);
  /// Whether node i's process runs (frozen included); reaps it when it exited.
  bool running(std::size_t i);
  /// Whether node i is frozen.
  bool frozen(std::size_t i) const;
  /// Node i's process id (-1 before its first start; after an exit it may name another process).
  pid_t pid(std::size_t i) const;
  /// Node i's exit code once it exited by itself (128 + signal for a signal).
  std::optional<int> exit_code(std::size_t i) const;
  /// The nodes that run and are not frozen.
  std::vector<std::size_t> live();
  /// Node i's log of its current (or last) start.
  std::string log(std::size_t i) const;
  /// Per node: name, state, pid, addresses and the last lines of its log (for failure messages).
  std::string describe();

  /// One request to node i on a fresh connection, one attempt, `timeout_ms` for each step.
  http_result request(std::size_t i, const std::string& method, const std::string& target,
                      const std::string& body = {}, int timeout_ms = 5000);
  /// GET on a fresh connection (see request()).
  http_result get(std::size_t i, const std::string& target, int timeout_ms = 5000) {
    return request(i, "GET", target, {}, timeout_ms);
  }
  /// A keep-alive client of node i's current HTTP port.
  std::unique_ptr<http_client> client(std::size_t i, int timeout_ms = 10000) const;
  /// Node i's HTTP endpoint (its current port).
  endpoint http_endpoint(std::size_t i) const;

  /// Per-node predicate over the JSON of a 200 answer.
  using json_predicate = std::function<bool(std::size_t node, const boost::json::value& body)>;
  /// Polls GET `target` on `nodes` until every one answers 200 with JSON for which `pred` holds
  /// in the same round, or `timeout` passes. Each request waits at most 1 s.
  wait_outcome wait_all(const std::vector<std::size_t>& nodes, const std::string& target,
                        const json_predicate& pred,
                        std::chrono::milliseconds timeout = std::chrono::seconds(20));
  /// wait_all over the live() nodes at the time of the call.
  wait_outcome wait_all(const std::string& target, const json_predicate& pred,
                        std::chrono::milliseconds timeout = std::chrono::seconds(20));
  /// Like wait_all, with one predicate over all the nodes' answers of one round (in `nodes`
  /// order): for agreement between nodes.
  wait_outcome wait_joint(const std::vector<std::size_t>& nodes, const std::string& target,
                          const std::function<bool(const std::vector<boost::json::value>&)>& pred,
                          std::chrono::milliseconds timeout = std::chrono::seconds(20));

  /// Node i's GET /cluster/members, nullopt when it does not answer 200 with that JSON.
  std::optional<members_view> members(std::size_t i, int timeout_ms = 5000);
  /// Node i's GET /cluster/shards, nullopt when it does not answer 200 with that JSON.
  std::optional<shards_view> shards(std::size_t i, int timeout_ms = 5000);

  /// Waits until each of `observers` answers /cluster/members for which `pred` holds.
  wait_outcome wait_members(const std::vector<std::size_t>& observers,
                            const std::function<bool(const members_view&)>& pred,
                            std::chrono::milliseconds timeout = std::chrono::seconds(20));
  /// Waits until every live node sees exactly `n` members up and reachable, and no member up but
  /// unreachable.
  wait_outcome wait_members_up(std::size_t n, std::chrono::milliseconds timeout = std::chrono::seconds(20));
  /// Waits until each of `observers` sees exactly the nodes `up` (by name) up and reachable, and
  /// no other member up (the others down, removed, leaving … or gone from the list).
  wait_outcome wait_members_up(const std::vector<std::size_t>& observers,
                               const std::vector<std::size_t>& up,
                               std::chrono::milliseconds timeout = std::chrono::seconds(20));
  /// Waits until all of `observers` name the same leader, one they all see up and reachable.
  wait_outcome wait_leader_agreed(const std::vector<std::size_t>& observers,
                                  std::chrono::milliseconds timeout = std::chrono::seconds(20));
  /// Waits until each of `observers` lists at least one shard and every shard allocated to a
  /// node of this cluster.
  wait_outcome wait_shards_allocated(const std::vector<std::size_t>& observers,
                                     std::chrono::milliseconds timeout = std::chrono::seconds(20));

  /// spread_load over every node's current HTTP endpoint (a node that is down answers nothing:
  /// its share counts as transport errors).
  load_result load(std::size_t count, std::size_t threads,
                   const std::function<load_request(std::size_t i)>& make,
                   const std::function<void(std::size_t i, const load_request&, const http_result&)>&
                     observe = {},
                   int timeout_ms = 5000) const;

private:
  struct node_state {
    std::string name;
    std::string host;
    unsigned short cluster_port = 0;
    unsigned short http_port = 0;
    std::vector<std::string> extra_args;
    std::unique_ptr<child_process> process;
    int starts = 0;
  };

  node_state& node(std::size_t i);
  const node_state& node(std::size_t i) const;
  std::string node_dir(std::size_t i) const;
  void wait_started_or_throw(std::size_t i);

  cluster_options options_;
  temp_dir dir_{"kontor-cluster"};
  std::unique_ptr<port_reservation> ports_;
  std::vector<node_state> nodes_;
};

} // namespace kontor::test

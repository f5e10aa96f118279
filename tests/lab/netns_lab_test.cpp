// The network-namespace lab with real kontor-node processes: reachability across namespaces, a
// node cut off and restored, partitions whose sides keep their inner links, and cleanup (also of
// a run that crashed). Registered only when the process runs as root and `ip` exists: these tests
// cannot pass elsewhere, and a test that skips itself but reports success would prove nothing.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <future>
#include <iostream>

#include <catch2/catch.hpp>

#include "tests/support/cluster.hpp"
#include "tests/support/command.hpp"
#include "tests/support/netns_lab.hpp"
#include "tests/support/node_process.hpp"
#include "tests/support/temp_dir.hpp"
#include "tests/support/wait.hpp"

using namespace kontor::test;
using namespace std::chrono_literals;

namespace {

/// How long one probe waits: a dropped SYN is an unreachable node.
constexpr int probe_timeout_ms = 300;

/// GET /health at host:port, one attempt from the calling thread's namespace: the status, 0 for
/// no answer.
int health(const std::string& host, unsigned short port) {
  http_client c{host, port, probe_timeout_ms};
  return c.raw("GET /health HTTP/1.1\r\nHost: " + host + "\r\n\r\n").status;
}

/// Whether process `pid` runs in the network namespace `name` (under /run/netns).
bool in_netns(pid_t pid, const std::string& name) {
  struct stat of_process {};
  struct stat of_name {};
  return ::stat(("/proc/" + std::to_string(pid) + "/ns/net").c_str(), &of_process) == 0
         && ::stat(("/run/netns/" + name).c_str(), &of_name) == 0 && of_process.st_ino == of_name.st_ino
         && of_process.st_dev == of_name.st_dev;
}

/// reach[s][d]: whether node s's namespace gets an answer from node d's /health (probed in
/// parallel, so unreachable pairs cost one probe timeout in all).
std::vector<std::vector<bool>> reach_matrix(netns_lab& lab, test_cluster& cluster) {
  auto n = cluster.size();
  std::vector<std::vector<std::future<int>>> probes(n);
  for (std::size_t s = 0; s < n; ++s)
    for (std::size_t d = 0; d < n; ++d)
      probes[s].push_back(std::async(std::launch::async, [&lab, &cluster, s, d] {
        return lab.in_namespace(s, [&] { return health(cluster.host(d), cluster.http_port(d)); });
      }));
  std::vector<std::vector<bool>> reach(n, std::vector<bool>(n));
  for (std::size_t s = 0; s < n; ++s)
    for (std::size_t d = 0; d < n; ++d)
      reach[s][d] = probes[s][d].get() == 200;
  return reach;
}

/// The matrix of a partition: s reaches d when both are in the same group and neither is cut
/// off; a node always reaches itself (inside its own namespace).
std::vector<std::vector<bool>> expected_reach(const netns_lab& lab, std::size_t n) {
  std::vector<std::vector<bool>> reach(n, std::vector<bool>(n));
  for (std::size_t s = 0; s < n; ++s)
    for (std::size_t d = 0; d < n; ++d)
      reach[s][d] = s == d || (lab.group_of(s) == lab.group_of(d) && !lab.is_cut(s) && !lab.is_cut(d));
  return reach;
}

std::string show(const std::vector<std::vector<bool>>& reach) {
  std::string s;
  for (auto& row : reach) {
    for (bool r : row)
      s += r ? " 1" : " .";
    s += "\n";
  }
  return s;
}

/// Waits until the reach matrix is the partition's (the report shows the last one seen).
wait_outcome reach_becomes_expected(netns_lab& lab, test_cluster& cluster) {
  auto expected = expected_reach(lab, cluster.size());
  wait_outcome out;
  out.ok = wait_until(
    [&] {
      auto reach = reach_matrix(lab, cluster);
      out.report = "reach[from][to] seen:\n" + show(reach) + "expected:\n" + show(expected);
      return reach == expected;
    },
    5s);
  if (!out.ok)
    out.report += cluster.describe();
  return out;
}

/// Waits until the root namespace reaches every node that is not cut off, and no cut one.
wait_outcome root_reaches_all_but_cut(netns_lab& lab, test_cluster& cluster) {
  wait_outcome out;
  out.ok = wait_until(
    [&] {
      bool ok = true;
      out.report.clear();
      for (std::size_t i = 0; i < cluster.size(); ++i) {
        auto status = health(cluster.host(i), cluster.http_port(i));
        out.report += "  root -> " + cluster.name(i) + (lab.is_cut(i) ? " (cut)" : "") + ": "
                      + std::to_string(status) + "\n";
        ok = ok && (status == 200) != lab.is_cut(i);
      }
      return ok;
    },
    5s);
  if (!out.ok)
    out.report += cluster.describe();
  return out;
}

void node_reachable_from_root_and_namespaces_cut_and_restored() {
  int id = 0;
  {
    netns_lab lab{2};
    id = lab.id();
    CHECK(lab.address(0) == "10.77." + std::to_string(id) + ".1");
    CHECK(lab.namespace_name(1) == "kns" + std::to_string(id) + "-2");
    CHECK(netns_lab::objects_of(id)
          == std::vector<std::string>{"kbr" + std::to_string(id), "kns" + std::to_string(id) + "-1",
                                      "kns" + std::to_string(id) + "-2", "kv" + std::to_string(id) + "-1",
                                      "kv" + std::to_string(id) + "-2"});
    temp_dir dir{"kontor-lab-netns"};
    auto node = lab.spawn(0, {{node_binary(), "--node-name", "in-ns", "--data-dir", dir.str() + "/data",
                               "--http-address", lab.address(0), "--http-port", "0"},
                              dir.str() + "/node.log", {}, dir.str(), {}});
    unsigned short port = 0;
    wait_until(
      [&] {
        port = logged_http_port(node->log());
        return port != 0 || !node->running();
      },
      20s);
    INFO(node->log());
    REQUIRE(port != 0);
    CHECK(in_netns(node->pid(), lab.namespace_name(0)));
    CHECK_FALSE(in_netns(::getpid(), lab.namespace_name(0)));

    auto from_root = [&] { return health(lab.address(0), port); };
    auto from_ns1 = [&] { return lab.in_namespace(1, [&] { return health(lab.address(0), port); }); };
    CHECK(wait_until([&] { return from_root() == 200; }, 5s));
    CHECK(from_ns1() == 200);

    lab.cut(0);
    CHECK(lab.is_cut(0));
    CHECK(wait_until([&] { return from_root() == 0 && from_ns1() == 0; }, 5s));
    CHECK(node->running()); // cut off, not dead
    // From inside its own namespace the node still answers: only its link is down.
    CHECK(lab.in_namespace(0, [&] { return health(lab.address(0), port); }) == 200);

    lab.restore(0);
    CHECK_FALSE(lab.is_cut(0));
    CHECK(wait_until([&] { return from_root() == 200 && from_ns1() == 200; }, 5s));
  }
  CHECK(netns_lab::objects_of(id).empty());
}

void partitions_keep_links_inside_each_side() {
  int id = 0;
  {
    netns_lab lab{3};
    id = lab.id();
    test_cluster cluster{{.nodes = 3, .clustered = false, .lab = &lab}};
    cluster.start_all();
    for (std::size_t i = 0; i < 3; ++i) {
      CHECK(cluster.host(i) == lab.address(i));
      CHECK(in_netns(cluster.pid(i), lab.namespace_name(i)));
    }
    CHECK(reach_becomes_expected(lab, cluster)); // all reach all

    // The two on the moved side (a bridge of their own) still reach each other.
    lab.partition({0}, {1, 2});
    CHECK(lab.group_of(1) == 1);
    CHECK(reach_becomes_expected(lab, cluster));
    CHECK(root_reaches_all_but_cut(lab, cluster));

    // Straight to another partition: node 1 moves back to the main bridge.
    lab.partition({0, 1}, {2});
    CHECK(reach_becomes_expected(lab, cluster));
    CHECK(root_reaches_all_but_cut(lab, cluster));

    // A cut inside a partition: node 2 reaches nobody, and nobody it.
    lab.cut(2);
    CHECK(reach_becomes_expected(lab, cluster));
    CHECK(root_reaches_all_but_cut(lab, cluster));

    // Three groups.
    lab.restore(2);
    lab.partition(std::vector<std::vector<std::size_t>>{{0}, {1}, {2}});
    CHECK(reach_becomes_expected(lab, cluster));
    CHECK(root_reaches_all_but_cut(lab, cluster));

    // A partition that misses a node or names one twice changes nothing.
    CHECK_THROWS_AS(lab.partition({0, 1}, {1, 2}), std::invalid_argument);
    CHECK_THROWS_AS(lab.partition({0}, {1}), std::invalid_argument);
    CHECK_THROWS_AS(lab.partition({0, 1}, {2, 3}), std::invalid_argument);
    CHECK(reach_becomes_expected(lab, cluster));

    lab.cut(1);
    lab.heal();
    CHECK_FALSE(lab.is_cut(1));
    CHECK(reach_becomes_expected(lab, cluster));
    CHECK(root_reaches_all_but_cut(lab, cluster));
    for (std::size_t i = 0; i < 3; ++i)
      CHECK(lab.group_of(i) == 0);
  }
  CHECK(netns_lab::objects_of(id).empty());
}

/// A TCP connection from the calling thread's namespace to host:port; whether it opened.
bool tcp_connects(const std::string& host, unsigned short port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return false;
  timeval tv{1, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  sockaddr_in to{};
  to.sin_family = AF_INET;
  to.sin_port = htons(port);
  ::inet_pton(AF_INET, host.c_str(), &to.sin_addr);
  bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&to), sizeof to) == 0;
  ::close(fd);
  return ok;
}

/// A node that talked to the root namespace's main address while it was on a side bridge (the
/// partition tests' load does, through connections opened before the cut) has the root's address
/// cached with a side bridge's MAC; after heal no bridge answers to that MAC, and the root got no
/// answer from the node until the entry expired (a heal that left two nodes deaf for 30 s).
/// After heal every node knows the root's address by the main bridge's MAC, or not at all.
void heal_leaves_no_stale_root_address() {
  netns_lab lab{3};
  test_cluster cluster{{.nodes = 3, .clustered = false, .lab = &lab}};
  cluster.start_all();
  int listener = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  REQUIRE(listener >= 0);
  sockaddr_in at{};
  at.sin_family = AF_INET;
  ::inet_pton(AF_INET, lab.root_address().c_str(), &at.sin_addr);
  REQUIRE(::bind(listener, reinterpret_cast<sockaddr*>(&at), sizeof at) == 0);
  REQUIRE(::listen(listener, 8) == 0);
  socklen_t len = sizeof at;
  REQUIRE(::getsockname(listener, reinterpret_cast<sockaddr*>(&at), &len) == 0);
  const auto port = ntohs(at.sin_port);

  lab.partition({0}, {1, 2});
  // Nodes 1 and 2 forget the root's address (as an entry expires under load) and ask for it on
  // their side bridge: the root answers there with that bridge's MAC.
  for (std::size_t i : {1u, 2u}) {
    auto flushed = run_command({"ip", "-n", lab.namespace_name(i), "neigh", "flush", "all"});
    INFO(flushed.err);
    REQUIRE(flushed.exit_code == 0);
    CHECK(lab.in_namespace(i, [&] { return tcp_connects(lab.root_address(), port); }));
    CHECK(lab.neighbours(i).count(lab.root_address()) == 1);
  }
  lab.heal();
  ::close(listener);
  for (std::size_t i = 0; i < 3; ++i) {
    auto cached = lab.neighbours(i);
    auto root = cached.find(lab.root_address());
    INFO(lab.describe());
    if (root != cached.end())
      CHECK(root->second == lab.bridge_mac());
  }
  CHECK(reach_becomes_expected(lab, cluster));
  CHECK(root_reaches_all_but_cut(lab, cluster));
}

void stale_labs_are_swept_live_ones_kept() {
  netns_lab live{1};
  auto live_objects = netns_lab::objects_of(live.id());
  REQUIRE(live_objects.size() == 3);

  // A test process that crashes with a lab: SIGKILL, no destructor runs. Before it dies it forks
  // a "lock holder" that inherits the lab's lock (flock belongs to the open file, which the fork
  // shares), so no lab of a test running in parallel sweeps the leftovers before we have looked.
  // The holder ends when this test closes `release` (or dies).
  int report[2], release[2];
  REQUIRE(::pipe(report) == 0);
  REQUIRE(::pipe(release) == 0);
  pid_t crashing = ::fork();
  REQUIRE(crashing >= 0);
  if (crashing == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    ::close(report[0]);
    ::close(release[1]);
    try {
      netns_lab doomed{2};
      if (::fork() == 0) { // the lock holder
        char byte;
        while (::read(release[0], &byte, 1) > 0) {
        }
        ::_exit(0);
      }
      int id = doomed.id();
      if (::write(report[1], &id, sizeof id) == sizeof id)
        ::raise(SIGKILL);
    } catch (...) {
    }
    ::_exit(1);
  }
  ::close(report[1]);
  ::close(release[0]);
  int crashed_id = 0;
  auto n = ::read(report[0], &crashed_id, sizeof crashed_id);
  ::close(report[0]);
  int status = 0;
  REQUIRE(::waitpid(crashing, &status, 0) == crashing);
  if (n != static_cast<ssize_t>(sizeof crashed_id) || !WIFSIGNALED(status))
    ::close(release[1]);
  REQUIRE(n == static_cast<ssize_t>(sizeof crashed_id));
  REQUIRE(WIFSIGNALED(status));
  auto prefix = std::to_string(crashed_id);
  std::vector<std::string> leftovers{"kbr" + prefix, "kns" + prefix + "-1", "kns" + prefix + "-2",
                                     "kv" + prefix + "-1", "kv" + prefix + "-2"};
  CHECK(netns_lab::objects_of(crashed_id) == leftovers);
  // While its lock is held, a lab is live whoever made it: the sweep leaves it.
  CHECK(netns_lab::in_use(crashed_id));
  netns_lab::sweep_stale();
  CHECK(netns_lab::objects_of(crashed_id) == leftovers);

  ::close(release[1]); // the holder ends: the lock is free, the lab is stale
  CHECK(wait_until(
    [&] { return !netns_lab::in_use(crashed_id) || netns_lab::objects_of(crashed_id).empty(); }, 5s));
  auto removed = netns_lab::sweep_stale();
  // Gone. (A lab of a test running in parallel may have swept them first and taken the id since.)
  CHECK((netns_lab::objects_of(crashed_id).empty() || netns_lab::in_use(crashed_id)));
  // The live lab of this process is not touched.
  CHECK(netns_lab::in_use(live.id()));
  CHECK(netns_lab::objects_of(live.id()) == live_objects);
  for (auto& name : live_objects)
    CHECK(std::find(removed.begin(), removed.end(), name) == removed.end());
}

/// `getent ahostsv4 NAME` run in node i's namespace: its output (the addresses NAME resolves to).
std::string resolved_in(const netns_lab& lab, std::size_t i, const std::string& name,
                        const temp_dir& dir) {
  spawn_spec spec;
  spec.argv = {"/usr/bin/getent", "ahostsv4", name};
  spec.log_path = (dir.path() / ("getent-" + std::to_string(i) + ".log")).string();
  auto p = lab.spawn(i, spec);
  auto code = p->wait_exit(10s);
  return (code ? "" : "(no exit) ") + p->log();
}

void hosts_file_is_each_namespaces_dns() {
  temp_dir dir{"kontor-lab-hosts"};
  std::string etc;
  {
    netns_lab lab{2};
    etc = "/etc/netns/" + lab.namespace_name(0);
    lab.set_hosts("127.0.0.1 localhost\n" + lab.address(0) + " svc node-a\n" + lab.address(1)
                  + " svc node-b\n");
    for (std::size_t i = 0; i < 2; ++i) {
      auto svc = resolved_in(lab, i, "svc", dir);
      INFO(svc);
      CHECK(svc.find(lab.address(0) + " ") != std::string::npos);
      CHECK(svc.find(lab.address(1) + " ") != std::string::npos);
      auto b = resolved_in(lab, i, "node-b", dir);
      INFO(b);
      CHECK(b.find(lab.address(1) + " ") != std::string::npos);
      CHECK(b.find(lab.address(0) + " ") == std::string::npos);
    }
    CHECK(::access((etc + "/hosts").c_str(), F_OK) == 0);
  }
  // The lab removed its namespaces' /etc files; the root namespace never saw the names.
  CHECK(::access(etc.c_str(), F_OK) != 0);
  CHECK(read_text_file("/etc/hosts").find(" node-b") == std::string::npos);
}

/// Registers the tests above when this machine can run them; says why not otherwise.
struct netns_registration {
  netns_registration() {
    auto why = netns_lab::unavailable_reason();
    if (!why.empty()) {
      std::cerr << "lab_tests: the network-namespace tests are not registered: " << why << "\n";
      return;
    }
    add(&node_reachable_from_root_and_namespaces_cut_and_restored,
        "netns_lab: a node in namespace 0 answers the root namespace and namespace 1, cut off and restored");
    add(&partitions_keep_links_inside_each_side,
        "netns_lab: partitions cut the links across sides and keep those inside, heal restores all");
    add(&heal_leaves_no_stale_root_address,
        "netns_lab: after heal no node knows the root address by a side bridge's MAC, and the "
        "root reaches every node");
    add(&stale_labs_are_swept_live_ones_kept,
        "netns_lab: the leftovers of a crashed run are swept, a live lab's are kept");
    add(&hosts_file_is_each_namespaces_dns,
        "netns_lab: set_hosts is the namespaces' /etc/hosts (a name on two lines resolves to "
        "both), gone with the lab");
  }

  static void add(void (*test)(), const char* name) {
    Catch::AutoReg registered{Catch::makeTestInvoker(test), CATCH_INTERNAL_LINEINFO, Catch::StringRef(),
                              Catch::NameAndTags{name, "[lab][netns]"}};
  }
} const registration;

} // namespace

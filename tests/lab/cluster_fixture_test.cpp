// test_cluster's process handling with real kontor-node processes (single nodes: today's
// kontor-node refuses cluster flags): names, data dirs, ports, kill, freeze, restart, and that no
// process outlives the fixture or the test process.

#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <fstream>
#include <set>

#include <catch2/catch.hpp>

#include "tests/support/cluster.hpp"
#include "tests/support/node_process.hpp"
#include "tests/support/wait.hpp"

using namespace kontor::test;
using namespace std::chrono_literals;

namespace {

/// kill(pid, 0) finds no such process.
bool no_such_process(pid_t pid) {
  errno = 0;
  return ::kill(pid, 0) == -1 && errno == ESRCH;
}

/// The state letter in /proc/<pid>/stat (R, S, T, Z, …).
char process_state(pid_t pid) {
  auto stat = read_text_file("/proc/" + std::to_string(pid) + "/stat");
  auto paren = stat.rfind(')');
  return paren == std::string::npos || paren + 2 >= stat.size() ? '?' : stat[paren + 2];
}

std::string value_after(const std::vector<std::string>& args, const std::string& flag) {
  for (std::size_t i = 0; i + 1 < args.size(); ++i)
    if (args[i] == flag)
      return args[i + 1];
  return {};
}

} // namespace

TEST_CASE("test_cluster starts nodes with their own names, data dirs and HTTP ports", "[lab][cluster]") {
  test_cluster cluster{{.nodes = 3, .clustered = false}};
  cluster.start_all();
  std::set<pid_t> pids;
  std::set<unsigned short> ports;
  std::set<std::string> dirs;
  std::vector<std::string> names;
  for (std::size_t i = 0; i < cluster.size(); ++i) {
    INFO(cluster.describe());
    REQUIRE(cluster.running(i));
    pids.insert(cluster.pid(i));
    ports.insert(cluster.http_port(i));
    dirs.insert(cluster.data_dir(i));
    names.push_back(cluster.name(i));
    CHECK(cluster.get(i, "/health").status == 200);
    CHECK(cluster.log(i).find(cluster.name(i) + " ready: HTTP on 127.0.0.1:"
                              + std::to_string(cluster.http_port(i)))
          != std::string::npos);
    CHECK(std::filesystem::is_directory(cluster.data_dir(i) + "/journal"));
  }
  CHECK(names == std::vector<std::string>{"alpha", "beta", "gamma"});
  CHECK(pids.size() == 3);
  CHECK(ports.size() == 3);
  CHECK(dirs.size() == 3);
  CHECK(cluster.live() == std::vector<std::size_t>{0, 1, 2});
  CHECK(cluster.index_of("gamma") == 2);
}

TEST_CASE("a clustered node's command line: its reserved cluster port, address, seeds and secret",
          "[lab][cluster]") {
  auto [first, last] = port_reservation::candidate_range();
  SECTION("seeds: every node, the same list everywhere") {
    test_cluster cluster{{.nodes = 3, .secret = "s3cret"}};
    std::set<std::string> seed_lists;
    std::set<unsigned short> ports;
    for (std::size_t i = 0; i < 3; ++i) {
      auto args = cluster.command_line(i);
      auto port = static_cast<unsigned short>(std::stoi(value_after(args, "--cluster-port")));
      CHECK(port >= first);
      CHECK(port <= last);
      ports.insert(port);
      CHECK(cluster.cluster_address(i) == "127.0.0.1:" + std::to_string(port));
      CHECK(value_after(args, "--node-name") == cluster.name(i));
      CHECK(value_after(args, "--cluster-bind-address") == "127.0.0.1");
      CHECK(value_after(args, "--cluster-advertise-address") == "127.0.0.1");
      CHECK(value_after(args, "--cluster-secret") == "s3cret");
      CHECK(value_after(args, "--data-dir") == cluster.data_dir(i));
      seed_lists.insert(value_after(args, "--seeds"));
    }
    CHECK(ports.size() == 3);
    REQUIRE(seed_lists.size() == 1);
    CHECK(*seed_lists.begin()
          == cluster.cluster_address(0) + "," + cluster.cluster_address(1) + ","
               + cluster.cluster_address(2));
  }
  SECTION("seeds: the others") {
    test_cluster cluster{{.nodes = 3, .seeds = seed_list::others}};
    CHECK(value_after(cluster.command_line(1), "--seeds")
          == cluster.cluster_address(0) + "," + cluster.cluster_address(2));
  }
  SECTION("extra arguments come last, per node after those for all") {
    test_cluster cluster{{.nodes = 2, .args = {"--stable-after", "1s"}}};
    cluster.node_args(1) = {"--stable-after", "2s"};
    auto args = cluster.command_line(1);
    REQUIRE(args.size() >= 4);
    CHECK(std::vector<std::string>(args.end() - 4, args.end())
          == std::vector<std::string>{"--stable-after", "1s", "--stable-after", "2s"});
    CHECK(value_after(cluster.command_line(0), "--stable-after") == "1s");
  }
}

TEST_CASE("reserved ports are not handed out twice while held", "[lab][cluster]") {
  port_reservation a{8};
  port_reservation b{8};
  std::set<unsigned short> all(a.ports().begin(), a.ports().end());
  all.insert(b.ports().begin(), b.ports().end());
  CHECK(all.size() == 16);
}

TEST_CASE("a node that cannot start is reported with its log", "[lab][cluster]") {
  test_cluster cluster{{.nodes = 2, .clustered = false}};
  cluster.node_args(1) = {"--http-threads", "0"};
  REQUIRE_THROWS_WITH(cluster.start_all(),
                      Catch::Contains("beta did not become ready") && Catch::Contains("http-threads"));
  CHECK_FALSE(cluster.running(1));
  CHECK(cluster.exit_code(1) == 2);
}

TEST_CASE("kill: the node is gone at once, the others keep answering", "[lab][cluster]") {
  test_cluster cluster{{.nodes = 3, .clustered = false}};
  cluster.start_all();
  auto victim = cluster.pid(1);
  cluster.kill(1);
  CHECK_FALSE(cluster.running(1));
  CHECK(cluster.exit_code(1) == 128 + SIGKILL);
  CHECK(no_such_process(victim));
  CHECK(cluster.get(1, "/health", 1000).status == 0);
  CHECK(cluster.get(0, "/health").status == 200);
  CHECK(cluster.get(2, "/health").status == 200);
  CHECK(cluster.live() == std::vector<std::size_t>{0, 2});
}

TEST_CASE("freeze: /health times out while frozen and answers after SIGCONT", "[lab][cluster]") {
  test_cluster cluster{{.nodes = 3, .clustered = false}};
  cluster.start_all();
  cluster.freeze(2);
  CHECK(cluster.frozen(2));
  CHECK(cluster.running(2));
  CHECK(wait_until([&] { return process_state(cluster.pid(2)) == 'T'; }, 5s)); // SIGSTOP is asynchronous
  // The kernel still accepts the connection; nobody reads it.
  CHECK(cluster.get(2, "/health", 300).status == 0);
  CHECK(cluster.live() == std::vector<std::size_t>{0, 1});
  CHECK(cluster.get(0, "/health").status == 200);
  cluster.thaw(2);
  CHECK_FALSE(cluster.frozen(2));
  CHECK(wait_until([&] { return cluster.get(2, "/health", 1000).status == 200; }, 10s));
}

TEST_CASE("restart: a node starts again on its data dir, after SIGTERM and after SIGKILL",
          "[lab][cluster]") {
  test_cluster cluster{{.nodes = 2, .clustered = false}};
  cluster.start_all();
  auto account = R"({"id":"lab-1","owner":"Lab","country":"DE","currency":"EUR","limit":100})";
  REQUIRE(cluster.request(0, "POST", "/accounts", account).status == 201);
  auto first_pid = cluster.pid(0);

  CHECK(cluster.stop(0) == 0);
  cluster.restart(0);
  CHECK(cluster.pid(0) != first_pid);
  CHECK(cluster.get(0, "/accounts/lab-1?consistent=true").status == 200);

  cluster.kill(0);
  cluster.restart(0);
  CHECK(cluster.get(0, "/accounts/lab-1?consistent=true").status == 200);
  // A running node restarts too (SIGTERM first); the other node was never involved.
  cluster.restart(0);
  CHECK(cluster.get(0, "/accounts/lab-1?consistent=true").status == 200);
  CHECK(cluster.get(1, "/accounts/lab-1?consistent=true").status == 404);
  CHECK(cluster.log(0).find("journal open in " + cluster.data_dir(0)) != std::string::npos);
}

TEST_CASE("the destructor leaves no process, a frozen one included", "[lab][cluster]") {
  std::vector<pid_t> pids;
  {
    test_cluster cluster{{.nodes = 3, .clustered = false}};
    cluster.start_all();
    cluster.freeze(1);
    for (std::size_t i = 0; i < 3; ++i)
      pids.push_back(cluster.pid(i));
    for (auto pid : pids)
      REQUIRE(::kill(pid, 0) == 0);
  }
  for (auto pid : pids)
    CHECK(no_such_process(pid));
}

TEST_CASE("a node dies with the test process that started it", "[lab][cluster]") {
  // Orphans get reparented to this process, so it can reap the node and see what killed it.
  REQUIRE(::prctl(PR_SET_CHILD_SUBREAPER, 1) == 0);
  temp_dir dir{"kontor-lab-orphan"};
  int report[2];
  REQUIRE(::pipe(report) == 0);
  pid_t stand_in = ::fork();
  REQUIRE(stand_in >= 0);
  if (stand_in == 0) {
    // A stand-in for a test process: it starts a node, reports the node's pid and waits to die.
    ::prctl(PR_SET_PDEATHSIG, SIGKILL); // dies with this test, should an assertion end it first
    ::close(report[0]);
    try {
      spawn_spec spec{{node_binary(), "--data-dir", dir.str() + "/data", "--http-address", "127.0.0.1",
                       "--http-port", "0"},
                      dir.str() + "/node.log", {}, {}, {}};
      child_process node{spec};
      pid_t pid = node.pid();
      if (::write(report[1], &pid, sizeof pid) != sizeof pid)
        ::_exit(1);
      for (;;)
        ::pause();
    } catch (...) {
      ::_exit(1);
    }
  }
  pid_t node_pid = 0;
  // Whatever fails below, neither process outlives the test.
  struct reaper {
    pid_t& pid;
    ~reaper() {
      if (pid > 0 && ::kill(pid, SIGKILL) == 0)
        ::waitpid(pid, nullptr, 0);
    }
  } stand_in_reaper{stand_in}, node_reaper{node_pid};
  ::close(report[1]);
  auto n = ::read(report[0], &node_pid, sizeof node_pid);
  ::close(report[0]);
  REQUIRE(n == static_cast<ssize_t>(sizeof node_pid));
  REQUIRE(::kill(node_pid, 0) == 0);

  ::kill(stand_in, SIGKILL); // the "test process" dies without running any destructor
  int status = 0;
  REQUIRE(::waitpid(stand_in, &status, 0) == stand_in);
  stand_in = -1;
  pid_t reaped = 0;
  CHECK(wait_until(
    [&] {
      reaped = ::waitpid(node_pid, &status, WNOHANG);
      return reaped != 0;
    },
    10s));
  REQUIRE(reaped == node_pid);
  node_pid = -1;
  CHECK(WIFSIGNALED(status));
  CHECK(WTERMSIG(status) == SIGKILL);
}

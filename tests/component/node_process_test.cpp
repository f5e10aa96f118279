// The test support itself: a node never outlives the process that started it.

#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>

#include <filesystem>
#include <fstream>

#include "tests/component/node_fixture.hpp"
#include "tests/support/wait.hpp"

using namespace kontor::test;

namespace {

/// While it lives, this process adopts its orphaned descendants (PR_SET_CHILD_SUBREAPER): a node
/// whose parent died becomes our child, so the test can reap it and see how it ended.
class subreaper {
public:
  subreaper() { REQUIRE(::prctl(PR_SET_CHILD_SUBREAPER, 1) == 0); }
  ~subreaper() { ::prctl(PR_SET_CHILD_SUBREAPER, 0); }
  subreaper(const subreaper&) = delete;
  subreaper& operator=(const subreaper&) = delete;
};

/// A process the test must end: SIGKILLed and reaped when the scope ends, unless reaped before.
struct child_guard {
  pid_t pid = -1;
  child_guard() = default;
  child_guard(const child_guard&) = delete;
  child_guard& operator=(const child_guard&) = delete;
  ~child_guard() {
    if (pid <= 0)
      return;
    ::kill(pid, SIGKILL);
    int status = 0;
    ::waitpid(pid, &status, 0);
  }
};

} // namespace

TEST_CASE("a node dies with the process that started it", "[process]") {
  temp_dir dir;
  subreaper adopt; // declared first: ends after the guards have reaped
  child_guard parent, node;
  const auto pid_file = dir.path() / "node.pid";
  const auto node_log = (dir.path() / "node.log").string();
  const auto parent_log = (dir.path() / "parent.log").string();
  parent.pid = spawn_child(KONTOR_NODE_PARENT_BINARY,
                           {(dir.path() / "data").string(), node_log, pid_file.string()}, parent_log);
  int parent_status = 0;
  bool parent_exited = false;
  REQUIRE(wait_until(
    [&] {
      parent_exited = ::waitpid(parent.pid, &parent_status, WNOHANG) == parent.pid;
      return parent_exited || std::filesystem::exists(pid_file);
    },
    std::chrono::seconds(30)));
  if (parent_exited) {
    parent.pid = -1;
    std::ifstream log(parent_log);
    FAIL("the parent exited before its node was ready: " << log.rdbuf());
  }
  std::ifstream(pid_file) >> node.pid;
  REQUIRE(node.pid > 0);
  REQUIRE(::kill(node.pid, 0) == 0); // the node runs

  REQUIRE(::kill(parent.pid, SIGKILL) == 0);
  REQUIRE(::waitpid(parent.pid, &parent_status, 0) == parent.pid);
  parent.pid = -1;
  // The orphan is ours now: it must end, by the SIGKILL of its parent-death signal.
  int status = 0;
  bool ended = wait_until([&] { return ::waitpid(node.pid, &status, WNOHANG) == node.pid; },
                          std::chrono::seconds(10));
  INFO("node log:\n" << [&] {
    std::ifstream in(node_log);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }());
  REQUIRE(ended);
  node.pid = -1;
  CHECK(WIFSIGNALED(status));
  CHECK(WTERMSIG(status) == SIGKILL);
}

#pragma once

#include <sys/types.h>

#include <chrono>
#include <string>
#include <vector>

namespace kontor::test {

/// The kontor-node binary under test (set by CMake).
const char* node_binary();

/// Starts `binary ARGS...` as a child process (fork + exec), stdout and stderr appended to
/// `log_path`, stdin from /dev/null, no file descriptors of this process but those three. Its
/// environment is this process's minus KONTOR_* variables (tests must not leak settings into
/// each other) and minus the names set in `env`, plus `env` ("NAME=value" items). The child gets
/// SIGKILL when the thread that started it ends (PR_SET_PDEATHSIG), so a test binary that
/// crashes or is killed takes its nodes with it: start children from a thread that outlives
/// them. The caller reaps the child. Throws when fork fails.
pid_t spawn_child(const std::string& binary, const std::vector<std::string>& args,
                  const std::string& log_path, const std::vector<std::string>& env = {});

/// A kontor-node child process on 127.0.0.1 with an ephemeral HTTP port, its output in a log file.
/// The destructor kills the process if it still runs: every process a test starts, it stops.
class node_process {
public:
  /// Starts `kontor-node --data-dir DIR --http-address 127.0.0.1 --http-port 0 EXTRA...`
  /// with spawn_child (so it dies with the test); stdout and stderr go to `log_path`; `env`
  /// ("NAME=value" items, e.g. LD_PRELOAD) is added to its environment.
  node_process(const std::string& data_dir, const std::string& log_path,
               std::vector<std::string> extra_args = {}, std::vector<std::string> env = {});
  ~node_process();
  node_process(const node_process&) = delete;
  node_process& operator=(const node_process&) = delete;

  /// Waits until the node logged its port and answers GET /ready with 200. False on timeout or
  /// when the process exited.
  bool wait_ready(std::chrono::milliseconds timeout = std::chrono::seconds(30));

  /// Waits until the node logged its HTTP port (a node serving HTTPS: the tests' client speaks
  /// plain HTTP only). False on timeout or when the process exited.
  bool wait_port(std::chrono::milliseconds timeout = std::chrono::seconds(30));

  /// The HTTP port (valid after wait_ready).
  unsigned short port() const noexcept { return port_; }

  /// SIGKILL and reap: a crash, no shutdown code runs.
  void kill_hard();

  /// SIGTERM, then waits for the exit (SIGKILL after `timeout`). Returns the exit status
  /// (-1 when it had to be killed).
  int stop(std::chrono::milliseconds timeout = std::chrono::seconds(20));

  /// Whether the process still runs.
  bool running();

  /// Everything the node wrote so far.
  std::string log() const;

  /// The process id (-1 when not running).
  pid_t pid() const noexcept { return pid_; }

private:
  pid_t pid_ = -1;
  std::string log_path_;
  unsigned short port_ = 0;
};

/// Result of a node run that is expected to end by itself (e.g. bad configuration).
struct run_result {
  int exit_code = -1; ///< -1: did not exit in time (it was killed)
  std::string output; ///< stdout and stderr
};

/// Runs kontor-node with `args` until it exits (killed after `timeout`).
run_result run_node(const std::vector<std::string>& args, const std::string& log_path,
                    std::chrono::milliseconds timeout = std::chrono::seconds(20),
                    const std::vector<std::string>& env = {});

} // namespace kontor::test

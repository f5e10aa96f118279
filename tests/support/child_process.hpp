#pragma once

#include <sys/types.h>

#include <chrono>
#include <optional>
#include <string>
#include <vector>

namespace kontor::test {

/// What a child_process runs, with which output file, environment, directory and namespace.
struct spawn_spec {
  std::vector<std::string> argv; ///< argv[0] is the executable's path
  std::string log_path;          ///< stdout and stderr go here (the file is truncated first)
  std::vector<std::string> env;  ///< "NAME=value" added to this process's environment minus KONTOR_*
  std::string work_dir;          ///< working directory of the child; empty: this process's
  std::string netns;             ///< network namespace name under /run/netns; empty: this one
};

/// A child process that dies with the test: it gets SIGKILL when the test process dies, however
/// it dies (PR_SET_PDEATHSIG, set before exec; the fork happens on a thread that lives as long as
/// the test process, so a test thread that ends takes no child with it), and the destructor kills
/// and reaps it. Not thread-safe: one owner thread at a time.
class child_process {
public:
  /// Starts the process. Throws std::runtime_error when it cannot: fork, the namespace, the
  /// working directory, the log file or exec failed (the message says which, with errno's text).
  explicit child_process(const spawn_spec& spec);
  /// SIGKILL (also when frozen) and reap, when it still runs.
  ~child_process();
  child_process(const child_process&) = delete;
  child_process& operator=(const child_process&) = delete;

  /// The process id; stays valid (and unused by others) until the exit is reaped.
  pid_t pid() const noexcept { return pid_; }

  /// Whether it still runs (a frozen process runs). Reaps it when it has exited.
  bool running();

  /// The exit code once it exited by itself (128 + signal when a signal ended it).
  std::optional<int> exit_code() const noexcept { return exit_code_; }

  /// SIGSTOP: the process and its sockets stay, nothing runs (a "frozen" node).
  void freeze();
  /// SIGCONT after freeze().
  void thaw();
  /// Whether freeze() was called without thaw() since.
  bool frozen() const noexcept { return frozen_; }

  /// SIGKILL and reap: a crash, no shutdown code runs. No-op when it has exited.
  void kill_hard();

  /// SIGTERM (and SIGCONT, so a frozen process handles it), then waits up to `timeout` for the
  /// exit; SIGKILL after that. Returns the exit code, -1 when it had to be killed.
  int stop(std::chrono::milliseconds timeout = std::chrono::seconds(20));

  /// Waits up to `timeout` for the process to exit by itself; its exit code, or nullopt.
  std::optional<int> wait_exit(std::chrono::milliseconds timeout);

  /// Everything the process wrote to its log so far.
  std::string log() const;

  /// The log file's path.
  const std::string& log_path() const noexcept { return log_path_; }

private:
  bool reap(int options);

  pid_t pid_ = -1;
  bool reaped_ = false;
  bool frozen_ = false;
  std::optional<int> exit_code_;
  std::string log_path_;
};

/// Whether `pid` names no live process: kill(pid, 0) fails with ESRCH, or it is a zombie.
bool process_gone(pid_t pid);

/// Reads a whole file ("" when it cannot be read).
std::string read_text_file(const std::string& path);

} // namespace kontor::test

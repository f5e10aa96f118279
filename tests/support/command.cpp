#include "tests/support/command.hpp"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>

#include "tests/support/child_process.hpp"
#include "tests/support/temp_dir.hpp"
#include "tests/support/wait.hpp"

extern char** environ;

namespace kontor::test {

command_output run_command(const std::vector<std::string>& argv, std::chrono::milliseconds timeout) {
  command_output result;
  temp_dir dir{"kontor-deploy-cmd"};
  auto out_path = (dir.path() / "out").string();
  auto err_path = (dir.path() / "err").string();
  std::vector<std::string> copy = argv;
  std::vector<char*> args;
  for (auto& a : copy)
    args.push_back(a.data());
  args.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 1, out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_addopen(&fa, 2, err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  pid_t pid = -1;
  int rc = posix_spawnp(&pid, copy[0].c_str(), &fa, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0) {
    result.err = "cannot run " + copy[0] + ": " + std::strerror(rc);
    return result;
  }
  int status = 0;
  bool exited = wait_until([&] { return ::waitpid(pid, &status, WNOHANG) == pid; }, timeout);
  if (!exited) {
    ::kill(pid, SIGKILL);
    ::waitpid(pid, &status, 0);
  } else if (WIFEXITED(status)) {
    result.exit_code = WEXITSTATUS(status);
  }
  result.out = read_text_file(out_path);
  result.err = read_text_file(err_path);
  if (!exited)
    result.err += "\n(killed after " + std::to_string(timeout.count()) + " ms)";
  return result;
}

} // namespace kontor::test

#include "tests/support/node_process.hpp"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <sstream>
#include <stdexcept>

#include "tests/support/http_client.hpp"
#include "tests/support/wait.hpp"

extern char** environ;

namespace kontor::test {

namespace {

pid_t spawn(const std::vector<std::string>& args, const std::string& log_path,
            const std::vector<std::string>& extra_env) {
  std::vector<char*> argv;
  std::string bin = node_binary();
  argv.push_back(bin.data());
  std::vector<std::string> copy = args;
  for (auto& a : copy)
    argv.push_back(a.data());
  argv.push_back(nullptr);
  // The child sees this process's environment minus KONTOR_* (tests must not leak settings
  // into each other), plus `extra_env`.
  std::vector<std::string> env_strings;
  for (char** e = environ; *e; ++e)
    if (std::string(*e).rfind("KONTOR_", 0) != 0)
      env_strings.emplace_back(*e);
  env_strings.insert(env_strings.end(), extra_env.begin(), extra_env.end());
  std::vector<char*> envp;
  for (auto& s : env_strings)
    envp.push_back(s.data());
  envp.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 1, log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
  posix_spawn_file_actions_adddup2(&fa, 1, 2);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  pid_t pid = -1;
  int rc = posix_spawn(&pid, bin.c_str(), &fa, nullptr, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0)
    throw std::runtime_error("cannot start " + bin);
  return pid;
}

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

/// Waits for `pid` to exit until `timeout`; returns its wait status, or nullopt.
std::optional<int> reap(pid_t pid, std::chrono::milliseconds timeout) {
  int status = 0;
  bool done = wait_until(
    [&] {
      auto r = ::waitpid(pid, &status, WNOHANG);
      return r == pid || r < 0;
    },
    timeout);
  if (!done)
    return std::nullopt;
  return status;
}

} // namespace

const char* node_binary() {
  return KONTOR_NODE_BINARY;
}

node_process::node_process(const std::string& data_dir, const std::string& log_path,
                           std::vector<std::string> extra_args)
  : log_path_(log_path) {
  std::vector<std::string> args{"--data-dir", data_dir, "--http-address", "127.0.0.1",
                                "--http-port", "0"};
  args.insert(args.end(), extra_args.begin(), extra_args.end());
  std::ofstream(log_path, std::ios::trunc).flush();
  pid_ = spawn(args, log_path, {});
}

node_process::~node_process() {
  if (pid_ > 0)
    kill_hard();
}

bool node_process::running() {
  if (pid_ <= 0)
    return false;
  int status = 0;
  if (::waitpid(pid_, &status, WNOHANG) == pid_) {
    pid_ = -1;
    return false;
  }
  return true;
}

/// The port in the node's "ready: HTTP on ADDRESS:PORT" log line, 0 when not there yet.
static unsigned short ready_port(const std::string& log) {
  auto at = log.find("ready: HTTP on ");
  if (at == std::string::npos)
    return 0;
  auto end = log.find('\n', at);
  auto line = log.substr(at, end == std::string::npos ? std::string::npos : end - at);
  auto colon = line.rfind(':');
  return colon == std::string::npos ? 0 : static_cast<unsigned short>(std::atoi(line.c_str() + colon + 1));
}

bool node_process::wait_ready(std::chrono::milliseconds timeout) {
  auto found_port = wait_until(
    [&] {
      if (!running())
        return true;
      port_ = ready_port(log());
      return port_ != 0;
    },
    timeout);
  if (!found_port || port_ == 0 || !running())
    return false;
  http_client client{port_};
  return wait_until([&] { return client.get("/ready").status == 200; }, timeout);
}

void node_process::kill_hard() {
  if (pid_ <= 0)
    return;
  ::kill(pid_, SIGKILL);
  int status = 0;
  ::waitpid(pid_, &status, 0);
  pid_ = -1;
}

int node_process::stop(std::chrono::milliseconds timeout) {
  if (pid_ <= 0)
    return -1;
  ::kill(pid_, SIGTERM);
  auto status = reap(pid_, timeout);
  if (!status) {
    kill_hard();
    return -1;
  }
  pid_ = -1;
  return WIFEXITED(*status) ? WEXITSTATUS(*status) : -1;
}

std::string node_process::log() const {
  return read_file(log_path_);
}

run_result run_node(const std::vector<std::string>& args, const std::string& log_path,
                    std::chrono::milliseconds timeout, const std::vector<std::string>& env) {
  std::ofstream(log_path, std::ios::trunc).flush();
  auto pid = spawn(args, log_path, env);
  run_result out;
  auto status = reap(pid, timeout);
  if (!status) {
    ::kill(pid, SIGKILL);
    int ignored = 0;
    ::waitpid(pid, &ignored, 0);
  } else if (WIFEXITED(*status)) {
    out.exit_code = WEXITSTATUS(*status);
  }
  out.output = read_file(log_path);
  return out;
}

} // namespace kontor::test

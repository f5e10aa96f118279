#include "tests/support/node_process.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <climits>
#include <cstring>

#include <fstream>
#include <sstream>
#include <stdexcept>

#include "tests/support/http_client.hpp"
#include "tests/support/wait.hpp"

extern char** environ;

namespace kontor::test {

namespace {

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

pid_t spawn_child(const std::string& binary, const std::vector<std::string>& args,
                  const std::string& log_path, const std::vector<std::string>& env) {
  // Everything the child needs is built before fork: after it, only async-signal-safe calls.
  std::vector<std::string> argv_strings{binary};
  argv_strings.insert(argv_strings.end(), args.begin(), args.end());
  auto name_of = [](const std::string& item) { return item.substr(0, item.find('=')); };
  std::vector<std::string> env_strings;
  for (char** e = environ; *e; ++e) {
    std::string item(*e);
    bool overridden = false;
    for (const auto& extra : env)
      overridden = overridden || name_of(extra) == name_of(item);
    if (item.rfind("KONTOR_", 0) != 0 && !overridden)
      env_strings.push_back(std::move(item));
  }
  env_strings.insert(env_strings.end(), env.begin(), env.end());
  std::vector<char*> argv, envp;
  for (auto& a : argv_strings)
    argv.push_back(a.data());
  argv.push_back(nullptr);
  for (auto& e : env_strings)
    envp.push_back(e.data());
  envp.push_back(nullptr);

  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid < 0)
    throw std::runtime_error("cannot start " + binary + ": fork: " + std::strerror(errno));
  if (pid == 0) {
    int out = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    int in = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (out < 0 || in < 0 || ::dup2(in, 0) < 0 || ::dup2(out, 1) < 0 || ::dup2(out, 2) < 0)
      ::_exit(127);
    ::close_range(3, UINT_MAX, 0); // sockets and files of the test stay with the test
    // Dies with the thread that forked it. If that already happened before prctl took effect,
    // the child was re-parented: end here instead of outliving the test.
    if (::prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || ::getppid() != parent)
      ::_exit(127);
    ::execve(argv[0], argv.data(), envp.data());
    ::_exit(127);
  }
  return pid;
}

node_process::node_process(const std::string& data_dir, const std::string& log_path,
                           std::vector<std::string> extra_args, std::vector<std::string> env)
  : log_path_(log_path) {
  std::vector<std::string> args{"--data-dir", data_dir, "--http-address", "127.0.0.1",
                                "--http-port", "0"};
  args.insert(args.end(), extra_args.begin(), extra_args.end());
  std::ofstream(log_path, std::ios::trunc).flush();
  pid_ = spawn_child(node_binary(), args, log_path, env);
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

bool node_process::wait_port(std::chrono::milliseconds timeout) {
  auto found_port = wait_until(
    [&] {
      if (!running())
        return true;
      port_ = ready_port(log());
      return port_ != 0;
    },
    timeout);
  return found_port && port_ != 0 && running();
}

bool node_process::wait_ready(std::chrono::milliseconds timeout) {
  if (!wait_port(timeout))
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
  auto pid = spawn_child(node_binary(), args, log_path, env);
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

#include "tests/support/child_process.hpp"

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <condition_variable>
#include <cstring>
#include <deque>
#include <fstream>
#include <functional>
#include <mutex>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "tests/support/wait.hpp"

extern char** environ;

namespace kontor::test {

namespace {

/// Runs tasks on one thread that lives as long as the process. PR_SET_PDEATHSIG fires when the
/// *thread* that forked the child ends, so every fork happens here, not on a test thread that may
/// end early (a chaos thread that restarts nodes, say).
class spawner {
public:
  /// The spawner of this process (a fresh one in a forked child: threads do not survive fork).
  static spawner& instance() {
    static std::mutex mtx;
    static spawner* current = nullptr;
    static pid_t owner = 0;
    std::lock_guard<std::mutex> guard{mtx};
    if (current == nullptr || owner != ::getpid()) {
      current = new spawner; // never deleted: its detached thread may use it until exit
      owner = ::getpid();
    }
    return *current;
  }

  /// Runs `task` on the spawner thread and waits for it.
  void run(const std::function<void()>& task) {
    std::unique_lock<std::mutex> lock{mtx_};
    std::uint64_t ticket = ++submitted_;
    queue_.push_back(&task);
    cv_.notify_all();
    cv_.wait(lock, [&] { return completed_ >= ticket; });
  }

private:
  spawner() {
    std::thread([this] { loop(); }).detach();
  }

  void loop() {
    std::unique_lock<std::mutex> lock{mtx_};
    for (;;) {
      cv_.wait(lock, [&] { return !queue_.empty(); });
      auto* task = queue_.front();
      queue_.pop_front();
      lock.unlock();
      (*task)();
      lock.lock();
      ++completed_;
      cv_.notify_all();
    }
  }

  std::mutex mtx_;
  std::condition_variable cv_;
  std::deque<const std::function<void()>*> queue_;
  std::uint64_t submitted_ = 0;
  std::uint64_t completed_ = 0;
};

/// Where a child failed before exec, reported through a close-on-exec pipe.
enum stage : int { stage_pdeathsig = 1, stage_netns, stage_chdir, stage_exec };

const char* stage_name(int s) {
  switch (s) {
  case stage_pdeathsig:
    return "prctl(PR_SET_PDEATHSIG)";
  case stage_netns:
    return "setns";
  case stage_chdir:
    return "chdir";
  default:
    return "exec";
  }
}

/// Forks and execs `spec` (on the spawner thread). Returns the pid or an error text.
pid_t fork_exec(const spawn_spec& spec, std::string& error) {
  // Everything the child needs is prepared here: after fork only async-signal-safe calls.
  std::vector<std::string> args = spec.argv;
  std::vector<char*> argv;
  for (auto& a : args)
    argv.push_back(a.data());
  argv.push_back(nullptr);
  // The environment minus KONTOR_* (tests must not leak settings into each other), plus spec.env.
  std::vector<std::string> env_strings;
  for (char** e = environ; *e; ++e)
    if (std::string(*e).rfind("KONTOR_", 0) != 0)
      env_strings.emplace_back(*e);
  env_strings.insert(env_strings.end(), spec.env.begin(), spec.env.end());
  std::vector<char*> envp;
  for (auto& s : env_strings)
    envp.push_back(s.data());
  envp.push_back(nullptr);

  int log_fd = ::open(spec.log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (log_fd < 0) {
    error = "cannot open log " + spec.log_path + ": " + std::strerror(errno);
    return -1;
  }
  int null_fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  int ns_fd = -1;
  if (!spec.netns.empty()) {
    auto path = "/run/netns/" + spec.netns;
    ns_fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (ns_fd < 0) {
      error = "cannot open network namespace " + path + ": " + std::strerror(errno);
      ::close(log_fd);
      ::close(null_fd);
      return -1;
    }
  }
  int report[2];
  if (::pipe2(report, O_CLOEXEC) != 0) {
    error = std::string("pipe2: ") + std::strerror(errno);
    ::close(log_fd);
    ::close(null_fd);
    if (ns_fd >= 0)
      ::close(ns_fd);
    return -1;
  }
  const char* work_dir = spec.work_dir.empty() ? nullptr : spec.work_dir.c_str();
  pid_t parent = ::getpid();
  pid_t pid = ::fork();
  if (pid == 0) {
    auto fail = [&](int where) {
      int msg[2] = {where, errno};
      [[maybe_unused]] auto n = ::write(report[1], msg, sizeof msg);
      ::_exit(127);
    };
    if (::prctl(PR_SET_PDEATHSIG, SIGKILL) != 0)
      fail(stage_pdeathsig);
    if (::getppid() != parent) // the parent died before prctl: nobody would kill us later
      ::_exit(127);
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    struct sigaction dfl {};
    dfl.sa_handler = SIG_DFL;
    for (int sig : {SIGPIPE, SIGINT, SIGTERM, SIGHUP, SIGXFSZ})
      ::sigaction(sig, &dfl, nullptr);
    if (ns_fd >= 0 && ::setns(ns_fd, CLONE_NEWNET) != 0)
      fail(stage_netns);
    if (work_dir && ::chdir(work_dir) != 0)
      fail(stage_chdir);
    if (null_fd >= 0)
      ::dup2(null_fd, 0);
    ::dup2(log_fd, 1);
    ::dup2(log_fd, 2);
    ::execve(argv[0], argv.data(), envp.data());
    fail(stage_exec);
  }
  int fork_errno = errno;
  ::close(report[1]);
  ::close(log_fd);
  if (null_fd >= 0)
    ::close(null_fd);
  if (ns_fd >= 0)
    ::close(ns_fd);
  if (pid < 0) {
    ::close(report[0]);
    error = std::string("fork: ") + std::strerror(fork_errno);
    return -1;
  }
  int msg[2] = {0, 0};
  ssize_t n;
  do
    n = ::read(report[0], msg, sizeof msg);
  while (n < 0 && errno == EINTR);
  ::close(report[0]);
  if (n > 0) { // the child failed before exec; it has exited
    int status = 0;
    ::waitpid(pid, &status, 0);
    error = std::string(stage_name(msg[0])) + " failed for " + spec.argv[0] + ": " + std::strerror(msg[1]);
    return -1;
  }
  return pid;
}

} // namespace

child_process::child_process(const spawn_spec& spec) : log_path_(spec.log_path) {
  if (spec.argv.empty())
    throw std::runtime_error("child_process: no program given");
  std::string error;
  pid_t pid = -1;
  spawner::instance().run([&] { pid = fork_exec(spec, error); });
  if (pid < 0)
    throw std::runtime_error("child_process: " + error);
  pid_ = pid;
}

child_process::~child_process() {
  kill_hard();
}

bool child_process::reap(int options) {
  if (reaped_)
    return true;
  int status = 0;
  pid_t r;
  do
    r = ::waitpid(pid_, &status, options);
  while (r < 0 && errno == EINTR);
  if (r == 0)
    return false;
  reaped_ = true;
  frozen_ = false;
  if (r == pid_)
    exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return true;
}

bool child_process::running() {
  return !reap(WNOHANG);
}

void child_process::freeze() {
  if (!reaped_ && ::kill(pid_, SIGSTOP) == 0)
    frozen_ = true;
}

void child_process::thaw() {
  if (!reaped_)
    ::kill(pid_, SIGCONT);
  frozen_ = false;
}

void child_process::kill_hard() {
  if (reaped_ || pid_ <= 0)
    return;
  ::kill(pid_, SIGKILL);
  reap(0);
}

int child_process::stop(std::chrono::milliseconds timeout) {
  if (pid_ <= 0)
    return -1;
  if (!reaped_) {
    ::kill(pid_, SIGTERM);
    ::kill(pid_, SIGCONT); // a stopped process handles SIGTERM only once it runs again
    frozen_ = false;
    if (!wait_exit(timeout)) {
      kill_hard();
      return -1;
    }
  }
  return exit_code_.value_or(-1);
}

std::optional<int> child_process::wait_exit(std::chrono::milliseconds timeout) {
  if (pid_ <= 0)
    return std::nullopt;
  if (!wait_until([&] { return reap(WNOHANG); }, timeout))
    return std::nullopt;
  return exit_code_;
}

std::string child_process::log() const {
  return read_text_file(log_path_);
}

bool process_gone(pid_t pid) {
  if (::kill(pid, 0) != 0 && errno == ESRCH)
    return true;
  auto stat = read_text_file("/proc/" + std::to_string(pid) + "/stat");
  auto paren = stat.rfind(')');
  return stat.empty() || (paren != std::string::npos && paren + 2 < stat.size() && stat[paren + 2] == 'Z');
}

std::string read_text_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

} // namespace kontor::test

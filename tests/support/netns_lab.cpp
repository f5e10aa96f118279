#include "tests/support/netns_lab.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <net/if.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <exception>
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <stdexcept>
#include <thread>

extern char** environ;

namespace kontor::test {

namespace {

constexpr const char* lock_dir = "/run/kontor-lab";
constexpr const char* netns_dir = "/run/netns";
constexpr const char* netns_etc_dir = "/etc/netns"; // `ip netns exec` bind-mounts its files
constexpr std::size_t max_nodes = 200;
constexpr std::size_t max_groups = 25; // group bridges kbr<id>b .. kbr<id>z

/// The `ip` program, or "" when there is none.
const std::string& ip_program() {
  static const std::string path = [] {
    for (const char* p : {"/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"})
      if (::access(p, X_OK) == 0)
        return std::string(p);
    return std::string();
  }();
  return path;
}

struct command_result {
  int code = -1;
  std::string output; ///< stdout and stderr
};

/// Runs `program ARGS...` and collects its output.
command_result run_program(const std::string& program, const std::vector<std::string>& args) {
  command_result out;
  std::vector<std::string> copy;
  copy.push_back(program);
  copy.insert(copy.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : copy)
    argv.push_back(a.data());
  argv.push_back(nullptr);
  int pipe_fds[2];
  if (::pipe2(pipe_fds, O_CLOEXEC) != 0) {
    out.output = std::string("pipe2: ") + std::strerror(errno);
    return out;
  }
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, pipe_fds[1], 1);
  posix_spawn_file_actions_adddup2(&fa, pipe_fds[1], 2);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  pid_t pid = -1;
  int rc = posix_spawn(&pid, copy[0].c_str(), &fa, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  ::close(pipe_fds[1]);
  if (rc != 0) {
    ::close(pipe_fds[0]);
    out.output = "cannot run " + copy[0] + ": " + std::strerror(rc);
    return out;
  }
  char buf[4096];
  for (;;) {
    auto n = ::read(pipe_fds[0], buf, sizeof buf);
    if (n > 0)
      out.output.append(buf, static_cast<std::size_t>(n));
    else if (n == 0 || errno != EINTR)
      break;
  }
  ::close(pipe_fds[0]);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  out.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return out;
}

/// Runs `ip ARGS...` and collects its output.
command_result run_ip(const std::vector<std::string>& args) {
  return run_program(ip_program(), args);
}

std::string joined(const std::vector<std::string>& args) {
  std::string s = "ip";
  for (auto& a : args)
    s += " " + a;
  return s;
}

/// Runs `ip ARGS...`; throws with the command and its output when it fails.
void ip(const std::vector<std::string>& args) {
  auto r = run_ip(args);
  if (r.code != 0)
    throw std::runtime_error("netns_lab: `" + joined(args) + "` failed: " + r.output);
}

/// Runs `ip ARGS...` where failing is fine (removing what may be gone already).
void ip_quiet(const std::vector<std::string>& args) {
  run_ip(args);
}

/// The lab id a lab object's name belongs to: kns<id>-<n>, kv<id>-<n>, kbr<id>, kbr<id><letter>.
std::optional<int> lab_id_of(const std::string& name) {
  static const std::regex pattern{R"(^(?:kns|kv)([0-9]{1,3})-[0-9]{1,3}$|^kbr([0-9]{1,3})[a-z]?$)"};
  std::smatch m;
  if (!std::regex_match(name, m, pattern))
    return std::nullopt;
  return std::stoi(m[1].matched ? m[1].str() : m[2].str());
}

/// Names of the network namespaces (under /run/netns) and of the links of the root namespace.
std::vector<std::string> namespaces_and_links() {
  std::vector<std::string> names;
  if (DIR* dir = ::opendir(netns_dir)) {
    while (auto* e = ::readdir(dir))
      names.emplace_back(e->d_name);
    ::closedir(dir);
  }
  if (auto* links = ::if_nameindex()) {
    for (auto* l = links; l->if_index != 0; ++l)
      names.emplace_back(l->if_name);
    ::if_freenameindex(links);
  }
  return names;
}

/// Opens lab `id`'s lock file and takes the lock without waiting; the fd, or -1 when another
/// live lab holds it.
int try_lock(int id) {
  ::mkdir(lock_dir, 0755);
  auto path = std::string(lock_dir) + "/" + std::to_string(id) + ".lock";
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0)
    throw std::runtime_error("netns_lab: cannot open " + path + ": " + std::strerror(errno));
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

/// Removes lab `id`'s objects (the caller holds its lock): namespaces first (that removes their
/// veth pairs), then what is left of the links, bridges last. Returns what existed.
std::vector<std::string> remove_objects(int id) {
  auto names = netns_lab::objects_of(id);
  auto rank = [](const std::string& n) {
    return n.rfind("kns", 0) == 0 ? 0 : n.rfind("kv", 0) == 0 ? 1 : 2;
  };
  std::stable_sort(names.begin(), names.end(),
                   [&](const std::string& a, const std::string& b) { return rank(a) < rank(b); });
  for (auto& n : names) {
    if (rank(n) == 0)
      ip_quiet({"netns", "del", n});
    else
      ip_quiet({"link", "del", n});
  }
  // The namespaces' /etc files (set_hosts); `ip netns del` leaves them.
  std::error_code ec;
  for (std::filesystem::directory_iterator it{netns_etc_dir, ec}, end; !ec && it != end; it.increment(ec)) {
    auto name = it->path().filename().string();
    if (name.rfind("kns", 0) == 0 && lab_id_of(name) == id)
      std::filesystem::remove_all(it->path(), ec);
  }
  return names;
}

} // namespace

std::string netns_lab::unavailable_reason() {
  if (::geteuid() != 0)
    return "not running as root (euid " + std::to_string(::geteuid()) + "): network namespaces need root";
  if (ip_program().empty())
    return "no `ip` program (iproute2) in /usr/sbin, /sbin, /usr/bin or /bin";
  return {};
}

bool netns_lab::in_use(int id) {
  int fd = try_lock(id);
  if (fd < 0)
    return true;
  ::close(fd);
  return false;
}

std::vector<std::string> netns_lab::objects_of(int id) {
  std::vector<std::string> out;
  for (auto& n : namespaces_and_links())
    if (lab_id_of(n) == id)
      out.push_back(n);
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

std::vector<std::string> netns_lab::sweep_stale() {
  std::set<int> ids;
  for (auto& n : namespaces_and_links())
    if (auto id = lab_id_of(n))
      ids.insert(*id);
  std::vector<std::string> removed;
  for (int id : ids) {
    int fd = try_lock(id);
    if (fd < 0)
      continue; // a live lab
    auto names = remove_objects(id);
    removed.insert(removed.end(), names.begin(), names.end());
    ::close(fd);
  }
  return removed;
}

netns_lab::netns_lab(std::size_t nodes) : size_(nodes), cut_(nodes, false), group_(nodes, 0) {
  if (auto why = unavailable_reason(); !why.empty())
    throw std::runtime_error("netns_lab: " + why);
  if (nodes == 0 || nodes > max_nodes)
    throw std::invalid_argument("netns_lab: 1.." + std::to_string(max_nodes) + " nodes, not "
                                + std::to_string(nodes));
  sweep_stale();
  // Start the search at a place that depends on the pid: parallel test processes rarely race.
  auto start = static_cast<int>(::getpid() % 254);
  for (int k = 0; k < 254 && lock_fd_ < 0; ++k) {
    int id = 1 + (start + k) % 254;
    int fd = try_lock(id);
    if (fd < 0)
      continue;
    remove_objects(id); // left by a run that died between sweep_stale() and now
    id_ = id;
    lock_fd_ = fd;
  }
  if (lock_fd_ < 0)
    throw std::runtime_error("netns_lab: all 254 lab ids are in use");
  auto pid = std::to_string(::getpid()) + "\n";
  if (::ftruncate(lock_fd_, 0) == 0) {
    [[maybe_unused]] auto n = ::pwrite(lock_fd_, pid.data(), pid.size(), 0); // for humans only
  }
  try {
    build();
  } catch (...) {
    teardown();
    throw;
  }
}

netns_lab::~netns_lab() {
  teardown();
}

std::string netns_lab::address(std::size_t i) const {
  check_node(i);
  return "10.77." + std::to_string(id_) + "." + std::to_string(i + 1);
}

std::string netns_lab::root_address() const {
  return group_root_address(0);
}

std::string netns_lab::namespace_name(std::size_t i) const {
  check_node(i);
  return "kns" + std::to_string(id_) + "-" + std::to_string(i + 1);
}

std::string netns_lab::veth(std::size_t i) const {
  check_node(i);
  return "kv" + std::to_string(id_) + "-" + std::to_string(i + 1);
}

std::string netns_lab::bridge() const {
  return group_bridge(0);
}

std::string netns_lab::group_bridge(std::size_t g) const {
  auto name = "kbr" + std::to_string(id_);
  if (g > 0)
    name += static_cast<char>('a' + g);
  return name;
}

std::string netns_lab::group_bridge_mac(std::size_t g) const {
  // Locally administered, one per lab and bridge. A bridge whose address was set keeps it; one
  // left to the kernel takes the lowest address of its ports and changes as ports come and go,
  // which leaves nodes with a cached root address that no bridge answers to after a heal.
  char mac[18];
  std::snprintf(mac, sizeof mac, "02:6b:%02x:00:00:%02x", static_cast<unsigned>(id_) & 0xffu,
                static_cast<unsigned>(g) & 0xffu);
  return mac;
}

std::string netns_lab::group_root_address(std::size_t g) const {
  return "10.77." + std::to_string(id_) + "." + std::to_string(254 - g);
}

void netns_lab::check_node(std::size_t i) const {
  if (i >= size_)
    throw std::invalid_argument("netns_lab: no node " + std::to_string(i) + " (the lab has "
                                + std::to_string(size_) + ")");
}

void netns_lab::build() {
  ip({"link", "add", bridge(), "address", group_bridge_mac(0), "type", "bridge"});
  ip({"addr", "add", root_address() + "/24", "dev", bridge()});
  ip({"link", "set", bridge(), "up"});
  for (std::size_t i = 0; i < size_; ++i) {
    auto ns = namespace_name(i);
    auto inner = "kp" + std::to_string(id_) + "-" + std::to_string(i + 1);
    ip({"netns", "add", ns});
    // The inner end is created right inside the namespace: it never exists in the root one.
    ip({"link", "add", veth(i), "type", "veth", "peer", "name", inner, "netns", ns});
    ip({"-n", ns, "addr", "add", address(i) + "/24", "dev", inner});
    ip({"-n", ns, "link", "set", inner, "up"});
    ip({"-n", ns, "link", "set", "lo", "up"});
    ip({"link", "set", veth(i), "master", bridge(), "up"});
  }
}

void netns_lab::teardown() noexcept {
  if (lock_fd_ < 0)
    return;
  try {
    // Processes still in a namespace were started by this test (normally their owners stopped
    // them already): without this they would outlive the lab, cut off from everything.
    for (std::size_t i = 0; i < size_; ++i) {
      std::istringstream pids{run_ip({"netns", "pids", namespace_name(i)}).output};
      for (pid_t pid; pids >> pid;)
        if (pid > 0 && pid != ::getpid())
          ::kill(pid, SIGKILL);
    }
    remove_objects(id_);
  } catch (...) { // best effort: the next lab's sweep removes what is left
  }
  ::close(lock_fd_);
  lock_fd_ = -1;
}

void netns_lab::cut(std::size_t i) {
  ip({"link", "set", veth(i), "down"});
  cut_[i] = true;
}

void netns_lab::restore(std::size_t i) {
  ip({"link", "set", veth(i), "up"});
  cut_[i] = false;
}

void netns_lab::partition(const std::vector<std::vector<std::size_t>>& groups) {
  if (groups.empty() || groups.size() > max_groups + 1)
    throw std::invalid_argument("netns_lab::partition: 1.." + std::to_string(max_groups + 1)
                                + " groups");
  std::vector<std::optional<std::size_t>> target(size_);
  for (std::size_t g = 0; g < groups.size(); ++g)
    for (auto i : groups[g]) {
      check_node(i);
      if (target[i])
        throw std::invalid_argument("netns_lab::partition: node " + std::to_string(i)
                                    + " is in two groups");
      target[i] = g;
    }
  for (std::size_t i = 0; i < size_; ++i)
    if (!target[i])
      throw std::invalid_argument("netns_lab::partition: node " + std::to_string(i)
                                  + " is in no group");
  for (; bridges_ < groups.size(); ++bridges_) {
    auto br = group_bridge(bridges_);
    ip({"link", "add", br, "address", group_bridge_mac(bridges_), "type", "bridge"});
    ip({"addr", "add", group_root_address(bridges_) + "/32", "dev", br});
    ip({"link", "set", br, "up"});
  }
  bool moved = false;
  for (std::size_t i = 0; i < size_; ++i) {
    auto g = *target[i];
    if (group_[i] == g)
      continue;
    ip({"link", "set", veth(i), "master", group_bridge(g)});
    auto host = address(i) + "/32";
    if (g == 0)
      ip({"route", "del", host});
    else
      ip({"route", "replace", host, "dev", group_bridge(g), "src", group_root_address(g)});
    group_[i] = g;
    // What the node learnt of the root namespace's addresses belongs to its old bridge.
    ip({"-n", namespace_name(i), "neigh", "flush", "all"});
    moved = true;
  }
  if (moved)
    ip({"neigh", "flush", "to", "10.77." + std::to_string(id_) + ".0/24"});
}

void netns_lab::heal() {
  std::vector<std::size_t> all(size_);
  for (std::size_t i = 0; i < size_; ++i)
    all[i] = i;
  partition(std::vector<std::vector<std::size_t>>{all});
  for (std::size_t i = 0; i < size_; ++i)
    if (cut_[i])
      restore(i);
  // The group bridges go: their root addresses must not linger as sources of old connections.
  for (; bridges_ > 1; --bridges_)
    ip({"link", "del", group_bridge(bridges_ - 1)});
}

std::map<std::string, std::string> netns_lab::neighbours(std::size_t i) const {
  auto r = run_ip({"-n", namespace_name(i), "neigh", "show"});
  if (r.code != 0)
    throw std::runtime_error("netns_lab: `ip -n " + namespace_name(i) + " neigh show` failed: " + r.output);
  // "10.77.3.254 dev kp3-1 lladdr 02:6b:03:00:00:00 REACHABLE"
  std::map<std::string, std::string> out;
  std::istringstream lines{r.output};
  for (std::string line; std::getline(lines, line);) {
    std::istringstream words{line};
    std::string address, word;
    words >> address;
    while (words >> word)
      if (word == "lladdr" && words >> word)
        out[address] = word;
  }
  return out;
}

std::string netns_lab::describe() const {
  std::string out;
  auto show = [&](const std::vector<std::string>& args) {
    out += "$ " + joined(args) + "\n" + run_ip(args).output;
  };
  show({"-br", "link", "show"});
  show({"route", "show"});
  show({"neigh", "show"});
  for (std::size_t g = 0; g < bridges_; ++g) {
    out += "$ bridge fdb show br " + group_bridge(g) + "\n";
    // `bridge` is iproute2's too; run through ip's directory.
    auto dir = ip_program().substr(0, ip_program().rfind('/') + 1);
    std::string b = dir + "bridge";
    if (::access(b.c_str(), X_OK) == 0) {
      std::vector<std::string> args{"fdb", "show", "br", group_bridge(g)};
      out += run_program(b, args).output;
    }
  }
  for (std::size_t i = 0; i < size_; ++i) {
    auto ns = namespace_name(i);
    show({"-n", ns, "-br", "addr", "show"});
    show({"-n", ns, "neigh", "show"});
    show({"-n", ns, "route", "show"});
    show({"netns", "exec", ns, "ss", "-tan"});
  }
  return out;
}

void netns_lab::set_hosts(const std::string& hosts) {
  for (std::size_t i = 0; i < size_; ++i) {
    auto dir = std::filesystem::path(netns_etc_dir) / namespace_name(i);
    std::filesystem::create_directories(dir);
    std::ofstream out{dir / "hosts", std::ios::trunc};
    out << hosts;
    if (!out.flush())
      throw std::runtime_error("netns_lab: cannot write " + (dir / "hosts").string());
  }
  hosts_ = true;
}

std::unique_ptr<child_process> netns_lab::spawn(std::size_t i, spawn_spec spec) const {
  if (hosts_) {
    // `ip netns exec` enters the namespace, bind-mounts /etc/netns/<ns>/* in a mount namespace
    // of its own and execs the program: the pid is the program's.
    spec.argv.insert(spec.argv.begin(), {ip_program(), "netns", "exec", namespace_name(i)});
    spec.netns.clear();
  } else {
    spec.netns = namespace_name(i);
  }
  return std::make_unique<child_process>(spec);
}

void netns_lab::run_in(std::size_t i, const std::function<void()>& f) const {
  auto path = std::string(netns_dir) + "/" + namespace_name(i);
  std::exception_ptr error;
  std::thread worker([&] {
    try {
      int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
      if (fd < 0)
        throw std::runtime_error("netns_lab: cannot open " + path + ": " + std::strerror(errno));
      // A network namespace switch affects only this thread; it ends with it.
      int rc = ::setns(fd, CLONE_NEWNET);
      int setns_errno = errno;
      ::close(fd);
      if (rc != 0)
        throw std::runtime_error("netns_lab: setns " + path + ": " + std::strerror(setns_errno));
      f();
    } catch (...) {
      error = std::current_exception();
    }
  });
  worker.join();
  if (error)
    std::rethrow_exception(error);
}

} // namespace kontor::test

#include "tests/support/cluster.hpp"

#include <algorithm>
#include <filesystem>
#include <ostream>
#include <set>
#include <stdexcept>

#include <boost/json.hpp>

#include "tests/support/netns_lab.hpp"
#include "tests/support/node_process.hpp"
#include "tests/support/wait.hpp"

namespace kontor::test {

namespace json = boost::json;

namespace {

/// The last `lines` lines of `text`.
std::string tail(const std::string& text, std::size_t lines) {
  std::size_t pos = text.size();
  if (pos > 0 && text[pos - 1] == '\n')
    --pos; // the final newline ends the last line
  for (std::size_t n = 0; n < lines; ++n) {
    auto nl = pos == 0 ? std::string::npos : text.rfind('\n', pos - 1);
    if (nl == std::string::npos)
      return text;
    pos = nl;
  }
  return text.substr(pos + 1);
}

/// A node's log for a failure report: its warnings, errors and membership lines (what explains
/// most cluster failures, wherever they are in the log), then its last `lines` lines.
std::string report(const std::string& text, std::size_t lines) {
  const auto last = tail(text, lines);
  const auto head = text.substr(0, text.size() - last.size());
  std::string picked;
  std::size_t n = 0;
  for (std::size_t pos = 0; pos < head.size();) {
    auto nl = head.find('\n', pos);
    auto line = head.substr(pos, nl == std::string::npos ? std::string::npos : nl - pos);
    pos = nl == std::string::npos ? head.size() : nl + 1;
    if (line.find(" WARN ") != std::string::npos || line.find(" ERROR ") != std::string::npos
        || line.find(" [cluster] ") != std::string::npos) {
      if (++n <= 60)
        picked += line + "\n";
    }
  }
  if (n > 60)
    picked += "…(" + std::to_string(n - 60) + " more)\n";
  return picked.empty() ? last : picked + "  …\n" + last;
}

std::string shorten(const std::string& s, std::size_t max = 1500) {
  return s.size() <= max ? s : s.substr(0, max) + "…(" + std::to_string(s.size()) + " bytes)";
}

/// One line of a wait report: what node answered.
std::string answer_line(const std::string& name, const endpoint& e, const http_result& r,
                        const std::string& note) {
  std::string s = "  " + name + " (" + e.host + ":" + std::to_string(e.port) + "): ";
  s += r.status == 0 ? std::string("no answer") : std::to_string(r.status) + " " + shorten(r.body);
  if (!note.empty())
    s += "  [" + note + "]";
  return s + "\n";
}

} // namespace

unsigned short logged_http_port(const std::string& log) {
  auto at = log.find("ready: HTTP on ");
  if (at == std::string::npos)
    return 0;
  auto end = log.find('\n', at);
  if (end == std::string::npos)
    return 0; // the line is still being written
  auto line = log.substr(at, end - at);
  auto colon = line.rfind(':');
  if (colon == std::string::npos)
    return 0;
  int port = std::atoi(line.c_str() + colon + 1);
  return port > 0 && port < 65536 ? static_cast<unsigned short>(port) : 0;
}

std::ostream& operator<<(std::ostream& os, const wait_outcome& w) {
  return os << (w.ok ? "held" : "did not hold before the deadline") << "; last answers:\n" << w.report;
}

std::string test_cluster::default_name(std::size_t i) {
  static const char* const greek[] = {"alpha", "beta",  "gamma",   "delta", "epsilon", "zeta",
                                      "eta",   "theta", "iota",    "kappa", "lambda",  "mu",
                                      "nu",    "xi",    "omicron", "pi",    "rho",     "sigma",
                                      "tau",   "upsilon", "phi",   "chi",   "psi",     "omega"};
  if (i < std::size(greek))
    return greek[i];
  return "node-" + std::to_string(i + 1);
}

test_cluster::test_cluster(cluster_options options) : options_(std::move(options)) {
  if (options_.nodes == 0)
    throw std::invalid_argument("test_cluster: at least one node");
  if (!options_.names.empty() && options_.names.size() != options_.nodes)
    throw std::invalid_argument("test_cluster: names for some nodes only");
  if (options_.lab && options_.lab->size() < options_.nodes)
    throw std::invalid_argument("test_cluster: the lab has fewer namespaces than nodes");
  if (options_.clustered && !options_.lab)
    ports_ = std::make_unique<port_reservation>(options_.nodes);
  nodes_.resize(options_.nodes);
  for (std::size_t i = 0; i < options_.nodes; ++i) {
    auto& n = nodes_[i];
    n.name = options_.names.empty() ? default_name(i) : options_.names[i];
    n.host = options_.lab ? options_.lab->address(i) : "127.0.0.1";
    if (options_.clustered)
      n.cluster_port = options_.lab ? options_.lab_cluster_port : (*ports_)[i];
    std::filesystem::create_directories(node_dir(i));
  }
}

test_cluster::~test_cluster() {
  for (auto& n : nodes_)
    n.process.reset(); // SIGKILL and reap
}

test_cluster::node_state& test_cluster::node(std::size_t i) {
  if (i >= nodes_.size())
    throw std::out_of_range("test_cluster: no node " + std::to_string(i));
  return nodes_[i];
}

const test_cluster::node_state& test_cluster::node(std::size_t i) const {
  if (i >= nodes_.size())
    throw std::out_of_range("test_cluster: no node " + std::to_string(i));
  return nodes_[i];
}

std::size_t test_cluster::index_of(const std::string& name) const {
  for (std::size_t i = 0; i < nodes_.size(); ++i)
    if (nodes_[i].name == name)
      return i;
  throw std::out_of_range("test_cluster: no node named " + name);
}

std::string test_cluster::node_dir(std::size_t i) const {
  return (dir_.path() / node(i).name).string();
}

std::string test_cluster::data_dir(std::size_t i) const {
  return node_dir(i) + "/data";
}

std::string test_cluster::cluster_address(std::size_t i) const {
  return node(i).host + ":" + std::to_string(node(i).cluster_port);
}

std::vector<std::string> test_cluster::command_line(std::size_t i) const {
  auto& n = node(i);
  if (options_.launch)
    return options_.launch(i, node_dir(i)).args;
  std::vector<std::string> args{"--node-name", n.name,         "--data-dir",  data_dir(i),
                                "--http-address", n.host,      "--http-port", "0"};
  if (options_.clustered) {
    std::string seeds;
    for (std::size_t k = 0; k < nodes_.size(); ++k) {
      if (options_.seeds == seed_list::others && k == i)
        continue;
      seeds += (seeds.empty() ? "" : ",") + cluster_address(k);
    }
    auto port = std::to_string(n.cluster_port);
    args.insert(args.end(), {"--cluster-port", port, "--cluster-bind-address", n.host,
                             "--cluster-advertise-address", n.host});
    // A node's own --cluster-secret (in node_args) replaces the cluster's.
    if (std::find(n.extra_args.begin(), n.extra_args.end(), "--cluster-secret") == n.extra_args.end())
      args.insert(args.end(), {"--cluster-secret", options_.secret});
    if (!seeds.empty())
      args.insert(args.end(), {"--seeds", seeds});
  }
  args.insert(args.end(), options_.args.begin(), options_.args.end());
  args.insert(args.end(), n.extra_args.begin(), n.extra_args.end());
  return args;
}

void test_cluster::start(std::size_t i) {
  auto& n = node(i);
  if (n.process && n.process->running())
    throw std::logic_error("test_cluster: " + n.name + " runs already");
  spawn_spec spec;
  spec.argv.push_back(node_binary());
  auto args = command_line(i);
  spec.argv.insert(spec.argv.end(), args.begin(), args.end());
  spec.log_path = node_dir(i) + "/start-" + std::to_string(++n.starts) + ".log";
  spec.env = options_.launch ? options_.launch(i, node_dir(i)).env : options_.env;
  spec.work_dir = node_dir(i); // no stray config file (caf-application.ini) from the test's cwd
  n.http_port = 0;
  n.process.reset(); // reaps the previous run
  n.process = options_.lab ? options_.lab->spawn(i, spec) : std::make_unique<child_process>(spec);
}

wait_outcome test_cluster::wait_http(std::size_t i, std::chrono::milliseconds timeout) {
  auto& n = node(i);
  wait_outcome out;
  if (!n.process)
    return {false, "  " + n.name + ": never started\n"};
  http_result last;
  out.ok = wait_until(
    [&] {
      if (!n.process->running())
        return true; // no use waiting
      if (n.http_port == 0)
        n.http_port = logged_http_port(n.process->log());
      if (n.http_port == 0)
        return false;
      last = get(i, "/health", 1000);
      return last.status == 200;
    },
    timeout);
  out.ok = out.ok && last.status == 200 && n.process->running();
  if (!out.ok)
    out.report = "  " + n.name + ": " + (n.process->running() ? "runs" : "exited") + ", HTTP port "
                 + std::to_string(n.http_port) + ", GET /health: "
                 + (last.status ? std::to_string(last.status) : std::string("no answer")) + "\n";
  return out;
}

wait_outcome test_cluster::wait_ready(std::size_t i, std::chrono::milliseconds timeout) {
  auto started = wait_http(i, timeout);
  if (!started)
    return started;
  http_result last;
  wait_outcome out;
  out.ok = wait_until(
    [&] {
      last = get(i, "/ready", 1000);
      return last.status == 200;
    },
    timeout);
  if (!out.ok)
    out.report = answer_line(name(i), http_endpoint(i), last, "GET /ready");
  return out;
}

void test_cluster::wait_started_or_throw(std::size_t i) {
  if (auto w = wait_ready(i, options_.ready_timeout); !w)
    throw std::runtime_error("test_cluster: " + name(i) + " did not become ready within "
                             + std::to_string(options_.ready_timeout.count()) + " ms:\n" + w.report
                             + describe());
}

void test_cluster::start_all() {
  // Start them all first: cluster nodes may need each other to become ready.
  for (std::size_t i = 0; i < size(); ++i)
    if (!running(i))
      start(i);
  for (std::size_t i = 0; i < size(); ++i)
    wait_started_or_throw(i);
}

void test_cluster::restart(std::size_t i) {
  if (running(i))
    stop(i);
  start(i);
  wait_started_or_throw(i);
}

int test_cluster::stop(std::size_t i, std::chrono::milliseconds timeout) {
  auto& n = node(i);
  return n.process ? n.process->stop(timeout) : -1;
}

void test_cluster::kill(std::size_t i) {
  if (auto& p = node(i).process)
    p->kill_hard();
}

void test_cluster::freeze(std::size_t i) {
  if (auto& p = node(i).process)
    p->freeze();
}

void test_cluster::thaw(std::size_t i) {
  if (auto& p = node(i).process)
    p->thaw();
}

bool test_cluster::running(std::size_t i) {
  auto& p = node(i).process;
  return p && p->running();
}

bool test_cluster::frozen(std::size_t i) const {
  auto& p = node(i).process;
  return p && p->frozen();
}

pid_t test_cluster::pid(std::size_t i) const {
  auto& p = node(i).process;
  return p ? p->pid() : -1;
}

std::optional<int> test_cluster::exit_code(std::size_t i) const {
  auto& p = node(i).process;
  return p ? p->exit_code() : std::nullopt;
}

std::vector<std::size_t> test_cluster::live() {
  std::vector<std::size_t> out;
  for (std::size_t i = 0; i < size(); ++i)
    if (running(i) && !frozen(i))
      out.push_back(i);
  return out;
}

std::string test_cluster::log(std::size_t i) const {
  auto& p = node(i).process;
  return p ? p->log() : std::string();
}

std::string test_cluster::describe() {
  std::string s;
  for (std::size_t i = 0; i < size(); ++i) {
    auto& n = nodes_[i];
    std::string state = !n.process           ? "never started"
                        : n.process->running() ? (n.process->frozen() ? "frozen" : "running")
                        : "exited (" + std::to_string(n.process->exit_code().value_or(-1)) + ")";
    s += "== " + n.name + ": " + state + ", pid " + std::to_string(pid(i)) + ", HTTP " + n.host + ":"
         + std::to_string(n.http_port);
    if (options_.clustered)
      s += ", cluster " + cluster_address(i);
    s += ", start " + std::to_string(n.starts) + "\n" + report(log(i), 15);
  }
  return s;
}

endpoint test_cluster::http_endpoint(std::size_t i) const {
  return {node(i).host, node(i).http_port};
}

http_result test_cluster::request(std::size_t i, const std::string& method, const std::string& target,
                                  const std::string& body, int timeout_ms) {
  auto e = http_endpoint(i);
  if (e.port == 0)
    return {};
  std::string bytes = method + " " + target + " HTTP/1.1\r\nHost: " + e.host + "\r\n";
  if (!body.empty() || method == "POST" || method == "PUT")
    bytes += "Content-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) + "\r\n";
  bytes += "\r\n" + body;
  http_client c{e.host, e.port, timeout_ms};
  return c.raw(bytes); // one attempt: a frozen node costs one timeout, not two
}

std::unique_ptr<http_client> test_cluster::client(std::size_t i, int timeout_ms) const {
  auto e = http_endpoint(i);
  return std::make_unique<http_client>(e.host, e.port, timeout_ms);
}

wait_outcome test_cluster::wait_joint(const std::vector<std::size_t>& nodes, const std::string& target,
                                      const std::function<bool(const std::vector<json::value>&)>& pred,
                                      std::chrono::milliseconds timeout) {
  wait_outcome out;
  std::vector<std::string> lines(nodes.size());
  out.ok = wait_until(
    [&] {
      std::vector<json::value> bodies;
      bool all = true;
      for (std::size_t k = 0; k < nodes.size(); ++k) {
        auto r = get(nodes[k], target, 1000);
        std::string note;
        json::value v;
        if (r.status == 200) {
          json::error_code ec;
          v = json::parse(r.body, ec);
          if (ec)
            note = "not JSON";
        } else {
          note = "not 200";
        }
        lines[k] = answer_line(name(nodes[k]), http_endpoint(nodes[k]), r, note);
        all = all && note.empty();
        bodies.push_back(std::move(v));
      }
      return all && pred(bodies);
    },
    timeout);
  out.report = "GET " + target + "\n";
  for (auto& l : lines)
    out.report += l;
  return out;
}

wait_outcome test_cluster::wait_all(const std::vector<std::size_t>& nodes, const std::string& target,
                                    const json_predicate& pred, std::chrono::milliseconds timeout) {
  return wait_joint(
    nodes, target,
    [&](const std::vector<json::value>& bodies) {
      for (std::size_t k = 0; k < nodes.size(); ++k)
        if (!pred(nodes[k], bodies[k]))
          return false;
      return true;
    },
    timeout);
}

wait_outcome test_cluster::wait_all(const std::string& target, const json_predicate& pred,
                                    std::chrono::milliseconds timeout) {
  return wait_all(live(), target, pred, timeout);
}

std::optional<members_view> test_cluster::members(std::size_t i, int timeout_ms) {
  auto r = get(i, "/cluster/members", timeout_ms);
  json::error_code ec;
  auto v = json::parse(r.body, ec);
  if (r.status != 200 || ec)
    return std::nullopt;
  return parse_members(v);
}

std::optional<shards_view> test_cluster::shards(std::size_t i, int timeout_ms) {
  auto r = get(i, "/cluster/shards", timeout_ms);
  json::error_code ec;
  auto v = json::parse(r.body, ec);
  if (r.status != 200 || ec)
    return std::nullopt;
  return parse_shards(v);
}

wait_outcome test_cluster::wait_members(const std::vector<std::size_t>& observers,
                                        const std::function<bool(const members_view&)>& pred,
                                        std::chrono::milliseconds timeout) {
  return wait_all(
    observers, "/cluster/members",
    [&](std::size_t, const json::value& body) {
      auto view = parse_members(body);
      return view && pred(*view);
    },
    timeout);
}

wait_outcome test_cluster::wait_members_up(std::size_t n, std::chrono::milliseconds timeout) {
  return wait_members(live(), [&](const members_view& v) { return converged_up(v, n); }, timeout);
}

wait_outcome test_cluster::wait_members_up(const std::vector<std::size_t>& observers,
                                           const std::vector<std::size_t>& up,
                                           std::chrono::milliseconds timeout) {
  std::vector<std::string> names;
  for (auto i : up)
    names.push_back(name(i));
  return wait_members(observers, [&](const members_view& v) { return converged_up(v, names); }, timeout);
}

wait_outcome test_cluster::wait_leader_agreed(const std::vector<std::size_t>& observers,
                                              std::chrono::milliseconds timeout) {
  return wait_joint(
    observers, "/cluster/members",
    [&](const std::vector<json::value>& bodies) {
      std::vector<members_view> views;
      for (auto& b : bodies) {
        auto v = parse_members(b);
        if (!v)
          return false;
        views.push_back(std::move(*v));
      }
      return leader_agreed(views);
    },
    timeout);
}

wait_outcome test_cluster::wait_shards_allocated(const std::vector<std::size_t>& observers,
                                                 std::chrono::milliseconds timeout) {
  std::set<std::string> names;
  for (auto& n : nodes_)
    names.insert(n.name);
  return wait_all(
    observers, "/cluster/shards",
    [&](std::size_t, const json::value& body) {
      auto v = parse_shards(body);
      return v && all_allocated(*v, names);
    },
    timeout);
}

load_result test_cluster::load(
  std::size_t count, std::size_t threads, const std::function<load_request(std::size_t)>& make,
  const std::function<void(std::size_t, const load_request&, const http_result&)>& observe,
  int timeout_ms) const {
  std::vector<endpoint> endpoints;
  for (std::size_t i = 0; i < size(); ++i)
    endpoints.push_back(http_endpoint(i));
  return spread_load(endpoints, count, threads, make, observe, timeout_ms);
}

} // namespace kontor::test

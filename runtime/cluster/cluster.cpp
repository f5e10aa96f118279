#include "runtime/cluster/cluster.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <random>
#include <set>
#include <sstream>

#include <caf/all.hpp>
#include <caf/io/all.hpp>
#include <caf/io/basp_broker.hpp>

#include "runtime/cluster/messages.hpp"
#include "runtime/core/ids.hpp"
#include "runtime/core/log.hpp"

namespace kontor::cluster {

namespace {

namespace fs = std::filesystem;
using clock_type = std::chrono::steady_clock;

constexpr const char* component = "cluster";
/// A TCP connect that takes longer than this counts as failed (a partitioned peer's SYNs are
/// dropped; CAF's own connect would block its middleman for minutes).
constexpr std::chrono::milliseconds probe_timeout{500};
constexpr std::chrono::milliseconds connect_timeout{3000};
constexpr std::chrono::milliseconds join_timeout{3000};
constexpr std::chrono::milliseconds min_retry{250};
constexpr std::chrono::milliseconds max_retry{2000};

/// Random 64 bits (incarnations, node ids).
std::uint64_t random64() {
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  return rng();
}

std::string hex64(std::uint64_t v) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string out(16, '0');
  for (int i = 15; i >= 0; --i, v >>= 4)
    out[static_cast<std::size_t>(i)] = digits[v & 0xf];
  return out;
}

/// The secret as it travels: a digest, so that logs and captures do not show it.
std::string secret_digest(const std::string& secret) {
  return hex64(stable_hash("kontor-cluster-secret/1:" + secret));
}

/// Equal digests, compared in constant time.
bool same_digest(const std::string& a, const std::string& b) {
  if (a.size() != b.size())
    return false;
  unsigned char diff = 0;
  for (std::size_t i = 0; i < a.size(); ++i)
    diff |= static_cast<unsigned char>(a[i] ^ b[i]);
  return diff == 0;
}

/// "host:port" split; nullopt when malformed.
std::optional<std::pair<std::string, std::uint16_t>> split_address(const std::string& address) {
  auto colon = address.rfind(':');
  if (colon == std::string::npos || colon == 0)
    return std::nullopt;
  int port = std::atoi(address.c_str() + colon + 1);
  if (port <= 0 || port > 65535)
    return std::nullopt;
  return std::pair{address.substr(0, colon), static_cast<std::uint16_t>(port)};
}

/// Every IPv4 address `host` resolves to, sorted ("" when none). Blocking: off the daemon.
std::vector<std::string> resolve(const std::string& host) {
  addrinfo hints{};
  hints.ai_family = AF_INET;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  std::vector<std::string> out;
  if (::getaddrinfo(host.c_str(), nullptr, &hints, &res) != 0)
    return out;
  for (auto* p = res; p != nullptr; p = p->ai_next) {
    char buf[INET_ADDRSTRLEN];
    auto* in = reinterpret_cast<sockaddr_in*>(p->ai_addr);
    if (::inet_ntop(AF_INET, &in->sin_addr, buf, sizeof buf))
      out.emplace_back(buf);
  }
  ::freeaddrinfo(res);
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

/// A non-blocking TCP connection to ip:port that opened within `timeout`; -1 when none did.
int open_tcp(const std::string& ip, std::uint16_t port, std::chrono::milliseconds timeout) {
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  if (::inet_pton(AF_INET, ip.c_str(), &addr.sin_addr) != 1)
    return -1;
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return -1;
  bool ok = false;
  int rc = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  if (rc == 0) {
    ok = true;
  } else if (errno == EINPROGRESS) {
    pollfd p{fd, POLLOUT, 0};
    if (::poll(&p, 1, static_cast<int>(timeout.count())) == 1) {
      int err = 0;
      socklen_t len = sizeof err;
      ok = ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err == 0;
    }
  }
  if (!ok) {
    ::close(fd);
    return -1;
  }
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return fd;
}

/// Whether a TCP connection to ip:port opens within `timeout` (then closed at once).
bool probe(const std::string& ip, std::uint16_t port, std::chrono::milliseconds timeout) {
  int fd = open_tcp(ip, port, timeout);
  if (fd < 0)
    return false;
  ::close(fd);
  return true;
}

/// The seeds, each host expanded to its addresses (config order, each host's addresses sorted),
/// as ip:port; and this node's own address the same way.
struct seed_list {
  std::vector<std::string> addresses;
  std::vector<std::string> own;
};

seed_list expand_seeds(const std::vector<std::string>& seeds, const std::string& advertised) {
  seed_list out;
  auto expand = [](const std::string& hostport, std::vector<std::string>& into) {
    auto split = split_address(hostport);
    if (!split)
      return;
    for (auto& ip : resolve(split->first)) {
      auto a = ip + ":" + std::to_string(split->second);
      if (std::find(into.begin(), into.end(), a) == into.end())
        into.push_back(std::move(a));
    }
  };
  for (const auto& s : seeds)
    expand(s, out.addresses);
  expand(advertised, out.own);
  return out;
}

// ---- the daemon ----

struct peer {
  std::uint64_t incarnation = 0;
  caf::actor daemon;              ///< its daemon over our direct connection (invalid: none)
  bool connecting = false;
  clock_type::time_point next_attempt{};
  std::chrono::milliseconds backoff{min_retry};
  phi_detector detector;
  bool heard = false;             ///< a heartbeat of this incarnation arrived
  bool unreachable = false;       ///< the current verdict
  clock_type::time_point appeared{};
  std::uint64_t seen_version = 0; ///< the view version its heartbeats report
  bool services_asked = false;
  service_map services;
};

struct daemon_state {
  cluster_settings settings;
  member self;
  std::string digest;
  membership view;
  bool joined = false;
  std::map<node_id, peer> peers;
  std::vector<caf::actor> subscribers;
  std::function<void(const cluster_state&)> publish; ///< to cluster::state() readers
  // joining
  clock_type::time_point join_started{};
  std::chrono::milliseconds join_backoff{min_retry};
  std::vector<std::string> join_queue; ///< addresses of this round (ip:port), tried in order
  std::size_t join_index = 0;
  std::size_t cluster_answers = 0; ///< answers of this round from nodes already in a cluster
  std::size_t contact_points = 0;  ///< addresses the seeds expanded to this round (own included)
  std::size_t logged_contact_points = static_cast<std::size_t>(-1); ///< the count last logged as too few
  bool first_seed = false;
  bool join_round = false;

  // downing
  std::set<node_id> unreachable_set;
  clock_type::time_point unstable_since{};
  // leaving
  bool leave_requested = false;
  bool exit_requested = false;
  bool stopped = false;
  static inline const char* name = "kontor.cluster";
};

using self_ptr = caf::stateful_actor<daemon_state>*;

cluster_state snapshot(self_ptr self) {
  auto& st = self->state;
  cluster_state out;
  out.self = st.self.id;
  out.self_incarnation = st.self.incarnation;
  out.view = st.view;
  out.joined = st.joined;
  out.services[st.self.id] = st.settings.services;
  for (const auto& [id, p] : st.peers) {
    out.reachable[id] = p.daemon && p.heard && !p.unreachable;
    if (p.daemon && p.services_asked && !p.services.empty())
      out.services[id] = p.services;
  }
  // The leader: the oldest up or leaving member this node reaches.
  for (const auto* m : out.serving())
    if (out.reaches(m->id)) {
      out.leader = m->id;
      break;
    }
  return out;
}

void publish(self_ptr self) {
  auto& st = self->state;
  auto state = snapshot(self);
  st.publish(state);
  for (auto& s : st.subscribers)
    self->send(s, state);
}

/// Ends this node: once, with a clear log line.
void fatal(self_ptr self, exit_code code, const std::string& why) {
  auto& st = self->state;
  if (st.stopped)
    return;
  st.stopped = true;
  log(code == exit_code::graceful ? log_level::info : log_level::error, component, why);
  if (st.settings.on_exit)
    st.settings.on_exit(code, why);
}

bool is_leader(self_ptr self) {
  auto state = snapshot(self);
  return state.joined && state.leader == self->state.self.id;
}

/// The daemon of the current leader, if this node is connected to it (or is it).
caf::actor leader_daemon(self_ptr self) {
  auto state = snapshot(self);
  if (state.leader.empty())
    return {};
  if (state.leader == self->state.self.id)
    return caf::actor_cast<caf::actor>(self);
  auto i = self->state.peers.find(state.leader);
  return i == self->state.peers.end() ? caf::actor{} : i->second.daemon;
}

void broadcast_view(self_ptr self) {
  auto& st = self->state;
  for (auto& [id, p] : st.peers)
    if (p.daemon)
      self->send(p.daemon, view_atom::value, st.view);
}

/// Makes `peers` match the view: new members get an entry, gone ones lose theirs.
void sync_peers(self_ptr self) {
  auto& st = self->state;
  const auto now = clock_type::now();
  for (auto i = st.peers.begin(); i != st.peers.end();) {
    const auto* m = st.view.find(i->first);
    if (m == nullptr || m->status == member_status::removed || m->status == member_status::down) {
      i = st.peers.erase(i);
      continue;
    }
    ++i;
  }
  for (const auto& m : st.view.members) {
    if (m.id == st.self.id || m.status == member_status::down || m.status == member_status::removed)
      continue;
    auto& p = st.peers[m.id];
    if (p.incarnation != m.incarnation) {
      // A new member, or a new incarnation of one: start afresh (the connection is to the
      // node's address and may be reused).
      auto daemon = std::move(p.daemon);
      p = peer{};
      p.detector = phi_detector{st.settings.failure_detector};
      p.incarnation = m.incarnation;
      p.appeared = now;
      p.daemon = std::move(daemon);
    }
  }
}

void maintain_connections(self_ptr self);

/// Applies a view newer than ours. Exits when it says this node is down, removed or replaced.
void apply_view(self_ptr self, membership view) {
  auto& st = self->state;
  if (view.version <= st.view.version || st.stopped)
    return;
  const auto* me = view.find(st.self.id);
  if (me == nullptr || me->incarnation != st.self.incarnation) {
    const bool was_member = st.joined;
    st.view = std::move(view);
    if (was_member)
      fatal(self, st.exit_requested ? exit_code::graceful : exit_code::fenced,
            st.exit_requested
              ? "left the cluster; exiting"
              : "this node is no longer a member (removed, or replaced by a newer incarnation); "
                "stopping its shards and exiting");
    return;
  }
  if (me->status == member_status::down) {
    st.view = std::move(view);
    fatal(self, exit_code::fenced,
          "this node was downed by the cluster (the others could not reach it); stopping its "
          "shards and exiting");
    return;
  }
  const auto before = st.view.version;
  st.view = std::move(view);
  st.self = *st.view.find(st.self.id);
  if (st.self.status == member_status::removed
      || (st.self.status == member_status::exiting && st.exit_requested)) {
    publish(self);
    fatal(self, exit_code::graceful, "left the cluster; exiting");
    return;
  }
  if (!st.joined) {
    st.joined = true;
    log(log_level::info, component,
        "joined the cluster as " + st.self.name + " (age " + std::to_string(st.self.age) + ")");
  }
  std::string summary;
  for (const auto& m : st.view.members)
    summary += (summary.empty() ? "" : ", ") + m.name + "=" + to_string(m.status);
  log(log_level::info, component,
      "membership v" + std::to_string(st.view.version) + " (was v" + std::to_string(before)
        + "): " + summary);
  sync_peers(self);
  maintain_connections(self);
  publish(self);
}

/// The leader changes the view: bump, apply locally, broadcast.
void commit_view(self_ptr self, membership next) {
  auto& st = self->state;
  next.version = st.view.version + 1;
  std::sort(next.members.begin(), next.members.end(),
            [](const member& a, const member& b) { return a.age < b.age; });
  apply_view(self, next);
  broadcast_view(self);
}

/// Members this node sees as unreachable (failure detected; not merely not heard from yet).
std::set<node_id> unreachable_members(self_ptr self) {
  std::set<node_id> out;
  for (const auto& [id, p] : self->state.peers) {
    const auto* m = self->state.view.find(id);
    if (p.unreachable && m != nullptr && m->status != member_status::exiting)
      out.insert(id);
  }
  return out;
}

/// Updates every peer's verdict from its detector, connection and heartbeats.
bool update_reachability(self_ptr self) {
  auto& st = self->state;
  const auto now = clock_type::now();
  const auto grace = st.settings.failure_detector.acceptable_pause
                     + 10 * st.settings.failure_detector.heartbeat_interval;
  bool changed = false;
  for (auto& [id, p] : st.peers) {
    bool unreachable;
    if (!p.daemon)
      unreachable = p.heard || now - p.appeared > grace; // lost, or never connected in time
    else if (!p.heard)
      unreachable = now - p.appeared > grace;
    else
      unreachable = !p.detector.available(now);
    if (unreachable != p.unreachable) {
      p.unreachable = unreachable;
      changed = true;
      const auto* m = st.view.find(id);
      std::string detail;
      if (unreachable)
        detail = !p.daemon  ? " (no connection)"
                 : !p.heard ? " (no heartbeat since it joined)"
                            : " (phi " + std::to_string(static_cast<int>(p.detector.phi(now))) + ")";
      log(unreachable ? log_level::warn : log_level::info, component,
          (m ? m->name : id) + " is " + (unreachable ? "unreachable" + detail : "reachable again"));
    }
  }
  return changed;
}

/// Keep-majority: once the unreachable set has been stable for stable-after, the side with more
/// than half of the members (a tie: the side with the oldest) downs the others; a node on the
/// other side exits.
void run_downing(self_ptr self) {
  auto& st = self->state;
  if (!st.joined || (st.self.status != member_status::up && st.self.status != member_status::leaving))
    return;
  auto unreachable = unreachable_members(self);
  const auto now = clock_type::now();
  if (unreachable != st.unreachable_set) {
    st.unreachable_set = unreachable;
    st.unstable_since = now;
    return;
  }
  if (unreachable.empty() || now - st.unstable_since < st.settings.stable_after)
    return;
  std::vector<const member*> counted;
  for (const auto& m : st.view.members)
    if (m.status != member_status::down && m.status != member_status::removed
        && m.status != member_status::exiting)
      counted.push_back(&m);
  std::size_t reachable = 0;
  const member* oldest = nullptr;
  for (const auto* m : counted) {
    if (!unreachable.count(m->id))
      ++reachable;
    if (oldest == nullptr || m->age < oldest->age)
      oldest = m;
  }
  const bool majority = 2 * reachable > counted.size()
                        || (2 * reachable == counted.size() && oldest && !unreachable.count(oldest->id));
  if (!majority) {
    fatal(self, exit_code::fenced,
          "on the minority side of a partition (reaches " + std::to_string(reachable) + " of "
            + std::to_string(counted.size())
            + " members for longer than stable-after); stopping its shards and exiting");
    return;
  }
  if (!is_leader(self))
    return;
  auto next = st.view;
  std::string names;
  for (auto& m : next.members)
    if (unreachable.count(m.id)) {
      m.status = member_status::down;
      names += (names.empty() ? "" : ", ") + m.name;
    }
  log(log_level::warn, component,
      "downing " + names + " (unreachable for longer than stable-after; this side has "
        + std::to_string(reachable) + " of " + std::to_string(counted.size()) + " members)");
  st.unreachable_set.clear();
  commit_view(self, std::move(next));
}

/// The leader's moves when every member is reachable and has seen the current view.
void run_leader_actions(self_ptr self) {
  auto& st = self->state;
  if (!is_leader(self))
    return;
  for (const auto& [id, p] : st.peers) {
    const auto* m = st.view.find(id);
    if (m != nullptr && m->status == member_status::exiting)
      continue; // it is going away: it need not see anything more
    if (!p.daemon || !p.heard || p.unreachable || p.seen_version != st.view.version)
      return; // no convergence
  }
  auto next = st.view;
  bool changed = false;
  next.members.erase(std::remove_if(next.members.begin(), next.members.end(),
                                    [&](const member& m) {
                                      if (m.status == member_status::removed) {
                                        changed = true;
                                        return true;
                                      }
                                      return false;
                                    }),
                     next.members.end());
  for (auto& m : next.members) {
    if (m.status == member_status::joining) {
      m.status = member_status::up;
      changed = true;
    } else if (m.status == member_status::exiting) {
      m.status = member_status::removed;
      changed = true;
    }
  }
  if (changed)
    commit_view(self, std::move(next));
}

void send_heartbeats(self_ptr self) {
  auto& st = self->state;
  heartbeat hb{st.self.id, st.self.incarnation, st.view.version};
  for (auto& [id, p] : st.peers)
    if (p.daemon)
      self->send(p.daemon, hb);
}

/// Opens a connection to `address` (host:port) off the daemon's thread: a TCP probe with a short
/// timeout first (CAF's own connect blocks its middleman for minutes on a partitioned peer),
/// then CAF's connect. Answers (tag, address, daemon) — an invalid daemon when it failed.
template <class Tag>
void spawn_connector(self_ptr self, const std::string& address) {
  auto me = caf::actor_cast<caf::actor>(self);
  auto mm = self->home_system().middleman().actor_handle();
  auto tls = self->state.settings.tls_loaded;
  self->spawn<caf::detached>([me, mm, address, tls](caf::event_based_actor* c) -> caf::behavior {
    auto split = split_address(address);
    auto failed = [&] {
      c->send(me, Tag::value, address, caf::actor{});
      c->quit();
      return caf::behavior{};
    };
    auto answer = [=](caf::node_id&, caf::strong_actor_ptr& ptr, std::set<std::string>&) {
      c->send(me, Tag::value, address, caf::actor_cast<caf::actor>(ptr));
      c->quit();
    };
    auto fail = [=](caf::error&) {
      c->send(me, Tag::value, address, caf::actor{});
      c->quit();
    };
    if (tls) {
      // TLS: the connection and its handshake are made here, then CAF's BASP broker does its
      // own handshake over the session (as it would over a connection its middleman made).
      if (!split)
        return failed();
      const auto deadline = clock_type::now() + connect_timeout;
      for (const auto& ip : resolve(split->first)) {
        int fd = open_tcp(ip, split->second, probe_timeout);
        if (fd < 0)
          continue;
        auto ssl = tls->session(fd, false);
        auto shaken = ssl ? handshake_until(ssl.get(), fd, deadline)
                          : kontor::expected<void, std::string>{std::string{"out of memory"}};
        if (!shaken) {
          log(log_level::warn, component,
              "TLS handshake with " + ip + ":" + std::to_string(split->second) + " ("
                + address + ") failed: " + shaken.error());
          ::close(fd);
          continue;
        }
        auto& sys = c->home_system();
        auto basp = sys.middleman().named_broker<caf::io::basp_broker>(caf::atom("BASP"));
        c->request(basp, connect_timeout, caf::connect_atom::value,
                   make_scribe(sys, fd, std::move(ssl)), split->second)
          .then(answer, fail);
        return {[](caf::unit_t) {}};
      }
      return failed();
    }
    bool open = false;
    if (split)
      for (const auto& ip : resolve(split->first))
        if (probe(ip, split->second, probe_timeout)) {
          open = true;
          break;
        }
    if (!open)
      return failed();
    c->request(mm, connect_timeout, caf::connect_atom::value, split->first, split->second)
      .then(answer, fail);
    return {[](caf::unit_t) {}};
  });
}

/// Connects to every member it has no daemon handle of, and asks connected ones for services.
void maintain_connections(self_ptr self) {
  auto& st = self->state;
  const auto now = clock_type::now();
  for (const auto& m : st.view.members) {
    if (m.id == st.self.id || m.status == member_status::down || m.status == member_status::removed)
      continue;
    auto& p = st.peers[m.id];
    if (p.daemon) {
      if (!p.services_asked) {
        p.services_asked = true;
        auto id = m.id;
        self->request(p.daemon, connect_timeout, services_atom::value)
          .then(
            [=](service_map& services) {
              auto i = self->state.peers.find(id);
              if (i == self->state.peers.end())
                return;
              if (services.empty()) {
                i->second.services_asked = false; // ask again at the next tick
                return;
              }
              i->second.services = std::move(services);
              publish(self);
            },
            [=](caf::error& err) {
              auto i = self->state.peers.find(id);
              if (i == self->state.peers.end())
                return;
              i->second.services_asked = false; // ask again at the next tick
              const auto* m = self->state.view.find(id);
              log(log_level::warn, component,
                  "asking " + (m ? m->name : id) + " for its services failed ("
                    + self->home_system().render(err) + "); asking again");
            });
      }
      continue;
    }
    if (p.connecting || now < p.next_attempt)
      continue;
    p.connecting = true;
    spawn_connector<connected_atom>(self, m.address);
  }
}

/// A connection attempt to a member ended.
void on_connected(self_ptr self, const std::string& address, caf::actor daemon) {
  auto& st = self->state;
  for (auto& [id, p] : st.peers) {
    const auto* m = st.view.find(id);
    if (m == nullptr || m->address != address || !p.connecting)
      continue;
    p.connecting = false;
    if (!daemon) {
      p.next_attempt = clock_type::now() + p.backoff;
      p.backoff = std::min(p.backoff * 2, max_retry);
      return;
    }
    p.backoff = min_retry;
    p.daemon = daemon;
    p.services_asked = false;
    self->monitor(daemon);
    log(log_level::info, component, "connected to " + m->name + " at " + address);
    maintain_connections(self);
    publish(self);
    return;
  }
}

/// A member's daemon is gone (its connection dropped): a fast hint, it is unreachable now.
void on_down(self_ptr self, const caf::down_msg& msg) {
  auto& st = self->state;
  for (auto& [id, p] : st.peers) {
    if (!p.daemon || p.daemon.address() != msg.source)
      continue;
    p.daemon = nullptr;
    p.services.clear();
    p.services_asked = false;
    p.next_attempt = clock_type::now() + min_retry;
    p.backoff = min_retry;
    const auto* m = st.view.find(id);
    if (p.heard && !p.unreachable) {
      p.unreachable = true;
      log(log_level::warn, component,
          (m ? m->name : id) + " is unreachable (its connection dropped)");
    } else {
      log(log_level::info, component, "the connection to " + (m ? m->name : id) + " dropped");
    }
    publish(self);
    return;
  }
}

// ---- joining ----

/// Ends a round of join attempts: forms a new cluster (the first seed, when nobody answered for
/// seed-timeout) or tries again later.
void join_round_failed(self_ptr self) {
  auto& st = self->state;
  st.join_round = false;
  const auto waited = clock_type::now() - st.join_started;
  const bool enough = st.settings.seeds.empty()
                      || st.contact_points >= st.settings.required_contact_points;
  if ((st.first_seed || st.join_queue.empty()) && st.cluster_answers == 0
      && (waited >= st.settings.seed_timeout || st.settings.seeds.empty()) && !enough
      && st.logged_contact_points != st.contact_points) {
    st.logged_contact_points = st.contact_points;
    log(log_level::warn, component,
        "the seeds expand to " + std::to_string(st.contact_points) + " of the "
          + std::to_string(st.settings.required_contact_points)
          + " addresses required to form a new cluster (required-contact-points); waiting for "
            "more to resolve or for a cluster to answer");
  }
  if ((st.first_seed || st.join_queue.empty()) && st.cluster_answers == 0
      && (waited >= st.settings.seed_timeout || st.settings.seeds.empty()) && enough) {
    membership view;
    auto me = st.self;
    me.status = member_status::up;
    me.age = 1;
    view.next_age = 2;
    view.members.push_back(me);
    if (!st.settings.seeds.empty())
      log(log_level::info, component,
          "no other seed answered for " + std::to_string(st.settings.seed_timeout.count())
            + " ms; this node, the first seed, forms a new cluster");
    commit_view(self, std::move(view));
    return;
  }
  st.cluster_answers = 0;
  // A random part in the wait, so that starting nodes do not probe each other in lock step.
  const auto jitter = std::chrono::milliseconds(random64() % 200);
  self->delayed_send(self, st.join_backoff + jitter, attempt_atom::value);
  st.join_backoff = std::min(st.join_backoff * 2, max_retry);
}

/// Tries the next address of the round.
void join_next(self_ptr self) {
  auto& st = self->state;
  if (st.joined || st.stopped)
    return;
  if (st.join_index >= st.join_queue.size() || st.join_index > 32) // redirect loops end too
    return join_round_failed(self);
  spawn_connector<attempt_atom>(self, st.join_queue[st.join_index]);
}

/// The connection to the current join address is open (or failed): ask it to let us in.
void on_join_connected(self_ptr self, const std::string& address, caf::actor seed) {
  auto& st = self->state;
  if (st.joined || st.stopped || !st.join_round || st.join_index >= st.join_queue.size()
      || st.join_queue[st.join_index] != address)
    return;
  auto skip = [self] {
    ++self->state.join_index;
    join_next(self);
  };
  if (!seed)
    return skip();
  join_request req{st.self, st.digest, st.settings.number_of_shards, protocol_version};
  self->request(seed, join_timeout, join_atom::value, std::move(req))
    .then(
      [=](join_reply& reply) {
        auto& st = self->state;
        if (st.joined || st.stopped)
          return;
        switch (reply.outcome) {
          case join_outcome::welcome:
            st.join_round = false;
            apply_view(self, std::move(reply.view));
            return;
          case join_outcome::refused:
            fatal(self, exit_code::refused,
                  "the cluster at " + address + " refused this node: " + reply.reason);
            return;
          case join_outcome::redirect:
            ++st.cluster_answers;
            st.join_queue.insert(st.join_queue.begin()
                                   + static_cast<std::ptrdiff_t>(st.join_index + 1),
                                 reply.leader_address);
            return skip();
          case join_outcome::not_ready:
            return skip();
          case join_outcome::no_leader:
            ++st.cluster_answers; // a cluster exists: do not form another
            return skip();
        }
      },
      [=](caf::error&) { skip(); });
}

/// Starts a round: expands the seeds through DNS off the daemon's thread.
void start_join_round(self_ptr self) {
  auto& st = self->state;
  if (st.joined || st.stopped || st.join_round)
    return;
  st.join_round = true;
  auto me = caf::actor_cast<caf::actor>(self);
  auto seeds = st.settings.seeds;
  auto own = st.self.address;
  self->spawn<caf::detached>([me, seeds, own](caf::event_based_actor* c) {
    auto list = expand_seeds(seeds, own);
    bool first = !list.addresses.empty()
                 && std::find(list.own.begin(), list.own.end(), list.addresses.front())
                      != list.own.end();
    std::vector<std::string> others;
    for (auto& a : list.addresses)
      if (std::find(list.own.begin(), list.own.end(), a) == list.own.end())
        others.push_back(a);
    c->send(me, attempt_atom::value, std::move(others), first, list.addresses.size());
  });
}

// ---- a member's requests (join, leave, exit) at the leader ----

join_reply handle_join(self_ptr self, join_request& req) {
  auto& st = self->state;
  join_reply out;
  const auto& j = req.joiner;
  auto refuse = [&](std::string why) {
    log(log_level::error, component,
        "refused the join of " + j.name + " at " + j.address + ": " + why);
    out.outcome = join_outcome::refused;
    out.reason = std::move(why);
    return out;
  };
  if (req.protocol != protocol_version)
    return refuse("it speaks cluster protocol " + std::to_string(req.protocol) + ", this cluster "
                  + std::to_string(protocol_version));
  if (!same_digest(req.secret_digest, st.digest))
    return refuse("its cluster secret differs from this cluster's");
  if (req.number_of_shards != st.settings.number_of_shards)
    return refuse("it has " + std::to_string(req.number_of_shards) + " shards, this cluster "
                  + std::to_string(st.settings.number_of_shards));
  if (!st.joined) {
    out.outcome = join_outcome::not_ready;
    out.reason = "this node is not in a cluster yet";
    return out;
  }
  auto state = snapshot(self);
  if (state.leader != st.self.id) {
    const auto* leader = st.view.find(state.leader);
    if (leader == nullptr) {
      out.outcome = join_outcome::no_leader;
      out.reason = "no leader is reachable";
      return out;
    }
    out.outcome = join_outcome::redirect;
    out.leader_address = leader->address;
    return out;
  }
  if (const auto* known = st.view.find(j.id); known && known->incarnation == j.incarnation) {
    out.outcome = join_outcome::welcome; // a retried request
    out.view = st.view;
    return out;
  }
  for (const auto& m : st.view.members)
    if (m.name == j.name && m.id != j.id && m.status != member_status::down
        && m.status != member_status::removed)
      return refuse("another live member is named " + j.name);
  auto next = st.view;
  if (next.find(j.id) != nullptr) {
    log(log_level::info, component,
        j.name + " restarted: its new incarnation replaces the old one");
    next.members.erase(std::remove_if(next.members.begin(), next.members.end(),
                                      [&](const member& m) { return m.id == j.id; }),
                       next.members.end());
  }
  auto joiner = j;
  joiner.status = member_status::joining;
  joiner.age = next.next_age++;
  next.members.push_back(joiner);
  log(log_level::info, component, j.name + " at " + j.address + " joins");
  commit_view(self, std::move(next));
  out.outcome = join_outcome::welcome;
  out.view = st.view;
  return out;
}

void handle_member_request(self_ptr self, const member_ref& who, member_status from,
                           member_status to) {
  auto& st = self->state;
  if (!is_leader(self))
    return;
  auto next = st.view;
  auto* m = next.find(who.id);
  if (m == nullptr || m->incarnation != who.incarnation || m->status != from)
    return;
  m->status = to;
  log(log_level::info, component, m->name + " is " + to_string(to));
  commit_view(self, std::move(next));
}

/// Sends a leave or exit request for this node to the leader until the view shows it.
void request_of_leader(self_ptr self, bool exit) {
  auto& st = self->state;
  if (st.stopped)
    return;
  member_ref me{st.self.id, st.self.incarnation};
  auto leader = leader_daemon(self);
  if (!leader)
    return;
  if (exit)
    self->send(leader, exit_atom::value, me);
  else
    self->send(leader, leave_atom::value, me);
}

void tick(self_ptr self) {
  auto& st = self->state;
  if (st.stopped)
    return;
  self->delayed_send(self, st.settings.failure_detector.heartbeat_interval, tick_atom::value);
  if (!st.joined)
    return;
  send_heartbeats(self);
  if (update_reachability(self))
    publish(self);
  maintain_connections(self);
  run_downing(self);
  if (st.stopped)
    return;
  run_leader_actions(self);
  // Repeat a leave or exit until the leader has taken it into the view.
  if (st.exit_requested && st.self.status == member_status::leaving)
    request_of_leader(self, true);
  else if (st.leave_requested && st.self.status == member_status::up)
    request_of_leader(self, false);
}

caf::behavior daemon_actor(self_ptr self, cluster_settings settings, member me,
                           std::function<void(const cluster_state&)> publish_fn) {
  auto& st = self->state;
  st.settings = std::move(settings);
  st.self = std::move(me);
  st.digest = secret_digest(st.settings.secret);
  st.publish = std::move(publish_fn);
  self->set_down_handler([=](caf::down_msg& msg) { on_down(self, msg); });
  return {
    [=](start_atom, std::string& address) {
      auto& st = self->state;
      st.self.address = std::move(address);
      st.join_started = clock_type::now();
      log(log_level::info, component,
          "node " + st.self.name + " (id " + st.self.id + ", incarnation "
            + hex64(st.self.incarnation) + ")"
            + (st.self.address.empty() ? " runs alone" : " at " + st.self.address));
      self->send(self, tick_atom::value);
      start_join_round(self);
    },
    // joining
    [=](attempt_atom) { start_join_round(self); },
    [=](attempt_atom, std::vector<std::string>& addresses, bool first, std::size_t expanded) {
      auto& st = self->state;
      st.first_seed = first;
      st.contact_points = expanded;
      st.join_queue = std::move(addresses);
      st.join_index = 0;
      join_next(self);
    },
    [=](attempt_atom, const std::string& address, caf::actor& seed) {
      on_join_connected(self, address, std::move(seed));
    },
    [=](join_atom, join_request& req) { return handle_join(self, req); },
    // membership
    [=](view_atom, membership& view) { apply_view(self, std::move(view)); },
    [=](view_atom) { return self->state.view; },
    [=](const heartbeat& hb) {
      auto& st = self->state;
      auto i = st.peers.find(hb.from);
      if (i == st.peers.end() || i->second.incarnation != hb.incarnation)
        return;
      auto& p = i->second;
      // The sender's handle is not used to talk back: a handle taken from an incoming message
      // was seen to route nowhere (requests to it timed out for good while heartbeats kept
      // coming, with CAF 0.17.6). Every node talks through the handle its own connect returned.
      const bool first = !p.heard;
      p.heard = true;
      p.detector.heartbeat(clock_type::now());
      p.seen_version = hb.version;
      if (first)
        publish(self); // reachable now: the snapshot counts a member only once it was heard
      if (hb.version > st.view.version && p.daemon) {
        auto id = hb.from;
        self->request(p.daemon, connect_timeout, view_atom::value)
          .then([=](membership& view) { apply_view(self, std::move(view)); },
                [](caf::error&) {});
      } else if (hb.version < st.view.version && p.daemon) {
        self->send(p.daemon, view_atom::value, st.view);
      }
    },
    [=](services_atom) { return self->state.settings.services; },
    [=](connected_atom, const std::string& address, caf::actor& daemon) {
      on_connected(self, address, std::move(daemon));
    },
    [=](leave_atom, const member_ref& who) {
      handle_member_request(self, who, member_status::up, member_status::leaving);
    },
    [=](exit_atom, const member_ref& who) {
      handle_member_request(self, who, member_status::leaving, member_status::exiting);
    },
    // local
    [=](subscribe_atom, caf::actor& who) {
      self->state.subscribers.push_back(who);
      self->send(who, snapshot(self));
    },
    [=](leave_atom) {
      auto& st = self->state;
      st.leave_requested = true;
      if (!st.joined || st.view.members.size() == 1) {
        // Alone (or not in a cluster): nothing to hand over to anyone.
        st.exit_requested = true;
        if (st.joined && st.self.status == member_status::up) {
          auto next = st.view;
          next.find(st.self.id)->status = member_status::leaving;
          commit_view(self, std::move(next));
        }
        return;
      }
      request_of_leader(self, false);
    },
    [=](exit_atom) {
      auto& st = self->state;
      st.exit_requested = true;
      if (!st.joined || st.view.members.size() == 1)
        return fatal(self, exit_code::graceful, "left the cluster; exiting");
      request_of_leader(self, true);
    },
    [=](tick_atom) { tick(self); },
  };
}

} // namespace

// ---- cluster ----

struct cluster::shared {
  mutable std::mutex mutex;
  cluster_state state;
};

kontor::expected<node_id, cluster_error> load_or_create_node_id(const fs::path& data_dir) {
  std::error_code ec;
  fs::create_directories(data_dir, ec);
  if (ec)
    return cluster_error{"cannot create " + data_dir.string() + ": " + ec.message()};
  const auto path = data_dir / "node-id";
  if (fs::exists(path, ec)) {
    std::ifstream in(path);
    std::string id;
    std::getline(in, id);
    if (id.size() != 32 || id.find_first_not_of("0123456789abcdef") != std::string::npos)
      return cluster_error{path.string() + " does not hold a node id (32 hex digits)"};
    return id;
  }
  const auto id = hex64(random64()) + hex64(random64());
  const auto tmp = data_dir / "node-id.tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << id << "\n";
    out.flush();
    if (!out)
      return cluster_error{"cannot write " + tmp.string()};
  }
  int fd = ::open(tmp.c_str(), O_RDONLY);
  if (fd >= 0) {
    ::fsync(fd);
    ::close(fd);
  }
  fs::rename(tmp, path, ec);
  if (ec)
    return cluster_error{"cannot create " + path.string() + ": " + ec.message()};
  int dir = ::open(data_dir.c_str(), O_RDONLY | O_DIRECTORY);
  if (dir >= 0) {
    ::fsync(dir);
    ::close(dir);
  }
  return id;
}

kontor::expected<std::unique_ptr<cluster>, cluster_error> cluster::start(caf::actor_system& sys,
                                                                        cluster_settings settings) {
  auto id = load_or_create_node_id(settings.data_dir);
  if (!id)
    return id.error();
  if (settings.tls.enabled()) {
    auto tls = tls_context::load(settings.tls);
    if (!tls)
      return cluster_error{tls.error()};
    settings.tls_loaded = std::move(*tls);
  }
  std::unique_ptr<cluster> out{new cluster()};
  out->self_ = *id;
  out->shared_ = std::make_shared<shared>();
  member me;
  me.id = *id;
  me.incarnation = random64();
  me.name = settings.node_name;
  auto publish_fn = [weak = std::weak_ptr<shared>(out->shared_)](const cluster_state& s) {
    if (auto sh = weak.lock()) {
      std::lock_guard lock{sh->mutex};
      sh->state = s;
    }
  };
  {
    std::lock_guard lock{out->shared_->mutex};
    out->shared_->state.self = me.id;
    out->shared_->state.self_incarnation = me.incarnation;
  }
  // The daemon waits for its address: publishing needs the actor, the address needs the port.
  // Scheduled, not detached: it is published and talks to other nodes, and CAF 0.17.6 can hang
  // in the actor system's destructor when a detached actor did (see runtime/stream/log_server).
  // Its blocking work (DNS, TCP probes) runs in short-lived detached actors that talk locally.
  out->daemon_ = sys.spawn(daemon_actor, settings, me, publish_fn);
  std::uint16_t port = 0;
  std::string host = settings.advertise_address;
  if (settings.port != 0 || !settings.seeds.empty()) {
    // The port is ours, not CAF's: the front door admits BASP peers and logs anything else.
    front_door_settings fs;
    fs.bind_address = settings.bind_address;
    fs.port = settings.port;
    fs.tls = settings.tls_loaded;
    auto door = front_door::open(sys, out->daemon_, fs);
    if (!door) {
      caf::anon_send_exit(out->daemon_, caf::exit_reason::user_shutdown);
      return cluster_error{"cannot listen on the cluster port " + settings.bind_address + ":"
                           + std::to_string(settings.port) + ": " + door.error()};
    }
    out->door_ = std::move(*door);
    port = out->door_->port();
    if (host.empty() && settings.bind_address != "0.0.0.0")
      host = settings.bind_address;
    if (host.empty()) {
      char name[256] = {};
      ::gethostname(name, sizeof name - 1);
      host = name;
    }
  }
  caf::anon_send(out->daemon_, start_atom::value,
                 port == 0 ? std::string{} : host + ":" + std::to_string(port));
  out->port_ = port;
  return out;
}

cluster::~cluster() {
  stop();
}

cluster_state cluster::state() const {
  std::lock_guard lock{shared_->mutex};
  return shared_->state;
}

void cluster::leave() {
  caf::anon_send(daemon_, leave_atom::value);
}

void cluster::ready_to_exit() {
  caf::anon_send(daemon_, exit_atom::value);
}

void cluster::stop() {
  door_.reset(); // no new connections; those admitted are CAF's
  if (daemon_)
    caf::anon_send_exit(daemon_, caf::exit_reason::user_shutdown);
}

} // namespace kontor::cluster

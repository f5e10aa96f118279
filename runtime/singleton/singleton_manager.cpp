#include "runtime/singleton/singleton_manager.hpp"

#include <atomic>
#include <deque>
#include <map>
#include <optional>
#include <set>
#include <vector>

#include <caf/all.hpp>

#include "runtime/cluster/messages.hpp"
#include "runtime/core/log.hpp"

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(kontor::singleton::singleton_factory)

namespace kontor::singleton {

namespace {

using clock_type = std::chrono::steady_clock;
constexpr const char* component = "singleton";
/// (locate_atom, name) → the instance if it runs on the asked node (else an invalid actor).
using locate_atom = caf::atom_constant<caf::atom("sg_where")>;
/// (handover_atom, name, from): the old oldest stopped its instance; the new one may start.
using handover_atom = caf::atom_constant<caf::atom("sg_hand")>;
using restart_atom = caf::atom_constant<caf::atom("sg_rst")>;
using sweep_atom = caf::atom_constant<caf::atom("sg_sweep")>;
/// Local: (attach_atom, cluster daemon).
using attach_atom = caf::atom_constant<caf::atom("sg_attach")>;
constexpr std::chrono::milliseconds locate_timeout{1000};
constexpr std::chrono::milliseconds relocate_after{50};
constexpr std::chrono::milliseconds sweep_every{100};

/// The member that should run singletons: the oldest with status up (a leaving one hands over).
std::optional<cluster::node_id> target_of(const cluster::cluster_state& st) {
  const cluster::member* best = nullptr;
  for (const auto& m : st.view.members)
    if (m.status == cluster::member_status::up && (best == nullptr || m.age < best->age))
      best = &m;
  if (best == nullptr)
    return std::nullopt;
  return best->id;
}

// ---- the manager: runs the instances this node should run ----

struct entry {
  singleton_factory factory;
  caf::actor instance;
  bool stopping = false;                  ///< asked to stop (this node no longer the target)
  bool restart_pending = false;
  std::set<cluster::node_id> handed_over; ///< older members that stopped theirs for us
  bool hand_over_owed = false;            ///< stopped ours: tell the target until it is gone
};

struct manager_state {
  bool standalone = false;
  bool have_state = false;
  cluster::cluster_state cluster;
  std::map<std::string, entry> singletons;
  std::chrono::milliseconds restart_delay{0};
  std::shared_ptr<std::atomic<std::size_t>> running;
  bool stopping_all = false;
  static inline const char* name = "kontor.singleton_manager";
};

using manager_ptr = caf::stateful_actor<manager_state>*;

bool is_target(manager_ptr self) {
  auto& st = self->state;
  if (st.standalone)
    return true;
  if (!st.have_state || !st.cluster.joined)
    return false;
  auto target = target_of(st.cluster);
  return target && *target == st.cluster.self;
}

/// Whether every older member has stopped its instance of `e` (down, removed, exiting, or it
/// told us it handed over).
bool predecessors_gone(manager_ptr self, const entry& e) {
  auto& st = self->state;
  if (st.standalone)
    return true;
  const auto* me = st.cluster.find(st.cluster.self);
  if (me == nullptr)
    return false;
  for (const auto& m : st.cluster.view.members) {
    if (m.age >= me->age)
      continue;
    const bool gone = m.status == cluster::member_status::down
                      || m.status == cluster::member_status::removed
                      || m.status == cluster::member_status::exiting;
    if (!gone && !e.handed_over.count(m.id))
      return false;
  }
  return true;
}

void reconcile(manager_ptr self);

void start_instance(manager_ptr self, const std::string& name, entry& e) {
  e.instance = e.factory(self->home_system());
  self->monitor(e.instance);
  ++*self->state.running;
  log(log_level::info, component, "started " + name + " on this node");
}

void send_hand_over(manager_ptr self, const std::string& name) {
  auto& st = self->state;
  auto target = target_of(st.cluster);
  if (!target || *target == st.cluster.self)
    return;
  if (auto mgr = st.cluster.service(*target, "singletons"))
    self->send(mgr, handover_atom::value, name, st.cluster.self);
}

/// Starts what should run here and stops what should not.
void reconcile(manager_ptr self) {
  auto& st = self->state;
  if (st.stopping_all)
    return;
  const bool target = is_target(self);
  for (auto& [name, e] : st.singletons) {
    if (target) {
      e.hand_over_owed = false;
      if (!e.instance && !e.restart_pending && predecessors_gone(self, e))
        start_instance(self, name, e);
    } else {
      if (e.instance && !e.stopping) {
        e.stopping = true;
        log(log_level::info, component,
            "stopping " + name + " here: an older member or the next oldest runs it now");
        self->send_exit(e.instance, caf::exit_reason::user_shutdown);
      }
      if (e.hand_over_owed)
        send_hand_over(self, name);
    }
  }
}

caf::behavior manager_actor(manager_ptr self, bool standalone,
                            std::chrono::milliseconds restart_delay,
                            std::shared_ptr<std::atomic<std::size_t>> running) {
  auto& st = self->state;
  st.standalone = standalone;
  st.restart_delay = restart_delay;
  st.running = std::move(running);
  self->set_down_handler([=](caf::down_msg& msg) {
    auto& st = self->state;
    for (auto& [name, e] : st.singletons) {
      if (!e.instance || e.instance.address() != msg.source)
        continue;
      e.instance = nullptr;
      --*st.running;
      if (st.stopping_all)
        return;
      if (e.stopping) {
        e.stopping = false;
        e.hand_over_owed = true;
        send_hand_over(self, name);
      } else {
        log(log_level::warn, component,
            name + " stopped (" + self->home_system().render(msg.reason) + "); restarting");
        e.restart_pending = true;
        self->delayed_send(self, st.restart_delay, restart_atom::value, name);
      }
      reconcile(self);
      return;
    }
  });
  self->set_exit_handler([=](caf::exit_msg& msg) {
    auto& st = self->state;
    st.stopping_all = true;
    for (auto& [name, e] : st.singletons)
      if (e.instance)
        self->send_exit(e.instance, msg.reason);
    self->quit(msg.reason);
  });
  return {
    [=](attach_atom, caf::actor& cluster) {
      self->send(cluster, cluster::subscribe_atom::value, caf::actor_cast<caf::actor>(self));
    },
    [=](const std::string& name, singleton_factory& factory) {
      self->state.singletons[name].factory = std::move(factory);
      reconcile(self);
    },
    [=](cluster::cluster_state& state) {
      self->state.cluster = std::move(state);
      self->state.have_state = true;
      reconcile(self);
    },
    [=](locate_atom, const std::string& name) -> caf::actor {
      auto& st = self->state;
      auto i = st.singletons.find(name);
      if (i == st.singletons.end() || i->second.stopping)
        return {};
      return i->second.instance;
    },
    [=](handover_atom, const std::string& name, const cluster::node_id& from) {
      auto& st = self->state;
      if (auto i = st.singletons.find(name); i != st.singletons.end()) {
        i->second.handed_over.insert(from);
        reconcile(self);
      }
    },
    [=](restart_atom, const std::string& name) {
      if (auto i = self->state.singletons.find(name); i != self->state.singletons.end())
        i->second.restart_pending = false;
      reconcile(self);
    },
  };
}

// ---- the proxy: this node's way to one singleton, wherever it runs ----

/// A message for the singleton that arrived while no instance was known.
struct parked {
  caf::response_promise promise;
  caf::message content;
  clock_type::time_point deadline;
};

struct proxy_state {
  std::string name;
  caf::actor local_manager;
  bool standalone = false;
  cluster::cluster_state cluster;
  caf::actor instance;
  bool locating = false;
  std::deque<parked> waiting;
  std::size_t buffer = 0;
  std::chrono::milliseconds buffer_timeout{0};
  bool sweeping = false;
};

using proxy_ptr = caf::stateful_actor<proxy_state>*;

void locate(proxy_ptr self);

void flush(proxy_ptr self) {
  auto& st = self->state;
  while (!st.waiting.empty()) {
    st.waiting.front().promise.delegate(st.instance, std::move(st.waiting.front().content));
    st.waiting.pop_front();
  }
}

void schedule_locate(proxy_ptr self) {
  auto& st = self->state;
  if (st.locating)
    return;
  st.locating = true;
  self->delayed_send(self, relocate_after, locate_atom::value);
}

void locate(proxy_ptr self) {
  auto& st = self->state;
  st.locating = false;
  if (st.instance)
    return;
  caf::actor mgr;
  if (st.standalone) {
    mgr = st.local_manager;
  } else if (auto target = target_of(st.cluster)) {
    mgr = *target == st.cluster.self ? st.local_manager : st.cluster.service(*target, "singletons");
  }
  if (!mgr)
    return schedule_locate(self);
  st.locating = true;
  self->request(mgr, locate_timeout, locate_atom::value, st.name)
    .then(
      [=](caf::actor& instance) {
        auto& st = self->state;
        st.locating = false;
        if (!instance)
          return schedule_locate(self);
        st.instance = std::move(instance);
        self->monitor(st.instance);
        flush(self);
      },
      [=](caf::error&) {
        self->state.locating = false;
        schedule_locate(self);
      });
}

/// Answers messages that waited too long with an error.
void sweep(proxy_ptr self) {
  auto& st = self->state;
  st.sweeping = false;
  const auto now = clock_type::now();
  while (!st.waiting.empty() && st.waiting.front().deadline <= now) {
    st.waiting.front().promise.deliver(caf::make_error(
      caf::sec::request_timeout, "singleton " + st.name + " is unavailable (none runs now)"));
    st.waiting.pop_front();
  }
  if (!st.waiting.empty()) {
    st.sweeping = true;
    self->delayed_send(self, sweep_every, sweep_atom::value);
  }
}

caf::behavior proxy_actor(proxy_ptr self, std::string name, caf::actor local_manager,
                          bool clustered, std::size_t buffer,
                          std::chrono::milliseconds buffer_timeout) {
  auto& st = self->state;
  st.name = std::move(name);
  st.local_manager = std::move(local_manager);
  st.standalone = !clustered;
  st.buffer = buffer;
  st.buffer_timeout = buffer_timeout;
  if (st.standalone)
    schedule_locate(self);
  self->set_down_handler([=](caf::down_msg& msg) {
    if (msg.source == self->state.instance.address()) {
      self->state.instance = nullptr;
      schedule_locate(self);
    }
  });
  // An error message addressed to the proxy itself (CAF answers undeliverable async messages
  // with one) would stop it under CAF's default error handler, and nothing restarts a proxy:
  // the singleton would be unreachable for good. Log it and go on.
  self->set_error_handler([=](caf::error& err) {
    log(log_level::warn, component,
        "proxy ignored an error sent to it: " + self->home_system().render(err));
  });
  self->set_default_handler([=](caf::scheduled_actor*, caf::message_view& x) -> caf::result<caf::message> {
    auto& st = self->state;
    auto promise = self->make_response_promise();
    if (st.instance) {
      promise.delegate(st.instance, x.move_content_to_message());
      return promise;
    }
    if (st.waiting.size() >= st.buffer) {
      promise.deliver(caf::make_error(caf::sec::request_timeout,
                                      "singleton " + st.name + " is unavailable and "
                                        + std::to_string(st.buffer) + " messages wait already"));
      return promise;
    }
    st.waiting.push_back({promise, x.move_content_to_message(), clock_type::now() + st.buffer_timeout});
    if (!st.sweeping) {
      st.sweeping = true;
      self->delayed_send(self, sweep_every, sweep_atom::value);
    }
    schedule_locate(self);
    return promise;
  });
  return {
    [=](attach_atom, caf::actor& cluster) {
      self->send(cluster, cluster::subscribe_atom::value, caf::actor_cast<caf::actor>(self));
    },
    [=](cluster::cluster_state& state) {
      self->state.cluster = std::move(state);
      if (!self->state.instance)
        locate(self);
    },
    [=](locate_atom) { locate(self); },
    [=](sweep_atom) { sweep(self); },
  };
}

} // namespace

struct singleton_manager::impl {
  caf::actor_system& sys;
  singleton_settings settings;
  caf::actor manager;
  std::vector<caf::actor> proxies;
  std::shared_ptr<std::atomic<std::size_t>> running = std::make_shared<std::atomic<std::size_t>>(0);
};

singleton_manager::singleton_manager(caf::actor_system& sys, singleton_settings settings)
  : impl_(std::make_unique<impl>(impl{sys, std::move(settings), {}, {}})) {
  impl_->manager = sys.spawn(manager_actor, !impl_->settings.clustered,
                             impl_->settings.restart_delay, impl_->running);
}

singleton_manager::singleton_manager(caf::actor_system& sys, std::chrono::milliseconds restart_delay)
  : singleton_manager(sys, singleton_settings{false, restart_delay}) {}

void singleton_manager::attach(const caf::actor& cluster_daemon) {
  caf::anon_send(impl_->manager, attach_atom::value, cluster_daemon);
  for (auto& p : impl_->proxies)
    caf::anon_send(p, attach_atom::value, cluster_daemon);
}


singleton_manager::~singleton_manager() {
  stop_all();
}

caf::actor singleton_manager::start(const std::string& name, singleton_factory factory) {
  auto proxy = impl_->sys.spawn(proxy_actor, name, impl_->manager, impl_->settings.clustered,
                                impl_->settings.buffer, impl_->settings.buffer_timeout);
  impl_->proxies.push_back(proxy);
  caf::anon_send(impl_->manager, name, std::move(factory));
  return proxy;
}

const caf::actor& singleton_manager::manager() const noexcept {
  return impl_->manager;
}

std::size_t singleton_manager::running_here() const {
  return impl_->running->load();
}

void singleton_manager::stop_all() {
  if (impl_->manager)
    caf::anon_send_exit(impl_->manager, caf::exit_reason::user_shutdown);
  for (auto& p : impl_->proxies)
    caf::anon_send_exit(p, caf::exit_reason::user_shutdown);
  impl_->proxies.clear();
  impl_->manager = nullptr;
}

} // namespace kontor::singleton

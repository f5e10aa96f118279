#include "runtime/singleton/singleton_manager.hpp"

#include <deque>
#include <vector>

#include <caf/all.hpp>

#include "runtime/core/log.hpp"

namespace kontor::singleton {

namespace {

using instance_atom = caf::atom_constant<caf::atom("sgl_inst")>;
using restart_atom = caf::atom_constant<caf::atom("sgl_rst")>;

/// A message for the singleton that arrived while there was no instance.
struct parked {
  caf::response_promise promise;
  caf::message content;
};

struct proxy_state {
  caf::actor instance;
  std::deque<parked> waiting;
  static inline const char* name = "kontor.singleton_proxy";
};

/// Forwards everything to the current instance; parks messages while there is none. The host
/// tells it the instance (or none) with (instance_atom, actor).
caf::behavior proxy_actor(caf::stateful_actor<proxy_state>* self) {
  // Watching the instance itself (not only through the host) narrows the window in which a
  // message is still forwarded to an instance that just failed.
  self->set_down_handler([=](caf::down_msg& msg) {
    if (msg.source == self->state.instance.address())
      self->state.instance = nullptr;
  });
  // An error message addressed to the proxy itself (CAF answers undeliverable async messages
  // with one) would stop it under CAF's default error handler, and nothing restarts a proxy:
  // the singleton would be unreachable for good. Log it and go on.
  self->set_error_handler([=](caf::error& err) {
    log(log_level::warn, "singleton",
        "proxy ignored an error sent to it: " + self->home_system().render(err));
  });
  self->set_default_handler([=](caf::scheduled_actor*, caf::message_view& x) -> caf::result<caf::message> {
    auto& st = self->state;
    auto promise = self->make_response_promise();
    if (st.instance)
      promise.delegate(st.instance, x.move_content_to_message());
    else
      st.waiting.push_back({promise, x.move_content_to_message()});
    return promise;
  });
  return {
    [=](instance_atom, caf::actor& instance) {
      auto& st = self->state;
      st.instance = std::move(instance);
      if (!st.instance)
        return;
      self->monitor(st.instance);
      while (!st.waiting.empty()) {
        st.waiting.front().promise.delegate(st.instance, std::move(st.waiting.front().content));
        st.waiting.pop_front();
      }
    },
  };
}

struct host_state {
  std::string singleton_name;
  singleton_factory factory;
  caf::actor proxy;
  caf::actor instance;
  std::chrono::milliseconds restart_delay{0};
  bool stopping = false;
  static inline const char* name = "kontor.singleton_host";
};

void start_instance(caf::stateful_actor<host_state>* self) {
  auto& st = self->state;
  st.instance = st.factory(self->home_system());
  self->monitor(st.instance);
  self->send(st.proxy, instance_atom::value, st.instance);
  log(log_level::info, "singleton", "started " + st.singleton_name + " on this node");
}

/// Owns one singleton on this node: starts it, restarts it when it fails, stops it with itself.
caf::behavior host_actor(caf::stateful_actor<host_state>* self, std::string name,
                         singleton_factory factory, caf::actor proxy,
                         std::chrono::milliseconds restart_delay) {
  auto& st = self->state;
  st.singleton_name = std::move(name);
  st.factory = std::move(factory);
  st.proxy = std::move(proxy);
  st.restart_delay = restart_delay;
  self->set_down_handler([=](caf::down_msg& msg) {
    auto& st = self->state;
    if (msg.source != st.instance.address())
      return;
    st.instance = nullptr;
    self->send(st.proxy, instance_atom::value, caf::actor{});
    if (st.stopping)
      return;
    log(log_level::warn, "singleton",
        st.singleton_name + " stopped (" + self->home_system().render(msg.reason) + "); restarting");
    self->delayed_send(self, st.restart_delay, restart_atom::value);
  });
  self->set_exit_handler([=](caf::exit_msg& msg) {
    auto& st = self->state;
    st.stopping = true;
    if (st.instance)
      self->send_exit(st.instance, msg.reason);
    self->send_exit(st.proxy, msg.reason);
    self->quit(msg.reason);
  });
  start_instance(self);
  return {
    [=](restart_atom) {
      if (!self->state.instance && !self->state.stopping)
        start_instance(self);
    },
  };
}

} // namespace

struct singleton_manager::impl {
  caf::actor_system& sys;
  std::chrono::milliseconds restart_delay;
  std::vector<caf::actor> hosts;
};

singleton_manager::singleton_manager(caf::actor_system& sys, std::chrono::milliseconds restart_delay)
  : impl_(std::make_unique<impl>(impl{sys, restart_delay, {}})) {}

singleton_manager::~singleton_manager() {
  stop_all();
}

caf::actor singleton_manager::start(const std::string& name, singleton_factory factory) {
  auto proxy = impl_->sys.spawn(proxy_actor);
  impl_->hosts.push_back(
    impl_->sys.spawn(host_actor, name, std::move(factory), proxy, impl_->restart_delay));
  return proxy;
}

void singleton_manager::stop_all() {
  for (auto& host : impl_->hosts)
    caf::anon_send_exit(host, caf::exit_reason::user_shutdown);
  impl_->hosts.clear();
}

} // namespace kontor::singleton

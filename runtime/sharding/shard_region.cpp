#include "runtime/sharding/shard_region.hpp"

#include <deque>
#include <map>
#include <optional>
#include <set>
#include <variant>
#include <vector>

#include <caf/all.hpp>

#include "runtime/cluster/messages.hpp"
#include "runtime/core/log.hpp"
#include "runtime/persistence/journal.hpp"
#include "runtime/sharding/cluster_messages.hpp"
#include "runtime/sharding/internal.hpp"
#include "runtime/stream/catch_up.hpp"
#include "runtime/stream/messages.hpp"

namespace kontor::sharding {

// ---- shard_directory ----

std::pair<std::uint64_t, std::vector<shard_directory::entry>> shard_directory::shards() const {
  std::lock_guard lock{mutex_};
  std::vector<entry> out(table_.owners.size());
  for (std::size_t s = 0; s < out.size(); ++s) {
    out[s].owner = table_.owners[s];
    out[s].moving = s < moving_.size() && moving_[s];
    const auto* m = cluster_.find(out[s].owner);
    out[s].available = m != nullptr
                       && (m->status == cluster::member_status::up
                           || m->status == cluster::member_status::leaving)
                       && cluster_.reaches(out[s].owner);
  }
  return {table_.version, std::move(out)};
}

caf::actor shard_directory::service_of(shard_id shard, const std::string& name) const {
  std::lock_guard lock{mutex_};
  if (shard >= table_.owners.size() || table_.owners[shard].empty())
    return {};
  const auto& owner = table_.owners[shard];
  if (!cluster_.reaches(owner))
    return {};
  return cluster_.service(owner, name);
}

cluster::cluster_state shard_directory::cluster() const {
  std::lock_guard lock{mutex_};
  return cluster_;
}

bool shard_directory::routable() const {
  std::lock_guard lock{mutex_};
  return have_table_;
}

void shard_directory::update(const allocation_table& table, const std::vector<shard_id>& moving,
                             const cluster::cluster_state& cluster, bool have_table) {
  std::lock_guard lock{mutex_};
  table_ = table;
  moving_.assign(table.owners.size(), false);
  for (auto s : moving)
    if (s < moving_.size())
      moving_[s] = true;
  cluster_ = cluster;
  have_table_ = have_table;
}

namespace {

using clock_type = std::chrono::steady_clock;
constexpr const char* component = "region";
/// Local: (attach_atom, cluster daemon, coordinator proxy).
using attach_atom = caf::atom_constant<caf::atom("rg_attach")>;
using route_sweep_atom = caf::atom_constant<caf::atom("rg_sweep")>;
constexpr std::chrono::milliseconds sweep_every{50};
constexpr std::chrono::milliseconds map_retry{250};
constexpr std::uint8_t max_hops = 3;


/// What a region routes: a command for an entity, a read of its stored events, or a question
/// about it (where it lives, how far its stream is).
using routed = std::variant<entity_envelope, entity_read, entity_info_request>;

const entity_id& id_of(const routed& r) {
  return std::visit([](const auto& x) -> const entity_id& { return x.id; }, r);
}

/// A request waiting for its shard to have a reachable home.
struct waiting_request {
  caf::response_promise promise;
  routed request;
  std::uint8_t hops = 0;
  clock_type::time_point deadline;
  const char* why = ""; ///< why it waits (for the answer when it waited too long)
};

struct region_state {
  shared_settings settings;
  caf::actor reader; ///< answers entity_read from the journal, on its own thread
  std::vector<caf::actor> shards; // index: shard id; local shard actors, started on first use
  std::shared_ptr<shard_directory> directory;
  // clustered
  caf::actor coordinator;
  cluster::cluster_state cluster;
  bool have_cluster = false;
  shard_map map;
  bool have_map = false;
  std::set<shard_id> handing_off;      ///< stopped here for a move; requests wait
  std::map<shard_id, std::deque<waiting_request>> waiting;
  std::size_t waiting_total = 0;
  bool sweeping = false;
  bool map_asked = false;
  std::set<shard_id> allocation_asked;
  static inline const char* name = "kontor.region";
};

using self_ptr = caf::stateful_actor<region_state>*;

caf::error unavailable(std::string why) {
  return make_error(errc::shard_unavailable, std::move(why));
}

void publish(self_ptr self) {
  auto& st = self->state;
  if (st.directory)
    st.directory->update(st.map.table, st.map.moving, st.cluster, st.have_map);
}

caf::actor local_shard(self_ptr self, shard_id shard) {
  auto& st = self->state;
  auto& target = st.shards[shard];
  if (!target)
    target = self->spawn<caf::monitored>(shard_actor, shard, st.settings,
                                         caf::actor_cast<caf::actor>(self), st.reader);
  return target;
}

void apply_map(self_ptr self, shard_map map);

void ask_map(self_ptr self) {
  auto& st = self->state;
  if (st.map_asked || !st.coordinator)
    return;
  st.map_asked = true;
  self->request(st.coordinator, st.settings->route_timeout, map_atom::value)
    .then(
      [=](map_atom, shard_map& map) {
        self->state.map_asked = false;
        apply_map(self, std::move(map));
      },
      [=](caf::error&) {
        self->state.map_asked = false;
        self->delayed_send(self, map_retry, map_atom::value, true);
      });
}

void park(self_ptr self, shard_id shard, caf::response_promise promise, routed env,
          std::uint8_t hops, clock_type::time_point deadline, const char* why) {
  auto& st = self->state;
  if (st.waiting_total >= st.settings->route_buffer) {
    promise.deliver(unavailable("too many requests wait for shards to settle on this node (route-buffer "
                                + std::to_string(st.settings->route_buffer) + ")"));
    return;
  }
  st.waiting[shard].push_back({std::move(promise), std::move(env), hops, deadline, why});
  ++st.waiting_total;
  if (!st.sweeping) {
    st.sweeping = true;
    self->delayed_send(self, sweep_every, route_sweep_atom::value);
  }
}

/// Answers an entity_info_request for a shard this node owns: the journal's facts from the
/// reader, then whether the shard runs the entity now (no shard actor: nothing runs).
void serve_info(self_ptr self, shard_id shard, caf::response_promise promise, entity_id id) {
  auto& st = self->state;
  auto local = st.shards[shard];
  self->request(st.reader, caf::infinite, info_atom::value, id, shard)
    .then(
      [=](entity_info& info) mutable {
        info.node = self->state.settings->self_node;
        if (!local) {
          promise.deliver(std::move(info));
          return;
        }
        self->request(local, caf::infinite, info_atom::value, id)
          .then(
            [=](bool live) mutable {
              auto out = info;
              out.live = live;
              promise.deliver(std::move(out));
            },
            // The shard stopped meanwhile (a handoff): its entities are not running.
            [=](caf::error&) mutable { promise.deliver(info); });
      },
      [=](caf::error& err) mutable { promise.deliver(std::move(err)); });
}

/// Serves a request for a shard this node owns: a command goes to the shard, a read to the
/// region's reader (a thread of its own: journal reads block).
void serve_here(self_ptr self, shard_id shard, caf::response_promise promise, routed r) {
  auto& st = self->state;
  if (auto* env = std::get_if<entity_envelope>(&r)) {
    promise.delegate(local_shard(self, shard), std::move(*env));
    return;
  }
  if (auto* q = std::get_if<entity_info_request>(&r)) {
    serve_info(self, shard, std::move(promise), std::move(q->id));
    return;
  }
  // Reads block on the journal: they run on the region's reader thread. The region relays the
  // answer itself (the reader is detached and must not answer other nodes; see log_server).
  self->request(st.reader, caf::infinite, read_entity_atom::value, std::move(std::get<entity_read>(r)))
    .then([promise](entity_events& e) mutable { promise.deliver(std::move(e)); },
          [promise](caf::error& err) mutable { promise.deliver(std::move(err)); });
}

void route(self_ptr self, caf::response_promise promise, routed env, std::uint8_t hops,
           std::optional<clock_type::time_point> waiting_since = std::nullopt) {
  auto& st = self->state;
  const auto deadline = waiting_since ? *waiting_since : clock_type::now() + st.settings->route_timeout;
  const auto shard = shard_of(id_of(env), st.settings->number_of_shards);
  if (!st.settings->clustered) {
    serve_here(self, shard, std::move(promise), std::move(env));
    return;
  }
  if (!st.have_map || !st.have_cluster) {
    park(self, shard, std::move(promise), std::move(env), hops, deadline,
         "this node has no shard table yet");
    ask_map(self);
    return;
  }
  const auto& owners = st.map.table.owners;
  const bool moving = std::find(st.map.moving.begin(), st.map.moving.end(), shard)
                      != st.map.moving.end();
  if (st.handing_off.count(shard) || moving || shard >= owners.size()) {
    park(self, shard, std::move(promise), std::move(env), hops, deadline,
         st.handing_off.count(shard) ? "it is being handed off from this node" : "it is moving");
    return;
  }
  const auto& owner = owners[shard];
  if (owner.empty()) {
    park(self, shard, std::move(promise), std::move(env), hops, deadline, "it has no owner yet");
    if (st.allocation_asked.insert(shard).second && st.coordinator)
      self->send(st.coordinator, allocate_atom::value, shard);
    return;
  }
  if (owner == st.settings->self_node) {
    serve_here(self, shard, std::move(promise), std::move(env));
    return;
  }
  const auto* m = st.cluster.find(owner);
  if (m == nullptr || m->status == cluster::member_status::down
      || m->status == cluster::member_status::removed) {
    promise.deliver(unavailable("shard " + std::to_string(shard) + " is unavailable: its owner "
                                + (m ? m->name : owner)
                                + " is down; it serves again when that node returns"));
    return;
  }
  auto region = st.cluster.service(owner, "region");
  if (!st.cluster.reaches(owner) || !region) {
    park(self, shard, std::move(promise), std::move(env), hops, deadline,
         !region ? "its owner's region is not known here yet" : "its owner is unreachable");
    return;
  }
  if (hops >= max_hops) {
    promise.deliver(unavailable("shard " + std::to_string(shard)
                                + ": the nodes disagree about its owner right now"));
    return;
  }
  const auto next = static_cast<std::uint8_t>(hops + 1);
  if (auto* e = std::get_if<entity_envelope>(&env))
    promise.delegate(region, routed_envelope{std::move(*e), next});
  else if (auto* q = std::get_if<entity_info_request>(&env))
    promise.delegate(region, routed_info{std::move(*q), next});
  else
    promise.delegate(region, routed_read{std::move(std::get<entity_read>(env)), next});
}

/// Routes everything that waits again (a new table, a new cluster state, a resumed shard).
void reroute(self_ptr self) {
  auto& st = self->state;
  auto waiting = std::move(st.waiting);
  st.waiting.clear();
  st.waiting_total = 0;
  // Each keeps its deadline: routing again must not extend a request's wait.
  for (auto& [shard, queue] : waiting)
    for (auto& w : queue)
      route(self, std::move(w.promise), std::move(w.request), w.hops, w.deadline);
}

void sweep(self_ptr self) {
  auto& st = self->state;
  st.sweeping = false;
  const auto now = clock_type::now();
  for (auto i = st.waiting.begin(); i != st.waiting.end();) {
    auto& queue = i->second;
    while (!queue.empty() && queue.front().deadline <= now) {
      queue.front().promise.deliver(unavailable(
        "shard " + std::to_string(i->first) + " had no reachable home for "
        + std::to_string(st.settings->route_timeout.count()) + " ms (" + queue.front().why + ")"));
      queue.pop_front();
      --st.waiting_total;
    }
    i = queue.empty() ? st.waiting.erase(i) : std::next(i);
  }
  if (st.waiting_total > 0) {
    st.sweeping = true;
    self->delayed_send(self, sweep_every, route_sweep_atom::value);
  }
}

void apply_map(self_ptr self, shard_map map) {
  auto& st = self->state;
  if (st.have_map && map.table.version < st.map.table.version)
    return;
  st.map = std::move(map);
  st.have_map = true;
  st.allocation_asked.clear();
  // A shard stopped here for a move is either gone (another owner) or ours again.
  for (auto i = st.handing_off.begin(); i != st.handing_off.end();) {
    const auto s = *i;
    const bool moving = std::find(st.map.moving.begin(), st.map.moving.end(), s) != st.map.moving.end();
    if (moving) {
      ++i;
      continue;
    }
    i = st.handing_off.erase(i);
  }
  publish(self);
  reroute(self);
}

/// Reads the journal on a thread of its own (reads block): entities' stored events (the owner's
/// side of an entity_read, and entities' recovery) and snapshots.
caf::behavior reader_actor(caf::event_based_actor*, shared_settings settings) {
  return {
    [settings](read_snapshot_atom, const entity_id& id) {
      return snapshot_answer{settings->journal->load_snapshot(id)};
    },
    [settings](read_entity_atom, entity_read& r) -> caf::result<entity_events> {
      auto events = settings->journal->replay(r.id, r.from, r.max);
      if (!events)
        return caf::make_error(caf::sec::runtime_error, events.error().message);
      auto highest = settings->journal->highest_sequence_nr(r.id);
      if (!highest)
        return caf::make_error(caf::sec::runtime_error, highest.error().message);
      return entity_events{std::move(*events), *highest};
    },
    [settings](info_atom, const entity_id& id, shard_id shard) -> caf::result<entity_info> {
      entity_info out;
      auto highest = settings->journal->highest_sequence_nr(id);
      if (!highest)
        return caf::make_error(caf::sec::runtime_error, highest.error().message);
      out.highest = *highest;
      auto snap = settings->journal->load_snapshot(id);
      if (!snap)
        return caf::make_error(caf::sec::runtime_error, snap.error().message);
      if (*snap)
        out.snapshot_seq = (*snap)->seq;
      auto end = settings->journal->shard_end(shard);
      if (!end)
        return caf::make_error(caf::sec::runtime_error, end.error().message);
      out.shard_end = *end;
      return out;
    },
  };
}

caf::behavior region_actor(self_ptr self, shared_settings settings,
                           std::shared_ptr<shard_directory> directory) {
  self->state.settings = settings;
  self->state.reader = self->spawn<caf::detached + caf::linked>(reader_actor, settings);
  self->state.shards.resize(settings->number_of_shards);
  self->state.directory = std::move(directory);
  self->set_down_handler([=](caf::down_msg& msg) {
    for (auto& s : self->state.shards)
      if (s && s.address() == msg.source)
        s = nullptr;
  });
  self->set_exit_handler([=](caf::exit_msg& msg) {
    for (auto& s : self->state.shards)
      if (s)
        self->send_exit(s, msg.reason);
    for (auto& [shard, queue] : self->state.waiting)
      for (auto& w : queue)
        w.promise.deliver(unavailable("this node is stopping"));
    self->quit(msg.reason);
  });
  return {
    [=](entity_envelope& env) -> caf::response_promise {
      auto promise = self->make_response_promise();
      route(self, promise, std::move(env), 0);
      return promise;
    },
    [=](routed_envelope& r) -> caf::response_promise {
      auto promise = self->make_response_promise();
      route(self, promise, std::move(r.envelope), r.hops);
      return promise;
    },
    [=](entity_read& r) -> caf::response_promise {
      auto promise = self->make_response_promise();
      route(self, promise, std::move(r), 0);
      return promise;
    },
    [=](routed_read& r) -> caf::response_promise {
      auto promise = self->make_response_promise();
      route(self, promise, std::move(r.read), r.hops);
      return promise;
    },
    [=](entity_info_request& r) -> caf::response_promise {
      auto promise = self->make_response_promise();
      route(self, promise, std::move(r), 0);
      return promise;
    },
    [=](routed_info& r) -> caf::response_promise {
      auto promise = self->make_response_promise();
      route(self, promise, std::move(r.request), r.hops);
      return promise;
    },
    [=](attach_atom, caf::actor& cluster, caf::actor& coordinator) {
      self->state.coordinator = std::move(coordinator);
      self->send(cluster, cluster::subscribe_atom::value, caf::actor_cast<caf::actor>(self));
      ask_map(self);
    },
    [=](cluster::cluster_state& state) {
      self->state.cluster = std::move(state);
      self->state.have_cluster = true;
      publish(self);
      reroute(self);
    },
    [=](map_atom, shard_map& map) { apply_map(self, std::move(map)); },
    [=](map_atom, bool) { ask_map(self); },
    [=](route_sweep_atom) { sweep(self); },
    // ---- moving shards (the coordinator asks) ----
    [=](handoff_atom, shard_id shard) -> caf::result<stopped_atom, shard_offset> {
      auto& st = self->state;
      if (shard >= st.shards.size())
        return caf::make_error(caf::sec::invalid_argument, "no such shard");
      st.handing_off.insert(shard);
      auto promise = self->make_response_promise<stopped_atom, shard_offset>();
      auto finish = [=]() mutable {
        auto end = self->state.settings->journal->shard_end(shard);
        if (!end)
          promise.deliver(caf::make_error(caf::sec::runtime_error, end.error().message));
        else
          promise.deliver(stopped_atom::value, *end);
      };
      auto& local = st.shards[shard];
      if (!local) {
        finish();
        return promise;
      }
      auto shard_actor = local;
      local = nullptr; // requests from now on wait in the region
      self->request(shard_actor, caf::infinite, handoff_atom::value)
        .then([=](stopped_atom, shard_offset) mutable { finish(); },
              [=](caf::error&) mutable { finish(); }); // it is gone either way
      log(log_level::info, component, "handing off shard " + std::to_string(shard));
      return promise;
    },
    [=](resume_atom, shard_id shard) {
      if (self->state.handing_off.erase(shard) > 0) {
        log(log_level::info, component, "shard " + std::to_string(shard) + " stays here");
        reroute(self);
      }
    },
    [=](take_over_atom, shard_id shard, caf::actor& source, shard_offset until)
      -> caf::result<ready_atom, shard_offset> {
      auto promise = self->make_response_promise<ready_atom, shard_offset>();
      // Copy the shard's log from the old owner up to where it stopped (the catch-up stream).
      auto worker = stream::spawn_catch_up(self->home_system(), *self->state.settings->journal,
                                           stream::catch_up_spec{source, shard, until});
      self->request(worker, caf::infinite, stream::catch_up_atom::value)
        .then(
          [=](stream::catch_up_result& r) mutable {
            if (!r.ok()) {
              promise.deliver(caf::make_error(caf::sec::runtime_error,
                                              "copying shard " + std::to_string(shard) + " failed ("
                                                + stream::to_string(r.code) + "): " + r.message));
              return;
            }
            log(log_level::info, component,
                "took over shard " + std::to_string(shard) + " up to position "
                  + std::to_string(r.end) + " (" + std::to_string(r.imported) + " events copied)");
            promise.deliver(ready_atom::value, r.end);
          },
          [=](caf::error& err) mutable { promise.deliver(std::move(err)); });
      return promise;
    },
    [=](stats_atom) {
      auto& st = self->state;
      shard_stats out;
      out.events_appended = st.settings->stats->events_appended.load();
      for (shard_id s = 0; s < st.shards.size(); ++s)
        if (st.shards[s]) {
          out.shards.push_back(s);
          out.entities.push_back(static_cast<std::uint64_t>(
            std::max<std::int64_t>(0, st.settings->stats->live_by_shard[s].load())));
        }
      return out;
    },
  };
}

} // namespace

caf::actor spawn_shard_region(caf::actor_system& sys, region_settings settings,
                              std::shared_ptr<shard_directory> directory) {
  auto shared = std::make_shared<const region_settings>(std::move(settings));
  return sys.spawn(region_actor, std::move(shared), std::move(directory));
}

void attach_region(const caf::actor& region, const caf::actor& cluster_daemon,
                   const caf::actor& coordinator_proxy) {
  caf::anon_send(region, attach_atom::value, cluster_daemon, coordinator_proxy);
}

} // namespace kontor::sharding

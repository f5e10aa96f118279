#include <algorithm>

#include <caf/all.hpp>

#include "runtime/sharding/cluster_messages.hpp"
#include "runtime/sharding/internal.hpp"

// Passivation (as in Akka Cluster Sharding): the shard notes when it last routed a request to
// each entity, and a periodic sweep stops those idle for `passivate_after`. From the moment it
// decides to stop one, the shard buffers that entity's requests, sends it stop_atom (which the
// entity handles only after any command in flight), and when the entity is gone delivers the
// buffered requests to a fresh incarnation. So no request is lost or reordered by passivation.

namespace kontor::sharding {

namespace {

using self_ptr = caf::stateful_actor<shard_state>*;
using clock = std::chrono::steady_clock;

std::chrono::milliseconds sweep_interval(const region_settings& s) {
  return std::max(s.passivate_after / 4, std::chrono::milliseconds(10));
}

void schedule_sweep(self_ptr self) {
  auto& st = self->state;
  if (st.sweep_scheduled)
    return;
  st.sweep_scheduled = true;
  self->delayed_send(self, sweep_interval(*st.settings), sweep_atom::value);
}

live_entity& start_entity(self_ptr self, const entity_id& id) {
  auto& st = self->state;
  auto me = caf::actor_cast<caf::actor>(self);
  auto queued = std::make_shared<std::atomic<std::int64_t>>(0);
  // Lazily: it starts with the first command already in its mailbox, so a recovery that fails
  // answers that command with the reason (not a generic "stopped").
  auto entity = self->spawn<caf::monitored + caf::lazy_init>(entity_actor, id, st.id, me,
                                                             st.reader, st.settings, queued);
  auto& live = st.live.emplace(id, live_entity{entity, clock::now(), queued}).first->second;
  st.ids.emplace(entity.address(), id);
  st.settings->stats->live_entities++;
  st.settings->stats->live_by_shard[st.id]++;
  schedule_sweep(self);
  return live;
}

/// Hands a request to a live entity; it counts in the entity's and the shard's queue until the
/// entity answers it.
void hand_to(self_ptr self, live_entity& entity, caf::response_promise& promise, entity_envelope&& env) {
  entity.queued->fetch_add(1, std::memory_order_relaxed);
  self->state.settings->stats->queued_by_shard[self->state.id].fetch_add(1, std::memory_order_relaxed);
  promise.delegate(entity.actor, std::move(env));
}

/// Stops entity `id` between commands: from now on its requests are buffered and go to a fresh
/// incarnation once it is gone.
void passivate(self_ptr self, const entity_id& id, const caf::actor& entity) {
  auto& st = self->state;
  if (st.stopping.count(id) > 0)
    return;
  st.stopping.emplace(id, std::vector<buffered_request>{});
  self->send(entity, stop_atom::value);
}

/// Stops entities idle for longer than passivate_after.
void sweep(self_ptr self) {
  auto& st = self->state;
  st.sweep_scheduled = false;
  auto idle_since = clock::now() - st.settings->passivate_after;
  for (auto& [id, entity] : st.live) {
    if (entity.last_active <= idle_since)
      passivate(self, id, entity.actor);
  }
  if (!st.live.empty())
    schedule_sweep(self);
}

void on_entity_down(self_ptr self, const caf::down_msg& msg) {
  auto& st = self->state;
  auto i = st.ids.find(msg.source);
  if (i == st.ids.end())
    return;
  auto id = std::move(i->second);
  st.ids.erase(i);
  if (auto gone = st.live.find(id); gone != st.live.end()) {
    // Requests it never answered (left in its mailbox) leave the shard's queue with it.
    st.settings->stats->queued_by_shard[st.id].fetch_sub(gone->second.queued->load(),
                                                         std::memory_order_relaxed);
    st.live.erase(gone);
  }
  st.settings->stats->live_entities--;
  st.settings->stats->live_by_shard[st.id]--;
  std::vector<buffered_request> buffered;
  if (auto waiting = st.stopping.find(id); waiting != st.stopping.end()) {
    buffered = std::move(waiting->second);
    st.stopping.erase(waiting);
    st.settings->stats->passivations++;
  }
  if (st.handing_off) {
    // The shard is moving: requests that waited for this entity go back to the region, which
    // holds them until it knows where the shard lives.
    for (auto& req : buffered)
      req.promise.delegate(st.region, std::move(req.envelope));
    if (st.live.empty() && st.handoff.pending()) {
      // Every entity has stopped, each after its command in flight: the shard can move.
      st.handoff.deliver(stopped_atom::value, shard_offset{0});
      self->quit();
    }
    return;
  }
  if (buffered.empty())
    return;
  auto& entity = start_entity(self, id);
  for (auto& req : buffered)
    hand_to(self, entity, req.promise, std::move(req.envelope));
}

} // namespace

caf::behavior shard_actor(caf::stateful_actor<shard_state>* self, shard_id shard,
                          shared_settings settings, caf::actor region, caf::actor reader) {
  self->state.id = shard;
  self->state.settings = std::move(settings);
  self->state.region = std::move(region);
  self->state.reader = std::move(reader);
  self->set_down_handler([=](caf::down_msg& msg) { on_entity_down(self, msg); });
  self->set_exit_handler([=](caf::exit_msg& msg) {
    for (auto& kvp : self->state.live)
      self->send_exit(kvp.second.actor, msg.reason);
    self->quit(msg.reason);
  });
  return {
    [=](entity_envelope& env) -> caf::response_promise {
      auto& st = self->state;
      auto promise = self->make_response_promise();
      if (auto waiting = st.stopping.find(env.id); waiting != st.stopping.end()) {
        waiting->second.push_back({promise, std::move(env)});
        return promise;
      }
      const auto& limits = *st.settings;
      const auto shard_queue = st.settings->stats->queued_by_shard[st.id].load(std::memory_order_relaxed);
      if (limits.max_shard_queue > 0 && shard_queue >= static_cast<std::int64_t>(limits.max_shard_queue)) {
        st.settings->stats->refused_shard_full++;
        promise.deliver(make_error(errc::overloaded, "shard " + std::to_string(st.id) + " has "
                                                       + std::to_string(shard_queue)
                                                       + " requests queued (max-shard-queue)"));
        return promise;
      }
      auto i = st.live.find(env.id);
      if (i != st.live.end()) {
        const auto queued = i->second.queued->load(std::memory_order_relaxed);
        if (limits.max_entity_queue > 0 && queued >= static_cast<std::int64_t>(limits.max_entity_queue)) {
          st.settings->stats->refused_entity_full++;
          promise.deliver(make_error(errc::overloaded, "the entity " + env.id + " has "
                                                         + std::to_string(queued)
                                                         + " requests queued (max-entity-queue)"));
          return promise;
        }
        i->second.last_active = clock::now();
        hand_to(self, i->second, promise, std::move(env));
      } else {
        auto& started = start_entity(self, env.id);
        hand_to(self, started, promise, std::move(env));
      }
      return promise;
    },
    [=](sweep_atom) { sweep(self); },
    // An entity with an empty stream asks to be stopped (entity_actor).
    [=](passivate_atom) {
      auto& st = self->state;
      auto who = st.ids.find(caf::actor_cast<caf::actor_addr>(self->current_sender()));
      if (who == st.ids.end())
        return;
      if (auto live = st.live.find(who->second); live != st.live.end())
        passivate(self, who->second, live->second.actor);
    },
    // Whether entity `id` runs here now (started, not passivating).
    [=](info_atom, const entity_id& id) {
      const auto& st = self->state;
      return st.live.count(id) > 0 && st.stopping.count(id) == 0;
    },
    // Stop every entity (each after the command it is handling) and answer once all are gone;
    // the region holds new requests meanwhile.
    [=](handoff_atom) -> caf::result<stopped_atom, shard_offset> {
      auto& st = self->state;
      st.handing_off = true;
      auto promise = self->make_response_promise<stopped_atom, shard_offset>();
      if (st.live.empty()) {
        self->quit();
        return caf::result<stopped_atom, shard_offset>{stopped_atom::value, shard_offset{0}};
      }
      st.handoff = promise;
      for (auto& [id, entity] : st.live)
        passivate(self, id, entity.actor);
      return promise;
    },
  };
}

} // namespace kontor::sharding

#include "runtime/projection/poller.hpp"

#include <algorithm>
#include <map>
#include <memory>
#include <optional>

#include <caf/all.hpp>

#include "runtime/core/log.hpp"
#include "runtime/projection/messages.hpp"

namespace kontor::projection {

namespace {

using clock_type = std::chrono::steady_clock;

struct subscriber {
  caf::actor actor;
  std::vector<shard_offset> next;      ///< per shard, the next position to read
  bool busy = false;                   ///< reading its pages or delivering a batch
  clock_type::time_point last_sent{};  ///< when the last batch went out
  std::uint64_t generation = 0;        ///< bumped when it subscribes again
};

/// The pages read for one subscriber from every source, until the last source answered.
struct gather {
  std::size_t waiting = 0;
  std::uint64_t generation = 0;
  event_batch batch;
};

struct poller_state {
  poller_settings settings;
  std::map<caf::actor_addr, subscriber> subscribers;
  std::chrono::milliseconds idle{0};
  bool poll_queued = false;
  std::size_t rotation = 0; ///< first shard of the next read, for fairness between shards
  static inline const char* name = "kontor.poller";
};

using self_ptr = caf::stateful_actor<poller_state>*;

void queue_poll(self_ptr self, std::chrono::milliseconds delay) {
  auto& st = self->state;
  if (st.poll_queued)
    return;
  st.poll_queued = true;
  if (delay.count() == 0)
    self->send(self, poll_atom::value);
  else
    self->delayed_send(self, delay, poll_atom::value);
}

/// After a delivery or an empty read: poll again at once when there was progress, else later.
void settle(self_ptr self, subscriber& sub, bool progress) {
  auto& st = self->state;
  sub.busy = false;
  if (progress) {
    st.idle = st.settings.idle_min;
    queue_poll(self, std::chrono::milliseconds(0));
  } else {
    queue_poll(self, st.idle);
    st.idle = std::min(st.idle * 2, st.settings.idle_max);
  }
}

void deliver(self_ptr self, const caf::actor_addr& who, event_batch batch) {
  auto& st = self->state;
  auto& sub = st.subscribers.at(who);
  sub.last_sent = clock_type::now();
  // Where to read again if the batch is lost: each shard's first position in it.
  std::vector<std::pair<shard_id, shard_offset>> firsts;
  for (const auto& g : batch.shards)
    firsts.emplace_back(g.shard, g.from);
  self->request(sub.actor, st.settings.delivery_timeout, std::move(batch))
    .then(
      [=](applied_atom, shard_positions& durable) {
        auto i = self->state.subscribers.find(who);
        if (i == self->state.subscribers.end())
          return;
        bool progress = false;
        auto& next = i->second.next;
        for (std::size_t s = 0; s < next.size() && s < durable.next.size(); ++s) {
          progress = progress || durable.next[s] > next[s];
          next[s] = durable.next[s];
        }
        // The read model's positions are the truth: an unchanged one (a failed commit) means
        // the same events are read again, after a pause.
        settle(self, i->second, progress);
      },
      [=](caf::error& err) {
        log(log_level::warn, "poller", "a batch was not applied: " + self->home_system().render(err));
        auto i = self->state.subscribers.find(who);
        if (i == self->state.subscribers.end())
          return;
        for (auto [shard, from] : firsts)
          if (shard < i->second.next.size())
            i->second.next[shard] = std::min(i->second.next[shard], from);
        settle(self, i->second, false);
      });
}

/// One source answered (or failed) for `who`; the last one sends the batch.
void gathered(self_ptr self, const caf::actor_addr& who, const std::shared_ptr<gather>& g) {
  if (--g->waiting > 0)
    return;
  auto i = self->state.subscribers.find(who);
  if (i == self->state.subscribers.end())
    return;
  auto& sub = i->second;
  if (g->generation != sub.generation) { // it subscribed again meanwhile: read afresh
    settle(self, sub, true);
    return;
  }
  auto& groups = g->batch.shards;
  groups.erase(std::remove_if(groups.begin(), groups.end(),
                              [&](const stream::shard_events& e) {
                                return e.events.empty() || e.shard >= sub.next.size()
                                       || e.from != sub.next[e.shard];
                              }),
               groups.end());
  if (groups.empty()) {
    settle(self, sub, false);
    return;
  }
  deliver(self, who, std::move(g->batch));
}

/// Reads the next pages for `sub` from every node that holds one of its shards.
void read_for(self_ptr self, const caf::actor_addr& who, subscriber& sub) {
  auto& st = self->state;
  const auto n = sub.next.size();
  std::map<caf::actor, std::vector<stream::shard_cursor>> by_source;
  for (std::size_t k = 0; k < n; ++k) {
    const auto s = static_cast<shard_id>((st.rotation + k) % n);
    if (auto source = st.settings.locate(s))
      by_source[source].push_back({s, sub.next[s]});
  }
  if (by_source.empty())
    return;
  sub.busy = true;
  auto g = std::make_shared<gather>();
  g->waiting = by_source.size();
  g->generation = sub.generation;
  const auto max = static_cast<std::uint32_t>(st.settings.batch_size);
  for (auto& [source, cursors] : by_source) {
    self->request(source, st.settings.read_timeout, stream::read_shards_atom::value,
                  stream::read_request{std::move(cursors), max})
      .then(
        [=](stream::read_reply& reply) {
          for (auto& page : reply.shards)
            g->batch.shards.push_back(std::move(page));
          gathered(self, who, g);
        },
        [=](caf::error& err) {
          log(log_level::warn, "poller",
              "reading shard logs failed: " + self->home_system().render(err));
          gathered(self, who, g);
        });
  }
}

void poll(self_ptr self) {
  auto& st = self->state;
  st.poll_queued = false;
  bool started = false;
  bool busy = false;
  const auto now = clock_type::now();
  std::optional<clock_type::time_point> paced; // earliest time a paced subscriber may get more
  for (auto& [addr, sub] : st.subscribers) {
    if (sub.busy) {
      busy = true;
      continue;
    }
    if (auto ready = sub.last_sent + st.settings.min_interval; now < ready) {
      paced = paced ? std::min(*paced, ready) : ready;
      continue;
    }
    read_for(self, addr, sub);
    started = started || sub.busy;
  }
  ++st.rotation;
  if (paced) {
    queue_poll(self, std::chrono::ceil<std::chrono::milliseconds>(*paced - now));
  } else if (!started && !busy && !st.subscribers.empty()) {
    // No shard could be located: look again later.
    queue_poll(self, st.idle);
    st.idle = std::min(st.idle * 2, st.settings.idle_max);
  }
}

caf::behavior poller_actor(self_ptr self, poller_settings settings) {
  self->state.settings = std::move(settings);
  self->state.idle = self->state.settings.idle_min;
  self->set_down_handler([=](caf::down_msg& msg) { self->state.subscribers.erase(msg.source); });
  return {
    [=](subscribe_atom, caf::actor& who, shard_positions& from) {
      auto& st = self->state;
      auto [it, fresh] = st.subscribers.try_emplace(who.address());
      auto& sub = it->second;
      if (fresh)
        self->monitor(who);
      sub.actor = who;
      sub.next = std::move(from.next);
      for (auto& p : sub.next)
        p = std::max<shard_offset>(p, 1);
      ++sub.generation;
      queue_poll(self, std::chrono::milliseconds(0));
    },
    [=](poll_atom) { poll(self); },
  };
}

} // namespace

caf::actor spawn_poller(caf::actor_system& sys, poller_settings settings) {
  return sys.spawn(poller_actor, std::move(settings));
}

} // namespace kontor::projection

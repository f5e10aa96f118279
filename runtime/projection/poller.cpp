#include "runtime/projection/poller.hpp"

#include <algorithm>
#include <map>

#include <caf/all.hpp>

#include "runtime/core/log.hpp"
#include "runtime/projection/messages.hpp"

namespace kontor::projection {

namespace {

using clock_type = std::chrono::steady_clock;

struct subscriber {
  caf::actor actor;
  log_offset cursor = 1;  ///< next offset to deliver
  bool in_flight = false; ///< a batch awaits its answer
  clock_type::time_point last_sent{}; ///< when the last batch went out
};

struct poller_state {
  poller_settings settings;
  std::map<caf::actor_addr, subscriber> subscribers;
  std::chrono::milliseconds idle{0};
  bool poll_queued = false;
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

void on_answer(self_ptr self, const caf::actor_addr& who, std::optional<log_offset> next) {
  auto& st = self->state;
  auto i = st.subscribers.find(who);
  if (i == st.subscribers.end())
    return;
  i->second.in_flight = false;
  if (next) {
    i->second.cursor = *next;
    st.idle = st.settings.idle_min;
    queue_poll(self, std::chrono::milliseconds(0));
  } else {
    queue_poll(self, st.settings.idle_max); // redelivered later; the read model skips duplicates
  }
}

/// Reads the next batch for every subscriber that has none in flight.
void poll(self_ptr self) {
  auto& st = self->state;
  st.poll_queued = false;
  bool delivered = false;
  bool waiting = false;
  auto now = clock_type::now();
  std::optional<clock_type::time_point> paced; // earliest time a paced subscriber may get more
  for (auto& [addr, sub] : st.subscribers) {
    if (sub.in_flight) {
      waiting = true;
      continue;
    }
    if (auto ready = sub.last_sent + st.settings.min_interval; now < ready) {
      paced = paced ? std::min(*paced, ready) : ready;
      continue;
    }
    auto page = st.settings.journal->read_log(sub.cursor, st.settings.batch_size);
    if (!page) {
      log(log_level::warn, "poller", "reading the journal failed: " + page.error().message);
      continue;
    }
    sub.cursor = page->next;
    if (page->events.empty())
      continue;
    event_batch batch;
    batch.next = page->next;
    batch.log_end = page->events.back().offset;
    if (auto end = st.settings.journal->log_end())
      batch.log_end = *end;
    batch.events = std::move(page->events);
    sub.in_flight = true;
    sub.last_sent = now;
    delivered = true;
    auto who = addr;
    self->request(sub.actor, st.settings.delivery_timeout, std::move(batch))
      .then([=](applied_atom, log_offset next) { on_answer(self, who, next); },
            [=](caf::error& err) {
              log(log_level::warn, "poller",
                  "a batch was not applied: " + self->home_system().render(err));
              on_answer(self, who, std::nullopt);
            });
  }
  if (paced) {
    queue_poll(self, std::chrono::ceil<std::chrono::milliseconds>(*paced - now));
  } else if (delivered) {
    st.idle = st.settings.idle_min;
  } else if (!waiting && !st.subscribers.empty()) {
    queue_poll(self, st.idle);
    st.idle = std::min(st.idle * 2, st.settings.idle_max);
  }
}

caf::behavior poller_actor(self_ptr self, poller_settings settings) {
  self->state.settings = settings;
  self->state.idle = settings.idle_min;
  self->set_down_handler([=](caf::down_msg& msg) { self->state.subscribers.erase(msg.source); });
  return {
    [=](subscribe_atom, caf::actor& who, log_offset from) {
      self->monitor(who);
      self->state.subscribers[who.address()] = subscriber{who, std::max<log_offset>(from, 1), false};
      queue_poll(self, std::chrono::milliseconds(0));
    },
    [=](poll_atom) { poll(self); },
  };
}

} // namespace

caf::actor spawn_poller(caf::actor_system& sys, poller_settings settings) {
  return sys.spawn<caf::detached>(poller_actor, settings);
}

} // namespace kontor::projection

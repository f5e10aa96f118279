#include "gateway/bridge.hpp"

#include <future>
#include <map>

#include <caf/all.hpp>

#include "runtime/sharding/cluster_messages.hpp"
#include "runtime/sharding/messages.hpp"

namespace kontor::gateway {

namespace {

/// A request from a non-actor caller; local only (carries a callback).
struct ask_msg {
  sharding::entity_envelope envelope;
  std::function<void(entity_answer)> done;
};

/// A read of an entity's events from a non-actor caller; local only (carries a callback).
struct read_msg {
  sharding::entity_read read;
  std::function<void(bridge::events_answer)> done;
};

/// A question about an entity from a non-actor caller; local only (carries a callback).
struct info_msg {
  sharding::entity_info_request request;
  std::function<void(bridge::info_answer)> done;
};

/// A fan-out for GET /cluster/shards; local only (carries a callback).
struct counts_msg {
  std::vector<std::pair<std::string, caf::actor>> regions;
  std::function<void(bridge::census)> done;
};

} // namespace
} // namespace kontor::gateway

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(kontor::gateway::ask_msg)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(kontor::gateway::counts_msg)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(kontor::gateway::read_msg)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(kontor::gateway::info_msg)

namespace kontor::gateway {

namespace {

using sweep_atom = caf::atom_constant<caf::atom("brg_sweep")>;
using clock_type = std::chrono::steady_clock;

entity_answer from_error(const caf::error& err) {
  entity_answer out;
  auto is = [&](sharding::errc code) {
    return err.category() == sharding::error_category
           && err.code() == static_cast<std::uint8_t>(code);
  };
  if (is(sharding::errc::journal_failure)) {
    out.code = entity_answer::status::unavailable;
    out.message = sharding::error_message(err);
  } else if (is(sharding::errc::recovery_failed)) {
    // The entity could not start: the command was never decided.
    out.code = entity_answer::status::stopped;
    out.message = sharding::error_message(err);
  } else if (is(sharding::errc::shard_unavailable)) {
    out.code = entity_answer::status::no_shard;
    out.message = sharding::error_message(err);
  } else if (is(sharding::errc::overloaded)) {
    out.code = entity_answer::status::overloaded;
    out.message = sharding::error_message(err);
  } else if (err == caf::sec::request_receiver_down) {
    // The command reached an entity that had just stopped: it was never decided.
    out.code = entity_answer::status::stopped;
    out.message = "the account's entity stopped before handling the command; nothing was written";
  } else {
    out.code = entity_answer::status::failed;
    auto msg = sharding::error_message(err);
    out.message = msg.empty() ? "the entity could not answer" : msg;
  }
  return out;
}

entity_answer timed_out() {
  return {entity_answer::status::timeout, {},
          "no answer in time; the outcome is unknown, retry with the same txId or Idempotency-Key"};
}

struct pending_request {
  clock_type::time_point deadline;
  std::function<void(entity_answer)> done;
};

/// Requests in flight, answered exactly once: by the entity, or by the sweep at the deadline.
/// Timeouts are kept here, checked by one periodic sweep, instead of one CAF request timeout
/// per command (each of those wakes CAF's clock thread twice).
struct bridge_state {
  caf::actor region;
  std::chrono::milliseconds timeout{0};
  std::map<std::uint64_t, pending_request> pending;
  std::uint64_t next_id = 0;
  bool sweeping = false;
  static inline const char* name = "kontor.bridge";
};

using self_ptr = caf::stateful_actor<bridge_state>*;

void answer(self_ptr self, std::uint64_t id, entity_answer a) {
  auto i = self->state.pending.find(id);
  if (i == self->state.pending.end())
    return; // already answered by the sweep
  auto done = std::move(i->second.done);
  self->state.pending.erase(i);
  done(std::move(a));
}

void schedule_sweep(self_ptr self) {
  auto& st = self->state;
  if (st.sweeping)
    return;
  st.sweeping = true;
  self->delayed_send(self, std::max(st.timeout / 10, std::chrono::milliseconds(5)),
                     sweep_atom::value);
}

caf::behavior bridge_actor(self_ptr self, caf::actor region, std::chrono::milliseconds timeout) {
  self->state.region = std::move(region);
  self->state.timeout = timeout;
  return {
    [=](ask_msg& msg) {
      auto& st = self->state;
      auto id = st.next_id++;
      st.pending.emplace(id, pending_request{clock_type::now() + st.timeout, std::move(msg.done)});
      schedule_sweep(self);
      self->request(st.region, caf::infinite, std::move(msg.envelope))
        .then(
          [=](std::string& reply) {
            answer(self, id, {entity_answer::status::ok, std::move(reply), {}});
          },
          [=](caf::error& err) { answer(self, id, from_error(err)); });
    },
    [=](read_msg& msg) {
      // The same deadline as commands, but one CAF timeout: reads are rare next to commands.
      auto done = std::make_shared<std::function<void(bridge::events_answer)>>(std::move(msg.done));
      self->request(self->state.region, self->state.timeout, std::move(msg.read))
        .then(
          [=](sharding::entity_events& r) {
            (*done)({entity_answer::status::ok, std::move(r.events), r.highest, {}});
          },
          [=](caf::error& err) {
            auto a = err == caf::sec::request_timeout ? timed_out() : from_error(err);
            (*done)({a.code, {}, 0, std::move(a.message)});
          });
    },
    [=](info_msg& msg) {
      auto done = std::make_shared<std::function<void(bridge::info_answer)>>(std::move(msg.done));
      self->request(self->state.region, self->state.timeout, std::move(msg.request))
        .then(
          [=](sharding::entity_info& r) {
            (*done)({entity_answer::status::ok, std::move(r.node), r.live, r.highest,
                     r.snapshot_seq, r.shard_end, {}});
          },
          [=](caf::error& err) {
            auto a = err == caf::sec::request_timeout ? timed_out() : from_error(err);
            bridge::info_answer out;
            out.code = a.code;
            out.message = std::move(a.message);
            (*done)(std::move(out));
          });
    },
    [=](counts_msg& msg) {
      struct gather {
        std::size_t waiting = 0;
        bridge::census counts;
        std::function<void(bridge::census)> done;
      };
      auto g = std::make_shared<gather>();
      g->waiting = msg.regions.size();
      g->done = std::move(msg.done);
      if (g->waiting == 0)
        return g->done({});
      auto one_done = [g] {
        if (--g->waiting == 0)
          g->done(std::move(g->counts));
      };
      for (auto& [node, region] : msg.regions)
        self->request(region, std::chrono::seconds(1), sharding::stats_atom::value)
          .then(
            [=, node = node](sharding::shard_stats& s) {
              for (std::size_t i = 0; i < s.shards.size() && i < s.entities.size(); ++i)
                g->counts.entities[s.shards[i]] = s.entities[i];
              g->counts.events_appended[node] = s.events_appended;
              one_done();
            },
            [=](caf::error&) { one_done(); });
    },
    [=](sweep_atom) {
      auto& st = self->state;
      st.sweeping = false;
      auto now = clock_type::now();
      // Ids grow with time and all share one timeout, so expired requests are at the front.
      while (!st.pending.empty() && st.pending.begin()->second.deadline <= now) {
        auto done = std::move(st.pending.begin()->second.done);
        st.pending.erase(st.pending.begin());
        done(timed_out());
      }
      if (!st.pending.empty())
        schedule_sweep(self);
    },
  };
}

} // namespace

bridge::bridge(caf::actor_system& sys, caf::actor region, std::chrono::milliseconds timeout)
  : actor_(sys.spawn(bridge_actor, std::move(region), timeout)) {}

void bridge::ask(entity_id id, std::string payload, std::function<void(entity_answer)> done) const {
  caf::anon_send(actor_, ask_msg{{std::move(id), std::move(payload)}, std::move(done)});
}

std::optional<entity_answer> await_answer(
  const std::function<void(std::function<void(entity_answer)>)>& start, std::chrono::milliseconds wait) {
  // The answer comes exactly once, on a CAF thread; the caller's thread waits for it. The
  // bridge has its own deadline (command-timeout); `wait` also covers a bridge that stopped
  // (shutdown) and never answers.
  auto answer = std::make_shared<std::promise<entity_answer>>();
  auto got = answer->get_future();
  start([answer](entity_answer a) { answer->set_value(std::move(a)); });
  if (got.wait_for(wait) != std::future_status::ready)
    return std::nullopt;
  return got.get();
}

std::optional<entity_answer> bridge::ask_and_wait(entity_id id, std::string payload,
                                                  std::chrono::milliseconds wait) const {
  return await_answer([&](std::function<void(entity_answer)> done) { ask(std::move(id), std::move(payload), std::move(done)); },
                      wait);
}

void bridge::read_events(entity_id id, sequence_nr from, std::uint32_t max,
                         std::function<void(events_answer)> done) const {
  caf::anon_send(actor_, read_msg{{std::move(id), from, max}, std::move(done)});
}

void bridge::entity_info(entity_id id, std::function<void(info_answer)> done) const {
  caf::anon_send(actor_, info_msg{{std::move(id)}, std::move(done)});
}

void bridge::entity_counts(std::vector<std::pair<std::string, caf::actor>> regions,
                           std::function<void(census)> done) const {
  caf::anon_send(actor_, counts_msg{std::move(regions), std::move(done)});
}

} // namespace kontor::gateway

#include <chrono>

#include <caf/all.hpp>

#include "runtime/core/log.hpp"
#include "runtime/persistence/journal.hpp"
#include "runtime/sharding/cluster_messages.hpp"
#include "runtime/sharding/internal.hpp"

// A persistent entity goes through explicit phases, each its own behaviour:
//   loading_snapshot → replaying (in steps of `replay_batch` events) → running ⇄ persisting.
// In every phase but `running`, commands are skipped: CAF keeps them in the mailbox, in
// order, and offers them again after the next `become` (that is the stash).

namespace kontor::sharding {

namespace {

using self_ptr = caf::stateful_actor<entity_state>*;
using expected_snapshot = persistence::expected<std::optional<persistence::snapshot>>;

epoch_ms now_ms() {
  using namespace std::chrono;
  return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

caf::behavior running(self_ptr self);

/// One request the shard handed this entity is answered: it leaves the entity's and the shard's
/// queue (backpressure counts them).
void answered(self_ptr self) {
  auto& st = self->state;
  st.queued->fetch_sub(1, std::memory_order_relaxed);
  st.settings->stats->queued_by_shard[st.shard].fetch_sub(1, std::memory_order_relaxed);
}

/// Recovery failed: answers the commands stashed meanwhile with `err`, then stops. (Left in
/// the mailbox of a stopped actor they would only learn that it is gone.)
caf::behavior failed(self_ptr self, caf::error err) {
  return {
    [=](entity_envelope&) -> caf::result<std::string> {
      answered(self);
      return err;
    },
    [=](stop_atom) { self->quit(err); },
  };
}

/// Stops the entity because its stored data cannot be read; queued commands fail with it.
void fail_recovery(self_ptr self, std::string why) {
  auto message = "entity " + self->state.id + " cannot recover: " + why;
  log(log_level::error, "entity", message);
  self->become(failed(self, make_error(errc::recovery_failed, std::move(message))));
  // Stashed commands come back before this, so each gets its answer first.
  self->send(self, stop_atom::value);
}

void maybe_snapshot(self_ptr self) {
  auto& st = self->state;
  auto every = st.settings->snapshot_every;
  if (every == 0 || st.seq - st.snapshot_seq < every)
    return;
  st.settings->journal->save_snapshot_async({st.id, st.seq, st.logic->snapshot()}, {});
  st.snapshot_seq = st.seq;
}

/// Waiting for the journal to make the last command's events durable.
caf::behavior persisting(self_ptr self) {
  self->set_default_handler(caf::skip);
  return {
    [=](append_done& done) {
      auto& st = self->state;
      auto promise = std::move(st.pending);
      answered(self);
      if (done.result) {
        st.seq = done.result->last_seq;
        st.settings->stats->events_appended += st.pending_events;
        promise.deliver(st.logic->persisted());
        maybe_snapshot(self);
        self->become(running(self));
        return;
      }
      st.settings->stats->journal_failures++;
      st.logic->aborted();
      const auto& err = done.result.error();
      promise.deliver(make_error(errc::journal_failure, err.message));
      if (err.code == persistence::errc::sequence_conflict) {
        // Someone else wrote this entity's stream: our state is stale. Stop; the next command
        // starts a fresh entity that recovers from the journal.
        self->quit(make_error(errc::journal_failure, err.message));
        return;
      }
      // Nothing was written, so the state is still exact: keep serving.
      self->become(running(self));
    },
  };
}

/// Handles commands one at a time. Idle entities are stopped by their shard (stop_atom).
caf::behavior running(self_ptr self) {
  self->set_default_handler(caf::print_and_drop);
  return {
    [=](entity_envelope& env) -> caf::result<std::string> {
      auto& st = self->state;
      auto eff = st.logic->handle(env.payload, now_ms());
      if (eff.events.empty()) {
        answered(self);
        // Nothing stored under this id (a read or a rejected command for an id that never
        // had an event): do not keep an actor for it until the idle sweep — a flood of unknown
        // ids would otherwise hold one each. The shard stops it the way passivation does.
        if (st.seq == 0)
          self->send(st.shard_actor, passivate_atom::value);
        return std::move(eff.reply);
      }
      st.pending = self->make_response_promise();
      st.pending_events = eff.events.size();
      persistence::append_request req{st.shard, st.id, st.seq + 1, std::move(eff.events)};
      auto me = caf::actor_cast<caf::actor>(self);
      st.settings->journal->append_async(
        std::move(req), [me](persistence::expected<persistence::append_result> res) {
          caf::anon_send(me, append_done{std::move(res)});
        });
      self->become(persisting(self));
      return st.pending;
    },
    [=](stop_atom) { self->quit(); },
  };
}

/// Recovery phase 2: applies stored events after the snapshot, one batch per message. The
/// journal is read by the region's reader (its own thread): recovery never blocks a scheduler
/// thread on disk reads.
caf::behavior replaying(self_ptr self) {
  self->set_default_handler(caf::skip);
  return {
    [=](replay_atom, sequence_nr from) {
      auto& st = self->state;
      const auto max = static_cast<std::uint32_t>(st.settings->replay_batch);
      self->request(st.reader, caf::infinite, read_entity_atom::value, entity_read{st.id, from, max})
        .then(
          [=](entity_events& batch) {
            auto& st = self->state;
            for (auto& ev : batch.events) {
              if (ev.seq != st.seq + 1)
                return fail_recovery(self, "gap before event " + std::to_string(ev.seq));
              if (!st.logic->recover(ev.seq, ev.payload))
                return fail_recovery(self, "unreadable event " + std::to_string(ev.seq));
              st.seq = ev.seq;
            }
            if (batch.events.size() == max) {
              self->send(self, replay_atom::value, st.seq + 1);
              return;
            }
            self->become(running(self));
          },
          [=](caf::error& err) { fail_recovery(self, self->home_system().render(err)); });
    },
  };
}

/// Applies the snapshot (if any), then starts replaying the events after it.
void restore_from(self_ptr self, expected_snapshot& snap) {
  auto& st = self->state;
  if (!snap)
    return fail_recovery(self, snap.error().message);
  if (*snap) {
    switch (st.logic->restore((*snap)->seq, (*snap)->payload)) {
      case entity_logic::restored::ok:
        st.seq = st.snapshot_seq = (*snap)->seq;
        break;
      case entity_logic::restored::outdated:
        // Recover from the events alone. snapshot_seq stays 0, so a long history gets a
        // snapshot fit for the current settings with its next persisted command.
        break;
      case entity_logic::restored::unreadable:
        return fail_recovery(self, "unreadable snapshot at " + std::to_string((*snap)->seq));
    }
  }
  self->become(replaying(self));
  self->send(self, replay_atom::value, st.seq + 1);
}

/// Recovery phase 1: the latest snapshot, if any (read by the region's reader).
caf::behavior loading_snapshot(self_ptr self) {
  self->set_default_handler(caf::skip);
  return {
    [=](recover_atom) {
      auto& st = self->state;
      if (!st.settings->recover_from_snapshots) {
        self->become(replaying(self));
        self->send(self, replay_atom::value, sequence_nr{1});
        return;
      }
      self->request(st.reader, caf::infinite, read_snapshot_atom::value, st.id)
        .then([=](snapshot_answer& a) { restore_from(self, a.snapshot); },
              [=](caf::error& err) { fail_recovery(self, self->home_system().render(err)); });
    },
  };
}

} // namespace

std::unique_ptr<entity_logic> make_logic(const region_settings& settings, const entity_id& id) {
  const auto key = entity_type_of(id);
  if (!key.empty())
    for (const auto& t : settings.types)
      if (t.key == key)
        return t.factory(id);
  return settings.factory(id);
}

caf::behavior entity_actor(caf::stateful_actor<entity_state>* self, entity_id id, shard_id shard,
                           caf::actor shard_actor, caf::actor reader, shared_settings settings,
                           std::shared_ptr<std::atomic<std::int64_t>> queued) {
  auto& st = self->state;
  st.queued = std::move(queued);
  st.logic = make_logic(*settings, id);
  st.id = std::move(id);
  st.shard = shard;
  st.shard_actor = std::move(shard_actor);
  st.reader = std::move(reader);
  st.settings = std::move(settings);
  st.settings->stats->recoveries++;
  self->send(self, recover_atom::value);
  return loading_snapshot(self);
}

} // namespace kontor::sharding

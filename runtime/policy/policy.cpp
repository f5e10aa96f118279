#include "runtime/policy/policy.hpp"

#include <algorithm>
#include <condition_variable>
#include <map>
#include <mutex>
#include <thread>

#include <caf/all.hpp>

#include "runtime/core/bytes.hpp"
#include "runtime/core/log.hpp"
#include "runtime/policy/checkpoint.hpp"
#include "runtime/sharding/messages.hpp"
#include "runtime/persistence/lmdb_store.hpp"
#include "runtime/projection/messages.hpp"
#include "runtime/projection/read_model.hpp"

namespace kontor::policy {

namespace {

using projection::applied_atom;
using projection::event_batch;
using projection::shard_positions;
using projection::subscribe_atom;
using resubscribe_atom = caf::atom_constant<caf::atom("pol_resub")>;

constexpr const char* component = "policy";
enum table : persistence::table_id { meta = 0, outbox = 1, dead = 2 };
constexpr const char* format_key = "format";
constexpr const char* positions_key = "positions"; // next position per shard, 8 bytes BE each
constexpr const char* next_seq_key = "next-seq";   // the next outbox / dead-letter number

std::int64_t now_ms() {
  using namespace std::chrono;
  return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

// ---- records: fixed-width numbers and length-prefixed strings

void put_u64(std::string& out, std::uint64_t v) { out += to_be64(v); }

void put_str(std::string& out, std::string_view s) {
  put_u64(out, s.size());
  out.append(s);
}

struct reader {
  std::string_view in;
  bool ok = true;
  std::uint64_t u64() {
    if (in.size() < 8) {
      ok = false;
      return 0;
    }
    auto v = from_be64(in);
    in.remove_prefix(8);
    return v;
  }
  std::string str() {
    auto n = u64();
    if (!ok || in.size() < n) {
      ok = false;
      return {};
    }
    std::string s{in.substr(0, n)};
    in.remove_prefix(n);
    return s;
  }
};

/// An outbox entry: the effect and where its event is.
std::string encode_entry(shard_id shard, shard_offset pos, const effect& e) {
  std::string out;
  put_u64(out, shard);
  put_u64(out, pos);
  put_str(out, e.key);
  put_str(out, e.payload);
  if (e.not_before != 0)
    put_u64(out, static_cast<std::uint64_t>(e.not_before));
  return out;
}

std::string encode_dead(const dead_letter& d) {
  std::string out;
  put_u64(out, d.shard);
  put_u64(out, d.position);
  put_str(out, d.key);
  put_str(out, d.payload);
  put_u64(out, d.attempts);
  put_u64(out, static_cast<std::uint64_t>(d.failed_at));
  put_str(out, d.reason);
  return out;
}

/// Decodes an outbox entry (the first fields, and its not_before into `not_before` when given)
/// or a dead letter (all of them).
std::optional<dead_letter> decode(std::string_view bytes, bool full,
                                  std::int64_t* not_before = nullptr) {
  reader r{bytes};
  dead_letter d;
  d.shard = static_cast<std::uint32_t>(r.u64());
  d.position = r.u64();
  d.key = r.str();
  d.payload = r.str();
  if (not_before)
    *not_before = r.in.empty() ? 0 : static_cast<std::int64_t>(r.u64());
  if (full) {
    d.attempts = static_cast<std::uint32_t>(r.u64());
    d.failed_at = static_cast<std::int64_t>(r.u64());
    d.reason = r.str();
  }
  if (!r.ok)
    return std::nullopt;
  return d;
}

std::string encode_positions(const std::vector<shard_offset>& next) {
  return to_be64s(next);
}

// ---- the policy's state, shared by its intake actor and its delivery thread

/// The store, the outbox and the delivery thread of one policy on this node.
class core {
public:
  core(policy_settings s, std::unique_ptr<persistence::lmdb_store> store,
       std::vector<shard_offset> next, std::uint64_t next_seq)
    : settings_(std::move(s)), store_(std::move(store)), next_(std::move(next)),
      ends_(next_.size(), 0), next_seq_(next_seq), name_(settings_.handler->name()) {
    std::uint64_t pending = 0;
    std::uint64_t deads = 0;
    (void) store_->read([&](const persistence::store_reader& r) {
      r.scan(outbox, {}, [&](std::string_view, std::string_view) { return ++pending, true; });
      r.scan(dead, {}, [&](std::string_view, std::string_view) { return ++deads, true; });
    });
    settings_.stats->pending = pending;
    settings_.stats->dead_letters = deads;
    settings_.stats->behind = 0;
    settings_.stats->running = true;
  }

  /// Starts the delivery thread (once; after adopt()).
  void start_delivery() {
    if (!thread_.joinable())
      thread_ = std::thread([this] { deliver_loop(); });
  }

  /// The positions accepted so far, per shard.
  const std::vector<shard_offset>& next() const noexcept { return next_; }

  /// Per shard, the position below which every event's effect is finished: the first pending
  /// outbox entry's position, or the next position to accept when none is pending.
  std::vector<shard_offset> done_positions() const {
    auto out = next_;
    (void) store_->read([&](const persistence::store_reader& r) {
      r.scan(outbox, {}, [&](std::string_view, std::string_view v) {
        if (auto d = decode(v, false); d && d->shard < out.size())
          out[d->shard] = std::min<shard_offset>(out[d->shard], d->position);
        return true;
      });
    });
    return out;
  }

  /// Adopts the cluster's checkpoint `done` (before the delivery thread starts): accepts from at
  /// least there, and drops outbox entries below it (another node finished them). Returns how
  /// many entries it dropped.
  std::uint64_t adopt(const std::vector<shard_offset>& done) {
    if (done.size() != next_.size())
      return 0;
    auto after = next_;
    for (std::size_t s = 0; s < after.size(); ++s)
      after[s] = std::max(after[s], done[s]);
    std::uint64_t dropped = 0;
    auto written = store_->write([&](persistence::store_writer& txn) {
      dropped = 0;
      std::vector<std::string> stale;
      txn.scan(outbox, {}, [&](std::string_view k, std::string_view v) {
        if (auto d = decode(v, false); d && d->shard < done.size() && d->position < done[d->shard])
          stale.emplace_back(k);
        return true;
      });
      for (const auto& k : stale)
        txn.erase(outbox, k);
      dropped = stale.size();
      txn.put(meta, positions_key, encode_positions(after));
    });
    if (!written) {
      log(log_level::error, component, name_ + ": adopting the checkpoint failed: " + written.error().message);
      return 0;
    }
    next_ = std::move(after);
    settings_.stats->pending -= std::min<std::uint64_t>(dropped, settings_.stats->pending);
    return dropped;
  }

  ~core() { stop(); }

  /// Stops the delivery thread (after the attempt in progress) once.
  void stop() {
    {
      std::lock_guard lock{mutex_};
      if (stopping_)
        return;
      stopping_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable())
      thread_.join();
    settings_.stats->running = false;
  }


  /// Stores the effects of the batch's new events and the positions after them in one
  /// transaction; returns the positions after the batch (unchanged when the commit failed). A
  /// batch that calls for no effect commits nothing: its positions are committed with the next
  /// batch that does, or by flush_positions(). After a crash such events are read again and
  /// call for nothing again (select is pure), so only effects need the commit.
  shard_positions accept(const event_batch& batch) {
    for (const auto& g : batch.shards)
      if (g.shard < ends_.size())
        ends_[g.shard] = std::max(ends_[g.shard], g.end);
    auto after = next_;
    std::vector<std::pair<std::string, std::string>> entries; // outbox key, entry
    auto seq = next_seq_;
    for (const auto& g : batch.shards) {
      if (g.shard >= after.size())
        continue;
      auto& next = after[g.shard];
      for (const auto& ev : g.events) {
        if (ev.shard != g.shard || ev.shard_pos < next)
          continue; // accepted before (redelivery)
        if (ev.shard_pos > next)
          break;    // a gap: the rest of this shard's page is read again
        if (auto e = settings_.handler->select(ev))
          entries.emplace_back(to_be64(seq++), encode_entry(ev.shard, ev.shard_pos, *e));
        next = ev.shard_pos + 1;
      }
    }
    const std::uint64_t added = entries.size();
    if (added == 0) {
      positions_dirty_ = positions_dirty_ || after != next_;
    } else {
      auto written = store_->write([&](persistence::store_writer& txn) {
        for (const auto& [key, entry] : entries)
          txn.append(outbox, key, entry);
        txn.put(meta, positions_key, encode_positions(after));
        txn.put(meta, next_seq_key, to_be64(seq));
      });
      if (!written) {
        log(log_level::error, component,
            name_ + ": storing a batch failed: " + written.error().message);
        return shard_positions{next_};
      }
      positions_dirty_ = false;
    }
    next_ = std::move(after);
    next_seq_ = seq;
    std::uint64_t behind = 0;
    for (std::size_t s = 0; s < next_.size(); ++s)
      if (ends_[s] >= next_[s])
        behind += ends_[s] - next_[s] + 1;
    settings_.stats->behind = behind;
    if (added > 0) {
      settings_.stats->pending += added;
      wake();
    }
    return shard_positions{next_};
  }

  /// Commits the positions of batches that called for no effect (a timer and the stop call it),
  /// so a restart does not read them again.
  void flush_positions() {
    if (!positions_dirty_)
      return;
    auto written = store_->write([&](persistence::store_writer& txn) {
      txn.put(meta, positions_key, encode_positions(next_));
    });
    if (written)
      positions_dirty_ = false;
  }

  /// The dead letters, oldest first.
  std::vector<dead_letter> dead_letters() const {
    std::vector<dead_letter> out;
    (void) store_->read([&](const persistence::store_reader& r) {
      r.scan(dead, {}, [&](std::string_view, std::string_view v) {
        if (auto d = decode(v, true))
          out.push_back(std::move(*d));
        return true;
      });
    });
    return out;
  }

  /// Moves every dead letter to the end of the outbox; returns how many.
  std::uint64_t retry_dead_letters() {
    std::uint64_t moved = 0;
    std::uint64_t seq = 0;
    auto written = store_->write([&](persistence::store_writer& txn) {
      moved = 0;
      std::vector<std::pair<std::string, dead_letter>> all;
      txn.scan(dead, {}, [&](std::string_view k, std::string_view v) {
        if (auto d = decode(v, true))
          all.emplace_back(std::string(k), std::move(*d));
        return true;
      });
      // The next number is read in the transaction: the intake commits batches concurrently.
      auto stored = txn.get(meta, next_seq_key);
      seq = stored ? from_be64(*stored) : 1;
      for (auto& [k, d] : all) {
        txn.erase(dead, k);
        txn.append(outbox, to_be64(seq++), encode_entry(d.shard, d.position, {d.key, d.payload}));
        ++moved;
      }
      txn.put(meta, next_seq_key, to_be64(seq));
    });
    if (!written) {
      log(log_level::error, component,
          name_ + ": retrying the dead letters failed: " + written.error().message);
      return 0;
    }
    next_seq_ = std::max(next_seq_, seq);
    settings_.stats->dead_letters -= std::min<std::uint64_t>(moved, settings_.stats->dead_letters);
    settings_.stats->pending += moved;
    if (moved > 0)
      log(log_level::info, component, name_ + ": " + std::to_string(moved) + " dead letters go back to the outbox");
    wake();
    return moved;
  }

private:
  /// The first outbox entry that is due at `now` (its not_before passed, not deferred): its
  /// number and contents. `wake_at` gets when the first of those passed over is due (0: none).
  std::optional<std::pair<std::uint64_t, dead_letter>> next_due(std::int64_t now, std::int64_t& wake_at) const {
    std::optional<std::pair<std::uint64_t, dead_letter>> out;
    wake_at = 0;
    auto later = [&](std::int64_t at) { wake_at = wake_at == 0 ? at : std::min(wake_at, at); };
    (void) store_->read([&](const persistence::store_reader& r) {
      r.scan(outbox, {}, [&](std::string_view k, std::string_view v) {
        const auto seq = from_be64(k);
        std::int64_t not_before = 0;
        auto d = decode(v, false, &not_before);
        if (auto it = deferred_.find(seq); it != deferred_.end())
          not_before = std::max(not_before, it->second.until);
        if (d && not_before > now) {
          later(not_before);
          return true;
        }
        out.emplace(seq, d ? std::move(*d) : dead_letter{}); // unreadable: dropped below
        return false;
      });
    });
    return out;
  }

  /// Tells the delivery thread that the outbox has entries.
  void wake() {
    {
      std::lock_guard lock{mutex_};
      wake_ = true;
    }
    cv_.notify_all();
  }

  /// Waits `d` or until stop; false when stopping.
  bool pause(std::chrono::milliseconds d) {
    std::unique_lock lock{mutex_};
    return !cv_.wait_for(lock, d, [this] { return stopping_; });
  }

  bool stopping() {
    std::lock_guard lock{mutex_};
    return stopping_;
  }

  /// Removes entry `seq` from the outbox, as a dead letter when `letter` is set.
  void finish(std::uint64_t seq, const dead_letter* letter) {
    for (;;) {
      auto written = store_->write([&](persistence::store_writer& txn) {
        txn.erase(outbox, to_be64(seq));
        if (letter)
          txn.put(dead, to_be64(seq), encode_dead(*letter));
      });
      if (written)
        break;
      log(log_level::error, component, name_ + ": updating the outbox failed: " + written.error().message);
      if (!pause(std::chrono::seconds(1)))
        return; // still in the outbox: carried out again after the restart (same key)
    }
    settings_.stats->pending -= std::min<std::uint64_t>(1, settings_.stats->pending);
    if (letter)
      ++settings_.stats->dead_letters;
  }

  void deliver_loop() {
    std::uint64_t current = 0;    // the entry being attempted
    std::uint32_t attempts = 0;   // failed attempts of it so far
    auto backoff = settings_.retry.initial;
    while (!stopping()) {
      std::int64_t wake_at = 0;
      auto h = next_due(now_ms(), wake_at);
      if (!h) {
        std::unique_lock lock{mutex_};
        // Woken by accept(), a retry, or when the first effect passed over is due; the bound
        // is a safety net only.
        auto wait = std::chrono::milliseconds(1000);
        if (wake_at != 0)
          wait = std::chrono::milliseconds(std::clamp<std::int64_t>(wake_at - now_ms(), 1, 1000));
        cv_.wait_for(lock, wait, [this] { return stopping_ || wake_; });
        wake_ = false;
        continue;
      }
      auto& [seq, entry] = *h;
      if (seq != current) {
        current = seq;
        attempts = 0;
        backoff = settings_.retry.initial;
      }
      if (entry.key.empty()) {
        log(log_level::error, component, name_ + ": dropping unreadable outbox entry " + std::to_string(seq));
        finish(seq, nullptr);
        continue;
      }
      auto r = settings_.handler->carry_out({entry.key, entry.payload});
      if (r.result == outcome::done) {
        deferred_.erase(seq);
        finish(seq, nullptr);
        ++settings_.stats->delivered;
        continue;
      }
      if (r.result == outcome::defer) {
        auto& d = deferred_[seq];
        d.backoff = d.attempts == 0 ? settings_.retry.initial : std::min(d.backoff * 2, settings_.retry.max);
        d.until = now_ms() + d.backoff.count();
        ++d.attempts;
        ++settings_.stats->retries;
        if (d.attempts == 1 || d.attempts % 10 == 0)
          log(log_level::warn, component,
              name_ + ": " + entry.key + " deferred (" + r.reason + "), attempt " + std::to_string(d.attempts)
                + "; again in " + std::to_string(d.backoff.count()) + " ms, the others go on");
        current = 0;
        continue;
      }
      ++attempts;
      if (r.result == outcome::rejected || attempts >= settings_.retry.max_attempts) {
        entry.attempts = attempts;
        entry.reason = r.reason;
        entry.failed_at = now_ms();
        log(log_level::warn, component,
            name_ + ": " + entry.key + " is a dead letter after " + std::to_string(attempts)
              + " attempts: " + r.reason);
        deferred_.erase(seq);
        finish(seq, &entry);
        ++(r.result == outcome::rejected ? settings_.stats->rejected : settings_.stats->gave_up);
        continue;
      }
      ++settings_.stats->retries;
      if (attempts == 1 || attempts % 10 == 0)
        log(log_level::warn, component,
            name_ + ": " + entry.key + " failed (" + r.reason + "), attempt " + std::to_string(attempts)
              + " of " + std::to_string(settings_.retry.max_attempts) + "; again in "
              + std::to_string(backoff.count()) + " ms");
      if (!pause(backoff))
        break;
      backoff = std::min(backoff * 2, settings_.retry.max);
    }
  }

  policy_settings settings_;
  std::unique_ptr<persistence::lmdb_store> store_;
  std::vector<shard_offset> next_; ///< per shard, the next position to accept (durable unless positions_dirty_)
  std::vector<shard_offset> ends_; ///< per shard, the highest end the poller reported
  bool positions_dirty_ = false;   ///< next_ is ahead of the committed positions (no effects)
  std::uint64_t next_seq_ = 1;
  std::mutex mutex_;
  std::condition_variable cv_;
  bool stopping_ = false;
  bool wake_ = false; ///< set (under mutex_) when the outbox got entries
  /// Effects deferred (outcome::defer), by outbox number: the delivery thread's alone; in
  /// memory (after a restart they are tried at once again).
  struct deferral {
    std::uint32_t attempts = 0;
    std::chrono::milliseconds backoff{0};
    std::int64_t until = 0;
  };
  std::map<std::uint64_t, deferral> deferred_;
  std::string name_;
  std::thread thread_;
};

// ---- actors

struct intake_state {
  std::shared_ptr<core> policy;
  caf::actor poller;
  caf::actor front;
  caf::actor region;                ///< for the checkpoint entity (unset: none)
  entity_id checkpoint;             ///< its id
  std::chrono::milliseconds checkpoint_every{0};
  std::chrono::milliseconds checkpoint_timeout{0};
  bool checkpoint_in_flight = false;
  bool checkpoint_failing = false;  ///< the last write failed (logged once per streak)
  std::shared_ptr<policy_stats> stats;
  std::chrono::milliseconds resubscribe_after{0};
  std::chrono::steady_clock::time_point last_batch;
  shard_positions last_positions; ///< the durable positions after the last batch
  static inline const char* name = "kontor.policy";
};

using intake_ptr = caf::stateful_actor<intake_state>*;

/// The detached actor that commits batches (it blocks on LMDB) and answers the admin messages.
caf::behavior intake_actor(intake_ptr self, std::shared_ptr<core> policy, const policy_settings& settings,
                           std::string name) {
  auto& st = self->state;
  st.policy = std::move(policy);
  st.poller = settings.poller;
  st.resubscribe_after = settings.resubscribe_after;
  st.region = settings.region;
  st.checkpoint = checkpoint_id(name);
  st.checkpoint_every = settings.checkpoint_every;
  st.checkpoint_timeout = settings.checkpoint_timeout;
  st.stats = settings.stats;
  st.last_batch = std::chrono::steady_clock::now();
  // The delivery thread ends with the actor (after the attempt in progress).
  self->attach_functor([p = st.policy] {
    p->stop();
    p->flush_positions();
  });
  auto subscribe = [self](shard_positions p) {
    if (self->state.front && self->state.poller)
      self->send(self->state.front, subscribe_atom::value, self->state.poller, std::move(p));
  };
  // Delivery and intake start from the store's positions, raised to the cluster's checkpoint.
  auto begin = [=] {
    auto& st = self->state;
    st.policy->start_delivery();
    st.last_positions = shard_positions{st.policy->next()};
    subscribe(st.last_positions);
    self->delayed_send(self, st.resubscribe_after, resubscribe_atom::value);
    if (st.region)
      self->delayed_send(self, st.checkpoint_every, checkpoint_atom::value);
  };
  return {
    [=](caf::actor& front) {
      auto& st = self->state;
      st.front = std::move(front);
      if (!st.region)
        return begin();
      self->request(st.region, st.checkpoint_timeout, sharding::entity_envelope{st.checkpoint, read_command()})
        .then(
          [=](std::string& reply) {
            auto done = parse_reply(reply);
            if (!done) {
              log(log_level::error, component, name + ": its checkpoint is unreadable; resuming from this node's store");
            } else if (!done->empty()) {
              auto dropped = self->state.policy->adopt(*done);
              log(log_level::info, component,
                  name + " resumes from the cluster's checkpoint" + (dropped > 0 ? " (" + std::to_string(dropped)
                    + " effects in this node's outbox were finished elsewhere)" : std::string{}));
            }
            begin();
          },
          [=](caf::error& err) {
            log(log_level::warn, component,
                name + ": no checkpoint from the cluster (" + self->home_system().render(err)
                  + "); resuming from this node's store, so effects finished elsewhere may be carried out again");
            begin();
          });
    },
    [=](checkpoint_atom) {
      auto& st = self->state;
      self->delayed_send(self, st.checkpoint_every, checkpoint_atom::value);
      const auto finished = st.stats->finished();
      if (st.checkpoint_in_flight || finished == st.stats->checkpointed.load())
        return;
      st.checkpoint_in_flight = true;
      self->request(st.region, st.checkpoint_timeout,
                    sharding::entity_envelope{st.checkpoint, advance_command(st.policy->done_positions())})
        .then(
          [=](std::string&) {
            self->state.checkpoint_in_flight = false;
            self->state.checkpoint_failing = false;
            self->state.stats->checkpointed = finished;
            ++self->state.stats->checkpoints;
          },
          [=](caf::error& err) {
            auto& st = self->state;
            st.checkpoint_in_flight = false;
            if (!st.checkpoint_failing)
              log(log_level::warn, component,
                  name + ": writing its checkpoint failed (" + self->home_system().render(err)
                    + "); trying again every " + std::to_string(st.checkpoint_every.count()) + " ms");
            st.checkpoint_failing = true;
          });
    },
    [=](event_batch& batch) -> caf::result<applied_atom, shard_positions> {
      self->state.last_batch = std::chrono::steady_clock::now();
      auto durable = self->state.policy->accept(batch);
      self->state.last_positions = durable;
      return {applied_atom::value, std::move(durable)};
    },
    [=](resubscribe_atom) {
      auto& st = self->state;
      st.policy->flush_positions();
      if (std::chrono::steady_clock::now() - st.last_batch >= st.resubscribe_after)
        subscribe(st.last_positions);
      self->delayed_send(self, st.resubscribe_after, resubscribe_atom::value);
    },
    [=](dead_letters_atom) { return self->state.policy->dead_letters(); },
    [=](retry_atom) { return self->state.policy->retry_dead_letters(); },
  };
}

/// The policy's public face: relays batches and admin requests to the detached intake and the
/// answers back, and subscribes in its own name, so the detached actor never talks to another
/// node (projection::subscriber_front).
caf::behavior front_actor(caf::event_based_actor* self, caf::actor intake) {
  self->link_to(intake);
  return caf::message_handler{
    [=](dead_letters_atom a) {
      auto rp = self->make_response_promise<std::vector<dead_letter>>();
      self->request(intake, caf::infinite, a)
        .then([rp](std::vector<dead_letter>& v) mutable { rp.deliver(std::move(v)); },
              [rp](caf::error& err) mutable { rp.deliver(std::move(err)); });
      return rp;
    },
    [=](retry_atom a) {
      auto rp = self->make_response_promise<std::uint64_t>();
      self->request(intake, caf::infinite, a)
        .then([rp](std::uint64_t n) mutable { rp.deliver(n); },
              [rp](caf::error& err) mutable { rp.deliver(std::move(err)); });
      return rp;
    },
  }.or_else(projection::subscriber_front(self, intake));
}

/// Stands in for a policy that could not start: an actor that ends at once with an error, so a
/// singleton manager starts the policy again after its restart delay.
caf::actor failed_policy(caf::actor_system& sys) {
  return sys.spawn([](caf::event_based_actor* self) { self->quit(caf::sec::runtime_error); });
}

} // namespace

caf::actor spawn_policy(caf::actor_system& sys, policy_settings settings) {
  const auto shards = settings.number_of_shards;
  const auto name = settings.handler->name();
  auto store = persistence::lmdb_store::open({settings.dir, {"meta", "outbox", "dead"}, 64u << 20});
  if (!store) {
    log(log_level::error, component,
        name + ": cannot open " + settings.dir.string() + ": " + store.error().message);
    return failed_policy(sys);
  }
  const std::string wanted = "kontor-policy/1:" + std::to_string(shards);
  std::string found;
  std::vector<shard_offset> next;
  std::uint64_t next_seq = 1;
  (void) (*store)->read([&](const persistence::store_reader& r) {
    if (auto f = r.get(meta, format_key))
      found = std::string(*f);
    if (auto p = r.get(meta, positions_key))
      if (auto stored = from_be64s(*p); stored && stored->size() == shards)
        for (auto pos : *stored)
          next.push_back(std::max<shard_offset>(1, pos));
    if (auto q = r.get(meta, next_seq_key))
      next_seq = from_be64(*q);
  });
  if (found != wanted || next.size() != shards) {
    // Never cleared: the outbox and the dead letters are not derived data. A new store (or one
    // kept for another shard count) starts from the beginning of every shard.
    log(log_level::info, component,
        name + ": " + settings.dir.string() + (found.empty() ? " is new" : " has format " + found)
          + "; following the journal from the start");
    next.assign(shards, shard_offset{1});
    auto init = (*store)->write([&](persistence::store_writer& w) {
      w.put(meta, format_key, wanted);
      w.put(meta, positions_key, encode_positions(next));
      w.put(meta, next_seq_key, to_be64(next_seq));
    });
    if (!init) {
      log(log_level::error, component, name + ": cannot initialize its store: " + init.error().message);
      return failed_policy(sys);
    }
  }
  auto c = std::make_shared<core>(settings, std::move(*store), next, next_seq);
  log(log_level::info, component, name + " runs on this node");
  auto intake = sys.spawn<caf::detached>(intake_actor, c, settings, name);
  auto front = sys.spawn(front_actor, intake);
  caf::anon_send(intake, front);
  return front;
}

namespace {

/// A one-shot actor that asks `policy` and hands the answer (or nullopt) to `done`.
template <class Answer, class Atom>
void ask(caf::actor_system& sys, const caf::actor& policy, std::chrono::milliseconds timeout,
         std::function<void(std::optional<Answer>)> done) {
  if (!policy) {
    done(std::nullopt);
    return;
  }
  sys.spawn([policy, timeout, done = std::move(done)](caf::event_based_actor* self) {
    self->request(policy, timeout, Atom::value)
      .then([done](Answer& a) { done(std::move(a)); },
            [done](caf::error&) { done(std::nullopt); });
  });
}

} // namespace

void ask_dead_letters(caf::actor_system& sys, const caf::actor& policy,
                      std::chrono::milliseconds timeout,
                      std::function<void(std::optional<std::vector<dead_letter>>)> done) {
  ask<std::vector<dead_letter>, dead_letters_atom>(sys, policy, timeout, std::move(done));
}

void retry_dead_letters(caf::actor_system& sys, const caf::actor& policy,
                        std::chrono::milliseconds timeout,
                        std::function<void(std::optional<std::uint64_t>)> done) {
  ask<std::uint64_t, retry_atom>(sys, policy, timeout, std::move(done));
}

} // namespace kontor::policy

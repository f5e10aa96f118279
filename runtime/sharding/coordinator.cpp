#include "runtime/sharding/coordinator.hpp"

#include <algorithm>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <set>

#include <caf/all.hpp>

#include "runtime/cluster/messages.hpp"
#include "runtime/core/log.hpp"
#include "runtime/sharding/cluster_messages.hpp"

namespace kontor::sharding {

namespace {

using clock_type = std::chrono::steady_clock;
constexpr const char* component = "coordinator";
using recover_tick_atom = caf::atom_constant<caf::atom("co_recov")>;
using rebalance_atom = caf::atom_constant<caf::atom("co_rebal")>;
using push_atom = caf::atom_constant<caf::atom("co_push")>;
constexpr std::chrono::milliseconds retry_after{300};
constexpr std::chrono::seconds push_every{2};

/// A move in progress.
struct move {
  std::string from;
  std::string to;
};

/// A change to the table waiting for its turn to be written, and what to do once it is
/// committed (or failed).
struct change {
  std::function<void(allocation_table&)> apply;
  std::function<void(bool committed)> done;
};

struct coordinator_state {
  coordinator_settings settings;
  cluster::cluster_state cluster;
  bool have_cluster = false;
  bool active = false;         ///< recovered: the table below is committed
  bool recovering = false;
  std::uint64_t ballot = 0;
  std::uint64_t highest_promise = 0;
  allocation_table table;
  std::map<shard_id, move> moves;
  std::deque<change> changes;
  bool writing = false;
  std::vector<caf::typed_response_promise<map_atom, shard_map>> map_waiters;
  bool allocation_queued = false;
  bool members_queued = false;
  static inline const char* name = "kontor.coordinator";
};

using self_ptr = caf::stateful_actor<coordinator_state>*;

bool serving(const cluster::member& m) {
  return m.status == cluster::member_status::up || m.status == cluster::member_status::leaving;
}

/// The members whose stores count for a quorum: up or leaving.
std::vector<std::string> quorum_base(const cluster::cluster_state& c) {
  std::vector<std::string> out;
  for (const auto& m : c.view.members)
    if (serving(m))
      out.push_back(m.id);
  return out;
}

/// Whether `have` holds more than half of `base` (an empty base needs nothing).
bool majority_of(const std::vector<std::string>& base, const std::set<std::string>& have) {
  if (base.empty())
    return true;
  std::size_t n = 0;
  for (const auto& id : base)
    if (have.count(id))
      ++n;
  return 2 * n > base.size();
}

shard_map current_map(self_ptr self) {
  auto& st = self->state;
  shard_map out;
  out.table = st.table;
  for (const auto& [s, m] : st.moves)
    out.moving.push_back(s);
  return out;
}

void push_map(self_ptr self) {
  auto& st = self->state;
  if (!st.active)
    return;
  auto map = current_map(self);
  for (const auto& m : st.cluster.view.members)
    if (serving(m) || m.status == cluster::member_status::joining)
      if (auto region = st.cluster.service(m.id, "region"))
        self->send(region, map_atom::value, map);
}

/// Members that may take shards: up (not leaving), reachable, with a region.
std::vector<std::string> eligible(self_ptr self) {
  auto& st = self->state;
  std::vector<std::string> out;
  for (const auto& m : st.cluster.view.members)
    if (m.status == cluster::member_status::up && st.cluster.reaches(m.id)
        && st.cluster.service(m.id, "region"))
      out.push_back(m.id);
  return out;
}

/// Shards per node in `t`, for the nodes in `nodes` (0 when they hold none).
std::map<std::string, std::size_t> counts(const allocation_table& t,
                                          const std::vector<std::string>& nodes) {
  std::map<std::string, std::size_t> out;
  for (const auto& n : nodes)
    out[n] = 0;
  for (const auto& owner : t.owners)
    if (auto i = out.find(owner); i != out.end())
      ++i->second;
  return out;
}

/// The node with the fewest shards (ties: the smallest id, so every run decides alike).
std::string least_loaded(const std::map<std::string, std::size_t>& c) {
  std::string best;
  std::size_t best_n = 0;
  for (const auto& [id, n] : c)
    if (best.empty() || n < best_n) {
      best = id;
      best_n = n;
    }
  return best;
}

void run_changes(self_ptr self);
void plan(self_ptr self);

/// Queues a table change; written after the ones before it.
void commit(self_ptr self, std::function<void(allocation_table&)> apply,
            std::function<void(bool)> done = {}) {
  self->state.changes.push_back({std::move(apply), std::move(done)});
  run_changes(self);
}

void start_recovery(self_ptr self);

/// The table stores of the members in `base` that this node reaches now, by member id.
std::vector<std::pair<std::string, caf::actor>>
reachable_stores(const cluster::cluster_state& cluster, const std::vector<std::string>& base) {
  std::vector<std::pair<std::string, caf::actor>> stores;
  for (const auto& id : base)
    if (cluster.reaches(id))
      if (auto store = cluster.service(id, "tables"))
        stores.emplace_back(id, store);
  return stores;
}

/// Writes `next` to every serving member's store; `done(true)` once a majority accepted it.
void write_table(self_ptr self, allocation_table next, std::function<void(bool)> done) {
  auto& st = self->state;
  auto base = quorum_base(st.cluster);
  struct tally {
    std::size_t waiting = 0;
    std::set<std::string> acks;
    bool superseded = false;
  };
  auto t = std::make_shared<tally>();
  auto stores = reachable_stores(st.cluster, base);
  if (stores.empty())
    return done(false);
  t->waiting = stores.size();
  auto finish = [=]() {
    if (t->superseded) {
      log(log_level::warn, component,
          "a newer coordinator promised the table stores a higher ballot; this one starts over");
      self->state.active = false;
      done(false);
      start_recovery(self);
      return;
    }
    done(majority_of(base, t->acks));
  };
  for (const auto& [id, store] : stores) {
    auto node = id;
    self->request(store, st.settings.quorum_timeout, table_write_atom::value, next)
      .then(
        [=](table_reply& r) {
          if (r.ok)
            t->acks.insert(node);
          else if (r.promised > self->state.ballot) {
            t->superseded = true;
            self->state.highest_promise = std::max(self->state.highest_promise, r.promised);
          }
          if (--t->waiting == 0)
            finish();
        },
        [=](caf::error&) {
          if (--t->waiting == 0)
            finish();
        });
  }
}

void run_changes(self_ptr self) {
  auto& st = self->state;
  if (st.writing || st.changes.empty() || !st.active)
    return;
  auto c = std::move(st.changes.front());
  st.changes.pop_front();
  auto next = st.table;
  c.apply(next);
  next.version = st.table.version + 1;
  next.ballot = st.ballot;
  next.members = quorum_base(st.cluster);
  st.writing = true;
  write_table(self, next, [=](bool ok) {
    auto& st = self->state;
    st.writing = false;
    if (ok)
      st.table = next;
    if (c.done)
      c.done(ok);
    if (ok)
      push_map(self);
    if (!ok && st.active) {
      log(log_level::warn, component,
          "could not write table version " + std::to_string(next.version)
            + " to a majority of the members; it is not in effect");
    }
    run_changes(self);
  });
}

// ---- recovery: read a majority, continue from the newest table ----

void start_recovery(self_ptr self) {
  auto& st = self->state;
  if (st.recovering || st.active || !st.have_cluster || !st.cluster.joined)
    return;
  st.recovering = true;
  // Ballots are unique per coordinator (the low bits are its member's age) and grow with the
  // membership view it started in, so a successor's ballot is above its predecessor's.
  const auto* me = st.cluster.find(st.cluster.self);
  const std::uint64_t age = me ? me->age & 0xfffff : 0;
  const std::uint64_t epoch = std::max(st.cluster.view.version, (st.highest_promise >> 20) + 1);
  st.ballot = std::max(st.ballot, (epoch << 20) | age);
  const auto ballot = st.ballot;
  auto base = quorum_base(st.cluster);
  struct tally {
    std::size_t waiting = 0;
    std::map<std::string, allocation_table> tables;
    std::uint64_t highest_promise = 0;
  };
  auto t = std::make_shared<tally>();
  auto stores = reachable_stores(st.cluster, base);
  auto retry = [=] {
    self->state.recovering = false;
    self->delayed_send(self, retry_after, recover_tick_atom::value);
  };
  if (stores.empty())
    return retry();
  t->waiting = stores.size();
  auto evaluate = [=] {
    auto& st = self->state;
    st.recovering = false;
    if (t->highest_promise > ballot) {
      st.highest_promise = std::max(st.highest_promise, t->highest_promise);
      return retry();
    }
    std::set<std::string> answered;
    allocation_table newest;
    for (const auto& [id, table] : t->tables) {
      answered.insert(id);
      if (newer(table, newest))
        newest = table;
    }
    // A majority of today's members, and of the members the newest table was written by: then
    // no committed table can have been missed (every commit reached a majority of its members).
    if (!majority_of(base, answered) || !majority_of(newest.members, answered)) {
      log(log_level::info, component,
          "waiting for a majority of the table stores (" + std::to_string(answered.size())
            + " answered)");
      return retry();
    }
    if (newest.owners.size() != st.settings.number_of_shards)
      newest.owners.assign(st.settings.number_of_shards, {});
    // Write it back under this ballot, so it is on a majority of today's members too.
    auto next = newest;
    next.version = newest.version + 1;
    next.ballot = ballot;
    next.members = base;
    st.recovering = true;
    write_table(self, next, [=](bool ok) {
      auto& st = self->state;
      st.recovering = false;
      if (!ok) {
        st.active = false;
        return retry();
      }
      st.table = next;
      st.active = true;
      std::size_t allocated = 0;
      for (const auto& o : st.table.owners)
        allocated += o.empty() ? 0 : 1;
      log(log_level::info, component,
          "active with table version " + std::to_string(st.table.version) + " (ballot "
            + std::to_string(ballot) + ", " + std::to_string(allocated) + " of "
            + std::to_string(st.table.owners.size()) + " shards allocated)");
      auto map = current_map(self);
      for (auto& p : st.map_waiters)
        p.deliver(map_atom::value, map);
      st.map_waiters.clear();
      push_map(self);
      plan(self);
      run_changes(self);
    });
  };
  for (const auto& [id, store] : stores) {
    auto node = id;
    self->request(store, st.settings.quorum_timeout, table_read_atom::value, ballot)
      .then(
        [=](table_reply& r) {
          if (r.ok)
            t->tables.emplace(node, std::move(r.stored));
          else
            t->highest_promise = std::max(t->highest_promise, r.promised);
          if (--t->waiting == 0)
            evaluate();
        },
        [=](caf::error&) {
          if (--t->waiting == 0)
            evaluate();
        });
  }
}

// ---- moves ----

void finish_move(self_ptr self, shard_id shard, bool moved) {
  auto& st = self->state;
  auto i = st.moves.find(shard);
  if (i == st.moves.end())
    return;
  if (!moved) {
    // The shard stays: its old owner serves it again.
    if (auto region = st.cluster.service(i->second.from, "region"))
      self->send(region, resume_atom::value, shard);
  }
  st.moves.erase(i);
  push_map(self);
  plan(self);
}

void start_move(self_ptr self, shard_id shard, const std::string& from, const std::string& to) {
  auto& st = self->state;
  auto from_region = st.cluster.service(from, "region");
  auto from_log = st.cluster.service(from, "log");
  auto to_region = st.cluster.service(to, "region");
  if (!from_region || !from_log || !to_region)
    return;
  st.moves[shard] = move{from, to};
  auto name = [&](const std::string& id) {
    const auto* m = st.cluster.find(id);
    return m ? m->name : id;
  };
  log(log_level::info, component,
      "moving shard " + std::to_string(shard) + " from " + name(from) + " to " + name(to));
  push_map(self); // regions hold the shard's requests from now on
  self->request(from_region, st.settings.handoff_timeout, handoff_atom::value, shard)
    .then(
      [=](stopped_atom, shard_offset end) {
        self->request(to_region, st.settings.take_over_timeout, take_over_atom::value, shard,
                      from_log, end)
          .then(
            [=](ready_atom, shard_offset copied) {
              if (copied < end) {
                log(log_level::warn, component,
                    "shard " + std::to_string(shard) + ": the new owner has position "
                      + std::to_string(copied) + " of " + std::to_string(end) + "; not moved");
                return finish_move(self, shard, false);
              }
              commit(
                self, [=](allocation_table& t) { t.owners[shard] = to; },
                [=](bool ok) {
                  if (ok)
                    log(log_level::info, component,
                        "shard " + std::to_string(shard) + " moved (" + std::to_string(end)
                          + " events)");
                  finish_move(self, shard, ok);
                });
            },
            [=](caf::error& err) {
              log(log_level::warn, component,
                  "shard " + std::to_string(shard)
                    + " not moved: the new owner could not copy it: " + self->home_system().render(err));
              finish_move(self, shard, false);
            });
      },
      [=](caf::error& err) {
        log(log_level::warn, component,
            "shard " + std::to_string(shard) + " not moved: its owner did not stop it: "
              + self->home_system().render(err));
        finish_move(self, shard, false);
      });
}

/// Decides what to allocate and what to move now.
void plan(self_ptr self) {
  auto& st = self->state;
  if (!st.active)
    return;
  auto nodes = eligible(self);
  if (nodes.empty())
    return;
  // Allocate what nobody owns (all in one table version).
  std::size_t up = 0;
  for (const auto& m : st.cluster.view.members)
    up += m.status == cluster::member_status::up ? 1 : 0;
  bool unallocated = false;
  for (std::size_t s = 0; s < st.table.owners.size(); ++s)
    unallocated = unallocated || (st.table.owners[s].empty() && !st.moves.count(static_cast<shard_id>(s)));
  if (unallocated && up >= st.settings.min_members && !st.allocation_queued) {
    st.allocation_queued = true;
    commit(
      self,
      [nodes](allocation_table& t) {
        auto c = counts(t, nodes);
        for (auto& owner : t.owners)
          if (owner.empty()) {
            owner = least_loaded(c);
            ++c[owner];
          }
      },
      [self](bool) { self->state.allocation_queued = false; });
  }
  // The table records who the members are (the quorum its successor must read): rewrite it
  // when they change.
  auto base = quorum_base(st.cluster);
  auto recorded = st.table.members;
  std::sort(base.begin(), base.end());
  std::sort(recorded.begin(), recorded.end());
  if (base != recorded && !st.members_queued) {
    st.members_queued = true;
    commit(self, [](allocation_table&) {}, [self](bool) { self->state.members_queued = false; });
  }
  // Move the shards of leaving members, then even out the spread.
  auto budget = [&] {
    return st.moves.size() < st.settings.max_simultaneous_rebalance
             ? st.settings.max_simultaneous_rebalance - st.moves.size()
             : 0;
  };
  auto c = counts(st.table, nodes);
  for (const auto& [s, m] : st.moves) {
    if (auto i = c.find(m.to); i != c.end())
      ++i->second;
  }
  for (const auto& m : st.cluster.view.members) {
    if (m.status != cluster::member_status::leaving || !st.cluster.reaches(m.id))
      continue;
    for (shard_id s = 0; s < st.table.owners.size() && budget() > 0; ++s) {
      if (st.table.owners[s] != m.id || st.moves.count(s))
        continue;
      auto to = least_loaded(c);
      ++c[to];
      start_move(self, s, m.id, to);
    }
  }
}

/// Evens out the spread: from the fullest to the emptiest, while they differ by more than one.
void rebalance(self_ptr self) {
  auto& st = self->state;
  self->delayed_send(self, st.settings.rebalance_interval, rebalance_atom::value);
  if (!st.active)
    return;
  auto nodes = eligible(self);
  if (nodes.size() < 2)
    return;
  auto c = counts(st.table, nodes);
  for (const auto& [s, m] : st.moves) {
    if (auto i = c.find(m.from); i != c.end() && i->second > 0)
      --i->second;
    if (auto i = c.find(m.to); i != c.end())
      ++i->second;
  }
  while (st.moves.size() < st.settings.max_simultaneous_rebalance) {
    auto most = std::max_element(c.begin(), c.end(),
                                 [](const auto& a, const auto& b) { return a.second < b.second; });
    auto least = std::min_element(c.begin(), c.end(),
                                  [](const auto& a, const auto& b) { return a.second < b.second; });
    if (most->second <= least->second + 1)
      return;
    // Its highest shard that is not moving (the choice is arbitrary but stable).
    std::optional<shard_id> pick;
    for (shard_id s = static_cast<shard_id>(st.table.owners.size()); s-- > 0;)
      if (st.table.owners[s] == most->first && !st.moves.count(s)) {
        pick = s;
        break;
      }
    if (!pick)
      return;
    --most->second;
    ++least->second;
    start_move(self, *pick, most->first, least->first);
  }
}

caf::behavior coordinator_actor(self_ptr self, coordinator_settings settings) {
  auto& st = self->state;
  st.settings = std::move(settings);
  st.table.owners.assign(st.settings.number_of_shards, {});
  self->send(st.settings.cluster, cluster::subscribe_atom::value, caf::actor_cast<caf::actor>(self));
  self->delayed_send(self, st.settings.rebalance_interval, rebalance_atom::value);
  self->delayed_send(self, push_every, push_atom::value);
  log(log_level::info, component, "started; reading the allocation table from the members");
  return {
    [=](cluster::cluster_state& state) {
      auto& st = self->state;
      st.cluster = std::move(state);
      st.have_cluster = true;
      if (!st.active)
        start_recovery(self);
      else
        plan(self);
    },
    [=](recover_tick_atom) { start_recovery(self); },
    [=](rebalance_atom) { rebalance(self); },
    [=](push_atom) {
      // Every region gets the map again now and then (one that missed a push catches up).
      push_map(self);
      self->delayed_send(self, push_every, push_atom::value);
    },
    [=](map_atom) -> caf::result<map_atom, shard_map> {
      auto& st = self->state;
      if (st.active)
        return caf::result<map_atom, shard_map>{map_atom::value, current_map(self)};
      auto p = self->make_response_promise<map_atom, shard_map>();
      st.map_waiters.push_back(p);
      return p;
    },
    [=](allocate_atom, shard_id) { plan(self); },
  };
}

} // namespace

caf::actor spawn_coordinator(caf::actor_system& sys, coordinator_settings settings) {
  return sys.spawn(coordinator_actor, std::move(settings));
}

} // namespace kontor::sharding

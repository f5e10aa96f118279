#include "runtime/projection/read_model.hpp"

#include <algorithm>
#include <chrono>
#include <numeric>

#include <caf/all.hpp>

#include "runtime/core/bytes.hpp"
#include "runtime/core/log.hpp"
#include "runtime/projection/messages.hpp"

namespace kontor::projection {

namespace {

using resubscribe_atom = caf::atom_constant<caf::atom("prj_resub")>;
using promote_atom = caf::atom_constant<caf::atom("prj_promo")>;

constexpr const char* component = "read-model";
constexpr const char* format_key = "format";
constexpr const char* positions_key = "positions"; // next position per shard, 8 bytes BE each

epoch_ms now_ms() {
  using namespace std::chrono;
  return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

/// The full format tag: the runtime's own layout (with the shard count) plus the handler's.
std::string format_of(const projection_handler& h, std::uint32_t shards) {
  return "kontor-read-model/2:" + std::to_string(shards) + "+" + h.format();
}

std::string encode(const std::vector<shard_offset>& next) {
  return to_be64s(next);
}

/// The stored positions, if they are well-formed for `shards` shards.
std::optional<std::vector<shard_offset>> decode(std::string_view bytes, std::uint32_t shards) {
  auto out = from_be64s(bytes);
  if (!out || out->size() != shards || std::ranges::find(*out, shard_offset{0}) != out->end())
    return std::nullopt;
  return out;
}

std::uint64_t applied_total(const std::vector<shard_offset>& next) {
  return std::accumulate(next.begin(), next.end(), std::uint64_t{0},
                         [](std::uint64_t sum, shard_offset p) { return sum + (p - 1); });
}

struct model_state {
  persistence::lmdb_store* store = nullptr;
  std::shared_ptr<projection_handler> handler;
  std::shared_ptr<read_model_stats> stats;
  std::shared_ptr<read_model_stats> promoted_stats; ///< reported into after promote_atom
  persistence::table_id meta = 0;
  std::vector<shard_offset> next;   ///< per shard, the next position to apply (durable)
  std::vector<shard_offset> ends;   ///< per shard, the highest end the poller reported
  caf::actor poller;
  caf::actor front; ///< what the poller knows of this read model (see model_front)
  std::chrono::milliseconds resubscribe_after{0};
  std::chrono::steady_clock::time_point last_batch;
  std::chrono::steady_clock::time_point last_progress_log;
  bool catching_up = false;
  std::uint64_t failures = 0;  ///< failed commits in a row
  std::chrono::steady_clock::time_point last_failure_log;
  static inline const char* name = "kontor.read_model";
};

using self_ptr = caf::stateful_actor<model_state>*;

shard_positions positions(self_ptr self) {
  return shard_positions{self->state.next};
}

void send_subscribe(self_ptr self) {
  auto& st = self->state;
  if (st.poller && st.front)
    self->send(st.front, subscribe_atom::value, st.poller, positions(self));
}

/// Logs rebuild progress every few seconds while far behind.
void log_progress(self_ptr self) {
  auto& st = self->state;
  std::uint64_t behind = 0;
  std::uint64_t known = 0;
  for (std::size_t s = 0; s < st.next.size(); ++s) {
    known += st.ends[s];
    if (st.ends[s] >= st.next[s])
      behind += st.ends[s] - st.next[s] + 1;
  }
  const auto applied = applied_total(st.next);
  auto now = std::chrono::steady_clock::now();
  if (behind > 10000 && now - st.last_progress_log > std::chrono::seconds(2)) {
    st.catching_up = true;
    st.last_progress_log = now;
    log(log_level::info, component,
        st.store->dir().string() + ": catching up, " + std::to_string(applied) + " of "
          + std::to_string(known) + " events (" + std::to_string(applied * 100 / std::max<std::uint64_t>(known, 1))
          + " %)");
  } else if (behind == 0 && st.catching_up) {
    st.catching_up = false;
    log(log_level::info, component,
        st.store->dir().string() + ": caught up at " + std::to_string(applied) + " events");
  }
}

/// Publishes the durable positions (and the ends known) in the stats.
void report_positions(model_state& st) {
  st.stats->applied = applied_total(st.next);
  std::vector<shard_offset> applied(st.next.size());
  for (std::size_t s = 0; s < applied.size(); ++s)
    applied[s] = st.next[s] - 1;
  st.stats->record(applied, st.ends);
}

/// Stores the batch's new events and the positions after them in one transaction.
caf::result<applied_atom, shard_positions> apply_batch(self_ptr self, event_batch& batch) {
  auto& st = self->state;
  st.last_batch = std::chrono::steady_clock::now();
  for (const auto& g : batch.shards)
    if (g.shard < st.ends.size())
      st.ends[g.shard] = std::max(st.ends[g.shard], g.end);
  std::vector<shard_offset> after;
  std::vector<epoch_ms> applied_at; // write times of the events applied, for lag
  auto written = st.store->write([&](persistence::store_writer& txn) {
    // This may run twice (when the map grows): start from the durable positions each time.
    after = st.next;
    applied_at.clear();
    for (const auto& g : batch.shards) {
      if (g.shard >= after.size())
        continue;
      auto& next = after[g.shard];
      for (const auto& ev : g.events) {
        if (ev.shard != g.shard || ev.shard_pos < next)
          continue; // applied before (redelivery)
        if (ev.shard_pos > next) {
          log(log_level::warn, component,
              "shard " + std::to_string(g.shard) + ": position " + std::to_string(ev.shard_pos)
                + " arrived while " + std::to_string(next)
                + " is next; the rest of that shard's page is read again");
          break;
        }
        st.handler->apply(txn, ev);
        next = ev.shard_pos + 1;
        applied_at.push_back(ev.written_at);
      }
    }
    txn.put(st.meta, positions_key, encode(after));
  });
  if (!written) {
    // Nothing of the batch is stored: answer with the durable positions, so the poller reads
    // the same events again.
    // A lasting failure (a full disk) is retried every few ms: log it every 10 s, not each time.
    const auto now = std::chrono::steady_clock::now();
    if (st.failures++ == 0 || now - st.last_failure_log >= std::chrono::seconds(10)) {
      st.last_failure_log = now;
      log(log_level::error, component,
          "applying a batch failed (" + std::to_string(st.failures) + " in a row): "
            + written.error().message);
    }
    return {applied_atom::value, positions(self)};
  }
  if (st.failures > 0) {
    log(log_level::info, component,
        "applying batches works again after " + std::to_string(st.failures) + " failures");
    st.failures = 0;
  }
  st.next = std::move(after);
  auto now = now_ms();
  for (auto at : applied_at)
    if (st.stats->lag_seconds)
      st.stats->lag_seconds->observe(static_cast<double>(now - at) / 1000.0);
  if (!applied_at.empty())
    st.stats->lag_ms = now - applied_at.back();
  st.stats->events += applied_at.size();
  report_positions(st);
  log_progress(self);
  return {applied_atom::value, positions(self)};
}

caf::behavior model_actor(self_ptr self, persistence::lmdb_store* store,
                          std::shared_ptr<projection_handler> handler,
                          std::shared_ptr<read_model_stats> stats, persistence::table_id meta,
                          std::shared_ptr<read_model_stats> promoted_stats,
                          std::vector<shard_offset> next,
                          std::chrono::milliseconds resubscribe_after) {
  auto& st = self->state;
  st.store = store;
  st.handler = std::move(handler);
  st.stats = std::move(stats);
  st.promoted_stats = std::move(promoted_stats);
  st.meta = meta;
  st.ends.assign(next.size(), 0);
  st.next = std::move(next);
  st.resubscribe_after = resubscribe_after;
  st.last_batch = std::chrono::steady_clock::now();
  return {
    [=](event_batch& batch) { return apply_batch(self, batch); },
    [=](caf::actor& front) { self->state.front = std::move(front); },
    [=](subscribe_atom, caf::actor& poller) {
      self->state.poller = std::move(poller);
      send_subscribe(self);
      self->delayed_send(self, self->state.resubscribe_after, resubscribe_atom::value);
    },
    [=](promote_atom) {
      auto& st = self->state;
      if (!st.promoted_stats)
        return;
      st.stats = std::move(st.promoted_stats);
      st.promoted_stats = nullptr;
      report_positions(st);
    },
    [=](resubscribe_atom) {
      auto& st = self->state;
      if (std::chrono::steady_clock::now() - st.last_batch >= st.resubscribe_after)
        send_subscribe(self);
      self->delayed_send(self, st.resubscribe_after, resubscribe_atom::value);
    },
  };
}

/// The read model's public face: a scheduled actor that subscribes to the poller in its own name
/// and relays every batch to the detached model and its answer back, so that the detached
/// actor (it blocks on LMDB commits) never talks to another node: in CAF 0.17.6 that can hang
/// the actor system's shutdown (see runtime/stream/log_server.cpp).
caf::behavior model_front(caf::event_based_actor* self, caf::actor model) {
  self->link_to(model); // an exit of either ends both
  return subscriber_front(self, std::move(model));
}

/// Opens the store, or recreates it when it is unreadable (it holds only derived data).
persistence::expected<std::unique_ptr<persistence::lmdb_store>>
open_store(const read_model_settings& s, const std::vector<std::string>& tables) {
  persistence::store_options opts{s.dir, tables, 256u << 20};
  auto store = persistence::lmdb_store::open(opts);
  if (store
      || (store.error().code != persistence::errc::corrupt
          && store.error().code != persistence::errc::unknown_format))
    return store;
  log(log_level::warn, component,
      s.dir.string() + " is unreadable (" + store.error().message + "); rebuilding it from the start");
  std::error_code ec;
  std::filesystem::remove_all(s.dir, ec);
  return persistence::lmdb_store::open(opts);
}

} // namespace

std::vector<shard_offset> read_model_stats::applied_by_shard() const {
  std::lock_guard lock{mutex_};
  return applied_;
}

std::vector<shard_offset> read_model_stats::known_ends() const {
  std::lock_guard lock{mutex_};
  return ends_;
}

void read_model_stats::record(const std::vector<shard_offset>& applied,
                              const std::vector<shard_offset>& ends) {
  std::lock_guard lock{mutex_};
  applied_ = applied;
  ends_ = ends;
}

read_model::read_model(read_model_settings s, std::unique_ptr<persistence::lmdb_store> store)
  : settings_(std::move(s)), store_(std::move(store)) {}

read_model::~read_model() = default;

persistence::expected<std::unique_ptr<read_model>>
read_model::open(caf::actor_system& sys, read_model_settings settings) {
  const auto shards = settings.number_of_shards;
  auto tables = settings.handler->tables();
  auto meta = static_cast<persistence::table_id>(tables.size());
  tables.push_back("meta");
  auto store = open_store(settings, tables);
  if (!store)
    return store.error();
  auto wanted = format_of(*settings.handler, shards);
  std::string found;
  std::optional<std::vector<shard_offset>> next;
  auto read = (*store)->read([&](const persistence::store_reader& r) {
    if (auto f = r.get(meta, format_key))
      found = std::string(*f);
    if (auto p = r.get(meta, positions_key))
      next = decode(*p, shards);
  });
  if (!read)
    return read.error();
  if (found != wanted || !next) {
    log(log_level::info, component,
        settings.dir.string() + (found.empty() ? " is new" : " has format " + found) + "; building "
          + wanted + " by replay from the start");
    if (auto cleared = (*store)->clear(); !cleared)
      return cleared.error();
    next.emplace(shards, shard_offset{1});
    auto init = (*store)->write([&](persistence::store_writer& w) {
      w.put(meta, format_key, wanted);
      w.put(meta, positions_key, encode(*next));
    });
    if (!init)
      return init.error();
  }
  settings.stats->applied = applied_total(*next);
  {
    std::vector<shard_offset> applied(next->size());
    for (std::size_t s = 0; s < applied.size(); ++s)
      applied[s] = (*next)[s] - 1;
    settings.stats->record(applied, std::vector<shard_offset>(next->size(), 0));
  }
  auto rm = std::unique_ptr<read_model>(new read_model(std::move(settings), std::move(*store)));
  auto model = sys.spawn<caf::detached>(model_actor, rm->store_.get(), rm->settings_.handler,
                                        rm->settings_.stats, meta, rm->settings_.promoted_stats,
                                        std::move(*next),
                                        rm->settings_.resubscribe_after);
  rm->actor_ = sys.spawn(model_front, model);
  caf::anon_send(model, rm->actor_);
  rm->model_ = model;
  return rm;
}

void read_model::subscribe(const caf::actor& poller) {
  caf::anon_send(model_, subscribe_atom::value, poller);
}

void read_model::promote() {
  if (!settings_.promoted_stats)
    return;
  caf::anon_send(model_, promote_atom::value);
  promoted_ = true;
}

void read_model::stop_and_wait() {
  caf::scoped_actor self{model_.home_system()};
  self->monitor(model_);
  caf::anon_send_exit(actor_, caf::exit_reason::user_shutdown); // the front takes the model along
  self->receive([](const caf::down_msg&) {},
                caf::after(std::chrono::seconds(60)) >> [this] {
                  log(log_level::warn, component,
                      store_->dir().string() + ": its actor did not stop within 60 s");
                });
}

caf::behavior subscriber_front(caf::event_based_actor* self, caf::actor inner) {
  return {
    [=](event_batch& batch) {
      auto rp = self->make_response_promise<applied_atom, shard_positions>();
      self->request(inner, caf::infinite, std::move(batch))
        .then([rp](applied_atom a, shard_positions& p) mutable { rp.deliver(a, std::move(p)); },
              [rp](caf::error& err) mutable { rp.deliver(std::move(err)); });
      return rp;
    },
    [=](subscribe_atom a, caf::actor& poller, shard_positions& p) {
      self->send(poller, a, caf::actor_cast<caf::actor>(self), std::move(p));
    },
  };
}

} // namespace kontor::projection

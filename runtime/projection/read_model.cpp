#include "runtime/projection/read_model.hpp"

#include <chrono>

#include <caf/all.hpp>

#include "runtime/core/bytes.hpp"
#include "runtime/core/log.hpp"
#include "runtime/projection/messages.hpp"

namespace kontor::projection {

namespace {

using resubscribe_atom = caf::atom_constant<caf::atom("prj_resub")>;

constexpr const char* component = "read-model";
constexpr const char* format_key = "format";
constexpr const char* offset_key = "offset"; // next offset to apply, 8 bytes big-endian

epoch_ms now_ms() {
  using namespace std::chrono;
  return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

/// The full format tag: the runtime's own layout plus the handler's.
std::string format_of(const projection_handler& h) {
  return "kontor-read-model/1+" + h.format();
}

struct model_state {
  persistence::lmdb_store* store = nullptr;
  std::shared_ptr<projection_handler> handler;
  std::shared_ptr<read_model_stats> stats;
  persistence::table_id meta = 0;
  caf::actor poller;
  std::chrono::milliseconds resubscribe_after{0};
  std::chrono::steady_clock::time_point last_batch;
  std::chrono::steady_clock::time_point last_progress_log;
  bool catching_up = false;
  static inline const char* name = "kontor.read_model";
};

using self_ptr = caf::stateful_actor<model_state>*;

void send_subscribe(self_ptr self) {
  auto& st = self->state;
  if (st.poller)
    self->send(st.poller, subscribe_atom::value, caf::actor_cast<caf::actor>(self),
               st.stats->applied.load() + 1);
}

/// Logs rebuild progress every few seconds while far behind the journal.
void log_progress(self_ptr self) {
  auto& st = self->state;
  auto applied = st.stats->applied.load();
  auto end = st.stats->log_end.load();
  auto behind = end > applied ? end - applied : 0;
  auto now = std::chrono::steady_clock::now();
  if (behind > 10000 && now - st.last_progress_log > std::chrono::seconds(2)) {
    st.catching_up = true;
    st.last_progress_log = now;
    log(log_level::info, component,
        st.store->dir().string() + ": catching up, offset " + std::to_string(applied) + " of "
          + std::to_string(end) + " (" + std::to_string(applied * 100 / std::max<log_offset>(end, 1))
          + " %)");
  } else if (behind == 0 && st.catching_up) {
    st.catching_up = false;
    log(log_level::info, component,
        st.store->dir().string() + ": caught up at offset " + std::to_string(applied));
  }
}

caf::behavior model_actor(self_ptr self, persistence::lmdb_store* store,
                          std::shared_ptr<projection_handler> handler,
                          std::shared_ptr<read_model_stats> stats, persistence::table_id meta,
                          std::chrono::milliseconds resubscribe_after) {
  auto& st = self->state;
  st.store = store;
  st.handler = std::move(handler);
  st.stats = std::move(stats);
  st.meta = meta;
  st.resubscribe_after = resubscribe_after;
  st.last_batch = std::chrono::steady_clock::now();
  return {
    [=](event_batch& batch) -> caf::result<applied_atom, log_offset> {
      auto& st = self->state;
      st.last_batch = std::chrono::steady_clock::now();
      auto next = batch.next;
      auto written = st.store->write([&](persistence::store_writer& txn) {
        for (const auto& ev : batch.events)
          st.handler->apply(txn, ev);
        txn.put(st.meta, offset_key, to_be64(next));
      });
      if (!written) {
        log(log_level::error, component, "applying a batch failed: " + written.error().message);
        return caf::make_error(caf::sec::runtime_error, written.error().message);
      }
      // Only after the commit: the write callback may run twice when the map grows.
      auto now = now_ms();
      for (const auto& ev : batch.events) {
        if (st.stats->lag_seconds)
          st.stats->lag_seconds->observe(static_cast<double>(now - ev.written_at) / 1000.0);
      }
      if (!batch.events.empty()) {
        st.stats->lag_ms = now - batch.events.back().written_at;
        st.stats->applied = batch.events.back().offset;
      }
      st.stats->events += batch.events.size();
      st.stats->log_end = std::max(batch.log_end, st.stats->applied.load());
      log_progress(self);
      return {applied_atom::value, next};
    },
    [=](subscribe_atom, caf::actor& poller) {
      self->state.poller = std::move(poller);
      send_subscribe(self);
      self->delayed_send(self, self->state.resubscribe_after, resubscribe_atom::value);
    },
    [=](resubscribe_atom) {
      auto& st = self->state;
      if (std::chrono::steady_clock::now() - st.last_batch >= st.resubscribe_after)
        send_subscribe(self);
      self->delayed_send(self, st.resubscribe_after, resubscribe_atom::value);
    },
  };
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
      s.dir.string() + " is unreadable (" + store.error().message + "); rebuilding it from offset 0");
  std::error_code ec;
  std::filesystem::remove_all(s.dir, ec);
  return persistence::lmdb_store::open(opts);
}

} // namespace

read_model::read_model(read_model_settings s, std::unique_ptr<persistence::lmdb_store> store)
  : settings_(std::move(s)), store_(std::move(store)) {}

read_model::~read_model() = default;

persistence::expected<std::unique_ptr<read_model>>
read_model::open(caf::actor_system& sys, read_model_settings settings) {
  auto tables = settings.handler->tables();
  auto meta = static_cast<persistence::table_id>(tables.size());
  tables.push_back("meta");
  auto store = open_store(settings, tables);
  if (!store)
    return store.error();
  auto wanted = format_of(*settings.handler);
  std::string found;
  log_offset next = 1;
  auto read = (*store)->read([&](const persistence::store_reader& r) {
    if (auto f = r.get(meta, format_key))
      found = std::string(*f);
    if (auto o = r.get(meta, offset_key))
      next = from_be64(*o);
  });
  if (!read)
    return read.error();
  if (found != wanted) {
    log(log_level::info, component,
        settings.dir.string() + (found.empty() ? " is new" : " has format " + found) + "; building "
          + wanted + " by replay from offset 0");
    if (auto cleared = (*store)->clear(); !cleared)
      return cleared.error();
    auto init = (*store)->write([&](persistence::store_writer& w) {
      w.put(meta, format_key, wanted);
      w.put(meta, offset_key, to_be64(1));
    });
    if (!init)
      return init.error();
    next = 1;
  }
  settings.stats->applied = next - 1;
  auto rm = std::unique_ptr<read_model>(new read_model(std::move(settings), std::move(*store)));
  rm->actor_ = sys.spawn<caf::detached>(model_actor, rm->store_.get(), rm->settings_.handler,
                                        rm->settings_.stats, meta, rm->settings_.resubscribe_after);
  return rm;
}

void read_model::subscribe(const caf::actor& poller) {
  caf::anon_send(actor_, subscribe_atom::value, poller);
}

} // namespace kontor::projection

#pragma once

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include <caf/actor.hpp>
#include <caf/fwd.hpp>

#include "runtime/core/metrics.hpp"
#include "runtime/persistence/journal.hpp"
#include "runtime/persistence/lmdb_store.hpp"

namespace kontor::projection {

/// The data side of a read model, written by the application (for Kontor: accounts).
class projection_handler {
public:
  virtual ~projection_handler() = default;
  /// The format of what apply() stores; a store written in another format is rebuilt from 0.
  virtual std::string format() const = 0;
  /// The tables apply() uses; their table_ids are 0..n-1 in this order.
  virtual std::vector<std::string> tables() const = 0;
  /// Applies one event inside the batch's transaction. Must skip events it already applied:
  /// redelivery after a poller move or restart is normal. Must not touch anything outside `txn`.
  virtual void apply(persistence::store_writer& txn, const persistence::stored_event& ev) = 0;
};

/// What a read model reports (metrics, X-Projection-Offset).
struct read_model_stats {
  std::atomic<log_offset> applied{0};       ///< offset of the last event stored (0: none)
  std::atomic<log_offset> log_end{0};       ///< the journal's end as of the last batch
  std::atomic<std::uint64_t> events{0};     ///< events applied since start
  std::atomic<std::int64_t> lag_ms{0};      ///< apply time - write time of the last event
  metric_histogram* lag_seconds = nullptr;  ///< per-event lag, if set
};

/// Settings of a read model.
struct read_model_settings {
  std::filesystem::path dir;
  std::shared_ptr<projection_handler> handler;
  std::shared_ptr<read_model_stats> stats = std::make_shared<read_model_stats>();
  std::chrono::milliseconds resubscribe_after{std::chrono::seconds(2)};
};

/// A read model on this node: an LMDB store with the handler's tables and the offset it has
/// applied up to. Each batch and the offset after it commit in one transaction, so a crash can
/// neither lose nor double-apply an event. A missing, corrupt or other-format store is rebuilt
/// by replay from offset 0, with progress in the log.
class read_model {
public:
  /// Opens (or rebuilds) the store and starts the actor that applies batches.
  static persistence::expected<std::unique_ptr<read_model>> open(caf::actor_system& sys,
                                                                 read_model_settings settings);
  ~read_model();
  read_model(const read_model&) = delete;
  read_model& operator=(const read_model&) = delete;

  /// Subscribes to `poller` (or its singleton proxy) from the stored offset, and again whenever
  /// no batch came for `resubscribe_after` (a restarted or moved poller knows no subscribers).
  void subscribe(const caf::actor& poller);

  /// The store, for queries (read transactions from any thread).
  const persistence::lmdb_store& store() const noexcept { return *store_; }
  const read_model_stats& stats() const noexcept { return *settings_.stats; }
  /// The actor that applies batches; stop it with the actor system.
  const caf::actor& actor() const noexcept { return actor_; }

private:
  read_model(read_model_settings s, std::unique_ptr<persistence::lmdb_store> store);

  read_model_settings settings_;
  std::unique_ptr<persistence::lmdb_store> store_;
  caf::actor actor_;
};

} // namespace kontor::projection

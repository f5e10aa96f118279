#pragma once

// Internal to kontor_persistence: the thread that folds the log into the derived index.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <thread>

#include "runtime/persistence/journal_index.hpp"
#include "runtime/persistence/journal_log.hpp"
#include "runtime/persistence/journal_tail.hpp"
#include "runtime/persistence/journal_writer.hpp"

namespace kontor::persistence::detail {

/// Folds committed log entries into the index (by id and by shard) every `interval`, in one
/// large index transaction, then drops them from the tail. Also keeps the log file's
/// preallocated zeros topped up (it has the spare time; the writer must not wait for that).
class journal_indexer {
public:
  journal_indexer(const journal_log& log, journal_index& index, journal_tail& tail,
                  std::chrono::milliseconds interval, log_file_space& space);
  ~journal_indexer();
  journal_indexer(const journal_indexer&) = delete;
  journal_indexer& operator=(const journal_indexer&) = delete;

  /// Indexes everything up to `end` (at open, before the threads start); logs progress of
  /// long runs, and always when `rebuilding`.
  expected<void> catch_up(log_offset end, bool rebuilding);

  /// Starts the thread; throws std::system_error when it cannot.
  void start();
  /// Stops and joins the thread (what it has not indexed is indexed at the next open).
  void stop();

  /// Every log entry with an offset up to this one is in the index environment.
  log_offset watermark() const noexcept { return watermark_.load(); }
  /// Index commits that failed since open.
  std::uint64_t failures() const noexcept { return failures_.load(); }

private:
  void run();
  /// Indexes (watermark, min(to, watermark + a bounded number)] in one index commit, then trims
  /// the tail and publishes the new watermark, which it returns.
  expected<log_offset> step(log_offset to);
  void top_up_log_file();

  const journal_log& log_;
  journal_index& index_;
  journal_tail& tail_;
  const std::chrono::milliseconds interval_;
  log_file_space& space_;
  std::atomic<log_offset> watermark_{0}; ///< changed by the indexer only, after its commit
  std::atomic<std::uint64_t> failures_{0};
  std::thread thread_;
};

} // namespace kontor::persistence::detail

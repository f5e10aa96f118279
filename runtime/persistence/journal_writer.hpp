#pragma once

// Internal to kontor_persistence: the journal's writer thread (group commits of appends,
// snapshots and shard imports into the log environment).

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <variant>
#include <vector>

#include "runtime/persistence/file_preallocator.hpp"
#include "runtime/persistence/journal_index.hpp"
#include "runtime/persistence/journal_log.hpp"
#include "runtime/persistence/journal_tail.hpp"

namespace kontor::persistence::detail {

/// Zeros kept ahead of the log file's used end: the writer moves the used end, the indexer
/// thread tops the zeros up (see file_preallocator.hpp).
struct log_file_space {
  std::unique_ptr<file_preallocator> prealloc;  ///< null: preallocation off
  std::atomic<std::uint64_t> used_end{0};       ///< bytes of the file LMDB uses; writer sets it
  std::uint64_t page_size = 0;                  ///< of the log env; fixed when the file was made
  /// Bytes of the log file LMDB uses as of its last commit.
  std::uint64_t used(MDB_env* env) const;
};

/// The one thread that writes the log environment. Everything queued while a commit runs goes
/// into the next one: one transaction and one fsync for all of it (group commit). Callbacks
/// run on this thread after the commit is durable, once the tail shows its events.
class journal_writer {
public:
  /// `shard_ends`: the last position of every shard when the journal opened.
  journal_writer(journal_log& log, const journal_index& index, journal_tail& tail,
                 std::vector<shard_offset> shard_ends, std::size_t max_batch,
                 commit_observer on_commit, log_file_space& space);
  ~journal_writer();
  journal_writer(const journal_writer&) = delete;
  journal_writer& operator=(const journal_writer&) = delete;

  /// Starts the thread; throws std::system_error when it cannot.
  void start();
  /// Refuses new work, commits what is queued and joins the thread.
  void stop();

  /// Queues an append; refused at once (errc::closed) while stopping.
  void append(append_request req, append_callback done);
  /// Queues a snapshot write; refused at once (errc::closed) while stopping.
  void save_snapshot(snapshot snap, std::function<void(expected<void>)> done);
  /// Queues an import; refused at once (errc::closed) while stopping.
  void import(shard_import batch, import_callback done);

private:
  struct pending_append {
    append_request req;
    append_callback done;
  };
  struct pending_snapshot {
    snapshot snap;
    std::function<void(expected<void>)> done;
  };
  struct pending_import {
    shard_import batch;
    import_callback done;
  };
  using work = std::variant<pending_append, pending_snapshot, pending_import>;
  /// The result of one work item: a written snapshot (monostate), append or import, or an error.
  using outcome = std::variant<std::monostate, append_result, import_result, error>;
  /// The highest committed seq per id, keyed by views of the ids in the batch.
  using highest_map = std::unordered_map<std::string_view, sequence_nr>;

  /// What one attempt at writing a batch did.
  struct batch_attempt {
    int rc = MDB_SUCCESS;      ///< an LMDB failure that fails the whole batch
    std::string operation;     ///< the call that failed
    bool committed = false;    ///< false also when nothing needed writing
    std::size_t appends = 0;
    std::size_t events = 0;
    std::chrono::nanoseconds commit_time{0};
  };

  /// Shard ends and id highs as a batch moves them; kept only if the commit succeeds.
  struct batch_view {
    highest_map highest;
    std::vector<shard_offset> shard_ends;
  };

  std::optional<error> enqueue(work& item);
  void run();
  void run_batch(std::vector<work>& batch);
  batch_attempt write_batch(std::vector<work>& batch, epoch_ms at, std::vector<outcome>& results);
  /// The highest committed seq of every id the batch writes; LMDB code on failure.
  int committed_highest(const std::vector<work>& batch, highest_map& out,
                        std::string& operation) const;
  std::optional<error> validate(const append_request& req) const;
  /// Writes one import into `txn` after checking all of it; its outcome.
  outcome write_import(MDB_txn* txn, const shard_import& imp, batch_view& view, log_offset& end,
                       int& rc, std::string& operation);
  /// Whether the journal holds each event of `overlap` (consecutive positions) at its position
  /// (same id, seq and write time): an error when not; rc/operation set when reading failed.
  std::optional<error> check_overlap(MDB_txn* txn, shard_id shard,
                                     const std::vector<stored_event>& overlap,
                                     const std::string& where, int& rc,
                                     std::string& operation) const;
  /// The import's snapshots that are newer than the stored ones and not ahead of their events.
  int write_import_snapshots(MDB_txn* txn, const shard_import& imp, const highest_map& highest,
                             std::string& operation);
  void deliver(std::vector<work>& batch, std::vector<outcome>& results);
  /// At most how far `batch` can move the log file's used end (generous: LMDB's page overhead).
  static std::uint64_t growth_bound(const std::vector<work>& batch);
  const std::string& dir() const noexcept { return dir_; }

  journal_log& log_;
  const journal_index& index_;
  journal_tail& tail_;
  const std::string dir_;
  const std::size_t max_batch_;
  const commit_observer on_commit_;
  log_file_space& space_;
  log_offset log_end_ = 0;                 ///< the last committed offset (writer thread only)
  std::vector<shard_offset> shard_ends_;   ///< per shard, committed (writer thread only)
  std::vector<tail_add> added_;            ///< the batch's events for the tail

  std::mutex queue_mutex_;
  std::condition_variable queue_cv_;
  std::deque<work> queue_;
  bool stopping_ = false;
  std::thread thread_;
};

} // namespace kontor::persistence::detail

#pragma once

// Internal to kontor_persistence: the journal's log environment (<dir>/), the truth.
//
//   meta       "format" -> "kontor-journal/3", "shards" -> u32 BE
//   log        offset u64 BE (1, 2, 3, ... dense, commit order) -> record (log_record.hpp),
//              written with MDB_APPEND by the writer thread; a commit is fsynced before it is
//              acknowledged (no MDB_NOSYNC / MDB_NOMETASYNC / MDB_MAPASYNC)
//   snapshots  [id len u8][id] -> [seq u64 BE][payload]

#include <cstddef>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "runtime/persistence/journal_index.hpp"
#include "runtime/persistence/journal_tail.hpp"
#include "runtime/persistence/lmdb_env.hpp"
#include "runtime/persistence/lmdb_journal.hpp"

namespace kontor::persistence::detail {

/// What a stream lookup found for one entry: which id and seq, or which shard and position,
/// the record at the entry's offset must carry.
enum class ref_kind { by_id, by_shard };

/// The log environment: opening and checking it, and every read of it. Writes are the writer's.
class journal_log {
public:
  /// Opens or creates the log in `opts.dir` (which exists); checks its format and shard count.
  static expected<std::unique_ptr<journal_log>> open(const lmdb_options& opts);

  env_state& env() noexcept { return env_; }
  const env_state& env() const noexcept { return env_; }
  MDB_dbi log_dbi() const noexcept { return log_; }
  MDB_dbi snapshots_dbi() const noexcept { return snapshots_; }
  std::uint32_t shards() const noexcept { return shards_; }
  /// The log's last offset when it was opened.
  log_offset opened_end() const noexcept { return opened_end_; }

  /// Events with offset >= `from`: at most `max`, then on to the end of the last append.
  expected<log_page> scan(log_offset from, std::size_t max) const;

  /// The records at the offsets of `refs`, each checked to be the entry it was found as (the
  /// id's seq `key`, or the shard's position `key`).
  expected<std::vector<stored_event>> fetch(const std::vector<tail_entry>& refs, ref_kind kind,
                                            std::string_view id, shard_id shard) const;

  /// Index entries (by id and by shard) for the log entries in (from, to], and the distinct ids.
  expected<std::vector<index_entry>> read_for_index(log_offset from, log_offset to) const;

  /// The latest snapshot of `id`, if any.
  expected<std::optional<snapshot>> load_snapshot(const std::string& id) const;

  /// The log's last offset (0 when empty).
  expected<log_offset> end() const;

  /// An error naming the data directory for something found malformed.
  error corrupt(std::string what) const;

private:
  journal_log(std::filesystem::path dir, env_ptr env, std::uint32_t shards);

  /// What a walk over the log does after a record.
  enum class walk { next, stop };
  /// Calls `visit(offset, record)` for each record from offset `first` on, in order, until it
  /// answers stop, fails (its error is returned), or the log ends.
  std::optional<error> walk_log(
    log_offset first, const char* what,
    const std::function<expected<walk>(log_offset, std::string_view)>& visit) const;

  env_state env_;
  const std::uint32_t shards_;
  MDB_dbi log_ = 0;
  MDB_dbi snapshots_ = 0;
  log_offset opened_end_ = 0;
};

} // namespace kontor::persistence::detail

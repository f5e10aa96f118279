#pragma once

// Internal to kontor_persistence: the journal's derived index environment (<dir>/index/).
//
//   meta    "format" -> "kontor-journal-index/2", "watermark" -> offset u64 BE: every log entry
//           with offset <= watermark is in both indexes (same commit as the entries)
//   ids     [id len u8][id][seq u64 BE]       -> log offset u64 BE
//   shards  [shard u32 BE][position u64 BE]   -> log offset u64 BE
//
// Written apart from the acknowledged commits (MDB_NOMETASYNC: an OS crash may lose its last
// commit, which only means indexing again from an older watermark). Always rebuildable from
// the log: a missing, corrupt or foreign one is deleted and rebuilt when the journal opens.

#include <cstddef>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/persistence/journal_tail.hpp"
#include "runtime/persistence/lmdb_env.hpp"

namespace kontor::persistence::detail {

/// One index entry to write: the key (an id key or a shard key) and the log offset.
struct index_entry {
  std::string key;
  log_offset offset = 0;
  bool by_shard = false; ///< a shard key (else an id key)
};

/// The index environment: lookups by id and by shard, and the indexer's writes.
class journal_index {
public:
  /// Opens the index in `dir` (created when missing or empty, with watermark 0). An error means
  /// that it cannot be used as it is: the caller deletes it and tries once more.
  static expected<std::unique_ptr<journal_index>> open(const std::filesystem::path& dir,
                                                       std::size_t map_size, log_offset log_end);

  const env_state& env() const noexcept { return env_; }
  /// The watermark stored when the index was opened.
  log_offset opened_watermark() const noexcept { return opened_watermark_; }

  /// Writes `entries` (sorted by key within each kind) and the watermark in one commit,
  /// growing the map when it is full (indexer thread only).
  expected<void> write(const std::vector<index_entry>& entries, log_offset watermark);

  /// Entries of `id` with seq >= `from`, at most `max` (key = seq).
  expected<std::vector<tail_entry>> by_id(std::string_view id, sequence_nr from,
                                          std::size_t max) const;
  /// The highest seq of each of `ids` in the index (0 when none), in one read transaction.
  expected<std::vector<sequence_nr>> highest_seqs(const std::vector<std::string_view>& ids) const;
  /// Entries of `shard` with position >= `from`, at most `max` (key = position).
  expected<std::vector<tail_entry>> by_shard(shard_id shard, shard_offset from,
                                             std::size_t max) const;
  /// The last indexed position of `shard` (0 when none).
  expected<shard_offset> shard_end(shard_id shard) const;
  /// The last indexed position of each shard below `shards` (0 when none).
  expected<std::vector<shard_offset>> shard_ends(std::uint32_t shards) const;

private:
  journal_index(std::filesystem::path dir, env_ptr env);

  int write_once(const std::vector<index_entry>& entries, log_offset watermark,
                 std::string& operation);

  env_state env_;
  MDB_dbi meta_ = 0;
  MDB_dbi ids_ = 0;
  MDB_dbi shards_ = 0;
  log_offset opened_watermark_ = 0;
};

} // namespace kontor::persistence::detail

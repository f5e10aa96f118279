#pragma once

#include <chrono>
#include <cstddef>
#include <filesystem>
#include <memory>
#include <optional>

#include "runtime/persistence/journal.hpp"

namespace kontor::persistence {

/// Settings of the LMDB journal.
struct lmdb_options {
  std::filesystem::path dir;                   ///< created if missing
  std::uint32_t number_of_shards = 64;         ///< must match the value the journal was created with
  std::size_t initial_map_size = 1ull << 30;   ///< grown (doubled) on demand, never a write failure
  std::size_t max_batch_appends = 4096;        ///< cap per group commit, bounds one batch's latency
  /// Least time between two commits of the per-id index (0..24 h). The index is written apart
  /// from the acknowledged commits; longer intervals mean fewer, larger index commits and more
  /// recent events kept in memory meanwhile.
  std::chrono::milliseconds index_interval{200};
  /// Zero-filled bytes kept ahead of the log file's used end (0: off), written by the indexer
  /// thread; see file_preallocator.hpp. Off where the file system has no O_DIRECT.
  std::uint64_t preallocate = 0;
  commit_observer on_commit;                   ///< optional metrics hook, runs on the writer thread
};

/// Opens (or creates) the LMDB journal in `opts.dir`, brings its per-id index (in
/// `opts.dir`/index, rebuilt from the log if missing or unusable) up to the log's end, and
/// starts its writer and indexer threads.
/// Fails with a clear error for an unreadable, corrupt or unknown-format directory.
expected<std::unique_ptr<journal>> open_lmdb_journal(lmdb_options opts);

/// For tests and tools: every log entry with an offset up to the returned one is in the LMDB
/// journal's on-disk index (later ones are in memory); nullopt if `j` is not an LMDB journal.
std::optional<log_offset> lmdb_index_watermark(const journal& j);

/// For tests and tools: index commits of the LMDB journal that failed since it was opened
/// (appends go on meanwhile); nullopt if `j` is not an LMDB journal.
std::optional<std::uint64_t> lmdb_index_failures(const journal& j);

/// For tests: the flags the LMDB journal's log environment runs with (mdb_env_get_flags), to
/// check that nothing trades durability away; nullopt if `j` is not an LMDB journal.
std::optional<unsigned> lmdb_log_env_flags(const journal& j);

} // namespace kontor::persistence

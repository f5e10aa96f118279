#pragma once

#include <cstddef>
#include <filesystem>
#include <memory>

#include "runtime/persistence/journal.hpp"

namespace kontor::persistence {

/// Settings of the LMDB journal.
struct lmdb_options {
  std::filesystem::path dir;                   ///< created if missing
  std::uint32_t number_of_shards = 64;         ///< must match the value the journal was created with
  std::size_t initial_map_size = 1ull << 30;   ///< grown (doubled) on demand, never a write failure
  std::size_t max_batch_appends = 4096;        ///< cap per group commit, bounds one batch's latency
  commit_observer on_commit;                   ///< optional metrics hook, runs on the writer thread
};

/// Opens (or creates) the LMDB journal in `opts.dir` and starts its writer thread.
/// Fails with a clear error for an unreadable, corrupt or unknown-format directory.
expected<std::unique_ptr<journal>> open_lmdb_journal(lmdb_options opts);

} // namespace kontor::persistence

#pragma once

#include <string>

#include "runtime/core/expected.hpp"

namespace kontor::persistence {

/// Everything that can go wrong in the journal. Business outcomes never appear here.
enum class errc {
  sequence_conflict = 1, ///< append's first sequence number is not highest + 1 (another writer)
  invalid_argument,      ///< empty append, oversized id, shard out of range, ...
  io_error,              ///< the disk refused (full, read-only, EIO); nothing was written
  corrupt,               ///< the data directory is not a readable Kontor journal
  unknown_format,        ///< written by a newer or unknown journal format version
  config_mismatch,       ///< e.g. opened with a different number of shards than created with
  closed,                ///< the journal is shutting down; nothing was written
};

/// A journal error: a code to branch on and a message for humans (names the path or id).
struct error {
  errc code;
  std::string message;
};

/// The stable name of an error code, e.g. "sequence_conflict".
const char* to_string(errc code) noexcept;

template <class T>
using expected = kontor::expected<T, error>;

} // namespace kontor::persistence

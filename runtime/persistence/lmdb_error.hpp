#pragma once

#include <filesystem>
#include <string_view>
#include <system_error>

#include "runtime/persistence/errc.hpp"

// The one place that turns LMDB (and OS) return codes into journal errors. Internal to
// kontor_persistence: nothing outside this folder includes it.

namespace kontor::persistence::detail {

/// The journal error code for an `mdb_*` return code (an MDB_* code or an errno value).
errc lmdb_errc(int rc) noexcept;

/// A journal error for a failed `mdb_*` call: "<operation> failed for <path>: <reason> (rc)".
error lmdb_error(int rc, std::string_view operation, const std::filesystem::path& path);

/// A journal error for a failed file-system call (creating the data directory, ...).
error fs_error(const std::error_code& ec, std::string_view operation,
               const std::filesystem::path& path);

} // namespace kontor::persistence::detail

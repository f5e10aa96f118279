#include "runtime/persistence/lmdb_error.hpp"

#include <lmdb.h>

#include <string>

namespace kontor::persistence::detail {

errc lmdb_errc(int rc) noexcept {
  switch (rc) {
    // The file is not an LMDB file, or its pages do not make sense.
    case MDB_INVALID:
    case MDB_CORRUPTED:
    case MDB_PAGE_NOTFOUND:
    case MDB_KEYEXIST: // the journal never overwrites: a clash means index and log disagree
      return errc::corrupt;
    // Written by another LMDB file format, or a database of an unexpected kind.
    case MDB_VERSION_MISMATCH:
    case MDB_INCOMPATIBLE:
      return errc::unknown_format;
    case MDB_BAD_VALSIZE:
      return errc::invalid_argument;
    // Resource limits (MDB_MAP_FULL, MDB_TXN_FULL, MDB_READERS_FULL, MDB_DBS_FULL, ...),
    // MDB_PANIC and every errno value (ENOSPC, EIO, EACCES, EROFS, ENOTDIR, ...).
    default:
      return errc::io_error;
  }
}

error lmdb_error(int rc, std::string_view operation, const std::filesystem::path& path) {
  std::string reason = rc > 0 ? std::system_category().message(rc) : std::string{mdb_strerror(rc)};
  std::string msg;
  msg.reserve(operation.size() + path.native().size() + reason.size() + 40);
  msg.append(operation).append(" failed for ").append(path.string()).append(": ");
  msg.append(reason).append(" (").append(std::to_string(rc)).append(")");
  return error{lmdb_errc(rc), std::move(msg)};
}

error fs_error(const std::error_code& ec, std::string_view operation,
               const std::filesystem::path& path) {
  std::string msg;
  msg.append(operation).append(" failed for ").append(path.string()).append(": ");
  msg.append(ec.message());
  return error{errc::io_error, std::move(msg)};
}

} // namespace kontor::persistence::detail

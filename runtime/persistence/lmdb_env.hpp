#pragma once

// Internal to kontor_persistence: the LMDB plumbing the journal's parts share (byte encoding,
// transaction and cursor guards, environments whose map can grow while readers run).

#include <lmdb.h>

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <utility>

#include "runtime/persistence/errc.hpp"

namespace kontor::persistence::detail {

// ---- byte encoding: big-endian, so LMDB's memcmp key order is numeric order ----

/// Writes the low `bytes` bytes of `v` big-endian to `p`.
inline void store_be(char* p, std::uint64_t v, int bytes) noexcept {
  for (int i = bytes - 1; i >= 0; --i) {
    p[i] = static_cast<char>(v & 0xffu);
    v >>= 8;
  }
}

/// Reads a `bytes`-byte big-endian number from `p`.
inline std::uint64_t load_be(const char* p, int bytes) noexcept {
  std::uint64_t v = 0;
  for (int i = 0; i < bytes; ++i)
    v = (v << 8) | static_cast<unsigned char>(p[i]);
  return v;
}

/// An MDB_val that points at `s` (LMDB never writes through it).
inline MDB_val to_val(std::string_view s) noexcept {
  return MDB_val{s.size(), const_cast<char*>(s.data())};
}

/// The bytes an MDB_val points at.
inline std::string_view to_view(const MDB_val& v) noexcept {
  return {static_cast<const char*>(v.mv_data), v.mv_size};
}

/// An 8-byte big-endian key or value (a log offset) that an MDB_val can point to.
struct u64_key {
  char bytes[8];
  explicit u64_key(std::uint64_t v) noexcept { store_be(bytes, v, 8); }
  MDB_val val() noexcept { return MDB_val{sizeof bytes, bytes}; }
};

/// At most 64 printable characters of `s`, for messages about unexpected on-disk values.
std::string printable(std::string_view s);

/// Builds a journal error.
inline error make_error(errc code, std::string message) {
  return error{code, std::move(message)};
}

// ---- guards ----

/// Aborts a transaction when leaving scope, unless released (committed or already ended).
class txn_guard {
public:
  explicit txn_guard(MDB_txn* txn) noexcept : txn_(txn) {}
  txn_guard(const txn_guard&) = delete;
  txn_guard& operator=(const txn_guard&) = delete;
  ~txn_guard() {
    if (txn_ != nullptr)
      mdb_txn_abort(txn_);
  }
  MDB_txn* get() const noexcept { return txn_; }
  MDB_txn* release() noexcept { return std::exchange(txn_, nullptr); }

private:
  MDB_txn* txn_;
};

/// Closes a read-only transaction's cursor (LMDB frees write-transaction cursors itself).
class read_cursor {
public:
  read_cursor() = default;
  read_cursor(const read_cursor&) = delete;
  read_cursor& operator=(const read_cursor&) = delete;
  ~read_cursor() {
    if (cursor_ != nullptr)
      mdb_cursor_close(cursor_);
  }
  int open(MDB_txn* txn, MDB_dbi dbi) noexcept { return mdb_cursor_open(txn, dbi, &cursor_); }
  MDB_cursor* get() const noexcept { return cursor_; }

private:
  MDB_cursor* cursor_ = nullptr;
};

/// Closes an environment that never made it into a journal.
struct env_closer {
  void operator()(MDB_env* env) const noexcept { mdb_env_close(env); }
};
using env_ptr = std::unique_ptr<MDB_env, env_closer>;

/// Creates an environment with the journal's settings and opens it in `dir` (which must exist),
/// clearing stale reader slots of crashed processes.
expected<env_ptr> open_env(const std::filesystem::path& dir, unsigned int max_dbs,
                           std::size_t map_size, unsigned int flags);

/// Whether the main database of the transaction's environment is empty (a fresh environment).
expected<bool> env_is_empty(MDB_txn* txn, const std::filesystem::path& dir);

/// Reads the 8-byte big-endian key of the last entry behind `cursor` (0 when empty).
int find_last_u64(MDB_cursor* cursor, std::uint64_t& out) noexcept;

// ---- an environment shared by one writer thread and any number of readers ----

/// One open LMDB environment and what growing its map needs. Closed with the object.
class env_state {
public:
  env_state(std::filesystem::path dir, env_ptr env);
  ~env_state();
  env_state(const env_state&) = delete;
  env_state& operator=(const env_state&) = delete;

  const std::filesystem::path& dir() const noexcept { return dir_; }
  MDB_env* get() const noexcept { return env_; }

  /// Doubles the map (the environment's one writer calls it between transactions, after
  /// MDB_MAP_FULL). Waits for open read transactions. False with `failure` set when it cannot;
  /// if LMDB failed half-way the environment is broken from then on.
  bool grow_map(std::string& failure);

  /// A failed remap left the environment unusable: every later use fails with io_error.
  bool broken() const noexcept { return broken_.load(); }

  /// The io_error every use of a broken environment gets.
  error broken_error() const;

  /// An error for a failed `mdb_*` call on this environment.
  error failure(int rc, std::string_view operation) const;

private:
  friend class read_txn;
  const std::filesystem::path dir_;
  MDB_env* const env_;
  /// Readers hold it shared for the life of their read transaction; a map resize holds it
  /// exclusively (mdb_env_set_mapsize must not run while a read transaction is open).
  mutable std::shared_mutex map_mutex_;
  mutable std::atomic<bool> resize_pending_{false}; ///< a resize waits for map_mutex_
  std::size_t map_size_ = 0;                        ///< only the env's writer changes it
  std::atomic<bool> broken_{false};
};

/// Holds an environment's map lock (shared) and a read-only transaction for one read.
class read_txn {
public:
  explicit read_txn(const env_state& e) : lock_(wait_for_resize(e)), env_(e.get()) {}
  read_txn(const read_txn&) = delete;
  read_txn& operator=(const read_txn&) = delete;
  ~read_txn() {
    if (txn_ != nullptr)
      mdb_txn_abort(txn_);
  }
  int begin() noexcept { return mdb_txn_begin(env_, nullptr, MDB_RDONLY, &txn_); }
  MDB_txn* get() const noexcept { return txn_; }

private:
  // New readers hold back while a resize waits for the lock: glibc's rwlock prefers readers,
  // so a steady stream of overlapping reads could otherwise starve the resize (and the writer).
  static std::shared_lock<std::shared_mutex> wait_for_resize(const env_state& e) {
    e.resize_pending_.wait(true);
    return std::shared_lock{e.map_mutex_};
  }

  std::shared_lock<std::shared_mutex> lock_;
  MDB_env* env_;
  MDB_txn* txn_ = nullptr;
};

/// Begins `txn` and opens `cursor` on `dbi`; the error to report when either fails.
/// `caller` names the operation in the message.
std::optional<error> open_read_cursor(const env_state& e, read_txn& txn, read_cursor& cursor,
                                      MDB_dbi dbi, std::string_view caller);

/// Begins `txn`; the error to report when that fails.
std::optional<error> begin_read(const env_state& e, read_txn& txn, std::string_view caller);

/// Data directories open in this process: LMDB must never open one environment twice in a
/// process (its POSIX locks would silently break). Held for the life of a journal.
class dir_claim {
public:
  dir_claim() = default;
  dir_claim(dir_claim&& other) noexcept : key_(std::exchange(other.key_, {})) {}
  dir_claim& operator=(dir_claim&&) = delete;
  ~dir_claim();
  /// Claims `key` (a canonical path); false when it is already claimed in this process.
  bool claim(std::string key);

private:
  std::string key_;
};

} // namespace kontor::persistence::detail

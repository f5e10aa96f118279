#pragma once

#include <cstddef>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/persistence/errc.hpp"

namespace kontor::persistence {

/// Index of a table in `store_options::tables`.
using table_id = unsigned;

/// Read access inside one read (or write) transaction. Views returned stay valid only while the
/// transaction runs (inside the callback).
class store_reader {
public:
  virtual ~store_reader() = default;
  /// The value of `key` in `table`, if any.
  virtual std::optional<std::string_view> get(table_id table, std::string_view key) const = 0;
  /// Calls `fn(key, value)` for keys >= `from` in order until it returns false.
  virtual void scan(table_id table, std::string_view from,
                    const std::function<bool(std::string_view, std::string_view)>& fn) const = 0;
};

/// Write access inside one write transaction. A failing put or erase is reported by
/// lmdb_store::write after the callback (and the whole transaction is discarded).
class store_writer : public store_reader {
public:
  virtual void put(table_id table, std::string_view key, std::string_view value) = 0;
  /// Like put, for keys that are larger than every key in the table (uses MDB_APPEND).
  virtual void append(table_id table, std::string_view key, std::string_view value) = 0;
  virtual void erase(table_id table, std::string_view key) = 0;
};

/// Settings of an LMDB table store.
struct store_options {
  std::filesystem::path dir;                 ///< created if missing
  std::vector<std::string> tables;           ///< named tables; table_id = position here
  std::size_t initial_map_size = 256u << 20; ///< grows (doubles) on demand
};

/// A small transactional key-value store on LMDB for derived data (read models): all writes of
/// one `write` call commit atomically. Commits write data pages durably before the meta page
/// (MDB_NOMETASYNC): an OS crash may lose the last commit, never integrity, and since readers
/// of this store keep their input offsets in the same commit, a lost commit is simply redone.
/// One writer at a time; reads from any thread, concurrently with the writer.
class lmdb_store {
public:
  /// Opens or creates the store in `opts.dir`. Clear errors for unreadable or corrupt dirs.
  static expected<std::unique_ptr<lmdb_store>> open(store_options opts);

  ~lmdb_store();
  lmdb_store(const lmdb_store&) = delete;
  lmdb_store& operator=(const lmdb_store&) = delete;

  /// Runs `fn` in one write transaction and commits it. If the map fills up, the transaction is
  /// discarded, the map grows and `fn` runs again: `fn` must have no effects outside the store.
  expected<void> write(const std::function<void(store_writer&)>& fn);

  /// Runs `fn` in one read transaction.
  expected<void> read(const std::function<void(const store_reader&)>& fn) const;

  /// Deletes every entry of every table in one transaction.
  expected<void> clear();

  /// The directory of the store.
  const std::filesystem::path& dir() const noexcept;

private:
  struct impl;
  explicit lmdb_store(std::unique_ptr<impl> p);
  std::unique_ptr<impl> impl_;
};

} // namespace kontor::persistence

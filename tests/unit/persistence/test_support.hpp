#pragma once

#include <lmdb.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/resource.h>

#include <catch2/catch.hpp>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <future>
#include <limits>
#include <memory>
#include <random>
#include <string>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include "runtime/persistence/lmdb_journal.hpp"

namespace kontor::persistence::test {

/// A fresh directory under /tmp, removed with everything in it at the end of the test.
class temp_dir {
public:
  temp_dir() {
    std::string tmpl = "/tmp/kontor-persistence-XXXXXX";
    REQUIRE(::mkdtemp(tmpl.data()) != nullptr);
    path_ = tmpl;
  }
  temp_dir(const temp_dir&) = delete;
  temp_dir& operator=(const temp_dir&) = delete;
  ~temp_dir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  /// The directory itself.
  const std::filesystem::path& path() const noexcept { return path_; }
  /// The journal's data directory inside it (created by the journal).
  std::filesystem::path journal_dir() const { return path_ / "journal"; }

private:
  std::filesystem::path path_;
};

/// Journal options for tests: few shards, the given directory.
inline lmdb_options options(const std::filesystem::path& dir, std::uint32_t shards = 4) {
  lmdb_options opts;
  opts.dir = dir;
  opts.number_of_shards = shards;
  return opts;
}

/// Opens a journal and fails the test (printing the journal's message) if that fails.
inline std::unique_ptr<journal> open_ok(lmdb_options opts) {
  auto j = open_lmdb_journal(std::move(opts));
  if (!j)
    FAIL("open_lmdb_journal failed: " << to_string(j.error().code) << ": " << j.error().message);
  return std::move(*j);
}

/// An append of `events` to `id` in `shard`, starting at `first_seq`.
inline append_request make_append(shard_id shard, std::string id, sequence_nr first_seq,
                                  std::vector<std::string> events) {
  return append_request{shard, std::move(id), first_seq, std::move(events)};
}

/// Queues all appends at once (so that they can share batches, in this order) and waits for
/// every result.
inline std::vector<expected<append_result>> append_all(journal& j,
                                                       std::vector<append_request> reqs) {
  std::vector<std::future<expected<append_result>>> futures;
  for (auto& req : reqs) {
    auto p = std::make_shared<std::promise<expected<append_result>>>();
    futures.push_back(p->get_future());
    j.append_async(std::move(req), [p](expected<append_result> r) { p->set_value(std::move(r)); });
  }
  std::vector<expected<append_result>> out;
  for (auto& f : futures)
    out.push_back(f.get());
  return out;
}

/// Reads the whole log in one call.
inline std::vector<stored_event> whole_log(const journal& j) {
  auto page = j.read_log(1, std::numeric_limits<std::size_t>::max());
  if (!page)
    FAIL("read_log failed: " << to_string(page.error().code) << ": " << page.error().message);
  return std::move(page->events);
}

/// Saves a snapshot and waits until it is durable.
inline expected<void> save_snapshot(journal& j, snapshot snap) {
  auto p = std::make_shared<std::promise<expected<void>>>();
  auto f = p->get_future();
  j.save_snapshot_async(std::move(snap), [p](expected<void> r) { p->set_value(std::move(r)); });
  return f.get();
}

/// The error code of a failed result, for CHECKs; fails the test if the result is a value.
template <class T>
errc code_of(const expected<T>& r) {
  REQUIRE_FALSE(r.has_value());
  return r.error().code;
}

/// The payloads of a list of events.
inline std::vector<std::string> payloads(const std::vector<stored_event>& events) {
  std::vector<std::string> out;
  for (const auto& e : events)
    out.push_back(e.payload);
  return out;
}

/// Puts `key` = `value` into the named database `db` (or the main database when empty) of the
/// LMDB environment in `dir`, bypassing the journal.
inline void raw_put(const std::filesystem::path& dir, const std::string& db,
                    const std::string& key, const std::string& value) {
  MDB_env* env = nullptr;
  REQUIRE(mdb_env_create(&env) == MDB_SUCCESS);
  REQUIRE(mdb_env_set_maxdbs(env, 128) == MDB_SUCCESS);
  REQUIRE(mdb_env_open(env, dir.c_str(), MDB_NOTLS, 0644) == MDB_SUCCESS);
  MDB_txn* txn = nullptr;
  REQUIRE(mdb_txn_begin(env, nullptr, 0, &txn) == MDB_SUCCESS);
  MDB_dbi dbi = 0;
  REQUIRE(mdb_dbi_open(txn, db.empty() ? nullptr : db.c_str(), MDB_CREATE, &dbi) == MDB_SUCCESS);
  MDB_val k{key.size(), const_cast<char*>(key.data())};
  MDB_val v{value.size(), const_cast<char*>(value.data())};
  REQUIRE(mdb_put(txn, dbi, &k, &v, 0) == MDB_SUCCESS);
  REQUIRE(mdb_txn_commit(txn) == MDB_SUCCESS);
  mdb_env_close(env);
}

/// Overwrites `file` with `size` pseudo-random bytes (fixed seed: the same bytes every run).
inline void write_garbage(const std::filesystem::path& file, std::size_t size) {
  std::mt19937_64 rng{20240611};
  std::ofstream out{file, std::ios::binary | std::ios::trunc};
  for (std::size_t i = 0; i < size; i += 8) {
    const std::uint64_t word = rng();
    out.write(reinterpret_cast<const char*>(&word), 8);
  }
  REQUIRE(out.good());
}

/// Lowers this process's soft file-size limit (RLIMIT_FSIZE) to `bytes` until lift() or the end
/// of the scope: a write past it fails with EFBIG, as on a full disk (SIGXFSZ is ignored
/// meanwhile instead of killing the test).
class file_size_cap {
public:
  explicit file_size_cap(std::uint64_t bytes) {
    REQUIRE(::getrlimit(RLIMIT_FSIZE, &saved_) == 0);
    old_handler_ = ::signal(SIGXFSZ, SIG_IGN);
    rlimit capped = saved_;
    capped.rlim_cur = static_cast<rlim_t>(bytes);
    REQUIRE(::setrlimit(RLIMIT_FSIZE, &capped) == 0);
  }
  file_size_cap(const file_size_cap&) = delete;
  file_size_cap& operator=(const file_size_cap&) = delete;
  ~file_size_cap() { lift(); }

  /// Restores the limit and the signal's handler; true when the limit could be restored.
  bool lift() {
    if (!active_)
      return true;
    active_ = false;
    bool ok = ::setrlimit(RLIMIT_FSIZE, &saved_) == 0;
    ::signal(SIGXFSZ, old_handler_);
    return ok;
  }

private:
  rlimit saved_{};
  sighandler_t old_handler_ = SIG_DFL;
  bool active_ = true;
};

/// Waits until the journal's index reaches `offset` (true) or `timeout` passes (false).
inline bool wait_for_index(const journal& j, log_offset offset,
                           std::chrono::milliseconds timeout = std::chrono::seconds{20}) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    if (lmdb_index_watermark(j).value_or(0) >= offset)
      return true;
    if (std::chrono::steady_clock::now() >= deadline)
      return false;
    std::this_thread::sleep_for(std::chrono::milliseconds{2}); // poll until the deadline
  }
}

/// Waits until the journal reports more than `seen` failed index commits (true) or `timeout`.
inline bool wait_for_index_failures(const journal& j, std::uint64_t seen,
                                    std::chrono::milliseconds timeout = std::chrono::seconds{20}) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    if (lmdb_index_failures(j).value_or(0) > seen)
      return true;
    if (std::chrono::steady_clock::now() >= deadline)
      return false;
    std::this_thread::sleep_for(std::chrono::milliseconds{2}); // poll until the deadline
  }
}

} // namespace kontor::persistence::test

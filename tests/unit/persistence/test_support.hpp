#pragma once

#include <lmdb.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/resource.h>

#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <future>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include "runtime/persistence/lmdb_journal.hpp"
#include "tests/support/wait.hpp"

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

/// How long a test waits for the journal before it fails: far beyond any healthy append.
inline constexpr std::chrono::seconds wait_limit{30};

/// The value of `f`, or a test failure when it is not ready within `timeout`: a journal that
/// never answers fails the test instead of hanging it. For the test's own thread (it asserts).
template <class T>
T get_within(std::future<T>& f, std::chrono::milliseconds timeout = wait_limit) {
  if (f.wait_for(timeout) != std::future_status::ready)
    FAIL("no result from the journal within " << timeout.count() << " ms");
  return f.get();
}

/// Queues all appends at once (so that they can share batches, in this order) and waits for
/// every result until `timeout`; nullopt when one did not come. Asserts nothing: any thread.
inline std::optional<std::vector<expected<append_result>>>
append_all_for(journal& j, std::vector<append_request> reqs,
               std::chrono::milliseconds timeout = wait_limit) {
  std::vector<std::future<expected<append_result>>> futures;
  for (auto& req : reqs) {
    auto p = std::make_shared<std::promise<expected<append_result>>>();
    futures.push_back(p->get_future());
    j.append_async(std::move(req), [p](expected<append_result> r) { p->set_value(std::move(r)); });
  }
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  std::vector<expected<append_result>> out;
  for (auto& f : futures) {
    if (f.wait_until(deadline) != std::future_status::ready)
      return std::nullopt;
    out.push_back(f.get());
  }
  return out;
}

/// append_all_for on the test's own thread: fails the test when a result does not come in time.
inline std::vector<expected<append_result>> append_all(journal& j,
                                                       std::vector<append_request> reqs) {
  auto out = append_all_for(j, std::move(reqs));
  if (!out)
    FAIL("no result from the journal within " << wait_limit.count() << " s");
  return std::move(*out);
}

/// One append, waited for until `timeout` (journal::append waits without a deadline); nullopt
/// when no result came. Asserts nothing: any thread.
inline std::optional<expected<append_result>>
append_for(journal& j, append_request req, std::chrono::milliseconds timeout = wait_limit) {
  std::vector<append_request> one;
  one.push_back(std::move(req));
  auto out = append_all_for(j, std::move(one), timeout);
  if (!out)
    return std::nullopt;
  return std::move(out->front());
}

/// One append on the test's own thread: fails the test when no result comes in time.
inline expected<append_result> append_within(journal& j, append_request req) {
  auto out = append_for(j, std::move(req));
  if (!out)
    FAIL("no result from the journal within " << wait_limit.count() << " s");
  return std::move(*out);
}

/// Holds the journal's writer thread inside a callback until the test opens it (to queue work
/// behind it). Callbacks share its state; the hold gives up after wait_limit, and the gate opens
/// when it goes out of scope, so a failing assertion never leaves the writer stuck.
class writer_gate {
public:
  writer_gate() = default;
  writer_gate(const writer_gate&) = delete;
  writer_gate& operator=(const writer_gate&) = delete;
  ~writer_gate() { open(); }

  /// Lets every held callback go on.
  void open() const {
    {
      std::lock_guard lock{state_->mutex};
      state_->open = true;
    }
    state_->cv.notify_all();
  }

  /// For a callback: blocks until open() or wait_limit; true when opened.
  auto hold() const {
    return [s = state_] {
      std::unique_lock lock{s->mutex};
      return s->cv.wait_for(lock, wait_limit, [&] { return s->open; });
    };
  }

private:
  struct state {
    std::mutex mutex;
    std::condition_variable cv;
    bool open = false;
  };
  std::shared_ptr<state> state_ = std::make_shared<state>();
};

/// Sets `stop` and joins `thread` when the scope ends, also when an assertion throws: a test that
/// fails while a helper thread runs reports its failure instead of ending in std::terminate.
class stop_and_join {
public:
  stop_and_join(std::atomic<bool>& stop, std::thread& thread) : stop_(stop), thread_(thread) {}
  stop_and_join(const stop_and_join&) = delete;
  stop_and_join& operator=(const stop_and_join&) = delete;
  ~stop_and_join() { now(); }
  /// Stops and joins now (idempotent).
  void now() {
    stop_.store(true);
    if (thread_.joinable())
      thread_.join();
  }

private:
  std::atomic<bool>& stop_;
  std::thread& thread_;
};

/// Reads the whole log in one call.
inline std::vector<stored_event> whole_log(const journal& j) {
  auto page = j.read_log(1, std::numeric_limits<std::size_t>::max());
  if (!page)
    FAIL("read_log failed: " << to_string(page.error().code) << ": " << page.error().message);
  return std::move(page->events);
}

/// Saves a snapshot and waits until it is durable (fails the test after wait_limit).
inline expected<void> save_snapshot(journal& j, snapshot snap) {
  auto p = std::make_shared<std::promise<expected<void>>>();
  auto f = p->get_future();
  j.save_snapshot_async(std::move(snap), [p](expected<void> r) { p->set_value(std::move(r)); });
  return get_within(f);
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
  return kontor::test::wait_until([&] { return lmdb_index_watermark(j).value_or(0) >= offset; }, timeout);
}

/// Waits until the journal reports more than `seen` failed index commits (true) or `timeout`.
inline bool wait_for_index_failures(const journal& j, std::uint64_t seen,
                                    std::chrono::milliseconds timeout = std::chrono::seconds{20}) {
  return kontor::test::wait_until([&] { return lmdb_index_failures(j).value_or(0) > seen; }, timeout);
}

} // namespace kontor::persistence::test

// journal_bench: the LMDB journal's durable append rate against raw LMDB on the same disk, in
// one run.
//
//   (b)  journal, driven the way the node drives it: W logical writers, each appending one
//        200-byte event at a time to its own persistence id with exactly one append outstanding;
//        the next append is queued from inside the previous append's callback (append_async on
//        the journal's writer thread; no thread per writer, no futures) -> events/s, average
//        group-commit batch, append latency (queued -> callback) p50/p99. Its indexer runs as in
//        production (default index interval), writing the per-id index apart from the
//        acknowledged commits, into its own environment on the same disk.
//   (a)  raw LMDB: a fresh environment, transactions of B puts (8-byte big-endian keys with
//        MDB_APPEND, 200-byte values), one commit (fsync) per transaction -> puts/s.
//   (a2) raw LMDB doing the journal's acknowledged writes (a record of W ids over 64 shards
//        appended to the global log with MDB_APPEND; log puts only, since the index is written
//        apart) without any journal code: splits the ratio into what the record layout costs,
//        (a2)/(a), and what the journal's machinery (including its indexer) costs, (b)/(a2).
//
// Fairness: B is the journal's own average batch (so far, rounded). Every side then pays one
// fsync per the same number of events, so the ratio shows the journal's own costs and not a
// batching difference. The disk is shared with other work and its fsync time drifts by several
// times within seconds, so the sides alternate in short rounds (journal, raw, raw layout,
// journal, ...) and each side's figures are summed over its rounds: drift hits all alike.
// The raw environments use the journal's flags (MDB_NOTLS, full durability), and the same
// preallocation: the journal keeps P MiB of zeros ahead of its log file's used end (as the node
// does by default), the raw files get P MiB of zeros appended once at creation.
//
// Usage: journal_bench [--seconds S] [--writers W] [--dir D] [--rounds R] [--preallocate-mb P]
//        (defaults: 3 s per side, 32 writers, ./bench-data, 6 rounds, 64 MiB)

#include <lmdb.h>
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>
#include <system_error>
#include <vector>

#include "runtime/core/ids.hpp"
#include "runtime/persistence/lmdb_journal.hpp"

namespace {

namespace fs = std::filesystem;
using clock_type = std::chrono::steady_clock;

constexpr std::size_t value_size = 200;
constexpr std::uint32_t shards = 64;

/// Command-line settings.
struct settings {
  std::uint64_t preallocate_mb = 64;
  double seconds = 3.0;
  int writers = 32;
  int rounds = 6;
  fs::path dir = "bench-data";
};

/// Accumulated figures of one side of the comparison.
struct totals {
  std::size_t events = 0;
  std::size_t commits = 0;
  double seconds = 0;
  double commit_seconds = 0; ///< time spent inside mdb_txn_commit (write + fsync)
  std::size_t failures = 0;
  std::vector<std::int64_t> latencies_ns;
};

[[noreturn]] void die(const std::string& what) {
  std::fprintf(stderr, "journal_bench: %s\n", what.c_str());
  std::exit(1);
}

void check(int rc, const char* operation) {
  if (rc != MDB_SUCCESS)
    die(std::string{operation} + ": " + mdb_strerror(rc));
}

clock_type::duration to_duration(double seconds) {
  return std::chrono::duration_cast<clock_type::duration>(std::chrono::duration<double>(seconds));
}

double seconds_since(clock_type::time_point start) {
  return std::chrono::duration<double>(clock_type::now() - start).count();
}

double percentile_ms(std::vector<std::int64_t>& ns, double p) {
  if (ns.empty())
    return 0;
  auto k = static_cast<std::size_t>(p * static_cast<double>(ns.size() - 1));
  std::nth_element(ns.begin(), ns.begin() + static_cast<std::ptrdiff_t>(k), ns.end());
  return static_cast<double>(ns[k]) / 1e6;
}

/// (b) The journal with W logical writers, each continuing its own sequence across slices.
class journal_side {
public:
  journal_side(const fs::path& dir, int writers, std::uint64_t preallocate_mb) {
    using namespace kontor::persistence;
    for (int w = 0; w < writers; ++w) {
      writer wr;
      wr.id = "bench-writer-" + std::to_string(w);
      wr.shard = kontor::shard_of(wr.id, shards);
      writers_.push_back(std::move(wr));
    }
    lmdb_options opts;
    opts.dir = dir;
    opts.number_of_shards = shards;
    opts.preallocate = preallocate_mb << 20;
    opts.on_commit = [this](std::size_t appends, std::size_t, std::chrono::nanoseconds t) {
      commits_.fetch_add(1, std::memory_order_relaxed);
      appends_.fetch_add(appends, std::memory_order_relaxed);
      commit_ns_.fetch_add(t.count(), std::memory_order_relaxed);
    };
    auto opened = open_lmdb_journal(opts);
    if (!opened)
      die("open_lmdb_journal: " + opened.error().message);
    journal_ = std::move(*opened);
  }

  /// Runs all writers for `seconds` and adds what they did to `t`.
  void run(double seconds, totals& t) {
    const std::size_t commits_before = commits_.load();
    const std::size_t appends_before = appends_.load();
    const std::int64_t commit_ns_before = commit_ns_.load();
    const std::size_t failures_before = failures_.load();
    for (auto& wr : writers_)
      wr.latencies_ns.clear();
    const auto began = clock_type::now();
    // Published to the writer thread by append_async's queue lock.
    deadline_ = began + to_duration(seconds);
    running_.store(writers_.size());
    for (std::size_t w = 0; w < writers_.size(); ++w)
      issue(w);
    // Every writer stops at the deadline once its outstanding append is back.
    for (std::size_t n = running_.load(); n != 0; n = running_.load())
      running_.wait(n);
    t.seconds += seconds_since(began);
    t.events += appends_.load() - appends_before; // one event per append
    t.commits += commits_.load() - commits_before;
    t.commit_seconds += static_cast<double>(commit_ns_.load() - commit_ns_before) / 1e9;
    t.failures += failures_.load() - failures_before;
    for (const auto& wr : writers_)
      t.latencies_ns.insert(t.latencies_ns.end(), wr.latencies_ns.begin(), wr.latencies_ns.end());
  }

  /// Log entries not yet in the on-disk index (held in the journal's memory) right now.
  std::uint64_t index_lag() const {
    auto end = journal_->log_end();
    if (!end)
      die("log_end: " + end.error().message);
    return *end - kontor::persistence::lmdb_index_watermark(*journal_).value_or(0);
  }

private:
  /// One logical writer: touched by the bench thread before its first append of a slice, then
  /// only by the journal's writer thread (in callbacks) until it stops.
  struct writer {
    std::string id;
    kontor::shard_id shard = 0;
    kontor::sequence_nr next_seq = 1;
    clock_type::time_point issued;
    std::vector<std::int64_t> latencies_ns;
  };

  /// Queues writer `w`'s next append; its callback records the latency and queues the next one.
  void issue(std::size_t w) {
    using namespace kontor::persistence;
    auto& wr = writers_[w];
    wr.issued = clock_type::now();
    append_request req{wr.shard, wr.id, wr.next_seq, {std::string(value_size, 'v')}};
    journal_->append_async(std::move(req),
                           [this, w](expected<append_result> r) { on_result(w, r.has_value()); });
  }

  /// Writer `w`'s append is back (on the journal's writer thread): next append, or stop.
  void on_result(std::size_t w, bool ok) {
    auto& wr = writers_[w];
    const auto now = clock_type::now();
    wr.latencies_ns.push_back(
      std::chrono::duration_cast<std::chrono::nanoseconds>(now - wr.issued).count());
    if (!ok) {
      failures_.fetch_add(1);
      stop();
      return;
    }
    ++wr.next_seq;
    if (now >= deadline_) {
      stop();
      return;
    }
    issue(w);
  }

  /// One writer stopped; the last one wakes run().
  void stop() {
    if (running_.fetch_sub(1) == 1)
      running_.notify_all();
  }

  std::vector<writer> writers_;
  clock_type::time_point deadline_;
  std::atomic<std::size_t> running_{0};
  std::atomic<std::size_t> failures_{0};
  std::atomic<std::size_t> commits_{0};
  std::atomic<std::size_t> appends_{0};
  std::atomic<std::int64_t> commit_ns_{0};
  // Last: destroyed first, so the writer thread is joined while the members above still live.
  std::unique_ptr<kontor::persistence::journal> journal_;
};

/// Raw LMDB: transactions of B puts, one commit (fsync) each, on one thread.
class raw_side {
public:
  /// Which writes a transaction does.
  enum class layout {
    single_log,    ///< (a) B appended puts into one database: LMDB's best case
    journal_like,  ///< (a2) the journal's acknowledged writes: log records only, no journal code
  };

  raw_side(const fs::path& dir, layout l, int writers, std::uint64_t preallocate_mb)
    : layout_(l) {
    fs::create_directories(dir);
    check(mdb_env_create(&env_), "mdb_env_create");
    check(mdb_env_set_maxdbs(env_, 3), "mdb_env_set_maxdbs"); // as the journal's log: 3 databases
    check(mdb_env_set_mapsize(env_, std::size_t{1} << 30), "mdb_env_set_mapsize");
    // The journal's flags: MDB_NOTLS, full durability (a commit returns after fsync).
    check(mdb_env_open(env_, dir.c_str(), MDB_NOTLS, 0644), "mdb_env_open");
    MDB_txn* txn = nullptr;
    check(mdb_txn_begin(env_, nullptr, 0, &txn), "mdb_txn_begin");
    check(mdb_dbi_open(txn, "log", MDB_CREATE, &log_), "mdb_dbi_open");
    if (l == layout::journal_like) {
      for (int w = 0; w < writers; ++w) {
        ids_.push_back("bench-writer-" + std::to_string(w));
        shard_of_.push_back(kontor::shard_of(ids_.back(), shards));
      }
      seqs_.assign(ids_.size(), 0);
    }
    check(mdb_txn_commit(txn), "mdb_txn_commit");
    if (preallocate_mb > 0) {
      // Zeros past LMDB's used end, written once: commits then overwrite allocated blocks.
      std::FILE* f = std::fopen((dir / "data.mdb").c_str(), "ab");
      if (f == nullptr)
        die("cannot open " + (dir / "data.mdb").string());
      std::vector<char> zeros(1 << 20, 0);
      for (std::uint64_t i = 0; i < preallocate_mb; ++i)
        std::fwrite(zeros.data(), 1, zeros.size(), f);
      if (std::fflush(f) != 0 || ::fdatasync(::fileno(f)) != 0)
        die("cannot preallocate " + (dir / "data.mdb").string());
      std::fclose(f);
    }
  }
  raw_side(const raw_side&) = delete;
  raw_side& operator=(const raw_side&) = delete;
  ~raw_side() { mdb_env_close(env_); }

  /// Commits transactions of `batch` puts for `seconds` and adds what it did to `t`.
  void run(double seconds, std::size_t batch, totals& t) {
    const auto began = clock_type::now();
    const auto deadline = began + to_duration(seconds);
    while (clock_type::now() < deadline) {
      MDB_txn* txn = nullptr;
      check(mdb_txn_begin(env_, nullptr, 0, &txn), "mdb_txn_begin");
      for (std::size_t i = 0; i < batch; ++i) {
        if (layout_ == layout::single_log)
          put_single(txn);
        else
          put_journal_like(txn);
      }
      const auto c0 = clock_type::now();
      check(mdb_txn_commit(txn), "mdb_txn_commit");
      t.commit_seconds += seconds_since(c0);
      t.events += batch;
      ++t.commits;
    }
    t.seconds += seconds_since(began);
  }

private:
  static void store_be(char* p, std::uint64_t v, int bytes) {
    for (int i = bytes - 1; i >= 0; --i, v >>= 8)
      p[i] = static_cast<char>(v & 0xffu);
  }

  void put_single(MDB_txn* txn) {
    char key[8];
    store_be(key, ++end_, 8);
    MDB_val k{sizeof key, key};
    MDB_val v{value_size, value_};
    check(mdb_put(txn, log_, &k, &v, MDB_APPEND), "mdb_put");
  }

  void put_journal_like(MDB_txn* txn) {
    const std::size_t w = next_writer_++ % ids_.size();
    const std::string& id = ids_[w];
    const std::uint64_t seq = ++seqs_[w];
    char key[8];
    store_be(key, ++end_, 8);
    MDB_val k{sizeof key, key};
    // The record as the journal writes it: version, shard, seq, written_at, id length, id, payload.
    store_be(record_ + 1, shard_of_[w], 4);
    store_be(record_ + 5, seq, 8);
    record_[21] = static_cast<char>(id.size());
    id.copy(record_ + 22, id.size());
    MDB_val v{1 + 4 + 8 + 8 + 1 + id.size() + value_size, record_};
    check(mdb_put(txn, log_, &k, &v, MDB_APPEND), "mdb_put(log)");
  }

  layout layout_;
  MDB_env* env_ = nullptr;
  MDB_dbi log_ = 0;
  std::uint64_t end_ = 0;
  std::vector<std::string> ids_;
  std::vector<kontor::shard_id> shard_of_;
  std::vector<std::uint64_t> seqs_;
  std::size_t next_writer_ = 0;
  char value_[value_size] = {};
  char record_[1 + 4 + 8 + 8 + 1 + 255 + value_size] = {1};
};

void usage() {
  std::fprintf(stderr,
               "usage: journal_bench [--seconds S] [--writers W] [--dir D] [--rounds R]\n"
               "  --seconds S  measuring time of each side (default 3)\n"
               "  --writers W  concurrent journal writers (default 32)\n"
               "  --dir D      where to put the temporary data (default ./bench-data)\n"
               "  --rounds R   alternations journal/raw the time is split into (default 6)\n"
               "  --preallocate-mb P  zeros kept ahead of every side's file (default 64, 0: off)\n");
}

settings parse(int argc, char** argv) {
  settings s;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) {
        usage();
        std::exit(2);
      }
      return argv[++i];
    };
    try {
      if (arg == "--seconds")
        s.seconds = std::stod(value());
      else if (arg == "--writers")
        s.writers = std::stoi(value());
      else if (arg == "--rounds")
        s.rounds = std::stoi(value());
      else if (arg == "--preallocate-mb")
        s.preallocate_mb = std::stoull(value());
      else if (arg == "--dir")
        s.dir = value();
      else if (arg == "--help" || arg == "-h") {
        usage();
        std::exit(0);
      } else {
        usage();
        std::exit(2);
      }
    } catch (const std::exception&) {
      usage();
      std::exit(2);
    }
  }
  if (s.seconds <= 0 || s.writers < 1 || s.rounds < 1) {
    usage();
    std::exit(2);
  }
  return s;
}

} // namespace

int main(int argc, char** argv) {
  const settings s = parse(argc, argv);
  std::error_code ec;
  const bool created_dir = fs::create_directories(s.dir, ec);
  if (ec)
    die("cannot create " + s.dir.string() + ": " + ec.message());
  std::string tmpl = (s.dir / "journal-bench-XXXXXX").string();
  if (::mkdtemp(tmpl.data()) == nullptr)
    die("mkdtemp in " + s.dir.string() + ": " + std::strerror(errno));
  const fs::path run_dir = tmpl;

  std::printf("journal_bench: %s, %.1f s per side in %d alternating rounds, %d writers, "
              "%zu-byte events, %llu MiB preallocated\n",
              run_dir.c_str(), s.seconds, s.rounds, s.writers, value_size,
              static_cast<unsigned long long>(s.preallocate_mb));
  std::fflush(stdout);

  totals jt;
  totals rt;
  totals lt;
  std::uint64_t max_index_lag = 0;
  {
    journal_side journal{run_dir / "journal", s.writers, s.preallocate_mb};
    raw_side raw{run_dir / "raw", raw_side::layout::single_log, s.writers, s.preallocate_mb};
    raw_side raw_layout{run_dir / "raw-layout", raw_side::layout::journal_like, s.writers,
                        s.preallocate_mb};
    const double slice = s.seconds / s.rounds;
    for (int round = 0; round < s.rounds; ++round) {
      journal.run(slice, jt);
      max_index_lag = std::max(max_index_lag, journal.index_lag());
      // B: the journal's average batch so far, so every side fsyncs once per as many events.
      const double avg = jt.commits == 0 ? 1.0
                                         : static_cast<double>(jt.events)
                                             / static_cast<double>(jt.commits);
      const auto batch = static_cast<std::size_t>(std::max(1.0, std::round(avg)));
      raw.run(slice, batch, rt);
      raw_layout.run(slice, batch, lt);
    }
  }

  auto per_s = [](double n, double secs) { return secs > 0 ? n / secs : 0.0; };
  auto per_commit = [](const totals& t) {
    return t.commits ? static_cast<double>(t.events) / static_cast<double>(t.commits) : 0.0;
  };
  auto commit_ms = [](const totals& t) {
    return t.commits ? 1e3 * t.commit_seconds / static_cast<double>(t.commits) : 0.0;
  };
  const double raw_rate = per_s(static_cast<double>(rt.events), rt.seconds);
  const double layout_rate = per_s(static_cast<double>(lt.events), lt.seconds);
  const double journal_rate = per_s(static_cast<double>(jt.events), jt.seconds);
  std::printf("(a)  raw LMDB           : %9.0f puts/s    %6.0f commits/s  %.1f puts/txn (the journal's "
              "avg batch), commit %.2f ms\n",
              raw_rate, per_s(static_cast<double>(rt.commits), rt.seconds), per_commit(rt),
              commit_ms(rt));
  std::printf("(a2) raw, journal layout: %9.0f events/s  %6.0f commits/s  same B, commit %.2f ms"
              " (log puts only: the index is written apart; no journal code)\n",
              layout_rate, per_s(static_cast<double>(lt.commits), lt.seconds), commit_ms(lt));
  std::printf("(b)  journal            : %9.0f events/s  %6.0f commits/s  avg batch %.1f appends, "
              "commit %.2f ms, append latency p50 %.2f ms p99 %.2f ms\n",
              journal_rate, per_s(static_cast<double>(jt.commits), jt.seconds), per_commit(jt),
              commit_ms(jt), percentile_ms(jt.latencies_ns, 0.50),
              percentile_ms(jt.latencies_ns, 0.99));
  std::printf("     journal index       : at most %llu events not yet indexed when a round ended "
              "(in memory, indexed within the index interval)\n",
              static_cast<unsigned long long>(max_index_lag));
  std::printf("ratio journal/raw: %.0f %% (goal >= 70 %%); layout alone (a2)/(a): %.0f %%, "
              "journal/(a2): %.0f %%\n",
              raw_rate > 0 ? 100.0 * journal_rate / raw_rate : 0.0,
              raw_rate > 0 ? 100.0 * layout_rate / raw_rate : 0.0,
              layout_rate > 0 ? 100.0 * journal_rate / layout_rate : 0.0);
  if (jt.failures != 0)
    std::printf("WARNING: %zu appends failed\n", jt.failures);

  fs::remove_all(run_dir, ec);
  if (created_dir)
    fs::remove(s.dir, ec); // only if empty
  return jt.failures == 0 ? 0 : 1;
}

// The per-id index of the LMDB journal, written apart from the acknowledged commits by the
// indexer thread: reads see acknowledged events whether they are still in memory (the tail) or
// already indexed, sequence checks work in both states, a reopen indexes what was left, an
// unusable index is rebuilt from the log, and an index that cannot be written holds nothing up.
// Catch2 assertions are not thread-safe: worker threads record, the test thread checks.

#include <signal.h>
#include <sys/resource.h>

#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <future>
#include <iterator>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "runtime/core/bytes.hpp"
#include "test_support.hpp"

using kontor::log_offset;
using kontor::sequence_nr;
using kontor::shard_id;
using kontor::shard_offset;
using kontor::shard_of;
using namespace kontor::persistence;
using namespace kontor::persistence::test;
using namespace std::chrono_literals;

namespace {

constexpr std::chrono::milliseconds never = std::chrono::hours{1}; ///< an index interval no test outlives

/// A short payload that names the id and the seq (short even for long ids).
std::string payload_of(const std::string& id, sequence_nr seq) {
  return std::to_string(kontor::stable_hash(id) % 1'000'000) + "#" + std::to_string(seq);
}

/// `n` events of `id` from `first` on, with payload_of's payloads.
std::vector<std::string> events_of(const std::string& id, sequence_nr first, std::size_t n) {
  std::vector<std::string> out;
  for (std::size_t i = 0; i < n; ++i)
    out.push_back(payload_of(id, first + i));
  return out;
}

lmdb_options with_interval(const std::filesystem::path& dir, std::chrono::milliseconds interval,
                           std::uint32_t shards = 4) {
  auto opts = options(dir, shards);
  opts.index_interval = interval;
  return opts;
}

/// Whether `events` are exactly `id`'s events first..first+size-1 with their payloads.
bool is_run(const std::vector<stored_event>& events, const std::string& id, sequence_nr first) {
  for (std::size_t i = 0; i < events.size(); ++i)
    if (events[i].persistence_id != id || events[i].seq != first + i
        || events[i].payload != payload_of(id, first + i))
      return false;
  return true;
}

/// Checks that `id` replays as exactly seq 1..n (also in pages) and reports n as its highest.
void check_stream(const journal& j, const std::string& id, sequence_nr n) {
  INFO("id " << id);
  auto all = j.replay(id, 1, 1'000'000).value();
  CHECK(all.size() == n);
  CHECK(is_run(all, id, 1));
  CHECK(j.highest_sequence_nr(id).value() == n);
  if (n >= 3) {
    auto middle = j.replay(id, 2, static_cast<std::size_t>(n - 2)).value();
    CHECK(middle.size() == n - 2);
    CHECK(is_run(middle, id, 2));
  }
  CHECK(j.replay(id, n + 1, 10).value().empty());
}

/// The bytes of a file.
std::string file_bytes(const std::filesystem::path& file) {
  std::ifstream in{file, std::ios::binary};
  return {std::istreambuf_iterator<char>{in}, std::istreambuf_iterator<char>{}};
}

} // namespace

TEST_CASE("reads right after a callback see events that are only in memory", "[persistence][index]") {
  temp_dir tmp;
  auto j = open_ok(with_interval(tmp.journal_dir(), 10s));
  // Inside the callback, on the writer thread: the batch's events are readable already.
  struct seen {
    std::size_t replayed = 0;
    sequence_nr highest = 0;
    bool run = false;
  };
  auto append_and_read = [&](append_request req) {
    auto p = std::make_shared<std::promise<seen>>();
    auto f = p->get_future();
    const std::string id = req.persistence_id;
    j->append_async(std::move(req), [&, p, id](expected<append_result> r) {
      seen s;
      if (r) {
        auto events = j->replay(id, 1, 1000);
        auto high = j->highest_sequence_nr(id);
        s.replayed = events ? events->size() : 0;
        s.run = events && is_run(*events, id, 1);
        s.highest = high ? *high : 0;
      }
      p->set_value(s);
    });
    return get_within(f);
  };
  auto a = append_and_read(make_append(0, "acc", 1, events_of("acc", 1, 3)));
  CHECK(a.replayed == 3);
  CHECK(a.run);
  CHECK(a.highest == 3);
  auto b = append_and_read(make_append(0, "acc", 4, events_of("acc", 4, 1)));
  CHECK(b.replayed == 4);
  CHECK(b.run);
  CHECK(b.highest == 4);

  // And from any other thread once the callback ran.
  REQUIRE(append_within(*j, make_append(1, "other", 1, events_of("other", 1, 2))).has_value());
  check_stream(*j, "acc", 4);
  check_stream(*j, "other", 2);
  CHECK(payloads(j->replay("acc", 2, 2).value()) == events_of("acc", 2, 2));
  CHECK(j->replay("nobody", 1, 10).value().empty());
  CHECK(j->highest_sequence_nr("nobody").value() == 0);
  // None of it came from the index.
  CHECK(lmdb_index_watermark(*j) == log_offset{0});
}

TEST_CASE("reads see the events once the indexer has them", "[persistence][index]") {
  temp_dir tmp;
  auto j = open_ok(with_interval(tmp.journal_dir(), 0ms));
  std::vector<append_request> reqs;
  for (int i = 0; i < 20; ++i) {
    const std::string id = "acc-" + std::to_string(i % 5);
    const auto first = static_cast<sequence_nr>(i / 5) * 2 + 1;
    reqs.push_back(make_append(static_cast<shard_id>(i % 4), id, first, events_of(id, first, 2)));
  }
  for (auto& r : append_all(*j, std::move(reqs)))
    REQUIRE(r.has_value());
  const log_offset end = j->log_end().value();
  CHECK(end == 40);
  REQUIRE(wait_for_index(*j, end));
  CHECK(lmdb_index_watermark(*j) == end);
  for (int i = 0; i < 5; ++i)
    check_stream(*j, "acc-" + std::to_string(i), 8);
  // The index and the log agree on offsets.
  for (const auto& e : whole_log(*j)) {
    auto one = j->replay(e.persistence_id, e.seq, 1).value();
    REQUIRE(one.size() == 1);
    CHECK(one[0].offset == e.offset);
  }
}

TEST_CASE("replay merges the index and the tail", "[persistence][index]") {
  temp_dir tmp;
  {
    auto j = open_ok(with_interval(tmp.journal_dir(), never));
    REQUIRE(append_within(*j, make_append(0, "acc", 1, events_of("acc", 1, 5))).has_value());
    REQUIRE(append_within(*j, make_append(0, "quiet", 1, events_of("quiet", 1, 2))).has_value());
  }
  // The reopen indexed everything; what follows stays in memory.
  auto j = open_ok(with_interval(tmp.journal_dir(), never));
  CHECK(lmdb_index_watermark(*j) == log_offset{7});
  REQUIRE(append_within(*j, make_append(0, "acc", 6, events_of("acc", 6, 3))).has_value());
  REQUIRE(append_within(*j, make_append(1, "fresh", 1, events_of("fresh", 1, 2))).has_value());
  CHECK(lmdb_index_watermark(*j) == log_offset{7});

  check_stream(*j, "acc", 8);     // 1..5 indexed, 6..8 in memory
  check_stream(*j, "quiet", 2);   // indexed only
  check_stream(*j, "fresh", 2);   // in memory only
  CHECK(payloads(j->replay("acc", 4, 3).value()) == events_of("acc", 4, 3)); // across the border
  CHECK(payloads(j->replay("acc", 1, 2).value()) == events_of("acc", 1, 2)); // index alone
  CHECK(payloads(j->replay("acc", 7, 100).value()) == events_of("acc", 7, 2)); // tail alone
  CHECK(payloads(j->replay("acc", 0, 1).value()) == events_of("acc", 1, 1));
  auto acc = j->replay("acc", 1, 100).value();
  std::vector<log_offset> offsets;
  for (const auto& e : acc)
    offsets.push_back(e.offset);
  CHECK(offsets == std::vector<log_offset>{1, 2, 3, 4, 5, 8, 9, 10});
}

TEST_CASE("sequence conflicts are found for ids in memory and ids in the index",
          "[persistence][index]") {
  temp_dir tmp;
  {
    auto j = open_ok(with_interval(tmp.journal_dir(), never));
    REQUIRE(append_within(*j, make_append(0, "indexed", 1, events_of("indexed", 1, 3))).has_value());
    REQUIRE(append_within(*j, make_append(0, "spanning", 1, events_of("spanning", 1, 2))).has_value());
  }
  auto j = open_ok(with_interval(tmp.journal_dir(), never));
  REQUIRE(append_within(*j, make_append(1, "in-memory", 1, events_of("in-memory", 1, 2))).has_value());
  REQUIRE(append_within(*j, make_append(0, "spanning", 3, events_of("spanning", 3, 1))).has_value());

  for (sequence_nr bad : {0, 1, 3, 5})
    CHECK(code_of(append_within(*j, make_append(0, "indexed", bad, {"x"}))) == errc::sequence_conflict);
  for (sequence_nr bad : {0, 1, 2, 4})
    CHECK(code_of(append_within(*j, make_append(1, "in-memory", bad, {"x"}))) == errc::sequence_conflict);
  for (sequence_nr bad : {1, 3, 5})
    CHECK(code_of(append_within(*j, make_append(0, "spanning", bad, {"x"}))) == errc::sequence_conflict);
  CHECK(append_within(*j, make_append(0, "indexed", 4, {payload_of("indexed", 4)})).has_value());
  CHECK(append_within(*j, make_append(1, "in-memory", 3, {payload_of("in-memory", 3)})).has_value());
  CHECK(append_within(*j, make_append(0, "spanning", 4, {payload_of("spanning", 4)})).has_value());
  check_stream(*j, "indexed", 4);
  check_stream(*j, "in-memory", 3);
  check_stream(*j, "spanning", 4);

  SECTION("and for ids the running indexer took out of memory") {
    auto k = open_ok(with_interval(tmp.path() / "other", 0ms));
    REQUIRE(append_within(*k, make_append(0, "acc", 1, events_of("acc", 1, 2))).has_value());
    REQUIRE(wait_for_index(*k, 2));
    CHECK(code_of(append_within(*k, make_append(0, "acc", 2, {"x"}))) == errc::sequence_conflict);
    CHECK(code_of(append_within(*k, make_append(0, "acc", 4, {"x"}))) == errc::sequence_conflict);
    CHECK(append_within(*k, make_append(0, "acc", 3, {payload_of("acc", 3)})).has_value());
    check_stream(*k, "acc", 3);
  }
}

TEST_CASE("readers replaying while writers append and the indexer advances stay gap-free",
          "[persistence][index][concurrency]") {
  constexpr int writers = 4;
  constexpr int ids_per_writer = 8;
  constexpr int rounds = 400;
  constexpr int readers = 3;
  constexpr std::uint32_t shards = 8;
  temp_dir tmp;
  auto j = open_ok(with_interval(tmp.journal_dir(), 0ms, shards));

  std::vector<std::string> ids;
  for (int i = 0; i < writers * ids_per_writer; ++i)
    ids.push_back("stress-" + std::to_string(i));
  std::vector<sequence_nr> written(ids.size(), 0); // per id, by its writer thread only

  std::atomic<bool> writing{true};
  std::atomic<int> write_failures{0};
  std::vector<std::thread> threads;
  for (int w = 0; w < writers; ++w) {
    threads.emplace_back([&, w] {
      std::mt19937 rng{static_cast<unsigned>(w)};
      for (int round = 0; round < rounds && write_failures.load() == 0; ++round) {
        // Each writer keeps one append per id in flight, 1..3 events each.
        std::vector<append_request> reqs;
        for (int k = 0; k < ids_per_writer; ++k) {
          const std::size_t i = static_cast<std::size_t>(w * ids_per_writer + k);
          const std::size_t n = 1 + rng() % 3;
          reqs.push_back(make_append(shard_of(ids[i], shards), ids[i], written[i] + 1,
                                     events_of(ids[i], written[i] + 1, n)));
        }
        auto results = append_all_for(*j, reqs); // on this thread: no assertions
        if (!results) {
          write_failures.fetch_add(1);
          break;
        }
        for (std::size_t k = 0; k < results->size(); ++k) {
          if (!(*results)[k]) {
            write_failures.fetch_add(1);
            continue;
          }
          written[static_cast<std::size_t>(w * ids_per_writer) + k] = (*results)[k]->last_seq;
        }
      }
    });
  }

  struct reader_report {
    std::size_t replays = 0;
    std::size_t errors = 0;
    std::size_t not_a_run = 0;     ///< a replay with a gap, a wrong order or a wrong payload
    std::size_t went_backwards = 0;///< fewer events than an earlier replay of the same id
    std::size_t short_pages = 0;   ///< a partial replay missing events seen before
    std::set<log_offset> watermarks;
  };
  std::vector<reader_report> reports(readers);
  std::vector<std::thread> reader_threads;
  for (int r = 0; r < readers; ++r) {
    reader_threads.emplace_back([&, r] {
      auto& rep = reports[static_cast<std::size_t>(r)];
      std::mt19937 rng{static_cast<unsigned>(100 + r)};
      std::vector<sequence_nr> seen(ids.size(), 0);
      while (writing.load()) {
        const std::size_t i = rng() % ids.size();
        const std::string& id = ids[i];
        ++rep.replays;
        rep.watermarks.insert(lmdb_index_watermark(*j).value_or(0));
        auto all = j->replay(id, 1, 100000);
        if (!all) {
          ++rep.errors;
          continue;
        }
        if (!is_run(*all, id, 1))
          ++rep.not_a_run;
        if (all->size() < seen[i])
          ++rep.went_backwards;
        seen[i] = std::max<sequence_nr>(seen[i], all->size());
        if (seen[i] == 0)
          continue;
        // A page from somewhere inside what was seen: contiguous, and nothing seen is missing.
        const sequence_nr from = 1 + rng() % seen[i];
        const std::size_t max = 1 + rng() % 4;
        auto page = j->replay(id, from, max);
        auto high = j->highest_sequence_nr(id);
        if (!page || !high) {
          ++rep.errors;
          continue;
        }
        if (!is_run(*page, id, from))
          ++rep.not_a_run;
        if (page->size() < std::min<sequence_nr>(max, seen[i] - from + 1))
          ++rep.short_pages;
        if (*high < seen[i])
          ++rep.went_backwards;
      }
    });
  }
  for (auto& t : threads)
    t.join();
  writing.store(false);
  for (auto& t : reader_threads)
    t.join();

  REQUIRE(write_failures.load() == 0);
  std::set<log_offset> watermarks;
  for (const auto& rep : reports) {
    CHECK(rep.replays > 0);
    CHECK(rep.errors == 0);
    CHECK(rep.not_a_run == 0);
    CHECK(rep.went_backwards == 0);
    CHECK(rep.short_pages == 0);
    watermarks.insert(rep.watermarks.begin(), rep.watermarks.end());
  }
  std::size_t replays = 0;
  for (const auto& rep : reports)
    replays += rep.replays;
  INFO(replays << " replays saw " << watermarks.size() << " different index watermarks");
  CHECK(watermarks.size() > 2); // the indexer advanced while they read

  const log_offset end = j->log_end().value();
  REQUIRE(wait_for_index(*j, end));
  for (std::size_t i = 0; i < ids.size(); ++i)
    check_stream(*j, ids[i], written[i]);
}

TEST_CASE("a reopen indexes what the indexer had not reached", "[persistence][index]") {
  temp_dir tmp;
  std::map<std::string, sequence_nr> written;
  {
    auto j = open_ok(with_interval(tmp.journal_dir(), never));
    std::vector<append_request> reqs;
    for (int i = 0; i < 300; ++i) {
      const std::string id = "acc-" + std::to_string(i % 37);
      auto& n = written[id];
      reqs.push_back(make_append(static_cast<shard_id>(i % 4), id, n + 1, events_of(id, n + 1, 2)));
      n += 2;
    }
    for (auto& r : append_all(*j, std::move(reqs)))
      REQUIRE(r.has_value());
    CHECK(lmdb_index_watermark(*j) == log_offset{0}); // nothing indexed: all in memory
    CHECK(j->log_end().value() == 600);
  }
  auto j = open_ok(with_interval(tmp.journal_dir(), never));
  CHECK(lmdb_index_watermark(*j) == log_offset{600}); // indexed before open returned
  for (const auto& [id, n] : written)
    check_stream(*j, id, n);
  CHECK(append_within(*j, make_append(0, "acc-0", written["acc-0"] + 1, {"next"})).has_value());
}

TEST_CASE("an index that is missing or unusable is rebuilt from the log, which stays untouched",
          "[persistence][index][open]") {
  temp_dir tmp;
  const auto index_dir = tmp.journal_dir() / "index";
  {
    auto j = open_ok(with_interval(tmp.journal_dir(), 0ms));
    for (int i = 0; i < 10; ++i) {
      const std::string id = "acc-" + std::to_string(i);
      REQUIRE(append_within(*j, make_append(0, id, 1, events_of(id, 1, 3))).has_value());
    }
    REQUIRE(wait_for_index(*j, 30));
  }
  REQUIRE(std::filesystem::is_directory(index_dir));
  const auto log_file = tmp.journal_dir() / "data.mdb";
  const std::string log_before = file_bytes(log_file);

  SECTION("deleted") {
    std::filesystem::remove_all(index_dir);
  }
  SECTION("garbage in its data file") {
    write_garbage(index_dir / "data.mdb", 64 * 1024);
  }
  SECTION("an empty data file") {
    std::filesystem::resize_file(index_dir / "data.mdb", 0);
  }
  SECTION("a file where the directory should be") {
    std::filesystem::remove_all(index_dir);
    std::ofstream{index_dir} << "not a directory";
  }
  SECTION("another index format") {
    raw_put(index_dir, "meta", "format", "kontor-journal-index/99");
  }
  SECTION("a watermark beyond the log's end") {
    raw_put(index_dir, "meta", "watermark", kontor::to_be64(1000));
  }
  SECTION("a watermark of the wrong size") {
    raw_put(index_dir, "meta", "watermark", "short");
  }
  SECTION("an LMDB environment that is not an index") {
    std::filesystem::remove_all(index_dir);
    std::filesystem::create_directories(index_dir);
    raw_put(index_dir, "", "someone-else", "data");
  }

  auto j = open_ok(with_interval(tmp.journal_dir(), never));
  CHECK(std::filesystem::is_directory(index_dir));
  CHECK(lmdb_index_watermark(*j) == log_offset{30});
  CHECK(file_bytes(log_file) == log_before);
  for (int i = 0; i < 10; ++i)
    check_stream(*j, "acc-" + std::to_string(i), 3);
  CHECK(code_of(append_within(*j, make_append(0, "acc-3", 3, {"x"}))) == errc::sequence_conflict);
  CHECK(append_within(*j, make_append(0, "acc-3", 4, {payload_of("acc-3", 4)})).has_value());
  check_stream(*j, "acc-3", 4);
}

TEST_CASE("the index grows its map on demand while readers run", "[persistence][index]") {
  constexpr int ids = 3000;
  temp_dir tmp;
  auto opts = with_interval(tmp.journal_dir(), 0ms, 2);
  opts.initial_map_size = 256 * 1024; // the index of 3000 long ids needs several doublings
  auto id_of = [](int i) {
    std::string id = "grow-" + std::to_string(i) + "-";
    id.resize(200, 'g');
    return id;
  };
  {
    auto j = open_ok(opts);
    std::atomic<bool> done{false};
    std::atomic<int> bad_reads{0};
    std::thread reader{[&] {
      std::mt19937 rng{7};
      while (!done.load()) {
        const std::string id = id_of(static_cast<int>(rng() % ids));
        auto events = j->replay(id, 1, 10);
        auto high = j->highest_sequence_nr(id);
        // The replay may predate the append that the later highest_sequence_nr sees.
        if (!events || !high || events->size() > *high || !is_run(*events, id, 1))
          bad_reads.fetch_add(1);
      }
    }};
    stop_and_join stop_reader{done, reader};
    std::vector<append_request> reqs;
    for (int i = 0; i < ids; ++i)
      reqs.push_back(make_append(0, id_of(i), 1, events_of(id_of(i), 1, 1)));
    int failed = 0;
    for (auto& r : append_all(*j, std::move(reqs)))
      failed += r.has_value() ? 0 : 1;
    const bool indexed = wait_for_index(*j, ids);
    stop_reader.now();
    REQUIRE(failed == 0);
    REQUIRE(indexed);
    CHECK(bad_reads.load() == 0);
  }
  auto j = open_ok(opts);
  for (int i = 0; i < ids; i += 97)
    check_stream(*j, id_of(i), 1);
  CHECK(j->highest_sequence_nr(id_of(ids - 1)).value() == 1);
}

TEST_CASE("an index that cannot be written holds no append up and catches up later",
          "[persistence][index][concurrency]") {
  constexpr int ids = 4000;
  constexpr auto interval = 4s;
  temp_dir tmp;
  auto opts = with_interval(tmp.journal_dir(), interval, 2);
  // Long ids and tiny events: the index needs about as many pages as the log.
  auto id_of = [](int i) {
    std::string id = "cap-" + std::to_string(i) + "-";
    id.resize(200, 'c');
    return id;
  };
  auto append_to_all = [&](journal& j, sequence_nr seq) {
    std::vector<append_request> reqs;
    for (int i = 0; i < ids; ++i)
      reqs.push_back(make_append(0, id_of(i), seq, events_of(id_of(i), seq, 1)));
    for (auto& r : append_all(j, std::move(reqs)))
      REQUIRE(r.has_value());
  };
  append_to_all(*open_ok(opts), 1); // indexed by the next open
  auto j = open_ok(opts);
  REQUIRE(lmdb_index_watermark(*j) == log_offset{ids});
  // A second event for every id: the log grows by its appended pages, while the index must
  // rewrite and split every leaf it has (copy-on-write), which needs far more new pages.
  append_to_all(*j, 2);
  // The first index commit comes an interval after the open: it has not happened yet.
  REQUIRE(lmdb_index_watermark(*j) == log_offset{ids});

  // Files may grow by 256 KiB more than the log is now: enough for the appends below, far too
  // little for the index (EFBIG instead of SIGXFSZ).
  const auto log_file = tmp.journal_dir() / "data.mdb";
  file_size_cap cap{std::filesystem::file_size(log_file) + 256 * 1024};

  // Appends and reads go on while the indexer fails: a few before and after each of its first
  // two failed index commits (the first comes an interval after the open, then every second).
  int appended = 0;
  int failed_appends = 0;
  int bad_reads = 0;
  for (std::uint64_t failures = 0; failures < 2; ++failures) {
    for (int k = 0; k < 6; ++k) {
      const std::string id = "during";
      const auto seq = static_cast<sequence_nr>(appended + 1);
      if (append_within(*j, make_append(1, id, seq, {payload_of(id, seq)})).has_value())
        ++appended;
      else
        ++failed_appends;
      auto events = j->replay(id, 1, 1000);
      if (!events || events->size() != static_cast<std::size_t>(appended) || !is_run(*events, id, 1))
        ++bad_reads;
    }
    REQUIRE(wait_for_index_failures(*j, failures));
  }
  const auto watermark_while_capped = lmdb_index_watermark(*j);
  REQUIRE(cap.lift());

  CHECK(failed_appends == 0);
  CHECK(appended > 10);
  CHECK(bad_reads == 0);
  CHECK(watermark_while_capped == log_offset{ids}); // the index commits failed
  for (int i = 0; i < ids; i += 101)
    check_stream(*j, id_of(i), 2);
  // Once the disk takes writes again, the indexer's retry succeeds.
  const log_offset end = j->log_end().value();
  CHECK(end == static_cast<log_offset>(2 * ids + appended));
  REQUIRE(wait_for_index(*j, end));
  for (int i = 0; i < ids; i += 101)
    check_stream(*j, id_of(i), 2);
  check_stream(*j, "during", static_cast<sequence_nr>(appended));
}

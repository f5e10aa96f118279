// The LMDB journal under concurrency and pressure: group commit with many writers, appends
// chained from callbacks, map growth with concurrent readers, appends racing with shutdown, and a
// disk that refuses writes.
// Catch2 assertions are not thread-safe: worker threads record, the test thread checks.

#include <signal.h>
#include <sys/resource.h>

#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <filesystem>
#include <future>
#include <latch>
#include <functional>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "test_support.hpp"

using kontor::log_offset;
using kontor::sequence_nr;
using kontor::shard_id;
using kontor::shard_offset;
using kontor::shard_of;
using namespace kontor::persistence;
using namespace kontor::persistence::test;

namespace {

/// Counts what the journal's commit observer saw.
struct commit_counts {
  std::atomic<std::size_t> commits{0};
  std::atomic<std::size_t> appends{0};
  std::atomic<std::size_t> events{0};

  commit_observer observer() {
    return [this](std::size_t a, std::size_t e, std::chrono::nanoseconds) {
      commits.fetch_add(1);
      appends.fetch_add(a);
      events.fetch_add(e);
    };
  }
};

std::string payload_of(const std::string& id, sequence_nr seq, std::size_t size = 0) {
  std::string p = id + "#" + std::to_string(seq);
  if (p.size() < size)
    p.resize(size, static_cast<char>('a' + seq % 26));
  return p;
}

} // namespace

TEST_CASE("group commit batches many concurrent writers", "[persistence][concurrency]") {
  constexpr int writers = 32;
  constexpr sequence_nr appends_each = 200;
  constexpr std::uint32_t shards = 8;
  temp_dir tmp;
  commit_counts counts;
  auto opts = options(tmp.journal_dir(), shards);
  opts.on_commit = counts.observer();
  auto j = open_ok(std::move(opts));

  std::atomic<int> failures{0};
  std::atomic<int> stale_reads{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < writers; ++t) {
    threads.emplace_back([&, t] {
      const std::string id = "writer-" + std::to_string(t);
      const shard_id shard = shard_of(id, shards);
      for (sequence_nr seq = 1; seq <= appends_each; ++seq) {
        auto r = append_for(*j, make_append(shard, id, seq, {payload_of(id, seq)}));
        if (!r || !*r || (*r)->last_seq != seq) {
          failures.fetch_add(1);
          return;
        }
        // Reads see every append whose callback has run.
        auto high = j->highest_sequence_nr(id);
        if (!high || *high != seq)
          stale_reads.fetch_add(1);
      }
    });
  }
  for (auto& t : threads)
    t.join();

  constexpr std::size_t total = writers * appends_each;
  REQUIRE(failures.load() == 0);
  CHECK(stale_reads.load() == 0);
  CHECK(counts.appends.load() == total);
  CHECK(counts.events.load() == total);
  CHECK(counts.commits.load() < total); // proves batching
  INFO("commits: " << counts.commits.load() << " for " << total << " appends");

  for (int t = 0; t < writers; ++t) {
    const std::string id = "writer-" + std::to_string(t);
    auto events = j->replay(id, 1, 1000).value();
    REQUIRE(events.size() == appends_each);
    for (sequence_nr seq = 1; seq <= appends_each; ++seq) {
      CHECK(events[seq - 1].seq == seq);
      CHECK(events[seq - 1].payload == payload_of(id, seq));
    }
  }
  // The log is dense from 1, and each id's events appear in it in seq order, in its shard.
  const auto log = whole_log(*j);
  REQUIRE(log.size() == total);
  CHECK(j->log_end().value() == total);
  std::map<std::string, sequence_nr> last;
  for (std::size_t i = 0; i < log.size(); ++i) {
    CHECK(log[i].offset == i + 1);
    CHECK(log[i].shard == shard_of(log[i].persistence_id, shards));
    CHECK(log[i].seq == last[log[i].persistence_id] + 1);
    last[log[i].persistence_id] = log[i].seq;
  }
  // The shards' logs together are the log: every event in exactly one of them.
  std::map<log_offset, stored_event> from_shards;
  for (shard_id s = 0; s < shards; ++s) {
    log_offset previous = 0;
    const shard_offset end = j->shard_end(s).value();
    for (shard_offset from = 1; from <= end;) {
      auto page = j->read_shard_log(s, from, 500).value();
      REQUIRE(page.next > from);
      for (auto& e : page.events) {
        CHECK(e.shard == s);
        CHECK(e.shard_pos == from++);
        CHECK(e.offset > previous);
        previous = e.offset;
        CHECK(from_shards.emplace(e.offset, std::move(e)).second);
      }
      REQUIRE(from == page.next);
    }
  }
  REQUIRE(from_shards.size() == log.size());
  for (const auto& e : log) {
    const auto& f = from_shards.at(e.offset);
    CHECK(f.persistence_id == e.persistence_id);
    CHECK(f.seq == e.seq);
    CHECK(f.shard == e.shard);
    CHECK(f.written_at == e.written_at);
    CHECK(f.payload == e.payload);
  }
}

TEST_CASE("callbacks may queue further appends", "[persistence][concurrency]") {
  constexpr std::uint32_t shards = 4;
  constexpr sequence_nr length = 60;
  temp_dir tmp;
  commit_counts counts;
  auto opts = options(tmp.journal_dir(), shards);
  opts.on_commit = counts.observer();
  auto j = open_ok(std::move(opts));
  // Callbacks use the object itself: unique_ptr::reset() nulls the pointer before destroying.
  journal* chained = j.get();

  // Each chain has one append outstanding; the next is queued from the previous one's callback,
  // on the writer thread. The writer must not hold its queue lock while running callbacks.
  struct chain {
    std::string id;
    sequence_nr next = 1;
    std::vector<log_offset> offsets;
    std::size_t other_thread = 0; ///< callbacks that did not run on the writer thread
    std::size_t errors = 0;
  };
  SECTION("until each chain is done") {
    constexpr int chains = 8;
    std::vector<chain> cs(chains);
    std::latch finished{chains};
    std::thread::id writer_thread;
    std::mutex writer_mutex;
    std::function<void(std::size_t)> issue = [&](std::size_t i) {
      const std::string& id = cs[i].id;
      const sequence_nr seq = cs[i].next;
      auto req = make_append(shard_of(id, shards), id, seq, {payload_of(id, seq)});
      chained->append_async(std::move(req), [&, i](expected<append_result> r) {
        auto& c = cs[i];
        {
          std::lock_guard lock{writer_mutex};
          if (writer_thread == std::thread::id{})
            writer_thread = std::this_thread::get_id();
          if (writer_thread != std::this_thread::get_id())
            ++c.other_thread;
        }
        if (!r || r->last_seq != c.next) {
          ++c.errors;
          finished.count_down();
          return;
        }
        c.offsets.push_back(r->last_offset);
        if (++c.next > length) {
          finished.count_down();
          return;
        }
        issue(i); // from inside the callback, on the writer thread
      });
    };
    for (std::size_t i = 0; i < chains; ++i) {
      cs[i].id = "chain-" + std::to_string(i);
      issue(i);
    }
    const bool done = kontor::test::wait_until([&] { return finished.try_wait(); }, wait_limit);
    if (!done)
      j.reset(); // its callbacks use this section's state: close it before failing
    REQUIRE(done);

    constexpr std::size_t total = chains * length;
    std::set<log_offset> all_offsets;
    for (const auto& c : cs) {
      INFO(c.id);
      CHECK(c.errors == 0);
      CHECK(c.other_thread == 0);
      REQUIRE(c.offsets.size() == length);
      CHECK(std::is_sorted(c.offsets.begin(), c.offsets.end()));
      all_offsets.insert(c.offsets.begin(), c.offsets.end());
      auto events = j->replay(c.id, 1, 1000).value();
      REQUIRE(events.size() == length);
      for (sequence_nr seq = 1; seq <= length; ++seq) {
        CHECK(events[seq - 1].seq == seq);
        CHECK(events[seq - 1].payload == payload_of(c.id, seq));
        CHECK(events[seq - 1].offset == c.offsets[seq - 1]);
      }
    }
    // Offsets are dense from 1 over all chains.
    CHECK(all_offsets.size() == total);
    CHECK(*all_offsets.begin() == 1);
    CHECK(*all_offsets.rbegin() == total);
    INFO("commits: " << counts.commits.load() << " for " << total << " appends");
    CHECK(counts.appends.load() == total);
    CHECK(counts.commits.load() >= length); // a chained append never shares its parent's batch
    CHECK(counts.commits.load() < total);   // but the chains share batches
  }
  SECTION("while the journal closes") {
    // Chains that never stop: closing the journal ends each with exactly one `closed`, and what
    // was acknowledged before is durable.
    constexpr int chains = 4;
    std::vector<chain> cs(chains);
    std::vector<std::size_t> closed(chains, 0);
    std::mutex progress_mutex;
    std::condition_variable progress_cv;
    std::size_t acknowledged = 0;
    std::function<void(std::size_t)> issue = [&](std::size_t i) {
      const std::string& id = cs[i].id;
      auto req = make_append(shard_of(id, shards), id, cs[i].next, {"e"});
      chained->append_async(std::move(req), [&, i](expected<append_result> r) {
        auto& c = cs[i];
        if (!r) {
          if (r.error().code == errc::closed)
            ++closed[i];
          else
            ++c.errors;
          return;
        }
        ++c.next;
        {
          std::lock_guard lock{progress_mutex};
          ++acknowledged;
        }
        progress_cv.notify_all();
        issue(i);
      });
    };
    for (std::size_t i = 0; i < chains; ++i) {
      cs[i].id = "endless-" + std::to_string(i);
      issue(i);
    }
    bool progressed = false;
    {
      std::unique_lock lock{progress_mutex};
      progressed = progress_cv.wait_for(lock, wait_limit, [&] { return acknowledged >= 10 * chains; });
    }
    j.reset(); // drains: the last callbacks' appends are refused with `closed`
    REQUIRE(progressed);

    auto again = open_ok(options(tmp.journal_dir(), shards));
    for (std::size_t i = 0; i < chains; ++i) {
      INFO(cs[i].id);
      CHECK(cs[i].errors == 0);
      CHECK(closed[i] == 1);
      CHECK(again->highest_sequence_nr(cs[i].id).value() == cs[i].next - 1);
    }
  }
}

TEST_CASE("the map grows on demand while readers run", "[persistence][concurrency]") {
  constexpr sequence_nr appends = 48;
  constexpr std::size_t events_each = 8;
  constexpr std::size_t event_size = 8 * 1024; // 48 * 8 * 8 KiB = 3 MiB, plus one 2 MiB event
  temp_dir tmp;
  auto opts = options(tmp.journal_dir(), 2);
  opts.initial_map_size = 256 * 1024;
  {
    auto j = open_ok(opts);
    // A reader hammers the journal while the writer remaps it.
    std::atomic<bool> done{false};
    std::atomic<int> read_errors{0};
    std::atomic<int> went_backwards{0};
    std::thread reader{[&] {
      sequence_nr seen = 0;
      while (!done.load()) {
        auto high = j->highest_sequence_nr("big");
        auto end = j->log_end();
        auto some = j->replay("big", seen > 3 ? seen - 3 : 1, 4);
        if (!high || !end || !some) {
          read_errors.fetch_add(1);
          continue;
        }
        if (*high < seen)
          went_backwards.fetch_add(1);
        seen = *high;
      }
    }};

    stop_and_join stop_reader{done, reader};
    std::vector<std::future<expected<append_result>>> results;
    for (sequence_nr a = 0; a < appends; ++a) {
      std::vector<std::string> events;
      for (std::size_t e = 0; e < events_each; ++e)
        events.push_back(payload_of("big", a * events_each + e + 1, event_size));
      auto p = std::make_shared<std::promise<expected<append_result>>>();
      results.push_back(p->get_future());
      j->append_async(make_append(0, "big", a * events_each + 1, std::move(events)),
                      [p](expected<append_result> r) { p->set_value(std::move(r)); });
    }
    int failed = 0;
    for (auto& f : results)
      failed += get_within(f).has_value() ? 0 : 1;
    // One batch alone far larger than the map: needs several doublings of one batch.
    auto huge = append_within(*j, make_append(1, "huge", 1, {std::string(2 * 1024 * 1024, 'h')}));
    stop_reader.now();
    REQUIRE(failed == 0);
    REQUIRE(huge.has_value());
    CHECK(read_errors.load() == 0);
    CHECK(went_backwards.load() == 0);
  }
  auto j = open_ok(opts);
  auto events = j->replay("big", 1, appends * events_each + 1).value();
  REQUIRE(events.size() == appends * events_each);
  for (std::size_t i = 0; i < events.size(); ++i)
    CHECK(events[i].payload == payload_of("big", i + 1, event_size));
  CHECK(j->replay("huge", 1, 10).value().at(0).payload == std::string(2 * 1024 * 1024, 'h'));
  // The reopened journal starts from the (small) configured map size and grows again.
  CHECK(append_within(*j, make_append(1, "huge", 2, {std::string(1024 * 1024, 'i')})).has_value());
}

TEST_CASE("appends racing with destruction succeed or get closed, never hang",
          "[persistence][concurrency]") {
  constexpr int racers = 4;
  constexpr int max_outstanding = 64;
  temp_dir tmp;
  struct racer_state {
    std::atomic<std::uint64_t> submitted{0};
    std::atomic<std::uint64_t> ok{0};
    std::atomic<std::uint64_t> closed{0};
    std::atomic<std::uint64_t> other{0};
  };
  std::vector<racer_state> state(racers);
  std::mutex m;
  std::condition_variable cv;
  bool release = false;
  bool progressed = false;
  bool racers_stopped_in_time = false;
  std::latch racers_stopped{racers};
  {
    auto j = open_ok(options(tmp.journal_dir(), 2));
    // Racers use the object itself: unique_ptr::reset() nulls the pointer before destroying.
    journal* racing = j.get();
    std::vector<std::thread> threads;
    for (int t = 0; t < racers; ++t) {
      threads.emplace_back([&, t] {
        auto& st = state[t];
        const std::string id = "racer-" + std::to_string(t);
        for (sequence_nr seq = 1; st.closed.load() == 0; ++seq) {
          {
            std::unique_lock lock{m};
            cv.wait(lock, [&] {
              return release || st.submitted.load() - st.ok.load() - st.other.load() < max_outstanding;
            });
          }
          st.submitted.fetch_add(1);
          racing->append_async(make_append(seq % 2, id, seq, {"e"}), [&](expected<append_result> r) {
            if (r)
              st.ok.fetch_add(1);
            else if (r.error().code == errc::closed)
              st.closed.fetch_add(1);
            else
              st.other.fetch_add(1);
            std::lock_guard lock{m};
            cv.notify_all();
          });
        }
        racers_stopped.count_down();
      });
    }
    // Wait until every racer has had some appends committed (released in any case).
    {
      std::unique_lock lock{m};
      progressed = cv.wait_for(lock, wait_limit, [&] {
        for (auto& st : state)
          if (st.ok.load() < 20)
            return false;
        return true;
      });
      release = true;
    }
    cv.notify_all();
    // This append's callback keeps the writer thread until every racer has seen `closed`, so no
    // racer can call into the journal after its destructor returns.
    j->append_async(make_append(0, "gate", 1, {"g"}), [&](expected<append_result>) {
      racers_stopped_in_time =
        kontor::test::wait_until([&] { return racers_stopped.try_wait(); }, wait_limit);
    });
    j.reset();
    for (auto& t : threads)
      t.join();
  }
  REQUIRE(progressed);
  REQUIRE(racers_stopped_in_time);

  auto j = open_ok(options(tmp.journal_dir(), 2));
  for (int t = 0; t < racers; ++t) {
    auto& st = state[t];
    INFO("racer " << t << ": " << st.ok.load() << " ok, " << st.closed.load() << " closed");
    CHECK(st.other.load() == 0);
    CHECK(st.closed.load() == 1);
    CHECK(st.ok.load() + st.closed.load() == st.submitted.load());
    // What was accepted before shutdown is durable: exactly seq 1..ok.
    CHECK(j->highest_sequence_nr("racer-" + std::to_string(t)).value() == st.ok.load());
  }
  CHECK(j->highest_sequence_nr("gate").value() == 1);
}

TEST_CASE("a disk that refuses writes fails the whole batch, later batches succeed",
          "[persistence][concurrency]") {
  temp_dir tmp;
  commit_counts counts;
  auto opts = options(tmp.journal_dir(), 2);
  opts.on_commit = counts.observer();
  auto j = open_ok(opts);
  REQUIRE(append_within(*j, make_append(0, "first", 1, {"small"})).has_value());
  const std::size_t commits_before = counts.commits.load();

  // Cap the size of files this process may write (EFBIG instead of SIGXFSZ), so the data file
  // cannot grow: LMDB's commit fails like on a full disk.
  const auto data_file = tmp.journal_dir() / "data.mdb";
  file_size_cap cap{std::filesystem::file_size(data_file)};

  // Two appends queued behind a blocker form one batch that needs ~1 MiB of new pages.
  writer_gate gate;
  auto blocked = std::make_shared<std::promise<bool>>(); // the blocker's own batch may fail too
  auto blocker_result = blocked->get_future();
  std::vector<std::future<expected<append_result>>> results;
  j->append_async(make_append(1, "blocker", 1, {"b"}),
                  [blocked, hold = gate.hold()](expected<append_result> b) {
                    blocked->set_value(b.has_value());
                    hold();
                  });
  const bool blocker_written = get_within(blocker_result);
  for (const char* id : {"big-1", "big-2"}) {
    auto p = std::make_shared<std::promise<expected<append_result>>>();
    results.push_back(p->get_future());
    j->append_async(make_append(0, id, 1, std::vector<std::string>(64, std::string(8192, 'x'))),
                    [p](expected<append_result> r) { p->set_value(std::move(r)); });
  }
  gate.open();
  std::vector<expected<append_result>> r;
  for (auto& f : results)
    r.push_back(get_within(f));
  REQUIRE(cap.lift());

  for (auto& one : r) {
    CHECK(code_of(one) == errc::io_error);
    CHECK_THAT(one.error().message, Catch::Contains(tmp.journal_dir().string()));
  }
  // Nothing of the failed batch is visible; the journal keeps running.
  CHECK(j->highest_sequence_nr("big-1").value() == 0);
  CHECK(j->highest_sequence_nr("big-2").value() == 0);
  const log_offset end = blocker_written ? 2 : 1; // "first", then maybe the blocker
  CHECK(j->log_end().value() == end);
  auto retried = append_within(*j, make_append(0, "big-1", 1, {"retried"}));
  REQUIRE(retried.has_value());
  CHECK(retried->last_offset == end + 1); // failed batches took no offsets
  CHECK(j->log_end().value() == end + 1);
  CHECK(counts.commits.load() >= commits_before + 1);
  j.reset();

  auto again = open_ok(opts);
  CHECK(payloads(again->read_shard_log(0, 1, 10).value().events)
        == std::vector<std::string>{"small", "retried"});
  CHECK(payloads(whole_log(*again))
        == (blocker_written ? std::vector<std::string>{"small", "b", "retried"}
                            : std::vector<std::string>{"small", "retried"}));
}

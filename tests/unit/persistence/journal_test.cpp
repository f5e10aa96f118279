// Single-threaded behaviour of the LMDB journal: append, replay, reopen, atomicity, the log and
// its per-shard views, snapshots and argument checks.

#include <catch2/catch.hpp>

#include <chrono>
#include <future>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "test_support.hpp"

using kontor::log_offset;
using kontor::sequence_nr;
using kontor::shard_id;
using kontor::shard_offset;
using namespace kontor::persistence;
using namespace kontor::persistence::test;

TEST_CASE("appended events replay in order and survive a reopen", "[persistence]") {
  temp_dir tmp;
  const auto before = std::chrono::duration_cast<std::chrono::milliseconds>(
                        std::chrono::system_clock::now().time_since_epoch())
                        .count();
  {
    auto j = open_ok(options(tmp.journal_dir()));
    CHECK(j->number_of_shards() == 4);
    auto r1 = append_within(*j, make_append(2, "acc-1", 1, {"opened", "deposited"}));
    REQUIRE(r1.has_value());
    CHECK(r1->last_seq == 2);
    CHECK(r1->last_offset == 2);
    CHECK(r1->written_at >= before);
    auto r2 = append_within(*j, make_append(2, "acc-1", 3, {"withdrawn"}));
    REQUIRE(r2.has_value());
    CHECK(r2->last_seq == 3);
    CHECK(r2->last_offset == 3);

    auto events = j->replay("acc-1", 1, 100);
    REQUIRE(events.has_value());
    REQUIRE(events->size() == 3);
    CHECK(payloads(*events) == std::vector<std::string>{"opened", "deposited", "withdrawn"});
    for (std::size_t i = 0; i < events->size(); ++i) {
      const auto& e = (*events)[i];
      CHECK(e.persistence_id == "acc-1");
      CHECK(e.seq == i + 1);
      CHECK(e.offset == i + 1);
      CHECK(e.shard == 2);
    }
    CHECK((*events)[0].written_at == r1->written_at);
    CHECK((*events)[2].written_at == r2->written_at);
    CHECK(j->highest_sequence_nr("acc-1").value() == 3);
    CHECK(j->highest_sequence_nr("unknown").value() == 0);
  }
  auto j = open_ok(options(tmp.journal_dir()));
  auto events = j->replay("acc-1", 1, 100);
  REQUIRE(events.has_value());
  CHECK(payloads(*events) == std::vector<std::string>{"opened", "deposited", "withdrawn"});
  CHECK(j->highest_sequence_nr("acc-1").value() == 3);
  CHECK(j->log_end().value() == 3);
  auto next = append_within(*j, make_append(2, "acc-1", 4, {"closed"}));
  REQUIRE(next.has_value());
  CHECK(next->last_seq == 4);
  CHECK(next->last_offset == 4);
}

TEST_CASE("replay honours from and max", "[persistence]") {
  temp_dir tmp;
  auto j = open_ok(options(tmp.journal_dir()));
  REQUIRE(append_within(*j, make_append(0, "x", 1, {"1", "2", "3", "4", "5"})).has_value());
  CHECK(payloads(j->replay("x", 3, 100).value()) == std::vector<std::string>{"3", "4", "5"});
  CHECK(payloads(j->replay("x", 2, 2).value()) == std::vector<std::string>{"2", "3"});
  CHECK(payloads(j->replay("x", 0, 1).value()) == std::vector<std::string>{"1"});
  CHECK(j->replay("x", 6, 100).value().empty());
  CHECK(j->replay("x", 1, 0).value().empty());
  CHECK(j->replay("nobody", 1, 100).value().empty());
}

TEST_CASE("ids that are prefixes of each other do not mix", "[persistence]") {
  temp_dir tmp;
  auto j = open_ok(options(tmp.journal_dir(), 1));
  const std::string longest(255, '\xff'); // the largest possible index key: end-of-db seeks
  REQUIRE(append_within(*j, make_append(0, "abc", 1, {"abc-1", "abc-2", "abc-3"})).has_value());
  REQUIRE(append_within(*j, make_append(0, "ab", 1, {"ab-1"})).has_value());
  REQUIRE(append_within(*j, make_append(0, "a", 1, {"a-1", "a-2"})).has_value());
  REQUIRE(append_within(*j, make_append(0, "abcd", 1, {"abcd-1"})).has_value());
  CHECK(j->highest_sequence_nr(longest).value() == 0);
  REQUIRE(append_within(*j, make_append(0, longest, 1, {"max-1", "max-2"})).has_value());

  CHECK(payloads(j->replay("a", 1, 100).value()) == std::vector<std::string>{"a-1", "a-2"});
  CHECK(payloads(j->replay("ab", 1, 100).value()) == std::vector<std::string>{"ab-1"});
  CHECK(payloads(j->replay("abc", 1, 100).value())
        == std::vector<std::string>{"abc-1", "abc-2", "abc-3"});
  CHECK(payloads(j->replay("abcd", 1, 100).value()) == std::vector<std::string>{"abcd-1"});
  CHECK(payloads(j->replay(longest, 1, 100).value()) == std::vector<std::string>{"max-1", "max-2"});
  CHECK(j->highest_sequence_nr("a").value() == 2);
  CHECK(j->highest_sequence_nr("ab").value() == 1);
  CHECK(j->highest_sequence_nr("abc").value() == 3);
  CHECK(j->highest_sequence_nr("abcd").value() == 1);
  CHECK(j->highest_sequence_nr("abcde").value() == 0);
  CHECK(j->highest_sequence_nr(longest).value() == 2);
  CHECK(j->replay("abcde", 1, 100).value().empty());
  CHECK(code_of(append_within(*j, make_append(0, "ab", 1, {"again"}))) == errc::sequence_conflict);
  CHECK(append_within(*j, make_append(0, "ab", 2, {"ab-2"})).has_value());
}

TEST_CASE("a refused append writes nothing while the rest of its batch commits",
          "[persistence]") {
  temp_dir tmp;
  std::mutex m;
  std::vector<std::pair<std::size_t, std::size_t>> commits; // (appends, events)
  auto opts = options(tmp.journal_dir(), 2);
  opts.on_commit = [&](std::size_t appends, std::size_t events, std::chrono::nanoseconds) {
    std::lock_guard lock{m};
    commits.emplace_back(appends, events);
  };
  auto j = open_ok(std::move(opts));

  // A blocker holds the writer in its callback, so that everything below queues up behind it
  // and is taken as one batch.
  writer_gate gate;
  auto blocked = std::make_shared<std::promise<bool>>();
  auto blocker_result = blocked->get_future();
  j->append_async(make_append(1, "blocker", 1, {"b"}),
                  [blocked, hold = gate.hold()](expected<append_result> r) {
                    blocked->set_value(r.has_value());
                    hold();
                  });
  REQUIRE(get_within(blocker_result));

  std::vector<std::future<expected<append_result>>> results;
  auto submit = [&](append_request req) {
    auto p = std::make_shared<std::promise<expected<append_result>>>();
    results.push_back(p->get_future());
    j->append_async(std::move(req), [p](expected<append_result> r) { p->set_value(std::move(r)); });
  };
  submit(make_append(0, "a", 1, {"a-1", "a-2"}));        // ok
  submit(make_append(0, "b", 5, {"b-5", "b-6", "b-7"})); // wrong first_seq: nothing written
  submit(make_append(0, "a", 3, {"a-3"}));               // sees a-1..a-2 of the same batch
  submit(make_append(0, "a", 3, {"a-3-again"}));         // conflicts with the one before
  submit(make_append(7, "c", 1, {"c-1"}));               // shard out of range
  submit(make_append(0, "d", 1, {"d-1", "d-2", "d-3"})); // ok
  gate.open();

  std::vector<expected<append_result>> r;
  for (auto& f : results)
    r.push_back(get_within(f));
  // The blocker holds offset 1; refused appends take no offsets.
  REQUIRE(r[0].has_value());
  CHECK(r[0]->last_seq == 2);
  CHECK(r[0]->last_offset == 3);
  CHECK(code_of(r[1]) == errc::sequence_conflict);
  CHECK_THAT(r[1].error().message, Catch::Contains("'b'"));
  REQUIRE(r[2].has_value());
  CHECK(r[2]->last_seq == 3);
  CHECK(r[2]->last_offset == 4);
  CHECK(code_of(r[3]) == errc::sequence_conflict);
  CHECK(code_of(r[4]) == errc::invalid_argument);
  REQUIRE(r[5].has_value());
  CHECK(r[5]->last_seq == 3);
  CHECK(r[5]->last_offset == 7);
  CHECK(r[0]->written_at == r[5]->written_at);

  {
    std::lock_guard lock{m};
    REQUIRE(commits.size() == 2);
    CHECK(commits[1] == std::pair<std::size_t, std::size_t>{3, 6}); // one batch, one commit
  }
  CHECK(j->highest_sequence_nr("b").value() == 0);
  CHECK(j->replay("b", 1, 100).value().empty());
  CHECK(j->highest_sequence_nr("c").value() == 0);
  CHECK(payloads(j->replay("a", 1, 100).value()) == std::vector<std::string>{"a-1", "a-2", "a-3"});
  CHECK(payloads(j->read_shard_log(0, 1, 100).value().events)
        == std::vector<std::string>{"a-1", "a-2", "a-3", "d-1", "d-2", "d-3"});
  CHECK(payloads(whole_log(*j))
        == std::vector<std::string>{"b", "a-1", "a-2", "a-3", "d-1", "d-2", "d-3"});
  CHECK(j->log_end().value() == 7);
  // The refused append can be retried with the right sequence number.
  CHECK(append_within(*j, make_append(0, "b", 1, {"b-1"})).has_value());
}

TEST_CASE("invalid appends are refused with invalid_argument", "[persistence]") {
  temp_dir tmp;
  auto j = open_ok(options(tmp.journal_dir()));
  CHECK(code_of(append_within(*j, make_append(0, "", 1, {"e"}))) == errc::invalid_argument);
  CHECK(code_of(append_within(*j, make_append(0, std::string(256, 'x'), 1, {"e"})))
        == errc::invalid_argument);
  CHECK(code_of(append_within(*j, make_append(4, "acc", 1, {"e"}))) == errc::invalid_argument);
  CHECK(code_of(append_within(*j, make_append(0, "acc", 1, {}))) == errc::invalid_argument);
  CHECK(code_of(append_within(*j, make_append(0, "acc", 0, {"e"}))) == errc::sequence_conflict);
  CHECK(code_of(append_within(*j, make_append(0, "acc", 2, {"e"}))) == errc::sequence_conflict);
  CHECK(append_within(*j, make_append(0, std::string(255, 'x'), 1, {"e"})).has_value());
  CHECK(j->log_end().value() == 1);

  CHECK(code_of(j->replay("", 1, 10)) == errc::invalid_argument);
  CHECK(code_of(j->highest_sequence_nr(std::string(256, 'x'))) == errc::invalid_argument);
  CHECK(code_of(j->load_snapshot("")) == errc::invalid_argument);
  CHECK(code_of(j->read_shard_log(4, 1, 10)) == errc::invalid_argument);
  CHECK(code_of(save_snapshot(*j, snapshot{"", 1, "s"})) == errc::invalid_argument);
}

TEST_CASE("the log is dense from 1 across all shards, in commit order", "[persistence]") {
  temp_dir tmp;
  {
    auto j = open_ok(options(tmp.journal_dir(), 3));
    CHECK(j->log_end().value() == 0);
    auto empty = j->read_log(1, 100).value();
    CHECK(empty.events.empty());
    CHECK(empty.next == 1);
    REQUIRE(append_within(*j, make_append(1, "p", 1, {"p1", "p2"})).value().last_offset == 2);
    REQUIRE(append_within(*j, make_append(0, "q", 1, {"q1"})).value().last_offset == 3);
    REQUIRE(append_within(*j, make_append(1, "r", 1, {"r1"})).value().last_offset == 4);
    REQUIRE(append_within(*j, make_append(1, "p", 3, {"p3"})).value().last_offset == 5);
    REQUIRE(append_within(*j, make_append(0, "q", 2, {"q2", "q3"})).value().last_offset == 7);
    CHECK(j->log_end().value() == 7);
  }
  auto j = open_ok(options(tmp.journal_dir(), 3));
  CHECK(j->log_end().value() == 7);

  auto log = j->read_log(1, 100).value();
  CHECK(log.next == 8);
  REQUIRE(log.events.size() == 7);
  CHECK(payloads(log.events) == std::vector<std::string>{"p1", "p2", "q1", "r1", "p3", "q2", "q3"});
  const std::vector<shard_id> shards{1, 1, 0, 1, 1, 0, 0};
  for (std::size_t i = 0; i < log.events.size(); ++i) {
    CHECK(log.events[i].offset == i + 1);
    CHECK(log.events[i].shard == shards[i]);
  }
  CHECK(log.events[3].persistence_id == "r");
  CHECK(log.events[3].seq == 1);
  CHECK(log.events[4].persistence_id == "p");
  CHECK(log.events[4].seq == 3);
  // Replay reports the same (global) offsets.
  auto p = j->replay("p", 1, 100).value();
  REQUIRE(p.size() == 3);
  CHECK(p[0].offset == 1);
  CHECK(p[2].offset == 5);
  CHECK(p[2].shard == 1);

  // Each event knows its position in its shard's log (dense per shard) and whether it ends its
  // append.
  const std::vector<shard_offset> positions{1, 2, 1, 3, 4, 2, 3};
  const std::vector<bool> ends{false, true, true, true, true, false, true};
  for (std::size_t i = 0; i < log.events.size(); ++i) {
    CHECK(log.events[i].shard_pos == positions[i]);
    CHECK(log.events[i].append_end == ends[i]);
  }

  // The log is read in pages: each continues at the previous page's `next`, and never ends
  // inside an append (so a page may hold the rest of its last append beyond `max`).
  std::vector<stored_event> paged;
  std::size_t pages = 0;
  for (log_offset from = 0; from <= 7; ++pages) {
    auto page = j->read_log(from, 3).value();
    REQUIRE(!page.events.empty());
    REQUIRE(page.events.back().append_end);
    REQUIRE(page.next > from);
    paged.insert(paged.end(), page.events.begin(), page.events.end());
    from = page.next;
  }
  CHECK(pages == 2);
  CHECK(payloads(paged) == payloads(log.events));
  CHECK(payloads(j->read_log(1, 1).value().events) == std::vector<std::string>{"p1", "p2"});
  auto middle = j->read_log(3, 2).value();
  CHECK(payloads(middle.events) == std::vector<std::string>{"q1", "r1"});
  CHECK(middle.next == 5);
  auto split = j->read_log(5, 2).value();
  CHECK(payloads(split.events) == std::vector<std::string>{"p3", "q2", "q3"});
  CHECK(split.next == 8);
  auto past = j->read_log(8, 100).value();
  CHECK(past.events.empty());
  CHECK(past.next == 8);
  auto none = j->read_log(2, 0).value();
  CHECK(none.events.empty());
  CHECK(none.next == 2);

  // A shard's log, by shard position: the shard's events only, in order, with global offsets.
  auto log1 = j->read_shard_log(1, 1, 100).value();
  CHECK(payloads(log1.events) == std::vector<std::string>{"p1", "p2", "r1", "p3"});
  std::vector<log_offset> offsets;
  for (const auto& e : log1.events) {
    CHECK(e.shard == 1);
    offsets.push_back(e.offset);
  }
  CHECK(offsets == std::vector<log_offset>{1, 2, 4, 5});
  CHECK(log1.next == 5);
  CHECK(log1.end == 4);
  CHECK(payloads(j->read_shard_log(1, 3, 100).value().events)
        == std::vector<std::string>{"r1", "p3"});
  auto at_max = j->read_shard_log(1, 2, 2).value();
  CHECK(payloads(at_max.events) == std::vector<std::string>{"p2", "r1"});
  CHECK(at_max.next == 4); // right after the last one returned
  auto whole_append = j->read_shard_log(1, 1, 1).value(); // p1 and p2 are one append
  CHECK(payloads(whole_append.events) == std::vector<std::string>{"p1", "p2"});
  CHECK(whole_append.next == 3);
  CHECK(payloads(j->read_shard_log(0, 0, 100).value().events)
        == std::vector<std::string>{"q1", "q2", "q3"});
  CHECK(payloads(j->read_shard_log(0, 2, 1).value().events)
        == std::vector<std::string>{"q2", "q3"});
  auto tail = j->read_shard_log(1, 5, 100).value();
  CHECK(tail.events.empty());
  CHECK(tail.next == 5);
  CHECK(tail.end == 4);
  auto unused = j->read_shard_log(2, 1, 100).value();
  CHECK(unused.events.empty());
  CHECK(unused.end == 0);
  auto zero = j->read_shard_log(1, 1, 0).value();
  CHECK(zero.events.empty());
  CHECK(zero.next == 1);
  CHECK(j->shard_end(0).value() == 3);
  CHECK(j->shard_end(1).value() == 4);
  CHECK(j->shard_end(2).value() == 0);
  CHECK(code_of(j->shard_end(3)) == errc::invalid_argument);

  // The reopened journal continues the log and the shards where they ended.
  auto s1 = append_within(*j, make_append(2, "s", 1, {"s1"})).value();
  CHECK(s1.last_offset == 8);
  CHECK(append_within(*j, make_append(1, "r", 2, {"r2"})).value().last_offset == 9);
  CHECK(j->log_end().value() == 9);
  CHECK(payloads(j->read_shard_log(2, 1, 100).value().events) == std::vector<std::string>{"s1"});
  auto r2 = j->read_shard_log(1, 5, 100).value();
  REQUIRE(r2.events.size() == 1);
  CHECK(r2.events[0].shard_pos == 5);
  CHECK(r2.events[0].payload == "r2");
}

TEST_CASE("a shard's log is read through its index: every event once, in position order",
          "[persistence]") {
  constexpr std::uint32_t shards = 3;
  constexpr shard_id sparse = 2;
  temp_dir tmp;
  auto opts = options(tmp.journal_dir(), shards);
  opts.index_interval = std::chrono::milliseconds{0};
  auto j = open_ok(opts);
  // 400 appends, mostly to shards 0 and 1; every 37th goes to the sparse shard, some of those
  // with several events.
  std::vector<append_request> reqs;
  std::map<std::string, sequence_nr> next_seq;
  for (int i = 1; i <= 400; ++i) {
    const bool to_sparse = i % 37 == 0;
    const std::string id =
      to_sparse ? "sparse-" + std::to_string(i % 3) : "dense-" + std::to_string(i % 5);
    const shard_id shard = to_sparse ? sparse : static_cast<shard_id>(i % 2);
    auto& seq = next_seq[id];
    std::vector<std::string> events;
    const int n = to_sparse && i % 2 == 0 ? 3 : 1;
    for (int e = 0; e < n; ++e)
      events.push_back(id + "#" + std::to_string(seq + 1 + static_cast<sequence_nr>(e)));
    reqs.push_back(make_append(shard, id, seq + 1, std::move(events)));
    seq += static_cast<sequence_nr>(n);
  }
  for (auto& r : append_all(*j, std::move(reqs)))
    REQUIRE(r.has_value());

  // Read while some events are in the index and some only in memory, then after a reopen
  // (all indexed).
  for (int round = 0; round < 2; ++round) {
    std::vector<stored_event> expected_events;
    for (auto& e : whole_log(*j))
      if (e.shard == sparse)
        expected_events.push_back(std::move(e));
    REQUIRE(expected_events.size() > 10);
    const shard_offset end = j->shard_end(sparse).value();
    CHECK(end == expected_events.size());

    constexpr std::size_t max = 2;
    std::vector<stored_event> got;
    std::size_t calls = 0;
    for (shard_offset from = 1; from <= end; ++calls) {
      REQUIRE(calls <= end); // every call makes progress
      auto page = j->read_shard_log(sparse, from, max).value();
      REQUIRE(!page.events.empty());
      REQUIRE(page.events.back().append_end);
      REQUIRE(page.next == from + page.events.size());
      for (const auto& e : page.events)
        CHECK(e.shard == sparse);
      got.insert(got.end(), page.events.begin(), page.events.end());
      from = page.next;
    }
    REQUIRE(got.size() == expected_events.size());
    for (std::size_t i = 0; i < got.size(); ++i) {
      CHECK(got[i].shard_pos == i + 1);
      CHECK(got[i].offset == expected_events[i].offset);
      CHECK(got[i].persistence_id == expected_events[i].persistence_id);
      CHECK(got[i].seq == expected_events[i].seq);
      CHECK(got[i].payload == expected_events[i].payload);
      CHECK(got[i].append_end == expected_events[i].append_end);
    }
    j.reset();
    j = open_ok(opts);
  }
}

TEST_CASE("snapshots keep the latest and survive a reopen", "[persistence]") {
  temp_dir tmp;
  {
    auto j = open_ok(options(tmp.journal_dir()));
    CHECK_FALSE(j->load_snapshot("acc").value().has_value());
    REQUIRE(save_snapshot(*j, snapshot{"acc", 10, "state@10"}).has_value());
    auto s = j->load_snapshot("acc").value();
    REQUIRE(s.has_value());
    CHECK(s->persistence_id == "acc");
    CHECK(s->seq == 10);
    CHECK(s->payload == "state@10");
    REQUIRE(save_snapshot(*j, snapshot{"acc", 20, "state@20"}).has_value());
    REQUIRE(save_snapshot(*j, snapshot{"accX", 3, "other"}).has_value());
    REQUIRE(save_snapshot(*j, snapshot{"empty", 1, ""}).has_value());
    // Without a callback the snapshot is still written with the next batch.
    j->save_snapshot_async(snapshot{"no-callback", 7, "fire and forget"}, nullptr);
    REQUIRE(append_within(*j, make_append(0, "after", 1, {"e"})).has_value());
    CHECK(j->load_snapshot("no-callback").value().value().seq == 7);
  }
  auto j = open_ok(options(tmp.journal_dir()));
  auto s = j->load_snapshot("acc").value();
  REQUIRE(s.has_value());
  CHECK(s->seq == 20);
  CHECK(s->payload == "state@20");
  CHECK(j->load_snapshot("accX").value().value().payload == "other");
  CHECK(j->load_snapshot("empty").value().value().payload.empty());
  CHECK_FALSE(j->load_snapshot("ac").value().has_value());
}

TEST_CASE("error codes have stable names", "[persistence]") {
  CHECK(std::string{to_string(errc::sequence_conflict)} == "sequence_conflict");
  CHECK(std::string{to_string(errc::invalid_argument)} == "invalid_argument");
  CHECK(std::string{to_string(errc::io_error)} == "io_error");
  CHECK(std::string{to_string(errc::corrupt)} == "corrupt");
  CHECK(std::string{to_string(errc::unknown_format)} == "unknown_format");
  CHECK(std::string{to_string(errc::config_mismatch)} == "config_mismatch");
  CHECK(std::string{to_string(errc::closed)} == "closed");
}

TEST_CASE("the journal's log environment syncs every commit (no NOSYNC, NOMETASYNC, MAPASYNC)",
          "[persistence][durability]") {
  // A kill -9 keeps the page cache, so no crash test can tell a synced commit from an unsynced
  // one: the flags the log runs with are what shows that a 2xx comes after fsync.
  temp_dir tmp;
  auto j = open_ok(options(tmp.journal_dir()));
  const auto flags = lmdb_log_env_flags(*j);
  REQUIRE(flags.has_value());
  CHECK((*flags & MDB_NOSYNC) == 0);
  CHECK((*flags & MDB_NOMETASYNC) == 0);
  CHECK((*flags & MDB_MAPASYNC) == 0);
}

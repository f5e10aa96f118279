// The catch-up stream's receiving end: importing one shard's events from another journal keeps
// seqs, timestamps, shard positions and append boundaries, is idempotent, and refuses what
// would leave a gap or mix two histories, writing nothing then.

#include <catch2/catch.hpp>

#include <chrono>
#include <future>
#include <string>
#include <vector>

#include "test_support.hpp"

using kontor::log_offset;
using kontor::sequence_nr;
using kontor::shard_id;
using kontor::shard_offset;
using namespace kontor::persistence;
using namespace kontor::persistence::test;

namespace {

/// Imports `batch` and waits (with a deadline) for the outcome.
expected<import_result> import_now(journal& j, shard_import batch) {
  auto p = std::make_shared<std::promise<expected<import_result>>>();
  auto f = p->get_future();
  j.import_async(std::move(batch), [p](expected<import_result> r) { p->set_value(std::move(r)); });
  REQUIRE(f.wait_for(std::chrono::seconds{20}) == std::future_status::ready);
  return f.get();
}

/// Events of `shard` in `j` from position `from` on, all of them.
std::vector<stored_event> shard_events(const journal& j, shard_id shard, shard_offset from = 1) {
  std::vector<stored_event> out;
  for (;;) {
    auto page = j.read_shard_log(shard, from, 1000).value();
    if (page.events.empty())
      return out;
    out.insert(out.end(), page.events.begin(), page.events.end());
    from = page.next;
  }
}

/// A source journal whose shard 1 holds: a (1,2 one append), b (1), a (3), c (1,2,3 one append),
/// with shard 0 events interleaved so that offsets and positions differ.
void fill_source(journal& src) {
  REQUIRE(src.append(make_append(1, "a", 1, {"a1", "a2"})).has_value());
  REQUIRE(src.append(make_append(0, "x", 1, {"x1"})).has_value());
  REQUIRE(src.append(make_append(1, "b", 1, {"b1"})).has_value());
  REQUIRE(src.append(make_append(1, "a", 3, {"a3"})).has_value());
  REQUIRE(src.append(make_append(0, "x", 2, {"x2"})).has_value());
  REQUIRE(src.append(make_append(1, "c", 1, {"c1", "c2", "c3"})).has_value());
}

/// The fields an import must keep, for comparing two copies of a shard.
std::vector<std::string> kept(const std::vector<stored_event>& events) {
  std::vector<std::string> out;
  for (const auto& e : events)
    out.push_back(e.persistence_id + "/" + std::to_string(e.seq) + "@" + std::to_string(e.shard_pos)
                  + (e.append_end ? "." : ",") + std::to_string(e.written_at) + ":" + e.payload);
  return out;
}

} // namespace

TEST_CASE("an imported shard equals the source's, and the target continues it",
          "[persistence][import]") {
  temp_dir a, b;
  auto src = open_ok(options(a.journal_dir()));
  fill_source(*src);
  REQUIRE(save_snapshot(*src, snapshot{"c", 3, "c@3"}).has_value());
  auto source_events = shard_events(*src, 1);
  REQUIRE(source_events.size() == 7);

  auto dst = open_ok(options(b.journal_dir()));
  // Something of another shard first, so the target's offsets differ from the source's.
  REQUIRE(dst->append(make_append(2, "y", 1, {"y1"})).has_value());
  auto r = import_now(*dst, shard_import{1, source_events, {*src->load_snapshot("c").value()}});
  REQUIRE(r.has_value());
  CHECK(r->shard_end == 7);
  CHECK(r->imported == 7);
  CHECK(dst->shard_end(1).value() == 7);
  auto imported = shard_events(*dst, 1);
  CHECK(kept(imported) == kept(source_events));
  CHECK(imported.front().offset == 2); // local offsets
  CHECK(payloads(dst->replay("a", 1, 10).value()) == std::vector<std::string>{"a1", "a2", "a3"});
  CHECK(dst->highest_sequence_nr("c").value() == 3);
  CHECK(dst->load_snapshot("c").value().value().payload == "c@3");
  // The imported events are in the target's log too (its read side follows them).
  CHECK(whole_log(*dst).size() == 8);

  // The target continues the shard: next position, next seq.
  auto more = dst->append(make_append(1, "a", 4, {"a4"}));
  REQUIRE(more.has_value());
  auto last = shard_events(*dst, 1, 8);
  REQUIRE(last.size() == 1);
  CHECK(last[0].payload == "a4");
  CHECK(last[0].shard_pos == 8);
  // A stale seq is still refused after an import.
  CHECK(code_of(dst->append(make_append(1, "b", 1, {"b1-again"}))) == errc::sequence_conflict);

  // All of it survives a reopen, and a rebuild of the index from the log.
  dst.reset();
  std::filesystem::remove_all(b.journal_dir() / "index");
  dst = open_ok(options(b.journal_dir()));
  auto after = shard_events(*dst, 1);
  REQUIRE(after.size() == 8);
  source_events.push_back(last[0]);
  CHECK(kept(after) == kept(source_events));
  CHECK(dst->shard_end(1).value() == 8);
}

TEST_CASE("importing again, or an overlapping stream, writes only what is missing",
          "[persistence][import]") {
  temp_dir a, b;
  auto src = open_ok(options(a.journal_dir()));
  fill_source(*src);
  auto all = shard_events(*src, 1);
  auto dst = open_ok(options(b.journal_dir()));

  const std::vector<stored_event> first_part(all.begin(), all.begin() + 4); // a1 a2 b1 a3
  REQUIRE(import_now(*dst, shard_import{1, first_part, {}}).value().imported == 4);
  auto again = import_now(*dst, shard_import{1, first_part, {}});
  REQUIRE(again.has_value());
  CHECK(again->imported == 0);
  CHECK(again->shard_end == 4);
  // Positions 3..7: 3 and 4 are there, 5..7 are new.
  const std::vector<stored_event> overlapping(all.begin() + 2, all.end());
  auto rest = import_now(*dst, shard_import{1, overlapping, {}});
  REQUIRE(rest.has_value());
  CHECK(rest->imported == 3);
  CHECK(rest->shard_end == 7);
  CHECK(kept(shard_events(*dst, 1)) == kept(all));
  CHECK(dst->log_end().value() == 7);
}

TEST_CASE("an import that would leave a gap, break a stream or mix histories writes nothing",
          "[persistence][import]") {
  temp_dir a, b;
  auto src = open_ok(options(a.journal_dir()));
  fill_source(*src);
  auto all = shard_events(*src, 1);
  auto dst = open_ok(options(b.journal_dir()));
  REQUIRE(import_now(*dst, shard_import{1, {all[0], all[1]}, {}}).has_value());

  SECTION("a gap after the journal's end") {
    auto r = import_now(*dst, shard_import{1, {all[3]}, {}}); // position 4, the journal has 2
    CHECK(code_of(r) == errc::invalid_argument);
    CHECK_THAT(r.error().message, Catch::Contains("gap"));
  }
  SECTION("positions that are not consecutive") {
    CHECK(code_of(import_now(*dst, shard_import{1, {all[2], all[4]}, {}}))
          == errc::invalid_argument);
  }
  SECTION("an import that ends inside an append") {
    CHECK(code_of(import_now(*dst, shard_import{1, {all[2], all[3], all[4]}, {}}))
          == errc::invalid_argument);
  }
  SECTION("an event of another shard") {
    auto wrong = all[2];
    wrong.shard = 0;
    CHECK(code_of(import_now(*dst, shard_import{1, {wrong}, {}})) == errc::invalid_argument);
  }
  SECTION("a seq that does not continue its id's stream") {
    auto skipped = all[3]; // a3 at position 4; make it position 3 with seq 3 while a has 2 ...
    skipped.shard_pos = 3;
    skipped.seq = 5; // ... but claim seq 5
    auto r = import_now(*dst, shard_import{1, {skipped}, {}});
    CHECK(code_of(r) == errc::sequence_conflict);
  }
  SECTION("another event at a position the journal holds") {
    auto other = all[1];
    other.persistence_id = "z";
    other.seq = 1;
    auto r = import_now(*dst, shard_import{1, {all[0], other, all[2]}, {}});
    CHECK(code_of(r) == errc::sequence_conflict);
    CHECK_THAT(r.error().message, Catch::Contains("diverged"));
  }
  // Nothing of a refused import was written, and the right one still goes in.
  CHECK(dst->shard_end(1).value() == 2);
  CHECK(dst->log_end().value() == 2);
  const std::vector<stored_event> rest(all.begin() + 2, all.end());
  REQUIRE(import_now(*dst, shard_import{1, rest, {}}).value().shard_end == 7);
  CHECK(kept(shard_events(*dst, 1)) == kept(all));
}

TEST_CASE("an import takes snapshots that are newer and not ahead of the events",
          "[persistence][import]") {
  temp_dir a, b;
  auto src = open_ok(options(a.journal_dir()));
  fill_source(*src);
  auto all = shard_events(*src, 1);
  auto dst = open_ok(options(b.journal_dir()));
  REQUIRE(save_snapshot(*dst, snapshot{"b", 1, "b@1-local"}).has_value());
  auto r = import_now(*dst, shard_import{1, all,
                                         {snapshot{"a", 2, "a@2"}, snapshot{"b", 1, "b@1-remote"},
                                          snapshot{"c", 9, "c@9-ahead"}}});
  REQUIRE(r.has_value());
  CHECK(dst->load_snapshot("a").value().value().payload == "a@2");
  CHECK(dst->load_snapshot("b").value().value().payload == "b@1-local"); // not newer
  CHECK_FALSE(dst->load_snapshot("c").value().has_value());               // ahead of c's events
}

// The catch-up stream's sending end without actors: a range page holds exactly the appends that
// start in its range, so consecutive ranges of any size give the shard's log once, never
// splitting an append; pages are cut between appends at the byte limit; snapshots come along
// when an import of the page can take them.

#include <catch2/catch.hpp>

#include <future>

#include "runtime/stream/shard_range.hpp"
#include "stream_support.hpp"

using namespace kontor;
using namespace kontor::stream;
using namespace kontor::stream::testing;

namespace {

/// Reads the whole shard through consecutive ranges of `size` positions; checks each page.
std::vector<stored_event> read_by_ranges(const persistence::journal& j, shard_offset size,
                                         range_limits limits = {}, std::uint32_t max_bytes = 1u << 20) {
  std::vector<stored_event> out;
  const shard_offset end = j.shard_end(copied_shard).value();
  for (shard_offset from = 1; from <= end;) {
    auto page = read_range(j, range_request{copied_shard, from, from + size, max_bytes}, limits);
    REQUIRE(page.has_value());
    REQUIRE(page->from == from);
    REQUIRE(page->next > from);
    REQUIRE(page->next <= from + size);
    CHECK(page->end == end);
    for (std::size_t k = 0; k < page->events.size(); ++k) {
      const auto& e = page->events[k];
      if (k == 0 || page->events[k - 1].append_end) { // an append starts here: in the range
        CHECK(e.shard_pos >= from);
        CHECK(e.shard_pos < page->next);
      }
    }
    if (!page->events.empty())
      CHECK(page->events.back().append_end);
    if (from > 1) {
      CHECK(page->prev.shard_pos == from - 1);
      CHECK(page->prev.payload.empty());
    }
    out.insert(out.end(), page->events.begin(), page->events.end());
    from = page->next;
  }
  return out;
}

} // namespace

TEST_CASE("consecutive range pages give the shard's log once, whatever the range size",
          "[stream][range]") {
  journal_fixture src;
  history_writer writer{7};
  writer.write(*src.journal, 400);
  const auto all = shard_log(*src.journal);
  REQUIRE(all.size() >= 400);
  for (shard_offset size : {1, 2, 3, 5, 64, 1000}) {
    INFO("range size " << size);
    CHECK(kept(read_by_ranges(*src.journal, size)) == kept(all));
  }
  // The source's own cap on positions per range gives the same log, in more pages.
  CHECK(kept(read_by_ranges(*src.journal, 1000, range_limits{7, 1u << 20})) == kept(all));
}

TEST_CASE("a range page is cut between appends at the byte limit, but holds one append at least",
          "[stream][range]") {
  journal_fixture src;
  history_writer writer{11};
  writer.write(*src.journal, 300);
  const auto all = shard_log(*src.journal);

  auto small = read_range(*src.journal, range_request{copied_shard, 1, 1000, 600});
  REQUIRE(small.has_value());
  REQUIRE_FALSE(small->events.empty());
  CHECK(small->next < 300);                                  // cut
  CHECK(small->next == small->events.back().shard_pos + 1);  // at the first append left out
  CHECK(small->events.back().append_end);
  std::size_t bytes = 0;
  for (const auto& e : small->events)
    bytes += e.payload.size();
  CHECK(bytes <= 600);

  auto tiny = read_range(*src.journal, range_request{copied_shard, 1, 1000, 1});
  REQUIRE(tiny.has_value());
  REQUIRE_FALSE(tiny->events.empty()); // one whole append, however small the limit
  CHECK(tiny->events.back().append_end);
  CHECK(tiny->next == tiny->events.back().shard_pos + 1);

  // Cut pages, read on from each `next`, still give the log once.
  CHECK(kept(read_by_ranges(*src.journal, 1000, {}, 500)) == kept(all));
}

TEST_CASE("a range inside one append, at the end or past it", "[stream][range]") {
  journal_fixture src;
  auto& j = *src.journal;
  history_writer::append_all(j, {persistence::append_request{copied_shard, "a", 1, {"a1"}},
                                 persistence::append_request{copied_shard, "b", 1, {"b1", "b2", "b3"}},
                                 persistence::append_request{copied_shard, "a", 2, {"a2"}}});
  // Positions: 1 a1 | 2 b1, 3 b2, 4 b3 | 5 a2.
  SECTION("a range inside an append is empty and covers its positions") {
    auto p = read_range(j, range_request{copied_shard, 3, 5});
    REQUIRE(p.has_value());
    CHECK(p->events.empty());
    CHECK(p->next == 5);
    CHECK(p->prev.shard_pos == 2);
    CHECK(p->prev.persistence_id == "b");
    CHECK_FALSE(p->prev.append_end);
  }
  SECTION("a range ending inside an append gets the whole append") {
    auto p = read_range(j, range_request{copied_shard, 2, 3});
    REQUIRE(p.has_value());
    REQUIRE(p->events.size() == 3);
    CHECK(p->events.front().shard_pos == 2);
    CHECK(p->events.back().shard_pos == 4);
    CHECK(p->next == 3);
  }
  SECTION("a range past the end is empty and reaches only end + 1") {
    auto at_end = read_range(j, range_request{copied_shard, 5, 100});
    REQUIRE(at_end.has_value());
    REQUIRE(at_end->events.size() == 1);
    CHECK(at_end->next == 6);
    CHECK(at_end->end == 5);
    auto past = read_range(j, range_request{copied_shard, 6, 100});
    REQUIRE(past.has_value());
    CHECK(past->events.empty());
    CHECK(past->next == 6);
    CHECK(past->prev.shard_pos == 5);
    auto far = read_range(j, range_request{copied_shard, 50, 100});
    REQUIRE(far.has_value());
    CHECK(far->events.empty());
    CHECK(far->next == 50);
    CHECK(far->prev.shard_pos == 0);
  }
  SECTION("an empty range or a shard out of range is an error") {
    CHECK_FALSE(read_range(j, range_request{copied_shard, 5, 5}).has_value());
    auto wrong = read_range(j, range_request{9, 1, 5});
    REQUIRE_FALSE(wrong.has_value());
    CHECK(wrong.error().code == persistence::errc::invalid_argument);
  }
}

TEST_CASE("a range page carries the latest snapshot of its ids unless it is ahead of the page",
          "[stream][range]") {
  journal_fixture src;
  auto& j = *src.journal;
  history_writer::append_all(j, {persistence::append_request{copied_shard, "a", 1, {"a1", "a2"}},
                                 persistence::append_request{copied_shard, "b", 1, {"b1"}},
                                 persistence::append_request{copied_shard, "a", 3, {"a3"}},
                                 persistence::append_request{copied_shard, "c", 1, {"c1"}}});
  history_writer::save(j, persistence::snapshot{"a", 2, "a@2"});
  history_writer::save(j, persistence::snapshot{"b", 1, "b@1"});
  history_writer::save(j, persistence::snapshot{"c", 1, "c@1"});
  // Positions: 1 a1, 2 a2 | 3 b1 | 4 a3 | 5 c1. The first page [1, 3) holds a1 a2: a's snapshot
  // at 2 is in reach; b and c are not in the page.
  auto first = read_range(j, range_request{copied_shard, 1, 3});
  REQUIRE(first.has_value());
  REQUIRE(first->snapshots.size() == 1);
  CHECK(first->snapshots[0].persistence_id == "a");
  CHECK(first->snapshots[0].payload == "a@2");
  // A snapshot ahead of the page's events of its id stays out.
  history_writer::save(j, persistence::snapshot{"a", 3, "a@3"});
  auto again = read_range(j, range_request{copied_shard, 1, 3});
  REQUIRE(again.has_value());
  CHECK(again->snapshots.empty());
  // The page with a3 takes it, and b's and c's.
  auto rest = read_range(j, range_request{copied_shard, 3, 6});
  REQUIRE(rest.has_value());
  std::vector<std::string> got;
  for (const auto& s : rest->snapshots)
    got.push_back(s.persistence_id + " " + std::to_string(s.seq) + " " + s.payload);
  CHECK(got == std::vector<std::string>{"b 1 b@1", "a 3 a@3", "c 1 c@1"});
}

// What the catch-up stream relies on from journal::import_async, checked where the journal's own
// tests do not look. A finding about the journal lives here until the journal is fixed.

#include <catch2/catch.hpp>

#include "stream_support.hpp"

using namespace kontor;
using namespace kontor::stream::testing;

// Found while building the catch-up stream: an import that overlapped what the journal holds
// was compared at one position only (the last overlapping one, by id and seq), so two
// histories that differ earlier were taken for one. Now every overlapping position is compared
// (id, seq and write time) and such an import is refused, writing nothing.
TEST_CASE("an import overlapping another history that agrees at its last position is refused",
          "[stream][journal]") {
  journal_fixture here, there;
  // Here: a1 | b1 | a2. There: b1 | a1 | a2 | c1 - position 3 is 'a' seq 2 in both.
  history_writer::append_all(*here.journal,
                             {persistence::append_request{copied_shard, "a", 1, {"a1-here"}},
                              persistence::append_request{copied_shard, "b", 1, {"b1-here"}},
                              persistence::append_request{copied_shard, "a", 2, {"a2-here"}}});
  history_writer::append_all(*there.journal,
                             {persistence::append_request{copied_shard, "b", 1, {"b1-there"}},
                              persistence::append_request{copied_shard, "a", 1, {"a1-there"}},
                              persistence::append_request{copied_shard, "a", 2, {"a2-there"}},
                              persistence::append_request{copied_shard, "c", 1, {"c1-there"}}});
  auto r = here.journal->import(
    persistence::shard_import{copied_shard, shard_log(*there.journal), {}});
  CHECK_FALSE(r.has_value()); // fails today: the import is accepted ...
  CHECK(here.journal->shard_end(copied_shard).value() == 3); // ... and c1 lands after 'here'
}

// A disk that refuses writes: clear 503s, nothing half-applied, and the node recovers.

#include <cstdlib>
#include <filesystem>
#include <map>
#include <vector>

#include "tests/component/node_fixture.hpp"

using namespace kontor::test;

namespace {

/// Sets the node's soft file-size limit (RLIMIT_FSIZE) from outside with prlimit(1); the hard
/// limit stays, so the soft one can be raised again without privileges.
void cap_file_size(pid_t pid, const std::string& limit) {
  auto cmd = "prlimit --pid " + std::to_string(pid) + " --fsize=" + limit + ":";
  REQUIRE(std::system(cmd.c_str()) == 0);
}

} // namespace

TEST_CASE("a full disk gives 503 journal_unavailable, changes nothing, and passes", "[disk]") {
  // Without preallocation, so the cap below is what the journal's commits run into; with it the
  // commits would first use the zeros ahead (the preallocator's own refusal is a unit test).
  running_node node{{"--journal-preallocate-mb", "0"}};
  http_client c{node.port()};
  REQUIRE(c.post("/accounts", open_body("full", 0)).status == 201);
  const std::vector<std::string> others{"DE", "AT", "FR", "IT", "ES", "NL"};
  for (const auto& country : others)
    REQUIRE(c.post("/accounts", open_body("other-" + country, 100, "EUR", country)).status == 201);
  REQUIRE(caught_up(c));

  // Let every file grow by 64 KiB at most: the journal's log soon cannot take more pages.
  auto journal = std::filesystem::path(node.data_dir()) / "journal" / "data.mdb";
  cap_file_size(node.process().pid(),
                std::to_string(std::filesystem::file_size(journal) + 64 * 1024));
  // Alternate lock (2 events, with a long reason so the cap is reached in a few commands) and
  // unlock (1 event) until the journal refuses one.
  std::int64_t version = 1; // AccountOpened
  bool locked = false;
  int refused = 0;
  std::string reason(400, 'x');
  for (int i = 0; i < 400 && refused == 0; ++i) {
    auto r = locked ? c.post("/accounts/full/unlock", "")
                    : c.post("/accounts/full/lock", R"({"reason":")" + reason + "\"}");
    if (r.status == 200) {
      version += locked ? 1 : 2;
      locked = !locked;
      continue;
    }
    INFO(r.body);
    REQUIRE(r.status == 503);
    CHECK(body_json(r).at("error") == "journal_unavailable");
    CHECK(!r.header("retry-after").empty());
    ++refused;
  }
  REQUIRE(refused == 1);

  // Nothing of the refused command is visible: a refused lock left no LimitChanged behind.
  auto acc = body_json(c.get("/accounts/full?consistent=true"));
  CHECK(acc.at("status") == (locked ? "locked" : "active"));
  CHECK(acc.at("version").as_int64() == version);
  auto events = all_events(c, "full");
  CHECK(static_cast<std::int64_t>(events.size()) == version);
  CHECK(c.get("/health").status == 200);

  // Space comes back: the same command goes through, and it survives a restart.
  cap_file_size(node.process().pid(), "unlimited");
  auto retry = locked ? c.post("/accounts/full/unlock", "")
                      : c.post("/accounts/full/lock", R"({"reason":"after"})");
  REQUIRE(retry.status == 200);
  version += locked ? 1 : 2;

  // The read model grows faster than the journal, so its commits hit the cap first and failed
  // while it lasted; it catches up exactly once space is back: every view and the stats equal
  // the accounts' own state.
  REQUIRE(caught_up(c));
  CHECK(node.log().find("[read-model] applying a batch failed") != std::string::npos);
  std::map<std::string, std::pair<std::int64_t, std::int64_t>> expected;
  for (const auto& id : std::vector<std::string>{"full", "other-DE", "other-AT", "other-FR",
                                                 "other-IT", "other-ES", "other-NL"}) {
    auto consistent = body_json(c.get("/accounts/" + id + "?consistent=true"));
    auto projected = c.get("/accounts/" + id);
    REQUIRE(projected.status == 200);
    CHECK(body_json(projected) == consistent);
    auto& e = expected[std::string(consistent.at("country").as_string())];
    e.first += 1;
    e.second += consistent.at("limit").as_int64();
  }
  auto stats = body_json(c.get("/stats/countries")).as_object();
  CHECK(stats.size() == expected.size());
  for (const auto& [country, totals] : expected) {
    INFO(country);
    REQUIRE(stats.contains(country));
    CHECK(stats.at(country).at("totalAccounts").as_int64() == totals.first);
    CHECK(stats.at(country).at("combinedLimit").as_int64() == totals.second);
  }
  CHECK(node.stop() == 0);
  node.start();
  http_client c2{node.port()};
  auto after = body_json(c2.get("/accounts/full?consistent=true"));
  CHECK(after.at("status") == (locked ? "active" : "locked"));
  CHECK(after.at("version").as_int64() == version);
}

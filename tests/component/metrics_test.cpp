// GET /metrics serves every series the README lists, each with its Prometheus type.

#include <sstream>

#include "tests/component/node_fixture.hpp"

using namespace kontor::test;

namespace {

/// One series the README promises.
struct series {
  std::string name;
  std::string type;                ///< counter, gauge or histogram
  std::vector<std::string> labels; ///< labels every sample carries
};

/// The series README.md lists under GET /metrics: the one list this test checks. Not listed:
/// kontor_projection_lag_ms (being renamed to base units).
const std::vector<series> readme_series = {
  {"kontor_http_requests_total", "counter", {"route", "status"}},
  {"kontor_events_appended_total", "counter", {}},
  {"kontor_journal_commits_total", "counter", {}},
  {"kontor_journal_commit_seconds", "histogram", {}},
  {"kontor_projection_lag_events", "gauge", {}},
  {"kontor_projection_lag_seconds", "histogram", {}},
  {"kontor_projection_offset", "gauge", {}},
  {"kontor_live_entities", "gauge", {}},
  {"kontor_entity_recoveries", "gauge", {}},
  {"kontor_journal_failures", "gauge", {}},
  {"kontor_queued_commands", "gauge", {}},
  {"kontor_shard_queue_depth_max", "gauge", {}},
  {"kontor_commands_refused_total", "counter", {"queue"}},
  {"kontor_policy_lag_events", "gauge", {"policy"}},
  {"kontor_policy_deliveries_total", "counter", {"policy", "outcome"}},
  {"kontor_policy_retries_total", "counter", {"policy"}},
  {"kontor_policy_dead_letters", "gauge", {"policy"}},
};

/// The sample lines of `name` (exactly that metric name, any labels).
std::vector<std::string> samples(const std::string& text, const std::string& name) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);)
    if (line.rfind(name, 0) == 0 && line.size() > name.size()
        && (line[name.size()] == ' ' || line[name.size()] == '{'))
      out.push_back(line);
  return out;
}

/// The value of the first sample of `name`.
double value_of(const std::string& text, const std::string& name) {
  auto s = samples(text, name);
  REQUIRE(!s.empty());
  return std::stod(s.front().substr(s.front().rfind(' ') + 1));
}

} // namespace

TEST_CASE("/metrics serves every series of the README with its type", "[metrics]") {
  running_node node;
  http_client c{node.port()};
  REQUIRE(c.post("/accounts", open_body("m", 10)).status == 201);
  REQUIRE(c.post("/accounts/m/transactions", tx_body("m1", "deposit", 5)).status == 201);
  REQUIRE(c.get("/accounts/m?consistent=true").status == 200);

  auto r = c.get("/metrics");
  REQUIRE(r.status == 200);
  CHECK(r.header("content-type").rfind("text/plain", 0) == 0);
  const auto& text = r.body;
  for (const auto& s : readme_series) {
    INFO(s.name << "\n" << text);
    CHECK(text.find("\n# TYPE " + s.name + " " + s.type + "\n") != std::string::npos);
    if (s.type == "histogram") {
      CHECK(samples(text, s.name + "_bucket").size() >= 2);
      CHECK(text.find(s.name + "_bucket{le=\"+Inf\"}") != std::string::npos);
      CHECK(samples(text, s.name + "_sum").size() == 1);
      CHECK(samples(text, s.name + "_count").size() == 1);
    } else {
      auto lines = samples(text, s.name);
      REQUIRE(!lines.empty());
      for (const auto& line : lines)
        for (const auto& label : s.labels)
          CHECK(line.find(label + "=\"") != std::string::npos);
    }
  }
  // The counters count what happened: two commands, each one event.
  CHECK(value_of(text, "kontor_events_appended_total") >= 2);
  CHECK(value_of(text, "kontor_journal_commits_total") >= 2);
  CHECK(value_of(text, "kontor_journal_commit_seconds_count") >= 2);
  CHECK(text.find("kontor_http_requests_total{route=\"POST /accounts\",status=\"201\"} 1")
        != std::string::npos);
}

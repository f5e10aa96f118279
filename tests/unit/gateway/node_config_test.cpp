// Settings: the defaults file equals the built-in defaults; flags beat env beat file.

#include <catch2/catch.hpp>

#include <fstream>

#include "gateway/node_config.hpp"
#include "tests/support/temp_dir.hpp"

using kontor::gateway::node_config;
using kontor::gateway::parse_node_config;

namespace {

const std::string defaults_file = std::string(KONTOR_SOURCE_DIR) + "/config/kontor.conf";

kontor::expected<node_config, kontor::gateway::config_exit>
parse(std::vector<std::string> args, std::vector<std::string> env = {}) {
  std::vector<const char*> argv{"kontor-node"};
  for (auto& a : args)
    argv.push_back(a.c_str());
  std::vector<const char*> envp;
  for (auto& e : env)
    envp.push_back(e.c_str());
  envp.push_back(nullptr);
  return parse_node_config(static_cast<int>(argv.size()), argv.data(), envp.data());
}

bool same(const node_config& a, const node_config& b) {
  return a.node_name == b.node_name && a.data_dir == b.data_dir && a.http_address == b.http_address
         && a.http_port == b.http_port && a.http_threads == b.http_threads
         && a.http_body_limit == b.http_body_limit && a.http_read_timeout == b.http_read_timeout
         && a.command_timeout == b.command_timeout && a.number_of_shards == b.number_of_shards
         && a.snapshot_every == b.snapshot_every && a.passivate_after == b.passivate_after
         && a.journal_initial_map_mb == b.journal_initial_map_mb
         && a.journal_max_batch == b.journal_max_batch && a.projection_batch == b.projection_batch && a.read_side == b.read_side
         && a.projection_idle_min == b.projection_idle_min
         && a.projection_idle_max == b.projection_idle_max
         && a.projection_min_interval == b.projection_min_interval
         && a.journal_index_interval == b.journal_index_interval && a.scheduler_threads == b.scheduler_threads
         && a.scheduler_policy == b.scheduler_policy && a.max_limit == b.max_limit
         && a.max_amount == b.max_amount && a.tx_window == b.tx_window
         && a.deposit_event_version == b.deposit_event_version
         && a.cluster_port == b.cluster_port && a.seeds == b.seeds;
}

} // namespace

TEST_CASE("config/kontor.conf holds exactly the built-in defaults", "[config]") {
  auto from_file = parse({"--config", defaults_file});
  REQUIRE(from_file);
  CHECK(same(*from_file, node_config{}));
  auto built_in = parse({});
  REQUIRE(built_in);
  CHECK(same(*built_in, node_config{}));
}

TEST_CASE("flags beat KONTOR_ variables, which beat the file", "[config]") {
  kontor::test::temp_dir dir;
  auto file = (dir.path() / "k.conf").string();
  std::ofstream(file) << "http-port = 1111\nnode-name = file\npassivate-after = 3m\n";
  auto c = parse({"--config", file, "--http-port", "3333"},
                 {"KONTOR_HTTP_PORT=2222", "KONTOR_NODE_NAME=env", "KONTOR_SERVICE_HOST=10.0.0.1"});
  REQUIRE(c);
  CHECK(c->http_port == 3333);
  CHECK(c->node_name == "env");
  CHECK(c->passivate_after == std::chrono::minutes(3));
}

TEST_CASE("bad values are errors naming the setting", "[config]") {
  for (auto args : std::vector<std::vector<std::string>>{{"--http-port", "-1"},
                                                          {"--http-port", "1e3"},
                                                          {"--command-timeout", "5"},
                                                          {"--command-timeout", "5 s"},
                                                          {"--scheduler-policy", "fast"},
                                                          {"--log-format", "xml"},
                                                          {"--max-limit", "-5"},
                                                          {"--seeds", "a:b"},
                                                          {"--data-dir", ""}}) {
    auto c = parse(args);
    INFO(args[0] << " " << args[1]);
    REQUIRE_FALSE(c);
    CHECK(c.error().code == 2);
    CHECK(c.error().text.find(args[0].substr(2)) != std::string::npos);
  }
  auto help = parse({"--help"});
  REQUIRE_FALSE(help);
  CHECK(help.error().code == 0);
  CHECK(help.error().text.find("--scheduler-policy") != std::string::npos);
}

// The kontor-node binary: --help, bad settings and bad data directories are clear errors.

#include <fstream>

#include "tests/component/node_fixture.hpp"

using namespace kontor::test;

namespace {

/// Setting names in config/kontor.conf ("name = value" lines).
std::vector<std::string> settings_in_defaults_file() {
  std::ifstream in(std::string(KONTOR_SOURCE_DIR) + "/config/kontor.conf");
  REQUIRE(in);
  std::vector<std::string> out;
  for (std::string s; std::getline(in, s);) {
    auto eq = s.find(" =");
    if (!s.empty() && s[0] != '#' && eq != std::string::npos)
      out.push_back(s.substr(0, eq));
  }
  return out;
}

} // namespace

TEST_CASE("kontor-node --help lists every setting of the defaults file", "[config]") {
  temp_dir dir;
  auto res = run_node({"--help"}, (dir.path() / "out.log").string());
  REQUIRE(res.exit_code == 0);
  auto names = settings_in_defaults_file();
  REQUIRE(names.size() >= 19);
  for (const auto& name : names) {
    INFO(name);
    CHECK(res.output.find("--" + name) != std::string::npos);
  }
  CHECK(res.output.find("--config") != std::string::npos);
}

TEST_CASE("bad settings stop the node with a message naming them", "[config]") {
  temp_dir dir;
  auto log = (dir.path() / "out.log").string();
  auto data = (dir.path() / "data").string();
  struct bad_case {
    std::vector<std::string> args;
    std::vector<std::string> env;
    std::string mention;
  };
  std::vector<bad_case> cases = {
    {{"--http-port", "80x"}, {}, "http-port"},
    {{"--http-port", "70000"}, {}, "http-port"},
    {{"--http-threads", "-1"}, {}, "http-threads"},
    {{"--passivate-after", "5"}, {}, "passivate-after"},
    {{"--number-of-shards", "0"}, {}, "number-of-shards"},
    {{"--no-such-flag"}, {}, "no-such-flag"},
    {{}, {"KONTOR_HTTP_PORT=eighty"}, "http-port"},
    {{"--seeds", "localhost"}, {}, "seeds"},
    {{"--cluster-port", "70000"}, {}, "cluster-port"},
    {{"--stable-after", "10"}, {}, "stable-after"},
    {{"--config", "/nonexistent/kontor.conf"}, {}, "config"},
  };
  for (auto& bc : cases) {
    auto args = bc.args;
    args.insert(args.end(), {"--data-dir", data});
    auto res = run_node(args, log, std::chrono::seconds(20), bc.env);
    INFO(res.output);
    CHECK(res.exit_code == 2);
    CHECK(res.output.find(bc.mention) != std::string::npos);
  }
}

TEST_CASE("a bad value in the config file stops the node with exit 2, naming the setting",
          "[config]") {
  temp_dir dir;
  auto data = (dir.path() / "data").string();
  struct bad_case {
    std::string line;
    std::string mention;
  };
  const std::vector<bad_case> cases = {
    {"http-port = eighty", "http-port"},
    {"command-timeout = 5 seconds", "command-timeout"},
    {"read-side = maybe", "read-side"},
    {"tx-window = 0", "tx-window"},
    {"deposit-event-version = 3", "deposit-event-version"},
  };
  for (const auto& bc : cases) {
    // A valid file but for this one line.
    auto file = dir.path() / "kontor.conf";
    {
      std::ofstream out(file, std::ios::trunc);
      out << "# test\nnode-name = from-file\n" << bc.line << "\nhttp-address = 127.0.0.1\n";
    }
    auto res = run_node({"--config", file.string(), "--data-dir", data}, (dir.path() / "out.log").string());
    INFO(bc.line << "\n" << res.output);
    CHECK(res.exit_code == 2);
    CHECK(res.output.find(bc.mention) != std::string::npos);
    CHECK(!std::filesystem::exists(data)); // stopped before touching the data directory
  }
}

TEST_CASE("the defaults file starts a node, and flags win over the environment", "[config]") {
  temp_dir dir;
  node_process node{(dir.path() / "data").string(), (dir.path() / "node.log").string(),
                    {"--config", std::string(KONTOR_SOURCE_DIR) + "/config/kontor.conf",
                     "--node-name", "from-flag"}};
  REQUIRE(node.wait_ready());
  http_client c{node.port()};
  auto health = c.get("/health");
  CHECK(body_json(health).at("node") == "from-flag");
  CHECK(node.stop() == 0);
}

TEST_CASE("a corrupt or foreign data directory is a clear startup error", "[config]") {
  temp_dir dir;
  auto data = dir.path() / "data";
  std::filesystem::create_directories(data / "journal");
  {
    std::ofstream garbage(data / "journal" / "data.mdb", std::ios::binary);
    for (int i = 0; i < 100000; ++i)
      garbage.put(static_cast<char>(i * 7919 % 251));
  }
  auto res = run_node({"--data-dir", data.string(), "--http-port", "0"}, (dir.path() / "out.log").string());
  INFO(res.output);
  CHECK(res.exit_code == 1);
  CHECK(res.output.find(data.string()) != std::string::npos);

  // A data dir created with another shard count is refused, not silently re-sharded.
  auto other = (dir.path() / "other").string();
  {
    node_process first{other, (dir.path() / "first.log").string(), {"--number-of-shards", "8"}};
    REQUIRE(first.wait_ready());
    CHECK(first.stop() == 0);
  }
  auto res2 = run_node({"--data-dir", other, "--http-port", "0", "--number-of-shards", "16"},
                       (dir.path() / "out2.log").string());
  INFO(res2.output);
  CHECK(res2.exit_code == 1);
  CHECK(res2.output.find("8") != std::string::npos);
  CHECK(res2.output.find("16") != std::string::npos);
}

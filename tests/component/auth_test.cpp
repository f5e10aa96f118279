// Bearer tokens on a real node: 401 without a valid token, 403 with one whose scope is too small,
// the probes open, a bad tokens file refused at start, and a warning when there are none.

#include <fstream>

#include "tests/component/node_fixture.hpp"

using namespace kontor::test;

namespace {

std::string bearer(const std::string& token) {
  return "Authorization: Bearer " + token + "\r\n";
}

const std::string json_type = "Content-Type: application/json\r\n";

} // namespace

TEST_CASE("with API tokens: no token 401, too small a scope 403, the right scope works, probes "
          "stay open",
          "[auth]") {
  temp_dir dir{"kontor-auth"};
  const auto file = (dir.path() / "tokens").string();
  std::ofstream(file) << "reader-token-0123456789 read\n"
                         "writer-token-0123456789 write\n"
                         "admin-token-01234567890 admin\n";
  running_node node({"--api-tokens-file", file});
  http_client c{node.port()};

  // No token, or a wrong one: 401 with a JSON error and the scheme to use.
  auto none = c.post("/accounts", open_body("a1", 0));
  CHECK(none.status == 401);
  CHECK(body_json(none).at("error") == "unauthorized");
  CHECK(none.header("www-authenticate") == "Bearer");
  CHECK(c.request("GET", "/accounts/a1", "", bearer("reader-token-012345678X")).status == 401);
  CHECK(c.request("GET", "/cluster/members").status == 401);

  // Too small a scope: 403, and nothing is written.
  auto read_write = c.request("POST", "/accounts", open_body("a1", 0), json_type + bearer("reader-token-0123456789"));
  CHECK(read_write.status == 403);
  CHECK(body_json(read_write).at("error") == "forbidden");
  CHECK(c.request("GET", "/accounts/a1?consistent=true", "", bearer("admin-token-01234567890")).status == 404);

  // The right scope works; admin covers everything.
  CHECK(c.request("POST", "/accounts", open_body("a1", 0), json_type + bearer("writer-token-0123456789")).status
        == 201);
  CHECK(c.request("GET", "/accounts/a1?consistent=true", "", bearer("reader-token-0123456789")).status == 200);
  CHECK(c.request("POST", "/accounts/a1/transactions", tx_body("t1", "deposit", 5),
                  json_type + bearer("admin-token-01234567890"))
          .status
        == 201);
  CHECK(c.request("GET", "/cluster/members", "", bearer("reader-token-0123456789")).status == 200);

  // Probes and the scraper need no token.
  CHECK(c.get("/health").status == 200);
  CHECK(c.get("/ready").status == 200);
  CHECK(c.get("/metrics").status == 200);
  CHECK(node.log().find("3 API tokens; open without one: /health, /ready, /metrics") != std::string::npos);
}

TEST_CASE("no API tokens: the API is open and the node warns, and a bad tokens file stops the start",
          "[auth]") {
  {
    running_node node;
    http_client c{node.port()};
    CHECK(c.post("/accounts", open_body("open", 0)).status == 201);
    CHECK(node.log().find("WARN [node] no API tokens (api-tokens-file): the HTTP API is open")
          != std::string::npos);
  }
  temp_dir dir{"kontor-auth"};
  const auto file = (dir.path() / "tokens").string();
  std::ofstream(file) << "reader-token-0123456789 superuser\n";
  auto res = run_node({"--api-tokens-file", file, "--data-dir", (dir.path() / "data").string(),
                       "--http-port", "0"},
                      (dir.path() / "out.log").string());
  INFO(res.output);
  CHECK(res.exit_code == 2);
  CHECK(res.output.find(file + ":1: unknown scope 'superuser'") != std::string::npos);
}

// Bad input gets a clear 4xx, changes nothing, and the node keeps answering.

#include "tests/component/node_fixture.hpp"

using namespace kontor::test;

namespace {

/// The node still works: health answers and a real command goes through.
void require_node_answers(http_client& c, const std::string& id) {
  REQUIRE(c.get("/health").status == 200);
  auto r = c.post("/accounts/" + id + "/transactions",
                  tx_body("alive-" + std::to_string(std::rand()), "deposit", 1));
  REQUIRE(r.status == 201);
}

} // namespace

TEST_CASE("malformed JSON and wrong types are 400 and append nothing", "[bad-input]") {
  running_node node;
  http_client c{node.port()};
  REQUIRE(c.post("/accounts", open_body("x", 100)).status == 201);

  struct bad_case {
    std::string target;
    std::string body;
    std::string error;
    std::string field;
  };
  std::vector<bad_case> cases = {
    {"/accounts/x/limit", "{\"limit\":", "malformed_json", ""},
    {"/accounts/x/limit", "not json", "malformed_json", ""},
    {"/accounts/x/limit", "[1,2]", "malformed_json", ""},
    {"/accounts/x/limit", "", "malformed_json", ""},
    {"/accounts/x/limit", R"({"limit":"2000"})", "invalid_field", "limit"},
    {"/accounts/x/limit", R"({"limit":20.5})", "invalid_field", "limit"},
    {"/accounts/x/limit", R"({"limit":null})", "invalid_field", "limit"},
    {"/accounts/x/limit", R"({"limit":1e30})", "invalid_field", "limit"},
    {"/accounts/x/limit", R"({"limit":18446744073709551615})", "invalid_field", "limit"},
    {"/accounts/x/limit", R"({"limit":true})", "invalid_field", "limit"},
    {"/accounts/x/limit", R"({})", "invalid_field", "limit"},
    {"/accounts/x/transactions", R"({"txId":1,"kind":"deposit","amount":5,"currency":"EUR"})",
     "invalid_field", "txId"},
    {"/accounts/x/transactions", R"({"txId":"a","kind":"deposit","amount":"5","currency":"EUR"})",
     "invalid_field", "amount"},
    {"/accounts/x/transactions", R"({"txId":"a","kind":"deposit","amount":5,"currency":["EUR"]})",
     "invalid_field", "currency"},
    {"/accounts/x/phones", R"({"number":12345678})", "invalid_field", "number"},
    // A key twice is ambiguous (JSON does not say which one counts), at any depth.
    {"/accounts/x/limit", R"({"limit":5,"limit":7})", "malformed_json", ""},
    {"/accounts/x/transactions",
     R"({"txId":"d","kind":"deposit","amount":1,"amount":7,"currency":"EUR"})", "malformed_json", ""},
    {"/accounts/x/address",
     R"({"street":"s","city":"c","zip":"1","country":"AT","extra":{"k":1,"k":2}})",
     "malformed_json", ""},
  };
  for (const auto& bc : cases) {
    INFO(bc.target << " " << bc.body);
    auto method = bc.target.find("limit") != std::string::npos
                      || bc.target.find("address") != std::string::npos
                    ? "PUT"
                    : "POST";
    auto r = c.request(method, bc.target, bc.body, "Content-Type: application/json\r\n");
    CHECK(r.status == 400);
    auto err = body_json(r).as_object();
    CHECK(err.at("error").as_string() == bc.error);
    CHECK(!err.at("message").as_string().empty());
    if (!bc.field.empty())
      CHECK(err.at("field").as_string() == bc.field);
  }
  auto acc = body_json(c.get("/accounts/x?consistent=true"));
  CHECK(acc.at("version") == 1);
  CHECK(acc.at("limit") == 100);
  require_node_answers(c, "x");
}

TEST_CASE("unknown routes are 404, wrong methods 405 with Allow", "[bad-input]") {
  running_node node;
  http_client c{node.port()};
  REQUIRE(c.post("/accounts", open_body("y", 100)).status == 201);
  for (auto target : {"/", "/nope", "/accounts/y/nothing", "/accounts/y/limit/extra", "/stats/x/y"}) {
    INFO(target);
    auto r = c.get(target);
    CHECK(r.status == 404);
    CHECK(body_json(r).at("error") == "not_found");
  }
  auto r = c.request("DELETE", "/accounts/y", "");
  CHECK(r.status == 405);
  CHECK(r.header("allow") == "GET, HEAD");
  CHECK(c.get("/accounts/y/limit").status == 405);
  CHECK(c.put("/accounts/y/lock", "{}").status == 405);
  CHECK(c.get("/accounts").status == 405);
  CHECK(c.request("BREW", "/accounts/y", "").status == 405);
  CHECK(c.request("POST", "/accounts/y/limit", R"({"limit":1})", "Content-Type: text/plain\r\n").status
        == 405);
  // Bodies are JSON whatever the Content-Type says (curl -d sends form encoding).
  CHECK(c.request("PUT", "/accounts/y/limit", R"({"limit":1})", "Content-Type: text/plain\r\n").status
        == 200);
  require_node_answers(c, "y");
}

TEST_CASE("a 100 KiB body is 413, malformed HTTP is 400, and the node keeps answering",
          "[bad-input]") {
  running_node node;
  {
    http_client c{node.port()};
    REQUIRE(c.post("/accounts", open_body("z", 100)).status == 201);
  }
  {
    http_client c{node.port()};
    std::string big = R"({"limit":1,"pad":")" + std::string(100 * 1024, 'a') + "\"}";
    auto r = c.put("/accounts/z/limit", big);
    CHECK(r.status == 413);
    CHECK(body_json(r).at("error") == "body_too_large");
  }
  {
    http_client c{node.port()};
    auto r = c.raw("THIS IS NOT HTTP\r\n\r\n");
    CHECK(r.status == 400);
  }
  {
    http_client c{node.port()};
    auto r = c.raw("GET / HTTP/1.1\r\nContent-Length: banana\r\n\r\n");
    CHECK(r.status == 400);
  }
  http_client c{node.port()};
  auto acc = body_json(c.get("/accounts/z?consistent=true"));
  CHECK(acc.at("limit") == 100);
  require_node_answers(c, "z");
}

TEST_CASE("account ids . and .. are refused, in bodies and in paths", "[bad-input]") {
  running_node node;
  http_client c{node.port()};
  for (auto id : {".", ".."}) {
    INFO(id);
    auto r = c.post("/accounts", open_body(id, 100));
    CHECK(r.status == 400);
    CHECK(body_json(r).at("error") == "invalid_field");
    CHECK(body_json(r).at("field") == "id");
  }
  for (auto target : {"/accounts/.", "/accounts/..?consistent=true", "/accounts/%2E%2E",
                      "/accounts/./events", "/accounts/%2e/events"}) {
    INFO(target);
    auto r = c.get(target);
    CHECK(r.status == 400);
    CHECK(body_json(r).at("field") == "id");
  }
  CHECK(c.put("/accounts/../limit", R"({"limit":1})").status == 400);
  CHECK(c.post("/accounts/./transactions", tx_body("t", "deposit", 1)).status == 400);
  // Dots inside an id are fine.
  CHECK(c.post("/accounts", open_body("...", 100)).status == 201);
  CHECK(c.get("/accounts/...?consistent=true").status == 200);
}

TEST_CASE("a malformed percent-encoding in the target is 400 and changes nothing", "[bad-input]") {
  running_node node;
  http_client c{node.port()};
  REQUIRE(c.post("/accounts", open_body("pe", 100)).status == 201);
  for (auto target : {"/accounts/pe?asOf=%zz", "/accounts/pe?asOf=2099-01-01T00:00:00Z%",
                      "/accounts/pe?consistent=true&x=%2", "/accounts/p%e?consistent=true",
                      "/accounts/pe%/events", "/accounts/pe?%G1=1"}) {
    INFO(target);
    auto r = c.get(target);
    CHECK(r.status == 400);
    CHECK(body_json(r).at("error") == "bad_request");
  }
  CHECK(c.put("/accounts/pe/limit?x=%", R"({"limit":1})").status == 400);
  // An encoded slash stays inside its segment, and no id has one.
  auto slash = c.get("/accounts/a%2Fb?consistent=true");
  CHECK(slash.status == 400);
  CHECK(body_json(slash).at("field") == "id");
  auto acc = body_json(c.get("/accounts/pe?consistent=true"));
  CHECK(acc.at("version") == 1);
  CHECK(acc.at("limit") == 100);
  require_node_answers(c, "pe");
}

// HTTP/1.1 itself, on raw TCP connections: pipelining and closing, HEAD, Expect: 100-continue,
// Host. What a client library would hide, the bytes show.

#include <cerrno>
#include <cstring>

#include "tests/component/node_fixture.hpp"
#include "tests/support/wait.hpp"

using namespace kontor::test;
using namespace std::chrono_literals;

namespace {

std::string deposit_request(const std::string& id, const std::string& tx_id, std::int64_t amount,
                            const std::string& padding = {}) {
  auto body = tx_body(tx_id, "deposit", amount);
  if (!padding.empty())
    body.insert(body.size() - 1, R"(,"pad":")" + padding + "\"");
  return "POST /accounts/" + id + "/transactions HTTP/1.1\r\nHost: kontor\r\nContent-Type: "
         "application/json\r\nContent-Length: "
         + std::to_string(body.size()) + "\r\n\r\n" + body;
}

std::int64_t balance_of(http_client& c, const std::string& id) {
  auto r = c.get("/accounts/" + id + "?consistent=true");
  REQUIRE(r.status == 200);
  return body_json(r).at("balance").as_int64();
}

} // namespace

TEST_CASE("a 400 in a pipeline loses none of the answers written before it", "[http]") {
  running_node node;
  http_client c{node.port()};
  REQUIRE(c.post("/accounts", open_body("p", 0)).status == 201);

  // One write: 20 deposits, a broken request, two more deposits, large enough that the server
  // has unread input when it gives up on the connection. The client's small receive buffer
  // keeps answers waiting in the server's send queue, where a reset would discard them.
  std::string pipeline;
  for (int i = 0; i < 20; ++i)
    pipeline += deposit_request("p", "pipe-" + std::to_string(i), 5);
  pipeline += "BROKEN\r\n\r\n";
  for (int i = 20; i < 22; ++i)
    pipeline += deposit_request("p", "pipe-" + std::to_string(i), 1000, std::string(50000, 'x'));
  raw_connection conn{node.port(), 2048};
  REQUIRE(conn.connected());
  REQUIRE(conn.send_all(pipeline));

  // The client reads only once all 20 deposits are committed (and the server has moved on to
  // the broken request).
  REQUIRE(wait_until([&] { return balance_of(c, "p") == 100; }));
  auto end = conn.read_until_closed(20s);
  INFO("read error: " << std::strerror(end.error) << ", received " << conn.received().size()
                      << " bytes");
  CHECK(end.error == 0);
  CHECK(end.eof);
  auto answers = take_responses(conn.received());
  REQUIRE(answers.size() == 21);
  for (int i = 0; i < 20; ++i) {
    INFO("answer " << i);
    CHECK(answers[i].status == 201);
    CHECK(body_json(answers[i]).at("balance") == 5 * (i + 1));
  }
  CHECK(answers[20].status == 400);
  CHECK(answers[20].header("connection") == "close");
  CHECK(conn.received().empty());
  // The two deposits after the broken request were not taken.
  CHECK(balance_of(c, "p") == 100);
}

TEST_CASE("HEAD answers like GET without a body, and the connection stays in step", "[http]") {
  running_node node;
  http_client c{node.port()};
  REQUIRE(c.post("/accounts", open_body("hd", 0)).status == 201);
  auto get = c.get("/accounts/hd?consistent=true");
  REQUIRE(get.status == 200);

  raw_connection conn{node.port()};
  REQUIRE(conn.connected());
  REQUIRE(conn.send_all("HEAD /accounts/hd?consistent=true HTTP/1.1\r\nHost: kontor\r\n\r\n"
                        "GET /accounts/hd?consistent=true HTTP/1.1\r\nHost: kontor\r\n\r\n"
                        "HEAD /accounts/nobody?consistent=true HTTP/1.1\r\nHost: kontor\r\n\r\n"
                        "HEAD /accounts/hd/lock HTTP/1.1\r\nHost: kontor\r\n\r\n"
                        "GET /health HTTP/1.1\r\nHost: kontor\r\nConnection: close\r\n\r\n"));
  auto end = conn.read_until_closed(20s);
  CHECK(end.eof);
  auto answers = take_responses(conn.received(), {true, false, true, true, false});
  CHECK(conn.received().empty()); // nothing left over: no body after a HEAD answer
  REQUIRE(answers.size() == 5);
  CHECK(answers[0].status == 200);
  CHECK(answers[0].header("content-length") == std::to_string(get.body.size()));
  CHECK(answers[0].header("etag") == get.header("etag"));
  CHECK(answers[1].status == 200);
  CHECK(answers[1].body == get.body);
  CHECK(answers[2].status == 404);
  CHECK(answers[3].status == 405);
  CHECK(answers[3].header("allow") == "POST");
  CHECK(answers[4].status == 200);
  CHECK(body_json(answers[4]).at("status") == "ok");
  // GET routes say that they take HEAD too.
  CHECK(c.request("DELETE", "/health").header("allow") == "GET, HEAD");
}

TEST_CASE("Expect: 100-continue is answered before the body is sent", "[http]") {
  running_node node;
  http_client c{node.port()};
  REQUIRE(c.post("/accounts", open_body("ex", 0)).status == 201);
  auto body = tx_body("ex-1", "deposit", 42);
  {
    raw_connection conn{node.port()};
    REQUIRE(conn.connected());
    REQUIRE(conn.send_all("POST /accounts/ex/transactions HTTP/1.1\r\nHost: kontor\r\n"
                          "Expect: 100-continue\r\nContent-Length: "
                          + std::to_string(body.size()) + "\r\n\r\n"));
    // The client waits for the interim answer before it sends the body.
    REQUIRE(conn.read_until("\r\n\r\n", 10s));
    CHECK(conn.received() == "HTTP/1.1 100 Continue\r\n\r\n");
    conn.received().clear();
    REQUIRE(conn.send_all(body));
    REQUIRE(conn.read_until("\"balance\":42", 10s));
    auto answers = take_responses(conn.received());
    REQUIRE(answers.size() == 1);
    CHECK(answers[0].status == 201);
  }
  {
    // Over the body limit: 413 at once, without a 100 Continue and without waiting for a body.
    raw_connection conn{node.port()};
    REQUIRE(conn.connected());
    REQUIRE(conn.send_all("POST /accounts/ex/transactions HTTP/1.1\r\nHost: kontor\r\n"
                          "Expect: 100-continue\r\nContent-Length: 1000000\r\n\r\n"));
    REQUIRE(conn.read_until("body_too_large", 10s));
    auto answers = take_responses(conn.received());
    REQUIRE(answers.size() == 1);
    CHECK(answers[0].status == 413);
  }
  CHECK(balance_of(c, "ex") == 42);
}

TEST_CASE("an HTTP/1.1 request needs exactly one Host header", "[http]") {
  running_node node;
  http_client c{node.port()};
  REQUIRE(c.post("/accounts", open_body("hs", 0)).status == 201);
  auto body = tx_body("hs-1", "deposit", 7);
  auto deposit = [&](const std::string& host_lines, const std::string& version = "1.1") {
    return "POST /accounts/hs/transactions HTTP/" + version + "\r\n" + host_lines
           + "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
  };
  struct host_case {
    std::string request;
    int status;
  };
  std::vector<host_case> cases = {
    {deposit(""), 400},
    {deposit("Host: a\r\nHost: b\r\n"), 400},
    {deposit("Host: a\r\nHost: a\r\n"), 400},
    {deposit("Host: a\r\nhost: a\r\n"), 400},
    {deposit("Host: a\r\nHost: b\r\n", "1.0"), 400},
    {"GET /health HTTP/1.1\r\n\r\n", 400},
    {"GET /health HTTP/1.0\r\n\r\n", 200}, // HTTP/1.0 has no Host requirement
    {"GET /health HTTP/1.1\r\nHost: kontor\r\n\r\n", 200},
  };
  for (const auto& hc : cases) {
    INFO(hc.request);
    raw_connection conn{node.port()};
    REQUIRE(conn.connected());
    REQUIRE(conn.send_all(hc.request));
    REQUIRE(conn.read_until("\r\n\r\n", 10s));
    conn.read_until("}", 10s);
    auto answers = take_responses(conn.received());
    REQUIRE(answers.size() == 1);
    CHECK(answers[0].status == hc.status);
    if (hc.status == 400)
      CHECK(body_json(answers[0]).at("error") == "bad_request");
  }
  CHECK(balance_of(c, "hs") == 0);
}

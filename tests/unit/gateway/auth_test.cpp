#include <catch2/catch.hpp>

#include "gateway/auth.hpp"

using namespace kontor::gateway;
using verdict = authorizer::verdict;

namespace {

const std::vector<std::string> probes{"/health", "/ready", "/metrics"};

authorizer tokens() {
  auto a = authorizer::parse("# tokens\n"
                             "reader-token-0123456789 read\n"
                             "\n"
                             "  writer-token-0123456789\twrite  \r\n"
                             "admin-token-01234567890 admin\n",
                             "tokens", probes);
  REQUIRE(a);
  return std::move(*a);
}

} // namespace

TEST_CASE("routes need read for GET and HEAD, write for commands, admin for /cluster writes and "
          "all of /admin",
          "[auth]") {
  CHECK(required_scope("GET", "/accounts/1") == scope::read);
  CHECK(required_scope("HEAD", "/cluster/members") == scope::read);
  CHECK(required_scope("POST", "/accounts") == scope::write);
  CHECK(required_scope("PUT", "/accounts/1/limit") == scope::write);
  CHECK(required_scope("POST", "/cluster/leave") == scope::admin);
  CHECK(required_scope("POST", "/admin/read-models/accounts/rebuild") == scope::admin);
  CHECK(required_scope("POST", "/clusterx") == scope::write);
  CHECK(required_scope("GET", "/admin/policies/thank-you/dead-letters") == scope::admin);
}

TEST_CASE("a token allows its scope and the scopes below it, nothing else", "[auth]") {
  auto a = tokens();
  REQUIRE(a.enabled());
  CHECK(a.size() == 3);
  const auto read = "Bearer reader-token-0123456789";
  const auto write = "Bearer writer-token-0123456789";
  const auto admin = "Bearer admin-token-01234567890";
  CHECK(a.check("GET", "/accounts/1", read) == verdict::allowed);
  CHECK(a.check("POST", "/accounts", read) == verdict::forbidden);
  CHECK(a.check("GET", "/accounts/1", write) == verdict::allowed);
  CHECK(a.check("POST", "/accounts", write) == verdict::allowed);
  CHECK(a.check("POST", "/cluster/leave", write) == verdict::forbidden);
  CHECK(a.check("POST", "/cluster/leave", admin) == verdict::allowed);
  CHECK(a.check("POST", "/accounts", admin) == verdict::allowed);
}

TEST_CASE("no token, another scheme, a near miss or a prefix of a token is unauthorized", "[auth]") {
  auto a = tokens();
  CHECK(a.check("GET", "/accounts/1", "") == verdict::unauthorized);
  CHECK(a.check("GET", "/accounts/1", "Basic cmVhZGVy") == verdict::unauthorized);
  CHECK(a.check("GET", "/accounts/1", "Bearer ") == verdict::unauthorized);
  CHECK(a.check("GET", "/accounts/1", "bearer reader-token-0123456789") == verdict::unauthorized);
  CHECK(a.check("GET", "/accounts/1", "Bearer reader-token-012345678X") == verdict::unauthorized);
  CHECK(a.check("GET", "/accounts/1", "Bearer reader-token-012345678") == verdict::unauthorized);
  CHECK(a.check("GET", "/accounts/1", "Bearer reader-token-01234567890") == verdict::unauthorized);
}

TEST_CASE("open routes need no token for GET only, and with no tokens at all everything is open", "[auth]") {
  auto a = tokens();
  CHECK(a.check("GET", "/health", "") == verdict::allowed);
  CHECK(a.check("HEAD", "/ready", "") == verdict::allowed);
  CHECK(a.check("GET", "/metrics", "") == verdict::allowed);
  CHECK(a.check("POST", "/health", "") == verdict::unauthorized);
  CHECK(a.check("GET", "/cluster/members", "") == verdict::unauthorized);
  authorizer open;
  CHECK_FALSE(open.enabled());
  CHECK(open.check("POST", "/cluster/leave", "") == verdict::allowed);
}

TEST_CASE("a bad tokens file is an error naming its line", "[auth]") {
  auto bad = [](const std::string& text) {
    auto a = authorizer::parse(text, "tokens.txt", probes);
    REQUIRE_FALSE(a);
    return a.error();
  };
  CHECK(bad("reader-token-0123456789 read\nwriter-token-0123456789 owner\n")
        == "tokens.txt:2: unknown scope 'owner' (read, write or admin)");
  CHECK(bad("short read\n").find("tokens.txt:1: a token is 16-256") == 0);
  CHECK(bad("reader-token-0123456789\n").find("tokens.txt:1: a token needs a scope") == 0);
  CHECK(bad("reader-token-0123456789 read\nreader-token-0123456789 admin\n")
        == "tokens.txt:2: this token is listed twice");
  CHECK(authorizer::from_file("/nonexistent/tokens", probes).error().find("cannot read") == 0);
}

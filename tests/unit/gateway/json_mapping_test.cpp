// JSON mapping details that the process tests do not pin down: times and number edge cases.

#include <catch2/catch.hpp>

#include <boost/json.hpp>

#include "gateway/json_mapping.hpp"

using namespace kontor::gateway;

TEST_CASE("RFC 3339 times round-trip and offsets are honoured", "[json]") {
  auto t = parse_time("2026-11-22T10:00:00Z");
  REQUIRE(t);
  CHECK(format_time(*t) == "2026-11-22T10:00:00.000Z");
  CHECK(parse_time("2026-11-22T10:00:00.123Z") == *t + 123);
  CHECK(parse_time("2026-11-22T11:30:00+01:30") == *t);
  CHECK(parse_time("2026-11-22T08:00:00-02:00") == *t);
  CHECK(parse_time("1970-01-01T00:00:00Z") == 0);
  CHECK(parse_time("2000-02-29T00:00:00Z") == 951782400000);
  for (auto bad : {"2026-11-22", "2026-11-22T10:00:00", "2026-13-01T00:00:00Z", "yesterday",
                   "2026-11-22T10:00:00.Z", "2026-11-22T10:00:00Zjunk", ""})
    CHECK_FALSE(parse_time(bad));
}

TEST_CASE("numbers must be integers in range", "[json]") {
  auto limit_of = [](const std::string& body) {
    boost::json::object obj;
    REQUIRE_FALSE(parse_object(body, obj));
    kontor::account::pb::Command cmd;
    return update_limit_from_json(obj, cmd);
  };
  CHECK_FALSE(limit_of(R"({"limit":0})"));
  CHECK_FALSE(limit_of(R"({"limit":9223372036854775807})"));
  CHECK(limit_of(R"({"limit":9223372036854775808})"));
  CHECK(limit_of(R"({"limit":1.0})"));
  CHECK(limit_of(R"({"limit":"1"})"));
  CHECK(limit_of(R"({"limit":null})")->field == "limit");
  boost::json::object obj;
  CHECK(parse_object("[]", obj)->code == "malformed_json");
  CHECK(parse_object("{\"a\":", obj)->code == "malformed_json");
}

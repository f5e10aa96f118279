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

TEST_CASE("every RFC 3339 time is accepted, and only those", "[json]") {
  auto t = *parse_time("2026-12-01T23:02:24Z");
  // What format_time prints (the "at" of every event) reads back to the same instant.
  CHECK(parse_time("2026-12-01T23:02:24.602Z") == t + 602);
  CHECK(parse_time(format_time(t + 602)) == t + 602);
  // Fractions of any length, cut (not rounded) to milliseconds.
  CHECK(parse_time("2026-12-01T23:02:24.6Z") == t + 600);
  CHECK(parse_time("2026-12-01T23:02:24.60299Z") == t + 602);
  CHECK(parse_time("2026-12-01T23:02:24.999999999999999999999Z") == t + 999);
  // Offsets, lower-case t and z (RFC 3339 5.6 note).
  CHECK(parse_time("2026-12-02T00:02:24.602+01:00") == t + 602);
  CHECK(parse_time("2026-12-01T18:32:24-04:30") == t);
  CHECK(parse_time("2026-12-01T23:02:24-00:00") == t);
  CHECK(parse_time("2026-12-01t23:02:24z") == t);
  // Calendar edges.
  CHECK(parse_time("2024-02-29T00:00:00Z"));
  CHECK(parse_time("2026-01-31T00:00:00Z"));
  CHECK(parse_time("2026-12-31T23:59:59.999Z"));
  CHECK(parse_time("0001-01-01T00:00:00Z"));
  CHECK(parse_time("9999-12-31T23:59:59Z"));
  // A leap second counts as the next second's start.
  CHECK(parse_time("2016-12-31T23:59:60Z") == parse_time("2017-01-01T00:00:00Z"));
  for (auto bad : {
         "2026-02-29T00:00:00Z", "2100-02-29T00:00:00Z", "2026-04-31T00:00:00Z",
         "2026-11-31T00:00:00Z", "2026-00-10T00:00:00Z", "2026-11-00T00:00:00Z",
         "2026-11-32T00:00:00Z", "2026-11-22T24:00:00Z", "2026-11-22T10:60:00Z",
         "2026-11-22T10:00:61Z", "2026-11-22T10:00:00+24:00", "2026-11-22T10:00:00+01:60",
         "2026-11-22T10:00:00+0100", "2026-11-22T10:00:00+01", "2026-11-22T10:00:00+01:00x",
         "2026-11-22T10:00:00.5", "2026-11-22T10:00:00,5Z", "2026-11-22 10:00:00Z",
         "2026-11-22T10:00Z", "26-11-22T10:00:00Z", "2026-1-22T10:00:00Z", "+2026-11-22T10:00:00Z",
         "2026-11-22T1a:00:00Z", "2026-11-22T10:00:00ZZ", "2026-11-22T10:00:00 Z",
         " 2026-11-22T10:00:00Z", "2026-11-22T10:00:00.-1Z", "2026/11/22T10:00:00Z"}) {
    INFO(bad);
    CHECK_FALSE(parse_time(bad));
  }
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

TEST_CASE("a key twice in one object is malformed JSON, at any depth", "[json]") {
  boost::json::object obj;
  for (auto body : {R"({"amount":1,"amount":7})", R"({"a":1,"b":{"city":"x","city":"y"}})",
                    R"({"a":[{"k":1},{"k":2,"k":3}]})", R"({"a\u0062":1,"ab":2})",
                    R"({"a":{"b":{"c":{"d":1,"d":1}}}})"}) {
    INFO(body);
    auto err = parse_object(body, obj);
    REQUIRE(err);
    CHECK(err->code == "malformed_json");
  }
  CHECK(parse_object(R"({"amount":1,"amount":7})", obj)->message.find("amount")
        != std::string::npos);
  // The same key in different objects, or as a value, is fine.
  REQUIRE_FALSE(parse_object(R"({"k":{"k":1},"a":[{"k":1},{"k":2}],"b":"k"})", obj));
  CHECK(obj.at("k").at("k") == 1);
}

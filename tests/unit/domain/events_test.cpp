// Stored events: every type round-trips through Protobuf; parse_event refuses what it cannot
// apply; event_type names every type as the API does.

#include <string>

#include "tests/unit/domain/account_support.hpp"

using namespace kontor::account;
using namespace kontor::account::testing;

namespace {

/// One stamped event of every type, with every field set.
std::vector<pb::Event> one_of_each() {
  return history({opened("Mike Magic", "DE", "EUR", 1000), limit_updated(2000, 1000),
                  limit_changed(0, 2000, "fraud"), purchased("p1", 500, -500),
                  deposited("d1", 700, 200), status_changed(pb::ACTIVE, pb::LOCKED, "fraud"),
                  address_updated(address("Stephansplatz 1", "Wien", "1010", "AT"), "DE"),
                  phone_added("+49 126 555 555")});
}

} // namespace

TEST_CASE("every event type round-trips through Protobuf", "[events]") {
  for (const auto& ev : one_of_each()) {
    INFO(event_type(ev));
    auto bytes = ev.SerializeAsString();
    auto back = parse_event(bytes);
    REQUIRE(back.has_value());
    CHECK(google::protobuf::util::MessageDifferencer::Equals(*back, ev));
  }
}

TEST_CASE("events decided by decide round-trip through Protobuf", "[events]") {
  auto s = given_open();
  auto d = decide(s, lock("because"), now, rules{});
  REQUIRE(d.events.size() == 2);
  for (const auto& ev : d.events) {
    auto back = parse_event(ev.SerializeAsString());
    REQUIRE(back.has_value());
    CHECK(same(*back, ev));
  }
}

TEST_CASE("event_type names every type as the API does", "[events]") {
  std::vector<std::string> names;
  for (const auto& ev : one_of_each())
    names.emplace_back(event_type(ev));
  CHECK(names
        == std::vector<std::string>{"AccountOpened", "LimitUpdated", "LimitChanged",
                                    "ItemPurchased", "MoneyDeposited", "StatusChanged",
                                    "AddressUpdated", "PhoneNumberAdded"});
  CHECK(event_type(pb::Event{}).empty());
}

TEST_CASE("parse_event refuses bytes that are not an event", "[events]") {
  CHECK_FALSE(parse_event("not protobuf at all").has_value());
  CHECK_FALSE(parse_event(std::string_view{"\x0a\xff\xff\xff\xff\x0f", 6}).has_value());
  CHECK_FALSE(parse_event(std::string_view{"\xff\xff\xff\xff", 4}).has_value());
  auto ev = one_of_each()[3];
  auto bytes = ev.SerializeAsString();
  CHECK_FALSE(parse_event(std::string_view{bytes}.substr(0, bytes.size() - 3)).has_value());
  // Empty bytes parse as an empty Event: no schema version, no payload.
  CHECK_FALSE(parse_event("").has_value());
}

TEST_CASE("parse_event refuses unknown schema versions", "[events]") {
  for (auto ev : one_of_each()) {
    INFO(event_type(ev));
    const auto current = current_event_version(ev.payload_case());
    for (std::uint32_t version : {0u, current + 1, 99u}) {
      INFO("schema_version " << version);
      ev.set_schema_version(version);
      CHECK_FALSE(parse_event(ev.SerializeAsString()).has_value());
    }
    ev.set_schema_version(current);
    CHECK(parse_event(ev.SerializeAsString()).has_value());
  }
}

TEST_CASE("parse_event refuses an event without a known payload", "[events]") {
  pb::Event ev;
  ev.set_schema_version(1);
  ev.set_account_id(account);
  ev.set_seq(1);
  ev.set_at_ms(t0);
  auto bytes = ev.SerializeAsString();
  CHECK_FALSE(parse_event(bytes).has_value());
  // A payload a newer schema added (field 30, length-delimited, empty): unknown here.
  bytes += std::string{"\xf2\x01\x00", 3};
  pb::Event probe;
  REQUIRE(probe.ParseFromString(bytes));
  CHECK_FALSE(parse_event(bytes).has_value());
}

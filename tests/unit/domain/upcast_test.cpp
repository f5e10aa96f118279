// Schema versions and upcasting: a MoneyDeposited written by the v1 build (no `source`) reads as
// v2 with source "api" wherever stored events are read (parse_event), a v1 snapshot restores to
// the same state as a replay of v2 events, every type's chain of steps is complete, and the new
// `source` of a deposit command is checked and kept.

#include <string>

#include "tests/unit/domain/account_support.hpp"

using namespace kontor::account;
using namespace kontor::account::testing;

namespace {

// Bytes as the v1 build wrote them (schema_version 1, MoneyDeposited without field 5): the
// deposit d1 of 700 EUR (new balance 700) as event 2 of account 333.
const std::string v1_deposit_hex = "0801120333333318022082d095ffbc31720f0a02643110bc051a0345555220bc05";

/// Event `ev` as the v1 build wrote it: version 1, and a deposit without source.
pb::Event as_v1(pb::Event ev) {
  ev.set_schema_version(1);
  if (ev.has_money_deposited())
    ev.mutable_money_deposited()->clear_source();
  return ev;
}

/// A history with every kind of event and three deposits (one of them keyed), as v2 has it.
std::vector<pb::Event> v2_history() {
  auto events = history({opened(), deposited("d1", 700, 700), deposited("d2", 300, 1000),
                         purchased("p1", 500, 500), limit_changed(0, 1000, "card lost"),
                         status_changed(pb::ACTIVE, pb::LOCKED, "card lost"),
                         deposited("d3", 50, 550), phone_added("+49 126 555 555")});
  events[2].set_idempotency_key("key-d2");
  events[2].set_request_fingerprint(42);
  events[7].set_idempotency_key("key-phone");
  events[7].set_request_fingerprint(43);
  return events;
}

/// The same history as the v1 build stored it, read back through parse_event.
std::vector<pb::Event> v1_history_read() {
  std::vector<pb::Event> out;
  for (const auto& ev : v2_history()) {
    auto read = parse_event(as_v1(ev).SerializeAsString());
    REQUIRE(read.has_value());
    out.push_back(*read);
  }
  return out;
}

} // namespace

TEST_CASE("a MoneyDeposited written by the v1 build reads as v2 with source api", "[upcast]") {
  auto ev = parse_event(from_hex(v1_deposit_hex));
  REQUIRE(ev.has_value());
  CHECK(ev->schema_version() == 2);
  CHECK(ev->schema_version() == current_event_version(pb::Event::kMoneyDeposited));
  REQUIRE(ev->has_money_deposited());
  CHECK(ev->money_deposited().source() == "api");
  // Everything else as written.
  CHECK(ev->account_id() == "333");
  CHECK(ev->seq() == 2);
  CHECK(ev->money_deposited().tx_id() == "d1");
  CHECK(ev->money_deposited().amount() == 700);
  CHECK(ev->money_deposited().currency() == "EUR");
  CHECK(ev->money_deposited().new_balance() == 700);
}

TEST_CASE("the v1 -> v2 step of MoneyDeposited sets source api and keeps a source already set",
          "[upcast]") {
  auto ev = history({opened(), deposited("d1", 700, 700)})[1];
  ev.mutable_money_deposited()->clear_source();
  money_deposited_v1_to_v2(ev);
  CHECK(ev.money_deposited().source() == "api");
  ev.mutable_money_deposited()->set_source("bonus");
  money_deposited_v1_to_v2(ev);
  CHECK(ev.money_deposited().source() == "bonus");
}

TEST_CASE("upcast brings every event type to its current version, v2 events unchanged",
          "[upcast]") {
  for (const auto& ev : v2_history()) {
    INFO(event_type(ev) << " seq " << ev.seq());
    auto from_v1 = upcast(as_v1(ev));
    REQUIRE(from_v1.has_value());
    CHECK(same(*from_v1, ev));
    auto current = upcast(ev);
    REQUIRE(current.has_value());
    CHECK(same(*current, ev));
  }
  // A bonus deposit written today stays one.
  auto bonus = history({opened(), deposited("b1", 7, 7, "EUR", "bonus")})[1];
  REQUIRE(upcast(bonus).has_value());
  CHECK(upcast(bonus)->money_deposited().source() == "bonus");
}

TEST_CASE("every event type's chain of upcasters is complete and moves one version a step",
          "[upcast]") {
  for (auto type : {pb::Event::kAccountOpened, pb::Event::kLimitUpdated, pb::Event::kLimitChanged,
                    pb::Event::kItemPurchased, pb::Event::kMoneyDeposited,
                    pb::Event::kStatusChanged, pb::Event::kAddressUpdated,
                    pb::Event::kPhoneNumberAdded}) {
    INFO("payload case " << static_cast<int>(type));
    const auto current = current_event_version(type);
    REQUIRE(current >= 1);
    for (std::uint32_t from = 1; from < current; ++from) {
      INFO("from version " << from);
      auto steps = std::count_if(event_upcasters().begin(), event_upcasters().end(),
                                 [&](const event_upcaster& u) { return u.type == type && u.from == from; });
      CHECK(steps == 1);
    }
  }
  for (const auto& u : event_upcasters()) {
    CHECK(u.from >= 1);
    CHECK(u.from < current_event_version(u.type)); // no step beyond today's version
    CHECK(u.step != nullptr);
  }
  CHECK(current_event_version(pb::Event::kMoneyDeposited) == 2);
  CHECK(current_event_version(pb::Event::PAYLOAD_NOT_SET) == 0);
}

TEST_CASE("upcast refuses version 0, versions newer than today's and unknown payloads",
          "[upcast]") {
  auto dep = history({opened(), deposited("d1", 700, 700)})[1];
  for (std::uint32_t version : {0u, 3u, 99u}) {
    INFO("schema_version " << version);
    dep.set_schema_version(version);
    CHECK_FALSE(upcast(dep).has_value());
  }
  pb::Event none;
  none.set_schema_version(1);
  CHECK_FALSE(upcast(none).has_value());
}

TEST_CASE("a v1 journal replays to the state of the v2 one: balance, window, sources", "[upcast]") {
  auto from_v1 = replayed(v1_history_read());
  auto from_v2 = replayed(v2_history());
  require_same_state(from_v1, from_v2);
  CHECK(from_v1.balance == 550);
  for (const auto* tx : {"d1", "d2", "d3"}) {
    INFO(tx);
    const auto* rec = from_v1.recent_txs.find(tx);
    REQUIRE(rec != nullptr);
    CHECK(rec->source() == "api");
  }
  // A retried deposit of the v1 journal answers its first outcome, now as v2 with source api.
  auto d = decide(from_v1, deposit("d1", 700), now, rules{});
  REQUIRE(d.replayed.size() == 1);
  CHECK(d.replayed[0].schema_version() == 2);
  CHECK(d.replayed[0].money_deposited().source() == "api");
  CHECK(d.replayed[0].money_deposited().new_balance() == 700);
}

TEST_CASE("a v1 snapshot restores the state that v2 events replay to", "[upcast][snapshot]") {
  // The snapshot the v1 build wrote after the same events: version 1, deposit records without
  // source, the keyed phone command's event at version 1.
  auto v1_snap = to_snapshot(replayed(v1_history_read()));
  v1_snap.set_schema_version(1);
  for (auto& rec : *v1_snap.mutable_recent_txs()) {
    rec.clear_source();
    for (auto& ev : *rec.mutable_events())
      ev = as_v1(ev);
  }
  auto parsed = pb::Snapshot{};
  REQUIRE(parsed.ParseFromString(v1_snap.SerializeAsString()));
  auto snap = upcast(parsed);
  REQUIRE(snap.has_value());
  CHECK(snap->schema_version() == current_snapshot_version);
  REQUIRE(snapshot_covers_window(*snap, rules{}));
  auto restored = from_snapshot(*snap, rules{});
  require_same_state(restored, replayed(v2_history()));
  const auto* rec = restored.recent_txs.find("d3");
  REQUIRE(rec != nullptr);
  CHECK(rec->source() == "api");
  // Purchases have no source, before and after.
  CHECK(restored.recent_txs.find("p1")->source().empty());
  // The replayed answer of a deposit remembered in the snapshot is a v2 event.
  auto d = decide(restored, deposit("d3", 50), now, rules{});
  REQUIRE(d.replayed.size() == 1);
  CHECK(d.replayed[0].schema_version() == 2);
  CHECK(d.replayed[0].money_deposited().source() == "api");
}

TEST_CASE("snapshots of version 0 or newer than today's are not upcast", "[upcast][snapshot]") {
  auto snap = to_snapshot(replayed(v2_history()));
  CHECK(upcast(snap).has_value());
  for (std::uint32_t version : {0u, current_snapshot_version + 1}) {
    INFO("schema_version " << version);
    snap.set_schema_version(version);
    CHECK_FALSE(upcast(snap).has_value());
  }
}

TEST_CASE("a deposit records its source: api by default, bonus when asked, nothing else",
          "[upcast][decide]") {
  auto s = given_open();
  auto api = require_accepted(decide(s, deposit("d1", 100), now, rules{}), 1);
  CHECK(api[0].schema_version() == 2);
  CHECK(api[0].money_deposited().source() == "api");

  auto bonus_cmd = deposit("b1", 1);
  bonus_cmd.mutable_deposit_money()->set_source("bonus");
  auto bonus = require_accepted(decide(s, bonus_cmd, now, rules{}), 1);
  CHECK(bonus[0].money_deposited().source() == "bonus");

  auto gift = deposit("g1", 1);
  gift.mutable_deposit_money()->set_source("gift");
  require_rejected(decide(s, gift, now, rules{}), pb::INVALID_FIELD, "source");

  // A txId remembered with one source is not the same transaction with another.
  auto after = apply(s, decide(s, bonus_cmd, now, rules{}));
  require_rejected(decide(after, deposit("b1", 1), now, rules{}), pb::TX_ID_REUSED, "txId");
  auto again = decide(after, bonus_cmd, now, rules{});
  REQUIRE(again.replayed.size() == 1);
  CHECK(again.replayed[0].money_deposited().source() == "bonus");
}

TEST_CASE("an API deposit fingerprints as before DepositMoney had a source", "[upcast][key]") {
  // So an Idempotency-Key used with the v1 build is recognised after the upgrade.
  auto v1_cmd = keyed(deposit("d1", 700), "k");
  auto v2_cmd = v1_cmd;
  v2_cmd.mutable_deposit_money()->set_source("api");
  CHECK(request_fingerprint(v2_cmd) == request_fingerprint(v1_cmd));
  auto bonus_cmd = v1_cmd;
  bonus_cmd.mutable_deposit_money()->set_source("bonus");
  CHECK(request_fingerprint(bonus_cmd) != request_fingerprint(v1_cmd));
}

TEST_CASE("with deposit_event_version 1 a deposit is written as v1 with its source, read as v2",
          "[upcast][decide]") {
  // For a rolling update from a build before v2: those nodes refuse v2 events, and ignore the
  // source field of a v1 one.
  rules old_readers;
  old_readers.deposit_event_version = 1;
  auto s = given_open();
  auto bonus_cmd = deposit("b1", 1);
  bonus_cmd.mutable_deposit_money()->set_source("bonus");
  for (const auto& [cmd, source] : {std::pair{deposit("d1", 100), "api"}, std::pair{bonus_cmd, "bonus"}}) {
    INFO(source);
    auto written = require_accepted(decide(s, cmd, now, old_readers), 1)[0];
    CHECK(written.schema_version() == 1);
    CHECK(written.money_deposited().source() == source);
    auto read = parse_event(written.SerializeAsString());
    REQUIRE(read.has_value());
    CHECK(read->schema_version() == 2);
    CHECK(read->money_deposited().source() == source);
  }
  // Other event types are written at their current version as always.
  CHECK(require_accepted(decide(s, update_limit(5), now, old_readers), 1)[0].schema_version()
        == current_event_version(pb::Event::kLimitUpdated));
}

// Idempotency-Key: any command may carry one; a repeat with the same request answers the first
// outcome, another request is IDEMPOTENCY_KEY_REUSED. Keys live in the txId window, rebuilt from
// the events that carry them.

#include <string>

#include "tests/unit/domain/account_support.hpp"

using namespace kontor::account;
using namespace kontor::account::testing;

namespace {

/// Requires `d` to replay exactly `events` (the first outcome), appending and rejecting nothing.
void require_replayed(const decision& d, const std::vector<pb::Event>& events) {
  if (d.rejection)
    FAIL("rejected: " << d.rejection->ShortDebugString());
  CHECK(d.events.empty());
  REQUIRE(d.replayed.size() == events.size());
  for (std::size_t i = 0; i < events.size(); ++i)
    CHECK(same(d.replayed[i], events[i]));
}

/// `s` after deciding and applying `cmd`, which must be accepted; its events in `out`.
state accept(const state& s, const pb::Command& cmd, std::vector<pb::Event>& out,
             const rules& r = {}) {
  auto d = when(s, cmd, now, r);
  if (d.rejection)
    FAIL("rejected: " << d.rejection->ShortDebugString());
  REQUIRE_FALSE(d.events.empty());
  out = d.events;
  return apply(s, d, r);
}

} // namespace

// ---------------------------------------------------------------- decide

TEST_CASE("every event of a keyed command carries the key and the request's fingerprint",
          "[decide][key]") {
  auto cmd = keyed(lock("fraud"), "k-1");
  const auto& events = require_accepted(when(given_open(), cmd), 2);
  for (const auto& ev : events) {
    CHECK(ev.idempotency_key() == "k-1");
    CHECK(ev.request_fingerprint() == request_fingerprint(cmd));
  }
  // Without a key, no key and no fingerprint.
  for (const auto& ev : require_accepted(when(given_open(), lock("fraud")), 2)) {
    CHECK(ev.idempotency_key().empty());
    CHECK(ev.request_fingerprint() == 0);
  }
}

TEST_CASE("a repeated key with the same request returns the first outcome and appends nothing",
          "[decide][key]") {
  std::vector<pb::Event> first;
  auto s = accept(given_open(), keyed(lock("fraud"), "k-lock"), first);
  // Later history: the retry still gets the original events, seqs and times.
  std::vector<pb::Event> later;
  s = accept(s, deposit("d1", 10), later);
  auto d = when(s, keyed(lock("fraud"), "k-lock"), now + 100);
  // The account is locked now, so a new lock would be ACCOUNT_LOCKED; the retry is a replay.
  require_replayed(d, first);
  CHECK(d.replayed[0].seq() == 2);
  CHECK(d.replayed[1].seq() == 3);
  auto reply = reply_for(s, d);
  CHECK(reply.replayed());
  CHECK(reply.events_size() == 2);
  CHECK(reply.account().version() == 4);

  SECTION("every route") {
    std::vector<pb::Command> commands{
      keyed(update_limit(2000), "k-limit"),
      keyed(add_phone("+49 126 555 555"), "k-phone"),
      keyed(update_address(address("Ring 1", "Wien", "1010", "AT")), "k-address"),
    };
    auto t = given_open();
    for (const auto& cmd : commands) {
      INFO(cmd.ShortDebugString());
      std::vector<pb::Event> events;
      t = accept(t, cmd, events);
      require_replayed(when(t, cmd), events);
    }
    // A duplicate phone would be DUPLICATE_PHONE, a repeated unlock ACCOUNT_NOT_LOCKED.
    std::vector<pb::Event> events;
    t = accept(t, lock(), events);
    t = accept(t, keyed(unlock(), "k-unlock"), events);
    require_replayed(when(t, keyed(unlock(), "k-unlock")), events);
  }
}

TEST_CASE("a known key with another request is IDEMPOTENCY_KEY_REUSED", "[decide][key]") {
  std::vector<pb::Event> first;
  auto s = accept(given_open(), keyed(update_limit(2000), "k"), first);
  auto d = when(s, keyed(update_limit(3000), "k"));
  require_rejected(d, pb::IDEMPOTENCY_KEY_REUSED, "Idempotency-Key");
  CHECK(d.rejection->message()
        == "Idempotency-Key k of account 333 was already used for a different request");
  // Another route with the same key is another request too.
  require_rejected(when(s, keyed(lock(), "k")), pb::IDEMPOTENCY_KEY_REUSED, "Idempotency-Key");
  require_rejected(when(s, keyed(deposit("d1", 5), "k")), pb::IDEMPOTENCY_KEY_REUSED,
                   "Idempotency-Key");
  // The same request without the key is simply applied again; with another key too.
  CHECK(require_accepted(when(s, update_limit(2000)), 1).size() == 1);
  CHECK(require_accepted(when(s, keyed(update_limit(2000), "k2")), 1).size() == 1);
}

TEST_CASE("the fingerprint is the request without its key and If-Match", "[decide][key]") {
  auto base = update_limit(2000);
  CHECK(request_fingerprint(base) == request_fingerprint(keyed(base, "a")));
  CHECK(request_fingerprint(keyed(base, "a")) == request_fingerprint(keyed(base, "b")));
  CHECK(request_fingerprint(base) == request_fingerprint(expecting(base, 7)));
  CHECK(request_fingerprint(base) != request_fingerprint(update_limit(2001)));
  CHECK(request_fingerprint(base) != request_fingerprint(for_account(base, "334")));
  // Same (empty) values, different routes.
  CHECK(request_fingerprint(lock()) != request_fingerprint(unlock()));
  CHECK(request_fingerprint(deposit("t", 5)) != request_fingerprint(purchase("t", 5)));
  // Stable across builds and runs: FNV-1a of the encoding, computed apart (protoc --encode of
  // {account_id: "333", update_limit {limit: 2000}}, hashed in Python).
  CHECK(request_fingerprint(base) == 0x317f3dc8a1b0fb89ull);
}

TEST_CASE("a repeated key is answered before the version check and the business rules",
          "[decide][key][version]") {
  std::vector<pb::Event> first;
  auto s = accept(given_open(), keyed(expecting(update_limit(2000), 1), "k"), first);
  // The client sent If-Match 1 the first time; the account has moved on to 2.
  require_replayed(when(s, keyed(expecting(update_limit(2000), 1), "k")), first);
  require_rejected(when(s, keyed(expecting(update_limit(2000), 1), "k2")), pb::VERSION_MISMATCH,
                   "");
}

TEST_CASE("a retried open with the same key returns the first outcome, not ACCOUNT_EXISTS",
          "[decide][key][open]") {
  std::vector<pb::Event> first;
  auto s = accept(initial_state(account), keyed(open_account(), "open-1"), first);
  REQUIRE(first.size() == 1);
  std::vector<pb::Event> later;
  s = accept(s, deposit("d1", 10), later);
  require_replayed(when(s, keyed(open_account(), "open-1")), first);
  require_rejected(when(s, open_account()), pb::ACCOUNT_EXISTS, "");
  require_rejected(when(s, keyed(open_account(), "open-2")), pb::ACCOUNT_EXISTS, "");
  require_rejected(when(s, keyed(open_account("Mike Magic", "DE", "EUR", 5), "open-1")),
                   pb::IDEMPOTENCY_KEY_REUSED, "Idempotency-Key");
  // On an account that does not exist, a keyed command is ACCOUNT_NOT_FOUND as ever.
  require_rejected(when(initial_state(account), keyed(lock(), "open-1")), pb::ACCOUNT_NOT_FOUND,
                   "");
}

TEST_CASE("a rejected keyed command is not remembered: its retry is decided afresh",
          "[decide][key]") {
  std::vector<pb::Event> events;
  auto s = accept(given_open(), lock(), events);
  require_rejected(when(s, keyed(lock("again"), "k")), pb::ACCOUNT_LOCKED, "");
  s = accept(s, unlock(), events);
  CHECK(s.recent_txs.find_key("k") == nullptr);
  CHECK(require_accepted(when(s, keyed(lock("again"), "k")), 2).size() == 2);
}

TEST_CASE("a malformed key is INVALID_FIELD Idempotency-Key, before anything else",
          "[decide][key]") {
  auto s = given_open();
  for (std::string bad : {std::string{}, std::string(256, 'k'), std::string{"a b"},
                          std::string{"tab\t"}, std::string{"\x7f"}, std::string{"k\xc3\xa4"}}) {
    INFO("key '" << bad << "'");
    require_rejected(when(s, keyed(lock(), bad)), pb::INVALID_FIELD, "Idempotency-Key");
    // Also on an account that does not exist (the envelope comes first).
    require_rejected(when(initial_state(account), keyed(open_account(), bad)), pb::INVALID_FIELD,
                     "Idempotency-Key");
  }
  CHECK(require_accepted(when(s, keyed(lock(), std::string(255, '~'))), 2).size() == 2);
  CHECK(require_accepted(when(s, keyed(lock(), "!")), 2).size() == 2);
  // GetAccount ignores a key, even a malformed one: reading is idempotent anyway.
  auto get = when(s, keyed(get_account(), ""));
  CHECK_FALSE(get.rejection.has_value());
  CHECK(get.replayed.empty());
  CHECK(valid_idempotency_key("550e8400-e29b-41d4-a716-446655440000"));
  CHECK_FALSE(valid_idempotency_key(""));
}

TEST_CASE("a keyed transaction is one record, found by its txId and by its key",
          "[decide][key][tx]") {
  std::vector<pb::Event> first;
  auto s = accept(given_open(), keyed(deposit("d1", 700), "k"), first);
  REQUIRE(s.recent_txs.size() == 1);
  CHECK(s.recent_txs.find("d1") == s.recent_txs.find_key("k"));
  // The same request by key, or by txId with another key or none: the first outcome.
  require_replayed(when(s, keyed(deposit("d1", 700), "k")), first);
  require_replayed(when(s, keyed(deposit("d1", 700), "other")), first);
  auto by_tx = when(s, deposit("d1", 700));
  REQUIRE(by_tx.replayed.size() == 1);
  CHECK(by_tx.replayed[0].money_deposited().new_balance() == 700);
  // The key is checked first: the same key with another amount is a reused key.
  require_rejected(when(s, keyed(deposit("d1", 5), "k")), pb::IDEMPOTENCY_KEY_REUSED,
                   "Idempotency-Key");
  require_rejected(when(s, keyed(deposit("d1", 5), "other")), pb::TX_ID_REUSED, "txId");
  // A txId replay under a new key appends nothing, so that key is not remembered.
  CHECK(s.recent_txs.find_key("other") == nullptr);
}

// ---------------------------------------------------------------- evolve, window, snapshot

TEST_CASE("keys and txIds share one window of tx-window records", "[evolve][key][tx_window]") {
  rules r;
  r.tx_window = 3;
  std::vector<pb::Event> events;
  auto s = given_open({}, r);
  s = accept(s, deposit("t1", 1), events, r);
  s = accept(s, keyed(lock(), "k-lock"), events, r); // two events, one record
  s = accept(s, keyed(unlock(), "k-unlock"), events, r);
  CHECK(s.recent_txs.size() == 3);
  CHECK(s.recent_txs.find_key("k-lock")->events_size() == 2);
  CHECK(s.recent_txs.complete());
  s = accept(s, keyed(deposit("t2", 1), "k-t2"), events, r);
  CHECK(s.recent_txs.size() == 3);
  CHECK_FALSE(s.recent_txs.complete());
  CHECK(s.recent_txs.find("t1") == nullptr); // the oldest record went
  s = accept(s, deposit("t3", 1), events, r);
  CHECK(s.recent_txs.find_key("k-lock") == nullptr);
  // Forgotten: a lock with that key is decided afresh.
  CHECK(require_accepted(when(s, keyed(lock(), "k-lock"), now, r), 2).size() == 2);
  require_replayed(when(s, keyed(unlock(), "k-unlock"), now, r),
                   {s.recent_txs.find_key("k-unlock")->events(0)});
}

TEST_CASE("the key window is rebuilt from the events and kept by snapshots",
          "[evolve][snapshot][key]") {
  rules r;
  r.tx_window = 4;
  std::vector<pb::Event> all, events;
  auto s = accept(initial_state(account), keyed(open_account(), "open"), events, r);
  all.insert(all.end(), events.begin(), events.end());
  for (const auto& cmd : {keyed(lock("x"), "a"), keyed(unlock(), "b"), keyed(deposit("t", 5), "c"),
                          keyed(add_phone("+49 126 555 555"), "d"), keyed(lock("y"), "e")}) {
    s = accept(s, cmd, events, r);
    all.insert(all.end(), events.begin(), events.end());
  }
  // The decided state, a replay of the events, and restores of a snapshot at every command
  // boundary all agree.
  require_same_state(replayed(all, r), s);
  for (std::size_t cut = 0; cut <= all.size(); ++cut) {
    if (cut < all.size() && cut > 0 && all[cut].idempotency_key() == all[cut - 1].idempotency_key())
      continue; // inside a command: the runtime snapshots only after a command's last event
    INFO("snapshot after event " << cut);
    std::vector<pb::Event> before(all.begin(), all.begin() + static_cast<std::ptrdiff_t>(cut));
    pb::Snapshot snap;
    REQUIRE(snap.ParseFromString(to_snapshot(replayed(before, r)).SerializeAsString()));
    REQUIRE(snapshot_covers_window(snap, r));
    auto t = from_snapshot(snap, r);
    for (auto i = cut; i < all.size(); ++i)
      evolve(t, all[i], r);
    require_same_state(t, s);
  }
  // The last lock's two events come back whole, and "open" has left the window of 4.
  const auto* rec = s.recent_txs.find_key("e");
  REQUIRE(rec != nullptr);
  CHECK(rec->events_size() == 2);
  CHECK(s.recent_txs.find_key("open") == nullptr);
  CHECK(s.recent_txs.find_key("a") == nullptr);
  require_replayed(when(s, keyed(lock("y"), "e"), now, r), {all[all.size() - 2], all.back()});
}

// ---------------------------------------------------------------- stored events

TEST_CASE("events with a key round-trip through Protobuf", "[events][key]") {
  auto d = decide(given_open(), keyed(lock("because"), "k"), now, rules{});
  REQUIRE(d.events.size() == 2);
  for (const auto& ev : d.events) {
    auto back = parse_event(ev.SerializeAsString());
    REQUIRE(back.has_value());
    CHECK(same(*back, ev));
    CHECK(back->idempotency_key() == "k");
  }
}

TEST_CASE("events written before the key fields existed parse and evolve as before",
          "[events][key]") {
  // Bytes as the previous build wrote them (protoc --encode of the schema without fields 5, 6):
  // MoneyDeposited d1 of 700 (seq 2) and LimitChanged to 0 (seq 3) of account 333.
  auto deposit_bytes =
    from_hex("0801120333333318022082d095ffbc31720f0a02643110bc051a0345555220bc05");
  auto limit_bytes = from_hex("0801120333333318032083d095ffbc31620a10e8071a056672617564");
  auto dep = parse_event(deposit_bytes);
  auto lim = parse_event(limit_bytes);
  REQUIRE(dep.has_value());
  REQUIRE(lim.has_value());
  CHECK(dep->idempotency_key().empty());
  CHECK(dep->request_fingerprint() == 0);
  CHECK(dep->money_deposited().tx_id() == "d1");
  CHECK(lim->limit_changed().reason() == "fraud");

  auto s = given_open();
  evolve(s, *dep, rules{});
  evolve(s, *lim, rules{});
  CHECK(s.version == 3);
  CHECK(s.balance == 700);
  CHECK(s.limit == 0);
  REQUIRE(s.recent_txs.size() == 1); // the transaction, and no key record for the limit change
  CHECK(s.recent_txs.records()[0].idempotency_key().empty());
  CHECK(s.recent_txs.find_key("") == nullptr);
  auto d = decide(s, deposit("d1", 700), now, rules{});
  REQUIRE(d.replayed.size() == 1);
  CHECK(same(d.replayed[0], *dep));
}

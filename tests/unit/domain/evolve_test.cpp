// evolve, the txId window, snapshots, the view and the reply.

#include <string>

#include "tests/unit/domain/account_support.hpp"

using namespace kontor::account;
using namespace kontor::account::testing;

namespace {

/// A history that touches every event type and every field of the state.
std::vector<pb::Event> rich_history() {
  return history({opened("Mike Magic", "DE", "EUR", 1000), deposited("d1", 700, 700),
                  purchased("p1", 500, 200), limit_updated(2000, 1000),
                  phone_added("+49 126 555 555"),
                  address_updated(address("Stephansplatz 1", "Wien", "1010", "AT"), "DE"),
                  limit_changed(0, 2000, "fraud"),
                  status_changed(pb::ACTIVE, pb::LOCKED, "fraud"), deposited("d2", 50, 250),
                  status_changed(pb::LOCKED, pb::ACTIVE), phone_added("+43 1 234 5678"),
                  purchased("p2", 250, 0), email_changed("mike@example.com")});
}

pb::TxRecord record(std::string tx_id, std::uint64_t seq) {
  pb::TxRecord rec;
  rec.set_tx_id(std::move(tx_id));
  rec.set_purchase(true);
  rec.set_amount(10);
  rec.set_currency("EUR");
  rec.set_seq(seq);
  return rec;
}

/// The txIds of the window, oldest first.
std::vector<std::string> ids(const tx_window& w) {
  std::vector<std::string> out;
  for (const auto& rec : w.records())
    out.push_back(rec.tx_id());
  return out;
}

/// A snapshot through its bytes, as the snapshot store would hand it back.
pb::Snapshot stored(const pb::Snapshot& snap) {
  pb::Snapshot back;
  REQUIRE(back.ParseFromString(snap.SerializeAsString()));
  return back;
}

} // namespace

// ---------------------------------------------------------------- evolve

TEST_CASE("evolve applies every event type", "[evolve]") {
  auto events = rich_history();
  auto s = initial_state(account);
  auto step = [&](std::size_t i) {
    evolve(s, events[i], rules{});
    CHECK(s.version == i + 1);
    CHECK(s.last_at_ms == events[i].at_ms());
  };

  step(0);
  CHECK(s.opened);
  CHECK(s.owner == "Mike Magic");
  CHECK(s.country == "DE");
  CHECK(s.currency == "EUR");
  CHECK(s.limit == 1000);
  CHECK(s.balance == 0);
  CHECK(s.status == pb::ACTIVE);
  CHECK(s.opened_at_ms == t0 + 1);
  step(1);
  CHECK(s.balance == 700);
  step(2);
  CHECK(s.balance == 200);
  CHECK(ids(s.recent_txs) == std::vector<std::string>{"d1", "p1"});
  step(3);
  CHECK(s.limit == 2000);
  step(4);
  CHECK(s.phones == std::vector<std::string>{"+49 126 555 555"});
  step(5);
  REQUIRE(s.address.has_value());
  CHECK(s.address->city() == "Wien");
  CHECK(s.country == "AT");
  step(6);
  CHECK(s.limit == 0);
  step(7);
  CHECK(s.status == pb::LOCKED);
  step(8);
  CHECK(s.balance == 250);
  step(9);
  CHECK(s.status == pb::ACTIVE);
  CHECK(s.limit == 0);
  step(10);
  CHECK(s.phones.size() == 2);
  step(11);
  CHECK(s.balance == 0);
  CHECK(s.opened_at_ms == t0 + 1);
  CHECK(s.last_at_ms == t0 + 12);
}

TEST_CASE("evolved returns the new state and leaves the old one alone", "[evolve]") {
  auto events = rich_history();
  auto s = replayed({events[0], events[1]});
  auto next = evolved(s, events[2], rules{});
  CHECK(next.balance == 200);
  CHECK(next.version == 3);
  CHECK(s.balance == 700);
  CHECK(s.version == 2);
  CHECK(s.recent_txs.find("p1") == nullptr);
}

// ---------------------------------------------------------------- tx_window

TEST_CASE("the tx window is bounded and forgets the oldest first", "[tx_window]") {
  tx_window w;
  CHECK(w.find("t1") == nullptr);
  for (int i = 1; i <= 5; ++i)
    w.remember(record("t" + std::to_string(i), static_cast<std::uint64_t>(i)), 3);
  CHECK(w.size() == 3);
  CHECK(ids(w) == std::vector<std::string>{"t3", "t4", "t5"});
  CHECK(w.find("t1") == nullptr);
  CHECK(w.find("t2") == nullptr);
  for (const auto& rec : w.records()) {
    const auto* found = w.find(rec.tx_id());
    REQUIRE(found != nullptr);
    CHECK(found == &rec);
  }

  SECTION("an id remembered again after being dropped is found again") {
    w.remember(record("t1", 6), 3);
    CHECK(ids(w) == std::vector<std::string>{"t4", "t5", "t1"});
    REQUIRE(w.find("t1") != nullptr);
    CHECK(w.find("t1")->seq() == 6);
    CHECK(w.find("t3") == nullptr);
    // Keep going well past the window: the index stays right.
    for (int i = 7; i <= 100; ++i)
      w.remember(record("t" + std::to_string(i), static_cast<std::uint64_t>(i)), 3);
    CHECK(ids(w) == std::vector<std::string>{"t98", "t99", "t100"});
    CHECK(w.find("t99")->seq() == 99);
    CHECK(w.find("t1") == nullptr);
  }
  SECTION("an id remembered twice within the window finds the newer record") {
    w.remember(record("t4", 6), 3); // t3 dropped; t4 twice
    CHECK(ids(w) == std::vector<std::string>{"t4", "t5", "t4"});
    CHECK(w.find("t4")->seq() == 6);
    w.remember(record("t7", 7), 3); // the older t4 goes, the newer stays
    CHECK(ids(w) == std::vector<std::string>{"t5", "t4", "t7"});
    REQUIRE(w.find("t4") != nullptr);
    CHECK(w.find("t4")->seq() == 6);
  }
  SECTION("a smaller capacity trims several at once") {
    w.remember(record("t6", 6), 1);
    CHECK(ids(w) == std::vector<std::string>{"t6"});
    CHECK(w.find("t5") == nullptr);
    CHECK(w.find("t6") != nullptr);
  }
}

TEST_CASE("evolve remembers transactions within rules::tx_window", "[tx_window][evolve]") {
  rules r;
  r.tx_window = 4;
  std::vector<pb::Event> payloads{opened()};
  for (int i = 1; i <= 10; ++i)
    payloads.push_back(deposited("d" + std::to_string(i), 1, i));
  auto s = given(payloads, r);
  CHECK(ids(s.recent_txs) == std::vector<std::string>{"d7", "d8", "d9", "d10"});
  CHECK(s.recent_txs.find("d10")->seq() == 11);
  // Replay works within the window, and only there.
  CHECK(decide(s, deposit("d7", 1), now, r).replayed.size() == 1);
  CHECK(decide(s, deposit("d6", 1), now, r).events.size() == 1);
}

// ---------------------------------------------------------------- snapshots

TEST_CASE("a snapshot holds the whole state and restores it", "[snapshot]") {
  auto s = replayed(rich_history());
  auto snap = to_snapshot(s);
  CHECK(snap.schema_version() == current_snapshot_version);
  CHECK(snap.account_id() == account);
  CHECK(snap.version() == 13);
  CHECK(snap.email() == "mike@example.com");
  CHECK(snap.recent_txs_size() == 4);
  CHECK(snap.recent_txs(0).tx_id() == "d1"); // oldest first
  CHECK(snap.recent_txs(3).tx_id() == "p2");
  CHECK(snap.has_address());

  CHECK(snap.recent_txs_complete());
  auto back = from_snapshot(stored(snap), rules{});
  require_same_state(back, s);
  CHECK(same(to_snapshot(back), snap));
}

TEST_CASE("snapshots of new and address-less accounts round-trip", "[snapshot]") {
  auto fresh = initial_state(account);
  require_same_state(from_snapshot(stored(to_snapshot(fresh)), rules{}), fresh);
  auto open = given_open();
  auto snap = to_snapshot(open);
  CHECK_FALSE(snap.has_address());
  auto back = from_snapshot(stored(snap), rules{});
  CHECK_FALSE(back.address.has_value());
  require_same_state(back, open);
}

TEST_CASE("replaying a history equals restoring its snapshot and replaying the rest",
          "[snapshot]") {
  rules r;
  r.tx_window = 3;
  auto events = rich_history();
  auto full = replayed(events, r);
  for (std::size_t cut = 0; cut <= events.size(); ++cut) {
    INFO("snapshot after event " << cut);
    std::vector<pb::Event> before(events.begin(),
                                  events.begin() + static_cast<std::ptrdiff_t>(cut));
    auto head = replayed(before, r);
    auto s = from_snapshot(stored(to_snapshot(head)), r);
    for (auto i = cut; i < events.size(); ++i)
      evolve(s, events[i], r);
    require_same_state(s, full);
  }
}

TEST_CASE("a restored state answers repeated txIds like the original", "[snapshot][tx]") {
  auto s = from_snapshot(stored(to_snapshot(replayed(rich_history()))), rules{});
  auto d = decide(s, purchase("p1", 500), now, rules{});
  REQUIRE(d.replayed.size() == 1);
  CHECK(same(d.replayed.at(0), rich_history()[2]));
  CHECK(decide(s, purchase("p1", 5), now, rules{}).rejection->code() == pb::TX_ID_REUSED);
}

TEST_CASE("a snapshot larger than the window is trimmed when restored",
          "[snapshot][tx_window]") {
  auto snap = stored(to_snapshot(replayed(rich_history())));
  REQUIRE(snap.recent_txs_size() == 4);
  rules r;
  r.tx_window = 2;
  REQUIRE(snapshot_covers_window(snap, r));
  auto s = from_snapshot(snap, r);
  // As a replay of the events under window 2: d1 and p1 are forgotten at once.
  require_same_state(s, replayed(rich_history(), r));
  CHECK(ids(s.recent_txs) == std::vector<std::string>{"d2", "p2"});
  CHECK(s.recent_txs.find("p1") == nullptr);
  // A deposit with p1's txId would be TX_ID_REUSED if p1 were still remembered.
  CHECK(decide(s, deposit("p1", 500), now, r).events.size() == 1);
  auto d = decide(s, deposit("d3", 1), now, r);
  REQUIRE(d.events.size() == 1);
  evolve(s, d.events[0], r);
  CHECK(ids(s.recent_txs) == std::vector<std::string>{"p2", "d3"});
}

TEST_CASE("the window an account remembers does not depend on whether it has a snapshot",
          "[snapshot][tx_window]") {
  // Ten transactions between other events; a snapshot after any event, written under window w1;
  // recovery under window w2 uses it only when it covers w2, else replays every event (as the
  // account entity does). Either way the state is the one a replay of the events gives.
  std::vector<pb::Event> payloads{opened(), limit_updated(2000, 1000)};
  std::int64_t balance = 0;
  for (int i = 1; i <= 10; ++i) {
    balance += 10;
    payloads.push_back(deposited("t" + std::to_string(i), 10, balance));
    if (i % 3 == 0)
      payloads.push_back(phone_added("+49 126 555 55" + std::to_string(i / 3)));
  }
  auto events = history(payloads);
  for (std::size_t w1 : {1, 2, 3, 5, 10, 11, 50}) {
    for (std::size_t w2 : {1, 2, 3, 4, 5, 10, 11, 50}) {
      rules r1, r2;
      r1.tx_window = w1;
      r2.tx_window = w2;
      auto full = replayed(events, r2);
      for (std::size_t cut = 0; cut <= events.size(); ++cut) {
        INFO("snapshot after event " << cut << " under window " << w1 << ", recovery under "
                                     << w2);
        std::vector<pb::Event> before(events.begin(),
                                      events.begin() + static_cast<std::ptrdiff_t>(cut));
        auto snap = stored(to_snapshot(replayed(before, r1)));
        auto s = initial_state(account);
        std::size_t next = 0;
        if (snapshot_covers_window(snap, r2)) {
          s = from_snapshot(snap, r2);
          next = cut;
        }
        for (auto i = next; i < events.size(); ++i)
          evolve(s, events[i], r2);
        require_same_state(s, full);
      }
    }
  }
}

TEST_CASE("a retry within a raised window is recognised after a snapshot of the smaller one",
          "[snapshot][tx_window][tx]") {
  rules small, large;
  small.tx_window = 3;
  large.tx_window = 20;
  std::vector<pb::Event> payloads{opened()};
  for (int i = 1; i <= 12; ++i)
    payloads.push_back(deposited("t" + std::to_string(i), 1, i));
  auto events = history(payloads);
  auto snap = stored(to_snapshot(replayed(events, small)));
  REQUIRE(snap.recent_txs_size() == 3); // t10, t11, t12: t1-t9 forgotten
  CHECK_FALSE(snap.recent_txs_complete());
  // Not usable under the larger window: recovery replays the events, which remember t2.
  CHECK_FALSE(snapshot_covers_window(snap, large));
  auto d = decide(replayed(events, large), deposit("t2", 1), now, large);
  CHECK(d.events.empty());
  REQUIRE(d.replayed.size() == 1);
  CHECK(d.replayed.at(0).seq() == 3);
  // Under the smaller window (or a smaller one still) the snapshot stands in for the events.
  CHECK(snapshot_covers_window(snap, small));
  rules smaller;
  smaller.tx_window = 2;
  CHECK(snapshot_covers_window(snap, smaller));
  require_same_state(from_snapshot(snap, smaller), replayed(events, smaller));
}

TEST_CASE("a snapshot that holds every record covers any window", "[snapshot][tx_window]") {
  rules small;
  small.tx_window = 5;
  auto s = given_open({deposited("d1", 700, 700), purchased("p1", 500, 200)}, small);
  CHECK(s.recent_txs.complete());
  auto snap = stored(to_snapshot(s));
  CHECK(snap.recent_txs_complete());
  rules huge;
  huge.tx_window = 1'000'000;
  CHECK(snapshot_covers_window(snap, huge));
  // Once a record is forgotten the window is no longer complete, in the state and its snapshot.
  rules tiny;
  tiny.tx_window = 1;
  auto trimmed = given_open({deposited("d1", 700, 700), purchased("p1", 500, 200)}, tiny);
  CHECK_FALSE(trimmed.recent_txs.complete());
  CHECK_FALSE(to_snapshot(trimmed).recent_txs_complete());
  CHECK_FALSE(snapshot_covers_window(to_snapshot(trimmed), small));
  // Restoring under a smaller window than the records forgets some: no longer complete.
  auto restored = from_snapshot(snap, tiny);
  CHECK_FALSE(restored.recent_txs.complete());
  require_same_state(restored, trimmed);
}

TEST_CASE("a snapshot written before recent_txs_complete existed is used only when it can be",
          "[snapshot][tx_window]") {
  // Bytes as the previous build wrote them (protoc --encode of the schema without field 16):
  // account 333 at version 3, balance 750, remembering deposits d1 (seq 2) and d2 (seq 3).
  auto bytes = from_hex("080112033333331801220a4d696b65204d616769632a024445320345555238e807"
                        "40ee05480160036883d095ffbc3172180a02643118bc05220345555228bc053002"
                        "3882d095ffbc3172170a0264321832220345555228ee0530033883d095ffbc3178"
                        "81d095ffbc31");
  pb::Snapshot snap;
  REQUIRE(snap.ParseFromString(bytes));
  CHECK_FALSE(snap.recent_txs_complete());
  rules two, three, one;
  two.tx_window = 2;
  three.tx_window = 3;
  one.tx_window = 1;
  // Whether older records were forgotten is unknown: the two records cover a window of 2 at most.
  CHECK(snapshot_covers_window(snap, two));
  CHECK(snapshot_covers_window(snap, one));
  CHECK_FALSE(snapshot_covers_window(snap, three));
  auto s = from_snapshot(snap, two);
  CHECK(s.version == 3);
  CHECK(s.balance == 750);
  CHECK(ids(s.recent_txs) == std::vector<std::string>{"d1", "d2"});
  CHECK_FALSE(s.recent_txs.complete()); // and its next snapshot says so
  CHECK_FALSE(to_snapshot(s).recent_txs_complete());
  auto d = decide(s, deposit("d1", 700), now, two);
  REQUIRE(d.replayed.size() == 1);
  CHECK(d.replayed.at(0).seq() == 2);
  CHECK(ids(from_snapshot(snap, one).recent_txs) == std::vector<std::string>{"d2"});
  // An old snapshot without any record: none was ever forgotten.
  snap.clear_recent_txs();
  CHECK(snapshot_covers_window(snap, three));
  CHECK(from_snapshot(snap, three).recent_txs.complete());
}

// ---------------------------------------------------------------- view and reply

TEST_CASE("view_of shows the account", "[view]") {
  auto s = replayed(rich_history());
  auto v = view_of(s);
  CHECK(v.id() == account);
  CHECK(v.owner() == "Mike Magic");
  CHECK(v.country() == "AT");
  CHECK(v.currency() == "EUR");
  CHECK(v.limit() == 0);
  CHECK(v.balance() == 0);
  CHECK(v.status() == pb::ACTIVE);
  REQUIRE(v.phones_size() == 2);
  CHECK(v.phones(0) == "+49 126 555 555");
  CHECK(v.phones(1) == "+43 1 234 5678");
  REQUIRE(v.has_address());
  CHECK(same(v.address(), *s.address));
  CHECK(v.version() == 13);
  CHECK(v.email() == "mike@example.com");
  CHECK(v.opened_at_ms() == t0 + 1);
  CHECK(v.updated_at_ms() == t0 + 13);

  CHECK_FALSE(view_of(given_open()).has_address());
}

TEST_CASE("reply_for a rejection carries only the rejection", "[reply]") {
  auto s = given_open();
  auto d = decide(s, unlock(), now, rules{});
  auto reply = reply_for(s, d);
  REQUIRE(reply.has_rejection());
  CHECK(reply.rejection().code() == pb::ACCOUNT_NOT_LOCKED);
  CHECK(reply.events_size() == 0);
  CHECK_FALSE(reply.has_account());
  CHECK_FALSE(reply.replayed());
}

TEST_CASE("reply_for accepted events carries them and the account after them", "[reply]") {
  auto s = given_open();
  auto d = decide(s, lock("x"), now, rules{});
  auto after = apply(s, d);
  auto reply = reply_for(after, d);
  CHECK_FALSE(reply.has_rejection());
  REQUIRE(reply.events_size() == 2);
  CHECK(same(reply.events(0), d.events[0]));
  CHECK(same(reply.events(1), d.events[1]));
  REQUIRE(reply.has_account());
  CHECK(same(reply.account(), view_of(after)));
  CHECK(reply.account().status() == pb::LOCKED);
  CHECK_FALSE(reply.replayed());
}

TEST_CASE("reply_for a replay carries the first outcome, marked replayed", "[reply]") {
  auto s = given_open({deposited("d1", 700, 700)});
  auto d = decide(s, deposit("d1", 700), now, rules{});
  auto reply = reply_for(s, d);
  CHECK_FALSE(reply.has_rejection());
  REQUIRE(reply.events_size() == 1);
  CHECK(same(reply.events(0), d.replayed.at(0)));
  CHECK(reply.replayed());
  CHECK(same(reply.account(), view_of(s)));
}

TEST_CASE("reply_for GetAccount carries just the account", "[reply]") {
  auto s = given_open({deposited("d1", 700, 700)});
  auto reply = reply_for(s, decide(s, get_account(), now, rules{}));
  CHECK_FALSE(reply.has_rejection());
  CHECK(reply.events_size() == 0);
  CHECK_FALSE(reply.replayed());
  REQUIRE(reply.has_account());
  CHECK(reply.account().balance() == 700);
  CHECK(reply.account().version() == 2);
}

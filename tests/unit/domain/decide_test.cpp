// decide: given events -> when command -> then events or rejection, for every rule.

#include <limits>
#include <string>

#include "tests/unit/domain/account_support.hpp"

using namespace kontor::account;
using namespace kontor::account::testing;

// ---------------------------------------------------------------- the envelope and the order

TEST_CASE("a command without body is rejected, before its id is looked at", "[decide]") {
  auto d = when(given_open(), command());
  require_rejected(d, pb::INVALID_FIELD, "body");
  require_rejected(when(initial_state(account), command("no/such id")), pb::INVALID_FIELD,
                   "body");
}

TEST_CASE("an invalid account id is rejected before the account is looked up", "[decide]") {
  for (std::string bad : {std::string{}, std::string(65, 'a'), std::string{"a/b"}}) {
    INFO("id: " << bad);
    require_rejected(when(initial_state(bad), for_account(get_account(), bad)),
                     pb::INVALID_FIELD, "id");
    require_rejected(when(initial_state(bad), for_account(open_account(), bad)),
                     pb::INVALID_FIELD, "id");
  }
}

TEST_CASE("every command but OpenAccount on an unknown account is ACCOUNT_NOT_FOUND",
          "[decide]") {
  auto s = initial_state(account);
  for (const auto& cmd : {update_limit(10), purchase("t1", 1), deposit("t1", 1), lock(),
                          unlock(), update_address(address("Main St 1", "Wien", "1010", "AT")),
                          add_phone("+49 126 555 555"), get_account()}) {
    INFO(cmd.ShortDebugString());
    auto d = when(s, cmd);
    require_rejected(d, pb::ACCOUNT_NOT_FOUND, "");
    CHECK(d.rejection->message() == "Account 333 does not exist");
  }
}

TEST_CASE("not found comes before the values are validated", "[decide]") {
  auto s = initial_state(account);
  require_rejected(when(s, purchase("", 0, "ZZZ")), pb::ACCOUNT_NOT_FOUND, "");
  require_rejected(when(s, update_limit(-1)), pb::ACCOUNT_NOT_FOUND, "");
  require_rejected(when(s, add_phone("nope")), pb::ACCOUNT_NOT_FOUND, "");
}

TEST_CASE("OpenAccount on an opened account is ACCOUNT_EXISTS, before validation", "[decide]") {
  auto s = given_open();
  auto d = when(s, open_account());
  require_rejected(d, pb::ACCOUNT_EXISTS, "");
  CHECK(d.rejection->message() == "Account 333 already exists");
  require_rejected(when(s, open_account("", "XX", "ZZZ", -1)), pb::ACCOUNT_EXISTS, "");
}

// ---------------------------------------------------------------- OpenAccount

TEST_CASE("OpenAccount opens an active account with balance 0", "[decide][open]") {
  auto s = initial_state(account);
  auto d = when(s, open_account("  Mike Magic ", "DE", "EUR", 1000));
  const auto& events = require_accepted(d, 1);
  require_stamped(events[0], 1);
  REQUIRE(events[0].has_account_opened());
  const auto& e = events[0].account_opened();
  CHECK(e.owner() == "Mike Magic");
  CHECK(e.country() == "DE");
  CHECK(e.currency() == "EUR");
  CHECK(e.limit() == 1000);

  auto after = apply(s, d);
  CHECK(after.opened);
  CHECK(after.status == pb::ACTIVE);
  CHECK(after.balance == 0);
  CHECK(after.limit == 1000);
  CHECK(after.owner == "Mike Magic");
  CHECK(after.version == 1);
  CHECK(after.opened_at_ms == now);
  CHECK(after.last_at_ms == now);
}

TEST_CASE("OpenAccount validates owner, country, currency and limit", "[decide][open]") {
  auto s = initial_state(account);
  rules r;
  r.max_limit = 5000;
  auto rejects = [&](pb::Command cmd, std::string_view field) {
    INFO(cmd.ShortDebugString());
    require_rejected(when(s, cmd, now, r), pb::INVALID_FIELD, field);
  };
  auto accepts = [&](pb::Command cmd) {
    INFO(cmd.ShortDebugString());
    require_accepted(when(s, cmd, now, r), 1);
  };

  rejects(open_account(""), "owner");
  rejects(open_account(" \t "), "owner");
  rejects(open_account(std::string(201, 'o')), "owner");
  accepts(open_account(std::string(200, 'o')));

  rejects(open_account("Mike", "XX"), "country");
  rejects(open_account("Mike", "de"), "country");
  rejects(open_account("Mike", "DEU"), "country");
  rejects(open_account("Mike", ""), "country");
  accepts(open_account("Mike", "AT"));

  rejects(open_account("Mike", "DE", "ZZZ"), "currency");
  rejects(open_account("Mike", "DE", "eur"), "currency");
  rejects(open_account("Mike", "DE", ""), "currency");
  accepts(open_account("Mike", "DE", "USD"));

  rejects(open_account("Mike", "DE", "EUR", -1), "limit");
  rejects(open_account("Mike", "DE", "EUR", 5001), "limit");
  accepts(open_account("Mike", "DE", "EUR", 0));
  accepts(open_account("Mike", "DE", "EUR", 5000));

  // The fields are checked in the order of the API body.
  rejects(open_account("", "XX", "ZZZ", -1), "owner");
  rejects(open_account("Mike", "XX", "ZZZ", -1), "country");
  rejects(open_account("Mike", "DE", "ZZZ", -1), "currency");
}

TEST_CASE("the default MAX_LIMIT is 10^12", "[decide][open]") {
  auto s = initial_state(account);
  require_accepted(when(s, open_account("Mike", "DE", "EUR", 1'000'000'000'000)), 1);
  require_rejected(when(s, open_account("Mike", "DE", "EUR", 1'000'000'000'001)),
                   pb::INVALID_FIELD, "limit");
}

// ---------------------------------------------------------------- UpdateLimit

TEST_CASE("UpdateLimit emits LimitUpdated with the old limit", "[decide][limit]") {
  auto s = given_open();
  auto d = when(s, update_limit(2000));
  const auto& events = require_accepted(d, 1);
  require_stamped(events[0], 2);
  REQUIRE(events[0].has_limit_updated());
  CHECK(events[0].limit_updated().new_limit() == 2000);
  CHECK(events[0].limit_updated().old_limit() == 1000);
  CHECK(apply(s, d).limit == 2000);

  SECTION("also when the limit does not change") {
    const auto& same_limit = require_accepted(when(s, update_limit(1000)), 1);
    CHECK(same_limit[0].limit_updated().new_limit() == 1000);
    CHECK(same_limit[0].limit_updated().old_limit() == 1000);
  }
}

TEST_CASE("UpdateLimit validates the limit against MAX_LIMIT", "[decide][limit]") {
  auto s = given_open();
  rules r;
  r.max_limit = 5000;
  require_rejected(when(s, update_limit(-1), now, r), pb::INVALID_FIELD, "limit");
  require_rejected(when(s, update_limit(5001), now, r), pb::INVALID_FIELD, "limit");
  require_accepted(when(s, update_limit(0), now, r), 1);
  require_accepted(when(s, update_limit(5000), now, r), 1);
}

TEST_CASE("UpdateLimit on a locked account is ACCOUNT_LOCKED", "[decide][limit]") {
  auto s = given_open(locked_events(1000));
  auto d = when(s, update_limit(2000));
  require_rejected(d, pb::ACCOUNT_LOCKED, "");
  CHECK(d.rejection->message() == "Account 333 is locked");
  // An invalid limit is reported first: the values come before the state.
  require_rejected(when(s, update_limit(-1)), pb::INVALID_FIELD, "limit");
}

// ---------------------------------------------------------------- PurchaseItem

TEST_CASE("PurchaseItem emits ItemPurchased with the new balance", "[decide][purchase]") {
  auto s = given_open({deposited("d1", 700, 700)});
  auto d = when(s, purchase("p1", 500));
  const auto& events = require_accepted(d, 1);
  require_stamped(events[0], 3);
  REQUIRE(events[0].has_item_purchased());
  const auto& e = events[0].item_purchased();
  CHECK(e.tx_id() == "p1");
  CHECK(e.amount() == 500);
  CHECK(e.currency() == "EUR");
  CHECK(e.new_balance() == 200);

  auto after = apply(s, d);
  CHECK(after.balance == 200);
  const auto* rec = after.recent_txs.find("p1");
  REQUIRE(rec != nullptr);
  CHECK(rec->purchase());
  CHECK(rec->amount() == 500);
  CHECK(rec->new_balance() == 200);
  CHECK(rec->seq() == 3);
}

TEST_CASE("a purchase may use the limit down to exactly -limit", "[decide][purchase]") {
  auto s = given_open(); // balance 0, limit 1000
  const auto& events = require_accepted(when(s, purchase("p1", 1000)), 1);
  CHECK(events[0].item_purchased().new_balance() == -1000);

  auto d = when(s, purchase("p2", 1001));
  require_rejected(d, pb::INSUFFICIENT_FUNDS, "amount");
  CHECK(d.rejection->message()
        == "Purchase of 1001 would take the balance of account 333 below -1000");
}

TEST_CASE("a purchase beyond the balance with limit 0 is INSUFFICIENT_FUNDS", "[decide][purchase]") {
  auto s = given_open({limit_updated(0, 1000), deposited("d1", 500, 500)});
  auto d = when(s, purchase("p1", 700));
  require_rejected(d, pb::INSUFFICIENT_FUNDS, "amount");
  CHECK(d.rejection->message() == "Purchase of 700 would take the balance of account 333 below -0");
}

TEST_CASE("a purchase in another currency is CURRENCY_MISMATCH", "[decide][purchase]") {
  auto s = given_open({deposited("d1", 700, 700)});
  auto d = when(s, purchase("p1", 100, "USD"));
  require_rejected(d, pb::CURRENCY_MISMATCH, "currency");
  CHECK(d.rejection->message() == "Account 333 is kept in EUR, not USD");
}

TEST_CASE("a purchase on a locked account is ACCOUNT_LOCKED", "[decide][purchase]") {
  auto s = given_open({deposited("d1", 700, 700), limit_changed(0, 1000, "fraud"),
                       status_changed(pb::ACTIVE, pb::LOCKED, "fraud")});
  auto d = when(s, purchase("p1", 100));
  require_rejected(d, pb::ACCOUNT_LOCKED, "");
  CHECK(d.rejection->message() == "Account 333 is locked");

  SECTION("the currency is checked before the lock, the lock before the funds") {
    require_rejected(when(s, purchase("p1", 100, "USD")), pb::CURRENCY_MISMATCH, "currency");
    require_rejected(when(s, purchase("p1", 100'000)), pb::ACCOUNT_LOCKED, "");
  }
}

TEST_CASE("PurchaseItem validates txId, amount and currency", "[decide][purchase]") {
  auto s = given_open({limit_updated(1'000'000'000'000, 1000)});
  rules r;
  r.max_amount = 5000;
  auto rejects = [&](pb::Command cmd, std::string_view field) {
    INFO(cmd.ShortDebugString());
    require_rejected(when(s, cmd, now, r), pb::INVALID_FIELD, field);
  };
  rejects(purchase("", 10), "txId");
  rejects(purchase(std::string(129, 't'), 10), "txId");
  rejects(purchase("a b", 10), "txId");
  rejects(purchase("tab\t", 10), "txId");
  rejects(purchase("del\x7f", 10), "txId");
  rejects(purchase("caf\xc3\xa9", 10), "txId");
  rejects(purchase("p1", 0), "amount");
  rejects(purchase("p1", -5), "amount");
  rejects(purchase("p1", 5001), "amount");
  rejects(purchase("p1", 10, "ZZZ"), "currency");
  rejects(purchase("p1", 10, "eur"), "currency");
  rejects(purchase("", 0, "ZZZ"), "txId");
  rejects(purchase("p1", 0, "ZZZ"), "amount");

  require_accepted(when(s, purchase(std::string(128, '~'), 10), now, r), 1);
  require_accepted(when(s, purchase("!uuid-0f3c", 5000), now, r), 1);
}

TEST_CASE("a purchase whose new balance would overflow int64 is INSUFFICIENT_FUNDS",
          "[decide][purchase]") {
  rules r;
  r.max_amount = std::numeric_limits<std::int64_t>::max();
  auto s = given_open({purchased("p0", 1000, -1000)}, r);
  require_rejected(when(s, purchase("p1", std::numeric_limits<std::int64_t>::max()), now, r),
                   pb::INSUFFICIENT_FUNDS, "amount");
}

// ---------------------------------------------------------------- DepositMoney

TEST_CASE("DepositMoney emits MoneyDeposited with the new balance", "[decide][deposit]") {
  auto s = given_open({purchased("p1", 300, -300)});
  auto d = when(s, deposit("d1", 1000));
  const auto& events = require_accepted(d, 1);
  require_stamped(events[0], 3);
  REQUIRE(events[0].has_money_deposited());
  const auto& e = events[0].money_deposited();
  CHECK(e.tx_id() == "d1");
  CHECK(e.amount() == 1000);
  CHECK(e.currency() == "EUR");
  CHECK(e.new_balance() == 700);

  auto after = apply(s, d);
  CHECK(after.balance == 700);
  const auto* rec = after.recent_txs.find("d1");
  REQUIRE(rec != nullptr);
  CHECK_FALSE(rec->purchase());
}

TEST_CASE("a deposit with max_balance credits up to the cap, then is BALANCE_CAP_REACHED",
          "[decide][deposit]") {
  auto capped = [](std::string tx, std::int64_t amount, std::int64_t cap) {
    auto cmd = deposit(std::move(tx), amount);
    cmd.mutable_deposit_money()->set_source("bonus");
    cmd.mutable_deposit_money()->set_max_balance(cap);
    return cmd;
  };
  auto s = given_open({deposited("d1", 700, 700)});
  // Under the cap: all of it.
  auto d = when(s, capped("b1", 200, 1000));
  CHECK(require_accepted(d, 1)[0].money_deposited().amount() == 200);
  s = apply(s, d);
  // Across the cap: what fits, and the event says so.
  d = when(s, capped("b2", 500, 1000));
  auto e = require_accepted(d, 1)[0].money_deposited();
  CHECK(e.amount() == 100);
  CHECK(e.new_balance() == 1000);
  CHECK(e.source() == "bonus");
  s = apply(s, d);
  CHECK(s.balance == 1000);
  // A repeat of the capped one is a replay of what it credited, not a second credit.
  auto again = when(s, capped("b2", 500, 1000));
  REQUIRE(again.replayed.size() == 1);
  CHECK(again.events.empty());
  CHECK(again.replayed[0].money_deposited().amount() == 100);
  // At the cap: rejected, nothing appended.
  require_rejected(when(s, capped("b3", 1, 1000)), pb::BALANCE_CAP_REACHED, "maxBalance");
  require_rejected(when(s, capped("b4", 1, -1)), pb::INVALID_FIELD, "maxBalance");
  // Without a cap the amount of a repeat must match exactly.
  require_rejected(when(s, deposit("b2", 500)), pb::TX_ID_REUSED, "txId");
}

TEST_CASE("a deposit is allowed on a locked account", "[decide][deposit]") {
  auto s = given_open(locked_events(1000));
  const auto& events = require_accepted(when(s, deposit("d1", 50)), 1);
  CHECK(events[0].money_deposited().new_balance() == 50);
}

TEST_CASE("a deposit in another currency is CURRENCY_MISMATCH", "[decide][deposit]") {
  auto s = given_open();
  require_rejected(when(s, deposit("d1", 50, "GBP")), pb::CURRENCY_MISMATCH, "currency");
  require_rejected(when(s, deposit("d1", 50, "ZZZ")), pb::INVALID_FIELD, "currency");
}

TEST_CASE("DepositMoney validates txId and amount", "[decide][deposit]") {
  auto s = given_open();
  require_rejected(when(s, deposit("", 50)), pb::INVALID_FIELD, "txId");
  require_rejected(when(s, deposit(std::string(129, 'x'), 50)), pb::INVALID_FIELD, "txId");
  require_rejected(when(s, deposit("d1", 0)), pb::INVALID_FIELD, "amount");
  require_rejected(when(s, deposit("d1", 1'000'000'000'001)), pb::INVALID_FIELD, "amount");
  require_accepted(when(s, deposit("d1", 1'000'000'000'000)), 1);
}

TEST_CASE("a deposit that would take the balance beyond 4*10^18 is INVALID_FIELD amount",
          "[decide][deposit]") {
  rules r;
  r.max_amount = std::numeric_limits<std::int64_t>::max();
  constexpr std::int64_t cap = 4'000'000'000'000'000'000;
  auto s = given_open({deposited("d0", cap - 1000, cap - 1000)}, r);

  auto d = when(s, deposit("d1", 1001), now, r);
  require_rejected(d, pb::INVALID_FIELD, "amount");
  CHECK(d.rejection->message() == "Deposit of 1001 would overflow the balance of account 333");
  require_rejected(when(s, deposit("d1", std::numeric_limits<std::int64_t>::max()), now, r),
                   pb::INVALID_FIELD, "amount");

  const auto& events = require_accepted(when(s, deposit("d1", 1000), now, r), 1);
  CHECK(events[0].money_deposited().new_balance() == cap);
}

// ---------------------------------------------------------------- txId idempotency

TEST_CASE("a repeated txId returns the first outcome and appends nothing", "[decide][tx]") {
  auto s = given_open({deposited("d1", 700, 700)});
  auto first = when(s, purchase("p1", 500));
  auto original = require_accepted(first, 1)[0];
  s = apply(s, first);
  // Later history: the retry still gets the original event, seq and time.
  s = apply(s, when(s, deposit("d2", 10), now + 50));

  auto d = when(s, purchase("p1", 500), now + 100);
  CHECK_FALSE(d.rejection.has_value());
  CHECK(d.events.empty());
  REQUIRE(d.replayed.size() == 1);
  CHECK(same(d.replayed.at(0), original));
  CHECK(d.replayed.at(0).seq() == 3);
  CHECK(d.replayed.at(0).at_ms() == now);
  CHECK(d.replayed.at(0).item_purchased().new_balance() == 200);

  SECTION("deposits too") {
    auto dep = when(s, deposit("d1", 700));
    REQUIRE(dep.replayed.size() == 1);
    CHECK(dep.events.empty());
    CHECK_FALSE(dep.rejection.has_value());
    CHECK(same(dep.replayed.at(0), history({opened(), deposited("d1", 700, 700)})[1]));
  }
}

TEST_CASE("a known txId with another kind, amount or currency is TX_ID_REUSED", "[decide][tx]") {
  auto s = given_open({deposited("d1", 700, 700), purchased("p1", 500, 200)});
  require_rejected(when(s, purchase("p1", 501)), pb::TX_ID_REUSED, "txId");
  require_rejected(when(s, deposit("p1", 500)), pb::TX_ID_REUSED, "txId");
  require_rejected(when(s, purchase("d1", 700)), pb::TX_ID_REUSED, "txId");
  // Another valid currency: the txId is checked before the account's currency.
  auto d = when(s, purchase("p1", 500, "USD"));
  require_rejected(d, pb::TX_ID_REUSED, "txId");
  CHECK(d.rejection->message()
        == "Transaction p1 of account 333 was already used for a different transaction");
}

TEST_CASE("a repeated txId is answered before the version check", "[decide][tx][version]") {
  auto s = given_open({deposited("d1", 700, 700), purchased("p1", 500, 200)});
  // The client sent If-Match 2 the first time; the account has moved on to 3.
  auto d = when(s, expecting(purchase("p1", 500), 2));
  REQUIRE(d.replayed.size() == 1);
  CHECK_FALSE(d.rejection.has_value());
  CHECK(d.replayed.at(0).seq() == 3);
  require_rejected(when(s, expecting(purchase("p1", 499), 2)), pb::TX_ID_REUSED, "txId");
  // A new txId with the stale version is a version mismatch.
  require_rejected(when(s, expecting(purchase("p2", 10), 2)), pb::VERSION_MISMATCH, "");
}

TEST_CASE("a repeated txId is answered even when the state would now reject it",
          "[decide][tx]") {
  auto s = given_open({limit_updated(0, 1000), deposited("d1", 700, 700),
                       purchased("p1", 700, 0), limit_changed(0, 0, "x"),
                       status_changed(pb::ACTIVE, pb::LOCKED, "x")});
  auto d = when(s, purchase("p1", 700));
  REQUIRE(d.replayed.size() == 1);
  CHECK(d.replayed.at(0).item_purchased().new_balance() == 0);
}

TEST_CASE("the values of a repeated txId are validated before the replay", "[decide][tx]") {
  auto s = given_open({deposited("d1", 700, 700)});
  require_rejected(when(s, deposit("d1", 0)), pb::INVALID_FIELD, "amount");
  require_rejected(when(s, deposit("d1", 700, "ZZZ")), pb::INVALID_FIELD, "currency");
}

TEST_CASE("a txId older than the window is forgotten and applied again", "[decide][tx]") {
  rules r;
  r.tx_window = 2;
  auto s = given_open({deposited("t1", 100, 100), deposited("t2", 100, 200),
                       deposited("t3", 100, 300)},
                      r);
  CHECK(s.recent_txs.size() == 2);
  CHECK(when(s, deposit("t2", 100), now, r).replayed.size() == 1);
  CHECK(when(s, deposit("t3", 100), now, r).replayed.size() == 1);
  const auto& again = require_accepted(when(s, deposit("t1", 100), now, r), 1);
  CHECK(again[0].money_deposited().new_balance() == 400);
}

// ---------------------------------------------------------------- If-Match

TEST_CASE("a command whose expected version differs is VERSION_MISMATCH", "[decide][version]") {
  auto s = given_open({deposited("d1", 700, 700)}); // version 2
  auto d = when(s, expecting(update_limit(5), 1));
  require_rejected(d, pb::VERSION_MISMATCH, "");
  CHECK(d.rejection->message() == "Account 333 is at version 2, not 1");
  require_rejected(when(s, expecting(purchase("p9", 1), 3)), pb::VERSION_MISMATCH, "");
  require_rejected(when(s, expecting(deposit("d9", 1), 0)), pb::VERSION_MISMATCH, "");
  require_rejected(when(s, expecting(lock(), 1)), pb::VERSION_MISMATCH, "");
  require_rejected(when(s, expecting(add_phone("+4912345678"), 1)), pb::VERSION_MISMATCH, "");
  require_rejected(when(s, expecting(get_account(), 1)), pb::VERSION_MISMATCH, "");

  SECTION("the matching version is accepted") {
    const auto& events = require_accepted(when(s, expecting(update_limit(5), 2)), 1);
    require_stamped(events[0], 3);
  }
  SECTION("If-Match 0 on a new account") {
    auto fresh = initial_state(account);
    require_accepted(when(fresh, expecting(open_account(), 0)), 1);
    require_rejected(when(fresh, expecting(open_account(), 1)), pb::VERSION_MISMATCH, "");
  }
}

TEST_CASE("the version is checked after the values and before the business rules",
          "[decide][version]") {
  auto s = given_open(locked_events(1000)); // version 3, locked
  require_rejected(when(s, expecting(update_limit(-1), 1)), pb::INVALID_FIELD, "limit");
  require_rejected(when(s, expecting(purchase("p1", 10), 1)), pb::VERSION_MISMATCH, "");
  require_rejected(when(s, expecting(lock(), 1)), pb::VERSION_MISMATCH, "");
  require_rejected(when(s, expecting(lock(), 3)), pb::ACCOUNT_LOCKED, "");
}

// ---------------------------------------------------------------- LockAccount / UnlockAccount

TEST_CASE("LockAccount emits LimitChanged to 0, then StatusChanged to LOCKED", "[decide][lock]") {
  auto s = given_open({deposited("d1", 10, 10)}); // version 2, limit 1000
  auto d = when(s, lock("fraud suspected"));
  const auto& events = require_accepted(d, 2);
  require_stamped(events[0], 3);
  require_stamped(events[1], 4);
  REQUIRE(events[0].has_limit_changed());
  CHECK(events[0].limit_changed().new_limit() == 0);
  CHECK(events[0].limit_changed().old_limit() == 1000);
  CHECK(events[0].limit_changed().reason() == "fraud suspected");
  REQUIRE(events[1].has_status_changed());
  CHECK(events[1].status_changed().from() == pb::ACTIVE);
  CHECK(events[1].status_changed().to() == pb::LOCKED);
  CHECK(events[1].status_changed().reason() == "fraud suspected");

  auto after = apply(s, d);
  CHECK(after.status == pb::LOCKED);
  CHECK(after.limit == 0);
  CHECK(after.version == 4);
}

TEST_CASE("LockAccount emits both events even when the limit is 0 already", "[decide][lock]") {
  auto s = given_open({limit_updated(0, 1000)});
  const auto& events = require_accepted(when(s, lock()), 2);
  CHECK(events[0].limit_changed().new_limit() == 0);
  CHECK(events[0].limit_changed().old_limit() == 0);
  CHECK(events[0].limit_changed().reason().empty());
  CHECK(events[1].status_changed().to() == pb::LOCKED);
}

TEST_CASE("LockAccount on a locked account is ACCOUNT_LOCKED", "[decide][lock]") {
  auto d = when(given_open(locked_events(1000)), lock());
  require_rejected(d, pb::ACCOUNT_LOCKED, "");
  CHECK(d.rejection->message() == "Account 333 is locked");
}

TEST_CASE("the lock reason is at most 500 bytes", "[decide][lock]") {
  auto s = given_open();
  require_rejected(when(s, lock(std::string(501, 'r'))), pb::INVALID_FIELD, "reason");
  require_accepted(when(s, lock(std::string(500, 'r'))), 2);
}

TEST_CASE("UnlockAccount emits StatusChanged to ACTIVE and keeps the limit at 0",
          "[decide][unlock]") {
  auto s = given_open(locked_events(1000, "fraud")); // version 3
  auto d = when(s, unlock());
  const auto& events = require_accepted(d, 1);
  require_stamped(events[0], 4);
  REQUIRE(events[0].has_status_changed());
  CHECK(events[0].status_changed().from() == pb::LOCKED);
  CHECK(events[0].status_changed().to() == pb::ACTIVE);

  auto after = apply(s, d);
  CHECK(after.status == pb::ACTIVE);
  CHECK(after.limit == 0);
  SECTION("the limit can be raised again after unlocking") {
    require_accepted(when(after, update_limit(1000)), 1);
  }
}

TEST_CASE("UnlockAccount on an account that is not locked is ACCOUNT_NOT_LOCKED",
          "[decide][unlock]") {
  auto d = when(given_open(), unlock());
  require_rejected(d, pb::ACCOUNT_NOT_LOCKED, "");
  CHECK(d.rejection->message() == "Account 333 is not locked");
}

// ---------------------------------------------------------------- UpdateAddress

TEST_CASE("UpdateAddress emits AddressUpdated with the old country", "[decide][address]") {
  auto s = given_open();
  auto wien = address("Stephansplatz 1", "Wien", "1010", "AT");
  auto d = when(s, update_address(wien));
  const auto& events = require_accepted(d, 1);
  require_stamped(events[0], 2);
  REQUIRE(events[0].has_address_updated());
  CHECK(same(events[0].address_updated().address(), wien));
  CHECK(events[0].address_updated().old_country() == "DE");

  auto after = apply(s, d);
  REQUIRE(after.address.has_value());
  CHECK(same(*after.address, wien));
  CHECK(after.country == "AT");

  SECTION("the next update names the address's country as the old one") {
    auto d2 = when(after, update_address(address("Main St 1", "Boston", "02101", "US")));
    CHECK(require_accepted(d2, 1)[0].address_updated().old_country() == "AT");
  }
  SECTION("allowed on a locked account") {
    require_accepted(when(given_open(locked_events(1000)), update_address(wien)), 1);
  }
}

TEST_CASE("UpdateAddress requires street, city, zip and a valid country", "[decide][address]") {
  auto s = given_open();
  auto rejects = [&](pb::Address a, std::string_view field) {
    INFO(a.ShortDebugString());
    require_rejected(when(s, update_address(std::move(a))), pb::INVALID_FIELD, field);
  };
  rejects(address("", "Wien", "1010", "AT"), "street");
  rejects(address("  ", "Wien", "1010", "AT"), "street");
  rejects(address(std::string(201, 's'), "Wien", "1010", "AT"), "street");
  rejects(address("Ring 1", "", "1010", "AT"), "city");
  rejects(address("Ring 1", std::string(201, 'c'), "1010", "AT"), "city");
  rejects(address("Ring 1", "Wien", "", "AT"), "zip");
  rejects(address("Ring 1", "Wien", std::string(201, '1'), "AT"), "zip");
  rejects(address("Ring 1", "Wien", "1010", ""), "country");
  rejects(address("Ring 1", "Wien", "1010", "XX"), "country");
  rejects(address("Ring 1", "Wien", "1010", "at"), "country");
  rejects(address("", "", "", ""), "street");

  auto no_address = command();
  no_address.mutable_update_address();
  require_rejected(when(s, no_address), pb::INVALID_FIELD, "street");

  require_accepted(when(s, update_address(address(std::string(200, 's'), std::string(200, 'c'),
                                                  std::string(200, 'z'), "AT"))),
                   1);
}

// ---------------------------------------------------------------- AddPhoneNumber

TEST_CASE("AddPhoneNumber stores the number trimmed, as given", "[decide][phone]") {
  auto s = given_open();
  auto d = when(s, add_phone("  +49 126 555 555 "));
  const auto& events = require_accepted(d, 1);
  require_stamped(events[0], 2);
  REQUIRE(events[0].has_phone_number_added());
  CHECK(events[0].phone_number_added().number() == "+49 126 555 555");
  auto after = apply(s, d);
  CHECK(after.phones == std::vector<std::string>{"+49 126 555 555"});

  SECTION("a second, different number is added after the first") {
    auto again = apply(after, when(after, add_phone("+43 1 234 5678")));
    CHECK(again.phones == std::vector<std::string>{"+49 126 555 555", "+43 1 234 5678"});
  }
}

TEST_CASE("AddPhoneNumber rejects malformed numbers", "[decide][phone]") {
  auto s = given_open();
  for (std::string bad : {"", "   ", "49126555555", "+49-126-555", "+123456", "+1234567890123456",
                          "+49  126555", "+ 49126555", "+49 126 555a"}) {
    INFO("number: '" << bad << "'");
    require_rejected(when(s, add_phone(bad)), pb::INVALID_FIELD, "number");
  }
}

TEST_CASE("a number with the same digits as a known one is DUPLICATE_PHONE", "[decide][phone]") {
  auto s = given_open({phone_added("+49 126 555 555")});
  for (std::string dup : {"+49 126 555 555", "+49126555555", " +4912 6555 555 "}) {
    INFO("number: '" << dup << "'");
    auto d = when(s, add_phone(dup));
    require_rejected(d, pb::DUPLICATE_PHONE, "number");
    CHECK(d.rejection->message() == "Account 333 already has the phone number +49 126 555 555");
  }
  require_accepted(when(s, add_phone("+49 126 555 556")), 1);
}

// ---------------------------------------------------------------- GetAccount and stamps

TEST_CASE("GetAccount appends nothing and rejects nothing", "[decide][get]") {
  auto d = when(given_open({deposited("d1", 5, 5)}), get_account());
  CHECK(d.events.empty());
  CHECK_FALSE(d.rejection.has_value());
  CHECK(d.replayed.empty());
}

TEST_CASE("events are stamped no earlier than the last event", "[decide][stamp]") {
  auto s = given_open({deposited("d1", 5, 5)}); // last_at_ms = t0 + 2
  const auto& back = require_accepted(when(s, lock(), t0 - 60'000), 2);
  require_stamped(back[0], 3, t0 + 2);
  require_stamped(back[1], 4, t0 + 2);
  const auto& ahead = require_accepted(when(s, deposit("d2", 1), t0 + 99), 1);
  require_stamped(ahead[0], 3, t0 + 99);
}

TEST_CASE("events carry the account id of the state", "[decide][stamp]") {
  auto s = initial_state("acc-9_x.Y");
  auto d = decide(s, for_account(open_account(), "acc-9_x.Y"), now, rules{});
  REQUIRE(d.events.size() == 1);
  CHECK(d.events[0].account_id() == "acc-9_x.Y");
  CHECK(d.events[0].schema_version() == current_event_version(pb::Event::kAccountOpened));
}

// ---------------------------------------------------------------- sequences

TEST_CASE("the seeds' race: 700 on the account, purchases of 500 and 700 in sequence",
          "[decide][race]") {
  auto s = given_open({limit_updated(0, 1000), deposited("d1", 700, 700)});
  auto first = when(s, purchase("p500", 500));
  require_accepted(first, 1);
  s = apply(s, first);
  auto second = when(s, purchase("p700", 700));
  require_rejected(second, pb::INSUFFICIENT_FUNDS, "amount");
  CHECK(s.balance == 200);
  SECTION("in the other order the 700 wins and the 500 loses") {
    auto t = given_open({limit_updated(0, 1000), deposited("d1", 700, 700)});
    t = apply(t, when(t, purchase("p700", 700)));
    require_rejected(when(t, purchase("p500", 500)), pb::INSUFFICIENT_FUNDS, "amount");
    CHECK(t.balance == 0);
  }
}

TEST_CASE("500 purchases of 10 spend a balance of 5000 exactly", "[decide][race]") {
  auto s = given_open({limit_updated(0, 1000), deposited("d1", 5000, 5000)});
  for (int i = 0; i < 500; ++i) {
    auto d = decide(s, purchase("p" + std::to_string(i), 10), now + i, rules{});
    REQUIRE(d.events.size() == 1);
    REQUIRE_FALSE(d.rejection.has_value());
    evolve(s, d.events[0], rules{});
  }
  CHECK(s.balance == 0);
  CHECK(s.version == 503);
  require_rejected(when(s, purchase("p500", 10), now + 500), pb::INSUFFICIENT_FUNDS, "amount");
  // Every one of them is still known by its txId.
  CHECK(when(s, purchase("p0", 10), now + 500).replayed.size() == 1);
}

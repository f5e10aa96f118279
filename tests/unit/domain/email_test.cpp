// Owner e-mails: the address's normal form, the account's side (EmailChanged within a lease,
// EmailChangeFailed) and the reservation aggregate that keeps an address with one account.

#include <initializer_list>
#include <string>

#include "domain/email/address.hpp"
#include "domain/email/reservation.hpp"
#include "tests/unit/domain/account_support.hpp"

using namespace kontor;
using namespace kontor::account::testing;

// ---------------------------------------------------------------- the address

TEST_CASE("an address is normalized to lower case without surrounding spaces", "[email]") {
  CHECK(email::normalize("Mike@Example.COM") == "mike@example.com");
  CHECK(email::normalize("  mike.magic+ledger@mail.example.co.uk\t") == "mike.magic+ledger@mail.example.co.uk");
  CHECK(email::normalize("o'brien_1@x-y.de") == "o'brien_1@x-y.de");
}

TEST_CASE("what is not an address is refused", "[email]") {
  for (std::string bad : std::initializer_list<std::string>{"", "mike", "@example.com", "mike@", "mike@example", "mike@@example.com",
                          "mi ke@example.com", "mike@exa mple.com", ".mike@example.com",
                          "mike.@example.com", "mi..ke@example.com", "mike@-example.com",
                          "mike@example-.com", "mike@example..com", "mike@ex_ample.com",
                          "a@b@example.com", "\"mike\"@example.com", "mike@example.com\n",
                          std::string(65, 'a') + "@example.com",
                          "mike@" + std::string(64, 'a') + ".com",
                          // one byte more than the longest (below)
                          std::string(64, 'a') + "@" + std::string(63, 'b') + "." + std::string(63, 'c') + "."
                            + std::string(57, 'd')}) {
    INFO("address: " << bad);
    CHECK_FALSE(email::normalize(bad).has_value());
  }
  // Exactly the longest that fits an entity id.
  auto longest = std::string(64, 'a') + "@" + std::string(63, 'b') + "." + std::string(63, 'c') + "."
                 + std::string(249 - 64 - 1 - 63 - 1 - 63 - 1, 'd');
  REQUIRE(longest.size() == email::max_address_bytes);
  CHECK(email::normalize(longest) == longest);
  CHECK(email::entity_id_of(longest).size() == 255);
}

// ---------------------------------------------------------------- the account's side

TEST_CASE("ChangeEmail records EmailChanged with the previous address", "[email][decide]") {
  auto first = require_accepted(when(given_open(), change_email("mike@example.com")), 1);
  require_stamped(first[0], 2);
  CHECK(first[0].email_changed().email() == "mike@example.com");
  CHECK(first[0].email_changed().previous().empty());

  auto s = given_open({email_changed("mike@example.com")});
  CHECK(s.email == "mike@example.com");
  CHECK(account::view_of(s).email() == "mike@example.com");
  auto second = require_accepted(when(s, change_email("mike@example.org")), 1);
  CHECK(second[0].email_changed().previous() == "mike@example.com");
}

TEST_CASE("ChangeEmail to the address the account has records nothing", "[email][decide]") {
  auto d = when(given_open({email_changed("mike@example.com")}), change_email("mike@example.com"));
  require_accepted(d, 0);
}

TEST_CASE("ChangeEmail at or after its lease is RESERVATION_EXPIRED", "[email][decide]") {
  require_rejected(when(given_open(), change_email("mike@example.com", now)), account::pb::RESERVATION_EXPIRED, "email");
  require_rejected(when(given_open(), change_email("mike@example.com", now - 1)), account::pb::RESERVATION_EXPIRED, "email");
  require_accepted(when(given_open(), change_email("mike@example.com", now + 1)), 1);
}

TEST_CASE("ChangeEmail takes only a normalized address, on an existing account", "[email][decide]") {
  require_rejected(when(given_open(), change_email("Mike@example.com")), account::pb::INVALID_FIELD, "email");
  require_rejected(when(given_open(), change_email("no address")), account::pb::INVALID_FIELD, "email");
  require_rejected(when(account::initial_state(account::testing::account), change_email("mike@example.com")),
                   account::pb::ACCOUNT_NOT_FOUND, "");
}

TEST_CASE("RecordEmailChangeFailed records EmailChangeFailed and changes nothing else", "[email][decide]") {
  auto cmd = command();
  cmd.mutable_record_email_change_failed()->set_email("mike@example.com");
  cmd.mutable_record_email_change_failed()->set_reason("email_taken");
  auto s = given_open({email_changed("old@example.com")});
  auto d = when(s, cmd);
  auto evs = require_accepted(d, 1);
  CHECK(account::event_type(evs[0]) == "EmailChangeFailed");
  CHECK(evs[0].email_change_failed().reason() == "email_taken");
  auto after = apply(s, d);
  CHECK(after.email == "old@example.com");
  CHECK(after.version == s.version + 1);
}

TEST_CASE("the e-mail survives a snapshot, and a v2 snapshot is read as one without", "[email][snapshot]") {
  auto s = given_open({email_changed("mike@example.com")});
  auto snap = account::to_snapshot(s);
  CHECK(snap.schema_version() == 3);
  CHECK(account::from_snapshot(snap, {}).email == "mike@example.com");
  auto v2 = account::to_snapshot(given_open());
  v2.set_schema_version(2);
  auto up = account::upcast(v2);
  REQUIRE(up.has_value());
  CHECK(up->schema_version() == 3);
  CHECK(up->email().empty());
}

// ---------------------------------------------------------------- the reservation

namespace {

const std::string addr = "mike@example.com";

email::pb::Command rcmd() {
  email::pb::Command c;
  c.set_address(addr);
  return c;
}

email::pb::Command reserve(std::string acct, std::int64_t timeout = 10'000) {
  auto c = rcmd();
  c.mutable_reserve()->set_account(std::move(acct));
  c.mutable_reserve()->set_timeout_ms(timeout);
  return c;
}

email::pb::Command confirm(std::string acct) {
  auto c = rcmd();
  c.mutable_confirm()->set_account(std::move(acct));
  return c;
}

email::pb::Command release(std::string acct, std::uint64_t claim) {
  auto c = rcmd();
  c.mutable_release()->set_account(std::move(acct));
  c.mutable_release()->set_claim(claim);
  return c;
}

email::pb::Command cancel(std::string acct, std::uint64_t claim) {
  auto c = rcmd();
  c.mutable_cancel()->set_account(std::move(acct));
  c.mutable_cancel()->set_claim(claim);
  return c;
}

email::pb::Command settle(std::uint64_t claim, bool has_it) {
  auto c = rcmd();
  c.mutable_settle()->set_claim(claim);
  c.mutable_settle()->set_account_has_it(has_it);
  return c;
}

/// `r` after deciding and applying `c` at `now`; `events` gets how many were appended.
email::reservation step(email::reservation r, const email::pb::Command& c, std::size_t* events = nullptr) {
  auto d = email::decide(r, c, now);
  CHECK_FALSE(d.invalid);
  if (events)
    *events = d.events.size();
  for (const auto& ev : d.events) {
    // What recovery reads back is what was decided.
    auto stored = email::parse_event(ev.SerializeAsString());
    REQUIRE(stored.has_value());
    email::evolve(r, *stored);
  }
  return r;
}

} // namespace

TEST_CASE("a free address is claimed, then held once confirmed", "[email][reservation]") {
  auto r = step(email::initial(addr), reserve("a1"));
  CHECK(r.status == email::pb::RESERVED);
  CHECK(r.account == "a1");
  CHECK(r.claim == 1);
  CHECK(r.expires_at_ms == now + 10'000);
  r = step(r, confirm("a1"));
  CHECK(r.status == email::pb::HELD);
  CHECK(r.version == 2);
}

TEST_CASE("another account's claim or hold makes a reservation taken and appends nothing", "[email][reservation]") {
  auto claimed = step(email::initial(addr), reserve("a1"));
  for (const auto& r : {claimed, step(claimed, confirm("a1"))}) {
    auto d = email::decide(r, reserve("a2"), now);
    CHECK(d.taken);
    CHECK(d.events.empty());
    CHECK(email::decide(r, confirm("a2"), now).invalid);
  }
}

TEST_CASE("a cancel frees only the claim it names", "[email][reservation]") {
  auto r = step(email::initial(addr), reserve("a1"));
  std::size_t n = 0;
  CHECK(step(r, cancel("a1", 7), &n).status == email::pb::RESERVED);
  CHECK(n == 0);
  CHECK(step(r, cancel("a2", 1), &n).status == email::pb::RESERVED);
  CHECK(step(r, cancel("a1", 1)).status == email::pb::FREE);
  CHECK(step(step(r, confirm("a1")), cancel("a1", 1)).status == email::pb::HELD);
}

TEST_CASE("a release frees only the hold it names, not a claim nor a newer hold", "[email][reservation]") {
  auto held = step(step(email::initial(addr), reserve("a1")), confirm("a1")); // claim 1
  CHECK(step(held, release("a1", 1)).status == email::pb::FREE);
  CHECK(step(held, release("a2", 1)).status == email::pb::HELD);
  CHECK(step(held, release("a1", 7)).status == email::pb::HELD);
  // A claim may still be recorded within its lease: only its settle frees it.
  CHECK(step(email::initial(addr), reserve("a1")).claim == 1);
  CHECK(step(step(email::initial(addr), reserve("a1")), release("a1", 1)).status == email::pb::RESERVED);
  // Taken back (a new claim, 3): a release sent for the old hold is stale.
  auto again = step(held, reserve("a1"));
  REQUIRE(again.claim == 3);
  CHECK(step(again, release("a1", 1)).status == email::pb::RESERVED);
  CHECK(step(step(again, confirm("a1")), release("a1", 1)).status == email::pb::HELD);
  CHECK(step(step(again, confirm("a1")), release("a1", 3)).status == email::pb::FREE);
}

TEST_CASE("a claim's timeout confirms it when the account has the address, else frees it", "[email][reservation]") {
  auto r = step(email::initial(addr), reserve("a1"));
  CHECK(step(r, settle(1, true)).status == email::pb::HELD);
  auto freed = step(r, settle(1, false));
  CHECK(freed.status == email::pb::FREE);
  CHECK(freed.account.empty());
  // Confirmed, and the account has it: nothing to do. Confirmed but dropped again before the
  // hold was released: freed.
  std::size_t n = 0;
  CHECK(step(step(r, confirm("a1")), settle(1, true), &n).status == email::pb::HELD);
  CHECK(n == 0);
  CHECK(step(step(r, confirm("a1")), settle(1, false)).status == email::pb::FREE);
  // Freed, or claimed anew since: a (redelivered) settle changes nothing.
  step(freed, settle(1, true), &n);
  CHECK(n == 0);
  auto reclaimed = step(r, reserve("a1"));
  CHECK(reclaimed.claim == 2);
  CHECK(step(reclaimed, settle(1, false), &n).status == email::pb::RESERVED);
  CHECK(n == 0);
  // After a timeout freed it, another account may claim it.
  CHECK(step(freed, reserve("a2")).account == "a2");
}

TEST_CASE("a reservation survives a snapshot", "[email][reservation][snapshot]") {
  auto r = step(email::initial(addr), reserve("a1"));
  auto back = email::from_snapshot(email::to_snapshot(r));
  CHECK(back.address == r.address);
  CHECK(back.status == r.status);
  CHECK(back.account == r.account);
  CHECK(back.claim == r.claim);
  CHECK(back.expires_at_ms == r.expires_at_ms);
  CHECK(back.version == r.version);
}

TEST_CASE("a command for another address or without a body is invalid", "[email][reservation]") {
  auto c = reserve("a1");
  c.set_address("other@example.com");
  CHECK(email::decide(email::initial(addr), c, now).invalid);
  CHECK(email::decide(email::initial(addr), rcmd(), now).invalid);
  CHECK(email::decide(email::initial(addr), reserve("a1", 0), now).invalid);
}

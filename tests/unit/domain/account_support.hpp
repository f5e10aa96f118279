#pragma once

// Given/when/then helpers for the account aggregate tests: payload-only event builders that
// `given` stamps in sequence, command builders, and checks shared by the suites.

#include <catch2/catch.hpp>
#include <google/protobuf/util/message_differencer.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "domain/account/account.hpp"

namespace kontor::account::testing {

/// The account most tests talk about.
inline const std::string account = "333";
/// The time of the first given event; `given` stamps event n at t0 + n.
inline constexpr std::int64_t t0 = 1'700'000'000'000;
/// The time commands are decided at, after every given event.
inline constexpr std::int64_t now = t0 + 1'000;

/// True when two messages are equal field by field.
inline bool same(const google::protobuf::Message& a, const google::protobuf::Message& b) {
  return google::protobuf::util::MessageDifferencer::Equals(a, b);
}

/// The bytes written as hex digits (stored bytes from an older build, for instance).
inline std::string from_hex(std::string_view hex) {
  std::string out;
  for (std::size_t i = 0; i + 1 < hex.size(); i += 2)
    out.push_back(static_cast<char>(std::stoi(std::string{hex.substr(i, 2)}, nullptr, 16)));
  return out;
}

// ---------------------------------------------------------------- events (payload only)

/// AccountOpened.
inline pb::Event opened(std::string owner = "Mike Magic", std::string country = "DE",
                        std::string currency = "EUR", std::int64_t limit = 1000) {
  pb::Event ev;
  auto* e = ev.mutable_account_opened();
  e->set_owner(std::move(owner));
  e->set_country(std::move(country));
  e->set_currency(std::move(currency));
  e->set_limit(limit);
  return ev;
}

/// LimitUpdated.
inline pb::Event limit_updated(std::int64_t new_limit, std::int64_t old_limit) {
  pb::Event ev;
  ev.mutable_limit_updated()->set_new_limit(new_limit);
  ev.mutable_limit_updated()->set_old_limit(old_limit);
  return ev;
}

/// LimitChanged.
inline pb::Event limit_changed(std::int64_t new_limit, std::int64_t old_limit,
                               std::string reason) {
  pb::Event ev;
  auto* e = ev.mutable_limit_changed();
  e->set_new_limit(new_limit);
  e->set_old_limit(old_limit);
  e->set_reason(std::move(reason));
  return ev;
}

/// ItemPurchased.
inline pb::Event purchased(std::string tx_id, std::int64_t amount, std::int64_t new_balance,
                           std::string currency = "EUR") {
  pb::Event ev;
  auto* e = ev.mutable_item_purchased();
  e->set_tx_id(std::move(tx_id));
  e->set_amount(amount);
  e->set_currency(std::move(currency));
  e->set_new_balance(new_balance);
  return ev;
}

/// MoneyDeposited (v2: with its source).
inline pb::Event deposited(std::string tx_id, std::int64_t amount, std::int64_t new_balance,
                           std::string currency = "EUR", std::string source = "api") {
  pb::Event ev;
  auto* e = ev.mutable_money_deposited();
  e->set_tx_id(std::move(tx_id));
  e->set_amount(amount);
  e->set_currency(std::move(currency));
  e->set_new_balance(new_balance);
  e->set_source(std::move(source));
  return ev;
}

/// StatusChanged.
inline pb::Event status_changed(pb::Status from, pb::Status to, std::string reason = "") {
  pb::Event ev;
  auto* e = ev.mutable_status_changed();
  e->set_from(from);
  e->set_to(to);
  e->set_reason(std::move(reason));
  return ev;
}

/// An address value.
inline pb::Address address(std::string street, std::string city, std::string zip,
                           std::string country) {
  pb::Address a;
  a.set_street(std::move(street));
  a.set_city(std::move(city));
  a.set_zip(std::move(zip));
  a.set_country(std::move(country));
  return a;
}

/// AddressUpdated.
inline pb::Event address_updated(pb::Address a, std::string old_country) {
  pb::Event ev;
  *ev.mutable_address_updated()->mutable_address() = std::move(a);
  ev.mutable_address_updated()->set_old_country(std::move(old_country));
  return ev;
}

/// PhoneNumberAdded.
inline pb::Event phone_added(std::string number) {
  pb::Event ev;
  ev.mutable_phone_number_added()->set_number(std::move(number));
  return ev;
}

/// EmailChanged.
inline pb::Event email_changed(std::string email, std::string previous = "") {
  pb::Event ev;
  ev.mutable_email_changed()->set_email(std::move(email));
  ev.mutable_email_changed()->set_previous(std::move(previous));
  return ev;
}

/// The lock of an account with limit `old_limit`, as decide emits it.
inline std::vector<pb::Event> locked_events(std::int64_t old_limit, std::string reason = "") {
  return {limit_changed(0, old_limit, reason), status_changed(pb::ACTIVE, pb::LOCKED, reason)};
}

/// Stamps payload-only events as a stored history of `account`: seq 1, 2, ... at t0 + seq.
inline std::vector<pb::Event> history(std::vector<pb::Event> payloads) {
  std::uint64_t seq = 0;
  for (auto& ev : payloads) {
    ++seq;
    ev.set_schema_version(current_event_version(ev.payload_case()));
    ev.set_account_id(account);
    ev.set_seq(seq);
    ev.set_at_ms(t0 + static_cast<std::int64_t>(seq));
  }
  return payloads;
}

/// The state after applying `events` (already stamped) to a new account.
inline state replayed(const std::vector<pb::Event>& events, const rules& r = {}) {
  auto s = initial_state(account);
  for (const auto& ev : events)
    evolve(s, ev, r);
  return s;
}

/// The state of the account after the given (payload-only) events.
inline state given(std::vector<pb::Event> payloads, const rules& r = {}) {
  return replayed(history(std::move(payloads)), r);
}

/// An open account: owner Mike Magic, DE, EUR, limit 1000 (plus `more` events).
inline state given_open(std::vector<pb::Event> more = {}, const rules& r = {}) {
  more.insert(more.begin(), opened());
  return given(std::move(more), r);
}

// ---------------------------------------------------------------- commands

/// A command for `id` without body.
inline pb::Command command(std::string_view id = account) {
  pb::Command cmd;
  cmd.set_account_id(std::string{id});
  return cmd;
}

/// OpenAccount.
inline pb::Command open_account(std::string owner = "Mike Magic", std::string country = "DE",
                                std::string currency = "EUR", std::int64_t limit = 1000) {
  auto cmd = command();
  auto* b = cmd.mutable_open_account();
  b->set_owner(std::move(owner));
  b->set_country(std::move(country));
  b->set_currency(std::move(currency));
  b->set_limit(limit);
  return cmd;
}

/// UpdateLimit.
inline pb::Command update_limit(std::int64_t limit) {
  auto cmd = command();
  cmd.mutable_update_limit()->set_limit(limit);
  return cmd;
}

/// PurchaseItem.
inline pb::Command purchase(std::string tx_id, std::int64_t amount, std::string currency = "EUR") {
  auto cmd = command();
  auto* b = cmd.mutable_purchase_item();
  b->set_tx_id(std::move(tx_id));
  b->set_amount(amount);
  b->set_currency(std::move(currency));
  return cmd;
}

/// DepositMoney.
inline pb::Command deposit(std::string tx_id, std::int64_t amount, std::string currency = "EUR") {
  auto cmd = command();
  auto* b = cmd.mutable_deposit_money();
  b->set_tx_id(std::move(tx_id));
  b->set_amount(amount);
  b->set_currency(std::move(currency));
  return cmd;
}

/// LockAccount.
inline pb::Command lock(std::string reason = "") {
  auto cmd = command();
  cmd.mutable_lock_account()->set_reason(std::move(reason));
  return cmd;
}

/// UnlockAccount.
inline pb::Command unlock() {
  auto cmd = command();
  cmd.mutable_unlock_account();
  return cmd;
}

/// UpdateAddress.
inline pb::Command update_address(pb::Address a) {
  auto cmd = command();
  *cmd.mutable_update_address()->mutable_address() = std::move(a);
  return cmd;
}

/// AddPhoneNumber.
inline pb::Command add_phone(std::string number) {
  auto cmd = command();
  cmd.mutable_add_phone_number()->set_number(std::move(number));
  return cmd;
}

/// ChangeEmail of a normalized address within a lease until `lease_until_ms` (0: none).
inline pb::Command change_email(std::string email, std::int64_t lease_until_ms = 0) {
  auto cmd = command();
  cmd.mutable_change_email()->set_email(std::move(email));
  cmd.mutable_change_email()->set_lease_until_ms(lease_until_ms);
  return cmd;
}

/// GetAccount.
inline pb::Command get_account() {
  auto cmd = command();
  cmd.mutable_get_account();
  return cmd;
}

/// `cmd` with If-Match `version`.
inline pb::Command expecting(pb::Command cmd, std::uint64_t version) {
  cmd.set_expected_version(version);
  return cmd;
}

/// `cmd` with Idempotency-Key `key`.
inline pb::Command keyed(pb::Command cmd, std::string key) {
  cmd.set_idempotency_key(std::move(key));
  return cmd;
}

/// `cmd` addressed to `id`.
inline pb::Command for_account(pb::Command cmd, std::string id) {
  cmd.set_account_id(std::move(id));
  return cmd;
}

// ---------------------------------------------------------------- when / then

/// Decides `cmd` against `s` and checks that deciding left `s` unchanged.
inline decision when(const state& s, const pb::Command& cmd, std::int64_t at = now,
                     const rules& r = {}) {
  auto before = to_snapshot(s);
  auto d = decide(s, cmd, at, r);
  CHECK(same(before, to_snapshot(s)));
  return d;
}

/// Requires `d` to be a rejection with `code` naming `field`; nothing appended, nothing replayed.
inline void require_rejected(const decision& d, pb::RejectionCode code, std::string_view field) {
  REQUIRE(d.rejection.has_value());
  CHECK(pb::RejectionCode_Name(d.rejection->code()) == pb::RejectionCode_Name(code));
  CHECK(d.rejection->field() == field);
  CHECK_FALSE(d.rejection->message().empty());
  CHECK(d.events.empty());
  CHECK(d.replayed.empty());
}

/// Requires `d` to accept with `count` events and returns them (a copy: `d` may be a temporary).
inline std::vector<pb::Event> require_accepted(const decision& d, std::size_t count) {
  if (d.rejection)
    FAIL("rejected: " << d.rejection->ShortDebugString());
  CHECK(d.replayed.empty());
  REQUIRE(d.events.size() == count);
  return d.events;
}

/// Requires `ev` to be stamped as event `seq` of the account at `at_ms`.
inline void require_stamped(const pb::Event& ev, std::uint64_t seq, std::int64_t at_ms = now) {
  CHECK(ev.schema_version() == current_event_version(ev.payload_case()));
  CHECK(ev.account_id() == account);
  CHECK(ev.seq() == seq);
  CHECK(ev.at_ms() == at_ms);
}

/// `s` after the events of `d`.
inline state apply(state s, const decision& d, const rules& r = {}) {
  for (const auto& ev : d.events)
    evolve(s, ev, r);
  return s;
}

/// Requires two states to be equal field by field, the remembered transactions included.
inline void require_same_state(const state& a, const state& b) {
  CHECK(a.id == b.id);
  CHECK(a.opened == b.opened);
  CHECK(a.owner == b.owner);
  CHECK(a.country == b.country);
  CHECK(a.currency == b.currency);
  CHECK(a.limit == b.limit);
  CHECK(a.balance == b.balance);
  CHECK(a.status == b.status);
  CHECK(a.phones == b.phones);
  REQUIRE(a.address.has_value() == b.address.has_value());
  if (a.address)
    CHECK(same(*a.address, *b.address));
  CHECK(a.version == b.version);
  CHECK(a.email == b.email);
  CHECK(a.opened_at_ms == b.opened_at_ms);
  CHECK(a.last_at_ms == b.last_at_ms);
  CHECK(a.recent_txs.complete() == b.recent_txs.complete());
  REQUIRE(a.recent_txs.size() == b.recent_txs.size());
  const auto& records = a.recent_txs.records();
  for (std::size_t i = 0; i < records.size(); ++i) {
    const auto& rec = records[i];
    CHECK(same(rec, b.recent_txs.records()[i]));
    // The indexes agree with the records in both states: a txId or key finds its newest record.
    auto newest = [&](auto name_of) {
      for (auto j = i + 1; j < records.size(); ++j)
        if (name_of(records[j]) == name_of(rec))
          return false;
      return true;
    };
    if (!rec.tx_id().empty() && newest([](const pb::TxRecord& x) { return x.tx_id(); })) {
      CHECK(a.recent_txs.find(rec.tx_id()) == &rec);
      const auto* other = b.recent_txs.find(rec.tx_id());
      REQUIRE(other != nullptr);
      CHECK(same(rec, *other));
    }
    if (!rec.idempotency_key().empty()
        && newest([](const pb::TxRecord& x) { return x.idempotency_key(); })) {
      CHECK(a.recent_txs.find_key(rec.idempotency_key()) == &rec);
      const auto* other = b.recent_txs.find_key(rec.idempotency_key());
      REQUIRE(other != nullptr);
      CHECK(same(rec, *other));
    }
  }
}

} // namespace kontor::account::testing

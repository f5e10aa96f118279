// The account aggregate: decide (command + state -> events | rejection | replay), evolve
// (state + event -> state), snapshots, the view and the reply.

#include "domain/account/account.hpp"

#include <algorithm>
#include <cassert>
#include <limits>
#include <string>
#include <utility>

#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/io/zero_copy_stream_impl_lite.h>

namespace kontor::account {

// ---------------------------------------------------------------- tx_window

const pb::TxRecord* tx_window::find(std::string_view tx_id) const {
  auto it = index_.find(std::string{tx_id});
  if (it == index_.end())
    return nullptr;
  return &records_[it->second - dropped_];
}

const pb::TxRecord* tx_window::find_key(std::string_view key) const {
  auto it = key_index_.find(std::string{key});
  if (it == key_index_.end())
    return nullptr;
  return &records_[it->second - dropped_];
}

void tx_window::index(std::unordered_map<std::string, std::size_t>& index,
                      const std::string& name, std::size_t pos) {
  if (!name.empty())
    index[name] = pos;
}

void tx_window::unindex(std::unordered_map<std::string, std::size_t>& index,
                        const std::string& name, std::size_t pos) {
  auto it = index.find(name);
  // The same name may have been remembered again later (after a wider window was configured);
  // then the index points at the newer record and must stay.
  if (it != index.end() && it->second == pos)
    index.erase(it);
}

void tx_window::remember(pb::TxRecord rec, std::size_t capacity) {
  // Absolute positions never change, so dropping the oldest record leaves the indexes valid.
  auto pos = dropped_ + records_.size();
  index(index_, rec.tx_id(), pos);
  index(key_index_, rec.idempotency_key(), pos);
  records_.push_back(std::move(rec));
  while (records_.size() > capacity) {
    unindex(index_, records_.front().tx_id(), dropped_);
    unindex(key_index_, records_.front().idempotency_key(), dropped_);
    records_.pop_front();
    ++dropped_;
    complete_ = false;
  }
}

void tx_window::extend_newest(const pb::Event& ev) {
  assert(!records_.empty());
  *records_.back().add_events() = ev;
}

const pb::TxRecord* tx_window::newest() const {
  return records_.empty() ? nullptr : &records_.back();
}

// ---------------------------------------------------------------- decide

namespace {

/// Highest balance an account may reach; far below the int64 range, so sums of it and one
/// amount never overflow in projections.
constexpr std::int64_t max_balance = 4'000'000'000'000'000'000;
constexpr std::size_t max_text_bytes = 200;
constexpr std::size_t max_reason_bytes = 500;
constexpr std::size_t max_tx_id_chars = 128;

using maybe_rejection = std::optional<pb::Rejection>;

/// A rejection with `code`, naming `field` (empty when no single field is at fault).
pb::Rejection make_rejection(pb::RejectionCode code, std::string_view field, std::string message) {
  pb::Rejection rej;
  rej.set_code(code);
  rej.set_field(std::string{field});
  rej.set_message(std::move(message));
  return rej;
}

/// A 400: the value of `field` violates API.md "Values".
pb::Rejection invalid(std::string_view field, std::string message) {
  return make_rejection(pb::INVALID_FIELD, field, std::move(message));
}

/// The decision that appends nothing and answers `rej`.
decision rejected(pb::Rejection rej) {
  decision d;
  d.rejection = std::move(rej);
  return d;
}

/// `text` without leading and trailing ASCII whitespace.
std::string_view trim(std::string_view text) {
  constexpr std::string_view blanks = " \t\n\r\f\v";
  auto first = text.find_first_not_of(blanks);
  if (first == std::string_view::npos)
    return {};
  auto last = text.find_last_not_of(blanks);
  return text.substr(first, last - first + 1);
}

/// A required text field: not blank, at most 200 bytes.
bool valid_text(std::string_view text) {
  return !trim(text).empty() && text.size() <= max_text_bytes;
}

/// 1-128 printable ASCII characters, no spaces.
bool valid_tx_id(std::string_view tx_id) {
  return !tx_id.empty() && tx_id.size() <= max_tx_id_chars
         && std::ranges::all_of(tx_id, [](char c) { return c >= 0x21 && c <= 0x7e; });
}

/// "account <id>", for messages.
std::string account_named(const pb::Command& cmd) {
  return "account " + cmd.account_id();
}

/// The phone number's digits, without '+' and spaces: what makes two numbers the same.
std::string phone_digits(std::string_view number) {
  std::string digits;
  for (char c : number)
    if (c >= '0' && c <= '9')
      digits.push_back(c);
  return digits;
}

// Step 4 of decide: the values of the command, each checked against API.md "Values".

maybe_rejection check_currency(const pb::Command& cmd, std::string_view currency) {
  if (!valid_currency(currency))
    return invalid("currency", "The currency for " + account_named(cmd)
                                   + " is not an ISO 4217 code this node knows");
  return std::nullopt;
}

maybe_rejection check_country(const pb::Command& cmd, std::string_view country) {
  if (!valid_country(country))
    return invalid("country", "The country for " + account_named(cmd)
                                  + " is not an ISO 3166-1 alpha-2 code");
  return std::nullopt;
}

maybe_rejection check_limit(const pb::Command& cmd, std::int64_t limit, const rules& r) {
  if (limit < 0 || limit > r.max_limit)
    return invalid("limit", "The limit for " + account_named(cmd) + " must be from 0 to "
                                + std::to_string(r.max_limit));
  return std::nullopt;
}

maybe_rejection check_transaction(const pb::Command& cmd, std::string_view tx_id,
                                  std::int64_t amount, std::string_view currency,
                                  const rules& r) {
  if (!valid_tx_id(tx_id))
    return invalid("txId", "The txId for " + account_named(cmd)
                               + " must be 1 to 128 printable ASCII characters without spaces");
  if (amount < 1 || amount > r.max_amount)
    return invalid("amount", "The amount for " + account_named(cmd) + " must be from 1 to "
                                 + std::to_string(r.max_amount));
  return check_currency(cmd, currency);
}

maybe_rejection check_address(const pb::Command& cmd, const pb::Address& address) {
  auto text = [&](std::string_view field, std::string_view value) -> maybe_rejection {
    if (!valid_text(value))
      return invalid(field, "The " + std::string{field} + " of the address of "
                                + account_named(cmd) + " must be a non-empty string of at most "
                                + std::to_string(max_text_bytes) + " bytes");
    return std::nullopt;
  };
  if (auto rej = text("street", address.street()))
    return rej;
  if (auto rej = text("city", address.city()))
    return rej;
  if (auto rej = text("zip", address.zip()))
    return rej;
  return check_country(cmd, address.country());
}

/// The first value of `cmd` that violates its rule, if any.
maybe_rejection check_values(const pb::Command& cmd, const rules& r) {
  switch (cmd.body_case()) {
    case pb::Command::kOpenAccount: {
      const auto& open = cmd.open_account();
      auto owner = trim(open.owner());
      if (owner.empty() || owner.size() > max_text_bytes)
        return invalid("owner", "The owner of " + account_named(cmd)
                                    + " must be a non-empty string of at most "
                                    + std::to_string(max_text_bytes) + " bytes");
      if (auto rej = check_country(cmd, open.country()))
        return rej;
      if (auto rej = check_currency(cmd, open.currency()))
        return rej;
      return check_limit(cmd, open.limit(), r);
    }
    case pb::Command::kUpdateLimit:
      return check_limit(cmd, cmd.update_limit().limit(), r);
    case pb::Command::kPurchaseItem: {
      const auto& p = cmd.purchase_item();
      return check_transaction(cmd, p.tx_id(), p.amount(), p.currency(), r);
    }
    case pb::Command::kDepositMoney: {
      const auto& dep = cmd.deposit_money();
      if (!dep.source().empty() && !valid_deposit_source(dep.source()))
        return invalid("source", "The source of a deposit into " + account_named(cmd)
                                     + " must be \"api\" or \"bonus\"");
      if (dep.has_max_balance() && dep.max_balance() < 0)
        return invalid("maxBalance", "The balance cap of a deposit into " + account_named(cmd)
                                         + " must not be negative");
      return check_transaction(cmd, dep.tx_id(), dep.amount(), dep.currency(), r);
    }
    case pb::Command::kLockAccount:
      if (cmd.lock_account().reason().size() > max_reason_bytes)
        return invalid("reason", "The reason for locking " + account_named(cmd)
                                     + " must be at most " + std::to_string(max_reason_bytes)
                                     + " bytes");
      return std::nullopt;
    case pb::Command::kUpdateAddress:
      return check_address(cmd, cmd.update_address().address());
    case pb::Command::kAddPhoneNumber:
      if (!valid_phone(trim(cmd.add_phone_number().number())))
        return invalid("number", "The phone number for " + account_named(cmd)
                                     + " must be '+' and 7 to 15 digits, single spaces allowed");
      return std::nullopt;
    case pb::Command::kChangeEmail: {
      auto normal = email::normalize(cmd.change_email().email());
      if (!normal || *normal != cmd.change_email().email())
        return invalid("email", "The e-mail of " + account_named(cmd) + " must be an address like "
                                "mike@example.com (lower case, at most "
                                  + std::to_string(email::max_address_bytes) + " bytes)");
      return std::nullopt;
    }
    case pb::Command::kRecordEmailChangeFailed: {
      const auto& f = cmd.record_email_change_failed();
      if (!email::normalize(f.email()))
        return invalid("email", "The failed e-mail change of " + account_named(cmd)
                                  + " must name an address");
      if (f.reason().empty() || f.reason().size() > max_reason_bytes)
        return invalid("reason", "The reason of a failed e-mail change of " + account_named(cmd)
                                   + " must be 1 to " + std::to_string(max_reason_bytes) + " bytes");
      return std::nullopt;
    }
    case pb::Command::kUnlockAccount:
    case pb::Command::kGetAccount:
    case pb::Command::BODY_NOT_SET:
      return std::nullopt;
  }
  return std::nullopt;
}

/// The event a remembered transaction was accepted with.
pb::Event event_of(const state& s, const pb::TxRecord& rec) {
  pb::Event ev;
  // TxRecord keeps no schema version: events are upcast before evolve and snapshots when
  // restored, so the record is of the current one.
  ev.set_account_id(s.id);
  ev.set_seq(rec.seq());
  ev.set_at_ms(rec.at_ms());
  if (!rec.idempotency_key().empty()) {
    ev.set_idempotency_key(rec.idempotency_key());
    ev.set_request_fingerprint(rec.request_fingerprint());
  }
  auto fill = [&](auto* tx) {
    tx->set_tx_id(rec.tx_id());
    tx->set_amount(rec.amount());
    tx->set_currency(rec.currency());
    tx->set_new_balance(rec.new_balance());
  };
  if (rec.purchase()) {
    fill(ev.mutable_item_purchased());
  } else {
    fill(ev.mutable_money_deposited());
    ev.mutable_money_deposited()->set_source(rec.source());
  }
  ev.set_schema_version(current_event_version(ev.payload_case()));
  return ev;
}

/// The events a remembered command appended.
std::vector<pb::Event> events_of(const state& s, const pb::TxRecord& rec) {
  if (!rec.tx_id().empty())
    return {event_of(s, rec)};
  return {rec.events().begin(), rec.events().end()};
}

/// Step 2: an Idempotency-Key already accepted within the window is answered with its first
/// outcome when the request is the same (same fingerprint), else IDEMPOTENCY_KEY_REUSED.
std::optional<decision> check_repeated_key(const state& s, const pb::Command& cmd,
                                           std::uint64_t fingerprint) {
  const auto* rec = s.recent_txs.find_key(cmd.idempotency_key());
  if (rec == nullptr)
    return std::nullopt;
  if (rec->request_fingerprint() != fingerprint)
    return rejected(make_rejection(pb::IDEMPOTENCY_KEY_REUSED, "Idempotency-Key",
                                   "Idempotency-Key " + cmd.idempotency_key() + " of "
                                     + account_named(cmd)
                                     + " was already used for a different request"));
  decision d;
  d.replayed = events_of(s, *rec);
  return d;
}

/// The source a deposit is recorded with: its command's, "api" when it names none.
std::string deposit_source(const pb::DepositMoney& dep) {
  return dep.source().empty() ? std::string{deposit_source_api} : dep.source();
}

/// Step 5: a txId already accepted within the window is answered with its first outcome.
std::optional<decision> check_repeated_tx(const state& s, const pb::Command& cmd) {
  bool purchase = cmd.has_purchase_item();
  if (!purchase && !cmd.has_deposit_money())
    return std::nullopt;
  const auto& tx_id = purchase ? cmd.purchase_item().tx_id() : cmd.deposit_money().tx_id();
  auto amount = purchase ? cmd.purchase_item().amount() : cmd.deposit_money().amount();
  const auto& currency = purchase ? cmd.purchase_item().currency()
                                  : cmd.deposit_money().currency();
  const auto* rec = s.recent_txs.find(tx_id);
  if (rec == nullptr)
    return std::nullopt;
  // A capped deposit credited at most its amount: its record holds what it credited.
  bool capped = !purchase && cmd.deposit_money().has_max_balance();
  bool same_amount = capped ? rec->amount() <= amount : rec->amount() == amount;
  if (rec->purchase() != purchase || !same_amount || rec->currency() != currency
      || (!purchase && rec->source() != deposit_source(cmd.deposit_money())))
    return rejected(make_rejection(pb::TX_ID_REUSED, "txId",
                                   "Transaction " + tx_id + " of " + account_named(cmd)
                                     + " was already used for a different transaction"));
  decision d;
  d.replayed = {event_of(s, *rec)};
  return d;
}

/// Appends a new event to `d`, stamped with the next sequence number of `s`.
pb::Event& append(decision& d, const state& s, std::int64_t at_ms) {
  auto& ev = d.events.emplace_back();
  ev.set_account_id(s.id); // schema_version: by decide, once the payload is set
  ev.set_seq(s.version + d.events.size());
  ev.set_at_ms(at_ms);
  return ev;
}

/// ACCOUNT_LOCKED for the account of `cmd`.
pb::Rejection locked(const pb::Command& cmd) {
  return make_rejection(pb::ACCOUNT_LOCKED, "", "Account " + cmd.account_id() + " is locked");
}

/// CURRENCY_MISMATCH unless `currency` is the account's.
maybe_rejection check_currency_matches(const state& s, const pb::Command& cmd,
                                       const std::string& currency) {
  if (currency != s.currency)
    return make_rejection(pb::CURRENCY_MISMATCH, "currency",
                          "Account " + cmd.account_id() + " is kept in " + s.currency + ", not "
                            + currency);
  return std::nullopt;
}

/// Step 7: the business rules, against the state.
decision decide_business(const state& s, const pb::Command& cmd, std::int64_t at_ms) {
  decision d;
  switch (cmd.body_case()) {
    case pb::Command::kOpenAccount: {
      const auto& open = cmd.open_account();
      auto* ev = append(d, s, at_ms).mutable_account_opened();
      ev->set_owner(std::string{trim(open.owner())});
      ev->set_country(open.country());
      ev->set_currency(open.currency());
      ev->set_limit(open.limit());
      break;
    }
    case pb::Command::kUpdateLimit: {
      if (s.status == pb::LOCKED)
        return rejected(locked(cmd));
      auto* ev = append(d, s, at_ms).mutable_limit_updated();
      ev->set_new_limit(cmd.update_limit().limit());
      ev->set_old_limit(s.limit);
      break;
    }
    case pb::Command::kPurchaseItem: {
      const auto& p = cmd.purchase_item();
      if (auto rej = check_currency_matches(s, cmd, p.currency()))
        return rejected(std::move(*rej));
      if (s.status == pb::LOCKED)
        return rejected(locked(cmd));
      std::int64_t new_balance = 0;
      if (__builtin_sub_overflow(s.balance, p.amount(), &new_balance) || new_balance < -s.limit)
        return rejected(make_rejection(pb::INSUFFICIENT_FUNDS, "amount",
                                       "Purchase of " + std::to_string(p.amount())
                                         + " would take the balance of account "
                                         + cmd.account_id() + " below -"
                                         + std::to_string(s.limit)));
      auto* ev = append(d, s, at_ms).mutable_item_purchased();
      ev->set_tx_id(p.tx_id());
      ev->set_amount(p.amount());
      ev->set_currency(p.currency());
      ev->set_new_balance(new_balance);
      break;
    }
    case pb::Command::kDepositMoney: {
      const auto& dep = cmd.deposit_money();
      if (auto rej = check_currency_matches(s, cmd, dep.currency()))
        return rejected(std::move(*rej));
      auto amount = dep.amount();
      if (dep.has_max_balance()) {
        // Credits up to the cap (race-free: the entity decides one command at a time).
        if (s.balance >= dep.max_balance())
          return rejected(make_rejection(pb::BALANCE_CAP_REACHED, "maxBalance",
                                         "The balance of account " + cmd.account_id() + " ("
                                           + std::to_string(s.balance) + ") is at its cap of "
                                           + std::to_string(dep.max_balance())));
        amount = std::min(amount, dep.max_balance() - s.balance);
      }
      std::int64_t new_balance = 0;
      if (__builtin_add_overflow(s.balance, amount, &new_balance) || new_balance > max_balance)
        return rejected(invalid("amount", "Deposit of " + std::to_string(dep.amount())
                                            + " would overflow the balance of account "
                                            + cmd.account_id()));
      auto* ev = append(d, s, at_ms).mutable_money_deposited();
      ev->set_tx_id(dep.tx_id());
      ev->set_amount(amount);
      ev->set_currency(dep.currency());
      ev->set_new_balance(new_balance);
      ev->set_source(deposit_source(dep));
      break;
    }
    case pb::Command::kLockAccount: {
      if (s.status == pb::LOCKED)
        return rejected(locked(cmd));
      const auto& reason = cmd.lock_account().reason();
      // Both events, always and in this order: projections of limits and of status each see
      // their own event, and they are appended atomically.
      auto* limit = append(d, s, at_ms).mutable_limit_changed();
      limit->set_new_limit(0);
      limit->set_old_limit(s.limit);
      limit->set_reason(reason);
      auto* status = append(d, s, at_ms).mutable_status_changed();
      status->set_from(s.status);
      status->set_to(pb::LOCKED);
      status->set_reason(reason);
      break;
    }
    case pb::Command::kUnlockAccount: {
      if (s.status != pb::LOCKED)
        return rejected(make_rejection(pb::ACCOUNT_NOT_LOCKED, "",
                                       "Account " + cmd.account_id() + " is not locked"));
      auto* status = append(d, s, at_ms).mutable_status_changed();
      status->set_from(pb::LOCKED);
      status->set_to(pb::ACTIVE);
      break;
    }
    case pb::Command::kUpdateAddress: {
      auto* ev = append(d, s, at_ms).mutable_address_updated();
      *ev->mutable_address() = cmd.update_address().address();
      ev->set_old_country(s.country);
      break;
    }
    case pb::Command::kAddPhoneNumber: {
      auto number = trim(cmd.add_phone_number().number());
      auto digits = phone_digits(number);
      for (const auto& known : s.phones)
        if (phone_digits(known) == digits)
          return rejected(make_rejection(pb::DUPLICATE_PHONE, "number",
                                         "Account " + cmd.account_id()
                                           + " already has the phone number " + known));
      append(d, s, at_ms).mutable_phone_number_added()->set_number(std::string{number});
      break;
    }
    case pb::Command::kChangeEmail: {
      const auto& change = cmd.change_email();
      if (change.email() == s.email)
        break; // it has it already: nothing to record
      // After the lease the reservation may be released by its timeout and taken by another
      // account: recording it now could give one address to two.
      if (change.lease_until_ms() != 0 && at_ms >= change.lease_until_ms())
        return rejected(make_rejection(pb::RESERVATION_EXPIRED, "email",
                                       "The reservation of " + change.email() + " for account "
                                         + cmd.account_id() + " expired before the change"));
      auto* ev = append(d, s, at_ms).mutable_email_changed();
      ev->set_email(change.email());
      ev->set_previous(s.email);
      break;
    }
    case pb::Command::kRecordEmailChangeFailed: {
      const auto& f = cmd.record_email_change_failed();
      auto* ev = append(d, s, at_ms).mutable_email_change_failed();
      ev->set_email(f.email());
      ev->set_reason(f.reason());
      break;
    }
    case pb::Command::kGetAccount:
    case pb::Command::BODY_NOT_SET:
      break;
  }
  return d;
}

} // namespace

state initial_state(std::string_view id) {
  state s;
  s.id = std::string{id};
  return s;
}

decision decide(const state& s, const pb::Command& cmd, std::int64_t now_ms, const rules& r) {
  // 1. The envelope.
  if (cmd.body_case() == pb::Command::BODY_NOT_SET)
    return rejected(invalid("body", "The command has no body"));
  if (!valid_account_id(cmd.account_id()))
    return rejected(invalid("id", "An account id must be 1 to 64 characters of A-Z a-z 0-9 . _ -"));
  bool keyed = cmd.has_idempotency_key() && !cmd.has_get_account();
  if (keyed && !valid_idempotency_key(cmd.idempotency_key()))
    return rejected(invalid("Idempotency-Key",
                            "An Idempotency-Key must be 1 to 255 visible ASCII characters"));
  // 2. A repeated Idempotency-Key, before existence: a retried open gets its first outcome,
  //    not ACCOUNT_EXISTS.
  std::uint64_t fingerprint = 0;
  if (keyed) {
    fingerprint = request_fingerprint(cmd);
    if (auto replay = check_repeated_key(s, cmd, fingerprint))
      return std::move(*replay);
  }
  // 3. Existence, before the values: a client learns first that the account is wrong.
  if (cmd.has_open_account()) {
    if (s.opened)
      return rejected(make_rejection(pb::ACCOUNT_EXISTS, "",
                                     "Account " + cmd.account_id() + " already exists"));
  } else if (!s.opened) {
    return rejected(make_rejection(pb::ACCOUNT_NOT_FOUND, "",
                                   "Account " + cmd.account_id() + " does not exist"));
  }
  // 4. The values.
  if (auto rej = check_values(cmd, r))
    return rejected(std::move(*rej));
  // 5. A repeated txId, before the version: a client retrying after a success gets its outcome.
  if (auto replay = check_repeated_tx(s, cmd))
    return std::move(*replay);
  // 6. Optimistic concurrency (If-Match).
  if (cmd.has_expected_version() && cmd.expected_version() != s.version)
    return rejected(make_rejection(pb::VERSION_MISMATCH, "",
                                   "Account " + cmd.account_id() + " is at version "
                                     + std::to_string(s.version) + ", not "
                                     + std::to_string(cmd.expected_version())));
  // 7. The business rules.
  auto d = decide_business(s, cmd, std::max(now_ms, s.last_at_ms));
  for (auto& ev : d.events)
    ev.set_schema_version(ev.has_money_deposited() ? r.deposit_event_version
                                                   : current_event_version(ev.payload_case()));
  // Every event of a keyed command carries the key, so evolve rebuilds the key window.
  if (keyed)
    for (auto& ev : d.events) {
      ev.set_idempotency_key(cmd.idempotency_key());
      ev.set_request_fingerprint(fingerprint);
    }
  return d;
}

std::uint64_t request_fingerprint(const pb::Command& cmd) {
  auto bare = cmd;
  bare.clear_idempotency_key();
  bare.clear_expected_version();
  // "api" is the default source: a deposit through the API fingerprints as it did before
  // DepositMoney had a source, so a key used before an upgrade is recognised after it.
  if (bare.has_deposit_money() && bare.deposit_money().source() == deposit_source_api)
    bare.mutable_deposit_money()->clear_source();
  std::string bytes;
  {
    google::protobuf::io::StringOutputStream out{&bytes};
    google::protobuf::io::CodedOutputStream coded{&out};
    coded.SetSerializationDeterministic(true);
    bare.SerializeToCodedStream(&coded);
  }
  // FNV-1a, 64 bit: the same on every node, compiler and run.
  std::uint64_t h = 1469598103934665603ull;
  for (unsigned char c : bytes) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}

// ---------------------------------------------------------------- evolve

namespace {

/// Remembers an event of a keyed command that is not a transaction, with the command's other
/// events: they are adjacent and share key and fingerprint. (A second command with the same key
/// and request right after the first cannot have been accepted: the newest record is always in
/// the window, so it was answered as a replay.)
void remember_keyed(state& s, const pb::Event& ev, const rules& r) {
  const auto* last = s.recent_txs.newest();
  if (last != nullptr && last->tx_id().empty() && last->events_size() > 0
      && last->idempotency_key() == ev.idempotency_key()
      && last->request_fingerprint() == ev.request_fingerprint()
      && last->events(last->events_size() - 1).seq() + 1 == ev.seq()) {
    s.recent_txs.extend_newest(ev);
    return;
  }
  pb::TxRecord rec;
  rec.set_seq(ev.seq());
  rec.set_at_ms(ev.at_ms());
  rec.set_idempotency_key(ev.idempotency_key());
  rec.set_request_fingerprint(ev.request_fingerprint());
  *rec.add_events() = ev;
  s.recent_txs.remember(std::move(rec), r.tx_window);
}

} // namespace

void evolve(state& s, const pb::Event& ev, const rules& r) {
  assert(ev.seq() == s.version + 1);
  bool remembered = false;
  auto remember = [&](const auto& tx, bool purchase) {
    s.balance = tx.new_balance();
    pb::TxRecord rec;
    rec.set_tx_id(tx.tx_id());
    rec.set_purchase(purchase);
    rec.set_amount(tx.amount());
    rec.set_currency(tx.currency());
    rec.set_new_balance(tx.new_balance());
    if constexpr (requires { tx.source(); })
      rec.set_source(tx.source()); // a deposit's
    rec.set_seq(ev.seq());
    rec.set_at_ms(ev.at_ms());
    // A keyed transaction is one record, found by its txId and by its key.
    rec.set_idempotency_key(ev.idempotency_key());
    rec.set_request_fingerprint(ev.request_fingerprint());
    s.recent_txs.remember(std::move(rec), r.tx_window);
    remembered = true;
  };
  switch (ev.payload_case()) {
    case pb::Event::kAccountOpened: {
      const auto& e = ev.account_opened();
      if (s.id.empty())
        s.id = ev.account_id();
      s.opened = true;
      s.owner = e.owner();
      s.country = e.country();
      s.currency = e.currency();
      s.limit = e.limit();
      s.balance = 0;
      s.status = pb::ACTIVE;
      s.opened_at_ms = ev.at_ms();
      break;
    }
    case pb::Event::kLimitUpdated:
      s.limit = ev.limit_updated().new_limit();
      break;
    case pb::Event::kLimitChanged:
      s.limit = ev.limit_changed().new_limit();
      break;
    case pb::Event::kItemPurchased:
      remember(ev.item_purchased(), true);
      break;
    case pb::Event::kMoneyDeposited:
      remember(ev.money_deposited(), false);
      break;
    case pb::Event::kStatusChanged:
      s.status = ev.status_changed().to();
      break;
    case pb::Event::kAddressUpdated:
      s.address = ev.address_updated().address();
      s.country = ev.address_updated().address().country();
      break;
    case pb::Event::kPhoneNumberAdded:
      s.phones.push_back(ev.phone_number_added().number());
      break;
    case pb::Event::kEmailChanged:
      s.email = ev.email_changed().email();
      break;
    case pb::Event::kEmailChangeFailed:
    case pb::Event::PAYLOAD_NOT_SET:
      break;
  }
  if (!remembered && !ev.idempotency_key().empty())
    remember_keyed(s, ev, r);
  s.version = ev.seq();
  s.last_at_ms = ev.at_ms();
}

state evolved(state s, const pb::Event& ev, const rules& r) {
  evolve(s, ev, r);
  return s;
}

// ---------------------------------------------------------------- snapshots, view, reply

pb::Snapshot to_snapshot(const state& s) {
  pb::Snapshot snap;
  snap.set_schema_version(current_snapshot_version);
  snap.set_account_id(s.id);
  snap.set_opened(s.opened);
  snap.set_owner(s.owner);
  snap.set_country(s.country);
  snap.set_currency(s.currency);
  snap.set_limit(s.limit);
  snap.set_balance(s.balance);
  snap.set_status(s.status);
  for (const auto& phone : s.phones)
    snap.add_phones(phone);
  if (s.address)
    *snap.mutable_address() = *s.address;
  snap.set_version(s.version);
  snap.set_last_at_ms(s.last_at_ms);
  for (const auto& rec : s.recent_txs.records())
    *snap.add_recent_txs() = rec;
  snap.set_opened_at_ms(s.opened_at_ms);
  snap.set_recent_txs_complete(s.recent_txs.complete());
  snap.set_email(s.email);
  return snap;
}

bool snapshot_covers_window(const pb::Snapshot& snap, const rules& r) {
  // Replaying every event remembers the last min(tx_window, all) records; the snapshot has its
  // last n. Those agree when n >= tx_window, or when n are all there ever were. No records at
  // all means none was ever forgotten either (a window keeps at least its newest record).
  auto n = static_cast<std::size_t>(snap.recent_txs_size());
  return n >= r.tx_window || n == 0 || snap.recent_txs_complete();
}

state from_snapshot(const pb::Snapshot& stored, const rules& r) {
  // An older snapshot is read as today's (a v1 one's deposit records get their source).
  std::optional<pb::Snapshot> upcast_copy;
  if (stored.schema_version() != current_snapshot_version)
    upcast_copy = upcast(stored);
  const auto& snap = upcast_copy ? *upcast_copy : stored;
  state s;
  s.id = snap.account_id();
  s.opened = snap.opened();
  s.owner = snap.owner();
  s.country = snap.country();
  s.currency = snap.currency();
  s.limit = snap.limit();
  s.balance = snap.balance();
  s.status = snap.status();
  s.phones.assign(snap.phones().begin(), snap.phones().end());
  if (snap.has_address())
    s.address = snap.address();
  s.version = snap.version();
  s.last_at_ms = snap.last_at_ms();
  s.opened_at_ms = snap.opened_at_ms();
  s.email = snap.email();
  // Trimmed to the configured window now, as a replay of the events would be.
  for (const auto& rec : snap.recent_txs())
    s.recent_txs.remember(rec, r.tx_window);
  if (!snap.recent_txs_complete() && snap.recent_txs_size() > 0)
    s.recent_txs.mark_incomplete();
  return s;
}

pb::AccountView view_of(const state& s) {
  pb::AccountView view;
  view.set_id(s.id);
  view.set_owner(s.owner);
  view.set_country(s.country);
  view.set_currency(s.currency);
  view.set_limit(s.limit);
  view.set_balance(s.balance);
  view.set_status(s.status);
  for (const auto& phone : s.phones)
    view.add_phones(phone);
  if (s.address)
    *view.mutable_address() = *s.address;
  view.set_version(s.version);
  view.set_opened_at_ms(s.opened_at_ms);
  view.set_updated_at_ms(s.last_at_ms);
  view.set_email(s.email);
  return view;
}

pb::Reply reply_for(const state& after, const decision& d) {
  pb::Reply reply;
  if (d.rejection) {
    *reply.mutable_rejection() = *d.rejection;
    return reply;
  }
  if (!d.replayed.empty()) {
    for (const auto& ev : d.replayed)
      *reply.add_events() = ev;
    reply.set_replayed(true);
  } else {
    for (const auto& ev : d.events)
      *reply.add_events() = ev;
  }
  *reply.mutable_account() = view_of(after);
  return reply;
}

} // namespace kontor::account

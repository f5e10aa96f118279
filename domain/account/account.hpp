#pragma once

// The account aggregate: pure decide/evolve over Protobuf commands and events.
// No I/O, no clocks, no threads: callers pass the time in.

#include <cstddef>
#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "account.pb.h"
#include "domain/account/schema.hpp"
#include "domain/email/address.hpp"

namespace kontor::account {

/// Limits that come from configuration.
struct rules {
  std::int64_t max_limit = 1'000'000'000'000;  ///< MAX_LIMIT: highest allowed credit limit
  std::int64_t max_amount = 1'000'000'000'000; ///< MAX_AMOUNT: highest amount of one transaction
  std::size_t tx_window = 1024;                ///< txIds and Idempotency-Keys remembered
  /// Version new MoneyDeposited events are written with: 2 (today's), or 1 while nodes of a
  /// build before v2 still read the journal (they refuse v2). A v1 deposit still carries its
  /// source, which old builds ignore and the upcaster keeps.
  std::uint32_t deposit_event_version = current_event_version(pb::Event::kMoneyDeposited);
};

/// The most recent accepted transactions and keyed commands of one account (one record each,
/// a keyed transaction is one record), oldest first, bounded by `rules::tx_window`. A txId or
/// Idempotency-Key older than the window is forgotten and would be applied again.
class tx_window {
public:
  /// The record of transaction `tx_id`, or null.
  const pb::TxRecord* find(std::string_view tx_id) const;
  /// The record of the command that carried Idempotency-Key `key`, or null.
  const pb::TxRecord* find_key(std::string_view key) const;
  /// Remembers `rec`, forgetting the oldest records beyond `capacity`.
  void remember(pb::TxRecord rec, std::size_t capacity);
  /// Adds `ev` to the events of the newest record (the next event of the same keyed command).
  void extend_newest(const pb::Event& ev);
  /// The newest record, or null.
  const pb::TxRecord* newest() const;
  /// Records oldest first.
  const std::deque<pb::TxRecord>& records() const noexcept { return records_; }
  std::size_t size() const noexcept { return records_.size(); }
  /// True when no record was ever forgotten: the window holds every record since the account
  /// was opened (so it is the same under any larger capacity).
  bool complete() const noexcept { return complete_; }
  /// Marks the window as possibly missing older records (restored from a snapshot that does not
  /// say it is complete).
  void mark_incomplete() noexcept { complete_ = false; }

private:
  /// Points `index` at absolute position `pos` for `name` (unless empty).
  static void index(std::unordered_map<std::string, std::size_t>& index, const std::string& name,
                    std::size_t pos);
  /// Removes `name` from `index` if it points at absolute position `pos`.
  static void unindex(std::unordered_map<std::string, std::size_t>& index,
                      const std::string& name, std::size_t pos);

  std::deque<pb::TxRecord> records_;
  std::unordered_map<std::string, std::size_t> index_;     // tx_id -> absolute position
  std::unordered_map<std::string, std::size_t> key_index_; // idempotency key -> absolute position
  std::size_t dropped_ = 0;                                // records forgotten so far
  bool complete_ = true;
};

/// The state of one account, rebuilt from its events only.
struct state {
  std::string id;
  bool opened = false;
  std::string owner;
  std::string country;
  std::string currency;
  std::int64_t limit = 0;
  std::int64_t balance = 0;
  pb::Status status = pb::STATUS_UNSPECIFIED;
  std::vector<std::string> phones;
  std::optional<pb::Address> address;
  std::uint64_t version = 0;   ///< seq of the last applied event
  std::int64_t opened_at_ms = 0;
  std::int64_t last_at_ms = 0; ///< at_ms of the last applied event
  tx_window recent_txs;
  std::string email;           ///< the owner e-mail, normalized ("" for none)
};

/// The outcome of `decide`: events to append (possibly none), or a rejection, or a replay of a
/// repeated txId's or Idempotency-Key's first outcome.
struct decision {
  std::vector<pb::Event> events;            ///< in order; seq = version + 1, + 2, ...
  std::optional<pb::Rejection> rejection;   ///< set: nothing may be appended
  std::vector<pb::Event> replayed;          ///< non-empty: a repeat; the first outcome's events
};

/// The empty state of account `id` (not opened, version 0).
state initial_state(std::string_view id);

/// Validates `cmd` against `s` and derives the events it causes. Never changes `s`.
/// `now_ms` stamps the events (raised to s.last_at_ms if the clock went back).
decision decide(const state& s, const pb::Command& cmd, std::int64_t now_ms, const rules& r);

/// Applies one event. Events must come in sequence (ev.seq == s.version + 1).
void evolve(state& s, const pb::Event& ev, const rules& r);

/// Functional form: returns the state after `ev`.
state evolved(state s, const pb::Event& ev, const rules& r);

/// The snapshot of `s`.
pb::Snapshot to_snapshot(const state& s);

/// True when restoring `snap` and applying the events after it gives the same state as applying
/// every event under `r`: its remembered records cover `r.tx_window` (the window an account
/// remembers must not depend on whether it has a snapshot). When false, recover from events.
bool snapshot_covers_window(const pb::Snapshot& snap, const rules& r);

/// The state in `snap`, its window trimmed to `r.tx_window`. For a snapshot that
/// `snapshot_covers_window(snap, r)`, `from_snapshot(to_snapshot(s), r)` equals `s` under `r`.
/// `snap` may be of any version `upcast` accepts: an older one is upcast first.
state from_snapshot(const pb::Snapshot& snap, const rules& r);

/// The fingerprint that tells whether a repeated Idempotency-Key came with the same request: a
/// stable 64-bit hash (FNV-1a) of the command's deterministic Protobuf encoding without its
/// key and its expected version (If-Match). Same route and same body values: same fingerprint.
std::uint64_t request_fingerprint(const pb::Command& cmd);

/// What GET /accounts/{id} shows of `s`.
pb::AccountView view_of(const state& s);

/// Builds the entity's reply: the rejection, or the events and the account after them.
pb::Reply reply_for(const state& after, const decision& d);

/// Parses a stored event and upcasts it to the current version of its type (schema.hpp).
/// Returns nullopt for bytes that are not an Event of a known type and version.
std::optional<pb::Event> parse_event(std::string_view bytes);

/// The name of an event's type as in the API ("AccountOpened", ...).
std::string_view event_type(const pb::Event& ev);

/// Value checks shared by the gateway and decide (API.md "Values").
bool valid_account_id(std::string_view id);  ///< 1-64 of A-Z a-z 0-9 . _ -, but not "." or ".."
bool valid_country(std::string_view code);   ///< ISO 3166-1 alpha-2, assigned codes
bool valid_currency(std::string_view code);  ///< ISO 4217, active codes
bool valid_phone(std::string_view number);   ///< '+' then 7-15 digits, spaces allowed
bool valid_idempotency_key(std::string_view key); ///< 1-255 visible ASCII characters (0x21-0x7e)

} // namespace kontor::account

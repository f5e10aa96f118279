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

namespace kontor::account {

/// Schema version written into every new Event and Snapshot.
inline constexpr std::uint32_t current_schema_version = 1;

/// Limits that come from configuration.
struct rules {
  std::int64_t max_limit = 1'000'000'000'000;  ///< MAX_LIMIT: highest allowed credit limit
  std::int64_t max_amount = 1'000'000'000'000; ///< MAX_AMOUNT: highest amount of one transaction
  std::size_t tx_window = 1024;                ///< accepted txIds remembered per account
};

/// The most recent accepted transactions of one account, oldest first, bounded by
/// `rules::tx_window`. A txId older than the window is forgotten and would be applied again.
class tx_window {
public:
  /// The record of `tx_id`, or null.
  const pb::TxRecord* find(std::string_view tx_id) const;
  /// Remembers `rec`, forgetting the oldest record beyond `capacity`.
  void remember(pb::TxRecord rec, std::size_t capacity);
  /// Records oldest first.
  const std::deque<pb::TxRecord>& records() const noexcept { return records_; }
  std::size_t size() const noexcept { return records_.size(); }

private:
  std::deque<pb::TxRecord> records_;
  std::unordered_map<std::string, std::size_t> index_; // tx_id -> absolute position
  std::size_t dropped_ = 0;                            // records forgotten so far
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
};

/// The outcome of `decide`: events to append (possibly none), or a rejection, or a replay of a
/// repeated txId's first outcome.
struct decision {
  std::vector<pb::Event> events;            ///< in order; seq = version + 1, + 2, ...
  std::optional<pb::Rejection> rejection;   ///< set: nothing may be appended
  std::optional<pb::Event> replayed;        ///< set: a repeated txId; its original event
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

/// The snapshot of `s` and back. `from_snapshot(to_snapshot(s))` equals `s`.
pb::Snapshot to_snapshot(const state& s);
state from_snapshot(const pb::Snapshot& snap);

/// What GET /accounts/{id} shows of `s`.
pb::AccountView view_of(const state& s);

/// Builds the entity's reply: the rejection, or the events and the account after them.
pb::Reply reply_for(const state& after, const decision& d);

/// Parses a stored event, upcasting older schema versions. Returns nullopt for bytes that are
/// not an Event of a known schema version.
std::optional<pb::Event> parse_event(std::string_view bytes);

/// The name of an event's type as in the API ("AccountOpened", ...).
std::string_view event_type(const pb::Event& ev);

/// Value checks shared by the gateway and decide (API.md "Values").
bool valid_account_id(std::string_view id);  ///< 1-64 of A-Z a-z 0-9 . _ -, but not "." or ".."
bool valid_country(std::string_view code);   ///< ISO 3166-1 alpha-2, assigned codes
bool valid_currency(std::string_view code);  ///< ISO 4217, active codes
bool valid_phone(std::string_view number);   ///< '+' then 7-15 digits, spaces allowed

} // namespace kontor::account

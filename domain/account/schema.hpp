#pragma once

// Schema versions of the persisted account types, and the upcasters that read older versions.
//
// The rule: `Event.schema_version` is the version of the event's own type (MoneyDeposited v2,
// AccountOpened v1, ...), and `Snapshot.schema_version` the snapshot's. A change of what an
// event type means, or a new field whose absence in old events must be read as some value,
// raises that type's version and adds one upcaster step from the old version to the new one.
// Steps are never changed or removed: a v1 event reaches today's version through every step in
// turn (v1 -> v2 -> v3 ...), so the journal is never rewritten and its format never bumped.
// Everything that reads a stored event goes through parse_event (account.hpp), which upcasts,
// so decide/evolve, projections and the API only ever see current versions.

#include <cstdint>
#include <optional>
#include <span>
#include <string_view>

#include "account.pb.h"

namespace kontor::account {

/// The version an event of type `type` is written with today (0 for PAYLOAD_NOT_SET).
constexpr std::uint32_t current_event_version(pb::Event::PayloadCase type) {
  switch (type) {
    case pb::Event::kMoneyDeposited:
      return 2; // v2: `source`
    case pb::Event::kAccountOpened:
    case pb::Event::kLimitUpdated:
    case pb::Event::kLimitChanged:
    case pb::Event::kItemPurchased:
    case pb::Event::kStatusChanged:
    case pb::Event::kAddressUpdated:
    case pb::Event::kPhoneNumberAdded:
    case pb::Event::kEmailChanged:
    case pb::Event::kEmailChangeFailed:
      return 1;
    case pb::Event::PAYLOAD_NOT_SET:
      break;
  }
  return 0;
}

/// The version a Snapshot is written with today. v2: deposit records carry their `source`.
/// v3: the owner `email` (a build before it would drop the field silently; to it a v3 snapshot
/// is newer, so it replays events and refuses the EmailChanged it cannot read).
inline constexpr std::uint32_t current_snapshot_version = 3;

/// `MoneyDeposited.source` of a deposit made through the HTTP API (the only source before v2).
inline constexpr std::string_view deposit_source_api = "api";
/// `MoneyDeposited.source` of a deposit made by the CEO bonus policy.
inline constexpr std::string_view deposit_source_bonus = "bonus";

/// True for a known deposit source ("api", "bonus").
bool valid_deposit_source(std::string_view source);

/// One step of an event type's version chain: rewrites an event of type `type` at version
/// `from` into version `from + 1` (the chain sets schema_version; the step only the payload).
struct event_upcaster {
  pb::Event::PayloadCase type;
  std::uint32_t from;
  void (*step)(pb::Event& ev);
};

/// Every registered step, each type's in version order.
std::span<const event_upcaster> event_upcasters();

/// MoneyDeposited v1 -> v2: v1 had no `source`; every v1 deposit came through the HTTP API, so
/// an empty source becomes "api" (a source already set is kept).
void money_deposited_v1_to_v2(pb::Event& ev);

/// `ev` at the current version of its type, through every step from its version on. Nullopt
/// when its version is 0, newer than today's, its payload is unknown, or a step is missing.
std::optional<pb::Event> upcast(pb::Event ev);

/// `snap` at the current snapshot version: a v1 snapshot's deposit records get source "api",
/// and the events a snapshot keeps for keyed commands are upcast like stored events. Nullopt
/// when its version is 0 or newer than today's, or a kept event cannot be upcast.
std::optional<pb::Snapshot> upcast(pb::Snapshot snap);

} // namespace kontor::account

// Schema versions and upcasters of the persisted account types (see schema.hpp for the rule).

#include "domain/account/schema.hpp"

#include <algorithm>
#include <string>

namespace kontor::account {

bool valid_deposit_source(std::string_view source) {
  return source == deposit_source_api || source == deposit_source_bonus;
}

void money_deposited_v1_to_v2(pb::Event& ev) {
  auto* dep = ev.mutable_money_deposited();
  if (dep->source().empty())
    dep->set_source(std::string{deposit_source_api});
}

namespace {

constexpr event_upcaster upcasters[] = {
  {pb::Event::kMoneyDeposited, 1, &money_deposited_v1_to_v2},
};

} // namespace

std::span<const event_upcaster> event_upcasters() {
  return upcasters;
}

std::optional<pb::Event> upcast(pb::Event ev) {
  const auto type = ev.payload_case();
  const auto current = current_event_version(type);
  if (current == 0 || ev.schema_version() == 0 || ev.schema_version() > current)
    return std::nullopt;
  while (ev.schema_version() < current) {
    const auto from = ev.schema_version();
    auto it = std::ranges::find_if(upcasters, [&](const event_upcaster& u) {
      return u.type == type && u.from == from;
    });
    if (it == std::end(upcasters))
      return std::nullopt;
    it->step(ev);
    ev.set_schema_version(from + 1);
  }
  return ev;
}

std::optional<pb::Snapshot> upcast(pb::Snapshot snap) {
  if (snap.schema_version() == 0 || snap.schema_version() > current_snapshot_version)
    return std::nullopt;
  if (snap.schema_version() < 2) {
    // v1 -> v2: TxRecord.source did not exist; every v1 deposit came through the HTTP API.
    for (auto& rec : *snap.mutable_recent_txs())
      if (!rec.tx_id().empty() && !rec.purchase() && rec.source().empty())
        rec.set_source(std::string{deposit_source_api});
    snap.set_schema_version(2);
  }
  // v2 -> v3: `email` is new; no account had one before, and "" is none.
  if (snap.schema_version() < 3)
    snap.set_schema_version(3);
  // Kept events are stored events like any other: they may be older than their type today.
  for (auto& rec : *snap.mutable_recent_txs())
    for (auto& ev : *rec.mutable_events()) {
      auto current = upcast(std::move(ev));
      if (!current)
        return std::nullopt;
      ev = std::move(*current);
    }
  return snap;
}

} // namespace kontor::account

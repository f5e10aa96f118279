#pragma once

// The e-mail reservation aggregate: pure decide/evolve over Protobuf commands and events, like
// the account. No I/O, no clocks: callers pass the time in.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "reservation.pb.h"

namespace kontor::email {

/// The state of one address's reservation, rebuilt from its events only.
struct reservation {
  std::string address;
  pb::Status status = pb::FREE;
  std::string account;              ///< claimant or holder ("" when free)
  std::uint64_t claim = 0;          ///< seq of the Reserved event of the claim or hold
  std::int64_t expires_at_ms = 0;   ///< RESERVED: when the claim times out
  std::uint64_t version = 0;        ///< seq of the last applied event
  std::int64_t last_at_ms = 0;
};

/// The outcome of `decide`: events to append (possibly none) and the reply's flags.
struct decision {
  std::vector<pb::Event> events;
  bool taken = false;
  bool invalid = false;
  std::string message;
};

/// The free reservation of `address`.
reservation initial(std::string_view address);

/// Decides `cmd` against `r` at `now_ms`; never changes `r`.
decision decide(const reservation& r, const pb::Command& cmd, std::int64_t now_ms);

/// Applies one event (ev.seq == r.version + 1).
void evolve(reservation& r, const pb::Event& ev);

/// The reply: flags, events and the reservation after them.
pb::Reply reply_for(const reservation& after, const decision& d);

pb::View view_of(const reservation& r);
pb::Snapshot to_snapshot(const reservation& r);
reservation from_snapshot(const pb::Snapshot& snap);

/// Parses a stored reservation event (nullopt: not one of a version this build reads).
std::optional<pb::Event> parse_event(std::string_view bytes);

/// The type key of reservation entities in the sharding runtime: their entity ids are
/// "email:<normalized address>".
inline constexpr std::string_view entity_type = "email";

/// The entity id of `normalized`'s reservation.
std::string entity_id_of(std::string_view normalized);

} // namespace kontor::email

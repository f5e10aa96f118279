#include "domain/email/reservation.hpp"

#include <algorithm>
#include <climits>

namespace kontor::email {

namespace {

constexpr std::uint32_t event_version = 1;
constexpr std::uint32_t snapshot_version = 1;

pb::Event& append(decision& d, const reservation& r, std::int64_t at_ms) {
  auto& ev = d.events.emplace_back();
  ev.set_schema_version(event_version);
  ev.set_address(r.address);
  ev.set_seq(r.version + d.events.size());
  ev.set_at_ms(at_ms);
  return ev;
}

decision invalid(std::string message) {
  decision d;
  d.invalid = true;
  d.message = std::move(message);
  return d;
}

void release(decision& d, const reservation& r, std::int64_t at_ms, const char* reason) {
  auto* ev = append(d, r, at_ms).mutable_released();
  ev->set_account(r.account);
  ev->set_reason(reason);
}

} // namespace

reservation initial(std::string_view address) {
  reservation r;
  r.address = std::string{address};
  return r;
}

decision decide(const reservation& r, const pb::Command& cmd, std::int64_t now_ms) {
  const auto at_ms = std::max(now_ms, r.last_at_ms);
  if (cmd.address() != r.address)
    return invalid("the command is for " + cmd.address() + ", not " + r.address);
  decision d;
  switch (cmd.body_case()) {
    case pb::Command::kReserve: {
      const auto& c = cmd.reserve();
      if (c.account().empty() || c.timeout_ms() <= 0)
        return invalid("a reservation needs an account and a positive timeout");
      if (r.status != pb::FREE && r.account != c.account()) {
        d.taken = true;
        d.message = r.address + " is taken";
        return d;
      }
      // Free, or this account's: a new claim (a retry, or the account takes it back after it
      // dropped it; the new number makes what was sent for the older claim stale).
      auto* ev = append(d, r, at_ms).mutable_reserved();
      ev->set_account(c.account());
      ev->set_expires_at_ms(at_ms + c.timeout_ms());
      return d;
    }
    case pb::Command::kConfirm:
      if (r.status == pb::RESERVED && r.account == cmd.confirm().account())
        append(d, r, at_ms).mutable_confirmed()->set_account(r.account);
      else if (r.status == pb::FREE || r.account != cmd.confirm().account())
        return invalid(r.address + " is not claimed by " + cmd.confirm().account());
      return d;
    case pb::Command::kCancel:
      if (r.status == pb::RESERVED && r.account == cmd.cancel().account()
          && r.claim == cmd.cancel().claim())
        release(d, r, at_ms, "claim_failed");
      return d;
    case pb::Command::kRelease: {
      // Only a hold: a claim (RESERVED) may still be recorded within its lease; its settle
      // decides it after the lease.
      const auto& c = cmd.release();
      if (r.status == pb::HELD && r.account == c.account() && r.claim == c.claim())
        release(d, r, at_ms, "changed");
      return d;
    }
    case pb::Command::kSettle: {
      const auto& c = cmd.settle();
      if (r.status == pb::FREE || r.claim != c.claim())
        return d; // released or claimed anew since: nothing to settle
      if (c.account_has_it()) {
        if (r.status == pb::RESERVED)
          append(d, r, at_ms).mutable_confirmed()->set_account(r.account);
      } else {
        // Never recorded, or recorded and dropped again before the hold was released.
        release(d, r, at_ms, r.status == pb::RESERVED ? "expired" : "changed");
      }
      return d;
    }
    case pb::Command::kGet:
      return d;
    case pb::Command::BODY_NOT_SET:
      break;
  }
  return invalid("the command has no body");
}

void evolve(reservation& r, const pb::Event& ev) {
  switch (ev.payload_case()) {
    case pb::Event::kReserved:
      r.status = pb::RESERVED;
      r.account = ev.reserved().account();
      r.claim = ev.seq();
      r.expires_at_ms = ev.reserved().expires_at_ms();
      break;
    case pb::Event::kConfirmed:
      r.status = pb::HELD;
      r.expires_at_ms = 0;
      break;
    case pb::Event::kReleased:
      r.status = pb::FREE;
      r.account.clear();
      r.claim = 0;
      r.expires_at_ms = 0;
      break;
    case pb::Event::PAYLOAD_NOT_SET:
      break;
  }
  r.version = ev.seq();
  r.last_at_ms = ev.at_ms();
}

pb::View view_of(const reservation& r) {
  pb::View v;
  v.set_address(r.address);
  v.set_status(r.status);
  v.set_account(r.account);
  v.set_claim(r.claim);
  v.set_expires_at_ms(r.expires_at_ms);
  v.set_version(r.version);
  return v;
}

pb::Reply reply_for(const reservation& after, const decision& d) {
  pb::Reply reply;
  reply.set_taken(d.taken);
  reply.set_invalid(d.invalid);
  reply.set_message(d.message);
  for (const auto& ev : d.events)
    *reply.add_events() = ev;
  *reply.mutable_view() = view_of(after);
  return reply;
}

pb::Snapshot to_snapshot(const reservation& r) {
  pb::Snapshot s;
  s.set_schema_version(snapshot_version);
  s.set_address(r.address);
  s.set_status(r.status);
  s.set_account(r.account);
  s.set_claim(r.claim);
  s.set_expires_at_ms(r.expires_at_ms);
  s.set_version(r.version);
  s.set_last_at_ms(r.last_at_ms);
  return s;
}

reservation from_snapshot(const pb::Snapshot& s) {
  reservation r;
  r.address = s.address();
  r.status = s.status();
  r.account = s.account();
  r.claim = s.claim();
  r.expires_at_ms = s.expires_at_ms();
  r.version = s.version();
  r.last_at_ms = s.last_at_ms();
  return r;
}

std::optional<pb::Event> parse_event(std::string_view bytes) {
  if (bytes.size() > static_cast<std::size_t>(INT_MAX))
    return std::nullopt;
  pb::Event ev;
  if (!ev.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))
      || ev.schema_version() != event_version || ev.payload_case() == pb::Event::PAYLOAD_NOT_SET)
    return std::nullopt;
  return ev;
}

std::string entity_id_of(std::string_view normalized) {
  std::string id{entity_type};
  id += ':';
  id += normalized;
  return id;
}

} // namespace kontor::email

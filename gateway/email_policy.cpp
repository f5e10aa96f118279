#include "gateway/email_policy.hpp"

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>

#include "domain/account/account.hpp"
#include "domain/email/reservation.hpp"
#include "gateway/account_entity.hpp"
#include "gateway/email_change.hpp"

namespace kontor::gateway {

namespace {

namespace json = boost::json;

class email_handler final : public policy::policy_handler {
public:
  email_handler(const bridge& entities, std::chrono::milliseconds timeout)
    : entities_(entities), timeout_(timeout) {}

  std::string name() const override { return "email"; }

  std::optional<policy::effect> select(const persistence::stored_event& stored) override {
    if (entity_type_of(stored.persistence_id) == email::entity_type) {
      auto ev = email::parse_event(stored.payload);
      if (!ev || !ev->has_reserved())
        return std::nullopt;
      json::object body{{"settle", ev->address()},
                        {"account", ev->reserved().account()},
                        {"claim", ev->seq()}};
      return policy::effect{"email-settle:" + ev->address() + ":" + std::to_string(ev->seq()),
                            json::serialize(body), ev->reserved().expires_at_ms()};
    }
    if (!is_account_stream(stored))
      return std::nullopt;
    auto ev = account::parse_event(stored.payload);
    if (!ev || !ev->has_email_changed() || ev->email_changed().previous().empty())
      return std::nullopt;
    json::object body{{"release", ev->email_changed().previous()}, {"account", ev->account_id()}};
    return policy::effect{"email-release:" + ev->account_id() + ":" + std::to_string(ev->seq()),
                          json::serialize(body)};
  }

  policy::attempt_result carry_out(const policy::effect& e) override {
    json::error_code ec;
    auto v = json::parse(e.payload, ec);
    if (ec || !v.is_object())
      return {policy::outcome::rejected, "not an e-mail effect: " + e.payload};
    const auto& o = v.as_object();
    auto str = [&](const char* k) {
      const auto* f = o.if_contains(k);
      return f && f->is_string() ? std::string(f->as_string()) : std::string{};
    };
    auto num = [&](const char* k) -> std::uint64_t {
      const auto* f = o.if_contains(k);
      return f ? f->to_number<std::uint64_t>(ec) : 0;
    };
    const auto account_id = str("account");
    if (auto address = str("settle"); !address.empty())
      return settle(address, account_id, num("claim"));
    if (auto address = str("release"); !address.empty())
      return release(address, account_id);
    return {policy::outcome::rejected, "not an e-mail effect: " + e.payload};
  }

private:
  /// Claim `claim` of `address` by `account_id` timed out: confirmed if the account has the
  /// address, else released. Its lease is over, so the account's answer is final.
  policy::attempt_result settle(const std::string& address, const std::string& account_id,
                                std::uint64_t claim) {
    auto a = await_answer(
      [&](std::function<void(entity_answer)> done) { ask_account_state(entities_, account_id, std::move(done)); },
      timeout_);
    auto has = a ? email_in_answer(*a) : std::nullopt;
    if (!has)
      return {policy::outcome::defer, a ? "account " + account_id + ": " + a->message
                                        : "no answer from account " + account_id + " in time"};
    auto cmd = reservation_command(address);
    cmd.mutable_settle()->set_claim(claim);
    cmd.mutable_settle()->set_account_has_it(*has == address);
    return to_reservation(address, cmd);
  }

  /// `account_id` changed from `address` to another: free it unless it has it again.
  policy::attempt_result release(const std::string& address, const std::string& account_id) {
    // Three requests, each bounded by the bridge's command timeout.
    auto a = await_answer(
      [&](std::function<void(entity_answer)> done) { release_if_dropped(entities_, account_id, address, std::move(done)); },
      3 * timeout_);
    if (!a)
      return {policy::outcome::defer, "no answer releasing " + address + " in time"};
    if (a->code != entity_answer::status::ok)
      return {policy::outcome::defer, "releasing " + address + ": " + a->message};
    return {policy::outcome::done, ""};
  }

  policy::attempt_result to_reservation(const std::string& address, const email::pb::Command& cmd) {
    auto a = entities_.ask_and_wait(email::entity_id_of(address), cmd.SerializeAsString(), timeout_);
    if (!a)
      return {policy::outcome::defer, "no answer from the reservation of " + address + " in time"};
    if (a->code != entity_answer::status::ok)
      return {policy::outcome::defer, "the reservation of " + address + ": " + a->message};
    email::pb::Reply reply;
    if (!reply.ParseFromString(a->reply))
      return {policy::outcome::defer, "unreadable answer from the reservation of " + address};
    if (reply.invalid())
      return {policy::outcome::rejected, reply.message()};
    return {policy::outcome::done, ""};
  }

  const bridge& entities_;
  std::chrono::milliseconds timeout_;
};

} // namespace

std::shared_ptr<policy::policy_handler> email_policy(const bridge& entities,
                                                     std::chrono::milliseconds attempt_timeout) {
  return std::make_shared<email_handler>(entities, attempt_timeout);
}

} // namespace kontor::gateway

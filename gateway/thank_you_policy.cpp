#include "gateway/thank_you_policy.hpp"
#include "gateway/account_entity.hpp"

#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>

#include "domain/account/account.hpp"
#include "runtime/core/log.hpp"
#include "runtime/policy/http_post.hpp"

namespace kontor::gateway {

namespace {

class thank_you final : public policy::policy_handler {
public:
  thank_you(thank_you_settings s, policy::http_url url) : settings_(std::move(s)), poster_(std::move(url)) {}

  std::string name() const override { return "thank-you"; }

  std::optional<policy::effect> select(const persistence::stored_event& stored) override {
    if (!is_account_stream(stored))
      return std::nullopt;
    auto ev = account::parse_event(stored.payload);
    if (!ev || !ev->has_money_deposited())
      return std::nullopt;
    const auto& d = ev->money_deposited();
    if (d.amount() < settings_.min_amount)
      return std::nullopt;
    auto id = event_id(ev->account_id(), ev->seq());
    boost::json::object body{{"eventId", id},
                             {"accountId", ev->account_id()},
                             {"seq", ev->seq()},
                             {"txId", d.tx_id()},
                             {"amount", d.amount()},
                             {"currency", d.currency()},
                             {"at", ev->at_ms()}};
    return policy::effect{id, boost::json::serialize(body)};
  }

  policy::attempt_result carry_out(const policy::effect& e) override {
    return poster_.post(e.payload, e.key, settings_.timeout);
  }

private:
  thank_you_settings settings_;
  policy::http_poster poster_;
};

} // namespace

std::string event_id(const std::string& account_id, std::uint64_t seq) {
  return account_id + ":" + std::to_string(seq);
}

std::shared_ptr<policy::policy_handler> thank_you_policy(thank_you_settings settings) {
  auto url = policy::parse_http_url(settings.url);
  if (!url)
    return nullptr;
  return std::make_shared<thank_you>(std::move(settings), std::move(*url));
}

} // namespace kontor::gateway

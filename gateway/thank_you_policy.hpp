#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "runtime/policy/policy.hpp"

namespace kontor::gateway {

/// Settings of the thank-you notification (issue 10: the talk's "thank-you mail").
struct thank_you_settings {
  std::string url;                 ///< http://host[:port]/path of the webhook
  std::int64_t min_amount = 1;     ///< deposits of at least this much are thanked for
  std::chrono::milliseconds timeout{std::chrono::seconds(5)}; ///< per attempt
};

/// The policy "thank-you": for every MoneyDeposited of at least `min_amount`, POSTs
/// {"eventId","accountId","seq","txId","amount","currency","at"} to the webhook with
/// `Idempotency-Key: <event id>` (the event id is "<account id>:<seq>", the same at every
/// redelivery). A deposit's notifications go out in its account's order. nullptr when the URL is
/// not http://host[:port]/path.
std::shared_ptr<policy::policy_handler> thank_you_policy(thank_you_settings settings);

/// The event id of an account's event: "<account id>:<seq>".
std::string event_id(const std::string& account_id, std::uint64_t seq);

} // namespace kontor::gateway

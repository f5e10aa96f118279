#pragma once

#include <chrono>
#include <memory>
#include <string>

#include "gateway/bridge.hpp"
#include "runtime/policy/policy.hpp"

namespace kontor::gateway {

/// The policy "email": the timeouts and clean-ups that keep every address with at most one
/// account and none held by nobody, whatever node dies mid-change.
///  - Reserved (a claim, from a reservation's stream): when the claim times out, asks the
///    account whether it recorded the address; the claim is then confirmed (it did) or released
///    (it did not, and its lease is over, so it never will). Key "email-settle:<address>:<claim>".
///  - EmailChanged with a previous address (from an account's stream): releases the previous
///    address (the gateway does it too; this covers a gateway that died first). Key
///    "email-release:<account>:<seq>".
/// Both are no-ops at the reservation when already done, so redelivery is harmless. A settle waits
/// for its claim's timeout (effect::not_before) without holding up the others, and one whose
/// account or reservation cannot answer (its node is down) is deferred, not given up: it is
/// the only one that may decide, and the others go on meanwhile.
std::shared_ptr<policy::policy_handler> email_policy(const bridge& entities,
                                                     std::chrono::milliseconds attempt_timeout);

} // namespace kontor::gateway

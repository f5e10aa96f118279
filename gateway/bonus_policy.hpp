#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "gateway/bridge.hpp"
#include "runtime/policy/policy.hpp"

namespace kontor::gateway {

/// Settings of the CEO bonus (issue 10: the talk's event → command example).
struct bonus_settings {
  std::string account;               ///< the bonus account's id
  std::int64_t rate_per_mille = 10;  ///< bonus per 1000 of a deposit (10: 1 %)
  std::int64_t max_balance = 0;      ///< cap on the bonus account's balance (0: none)
  std::chrono::milliseconds timeout{std::chrono::seconds(5)}; ///< per attempt
};

/// The bonus `amount` earns: floor(amount * rate_per_mille / 1000), in minor units.
std::int64_t bonus_of(std::int64_t amount, std::int64_t rate_per_mille);

/// The txId (and the policy's key) of the bonus for event `seq` of `account`:
/// "bonus:<account>:<seq>", the same at every redelivery.
std::string bonus_tx_id(const std::string& account, std::uint64_t seq);

/// The policy "bonus": for every MoneyDeposited into an account other than the bonus account and
/// not itself a bonus (source "bonus"), deposits its bonus (skipped when 0) into the bonus
/// account with source "bonus", txId bonus_tx_id(...) and the cap as DepositMoney.max_balance,
/// through `entities` (the shard region of this node). The entity's txId window makes a
/// redelivery a replay; a bonus the cap cuts or refuses is done, not a dead letter.
std::shared_ptr<policy::policy_handler> bonus_policy(bonus_settings settings, const bridge& entities);

} // namespace kontor::gateway

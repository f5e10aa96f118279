#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include "domain/email/reservation.hpp"
#include "gateway/bridge.hpp"

namespace kontor::gateway {

/// Settings of owner e-mail changes (the talk's set validation).
struct email_settings {
  /// How long a claim holds an address before its timeout may release it when the account never
  /// recorded it (a gateway that died mid-claim).
  std::chrono::milliseconds reservation_timeout{std::chrono::seconds(10)};
  /// The account refuses to record a claimed address this long before the claim times out, so
  /// the timeout never releases an address an account records (covers clock skew between the
  /// nodes of the account and of the timeout).
  std::chrono::milliseconds lease_guard{std::chrono::seconds(1)};
};

/// How an e-mail change ended.
struct email_change_result {
  enum class kind {
    account,  ///< `answer` is the account's answer (its events, a rejection, or a failure)
    taken,    ///< another account holds the address (EmailChangeFailed was recorded unless
              ///< `answer` says why not)
    failed,   ///< a reservation step failed (`answer` says how; nothing was recorded)
  };
  kind outcome = kind::account;
  entity_answer answer;
};

/// Changes account `account`'s owner e-mail to `address` (normalized) without a global lock:
///   1. reads the account (it must exist; If-Match `expected_version`; the same address again
///      answers at once with no event),
///   2. claims the address's reservation entity (another account's: records EmailChangeFailed
///      and ends `taken`),
///   3. records EmailChanged at the account within the claim's lease,
///   4. confirms the claim and releases the previous address (release_if_dropped).
/// A claim whose change was surely not recorded is cancelled at once; one whose outcome is
/// unknown (a timeout) is left to the e-mail policy, which settles it when it times out. `done`
/// runs exactly once, on a CAF thread.
void change_email(const bridge& entities, const email_settings& settings, std::string account,
                  std::string address, std::optional<std::uint64_t> expected_version,
                  std::function<void(email_change_result)> done);

/// Frees `address` if `account` holds it and no longer has it: reads the reservation, then the
/// account, then releases the hold under the claim it read (a claim made meanwhile makes that
/// release stale, so a concurrent change back to the address keeps it). A claim not yet
/// confirmed is left to its settle. `done` gets ok (released, or nothing to do) or the failure
/// of a step; it runs exactly once, on a CAF thread.
void release_if_dropped(const bridge& entities, std::string account, std::string address,
                        std::function<void(entity_answer)> done);

/// A reservation command for `address` (normalized), its body still to be set.
email::pb::Command reservation_command(const std::string& address);

/// Asks account `account` for its state (GetAccount, through its entity); email_in_answer reads
/// the e-mail it has from the answer. `done` runs exactly once, on a CAF thread.
void ask_account_state(const bridge& entities, const std::string& account,
                       std::function<void(entity_answer)> done);

/// The account's answer `a` to GetAccount as the e-mail it has: "" for none or no such account,
/// nullopt when it did not answer.
std::optional<std::string> email_in_answer(const entity_answer& a);

} // namespace kontor::gateway

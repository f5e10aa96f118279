#pragma once

// Read-side projections of account events: pure functions, no storage. The runtime feeds them
// events in order; the caller skips events already applied (ev.seq <= view.version()).

#include <cstdint>
#include <string>
#include <vector>

#include "account.pb.h"

namespace kontor::account {

/// Applies one event to the account's view. Requires ev.seq() == view.version() + 1 (the first
/// event, AccountOpened, to an empty view). The result equals view_of(state) of the same events.
void project_view(pb::AccountView& view, const pb::Event& ev);

/// Per-country totals of opened accounts.
struct country_totals {
  std::int64_t total_accounts = 0;
  std::int64_t combined_limit = 0;
};

/// A change of one country's totals.
struct country_delta {
  std::string country;
  std::int64_t accounts = 0;
  std::int64_t limit = 0;
};

/// What an account's change from `before` to `after` does to the country totals: opening adds
/// it, a limit change (LimitUpdated, or LimitChanged on a lock) moves combined_limit, an address
/// in another country moves the account between countries. An empty `before` (version 0) is an
/// account not yet opened. Deltas with no effect are left out.
std::vector<country_delta> country_deltas(const pb::AccountView& before,
                                          const pb::AccountView& after);

/// Adds `d` to `totals`.
void apply(country_totals& totals, const country_delta& d);

} // namespace kontor::account

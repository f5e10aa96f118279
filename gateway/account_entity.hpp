#pragma once

#include <memory>

#include "domain/account/account.hpp"
#include "runtime/persistence/journal.hpp"
#include "runtime/sharding/entity.hpp"

namespace kontor::gateway {

/// Makes the runtime's entity logic for accounts: Command bytes in, Reply bytes out, with the
/// domain's decide/evolve in between. `rules` must outlive every entity.
sharding::entity_factory account_entity_factory(const account::rules& rules);

/// Whether `stored` is an account's event. Accounts are the region's default entity type; the
/// journal and the event feed also carry the other types' events (e-mail reservations), which
/// everything that reads accounts skips.
inline bool is_account_stream(const persistence::stored_event& stored) {
  return entity_type_of(stored.persistence_id).empty();
}

} // namespace kontor::gateway

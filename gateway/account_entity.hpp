#pragma once

#include <memory>

#include "domain/account/account.hpp"
#include "runtime/sharding/entity.hpp"

namespace kontor::gateway {

/// Makes the runtime's entity logic for accounts: Command bytes in, Reply bytes out, with the
/// domain's decide/evolve in between. `rules` must outlive every entity.
sharding::entity_factory account_entity_factory(const account::rules& rules);

} // namespace kontor::gateway

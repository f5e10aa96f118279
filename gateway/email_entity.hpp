#pragma once

#include "domain/email/reservation.hpp"
#include "runtime/sharding/entity.hpp"

namespace kontor::gateway {

/// The runtime's entity type for e-mail reservations: ids "email:<normalized address>",
/// email::pb::Command bytes in, email::pb::Reply bytes out, the domain's decide/evolve between.
sharding::entity_type email_entity_type();

} // namespace kontor::gateway

#pragma once

// The messages of the sharding protocol and the CAF type-ID block every Kontor process
// registers (cfg.add_message_types<caf::id_block::kontor>()).

#include <string>

#include <caf/atom.hpp>
#include <caf/error.hpp>
#include <caf/meta/type_name.hpp>
#include <caf/type_id.hpp>

#include "runtime/core/ids.hpp"

namespace kontor::sharding {

/// A command for one entity, routed by the region to the entity's shard. The reply is the
/// entity's encoded answer (`std::string`) or a `caf::error` of category "kontor".
struct entity_envelope {
  entity_id id;
  std::string payload;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, entity_envelope& x) {
  return f(caf::meta::type_name("entity_envelope"), x.id, x.payload);
}

/// Runtime failures a caller of the region can get instead of an answer.
enum class errc : std::uint8_t {
  journal_failure = 1, ///< the journal refused the write: nothing was appended
  recovery_failed,     ///< the entity's stored events or snapshot cannot be read
  shard_unavailable,   ///< the shard's owner is down, unreachable or the shard is moving:
                       ///< the request was not delivered (retry later)
  overloaded,          ///< the entity's or the shard's queue is full (backpressure): the
                       ///< request was not delivered (retry later)
};

/// The category atom of Kontor runtime errors.
inline constexpr caf::atom_value error_category = caf::atom("kontor");

/// A runtime error with a human message.
caf::error make_error(errc code, std::string message);

/// The message carried by a Kontor runtime error (empty for other errors).
std::string error_message(const caf::error& err);

} // namespace kontor::sharding

CAF_BEGIN_TYPE_ID_BLOCK(kontor, caf::first_custom_type_id)
  CAF_ADD_TYPE_ID(kontor, (kontor::sharding::entity_envelope))
  CAF_ADD_ATOM(kontor, kontor::sharding, recover_atom, "recover")
  CAF_ADD_ATOM(kontor, kontor::sharding, replay_atom, "replay")
  CAF_ADD_ATOM(kontor, kontor::sharding, stop_atom, "stop")
  CAF_ADD_ATOM(kontor, kontor::sharding, sweep_atom, "sweep")
CAF_END_TYPE_ID_BLOCK(kontor)

#pragma once

// The admin protocol of a policy (it runs as a cluster singleton, so these cross nodes): they
// are in the kontor_policy type-ID block.

#include <cstdint>
#include <string>
#include <vector>

#include <caf/atom.hpp>
#include <caf/meta/type_name.hpp>
#include <caf/type_id.hpp>

namespace kontor::policy {

/// → policy: (dead_letters_atom) → std::vector<dead_letter>.
using dead_letters_atom = caf::atom_constant<caf::atom("pol_dead")>;
/// → policy: (retry_atom) → std::uint64_t, how many dead letters went back to the outbox.
using retry_atom = caf::atom_constant<caf::atom("pol_retry")>;
/// Local, the policy's timer: write a checkpoint if effects finished since the last.
using checkpoint_atom = caf::atom_constant<caf::atom("pol_ckpt")>;

/// An effect the policy gave up on: rejected by its target, or failed at every attempt.
struct dead_letter {
  std::string key;            ///< the effect's idempotency key
  std::uint32_t shard = 0;    ///< where its event is in the journal
  std::uint64_t position = 0;
  std::uint32_t attempts = 0; ///< attempts made
  std::string reason;         ///< the last failure
  std::int64_t failed_at = 0; ///< ms since the epoch
  std::string payload;        ///< what was to be sent
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, dead_letter& x) {
  return f(caf::meta::type_name("dead_letter"), x.key, x.shard, x.position, x.attempts, x.reason,
           x.failed_at, x.payload);
}

} // namespace kontor::policy

CAF_BEGIN_TYPE_ID_BLOCK(kontor_policy, caf::first_custom_type_id + 500)
  CAF_ADD_TYPE_ID(kontor_policy, (kontor::policy::dead_letter))
  CAF_ADD_TYPE_ID(kontor_policy, (std::vector<kontor::policy::dead_letter>))
CAF_END_TYPE_ID_BLOCK(kontor_policy)

#pragma once

// The protocol between the poller (a cluster singleton) and the read models on every node.
// Every type here crosses nodes: it is in the kontor_projection type-ID block.

#include <vector>

#include <caf/atom.hpp>
#include <caf/meta/type_name.hpp>
#include <caf/type_id.hpp>

#include "runtime/stream/messages.hpp"

namespace kontor::projection {

/// Read model → poller: (subscribe_atom, read model, shard_positions) — deliver from these on.
using subscribe_atom = caf::atom_constant<caf::atom("prj_sub")>;
/// Poller → itself: look for new events.
using poll_atom = caf::atom_constant<caf::atom("prj_poll")>;
/// Read model → poller, the answer to every batch: (applied_atom, shard_positions).
using applied_atom = caf::atom_constant<caf::atom("prj_done")>;

/// Per shard, the next position a read model wants (index = shard id; 1 = from the start).
struct shard_positions {
  std::vector<shard_offset> next;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, shard_positions& x) {
  return f(caf::meta::type_name("shard_positions"), x.next);
}

/// Poller → read model (a request): pages of some shards, each whole appends in position
/// order. The read model stores them, with its new positions, in one transaction and answers
/// (applied_atom, positions): its durable positions after the batch — unchanged when the
/// commit failed, so the poller reads the same events again.
struct event_batch {
  std::vector<stream::shard_events> shards;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, event_batch& x) {
  return f(caf::meta::type_name("event_batch"), x.shards);
}

} // namespace kontor::projection

CAF_BEGIN_TYPE_ID_BLOCK(kontor_projection, caf::first_custom_type_id + 300)
  CAF_ADD_TYPE_ID(kontor_projection, (kontor::projection::shard_positions))
  CAF_ADD_TYPE_ID(kontor_projection, (kontor::projection::event_batch))
CAF_END_TYPE_ID_BLOCK(kontor_projection)

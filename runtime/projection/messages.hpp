#pragma once

// The protocol between the poller (a cluster singleton) and the read models on every node.

#include <vector>

#include <caf/atom.hpp>
#include <caf/meta/type_name.hpp>

#include "runtime/persistence/journal.hpp"

namespace kontor::persistence {

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, stored_event& x) {
  return f(caf::meta::type_name("stored_event"), x.persistence_id, x.seq, x.shard, x.offset,
           x.written_at, x.payload, x.shard_pos, x.append_end);
}

} // namespace kontor::persistence

namespace kontor::projection {

/// Read model → poller: deliver events from offset `from` on to `subscriber`.
using subscribe_atom = caf::atom_constant<caf::atom("prj_sub")>;
/// Poller → itself: look for new events.
using poll_atom = caf::atom_constant<caf::atom("prj_poll")>;
/// Read model → poller (as the answer to a batch): applied up to `next` (exclusive).
using applied_atom = caf::atom_constant<caf::atom("prj_done")>;

/// Poller → read model (a request): events in journal order. The answer is
/// (applied_atom, next) once the batch and the offset `next` are stored.
struct event_batch {
  std::vector<persistence::stored_event> events;
  log_offset next = 1;     ///< where the following batch starts
  log_offset log_end = 0;  ///< the journal's last offset when the batch was read (for lag)
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, event_batch& x) {
  return f(caf::meta::type_name("event_batch"), x.events, x.next, x.log_end);
}

} // namespace kontor::projection

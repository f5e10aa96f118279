#pragma once

#include <caf/fwd.hpp>

#include "runtime/persistence/journal.hpp"

namespace kontor::stream {

/// Starts this node's shard log server on its own thread (journal reads block): it answers
/// (read_shards_atom, read_request) with a read_reply from `journal`, for any caller on this
/// or another node. `journal` is not owned and outlives the server.
caf::actor spawn_log_server(caf::actor_system& sys, const persistence::journal* journal);

} // namespace kontor::stream

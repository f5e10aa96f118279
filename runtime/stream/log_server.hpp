#pragma once

#include <caf/fwd.hpp>

#include "runtime/persistence/journal.hpp"
#include "runtime/stream/shard_range.hpp"

namespace kontor::stream {

/// Starts this node's shard log server: journal reads run on its own thread (they block),
/// behind a scheduled actor that is the handle returned, safe to publish to other nodes. Any
/// caller on this or another node gets answers to
/// - (read_shards_atom, read_request) with a read_reply: pages of several shards (the poller);
/// - (read_range_atom, range_request) with a range_page within `limits`: one page of the
///   catch-up stream (catch_up.hpp), or an error when the journal cannot read it.
/// An exit of the returned actor stops the reader too. `journal` is not owned and outlives the
/// server.
caf::actor spawn_log_server(caf::actor_system& sys, const persistence::journal* journal,
                            range_limits limits = {});

} // namespace kontor::stream

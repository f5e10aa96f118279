#pragma once

// The catch-up stream: copies one shard's log from the node that holds it (its shard log
// server) into this node's journal, from this journal's own end of the shard on.
//
// Protocol (receiver-driven; the source keeps no state, so a retried or duplicated request is
// harmless and a source that restarts needs nothing):
// 1. The worker reads its journal's end S of the shard and its event at S, and asks the source
//    for the range [S+1, S+1+P) alone. The answer's `prev` (the source's event at S) must be the
//    same event (id, seq, write time): otherwise the receiver's shard is not a prefix of the
//    source's (`diverged`, nothing written). Its `end` fixes the target T: `until`, or the
//    source's end as of this first answer.
// 2. Then ranges [a, a+P) up to T are requested pipelined, `window` at a time (a range counts
//    until its page is imported). Each page holds the appends that start in its range, so
//    consecutive pages are consecutive, append-aligned slices of the log; a page the source
//    cut short (bytes) makes the worker ask for the rest of its range.
// 3. Pages are checked (shard, range, consecutive positions, whole appends, the source's end
//    never going back) and imported strictly in position order, each page one import (all or
//    nothing, idempotent, fsynced), several queued on the journal at once; a page that arrives
//    early waits for its predecessors.
//    Snapshots ride along: each page carries, for its ids, the source's latest snapshot when it
//    is not ahead of the id's last event in the page, and the import keeps it when it is newer
//    than the receiver's. So after a catch-up every id with events in the copied positions has
//    the source's latest snapshot (as of the page's read); one the source wrote after its id's
//    last copied event comes with that id's next copied event, not sooner. Snapshots only
//    shorten recovery; the events are the truth.
// 4. Every request has a timeout and is retried at most `max_retries` times. The worker watches
//    the source (a down source fails at once). On the first failure it stops asking, waits for
//    the imports already queued, answers, and exits: after the answer it writes nothing more.
//    A later catch-up simply starts again from the receiver's end.
//
// Reuse by a replica (continuous following): run catch-ups in a loop with `until` = 0: each one
// copies what the leader had when it started and answers with the replica's new end and the
// leader's end as last seen (`source_end`, the lag). On `ok`, start the next one (at once while
// source_end > end, after a short idle interval otherwise); on `timeout`/`source_unreachable`,
// back off and retry, or follow the new leader's log server; on `diverged`/`import_refused`, stop
// following and report: the replica holds events the leader does not (never repaired silently).
// A handoff target uses `until` = the old owner's last position (ShardStopped).

#include <chrono>
#include <cstddef>
#include <cstdint>

#include <caf/actor.hpp>
#include <caf/fwd.hpp>

#include "runtime/persistence/journal.hpp"
#include "runtime/stream/messages.hpp"

namespace kontor::stream {

/// What one catch-up copies.
struct catch_up_spec {
  /// The shard log server (spawn_log_server) of the node holding the shard: a handle from
  /// remote_actor on that node, not one relayed through a third node (STACK.md).
  caf::actor source;
  shard_id shard = 0;
  /// Copy every append that starts at or before this position (so the end may be a little past
  /// it when it falls inside an append); 0: up to the source's end as of the first answer.
  shard_offset until = 0;
};

/// How a catch-up paces itself.
struct catch_up_settings {
  std::uint32_t page_positions = 1000;  ///< positions per page request
  std::uint32_t page_bytes = 1u << 20;  ///< asks the source to cut pages at about this size
  std::size_t window = 8;               ///< pages requested or awaiting import at once (>= 1)
  std::chrono::milliseconds request_timeout{2000}; ///< per page request
  std::uint32_t max_retries = 2;        ///< extra attempts per page after a timeout or a source error
};

/// Spawns a one-shot catch-up worker copying `spec` into `journal` (not owned; it outlives the
/// worker and its imports). It starts on its first (catch_up_atom) request and answers it
/// exactly once with a catch_up_result, then exits; every further request gets an error. An
/// exit message (not `kill`) makes it stop early with `cancelled`, after its queued imports.
caf::actor spawn_catch_up(caf::actor_system& sys, persistence::journal& journal,
                          catch_up_spec spec, catch_up_settings settings = {});

/// Runs a catch-up and blocks until it answers (for tools, tests and benchmarks, not actors).
/// When no answer comes within `wait` (or the worker is killed), the result is `timeout` or
/// `cancelled` with the journal's end of the shard as it is then.
catch_up_result run_catch_up(caf::actor_system& sys, persistence::journal& journal,
                             catch_up_spec spec, catch_up_settings settings = {},
                             std::chrono::milliseconds wait = std::chrono::minutes(10));

} // namespace kontor::stream

#pragma once

// The shard-log protocol: pages of one shard's log by position, read from whichever node holds
// the shard (the read side's poller), and the catch-up stream that copies a shard into another
// node's journal (range pages). Every type here crosses nodes: it is in the kontor_stream
// type-ID block.

#include <cstdint>
#include <string>
#include <vector>

#include <caf/atom.hpp>
#include <caf/meta/type_name.hpp>
#include <caf/type_id.hpp>

#include "runtime/persistence/journal.hpp"

namespace kontor::persistence {

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, stored_event& x) {
  return f(caf::meta::type_name("stored_event"), x.persistence_id, x.seq, x.shard, x.offset,
           x.written_at, x.payload, x.shard_pos, x.append_end);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, snapshot& x) {
  return f(caf::meta::type_name("snapshot"), x.persistence_id, x.seq, x.payload);
}

} // namespace kontor::persistence

namespace kontor::stream {

/// Where to read one shard from: its next position wanted.
struct shard_cursor {
  shard_id shard = 0;
  shard_offset from = 1;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, shard_cursor& x) {
  return f(caf::meta::type_name("shard_cursor"), x.shard, x.from);
}

/// Events of one shard at positions from..next-1 (whole appends), and the shard's end as the
/// node that read them knew it.
struct shard_events {
  shard_id shard = 0;
  shard_offset from = 1;
  std::vector<persistence::stored_event> events;
  shard_offset next = 1; ///< where the following page starts
  shard_offset end = 0;  ///< the shard's last position on the node that read the page
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, shard_events& x) {
  return f(caf::meta::type_name("shard_events"), x.shard, x.from, x.events, x.next, x.end);
}

/// A request for pages of several shards of one node: (read_shards_atom, read_request) →
/// read_reply. At most `max` events in all (whole appends, so a few more may come).
struct read_request {
  std::vector<shard_cursor> cursors;
  std::uint32_t max = 1000;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, read_request& x) {
  return f(caf::meta::type_name("read_request"), x.cursors, x.max);
}

/// The answer to a read_request: one entry per requested shard, in request order (a shard with
/// nothing new has no events and next == from).
struct read_reply {
  std::vector<shard_events> shards;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, read_reply& x) {
  return f(caf::meta::type_name("read_reply"), x.shards);
}

/// Asks a shard log server for pages (see read_request).
using read_shards_atom = caf::atom_constant<caf::atom("sl_read")>;

/// A request for one page of the catch-up stream: (read_range_atom, range_request) →
/// range_page. Asks for the appends of `shard` that START at a position in [from, to), whole,
/// so that consecutive ranges give consecutive pages that never split an append, and pages for
/// several ranges can be requested at once (pipelined) without knowing where appends end.
struct range_request {
  shard_id shard = 0;
  shard_offset from = 1;           ///< first position of the range (>= 1)
  shard_offset to = 1;             ///< one past its last position (> from)
  std::uint32_t max_bytes = 1u << 20; ///< cut the page (between appends) at about this size
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, range_request& x) {
  return f(caf::meta::type_name("range_request"), x.shard, x.from, x.to, x.max_bytes);
}

/// One page of the catch-up stream: the answer to a range_request [from, to).
/// - `events`: every append of the shard that starts at a position in [from, next), whole, in
///   position order, and nothing else (an append that started before `from` is the previous
///   page's; one that starts at or after `next` is the next page's).
/// - `next`: the first position this page does not cover; the next page's range starts there.
///   `to` when the page is complete; less when the source cut it (byte or event limit: then it
///   is the start of the first append left out) or when its shard ends before (then end + 1).
/// - `end`: the shard's last position on the source when the page was read.
/// - `prev`: the source's event at from - 1 without its payload (shard_pos 0 when from is 1 or
///   beyond end + 1): lets a receiver check that what it holds is a prefix of the source's log.
/// - `snapshots`: for each id with events in the page, the source's latest snapshot of it when
///   that snapshot is not ahead of the id's last event in the page (so an import of the page
///   takes it); about `max_bytes` in all at most, beyond which the rest are left out (a later
///   page with the id carries them again).
struct range_page {
  shard_id shard = 0;
  shard_offset from = 1;
  persistence::stored_event prev;
  std::vector<persistence::stored_event> events;
  std::vector<persistence::snapshot> snapshots;
  shard_offset next = 1;
  shard_offset end = 0;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, range_page& x) {
  return f(caf::meta::type_name("range_page"), x.shard, x.from, x.prev, x.events, x.snapshots,
           x.next, x.end);
}

/// Asks a shard log server for one page of the catch-up stream (see range_request).
using read_range_atom = caf::atom_constant<caf::atom("sl_range")>;

/// Why a catch-up ended: `ok` or the reason it failed.
enum class catch_up_errc : std::uint8_t {
  ok = 0,
  invalid_argument,   ///< the shard is out of the receiver's range, or no source was given
  source_unreachable, ///< the source went down or its node became unreachable
  timeout,            ///< a page request went unanswered through every retry
  source_failed,      ///< the source answered with an error (its journal) through every retry
  bad_reply,          ///< the source's answer breaks the protocol (wrong range, gap, end moved back)
  source_behind,      ///< the source's shard ends before the position asked for
  diverged,           ///< the receiver's shard is not a prefix of the source's
  import_refused,     ///< the receiver's journal refused a page (its message says why)
  journal_failed,     ///< the receiver's journal failed (I/O, closing); nothing of that page written
  cancelled,          ///< the worker was told to exit (an exit message) before it finished
};

/// The stable name of a catch-up outcome, e.g. "diverged".
const char* to_string(catch_up_errc code) noexcept;

/// The one answer to a catch-up. Whatever the outcome, the receiver's shard is a consistent
/// prefix of the source's (pages are imported whole, in order) and ends at `end`; nothing more
/// is written by that catch-up after this answer.
struct catch_up_result {
  shard_id shard = 0;
  catch_up_errc code = catch_up_errc::ok;
  shard_offset end = 0;        ///< the receiver's last position of the shard (durable)
  shard_offset source_end = 0; ///< the source's last position, as last seen (0: never answered)
  std::uint64_t imported = 0;  ///< events this catch-up wrote
  std::string message;         ///< for humans: what failed, with positions; empty when ok
  /// True when the catch-up reached its target.
  bool ok() const noexcept { return code == catch_up_errc::ok; }
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, catch_up_result& x) {
  return f(caf::meta::type_name("catch_up_result"), x.shard, x.code, x.end, x.source_end,
           x.imported, x.message);
}

/// Starts a catch-up worker (see catch_up.hpp): (catch_up_atom) → catch_up_result.
using catch_up_atom = caf::atom_constant<caf::atom("cu_run")>;

} // namespace kontor::stream

CAF_BEGIN_TYPE_ID_BLOCK(kontor_stream, caf::first_custom_type_id + 200)
  CAF_ADD_TYPE_ID(kontor_stream, (kontor::persistence::stored_event))
  CAF_ADD_TYPE_ID(kontor_stream, (kontor::persistence::snapshot))
  CAF_ADD_TYPE_ID(kontor_stream, (kontor::stream::shard_cursor))
  CAF_ADD_TYPE_ID(kontor_stream, (kontor::stream::shard_events))
  CAF_ADD_TYPE_ID(kontor_stream, (kontor::stream::read_request))
  CAF_ADD_TYPE_ID(kontor_stream, (kontor::stream::read_reply))
  CAF_ADD_TYPE_ID(kontor_stream, (kontor::stream::range_request))
  CAF_ADD_TYPE_ID(kontor_stream, (kontor::stream::range_page))
  CAF_ADD_TYPE_ID(kontor_stream, (kontor::stream::catch_up_result))
CAF_END_TYPE_ID_BLOCK(kontor_stream)

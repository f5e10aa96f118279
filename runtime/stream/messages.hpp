#pragma once

// The shard-log protocol: pages of one shard's log by position, read from whichever node holds
// the shard (the read side's poller, and the catch-up stream that copies a shard into another
// node's journal). Every type here crosses nodes: it is in the kontor_stream type-ID block.

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

} // namespace kontor::stream

CAF_BEGIN_TYPE_ID_BLOCK(kontor_stream, caf::first_custom_type_id + 200)
  CAF_ADD_TYPE_ID(kontor_stream, (kontor::persistence::stored_event))
  CAF_ADD_TYPE_ID(kontor_stream, (kontor::persistence::snapshot))
  CAF_ADD_TYPE_ID(kontor_stream, (kontor::stream::shard_cursor))
  CAF_ADD_TYPE_ID(kontor_stream, (kontor::stream::shard_events))
  CAF_ADD_TYPE_ID(kontor_stream, (kontor::stream::read_request))
  CAF_ADD_TYPE_ID(kontor_stream, (kontor::stream::read_reply))
CAF_END_TYPE_ID_BLOCK(kontor_stream)

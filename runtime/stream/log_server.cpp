#include "runtime/stream/log_server.hpp"

#include <caf/all.hpp>

#include "runtime/stream/messages.hpp"

namespace kontor::stream {

namespace {

caf::behavior log_server_actor(caf::event_based_actor*, const persistence::journal* journal) {
  return {
    [journal](read_shards_atom, read_request& req) -> caf::result<read_reply> {
      read_reply reply;
      reply.shards.reserve(req.cursors.size());
      std::size_t budget = req.max;
      for (const auto& c : req.cursors) {
        shard_events out;
        out.shard = c.shard;
        out.from = std::max<shard_offset>(c.from, 1);
        out.next = out.from;
        // With the budget spent, only the shard's end is reported (for lag).
        auto page = journal->read_shard_log(c.shard, out.from, budget);
        if (!page)
          return caf::make_error(caf::sec::runtime_error, page.error().message);
        out.end = page->end;
        out.next = page->next;
        budget -= std::min(budget, page->events.size());
        out.events = std::move(page->events);
        reply.shards.push_back(std::move(out));
      }
      return reply;
    },
  };
}

} // namespace

caf::actor spawn_log_server(caf::actor_system& sys, const persistence::journal* journal) {
  return sys.spawn<caf::detached>(log_server_actor, journal);
}

} // namespace kontor::stream

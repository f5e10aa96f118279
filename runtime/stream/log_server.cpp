#include "runtime/stream/log_server.hpp"

#include <chrono>

#include <caf/all.hpp>

#include "runtime/stream/messages.hpp"

namespace kontor::stream {

namespace {

caf::behavior log_server_actor(caf::event_based_actor*, const persistence::journal* journal,
                               range_limits limits) {
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
    [journal, limits](read_range_atom, const range_request& req) -> caf::result<range_page> {
      auto page = read_range(*journal, req, limits);
      if (!page)
        return caf::make_error(caf::sec::runtime_error, page.error().message);
      return std::move(*page);
    },
  };
}

/// State of the server's public face: the reader it relays to (dropped when it exits).
struct front_state {
  caf::actor reader;
  static inline const char* name = "kontor.log_server";
};

/// How long the front waits for its local reader (a journal read; never reached in practice).
constexpr auto reader_timeout = std::chrono::seconds(30);

/// Relays one request to the reader and its answer (or error) back to the caller.
template <class Reply, class Atom, class Request>
caf::result<Reply> relay(caf::stateful_actor<front_state>* self, Atom atom, Request& req) {
  auto rp = self->make_response_promise<Reply>();
  self->request(self->state.reader, reader_timeout, atom, std::move(req))
    .then([rp](Reply& reply) mutable { rp.deliver(std::move(reply)); },
          [rp](caf::error& err) mutable { rp.deliver(std::move(err)); });
  return rp;
}

/// The server's public face: a scheduled actor that relays every request to the detached reader
/// and its answer back, so that only this actor is ever known to other nodes. In CAF 0.17.6 an
/// actor system can hang forever in its destructor (await_detached_threads) when one of its
/// *detached* actors was published, or was the sender of a message to another node, even after
/// that actor exited: seen in 1 to 10 of 20-30 runs of publish → remote requests → exit →
/// shutdown, also with a front that only delegated (the reader then answers the remote caller
/// itself); never in 180 runs with this relay.
caf::behavior log_server_front(caf::stateful_actor<front_state>* self, caf::actor reader) {
  self->link_to(reader); // an exit of either ends both
  self->state.reader = std::move(reader);
  return {
    [self](read_shards_atom atom, read_request& req) {
      return relay<read_reply>(self, atom, req);
    },
    [self](read_range_atom atom, range_request& req) {
      return relay<range_page>(self, atom, req);
    },
  };
}

} // namespace

caf::actor spawn_log_server(caf::actor_system& sys, const persistence::journal* journal,
                            range_limits limits) {
  auto reader = sys.spawn<caf::detached>(log_server_actor, journal, limits);
  return sys.spawn(log_server_front, std::move(reader));
}

} // namespace kontor::stream

#include "gateway/bridge.hpp"

#include <caf/all.hpp>

#include "runtime/sharding/messages.hpp"

namespace kontor::gateway {

namespace {

/// A request from a non-actor caller; local only (carries a callback).
struct ask_msg {
  sharding::entity_envelope envelope;
  std::function<void(entity_answer)> done;
};

} // namespace
} // namespace kontor::gateway

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(kontor::gateway::ask_msg)

namespace kontor::gateway {

namespace {

entity_answer from_error(const caf::error& err) {
  entity_answer out;
  if (err == caf::sec::request_timeout) {
    out.code = entity_answer::status::timeout;
    out.message = "no answer in time; the outcome is unknown, retry with the same txId";
  } else if (err.category() == sharding::error_category
             && err.code() == static_cast<std::uint8_t>(sharding::errc::journal_failure)) {
    out.code = entity_answer::status::unavailable;
    out.message = sharding::error_message(err);
  } else {
    out.code = entity_answer::status::failed;
    auto msg = sharding::error_message(err);
    out.message = msg.empty() ? "the entity could not answer" : msg;
  }
  return out;
}

caf::behavior bridge_actor(caf::event_based_actor* self, caf::actor region,
                           std::chrono::milliseconds timeout) {
  return {
    [=](ask_msg& msg) {
      auto done = std::move(msg.done);
      self->request(region, timeout, std::move(msg.envelope))
        .then([done](std::string& reply) { done({entity_answer::status::ok, std::move(reply), {}}); },
              [done](caf::error& err) { done(from_error(err)); });
    },
  };
}

} // namespace

bridge::bridge(caf::actor_system& sys, caf::actor region, std::chrono::milliseconds timeout)
  : actor_(sys.spawn(bridge_actor, std::move(region), timeout)) {}

void bridge::ask(entity_id id, std::string payload, std::function<void(entity_answer)> done) const {
  caf::anon_send(actor_, ask_msg{{std::move(id), std::move(payload)}, std::move(done)});
}

} // namespace kontor::gateway

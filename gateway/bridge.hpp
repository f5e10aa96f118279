#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <optional>
#include <vector>
#include <string>

#include <caf/fwd.hpp>
#include <caf/actor.hpp>

#include "runtime/core/ids.hpp"
#include "runtime/persistence/journal.hpp"

namespace kontor::gateway {

/// The outcome of asking an entity: its encoded reply, or a failure.
struct entity_answer {
  enum class status {
    ok,
    timeout,     ///< no answer in time: the outcome is unknown
    unavailable, ///< the journal refused the write: nothing was appended
    stopped,     ///< the entity stopped (or failed to recover) before handling it: nothing appended
    no_shard,    ///< its shard has no reachable home (owner down, unreachable, moving): not sent
    overloaded,  ///< its account's or shard's queue was full (backpressure): not delivered
    failed,      ///< anything else: a bug
  };
  status code = status::ok;
  std::string reply;   ///< the entity's encoded reply when ok
  std::string message; ///< what went wrong otherwise
};

/// Starts a request with `start`, which gets the callback for its answer, and waits for that
/// answer at most `wait` (nullopt: none came, e.g. the bridge stopped). Blocks: for threads of
/// their own (a policy's delivery thread), never a CAF or I/O thread.
std::optional<entity_answer> await_answer(
  const std::function<void(std::function<void(entity_answer)>)>& start, std::chrono::milliseconds wait);

/// Connects callback-style code (HTTP handlers on I/O threads) to the actor world without ever
/// blocking: requests go to one actor that asks the shard region and runs the callback with the
/// answer on a CAF thread.
class bridge {
public:
  /// `region` receives sharding::entity_envelope requests; `timeout` bounds every request.
  bridge(caf::actor_system& sys, caf::actor region, std::chrono::milliseconds timeout);

  /// Sends `payload` to entity `id`; `done` runs exactly once, on a CAF thread.
  void ask(entity_id id, std::string payload, std::function<void(entity_answer)> done) const;

  /// `ask`, waiting for the answer at most `wait` (nullopt: none came, e.g. the bridge stopped).
  /// Blocks: for threads of their own (a policy's delivery thread), never a CAF or I/O thread.
  std::optional<entity_answer> ask_and_wait(entity_id id, std::string payload,
                                            std::chrono::milliseconds wait) const;

  /// The outcome of reading an entity's stored events at the node that owns it.
  struct events_answer {
    entity_answer::status code = entity_answer::status::ok;
    std::vector<persistence::stored_event> events; ///< when ok
    sequence_nr highest = 0;                       ///< the entity's highest seq, when ok
    std::string message;                           ///< what went wrong otherwise
  };

  /// Reads entity `id`'s events from `from` on (at most `max`) from the journal of the node
  /// that owns its shard; `done` runs exactly once, on a CAF thread.
  void read_events(entity_id id, sequence_nr from, std::uint32_t max,
                   std::function<void(events_answer)> done) const;

  /// The outcome of asking the node that owns an entity's shard about the entity.
  struct info_answer {
    entity_answer::status code = entity_answer::status::ok;
    std::string node;               ///< the owner's node id, when ok
    bool live = false;              ///< an entity actor runs for it on the owner now
    sequence_nr highest = 0;        ///< its last sequence number (0: no such entity)
    sequence_nr snapshot_seq = 0;   ///< its latest snapshot's sequence number (0: none)
    shard_offset shard_end = 0;     ///< the last position of its shard's log on the owner
    std::string message;            ///< what went wrong otherwise
  };

  /// Asks the region of the node that owns entity `id`'s shard whether the entity runs there and
  /// how far its stream and snapshot are; `done` runs exactly once, on a CAF thread.
  void entity_info(entity_id id, std::function<void(info_answer)> done) const;

  /// What the regions reported: live entities per shard, events appended per node.
  struct census {
    std::map<shard_id, std::uint64_t> entities;             ///< shard → live entities
    std::map<std::string, std::uint64_t> events_appended;   ///< node → since it started
  };

  /// Asks every region in `regions` (node name, region) for its live entities per shard and
  /// the events its entities appended (1 s at most each) and calls `done` once with what came
  /// back, on a CAF thread.
  void entity_counts(std::vector<std::pair<std::string, caf::actor>> regions,
                     std::function<void(census)> done) const;

  /// The bridge actor (to stop it with the rest of the system).
  const caf::actor& actor() const noexcept { return actor_; }

private:
  caf::actor actor_;
};

} // namespace kontor::gateway

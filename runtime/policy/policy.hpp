#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <caf/actor.hpp>
#include <caf/fwd.hpp>

#include "runtime/core/metrics.hpp"
#include "runtime/persistence/journal.hpp"
#include "runtime/policy/messages.hpp"

namespace kontor::policy {

/// One effect a policy wants for one event: what to send, and the key that makes it idempotent
/// at a target that deduplicates (the same event always gives the same key).
struct effect {
  std::string key;     ///< deterministic per event, e.g. the event's id
  std::string payload; ///< opaque to the runtime (JSON for a webhook, a command for a policy
                       ///< that commands an entity)
  /// Not carried out before this instant (ms since the epoch; 0: at once), e.g. a timeout. The
  /// effects behind one that is not due yet go on meanwhile.
  std::int64_t not_before = 0;
};

/// How one attempt to carry out an effect ended.
enum class outcome {
  done,      ///< the target has it (or had it: a dedup answer is a success)
  retry,     ///< a transient failure (down, timeout, 5xx): try again after a backoff
  rejected,  ///< the target refused it for good (4xx): a dead letter at once
  /// Not now, and not in the way of the others: tried again after a backoff while the effects
  /// behind it go on (order does not matter for it, e.g. its target is down while others' are
  /// not). Never a dead letter by count: it waits for its target, in the policy's lag.
  defer,
};

/// The answer of a target to one attempt, with a reason for the log and the dead letter.
struct attempt_result {
  outcome result = outcome::done;
  std::string reason;
};

/// The application side of a policy (a process manager): which events matter and what to do
/// for each, and how to do it. The runtime knows nothing of what the events mean.
class policy_handler {
public:
  virtual ~policy_handler() = default;
  /// The policy's name: its store's folder (policy-<name>), its routes and metrics label.
  virtual std::string name() const = 0;
  /// The effect `ev` calls for, if any. Pure: called once per event and position, in shard order.
  virtual std::optional<effect> select(const persistence::stored_event& ev) = 0;
  /// Carries out one effect (blocking; called on the policy's own delivery thread, never on a
  /// scheduler thread). Must bound its own time (timeouts) and may be called again with the
  /// same effect after a crash or a retry: the key is what makes that harmless.
  virtual attempt_result carry_out(const effect& e) = 0;
};

/// Retry settings: exponential backoff from `initial`, doubling up to `max`; after
/// `max_attempts` failed attempts the effect becomes a dead letter.
struct retry_settings {
  std::chrono::milliseconds initial{200};
  std::chrono::milliseconds max{std::chrono::seconds(30)};
  std::uint32_t max_attempts = 60;
};

/// What a policy reports (metrics); kept across the policy's restarts on this node.
struct policy_stats {
  std::atomic<std::uint64_t> delivered{0};    ///< effects carried out
  std::atomic<std::uint64_t> rejected{0};     ///< effects the target refused (4xx)
  std::atomic<std::uint64_t> gave_up{0};      ///< effects that reached the retry cap
  std::atomic<std::uint64_t> retries{0};      ///< failed attempts that were retried
  std::atomic<std::uint64_t> dead_letters{0}; ///< dead letters kept now
  std::atomic<std::uint64_t> pending{0};      ///< effects accepted, not yet carried out
  std::atomic<std::uint64_t> behind{0};       ///< events the poller reported but not accepted yet
  std::atomic<bool> running{false};           ///< whether the policy runs on this node
  std::atomic<std::uint64_t> checkpoints{0};  ///< checkpoints the cluster acknowledged
  /// Effects finished (delivered, rejected or given up) that the last acknowledged checkpoint
  /// covers: finished() - checkpointed is what a move to another node would carry out again.
  std::atomic<std::uint64_t> checkpointed{0};
  std::uint64_t finished() const noexcept { return delivered.load() + rejected.load() + gave_up.load(); }
  /// Events not yet handled: accepted but not carried out, plus not yet accepted.
  std::uint64_t lag() const noexcept { return pending.load() + behind.load(); }
};

/// Settings of a policy.
struct policy_settings {
  std::filesystem::path dir;             ///< its LMDB store (data/policy-<name>)
  std::uint32_t number_of_shards = 64;
  std::shared_ptr<policy_handler> handler;
  retry_settings retry;
  std::shared_ptr<policy_stats> stats = std::make_shared<policy_stats>();
  caf::actor poller;                     ///< the poller (its singleton proxy) to subscribe to
  std::chrono::milliseconds resubscribe_after{std::chrono::seconds(2)};
  /// This node's shard region, which runs the checkpoint entities (checkpoint.hpp; the region
  /// needs checkpoint_entity_type() among its types). Unset: no checkpoints, the policy
  /// resumes from its own store only.
  caf::actor region;
  /// How often a checkpoint is written while effects finish (none while nothing finishes).
  std::chrono::milliseconds checkpoint_every{std::chrono::seconds(1)};
  /// How long the start waits for the checkpoint before it goes on from its own store.
  std::chrono::milliseconds checkpoint_timeout{std::chrono::seconds(5)};
};

/// Starts a policy on this node and returns its actor (a singleton manager's factory returns
/// it). The policy subscribes to `poller` like a read model, and in one transaction per batch
/// stores the effects the batch calls for in its outbox with its new per-shard positions, so
/// an event is neither skipped nor accepted twice. A delivery thread carries the outbox out in
/// order (so per account in order too), one effect at a time, with exponential backoff; one
/// that fails `max_attempts` times, or is rejected, becomes a dead letter and the next goes on.
/// Effects not due yet (effect::not_before) or deferred (outcome::defer) are passed over until
/// they are. With a `region`, the policy keeps a checkpoint in the cluster (checkpoint.hpp) and
/// starts from it: after a move to a node whose store is behind (or new), what the last runner
/// finished is neither accepted nor carried out again, and outbox entries it covers are dropped.
/// An effect leaves the outbox only after its target answered: at least once, and exactly once
/// where the target deduplicates by key. The actor answers dead_letters_atom and retry_atom
/// (messages.hpp); its exit stops the delivery thread and closes the store. When the store
/// cannot be opened it logs why and returns an actor that ends at once with an error (a singleton
/// manager then tries again after its restart delay).
caf::actor spawn_policy(caf::actor_system& sys, policy_settings settings);

/// Asks policy `policy` (or its singleton proxy) for its dead letters; `done` gets them, or
/// nullopt when it did not answer within `timeout`. Callable from any thread.
void ask_dead_letters(caf::actor_system& sys, const caf::actor& policy,
                      std::chrono::milliseconds timeout,
                      std::function<void(std::optional<std::vector<dead_letter>>)> done);

/// Asks policy `policy` to retry every dead letter (they go back to the end of its outbox);
/// `done` gets how many, or nullopt on timeout. Callable from any thread.
void retry_dead_letters(caf::actor_system& sys, const caf::actor& policy,
                        std::chrono::milliseconds timeout,
                        std::function<void(std::optional<std::uint64_t>)> done);

} // namespace kontor::policy

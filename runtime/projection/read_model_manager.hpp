#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include <caf/actor.hpp>
#include <caf/fwd.hpp>

#include "runtime/projection/read_model.hpp"

namespace kontor::projection {

/// Settings of a read model manager.
struct read_model_manager_settings {
  std::string name;          ///< the read model's name (routes, logs): "accounts"
  read_model_settings model; ///< `model.dir` is the canonical directory; `model.stats` the live stats
  caf::actor poller;         ///< what the model (and a rebuild) subscribes to
  /// How often a running rebuild logs its progress.
  std::chrono::milliseconds progress_interval{std::chrono::seconds(2)};
};

/// What rebuilds have done since start (metrics). Read from any thread.
struct rebuild_progress {
  std::atomic<bool> running{false};
  std::atomic<std::uint64_t> number{0};    ///< of the running (or last) rebuild: 1, 2, …
  std::atomic<std::uint64_t> events{0};    ///< events the running (or last) rebuild has applied
  std::atomic<std::uint64_t> completed{0}; ///< rebuilds switched to
  std::atomic<std::uint64_t> failed{0};    ///< rebuilds abandoned (a failed open or rename)
};

/// This node's read model of one handler, and its rebuild on demand. A rebuild opens a new
/// store in a fresh directory beside the canonical one (`read.rebuild-<n>`), subscribed to the
/// same poller from position 1 of every shard, while the current model keeps answering and
/// being fed. Once the new one has applied, in every shard, at least what the current one has,
/// the two directories are exchanged in one rename (the canonical name is the rebuilt model),
/// queries move to it, the old one stops and its directory is removed. A crash at any point
/// leaves the canonical directory holding a whole model; leftovers are removed at open.
class read_model_manager {
public:
  /// Cleans up after an interrupted rebuild, opens (or builds) the model in `model.dir` and
  /// subscribes it to the poller.
  static persistence::expected<std::unique_ptr<read_model_manager>>
  open(caf::actor_system& sys, read_model_manager_settings settings);
  /// Stops (see stop()).
  ~read_model_manager();
  read_model_manager(const read_model_manager&) = delete;
  read_model_manager& operator=(const read_model_manager&) = delete;

  const std::string& name() const noexcept { return settings_.name; }

  /// The model answering queries now; holding it keeps its store open across a switch.
  std::shared_ptr<const read_model> current() const;

  /// The stats of whichever model answers (one object for the node's life).
  const read_model_stats& stats() const noexcept { return *settings_.model.stats; }

  const rebuild_progress& progress() const noexcept { return progress_; }

  /// What rebuild() did.
  struct rebuild_answer {
    enum class outcome { started, running, failed } result = outcome::failed;
    std::uint64_t number = 0;   ///< the rebuild started, or the one running
    std::filesystem::path dir;  ///< where it builds
    std::string error;          ///< why it failed
  };

  /// Starts a rebuild in the background, unless one is running (then says which).
  rebuild_answer rebuild();

  /// Ends a running rebuild (its directory stays until the next open) and stops the models'
  /// actors without waiting for them (the actor system's shutdown does).
  void stop();

private:
  read_model_manager(caf::actor_system& sys, read_model_manager_settings settings);
  /// Waits for the rebuild to catch up, logs progress, then switches (the rebuild's thread).
  void watch(std::shared_ptr<read_model> fresh, std::filesystem::path dir, std::uint64_t number);
  /// Puts `fresh` (in `dir`) in the place of the current model, on disk and for queries.
  bool switch_to(std::shared_ptr<read_model> fresh, const std::filesystem::path& dir,
                 std::uint64_t number);
  /// Stops `fresh` and removes its directory.
  void abandon(const std::shared_ptr<read_model>& fresh, const std::filesystem::path& dir);

  caf::actor_system& sys_;
  read_model_manager_settings settings_;
  mutable std::mutex current_mutex_; ///< guards current_ only (queries take it)
  std::shared_ptr<read_model> current_;
  mutable std::mutex mutex_;         ///< guards the rest
  std::shared_ptr<read_model> rebuilding_;
  std::thread watcher_;
  std::condition_variable wake_;
  bool stopping_ = false;
  rebuild_progress progress_;
};

} // namespace kontor::projection

#include "runtime/projection/read_model_manager.hpp"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <vector>

#include <fcntl.h>
#include <unistd.h>

#include <caf/all.hpp>

#include "runtime/core/log.hpp"

namespace kontor::projection {

namespace fs = std::filesystem;

namespace {

constexpr const char* component = "read-model";

/// Makes the renames in `dir` durable.
void sync_dir(const fs::path& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0)
    return;
  if (::fsync(fd) != 0)
    log(log_level::warn, component, "fsync of " + dir.string() + " failed: " + std::strerror(errno));
  ::close(fd);
}

fs::path rebuild_dir(const fs::path& canonical, std::uint64_t number) {
  return canonical.parent_path() / (canonical.filename().string() + ".rebuild-" + std::to_string(number));
}

fs::path old_dir(const fs::path& canonical, std::uint64_t number) {
  return canonical.parent_path() / (canonical.filename().string() + ".old-" + std::to_string(number));
}

/// After a crash: a switch cut between its two renames (no canonical directory, a `.old-<n>`
/// one) gets its old model back; every other `.rebuild-<n>` or `.old-<n>` is removed.
void recover_dirs(const fs::path& canonical) {
  const auto parent = canonical.parent_path();
  const auto stem = canonical.filename().string();
  std::error_code ec;
  if (!fs::is_directory(parent, ec))
    return;
  std::vector<fs::path> rebuilds, olds;
  for (const auto& entry : fs::directory_iterator(parent, ec)) {
    const auto name = entry.path().filename().string();
    if (name.starts_with(stem + ".rebuild-"))
      rebuilds.push_back(entry.path());
    else if (name.starts_with(stem + ".old-"))
      olds.push_back(entry.path());
  }
  bool changed = false;
  if (!fs::exists(canonical, ec) && !olds.empty()) {
    fs::rename(olds.front(), canonical, ec);
    if (!ec) {
      log(log_level::info, component,
          "a switch to a rebuilt read model was interrupted: " + olds.front().string() + " is "
            + canonical.string() + " again");
      olds.erase(olds.begin());
      changed = true;
    }
  }
  rebuilds.insert(rebuilds.end(), olds.begin(), olds.end());
  for (const auto& dir : rebuilds) {
    log(log_level::info, component, "removing " + dir.string() + " (left by an interrupted rebuild)");
    fs::remove_all(dir, ec);
    if (ec)
      log(log_level::warn, component, "cannot remove " + dir.string() + ": " + ec.message());
    changed = true;
  }
  if (changed)
    sync_dir(parent);
}

std::string seconds_text(std::chrono::steady_clock::duration d) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f s", std::chrono::duration<double>(d).count());
  return buf;
}

} // namespace

read_model_manager::read_model_manager(caf::actor_system& sys, read_model_manager_settings settings)
  : sys_(sys), settings_(std::move(settings)) {}

read_model_manager::~read_model_manager() {
  stop();
}

persistence::expected<std::unique_ptr<read_model_manager>>
read_model_manager::open(caf::actor_system& sys, read_model_manager_settings settings) {
  recover_dirs(settings.model.dir);
  auto mgr = std::unique_ptr<read_model_manager>(new read_model_manager(sys, std::move(settings)));
  auto opened = read_model::open(sys, mgr->settings_.model);
  if (!opened)
    return opened.error();
  mgr->current_ = std::shared_ptr<read_model>(std::move(*opened));
  mgr->current_->subscribe(mgr->settings_.poller);
  return mgr;
}

std::shared_ptr<const read_model> read_model_manager::current() const {
  std::lock_guard lock{current_mutex_};
  return current_;
}

read_model_manager::rebuild_answer read_model_manager::rebuild() {
  std::lock_guard lock{mutex_};
  rebuild_answer answer;
  if (stopping_) {
    answer.error = "the node is stopping";
    return answer;
  }
  const auto& canonical = settings_.model.dir;
  if (progress_.running) {
    answer.result = rebuild_answer::outcome::running;
    answer.number = progress_.number;
    answer.dir = rebuild_dir(canonical, answer.number);
    return answer;
  }
  if (watcher_.joinable())
    watcher_.join(); // the last rebuild's thread, finished
  const auto number = progress_.number + 1;
  answer.number = number;
  answer.dir = rebuild_dir(canonical, number);
  std::error_code ec;
  fs::remove_all(answer.dir, ec);
  auto s = settings_.model;
  s.dir = answer.dir;
  s.stats = std::make_shared<read_model_stats>(); // no lag histogram: old events are no lag
  s.promoted_stats = settings_.model.stats;
  auto opened = read_model::open(sys_, s);
  if (!opened) {
    ++progress_.failed;
    answer.error = "cannot open " + answer.dir.string() + ": " + opened.error().message;
    log(log_level::error, component, "read model " + name() + ": " + answer.error);
    fs::remove_all(answer.dir, ec);
    return answer;
  }
  std::shared_ptr<read_model> fresh{std::move(*opened)};
  rebuilding_ = fresh;
  progress_.number = number;
  progress_.events = 0;
  progress_.running = true;
  log(log_level::info, component,
      "read model " + name() + ": rebuild " + std::to_string(number) + " started in "
        + answer.dir.string() + " from the start of every shard's log; " + canonical.string()
        + " (" + std::to_string(stats().applied.load()) + " events) answers until the switch");
  fresh->subscribe(settings_.poller);
  watcher_ = std::thread([this, fresh, dir = answer.dir, number] { watch(fresh, dir, number); });
  answer.result = rebuild_answer::outcome::started;
  return answer;
}

void read_model_manager::watch(std::shared_ptr<read_model> fresh, fs::path dir, std::uint64_t number) {
  using clock = std::chrono::steady_clock;
  const auto started = clock::now();
  auto last_log = started;
  const auto what = "read model " + name() + ": rebuild " + std::to_string(number);
  for (;;) {
    {
      std::unique_lock lock{mutex_};
      // Checked every 50 ms: the rebuild's stats change with each of its commits.
      wake_.wait_for(lock, std::chrono::milliseconds(50), [this] { return stopping_; });
      if (stopping_) {
        log(log_level::info, component,
            what + " stopped with the node at " + std::to_string(fresh->stats().applied.load())
              + " events; its directory is removed at the next start");
        progress_.running = false;
        return;
      }
    }
    const auto& own = fresh->stats();
    const auto applied = own.applied_by_shard();
    const auto target = stats().applied_by_shard();
    const std::uint64_t done = own.applied.load();
    progress_.events = done;
    bool caught_up = applied.size() == target.size();
    std::uint64_t goal = 0;
    for (std::size_t s = 0; s < target.size(); ++s) {
      goal += target[s];
      if (s >= applied.size() || applied[s] < target[s])
        caught_up = false;
    }
    const auto now = clock::now();
    if (caught_up) {
      if (switch_to(fresh, dir, number)) {
        ++progress_.completed;
        log(log_level::info, component,
            what + " switched in: " + std::to_string(done) + " events in "
              + seconds_text(now - started) + "; " + settings_.model.dir.string()
              + " is the rebuilt model");
      } else {
        ++progress_.failed;
      }
      progress_.running = false;
      return;
    }
    if (now - last_log >= settings_.progress_interval) {
      last_log = now;
      log(log_level::info, component,
          what + ": " + std::to_string(done) + " of " + std::to_string(goal) + " events ("
            + std::to_string(done * 100 / std::max<std::uint64_t>(goal, 1)) + " %) after "
            + seconds_text(now - started));
    }
  }
}

bool read_model_manager::switch_to(std::shared_ptr<read_model> fresh, const fs::path& dir,
                                   std::uint64_t number) {
  const auto& canonical = settings_.model.dir;
  const auto parent = canonical.parent_path();
  // One atomic exchange: the canonical name is the rebuilt model, `dir` the old one. A crash
  // before it leaves the old model in place (open() removes `dir`); after it, the new one.
  fs::path replaced = dir;
  if (::renameat2(AT_FDCWD, dir.c_str(), AT_FDCWD, canonical.c_str(), RENAME_EXCHANGE) != 0) {
    const int err = errno;
    if (err != EINVAL && err != ENOSYS && err != ENOTSUP) {
      log(log_level::error, component,
          "read model " + name() + ": cannot exchange " + dir.string() + " and " + canonical.string()
            + ": " + std::strerror(err) + "; the rebuild is abandoned");
      abandon(fresh, dir);
      return false;
    }
    // A file system without RENAME_EXCHANGE: two renames; a crash between them leaves no
    // canonical directory and a `.old-<n>` one, which open() puts back.
    replaced = old_dir(canonical, number);
    std::error_code ec;
    fs::rename(canonical, replaced, ec);
    if (!ec) {
      fs::rename(dir, canonical, ec);
      if (ec) {
        std::error_code back;
        fs::rename(replaced, canonical, back);
      }
    }
    if (ec) {
      log(log_level::error, component,
          "read model " + name() + ": cannot move " + dir.string() + " to " + canonical.string()
            + ": " + ec.message() + "; the rebuild is abandoned");
      abandon(fresh, dir);
      return false;
    }
  }
  sync_dir(parent);
  std::shared_ptr<read_model> old;
  {
    std::lock_guard lock{current_mutex_};
    old = std::move(current_);
    current_ = fresh;
  }
  {
    std::lock_guard lock{mutex_};
    rebuilding_.reset();
  }
  // The old model stops before the new one reports into the node's stats, so they only grow.
  old->stop_and_wait();
  fresh->promote();
  old.reset(); // its store closes when the last query holding it ends
  std::error_code ec;
  fs::remove_all(replaced, ec);
  if (ec)
    log(log_level::warn, component, "cannot remove " + replaced.string() + ": " + ec.message());
  sync_dir(parent);
  return true;
}

void read_model_manager::abandon(const std::shared_ptr<read_model>& fresh, const fs::path& dir) {
  fresh->stop_and_wait();
  {
    std::lock_guard lock{mutex_};
    rebuilding_.reset();
  }
  std::error_code ec;
  fs::remove_all(dir, ec);
}

void read_model_manager::stop() {
  {
    std::lock_guard lock{mutex_};
    stopping_ = true;
  }
  wake_.notify_all();
  if (watcher_.joinable())
    watcher_.join();
  std::lock_guard lock{mutex_};
  if (rebuilding_)
    caf::anon_send_exit(rebuilding_->actor(), caf::exit_reason::user_shutdown);
  std::lock_guard current_lock{current_mutex_};
  if (current_)
    caf::anon_send_exit(current_->actor(), caf::exit_reason::user_shutdown);
}

} // namespace kontor::projection

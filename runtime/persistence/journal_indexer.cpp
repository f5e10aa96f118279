#include "runtime/persistence/journal_indexer.hpp"

#include <algorithm>
#include <new>

#include "runtime/core/log.hpp"

namespace kontor::persistence::detail {

namespace {

constexpr const char* log_component = "journal";
/// Log entries per index transaction: bounds the indexer's memory and the length of one commit.
constexpr std::size_t index_txn_entries = 20000;
/// How often a long index catch-up at open reports its progress.
constexpr std::chrono::seconds progress_every{2};
/// How long the indexer waits before it retries after a failed index commit.
constexpr std::chrono::seconds index_retry_delay{1};
/// Of a run of failed index commits, the first and then every this many are logged.
constexpr std::size_t index_failures_logged_every = 30;

} // namespace

journal_indexer::journal_indexer(const journal_log& log, journal_index& index, journal_tail& tail,
                                 std::chrono::milliseconds interval, log_file_space& space)
  : log_(log),
    index_(index),
    tail_(tail),
    interval_(interval),
    space_(space),
    watermark_(index.opened_watermark()) {}

journal_indexer::~journal_indexer() {
  stop();
}

void journal_indexer::start() {
  thread_ = std::thread{[this] { run(); }};
}

void journal_indexer::stop() {
  tail_.stop();
  if (thread_.joinable())
    thread_.join();
}

expected<void> journal_indexer::catch_up(log_offset end, bool rebuilding) {
  const auto started = std::chrono::steady_clock::now();
  auto last_report = started;
  bool reported = false;
  while (watermark_.load() < end) {
    auto reached = step(end);
    if (!reached)
      return std::move(reached).error();
    const auto now = std::chrono::steady_clock::now();
    if (now - last_report >= progress_every && *reached < end) {
      kontor::log(log_level::info, log_component,
                  "journal index: rebuilding, offset " + std::to_string(*reached) + " of "
                    + std::to_string(end));
      last_report = now;
      reported = true;
    }
  }
  if (rebuilding || reported) {
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                      std::chrono::steady_clock::now() - started)
                      .count();
    kontor::log(log_level::info, log_component,
                "journal index: indexed the log up to offset " + std::to_string(end) + " in "
                  + std::to_string(ms) + " ms");
  }
  return {};
}

void journal_indexer::run() {
  using clock = std::chrono::steady_clock;
  // The index was caught up at open, so the first commit comes an interval after it; each later
  // one an interval after the previous one, unless that one was capped (then there is a
  // backlog to work off without pause).
  auto last_commit = clock::now();
  bool backlog = false;
  std::size_t failures = 0;
  for (;;) {
    if (!tail_.wait_beyond(watermark_.load()))
      return;
    // Waiting lets the tail collect more events: each id's index pages are written once per
    // index commit, whatever the number of its events.
    if (!backlog && !tail_.wait_until(last_commit + interval_))
      return;
    const log_offset target = tail_.end();
    top_up_log_file();
    auto reached = step(target);
    if (!reached) {
      // Appends go on; the tail keeps their events until an index commit succeeds.
      ++failures_;
      if (failures++ % index_failures_logged_every == 0)
        kontor::log(log_level::warn, log_component,
                    "journal index: " + reached.error().message + " (failure "
                      + std::to_string(failures) + "); retrying in "
                      + std::to_string(index_retry_delay.count()) + " s");
      if (!tail_.wait_until(clock::now() + index_retry_delay))
        return;
      backlog = false;
      last_commit = clock::now() - interval_;
      continue;
    }
    if (failures != 0) {
      kontor::log(log_level::info, log_component,
                  "journal index: writing works again after " + std::to_string(failures)
                    + " failures");
      failures = 0;
    }
    last_commit = clock::now();
    backlog = *reached < target;
  }
}

void journal_indexer::top_up_log_file() {
  if (!space_.prealloc)
    return;
  constexpr std::uint64_t max_per_wake = 16u << 20;
  auto refused = space_.prealloc->top_up(space_.used_end.load(), max_per_wake);
  if (!refused.empty())
    kontor::log(log_level::warn, log_component,
                "journal: preallocating the log file paused (" + refused
                  + "); commits extend it themselves meanwhile");
}

expected<log_offset> journal_indexer::step(log_offset to) {
  const log_offset from = watermark_.load();
  const log_offset limit = std::min<log_offset>(to, from + index_txn_entries);
  if (limit <= from)
    return from;
  // Every log entry in (from, limit] is committed (limit <= the committed end), so once they
  // are in the index the watermark is `limit`.
  std::vector<index_entry> entries;
  std::vector<std::string_view> ids;
  try {
    auto read = log_.read_for_index(from, limit);
    if (!read)
      return std::move(read).error();
    entries = std::move(*read);
    // Sorted by key, each leaf page is visited once and cursor puts stay on the current page.
    std::sort(entries.begin(), entries.end(), [](const index_entry& a, const index_entry& b) {
      return a.by_shard != b.by_shard ? a.by_shard < b.by_shard : a.key < b.key;
    });
    if (auto written = index_.write(entries, limit); !written)
      return std::move(written).error();
    // The distinct ids of the commit ([len][id] is the common prefix of an id's keys).
    for (const auto& e : entries) {
      if (e.by_shard)
        break;
      const std::string_view key = e.key;
      const auto id = key.substr(1, static_cast<unsigned char>(key[0]));
      if (ids.empty() || ids.back() != id)
        ids.push_back(id);
    }
  } catch (const std::bad_alloc&) {
    return make_error(errc::io_error, "journal in " + log_.env().dir().string()
                                        + " is out of memory while indexing the log");
  }
  // The index commit is visible to new read transactions: the entries may leave the tail.
  tail_.trim(limit, ids);
  watermark_.store(limit);
  return limit;
}

} // namespace kontor::persistence::detail

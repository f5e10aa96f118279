#include "runtime/persistence/journal_tail.hpp"

#include <algorithm>
#include <exception>
#include <new>

#include "runtime/core/log.hpp"

namespace kontor::persistence::detail {

namespace {

/// At most `max` entries of `v` (ordered by key) with key >= `from`.
std::vector<tail_entry> range(const std::vector<tail_entry>& v, std::uint64_t from,
                              std::size_t max) {
  auto b = std::lower_bound(v.begin(), v.end(), from,
                            [](const tail_entry& e, std::uint64_t k) { return e.key < k; });
  const auto n = std::min<std::size_t>(max, static_cast<std::size_t>(v.end() - b));
  return {b, b + static_cast<std::ptrdiff_t>(n)};
}

/// Drops the entries of `v` (ordered by offset too) at or below `limit`.
void drop_upto(std::vector<tail_entry>& v, log_offset limit) {
  auto keep = std::find_if(v.begin(), v.end(), [limit](const tail_entry& e) { return e.offset > limit; });
  v.erase(v.begin(), keep);
}

} // namespace

void journal_tail::publish(const std::vector<tail_add>& added, log_offset end) {
  bool wake = false;
  try {
    std::lock_guard lock{mutex_};
    for (const auto& a : added) {
      auto it = by_id_.find(a.id);
      if (it == by_id_.end())
        it = by_id_.emplace(std::string{a.id}, std::vector<tail_entry>{}).first;
      it->second.push_back(tail_entry{a.seq, a.offset});
      by_shard_[a.shard].push_back(tail_entry{a.shard_pos, a.offset});
    }
    end_ = end;
    wake = waiting_;
  } catch (const std::bad_alloc&) {
    // The commit is durable but reads could not see it, and its waiters must not be told it
    // failed: there is no consistent way on. The next open indexes it from the log.
    kontor::log(log_level::error, "journal",
                "out of memory while publishing a committed batch; aborting");
    std::terminate();
  }
  if (wake)
    wake_.notify_one();
}

log_offset journal_tail::end() const {
  std::lock_guard lock{mutex_};
  return end_;
}

bool journal_tail::wait_beyond(log_offset mark) {
  std::unique_lock lock{mutex_};
  waiting_ = true;
  wake_.wait(lock, [&] { return stopping_ || end_ > mark; });
  waiting_ = false;
  return !stopping_;
}

bool journal_tail::wait_until(std::chrono::steady_clock::time_point deadline) {
  std::unique_lock lock{mutex_};
  return !wake_.wait_until(lock, deadline, [this] { return stopping_; });
}

void journal_tail::stop() {
  {
    std::lock_guard lock{mutex_};
    stopping_ = true;
  }
  wake_.notify_all();
}

void journal_tail::trim(log_offset limit, const std::vector<std::string_view>& ids) {
  std::lock_guard lock{mutex_};
  for (auto id : ids) {
    if (auto it = by_id_.find(id); it != by_id_.end()) {
      drop_upto(it->second, limit);
      if (it->second.empty())
        by_id_.erase(it);
    }
  }
  for (auto it = by_shard_.begin(); it != by_shard_.end();) {
    drop_upto(it->second, limit);
    it = it->second.empty() ? by_shard_.erase(it) : std::next(it);
  }
}

std::vector<tail_entry> journal_tail::by_id(std::string_view id, sequence_nr from,
                                            std::size_t max) const {
  std::lock_guard lock{mutex_};
  if (auto it = by_id_.find(id); it != by_id_.end())
    return range(it->second, from, max);
  return {};
}

std::optional<sequence_nr> journal_tail::highest_seq(std::string_view id) const {
  std::lock_guard lock{mutex_};
  if (auto it = by_id_.find(id); it != by_id_.end() && !it->second.empty())
    return it->second.back().key;
  return std::nullopt;
}

std::vector<tail_entry> journal_tail::by_shard(shard_id shard, shard_offset from,
                                               std::size_t max) const {
  std::lock_guard lock{mutex_};
  if (auto it = by_shard_.find(shard); it != by_shard_.end())
    return range(it->second, from, max);
  return {};
}

std::optional<shard_offset> journal_tail::shard_end(shard_id shard) const {
  std::lock_guard lock{mutex_};
  if (auto it = by_shard_.find(shard); it != by_shard_.end() && !it->second.empty())
    return it->second.back().key;
  return std::nullopt;
}

} // namespace kontor::persistence::detail

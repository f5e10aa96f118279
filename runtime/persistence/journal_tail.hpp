#pragma once

// Internal to kontor_persistence: the committed events that the derived index does not hold
// yet, in memory, found by id and by shard.

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "runtime/core/ids.hpp"

namespace kontor::persistence::detail {

/// One committed event of the tail: its key in a stream (seq or shard position) and where it
/// is in the log.
struct tail_entry {
  std::uint64_t key = 0;
  log_offset offset = 0;
};

/// One committed event to add to the tail.
struct tail_add {
  std::string_view id;
  sequence_nr seq = 0;
  shard_id shard = 0;
  shard_offset shard_pos = 0;
  log_offset offset = 0;
};

/// The journal's committed events above the index watermark. The writer publishes each commit
/// here before acknowledging it, so reads by id or by shard see every acknowledged event at
/// once; the indexer forgets entries once its own commit holds them. Per id and per shard the
/// tail always holds a suffix of the stream, in order. Thread-safe.
class journal_tail {
public:
  explicit journal_tail(log_offset end) : end_(end) {}

  /// Writer, after a commit: adds the commit's events and moves the end to `end`.
  /// Terminates the process when memory runs out (see the definition for why).
  void publish(const std::vector<tail_add>& added, log_offset end);

  /// The last committed offset whose events are in the tail (or in the index).
  log_offset end() const;

  /// Indexer: blocks until the end is beyond `mark` or stop() was called; false when stopped.
  bool wait_beyond(log_offset mark);
  /// Indexer: blocks until `deadline` unless stop() is called first; false when stopped.
  bool wait_until(std::chrono::steady_clock::time_point deadline);
  /// Wakes the indexer for good.
  void stop();

  /// Indexer, after its commit up to `limit`: forgets the entries at or below `limit` of
  /// `ids` (the ids of that commit) and of every shard.
  void trim(log_offset limit, const std::vector<std::string_view>& ids);

  /// Entries of `id` with seq >= `from`, at most `max`, in order.
  std::vector<tail_entry> by_id(std::string_view id, sequence_nr from, std::size_t max) const;
  /// The highest seq of `id` in the tail, if it has any there.
  std::optional<sequence_nr> highest_seq(std::string_view id) const;
  /// Entries of `shard` with position >= `from`, at most `max`, in order.
  std::vector<tail_entry> by_shard(shard_id shard, shard_offset from, std::size_t max) const;
  /// The last position of `shard` in the tail, if it has any there.
  std::optional<shard_offset> shard_end(shard_id shard) const;

private:
  /// Hashes std::string keys and std::string_view probes alike (heterogeneous lookup).
  struct string_hash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const noexcept {
      return std::hash<std::string_view>{}(s);
    }
  };
  using id_map =
    std::unordered_map<std::string, std::vector<tail_entry>, string_hash, std::equal_to<>>;

  mutable std::mutex mutex_;
  std::condition_variable wake_;
  id_map by_id_;
  std::unordered_map<shard_id, std::vector<tail_entry>> by_shard_;
  log_offset end_ = 0;
  bool waiting_ = false; ///< the indexer sleeps until the end passes its watermark
  bool stopping_ = false;
};

} // namespace kontor::persistence::detail

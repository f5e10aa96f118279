#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <mutex>
#include <string>

namespace kontor::persistence {

/// Keeps zero-filled, allocated space ahead of the used end of a file that its owner extends by
/// writing past its end (the journal's LMDB data file). A commit that overwrites blocks already
/// allocated and written needs no file-size or block-allocation metadata in its fdatasync; on
/// ext4 that halves the latency of an appending LMDB commit (see bench/journal_bench).
///
/// Two threads use it: the owner's writer (guard) and a helper thread (top_up). The zeros are
/// written with O_DIRECT, so they never sit dirty in the page cache for the writer's fdatasync
/// to flush, and only ever at or past the file's end, which the writer does not reach without
/// holding the guard.
class file_preallocator {
public:
  /// Opens `file` (which exists) for preallocation of `headroom` bytes; nullptr with `why_not`
  /// set when the file system cannot do it (no O_DIRECT, e.g. tmpfs).
  static std::unique_ptr<file_preallocator> open(const std::filesystem::path& file,
                                                 std::uint64_t headroom, std::string& why_not);
  ~file_preallocator();
  file_preallocator(const file_preallocator&) = delete;
  file_preallocator& operator=(const file_preallocator&) = delete;

  /// Writer side, before a write that may extend the used end from `used_end` by up to `bytes`:
  /// a held lock if that write could reach the file's current end (no zeros are written while
  /// it is held), an empty one otherwise.
  std::unique_lock<std::mutex> guard(std::uint64_t used_end, std::uint64_t bytes);

  /// Helper side: writes zeros until the file ends `headroom` past `used_end`, at most
  /// `max_bytes` in this call, once the headroom has fallen below half. A refused write (full
  /// disk, file-size limit) is returned as a message and pauses preallocation for a while;
  /// the owner's own writes then extend the file as without preallocation.
  std::string top_up(std::uint64_t used_end, std::uint64_t max_bytes);

  /// The file's size as last seen (bytes).
  std::uint64_t size() const noexcept { return size_.load(); }

private:
  file_preallocator(int fd, std::uint64_t size, std::uint64_t headroom);

  static constexpr std::size_t chunk = 256 * 1024; ///< one O_DIRECT write
  int fd_;
  std::uint64_t headroom_;
  std::mutex mtx_;                   ///< held while zeros are written, or by a guarded writer
  std::atomic<std::uint64_t> size_;  ///< the file's size; grows only
  void* zeros_ = nullptr;            ///< `chunk` aligned zero bytes
  std::chrono::steady_clock::time_point paused_until_{};
};

} // namespace kontor::persistence

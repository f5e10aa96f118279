#include "runtime/persistence/file_preallocator.hpp"

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace kontor::persistence {

namespace {

constexpr std::uint64_t alignment = 4096;             // O_DIRECT offsets and sizes
constexpr auto pause_after_refusal = std::chrono::seconds(10);

} // namespace

std::unique_ptr<file_preallocator> file_preallocator::open(const std::filesystem::path& file,
                                                           std::uint64_t headroom,
                                                           std::string& why_not) {
  int fd = ::open(file.c_str(), O_WRONLY | O_DIRECT | O_CLOEXEC);
  if (fd < 0) {
    why_not = "cannot open " + file.string() + " with O_DIRECT: " + std::strerror(errno);
    return nullptr;
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    why_not = "cannot stat " + file.string() + ": " + std::strerror(errno);
    ::close(fd);
    return nullptr;
  }
  std::unique_ptr<file_preallocator> p{
    new file_preallocator(fd, static_cast<std::uint64_t>(st.st_size), headroom)};
  if (::posix_memalign(&p->zeros_, alignment, chunk) != 0) {
    why_not = "out of memory";
    return nullptr;
  }
  std::memset(p->zeros_, 0, chunk);
  return p;
}

file_preallocator::file_preallocator(int fd, std::uint64_t size, std::uint64_t headroom)
  : fd_(fd), headroom_(headroom), size_(size) {}

file_preallocator::~file_preallocator() {
  std::free(zeros_);
  ::close(fd_);
}

std::unique_lock<std::mutex> file_preallocator::guard(std::uint64_t used_end, std::uint64_t bytes) {
  // size_ only grows, so a write that fits below it now stays clear of every later zero write.
  if (used_end + bytes < size_.load())
    return {};
  return std::unique_lock<std::mutex>{mtx_};
}

std::string file_preallocator::top_up(std::uint64_t used_end, std::uint64_t max_bytes) {
  auto now = std::chrono::steady_clock::now();
  if (now < paused_until_)
    return {};
  const std::uint64_t target = used_end + headroom_;
  if (size_.load() > used_end + headroom_ / 2)
    return {};
  std::uint64_t written = 0;
  std::string refused;
  while (written < max_bytes) {
    std::lock_guard<std::mutex> lock{mtx_};
    struct stat st {};
    if (::fstat(fd_, &st) != 0) {
      refused = std::string("fstat: ") + std::strerror(errno);
      break;
    }
    // The owner may have extended the file itself meanwhile (while holding the guard).
    auto end = static_cast<std::uint64_t>(st.st_size);
    size_ = end;
    if (end >= target)
      break;
    if (end % alignment != 0) {
      refused = "the file's size is not a multiple of " + std::to_string(alignment);
      break;
    }
    auto n = ::pwrite(fd_, zeros_, chunk, static_cast<off_t>(end));
    if (n <= 0) {
      refused = std::string("writing zeros: ") + (n < 0 ? std::strerror(errno) : "no progress");
      break;
    }
    size_ = end + static_cast<std::uint64_t>(n);
    written += static_cast<std::uint64_t>(n);
  }
  // The new size and allocation are made durable here, not in the owner's next commit.
  if (written > 0 && ::fdatasync(fd_) != 0 && refused.empty())
    refused = std::string("fdatasync: ") + std::strerror(errno);
  if (!refused.empty())
    paused_until_ = now + pause_after_refusal;
  return refused;
}

} // namespace kontor::persistence

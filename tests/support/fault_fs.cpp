// kontor_fault_fs: an LD_PRELOAD library for fault-injection tests. It interposes fdatasync and
// fsync (LMDB's commit syncs its data file with fdatasync; the journal's preallocator uses fsync)
// and obeys a control file named by the environment variable FAULT_FS_FILE, read at every call:
//   ok            call the real function
//   fail [PATH]   return -1 with errno EIO
//   hang [PATH]   block, re-reading the file every 5 ms, until it says something else; while a
//                 call blocks, the file "<control file>.hanging" exists (a test waits for it)
// With PATH, only descriptors whose file path contains PATH are affected. A missing or
// unreadable control file means ok.

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <time.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace {

enum class mode { ok, fail, hang };

/// The current instruction for `fd`.
mode instruction_for(int fd) {
  const char* control = std::getenv("FAULT_FS_FILE");
  if (control == nullptr)
    return mode::ok;
  int cfd = ::open(control, O_RDONLY | O_CLOEXEC);
  if (cfd < 0)
    return mode::ok;
  char text[512] = {};
  auto n = ::read(cfd, text, sizeof text - 1);
  ::close(cfd);
  if (n <= 0)
    return mode::ok;
  text[n] = '\0';
  char word[16] = {};
  char path[sizeof text] = {};
  if (std::sscanf(text, "%15s %511s", word, path) < 1)
    return mode::ok;
  mode m = std::strcmp(word, "fail") == 0   ? mode::fail
           : std::strcmp(word, "hang") == 0 ? mode::hang
                                            : mode::ok;
  if (m == mode::ok || path[0] == '\0')
    return m;
  char link[64];
  std::snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
  char target[4096];
  auto len = ::readlink(link, target, sizeof target - 1);
  if (len < 0)
    return mode::ok;
  target[len] = '\0';
  return std::strstr(target, path) != nullptr ? m : mode::ok;
}

/// Creates or removes the "<control file>.hanging" marker.
void mark_hanging(bool on) {
  const char* control = std::getenv("FAULT_FS_FILE");
  if (control == nullptr)
    return;
  char marker[4096];
  std::snprintf(marker, sizeof marker, "%s.hanging", control);
  if (on) {
    int fd = ::open(marker, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    if (fd >= 0)
      ::close(fd);
  } else {
    ::unlink(marker);
  }
}

/// Applies the control file to a sync of `fd`; true when the real call should run.
bool pass_through(int fd) {
  bool hanging = false;
  for (;;) {
    auto m = instruction_for(fd);
    if (hanging && m != mode::hang)
      mark_hanging(false);
    switch (m) {
      case mode::ok:
        return true;
      case mode::fail:
        errno = EIO;
        return false;
      case mode::hang: {
        if (!hanging)
          mark_hanging(true);
        hanging = true;
        timespec pause{0, 5'000'000};
        ::nanosleep(&pause, nullptr); // the control file is polled: a test changes it from outside
        break;
      }
    }
  }
}

template <class Fn>
Fn real(const char* name) {
  return reinterpret_cast<Fn>(::dlsym(RTLD_NEXT, name));
}

} // namespace

extern "C" int fdatasync(int fd) {
  static auto next = real<int (*)(int)>("fdatasync");
  if (!pass_through(fd))
    return -1;
  return next(fd);
}

extern "C" int fsync(int fd) {
  static auto next = real<int (*)(int)>("fsync");
  if (!pass_through(fd))
    return -1;
  return next(fd);
}

#include "tests/support/ports.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <fstream>
#include <stdexcept>

namespace kontor::test {

namespace {

constexpr const char* lock_dir = "/tmp/kontor-test-ports";

/// Whether 127.0.0.1:port can be bound now (no listener, no lingering connection on it).
bool bindable(unsigned short port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return false;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  ::close(fd);
  return ok;
}

} // namespace

std::pair<unsigned short, unsigned short> port_reservation::candidate_range() {
  int lo = 32768, hi = 60999; // the kernel's defaults
  std::ifstream("/proc/sys/net/ipv4/ip_local_port_range") >> lo >> hi;
  // Below the ephemeral range when there is room (the usual case), else above it.
  if (lo - 1 >= 10000 + 1000)
    return {10000, static_cast<unsigned short>(lo - 1)};
  if (hi + 1 <= 65535 - 1000)
    return {static_cast<unsigned short>(hi + 1), 65535};
  throw std::runtime_error("port_reservation: the ephemeral range " + std::to_string(lo) + "-"
                           + std::to_string(hi) + " leaves no room for fixed test ports");
}

port_reservation::port_reservation(std::size_t count) {
  auto [first, last] = candidate_range();
  std::size_t span = static_cast<std::size_t>(last - first) + 1;
  if (::mkdir(lock_dir, 0777) == 0)
    ::chmod(lock_dir, 01777); // every user's tests share it (the umask would narrow mkdir's mode)
  // Start somewhere that depends on the pid and the time: parallel test processes rarely meet.
  auto seed = static_cast<std::size_t>(::getpid()) * 7919
              + static_cast<std::size_t>(std::chrono::steady_clock::now().time_since_epoch().count());
  for (std::size_t k = 0; k < span && ports_.size() < count; ++k) {
    auto port = static_cast<unsigned short>(first + (seed + k) % span);
    auto path = std::string(lock_dir) + "/" + std::to_string(port) + ".lock";
    int fd = ::open(path.c_str(), O_RDONLY | O_CREAT | O_CLOEXEC, 0644); // flock needs no write access
    if (fd < 0)
      continue;
    if (::flock(fd, LOCK_EX | LOCK_NB) != 0 || !bindable(port)) {
      ::close(fd);
      continue;
    }
    ports_.push_back(port);
    lock_fds_.push_back(fd);
  }
  if (ports_.size() < count) {
    for (int fd : lock_fds_)
      ::close(fd);
    throw std::runtime_error("port_reservation: found only " + std::to_string(ports_.size()) + " of "
                             + std::to_string(count) + " free ports in " + std::to_string(first) + "-"
                             + std::to_string(last));
  }
}

port_reservation::~port_reservation() {
  for (int fd : lock_fds_)
    ::close(fd);
}

} // namespace kontor::test

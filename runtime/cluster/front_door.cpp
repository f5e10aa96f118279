#include "runtime/cluster/front_door.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <deque>
#include <optional>
#include <set>

#include <caf/binary_deserializer.hpp>
#include <caf/io/basp/header.hpp>
#include <caf/io/basp/message_type.hpp>
#include <caf/io/basp_broker.hpp>
#include <caf/io/middleman.hpp>
#include <caf/io/network/multiplexer.hpp>
#include <caf/send.hpp>

#include "runtime/core/log.hpp"

namespace kontor::cluster {

namespace {

using clock = std::chrono::steady_clock;
namespace basp = caf::io::basp;

/// Longest client-handshake payload accepted (CAF's is a node id: a few dozen bytes).
constexpr std::uint32_t max_handshake_payload = 4096;

/// Drop lines logged per minute before they are only counted (a port scan must not flood).
constexpr int max_lines_per_minute = 20;

struct pending {
  int fd = -1;
  std::string peer;
  clock::time_point deadline;
  short events = POLLIN | POLLRDHUP; ///< what the next step waits for
  ssl_ptr ssl;                       ///< set once a TLS handshake began
  bool shaken = false;               ///< the TLS handshake is done: waiting for the BASP one
};

std::string peer_of(const sockaddr_storage& sa) {
  char host[INET6_ADDRSTRLEN] = {};
  std::uint16_t port = 0;
  if (sa.ss_family == AF_INET) {
    auto& in = reinterpret_cast<const sockaddr_in&>(sa);
    ::inet_ntop(AF_INET, &in.sin_addr, host, sizeof host);
    port = ntohs(in.sin_port);
    return std::string{host} + ":" + std::to_string(port);
  }
  auto& in6 = reinterpret_cast<const sockaddr_in6&>(sa);
  ::inet_ntop(AF_INET6, &in6.sin6_addr, host, sizeof host);
  port = ntohs(in6.sin6_port);
  return "[" + std::string{host} + "]:" + std::to_string(port);
}

/// What the first bytes look like, for the log line: text is quoted (a foreign protocol such
/// as HTTP shows its first line), anything else is shown as hex.
std::string describe(const char* data, std::size_t size) {
  std::size_t printable = 0;
  while (printable < size && printable < 40) {
    auto c = static_cast<unsigned char>(data[printable]);
    if (c == '\r' || c == '\n')
      break;
    if (c < 0x20 || c > 0x7e)
      break;
    ++printable;
  }
  if (printable >= 4)
    return "a foreign protocol (starts \"" + std::string{data, printable} + "\")";
  std::string hex = "not a cluster peer (first bytes";
  static const char digits[] = "0123456789abcdef";
  for (std::size_t i = 0; i < size && i < 8; ++i) {
    auto c = static_cast<unsigned char>(data[i]);
    hex += ' ';
    hex += digits[c >> 4];
    hex += digits[c & 0xf];
  }
  return hex + ")";
}

/// Why the first header_size bytes are not the opening of a BASP client handshake (empty if
/// they are).
std::string check_handshake(caf::actor_system& sys, const char* data, std::size_t size) {
  basp::header hdr;
  caf::binary_deserializer source{sys, data, size};
  if (auto err = source(hdr))
    return describe(data, size);
  if (hdr.operation != basp::message_type::client_handshake || !basp::valid(hdr)
      || hdr.operation_data != 0 || hdr.payload_len == 0
      || hdr.payload_len > max_handshake_payload)
    return describe(data, size);
  return {};
}

/// Binds and listens on `address`:`port`, trying each address the name resolves to.
kontor::expected<int, std::string> listen_on(const std::string& address, std::uint16_t port) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* found = nullptr;
  auto service = std::to_string(port);
  if (int rc = ::getaddrinfo(address.empty() ? nullptr : address.c_str(), service.c_str(), &hints,
                             &found);
      rc != 0)
    return std::string{"cannot resolve "} + address + ": " + ::gai_strerror(rc);
  std::string why = "no address";
  for (auto* ai = found; ai != nullptr; ai = ai->ai_next) {
    int fd = ::socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                      ai->ai_protocol);
    if (fd < 0) {
      why = std::strerror(errno);
      continue;
    }
    int on = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
    if (::bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && ::listen(fd, 128) == 0) {
      ::freeaddrinfo(found);
      return fd;
    }
    why = std::strerror(errno);
    ::close(fd);
  }
  ::freeaddrinfo(found);
  return why;
}

} // namespace

kontor::expected<std::unique_ptr<front_door>, std::string>
front_door::open(caf::actor_system& sys, caf::actor published, front_door_settings settings) {
  auto fd = listen_on(settings.bind_address, settings.port);
  if (!fd)
    return fd.error();
  std::unique_ptr<front_door> out{new front_door()};
  out->sys_ = &sys;
  out->published_ = std::move(published);
  out->basp_ = sys.middleman().named_broker<caf::io::basp_broker>(caf::atom("BASP"));
  out->settings_ = std::move(settings);
  out->listener_ = *fd;
  sockaddr_storage bound{};
  socklen_t len = sizeof bound;
  ::getsockname(*fd, reinterpret_cast<sockaddr*>(&bound), &len);
  out->port_ = ntohs(bound.ss_family == AF_INET
                       ? reinterpret_cast<sockaddr_in&>(bound).sin_port
                       : reinterpret_cast<sockaddr_in6&>(bound).sin6_port);
  out->wakeup_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (out->wakeup_ < 0) {
    ::close(out->listener_);
    return std::string{"eventfd: "} + std::strerror(errno);
  }
  out->thread_ = std::thread([p = out.get()] { p->run(); });
  return out;
}

front_door::~front_door() {
  if (thread_.joinable()) {
    std::uint64_t one = 1;
    [[maybe_unused]] auto n = ::write(wakeup_, &one, sizeof one);
    thread_.join();
  }
  if (listener_ >= 0)
    ::close(listener_);
  if (wakeup_ >= 0)
    ::close(wakeup_);
}

void front_door::run() {
  std::deque<pending> waiting;
  int lines = 0;
  std::uint64_t unlogged = 0;
  auto minute_start = clock::now();
  auto drop = [&](pending& p, const std::string& why, bool quiet) {
    p.ssl.reset();
    ::close(p.fd);
    p.fd = -1;
    dropped_.fetch_add(1, std::memory_order_relaxed);
    if (quiet)
      return;
    if (auto now = clock::now(); now - minute_start >= std::chrono::minutes{1}) {
      if (unlogged > 0)
        log(log_level::warn, "cluster",
            "cluster port: " + std::to_string(unlogged) + " more connections dropped unlogged");
      minute_start = now;
      lines = 0;
      unlogged = 0;
    }
    if (lines++ < max_lines_per_minute)
      log(log_level::warn, "cluster",
          "cluster port: dropped the connection from " + p.peer + ": " + why);
    else
      ++unlogged;
  };
  // CAF's BASP broker takes the connection as if its own acceptor had accepted it.
  auto hand_over = [&](pending& p, caf::io::scribe_ptr scribe) {
    p.fd = -1; // the scribe's now
    p.ssl.reset();
    admitted_.fetch_add(1, std::memory_order_relaxed);
    caf::anon_send(basp_, caf::publish_atom::value, std::move(scribe), port_,
                   caf::actor_cast<caf::strong_actor_ptr>(published_), std::set<std::string>{});
  };
  // A TLS connection's next step: the handshake, then a BASP client handshake inside it.
  auto advance_tls = [&](pending& p, bool deadline_passed) {
    auto waited = std::to_string(settings_.handshake_timeout.count()) + " ms";
    if (!p.shaken) {
      std::string why;
      switch (handshake(p.ssl.get(), why)) {
        case handshake_step::failed:
          return drop(p, "TLS handshake failed: " + why, false);
        case handshake_step::want_read:
        case handshake_step::want_write: {
          if (deadline_passed)
            return drop(p, "no complete TLS handshake within " + waited, false);
          p.events = SSL_want_write(p.ssl.get()) ? POLLOUT : POLLIN;
          return;
        }
        case handshake_step::done:
          p.shaken = true;
          break;
      }
    }
    std::array<char, basp::header_size> head{};
    auto n = peek(p.ssl.get(), head.data(), head.size());
    if (n < 0)
      return drop(p, "closed after the TLS handshake", false);
    if (static_cast<std::size_t>(n) < head.size()) {
      if (deadline_passed)
        return drop(p, "no cluster handshake within " + waited + " after TLS", false);
      p.events = POLLIN | POLLRDHUP;
      return;
    }
    if (auto why = check_handshake(*sys_, head.data(), head.size()); !why.empty())
      return drop(p, "inside TLS: " + why, false);
    auto fd = p.fd;
    hand_over(p, make_scribe(*sys_, fd, std::move(p.ssl)));
  };
  // Decides on a connection from what it has sent: drops it, hands it to CAF, or (when less
  // than a header arrived and the deadline is not reached) leaves it waiting.
  auto inspect = [&](pending& p, bool deadline_passed) {
    if (p.ssl)
      return advance_tls(p, deadline_passed);
    std::array<char, basp::header_size> head{};
    auto n = ::recv(p.fd, head.data(), head.size(), MSG_PEEK | MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
      n = 0;
    else if (n < 0)
      return drop(p, std::strerror(errno), true);
    else if (n == 0 && !deadline_passed) // closed without a byte: a probe of the port
      return drop(p, "closed without a byte", true);
    auto size = static_cast<std::size_t>(n);
    if (size < head.size()) {
      // Woken with less than a header (SO_RCVLOWAT): the peer closed, nothing more will come.
      if (!deadline_passed)
        return drop(p, describe(head.data(), size) + ", then closed", false);
      auto waited = std::to_string(settings_.handshake_timeout.count()) + " ms";
      return drop(p, size == 0 ? "sent nothing within " + waited
                               : describe(head.data(), size) + ", and no more within " + waited,
                  false);
    }
    const bool tls_hello = looks_like_tls(head.data(), head.size());
    if (settings_.tls) {
      if (tls_hello) {
        int one = 1; // TLS records come in any size: wake on every byte from now on
        ::setsockopt(p.fd, SOL_SOCKET, SO_RCVLOWAT, &one, sizeof one);
        p.ssl = settings_.tls->session(p.fd, true);
        if (!p.ssl)
          return drop(p, "cannot start a TLS session (out of memory)", false);
        return advance_tls(p, false);
      }
      if (check_handshake(*sys_, head.data(), head.size()).empty())
        return drop(p, "a cluster peer without TLS, but this cluster port requires TLS (give the "
                       "peer cluster-tls-cert-file, cluster-tls-key-file and cluster-tls-ca-file)",
                    false);
      return drop(p, describe(head.data(), head.size()), false);
    }
    if (tls_hello)
      return drop(p, "a TLS client, but this cluster port is plaintext (no cluster-tls-* files "
                     "set on this node)",
                  false);
    if (auto why = check_handshake(*sys_, head.data(), head.size()); !why.empty())
      return drop(p, why, false);
    // A peer: CAF's BASP broker takes the socket as if its own acceptor had accepted it,
    // writes the server handshake and reads the (still unread) client handshake. Every byte
    // wakes CAF's reader again.
    int one = 1;
    ::setsockopt(p.fd, SOL_SOCKET, SO_RCVLOWAT, &one, sizeof one);
    hand_over(p, sys_->middleman().backend().new_scribe(p.fd));
  };
  auto paused_until = clock::time_point{}; // accepting paused (out of file descriptors)
  std::vector<pollfd> fds;
  for (;;) {
    fds.clear();
    fds.push_back({wakeup_, POLLIN, 0});
    fds.push_back({listener_, clock::now() >= paused_until ? short{POLLIN} : short{0}, 0});
    for (auto& p : waiting)
      fds.push_back({p.fd, p.events, 0});
    auto now = clock::now();
    std::optional<clock::time_point> next; // deadlines are in arrival order
    if (!waiting.empty())
      next = waiting.front().deadline;
    if (paused_until > now && (!next || paused_until < *next))
      next = paused_until;
    int timeout = -1;
    if (next)
      timeout = static_cast<int>(std::max<long long>(
        0, std::chrono::duration_cast<std::chrono::milliseconds>(*next - now).count() + 1));
    if (::poll(fds.data(), fds.size(), timeout) < 0 && errno != EINTR) {
      log(log_level::error, "cluster", std::string{"cluster port: poll: "} + std::strerror(errno));
      break;
    }
    if (fds[0].revents != 0)
      break;
    // Connections that sent a header's worth (SO_RCVLOWAT), or hung up.
    for (std::size_t i = 2; i < fds.size(); ++i)
      if (fds[i].revents != 0)
        inspect(waiting[i - 2], false);
    // Silent (or short) past the deadline.
    now = clock::now();
    for (auto& p : waiting)
      if (p.fd >= 0 && p.deadline <= now)
        inspect(p, true);
    std::erase_if(waiting, [](const pending& p) { return p.fd < 0; });
    // New connections.
    if (fds[1].revents & POLLIN) {
      for (;;) {
        sockaddr_storage sa{};
        socklen_t len = sizeof sa;
        int fd = ::accept4(listener_, reinterpret_cast<sockaddr*>(&sa), &len,
                           SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
          if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
            // The connection stays in the backlog; retrying at once would spin.
            log(log_level::warn, "cluster",
                std::string{"cluster port: cannot accept: "} + std::strerror(errno));
            paused_until = clock::now() + std::chrono::milliseconds{200};
          }
          break; // EAGAIN (all taken) or a connection that went away meanwhile
        }
        // Woken (poll) only once a whole header has arrived, or the peer hung up.
        int low = static_cast<int>(basp::header_size);
        ::setsockopt(fd, SOL_SOCKET, SO_RCVLOWAT, &low, sizeof low);
        if (waiting.size() >= settings_.max_pending) {
          drop(waiting.front(), "too many connections without a handshake", false);
          waiting.pop_front();
        }
        pending p;
        p.fd = fd;
        p.peer = peer_of(sa);
        p.deadline = clock::now() + settings_.handshake_timeout;
        waiting.push_back(std::move(p));
      }
    }
  }
  for (auto& p : waiting)
    if (p.fd >= 0)
      ::close(p.fd);
}

} // namespace kontor::cluster

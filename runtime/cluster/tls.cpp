#include "runtime/cluster/tls.hpp"

#include <openssl/err.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <poll.h>

#include <caf/io/middleman.hpp>
#include <caf/io/network/default_multiplexer.hpp>
#include <caf/io/network/interfaces.hpp>
#include <caf/io/network/native_socket.hpp>
#include <caf/io/network/stream_impl.hpp>

namespace kontor::cluster {

namespace {

using caf::io::network::rw_state;
using native_socket = caf::io::network::native_socket;

/// OpenSSL's error queue of this thread as text (emptied), or `fallback` when it is empty.
std::string ssl_errors(const std::string& fallback) {
  std::string out;
  while (auto code = ERR_get_error()) {
    char buf[256];
    ERR_error_string_n(code, buf, sizeof buf);
    // "error:0A000086:SSL routines::certificate verify failed": the reason is the last part.
    std::string text = buf;
    auto colon = text.rfind(':');
    if (colon != std::string::npos && colon + 1 < text.size())
      text = text.substr(colon + 1);
    if (out.find(text) == std::string::npos)
      out += (out.empty() ? "" : "; ") + text;
  }
  return out.empty() ? fallback : out;
}

/// One SSL_read / SSL_write / SSL_peek (`op`) on an established session: the bytes (> 0), 0
/// when it has to wait for the socket, -1 when the session is over (closed, reset, or a broken
/// record).
template <class Op>
long ssl_io(SSL* ssl, Op op) {
  ERR_clear_error();
  const int n = op();
  if (n > 0)
    return n;
  switch (SSL_get_error(ssl, n)) {
    case SSL_ERROR_WANT_READ:
    case SSL_ERROR_WANT_WRITE:
      return 0;
    default:
      ERR_clear_error();
      return -1;
  }
}

/// The stream policy of a scribe over an established session (CAF's stream_impl calls it).
class session_policy {
public:
  explicit session_policy(ssl_ptr ssl) : ssl_(std::move(ssl)) {}

  rw_state read_some(std::size_t& result, native_socket, void* buf, std::size_t len) {
    result = 0;
    if (len == 0)
      return rw_state::success;
    auto n = ssl_io(ssl_.get(), [&] { return SSL_read(ssl_.get(), buf, static_cast<int>(len)); });
    if (n < 0)
      return rw_state::failure;
    result = static_cast<std::size_t>(n); // 0: nothing yet, wait for the socket
    return rw_state::success;
  }

  rw_state write_some(std::size_t& result, native_socket, const void* buf, std::size_t len) {
    result = 0;
    if (len == 0)
      return rw_state::indeterminate; // CAF's "nothing to write": stop polling for writes
    auto n = ssl_io(ssl_.get(), [&] { return SSL_write(ssl_.get(), buf, static_cast<int>(len)); });
    if (n < 0)
      return rw_state::failure;
    result = static_cast<std::size_t>(n);
    return rw_state::success;
  }

  bool try_accept(native_socket&, native_socket) { return false; } // streams never accept

  /// Decrypted bytes already buffered are invisible to poll: read them now.
  bool must_read_more(native_socket, std::size_t threshold) {
    return static_cast<std::size_t>(SSL_pending(ssl_.get())) >= threshold;
  }

private:
  ssl_ptr ssl_;
};

/// CAF's TCP scribe with the session policy instead of plain recv/send.
class session_scribe final : public caf::io::scribe {
public:
  session_scribe(caf::io::network::default_multiplexer& mpx, native_socket fd, ssl_ptr ssl)
      : scribe(caf::io::network::conn_hdl_from_socket(fd)), stream_(mpx, fd, std::move(ssl)) {}

  void configure_read(caf::io::receive_policy::config config) override {
    stream_.configure_read(config);
    if (!launched_) {
      launched_ = true;
      stream_.start(this);
    }
  }
  void ack_writes(bool enable) override { stream_.ack_writes(enable); }
  std::vector<char>& wr_buf() override { return stream_.wr_buf(); }
  std::vector<char>& rd_buf() override { return stream_.rd_buf(); }
  void graceful_shutdown() override {
    stream_.graceful_shutdown();
    detach(&stream_.backend(), false);
  }
  void flush() override { stream_.flush(this); }
  std::string addr() const override {
    auto x = caf::io::network::remote_addr_of_fd(stream_.fd());
    return x ? *x : std::string{};
  }
  std::uint16_t port() const override {
    auto x = caf::io::network::remote_port_of_fd(stream_.fd());
    return x ? *x : 0;
  }
  void add_to_loop() override { stream_.activate(this); }
  void remove_from_loop() override { stream_.passivate(); }

private:
  bool launched_ = false;
  caf::io::network::stream_impl<session_policy> stream_;
};

} // namespace

kontor::expected<std::shared_ptr<tls_context>, std::string> tls_context::load(const tls_settings& s) {
  if (s.cert_file.empty() || s.key_file.empty() || s.ca_file.empty())
    return std::string{"cluster TLS needs all three of cluster-tls-cert-file, cluster-tls-key-file "
                       "and cluster-tls-ca-file"};
  std::shared_ptr<tls_context> out{new tls_context()};
  ERR_clear_error();
  out->ctx_ = SSL_CTX_new(TLS_method());
  if (out->ctx_ == nullptr)
    return "cannot create a TLS context: " + ssl_errors("unknown error");
  auto* ctx = out->ctx_;
  SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
  SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET | SSL_OP_NO_RENEGOTIATION);
  SSL_CTX_set_num_tickets(ctx, 0);
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
  SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  if (SSL_CTX_use_certificate_chain_file(ctx, s.cert_file.c_str()) != 1)
    return "cannot use the cluster certificate " + s.cert_file + ": " + ssl_errors("unreadable");
  if (SSL_CTX_use_PrivateKey_file(ctx, s.key_file.c_str(), SSL_FILETYPE_PEM) != 1)
    return "cannot use the cluster key " + s.key_file + " with the certificate " + s.cert_file + ": "
           + ssl_errors("unreadable");
  if (SSL_CTX_check_private_key(ctx) != 1)
    return "the cluster key " + s.key_file + " is not the key of " + s.cert_file + ": "
           + ssl_errors("mismatch");
  if (SSL_CTX_load_verify_locations(ctx, s.ca_file.c_str(), nullptr) != 1)
    return "cannot use the cluster CA " + s.ca_file + ": " + ssl_errors("unreadable");
  SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nullptr);
  // This node's own certificate must pass the check every peer makes of it.
  auto* store_ctx = X509_STORE_CTX_new();
  if (store_ctx == nullptr)
    return std::string{"cannot check the cluster certificate: out of memory"};
  STACK_OF(X509)* chain = nullptr;
  SSL_CTX_get0_chain_certs(ctx, &chain);
  X509_STORE_CTX_init(store_ctx, SSL_CTX_get_cert_store(ctx), SSL_CTX_get0_certificate(ctx), chain);
  const bool signed_by_ca = X509_verify_cert(store_ctx) == 1;
  const auto code = X509_STORE_CTX_get_error(store_ctx);
  X509_STORE_CTX_free(store_ctx);
  if (!signed_by_ca)
    return "the cluster certificate " + s.cert_file + " does not pass a check against the cluster CA "
           + s.ca_file + " (" + X509_verify_cert_error_string(code) + "): every peer would refuse it";
  ERR_clear_error();
  return out;
}

tls_context::~tls_context() {
  SSL_CTX_free(ctx_);
}

ssl_ptr tls_context::session(int fd, bool server) const {
  ssl_ptr ssl{SSL_new(ctx_)};
  if (!ssl)
    return nullptr;
  SSL_set_fd(ssl.get(), fd);
  if (server)
    SSL_set_accept_state(ssl.get());
  else
    SSL_set_connect_state(ssl.get());
  return ssl;
}

handshake_step handshake(SSL* ssl, std::string& why) {
  ERR_clear_error();
  auto rc = SSL_do_handshake(ssl);
  if (rc == 1)
    return handshake_step::done;
  switch (SSL_get_error(ssl, rc)) {
    case SSL_ERROR_WANT_READ:
      return handshake_step::want_read;
    case SSL_ERROR_WANT_WRITE:
      return handshake_step::want_write;
    case SSL_ERROR_SYSCALL:
    case SSL_ERROR_ZERO_RETURN:
      why = ssl_errors("the peer closed the connection during the TLS handshake");
      return handshake_step::failed;
    default: {
      auto verify = SSL_get_verify_result(ssl);
      why = ssl_errors("TLS handshake failed");
      if (verify != X509_V_OK)
        why += std::string{" ("} + X509_verify_cert_error_string(verify) + ")";
      return handshake_step::failed;
    }
  }
}

kontor::expected<void, std::string> handshake_until(SSL* ssl, int fd,
                                                     std::chrono::steady_clock::time_point deadline) {
  for (;;) {
    std::string why;
    short events = 0;
    switch (handshake(ssl, why)) {
      case handshake_step::done:
        return {};
      case handshake_step::failed:
        return why;
      case handshake_step::want_read:
        events = POLLIN;
        break;
      case handshake_step::want_write:
        events = POLLOUT;
        break;
    }
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0)
      return std::string{"no TLS handshake within the connect timeout"};
    pollfd p{fd, events, 0};
    if (::poll(&p, 1, static_cast<int>(left.count())) < 0 && errno != EINTR)
      return std::string{"poll failed during the TLS handshake"};
  }
}

long peek(SSL* ssl, char* buf, std::size_t len) {
  return ssl_io(ssl, [&] { return SSL_peek(ssl, buf, static_cast<int>(len)); });
}

caf::io::scribe_ptr make_scribe(caf::actor_system& sys, int fd, ssl_ptr ssl) {
  auto& mpx = static_cast<caf::io::network::default_multiplexer&>(sys.middleman().backend());
  return caf::make_counted<session_scribe>(mpx, fd, std::move(ssl));
}

bool looks_like_tls(const char* data, std::size_t size) noexcept {
  // A handshake record (22) of TLS 1.0-1.3 (record versions 3.1-3.4): what every ClientHello
  // starts with.
  return size >= 3 && static_cast<unsigned char>(data[0]) == 22 && static_cast<unsigned char>(data[1]) == 3
         && static_cast<unsigned char>(data[2]) >= 1 && static_cast<unsigned char>(data[2]) <= 4;
}

} // namespace kontor::cluster

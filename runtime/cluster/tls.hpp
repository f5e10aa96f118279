#pragma once

// TLS on the cluster port: mutual authentication against the cluster's own CA. Every node has a
// certificate signed by that CA and its key; a connection is a cluster connection only when both
// sides present such a certificate (TLS 1.3, no anonymous ciphers, no session tickets). The peer's
// host name is not checked: membership in the cluster is "holds a key the cluster's CA signed",
// which is what a StatefulSet's pods (whose addresses change) can be given.
//
// Handshakes run outside CAF — in the front door's thread for accepted connections, in the
// connector's thread for outgoing ones — so a failure is logged with OpenSSL's reason on the side
// that saw it. The established session then becomes a CAF scribe (make_scribe) that the BASP
// broker uses like a plain TCP one.

#include <openssl/ssl.h>

#include <chrono>
#include <memory>
#include <string>

#include <caf/actor_system.hpp>
#include <caf/io/scribe.hpp>

#include "runtime/core/expected.hpp"

namespace kontor::cluster {

/// The files of the cluster port's TLS; all empty: plaintext.
struct tls_settings {
  std::string cert_file; ///< this node's PEM certificate chain
  std::string key_file;  ///< its PEM private key
  std::string ca_file;   ///< the cluster's CA: peers must present a certificate it signed
  bool enabled() const noexcept { return !cert_file.empty() || !key_file.empty() || !ca_file.empty(); }
};

/// An SSL session; frees it.
struct ssl_free {
  void operator()(SSL* ssl) const noexcept { SSL_free(ssl); }
};
using ssl_ptr = std::unique_ptr<SSL, ssl_free>;

/// One OpenSSL context for both roles, loaded once at start; shared by every connection.
class tls_context {
public:
  /// Loads and checks the three files: the key matches the certificate, and the certificate is
  /// one the CA signed (a node that would be refused by every peer fails at start, saying why).
  static kontor::expected<std::shared_ptr<tls_context>, std::string> load(const tls_settings& settings);
  ~tls_context();
  tls_context(const tls_context&) = delete;
  tls_context& operator=(const tls_context&) = delete;

  /// A new session on `fd` (not yet shaken hands), as server (accepted) or client.
  ssl_ptr session(int fd, bool server) const;

private:
  tls_context() = default;
  SSL_CTX* ctx_ = nullptr;
};

/// Where a non-blocking handshake stands after a step.
enum class handshake_step { done, want_read, want_write, failed };

/// One step of the handshake of `ssl` (non-blocking socket). On failure `why` says what went
/// wrong (OpenSSL's reason, e.g. "certificate verify failed", or "the peer closed").
handshake_step handshake(SSL* ssl, std::string& why);

/// The whole handshake on a non-blocking socket, waiting at most until `deadline` (for a
/// thread of its own: it blocks in poll).
kontor::expected<void, std::string> handshake_until(SSL* ssl, int fd,
                                                     std::chrono::steady_clock::time_point deadline);

/// Decrypted bytes available without blocking, at most `len`, left unread (SSL_peek); 0 when
/// none yet, -1 when the connection failed or closed.
long peek(SSL* ssl, char* buf, std::size_t len);

/// A CAF scribe over an established session: the BASP broker reads and writes through TLS.
/// Takes `fd` (closed with the scribe) and `ssl`.
caf::io::scribe_ptr make_scribe(caf::actor_system& sys, int fd, ssl_ptr ssl);

/// Whether the first bytes of a connection are a TLS handshake record (a ClientHello).
bool looks_like_tls(const char* data, std::size_t size) noexcept;

} // namespace kontor::cluster

#pragma once

// Bearer tokens for the HTTP API: each token has a scope (read ⊂ write ⊂ admin); a request needs
// the scope of its route. No tokens configured: the API is open (the node warns at start).

#include <string>
#include <string_view>
#include <vector>

#include "runtime/core/expected.hpp"

namespace kontor::gateway {

/// What a token may do; each scope includes the ones before it.
enum class scope { read = 1, write = 2, admin = 3 };

/// "read", "write", "admin".
const char* to_string(scope s);

/// The scope a request needs: `GET`/`HEAD` read, other methods write; every method under
/// /admin/ and every method under /cluster/ other than GET/HEAD admin.
scope required_scope(std::string_view method, std::string_view path);

class authorizer {
public:
  enum class verdict { allowed, unauthorized, forbidden };

  /// No tokens: every request is allowed.
  authorizer() = default;

  /// Reads a tokens file: one token per line, then its scope ("s3cr3t-token write"); blank
  /// lines and lines starting with # are skipped. Tokens are 16-256 visible ASCII characters.
  /// `open_routes` are paths anyone may GET (e.g. /health). The error names the file and line.
  static expected<authorizer, std::string> from_file(const std::string& path,
                                                     std::vector<std::string> open_routes);
  /// The same from the file's text; `source` names it in errors.
  static expected<authorizer, std::string> parse(std::string_view text, std::string_view source,
                                                 std::vector<std::string> open_routes);

  /// Whether tokens are configured.
  bool enabled() const noexcept { return !tokens_.empty(); }
  /// The number of tokens.
  std::size_t size() const noexcept { return tokens_.size(); }

  /// The verdict for a request with this Authorization header value ("" when absent). Compares
  /// against every token in time that depends only on the configured tokens, never on how much
  /// of one the request got right.
  verdict check(std::string_view method, std::string_view path,
                std::string_view authorization) const;

private:
  struct entry {
    std::string token;
    scope granted;
  };
  std::vector<entry> tokens_;
  std::vector<std::string> open_routes_;
};

} // namespace kontor::gateway

#include "runtime/policy/http_post.hpp"

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

namespace kontor::policy {

namespace beast = boost::beast;
namespace http = beast::http;
namespace asio = boost::asio;

std::optional<http_url> parse_http_url(const std::string& url) {
  const std::string scheme = "http://";
  if (url.compare(0, scheme.size(), scheme) != 0)
    return std::nullopt;
  auto rest = url.substr(scheme.size());
  http_url out;
  auto slash = rest.find('/');
  auto authority = rest.substr(0, slash);
  if (slash != std::string::npos)
    out.target = rest.substr(slash);
  auto colon = authority.rfind(':');
  if (colon != std::string::npos) {
    out.port = authority.substr(colon + 1);
    authority = authority.substr(0, colon);
    if (out.port.empty() || out.port.find_first_not_of("0123456789") != std::string::npos)
      return std::nullopt;
  }
  if (authority.empty())
    return std::nullopt;
  out.host = authority;
  return out;
}

struct http_poster::impl {
  http_url url;
  asio::io_context ioc;
  beast::tcp_stream stream{ioc};
  bool connected = false;

  void close() {
    beast::error_code ec;
    stream.socket().shutdown(asio::ip::tcp::socket::shutdown_both, ec);
    stream.close();
    connected = false;
  }

  /// One exchange; `answered` says whether an answer came (before it, a failure may be a stale
  /// kept connection).
  attempt_result exchange(const std::string& body, const std::string& key,
                          std::chrono::milliseconds timeout, bool& answered) {
    beast::error_code ec;
    auto fail = [&](const std::string& what, const beast::error_code& e) {
      close();
      return attempt_result{outcome::retry, what + ": " + e.message()};
    };
    answered = false;
    stream.expires_after(timeout);
    if (!connected) {
      asio::ip::tcp::resolver resolver{ioc};
      auto endpoints = resolver.resolve(url.host, url.port, ec);
      if (ec)
        return fail("resolving " + url.host, ec);
      stream.connect(endpoints, ec);
      if (ec)
        return fail("connecting to " + url.host + ":" + url.port, ec);
      connected = true;
    }
    http::request<http::string_body> req{http::verb::post, url.target, 11};
    req.set(http::field::host, url.host + ":" + url.port);
    req.set(http::field::content_type, "application/json");
    req.set(http::field::user_agent, "kontor-policy");
    req.set("Idempotency-Key", key);
    req.keep_alive(true);
    req.body() = body;
    req.prepare_payload();
    http::write(stream, req, ec);
    if (ec)
      return fail("sending", ec);
    beast::flat_buffer buffer;
    http::response<http::string_body> res;
    http::read(stream, buffer, res, ec);
    if (ec)
      return fail("reading the answer", ec);
    answered = true;
    if (!res.keep_alive())
      close();
    const auto status = res.result_int();
    const auto reason = "HTTP " + std::to_string(status);
    if (status >= 200 && status < 300)
      return {outcome::done, reason};
    if (status >= 500 || status == 408 || status == 429)
      return {outcome::retry, reason};
    return {outcome::rejected, reason};
  }
};

http_poster::http_poster(http_url url) : impl_(std::make_unique<impl>()) {
  impl_->url = std::move(url);
}

http_poster::~http_poster() = default;

attempt_result http_poster::post(const std::string& body, const std::string& key,
                                 std::chrono::milliseconds timeout) {
  const bool reused = impl_->connected;
  bool answered = false;
  auto r = impl_->exchange(body, key, timeout, answered);
  if (reused && !answered && r.result == outcome::retry)
    r = impl_->exchange(body, key, timeout, answered); // the kept connection had gone stale
  return r;
}

} // namespace kontor::policy

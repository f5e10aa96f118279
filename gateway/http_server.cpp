#include "gateway/http_server.hpp"

#include <memory>
#include <random>
#include <stdexcept>
#include <thread>
#include <vector>

#include <boost/asio/dispatch.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

namespace kontor::gateway {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

namespace {

/// Whether a client's X-Request-Id can be passed through: 1-128 characters of A-Z a-z 0-9 and
/// . _ : - (what log collectors and tracing headers use; nothing that needs escaping).
bool valid_request_id(std::string_view id) {
  if (id.empty() || id.size() > 128)
    return false;
  for (char c : id)
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.'
          || c == '_' || c == ':' || c == '-'))
      return false;
  return true;
}

/// A new request id: 16 random hex digits.
std::string new_request_id() {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  static constexpr char hex[] = "0123456789abcdef";
  auto v = rng();
  std::string out(16, '0');
  for (auto& c : out) {
    c = hex[v & 0xf];
    v >>= 4;
  }
  return out;
}

constexpr std::size_t header_limit = 16 * 1024;

/// How long a closing connection keeps reading (and dropping) what the client still sends, so
/// that the answers already written reach it (see session::linger).
constexpr std::chrono::seconds linger_timeout{2};

constexpr std::string_view continue_interim = "HTTP/1.1 100 Continue\r\n\r\n";

std::string error_body(const char* code, const std::string& message) {
  // Fixed texts only (no user input), so no escaping is needed.
  return std::string{"{\"error\":\""} + code + "\",\"message\":\"" + message + "\"}";
}

/// One client connection: read a request, hand it to the handler, write its response, repeat.
class session : public std::enable_shared_from_this<session> {
public:
  session(tcp::socket&& socket, const http_settings& settings, const http_handler& handler)
    : stream_(std::move(socket)), settings_(settings), handler_(handler) {}

  void run() {
    asio::dispatch(stream_.get_executor(),
                   beast::bind_front_handler(&session::read_request, shared_from_this()));
  }

private:
  void read_request() {
    parser_.emplace();
    parser_->body_limit(settings_.body_limit);
    parser_->header_limit(header_limit);
    head_ = false;
    request_id_.clear();
    stream_.expires_after(settings_.read_timeout);
    // The header first: Host is checked and 100-continue answered before the body is read. A
    // Content-Length over the body limit already fails here, so a 413 does not wait for a body.
    http::async_read_header(stream_, buffer_, *parser_,
                            beast::bind_front_handler(&session::on_header, shared_from_this()));
  }

  void on_header(beast::error_code ec, std::size_t) {
    if (ec)
      return on_read(ec, 0);
    const auto& req = parser_->get();
    // RFC 9112 3.2: an HTTP/1.1 request without Host, or any request with two, is a 400.
    auto hosts = req.count(http::field::host);
    if (hosts > 1 || (hosts == 0 && req.version() >= 11))
      return reject(400, error_body("bad_request",
                                    "an HTTP/1.1 request needs exactly one Host header"));
    if (parser_->is_done())
      return on_read({}, 0);
    // RFC 9110 10.1.1: a client that sent Expect: 100-continue waits for this before the body.
    if (req.version() >= 11 && beast::iequals(req[http::field::expect], "100-continue")) {
      return asio::async_write(
        stream_, asio::buffer(continue_interim.data(), continue_interim.size()),
        [self = shared_from_this()](beast::error_code wec, std::size_t) {
          if (wec)
            return self->close();
          self->read_body();
        });
    }
    read_body();
  }

  void read_body() {
    http::async_read(stream_, buffer_, *parser_,
                     beast::bind_front_handler(&session::on_read, shared_from_this()));
  }

  void on_read(beast::error_code ec, std::size_t) {
    if (ec == http::error::end_of_stream || ec == beast::error::timeout
        || ec == asio::error::operation_aborted || ec == asio::error::connection_reset
        || ec == asio::error::eof)
      return close();
    if (ec == http::error::body_limit) {
      return reject(413, error_body("body_too_large",
                                    "request body exceeds " + std::to_string(settings_.body_limit)
                                      + " bytes"));
    }
    if (ec == http::error::header_limit)
      return reject(431, error_body("headers_too_large", "request headers are too large"));
    if (ec)
      return reject(400, error_body("bad_request", "malformed HTTP request"));
    auto& req = parser_->get();
    keep_alive_ = req.keep_alive();
    head_ = req.method() == http::verb::head;
    http_request out;
    out.method = std::string(req.method_string());
    out.target = std::string(req.target());
    out.body = std::move(req.body());
    if (auto i = req.find(http::field::if_match); i != req.end())
      out.if_match = std::string(i->value());
    if (auto i = req.find("Idempotency-Key"); i != req.end())
      out.idempotency_key = std::string(i->value());
    // The client's X-Request-Id when it is a usable one, else a new id; the answer carries it.
    if (auto i = req.find("X-Request-Id"); i != req.end() && valid_request_id(i->value()))
      request_id_ = std::string(i->value());
    else
      request_id_ = new_request_id();
    out.request_id = request_id_;
    // The handler answers later, maybe from another thread: hop back onto this connection's strand.
    stream_.expires_never();
    handler_(std::move(out), [self = shared_from_this()](http_response resp) {
      auto ex = self->stream_.get_executor();
      asio::post(ex, [self = std::move(self), resp = std::move(resp)]() mutable {
        self->write(std::move(resp));
      });
    });
  }

  void reject(unsigned status, std::string body) {
    keep_alive_ = false;
    http_response resp;
    resp.status = status;
    resp.body = std::move(body);
    write(std::move(resp));
  }

  void write(http_response resp) {
    res_ = {};
    res_.version(11);
    res_.result(resp.status);
    res_.set(http::field::server, "kontor");
    res_.set(http::field::content_type, resp.content_type);
    for (auto& [name, value] : resp.headers)
      res_.set(name, value);
    if (request_id_.empty())
      request_id_ = new_request_id(); // a request refused before it was read whole
    res_.set("X-Request-Id", request_id_);
    res_.keep_alive(keep_alive_);
    res_.body() = std::move(resp.body);
    res_.prepare_payload();
    stream_.expires_after(settings_.read_timeout);
    if (head_) {
      // The header a GET would get, Content-Length included, and no body (RFC 9110 9.3.2).
      serializer_.emplace(res_);
      return http::async_write_header(stream_, *serializer_,
                                      beast::bind_front_handler(&session::on_write,
                                                                shared_from_this()));
    }
    http::async_write(stream_, res_,
                      beast::bind_front_handler(&session::on_write, shared_from_this()));
  }

  void on_write(beast::error_code ec, std::size_t) {
    serializer_.reset();
    if (ec)
      return close();
    if (!keep_alive_)
      return linger();
    read_request();
  }

  /// Closes without losing answers. Closing a socket with unread input makes the kernel send a
  /// reset, and a reset makes the client's kernel drop the answers it has not read yet (after a
  /// 400 in a pipeline, those of every request before it). So: send FIN after the last answer,
  /// read and drop what the client still sends until it closes or linger_timeout passes, close.
  void linger() {
    beast::error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
    stream_.expires_after(linger_timeout);
    drain_ = std::make_unique<char[]>(drain_size);
    drain();
  }

  void drain() {
    stream_.async_read_some(asio::buffer(drain_.get(), drain_size),
                            [self = shared_from_this()](beast::error_code ec, std::size_t) {
                              if (ec)
                                return self->close();
                              self->drain();
                            });
  }

  void close() {
    beast::error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_both, ignored);
    stream_.close();
  }

  beast::tcp_stream stream_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  http::response<http::string_body> res_;
  std::optional<http::response_serializer<http::string_body>> serializer_; ///< HEAD: header only
  static constexpr std::size_t drain_size = 16 * 1024;
  std::unique_ptr<char[]> drain_; ///< what linger reads into, only while closing
  bool keep_alive_ = true;
  bool head_ = false; ///< the request being answered is a HEAD
  std::string request_id_; ///< the X-Request-Id of the request being answered
  const http_settings& settings_;
  const http_handler& handler_;
};

} // namespace

struct http_server::impl {
  impl(http_settings s, http_handler h)
    : settings(std::move(s)), handler(std::move(h)), ioc(static_cast<int>(settings.threads)),
      acceptor(asio::make_strand(ioc)) {
    beast::error_code ec;
    auto addr = asio::ip::make_address(settings.address, ec);
    if (ec)
      throw std::runtime_error("invalid HTTP address '" + settings.address + "'");
    tcp::endpoint ep{addr, settings.port};
    acceptor.open(ep.protocol(), ec);
    if (!ec)
      acceptor.set_option(asio::socket_base::reuse_address(true), ec);
    if (!ec)
      acceptor.bind(ep, ec);
    if (!ec)
      acceptor.listen(asio::socket_base::max_listen_connections, ec);
    if (ec)
      throw std::runtime_error("cannot listen on " + settings.address + ":"
                               + std::to_string(settings.port) + ": " + ec.message());
  }

  /// Each connection's executor: a strand when several threads run the io_context; with one
  /// thread every handler is already serialized and a strand only costs a queue per handler.
  asio::any_io_executor connection_executor() {
    if (settings.threads > 1)
      return asio::make_strand(ioc);
    return ioc.get_executor();
  }

  void accept() {
    acceptor.async_accept(connection_executor(), [this](beast::error_code ec, tcp::socket sock) {
      if (ec == asio::error::operation_aborted || !acceptor.is_open())
        return;
      if (!ec) {
        sock.set_option(tcp::no_delay(true), ec);
        std::make_shared<session>(std::move(sock), settings, handler)->run();
      }
      accept();
    });
  }

  http_settings settings;
  http_handler handler;
  asio::io_context ioc;
  tcp::acceptor acceptor;
  std::vector<std::thread> threads;
};

http_server::http_server(http_settings settings, http_handler handler)
  : impl_(std::make_unique<impl>(std::move(settings), std::move(handler))) {}

http_server::~http_server() {
  stop();
}

unsigned short http_server::port() const noexcept {
  beast::error_code ec;
  auto ep = impl_->acceptor.local_endpoint(ec);
  return ec ? 0 : ep.port();
}

void http_server::start() {
  asio::dispatch(impl_->acceptor.get_executor(), [this] { impl_->accept(); });
  for (unsigned i = 0; i < impl_->settings.threads; ++i)
    impl_->threads.emplace_back([this] { impl_->ioc.run(); });
}

void http_server::stop() {
  if (impl_->threads.empty())
    return;
  asio::post(impl_->acceptor.get_executor(), [this] {
    beast::error_code ignored;
    impl_->acceptor.close(ignored);
  });
  impl_->ioc.stop();
  for (auto& t : impl_->threads)
    t.join();
  impl_->threads.clear();
}

} // namespace kontor::gateway

#include "gateway/http_server.hpp"

#include <stdexcept>
#include <thread>
#include <vector>

#include <boost/asio/dispatch.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

namespace kontor::gateway {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

namespace {

constexpr std::size_t header_limit = 16 * 1024;

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
    stream_.expires_after(settings_.read_timeout);
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
    http_request out;
    out.method = std::string(req.method_string());
    out.target = std::string(req.target());
    out.body = std::move(req.body());
    if (auto i = req.find(http::field::if_match); i != req.end())
      out.if_match = std::string(i->value());
    if (auto i = req.find("Idempotency-Key"); i != req.end())
      out.idempotency_key = std::string(i->value());
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
    res_.keep_alive(keep_alive_);
    res_.body() = std::move(resp.body);
    res_.prepare_payload();
    stream_.expires_after(settings_.read_timeout);
    http::async_write(stream_, res_,
                      beast::bind_front_handler(&session::on_write, shared_from_this()));
  }

  void on_write(beast::error_code ec, std::size_t) {
    if (ec || !keep_alive_)
      return close();
    read_request();
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
  bool keep_alive_ = true;
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

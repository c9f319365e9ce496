// HttpApiServer: ApiRouter served over HTTP/1.1 with Boost.Beast. This is the
// only file that includes Beast (it is slow to compile).

#include "gridemu/controller/http_api.h"

#include <array>
#include <atomic>
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <exception>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_set>
#include <utility>
#include <vector>

namespace gridemu::controller {

namespace beast = boost::beast;
namespace http = beast::http;
namespace net = boost::asio;
using tcp = net::ip::tcp;

namespace {
class Session;

// After an answer that closes the connection, what the client still sends is
// read and dropped (up to this much, for up to kLingerTime) so that closing
// does not reset the connection before the client has read the answer.
constexpr uint64_t kMaxDrainBytes = 64 << 20;
constexpr auto kLingerTime = std::chrono::seconds(5);
constexpr auto kAcceptBackoff = std::chrono::milliseconds(100);
}  // namespace

struct HttpApiServer::Impl {
  Impl(ControllerService& service, HttpApiOptions opts)
      : options(std::move(opts)),
        router(service, RouterOptions{options.body_limit_bytes, RouterOptions{}.max_tail_bytes}) {}

  void DoAccept();
  void Run();
  void Shutdown();  // on the io thread

  const HttpApiOptions options;
  const ApiRouter router;
  std::string address;
  uint16_t port = 0;

  // Declared before ioc: sessions still alive when ioc is destroyed (it
  // destroys their pending handlers) unregister themselves from this set.
  std::unordered_set<Session*> sessions;  // io thread only
  bool stopping = false;                  // io thread only
  net::io_context ioc{1};
  tcp::acceptor acceptor{ioc};
  net::steady_timer accept_backoff{ioc};
  std::thread thread;
  std::mutex stop_mu;
  bool stopped = false;  // guarded by stop_mu
};

namespace {

const beast::error_category& HttpErrorCategory() {
  return http::make_error_code(http::error::bad_target).category();
}

// One connection: read a request, answer it, repeat while keep-alive.
class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(tcp::socket socket, HttpApiServer::Impl& server)
      : stream_(std::move(socket)), server_(server) {
    server_.sessions.insert(this);
  }
  ~Session() { server_.sessions.erase(this); }

  void Start() { DoRead(); }

  // Closes the socket: pending operations end with operation_aborted.
  void Cancel() {
    closing_ = true;
    stream_.close();
  }

 private:
  void DoRead() {
    if (server_.stopping) return Close();
    parser_.emplace();
    parser_->body_limit(server_.options.body_limit_bytes);
    parser_->header_limit(server_.options.header_limit_bytes);
    stream_.expires_after(server_.options.idle_timeout);
    http::async_read_header(stream_, buffer_, *parser_,
                            beast::bind_front_handler(&Session::OnHeader, shared_from_this()));
  }

  void OnHeader(beast::error_code ec, std::size_t) {
    if (ec) return OnReadError(ec);
    if (parser_->is_done()) return Dispatch();
    auto& req = parser_->get();
    if (beast::iequals(req[http::field::expect], "100-continue")) {
      auto cont = std::make_shared<http::response<http::empty_body>>(http::status::continue_,
                                                                     req.version());
      http::async_write(stream_, *cont,
                        [self = shared_from_this(), cont](beast::error_code ec, std::size_t) {
                          if (ec) return self->Close();
                          self->ReadBody();
                        });
      return;
    }
    ReadBody();
  }

  void ReadBody() {
    if (server_.stopping) return Close();
    stream_.expires_after(server_.options.idle_timeout);
    http::async_read(stream_, buffer_, *parser_,
                     beast::bind_front_handler(&Session::OnBody, shared_from_this()));
  }

  void OnBody(beast::error_code ec, std::size_t) {
    if (ec) return OnReadError(ec);
    Dispatch();
  }

  void OnReadError(beast::error_code ec) {
    if (closing_ || server_.stopping) return Close();
    if (ec == http::error::body_limit) {
      return SendAndClose(JsonError(413, "request body is over the limit of " +
                                             std::to_string(server_.options.body_limit_bytes) +
                                             " bytes"));
    }
    if (ec == http::error::header_limit) {
      return SendAndClose(JsonError(431, "request header is over the limit of " +
                                             std::to_string(server_.options.header_limit_bytes) +
                                             " bytes"));
    }
    // The client went away, idled out or stalled: nothing to answer.
    if (ec == http::error::end_of_stream || ec == http::error::partial_message ||
        ec == beast::error::timeout || ec.category() != HttpErrorCategory()) {
      return Close();
    }
    SendAndClose(JsonError(400, "malformed HTTP request: " + ec.message()));
  }

  void Dispatch() {
    auto& req = parser_->get();
    HttpRequest r;
    r.method = std::string(req.method_string());
    r.target = std::string(req.target());
    for (const auto& field : req) {
      std::string name(field.name_string());
      for (char& c : name) {
        if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
      }
      auto [it, inserted] = r.headers.emplace(name, std::string(field.value()));
      if (!inserted) it->second += ", " + std::string(field.value());
    }
    r.body = std::move(req.body());
    HttpResponse resp = server_.router.Handle(r);
    Send(std::move(resp), req.version(), req.keep_alive(), req.method() == http::verb::head);
  }

  void SendAndClose(HttpResponse resp) {
    Send(std::move(resp), 11, /*keep_alive=*/false, /*head=*/false);
  }

  // `head`: the answer to a HEAD request has the headers of the full answer
  // (Content-Length included) and no body.
  void Send(HttpResponse resp, unsigned version, bool keep_alive, bool head) {
    auto res = std::make_shared<http::response<http::string_body>>();
    res->version(version);
    res->result(static_cast<unsigned>(resp.status));
    res->set(http::field::server, "gridemu-controller");
    res->set(http::field::content_type, resp.content_type);
    for (const auto& [name, value] : resp.headers) res->set(name, value);
    res->keep_alive(keep_alive && !server_.stopping);
    res->body() = std::move(resp.body);
    res->prepare_payload();
    if (head) res->body().clear();
    stream_.expires_after(server_.options.idle_timeout);
    http::async_write(stream_, *res,
                      [self = shared_from_this(), res](beast::error_code ec, std::size_t) {
                        if (ec) return self->Close();
                        if (!res->keep_alive()) return self->Linger();
                        self->DoRead();
                      });
  }

  // Half-closes, then drops what the client still sends until it closes too.
  void Linger() {
    beast::error_code ec;
    stream_.socket().shutdown(tcp::socket::shutdown_send, ec);
    if (ec) return Close();
    stream_.expires_after(kLingerTime);
    Drain();
  }

  void Drain() {
    if (server_.stopping) return Close();
    stream_.async_read_some(net::buffer(drain_),
                            [self = shared_from_this()](beast::error_code ec, std::size_t n) {
                              self->drained_ += n;
                              if (ec || self->drained_ > kMaxDrainBytes) return self->Close();
                              self->Drain();
                            });
  }

  void Close() {
    beast::error_code ec;
    stream_.socket().shutdown(tcp::socket::shutdown_both, ec);
    stream_.close();
  }

  beast::tcp_stream stream_;
  HttpApiServer::Impl& server_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  std::array<char, 16 << 10> drain_{};
  uint64_t drained_ = 0;
  bool closing_ = false;
};

}  // namespace

void HttpApiServer::Impl::DoAccept() {
  acceptor.async_accept(ioc, [this](beast::error_code ec, tcp::socket socket) {
    if (stopping || !acceptor.is_open()) return;
    if (ec) {
      // E.g. out of file descriptors: retry a little later instead of spinning.
      accept_backoff.expires_after(kAcceptBackoff);
      accept_backoff.async_wait([this](beast::error_code wait_ec) {
        if (!wait_ec && !stopping) DoAccept();
      });
      return;
    }
    if (sessions.size() >= options.max_connections) {
      beast::error_code ignored;
      socket.close(ignored);
    } else {
      std::make_shared<Session>(std::move(socket), *this)->Start();
    }
    DoAccept();
  });
}

void HttpApiServer::Impl::Run() {
  while (true) {
    try {
      ioc.run();
      return;
    } catch (const std::exception&) {
      // A handler threw (only bad_alloc can): keep serving the others.
    }
  }
}

void HttpApiServer::Impl::Shutdown() {
  stopping = true;
  beast::error_code ec;
  acceptor.close(ec);
  accept_backoff.cancel();
  // Copy: Cancel() may destroy sessions once their handlers run.
  std::vector<Session*> open(sessions.begin(), sessions.end());
  for (Session* s : open) s->Cancel();
}

Result<std::unique_ptr<HttpApiServer>> HttpApiServer::Start(ControllerService& service,
                                                            HttpApiOptions options) {
  auto impl = std::make_unique<Impl>(service, std::move(options));
  const HttpApiOptions& o = impl->options;
  beast::error_code ec;
  net::ip::address addr = net::ip::make_address(o.address, ec);
  if (ec) {
    return InvalidArgumentError("invalid listen address '" + o.address + "': " + ec.message());
  }
  tcp::endpoint endpoint(addr, o.port);
  const std::string where =
      (addr.is_v6() ? "[" + o.address + "]" : o.address) + ":" + std::to_string(o.port);
  impl->acceptor.open(endpoint.protocol(), ec);
  if (!ec) impl->acceptor.set_option(net::socket_base::reuse_address(true), ec);
  if (!ec) impl->acceptor.bind(endpoint, ec);
  if (!ec) impl->acceptor.listen(net::socket_base::max_listen_connections, ec);
  if (ec) return UnavailableError("cannot listen on " + where + ": " + ec.message());
  impl->address = o.address;
  impl->port = impl->acceptor.local_endpoint(ec).port();
  if (ec) return UnavailableError("cannot read the bound port of " + where + ": " + ec.message());
  impl->DoAccept();
  Impl* raw = impl.get();
  impl->thread = std::thread([raw] { raw->Run(); });
  return std::unique_ptr<HttpApiServer>(new HttpApiServer(std::move(impl)));
}

HttpApiServer::HttpApiServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

HttpApiServer::~HttpApiServer() { Stop(); }

uint16_t HttpApiServer::port() const { return impl_->port; }

const std::string& HttpApiServer::address() const { return impl_->address; }

std::string HttpApiServer::url() const {
  const bool v6 = impl_->address.find(':') != std::string::npos;
  return "http://" + (v6 ? "[" + impl_->address + "]" : impl_->address) + ":" +
         std::to_string(impl_->port);
}

void HttpApiServer::Stop() {
  std::lock_guard lock(impl_->stop_mu);
  if (impl_->stopped) return;
  impl_->stopped = true;
  Impl* raw = impl_.get();
  net::post(raw->ioc, [raw] { raw->Shutdown(); });
  // Once the acceptor and every connection are closed, run() runs out of work.
  if (raw->thread.joinable()) raw->thread.join();
}

}  // namespace gridemu::controller

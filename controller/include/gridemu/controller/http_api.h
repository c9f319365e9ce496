// The controller's HTTP/1.1 JSON API server on Boost.Beast (DESIGN.md §1,
// §8). The routes and their answers are ApiRouter's (http_router.h); this is
// the network side: listening, keep-alive, timeouts, body limits.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "gridemu/common/status.h"
#include "gridemu/controller/http_router.h"
#include "gridemu/controller/service.h"

namespace gridemu::controller {

/// Options of HttpApiServer::Start().
struct HttpApiOptions {
  /// Address to listen on. The default is loopback only: the API has no TLS.
  std::string address = "127.0.0.1";
  /// TCP port; 0 = an ephemeral port (see HttpApiServer::port()).
  uint16_t port = 7080;
  /// Largest request body; a larger one is answered 413 and the connection
  /// closed (after the announced body is drained, so the client reads the answer).
  uint64_t body_limit_bytes = 4 << 20;
  /// Largest request header block; larger: 431 and close.
  uint32_t header_limit_bytes = 16 << 10;
  /// An idle keep-alive connection (or one that stalls mid-request) is closed after this.
  std::chrono::milliseconds idle_timeout = std::chrono::seconds(60);
  /// Connections beyond this many are closed as soon as they are accepted.
  uint32_t max_connections = 512;
};

/// An HTTP server running on its own thread (one Asio io_context, one
/// thread: requests are served one at a time, each calling the service
/// synchronously). HTTP/1.1 with keep-alive; HTTP/1.0 closes after each
/// answer. A request with "Expect: 100-continue" gets "100 Continue" (or its
/// final 413 answer) before it sends its body.
/// Thread-safety: port()/address() anytime; Stop() from any thread except the
/// server's own (not from inside the service). The service must outlive it.
class HttpApiServer {
 public:
  /// Listens and starts serving. kInvalidArgument for a bad address,
  /// kUnavailable when it cannot listen (port in use, no permission).
  static Result<std::unique_ptr<HttpApiServer>> Start(ControllerService& service,
                                                      HttpApiOptions options = {});
  /// Stops (see Stop()).
  ~HttpApiServer();
  HttpApiServer(const HttpApiServer&) = delete;
  HttpApiServer& operator=(const HttpApiServer&) = delete;

  /// The port it listens on (the chosen one when options.port was 0).
  uint16_t port() const;
  /// The address it listens on, e.g. "127.0.0.1".
  const std::string& address() const;
  /// "http://127.0.0.1:7080" ("http://[::1]:7080" for IPv6).
  std::string url() const;

  /// Stops listening, drops every connection (requests in flight are not
  /// answered) and joins the thread. Idempotent.
  void Stop();

  struct Impl;  // defined in http_api.cc

 private:
  explicit HttpApiServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace gridemu::controller

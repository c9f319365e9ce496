// The HTTP JSON API's routes, free of any network code: an HttpRequest in,
// an HttpResponse out (DESIGN.md §8). http_api.h serves it over Boost.Beast;
// tests and other transports can call it directly.
//
// Routes (all answers are JSON, Content-Type application/json):
//   GET  /healthz, /api/v1/healthz           200 {"status": "ok"} | 503
//   POST /api/v1/experiments                  201 {"id", "state"}  (body: the YAML)
//        400 empty or non-UTF-8 body; 413 body over the limit; 415 not
//        application/yaml, application/x-yaml or text/yaml; 422 invalid file,
//        {"error", "diagnostics": [{"file", "line", "column", "message"}]};
//        403 slice quota exceeded
//   GET  /api/v1/experiments                  200 {"slice", "experiments": [...]}
//   GET  /api/v1/experiments/{id}             200 status | 404
//   POST /api/v1/experiments/{id}/cancel      200 {"id", "state"} | 404 | 409 already final
//   GET  /api/v1/experiments/{id}/logs?task=leech/3&stream=stdout&tail=65536
//                                             200 {"text", ...} | 400 | 404
//   GET  /api/v1/experiments/{id}/results     200 {"results_dir", "manifest", "entries"} | 404
// Any other path: 404; a known path with another method: 405 with Allow.
// The slice is the X-Gridemu-Slice header, else the `slice` query parameter,
// else "default"; an unknown slice is 404 {"error": "unknown slice 'x'"}.
// A slice with a token needs "Authorization: Bearer <token>" (401 without,
// 403 when wrong). Errors are {"error": "<message>"}.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "gridemu/common/diagnostics.h"
#include "gridemu/common/status.h"
#include "gridemu/controller/service.h"

namespace gridemu::controller {

/// A parsed HTTP request.
struct HttpRequest {
  std::string method;  ///< "GET", "POST", ...
  std::string target;  ///< path and query, e.g. "/api/v1/experiments?slice=a"
  std::map<std::string, std::string> headers;  ///< names in lower case
  std::string body;
};

/// An HTTP response to send.
struct HttpResponse {
  int status = 200;
  std::string content_type = "application/json";
  std::vector<std::pair<std::string, std::string>> headers;  ///< extra: Allow, Location, ...
  std::string body;
};

/// Options of ApiRouter.
struct RouterOptions {
  uint64_t body_limit_bytes = 4 << 20;  ///< larger bodies: 413
  uint64_t max_tail_bytes = 16 << 20;   ///< largest `tail` of the logs route
};

/// Maps HTTP requests to ControllerService calls. Handle() never throws and
/// always answers JSON. Thread-safe when the service is.
class ApiRouter {
 public:
  explicit ApiRouter(ControllerService& service, RouterOptions options = {});

  HttpResponse Handle(const HttpRequest& request) const;

 private:
  HttpResponse Route(const HttpRequest& request) const;
  ControllerService& service_;
  RouterOptions options_;
};

/// The HTTP status for an error code: InvalidArgument/OutOfRange 400,
/// PermissionDenied/ResourceExhausted 403, NotFound 404, AlreadyExists/
/// FailedPrecondition/Cancelled 409, Unimplemented 501, Unavailable 503,
/// DeadlineExceeded 504, else 500.
int HttpStatusFor(StatusCode code);

/// A JSON error answer {"error": message}.
HttpResponse JsonError(int status, std::string_view message);

/// Splits a parser message ("file:line:column: message" per line) into
/// diagnostics; a line without a position becomes a diagnostic with line and
/// column 0 (and the file when the line starts with "file: ").
std::vector<Diagnostic> SplitDiagnostics(std::string_view message);

/// True when `s` is well-formed UTF-8 (no overlong forms, surrogates or code
/// points above U+10FFFF). `bad_offset` receives the first bad byte's offset.
bool IsValidUtf8(std::string_view s, size_t* bad_offset = nullptr);

/// Decodes %XX escapes and '+' (as a space) of a query component.
/// kInvalidArgument for a malformed escape.
Result<std::string> PercentDecode(std::string_view s);

}  // namespace gridemu::controller

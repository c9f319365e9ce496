// Client commands to a running controller over its HTTP JSON API
// (controller/http_router.h): `gridemu submit | status | logs | results |
// cancel`. Each returns the process exit code and writes to `out`/`err`, so
// tests run them in-process:
//   0  done;
//   1  the controller refused (invalid file, unknown experiment, already final...);
//   2  the controller could not be reached or answered garbage.
#pragma once

#include <cstdint>
#include <iosfwd>
#include <map>
#include <string>

#include "gridemu/common/status.h"

namespace gridemu::cli {

/// Where and as whom to talk.
struct ClientArgs {
  /// Base URL, e.g. "http://127.0.0.1:7080"; "" = ResolveControllerUrl("").
  std::string controller;
  /// X-Gridemu-Slice; "" = the controller's default ("default").
  std::string slice;
  /// Bearer token of the slice; "" = $GRIDEMU_TOKEN if set.
  std::string token;
  /// Print the controller's JSON instead of text.
  bool json = false;
};

/// The controller URL: `flag` when set, else $GRIDEMU_CONTROLLER, else the
/// HTTP API of a `gridemu run` running on this machine (its lock file), else
/// http://127.0.0.1:7080.
std::string ResolveControllerUrl(const std::string& flag);

/// An HTTP answer.
struct HttpAnswer {
  int status = 0;
  std::string body;
};

/// One HTTP/1.1 request (Boost.Beast, 30 s timeout). `url` is
/// "http://host[:port]" (no TLS); `target` the path and query.
/// kInvalidArgument for a bad URL; kUnavailable when the controller cannot
/// be reached (the message names it).
Result<HttpAnswer> HttpRequestOnce(const std::string& url, const std::string& method,
                                   const std::string& target, const std::string& body,
                                   const std::map<std::string, std::string>& headers);

/// `gridemu submit FILE`: prints the new experiment's id. Invalid file: every
/// diagnostic as "FILE:line:column: message", exit 1.
int Submit(const ClientArgs& args, const std::string& file, std::ostream& out, std::ostream& err);
/// `gridemu status [ID]`: one experiment in detail, or every experiment of
/// the slice as a table.
int Status(const ClientArgs& args, const std::string& id, std::ostream& out, std::ostream& err);
/// `gridemu logs ID --task T [--stderr] [--tail N]`: a task instance's output.
int Logs(const ClientArgs& args, const std::string& id, const std::string& task, bool stderr_stream,
         uint64_t tail_bytes, std::ostream& out, std::ostream& err);
/// `gridemu results ID`: the results directory and the manifest.
int Results(const ClientArgs& args, const std::string& id, std::ostream& out, std::ostream& err);
/// `gridemu cancel ID`: prints the new state (cancelling or cancelled).
int Cancel(const ClientArgs& args, const std::string& id, std::ostream& out, std::ostream& err);
/// `gridemu hosts`: the pnodes registered with the controller (state up or
/// down, underlay address, capacity, last heartbeat) as a table.
int Hosts(const ClientArgs& args, std::ostream& out, std::ostream& err);

}  // namespace gridemu::cli

// Client commands over the controller's HTTP API. See client.h.

#include "gridemu/cli/client.h"

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "gridemu/cli/run.h"
#include "gridemu/common/clock.h"
#include "gridemu/common/units.h"

namespace gridemu::cli {

namespace beast = boost::beast;
namespace http = boost::beast::http;
namespace net = boost::asio;
using json = nlohmann::json;

namespace {

constexpr const char* kApi = "/api/v1";

std::string UrlEncode(const std::string& s) {
  static const char* hex = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  return out;
}

std::map<std::string, std::string> Headers(const ClientArgs& args) {
  std::map<std::string, std::string> h;
  if (!args.slice.empty()) h["X-Gridemu-Slice"] = args.slice;
  std::string token = args.token;
  if (token.empty()) {
    if (const char* t = std::getenv("GRIDEMU_TOKEN"); t != nullptr) token = t;
  }
  if (!token.empty()) h["Authorization"] = "Bearer " + token;
  return h;
}

// Runs one call; on failure prints the error and returns the exit code
// (1: the controller said no; 2: not reachable / not JSON).
struct Call {
  int exit_code = 0;
  int status = 0;
  json body;
};

Call Do(const ClientArgs& args, const std::string& method, const std::string& target,
        const std::string& body, std::map<std::string, std::string> extra, std::ostream& err,
        bool print_error = true) {
  Call c;
  const std::string url = ResolveControllerUrl(args.controller);
  auto headers = Headers(args);
  for (auto& [k, v] : extra) headers[k] = v;
  auto r = HttpRequestOnce(url, method, target, body, headers);
  if (!r.ok()) {
    err << "gridemu: " << r.status().message() << "\n";
    c.exit_code = 2;
    return c;
  }
  c.status = r->status;
  c.body = json::parse(r->body, nullptr, false);
  if (c.body.is_discarded()) {
    err << "gridemu: the controller at " << url << " answered " << r->status
        << " with a body that is not JSON\n";
    c.exit_code = 2;
    return c;
  }
  if (r->status >= 400) {
    if (print_error) {
      err << "gridemu: " << (c.body.is_object() ? c.body.value("error", "error") : r->body)
          << " (HTTP " << r->status << ")\n";
    }
    c.exit_code = 1;
  }
  return c;
}

std::string Str(const json& j, const char* key) {
  if (!j.is_object() || !j.contains(key) || j[key].is_null()) return "";
  if (j[key].is_string()) return j[key].get<std::string>();
  return j[key].dump();
}

std::string Pad(const std::string& s, size_t w) {
  return s.size() >= w ? s + " " : s + std::string(w - s.size(), ' ');
}

}  // namespace

std::string ResolveControllerUrl(const std::string& flag) {
  if (!flag.empty()) return flag;
  if (const char* env = std::getenv("GRIDEMU_CONTROLLER"); env != nullptr && *env) return env;
  auto running = ReadRunningLock(DefaultRunLockPath());
  if (running.ok() && !running->url.empty()) return running->url;
  return "http://127.0.0.1:7080";
}

Result<HttpAnswer> HttpRequestOnce(const std::string& url, const std::string& method,
                                   const std::string& target, const std::string& body,
                                   const std::map<std::string, std::string>& headers) {
  std::string rest = url;
  if (rest.rfind("http://", 0) == 0) {
    rest = rest.substr(7);
  } else if (rest.find("://") != std::string::npos) {
    return InvalidArgumentError("controller URL '" + url + "': only http:// is supported");
  }
  while (!rest.empty() && rest.back() == '/') rest.pop_back();
  if (rest.find('/') != std::string::npos) rest = rest.substr(0, rest.find('/'));
  std::string host = rest, port = "80";
  if (!rest.empty() && rest.front() == '[') {
    const size_t close = rest.find(']');
    if (close == std::string::npos)
      return InvalidArgumentError("controller URL '" + url + "': bad IPv6 address");
    host = rest.substr(1, close - 1);
    if (close + 1 < rest.size() && rest[close + 1] == ':') port = rest.substr(close + 2);
  } else if (const size_t colon = rest.rfind(':'); colon != std::string::npos) {
    host = rest.substr(0, colon);
    port = rest.substr(colon + 1);
  }
  if (host.empty() || port.empty()) {
    return InvalidArgumentError("controller URL '" + url + "': expected http://HOST[:PORT]");
  }
  const http::verb verb = http::string_to_verb(method);
  if (verb == http::verb::unknown) return InvalidArgumentError("unknown HTTP method " + method);

  net::io_context ioc;
  net::ip::tcp::resolver resolver(ioc);
  beast::tcp_stream stream(ioc);
  beast::error_code ec;
  auto endpoints = resolver.resolve(host, port, ec);
  if (ec) return UnavailableError("cannot resolve the controller " + url + ": " + ec.message());
  stream.expires_after(std::chrono::seconds(30));
  stream.connect(endpoints, ec);
  if (ec) {
    return UnavailableError("cannot reach the controller at " + url + ": " + ec.message() +
                            " (is gridemu-controller or `gridemu run` running? --controller "
                            "URL or $GRIDEMU_CONTROLLER say where)");
  }
  http::request<http::string_body> req{verb, target, 11};
  req.set(http::field::host, host);
  req.set(http::field::user_agent, "gridemu-cli");
  for (const auto& [k, v] : headers) req.set(k, v);
  if (!body.empty() || verb == http::verb::post) {
    req.body() = body;
    req.prepare_payload();
  }
  http::write(stream, req, ec);
  if (ec) return UnavailableError("cannot send to the controller at " + url + ": " + ec.message());
  beast::flat_buffer buffer;
  http::response_parser<http::string_body> parser;
  parser.body_limit(uint64_t{256} << 20);
  http::read(stream, buffer, parser, ec);
  if (ec) {
    return UnavailableError("no answer from the controller at " + url + ": " + ec.message());
  }
  stream.socket().shutdown(net::ip::tcp::socket::shutdown_both, ec);
  HttpAnswer a;
  a.status = static_cast<int>(parser.get().result_int());
  a.body = parser.get().body();
  return a;
}

int Submit(const ClientArgs& args, const std::string& file, std::ostream& out, std::ostream& err) {
  std::ifstream in(file, std::ios::binary);
  if (!in) {
    err << "gridemu: cannot read '" << file << "'\n";
    return 2;
  }
  std::ostringstream text;
  text << in.rdbuf();
  Call c = Do(args, "POST", std::string(kApi) + "/experiments", text.str(),
              {{"Content-Type", "application/yaml"}, {"X-Gridemu-Filename", file}}, err,
              /*print_error=*/false);
  if (c.exit_code == 2) return 2;
  if (c.status == 422 && c.body.is_object() && c.body.contains("diagnostics")) {
    const std::string base =
        file.substr(file.find_last_of('/') == std::string::npos ? 0 : file.find_last_of('/') + 1);
    for (const auto& d : c.body["diagnostics"]) {
      std::string f = d.value("file", "");
      if (f.empty() || f == base) f = file;
      const int line = d.value("line", 0), column = d.value("column", 0);
      err << f;
      if (line > 0) err << ":" << line << ":" << column;
      err << ": " << d.value("message", "") << "\n";
    }
    return 1;
  }
  if (c.exit_code != 0) {
    err << "gridemu: " << Str(c.body, "error") << " (HTTP " << c.status << ")\n";
    return 1;
  }
  if (args.json) {
    out << c.body.dump(2) << "\n";
  } else {
    out << Str(c.body, "id") << "\n";
  }
  return 0;
}

int Status(const ClientArgs& args, const std::string& id, std::ostream& out, std::ostream& err) {
  if (id.empty()) {
    Call c = Do(args, "GET", std::string(kApi) + "/experiments", "", {}, err);
    if (c.exit_code != 0) return c.exit_code;
    if (args.json) {
      out << c.body.dump(2) << "\n";
      return 0;
    }
    out << Pad("ID", 28) << Pad("STATE", 11) << Pad("VNODES", 7) << Pad("TASKS", 6) << "UPDATED\n";
    const json experiments = c.body.value("experiments", json::array());
    for (const auto& e : experiments) {
      out << Pad(Str(e, "id"), 28) << Pad(Str(e, "state"), 11) << Pad(Str(e, "vnodes"), 7)
          << Pad(Str(e, "tasks"), 6) << Str(e, "updated") << "\n";
    }
    return 0;
  }
  Call c = Do(args, "GET", std::string(kApi) + "/experiments/" + UrlEncode(id), "", {}, err);
  if (c.exit_code != 0) return c.exit_code;
  const json& j = c.body;
  if (args.json) {
    out << j.dump(2) << "\n";
    return 0;
  }
  out << "experiment " << Str(j, "id") << " (" << Str(j, "name") << ", slice " << Str(j, "slice")
      << ")\n";
  out << "state:    " << Str(j, "state");
  if (!Str(j, "failure_reason").empty()) out << " (" << Str(j, "failure_reason") << ")";
  out << "\n";
  out << "file:     " << Str(j, "source") << " (sha256 " << Str(j, "yaml_sha256").substr(0, 12)
      << "...), seed " << Str(j, "seed") << ", duration " << Str(j, "duration") << "\n";
  out << "size:     " << Str(j, "vnodes") << " vnodes, " << Str(j, "links") << " links, "
      << Str(j, "tasks") << " task instances, " << Str(j, "events") << " events\n";
  auto counts = [&](const char* key) {
    std::string s;
    if (!j.contains(key) || !j[key].is_object()) return s;
    const json by_state = j[key].value("by_state", json::object());
    for (const auto& [k, v] : by_state.items()) {
      if (!s.empty()) s += ", ";
      s += std::to_string(v.get<uint64_t>()) + " " + k;
    }
    return s.empty() ? std::string("none") : s;
  };
  out << "tasks:    " << counts("task_counts") << "\n";
  out << "events:   " << counts("event_counts") << "\n";
  if (j.contains("placement") && j["placement"].is_object()) {
    const json& p = j["placement"];
    out << "placed:   " << Str(p, "algorithm") << " on";
    const json per_pnode = p.value("vnodes_per_pnode", json::object());
    for (const auto& [h, n] : per_pnode.items()) {
      out << " " << h << " (" << n.dump() << ")";
    }
    out << "\n";
    if (per_pnode.size() > 1) {
      char imb[32];
      std::snprintf(imb, sizeof(imb), "%.3f", p.value("imbalance", 0.0));
      out << "          " << p.value("cut_links", uint64_t{0}) << " cross-pnode links ("
          << gridemu::FormatRate(p.value("cut_rate_bps", uint64_t{0})) << "), imbalance " << imb
          << " (max load / target load)";
      const uint64_t vnis = p.value("vni_count", uint64_t{0});
      if (vnis > 0) {
        const uint64_t base = p.value("vni_base", uint64_t{0});
        out << ", VNIs " << base << "-" << base + vnis - 1;
      }
      out << "\n";
    }
  }
  if (j.contains("lost_vnodes") && j["lost_vnodes"].is_array()) {
    for (const auto& l : j["lost_vnodes"]) {
      if (l.is_string()) out << "lost:     " << l.get<std::string>() << "\n";
    }
  }
  if (!Str(j, "results_dir").empty()) out << "results:  " << Str(j, "results_dir") << "\n";
  out << "history:\n";
  const json transitions = j.value("transitions", json::array());
  for (const auto& t : transitions) {
    out << "  " << Str(t, "time") << "  " << Pad(Str(t, "to"), 11) << Str(t, "reason") << "\n";
  }
  return 0;
}

int Logs(const ClientArgs& args, const std::string& id, const std::string& task, bool stderr_stream,
         uint64_t tail_bytes, std::ostream& out, std::ostream& err) {
  std::string target = std::string(kApi) + "/experiments/" + UrlEncode(id) +
                       "/logs?task=" + UrlEncode(task) +
                       "&stream=" + (stderr_stream ? "stderr" : "stdout");
  if (tail_bytes > 0) target += "&tail=" + std::to_string(tail_bytes);
  Call c = Do(args, "GET", target, "", {}, err);
  if (c.exit_code != 0) return c.exit_code;
  if (args.json) {
    out << c.body.dump(2) << "\n";
    return 0;
  }
  if (c.body.value("truncated", false)) {
    err << "gridemu: (showing the last " << c.body.value("text", "").size() << " of "
        << c.body.value("size_bytes", 0) << " bytes of " << Str(c.body, "path") << ")\n";
  }
  out << c.body.value("text", "");
  return 0;
}

int Results(const ClientArgs& args, const std::string& id, std::ostream& out, std::ostream& err) {
  Call c = Do(args, "GET", std::string(kApi) + "/experiments/" + UrlEncode(id) + "/results", "", {},
              err);
  if (c.exit_code != 0) return c.exit_code;
  if (args.json) {
    out << c.body.dump(2) << "\n";
    return 0;
  }
  const std::string dir = Str(c.body, "results_dir");
  out << "experiment " << Str(c.body, "id") << ": " << Str(c.body, "state") << "\n";
  if (dir.empty()) {
    out << "no results yet\n";
    return 0;
  }
  out << "results: " << dir << "\n";
  const json& m = c.body.contains("manifest") ? c.body["manifest"] : json();
  if (m.is_object()) {
    out << "state in manifest: " << Str(m, "state");
    if (!Str(m, "reason").empty()) out << " (" << Str(m, "reason") << ")";
    out << "\n";
    out << "ran: " << Str(m, "start") << " .. " << Str(m, "end") << "\n";
    const json pnodes = m.value("pnodes", json::array());
    for (const auto& p : pnodes) {
      out << "pnode " << Str(p, "host_id") << ": kernel " << Str(p, "kernel") << ", shaping "
          << Str(p, "shaping_backend") << ", " << Str(p, "vnodes") << " vnodes\n";
    }
  }
  std::ifstream summary(dir + "/summary.txt");
  if (summary) {
    out << "\n" << summary.rdbuf();
  }
  return 0;
}

int Cancel(const ClientArgs& args, const std::string& id, std::ostream& out, std::ostream& err) {
  Call c = Do(args, "POST", std::string(kApi) + "/experiments/" + UrlEncode(id) + "/cancel", "", {},
              err);
  if (c.exit_code != 0) return c.exit_code;
  if (args.json) {
    out << c.body.dump(2) << "\n";
  } else {
    out << Str(c.body, "id") << ": " << Str(c.body, "state") << "\n";
  }
  return 0;
}

int Hosts(const ClientArgs& args, std::ostream& out, std::ostream& err) {
  Call c = Do(args, "GET", std::string(kApi) + "/hosts", "", {}, err);
  if (c.exit_code != 0) return c.exit_code;
  if (args.json) {
    out << c.body.dump(2) << "\n";
    return 0;
  }
  const json& hosts = c.body.contains("hosts") ? c.body["hosts"] : json::array();
  if (hosts.empty()) {
    out << "no pnode has registered\n";
    return 0;
  }
  out << Pad("HOST", 16) << Pad("STATE", 9) << Pad("ADDRESS", 17) << Pad("CORES", 7)
      << Pad("MAX VNODES", 11) << "LAST HEARTBEAT\n";
  const int64_t now_ns = UnixNanosNow();
  for (const json& h : hosts) {
    std::string seen = "-";
    if (h.contains("last_heartbeat_unix_ns") && h["last_heartbeat_unix_ns"].is_number()) {
      const double ago =
          static_cast<double>(now_ns - h["last_heartbeat_unix_ns"].get<int64_t>()) / 1e9;
      char buf[32];
      std::snprintf(buf, sizeof(buf), "%.1fs ago", ago < 0 ? 0.0 : ago);
      seen = buf;
    }
    const std::string address =
        h.contains("address") && h["address"].is_string() ? h["address"].get<std::string>() : "-";
    out << Pad(Str(h, "host_id"), 16) << Pad(Str(h, "state"), 9) << Pad(address, 17)
        << Pad(std::to_string(h.value("cores", 0)), 7)
        << Pad(std::to_string(h.value("max_vnodes", 0)), 11) << seen << "\n";
  }
  return 0;
}

}  // namespace gridemu::cli

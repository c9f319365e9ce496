// ApiRouter: the HTTP API's routes, JSON in and out; no network code here.

#include <cstdio>
#include <ctime>
#include <exception>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>

#include "gridemu/common/units.h"
#include "gridemu/controller/http_router.h"

namespace gridemu::controller {
namespace {

using nlohmann::json;

constexpr std::string_view kApiPrefix = "/api/v1";
constexpr std::string_view kDefaultFilename = "experiment.yaml";
constexpr uint64_t kDefaultTailBytes = 64 << 10;

// JSON text; invalid UTF-8 in strings (user input echoed back, program
// output) is replaced with U+FFFD rather than throwing.
std::string Dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

HttpResponse JsonResponse(int status, const json& body) {
  HttpResponse r;
  r.status = status;
  r.body = Dump(body);
  return r;
}

HttpResponse FromStatus(const Status& s) { return JsonError(HttpStatusFor(s.code()), s.message()); }

std::string ToLower(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

std::string Header(const HttpRequest& req, const std::string& name) {
  auto it = req.headers.find(name);
  return it == req.headers.end() ? std::string() : std::string(Trim(it->second));
}

// "2024-05-01T12:00:00.123Z".
std::string Rfc3339(int64_t unix_ns) {
  std::time_t secs = static_cast<std::time_t>(unix_ns / 1000000000);
  int64_t ms = (unix_ns % 1000000000) / 1000000;
  if (ms < 0) {
    ms += 1000;
    --secs;
  }
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[64];
  size_t n = std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S", &tm);
  char frac[8];
  std::snprintf(frac, sizeof(frac), ".%03dZ", static_cast<int>(ms));
  return std::string(buf, n) + frac;
}

json NullIfEmpty(const std::string& s) { return s.empty() ? json(nullptr) : json(s); }

// ExperimentRecord::lost_vnodes as a JSON array of lines.
json LostLines(const std::string& text) {
  json out = json::array();
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    if (end > start) out.push_back(text.substr(start, end - start));
    start = end + 1;
  }
  return out;
}

json ExperimentJson(const ExperimentRecord& r) {
  return json{
      {"id", r.id},
      {"name", r.name},
      {"slice", r.slice},
      {"state", ExperimentStateName(r.state)},
      {"seed", r.seed},
      {"duration", FormatTime(r.duration)},
      {"duration_ns", r.duration.count()},
      {"generation", r.generation},
      {"vnodes", r.num_vnodes},
      {"links", r.num_links},
      {"tasks", r.num_tasks},
      {"events", r.num_events},
      {"source", r.source_path},
      {"yaml_sha256", r.yaml_sha256},
      {"created", Rfc3339(r.created_unix_ns)},
      {"created_unix_ns", r.created_unix_ns},
      {"updated", Rfc3339(r.updated_unix_ns)},
      {"updated_unix_ns", r.updated_unix_ns},
      {"results_dir", NullIfEmpty(r.results_dir)},
      {"failure_reason", NullIfEmpty(r.failure_reason)},
      {"lost_vnodes", LostLines(r.lost_vnodes)},
  };
}

json TransitionJson(const TransitionRecord& t) {
  return json{
      {"from", t.from ? json(ExperimentStateName(*t.from)) : json(nullptr)},
      {"to", ExperimentStateName(t.to)},
      {"time", Rfc3339(t.unix_ns)},
      {"unix_ns", t.unix_ns},
      {"reason", t.reason},
  };
}

json CountsJson(const std::map<std::string, uint64_t>& by_state) {
  uint64_t total = 0;
  json states = json::object();
  for (const auto& [state, n] : by_state) {
    total += n;
    states[state] = n;
  }
  return json{{"total", total}, {"by_state", states}};
}

json PlacementJson(const std::optional<PlacementSummary>& p) {
  if (!p) return nullptr;
  json per_pnode = json::object();
  for (const auto& [pnode, n] : p->vnodes_per_pnode) per_pnode[pnode] = n;
  return json{
      {"generation", p->generation},
      {"algorithm", p->algorithm},
      {"pnodes", p->vnodes_per_pnode.size()},
      {"vnodes_per_pnode", per_pnode},
      {"cut_links", p->cut_links},
      {"cut_rate_bps", p->cut_rate_bps},
      {"imbalance", p->imbalance},  // max load / target load (placement.h); 1.0 = perfect
      {"vni_base", p->vni_base},
      {"vni_count", p->vni_count},
      {"time", Rfc3339(p->unix_ns)},
  };
}

// The path split on '/', without the leading empty segment; and the query.
struct Target {
  std::vector<std::string_view> segments;
  std::map<std::string, std::string> query;
};

Result<Target> ParseTarget(std::string_view target) {
  Target t;
  std::string_view path = target;
  std::string_view query;
  if (size_t q = target.find('?'); q != std::string_view::npos) {
    path = target.substr(0, q);
    query = target.substr(q + 1);
  }
  if (path.empty() || path.front() != '/') {
    return InvalidArgumentError("request target '" + std::string(target) +
                                "' is not an absolute path");
  }
  path.remove_prefix(1);
  while (true) {
    size_t slash = path.find('/');
    t.segments.push_back(path.substr(0, slash));
    if (slash == std::string_view::npos) break;
    path.remove_prefix(slash + 1);
  }
  while (!query.empty()) {
    size_t amp = query.find('&');
    std::string_view item = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
    if (item.empty()) continue;
    size_t eq = item.find('=');
    GRIDEMU_ASSIGN_OR_RETURN(std::string key, PercentDecode(item.substr(0, eq)));
    std::string value;
    if (eq != std::string_view::npos) {
      GRIDEMU_ASSIGN_OR_RETURN(value, PercentDecode(item.substr(eq + 1)));
    }
    t.query.emplace(std::move(key), std::move(value));  // the first occurrence wins
  }
  return t;
}

HttpResponse MethodNotAllowed(const HttpRequest& req, std::string_view allow) {
  HttpResponse r = JsonError(405, "method " + req.method + " is not allowed on " +
                                      std::string(req.target.substr(0, req.target.find('?'))) +
                                      "; allowed: " + std::string(allow));
  r.headers.emplace_back("Allow", std::string(allow));
  return r;
}

// The submitted file's name for diagnostics: X-Gridemu-Filename's last path
// component when it is printable and short, else "experiment.yaml".
std::string SubmitFilename(const HttpRequest& req) {
  std::string name = Header(req, "x-gridemu-filename");
  if (size_t slash = name.find_last_of('/'); slash != std::string::npos) name.erase(0, slash + 1);
  if (name.empty() || name.size() > 255 || name == "." || name == "..") {
    return std::string(kDefaultFilename);
  }
  for (unsigned char c : name) {
    if (c < 0x20 || c >= 0x7f) return std::string(kDefaultFilename);
  }
  return name;
}

// Ok, or the 415 answer.
std::optional<HttpResponse> CheckYamlContentType(const HttpRequest& req) {
  const std::string value = Header(req, "content-type");
  std::string_view v = value;
  std::string_view params;
  if (size_t semi = v.find(';'); semi != std::string_view::npos) {
    params = v.substr(semi + 1);
    v = v.substr(0, semi);
  }
  const std::string type = ToLower(Trim(v));
  bool ok = type == "application/yaml" || type == "application/x-yaml" || type == "text/yaml";
  // A charset other than UTF-8 (or its subset US-ASCII) cannot be honoured.
  const std::string p = ToLower(params);
  if (size_t cs = p.find("charset="); ok && cs != std::string::npos) {
    std::string_view charset = Trim(std::string_view(p).substr(cs + 8));
    charset = charset.substr(0, charset.find(';'));
    if (!charset.empty() && charset.front() == '"') charset = charset.substr(1, charset.size() - 2);
    ok = charset == "utf-8" || charset == "utf8" || charset == "us-ascii";
  }
  if (ok) return std::nullopt;
  return JsonError(415, "unsupported Content-Type '" + value +
                            "'; an experiment file is sent as application/yaml, "
                            "application/x-yaml or text/yaml (UTF-8)");
}

}  // namespace

int HttpStatusFor(StatusCode code) {
  switch (code) {
    case StatusCode::kOk:
      return 200;
    case StatusCode::kInvalidArgument:
    case StatusCode::kOutOfRange:
      return 400;
    case StatusCode::kPermissionDenied:
    case StatusCode::kResourceExhausted:
      return 403;
    case StatusCode::kNotFound:
      return 404;
    case StatusCode::kAlreadyExists:
    case StatusCode::kFailedPrecondition:
    case StatusCode::kCancelled:
      return 409;
    case StatusCode::kUnimplemented:
      return 501;
    case StatusCode::kUnavailable:
      return 503;
    case StatusCode::kDeadlineExceeded:
      return 504;
    case StatusCode::kInternal:
      return 500;
  }
  return 500;
}

HttpResponse JsonError(int status, std::string_view message) {
  return JsonResponse(status, json{{"error", std::string(message)}});
}

std::vector<Diagnostic> SplitDiagnostics(std::string_view message) {
  std::vector<Diagnostic> out;
  auto digits = [](std::string_view s, size_t pos, size_t* end) {
    size_t e = pos;
    while (e < s.size() && e - pos < 9 && s[e] >= '0' && s[e] <= '9') ++e;
    *end = e;
    return e > pos;
  };
  while (!message.empty()) {
    size_t nl = message.find('\n');
    std::string_view line = message.substr(0, nl);
    message = nl == std::string_view::npos ? std::string_view() : message.substr(nl + 1);
    if (Trim(line).empty()) continue;
    Diagnostic d;
    bool parsed = false;
    // The first ":<line>:<column>: " names the position; what precedes is the file.
    for (size_t colon = line.find(':'); colon != std::string_view::npos && !parsed;
         colon = line.find(':', colon + 1)) {
      size_t l_end = 0;
      size_t c_end = 0;
      if (colon == 0 || !digits(line, colon + 1, &l_end) || l_end >= line.size() ||
          line[l_end] != ':' || !digits(line, l_end + 1, &c_end) || line.substr(c_end, 2) != ": ") {
        continue;
      }
      d.loc.file = std::string(line.substr(0, colon));
      d.loc.line = std::stoi(std::string(line.substr(colon + 1, l_end - colon - 1)));
      d.loc.column = std::stoi(std::string(line.substr(l_end + 1, c_end - l_end - 1)));
      d.message = std::string(line.substr(c_end + 2));
      parsed = true;
    }
    if (!parsed) {
      size_t sep = line.find(": ");
      std::string_view file =
          sep == std::string_view::npos ? std::string_view() : line.substr(0, sep);
      // "file: message" when the prefix looks like a file name (no spaces).
      if (!file.empty() && file.find(' ') == std::string_view::npos &&
          file.find('.') != std::string_view::npos) {
        d.loc.file = std::string(file);
        d.message = std::string(line.substr(sep + 2));
      } else {
        d.message = std::string(line);
      }
    }
    out.push_back(std::move(d));
  }
  return out;
}

bool IsValidUtf8(std::string_view s, size_t* bad_offset) {
  size_t i = 0;
  const size_t n = s.size();
  auto fail = [&](size_t at) {
    if (bad_offset != nullptr) *bad_offset = at;
    return false;
  };
  while (i < n) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      ++i;
      continue;
    }
    size_t len = 0;
    uint32_t cp = 0;
    if (c >= 0xc2 && c <= 0xdf) {
      len = 2;
      cp = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
      len = 3;
      cp = c & 0x0f;
    } else if (c >= 0xf0 && c <= 0xf4) {
      len = 4;
      cp = c & 0x07;
    } else {
      return fail(i);
    }
    if (i + len > n) return fail(i);
    for (size_t k = 1; k < len; ++k) {
      const auto cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xc0) != 0x80) return fail(i);
      cp = (cp << 6) | (cc & 0x3f);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) || cp > 0x10ffff ||
        (cp >= 0xd800 && cp <= 0xdfff)) {
      return fail(i);
    }
    i += len;
  }
  return true;
}

Result<std::string> PercentDecode(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  auto hex = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '+') {
      out += ' ';
    } else if (s[i] == '%') {
      if (i + 2 >= s.size()) {
        return InvalidArgumentError("malformed percent escape in '" + std::string(s) + "'");
      }
      int hi = hex(s[i + 1]);
      int lo = hex(s[i + 2]);
      if (hi < 0 || lo < 0) {
        return InvalidArgumentError("malformed percent escape in '" + std::string(s) + "'");
      }
      out += static_cast<char>(hi * 16 + lo);
      i += 2;
    } else {
      out += s[i];
    }
  }
  return out;
}

ApiRouter::ApiRouter(ControllerService& service, RouterOptions options)
    : service_(service), options_(options) {}

HttpResponse ApiRouter::Handle(const HttpRequest& request) const {
  try {
    return Route(request);
  } catch (const std::exception& e) {
    return JsonError(500, std::string("internal error: ") + e.what());
  } catch (...) {
    return JsonError(500, "internal error");
  }
}

HttpResponse ApiRouter::Route(const HttpRequest& req) const {
  auto target = ParseTarget(req.target);
  if (!target.ok()) return FromStatus(target.status());
  const auto& seg = target->segments;
  const auto& query = target->query;
  const bool get = req.method == "GET";
  const bool post = req.method == "POST";

  // Health, at the root and under the API prefix.
  if ((seg.size() == 1 && seg[0] == "healthz") ||
      (seg.size() == 3 && seg[0] == "api" && seg[1] == "v1" && seg[2] == "healthz")) {
    if (!get) return MethodNotAllowed(req, "GET");
    Status s = service_.Health();
    if (!s.ok()) return JsonResponse(503, json{{"status", "unavailable"}, {"error", s.message()}});
    return JsonResponse(200, json{{"status", "ok"}});
  }

  // The caller's slice (header X-Gridemu-Slice, else ?slice=, else
  // "default") and its right to act for it: an error response, or nothing.
  auto authorize = [&](std::string* slice) -> std::optional<HttpResponse> {
    *slice = Header(req, "x-gridemu-slice");
    if (slice->empty()) {
      auto it = query.find("slice");
      *slice = it == query.end() || it->second.empty() ? "default" : it->second;
    }
    std::string token;
    if (std::string auth = Header(req, "authorization"); !auth.empty()) {
      if (auth.size() > 7 && ToLower(auth.substr(0, 7)) == "bearer ") {
        token = std::string(Trim(std::string_view(auth).substr(7)));
      }
    }
    if (Status s = service_.Authorize(*slice, token); !s.ok()) {
      if (s.code() == StatusCode::kPermissionDenied && token.empty()) {
        HttpResponse r = JsonError(401, s.message());
        r.headers.emplace_back("WWW-Authenticate", "Bearer realm=\"gridemu\"");
        return r;
      }
      return FromStatus(s);
    }
    return std::nullopt;
  };

  // The pnodes registered with the controller.
  if (seg.size() == 3 && seg[0] == "api" && seg[1] == "v1" && seg[2] == "hosts") {
    if (!get) return MethodNotAllowed(req, "GET");
    std::string slice;
    if (auto denied = authorize(&slice)) return *denied;
    auto hosts = service_.Hosts();
    if (!hosts.ok()) return FromStatus(hosts.status());
    json items = json::array();
    for (const HostRecord& h : *hosts) {
      items.push_back(json{
          {"host_id", h.host_id},
          {"address", NullIfEmpty(h.address)},
          {"state", HostStateName(h.state)},
          {"cores", h.cores},
          {"memory_bytes", h.memory_bytes},
          {"max_vnodes", h.max_vnodes},
          {"last_heartbeat_unix_ns", h.last_heartbeat_unix_ns ? json(*h.last_heartbeat_unix_ns)
                                                              : json(nullptr)},
          {"registered_unix_ns", h.registered_unix_ns}});
    }
    return JsonResponse(200, json{{"hosts", std::move(items)}});
  }

  auto no_route = [&] {
    return JsonError(
        404, "no route for " + req.method + " " + req.target.substr(0, req.target.find('?')));
  };
  if (seg.size() < 3 || seg[0] != "api" || seg[1] != "v1" || seg[2] != "experiments") {
    return no_route();
  }
  for (auto s : seg) {
    if (s.empty()) return no_route();
  }
  const std::string id = seg.size() >= 4 ? std::string(seg[3]) : std::string();
  const std::string_view action = seg.size() == 5 ? seg[4] : std::string_view();
  if (seg.size() > 5 ||
      (seg.size() == 5 && action != "cancel" && action != "logs" && action != "results")) {
    return no_route();
  }

  // Which method the route takes; checked before the slice so that a wrong
  // method is a 405 whatever the slice.
  std::string_view allow = seg.size() == 3 ? "GET, POST" : action == "cancel" ? "POST" : "GET";
  if (!((get && allow.find("GET") != std::string_view::npos) ||
        (post && allow.find("POST") != std::string_view::npos))) {
    return MethodNotAllowed(req, allow);
  }

  // The slice, and the caller's right to act for it.
  std::string slice;
  if (auto denied = authorize(&slice)) return *denied;

  if (seg.size() == 3 && get) {
    auto list = service_.List(slice);
    if (!list.ok()) return FromStatus(list.status());
    json items = json::array();
    for (const auto& r : *list) items.push_back(ExperimentJson(r));
    return JsonResponse(200, json{{"slice", slice}, {"experiments", std::move(items)}});
  }

  if (seg.size() == 3 && post) {
    if (auto bad = CheckYamlContentType(req)) return *bad;
    if (req.body.size() > options_.body_limit_bytes) {
      return JsonError(413, "request body of " + std::to_string(req.body.size()) +
                                " bytes is over the limit of " +
                                std::to_string(options_.body_limit_bytes) + " bytes");
    }
    if (req.body.empty()) {
      return JsonError(400, "empty request body; expected an experiment file (YAML)");
    }
    size_t bad_offset = 0;
    if (!IsValidUtf8(req.body, &bad_offset)) {
      return JsonError(400, "request body is not valid UTF-8 (first bad byte at offset " +
                                std::to_string(bad_offset) + ")");
    }
    SubmitRequest sub;
    sub.slice = slice;
    sub.yaml = req.body;
    sub.filename = SubmitFilename(req);
    auto r = service_.Submit(sub);
    if (!r.ok()) {
      const Status& s = r.status();
      if (s.code() != StatusCode::kInvalidArgument) return FromStatus(s);
      json diags = json::array();
      for (const auto& d : SplitDiagnostics(s.message())) {
        diags.push_back(json{{"file", d.loc.file},
                             {"line", d.loc.line},
                             {"column", d.loc.column},
                             {"message", d.message}});
      }
      return JsonResponse(422, json{{"error", s.message()}, {"diagnostics", std::move(diags)}});
    }
    HttpResponse resp =
        JsonResponse(201, json{{"id", r->id}, {"state", ExperimentStateName(r->state)}});
    resp.headers.emplace_back("Location", std::string(kApiPrefix) + "/experiments/" + r->id);
    return resp;
  }

  if (seg.size() == 4) {
    auto st = service_.GetStatus(slice, id);
    if (!st.ok()) return FromStatus(st.status());
    json j = ExperimentJson(st->experiment);
    json transitions = json::array();
    for (const auto& t : st->transitions) transitions.push_back(TransitionJson(t));
    j["transitions"] = std::move(transitions);
    j["task_counts"] = CountsJson(st->tasks_by_state);
    j["event_counts"] = CountsJson(st->events_by_state);
    j["placement"] = PlacementJson(st->placement);
    return JsonResponse(200, j);
  }

  if (action == "cancel") {
    auto st = service_.Cancel(slice, id);
    if (!st.ok()) return FromStatus(st.status());
    return JsonResponse(200, json{{"id", id}, {"state", ExperimentStateName(*st)}});
  }

  if (action == "logs") {
    auto task = query.find("task");
    if (task == query.end() || task->second.empty()) {
      return JsonError(400, "missing query parameter 'task' (e.g. task=leech/3)");
    }
    LogStream stream = LogStream::kStdout;
    if (auto it = query.find("stream"); it != query.end()) {
      auto s = ParseLogStream(it->second);
      if (!s.ok()) return FromStatus(s.status());
      stream = *s;
    }
    uint64_t tail = kDefaultTailBytes;
    if (auto it = query.find("tail"); it != query.end()) {
      const std::string& t = it->second;
      bool digits =
          !t.empty() && t.size() <= 12 && t.find_first_not_of("0123456789") == std::string::npos;
      if (!digits || std::stoull(t) > options_.max_tail_bytes) {
        return JsonError(400, "tail: expected a number of bytes up to " +
                                  std::to_string(options_.max_tail_bytes) + ", got '" + t + "'");
      }
      tail = std::stoull(t);
    }
    auto logs = service_.Logs(slice, id, task->second, stream, tail);
    if (!logs.ok()) return FromStatus(logs.status());
    return JsonResponse(200, json{{"id", id},
                                  {"task", logs->task_id},
                                  {"stream", LogStreamName(logs->stream)},
                                  {"path", logs->path},
                                  {"size_bytes", logs->size_bytes},
                                  {"truncated", logs->truncated},
                                  {"text", logs->text}});
  }

  // action == "results"
  auto res = service_.Results(slice, id);
  if (!res.ok()) return FromStatus(res.status());
  json manifest = nullptr;
  if (!res->manifest_json.empty()) {
    manifest = json::parse(res->manifest_json, nullptr, /*allow_exceptions=*/false);
    if (manifest.is_discarded()) manifest = res->manifest_json;  // not JSON: as text
  }
  json entries = json::object();
  for (const auto& [k, v] : res->entries) entries[k] = v;
  return JsonResponse(200, json{{"id", res->id},
                                {"state", ExperimentStateName(res->state)},
                                {"results_dir", NullIfEmpty(res->results_dir)},
                                {"manifest", std::move(manifest)},
                                {"entries", std::move(entries)}});
}

}  // namespace gridemu::controller

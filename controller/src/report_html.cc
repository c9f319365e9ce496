// report.html of a results directory. See report_html.h.

#include "report_html.h"

#include <algorithm>
#include <cctype>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <limits>
#include <map>
#include <optional>
#include <sstream>
#include <tuple>

#include "gridemu/common/units.h"

namespace gridemu::controller {

namespace {

constexpr const char* kPalette[] = {"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
                                    "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"};
constexpr size_t kPaletteSize = sizeof(kPalette) / sizeof(kPalette[0]);

// Line plots: the SVG is kW x kH, the plot area [kL, kW - kR] x [kT, kH - kB].
constexpr double kW = 900, kH = 300, kL = 80, kR = 20, kT = 15, kB = 50;
// Gantt: one row per instance, labels on the left.
constexpr double kGanttL = 190, kGanttRow = 16, kGanttT = 10, kGanttB = 45;
// Event markers drawn on the Gantt chart at most.
constexpr size_t kMaxEventMarkers = 100;

std::string Fmt(const char* format, double v) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), format, v);
  return buf;
}

// Pixel coordinate.
std::string Px(double v) { return Fmt("%.1f", v); }

// Seconds with millisecond precision: "12.345".
std::string Sec(double s) { return Fmt("%.3f", s); }

double RelS(int64_t unix_ns, int64_t origin) {
  return static_cast<double>(unix_ns - origin) / 1e9;
}

// At most `max` bytes of `s`, not cutting a UTF-8 sequence, "…" when cut.
std::string Truncate(const std::string& s, size_t max) {
  if (s.size() <= max) return s;
  size_t n = max;
  while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xC0) == 0x80) --n;
  return s.substr(0, n) + "\xE2\x80\xA6";
}

// Percent-encodes a relative path for an href (then HtmlEscape() it).
std::string UrlPath(const std::string& path) {
  static const char* hex = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : path) {
    if (std::isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~' || c == '/') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  return out;
}


// "ok", "fail", "stopped" or "running" (not ended), as SummarizeTasks() counts.
const char* TaskClass(const TaskRecord& t) {
  if (!IsEndedTaskState(t.state)) return "running";
  if (StoppedAtEnd(t)) return "stopped";
  if (t.state == TaskState::kExited && t.exit_code && *t.exit_code == 0) return "ok";
  return "fail";
}


// Indices of the tasks to show when at most `cap` fit: failed ones first,
// then the others in order; returned in input order.
std::vector<size_t> SelectTasks(const std::vector<TaskRecord>& tasks, size_t cap,
                                bool started_only) {
  std::vector<size_t> failed, other;
  for (size_t i = 0; i < tasks.size(); ++i) {
    if (started_only && !tasks[i].start_unix_ns) continue;
    (std::string_view(TaskClass(tasks[i])) == "fail" ? failed : other).push_back(i);
  }
  std::vector<size_t> out;
  for (size_t i : failed) {
    if (out.size() >= cap) break;
    out.push_back(i);
  }
  for (size_t i : other) {
    if (out.size() >= cap) break;
    out.push_back(i);
  }
  std::sort(out.begin(), out.end());
  return out;
}

// A tick step of about range/target: 1, 2 or 5 times a power of ten.
double NiceStep(double range, int target) {
  if (!(range > 0) || !std::isfinite(range)) return 1;
  const double raw = range / target;
  const double mag = std::pow(10.0, std::floor(std::log10(raw)));
  const double norm = raw / mag;
  const double m = norm < 1.5 ? 1 : norm < 3 ? 2 : norm < 7 ? 5 : 10;
  return m * mag;
}

// Tick label of `v` for ticks `step` apart.
std::string TickLabel(double v, double step) {
  int decimals = 0;
  if (step < 1) decimals = std::min(9, static_cast<int>(std::ceil(-std::log10(step) - 1e-9)));
  if (std::fabs(v) < step * 1e-6) v = 0;
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.*f", decimals, v);
  return buf;
}

struct Scale {
  double divisor = 1;
  std::string unit;
};

Scale ScaleFor(ReportUnit unit, double max) {
  switch (unit) {
    case ReportUnit::kBitsPerSecond: {
      static const char* names[] = {"bit/s", "kbit/s", "Mbit/s", "Gbit/s", "Tbit/s"};
      Scale s{1, names[0]};
      for (int i = 1; i < 5 && max >= 1000 * s.divisor; ++i) s = {s.divisor * 1000, names[i]};
      return s;
    }
    case ReportUnit::kBytes: {
      static const char* names[] = {"B", "KiB", "MiB", "GiB", "TiB"};
      Scale s{1, names[0]};
      for (int i = 1; i < 5 && max >= 1024 * s.divisor; ++i) s = {s.divisor * 1024, names[i]};
      return s;
    }
    case ReportUnit::kPacketsPerSecond:
      return {1, "packets/s"};
    case ReportUnit::kCores:
      return {1, "cores"};
  }
  return {1, ""};
}

// The x axis of every time chart: [min, max] seconds.
struct TimeAxis {
  double min = 0;
  double max = 1;
  double step = 1;
};

TimeAxis MakeTimeAxis(double lo, double hi) {
  TimeAxis a;
  a.min = std::min(0.0, lo);
  a.max = std::max(hi, a.min + 1e-3);
  a.step = NiceStep(a.max - a.min, 8);
  a.min = std::floor(a.min / a.step) * a.step;
  a.max = std::ceil(a.max / a.step - 1e-9) * a.step;
  if (a.max <= a.min) a.max = a.min + a.step;
  return a;
}

// The vertical grid lines and labels of a time axis over [x0, x1] px, with
// the plot area from y0 to y1 px.
void DrawTimeAxis(std::ostringstream& o, const TimeAxis& ax, double x0, double x1, double y0,
                  double y1) {
  const double k = (x1 - x0) / (ax.max - ax.min);
  const int n = static_cast<int>(std::llround((ax.max - ax.min) / ax.step));
  for (int i = 0; i <= n; ++i) {
    const double v = ax.min + i * ax.step;
    const double x = x0 + (v - ax.min) * k;
    o << "<line class=\"grid\" x1=\"" << Px(x) << "\" y1=\"" << Px(y0) << "\" x2=\"" << Px(x)
      << "\" y2=\"" << Px(y1) << "\"/>";
    o << "<text class=\"tick\" x=\"" << Px(x) << "\" y=\"" << Px(y1 + 14)
      << "\" text-anchor=\"middle\">" << TickLabel(v, ax.step) << "</text>";
  }
  o << "<text class=\"axis\" x=\"" << Px((x0 + x1) / 2) << "\" y=\"" << Px(y1 + 34)
    << "\" text-anchor=\"middle\">time since start (s)</text>\n";
}

// Counter samples -> rates: (t, delta/dt) at the later sample.
std::vector<std::pair<double, double>> Rates(const std::vector<std::pair<int64_t, double>>& s,
                                             int64_t origin, double factor, double* total) {
  std::vector<std::pair<double, double>> out;
  for (size_t i = 1; i < s.size(); ++i) {
    const int64_t dt_ns = s[i].first - s[i - 1].first;
    if (dt_ns <= 0) continue;
    double delta = s[i].second - s[i - 1].second;
    if (delta < 0) delta = s[i].second;  // the counter restarted
    *total += delta;
    out.emplace_back(RelS(s[i].first, origin), delta * factor / (static_cast<double>(dt_ns) / 1e9));
  }
  return out;
}

// Averages `points` into at most `max` buckets of equal time width.
std::vector<std::pair<double, double>> Decimate(std::vector<std::pair<double, double>> points,
                                                size_t max) {
  if (max == 0 || points.size() <= max) return points;
  const double lo = points.front().first, hi = points.back().first;
  const double width = (hi - lo) / static_cast<double>(max);
  std::vector<std::pair<double, double>> out;
  size_t i = 0;
  for (size_t b = 0; b < max && i < points.size(); ++b) {
    const double end = b + 1 == max ? std::numeric_limits<double>::infinity() : lo + (b + 1) * width;
    double st = 0, sv = 0;
    size_t n = 0;
    for (; i < points.size() && points[i].first < end; ++i, ++n) {
      st += points[i].first;
      sv += points[i].second;
    }
    if (n > 0) out.emplace_back(st / n, sv / n);
  }
  return out;
}

// Ranks `all` into `plot`: series without points (one sample of a counter)
// are dropped, the rest sorted by total and capped.
void Finish(ReportPlot& plot, std::vector<ReportSeries> all, const ReportOptions& options) {
  all.erase(std::remove_if(all.begin(), all.end(),
                           [](const ReportSeries& s) { return s.points.empty(); }),
            all.end());
  plot.candidates = all.size();
  std::sort(all.begin(), all.end(), [](const ReportSeries& a, const ReportSeries& b) {
    return a.total != b.total ? a.total > b.total : a.name < b.name;
  });
  if (all.size() > options.max_series) all.resize(options.max_series);
  for (auto& s : all) s.points = Decimate(std::move(s.points), options.max_points);
  plot.series = std::move(all);
}

// Splits a link metric name "forward_tx_bytes" into ("forward", "tx_bytes").
std::pair<std::string, std::string> SplitDirection(const std::string& metric) {
  for (std::string_view base : {"tx_bytes", "dropped_loss", "dropped_queue"}) {
    if (metric == base) return {"", std::string(base)};
    if (metric.size() > base.size() + 1 &&
        metric.compare(metric.size() - base.size(), base.size(), base) == 0 &&
        metric[metric.size() - base.size() - 1] == '_') {
      return {metric.substr(0, metric.size() - base.size() - 1), std::string(base)};
    }
  }
  return {"", ""};
}

// --------------------------------------------------------------------------- page parts

const char* kCss = R"(
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:1.5em auto;max-width:1200px;padding:0 1em;color:#222;background:#fff}
h1{font-size:1.5em;margin-bottom:.2em}h2{font-size:1.2em;margin-top:1.8em;border-bottom:1px solid #ddd;padding-bottom:.2em}
h3{font-size:1em;margin:1.2em 0 .3em}
table{border-collapse:collapse;font-size:.85em;margin:.4em 0}
th,td{border:1px solid #ddd;padding:2px 6px;text-align:left;vertical-align:top}
th{background:#f3f3f3}td.n{text-align:right;font-variant-numeric:tabular-nums}
table.kv th{width:12em}
tr.fail td{background:#fde2e2}tr.stopped td{color:#666}tr.running td{background:#e8f0fe}
.badge{display:inline-block;padding:1px 8px;border-radius:3px;color:#fff;font-weight:bold}
.badge.finished{background:#2ca02c}.badge.failed{background:#d62728}.badge.cancelled{background:#ff7f0e}.badge.other{background:#7f7f7f}
.note{color:#555;font-size:.85em;margin:.3em 0}
.warn{color:#a00}
svg{background:#fff;max-width:100%;height:auto;font-size:11px}
svg .grid{stroke:#e5e5e5;stroke-width:1}
svg .frame{fill:none;stroke:#999;stroke-width:1}
svg .tick{fill:#555}svg .axis{fill:#222;font-size:12px}
svg .label{fill:#222}
svg polyline{fill:none;stroke-width:1.5}
svg .bar.ok{fill:#2ca02c}svg .bar.fail{fill:#d62728}svg .bar.stopped{fill:#9e9e9e}svg .bar.running{fill:#1f77b4}
svg .ev{stroke:#ff7f0e;stroke-width:1;stroke-dasharray:3 3}
ul.legend{list-style:none;padding:0;margin:.2em 0;font-size:.85em;columns:2}
ul.legend li{margin:1px 0}
.sw{display:inline-block;width:14px;height:4px;vertical-align:middle;margin-right:6px}
code{font-size:.9em}
)";

void Row(std::ostringstream& o, const std::string& key, const std::string& html_value) {
  o << "<tr><th>" << HtmlEscape(key) << "</th><td>" << html_value << "</td></tr>\n";
}

void Overview(std::ostringstream& o, const ResultsInput& in) {
  const auto& e = in.experiment;
  const std::string state(ExperimentStateName(in.final_state));
  const char* badge = in.final_state == ExperimentState::kFinished    ? "finished"
                      : in.final_state == ExperimentState::kFailed    ? "failed"
                      : in.final_state == ExperimentState::kCancelled ? "cancelled"
                                                                      : "other";
  o << "<h1>" << HtmlEscape(e.name) << " <small>(" << HtmlEscape(e.id) << ")</small></h1>\n";
  o << "<p><span class=\"badge " << badge << "\">" << HtmlEscape(state) << "</span> "
    << HtmlEscape(in.final_reason) << "</p>\n";
  o << "<table class=\"kv\">\n";
  Row(o, "experiment", HtmlEscape(e.id) + " (" + HtmlEscape(e.name) + ")");
  if (!e.slice.empty()) Row(o, "slice", HtmlEscape(e.slice));
  Row(o, "file", "<code>" + HtmlEscape(e.source_path) + "</code>");
  Row(o, "SHA-256", "<code>" + HtmlEscape(e.yaml_sha256) + "</code>");
  Row(o, "seed", std::to_string(e.seed));
  Row(o, "gridemu version", HtmlEscape(in.gridemu_version));
  Row(o, "state", HtmlEscape(state) +
                      (in.final_reason.empty() ? "" : " (" + HtmlEscape(in.final_reason) + ")"));
  Row(o, "configured duration", HtmlEscape(FormatTime(e.duration)));
  if (e.num_vnodes || e.num_links) {
    Row(o, "topology",
        std::to_string(e.num_vnodes) + " vnodes, " + std::to_string(e.num_links) + " links");
  }
  if (e.created_unix_ns) Row(o, "submitted", FormatUnixTime(e.created_unix_ns));
  if (in.start_unix_ns) {
    Row(o, "start", FormatUnixTime(in.start_unix_ns));
    Row(o, "end", FormatUnixTime(in.end_unix_ns));
    Row(o, "ran", Sec(RelS(in.end_unix_ns, in.start_unix_ns)) + " s");
  } else {
    Row(o, "start", "never ran");
    if (in.end_unix_ns) Row(o, "end", FormatUnixTime(in.end_unix_ns));
  }
  o << "</table>\n";

  if (in.placement) {
    const auto& p = *in.placement;
    o << "<h3>Placement</h3>\n<table class=\"kv\">\n";
    Row(o, "algorithm", HtmlEscape(p.algorithm));
    Row(o, "pnodes used", std::to_string(p.vnodes_per_pnode.size()));
    std::string per;
    for (const auto& [h, n] : p.vnodes_per_pnode) {
      if (!per.empty()) per += ", ";
      per += HtmlEscape(h) + ": " + std::to_string(n);
    }
    Row(o, "vnodes per pnode", per);
    Row(o, "cross-pnode links",
        std::to_string(p.cut_links) + " (" + HtmlEscape(FormatRate(p.cut_rate_bps)) + ")");
    Row(o, "imbalance", Fmt("%.3f", p.imbalance) + " (max load / target load)");
    o << "</table>\n";
  }
  if (!in.pnodes.empty()) {
    o << "<h3>Pnodes</h3>\n<table><tr><th>host</th><th>address</th><th>kernel</th>"
         "<th>shaping backend</th><th>agent version</th><th>vnodes</th></tr>\n";
    for (const auto& p : in.pnodes) {
      o << "<tr><td>" << HtmlEscape(p.host_id) << "</td><td>" << HtmlEscape(p.address)
        << "</td><td>" << HtmlEscape(p.kernel_release) << "</td><td>"
        << HtmlEscape(p.shaping_backend) << "</td><td>" << HtmlEscape(p.agent_version)
        << "</td><td class=\"n\">" << p.vnodes << "</td></tr>\n";
    }
    o << "</table>\n";
  }
  if (!e.lost_vnodes.empty()) {
    o << "<h3>Lost vnodes</h3>\n<ul>\n";
    std::istringstream lines(e.lost_vnodes);
    for (std::string l; std::getline(lines, l);) {
      if (!l.empty()) o << "<li class=\"warn\">" << HtmlEscape(l) << "</li>\n";
    }
    o << "</ul>\n";
  }
  if (!in.notes.empty()) {
    o << "<h3>Notes</h3>\n<ul>\n";
    for (const auto& n : in.notes) o << "<li>" << HtmlEscape(n) << "</li>\n";
    o << "</ul>\n";
  }
}

std::string DurCell(std::optional<std::chrono::nanoseconds> d) {
  return d ? Sec(static_cast<double>(d->count()) / 1e9) : "";
}

void TaskSummaryTable(std::ostringstream& o, const std::vector<TaskRecord>& tasks) {
  const auto summary = SummarizeTasks(tasks);
  o << "<table><tr><th>task</th><th>waited</th><th>instances</th><th>ok</th><th>failed</th>"
       "<th>stopped</th><th>not ended</th><th>min (s)</th><th>median (s)</th><th>max (s)</th>"
       "<th>outcomes</th></tr>\n";
  for (const auto& s : summary) {
    std::string outcomes;
    for (const auto& [k, c] : s.outcomes) {
      if (!outcomes.empty()) outcomes += ", ";
      outcomes += k + " \xC3\x97" + std::to_string(c);
    }
    o << "<tr" << (s.failed ? " class=\"fail\"" : "") << "><td>" << HtmlEscape(s.task)
      << "</td><td>" << (s.wait ? "yes" : "no") << "</td><td class=\"n\">" << s.instances
      << "</td><td class=\"n\">" << s.ok << "</td><td class=\"n\">" << s.failed
      << "</td><td class=\"n\">" << s.stopped << "</td><td class=\"n\">" << s.not_ended
      << "</td><td class=\"n\">" << DurCell(s.min) << "</td><td class=\"n\">" << DurCell(s.median)
      << "</td><td class=\"n\">" << DurCell(s.max) << "</td><td>" << HtmlEscape(outcomes)
      << "</td></tr>\n";
  }
  o << "</table>\n";
}

void Gantt(std::ostringstream& o, const ResultsInput& in, int64_t origin, const TimeAxis& ax,
           const ReportOptions& opt) {
  const auto rows = SelectTasks(in.tasks, opt.max_gantt_rows, /*started_only=*/true);
  size_t started = 0;
  for (const auto& t : in.tasks) started += t.start_unix_ns ? 1 : 0;
  if (started == 0) {
    o << "<p class=\"note\">No task instance started.</p>\n";
    return;
  }
  const double x0 = kGanttL, x1 = kW - kR;
  const double y0 = kGanttT, y1 = kGanttT + kGanttRow * static_cast<double>(rows.size());
  const double h = y1 + kGanttB;
  const double k = (x1 - x0) / (ax.max - ax.min);
  auto X = [&](double s) { return x0 + (std::clamp(s, ax.min, ax.max) - ax.min) * k; };
  const double run_end = in.end_unix_ns ? RelS(in.end_unix_ns, origin) : ax.max;
  o << "<svg class=\"gantt\" data-plot=\"gantt\" xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 "
    << Px(kW) << " " << Px(h) << "\" width=\"" << Px(kW) << "\" height=\"" << Px(h) << "\">\n";
  DrawTimeAxis(o, ax, x0, x1, y0, y1);
  for (size_t r = 0; r < rows.size(); ++r) {
    const TaskRecord& t = in.tasks[rows[r]];
    const double y = y0 + kGanttRow * static_cast<double>(r);
    const double s = RelS(*t.start_unix_ns, origin);
    const double e = t.end_unix_ns ? RelS(*t.end_unix_ns, origin) : std::max(s, run_end);
    const double bx = X(s);
    const double bw = std::max(1.0, X(e) - bx);
    o << "<text class=\"label\" x=\"" << Px(x0 - 6) << "\" y=\"" << Px(y + kGanttRow - 4)
      << "\" text-anchor=\"end\">" << HtmlEscape(Truncate(t.task_id, 28)) << "</text>";
    o << "<rect class=\"bar " << TaskClass(t) << "\" x=\"" << Px(bx) << "\" y=\"" << Px(y + 2)
      << "\" width=\"" << Px(bw) << "\" height=\"" << Px(kGanttRow - 4) << "\"><title>"
      << HtmlEscape(t.task_id + " on " + t.vnode + ": " + TaskOutcome(t) + ", " + Sec(s) + " s .. " +
                    (t.end_unix_ns ? Sec(e) + " s" : std::string("not ended")) +
                    (t.reason.empty() ? "" : " (" + t.reason + ")"))
      << "</title></rect>\n";
  }
  if (in.events.size() <= kMaxEventMarkers) {
    for (const auto& ev : in.events) {
      // Event times are from the experiment start, which is the origin.
      const double s = static_cast<double>(ev.applied_ns.value_or(ev.planned_ns)) / 1e9;
      o << "<line class=\"ev\" x1=\"" << Px(X(s)) << "\" y1=\"" << Px(y0) << "\" x2=\""
        << Px(X(s)) << "\" y2=\"" << Px(y1) << "\"><title>"
        << HtmlEscape("event " + std::to_string(ev.event_index) + " " + ev.kind + " " + ev.target +
                      " at " + Sec(s) + " s")
        << "</title></line>";
    }
  }
  o << "<rect class=\"frame\" x=\"" << Px(x0) << "\" y=\"" << Px(y0) << "\" width=\""
    << Px(x1 - x0) << "\" height=\"" << Px(y1 - y0) << "\"/>\n</svg>\n";
  o << "<p class=\"note\">One row per task instance; green: exited 0, red: failed, grey: stopped "
       "at the end of the run, blue: not ended";
  if (in.events.size() <= kMaxEventMarkers && !in.events.empty()) {
    o << "; dashed orange lines: timeline events";
  }
  o << ".";
  if (started > rows.size()) {
    o << " <strong>" << (started - rows.size()) << " more</strong> started instances not shown "
      << "(failed ones are shown first; tasks.csv has all).";
  }
  if (started < in.tasks.size()) {
    o << " " << (in.tasks.size() - started) << " instance(s) never started.";
  }
  o << "</p>\n";
}

std::string Link(const std::string& path, const std::string& dir, const std::string& text) {
  if (dir.empty() || path.size() <= dir.size() + 1 || path.compare(0, dir.size(), dir) != 0 ||
      path[dir.size()] != '/') {
    return "";
  }
  return "<a href=\"" + HtmlEscape(UrlPath(path.substr(dir.size() + 1))) + "\">" + text + "</a>";
}

void TaskTable(std::ostringstream& o, const ResultsInput& in, int64_t origin,
               const std::string& dir, const ReportOptions& opt) {
  const auto rows = SelectTasks(in.tasks, opt.max_table_rows, /*started_only=*/false);
  o << "<table class=\"tasks\"><tr><th>instance</th><th>vnode</th><th>state</th><th>outcome</th>"
       "<th>exit code</th><th>signal</th><th>start (s)</th><th>end (s)</th><th>duration (s)</th>"
       "<th>reason</th><th>output</th></tr>\n";
  for (size_t i : rows) {
    const TaskRecord& t = in.tasks[i];
    std::string dur;
    if (t.start_unix_ns && t.end_unix_ns) dur = Sec(RelS(*t.end_unix_ns, *t.start_unix_ns));
    std::string out = Link(t.stdout_path, dir, "stdout");
    const std::string err = Link(t.stderr_path, dir, "stderr");
    if (!err.empty()) out += (out.empty() ? "" : " ") + err;
    o << "<tr class=\"" << TaskClass(t) << "\"><td>" << HtmlEscape(t.task_id)
      << (t.wait ? "*" : "") << "</td><td>" << HtmlEscape(t.vnode) << "</td><td>"
      << TaskStateName(t.state) << "</td><td>" << HtmlEscape(TaskOutcome(t)) << "</td><td class=\"n\">"
      << (t.exit_code ? std::to_string(*t.exit_code) : "") << "</td><td class=\"n\">"
      << (t.signal ? std::to_string(*t.signal) : "") << "</td><td class=\"n\">"
      << (t.start_unix_ns && origin ? Sec(RelS(*t.start_unix_ns, origin)) : "")
      << "</td><td class=\"n\">"
      << (t.end_unix_ns && origin ? Sec(RelS(*t.end_unix_ns, origin)) : "")
      << "</td><td class=\"n\">" << dur << "</td><td>" << HtmlEscape(t.reason) << "</td><td>"
      << out << "</td></tr>\n";
  }
  o << "</table>\n<p class=\"note\">* = waited for. Failed instances are highlighted.";
  if (in.tasks.size() > rows.size()) {
    o << " <strong>" << (in.tasks.size() - rows.size())
      << " more</strong> instances not shown (failed ones are shown first); see "
         "<a href=\"tasks.csv\">tasks.csv</a>.";
  }
  o << "</p>\n";
}

void Events(std::ostringstream& o, const ResultsInput& in, const ReportOptions& opt) {
  std::vector<double> lags_ms;
  size_t applied = 0, failed = 0, missed = 0;
  for (const auto& r : in.events) {
    if (r.applied_ns) lags_ms.push_back(static_cast<double>(*r.applied_ns - r.planned_ns) / 1e6);
    if (!r.error.empty()) {
      ++failed;
    } else if (r.applied_ns) {
      ++applied;
    } else {
      ++missed;
    }
  }
  o << "<p>" << in.events.size() << " event action(s): " << applied << " applied, " << failed
    << " failed, " << missed << " not reached.";
  if (!lags_ms.empty()) {
    std::sort(lags_ms.begin(), lags_ms.end());
    const size_t n = lags_ms.size();
    const double median = n % 2 ? lags_ms[n / 2] : (lags_ms[n / 2 - 1] + lags_ms[n / 2]) / 2;
    o << " Lag (applied &minus; planned): median " << Fmt("%.3f", median) << " ms, max "
      << Fmt("%.3f", lags_ms.back()) << " ms.";
  }
  o << "</p>\n<table class=\"events\"><tr><th>event</th><th>step</th><th>kind</th>"
       "<th>target</th><th>planned (s)</th><th>applied (s)</th><th>lag (ms)</th><th>error</th>"
       "</tr>\n";
  const size_t shown = std::min(in.events.size(), opt.max_event_rows);
  for (size_t i = 0; i < shown; ++i) {
    const EventRow& r = in.events[i];
    const char* cls = !r.error.empty() ? "fail" : r.applied_ns ? "ok" : "running";
    o << "<tr class=\"" << cls << "\"><td class=\"n\">" << r.event_index << "</td><td class=\"n\">"
      << r.step << "</td><td>" << HtmlEscape(r.kind) << "</td><td>" << HtmlEscape(r.target)
      << "</td><td class=\"n\">" << Sec(static_cast<double>(r.planned_ns) / 1e9)
      << "</td><td class=\"n\">"
      << (r.applied_ns ? Sec(static_cast<double>(*r.applied_ns) / 1e9) : "not reached")
      << "</td><td class=\"n\">"
      << (r.applied_ns ? Fmt("%.3f", static_cast<double>(*r.applied_ns - r.planned_ns) / 1e6)
                       : "")
      << "</td><td>" << HtmlEscape(r.error) << "</td></tr>\n";
  }
  o << "</table>\n";
  if (in.events.size() > shown) {
    o << "<p class=\"note\"><strong>" << (in.events.size() - shown)
      << " more</strong> event actions not shown; see <a href=\"events.csv\">events.csv</a>.</p>\n";
  }
}

void LinePlot(std::ostringstream& o, const ReportPlot& plot, const TimeAxis& ax) {
  double ymax = 0;
  for (const auto& s : plot.series) {
    for (const auto& p : s.points) ymax = std::max(ymax, p.second);
  }
  const Scale sc = ScaleFor(plot.unit, ymax);
  const double smax = ymax / sc.divisor;
  const double step = NiceStep(smax > 0 ? smax : 1, 5);
  const double top = std::max(step, std::ceil(smax / step - 1e-9) * step);
  const double x0 = kL, x1 = kW - kR, y0 = kT, y1 = kH - kB;
  const double kx = (x1 - x0) / (ax.max - ax.min);
  const double ky = (y1 - y0) / top;
  auto X = [&](double s) { return x0 + (std::clamp(s, ax.min, ax.max) - ax.min) * kx; };
  auto Y = [&](double v) { return y1 - std::clamp(v / sc.divisor, 0.0, top) * ky; };

  o << "<h3>" << HtmlEscape(plot.title) << "</h3>\n";
  o << "<svg class=\"plot\" data-plot=\"" << HtmlEscape(plot.id)
    << "\" xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 " << Px(kW) << " " << Px(kH)
    << "\" width=\"" << Px(kW) << "\" height=\"" << Px(kH) << "\">\n";
  DrawTimeAxis(o, ax, x0, x1, y0, y1);
  const int n = static_cast<int>(std::llround(top / step));
  for (int i = 0; i <= n; ++i) {
    const double v = i * step;
    const double y = y1 - v * ky;
    o << "<line class=\"grid\" x1=\"" << Px(x0) << "\" y1=\"" << Px(y) << "\" x2=\"" << Px(x1)
      << "\" y2=\"" << Px(y) << "\"/><text class=\"tick\" x=\"" << Px(x0 - 6) << "\" y=\""
      << Px(y + 4) << "\" text-anchor=\"end\">" << TickLabel(v, step) << "</text>";
  }
  o << "<text class=\"axis\" transform=\"translate(14 " << Px((y0 + y1) / 2)
    << ") rotate(-90)\" text-anchor=\"middle\">" << HtmlEscape(plot.quantity) << " ("
    << HtmlEscape(sc.unit) << ")</text>\n";
  o << "<rect class=\"frame area\" x=\"" << Px(x0) << "\" y=\"" << Px(y0) << "\" width=\""
    << Px(x1 - x0) << "\" height=\"" << Px(y1 - y0) << "\"/>\n";
  for (size_t i = 0; i < plot.series.size(); ++i) {
    const ReportSeries& s = plot.series[i];
    const char* color = kPalette[i % kPaletteSize];
    o << "<polyline data-series=\"" << HtmlEscape(s.name) << "\" stroke=\"" << color
      << "\" fill=\"none\" points=\"";
    for (size_t j = 0; j < s.points.size(); ++j) {
      o << (j ? " " : "") << Px(X(s.points[j].first)) << "," << Px(Y(s.points[j].second));
    }
    o << "\"><title>" << HtmlEscape(s.name) << "</title></polyline>\n";
    if (s.points.size() == 1) {
      o << "<circle cx=\"" << Px(X(s.points[0].first)) << "\" cy=\"" << Px(Y(s.points[0].second))
        << "\" r=\"2.5\" fill=\"" << color << "\"/>\n";
    }
  }
  o << "</svg>\n<ul class=\"legend\">\n";
  for (size_t i = 0; i < plot.series.size(); ++i) {
    o << "<li><span class=\"sw\" style=\"background:" << kPalette[i % kPaletteSize]
      << "\"></span>" << HtmlEscape(plot.series[i].name) << "</li>\n";
  }
  o << "</ul>\n";
  if (plot.candidates > plot.series.size()) {
    const char* by = plot.id == "throughput" ? "bytes sent"
                     : plot.id == "drops"    ? "packets dropped"
                     : plot.id == "cpu"      ? "CPU time"
                                             : "peak memory";
    o << "<p class=\"note\">Showing the top " << plot.series.size() << " of " << plot.candidates
      << " series by " << by << "; <a href=\"metrics.csv\">metrics.csv</a> has all.</p>\n";
  }
}

}  // namespace

std::string HtmlEscape(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

int64_t ReportOriginNs(const ResultsInput& in) {
  if (in.start_unix_ns != 0) return in.start_unix_ns;
  std::optional<int64_t> first;
  auto take = [&](int64_t t) { first = first ? std::min(*first, t) : t; };
  for (const auto& t : in.tasks) {
    if (t.start_unix_ns) take(*t.start_unix_ns);
  }
  for (const auto& m : in.metrics) take(m.unix_ns);
  return first.value_or(0);
}

std::vector<ReportPlot> BuildReportPlots(const ResultsInput& in, const ReportOptions& options) {
  const int64_t origin = ReportOriginNs(in);
  // (subject, direction) -> samples; drops: time -> loss + queue.
  using Key = std::pair<std::string, std::string>;
  std::map<Key, std::vector<std::pair<int64_t, double>>> tx;
  std::map<Key, std::map<int64_t, double>> drops;
  std::map<std::string, std::vector<std::pair<int64_t, double>>> cpu, mem;
  for (const auto& m : in.metrics) {
    if (!std::isfinite(m.value)) continue;
    if (m.name == "cpu_seconds") {
      cpu[m.subject].emplace_back(m.unix_ns, m.value);
    } else if (m.name == "memory_bytes") {
      mem[m.subject].emplace_back(m.unix_ns, m.value);
    } else {
      auto [dir, base] = SplitDirection(m.name);
      if (base == "tx_bytes") {
        tx[{m.subject, dir}].emplace_back(m.unix_ns, m.value);
      } else if (!base.empty()) {
        drops[{m.subject, dir}][m.unix_ns] += m.value;
      }
    }
  }
  auto sorted = [](std::vector<std::pair<int64_t, double>> v) {
    std::stable_sort(v.begin(), v.end(),
                     [](const auto& a, const auto& b) { return a.first < b.first; });
    return v;
  };
  auto link_name = [](const Key& k) { return k.second.empty() ? k.first : k.first + " " + k.second; };

  std::vector<ReportPlot> plots;
  if (!tx.empty()) {
    ReportPlot p{"throughput", "Throughput per link direction", "throughput",
                 ReportUnit::kBitsPerSecond, {}, 0};
    std::vector<ReportSeries> all;
    for (const auto& [k, v] : tx) {
      ReportSeries s;
      s.name = link_name(k);
      s.points = Rates(sorted(v), origin, 8.0, &s.total);
      all.push_back(std::move(s));
    }
    Finish(p, std::move(all), options);
    if (!p.series.empty()) plots.push_back(std::move(p));
  }
  if (!drops.empty()) {
    ReportPlot p{"drops", "Drops per link direction (loss and queue)", "drops",
                 ReportUnit::kPacketsPerSecond, {}, 0};
    std::vector<ReportSeries> all;
    for (const auto& [k, v] : drops) {
      ReportSeries s;
      s.name = link_name(k);
      s.points = Rates(std::vector<std::pair<int64_t, double>>(v.begin(), v.end()), origin, 1.0,
                       &s.total);
      if (s.total > 0) all.push_back(std::move(s));
    }
    if (!all.empty()) {
      Finish(p, std::move(all), options);
      plots.push_back(std::move(p));
    }
  }
  if (!cpu.empty()) {
    ReportPlot p{"cpu", "CPU per vnode", "CPU", ReportUnit::kCores, {}, 0};
    std::vector<ReportSeries> all;
    for (const auto& [vnode, v] : cpu) {
      ReportSeries s;
      s.name = vnode;
      s.points = Rates(sorted(v), origin, 1.0, &s.total);
      all.push_back(std::move(s));
    }
    Finish(p, std::move(all), options);
    if (!p.series.empty()) plots.push_back(std::move(p));
  }
  if (!mem.empty()) {
    ReportPlot p{"memory", "Memory per vnode", "memory", ReportUnit::kBytes, {}, 0};
    std::vector<ReportSeries> all;
    for (const auto& [vnode, v] : mem) {
      ReportSeries s;
      s.name = vnode;
      int64_t last = std::numeric_limits<int64_t>::min();
      for (const auto& [t, value] : sorted(v)) {
        if (t == last) continue;
        last = t;
        s.points.emplace_back(RelS(t, origin), value);
        s.total = std::max(s.total, value);
      }
      all.push_back(std::move(s));
    }
    Finish(p, std::move(all), options);
    plots.push_back(std::move(p));
  }
  return plots;
}

std::string RenderReportHtml(const ResultsInput& in, const std::string& dir,
                             const ReportOptions& opt) {
  const int64_t origin = ReportOriginNs(in);
  const auto plots = BuildReportPlots(in, opt);

  // One time axis for the Gantt chart and every plot, so that they line up.
  double lo = 0, hi = 0;
  auto take = [&](double s) {
    lo = std::min(lo, s);
    hi = std::max(hi, s);
  };
  if (origin != 0) {
    if (in.end_unix_ns) take(RelS(in.end_unix_ns, origin));
    for (const auto& t : in.tasks) {
      if (t.start_unix_ns) take(RelS(*t.start_unix_ns, origin));
      if (t.end_unix_ns) take(RelS(*t.end_unix_ns, origin));
    }
  }
  for (const auto& p : plots) {
    for (const auto& s : p.series) {
      for (const auto& pt : s.points) take(pt.first);
    }
  }
  if (hi <= lo) {
    hi = lo + std::max(1.0, static_cast<double>(in.experiment.duration.count()) / 1e9);
  }
  const TimeAxis ax = MakeTimeAxis(lo, hi);

  std::ostringstream o;
  o << "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
    << "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
    << "<title>gridemu report: " << HtmlEscape(in.experiment.name) << " ("
    << HtmlEscape(in.experiment.id) << ")</title>\n<style>" << kCss << "</style>\n</head>\n<body>\n";
  Overview(o, in);

  o << "<h2 id=\"tasks\">Tasks</h2>\n";
  if (in.tasks.empty()) {
    o << "<p class=\"note\">The experiment has no task instances.</p>\n";
  } else {
    TaskSummaryTable(o, in.tasks);
    if (origin != 0) Gantt(o, in, origin, ax, opt);
    TaskTable(o, in, origin, dir, opt);
  }

  o << "<h2 id=\"events\">Timeline events</h2>\n";
  if (in.events.empty()) {
    o << "<p class=\"note\">No timeline events.</p>\n";
  } else {
    Events(o, in, opt);
  }

  o << "<h2 id=\"metrics\">Metrics</h2>\n";
  if (plots.empty()) {
    o << "<p class=\"note\">No metrics were recorded";
    if (!in.metrics.empty()) o << " that can be plotted";
    o << ".</p>\n";
  } else {
    o << "<p class=\"note\">" << in.metrics.size()
      << " samples (<a href=\"metrics.csv\">metrics.csv</a>). Counters are shown as rates "
         "between consecutive samples.</p>\n";
    for (const auto& p : plots) LinePlot(o, p, ax);
  }

  if (!in.collected_files.empty()) {
    o << "<h2 id=\"files\">Collected files</h2>\n<ul>\n";
    const size_t shown = std::min<size_t>(in.collected_files.size(), 200);
    for (size_t i = 0; i < shown; ++i) {
      const std::string& f = in.collected_files[i];
      o << "<li><a href=\"" << HtmlEscape(UrlPath(f)) << "\">" << HtmlEscape(f) << "</a></li>\n";
    }
    o << "</ul>\n";
    if (in.collected_files.size() > shown) {
      o << "<p class=\"note\"><strong>" << (in.collected_files.size() - shown)
        << " more</strong> (manifest.json lists all).</p>\n";
    }
  }

  if (!in.transitions.empty()) {
    o << "<h2 id=\"lifecycle\">Lifecycle</h2>\n<table><tr><th>time</th><th>from</th><th>to</th>"
         "<th>reason</th></tr>\n";
    for (const auto& t : in.transitions) {
      o << "<tr><td>" << FormatUnixTime(t.unix_ns) << "</td><td>"
        << (t.from ? std::string(ExperimentStateName(*t.from)) : "") << "</td><td>"
        << ExperimentStateName(t.to) << "</td><td>" << HtmlEscape(t.reason) << "</td></tr>\n";
    }
    o << "</table>\n";
  }

  o << "<p class=\"note\">Generated by gridemu " << HtmlEscape(in.gridemu_version)
    << ". Data: <a href=\"manifest.json\">manifest.json</a>, <a href=\"tasks.csv\">tasks.csv</a>, "
       "<a href=\"events.csv\">events.csv</a>, <a href=\"metrics.csv\">metrics.csv</a>, "
       "<a href=\"summary.txt\">summary.txt</a>.</p>\n</body>\n</html>\n";
  return o.str();
}

}  // namespace gridemu::controller

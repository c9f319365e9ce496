// report.html of a results directory (DESIGN.md §10; results.h lists the
// other files). WriteResults() writes it next to summary.txt, from the same
// ResultsInput.
//
// The page is self-contained: inline CSS, inline SVG drawn here, no script,
// no external resource (it opens offline, from a copied directory). Links go
// only to files of the results directory itself (tasks.csv, task outputs,
// collected files), relative to it.
//
// Content, top to bottom:
//   - the experiment: name, id, slice, file and SHA-256, seed, gridemu
//     version, final state and reason, submitted/start/end times and the run
//     length, the placement summary (algorithm, pnodes used, vnodes per pnode,
//     cross-pnode links and their rate, imbalance) and the pnodes, lost vnodes
//     and notes, when present;
//   - tasks: the per-task summary (SummarizeTasks()), a Gantt-like SVG (one
//     row per task instance, at most ReportOptions::max_gantt_rows, "N more"
//     below) and the instance table (state, outcome, exit code, signal,
//     start/end/duration, reason, output links; failed instances highlighted;
//     at most ReportOptions::max_table_rows);
//   - timeline events: planned vs applied time and the lag (applied -
//     planned), errors highlighted, max and median lag;
//   - metrics plots (BuildReportPlots()): throughput per link direction
//     (bit/s), drops per link direction (packets/s), CPU per vnode (cores),
//     memory per vnode (bytes, scaled to KiB/MiB/GiB); at most
//     ReportOptions::max_series series each, "showing N of M" when capped;
//   - collected files and lifecycle transitions.
//
// Times on the page are seconds from the experiment start (the moment it
// entered `running`, ResultsInput::start_unix_ns); when it never ran, from
// the earliest time recorded (task start or metric sample).
//
// Every string that comes from the experiment or the agents (names, targets,
// reasons, errors, paths) goes through HtmlEscape(); the page has no script,
// so nothing in an experiment can run in the reader's browser.
//
// Thread-safety: pure functions of their arguments.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "gridemu/controller/results.h"

namespace gridemu::controller {

/// Limits of report.html, so that a run with thousands of task instances or
/// links still gives a page a browser opens quickly.
struct ReportOptions {
  /// Rows of the Gantt chart (task instances with a known start); the rest
  /// is "N more". Failed instances are kept first when there are more.
  size_t max_gantt_rows = 200;
  /// Rows of the task instance table; same selection as the Gantt chart.
  size_t max_table_rows = 1000;
  /// Rows of the events table; the rest is "N more" (events.csv has all).
  size_t max_event_rows = 500;
  /// Series per metrics plot: the top ones by total (throughput: bytes sent,
  /// drops: packets dropped, CPU: CPU seconds, memory: peak bytes).
  size_t max_series = 10;
  /// Points per series; longer series are averaged into this many time
  /// buckets (a polyline wider than the plot in pixels shows nothing more).
  size_t max_points = 1000;
};

/// How a plot's values are scaled and labelled.
enum class ReportUnit {
  kBitsPerSecond,    ///< shown in bit/s, kbit/s, Mbit/s, Gbit/s or Tbit/s
  kPacketsPerSecond, ///< shown as is
  kCores,            ///< CPU seconds per second; shown as is
  kBytes,            ///< shown in B, KiB, MiB, GiB or TiB
};

/// One line of a plot.
struct ReportSeries {
  /// Link and direction ("h1--r forward"; the link alone when the agent gave
  /// no direction) or vnode name. Not escaped.
  std::string name;
  /// (seconds from the report's origin, value in the plot's base unit:
  /// bit/s, packets/s, cores or bytes), in increasing time.
  std::vector<std::pair<double, double>> points;
  /// What the series is ranked by (see ReportOptions::max_series): bytes
  /// sent, packets dropped, CPU seconds or peak bytes.
  double total = 0;
};

/// One metrics plot.
struct ReportPlot {
  std::string id;     ///< "throughput", "drops", "cpu", "memory"
  std::string title;  ///< e.g. "Throughput per link direction"
  std::string quantity;  ///< y axis label without unit, e.g. "throughput"
  ReportUnit unit = ReportUnit::kBitsPerSecond;
  /// The plotted series, highest total first (ties: by name).
  std::vector<ReportSeries> series;
  size_t candidates = 0;  ///< series there were before the cap
};

/// Escapes `s` for HTML text and attribute values: & < > " ' become
/// entities; everything else is copied byte for byte.
std::string HtmlEscape(std::string_view s);

/// The origin of the report's times: `input.start_unix_ns` when set, else
/// the earliest task start or metric sample; 0 when there is none.
int64_t ReportOriginNs(const ResultsInput& input);

/// The metrics plots of `input.metrics`, in the order throughput, drops, cpu,
/// memory; a plot is left out when its metrics are absent (no samples of
/// "[<direction>_]tx_bytes", "[<direction>_]dropped_loss"/"dropped_queue",
/// "cpu_seconds", "memory_bytes", or a single sample per subject of a
/// counter), and the drops plot also when nothing was dropped. Counters (tx_bytes, drops, cpu_seconds) become rates between
/// consecutive samples of one subject, placed at the later sample; a counter
/// that went down (an agent restarted) counts from 0. Samples with equal
/// times or non-finite values are skipped. At most `options.max_series`
/// series per plot and `options.max_points` points per series.
std::vector<ReportPlot> BuildReportPlots(const ResultsInput& input,
                                         const ReportOptions& options = {});

/// The whole report.html page for `input`, written to results directory
/// `dir` (used only to make task output paths under it relative links; may
/// be empty). Works for any input: no tasks, no events, no metrics, a run
/// that never started.
std::string RenderReportHtml(const ResultsInput& input, const std::string& dir,
                             const ReportOptions& options = {});

}  // namespace gridemu::controller

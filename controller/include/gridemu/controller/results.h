// The results directory of a run (DESIGN.md §10):
//
//   <base>/<experiment>-<UTC timestamp>/       e.g. results/ping-20240501T120000Z/
//     manifest.json      gridemu version, experiment file, its SHA-256, seed, per
//                        pnode kernel and shaping backend, placement summary, final
//                        state and reason, start and end times, collection problems
//     experiment.yaml    the submitted file, byte for byte
//     summary.txt        the table `gridemu run` prints at the end
//     tasks.csv          task_id,task,index,vnode,state,start,end,duration,exit_code,signal,reason
//     tasks/<task>/<index>.stdout, .stderr
//     events.csv         event,step,kind,target,planned,applied,lateness,error
//     metrics.csv        time,unix_ns,subject,metric,value
//     files/<vnode>/...  what `collect.files` names (everything under $GRIDEMU_OUT
//                        when it names nothing)
//     report.html        a self-contained page (inline CSS and SVG, no script, no
//                        external resource) of the same data: overview, placement,
//                        task table and Gantt chart, events with their lag, plots
//                        of throughput, drops, CPU and memory (controller/src/
//                        report_html.h)
//
// Times in the CSV files are seconds from the experiment start (the moment it
// entered `running`) with microsecond precision; empty when unknown.
// Thread-safety: the functions share nothing; two calls on one directory must
// not overlap.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "gridemu/common/status.h"
#include "gridemu/controller/store.h"
#include "gridemu/experiments/experiment.h"

namespace gridemu::controller {

/// What a pnode ran the experiment with (from its AgentHello).
struct PnodeReport {
  std::string host_id;
  std::string address;
  std::string kernel_release;
  std::string shaping_backend;  ///< the active one
  std::string agent_version;
  uint64_t vnodes = 0;  ///< placed on it
};

/// One dispatched (or never dispatched) event action: a row of events.csv.
struct EventRow {
  uint32_t event_index = 0;
  uint32_t step = 0;  ///< churn step, else 0
  std::string kind;   ///< ActionKindName(), e.g. "link-set", "node-kill"
  std::string target;
  int64_t planned_ns = 0;  ///< from the experiment start
  std::optional<int64_t> applied_ns;
  std::string error;
};

/// Everything WriteResults() writes.
struct ResultsInput {
  std::string gridemu_version;
  ExperimentRecord experiment;  ///< with yaml
  std::vector<TransitionRecord> transitions;
  std::vector<TaskRecord> tasks;
  std::vector<EventRow> events;
  std::vector<MetricSample> metrics;
  std::vector<PnodeReport> pnodes;
  std::optional<PlacementSummary> placement;
  ExperimentState final_state = ExperimentState::kFinished;
  std::string final_reason;
  /// Unix time the experiment entered running (0 = it never ran); times in
  /// the CSV files are relative to it.
  int64_t start_unix_ns = 0;
  int64_t end_unix_ns = 0;
  /// Files copied by CollectFiles(), relative to the results directory.
  std::vector<std::string> collected_files;
  /// Problems met while collecting or tearing down, one sentence each.
  std::vector<std::string> notes;
};

/// Creates `<base>/<name>-<UTC timestamp>` ("ping-20240501T120000Z"; "-2",
/// "-3" ... appended when taken) with its parents; returns its path.
/// Errors: kUnavailable when it cannot be created (the message has errno's text).
Result<std::string> MakeResultsDir(const std::string& base, const std::string& name,
                                   int64_t unix_ns);

/// The directory where vnode `vnode` wrote $GRIDEMU_OUT when the shards'
/// output_dir was `out_root`: `<out_root>/<vnode>`.
std::string VnodeOutDir(const std::string& out_root, const std::string& vnode);

/// Copies each task instance's stdout and stderr (their recorded paths) to
/// `dir`/tasks/<task>/<index>.stdout|.stderr and points the records at the
/// copies. A missing source is a note, not an error. Returns the updates to
/// store (paths), one per task instance copied.
std::vector<TaskUpdate> CollectTaskOutputs(const std::string& dir, std::vector<TaskRecord>& tasks,
                                           std::vector<std::string>* notes);

/// Copies what `collect.files` names from each vnode's $GRIDEMU_OUT (under
/// `out_root`) to `dir`/files/<vnode>/... A pattern must start with
/// $GRIDEMU_OUT (or ${GRIDEMU_OUT}); the rest is a glob(7) pattern, a matched
/// directory is copied whole. An empty `collect.files` copies all of
/// $GRIDEMU_OUT. Patterns that are not under $GRIDEMU_OUT are notes ("only
/// files under $GRIDEMU_OUT can be collected"). Returns the copied files,
/// relative to `dir`. Files whose path is in `exclude` (e.g. task outputs,
/// which go to tasks/) are skipped.
std::vector<std::string> CollectFiles(const std::string& dir,
                                      const experiments::Experiment& experiment,
                                      const std::string& out_root,
                                      const std::set<std::string>& exclude,
                                      std::vector<std::string>* notes);

/// Writes manifest.json, experiment.yaml, tasks.csv, events.csv, metrics.csv,
/// summary.txt and report.html into `dir` (which must exist). kUnavailable
/// naming the file when one cannot be written.
Status WriteResults(const std::string& dir, const ResultsInput& input);

/// Per-task summary of instances, for summary.txt and `gridemu run`.
struct TaskSummary {
  std::string task;
  size_t instances = 0;
  size_t ok = 0;      ///< exited with code 0
  size_t failed = 0;  ///< ended otherwise (non-zero code, signal, failed start, lost)
  /// Killed because the run was over (not waited for, still running at the
  /// end): neither ok nor failed.
  size_t stopped = 0;
  size_t not_ended = 0;  ///< pending, starting or running
  bool wait = false;
  /// Durations of ended instances with known start and end.
  std::optional<std::chrono::nanoseconds> min, median, max;
  /// exit code (or "sig N", "failed", "lost", "pending") -> instances.
  std::map<std::string, size_t> outcomes;
};
/// True when the instance was killed by the controller because the run was
/// over (its reason starts with kStoppedAtEndReason).
bool StoppedAtEnd(const TaskRecord& task);
/// How a task instance ended, for tables: "exit 0", "signal 9", "failed to
/// start", "lost", "stopped at end", or its state name while not ended.
std::string TaskOutcome(const TaskRecord& task);
/// The reason prefix of instances killed at the end of a run.
inline constexpr std::string_view kStoppedAtEndReason = "stopped at the end of the run";

/// Tasks in first-appearance order of `tasks`.
std::vector<TaskSummary> SummarizeTasks(const std::vector<TaskRecord>& tasks);

/// True when every waited instance exited with code 0 (vacuously true
/// without waited tasks).
bool WaitedTasksSucceeded(const std::vector<TaskRecord>& tasks);

/// The summary table: one line per task (instances, ok, failed, duration
/// min/median/max, outcomes), then totals.
std::string FormatTaskTable(const std::vector<TaskSummary>& summary);

/// Lines of summary.txt: experiment, state and reason, times, the task table,
/// events applied/failed, the results directory.
std::string FormatSummary(const ResultsInput& input, const std::string& dir);

/// RFC 3339 UTC with milliseconds: "2024-05-01T12:00:00.123Z".
std::string FormatUnixTime(int64_t unix_ns);

}  // namespace gridemu::controller

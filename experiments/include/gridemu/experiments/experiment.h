// The experiment model (DESIGN.md §3): what to build (a topology), what to
// run on it (tasks), what happens when (events) and what to keep (collect).
// Produced by ParseExperiment() (parse.h), already validated and resolved:
// every task and event names existing vnodes and links by id. Plain value
// types; thread-compatible.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "gridemu/common/diagnostics.h"
#include "gridemu/common/link_profile.h"
#include "gridemu/topology/model.h"

namespace gridemu::experiments {

using topology::LinkId;
using topology::VnodeId;

/// When a task runs again on a vnode that comes back (start, or churn's return).
enum class TaskRestart {
  kNever,        ///< `restart: never` (the default of a task with `at`)
  kOnNodeStart,  ///< `restart: on-node-start` (the default of a task without `at`)
};

/// How long a stopped task has between SIGTERM and SIGKILL unless `stop_grace:` says.
inline constexpr std::chrono::seconds kDefaultStopGrace{3};

/// One `workload:` entry: a program started on every vnode its selector names.
struct Task {
  std::string name;                     ///< unique among tasks; [a-z0-9_.-], 1-63 characters
  std::string on;                       ///< selector text: "tracker", "peers", "peers[1:]"; a list
                                        ///< of selectors is kept joined by ", "
  std::vector<VnodeId> targets;         ///< resolved `on`, in group-index order
  std::chrono::nanoseconds at{0};       ///< start of the first target, from the experiment start
  std::chrono::nanoseconds stagger{0};  ///< target i starts at `at + i * stagger`
  std::optional<std::string> run;       ///< a shell command (run with /bin/sh -c) ...
  std::vector<std::string> argv;        ///< ... or an argument vector (exactly one is set)
  bool wait = false;                    ///< the experiment ends when every waited task ends
  std::optional<std::chrono::nanoseconds> timeout;  ///< kill a target's process after this long
  std::map<std::string, std::string> env;           ///< extra environment variables
  /// Stopping the task (the end of the run, a `stop` node action) sends SIGTERM to
  /// every process of it, then SIGKILL to what is left after this long (0: at once).
  /// `kill` and a timeout send SIGKILL at once.
  std::chrono::nanoseconds stop_grace = kDefaultStopGrace;
  /// Whether a vnode that comes back runs it again, as a new instance.
  TaskRestart restart = TaskRestart::kNever;
  SourceLoc loc;                                    ///< the task's entry in the file

  /// Start time of targets[i]: at + i * stagger.
  std::chrono::nanoseconds StartTimeOf(size_t i) const {
    return at + stagger * static_cast<int64_t>(i);
  }
};

enum class EventKind {
  kLinkSet,     ///< change some profile parameters of a link, in place
  kLinkDown,    ///< take a link down (both directions)
  kLinkUp,      ///< bring a link back up
  kNodeAction,  ///< signal or freeze vnodes
  kChurn,       ///< take random group members down and back up, at a rate
};

/// kill: SIGKILL every process and stop the vnode; stop: SIGTERM to its tasks,
/// SIGKILL after each one's stop_grace, then stop; start: start a stopped vnode
/// (its tasks with restart on-node-start run again); freeze / thaw: the cgroup
/// freezer.
enum class NodeAction { kKill, kStop, kStart, kFreeze, kThaw };

std::string_view EventKindName(EventKind k);    ///< "link-set", "link-down", ...
std::string_view NodeActionName(NodeAction a);  ///< "kill", "stop", "start", "freeze", "thaw"
/// Parses a NodeActionName(); kInvalidArgument listing the choices.
Result<NodeAction> ParseNodeAction(std::string_view s);

/// Churn: members of `group` go down (as `kill`) at random, as a Poisson
/// process of `rate_per_s` failures per second over the group, each staying
/// down for `down_for` before being started again; from the event's `at`
/// until `until` (or the end of the experiment). Random choices derive from
/// the experiment seed.
struct Churn {
  std::string group;
  double rate_per_s = 0;                          ///< failures per second (> 0)
  std::chrono::nanoseconds down_for{0};           ///< > 0
  std::optional<std::chrono::nanoseconds> until;  ///< from the experiment start; > at
};

/// One `events:` entry.
struct Event {
  std::chrono::nanoseconds at{0};  ///< from the experiment start; < duration
  EventKind kind = EventKind::kLinkSet;
  // Link events (kLinkSet, kLinkDown, kLinkUp).
  std::string link;    ///< the link's name as written ("tracker--core")
  LinkId link_id = 0;  ///< resolved
  /// kLinkSet: the parameters to change, per direction of the link as stored
  /// in the topology (forward = Link::a -> Link::b, even when the event wrote
  /// the name as "b--a"). Unset fields are left as they are.
  LinkProfile forward;
  LinkProfile reverse;
  // Node events (kNodeAction).
  std::string nodes;  ///< selector text
  NodeAction action = NodeAction::kKill;
  /// kNodeAction: resolved `nodes`; kChurn: the group's members.
  std::vector<VnodeId> targets;
  // kChurn.
  Churn churn;
  SourceLoc loc;
};

/// `collect:`.
struct Collect {
  bool metrics = false;  ///< per-link tx/rx/drops, per-vnode cpu/memory
  std::chrono::nanoseconds metrics_interval = std::chrono::seconds(1);
  std::vector<std::string> files;  ///< globs, e.g. "$GRIDEMU_OUT/*"
};

enum class PnodeFailurePolicy {
  kFail,      ///< a pnode lost mid-run fails the experiment (default)
  kContinue,  ///< its vnodes are marked lost; the run goes on
};

/// A whole experiment file.
struct Experiment {
  std::string name;                      ///< required; [a-z0-9-], 1-63 characters
  std::string slice = "default";         ///< same charset
  uint64_t seed = 1;                     ///< every random choice derives from it
  std::chrono::nanoseconds duration{0};  ///< required, > 0; the hard stop
  std::string description;
  PnodeFailurePolicy on_pnode_failure = PnodeFailurePolicy::kFail;
  topology::Topology topology;
  std::vector<Task> tasks;    ///< in file order
  std::vector<Event> events;  ///< sorted by `at`; file order among equal times
  Collect collect;
  /// Directory of files shipped with the experiment (`shared:`, resolved
  /// against the experiment file's directory); "" when none. A run copies it
  /// into the results directory, runs `prepare` there, and mounts the copy
  /// read-only at GRIDEMU_SHARED in every vnode.
  std::string shared_dir;
  /// Shell commands run on the host before deployment, in order, in the
  /// run's copy of the shared directory (e.g. make a file and its torrent).
  /// Like `analyze`, only `gridemu run` executes them; a shared controller
  /// refuses experiments that have any.
  std::vector<std::string> prepare;
  /// Shell commands run on the host (not in a vnode) after the results are
  /// collected, in order, with the results directory as working directory and
  /// GRIDEMU_RESULTS, GRIDEMU_EXPERIMENT_FILE and GRIDEMU (the gridemu binary)
  /// in the environment; their stdout is appended to the run's summary.
  std::vector<std::string> analyze;
  std::string source_path;  ///< the file name given to the parser
  std::string source_text;  ///< the YAML text, as submitted
};

/// True for an experiment or slice name: 1-63 characters of [a-z0-9-].
bool IsValidExperimentName(std::string_view name);

}  // namespace gridemu::experiments

// The timeline of a run (DESIGN.md §3, §8): when each task instance starts,
// when each event is applied (churn expanded into single node actions), and
// when the run is over. Pure planning: an Experiment goes in, sorted actions
// come out; no I/O, no clock. Thread-safe (no shared state).
//
// Times are offsets from the experiment start (the moment the run enters
// state `running`), as std::chrono::nanoseconds.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "gridemu/common/status.h"
#include "gridemu/experiments/experiment.h"
#include "gridemu/v1/agent.pb.h"

namespace gridemu::controller {

/// One task instance: task `task` started on its `index`-th target.
struct TaskInstance {
  std::string task_id;                ///< "<task name>/<index>", e.g. "leech/7"
  size_t task = 0;                    ///< index into Experiment::tasks
  uint32_t index = 0;                 ///< position in the task's targets
  topology::VnodeId vnode = 0;        ///< the target
  std::chrono::nanoseconds start{0};  ///< at + index * stagger
  bool wait = false;
  std::optional<std::chrono::nanoseconds> timeout;
};

/// One ApplyEvent to dispatch: an `events:` entry, or one step of a churn.
struct EventAction {
  uint32_t event_index = 0;  ///< position in Experiment::events (= EventRecord::index)
  uint32_t step = 0;         ///< 0 for plain events; the k-th action of a churn
  /// "<event index>" for plain events, "<event index>.<step>" for churn steps.
  std::string event_id;
  std::chrono::nanoseconds at{0};
  /// kLinkSet, kLinkDown, kLinkUp or kNodeAction (churn steps are node actions).
  experiments::EventKind kind = experiments::EventKind::kLinkSet;
  topology::LinkId link = 0;                                        ///< link events
  experiments::NodeAction action = experiments::NodeAction::kKill;  ///< node events
  std::vector<topology::VnodeId> vnodes;                            ///< node events
  bool from_churn = false;
};

/// The whole plan of a run.
struct Timeline {
  /// Every task instance, sorted by (start, task file order, index).
  std::vector<TaskInstance> tasks;
  /// Every action, sorted by (at, event index, step).
  std::vector<EventAction> events;
  std::chrono::nanoseconds duration{0};
  size_t waited = 0;  ///< task instances with wait: true
};

/// Limits of BuildTimeline().
struct TimelineOptions {
  /// Most actions one churn event may expand to (kill + start count as two);
  /// more is kResourceExhausted naming the event.
  size_t max_churn_actions = 1'000'000;
};

/// Plans the run. Churn events are expanded by ExpandChurn().
/// Errors: kInvalidArgument when a task or event refers to a vnode or link
/// that the topology does not have; kResourceExhausted (see TimelineOptions).
Result<Timeline> BuildTimeline(const experiments::Experiment& experiment,
                               const TimelineOptions& options = {});

/// Expands the churn event `event` (kind kChurn, at position `event_index`):
/// failures arrive as a Poisson process of rate churn.rate_per_s over the
/// group, from `event.at` until churn.until (or `end`, the experiment's
/// duration); each picks a member that is up, uniformly, and kills it; the
/// member is started again after churn.down_for (when that is before `end`).
/// When every member is down a failure is skipped. Deterministic: the random
/// stream is Rng::ForStream(seed, "churn/<event index>"). Steps are numbered
/// in time order; a kill and a start at the same time keep kill first.
Result<std::vector<EventAction>> ExpandChurn(const experiments::Event& event, uint32_t event_index,
                                             uint64_t seed, std::chrono::nanoseconds end,
                                             size_t max_actions = 1'000'000);

/// The wire form of an action (ApplyEvent.event_id = action.event_id). Link
/// events name the link as Topology::LinkName() writes it; kLinkSet carries
/// the profile changes of both directions. `vnodes` restricts a node action
/// to those vnodes (empty = all of action.vnodes), for a per-pnode split.
v1::ApplyEvent ToApplyEvent(const experiments::Experiment& experiment, const EventAction& action,
                            const std::vector<topology::VnodeId>& vnodes = {});

/// What an action does on `target`, for events.csv: the link's name, or the
/// vnode names joined by ' ' (at most 8, then "... (+N)").
std::string ActionTarget(const experiments::Experiment& experiment, const EventAction& action);
/// "link-set", "link-down", "link-up", "node-kill", "node-start", ...
std::string ActionKindName(const EventAction& action);

/// Why a run is over, if it is.
enum class EndReason {
  kNotYet,
  kDuration,          ///< `duration` elapsed
  kWaitedTasksEnded,  ///< every `wait: true` task instance ended
};
/// "not yet", "duration reached", "every waited task ended".
std::string_view EndReasonText(EndReason r);

/// The end condition: the duration is a hard stop; otherwise the run ends
/// when at least one instance is waited for and all of them have ended.
EndReason CheckEnd(std::chrono::nanoseconds elapsed, std::chrono::nanoseconds duration,
                   size_t waited_total, size_t waited_ended);

}  // namespace gridemu::controller

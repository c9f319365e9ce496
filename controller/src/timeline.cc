// The timeline of a run: task instance start times, events (churn expanded)
// and the end condition. See timeline.h.

#include "gridemu/controller/timeline.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "gridemu/common/random.h"
#include "gridemu/controller/shard_builder.h"

namespace gridemu::controller {

namespace {

using experiments::EventKind;
using experiments::NodeAction;
using std::chrono::nanoseconds;

}  // namespace

Result<std::vector<EventAction>> ExpandChurn(const experiments::Event& event, uint32_t event_index,
                                             uint64_t seed, nanoseconds end, size_t max_actions) {
  const experiments::Churn& churn = event.churn;
  if (churn.rate_per_s <= 0 || !std::isfinite(churn.rate_per_s)) {
    return InvalidArgumentError("event " + std::to_string(event_index) +
                                ": churn rate must be a positive number of failures per second");
  }
  if (churn.down_for <= nanoseconds(0)) {
    return InvalidArgumentError("event " + std::to_string(event_index) +
                                ": churn down_for must be positive");
  }
  const nanoseconds stop = churn.until ? std::min(*churn.until, end) : end;
  const std::vector<topology::VnodeId>& members = event.targets;

  // Each kill and start, in time order; a kill comes before a start at the
  // same time only by construction order (stable sort below).
  struct Step {
    nanoseconds at;
    bool kill;
    topology::VnodeId vnode;
  };
  std::vector<Step> steps;
  if (!members.empty()) {
    Rng rng = Rng::ForStream(seed, "churn/" + std::to_string(event_index));
    // When each member comes back up; a member is down while up_at > t.
    std::vector<nanoseconds> up_at(members.size(), nanoseconds::min());
    double t_s = static_cast<double>(event.at.count()) / 1e9;
    const double stop_s = static_cast<double>(stop.count()) / 1e9;
    while (true) {
      // Exponential inter-arrival time of a Poisson process (inverse CDF).
      t_s += -std::log(1.0 - rng.Uniform01()) / churn.rate_per_s;
      if (t_s >= stop_s) break;
      const nanoseconds t(static_cast<int64_t>(std::llround(t_s * 1e9)));
      if (t >= stop) break;
      std::vector<size_t> up;
      up.reserve(members.size());
      for (size_t i = 0; i < members.size(); ++i) {
        if (up_at[i] <= t) up.push_back(i);
      }
      if (up.empty()) continue;  // everyone is down: this failure finds nobody
      const size_t pick = up[rng.Below(up.size())];
      up_at[pick] = t + churn.down_for;
      steps.push_back({t, true, members[pick]});
      if (t + churn.down_for < end) steps.push_back({t + churn.down_for, false, members[pick]});
      if (steps.size() > max_actions) {
        return ResourceExhaustedError("event " + std::to_string(event_index) +
                                      ": churn of group '" + churn.group +
                                      "' expands to more than " + std::to_string(max_actions) +
                                      " actions; lower its rate or shorten it with `until`");
      }
    }
  }
  std::stable_sort(steps.begin(), steps.end(),
                   [](const Step& a, const Step& b) { return a.at < b.at; });
  std::vector<EventAction> out;
  out.reserve(steps.size());
  for (size_t k = 0; k < steps.size(); ++k) {
    EventAction a;
    a.event_index = event_index;
    a.step = static_cast<uint32_t>(k);
    a.event_id = std::to_string(event_index) + "." + std::to_string(k);
    a.at = steps[k].at;
    a.kind = EventKind::kNodeAction;
    a.action = steps[k].kill ? NodeAction::kKill : NodeAction::kStart;
    a.vnodes = {steps[k].vnode};
    a.from_churn = true;
    out.push_back(std::move(a));
  }
  return out;
}

Result<Timeline> BuildTimeline(const experiments::Experiment& experiment,
                               const TimelineOptions& options) {
  Timeline tl;
  tl.duration = experiment.duration;
  const topology::Topology& topo = experiment.topology;
  for (size_t t = 0; t < experiment.tasks.size(); ++t) {
    const experiments::Task& task = experiment.tasks[t];
    for (size_t i = 0; i < task.targets.size(); ++i) {
      if (task.targets[i] >= topo.num_vnodes()) {
        return InvalidArgumentError("task '" + task.name + "': target " + std::to_string(i) +
                                    " is not a vnode of the topology");
      }
      TaskInstance inst;
      inst.task_id = task.name + "/" + std::to_string(i);
      inst.task = t;
      inst.index = static_cast<uint32_t>(i);
      inst.vnode = task.targets[i];
      inst.start = task.StartTimeOf(i);
      inst.wait = task.wait;
      inst.timeout = task.timeout;
      if (inst.wait) ++tl.waited;
      tl.tasks.push_back(std::move(inst));
    }
  }
  std::stable_sort(tl.tasks.begin(), tl.tasks.end(),
                   [](const TaskInstance& a, const TaskInstance& b) { return a.start < b.start; });

  for (size_t e = 0; e < experiment.events.size(); ++e) {
    const experiments::Event& ev = experiment.events[e];
    const uint32_t index = static_cast<uint32_t>(e);
    if (ev.kind == EventKind::kChurn) {
      GRIDEMU_ASSIGN_OR_RETURN(
          std::vector<EventAction> steps,
          ExpandChurn(ev, index, experiment.seed, experiment.duration, options.max_churn_actions));
      for (auto& s : steps) tl.events.push_back(std::move(s));
      continue;
    }
    EventAction a;
    a.event_index = index;
    a.event_id = std::to_string(index);
    a.at = ev.at;
    a.kind = ev.kind;
    if (ev.kind == EventKind::kNodeAction) {
      a.action = ev.action;
      a.vnodes = ev.targets;
      for (topology::VnodeId v : a.vnodes) {
        if (v >= topo.num_vnodes()) {
          return InvalidArgumentError("event " + std::to_string(e) +
                                      " names a vnode the topology does not have");
        }
      }
    } else {
      if (ev.link_id >= topo.num_links()) {
        return InvalidArgumentError("event " + std::to_string(e) + ": unknown link '" + ev.link +
                                    "'");
      }
      a.link = ev.link_id;
    }
    tl.events.push_back(std::move(a));
  }
  std::stable_sort(tl.events.begin(), tl.events.end(),
                   [](const EventAction& a, const EventAction& b) {
                     if (a.at != b.at) return a.at < b.at;
                     if (a.event_index != b.event_index) return a.event_index < b.event_index;
                     return a.step < b.step;
                   });
  return tl;
}

v1::ApplyEvent ToApplyEvent(const experiments::Experiment& experiment, const EventAction& action,
                            const std::vector<topology::VnodeId>& vnodes) {
  v1::ApplyEvent out;
  out.set_event_id(action.event_id);
  const topology::Topology& topo = experiment.topology;
  switch (action.kind) {
    case EventKind::kLinkSet: {
      const experiments::Event& ev = experiment.events[action.event_index];
      v1::LinkSet* set = out.mutable_link_set();
      set->set_link(topo.LinkName(action.link));
      *set->mutable_forward() = LinkProfileToProto(ev.forward);
      *set->mutable_reverse() = LinkProfileToProto(ev.reverse);
      break;
    }
    case EventKind::kLinkDown:
    case EventKind::kLinkUp: {
      v1::LinkState* st = out.mutable_link_state();
      st->set_link(topo.LinkName(action.link));
      st->set_up(action.kind == EventKind::kLinkUp);
      break;
    }
    case EventKind::kNodeAction:
    case EventKind::kChurn: {
      v1::NodeAction* na = out.mutable_node_action();
      na->set_action(std::string(experiments::NodeActionName(action.action)));
      for (topology::VnodeId v : vnodes.empty() ? action.vnodes : vnodes) {
        na->add_vnodes(topo.vnode(v).name);
      }
      break;
    }
  }
  return out;
}

std::string ActionTarget(const experiments::Experiment& experiment, const EventAction& action) {
  const topology::Topology& topo = experiment.topology;
  if (action.kind != EventKind::kNodeAction && action.kind != EventKind::kChurn) {
    return topo.LinkName(action.link);
  }
  std::string out;
  const size_t shown = std::min<size_t>(action.vnodes.size(), 8);
  for (size_t i = 0; i < shown; ++i) {
    if (i) out += ' ';
    out += topo.vnode(action.vnodes[i]).name;
  }
  if (action.vnodes.size() > shown) {
    out += " ... (+" + std::to_string(action.vnodes.size() - shown) + ")";
  }
  return out;
}

std::string ActionKindName(const EventAction& action) {
  if (action.kind == EventKind::kNodeAction || action.kind == EventKind::kChurn) {
    return "node-" + std::string(experiments::NodeActionName(action.action));
  }
  return std::string(experiments::EventKindName(action.kind));
}

std::string_view EndReasonText(EndReason r) {
  switch (r) {
    case EndReason::kNotYet:
      return "not yet";
    case EndReason::kDuration:
      return "duration reached";
    case EndReason::kWaitedTasksEnded:
      return "every waited task ended";
  }
  return "?";
}

EndReason CheckEnd(nanoseconds elapsed, nanoseconds duration, size_t waited_total,
                   size_t waited_ended) {
  if (elapsed >= duration) return EndReason::kDuration;
  if (waited_total > 0 && waited_ended >= waited_total) return EndReason::kWaitedTasksEnded;
  return EndReason::kNotYet;
}

}  // namespace gridemu::controller

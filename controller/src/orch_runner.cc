// One experiment's runner. See orch_runner.h and controller.h.

#include "orch_runner.h"

#include <algorithm>
#include <filesystem>
#include <limits>
#include <mutex>
#include <utility>

#include "deploy_encode.h"
#include "gridemu/common/clock.h"
#include "gridemu/common/units.h"
#include "gridemu/controller/placement.h"
#include "gridemu/controller/shard_builder.h"
#include "gridemu/experiments/parse.h"
#include "gridemu/topology/addressing.h"

namespace gridemu::controller::orch {

namespace fs = std::filesystem;
using std::chrono::duration_cast;
using std::chrono::milliseconds;
using std::chrono::nanoseconds;

namespace {

bool IsActive(TaskState s) { return s == TaskState::kStarting || s == TaskState::kRunning; }

std::string Secs(nanoseconds d) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.1fs", static_cast<double>(d.count()) / 1e9);
  return buf;
}

std::string ObjectErrors(const google::protobuf::RepeatedPtrField<v1::ObjectError>& errors) {
  std::string out;
  size_t n = 0;
  for (const auto& e : errors) {
    if (n == 5) {
      out += "; ... (" + std::to_string(errors.size() - 5) + " more)";
      break;
    }
    if (!out.empty()) out += "; ";
    out += e.object().empty() ? e.message() : e.object() + ": " + e.message();
    ++n;
  }
  return out;
}

// Pnode p acknowledged its shard (Runner::DeployWindow); true when shards
// wait to be sent.
bool DeployWindowAck(Runner::DeployWindow* w, size_t p) {
  if (w == nullptr || p >= w->acked.size() || p >= w->next || w->acked[p]) return false;
  w->acked[p] = 1;
  --w->in_flight;
  return w->next < w->shards.size();
}

}  // namespace

// ---------------------------------------------------------------- creation

Runner::Runner(RunnerEnv& env, ExperimentRecord record, experiments::Experiment experiment)
    : env_(env), rec_(std::move(record)), exp_(std::move(experiment)) {
  state_ = rec_.state;
}

Runner::Runner(RunnerEnv& env, ExperimentRecord record, experiments::Experiment experiment,
               Clock::time_point now)
    : Runner(env, std::move(record), std::move(experiment)) {
  created_at_ = now;
  place_deadline_ = now + env_.options().recovery_timeout;
  Status s = InitTimeline();
  if (!s.ok()) {
    Fail("cannot plan the timeline: " + s.message(), now);
    return;
  }
  s = EnsureResultsDir();
  if (!s.ok()) Fail(s.message(), now);
}

Status Runner::EnsureResultsDir() {
  if (!results_dir_.empty()) return Status::Ok();
  // Absolute: agents write GRIDEMU_OUT under it, from other working directories.
  std::error_code ec;
  fs::path base = fs::absolute(env_.options().results_dir, ec);
  GRIDEMU_ASSIGN_OR_RETURN(results_dir_, MakeResultsDir(ec ? env_.options().results_dir
                                                           : base.lexically_normal().string(),
                                                        rec_.name, UnixNanosNow()));
  out_root_ = results_dir_ + "/.work/out";
  Status s = env_.store().SetResultsDir(rec_.id, results_dir_);
  if (!s.ok()) Log("store: " + s.ToString());
  return Status::Ok();
}

Status Runner::InitTimeline() {
  GRIDEMU_ASSIGN_OR_RETURN(tl_, BuildTimeline(exp_));
  task_rt_.assign(tl_.tasks.size(), TaskRt{});
  for (size_t i = 0; i < tl_.tasks.size(); ++i) task_index_[tl_.tasks[i].task_id] = i;
  event_rt_.assign(tl_.events.size(), EventRt{});
  for (size_t i = 0; i < tl_.events.size(); ++i) event_index_[tl_.events[i].event_id] = i;
  return Status::Ok();
}

Result<std::unique_ptr<Runner>> Runner::Recover(RunnerEnv& env, RecoveredExperiment rx,
                                                Clock::time_point now) {
  auto parsed = experiments::ParseExperiment(rx.record.yaml, rx.record.source_path,
                                             env.options().import_base_dir);
  if (!parsed.ok()) {
    return InvalidArgumentError("cannot parse its file again after the restart: " +
                                parsed.status().message());
  }
  std::unique_ptr<Runner> r(new Runner(env, rx.record, std::move(parsed).value()));
  r->created_at_ = now;
  GRIDEMU_RETURN_IF_ERROR(r->InitTimeline());
  r->results_dir_ = rx.record.results_dir;
  if (!r->results_dir_.empty()) r->out_root_ = r->results_dir_ + "/.work/out";
  r->generation_ = rx.record.generation;
  r->vni_base_ = rx.record.vni_base;
  r->vni_count_ = rx.record.vni_count;
  r->recovery_deadline_ = now + env.options().recovery_timeout;
  r->place_deadline_ = r->recovery_deadline_;

  // Placement, as stored.
  if (!rx.pnode_of_vnode.empty()) {
    std::map<std::string, uint32_t> index;
    r->placement_.pnode_of_vnode.resize(rx.pnode_of_vnode.size());
    for (size_t v = 0; v < rx.pnode_of_vnode.size(); ++v) {
      auto [it, inserted] =
          index.emplace(rx.pnode_of_vnode[v], static_cast<uint32_t>(r->placement_.pnodes.size()));
      if (inserted) r->placement_.pnodes.push_back(rx.pnode_of_vnode[v]);
      r->placement_.pnode_of_vnode[v] = it->second;
    }
    if (rx.placement) r->placement_.algorithm = rx.placement->algorithm;
    r->placed_ = true;
    for (const auto& p : r->placement_.pnodes) {
      HostRun h;
      h.host = p;
      h.deploy_sent = true;  // maybe; teardown is harmless either way
      r->hosts_.push_back(h);
    }
    for (uint32_t p : r->placement_.pnode_of_vnode) ++r->hosts_[p].vnodes;
  }

  // Task and event states, as stored.
  for (const TaskRecord& t : rx.tasks) {
    auto it = r->task_index_.find(t.task_id);
    if (it == r->task_index_.end()) continue;
    TaskRt& rt = r->task_rt_[it->second];
    rt.state = t.state;
    if (IsEndedTaskState(t.state)) r->TaskEnded(it->second);
  }
  for (const EventRecord& e : rx.events) {
    if (e.state != EventState::kPending) r->events_before_.emplace(e.index, e);
  }
  for (const TransitionRecord& t : rx.transitions) {
    if (t.to == ExperimentState::kRunning) r->t0_unix_ns_ = t.unix_ns;
  }

  using S = ExperimentState;
  const std::string last_reason = rx.transitions.empty() ? "" : rx.transitions.back().reason;
  switch (rx.record.state) {
    case S::kSubmitted:
    case S::kPlaced:
      r->phase_ = Phase::kPlacing;
      r->placed_ = false;
      r->hosts_.clear();
      r->Log("recovered in state " + std::string(ExperimentStateName(rx.record.state)) +
             ": placing it again when an agent is registered");
      break;
    case S::kDeploying:
      r->phase_ = Phase::kRecovering;
      r->final_ = S::kFailed;
      r->final_reason_ = "controller restarted during deploy; the deployment was abandoned";
      r->Log("recovered in state deploying: it will be failed and torn down");
      break;
    case S::kRunning:
      r->phase_ = Phase::kRecovering;
      r->recovering_resume_ = true;
      r->started_ = true;
      r->Log("recovered in state running: waiting for its agents to resume it");
      break;
    case S::kCollecting:
      r->phase_ = Phase::kRecovering;
      r->started_ = r->t0_unix_ns_ != 0;
      r->final_ = S::kFinished;
      r->final_reason_ = last_reason;
      r->stop_reason_ = std::string(kStoppedAtEndReason);
      r->notes_.push_back("the controller restarted during the collection");
      break;
    case S::kCancelling:
      r->phase_ = Phase::kRecovering;
      r->started_ = r->t0_unix_ns_ != 0;
      r->final_ = S::kCancelled;
      r->final_reason_ = last_reason.empty() ? "cancelled" : last_reason;
      r->stop_reason_ = "cancelled";
      break;
    default:
      return FailedPreconditionError("experiment " + rx.record.id + " is final");
  }
  if (r->phase_ == Phase::kRecovering && r->hosts_.empty()) {
    // Nothing was placed: nothing to tear down.
    if (!r->final_) {
      r->final_ = S::kFailed;
      r->final_reason_ = "controller restarted; the experiment has no placement to resume";
    }
    r->Finish(now);
  }
  return r;
}

// ---------------------------------------------------------------- helpers

void Runner::Log(const std::string& line) const { env_.Log("experiment " + rec_.id + ": " + line); }

std::string Runner::PhaseName() const {
  switch (phase_) {
    case Phase::kPlacing:
      return "waiting for an agent";
    case Phase::kDeploying:
      return "deploying";
    case Phase::kRunning:
      return "running";
    case Phase::kRecovering:
      return "waiting for agents (controller restarted)";
    case Phase::kStopping:
      return "stopping tasks";
    case Phase::kTearingDown:
      return "tearing down";
    case Phase::kDone:
      return "done";
  }
  return "?";
}

void Runner::Transition(ExperimentState to, const std::string& reason) {
  if (state_ == to) return;
  Status s = env_.store().Transition(rec_.id, to, reason);
  if (!s.ok()) {
    Log("store: " + s.ToString());
    // The stored state wins (e.g. a concurrent change through the store).
    auto now = env_.store().GetExperiment(rec_.id);
    if (now.ok()) state_ = now->state;
    return;
  }
  Log(std::string(ExperimentStateName(state_)) + " -> " + std::string(ExperimentStateName(to)) +
      ": " + reason);
  state_ = to;
}

Runner::HostRun* Runner::FindHost(const std::string& host) {
  for (auto& h : hosts_) {
    if (h.host == host) return &h;
  }
  return nullptr;
}

std::string Runner::HostOfVnode(topology::VnodeId v) const {
  if (v >= placement_.pnode_of_vnode.size()) return "";
  return placement_.pnodes[placement_.pnode_of_vnode[v]];
}

Result<uint64_t> Runner::SendTo(const std::string& host, v1::Envelope env, RequestKind kind,
                                size_t index) {
  env.set_experiment_id(rec_.id);
  env.set_generation(generation_);
  auto id = env_.Send(host, std::move(env));
  if (id.ok()) requests_[*id] = Request{kind, index, host};
  return id;
}

int64_t Runner::ElapsedNs(Clock::time_point now) const {
  if (!started_) return 0;
  const Clock::time_point end = ended_at_ ? *ended_at_ : now;
  return std::max<int64_t>(0, duration_cast<nanoseconds>(end - t0_).count());
}

uint32_t Runner::VnodesOn(const std::string& host) const {
  if (phase_ == Phase::kDone) return 0;
  if (hosts_.empty() && hint_) {
    // Not placed yet: what Submit placed is reserved, so that a submission
    // right after this one does not count the same room twice.
    const Placement& p = hint_->second;
    uint32_t n = 0;
    for (uint32_t pn : p.pnode_of_vnode) n += pn < p.pnodes.size() && p.pnodes[pn] == host;
    return n;
  }
  for (const auto& h : hosts_) {
    if (h.host == host) return h.vnodes;
  }
  return 0;
}

void Runner::SetTaskState(size_t i, TaskUpdate u) {
  u.task_id = tl_.tasks[i].task_id;
  TaskRt& rt = task_rt_[i];
  rt.state = u.state;
  task_updates_.push_back(std::move(u));
  if (IsEndedTaskState(rt.state)) TaskEnded(i);
}

void Runner::TaskEnded(size_t i) {
  TaskRt& rt = task_rt_[i];
  if (rt.ended_counted) return;
  rt.ended_counted = true;
  ++tasks_ended_;
  if (tl_.tasks[i].wait) ++waited_ended_;
  // Killed because the run was over: not a failure.
  const bool stopped_at_end = rt.kill_sent && final_ == ExperimentState::kFinished;
  if (rt.state != TaskState::kExited && !stopped_at_end) ++tasks_failed_;
}

void Runner::Flush() {
  if (!task_updates_.empty()) {
    Status s = env_.store().UpdateTasks(rec_.id, task_updates_);
    if (!s.ok()) Log("store: cannot update tasks: " + s.ToString());
    task_updates_.clear();
  }
  if (!event_updates_.empty()) {
    Status s = env_.store().UpdateEvents(rec_.id, event_updates_);
    if (!s.ok()) Log("store: cannot update events: " + s.ToString());
    event_updates_.clear();
  }
}

bool Runner::AllTasksQuiet() const {
  for (const auto& rt : task_rt_) {
    if (IsActive(rt.state)) return false;
  }
  return true;
}

// ---------------------------------------------------------------- progress

RunProgress Runner::Progress(Clock::time_point now) const {
  RunProgress p;
  p.id = rec_.id;
  p.state = state_;
  p.phase = PhaseName();
  for (const auto& h : hosts_) {
    p.deploy_done += h.done;
    p.deploy_total += h.total;
  }
  p.vnodes = exp_.topology.num_vnodes();
  p.elapsed = nanoseconds(ElapsedNs(now));
  p.duration = exp_.duration;
  p.tasks_total = tl_.tasks.size();
  for (const auto& rt : task_rt_) {
    if (rt.state == TaskState::kPending) ++p.tasks_pending;
    if (IsActive(rt.state)) ++p.tasks_running;
  }
  p.tasks_ended = tasks_ended_;
  p.tasks_failed = tasks_failed_;
  p.waited_total = tl_.waited;
  p.waited_ended = waited_ended_;
  p.events_total = tl_.events.size();
  p.events_done = events_done_;
  p.final = phase_ == Phase::kDone;
  p.reason = final_reason_;
  p.results_dir = results_dir_;
  return p;
}

// ---------------------------------------------------------------- timers

std::optional<Clock::time_point> Runner::NextDeadline() const {
  switch (phase_) {
    case Phase::kPlacing:
      return place_deadline_;
    case Phase::kDeploying:
      return deploy_deadline_;
    case Phase::kRecovering:
      return recovery_deadline_;
    case Phase::kStopping:
      return stop_deadline_;
    case Phase::kTearingDown:
      return teardown_deadline_;
    case Phase::kDone:
      return std::nullopt;
    case Phase::kRunning: {
      Clock::time_point next = t0_ + tl_.duration;
      if (next_task_ < tl_.tasks.size()) next = std::min(next, t0_ + tl_.tasks[next_task_].start);
      if (next_event_ < tl_.events.size()) {
        next = std::min(next, t0_ + tl_.events[next_event_].at);
      }
      if (!timeouts_.empty()) next = std::min(next, timeouts_.begin()->first);
      return next;
    }
  }
  return std::nullopt;
}

void Runner::Tick(Clock::time_point now) {
  if (phase_ != Phase::kDeploying) deploy_window_.reset();  // a deploy that ended early
  switch (phase_) {
    case Phase::kPlacing:
      TryPlace(now);
      break;
    case Phase::kDeploying:
      if (now >= deploy_deadline_) {
        std::string late;
        for (const auto& h : hosts_) {
          if (!h.ready) late += (late.empty() ? "" : ", ") + h.host;
        }
        Fail("deploy timed out: no progress from " + late + " for " +
                 FormatTime(env_.options().deploy_timeout),
             now);
      }
      break;
    case Phase::kRunning:
      RunTimeline(now);
      break;
    case Phase::kRecovering:
      AdvanceRecovery(now, now >= recovery_deadline_);
      break;
    case Phase::kStopping:
      if (AllTasksQuiet() || now >= stop_deadline_) CollectAndTeardown(now);
      break;
    case Phase::kTearingDown:
      if (now >= teardown_deadline_) {
        for (auto& h : hosts_) {
          if (h.teardown_sent && !h.torn_down) {
            notes_.push_back("teardown: no TornDown from " + h.host + " within " +
                             FormatTime(env_.options().teardown_timeout) +
                             "; its objects are removed when its agent registers again");
            env_.Orphan(h.host, rec_.id, generation_);
            h.torn_down = true;
          }
        }
        MaybeFinishTeardown(now);
      }
      break;
    case Phase::kDone:
      break;
  }
}

// ---------------------------------------------------------------- placement, deploy

std::vector<PnodeCandidate> LiveCandidates(RunnerEnv& env, const std::string& except_id) {
  std::vector<PnodeCandidate> candidates;
  for (const AgentInfo* a : env.registry().Alive()) {
    PnodeCandidate c;
    c.host_id = a->host_id;
    c.cores = a->hello.capacity().cores();
    c.memory_bytes = a->hello.capacity().memory_bytes();
    c.max_vnodes = a->hello.capacity().max_vnodes();
    c.vnodes_in_use = env.VnodesInUse(a->host_id, except_id);
    for (const auto& r : a->hello.capabilities().runtimes()) c.runtimes.push_back(r);
    candidates.push_back(std::move(c));
  }
  return candidates;
}

std::string NameList(const std::vector<std::string>& names, size_t max_names) {
  std::string out;
  for (size_t i = 0; i < names.size() && i < max_names; ++i) {
    out += (i == 0 ? "" : ", ") + names[i];
  }
  if (names.size() > max_names) {
    out += " ... (and " + std::to_string(names.size() - max_names) + " more)";
  }
  return out;
}

namespace {

bool SameCandidates(const std::vector<PnodeCandidate>& x, const std::vector<PnodeCandidate>& y) {
  if (x.size() != y.size()) return false;
  for (size_t i = 0; i < x.size(); ++i) {
    if (x[i].host_id != y[i].host_id || x[i].cores != y[i].cores ||
        x[i].memory_bytes != y[i].memory_bytes || x[i].max_vnodes != y[i].max_vnodes ||
        x[i].vnodes_in_use != y[i].vnodes_in_use || x[i].runtimes != y[i].runtimes) {
      return false;
    }
  }
  return true;
}

}  // namespace

void Runner::SetPlacementHint(std::vector<PnodeCandidate> candidates, Placement placement) {
  hint_.emplace(std::move(candidates), std::move(placement));
}

std::vector<std::string> Runner::PnodeAddresses() const {
  std::vector<std::string> out;
  for (const auto& p : placement_.pnodes) {
    const AgentInfo* a = env_.registry().Find(p);
    out.push_back(a != nullptr ? a->hello.address() : "");
  }
  return out;
}

Status CheckTunnelAddresses(const topology::Topology& topology, const Placement& placement,
                            const std::vector<std::string>& addresses) {
  std::vector<bool> needs(placement.pnodes.size(), false);
  uint64_t cross = 0;
  for (topology::LinkId l = 0; l < topology.num_links(); ++l) {
    const topology::Link& link = topology.link(l);
    if (link.a >= placement.pnode_of_vnode.size() || link.b >= placement.pnode_of_vnode.size()) {
      continue;
    }
    const uint32_t pa = placement.pnode_of_vnode[link.a], pb = placement.pnode_of_vnode[link.b];
    if (pa == pb || pa >= needs.size() || pb >= needs.size()) continue;
    needs[pa] = needs[pb] = true;
    ++cross;
  }
  std::vector<std::string> missing;
  for (size_t p = 0; p < needs.size(); ++p) {
    if (needs[p] && (p >= addresses.size() || addresses[p].empty())) {
      missing.push_back(placement.pnodes[p]);
    }
  }
  if (missing.empty()) return Status::Ok();
  return FailedPreconditionError(
      std::to_string(cross) + " link(s) span pnodes, which needs VXLAN tunnels, but pnode(s) " +
      NameList(missing) +
      " announced no underlay address (AgentHello.address): start their agents with an "
      "address (gridemu-agent --address IP), or pin the vnodes to one pnode");
}

Status CheckShapingParameters(const experiments::Experiment& experiment,
                              const Placement& placement,
                              const std::vector<PnodeShaping>& shaping) {
  const topology::Topology& topo = experiment.topology;
  std::vector<std::string> problems;
  auto check = [&](const SourceLoc& loc, topology::LinkId l, const char* direction,
                   const LinkProfile& profile) {
    if (profile.empty()) return;
    const topology::Link& link = topo.link(l);
    if (link.a >= placement.pnode_of_vnode.size() || link.b >= placement.pnode_of_vnode.size()) {
      return;
    }
    std::vector<uint32_t> pnodes{placement.pnode_of_vnode[link.a]};
    if (placement.pnode_of_vnode[link.b] != pnodes[0]) {
      pnodes.push_back(placement.pnode_of_vnode[link.b]);
    }
    for (const std::string& param : profile.SetParameters()) {
      for (uint32_t p : pnodes) {
        if (p >= shaping.size() || shaping[p].parameters.empty()) continue;
        const auto& honoured = shaping[p].parameters;
        if (std::find(honoured.begin(), honoured.end(), param) != honoured.end()) continue;
        problems.push_back(loc.ToString() + ": link " + topo.LinkName(l) + " " + direction +
                           ": " + param + ": not supported by the " +
                           (shaping[p].backend.empty() ? "active" : shaping[p].backend) +
                           " backend of pnode " + shaping[p].host);
      }
    }
  };
  for (topology::LinkId l = 0; l < topo.num_links(); ++l) {
    check(topo.link(l).loc, l, "forward", topo.link(l).forward);
    check(topo.link(l).loc, l, "reverse", topo.link(l).reverse);
  }
  for (const experiments::Event& e : experiment.events) {
    if (e.kind != experiments::EventKind::kLinkSet || e.link_id >= topo.num_links()) continue;
    check(e.loc, e.link_id, "forward", e.forward);
    check(e.loc, e.link_id, "reverse", e.reverse);
  }
  if (problems.empty()) return Status::Ok();
  std::string msg;
  for (const std::string& p : problems) msg += (msg.empty() ? "" : "\n") + p;
  return InvalidArgumentError(msg + " (nothing was stored)");
}

Status Runner::PrepareTunnels() {
  const uint64_t cross = CountCrossPnodeLinks(exp_.topology, placement_.pnode_of_vnode);
  if (cross == 0) return Status::Ok();
  GRIDEMU_RETURN_IF_ERROR(CheckTunnelAddresses(exp_.topology, placement_, PnodeAddresses()));
  if (cross > std::numeric_limits<uint32_t>::max()) {
    return ResourceExhaustedError(std::to_string(cross) + " cross-pnode links: too many VNIs");
  }
  auto base = env_.store().AllocateVnis(rec_.id, static_cast<uint32_t>(cross),
                                        env_.options().vni_first, env_.options().vni_last);
  if (!base.ok()) {
    return Status(base.status().code(), std::to_string(cross) +
                                            " link(s) span pnodes and need one VXLAN VNI each: " +
                                            base.status().message());
  }
  vni_base_ = *base;
  vni_count_ = static_cast<uint32_t>(cross);
  return Status::Ok();
}

void Runner::TryPlace(Clock::time_point now) {
  std::vector<PnodeCandidate> candidates = LiveCandidates(env_, rec_.id);
  if (candidates.empty()) {
    if (now >= place_deadline_) {
      Fail("no agent is registered with the controller (waited " +
               FormatTime(env_.options().recovery_timeout) +
               "): start gridemu-agent on a pnode, or use `gridemu run`",
           now);
    }
    return;
  }
  Result<Placement> placed = Placement{};
  if (hint_ && SameCandidates(hint_->first, candidates)) {
    placed = std::move(hint_->second);  // placed at Submit on the same agents
  } else {
    placed = env_.placer().Place(exp_, candidates);
  }
  hint_.reset();
  if (!placed.ok()) {
    Fail("placement failed: " + placed.status().message(), now);
    return;
  }
  placement_ = std::move(placed).value();
  placed_ = true;
  {
    // The report, computed the same way whatever the placer (placement.h:
    // imbalance = max load / target load, 1.0 = perfect).
    std::vector<PnodeCandidate> used;
    for (const auto& p : placement_.pnodes) {
      for (const auto& c : candidates) {
        if (c.host_id == p) used.push_back(c);
      }
    }
    if (used.size() == placement_.pnodes.size()) {
      const PlacementReport r = EvaluatePlacement(exp_.topology, used, placement_.pnode_of_vnode);
      placement_.cut_links = r.cut_links;
      placement_.cut_rate_bps = r.cut_rate_bps;
      placement_.imbalance = r.imbalance;
    }
  }
  if (Status t = PrepareTunnels(); !t.ok()) {
    Fail("cannot connect the pnodes: " + t.message(), now);
    return;
  }

  if (Status rd = EnsureResultsDir(); !rd.ok()) {
    Fail(rd.message(), now);
    return;
  }

  auto gen = env_.store().BumpGeneration(rec_.id);
  if (!gen.ok()) {
    Fail("store: " + gen.status().message(), now);
    return;
  }
  generation_ = *gen;
  PlacementInput in;
  in.algorithm = placement_.algorithm;
  in.cut_links = placement_.cut_links;
  in.cut_rate_bps = placement_.cut_rate_bps;
  in.imbalance = placement_.imbalance;
  in.pnode_of_vnode.reserve(placement_.pnode_of_vnode.size());
  for (uint32_t p : placement_.pnode_of_vnode) in.pnode_of_vnode.push_back(placement_.pnodes[p]);
  Status s = env_.store().RecordPlacement(rec_.id, in);
  if (!s.ok()) {
    Fail("store: " + s.message(), now);
    return;
  }
  hosts_.clear();
  for (const auto& p : placement_.pnodes) {
    HostRun h;
    h.host = p;
    hosts_.push_back(h);
  }
  for (uint32_t p : placement_.pnode_of_vnode) ++hosts_[p].vnodes;
  // The pnodes by name when they are few; else a count and the spread (the
  // full report is in the placement record and `gridemu status`).
  constexpr size_t kNamedPnodes = 8;
  std::string where;
  if (hosts_.size() <= kNamedPnodes) {
    for (const auto& h : hosts_) {
      where += (where.empty() ? "" : ", ") + h.host + " (" + std::to_string(h.vnodes) + " vnodes)";
    }
  } else {
    uint32_t lo = UINT32_MAX, hi = 0;
    for (const auto& h : hosts_) {
      lo = std::min(lo, h.vnodes);
      hi = std::max(hi, h.vnodes);
    }
    where = std::to_string(hosts_.size()) + " pnodes (" + std::to_string(lo) +
            (lo == hi ? "" : "-" + std::to_string(hi)) + " vnodes each)";
  }
  if (hosts_.size() > 1) {
    char imb[32];
    std::snprintf(imb, sizeof(imb), "%.3f", placement_.imbalance);
    where += "; " + std::to_string(placement_.cut_links) + " cross-pnode link(s), " +
             FormatRate(placement_.cut_rate_bps) + ", imbalance " + imb;
    if (vni_count_ > 0) {
      where +=
          ", VNIs " + std::to_string(vni_base_) + "-" + std::to_string(vni_base_ + vni_count_ - 1);
    }
  }
  if (state_ == ExperimentState::kSubmitted) {
    Transition(ExperimentState::kPlaced, "placed on " + where + " by " + placement_.algorithm);
  }
  Deploy(now);
}

void Runner::Deploy(Clock::time_point now) {
  if (phase_ == Phase::kDeploying) {
    // The window has room (OnShardStatus()): send the next shards.
    DeployWindow* w = deploy_window_.get();
    if (w == nullptr) return;
    while (w->next < w->shards.size() && w->in_flight < kDeployWindow) {
      const size_t p = w->next++;
      v1::Envelope env;
      *env.mutable_deploy_shard() = std::move(w->shards[p]);
      w->shards[p] = v1::DeployShard();
      AttachHostsField(&env, w->hosts_field);
      ++w->in_flight;
      auto sent = SendTo(hosts_[p].host, std::move(env), RequestKind::kDeploy, p);
      hosts_[p].deploy_sent = true;
      if (!sent.ok()) {
        deploy_window_.reset();
        Fail("cannot send the shard to " + hosts_[p].host + ": " + sent.status().message(), now);
        return;
      }
    }
    if (w->next >= w->shards.size()) deploy_window_.reset();
    return;
  }
  deploy_window_.reset();
  auto plan = topology::PlanAddressing(exp_.topology);
  if (!plan.ok()) {
    Fail("addressing failed: " + plan.status().message(), now);
    return;
  }
  ShardOptions so;
  so.output_dir = out_root_;
  so.shared_dir = exp_.shared_dir;
  so.shaping_backend = env_.options().shaping_backend;
  so.num_pnodes = static_cast<uint32_t>(placement_.pnodes.size());
  so.pnode_addresses = PnodeAddresses();
  so.vni_base = vni_base_;
  so.vni_count = vni_count_;
  so.underlay_mtu = env_.options().underlay_mtu;
  so.include_hosts = false;  // encoded once below, spliced into each shard's message
  auto shards = BuildShards(exp_, rec_.id, generation_, placement_.pnode_of_vnode, *plan, so);
  if (!shards.ok()) {
    Fail("cannot build the shards: " + shards.status().message(), now);
    return;
  }
  if (!out_root_.empty()) {
    std::error_code ec;
    fs::create_directories(out_root_, ec);
  }
  Transition(ExperimentState::kDeploying,
             "deploying " + std::to_string(exp_.topology.num_vnodes()) + " vnodes and " +
                 std::to_string(exp_.topology.num_links()) + " links on " +
                 std::to_string(hosts_.size()) + " pnode(s)");
  if (state_ != ExperimentState::kDeploying) {
    // The store refused (e.g. a cancel through the store won): stop here.
    final_ = state_;
    phase_ = Phase::kDone;
    return;
  }
  phase_ = Phase::kDeploying;
  deploy_started_ = now;
  deploy_deadline_ = now + env_.options().deploy_timeout;
  auto w = std::make_unique<DeployWindow>();
  w->hosts_field = EncodeHostsField(topology::HostsEntries(exp_.topology, *plan));
  for (size_t p = 0; p < hosts_.size() && p < shards->size(); ++p) {
    const v1::DeployShard& shard = (*shards)[p];
    hosts_[p].total = static_cast<uint32_t>(shard.vnodes_size() + shard.links_size());
  }
  w->shards = std::move(shards).value();
  w->shards.resize(std::min(w->shards.size(), hosts_.size()));
  w->acked.assign(w->shards.size(), 0);
  deploy_window_ = std::move(w);
  Deploy(now);  // sends the first kDeployWindow shards
}

void Runner::OnShardStatus(const std::string& host, const v1::ShardStatus& s,
                           Clock::time_point now) {
  HostRun* h = FindHost(host);
  if (h == nullptr) return;
  if (s.total() != 0) h->total = s.total();
  h->done = std::max(h->done, s.done());
  if (phase_ != Phase::kDeploying) return;  // e.g. a late status during teardown
  deploy_deadline_ = now + env_.options().deploy_timeout;
  if (s.phase() != v1::ShardStatus::PHASE_FAILED &&
      DeployWindowAck(deploy_window_.get(), static_cast<size_t>(h - hosts_.data()))) {
    Deploy(now);  // a window slot is free: send the next shard(s)
    if (phase_ != Phase::kDeploying) return;
  }
  switch (s.phase()) {
    case v1::ShardStatus::PHASE_FAILED:
      Fail("deploy failed on " + host + ": " +
               (s.errors().empty() ? std::string("no error given") : ObjectErrors(s.errors())),
           now);
      return;
    case v1::ShardStatus::PHASE_READY:
      h->ready = true;
      h->done = h->total;
      break;
    default:
      return;
  }
  for (const auto& x : hosts_) {
    if (!x.ready) return;
  }
  StartRunning(now);
}

// ---------------------------------------------------------------- running

void Runner::StartRunning(Clock::time_point now) {
  t0_unix_ns_ = UnixNanosNow();
  t0_ = now;
  started_ = true;
  Transition(ExperimentState::kRunning,
             "deployed on " + std::to_string(hosts_.size()) + " pnode(s) in " +
                 Secs(duration_cast<nanoseconds>(now - deploy_started_)));
  if (state_ != ExperimentState::kRunning) {
    Fail("the store refused the transition to running", now);
    return;
  }
  phase_ = Phase::kRunning;
  RunTimeline(now);
}

void Runner::RunTimeline(Clock::time_point now) {
  const nanoseconds elapsed = duration_cast<nanoseconds>(now - t0_);
  // Task starts.
  while (next_task_ < tl_.tasks.size() && tl_.tasks[next_task_].start <= elapsed) {
    if (task_rt_[next_task_].state == TaskState::kPending) DispatchTask(next_task_, now);
    ++next_task_;
    if (phase_ != Phase::kRunning) return;
  }
  // Events.
  while (next_event_ < tl_.events.size() && tl_.events[next_event_].at <= elapsed) {
    DispatchEvent(next_event_, now);
    ++next_event_;
    if (phase_ != Phase::kRunning) return;
  }
  // Task timeout backstops: the agent enforces Exec.timeout_ms; if it stays
  // silent, kill from here, then give up on it.
  while (!timeouts_.empty() && timeouts_.begin()->first <= now) {
    const size_t i = timeouts_.begin()->second;
    timeouts_.erase(timeouts_.begin());
    TaskRt& rt = task_rt_[i];
    if (!IsActive(rt.state)) continue;
    const std::string host = HostOfVnode(tl_.tasks[i].vnode);
    if (!rt.kill_sent) {
      rt.kill_sent = true;
      v1::Envelope env;
      env.mutable_signal()->set_task_id(tl_.tasks[i].task_id);
      env.mutable_signal()->set_signal("kill");
      (void)SendTo(host, std::move(env), RequestKind::kSignal, i);
      timeouts_.emplace(now + env_.options().task_timeout_grace, i);
      continue;
    }
    TaskUpdate u;
    u.state = TaskState::kKilled;
    u.reason = "timeout (the agent did not report the end)";
    u.end_unix_ns = UnixNanosNow();
    SetTaskState(i, std::move(u));
  }
  const EndReason end = CheckEnd(elapsed, tl_.duration, tl_.waited, waited_ended_);
  if (end != EndReason::kNotYet) EndRun(end, now);
}

void Runner::DispatchTask(size_t i, Clock::time_point now) {
  const TaskInstance& inst = tl_.tasks[i];
  const experiments::Task& task = exp_.tasks[inst.task];
  const std::string host = HostOfVnode(inst.vnode);
  TaskRt& rt = task_rt_[i];
  if (!env_.registry().IsAlive(host)) {
    TaskUpdate u;
    u.state = TaskState::kLost;
    u.reason = "its pnode " + host + " is not connected";
    SetTaskState(i, std::move(u));
    return;
  }
  v1::Envelope env;
  v1::Exec* x = env.mutable_exec();
  x->set_task_id(inst.task_id);
  x->set_vnode(exp_.topology.vnode(inst.vnode).name);
  if (task.run) {
    x->set_shell(*task.run);
  } else {
    for (const auto& a : task.argv) x->add_argv(a);
  }
  for (const auto& [k, v] : task.env) (*x->mutable_env())[k] = v;
  if (inst.timeout) {
    const int64_t ms = (inst.timeout->count() + 999999) / 1000000;
    x->set_timeout_ms(static_cast<uint64_t>(std::max<int64_t>(1, ms)));
  }
  x->set_stop_grace_ms(static_cast<uint64_t>((task.stop_grace.count() + 999999) / 1000000));
  auto sent = SendTo(host, std::move(env), RequestKind::kExec, i);
  if (!sent.ok()) {
    TaskUpdate u;
    u.state = TaskState::kFailed;
    u.reason = "cannot send Exec to " + host + ": " + sent.status().message();
    SetTaskState(i, std::move(u));
    return;
  }
  rt.exec_at = now;
  if (inst.timeout) {
    timeouts_.emplace(now + *inst.timeout + env_.options().task_timeout_grace, i);
  }
  TaskUpdate u;
  u.state = TaskState::kStarting;
  SetTaskState(i, std::move(u));
}

void Runner::DispatchEvent(size_t i, Clock::time_point now) {
  const EventAction& a = tl_.events[i];
  EventRt& rt = event_rt_[i];
  if (auto before = events_before_.find(a.event_index);
      before != events_before_.end() && a.at <= resume_elapsed_) {
    // Applied (or failed) before the controller restarted.
    rt.dispatched = true;
    if (!a.from_churn || a.step == 0) {
      if (before->second.applied_ns && t0_unix_ns_ != 0) {
        rt.applied_unix_ns = t0_unix_ns_ + *before->second.applied_ns;
      }
      rt.error = before->second.error;
    }
    event_rows_written_.insert(a.event_index);
    ++events_done_;
    return;
  }
  rt.dispatched = true;
  // Which pnodes: each vnode's for node actions; for a link, the pnodes of
  // its two ends (a cross-pnode link has a half on each: both apply it).
  std::map<std::string, std::vector<topology::VnodeId>> by_host;
  if (a.kind == experiments::EventKind::kNodeAction || a.kind == experiments::EventKind::kChurn) {
    for (topology::VnodeId v : a.vnodes) by_host[HostOfVnode(v)].push_back(v);
  } else {
    by_host[HostOfVnode(exp_.topology.link(a.link).a)];
    by_host[HostOfVnode(exp_.topology.link(a.link).b)];
  }
  for (auto& [host, vnodes] : by_host) {
    v1::Envelope env;
    *env.mutable_apply_event() = ToApplyEvent(exp_, a, vnodes);
    auto sent = SendTo(host, std::move(env), RequestKind::kApplyEvent, i);
    if (sent.ok()) {
      ++rt.replies_pending;
    } else if (rt.error.empty()) {
      rt.error = "cannot send to " + host + ": " + sent.status().message();
    }
  }
  if (rt.replies_pending == 0) {
    ++events_done_;
    EventUpdate u;
    u.index = a.event_index;
    u.state = EventState::kFailed;
    u.error = rt.error;
    event_updates_.push_back(u);
  }
  (void)now;
}

void Runner::OnEventApplied(const std::string& host, const v1::EventApplied& e,
                            Clock::time_point now) {
  auto it = event_index_.find(e.event_id());
  if (it == event_index_.end()) return;
  const EventAction& a = tl_.events[it->second];
  EventRt& rt = event_rt_[it->second];
  if (rt.replies_pending == 0) return;  // a repeated answer
  --rt.replies_pending;
  if (e.applied_unix_ns() != 0) {
    const int64_t t = static_cast<int64_t>(e.applied_unix_ns());
    rt.applied_unix_ns = rt.applied_unix_ns ? std::max(*rt.applied_unix_ns, t) : t;
  }
  if (e.has_error() && rt.error.empty()) {
    rt.error = host + ": " + e.error().message();
  }
  if (rt.replies_pending > 0) return;
  ++events_done_;
  // The store keeps one row per `events:` entry: a churn's row says when its
  // first step took effect, and failed if any step failed.
  EventUpdate u;
  u.index = a.event_index;
  u.state = rt.error.empty() ? EventState::kApplied : EventState::kFailed;
  u.error = rt.error;
  if (rt.applied_unix_ns && t0_unix_ns_ != 0) u.applied_ns = *rt.applied_unix_ns - t0_unix_ns_;
  const bool first = event_rows_written_.insert(a.event_index).second;
  if (first || !rt.error.empty()) {
    if (!first) u.applied_ns.reset();
    event_updates_.push_back(u);
  }
  if (!rt.error.empty()) Log("event " + a.event_id + " failed: " + rt.error);
  (void)now;
}

Status Runner::OnTaskEvent(const std::string& host, const v1::TaskEvent& e, Clock::time_point now) {
  auto it = task_index_.find(e.task_id());
  if (it == task_index_.end()) {
    return NotFoundError("experiment " + rec_.id + " has no task '" + e.task_id() + "'");
  }
  const size_t i = it->second;
  TaskRt& rt = task_rt_[i];
  TaskUpdate u;
  if (!e.stdout_path().empty()) u.stdout_path = e.stdout_path();
  if (!e.stderr_path().empty()) u.stderr_path = e.stderr_path();
  if (e.start_unix_ns() != 0) u.start_unix_ns = static_cast<int64_t>(e.start_unix_ns());
  switch (e.state()) {
    case v1::TaskEvent::STATE_STARTED:
      if (IsEndedTaskState(rt.state)) return Status::Ok();  // late: the end is known already
      u.state = TaskState::kRunning;
      break;
    case v1::TaskEvent::STATE_EXITED: {
      if (IsEndedTaskState(rt.state) && rt.state != TaskState::kLost) return Status::Ok();
      u.end_unix_ns = e.end_unix_ns() != 0 ? static_cast<int64_t>(e.end_unix_ns()) : UnixNanosNow();
      std::string reason = e.reason().empty() ? "exited" : e.reason();
      if (e.signal() != 0) {
        u.state = TaskState::kKilled;
        u.signal = e.signal();
        if (rt.kill_sent && !stop_reason_.empty()) reason = stop_reason_ + " (" + reason + ")";
      } else {
        u.state = TaskState::kExited;
        u.exit_code = e.exit_code();
      }
      u.reason = reason;
      break;
    }
    case v1::TaskEvent::STATE_FAILED_TO_START:
      if (IsEndedTaskState(rt.state) && rt.state != TaskState::kLost) return Status::Ok();
      u.state = TaskState::kFailed;
      u.reason = e.reason().empty() ? "failed to start" : e.reason();
      u.end_unix_ns = UnixNanosNow();
      break;
    default:
      return InvalidArgumentError("TaskEvent for '" + e.task_id() + "' has no state");
  }
  if (rt.state == TaskState::kLost && IsEndedTaskState(u.state)) {
    // A task given up as lost reported after all: count it as what it was.
    rt.ended_counted = false;
    --tasks_ended_;
    --tasks_failed_;
    if (tl_.tasks[i].wait) --waited_ended_;
  }
  SetTaskState(i, std::move(u));
  (void)host;
  (void)now;
  return Status::Ok();
}

void Runner::EndRun(EndReason why, Clock::time_point now) {
  ended_at_ = now;
  end_unix_ns_ = UnixNanosNow();
  std::string reason = std::string(EndReasonText(why));
  if (why == EndReason::kDuration) reason += " (" + FormatTime(tl_.duration) + ")";
  Transition(ExperimentState::kCollecting, reason);
  final_ = ExperimentState::kFinished;
  final_reason_ = reason;
  stop_reason_ = std::string(kStoppedAtEndReason);
  StopTasks(now);
}

void Runner::StopTasks(Clock::time_point now) {
  if (!ended_at_) {
    ended_at_ = now;
    end_unix_ns_ = UnixNanosNow();
  }
  phase_ = Phase::kStopping;
  timeouts_.clear();
  // SIGTERM, and SIGKILL from the agent after each task's stop_grace; the store waits
  // for the longest grace and then ControllerOptions::stop_grace for the reports.
  nanoseconds longest{0};
  for (size_t i = 0; i < task_rt_.size(); ++i) {
    TaskRt& rt = task_rt_[i];
    if (!IsActive(rt.state)) continue;
    const std::string host = HostOfVnode(tl_.tasks[i].vnode);
    if (!env_.registry().IsAlive(host)) continue;
    rt.kill_sent = true;
    const nanoseconds grace = exp_.tasks[tl_.tasks[i].task].stop_grace;
    longest = std::max(longest, grace);
    v1::Envelope env;
    env.mutable_signal()->set_task_id(tl_.tasks[i].task_id);
    if (grace.count() > 0) {
      env.mutable_signal()->set_signal("term");
      env.mutable_signal()->set_grace_ms(static_cast<uint64_t>((grace.count() + 999999) / 1000000));
    } else {
      env.mutable_signal()->set_signal("kill");
    }
    (void)SendTo(host, std::move(env), RequestKind::kSignal, i);
  }
  stop_deadline_ = now + longest + env_.options().stop_grace;
  if (AllTasksQuiet()) CollectAndTeardown(now);
}

void Runner::CollectAndTeardown(Clock::time_point now) {
  // Tasks that did not report their end: killed by the teardown anyway.
  for (size_t i = 0; i < task_rt_.size(); ++i) {
    if (!IsActive(task_rt_[i].state)) continue;
    TaskUpdate u;
    u.state = TaskState::kKilled;
    u.reason = (stop_reason_.empty() ? std::string("stopped") : stop_reason_) +
               " (no end reported by the agent)";
    u.end_unix_ns = end_unix_ns_ != 0 ? end_unix_ns_ : UnixNanosNow();
    SetTaskState(i, std::move(u));
  }
  Flush();
  if (!results_dir_.empty()) {
    auto tasks = env_.store().ListTasks(rec_.id);
    // The agent writes task outputs into the vnodes' output directories:
    // they are kept once, under tasks/, not again under files/.
    std::set<std::string> task_outputs;
    if (tasks.ok()) {
      for (const auto& t : *tasks) {
        if (!t.stdout_path.empty()) task_outputs.insert(t.stdout_path);
        if (!t.stderr_path.empty()) task_outputs.insert(t.stderr_path);
      }
      std::vector<TaskUpdate> moved = CollectTaskOutputs(results_dir_, *tasks, &notes_);
      if (!moved.empty()) {
        Status s = env_.store().UpdateTasks(rec_.id, moved);
        if (!s.ok()) Log("store: " + s.ToString());
      }
    }
    if (!out_root_.empty()) {
      collected_ = CollectFiles(results_dir_, exp_, out_root_, task_outputs, &notes_);
    }
  }
  StartTeardown(now);
}

// ---------------------------------------------------------------- teardown, end

void Runner::StartTeardown(Clock::time_point now) {
  phase_ = Phase::kTearingDown;
  teardown_deadline_ = now + env_.options().teardown_timeout;
  for (auto& h : hosts_) {
    if (!h.deploy_sent || h.torn_down || h.teardown_sent) continue;
    if (!env_.registry().IsAlive(h.host)) {
      notes_.push_back("teardown: " + h.host +
                       " is not connected; its agent removes this experiment's objects when it "
                       "registers again (the controller does not keep them)");
      env_.Orphan(h.host, rec_.id, generation_);
      h.torn_down = true;
      continue;
    }
    v1::Envelope env;
    env.mutable_teardown()->set_experiment_id(rec_.id);
    auto sent = SendTo(h.host, std::move(env), RequestKind::kTeardown, 0);
    if (sent.ok()) {
      h.teardown_sent = true;
    } else {
      notes_.push_back("teardown: cannot reach " + h.host + ": " + sent.status().message());
      env_.Orphan(h.host, rec_.id, generation_);
      h.torn_down = true;
    }
  }
  MaybeFinishTeardown(now);
}

void Runner::MaybeFinishTeardown(Clock::time_point now) {
  if (phase_ != Phase::kTearingDown) return;
  for (const auto& h : hosts_) {
    if (h.teardown_sent && !h.torn_down) return;
  }
  Finish(now);
}

void Runner::OnTornDown(const std::string& host, const v1::TornDown& t, Clock::time_point now) {
  HostRun* h = FindHost(host);
  if (h == nullptr) return;
  if (!t.errors().empty()) {
    notes_.push_back("teardown on " + host + ": " + ObjectErrors(t.errors()));
  }
  h->torn_down = true;
  Log("torn down on " + host + " (" + std::to_string(t.vnodes_removed()) + " vnodes removed)");
  MaybeFinishTeardown(now);
}

void Runner::Finish(Clock::time_point now) {
  if (phase_ == Phase::kDone) return;
  if (!final_) final_ = ExperimentState::kFailed;
  if (end_unix_ns_ == 0) end_unix_ns_ = UnixNanosNow();
  // Tasks that never started.
  for (size_t i = 0; i < task_rt_.size(); ++i) {
    if (task_rt_[i].state != TaskState::kPending) continue;
    TaskUpdate u;
    u.task_id = tl_.tasks[i].task_id;
    u.state = TaskState::kPending;
    u.reason = started_ ? "not started: the run ended before its start time (" +
                              FormatTime(tl_.tasks[i].start) + ")"
                        : "not started: " + final_reason_;
    task_updates_.push_back(std::move(u));
  }
  Flush();

  if (!results_dir_.empty()) {
    Store& store = env_.store();
    ResultsInput in;
    in.gridemu_version = env_.options().version;
    auto rec = store.GetExperiment(rec_.id);
    in.experiment = rec.ok() ? *rec : rec_;
    if (auto t = store.ListTransitions(rec_.id); t.ok()) in.transitions = *t;
    TransitionRecord last;
    last.from = state_;
    last.to = *final_;
    last.unix_ns = UnixNanosNow();
    last.reason = final_reason_;
    in.transitions.push_back(last);
    if (auto t = store.ListTasks(rec_.id); t.ok()) in.tasks = *t;
    if (auto m = store.ListMetrics(rec_.id, 0, 50'000'000); m.ok()) in.metrics = *m;
    if (auto p = store.GetPlacement(rec_.id); p.ok()) in.placement = *p;
    for (size_t i = 0; i < tl_.events.size(); ++i) {
      const EventAction& a = tl_.events[i];
      const EventRt& rt = event_rt_[i];
      EventRow row;
      row.event_index = a.event_index;
      row.step = a.step;
      row.kind = ActionKindName(a);
      row.target = ActionTarget(exp_, a);
      row.planned_ns = a.at.count();
      if (rt.applied_unix_ns && t0_unix_ns_ != 0)
        row.applied_ns = *rt.applied_unix_ns - t0_unix_ns_;
      row.error = rt.error;
      if (!rt.dispatched) {
        row.error = started_ ? "not reached: the run ended first" : "not reached: never ran";
      } else if (rt.replies_pending > 0) {
        row.error = "no answer from the agent";
      }
      in.events.push_back(std::move(row));
    }
    for (const auto& h : hosts_) {
      PnodeReport pr;
      pr.host_id = h.host;
      pr.vnodes = h.vnodes;
      if (const AgentInfo* a = env_.registry().Find(h.host)) {
        pr.address = a->hello.address();
        pr.kernel_release = a->hello.capabilities().kernel_release();
        pr.shaping_backend = a->hello.capabilities().active_shaping_backend();
        pr.agent_version = a->hello.version();
      }
      in.pnodes.push_back(std::move(pr));
    }
    in.final_state = *final_;
    in.final_reason = final_reason_;
    in.start_unix_ns = started_ ? t0_unix_ns_ : 0;
    in.end_unix_ns = end_unix_ns_;
    in.collected_files = collected_;
    in.notes = notes_;
    Status s = WriteResults(results_dir_, in);
    if (!s.ok()) {
      Log("cannot write the results: " + s.ToString());
    } else {
      (void)store.PutResults(rec_.id, {{"manifest", results_dir_ + "/manifest.json"},
                                       {"summary", results_dir_ + "/summary.txt"},
                                       {"tasks_csv", results_dir_ + "/tasks.csv"},
                                       {"events_csv", results_dir_ + "/events.csv"},
                                       {"metrics_csv", results_dir_ + "/metrics.csv"}});
    }
    if (!env_.options().keep_work_files) {
      std::error_code ec;
      fs::remove_all(results_dir_ + "/.work", ec);
    }
  }
  if (*final_ == ExperimentState::kCancelled && state_ != ExperimentState::kCancelling &&
      state_ != ExperimentState::kSubmitted && state_ != ExperimentState::kPlaced) {
    Transition(ExperimentState::kCancelling, final_reason_);
  }
  Transition(*final_, final_reason_);
  phase_ = Phase::kDone;
  requests_.clear();
  (void)now;
}

void Runner::Fail(const std::string& reason, Clock::time_point now) {
  if (phase_ == Phase::kDone) return;
  if (final_) {
    notes_.push_back("also: " + reason);
    Log("also: " + reason);
    return;
  }
  Log("failing: " + reason);
  final_ = ExperimentState::kFailed;
  final_reason_ = reason;
  stop_reason_ = "stopped: the experiment failed";
  switch (phase_) {
    case Phase::kPlacing:
      Finish(now);
      break;
    case Phase::kDeploying:
      StartTeardown(now);
      break;
    case Phase::kRunning:
      StopTasks(now);
      break;
    case Phase::kRecovering:
      AdvanceRecovery(now, now >= recovery_deadline_);
      break;
    default:
      break;
  }
}

Result<ExperimentState> Runner::Cancel(const std::string& reason, Clock::time_point now) {
  using S = ExperimentState;
  if (phase_ == Phase::kDone) {
    return FailedPreconditionError("experiment " + rec_.id + " is already " +
                                   std::string(ExperimentStateName(state_)));
  }
  if (state_ == S::kCancelling) return S::kCancelling;
  const std::string why = reason.empty() ? "cancel requested" : reason;
  if (phase_ == Phase::kPlacing) {
    final_ = S::kCancelled;
    final_reason_ = why + "; nothing was deployed";
    Finish(now);
    return state_;
  }
  Transition(S::kCancelling, why);
  if (!final_ || *final_ == S::kFinished) {
    final_ = S::kCancelled;
    final_reason_ = why;
  } else {
    notes_.push_back("cancel requested while " + PhaseName());
  }
  if (stop_reason_.empty() || *final_ == S::kCancelled) stop_reason_ = "cancelled";
  switch (phase_) {
    case Phase::kDeploying:
      StartTeardown(now);
      break;
    case Phase::kRunning:
      StopTasks(now);
      break;
    case Phase::kRecovering:
      AdvanceRecovery(now, now >= recovery_deadline_);
      break;
    default:
      break;  // stopping or tearing down already
  }
  return state_;
}

// ---------------------------------------------------------------- agents

std::optional<v1::ExperimentHeld> Runner::KeepOn(const std::string& host,
                                                 const v1::AgentHello& hello) const {
  bool mine = false;
  uint32_t vnodes = 0;
  for (const auto& h : hosts_) {
    if (h.host == host) {
      mine = true;
      vnodes = h.vnodes;
    }
  }
  if (!mine) return std::nullopt;
  const bool wanted = (phase_ == Phase::kRunning) ||
                      (phase_ == Phase::kRecovering && recovering_resume_ && !final_) ||
                      (phase_ == Phase::kStopping && final_ == ExperimentState::kFinished);
  if (!wanted) return std::nullopt;
  for (const auto& held : hello.held()) {
    if (held.experiment_id() == rec_.id && held.generation() == generation_) {
      v1::ExperimentHeld k;
      k.set_experiment_id(rec_.id);
      k.set_generation(generation_);
      k.set_vnodes(vnodes);
      return k;
    }
  }
  return std::nullopt;
}

void Runner::OnAgentHello(const std::string& host, const v1::AgentHello& hello,
                          Clock::time_point now, bool implicit) {
  HostRun* h = FindHost(host);
  if (h == nullptr) return;  // kPlacing: Tick() places
  const v1::ExperimentHeld* held = nullptr;
  for (const auto& x : hello.held()) {
    if (x.experiment_id() == rec_.id && x.generation() == generation_) held = &x;
  }
  // Task states the agent reports (a restarted controller re-syncs from them).
  if (held != nullptr) {
    for (const auto& te : held->tasks()) (void)OnTaskEvent(host, te, now);
  }
  switch (phase_) {
    case Phase::kRecovering:
      h->back = true;
      h->held_ok = held != nullptr;
      if (recovering_resume_ && !final_ && !h->held_ok) {
        Fail(implicit
                 ? "controller restarted; agent " + host +
                       " did not say AgentHello again (it only sends heartbeats), so its "
                       "shard cannot be re-synced"
                 : "controller restarted; agent " + host + " did not hold the shard (generation " +
                       std::to_string(generation_) + ")",
             now);
        return;
      }
      AdvanceRecovery(now, false);
      break;
    case Phase::kDeploying:
      if (held == nullptr && h->deploy_sent) {
        Fail("agent " + host + " restarted during the deploy and does not hold the shard", now);
      }
      break;
    case Phase::kRunning:
    case Phase::kStopping:
      if (held == nullptr) {
        if (exp_.on_pnode_failure == experiments::PnodeFailurePolicy::kContinue &&
            phase_ == Phase::kRunning) {
          OnAgentLost(host, "agent " + host + " restarted and lost the shard", now);
        } else if (phase_ == Phase::kRunning) {
          Fail("agent " + host + " restarted and no longer holds the shard", now);
        }
      }
      break;
    case Phase::kTearingDown:
      if (h->teardown_sent && !h->torn_down) {
        // Its answer may be lost with its previous connection: ask again.
        v1::Envelope env;
        env.mutable_teardown()->set_experiment_id(rec_.id);
        (void)SendTo(host, std::move(env), RequestKind::kTeardown, 0);
      }
      break;
    default:
      break;
  }
}

std::string Runner::LostVnodesLine(const std::string& host, const std::string& why) const {
  std::vector<std::string> names;
  for (size_t v = 0; v < placement_.pnode_of_vnode.size(); ++v) {
    if (placement_.pnodes[placement_.pnode_of_vnode[v]] == host) {
      names.push_back(exp_.topology.vnode(static_cast<topology::VnodeId>(v)).name);
    }
  }
  return "pnode " + host + " lost (" + why + "): " + std::to_string(names.size()) + " vnode" +
         (names.size() == 1 ? "" : "s") + (names.empty() ? "" : ": " + NameList(names));
}

std::string Runner::HeldVnodes(const std::string& host) const {
  const std::string line = LostVnodesLine(host, "");
  const size_t colon = line.find("): ");
  return "it held " + line.substr(colon == std::string::npos ? 0 : colon + 3);
}

std::string Runner::ReportLost(const std::string& host, const std::string& why) {
  const std::string line = LostVnodesLine(host, why);
  if (lost_hosts_.insert(host).second) {
    notes_.push_back(line);
    Status s = env_.store().AddLostVnodes(rec_.id, line);
    if (!s.ok()) Log("store: " + s.ToString());
  }
  return line;
}

void Runner::OnAgentLost(const std::string& host, const std::string& reason,
                         Clock::time_point now) {
  HostRun* h = FindHost(host);
  if (h == nullptr) return;
  // Its vnodes: for a lost pnode of a deployed run, name them (truncated).
  const bool deployed =
      phase_ == Phase::kDeploying || phase_ == Phase::kRunning || phase_ == Phase::kStopping;
  std::string lost;
  if (deployed && h->vnodes > 0) {
    ReportLost(host, reason);
    lost = "; " + HeldVnodes(host);
  }
  // Started tasks of its vnodes that have not ended: lost (pending ones are
  // marked lost when their turn comes).
  auto mark_tasks_lost = [&] {
    for (size_t i = 0; i < task_rt_.size(); ++i) {
      if (HostOfVnode(tl_.tasks[i].vnode) != host || IsEndedTaskState(task_rt_[i].state)) continue;
      if (task_rt_[i].state == TaskState::kPending) continue;
      TaskUpdate u;
      u.state = TaskState::kLost;
      u.reason = "pnode " + host + " lost";
      SetTaskState(i, std::move(u));
    }
  };
  switch (phase_) {
    case Phase::kDeploying:
      Fail("agent " + host + " lost during the deploy: " + reason + lost, now);
      break;
    case Phase::kRunning:
      if (exp_.on_pnode_failure == experiments::PnodeFailurePolicy::kContinue) {
        Log("continuing without " + host + " (on_pnode_failure: continue)" + lost);
        notes_.push_back("agent " + host + " lost: " + reason + "; its tasks are marked lost");
        mark_tasks_lost();
        bool any_alive = false;
        for (const auto& x : hosts_) any_alive = any_alive || env_.registry().IsAlive(x.host);
        if (!any_alive) Fail("every pnode of the experiment was lost (" + reason + ")", now);
      } else {
        // Its tasks cannot report their end any more: mark them lost now, so
        // that stopping waits only for the tasks of the pnodes still alive.
        mark_tasks_lost();
        Fail("agent " + host + " lost: " + reason + lost, now);
      }
      break;
    case Phase::kStopping:
      for (size_t i = 0; i < task_rt_.size(); ++i) {
        if (HostOfVnode(tl_.tasks[i].vnode) != host || !IsActive(task_rt_[i].state)) continue;
        TaskUpdate u;
        u.state = TaskState::kLost;
        u.reason = "pnode " + host + " lost";
        SetTaskState(i, std::move(u));
      }
      if (AllTasksQuiet()) CollectAndTeardown(now);
      break;
    case Phase::kTearingDown:
      if (h->teardown_sent && !h->torn_down) {
        notes_.push_back("teardown: agent " + host + " lost before it answered (" + reason +
                         "); it removes this experiment's objects when it registers again");
        env_.Orphan(host, rec_.id, generation_);
        h->torn_down = true;
        MaybeFinishTeardown(now);
      }
      break;
    default:
      break;
  }
}

void Runner::AdvanceRecovery(Clock::time_point now, bool deadline_passed) {
  if (phase_ != Phase::kRecovering) return;
  bool all_back = true;
  std::string missing;
  for (const auto& h : hosts_) {
    if (!h.back) {
      all_back = false;
      missing += (missing.empty() ? "" : ", ") + h.host;
    }
  }
  if (!all_back && !deadline_passed) return;
  if (!all_back && !final_) {
    final_ = ExperimentState::kFailed;
    final_reason_ = "controller restarted; agent(s) " + missing +
                    " did not register again within " + FormatTime(env_.options().recovery_timeout);
    Log("failing: " + final_reason_);
  }
  if (!final_ && recovering_resume_) {
    Resume(now);
    return;
  }
  if (stop_reason_.empty()) stop_reason_ = "stopped: the experiment failed";
  // Tear down on the agents that are back; the others drop the experiment
  // when they register (it is not in their Welcome.keep).
  if (*final_ == ExperimentState::kFinished && started_) {
    // A collection interrupted by the restart: kill what may still run, collect, tear down.
    StopTasks(now);
  } else {
    StartTeardown(now);
  }
}

void Runner::Resume(Clock::time_point now) {
  phase_ = Phase::kRunning;
  started_ = true;
  const int64_t since = UnixNanosNow() - t0_unix_ns_;
  t0_ = now - nanoseconds(std::max<int64_t>(0, since));
  Log("resumed after the controller restart, " + Secs(nanoseconds(since)) + " into the run");
  // Pending tasks whose start passed are started now (late); tasks the agent
  // did not report keep their stored state until the end of the run. Events
  // applied before the restart are not applied again.
  resume_elapsed_ = duration_cast<nanoseconds>(now - t0_);
  next_task_ = 0;
  next_event_ = 0;
  RunTimeline(now);
}

void Runner::OnMetrics(const std::string& host, const v1::MetricsBatch& m) {
  std::vector<MetricSample> samples;
  const int64_t t = m.unix_ns() != 0 ? static_cast<int64_t>(m.unix_ns()) : UnixNanosNow();
  for (const auto& l : m.links()) {
    const std::string p = l.direction().empty() ? "" : l.direction() + "_";
    samples.push_back({t, l.link(), p + "tx_packets", static_cast<double>(l.tx_packets())});
    samples.push_back({t, l.link(), p + "tx_bytes", static_cast<double>(l.tx_bytes())});
    samples.push_back({t, l.link(), p + "dropped_loss", static_cast<double>(l.dropped_loss())});
    samples.push_back({t, l.link(), p + "dropped_queue", static_cast<double>(l.dropped_queue())});
    if (l.delayed() != 0) {
      samples.push_back({t, l.link(), p + "delayed", static_cast<double>(l.delayed())});
    }
  }
  for (const auto& v : m.vnodes()) {
    samples.push_back({t, v.vnode(), "cpu_seconds", static_cast<double>(v.cpu_ns()) / 1e9});
    samples.push_back({t, v.vnode(), "memory_bytes", static_cast<double>(v.memory_bytes())});
    samples.push_back({t, v.vnode(), "pids", static_cast<double>(v.pids())});
  }
  if (samples.empty()) return;
  Status s = env_.store().AppendMetrics(rec_.id, samples);
  if (!s.ok()) Log("store: cannot append metrics from " + host + ": " + s.ToString());
}

void Runner::OnError(const std::string& host, const v1::Envelope& env, Clock::time_point now) {
  const std::string what = env.error().code() + ": " + env.error().message();
  auto it = requests_.find(env.request_id());
  if (it == requests_.end()) {
    Log("error from " + host + " (request " + std::to_string(env.request_id()) + "): " + what);
    return;
  }
  const Request req = it->second;
  switch (req.kind) {
    case RequestKind::kDeploy:
      if (phase_ == Phase::kDeploying) Fail("deploy refused by " + host + ": " + what, now);
      break;
    case RequestKind::kExec: {
      const size_t i = req.index;
      if (IsEndedTaskState(task_rt_[i].state)) break;
      TaskUpdate u;
      u.state = TaskState::kFailed;
      u.reason = "the agent refused to start it: " + what;
      u.end_unix_ns = UnixNanosNow();
      SetTaskState(i, std::move(u));
      break;
    }
    case RequestKind::kSignal:
      Log("signal to " + tl_.tasks[req.index].task_id + " refused by " + host + ": " + what);
      break;
    case RequestKind::kApplyEvent: {
      v1::EventApplied ea;
      ea.set_event_id(tl_.events[req.index].event_id);
      ea.mutable_error()->CopyFrom(env.error());
      OnEventApplied(host, ea, now);
      break;
    }
    case RequestKind::kTeardown:
      if (HostRun* h = FindHost(host); h != nullptr && !h->torn_down) {
        notes_.push_back("teardown refused by " + host + ": " + what);
        h->torn_down = true;
        MaybeFinishTeardown(now);
      }
      break;
  }
}

Status Runner::OnMessage(const std::string& host, const v1::Envelope& env, Clock::time_point now) {
  if (FindHost(host) == nullptr) {
    return FailedPreconditionError("experiment " + rec_.id + " is not placed on " + host);
  }
  if (env.generation() != 0 && env.generation() != generation_ &&
      env.body_case() != v1::Envelope::kTornDown) {
    return FailedPreconditionError("experiment " + rec_.id + " is at generation " +
                                   std::to_string(generation_) + ", not " +
                                   std::to_string(env.generation()));
  }
  switch (env.body_case()) {
    case v1::Envelope::kShardStatus:
      OnShardStatus(host, env.shard_status(), now);
      return Status::Ok();
    case v1::Envelope::kTaskEvent:
      return OnTaskEvent(host, env.task_event(), now);
    case v1::Envelope::kEventApplied:
      OnEventApplied(host, env.event_applied(), now);
      return Status::Ok();
    case v1::Envelope::kTornDown:
      OnTornDown(host, env.torn_down(), now);
      return Status::Ok();
    case v1::Envelope::kMetricsBatch:
      OnMetrics(host, env.metrics_batch());
      return Status::Ok();
    case v1::Envelope::kError:
      OnError(host, env, now);
      return Status::Ok();
    default:
      return InvalidArgumentError("unexpected message for an experiment");
  }
}

}  // namespace gridemu::controller::orch

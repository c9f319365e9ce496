// The agent side of the protocol. See agent_core.h.
#include "gridemu/node-agent/agent_core.h"

#include <google/protobuf/arena.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <set>

#include "gridemu/common/clock.h"
#include "gridemu/node-agent/agent_convert.h"
#include "gridemu/node-agent/runtime.h"

namespace gridemu::agent {
namespace {

using std::chrono::milliseconds;

constexpr size_t kMaxAnswers = 65536;

std::string BodyName(v1::Envelope::BodyCase c) {
  const auto* d = v1::Envelope::descriptor()->FindFieldByNumber(static_cast<int>(c));
  return d == nullptr ? "nothing" : d->name();
}

Status OlderGeneration(const RequestKey& key, uint64_t deployed) {
  return FailedPreconditionError("generation " + std::to_string(key.generation) +
                                 " is older than generation " + std::to_string(deployed) +
                                 " of experiment " + key.experiment + " on this pnode");
}

}  // namespace

Status CheckEventShape(const v1::ApplyEvent& ev) {
  switch (ev.action_case()) {
    case v1::ApplyEvent::kLinkSet:
    case v1::ApplyEvent::kLinkState:
      return Status::Ok();
    case v1::ApplyEvent::kNodeAction: {
      const v1::NodeAction& na = ev.node_action();
      const std::string& a = na.action();
      if (a != "kill" && a != "stop" && a != "start" && a != "freeze" && a != "thaw") {
        return InvalidArgumentError("node action '" + a +
                                    "': expected kill, stop, start, freeze or thaw");
      }
      if (na.vnodes().empty()) return InvalidArgumentError("node action without vnodes");
      return Status::Ok();
    }
    case v1::ApplyEvent::ACTION_NOT_SET:
      break;
  }
  return InvalidArgumentError("ApplyEvent without an action");
}

AgentCore::AgentCore(CoreOptions options, AgentBackend* backend, Wire* wire)
    : options_(std::move(options)),
      backend_(backend),
      wire_(wire),
      heartbeat_(options_.heartbeat) {
  backend_->Bind(this);
}

CoreStats AgentCore::Stats() const {
  CoreStats s;
  s.hellos = hellos_.Get();
  s.welcomes = welcomes_.Get();
  s.heartbeats = heartbeats_.Get();
  s.deploys = deploys_.Get();
  s.execs = execs_.Get();
  s.signals = signals_.Get();
  s.events = events_.Get();
  s.teardowns = teardowns_.Get();
  s.errors_sent = errors_sent_.Get();
  s.errors_received = errors_received_.Get();
  s.messages_received = messages_received_.Get();
  s.bytes_received = bytes_received_.Get();
  s.messages_sent = messages_sent_.Get();
  s.bytes_sent = bytes_sent_.Get();
  return s;
}

// ---------------------------------------------------------------- sending

void AgentCore::SendRaw(const std::string& bytes) {
  messages_sent_.Add();
  bytes_sent_.Add(bytes.size());
  wire_->Send(bytes);
}

void AgentCore::Send(const v1::Envelope& env) {
  std::string bytes;
  env.SerializeToString(&bytes);
  SendRaw(bytes);
}

// Sends an answer to `key` and remembers it for repeats. A newer ShardStatus
// replaces an older one in the memory (a repeat gets the latest).
void AgentCore::Reply(const RequestKey& key, v1::Envelope env) {
  env.set_request_id(key.request_id);
  env.set_experiment_id(key.experiment);
  env.set_generation(key.generation);
  std::string bytes;
  env.SerializeToString(&bytes);
  auto [it, fresh] = answers_.try_emplace(key);
  if (fresh) {
    answer_order_.push_back(key);
    while (answer_order_.size() > kMaxAnswers) {
      answers_.erase(answer_order_.front());
      answer_order_.pop_front();
    }
  }
  auto& list = it->second;
  if (env.body_case() == v1::Envelope::kShardStatus && !list.empty() &&
      list.back().first == v1::Envelope::kShardStatus) {
    list.back().second = bytes;
  } else {
    list.emplace_back(env.body_case(), bytes);
  }
  SendRaw(bytes);
}

// Remembers that `key` was handled without an answer (Signal, Exec).
void AgentCore::NoteHandled(const RequestKey& key) {
  if (answers_.try_emplace(key).second) answer_order_.push_back(key);
}

void AgentCore::ReplyError(const RequestKey& key, const Status& st) {
  if (options_.log) {
    spdlog::info("request {} of {} (gen {}) refused: {}", key.request_id, key.experiment,
                 key.generation, st.ToString());
  }
  errors_sent_.Add();
  v1::Envelope env;
  *env.mutable_error() = ErrorFromStatus(st);
  Reply(key, std::move(env));
}

// An error about a message that has no usable key: not remembered.
void AgentCore::SendError(const RequestKey& key, const Status& st) {
  if (options_.log) spdlog::info("message refused: {}", st.ToString());
  errors_sent_.Add();
  v1::Envelope env;
  env.set_request_id(key.request_id);
  env.set_experiment_id(key.experiment);
  env.set_generation(key.generation);
  *env.mutable_error() = ErrorFromStatus(st);
  Send(env);
}

uint64_t AgentCore::NewJob(JobKind kind, const std::string& experiment, uint64_t generation,
                           std::optional<RequestKey> key) {
  const uint64_t id = ++next_job_;
  jobs_[id] = Job{kind, experiment, generation, std::move(key)};
  return id;
}

// ---------------------------------------------------------------- hello

void AgentCore::SendHello() {
  v1::Envelope env;
  v1::AgentHello* h = env.mutable_agent_hello();
  h->set_host_id(options_.host_id);
  h->set_version(options_.version);
  h->set_address(options_.address);
  backend_->Describe(h);
  Result<std::vector<HeldExperiment>> found = backend_->Held();
  if (found.ok()) {
    held_ = std::move(*found);
  } else {
    spdlog::warn("cannot list what this pnode holds: {}", found.status().ToString());
    held_.clear();
  }
  for (const HeldExperiment& e : held_) {
    v1::ExperimentHeld* x = h->add_held();
    x->set_experiment_id(e.experiment);
    x->set_generation(e.generation);
    x->set_vnodes(e.vnodes);
    // A live experiment (the controller restarted): the state of its tasks.
    auto it = exps_.find(e.experiment);
    if (!e.live || it == exps_.end()) continue;
    for (const auto& [task_id, t] : it->second.tasks) {
      if (t.last.state() != v1::TaskEvent::STATE_UNSPECIFIED) *x->add_tasks() = t.last;
    }
  }
  if (options_.log) {
    spdlog::info("hello as {} ({} experiments held)", options_.host_id, held_.size());
  }
  hellos_.Add();
  Send(env);
}

void AgentCore::HandleWelcome(const v1::Welcome& w) {
  if (welcomed()) {
    spdlog::debug("duplicate Welcome ignored");
    return;
  }
  welcomed_.store(true, std::memory_order_relaxed);
  welcomes_.Add();
  if (w.heartbeat_interval_ms() > 0) heartbeat_ = milliseconds(w.heartbeat_interval_ms());
  next_heartbeat_ =
      AgentClock::now() + std::chrono::duration_cast<AgentClock::duration>(
                              heartbeat_ * std::clamp(options_.heartbeat_phase, 0.0, 1.0));
  std::map<std::string, uint64_t> keep;
  last_keep_.clear();
  for (const v1::ExperimentHeld& k : w.keep()) {
    keep[k.experiment_id()] = k.generation();
    last_keep_.push_back(k.experiment_id());
  }
  if (options_.log) {
    spdlog::info("welcomed by controller {} (keep {} of {} held)", w.controller_version(),
                 keep.size(), held_.size());
  }
  if (on_welcomed) on_welcomed();
  const std::vector<HeldExperiment> held = held_;
  for (const HeldExperiment& h : held) {
    const bool kept = keep.count(h.experiment) != 0;
    if (h.live) {
      if (!kept) StartTeardown(h.experiment, std::nullopt);
      continue;
    }
    if (kept && h.complete) {
      Exp& e = exps_[h.experiment];
      e.generation = h.generation;
      e.phase = Phase::kAdopting;
      const uint64_t job = NewJob(JobKind::kAdopt, h.experiment, h.generation);
      e.last_job = job;
      backend_->Adopt(job, h.experiment, h.generation);
    } else {
      if (kept) {
        spdlog::warn("cannot keep {}: its deploy never finished; removing it", h.experiment);
      }
      StartTeardown(h.experiment, std::nullopt);
    }
  }
}

void AgentCore::AdoptDone(uint64_t job, AdoptOutcome out) {
  auto j = jobs_.find(job);
  if (j == jobs_.end()) return;
  const Job info = j->second;
  jobs_.erase(j);
  v1::Envelope env;
  env.set_experiment_id(info.experiment);
  env.set_generation(info.generation);
  v1::ShardStatus* ss = env.mutable_shard_status();
  auto it = exps_.find(info.experiment);
  if (out.status.ok()) {
    if (options_.log) {
      spdlog::info("adopted experiment {} (generation {})", info.experiment, info.generation);
    }
    ss->set_phase(v1::ShardStatus::PHASE_READY);
    ss->set_total(out.total);
    ss->set_done(out.total);
  } else {
    spdlog::warn("could not adopt {}: {}; removed it ({} vnodes)", info.experiment,
                 out.status.ToString(), out.vnodes_removed);
    ss->set_phase(v1::ShardStatus::PHASE_FAILED);
    v1::ObjectError* oe = ss->add_errors();
    oe->set_object("shard");
    oe->set_message("adoption after an agent restart failed: " + out.status.ToString());
  }
  if (it != exps_.end() && it->second.last_job == job) {
    if (out.status.ok()) {
      Exp& e = it->second;
      e.phase = Phase::kReady;
      e.last_status = *ss;
      e.metrics_interval = out.metrics_interval;
      e.next_metrics = AgentClock::now() + e.metrics_interval;
    } else {
      exps_.erase(it);
    }
  }
  Send(env);
}

void AgentCore::HandleControllerError(const v1::Envelope& env) {
  errors_received_.Add();
  if (on_controller_error) on_controller_error(env.error());
  if (options_.log) {
    spdlog::warn("controller error for request {}: {} {}", env.request_id(), env.error().code(),
                 env.error().message());
  }
  // A controller that does not know this agent (it restarted and lost the
  // registration) refuses its heartbeats: register again. The new AgentHello
  // lists what the agent holds, with its tasks' states.
  if (options_.rehello_on_refusal && welcomed() && env.experiment_id().empty() &&
      env.error().code() == StatusCodeName(StatusCode::kFailedPrecondition)) {
    if (options_.log) spdlog::info("the controller does not know this agent: saying hello again");
    Rehello();
  }
}

void AgentCore::Rehello() {
  welcomed_.store(false, std::memory_order_relaxed);
  next_hello_ = AgentClock::now();
}

void AgentCore::ForgetAll() {
  backend_->ForgetAll();
  exps_.clear();
  jobs_.clear();
  answers_.clear();
  answer_order_.clear();
  held_.clear();
}

void AgentCore::Start(AgentClock::time_point now) { next_hello_ = now + options_.first_hello_delay; }

// ---------------------------------------------------------------- deploy

void AgentCore::HandleDeploy(const RequestKey& key, const v1::DeployShard& shard) {
  deploys_.Add();
  auto it = exps_.find(key.experiment);
  if (it != exps_.end()) {
    Exp& e = it->second;
    if (key.generation < e.generation) return ReplyError(key, OlderGeneration(key, e.generation));
    const bool busy = e.phase == Phase::kDeploying || e.phase == Phase::kAdopting;
    if (key.generation == e.generation) {
      if (e.phase == Phase::kReady) {
        v1::Envelope env;
        *env.mutable_shard_status() = e.last_status;
        env.mutable_shard_status()->set_phase(v1::ShardStatus::PHASE_READY);
        return Reply(key, std::move(env));
      }
      if (busy) {
        e.deploy_waiters.push_back(key);
        v1::Envelope env;
        *env.mutable_shard_status() = e.last_status;
        env.mutable_shard_status()->set_phase(v1::ShardStatus::PHASE_DEPLOYING);
        return Reply(key, std::move(env));
      }
    } else if (busy || e.phase == Phase::kReady) {
      return ReplyError(
          key, UnimplementedError("experiment " + key.experiment + " is deployed at generation " +
                                  std::to_string(e.generation) +
                                  "; changing a deployed shard is not supported yet (tear it "
                                  "down first)"));
    }
  }
  // Deploy (after whatever the backend has queued for this experiment, e.g.
  // a teardown).
  Exp& e = exps_[key.experiment];
  e.generation = key.generation;
  e.phase = Phase::kDeploying;
  e.deploy_waiters = {key};
  e.last_status.Clear();
  e.last_status.set_phase(v1::ShardStatus::PHASE_DEPLOYING);
  e.last_status.set_total(static_cast<uint32_t>(shard.vnodes_size() + shard.links_size()));
  const uint64_t job = NewJob(JobKind::kDeploy, key.experiment, key.generation);
  e.last_job = job;
  e.deploy_job = job;
  backend_->Deploy(job, shard);  // may finish at once: `e` is not used after this
}

void AgentCore::DeployProgress(uint64_t job, uint32_t done, uint32_t total) {
  auto j = jobs_.find(job);
  if (j == jobs_.end()) return;
  auto it = exps_.find(j->second.experiment);
  if (it == exps_.end() || it->second.deploy_job != job) return;
  Exp& e = it->second;
  e.last_status.set_phase(v1::ShardStatus::PHASE_DEPLOYING);
  e.last_status.set_done(done);
  e.last_status.set_total(total);
  for (const RequestKey& k : e.deploy_waiters) {
    v1::Envelope env;
    *env.mutable_shard_status() = e.last_status;
    Reply(k, std::move(env));
  }
}

void AgentCore::DeployDone(uint64_t job, DeployOutcome out) {
  auto j = jobs_.find(job);
  if (j == jobs_.end()) return;
  const std::string exp = j->second.experiment;
  jobs_.erase(j);
  if (options_.log && !out.ok) {
    spdlog::warn("experiment {}: deploy failed ({} errors, first: {} {})", exp, out.errors.size(),
                 out.errors.empty() ? "" : out.errors[0].object,
                 out.errors.empty() ? "" : out.errors[0].message);
  }
  auto it = exps_.find(exp);
  if (it == exps_.end() || it->second.deploy_job != job) return;
  Exp& e = it->second;
  v1::ShardStatus st;
  st.set_phase(out.ok ? v1::ShardStatus::PHASE_READY : v1::ShardStatus::PHASE_FAILED);
  st.set_done(out.done);
  st.set_total(out.total);
  for (const ShardObjectError& oe : out.errors) {
    v1::ObjectError* x = st.add_errors();
    x->set_object(oe.object);
    x->set_message(oe.message);
  }
  e.last_status = st;
  const std::vector<RequestKey> waiters = std::move(e.deploy_waiters);
  e.deploy_waiters.clear();
  if (e.last_job == job) {
    e.phase = out.ok ? Phase::kReady : Phase::kFailed;
    if (out.ok) {
      e.metrics_interval = out.metrics_interval;
      e.next_metrics = AgentClock::now() + e.metrics_interval;
    }
  }
  for (const RequestKey& k : waiters) {
    v1::Envelope env;
    *env.mutable_shard_status() = st;
    Reply(k, std::move(env));
  }
}

// ---------------------------------------------------------------- teardown

// Starts a teardown of `experiment`; answers `key` (if any) with TornDown,
// else announces it unsolicited (request id 0).
void AgentCore::StartTeardown(const std::string& experiment, std::optional<RequestKey> key) {
  Exp& e = exps_[experiment];
  e.phase = Phase::kTearingDown;
  const uint64_t job = NewJob(JobKind::kTeardown, experiment, e.generation, std::move(key));
  e.last_job = job;
  backend_->Teardown(job, experiment);  // may finish at once: `e` may be gone after this
}

void AgentCore::TeardownDone(uint64_t job, TeardownOutcome out) {
  auto j = jobs_.find(job);
  if (j == jobs_.end()) return;
  const Job info = j->second;
  jobs_.erase(j);
  v1::Envelope env;
  v1::TornDown* td = env.mutable_torn_down();
  td->set_experiment_id(info.experiment);
  td->set_vnodes_removed(out.vnodes_removed);
  for (const ShardObjectError& oe : out.errors) {
    v1::ObjectError* x = td->add_errors();
    x->set_object(oe.object);
    x->set_message(oe.message);
  }
  auto it = exps_.find(info.experiment);
  if (it != exps_.end()) {
    // Tasks end with their vnodes; a deploy queued after this teardown
    // starts with none.
    it->second.tasks.clear();
    if (it->second.last_job == job) exps_.erase(it);
  }
  if (info.key) {
    Reply(*info.key, std::move(env));
  } else {
    env.set_experiment_id(info.experiment);
    env.set_generation(info.generation);
    Send(env);
  }
}

void AgentCore::HandleTeardown(const RequestKey& key) {
  auto it = exps_.find(key.experiment);
  if (it != exps_.end() && key.generation < it->second.generation) {
    return ReplyError(key, OlderGeneration(key, it->second.generation));
  }
  teardowns_.Add();
  if (it != exps_.end()) it->second.generation = std::max(it->second.generation, key.generation);
  StartTeardown(key.experiment, key);
}

// ---------------------------------------------------------------- tasks and events

Status AgentCore::CheckReady(const RequestKey& key) const {
  auto it = exps_.find(key.experiment);
  if (it == exps_.end() || it->second.phase != Phase::kReady) {
    return FailedPreconditionError("experiment '" + key.experiment +
                                   "' is not deployed (READY) on this pnode");
  }
  if (key.generation != it->second.generation) {
    return FailedPreconditionError(
        "generation " + std::to_string(key.generation) + " of experiment " + key.experiment +
        (key.generation < it->second.generation ? " is older than" : " is not") +
        " the deployed generation " + std::to_string(it->second.generation));
  }
  return Status::Ok();
}

void AgentCore::HandleExec(const RequestKey& key, const v1::Exec& x) {
  execs_.Add();
  Status st = CheckReady(key);
  if (!st.ok()) return ReplyError(key, st);
  Exp& e = exps_.at(key.experiment);
  if (x.task_id().empty()) return ReplyError(key, InvalidArgumentError("Exec without a task_id"));
  if (e.tasks.count(x.task_id()) != 0) {
    return ReplyError(key, AlreadyExistsError("task '" + x.task_id() + "' exists already in " +
                                              key.experiment));
  }
  if (x.shell().empty() == (x.argv_size() == 0)) {
    return ReplyError(key, InvalidArgumentError("Exec needs exactly one of shell and argv"));
  }
  Task t;
  t.key = key;
  t.vnode = x.vnode();
  t.stop_grace = std::chrono::milliseconds(x.stop_grace_ms());
  const int64_t wait_ns = static_cast<int64_t>(x.start_unix_ns()) - UnixNanosNow();
  if (x.start_unix_ns() != 0 && wait_ns > 0) {
    // Due later: the steady clock decides when (a wall-clock step does not move it).
    t.scheduled = x;
    t.start_at = AgentClock::now() + std::chrono::nanoseconds(wait_ns);
    e.tasks[x.task_id()] = std::move(t);
    NoteHandled(key);
    return;
  }
  // Known before the backend starts it: its first event may come at once.
  e.tasks[x.task_id()] = std::move(t);
  StartTask(key, x, /*accepted_earlier=*/false);
}

void AgentCore::StartTask(const RequestKey& key, const v1::Exec& x, bool accepted_earlier) {
  Status st = backend_->Exec(key.experiment, x);
  if (!st.ok()) {
    Exp& e = exps_.at(key.experiment);
    auto it = e.tasks.find(x.task_id());
    if (accepted_earlier && it != e.tasks.end()) {
      // Accepted earlier: the failure is the task's end, not a refusal.
      v1::TaskEvent te;
      te.set_task_id(x.task_id());
      te.set_vnode(x.vnode());
      te.set_state(v1::TaskEvent::STATE_FAILED_TO_START);
      te.set_reason(st.ToString());
      te.set_end_unix_ns(static_cast<uint64_t>(UnixNanosNow()));
      TaskChanged(key.experiment, std::move(te));
      return;
    }
    e.tasks.erase(x.task_id());
    return ReplyError(key, st);
  }
  NoteHandled(key);
}

void AgentCore::HandleSignal(const RequestKey& key, const v1::Signal& s) {
  signals_.Add();
  Status st = CheckReady(key);
  if (!st.ok()) return ReplyError(key, st);
  Exp& e = exps_.at(key.experiment);
  auto t = e.tasks.find(s.task_id());
  if (t == e.tasks.end()) {
    return ReplyError(
        key, NotFoundError("no task '" + s.task_id() + "' in experiment " + key.experiment));
  }
  Result<TaskSignal> sig = ParseTaskSignal(s.signal());
  if (!sig.ok()) return ReplyError(key, sig.status());
  if (t->second.scheduled) {
    // Not started yet: a term or kill cancels it (reported as killed before it ran).
    if (*sig == TaskSignal::kTerm || *sig == TaskSignal::kKill || *sig == TaskSignal::kInt) {
      t->second.scheduled.reset();
      v1::TaskEvent te;
      te.set_task_id(s.task_id());
      te.set_vnode(t->second.vnode);
      te.set_state(v1::TaskEvent::STATE_EXITED);
      te.set_signal(SignalNumber(*sig));
      te.set_reason("stopped before it started");
      te.set_end_unix_ns(static_cast<uint64_t>(UnixNanosNow()));
      TaskChanged(key.experiment, std::move(te));
    }
    NoteHandled(key);
    return;
  }
  st = backend_->Signal(key.experiment, s.task_id(), *sig);
  if (!st.ok()) return ReplyError(key, st);
  auto again = exps_.find(key.experiment);  // the backend may have reported the end
  if (*sig == TaskSignal::kTerm && s.grace_ms() > 0 && again != exps_.end()) {
    auto t2 = again->second.tasks.find(s.task_id());
    if (t2 != again->second.tasks.end() && !t2->second.Ended()) {
      t2->second.kill_at = AgentClock::now() + std::chrono::milliseconds(s.grace_ms());
    }
  }
  NoteHandled(key);
}

void AgentCore::HandleApplyEvent(const RequestKey& key, const v1::ApplyEvent& ev) {
  events_.Add();
  Status st = CheckReady(key);
  if (st.ok()) st = CheckEventShape(ev);
  if (st.ok()) st = backend_->CheckEvent(key.experiment, ev);
  if (!st.ok()) return ReplyError(key, st);
  if (ev.has_node_action() && ev.node_action().action() == "stop") {
    // SIGTERM first; the vnodes stop once their tasks ended or their grace passed.
    Exp& e = exps_.at(key.experiment);
    const std::set<std::string> vnodes(ev.node_action().vnodes().begin(),
                                       ev.node_action().vnodes().end());
    PendingStop ps;
    ps.key = key;
    ps.event = ev;
    const AgentClock::time_point now = AgentClock::now();
    ps.deadline = now;
    std::vector<std::string> term;
    for (auto& [id, t] : e.tasks) {
      if (vnodes.count(t.vnode) == 0 || t.Ended()) continue;
      if (t.scheduled) continue;  // not started: the stop leaves it for later
      term.push_back(id);
      ps.tasks.push_back(id);
      ps.deadline = std::max(ps.deadline, now + t.stop_grace);
    }
    for (const std::string& id : term) {
      Status s = backend_->Signal(key.experiment, id, TaskSignal::kTerm);
      if (!s.ok() && options_.log) {
        spdlog::info("stop of {}: SIGTERM to task {}: {}", key.experiment, id, s.ToString());
      }
    }
    NoteHandled(key);
    auto again = exps_.find(key.experiment);
    if (again == exps_.end()) return;
    again->second.stops.push_back(std::move(ps));
    (void)RunTaskTimers(now);  // every task may have ended already
    return;
  }
  ApplyAndAnswer(key, ev);
}

void AgentCore::ApplyAndAnswer(const RequestKey& key, const v1::ApplyEvent& ev) {
  Status st = backend_->ApplyEvent(key.experiment, ev);
  v1::Envelope env;
  v1::EventApplied* ea = env.mutable_event_applied();
  ea->set_event_id(ev.event_id());
  ea->set_applied_unix_ns(UnixNanosNow());
  if (!st.ok()) *ea->mutable_error() = ErrorFromStatus(st);
  Reply(key, std::move(env));
}

AgentClock::time_point AgentCore::RunTaskTimers(AgentClock::time_point now) {
  AgentClock::time_point next = AgentClock::time_point::max();
  std::vector<std::pair<RequestKey, v1::Exec>> starts;
  std::vector<std::pair<std::string, std::string>> kills;  // experiment, task
  std::vector<std::pair<RequestKey, v1::ApplyEvent>> stops;
  for (auto& [exp, e] : exps_) {
    if (e.phase != Phase::kReady) continue;
    for (auto& [id, t] : e.tasks) {
      if (t.scheduled) {
        if (t.start_at <= now) {
          starts.emplace_back(t.key, std::move(*t.scheduled));
          t.scheduled.reset();
        } else {
          next = std::min(next, t.start_at);
        }
      }
      if (t.kill_at) {
        if (t.Ended()) {
          t.kill_at.reset();
        } else if (*t.kill_at <= now) {
          kills.emplace_back(exp, id);
          t.kill_at.reset();
        } else {
          next = std::min(next, *t.kill_at);
        }
      }
    }
    for (auto it = e.stops.begin(); it != e.stops.end();) {
      bool all_ended = true;
      for (const std::string& id : it->tasks) {
        auto t = e.tasks.find(id);
        if (t != e.tasks.end() && !t->second.Ended()) all_ended = false;
      }
      if (all_ended || it->deadline <= now) {
        stops.emplace_back(it->key, std::move(it->event));
        it = e.stops.erase(it);
      } else {
        next = std::min(next, it->deadline);
        ++it;
      }
    }
  }
  // Backend calls last: they may report task events (which change exps_).
  for (auto& [key, x] : starts) {
    if (exps_.count(key.experiment) != 0) StartTask(key, x, /*accepted_earlier=*/true);
  }
  for (const auto& [exp, id] : kills) {
    Status s = backend_->Signal(exp, id, TaskSignal::kKill);
    if (!s.ok() && options_.log) {
      spdlog::info("graceful stop of task {} of {}: SIGKILL: {}", id, exp, s.ToString());
    }
  }
  for (auto& [key, ev] : stops) {
    if (exps_.count(key.experiment) != 0) ApplyAndAnswer(key, ev);
  }
  if (!starts.empty() || !stops.empty()) next = std::min(next, now);  // look again soon
  return next;
}

void AgentCore::TaskChanged(const std::string& experiment, v1::TaskEvent event) {
  auto it = exps_.find(experiment);
  if (it == exps_.end()) return;  // a task of a torn-down experiment
  auto t = it->second.tasks.find(event.task_id());
  if (t == it->second.tasks.end()) return;  // a task of an adopted vnode
  t->second.last = event;
  v1::Envelope env;
  *env.mutable_task_event() = std::move(event);
  // The record stays (a repeated Exec gets the same events) until teardown.
  Reply(t->second.key, std::move(env));
}

// ---------------------------------------------------------------- dispatch

void AgentCore::OnMessage(std::string_view bytes) {
  messages_received_.Add();
  bytes_received_.Add(bytes.size());
  // An arena: a shard's hosts entries (100,000 at scale) are freed at once.
  google::protobuf::Arena arena;
  auto* env = google::protobuf::Arena::CreateMessage<v1::Envelope>(&arena);
  if (!env->ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) {
    return SendError({}, InvalidArgumentError("unparsable message: not a gridemu.v1.Envelope (" +
                                              std::to_string(bytes.size()) + " bytes)"));
  }
  RequestKey key{env->experiment_id(), env->generation(), env->request_id()};
  switch (env->body_case()) {
    case v1::Envelope::BODY_NOT_SET:
      return SendError(key, InvalidArgumentError("envelope without a body"));
    case v1::Envelope::kWelcome:
      return HandleWelcome(env->welcome());
    case v1::Envelope::kHeartbeat:
      return;
    case v1::Envelope::kError:
      return HandleControllerError(*env);
    case v1::Envelope::kDeployShard:
    case v1::Envelope::kExec:
    case v1::Envelope::kSignal:
    case v1::Envelope::kApplyEvent:
    case v1::Envelope::kTeardown:
      break;
    default:
      return SendError(key, InvalidArgumentError("agents do not accept " +
                                                 BodyName(env->body_case()) + " messages"));
  }
  // Experiment id and generation may also be in the body.
  v1::DeployShard* shard = nullptr;
  if (env->has_deploy_shard()) {
    shard = env->mutable_deploy_shard();
    if (key.experiment.empty()) key.experiment = shard->experiment_id();
    if (key.generation == 0) key.generation = shard->generation();
    if ((!shard->experiment_id().empty() && shard->experiment_id() != key.experiment) ||
        (shard->generation() != 0 && shard->generation() != key.generation)) {
      return SendError(
          key, InvalidArgumentError("DeployShard names experiment " + shard->experiment_id() +
                                    " generation " + std::to_string(shard->generation()) +
                                    ", its envelope " + env->experiment_id() + " generation " +
                                    std::to_string(env->generation())));
    }
    shard->set_experiment_id(key.experiment);
    shard->set_generation(key.generation);
  }
  if (env->has_teardown()) {
    const std::string& t = env->teardown().experiment_id();
    if (key.experiment.empty()) key.experiment = t;
    if (!t.empty() && t != key.experiment) {
      return SendError(key, InvalidArgumentError("Teardown names experiment " + t +
                                                 ", its envelope " + env->experiment_id()));
    }
  }
  if (auto it = answers_.find(key); it != answers_.end()) {
    spdlog::debug("repeated request {} of {}: answering again", key.request_id, key.experiment);
    for (const auto& [kind, b] : it->second) SendRaw(b);
    return;
  }
  if (!welcomed()) {
    return SendError(key, FailedPreconditionError("the agent has not been welcomed yet"));
  }
  if (!ValidateExperimentId(key.experiment).ok()) {
    return ReplyError(
        key, InvalidArgumentError("bad or missing experiment id '" + key.experiment + "'"));
  }
  switch (env->body_case()) {
    case v1::Envelope::kDeployShard:
      return HandleDeploy(key, *shard);
    case v1::Envelope::kExec:
      return HandleExec(key, env->exec());
    case v1::Envelope::kSignal:
      return HandleSignal(key, env->signal());
    case v1::Envelope::kApplyEvent:
      return HandleApplyEvent(key, env->apply_event());
    case v1::Envelope::kTeardown:
      return HandleTeardown(key);
    default:
      return;
  }
}

// ---------------------------------------------------------------- timers

AgentClock::time_point AgentCore::Tick(AgentClock::time_point now) {
  AgentClock::time_point next = backend_->Tick(now);
  if (!welcomed()) {
    if (now >= next_hello_) {
      SendHello();
      next_hello_ = now + options_.hello_retry;
    }
    next = std::min(next, next_hello_);
  } else {
    if (now >= next_heartbeat_) {
      v1::Envelope env;
      v1::Heartbeat* hb = env.mutable_heartbeat();
      hb->set_unix_ms(UnixNanosNow() / 1000000);
      hb->set_vnodes(backend_->VnodeCount());
      heartbeats_.Add();
      Send(env);
      next_heartbeat_ = std::max(next_heartbeat_ + heartbeat_, now);
    }
    next = std::min(next, next_heartbeat_);
  }
  next = std::min(next, RunTaskTimers(now));
  for (auto& [exp, e] : exps_) {
    if (e.phase != Phase::kReady || e.metrics_interval.count() <= 0) continue;
    if (now >= e.next_metrics) {
      v1::Envelope env;
      env.set_experiment_id(exp);
      env.set_generation(e.generation);
      *env.mutable_metrics_batch() = backend_->CollectMetrics(exp);
      Send(env);
      e.next_metrics = std::max(e.next_metrics + e.metrics_interval, now);
    }
    next = std::min(next, e.next_metrics);
  }
  return next;
}

}  // namespace gridemu::agent

// The real agent's backend. See pnode_backend.h.
#include "gridemu/node-agent/pnode_backend.h"

#include <spdlog/spdlog.h>
#include <sys/eventfd.h>
#include <sys/sysinfo.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>

#include "gridemu/common/clock.h"
#include "gridemu/common/files.h"
#include "gridemu/node-agent/agent_convert.h"

namespace gridemu::agent {
namespace {

std::string ReasonName(const TaskResult& r, bool kill_requested) {
  switch (r.reason) {
    case ExitReason::kExited:
      return "exited";
    case ExitReason::kSignaled:
      return "signalled";
    case ExitReason::kTimedOut:
      return "timeout";
    case ExitReason::kOomKilled:
      return "oom-killed";
    case ExitReason::kKilled:
      return kill_requested ? "signalled" : "vnode-killed";
    case ExitReason::kStartFailed:
      return "start-failed: " + r.error;
    case ExitReason::kLost:
      return "lost: " + r.error;
  }
  return "unknown";
}

uint64_t WallNs(std::chrono::system_clock::time_point t) {
  if (t.time_since_epoch().count() == 0) return 0;
  return static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count());
}

}  // namespace

PnodeBackend::PnodeBackend(VnodeRuntime* runtime, ShardApplier* applier,
                           PnodeBackendOptions options)
    : runtime_(runtime), applier_(applier), options_(std::move(options)) {
  wake_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (!options_.inline_jobs) worker_ = std::thread([this] { WorkerMain(); });
}

PnodeBackend::~PnodeBackend() {
  Stop();
  if (wake_fd_ >= 0) ::close(wake_fd_);
}

void PnodeBackend::Stop() {
  {
    std::lock_guard<std::mutex> l(wmu_);
    wstop_ = true;
    jobs_.clear();
  }
  wcv_.notify_all();
  if (worker_.joinable()) worker_.join();
  RunPosted();
}

// ---------------------------------------------------------------- threads

void PnodeBackend::Enqueue(std::function<void()> job) {
  if (options_.inline_jobs) {
    job();
    return;
  }
  {
    std::lock_guard<std::mutex> l(wmu_);
    jobs_.push_back(std::move(job));
  }
  wcv_.notify_one();
}

void PnodeBackend::Post(std::function<void()> fn) {
  if (options_.inline_jobs) {
    fn();
    return;
  }
  {
    std::lock_guard<std::mutex> l(pmu_);
    posted_.push_back(std::move(fn));
  }
  const uint64_t one = 1;
  (void)!::write(wake_fd_, &one, sizeof one);
}

void PnodeBackend::WorkerMain() {
  while (true) {
    std::function<void()> job;
    {
      std::unique_lock<std::mutex> l(wmu_);
      wcv_.wait(l, [&] { return wstop_ || !jobs_.empty(); });
      if (wstop_) return;
      job = std::move(jobs_.front());
      jobs_.pop_front();
    }
    job();
  }
}

void PnodeBackend::RunPosted() {
  std::deque<std::function<void()>> now;
  {
    std::lock_guard<std::mutex> l(pmu_);
    now.swap(posted_);
  }
  for (auto& fn : now) fn();
}

std::vector<int> PnodeBackend::PollFds() const {
  std::vector<int> fds{wake_fd_};
  if (runtime_->event_fd() >= 0) fds.push_back(runtime_->event_fd());
  return fds;
}

AgentClock::time_point PnodeBackend::Tick(AgentClock::time_point now) {
  uint64_t v;
  (void)!::read(wake_fd_, &v, sizeof v);
  RunPosted();
  PumpRuntime();
  // Runtime events may be queued by other threads without a wake-up.
  return now + std::chrono::milliseconds(100);
}

// ---------------------------------------------------------------- hello

void PnodeBackend::Describe(v1::AgentHello* h) {
  v1::Capacity* c = h->mutable_capacity();
  c->set_cores(std::max(1u, std::thread::hardware_concurrency()));
  struct sysinfo si {};
  if (::sysinfo(&si) == 0) c->set_memory_bytes(static_cast<uint64_t>(si.totalram) * si.mem_unit);
  c->set_max_vnodes(options_.max_vnodes != 0 ? options_.max_vnodes : 1000);
  v1::Capabilities* cap = h->mutable_capabilities();
  for (const std::string& r : options_.runtime_names) cap->add_runtimes(r);
  const netshape::Capabilities& caps = options_.capabilities;
  if (caps.netem && caps.htb) cap->add_shaping_backends("netem");
  if (caps.userspace_ok()) cap->add_shaping_backends("userspace");
  if (caps.htb) cap->add_kernel_features("sch_htb");
  if (caps.netem) cap->add_kernel_features("sch_netem");
  if (caps.nfqueue) cap->add_kernel_features("nfqueue");
  if (caps.iptables) cap->add_kernel_features("iptables_nfqueue");
  if (caps.ip6tables) cap->add_kernel_features("ip6tables_nfqueue");
  for (const std::string& f : options_.kernel_features) cap->add_kernel_features(f);
  struct utsname u {};
  if (::uname(&u) == 0) cap->set_kernel_release(u.release);
  if (!options_.active_shaping_backend.empty()) {
    cap->set_active_shaping_backend(options_.active_shaping_backend);
    if (Result<netshape::Backend> b = netshape::ParseBackend(options_.active_shaping_backend);
        b.ok()) {
      for (const std::string& p : netshape::HonouredParameters(*b, caps)) {
        cap->add_shaping_parameters(p);
      }
    }
  }
}

Result<std::vector<HeldExperiment>> PnodeBackend::Held() { return applier_->FindHeld(); }

uint32_t PnodeBackend::VnodeCount() { return static_cast<uint32_t>(runtime_->List().size()); }

// ---------------------------------------------------------------- jobs

void PnodeBackend::Deploy(uint64_t job, const v1::DeployShard& shard) {
  Enqueue([this, job, shard] {
    DeployReport rep = applier_->Deploy(shard, [this, job](uint32_t done, uint32_t total) {
      Post([this, job, done, total] { events_->DeployProgress(job, done, total); });
    });
    const std::string exp = shard.experiment_id();
    const auto interval = std::chrono::milliseconds(shard.metrics_interval_ms());
    Post([this, job, exp, interval, rep = std::move(rep)] {
      if (rep.ok) {
        spdlog::info("experiment {}: deployed {} objects in {:.3f}s ({})", exp, rep.total,
                     rep.timings.total_s, rep.timings.ToString());
      }
      DeployOutcome out;
      out.ok = rep.ok;
      out.done = rep.done;
      out.total = rep.total;
      out.errors = rep.errors;
      out.metrics_interval = rep.ok ? interval : std::chrono::milliseconds(0);
      events_->DeployDone(job, std::move(out));
    });
  });
}

void PnodeBackend::Teardown(uint64_t job, const std::string& experiment) {
  Enqueue([this, job, experiment] {
    TeardownReport rep = applier_->Teardown(experiment);
    Post([this, job, experiment, rep = std::move(rep)] {
      spdlog::info("experiment {}: torn down, {} vnodes removed in {:.3f}s ({} errors)",
                   experiment, rep.vnodes_removed, rep.timings.total_s, rep.errors.size());
      PumpRuntime();  // the TaskEvents of the tasks the teardown killed go first
      if (auto it = task_ids_.find(experiment); it != task_ids_.end()) {
        for (const auto& [task_id, id] : it->second) tasks_.erase(id);
        task_ids_.erase(it);
      }
      events_->TeardownDone(job, TeardownOutcome{rep.vnodes_removed, rep.errors});
    });
  });
}

void PnodeBackend::Adopt(uint64_t job, const std::string& experiment, uint64_t generation) {
  (void)generation;  // the record says which generation it adopts
  Enqueue([this, job, experiment] {
    AdoptOutcome out;
    out.status = applier_->Adopt(experiment);
    if (out.status.ok()) {
      if (const v1::DeployShard* shard = applier_->Shard(experiment)) {
        out.total = static_cast<uint32_t>(shard->vnodes_size() + shard->links_size());
        out.metrics_interval = std::chrono::milliseconds(shard->metrics_interval_ms());
      }
    } else {
      out.vnodes_removed = applier_->Teardown(experiment).vnodes_removed;
    }
    Post([this, job, out = std::move(out)]() mutable { events_->AdoptDone(job, std::move(out)); });
  });
}

// ---------------------------------------------------------------- tasks

Status PnodeBackend::Exec(const std::string& experiment, const v1::Exec& x) {
  if (!applier_->HasVnode(experiment, x.vnode())) {
    return NotFoundError("no vnode '" + x.vnode() + "' in experiment " + experiment +
                         " on this pnode");
  }
  TaskSpec spec;
  spec.shell_command = x.shell();
  spec.argv.assign(x.argv().begin(), x.argv().end());
  for (const auto& [k, v] : x.env()) spec.env.emplace_back(k, v);
  const std::string dir = applier_->VnodeOutputDir(experiment, x.vnode());
  GRIDEMU_RETURN_IF_ERROR(MakeDirs(dir));
  spec.stdout_path = dir + "/" + TaskFileName(x.task_id()) + ".stdout";
  spec.stderr_path = dir + "/" + TaskFileName(x.task_id()) + ".stderr";
  spec.timeout = std::chrono::milliseconds(x.timeout_ms());
  GRIDEMU_ASSIGN_OR_RETURN(TaskId id, runtime_->Exec(VnodeRef{experiment, x.vnode()}, spec));
  tasks_[id] = TaskRec{experiment, x.task_id(), x.vnode(), spec.stdout_path, spec.stderr_path};
  task_ids_[experiment][x.task_id()] = id;
  PumpRuntime();
  return Status::Ok();
}

Status PnodeBackend::Signal(const std::string& experiment, const std::string& task_id,
                            TaskSignal signal) {
  auto e = task_ids_.find(experiment);
  if (e == task_ids_.end() || e->second.count(task_id) == 0) {
    return NotFoundError("no task '" + task_id + "' in experiment " + experiment);
  }
  const TaskId id = e->second.at(task_id);
  if (signal == TaskSignal::kKill) {
    if (auto rec = tasks_.find(id); rec != tasks_.end()) rec->second.kill_requested = true;
  }
  Status st = runtime_->Signal(id, signal);
  PumpRuntime();
  return st;
}

void PnodeBackend::OnRuntimeEvent(const RuntimeEvent& ev) {
  if (ev.kind == RuntimeEventKind::kVnodeDied) {
    spdlog::warn("vnode {} died", ev.vnode.ToString());
    return;
  }
  auto it = tasks_.find(ev.task);
  if (it == tasks_.end()) return;  // a task of an adopted vnode, or of a torn-down experiment
  const TaskRec& rec = it->second;
  v1::TaskEvent te;
  te.set_task_id(rec.task_id);
  te.set_vnode(rec.vnode);
  te.set_stdout_path(rec.stdout_path);
  te.set_stderr_path(rec.stderr_path);
  if (ev.kind == RuntimeEventKind::kTaskStarted) {
    te.set_state(v1::TaskEvent::STATE_STARTED);
    Result<TaskStatus> ts = runtime_->GetTask(ev.task);
    te.set_start_unix_ns(ts.ok() ? WallNs(ts->result.times.start_wall) : UnixNanosNow());
  } else {
    const TaskResult& r = ev.result;
    te.set_state(r.reason == ExitReason::kStartFailed ? v1::TaskEvent::STATE_FAILED_TO_START
                                                      : v1::TaskEvent::STATE_EXITED);
    te.set_exit_code(r.exit_code);
    te.set_signal(r.signal);
    te.set_reason(ReasonName(r, rec.kill_requested));
    te.set_start_unix_ns(WallNs(r.times.start_wall));
    te.set_end_unix_ns(WallNs(r.times.end_wall));
  }
  events_->TaskChanged(rec.experiment, std::move(te));
}

void PnodeBackend::PumpRuntime() {
  for (const RuntimeEvent& ev : runtime_->Poll(std::chrono::milliseconds(0))) OnRuntimeEvent(ev);
}

// ---------------------------------------------------------------- events, metrics

Status PnodeBackend::CheckEvent(const std::string& experiment, const v1::ApplyEvent& event) {
  return applier_->CheckEvent(experiment, event);
}

Status PnodeBackend::ApplyEvent(const std::string& experiment, const v1::ApplyEvent& event) {
  Status st = applier_->ApplyEvent(experiment, event);
  PumpRuntime();
  return st;
}

v1::MetricsBatch PnodeBackend::CollectMetrics(const std::string& experiment) {
  return applier_->CollectMetrics(experiment);
}

}  // namespace gridemu::agent

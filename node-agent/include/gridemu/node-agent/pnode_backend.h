// The real agent's backend (agent_core.h AgentBackend): what gridemu-agent
// does with the requests its AgentCore accepted, on this pnode.
//   - Deploy, Teardown, Adopt: ShardApplier (shard_applier.h) calls, run in
//     arrival order on one worker thread (or inline, `inline_jobs`), their
//     progress and results handed back to the core's thread through a
//     wake-up descriptor (PollFds) and Tick();
//   - Exec, Signal: the vnode runtime's tasks (runtime.h); their started and
//     exited events (runtime->event_fd(), pumped by Tick and after each call)
//     become TaskEvents: state, exit code, signal, reason ("exited",
//     "signalled", "timeout", "oom-killed", "vnode-killed", "start-failed:
//     ...", "lost: ..."), start and end times, stdout/stderr paths
//     (<vnode output dir>/<task id, unsafe characters as '_'>.stdout|.stderr);
//   - ApplyEvent, CollectMetrics, Held: the applier's.
// It knows nothing of the wire: the core does the protocol.
//
// Threads: every method on the core's thread; the worker only runs applier
// calls (the applier is thread-safe across experiments, and the worker
// serialises the calls of each experiment).
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "gridemu/netshape/capabilities.h"
#include "gridemu/node-agent/agent_core.h"
#include "gridemu/node-agent/runtime.h"
#include "gridemu/node-agent/shard_applier.h"

namespace gridemu::agent {

/// What a PnodeBackend announces and how it runs its jobs.
struct PnodeBackendOptions {
  /// AgentHello.capacity.max_vnodes (0 = 1000); cores and memory are read
  /// from this machine.
  uint32_t max_vnodes = 0;
  /// Runtimes registered (AgentHello.capabilities.runtimes).
  std::vector<std::string> runtime_names;
  /// What the kernel offers for shaping (capabilities.shaping_backends and
  /// kernel_features).
  netshape::Capabilities capabilities;
  /// Extra kernel features, e.g. "cgroup_v1".
  std::vector<std::string> kernel_features;
  /// The backend the applier's shaper uses ("" = none works).
  std::string active_shaping_backend;
  /// Run deploys, teardowns and adoptions inside the calls (tests: no
  /// thread, completions at once) instead of on the worker thread.
  bool inline_jobs = false;
};

/// See the file comment.
class PnodeBackend final : public AgentBackend {
 public:
  /// `runtime` and `applier` must outlive the backend (the applier uses the
  /// same runtime).
  PnodeBackend(VnodeRuntime* runtime, ShardApplier* applier, PnodeBackendOptions options);
  /// Stop().
  ~PnodeBackend() override;
  PnodeBackend(const PnodeBackend&) = delete;
  PnodeBackend& operator=(const PnodeBackend&) = delete;

  /// Joins the worker: queued jobs that have not started are dropped, the
  /// one running finishes and its result is delivered. Idempotent.
  void Stop();

  void Bind(AgentEvents* events) override { events_ = events; }
  void Describe(v1::AgentHello* hello) override;
  Result<std::vector<HeldExperiment>> Held() override;
  uint32_t VnodeCount() override;
  void Deploy(uint64_t job, const v1::DeployShard& shard) override;
  void Teardown(uint64_t job, const std::string& experiment) override;
  void Adopt(uint64_t job, const std::string& experiment, uint64_t generation) override;
  Status Exec(const std::string& experiment, const v1::Exec& exec) override;
  Status Signal(const std::string& experiment, const std::string& task_id,
                TaskSignal signal) override;
  Status CheckEvent(const std::string& experiment, const v1::ApplyEvent& event) override;
  Status ApplyEvent(const std::string& experiment, const v1::ApplyEvent& event) override;
  v1::MetricsBatch CollectMetrics(const std::string& experiment) override;
  std::vector<int> PollFds() const override;
  AgentClock::time_point Tick(AgentClock::time_point now) override;

 private:
  struct TaskRec {
    std::string experiment;
    std::string task_id;
    std::string vnode;
    std::string stdout_path, stderr_path;
    bool kill_requested = false;
  };

  // Runs `job` on the worker (or now, with inline_jobs).
  void Enqueue(std::function<void()> job);
  // Runs `fn` on the core's thread (at the next Tick, or now inline).
  void Post(std::function<void()> fn);
  void WorkerMain();
  void RunPosted();
  void PumpRuntime();
  void OnRuntimeEvent(const RuntimeEvent& ev);

  VnodeRuntime* runtime_;
  ShardApplier* applier_;
  PnodeBackendOptions options_;
  AgentEvents* events_ = nullptr;
  int wake_fd_ = -1;

  std::thread worker_;
  std::mutex wmu_;
  std::condition_variable wcv_;
  std::deque<std::function<void()>> jobs_;
  bool wstop_ = false;

  std::mutex pmu_;
  std::deque<std::function<void()>> posted_;

  std::map<TaskId, TaskRec> tasks_;
  std::map<std::string, std::map<std::string, TaskId>> task_ids_;  // experiment -> task id -> id
};

}  // namespace gridemu::agent

// One experiment's runner: drives its lifecycle from submitted to a final
// state (controller.h has the overview). Private to the controller; used on
// the controller's event-loop thread only (not thread-safe).
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "gridemu/common/status.h"
#include "gridemu/controller/controller.h"
#include "gridemu/controller/placement_simple.h"
#include "gridemu/controller/registry.h"
#include "gridemu/controller/results.h"
#include "gridemu/controller/store.h"
#include "gridemu/controller/timeline.h"
#include "gridemu/experiments/experiment.h"
#include "gridemu/v1/agent.pb.h"

namespace gridemu::controller::orch {

using Clock = std::chrono::steady_clock;

/// What a runner needs from the controller.
class RunnerEnv {
 public:
  virtual ~RunnerEnv() = default;
  virtual Store& store() = 0;
  virtual const AgentRegistry& registry() const = 0;
  virtual const ControllerOptions& options() const = 0;
  virtual const Placer& placer() const = 0;
  /// Sends to a live agent; assigns a request id when the envelope has none
  /// (returned). kUnavailable when the agent is not connected.
  virtual Result<uint64_t> Send(const std::string& host, v1::Envelope env) = 0;
  virtual void Log(const std::string& line) = 0;
  /// `host` could not tear the experiment down (not connected, no answer):
  /// the controller sends it a Teardown when the host registers again.
  virtual void Orphan(const std::string& host, const std::string& experiment_id,
                      uint64_t generation) = 0;
  /// vnodes placed on `host` by other non-final experiments.
  virtual uint32_t VnodesInUse(const std::string& host, const std::string& except_id) = 0;
};

/// The live agents as placement candidates: capacity from their AgentHello,
/// vnodes_in_use = vnodes placed on them by experiments other than
/// `except_id`, runtimes announced. In registry order.
std::vector<PnodeCandidate> LiveCandidates(RunnerEnv& env, const std::string& except_id);

/// Ok when every pnode of `placement` at an end of a cross-pnode link has an
/// underlay address (`addresses`, indexed like placement.pnodes; "" = none
/// announced); else kFailedPrecondition naming those pnodes. Used at Submit
/// (before anything is stored) and again before the shards are built.
Status CheckTunnelAddresses(const topology::Topology& topology, const Placement& placement,
                            const std::vector<std::string>& addresses);

/// What one placed pnode's agent announced it can shape: its active backend and the
/// profile parameters it honours (v1::Capabilities shaping_parameters; empty = not
/// announced, not checked).
struct PnodeShaping {
  std::string host;
  std::string backend;
  std::vector<std::string> parameters;
};

/// Ok when every parameter of every link direction's profile, and of every `set`
/// event on a link, is honoured by both pnodes of the link (`shaping` indexed like
/// placement.pnodes); else kInvalidArgument with one "<file>:<line>:<col>: link <name>
/// <direction>: <parameter>: not supported by the <backend> backend of pnode <host>" line
/// per problem (the HTTP API answers 422 with them as diagnostics). Used at Submit,
/// before anything is stored.
Status CheckShapingParameters(const experiments::Experiment& experiment,
                              const Placement& placement,
                              const std::vector<PnodeShaping>& shaping);

/// "h1, h2, h3 ... (and 7 more)": at most `max_names` names, then a count.
std::string NameList(const std::vector<std::string>& names, size_t max_names = 10);

class Runner {
 public:
  /// The deploy window (Deploy()): at most kDeployWindow DeployShards sent and
  /// not yet acknowledged (no ShardStatus from that pnode yet), so that
  /// ZeroMQ's queues never hold every shard (1,000 x ~2 MB of hosts entries at
  /// 100,000 vnodes). The shards are built without hosts; the hosts entries
  /// are encoded once (deploy_encode.h) and spliced into each shard's message
  /// when it is sent.
  static constexpr size_t kDeployWindow = 32;
  struct DeployWindow {
    std::vector<v1::DeployShard> shards;  ///< by pnode, without hosts; moved out when sent
    std::string hosts_field;              ///< EncodeHostsField() of the experiment
    std::vector<uint8_t> acked;           ///< by pnode: a ShardStatus came
    size_t next = 0;                      ///< next pnode to send to
    size_t in_flight = 0;                 ///< sent, not acknowledged
  };

  /// A freshly submitted experiment (state submitted).
  Runner(RunnerEnv& env, ExperimentRecord record, experiments::Experiment experiment,
         Clock::time_point now);
  /// A non-final experiment found by Store::Recover() after a restart.
  static Result<std::unique_ptr<Runner>> Recover(RunnerEnv& env, RecoveredExperiment recovered,
                                                 Clock::time_point now);

  const std::string& id() const { return rec_.id; }
  bool done() const { return phase_ == Phase::kDone; }
  ExperimentState state() const { return state_; }

  /// A placement computed at Submit for `candidates`: TryPlace() uses it
  /// instead of placing again when the live candidates are still the same.
  void SetPlacementHint(std::vector<PnodeCandidate> candidates, Placement placement);

  /// Time-driven work: placement, timeline, timeouts, deadlines.
  void Tick(Clock::time_point now);
  /// When Tick() next has something to do.
  std::optional<Clock::time_point> NextDeadline() const;
  /// Writes batched task and event updates to the store.
  void Flush();

  /// A message from the live agent `host` about this experiment: ShardStatus,
  /// TaskEvent, EventApplied, TornDown, MetricsBatch or Error. Returns an
  /// error to answer the agent with (e.g. an unknown task id).
  Status OnMessage(const std::string& host, const v1::Envelope& env, Clock::time_point now);
  /// Whether `host`, saying `hello`, should keep this experiment (Welcome.keep).
  std::optional<v1::ExperimentHeld> KeepOn(const std::string& host,
                                           const v1::AgentHello& hello) const;
  /// `host` (re-)registered; called after its Welcome was sent. `implicit`:
  /// the controller registered it without an AgentHello (it only sent
  /// heartbeats after a controller restart), so what it holds is unknown.
  void OnAgentHello(const std::string& host, const v1::AgentHello& hello, Clock::time_point now,
                    bool implicit = false);
  /// `host` was declared lost.
  void OnAgentLost(const std::string& host, const std::string& reason, Clock::time_point now);
  /// See Controller::Cancel().
  Result<ExperimentState> Cancel(const std::string& reason, Clock::time_point now);

  RunProgress Progress(Clock::time_point now) const;
  /// vnodes this run has placed on `host` (0 when done or not placed there).
  uint32_t VnodesOn(const std::string& host) const;

 private:
  enum class Phase {
    kPlacing,      // waiting for an agent, then place + deploy
    kDeploying,    // DeployShard sent, waiting for READY from every pnode
    kRunning,      // the timeline runs
    kRecovering,   // after a controller restart: waiting for the agents to say hello
    kStopping,     // tasks killed, waiting for their end reports
    kTearingDown,  // Teardown sent, waiting for TornDown
    kDone,
  };
  struct HostRun {
    std::string host;
    uint32_t vnodes = 0;
    bool deploy_sent = false;
    bool ready = false;
    uint32_t done = 0;
    uint32_t total = 0;
    bool teardown_sent = false;
    bool torn_down = false;
    bool back = false;     // recovering: said hello again
    bool held_ok = false;  // recovering: still holds the shard at our generation
  };
  struct TaskRt {
    TaskState state = TaskState::kPending;
    bool ended_counted = false;
    bool kill_sent = false;
    std::optional<Clock::time_point> exec_at;  // when Exec was sent
  };
  struct EventRt {
    bool dispatched = false;
    size_t replies_pending = 0;
    std::optional<int64_t> applied_unix_ns;
    std::string error;
  };
  enum class RequestKind { kDeploy, kExec, kSignal, kApplyEvent, kTeardown };
  struct Request {
    RequestKind kind;
    size_t index = 0;  // task or event action index
    std::string host;
  };

  Runner(RunnerEnv& env, ExperimentRecord record, experiments::Experiment experiment);
  Status InitTimeline();
  Status EnsureResultsDir();

  void Transition(ExperimentState to, const std::string& reason);
  void Log(const std::string& line) const;
  std::string PhaseName() const;

  void TryPlace(Clock::time_point now);
  void Deploy(Clock::time_point now);
  void StartRunning(Clock::time_point now);
  void RunTimeline(Clock::time_point now);
  void DispatchTask(size_t i, Clock::time_point now);
  void DispatchEvent(size_t i, Clock::time_point now);
  void EndRun(EndReason why, Clock::time_point now);
  void StopTasks(Clock::time_point now);
  void CollectAndTeardown(Clock::time_point now);
  void StartTeardown(Clock::time_point now);
  void MaybeFinishTeardown(Clock::time_point now);
  void Finish(Clock::time_point now);
  void Fail(const std::string& reason, Clock::time_point now);
  void AdvanceRecovery(Clock::time_point now, bool deadline_passed);
  void Resume(Clock::time_point now);

  void OnShardStatus(const std::string& host, const v1::ShardStatus& s, Clock::time_point now);
  Status OnTaskEvent(const std::string& host, const v1::TaskEvent& e, Clock::time_point now);
  void OnEventApplied(const std::string& host, const v1::EventApplied& e, Clock::time_point now);
  void OnTornDown(const std::string& host, const v1::TornDown& t, Clock::time_point now);
  void OnMetrics(const std::string& host, const v1::MetricsBatch& m);
  void OnError(const std::string& host, const v1::Envelope& env, Clock::time_point now);

  void SetTaskState(size_t i, TaskUpdate u);
  void TaskEnded(size_t i);
  HostRun* FindHost(const std::string& host);
  std::string HostOfVnode(topology::VnodeId v) const;
  /// Underlay address of each placed pnode (AgentHello.address; "" if none).
  std::vector<std::string> PnodeAddresses() const;
  /// Cross-pnode links: every pnode holding one needs an address, and the
  /// experiment a VNI block (allocated here). Error message for the failure.
  Status PrepareTunnels();
  /// "pnode h lost (why): N vnodes: a, b, ..." for the vnodes placed on `host`.
  std::string LostVnodesLine(const std::string& host, const std::string& why) const;
  /// "it held 3 vnodes: a, b, c" for the vnodes placed on `host`.
  std::string HeldVnodes(const std::string& host) const;
  /// Records LostVnodesLine() once per host (notes, store) and returns it.
  std::string ReportLost(const std::string& host, const std::string& why);
  Result<uint64_t> SendTo(const std::string& host, v1::Envelope env, RequestKind kind,
                          size_t index);
  int64_t ElapsedNs(Clock::time_point now) const;
  bool AllTasksQuiet() const;

  RunnerEnv& env_;
  ExperimentRecord rec_;
  experiments::Experiment exp_;
  Timeline tl_;
  Phase phase_ = Phase::kPlacing;
  ExperimentState state_ = ExperimentState::kSubmitted;
  std::optional<ExperimentState> final_;
  std::string final_reason_;
  std::string stop_reason_;  // reason given to tasks killed at the end

  std::string results_dir_;
  std::string out_root_;  // shards' output_dir: <results>/.work/out

  Placement placement_;
  bool placed_ = false;
  std::optional<std::pair<std::vector<PnodeCandidate>, Placement>> hint_;
  uint32_t vni_base_ = 0;   // the experiment's VNI block (0 = none)
  uint32_t vni_count_ = 0;
  std::set<std::string> lost_hosts_;  // lost while placed (reported once each)
  uint64_t generation_ = 0;
  std::vector<HostRun> hosts_;
  std::unique_ptr<DeployWindow> deploy_window_;  // while shards wait to be sent

  Clock::time_point created_at_{};
  Clock::time_point place_deadline_{};
  Clock::time_point deploy_deadline_{};
  Clock::time_point deploy_started_{};
  Clock::time_point stop_deadline_{};
  Clock::time_point teardown_deadline_{};
  Clock::time_point recovery_deadline_{};
  bool recovering_resume_ = false;  // kRecovering: resume (not tear down) when all are back

  bool started_ = false;  // entered running
  Clock::time_point t0_{};
  int64_t t0_unix_ns_ = 0;
  int64_t end_unix_ns_ = 0;
  std::optional<Clock::time_point> ended_at_;

  std::vector<TaskRt> task_rt_;  // parallel to tl_.tasks
  std::unordered_map<std::string, size_t> task_index_;
  size_t next_task_ = 0;
  size_t waited_ended_ = 0;
  size_t tasks_ended_ = 0;
  size_t tasks_failed_ = 0;
  std::multimap<Clock::time_point, size_t> timeouts_;  // backstops of task timeouts

  std::vector<EventRt> event_rt_;  // parallel to tl_.events
  std::unordered_map<std::string, size_t> event_index_;
  size_t next_event_ = 0;
  size_t events_done_ = 0;
  /// Events applied (or failed) before a restart, by index.
  std::map<uint32_t, EventRecord> events_before_;
  std::chrono::nanoseconds resume_elapsed_{0};
  std::set<uint32_t> event_rows_written_;

  std::unordered_map<uint64_t, Request> requests_;
  std::vector<TaskUpdate> task_updates_;
  std::vector<EventUpdate> event_updates_;
  std::vector<std::string> notes_;
  std::vector<std::string> collected_;
};

}  // namespace gridemu::controller::orch

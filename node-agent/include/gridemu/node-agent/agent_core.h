// The agent side of the control protocol (DESIGN.md §7), written once: the
// conversation, the answer cache and idempotency, the generation rules and
// the error codes. Every agent is an AgentCore over an AgentBackend (what the
// agent does with the requests) and a Wire (how bytes reach the controller):
//   - the real agent (agent.h): PnodeBackend, vnodes, links and shaping on
//     this pnode;
//   - the simulated agents (sim_agent.h, `gridemu-agent --simulate`):
//     SimBackend, capacity accounting, nothing created;
//   - the process agent (process_agent.h: `gridemu run --simulate` and the
//     controller's tests): ProcessBackend, tasks as host processes.
//
// Conversation:
//   agent -> AgentHello (host id, version, underlay address; capacity and
//            capabilities from the backend; `held`: what the backend holds,
//            with the latest TaskEvent of each task of a live experiment),
//            again every hello_retry until a Welcome arrives, and again when
//            the controller answers with Error "failed precondition" and no
//            experiment id (it restarted and does not know the agent);
//   Welcome -> for each held experiment: a live one (deployed by this
//            process) is kept if the Welcome keeps it, else torn down; a
//            leftover of an earlier process is adopted if kept and its deploy
//            had finished (ShardStatus READY, or FAILED and removed when the
//            adoption fails), else torn down; a teardown is announced by an
//            unsolicited TornDown (request id 0, the experiment's id and
//            generation in the envelope). Heartbeats every
//            Welcome.heartbeat_interval_ms (CoreOptions::heartbeat before);
//   DeployShard -> ShardStatus DEPLOYING (done/total, as the backend reports
//            progress), then READY or FAILED (with per-object errors);
//   Exec -> TaskEvent STARTED, later EXITED (or FAILED_TO_START); an Exec with
//            start_unix_ns in the future is accepted at once and started then
//            (the controller sends starts ahead, so they are on time);
//   Signal -> no answer on success (the TaskEvent of the task's end follows);
//            term with grace_ms: SIGKILL follows if the task still runs then;
//   ApplyEvent -> EventApplied (with an error when applying failed); a `stop`
//            node action first sends SIGTERM to the running tasks of its vnodes
//            and waits until they ended or their Exec.stop_grace_ms passed, then
//            the backend stops the vnodes (SIGKILL to what is left) and
//            EventApplied goes. Graceful stops are done here, once, for every
//            agent; backends only signal;
//   MetricsBatch every metrics interval of a READY experiment (the interval
//            the backend reports with the deploy; 0 = none);
//   Teardown -> TornDown.
// Answers carry the request's request_id, experiment_id and generation.
//
// Refusals (an Error, code = StatusCodeName, nothing changes): unparsable
// bytes or an envelope without a body ("invalid argument", not remembered),
// a message type agents do not take ("invalid argument"), a request before
// the Welcome ("failed precondition", not remembered), a bad or missing
// experiment id ("invalid argument"), Exec/Signal/ApplyEvent for an
// experiment that is not READY here or at another generation ("failed
// precondition"), an unknown vnode, task or link ("not found"), a DeployShard
// or Teardown at an older generation ("failed precondition"), a DeployShard at
// a newer generation over a deployed shard ("unimplemented": changing a
// deployed shard in place is not supported; tear it down first).
//
// Idempotency: the answers to each (experiment id, generation, request id)
// are remembered (the last 65,536 requests); a repeated request gets them
// again and has no second effect. A DeployShard repeated under another
// request id while its deploy runs is answered DEPLOYING and, later, READY.
//
// Jobs: deploys, teardowns and adoptions are jobs with a core-assigned id;
// the backend may finish them at once (inside the call) or later, from any
// code running on the core's thread, by calling the AgentEvents methods.
// Per experiment the backend must finish jobs in the order they were given.
// A completion for a job the core no longer tracks is ignored.
//
// Threads: not thread-safe. Every method (and every AgentEvents call of the
// backend) runs on one thread, the loop's (agent_loop.h, or SimAgents' loop).
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "gridemu/common/status.h"
#include "gridemu/node-agent/task.h"
#include "gridemu/v1/agent.pb.h"

namespace gridemu::agent {

using AgentClock = std::chrono::steady_clock;

/// What makes a request idempotent: (experiment id, generation, request id).
struct RequestKey {
  std::string experiment;
  uint64_t generation = 0;
  uint64_t request_id = 0;
  friend auto operator<=>(const RequestKey&, const RequestKey&) = default;
};

/// A problem with one object of a shard: object is "vnode peer3", "link a--b",
/// "route r1 10.0.0.4/32", "bridge s1", "shard".
struct ShardObjectError {
  std::string object;
  std::string message;
};

/// An experiment a backend holds objects of.
struct HeldExperiment {
  std::string experiment;
  /// From the shard record; 0 when there is none.
  uint64_t generation = 0;
  /// Vnodes found (or held).
  uint32_t vnodes = 0;
  /// Its deploy finished (READY): a leftover can be adopted.
  bool complete = false;
  /// Deployed by this process (not a leftover of an earlier one).
  bool live = false;
};

/// The end of a deploy job.
struct DeployOutcome {
  bool ok = false;
  uint32_t done = 0;   ///< objects made
  uint32_t total = 0;  ///< objects to make
  std::vector<ShardObjectError> errors;
  /// How often the core sends this experiment's MetricsBatch once READY
  /// (0 = never).
  std::chrono::milliseconds metrics_interval{0};
};

/// The end of a teardown job.
struct TeardownOutcome {
  uint32_t vnodes_removed = 0;
  std::vector<ShardObjectError> errors;
};

/// The end of an adoption job (a leftover kept by the Welcome).
struct AdoptOutcome {
  /// Ok: the experiment is READY again. Else the backend removed it.
  Status status;
  uint32_t total = 0;  ///< its objects, for the ShardStatus
  std::chrono::milliseconds metrics_interval{0};
  uint32_t vnodes_removed = 0;  ///< when it failed
};

/// What a backend reports to its core. Implemented by AgentCore; every call
/// must be made on the core's thread.
class AgentEvents {
 public:
  virtual ~AgentEvents() = default;
  /// Progress of a deploy: objects done of `total`.
  virtual void DeployProgress(uint64_t job, uint32_t done, uint32_t total) = 0;
  virtual void DeployDone(uint64_t job, DeployOutcome outcome) = 0;
  /// Report the TaskEvents of the tasks the teardown ended before this.
  virtual void TeardownDone(uint64_t job, TeardownOutcome outcome) = 0;
  virtual void AdoptDone(uint64_t job, AdoptOutcome outcome) = 0;
  /// A task of `experiment` started or ended: `event` names it by task_id
  /// (as in the Exec). Events of tasks the core does not know are dropped.
  virtual void TaskChanged(const std::string& experiment, v1::TaskEvent event) = 0;
};

/// What an agent does with the requests the core accepted. The core has
/// already checked everything that does not depend on the backend (see the
/// file comment): the backend checks names against what it holds and does
/// the work. Called on the core's thread.
class AgentBackend {
 public:
  virtual ~AgentBackend() = default;
  /// Called once by the core's constructor: where to report.
  virtual void Bind(AgentEvents* events) = 0;
  /// Fills AgentHello.capacity and AgentHello.capabilities.
  virtual void Describe(v1::AgentHello* hello) = 0;
  /// Every experiment with objects here (live ones and leftovers).
  virtual Result<std::vector<HeldExperiment>> Held() = 0;
  /// Vnodes held now (Heartbeat.vnodes).
  virtual uint32_t VnodeCount() = 0;

  /// Builds `shard` (its experiment id and generation are set). Finishes with
  /// AgentEvents::DeployDone(job), after any number of DeployProgress(job).
  virtual void Deploy(uint64_t job, const v1::DeployShard& shard) = 0;
  /// Removes every object of `experiment` (known or not); finishes with
  /// TeardownDone(job).
  virtual void Teardown(uint64_t job, const std::string& experiment) = 0;
  /// Takes over a leftover whose deploy had finished; finishes with AdoptDone(job).
  virtual void Adopt(uint64_t job, const std::string& experiment, uint64_t generation) = 0;

  /// Starts a task of a READY experiment (the core checked the task id, its
  /// uniqueness and shell/argv). Errors: kNotFound (no such vnode here), or
  /// the backend's; on success TaskChanged follows (it may come inside this call).
  virtual Status Exec(const std::string& experiment, const v1::Exec& exec) = 0;
  /// Sends `signal` to a task the core knows is running or ran. Errors: the
  /// backend's (kFailedPrecondition when it had already ended).
  virtual Status Signal(const std::string& experiment, const std::string& task_id,
                        TaskSignal signal) = 0;
  /// Checks an event against what is deployed, without effects: kNotFound
  /// for an unknown link or vnode, kUnimplemented/kInvalidArgument for a
  /// profile the backend cannot honour. (The core checked its shape.)
  virtual Status CheckEvent(const std::string& experiment, const v1::ApplyEvent& event) = 0;
  /// Applies a checked event; the error is reported in EventApplied.
  virtual Status ApplyEvent(const std::string& experiment, const v1::ApplyEvent& event) = 0;
  /// Counters of a READY experiment.
  virtual v1::MetricsBatch CollectMetrics(const std::string& experiment) = 0;

  /// Descriptors the loop polls for the backend (readable = call Tick).
  virtual std::vector<int> PollFds() const { return {}; }
  /// Does what is due (timers, finished work of other threads) and returns
  /// when it wants to be called again (AgentClock::time_point::max() = only
  /// when a descriptor is readable).
  virtual AgentClock::time_point Tick(AgentClock::time_point now) {
    (void)now;
    return AgentClock::time_point::max();
  }
  /// Forgets everything without telling anyone (tests: an agent restarted
  /// without its state). Default: nothing.
  virtual void ForgetAll() {}
};

/// Sends one message (one serialized v1::Envelope) to the controller. A
/// message that cannot be queued is dropped (the protocol repeats).
class Wire {
 public:
  virtual ~Wire() = default;
  virtual void Send(std::string_view bytes) = 0;
};

/// Options of an AgentCore.
struct CoreOptions {
  /// AgentHello.host_id (the agent's ZeroMQ routing id must be the same).
  std::string host_id;
  /// AgentHello.version.
  std::string version = "dev";
  /// AgentHello.address: this pnode's underlay IPv4 address ("" = none).
  std::string address;
  /// Heartbeat interval until a Welcome sets one (> 0).
  std::chrono::milliseconds heartbeat{1000};
  /// AgentHello is repeated this often until a Welcome arrives (> 0).
  std::chrono::milliseconds hello_retry{5000};
  /// The first AgentHello waits this long after Start() (spreads many agents).
  std::chrono::milliseconds first_hello_delay{0};
  /// The first heartbeat after a Welcome comes this fraction (0..1) of the
  /// interval later (spreads many agents' heartbeats over one interval).
  double heartbeat_phase = 0;
  /// Say AgentHello again when the controller refuses a message with
  /// "failed precondition" and no experiment id (it lost our registration).
  /// false: keep heartbeating regardless (tests of an agent that does not).
  bool rehello_on_refusal = true;
  /// Log refusals and protocol events (spdlog, info). The simulated agents
  /// turn it off (a thousand agents).
  bool log = true;
};

/// Counters of one core (thread-safe snapshot: relaxed atomics).
struct CoreStats {
  uint64_t hellos = 0;       ///< AgentHello sent
  uint64_t welcomes = 0;     ///< Welcome taken (duplicates not counted)
  uint64_t heartbeats = 0;   ///< Heartbeat sent
  uint64_t deploys = 0;      ///< DeployShard requests handled (repeats not counted)
  uint64_t execs = 0;        ///< Exec requests handled
  uint64_t signals = 0;      ///< Signal requests handled
  uint64_t events = 0;       ///< ApplyEvent requests handled
  uint64_t teardowns = 0;    ///< Teardown requests accepted (not refused for their generation)
  uint64_t errors_sent = 0;  ///< Error replies sent
  uint64_t errors_received = 0;
  uint64_t messages_received = 0;
  uint64_t bytes_received = 0;
  uint64_t messages_sent = 0;
  uint64_t bytes_sent = 0;
};

/// The protocol state machine of one agent. See the file comment.
class AgentCore final : private AgentEvents {
 public:
  /// `backend` and `wire` must outlive the core. Binds the backend.
  AgentCore(CoreOptions options, AgentBackend* backend, Wire* wire);
  AgentCore(const AgentCore&) = delete;
  AgentCore& operator=(const AgentCore&) = delete;

  /// Schedules the first AgentHello (now + first_hello_delay).
  void Start(AgentClock::time_point now);
  /// Handles one message from the controller.
  void OnMessage(std::string_view bytes);
  /// Sends what is due (hello, heartbeat, metrics), runs the backend's
  /// Tick, and returns when to be called next.
  AgentClock::time_point Tick(AgentClock::time_point now);

  /// Registers again at once (as an agent restarted with its state would):
  /// the next Tick sends AgentHello.
  void Rehello();
  /// Forgets every experiment, task and remembered answer, and tells the
  /// backend to forget too (tests: an agent restarted without its state).
  void ForgetAll();

  bool welcomed() const { return welcomed_.load(std::memory_order_relaxed); }
  const std::string& host_id() const { return options_.host_id; }
  /// The experiment ids the last Welcome kept (core thread only).
  const std::vector<std::string>& last_keep() const { return last_keep_; }
  /// Counters (any thread).
  CoreStats Stats() const;
  /// The backend's descriptors to poll (AgentBackend::PollFds).
  std::vector<int> backend_poll_fds() const { return backend_->PollFds(); }

  /// Called when the agent is welcomed (core thread), e.g. to count welcomed agents.
  std::function<void()> on_welcomed;
  /// Called with every Error the controller sends (core thread).
  std::function<void(const v1::Error&)> on_controller_error;

 private:
  enum class Phase { kDeploying, kReady, kFailed, kTearingDown, kAdopting };
  struct Task {
    RequestKey key;       // the Exec's
    v1::TaskEvent last;   // reported in AgentHello.held[].tasks
    std::string vnode;
    std::chrono::milliseconds stop_grace{0};           // Exec.stop_grace_ms
    std::optional<AgentClock::time_point> kill_at;      // a graceful stop's SIGKILL
    std::optional<v1::Exec> scheduled;                  // Exec.start_unix_ns not reached yet
    AgentClock::time_point start_at{};                  // when `scheduled` starts
    bool Ended() const {
      return last.state() == v1::TaskEvent::STATE_EXITED ||
             last.state() == v1::TaskEvent::STATE_FAILED_TO_START;
    }
  };
  // A `stop` node action waiting for the SIGTERMed tasks of its vnodes to end (or
  // their grace to pass) before the backend stops the vnodes and EventApplied goes.
  struct PendingStop {
    RequestKey key;
    v1::ApplyEvent event;
    std::vector<std::string> tasks;  // task ids that were running
    AgentClock::time_point deadline{};
  };
  struct Exp {
    uint64_t generation = 0;
    Phase phase = Phase::kDeploying;
    uint64_t last_job = 0;    // the job whose end decides the phase
    uint64_t deploy_job = 0;  // the deploy whose progress is reported
    std::vector<RequestKey> deploy_waiters;
    v1::ShardStatus last_status;
    std::chrono::milliseconds metrics_interval{0};
    AgentClock::time_point next_metrics{};
    std::map<std::string, Task> tasks;  // by task id
    std::vector<PendingStop> stops;
  };
  enum class JobKind { kDeploy, kTeardown, kAdopt };
  struct Job {
    JobKind kind = JobKind::kDeploy;
    std::string experiment;
    uint64_t generation = 0;
    std::optional<RequestKey> key;  // a teardown's request (none: unsolicited)
  };
  struct Counter {
    std::atomic<uint64_t> v{0};
    void Add(uint64_t n = 1) { v.fetch_add(n, std::memory_order_relaxed); }
    uint64_t Get() const { return v.load(std::memory_order_relaxed); }
  };

  // AgentEvents.
  void DeployProgress(uint64_t job, uint32_t done, uint32_t total) override;
  void DeployDone(uint64_t job, DeployOutcome outcome) override;
  void TeardownDone(uint64_t job, TeardownOutcome outcome) override;
  void AdoptDone(uint64_t job, AdoptOutcome outcome) override;
  void TaskChanged(const std::string& experiment, v1::TaskEvent event) override;

  void SendRaw(const std::string& bytes);
  void Send(const v1::Envelope& env);
  void Reply(const RequestKey& key, v1::Envelope env);
  void NoteHandled(const RequestKey& key);
  void ReplyError(const RequestKey& key, const Status& st);
  void SendError(const RequestKey& key, const Status& st);

  void SendHello();
  void HandleWelcome(const v1::Welcome& w);
  void HandleControllerError(const v1::Envelope& env);
  void HandleDeploy(const RequestKey& key, const v1::DeployShard& shard);
  void StartTeardown(const std::string& experiment, std::optional<RequestKey> key);
  void HandleTeardown(const RequestKey& key);
  Status CheckReady(const RequestKey& key) const;
  void HandleExec(const RequestKey& key, const v1::Exec& x);
  void HandleSignal(const RequestKey& key, const v1::Signal& s);
  void HandleApplyEvent(const RequestKey& key, const v1::ApplyEvent& ev);
  /// Applies a checked event through the backend and answers EventApplied.
  void ApplyAndAnswer(const RequestKey& key, const v1::ApplyEvent& ev);
  /// Starts a task whose Exec was accepted: now (a failure answers the Exec), or
  /// when it was scheduled for (`accepted_earlier`: a failure is its FAILED_TO_START).
  void StartTask(const RequestKey& key, const v1::Exec& x, bool accepted_earlier);
  /// Graceful stops, scheduled starts and stop actions that are due; the next due time.
  AgentClock::time_point RunTaskTimers(AgentClock::time_point now);
  uint64_t NewJob(JobKind kind, const std::string& experiment, uint64_t generation,
                  std::optional<RequestKey> key = std::nullopt);

  CoreOptions options_;
  AgentBackend* backend_;
  Wire* wire_;

  std::atomic<bool> welcomed_{false};
  std::chrono::milliseconds heartbeat_;
  AgentClock::time_point next_hello_ = AgentClock::time_point::max();
  AgentClock::time_point next_heartbeat_{};
  std::vector<HeldExperiment> held_;
  std::vector<std::string> last_keep_;
  std::map<std::string, Exp> exps_;
  uint64_t next_job_ = 0;
  std::map<uint64_t, Job> jobs_;
  std::map<RequestKey, std::vector<std::pair<v1::Envelope::BodyCase, std::string>>> answers_;
  std::deque<RequestKey> answer_order_;

  Counter hellos_, welcomes_, heartbeats_, deploys_, execs_, signals_, events_, teardowns_;
  Counter errors_sent_, errors_received_, messages_received_, bytes_received_, messages_sent_,
      bytes_sent_;
};

/// Checks what an ApplyEvent says without looking at what is deployed: an
/// action is set; a node action is kill, stop, start, freeze or thaw and
/// names at least one vnode. Errors: kInvalidArgument saying what is wrong.
Status CheckEventShape(const v1::ApplyEvent& event);

}  // namespace gridemu::agent

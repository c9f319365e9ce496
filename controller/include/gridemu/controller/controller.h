// The controller's orchestration (DESIGN.md §1, §7, §8): a ZeroMQ ROUTER
// socket for the agents, the agent registry, and one runner per experiment
// that drives its lifecycle
//
//   submitted -> placed -> deploying -> running -> collecting -> finished
//                                   \-> failed (with a reason)  \-> cancelling -> cancelled
//
// placement (placement_simple.h), addressing + shards (shard_builder.h) sent
// as DeployShard, the timeline (timeline.h: Exec at each task instance's
// start, ApplyEvent at each event's time, task timeouts, the end at
// `duration` or when every waited task ended), collection of outputs and
// files into the results directory (results.h), and teardown on the agents,
// always, whatever the outcome. Every transition goes through
// Store::Transition() with a reason.
//
// Several pnodes: placement (ControllerOptions::placer) spreads the vnodes
// over the live agents; a link whose ends land on two pnodes becomes a VXLAN
// tunnel (a VNI from the experiment's block, the pnodes' AgentHello
// addresses) built half by each; a link event goes to both pnodes holding the
// link, a node action to each vnode's pnode. An agent that stops heartbeating
// for heartbeat_timeout is lost: the vnodes it held are named (the first 10
// and a count) in the failure reason or in ExperimentRecord::lost_vnodes, the
// results' summary and manifest, and the experiment fails or, with
// `on_pnode_failure: continue`, goes on without them (its tasks are lost). An
// agent that comes back says AgentHello and is told in Welcome.keep whether
// to keep its shard (continue, same generation) or tear it down.
//
// Restart: a Controller started on a database with experiments that are not
// final reloads them (Store::Recover()) and waits (up to recovery_timeout)
// for their agents to say AgentHello again. A running experiment whose agent
// still holds its shard at the same generation is resumed (task states
// re-synced from AgentHello.held[].tasks when the agent reports them); any
// other is failed with the reason and torn down. Nothing waits forever: every
// phase has a deadline.
//
// Threads: one event-loop thread owns the socket, the registry and the
// runners (zmq::poll with timers). Every public method is thread-safe: it
// posts work to the loop and waits for its answer. The HTTP server (its own
// thread) reaches the controller through service().
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "gridemu/common/status.h"
#include "gridemu/controller/placement_simple.h"
#include "gridemu/controller/service.h"
#include "gridemu/controller/store.h"

namespace zmq {
class context_t;
}  // namespace zmq

namespace gridemu::controller {

/// Options of Controller::Start().
struct ControllerOptions {
  /// The SQLite database (created if missing); ":memory:" for a private one.
  std::string db_path = "/var/lib/gridemu/controller.db";
  /// Where the ROUTER socket binds: "tcp://127.0.0.1:7100", "ipc:///run/x",
  /// "inproc://name" (then `context` must be the agents' context). A tcp port
  /// 0 ("tcp://127.0.0.1:0") binds an ephemeral port; see endpoint().
  std::string agents_endpoint = "tcp://127.0.0.1:7100";
  /// The ZeroMQ context to use (not owned; must outlive the controller);
  /// null = a context of its own. Needed for inproc endpoints.
  zmq::context_t* context = nullptr;
  /// Base directory of results directories (results.h).
  std::string results_dir = "results";
  /// Asked of agents in Welcome.
  std::chrono::milliseconds heartbeat_interval{1000};
  /// An agent silent for longer is lost; its experiments fail (or, with
  /// on_pnode_failure: continue, lose its tasks).
  std::chrono::milliseconds heartbeat_timeout{5000};
  /// A deployment that reports no progress for this long fails.
  std::chrono::milliseconds deploy_timeout{std::chrono::minutes(10)};
  /// How long teardown waits for TornDown from each agent.
  std::chrono::milliseconds teardown_timeout{std::chrono::seconds(60)};
  /// At the end of a run, how long killed tasks have to report their end.
  std::chrono::milliseconds stop_grace{std::chrono::seconds(3)};
  /// Beyond a task's timeout, how long the agent has to report its end
  /// before the controller sends a kill itself (and as long again before it
  /// marks the task killed on its own).
  std::chrono::milliseconds task_timeout_grace{std::chrono::seconds(5)};
  /// After a restart (or while no agent is registered for a recovered
  /// experiment), how long to wait for agents to say AgentHello again.
  std::chrono::milliseconds recovery_timeout{std::chrono::seconds(30)};
  /// Where relative paths in submitted files start (topology `import: gml:`).
  std::string import_base_dir = ".";
  /// Shaping backend asked of agents ("" = the agent's choice).
  std::string shaping_backend;
  /// Keep each run's working files (<results>/.work: the raw $GRIDEMU_OUT
  /// directories) instead of removing them once collected.
  bool keep_work_files = false;
  /// Placement; null = SinglePnodePlacer. gridemu-controller passes a
  /// PartitionPlacer (placement.h; METIS by default). The placer is run on
  /// the live agents at Submit (an experiment they cannot take is refused,
  /// nothing stored) and again when the runner places it; the placement
  /// report (vnodes per pnode, cut links and rate, imbalance as max load /
  /// target load, algorithm) is stored with it.
  std::shared_ptr<const Placer> placer;
  /// VXLAN VNIs the controller gives out: each experiment with cross-pnode
  /// links gets a block of consecutive VNIs in [vni_first, vni_last], one per
  /// cross-pnode link, disjoint from the blocks of the other non-final
  /// experiments and persisted (Store::AllocateVnis()).
  uint32_t vni_first = 4096;
  uint32_t vni_last = (1u << 24) - 1;
  /// MTU of the network between pnodes (cross-pnode links get this minus
  /// the VXLAN overhead, shard_builder.h).
  uint32_t underlay_mtu = 1500;
  /// Reported in Welcome and manifest.json; "" = GridemuVersion().
  std::string version;
  /// Log lines ("experiment x: placed on host-a"); null = stderr. Called on
  /// the loop thread; must not call back into the Controller.
  std::function<void(std::string_view line)> log;
};

/// Where a run stands, for progress displays.
struct RunProgress {
  std::string id;
  ExperimentState state = ExperimentState::kSubmitted;
  /// What the runner does now: "waiting for agents", "deploying",
  /// "running", "stopping tasks", "collecting", "tearing down", "done".
  std::string phase;
  uint32_t deploy_done = 0;   ///< objects made so far (all pnodes; ShardStatus)
  uint32_t deploy_total = 0;  ///< objects to make
  uint64_t vnodes = 0;
  std::chrono::nanoseconds elapsed{0};   ///< since running began (0 before)
  std::chrono::nanoseconds duration{0};  ///< the experiment's hard stop
  size_t tasks_total = 0;
  size_t tasks_pending = 0;  ///< not started yet
  size_t tasks_running = 0;  ///< starting or running
  size_t tasks_ended = 0;
  size_t tasks_failed = 0;  ///< ended other than exit 0
  size_t waited_total = 0;
  size_t waited_ended = 0;
  size_t events_total = 0;  ///< actions (churn expanded)
  size_t events_done = 0;
  bool final = false;
  std::string reason;  ///< of the final state (or of the failure/cancel under way)
  std::string results_dir;
};

/// A registered agent, as Agents() reports it.
struct AgentStatus {
  std::string host_id;
  bool alive = false;
  uint32_t vnodes = 0;
  std::string kernel_release;
  std::string shaping_backend;
  std::string version;
  std::string lost_reason;
};

class Controller {
 public:
  /// Opens the store, binds the socket, recovers non-final experiments and
  /// starts the event loop. kUnavailable when the socket cannot be bound or
  /// the database opened; store errors otherwise.
  static Result<std::unique_ptr<Controller>> Start(ControllerOptions options);
  /// Stop().
  ~Controller();
  Controller(const Controller&) = delete;
  Controller& operator=(const Controller&) = delete;

  /// Stops the loop and closes the socket and the store. Experiments are NOT
  /// torn down: a controller started later on the same database recovers
  /// them (cancel them first for a clean end). Idempotent.
  void Stop();

  /// The endpoint agents connect to (with the real port for tcp port 0).
  const std::string& endpoint() const;
  /// The store (thread-safe).
  Store& store();
  /// The service the HTTP API serves: Submit parses, stores and starts a
  /// runner (kUnavailable, nothing stored, when no agent is registered);
  /// Cancel cancels through the runner; the rest reads the store.
  ControllerService& service();

  /// Cancels an experiment: returns its new state (cancelling while its
  /// agents tear down, cancelled when nothing was deployed).
  /// kFailedPrecondition when it is final; kNotFound when unknown.
  Result<ExperimentState> Cancel(const std::string& id, const std::string& reason = "");
  /// Where a run stands. kNotFound for an unknown experiment.
  Result<RunProgress> Progress(const std::string& id);
  /// Every agent registered since the controller started.
  std::vector<AgentStatus> Agents();
  /// Waits until at least `n` agents are alive; false on timeout.
  bool WaitForAgents(size_t n, std::chrono::milliseconds timeout);
  /// Waits until the experiment is final; returns its record (kDeadlineExceeded
  /// on timeout, kNotFound when unknown).
  Result<ExperimentRecord> WaitFinal(const std::string& id, std::chrono::milliseconds timeout);

  struct Impl;

 private:
  explicit Controller(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

/// The version string of this build ("0.1.0").
std::string_view GridemuVersion();

}  // namespace gridemu::controller

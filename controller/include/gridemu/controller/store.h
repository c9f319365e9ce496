// The controller's persistent state (DESIGN.md §8): one SQLite database with
// versioned migrations, holding slices, hosts (pnodes), experiments with their
// lifecycle, and each experiment's vnodes, links, tasks, events, metrics and
// results. The controller can be killed at any moment: every change is one
// transaction, and Recover() returns what a restarted controller needs.
//
// Times are Unix times in nanoseconds (`*_unix_ns`, int64) or offsets from the
// experiment start in nanoseconds (`*_ns`). The store never touches the kernel.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "gridemu/common/status.h"
#include "gridemu/experiments/experiment.h"

namespace gridemu::controller {

namespace store_internal {
class SqliteDb;
}  // namespace store_internal

// ---------------------------------------------------------------------------
// Lifecycle

/// An experiment's lifecycle state (DESIGN.md §8). Legal transitions:
///   submitted  -> placed | cancelling | cancelled | failed
///   placed     -> deploying | cancelling | cancelled | failed
///   deploying  -> running | cancelling | failed
///   running    -> collecting | cancelling | failed
///   collecting -> finished | cancelling | failed
///   cancelling -> cancelled | failed
/// finished, failed and cancelled are final: nothing leaves them. Once
/// deploying has started, cancelling goes through `cancelling` (teardown on
/// the agents) before `cancelled`.
enum class ExperimentState {
  kSubmitted,
  kPlaced,
  kDeploying,
  kRunning,
  kCollecting,
  kCancelling,
  kFinished,
  kFailed,
  kCancelled,
};

/// "submitted", "placed", "deploying", "running", "collecting", "cancelling",
/// "finished", "failed", "cancelled".
std::string_view ExperimentStateName(ExperimentState s);
/// Parses an ExperimentStateName(); kInvalidArgument listing the choices.
Result<ExperimentState> ParseExperimentState(std::string_view s);
/// True for finished, failed and cancelled.
bool IsFinalState(ExperimentState s);
/// True when `from -> to` is one of the transitions listed above.
bool IsLegalTransition(ExperimentState from, ExperimentState to);

/// A task instance's state. Updates are not ordered by the store (last write
/// wins); the caller decides what may follow what.
enum class TaskState {
  kPending,   ///< not started yet
  kStarting,  ///< Exec sent to the agent
  kRunning,   ///< the process runs
  kExited,    ///< ended by itself; exit_code is set
  kKilled,    ///< ended by a signal (event, timeout, cancel); signal is set
  kFailed,    ///< could not be started; reason says why
  kLost,      ///< its pnode was lost
};
/// "pending", "starting", "running", "exited", "killed", "failed", "lost".
std::string_view TaskStateName(TaskState s);
/// Parses a TaskStateName(); kInvalidArgument listing the choices.
Result<TaskState> ParseTaskState(std::string_view s);
/// True when the task instance has ended: exited, killed, failed or lost.
bool IsEndedTaskState(TaskState s);

/// An event's state: pending until the controller applied it (or failed to).
enum class EventState { kPending, kApplied, kFailed };
/// "pending", "applied", "failed".
std::string_view EventStateName(EventState s);
/// Parses an EventStateName(); kInvalidArgument listing the choices.
Result<EventState> ParseEventState(std::string_view s);

/// A pnode's state as the agent registry sees it.
enum class HostState { kUp, kSuspect, kDown, kDrained };
/// "up", "suspect", "down", "drained".
std::string_view HostStateName(HostState s);
/// Parses a HostStateName(); kInvalidArgument listing the choices.
Result<HostState> ParseHostState(std::string_view s);

// ---------------------------------------------------------------------------
// Records

/// A slice (DESIGN.md §9). Unset quota fields mean "no limit".
struct SliceRecord {
  std::string name;                    ///< [a-z0-9-], 1-63 characters
  std::optional<uint64_t> max_vnodes;  ///< vnodes of all its non-final experiments
  std::optional<double> max_cpu;       ///< cores
  std::optional<uint64_t> max_memory_bytes;
  bool has_token = false;  ///< an API token is set (only its hash is stored)
  int64_t created_unix_ns = 0;
};

/// A pnode, as registered by its agent.
struct HostRecord {
  std::string host_id;  ///< the agent's identity
  std::string address;  ///< where it is reachable (informational), e.g. "10.1.0.7"
  uint32_t cores = 0;
  uint64_t memory_bytes = 0;
  uint32_t max_vnodes = 0;
  HostState state = HostState::kUp;
  std::optional<int64_t> last_heartbeat_unix_ns;
  int64_t registered_unix_ns = 0;  ///< set by the store on first registration
};

/// One row of the experiments table.
struct ExperimentRecord {
  std::string id;  ///< "<name>-<n>", see Store::CreateExperiment()
  std::string slice;
  std::string name;
  ExperimentState state = ExperimentState::kSubmitted;
  std::string yaml;         ///< the submitted file; empty in ListExperiments() results
  std::string yaml_sha256;  ///< lower-case hex SHA-256 of `yaml`
  std::string source_path;  ///< the file name given at submission
  uint64_t seed = 0;
  std::chrono::nanoseconds duration{0};
  uint64_t generation = 0;  ///< bumped on each (re)deployment, see Store::BumpGeneration()
  uint64_t num_vnodes = 0;
  uint64_t num_links = 0;
  uint64_t num_tasks = 0;  ///< task instances ("leech/0", "leech/1", ...)
  uint64_t num_events = 0;
  int64_t created_unix_ns = 0;
  int64_t updated_unix_ns = 0;  ///< last state change or result update
  std::string results_dir;      ///< "" until set
  std::string failure_reason;   ///< the reason of the transition to failed, else ""
  /// The experiment's VXLAN VNI block [vni_base, vni_base + vni_count), see
  /// Store::AllocateVnis(); 0/0 when none was allocated.
  uint32_t vni_base = 0;
  uint32_t vni_count = 0;
  /// Vnodes lost with their pnode, one line per lost pnode, e.g.
  /// "pnode p2 lost (heartbeat timeout): 3 vnodes: h3, h4, r2"; "" = none.
  std::string lost_vnodes;
};

/// One persisted lifecycle transition.
struct TransitionRecord {
  std::optional<ExperimentState> from;  ///< unset for the initial "submitted"
  ExperimentState to = ExperimentState::kSubmitted;
  int64_t unix_ns = 0;
  std::string reason;
};

/// A vnode of an experiment, as stored.
struct VnodeRecord {
  uint32_t vnode_id = 0;  ///< topology::VnodeId
  std::string name;
  std::string kind;     ///< topology::VnodeKindName()
  std::string runtime;  ///< topology::RuntimeName()
  std::string group;    ///< "" if none
  int64_t group_index = -1;
  std::string pinned_host;  ///< "" = placement decides
  std::optional<double> cpu;
  std::optional<uint64_t> memory_bytes;
  std::optional<uint32_t> pids;
  std::string pnode;  ///< "" until placed
};

/// A link of an experiment, as stored (the full profiles live in the YAML).
struct LinkRecord {
  uint32_t link_id = 0;  ///< topology::LinkId
  std::string name;      ///< Topology::LinkName(), e.g. "tracker--core"
  uint32_t a = 0;        ///< vnode ids of the endpoints
  uint32_t b = 0;
  std::string a_name;
  std::string b_name;
  std::optional<uint64_t> forward_rate_bps;
  std::optional<uint64_t> reverse_rate_bps;
  std::optional<int64_t> forward_delay_ns;
  std::optional<int64_t> reverse_delay_ns;
  std::string a_pnode;  ///< "" until placed
  std::string b_pnode;
};

/// One task instance: task `name` on its `index`-th target.
struct TaskRecord {
  std::string task_id;    ///< "<task name>/<index>", e.g. "leech/7"
  std::string task_name;  ///< "leech"
  uint32_t index = 0;     ///< position in the task's targets
  uint32_t vnode_id = 0;
  std::string vnode;             ///< the vnode's name
  int64_t planned_start_ns = 0;  ///< from the experiment start: at + index * stagger
  bool wait = false;
  TaskState state = TaskState::kPending;
  std::optional<int> exit_code;
  std::optional<int> signal;
  std::string reason;
  std::optional<int64_t> start_unix_ns;
  std::optional<int64_t> end_unix_ns;
  std::string stdout_path;  ///< "" until known
  std::string stderr_path;
};

/// A change to one task instance; unset fields are left as they are.
struct TaskUpdate {
  std::string task_id;
  TaskState state = TaskState::kPending;
  std::optional<int> exit_code;
  std::optional<int> signal;
  std::optional<std::string> reason;
  std::optional<int64_t> start_unix_ns;
  std::optional<int64_t> end_unix_ns;
  std::optional<std::string> stdout_path;
  std::optional<std::string> stderr_path;
};

/// One `events:` entry of an experiment, with its outcome.
struct EventRecord {
  uint32_t index = 0;  ///< position in Experiment::events (sorted by `at`)
  std::string kind;    ///< experiments::EventKindName()
  std::string target;  ///< link name, node selector, or churn group
  std::string detail;  ///< what it does: profile change, node action, churn rate
  int64_t at_ns = 0;   ///< planned, from the experiment start
  EventState state = EventState::kPending;
  std::optional<int64_t> applied_ns;  ///< when it took effect, from the experiment start
  std::string error;
};

/// The outcome of one event.
struct EventUpdate {
  uint32_t index = 0;
  EventState state = EventState::kApplied;
  std::optional<int64_t> applied_ns;
  std::string error;
};

/// One measurement: `name` of `subject` (a vnode, link or pnode) at a time.
struct MetricSample {
  int64_t unix_ns = 0;
  std::string subject;  ///< e.g. "peer3", "tracker--core", "host-a"
  std::string name;     ///< e.g. "tx_bytes", "cpu_seconds"
  double value = 0;
};

/// Input of Store::RecordPlacement().
struct PlacementInput {
  std::vector<std::string> pnode_of_vnode;  ///< indexed by VnodeId; size = num_vnodes
  std::string algorithm;                    ///< e.g. "metis-kway", "pinned"
  uint64_t cut_links = 0;                   ///< links whose endpoints are on different pnodes
  uint64_t cut_rate_bps = 0;                ///< their total rate (both directions)
  /// placement.h's definition: max over pnodes of load / target load (1.0 =
  /// perfect balance, 1.03 = the busiest pnode carries 3 % over its share).
  double imbalance = 0;
};

/// A stored placement.
struct PlacementSummary {
  uint64_t generation = 0;
  std::string algorithm;
  uint64_t cut_links = 0;
  uint64_t cut_rate_bps = 0;
  double imbalance = 0;  ///< max load / target load (placement.h); 1.0 = perfect
  int64_t unix_ns = 0;
  std::map<std::string, uint64_t> vnodes_per_pnode;
  /// The experiment's VNI block (ExperimentRecord::vni_base/vni_count).
  uint32_t vni_base = 0;
  uint32_t vni_count = 0;
};

/// What a restarted controller needs for one experiment that was not final.
/// Vnodes and links are not repeated: re-parse `record.yaml` (the parser is
/// deterministic) and take pnodes from `pnode_of_vnode`.
struct RecoveredExperiment {
  ExperimentRecord record;  ///< with yaml
  std::vector<TransitionRecord> transitions;
  std::vector<TaskRecord> tasks;
  std::vector<EventRecord> events;
  std::optional<PlacementSummary> placement;
  std::vector<std::string> pnode_of_vnode;  ///< indexed by VnodeId; empty if not placed
};

// ---------------------------------------------------------------------------
// Store

/// Options of Store::Open().
struct StoreOptions {
  /// How long a statement waits for another process's lock before failing
  /// with kUnavailable.
  std::chrono::milliseconds busy_timeout{5000};
  /// The clock for every stored time; tests substitute a fake one.
  /// Default: std::chrono::system_clock.
  std::function<int64_t()> now_unix_ns;
};

/// Options of Store::CreateExperiment().
struct CreateExperimentOptions {
  /// The slice to store it in; "" = the experiment's own `slice:`.
  std::string slice;
  /// A chosen id instead of "<name>-<n>" (imports, tests); kAlreadyExists if taken.
  std::string id;
  /// Reason of the initial "submitted" transition.
  std::string reason = "submitted";
};

/// The controller's SQLite database.
///
/// Schema: versioned migrations (table schema_version, one row). Open()
/// applies the missing steps in order, each in its own transaction, and
/// refuses a database whose version is newer than LatestSchemaVersion().
/// The connection runs in WAL mode (file databases), with foreign keys on,
/// synchronous=NORMAL and a busy timeout.
///
/// Experiment ids are "<name>-<n>": the experiment's name and a counter
/// global to the database (1, 2, ...; never reused, even across slices), e.g.
/// "bt-swarm-12". The number after the last '-' makes ids unique.
///
/// Errors: kNotFound for an unknown slice, experiment, task or host (message
/// "unknown experiment 'x'"); kAlreadyExists for a taken id or name;
/// kFailedPrecondition for an illegal transition; kResourceExhausted when a
/// slice quota would be exceeded; kUnavailable when the database stays locked
/// past the busy timeout; kInternal for any other SQLite failure. Every
/// write is one transaction: on error nothing is changed.
///
/// Thread-safety: thread-safe. One connection guarded by a mutex; calls are
/// serialised. Several processes may open the same file (SQLite locking).
class Store {
 public:
  /// Opens (creating if needed) the database at `path`; ":memory:" for a
  /// private in-memory database. Applies migrations; creates slice 'default'
  /// (no quota, no token) in a fresh database.
  /// Errors: kFailedPrecondition for a database newer than this code,
  /// kUnavailable when it cannot be opened or stays locked, kInternal otherwise.
  static Result<std::unique_ptr<Store>> Open(const std::string& path, StoreOptions options = {});

  ~Store();
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;

  /// The schema version this code creates and understands.
  static int LatestSchemaVersion();
  /// The database's schema version (== LatestSchemaVersion() after Open()).
  Result<int> SchemaVersion();
  /// The journal mode in effect: "wal" for files, "memory" for ":memory:".
  Result<std::string> JournalMode();
  const std::string& path() const { return path_; }

  // --- Slices ---------------------------------------------------------------

  /// Creates a slice; `token`, when non-empty, is stored hashed (SHA-256).
  /// kInvalidArgument for a bad name, kAlreadyExists if it exists.
  Status CreateSlice(const SliceRecord& slice, std::string_view token = {});
  /// kNotFound "unknown slice 'x'".
  Result<SliceRecord> GetSlice(const std::string& name);
  /// Every slice, by name.
  Result<std::vector<SliceRecord>> ListSlices();
  /// Sets (or, with an empty token, removes) the slice's API token.
  Status SetSliceToken(const std::string& name, std::string_view token);
  /// Ok when the slice has no token or `token` matches it (constant-time
  /// comparison of hashes); kPermissionDenied otherwise; kNotFound for an
  /// unknown slice.
  Status CheckSliceToken(const std::string& name, std::string_view token);

  // --- Hosts (pnodes) -------------------------------------------------------

  /// Registers a host or updates its address, capacity and state (keeps
  /// registered_unix_ns). kInvalidArgument for an empty host_id.
  Status UpsertHost(const HostRecord& host);
  /// Sets last_heartbeat_unix_ns (now when `unix_ns` is unset). kNotFound if unknown.
  Status RecordHeartbeat(const std::string& host_id, std::optional<int64_t> unix_ns = {});
  /// kNotFound if unknown.
  Status SetHostState(const std::string& host_id, HostState state);
  Result<HostRecord> GetHost(const std::string& host_id);
  /// Every host, by id.
  Result<std::vector<HostRecord>> ListHosts();

  // --- Experiments ----------------------------------------------------------

  /// Stores a parsed experiment in state submitted, in ONE transaction: the
  /// experiments row, its first transition, and a row per vnode, link, task
  /// instance (one per target of each task) and event. All or nothing.
  /// `yaml` is the submitted text (stored with its SHA-256).
  /// Errors: kNotFound for an unknown slice; kResourceExhausted when the
  /// slice's max_vnodes would be exceeded by its non-final experiments plus
  /// this one; kAlreadyExists for a taken options.id or a duplicate row (e.g.
  /// two task instances with the same id).
  /// Cost: O(vnodes + links + task targets + events) rows, prepared
  /// statements; about 1 s for 100,000 vnodes + 100,000 links.
  Result<ExperimentRecord> CreateExperiment(const experiments::Experiment& exp,
                                            std::string_view yaml,
                                            const CreateExperimentOptions& options = {});

  /// The experiment, with its YAML. kNotFound "unknown experiment 'x'".
  Result<ExperimentRecord> GetExperiment(const std::string& id);
  /// Experiments of `slice` ("" = every slice), oldest first, without YAML.
  Result<std::vector<ExperimentRecord>> ListExperiments(const std::string& slice = "");

  /// Moves the experiment to `to`, persisting the transition with the current
  /// time and `reason`, atomically. A transition to failed also sets
  /// failure_reason. kFailedPrecondition for an illegal transition, with the
  /// message "experiment <id> cannot go from <state> to <state>"; kNotFound
  /// for an unknown experiment.
  Status Transition(const std::string& id, ExperimentState to, const std::string& reason);
  /// Every transition of the experiment, oldest first (the first one is the
  /// submission, with no `from`).
  Result<std::vector<TransitionRecord>> ListTransitions(const std::string& id);

  /// Increments the experiment's generation (for a new deployment) and
  /// returns the new value.
  Result<uint64_t> BumpGeneration(const std::string& id);

  /// Stores a placement for the current generation: the pnode of every
  /// vnode (and of every link end) plus its quality. Replaces a previous
  /// placement of the same generation. Does not change the state (call
  /// Transition(id, kPlaced, ...) afterwards). kInvalidArgument when
  /// pnode_of_vnode's size is not the experiment's vnode count.
  Status RecordPlacement(const std::string& id, const PlacementInput& placement);
  /// The latest placement, or nullopt if the experiment was never placed.
  Result<std::optional<PlacementSummary>> GetPlacement(const std::string& id);

  /// Reserves `count` consecutive VXLAN VNIs in [first, last] for the
  /// experiment and returns the first one. The block does not overlap the
  /// block of any other non-final experiment and is taken round robin: the
  /// first gap after the block of the latest experiment that was given one
  /// (final or not), wrapping to `first` — so a block freed by an experiment
  /// that just ended is reused only once the range has gone round, not while
  /// a pnode may still hold its VXLAN devices (their UDP sockets are released
  /// after the teardown reports). It is persisted (ExperimentRecord::vni_base/vni_count): an experiment
  /// that already holds a block of at least `count` VNIs gets it back
  /// unchanged (a restarted controller keeps it). Blocks of final experiments
  /// are free again. One transaction.
  /// Errors: kInvalidArgument for count 0 or first 0 or first > last;
  /// kResourceExhausted "no block of N VNIs is free in [first, last] ..."
  /// when the running experiments' blocks leave no gap; kNotFound for an
  /// unknown experiment. Cost: O(non-final experiments).
  Result<uint32_t> AllocateVnis(const std::string& id, uint32_t count, uint32_t first,
                                uint32_t last);

  /// Appends one line to the experiment's lost_vnodes (vnodes lost with a
  /// pnode). kNotFound for an unknown experiment.
  Status AddLostVnodes(const std::string& id, const std::string& line);

  /// Vnodes by id; links by id.
  Result<std::vector<VnodeRecord>> ListVnodes(const std::string& id);
  Result<std::vector<LinkRecord>> ListLinks(const std::string& id);

  // --- Tasks, events, metrics, results --------------------------------------

  /// Applies task updates in one transaction. kNotFound (and nothing
  /// applied) when a task id is unknown.
  Status UpdateTasks(const std::string& id, const std::vector<TaskUpdate>& updates);
  /// Task instances in creation order (task file order, then index).
  Result<std::vector<TaskRecord>> ListTasks(const std::string& id);
  /// One task instance. kNotFound "experiment x has no task 'leech/3'".
  Result<TaskRecord> GetTask(const std::string& id, const std::string& task_id);
  /// Number of task instances per TaskStateName() (states with none omitted).
  Result<std::map<std::string, uint64_t>> CountTasksByState(const std::string& id);

  /// Applies event outcomes in one transaction. kNotFound (and nothing
  /// applied) for an unknown index.
  Status UpdateEvents(const std::string& id, const std::vector<EventUpdate>& updates);
  /// Events by index.
  Result<std::vector<EventRecord>> ListEvents(const std::string& id);

  /// Appends samples in one transaction.
  Status AppendMetrics(const std::string& id, const std::vector<MetricSample>& samples);
  /// Samples with unix_ns >= since_unix_ns, oldest first, at most `limit`.
  Result<std::vector<MetricSample>> ListMetrics(const std::string& id, int64_t since_unix_ns = 0,
                                                size_t limit = 100000);

  /// Sets the results directory.
  Status SetResultsDir(const std::string& id, const std::string& dir);
  /// Sets result entries (key -> value or file path), replacing equal keys,
  /// in one transaction.
  Status PutResults(const std::string& id, const std::map<std::string, std::string>& entries);
  Result<std::map<std::string, std::string>> ListResults(const std::string& id);

  // --- Restart ----------------------------------------------------------------

  /// Every experiment not in a final state, oldest first, with what a
  /// restarted controller needs to resume or tear it down. One read
  /// transaction (a consistent snapshot).
  Result<std::vector<RecoveredExperiment>> Recover();

 private:
  Store(std::string path, StoreOptions options, std::unique_ptr<store_internal::SqliteDb> db);
  int64_t Now() const;

  const std::string path_;
  const StoreOptions options_;
  std::mutex mu_;
  std::unique_ptr<store_internal::SqliteDb> db_;  // guarded by mu_
};

/// Lower-case hex SHA-256 of `data` (OpenSSL). Thread-safe.
std::string Sha256Hex(std::string_view data);

}  // namespace gridemu::controller

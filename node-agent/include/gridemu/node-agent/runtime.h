// Vnode runtimes (DESIGN.md §6): one interface (create, start, exec, signal,
// freeze/thaw, stats, destroy), implemented by plug-ins that are registered
// explicitly by RegisterBuiltinRuntimes() — no static-initializer
// self-registration. The node-agent receives concrete specs (VnodeSpec): it
// knows nothing of topologies.
//
// Ownership (DESIGN.md §6): every object a runtime creates carries the
// experiment id: netns "<prefix>-<experiment>-<vnode>", cgroup
// "<agent cgroup>/<prefix>/<experiment>/<vnode>", state directory
// "<state_root>/<experiment>/<vnode>". ListLeftovers/Cleanup*/Adopt find
// exactly these and nothing else.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <compare>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "gridemu/node-agent/cgroup.h"
#include "gridemu/node-agent/task.h"
#include "gridemu/common/status.h"

namespace gridemu::agent {

/// Names a vnode on this pnode: its experiment id and its name.
struct VnodeRef {
  std::string experiment;
  std::string name;
  /// "<experiment>/<name>".
  std::string ToString() const { return experiment + "/" + name; }
  friend auto operator<=>(const VnodeRef&, const VnodeRef&) = default;
};

/// One /etc/hosts entry: a vnode name and its addresses (IPv4/IPv6 text).
struct HostsEntry {
  std::string name;
  std::vector<std::string> addresses;
};
/// The name -> addresses table of an experiment, usually shared (one
/// shared_ptr) by all of its vnodes.
using HostsTable = std::vector<HostsEntry>;

/// Everything a runtime needs to build one vnode.
struct VnodeSpec {
  /// Experiment id: [a-z0-9-], 1..48 characters, not starting with '-'.
  std::string experiment;
  /// Vnode name = hostname: [A-Za-z0-9._-], 1..63 characters, not starting with '-' or '.'.
  std::string name;
  /// Position in its group (GRIDEMU_INDEX).
  uint32_t index = 0;
  VnodeResources resources;
  /// Names that /etc/hosts resolves; the vnode's own name should be in it
  /// (else it resolves to 127.0.1.1). Null = only localhost.
  std::shared_ptr<const HostsTable> hosts;
  /// Host directory for outputs collected into the results (GRIDEMU_OUT);
  /// created if missing, visible read-write at the same path. Empty = none.
  std::string out_dir;
  /// Host directory of files shipped with the experiment (GRIDEMU_SHARED);
  /// visible read-only at the same path. Empty = none.
  std::string shared_dir;
  /// Extra environment for every task of the vnode.
  EnvList env;
  /// Size of the private /tmp (tmpfs) in bytes; 0 = the kernel's default
  /// (half of RAM). Its pages are charged to the vnode's memory limit.
  uint64_t tmp_size_bytes = 0;
};

/// Lifecycle state of a vnode.
enum class VnodeState {
  kRunning,  ///< init is running; tasks can be started
  kFrozen,   ///< every process is frozen (Freeze)
  kStopped,  ///< no process (Stop, or init died); network namespace kept; Start restarts it
};
/// "running", "frozen", "stopped".
std::string_view VnodeStateName(VnodeState s);

/// What the runtime knows of a vnode.
struct VnodeInfo {
  VnodeRef ref;
  VnodeState state = VnodeState::kStopped;
  /// Host pid of the vnode's init (PID 1 inside), 0 when stopped.
  pid_t init_pid = 0;
  /// Network namespace name for `ip netns`, and its bind-mount path
  /// (e.g. /run/netns/gridemu-e1-peer0). Valid while the vnode exists.
  std::string netns_name;
  std::string netns_path;
  /// <state_root>/<experiment>/<vnode>: hosts, hostname, home, metadata.
  std::string state_dir;
  /// HOME inside the vnode.
  std::string home_dir;
  /// The vnode's cgroup directories, one per hierarchy.
  std::vector<std::string> cgroup_dirs;
  /// True if this runtime instance found the vnode by Adopt().
  bool adopted = false;
  /// True if the runtime can talk to init (Exec works); false after an
  /// adoption that could not reconnect (signals, freeze, stats, destroy still work).
  bool connected = false;
};

/// Resource usage of a vnode, read from its cgroups.
struct VnodeStats {
  /// CPU time used by all of its processes since creation.
  std::chrono::nanoseconds cpu_usage{0};
  uint64_t memory_current_bytes = 0;
  /// High-water mark of memory use; 0 when the kernel does not report it.
  uint64_t memory_peak_bytes = 0;
  /// Processes (and threads) now, init included.
  uint64_t pids_current = 0;
  /// Processes killed by the OOM killer so far.
  uint64_t oom_kills = 0;
};

/// What a task or vnode reports to the agent (DESIGN.md §7 TaskEvent).
enum class RuntimeEventKind {
  kTaskStarted,  ///< pid_in_vnode is set
  kTaskExited,   ///< result is set (every task that was accepted gets exactly one)
  kVnodeDied,    ///< init died without Stop/Destroy; its tasks get kTaskExited (kLost) first
};

struct RuntimeEvent {
  RuntimeEventKind kind = RuntimeEventKind::kTaskStarted;
  VnodeRef vnode;
  TaskId task = 0;
  int pid_in_vnode = 0;
  TaskResult result;
};

/// A task as the runtime last saw it.
enum class TaskState { kStarting, kRunning, kFinished };
struct TaskStatus {
  TaskId id = 0;
  VnodeRef vnode;
  TaskState state = TaskState::kStarting;
  int pid_in_vnode = 0;
  /// The host directory of the task's cgroup (the task hierarchy).
  std::string cgroup_dir;
  /// Set when state == kFinished.
  TaskResult result;
};

/// gridemu objects found on the host (ListLeftovers), by kind.
struct Leftovers {
  /// Network namespace names (entries of netns_dir).
  std::vector<std::string> netns;
  /// cgroup directories: vnode cgroups and the experiment/prefix dirs above them.
  std::vector<std::string> cgroups;
  /// Host pids of processes in those cgroups.
  std::vector<pid_t> processes;
  /// State directories (<state_root>/<experiment>).
  std::vector<std::string> state_dirs;

  bool empty() const {
    return netns.empty() && cgroups.empty() && processes.empty() && state_dirs.empty();
  }
  /// One line per object, for logs and `gridemu clean --dry-run`.
  std::string ToString() const;
};

/// Options shared by the runtimes.
struct RuntimeOptions {
  /// Name prefix of every object: netns "<prefix>-<exp>-<vnode>", cgroup
  /// directory "<prefix>", default state root "/run/<prefix>". Tests use a
  /// private prefix so that CleanupAll cannot touch anything else.
  std::string prefix = "gridemu";
  /// Root of the per-experiment state directories; empty = "/run/<prefix>".
  std::string state_root;
  /// netns runtime: mount a tmpfs on the state root when it is an empty
  /// directory on a disk filesystem (see netns_runtime.h); unmounted again
  /// when the runtime removes its last experiment.
  bool state_root_tmpfs = true;
  /// Directory of named network namespaces (iproute2's).
  std::string netns_dir = "/run/netns";
  /// The vnode init program (gridemu-vnode-init); empty = $GRIDEMU_VNODE_INIT,
  /// else next to this program, else ../node-agent/ and ../../node-agent/
  /// from it (build trees), else /usr/local/libexec/gridemu, /usr/libexec/gridemu.
  std::string init_path;
  /// cgroup API to use; unset = detect (v1 when a v1 memory hierarchy exists).
  std::optional<CgroupVersion> cgroup_version;
  /// Threads that build vnodes in parallel during CreateBatch (>= 1).
  int create_threads = 2;
  /// How long CreateBatch/Start wait for a new init to report ready.
  std::chrono::milliseconds ready_timeout{20000};
};

/// Callback for events, called from the thread that runs Poll/Wait, without
/// the runtime's lock held (it may call back into the runtime).
using EventCallback = std::function<void(const RuntimeEvent&)>;

/// A vnode runtime. Implementations are thread-safe: any method may be called
/// from any thread; Poll/Wait may block while other calls proceed.
///
/// Destroying the runtime object does NOT destroy its vnodes (they survive an
/// agent restart and can be adopted); call DestroyBatch or Cleanup* first.
class VnodeRuntime {
 public:
  virtual ~VnodeRuntime() = default;

  /// The registry name, e.g. "netns".
  virtual std::string_view name() const = 0;

  /// Creates and starts vnodes, in parallel and batched where the runtime can.
  /// Returns one Status per spec, in order. Errors per vnode: kInvalidArgument
  /// (bad spec), kAlreadyExists, kPermissionDenied (not root), kInternal /
  /// kUnavailable (kernel refused), kDeadlineExceeded (init never got ready).
  /// A vnode that failed leaves nothing behind.
  virtual std::vector<Status> CreateBatch(std::span<const VnodeSpec> specs) = 0;
  /// CreateBatch of one spec.
  Status Create(const VnodeSpec& spec) { return CreateBatch(std::span(&spec, 1)).front(); }

  /// Restarts a stopped vnode: new processes, same network namespace (links
  /// stay), cgroups and files. Errors: kNotFound, kFailedPrecondition (not stopped).
  virtual Status Start(const VnodeRef& vnode) = 0;
  /// Kills every process of the vnode (its tasks end with kKilled) but keeps
  /// its network namespace, cgroups and files: the "kill"/"stop" node event.
  /// Errors: kNotFound.
  virtual Status Stop(const VnodeRef& vnode) = 0;
  /// Destroys vnodes: kills every process, removes cgroups, mounts, the netns
  /// bind mount and the state directory. Unknown vnodes are kNotFound.
  /// Running tasks end with kKilled. One Status per ref.
  virtual std::vector<Status> DestroyBatch(std::span<const VnodeRef> vnodes) = 0;
  /// DestroyBatch of one vnode.
  Status Destroy(const VnodeRef& vnode) { return DestroyBatch(std::span(&vnode, 1)).front(); }

  /// Errors: kNotFound.
  virtual Result<VnodeInfo> Info(const VnodeRef& vnode) const = 0;
  /// The vnodes of this runtime instance (all experiments), sorted.
  virtual std::vector<VnodeRef> List() const = 0;
  /// A new file descriptor (O_CLOEXEC, caller closes it) of the vnode's
  /// network namespace, for setns(2) and netlink. Errors: kNotFound, kInternal.
  virtual Result<int> OpenNetns(const VnodeRef& vnode) const = 0;

  /// Starts a task. Returns at once with its id; kTaskStarted (or kTaskExited
  /// with kStartFailed) follows through Poll/Wait. Errors: kNotFound,
  /// kInvalidArgument (empty command), kFailedPrecondition (vnode stopped),
  /// kUnavailable (no connection to init), kInternal (cannot open outputs).
  virtual Result<TaskId> Exec(const VnodeRef& vnode, const TaskSpec& task) = 0;
  /// Sends `signal` to every process of the task (kKill: kills and sweeps
  /// them all, daemons included; the task ends with kKilled).
  /// Errors: kNotFound; kFailedPrecondition if the task already finished.
  virtual Status Signal(TaskId task, TaskSignal signal) = 0;
  /// A task's state and, once finished, its result. Records stay after the
  /// task and its vnode end, until CleanupExperiment/CleanupAll of its
  /// experiment. Errors: kNotFound.
  virtual Result<TaskStatus> GetTask(TaskId task) const = 0;

  /// Freezes every process of the vnode (cgroup freezer). Errors: kNotFound,
  /// kFailedPrecondition (stopped), kDeadlineExceeded.
  virtual Status Freeze(const VnodeRef& vnode) = 0;
  /// Thaws a frozen vnode. Errors as Freeze.
  virtual Status Thaw(const VnodeRef& vnode) = 0;
  /// Errors: kNotFound, kInternal.
  virtual Result<VnodeStats> Stats(const VnodeRef& vnode) const = 0;

  /// A file descriptor that becomes readable when Poll() has work; for an
  /// event loop (epoll/poll on it, then Poll(0ms)). Owned by the runtime.
  virtual int event_fd() const = 0;
  /// Processes what init processes and the kernel reported, waiting up to
  /// `timeout` for something to arrive, and returns the new events (none if a
  /// callback is set: they went to it).
  virtual std::vector<RuntimeEvent> Poll(std::chrono::milliseconds timeout) = 0;
  /// Waits until `task` finished (pumping events meanwhile; other tasks'
  /// events stay queued for Poll) and returns its result.
  /// Errors: kNotFound, kDeadlineExceeded.
  virtual Result<TaskResult> Wait(TaskId task, std::chrono::milliseconds timeout) = 0;
  /// Routes events to `callback` instead of Poll's return value (empty
  /// function = back to queuing).
  virtual void SetEventCallback(EventCallback callback) = 0;

  /// gridemu objects of `experiment` ("" = of every experiment) on this host:
  /// those of this instance's vnodes and leftovers of earlier instances.
  virtual Result<Leftovers> ListLeftovers(std::string_view experiment) const = 0;
  /// Destroys this instance's vnodes of `experiment`, then removes every
  /// leftover of it: processes (found by cgroup membership), cgroups, netns
  /// bind mounts, state. Never touches objects without the prefix and
  /// experiment id. Errors: kInternal naming what could not be removed.
  virtual Status CleanupExperiment(std::string_view experiment) = 0;
  /// CleanupExperiment for every experiment, then the prefix's own cgroup
  /// and state directories.
  virtual Status CleanupAll() = 0;
  /// Takes over the vnodes of `experiment` ("" = all) left running by an
  /// earlier agent: finds each init by cgroup, reconnects to it when it can
  /// (then Exec works and running tasks are known again), else controls it
  /// through signals and cgroups. Returns the vnodes adopted.
  virtual Result<std::vector<VnodeRef>> Adopt(std::string_view experiment) = 0;
};

/// Builds a runtime from options. Errors: as the runtime's Open.
using RuntimeFactory =
    std::function<Result<std::unique_ptr<VnodeRuntime>>(const RuntimeOptions& options)>;

/// Runtimes by name. Thread-compatible: fill it at start-up, then read it.
class RuntimeRegistry {
 public:
  /// Errors: kAlreadyExists, kInvalidArgument (empty name or null factory).
  Status Register(std::string name, RuntimeFactory factory);
  bool Has(std::string_view name) const;
  /// Registered names, sorted.
  std::vector<std::string> Names() const;
  /// Builds the runtime `name`. Errors: kNotFound (lists the known names),
  /// or the factory's error.
  Result<std::unique_ptr<VnodeRuntime>> Make(std::string_view name,
                                             const RuntimeOptions& options) const;

 private:
  std::map<std::string, RuntimeFactory, std::less<>> factories_;
};

/// Registers the runtimes built into this agent: "netns" (lxc and qemu later).
void RegisterBuiltinRuntimes(RuntimeRegistry& registry);

/// The experiments whose objects `leftovers` (ListLeftovers("")) proves are
/// gridemu's: each state directory (<state_root>/<experiment>) and each cgroup
/// (.../<prefix>/<experiment>[/<vnode>]) names one. A network namespace alone
/// proves nothing (another tool's may carry the prefix), so the names in
/// `leftovers.netns` are not used. Only valid experiment ids, sorted.
std::set<std::string> ExperimentsWithObjects(const Leftovers& leftovers, std::string_view prefix);

/// Checks an experiment id / a vnode name as VnodeSpec documents.
/// Errors: kInvalidArgument saying what is wrong.
Status ValidateExperimentId(std::string_view experiment);
Status ValidateVnodeName(std::string_view name);

}  // namespace gridemu::agent

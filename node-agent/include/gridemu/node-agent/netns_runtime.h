// The "netns" vnode runtime (DESIGN.md §6): per vnode, network, UTS, IPC, PID
// and mount namespaces with gridemu-vnode-init as PID 1, cgroup limits, and
// the files programs expect (hostname, /etc/hosts, private /tmp and HOME,
// GRIDEMU_* variables). Programs are the host's own binaries.
//
// Creation uses syscalls only (clone, setns, mount, mkdir/write on cgroupfs),
// never an `ip` or `unshare` process. The files in netns_dir that the
// namespaces are bind-mounted on are hard links of one empty inode (see
// CreateNetnsMountPoint): to iproute2 they are ordinary named namespaces. Vnode mount namespaces are copied from a
// private template namespace without /run/netns' bind mounts, so creating
// vnode N costs the same as vnode 1 and no vnode pins another's netns.
//
// Per-vnode state (hostname, meta, HOME, init.sock) lives under the state root
// (default /run/<prefix>). Where that is not already in memory (a host whose
// /run is on disk), the runtime mounts a tmpfs on the empty state root before
// its first vnode and unmounts it once the last experiment is gone
// (RuntimeOptions::state_root_tmpfs): per-vnode files then cost no disk inode
// allocation, and the mount outlives the agent process, so an agent restart
// still adopts its vnodes.
//
// Requires root (CAP_SYS_ADMIN) for everything but the pure helpers.
#pragma once

#include <atomic>
#include <condition_variable>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "gridemu/node-agent/cgroup.h"
#include "gridemu/node-agent/runtime.h"
#include "gridemu/node-agent/task.h"
#include "gridemu/node-agent/vnode_init.h"
#include "gridemu/common/status.h"

namespace gridemu::agent {

/// Where a vnode's objects live. Pure data computed by ComputeVnodePaths().
struct VnodePaths {
  std::string netns_name;      ///< "<prefix>-<exp>-<vnode>"
  std::string netns_path;      ///< "<netns_dir>/<netns_name>"
  std::string experiment_dir;  ///< "<state_root>/<exp>"
  std::string state_dir;       ///< "<state_root>/<exp>/<vnode>"
  std::string hostname_file;   ///< state_dir + "/hostname"
  std::string hosts_file;      ///< state_dir + "/hosts" (when not shared)
  std::string resolv_file;     ///< experiment_dir + "/resolv.conf" (RenderResolvConf())
  std::string home_dir;        ///< state_dir + "/home"
  std::string meta_file;       ///< state_dir + "/vnode.meta"
  std::string listen_path;     ///< state_dir + "/init.sock"
  std::string cgroup_rel;      ///< "<prefix>/<exp>/<vnode>"
};

/// Computes the paths of vnode `vnode` of `experiment` (no validation).
VnodePaths ComputeVnodePaths(const RuntimeOptions& options, std::string_view experiment,
                             std::string_view vnode);

/// The effective state root: options.state_root, or "/run/<prefix>".
std::string StateRoot(const RuntimeOptions& options);

/// The vnodes' /etc/resolv.conf: the only name server is the vnode's own
/// loopback, so that a lookup of a name that /etc/hosts lacks fails at once
/// (nothing listens on port 53: the query is refused) instead of waiting for
/// the host's DNS server, which vnodes cannot reach; a program that runs its
/// own DNS server on 127.0.0.1 inside the vnode is asked.
std::string RenderResolvConf();

/// /etc/hosts text: localhost lines, then one "<address>\t<name>" line per
/// address of each entry, in table order; "127.0.1.1\t<self>" when `self` is
/// not empty and not in the table. Names or addresses with whitespace or '#'
/// are skipped (they would corrupt the file).
std::string RenderHosts(const HostsTable* table, std::string_view self);

/// True if `table` has an entry named `name`.
bool HostsTableHas(const HostsTable* table, std::string_view name);

/// The environment every task of the vnode starts from: PATH, HOME, HOSTNAME,
/// GRIDEMU_NODE, GRIDEMU_INDEX, GRIDEMU_EXPERIMENT, GRIDEMU_OUT and
/// GRIDEMU_SHARED (when set), then spec.env.
EnvList BuildVnodeEnv(const VnodeSpec& spec, std::string_view home_dir);

/// The Config init gets: hostname; /proc; tmpfs on /tmp (size from the spec)
/// and /dev/shm; bind mounts of `hosts_file` on /etc/hosts and hostname file on
/// /etc/hostname, of HOME, out_dir and (read-only) shared_dir on themselves.
vnode_init::Config BuildInitConfig(const VnodeSpec& spec, const VnodePaths& paths,
                                   std::string_view hosts_file);

/// Splits a netns name "<prefix>-<rest>" and returns <rest> ("<exp>-<vnode>"),
/// or "" when the name does not carry the prefix.
std::string_view NetnsNameRest(std::string_view prefix, std::string_view netns_name);

/// Where the time of the last CreateBatch/DestroyBatch went, for benchmarks.
/// *_thread_s are summed over the worker threads; the others are wall time.
struct BatchProfile {
  size_t vnodes = 0;
  double prepare_thread_s = 0;  ///< state files, cgroup directories and limits
  double spawn_thread_s = 0;    ///< clone of init (namespaces) + exec + netns bind mount
  double build_s = 0;           ///< the parallel phase holding the two above
  double join_s = 0;            ///< moving the inits into their cgroups
  double ready_s = 0;           ///< waiting for the inits' Ready
  double kill_s = 0;            ///< destroy: until every init has died
  double teardown_s = 0;        ///< destroy: cgroups, netns bind mounts, state
};

/// The netns runtime. Thread-safe (one internal mutex; blocking waits happen
/// outside it).
class NetnsRuntime final : public VnodeRuntime {
 public:
  /// Opens the runtime: detects the cgroup layout, finds the init program,
  /// creates the event machinery. Errors: kPermissionDenied (not root),
  /// kNotFound (no gridemu-vnode-init), kUnavailable (no usable cgroups).
  static Result<std::unique_ptr<NetnsRuntime>> Open(const RuntimeOptions& options);
  ~NetnsRuntime() override;

  NetnsRuntime(const NetnsRuntime&) = delete;
  NetnsRuntime& operator=(const NetnsRuntime&) = delete;

  std::string_view name() const override { return "netns"; }
  std::vector<Status> CreateBatch(std::span<const VnodeSpec> specs) override;
  Status Start(const VnodeRef& vnode) override;
  Status Stop(const VnodeRef& vnode) override;
  std::vector<Status> DestroyBatch(std::span<const VnodeRef> vnodes) override;
  Result<VnodeInfo> Info(const VnodeRef& vnode) const override;
  std::vector<VnodeRef> List() const override;
  Result<int> OpenNetns(const VnodeRef& vnode) const override;
  Result<TaskId> Exec(const VnodeRef& vnode, const TaskSpec& task) override;
  Status Signal(TaskId task, TaskSignal signal) override;
  Result<TaskStatus> GetTask(TaskId task) const override;
  Status Freeze(const VnodeRef& vnode) override;
  Status Thaw(const VnodeRef& vnode) override;
  Result<VnodeStats> Stats(const VnodeRef& vnode) const override;
  int event_fd() const override { return epoll_fd_; }
  std::vector<RuntimeEvent> Poll(std::chrono::milliseconds timeout) override;
  Result<TaskResult> Wait(TaskId task, std::chrono::milliseconds timeout) override;
  void SetEventCallback(EventCallback callback) override;
  Result<Leftovers> ListLeftovers(std::string_view experiment) const override;
  Status CleanupExperiment(std::string_view experiment) override;
  Status CleanupAll() override;
  Result<std::vector<VnodeRef>> Adopt(std::string_view experiment) override;

  /// The cgroup layout in use.
  const CgroupLayout& cgroup_layout() const { return layout_; }
  /// The init program in use.
  const std::string& init_path() const { return init_path_; }
  /// Phase timings of the last CreateBatch (create) and DestroyBatch (destroy).
  BatchProfile last_create_profile() const;
  BatchProfile last_destroy_profile() const;

 private:
  struct Vnode;
  struct Task;

  NetnsRuntime(const RuntimeOptions& options, CgroupLayout layout, std::string init_path,
               int epoll_fd);

  // Creation steps (no lock held; they touch only their own Vnode).
  Status RefreshTemplate();
  // Creates the state root; when options_.state_root_tmpfs and it is an
  // empty directory on a filesystem other than tmpfs/ramfs, mounts a tmpfs
  // (source "gridemu-state") on it. Errors: mkdir/statfs/mount failures.
  Status EnsureStateRootLocked();
  // When no vnode exists and no CreateBatch runs: removes the (empty) state
  // root, unmounting it first if it is the runtime's tmpfs.
  void ReleaseStateRootLocked();
  Status EnsureExperimentCgroups(const std::string& experiment);
  Status PrepareVnode(const VnodeSpec& spec, Vnode* v, const std::string& hosts_file);
  Status SpawnInit(Vnode* v, bool new_netns);
  // Creates the empty file at `path` that a vnode's netns is bind-mounted on.
  // It is a hard link to the inode of the previous such file (held open in
  // netns_anchor_fd_, opened before its bind mount) when the filesystem
  // allows: a new name, but no inode allocation (ext4 without a journal
  // scans recently deleted inodes on every allocation). Falls back to
  // creating a new file (O_EXCL), which becomes the anchor. Errors:
  // kAlreadyExists when `path` exists, else as ErrnoStatus.
  Status CreateNetnsMountPoint(const std::string& path);
  Status JoinCgroups(Vnode* v);
  Status AwaitReady(Vnode* v, std::chrono::steady_clock::time_point deadline);
  Status TeardownObjects(Vnode* v);
  void KillInit(Vnode* v);
  void ReapInit(Vnode* v, std::chrono::steady_clock::time_point deadline);
  Status CleanupImpl(std::string_view experiment, bool all);

  // Event handling. *Locked functions require mu_.
  void Pump(std::chrono::milliseconds timeout);
  void DeliverPending();
  void RegisterLocked(Vnode* v);
  void UnregisterLocked(Vnode* v);
  void HandleControlLocked(Vnode* v);
  void HandleInitExitLocked(Vnode* v);
  void HandleMessageLocked(Vnode* v, const vnode_init::Message& m);
  void FinishTaskLocked(Task* t, TaskResult result);
  void EndTasksOfVnodeLocked(Vnode* v, ExitReason reason, const std::string& why);
  void EmitLocked(RuntimeEvent e);
  Vnode* FindLocked(const VnodeRef& ref) const;
  uint64_t OomKillsLocked(const Vnode& v, const Task* t) const;

  const RuntimeOptions options_;
  const CgroupLayout layout_;
  const std::string init_path_;
  const std::string state_root_;
  const int epoll_fd_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  /// fd of the template mount namespace; shared so that a batch in flight
  /// keeps using the one it started with while another refreshes it.
  std::shared_ptr<const int> template_fd_;
  std::map<VnodeRef, std::unique_ptr<Vnode>> vnodes_;
  std::map<uint64_t, Vnode*> by_serial_;
  uint64_t next_serial_ = 1;
  std::map<TaskId, std::unique_ptr<Task>> tasks_;
  TaskId next_task_id_ = 1;
  std::deque<RuntimeEvent> queue_;
  std::vector<RuntimeEvent> pending_callbacks_;
  EventCallback callback_;
  std::map<std::string, bool> experiment_cgroups_ready_;
  int creating_ = 0;  ///< CreateBatch calls in flight
  std::mutex anchor_mu_;      ///< guards netns_anchor_fd_
  int netns_anchor_fd_ = -1;  ///< see CreateNetnsMountPoint
  // Low descriptors (on /dev/null) reserved at Open, one per concurrent
  // SpawnInit: the child's socket end is dup'ed there so that the clone can
  // share the agent's fd table and keep only descriptors up to the slot
  // (clone + exec then cost O(1) in the agent's open descriptors).
  // Guarded by anchor_mu_.
  std::vector<int> free_slots_;
  int devnull_fd_ = -1;
  BatchProfile create_profile_;
  BatchProfile destroy_profile_;
};

}  // namespace gridemu::agent

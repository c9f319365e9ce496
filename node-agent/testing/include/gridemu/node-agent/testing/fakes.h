// Fakes of everything the agent's logic touches on a pnode (the model:
// LevelDB's FaultInjectionTestEnv, db/fault_injection_test.cc; netshape's
// RecordingNetlinkOps::fail_at): network namespaces, interfaces, routes,
// VXLAN devices, qdiscs, delay-line rules, vnodes, tasks and shard records,
// all in one FakeKernel that a test inspects. Nothing here needs root or
// touches the host.
//
//   FakeKernel k;
//   FakeRuntime rt(&k);  FakeLinkShaper sh(&k);  MemoryShardRecords rec(&k);
//   ShardApplier ap(FakeApplierDeps(&k, &rt, &sh, &rec), {});
//   k.FailAt(7);                       // the 7th call of any fake fails
//   ap.Deploy(shard);                  // ... and must leave k.Empty()
//
// Every call of a fake that changes something (a vnode made, a device, an
// address, a route, a qdisc, a rule, a record written or removed) is one
// numbered call of the kernel: FailAt(n) makes the n-th fail with kInternal
// "injected failure at call n (<what>)", once; log() lists them all.
// Objects follow the kernel's rules that the agent relies on: a veth end's
// peer goes with it; a namespace takes its devices, qdiscs and rules with it;
// a VXLAN device is made in the underlay namespace and then moved (a failure
// between the two leaves it in the underlay, as a crash would).
//
// Thread-safety: every fake is thread-safe (one mutex in the kernel).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "gridemu/netshape/link_shaper.h"
#include "gridemu/node-agent/plumbing.h"
#include "gridemu/node-agent/plumbing_vxlan.h"
#include "gridemu/node-agent/runtime.h"
#include "gridemu/node-agent/shard_applier.h"
#include "gridemu/node-agent/shard_records.h"

namespace gridemu::agent::testing {

/// The state all fakes share. See the file comment.
class FakeKernel {
 public:
  /// An interface.
  struct Device {
    std::string kind;  ///< "veth", "bridge", "vxlan"
    std::string tag;   ///< ifalias
    bool up = true;
    std::string peer_ns, peer;  ///< veth: the other end
    std::string master;         ///< the bridge it is a port of
    std::vector<std::string> addresses;  ///< "a.b.c.d/len"
    uint32_t vni = 0;
    std::string underlay;  ///< vxlan: the namespace its socket is in
    uint32_t group = 0;    ///< interface group
    uint32_t mtu = 0;
    uint32_t ifindex = 0;  ///< as requested (VethSpec::ifindex_a); 0 = the kernel's choice
  };
  /// A network namespace ("home" is the pnode's own; it always exists).
  struct Netns {
    std::map<std::string, Device> devices;
    std::vector<std::string> routes;  ///< "dst/len via gw dev if"
    bool forwarding = false;
    std::map<std::string, std::string> qdiscs;  ///< ifname -> netshape tag
    std::set<std::string> rules;                ///< netshape tags of delay-line rules
    std::map<std::string, std::string> sysctls;  ///< written by SetSysctl
  };
  /// A vnode as the kernel holds it (across runtime instances: a restart).
  struct Vnode {
    std::string netns;  ///< its namespace's path
    VnodeState state = VnodeState::kRunning;
  };

  FakeKernel();

  /// The n-th numbered call (1-based) fails, once; 0 = none.
  void FailAt(uint64_t n);
  /// Calls made so far.
  uint64_t calls() const;
  /// One line per call: "3 veth /fake/netns/g-e1-a:eth0 /fake/netns/g-e1-b:eth0".
  std::vector<std::string> log() const;

  /// No vnode, no namespace but home, nothing in home: nothing but what
  /// AddForeignNetns / AddForeignDevice put there.
  bool Empty() const;
  /// Everything, one line per object, for failure messages.
  std::string Dump() const;

  /// A copy of a namespace ("home" or a path); nullopt-like empty when absent.
  bool HasNetns(const std::string& key) const;
  Netns GetNetns(const std::string& key) const;
  std::map<VnodeRef, Vnode> vnodes() const;
  /// Adds a namespace that is not a vnode (a look-alike of another tool).
  void AddForeignNetns(const std::string& path);
  /// Adds a device to a namespace directly (a look-alike interface).
  void AddForeignDevice(const std::string& key, const std::string& name, const std::string& tag);

  // --- for the fakes ---
  /// Counts a call; returns the injected failure when it is due.
  Status Call(const std::string& what);
  std::mutex& mu() const { return mu_; }
  // Unlocked state (hold mu()).
  std::map<std::string, Netns> ns_;
  std::map<VnodeRef, Vnode> vnodes_;
  std::set<std::string> foreign_netns_;
  std::set<std::pair<std::string, std::string>> foreign_devices_;  // (namespace, name)
  // Removes a namespace and what depends on it (veth peers elsewhere).
  void DropNetnsLocked(const std::string& key);
  void DropDeviceLocked(const std::string& key, const std::string& name);

 private:
  mutable std::mutex mu_;
  uint64_t calls_ = 0;
  uint64_t fail_at_ = 0;
  std::vector<std::string> log_;
};

/// A VnodeRuntime over a FakeKernel: vnodes are namespaces
/// "/fake/netns/<prefix>-<experiment>-<name>"; tasks start at once (the
/// kTaskStarted event waits for Poll) and run until signalled, their vnode
/// stops, or FinishTask().
class FakeRuntime final : public VnodeRuntime {
 public:
  explicit FakeRuntime(FakeKernel* kernel, std::string prefix = "gridemu");

  /// Ends a running task with `exit_code` (its kTaskExited event waits for Poll).
  void FinishTask(TaskId task, int exit_code);
  /// The tasks started so far, with their specs.
  std::map<TaskId, TaskSpec> tasks() const;
  /// Tasks started from now on catch SIGTERM and SIGINT and keep running (a program
  /// that ignores them); only SIGKILL or their vnode's stop ends them.
  void set_ignore_term(bool ignore);
  /// Every signal delivered so far, in order.
  std::vector<std::pair<TaskId, TaskSignal>> signals() const;

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
  int event_fd() const override { return -1; }
  std::vector<RuntimeEvent> Poll(std::chrono::milliseconds timeout) override;
  Result<TaskResult> Wait(TaskId task, std::chrono::milliseconds timeout) override;
  void SetEventCallback(EventCallback callback) override;
  Result<Leftovers> ListLeftovers(std::string_view experiment) const override;
  Status CleanupExperiment(std::string_view experiment) override;
  Status CleanupAll() override;
  Result<std::vector<VnodeRef>> Adopt(std::string_view experiment) override;

  /// The namespace path of a vnode.
  std::string NetnsPath(const VnodeRef& v) const;

 private:
  struct Task {
    VnodeRef vnode;
    TaskSpec spec;
    TaskState state = TaskState::kRunning;
    TaskResult result;
    bool ignore_term = false;
  };
  Status SetState(const VnodeRef& vnode, const char* what, VnodeState from_not, VnodeState to);
  void EndTasksOfLocked(const VnodeRef& vnode, ExitReason reason);
  void EndLocked(TaskId id, Task& t, ExitReason reason, int code, int sig);

  FakeKernel* k_;
  std::string prefix_;
  std::set<VnodeRef> mine_;  // guarded by k_->mu()
  std::map<TaskId, Task> tasks_;
  std::vector<RuntimeEvent> events_;
  TaskId next_task_ = 0;
  EventCallback callback_;
  bool ignore_term_ = false;
  std::vector<std::pair<TaskId, TaskSignal>> signals_;
};

/// A Plumbing over a FakeKernel (namespaces by NetnsRef::Key(): a path or "home").
class FakePlumbing final : public Plumbing {
 public:
  explicit FakePlumbing(FakeKernel* kernel) : k_(kernel) {}
  Status CreateVeth(const VethSpec& spec) override;
  Status CreateBridge(const BridgeSpec& spec) override;
  Status SetLinkUp(const NetnsRef& ns, std::string_view ifname, bool up) override;
  Status AddAddress(const AddressSpec& spec) override;
  Status EnableForwarding(const NetnsRef& ns) override;
  Status SetSysctl(const NetnsRef& ns, std::string_view key, std::string_view value) override;
  Status AddRoute(const RouteSpec& spec) override;
  Status DeleteLink(const NetnsRef& ns, std::string_view ifname) override;
  Result<std::vector<LinkInfo>> ListTagged(const NetnsRef& ns,
                                           std::string_view tag_prefix) override;
  Result<size_t> DeleteTagged(const NetnsRef& ns, std::string_view tag_prefix) override;

 private:
  FakeKernel* k_;
};

/// A VxlanPlumbing over a FakeKernel: create in the underlay (one call), then
/// move into the vnode's namespace (another call).
class FakeVxlanPlumbing final : public VxlanPlumbing {
 public:
  explicit FakeVxlanPlumbing(FakeKernel* kernel) : k_(kernel) {}
  Status CreateVxlan(const VxlanSpec& spec) override;
  Result<std::vector<VxlanInfo>> ListVxlan(const NetnsRef& ns,
                                           std::string_view tag_prefix) override;
  Result<size_t> DeleteTagged(const NetnsRef& ns, std::string_view tag_prefix) override;

 private:
  FakeKernel* k_;
};

/// A LinkShaper over a FakeKernel: a direction is a qdisc on the sender's
/// interface and, with the userspace backend and an impairment, a rule in the
/// receiver's namespace (or in its hold point's, on a port that must exist there).
class FakeLinkShaper final : public netshape::LinkShaper {
 public:
  explicit FakeLinkShaper(FakeKernel* kernel,
                          netshape::Backend backend = netshape::Backend::kUserspace);
  /// As a crashed process: every direction handed out forgets the kernel
  /// (destroying it removes nothing), so its qdiscs and rules stay.
  void Crash();

  netshape::Backend backend() const override { return backend_; }
  const netshape::Capabilities& capabilities() const override { return caps_; }
  Result<std::vector<std::unique_ptr<netshape::ShapedDirection>>> ShapeDirections(
      const std::vector<netshape::ShapeRequest>& requests) override;
  Status RemoveDirections(
      std::vector<std::unique_ptr<netshape::ShapedDirection>>& directions) override;
  Result<int> RemoveLeftoverRules(const std::string& netns_path,
                                  const std::string& tag_prefix) override;
  Result<bool> RemoveLeftoverQdisc(const std::string& netns_path,
                                   const std::string& ifname) override;

  class Direction;

 private:
  FakeKernel* k_;
  netshape::Backend backend_;
  netshape::Capabilities caps_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

/// ShardRecords in memory; writes and removals are numbered kernel calls.
class MemoryShardRecords final : public ShardRecords {
 public:
  explicit MemoryShardRecords(FakeKernel* kernel) : k_(kernel) {}
  Status WriteShard(const v1::DeployShard& shard) override;
  Status WritePhase(const std::string& experiment, const ShardPhase& phase) override;
  Result<ShardPhase> ReadPhase(const std::string& experiment) const override;
  Result<v1::DeployShard> ReadShard(const std::string& experiment) const override;
  Status Remove(const std::string& experiment) override;
  Result<std::vector<std::string>> List() const override;
  std::vector<std::string> Describe(const std::string& experiment) const override;
  bool empty() const;

 private:
  FakeKernel* k_;
  mutable std::mutex mu_;
  std::map<std::string, v1::DeployShard> shards_;
  std::map<std::string, ShardPhase> phases_;
};

/// ApplierDeps over the fakes (plumbing objects made per call).
ApplierDeps FakeApplierDeps(FakeKernel* kernel, FakeRuntime* runtime, FakeLinkShaper* shaper,
                            MemoryShardRecords* records);

}  // namespace gridemu::agent::testing

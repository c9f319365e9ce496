// cgroups for vnodes (DESIGN.md §6): where a vnode's cgroups live, which files
// carry its limits, and the few effects the runtime needs (create, limit, kill,
// freeze, read statistics). cgroup v1 (one hierarchy per controller, possibly
// co-mounted, as on hybrid systems) and v2 (the unified hierarchy) are both
// supported.
//
// Layout: every vnode's cgroup is nested under the agent's own cgroup (read
// from /proc/self/cgroup), at <agent cgroup>/<prefix>/<experiment>/<vnode>,
// in each v1 hierarchy that carries a controller gridemu uses (cpu, cpuacct,
// memory, pids, freezer), or once in the v2 hierarchy. Below the vnode:
//   v1: the vnode's init lives in <vnode> itself; each task gets
//       <vnode>/task-<id> in the "task" hierarchy only (freezer, else pids, ...)
//       so that its processes can be found and swept.
//   v2: no internal processes: init lives in <vnode>/init and each task in
//       <vnode>/task-<id>; <vnode> enables memory/pids/cpu for its children.
//
// The parsing and planning functions are pure and unit-tested; the functions
// marked "effect" touch the kernel's cgroup filesystems.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "gridemu/common/status.h"

namespace gridemu::agent {

/// Resource limits of one vnode. Zero means "no limit" for every field.
struct VnodeResources {
  /// CPU bandwidth in cores: 0.25 = 25 ms of CPU time per 100 ms period,
  /// 2.0 = two full cores. 0 = unlimited.
  double cpu_cores = 0;
  /// Relative CPU weight on the cgroup v2 scale 1..10000 (100 = default share);
  /// converted to cpu.shares on v1 (100 -> 1024). 0 = leave the default.
  uint32_t cpu_weight = 0;
  /// Memory limit in bytes (RAM; swap is disabled for the vnode when this is
  /// set and the kernel accounts swap). 0 = unlimited.
  uint64_t memory_bytes = 0;
  /// Maximum number of processes (and threads) of the vnode's programs, init
  /// not counted. 0 = unlimited.
  uint32_t pids = 0;
};

/// Which cgroup API the host exposes to gridemu. Hybrid hosts (v1 controllers
/// plus an empty unified tree) count as kV1.
enum class CgroupVersion { kV1, kV2 };

/// One mounted cgroup hierarchy and the agent's place in it.
struct CgroupHierarchy {
  /// Where the hierarchy is mounted, e.g. "/sys/fs/cgroup/memory".
  std::string mount_point;
  /// The cgroup that is the root of this mount (mountinfo field 4), usually
  /// "/"; not "/" inside containers that mount only their own subtree.
  std::string mount_root = "/";
  /// v1: the controllers of the hierarchy ("cpu", "cpuacct", ...);
  /// v2: the controllers the agent's parent makes available (may be empty
  /// when unknown at parse time).
  std::vector<std::string> controllers;
  /// The agent's cgroup in this hierarchy as /proc/self/cgroup says, e.g.
  /// "/system.slice/gridemu-agent.service".
  std::string agent_path = "/";

  /// True if `controller` is one of `controllers`.
  bool Has(std::string_view controller) const;
  /// The directory of the agent's cgroup on disk: mount_point + agent_path
  /// made relative to mount_root, e.g. "/sys/fs/cgroup/memory/system.slice/x".
  std::string AgentDir() const;
};

/// The cgroup hierarchies gridemu uses on this host. Value type, thread-compatible.
struct CgroupLayout {
  CgroupVersion version = CgroupVersion::kV1;
  /// v1: one entry per distinct mount carrying cpu, cpuacct, memory, pids or
  /// freezer (co-mounted controllers share an entry), in that order of first
  /// controller; v2: exactly one entry, the unified hierarchy.
  std::vector<CgroupHierarchy> hierarchies;

  /// Builds the layout from the text of /proc/self/mountinfo and
  /// /proc/self/cgroup. Chooses v1 when a v1 hierarchy carries the memory
  /// controller, else v2 when a cgroup2 filesystem is mounted; `force`
  /// insists on one version (e.g. v2 on a hybrid host, whose unified tree
  /// has the v2 core features but usually no controllers).
  /// Errors: kUnavailable when no (forced) version is usable,
  /// kInvalidArgument when the text cannot be parsed.
  static Result<CgroupLayout> Parse(std::string_view mountinfo, std::string_view self_cgroup,
                                    std::optional<CgroupVersion> force = std::nullopt);
  /// Effect: Parse() of this process's /proc/self/{mountinfo,cgroup}; on v2
  /// also fills `controllers` from the agent cgroup's cgroup.controllers.
  static Result<CgroupLayout> Detect(std::optional<CgroupVersion> force = std::nullopt);

  /// The hierarchy carrying `controller` (v2: the unified one if it lists the
  /// controller or the list is empty), or nullptr.
  const CgroupHierarchy* ForController(std::string_view controller) const;
  /// The hierarchy that holds per-task cgroups (v1: freezer, else pids, else
  /// the first; v2: the unified one). Requires a non-empty layout.
  const CgroupHierarchy& TaskHierarchy() const;
  /// AgentDir() + "/" + rel for every hierarchy, in `hierarchies` order.
  std::vector<std::string> Dirs(std::string_view rel) const;
};

/// The path of a vnode's cgroup relative to the agent's cgroup:
/// "<prefix>/<experiment>/<vnode>".
std::string VnodeCgroupRel(std::string_view prefix, std::string_view experiment,
                           std::string_view vnode);
/// The name of a task's cgroup below its vnode's: "task-<id>".
std::string TaskCgroupName(uint64_t task_id);

/// CPU bandwidth as the kernel wants it: `quota_us` of CPU time per
/// `period_us`; quota_us < 0 means unlimited ("max").
struct CpuBandwidth {
  int64_t quota_us = -1;
  uint64_t period_us = 100000;
  friend bool operator==(const CpuBandwidth&, const CpuBandwidth&) = default;
};

/// cores -> bandwidth: quota = round(cores * period), at least 1000 us (the
/// kernel's minimum); cores <= 0 (or not finite) -> unlimited.
/// E.g. 0.25 cores, 100 ms -> 25000 us per 100000 us.
CpuBandwidth ComputeCpuBandwidth(double cores,
                                 std::chrono::microseconds period = std::chrono::milliseconds(100));
/// v2 weight (1..10000, 100 = default) -> v1 cpu.shares (2..262144, 1024 = default).
uint64_t CpuWeightToShares(uint32_t weight);

/// One file write that applies a limit: `value` into <vnode dir of the
/// hierarchy carrying `controller`>/`file`. An optional write is skipped
/// when the file does not exist (e.g. swap accounting disabled).
struct CgroupWrite {
  std::string controller;
  std::string file;
  std::string value;
  bool optional = false;
  friend bool operator==(const CgroupWrite&, const CgroupWrite&) = default;
};

/// The writes that apply `resources` to a fresh vnode cgroup, in order.
/// v1: cpu.cfs_period_us, cpu.cfs_quota_us, cpu.shares, memory.limit_in_bytes,
/// memory.memsw.limit_in_bytes (optional), memory.swappiness (optional),
/// pids.max. v2: cpu.max, cpu.weight, memory.max, memory.swap.max (optional),
/// pids.max. Limits that are 0 produce no write. pids gets +1 for init.
std::vector<CgroupWrite> PlanCgroupLimits(CgroupVersion version, const VnodeResources& resources);

/// The value of `key` in a "key value" per line file (memory.events,
/// memory.oom_control, cpu.stat, pids.events). Errors: kNotFound.
Result<uint64_t> ParseKeyedValue(std::string_view text, std::string_view key);
/// Pids from a cgroup.procs text (one decimal per line). Errors: kInvalidArgument.
Result<std::vector<pid_t>> ParseProcs(std::string_view text);

// ---------------------------------------------------------------------------
// Effects. All paths are absolute directories of one cgroup. Thread-safe (no
// shared state), but concurrent calls on the same cgroup race as the kernel
// lets them.

/// Effect: writes `value` into dir/file. Errors: kNotFound (no such file),
/// kInternal with the path and errno otherwise.
Status CgroupWrite1(const std::string& dir, std::string_view file, std::string_view value);
/// Effect: reads dir/file. Errors: kNotFound, kInternal.
Result<std::string> CgroupRead(const std::string& dir, std::string_view file);
/// Effect: pids in dir/cgroup.procs (as seen from this pid namespace), and,
/// if `recursive`, in every descendant cgroup.
Result<std::vector<pid_t>> CgroupProcs(const std::string& dir, bool recursive);
/// Effect: sends `sig` once to every process of dir and its descendants.
/// Returns the number of processes signalled. Missing cgroup -> 0.
Result<int> CgroupSignalAll(const std::string& dir, int sig);
/// Effect: kills every process of dir and its descendants with SIGKILL and
/// waits until none is left (cgroup.kill on v2 when present, else repeated
/// passes so that processes forked meanwhile die too). Missing cgroup -> ok.
/// Errors: kDeadlineExceeded if processes remain after `timeout`.
Status CgroupKillAll(const std::string& dir,
                     std::chrono::milliseconds timeout = std::chrono::milliseconds(5000));
/// Effect: removes dir and its descendant cgroups, deepest first, retrying
/// briefly while the kernel still reports them busy. Missing -> ok.
/// Errors: kFailedPrecondition if a cgroup still has processes, kInternal.
Status CgroupRemoveTree(const std::string& dir,
                        std::chrono::milliseconds timeout = std::chrono::milliseconds(2000));
/// Effect: freezes (or thaws) the cgroup dir and waits until the kernel says
/// it is frozen (v1 freezer.state FROZEN / v2 cgroup.events "frozen 1"), or
/// thawed. Errors: kDeadlineExceeded, kNotFound, kInternal.
Status CgroupFreeze(CgroupVersion version, const std::string& dir, bool frozen,
                    std::chrono::milliseconds timeout = std::chrono::milliseconds(5000));

}  // namespace gridemu::agent

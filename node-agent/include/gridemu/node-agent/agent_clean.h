// Removing gridemu's objects from a pnode (`gridemu clean`, DESIGN.md §6):
// exactly the objects gridemu's records name, never anything found by a name
// pattern alone. What is found by:
//  - experiments: those with runtime state directories or cgroups under the
//    prefix, or agent shard records; for each, its vnodes (network
//    namespaces, cgroups, processes, state) as VnodeRuntime::ListLeftovers(exp)
//    finds them. A namespace merely named "<prefix>-..." that belongs to no
//    recorded experiment is not touched (VnodeRuntime::CleanupAll is not used
//    for that reason: it takes every "<prefix>-*" namespace);
//  - in each of those namespaces: netshape's NFQUEUE rules (comment
//    "gridemu:<experiment>:...") and root qdiscs on interfaces tagged
//    "<prefix>:<experiment>:..." (they go with the namespace anyway; removing
//    them first lets the report name them);
//  - in the home namespace: interfaces whose ifalias starts with
//    "<prefix>:<experiment>:" (or "<prefix>:" for all experiments);
//  - the agent's shard records (<state dir>/<experiment>.shard|.phase).
// Requires root. Not thread-safe with a running agent of the same prefix
// (stop it first).
//
// The logic runs over CleanDeps (the runtime, the plumbing, the shaping
// leftovers, the records) so that tests check what is taken and what is left
// with fakes; CleanLeftovers(options) gives it the kernel's.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "gridemu/common/status.h"
#include "gridemu/node-agent/plumbing.h"
#include "gridemu/node-agent/runtime.h"
#include "gridemu/node-agent/shard_records.h"

namespace gridemu::agent {

struct CleanOptions {
  std::string prefix = "gridemu";
  /// "" = every experiment of the prefix.
  std::string experiment;
  /// List what would be removed, remove nothing.
  bool dry_run = false;
  /// Runtime state root ("" = /run/<prefix>), netns directory, agent records
  /// ("" = /run/<prefix>-agent), gridemu-vnode-init ("" = the runtime's search).
  std::string state_root;
  std::string netns_dir = "/run/netns";
  std::string agent_state_dir;
  std::string init_path;
};

struct CleanReport {
  /// One line per object removed (or, with dry_run, to remove), e.g.
  /// "netns gridemu-e1-r0", "rule gridemu-e1-r0: 2 NFQUEUE rules",
  /// "qdisc gridemu-e1-r0/eth0", "interface vx-e1 (home namespace)",
  /// "cgroup /sys/fs/cgroup/...", "process 1234", "record /run/gridemu-agent/e1.shard".
  std::vector<std::string> objects;
  /// What could not be removed.
  std::vector<std::string> errors;
};

/// What CleanLeftovers acts through (the pointers must outlive the call).
struct CleanDeps {
  /// Finds and removes vnodes (ListLeftovers, CleanupExperiment).
  VnodeRuntime* runtime = nullptr;
  /// Lists and deletes tagged interfaces (ListTagged, DeleteTagged).
  Plumbing* plumbing = nullptr;
  /// netshape's RemoveLeftoverQdisc / RemoveLeftoverRules (shaper.h).
  std::function<Result<bool>(const std::string& netns_path, const std::string& ifname)>
      remove_qdisc;
  std::function<Result<int>(const std::string& netns_path, const std::string& tag_prefix)>
      remove_rules;
  /// The agent's shard records.
  ShardRecords* records = nullptr;
  /// Whether a namespace path exists (default: access(2)).
  std::function<bool(const std::string& path)> path_exists;
};

/// Finds (and unless dry_run removes) gridemu's objects through `deps`.
/// Errors: kInvalidArgument (bad prefix or experiment id); per-object
/// failures go to CleanReport::errors.
Result<CleanReport> CleanLeftovers(const CleanOptions& options, const CleanDeps& deps);

/// CleanLeftovers on this host's kernel: the netns runtime, netlink
/// plumbing, netshape's leftover functions, the records in agent_state_dir.
/// Errors: as above, kPermissionDenied (not root), or the runtime's Open errors.
Result<CleanReport> CleanLeftovers(const CleanOptions& options);

}  // namespace gridemu::agent

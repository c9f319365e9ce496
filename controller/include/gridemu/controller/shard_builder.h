// Shards (DESIGN.md §7): the part of an experiment that one pnode's agent
// builds, as a v1::DeployShard. Pure planning: an Experiment, an addressing
// plan (topology/addressing.h) and a placement go in, one DeployShard per
// pnode comes out. No I/O, no kernel; thread-safe (no shared state).
//
// What a shard holds for pnode p:
//  - every vnode placed on p (kind, runtime, resources, group and index,
//    forwarding for routers);
//  - every link whose two ends are on p, with the interface names and
//    addresses of the plan (CIDR "10.0.0.1/31"; empty on switch ports) and
//    both directions' profiles (forward = Link::a -> Link::b);
//  - one bridge "br0" per switch vnode on p, enslaving all its interfaces;
//  - the static routes of the vnodes on p;
//  - the /etc/hosts entries of the whole experiment (every shard gets all).
// Links between two pnodes need VXLAN tunnels, which are not implemented yet:
// BuildShards fails with kUnimplemented naming the first such link.
//
// Proto units: ratios in ppm (1 % = 10,000 ppm), times in ns, rates in bit/s.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "gridemu/common/link_profile.h"
#include "gridemu/common/status.h"
#include "gridemu/experiments/experiment.h"
#include "gridemu/topology/addressing.h"
#include "gridemu/proto/link_profile_convert.h"
#include "gridemu/v1/agent.pb.h"

namespace gridemu::controller {

/// Knobs of BuildShards().
struct ShardOptions {
  /// Host directory under which each vnode's GRIDEMU_OUT lives
  /// (DeployShard.output_dir); "" = none.
  std::string output_dir;
  /// Host directory of the experiment's shipped files (GRIDEMU_SHARED); "" = none.
  std::string shared_dir;
  /// MTU of every link's interfaces in bytes; 0 = the kernel's default (1500).
  uint32_t mtu = 0;
  /// Shaping backend to ask for ("" = the agent's choice, "netem", "userspace").
  std::string shaping_backend;
  /// Number of pnodes; 0 = 1 + the largest index in the placement. Shards of
  /// pnodes without vnodes are still returned (empty).
  uint32_t num_pnodes = 0;
};

/// Builds one DeployShard per pnode, indexed by pnode.
///
/// `placement[v]` is the pnode index of vnode v (size = number of vnodes; all
/// zeros for one pnode). `plan` must come from PlanAddressing() of
/// `experiment.topology`. Seed and metrics interval come from the experiment
/// (metrics_interval_ms = 0 when `collect.metrics` is off).
///
/// Errors: kInvalidArgument when the placement or plan does not match the
/// topology (sizes, a pnode index >= num_pnodes) or the experiment id is empty;
/// kUnimplemented "link a--b spans pnodes 0 and 1 ..." for a cross-pnode link.
/// Cost: O(vnodes + links + routes + pnodes * hosts entries).
Result<std::vector<v1::DeployShard>> BuildShards(const experiments::Experiment& experiment,
                                                 const std::string& experiment_id,
                                                 uint64_t generation,
                                                 const std::vector<uint32_t>& placement,
                                                 const topology::AddressPlan& plan,
                                                 const ShardOptions& options = {});

// LinkProfileToProto / LinkProfileFromProto: gridemu/proto/link_profile_convert.h.

}  // namespace gridemu::controller

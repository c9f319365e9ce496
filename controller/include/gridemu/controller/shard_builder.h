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
//  - every link with ONE end on p (a cross-pnode link): the same LinkSpec as
//    on the other pnode (name, both ends, both profiles, mtu) plus `tunnel`:
//    vni, remote_address = the other pnode's underlay address
//    (ShardOptions::pnode_addresses, i.e. its AgentHello.address) and
//    local_end "a" or "b" (which end lives on p). Each pnode builds its half:
//    the local vnode's interface joined to a VXLAN device, rate-shaping what
//    it sends (forward on the a side, reverse on the b side) and, with the
//    userspace backend, holding what it receives in its wire namespace
//    (node-agent shard_plan.h WirePlan): each direction is delayed on its
//    receiver's pnode, where no program has seen it yet;
//  - `reshaped` on every link a link-set event of the timeline changes, so
//    that the agent deploys it where a delay set at run time can hold its
//    packets (the wire namespace) even if the file gives it none.
//
// VNIs: cross-pnode link number k (k-th cross-pnode link in LinkId order,
// k = 0, 1, ...) gets vni = ShardOptions::vni_base + k in both shards; the
// same inputs always give the same VNIs. The caller reserves
// [vni_base, vni_base + vni_count) for the experiment (the controller keeps
// the blocks of the experiments running at the same time disjoint: the kernel
// refuses two VXLAN devices with one VNI in one underlay namespace).
// CountCrossPnodeLinks() says how many are needed.
//
// MTU of a cross-pnode link: VXLAN adds kVxlanOverheadBytes to every frame,
// so its mtu is min(mtu or 1500, underlay_mtu - kVxlanOverheadBytes), in both
// shards (both ends of a link must agree). Links within a pnode keep `mtu`.
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
  /// Put the experiment's /etc/hosts entries into every shard (DeployShard
  /// .hosts). false = leave them out (the shards' hosts are empty): the
  /// caller sends them itself, encoded once for all shards
  /// (topology::HostsEntries(); controller/src/deploy_encode.h), which saves
  /// pnodes x hosts entries of protobuf objects (100,000 x 1,000 at scale).
  bool include_hosts = true;
  /// Underlay address of each pnode (AgentHello.address, e.g. "10.1.0.7"),
  /// indexed by pnode. Needed only for pnodes with a cross-pnode link; ""
  /// (or missing entries) = not announced.
  std::vector<std::string> pnode_addresses;
  /// First VNI of the experiment's block (1 .. 2^24 - 1); cross-pnode link k
  /// gets vni_base + k.
  uint32_t vni_base = 0;
  /// Size of the block; the experiment may use at most this many VNIs.
  /// 0 = no limit other than the 24-bit VNI space.
  uint32_t vni_count = 0;
  /// MTU of the underlay network between pnodes, in bytes.
  uint32_t underlay_mtu = 1500;
};

/// Bytes VXLAN over IPv4 adds to each frame (outer Ethernet 14 + IPv4 20 +
/// UDP 8 + VXLAN 8).
inline constexpr uint32_t kVxlanOverheadBytes = 50;
/// The largest VNI (24 bits).
inline constexpr uint32_t kMaxVni = (1u << 24) - 1;

/// Number of links of `topology` whose ends `placement` puts on different
/// pnodes (= VNIs BuildShards() needs). `placement[v]` is vnode v's pnode
/// index; entries out of range count as pnode -1 (never equal). O(links).
uint64_t CountCrossPnodeLinks(const topology::Topology& topology,
                              const std::vector<uint32_t>& placement);

/// Builds one DeployShard per pnode, indexed by pnode.
///
/// `placement[v]` is the pnode index of vnode v (size = number of vnodes; all
/// zeros for one pnode). `plan` must come from PlanAddressing() of
/// `experiment.topology`. Seed and metrics interval come from the experiment
/// (metrics_interval_ms = 0 when `collect.metrics` is off).
///
/// Errors: kInvalidArgument when the placement or plan does not match the
/// topology (sizes, a pnode index >= num_pnodes) or the experiment id is empty;
/// kFailedPrecondition "link a--b spans pnodes 0 and 1 but pnode 1 announced no
/// underlay address ..." for a cross-pnode link to or from a pnode without an
/// address; kResourceExhausted when the cross-pnode links need more VNIs than
/// vni_count (or than the VNI space above vni_base); kInvalidArgument for
/// vni_base 0 with cross-pnode links, or an underlay_mtu too small for VXLAN.
/// Cost: O(vnodes + links + routes + pnodes * hosts entries).
Result<std::vector<v1::DeployShard>> BuildShards(const experiments::Experiment& experiment,
                                                 const std::string& experiment_id,
                                                 uint64_t generation,
                                                 const std::vector<uint32_t>& placement,
                                                 const topology::AddressPlan& plan,
                                                 const ShardOptions& options = {});

// LinkProfileToProto / LinkProfileFromProto: gridemu/proto/link_profile_convert.h.

}  // namespace gridemu::controller

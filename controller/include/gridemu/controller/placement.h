// Multi-pnode placement (DESIGN.md §8): which pnode runs each vnode when an
// experiment spans many pnodes. Three algorithms behind one signature:
//
//   metis-kway   METIS k-way graph partitioning (libmetis 5.1,
//                METIS_PartGraphKway; Karypis & Kumar, "A fast and high quality
//                multilevel scheme for partitioning irregular graphs", SIAM J.
//                Sci. Comput. 20(1), 1998) of the vnode graph: vertex weight =
//                cpu demand, edge weight = link rate, target weight of each
//                part = its pnode's share of the capacity. Minimises the edge
//                cut (traffic that must ride VXLAN between pnodes) at a bounded
//                load imbalance.
//   random       every vnode on a uniformly random free slot (baseline).
//   round-robin  vnode i on the next pnode that has room (baseline).
//
// The result type (Placement), the pnode description (PnodeCandidate) and the
// Placer interface the controller calls come from placement_simple.h;
// PartitionPlacer adapts these functions to it.
//
// Model, shared by the three algorithms:
//
// - Capacity. A pnode's hard limit is its room, max_vnodes - vnodes_in_use
//   (max_vnodes 0 = no limit): no placement ever puts more vnodes on it. Its
//   share of the load (the target weight) is proportional to its capacity,
//   measured by PlacementOptions::capacity (by default: room when every pnode
//   announces max_vnodes, else cores when every pnode announces cores, else
//   equal shares).
// - Load. A vnode's load is its cpu demand in millicores (resources.cpu * 1000;
//   PlacementOptions::default_cpu_millicores when unset). Random and
//   round-robin balance vnode counts; METIS balances load.
// - Imbalance = max over pnodes of load / target load, where target load =
//   total load * the pnode's share: 1.0 is perfect, 1.03 means the busiest
//   pnode carries 3 % more than its share (METIS's own definition; for equal
//   capacities this is max load / average load).
// - Edge cut: links whose two ends are on different pnodes, and their rate
//   (forward + reverse rate_bps; an unshaped direction adds 0).
// - Pins (`host:`) are honoured exactly; a vnode whose runtime some pnodes do
//   not offer (PnodeCandidate::runtimes) only goes to pnodes that offer it.
//
// How METIS handles pins and hard limits (METIS itself has neither fixed
// vertices nor hard capacities): pinned vnodes are assigned first and taken
// out of the graph; their load is subtracted from their pnode's target, and
// the rest is partitioned with the remaining targets. Then (1) parts with equal
// targets are relabelled so that each lands on the pnode whose pins it is
// most connected to (the pins' pull: METIS part labels are arbitrary), (2) a
// repair pass moves vnodes off pnodes lacking their runtime or over their
// room (hard), then off pnodes over the load bound METIS was given (which it
// can miss on small or lumpy graphs) when another pnode stays less loaded,
// each time choosing the vnode and destination that cost the least cut, and
// (3) a greedy refinement pass moves boundary vnodes to the pnode they are
// most connected to while that lowers the cut and keeps every room and the
// load bound. Edge weights: the lower rate of a link's two directions (an
// unshaped link weighs as much as the fastest shaped one), scaled so that
// METIS's 32-bit sums cannot overflow; parallel links add up. With one usable
// pnode METIS is not called (algorithm "single-pnode"; "pinned" when every
// vnode is pinned).
//
// Errors (before anything is deployed; all three algorithms):
//   kUnavailable         no pnode at all.
//   kFailedPrecondition  "vnode 'x' is pinned to unknown pnode 'p9'";
//                        a pin to a pnode without the vnode's runtime;
//                        a runtime no pnode offers.
//   kResourceExhausted   "100,500 vnodes do not fit: the 1,000 pnodes hold at
//                        most 100,000 (max_vnodes)"; "pnode 'p1' holds at most
//                        10 vnodes (max_vnodes) but 12 are pinned to it";
//                        vnodes of one runtime that do not fit on the pnodes
//                        offering it.
//   kInvalidArgument     bad options (max_imbalance, default_cpu_millicores);
//                        a pnode listed twice.
//   kInternal            METIS failed (its error code is in the message).
//
// Pure computation: no I/O, no global state; every function is thread-safe.
// Deterministic: the same inputs and seed give the same placement. Cost
// (bench/controlplane, one thread on a shared 2-core machine): METIS on
// 100,000 vnodes / 200,000 links / 1,000 pnodes in 1.1-2.6 s and 170 MiB peak
// RSS; random and round-robin are O(vnodes + links), under 20 ms there.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "gridemu/common/status.h"
#include "gridemu/controller/placement_simple.h"
#include "gridemu/topology/model.h"

namespace gridemu::controller {

/// A pnode as placement sees it: host id, cores, memory, max_vnodes,
/// vnodes_in_use, runtimes. The same type the Placer interface takes.
using PnodeCapacity = PnodeCandidate;

/// The placement algorithms of this file.
enum class PlacementAlgorithm { kMetis, kRandom, kRoundRobin };

/// "metis-kway", "random", "round-robin" (also Placement::algorithm).
std::string_view PlacementAlgorithmName(PlacementAlgorithm a);
/// Parses a PlacementAlgorithmName() (or "metis"); kInvalidArgument listing the choices.
Result<PlacementAlgorithm> ParsePlacementAlgorithm(std::string_view s);

/// What a pnode's share of the load is proportional to.
enum class CapacityMeasure {
  kAuto,    ///< kVnodes if every pnode announces max_vnodes, else kCores if every
            ///< pnode announces cores, else kEqual
  kVnodes,  ///< room = max_vnodes - vnodes_in_use
  kCores,   ///< cores
  kEqual,   ///< the same share for every pnode
};

/// Tuning of the placers. The defaults suit the controller.
struct PlacementOptions {
  /// Seeds METIS (METIS_OPTION_SEED) and the random placer; the same seed gives
  /// the same placement. PartitionPlacer uses the experiment's seed.
  uint64_t seed = 1;
  /// Load of a vnode whose resources.cpu is unset, in millicores (1000 = one
  /// core). 250: the DESIGN.md §3 example default, and what 100 vnodes on a
  /// 25-core pnode get each. Must be > 0.
  uint32_t default_cpu_millicores = 250;
  /// Edge weight, as a rate in bits/s, of a link with no rate_bps in either
  /// direction. An unshaped link runs at veth speed, so cutting it costs at
  /// least as much as cutting the fastest shaped link: 0 (default) = the
  /// highest rate_bps of the topology, or 1 Gbit/s if no link has a rate.
  uint64_t unshaped_link_rate_bps = 0;
  /// Load imbalance METIS may accept, as a fraction over the target: 0.03 =
  /// a pnode may carry 3 % more than its share (METIS_OPTION_UFACTOR 30). When
  /// the rooms leave less slack it is lowered to that slack, but not below 1 %
  /// (tighter bounds cost METIS cut; the repair pass enforces rooms exactly).
  /// In [0.001, 1].
  double max_imbalance = 0.03;
  /// How target weights derive from the pnodes' declared capacity.
  CapacityMeasure capacity = CapacityMeasure::kAuto;
  /// Also balance memory (METIS second constraint, ncon = 2): a vnode's memory
  /// demand is resources.memory_bytes (default_memory_bytes when unset), a
  /// pnode's share is its memory_bytes (equal shares if any pnode announces 0).
  bool balance_memory = false;
  /// Memory demand of a vnode whose resources.memory_bytes is unset, in bytes.
  uint64_t default_memory_bytes = 256ull << 20;
};

/// What a placement looks like: the figures of Placement plus the spread.
struct PlacementReport {
  std::vector<uint32_t> vnodes_per_pnode;  ///< indexed like the pnodes given
  std::vector<uint64_t> load_per_pnode;    ///< cpu demand in millicores, same index
  uint64_t cut_links = 0;                  ///< links with ends on different pnodes
  uint64_t cut_rate_bps = 0;               ///< their forward + reverse rate_bps
  uint64_t cut_links_unshaped = 0;         ///< of cut_links, those with no rate at all
  double imbalance = 1.0;                  ///< max load / target load; 1.0 with no load
};

/// Evaluates any assignment of vnodes to `pnodes` (pnode_of_vnode[v] indexes
/// `pnodes`; sizes must match the topology, else the figures cover what is in
/// range). Uses options.capacity and the cpu defaults to compute targets.
PlacementReport EvaluatePlacement(const topology::Topology& topology,
                                  const std::vector<PnodeCapacity>& pnodes,
                                  const std::vector<uint32_t>& pnode_of_vnode,
                                  const PlacementOptions& options = {});

/// METIS k-way placement (see the file comment). The result's `pnodes` are the
/// host ids of `pnodes` in the given order (unused ones included) and
/// pnode_of_vnode indexes them; algorithm = "metis-kway" ("single-pnode" when
/// only one pnode can take vnodes). Errors: see the file comment.
Result<Placement> PlaceMetis(const topology::Topology& topology,
                             const std::vector<PnodeCapacity>& pnodes,
                             const PlacementOptions& options = {});

/// Uniformly random placement: the free slots of every pnode (its share of the
/// vnodes, never more than its room) are shuffled and dealt to the unpinned
/// vnodes. Same result shape and errors as PlaceMetis; algorithm = "random".
Result<Placement> PlaceRandom(const topology::Topology& topology,
                              const std::vector<PnodeCapacity>& pnodes,
                              const PlacementOptions& options = {});

/// Round-robin placement: unpinned vnodes in id order, each on the next pnode
/// (cyclically) that still has slots of its share. Same result shape and
/// errors as PlaceMetis; algorithm = "round-robin".
Result<Placement> PlaceRoundRobin(const topology::Topology& topology,
                                  const std::vector<PnodeCapacity>& pnodes,
                                  const PlacementOptions& options = {});

/// Dispatches to one of the three functions above.
Result<Placement> Place(PlacementAlgorithm algorithm, const topology::Topology& topology,
                        const std::vector<PnodeCapacity>& pnodes,
                        const PlacementOptions& options = {});

/// Removes the pnodes that got no vnode from `p.pnodes` and renumbers
/// pnode_of_vnode accordingly (the Placer contract: `pnodes` lists the pnodes
/// used). Order of the remaining pnodes is kept.
Placement DropUnusedPnodes(Placement p);

/// The Placer the controller calls: one of the algorithms above with the
/// experiment's seed (options.seed is replaced by experiment.seed), and the
/// unused pnodes dropped. Thread-safe (immutable).
class PartitionPlacer : public Placer {
 public:
  explicit PartitionPlacer(PlacementAlgorithm algorithm = PlacementAlgorithm::kMetis,
                           PlacementOptions options = {})
      : algorithm_(algorithm), options_(options) {}
  Result<Placement> Place(const experiments::Experiment& experiment,
                          const std::vector<PnodeCandidate>& candidates) const override;

 private:
  PlacementAlgorithm algorithm_;
  PlacementOptions options_;
};

}  // namespace gridemu::controller

// Placement (DESIGN.md §8): which pnode runs each vnode. Placer is the
// interface the controller calls; SinglePnodePlacer puts every vnode on one
// pnode (`gridemu run`'s embedded controller, `gridemu-controller --placement
// single`); PartitionPlacer (placement.h: METIS k-way, random, round-robin)
// spreads them over many, cross-pnode links becoming VXLAN tunnels
// (shard_builder.h). Pure: no I/O. Thread-safe (no shared state).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "gridemu/common/status.h"
#include "gridemu/experiments/experiment.h"

namespace gridemu::controller {

/// A pnode placement may use.
struct PnodeCandidate {
  std::string host_id;
  uint32_t cores = 0;
  uint64_t memory_bytes = 0;
  uint32_t max_vnodes = 0;            ///< 0 = no limit announced
  uint32_t vnodes_in_use = 0;         ///< by other non-final experiments
  std::vector<std::string> runtimes;  ///< empty = not announced (anything goes)
};

/// The outcome of a placement.
struct Placement {
  /// The pnodes used, in index order.
  std::vector<std::string> pnodes;
  /// pnode index of every vnode, indexed by VnodeId.
  std::vector<uint32_t> pnode_of_vnode;
  std::string algorithm;  ///< e.g. "single-pnode", "pinned", "metis-kway"
  uint64_t cut_links = 0;     ///< links whose ends are on different pnodes
  uint64_t cut_rate_bps = 0;  ///< their forward + reverse rate_bps
  /// Max over pnodes of load / target load (placement.h): 1.0 = perfect,
  /// 1.03 = the busiest pnode carries 3 % over its share. The controller
  /// recomputes the three figures with EvaluatePlacement() whatever the placer.
  double imbalance = 0;
};

/// Chooses pnodes for an experiment's vnodes.
class Placer {
 public:
  virtual ~Placer() = default;
  /// kUnavailable when there is no candidate at all; kResourceExhausted when
  /// none has room; kFailedPrecondition when pinned vnodes cannot be honoured.
  /// Messages say which pnodes were considered and why each was not used.
  virtual Result<Placement> Place(const experiments::Experiment& experiment,
                                  const std::vector<PnodeCandidate>& candidates) const = 0;
};

/// Every vnode on one pnode: the first candidate (in the given order) with
/// room for all of them (max_vnodes - vnodes_in_use) and every runtime they
/// need, or the pnode every pinned vnode names.
class SinglePnodePlacer : public Placer {
 public:
  Result<Placement> Place(const experiments::Experiment& experiment,
                          const std::vector<PnodeCandidate>& candidates) const override;
};

}  // namespace gridemu::controller

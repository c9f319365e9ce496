// The vnode/link overlap of a deploy (shard_applier.h), as a small class of
// its own: vnodes are made in chunks on the calling thread; every link whose
// local ends exist is handed, in batches, to a worker thread that plumbs and
// shapes it while the next chunk of vnodes is being made (making namespaces
// mostly waits on the kernel, so the two overlap well); once every vnode
// exists the calling thread helps the worker drain what is left.
//
// The pipeline knows nothing of vnodes or links but their indices: the
// caller says which vnodes each link needs and supplies the two steps.
//
// Guarantees: MakeVnodes is called on the calling thread, for consecutive
// ranges in order; MakeLinks is called for a link only after MakeVnodes made
// every vnode it needs, exactly once, never for a link whose vnode failed;
// MakeLinks may run on the worker and the calling thread at the same time
// (for different links): it must be thread-safe. Once a step reports an
// error no further batch is started; batches already running finish.
// Run() returns when no batch is running.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "gridemu/node-agent/agent_core.h"

namespace gridemu::agent {

/// Options of a DeployPipeline.
struct PipelineOptions {
  /// Vnodes per MakeVnodes call (>= 1); progress is reported after each.
  size_t vnode_chunk = 250;
  /// At most this many links per MakeLinks call (>= 1). A chunk's links are
  /// split into at least two batches so that both threads have work.
  size_t link_batch = 125;
  /// Start the worker at once (else only once every vnode exists: no overlap).
  bool overlap = true;
};

/// What a step reports.
struct StepResult {
  uint32_t done = 0;  ///< objects made
  std::vector<ShardObjectError> errors;
};

/// What Run() made.
struct PipelineResult {
  uint32_t vnodes_done = 0;  ///< vnodes made (MakeVnodes' `made` flags)
  uint32_t links_done = 0;   ///< objects the MakeLinks calls reported
  std::vector<ShardObjectError> errors;
  double vnodes_s = 0;      ///< wall time until every vnode was made
  double links_tail_s = 0;  ///< wall time from then until every link was made
  bool ok() const { return errors.empty(); }
};

/// See the file comment.
class DeployPipeline {
 public:
  /// Makes vnodes [first, first + count); sets made[i - first] for each
  /// vnode i that now exists and appends an error for each that does not.
  using MakeVnodesFn =
      std::function<void(size_t first, size_t count, std::vector<char>& made, StepResult& result)>;
  /// Makes the given links (indices); thread-safe.
  using MakeLinksFn = std::function<StepResult(std::span<const size_t> links)>;
  /// Objects done so far (vnodes + link objects), after each chunk and batch.
  using ProgressFn = std::function<void(uint32_t done)>;

  explicit DeployPipeline(PipelineOptions options) : options_(options) {}

  /// Runs both steps over `vnode_count` vnodes and links whose needs are
  /// `link_vnodes[l]` (indices of the vnodes link l needs: its local ends).
  PipelineResult Run(size_t vnode_count, const std::vector<std::vector<size_t>>& link_vnodes,
                     const MakeVnodesFn& make_vnodes, const MakeLinksFn& make_links,
                     const ProgressFn& progress = {});

 private:
  PipelineOptions options_;
};

}  // namespace gridemu::agent

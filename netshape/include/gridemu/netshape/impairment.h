// netem's per-packet decisions, in userspace (used by the delay line, delay_line.h).
//
// This reproduces sch_netem's netem_enqueue() (Linux net/sched/sch_netem.c, v6.x) with
// the same parameters (ImpairmentSpec, in netem's u32 fractions) and the same order of
// decisions, drawing 32-bit random numbers from gridemu::Rng instead of the kernel's
// prandom state, so that a seed gives the same decisions on every machine:
//   1. duplicate:  dup && dup >= crandom(dup_corr)               -> one more copy
//   2. loss:       random: loss && loss >= crandom(loss_corr);
//                  Gilbert–Elliott: good: to bad if rnd < p; lost if rnd < k1;
//                                   bad:  to good if rnd < r; lost if rnd > h
//   3. reorder:    gap == 0 || counter < gap - 1 || reorder < crandom(reorder_corr)
//                    -> delayed by tabledist(latency, jitter), ++counter
//                  else -> sent at once (jumps the queue), counter = 0
// where crandom is netem's correlated generator (get_crandom: next = (rnd * (2^32 - rho)
// + last * rho) >> 32, rho = corr + 1) and tabledist is netem's: uniform in
// [latency - jitter, latency + jitter) without a table, else
// latency + jitter * table[rnd % size] / 8192 (DistributionTable in plan.h).
// A duplicate is decided again (loss, reorder, delay) without being duplicated, as netem
// re-enqueues the clone at the root with duplication disabled.
#pragma once

#include <chrono>
#include <cstdint>
#include <vector>

#include "gridemu/common/random.h"
#include "gridemu/netshape/plan.h"

namespace gridemu::netshape {

/// What happens to one packet.
struct PacketDecision {
  bool drop = false;                  ///< lost (netem: loss event and not duplicated)
  bool duplicate = false;             ///< one more copy must be decided with NextForDuplicate()
  bool reorder = false;               ///< sent at once, ahead of the delayed packets
  std::chrono::nanoseconds delay{0};  ///< hold time when neither dropped nor reordered (>= 0)
};

/// netem's decision process for one direction. Not thread-safe (one per direction,
/// used by the thread that serves its queue). Deterministic given (spec, seed) and the
/// sequence of calls.
class ImpairmentModel {
 public:
  ImpairmentModel(const ImpairmentSpec& spec, uint64_t seed);

  /// Replaces the parameters as netem_change() does: the random stream continues; the
  /// correlation states are re-initialised (netem's init_crandom), the reorder counter
  /// restarts and the Gilbert–Elliott chain restarts in the good state. Packets already
  /// held keep their release times.
  void Update(const ImpairmentSpec& spec);

  /// Decision for the next packet.
  PacketDecision Next();
  /// Decision for a duplicate (never duplicated again).
  PacketDecision NextForDuplicate();

  const ImpairmentSpec& spec() const { return spec_; }

 private:
  struct CorrState {
    uint32_t rho = 0;
    uint32_t last = 0;
  };
  uint32_t Rand32();
  uint32_t CorrRandom(CorrState& s);
  void InitCorr(CorrState& s, uint32_t rho);
  bool LossEvent();
  PacketDecision Decide(bool allow_duplicate);
  int64_t TableDist();

  ImpairmentSpec spec_;
  const std::vector<int16_t>* table_ = nullptr;
  Rng rng_;
  CorrState delay_cor_, loss_cor_, dup_cor_, reorder_cor_;
  uint32_t counter_ = 0;
  bool ge_bad_ = false;
};

}  // namespace gridemu::netshape

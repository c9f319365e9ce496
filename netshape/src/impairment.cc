#include "gridemu/netshape/impairment.h"

#include <algorithm>

namespace gridemu::netshape {

ImpairmentModel::ImpairmentModel(const ImpairmentSpec& spec, uint64_t seed) : rng_(seed) {
  Update(spec);
}

void ImpairmentModel::Update(const ImpairmentSpec& spec) {
  spec_ = spec;
  table_ = spec.distribution ? &DistributionTable(*spec.distribution) : nullptr;
  if (table_ && table_->empty()) table_ = nullptr;
  // netem_change(): get_correlation/get_reorder re-run init_crandom; counter = 0; the
  // Gilbert–Elliott chain restarts in the good state (get_loss_clg: clg.state = GOOD).
  InitCorr(delay_cor_, spec.delay_corr);
  InitCorr(loss_cor_, spec.loss_corr);
  InitCorr(dup_cor_, spec.dup_corr);
  InitCorr(reorder_cor_, spec.reorder_corr);
  counter_ = 0;
  ge_bad_ = false;
}

uint32_t ImpairmentModel::Rand32() { return static_cast<uint32_t>(rng_.Next() >> 32); }

void ImpairmentModel::InitCorr(CorrState& s, uint32_t rho) {
  s.rho = rho;
  s.last = Rand32();
}

// sch_netem.c get_crandom().
uint32_t ImpairmentModel::CorrRandom(CorrState& s) {
  if (s.rho == 0) return Rand32();
  uint64_t value = Rand32();
  uint64_t rho = static_cast<uint64_t>(s.rho) + 1;
  uint32_t answer = static_cast<uint32_t>((value * ((1ull << 32) - rho) + s.last * rho) >> 32);
  s.last = answer;
  return answer;
}

// sch_netem.c loss_event() for CLG_RANDOM and CLG_GILB_ELL.
bool ImpairmentModel::LossEvent() {
  if (spec_.gemodel) {
    const GeModelU32& g = *spec_.gemodel;
    if (!ge_bad_) {
      if (Rand32() < g.p) ge_bad_ = true;
      if (Rand32() < g.k1) return true;
    } else {
      if (Rand32() < g.r) ge_bad_ = false;
      if (Rand32() > g.h) return true;
    }
    return false;
  }
  return spec_.loss && spec_.loss >= CorrRandom(loss_cor_);
}

// sch_netem.c tabledist(), in nanoseconds.
int64_t ImpairmentModel::TableDist() {
  const int64_t mu = spec_.latency.count();
  const int32_t sigma = static_cast<int32_t>(std::min<int64_t>(spec_.jitter.count(), INT32_MAX));
  if (sigma == 0) return mu;
  uint32_t rnd = CorrRandom(delay_cor_);
  if (!table_) {
    return static_cast<int64_t>(rnd % (2 * static_cast<uint32_t>(sigma))) + mu - sigma;
  }
  const int64_t scale = 8192;  // NETEM_DIST_SCALE
  int64_t t = (*table_)[rnd % table_->size()];
  int64_t x = (sigma % scale) * t;
  if (x >= 0) {
    x += scale / 2;
  } else {
    x -= scale / 2;
  }
  return x / scale + (sigma / scale) * t + mu;
}

PacketDecision ImpairmentModel::Decide(bool allow_duplicate) {
  PacketDecision d;
  int count = 1;
  if (allow_duplicate && spec_.duplicate && spec_.duplicate >= CorrRandom(dup_cor_)) ++count;
  if (LossEvent()) --count;
  if (count == 0) {
    d.drop = true;
    return d;
  }
  d.duplicate = count > 1;
  if (spec_.gap == 0 || counter_ < spec_.gap - 1 || spec_.reorder < CorrRandom(reorder_cor_)) {
    d.delay = std::chrono::nanoseconds(std::max<int64_t>(0, TableDist()));
    ++counter_;
  } else {
    d.reorder = true;
    counter_ = 0;
  }
  return d;
}

PacketDecision ImpairmentModel::Next() { return Decide(true); }
PacketDecision ImpairmentModel::NextForDuplicate() { return Decide(false); }

}  // namespace gridemu::netshape

#include "gridemu/common/link_profile.h"

#include "gridemu/common/units.h"

namespace gridemu {

std::string_view DelayDistributionName(DelayDistribution d) {
  switch (d) {
    case DelayDistribution::kUniform: return "uniform";
    case DelayDistribution::kNormal: return "normal";
    case DelayDistribution::kPareto: return "pareto";
    case DelayDistribution::kParetoNormal: return "paretonormal";
  }
  return "uniform";
}

Result<DelayDistribution> ParseDelayDistribution(std::string_view name) {
  for (auto d : {DelayDistribution::kUniform, DelayDistribution::kNormal, DelayDistribution::kPareto,
                 DelayDistribution::kParetoNormal}) {
    if (name == DelayDistributionName(d)) return d;
  }
  return InvalidArgumentError("unknown delay distribution '" + std::string(name) +
                              "'; expected one of uniform, normal, pareto, paretonormal");
}

bool LinkProfile::empty() const { return *this == LinkProfile{}; }

LinkProfile LinkProfile::MergedWith(const LinkProfile& o) const {
  LinkProfile r = *this;
  auto take = [](auto& dst, const auto& src) {
    if (src) dst = src;
  };
  take(r.rate_bps, o.rate_bps);
  take(r.delay, o.delay);
  take(r.jitter, o.jitter);
  take(r.delay_distribution, o.delay_distribution);
  take(r.delay_correlation, o.delay_correlation);
  take(r.loss, o.loss);
  take(r.loss_correlation, o.loss_correlation);
  take(r.loss_gemodel, o.loss_gemodel);
  take(r.duplicate, o.duplicate);
  take(r.reorder, o.reorder);
  take(r.reorder_gap, o.reorder_gap);
  take(r.corrupt, o.corrupt);
  take(r.queue_packets, o.queue_packets);
  // A random loss and a Gilbert–Elliott model are alternatives: the override wins.
  // (An override that sets both keeps both, and Validate() reports the clash.)
  if (o.loss && !o.loss_gemodel) r.loss_gemodel.reset();
  if (o.loss_gemodel && !o.loss) r.loss.reset();
  return r;
}

std::vector<std::string> LinkProfile::ValidateAll() const {
  std::vector<std::string> errs;
  auto ratio = [&](const char* field, const std::optional<double>& v) {
    if (!v) return;
    if (*v < 0) errs.push_back(std::string(field) + ": " + FormatRatio(*v) + " is negative");
    if (*v > 1.0) errs.push_back(std::string(field) + ": " + FormatRatio(*v) + " is above 100%");
  };
  if (rate_bps && *rate_bps == 0) errs.push_back("rate: must be greater than 0bit");
  if (jitter && !delay) errs.push_back("jitter: needs a delay (jitter varies the delay)");
  if (jitter && delay && *jitter > *delay * 1000) {
    // netem accepts this, but it is almost surely a unit mistake.
    errs.push_back("jitter: " + FormatTime(*jitter) + " is over 1000 times the delay " + FormatTime(*delay));
  }
  if (delay_distribution && !jitter) errs.push_back("delay_distribution: needs a jitter");
  ratio("delay_correlation", delay_correlation);
  if (delay_correlation && !jitter) errs.push_back("delay_correlation: needs a jitter");
  ratio("loss", loss);
  ratio("loss_correlation", loss_correlation);
  if (loss_correlation && !loss) errs.push_back("loss_correlation: needs a loss");
  if (loss_correlation && *loss_correlation >= 1) {
    errs.push_back("loss_correlation: must be below 100% (100% would never change state)");
  }
  if (loss && loss_gemodel) errs.push_back("loss_model: cannot be combined with loss (choose one)");
  if (loss_gemodel) {
    ratio("loss_model.p", loss_gemodel->p);
    ratio("loss_model.r", loss_gemodel->r);
    ratio("loss_model.1-h", loss_gemodel->one_minus_h);
    ratio("loss_model.1-k", loss_gemodel->one_minus_k);
  }
  ratio("duplicate", duplicate);
  ratio("reorder", reorder);
  if (reorder && !delay) errs.push_back("reorder: needs a delay (packets are reordered by sending some without it)");
  if (reorder_gap && !reorder) errs.push_back("gap: needs a reorder");
  if (reorder_gap && *reorder_gap == 0) errs.push_back("gap: must be at least 1");
  ratio("corrupt", corrupt);
  if (queue_packets && *queue_packets == 0) errs.push_back("queue: must be at least 1 packet");
  return errs;
}

Status LinkProfile::Validate() const {
  auto errs = ValidateAll();
  if (errs.empty()) return Status::Ok();
  return InvalidArgumentError(errs.front());
}

std::string LinkProfile::ToString() const {
  std::string s;
  auto add = [&](const std::string& part) {
    if (!s.empty()) s += ' ';
    s += part;
  };
  if (rate_bps) add("rate " + FormatRate(*rate_bps));
  if (delay) add("delay " + FormatTime(*delay));
  if (jitter) add("jitter " + FormatTime(*jitter));
  if (delay_distribution) add("distribution " + std::string(DelayDistributionName(*delay_distribution)));
  if (delay_correlation) add("delay_correlation " + FormatRatio(*delay_correlation));
  if (loss) add("loss " + FormatRatio(*loss));
  if (loss_correlation) add("loss_correlation " + FormatRatio(*loss_correlation));
  if (loss_gemodel) {
    add("loss gemodel " + FormatRatio(loss_gemodel->p) + " " + FormatRatio(loss_gemodel->r) + " " +
        FormatRatio(loss_gemodel->one_minus_h) + " " + FormatRatio(loss_gemodel->one_minus_k));
  }
  if (duplicate) add("duplicate " + FormatRatio(*duplicate));
  if (reorder) add("reorder " + FormatRatio(*reorder));
  if (reorder_gap) add("gap " + std::to_string(*reorder_gap));
  if (corrupt) add("corrupt " + FormatRatio(*corrupt));
  if (queue_packets) add("queue " + std::to_string(*queue_packets));
  return s.empty() ? "unshaped" : s;
}

std::vector<std::string> LinkProfile::SetParameters() const {
  std::vector<std::string> out;
  auto add = [&](bool set, const char* name) {
    if (set) out.emplace_back(name);
  };
  add(rate_bps.has_value(), "rate");
  add(delay.has_value(), "delay");
  add(jitter.has_value(), "jitter");
  add(delay_distribution.has_value(), "delay_distribution");
  add(delay_correlation.has_value(), "delay_correlation");
  add(loss.has_value(), "loss");
  add(loss_correlation.has_value(), "loss_correlation");
  add(loss_gemodel.has_value(), "loss_model");
  add(duplicate.has_value(), "duplicate");
  add(reorder.has_value(), "reorder");
  add(reorder_gap.has_value(), "reorder_gap");
  add(corrupt.has_value(), "corrupt");
  add(queue_packets.has_value(), "queue");
  return out;
}

}  // namespace gridemu

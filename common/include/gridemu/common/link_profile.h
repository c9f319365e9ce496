// LinkProfile: what a user asks of one direction of a link (DESIGN.md §3, §5).
// It lives in common because both the topology (which describes links) and
// netshape (which emulates them) use it, and neither may depend on the other.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "gridemu/common/status.h"

namespace gridemu {

/// Delay distribution tables, as netem's (iproute2 netem/*.dist).
/// kUniform is netem's default when a jitter is given without a distribution.
enum class DelayDistribution { kUniform, kNormal, kPareto, kParetoNormal };

/// "uniform", "normal", "pareto", "paretonormal".
std::string_view DelayDistributionName(DelayDistribution d);
/// Parses one of the names above; kInvalidArgument otherwise.
Result<DelayDistribution> ParseDelayDistribution(std::string_view name);

/// Gilbert–Elliott loss model with netem's four parameters (tc-netem(8)
/// "loss gemodel p [r [1-h [1-k]]]"; Gilbert 1960, Elliott 1963).
/// All are probabilities in [0, 1] stored as fractions.
struct GilbertElliott {
  double p = 0;            ///< P(good -> bad)
  double r = 1;            ///< P(bad -> good)
  double one_minus_h = 1;  ///< loss probability in the bad state (1-h)
  double one_minus_k = 0;  ///< loss probability in the good state (1-k)
  friend bool operator==(const GilbertElliott&, const GilbertElliott&) = default;
};

/// One direction of a link. Every field is optional: unset means "not asked
/// for" (no shaping of that kind), which lets a run-time change name only the
/// parameters it changes, and per-direction settings override the link's.
/// Units are in the field names or types. Thread-compatible value type.
struct LinkProfile {
  std::optional<uint64_t> rate_bps;                   ///< bits/s; HTB rate
  std::optional<std::chrono::nanoseconds> delay;      ///< one-way added delay
  std::optional<std::chrono::nanoseconds> jitter;     ///< delay variation
  std::optional<DelayDistribution> delay_distribution;
  std::optional<double> delay_correlation;            ///< fraction [0,1]
  std::optional<double> loss;                         ///< fraction [0,1], random loss
  /// Fraction [0,1): the lag-1 correlation of consecutive losses. The loss is then a
  /// Gilbert model with P(good->bad) = loss (1 - c), P(bad->good) = (1 - loss)(1 - c),
  /// every packet lost in the bad state: mean loss `loss`, mean burst 1/((1-loss)(1-c))
  /// packets (loss 10 %, correlation 75 %: bursts of 4.4). Not netem's correlation,
  /// which does not keep the mean.
  std::optional<double> loss_correlation;
  std::optional<GilbertElliott> loss_gemodel;         ///< exclusive with `loss`
  std::optional<double> duplicate;                    ///< fraction [0,1]
  std::optional<double> reorder;                      ///< fraction [0,1]; needs delay
  std::optional<uint32_t> reorder_gap;                ///< packets; needs reorder
  std::optional<double> corrupt;                      ///< fraction [0,1]
  std::optional<uint32_t> queue_packets;              ///< tail-drop limit at the bottleneck

  /// True when no field is set (an unshaped direction).
  bool empty() const;

  /// Returns this profile with every field that `over` sets replaced by
  /// `over`'s value (per-direction override, run-time `set:`).
  LinkProfile MergedWith(const LinkProfile& over) const;

  /// Checks ranges and combinations that make no sense on any backend:
  /// ratios in [0, 100 %], jitter or distribution without delay, reorder without
  /// delay, gap without reorder, loss together with a Gilbert–Elliott model,
  /// zero rate or zero queue. Returns kInvalidArgument naming the field
  /// (e.g. "loss: 150% is above 100%"). The first problem found is returned;
  /// use ValidateAll() to get them all.
  Status Validate() const;

  /// Every problem Validate() would report, in field order, each as
  /// "<field>: <what is wrong>".
  std::vector<std::string> ValidateAll() const;

  /// Compact human-readable form, e.g. "rate 10mbit delay 20ms loss 1%".
  std::string ToString() const;
  /// The names (as in experiment files) of the parameters that are set, in field order:
  /// "rate", "delay", "jitter", "delay_distribution", "delay_correlation", "loss",
  /// "loss_correlation", "loss_model", "duplicate", "reorder", "reorder_gap", "corrupt",
  /// "queue".
  std::vector<std::string> SetParameters() const;

  friend bool operator==(const LinkProfile&, const LinkProfile&) = default;
};

}  // namespace gridemu

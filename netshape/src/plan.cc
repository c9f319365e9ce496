#include "gridemu/netshape/plan.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>

#include "gridemu/common/random.h"
#include "gridemu/common/units.h"
#include "internal.h"

namespace gridemu::netshape {
namespace {

using std::chrono::nanoseconds;

std::string HandleStr(uint32_t h) {
  if (h == kTcRoot) return "root";
  char buf[32];
  if ((h & 0xffff) == 0) {
    std::snprintf(buf, sizeof buf, "%x:", h >> 16);
  } else {
    std::snprintf(buf, sizeof buf, "%x:%x", h >> 16, h & 0xffff);
  }
  return buf;
}

// A u32 fraction as a percentage with 6 significant digits (the u32 scale is not exact).
std::string Pct(uint32_t p) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.6g%%", U32ToProbability(p) * 100);
  return buf;
}

// Number of MTU-sized packets that `rate_bps` sends in `t`, rounded up.
uint64_t PacketsIn(uint64_t rate_bps, nanoseconds t, uint32_t packet_bytes) {
  long double bits = static_cast<long double>(rate_bps) * t.count() / 1e9L;
  return static_cast<uint64_t>(std::ceil(bits / (8.0L * packet_bytes)));
}

uint32_t ClampU32(uint64_t v, uint64_t lo, uint64_t hi) {
  return static_cast<uint32_t>(std::clamp<uint64_t>(v, lo, hi));
}

ImpairmentSpec ToImpairment(const LinkProfile& p) {
  ImpairmentSpec s;
  if (p.delay) s.latency = *p.delay;
  if (p.jitter) s.jitter = *p.jitter;
  if (p.delay_distribution && *p.delay_distribution != DelayDistribution::kUniform) {
    s.distribution = *p.delay_distribution;
  }
  if (p.delay_correlation) s.delay_corr = ProbabilityToU32(*p.delay_correlation);
  if (p.loss && p.loss_correlation && *p.loss_correlation > 0) {
    // Correlated loss as a Gilbert model (a Gilbert-Elliott chain that loses every
    // packet in the bad state and none in the good one) whose mean is the loss and whose
    // lag-1 correlation of losses is the correlation c: p + r = 1 - c and
    // p / (p + r) = loss, so p = loss (1 - c), r = (1 - loss)(1 - c); the mean burst is
    // 1 / r packets. (netem's own correlated loss does not keep its mean: 10 % with a
    // 75 % correlation loses nothing.)
    const double loss = *p.loss, c = *p.loss_correlation;
    s.gemodel = GeModelU32{ProbabilityToU32(loss * (1 - c)), ProbabilityToU32((1 - loss) * (1 - c)),
                           ProbabilityToU32(0.0), ProbabilityToU32(0.0)};
  } else if (p.loss) {
    s.loss = ProbabilityToU32(*p.loss);
  }
  if (p.loss_gemodel) {
    const GilbertElliott& g = *p.loss_gemodel;
    s.gemodel = GeModelU32{ProbabilityToU32(g.p), ProbabilityToU32(g.r),
                           ProbabilityToU32(1.0 - g.one_minus_h), ProbabilityToU32(g.one_minus_k)};
  }
  if (p.duplicate) s.duplicate = ProbabilityToU32(*p.duplicate);
  if (p.reorder) {
    s.reorder = ProbabilityToU32(*p.reorder);
    // iproute2 q_netem.c: a reorder probability without a gap means gap 1.
    s.gap = p.reorder_gap.value_or(1);
  }
  if (p.corrupt) s.corrupt = ProbabilityToU32(*p.corrupt);
  return s;
}

// ---- delay distribution tables ----

constexpr int kTableSize = 4096;
constexpr double kScale = 8192.0;  // NETEM_DIST_SCALE

// Inverse of the standard normal CDF (Acklam's algorithm, refined by one Halley step;
// relative error ~1e-15).
double NormalQuantile(double p) {
  static const double a[] = {-3.969683028665376e+01, 2.209460984245205e+02,  -2.759285104469687e+02,
                             1.383577518672690e+02,  -3.066479806614716e+01, 2.506628277459239e+00};
  static const double b[] = {-5.447609879822406e+01, 1.615858368580409e+02, -1.556989798598866e+02,
                             6.680131188771972e+01, -1.328068155288572e+01};
  static const double c[] = {-7.784894002430293e-03, -3.223964580411365e-01, -2.400758277161838e+00,
                             -2.549732539343734e+00, 4.374664141464968e+00,  2.938163982698783e+00};
  static const double d[] = {7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e+00,
                             3.754408661907416e+00};
  double x;
  if (p < 0.02425) {
    double q = std::sqrt(-2 * std::log(p));
    x = (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) /
        ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1);
  } else if (p > 1 - 0.02425) {
    double q = std::sqrt(-2 * std::log(1 - p));
    x = -(((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) /
        ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1);
  } else {
    double q = p - 0.5, r = q * q;
    x = (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * q /
        (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1);
  }
  double e = 0.5 * std::erfc(-x / std::sqrt(2.0)) - p;
  double u = e * std::sqrt(2 * M_PI) * std::exp(x * x / 2);
  return x - u / (1 + x * u / 2);
}

// Pareto(shape 3, scale 1) quantile.
double ParetoQuantile(double p) { return std::pow(1.0 - p, -1.0 / 3.0); }

// Standardizes `v` to mean 0, sd 1, clips to the int16 range in sigma units, and repeats
// a few times so that clipping does not change the variance; then scales to int16.
std::vector<int16_t> Standardize(std::vector<double> v) {
  const double lim_hi = 32767.0 / kScale, lim_lo = -32768.0 / kScale;
  for (int iter = 0; iter < 8; ++iter) {
    double mean = 0, var = 0;
    for (double x : v) mean += x;
    mean /= v.size();
    for (double x : v) var += (x - mean) * (x - mean);
    double sd = std::sqrt(var / v.size());
    for (double& x : v) x = std::clamp((x - mean) / sd, lim_lo, lim_hi);
  }
  std::vector<int16_t> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) {
    out[i] = static_cast<int16_t>(std::clamp(std::lround(v[i] * kScale), -32768L, 32767L));
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<int16_t> MakeTable(DelayDistribution d) {
  std::vector<double> v(kTableSize);
  for (int i = 0; i < kTableSize; ++i) {
    double u = (i + 0.5) / kTableSize;
    switch (d) {
      case DelayDistribution::kNormal:
        v[i] = NormalQuantile(u);
        break;
      case DelayDistribution::kPareto:
        v[i] = ParetoQuantile(u);
        break;
      case DelayDistribution::kParetoNormal: {
        // Pair the i-th Pareto quantile with a normal quantile taken in a fixed scrambled
        // order (an odd multiplier permutes 0..4095), as independent draws would be.
        int j = static_cast<int>((static_cast<uint64_t>(i) * 2654435761u) % kTableSize);
        double pareto = (ParetoQuantile(u) - 1.5) / std::sqrt(0.75);
        v[i] = 0.25 * pareto + 0.75 * NormalQuantile((j + 0.5) / kTableSize);
        break;
      }
      case DelayDistribution::kUniform:
        return {};
    }
  }
  return Standardize(std::move(v));
}

}  // namespace

std::string_view DirectionName(Direction d) {
  return d == Direction::kForward ? "forward" : "reverse";
}

std::string_view ShapeHalfName(ShapeHalf h) {
  switch (h) {
    case ShapeHalf::kBoth:
      return "both";
    case ShapeHalf::kSenderOnly:
      return "sender";
    case ShapeHalf::kReceiverOnly:
      return "receiver";
  }
  return "both";
}

std::string_view BackendName(Backend b) { return b == Backend::kNetem ? "netem" : "userspace"; }

Result<Backend> ParseBackend(std::string_view name) {
  if (name == "netem") return Backend::kNetem;
  if (name == "userspace") return Backend::kUserspace;
  return InvalidArgumentError("unknown shaping backend '" + std::string(name) +
                              "'; expected netem or userspace");
}

uint32_t ProbabilityToU32(double fraction) {
  if (!(fraction > 0)) return 0;
  if (fraction >= 1) return std::numeric_limits<uint32_t>::max();
  return static_cast<uint32_t>(std::llround(fraction * std::numeric_limits<uint32_t>::max()));
}

double U32ToProbability(uint32_t p) {
  return static_cast<double>(p) / std::numeric_limits<uint32_t>::max();
}

bool ImpairmentSpec::empty() const { return *this == ImpairmentSpec{}; }

std::string ImpairmentSpec::ToString() const {
  std::string s;
  auto add = [&](const std::string& part) {
    if (!s.empty()) s += ' ';
    s += part;
  };
  if (latency.count() || jitter.count()) {
    std::string d = "delay " + FormatTime(latency);
    if (jitter.count()) d += " " + FormatTime(jitter);
    if (delay_corr) d += " " + Pct(delay_corr);
    add(d);
  }
  if (distribution) add("distribution " + std::string(DelayDistributionName(*distribution)));
  if (loss) add("loss " + Pct(loss) + (loss_corr ? " " + Pct(loss_corr) : ""));
  if (gemodel) {
    add("loss gemodel p " + Pct(gemodel->p) + " r " + Pct(gemodel->r) + " h " + Pct(gemodel->h) +
        " k1 " + Pct(gemodel->k1));
  }
  if (duplicate) add("duplicate " + Pct(duplicate) + (dup_corr ? " " + Pct(dup_corr) : ""));
  if (reorder) add("reorder " + Pct(reorder) + (reorder_corr ? " " + Pct(reorder_corr) : ""));
  if (gap) add("gap " + std::to_string(gap));
  if (corrupt) add("corrupt " + Pct(corrupt) + (corrupt_corr ? " " + Pct(corrupt_corr) : ""));
  return s;
}

bool Plan::empty() const {
  return !htb && !fifo_limit_packets && !netem && !delay_line && !gso_max_segs;
}

std::string Plan::ToString() const {
  std::string s = std::string(BackendName(backend)) + " backend";
  if (empty()) return s + ": unshaped";
  if (htb) {
    s += "\nqdisc htb 1: root default 1";
    s += "\nclass htb 1:1 parent 1: rate " + FormatRate(htb->rate_bps) + " ceil " +
         FormatRate(htb->ceil_bps) + " burst " + std::to_string(htb->burst_bytes) + "b cburst " +
         std::to_string(htb->cburst_bytes) + "b quantum " + std::to_string(htb->quantum_bytes);
  }
  if (fifo_limit_packets) {
    s += "\nqdisc pfifo 10: parent 1:1 limit " + std::to_string(*fifo_limit_packets);
  }
  if (netem) {
    s += "\nqdisc netem " + HandleStr(netem->handle) +
         (netem->parent == kTcRoot ? " root" : " parent " + HandleStr(netem->parent)) + " limit " +
         std::to_string(netem->limit_packets);
    std::string imp = netem->impairment.ToString();
    if (!imp.empty()) s += " " + imp;
    s += " seed " + std::to_string(netem->seed);
  }
  if (gso_max_segs) s += "\nlink gso_max_segs " + std::to_string(*gso_max_segs);
  if (delay_line) {
    s += "\ndelay-line max_pending " + std::to_string(delay_line->max_pending_packets) +
         " copy_range " + std::to_string(delay_line->copy_range_bytes);
    std::string imp = delay_line->impairment.ToString();
    if (!imp.empty()) s += " " + imp;
    s += " seed " + std::to_string(delay_line->seed);
  }
  return s;
}

Status CheckBackendExpresses(const LinkProfile& profile, Backend backend) {
  const std::string suffix =
      ": not supported by the " + std::string(BackendName(backend)) + " backend";
  if (backend == Backend::kUserspace) {
    if (profile.corrupt) return UnimplementedError("corrupt" + suffix);
  } else {
    if (profile.jitter && profile.jitter->count() > std::numeric_limits<int32_t>::max()) {
      return UnimplementedError("jitter" + suffix + " above " +
                                FormatTime(nanoseconds(std::numeric_limits<int32_t>::max())) +
                                " (netem takes jitter as signed 32-bit nanoseconds)");
    }
  }
  return Status::Ok();
}

Result<Plan> BuildPlan(const LinkProfile& profile, Direction direction,
                       const PlanOptions& options) {
  GRIDEMU_RETURN_IF_ERROR(profile.Validate());
  GRIDEMU_RETURN_IF_ERROR(CheckBackendExpresses(profile, options.backend));
  Plan plan;
  plan.backend = options.backend;
  if (profile.empty()) return plan;

  const uint32_t mtu = std::max<uint32_t>(options.mtu_bytes, 68);
  const uint32_t queue = profile.queue_packets.value_or(options.default_queue_packets);
  Rng stream =
      Rng::ForStream(options.seed, options.stream + "/" + std::string(DirectionName(direction)));
  const uint64_t seed = stream.Next();
  ImpairmentSpec imp = ToImpairment(profile);
  // Delay (plus jitter) under which packets are in flight, for queue sizing.
  const nanoseconds in_flight = imp.latency + imp.jitter * (imp.distribution ? 4 : 1);

  if (profile.rate_bps) {
    HtbSpec h;
    h.rate_bps = h.ceil_bps = *profile.rate_bps;
    // tc's default bucket is rate/HZ + MTU with a 1 GHz psched clock, i.e. about one MTU;
    // one MTU plus 1 ms of traffic, at least two MTUs, keeps HTB accurate at high rates.
    uint64_t one_ms = *profile.rate_bps / 8 / 1000;
    h.burst_bytes = h.cburst_bytes = ClampU32(mtu + one_ms, 2ull * mtu, 1ull << 30);
    h.quantum_bytes = ClampU32(*profile.rate_bps / 8 / 10, mtu, 200000);
    plan.htb = h;
  }

  const bool impaired = !imp.empty();
  if (profile.rate_bps) {
    plan.gso_max_segs = ClampU32(*profile.rate_bps / 1000 / (8ull * mtu), 1, 64);
  }
  if (options.backend == Backend::kNetem &&
      (imp.loss || imp.gemodel || imp.duplicate || imp.reorder || imp.corrupt)) {
    plan.gso_max_segs = 1;
  }
  if (options.backend == Backend::kNetem) {
    if (impaired || (!plan.htb && profile.queue_packets)) {
      NetemSpec n;
      n.impairment = imp;
      n.seed = seed;
      if (plan.htb) {
        n.parent = kRateClassId;
        n.handle = kLeafQdiscHandle;
        n.limit_packets = ClampU32(queue + PacketsIn(*profile.rate_bps, in_flight, mtu), 1,
                                   std::numeric_limits<uint32_t>::max());
      } else {
        n.parent = kTcRoot;
        n.handle = kRootQdiscHandle;
        n.limit_packets = queue;
      }
      plan.netem = n;
    } else if (plan.htb) {
      plan.fifo_limit_packets = queue;
    }
  } else {
    if (plan.htb) plan.fifo_limit_packets = queue;
    // Without a rate, a queue limit is the delay line's (as it is netem's limit).
    if (impaired || (!plan.htb && profile.queue_packets)) {
      DelayLineSpec d;
      d.impairment = imp;
      d.seed = seed;
      d.copy_range_bytes = imp.duplicate ? 0xffff : 64;
      if (profile.rate_bps) {
        // Everything the rate can put in flight during the delay, counted in small
        // (64-byte) packets, plus the queue.
        d.max_pending_packets =
            ClampU32(queue + PacketsIn(*profile.rate_bps, in_flight, 64), 1024, 1u << 20);
      } else {
        d.max_pending_packets = profile.queue_packets ? *profile.queue_packets : 65536;
      }
      plan.delay_line = d;
    }
  }
  // A split direction: keep this host's half only (the plan above is computed whole, so
  // that each half is exactly its part of the kBoth plan, seeds included).
  if (options.half == ShapeHalf::kSenderOnly) {
    plan.delay_line.reset();
  } else if (options.half == ShapeHalf::kReceiverOnly) {
    plan.htb.reset();
    plan.fifo_limit_packets.reset();
    plan.netem.reset();
    plan.gso_max_segs.reset();
  }
  return plan;
}

const std::vector<int16_t>& DistributionTable(DelayDistribution d) {
  static const std::vector<int16_t> kEmpty;
  static const std::vector<int16_t> kNormal = MakeTable(DelayDistribution::kNormal);
  static const std::vector<int16_t> kPareto = MakeTable(DelayDistribution::kPareto);
  static const std::vector<int16_t> kParetoNormal = MakeTable(DelayDistribution::kParetoNormal);
  switch (d) {
    case DelayDistribution::kNormal:
      return kNormal;
    case DelayDistribution::kPareto:
      return kPareto;
    case DelayDistribution::kParetoNormal:
      return kParetoNormal;
    case DelayDistribution::kUniform:
      return kEmpty;
  }
  return kEmpty;
}

std::vector<std::pair<const char*, bool>> ImpairmentFieldsOf(const LinkProfile& p) {
  return {{"delay", p.delay.has_value()},
          {"jitter", p.jitter.has_value()},
          {"delay_distribution", p.delay_distribution.has_value()},
          {"delay_correlation", p.delay_correlation.has_value()},
          {"loss", p.loss.has_value()},
          {"loss_correlation", p.loss_correlation.has_value()},
          {"loss_model", p.loss_gemodel.has_value()},
          {"duplicate", p.duplicate.has_value()},
          {"reorder", p.reorder.has_value()},
          {"gap", p.reorder_gap.has_value()},
          {"corrupt", p.corrupt.has_value()}};
}

}  // namespace gridemu::netshape

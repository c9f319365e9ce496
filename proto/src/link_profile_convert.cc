#include "gridemu/proto/link_profile_convert.h"

#include <chrono>
#include <cmath>
#include <limits>
#include <string>

namespace gridemu {
namespace {

uint32_t ToPpm(double fraction) {
  double v = std::round(fraction * 1e6);
  if (!(v > 0)) return 0;
  if (v > static_cast<double>(std::numeric_limits<uint32_t>::max())) {
    return std::numeric_limits<uint32_t>::max();
  }
  return static_cast<uint32_t>(v);
}

Result<double> FromPpm(uint32_t ppm, const char* field) {
  if (ppm > 1'000'000) {
    return InvalidArgumentError(std::string(field) + ": " + std::to_string(ppm) +
                                " ppm is above 1000000 ppm (100%)");
  }
  return static_cast<double>(ppm) / 1e6;
}

uint64_t ToNs(std::chrono::nanoseconds t) {
  return t.count() < 0 ? 0 : static_cast<uint64_t>(t.count());
}

Status Ratio(bool has, uint32_t ppm, const char* field, std::optional<double>* dst) {
  if (!has) return Status::Ok();
  GRIDEMU_ASSIGN_OR_RETURN(double v, FromPpm(ppm, field));
  *dst = v;
  return Status::Ok();
}

}  // namespace

Result<LinkProfile> LinkProfileFromProto(const v1::LinkProfile& in) {
  LinkProfile p;
  if (in.has_rate_bps()) p.rate_bps = in.rate_bps();
  if (in.has_delay_ns()) p.delay = std::chrono::nanoseconds(in.delay_ns());
  if (in.has_jitter_ns()) p.jitter = std::chrono::nanoseconds(in.jitter_ns());
  if (in.has_delay_distribution()) {
    Result<DelayDistribution> d = ParseDelayDistribution(in.delay_distribution());
    if (!d.ok()) return d.status().WithContext("delay_distribution");
    p.delay_distribution = *d;
  }
  GRIDEMU_RETURN_IF_ERROR(Ratio(in.has_delay_correlation_ppm(), in.delay_correlation_ppm(),
                                "delay_correlation_ppm", &p.delay_correlation));
  GRIDEMU_RETURN_IF_ERROR(Ratio(in.has_loss_ppm(), in.loss_ppm(), "loss_ppm", &p.loss));
  GRIDEMU_RETURN_IF_ERROR(Ratio(in.has_loss_correlation_ppm(), in.loss_correlation_ppm(),
                                "loss_correlation_ppm", &p.loss_correlation));
  if (in.has_loss_gemodel()) {
    const v1::GilbertElliott& g = in.loss_gemodel();
    GilbertElliott ge;
    GRIDEMU_ASSIGN_OR_RETURN(ge.p, FromPpm(g.p_ppm(), "loss_gemodel.p_ppm"));
    GRIDEMU_ASSIGN_OR_RETURN(ge.r, FromPpm(g.r_ppm(), "loss_gemodel.r_ppm"));
    GRIDEMU_ASSIGN_OR_RETURN(ge.one_minus_h,
                             FromPpm(g.one_minus_h_ppm(), "loss_gemodel.one_minus_h_ppm"));
    GRIDEMU_ASSIGN_OR_RETURN(ge.one_minus_k,
                             FromPpm(g.one_minus_k_ppm(), "loss_gemodel.one_minus_k_ppm"));
    p.loss_gemodel = ge;
  }
  GRIDEMU_RETURN_IF_ERROR(
      Ratio(in.has_duplicate_ppm(), in.duplicate_ppm(), "duplicate_ppm", &p.duplicate));
  GRIDEMU_RETURN_IF_ERROR(Ratio(in.has_reorder_ppm(), in.reorder_ppm(), "reorder_ppm", &p.reorder));
  if (in.has_reorder_gap()) p.reorder_gap = in.reorder_gap();
  GRIDEMU_RETURN_IF_ERROR(Ratio(in.has_corrupt_ppm(), in.corrupt_ppm(), "corrupt_ppm", &p.corrupt));
  if (in.has_queue_packets()) p.queue_packets = in.queue_packets();
  return p;
}

v1::LinkProfile LinkProfileToProto(const LinkProfile& p) {
  v1::LinkProfile out;
  if (p.rate_bps) out.set_rate_bps(*p.rate_bps);
  if (p.delay) out.set_delay_ns(ToNs(*p.delay));
  if (p.jitter) out.set_jitter_ns(ToNs(*p.jitter));
  if (p.delay_distribution) {
    out.set_delay_distribution(std::string(DelayDistributionName(*p.delay_distribution)));
  }
  if (p.delay_correlation) out.set_delay_correlation_ppm(ToPpm(*p.delay_correlation));
  if (p.loss) out.set_loss_ppm(ToPpm(*p.loss));
  if (p.loss_correlation) out.set_loss_correlation_ppm(ToPpm(*p.loss_correlation));
  if (p.loss_gemodel) {
    v1::GilbertElliott* g = out.mutable_loss_gemodel();
    g->set_p_ppm(ToPpm(p.loss_gemodel->p));
    g->set_r_ppm(ToPpm(p.loss_gemodel->r));
    g->set_one_minus_h_ppm(ToPpm(p.loss_gemodel->one_minus_h));
    g->set_one_minus_k_ppm(ToPpm(p.loss_gemodel->one_minus_k));
  }
  if (p.duplicate) out.set_duplicate_ppm(ToPpm(*p.duplicate));
  if (p.reorder) out.set_reorder_ppm(ToPpm(*p.reorder));
  if (p.reorder_gap) out.set_reorder_gap(*p.reorder_gap);
  if (p.corrupt) out.set_corrupt_ppm(ToPpm(*p.corrupt));
  if (p.queue_packets) out.set_queue_packets(*p.queue_packets);
  return out;
}

}  // namespace gridemu

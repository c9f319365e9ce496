#include "gridemu/netshape/impairment.h"
#include "gridemu/netshape/plan.h"

#include <gtest/gtest.h>

#include <cmath>

namespace gridemu::netshape {
namespace {
using namespace std::chrono_literals;

PlanOptions Opts(Backend b) {
  PlanOptions o;
  o.backend = b;
  o.seed = 42;
  o.stream = "l1";
  return o;
}

TEST(NetshapePlan, EmptyProfileIsUnshaped) {
  for (Backend b : {Backend::kNetem, Backend::kUserspace}) {
    auto p = BuildPlan(LinkProfile{}, Direction::kForward, Opts(b));
    ASSERT_TRUE(p.ok());
    EXPECT_TRUE(p->empty());
    EXPECT_FALSE(p->has_qdiscs());
    EXPECT_EQ(p->backend, b);
  }
}

TEST(NetshapePlan, RateOnlyIsHtbWithBoundedFifo) {
  LinkProfile prof;
  prof.rate_bps = 10'000'000;
  prof.queue_packets = 50;
  for (Backend b : {Backend::kNetem, Backend::kUserspace}) {
    auto p = BuildPlan(prof, Direction::kForward, Opts(b));
    ASSERT_TRUE(p.ok()) << p.status().ToString();
    ASSERT_TRUE(p->htb);
    EXPECT_EQ(p->htb->rate_bps, 10'000'000u);
    EXPECT_EQ(p->htb->ceil_bps, 10'000'000u);
    EXPECT_EQ(p->htb->burst_bytes, 3000u);      // MTU + 1 ms (1250 B) = 2750, at least 2 MTU
    EXPECT_EQ(p->htb->quantum_bytes, 125000u);  // rate/8/10
    EXPECT_EQ(p->fifo_limit_packets, 50u);
    EXPECT_FALSE(p->netem);
    EXPECT_FALSE(p->delay_line);
    EXPECT_EQ(p->gso_max_segs, 1u);  // 1 ms at 10 Mbit/s is less than one MTU
  }
}

TEST(NetshapePlan, GsoCap) {
  LinkProfile prof;
  prof.rate_bps = 100'000'000;  // 1 ms = 12500 B = 8 MTUs
  EXPECT_EQ(BuildPlan(prof, Direction::kForward, Opts(Backend::kUserspace))->gso_max_segs, 8u);
  prof.rate_bps = 10'000'000'000;
  EXPECT_EQ(BuildPlan(prof, Direction::kForward, Opts(Backend::kUserspace))->gso_max_segs, 64u);
  LinkProfile delay;
  delay.delay = 10ms;
  EXPECT_FALSE(BuildPlan(delay, Direction::kForward, Opts(Backend::kNetem))->gso_max_segs);
  delay.loss = 0.01;  // netem would lose whole GSO packets
  EXPECT_EQ(BuildPlan(delay, Direction::kForward, Opts(Backend::kNetem))->gso_max_segs, 1u);
  // The delay line sees segments anyway (NFQUEUE segments GSO packets).
  EXPECT_FALSE(BuildPlan(delay, Direction::kForward, Opts(Backend::kUserspace))->gso_max_segs);
}

TEST(NetshapePlan, HtbBurstAndQuantumAtExtremes) {
  LinkProfile prof;
  prof.rate_bps = 100'000;  // 100kbit: 12 B per ms
  auto p = BuildPlan(prof, Direction::kForward, Opts(Backend::kUserspace));
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->htb->burst_bytes, 3000u);    // at least two MTUs
  EXPECT_EQ(p->htb->quantum_bytes, 1500u);  // at least one MTU
  EXPECT_EQ(p->fifo_limit_packets, 1000u);  // default queue
  prof.rate_bps = 10'000'000'000;           // 10gbit
  p = BuildPlan(prof, Direction::kForward, Opts(Backend::kUserspace));
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->htb->burst_bytes, 1500u + 1'250'000u);
  EXPECT_EQ(p->htb->quantum_bytes, 200000u);
}

TEST(NetshapePlan, NetemAloneWithoutRate) {
  LinkProfile prof;
  prof.delay = 20ms;
  prof.loss = 0.01;
  auto p = BuildPlan(prof, Direction::kForward, Opts(Backend::kNetem));
  ASSERT_TRUE(p.ok());
  EXPECT_FALSE(p->htb);
  ASSERT_TRUE(p->netem);
  EXPECT_EQ(p->netem->parent, kTcRoot);
  EXPECT_EQ(p->netem->handle, kRootQdiscHandle);
  EXPECT_EQ(p->netem->limit_packets, 1000u);
  EXPECT_EQ(p->netem->impairment.latency, 20ms);
  EXPECT_EQ(p->netem->impairment.loss, ProbabilityToU32(0.01));
  EXPECT_FALSE(p->delay_line);
}

TEST(NetshapePlan, NetemUnderHtbLimitCoversTheDelay) {
  LinkProfile prof;
  prof.rate_bps = 100'000'000;
  prof.delay = 50ms;
  prof.queue_packets = 100;
  auto p = BuildPlan(prof, Direction::kForward, Opts(Backend::kNetem));
  ASSERT_TRUE(p.ok());
  ASSERT_TRUE(p->htb);
  ASSERT_TRUE(p->netem);
  EXPECT_FALSE(p->fifo_limit_packets);
  EXPECT_EQ(p->netem->parent, kRateClassId);
  EXPECT_EQ(p->netem->handle, kLeafQdiscHandle);
  // 100 queued + 100 Mbit/s * 50 ms / (8 * 1500 B) = 416.67 -> 417 in flight.
  EXPECT_EQ(p->netem->limit_packets, 100u + 417u);
}

TEST(NetshapePlan, EveryNetemParameterInKernelUnits) {
  LinkProfile prof;
  prof.delay = 100ms;
  prof.jitter = 10ms;
  prof.delay_distribution = DelayDistribution::kNormal;
  prof.delay_correlation = 0.25;
  prof.loss = 0.05;
  prof.loss_correlation = 0.5;
  prof.duplicate = 0.01;
  prof.reorder = 0.25;
  prof.reorder_gap = 5;
  prof.corrupt = 0.001;
  auto p = BuildPlan(prof, Direction::kForward, Opts(Backend::kNetem));
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  const ImpairmentSpec& im = p->netem->impairment;
  EXPECT_EQ(im.latency, 100ms);
  EXPECT_EQ(im.jitter, 10ms);
  EXPECT_EQ(im.distribution, DelayDistribution::kNormal);
  EXPECT_EQ(im.delay_corr, 1073741824u);  // 25% of 0xffffffff, rounded
  // Correlated loss is a Gilbert model: p = loss (1 - c), r = (1 - loss)(1 - c), every
  // packet lost in the bad state (h = 0), none in the good one (1 - k = 0).
  EXPECT_EQ(im.loss, 0u);
  EXPECT_EQ(im.loss_corr, 0u);
  ASSERT_TRUE(im.gemodel);
  EXPECT_EQ(im.gemodel->p, ProbabilityToU32(0.05 * 0.5));
  EXPECT_EQ(im.gemodel->r, ProbabilityToU32(0.95 * 0.5));
  EXPECT_EQ(im.gemodel->h, 0u);
  EXPECT_EQ(im.gemodel->k1, 0u);
  EXPECT_EQ(im.duplicate, 42949673u);
  EXPECT_EQ(im.reorder, 1073741824u);
  EXPECT_EQ(im.gap, 5u);
  EXPECT_EQ(im.corrupt, 4294967u);
  EXPECT_EQ(im.dup_corr, 0u);
  // Without a correlation, netem's random loss.
  prof.loss_correlation.reset();
  p = BuildPlan(prof, Direction::kForward, Opts(Backend::kNetem));
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  EXPECT_EQ(p->netem->impairment.loss, 214748365u);
  EXPECT_FALSE(p->netem->impairment.gemodel);
}

// What a user reading `loss: 10%, loss_correlation: 75%` expects: 10 % of packets lost,
// in bursts (netem's own correlation gives 0 % for these values).
TEST(NetshapePlan, CorrelatedLossKeepsItsMeanAndMakesBursts) {
  LinkProfile prof;
  prof.loss = 0.10;
  prof.loss_correlation = 0.75;
  auto p = BuildPlan(prof, Direction::kForward, Opts(Backend::kUserspace));
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  ImpairmentModel m(p->delay_line->impairment, 3);
  const int n = 400000;
  int lost = 0, bursts = 0, both = 0;
  bool prev = false;
  for (int i = 0; i < n; ++i) {
    const bool d = m.Next().drop;
    lost += d;
    bursts += d && !prev;
    both += d && prev;
    prev = d;
  }
  const double mean = double(lost) / n;
  EXPECT_NEAR(mean, 0.10, 0.005);
  EXPECT_NEAR(double(lost) / bursts, 1 / (0.9 * 0.25), 0.2) << "mean burst 4.4 packets";
  // Lag-1 correlation of the loss indicator.
  const double p11 = double(both) / n;
  EXPECT_NEAR((p11 - mean * mean) / (mean * (1 - mean)), 0.75, 0.02);
  LinkProfile full = prof;
  full.loss_correlation = 1.0;
  EXPECT_EQ(BuildPlan(full, Direction::kForward, Opts(Backend::kUserspace)).status().code(),
            StatusCode::kInvalidArgument);
}

TEST(NetshapePlan, ReorderWithoutGapMeansGapOne) {
  LinkProfile prof;
  prof.delay = 10ms;
  prof.reorder = 0.1;
  auto p = BuildPlan(prof, Direction::kForward, Opts(Backend::kUserspace));
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->delay_line->impairment.gap, 1u);
}

TEST(NetshapePlan, UniformDistributionIsNetemsDefault) {
  LinkProfile prof;
  prof.delay = 10ms;
  prof.jitter = 1ms;
  prof.delay_distribution = DelayDistribution::kUniform;
  auto p = BuildPlan(prof, Direction::kForward, Opts(Backend::kNetem));
  ASSERT_TRUE(p.ok());
  EXPECT_FALSE(p->netem->impairment.distribution);
}

TEST(NetshapePlan, GilbertElliottInKernelFields) {
  LinkProfile prof;
  prof.loss_gemodel = GilbertElliott{0.01, 0.3, 0.8, 0.001};
  auto p = BuildPlan(prof, Direction::kForward, Opts(Backend::kUserspace));
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  ASSERT_TRUE(p->delay_line);
  const auto& ge = p->delay_line->impairment.gemodel;
  ASSERT_TRUE(ge);
  EXPECT_EQ(ge->p, ProbabilityToU32(0.01));
  EXPECT_EQ(ge->r, ProbabilityToU32(0.3));
  EXPECT_EQ(ge->h, ProbabilityToU32(0.2));  // delivery probability in the bad state
  EXPECT_EQ(ge->k1, ProbabilityToU32(0.001));
  EXPECT_EQ(p->delay_line->impairment.loss, 0u);
}

TEST(NetshapePlan, UserspaceDelayLine) {
  LinkProfile prof;
  prof.rate_bps = 10'000'000;
  prof.delay = 20ms;
  prof.loss = 0.01;
  auto p = BuildPlan(prof, Direction::kReverse, Opts(Backend::kUserspace));
  ASSERT_TRUE(p.ok());
  ASSERT_TRUE(p->htb);
  EXPECT_EQ(p->fifo_limit_packets, 1000u);
  EXPECT_FALSE(p->netem);
  ASSERT_TRUE(p->delay_line);
  EXPECT_EQ(p->delay_line->copy_range_bytes, 64u);
  // 1000 queued + 10 Mbit/s * 20 ms / (8 * 64 B) = 390.6 -> 391.
  EXPECT_EQ(p->delay_line->max_pending_packets, 1391u);
  EXPECT_EQ(p->delay_line->impairment.latency, 20ms);
}

TEST(NetshapePlan, UserspaceDuplicateCopiesWholePackets) {
  LinkProfile prof;
  prof.duplicate = 0.1;
  auto p = BuildPlan(prof, Direction::kForward, Opts(Backend::kUserspace));
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->delay_line->copy_range_bytes, 0xffffu);
  EXPECT_EQ(p->delay_line->max_pending_packets, 65536u);
}

TEST(NetshapePlan, UserspaceQueueWithoutRateBoundsTheDelayLine) {
  LinkProfile prof;
  prof.queue_packets = 64;
  auto p = BuildPlan(prof, Direction::kForward, Opts(Backend::kUserspace));
  ASSERT_TRUE(p.ok());
  ASSERT_TRUE(p->delay_line);
  EXPECT_EQ(p->delay_line->max_pending_packets, 64u);
  auto n = BuildPlan(prof, Direction::kForward, Opts(Backend::kNetem));
  ASSERT_TRUE(n.ok());
  ASSERT_TRUE(n->netem);
  EXPECT_EQ(n->netem->limit_packets, 64u);
}

TEST(NetshapePlan, CorruptIsRejectedByTheUserspaceBackend) {
  LinkProfile prof;
  prof.delay = 10ms;
  prof.corrupt = 0.01;
  auto p = BuildPlan(prof, Direction::kForward, Opts(Backend::kUserspace));
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.status().code(), StatusCode::kUnimplemented);
  EXPECT_EQ(p.status().message(), "corrupt: not supported by the userspace backend");
  EXPECT_TRUE(BuildPlan(prof, Direction::kForward, Opts(Backend::kNetem)).ok());
}

TEST(NetshapePlan, NetemRejectsJitterBeyondS32Nanoseconds) {
  LinkProfile prof;
  prof.delay = 10s;
  prof.jitter = 3s;
  auto p = BuildPlan(prof, Direction::kForward, Opts(Backend::kNetem));
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.status().message(),
            "jitter: not supported by the netem backend above 2.147483647s (netem takes jitter "
            "as signed 32-bit nanoseconds)");
  EXPECT_TRUE(BuildPlan(prof, Direction::kForward, Opts(Backend::kUserspace)).ok());
}

TEST(NetshapePlan, InvalidProfileFailsWithItsValidationMessage) {
  LinkProfile prof;
  prof.loss = 1.5;
  auto p = BuildPlan(prof, Direction::kForward, Opts(Backend::kNetem));
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(p.status().message(), "loss: 150% is above 100%");
}

TEST(NetshapePlan, SeedsAreDeterministicPerStreamAndDirection) {
  LinkProfile prof;
  prof.delay = 10ms;
  prof.loss = 0.1;
  auto f1 = BuildPlan(prof, Direction::kForward, Opts(Backend::kUserspace));
  auto f2 = BuildPlan(prof, Direction::kForward, Opts(Backend::kUserspace));
  auto r1 = BuildPlan(prof, Direction::kReverse, Opts(Backend::kUserspace));
  PlanOptions other = Opts(Backend::kUserspace);
  other.stream = "l2";
  auto o1 = BuildPlan(prof, Direction::kForward, other);
  ASSERT_TRUE(f1.ok() && f2.ok() && r1.ok() && o1.ok());
  EXPECT_EQ(*f1, *f2);
  EXPECT_NE(f1->delay_line->seed, r1->delay_line->seed);
  EXPECT_NE(f1->delay_line->seed, o1->delay_line->seed);
}

TEST(NetshapePlan, ToStringIsTcLike) {
  LinkProfile prof;
  prof.rate_bps = 10'000'000;
  prof.delay = 20ms;
  prof.jitter = 5ms;
  prof.loss = 0.01;
  auto p = BuildPlan(prof, Direction::kForward, Opts(Backend::kNetem));
  ASSERT_TRUE(p.ok());
  std::string s = p->ToString();
  EXPECT_EQ(s.substr(0, s.find(" seed ")),
            "netem backend\n"
            "qdisc htb 1: root default 1\n"
            "class htb 1:1 parent 1: rate 10mbit ceil 10mbit burst 3000b cburst 3000b quantum "
            "125000\n"
            "qdisc netem 10: parent 1:1 limit 1021 delay 20ms 5ms loss 1%");
  EXPECT_EQ(Plan{}.ToString(), "userspace backend: unshaped");
}

// A direction split over two hosts (ShapeHalf): each half is exactly its part of the
// whole plan, and the two together make the whole plan.
TEST(NetshapePlan, HalvesSplitTheWholePlan) {
  LinkProfile prof;
  prof.rate_bps = 50'000'000;
  prof.delay = 20ms;
  prof.jitter = 2ms;
  prof.loss = 0.01;
  prof.duplicate = 0.001;
  prof.queue_packets = 200;
  for (Backend b : {Backend::kNetem, Backend::kUserspace}) {
    SCOPED_TRACE(std::string(BackendName(b)));
    PlanOptions o = Opts(b);
    auto whole = BuildPlan(prof, Direction::kReverse, o);
    o.half = ShapeHalf::kSenderOnly;
    auto snd = BuildPlan(prof, Direction::kReverse, o);
    o.half = ShapeHalf::kReceiverOnly;
    auto rcv = BuildPlan(prof, Direction::kReverse, o);
    ASSERT_TRUE(whole.ok() && snd.ok() && rcv.ok());
    // Sender half: the egress objects, no delay line.
    EXPECT_EQ(snd->htb, whole->htb);
    EXPECT_EQ(snd->fifo_limit_packets, whole->fifo_limit_packets);
    EXPECT_EQ(snd->netem, whole->netem);
    EXPECT_EQ(snd->gso_max_segs, whole->gso_max_segs);
    EXPECT_FALSE(snd->delay_line);
    // Receiver half: the delay line only.
    EXPECT_FALSE(rcv->has_qdiscs());
    EXPECT_FALSE(rcv->fifo_limit_packets);
    EXPECT_FALSE(rcv->gso_max_segs);
    EXPECT_EQ(rcv->delay_line, whole->delay_line);
    // Together: the whole plan.
    Plan joined = *snd;
    joined.delay_line = rcv->delay_line;
    EXPECT_EQ(joined, *whole);
  }
  // Userspace: the rate stays with the sender, the impairments go to the receiver.
  PlanOptions o = Opts(Backend::kUserspace);
  o.half = ShapeHalf::kSenderOnly;
  auto snd = BuildPlan(prof, Direction::kForward, o);
  ASSERT_TRUE(snd.ok());
  ASSERT_TRUE(snd->htb);
  EXPECT_EQ(snd->htb->rate_bps, 50'000'000u);
  EXPECT_EQ(snd->fifo_limit_packets, 200u);
  o.half = ShapeHalf::kReceiverOnly;
  auto rcv = BuildPlan(prof, Direction::kForward, o);
  ASSERT_TRUE(rcv.ok());
  ASSERT_TRUE(rcv->delay_line);
  EXPECT_EQ(rcv->delay_line->impairment.latency, 20ms);
  EXPECT_EQ(rcv->delay_line->impairment.jitter, 2ms);
  EXPECT_EQ(rcv->delay_line->impairment.loss, ProbabilityToU32(0.01));
  EXPECT_EQ(rcv->delay_line->copy_range_bytes, 0xffffu);  // duplicates re-inject copies
  // Netem: the whole profile is on the sender's egress; the receiver has nothing.
  o = Opts(Backend::kNetem);
  o.half = ShapeHalf::kReceiverOnly;
  auto nrcv = BuildPlan(prof, Direction::kForward, o);
  ASSERT_TRUE(nrcv.ok());
  EXPECT_TRUE(nrcv->empty());
  o.half = ShapeHalf::kSenderOnly;
  auto nsnd = BuildPlan(prof, Direction::kForward, o);
  ASSERT_TRUE(nsnd.ok());
  ASSERT_TRUE(nsnd->netem);
  EXPECT_EQ(nsnd->netem->impairment.latency, 20ms);
  // A rate-only profile has no receiver half; a delay-only one no userspace sender half.
  LinkProfile rate_only;
  rate_only.rate_bps = 1'000'000;
  o = Opts(Backend::kUserspace);
  o.half = ShapeHalf::kReceiverOnly;
  EXPECT_TRUE(BuildPlan(rate_only, Direction::kForward, o)->empty());
  LinkProfile delay_only;
  delay_only.delay = 5ms;
  o.half = ShapeHalf::kSenderOnly;
  EXPECT_TRUE(BuildPlan(delay_only, Direction::kForward, o)->empty());
  // Validation is the same for either half.
  LinkProfile corrupt;
  corrupt.corrupt = 0.1;
  EXPECT_EQ(BuildPlan(corrupt, Direction::kForward, o).status().code(), StatusCode::kUnimplemented);
  EXPECT_EQ(ShapeHalfName(ShapeHalf::kBoth), "both");
  EXPECT_EQ(ShapeHalfName(ShapeHalf::kSenderOnly), "sender");
  EXPECT_EQ(ShapeHalfName(ShapeHalf::kReceiverOnly), "receiver");
}

TEST(NetshapePlan, ProbabilityScaling) {
  EXPECT_EQ(ProbabilityToU32(0), 0u);
  EXPECT_EQ(ProbabilityToU32(-1), 0u);
  EXPECT_EQ(ProbabilityToU32(1), 0xffffffffu);
  EXPECT_EQ(ProbabilityToU32(2), 0xffffffffu);
  EXPECT_EQ(ProbabilityToU32(0.01), 42949673u);
  EXPECT_NEAR(U32ToProbability(ProbabilityToU32(0.123)), 0.123, 1e-9);
}

TEST(NetshapePlan, BackendNames) {
  EXPECT_EQ(BackendName(Backend::kNetem), "netem");
  EXPECT_EQ(BackendName(Backend::kUserspace), "userspace");
  EXPECT_EQ(*ParseBackend("netem"), Backend::kNetem);
  EXPECT_EQ(ParseBackend("tc").status().message(),
            "unknown shaping backend 'tc'; expected netem or userspace");
  EXPECT_EQ(DirectionName(Direction::kReverse), "reverse");
}

class NetshapeDistributionTableTest : public ::testing::TestWithParam<DelayDistribution> {};

TEST_P(NetshapeDistributionTableTest, UnitVarianceZeroMeanSorted) {
  const auto& t = DistributionTable(GetParam());
  ASSERT_EQ(t.size(), 4096u);
  double mean = 0, var = 0;
  for (int16_t v : t) mean += v;
  mean /= t.size();
  for (int16_t v : t) var += (v - mean) * (v - mean);
  double sd = std::sqrt(var / t.size());
  EXPECT_NEAR(mean, 0, 2);  // in 1/8192 sigma
  EXPECT_NEAR(sd, 8192, 8192 * 0.002);
  EXPECT_TRUE(std::is_sorted(t.begin(), t.end()));
}

INSTANTIATE_TEST_SUITE_P(All, NetshapeDistributionTableTest,
                         ::testing::Values(DelayDistribution::kNormal, DelayDistribution::kPareto,
                                           DelayDistribution::kParetoNormal));

TEST(NetshapeDistributionTable, ShapesDiffer) {
  EXPECT_TRUE(DistributionTable(DelayDistribution::kUniform).empty());
  const auto& n = DistributionTable(DelayDistribution::kNormal);
  const auto& p = DistributionTable(DelayDistribution::kPareto);
  // Normal is symmetric; Pareto is skewed right (long tail, median below the mean).
  EXPECT_NEAR(n[2048] + n[2047], 0, 4);
  EXPECT_LT(p[2048], -1000);
  EXPECT_EQ(p.back(), 32767);  // tail clipped at +4 sigma
}

}  // namespace
}  // namespace gridemu::netshape

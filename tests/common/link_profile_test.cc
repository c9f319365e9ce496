#include "gridemu/common/link_profile.h"

#include <gtest/gtest.h>

namespace gridemu {
namespace {
using namespace std::chrono_literals;

TEST(LinkProfile, MergeOverridesOnlySetFields) {
  LinkProfile base;
  base.rate_bps = 10'000'000;
  base.delay = 20ms;
  base.loss = 0.01;
  LinkProfile over;
  over.delay = 50ms;
  LinkProfile m = base.MergedWith(over);
  EXPECT_EQ(m.rate_bps, 10'000'000u);
  EXPECT_EQ(m.delay, 50ms);
  EXPECT_EQ(m.loss, 0.01);
  EXPECT_TRUE(LinkProfile{}.empty());
  EXPECT_FALSE(m.empty());
}

TEST(LinkProfile, GilbertElliottReplacesRandomLoss) {
  LinkProfile base;
  base.loss = 0.01;
  LinkProfile over;
  over.loss_gemodel = GilbertElliott{0.01, 0.3, 1, 0};
  LinkProfile m = base.MergedWith(over);
  EXPECT_FALSE(m.loss.has_value());
  EXPECT_TRUE(m.loss_gemodel.has_value());
}

TEST(LinkProfile, ValidateNamesEveryProblem) {
  LinkProfile p;
  p.loss = 1.5;
  p.jitter = 5ms;
  p.reorder_gap = 5;
  p.rate_bps = 0;
  auto errs = p.ValidateAll();
  ASSERT_EQ(errs.size(), 4u);
  EXPECT_EQ(errs[0], "rate: must be greater than 0bit");
  EXPECT_EQ(errs[1], "jitter: needs a delay (jitter varies the delay)");
  EXPECT_EQ(errs[2], "loss: 150% is above 100%");
  EXPECT_EQ(errs[3], "gap: needs a reorder");
  EXPECT_EQ(p.Validate().message(), "rate: must be greater than 0bit");
}

TEST(LinkProfile, ValidProfilePasses) {
  LinkProfile p;
  p.rate_bps = 1'000'000;
  p.delay = 10ms;
  p.jitter = 2ms;
  p.delay_distribution = DelayDistribution::kNormal;
  p.reorder = 0.25;
  p.reorder_gap = 5;
  p.queue_packets = 100;
  EXPECT_TRUE(p.Validate().ok()) << p.Validate().message();
  EXPECT_EQ(p.ToString(), "rate 1mbit delay 10ms jitter 2ms distribution normal reorder 25% gap 5 queue 100");
}

TEST(DelayDistribution, Names) {
  EXPECT_EQ(ParseDelayDistribution("paretonormal").value(), DelayDistribution::kParetoNormal);
  EXPECT_EQ(ParseDelayDistribution("gauss").status().message(),
            "unknown delay distribution 'gauss'; expected one of uniform, normal, pareto, paretonormal");
}

}  // namespace
}  // namespace gridemu

#include "gridemu/common/random.h"

#include <gtest/gtest.h>

#include <vector>

namespace gridemu {
namespace {

TEST(Rng, SameSeedSameStream) {
  Rng a(42), b(42), c(43);
  std::vector<uint64_t> va, vb, vc;
  for (int i = 0; i < 100; ++i) {
    va.push_back(a.Next());
    vb.push_back(b.Next());
    vc.push_back(c.Next());
  }
  EXPECT_EQ(va, vb);
  EXPECT_NE(va, vc);
}

TEST(Rng, NamedStreamsDiffer) {
  EXPECT_NE(Rng::ForStream(1, "loss").Next(), Rng::ForStream(1, "jitter").Next());
  EXPECT_EQ(Rng::ForStream(1, "loss").Next(), Rng::ForStream(1, "loss").Next());
}

TEST(Rng, BelowIsUniformEnough) {
  Rng r(7);
  std::vector<int> counts(10);
  for (int i = 0; i < 100000; ++i) counts[r.Below(10)]++;
  for (int c : counts) {
    EXPECT_GT(c, 9500);
    EXPECT_LT(c, 10500);
  }
  for (int i = 0; i < 1000; ++i) {
    double u = r.Uniform01();
    EXPECT_GE(u, 0.0);
    EXPECT_LT(u, 1.0);
  }
}

TEST(Fnv1a64, KnownVector) {
  // Reference value from the FNV specification test suite.
  EXPECT_EQ(Fnv1a64("a"), 0xaf63dc4c8601ec8cULL);
}

}  // namespace
}  // namespace gridemu

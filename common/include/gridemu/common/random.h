// Deterministic pseudo-random numbers. Every random choice of an experiment
// (generators, loss, jitter, churn) derives from its `seed` (DESIGN.md §3),
// and must give the same result on every machine and compiler — so this does
// not use <random>'s distributions, whose output is implementation-defined.
#pragma once

#include <cstdint>
#include <string_view>

namespace gridemu {

/// xoshiro256** 1.0 (Blackman & Vigna, "Scrambled linear pseudorandom number
/// generators", ACM TOMS 2021), seeded through SplitMix64 (Steele et al.,
/// OOPSLA 2014). Not cryptographic. Thread-compatible (one per thread).
class Rng {
 public:
  explicit Rng(uint64_t seed);

  /// A generator for a named sub-stream: same (seed, name) -> same stream;
  /// different names give independent streams (FNV-1a of the name mixed in).
  static Rng ForStream(uint64_t seed, std::string_view name);

  /// 64 uniformly random bits.
  uint64_t Next();
  /// Uniform double in [0, 1), 53 bits of precision.
  double Uniform01();
  /// Uniform integer in [0, n); n must be > 0. Lemire's nearly-divisionless
  /// method (Lemire, "Fast random integer generation in an interval", 2019).
  uint64_t Below(uint64_t n);
  /// True with probability p (clamped to [0, 1]).
  bool Bernoulli(double p);

 private:
  uint64_t s_[4];
};

/// 64-bit FNV-1a hash of a string (Fowler–Noll–Vo), stable across platforms.
uint64_t Fnv1a64(std::string_view s);

}  // namespace gridemu

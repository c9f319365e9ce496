#include "gridemu/common/clock.h"

#include <time.h>

namespace gridemu {
namespace {

int64_t Read(clockid_t clock) {
  struct timespec ts;
  ::clock_gettime(clock, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

}  // namespace

int64_t UnixNanosNow() { return Read(CLOCK_REALTIME); }

int64_t MonotonicNanosNow() { return Read(CLOCK_MONOTONIC); }

}  // namespace gridemu

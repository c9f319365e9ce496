// Clock readings in the units the wire format and the store use: nanoseconds
// as 64-bit integers. One implementation for every module (the controller's
// timestamps, the agent's TaskEvents, the vnode init's task times).
// Thread-safe and async-signal-safe (clock_gettime(2) only).
#pragma once

#include <cstdint>

namespace gridemu {

/// Wall-clock time (CLOCK_REALTIME): nanoseconds since the Unix epoch, now.
/// Jumps when the system clock is set; use it for timestamps that are stored
/// or shown, never for durations.
int64_t UnixNanosNow();

/// Monotonic time (CLOCK_MONOTONIC): nanoseconds since an arbitrary point
/// (the boot), now. Never jumps; use it for durations and deadlines.
int64_t MonotonicNanosNow();

}  // namespace gridemu

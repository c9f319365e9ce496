// Parsing and printing of the units of experiment files (DESIGN.md §3).
// They follow tc(8) so that netem users read them without thinking.
//
// Every parser accepts surrounding ASCII whitespace, rejects anything else it
// does not understand (unknown suffix, missing number, trailing junk, NaN,
// infinity, negative values, overflow) and returns kInvalidArgument with a
// message that quotes the input and says what is expected. Messages never
// carry a position: callers add file:line:column.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

#include "gridemu/common/status.h"

namespace gridemu {

/// Time, e.g. "250us", "10ms", "1.5s", "2m", "1h", "100ns".
/// Suffixes (case-insensitive), as tc plus minutes and hours:
///   ns/nsec/nsecs, us/usec/usecs, ms/msec/msecs, s/sec/secs, m/min/mins, h/hour/hours.
/// A bare number is rejected (tc reads it as microseconds, which surprises
/// users writing `delay: 10`): the message asks for a unit.
/// Result: nanoseconds, rounded to the nearest nanosecond. Range: 0 .. ~292 years.
Result<std::chrono::nanoseconds> ParseTime(std::string_view text);

/// Rate in bits per second, exactly as tc's get_rate() reads it
/// (iproute2 tc/tc_util.c; tc(8) "RATES"): suffixes are case-insensitive;
///   bit (or a bare number) = 1, kbit = 1e3, mbit = 1e6, gbit = 1e9, tbit = 1e12,
///   kibit = 1024, mibit = 1024^2, gibit = 1024^3, tibit = 1024^4 (bits/s);
///   bps = 8, kbps = 8e3, mbps = 8e6, gbps = 8e9, tbps = 8e12,
///   kibps = 8*1024, mibps, gibps, tibps (bytes/s, converted to bits/s).
/// Fractions are allowed ("1.5mbit"); the result is rounded to whole bits/s.
/// Zero is accepted here; callers reject it where meaningless.
Result<uint64_t> ParseRateBps(std::string_view text);

/// Ratio written as a percentage, e.g. "0.1%", "5%", "100%".
/// Result: a fraction (0.001, 0.05, 1.0). Values above 100% parse (callers
/// range-check and name the field); a bare number is rejected because netem
/// reads "0.1" as 0.1 % while YAML users read it as 10 %.
Result<double> ParseRatio(std::string_view text);

/// Size in bytes, as tc's get_size() plus IEC suffixes (case-insensitive):
///   b (or a bare number) = 1, k/kb = 1024, m/mb = 1024^2, g/gb = 1024^3, t/tb = 1024^4,
///   kib/mib/gib/tib = the same powers of 1024,
///   kbit = 1024/8, mbit = 1024^2/8, gbit = 1024^3/8 (tc's get_size bit suffixes).
/// Fractions are allowed ("1.5MiB"); the result is rounded to whole bytes.
Result<uint64_t> ParseSizeBytes(std::string_view text);

/// "10ms", "1.5s", "250us", "0s": the shortest exact form of a time.
std::string FormatTime(std::chrono::nanoseconds t);
/// "10mbit", "1.5gbit", "512kbit", "800bit": the shortest exact form.
std::string FormatRate(uint64_t rate_bps);
/// "0.1%", "5%".
std::string FormatRatio(double fraction);
/// "64KiB", "128MiB", "100B".
std::string FormatSize(uint64_t bytes);

}  // namespace gridemu

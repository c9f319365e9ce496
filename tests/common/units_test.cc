#include "gridemu/common/units.h"

#include <gtest/gtest.h>

namespace gridemu {
namespace {
using std::chrono::nanoseconds;

TEST(ParseTime, AcceptsTcSuffixesAndMinutes) {
  EXPECT_EQ(ParseTime("250us").value(), nanoseconds(250'000));
  EXPECT_EQ(ParseTime("10ms").value(), nanoseconds(10'000'000));
  EXPECT_EQ(ParseTime("1.5s").value(), nanoseconds(1'500'000'000));
  EXPECT_EQ(ParseTime("2m").value(), nanoseconds(120'000'000'000LL));
  EXPECT_EQ(ParseTime("1h").value(), nanoseconds(3'600'000'000'000LL));
  EXPECT_EQ(ParseTime("100ns").value(), nanoseconds(100));
  EXPECT_EQ(ParseTime("10MSEC").value(), nanoseconds(10'000'000));
  EXPECT_EQ(ParseTime(" 3secs ").value(), nanoseconds(3'000'000'000LL));
  EXPECT_EQ(ParseTime("0s").value(), nanoseconds(0));
}

TEST(ParseTime, RejectsMalformed) {
  EXPECT_EQ(ParseTime("10").status().message(),
            "time '10' has no unit; write e.g. 10ms or 1.5s (tc would read a bare number as "
            "microseconds)");
  EXPECT_EQ(ParseTime("10 parsecs").status().message(),
            "unknown time unit ' parsecs' in '10 parsecs'; expected one of ns, us, ms, s, m, h");
  EXPECT_EQ(ParseTime("-5ms").status().message(), "time '-5ms' is negative");
  EXPECT_EQ(ParseTime("ms").status().message(),
            "malformed time 'ms': expected a number then a unit, e.g. 10ms");
  EXPECT_EQ(ParseTime("").status().message(), "empty time; expected e.g. 10ms");
  EXPECT_EQ(ParseTime("1e300s").status().message(), "time '1e300s' is out of range");
  EXPECT_FALSE(ParseTime("nans").ok());
  EXPECT_FALSE(ParseTime("infs").ok());
}

TEST(ParseRate, ReadsLikeTc) {
  EXPECT_EQ(ParseRateBps("512kbit").value(), 512'000u);
  EXPECT_EQ(ParseRateBps("10mbit").value(), 10'000'000u);
  EXPECT_EQ(ParseRateBps("1gbit").value(), 1'000'000'000u);
  EXPECT_EQ(ParseRateBps("1Gbit").value(), 1'000'000'000u);
  EXPECT_EQ(ParseRateBps("1kibit").value(), 1024u);
  // bps/kbps/mbps are BYTES per second, as in tc(8).
  EXPECT_EQ(ParseRateBps("100bps").value(), 800u);
  EXPECT_EQ(ParseRateBps("1kbps").value(), 8'000u);
  EXPECT_EQ(ParseRateBps("1mbps").value(), 8'000'000u);
  EXPECT_EQ(ParseRateBps("1MiBps").value(), 8u * 1024 * 1024);
  // A bare number is bits per second, as tc.
  EXPECT_EQ(ParseRateBps("1000").value(), 1000u);
  EXPECT_EQ(ParseRateBps("1.5mbit").value(), 1'500'000u);
}

TEST(ParseRate, RejectsMalformed) {
  EXPECT_EQ(ParseRateBps("10mbits").status().message(),
            "unknown rate unit 'mbits' in '10mbits'; expected one of bit, kbit, mbit, gbit, tbit, "
            "kibit.., bps, kbps, mbps, gbps, tbps, kibps.. (bps = bytes/s, as tc)");
  EXPECT_EQ(ParseRateBps("-1mbit").status().message(), "rate '-1mbit' is negative");
  EXPECT_EQ(ParseRateBps("fast").status().message(),
            "malformed rate 'fast': expected a number then a unit, e.g. 10mbit");
  EXPECT_EQ(ParseRateBps("1e30tbit").status().message(), "rate '1e30tbit' is out of range");
}

TEST(ParseRatio, NeedsPercent) {
  EXPECT_DOUBLE_EQ(ParseRatio("0.1%").value(), 0.001);
  EXPECT_DOUBLE_EQ(ParseRatio("5%").value(), 0.05);
  EXPECT_DOUBLE_EQ(ParseRatio("100%").value(), 1.0);
  EXPECT_DOUBLE_EQ(ParseRatio("150%").value(), 1.5);  // range is checked by callers
  EXPECT_EQ(ParseRatio("0.1").status().message(),
            "ratio '0.1' needs a '%' sign, e.g. 0.1% (a bare number is ambiguous)");
  EXPECT_EQ(ParseRatio("-1%").status().message(), "ratio '-1%' is negative");
  EXPECT_EQ(ParseRatio("5%%").status().message(),
            "malformed ratio '5%%': expected a percentage, e.g. 0.1%");
  EXPECT_EQ(ParseRatio("abc").status().message(),
            "malformed ratio 'abc': expected a number then a unit, e.g. 0.1%");
}

TEST(ParseSize, TcAndIecSuffixes) {
  EXPECT_EQ(ParseSizeBytes("64k").value(), 65536u);
  EXPECT_EQ(ParseSizeBytes("128MiB").value(), 128u << 20);
  EXPECT_EQ(ParseSizeBytes("1g").value(), 1u << 30);
  EXPECT_EQ(ParseSizeBytes("1500").value(), 1500u);
  EXPECT_EQ(ParseSizeBytes("1500b").value(), 1500u);
  EXPECT_EQ(ParseSizeBytes("8kbit").value(), 1024u);
  EXPECT_EQ(ParseSizeBytes("1.5KiB").value(), 1536u);
  EXPECT_FALSE(ParseSizeBytes("12 apples").ok());
  EXPECT_EQ(ParseSizeBytes("-1k").status().message(), "size '-1k' is negative");
}

TEST(Format, RoundTrips) {
  for (const char* t : {"10ms", "1.5s", "250us", "2m", "1h", "100ns", "90s"}) {
    EXPECT_EQ(FormatTime(ParseTime(t).value()), t);
  }
  for (const char* r : {"10mbit", "1.5gbit", "512kbit", "800bit", "1gbit"}) {
    EXPECT_EQ(FormatRate(ParseRateBps(r).value()), r);
  }
  EXPECT_EQ(FormatRatio(0.001), "0.1%");
  EXPECT_EQ(FormatSize(128u << 20), "128MiB");
  EXPECT_EQ(FormatSize(100), "100B");
  EXPECT_EQ(FormatSize(65536), "64KiB");
}

}  // namespace
}  // namespace gridemu

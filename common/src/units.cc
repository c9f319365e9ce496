#include "gridemu/common/units.h"

#include <charconv>
#include <cmath>
#include <cstdio>
#include <limits>
#include <utility>
#include <vector>

namespace gridemu {
namespace {

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

bool IEquals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    char x = a[i], y = b[i];
    if (x >= 'A' && x <= 'Z') x = static_cast<char>(x - 'A' + 'a');
    if (y >= 'A' && y <= 'Z') y = static_cast<char>(y - 'A' + 'a');
    if (x != y) return false;
  }
  return true;
}

struct Suffix {
  std::string_view name;
  double scale;
};

// Splits "<number><suffix>" and checks the number. `what` names the kind of
// value for messages ("time", "rate", ...), `example` shows a valid one.
Result<std::pair<double, std::string_view>> SplitNumber(std::string_view text, std::string_view what,
                                                        std::string_view example) {
  std::string_view s = Trim(text);
  const std::string quoted = "'" + std::string(text) + "'";
  if (s.empty()) {
    return InvalidArgumentError("empty " + std::string(what) + "; expected e.g. " + std::string(example));
  }
  if (s.front() == '-') {
    return InvalidArgumentError(std::string(what) + " " + quoted + " is negative");
  }
  double v = 0;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), v, std::chars_format::general);
  if (ptr == s.data()) {
    return InvalidArgumentError("malformed " + std::string(what) + " " + quoted +
                                ": expected a number then a unit, e.g. " + std::string(example));
  }
  if (ec == std::errc::result_out_of_range || !std::isfinite(v)) {
    return InvalidArgumentError(std::string(what) + " " + quoted + " is out of range");
  }
  return std::make_pair(v, s.substr(static_cast<size_t>(ptr - s.data())));
}

Result<double> Scale(std::string_view text, std::string_view what, std::string_view example,
                     const std::vector<Suffix>& suffixes, bool bare_ok, std::string_view bare_msg,
                     std::string_view known) {
  GRIDEMU_ASSIGN_OR_RETURN(auto nv, SplitNumber(text, what, example));
  auto [v, suffix] = nv;
  const std::string quoted = "'" + std::string(text) + "'";
  if (suffix.empty()) {
    if (bare_ok) return v;
    return InvalidArgumentError(std::string(what) + " " + quoted + " has no unit; " + std::string(bare_msg));
  }
  for (const auto& sfx : suffixes) {
    if (IEquals(sfx.name, suffix)) return v * sfx.scale;
  }
  return InvalidArgumentError("unknown " + std::string(what) + " unit '" + std::string(suffix) + "' in " +
                              quoted + "; expected one of " + std::string(known));
}

// Formats v with up to 9 decimals (exact for ns in s), no trailing zeros.
std::string Num(double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.9f", v);
  std::string s = buf;
  while (!s.empty() && s.back() == '0') s.pop_back();
  if (!s.empty() && s.back() == '.') s.pop_back();
  return s;
}

}  // namespace

Result<std::chrono::nanoseconds> ParseTime(std::string_view text) {
  static const std::vector<Suffix> kSuffixes = {
      {"ns", 1},       {"nsec", 1},     {"nsecs", 1},    {"us", 1e3},    {"usec", 1e3},
      {"usecs", 1e3},  {"ms", 1e6},     {"msec", 1e6},   {"msecs", 1e6}, {"s", 1e9},
      {"sec", 1e9},    {"secs", 1e9},   {"m", 60e9},     {"min", 60e9},  {"mins", 60e9},
      {"h", 3600e9},   {"hour", 3600e9}, {"hours", 3600e9}};
  GRIDEMU_ASSIGN_OR_RETURN(
      double ns, Scale(text, "time", "10ms", kSuffixes, false,
                       "write e.g. 10ms or 1.5s (tc would read a bare number as microseconds)",
                       "ns, us, ms, s, m, h"));
  if (ns > static_cast<double>(std::numeric_limits<int64_t>::max()) / 2) {
    return InvalidArgumentError("time '" + std::string(text) + "' is out of range");
  }
  return std::chrono::nanoseconds(static_cast<int64_t>(std::llround(ns)));
}

Result<uint64_t> ParseRateBps(std::string_view text) {
  static const std::vector<Suffix> kSuffixes = {
      {"bit", 1.},
      {"kibit", 1024.},
      {"kbit", 1000.},
      {"mibit", 1024. * 1024.},
      {"mbit", 1000000.},
      {"gibit", 1024. * 1024. * 1024.},
      {"gbit", 1000000000.},
      {"tibit", 1024. * 1024. * 1024. * 1024.},
      {"tbit", 1000000000000.},
      {"bps", 8.},
      {"kibps", 8. * 1024.},
      {"kbps", 8000.},
      {"mibps", 8. * 1024. * 1024.},
      {"mbps", 8000000.},
      {"gibps", 8. * 1024. * 1024. * 1024.},
      {"gbps", 8000000000.},
      {"tibps", 8. * 1024. * 1024. * 1024. * 1024.},
      {"tbps", 8000000000000.},
  };
  GRIDEMU_ASSIGN_OR_RETURN(double bps, Scale(text, "rate", "10mbit", kSuffixes, true, "",
                                             "bit, kbit, mbit, gbit, tbit, kibit.., bps, kbps, "
                                             "mbps, gbps, tbps, kibps.. (bps = bytes/s, as tc)"));
  if (bps >= 1.8e19) return InvalidArgumentError("rate '" + std::string(text) + "' is out of range");
  return static_cast<uint64_t>(std::llround(bps));
}

Result<double> ParseRatio(std::string_view text) {
  std::string_view s = Trim(text);
  if (s.empty() || s.back() != '%') {
    GRIDEMU_ASSIGN_OR_RETURN(auto nv, SplitNumber(text, "ratio", "0.1%"));
    if (nv.second.empty()) {
      return InvalidArgumentError("ratio '" + std::string(text) +
                                  "' needs a '%' sign, e.g. 0.1% (a bare number is ambiguous)");
    }
    return InvalidArgumentError("malformed ratio '" + std::string(text) +
                                "': expected a percentage, e.g. 0.1%");
  }
  if (s.front() == '-') return InvalidArgumentError("ratio '" + std::string(text) + "' is negative");
  auto split = SplitNumber(s.substr(0, s.size() - 1), "ratio", "0.1%");
  if (!split.ok() || !split->second.empty()) {
    return InvalidArgumentError("malformed ratio '" + std::string(text) +
                                "': expected a percentage, e.g. 0.1%");
  }
  return split->first / 100.0;
}

Result<uint64_t> ParseSizeBytes(std::string_view text) {
  constexpr double K = 1024.;
  static const std::vector<Suffix> kSuffixes = {
      {"b", 1},          {"k", K},          {"kb", K},         {"kib", K},
      {"m", K * K},      {"mb", K * K},     {"mib", K * K},    {"g", K * K * K},
      {"gb", K * K * K}, {"gib", K * K * K}, {"t", K * K * K * K}, {"tb", K * K * K * K},
      {"tib", K * K * K * K}, {"kbit", K / 8}, {"mbit", K * K / 8}, {"gbit", K * K * K / 8}};
  GRIDEMU_ASSIGN_OR_RETURN(double b, Scale(text, "size", "64k or 128MiB", kSuffixes, true, "",
                                           "b, k, kb, kib, m, mb, mib, g, gb, gib, t, kbit, "
                                           "mbit, gbit"));
  if (b >= 1.8e19) return InvalidArgumentError("size '" + std::string(text) + "' is out of range");
  return static_cast<uint64_t>(std::llround(b));
}

std::string FormatTime(std::chrono::nanoseconds t) {
  const int64_t ns = t.count();
  struct U {
    int64_t scale;
    const char* name;
  };
  static const U kUnits[] = {{3600'000'000'000LL, "h"}, {60'000'000'000LL, "m"},
                             {1'000'000'000LL, "s"},    {1'000'000LL, "ms"},
                             {1'000LL, "us"},           {1LL, "ns"}};
  if (ns == 0) return "0s";
  for (const auto& u : kUnits) {
    if (ns % u.scale == 0) return std::to_string(ns / u.scale) + u.name;
    // Prefer s/ms/us with a fraction over a long integer of a smaller unit.
    if (u.scale <= 1'000'000'000LL && u.scale > 1 && ns >= u.scale) {
      return Num(static_cast<double>(ns) / static_cast<double>(u.scale)) + u.name;
    }
  }
  return std::to_string(ns) + "ns";
}

std::string FormatRate(uint64_t bps) {
  static const std::pair<uint64_t, const char*> kUnits[] = {
      {1000000000000ULL, "tbit"}, {1000000000ULL, "gbit"}, {1000000ULL, "mbit"}, {1000ULL, "kbit"}};
  for (auto [scale, name] : kUnits) {
    if (bps >= scale) return Num(static_cast<double>(bps) / static_cast<double>(scale)) + name;
  }
  return std::to_string(bps) + "bit";
}

std::string FormatRatio(double fraction) { return Num(fraction * 100.0) + "%"; }

std::string FormatSize(uint64_t bytes) {
  static const std::pair<uint64_t, const char*> kUnits[] = {
      {1ULL << 40, "TiB"}, {1ULL << 30, "GiB"}, {1ULL << 20, "MiB"}, {1ULL << 10, "KiB"}};
  for (auto [scale, name] : kUnits) {
    if (bytes >= scale && bytes % (scale / 1024) == 0) {
      return Num(static_cast<double>(bytes) / static_cast<double>(scale)) + name;
    }
  }
  return std::to_string(bytes) + "B";
}

}  // namespace gridemu

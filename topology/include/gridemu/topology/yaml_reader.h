// A checked YAML reader: positioned diagnostics, checked mappings and scalar
// readers over yaml-cpp nodes. The topology parser (topology/yaml.h) and the
// experiment file parser (experiments/parse.h) are built on it.
//
// Everything here reports problems into a Diagnostics list instead of
// stopping: one pass over a file names every mistake. Each diagnostic is
// positioned at the offending key or value (1-based line:column) and its
// message starts with the field it is about, e.g.
//   "delay: unknown time unit 'xs' in '10xs'; expected one of ..."
//   "unknown key 'colour' in link; expected one of endpoints, forward, ..."
//   "duplicate key 'rate' in link (first at 4:7)"
//   "count: expected a positive integer, got 'many'"
// No function here throws: they only inspect nodes that are already loaded
// (loading the text, and reporting yaml-cpp's parse exceptions, is the
// caller's job).
// Not thread-safe (a Diagnostics list is not); separate parses may run in
// separate threads.
#pragma once

#include <yaml-cpp/yaml.h>

#include <chrono>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "gridemu/common/diagnostics.h"

namespace gridemu::topology {

/// What a parse needs to know about the file it reads.
struct YamlContext {
  std::string file;              ///< name used in diagnostics ("exp.yaml", "bad/x.yaml")
  std::string base_dir = ".";    ///< directory that relative paths (import `gml:`) start from
  uint64_t seed = 1;             ///< the experiment seed; generator seeds derive from it
  Diagnostics* diags = nullptr;  ///< where problems go; nullptr = discard them (a quiet parse)

  /// Adds "<file>:<line>:<col>: <message>" positioned at `at`.
  void Error(const YAML::Node& at, std::string message) const;
  void Error(SourceLoc at, std::string message) const;
};

/// Position of a node: yaml-cpp marks are 0-based, this is 1-based
/// (line 0 = unknown when yaml-cpp has no mark).
SourceLoc LocOf(const YAML::Node& node, const YamlContext& ctx);

/// "a mapping", "a list", "nothing" or "'<scalar text>'": how a wrong value is
/// quoted in "expected X, got Y" messages.
std::string DescribeYamlValue(const YAML::Node& node);

/// One `key: value` pair of a mapping.
struct YamlEntry {
  std::string key;
  std::string field;  ///< name used in messages: key, or "<prefix>.<key>" (e.g. "forward.delay")
  YAML::Node key_node;
  YAML::Node value;
  /// Where a problem with the value is reported: the value, or the key when
  /// the value is empty (yaml-cpp places an empty value at the next token).
  const YAML::Node& at() const;
};

/// How YamlMap treats an empty value (`nodes:` with nothing after it, `~`):
/// kError reports "<field>: expected a mapping, got nothing"; kEmpty accepts
/// it as a valid mapping without entries.
enum class NullMap { kError, kEmpty };

/// A checked view of a YAML mapping. Construction reports, in one go: a value
/// that is not a mapping ("<field>: expected a mapping, got a list"), non-scalar
/// keys ("expected a plain key in <what>, got a mapping"), duplicate keys
/// ("duplicate key 'rate' in link (first at 4:7)" — yaml-cpp keeps both
/// silently; the first wins here) and keys outside `allowed`
/// ("unknown key 'colour' in link; expected one of endpoints, forward, ...").
/// Rejected keys are left out of entries(). An empty `allowed` accepts any
/// key (mappings keyed by names, like `nodes:`).
/// Lookups are O(1); entries keep file order. Cheap to move.
class YamlMap {
 public:
  YamlMap() = default;
  /// A view of `node`. `what` names the mapping in messages ("link", "group
  /// 'peers'"); `field_prefix` (e.g. "forward") is prepended to entries' fields.
  YamlMap(const YAML::Node& node, std::string_view what, std::span<const std::string_view> allowed,
          const YamlContext& ctx, std::string_view field_prefix = "",
          NullMap null = NullMap::kError);
  /// A view of an entry's value; a non-mapping is reported as
  /// "<entry.field>: expected a mapping, got ..." (at the key when the value
  /// is empty). An empty `what` names the mapping by entry.field.
  YamlMap(const YamlEntry& entry, std::string_view what, std::span<const std::string_view> allowed,
          const YamlContext& ctx, std::string_view field_prefix = "",
          NullMap null = NullMap::kError);

  /// False when the node was not a mapping (the view is then empty).
  bool valid() const { return valid_; }
  const YAML::Node& node() const { return node_; }
  const std::string& what() const { return what_; }
  /// Entries in file order, duplicates removed.
  const std::vector<YamlEntry>& entries() const { return entries_; }
  /// The entry for `key`, or nullptr.
  const YamlEntry* Find(std::string_view key) const;
  bool Has(std::string_view key) const { return Find(key) != nullptr; }
  /// Like Find(), but reports "missing required key '<key>' in <what>" at the
  /// mapping when absent (nothing when the view is not valid()).
  const YamlEntry* Require(std::string_view key, const YamlContext& ctx) const;

 private:
  void Init(const YAML::Node& node, const YAML::Node* key_for_errors, std::string_view field,
            std::span<const std::string_view> allowed, const YamlContext& ctx,
            std::string_view field_prefix, NullMap null);

  YAML::Node node_;
  std::string what_;
  bool valid_ = false;
  std::vector<YamlEntry> entries_;
  std::vector<std::pair<std::string_view, size_t>> index_;  // sorted by key
};

/// True when the entry's value is a list or empty (an empty section); else
/// reports "<field>: expected a list of <item>, got a mapping".
bool ExpectList(const YamlEntry& e, std::string_view item, const YamlContext& ctx);

// Scalar readers. Each reads an entry's value, reports a problem as
// "<field>: <what is wrong>" at the value (at the key when the value is empty)
// and returns nullopt on error. A value that is not a scalar (a mapping, a
// list, nothing) is reported as "<field>: expected <kind>, got <value>"
// (DescribeYamlValue()), with <kind> as named below.

/// Any scalar, as written ("a string"); an empty one only when `allow_empty`,
/// else "expected a non-empty string".
std::optional<std::string> ReadString(const YamlEntry& e, const YamlContext& ctx,
                                      bool allow_empty = false);
/// true/True/TRUE/false/False/FALSE ("true or false"; "expected true or false,
/// got 'yes'").
std::optional<bool> ReadBool(const YamlEntry& e, const YamlContext& ctx);
/// A decimal integer in [min, max] ("a positive integer" when min >= 1, else
/// "a non-negative integer"): "expected a positive integer, got 'x'",
/// "0 is out of range; expected 1 to 1000000" (also for values past 2^64-1).
std::optional<uint64_t> ReadUint(const YamlEntry& e, uint64_t min, uint64_t max,
                                 const YamlContext& ctx);
/// A finite decimal number ("a number"; "expected a number, got 'x'").
std::optional<double> ReadDouble(const YamlEntry& e, const YamlContext& ctx);
/// ParseTime() of the value (e.g. "10ms"; "a time such as 10ms"); nanoseconds.
/// ParseTime()'s message follows "<field>: " on error.
std::optional<std::chrono::nanoseconds> ReadTime(const YamlEntry& e, const YamlContext& ctx);
/// ParseRateBps() of the value (e.g. "10mbit"; "a rate such as 10mbit"); bits
/// per second. ParseRateBps()'s message follows "<field>: " on error.
std::optional<uint64_t> ReadRate(const YamlEntry& e, const YamlContext& ctx);
/// ParseRatio() of the value (e.g. "0.1%"; "a percentage such as 0.1%"); a
/// fraction (0.001). ParseRatio()'s message follows "<field>: " on error.
std::optional<double> ReadRatio(const YamlEntry& e, const YamlContext& ctx);
/// ParseSizeBytes() of the value (e.g. "256MiB"; "a size such as 256MiB");
/// bytes. ParseSizeBytes()'s message follows "<field>: " on error.
std::optional<uint64_t> ReadSize(const YamlEntry& e, const YamlContext& ctx);
/// A list of non-empty scalars (a single scalar is not accepted): "expected a
/// list of <item>s, got 'x'"; a bad element is reported at the element (at
/// the key when it is empty) as "expected a list of <item>s, got a mapping in
/// it", and every bad element is reported.
std::optional<std::vector<std::string>> ReadStringList(const YamlEntry& e, std::string_view item,
                                                       const YamlContext& ctx);

}  // namespace gridemu::topology

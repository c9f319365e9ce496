// The `topology:` section of an experiment file (DESIGN.md §3), and the small
// YAML helpers that experiments/ reuses for the rest of the file.
//
// Everything here reports problems into a Diagnostics list instead of
// stopping: one pass over a file names every mistake. Each diagnostic is
// positioned at the offending key or value (1-based line:column) and its
// message starts with the field it is about, e.g.
//   "delay: unknown time unit 'xs' in '10xs'; expected one of ..."
//   "unknown key 'colour' in link; expected one of endpoints, forward, ..."
//   "duplicate key 'rate' in link (first at 4:7)"
//   "count: expected a positive integer, got 'many'"
// No function here throws: yaml-cpp exceptions are caught and reported.
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
#include <unordered_set>
#include <utility>
#include <vector>

#include "gridemu/common/diagnostics.h"
#include "gridemu/common/link_profile.h"
#include "gridemu/topology/model.h"

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

/// How YamlMap treats an empty value (`nodes:` with nothing after it, `~`).
enum class NullMap { kError, kEmpty };

/// A checked view of a YAML mapping. Construction reports, in one go: a value
/// that is not a mapping ("<field>: expected a mapping, got a list"), non-scalar
/// keys, duplicate keys ("duplicate key 'rate' in link (first at 4:7)" — yaml-cpp
/// keeps both silently; the first wins here) and keys outside `allowed`
/// ("unknown key 'colour' in link; expected one of endpoints, forward, ...").
/// An empty `allowed` accepts any key (mappings keyed by names, like `nodes:`).
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
  /// "<entry.field>: expected a mapping, got ...".
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
// "<field>: <what is wrong>" at the value and returns nullopt on error.

/// Any scalar (empty allowed only when `allow_empty`): "expected a string".
std::optional<std::string> ReadString(const YamlEntry& e, const YamlContext& ctx,
                                      bool allow_empty = false);
/// true/True/TRUE/false/False/FALSE.
std::optional<bool> ReadBool(const YamlEntry& e, const YamlContext& ctx);
/// A decimal integer in [min, max]: "expected a positive integer, got 'x'",
/// "0 is out of range; expected 1 to 1000000".
std::optional<uint64_t> ReadUint(const YamlEntry& e, uint64_t min, uint64_t max,
                                 const YamlContext& ctx);
/// A finite decimal number.
std::optional<double> ReadDouble(const YamlEntry& e, const YamlContext& ctx);
/// ParseTime() of the value (e.g. "10ms"); nanoseconds.
std::optional<std::chrono::nanoseconds> ReadTime(const YamlEntry& e, const YamlContext& ctx);
/// ParseRateBps() of the value (e.g. "10mbit"); bits per second.
std::optional<uint64_t> ReadRate(const YamlEntry& e, const YamlContext& ctx);
/// ParseRatio() of the value (e.g. "0.1%"); a fraction.
std::optional<double> ReadRatio(const YamlEntry& e, const YamlContext& ctx);
/// ParseSizeBytes() of the value (e.g. "256MiB"); bytes.
std::optional<uint64_t> ReadSize(const YamlEntry& e, const YamlContext& ctx);
/// A list of scalars (a single scalar is not accepted): "expected a list of <item>s".
std::optional<std::vector<std::string>> ReadStringList(const YamlEntry& e, std::string_view item,
                                                       const YamlContext& ctx);

// Link profiles.

/// Keys of a link profile: rate, delay, jitter, delay_distribution,
/// delay_correlation, loss, loss_correlation, loss_model, duplicate, reorder,
/// gap, corrupt, queue.
std::span<const std::string_view> ProfileKeys();
/// ProfileKeys() plus "forward" and "reverse".
std::span<const std::string_view> DirectedProfileKeys();

/// Reads the profile keys present in `map` into `out` (keys it does not know
/// are left to the map's own key check). Units: rate as tc rates, delay and
/// jitter as times, the others as ratios ("5%"); gap and queue are integers;
/// loss_model is {p, r, 1-h, 1-k} (Gilbert–Elliott, ratios; p required).
/// Does not range-check combinations (see ReportProfileProblems).
/// Returns false when a value was reported as bad.
bool ParseLinkProfileYaml(const YamlMap& map, const YamlContext& ctx, LinkProfile& out);

/// A profile written in the both-direction form.
struct DirectedProfile {
  LinkProfile both;     ///< keys at the top level
  LinkProfile forward;  ///< effective first endpoint -> second: both + `forward:`
  LinkProfile reverse;  ///< effective second endpoint -> first: both + `reverse:`
};

/// Reads the both-direction form: profile keys at the top level of `map`
/// apply to both directions, `forward: {...}` and `reverse: {...}` (profile
/// keys only) override per direction. `map` must allow DirectedProfileKeys().
bool ParseDirectedProfileYaml(const YamlMap& map, const YamlContext& ctx, DirectedProfile& out);

/// Reports what LinkProfile::ValidateAll() finds in the effective `forward`
/// and `reverse` profiles written by `map` (a both-direction mapping), each at
/// the key that set the field. A problem of both directions coming from a
/// top-level key is reported once, as "<field>: <problem>"; one of a single
/// direction as "forward.<field>: ..." / "reverse.<field>: ...". With base
/// profiles (a run-time `set:` over a link), problems the bases already have
/// are not reported again. Returns false when anything was reported.
bool ReportProfileProblems(const YamlMap& map, const LinkProfile& forward,
                           const LinkProfile& reverse, const YamlContext& ctx,
                           const LinkProfile* base_forward = nullptr,
                           const LinkProfile* base_reverse = nullptr);

// The topology section.

/// What ParseTopologyYaml() learned besides the topology.
struct TopologyYamlInfo {
  /// Names of vnodes and groups that were declared but not created because
  /// of an error. References to them are not reported again (one mistake,
  /// one message): use IsFailedName().
  std::unordered_set<std::string> failed_names;
  /// Name prefixes of imports and generators that failed: their vnodes are unknown.
  std::vector<std::string> failed_prefixes;
  /// (prefix, suffix) name patterns of groups that failed: "<prefix><digits><suffix>".
  std::vector<std::pair<std::string, std::string>> failed_patterns;
  /// True when `name` (or a selector's base name) was declared with an error.
  bool IsFailedName(std::string_view name) const;
};

/// Parses the `topology:` mapping into `topo` (which should be empty),
/// reporting every problem into ctx.diags. Sections and their rules:
///  - `defaults: {runtime, kind, resources: {cpu, memory, pids}}`: runtime and
///    resources apply to every vnode (nodes, groups, imports, generators);
///    kind applies to `nodes` and `groups` only.
///  - `nodes: {name: {kind, runtime, resources, host} | {} | ~}`.
///  - `groups: {name: {count (1..1,000,000), name: "peer{i}" (default
///    "<group>{i}"), link_to, link, kind, runtime, resources, host}}`: member
///    i is named by the pattern; with `link_to`, each member gets a link
///    member -> link_to (forward = member to link_to, the uplink).
///  - `links: [{endpoints: [a, b], <profile>, forward, reverse}]`.
///  - `import: [{gml, prefix, delay: from-geo | <time>, default_delay, rate,
///    link_speed, kind, link}]`: gml is relative to ctx.base_dir; delay
///    defaults to a fixed 1ms per link; default_delay (default 1ms) is the
///    delay of from-geo links whose ends lack coordinates; rate is used for
///    edges without LinkSpeed (and for all with `link_speed: false`); kind
///    defaults to router; `link` adds profile keys other than rate and delay.
///  - `generate: [{model, <model parameters>, prefix, kind, link, seed}]`:
///    prefix defaults to "g<entry index>-"; without `kind`, core roles
///    (hubs, inner tree nodes, transit routers) and role-less models (line,
///    ring, grid, ...) are routers and edge roles (leaves, stubs, dumbbell
///    hosts) are hosts; the seed defaults to
///    Rng::ForStream(ctx.seed, "generate/<entry index>").Next().
///    Parameters a model does not read are errors; at most 1,000,000 vnodes.
/// Vnodes are created in the order nodes, groups, imports, generators; links
/// in the order imports, generators, group links, explicit links.
/// Cost: O(vnodes + links) (a 100,000-member group takes milliseconds).
TopologyYamlInfo ParseTopologyYaml(const YAML::Node& node, const YamlContext& ctx, Topology& topo);
/// The same for a `topology: ...` entry of a checked mapping: an empty or
/// non-mapping value is reported at the key.
TopologyYamlInfo ParseTopologyYaml(const YamlEntry& entry, const YamlContext& ctx, Topology& topo);

}  // namespace gridemu::topology

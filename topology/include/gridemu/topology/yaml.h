// The `topology:` section of an experiment file (DESIGN.md §3), and the
// link-profile readers that experiments/ reuses for run-time `set:` events.
// Built on the checked YAML reader (topology/yaml_reader.h: YamlContext,
// YamlMap, the scalar readers), whose reporting rules apply here too.
//
// Everything here reports problems into a Diagnostics list instead of
// stopping: one pass over a file names every mistake. Each diagnostic is
// positioned at the offending key or value (1-based line:column) and its
// message starts with the field it is about, e.g.
//   "delay: unknown time unit 'xs' in '10xs'; expected one of ..."
//   "unknown key 'colour' in link; expected one of endpoints, forward, ..."
//   "duplicate key 'rate' in link (first at 4:7)"
//   "count: expected a positive integer, got 'many'"
// No function here throws: problems reading an imported GML file are
// reported as diagnostics too.
// Not thread-safe (a Diagnostics list is not); separate parses may run in
// separate threads.
#pragma once

#include <yaml-cpp/yaml.h>

#include <span>
#include <string>
#include <string_view>
#include <unordered_set>
#include <utility>
#include <vector>

#include "gridemu/common/link_profile.h"
#include "gridemu/topology/model.h"
#include "gridemu/topology/yaml_reader.h"

namespace gridemu::topology {

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

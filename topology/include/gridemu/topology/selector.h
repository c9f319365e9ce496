// Vnode selectors: how tasks and events name their targets (DESIGN.md §3):
// a vnode name ("tracker"), a group ("peers"), or a slice of a group
// ("peers[3]", "peers[1:]", "peers[10:20]", "peers[:5]", "peers[-5:]").
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "gridemu/common/status.h"
#include "gridemu/topology/model.h"

namespace gridemu::topology {

/// A parsed selector, before it is resolved against a topology.
struct Selector {
  std::string name;          ///< vnode or group name
  bool has_index = false;    ///< "name[i]"
  bool has_slice = false;    ///< "name[a:b]"
  std::optional<int64_t> start;  ///< slice start / index (negative counts from the end)
  std::optional<int64_t> stop;   ///< slice stop (exclusive)
};

/// Parses the syntax only. kInvalidArgument with a message such as
/// "bad selector 'peers[1:': missing ']'".
Result<Selector> ParseSelector(std::string_view text);

/// Resolves a selector to vnode ids, in group-index order. Rules: a plain name
/// is a vnode if one has it, else a group; an index or slice needs a group;
/// negative bounds count from the end as in Python; a slice must be non-empty
/// and inside [0, count] (no silent clamping), an index inside [0, count).
/// Errors (kNotFound / kInvalidArgument) say what was expected, e.g.
/// "slice peers[10:200] is out of range: group 'peers' has 100 members".
Result<std::vector<VnodeId>> ResolveSelector(const Topology& topo, std::string_view text);

}  // namespace gridemu::topology

// Routing over the explicit-link model (DESIGN.md §4): shortest paths,
// path properties and per-router next-hop tables.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <vector>

#include "gridemu/common/link_profile.h"
#include "gridemu/common/status.h"
#include "gridemu/topology/model.h"

namespace gridemu::topology {

/// Edge weight used by shortest paths.
enum class RouteMetric {
  kDelay,  ///< sum of the one-way delays in the direction of travel (unset = 0, ties broken by hops)
  kHops,   ///< hop count
};

/// Which vnodes may be crossed in the middle of a path: routers and switches
/// forward, hosts do not (a host is only ever a path's first or last vnode).
bool Forwards(const Vnode& v);

/// A path as the links crossed, from `src` to `dst`.
struct Path {
  VnodeId src = 0;
  VnodeId dst = 0;
  std::vector<VnodeId> vnodes;  ///< src .. dst, inclusive
  std::vector<LinkId> links;    ///< links[i] joins vnodes[i] and vnodes[i+1]
};

/// What a path does to traffic in the direction src -> dst.
struct PathProperties {
  std::chrono::nanoseconds delay{0};  ///< sum of one-way delays
  std::optional<uint64_t> rate_bps;   ///< min of the rates; unset if no link sets one
  double loss = 0;                    ///< 1 - prod(1 - p_i), random loss only
  size_t hops = 0;                    ///< links crossed
};

/// Shortest path by Dijkstra (Dijkstra 1959) with a binary heap: O((V+E) log V).
/// Ties are broken deterministically (fewer hops, then lower ids).
/// kNotFound when dst is unreachable (hosts do not forward).
Result<Path> ShortestPath(const Topology& topo, VnodeId src, VnodeId dst,
                          RouteMetric metric = RouteMetric::kDelay);

/// Properties of a path in its direction of travel.
PathProperties PathPropertiesOf(const Topology& topo, const Path& path);

/// Next hop from every vnode towards one destination: a shortest-path tree
/// rooted at `dst` over reversed edges (one Dijkstra). For vnode v,
/// `via[v]` is the link v sends on, or nullopt when v == dst or unreachable.
struct NextHopTree {
  VnodeId dst = 0;
  std::vector<std::optional<LinkId>> via;
  std::vector<std::chrono::nanoseconds> distance;  ///< delay (kDelay) or hops (kHops, in ns units of 1)
};
NextHopTree NextHopsTowards(const Topology& topo, VnodeId dst, RouteMetric metric = RouteMetric::kDelay);

/// One router's forwarding table: destination vnode -> outgoing link.
struct NextHopTable {
  VnodeId router = 0;
  std::vector<std::pair<VnodeId, LinkId>> entries;  ///< sorted by destination
};

/// Next-hop tables of every vnode that needs one (routers, and hosts with
/// more than one link), towards every vnode in `destinations` (all vnodes if
/// empty). Cost: one Dijkstra per destination, O(D (V+E) log V) time and
/// O(R D) memory; kResourceExhausted if R x D exceeds `max_entries` (the
/// caller should restrict destinations, e.g. to hosts, or use the access model).
Result<std::vector<NextHopTable>> ComputeNextHopTables(const Topology& topo,
                                                       const std::vector<VnodeId>& destinations = {},
                                                       RouteMetric metric = RouteMetric::kDelay,
                                                       size_t max_entries = 200'000'000);

/// Graph statistics for `gridemu topo stats`.
struct TopologyStats {
  size_t vnodes = 0, links = 0, hosts = 0, routers = 0, switches = 0;
  size_t components = 0;
  size_t largest_component = 0;
  /// degree -> number of vnodes with that degree
  std::vector<std::pair<size_t, size_t>> degree_histogram;
  size_t min_degree = 0, max_degree = 0;
  double mean_degree = 0;
  /// Hop diameter of the largest component; exact by BFS from every vnode when
  /// it has <= `exact_limit` vnodes, else a lower bound by repeated double sweeps.
  size_t diameter_hops = 0;
  bool diameter_exact = true;
};
TopologyStats ComputeStats(const Topology& topo, size_t exact_limit = 5000);

/// Connected components (links undirected, every vnode a member).
/// Returns the component index of each vnode, and the count via `count`.
std::vector<uint32_t> ConnectedComponents(const Topology& topo, size_t* count);

}  // namespace gridemu::topology

// Synthetic topology generators, deterministic from a seed (DESIGN.md §3
// `generate:`). They build an abstract graph; topology/yaml.h turns it into
// vnodes (named <prefix><i>) and links with the entry's profile.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "gridemu/common/status.h"

namespace gridemu::topology {

enum class GraphModel {
  kLine,            ///< path of n nodes
  kRing,            ///< cycle of n nodes (n >= 3)
  kStar,            ///< node 0 is the hub, n-1 leaves
  kTree,            ///< complete tree: `fanout` children per node, `depth` levels below the root
  kGrid,            ///< rows x cols lattice
  kTorus,           ///< rows x cols lattice with wrap-around (rows, cols >= 3)
  kFullMesh,        ///< every pair linked
  kDumbbell,        ///< two routers joined by a bottleneck, n hosts on each side (2n+2 nodes)
  kWaxman,          ///< Waxman 1988: n points in the unit square, P(u,v) = beta*exp(-d/(alpha*L))
  kBarabasiAlbert,  ///< Barabási & Albert 1999: preferential attachment, m edges per new node
  kTransitStub,     ///< GT-ITM transit-stub (Zegura, Calvert & Bhattacharjee, INFOCOM 1996)
};

/// "line", "ring", "star", "tree", "grid", "torus", "full-mesh", "dumbbell",
/// "waxman", "barabasi-albert", "transit-stub".
std::string_view GraphModelName(GraphModel m);
/// Parses a name above; kInvalidArgument listing the choices.
Result<GraphModel> ParseGraphModel(std::string_view s);

/// Parameters of a generator; each model reads only its own (see Generate()).
struct GraphSpec {
  GraphModel model = GraphModel::kLine;
  uint32_t n = 0;        ///< nodes (line, ring, star, full-mesh, waxman, barabasi-albert); hosts per side (dumbbell)
  uint32_t m = 2;        ///< barabasi-albert: edges added per new node (1 <= m < n)
  uint32_t fanout = 2;   ///< tree
  uint32_t depth = 2;    ///< tree: levels below the root
  uint32_t rows = 0;     ///< grid, torus
  uint32_t cols = 0;     ///< grid, torus
  double alpha = 0.4;    ///< waxman, in (0, 1]
  double beta = 0.1;     ///< waxman, in (0, 1]
  // transit-stub: `transit_domains` domains of `transit_nodes` routers each
  // (domains joined in a ring plus Waxman edges inside), every transit router
  // has `stubs_per_transit` stub domains of `stub_nodes` nodes each (node 0 of
  // a stub is its gateway to the transit router, the others hang off it).
  uint32_t transit_domains = 2;
  uint32_t transit_nodes = 4;
  uint32_t stubs_per_transit = 2;
  uint32_t stub_nodes = 4;
};

/// Role of a generated node, so the caller can pick a vnode kind:
/// kCore = forwards traffic (hub, inner tree node, dumbbell router, transit router,
/// gateway of a stub domain of more than one node);
/// kEdge = an end system (leaf, dumbbell host, other stub node); kAny = model has no roles.
enum class NodeRole { kAny, kCore, kEdge };

/// An undirected multigraph-free graph with nodes 0..num_nodes-1.
struct GeneratedGraph {
  uint32_t num_nodes = 0;
  std::vector<std::pair<uint32_t, uint32_t>> edges;  ///< u < v, no duplicates, no self-loops
  std::vector<NodeRole> roles;                        ///< size num_nodes
  /// Names relative to the prefix: "0", "1", ... for most models; transit-stub
  /// uses "t<d>-<i>" and "s<d>-<i>-<j>-<k>", dumbbell "l<i>", "r<i>", "rl", "rr".
  std::vector<std::string> names;
  /// Coordinates in the unit square (waxman only), else empty.
  std::vector<std::pair<double, double>> positions;
};

/// Builds the graph. Same (spec, seed) -> identical output on every platform.
/// Errors (kInvalidArgument) name the parameter: "n: must be at least 2 for a
/// line", "m: must be below n (got m=5, n=3)", and a size guard refuses graphs
/// over 10,000,000 edges (full-mesh of more than ~4,472 nodes).
/// Deterministic models (line..dumbbell) ignore the seed.
Result<GeneratedGraph> Generate(const GraphSpec& spec, uint64_t seed);

}  // namespace gridemu::topology

// Synthetic topology generators (DESIGN.md §3 `generate:`).
//
// Every random choice goes through gridemu::Rng (xoshiro256**), one named
// stream per model, and never through <random>'s distributions, so a (spec,
// seed) pair gives the same graph on every platform.
#include "gridemu/topology/generators.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <limits>
#include <numeric>

#include "gridemu/common/random.h"

namespace gridemu::topology {
namespace {

// Size guards. A graph over these limits is almost certainly a typo, and
// would take gigabytes to hold as vnodes and links.
constexpr uint64_t kMaxEdges = 10'000'000;
constexpr uint64_t kMaxNodes = 10'000'000;
// Waxman tests every pair of nodes (O(n^2) random draws): 20,000 nodes is
// 2e8 pairs, a few seconds.
constexpr uint32_t kMaxWaxmanNodes = 20'000;

constexpr std::array<std::pair<GraphModel, std::string_view>, 11> kModelNames = {{
    {GraphModel::kLine, "line"},
    {GraphModel::kRing, "ring"},
    {GraphModel::kStar, "star"},
    {GraphModel::kTree, "tree"},
    {GraphModel::kGrid, "grid"},
    {GraphModel::kTorus, "torus"},
    {GraphModel::kFullMesh, "full-mesh"},
    {GraphModel::kDumbbell, "dumbbell"},
    {GraphModel::kWaxman, "waxman"},
    {GraphModel::kBarabasiAlbert, "barabasi-albert"},
    {GraphModel::kTransitStub, "transit-stub"},
}};

std::string Num(uint64_t v) { return std::to_string(v); }

std::string Num(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", v);
  return buf;
}

// a * b, saturating at UINT64_MAX.
uint64_t SatMul(uint64_t a, uint64_t b) {
  if (a != 0 && b > std::numeric_limits<uint64_t>::max() / a) {
    return std::numeric_limits<uint64_t>::max();
  }
  return a * b;
}

uint64_t SatAdd(uint64_t a, uint64_t b) {
  return b > std::numeric_limits<uint64_t>::max() - a ? std::numeric_limits<uint64_t>::max()
                                                      : a + b;
}

// Refuses graphs over the size guards; `param` is the parameter named in the message.
Status CheckSize(std::string_view param, std::string_view what, uint64_t nodes, uint64_t edges) {
  auto count = [](uint64_t v) {
    return v == std::numeric_limits<uint64_t>::max() ? std::string("more than ") + Num(v) : Num(v);
  };
  if (nodes > kMaxNodes) {
    return InvalidArgumentError(std::string(param) + ": " + std::string(what) + " has " +
                                count(nodes) + " nodes, over the limit of " + Num(kMaxNodes));
  }
  if (edges > kMaxEdges) {
    return InvalidArgumentError(std::string(param) + ": " + std::string(what) + " has " +
                                count(edges) + " links, over the limit of " + Num(kMaxEdges));
  }
  return Status::Ok();
}

Status AtLeast(std::string_view param, uint32_t value, uint32_t min, std::string_view model) {
  if (value >= min) return Status::Ok();
  std::string msg = std::string(param) + ": must be at least " + Num(uint64_t{min});
  if (!model.empty()) msg += " for " + std::string(model);
  msg += " (got " + std::string(param) + "=" + Num(uint64_t{value}) + ")";
  return InvalidArgumentError(std::move(msg));
}

Status InUnitInterval(std::string_view param, double value) {
  if (value > 0 && value <= 1) return Status::Ok();  // also rejects NaN
  return InvalidArgumentError(std::string(param) + ": must be in (0, 1] (got " +
                              std::string(param) + "=" + Num(value) + ")");
}

// An empty graph of `n` nodes named "0".."n-1" with role `role`.
GeneratedGraph Blank(uint32_t n, NodeRole role, uint64_t edges_hint) {
  GeneratedGraph g;
  g.num_nodes = n;
  g.roles.assign(n, role);
  g.names.reserve(n);
  for (uint32_t i = 0; i < n; ++i) g.names.push_back(std::to_string(i));
  g.edges.reserve(static_cast<size_t>(edges_hint));
  return g;
}

void AddEdge(GeneratedGraph& g, uint32_t u, uint32_t v) {
  g.edges.emplace_back(std::min(u, v), std::max(u, v));
}

// Union-find with path halving and union by size.
class DisjointSets {
 public:
  explicit DisjointSets(uint32_t n) : parent_(n), size_(n, 1) {
    std::iota(parent_.begin(), parent_.end(), 0u);
  }
  uint32_t Find(uint32_t x) {
    while (parent_[x] != x) {
      parent_[x] = parent_[parent_[x]];
      x = parent_[x];
    }
    return x;
  }
  bool Union(uint32_t a, uint32_t b) {
    a = Find(a);
    b = Find(b);
    if (a == b) return false;
    if (size_[a] < size_[b]) std::swap(a, b);
    parent_[b] = a;
    size_[a] += size_[b];
    return true;
  }

 private:
  std::vector<uint32_t> parent_;
  std::vector<uint32_t> size_;
};

double Distance(const std::pair<double, double>& p, const std::pair<double, double>& q) {
  const double dx = p.first - q.first;
  const double dy = p.second - q.second;
  return std::sqrt(dx * dx + dy * dy);
}

// Waxman's edge probability (B. M. Waxman, "Routing of multipoint
// connections", IEEE JSAC 6(9), 1988): P(u,v) = beta * exp(-d / (alpha * L)),
// d the Euclidean distance and L the largest possible distance, sqrt(2) in
// the unit square.
double WaxmanProbability(double d, double alpha, double beta) {
  constexpr double kL = 1.4142135623730951;  // sqrt(2)
  return beta * std::exp(-d / (alpha * kL));
}

// Joins the components of the graph on nodes [first, first+count) so that it
// becomes connected. Components are taken in the order of their lowest node;
// each one after the first is joined by one edge from its lowest node to the
// nearest node (Euclidean, lower id on ties) of the part already joined. This
// adds exactly (components - 1) edges, each between nodes that are close, so
// it keeps the geometric flavour of the model.
void ConnectComponents(GeneratedGraph& g, uint32_t first, uint32_t count,
                       const std::vector<std::pair<double, double>>& pos, size_t edges_from) {
  DisjointSets ds(count);
  for (size_t i = edges_from; i < g.edges.size(); ++i) {
    ds.Union(g.edges[i].first - first, g.edges[i].second - first);
  }
  // Members of each component, listed under its root, in ascending node order.
  std::vector<std::vector<uint32_t>> members(count);
  std::vector<uint32_t> order;  // roots by lowest member
  for (uint32_t i = 0; i < count; ++i) {
    const uint32_t r = ds.Find(i);
    if (members[r].empty()) order.push_back(r);
    members[r].push_back(i);
  }
  if (order.size() <= 1) return;
  std::vector<uint32_t> joined = std::move(members[order[0]]);
  for (size_t k = 1; k < order.size(); ++k) {
    std::vector<uint32_t>& comp = members[order[k]];
    const uint32_t x = comp.front();
    uint32_t best = joined.front();
    double best_d = std::numeric_limits<double>::infinity();
    for (uint32_t y : joined) {
      const double d = Distance(pos[x], pos[y]);
      if (d < best_d || (d == best_d && y < best)) {
        best_d = d;
        best = y;
      }
    }
    AddEdge(g, first + x, first + best);
    joined.insert(joined.end(), comp.begin(), comp.end());
  }
}

Result<GeneratedGraph> Line(const GraphSpec& s) {
  GRIDEMU_RETURN_IF_ERROR(AtLeast("n", s.n, 2, "a line"));
  GRIDEMU_RETURN_IF_ERROR(CheckSize("n", "this line", s.n, s.n - 1));
  GeneratedGraph g = Blank(s.n, NodeRole::kAny, s.n - 1);
  for (uint32_t i = 0; i + 1 < s.n; ++i) AddEdge(g, i, i + 1);
  return g;
}

Result<GeneratedGraph> Ring(const GraphSpec& s) {
  GRIDEMU_RETURN_IF_ERROR(AtLeast("n", s.n, 3, "a ring"));
  GRIDEMU_RETURN_IF_ERROR(CheckSize("n", "this ring", s.n, s.n));
  GeneratedGraph g = Blank(s.n, NodeRole::kAny, s.n);
  for (uint32_t i = 0; i + 1 < s.n; ++i) AddEdge(g, i, i + 1);
  AddEdge(g, 0, s.n - 1);
  return g;
}

Result<GeneratedGraph> Star(const GraphSpec& s) {
  GRIDEMU_RETURN_IF_ERROR(AtLeast("n", s.n, 2, "a star"));
  GRIDEMU_RETURN_IF_ERROR(CheckSize("n", "this star", s.n, s.n - 1));
  GeneratedGraph g = Blank(s.n, NodeRole::kEdge, s.n - 1);
  g.roles[0] = NodeRole::kCore;
  for (uint32_t i = 1; i < s.n; ++i) AddEdge(g, 0, i);
  return g;
}

// Complete tree numbered breadth-first: the children of node i are
// fanout*i + 1 .. fanout*i + fanout.
Result<GeneratedGraph> Tree(const GraphSpec& s) {
  GRIDEMU_RETURN_IF_ERROR(AtLeast("fanout", s.fanout, 1, ""));
  GRIDEMU_RETURN_IF_ERROR(AtLeast("depth", s.depth, 1, ""));
  uint64_t nodes = 1, level = 1, inner = 0;
  // Stops early only once the count saturates (after at most 64 levels when
  // fanout >= 2); a fanout of 1 is a path of depth+1 nodes.
  const uint32_t levels = s.fanout == 1 ? std::min<uint32_t>(s.depth, kMaxNodes) : s.depth;
  for (uint32_t d = 0; d < levels && nodes != std::numeric_limits<uint64_t>::max(); ++d) {
    inner = nodes;
    level = SatMul(level, s.fanout);
    nodes = SatAdd(nodes, level);
  }
  if (s.fanout == 1 && s.depth >= kMaxNodes) nodes = uint64_t{s.depth} + 1;
  GRIDEMU_RETURN_IF_ERROR(CheckSize(
      "depth",
      "a tree of fanout " + Num(uint64_t{s.fanout}) + " and depth " + Num(uint64_t{s.depth}), nodes,
      nodes - 1));
  const auto n = static_cast<uint32_t>(nodes);
  GeneratedGraph g = Blank(n, NodeRole::kEdge, n - 1);
  for (uint64_t i = 0; i < inner; ++i) g.roles[i] = NodeRole::kCore;
  for (uint32_t v = 1; v < n; ++v) AddEdge(g, (v - 1) / s.fanout, v);
  return g;
}

Result<GeneratedGraph> Lattice(const GraphSpec& s, bool wrap) {
  const uint32_t min = wrap ? 3 : 1;
  const std::string_view model = wrap ? "a torus" : "";
  GRIDEMU_RETURN_IF_ERROR(AtLeast("rows", s.rows, min, model));
  GRIDEMU_RETURN_IF_ERROR(AtLeast("cols", s.cols, min, model));
  const uint64_t r = s.rows, c = s.cols;
  const uint64_t nodes = r * c;
  if (nodes < 2) {
    return InvalidArgumentError("rows, cols: a grid needs at least 2 nodes (got rows=1, cols=1)");
  }
  const uint64_t edges = wrap ? SatMul(2, nodes) : r * (c - 1) + c * (r - 1);
  GRIDEMU_RETURN_IF_ERROR(CheckSize("rows", wrap ? "this torus" : "this grid", nodes, edges));
  GeneratedGraph g = Blank(static_cast<uint32_t>(nodes), NodeRole::kAny, edges);
  auto id = [&](uint64_t i, uint64_t j) { return static_cast<uint32_t>(i * c + j); };
  for (uint64_t i = 0; i < r; ++i) {
    for (uint64_t j = 0; j < c; ++j) {
      if (j + 1 < c) {
        AddEdge(g, id(i, j), id(i, j + 1));
      } else if (wrap) {
        AddEdge(g, id(i, j), id(i, 0));
      }
      if (i + 1 < r) {
        AddEdge(g, id(i, j), id(i + 1, j));
      } else if (wrap) {
        AddEdge(g, id(i, j), id(0, j));
      }
    }
  }
  return g;
}

Result<GeneratedGraph> FullMesh(const GraphSpec& s) {
  GRIDEMU_RETURN_IF_ERROR(AtLeast("n", s.n, 2, "a full-mesh"));
  const uint64_t n = s.n;
  const uint64_t edges = n * (n - 1) / 2;
  GRIDEMU_RETURN_IF_ERROR(CheckSize("n", "a full-mesh of " + Num(n) + " nodes", n, edges));
  GeneratedGraph g = Blank(s.n, NodeRole::kAny, edges);
  for (uint32_t u = 0; u < s.n; ++u) {
    for (uint32_t v = u + 1; v < s.n; ++v) AddEdge(g, u, v);
  }
  return g;
}

// Nodes: l0..l(n-1) = 0..n-1, r0..r(n-1) = n..2n-1, rl = 2n, rr = 2n+1.
// Edges: the bottleneck rl--rr first, then each host to its side's router.
Result<GeneratedGraph> Dumbbell(const GraphSpec& s) {
  GRIDEMU_RETURN_IF_ERROR(AtLeast("n", s.n, 1, "a dumbbell"));
  const uint64_t nodes = 2 * uint64_t{s.n} + 2;
  GRIDEMU_RETURN_IF_ERROR(CheckSize("n", "this dumbbell", nodes, nodes - 1));
  const uint32_t n = s.n;
  GeneratedGraph g;
  g.num_nodes = static_cast<uint32_t>(nodes);
  g.roles.assign(g.num_nodes, NodeRole::kEdge);
  g.roles[2 * n] = g.roles[2 * n + 1] = NodeRole::kCore;
  g.names.reserve(g.num_nodes);
  for (uint32_t i = 0; i < n; ++i) g.names.push_back("l" + std::to_string(i));
  for (uint32_t i = 0; i < n; ++i) g.names.push_back("r" + std::to_string(i));
  g.names.push_back("rl");
  g.names.push_back("rr");
  g.edges.reserve(g.num_nodes - 1);
  AddEdge(g, 2 * n, 2 * n + 1);
  for (uint32_t i = 0; i < n; ++i) AddEdge(g, i, 2 * n);
  for (uint32_t i = 0; i < n; ++i) AddEdge(g, n + i, 2 * n + 1);
  return g;
}

// Waxman 1988: n points uniform in the unit square; each pair (u < v, in
// lexicographic order) is linked with probability beta*exp(-d/(alpha*L)),
// L = sqrt(2). The result is then made connected by ConnectComponents().
Result<GeneratedGraph> Waxman(const GraphSpec& s, uint64_t seed) {
  GRIDEMU_RETURN_IF_ERROR(AtLeast("n", s.n, 2, "a waxman graph"));
  if (s.n > kMaxWaxmanNodes) {
    return InvalidArgumentError("n: waxman tests every pair of nodes; at most " +
                                Num(uint64_t{kMaxWaxmanNodes}) +
                                " nodes (got n=" + Num(uint64_t{s.n}) + ")");
  }
  GRIDEMU_RETURN_IF_ERROR(InUnitInterval("alpha", s.alpha));
  GRIDEMU_RETURN_IF_ERROR(InUnitInterval("beta", s.beta));
  Rng rng = Rng::ForStream(seed, "waxman");
  GeneratedGraph g = Blank(s.n, NodeRole::kAny, 0);
  g.positions.reserve(s.n);
  for (uint32_t i = 0; i < s.n; ++i) {
    const double x = rng.Uniform01();
    const double y = rng.Uniform01();
    g.positions.emplace_back(x, y);
  }
  for (uint32_t u = 0; u < s.n; ++u) {
    for (uint32_t v = u + 1; v < s.n; ++v) {
      const double p = WaxmanProbability(Distance(g.positions[u], g.positions[v]), s.alpha, s.beta);
      if (rng.Uniform01() < p) {
        g.edges.emplace_back(u, v);
        if (g.edges.size() > kMaxEdges) {
          return InvalidArgumentError("beta: this waxman graph has more than " + Num(kMaxEdges) +
                                      " links; lower beta, alpha or n");
        }
      }
    }
  }
  ConnectComponents(g, 0, s.n, g.positions, 0);
  return g;
}

// Barabási & Albert, "Emergence of scaling in random networks", Science 286,
// 1999. Seed: a clique of m+1 nodes (0..m), so every seed node starts with
// degree m like the nodes added later. Each new node v = m+1..n-1 attaches to
// m distinct existing nodes, each chosen with probability proportional to its
// degree. Degree-proportional choice uses the repeated-nodes list (Batagelj &
// Brandes, "Efficient generation of large random networks", Phys. Rev. E 71,
// 2005): every edge end is appended to one array, so a uniform pick from it is
// a degree-proportional pick of a node. A pick already chosen for v is drawn
// again. O(n m) time and memory.
Result<GeneratedGraph> BarabasiAlbert(const GraphSpec& s, uint64_t seed) {
  GRIDEMU_RETURN_IF_ERROR(AtLeast("m", s.m, 1, ""));
  if (s.m >= s.n) {
    return InvalidArgumentError("m: must be below n (got m=" + Num(uint64_t{s.m}) +
                                ", n=" + Num(uint64_t{s.n}) + ")");
  }
  const uint64_t m = s.m;
  const uint64_t edges = SatAdd(m * (m + 1) / 2, SatMul(uint64_t{s.n} - m - 1, m));
  GRIDEMU_RETURN_IF_ERROR(CheckSize("n", "this barabasi-albert graph", s.n, edges));
  Rng rng = Rng::ForStream(seed, "barabasi-albert");
  GeneratedGraph g = Blank(s.n, NodeRole::kAny, edges);
  std::vector<uint32_t> ends;  // the repeated-nodes list
  ends.reserve(2 * edges);
  for (uint32_t u = 0; u <= s.m; ++u) {
    for (uint32_t v = u + 1; v <= s.m; ++v) {
      g.edges.emplace_back(u, v);
      ends.push_back(u);
      ends.push_back(v);
    }
  }
  // chosen_by[t] == v when t is already a target of v (no per-node clearing).
  std::vector<uint32_t> chosen_by(s.n, std::numeric_limits<uint32_t>::max());
  std::vector<uint32_t> targets;
  targets.reserve(s.m);
  for (uint32_t v = s.m + 1; v < s.n; ++v) {
    targets.clear();
    while (targets.size() < s.m) {
      const uint32_t t = ends[rng.Below(ends.size())];
      if (chosen_by[t] == v) continue;
      chosen_by[t] = v;
      targets.push_back(t);
    }
    for (uint32_t t : targets) {
      g.edges.emplace_back(t, v);
      ends.push_back(t);
      ends.push_back(v);
    }
  }
  return g;
}

// Transit-stub after GT-ITM (Zegura, Calvert & Bhattacharjee, "How to model
// an internetwork", INFOCOM 1996; Calvert, Doar & Zegura, IEEE Commun. Mag.
// 1997): a two-level hierarchy of transit domains and stub domains.
//  - Transit domain d has routers t<d>-0 .. t<d>-(N-1), placed uniformly in the
//    unit square, joined in a ring (a path for 2 routers) so the domain is
//    connected, plus Waxman edges (spec alpha, beta) between the other pairs.
//  - Domains are joined in a ring (one edge for two domains): domain d and
//    d+1 (mod D) are linked by one edge between routers chosen uniformly.
//  - Every transit router t<d>-<i> has `stubs_per_transit` stub domains; stub
//    j's node s<d>-<i>-<j>-0 is its gateway, linked to the transit router, and
//    the other stub nodes s<d>-<i>-<j>-<k> are linked to the gateway (a star,
//    connected by construction). The gateway of a stub with more than one node
//    forwards (kCore); the other stub nodes are end systems (kEdge), so a
//    stub node reaches everything through its gateway even when end systems
//    become hosts that do not forward.
// Node numbering: transit routers first (domain-major), then stub nodes in
// the order (d, i, j, k).
Result<GeneratedGraph> TransitStub(const GraphSpec& s, uint64_t seed) {
  GRIDEMU_RETURN_IF_ERROR(AtLeast("transit_domains", s.transit_domains, 1, ""));
  GRIDEMU_RETURN_IF_ERROR(AtLeast("transit_nodes", s.transit_nodes, 1, ""));
  if (s.stubs_per_transit > 0) {
    GRIDEMU_RETURN_IF_ERROR(AtLeast("stub_nodes", s.stub_nodes, 1, ""));
  }
  GRIDEMU_RETURN_IF_ERROR(InUnitInterval("alpha", s.alpha));
  GRIDEMU_RETURN_IF_ERROR(InUnitInterval("beta", s.beta));
  const uint64_t transit = SatMul(s.transit_domains, s.transit_nodes);
  const uint64_t stubs = SatMul(transit, s.stubs_per_transit);
  const uint64_t stub_total = SatMul(stubs, s.stub_nodes);
  const uint64_t nodes = SatAdd(transit, stub_total);
  if (nodes < 2) {
    return InvalidArgumentError(
        "transit_nodes: a transit-stub graph needs at least 2 nodes (got transit_domains=1, "
        "transit_nodes=1, stubs_per_transit=0)");
  }
  // Upper bound on links: every pair inside each transit domain, the domain
  // ring, and one link per stub node.
  const uint64_t per_domain = uint64_t{s.transit_nodes} * (uint64_t{s.transit_nodes} - 1) / 2;
  const uint64_t bound =
      SatAdd(SatAdd(SatMul(s.transit_domains, per_domain), s.transit_domains), stub_total);
  GRIDEMU_RETURN_IF_ERROR(CheckSize("stub_nodes", "this transit-stub graph", nodes, 0));
  if (bound > kMaxEdges) {
    return InvalidArgumentError("transit_nodes: this transit-stub graph may have up to " +
                                Num(bound) + " links, over the limit of " + Num(kMaxEdges));
  }

  Rng rng = Rng::ForStream(seed, "transit-stub");
  const uint32_t nd = s.transit_domains, nt = s.transit_nodes;
  GeneratedGraph g;
  g.num_nodes = static_cast<uint32_t>(nodes);
  g.roles.reserve(g.num_nodes);
  g.names.reserve(g.num_nodes);
  for (uint32_t d = 0; d < nd; ++d) {
    for (uint32_t i = 0; i < nt; ++i) {
      g.roles.push_back(NodeRole::kCore);
      g.names.push_back("t" + std::to_string(d) + "-" + std::to_string(i));
    }
  }
  auto router = [&](uint32_t d, uint32_t i) { return d * nt + i; };

  // Inside each transit domain: ring + Waxman edges.
  std::vector<std::pair<double, double>> pos(nt);
  for (uint32_t d = 0; d < nd; ++d) {
    for (auto& p : pos) {
      p.first = rng.Uniform01();
      p.second = rng.Uniform01();
    }
    for (uint32_t i = 0; i + 1 < nt; ++i) AddEdge(g, router(d, i), router(d, i + 1));
    if (nt >= 3) AddEdge(g, router(d, 0), router(d, nt - 1));
    for (uint32_t i = 0; i < nt; ++i) {
      for (uint32_t j = i + 2; j < nt; ++j) {
        if (i == 0 && j == nt - 1) continue;  // ring edge
        const double p = WaxmanProbability(Distance(pos[i], pos[j]), s.alpha, s.beta);
        if (rng.Uniform01() < p) AddEdge(g, router(d, i), router(d, j));
      }
    }
  }
  // Between transit domains: a ring of domains.
  if (nd >= 2) {
    const uint32_t ring_edges = nd == 2 ? 1 : nd;
    for (uint32_t d = 0; d < ring_edges; ++d) {
      const uint32_t a = static_cast<uint32_t>(rng.Below(nt));
      const uint32_t b = static_cast<uint32_t>(rng.Below(nt));
      AddEdge(g, router(d, a), router((d + 1) % nd, b));
    }
  }
  // Stub domains.
  const NodeRole gateway_role = s.stub_nodes > 1 ? NodeRole::kCore : NodeRole::kEdge;
  for (uint32_t d = 0; d < nd; ++d) {
    for (uint32_t i = 0; i < nt; ++i) {
      for (uint32_t j = 0; j < s.stubs_per_transit; ++j) {
        const auto gateway = static_cast<uint32_t>(g.names.size());
        const std::string stem =
            "s" + std::to_string(d) + "-" + std::to_string(i) + "-" + std::to_string(j) + "-";
        for (uint32_t k = 0; k < s.stub_nodes; ++k) {
          g.roles.push_back(k == 0 ? gateway_role : NodeRole::kEdge);
          g.names.push_back(stem + std::to_string(k));
          AddEdge(g, gateway + k, k == 0 ? router(d, i) : gateway);
        }
      }
    }
  }
  return g;
}

}  // namespace

std::string_view GraphModelName(GraphModel m) {
  for (const auto& [model, name] : kModelNames) {
    if (model == m) return name;
  }
  return "line";
}

Result<GraphModel> ParseGraphModel(std::string_view s) {
  std::string choices;
  for (const auto& [model, name] : kModelNames) {
    if (name == s) return model;
    if (!choices.empty()) choices += ", ";
    choices += name;
  }
  return InvalidArgumentError("unknown graph model '" + std::string(s) + "'; expected one of " +
                              choices);
}

Result<GeneratedGraph> Generate(const GraphSpec& spec, uint64_t seed) {
  switch (spec.model) {
    case GraphModel::kLine:
      return Line(spec);
    case GraphModel::kRing:
      return Ring(spec);
    case GraphModel::kStar:
      return Star(spec);
    case GraphModel::kTree:
      return Tree(spec);
    case GraphModel::kGrid:
      return Lattice(spec, /*wrap=*/false);
    case GraphModel::kTorus:
      return Lattice(spec, /*wrap=*/true);
    case GraphModel::kFullMesh:
      return FullMesh(spec);
    case GraphModel::kDumbbell:
      return Dumbbell(spec);
    case GraphModel::kWaxman:
      return Waxman(spec, seed);
    case GraphModel::kBarabasiAlbert:
      return BarabasiAlbert(spec, seed);
    case GraphModel::kTransitStub:
      return TransitStub(spec, seed);
  }
  return InvalidArgumentError("model: unknown graph model");
}

}  // namespace gridemu::topology

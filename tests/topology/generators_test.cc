#include "gridemu/topology/generators.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <set>
#include <string>
#include <vector>

#include "gridemu/common/random.h"

namespace gridemu::topology {
namespace {

using ::testing::ElementsAre;

GeneratedGraph Gen(const GraphSpec& spec, uint64_t seed = 1) {
  auto r = Generate(spec, seed);
  EXPECT_TRUE(r.ok()) << r.status().ToString();
  return r.ok() ? *r : GeneratedGraph{};
}

std::string ErrorOf(const GraphSpec& spec) {
  auto r = Generate(spec, 1);
  if (r.ok()) return "ok";
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  return r.status().message();
}

// Invariants every generator promises: u < v, in range, no duplicates, one
// role and one unique name per node.
void ExpectWellFormed(const GeneratedGraph& g) {
  ASSERT_EQ(g.roles.size(), g.num_nodes);
  ASSERT_EQ(g.names.size(), g.num_nodes);
  std::set<std::pair<uint32_t, uint32_t>> seen;
  for (const auto& [u, v] : g.edges) {
    ASSERT_LT(u, v);
    ASSERT_LT(v, g.num_nodes);
    ASSERT_TRUE(seen.insert({u, v}).second) << "duplicate edge " << u << "-" << v;
  }
  std::set<std::string> names(g.names.begin(), g.names.end());
  EXPECT_EQ(names.size(), g.num_nodes) << "names are not unique";
}

std::vector<size_t> Degrees(const GeneratedGraph& g) {
  std::vector<size_t> deg(g.num_nodes, 0);
  for (const auto& [u, v] : g.edges) ++deg[u], ++deg[v];
  return deg;
}

// Connected components by union-find (written independently of the generators').
size_t Components(const GeneratedGraph& g) {
  std::vector<uint32_t> parent(g.num_nodes);
  for (uint32_t i = 0; i < g.num_nodes; ++i) parent[i] = i;
  auto find = [&](uint32_t x) {
    while (parent[x] != x) x = parent[x] = parent[parent[x]];
    return x;
  };
  size_t count = g.num_nodes;
  for (const auto& [u, v] : g.edges) {
    const uint32_t a = find(u), b = find(v);
    if (a != b) {
      parent[a] = b;
      --count;
    }
  }
  return count;
}

GraphSpec Spec(GraphModel m) {
  GraphSpec s;
  s.model = m;
  return s;
}

TEST(GraphModelNames, RoundTrip) {
  const std::vector<std::string> expected = {
      "line",        "ring",      "star",     "tree",   "grid",
      "torus",       "full-mesh", "dumbbell", "waxman", "barabasi-albert",
      "transit-stub"};
  std::vector<std::string> names;
  for (int i = 0; i <= static_cast<int>(GraphModel::kTransitStub); ++i) {
    const auto m = static_cast<GraphModel>(i);
    names.emplace_back(GraphModelName(m));
    auto parsed = ParseGraphModel(GraphModelName(m));
    ASSERT_TRUE(parsed.ok());
    EXPECT_EQ(*parsed, m);
  }
  EXPECT_EQ(names, expected);
}

TEST(GraphModelNames, UnknownNameListsChoices) {
  auto r = ParseGraphModel("mesh");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(r.status().message(),
            "unknown graph model 'mesh'; expected one of line, ring, star, tree, grid, torus, "
            "full-mesh, dumbbell, waxman, barabasi-albert, transit-stub");
}

TEST(Generate, Line) {
  GraphSpec s = Spec(GraphModel::kLine);
  s.n = 5;
  GeneratedGraph g = Gen(s);
  ExpectWellFormed(g);
  EXPECT_EQ(g.num_nodes, 5u);
  EXPECT_THAT(g.edges, ElementsAre(std::pair<uint32_t, uint32_t>{0, 1}, std::pair{1u, 2u},
                                   std::pair{2u, 3u}, std::pair{3u, 4u}));
  EXPECT_THAT(g.names, ElementsAre("0", "1", "2", "3", "4"));
  for (NodeRole r : g.roles) EXPECT_EQ(r, NodeRole::kAny);
  EXPECT_TRUE(g.positions.empty());
}

TEST(Generate, Ring) {
  GraphSpec s = Spec(GraphModel::kRing);
  s.n = 7;
  GeneratedGraph g = Gen(s);
  ExpectWellFormed(g);
  EXPECT_EQ(g.edges.size(), 7u);
  for (size_t d : Degrees(g)) EXPECT_EQ(d, 2u);
  EXPECT_EQ(Components(g), 1u);
}

TEST(Generate, Star) {
  GraphSpec s = Spec(GraphModel::kStar);
  s.n = 9;
  GeneratedGraph g = Gen(s);
  ExpectWellFormed(g);
  EXPECT_EQ(g.edges.size(), 8u);
  EXPECT_EQ(Degrees(g)[0], 8u);
  EXPECT_EQ(g.roles[0], NodeRole::kCore);
  for (uint32_t i = 1; i < 9; ++i) {
    EXPECT_EQ(g.roles[i], NodeRole::kEdge);
    EXPECT_EQ(Degrees(g)[i], 1u);
  }
}

TEST(Generate, Tree) {
  GraphSpec s = Spec(GraphModel::kTree);
  s.fanout = 3;
  s.depth = 3;
  GeneratedGraph g = Gen(s);
  ExpectWellFormed(g);
  EXPECT_EQ(g.num_nodes, 1u + 3 + 9 + 27);
  EXPECT_EQ(g.edges.size(), g.num_nodes - 1);
  EXPECT_EQ(Components(g), 1u);
  const auto deg = Degrees(g);
  EXPECT_EQ(deg[0], 3u);
  size_t core = 0, leaves = 0;
  for (uint32_t i = 0; i < g.num_nodes; ++i) {
    if (g.roles[i] == NodeRole::kCore) {
      ++core;
      EXPECT_EQ(deg[i], i == 0 ? 3u : 4u);
    } else {
      ++leaves;
      EXPECT_EQ(deg[i], 1u);
    }
  }
  EXPECT_EQ(core, 13u);
  EXPECT_EQ(leaves, 27u);

  s.fanout = 1;
  s.depth = 4;  // a path of 5
  g = Gen(s);
  EXPECT_EQ(g.num_nodes, 5u);
  EXPECT_EQ(g.edges.size(), 4u);
  EXPECT_EQ(g.roles.back(), NodeRole::kEdge);
}

TEST(Generate, Grid) {
  GraphSpec s = Spec(GraphModel::kGrid);
  s.rows = 4;
  s.cols = 5;
  GeneratedGraph g = Gen(s);
  ExpectWellFormed(g);
  EXPECT_EQ(g.num_nodes, 20u);
  EXPECT_EQ(g.edges.size(), 4u * (5 - 1) + 5u * (4 - 1));
  const auto deg = Degrees(g);
  EXPECT_EQ(deg[0], 2u);          // corner
  EXPECT_EQ(deg[1], 3u);          // border
  EXPECT_EQ(deg[1 * 5 + 1], 4u);  // inside
  EXPECT_EQ(Components(g), 1u);

  s.rows = 1;  // a 1 x n grid is a line
  s.cols = 6;
  EXPECT_EQ(Gen(s).edges.size(), 5u);
}

TEST(Generate, Torus) {
  GraphSpec s = Spec(GraphModel::kTorus);
  s.rows = 4;
  s.cols = 5;
  GeneratedGraph g = Gen(s);
  ExpectWellFormed(g);
  EXPECT_EQ(g.edges.size(), 2u * 4 * 5);
  for (size_t d : Degrees(g)) EXPECT_EQ(d, 4u);
  s.rows = s.cols = 3;
  g = Gen(s);
  ExpectWellFormed(g);
  EXPECT_EQ(g.edges.size(), 18u);
}

TEST(Generate, FullMesh) {
  GraphSpec s = Spec(GraphModel::kFullMesh);
  s.n = 12;
  GeneratedGraph g = Gen(s);
  ExpectWellFormed(g);
  EXPECT_EQ(g.edges.size(), 12u * 11 / 2);
  for (size_t d : Degrees(g)) EXPECT_EQ(d, 11u);
}

TEST(Generate, Dumbbell) {
  GraphSpec s = Spec(GraphModel::kDumbbell);
  s.n = 3;
  GeneratedGraph g = Gen(s);
  ExpectWellFormed(g);
  EXPECT_EQ(g.num_nodes, 8u);
  EXPECT_EQ(g.edges.size(), 7u);
  EXPECT_THAT(g.names, ElementsAre("l0", "l1", "l2", "r0", "r1", "r2", "rl", "rr"));
  EXPECT_THAT(g.roles,
              ElementsAre(NodeRole::kEdge, NodeRole::kEdge, NodeRole::kEdge, NodeRole::kEdge,
                          NodeRole::kEdge, NodeRole::kEdge, NodeRole::kCore, NodeRole::kCore));
  std::set<std::pair<uint32_t, uint32_t>> edges(g.edges.begin(), g.edges.end());
  EXPECT_TRUE(edges.count({6, 7}));  // the bottleneck
  for (uint32_t i = 0; i < 3; ++i) {
    EXPECT_TRUE(edges.count({i, 6})) << "l" << i << " -- rl";
    EXPECT_TRUE(edges.count({3 + i, 7})) << "r" << i << " -- rr";
  }
}

TEST(Generate, DeterministicModelsIgnoreTheSeed) {
  GraphSpec s = Spec(GraphModel::kTree);
  auto a = Gen(s, 1), b = Gen(s, 999);
  EXPECT_EQ(a.edges, b.edges);
  EXPECT_EQ(a.names, b.names);
}

// Every model, at a few sizes and seeds, gives a connected well-formed graph.
TEST(Generate, EveryModelIsConnected) {
  std::vector<GraphSpec> specs;
  for (uint32_t n : {2u, 3u, 10u, 101u}) {
    for (auto m : {GraphModel::kLine, GraphModel::kStar, GraphModel::kFullMesh,
                   GraphModel::kDumbbell, GraphModel::kWaxman, GraphModel::kBarabasiAlbert}) {
      GraphSpec s = Spec(m);
      s.n = n;
      s.m = std::min<uint32_t>(2, n - 1);
      specs.push_back(s);
    }
    if (n >= 3) {
      GraphSpec s = Spec(GraphModel::kRing);
      s.n = n;
      specs.push_back(s);
    }
  }
  for (uint32_t depth : {1u, 4u}) {
    GraphSpec s = Spec(GraphModel::kTree);
    s.depth = depth;
    specs.push_back(s);
  }
  for (auto m : {GraphModel::kGrid, GraphModel::kTorus}) {
    GraphSpec s = Spec(m);
    s.rows = 3;
    s.cols = 7;
    specs.push_back(s);
  }
  {
    GraphSpec s = Spec(GraphModel::kWaxman);  // sparse: most of it comes from the repair
    s.n = 300;
    s.alpha = 0.05;
    s.beta = 0.05;
    specs.push_back(s);
  }
  for (uint32_t domains : {1u, 2u, 3u, 5u}) {
    GraphSpec s = Spec(GraphModel::kTransitStub);
    s.transit_domains = domains;
    s.transit_nodes = domains == 5 ? 1 : 6;
    specs.push_back(s);
  }
  for (const GraphSpec& s : specs) {
    for (uint64_t seed : {1, 2, 3}) {
      SCOPED_TRACE(std::string(GraphModelName(s.model)) + " n=" + std::to_string(s.n) +
                   " seed=" + std::to_string(seed));
      GeneratedGraph g = Gen(s, seed);
      ExpectWellFormed(g);
      EXPECT_EQ(Components(g), 1u);
    }
  }
}

TEST(Waxman, PositionsAndGeometry) {
  GraphSpec s = Spec(GraphModel::kWaxman);
  s.n = 400;
  s.alpha = 0.1;
  s.beta = 1.0;
  GeneratedGraph g = Gen(s, 7);
  ExpectWellFormed(g);
  ASSERT_EQ(g.positions.size(), 400u);
  for (const auto& [x, y] : g.positions) {
    EXPECT_GE(x, 0);
    EXPECT_LT(x, 1);
    EXPECT_GE(y, 0);
    EXPECT_LT(y, 1);
  }
  auto dist = [&](uint32_t u, uint32_t v) {
    return std::hypot(g.positions[u].first - g.positions[v].first,
                      g.positions[u].second - g.positions[v].second);
  };
  // With a small alpha, links are short: P(d) falls off as exp(-d/(0.1 sqrt 2)).
  // The mean distance of two random points in the unit square is ~0.52.
  double edge_len = 0;
  for (const auto& [u, v] : g.edges) edge_len += dist(u, v);
  edge_len /= static_cast<double>(g.edges.size());
  EXPECT_LT(edge_len, 0.25);
  double pair_len = 0;
  size_t pairs = 0;
  for (uint32_t u = 0; u < 400; u += 7) {
    for (uint32_t v = u + 1; v < 400; v += 5) pair_len += dist(u, v), ++pairs;
  }
  EXPECT_GT(pair_len / static_cast<double>(pairs), 0.45);
  // Expected edge count: sum over pairs of beta exp(-d/(alpha L)).
  double expected = 0;
  for (uint32_t u = 0; u < 400; ++u) {
    for (uint32_t v = u + 1; v < 400; ++v) expected += std::exp(-dist(u, v) / (0.1 * std::sqrt(2)));
  }
  EXPECT_NEAR(static_cast<double>(g.edges.size()), expected, 5 * std::sqrt(expected) + 10);
}

TEST(BarabasiAlbert, EdgeCountAndAttachment) {
  GraphSpec s = Spec(GraphModel::kBarabasiAlbert);
  s.n = 1000;
  s.m = 3;
  GeneratedGraph g = Gen(s, 5);
  ExpectWellFormed(g);
  // Seed clique of m+1 nodes: m(m+1)/2 edges; then m edges per new node.
  EXPECT_EQ(g.edges.size(), 3u * 4 / 2 + (1000u - 3 - 1) * 3);
  // Each new node v has exactly m edges to older nodes.
  std::vector<size_t> older(g.num_nodes, 0);
  for (const auto& [u, v] : g.edges) ++older[v];
  for (uint32_t v = 4; v < g.num_nodes; ++v) ASSERT_EQ(older[v], 3u) << v;
  const auto deg = Degrees(g);
  EXPECT_GE(*std::min_element(deg.begin(), deg.end()), 3u);
  // The oldest nodes attract the most links.
  EXPECT_GT(deg[0] + deg[1] + deg[2] + deg[3], 4u * 20);
}

// Fraction of nodes with degree >= k.
double Ccdf(const std::vector<size_t>& deg, size_t k) {
  return static_cast<double>(
             std::count_if(deg.begin(), deg.end(), [k](size_t d) { return d >= k; })) /
         static_cast<double>(deg.size());
}

TEST(BarabasiAlbert, DegreeDistributionIsHeavyTailed) {
  GraphSpec s = Spec(GraphModel::kBarabasiAlbert);
  s.n = 10000;
  s.m = 2;
  GeneratedGraph g = Gen(s, 42);
  const auto deg = Degrees(g);
  const double mean = 2.0 * static_cast<double>(g.edges.size()) / s.n;
  EXPECT_NEAR(mean, 4.0, 0.01);
  const size_t max_deg = *std::max_element(deg.begin(), deg.end());
  EXPECT_GT(static_cast<double>(max_deg), 10 * mean);

  // An Erdős–Rényi G(n, p) graph with the same mean degree, for comparison.
  Rng rng(42);
  const double p = mean / (s.n - 1);
  std::vector<size_t> er(s.n, 0);
  // Geometric skipping over the pairs (Batagelj & Brandes 2005).
  const double log_q = std::log(1 - p);
  int64_t v = 1, w = -1;
  while (v < static_cast<int64_t>(s.n)) {
    w += 1 + static_cast<int64_t>(std::floor(std::log(1 - rng.Uniform01()) / log_q));
    while (w >= v && v < static_cast<int64_t>(s.n)) w -= v, ++v;
    if (v < static_cast<int64_t>(s.n)) ++er[v], ++er[w];
  }
  const size_t k = 5 * s.m;  // 10
  EXPECT_GT(Ccdf(deg, k), 3 * Ccdf(er, k)) << "BA " << Ccdf(deg, k) << " ER " << Ccdf(er, k);
  EXPECT_GT(Ccdf(deg, 4 * s.m), Ccdf(er, 4 * s.m));
  EXPECT_EQ(Ccdf(er, 30), 0.0);
  EXPECT_GT(Ccdf(deg, 30), 0.003);
  // Power law: the CCDF of BA falls as k^-2 (P(k) ~ k^-3); check the slope
  // between k = 8 and k = 32 on a log-log scale.
  const double slope = std::log(Ccdf(deg, 32) / Ccdf(deg, 8)) / std::log(4.0);
  EXPECT_GT(slope, -2.6);
  EXPECT_LT(slope, -1.4);
}

TEST(BarabasiAlbert, HundredThousandNodes) {
  GraphSpec s = Spec(GraphModel::kBarabasiAlbert);
  s.n = 100'000;
  s.m = 2;
  const auto t0 = std::chrono::steady_clock::now();
  auto r = Generate(s, 3);
  const double ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->edges.size(), 3u + (100'000u - 3) * 2);
  EXPECT_EQ(Components(*r), 1u);
  RecordProperty("generate_ms", std::to_string(ms));
  std::printf("barabasi-albert n=100000 m=2: %.1f ms\n", ms);
  // Generous bound (debug builds, loaded CI machines); the real figure is
  // tens of milliseconds and is measured by the benchmarks.
  EXPECT_LT(ms, 5000);
}

TEST(TransitStub, Structure) {
  GraphSpec s = Spec(GraphModel::kTransitStub);  // 2 domains x 4 routers, 2 stubs x 4 nodes each
  GeneratedGraph g = Gen(s, 11);
  ExpectWellFormed(g);
  ASSERT_EQ(g.num_nodes, 8u + 8 * 2 * 4);
  EXPECT_EQ(g.names[0], "t0-0");
  EXPECT_EQ(g.names[7], "t1-3");
  EXPECT_EQ(g.names[8], "s0-0-0-0");
  EXPECT_EQ(g.names.back(), "s1-3-1-3");
  for (uint32_t i = 0; i < 8; ++i) EXPECT_EQ(g.roles[i], NodeRole::kCore);
  // Stub gateways forward; the other stub nodes are end systems.
  for (uint32_t i = 8; i < g.num_nodes; ++i) {
    EXPECT_EQ(g.roles[i], (i - 8) % 4 == 0 ? NodeRole::kCore : NodeRole::kEdge) << g.names[i];
  }
  std::set<std::pair<uint32_t, uint32_t>> edges(g.edges.begin(), g.edges.end());
  // Each stub: gateway linked to its transit router, the rest to the gateway.
  for (uint32_t t = 0; t < 8; ++t) {
    for (uint32_t j = 0; j < 2; ++j) {
      const uint32_t gw = 8 + (t * 2 + j) * 4;
      EXPECT_TRUE(edges.count({t, gw})) << g.names[gw];
      for (uint32_t k = 1; k < 4; ++k) EXPECT_TRUE(edges.count({gw, gw + k}));
    }
  }
  EXPECT_EQ(g.edges.size() - 8 * 2 * 4, [&] {  // transit edges
    size_t n = 0;
    for (const auto& [u, v] : g.edges) n += v < 8;
    return n;
  }());
  // Transit part: each domain contains its ring (4 edges); exactly one edge
  // joins the two domains.
  size_t inter = 0;
  for (const auto& [u, v] : g.edges) {
    if (v < 8 && (u / 4) != (v / 4)) ++inter;
  }
  EXPECT_EQ(inter, 1u);
  for (uint32_t d = 0; d < 2; ++d) {
    for (uint32_t i = 0; i < 4; ++i) {
      const uint32_t a = d * 4 + i, b = d * 4 + (i + 1) % 4;
      EXPECT_TRUE(edges.count({std::min(a, b), std::max(a, b)}));
    }
  }
}

TEST(TransitStub, DomainsFormARing) {
  GraphSpec s = Spec(GraphModel::kTransitStub);
  s.transit_domains = 5;
  s.transit_nodes = 3;
  s.stubs_per_transit = 1;
  s.stub_nodes = 1;  // a one-node stub is an end system
  GeneratedGraph g = Gen(s, 2);
  ExpectWellFormed(g);
  EXPECT_EQ(g.num_nodes, 15u + 15u);
  std::set<std::pair<uint32_t, uint32_t>> domain_links;
  for (const auto& [u, v] : g.edges) {
    if (v < 15 && u / 3 != v / 3) domain_links.insert({u / 3, v / 3});
  }
  EXPECT_EQ(domain_links,
            (std::set<std::pair<uint32_t, uint32_t>>{{0, 1}, {1, 2}, {2, 3}, {3, 4}, {0, 4}}));
  for (uint32_t i = 15; i < 30; ++i) EXPECT_EQ(g.roles[i], NodeRole::kEdge);
}

TEST(RandomModels, SameSeedSameGraphOtherSeedOtherGraph) {
  GraphSpec ba = Spec(GraphModel::kBarabasiAlbert);
  ba.n = 500;
  GraphSpec wax = Spec(GraphModel::kWaxman);
  wax.n = 200;
  wax.beta = 0.3;
  GraphSpec ts = Spec(GraphModel::kTransitStub);
  ts.transit_domains = 4;
  ts.transit_nodes = 8;
  ts.beta = 0.6;
  for (const GraphSpec& s : {ba, wax, ts}) {
    SCOPED_TRACE(std::string(GraphModelName(s.model)));
    const GeneratedGraph a = Gen(s, 1234), b = Gen(s, 1234), c = Gen(s, 1235);
    EXPECT_EQ(a.num_nodes, b.num_nodes);
    EXPECT_EQ(a.edges, b.edges);
    EXPECT_EQ(a.names, b.names);
    EXPECT_EQ(a.roles, b.roles);
    EXPECT_EQ(a.positions, b.positions);
    EXPECT_NE(a.edges, c.edges);
  }
}

// A fixed graph for a fixed seed on every platform: Barabási–Albert uses only
// gridemu::Rng and integer arithmetic for its choices, so this list is the
// same everywhere (a change here changes every experiment that uses the model).
TEST(RandomModels, GoldenBarabasiAlbert) {
  GraphSpec s = Spec(GraphModel::kBarabasiAlbert);
  s.n = 8;
  s.m = 2;
  const std::vector<std::pair<uint32_t, uint32_t>> expected = {
      {0, 1}, {0, 2}, {1, 2},  // seed clique
      {1, 3}, {2, 3}, {3, 4}, {1, 4}, {3, 5}, {1, 5}, {4, 6}, {0, 6}, {6, 7}, {0, 7}};
  EXPECT_EQ(Gen(s, 42).edges, expected);
}

TEST(Generate, ParameterErrors) {
  GraphSpec s = Spec(GraphModel::kLine);
  s.n = 1;
  EXPECT_EQ(ErrorOf(s), "n: must be at least 2 for a line (got n=1)");
  s.model = GraphModel::kRing;
  s.n = 2;
  EXPECT_EQ(ErrorOf(s), "n: must be at least 3 for a ring (got n=2)");
  s.model = GraphModel::kStar;
  s.n = 0;
  EXPECT_EQ(ErrorOf(s), "n: must be at least 2 for a star (got n=0)");
  s.model = GraphModel::kFullMesh;
  s.n = 5000;
  EXPECT_EQ(ErrorOf(s),
            "n: a full-mesh of 5000 nodes has 12497500 links, over the limit of "
            "10000000");
  s.n = 4472;  // 9,997,156 links: just under the guard
  EXPECT_EQ(ErrorOf(s), "ok");
  s.model = GraphModel::kDumbbell;
  s.n = 0;
  EXPECT_EQ(ErrorOf(s), "n: must be at least 1 for a dumbbell (got n=0)");

  s = Spec(GraphModel::kBarabasiAlbert);
  s.n = 3;
  s.m = 5;
  EXPECT_EQ(ErrorOf(s), "m: must be below n (got m=5, n=3)");
  s.m = 3;
  EXPECT_EQ(ErrorOf(s), "m: must be below n (got m=3, n=3)");
  s.m = 0;
  EXPECT_EQ(ErrorOf(s), "m: must be at least 1 (got m=0)");

  s = Spec(GraphModel::kTree);
  s.fanout = 0;
  EXPECT_EQ(ErrorOf(s), "fanout: must be at least 1 (got fanout=0)");
  s.fanout = 2;
  s.depth = 0;
  EXPECT_EQ(ErrorOf(s), "depth: must be at least 1 (got depth=0)");
  s.fanout = 10;
  s.depth = 9;
  EXPECT_EQ(ErrorOf(s),
            "depth: a tree of fanout 10 and depth 9 has 1111111111 nodes, over the "
            "limit of 10000000");

  s = Spec(GraphModel::kGrid);
  s.rows = 0;
  s.cols = 4;
  EXPECT_EQ(ErrorOf(s), "rows: must be at least 1 (got rows=0)");
  s.rows = 1;
  s.cols = 1;
  EXPECT_EQ(ErrorOf(s), "rows, cols: a grid needs at least 2 nodes (got rows=1, cols=1)");
  s.model = GraphModel::kTorus;
  s.rows = 2;
  s.cols = 5;
  EXPECT_EQ(ErrorOf(s), "rows: must be at least 3 for a torus (got rows=2)");
  s.rows = 3;
  s.cols = 2;
  EXPECT_EQ(ErrorOf(s), "cols: must be at least 3 for a torus (got cols=2)");

  s = Spec(GraphModel::kWaxman);
  s.n = 10;
  s.alpha = 0;
  EXPECT_EQ(ErrorOf(s), "alpha: must be in (0, 1] (got alpha=0)");
  s.alpha = std::numeric_limits<double>::quiet_NaN();
  EXPECT_EQ(ErrorOf(s), "alpha: must be in (0, 1] (got alpha=nan)");
  s.alpha = 0.5;
  s.beta = 1.5;
  EXPECT_EQ(ErrorOf(s), "beta: must be in (0, 1] (got beta=1.5)");
  s.beta = 0.5;
  s.n = 20001;
  EXPECT_EQ(ErrorOf(s), "n: waxman tests every pair of nodes; at most 20000 nodes (got n=20001)");
  s.n = 1;
  EXPECT_EQ(ErrorOf(s), "n: must be at least 2 for a waxman graph (got n=1)");

  s = Spec(GraphModel::kTransitStub);
  s.transit_domains = 0;
  EXPECT_EQ(ErrorOf(s), "transit_domains: must be at least 1 (got transit_domains=0)");
  s.transit_domains = 1;
  s.stub_nodes = 0;
  EXPECT_EQ(ErrorOf(s), "stub_nodes: must be at least 1 (got stub_nodes=0)");
  s.stubs_per_transit = 0;  // stub_nodes unused then
  EXPECT_EQ(ErrorOf(s), "ok");
  s.transit_nodes = 1;
  EXPECT_EQ(ErrorOf(s),
            "transit_nodes: a transit-stub graph needs at least 2 nodes (got transit_domains=1, "
            "transit_nodes=1, stubs_per_transit=0)");
  s.transit_nodes = 4;
  s.stubs_per_transit = 1000;
  s.stub_nodes = 10000;
  EXPECT_EQ(ErrorOf(s),
            "stub_nodes: this transit-stub graph has 40000004 nodes, over the limit "
            "of 10000000");
}

}  // namespace
}  // namespace gridemu::topology

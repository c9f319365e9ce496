// Unit tests of multi-pnode placement (placement.h): METIS k-way, random and
// round-robin on small known graphs; capacity-proportional balance, pins,
// runtimes, hard rooms, infeasible requests (exact messages), determinism.
#include <gtest/gtest.h>

#include <algorithm>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "gridemu/controller/placement.h"
#include "gridemu/topology/generators.h"

namespace gridemu::controller {
namespace {

using topology::Topology;
using topology::VnodeId;

constexpr uint64_t kMbit = 1'000'000;

// A topology of n vnodes "v0".."v<n-1>" and the given links, each `rate_bps`
// both ways (0 = unshaped).
Topology MakeTopo(uint32_t n, const std::vector<std::pair<uint32_t, uint32_t>>& edges,
                  uint64_t rate_bps = 10 * kMbit) {
  Topology t;
  t.Reserve(n, edges.size());
  for (uint32_t i = 0; i < n; ++i) {
    topology::Vnode v;
    v.name = "v" + std::to_string(i);
    EXPECT_TRUE(t.AddVnode(std::move(v)).ok());
  }
  for (auto [a, b] : edges) {
    topology::Link l;
    l.a = a;
    l.b = b;
    if (rate_bps) {
      l.forward.rate_bps = rate_bps;
      l.reverse.rate_bps = rate_bps;
    }
    EXPECT_TRUE(t.AddLink(std::move(l)).ok());
  }
  return t;
}

// Two cliques of k vnodes (0..k-1 and k..2k-1) joined by the link (0, k).
Topology TwoCliques(uint32_t k) {
  std::vector<std::pair<uint32_t, uint32_t>> e;
  for (uint32_t base : {0u, k}) {
    for (uint32_t i = 0; i < k; ++i) {
      for (uint32_t j = i + 1; j < k; ++j) e.emplace_back(base + i, base + j);
    }
  }
  e.emplace_back(0, k);
  return MakeTopo(2 * k, e);
}

Topology Generated(topology::GraphModel model, uint32_t n, uint64_t seed = 3) {
  topology::GraphSpec spec;
  spec.model = model;
  spec.n = n;
  spec.m = 2;
  auto g = topology::Generate(spec, seed);
  EXPECT_TRUE(g.ok()) << g.status().ToString();
  return MakeTopo(g->num_nodes, g->edges);
}

PnodeCapacity Pnode(std::string id, uint32_t max_vnodes, uint32_t cores = 8) {
  PnodeCapacity c;
  c.host_id = std::move(id);
  c.cores = cores;
  c.memory_bytes = 16ull << 30;
  c.max_vnodes = max_vnodes;
  return c;
}

std::vector<PnodeCapacity> Pnodes(size_t n, uint32_t max_vnodes) {
  std::vector<PnodeCapacity> v;
  for (size_t i = 0; i < n; ++i) v.push_back(Pnode("p" + std::to_string(i), max_vnodes));
  return v;
}

std::vector<uint32_t> Counts(const Placement& p) {
  std::vector<uint32_t> c(p.pnodes.size(), 0);
  for (uint32_t x : p.pnode_of_vnode) ++c.at(x);
  return c;
}

const PlacementAlgorithm kAll[] = {PlacementAlgorithm::kMetis, PlacementAlgorithm::kRandom,
                                   PlacementAlgorithm::kRoundRobin};

TEST(PlacementMetis, TwoCliquesOnTwoPnodesCutOne) {
  Topology t = TwoCliques(6);
  for (uint32_t room : {0u, 6u, 10u}) {
    auto p = PlaceMetis(t, Pnodes(2, room));
    ASSERT_TRUE(p.ok()) << p.status().ToString();
    EXPECT_EQ(p->algorithm, "metis-kway");
    EXPECT_EQ(p->pnodes, (std::vector<std::string>{"p0", "p1"}));
    ASSERT_EQ(p->pnode_of_vnode.size(), 12u);
    EXPECT_EQ(p->cut_links, 1u) << "room " << room;
    EXPECT_EQ(p->cut_rate_bps, 20 * kMbit);  // 10mbit each way
    EXPECT_DOUBLE_EQ(p->imbalance, 1.0);
    EXPECT_EQ(Counts(*p), (std::vector<uint32_t>{6, 6}));
    for (uint32_t i = 1; i < 6; ++i) {
      EXPECT_EQ(p->pnode_of_vnode[i], p->pnode_of_vnode[0]);
      EXPECT_EQ(p->pnode_of_vnode[6 + i], p->pnode_of_vnode[6]);
    }
    EXPECT_NE(p->pnode_of_vnode[0], p->pnode_of_vnode[6]);
  }
}

TEST(PlacementMetis, BeatsBaselinesOnAStructuredGraph) {
  Topology t = Generated(topology::GraphModel::kBarabasiAlbert, 2000);
  auto pn = Pnodes(8, 250);
  auto metis = PlaceMetis(t, pn);
  auto random = PlaceRandom(t, pn);
  auto rr = PlaceRoundRobin(t, pn);
  ASSERT_TRUE(metis.ok() && random.ok() && rr.ok());
  EXPECT_EQ(random->algorithm, "random");
  EXPECT_EQ(rr->algorithm, "round-robin");
  for (const auto* p : {&*metis, &*random, &*rr}) {
    EXPECT_EQ(Counts(*p), std::vector<uint32_t>(8, 250)) << p->algorithm;
    EXPECT_DOUBLE_EQ(p->imbalance, 1.0) << p->algorithm;
  }
  EXPECT_LT(metis->cut_links * 2, random->cut_links);
  EXPECT_LT(metis->cut_links * 2, rr->cut_links);
}

TEST(PlacementMetis, LoadFollowsCapacity) {
  // A 30x30 grid on pnodes of room 100, 300, 500 (auto measure: vnodes):
  // shares 1/9, 3/9, 5/9 of 900 vnodes.
  topology::GraphSpec spec;
  spec.model = topology::GraphModel::kGrid;
  spec.rows = 30;
  spec.cols = 30;
  auto g = topology::Generate(spec, 1);
  ASSERT_TRUE(g.ok());
  Topology t = MakeTopo(g->num_nodes, g->edges);
  std::vector<PnodeCapacity> pn = {Pnode("a", 100), Pnode("b", 300), Pnode("c", 500)};
  for (auto alg : kAll) {
    auto p = Place(alg, t, pn);
    ASSERT_TRUE(p.ok()) << p.status().ToString();
    EXPECT_EQ(Counts(*p), (std::vector<uint32_t>{100, 300, 500})) << p->algorithm;
  }
  // Cores as the measure, no vnode limit: 2 and 6 cores -> 25 % and 75 %.
  std::vector<PnodeCapacity> cores = {Pnode("a", 0, 2), Pnode("b", 0, 6)};
  for (auto alg : kAll) {
    auto p = Place(alg, t, cores);
    ASSERT_TRUE(p.ok()) << p.status().ToString();
    auto c = Counts(*p);
    EXPECT_NEAR(c[0], 225, 225 * 0.03 + 1) << p->algorithm;
    EXPECT_LE(p->imbalance, 1.031) << p->algorithm;
    PlacementReport r = EvaluatePlacement(t, cores, p->pnode_of_vnode);
    EXPECT_EQ(r.vnodes_per_pnode, c);
    EXPECT_EQ(r.load_per_pnode[0], 250u * c[0]);  // default cpu 250 millicores
    EXPECT_DOUBLE_EQ(r.imbalance, p->imbalance);
    EXPECT_EQ(r.cut_links, p->cut_links);
  }
  auto metis = PlaceMetis(t, cores);
  ASSERT_TRUE(metis.ok());
  EXPECT_LE(metis->cut_links, 45u);  // a straight cut of the grid is 30
}

TEST(PlacementMetis, CpuDemandIsTheLoad) {
  // 20 vnodes of 1 core and 60 of 0.25 core in a ring: 35 cores in all, on
  // two equal pnodes -> 17.5 cores each, whatever the counts.
  std::vector<std::pair<uint32_t, uint32_t>> ring;
  for (uint32_t i = 0; i < 80; ++i) ring.emplace_back(i, (i + 1) % 80);
  Topology t = MakeTopo(80, ring);
  for (VnodeId v = 0; v < 20; ++v) t.mutable_vnode(v).resources.cpu = 1.0;
  for (VnodeId v = 20; v < 80; ++v) t.mutable_vnode(v).resources.cpu = 0.25;
  auto p = PlaceMetis(t, {Pnode("a", 0), Pnode("b", 0)});
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  PlacementReport r = EvaluatePlacement(t, {Pnode("a", 0), Pnode("b", 0)}, p->pnode_of_vnode);
  EXPECT_NEAR(r.load_per_pnode[0], 17500, 17500 * 0.03 + 1);
  EXPECT_LE(p->imbalance, 1.031);
  EXPECT_LE(p->cut_links, 4u);  // a ring cut in two is 2 links
}

TEST(PlacementMetis, PinsAreHonouredAndPullTheirNeighbours) {
  // Clique A (v0..v5) has v3 pinned to p1, clique B (v6..v11) has v8 pinned
  // to p0: METIS labels are arbitrary, so the relabelling must follow the pins.
  for (uint32_t room : {0u, 6u}) {
    Topology t = TwoCliques(6);
    t.mutable_vnode(3).host = "p1";
    t.mutable_vnode(8).host = "p0";
    auto p = PlaceMetis(t, Pnodes(2, room));
    ASSERT_TRUE(p.ok()) << p.status().ToString();
    EXPECT_EQ(p->pnode_of_vnode[3], 1u);
    EXPECT_EQ(p->pnode_of_vnode[8], 0u);
    EXPECT_EQ(p->cut_links, 1u);
    for (uint32_t i = 0; i < 6; ++i) EXPECT_EQ(p->pnode_of_vnode[i], 1u) << i;
    for (uint32_t i = 6; i < 12; ++i) EXPECT_EQ(p->pnode_of_vnode[i], 0u) << i;
  }
  // Many pins over a larger graph, every algorithm.
  Topology t = Generated(topology::GraphModel::kBarabasiAlbert, 600);
  auto pn = Pnodes(6, 110);
  for (VnodeId v = 0; v < 600; v += 7) t.mutable_vnode(v).host = "p" + std::to_string(v % 6);
  for (auto alg : kAll) {
    auto p = Place(alg, t, pn);
    ASSERT_TRUE(p.ok()) << p.status().ToString();
    for (VnodeId v = 0; v < 600; v += 7) {
      EXPECT_EQ(p->pnode_of_vnode[v], v % 6) << p->algorithm << " vnode " << v;
    }
    for (uint32_t c : Counts(*p)) EXPECT_LE(c, 110u) << p->algorithm;
  }
}

TEST(PlacementMetis, EverythingPinned) {
  Topology t = TwoCliques(3);
  for (VnodeId v = 0; v < 6; ++v) t.mutable_vnode(v).host = v < 3 ? "p0" : "p1";
  auto p = PlaceMetis(t, Pnodes(3, 3));
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  EXPECT_EQ(p->algorithm, "pinned");
  EXPECT_EQ(Counts(*p), (std::vector<uint32_t>{3, 3, 0}));
  EXPECT_EQ(p->cut_links, 1u);
}

TEST(PlacementMetis, RoomsAreHardLimits) {
  // Exactly as many slots as vnodes: every pnode full, none over.
  Topology t = Generated(topology::GraphModel::kBarabasiAlbert, 1000);
  std::vector<PnodeCapacity> pn;
  for (int i = 0; i < 10; ++i) pn.push_back(Pnode("p" + std::to_string(i), 100));
  pn[3].vnodes_in_use = 40;  // room 60
  pn[4].max_vnodes = 140;    // room 140
  for (auto alg : kAll) {
    auto p = Place(alg, t, pn);
    ASSERT_TRUE(p.ok()) << p.status().ToString();
    auto c = Counts(*p);
    EXPECT_EQ(c[3], 60u) << p->algorithm;
    EXPECT_EQ(c[4], 140u) << p->algorithm;
    for (int i : {0, 1, 2, 5, 6, 7, 8, 9}) EXPECT_EQ(c[i], 100u) << p->algorithm;
  }
}

TEST(PlacementMetis, RuntimesRestrictWhereVnodesGo) {
  Topology t = Generated(topology::GraphModel::kBarabasiAlbert, 200);
  for (VnodeId v = 0; v < 200; v += 10) t.mutable_vnode(v).runtime = topology::Runtime::kQemu;
  std::vector<PnodeCapacity> pn = Pnodes(4, 60);
  pn[0].runtimes = {"netns"};
  pn[1].runtimes = {"netns", "qemu"};
  pn[2].runtimes = {"netns"};
  // pn[3]: none announced = anything.
  for (auto alg : kAll) {
    auto p = Place(alg, t, pn);
    ASSERT_TRUE(p.ok()) << p.status().ToString();
    for (VnodeId v = 0; v < 200; v += 10) {
      uint32_t at = p->pnode_of_vnode[v];
      EXPECT_TRUE(at == 1 || at == 3) << p->algorithm << " vnode " << v << " on " << at;
    }
    for (uint32_t c : Counts(*p)) EXPECT_LE(c, 60u);
  }
  pn[1].runtimes = {"netns"};
  pn[3].runtimes = {"lxc", "netns"};
  auto p = PlaceMetis(t, pn);
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(p.status().message(), "vnode 'v0' needs runtime 'qemu', which no pnode offers");
  t.mutable_vnode(5).host = "p0";
  t.mutable_vnode(5).runtime = topology::Runtime::kLxc;
  pn[3].runtimes = {"lxc", "netns", "qemu"};
  p = PlaceMetis(t, pn);
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.status().message(),
            "vnode 'v5' needs runtime 'lxc', which pnode 'p0' (where it is pinned) does not offer");
  t.mutable_vnode(5).host = "";
  pn[0].max_vnodes = 100;
  pn[3].max_vnodes = 15;  // 20 qemu vnodes, only p3 runs them
  p = PlaceMetis(t, pn);
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.status().code(), StatusCode::kResourceExhausted);
  EXPECT_EQ(p.status().message(),
            "20 vnodes need runtime 'qemu': the 1 pnode that offers it hold at most 15 "
            "(max_vnodes)");
}

TEST(PlacementMetis, InfeasibleRequestsAreRejectedWithClearErrors) {
  // More vnodes than the pnodes hold.
  Topology big = MakeTopo(100'500, {});
  for (auto alg : kAll) {
    auto p = Place(alg, big, Pnodes(1000, 100));
    ASSERT_FALSE(p.ok());
    EXPECT_EQ(p.status().code(), StatusCode::kResourceExhausted);
    EXPECT_EQ(p.status().message(),
              "100,500 vnodes do not fit: the 1,000 pnodes hold at most 100,000 (max_vnodes)");
  }
  Topology t = TwoCliques(3);
  auto pn = Pnodes(2, 3);
  pn[1].vnodes_in_use = 1;
  auto p = PlaceMetis(t, pn);
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.status().message(),
            "6 vnodes do not fit: the 2 pnodes hold at most 5 (max_vnodes, less 1 in use by "
            "other experiments)");
  p = PlaceMetis(t, Pnodes(1, 4));
  EXPECT_EQ(p.status().message(), "6 vnodes do not fit: the 1 pnode holds at most 4 (max_vnodes)");

  // A pin to an unknown pnode.
  t.mutable_vnode(4).host = "p9";
  for (auto alg : kAll) {
    p = Place(alg, t, Pnodes(2, 0));
    ASSERT_FALSE(p.ok());
    EXPECT_EQ(p.status().code(), StatusCode::kFailedPrecondition);
    EXPECT_EQ(p.status().message(), "vnode 'v4' is pinned to unknown pnode 'p9'");
  }
  // A pnode over its room after pins.
  for (VnodeId v = 0; v < 6; ++v) t.mutable_vnode(v).host = v < 3 ? "p1" : "";
  p = PlaceMetis(t, Pnodes(3, 2));
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.status().code(), StatusCode::kResourceExhausted);
  EXPECT_EQ(p.status().message(),
            "pnode 'p1' holds at most 2 vnodes (max_vnodes) but 3 are pinned to it");
  pn = Pnodes(3, 4);
  pn[1].vnodes_in_use = 3;
  p = PlaceMetis(t, pn);
  EXPECT_EQ(p.status().message(),
            "pnode 'p1' holds at most 1 vnode (max_vnodes 4 less 3 in use by other "
            "experiments) but 3 are pinned to it");

  // No pnode at all, bad options, a pnode listed twice.
  p = PlaceMetis(t, {});
  EXPECT_EQ(p.status().code(), StatusCode::kUnavailable);
  PlacementOptions bad;
  bad.max_imbalance = 2;
  p = PlaceMetis(t, Pnodes(2, 0), bad);
  EXPECT_EQ(p.status().code(), StatusCode::kInvalidArgument);
  p = PlaceMetis(t, {Pnode("a", 0), Pnode("a", 0)});
  EXPECT_EQ(p.status().message(), "placement: pnode 'a' is listed twice");
}

TEST(PlacementMetis, DeterministicForASeed) {
  Topology t = Generated(topology::GraphModel::kBarabasiAlbert, 3000);
  auto pn = Pnodes(16, 200);
  PlacementOptions a, b;
  a.seed = b.seed = 42;
  for (auto alg : kAll) {
    auto p1 = Place(alg, t, pn, a);
    auto p2 = Place(alg, t, pn, b);
    ASSERT_TRUE(p1.ok() && p2.ok());
    EXPECT_EQ(p1->pnode_of_vnode, p2->pnode_of_vnode) << p1->algorithm;
    EXPECT_EQ(p1->cut_links, p2->cut_links);
  }
  b.seed = 43;
  auto r1 = PlaceRandom(t, pn, a);
  auto r2 = PlaceRandom(t, pn, b);
  ASSERT_TRUE(r1.ok() && r2.ok());
  EXPECT_NE(r1->pnode_of_vnode, r2->pnode_of_vnode);
}

TEST(PlacementMetis, DisconnectedGraphsAndEdgeCases) {
  // Three components of different sizes plus isolated vnodes.
  std::vector<std::pair<uint32_t, uint32_t>> e;
  for (uint32_t i = 0; i < 39; ++i) e.emplace_back(i, i + 1);    // path of 40
  for (uint32_t i = 40; i < 59; ++i) e.emplace_back(i, i + 1);   // path of 20
  for (uint32_t i = 60; i < 69; ++i) e.emplace_back(60, i + 1);  // star of 10
  Topology t = MakeTopo(80, e);                                  // + 10 isolated
  for (auto alg : kAll) {
    auto p = Place(alg, t, Pnodes(4, 20));
    ASSERT_TRUE(p.ok()) << p.status().ToString();
    EXPECT_EQ(Counts(*p), std::vector<uint32_t>(4, 20)) << p->algorithm;
  }
  auto p = PlaceMetis(t, Pnodes(4, 20));
  ASSERT_TRUE(p.ok());
  EXPECT_LE(p->cut_links, 6u);

  // No links at all.
  Topology lone = MakeTopo(50, {});
  p = PlaceMetis(lone, Pnodes(5, 0));
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  EXPECT_EQ(p->cut_links, 0u);
  EXPECT_LE(p->imbalance, 1.03);

  // One pnode: METIS is skipped.
  p = PlaceMetis(t, Pnodes(1, 0));
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->algorithm, "single-pnode");
  EXPECT_EQ(Counts(*p), std::vector<uint32_t>{80});
  EXPECT_EQ(p->cut_links, 0u);
  EXPECT_DOUBLE_EQ(p->imbalance, 1.0);

  // Empty topology; more pnodes than vnodes.
  p = PlaceMetis(Topology(), Pnodes(3, 0));
  ASSERT_TRUE(p.ok());
  EXPECT_TRUE(p->pnode_of_vnode.empty());
  Topology two = MakeTopo(2, {{0, 1}});
  for (auto alg : kAll) {
    p = Place(alg, two, Pnodes(5, 0));
    ASSERT_TRUE(p.ok()) << p.status().ToString();
    ASSERT_EQ(p->pnode_of_vnode.size(), 2u);
    for (uint32_t c : Counts(*p)) EXPECT_LE(c, 1u) << p->algorithm;
  }
}

TEST(PlacementMetis, LinkRatesWeighTheCut) {
  // A ring of 8 where links 0-1 and 4-5 are slow and the rest fast: the cut
  // into two halves must go through the two slow links.
  std::vector<std::pair<uint32_t, uint32_t>> ring;
  for (uint32_t i = 0; i < 8; ++i) ring.emplace_back(i, (i + 1) % 8);
  Topology t = MakeTopo(8, ring, 0);
  for (topology::LinkId l = 0; l < 8; ++l) {
    uint64_t r = (l == 0 || l == 4) ? 1 * kMbit : 1000 * kMbit;
    t.mutable_link(l).forward.rate_bps = r;
    t.mutable_link(l).reverse.rate_bps = l == 0 ? 2 * kMbit : r;  // min of both: 1mbit
  }
  auto p = PlaceMetis(t, Pnodes(2, 4));
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->cut_links, 2u);
  EXPECT_EQ(p->cut_rate_bps, 5 * kMbit);  // (1 + 2) + (1 + 1)
  EXPECT_EQ(p->pnode_of_vnode[1], p->pnode_of_vnode[4]);
  EXPECT_NE(p->pnode_of_vnode[0], p->pnode_of_vnode[1]);

  // Unshaped links weigh as much as the fastest shaped one, and parallel
  // links add up: v0=v1 are joined three times.
  Topology u = MakeTopo(4, {{0, 1}, {0, 1}, {0, 1}, {1, 2}, {2, 3}, {3, 0}}, 0);
  u.mutable_link(3).forward.rate_bps = 1 * kMbit;
  p = PlaceMetis(u, Pnodes(2, 2));
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->pnode_of_vnode[0], p->pnode_of_vnode[1]);
  PlacementReport r = EvaluatePlacement(u, Pnodes(2, 2), p->pnode_of_vnode);
  EXPECT_EQ(r.cut_links, 2u);
  EXPECT_EQ(r.cut_links_unshaped, 1u);
  EXPECT_EQ(r.cut_rate_bps, 1 * kMbit);
}

TEST(PlacementMetis, MemoryAsSecondConstraint) {
  Topology t = Generated(topology::GraphModel::kBarabasiAlbert, 400);
  for (VnodeId v = 0; v < 400; ++v) {
    t.mutable_vnode(v).resources.memory_bytes = (v % 4 == 0 ? 1024ull : 128ull) << 20;
  }
  PlacementOptions o;
  o.balance_memory = true;
  auto p = PlaceMetis(t, Pnodes(4, 0), o);
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  std::vector<uint64_t> mem(4, 0);
  uint64_t total = 0;
  for (VnodeId v = 0; v < 400; ++v) {
    mem[p->pnode_of_vnode[v]] += *t.vnode(v).resources.memory_bytes;
    total += *t.vnode(v).resources.memory_bytes;
  }
  for (uint64_t m : mem) EXPECT_LE(static_cast<double>(m), total / 4.0 * 1.10);
  EXPECT_LE(p->imbalance, 1.031);
}

TEST(PlacementMetis, PlacerAdapterDropsUnusedPnodesAndUsesTheExperimentSeed) {
  experiments::Experiment exp;
  exp.name = "x";
  exp.seed = 9;
  exp.topology = TwoCliques(3);
  std::vector<PnodeCandidate> cands = Pnodes(5, 0);
  cands[0].max_vnodes = 3;
  cands[0].vnodes_in_use = 3;  // full
  PartitionPlacer placer(PlacementAlgorithm::kMetis);
  auto p = placer.Place(exp, cands);
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  EXPECT_EQ(p->pnode_of_vnode.size(), 6u);
  std::set<uint32_t> used(p->pnode_of_vnode.begin(), p->pnode_of_vnode.end());
  EXPECT_EQ(used.size(), p->pnodes.size());
  EXPECT_EQ(std::count(p->pnodes.begin(), p->pnodes.end(), "p0"), 0);
  PlacementOptions o;
  o.seed = 9;
  auto direct = PlaceRandom(exp.topology, cands, o);
  auto via = PartitionPlacer(PlacementAlgorithm::kRandom).Place(exp, cands);
  ASSERT_TRUE(direct.ok() && via.ok());
  EXPECT_EQ(DropUnusedPnodes(*direct).pnode_of_vnode, via->pnode_of_vnode);

  EXPECT_EQ(*ParsePlacementAlgorithm("metis"), PlacementAlgorithm::kMetis);
  EXPECT_EQ(*ParsePlacementAlgorithm("round-robin"), PlacementAlgorithm::kRoundRobin);
  EXPECT_EQ(ParsePlacementAlgorithm("best").status().message(),
            "unknown placement algorithm 'best'; expected metis-kway, random or round-robin");
}

}  // namespace
}  // namespace gridemu::controller

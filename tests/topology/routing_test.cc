#include "gridemu/topology/routing.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "gridemu/common/random.h"
#include "gridemu/topology/generators.h"
#include "test_util.h"

namespace gridemu::topology {
namespace {

using std::chrono::microseconds;
using std::chrono::milliseconds;
using std::chrono::nanoseconds;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

// A small hand-built topology.
class Builder {
 public:
  VnodeId Add(const std::string& name, VnodeKind kind = VnodeKind::kRouter) {
    Vnode v;
    v.name = name;
    v.kind = kind;
    auto r = topo.AddVnode(std::move(v));
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return *r;
  }
  // A link with `fwd` delay a -> b and `rev` delay b -> a.
  LinkId Join(VnodeId a, VnodeId b, nanoseconds fwd, std::optional<nanoseconds> rev = {}) {
    Link l;
    l.a = a;
    l.b = b;
    l.forward.delay = fwd;
    l.reverse.delay = rev.value_or(fwd);
    auto r = topo.AddLink(std::move(l));
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return *r;
  }
  Topology topo;
};

std::vector<std::string> Names(const Topology& topo, const Path& p) {
  std::vector<std::string> out;
  for (VnodeId v : p.vnodes) out.push_back(topo.vnode(v).name);
  return out;
}

TEST(Forwards, OnlyHostsDoNot) {
  Vnode v;
  v.kind = VnodeKind::kHost;
  EXPECT_FALSE(Forwards(v));
  v.kind = VnodeKind::kRouter;
  EXPECT_TRUE(Forwards(v));
  v.kind = VnodeKind::kSwitch;
  EXPECT_TRUE(Forwards(v));
}

TEST(ShortestPath, LineOfRoutersSumsDelays) {
  Builder b;
  std::vector<VnodeId> r;
  for (int i = 0; i < 5; ++i) r.push_back(b.Add("r" + std::to_string(i)));
  for (int i = 0; i < 4; ++i) b.Join(r[i], r[i + 1], milliseconds(i + 1), microseconds(100));
  auto p = ShortestPath(b.topo, r[0], r[4]);
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  EXPECT_THAT(Names(b.topo, *p), ElementsAre("r0", "r1", "r2", "r3", "r4"));
  EXPECT_THAT(p->links, ElementsAre(0u, 1u, 2u, 3u));
  PathProperties props = PathPropertiesOf(b.topo, *p);
  EXPECT_EQ(props.delay, milliseconds(1 + 2 + 3 + 4));
  EXPECT_EQ(props.hops, 4u);
  // The way back uses the reverse direction's delays.
  auto back = ShortestPath(b.topo, r[4], r[0]);
  ASSERT_TRUE(back.ok());
  EXPECT_THAT(Names(b.topo, *back), ElementsAre("r4", "r3", "r2", "r1", "r0"));
  EXPECT_EQ(PathPropertiesOf(b.topo, *back).delay, microseconds(400));
  // A path to itself is empty.
  auto self = ShortestPath(b.topo, r[2], r[2]);
  ASSERT_TRUE(self.ok());
  EXPECT_THAT(self->vnodes, ElementsAre(r[2]));
  EXPECT_TRUE(self->links.empty());
  EXPECT_EQ(PathPropertiesOf(b.topo, *self).delay, nanoseconds(0));
}

// a -> b -> d costs 2 hops and 10 ms; a -> c1 -> c2 -> d costs 3 hops and 3 ms.
TEST(ShortestPath, DiamondDelayVersusHops) {
  Builder b;
  const VnodeId a = b.Add("a"), x = b.Add("b"), c1 = b.Add("c1"), c2 = b.Add("c2"), d = b.Add("d");
  b.Join(a, x, milliseconds(5));
  b.Join(x, d, milliseconds(5));
  b.Join(a, c1, milliseconds(1));
  b.Join(c1, c2, milliseconds(1));
  b.Join(c2, d, milliseconds(1));
  auto by_delay = ShortestPath(b.topo, a, d, RouteMetric::kDelay);
  ASSERT_TRUE(by_delay.ok());
  EXPECT_THAT(Names(b.topo, *by_delay), ElementsAre("a", "c1", "c2", "d"));
  EXPECT_EQ(PathPropertiesOf(b.topo, *by_delay).delay, milliseconds(3));
  auto by_hops = ShortestPath(b.topo, a, d, RouteMetric::kHops);
  ASSERT_TRUE(by_hops.ok());
  EXPECT_THAT(Names(b.topo, *by_hops), ElementsAre("a", "b", "d"));
}

TEST(ShortestPath, TiesBreakOnHopsThenIds) {
  Builder b;
  // Two equal-delay paths s -> m1 -> t and s -> m0 -> t (m0 has the lower
  // id), and a three-hop path with the same delay.
  const VnodeId s = b.Add("s"), m0 = b.Add("m0"), m1 = b.Add("m1"), t = b.Add("t"),
                z1 = b.Add("z1"), z2 = b.Add("z2");
  b.Join(s, m1, milliseconds(2));
  b.Join(m1, t, milliseconds(2));
  b.Join(s, m0, milliseconds(2));
  b.Join(m0, t, milliseconds(2));
  b.Join(s, z1, milliseconds(1));
  b.Join(z1, z2, milliseconds(1));
  b.Join(z2, t, milliseconds(2));
  auto p = ShortestPath(b.topo, s, t);
  ASSERT_TRUE(p.ok());
  EXPECT_THAT(Names(b.topo, *p), ElementsAre("s", "m0", "t"));
  // Unset delays count as zero; hops then decide.
  Builder z;
  const VnodeId za = z.Add("a"), zb = z.Add("b"), zc = z.Add("c");
  Link direct{za, zc, {}, {}, {}}, via1{za, zb, {}, {}, {}}, via2{zb, zc, {}, {}, {}};
  ASSERT_TRUE(z.topo.AddLink(via1).ok());
  ASSERT_TRUE(z.topo.AddLink(via2).ok());
  ASSERT_TRUE(z.topo.AddLink(direct).ok());
  p = ShortestPath(z.topo, za, zc);
  ASSERT_TRUE(p.ok());
  EXPECT_THAT(p->links, ElementsAre(2u));
}

TEST(ShortestPath, HostsAreNotTransit) {
  Builder b;
  const VnodeId h1 = b.Add("h1", VnodeKind::kHost), h2 = b.Add("h2", VnodeKind::kHost),
                mid = b.Add("mid", VnodeKind::kHost), r = b.Add("r"),
                sw = b.Add("sw", VnodeKind::kSwitch);
  // The short way goes through host `mid`; the long way through router r and switch sw.
  b.Join(h1, mid, milliseconds(1));
  b.Join(mid, h2, milliseconds(1));
  b.Join(h1, r, milliseconds(10));
  b.Join(r, sw, milliseconds(10));
  b.Join(sw, h2, milliseconds(10));
  auto p = ShortestPath(b.topo, h1, h2);
  ASSERT_TRUE(p.ok());
  EXPECT_THAT(Names(b.topo, *p), ElementsAre("h1", "r", "sw", "h2"));
  // A host is fine as either end.
  p = ShortestPath(b.topo, h1, mid);
  ASSERT_TRUE(p.ok());
  EXPECT_THAT(Names(b.topo, *p), ElementsAre("h1", "mid"));
  // Without the router path, h2 cannot be reached from h1.
  Builder c;
  const VnodeId a = c.Add("a", VnodeKind::kHost), m = c.Add("m", VnodeKind::kHost),
                z = c.Add("z", VnodeKind::kHost);
  c.Join(a, m, milliseconds(1));
  c.Join(m, z, milliseconds(1));
  auto none = ShortestPath(c.topo, a, z);
  ASSERT_FALSE(none.ok());
  EXPECT_EQ(none.status().code(), StatusCode::kNotFound);
  EXPECT_EQ(none.status().message(),
            "no path from 'a' to 'z' (hosts do not forward: a path may cross only routers and "
            "switches)");
  auto bad = ShortestPath(c.topo, a, 17);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), StatusCode::kInvalidArgument);
}

TEST(PathProperties, DelayRateLossInTheDirectionOfTravel) {
  Builder b;
  const VnodeId a = b.Add("a"), x = b.Add("x"), y = b.Add("y");
  Link l1{a, x, {}, {}, {}};
  l1.forward.delay = milliseconds(10);
  l1.forward.rate_bps = 100'000'000;
  l1.forward.loss = 0.1;
  l1.reverse.delay = milliseconds(1);
  l1.reverse.rate_bps = 1'000;
  Link l2{y, x, {}, {}, {}};  // stored y -> x: travel x -> y uses `reverse`
  l2.reverse.delay = milliseconds(5);
  l2.reverse.rate_bps = 10'000'000;
  l2.reverse.loss = 0.2;
  l2.forward.delay = milliseconds(50);
  ASSERT_TRUE(b.topo.AddLink(l1).ok());
  ASSERT_TRUE(b.topo.AddLink(l2).ok());
  auto p = ShortestPath(b.topo, a, y);
  ASSERT_TRUE(p.ok());
  PathProperties props = PathPropertiesOf(b.topo, *p);
  EXPECT_EQ(props.delay, milliseconds(15));
  EXPECT_EQ(props.rate_bps, 10'000'000u);
  EXPECT_NEAR(props.loss, 1 - 0.9 * 0.8, 1e-12);
  EXPECT_EQ(props.hops, 2u);
  auto back = ShortestPath(b.topo, y, a);
  ASSERT_TRUE(back.ok());
  props = PathPropertiesOf(b.topo, *back);
  EXPECT_EQ(props.delay, milliseconds(51));
  EXPECT_EQ(props.rate_bps, 1'000u);
  EXPECT_EQ(props.loss, 0);
  // No rate anywhere: unset.
  Builder c;
  const VnodeId u = c.Add("u"), v = c.Add("v");
  c.Join(u, v, milliseconds(1));
  auto q = ShortestPath(c.topo, u, v);
  ASSERT_TRUE(q.ok());
  EXPECT_FALSE(PathPropertiesOf(c.topo, *q).rate_bps.has_value());
}

TEST(NextHopsTowards, UsesTheDirectionTowardsTheDestination) {
  Builder b;
  // a -- d directly: 10 ms a->d but 1 ms d->a; a -- m -- d: 2 + 2 ms both ways.
  const VnodeId a = b.Add("a"), m = b.Add("m"), d = b.Add("d"), h = b.Add("h", VnodeKind::kHost),
                lone = b.Add("lone");
  const LinkId direct = b.Join(a, d, milliseconds(10), milliseconds(1));
  const LinkId am = b.Join(a, m, milliseconds(2));
  const LinkId md = b.Join(m, d, milliseconds(2));
  const LinkId ha = b.Join(h, a, milliseconds(1));
  (void)lone;
  NextHopTree t = NextHopsTowards(b.topo, d);
  EXPECT_EQ(t.dst, d);
  EXPECT_EQ(t.via[a], am);  // 4 ms via m beats 10 ms direct
  EXPECT_EQ(t.distance[a], milliseconds(4));
  EXPECT_EQ(t.via[m], md);
  EXPECT_EQ(t.via[h], ha);
  EXPECT_EQ(t.distance[h], milliseconds(5));
  EXPECT_FALSE(t.via[d].has_value());
  EXPECT_EQ(t.distance[d], nanoseconds(0));
  EXPECT_FALSE(t.via[lone].has_value());
  EXPECT_EQ(t.distance[lone], nanoseconds::max());
  // Towards a, the direct link is 1 ms from d.
  t = NextHopsTowards(b.topo, a);
  EXPECT_EQ(t.via[d], direct);
  EXPECT_EQ(t.distance[d], milliseconds(1));
  // Hop metric: the direct link.
  t = NextHopsTowards(b.topo, d, RouteMetric::kHops);
  EXPECT_EQ(t.via[a], direct);
  EXPECT_EQ(t.distance[h], nanoseconds(2));
}

// Follows next hops from src to dst; returns the delay summed along the way,
// or nullopt when a hop is missing or the walk loops.
std::optional<nanoseconds> Follow(const Topology& topo, const std::vector<NextHopTable>& tables,
                                  const std::vector<int>& table_of, VnodeId src, VnodeId dst) {
  nanoseconds total{0};
  VnodeId at = src;
  for (size_t steps = 0; at != dst; ++steps) {
    if (steps > topo.num_vnodes()) return std::nullopt;
    std::optional<LinkId> via;
    if (table_of[at] >= 0) {
      const auto& e = tables[table_of[at]].entries;
      auto it = std::lower_bound(e.begin(), e.end(), std::pair<VnodeId, LinkId>{dst, 0});
      if (it != e.end() && it->first == dst) via = it->second;
    } else if (at == src && topo.incident(at).size() == 1) {
      via = topo.incident(at).front();  // a single-homed host sends on its only link
    }
    if (!via) return std::nullopt;
    total += topo.ProfileFrom(*via, at).delay.value_or(nanoseconds(0));
    at = topo.Peer(*via, at);
  }
  return total;
}

// Random delays on a Barabási–Albert graph of routers, plus single- and
// multi-homed hosts: the tables agree with ShortestPath and NextHopsTowards.
TEST(NextHopTables, AgreeWithShortestPathsOnRandomGraph) {
  GraphSpec spec;
  spec.model = GraphModel::kBarabasiAlbert;
  spec.n = 200;
  spec.m = 2;
  auto g = Generate(spec, 77);
  ASSERT_TRUE(g.ok());
  Topology topo = testing::ToTopology(*g, VnodeKind::kRouter);
  Rng rng(5);
  for (LinkId l = 0; l < topo.num_links(); ++l) {
    topo.mutable_link(l).forward.delay = microseconds(100 + rng.Below(5000));
    topo.mutable_link(l).reverse.delay = microseconds(100 + rng.Below(5000));
  }
  // 60 leaf hosts and 10 dual-homed hosts.
  for (int i = 0; i < 70; ++i) {
    Vnode h;
    h.name = "h" + std::to_string(i);
    h.kind = VnodeKind::kHost;
    const VnodeId id = *topo.AddVnode(h);
    const int homes = i < 60 ? 1 : 2;
    for (int k = 0; k < homes; ++k) {
      Link l{id, static_cast<VnodeId>(rng.Below(200)), {}, {}, {}};
      l.forward.delay = microseconds(50 + rng.Below(500));
      l.reverse.delay = microseconds(50 + rng.Below(500));
      ASSERT_TRUE(topo.AddLink(l).ok());
    }
  }
  auto tables = ComputeNextHopTables(topo);
  ASSERT_TRUE(tables.ok()) << tables.status().ToString();
  ASSERT_EQ(tables->size(), 200u + 10u);  // routers and the dual-homed hosts
  std::vector<int> table_of(topo.num_vnodes(), -1);
  for (size_t i = 0; i < tables->size(); ++i) {
    const NextHopTable& t = (*tables)[i];
    table_of[t.router] = static_cast<int>(i);
    EXPECT_TRUE(std::is_sorted(t.entries.begin(), t.entries.end()));
    // Every vnode other than itself is reachable from a router here.
    if (topo.vnode(t.router).kind == VnodeKind::kRouter) {
      EXPECT_EQ(t.entries.size(), topo.num_vnodes() - 1);
    }
  }
  // Tables equal the reverse trees exactly.
  for (VnodeId dst = 0; dst < topo.num_vnodes(); dst += 3) {
    const NextHopTree tree = NextHopsTowards(topo, dst);
    for (const NextHopTable& t : *tables) {
      const auto& e = t.entries;
      auto it = std::lower_bound(e.begin(), e.end(), std::pair<VnodeId, LinkId>{dst, 0});
      const bool has = it != e.end() && it->first == dst;
      ASSERT_EQ(has, tree.via[t.router].has_value()) << t.router << " -> " << dst;
      if (has) {
        ASSERT_EQ(it->second, *tree.via[t.router]) << t.router << " -> " << dst;
      }
    }
  }
  // Following the tables from src reaches dst with the shortest delay.
  size_t checked = 0;
  for (int k = 0; k < 600; ++k) {
    const auto src = static_cast<VnodeId>(rng.Below(topo.num_vnodes()));
    const auto dst = static_cast<VnodeId>(rng.Below(topo.num_vnodes()));
    if (src == dst) continue;
    auto p = ShortestPath(topo, src, dst);
    ASSERT_TRUE(p.ok()) << p.status().ToString();
    auto walked = Follow(topo, *tables, table_of, src, dst);
    ASSERT_TRUE(walked.has_value()) << topo.vnode(src).name << " -> " << topo.vnode(dst).name;
    EXPECT_EQ(*walked, PathPropertiesOf(topo, *p).delay);
    ++checked;
  }
  EXPECT_GT(checked, 500u);
}

TEST(NextHopTables, DestinationsAndLimits) {
  Builder b;
  const VnodeId r1 = b.Add("r1"), r2 = b.Add("r2"), h1 = b.Add("h1", VnodeKind::kHost),
                h2 = b.Add("h2", VnodeKind::kHost), sw = b.Add("sw", VnodeKind::kSwitch);
  const LinkId l12 = b.Join(r1, r2, milliseconds(1));
  const LinkId lh1 = b.Join(h1, r1, milliseconds(1));
  const LinkId lh2 = b.Join(h2, r2, milliseconds(1));
  b.Join(sw, r2, milliseconds(1));
  auto t = ComputeNextHopTables(b.topo, {h2, h1, h2});  // order and duplicates do not matter
  ASSERT_TRUE(t.ok());
  ASSERT_EQ(t->size(), 2u);  // switches and single-homed hosts need no table
  EXPECT_EQ((*t)[0].router, r1);
  EXPECT_THAT((*t)[0].entries, ElementsAre(std::pair{h1, lh1}, std::pair{h2, l12}));
  EXPECT_EQ((*t)[1].router, r2);
  EXPECT_THAT((*t)[1].entries, ElementsAre(std::pair{h1, l12}, std::pair{h2, lh2}));

  auto over = ComputeNextHopTables(b.topo, {}, RouteMetric::kDelay, 9);
  ASSERT_FALSE(over.ok());
  EXPECT_EQ(over.status().code(), StatusCode::kResourceExhausted);
  EXPECT_EQ(over.status().message(),
            "next-hop tables: 2 vnodes x 5 destinations is over the limit of 9 entries; restrict "
            "the destinations (e.g. to hosts) or use the access model");
  EXPECT_TRUE(ComputeNextHopTables(b.topo, {}, RouteMetric::kDelay, 10).ok());
  auto bad = ComputeNextHopTables(b.topo, {42});
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), StatusCode::kInvalidArgument);
}

TEST(NextHopTables, LeafHostBehindAHost) {
  // h0 -- hm (dual-homed host) -- r, and hm -- h9: h9 is reachable only from hm.
  Builder b;
  const VnodeId r = b.Add("r"), hm = b.Add("hm", VnodeKind::kHost),
                h9 = b.Add("h9", VnodeKind::kHost);
  const LinkId lr = b.Join(hm, r, milliseconds(1));
  const LinkId l9 = b.Join(hm, h9, milliseconds(1));
  auto t = ComputeNextHopTables(b.topo);
  ASSERT_TRUE(t.ok());
  ASSERT_EQ(t->size(), 2u);
  EXPECT_EQ((*t)[0].router, r);
  EXPECT_THAT((*t)[0].entries, ElementsAre(std::pair{hm, lr}));
  EXPECT_EQ((*t)[1].router, hm);
  EXPECT_THAT((*t)[1].entries, ElementsAre(std::pair{r, lr}, std::pair{h9, l9}));
}

TEST(NextHopTables, StarOfHundredThousandHosts) {
  Topology topo;
  Vnode hub;
  hub.name = "hub";
  hub.kind = VnodeKind::kRouter;
  ASSERT_TRUE(topo.AddVnode(hub).ok());
  for (int i = 0; i < 100'000; ++i) {
    Vnode h;
    h.name = "h" + std::to_string(i);
    const VnodeId id = *topo.AddVnode(std::move(h));
    Link l{0, id, {}, {}, {}};
    l.forward.delay = milliseconds(1);
    l.reverse.delay = milliseconds(1);
    ASSERT_TRUE(topo.AddLink(std::move(l)).ok());
  }
  const auto t0 = std::chrono::steady_clock::now();
  auto tables = ComputeNextHopTables(topo);
  const double ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  ASSERT_TRUE(tables.ok());
  ASSERT_EQ(tables->size(), 1u);
  const auto& e = (*tables)[0].entries;
  ASSERT_EQ(e.size(), 100'000u);
  for (size_t i = 0; i < e.size(); ++i) {
    ASSERT_EQ(e[i].first, i + 1);
    ASSERT_EQ(e[i].second, i);  // host i+1 hangs on link i
  }
  RecordProperty("next_hop_tables_ms", std::to_string(ms));
  std::printf("next-hop tables, star of 100000 hosts: %.1f ms\n", ms);
  EXPECT_LT(ms, 5000);  // generous; measured by the benchmarks
}

// ---------------------------------------------------------------------------
// Statistics.

Topology Generated(GraphModel model, uint32_t n, uint32_t rows = 0, uint32_t cols = 0) {
  GraphSpec s;
  s.model = model;
  s.n = n;
  s.rows = rows;
  s.cols = cols;
  auto g = Generate(s, 1);
  EXPECT_TRUE(g.ok()) << g.status().ToString();
  return testing::ToTopology(*g);
}

TEST(ComputeStats, Ring) {
  for (uint32_t n : {3u, 10u, 11u, 1000u}) {
    const TopologyStats s = ComputeStats(Generated(GraphModel::kRing, n));
    EXPECT_EQ(s.vnodes, n);
    EXPECT_EQ(s.links, n);
    EXPECT_EQ(s.components, 1u);
    EXPECT_EQ(s.diameter_hops, n / 2);
    EXPECT_TRUE(s.diameter_exact);
    EXPECT_EQ(s.degree_histogram, (std::vector<std::pair<size_t, size_t>>{{2, n}}));
    EXPECT_EQ(s.min_degree, 2u);
    EXPECT_EQ(s.max_degree, 2u);
    EXPECT_DOUBLE_EQ(s.mean_degree, 2.0);
  }
}

TEST(ComputeStats, StarAndKinds) {
  const TopologyStats s = ComputeStats(Generated(GraphModel::kStar, 101));
  EXPECT_EQ(s.routers, 1u);
  EXPECT_EQ(s.hosts, 100u);
  EXPECT_EQ(s.switches, 0u);
  EXPECT_EQ(s.degree_histogram, (std::vector<std::pair<size_t, size_t>>{{1, 100}, {100, 1}}));
  EXPECT_EQ(s.diameter_hops, 2u);
  EXPECT_NEAR(s.mean_degree, 200.0 / 101, 1e-12);
}

TEST(ComputeStats, KnownDiameters) {
  EXPECT_EQ(ComputeStats(Generated(GraphModel::kLine, 50)).diameter_hops, 49u);
  EXPECT_EQ(ComputeStats(Generated(GraphModel::kGrid, 0, 6, 9)).diameter_hops, 5u + 8u);
  EXPECT_EQ(ComputeStats(Generated(GraphModel::kTorus, 0, 6, 9)).diameter_hops, 3u + 4u);
  EXPECT_EQ(ComputeStats(Generated(GraphModel::kFullMesh, 40)).diameter_hops, 1u);
  GraphSpec tree;
  tree.model = GraphModel::kTree;
  tree.fanout = 3;
  tree.depth = 5;
  EXPECT_EQ(ComputeStats(testing::ToTopology(*Generate(tree, 1))).diameter_hops, 10u);
}

// Exact diameter against brute force (BFS from every vnode) on random graphs.
TEST(ComputeStats, ExactDiameterMatchesBruteForce) {
  for (uint64_t seed = 1; seed <= 12; ++seed) {
    GraphSpec s;
    s.model = seed % 2 ? GraphModel::kWaxman : GraphModel::kBarabasiAlbert;
    s.n = 150;
    s.m = 1;
    s.beta = 0.05;
    const Topology topo = testing::ToTopology(*Generate(s, seed));
    size_t brute = 0;
    for (VnodeId src = 0; src < topo.num_vnodes(); ++src) {
      std::vector<int> dist(topo.num_vnodes(), -1);
      std::vector<VnodeId> q{src};
      dist[src] = 0;
      for (size_t h = 0; h < q.size(); ++h) {
        for (LinkId l : topo.incident(q[h])) {
          const VnodeId v = topo.Peer(l, q[h]);
          if (dist[v] < 0) dist[v] = dist[q[h]] + 1, q.push_back(v);
        }
      }
      for (int d : dist) brute = std::max<size_t>(brute, d);
    }
    EXPECT_EQ(ComputeStats(topo).diameter_hops, brute) << "seed " << seed;
  }
}

TEST(ComputeStats, DisconnectedAndLarge) {
  Builder b;
  for (int i = 0; i < 7; ++i) b.Add("v" + std::to_string(i));
  b.Join(0, 1, milliseconds(1));
  b.Join(1, 2, milliseconds(1));
  b.Join(2, 3, milliseconds(1));
  b.Join(4, 5, milliseconds(1));
  TopologyStats s = ComputeStats(b.topo);
  EXPECT_EQ(s.components, 3u);  // {0..3}, {4,5}, {6}
  EXPECT_EQ(s.largest_component, 4u);
  EXPECT_EQ(s.diameter_hops, 3u);
  EXPECT_EQ(s.min_degree, 0u);
  EXPECT_EQ(s.degree_histogram, (std::vector<std::pair<size_t, size_t>>{{0, 1}, {1, 4}, {2, 2}}));
  size_t count = 0;
  EXPECT_THAT(ConnectedComponents(b.topo, &count), ElementsAre(0, 0, 0, 0, 1, 1, 2));
  EXPECT_EQ(count, 3u);

  // Over the exact limit: a lower bound from double sweeps (exact on a line).
  s = ComputeStats(Generated(GraphModel::kLine, 100), /*exact_limit=*/10);
  EXPECT_FALSE(s.diameter_exact);
  EXPECT_EQ(s.diameter_hops, 99u);

  EXPECT_EQ(ComputeStats(Topology{}).vnodes, 0u);
  EXPECT_EQ(ComputeStats(Topology{}).components, 0u);
}

TEST(ComputeStats, HundredThousandVnodesIsFast) {
  GraphSpec s;
  s.model = GraphModel::kBarabasiAlbert;
  s.n = 100'000;
  s.m = 2;
  const Topology topo = testing::ToTopology(*Generate(s, 9));
  const auto t0 = std::chrono::steady_clock::now();
  const TopologyStats st = ComputeStats(topo);
  const double ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_EQ(st.components, 1u);
  EXPECT_FALSE(st.diameter_exact);
  EXPECT_GE(st.diameter_hops, 6u);
  EXPECT_LE(st.diameter_hops, 20u);
  std::printf("stats, barabasi-albert n=100000: %.1f ms (diameter >= %zu)\n", ms, st.diameter_hops);
  EXPECT_LT(ms, 5000);
}

}  // namespace
}  // namespace gridemu::topology

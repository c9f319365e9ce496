// Routing over the explicit-link model (DESIGN.md §4).
//
// Shortest paths are Dijkstra's algorithm (E. W. Dijkstra, "A note on two
// problems in connexion with graphs", Numerische Mathematik 1, 1959) with a
// binary heap and lazy deletion. The key of a vnode is (cost, hops), compared
// lexicographically — still a valid Dijkstra order, since both parts only
// grow along a path — and equal keys are broken by the lower predecessor (or
// next-hop) vnode id, then the lower link id, so results never depend on heap
// internals.
#include "gridemu/topology/routing.h"

#include <algorithm>
#include <functional>
#include <limits>
#include <queue>
#include <string>

namespace gridemu::topology {
namespace {

constexpr int64_t kInf = std::numeric_limits<int64_t>::max();
constexpr uint32_t kNone = std::numeric_limits<uint32_t>::max();

struct HeapEntry {
  int64_t cost;
  uint32_t hops;
  VnodeId v;
  bool operator>(const HeapEntry& o) const {
    if (cost != o.cost) return cost > o.cost;
    if (hops != o.hops) return hops > o.hops;
    return v > o.v;
  }
};

using MinHeap = std::priority_queue<HeapEntry, std::vector<HeapEntry>, std::greater<HeapEntry>>;

// Cost of sending on link `l` from vnode `from`.
int64_t Weight(const Topology& topo, LinkId l, VnodeId from, RouteMetric metric) {
  if (metric == RouteMetric::kHops) return 1;
  const auto& delay = topo.ProfileFrom(l, from).delay;
  return delay && delay->count() > 0 ? delay->count() : 0;
}

// Saturating addition, so absurd delays cannot wrap around.
int64_t AddCost(int64_t a, int64_t b) { return b > kInf - 1 - a ? kInf - 1 : a + b; }

// True when (cost, hops, via vnode, via link) is a better label than the current one.
bool Better(int64_t cost, uint32_t hops, VnodeId via_v, LinkId via_l, int64_t cur_cost,
            uint32_t cur_hops, VnodeId cur_v, LinkId cur_l) {
  if (cost != cur_cost) return cost < cur_cost;
  if (hops != cur_hops) return hops < cur_hops;
  if (via_v != cur_v) return via_v < cur_v;
  return via_l < cur_l;
}

// A host with exactly one link: it never forwards and never needs a
// forwarding table, and every path to it ends with its one link.
bool IsLeafHost(const Topology& topo, VnodeId v) {
  return topo.vnode(v).kind == VnodeKind::kHost && topo.incident(v).size() == 1;
}

// Reverse Dijkstra towards one destination, with buffers reused across
// destinations (only the vnodes touched by the last run are reset).
class ReverseTree {
 public:
  explicit ReverseTree(size_t n)
      : cost_(n, kInf), hops_(n, 0), next_(n, kNone), via_(n, kNone), done_(n, 0) {}

  // Fills the tree towards `dst`. With `skip_leaf_hosts`, leaf hosts other
  // than `dst` are left out (they get no label), which makes a run cost
  // O(core) instead of O(all vnodes) when most vnodes are single-homed hosts.
  void Run(const Topology& topo, VnodeId dst, RouteMetric metric, bool skip_leaf_hosts) {
    for (VnodeId v : touched_) {
      cost_[v] = kInf;
      hops_[v] = 0;
      next_[v] = kNone;
      via_[v] = kNone;
      done_[v] = 0;
    }
    touched_.clear();
    heap_ = MinHeap();
    cost_[dst] = 0;
    touched_.push_back(dst);
    heap_.push({0, 0, dst});
    while (!heap_.empty()) {
      const HeapEntry e = heap_.top();
      heap_.pop();
      const VnodeId u = e.v;
      if (done_[u] || e.cost != cost_[u] || e.hops != hops_[u]) continue;
      done_[u] = 1;
      // u is in the middle of the path of whoever sends to it (unless it is
      // the destination), so only forwarding vnodes pass their label on.
      if (u != dst && !Forwards(topo.vnode(u))) continue;
      for (LinkId l : topo.incident(u)) {
        const VnodeId v = topo.Peer(l, u);
        if (done_[v]) continue;
        if (skip_leaf_hosts && IsLeafHost(topo, v)) continue;
        const int64_t c = AddCost(e.cost, Weight(topo, l, v, metric));
        const uint32_t h = e.hops + 1;
        if (cost_[v] == kInf) touched_.push_back(v);
        if (Better(c, h, u, l, cost_[v], hops_[v], next_[v], via_[v])) {
          const bool key_changed = c != cost_[v] || h != hops_[v];
          cost_[v] = c;
          hops_[v] = h;
          next_[v] = u;
          via_[v] = l;
          if (key_changed) heap_.push({c, h, v});
        }
      }
    }
  }

  int64_t cost(VnodeId v) const { return cost_[v]; }
  // The link v sends on, kNone when v is the destination or unreachable.
  LinkId via(VnodeId v) const { return via_[v]; }

 private:
  std::vector<int64_t> cost_;
  std::vector<uint32_t> hops_;
  std::vector<VnodeId> next_;
  std::vector<LinkId> via_;
  std::vector<uint8_t> done_;
  std::vector<VnodeId> touched_;
  MinHeap heap_;
};

// Compressed adjacency (neighbour lists in one array) for the BFS-heavy statistics.
struct Csr {
  std::vector<uint32_t> start;  // size V+1
  std::vector<VnodeId> nbr;
};

Csr BuildCsr(const Topology& topo) {
  Csr g;
  const size_t n = topo.num_vnodes();
  g.start.resize(n + 1, 0);
  for (VnodeId v = 0; v < n; ++v) g.start[v + 1] = g.start[v] + topo.incident(v).size();
  g.nbr.resize(g.start[n]);
  for (VnodeId v = 0; v < n; ++v) {
    uint32_t k = g.start[v];
    for (LinkId l : topo.incident(v)) g.nbr[k++] = topo.Peer(l, v);
  }
  return g;
}

// Breadth-first search with buffers reused across runs.
class Bfs {
 public:
  explicit Bfs(const Csr& g) : g_(g), dist_(g.start.size() - 1, kNone) {}

  // Distances from `s`; returns the eccentricity of s and sets `*far` to
  // the farthest vnode (the lowest id among the farthest).
  uint32_t Run(VnodeId s, VnodeId* far, std::vector<VnodeId>* parent = nullptr) {
    for (VnodeId v : order_) dist_[v] = kNone;
    order_.clear();
    dist_[s] = 0;
    order_.push_back(s);
    if (parent) (*parent)[s] = s;
    VnodeId best = s;
    for (size_t head = 0; head < order_.size(); ++head) {
      const VnodeId u = order_[head];
      const uint32_t du = dist_[u];
      if (du > dist_[best] || (du == dist_[best] && u < best)) best = u;
      for (uint32_t k = g_.start[u]; k < g_.start[u + 1]; ++k) {
        const VnodeId v = g_.nbr[k];
        if (dist_[v] != kNone) continue;
        dist_[v] = du + 1;
        if (parent) (*parent)[v] = u;
        order_.push_back(v);
      }
    }
    if (far) *far = best;
    return dist_[best];
  }

  uint32_t dist(VnodeId v) const { return dist_[v]; }
  // Vnodes reached by the last run, in BFS order.
  const std::vector<VnodeId>& order() const { return order_; }

 private:
  const Csr& g_;
  std::vector<uint32_t> dist_;
  std::vector<VnodeId> order_;
};

// Exact diameter of the component of `start` by iFUB (Crescenzi, Grossi,
// Habib, Lanzi & Marino, "On computing the diameter of real-world undirected
// graphs", Theoretical Computer Science 514, 2013): BFS from a central vnode
// u, then eccentricities of the vnodes farthest from u first, stopping as soon
// as the lower bound exceeds what nearer vnodes could still reach (2(i-1)).
// Exact like BFS from every vnode, O(V (V+E)) in the worst case, but usually
// a handful of BFS runs. `u` is the midpoint of a double sweep.
size_t ExactDiameter(const Csr& g, Bfs& bfs, VnodeId start) {
  VnodeId a = start, b = start;
  bfs.Run(start, &a);
  std::vector<VnodeId> parent(g.start.size() - 1, kNone);
  const uint32_t ab = bfs.Run(a, &b, &parent);
  VnodeId u = b;
  for (uint32_t k = 0; k < ab / 2; ++k) u = parent[u];

  const uint32_t ecc_u = bfs.Run(u, nullptr);
  // Vnodes by distance from u (BFS order is already sorted by distance).
  std::vector<VnodeId> by_level = bfs.order();
  std::vector<uint32_t> level(by_level.size());
  for (size_t k = 0; k < by_level.size(); ++k) level[k] = bfs.dist(by_level[k]);
  size_t lb = std::max<size_t>(ecc_u, ab);
  size_t end = by_level.size();
  for (uint32_t i = ecc_u; i > 0; --i) {
    if (lb >= 2 * static_cast<size_t>(i)) break;  // the upper bound 2i is reached
    size_t begin = end;
    while (begin > 0 && level[begin - 1] == i) --begin;
    for (size_t k = begin; k < end; ++k) lb = std::max<size_t>(lb, bfs.Run(by_level[k], nullptr));
    end = begin;
    if (lb > 2 * (static_cast<size_t>(i) - 1)) break;
  }
  return lb;
}

// Lower bound on the diameter by repeated double sweeps (Magnien, Latapy &
// Habib, "Fast computation of empirically tight bounds for the diameter of
// massive graphs", ACM JEA 13, 2009): BFS from a vnode, then from the farthest
// vnode found, a few times over.
size_t DiameterLowerBound(Bfs& bfs, VnodeId start, int sweeps) {
  size_t lb = 0;
  VnodeId v = start;
  for (int k = 0; k < sweeps; ++k) {
    VnodeId far = v;
    lb = std::max<size_t>(lb, bfs.Run(v, &far));
    if (far == v) break;
    v = far;
  }
  return lb;
}

}  // namespace

bool Forwards(const Vnode& v) { return v.kind != VnodeKind::kHost; }

Result<Path> ShortestPath(const Topology& topo, VnodeId src, VnodeId dst, RouteMetric metric) {
  const size_t n = topo.num_vnodes();
  if (src >= n || dst >= n) {
    return InvalidArgumentError("vnode id " + std::to_string(src >= n ? src : dst) +
                                " is out of range (the topology has " + std::to_string(n) +
                                " vnodes)");
  }
  Path path;
  path.src = src;
  path.dst = dst;
  if (src == dst) {
    path.vnodes.push_back(src);
    return path;
  }
  std::vector<int64_t> cost(n, kInf);
  std::vector<uint32_t> hops(n, 0);
  std::vector<VnodeId> pred(n, kNone);
  std::vector<LinkId> pred_link(n, kNone);
  std::vector<uint8_t> done(n, 0);
  MinHeap heap;
  cost[src] = 0;
  heap.push({0, 0, src});
  while (!heap.empty()) {
    const HeapEntry e = heap.top();
    heap.pop();
    const VnodeId u = e.v;
    if (done[u] || e.cost != cost[u] || e.hops != hops[u]) continue;
    done[u] = 1;
    if (u == dst) break;
    if (u != src && !Forwards(topo.vnode(u))) continue;  // hosts are only endpoints
    for (LinkId l : topo.incident(u)) {
      const VnodeId v = topo.Peer(l, u);
      if (done[v]) continue;
      const int64_t c = AddCost(e.cost, Weight(topo, l, u, metric));
      const uint32_t h = e.hops + 1;
      if (Better(c, h, u, l, cost[v], hops[v], pred[v], pred_link[v])) {
        const bool key_changed = c != cost[v] || h != hops[v];
        cost[v] = c;
        hops[v] = h;
        pred[v] = u;
        pred_link[v] = l;
        if (key_changed) heap.push({c, h, v});
      }
    }
  }
  if (cost[dst] == kInf) {
    return NotFoundError("no path from '" + topo.vnode(src).name + "' to '" + topo.vnode(dst).name +
                         "' (hosts do not forward: a path may cross only routers and switches)");
  }
  for (VnodeId v = dst; v != src; v = pred[v]) {
    path.vnodes.push_back(v);
    path.links.push_back(pred_link[v]);
  }
  path.vnodes.push_back(src);
  std::reverse(path.vnodes.begin(), path.vnodes.end());
  std::reverse(path.links.begin(), path.links.end());
  return path;
}

PathProperties PathPropertiesOf(const Topology& topo, const Path& path) {
  PathProperties p;
  p.hops = path.links.size();
  double delivered = 1;
  for (size_t i = 0; i < path.links.size(); ++i) {
    const LinkProfile& prof = topo.ProfileFrom(path.links[i], path.vnodes[i]);
    if (prof.delay) p.delay += *prof.delay;
    if (prof.rate_bps) {
      p.rate_bps = p.rate_bps ? std::min(*p.rate_bps, *prof.rate_bps) : *prof.rate_bps;
    }
    if (prof.loss) delivered *= 1 - std::clamp(*prof.loss, 0.0, 1.0);
  }
  p.loss = 1 - delivered;
  return p;
}

NextHopTree NextHopsTowards(const Topology& topo, VnodeId dst, RouteMetric metric) {
  NextHopTree t;
  t.dst = dst;
  const size_t n = topo.num_vnodes();
  t.via.assign(n, std::nullopt);
  // Unreachable vnodes keep distance max() and no via; an out-of-range dst
  // gives such an all-unreachable tree.
  t.distance.assign(n, std::chrono::nanoseconds::max());
  if (dst >= n) return t;
  ReverseTree tree(n);
  tree.Run(topo, dst, metric, /*skip_leaf_hosts=*/false);
  for (VnodeId v = 0; v < n; ++v) {
    if (tree.cost(v) != kInf) t.distance[v] = std::chrono::nanoseconds(tree.cost(v));
    if (tree.via(v) != kNone) t.via[v] = tree.via(v);
  }
  return t;
}

Result<std::vector<NextHopTable>> ComputeNextHopTables(const Topology& topo,
                                                       const std::vector<VnodeId>& destinations,
                                                       RouteMetric metric, size_t max_entries) {
  const size_t n = topo.num_vnodes();
  std::vector<VnodeId> dests;
  if (destinations.empty()) {
    dests.resize(n);
    for (VnodeId v = 0; v < n; ++v) dests[v] = v;
  } else {
    for (VnodeId d : destinations) {
      if (d >= n) {
        return InvalidArgumentError("destination vnode id " + std::to_string(d) +
                                    " is out of range (the topology has " + std::to_string(n) +
                                    " vnodes)");
      }
    }
    dests = destinations;
    std::sort(dests.begin(), dests.end());
    dests.erase(std::unique(dests.begin(), dests.end()), dests.end());
  }

  // Who needs a table: routers, and hosts with more than one link.
  std::vector<VnodeId> owners;
  for (VnodeId v = 0; v < n; ++v) {
    const Vnode& vn = topo.vnode(v);
    if (vn.kind == VnodeKind::kRouter ||
        (vn.kind == VnodeKind::kHost && topo.incident(v).size() > 1)) {
      owners.push_back(v);
    }
  }
  const size_t r = owners.size(), d = dests.size();
  if (r != 0 && d > max_entries / r) {
    return ResourceExhaustedError(
        "next-hop tables: " + std::to_string(r) + " vnodes x " + std::to_string(d) +
        " destinations is over the limit of " + std::to_string(max_entries) +
        " entries; restrict the destinations (e.g. to hosts) or use the access model");
  }
  std::vector<NextHopTable> tables(r);
  for (size_t i = 0; i < r; ++i) tables[i].router = owners[i];
  if (r == 0) return tables;

  // A destination that is a leaf host h (one link l_h, to vnode a) needs no
  // Dijkstra of its own: every path to h ends a -> h, so the next hop towards
  // h is l_h at a and, at every other vnode, the next hop towards a (when a
  // forwards; costs differ by the constant w(a->h), so ties break the same
  // way). One run per distinct attachment vnode serves all its leaf hosts —
  // for a star of 100,000 hosts, one run in all.
  struct Root {
    VnodeId root;
    bool is_dest;       // the root itself is a destination
    VnodeId leaf_host;  // a leaf-host destination attached to the root, or kNone
  };
  std::vector<Root> jobs;
  jobs.reserve(d);
  for (VnodeId dst : dests) {
    if (IsLeafHost(topo, dst)) {
      const LinkId l = topo.incident(dst).front();
      jobs.push_back({topo.Peer(l, dst), false, dst});
    } else {
      jobs.push_back({dst, true, kNone});
    }
  }
  std::sort(jobs.begin(), jobs.end(), [](const Root& a, const Root& b) {
    if (a.root != b.root) return a.root < b.root;
    return a.is_dest > b.is_dest;
  });

  ReverseTree tree(n);
  for (size_t i = 0; i < jobs.size();) {
    const VnodeId root = jobs[i].root;
    tree.Run(topo, root, metric, /*skip_leaf_hosts=*/true);
    const bool root_forwards = Forwards(topo.vnode(root));
    for (; i < jobs.size() && jobs[i].root == root; ++i) {
      const Root& job = jobs[i];
      if (job.is_dest) {
        for (NextHopTable& t : tables) {
          if (t.router != root && tree.via(t.router) != kNone) {
            t.entries.emplace_back(root, tree.via(t.router));
          }
        }
        continue;
      }
      const VnodeId h = job.leaf_host;
      const LinkId last = topo.incident(h).front();
      for (NextHopTable& t : tables) {
        if (t.router == root) {
          t.entries.emplace_back(h, last);
        } else if (root_forwards && tree.via(t.router) != kNone) {
          t.entries.emplace_back(h, tree.via(t.router));
        }
      }
    }
  }
  for (NextHopTable& t : tables) {
    std::sort(t.entries.begin(), t.entries.end());
  }
  return tables;
}

std::vector<uint32_t> ConnectedComponents(const Topology& topo, size_t* count) {
  const size_t n = topo.num_vnodes();
  std::vector<uint32_t> comp(n, kNone);
  std::vector<VnodeId> queue;
  uint32_t next = 0;
  for (VnodeId s = 0; s < n; ++s) {
    if (comp[s] != kNone) continue;
    comp[s] = next;
    queue.assign(1, s);
    for (size_t head = 0; head < queue.size(); ++head) {
      const VnodeId u = queue[head];
      for (LinkId l : topo.incident(u)) {
        const VnodeId v = topo.Peer(l, u);
        if (comp[v] == kNone) {
          comp[v] = next;
          queue.push_back(v);
        }
      }
    }
    ++next;
  }
  if (count) *count = next;
  return comp;
}

TopologyStats ComputeStats(const Topology& topo, size_t exact_limit) {
  TopologyStats s;
  const size_t n = topo.num_vnodes();
  s.vnodes = n;
  s.links = topo.num_links();
  if (n == 0) return s;
  size_t max_deg = 0, min_deg = std::numeric_limits<size_t>::max();
  for (VnodeId v = 0; v < n; ++v) {
    switch (topo.vnode(v).kind) {
      case VnodeKind::kHost:
        ++s.hosts;
        break;
      case VnodeKind::kRouter:
        ++s.routers;
        break;
      case VnodeKind::kSwitch:
        ++s.switches;
        break;
    }
    const size_t deg = topo.incident(v).size();
    max_deg = std::max(max_deg, deg);
    min_deg = std::min(min_deg, deg);
  }
  std::vector<size_t> by_degree(max_deg + 1, 0);
  for (VnodeId v = 0; v < n; ++v) ++by_degree[topo.incident(v).size()];
  for (size_t k = 0; k <= max_deg; ++k) {
    if (by_degree[k] != 0) s.degree_histogram.emplace_back(k, by_degree[k]);
  }
  s.min_degree = min_deg;
  s.max_degree = max_deg;
  s.mean_degree = 2.0 * static_cast<double>(s.links) / static_cast<double>(n);

  std::vector<uint32_t> comp = ConnectedComponents(topo, &s.components);
  std::vector<size_t> sizes(s.components, 0);
  for (uint32_t c : comp) ++sizes[c];
  const auto largest =
      static_cast<uint32_t>(std::max_element(sizes.begin(), sizes.end()) - sizes.begin());
  s.largest_component = sizes[largest];
  // Start from a vnode of highest degree in the largest component: a central
  // start makes the sweeps converge faster.
  VnodeId start = kNone;
  for (VnodeId v = 0; v < n; ++v) {
    if (comp[v] == largest &&
        (start == kNone || topo.incident(v).size() > topo.incident(start).size())) {
      start = v;
    }
  }
  const Csr g = BuildCsr(topo);
  Bfs bfs(g);
  if (s.largest_component <= exact_limit) {
    s.diameter_hops = ExactDiameter(g, bfs, start);
    s.diameter_exact = true;
  } else {
    s.diameter_hops = DiameterLowerBound(bfs, start, /*sweeps=*/8);
    s.diameter_exact = false;
  }
  return s;
}

}  // namespace gridemu::topology

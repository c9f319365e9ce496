// Multi-pnode placement: METIS k-way, random and round-robin. See placement.h
// for the model (capacity, load, imbalance, edge cut) and the errors.
#include "gridemu/controller/placement.h"

#include <metis.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "gridemu/common/random.h"

namespace gridemu::controller {
namespace {

using topology::Topology;
using topology::VnodeId;

constexpr uint64_t kUnlimited = std::numeric_limits<uint64_t>::max();
constexpr size_t kRuntimes = 3;  // topology::Runtime values
// Sums of METIS weights (vertex or edge) stay below this, so that METIS's
// 32-bit idx_t never overflows while it adds weights up during coarsening.
constexpr uint64_t kMaxWeightSum = uint64_t{1} << 29;
// Rate standing for unshaped links when no link of the topology has a rate.
constexpr uint64_t kFallbackUnshapedRateBps = 1'000'000'000;
// Passes of the greedy refinement after METIS (each is O(vnodes + links)).
constexpr int kRefinePasses = 4;
// Floor of the imbalance METIS is asked for when the rooms leave less slack.
// Tighter bounds make METIS trade cut for balance that the repair pass gets
// more cheaply: 100,000 vnodes (BA, m = 2) on 1,000 full pnodes of 100 gave
// 106,000-130,000 cut links at 0.1 % against 101,000 at 1 % (and 100,200 at
// 3 %, where METIS is slower and the repair moves ~3 % of the vnodes).
constexpr double kMinMetisImbalance = 0.01;
constexpr double kInf = std::numeric_limits<double>::infinity();

// "100500" -> "100,500".
std::string WithCommas(uint64_t n) {
  std::string s = std::to_string(n);
  for (int i = static_cast<int>(s.size()) - 3; i > 0; i -= 3) s.insert(static_cast<size_t>(i), ",");
  return s;
}

std::string Plural(uint64_t n, std::string_view one, std::string_view many) {
  return WithCommas(n) + " " + std::string(n == 1 ? one : many);
}

size_t RuntimeIndex(topology::Runtime r) { return static_cast<size_t>(r); }

// A vnode's load in millicores.
uint64_t CpuMillicores(const topology::Vnode& v, const PlacementOptions& o) {
  if (!v.resources.cpu) return o.default_cpu_millicores;
  double m = std::round(*v.resources.cpu * 1000.0);
  return m < 1 ? 1 : static_cast<uint64_t>(m);
}

uint64_t MemoryBytes(const topology::Vnode& v, const PlacementOptions& o) {
  return v.resources.memory_bytes.value_or(o.default_memory_bytes);
}

// Room of a pnode: max_vnodes - vnodes_in_use, kUnlimited for max_vnodes 0.
uint64_t Room(const PnodeCapacity& p) {
  if (p.max_vnodes == 0) return kUnlimited;
  return p.max_vnodes > p.vnodes_in_use ? p.max_vnodes - p.vnodes_in_use : 0;
}

// Each pnode's share of the load, summing to 1 (all zero when no pnode has room).
std::vector<double> Shares(const std::vector<PnodeCapacity>& pnodes, CapacityMeasure measure) {
  const size_t n = pnodes.size();
  if (measure == CapacityMeasure::kAuto) {
    bool all_vnodes = !pnodes.empty(), all_cores = !pnodes.empty();
    for (const auto& p : pnodes) {
      all_vnodes = all_vnodes && p.max_vnodes > 0;
      all_cores = all_cores && p.cores > 0;
    }
    measure = all_vnodes  ? CapacityMeasure::kVnodes
              : all_cores ? CapacityMeasure::kCores
                          : CapacityMeasure::kEqual;
  }
  std::vector<double> cap(n, 1.0);
  if (measure == CapacityMeasure::kVnodes) {
    // Pnodes without max_vnodes count as the average room of those with one.
    double sum = 0;
    size_t limited = 0;
    for (const auto& p : pnodes) {
      if (p.max_vnodes == 0) continue;
      sum += static_cast<double>(Room(p));
      ++limited;
    }
    const double avg = limited ? sum / static_cast<double>(limited) : 1.0;
    for (size_t i = 0; i < n; ++i) {
      cap[i] = pnodes[i].max_vnodes ? static_cast<double>(Room(pnodes[i])) : avg;
    }
  } else if (measure == CapacityMeasure::kCores) {
    for (size_t i = 0; i < n; ++i) cap[i] = pnodes[i].cores;
  }
  // A pnode without room takes nothing, whatever its cores.
  for (size_t i = 0; i < n; ++i) {
    if (Room(pnodes[i]) == 0) cap[i] = 0;
  }
  double total = std::accumulate(cap.begin(), cap.end(), 0.0);
  if (total <= 0) {  // e.g. kCores with no cores announced: equal shares among pnodes with room
    for (size_t i = 0; i < n; ++i) cap[i] = Room(pnodes[i]) ? 1.0 : 0.0;
    total = std::accumulate(cap.begin(), cap.end(), 0.0);
  }
  if (total > 0) {
    for (double& c : cap) c /= total;
  }
  return cap;
}

// Distributes `m` items over bins of weight w[i] >= 0, each at most cap[i]:
// about m * w[i] / sum(w), the capped bins' excess going to the others in
// proportion to their weight (equally when their weights are all 0), then
// rounded by largest remainder (ties to the lower index). Needs sum(cap) >= m.
std::vector<uint64_t> Apportion(uint64_t m, const std::vector<double>& w,
                                const std::vector<uint64_t>& cap) {
  const size_t n = w.size();
  std::vector<uint64_t> q(n, 0);
  std::vector<char> active(n, 0);
  for (size_t i = 0; i < n; ++i) active[i] = cap[i] > 0;
  uint64_t left = m;
  std::vector<double> ideal(n, 0);
  for (;;) {
    double wsum = 0;
    size_t nactive = 0;
    for (size_t i = 0; i < n; ++i) {
      if (!active[i]) continue;
      wsum += w[i];
      ++nactive;
    }
    if (nactive == 0 || left == 0) break;
    bool capped = false;
    for (size_t i = 0; i < n; ++i) {
      if (!active[i]) continue;
      double wi = wsum > 0 ? w[i] / wsum : 1.0 / static_cast<double>(nactive);
      ideal[i] = static_cast<double>(left) * wi;
      if (cap[i] != kUnlimited && ideal[i] >= static_cast<double>(cap[i])) {
        q[i] = cap[i];
        left -= cap[i];
        active[i] = 0;
        capped = true;
      }
    }
    if (capped) continue;
    uint64_t given = 0;
    std::vector<std::pair<double, size_t>> rest;
    for (size_t i = 0; i < n; ++i) {
      if (!active[i]) continue;
      double f = std::floor(ideal[i]);
      q[i] = static_cast<uint64_t>(f);
      given += q[i];
      rest.emplace_back(ideal[i] - f, i);
    }
    std::stable_sort(rest.begin(), rest.end(),
                     [](const auto& a, const auto& b) { return a.first > b.first; });
    for (size_t k = 0; given < left && k < rest.size(); ++k, ++given) ++q[rest[k].second];
    // Rounding can only fall short by less than one per bin; anything left
    // (floating-point edge cases) goes to bins with room, in order.
    for (size_t i = 0; given < left && i < n; ++i) {
      if (active[i] && q[i] < cap[i]) {
        ++q[i];
        ++given;
      }
    }
    break;
  }
  return q;
}

// Inputs checked and digested, shared by the three algorithms.
struct Prepared {
  size_t num_pnodes = 0;
  std::vector<uint64_t> room;  // hard limit per pnode (kUnlimited = none)
  std::vector<double> share;   // target share of the load per pnode
  std::vector<int64_t> pin;    // pnode index per vnode, -1 = free
  std::vector<uint64_t> cpu;   // load per vnode, millicores
  uint64_t total_cpu = 0;
  std::vector<uint64_t> pinned_count;  // per pnode
  std::vector<uint64_t> pinned_cpu;    // per pnode
  uint64_t num_pinned = 0;
  // offers[r][p]: pnode p may run runtime r; restricted[r]: some pnode may not.
  std::array<std::vector<char>, kRuntimes> offers;
  std::array<bool, kRuntimes> restricted{};
  std::vector<uint8_t> runtime;  // per vnode, RuntimeIndex()

  bool Allowed(VnodeId v, size_t p) const { return offers[runtime[v]][p] != 0; }
  bool Restricted(VnodeId v) const { return restricted[runtime[v]]; }
};

Status CheckOptions(const PlacementOptions& o) {
  if (o.default_cpu_millicores == 0) {
    return InvalidArgumentError("placement: default_cpu_millicores must be above 0");
  }
  if (!(o.max_imbalance >= 0.001 && o.max_imbalance <= 1.0)) {
    return InvalidArgumentError("placement: max_imbalance " + std::to_string(o.max_imbalance) +
                                " is out of range; expected 0.001..1 (a fraction: 0.03 = 3%)");
  }
  return Status::Ok();
}

Result<Prepared> Prepare(const Topology& topo, const std::vector<PnodeCapacity>& pnodes,
                         const PlacementOptions& options) {
  GRIDEMU_RETURN_IF_ERROR(CheckOptions(options));
  if (pnodes.empty()) {
    return UnavailableError(
        "no pnode to place vnodes on: start gridemu-agent on a pnode (or use `gridemu run`, "
        "which starts a local one)");
  }
  Prepared pr;
  const size_t np = pnodes.size();
  const size_t nv = topo.num_vnodes();
  pr.num_pnodes = np;
  std::unordered_map<std::string, size_t> by_id;
  for (size_t i = 0; i < np; ++i) {
    if (!by_id.emplace(pnodes[i].host_id, i).second) {
      return InvalidArgumentError("placement: pnode '" + pnodes[i].host_id + "' is listed twice");
    }
    pr.room.push_back(Room(pnodes[i]));
  }
  for (size_t r = 0; r < kRuntimes; ++r) {
    auto name = topology::RuntimeName(static_cast<topology::Runtime>(r));
    pr.offers[r].assign(np, 1);
    for (size_t i = 0; i < np; ++i) {
      const auto& rts = pnodes[i].runtimes;
      if (!rts.empty() && std::find(rts.begin(), rts.end(), name) == rts.end()) {
        pr.offers[r][i] = 0;
        pr.restricted[r] = true;
      }
    }
  }
  // Pins and runtimes.
  pr.pin.assign(nv, -1);
  pr.cpu.resize(nv);
  pr.runtime.resize(nv);
  pr.pinned_count.assign(np, 0);
  pr.pinned_cpu.assign(np, 0);
  std::array<uint64_t, kRuntimes> need{};
  for (VnodeId v = 0; v < nv; ++v) {
    const auto& vn = topo.vnode(v);
    const size_t rt = RuntimeIndex(vn.runtime);
    pr.runtime[v] = static_cast<uint8_t>(rt);
    pr.cpu[v] = CpuMillicores(vn, options);
    pr.total_cpu += pr.cpu[v];
    ++need[rt];
    if (vn.host.empty()) continue;
    auto it = by_id.find(vn.host);
    if (it == by_id.end()) {
      return FailedPreconditionError("vnode '" + vn.name + "' is pinned to unknown pnode '" +
                                     vn.host + "'");
    }
    if (!pr.offers[rt][it->second]) {
      return FailedPreconditionError("vnode '" + vn.name + "' needs runtime '" +
                                     std::string(topology::RuntimeName(vn.runtime)) +
                                     "', which pnode '" + vn.host +
                                     "' (where it is pinned) does not offer");
    }
    pr.pin[v] = static_cast<int64_t>(it->second);
    ++pr.pinned_count[it->second];
    pr.pinned_cpu[it->second] += pr.cpu[v];
    ++pr.num_pinned;
  }
  for (VnodeId v = 0; v < nv; ++v) {
    const size_t rt = pr.runtime[v];
    if (!pr.restricted[rt]) continue;
    if (std::none_of(pr.offers[rt].begin(), pr.offers[rt].end(), [](char c) { return c; })) {
      return FailedPreconditionError("vnode '" + topo.vnode(v).name + "' needs runtime '" +
                                     std::string(topology::RuntimeName(topo.vnode(v).runtime)) +
                                     "', which no pnode offers");
    }
  }
  // Capacity: all vnodes, then each pnode's pins, then each restricted runtime.
  uint64_t total_room = 0, in_use = 0;
  bool limited = true;
  for (size_t i = 0; i < np; ++i) {
    if (pr.room[i] == kUnlimited)
      limited = false;
    else
      total_room += pr.room[i];
    if (pnodes[i].max_vnodes) in_use += std::min(pnodes[i].vnodes_in_use, pnodes[i].max_vnodes);
  }
  if (limited && nv > total_room) {
    std::string msg = WithCommas(nv) + " vnodes do not fit: the " +
                      Plural(np, "pnode holds", "pnodes hold") + " at most " +
                      WithCommas(total_room) + " (max_vnodes";
    if (in_use) msg += ", less " + WithCommas(in_use) + " in use by other experiments";
    return ResourceExhaustedError(msg + ")");
  }
  for (size_t i = 0; i < np; ++i) {
    if (pr.pinned_count[i] <= pr.room[i]) continue;
    std::string msg = "pnode '" + pnodes[i].host_id + "' holds at most " +
                      Plural(pr.room[i], "vnode", "vnodes") + " (max_vnodes";
    if (pnodes[i].vnodes_in_use) {
      msg += " " + WithCommas(pnodes[i].max_vnodes) + " less " +
             WithCommas(pnodes[i].vnodes_in_use) + " in use by other experiments";
    }
    return ResourceExhaustedError(msg + ") but " + WithCommas(pr.pinned_count[i]) +
                                  (pr.pinned_count[i] == 1 ? " is" : " are") + " pinned to it");
  }
  for (size_t r = 0; r < kRuntimes; ++r) {
    if (!pr.restricted[r] || need[r] == 0) continue;
    uint64_t room = 0;
    size_t offering = 0;
    for (size_t i = 0; i < np; ++i) {
      if (!pr.offers[r][i]) continue;
      ++offering;
      room = pr.room[i] == kUnlimited ? kUnlimited : room == kUnlimited ? room : room + pr.room[i];
    }
    if (room != kUnlimited && need[r] > room) {
      return ResourceExhaustedError(
          WithCommas(need[r]) + " vnodes need runtime '" +
          std::string(topology::RuntimeName(static_cast<topology::Runtime>(r))) + "': the " +
          Plural(offering, "pnode that offers", "pnodes that offer") + " it hold at most " +
          WithCommas(room) + " (max_vnodes)");
    }
  }
  pr.share = Shares(pnodes, options.capacity);
  return pr;
}

// ------------------------------------------------------------------ state

// A working assignment with per-pnode counts and loads, and the weighted
// vnode graph (parallel links merged, METIS-scaled weights) for gains.
struct Work {
  const Prepared* pr = nullptr;
  std::vector<uint32_t> part;   // pnode per vnode
  std::vector<uint64_t> count;  // vnodes per pnode
  std::vector<uint64_t> load;   // millicores per pnode
  std::vector<double> limit;    // soft load bound per pnode (target * (1 + u))
  std::vector<double> target;   // target load per pnode
  // Merged adjacency of all vnodes.
  std::vector<uint64_t> xadj;
  std::vector<uint32_t> adj;
  std::vector<int64_t> wgt;
  // Scratch for Connectivity().
  std::vector<int64_t> conn;
  std::vector<uint32_t> touched;

  void Move(VnodeId v, uint32_t to) {
    const uint32_t from = part[v];
    --count[from];
    load[from] -= pr->cpu[v];
    ++count[to];
    load[to] += pr->cpu[v];
    part[v] = to;
  }
  bool HasRoom(uint32_t p) const { return count[p] < pr->room[p]; }
  double Ratio(uint32_t p, uint64_t extra) const {
    return target[p] > 0 ? static_cast<double>(load[p] + extra) / target[p]
                         : std::numeric_limits<double>::infinity();
  }
  // Fills conn[] with v's link weight towards each pnode; touched lists them.
  void Connectivity(VnodeId v) {
    for (uint32_t p : touched) conn[p] = 0;
    touched.clear();
    for (uint64_t k = xadj[v]; k < xadj[v + 1]; ++k) {
      const uint32_t p = part[adj[k]];
      if (conn[p] == 0) touched.push_back(p);
      conn[p] += wgt[k];
    }
  }
};

// Edge weight of each link: min of its directions' rates (an unshaped link:
// the unshaped rate), scaled to 1..K with K * links <= kMaxWeightSum.
std::vector<int64_t> LinkWeights(const Topology& topo, const PlacementOptions& options) {
  const size_t nl = topo.num_links();
  std::vector<uint64_t> rate(nl, 0);
  uint64_t max_shaped = 0;
  for (size_t l = 0; l < nl; ++l) {
    const auto& link = topo.link(static_cast<topology::LinkId>(l));
    uint64_t r = 0;
    if (link.forward.rate_bps) r = *link.forward.rate_bps;
    if (link.reverse.rate_bps) r = r ? std::min(r, *link.reverse.rate_bps) : *link.reverse.rate_bps;
    rate[l] = r;
    max_shaped = std::max(max_shaped, r);
  }
  uint64_t unshaped = options.unshaped_link_rate_bps;
  if (unshaped == 0) unshaped = max_shaped ? max_shaped : kFallbackUnshapedRateBps;
  uint64_t max_rate = 1;
  for (uint64_t& r : rate) {
    if (r == 0) r = unshaped;
    max_rate = std::max(max_rate, r);
  }
  const uint64_t k = std::clamp<uint64_t>(kMaxWeightSum / std::max<size_t>(nl, 1), 1, 1'000'000);
  std::vector<int64_t> w(nl);
  for (size_t l = 0; l < nl; ++l) {
    double x =
        static_cast<double>(rate[l]) / static_cast<double>(max_rate) * static_cast<double>(k);
    w[l] = std::max<int64_t>(1, std::llround(x));
  }
  return w;
}

// Builds the merged adjacency (CSR) of the whole vnode graph.
void BuildGraph(const Topology& topo, const std::vector<int64_t>& link_w, Work& w) {
  const size_t nv = topo.num_vnodes();
  w.xadj.assign(nv + 1, 0);
  w.adj.clear();
  w.wgt.clear();
  w.adj.reserve(2 * topo.num_links());
  w.wgt.reserve(2 * topo.num_links());
  std::vector<std::pair<uint32_t, int64_t>> nb;
  for (VnodeId v = 0; v < nv; ++v) {
    nb.clear();
    for (topology::LinkId l : topo.incident(v)) nb.emplace_back(topo.Peer(l, v), link_w[l]);
    std::sort(nb.begin(), nb.end());
    for (size_t i = 0; i < nb.size(); ++i) {
      if (!w.adj.empty() && w.adj.size() > w.xadj[v] && w.adj.back() == nb[i].first) {
        w.wgt.back() += nb[i].second;  // parallel link
      } else {
        w.adj.push_back(nb[i].first);
        w.wgt.push_back(nb[i].second);
      }
    }
    w.xadj[v + 1] = w.adj.size();
  }
}

void InitWork(const Prepared& pr, double imbalance, Work& w) {
  const size_t np = pr.num_pnodes;
  w.pr = &pr;
  w.count.assign(np, 0);
  w.load.assign(np, 0);
  w.target.assign(np, 0);
  w.limit.assign(np, 0);
  w.conn.assign(np, 0);
  w.touched.clear();
  for (size_t p = 0; p < np; ++p) {
    w.target[p] = pr.share[p] * static_cast<double>(pr.total_cpu);
    w.limit[p] = w.target[p] * (1.0 + imbalance);
  }
  for (VnodeId v = 0; v < w.part.size(); ++v) {
    ++w.count[w.part[v]];
    w.load[w.part[v]] += pr.cpu[v];
  }
}

// The best pnode to move v to: allowed, with room, not `from`, and with a
// load ratio (load / target) below `max_ratio` once v is there; most connected
// first, then least loaded relative to its target, then lowest index. -1 if none.
int64_t BestDestination(Work& w, VnodeId v, uint32_t from, double max_ratio) {
  const Prepared& pr = *w.pr;
  auto ok = [&](uint32_t p) {
    return p != from && pr.Allowed(v, p) && w.HasRoom(p) &&
           (max_ratio == kInf || w.Ratio(p, pr.cpu[v]) < max_ratio);
  };
  w.Connectivity(v);
  int64_t best = -1;
  int64_t best_conn = 0;
  double best_ratio = 0;
  for (uint32_t p : w.touched) {
    if (!ok(p)) continue;
    double ratio = w.Ratio(p, pr.cpu[v]);
    if (best < 0 || w.conn[p] > best_conn ||
        (w.conn[p] == best_conn && (ratio < best_ratio || (ratio == best_ratio && p < best)))) {
      best = p;
      best_conn = w.conn[p];
      best_ratio = ratio;
    }
  }
  if (best >= 0) return best;
  for (uint32_t p = 0; p < pr.num_pnodes; ++p) {
    if (w.conn[p] != 0 || !ok(p)) continue;
    double ratio = w.Ratio(p, pr.cpu[v]);
    if (best < 0 || ratio < best_ratio) {
      best = p;
      best_ratio = ratio;
    }
  }
  return best;
}

// Moves vnodes until every vnode sits on a pnode that offers its runtime and
// no pnode holds more than its room (hard), then moves vnodes off pnodes over
// their load limit (METIS's bound, which it can miss on small or lumpy graphs)
// to pnodes that stay less loaded than the source was (soft: each move lowers
// the worst ratio, so a pnode can stay over when no move helps). Each time the
// vnode and destination that lose the least link weight go first.
Status Repair(const Topology& topo, Work& w) {
  const Prepared& pr = *w.pr;
  const size_t np = pr.num_pnodes;
  // Runtime.
  for (VnodeId v = 0; v < w.part.size(); ++v) {
    if (pr.pin[v] >= 0 || !pr.Restricted(v) || pr.Allowed(v, w.part[v])) continue;
    int64_t to = BestDestination(w, v, w.part[v], kInf);
    if (to < 0) {
      return ResourceExhaustedError("vnode '" + topo.vnode(v).name + "' needs runtime '" +
                                    std::string(topology::RuntimeName(topo.vnode(v).runtime)) +
                                    "' and no pnode that offers it has room left");
    }
    w.Move(v, static_cast<uint32_t>(to));
  }
  std::vector<std::vector<VnodeId>> members(np);
  for (VnodeId v = 0; v < w.part.size(); ++v) {
    if (pr.pin[v] < 0) members[w.part[v]].push_back(v);
  }
  struct Cand {
    int64_t gain;
    VnodeId v;
  };
  for (int hard = 1; hard >= 0; --hard) {
    for (uint32_t p = 0; p < np; ++p) {
      auto over = [&] {
        return hard ? w.count[p] > pr.room[p] : static_cast<double>(w.load[p]) > w.limit[p];
      };
      if (!over()) continue;
      std::vector<Cand> cands;
      for (VnodeId v : members[p]) {
        if (w.part[v] != p) continue;
        int64_t to = BestDestination(w, v, p, hard ? kInf : w.Ratio(p, 0));
        if (to < 0) continue;
        cands.push_back({w.conn[to] - w.conn[p], v});
      }
      std::stable_sort(cands.begin(), cands.end(),
                       [](const Cand& a, const Cand& b) { return a.gain > b.gain; });
      for (const Cand& c : cands) {
        if (!over()) break;
        // Rooms and loads change as we go.
        int64_t to = BestDestination(w, c.v, p, hard ? kInf : w.Ratio(p, 0));
        if (to < 0) continue;
        w.Move(c.v, static_cast<uint32_t>(to));
        members[to].push_back(c.v);
      }
      if (hard && over()) {
        return InternalError("placement: cannot bring pnode #" + std::to_string(p) +
                             " within its room (" + std::to_string(pr.room[p]) + " vnodes)");
      }
    }
  }
  return Status::Ok();
}

// Greedy boundary refinement: moves a vnode to the pnode it is most connected
// to when that lowers the cut and the destination keeps its room and load limit.
void Refine(Work& w) {
  const Prepared& pr = *w.pr;
  for (int pass = 0; pass < kRefinePasses; ++pass) {
    size_t moved = 0;
    for (VnodeId v = 0; v < w.part.size(); ++v) {
      if (pr.pin[v] >= 0) continue;
      const uint32_t from = w.part[v];
      w.Connectivity(v);
      const int64_t own = w.conn[from];
      int64_t best = -1, best_conn = own;
      for (uint32_t p : w.touched) {
        if (p == from || w.conn[p] <= best_conn) continue;
        if (!pr.Allowed(v, p) || !w.HasRoom(p)) continue;
        if (static_cast<double>(w.load[p] + pr.cpu[v]) > w.limit[p]) continue;
        best = p;
        best_conn = w.conn[p];
      }
      if (best < 0) continue;
      w.Move(v, static_cast<uint32_t>(best));
      ++moved;
    }
    if (moved == 0) break;
  }
}

Placement Finish(const Topology& topo, const std::vector<PnodeCapacity>& pnodes,
                 std::vector<uint32_t> part, std::string algorithm,
                 const PlacementOptions& options) {
  Placement p;
  for (const auto& c : pnodes) p.pnodes.push_back(c.host_id);
  PlacementReport r = EvaluatePlacement(topo, pnodes, part, options);
  p.pnode_of_vnode = std::move(part);
  p.algorithm = std::move(algorithm);
  p.cut_links = r.cut_links;
  p.cut_rate_bps = r.cut_rate_bps;
  p.imbalance = r.imbalance;
  return p;
}

// Pins first: every vnode's pnode, or UINT32_MAX for a free one.
std::vector<uint32_t> PinnedPart(const Prepared& pr) {
  std::vector<uint32_t> part(pr.pin.size(), UINT32_MAX);
  for (size_t v = 0; v < pr.pin.size(); ++v) {
    if (pr.pin[v] >= 0) part[v] = static_cast<uint32_t>(pr.pin[v]);
  }
  return part;
}

// Slots of each pnode for the free vnodes: its share of all vnodes less its
// pins, never beyond its room.
std::vector<uint64_t> FreeSlots(const Prepared& pr) {
  const size_t np = pr.num_pnodes;
  const double nv = static_cast<double>(pr.pin.size());
  std::vector<double> want(np);
  std::vector<uint64_t> cap(np);
  for (size_t p = 0; p < np; ++p) {
    want[p] = std::max(0.0, pr.share[p] * nv - static_cast<double>(pr.pinned_count[p]));
    cap[p] = pr.room[p] == kUnlimited ? kUnlimited : pr.room[p] - pr.pinned_count[p];
  }
  return Apportion(pr.pin.size() - pr.num_pinned, want, cap);
}

// Places the free runtime-restricted vnodes (random and round-robin do them
// before the others): each on a pnode that offers its runtime, one with slots
// left if `pick(v, fits)` finds one, else one with room left. `pick` returns
// a pnode index for which fits(p) holds, or -1. Updates `slots` (free slots of
// each pnode's share) and `used` (vnodes on each pnode).
template <typename Pick>
Status DealRestricted(const Topology& topo, const Prepared& pr, std::vector<uint32_t>& part,
                      std::vector<uint64_t>& slots, std::vector<uint64_t>& used, Pick pick) {
  for (VnodeId v = 0; v < part.size(); ++v) {
    if (part[v] != UINT32_MAX || !pr.Restricted(v)) continue;
    int64_t p = pick(v, [&](size_t q) { return pr.Allowed(v, q) && slots[q] > 0; });
    if (p < 0) {
      p = pick(v, [&](size_t q) { return pr.Allowed(v, q) && used[q] < pr.room[q]; });
    } else {
      --slots[p];
    }
    if (p < 0) {
      return ResourceExhaustedError("vnode '" + topo.vnode(v).name + "' needs runtime '" +
                                    std::string(topology::RuntimeName(topo.vnode(v).runtime)) +
                                    "' and no pnode that offers it has room left");
    }
    part[v] = static_cast<uint32_t>(p);
    ++used[p];
  }
  return Status::Ok();
}

std::vector<uint64_t> Used(const Prepared& pr) { return pr.pinned_count; }

// ------------------------------------------------------------------ METIS

std::string MetisErrorName(int rc) {
  switch (rc) {
    case METIS_ERROR_INPUT:
      return "METIS_ERROR_INPUT";
    case METIS_ERROR_MEMORY:
      return "METIS_ERROR_MEMORY";
    default:
      return "METIS_ERROR (" + std::to_string(rc) + ")";
  }
}

// Scales weights so that their sum stays below kMaxWeightSum; each >= 1.
std::vector<idx_t> ScaleWeights(const std::vector<uint64_t>& w) {
  uint64_t sum = 0;
  for (uint64_t x : w) sum += x;
  const double f =
      sum > kMaxWeightSum ? static_cast<double>(kMaxWeightSum) / static_cast<double>(sum) : 1.0;
  std::vector<idx_t> out(w.size());
  for (size_t i = 0; i < w.size(); ++i) {
    out[i] = static_cast<idx_t>(std::max<int64_t>(1, std::llround(static_cast<double>(w[i]) * f)));
  }
  return out;
}

// Relabels METIS parts among parts of equal targets so that each lands on
// the pnode whose pinned vnodes it is most connected to (METIS's labels are
// arbitrary; the pins' pull is not). part_key[i] identifies part i's targets.
void RelabelTowardsPins(const Work& w, const std::vector<uint32_t>& local_to_v,
                        const std::vector<uint32_t>& eligible,
                        const std::vector<std::pair<double, double>>& part_key,
                        std::vector<idx_t>& mpart) {
  const Prepared& pr = *w.pr;
  const size_t nparts = eligible.size();
  std::vector<int64_t> part_of_pnode(pr.num_pnodes, -1);
  for (size_t i = 0; i < nparts; ++i) part_of_pnode[eligible[i]] = static_cast<int64_t>(i);
  std::unordered_map<uint64_t, int64_t> pull;  // from * nparts + to -> link weight
  for (size_t i = 0; i < local_to_v.size(); ++i) {
    const VnodeId v = local_to_v[i];
    for (uint64_t k = w.xadj[v]; k < w.xadj[v + 1]; ++k) {
      const int64_t pin = pr.pin[w.adj[k]];
      if (pin < 0 || part_of_pnode[pin] < 0) continue;
      const uint64_t to = static_cast<uint64_t>(part_of_pnode[pin]);
      if (part_key[static_cast<size_t>(mpart[i])] != part_key[to]) continue;
      pull[static_cast<uint64_t>(mpart[i]) * nparts + to] += w.wgt[k];
    }
  }
  if (pull.empty()) return;
  std::vector<std::pair<int64_t, uint64_t>> entries;
  entries.reserve(pull.size());
  for (const auto& [key, weight] : pull) entries.emplace_back(weight, key);
  std::sort(entries.begin(), entries.end(), [](const auto& a, const auto& b) {
    return a.first != b.first ? a.first > b.first : a.second < b.second;
  });
  std::vector<int64_t> label(nparts, -1);
  std::vector<char> taken(nparts, 0);
  for (const auto& [weight, key] : entries) {
    const size_t from = key / nparts, to = key % nparts;
    if (label[from] >= 0 || taken[to]) continue;
    label[from] = static_cast<int64_t>(to);
    taken[to] = 1;
  }
  // The other parts keep the free labels of their group, in order.
  for (size_t from = 0; from < nparts; ++from) {
    if (label[from] >= 0) continue;
    if (!taken[from]) {
      label[from] = static_cast<int64_t>(from);
      taken[from] = 1;
    }
  }
  for (size_t from = 0; from < nparts; ++from) {
    if (label[from] >= 0) continue;
    for (size_t to = 0; to < nparts; ++to) {
      if (!taken[to] && part_key[to] == part_key[from]) {
        label[from] = static_cast<int64_t>(to);
        taken[to] = 1;
        break;
      }
    }
  }
  for (idx_t& x : mpart) x = static_cast<idx_t>(label[static_cast<size_t>(x)]);
}

// Partitions the free vnodes of `w.part` (UINT32_MAX) over `eligible` pnodes
// with METIS, whose part i is eligible[i], targets `rt` (cpu) and `rt_mem`
// (memory, used when options.balance_memory).
Status RunMetis(const Topology& topo, const PlacementOptions& options, double imbalance,
                const std::vector<uint32_t>& eligible, const std::vector<double>& rt,
                const std::vector<double>& rt_mem, Work& w) {
  const Prepared& pr = *w.pr;
  const size_t nv = w.part.size();
  std::vector<uint32_t> local_to_v;
  std::vector<int64_t> local_of(nv, -1);
  for (VnodeId v = 0; v < nv; ++v) {
    if (w.part[v] != UINT32_MAX) continue;
    local_of[v] = static_cast<int64_t>(local_to_v.size());
    local_to_v.push_back(v);
  }
  const size_t m = local_to_v.size();
  const idx_t ncon = options.balance_memory ? 2 : 1;
  std::vector<idx_t> xadj(m + 1, 0), adjncy, adjwgt;
  adjncy.reserve(w.adj.size());
  adjwgt.reserve(w.adj.size());
  std::vector<uint64_t> cpu(m), mem;
  for (size_t i = 0; i < m; ++i) {
    const VnodeId v = local_to_v[i];
    cpu[i] = pr.cpu[v];
    if (ncon == 2) mem.push_back(MemoryBytes(topo.vnode(v), options));
    for (uint64_t k = w.xadj[v]; k < w.xadj[v + 1]; ++k) {
      const int64_t u = local_of[w.adj[k]];
      if (u < 0) continue;
      adjncy.push_back(static_cast<idx_t>(u));
      adjwgt.push_back(static_cast<idx_t>(w.wgt[k]));
    }
    xadj[i + 1] = static_cast<idx_t>(adjncy.size());
  }
  std::vector<idx_t> vcpu = ScaleWeights(cpu), vmem = ScaleWeights(mem);
  std::vector<idx_t> vwgt(m * static_cast<size_t>(ncon));
  for (size_t i = 0; i < m; ++i) {
    vwgt[i * ncon] = vcpu[i];
    if (ncon == 2) vwgt[i * ncon + 1] = vmem[i];
  }
  const size_t nparts = eligible.size();
  std::vector<real_t> tpwgts(nparts * static_cast<size_t>(ncon));
  std::vector<std::pair<double, double>> part_key(nparts);
  for (int c = 0; c < ncon; ++c) {
    const std::vector<double>& t = c == 0 ? rt : rt_mem;
    double sum = 0;
    for (uint32_t p : eligible) sum += t[p];
    // METIS wants every target > 0 and the sum 1.
    const double min_share = 1e-4 / static_cast<double>(nparts);
    std::vector<double> f(nparts);
    double fsum = 0;
    for (size_t i = 0; i < nparts; ++i) {
      f[i] =
          std::max(min_share, sum > 0 ? t[eligible[i]] / sum : 1.0 / static_cast<double>(nparts));
      fsum += f[i];
    }
    for (size_t i = 0; i < nparts; ++i) {
      tpwgts[i * ncon + c] = static_cast<real_t>(f[i] / fsum);
      (c == 0 ? part_key[i].first : part_key[i].second) = f[i] / fsum;
    }
  }
  idx_t opts[METIS_NOPTIONS];
  METIS_SetDefaultOptions(opts);
  opts[METIS_OPTION_OBJTYPE] = METIS_OBJTYPE_CUT;
  opts[METIS_OPTION_NUMBERING] = 0;
  opts[METIS_OPTION_UFACTOR] = std::max<idx_t>(1, static_cast<idx_t>(std::floor(imbalance * 1000)));
  opts[METIS_OPTION_SEED] =
      static_cast<idx_t>(Rng::ForStream(options.seed, "placement-metis").Next() & 0x3fffffff);
  idx_t nvtxs = static_cast<idx_t>(m), np = static_cast<idx_t>(nparts), objval = 0;
  idx_t ncon_arg = ncon;
  std::vector<idx_t> mpart(m, 0);
  adjncy.push_back(0);  // METIS reads adjncy[0] even with no edges
  adjwgt.push_back(1);
  int rc =
      METIS_PartGraphKway(&nvtxs, &ncon_arg, xadj.data(), adjncy.data(), vwgt.data(), nullptr,
                          adjwgt.data(), &np, tpwgts.data(), nullptr, opts, &objval, mpart.data());
  if (rc != METIS_OK) {
    return InternalError("METIS_PartGraphKway failed with " + MetisErrorName(rc) + " on " +
                         WithCommas(m) + " vnodes, " + WithCommas(adjncy.size() / 2) + " links, " +
                         WithCommas(nparts) + " pnodes");
  }
  if (pr.num_pinned > 0) RelabelTowardsPins(w, local_to_v, eligible, part_key, mpart);
  for (size_t i = 0; i < m; ++i) w.part[local_to_v[i]] = eligible[static_cast<size_t>(mpart[i])];
  return Status::Ok();
}

}  // namespace

// ------------------------------------------------------------------ public

std::string_view PlacementAlgorithmName(PlacementAlgorithm a) {
  switch (a) {
    case PlacementAlgorithm::kMetis:
      return "metis-kway";
    case PlacementAlgorithm::kRandom:
      return "random";
    case PlacementAlgorithm::kRoundRobin:
      return "round-robin";
  }
  return "?";
}

Result<PlacementAlgorithm> ParsePlacementAlgorithm(std::string_view s) {
  if (s == "metis-kway" || s == "metis") return PlacementAlgorithm::kMetis;
  if (s == "random") return PlacementAlgorithm::kRandom;
  if (s == "round-robin") return PlacementAlgorithm::kRoundRobin;
  return InvalidArgumentError("unknown placement algorithm '" + std::string(s) +
                              "'; expected metis-kway, random or round-robin");
}

PlacementReport EvaluatePlacement(const Topology& topology,
                                  const std::vector<PnodeCapacity>& pnodes,
                                  const std::vector<uint32_t>& pnode_of_vnode,
                                  const PlacementOptions& options) {
  PlacementReport r;
  const size_t np = pnodes.size();
  r.vnodes_per_pnode.assign(np, 0);
  r.load_per_pnode.assign(np, 0);
  const size_t nv = std::min(topology.num_vnodes(), pnode_of_vnode.size());
  uint64_t total = 0;
  for (VnodeId v = 0; v < nv; ++v) {
    const uint32_t p = pnode_of_vnode[v];
    if (p >= np) continue;
    const uint64_t c = CpuMillicores(topology.vnode(v), options);
    ++r.vnodes_per_pnode[p];
    r.load_per_pnode[p] += c;
    total += c;
  }
  for (const auto& l : topology.links()) {
    if (l.a >= nv || l.b >= nv || pnode_of_vnode[l.a] == pnode_of_vnode[l.b]) continue;
    ++r.cut_links;
    r.cut_rate_bps += l.forward.rate_bps.value_or(0) + l.reverse.rate_bps.value_or(0);
    if (!l.forward.rate_bps && !l.reverse.rate_bps) ++r.cut_links_unshaped;
  }
  if (total > 0) {
    std::vector<double> share = Shares(pnodes, options.capacity);
    double worst = 0;
    for (size_t p = 0; p < np; ++p) {
      if (share[p] <= 0) continue;  // a pnode with no share is not measured
      worst = std::max(worst, static_cast<double>(r.load_per_pnode[p]) /
                                  (share[p] * static_cast<double>(total)));
    }
    r.imbalance = worst;
  }
  return r;
}

Result<Placement> PlaceRoundRobin(const Topology& topology,
                                  const std::vector<PnodeCapacity>& pnodes,
                                  const PlacementOptions& options) {
  GRIDEMU_ASSIGN_OR_RETURN(Prepared pr, Prepare(topology, pnodes, options));
  const size_t np = pr.num_pnodes;
  std::vector<uint32_t> part = PinnedPart(pr);
  std::vector<uint64_t> slots = FreeSlots(pr);
  std::vector<uint64_t> used = Used(pr);
  size_t cursor = 0;
  auto next = [&](VnodeId, auto&& fits) -> int64_t {
    for (size_t k = 0; k < np; ++k) {
      size_t p = (cursor + k) % np;
      if (fits(p)) {
        cursor = (p + 1) % np;
        return static_cast<int64_t>(p);
      }
    }
    return -1;
  };
  GRIDEMU_RETURN_IF_ERROR(DealRestricted(topology, pr, part, slots, used, next));
  for (VnodeId v = 0; v < part.size(); ++v) {
    if (part[v] != UINT32_MAX) continue;
    int64_t p = next(v, [&](size_t q) { return slots[q] > 0; });
    if (p < 0) p = next(v, [&](size_t q) { return used[q] < pr.room[q]; });
    if (p < 0) return InternalError("round-robin placement ran out of slots");
    if (slots[p] > 0) --slots[p];
    part[v] = static_cast<uint32_t>(p);
    ++used[p];
  }
  return Finish(topology, pnodes, std::move(part), "round-robin", options);
}

Result<Placement> PlaceRandom(const Topology& topology, const std::vector<PnodeCapacity>& pnodes,
                              const PlacementOptions& options) {
  GRIDEMU_ASSIGN_OR_RETURN(Prepared pr, Prepare(topology, pnodes, options));
  const size_t np = pr.num_pnodes;
  Rng rng = Rng::ForStream(options.seed, "placement-random");
  std::vector<uint32_t> part = PinnedPart(pr);
  std::vector<uint64_t> slots = FreeSlots(pr);
  std::vector<uint64_t> used = Used(pr);
  // Restricted vnodes: a pnode chosen with probability proportional to the
  // slots (or room) it has left among those that fit.
  auto pick = [&](VnodeId, auto&& fits) -> int64_t {
    uint64_t total = 0;
    std::vector<uint64_t> weight(np, 0);
    for (size_t p = 0; p < np; ++p) {
      if (!fits(p)) continue;
      uint64_t left = slots[p] ? slots[p] : pr.room[p] == kUnlimited ? 1 : pr.room[p] - used[p];
      weight[p] = std::max<uint64_t>(left, 1);
      total += weight[p];
    }
    if (total == 0) return -1;
    uint64_t x = rng.Below(total);
    for (size_t p = 0; p < np; ++p) {
      if (x < weight[p]) return static_cast<int64_t>(p);
      x -= weight[p];
    }
    return -1;
  };
  GRIDEMU_RETURN_IF_ERROR(DealRestricted(topology, pr, part, slots, used, pick));
  std::vector<uint32_t> deck;
  for (size_t p = 0; p < np; ++p) deck.insert(deck.end(), slots[p], static_cast<uint32_t>(p));
  for (size_t i = deck.size(); i > 1; --i) std::swap(deck[i - 1], deck[rng.Below(i)]);
  size_t next = 0;
  for (VnodeId v = 0; v < part.size(); ++v) {
    if (part[v] != UINT32_MAX) continue;
    if (next >= deck.size()) return InternalError("random placement ran out of slots");
    part[v] = deck[next++];
  }
  return Finish(topology, pnodes, std::move(part), "random", options);
}

Result<Placement> PlaceMetis(const Topology& topology, const std::vector<PnodeCapacity>& pnodes,
                             const PlacementOptions& options) {
  GRIDEMU_ASSIGN_OR_RETURN(Prepared pr, Prepare(topology, pnodes, options));
  const size_t np = pr.num_pnodes;
  const size_t nv = topology.num_vnodes();
  const uint64_t free_count = nv - pr.num_pinned;
  Work w;
  BuildGraph(topology, LinkWeights(topology, options), w);
  w.pr = &pr;
  w.part = PinnedPart(pr);

  // Remaining targets after the pins, and the pnodes that can take free vnodes.
  const double total = static_cast<double>(pr.total_cpu);
  std::vector<double> rt(np, 0), rt_mem(np, 0);
  std::vector<uint32_t> eligible;
  uint64_t eligible_room = 0;
  bool eligible_limited = true;
  for (uint32_t p = 0; p < np; ++p) {
    rt[p] = std::max(0.0, pr.share[p] * total - static_cast<double>(pr.pinned_cpu[p]));
    const uint64_t left = pr.room[p] == kUnlimited ? kUnlimited : pr.room[p] - pr.pinned_count[p];
    if (left == 0 || rt[p] <= 0) continue;
    eligible.push_back(p);
    if (left == kUnlimited)
      eligible_limited = false;
    else
      eligible_room += left;
  }
  if (eligible.empty() && free_count > 0) {
    // Every share is taken by pins: spread the rest over the pnodes with room.
    eligible_limited = true;
    eligible_room = 0;
    for (uint32_t p = 0; p < np; ++p) {
      const uint64_t left = pr.room[p] == kUnlimited ? kUnlimited : pr.room[p] - pr.pinned_count[p];
      if (left == 0) continue;
      eligible.push_back(p);
      rt[p] = left == kUnlimited ? 1.0 : static_cast<double>(left);
      if (left == kUnlimited)
        eligible_limited = false;
      else
        eligible_room += left;
    }
  }
  // Imbalance METIS may use: no more than the rooms leave, but not below 1 %
  // (kMinMetisImbalance); the repair pass enforces the rooms exactly.
  double imbalance = options.max_imbalance;
  if (eligible_limited && free_count > 0) {
    double slack = static_cast<double>(eligible_room) / static_cast<double>(free_count) - 1.0;
    imbalance = std::min(imbalance, std::max(slack, kMinMetisImbalance));
  }

  std::string algorithm(PlacementAlgorithmName(PlacementAlgorithm::kMetis));
  if (free_count > 0 && eligible.size() > 1) {
    if (options.balance_memory) {
      bool all_mem = std::all_of(pnodes.begin(), pnodes.end(),
                                 [](const PnodeCapacity& c) { return c.memory_bytes > 0; });
      double mem_cap = 0, total_mem = 0;
      for (const auto& c : pnodes) mem_cap += static_cast<double>(c.memory_bytes);
      std::vector<double> pinned_mem(np, 0);
      for (VnodeId v = 0; v < nv; ++v) {
        const double b = static_cast<double>(MemoryBytes(topology.vnode(v), options));
        total_mem += b;
        if (pr.pin[v] >= 0) pinned_mem[static_cast<size_t>(pr.pin[v])] += b;
      }
      for (uint32_t p = 0; p < np; ++p) {
        const double share =
            all_mem ? static_cast<double>(pnodes[p].memory_bytes) / mem_cap : pr.share[p];
        rt_mem[p] = std::max(0.0, share * total_mem - pinned_mem[p]);
      }
    }
    GRIDEMU_RETURN_IF_ERROR(RunMetis(topology, options, imbalance, eligible, rt, rt_mem, w));
  } else if (free_count > 0) {
    // One pnode can take the free vnodes: no partitioning to do.
    for (VnodeId v = 0; v < nv; ++v) {
      if (w.part[v] == UINT32_MAX) w.part[v] = eligible[0];
    }
  }
  if (free_count == 0 || eligible.size() <= 1) {
    bool one = true;
    for (VnodeId v = 1; v < nv; ++v) one = one && w.part[v] == w.part[0];
    algorithm = free_count == 0 ? "pinned" : one ? "single-pnode" : "pinned";
  }
  InitWork(pr, imbalance, w);
  Status s = Repair(topology, w);
  if (!s.ok()) return s;
  Refine(w);
  return Finish(topology, pnodes, std::move(w.part), std::move(algorithm), options);
}

Result<Placement> Place(PlacementAlgorithm algorithm, const Topology& topology,
                        const std::vector<PnodeCapacity>& pnodes, const PlacementOptions& options) {
  switch (algorithm) {
    case PlacementAlgorithm::kMetis:
      return PlaceMetis(topology, pnodes, options);
    case PlacementAlgorithm::kRandom:
      return PlaceRandom(topology, pnodes, options);
    case PlacementAlgorithm::kRoundRobin:
      return PlaceRoundRobin(topology, pnodes, options);
  }
  return InvalidArgumentError("unknown placement algorithm");
}

Placement DropUnusedPnodes(Placement p) {
  std::vector<uint32_t> used(p.pnodes.size(), 0);
  for (uint32_t x : p.pnode_of_vnode) {
    if (x < used.size()) used[x] = 1;
  }
  std::vector<uint32_t> renum(p.pnodes.size(), 0);
  std::vector<std::string> kept;
  for (size_t i = 0; i < p.pnodes.size(); ++i) {
    if (!used[i]) continue;
    renum[i] = static_cast<uint32_t>(kept.size());
    kept.push_back(std::move(p.pnodes[i]));
  }
  for (uint32_t& x : p.pnode_of_vnode) {
    if (x < renum.size()) x = renum[x];
  }
  p.pnodes = std::move(kept);
  return p;
}

Result<Placement> PartitionPlacer::Place(const experiments::Experiment& experiment,
                                         const std::vector<PnodeCandidate>& candidates) const {
  PlacementOptions o = options_;
  o.seed = experiment.seed;
  auto placed = controller::Place(algorithm_, experiment.topology, candidates, o);
  if (!placed.ok()) return placed.status();
  return DropUnusedPnodes(std::move(placed).value());
}

}  // namespace gridemu::controller

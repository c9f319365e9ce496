// bench/controlplane, part (a): placement at the DESIGN.md §11 scale. Builds a
// Barabási–Albert graph (topology generators, m = 2) of --vnodes vnodes whose
// links are 100mbit both ways, and places it on --pnodes pnodes of
// --per-pnode vnodes each (max_vnodes; 100,000 on 1,000 x 100 fills every
// pnode exactly) with each algorithm in turn. Prints one JSON document:
//
//   {"benchmark": "controlplane-placement", "vnodes": .., "links": ..,
//    "pnodes": .., "per_pnode": .., "seed": .., "build_topology_s": ..,
//    "cases": [{"algorithm": "metis-kway", "seconds": .., "cut_links": ..,
//               "cut_fraction": .., "cut_rate_bps": .., "imbalance": ..,
//               "vnodes_per_pnode_min": .., "vnodes_per_pnode_max": ..,
//               "peak_rss_mib": ..}, ...],
//    "targets": {"metis_seconds": 5}}
//
// `seconds` is the wall time of one Place() call, best of --repeat runs.
// Usage: bench_placement [--vnodes N] [--pnodes N] [--per-pnode N] [--seed N]
//                        [--repeat N] [--algorithms metis-kway,random,round-robin]
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "gridemu/controller/placement.h"
#include "gridemu/topology/generators.h"

namespace {

using namespace gridemu;
using Clock = std::chrono::steady_clock;

double PeakRssMiB() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_maxrss) / 1024.0;  // KiB on Linux
}

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

struct Args {
  uint32_t vnodes = 100'000;
  uint32_t pnodes = 1'000;
  uint32_t per_pnode = 100;
  uint64_t seed = 7;
  int repeat = 1;
  std::vector<std::string> algorithms = {"metis-kway", "random", "round-robin"};
};

[[noreturn]] void Usage(const char* why) {
  std::fprintf(stderr,
               "bench_placement: %s\nusage: bench_placement [--vnodes N] [--pnodes N] "
               "[--per-pnode N] [--seed N] [--repeat N] [--algorithms a,b,c]\n",
               why);
  std::exit(2);
}

Args ParseArgs(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    std::string k = argv[i];
    if (i + 1 >= argc) Usage(("missing value after " + k).c_str());
    std::string v = argv[++i];
    char* end = nullptr;
    unsigned long long n = std::strtoull(v.c_str(), &end, 10);
    bool numeric = end && *end == '\0' && !v.empty();
    if (k == "--algorithms") {
      a.algorithms.clear();
      std::stringstream ss(v);
      for (std::string s; std::getline(ss, s, ',');) a.algorithms.push_back(s);
    } else if (!numeric) {
      Usage((k + ": '" + v + "' is not a number").c_str());
    } else if (k == "--vnodes") {
      a.vnodes = static_cast<uint32_t>(n);
    } else if (k == "--pnodes") {
      a.pnodes = static_cast<uint32_t>(n);
    } else if (k == "--per-pnode") {
      a.per_pnode = static_cast<uint32_t>(n);
    } else if (k == "--seed") {
      a.seed = n;
    } else if (k == "--repeat") {
      a.repeat = std::max(1, static_cast<int>(n));
    } else {
      Usage(("unknown option " + k).c_str());
    }
  }
  return a;
}

}  // namespace

int main(int argc, char** argv) {
  Args args = ParseArgs(argc, argv);
  nlohmann::json out;
  out["benchmark"] = "controlplane-placement";

  auto t0 = Clock::now();
  topology::GraphSpec spec;
  spec.model = topology::GraphModel::kBarabasiAlbert;
  spec.n = args.vnodes;
  spec.m = 2;
  auto g = topology::Generate(spec, args.seed);
  if (!g.ok()) {
    std::cerr << "bench_placement: " << g.status().ToString() << "\n";
    return 1;
  }
  topology::Topology topo;
  topo.Reserve(g->num_nodes, g->edges.size());
  for (uint32_t i = 0; i < g->num_nodes; ++i) {
    topology::Vnode v;
    v.name = "as" + std::to_string(i);
    if (!topo.AddVnode(std::move(v)).ok()) return 1;
  }
  for (auto [a, b] : g->edges) {
    topology::Link l;
    l.a = a;
    l.b = b;
    l.forward.rate_bps = l.reverse.rate_bps = 100'000'000;
    l.forward.delay = l.reverse.delay = std::chrono::milliseconds(5);
    if (!topo.AddLink(std::move(l)).ok()) return 1;
  }
  out["build_topology_s"] = Seconds(Clock::now() - t0);
  out["vnodes"] = topo.num_vnodes();
  out["links"] = topo.num_links();
  out["pnodes"] = args.pnodes;
  out["per_pnode"] = args.per_pnode;
  out["seed"] = args.seed;

  std::vector<controller::PnodeCapacity> pnodes(args.pnodes);
  for (uint32_t i = 0; i < args.pnodes; ++i) {
    pnodes[i].host_id = "pnode" + std::to_string(i);
    pnodes[i].cores = 32;
    pnodes[i].memory_bytes = 128ull << 30;
    pnodes[i].max_vnodes = args.per_pnode;
  }
  controller::PlacementOptions options;
  options.seed = args.seed;

  nlohmann::json cases = nlohmann::json::array();
  for (const std::string& name : args.algorithms) {
    auto alg = controller::ParsePlacementAlgorithm(name);
    if (!alg.ok()) Usage(alg.status().message().c_str());
    double best = 0;
    controller::Placement placed;
    for (int r = 0; r < args.repeat; ++r) {
      auto t = Clock::now();
      auto p = controller::Place(*alg, topo, pnodes, options);
      double s = Seconds(Clock::now() - t);
      if (!p.ok()) {
        std::cerr << "bench_placement: " << name << ": " << p.status().ToString() << "\n";
        return 1;
      }
      if (r == 0 || s < best) best = s;
      placed = std::move(p).value();
    }
    controller::PlacementReport rep =
        controller::EvaluatePlacement(topo, pnodes, placed.pnode_of_vnode, options);
    auto [mn, mx] = std::minmax_element(rep.vnodes_per_pnode.begin(), rep.vnodes_per_pnode.end());
    nlohmann::json c;
    c["algorithm"] = placed.algorithm;
    c["seconds"] = best;
    c["cut_links"] = placed.cut_links;
    c["cut_fraction"] = topo.num_links() ? static_cast<double>(placed.cut_links) /
                                               static_cast<double>(topo.num_links())
                                         : 0.0;
    c["cut_rate_bps"] = placed.cut_rate_bps;
    c["imbalance"] = placed.imbalance;
    c["vnodes_per_pnode_min"] = mn == rep.vnodes_per_pnode.end() ? 0 : *mn;
    c["vnodes_per_pnode_max"] = mx == rep.vnodes_per_pnode.end() ? 0 : *mx;
    c["peak_rss_mib"] = PeakRssMiB();
    cases.push_back(std::move(c));
  }
  out["cases"] = std::move(cases);
  out["targets"] = {{"metis_seconds", 5.0}};
  std::cout << out.dump(2) << "\n";
  return 0;
}

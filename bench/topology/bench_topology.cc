// bench/topology: parse + validate + expand an experiment of 100,000 vnodes,
// then compute next-hop tables where meaningful (issue 2). Prints Google
// Benchmark JSON; bench/topology/run runs each case in its own process so
// that `peak_rss_mib` is that case's peak.
//
// Cases:
//   group100k  - a group of 100,000 peers with link_to a core router, plus a
//                task on peers[1:]; next hops: the core router's table to all
//                100,000 peers (the only router).
//   ba100k     - a Barabási–Albert graph, n = 100,000, m = 2, all routers.
//                All-pairs tables would hold 10^10 entries, which no router
//                needs; the benchmark computes next-hop trees towards
//                `kBaDestinations` destinations (one Dijkstra each) and
//                reports the time per destination.
#include <benchmark/benchmark.h>
#include <sys/resource.h>

#include <string>

#include "gridemu/experiments/parse.h"
#include "gridemu/topology/routing.h"

namespace {

using namespace gridemu;

constexpr int kBaDestinations = 8;

double PeakRssMiB() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_maxrss) / 1024.0;  // ru_maxrss is in KiB on Linux
}

const char* kGroupYaml = R"(name: group100k
duration: 10m
seed: 7
topology:
  nodes:
    core: {kind: router}
  groups:
    peers:
      count: 100000
      name: "peer{i}"
      link_to: core
      link:
        forward: {rate: 1mbit, delay: 20ms}
        reverse: {rate: 8mbit, delay: 20ms}
workload:
  - name: leech
    on: "peers[1:]"
    at: 5s
    stagger: 1ms
    run: "true"
    wait: true
)";

const char* kBaYaml = R"(name: ba100k
duration: 10m
seed: 7
topology:
  generate:
    - {model: barabasi-albert, n: 100000, m: 2, prefix: as, link: {rate: 100mbit, delay: 5ms}}
)";

void BM_Group100k(benchmark::State& state) {
  size_t vnodes = 0, entries = 0;
  double parse_s = 0, route_s = 0;
  for (auto _ : state) {
    auto t0 = std::chrono::steady_clock::now();
    auto exp = experiments::ParseExperiment(kGroupYaml, "group100k.yaml");
    if (!exp.ok()) {
      state.SkipWithError(exp.status().message().c_str());
      return;
    }
    auto t1 = std::chrono::steady_clock::now();
    auto tables = topology::ComputeNextHopTables(exp->topology);
    auto t2 = std::chrono::steady_clock::now();
    if (!tables.ok()) {
      state.SkipWithError(tables.status().message().c_str());
      return;
    }
    vnodes = exp->topology.num_vnodes();
    entries = 0;
    for (const auto& t : *tables) entries += t.entries.size();
    parse_s = std::chrono::duration<double>(t1 - t0).count();
    route_s = std::chrono::duration<double>(t2 - t1).count();
    benchmark::DoNotOptimize(tables);
  }
  state.counters["vnodes"] = static_cast<double>(vnodes);
  state.counters["next_hop_entries"] = static_cast<double>(entries);
  state.counters["parse_validate_expand_s"] = parse_s;
  state.counters["next_hops_s"] = route_s;
  state.counters["peak_rss_mib"] = PeakRssMiB();
}

void BM_BarabasiAlbert100k(benchmark::State& state) {
  size_t vnodes = 0, links = 0;
  double parse_s = 0, route_s = 0;
  for (auto _ : state) {
    auto t0 = std::chrono::steady_clock::now();
    auto exp = experiments::ParseExperiment(kBaYaml, "ba100k.yaml");
    if (!exp.ok()) {
      state.SkipWithError(exp.status().message().c_str());
      return;
    }
    auto t1 = std::chrono::steady_clock::now();
    const auto& topo = exp->topology;
    for (int i = 0; i < kBaDestinations; ++i) {
      auto dst = static_cast<topology::VnodeId>((static_cast<uint64_t>(i) * 6151) % topo.num_vnodes());
      auto tree = topology::NextHopsTowards(topo, dst);
      benchmark::DoNotOptimize(tree);
    }
    auto t2 = std::chrono::steady_clock::now();
    vnodes = topo.num_vnodes();
    links = topo.num_links();
    parse_s = std::chrono::duration<double>(t1 - t0).count();
    route_s = std::chrono::duration<double>(t2 - t1).count();
  }
  state.counters["vnodes"] = static_cast<double>(vnodes);
  state.counters["links"] = static_cast<double>(links);
  state.counters["parse_validate_expand_s"] = parse_s;
  state.counters["next_hop_tree_s_per_destination"] = route_s / kBaDestinations;
  state.counters["peak_rss_mib"] = PeakRssMiB();
}

BENCHMARK(BM_Group100k)->Unit(benchmark::kMillisecond)->Iterations(3);
BENCHMARK(BM_BarabasiAlbert100k)->Unit(benchmark::kMillisecond)->Iterations(3);

}  // namespace

BENCHMARK_MAIN();

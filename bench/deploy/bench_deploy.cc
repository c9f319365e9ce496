// bench/deploy: deploy and tear down N vnodes, each with one shaped link, on
// this pnode, through the same path as `gridemu run`: experiment file ->
// address plan -> DeployShard (controller/shard_builder.h) -> ShardApplier
// (node-agent). The topology is Mininet's reference star: N hosts around one
// hub vnode (a router), every host link shaped both ways by HTB at 100 mbit.
//
// usage: bench_deploy N      (root). Prints one JSON object:
//   {"tool": "gridemu", "n", "deploy_s", "teardown_s", "total_s",
//    "kernel_plus_agent_kib_per_vnode", "agent_rss_kib_per_vnode", "backend",
//    "deploy_phases", "teardown_phases" (ShardTimings::ToString()),
//    "runtime_create" / "runtime_destroy" (NetnsRuntime BatchProfile of the
//    last CreateBatch / DestroyBatch chunk, seconds)}
// Memory per vnode = (MemTotal - MemAvailable) after deploy minus before,
// divided by N: kernel objects (namespaces, veths, qdiscs, cgroups), the vnode
// inits and the agent together. Noisy on a busy machine: run it alone.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>

#include "gridemu/node-agent/netns_runtime.h"
#include "gridemu/node-agent/shard_applier.h"
#include "gridemu/controller/shard_builder.h"
#include "gridemu/experiments/parse.h"
#include "gridemu/netshape/capabilities.h"
#include "gridemu/netshape/plan.h"
#include "gridemu/netshape/shaper.h"
#include "gridemu/topology/addressing.h"

namespace {

using namespace gridemu;

// kB from /proc/meminfo ("MemTotal", "MemAvailable") or /proc/self/status ("VmRSS").
long ReadKb(const char* file, const std::string& key) {
  std::ifstream f(file);
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind(key + ":", 0) == 0) return std::stol(line.substr(key.size() + 1));
  }
  return 0;
}
long UsedKb() { return ReadKb("/proc/meminfo", "MemTotal") - ReadKb("/proc/meminfo", "MemAvailable"); }

// A BatchProfile as JSON (seconds; *_thread_s summed over worker threads).
nlohmann::json ProfileJson(const agent::BatchProfile& p) {
  return {{"vnodes", p.vnodes},         {"prepare_thread_s", p.prepare_thread_s},
          {"spawn_thread_s", p.spawn_thread_s}, {"build_s", p.build_s},
          {"join_s", p.join_s},         {"ready_s", p.ready_s},
          {"kill_s", p.kill_s},         {"teardown_s", p.teardown_s}};
}

int Fail(const std::string& what, const Status& s) {
  std::fprintf(stderr, "bench_deploy: %s: %s\n", what.c_str(), s.ToString().c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  const int n = argc > 1 ? std::atoi(argv[1]) : 100;
  if (n < 2) return Fail("N", InvalidArgumentError("N must be at least 2"));
  if (::geteuid() != 0) return Fail("privileges", PermissionDeniedError("run as root"));
  const std::string prefix = "gbd" + std::to_string(::getpid());
  std::ostringstream yaml;
  yaml << "name: deploy-bench\nduration: 10m\ntopology:\n  nodes:\n    hub: {kind: router}\n"
       << "  groups:\n    h:\n      count: " << n - 1
       << "\n      link_to: hub\n      link: {rate: 100mbit}\n";
  auto exp = experiments::ParseExperiment(yaml.str(), "deploy-bench.yaml");
  if (!exp.ok()) return Fail("parse", exp.status());
  auto plan = topology::PlanAddressing(exp->topology);
  if (!plan.ok()) return Fail("addressing", plan.status());
  std::vector<uint32_t> placement(exp->topology.num_vnodes(), 0);
  auto shards = controller::BuildShards(*exp, "b1", 1, placement, *plan);
  if (!shards.ok()) return Fail("shards", shards.status());

  agent::RuntimeOptions ro;
  ro.prefix = prefix;
  auto rt = agent::NetnsRuntime::Open(ro);
  if (!rt.ok()) return Fail("runtime", rt.status());
  auto caps = netshape::ProbeCapabilities();
  if (!caps.ok()) return Fail("probe", caps.status());
  netshape::ShaperOptions so;
  so.capabilities = *caps;
  auto shaper = netshape::Shaper::Create(so);
  if (!shaper.ok()) return Fail("shaper", shaper.status());
  agent::ShardApplierOptions ao;
  ao.prefix = prefix;
  std::unique_ptr<agent::ShardRecords> records = agent::NewFileShardRecords("");
  agent::ShardApplier applier(agent::KernelApplierDeps(rt->get(), shaper->get(), records.get()),
                              ao);

  const long used0 = UsedKb(), rss0 = ReadKb("/proc/self/status", "VmRSS");
  const auto t0 = std::chrono::steady_clock::now();
  agent::DeployReport rep = applier.Deploy(shards->front());
  const auto t1 = std::chrono::steady_clock::now();
  if (!rep.ok) {
    applier.Teardown("b1");
    (void)(*rt)->CleanupExperiment("b1");
    return Fail("deploy", InternalError(rep.errors.empty() ? "failed"
                                                           : rep.errors[0].object + ": " +
                                                                 rep.errors[0].message));
  }
  ::sleep(1);  // let deferred kernel work settle before reading memory
  const long used1 = UsedKb(), rss1 = ReadKb("/proc/self/status", "VmRSS");
  const auto t2 = std::chrono::steady_clock::now();
  agent::TeardownReport td = applier.Teardown("b1");
  const auto t3 = std::chrono::steady_clock::now();
  const double deploy_s = std::chrono::duration<double>(t1 - t0).count();
  const double teardown_s = std::chrono::duration<double>(t3 - t2).count();
  nlohmann::json j = {{"tool", "gridemu"},
                      {"n", n},
                      {"links", n - 1},
                      {"deploy_s", deploy_s},
                      {"teardown_s", teardown_s},
                      {"total_s", deploy_s + teardown_s},
                      {"kernel_plus_agent_kib_per_vnode", static_cast<double>(used1 - used0) / n},
                      {"agent_rss_kib_per_vnode", static_cast<double>(rss1 - rss0) / n},
                      {"backend", std::string(netshape::BackendName((*shaper)->backend()))},
                      {"teardown_errors", td.errors.size()},
                      {"deploy_phases", rep.timings.ToString()},
                      {"teardown_phases", td.timings.ToString()},
                      {"runtime_create", ProfileJson((*rt)->last_create_profile())},
                      {"runtime_destroy", ProfileJson((*rt)->last_destroy_profile())}};
  std::printf("%s\n", j.dump().c_str());
  return td.errors.empty() ? 0 : 1;
}

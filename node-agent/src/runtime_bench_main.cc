// runtime-bench: measures how long the netns runtime takes to create and
// destroy N vnodes, and how much kernel + agent memory an idle vnode costs
// (DESIGN.md §11). Prints one JSON object. Needs root.
//
//   runtime-bench [--count N] [--threads T] [--init PATH] [--no-limits]
//                 [--state-root DIR] [--repeat R]
//
// Every vnode gets the DESIGN.md §3 default resources (0.25 cores, 256 MiB,
// 512 pids) and an /etc/hosts naming all N vnodes. Objects use the
// experiment id "bench<pid>"; they are removed at the end (and by
// `gridemu clean`-style CleanupExperiment if the run is interrupted).
#include <sys/resource.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "gridemu/node-agent/netns_runtime.h"

namespace {

using gridemu::agent::HostsTable;
using gridemu::agent::NetnsRuntime;
using gridemu::agent::RuntimeOptions;
using gridemu::agent::VnodeRef;
using gridemu::agent::VnodeSpec;

std::map<std::string, long> MemInfoKb() {
  std::map<std::string, long> m;
  std::ifstream f("/proc/meminfo");
  std::string key;
  long value;
  std::string unit;
  while (f >> key >> value) {
    std::getline(f, unit);
    key.pop_back();  // ':'
    m[key] = value;
  }
  return m;
}

// Kernel + user memory in use, in KiB: what MemAvailable says is taken.
long UsedKb(const std::map<std::string, long>& m) {
  return m.at("MemTotal") - m.at("MemAvailable");
}

long ProcKb(pid_t pid, const char* key) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/smaps_rollup");
  std::string line;
  const size_t n = std::strlen(key);
  while (std::getline(f, line)) {
    if (line.compare(0, n, key) == 0 && line.size() > n && line[n] == ':') {
      return std::strtol(line.c_str() + n + 1, nullptr, 10);
    }
  }
  return 0;
}

double Seconds(std::chrono::steady_clock::duration d) {
  return std::chrono::duration<double>(d).count();
}

double CpuSeconds() {
  struct rusage self, children;
  ::getrusage(RUSAGE_SELF, &self);
  ::getrusage(RUSAGE_CHILDREN, &children);
  auto s = [](const struct timeval& t) { return t.tv_sec + t.tv_usec / 1e6; };
  return s(self.ru_utime) + s(self.ru_stime) + s(children.ru_utime) + s(children.ru_stime);
}

}  // namespace

int main(int argc, char** argv) {
  int count = 100;
  int repeat = 1;
  bool limits = true;
  RuntimeOptions options;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "%s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--count") {
      count = std::atoi(next().c_str());
    } else if (a == "--threads") {
      options.create_threads = std::atoi(next().c_str());
    } else if (a == "--init") {
      options.init_path = next();
    } else if (a == "--state-root") {
      options.state_root = next();
    } else if (a == "--repeat") {
      repeat = std::atoi(next().c_str());
    } else if (a == "--no-limits") {
      limits = false;
    } else {
      std::fprintf(stderr,
                   "usage: %s [--count N] [--threads T] [--init PATH] [--no-limits] "
                   "[--state-root DIR] [--repeat R]\n",
                   argv[0]);
      return 2;
    }
  }
  auto rt_or = NetnsRuntime::Open(options);
  if (!rt_or.ok()) {
    std::fprintf(stderr, "runtime-bench: %s\n", rt_or.status().ToString().c_str());
    return 1;
  }
  std::unique_ptr<NetnsRuntime> rt = std::move(*rt_or);
  const std::string exp = "bench" + std::to_string(::getpid());

  auto hosts = std::make_shared<HostsTable>();
  for (int i = 0; i < count; ++i) {
    hosts->push_back({"n" + std::to_string(i),
                      {"10." + std::to_string(i / 65536) + "." + std::to_string((i / 256) % 256) +
                       "." + std::to_string(i % 256)}});
  }
  std::vector<VnodeSpec> specs(static_cast<size_t>(count));
  std::vector<VnodeRef> refs;
  for (int i = 0; i < count; ++i) {
    VnodeSpec& s = specs[static_cast<size_t>(i)];
    s.experiment = exp;
    s.name = "n" + std::to_string(i);
    s.index = static_cast<uint32_t>(i);
    s.hosts = hosts;
    if (limits) {
      s.resources.cpu_cores = 0.25;
      s.resources.memory_bytes = 256ull << 20;
      s.resources.pids = 512;
    }
    refs.push_back({exp, s.name});
  }

  std::printf("{\"count\": %d, \"threads\": %d, \"limits\": %s, \"init\": \"%s\", \"runs\": [",
              count, options.create_threads, limits ? "true" : "false", rt->init_path().c_str());
  int status = 0;
  for (int run = 0; run < repeat; ++run) {
    // Let earlier network namespaces finish their asynchronous teardown.
    std::this_thread::sleep_for(std::chrono::seconds(run == 0 ? 1 : 3));
    const auto mem0 = MemInfoKb();
    const long rss0 = ProcKb(::getpid(), "Rss");
    double cpu0 = CpuSeconds();
    auto t0 = std::chrono::steady_clock::now();
    std::vector<gridemu::Status> created = rt->CreateBatch(specs);
    auto t1 = std::chrono::steady_clock::now();
    double cpu1 = CpuSeconds();
    int failed = 0;
    for (const auto& s : created) {
      if (!s.ok()) {
        if (failed++ == 0) std::fprintf(stderr, "create: %s\n", s.ToString().c_str());
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
    const auto mem1 = MemInfoKb();
    const long rss1 = ProcKb(::getpid(), "Rss");
    long init_pss = 0, init_rss = 0, init_private = 0;
    for (const VnodeRef& r : refs) {
      auto info = rt->Info(r);
      if (!info.ok() || info->init_pid == 0) continue;
      init_pss += ProcKb(info->init_pid, "Pss");
      init_rss += ProcKb(info->init_pid, "Rss");
      init_private +=
          ProcKb(info->init_pid, "Private_Dirty") + ProcKb(info->init_pid, "Private_Clean");
    }
    auto t2 = std::chrono::steady_clock::now();
    std::vector<gridemu::Status> destroyed = rt->DestroyBatch(refs);
    auto t3 = std::chrono::steady_clock::now();
    double cpu3 = CpuSeconds();
    for (const auto& s : destroyed) {
      if (!s.ok()) {
        if (failed++ == 0) std::fprintf(stderr, "destroy: %s\n", s.ToString().c_str());
      }
    }
    if (failed != 0) status = 1;
    const gridemu::agent::BatchProfile cp = rt->last_create_profile();
    const gridemu::agent::BatchProfile dp = rt->last_destroy_profile();
    auto delta = [&](const char* k) { return mem1.at(k) - mem0.at(k); };
    const double n = count;
    std::printf(
        "%s{\"create_s\": %.3f, \"create_cpu_s\": %.3f, \"destroy_s\": %.3f, "
        "\"destroy_cpu_s\": %.3f, \"failed\": %d, "
        "\"used_kib_per_vnode\": %.1f, \"slab_kib_per_vnode\": %.1f, "
        "\"kernel_stack_kib_per_vnode\": %.1f, \"page_tables_kib_per_vnode\": %.1f, "
        "\"percpu_kib_per_vnode\": %.1f, \"shmem_kib_per_vnode\": %.1f, "
        "\"agent_rss_kib_per_vnode\": %.1f, "
        "\"init_rss_kib\": %.1f, \"init_pss_kib\": %.1f, \"init_private_kib\": %.1f, "
        "\"create_phases\": {\"prepare_thread_s\": %.3f, \"spawn_thread_s\": %.3f, "
        "\"build_s\": %.3f, \"join_s\": %.3f, \"ready_s\": %.3f}, "
        "\"destroy_phases\": {\"kill_s\": %.3f, \"teardown_s\": %.3f}}",
        run == 0 ? "" : ", ", Seconds(t1 - t0), cpu1 - cpu0, Seconds(t3 - t2), cpu3 - cpu1, failed,
        (UsedKb(mem1) - UsedKb(mem0)) / n, delta("Slab") / n, delta("KernelStack") / n,
        delta("PageTables") / n, delta("Percpu") / n, delta("Shmem") / n, (rss1 - rss0) / n,
        init_rss / n, init_pss / n, init_private / n, cp.prepare_thread_s, cp.spawn_thread_s,
        cp.build_s, cp.join_s, cp.ready_s, dp.kill_s, dp.teardown_s);
    std::fflush(stdout);
  }
  std::printf("]}\n");
  gridemu::Status s = rt->CleanupExperiment(exp);
  if (!s.ok()) {
    std::fprintf(stderr, "cleanup: %s\n", s.ToString().c_str());
    status = 1;
  }
  return status;
}

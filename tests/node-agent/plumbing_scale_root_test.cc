// Scale check of the netlink plumbing (DESIGN.md §11, issue 4): a star of
// 1,000 host namespaces around one hub namespace — 1,000 veth pairs, 2,000
// addresses, 1,000 default routes, forwarding in the hub. Prints the time of
// each phase; the pass criterion is only a loose bound (timings are a
// benchmark's job, not a test's). Namespaces are named "gepl<pid>-s<i>" and
// created cheaply (unshare on this thread + a bind mount, no `ip` process);
// all are removed by RAII even when the test fails.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "gridemu/node-agent/plumbing.h"

namespace gridemu::agent {
namespace {

constexpr int kHosts = 1000;

const std::string& Prefix() {
  static const std::string p = "gepl" + std::to_string(getpid()) + "-";
  return p;
}

double Seconds(std::chrono::steady_clock::time_point since) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - since).count();
}

// CPU time (user + system) of this process so far, in seconds: unlike wall
// time it does not grow when other work shares the machine. Kernel work done
// in this thread's system calls (device registration etc.) is included;
// deferred kernel work (link watch, namespace cleanup) is not.
double CpuSeconds() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  auto sec = [](const timeval& tv) { return tv.tv_sec + tv.tv_usec / 1e6; };
  return sec(ru.ru_utime) + sec(ru.ru_stime);
}

int Shell(const std::string& cmd) {
  int st = std::system((cmd + " >/dev/null 2>&1").c_str());
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

// Named namespaces under /run/netns, made without subprocesses: the calling
// thread unshares a fresh network namespace, bind-mounts it to
// /run/netns/NAME (as `ip netns add` does) and returns to where it was.
class NamespacePool {
 public:
  NamespacePool() = default;
  NamespacePool(const NamespacePool&) = delete;
  NamespacePool& operator=(const NamespacePool&) = delete;
  ~NamespacePool() { RemoveAll(); }

  Status Add(const std::string& name) {
    mkdir("/run/netns", 0755);
    std::string path = "/run/netns/" + name;
    int f = open(path.c_str(), O_RDONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0444);
    if (f < 0) return InternalError("create " + path + ": " + std::strerror(errno));
    close(f);
    paths_.push_back(path);
    int saved = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
    if (saved < 0) return InternalError("open own netns");
    Status s;
    if (unshare(CLONE_NEWNET) != 0) {
      s = InternalError(std::string("unshare: ") + std::strerror(errno));
    } else if (mount("/proc/thread-self/ns/net", path.c_str(), "none", MS_BIND, nullptr) != 0) {
      s = InternalError("bind mount " + path + ": " + std::strerror(errno));
    }
    if (setns(saved, CLONE_NEWNET) != 0) std::abort();  // never continue in the wrong netns
    close(saved);
    return s;
  }

  void RemoveAll() {
    for (const std::string& p : paths_) {
      umount2(p.c_str(), MNT_DETACH);
      unlink(p.c_str());
    }
    paths_.clear();
  }

 private:
  std::vector<std::string> paths_;
};

std::string Addr(uint32_t host_order) {
  return std::to_string(host_order >> 24) + "." + std::to_string((host_order >> 16) & 0xff) + "." +
         std::to_string((host_order >> 8) & 0xff) + "." + std::to_string(host_order & 0xff);
}

TEST(PlumbingScaleRoot, StarOf1000Namespaces) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root";
  NamespacePool pool;
  auto t0 = std::chrono::steady_clock::now();
  double c0 = CpuSeconds();
  const std::string hub_name = Prefix() + "hub";
  ASSERT_TRUE(pool.Add(hub_name).ok());
  for (int i = 0; i < kHosts; ++i) {
    Status s = pool.Add(Prefix() + "s" + std::to_string(i));
    ASSERT_TRUE(s.ok()) << s.ToString();
  }
  double ns_seconds = Seconds(t0);
  double ns_cpu = CpuSeconds() - c0;

  auto plumbing = NewNetlinkPlumbing();
  ASSERT_TRUE(plumbing.ok()) << plumbing.status().ToString();
  NetnsRef hub = NetnsRef::AtPath("/run/netns/" + hub_name);
  PlumbingBatch batch;
  const uint32_t base = (10u << 24) | (100u << 16);  // 10.100.0.0
  for (int i = 0; i < kHosts; ++i) {
    NetnsRef host = NetnsRef::AtPath("/run/netns/" + Prefix() + "s" + std::to_string(i));
    std::string hub_if = "eth" + std::to_string(i);
    std::string hub_addr = Addr(base + 2 * i), host_addr = Addr(base + 2 * i + 1);
    batch.veths.push_back(
        {host, "eth0", hub, hub_if, 0, "gepl:" + Prefix() + ":l" + std::to_string(i), true});
    batch.addresses.push_back({host, "eth0", host_addr, 31});
    batch.addresses.push_back({hub, hub_if, hub_addr, 31});
    batch.routes.push_back({host, "0.0.0.0", 0, hub_addr, "eth0", 0});
  }
  batch.forwarding.push_back(hub);

  // Split in two batches only to report the veth part on its own.
  PlumbingBatch veths;
  veths.veths = std::move(batch.veths);
  batch.veths.clear();
  auto t1 = std::chrono::steady_clock::now();
  double c1 = CpuSeconds();
  Status s = (*plumbing)->Apply(veths);
  ASSERT_TRUE(s.ok()) << s.ToString();
  double veth_seconds = Seconds(t1);
  double veth_cpu = CpuSeconds() - c1;
  auto t2 = std::chrono::steady_clock::now();
  double c2 = CpuSeconds();
  s = (*plumbing)->Apply(batch);
  ASSERT_TRUE(s.ok()) << s.ToString();
  double rest_seconds = Seconds(t2);
  double rest_cpu = CpuSeconds() - c2;
  double plumbing_seconds = Seconds(t1);

  std::printf(
      "scale (wall / cpu seconds): %d namespaces + hub %.3f / %.3f; veth pairs (create, tag, "
      "up) %.3f / %.3f; addresses + forwarding + routes %.3f / %.3f; plumbing total %.3f / "
      "%.3f; with namespaces %.3f / %.3f\n",
      kHosts, ns_seconds, ns_cpu, veth_seconds, veth_cpu, rest_seconds, rest_cpu, plumbing_seconds,
      veth_cpu + rest_cpu, ns_seconds + plumbing_seconds, ns_cpu + veth_cpu + rest_cpu);
  RecordProperty("namespaces_seconds", std::to_string(ns_seconds));
  RecordProperty("plumbing_seconds", std::to_string(plumbing_seconds));
  EXPECT_LT(plumbing_seconds, 30.0);  // a loose bound: catches pathologies only

  // Spot checks: host 0 reaches the hub and, through it, host 999.
  std::string host0 = Prefix() + "s0";
  EXPECT_EQ(Shell("ip netns exec " + host0 + " ping -n -c1 -W2 " + Addr(base)), 0);
  EXPECT_EQ(Shell("ip netns exec " + host0 + " ping -n -c1 -W2 " + Addr(base + 2 * 999 + 1)), 0);
  auto listed = (*plumbing)->ListTagged(hub, "gepl:" + Prefix() + ":");
  ASSERT_TRUE(listed.ok());
  EXPECT_EQ(listed->size(), size_t{kHosts});

  // Teardown: deleting the hub's ends removes both ends of every pair.
  // No IPv6 link-local addresses on the emulated links (VethSpec default).
  std::string v6 = "ip netns exec " + host0 + " ip -6 addr show dev eth0 | grep -q fe80";
  EXPECT_NE(Shell(v6), 0) << "eth0 of " << host0 << " has an IPv6 link-local address";
  auto t3 = std::chrono::steady_clock::now();
  auto deleted = (*plumbing)->DeleteTagged(hub, "gepl:" + Prefix() + ":");
  ASSERT_TRUE(deleted.ok()) << deleted.status().ToString();
  EXPECT_EQ(*deleted, size_t{kHosts});
  double delete_seconds = Seconds(t3);
  (*plumbing)->CloseNamespaces();
  auto t4 = std::chrono::steady_clock::now();
  pool.RemoveAll();
  std::printf("scale: deleted %zu veth pairs in %.3f s; unmounted namespaces in %.3f s\n", *deleted,
              delete_seconds, Seconds(t4));
}

}  // namespace
}  // namespace gridemu::agent

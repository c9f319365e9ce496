// Unit tests (no privileges) of the pure cgroup logic: layout detection from
// mountinfo and /proc/self/cgroup (v1, hybrid, v2, containers), paths, CPU
// quota math and limit plans.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "gridemu/node-agent/cgroup.h"

namespace gridemu::agent {
namespace {

using ::testing::ElementsAre;

// This workplace's machine: hybrid, v1 controllers each on their own mount,
// the agent in a memory sub-cgroup only.
constexpr char kHybridMountinfo[] =
    "22 27 0:21 / /proc rw,relatime - proc proc rw\n"
    "27 1 254:0 / / rw,relatime - ext4 /dev/vda rw,discard\n"
    "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n"
    "32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n"
    "33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct\n"
    "34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset\n"
    "35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n"
    "37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer\n"
    "39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids\n"
    "40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd\n"
    "41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n"
    "42 27 254:0 /run/netns /run/netns rw,relatime shared:1 - ext4 /dev/vda rw\n";
constexpr char kHybridSelf[] =
    "9:name=systemd:/\n8:pids:/\n6:freezer:/\n4:memory:/process_api/b107\n"
    "3:cpuset:/\n2:cpuacct:/\n1:cpu:/\n0::/\n";

TEST(CgroupLayoutTest, HybridHostUsesV1PerControllerHierarchies) {
  Result<CgroupLayout> l = CgroupLayout::Parse(kHybridMountinfo, kHybridSelf);
  ASSERT_TRUE(l.ok()) << l.status().ToString();
  EXPECT_EQ(l->version, CgroupVersion::kV1);
  ASSERT_EQ(l->hierarchies.size(), 5u);
  EXPECT_EQ(l->hierarchies[0].mount_point, "/sys/fs/cgroup/cpu");
  EXPECT_EQ(l->hierarchies[1].mount_point, "/sys/fs/cgroup/cpuacct");
  EXPECT_EQ(l->hierarchies[2].mount_point, "/sys/fs/cgroup/memory");
  EXPECT_EQ(l->hierarchies[3].mount_point, "/sys/fs/cgroup/pids");
  EXPECT_EQ(l->hierarchies[4].mount_point, "/sys/fs/cgroup/freezer");
  EXPECT_EQ(l->ForController("memory")->AgentDir(), "/sys/fs/cgroup/memory/process_api/b107");
  EXPECT_EQ(l->ForController("cpu")->AgentDir(), "/sys/fs/cgroup/cpu");
  EXPECT_EQ(l->TaskHierarchy().mount_point, "/sys/fs/cgroup/freezer");
  EXPECT_EQ(l->ForController("cpuset"), nullptr);
  EXPECT_THAT(
      l->Dirs(VnodeCgroupRel("gridemu", "e1", "peer0")),
      ElementsAre("/sys/fs/cgroup/cpu/gridemu/e1/peer0", "/sys/fs/cgroup/cpuacct/gridemu/e1/peer0",
                  "/sys/fs/cgroup/memory/process_api/b107/gridemu/e1/peer0",
                  "/sys/fs/cgroup/pids/gridemu/e1/peer0",
                  "/sys/fs/cgroup/freezer/gridemu/e1/peer0"));
}

TEST(CgroupLayoutTest, ForcedVersionOnAHybridHost) {
  Result<CgroupLayout> l = CgroupLayout::Parse(kHybridMountinfo, kHybridSelf, CgroupVersion::kV2);
  ASSERT_TRUE(l.ok()) << l.status().ToString();
  EXPECT_EQ(l->version, CgroupVersion::kV2);
  ASSERT_EQ(l->hierarchies.size(), 1u);
  EXPECT_EQ(l->hierarchies[0].AgentDir(), "/sys/fs/cgroup/unified");
  l = CgroupLayout::Parse(kHybridMountinfo, kHybridSelf, CgroupVersion::kV1);
  ASSERT_TRUE(l.ok());
  EXPECT_EQ(l->version, CgroupVersion::kV1);
  constexpr char v2only[] = "25 22 0:22 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n";
  EXPECT_EQ(CgroupLayout::Parse(v2only, "0::/\n", CgroupVersion::kV1).status().code(),
            StatusCode::kUnavailable);
}

TEST(CgroupLayoutTest, CoMountedCpuAndCpuacctShareOneHierarchy) {
  constexpr char mi[] =
      "30 25 0:26 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n"
      "31 25 0:27 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n"
      "32 25 0:28 / /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids\n";
  constexpr char self[] =
      "4:pids:/system.slice/a.service\n3:memory:/system.slice/a.service\n"
      "2:cpu,cpuacct:/system.slice/a.service\n";
  Result<CgroupLayout> l = CgroupLayout::Parse(mi, self);
  ASSERT_TRUE(l.ok()) << l.status().ToString();
  ASSERT_EQ(l->hierarchies.size(), 3u);
  EXPECT_THAT(l->hierarchies[0].controllers, ElementsAre("cpu", "cpuacct"));
  EXPECT_EQ(l->ForController("cpuacct"), &l->hierarchies[0]);
  EXPECT_EQ(l->ForController("freezer"), nullptr);
  // No freezer: tasks are tracked in the pids hierarchy.
  EXPECT_EQ(l->TaskHierarchy().mount_point, "/sys/fs/cgroup/pids");
  EXPECT_EQ(l->hierarchies[0].AgentDir(), "/sys/fs/cgroup/cpu,cpuacct/system.slice/a.service");
}

TEST(CgroupLayoutTest, PureV2) {
  constexpr char mi[] =
      "25 22 0:22 / /sys/fs/cgroup rw,nosuid shared:4 - cgroup2 cgroup2 rw,nsdelegate\n";
  constexpr char self[] = "0::/system.slice/gridemu-agent.service\n";
  Result<CgroupLayout> l = CgroupLayout::Parse(mi, self);
  ASSERT_TRUE(l.ok()) << l.status().ToString();
  EXPECT_EQ(l->version, CgroupVersion::kV2);
  ASSERT_EQ(l->hierarchies.size(), 1u);
  EXPECT_EQ(l->hierarchies[0].AgentDir(), "/sys/fs/cgroup/system.slice/gridemu-agent.service");
  // Controllers unknown at parse time: the unified hierarchy serves them all.
  EXPECT_EQ(l->ForController("memory"), &l->hierarchies[0]);
  EXPECT_EQ(&l->TaskHierarchy(), &l->hierarchies[0]);
  EXPECT_THAT(l->Dirs("gridemu/e/v"),
              ElementsAre("/sys/fs/cgroup/system.slice/gridemu-agent.service/gridemu/e/v"));
}

TEST(CgroupLayoutTest, V2ControllersRestrictForController) {
  CgroupLayout l;
  l.version = CgroupVersion::kV2;
  CgroupHierarchy h;
  h.mount_point = "/sys/fs/cgroup";
  h.controllers = {"cpu", "memory"};
  l.hierarchies.push_back(h);
  EXPECT_NE(l.ForController("memory"), nullptr);
  EXPECT_EQ(l.ForController("pids"), nullptr);
}

TEST(CgroupLayoutTest, ContainerMountRootIsStripped) {
  constexpr char mi[] =
      "40 30 0:30 /docker/abc /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n";
  constexpr char self[] = "3:memory:/docker/abc/agent\n";
  Result<CgroupLayout> l = CgroupLayout::Parse(mi, self);
  ASSERT_TRUE(l.ok()) << l.status().ToString();
  EXPECT_EQ(l->hierarchies[0].AgentDir(), "/sys/fs/cgroup/memory/agent");
  // A path outside the mount root (cgroup namespace): taken as is.
  CgroupHierarchy h;
  h.mount_point = "/sys/fs/cgroup";
  h.mount_root = "/docker/abc";
  h.agent_path = "/";
  EXPECT_EQ(h.AgentDir(), "/sys/fs/cgroup");
  h.agent_path = "/docker/abcdef";  // not below /docker/abc
  EXPECT_EQ(h.AgentDir(), "/sys/fs/cgroup/docker/abcdef");
}

TEST(CgroupLayoutTest, EscapedMountPoint) {
  constexpr char mi[] = "40 30 0:30 / /cg\\040root/memory rw - cgroup cgroup rw,memory\n";
  Result<CgroupLayout> l = CgroupLayout::Parse(mi, "3:memory:/\n");
  ASSERT_TRUE(l.ok()) << l.status().ToString();
  EXPECT_EQ(l->hierarchies[0].mount_point, "/cg root/memory");
}

TEST(CgroupLayoutTest, Errors) {
  EXPECT_EQ(CgroupLayout::Parse("22 27 0:21 / /proc rw - proc proc rw\n", "0::/\n").status().code(),
            StatusCode::kUnavailable);
  EXPECT_EQ(CgroupLayout::Parse("garbage\n", "0::/\n").status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(CgroupLayout::Parse(kHybridMountinfo, "nonsense\n").status().code(),
            StatusCode::kInvalidArgument);
}

TEST(CgroupNamesTest, RelativePaths) {
  EXPECT_EQ(VnodeCgroupRel("gridemu", "exp-1", "peer0"), "gridemu/exp-1/peer0");
  EXPECT_EQ(TaskCgroupName(42), "task-42");
}

TEST(CgroupCpuBandwidthTest, QuotaFromCores) {
  EXPECT_EQ(ComputeCpuBandwidth(0.25), (CpuBandwidth{25000, 100000}));
  EXPECT_EQ(ComputeCpuBandwidth(1.0), (CpuBandwidth{100000, 100000}));
  EXPECT_EQ(ComputeCpuBandwidth(2.5), (CpuBandwidth{250000, 100000}));
  EXPECT_EQ(ComputeCpuBandwidth(0.333), (CpuBandwidth{33300, 100000}));
  // Below the kernel's 1 ms minimum: clamped.
  EXPECT_EQ(ComputeCpuBandwidth(0.001), (CpuBandwidth{1000, 100000}));
  EXPECT_EQ(ComputeCpuBandwidth(0.5, std::chrono::milliseconds(50)), (CpuBandwidth{25000, 50000}));
  // Unlimited.
  EXPECT_EQ(ComputeCpuBandwidth(0).quota_us, -1);
  EXPECT_EQ(ComputeCpuBandwidth(-1).quota_us, -1);
  EXPECT_EQ(ComputeCpuBandwidth(std::nan("")).quota_us, -1);
  EXPECT_EQ(ComputeCpuBandwidth(INFINITY).quota_us, -1);
}

TEST(CgroupCpuBandwidthTest, WeightToShares) {
  EXPECT_EQ(CpuWeightToShares(0), 1024u);
  EXPECT_EQ(CpuWeightToShares(100), 1024u);
  EXPECT_EQ(CpuWeightToShares(50), 512u);
  EXPECT_EQ(CpuWeightToShares(1), 10u);
  EXPECT_EQ(CpuWeightToShares(10000), 102400u);
  EXPECT_EQ(CpuWeightToShares(1000000), 262144u);
}

TEST(CgroupPlanTest, V1Limits) {
  VnodeResources r;
  r.cpu_cores = 0.25;
  r.cpu_weight = 200;
  r.memory_bytes = 64 << 20;
  r.pids = 512;
  EXPECT_THAT(PlanCgroupLimits(CgroupVersion::kV1, r),
              ElementsAre(CgroupWrite{"cpu", "cpu.cfs_period_us", "100000"},
                          CgroupWrite{"cpu", "cpu.cfs_quota_us", "25000"},
                          CgroupWrite{"cpu", "cpu.shares", "2048"},
                          CgroupWrite{"memory", "memory.limit_in_bytes", "67108864"},
                          CgroupWrite{"memory", "memory.memsw.limit_in_bytes", "67108864", true},
                          CgroupWrite{"memory", "memory.swappiness", "0", true},
                          CgroupWrite{"pids", "pids.max", "513"}));
}

TEST(CgroupPlanTest, V2Limits) {
  VnodeResources r;
  r.cpu_cores = 1.5;
  r.cpu_weight = 20000;
  r.memory_bytes = 256 << 20;
  r.pids = 16;
  EXPECT_THAT(PlanCgroupLimits(CgroupVersion::kV2, r),
              ElementsAre(CgroupWrite{"cpu", "cpu.max", "150000 100000"},
                          CgroupWrite{"cpu", "cpu.weight", "10000"},
                          CgroupWrite{"memory", "memory.max", "268435456"},
                          CgroupWrite{"memory", "memory.swap.max", "0", true},
                          CgroupWrite{"pids", "pids.max", "17"}));
}

TEST(CgroupPlanTest, NoLimitsNoWrites) {
  EXPECT_TRUE(PlanCgroupLimits(CgroupVersion::kV1, {}).empty());
  EXPECT_TRUE(PlanCgroupLimits(CgroupVersion::kV2, {}).empty());
}

TEST(CgroupParseTest, KeyedValues) {
  constexpr char oom[] = "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n";
  EXPECT_EQ(*ParseKeyedValue(oom, "oom_kill"), 3u);
  EXPECT_EQ(*ParseKeyedValue(oom, "under_oom"), 0u);
  constexpr char events[] = "low 0\nhigh 0\nmax 12\noom 2\noom_kill 1\noom_group_kill 0\n";
  EXPECT_EQ(*ParseKeyedValue(events, "oom_kill"), 1u);
  EXPECT_EQ(*ParseKeyedValue("usage_usec 123456\nuser_usec 1\n", "usage_usec"), 123456u);
  EXPECT_EQ(ParseKeyedValue(events, "oom_kil").status().code(), StatusCode::kNotFound);
  EXPECT_EQ(ParseKeyedValue("", "x").status().code(), StatusCode::kNotFound);
}

TEST(CgroupParseTest, Procs) {
  EXPECT_THAT(*ParseProcs("1\n23\n456\n"), ElementsAre(1, 23, 456));
  EXPECT_TRUE(ParseProcs("").value().empty());
  EXPECT_EQ(ParseProcs("12x\n").status().code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace gridemu::agent

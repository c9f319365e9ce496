// Root tests of ownership and cleanup: ListLeftovers, CleanupExperiment,
// CleanupAll and Adopt after a simulated agent crash. They run with a private
// object prefix ("gridemut<pid>") so that CleanupAll cannot touch anything but
// this test's objects, and they check that look-alike foreign objects (a netns
// and a cgroup with a live process) survive.
#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <sstream>
#include <thread>

#include "gridemu/node-agent/cgroup.h"
#include "gridemu/node-agent/netns_runtime.h"
#include "gridemu/node-agent/runtime.h"

namespace gridemu::agent {
namespace {

using ::testing::Contains;
using ::testing::Not;
using namespace std::chrono_literals;

bool Exists(const std::string& path) {
  struct stat st;
  return ::lstat(path.c_str(), &st) == 0;
}

bool ProcessAlive(pid_t pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/stat");
  std::string stat((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  size_t p = stat.rfind(')');
  return p != std::string::npos && p + 2 < stat.size() && stat[p + 2] != 'Z';
}

// A named network namespace made without the runtime (like `ip netns add`).
bool MakeForeignNetns(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0);
  if (fd < 0) return false;
  ::close(fd);
  pid_t child = ::fork();
  if (child == 0) {
    if (::unshare(CLONE_NEWNET) != 0) ::_exit(1);
    ::_exit(::mount("/proc/self/ns/net", path.c_str(), "none", MS_BIND, nullptr) == 0 ? 0 : 2);
  }
  int st = 0;
  ::waitpid(child, &st, 0);
  return WIFEXITED(st) && WEXITSTATUS(st) == 0;
}

void RemoveForeignNetns(const std::string& path) {
  ::umount2(path.c_str(), MNT_DETACH);
  ::unlink(path.c_str());
}

// Run with the host's cgroup layout and forced onto cgroup v2 (see
// runtime_netns_root_test.cc).
enum class CgroupMode { kDetected, kV2 };

class RuntimeCleanupTest : public ::testing::TestWithParam<CgroupMode> {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root (creates namespaces and cgroups)";
    if (GetParam() == CgroupMode::kV2) {
      Result<CgroupLayout> detected = CgroupLayout::Detect();
      if (detected.ok() && detected->version == CgroupVersion::kV2) {
        GTEST_SKIP() << "the host is v2 already: covered by the detected run";
      }
      if (!CgroupLayout::Detect(CgroupVersion::kV2).ok()) GTEST_SKIP() << "no cgroup2 hierarchy";
      options_.cgroup_version = CgroupVersion::kV2;
    }
    const std::string pid = std::to_string(::getpid());
    options_.prefix = "gridemut" + pid;
    e1_ = "c" + pid;
    e2_ = "c" + pid + "-z";  // netns "<prefix>-c<pid>-z-v1" starts like e1's names
    Result<CgroupLayout> layout = CgroupLayout::Detect(options_.cgroup_version);
    ASSERT_TRUE(layout.ok());
    layout_ = *layout;

    // Foreign look-alikes: they must survive every cleanup below.
    // The last one carries exactly our "<prefix>-" but no record proves it ours:
    // CleanupAll must leave it (found by the agent's `gridemu clean` test).
    foreign_netns_ = {options_.netns_dir + "/t" + pid + "-foreign",
                      options_.netns_dir + "/" + options_.prefix + "x-" + e1_ + "-v1",
                      options_.netns_dir + "/" + options_.prefix + "-foreign" + pid};
    for (const std::string& n : foreign_netns_) ASSERT_TRUE(MakeForeignNetns(n)) << n;
    foreign_cgroup_ = layout_.TaskHierarchy().AgentDir() + "/" + options_.prefix + "x";
    ASSERT_EQ(::mkdir(foreign_cgroup_.c_str(), 0755), 0);
    foreign_pid_ = ::fork();
    if (foreign_pid_ == 0) {
      std::ofstream(foreign_cgroup_ + "/cgroup.procs") << "0\n";
      ::execlp("sleep", "sleep", "1000", nullptr);
      ::_exit(1);
    }
    for (int i = 0; i < 200; ++i) {
      Result<std::vector<pid_t>> p = CgroupProcs(foreign_cgroup_, false);
      if (p.ok() && !p->empty()) break;
      std::this_thread::sleep_for(5ms);
    }
    Result<std::unique_ptr<NetnsRuntime>> rt = NetnsRuntime::Open(options_);
    ASSERT_TRUE(rt.ok()) << rt.status().ToString();
    rt_ = std::move(*rt);
  }

  void TearDown() override {
    if (rt_ != nullptr) {
      Status s = rt_->CleanupAll();
      EXPECT_TRUE(s.ok()) << s.ToString();
    }
    // Foreign objects: still there, then removed by us.
    for (const std::string& n : foreign_netns_) {
      EXPECT_TRUE(Exists(n)) << n;
      RemoveForeignNetns(n);
    }
    if (foreign_pid_ > 0) {
      EXPECT_TRUE(ProcessAlive(foreign_pid_));
      ::kill(foreign_pid_, SIGKILL);
      ::waitpid(foreign_pid_, nullptr, 0);
    }
    if (!foreign_cgroup_.empty()) {
      EXPECT_TRUE(Exists(foreign_cgroup_));
      for (int i = 0; i < 100 && ::rmdir(foreign_cgroup_.c_str()) != 0; ++i) {
        std::this_thread::sleep_for(10ms);
      }
    }
  }

  VnodeSpec Spec(const std::string& exp, const std::string& name) {
    VnodeSpec s;
    s.experiment = exp;
    s.name = name;
    if (layout_.ForController("memory") != nullptr) s.resources.memory_bytes = 64 << 20;
    if (layout_.ForController("pids") != nullptr) s.resources.pids = 64;
    return s;
  }

  TaskId StartSleeper(const VnodeRef& ref) {
    TaskSpec t;
    t.shell_command = "sleep 1000 & setsid sleep 1000 & wait";
    Result<TaskId> id = rt_->Exec(ref, t);
    EXPECT_TRUE(id.ok()) << id.status().ToString();
    return id.ok() ? *id : 0;
  }

  RuntimeOptions options_;
  CgroupLayout layout_;
  std::unique_ptr<NetnsRuntime> rt_;
  std::string e1_, e2_;
  std::vector<std::string> foreign_netns_;
  std::string foreign_cgroup_;
  pid_t foreign_pid_ = -1;
};

TEST_P(RuntimeCleanupTest, CrashedAgentLeftoversAreFoundRemovedOrAdopted) {
  std::vector<VnodeSpec> specs = {Spec(e1_, "v1"), Spec(e1_, "v2"), Spec(e2_, "v1"),
                                  Spec(e2_, "v2")};
  for (const Status& s : rt_->CreateBatch(specs)) ASSERT_TRUE(s.ok()) << s.ToString();
  std::map<std::string, pid_t> inits;
  for (const VnodeSpec& s : specs) {
    VnodeRef ref{s.experiment, s.name};
    inits[ref.ToString()] = rt_->Info(ref)->init_pid;
    StartSleeper(ref);
  }
  std::this_thread::sleep_for(200ms);
  std::vector<pid_t> e1_procs;
  for (const char* n : {"v1", "v2"}) {
    Result<VnodeInfo> info = rt_->Info({e1_, n});
    ASSERT_TRUE(info.ok());
    for (const std::string& d : info->cgroup_dirs) {
      Result<std::vector<pid_t>> p = CgroupProcs(d, true);
      if (p.ok()) e1_procs.insert(e1_procs.end(), p->begin(), p->end());
    }
  }
  std::sort(e1_procs.begin(), e1_procs.end());
  e1_procs.erase(std::unique(e1_procs.begin(), e1_procs.end()), e1_procs.end());
  ASSERT_EQ(e1_procs.size(), 2u * 4u);  // init + sh + 2 sleeps, per vnode

  // The agent "crashes": its vnodes keep running.
  rt_.reset();
  // And one vnode's init dies while no agent is around.
  ::kill(inits[e2_ + "/v2"], SIGKILL);
  Result<std::unique_ptr<NetnsRuntime>> rt = NetnsRuntime::Open(options_);
  ASSERT_TRUE(rt.ok());
  rt_ = std::move(*rt);

  Result<Leftovers> all = rt_->ListLeftovers("");
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(all->netns.size(), 4u) << all->ToString();
  for (const std::string& f : foreign_netns_) {
    EXPECT_THAT(all->netns, Not(Contains(f.substr(f.rfind('/') + 1))));
  }
  EXPECT_THAT(all->cgroups, Not(Contains(foreign_cgroup_)));
  EXPECT_THAT(all->processes, Not(Contains(foreign_pid_)));

  Result<Leftovers> l1 = rt_->ListLeftovers(e1_);
  ASSERT_TRUE(l1.ok());
  const std::string p = options_.prefix + "-";
  EXPECT_THAT(l1->netns, testing::UnorderedElementsAre(p + e1_ + "-v1", p + e1_ + "-v2"));
  EXPECT_THAT(l1->processes, Contains(inits[e1_ + "/v1"]));
  for (pid_t pid : e1_procs) EXPECT_THAT(l1->processes, Contains(pid));
  EXPECT_THAT(l1->state_dirs, testing::ElementsAre("/run/" + options_.prefix + "/" + e1_));
  EXPECT_FALSE(l1->cgroups.empty());

  // Remove e1 only.
  Status s = rt_->CleanupExperiment(e1_);
  ASSERT_TRUE(s.ok()) << s.ToString();
  l1 = rt_->ListLeftovers(e1_);
  ASSERT_TRUE(l1.ok());
  EXPECT_TRUE(l1->empty()) << l1->ToString();
  for (pid_t pid : e1_procs) EXPECT_FALSE(ProcessAlive(pid)) << pid;
  EXPECT_TRUE(ProcessAlive(inits[e2_ + "/v1"]));
  EXPECT_TRUE(Exists(options_.netns_dir + "/" + p + e2_ + "-v1"));

  // e2 is adopted: v1 reconnects, v2 (init gone) comes back stopped.
  Result<std::vector<VnodeRef>> adopted = rt_->Adopt("");
  ASSERT_TRUE(adopted.ok()) << adopted.status().ToString();
  EXPECT_THAT(*adopted, testing::UnorderedElementsAre(VnodeRef{e2_, "v1"}, VnodeRef{e2_, "v2"}));
  Result<VnodeInfo> v1 = rt_->Info({e2_, "v1"});
  ASSERT_TRUE(v1.ok());
  EXPECT_TRUE(v1->connected);
  EXPECT_EQ(v1->state, VnodeState::kRunning);
  Result<VnodeInfo> v2 = rt_->Info({e2_, "v2"});
  ASSERT_TRUE(v2.ok());
  EXPECT_EQ(v2->state, VnodeState::kStopped);
  ASSERT_TRUE(rt_->Start({e2_, "v2"}).ok());
  for (const char* n : {"v1", "v2"}) {
    TaskSpec t;
    t.shell_command = "hostname";
    Result<TaskId> id = rt_->Exec({e2_, n}, t);
    ASSERT_TRUE(id.ok()) << id.status().ToString();
    Result<TaskResult> r = rt_->Wait(*id, 30s);
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r->exit_code, 0) << n;
  }
  Result<VnodeStats> st = rt_->Stats({e2_, "v1"});
  ASSERT_TRUE(st.ok());
  if (layout_.ForController("pids") != nullptr) {
    EXPECT_GE(st->pids_current, 4u);
  }

  // Everything else goes with CleanupAll.
  const pid_t e2_init = inits[e2_ + "/v1"];
  s = rt_->CleanupAll();
  ASSERT_TRUE(s.ok()) << s.ToString();
  all = rt_->ListLeftovers("");
  ASSERT_TRUE(all.ok());
  EXPECT_TRUE(all->empty()) << all->ToString();
  EXPECT_FALSE(ProcessAlive(e2_init));
  EXPECT_FALSE(Exists("/run/" + options_.prefix));
  for (const std::string& d : layout_.Dirs(options_.prefix)) EXPECT_FALSE(Exists(d)) << d;
  EXPECT_TRUE(rt_->List().empty());
}

TEST_P(RuntimeCleanupTest, CleanupOfAnUnknownExperimentIsANoOp) {
  ASSERT_TRUE(rt_->Create(Spec(e1_, "v1")).ok());
  Status s = rt_->CleanupExperiment("nothing-here");
  EXPECT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(rt_->List().size(), 1u);
  EXPECT_EQ(rt_->CleanupExperiment("Bad/Name").code(), StatusCode::kInvalidArgument);
}

INSTANTIATE_TEST_SUITE_P(Cgroup, RuntimeCleanupTest,
                         ::testing::Values(CgroupMode::kDetected, CgroupMode::kV2),
                         [](const ::testing::TestParamInfo<CgroupMode>& i) {
                           return i.param == CgroupMode::kV2 ? "v2" : "detected";
                         });

}  // namespace
}  // namespace gridemu::agent

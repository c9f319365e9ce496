// Root tests of the netns runtime: real namespaces, cgroups and processes.
// Every object is named after this test process (experiment "t<pid>..."),
// and every test cleans its experiment up in TearDown, even on failure.
// Traffic: none (loopback only).
#include <dirent.h>
#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <linux/capability.h>
#include <linux/magic.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <set>
#include <sstream>
#include <thread>

#include "gridemu/node-agent/netns_runtime.h"
#include "gridemu/node-agent/runtime.h"

namespace gridemu::agent {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using namespace std::chrono_literals;

std::string ReadFile(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

bool Exists(const std::string& path) {
  struct stat st;
  return ::lstat(path.c_str(), &st) == 0;
}

int CountLines(const std::string& path) {
  std::string s = ReadFile(path);
  return static_cast<int>(std::count(s.begin(), s.end(), '\n'));
}

// Alive and not a zombie.
bool ProcessAlive(pid_t pid) {
  std::string stat = ReadFile("/proc/" + std::to_string(pid) + "/stat");
  if (stat.empty()) return false;
  size_t p = stat.rfind(')');
  return p != std::string::npos && p + 2 < stat.size() && stat[p + 2] != 'Z';
}

// This process's descriptor limit before any runtime raised it.
const struct rlimit kOriginalNofile = [] {
  struct rlimit rl = {};
  ::getrlimit(RLIMIT_NOFILE, &rl);
  return rl;
}();

bool HaveCapability(int cap) {
  std::string status = ReadFile("/proc/self/status");
  size_t p = status.find("CapEff:");
  if (p == std::string::npos) return false;
  uint64_t eff = std::stoull(status.substr(p + 7), nullptr, 16);
  return (eff >> cap) & 1;
}

// Every test runs twice: with the host's own cgroup layout (v1 here), and
// forced onto the cgroup v2 hierarchy (on a hybrid host: its unified tree,
// which has the v2 core features — freeze, kill, leaves — but no controllers).
enum class CgroupMode { kDetected, kV2 };

class NetnsRuntimeTest : public ::testing::TestWithParam<CgroupMode> {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root (creates namespaces and cgroups)";
    if (GetParam() == CgroupMode::kV2) {
      Result<CgroupLayout> detected = CgroupLayout::Detect();
      if (detected.ok() && detected->version == CgroupVersion::kV2) {
        GTEST_SKIP() << "the host is v2 already: covered by the detected run";
      }
      Result<CgroupLayout> v2 = CgroupLayout::Detect(CgroupVersion::kV2);
      if (!v2.ok()) GTEST_SKIP() << "no cgroup2 hierarchy: " << v2.status().ToString();
      options_.cgroup_version = CgroupVersion::kV2;
    }
    static int counter = 0;
    exp_ = "t" + std::to_string(::getpid()) + "-" + std::to_string(counter++);
    Result<std::unique_ptr<NetnsRuntime>> rt = NetnsRuntime::Open(options_);
    ASSERT_TRUE(rt.ok()) << rt.status().ToString();
    rt_ = std::move(*rt);
    char tmpl[] = "/tmp/gridemu-rt-test-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }

  void TearDown() override {
    if (rt_ != nullptr) {
      Status s = rt_->CleanupExperiment(exp_);
      EXPECT_TRUE(s.ok()) << s.ToString();
      Result<Leftovers> left = rt_->ListLeftovers(exp_);
      ASSERT_TRUE(left.ok());
      EXPECT_TRUE(left->empty()) << left->ToString();
    }
    if (!dir_.empty()) std::system(("rm -rf " + dir_).c_str());
  }

  VnodeSpec Spec(const std::string& name, uint32_t index = 0) {
    VnodeSpec s;
    s.experiment = exp_;
    s.name = name;
    s.index = index;
    s.hosts = hosts_;
    return s;
  }

  VnodeRef Ref(const std::string& name) { return VnodeRef{exp_, name}; }

  bool HasController(const char* c) const {
    return rt_->cgroup_layout().ForController(c) != nullptr;
  }

  // Runs a shell command to completion; returns its result and output.
  TaskResult Run(const std::string& vnode, const std::string& cmd, std::string* out = nullptr,
                 std::string* err = nullptr, std::chrono::milliseconds timeout = 0ms) {
    TaskSpec t;
    t.shell_command = cmd;
    t.stdout_path = dir_ + "/out." + std::to_string(++runs_);
    t.stderr_path = dir_ + "/err." + std::to_string(runs_);
    t.timeout = timeout;
    Result<TaskId> id = rt_->Exec(Ref(vnode), t);
    EXPECT_TRUE(id.ok()) << id.status().ToString();
    if (!id.ok()) return {};
    Result<TaskResult> r = rt_->Wait(*id, 60s);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    if (out != nullptr) *out = ReadFile(t.stdout_path);
    if (err != nullptr) *err = ReadFile(t.stderr_path);
    return r.ok() ? *r : TaskResult{};
  }

  // Starts a long-running task; its stdout goes to *out_path.
  TaskId Start(const std::string& vnode, const std::string& cmd, std::string* out_path = nullptr,
               bool kill_leftovers = false) {
    TaskSpec t;
    t.shell_command = cmd;
    t.stdout_path = dir_ + "/out." + std::to_string(++runs_);
    t.stderr_path = t.stdout_path;
    t.kill_leftovers_on_exit = kill_leftovers;
    if (out_path != nullptr) *out_path = t.stdout_path;
    Result<TaskId> id = rt_->Exec(Ref(vnode), t);
    EXPECT_TRUE(id.ok()) << id.status().ToString();
    return id.ok() ? *id : 0;
  }

  // Waits until the task's cgroup holds `n` processes.
  std::vector<pid_t> WaitForProcs(TaskId id, size_t n) {
    std::vector<pid_t> pids;
    for (int i = 0; i < 500; ++i) {
      rt_->Poll(0ms);
      Result<TaskStatus> st = rt_->GetTask(id);
      if (!st.ok()) return {};
      Result<std::vector<pid_t>> p = CgroupProcs(st->cgroup_dir, true);
      if (p.ok() && p->size() >= n) return *p;
      std::this_thread::sleep_for(10ms);
    }
    ADD_FAILURE() << "task " << id << " never had " << n << " processes";
    return pids;
  }

  // pids.current of the vnode once it settles at `n` (zombies count until
  // init reaps them), or its last value.
  uint64_t SettledPids(const std::string& vnode, uint64_t n) {
    uint64_t last = 0;
    for (int i = 0; i < 300; ++i) {
      if (HasController("pids")) {
        Result<VnodeStats> s = rt_->Stats(Ref(vnode));
        if (!s.ok()) return 0;
        last = s->pids_current;
      } else {
        Result<VnodeInfo> info = rt_->Info(Ref(vnode));
        if (!info.ok()) return 0;
        Result<std::vector<pid_t>> p = CgroupProcs(info->cgroup_dirs.front(), true);
        last = p.ok() ? p->size() : 0;
      }
      if (last == n) break;
      std::this_thread::sleep_for(10ms);
    }
    return last;
  }

  RuntimeOptions options_;
  std::unique_ptr<NetnsRuntime> rt_;
  std::string exp_;
  std::string dir_;
  int runs_ = 0;
  std::shared_ptr<const HostsTable> hosts_ = std::make_shared<const HostsTable>(
      HostsTable{{"a", {"10.99.0.1"}}, {"b", {"10.99.0.2", "fd00::2"}}});
};

TEST_P(NetnsRuntimeTest, VnodeSeesItsNameHostsEnvAndInit) {
  VnodeSpec s = Spec("a", 7);
  s.out_dir = dir_ + "/out-a";
  s.shared_dir = dir_ + "/shared";
  ASSERT_EQ(::mkdir(s.shared_dir.c_str(), 0755), 0);
  { std::ofstream(s.shared_dir + "/file.txt") << "shipped\n"; }
  s.env = {{"FOO", "bar baz"}};
  if (HasController("memory")) s.resources.memory_bytes = 128 << 20;
  ASSERT_TRUE(rt_->Create(s).ok());

  Result<VnodeInfo> info = rt_->Info(Ref("a"));
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->state, VnodeState::kRunning);
  EXPECT_GT(info->init_pid, 1);
  EXPECT_EQ(info->netns_name, "gridemu-" + exp_ + "-a");
  EXPECT_TRUE(Exists(info->netns_path));
  EXPECT_TRUE(info->connected);

  std::string out, err;
  TaskResult r =
      Run("a", "hostname; cat /etc/hostname; echo pid=$$; tr '\\0' ' ' < /proc/1/cmdline; echo",
          &out, &err);
  EXPECT_EQ(r.reason, ExitReason::kExited) << r.ToString() << " " << err;
  EXPECT_EQ(r.exit_code, 0);
  std::istringstream lines(out);
  std::string host, hostname_file, pid_line, cmdline;
  std::getline(lines, host);
  std::getline(lines, hostname_file);
  std::getline(lines, pid_line);
  std::getline(lines, cmdline);
  EXPECT_EQ(host, "a");
  EXPECT_EQ(hostname_file, "a");
  // A fresh PID namespace: init is 1, the first tasks get small pids.
  ASSERT_EQ(pid_line.rfind("pid=", 0), 0u) << out;
  EXPECT_LT(std::stoi(pid_line.substr(4)), 20);
  EXPECT_THAT(cmdline, HasSubstr("gridemu-vnode-init"));
  EXPECT_THAT(cmdline, HasSubstr(exp_ + "/a"));

  r = Run("a", "cat /etc/hosts", &out);
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_THAT(out, HasSubstr("127.0.0.1\tlocalhost\n"));
  EXPECT_THAT(out, HasSubstr("10.99.0.1\ta\n"));
  EXPECT_THAT(out, HasSubstr("10.99.0.2\tb\n"));
  EXPECT_THAT(out, HasSubstr("fd00::2\tb\n"));
  r = Run("a", "getent hosts b | head -1", &out);
  EXPECT_THAT(out, HasSubstr("b"));

  r = Run("a", "env", &out);
  EXPECT_THAT(out, HasSubstr("GRIDEMU_NODE=a\n"));
  EXPECT_THAT(out, HasSubstr("GRIDEMU_INDEX=7\n"));
  EXPECT_THAT(out, HasSubstr("GRIDEMU_EXPERIMENT=" + exp_ + "\n"));
  EXPECT_THAT(out, HasSubstr("GRIDEMU_OUT=" + s.out_dir + "\n"));
  EXPECT_THAT(out, HasSubstr("GRIDEMU_SHARED=" + s.shared_dir + "\n"));
  EXPECT_THAT(out, HasSubstr("HOME=" + info->home_dir + "\n"));
  EXPECT_THAT(out, HasSubstr("FOO=bar baz\n"));
  r = Run("a", "pwd", &out);
  EXPECT_EQ(out, info->home_dir + "\n");

  // GRIDEMU_OUT is writable and collected on the host; GRIDEMU_SHARED is read-only.
  r = Run("a", "echo result > \"$GRIDEMU_OUT/r.txt\" && cat \"$GRIDEMU_SHARED/file.txt\"", &out);
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_EQ(out, "shipped\n");
  EXPECT_EQ(ReadFile(s.out_dir + "/r.txt"), "result\n");
  r = Run("a", "echo x > \"$GRIDEMU_SHARED/new\"", &out, &err);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(err, HasSubstr("Read-only"));
  EXPECT_FALSE(Exists(s.shared_dir + "/new"));

  // Network: only lo, up; the named netns is the vnode's.
  r = Run("a", "ip -o link; readlink /proc/self/ns/net", &out, &err);
  EXPECT_EQ(r.exit_code, 0) << err;
  EXPECT_THAT(out, HasSubstr("1: lo: <LOOPBACK,UP,LOWER_UP>"));
  EXPECT_EQ(std::count(out.begin(), out.end(), '\n'), 2) << out;
  struct stat st;
  ASSERT_EQ(::stat(info->netns_path.c_str(), &st), 0);
  EXPECT_THAT(out, HasSubstr("net:[" + std::to_string(st.st_ino) + "]"));
  Result<int> nsfd = rt_->OpenNetns(Ref("a"));
  ASSERT_TRUE(nsfd.ok());
  struct stat st2;
  ASSERT_EQ(::fstat(*nsfd, &st2), 0);
  EXPECT_EQ(st2.st_ino, st.st_ino);
  ::close(*nsfd);
  EXPECT_EQ(std::system(("ip netns exec " + info->netns_name + " true").c_str()), 0);

  // Mounts done inside the vnode do not reach the host.
  r = Run("a",
          "mkdir -p /mnt/gridemu-rt-probe-$$ 2>/dev/null; grep -c ' /tmp ' /proc/self/mountinfo",
          &out);
  EXPECT_EQ(out, "1\n");
  EXPECT_THAT(ReadFile("/proc/self/mountinfo"), Not(HasSubstr(info->state_dir + "/home")));

  // Init is exempt from the OOM killer, tasks are not; tasks get the usual
  // descriptor limit, not the agent's raised one.
  // (Lowering oom_score_adj needs CAP_SYS_RESOURCE, which some sandboxes drop.)
  r = Run("a", "cat /proc/1/oom_score_adj /proc/self/oom_score_adj; ulimit -n", &out);
  EXPECT_EQ(out, std::string(HaveCapability(CAP_SYS_RESOURCE) ? "-1000" : "0") + "\n0\n" +
                     std::to_string(kOriginalNofile.rlim_cur) + "\n");

  Result<VnodeStats> stats = rt_->Stats(Ref("a"));
  ASSERT_TRUE(stats.ok());
  if (HasController("pids")) {
    EXPECT_GE(stats->pids_current, 1u);
  }
  if (HasController("memory")) {
    EXPECT_GT(stats->memory_current_bytes, 0u);
  }
  EXPECT_GT(stats->cpu_usage.count(), 0);
}

TEST_P(NetnsRuntimeTest, TmpAndShmArePrivate) {
  ASSERT_TRUE(rt_->Create(Spec("a")).ok());
  ASSERT_TRUE(rt_->Create(Spec("b")).ok());
  const std::string name = "gridemu-rt-private-" + std::to_string(::getpid());
  std::string out;
  EXPECT_EQ(Run("a", "echo hi > /tmp/" + name + " && echo s > /dev/shm/" + name).exit_code, 0);
  EXPECT_EQ(Run("a", "cat /tmp/" + name, &out).exit_code, 0);
  EXPECT_EQ(out, "hi\n");
  EXPECT_EQ(Run("b", "test -e /tmp/" + name).exit_code, 1);
  EXPECT_EQ(Run("b", "test -e /dev/shm/" + name).exit_code, 1);
  EXPECT_FALSE(Exists("/tmp/" + name));
  EXPECT_FALSE(Exists("/dev/shm/" + name));
  // Each vnode has its own hostname and PID 1.
  EXPECT_EQ(Run("b", "hostname", &out).exit_code, 0);
  EXPECT_EQ(out, "b\n");
}

TEST_P(NetnsRuntimeTest, TaskOutputsExitCodesAndStartFailures) {
  ASSERT_TRUE(rt_->Create(Spec("a")).ok());
  std::string out, err;
  TaskResult r = Run("a", "echo to-out; echo to-err >&2; exit 3", &out, &err);
  EXPECT_EQ(r.reason, ExitReason::kExited);
  EXPECT_EQ(r.exit_code, 3);
  EXPECT_EQ(out, "to-out\n");
  EXPECT_EQ(err, "to-err\n");
  EXPECT_GE(r.times.end_mono, r.times.start_mono);
  EXPECT_GE(r.times.end_wall, r.times.start_wall);
  auto now = std::chrono::system_clock::now();
  EXPECT_LT(std::chrono::abs(now - r.times.end_wall), 60s);

  // argv form, env override, cwd, one file for both streams.
  TaskSpec t;
  t.argv = {"sh", "-c", "echo $X; pwd; echo e >&2"};
  t.env = {{"X", "from-task"}};
  t.cwd = "/etc";
  t.stdout_path = t.stderr_path = dir_ + "/both";
  Result<TaskId> id = rt_->Exec(Ref("a"), t);
  ASSERT_TRUE(id.ok());
  Result<TaskResult> w = rt_->Wait(*id, 30s);
  ASSERT_TRUE(w.ok());
  EXPECT_EQ(w->exit_code, 0);
  EXPECT_EQ(ReadFile(dir_ + "/both"), "from-task\n/etc\ne\n");

  // Program not found, bad cwd.
  t = TaskSpec{};
  t.argv = {"/nonexistent/program"};
  id = rt_->Exec(Ref("a"), t);
  ASSERT_TRUE(id.ok());
  w = rt_->Wait(*id, 30s);
  ASSERT_TRUE(w.ok());
  EXPECT_EQ(w->reason, ExitReason::kStartFailed);
  EXPECT_THAT(w->error, HasSubstr("No such file"));
  t.argv = {"true"};
  t.cwd = "/nonexistent-dir";
  id = rt_->Exec(Ref("a"), t);
  ASSERT_TRUE(id.ok());
  w = rt_->Wait(*id, 30s);
  ASSERT_TRUE(w.ok());
  EXPECT_EQ(w->reason, ExitReason::kStartFailed);
  EXPECT_THAT(w->error, HasSubstr("chdir"));

  EXPECT_EQ(rt_->Exec(Ref("a"), TaskSpec{}).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(rt_->Exec(Ref("zz"), t).status().code(), StatusCode::kNotFound);
}

TEST_P(NetnsRuntimeTest, TimeoutKillsTheTask) {
  ASSERT_TRUE(rt_->Create(Spec("a")).ok());
  auto t0 = std::chrono::steady_clock::now();
  TaskResult r = Run("a", "sleep 30 & sleep 30", nullptr, nullptr, 300ms);
  EXPECT_EQ(r.reason, ExitReason::kTimedOut) << r.ToString();
  EXPECT_TRUE(r.timed_out);
  EXPECT_EQ(r.signal, SIGKILL);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 10s);
  EXPECT_GE(r.times.duration(), 250ms);
  // Nothing of it is left: only init.
  EXPECT_EQ(SettledPids("a", 1), 1u);
}

TEST_P(NetnsRuntimeTest, SignalsTermStopContKill) {
  ASSERT_TRUE(rt_->Create(Spec("a")).ok());
  TaskId id = Start("a", "exec sleep 30");
  WaitForProcs(id, 1);
  ASSERT_TRUE(rt_->Signal(id, TaskSignal::kTerm).ok());
  Result<TaskResult> r = rt_->Wait(id, 30s);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->reason, ExitReason::kSignaled);
  EXPECT_EQ(r->signal, SIGTERM);
  EXPECT_EQ(rt_->Signal(id, TaskSignal::kTerm).code(), StatusCode::kFailedPrecondition);

  std::string out;
  id = Start("a", "i=0; while :; do i=$((i+1)); echo $i; sleep 0.02; done", &out);
  WaitForProcs(id, 1);
  std::this_thread::sleep_for(200ms);
  ASSERT_TRUE(rt_->Signal(id, TaskSignal::kStop).ok());
  std::this_thread::sleep_for(100ms);
  int stopped = CountLines(out);
  std::this_thread::sleep_for(400ms);
  EXPECT_EQ(CountLines(out), stopped);
  ASSERT_TRUE(rt_->Signal(id, TaskSignal::kCont).ok());
  std::this_thread::sleep_for(400ms);
  EXPECT_GT(CountLines(out), stopped);
  ASSERT_TRUE(rt_->Signal(id, TaskSignal::kKill).ok());
  r = rt_->Wait(id, 30s);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->reason, ExitReason::kKilled);
  EXPECT_EQ(rt_->Signal(12345678, TaskSignal::kKill).code(), StatusCode::kNotFound);
}

TEST_P(NetnsRuntimeTest, KillingATaskKillsEveryProcessItStarted) {
  ASSERT_TRUE(rt_->Create(Spec("a")).ok());
  TaskId id = Start("a", "sleep 1000 & sleep 1000 & setsid sleep 1000 & wait");
  std::vector<pid_t> pids = WaitForProcs(id, 4);
  ASSERT_EQ(pids.size(), 4u);
  Result<TaskStatus> st = rt_->GetTask(id);
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(st->state, TaskState::kRunning);
  ASSERT_TRUE(rt_->Signal(id, TaskSignal::kKill).ok());
  Result<TaskResult> r = rt_->Wait(id, 30s);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->reason, ExitReason::kKilled);
  for (pid_t p : pids) EXPECT_FALSE(ProcessAlive(p)) << "pid " << p << " survived";
  Result<std::vector<pid_t>> left = CgroupProcs(st->cgroup_dir, true);
  EXPECT_TRUE(!left.ok() || left->empty());
  EXPECT_FALSE(Exists(st->cgroup_dir));  // removed once empty
  EXPECT_EQ(SettledPids("a", 1), 1u);    // init only
}

TEST_P(NetnsRuntimeTest, LeftoversOfAnExitedTask) {
  ASSERT_TRUE(rt_->Create(Spec("a")).ok());
  // Default: a daemon outlives its task...
  TaskResult r = Run("a", "setsid sleep 1000 > /dev/null 2>&1 & echo started");
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_EQ(SettledPids("a", 2), 2u);
  // ...unless the task asks for its leftovers to be killed.
  TaskId id = Start("a", "setsid sleep 1000 > /dev/null 2>&1 & echo started", nullptr, true);
  Result<TaskResult> w = rt_->Wait(id, 30s);
  ASSERT_TRUE(w.ok());
  EXPECT_EQ(w->exit_code, 0);
  Result<TaskStatus> st = rt_->GetTask(id);
  ASSERT_TRUE(st.ok());
  Result<std::vector<pid_t>> left = CgroupProcs(st->cgroup_dir, true);
  EXPECT_TRUE(!left.ok() || left->empty());
  // pids.current drops once init has reaped the killed daemon.
  EXPECT_EQ(SettledPids("a", 2), 2u);
  // Destroy kills the first daemon too (checked by TearDown's leftovers).
}

TEST_P(NetnsRuntimeTest, OomKillIsReported) {
  if (!HasController("memory")) GTEST_SKIP() << "no memory controller";
  VnodeSpec s = Spec("a");
  s.resources.memory_bytes = 64 << 20;
  ASSERT_TRUE(rt_->Create(s).ok());
  std::string err;
  TaskResult r = Run("a", "head -c 200M /dev/zero | tail > /dev/null", nullptr, &err);
  EXPECT_EQ(r.reason, ExitReason::kOomKilled) << r.ToString() << " stderr: " << err;
  EXPECT_TRUE(r.oom_killed);
  Result<VnodeStats> st = rt_->Stats(Ref("a"));
  ASSERT_TRUE(st.ok());
  EXPECT_GE(st->oom_kills, 1u);
  EXPECT_LE(st->memory_peak_bytes, uint64_t{64 << 20} + (1 << 20));
  EXPECT_GT(st->memory_peak_bytes, uint64_t{32 << 20});
  // The vnode survives and runs the next task normally.
  r = Run("a", "true");
  EXPECT_EQ(r.reason, ExitReason::kExited);
}

TEST_P(NetnsRuntimeTest, PidsLimit) {
  if (!HasController("pids")) GTEST_SKIP() << "no pids controller";
  VnodeSpec s = Spec("a");
  s.resources.pids = 8;
  ASSERT_TRUE(rt_->Create(s).ok());
  Result<VnodeInfo> info = rt_->Info(Ref("a"));
  ASSERT_TRUE(info.ok());
  std::string pids_dir;
  for (const std::string& d : info->cgroup_dirs) {
    if (Exists(d + "/pids.max")) pids_dir = d;
  }
  ASSERT_FALSE(pids_dir.empty());
  EXPECT_EQ(ReadFile(pids_dir + "/pids.max"), "9\n");
  std::string err;
  TaskResult r =
      Run("a", "for i in 1 2 3 4 5 6 7 8 9 10 11 12; do sleep 2 & done; wait", nullptr, &err);
  EXPECT_THAT(err, HasSubstr("fork")) << r.ToString();
}

TEST_P(NetnsRuntimeTest, CpuQuota) {
  if (!HasController("cpu")) GTEST_SKIP() << "no cpu controller";
  VnodeSpec s = Spec("a");
  s.resources.cpu_cores = 0.25;
  s.resources.cpu_weight = 50;
  ASSERT_TRUE(rt_->Create(s).ok());
  Result<VnodeInfo> info = rt_->Info(Ref("a"));
  ASSERT_TRUE(info.ok());
  bool checked = false;
  for (const std::string& d : info->cgroup_dirs) {
    if (Exists(d + "/cpu.cfs_quota_us")) {
      EXPECT_EQ(ReadFile(d + "/cpu.cfs_quota_us"), "25000\n");
      EXPECT_EQ(ReadFile(d + "/cpu.cfs_period_us"), "100000\n");
      EXPECT_EQ(ReadFile(d + "/cpu.shares"), "512\n");
      checked = true;
    } else if (Exists(d + "/cpu.max")) {
      EXPECT_EQ(ReadFile(d + "/cpu.max"), "25000 100000\n");
      checked = true;
    }
  }
  EXPECT_TRUE(checked);
  // Two busy loops for 1 s of wall time use at most ~0.25 s of CPU.
  Result<VnodeStats> before = rt_->Stats(Ref("a"));
  TaskResult r = Run(
      "a", "timeout 1 sh -c 'while :; do :; done' & timeout 1 sh -c 'while :; do :; done'; wait");
  Result<VnodeStats> after = rt_->Stats(Ref("a"));
  ASSERT_TRUE(before.ok() && after.ok());
  auto used = after->cpu_usage - before->cpu_usage;
  EXPECT_LT(used, 450ms) << r.ToString();
  EXPECT_GT(used, 20ms);
}

TEST_P(NetnsRuntimeTest, FreezeAndThaw) {
  ASSERT_TRUE(rt_->Create(Spec("a")).ok());
  std::string out;
  TaskId id = Start("a", "i=0; while :; do i=$((i+1)); echo $i; sleep 0.02; done", &out);
  WaitForProcs(id, 1);
  std::this_thread::sleep_for(200ms);
  ASSERT_TRUE(rt_->Freeze(Ref("a")).ok());
  EXPECT_EQ(rt_->Info(Ref("a"))->state, VnodeState::kFrozen);
  int frozen = CountLines(out);
  std::this_thread::sleep_for(500ms);
  EXPECT_EQ(CountLines(out), frozen);
  ASSERT_TRUE(rt_->Thaw(Ref("a")).ok());
  EXPECT_EQ(rt_->Info(Ref("a"))->state, VnodeState::kRunning);
  std::this_thread::sleep_for(400ms);
  EXPECT_GT(CountLines(out), frozen);
  // Destroying a frozen vnode works too.
  ASSERT_TRUE(rt_->Freeze(Ref("a")).ok());
  EXPECT_TRUE(rt_->Destroy(Ref("a")).ok());
  Result<TaskResult> r = rt_->Wait(id, 10s);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->reason, ExitReason::kKilled);
}

TEST_P(NetnsRuntimeTest, StopKeepsTheNetworkAndStartRestarts) {
  ASSERT_TRUE(rt_->Create(Spec("a")).ok());
  Result<VnodeInfo> info = rt_->Info(Ref("a"));
  ASSERT_TRUE(info.ok());
  struct stat before;
  ASSERT_EQ(::stat(info->netns_path.c_str(), &before), 0);
  TaskId id = Start("a", "sleep 1000");
  WaitForProcs(id, 1);
  const pid_t old_init = info->init_pid;
  ASSERT_TRUE(rt_->Stop(Ref("a")).ok());
  Result<TaskResult> r = rt_->Wait(id, 10s);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->reason, ExitReason::kKilled);
  EXPECT_FALSE(ProcessAlive(old_init));
  EXPECT_EQ(rt_->Info(Ref("a"))->state, VnodeState::kStopped);
  EXPECT_TRUE(Exists(info->netns_path));
  TaskSpec t;
  t.argv = {"true"};
  EXPECT_EQ(rt_->Exec(Ref("a"), t).status().code(), StatusCode::kFailedPrecondition);
  ASSERT_TRUE(rt_->Start(Ref("a")).ok());
  EXPECT_EQ(rt_->Start(Ref("a")).code(), StatusCode::kFailedPrecondition);
  std::string out;
  EXPECT_EQ(Run("a", "readlink /proc/self/ns/net; echo $$; hostname", &out).exit_code, 0);
  EXPECT_THAT(out, HasSubstr("net:[" + std::to_string(before.st_ino) + "]"));
  EXPECT_THAT(out, HasSubstr("\na\n"));
}

TEST_P(NetnsRuntimeTest, DestroyRemovesEverything) {
  std::vector<VnodeSpec> specs;
  for (int i = 0; i < 5; ++i) specs.push_back(Spec("v" + std::to_string(i), i));
  std::vector<Status> created = rt_->CreateBatch(specs);
  for (const Status& s : created) ASSERT_TRUE(s.ok()) << s.ToString();
  std::vector<VnodeInfo> infos;
  std::vector<TaskId> tasks;
  for (const VnodeSpec& s : specs) {
    infos.push_back(*rt_->Info(Ref(s.name)));
    tasks.push_back(Start(s.name, "sleep 1000 & setsid sleep 1000 & wait"));
  }
  for (TaskId t : tasks) WaitForProcs(t, 3);
  std::vector<VnodeRef> refs;
  for (const VnodeSpec& s : specs) refs.push_back(Ref(s.name));
  for (const Status& s : rt_->DestroyBatch(refs)) EXPECT_TRUE(s.ok()) << s.ToString();
  for (const VnodeInfo& i : infos) {
    EXPECT_FALSE(ProcessAlive(i.init_pid));
    EXPECT_FALSE(Exists(i.netns_path));
    EXPECT_FALSE(Exists(i.state_dir));
    for (const std::string& d : i.cgroup_dirs) EXPECT_FALSE(Exists(d)) << d;
  }
  for (TaskId t : tasks) EXPECT_EQ(rt_->GetTask(t)->result.reason, ExitReason::kKilled);
  std::vector<RuntimeEvent> events = rt_->Poll(0ms);
  int exits = 0;
  for (const RuntimeEvent& e : events) exits += e.kind == RuntimeEventKind::kTaskExited;
  EXPECT_EQ(exits, 5);
  EXPECT_TRUE(rt_->List().empty());
  EXPECT_EQ(rt_->Destroy(refs[0]).code(), StatusCode::kNotFound);
  Result<Leftovers> left = rt_->ListLeftovers(exp_);
  ASSERT_TRUE(left.ok());
  EXPECT_TRUE(left->empty()) << left->ToString();
}

TEST_P(NetnsRuntimeTest, CreateRefusesDuplicatesAndBadSpecs) {
  ASSERT_TRUE(rt_->Create(Spec("a")).ok());
  EXPECT_EQ(rt_->Create(Spec("a")).code(), StatusCode::kAlreadyExists);
  std::vector<VnodeSpec> batch = {Spec("ok"), Spec("bad name"), Spec("ok")};
  std::vector<Status> st = rt_->CreateBatch(batch);
  EXPECT_TRUE(st[0].ok());
  EXPECT_EQ(st[1].code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(st[2].code(), StatusCode::kAlreadyExists);
  VnodeSpec missing = Spec("m");
  missing.shared_dir = dir_ + "/does-not-exist";
  EXPECT_EQ(rt_->Create(missing).code(), StatusCode::kNotFound);
  // The failed vnode left nothing behind.
  VnodePaths p = ComputeVnodePaths(options_, exp_, "m");
  EXPECT_FALSE(Exists(p.state_dir));
  EXPECT_FALSE(Exists(p.netns_path));
  EXPECT_EQ(rt_->List().size(), 2u);
}

TEST_P(NetnsRuntimeTest, EventsThroughPollAndCallback) {
  ASSERT_TRUE(rt_->Create(Spec("a")).ok());
  TaskId id = Start("a", "exit 4");
  std::vector<RuntimeEvent> seen;
  for (int i = 0; i < 100 && seen.size() < 2; ++i) {
    std::vector<RuntimeEvent> ev = rt_->Poll(100ms);
    seen.insert(seen.end(), ev.begin(), ev.end());
  }
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_EQ(seen[0].kind, RuntimeEventKind::kTaskStarted);
  EXPECT_EQ(seen[0].task, id);
  EXPECT_GT(seen[0].pid_in_vnode, 1);
  EXPECT_EQ(seen[1].kind, RuntimeEventKind::kTaskExited);
  EXPECT_EQ(seen[1].result.exit_code, 4);
  EXPECT_EQ(seen[1].vnode, Ref("a"));

  std::vector<RuntimeEvent> cb;
  rt_->SetEventCallback([&cb](const RuntimeEvent& e) { cb.push_back(e); });
  id = Start("a", "exit 5");
  ASSERT_TRUE(rt_->Wait(id, 30s).ok());
  ASSERT_EQ(cb.size(), 2u);
  EXPECT_EQ(cb[1].result.exit_code, 5);
  EXPECT_TRUE(rt_->Poll(0ms).empty());
  rt_->SetEventCallback(nullptr);
  // The event fd is pollable by an external loop.
  id = Start("a", "exit 6");
  struct pollfd p = {rt_->event_fd(), POLLIN, 0};
  EXPECT_EQ(::poll(&p, 1, 10000), 1);
  ASSERT_TRUE(rt_->Wait(id, 30s).ok());
}

TEST_P(NetnsRuntimeTest, AdoptAfterAgentRestart) {
  ASSERT_TRUE(rt_->Create(Spec("a", 2)).ok());
  std::string out_path;
  TaskId old_task = Start("a", "sleep 1000 & exec sleep 1000", &out_path);
  WaitForProcs(old_task, 2);
  TaskId finished_later = Start("a", "sleep 0.5; exit 9");
  const pid_t init = rt_->Info(Ref("a"))->init_pid;
  // The agent goes away; the vnode keeps running.
  rt_.reset();
  std::this_thread::sleep_for(800ms);  // finished_later exits while nobody listens
  EXPECT_TRUE(ProcessAlive(init));
  Result<std::unique_ptr<NetnsRuntime>> rt = NetnsRuntime::Open(options_);
  ASSERT_TRUE(rt.ok());
  rt_ = std::move(*rt);
  Result<std::vector<VnodeRef>> adopted = rt_->Adopt(exp_);
  ASSERT_TRUE(adopted.ok()) << adopted.status().ToString();
  ASSERT_EQ(adopted->size(), 1u);
  EXPECT_EQ(adopted->front(), Ref("a"));
  Result<VnodeInfo> info = rt_->Info(Ref("a"));
  ASSERT_TRUE(info.ok());
  EXPECT_TRUE(info->adopted);
  EXPECT_TRUE(info->connected);
  EXPECT_EQ(info->init_pid, init);
  EXPECT_EQ(info->state, VnodeState::kRunning);
  // Known again: the running task and the one that ended meanwhile.
  Result<TaskStatus> st = rt_->GetTask(old_task);
  ASSERT_TRUE(st.ok()) << st.status().ToString();
  EXPECT_EQ(st->state, TaskState::kRunning);
  Result<TaskResult> fin = rt_->Wait(finished_later, 5s);
  ASSERT_TRUE(fin.ok()) << fin.status().ToString();
  EXPECT_EQ(fin->exit_code, 9);
  // Exec works, with fresh ids and the vnode's environment.
  std::string out;
  TaskResult r = Run("a", "echo $GRIDEMU_INDEX $GRIDEMU_NODE", &out);
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_EQ(out, "2 a\n");
  ASSERT_TRUE(rt_->Signal(old_task, TaskSignal::kKill).ok());
  Result<TaskResult> killed = rt_->Wait(old_task, 10s);
  ASSERT_TRUE(killed.ok());
  EXPECT_EQ(killed->reason, ExitReason::kKilled);
  EXPECT_TRUE(rt_->Adopt(exp_)->empty());  // already ours
}

TEST_P(NetnsRuntimeTest, AdoptReconnectsThroughLongSocketPaths) {
  // <state root>/<exp>/<63-char vnode>/init.sock is longer than sun_path.
  options_.state_root =
      "/run/gridemu-rt-test-" + std::to_string(::getpid()) + "-" + std::string(60, 's');
  Result<std::unique_ptr<NetnsRuntime>> rt = NetnsRuntime::Open(options_);
  ASSERT_TRUE(rt.ok());
  rt_ = std::move(*rt);
  const std::string name(63, 'n');
  ASSERT_TRUE(rt_->Create(Spec(name)).ok());
  ASSERT_GT(ComputeVnodePaths(options_, exp_, name).listen_path.size(), 108u);
  TaskId id = Start(name, "exec sleep 1000");
  WaitForProcs(id, 1);
  rt_.reset();
  std::this_thread::sleep_for(100ms);
  rt = NetnsRuntime::Open(options_);
  ASSERT_TRUE(rt.ok());
  rt_ = std::move(*rt);
  Result<std::vector<VnodeRef>> adopted = rt_->Adopt(exp_);
  ASSERT_TRUE(adopted.ok());
  ASSERT_EQ(adopted->size(), 1u);
  EXPECT_TRUE(rt_->Info(Ref(name))->connected);
  ASSERT_TRUE(rt_->Signal(id, TaskSignal::kTerm).ok());
  Result<TaskResult> r = rt_->Wait(id, 10s);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->signal, SIGTERM);
}

// Names of this process's open descriptors.
Result<std::vector<std::string>> internal_ListFds() {
  std::vector<std::string> out;
  DIR* d = ::opendir("/proc/self/fd");
  if (d == nullptr) return InternalError("opendir /proc/self/fd");
  while (struct dirent* e = ::readdir(d)) {
    if (e->d_name[0] != '.') out.emplace_back(e->d_name);
  }
  ::closedir(d);
  return out;
}

// Unix sockets in this process's descriptor table.
int CountOwnSockets() {
  int n = 0;
  Result<std::vector<std::string>> fds = internal_ListFds();
  for (const std::string& fd : *fds) {
    char target[256];
    ssize_t len = ::readlink(("/proc/self/fd/" + fd).c_str(), target, sizeof(target) - 1);
    if (len > 0 && std::string(target, static_cast<size_t>(len)).rfind("socket:", 0) == 0) ++n;
  }
  return n;
}

// Creation shortcuts keep every documented behaviour: the state root lives in
// memory while vnodes exist (a tmpfs the runtime mounts when the root is on
// disk) and is gone after; each vnode's netns file (hard links of one inode)
// names its own init's namespace; the agent keeps exactly one control socket
// per vnode (no child socket end left in a reserved descriptor).
TEST_P(NetnsRuntimeTest, StateRootInMemoryNetnsFilesAndNoLeakedSockets) {
  options_.state_root = dir_ + "/state";
  Result<std::unique_ptr<NetnsRuntime>> rt = NetnsRuntime::Open(options_);
  ASSERT_TRUE(rt.ok()) << rt.status().ToString();
  rt_ = std::move(*rt);
  struct statfs parent = {};
  ASSERT_EQ(::statfs(dir_.c_str(), &parent), 0);
  const bool on_disk = parent.f_type != TMPFS_MAGIC && parent.f_type != RAMFS_MAGIC;
  const int sockets_before = CountOwnSockets();
  const std::vector<std::string> names = {"a", "b", "c"};
  std::vector<VnodeSpec> specs;
  for (size_t i = 0; i < names.size(); ++i) specs.push_back(Spec(names[i], static_cast<uint32_t>(i)));
  for (const Status& s : rt_->CreateBatch(specs)) ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(CountOwnSockets() - sockets_before, 3);

  struct statfs st = {};
  ASSERT_EQ(::statfs(options_.state_root.c_str(), &st), 0);
  EXPECT_EQ(st.f_type, on_disk ? static_cast<decltype(st.f_type)>(TMPFS_MAGIC) : parent.f_type);
  std::string out;
  TaskResult r = Run("a", "echo hi > \"$HOME/f\" && cat \"$HOME/f\" && hostname", &out);
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_EQ(out, "hi\na\n");
  EXPECT_EQ(ReadFile(ComputeVnodePaths(options_, exp_, "a").home_dir + "/f"), "hi\n");

  std::set<ino_t> namespaces;
  std::vector<std::string> paths;
  for (const std::string& n : names) {
    Result<VnodeInfo> info = rt_->Info(Ref(n));
    ASSERT_TRUE(info.ok()) << info.status().ToString();
    struct stat at_path = {}, of_init = {};
    ASSERT_EQ(::stat(info->netns_path.c_str(), &at_path), 0) << info->netns_path;
    const std::string proc = "/proc/" + std::to_string(info->init_pid) + "/ns/net";
    ASSERT_EQ(::stat(proc.c_str(), &of_init), 0);
    EXPECT_EQ(at_path.st_ino, of_init.st_ino) << n;
    EXPECT_EQ(at_path.st_dev, of_init.st_dev) << n;
    namespaces.insert(at_path.st_ino);
    paths.push_back(info->netns_path);
  }
  EXPECT_EQ(namespaces.size(), names.size());

  std::vector<VnodeRef> refs;
  for (const std::string& n : names) refs.push_back(Ref(n));
  for (const Status& s : rt_->DestroyBatch(refs)) EXPECT_TRUE(s.ok()) << s.ToString();
  for (const std::string& p : paths) EXPECT_FALSE(Exists(p)) << p;
  EXPECT_FALSE(Exists(options_.state_root));
  EXPECT_EQ(ReadFile("/proc/self/mountinfo").find(options_.state_root), std::string::npos);
  EXPECT_EQ(CountOwnSockets(), sockets_before);
}

INSTANTIATE_TEST_SUITE_P(Cgroup, NetnsRuntimeTest,
                         ::testing::Values(CgroupMode::kDetected, CgroupMode::kV2),
                         [](const ::testing::TestParamInfo<CgroupMode>& i) {
                           return i.param == CgroupMode::kV2 ? "v2" : "detected";
                         });

}  // namespace
}  // namespace gridemu::agent

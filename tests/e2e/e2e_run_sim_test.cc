// `gridemu run --simulate` as a process (the simulated agent runs tasks as
// host processes): summary and exit codes, the results directory, Ctrl-C,
// the run lock and `gridemu cancel` reaching the run through it.
#include <dirent.h>
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "e2e_util.h"

namespace gridemu::e2e {
namespace {

using json = nlohmann::json;
using std::chrono::milliseconds;
using std::chrono::seconds;

std::string Tiny(const std::string& name, const std::string& workload,
                 const std::string& duration = "30s") {
  return "name: " + name + "\nduration: " + duration +
         "\nseed: 3\n"
         "topology:\n"
         "  nodes: {h1: {}, h2: {}, r: {kind: router}}\n"
         "  links:\n"
         "    - {endpoints: [h1, r], rate: 10mbit, delay: 5ms}\n"
         "    - {endpoints: [h2, r], rate: 10mbit, delay: 5ms}\n"
         "workload:\n" +
         workload;
}

// Processes whose command line contains `marker`.
int CountProcesses(const std::string& marker) {
  int n = 0;
  DIR* d = ::opendir("/proc");
  if (d == nullptr) return -1;
  while (dirent* e = ::readdir(d)) {
    if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
    std::string cmd = ReadFile(std::string("/proc/") + e->d_name + "/cmdline");
    for (char& c : cmd) {
      if (c == '\0') c = ' ';
    }
    if (cmd.find(marker) != std::string::npos && cmd.find("/bin/sh") == std::string::npos) ++n;
  }
  ::closedir(d);
  return n;
}

class RunSimTest : public ::testing::Test {
 protected:
  std::vector<std::string> Env() { return {"GRIDEMU_RUN_LOCK=" + tmp_.path() + "/run.lock"}; }
  std::vector<std::string> Args(const std::string& file) {
    return {GRIDEMU_CLI_BIN,          "run",        file,   "--simulate", "--results",
            tmp_.path() + "/results", "--progress", "plain"};
  }
  TempDir tmp_{"gridemu-e2e-run"};
};

TEST_F(RunSimTest, SuccessfulRunPrintsSummaryAndWritesResults) {
  WriteFile(tmp_.path() + "/ok.yaml",
            Tiny("ok",
                 "  - name: hello\n    on: [h1, h2]\n    stagger: 100ms\n"
                 "    run: echo hello $GRIDEMU_NODE; echo out > $GRIDEMU_OUT/o.txt\n"
                 "    wait: true\n"
                 "  - name: bg\n    on: r\n    run: sleep 600\n"));
  Child run(Args("ok.yaml"), tmp_.path(), "ok", Env());
  auto rc = run.Wait(seconds(60));
  ASSERT_TRUE(rc.has_value()) << run.out() << run.err();
  EXPECT_EQ(*rc, 0) << run.out() << run.err();
  const std::string out = run.out();
  EXPECT_NE(out.find("gridemu run: experiment ok-1 (3 vnodes, 2 links, 2 tasks, 0 events"),
            std::string::npos)
      << out;
  EXPECT_NE(out.find("[running]"), std::string::npos) << out;
  EXPECT_NE(out.find("experiment ok-1: finished (every waited task ended)"), std::string::npos);
  EXPECT_NE(out.find("hello*"), std::string::npos);
  EXPECT_NE(out.find("exit 0 x2"), std::string::npos);
  EXPECT_NE(out.find("stopped at end x1"), std::string::npos) << out;
  EXPECT_NE(out.find("tasks: 3 instances, 2 ok, 0 failed, 1 stopped at the end"),
            std::string::npos);
  const std::string dir = ResultsDirOf(out);
  ASSERT_FALSE(dir.empty()) << out;
  EXPECT_EQ(dir.rfind(tmp_.path() + "/results/ok-", 0), 0u) << dir;
  json m = json::parse(ReadFile(dir + "/manifest.json"), nullptr, false);
  ASSERT_FALSE(m.is_discarded());
  EXPECT_EQ(m["state"], "finished");
  EXPECT_EQ(m["experiment"]["file"], "ok.yaml");
  EXPECT_EQ(m["experiment"]["seed"], 3);
  EXPECT_EQ(ReadFile(dir + "/tasks/hello/1.stdout"), "hello h2\n");
  EXPECT_EQ(ReadFile(dir + "/files/h1/o.txt"), "out\n");
  EXPECT_EQ(ReadFile(dir + "/experiment.yaml"), ReadFile(tmp_.path() + "/ok.yaml"));
  for (const char* f :
       {"tasks.csv", "events.csv", "metrics.csv", "summary.txt", "controller.log"}) {
    EXPECT_TRUE(fs::exists(dir + "/" + f)) << f;
  }
  EXPECT_FALSE(fs::exists(dir + "/controller.db")) << "only with --keep";
  EXPECT_EQ(CountProcesses("sleep 600"), 0);
}

TEST_F(RunSimTest, FailedWaitedTaskExitsOneAndKeepKeepsWorkFiles) {
  WriteFile(tmp_.path() + "/bad.yaml",
            Tiny("bad", "  - {name: t, on: h1, run: 'echo oops >&2; exit 4', wait: true}\n"));
  std::vector<std::string> args = Args("bad.yaml");
  args.push_back("--keep");
  Child run(args, tmp_.path(), "bad", Env());
  auto rc = run.Wait(seconds(60));
  ASSERT_TRUE(rc.has_value());
  EXPECT_EQ(*rc, 1) << run.out() << run.err();
  EXPECT_NE(run.out().find("t/0 on h1: exited exit 4"), std::string::npos) << run.out();
  const std::string dir = ResultsDirOf(run.out());
  EXPECT_EQ(ReadFile(dir + "/tasks/t/0.stderr"), "oops\n");
  EXPECT_TRUE(fs::exists(dir + "/controller.db"));
  EXPECT_TRUE(fs::exists(dir + "/.work/out/h1"));
}

TEST_F(RunSimTest, InvalidFileIsReportedWithPositionsAndExitsTwo) {
  WriteFile(tmp_.path() + "/invalid.yaml", "name: x\nduration: 10s\ncolour: blue\n");
  Child run(Args("invalid.yaml"), tmp_.path(), "invalid", Env());
  auto rc = run.Wait(seconds(30));
  ASSERT_TRUE(rc.has_value());
  EXPECT_EQ(*rc, 2);
  EXPECT_EQ(run.err().rfind("invalid.yaml:1:1: missing required key 'topology'", 0), 0u)
      << run.err();
  EXPECT_NE(run.err().find("\ninvalid.yaml:3:1: unknown key 'colour'"), std::string::npos)
      << run.err();
  EXPECT_FALSE(fs::exists(tmp_.path() + "/results"));
}

TEST_F(RunSimTest, CtrlCCancelsTearsDownAndExits130) {
  WriteFile(tmp_.path() + "/long.yaml", Tiny("long",
                                             "  - name: sleeper\n    on: [h1, h2]\n"
                                             "    run: sleep 3141 & sleep 3141\n    wait: true\n"));
  Child run(Args("long.yaml"), tmp_.path(), "long", Env());
  ASSERT_TRUE(Eventually([&] { return CountProcesses("sleep 3141") == 4; }, seconds(30)))
      << run.out() << run.err();
  run.Signal(SIGINT);
  auto rc = run.Wait(seconds(60));
  ASSERT_TRUE(rc.has_value()) << run.out();
  EXPECT_EQ(*rc, 130) << run.out() << run.err();
  const std::string out = run.out();
  EXPECT_NE(out.find("interrupted (SIGINT): cancelling long-1"), std::string::npos) << out;
  EXPECT_NE(out.find("experiment long-1: cancelled (interrupted by SIGINT (Ctrl-C))"),
            std::string::npos)
      << out;
  json m = json::parse(ReadFile(ResultsDirOf(out) + "/manifest.json"), nullptr, false);
  ASSERT_FALSE(m.is_discarded()) << out;
  EXPECT_EQ(m["state"], "cancelled");
  EXPECT_EQ(CountProcesses("sleep 3141"), 0) << "no task process is left";
}

TEST_F(RunSimTest, SecondRunIsRefusedAndCancelReachesTheFirstThroughTheLock) {
  WriteFile(tmp_.path() + "/first.yaml",
            Tiny("first", "  - name: sleeper\n    on: h1\n    run: sleep 2718\n    wait: true\n"));
  Child first(Args("first.yaml"), tmp_.path(), "first", Env());
  ASSERT_TRUE(Eventually([&] { return CountProcesses("sleep 2718") == 1; }, seconds(30)))
      << first.out() << first.err();

  Child second(Args("first.yaml"), tmp_.path(), "second", Env());
  auto rc2 = second.Wait(seconds(30));
  ASSERT_TRUE(rc2.has_value());
  EXPECT_EQ(*rc2, 2);
  const std::string want = "gridemu run: another `gridemu run` (pid " +
                           std::to_string(first.pid()) +
                           ", experiment first-1 from first.yaml, started ";
  EXPECT_EQ(second.err().rfind(want, 0), 0u) << second.err();
  EXPECT_NE(second.err().find("or stop it with `gridemu cancel first-1`"), std::string::npos);

  // `gridemu status` and `gridemu cancel` find the running one through the lock.
  Child status({GRIDEMU_CLI_BIN, "status", "first-1"}, tmp_.path(), "status", Env());
  ASSERT_EQ(status.Wait(seconds(30)), 0) << status.err();
  EXPECT_NE(status.out().find("state:    running"), std::string::npos) << status.out();
  Child cancel({GRIDEMU_CLI_BIN, "cancel", "first-1"}, tmp_.path(), "cancel", Env());
  ASSERT_EQ(cancel.Wait(seconds(30)), 0) << cancel.err();
  EXPECT_EQ(cancel.out(), "first-1: cancelling\n");
  auto rc1 = first.Wait(seconds(60));
  ASSERT_TRUE(rc1.has_value());
  EXPECT_EQ(*rc1, 1) << first.out();
  json m = json::parse(ReadFile(ResultsDirOf(first.out()) + "/manifest.json"), nullptr, false);
  EXPECT_EQ(m["state"], "cancelled");
  EXPECT_EQ(m["reason"], "cancel requested");
  EXPECT_EQ(CountProcesses("sleep 2718"), 0);

  // The lock is free again.
  WriteFile(tmp_.path() + "/quick.yaml",
            Tiny("quick", "  - {name: t, on: h1, run: 'true', wait: true}\n"));
  Child third(Args("quick.yaml"), tmp_.path(), "third", Env());
  EXPECT_EQ(third.Wait(seconds(60)), 0) << third.err();
}

}  // namespace
}  // namespace gridemu::e2e

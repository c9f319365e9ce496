// `gridemu run` with the real agent (root): a tiny experiment — two hosts and
// a router, a ping task — checked through the summary, the exit code and the
// results directory; and Ctrl-C mid-run: exit 130, the manifest says
// cancelled, and no namespace, cgroup, interface or process is left.
// Every object carries this test's own agent prefix.
#include <dirent.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "e2e_util.h"
#include "root_run_fixture.h"
#include "gridemu/node-agent/agent_clean.h"

namespace gridemu::e2e {
namespace {

using json = nlohmann::json;
using std::chrono::seconds;

// Processes whose command line contains `marker` (not shells running it).
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

// Everything of `prefix` still on this machine: network namespaces, interfaces
// tagged with it, cgroup directories named with it, and what `gridemu clean`
// would remove.
std::vector<std::string> Residue(const std::string& prefix) {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator("/run/netns", ec)) {
    const std::string n = e.path().filename().string();
    if (n.rfind(prefix + "-", 0) == 0) out.push_back("netns " + n);
  }
  for (const auto& e : fs::directory_iterator("/sys/class/net", ec)) {
    const std::string alias = ReadFile(e.path().string() + "/ifalias");
    if (alias.rfind(prefix + ":", 0) == 0)
      out.push_back("interface " + e.path().filename().string());
  }
  for (auto it = fs::recursive_directory_iterator(
           "/sys/fs/cgroup", fs::directory_options::skip_permission_denied, ec);
       it != fs::recursive_directory_iterator(); it.increment(ec)) {
    if (ec) break;
    if (it.depth() > 6) {
      it.disable_recursion_pending();
      continue;
    }
    if (!it->is_directory(ec)) continue;
    const std::string n = it->path().filename().string();
    if (n.find(prefix) != std::string::npos) out.push_back("cgroup " + it->path().string());
  }
  agent::CleanOptions co;
  co.prefix = prefix;
  co.dry_run = true;
  auto report = agent::CleanLeftovers(co);
  if (report.ok()) {
    for (const auto& o : report->objects) out.push_back("clean: " + o);
  }
  return out;
}

class RunRootTest : public RootRunTest {
 protected:
  RunRootTest() : RootRunTest("ge2e", "gridemu-e2e-root") {}
};

constexpr const char* kTopology =
    "topology:\n"
    "  nodes: {h1: {}, h2: {}, r: {kind: router}}\n"
    "  links:\n"
    "    - {endpoints: [h1, r], rate: 10mbit, delay: 5ms}\n"
    "    - {endpoints: [h2, r], rate: 10mbit, delay: 5ms}\n";

TEST_F(RunRootTest, PingBetweenTwoHostsThroughARouter) {
  WriteFile(
      tmp_.path() + "/ping.yaml",
      std::string("name: e2e-ping\nduration: 60s\nseed: 1\n") + kTopology +
          "workload:\n"
          "  - name: ping\n    on: h1\n    at: 200ms\n"
          "    run: ping -n -c 3 -i 0.2 h2 > $GRIDEMU_OUT/ping.txt; cat $GRIDEMU_OUT/ping.txt\n"
          "    wait: true\n"
          "    timeout: 30s\n"
          "collect:\n  files: [\"$GRIDEMU_OUT/ping.txt\"]\n");
  Child run(Args("ping.yaml"), tmp_.path(), "ping", Env());
  auto rc = run.Wait(seconds(120));
  ASSERT_TRUE(rc.has_value()) << run.out() << run.err();
  EXPECT_EQ(*rc, 0) << run.out() << run.err();
  const std::string out = run.out();
  EXPECT_NE(out.find("experiment e2e-ping-1: finished (every waited task ended)"),
            std::string::npos)
      << out;
  EXPECT_NE(out.find("ping*"), std::string::npos);
  EXPECT_NE(out.find("tasks: 1 instances, 1 ok, 0 failed"), std::string::npos) << out;
  const std::string dir = ResultsDirOf(out);
  ASSERT_FALSE(dir.empty());
  json m = json::parse(ReadFile(dir + "/manifest.json"), nullptr, false);
  ASSERT_FALSE(m.is_discarded());
  EXPECT_EQ(m["state"], "finished");
  ASSERT_EQ(m["pnodes"].size(), 1u);
  EXPECT_FALSE(m["pnodes"][0]["kernel"].get<std::string>().empty());
  EXPECT_FALSE(m["pnodes"][0]["shaping_backend"].get<std::string>().empty());
  EXPECT_EQ(m["placement"]["vnodes_per_pnode"].size(), 1u);
  const std::string ping = ReadFile(dir + "/tasks/ping/0.stdout");
  EXPECT_NE(ping.find("3 packets transmitted, 3 received, 0% packet loss"), std::string::npos)
      << ping;
  EXPECT_EQ(ReadFile(dir + "/files/h1/ping.txt"), ping);
  EXPECT_NE(ReadFile(dir + "/tasks.csv").find("ping/0,ping,0,h1,exited,"), std::string::npos);
  EXPECT_EQ(Residue(prefix_), std::vector<std::string>{});
}

TEST_F(RunRootTest, CtrlCTearsDownEverythingAndTheManifestSaysCancelled) {
  WriteFile(tmp_.path() + "/long.yaml",
            std::string("name: e2e-long\nduration: 5m\nseed: 1\n") + kTopology +
                "workload:\n"
                "  - name: sleeper\n    on: [h1, h2]\n    run: sleep 4242 & sleep 4242\n"
                "    wait: true\n");
  Child run(Args("long.yaml"), tmp_.path(), "long", Env());
  ASSERT_TRUE(Eventually([&] { return CountProcesses("sleep 4242") == 4; }, seconds(60)))
      << run.out() << run.err();
  EXPECT_FALSE(Residue(prefix_).empty()) << "the vnodes exist while it runs";
  run.Signal(SIGINT);
  auto rc = run.Wait(seconds(120));
  ASSERT_TRUE(rc.has_value()) << run.out();
  EXPECT_EQ(*rc, 130) << run.out() << run.err();
  const std::string out = run.out();
  EXPECT_NE(out.find("experiment e2e-long-1: cancelled (interrupted by SIGINT (Ctrl-C))"),
            std::string::npos)
      << out;
  json m = json::parse(ReadFile(ResultsDirOf(out) + "/manifest.json"), nullptr, false);
  ASSERT_FALSE(m.is_discarded()) << out;
  EXPECT_EQ(m["state"], "cancelled");
  EXPECT_EQ(CountProcesses("sleep 4242"), 0);
  EXPECT_EQ(Residue(prefix_), std::vector<std::string>{});
}

}  // namespace
}  // namespace gridemu::e2e

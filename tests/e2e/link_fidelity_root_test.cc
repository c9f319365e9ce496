// Links as declared (issue 11), through the real `gridemu run` (root): on each
// link kind on one pnode — host–host, host–router, host–switch,
// switch–switch, router–router — plain `ping` (no -U) and tcpdump on both
// ends measure what `gridemu topo paths` computes for delays of 10, 50 and
// 200 ms set by link events, each direction's loss is counted apart, and
// iperf3 gets 1, 10 and 100 mbit less headers through a switch and through a
// router (link_probe.h has the timeline and the checks). And the seed: two
// runs with one seed lose the same pings, two seeds do not.
// Every object carries this test's own agent prefix; TearDown removes what a
// failed run left.
#include <gtest/gtest.h>
#include <unistd.h>

#include <set>

#include "e2e_util.h"
#include "link_probe.h"
#include "root_run_fixture.h"

namespace gridemu::e2e {
namespace {

using namespace link_probe;
using std::chrono::seconds;

class LinkFidelityRoot : public RootRunTest {
 protected:
  LinkFidelityRoot() : RootRunTest("glf", "gridemu-links") {}

  // Runs `gridemu run` on `yaml`; returns the results directory ("" on failure).
  std::string Run(const std::string& name, const std::string& yaml, int timeout_s) {
    const std::string file = tmp_.path() + "/" + name + ".yaml";
    WriteFile(file, yaml);
    Child run(Args(file), tmp_.path(), name, Env());
    auto rc = run.Wait(seconds(timeout_s));
    EXPECT_TRUE(rc.has_value()) << "gridemu run did not end in " << timeout_s << " s\n"
                                << run.out() << run.err();
    if (!rc) return "";
    EXPECT_NE(run.out().find(": finished"), std::string::npos) << run.out() << run.err();
    return ResultsDirOf(run.out());
  }

  // `gridemu topo paths --json` of `yaml`.
  std::map<std::pair<std::string, std::string>, PathFacts> Paths(const std::string& yaml) {
    const std::string file = tmp_.path() + "/paths-" + std::to_string(++paths_) + ".yaml";
    WriteFile(file, yaml);
    Child c({GRIDEMU_CLI_BIN, "topo", "paths", "--json", file}, tmp_.path(),
            "paths-" + std::to_string(paths_));
    auto rc = c.Wait(seconds(60));
    EXPECT_EQ(rc.value_or(-1), 0) << c.err();
    auto out = ParsePaths(c.out());
    EXPECT_FALSE(out.empty()) << c.out() << c.err();
    return out;
  }

  int paths_ = 0;
};

// One path per link kind; the links under test get `profile`, the others
// (the hosts' links of the switch--switch and router--router paths) none.
std::string KindsTopology(const std::string& profile) {
  std::string t =
      "topology:\n"
      "  nodes:\n"
      "    hh1: {}\n    hh2: {}\n"
      "    hr1: {}\n    hr2: {}\n    r1: {kind: router}\n"
      "    hs1: {}\n    hs2: {}\n    s1: {kind: switch}\n"
      "    ss1: {}\n    ss2: {}\n    s2: {kind: switch}\n    s3: {kind: switch}\n"
      "    rr1: {}\n    rr2: {}\n    r2: {kind: router}\n    r3: {kind: router}\n"
      "  links:\n";
  for (const char* l : {"hh1, hh2", "hr1, r1", "r1, hr2", "hs1, s1", "s1, hs2", "s2, s3", "r2, r3"}) {
    t += "    - {endpoints: [" + std::string(l) + "], " + profile + "}\n";
  }
  for (const char* l : {"ss1, s2", "s3, ss2", "rr1, r2", "r3, rr2"}) {
    t += "    - {endpoints: [" + std::string(l) + "]}\n";
  }
  return t;
}

const std::vector<Probe>& KindProbes() {
  static const std::vector<Probe> p = {
      {"host-host", "hh1", "hh2", {"hh1--hh2"}},
      {"host-router", "hr1", "hr2", {"hr1--r1", "r1--hr2"}, true},
      {"host-switch", "hs1", "hs2", {"hs1--s1", "s1--hs2"}, true},
      {"switch-switch", "ss1", "ss2", {"s2--s3"}},
      {"router-router", "rr1", "rr2", {"r2--r3"}},
  };
  return p;
}

std::string LossProfile() {
  char b[160];
  std::snprintf(b, sizeof b, "delay: 10ms, forward: {loss: %g%%}, reverse: {loss: %g%%}",
                kLossForward * 100, kLossReverse * 100);
  return b;
}

TEST_F(LinkFidelityRoot, EveryLinkKindDelaysDropsAndRatesAsDeclared) {
  const Timeline tl = ProbeTimeline(KindProbes());
  const std::string yaml = "name: kinds\nduration: " + std::to_string(tl.end_ms / 1000 + 60) +
                           "s\nseed: " + std::to_string(ProbeSeed(14)) + "\n" + KindsTopology("delay: 10ms") + "workload:\n" +
                           tl.workload + "events:\n" + tl.events +
                           "collect:\n  files: [\"$GRIDEMU_OUT/*\"]\n";
  const std::string dir = Run("kinds", yaml, tl.end_ms / 1000 + 180);
  ASSERT_FALSE(dir.empty());
  std::map<int, std::map<std::pair<std::string, std::string>, PathFacts>> paths;
  for (const DelayPhase& d : DelayPhases()) {
    paths[d.delay_ms] = Paths("name: p\nduration: 1m\n" +
                              KindsTopology("delay: " + std::to_string(d.delay_ms) + "ms"));
  }
  paths[-1] = Paths("name: p\nduration: 1m\n" + KindsTopology(LossProfile()));
  CheckTimeline(KindProbes(), dir, &ReadFile, [&](int d) { return paths.at(d); });
}

// The icmp_seq numbers that got no reply among `count` pings.
std::set<int> Lost(const std::string& ping_out, int count) {
  std::map<int, double> got = PingRtts(ping_out);
  std::set<int> lost;
  for (int s = 1; s <= count; ++s) {
    if (got.count(s) == 0) lost.insert(s);
  }
  return lost;
}

TEST_F(LinkFidelityRoot, TheSeedDecidesWhichPacketsAreLost) {
  constexpr int kCount = 400;
  auto run = [&](int seed, int n) {
    const std::string yaml =
        "name: seed" + std::to_string(n) + "\nduration: 2m\nseed: " + std::to_string(seed) +
        "\ntopology:\n  nodes: {a: {}, b: {}}\n  links:\n"
        "    - {endpoints: [a, b], delay: 1ms, loss: 10%}\n"
        "workload:\n  - {name: ping, on: a, at: 500ms, wait: true, timeout: 60s, run: \"ping -n "
        "-c " + std::to_string(kCount) + " -i 0.005 -W 2 b; true\"}\n";
    const std::string dir = Run("seed" + std::to_string(n), yaml, 120);
    return Lost(ReadFile(dir + "/tasks/ping/0.stdout"), kCount);
  };
  const std::set<int> a = run(42, 1), b = run(42, 2), c = run(43, 3);
  // Each loses about 19 % (10 % each way).
  for (const auto* s : {&a, &b, &c}) {
    EXPECT_GT(s->size(), kCount * 0.10);
    EXPECT_LT(s->size(), kCount * 0.30);
  }
  auto overlap = [](const std::set<int>& x, const std::set<int>& y) {
    size_t both = 0;
    for (int s : x) both += y.count(s);
    return double(both) / std::max<size_t>(1, std::max(x.size(), y.size()));
  };
  std::fprintf(stderr, "[links] lost pings: seed 42 %zu and %zu (overlap %.1f %%), seed 43 %zu "
                       "(overlap with 42: %.1f %%)\n",
               a.size(), b.size(), overlap(a, b) * 100, c.size(), overlap(a, c) * 100);
  EXPECT_GE(overlap(a, b), 0.95) << "one seed, two runs: the same pings should be lost";
  EXPECT_LE(overlap(a, c), 0.30) << "two seeds: other pings should be lost";
}

}  // namespace
}  // namespace gridemu::e2e

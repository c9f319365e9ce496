// The multi-pnode acceptance test (root): a 4-pnode cluster on one machine
// (cluster_fixture.h, tests/cluster/cluster) running
//  - PinnedExperimentOnEveryPnode: four small experiments at once, each pinned
//    (`host:`) to a different pnode; each pings across a 20 ms link. Proves
//    every pnode's agent deploys, runs and shapes in its own namespace.
//  - FortyVnodesOverFourPnodes: 4 sites of 1 router + 9 hosts, routers in a
//    ring (the natural cut), unpinned: the controller must place it on all 4
//    pnodes cutting the 4 ring links; plain `ping` across the 20 ms ring link
//    measures RTT 40 ms (+-), iperf3 across a 50 mbit ring link gets its rate.
//  - LostPnodeFailsExperimentAndAgentReconciles: the same topology running
//    `sleep`; one pnode's agent is SIGKILLed: within the heartbeat timeout
//    (3 s) plus a margin (the surviving tasks are killed and report at once;
//    the lost pnode's tasks are marked lost, not waited for), the experiment
//    is `failed` with a reason naming that pnode, the other pnodes tear it
//    down, and the restarted agent removes what it left behind (nothing of the experiment stays in
//    its namespaces).
// Assertions are on `gridemu status` and the results directory, not on logs.
// Skipped without root.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <thread>

#include "cluster_fixture.h"
#include "link_probe.h"

namespace gridemu::cluster_test {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using std::chrono::milliseconds;
using std::chrono::seconds;
using Clock = std::chrono::steady_clock;

constexpr int kPnodes = 4;
// The controller's --heartbeat-timeout (SetUp passes it to the helper).
constexpr milliseconds kHeartbeatTimeout = seconds(3);
// ControllerOptions::stop_grace (gridemu-controller --stop-grace, 3 s): the
// longest the surviving tasks may take to report their end once killed.
constexpr milliseconds kStopGrace = seconds(3);

// The 40-vnode ring: site i = router r<i> + hosts s<i>h0..s<i>h8 on 1 gbit
// access links; the ring r0-r1 (20 ms), r1-r2, r2-r3, r3-r0 (10 ms each), all
// 50 mbit. Shortest paths (by delay) between neighbouring sites take the
// direct ring link. `workload` is appended.
std::string RingExperiment(const std::string& name, const std::string& duration,
                           const std::string& workload) {
  std::ostringstream y;
  y << "name: " << name << "\n"
    << "duration: " << duration << "\n"
    << "seed: 7\n"
    << "on_pnode_failure: fail\n"
    << "topology:\n"
    << "  nodes:\n";
  for (int i = 0; i < 4; ++i) y << "    r" << i << ": {kind: router}\n";
  y << "  groups:\n";
  for (int i = 0; i < 4; ++i) {
    y << "    s" << i << ": {count: 9, name: \"s" << i << "h{i}\", link_to: r" << i
      << ", link: {rate: 1gbit}}\n";
  }
  y << "  links:\n"
    << "    - {endpoints: [r0, r1], rate: 50mbit, delay: 20ms}\n"
    << "    - {endpoints: [r1, r2], rate: 50mbit, delay: 10ms}\n"
    << "    - {endpoints: [r2, r3], rate: 50mbit, delay: 10ms}\n"
    << "    - {endpoints: [r3, r0], rate: 50mbit, delay: 10ms}\n"
    << "workload:\n"
    << workload;
  return y.str();
}

// Per-packet RTTs ("... time=40.2 ms") -> {min, median, max} in ms; empty if
// none. The median, not the mean: on a loaded 2-core CI machine a packet or
// two can wait tens of ms for the delay line's thread, which says nothing of
// the configured delay.
std::vector<double> PingRtt(const std::string& out) {
  std::vector<double> t;
  static const std::regex re(R"(time=([0-9.]+) ms)");
  for (auto it = std::sregex_iterator(out.begin(), out.end(), re); it != std::sregex_iterator();
       ++it) {
    t.push_back(std::stod((*it)[1]));
  }
  if (t.empty()) return {};
  std::sort(t.begin(), t.end());
  return {t.front(), t[t.size() / 2], t.back()};
}

// "20 packets transmitted, 20 received" -> received; -1 if absent.
int PingReceived(const std::string& out) {
  std::smatch m;
  static const std::regex re(R"(([0-9]+) packets transmitted, ([0-9]+) received)");
  if (!std::regex_search(out, m, re)) return -1;
  return std::stoi(m[2]);
}

class ClusterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root (namespaces, bridge, agents)";
    char tmpl[] = "/tmp/gcl-test-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    tmp_ = tmpl;
    ::setenv("GRIDEMU_CLUSTER_HB_TIMEOUT", "3s", 1);  // = kHeartbeatTimeout
    std::string error;
    cluster_ = Cluster::Up(kPnodes, tmp_ + "/cluster", &error);
    ASSERT_NE(cluster_, nullptr) << error;
    // Should this process be killed, `tests/cluster/cluster down DIR` cleans up.
    std::fprintf(stderr, "cluster of %d pnodes in %s (tag %s, API %s)\n", kPnodes,
                 cluster_->dir().c_str(), cluster_->tag().c_str(), cluster_->url().c_str());
  }
  void TearDown() override {
    if (cluster_ != nullptr) {
      const std::string tag = cluster_->tag();
      cluster_->Down();
      // Nothing of the cluster is left: no pnode namespace ("<tag>-p<i>"),
      // no vnode namespace ("<tag>a<i>-..."), no bridge.
      const std::regex ours("^" + tag + "(-p[0-9]+|a[0-9]+-.*)$");
      std::error_code ec;
      for (const auto& e : fs::directory_iterator("/run/netns", ec)) {
        EXPECT_FALSE(std::regex_match(e.path().filename().string(), ours))
            << "left behind: netns " << e.path();
      }
      EXPECT_FALSE(fs::exists("/sys/class/net/" + tag + "br")) << "left behind: bridge";
      if (HasFailure()) {
        // Keep the logs of a failed run for the developer.
        std::fprintf(stderr, "cluster directory kept: %s/cluster\n", tmp_.c_str());
        return;
      }
    }
    if (!tmp_.empty()) {
      std::error_code ec;
      fs::remove_all(tmp_, ec);
    }
  }

  std::string Write(const std::string& name, const std::string& text) {
    const std::string path = tmp_ + "/" + name;
    std::ofstream(path) << text;
    return path;
  }

  std::string SubmitOrFail(const std::string& name, const std::string& yaml) {
    std::string error;
    std::string id = cluster_->Submit(Write(name + ".yaml", yaml), &error);
    EXPECT_FALSE(id.empty()) << error;
    return id;
  }

  // The results directory of a final experiment, once its manifest is written.
  std::string ResultsDir(const std::string& id) {
    const auto end = Clock::now() + seconds(30);
    while (Clock::now() < end) {
      json j = cluster_->StatusJson(id);
      if (j.is_object() && j["results_dir"].is_string()) {
        const std::string dir = j["results_dir"].get<std::string>();
        if (fs::exists(dir + "/manifest.json")) return dir;
      }
      std::this_thread::sleep_for(milliseconds(200));
    }
    return "";
  }

  std::string History(const std::string& id) { return cluster_->StatusText(id); }

  std::string tmp_;
  std::unique_ptr<Cluster> cluster_;
};

TEST_F(ClusterTest, PinnedExperimentOnEveryPnode) {
  std::vector<std::string> ids;
  for (int p = 0; p < kPnodes; ++p) {
    const std::string host = Cluster::host_id(p);
    std::ostringstream y;
    y << "name: pin-" << host << "\n"
      << "duration: 60s\n"
      << "topology:\n"
      << "  nodes:\n"
      << "    a: {host: " << host << "}\n"
      << "    r: {kind: router, host: " << host << "}\n"
      << "    b: {host: " << host << "}\n"
      << "  links:\n"
      << "    - {endpoints: [a, r], rate: 1gbit}\n"
      << "    - {endpoints: [r, b], rate: 100mbit, delay: 20ms}\n"
      << "workload:\n"
      << "  - name: ping\n"
      << "    on: a\n"
      << "    at: 1s\n"
      << "    run: ping -n -c 20 -i 0.1 b\n"
      << "    wait: true\n"
      << "    timeout: 30s\n";
    ids.push_back(SubmitOrFail("pin-" + host, y.str()));
  }
  for (int p = 0; p < kPnodes; ++p) {
    const std::string& id = ids[p];
    ASSERT_EQ(cluster_->WaitState(id, {"finished"}, seconds(90)), "finished") << History(id);
    json st = cluster_->StatusJson(id);
    ASSERT_TRUE(st["placement"].is_object()) << st.dump(2);
    const json per = st["placement"]["vnodes_per_pnode"];
    ASSERT_EQ(per.size(), 1u) << st.dump(2);
    EXPECT_EQ(per.value(Cluster::host_id(p), 0), 3) << st.dump(2);

    const std::string dir = ResultsDir(id);
    ASSERT_FALSE(dir.empty()) << History(id);
    json m = json::parse(ReadFileOrEmpty(dir + "/manifest.json"), nullptr, false);
    ASSERT_TRUE(m.is_object()) << dir;
    ASSERT_EQ(m["pnodes"].size(), 1u) << m.dump(2);
    EXPECT_EQ(m["pnodes"][0].value("host_id", ""), Cluster::host_id(p));
    const std::string ping = ReadFileOrEmpty(dir + "/tasks/ping/0.stdout");
    EXPECT_EQ(PingReceived(ping), 20) << ping;
    const auto rtt = PingRtt(ping);
    ASSERT_EQ(rtt.size(), 3u) << ping;
    std::fprintf(stderr, "%s: rtt min/median/max %.2f/%.2f/%.2f ms\n", Cluster::host_id(p).c_str(),
                 rtt[0], rtt[1], rtt[2]);
    // 20 ms each way on r--b: RTT 40 ms, plus a little for the delay line.
    EXPECT_GE(rtt[0], 39.5) << ping;
    EXPECT_LE(rtt[1], 43.0) << ping;
  }
}

TEST_F(ClusterTest, FortyVnodesOverFourPnodes) {
  const std::string workload =
      "  - name: ping\n"
      "    on: s0h0\n"
      "    at: 1s\n"
      "    run: ping -n -c 20 -i 0.1 s1h0\n"
      "    wait: true\n"
      "    timeout: 30s\n"
      "  - name: iperf-server\n"
      "    on: s3h1\n"
      "    run: iperf3 -s -1\n"
      "    timeout: 40s\n"
      "  - name: iperf\n"
      "    on: s2h1\n"
      "    at: 2s\n"
      "    run: iperf3 -c s3h1 -t 5 -J\n"
      "    wait: true\n"
      "    timeout: 30s\n";
  const std::string id = SubmitOrFail("ring", RingExperiment("ring", "90s", workload));
  ASSERT_FALSE(id.empty());
  const std::string state = cluster_->WaitState(id, {"finished"}, seconds(120));
  const std::string text = cluster_->StatusText(id);
  ASSERT_EQ(state, "finished") << text;

  // Placement: all 4 pnodes, 10 vnodes each, the 4 ring links cut.
  json st = cluster_->StatusJson(id);
  ASSERT_TRUE(st["placement"].is_object()) << st.dump(2);
  const json& pl = st["placement"];
  EXPECT_EQ(pl.value("pnodes", 0), kPnodes) << pl.dump(2);
  for (int p = 0; p < kPnodes; ++p) {
    EXPECT_EQ(pl["vnodes_per_pnode"].value(Cluster::host_id(p), 0), 10) << pl.dump(2);
  }
  EXPECT_EQ(pl.value("cut_links", 0), 4) << pl.dump(2);
  // cut_rate_bps is forward + reverse rate: 4 links x 2 directions x 50 mbit.
  EXPECT_EQ(pl.value("cut_rate_bps", uint64_t{0}), uint64_t{4} * 2 * 50'000'000) << pl.dump(2);
  // The text report names every pnode used and the cut:
  //   placed:   metis on p0 (10) p1 (10) p2 (10) p3 (10)
  //             4 cross-pnode links (400mbit), imbalance 1.000 (max load / target load)
  std::string placed_line;
  std::istringstream lines(text);
  for (std::string l; std::getline(lines, l);) {
    if (l.rfind("placed:", 0) == 0) placed_line = l;
  }
  for (int p = 0; p < kPnodes; ++p) {
    EXPECT_NE(placed_line.find(Cluster::host_id(p) + " (10)"), std::string::npos) << text;
  }
  EXPECT_TRUE(std::regex_search(text, std::regex(R"(\b4 cross-pnode links \(400mbit\))")))
      << "no cut of 4 links (400 mbit) in:\n"
      << text;

  const std::string dir = ResultsDir(id);
  ASSERT_FALSE(dir.empty()) << text;
  json m = json::parse(ReadFileOrEmpty(dir + "/manifest.json"), nullptr, false);
  ASSERT_TRUE(m.is_object());
  EXPECT_EQ(m["pnodes"].size(), static_cast<size_t>(kPnodes)) << m.dump(2);

  // Plain ping across the 20 ms ring link (s0 and s1 are on different pnodes).
  const std::string ping = ReadFileOrEmpty(dir + "/tasks/ping/0.stdout");
  EXPECT_GE(PingReceived(ping), 19) << ping;
  const auto rtt = PingRtt(ping);
  ASSERT_EQ(rtt.size(), 3u) << ping;
  EXPECT_GE(rtt[0], 39.5) << ping;
  EXPECT_LE(rtt[1], 43.0) << ping;

  // iperf3 across the 50 mbit r2--r3 link: goodput near 50 mbit x 1448/1514.
  const std::string iperf = ReadFileOrEmpty(dir + "/tasks/iperf/0.stdout");
  json ij = json::parse(iperf, nullptr, false);
  ASSERT_TRUE(ij.is_object()) << iperf;
  const double bps = ij["end"]["sum_received"].value("bits_per_second", 0.0);
  EXPECT_GE(bps, 0.60 * 50e6) << iperf.substr(0, 2000);
  EXPECT_LE(bps, 1.02 * 50e6) << iperf.substr(0, 2000);
  std::fprintf(stderr, "ring: rtt min/median/max %.2f/%.2f/%.2f ms, iperf3 %.2f mbit/s\n", rtt[0],
               rtt[1], rtt[2], bps / 1e6);
}

TEST_F(ClusterTest, LostPnodeFailsExperimentAndAgentReconciles) {
  const std::string workload =
      "  - name: sleep\n"
      "    on: [s0h0, s1h0, s2h0, s3h0, r0, r1, r2, r3]\n"
      "    run: sleep 170\n"
      "    wait: true\n";
  const std::string id = SubmitOrFail("lost", RingExperiment("lost", "3m", workload));
  ASSERT_FALSE(id.empty());
  ASSERT_EQ(cluster_->WaitState(id, {"running"}, seconds(90)), "running") << History(id);
  json st = cluster_->StatusJson(id);
  ASSERT_TRUE(st["placement"].is_object()) << st.dump(2);
  std::vector<int> used;
  for (int p = 0; p < kPnodes; ++p) {
    if (st["placement"]["vnodes_per_pnode"].value(Cluster::host_id(p), 0) > 0) used.push_back(p);
  }
  ASSERT_FALSE(used.empty()) << st.dump(2);
  // The multi-pnode case is the point; a single-pnode placement still tests
  // failure detection and reconciliation, but is reported.
  EXPECT_EQ(used.size(), static_cast<size_t>(kPnodes)) << st["placement"].dump(2);
  const int victim = used.back();
  const std::string victim_host = Cluster::host_id(victim);
  ASSERT_FALSE(cluster_->VnodeNamespaces(victim).empty()) << "no vnodes on " << victim_host;

  const int64_t killed_unix_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(
                                     std::chrono::system_clock::now().time_since_epoch())
                                     .count();
  ASSERT_GT(cluster_->KillAgent(victim), 0);
  const std::string state =
      cluster_->WaitState(id, {"failed"}, kHeartbeatTimeout + kStopGrace + seconds(15));
  const std::string text = cluster_->StatusText(id);
  ASSERT_EQ(state, "failed") << text;
  // When the controller persisted `failed` (its history), from the kill: the
  // heartbeat timeout, then the surviving tasks' (prompt) end reports.
  st = cluster_->StatusJson(id);
  int64_t failed_unix_ns = 0;
  for (const auto& t : st["transitions"]) {
    if (t.value("to", "") == "failed") failed_unix_ns = t.value("unix_ns", int64_t{0});
  }
  ASSERT_GT(failed_unix_ns, 0) << st.dump(2);
  const milliseconds detect((failed_unix_ns - killed_unix_ns) / 1'000'000);
  std::fprintf(stderr, "lost %s: experiment failed %lld ms after the kill\n", victim_host.c_str(),
               static_cast<long long>(detect.count()));
  EXPECT_GE(detect, kHeartbeatTimeout - milliseconds(500)) << text;
  EXPECT_LE(detect, kHeartbeatTimeout + seconds(2)) << text;
  const std::string reason =
      st["failure_reason"].is_string() ? st["failure_reason"].get<std::string>() : "";
  std::fprintf(stderr, "failure reason: %s\n", reason.c_str());
  EXPECT_TRUE(std::regex_search(reason, std::regex("\\b" + victim_host + "\\b"))) << reason;
  EXPECT_NE(text.find(victim_host), std::string::npos) << text;
  // ... and the vnodes lost with it: METIS put one whole site (router r<k>
  // and hosts s<k>h0..8) on each pnode, so the reason names exactly one site.
  std::smatch site;
  ASSERT_TRUE(std::regex_search(reason, site, std::regex(R"(\br([0-3])\b)")))
      << "no lost router named in: " << reason;
  for (int h = 0; h < 9; ++h) {
    const std::string vnode = "s" + site[1].str() + "h" + std::to_string(h);
    EXPECT_TRUE(std::regex_search(reason, std::regex("\\b" + vnode + "\\b")))
        << vnode << " not named in: " << reason;
  }
  for (int o = 0; o < 4; ++o) {
    if (std::to_string(o) == site[1].str()) continue;
    EXPECT_FALSE(std::regex_search(
        reason, std::regex("\\b(r" + std::to_string(o) + "|s" + std::to_string(o) + "h[0-8])\\b")))
        << "site " << o << " was not on " << victim_host << ": " << reason;
  }

  // The results directory says the same.
  const std::string dir = ResultsDir(id);
  ASSERT_FALSE(dir.empty()) << text;
  json m = json::parse(ReadFileOrEmpty(dir + "/manifest.json"), nullptr, false);
  ASSERT_TRUE(m.is_object());
  EXPECT_EQ(m.value("state", ""), "failed") << m.dump(2);
  EXPECT_TRUE(std::regex_search(m.value("reason", ""), std::regex("\\b" + victim_host + "\\b")))
      << m.dump(2);

  // The surviving pnodes tear the experiment down; the dead agent's vnodes stay.
  for (int p : used) {
    if (p == victim) continue;
    const auto end = Clock::now() + seconds(20);
    while (!cluster_->VnodeNamespaces(p).empty() && Clock::now() < end) {
      std::this_thread::sleep_for(milliseconds(200));
    }
    EXPECT_TRUE(cluster_->VnodeNamespaces(p).empty())
        << Cluster::host_id(p) << " still holds " << cluster_->VnodeNamespaces(p).size();
  }
  EXPECT_FALSE(cluster_->VnodeNamespaces(victim).empty())
      << "the killed agent's vnodes vanished before it restarted: nothing to reconcile";

  // Restart: the agent says hello, holds the experiment, is told to drop it.
  ASSERT_TRUE(cluster_->StartAgent(victim));
  const auto end = Clock::now() + seconds(30);
  while (!cluster_->VnodeNamespaces(victim).empty() && Clock::now() < end) {
    std::this_thread::sleep_for(milliseconds(200));
  }
  EXPECT_TRUE(cluster_->VnodeNamespaces(victim).empty())
      << victim_host << " still holds " << cluster_->VnodeNamespaces(victim).size()
      << " namespaces after its agent restarted";
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(cluster_->dir() + "/" + victim_host + "/state", ec)) {
    EXPECT_EQ(e.path().extension() == ".shard", false) << "shard record left: " << e.path();
  }
  // The restarted agent is up and idle: the experiment stays failed.
  EXPECT_EQ(cluster_->StatusJson(id).value("state", ""), "failed");
}

// Links as declared across pnodes (issue 11): a host--host link, a
// host--switch link and a router--router link, each cut between p0 and p1
// (VXLAN), probed as on one pnode (tests/e2e/link_probe.h): plain ping and
// tcpdump for 10/50/200 ms set by link events, each direction's loss apart,
// iperf3 at 1/10/100 mbit through the routers.
TEST_F(ClusterTest, CrossPnodeLinksAsDeclared) {
  using namespace link_probe;
  const std::vector<Probe> probes = {
      {"host-host", "x1", "x2", {"x1--x2"}},
      {"host-switch", "z1", "z2", {"z1--sw"}},
      {"router-router", "y1", "y2", {"ra--rb"}, true},
  };
  auto topology = [](const std::string& profile) {
    return "topology:\n"
           "  nodes:\n"
           "    x1: {host: p0}\n    x2: {host: p1}\n"
           "    z1: {host: p0}\n    z2: {host: p1}\n    sw: {kind: switch, host: p1}\n"
           "    y1: {host: p0}\n    y2: {host: p1}\n"
           "    ra: {kind: router, host: p0}\n    rb: {kind: router, host: p1}\n"
           "  links:\n"
           "    - {endpoints: [x1, x2], " + profile + "}\n"
           "    - {endpoints: [z1, sw], " + profile + "}\n"
           "    - {endpoints: [sw, z2]}\n"
           "    - {endpoints: [ra, rb], " + profile + "}\n"
           "    - {endpoints: [y1, ra]}\n"
           "    - {endpoints: [rb, y2]}\n";
  };
  const Timeline tl = ProbeTimeline(probes);
  const std::string yaml = "name: cross\nduration: " + std::to_string(tl.end_ms / 1000 + 60) +
                           "s\nseed: " + std::to_string(ProbeSeed(11)) + "\n" + topology("delay: 10ms") + "workload:\n" +
                           tl.workload + "events:\n" + tl.events +
                           "collect:\n  files: [\"$GRIDEMU_OUT/*\"]\n";
  const std::string id = SubmitOrFail("cross", yaml);
  ASSERT_FALSE(id.empty());
  ASSERT_EQ(cluster_->WaitState(id, {"finished"}, seconds(tl.end_ms / 1000 + 120)), "finished")
      << History(id);
  json st = cluster_->StatusJson(id);
  EXPECT_EQ(st["placement"].value("cut_links", 0), 3) << st.dump(2);
  const std::string dir = ResultsDir(id);
  ASSERT_FALSE(dir.empty()) << History(id);
  auto paths = [&](int d) {
    char loss[160];
    std::snprintf(loss, sizeof loss, "delay: 10ms, forward: {loss: %g%%}, reverse: {loss: %g%%}",
                  kLossForward * 100, kLossReverse * 100);
    const std::string file =
        Write("paths" + std::to_string(d) + ".yaml",
              "name: p\nduration: 1m\n" +
                  topology(d < 0 ? std::string(loss) : "delay: " + std::to_string(d) + "ms"));
    CmdResult r = RunCmd({GRIDEMU_CLI_BIN, "topo", "paths", "--json", file});
    EXPECT_EQ(r.code, 0) << r.err;
    return ParsePaths(r.out);
  };
  CheckTimeline(probes, dir, [](const std::string& f) { return ReadFileOrEmpty(f); }, paths);
}

}  // namespace
}  // namespace gridemu::cluster_test

namespace gridemu::cluster_test {
namespace {

// Three cross-pnode experiments submitted back to back (each as soon as the one
// before it finished) all run (issue 12): a VNI is not handed out again while a pnode
// may still hold the VXLAN device of the experiment that just ended.
TEST_F(ClusterTest, BackToBackCrossPnodeExperimentsAllRun) {
  std::vector<uint32_t> vnis;
  for (int i = 0; i < 3; ++i) {
    const std::string name = "b2b" + std::to_string(i);
    const std::string yaml = "name: " + name +
                             "\nduration: 30s\n"
                             "topology:\n"
                             "  nodes: {a: {host: p0}, b: {host: p1}}\n"
                             "  links:\n"
                             "    - {endpoints: [a, b], delay: 5ms}\n"
                             "workload:\n"
                             "  - {name: ping, on: a, at: 100ms, wait: true, timeout: 20s,"
                             " run: ping -n -c 3 -i 0.2 b}\n";
    const std::string id = SubmitOrFail(name, yaml);
    ASSERT_FALSE(id.empty());
    ASSERT_EQ(cluster_->WaitState(id, {"finished"}, seconds(60)), "finished") << History(id);
    const std::string dir = ResultsDir(id);
    ASSERT_FALSE(dir.empty()) << History(id);
    EXPECT_EQ(PingReceived(ReadFileOrEmpty(dir + "/tasks/ping/0.stdout")), 3) << History(id);
    json st = cluster_->StatusJson(id);
    ASSERT_TRUE(st["placement"].is_object()) << st.dump(2);
    EXPECT_EQ(st["placement"].value("vni_count", 0u), 1u) << st.dump(2);
    vnis.push_back(st["placement"].value("vni_base", 0u));
  }
  EXPECT_NE(vnis[0], vnis[1]) << "the VNI of an experiment that just ended is not reused at once";
  EXPECT_NE(vnis[1], vnis[2]);
}

}  // namespace
}  // namespace gridemu::cluster_test

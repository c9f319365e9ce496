// Good-input tests of ParseExperiment(): the DESIGN.md §3 example, group
// expansion, per-direction profiles, defaults, selectors, stagger, seeds and
// scale.

#include "gridemu/experiments/parse.h"

#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <string>

#include "gridemu/common/units.h"

namespace gridemu::experiments {
namespace {

using namespace std::chrono_literals;
using topology::Runtime;
using topology::Topology;
using topology::VnodeKind;

std::string SourceDir() {
  const char* env = std::getenv("GRIDEMU_SOURCE_DIR");
  return env != nullptr ? env : GRIDEMU_TEST_SOURCE_DIR;
}
std::string TestData() { return SourceDir() + "/tests/experiments/testdata"; }

// Parses `text` and fails the test with the diagnostics if it does not parse.
Experiment MustParse(const std::string& text, const std::string& base_dir = ".") {
  auto r = ParseExperiment(text, "test.yaml", base_dir);
  EXPECT_TRUE(r.ok()) << r.status().message();
  if (!r.ok()) return Experiment{};
  return std::move(r).value();
}

topology::VnodeId Id(const Topology& t, std::string_view name) {
  auto id = t.Find(name);
  EXPECT_TRUE(id.has_value()) << "no vnode " << name;
  return id.value_or(0);
}

const topology::Link& LinkOf(const Topology& t, std::string_view name) {
  auto id = t.FindLink(name);
  EXPECT_TRUE(id.ok()) << id.status().message();
  return t.link(id.ok() ? *id : 0);
}

TEST(ParseExperiment, DesignExample) {
  auto r = LoadExperiment(TestData() + "/bt-swarm.yaml");
  ASSERT_TRUE(r.ok()) << r.status().message();
  const Experiment& e = *r;
  EXPECT_EQ(e.name, "bt-swarm");
  EXPECT_EQ(e.slice, "default");
  EXPECT_EQ(e.seed, 42u);
  EXPECT_EQ(e.duration, 10min);
  EXPECT_EQ(e.on_pnode_failure, PnodeFailurePolicy::kFail);
  EXPECT_EQ(e.source_path, TestData() + "/bt-swarm.yaml");
  EXPECT_NE(e.source_text.find("name: bt-swarm"), std::string::npos);

  const Topology& t = e.topology;
  // 2 nodes + 100 peers + 3 imported + 1000 generated.
  EXPECT_EQ(t.num_vnodes(), 2u + 100u + 3u + 1000u);
  EXPECT_EQ(t.vnode(Id(t, "core")).kind, VnodeKind::kRouter);
  EXPECT_EQ(t.vnode(Id(t, "tracker")).kind, VnodeKind::kHost);
  // Defaults reach every vnode, whatever created it.
  for (const auto& v : t.vnodes()) {
    EXPECT_EQ(v.runtime, Runtime::kNetns) << v.name;
    EXPECT_EQ(v.resources.cpu, 0.25) << v.name;
    EXPECT_EQ(v.resources.memory_bytes, 256u << 20) << v.name;
    EXPECT_EQ(v.resources.pids, 512u) << v.name;
  }

  // The group: peer0 .. peer99, uplink forward, downlink reverse.
  const topology::Group* peers = t.FindGroup("peers");
  ASSERT_NE(peers, nullptr);
  ASSERT_EQ(peers->members.size(), 100u);
  EXPECT_EQ(t.vnode(peers->members[0]).name, "peer0");
  EXPECT_EQ(t.vnode(peers->members[99]).name, "peer99");
  EXPECT_EQ(t.vnode(peers->members[42]).group_index, 42);
  EXPECT_EQ(t.vnode(peers->members[42]).group, "peers");
  const topology::Link& up = LinkOf(t, "peer7--core");
  EXPECT_EQ(up.a, Id(t, "peer7"));
  EXPECT_EQ(up.b, Id(t, "core"));
  EXPECT_EQ(up.forward.rate_bps, 1'000'000u);
  EXPECT_EQ(up.reverse.rate_bps, 8'000'000u);
  EXPECT_EQ(up.forward.delay, 20ms);
  EXPECT_EQ(up.reverse.delay, 20ms);

  const topology::Link& tc = LinkOf(t, "tracker--core");
  EXPECT_EQ(tc.forward.rate_bps, 100'000'000u);
  EXPECT_EQ(tc.reverse.rate_bps, 100'000'000u);
  EXPECT_EQ(tc.forward.delay, 1ms);

  // The import: names sanitised and prefixed, rates from LinkSpeed or the default.
  const auto ny = t.Find("ab-new-york");
  const auto chicago = t.Find("ab-chicago");
  const auto denver = t.Find("ab-denver");
  ASSERT_TRUE(ny && chicago && denver);
  EXPECT_EQ(t.vnode(*ny).kind, VnodeKind::kRouter);
  const topology::Link& nyc = LinkOf(t, "ab-new-york--ab-chicago");
  EXPECT_EQ(nyc.forward.rate_bps, 10'000'000'000u);  // LinkSpeedRaw
  ASSERT_TRUE(nyc.forward.delay.has_value());
  // New York - Chicago is about 1,145 km: ~5.7 ms of fibre.
  EXPECT_GT(*nyc.forward.delay, 5ms);
  EXPECT_LT(*nyc.forward.delay, 6500us);
  const topology::Link& cd = LinkOf(t, "ab-chicago--ab-denver");
  EXPECT_EQ(cd.forward.rate_bps, 1'000'000'000u);  // rate: 1gbit (no LinkSpeed)
  EXPECT_EQ(cd.forward.delay, 1ms);                // Denver has no coordinates

  // The generator: as0 .. as999, BA with m=2.
  EXPECT_TRUE(t.Find("as0").has_value());
  EXPECT_TRUE(t.Find("as999").has_value());
  EXPECT_FALSE(t.Find("as1000").has_value());
  const size_t generated_links = t.num_links() - 100 - 1 - 2;
  EXPECT_GE(generated_links, 1990u);
  EXPECT_LE(generated_links, 2000u);
  const topology::Link& as = t.link(t.incident(Id(t, "as500"))[0]);
  EXPECT_EQ(as.forward.rate_bps, 100'000'000u);
  EXPECT_EQ(as.reverse.delay, 5ms);

  // Workload.
  ASSERT_EQ(e.tasks.size(), 3u);
  EXPECT_EQ(e.tasks[0].name, "tracker");
  EXPECT_EQ(e.tasks[0].targets, std::vector<topology::VnodeId>{Id(t, "tracker")});
  EXPECT_EQ(e.tasks[0].run, "opentracker -p 6969");
  EXPECT_FALSE(e.tasks[0].wait);
  EXPECT_EQ(e.tasks[1].targets, std::vector<topology::VnodeId>{Id(t, "peer0")});
  EXPECT_EQ(e.tasks[1].at, 2s);
  const Task& leech = e.tasks[2];
  EXPECT_EQ(leech.on, "peers[1:]");
  ASSERT_EQ(leech.targets.size(), 99u);
  EXPECT_EQ(leech.targets.front(), Id(t, "peer1"));
  EXPECT_EQ(leech.targets.back(), Id(t, "peer99"));
  EXPECT_EQ(leech.StartTimeOf(0), 5s);
  EXPECT_EQ(leech.StartTimeOf(98), 5s + 98 * 50ms);
  EXPECT_TRUE(leech.wait);
  EXPECT_EQ(leech.timeout, 8min);

  // Events, in time order.
  ASSERT_EQ(e.events.size(), 4u);
  EXPECT_EQ(e.events[0].kind, EventKind::kLinkSet);
  EXPECT_EQ(e.events[0].at, 60s);
  EXPECT_EQ(e.events[0].link_id, *t.FindLink("tracker--core"));
  EXPECT_EQ(e.events[0].forward.loss, 0.05);
  EXPECT_EQ(e.events[0].reverse.loss, 0.05);
  EXPECT_FALSE(e.events[0].forward.rate_bps.has_value());  // only what `set` names
  EXPECT_EQ(e.events[1].kind, EventKind::kLinkDown);
  EXPECT_EQ(e.events[2].kind, EventKind::kNodeAction);
  EXPECT_EQ(e.events[2].action, NodeAction::kKill);
  ASSERT_EQ(e.events[2].targets.size(), 10u);
  EXPECT_EQ(e.events[2].targets[0], Id(t, "peer10"));
  EXPECT_EQ(e.events[2].targets[9], Id(t, "peer19"));
  EXPECT_EQ(e.events[3].kind, EventKind::kChurn);
  EXPECT_EQ(e.events[3].churn.group, "peers");
  EXPECT_DOUBLE_EQ(e.events[3].churn.rate_per_s, 0.2);
  EXPECT_EQ(e.events[3].churn.down_for, 30s);
  EXPECT_FALSE(e.events[3].churn.until.has_value());
  EXPECT_EQ(e.events[3].targets.size(), 100u);

  EXPECT_TRUE(e.collect.metrics);
  EXPECT_EQ(e.collect.metrics_interval, 1s);
  EXPECT_EQ(e.collect.files, std::vector<std::string>{"$GRIDEMU_OUT/*"});
}

TEST(ParseExperiment, MinimalFileGetsDefaults) {
  Experiment e = MustParse("name: x\nduration: 1s\ntopology: {nodes: {a: }}\n");
  EXPECT_EQ(e.slice, "default");
  EXPECT_EQ(e.seed, 1u);
  EXPECT_EQ(e.description, "");
  EXPECT_FALSE(e.collect.metrics);
  EXPECT_EQ(e.collect.metrics_interval, 1s);
  EXPECT_TRUE(e.tasks.empty());
  ASSERT_EQ(e.topology.num_vnodes(), 1u);
  EXPECT_EQ(e.topology.vnode(0).name, "a");
  EXPECT_EQ(e.topology.vnode(0).kind, VnodeKind::kHost);
  EXPECT_EQ(e.topology.vnode(0).loc.ToString(), "test.yaml:3:20");
}

TEST(ParseExperiment, StopGraceAndRestartHaveDefaultsAndCanBeSet) {
  Experiment e = MustParse(
      "name: x\nduration: 1m\ntopology: {nodes: {a: }}\nworkload:\n"
      "  - {name: daemon, on: a, run: serve}\n"
      "  - {name: probe, on: a, at: 1s, run: ping b}\n"
      "  - {name: quick, on: a, run: serve, stop_grace: 0s, restart: never}\n"
      "  - {name: again, on: a, at: 2s, run: ping b, stop_grace: 10s, restart: on-node-start}\n");
  ASSERT_EQ(e.tasks.size(), 4u);
  // Without `at` a task runs whenever its vnode does; with `at`, once.
  EXPECT_EQ(e.tasks[0].restart, TaskRestart::kOnNodeStart);
  EXPECT_EQ(e.tasks[0].stop_grace, kDefaultStopGrace);
  EXPECT_EQ(e.tasks[1].restart, TaskRestart::kNever);
  EXPECT_EQ(e.tasks[1].stop_grace, kDefaultStopGrace);
  EXPECT_EQ(e.tasks[2].restart, TaskRestart::kNever);
  EXPECT_EQ(e.tasks[2].stop_grace, 0s);
  EXPECT_EQ(e.tasks[3].restart, TaskRestart::kOnNodeStart);
  EXPECT_EQ(e.tasks[3].stop_grace, 10s);
}

TEST(ParseExperiment, GroupExpansionWithPatternAndDirections) {
  Experiment e = MustParse(R"(
name: g
duration: 1m
topology:
  nodes: {hub: {kind: switch}}
  groups:
    clients:
      count: 12
      name: "c{i}-eu"
      link_to: hub
      kind: router
      host: pnode-3
      link:
        delay: 10ms
        forward: {rate: 2mbit}
        reverse: {rate: 20mbit, delay: 15ms}
)");
  const Topology& t = e.topology;
  ASSERT_EQ(t.num_vnodes(), 13u);
  ASSERT_EQ(t.num_links(), 12u);
  const topology::Group* g = t.FindGroup("clients");
  ASSERT_NE(g, nullptr);
  for (size_t i = 0; i < 12; ++i) {
    const auto& v = t.vnode(g->members[i]);
    EXPECT_EQ(v.name, "c" + std::to_string(i) + "-eu");
    EXPECT_EQ(v.group_index, static_cast<int64_t>(i));
    EXPECT_EQ(v.kind, VnodeKind::kRouter);
    EXPECT_EQ(v.host, "pnode-3");
    ASSERT_EQ(t.incident(g->members[i]).size(), 1u);
    const auto& l = t.link(t.incident(g->members[i])[0]);
    EXPECT_EQ(l.a, g->members[i]);  // forward = member -> link_to
    EXPECT_EQ(l.b, Id(t, "hub"));
    EXPECT_EQ(l.forward.rate_bps, 2'000'000u);
    EXPECT_EQ(l.forward.delay, 10ms);  // top-level applies to both
    EXPECT_EQ(l.reverse.rate_bps, 20'000'000u);
    EXPECT_EQ(l.reverse.delay, 15ms);  // reverse overrides
  }
  EXPECT_EQ(t.vnode(Id(t, "hub")).kind, VnodeKind::kSwitch);
}

TEST(ParseExperiment, GroupNameDefaultsToGroupName) {
  Experiment e = MustParse("name: g\nduration: 1m\ntopology:\n  groups:\n    w: {count: 3}\n");
  EXPECT_TRUE(e.topology.Find("w0") && e.topology.Find("w1") && e.topology.Find("w2"));
  EXPECT_EQ(e.topology.num_links(), 0u);
}

TEST(ParseExperiment, PerDirectionOverridesOnExplicitLinks) {
  Experiment e = MustParse(R"(
name: l
duration: 1m
topology:
  nodes: {a: {}, b: {}}
  links:
    - endpoints: [a, b]
      rate: 10mbit
      delay: 5ms
      jitter: 1ms
      delay_distribution: normal
      loss: 0.5%
      forward: {rate: 1mbit, queue: 50}
      reverse: {loss_model: {p: 1%, r: 30%}}
)");
  const auto& l = e.topology.link(0);
  EXPECT_EQ(l.a, Id(e.topology, "a"));
  EXPECT_EQ(l.forward.rate_bps, 1'000'000u);
  EXPECT_EQ(l.forward.queue_packets, 50u);
  EXPECT_EQ(l.forward.delay, 5ms);
  EXPECT_EQ(l.forward.loss, 0.005);
  EXPECT_EQ(l.forward.delay_distribution, DelayDistribution::kNormal);
  EXPECT_EQ(l.reverse.rate_bps, 10'000'000u);
  EXPECT_FALSE(l.reverse.queue_packets.has_value());
  EXPECT_EQ(l.reverse.jitter, 1ms);
  // A Gilbert-Elliott model in one direction replaces the link's random loss.
  EXPECT_FALSE(l.reverse.loss.has_value());
  ASSERT_TRUE(l.reverse.loss_gemodel.has_value());
  EXPECT_DOUBLE_EQ(l.reverse.loss_gemodel->r, 0.3);
}

TEST(ParseExperiment, DefaultsMergeWithPerVnodeSettings) {
  Experiment e = MustParse(R"(
name: d
duration: 1m
topology:
  defaults:
    runtime: lxc
    kind: router
    resources: {cpu: 0.5, memory: 1GiB}
  nodes:
    a: {resources: {cpu: 2}}
    b: {runtime: qemu, kind: host, resources: {pids: 64}}
  groups:
    g: {count: 2, resources: {memory: 64MiB}}
  generate:
    - {model: star, n: 4, prefix: s}
)");
  const Topology& t = e.topology;
  const auto& a = t.vnode(Id(t, "a"));
  EXPECT_EQ(a.runtime, Runtime::kLxc);
  EXPECT_EQ(a.kind, VnodeKind::kRouter);
  EXPECT_EQ(a.resources.cpu, 2.0);
  EXPECT_EQ(a.resources.memory_bytes, 1u << 30);
  EXPECT_FALSE(a.resources.pids.has_value());
  const auto& b = t.vnode(Id(t, "b"));
  EXPECT_EQ(b.runtime, Runtime::kQemu);
  EXPECT_EQ(b.kind, VnodeKind::kHost);
  EXPECT_EQ(b.resources.cpu, 0.5);
  EXPECT_EQ(b.resources.pids, 64u);
  const auto& g1 = t.vnode(Id(t, "g1"));
  EXPECT_EQ(g1.kind, VnodeKind::kRouter);
  EXPECT_EQ(g1.resources.memory_bytes, 64u << 20);
  EXPECT_EQ(g1.resources.cpu, 0.5);
  // Generated vnodes get runtime and resources, but their kind comes from roles.
  const auto& s0 = t.vnode(Id(t, "s0"));
  EXPECT_EQ(s0.runtime, Runtime::kLxc);
  EXPECT_EQ(s0.resources.cpu, 0.5);
  EXPECT_EQ(s0.kind, VnodeKind::kRouter);                  // the hub
  EXPECT_EQ(t.vnode(Id(t, "s1")).kind, VnodeKind::kHost);  // a leaf
}

TEST(ParseExperiment, SelectorsInTasksAndEvents) {
  Experiment e = MustParse(R"(
name: s
duration: 10m
topology:
  groups:
    p: {count: 20}
workload:
  - {name: last3, on: "p[-3:]", run: "true"}
  - {name: one, on: "p[2]", argv: [sleep, "1"], env: {MODE: fast, N: 3}}
  - {name: head, on: "p[:4]", at: 1s, stagger: 250ms, run: "true"}
  - {name: all, on: p, run: "true"}
events:
  - {at: 3m, nodes: "p[5:7]", action: freeze}
  - {at: 1m, nodes: "p[5:7]", action: thaw}
  - {at: 2m, nodes: p0, action: stop}
)");
  const Topology& t = e.topology;
  ASSERT_EQ(e.tasks.size(), 4u);
  EXPECT_EQ(e.tasks[0].targets,
            (std::vector<topology::VnodeId>{Id(t, "p17"), Id(t, "p18"), Id(t, "p19")}));
  EXPECT_EQ(e.tasks[1].targets, std::vector<topology::VnodeId>{Id(t, "p2")});
  EXPECT_FALSE(e.tasks[1].run.has_value());
  EXPECT_EQ(e.tasks[1].argv, (std::vector<std::string>{"sleep", "1"}));
  EXPECT_EQ(e.tasks[1].env.at("MODE"), "fast");
  EXPECT_EQ(e.tasks[1].env.at("N"), "3");
  ASSERT_EQ(e.tasks[2].targets.size(), 4u);
  EXPECT_EQ(e.tasks[2].StartTimeOf(0), 1s);
  EXPECT_EQ(e.tasks[2].StartTimeOf(3), 1750ms);
  EXPECT_EQ(e.tasks[3].targets.size(), 20u);
  // Events come out sorted by time.
  ASSERT_EQ(e.events.size(), 3u);
  EXPECT_EQ(e.events[0].action, NodeAction::kThaw);
  EXPECT_EQ(e.events[1].action, NodeAction::kStop);
  EXPECT_EQ(e.events[2].action, NodeAction::kFreeze);
  EXPECT_EQ(e.events[2].targets, (std::vector<topology::VnodeId>{Id(t, "p5"), Id(t, "p6")}));
}

TEST(ParseExperiment, ListOfSelectorsIsTheirConcatenation) {
  Experiment e = MustParse(R"(
name: s
duration: 10m
topology:
  nodes: {a: {}, b: {}}
  groups:
    p: {count: 5}
workload:
  - {name: some, on: [b, "p[3:]", a], run: "true"}
)");
  const Topology& t = e.topology;
  ASSERT_EQ(e.tasks.size(), 1u);
  EXPECT_EQ(e.tasks[0].targets,
            (std::vector<topology::VnodeId>{Id(t, "b"), Id(t, "p3"), Id(t, "p4"), Id(t, "a")}));
  EXPECT_EQ(e.tasks[0].on, "b, p[3:], a");
}

TEST(ParseExperiment, AnalyzeCommandsAreKeptInOrder) {
  Experiment e = MustParse(R"(
name: s
duration: 1m
topology:
  nodes: {a: {}}
analyze:
  - python3 summary.py
  - "echo done"
)");
  EXPECT_EQ(e.analyze, (std::vector<std::string>{"python3 summary.py", "echo done"}));
}

TEST(ParseExperiment, ChurnNeedsAGroup) {
  auto bad = ParseExperiment(R"(
name: ev
duration: 10m
topology:
  nodes: {a: {}, b: {}}
events:
  - {at: 5s, churn: {group: a, rate: 3/m, down_for: 1s}}
)",
                             "c.yaml");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().message(), "c.yaml:7:29: churn.group: 'a' is a vnode; expected a group");
}

TEST(ParseExperiment, LinkSetIsStoredPerTopologyDirectionAndValidatedOverTime) {
  auto r = ParseExperiment(R"(
name: ev
duration: 10m
topology:
  nodes: {a: {}, b: {}}
  groups:
    g: {count: 3}
  links:
    - {endpoints: [a, b], delay: 10ms}
events:
  - {at: 1s, link: b--a, set: {forward: {rate: 1mbit}, reverse: {rate: 9mbit}}}
  - {at: 2s, link: a--b, set: {jitter: 1ms}}
  - {at: 3s, link: a--b, down: true}
  - {at: 4s, link: b--a, up: true}
  - {at: 5s, churn: {group: g, rate: 3/m, down_for: 1s, until: 9m}}
)",
                           "e.yaml");
  ASSERT_TRUE(r.ok()) << r.status().message();
  const Experiment& e = *r;
  ASSERT_EQ(e.events.size(), 5u);
  // "b--a" forward is b -> a, which is the topology link's reverse.
  EXPECT_EQ(e.events[0].forward.rate_bps, 9'000'000u);
  EXPECT_EQ(e.events[0].reverse.rate_bps, 1'000'000u);
  EXPECT_EQ(e.events[1].forward.jitter, 1ms);  // fine: the link has a delay
  EXPECT_EQ(e.events[2].kind, EventKind::kLinkDown);
  EXPECT_EQ(e.events[3].kind, EventKind::kLinkUp);
  EXPECT_EQ(e.events[3].link, "b--a");
  EXPECT_DOUBLE_EQ(e.events[4].churn.rate_per_s, 0.05);
  EXPECT_EQ(e.events[4].churn.until, 9min);

  // A delay set at 10s makes a jitter set at 20s valid, but not one at 5s.
  auto timed = ParseExperiment(R"(
name: ev
duration: 10m
topology:
  nodes: {a: {}, b: {}}
  links:
    - {endpoints: [a, b], rate: 1mbit}
events:
  - {at: 20s, link: a--b, set: {jitter: 1ms}}
  - {at: 10s, link: a--b, set: {delay: 5ms}}
  - {at: 5s, link: a--b, set: {jitter: 2ms}}
)",
                               "t.yaml");
  ASSERT_FALSE(timed.ok());
  EXPECT_EQ(timed.status().message(),
            "t.yaml:11:40: jitter: needs a delay (jitter varies the delay)");
}

TEST(ParseExperiment, CollectForms) {
  auto base = std::string("name: c\nduration: 1m\ntopology: {nodes: {a: {}}}\n");
  EXPECT_TRUE(MustParse(base + "collect: {metrics: true}\n").collect.metrics);
  EXPECT_FALSE(MustParse(base + "collect: {metrics: false}\n").collect.metrics);
  Experiment e = MustParse(base + "collect: {metrics: {interval: 250ms}, files: [a, b]}\n");
  EXPECT_TRUE(e.collect.metrics);
  EXPECT_EQ(e.collect.metrics_interval, 250ms);
  EXPECT_EQ(e.collect.files, (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(MustParse(base + "on_pnode_failure: continue\n").on_pnode_failure,
            PnodeFailurePolicy::kContinue);
}

TEST(ParseExperiment, GeneratedTopologyIsDeterministicFromTheSeed) {
  auto make = [](int seed, const char* extra) {
    return "name: r\nseed: " + std::to_string(seed) +
           "\nduration: 1m\ntopology:\n  generate:\n"
           "    - {model: barabasi-albert, n: 300, m: 2, prefix: x" +
           extra + "}\n    - {model: waxman, n: 50, prefix: w}\n";
  };
  auto edges = [](const Experiment& e) {
    std::vector<std::pair<std::string, std::string>> out;
    for (const auto& l : e.topology.links()) {
      out.emplace_back(e.topology.vnode(l.a).name, e.topology.vnode(l.b).name);
    }
    return out;
  };
  const auto a1 = edges(MustParse(make(7, "")));
  const auto a2 = edges(MustParse(make(7, "")));
  const auto b = edges(MustParse(make(8, "")));
  EXPECT_EQ(a1, a2);
  EXPECT_NE(a1, b);
  // An explicit generator seed does not depend on the experiment seed.
  const auto s1 = edges(MustParse(make(7, ", seed: 99")));
  const auto s2 = edges(MustParse(make(8, ", seed: 99")));
  const auto ba = [](const std::vector<std::pair<std::string, std::string>>& v) {
    std::vector<std::pair<std::string, std::string>> out;
    for (const auto& p : v) {
      if (p.first[0] == 'x') out.push_back(p);
    }
    return out;
  };
  EXPECT_EQ(ba(s1), ba(s2));
  EXPECT_NE(ba(s1), ba(a1));
}

TEST(ParseExperiment, HundredThousandMemberGroup) {
  const std::string text = R"(
name: big
duration: 1h
topology:
  nodes: {core: {kind: router}}
  groups:
    peers:
      count: 100000
      name: "peer{i}"
      link_to: core
      link: {forward: {rate: 1mbit, delay: 20ms}, reverse: {rate: 8mbit, delay: 20ms}}
workload:
  - {name: leech, on: "peers[1:]", at: 5s, stagger: 10ms, run: "true"}
events:
  - {at: 120s, nodes: "peers[10:20]", action: kill}
  - {at: 150s, churn: {group: peers, rate: 0.2/s, down_for: 30s}}
  - {at: 160s, link: core--peer99999, set: {forward: {loss: 1%}}}
)";
  const auto start = std::chrono::steady_clock::now();
  auto r = ParseExperiment(text, "big.yaml");
  const auto elapsed = std::chrono::steady_clock::now() - start;
  ASSERT_TRUE(r.ok()) << r.status().message();
  RecordProperty("parse_ms", std::to_string(elapsed / 1ms));
  EXPECT_EQ(r->topology.num_vnodes(), 100'001u);
  EXPECT_EQ(r->topology.num_links(), 100'000u);
  EXPECT_EQ(r->topology.vnode(*r->topology.Find("peer99999")).group_index, 99'999);
  EXPECT_EQ(r->tasks[0].targets.size(), 99'999u);
  EXPECT_EQ(r->tasks[0].StartTimeOf(99'998), 5s + 99'998 * 10ms);
  ASSERT_EQ(r->events.size(), 3u);
  const Event& set = r->events[2];
  const auto& link = r->topology.link(set.link_id);
  EXPECT_EQ(link.a, *r->topology.Find("peer99999"));
  EXPECT_EQ(link.b, *r->topology.Find("core"));
  // Written core -> peer: that is the stored link's reverse direction.
  EXPECT_EQ(set.reverse.loss, 0.01);
  EXPECT_FALSE(set.forward.loss.has_value());
}

TEST(ParseExperiment, HundredThousandNodeBarabasiAlbert) {
  const std::string text = R"(
name: big
duration: 1h
topology:
  generate:
    - {model: barabasi-albert, n: 100000, m: 2, prefix: as, link: {rate: 100mbit, delay: 5ms}}
)";
  const auto start = std::chrono::steady_clock::now();
  auto r = ParseExperiment(text, "ba.yaml");
  const auto elapsed = std::chrono::steady_clock::now() - start;
  ASSERT_TRUE(r.ok()) << r.status().message();
  RecordProperty("parse_ms", std::to_string(elapsed / 1ms));
  EXPECT_EQ(r->topology.num_vnodes(), 100'000u);
  EXPECT_GE(r->topology.num_links(), 199'990u);
}

TEST(LoadExperiment, MissingFileIsNotFound) {
  auto r = LoadExperiment(TestData() + "/does-not-exist.yaml");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kNotFound);
}

TEST(ParseExperiment, DiagnosticsAreSortedByPosition) {
  // Links are checked after nodes, but reported in file order; the link's
  // reference to the broken vnode 'a' is not reported a second time.
  auto r = ParseExperiment(R"(name: s
duration: 1m
topology:
  links:
    - {endpoints: [a, zz]}
  nodes:
    a: {kind: nope}
    b: {resources: {cpu: 0}}
)",
                           "s.yaml");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message(),
            "s.yaml:5:23: endpoints: no vnode named 'zz'\n"
            "s.yaml:7:15: kind: unknown vnode kind 'nope'; expected one of host, router, switch\n"
            "s.yaml:8:26: cpu: must be greater than 0 cores, got '0'");
}

}  // namespace
}  // namespace gridemu::experiments

// The timeline of a run (timeline.h) and the single-pnode placement
// (placement_simple.h): pure planning, no I/O.
#include <gtest/gtest.h>

#include <map>
#include <set>

#include "gridemu/controller/placement_simple.h"
#include "gridemu/controller/timeline.h"
#include "gridemu/experiments/parse.h"

namespace gridemu::controller {
namespace {

using std::chrono::milliseconds;
using std::chrono::nanoseconds;
using std::chrono::seconds;

experiments::Experiment Parse(const std::string& yaml) {
  auto r = experiments::ParseExperiment(yaml, "t.yaml");
  EXPECT_TRUE(r.ok()) << r.status().ToString();
  return r.ok() ? *r : experiments::Experiment{};
}

const char* kSwarm = R"(
name: swarm
duration: 60s
seed: 42
topology:
  nodes:
    tracker: {}
    core: {kind: router}
  groups:
    peers: {count: 5, name: "peer{i}", link_to: core, link: {rate: 1mbit, delay: 10ms}}
  links:
    - {endpoints: [tracker, core], rate: 100mbit, delay: 1ms}
workload:
  - name: leech
    on: peers[1:]
    at: 5s
    stagger: 50ms
    run: echo leech
    wait: true
    timeout: 20s
  - name: tracker
    on: tracker
    run: echo tracker
  - name: seed
    on: peer0
    at: 2s
    argv: [echo, seed]
events:
  - {at: 30s, nodes: "peers[1:3]", action: kill}
  - {at: 10s, link: core--tracker, set: {loss: 5%}}
  - {at: 20s, link: tracker--core, down: true}
  - {at: 20s, link: tracker--core, up: true}
  - {at: 40s, churn: {group: peers, rate: 2/s, down_for: 3s, until: 50s}}
)";

TEST(OrchTimeline, TaskInstancesGetStaggeredStartTimesAndIds) {
  experiments::Experiment e = Parse(kSwarm);
  auto tl = BuildTimeline(e);
  ASSERT_TRUE(tl.ok()) << tl.status().ToString();
  ASSERT_EQ(tl->tasks.size(), 4u + 1u + 1u);
  EXPECT_EQ(tl->waited, 4u);
  EXPECT_EQ(tl->duration, seconds(60));
  std::map<std::string, const TaskInstance*> by_id;
  for (const auto& t : tl->tasks) by_id[t.task_id] = &t;
  for (int i = 0; i < 4; ++i) {
    const TaskInstance* t = by_id["leech/" + std::to_string(i)];
    ASSERT_NE(t, nullptr) << "leech/" << i;
    EXPECT_EQ(t->start, seconds(5) + milliseconds(50) * i);
    EXPECT_EQ(e.topology.vnode(t->vnode).name, "peer" + std::to_string(i + 1));
    EXPECT_EQ(t->index, static_cast<uint32_t>(i));
    EXPECT_TRUE(t->wait);
    ASSERT_TRUE(t->timeout.has_value());
    EXPECT_EQ(*t->timeout, seconds(20));
  }
  ASSERT_NE(by_id["tracker/0"], nullptr);
  EXPECT_EQ(by_id["tracker/0"]->start, nanoseconds(0));
  EXPECT_FALSE(by_id["tracker/0"]->wait);
  // Sorted by start: tracker (0s), seed (2s), then the leeches.
  EXPECT_EQ(tl->tasks[0].task_id, "tracker/0");
  EXPECT_EQ(tl->tasks[1].task_id, "seed/0");
  EXPECT_EQ(tl->tasks[2].task_id, "leech/0");
  EXPECT_EQ(tl->tasks[5].task_id, "leech/3");
  for (size_t i = 1; i < tl->tasks.size(); ++i) {
    EXPECT_LE(tl->tasks[i - 1].start, tl->tasks[i].start);
  }
}

TEST(OrchTimeline, EventsAreOrderedByTimeThenFileOrderAndChurnIsExpanded) {
  experiments::Experiment e = Parse(kSwarm);
  auto tl = BuildTimeline(e);
  ASSERT_TRUE(tl.ok()) << tl.status().ToString();
  ASSERT_GE(tl->events.size(), 5u);
  // Parser order (by at): 10s set, 20s down, 20s up, 30s kill, 40s churn.
  EXPECT_EQ(tl->events[0].event_id, "0");
  EXPECT_EQ(tl->events[0].kind, experiments::EventKind::kLinkSet);
  EXPECT_EQ(tl->events[0].at, seconds(10));
  EXPECT_EQ(tl->events[1].kind, experiments::EventKind::kLinkDown);
  EXPECT_EQ(tl->events[2].kind, experiments::EventKind::kLinkUp);
  EXPECT_EQ(tl->events[1].at, tl->events[2].at);
  EXPECT_EQ(tl->events[3].kind, experiments::EventKind::kNodeAction);
  EXPECT_EQ(tl->events[3].vnodes.size(), 2u);
  for (size_t i = 1; i < tl->events.size(); ++i) {
    EXPECT_LE(tl->events[i - 1].at, tl->events[i].at);
  }
  size_t churn = 0;
  for (const auto& a : tl->events) {
    if (!a.from_churn) continue;
    ++churn;
    EXPECT_EQ(a.event_index, 4u);
    EXPECT_EQ(a.event_id, "4." + std::to_string(a.step));
    EXPECT_GE(a.at, seconds(40));
    EXPECT_LT(a.at, seconds(60));
  }
  EXPECT_GT(churn, 0u);
}

TEST(OrchTimeline, ChurnIsDeterministicFromTheSeedAndConsistent) {
  experiments::Experiment e = Parse(kSwarm);
  const experiments::Event& ev = e.events.back();
  ASSERT_EQ(ev.kind, experiments::EventKind::kChurn);
  auto a = ExpandChurn(ev, 4, 42, seconds(60));
  auto b = ExpandChurn(ev, 4, 42, seconds(60));
  auto c = ExpandChurn(ev, 4, 43, seconds(60));
  ASSERT_TRUE(a.ok() && b.ok() && c.ok());
  ASSERT_EQ(a->size(), b->size());
  for (size_t i = 0; i < a->size(); ++i) {
    EXPECT_EQ((*a)[i].at, (*b)[i].at);
    EXPECT_EQ((*a)[i].vnodes, (*b)[i].vnodes);
    EXPECT_EQ((*a)[i].action, (*b)[i].action);
  }
  bool differs = a->size() != c->size();
  for (size_t i = 0; !differs && i < a->size(); ++i) {
    differs = (*a)[i].at != (*c)[i].at || (*a)[i].vnodes != (*c)[i].vnodes;
  }
  EXPECT_TRUE(differs) << "another seed should give another churn";

  // About rate * window failures (2/s over 10 s, capped by 5 members down 3 s each).
  size_t kills = 0;
  std::map<topology::VnodeId, nanoseconds> down_since;
  for (const auto& x : *a) {
    ASSERT_EQ(x.vnodes.size(), 1u);
    const topology::VnodeId v = x.vnodes[0];
    if (x.action == experiments::NodeAction::kKill) {
      ++kills;
      EXPECT_LT(x.at, seconds(50)) << "until: 50s";
      EXPECT_EQ(down_since.count(v), 0u) << "a member that is down is not killed again";
      down_since[v] = x.at;
    } else {
      ASSERT_EQ(x.action, experiments::NodeAction::kStart);
      ASSERT_EQ(down_since.count(v), 1u);
      EXPECT_EQ(x.at - down_since[v], seconds(3));
      down_since.erase(v);
    }
  }
  EXPECT_GE(kills, 3u);
  EXPECT_LE(kills, 20u);
  for (size_t i = 1; i < a->size(); ++i) EXPECT_LE((*a)[i - 1].at, (*a)[i].at);
  for (size_t i = 0; i < a->size(); ++i) EXPECT_EQ((*a)[i].step, i);
}

TEST(OrchTimeline, ChurnStartsAfterTheEndAreDroppedAndHugeChurnIsRefused) {
  experiments::Experiment e = Parse(kSwarm);
  experiments::Event ev = e.events.back();
  ev.churn.until.reset();
  ev.churn.down_for = seconds(30);
  auto a = ExpandChurn(ev, 4, 1, seconds(60));
  ASSERT_TRUE(a.ok());
  ASSERT_FALSE(a->empty());
  for (const auto& x : *a) {
    EXPECT_LT(x.at, seconds(60));
    // Every kill is at 40 s or later: its start (30 s later) is past the end.
    EXPECT_EQ(x.action, experiments::NodeAction::kKill);
  }
  ev.churn.rate_per_s = 1e6;
  ev.churn.down_for = milliseconds(1);
  auto big = ExpandChurn(ev, 4, 1, seconds(60), 1000);
  ASSERT_FALSE(big.ok());
  EXPECT_EQ(big.status().code(), StatusCode::kResourceExhausted);
  EXPECT_NE(big.status().message().find("churn of group 'peers'"), std::string::npos);
}

TEST(OrchTimeline, ApplyEventWireForm) {
  experiments::Experiment e = Parse(kSwarm);
  auto tl = BuildTimeline(e);
  ASSERT_TRUE(tl.ok());
  // Written as "core--tracker": the wire names the link as the topology does.
  v1::ApplyEvent set = ToApplyEvent(e, tl->events[0]);
  EXPECT_EQ(set.event_id(), "0");
  ASSERT_TRUE(set.has_link_set());
  EXPECT_EQ(set.link_set().link(), "tracker--core");
  EXPECT_EQ(set.link_set().forward().loss_ppm(), 50000u);
  EXPECT_EQ(set.link_set().reverse().loss_ppm(), 50000u);
  EXPECT_FALSE(set.link_set().forward().has_delay_ns()) << "only the named parameters";
  v1::ApplyEvent down = ToApplyEvent(e, tl->events[1]);
  ASSERT_TRUE(down.has_link_state());
  EXPECT_FALSE(down.link_state().up());
  EXPECT_TRUE(ToApplyEvent(e, tl->events[2]).link_state().up());
  v1::ApplyEvent kill = ToApplyEvent(e, tl->events[3]);
  ASSERT_TRUE(kill.has_node_action());
  EXPECT_EQ(kill.node_action().action(), "kill");
  ASSERT_EQ(kill.node_action().vnodes_size(), 2);
  EXPECT_EQ(kill.node_action().vnodes(0), "peer1");
  EXPECT_EQ(kill.node_action().vnodes(1), "peer2");
  v1::ApplyEvent part = ToApplyEvent(e, tl->events[3], {tl->events[3].vnodes[1]});
  ASSERT_EQ(part.node_action().vnodes_size(), 1);
  EXPECT_EQ(part.node_action().vnodes(0), "peer2");
  EXPECT_EQ(ActionKindName(tl->events[3]), "node-kill");
  EXPECT_EQ(ActionTarget(e, tl->events[3]), "peer1 peer2");
  EXPECT_EQ(ActionKindName(tl->events[0]), "link-set");
  EXPECT_EQ(ActionTarget(e, tl->events[0]), "tracker--core");
}

TEST(OrchTimeline, EndConditions) {
  // The duration is a hard stop.
  EXPECT_EQ(CheckEnd(seconds(60), seconds(60), 3, 0), EndReason::kDuration);
  EXPECT_EQ(CheckEnd(seconds(61), seconds(60), 0, 0), EndReason::kDuration);
  // Every waited instance ended.
  EXPECT_EQ(CheckEnd(seconds(5), seconds(60), 3, 3), EndReason::kWaitedTasksEnded);
  EXPECT_EQ(CheckEnd(seconds(5), seconds(60), 3, 2), EndReason::kNotYet);
  // Nothing waited for: only the duration ends the run.
  EXPECT_EQ(CheckEnd(seconds(5), seconds(60), 0, 0), EndReason::kNotYet);
  EXPECT_EQ(EndReasonText(EndReason::kWaitedTasksEnded), "every waited task ended");
}

TEST(OrchPlacement, SinglePnodePlacement) {
  experiments::Experiment e = Parse(kSwarm);
  SinglePnodePlacer placer;
  auto none = placer.Place(e, {});
  ASSERT_FALSE(none.ok());
  EXPECT_EQ(none.status().code(), StatusCode::kUnavailable);
  EXPECT_NE(none.status().message().find("no agent is registered"), std::string::npos);

  PnodeCandidate small{"small", 2, 1 << 30, 3, 0, {}};
  PnodeCandidate busy{"busy", 2, 1 << 30, 10, 8, {}};
  PnodeCandidate big{"big", 8, 1ull << 34, 100, 0, {"netns"}};
  auto p = placer.Place(e, {small, busy, big});
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  EXPECT_EQ(p->pnodes, std::vector<std::string>{"big"});
  EXPECT_EQ(p->pnode_of_vnode.size(), e.topology.num_vnodes());
  EXPECT_EQ(p->algorithm, "single-pnode");

  auto full = placer.Place(e, {small, busy});
  ASSERT_FALSE(full.ok());
  EXPECT_EQ(full.status().code(), StatusCode::kResourceExhausted);
  EXPECT_NE(full.status().message().find("small: room for 3 vnodes, 7 needed"), std::string::npos)
      << full.status().message();
  EXPECT_NE(full.status().message().find("busy: room for 2 vnodes"), std::string::npos);

  PnodeCandidate lxc_only{"lxc", 8, 1ull << 34, 100, 0, {"lxc"}};
  auto runtime = placer.Place(e, {lxc_only});
  ASSERT_FALSE(runtime.ok());
  EXPECT_NE(runtime.status().message().find("no 'netns' runtime"), std::string::npos);
}

}  // namespace
}  // namespace gridemu::controller

// The agent's logic without root (node-agent/testing fakes.h): ResolveShard,
// the ShardApplier's phases, a failure injected at every kernel call of a
// deploy rolling back to nothing, teardown, link and node events, adoption
// after a restart, the AgentCore + PnodeBackend conversation and its
// generation rules, and what `gridemu clean` takes (only what is provably
// gridemu's).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <set>

#include "gridemu/common/clock.h"
#include "gridemu/node-agent/agent_clean.h"
#include "gridemu/node-agent/agent_core.h"
#include "gridemu/node-agent/pnode_backend.h"
#include "gridemu/node-agent/shard_applier.h"
#include "gridemu/node-agent/shard_plan.h"
#include "gridemu/node-agent/testing/fakes.h"

namespace gridemu::agent {
namespace {

using ::testing::HasSubstr;
using testing::FakeKernel;
using testing::FakeLinkShaper;
using testing::FakePlumbing;
using testing::FakeRuntime;
using testing::MemoryShardRecords;
using namespace std::chrono_literals;

constexpr const char* kPrefix = "gt";

v1::LinkProfile Profile(uint64_t rate_bps, uint64_t delay_ns) {
  v1::LinkProfile p;
  if (rate_bps != 0) p.set_rate_bps(rate_bps);
  if (delay_ns != 0) p.set_delay_ns(delay_ns);
  return p;
}

v1::LinkSpec* AddLink(v1::DeployShard& s, const std::string& a, const std::string& ia,
                      const std::string& addr_a, const std::string& b, const std::string& ib,
                      const std::string& addr_b) {
  v1::LinkSpec* l = s.add_links();
  l->set_name(a + "--" + b);
  l->mutable_a()->set_vnode(a);
  l->mutable_a()->set_ifname(ia);
  l->mutable_a()->set_address(addr_a);
  l->mutable_b()->set_vnode(b);
  l->mutable_b()->set_ifname(ib);
  l->mutable_b()->set_address(addr_b);
  return l;
}

// Two hosts on a router, a third behind a switch, and one tunnel to another
// pnode: every kind of object an applier makes.
v1::DeployShard Shard() {
  v1::DeployShard s;
  s.set_experiment_id("e1");
  s.set_generation(1);
  for (const char* n : {"h1", "h2", "r", "sw", "h3"}) {
    v1::VnodeSpec* v = s.add_vnodes();
    v->set_name(n);
    v->set_kind(std::string(n) == "r" ? "router" : std::string(n) == "sw" ? "switch" : "host");
    v->set_forwarding(std::string(n) == "r");
    v->set_group_index(-1);
  }
  v1::LinkSpec* l = AddLink(s, "h1", "eth0", "10.0.0.0/31", "r", "eth0", "10.0.0.1/31");
  *l->mutable_forward() = Profile(10'000'000, 10'000'000);
  *l->mutable_reverse() = Profile(0, 10'000'000);
  l = AddLink(s, "h2", "eth0", "10.0.0.2/31", "r", "eth1", "10.0.0.3/31");
  *l->mutable_forward() = Profile(5'000'000, 0);  // a rate only: no delay-line rule
  l = AddLink(s, "sw", "eth0", "", "r", "eth2", "10.0.1.1/24");
  *l->mutable_forward() = Profile(0, 5'000'000);
  *l->mutable_reverse() = Profile(0, 5'000'000);
  AddLink(s, "h3", "eth0", "10.0.1.2/24", "sw", "eth1", "");  // not shaped
  l = AddLink(s, "h1", "eth1", "10.0.2.0/31", "far", "eth0", "10.0.2.1/31");
  l->mutable_tunnel()->set_vni(100);
  l->mutable_tunnel()->set_remote_address("192.0.2.9");
  l->mutable_tunnel()->set_local_end("a");
  *l->mutable_forward() = Profile(1'000'000, 20'000'000);
  *l->mutable_reverse() = Profile(1'000'000, 20'000'000);
  v1::BridgeSpec* b = s.add_bridges();
  b->set_vnode("sw");
  b->set_name("br0");
  b->add_ports("eth0");
  b->add_ports("eth1");
  auto route = [&](const char* v, const char* dst, const char* via, const char* dev) {
    v1::RouteSpec* r = s.add_routes();
    r->set_vnode(v);
    r->set_destination(dst);
    r->set_via(via);
    r->set_dev(dev);
  };
  route("h1", "default", "10.0.0.1", "eth0");
  route("h2", "default", "10.0.0.3", "eth0");
  route("h3", "default", "10.0.1.1", "eth0");
  for (const char* n : {"h1", "h2", "r", "sw", "h3"}) {
    v1::HostEntry* h = s.add_hosts();
    h->set_name(n);
    h->add_addresses("10.0.9.1");
  }
  return s;
}

ShardApplierOptions Options(bool overlap = true) {
  ShardApplierOptions o;
  o.prefix = kPrefix;
  o.local_address = "192.0.2.1";
  o.overlap_links = overlap;
  o.vnode_chunk = 2;  // several chunks, several link batches
  o.link_chunk = 2;
  o.default_output_dir = ::testing::TempDir() + "gridemu-logic-test-out";
  return o;
}

// One pnode's worth of fakes, and an applier over them.
struct Pnode {
  explicit Pnode(FakeKernel* k, MemoryShardRecords* records, bool overlap = true)
      : runtime(k, kPrefix), shaper(k), applier(testing::FakeApplierDeps(k, &runtime, &shaper,
                                                                          records),
                                                 Options(overlap)) {}
  FakeRuntime runtime;
  FakeLinkShaper shaper;
  ShardApplier applier;
};

std::string Errors(const std::vector<ShardObjectError>& errs) {
  std::string out;
  for (const auto& e : errs) out += e.object + ": " + e.message + "\n";
  return out;
}

// The position in the log of the first line containing `what` (-1 if none).
int Find(const std::vector<std::string>& log, const std::string& what, bool last = false) {
  int found = -1;
  for (size_t i = 0; i < log.size(); ++i) {
    if (log[i].find(what) != std::string::npos) {
      found = static_cast<int>(i);
      if (!last) break;
    }
  }
  return found;
}

// ---------------------------------------------------------------- ResolveShard

TEST(ResolveShard, TypedObjectsOnce) {
  ResolveOptions ro;
  ro.prefix = kPrefix;
  ro.local_address = "192.0.2.1";
  ro.shaping_backend = netshape::Backend::kUserspace;
  ro.capabilities.htb = ro.capabilities.nfqueue = ro.capabilities.iptables = true;
  ro.default_output_dir = "/out";
  Result<ShardPlan> p = ResolveShard(Shard(), ro);
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  ASSERT_EQ(p->vnodes.size(), 5u);
  EXPECT_EQ(p->vnodes[0].out_dir, "/out/e1/h1");
  EXPECT_EQ(p->vnodes[0].hosts->size(), 5u);
  EXPECT_EQ(p->vnodes[0].hosts.get(), p->vnodes[4].hosts.get()) << "one shared table";
  EXPECT_TRUE(p->roles[2].forwarding);
  EXPECT_EQ(p->roles[3].kind, "switch");
  ASSERT_EQ(p->links.size(), 5u);
  const LinkPlan& l = p->links[0];
  EXPECT_EQ(l.tag, "gt:e1:h1--r");
  EXPECT_EQ(l.addr_a, "10.0.0.0");
  EXPECT_EQ(l.len_a, 31);
  EXPECT_EQ(l.forward.delay, 10ms);
  EXPECT_EQ(*l.forward.rate_bps, 10'000'000u);
  EXPECT_EQ(l.forward_tag, "e1:h1--r:fwd");
  EXPECT_EQ(l.Half(true), netshape::ShapeHalf::kBoth);
  EXPECT_EQ(l.objects(), 2u);
  EXPECT_EQ(p->links[3].objects(), 1u);  // h3--sw: not shaped
  const LinkPlan& t = p->links[4];
  ASSERT_TRUE(t.tunnel.has_value());
  EXPECT_EQ(t.tunnel->vni, 100u);
  EXPECT_TRUE(t.has_a());
  EXPECT_FALSE(t.has_b());
  EXPECT_EQ(t.Half(true), netshape::ShapeHalf::kSenderOnly);  // h1 sends the forward
  EXPECT_EQ(t.Half(false), netshape::ShapeHalf::kReceiverOnly);
  ASSERT_EQ(p->routes.size(), 3u);
  EXPECT_EQ(p->routes[0].dst, "0.0.0.0");
  EXPECT_EQ(p->routes[0].prefix_len, 0);
  EXPECT_EQ(p->routes[0].gateway, "10.0.0.1");
  EXPECT_EQ(p->RoutesVia("h2", "eth0").size(), 1u);
  EXPECT_EQ(p->bridges[0].tag, "gt:e1:sw/br0");
  EXPECT_EQ(p->objects(), 5u + 5u + 4u);
  EXPECT_EQ(p->source.experiment_id(), "e1");
}

// GRIDEMU_ADDR is a vnode's primary address (its hosts entry's first), GRIDEMU_ADDRS
// every address; a vnode without an address gets neither.
TEST(ResolveShard, EachVnodeKnowsItsAddresses) {
  v1::DeployShard s = Shard();
  s.mutable_hosts(2)->add_addresses("10.0.9.7");  // r
  s.mutable_hosts()->DeleteSubrange(3, 1);        // sw
  ResolveOptions ro;
  ro.prefix = kPrefix;
  ro.local_address = "192.0.2.1";
  ro.shaping_backend = netshape::Backend::kUserspace;
  ro.capabilities.htb = ro.capabilities.nfqueue = ro.capabilities.iptables = true;
  Result<ShardPlan> p = ResolveShard(s, ro);
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  auto env = [&](size_t i, const std::string& name) -> std::string {
    for (const auto& [k, v] : p->vnodes[i].env) {
      if (k == name) return v;
    }
    return "<unset>";
  };
  EXPECT_EQ(env(0, "GRIDEMU_ADDR"), "10.0.9.1");
  EXPECT_EQ(env(0, "GRIDEMU_ADDRS"), "10.0.9.1");
  EXPECT_EQ(env(2, "GRIDEMU_ADDR"), "10.0.9.1");
  EXPECT_EQ(env(2, "GRIDEMU_ADDRS"), "10.0.9.1 10.0.9.7");
  EXPECT_EQ(env(3, "GRIDEMU_ADDR"), "<unset>");
  EXPECT_EQ(env(3, "GRIDEMU_ADDRS"), "<unset>");
}

TEST(ResolveShard, EveryProblemAtOnceAndNothingResolved) {
  ResolveOptions ro;  // no shaping backend, no underlay address
  v1::DeployShard s = Shard();
  s.mutable_vnodes(1)->set_name("bad name");
  std::vector<ShardObjectError> errors;
  Result<ShardPlan> p = ResolveShard(s, ro, &errors);
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.status().code(), StatusCode::kInvalidArgument);
  const std::string all = Errors(errors);
  EXPECT_THAT(all, HasSubstr("vnode bad name:"));
  EXPECT_THAT(all, HasSubstr("link h1--r: forward: no shaping backend works on this pnode"));
  EXPECT_THAT(all, HasSubstr("link h1--far: tunnel: this pnode has no underlay address"));
  EXPECT_THAT(p.status().message(), HasSubstr("more problems"));
}

// ---------------------------------------------------------------- the applier

TEST(ShardApplierLogic, DeploysInPhasesAndTearsDownToNothing) {
  FakeKernel k;
  MemoryShardRecords records(&k);
  Pnode pn(&k, &records);
  std::vector<uint32_t> progress;
  DeployReport rep =
      pn.applier.Deploy(Shard(), [&](uint32_t done, uint32_t) { progress.push_back(done); });
  ASSERT_TRUE(rep.ok) << Errors(rep.errors) << k.Dump();
  EXPECT_EQ(rep.total, 14u);
  EXPECT_EQ(rep.done, 14u);
  ASSERT_FALSE(progress.empty());
  EXPECT_EQ(progress.front(), 0u);
  EXPECT_EQ(progress.back(), 14u);
  EXPECT_TRUE(std::is_sorted(progress.begin(), progress.end()));

  // Phases: record, wire namespace, vnodes and links, LAN and routes, record.
  const std::vector<std::string> log = k.log();
  EXPECT_THAT(log.front(), HasSubstr("record shard e1"));
  EXPECT_THAT(log[1], HasSubstr("record phase e1 deploying"));
  EXPECT_THAT(log[2], HasSubstr("create vnode e1/_wire"));
  EXPECT_THAT(log[3], HasSubstr("sysctl /fake/netns/gt-e1-_wire net.bridge.bridge-nf-call-iptables"));
  EXPECT_THAT(log.back(), HasSubstr("record phase e1 ready"));
  const int last_link = std::max(Find(log, " veth ", true), Find(log, "vxlan move", true));
  const int lan = Find(log, "bridge /fake/netns/gt-e1-sw:br0");
  EXPECT_LT(last_link, lan);
  EXPECT_LT(lan, Find(log, " forwarding "));
  EXPECT_LT(Find(log, " forwarding "), Find(log, " route "));
  // Each veth comes after its vnode, and its shaping after it.
  EXPECT_LT(Find(log, "create vnode e1/r"), Find(log, "/fake/netns/gt-e1-r:eth0"));
  EXPECT_LT(Find(log, "/fake/netns/gt-e1-h1:eth0"), Find(log, "shape e1:h1--r:fwd"));
  EXPECT_LT(Find(log, "bridge /fake/netns/gt-e1-_wire:l0"), Find(log, "shape e1:h1--r:fwd"));

  // The wire namespace: a bridge per link that impairs (h1--r, sw--r, h1--far; not the
  // rate-only h2--r nor the plain h3--sw), its group the link's index + 1, and the
  // delay-line rules of every direction received here.
  const std::string wire = "/fake/netns/gt-e1-_wire";
  const FakeKernel::Netns w = k.GetNetns(wire);
  EXPECT_EQ(w.sysctls.at("net.bridge.bridge-nf-call-iptables"), "1");
  EXPECT_EQ(w.sysctls.at("net.bridge.bridge-nf-call-ip6tables"), "1");
  for (const char* b : {"l0", "l2", "l4"}) {
    ASSERT_EQ(w.devices.count(b), 1u) << b << "\n" << k.Dump();
    EXPECT_EQ(w.devices.at(b).kind, "bridge");
  }
  EXPECT_EQ(w.devices.count("l1"), 0u);
  EXPECT_EQ(w.devices.count("l3"), 0u);
  EXPECT_EQ(w.devices.at("l0").group, 1u);
  EXPECT_EQ(w.devices.at("l4").group, 5u);
  EXPECT_EQ(w.devices.at("l0a").master, "l0");
  EXPECT_EQ(w.devices.at("l0a").peer, "eth0");
  EXPECT_EQ(w.devices.at("l0b").peer_ns, "/fake/netns/gt-e1-r");
  EXPECT_EQ(w.devices.at("l4x").kind, "vxlan") << "the tunnel's remote side";
  EXPECT_EQ(w.devices.at("l4x").vni, 100u);
  EXPECT_EQ(w.devices.at("l4x").master, "l4");
  EXPECT_EQ(w.devices.at("l4a").mtu, 1450u);
  // Every wire port has an interface index no vnode end has, so that the kernel brings
  // its carrier (and the bridge port) up at once (VethSpec::ifindex_a).
  EXPECT_EQ(w.devices.at("l0a").ifindex, kPortIfindexBase);
  EXPECT_EQ(w.devices.at("l0b").ifindex, kPortIfindexBase + 1);
  EXPECT_EQ(w.devices.at("l4a").ifindex, kPortIfindexBase + 8);
  EXPECT_EQ(w.rules, (std::set<std::string>{"e1:h1--far:rev", "e1:h1--r:fwd", "e1:h1--r:rev",
                                            "e1:sw--r:fwd", "e1:sw--r:rev"}))
      << "the tunnel's forward is sent from here: its receiver half is the other pnode's";

  // The vnodes.
  const FakeKernel::Netns h1 = k.GetNetns("/fake/netns/gt-e1-h1");
  ASSERT_EQ(h1.devices.count("eth0"), 1u);
  EXPECT_EQ(h1.devices.at("eth0").tag, "gt:e1:h1--r");
  EXPECT_EQ(h1.devices.at("eth0").addresses, std::vector<std::string>{"10.0.0.0/31"});
  EXPECT_EQ(h1.devices.at("eth0").peer_ns, wire);
  ASSERT_EQ(h1.devices.count("eth1"), 1u);
  EXPECT_EQ(h1.devices.at("eth1").peer, "l4a");
  EXPECT_EQ(h1.qdiscs.at("eth0"), "e1:h1--r:fwd");
  EXPECT_EQ(h1.qdiscs.at("eth1"), "e1:h1--far:fwd");  // the tunnel's sender half
  EXPECT_TRUE(h1.rules.empty()) << "nothing is held where the receiver stamps packets";
  EXPECT_EQ(h1.routes, std::vector<std::string>{"0.0.0.0/0 via 10.0.0.1 dev eth0"});
  const FakeKernel::Netns r = k.GetNetns("/fake/netns/gt-e1-r");
  EXPECT_TRUE(r.forwarding);
  // r sends h1--r's and sw--r's reverse (h2--r has no reverse profile).
  EXPECT_EQ(r.qdiscs, (std::map<std::string, std::string>{{"eth0", "e1:h1--r:rev"},
                                                          {"eth2", "e1:sw--r:rev"}}));
  EXPECT_TRUE(r.rules.empty());
  EXPECT_EQ(r.devices.at("eth1").peer_ns, "/fake/netns/gt-e1-h2") << "h2--r: a direct veth";
  EXPECT_EQ(k.GetNetns("/fake/netns/gt-e1-sw").devices.at("eth1").master, "br0");
  // So has the switch's port on the direct veth h3--sw (link 3).
  EXPECT_EQ(k.GetNetns("/fake/netns/gt-e1-sw").devices.at("eth1").ifindex, kPortIfindexBase + 3);
  EXPECT_EQ(k.GetNetns("/fake/netns/gt-e1-h3").devices.at("eth0").ifindex, 0u);
  EXPECT_EQ(*pn.applier.Generation("e1"), 1u);
  EXPECT_EQ(records.ReadPhase("e1")->phase, "ready");

  // Deploying it again does nothing.
  const uint64_t calls = k.calls();
  DeployReport again = pn.applier.Deploy(Shard());
  EXPECT_TRUE(again.ok && again.already_deployed);
  EXPECT_EQ(k.calls(), calls);

  TeardownReport td = pn.applier.Teardown("e1");
  EXPECT_TRUE(td.errors.empty()) << Errors(td.errors);
  EXPECT_EQ(td.vnodes_removed, 5u);
  EXPECT_TRUE(k.Empty()) << k.Dump();
  EXPECT_TRUE(records.empty());
  EXPECT_TRUE(pn.applier.Experiments().empty());
}

class EveryCall : public ::testing::TestWithParam<bool> {};

// The acceptance of issue 10: whichever kernel call of a deploy fails, the
// deploy fails, names the phase, and leaves no record and no object.
TEST_P(EveryCall, AFailureAtEveryKernelCallOfADeployLeavesNothing) {
  const bool overlap = GetParam();
  uint64_t calls = 0;
  {
    FakeKernel k;
    MemoryShardRecords records(&k);
    Pnode pn(&k, &records, overlap);
    ASSERT_TRUE(pn.applier.Deploy(Shard()).ok);
    calls = k.calls();
  }
  ASSERT_GE(calls, 33u);  // records, vnodes, devices, addresses, shaping, LAN, routes
  std::set<std::string> phases;
  for (uint64_t n = 1; n <= calls; ++n) {
    FakeKernel k;
    MemoryShardRecords records(&k);
    Pnode pn(&k, &records, overlap);
    k.FailAt(n);
    DeployReport rep = pn.applier.Deploy(Shard());
    ASSERT_FALSE(rep.ok) << "call " << n << " failed and the deploy succeeded";
    ASSERT_FALSE(rep.errors.empty());
    EXPECT_THAT(Errors(rep.errors), HasSubstr("injected failure at call " + std::to_string(n)));
    EXPECT_TRUE(k.Empty()) << "after a failure at call " << n << ":\n" << k.Dump();
    EXPECT_TRUE(records.empty()) << "call " << n;
    EXPECT_TRUE(pn.applier.Experiments().empty()) << "call " << n;
    const std::string& first = rep.errors.front().object;
    phases.insert(first.rfind("vnode ", 0) == 0 ? "vnode" : first);
  }
  EXPECT_EQ(phases, (std::set<std::string>{"record", "vnode", "links", "shaping", "routes"}));
}

INSTANTIATE_TEST_SUITE_P(Overlap, EveryCall, ::testing::Bool(),
                         [](const auto& i) { return i.param ? "overlap" : "sequential"; });

TEST(ShardApplierLogic, LinkEventsChangeInPlaceAndRestoreRoutes) {
  FakeKernel k;
  MemoryShardRecords records(&k);
  Pnode pn(&k, &records);
  ASSERT_TRUE(pn.applier.Deploy(Shard()).ok);
  const size_t qdiscs = k.GetNetns("/fake/netns/gt-e1-h1").qdiscs.size();

  // A changed delay: the direction is changed in place, no new qdisc.
  v1::ApplyEvent set;
  set.mutable_link_set()->set_link("h1--r");
  *set.mutable_link_set()->mutable_forward() = Profile(0, 20'000'000);
  ASSERT_TRUE(pn.applier.ApplyEvent("e1", set).ok());
  EXPECT_THAT(k.log().back(), HasSubstr("change shaping e1:h1--r:fwd"));
  EXPECT_EQ(k.GetNetns("/fake/netns/gt-e1-h1").qdiscs.size(), qdiscs);
  // A profile on a link that had none shapes it now: a rate on the direct veth h3--sw.
  v1::ApplyEvent first;
  first.mutable_link_set()->set_link("h3--sw");
  *first.mutable_link_set()->mutable_reverse() = Profile(3'000'000, 0);
  ASSERT_TRUE(pn.applier.ApplyEvent("e1", first).ok());
  EXPECT_EQ(k.GetNetns("/fake/netns/gt-e1-sw").qdiscs.at("eth1"), "e1:h3--sw:rev");
  // A delay there would be held where h3's kernel stamps packets: refused, since the
  // link was not deployed through the wire namespace (its LinkSpec is not reshaped).
  v1::ApplyEvent delay;
  delay.mutable_link_set()->set_link("h3--sw");
  *delay.mutable_link_set()->mutable_reverse() = Profile(0, 3'000'000);
  Status refused = pn.applier.ApplyEvent("e1", delay);
  EXPECT_EQ(refused.code(), StatusCode::kFailedPrecondition);
  EXPECT_THAT(refused.message(), HasSubstr("reshaped"));

  // Down takes both ends down (and the kernel its routes); up puts them back.
  v1::ApplyEvent down;
  down.mutable_link_state()->set_link("h2--r");
  down.mutable_link_state()->set_up(false);
  ASSERT_TRUE(pn.applier.ApplyEvent("e1", down).ok());
  EXPECT_FALSE(k.GetNetns("/fake/netns/gt-e1-h2").devices.at("eth0").up);
  EXPECT_FALSE(k.GetNetns("/fake/netns/gt-e1-r").devices.at("eth1").up);
  EXPECT_TRUE(k.GetNetns("/fake/netns/gt-e1-h2").routes.empty());
  v1::ApplyEvent up = down;
  up.mutable_link_state()->set_up(true);
  ASSERT_TRUE(pn.applier.ApplyEvent("e1", up).ok());
  EXPECT_TRUE(k.GetNetns("/fake/netns/gt-e1-h2").devices.at("eth0").up);
  EXPECT_EQ(k.GetNetns("/fake/netns/gt-e1-h2").routes,
            std::vector<std::string>{"0.0.0.0/0 via 10.0.0.3 dev eth0"});

  // Unknown names are refused before anything is done.
  v1::ApplyEvent ghost = down;
  ghost.mutable_link_state()->set_link("h9--r");
  EXPECT_EQ(pn.applier.CheckEvent("e1", ghost).code(), StatusCode::kNotFound);
  // The counters of every shaped direction.
  EXPECT_EQ(pn.applier.CollectMetrics("e1").links_size(), 8);
}

// A link the timeline reshapes (LinkSpec.reshaped) runs through the wire namespace even
// with no profile in the file, so that a delay set later holds its packets there.
TEST(ShardApplierLogic, AReshapedLinkIsDeployedThroughTheWire) {
  FakeKernel k;
  MemoryShardRecords records(&k);
  Pnode pn(&k, &records);
  v1::DeployShard shard = Shard();
  for (v1::LinkSpec& l : *shard.mutable_links()) {
    if (l.name() == "h3--sw") l.set_reshaped(true);
  }
  ASSERT_TRUE(pn.applier.Deploy(shard).ok) << k.Dump();
  const FakeKernel::Netns w = k.GetNetns("/fake/netns/gt-e1-_wire");
  ASSERT_EQ(w.devices.count("l3"), 1u) << k.Dump();
  EXPECT_EQ(w.devices.at("l3").kind, "bridge");
  EXPECT_EQ(k.GetNetns("/fake/netns/gt-e1-h3").devices.at("eth0").peer_ns,
            "/fake/netns/gt-e1-_wire");
  EXPECT_FALSE(w.rules.count("e1:h3--sw:rev")) << "no profile yet: nothing held";
  v1::ApplyEvent delay;
  delay.mutable_link_set()->set_link("h3--sw");
  *delay.mutable_link_set()->mutable_reverse() = Profile(0, 3'000'000);
  ASSERT_TRUE(pn.applier.ApplyEvent("e1", delay).ok());
  EXPECT_TRUE(k.GetNetns("/fake/netns/gt-e1-_wire").rules.count("e1:h3--sw:rev"))
      << "the delay line holds the reverse direction in the wire namespace";
  EXPECT_TRUE(k.GetNetns("/fake/netns/gt-e1-h3").rules.empty());
}

TEST(ShardApplierLogic, NodeEventsGoToTheRuntime) {
  FakeKernel k;
  MemoryShardRecords records(&k);
  Pnode pn(&k, &records);
  ASSERT_TRUE(pn.applier.Deploy(Shard()).ok);
  auto act = [&](const char* action, const char* vnode) {
    v1::ApplyEvent ev;
    ev.mutable_node_action()->set_action(action);
    ev.mutable_node_action()->add_vnodes(vnode);
    return pn.applier.ApplyEvent("e1", ev);
  };
  auto state = [&](const char* v) { return k.vnodes().at(VnodeRef{"e1", v}).state; };
  ASSERT_TRUE(act("stop", "h2").ok());
  EXPECT_EQ(state("h2"), VnodeState::kStopped);
  ASSERT_TRUE(act("start", "h2").ok());
  EXPECT_EQ(state("h2"), VnodeState::kRunning);
  ASSERT_TRUE(act("freeze", "h3").ok());
  EXPECT_EQ(state("h3"), VnodeState::kFrozen);
  ASSERT_TRUE(act("thaw", "h3").ok());
  EXPECT_EQ(state("h3"), VnodeState::kRunning);
  ASSERT_TRUE(act("kill", "h1").ok());
  EXPECT_EQ(state("h1"), VnodeState::kStopped);
  ASSERT_TRUE(act("start", "h3").ok()) << "starting a running vnode changes nothing";
  EXPECT_EQ(state("h3"), VnodeState::kRunning);
  EXPECT_THAT(std::string(act("explode", "h3").message()), HasSubstr("expected kill, stop"));
}

TEST(ShardApplierLogic, ARestartedAgentAdoptsAndShapesAgain) {
  FakeKernel k;
  MemoryShardRecords records(&k);
  std::string shaping_before;
  {
    Pnode first(&k, &records);
    ASSERT_TRUE(first.applier.Deploy(Shard()).ok);
    shaping_before = k.Dump();
    first.shaper.Crash();  // the process dies: its shaping stays in the kernel
  }
  EXPECT_EQ(k.Dump(), shaping_before) << "a crash leaves everything";
  Pnode second(&k, &records);
  Result<std::vector<HeldExperiment>> held = second.applier.FindHeld();
  ASSERT_TRUE(held.ok());
  ASSERT_EQ(held->size(), 1u);
  EXPECT_EQ((*held)[0].experiment, "e1");
  EXPECT_EQ((*held)[0].vnodes, 5u);
  EXPECT_TRUE((*held)[0].complete);
  EXPECT_FALSE((*held)[0].live);
  ASSERT_TRUE(second.applier.Adopt("e1").ok());
  EXPECT_EQ(k.Dump(), shaping_before) << "the leftover shaping removed and made again";
  EXPECT_GE(Find(k.log(), "remove leftover rules"), 0);
  EXPECT_EQ(*second.applier.Generation("e1"), 1u);
  EXPECT_TRUE(second.applier.HasVnode("e1", "h3"));
  EXPECT_TRUE(second.applier.Teardown("e1").errors.empty());
  EXPECT_TRUE(k.Empty()) << k.Dump();
}

TEST(ShardApplierLogic, AnUnfinishedDeployIsNotAdopted) {
  FakeKernel k;
  MemoryShardRecords records(&k);
  {
    Pnode first(&k, &records);
    ASSERT_TRUE(first.applier.Deploy(Shard()).ok);
    ASSERT_TRUE(records.WritePhase("e1", ShardPhase{"deploying", 1}).ok());  // as if cut short
    first.shaper.Crash();
  }
  Pnode second(&k, &records);
  EXPECT_FALSE((*second.applier.FindHeld())[0].complete);
  EXPECT_EQ(second.applier.Adopt("e1").code(), StatusCode::kFailedPrecondition);
  EXPECT_TRUE(second.applier.Teardown("e1").errors.empty());
  EXPECT_TRUE(k.Empty()) << k.Dump();
  EXPECT_TRUE(records.empty());
}

// ---------------------------------------------------------------- the real agent's logic

// The bytes an AgentCore sends, parsed.
class CapturingWire final : public Wire {
 public:
  void Send(std::string_view bytes) override {
    v1::Envelope e;
    ASSERT_TRUE(e.ParseFromArray(bytes.data(), static_cast<int>(bytes.size())));
    sent.push_back(e);
  }
  std::vector<v1::Envelope> Take() { return std::exchange(sent, {}); }
  std::vector<v1::Envelope> sent;
};

// AgentCore + PnodeBackend + ShardApplier on the fakes, jobs inline.
struct FakeAgent {
  FakeAgent(FakeKernel* k, MemoryShardRecords* records)
      : pnode(k, records),
        backend(&pnode.runtime, &pnode.applier, BackendOptions()),
        core(CoreOpts(), &backend, &wire) {
    core.Start(AgentClock::now());
  }
  static PnodeBackendOptions BackendOptions() {
    PnodeBackendOptions o;
    o.inline_jobs = true;
    o.active_shaping_backend = "userspace";
    return o;
  }
  static CoreOptions CoreOpts() {
    CoreOptions o;
    o.host_id = "pn1";
    o.log = false;
    return o;
  }
  void Send(const v1::Envelope& e) { core.OnMessage(e.SerializeAsString()); }
  v1::Envelope Hello() {
    core.Tick(AgentClock::now());
    for (const v1::Envelope& e : wire.Take()) {
      if (e.has_agent_hello()) return e;
    }
    ADD_FAILURE() << "no AgentHello";
    return {};
  }
  void Welcome(const std::vector<std::string>& keep = {}) {
    v1::Envelope w;
    w.mutable_welcome()->set_heartbeat_interval_ms(1000);
    for (const std::string& e : keep) {
      v1::ExperimentHeld* h = w.mutable_welcome()->add_keep();
      h->set_experiment_id(e);
      h->set_generation(1);
    }
    Send(w);
  }
  Pnode pnode;
  PnodeBackend backend;
  CapturingWire wire;
  AgentCore core;
};

v1::Envelope Request(uint64_t id, uint64_t gen) {
  v1::Envelope e;
  e.set_request_id(id);
  e.set_experiment_id("e1");
  e.set_generation(gen);
  return e;
}

TEST(PnodeAgentLogic, ConversationAndGenerationRules) {
  FakeKernel k;
  MemoryShardRecords records(&k);
  FakeAgent a(&k, &records);
  EXPECT_EQ(a.Hello().agent_hello().host_id(), "pn1");
  a.Welcome();
  a.wire.Take();

  v1::Envelope deploy = Request(1, 1);
  *deploy.mutable_deploy_shard() = Shard();
  a.Send(deploy);
  std::vector<v1::Envelope> out = a.wire.Take();
  ASSERT_FALSE(out.empty());
  EXPECT_EQ(out.back().shard_status().phase(), v1::ShardStatus::PHASE_READY)
      << out.back().ShortDebugString();
  EXPECT_EQ(out.back().request_id(), 1u);
  // The same request: the same answer, nothing done again.
  const uint64_t calls = k.calls();
  a.Send(deploy);
  out = a.wire.Take();
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].shard_status().phase(), v1::ShardStatus::PHASE_READY);
  EXPECT_EQ(k.calls(), calls);
  // Another request at the same generation: READY again; a newer one: refused.
  deploy.set_request_id(2);
  a.Send(deploy);
  EXPECT_EQ(a.wire.Take().back().shard_status().phase(), v1::ShardStatus::PHASE_READY);
  deploy.set_request_id(3);
  deploy.set_generation(2);
  deploy.mutable_deploy_shard()->set_generation(2);
  a.Send(deploy);
  EXPECT_EQ(a.wire.Take().back().error().code(), "unimplemented");
  // Another generation: refused.
  v1::Envelope exec = Request(5, 1);
  exec.mutable_exec()->set_task_id("t/0");
  exec.mutable_exec()->set_vnode("h1");
  exec.mutable_exec()->set_shell("sleep 60");
  v1::Envelope stale = exec;
  stale.set_request_id(6);
  stale.set_generation(7);
  a.Send(stale);
  EXPECT_EQ(a.wire.Take().back().error().code(), "failed precondition");

  // A task: STARTED, then EXITED when killed.
  a.Send(exec);
  out = a.wire.Take();
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].task_event().state(), v1::TaskEvent::STATE_STARTED);
  EXPECT_THAT(out[0].task_event().stdout_path(), HasSubstr("/e1/h1/t_0.stdout"));
  EXPECT_EQ(a.pnode.runtime.tasks().begin()->second.shell_command, "sleep 60");
  v1::Envelope dup = exec;
  dup.set_request_id(7);
  a.Send(dup);
  EXPECT_EQ(a.wire.Take().back().error().code(), "already exists");
  v1::Envelope kill = Request(8, 1);
  kill.mutable_signal()->set_task_id("t/0");
  kill.mutable_signal()->set_signal("kill");
  a.Send(kill);
  out = a.wire.Take();
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].task_event().state(), v1::TaskEvent::STATE_EXITED);
  EXPECT_EQ(out[0].task_event().reason(), "signalled");
  EXPECT_EQ(out[0].request_id(), 5u) << "a task's events answer its Exec";

  // Teardown: TornDown, nothing left.
  v1::Envelope td = Request(9, 1);
  td.mutable_teardown()->set_experiment_id("e1");
  a.Send(td);
  out = a.wire.Take();
  ASSERT_FALSE(out.empty());
  EXPECT_EQ(out.back().torn_down().vnodes_removed(), 5u);
  EXPECT_TRUE(k.Empty()) << k.Dump();
}

TEST(PnodeAgentLogic, AfterARestartTheWelcomeDecidesAdoptOrRemove) {
  for (const bool keep : {true, false}) {
    FakeKernel k;
    MemoryShardRecords records(&k);
    {
      FakeAgent before(&k, &records);
      before.Hello();
      before.Welcome();
      v1::Envelope deploy = Request(1, 1);
      *deploy.mutable_deploy_shard() = Shard();
      before.Send(deploy);
      before.pnode.shaper.Crash();
    }
    FakeAgent after(&k, &records);
    v1::Envelope hello = after.Hello();
    ASSERT_EQ(hello.agent_hello().held_size(), 1);
    EXPECT_EQ(hello.agent_hello().held(0).experiment_id(), "e1");
    EXPECT_EQ(hello.agent_hello().held(0).vnodes(), 5u);
    after.Welcome(keep ? std::vector<std::string>{"e1"} : std::vector<std::string>{});
    std::vector<v1::Envelope> out = after.wire.Take();
    ASSERT_EQ(out.size(), 1u);
    EXPECT_EQ(out[0].request_id(), 0u) << "unsolicited";
    if (keep) {
      EXPECT_EQ(out[0].shard_status().phase(), v1::ShardStatus::PHASE_READY);
      EXPECT_EQ(*after.pnode.applier.Generation("e1"), 1u);
      EXPECT_FALSE(k.Empty());
    } else {
      EXPECT_EQ(out[0].torn_down().vnodes_removed(), 5u);
      EXPECT_TRUE(k.Empty()) << k.Dump();
      EXPECT_TRUE(records.empty());
    }
  }
}

// A deployed FakeAgent and helpers for its tasks.
struct ReadyAgent {
  ReadyAgent() : records(&k), a(&k, &records) {
    a.Hello();
    a.Welcome();
    v1::Envelope deploy = Request(1, 1);
    *deploy.mutable_deploy_shard() = Shard();
    a.Send(deploy);
    EXPECT_EQ(a.wire.Take().back().shard_status().phase(), v1::ShardStatus::PHASE_READY);
  }
  void Exec(uint64_t id, const std::string& task, const std::string& vnode, uint64_t grace_ms,
            uint64_t start_unix_ns = 0) {
    v1::Envelope x = Request(id, 1);
    x.mutable_exec()->set_task_id(task);
    x.mutable_exec()->set_vnode(vnode);
    x.mutable_exec()->set_shell("serve");
    x.mutable_exec()->set_stop_grace_ms(grace_ms);
    x.mutable_exec()->set_start_unix_ns(start_unix_ns);
    a.Send(x);
  }
  void Signal(uint64_t id, const std::string& task, const std::string& sig, uint64_t grace_ms) {
    v1::Envelope s = Request(id, 1);
    s.mutable_signal()->set_task_id(task);
    s.mutable_signal()->set_signal(sig);
    s.mutable_signal()->set_grace_ms(grace_ms);
    a.Send(s);
  }
  // What the agent sent, heartbeats left out.
  std::vector<v1::Envelope> Take() {
    std::vector<v1::Envelope> out;
    for (v1::Envelope& e : a.wire.Take()) {
      if (!e.has_heartbeat()) out.push_back(std::move(e));
    }
    return out;
  }
  // The states of the TaskEvents sent, in order.
  std::vector<v1::TaskEvent::State> States(const std::vector<v1::Envelope>& out) {
    std::vector<v1::TaskEvent::State> r;
    for (const v1::Envelope& e : out) {
      if (e.has_task_event()) r.push_back(e.task_event().state());
    }
    return r;
  }
  FakeKernel k;
  MemoryShardRecords records;
  FakeAgent a;
};

TEST(AgentCoreTasks, TermWithGraceIsFollowedByKillOnlyIfTheTaskStillRuns) {
  ReadyAgent r;
  r.a.pnode.runtime.set_ignore_term(true);
  r.Exec(2, "stubborn/0", "h1", 500);
  EXPECT_EQ(r.States(r.Take()), (std::vector{v1::TaskEvent::STATE_STARTED}));
  const auto t0 = AgentClock::now();
  r.Signal(3, "stubborn/0", "term", 500);
  EXPECT_TRUE(r.States(r.Take()).empty()) << "it caught SIGTERM";
  r.a.core.Tick(t0 + 300ms);
  EXPECT_TRUE(r.States(r.Take()).empty()) << "still within its grace";
  r.a.core.Tick(t0 + 700ms);
  std::vector<v1::Envelope> out = r.Take();
  ASSERT_EQ(r.States(out), (std::vector{v1::TaskEvent::STATE_EXITED}));
  const auto sigs = r.a.pnode.runtime.signals();
  ASSERT_EQ(sigs.size(), 2u);
  EXPECT_EQ(sigs[0].second, TaskSignal::kTerm);
  EXPECT_EQ(sigs[1].second, TaskSignal::kKill);

  // A task that ends on SIGTERM gets no SIGKILL.
  r.a.pnode.runtime.set_ignore_term(false);
  r.Exec(4, "polite/0", "h2", 500);
  r.Signal(5, "polite/0", "term", 500);
  EXPECT_EQ(r.States(r.Take()),
            (std::vector{v1::TaskEvent::STATE_STARTED, v1::TaskEvent::STATE_EXITED}));
  r.a.core.Tick(AgentClock::now() + 10s);
  EXPECT_EQ(r.a.pnode.runtime.signals().size(), 3u);
}

TEST(AgentCoreTasks, AStopActionWaitsForTheTasksGraceThenStopsTheVnode) {
  ReadyAgent r;
  r.a.pnode.runtime.set_ignore_term(true);
  r.Exec(2, "stubborn/0", "h1", 1000);
  r.a.pnode.runtime.set_ignore_term(false);
  r.Exec(3, "polite/0", "h1", 5000);
  r.Exec(4, "elsewhere/0", "h2", 1000);
  r.Take();
  const auto t0 = AgentClock::now();
  v1::Envelope stop = Request(5, 1);
  stop.mutable_apply_event()->set_event_id("ev7");
  stop.mutable_apply_event()->mutable_node_action()->set_action("stop");
  stop.mutable_apply_event()->mutable_node_action()->add_vnodes("h1");
  r.a.Send(stop);
  // SIGTERM to both tasks of h1; the polite one ended; h2's task untouched.
  std::vector<v1::Envelope> out = r.Take();
  ASSERT_EQ(r.States(out), (std::vector{v1::TaskEvent::STATE_EXITED}));
  EXPECT_EQ(out[0].task_event().task_id(), "polite/0");
  EXPECT_EQ(out[0].task_event().signal(), 15);
  EXPECT_EQ(r.k.vnodes().at(VnodeRef{"e1", "h1"}).state, VnodeState::kRunning);
  // The stubborn one has its grace (1 s; the polite one's longer grace does not
  // matter once it ended); then the vnode stops, which kills it, and EventApplied goes.
  r.a.core.Tick(t0 + 500ms);
  EXPECT_TRUE(r.Take().empty());
  r.a.core.Tick(t0 + 5500ms);
  out = r.Take();
  ASSERT_FALSE(out.empty());
  EXPECT_TRUE(out.back().has_event_applied()) << out.back().ShortDebugString();
  EXPECT_EQ(out.back().request_id(), 5u);
  EXPECT_EQ(out.back().event_applied().event_id(), "ev7");
  EXPECT_EQ(r.k.vnodes().at(VnodeRef{"e1", "h1"}).state, VnodeState::kStopped);
  EXPECT_EQ(r.States(out), (std::vector{v1::TaskEvent::STATE_EXITED}));
  EXPECT_EQ(r.k.vnodes().at(VnodeRef{"e1", "h2"}).state, VnodeState::kRunning);

  // Every task of a stopped vnode ended at once: EventApplied at once.
  r.Exec(6, "polite/1", "h2", 5000);
  r.Take();
  stop.set_request_id(8);
  stop.mutable_apply_event()->set_event_id("ev8");
  stop.mutable_apply_event()->mutable_node_action()->set_vnodes(0, "h2");
  r.a.Send(stop);
  out = r.Take();
  ASSERT_FALSE(out.empty());
  EXPECT_TRUE(out.back().has_event_applied());
  EXPECT_EQ(r.k.vnodes().at(VnodeRef{"e1", "h2"}).state, VnodeState::kStopped);
}

TEST(AgentCoreTasks, AnExecDueLaterStartsThenAndCanBeCancelled) {
  ReadyAgent r;
  const uint64_t in_10s = static_cast<uint64_t>(UnixNanosNow()) + 10'000'000'000ull;
  const auto t0 = AgentClock::now();
  r.Exec(2, "later/0", "h1", 0, in_10s);
  r.Exec(3, "cancelled/0", "h2", 0, in_10s);
  EXPECT_TRUE(r.Take().empty()) << "accepted; nothing to say until it starts";
  EXPECT_TRUE(r.a.pnode.runtime.tasks().empty());
  r.Signal(4, "cancelled/0", "kill", 0);
  std::vector<v1::Envelope> out = r.Take();
  ASSERT_EQ(r.States(out), (std::vector{v1::TaskEvent::STATE_EXITED}));
  EXPECT_EQ(out[0].task_event().reason(), "stopped before it started");
  EXPECT_EQ(out[0].request_id(), 3u);
  r.a.core.Tick(t0 + 9s);
  EXPECT_TRUE(r.a.pnode.runtime.tasks().empty());
  r.a.core.Tick(t0 + 10s + 50ms);
  out = r.Take();
  ASSERT_EQ(r.States(out), (std::vector{v1::TaskEvent::STATE_STARTED}));
  EXPECT_EQ(out[0].request_id(), 2u);
  ASSERT_EQ(r.a.pnode.runtime.tasks().size(), 1u) << "the cancelled one never ran";
  // The same Exec again (a retry) changes nothing.
  r.Exec(2, "later/0", "h1", 0, in_10s);
  EXPECT_EQ(r.a.pnode.runtime.tasks().size(), 1u);

  // A start due while its vnode is stopped fails then, as the task's end.
  const uint64_t in_1s = static_cast<uint64_t>(UnixNanosNow()) + 1'000'000'000ull;
  r.Exec(5, "down/0", "h3", 0, in_1s);
  v1::Envelope stop = Request(6, 1);
  stop.mutable_apply_event()->mutable_node_action()->set_action("kill");
  stop.mutable_apply_event()->mutable_node_action()->add_vnodes("h3");
  r.a.Send(stop);
  r.Take();
  r.a.core.Tick(AgentClock::now() + 2s);
  out = r.Take();
  ASSERT_EQ(r.States(out), (std::vector{v1::TaskEvent::STATE_FAILED_TO_START}));
  EXPECT_THAT(out[0].task_event().reason(), HasSubstr("stopped"));
}

// ---------------------------------------------------------------- gridemu clean

TEST(CleanLogic, TakesOnlyWhatIsProvablyGridemus) {
  FakeKernel k;
  MemoryShardRecords records(&k);
  {
    Pnode crashed(&k, &records);
    ASSERT_TRUE(crashed.applier.Deploy(Shard()).ok);
    crashed.shaper.Crash();
  }
  // Look-alikes: a namespace named like ours but of no recorded experiment,
  // and interfaces of another tool in the home namespace; and a leftover of
  // ours there (a tunnel device whose move never happened).
  k.AddForeignNetns("/fake/netns/gt-lookalike-x");
  k.AddForeignDevice("home", "other0", "other:thing");
  k.AddForeignDevice("home", "gtx0", "gtx:e1:not-ours");
  {
    std::lock_guard<std::mutex> l(k.mu());
    FakeKernel::Device d;
    d.kind = "vxlan";
    d.tag = "gt:e1:h1--far";
    k.ns_["home"].devices["gvx100"] = d;
  }
  FakeRuntime runtime(&k, kPrefix);
  FakePlumbing plumbing(&k);
  FakeLinkShaper shaper(&k);
  CleanDeps deps;
  deps.runtime = &runtime;
  deps.plumbing = &plumbing;
  deps.remove_qdisc = [&](const std::string& ns, const std::string& ifname) {
    return shaper.RemoveLeftoverQdisc(ns, ifname);
  };
  deps.remove_rules = [&](const std::string& ns, const std::string& tag) {
    return shaper.RemoveLeftoverRules(ns, tag);
  };
  deps.records = &records;
  deps.path_exists = [&](const std::string& path) { return k.HasNetns(path); };
  CleanOptions opt;
  opt.prefix = kPrefix;
  opt.netns_dir = "/fake/netns";

  opt.dry_run = true;
  const std::string before = k.Dump();
  Result<CleanReport> dry = CleanLeftovers(opt, deps);
  ASSERT_TRUE(dry.ok()) << dry.status().ToString();
  EXPECT_EQ(k.Dump(), before) << "a dry run removes nothing";
  std::string listed;
  for (const std::string& o : dry->objects) listed += o + "\n";
  EXPECT_THAT(listed, HasSubstr("netns gt-e1-h1"));
  EXPECT_THAT(listed, HasSubstr("interface gvx100 (gt:e1:h1--far, home namespace)"));
  EXPECT_THAT(listed, HasSubstr("record e1.shard"));
  EXPECT_THAT(listed, ::testing::Not(HasSubstr("lookalike")));
  EXPECT_THAT(listed, ::testing::Not(HasSubstr("other0")));
  EXPECT_THAT(listed, ::testing::Not(HasSubstr("gtx0")));

  opt.dry_run = false;
  Result<CleanReport> real = CleanLeftovers(opt, deps);
  ASSERT_TRUE(real.ok());
  EXPECT_TRUE(real->errors.empty()) << real->errors.front();
  EXPECT_TRUE(k.Empty()) << k.Dump();
  EXPECT_TRUE(records.empty());
  EXPECT_TRUE(k.HasNetns("/fake/netns/gt-lookalike-x")) << "a look-alike is never touched";
  EXPECT_EQ(k.GetNetns("home").devices.count("other0"), 1u);
  EXPECT_EQ(k.GetNetns("home").devices.count("gtx0"), 1u);
}

}  // namespace
}  // namespace gridemu::agent

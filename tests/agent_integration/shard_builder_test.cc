// BuildShards() and the LinkProfile <-> proto conversions (controller/shard_builder.h).
// Pure: no privileges, no kernel.
#include "gridemu/controller/shard_builder.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <set>

#include "gridemu/experiments/parse.h"
#include "gridemu/topology/addressing.h"

namespace gridemu::controller {
namespace {

using ::testing::HasSubstr;
using namespace std::chrono_literals;

experiments::Experiment Parse(const std::string& yaml) {
  Result<experiments::Experiment> e = experiments::ParseExperiment(yaml, "test.yaml");
  EXPECT_TRUE(e.ok()) << e.status().ToString();
  return e.ok() ? std::move(*e) : experiments::Experiment{};
}

const v1::LinkSpec* FindLink(const v1::DeployShard& s, const std::string& name) {
  for (const v1::LinkSpec& l : s.links()) {
    if (l.name() == name) return &l;
  }
  return nullptr;
}

TEST(LinkProfileProto, RoundTripsEveryField) {
  LinkProfile p;
  p.rate_bps = 10'000'000;
  p.delay = 20ms;
  p.jitter = 1500us;
  p.delay_distribution = DelayDistribution::kPareto;
  p.delay_correlation = 0.25;
  p.loss = 0.001;  // 0.1 %
  p.loss_correlation = 0.5;
  p.duplicate = 0.01;
  p.reorder = 0.02;
  p.reorder_gap = 5;
  p.corrupt = 0.000001;
  p.queue_packets = 100;
  v1::LinkProfile pp = LinkProfileToProto(p);
  EXPECT_EQ(pp.rate_bps(), 10'000'000u);
  EXPECT_EQ(pp.delay_ns(), 20'000'000u);
  EXPECT_EQ(pp.jitter_ns(), 1'500'000u);
  EXPECT_EQ(pp.delay_distribution(), "pareto");
  EXPECT_EQ(pp.loss_ppm(), 1000u);  // 0.1 % = 1,000 ppm
  EXPECT_EQ(pp.duplicate_ppm(), 10000u);
  EXPECT_EQ(pp.corrupt_ppm(), 1u);
  EXPECT_FALSE(pp.has_loss_gemodel());
  Result<LinkProfile> back = LinkProfileFromProto(pp);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(*back, p);
}

TEST(LinkProfileProto, UnsetStaysUnsetAndGilbertElliott) {
  LinkProfile p;
  p.loss_gemodel = GilbertElliott{0.01, 0.3, 0.9, 0.001};
  v1::LinkProfile pp = LinkProfileToProto(p);
  EXPECT_FALSE(pp.has_rate_bps());
  EXPECT_FALSE(pp.has_delay_ns());
  EXPECT_FALSE(pp.has_loss_ppm());
  ASSERT_TRUE(pp.has_loss_gemodel());
  EXPECT_EQ(pp.loss_gemodel().p_ppm(), 10000u);
  EXPECT_EQ(pp.loss_gemodel().one_minus_k_ppm(), 1000u);
  Result<LinkProfile> back = LinkProfileFromProto(pp);
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(*back, p);
  EXPECT_TRUE(LinkProfileToProto(LinkProfile{}).ByteSizeLong() == 0);
}

TEST(LinkProfileProto, RejectsBadValues) {
  v1::LinkProfile pp;
  pp.set_loss_ppm(1'000'001);
  Result<LinkProfile> r = LinkProfileFromProto(pp);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(r.status().message(), HasSubstr("loss_ppm"));
  v1::LinkProfile dd;
  dd.set_delay_distribution("gaussian");
  r = LinkProfileFromProto(dd);
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.status().message(), HasSubstr("delay_distribution"));
}

constexpr char kChain[] = R"(
name: chain
duration: 1m
seed: 7
topology:
  defaults:
    resources: {cpu: 0.5, memory: 64MiB, pids: 100}
  nodes:
    h0: {}
    h1: {}
  links:
    - {endpoints: [h0, g0-0], rate: 100mbit, delay: 1ms, reverse: {delay: 3ms}}
    - {endpoints: [g0-2, h1]}
  generate:
    - {model: line, n: 3}
collect:
  metrics: {interval: 500ms}
)";

TEST(BuildShards, OnePnodeChain) {
  experiments::Experiment e = Parse(kChain);
  Result<topology::AddressPlan> plan = topology::PlanAddressing(e.topology);
  ASSERT_TRUE(plan.ok()) << plan.status().ToString();
  ShardOptions opt;
  opt.output_dir = "/tmp/out";
  opt.shared_dir = "/tmp/shared";
  opt.mtu = 1400;
  std::vector<uint32_t> placement(e.topology.num_vnodes(), 0);
  Result<std::vector<v1::DeployShard>> shards = BuildShards(e, "chain-1", 3, placement, *plan, opt);
  ASSERT_TRUE(shards.ok()) << shards.status().ToString();
  ASSERT_EQ(shards->size(), 1u);
  const v1::DeployShard& s = (*shards)[0];
  EXPECT_EQ(s.experiment_id(), "chain-1");
  EXPECT_EQ(s.generation(), 3u);
  EXPECT_EQ(s.seed(), 7u);
  EXPECT_EQ(s.metrics_interval_ms(), 500u);
  EXPECT_EQ(s.output_dir(), "/tmp/out");
  EXPECT_EQ(s.shared_dir(), "/tmp/shared");
  ASSERT_EQ(s.vnodes_size(), 5);
  int routers = 0;
  for (const v1::VnodeSpec& v : s.vnodes()) {
    EXPECT_EQ(v.runtime(), "netns");
    EXPECT_EQ(v.resources().cpu_millicores(), 500u);
    EXPECT_EQ(v.resources().memory_bytes(), 64u << 20);
    EXPECT_EQ(v.resources().pids(), 100u);
    if (v.kind() == "router") {
      ++routers;
      EXPECT_TRUE(v.forwarding()) << v.name();
    } else {
      EXPECT_FALSE(v.forwarding()) << v.name();
    }
  }
  EXPECT_EQ(routers, 3);
  ASSERT_EQ(s.links_size(), 4);
  const v1::LinkSpec* l = FindLink(s, "h0--g0-0");
  ASSERT_NE(l, nullptr);
  EXPECT_EQ(l->a().vnode(), "h0");
  EXPECT_EQ(l->a().ifname(), "eth0");
  EXPECT_EQ(l->b().vnode(), "g0-0");
  EXPECT_THAT(l->a().address(), HasSubstr("/31"));
  EXPECT_THAT(l->b().address(), HasSubstr("/31"));
  EXPECT_EQ(l->mtu(), 1400u);
  EXPECT_EQ(l->forward().rate_bps(), 100'000'000u);
  EXPECT_EQ(l->forward().delay_ns(), 1'000'000u);
  EXPECT_EQ(l->reverse().delay_ns(), 3'000'000u);  // per-direction override
  EXPECT_EQ(l->reverse().rate_bps(), 100'000'000u);
  const v1::LinkSpec* plain = FindLink(s, "g0-2--h1");
  ASSERT_NE(plain, nullptr);
  EXPECT_FALSE(plain->has_forward());
  EXPECT_FALSE(plain->has_reverse());
  // Hosts get a default route via their router; routers /32 routes.
  bool h0_default = false;
  for (const v1::RouteSpec& r : s.routes()) {
    if (r.vnode() == "h0" || r.vnode() == "h1") {
      EXPECT_EQ(r.destination(), "default");
      EXPECT_EQ(r.dev(), "eth0");
      h0_default |= r.vnode() == "h0";
    } else {
      EXPECT_THAT(r.destination(), HasSubstr("/32"));
    }
  }
  EXPECT_TRUE(h0_default);
  EXPECT_EQ(s.hosts_size(), 5);
  EXPECT_EQ(s.bridges_size(), 0);
}

// A link that a link-set event changes is marked reshaped (the agent deploys it through
// its wire namespace, where a delay set at run time can hold packets); a link that
// only goes down and up, or that no event names, is not.
TEST(BuildShards, LinksThatEventsReshapeAreMarked) {
  experiments::Experiment e = Parse(R"(
name: ev
duration: 1m
topology:
  nodes: {a: {}, b: {}, c: {}, r: {kind: router}}
  links:
    - {endpoints: [a, r]}
    - {endpoints: [b, r]}
    - {endpoints: [c, r]}
events:
  - {at: 10s, link: r--a, set: {delay: 20ms}}
  - {at: 20s, link: b--r, down: true}
)");
  Result<topology::AddressPlan> plan = topology::PlanAddressing(e.topology);
  ASSERT_TRUE(plan.ok()) << plan.status().ToString();
  std::vector<uint32_t> placement(e.topology.num_vnodes(), 0);
  Result<std::vector<v1::DeployShard>> shards =
      BuildShards(e, "ev-1", 1, placement, *plan, ShardOptions{});
  ASSERT_TRUE(shards.ok()) << shards.status().ToString();
  const v1::DeployShard& s = (*shards)[0];
  ASSERT_NE(FindLink(s, "a--r"), nullptr);
  EXPECT_TRUE(FindLink(s, "a--r")->reshaped()) << "named r--a in the event: the same link";
  EXPECT_FALSE(FindLink(s, "b--r")->reshaped());
  EXPECT_FALSE(FindLink(s, "c--r")->reshaped());
}

TEST(BuildShards, SwitchBecomesBridge) {
  experiments::Experiment e = Parse(R"(
name: lan
duration: 1m
topology:
  nodes:
    s: {kind: switch}
    a: {}
    b: {}
  links:
    - {endpoints: [a, s]}
    - {endpoints: [b, s]}
)");
  Result<topology::AddressPlan> plan = topology::PlanAddressing(e.topology);
  ASSERT_TRUE(plan.ok());
  auto shards = BuildShards(e, "lan", 1, std::vector<uint32_t>(3, 0), *plan);
  ASSERT_TRUE(shards.ok()) << shards.status().ToString();
  const v1::DeployShard& s = (*shards)[0];
  ASSERT_EQ(s.bridges_size(), 1);
  EXPECT_EQ(s.bridges(0).vnode(), "s");
  EXPECT_EQ(s.bridges(0).name(), "br0");
  EXPECT_EQ(s.bridges(0).ports_size(), 2);
  for (const v1::LinkSpec& l : s.links()) {
    const v1::LinkEnd& sw = l.a().vnode() == "s" ? l.a() : l.b();
    EXPECT_TRUE(sw.address().empty()) << l.name();
  }
  EXPECT_EQ(s.metrics_interval_ms(), 0u);
}

TEST(BuildShards, SplitsByPnodeAndRefusesCrossLinks) {
  experiments::Experiment e = Parse(R"(
name: two
duration: 1m
topology:
  nodes: {a: {}, b: {}, c: {}, d: {}}
  links:
    - {endpoints: [a, b]}
    - {endpoints: [c, d]}
)");
  Result<topology::AddressPlan> plan = topology::PlanAddressing(e.topology);
  ASSERT_TRUE(plan.ok());
  auto shards = BuildShards(e, "two", 1, {0, 0, 1, 1}, *plan);
  ASSERT_TRUE(shards.ok()) << shards.status().ToString();
  ASSERT_EQ(shards->size(), 2u);
  EXPECT_EQ((*shards)[0].vnodes_size(), 2);
  EXPECT_EQ((*shards)[1].vnodes_size(), 2);
  EXPECT_EQ((*shards)[1].links(0).name(), "c--d");
  EXPECT_EQ((*shards)[1].hosts_size(), 4);  // every shard resolves every vnode
  ShardOptions three;
  three.num_pnodes = 3;
  shards = BuildShards(e, "two", 1, {0, 0, 1, 1}, *plan, three);
  ASSERT_TRUE(shards.ok());
  EXPECT_EQ(shards->size(), 3u);
  EXPECT_EQ((*shards)[2].vnodes_size(), 0);

  // A cross-pnode link with no underlay address announced: a clear error.
  auto cross = BuildShards(e, "two", 1, {0, 1, 1, 1}, *plan);
  ASSERT_FALSE(cross.ok());
  EXPECT_EQ(cross.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_THAT(cross.status().message(), HasSubstr("a--b"));
  EXPECT_THAT(cross.status().message(), HasSubstr("no underlay address"));

  auto bad = BuildShards(e, "two", 1, {0, 0}, *plan);
  EXPECT_EQ(bad.status().code(), StatusCode::kInvalidArgument);
  auto out_of_range = BuildShards(e, "two", 1, {0, 0, 5, 5}, *plan, three);
  EXPECT_EQ(out_of_range.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(BuildShards(e, "", 1, {0, 0, 0, 0}, *plan).status().code(),
            StatusCode::kInvalidArgument);
}

// A ring of 4 split 2/2 plus a pendant on pnode 2: a--b and c--d stay local,
// b--c, d--a and d--e cross.
constexpr char kRing[] = R"(
name: ring
duration: 1m
topology:
  nodes: {a: {}, b: {}, c: {}, d: {}, e: {}}
  links:
    - {endpoints: [a, b], rate: 10mbit}
    - {endpoints: [b, c], rate: 20mbit, delay: 5ms, reverse: {delay: 7ms}}
    - {endpoints: [c, d]}
    - {endpoints: [d, a], rate: 30mbit}
    - {endpoints: [d, e]}
)";

ShardOptions TunnelOptions() {
  ShardOptions o;
  o.pnode_addresses = {"192.0.2.1", "192.0.2.2", "192.0.2.3"};
  o.vni_base = 5000;
  o.vni_count = 16;
  return o;
}

TEST(BuildShards, CrossPnodeLinksGoToBothShardsWithATunnel) {
  experiments::Experiment e = Parse(kRing);
  Result<topology::AddressPlan> plan = topology::PlanAddressing(e.topology);
  ASSERT_TRUE(plan.ok()) << plan.status().ToString();
  const std::vector<uint32_t> placement = {0, 0, 1, 1, 2};  // a b | c d | e
  EXPECT_EQ(CountCrossPnodeLinks(e.topology, placement), 3u);
  auto shards = BuildShards(e, "ring-1", 3, placement, *plan, TunnelOptions());
  ASSERT_TRUE(shards.ok()) << shards.status().ToString();
  ASSERT_EQ(shards->size(), 3u);
  const v1::DeployShard& s0 = (*shards)[0];
  const v1::DeployShard& s1 = (*shards)[1];
  const v1::DeployShard& s2 = (*shards)[2];
  // p0: a--b (local), b--c, d--a; p1: b--c, c--d (local), d--a, d--e; p2: d--e.
  EXPECT_EQ(s0.links_size(), 3);
  EXPECT_EQ(s1.links_size(), 4);
  EXPECT_EQ(s2.links_size(), 1);

  const v1::LinkSpec* ab = FindLink(s0, "a--b");
  ASSERT_NE(ab, nullptr);
  EXPECT_FALSE(ab->has_tunnel());
  EXPECT_EQ(ab->mtu(), 0u);  // local links keep the kernel default
  EXPECT_EQ(FindLink(s1, "a--b"), nullptr);

  // b--c: a = b on p0, b = c on p1.
  const v1::LinkSpec* bc0 = FindLink(s0, "b--c");
  const v1::LinkSpec* bc1 = FindLink(s1, "b--c");
  ASSERT_NE(bc0, nullptr);
  ASSERT_NE(bc1, nullptr);
  ASSERT_TRUE(bc0->has_tunnel());
  ASSERT_TRUE(bc1->has_tunnel());
  EXPECT_EQ(bc0->tunnel().local_end(), "a");
  EXPECT_EQ(bc1->tunnel().local_end(), "b");
  EXPECT_EQ(bc0->tunnel().remote_address(), "192.0.2.2");
  EXPECT_EQ(bc1->tunnel().remote_address(), "192.0.2.1");
  EXPECT_EQ(bc0->tunnel().vni(), bc1->tunnel().vni());
  EXPECT_EQ(bc0->tunnel().vni(), 5000u);  // the first cross-pnode link
  // Both halves carry the whole spec: ends, addresses, both directions.
  EXPECT_EQ(bc0->a().vnode(), "b");
  EXPECT_EQ(bc1->b().vnode(), "c");
  EXPECT_EQ(bc0->a().address(), bc1->a().address());
  EXPECT_EQ(bc0->b().address(), bc1->b().address());
  EXPECT_FALSE(bc0->b().address().empty());
  EXPECT_EQ(bc1->forward().rate_bps(), 20'000'000u);
  EXPECT_EQ(bc1->forward().delay_ns(), 5'000'000u);
  EXPECT_EQ(bc0->reverse().delay_ns(), 7'000'000u);
  // MTU: VXLAN overhead taken off the 1500-byte underlay, same on both sides.
  EXPECT_EQ(bc0->mtu(), 1500u - kVxlanOverheadBytes);
  EXPECT_EQ(bc1->mtu(), bc0->mtu());

  // d--a: a = d on p1, b = a on p0.
  const v1::LinkSpec* da0 = FindLink(s0, "d--a");
  const v1::LinkSpec* da1 = FindLink(s1, "d--a");
  ASSERT_NE(da0, nullptr);
  ASSERT_NE(da1, nullptr);
  EXPECT_EQ(da1->tunnel().local_end(), "a");
  EXPECT_EQ(da0->tunnel().local_end(), "b");
  EXPECT_EQ(da1->tunnel().remote_address(), "192.0.2.1");
  EXPECT_EQ(da0->tunnel().remote_address(), "192.0.2.2");
  // d--e: p1 <-> p2.
  const v1::LinkSpec* de1 = FindLink(s1, "d--e");
  const v1::LinkSpec* de2 = FindLink(s2, "d--e");
  ASSERT_NE(de1, nullptr);
  ASSERT_NE(de2, nullptr);
  EXPECT_EQ(de2->tunnel().remote_address(), "192.0.2.2");
  EXPECT_EQ(de1->tunnel().remote_address(), "192.0.2.3");
  EXPECT_EQ(de2->tunnel().local_end(), "b");

  // One VNI per cross-pnode link, all distinct, inside the block.
  std::set<uint32_t> vnis = {bc0->tunnel().vni(), da0->tunnel().vni(), de1->tunnel().vni()};
  EXPECT_EQ(vnis.size(), 3u);
  EXPECT_EQ(*vnis.begin(), 5000u);
  EXPECT_EQ(*vnis.rbegin(), 5002u);
  EXPECT_EQ(da0->tunnel().vni(), da1->tunnel().vni());
  EXPECT_EQ(de1->tunnel().vni(), de2->tunnel().vni());

  // Stable: the same inputs give the same VNIs.
  auto again = BuildShards(e, "ring-1", 3, placement, *plan, TunnelOptions());
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(FindLink((*again)[0], "b--c")->tunnel().vni(), bc0->tunnel().vni());
  EXPECT_EQ(FindLink((*again)[2], "d--e")->tunnel().vni(), de2->tunnel().vni());

  // Every shard still resolves every vnode.
  EXPECT_EQ(s2.hosts_size(), 5);
}

TEST(BuildShards, CrossPnodeMtuAndErrors) {
  experiments::Experiment e = Parse(kRing);
  Result<topology::AddressPlan> plan = topology::PlanAddressing(e.topology);
  ASSERT_TRUE(plan.ok());
  const std::vector<uint32_t> placement = {0, 0, 1, 1, 2};

  // A jumbo underlay leaves the asked MTU alone; a small one caps it.
  ShardOptions o = TunnelOptions();
  o.mtu = 1400;
  o.underlay_mtu = 9000;
  auto jumbo = BuildShards(e, "x", 1, placement, *plan, o);
  ASSERT_TRUE(jumbo.ok()) << jumbo.status().ToString();
  EXPECT_EQ(FindLink((*jumbo)[0], "b--c")->mtu(), 1400u);
  EXPECT_EQ(FindLink((*jumbo)[0], "a--b")->mtu(), 1400u);
  o.underlay_mtu = 1400;
  auto small = BuildShards(e, "x", 1, placement, *plan, o);
  ASSERT_TRUE(small.ok());
  EXPECT_EQ(FindLink((*small)[1], "d--e")->mtu(), 1350u);
  EXPECT_EQ(FindLink((*small)[2], "d--e")->mtu(), 1350u);
  EXPECT_EQ(FindLink((*small)[0], "a--b")->mtu(), 1400u);

  // A pnode with a cross-pnode link but no address.
  o = TunnelOptions();
  o.pnode_addresses[2] = "";
  auto no_addr = BuildShards(e, "x", 1, placement, *plan, o);
  ASSERT_FALSE(no_addr.ok());
  EXPECT_EQ(no_addr.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_THAT(no_addr.status().message(), HasSubstr("d--e"));
  EXPECT_THAT(no_addr.status().message(), HasSubstr("pnode 2"));
  // ... but a pnode without cross-pnode links needs none.
  o = TunnelOptions();
  o.pnode_addresses = {"192.0.2.1", "192.0.2.2"};
  EXPECT_TRUE(BuildShards(e, "x", 1, {0, 0, 1, 1, 1}, *plan, o).ok());

  // More cross-pnode links than the block holds.
  o = TunnelOptions();
  o.vni_count = 2;
  auto full = BuildShards(e, "x", 1, placement, *plan, o);
  ASSERT_FALSE(full.ok());
  EXPECT_EQ(full.status().code(), StatusCode::kResourceExhausted);
  EXPECT_THAT(full.status().message(), HasSubstr("3 links span pnodes"));
  // ... or than the 24-bit space above vni_base.
  o = TunnelOptions();
  o.vni_count = 0;
  o.vni_base = kMaxVni - 1;
  EXPECT_EQ(BuildShards(e, "x", 1, placement, *plan, o).status().code(),
            StatusCode::kResourceExhausted);
  o.vni_base = kMaxVni - 2;
  auto top = BuildShards(e, "x", 1, placement, *plan, o);
  ASSERT_TRUE(top.ok());
  EXPECT_EQ(FindLink((*top)[2], "d--e")->tunnel().vni(), kMaxVni);
  o.vni_base = 0;
  EXPECT_EQ(BuildShards(e, "x", 1, placement, *plan, o).status().code(),
            StatusCode::kInvalidArgument);
  // No cross-pnode link: no VNI needed at all.
  EXPECT_TRUE(BuildShards(e, "x", 1, {0, 0, 0, 0, 0}, *plan, o).ok());
}

}  // namespace
}  // namespace gridemu::controller

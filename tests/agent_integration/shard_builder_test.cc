// BuildShards() and the LinkProfile <-> proto conversions (controller/shard_builder.h).
// Pure: no privileges, no kernel.
#include "gridemu/controller/shard_builder.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

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

  auto cross = BuildShards(e, "two", 1, {0, 1, 1, 1}, *plan);
  ASSERT_FALSE(cross.ok());
  EXPECT_EQ(cross.status().code(), StatusCode::kUnimplemented);
  EXPECT_THAT(cross.status().message(), HasSubstr("a--b"));

  auto bad = BuildShards(e, "two", 1, {0, 0}, *plan);
  EXPECT_EQ(bad.status().code(), StatusCode::kInvalidArgument);
  auto out_of_range = BuildShards(e, "two", 1, {0, 0, 5, 5}, *plan, three);
  EXPECT_EQ(out_of_range.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(BuildShards(e, "", 1, {0, 0, 0, 0}, *plan).status().code(),
            StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace gridemu::controller

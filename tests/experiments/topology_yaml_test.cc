// Tests of topology/yaml.h used directly: positions, checked mappings, scalar
// readers, link profiles and the topology section.

#include <gtest/gtest.h>

#include "gridemu/common/random.h"
#include "gridemu/topology/generators.h"
#include "gridemu/topology/yaml.h"

namespace gridemu::topology {
namespace {

using namespace std::chrono_literals;

struct Fixture {
  Diagnostics diags;
  YamlContext ctx;
  Fixture() {
    ctx.file = "f.yaml";
    ctx.diags = &diags;
  }
  std::vector<std::string> Messages() const {
    std::vector<std::string> out;
    for (const auto& d : diags.items()) out.push_back(d.ToString());
    return out;
  }
};

constexpr std::string_view kAB[] = {"a", "b"};

TEST(YamlHelpers, LocationsAreOneBased) {
  Fixture f;
  YAML::Node n = YAML::Load("x:\n  y: 1\n");
  EXPECT_EQ(LocOf(n["x"]["y"], f.ctx).ToString(), "f.yaml:2:6");
}

TEST(YamlHelpers, MapReportsUnknownAndDuplicateKeysAndKeepsFirst) {
  Fixture f;
  YAML::Node n = YAML::Load("a: 1\nc: 2\na: 3\nb: 4\n");
  YamlMap m(n, "thing", kAB, f.ctx);
  EXPECT_TRUE(m.valid());
  ASSERT_EQ(m.entries().size(), 2u);
  EXPECT_EQ(m.Find("a")->value.Scalar(), "1");
  EXPECT_EQ(m.Find("b")->value.Scalar(), "4");
  EXPECT_EQ(m.Find("c"), nullptr);
  EXPECT_EQ(f.Messages(),
            (std::vector<std::string>{"f.yaml:2:1: unknown key 'c' in thing; expected one of a, b",
                                      "f.yaml:3:1: duplicate key 'a' in thing (first at 1:1)"}));
}

TEST(YamlHelpers, LargeMapsFindDuplicatesToo) {
  Fixture f;
  std::string text;
  for (int i = 0; i < 50; ++i) text += "k" + std::to_string(i) + ": 1\n";
  text += "k7: 2\n";
  YamlMap m(YAML::Load(text), "nodes", {}, f.ctx);
  EXPECT_EQ(m.entries().size(), 50u);
  EXPECT_EQ(m.Find("k49")->value.Scalar(), "1");
  EXPECT_EQ(m.Find("k7")->value.Scalar(), "1");
  EXPECT_EQ(m.Find("k50"), nullptr);
  EXPECT_EQ(f.Messages(),
            std::vector<std::string>{"f.yaml:51:1: duplicate key 'k7' in nodes (first at 8:1)"});
}

TEST(YamlHelpers, RequireAndWrongTypes) {
  Fixture f;
  YamlMap m(YAML::Load("a: [1]\n"), "thing", kAB, f.ctx);
  EXPECT_EQ(m.Require("b", f.ctx), nullptr);
  EXPECT_FALSE(ReadUint(*m.Find("a"), 1, 10, f.ctx).has_value());
  YamlMap not_a_map(YAML::Load("[1, 2]"), "thing", kAB, f.ctx);
  EXPECT_FALSE(not_a_map.valid());
  EXPECT_EQ(f.Messages(),
            (std::vector<std::string>{"f.yaml:1:1: missing required key 'b' in thing",
                                      "f.yaml:1:4: a: expected a positive integer, got a list",
                                      "f.yaml:1:1: thing: expected a mapping, got a list"}));
}

TEST(YamlHelpers, ScalarReaders) {
  Fixture f;
  YamlMap m(YAML::Load("t: 1.5s\nr: 10mbit\np: 0.1%\ns: 64k\nb: True\nn: 42\nd: 0.25\n"), "x", {},
            f.ctx);
  EXPECT_EQ(ReadTime(*m.Find("t"), f.ctx), 1500ms);
  EXPECT_EQ(ReadRate(*m.Find("r"), f.ctx), 10'000'000u);
  EXPECT_DOUBLE_EQ(*ReadRatio(*m.Find("p"), f.ctx), 0.001);
  EXPECT_EQ(ReadSize(*m.Find("s"), f.ctx), 65536u);
  EXPECT_EQ(ReadBool(*m.Find("b"), f.ctx), true);
  EXPECT_EQ(ReadUint(*m.Find("n"), 1, 100, f.ctx), 42u);
  EXPECT_EQ(ReadDouble(*m.Find("d"), f.ctx), 0.25);
  EXPECT_TRUE(f.diags.empty()) << f.diags.ToString();
  EXPECT_FALSE(ReadUint(*m.Find("n"), 1, 10, f.ctx).has_value());
  EXPECT_FALSE(ReadUint(*m.Find("d"), 1, 10, f.ctx).has_value());
  EXPECT_EQ(f.Messages(),
            (std::vector<std::string>{"f.yaml:6:4: n: 42 is out of range; expected 1 to 10",
                                      "f.yaml:7:4: d: expected a positive integer, got '0.25'"}));
}

TEST(LinkProfileYaml, ReadsEveryKey) {
  Fixture f;
  YamlMap m(YAML::Load(R"(
rate: 10mbit
delay: 20ms
jitter: 2ms
delay_distribution: pareto
delay_correlation: 25%
loss_model: {p: 1%, r: 20%, 1-h: 90%}
duplicate: 0.5%
reorder: 1%
gap: 5
corrupt: 0.01%
queue: 100
)"),
            "link", ProfileKeys(), f.ctx);
  LinkProfile p;
  ASSERT_TRUE(ParseLinkProfileYaml(m, f.ctx, p)) << f.diags.ToString();
  EXPECT_EQ(p.rate_bps, 10'000'000u);
  EXPECT_EQ(p.delay, 20ms);
  EXPECT_EQ(p.jitter, 2ms);
  EXPECT_EQ(p.delay_distribution, DelayDistribution::kPareto);
  EXPECT_DOUBLE_EQ(*p.delay_correlation, 0.25);
  ASSERT_TRUE(p.loss_gemodel.has_value());
  EXPECT_DOUBLE_EQ(p.loss_gemodel->p, 0.01);
  EXPECT_DOUBLE_EQ(p.loss_gemodel->r, 0.2);
  EXPECT_DOUBLE_EQ(p.loss_gemodel->one_minus_h, 0.9);
  EXPECT_DOUBLE_EQ(p.loss_gemodel->one_minus_k, 0.0);  // netem's default
  EXPECT_DOUBLE_EQ(*p.duplicate, 0.005);
  EXPECT_DOUBLE_EQ(*p.reorder, 0.01);
  EXPECT_EQ(p.reorder_gap, 5u);
  EXPECT_DOUBLE_EQ(*p.corrupt, 0.0001);
  EXPECT_EQ(p.queue_packets, 100u);
  EXPECT_TRUE(p.ValidateAll().empty());
}

TEST(LinkProfileYaml, DirectedFormAndWhereProblemsAreReported) {
  Fixture f;
  YamlMap m(YAML::Load("loss: 120%\njitter: 1ms\nforward: {delay: 5ms}\nreverse: {rate: 0bit}\n"),
            "link", DirectedProfileKeys(), f.ctx);
  DirectedProfile p;
  ASSERT_TRUE(ParseDirectedProfileYaml(m, f.ctx, p));
  EXPECT_EQ(p.forward.delay, 5ms);
  EXPECT_FALSE(p.reverse.delay.has_value());
  EXPECT_EQ(p.reverse.rate_bps, 0u);
  EXPECT_EQ(p.both.loss, 1.2);
  EXPECT_FALSE(ReportProfileProblems(m, p.forward, p.reverse, f.ctx));
  EXPECT_EQ(f.Messages(),
            (std::vector<std::string>{
                "f.yaml:1:7: loss: 120% is above 100%",  // both directions: once
                "f.yaml:4:17: reverse.rate: must be greater than 0bit",
                "f.yaml:2:9: reverse.jitter: needs a delay (jitter varies the delay)"}));
}

TEST(LinkProfileYaml, BaseProblemsAreNotRepeated) {
  Fixture f;
  LinkProfile base;
  base.loss = 2.0;  // already wrong: reported where the link was defined
  YamlMap m(YAML::Load("duplicate: 1%\n"), "set", DirectedProfileKeys(), f.ctx);
  DirectedProfile p;
  ASSERT_TRUE(ParseDirectedProfileYaml(m, f.ctx, p));
  EXPECT_TRUE(ReportProfileProblems(m, base.MergedWith(p.forward), base.MergedWith(p.reverse),
                                    f.ctx, &base, &base));
  EXPECT_TRUE(f.diags.empty());
}

TEST(TopologyYaml, GeneratorSeedDerivesFromTheExperimentSeed) {
  Fixture f;
  f.ctx.seed = 1234;
  Topology topo;
  ParseTopologyYaml(YAML::Load("generate:\n  - {model: waxman, n: 40, alpha: 0.5, beta: 0.5}\n"),
                    f.ctx, topo);
  ASSERT_TRUE(f.diags.empty()) << f.diags.ToString();
  GraphSpec spec;
  spec.model = GraphModel::kWaxman;
  spec.n = 40;
  spec.alpha = 0.5;
  spec.beta = 0.5;
  auto g = Generate(spec, Rng::ForStream(1234, "generate/0").Next());
  ASSERT_TRUE(g.ok());
  ASSERT_EQ(topo.num_vnodes(), 40u);
  ASSERT_EQ(topo.num_links(), g->edges.size());
  for (size_t i = 0; i < g->edges.size(); ++i) {
    EXPECT_EQ(topo.vnode(topo.link(i).a).name, "g0-" + g->names[g->edges[i].first]);
    EXPECT_EQ(topo.vnode(topo.link(i).b).name, "g0-" + g->names[g->edges[i].second]);
  }
  // Role-less models are routers by default.
  EXPECT_EQ(topo.vnode(0).kind, VnodeKind::kRouter);
}

TEST(TopologyYaml, ExplicitKindOverridesRoles) {
  Fixture f;
  Topology topo;
  ParseTopologyYaml(YAML::Load("generate:\n  - {model: tree, fanout: 2, depth: 2, kind: switch}\n"),
                    f.ctx, topo);
  ASSERT_TRUE(f.diags.empty()) << f.diags.ToString();
  ASSERT_EQ(topo.num_vnodes(), 7u);
  for (const auto& v : topo.vnodes()) EXPECT_EQ(v.kind, VnodeKind::kSwitch) << v.name;
}

TEST(TopologyYaml, FailedNamesAreRemembered) {
  Fixture f;
  Topology topo;
  auto info = ParseTopologyYaml(YAML::Load(R"(
nodes: {Bad: {}}
groups: {peers: {count: 0}}
generate: [{model: line, n: 0, prefix: ln-}]
links:
  - endpoints: [Bad, peers3]
  - endpoints: [ln-0, nowhere]
)"),
                                f.ctx, topo);
  EXPECT_TRUE(info.IsFailedName("Bad"));
  EXPECT_TRUE(info.IsFailedName("peers[1:]"));
  EXPECT_TRUE(info.IsFailedName("peers3"));  // a member of the failed group
  EXPECT_FALSE(info.IsFailedName("peersx"));  // not a member name
  EXPECT_TRUE(info.IsFailedName("ln-0"));
  EXPECT_FALSE(info.IsFailedName("nowhere"));
  // One message per mistake: the links only add the unknown 'nowhere'.
  ASSERT_EQ(f.diags.size(), 4u) << f.diags.ToString();
  EXPECT_EQ(f.diags.items()[3].message, "endpoints: no vnode named 'nowhere'");
}

}  // namespace
}  // namespace gridemu::topology

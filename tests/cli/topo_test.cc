#include "gridemu/cli/topo.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

namespace gridemu::cli {
namespace {

std::string Src(const std::string& rel) {
  const char* root = std::getenv("GRIDEMU_SOURCE_DIR");
  return std::string(root ? root : ".") + "/" + rel;
}

std::string Abilene() { return Src("examples/topologies/Abilene.gml"); }

TEST(TopoValidate, GoodFileSummary) {
  std::ostringstream out, err;
  EXPECT_EQ(TopoValidate(Src("tests/cli/testdata/star.yaml"), out, err), 0) << err.str();
  EXPECT_EQ(out.str(), "ok: " + Src("tests/cli/testdata/star.yaml") +
                           ": 11 vnodes, 10 links, 1 tasks, 1 events\n");
  EXPECT_EQ(err.str(), "");
}

TEST(TopoValidate, BadFileReportsEveryErrorWithPosition) {
  std::ostringstream out, err;
  const std::string f = Src("tests/cli/testdata/bad.yaml");
  EXPECT_EQ(TopoValidate(f, out, err), 1);
  EXPECT_EQ(out.str(), "");
  // Both broken links are reported in one pass, each with file:line:column.
  EXPECT_NE(err.str().find(f + ":7:"), std::string::npos) << err.str();
  EXPECT_NE(err.str().find("nowhere"), std::string::npos) << err.str();
  EXPECT_NE(err.str().find(f + ":8:"), std::string::npos) << err.str();
  EXPECT_NE(err.str().find("parsecs"), std::string::npos) << err.str();
}

TEST(TopoValidate, MissingFile) {
  std::ostringstream out, err;
  EXPECT_EQ(TopoValidate("/nonexistent/x.yaml", out, err), 1);
  EXPECT_NE(err.str().find("/nonexistent/x.yaml"), std::string::npos) << err.str();
}

TEST(TopoStats, AbileneHasGeoDelayOnEveryLink) {
  std::ostringstream out, err;
  ASSERT_EQ(TopoStats(Abilene(), true, true, out, err), 0) << err.str();
  auto j = nlohmann::json::parse(out.str());
  EXPECT_EQ(j["vnodes"], 11);
  EXPECT_EQ(j["links"], 14);
  EXPECT_EQ(j["links_with_delay"], 14);
  EXPECT_EQ(j["components"], 1);
  for (const auto& l : j["link_list"]) {
    // Abilene PoPs are hundreds of km apart: every geographic delay is > 0.5 ms
    // and, within the continental US, < 25 ms.
    EXPECT_GT(l["delay_ns"].get<int64_t>(), 500'000) << l.dump();
    EXPECT_LT(l["delay_ns"].get<int64_t>(), 25'000'000) << l.dump();
  }
}

TEST(TopoStats, TextOutputNamesTheQuantities) {
  std::ostringstream out, err;
  ASSERT_EQ(TopoStats(Src("tests/cli/testdata/star.yaml"), false, false, out, err), 0) << err.str();
  const std::string s = out.str();
  EXPECT_NE(s.find("vnodes      11 (10 hosts, 1 routers, 0 switches)"), std::string::npos) << s;
  EXPECT_NE(s.find("diameter    2 hops"), std::string::npos) << s;
  EXPECT_NE(s.find("1:10 10:1"), std::string::npos) << s;  // degree histogram of a star
  EXPECT_NE(s.find("link delay  10/10 links"), std::string::npos) << s;
}

TEST(TopoRender, DotAndJson) {
  std::ostringstream out, err;
  ASSERT_EQ(TopoRender(Src("tests/cli/testdata/star.yaml"), "dot", out, err), 0);
  EXPECT_EQ(out.str().rfind("graph \"star-ping\" {", 0), 0u);
  EXPECT_NE(out.str().find("\"peers3\" -- \"core\" [label=\"rate 1mbit delay 20ms / rate 8mbit delay 20ms\"]"),
            std::string::npos)
      << out.str();
  std::ostringstream jout;
  ASSERT_EQ(TopoRender(Src("tests/cli/testdata/star.yaml"), "json", jout, err), 0);
  auto j = nlohmann::json::parse(jout.str());
  EXPECT_EQ(j["vnodes"].size(), 11u);
  EXPECT_EQ(j["links"].size(), 10u);
  std::ostringstream bad;
  EXPECT_EQ(TopoRender(Src("tests/cli/testdata/star.yaml"), "svg", out, bad), 2);
  EXPECT_EQ(bad.str(), "unknown format 'svg'; expected dot or json\n");
}

TEST(TopoPaths, AbileneHostPairsFollowTheBackbone) {
  std::ostringstream out, err;
  ASSERT_EQ(TopoPaths(Src("examples/abilene-ping.yaml"), true, out, err), 0) << err.str();
  auto j = nlohmann::json::parse(out.str());
  ASSERT_EQ(j["paths"].size(), 110u);  // 11 hosts, ordered pairs
  for (const auto& p : j["paths"]) {
    if (p["src"] == "h-new-york" && p["dst"] == "h-chicago") {
      // host link 50us + New York--Chicago 5.733ms + host link 50us
      EXPECT_EQ(p["hops"], 3);
      EXPECT_NEAR(p["delay_ns"].get<double>(), 5'833'160, 1'000) << p.dump();
      EXPECT_EQ(p["rate_bps"], 1'000'000'000u);
    }
  }
  std::ostringstream text;
  ASSERT_EQ(TopoPaths(Src("examples/abilene-ping.yaml"), false, text, err), 0);
  EXPECT_NE(text.str().find("h-new-york -> h-chicago  delay 5.83316ms  rate 1gbit  loss 0%  hops 3"),
            std::string::npos)
      << text.str();
}

TEST(TopoConvert, GmlToYamlRoundTrips) {
  std::ostringstream out, err;
  ASSERT_EQ(TopoConvert(Abilene(), "yaml", out, err), 0) << err.str();
  // The converted file is itself a valid experiment with the same graph and delays.
  const std::string path = ::testing::TempDir() + "/abilene-converted.yaml";
  {
    std::ofstream f(path);
    f << out.str();
  }
  auto orig = LoadTopologyInput(Abilene());
  auto conv = LoadTopologyInput(path);
  ASSERT_TRUE(orig.ok()) << orig.status().message();
  ASSERT_TRUE(conv.ok()) << conv.status().message() << "\n" << out.str();
  ASSERT_EQ(conv->topo.num_vnodes(), orig->topo.num_vnodes());
  ASSERT_EQ(conv->topo.num_links(), orig->topo.num_links());
  for (size_t i = 0; i < orig->topo.num_links(); ++i) {
    EXPECT_EQ(conv->topo.link(i).forward.delay, orig->topo.link(i).forward.delay) << i;
    EXPECT_EQ(conv->topo.LinkName(i), orig->topo.LinkName(i));
  }
}

}  // namespace
}  // namespace gridemu::cli

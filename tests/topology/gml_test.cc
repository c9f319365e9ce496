#include "gridemu/topology/gml.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "gridemu/topology/routing.h"
#include "test_util.h"

namespace gridemu::topology {
namespace {

namespace fs = std::filesystem;
using std::chrono::milliseconds;
using std::chrono::nanoseconds;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

std::string ReadFile(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

// The error text of parsing `text`, or "ok".
std::string ParseError(std::string_view text, std::string_view file = "bad.gml") {
  auto r = ParseGml(text, file);
  if (r.ok()) return "ok";
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  return r.status().message();
}

// ---------------------------------------------------------------------------
// Parser.

TEST(ParseGml, ValuesCommentsNestedListsAndLinkSpeeds) {
  const std::string text =
      "# a comment [ with \"brackets\n"
      "Creator \"test\" Version 1.0\n"
      "graph [\n"
      "  directed 1\n"
      "  comment [ nested [ deep -3 ] more 1e-3 ]\n"
      "  node [ id 10 label \"Say &quot;hi&quot; &amp; go\" Latitude 40.5 Longitude -74 ]\n"
      "  node [ id -2 Longitude +8.25 ]   # label falls back to the id\n"
      "  node [\n"
      "    id 3 label 42 Latitude \"12.5\"\n"
      "  ]\n"
      "  edge [ source 10 target -2 LinkSpeed \"10\" LinkSpeedUnits \"G\" ]\n"
      "  edge [ source -2 target 10 LinkSpeedRaw 1e10 LinkSpeed 5 LinkSpeedUnits \"M\" ]\n"
      "  edge [ source 10 target 3 LinkSpeed 2.5 LinkSpeedUnits \"K\" id \"e7\" ]\n"
      "  edge [ source 3 target 10 LinkSpeed 7 ]\n"
      "  edge [ target 3 source 3 ]\n"
      "]\n";
  auto r = ParseGml(text, "t.gml");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  const GmlGraph& g = *r;
  EXPECT_TRUE(g.directed);
  ASSERT_EQ(g.nodes.size(), 3u);
  EXPECT_EQ(g.nodes[0].id, 10);
  EXPECT_EQ(g.nodes[0].label, "Say \"hi\" & go");
  EXPECT_EQ(g.nodes[0].latitude, 40.5);
  EXPECT_EQ(g.nodes[0].longitude, -74.0);
  EXPECT_EQ(g.nodes[0].loc.ToString(), "t.gml:6:3");
  EXPECT_EQ(g.nodes[1].id, -2);
  EXPECT_EQ(g.nodes[1].label, "-2");
  EXPECT_FALSE(g.nodes[1].latitude.has_value());
  EXPECT_EQ(g.nodes[1].longitude, 8.25);
  EXPECT_EQ(g.nodes[2].label, "42");
  EXPECT_EQ(g.nodes[2].latitude, 12.5);
  EXPECT_EQ(g.nodes[2].loc.ToString(), "t.gml:8:3");
  ASSERT_EQ(g.edges.size(), 5u);
  EXPECT_EQ(g.edges[0].source, 10);
  EXPECT_EQ(g.edges[0].target, -2);
  EXPECT_EQ(g.edges[0].link_speed_bps, 10'000'000'000u);
  EXPECT_EQ(g.edges[1].link_speed_bps, 10'000'000'000u);  // LinkSpeedRaw wins
  EXPECT_EQ(g.edges[2].link_speed_bps, 2'500u);
  EXPECT_EQ(g.edges[3].link_speed_bps, 7u);  // no units: bits/s
  EXPECT_FALSE(g.edges[4].link_speed_bps.has_value());
  EXPECT_EQ(g.edges[4].source, 3);
  EXPECT_EQ(g.edges[4].loc.ToString(), "t.gml:15:3");
}

TEST(ParseGml, EdgesMayPrecedeNodesAndStringsMaySpanLines) {
  auto r = ParseGml(
      "graph [ edge [ source 1 target 2 ]\n node [ id 1 label \"two\nlines\" ]\n"
      " node [ id 2 ] ]",
      "x.gml");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->nodes[0].label, "two\nlines");
  EXPECT_EQ(r->nodes[1].loc.ToString(), "x.gml:4:2");  // line count includes the string's newline
  EXPECT_EQ(r->edges.size(), 1u);
}

TEST(ParseGml, UnterminatedString) {
  EXPECT_EQ(ParseError("graph [\n  node [ id 1 label \"abc ]\n  node [ id 2 ]\n]\n"),
            "bad.gml:2:21: unterminated string: no closing '\"'");
}

TEST(ParseGml, UnbalancedBrackets) {
  EXPECT_EQ(ParseError("graph [\n  node [ id 1\n  node [ id 2 ]\n]\n"),
            "bad.gml:1:7: unterminated list: this '[' is never closed");
  EXPECT_EQ(ParseError("graph [\n  node [ id 1 ] ]\n]\n"),
            "bad.gml:3:1: unexpected ']' with no matching '['");
}

TEST(ParseGml, EdgeToUnknownNode) {
  EXPECT_EQ(
      ParseError("graph [\n  node [ id 1 ]\n  node [ id 2 ]\n  edge [ source 1 target 9 ]\n]"),
      "bad.gml:4:26: edge target 9 is not the id of any node");
}

TEST(ParseGml, DuplicateNodeId) {
  EXPECT_EQ(ParseError("graph [\n  node [ id 1 ]\n  node [ id 1 ]\n]\n"),
            "bad.gml:3:13: duplicate node id 1; first defined at line 2, column 13");
}

TEST(ParseGml, NodeWithoutId) {
  EXPECT_EQ(ParseError("graph [\n  node [ label \"x\" ]\n]\n"), "bad.gml:2:3: node without id");
}

TEST(ParseGml, CollectsEveryErrorInFileOrder) {
  const std::string msg = ParseError(
      "graph [\n"
      "  edge [ source 1 target 7 ]\n"
      "  node [ id 1 ]\n"
      "  node [ label \"x\" ]\n"
      "  node [ id 1 ]\n"
      "]\n");
  EXPECT_EQ(msg,
            "bad.gml:2:26: edge target 7 is not the id of any node\n"
            "bad.gml:4:3: node without id\n"
            "bad.gml:5:13: duplicate node id 1; first defined at line 3, column 13");
}

TEST(ParseGml, DeepNestingIsRefusedNotACrash) {
  std::string text = "graph [ ";
  for (int i = 0; i < 100000; ++i) text += "a [ ";
  for (int i = 0; i < 100000; ++i) text += "] ";
  text += "]";
  EXPECT_EQ(ParseError(text), "bad.gml:1:263: lists nested deeper than 64 levels");
}

TEST(ParseGml, EmptyAndGraphless) {
  EXPECT_EQ(ParseError(""), "bad.gml:1:1: no 'graph [ ... ]' list in this file");
  EXPECT_EQ(ParseError("graph 3"), "bad.gml:1:7: 'graph' must be a list: graph [ ... ]");
  auto r = ParseGml("graph [ ]", "e.gml");
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->nodes.empty());
}

// Every file in topology/testdata/gml/bad/ comes with NAME.err, the exact
// error text expected (file names as the base name).
TEST(ParseGml, BadInputCorpus) {
  const fs::path dir = testing::TestdataDir() / "gml" / "bad";
  ASSERT_TRUE(fs::is_directory(dir)) << dir;
  size_t cases = 0;
  for (const auto& entry : fs::directory_iterator(dir)) {
    if (entry.path().extension() != ".gml") continue;
    SCOPED_TRACE(entry.path().filename().string());
    fs::path err = entry.path();
    err.replace_extension(".err");
    ASSERT_TRUE(fs::exists(err)) << "missing " << err;
    std::string expected = ReadFile(err);
    while (!expected.empty() && expected.back() == '\n') expected.pop_back();
    EXPECT_EQ(ParseError(ReadFile(entry.path()), entry.path().filename().string()), expected);
    ++cases;
  }
  EXPECT_GE(cases, 8u);
}

TEST(LoadGml, MissingFileIsNotFound) {
  auto r = LoadGml("/nonexistent/dir/x.gml");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kNotFound);
  EXPECT_THAT(r.status().message(), HasSubstr("cannot read GML file '/nonexistent/dir/x.gml'"));
}

TEST(LoadGml, ErrorsNameThePath) {
  const fs::path p = testing::TestdataDir() / "gml" / "bad" / "node_without_id.gml";
  auto r = LoadGml(p.string());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message(), p.string() + ":2:3: node without id");
}

// ---------------------------------------------------------------------------
// Helpers.

TEST(SanitizeGmlLabel, Rules) {
  EXPECT_EQ(SanitizeGmlLabel("New York", 0), "new-york");
  EXPECT_EQ(SanitizeGmlLabel("  St. Kitts & Nevis!! ", 1), "st-kitts-nevis");
  EXPECT_EQ(SanitizeGmlLabel("S\xc3\xa3o Paulo", 2), "s-o-paulo");  // UTF-8 bytes are "other"
  EXPECT_EQ(SanitizeGmlLabel("AS-1239", 3), "as-1239");
  EXPECT_EQ(SanitizeGmlLabel("", 7), "n7");
  EXPECT_EQ(SanitizeGmlLabel("---", 3), "n3");
  EXPECT_EQ(SanitizeGmlLabel("?", -4), "n-4");
  const std::string long_label = std::string(62, 'a') + " b c";
  const std::string s = SanitizeGmlLabel(long_label, 0);
  EXPECT_EQ(s, std::string(62, 'a'));  // cut to 63, trailing '-' trimmed
}

TEST(Geo, GreatCircleAndFibreDelay) {
  // One degree along the equator: R * pi / 180.
  EXPECT_NEAR(GreatCircleMeters(0, 0, 0, 1), 111'195.08, 0.05);
  EXPECT_NEAR(GreatCircleMeters(0, 0, 0, 180), 3.14159265358979 * 6'371'008.8, 1);
  EXPECT_NEAR(GreatCircleMeters(90, 0, -90, 0), 3.14159265358979 * 6'371'008.8, 1);
  EXPECT_EQ(GreatCircleMeters(12, 34, 12, 34), 0);
  // New York - Chicago, about 1,145 km.
  EXPECT_NEAR(GreatCircleMeters(40.71427, -74.00597, 41.85003, -87.65005), 1'145'000, 3'000);
  // 2/3 c: 199,861,638.67 m/s.
  EXPECT_EQ(FibreDelay(199'861'638.666), nanoseconds(1'000'000'000));
  EXPECT_EQ(FibreDelay(1000), nanoseconds(5003));  // 5003.46 ns, rounded
  EXPECT_EQ(FibreDelay(0), nanoseconds(0));
}

// ---------------------------------------------------------------------------
// Import.

double Ms(nanoseconds d) { return std::chrono::duration<double, std::milli>(d).count(); }

GmlGraph LoadFixture(const std::string& name) {
  auto r = LoadGml((testing::TestdataDir() / "gml" / name).string());
  EXPECT_TRUE(r.ok()) << r.status().ToString();
  return r.ok() ? *r : GmlGraph{};
}

TEST(ImportGml, SmallFixture) {
  const GmlGraph g = LoadFixture("small.gml");
  ASSERT_EQ(g.nodes.size(), 6u);
  ASSERT_EQ(g.edges.size(), 6u);
  Topology topo;
  GmlImportOptions opts;
  opts.prefix = "f-";
  opts.delay_from_geo = true;
  opts.default_delay = milliseconds(3);
  opts.default_rate_bps = 100'000'000;
  opts.extra.loss = 0.01;
  opts.extra.queue_packets = 50;
  auto r = ImportGml(g, opts, topo);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  const GmlImportReport& rep = *r;

  std::vector<std::string> names;
  for (VnodeId id : rep.vnodes) names.push_back(topo.vnode(id).name);
  EXPECT_THAT(names, ElementsAre("f-new-york", "f-chicago", "f-none", "f-none-2",
                                 "f-st-kitts-nevis", "f-n5"));
  EXPECT_EQ(topo.vnode(rep.vnodes[4]).label, "St Kitts & Nevis");
  EXPECT_EQ(topo.vnode(rep.vnodes[0]).latitude, 40.71427);
  EXPECT_EQ(topo.vnode(rep.vnodes[0]).longitude, -74.00597);
  EXPECT_FALSE(topo.vnode(rep.vnodes[2]).latitude.has_value());
  EXPECT_EQ(topo.vnode(rep.vnodes[0]).kind, VnodeKind::kRouter);
  EXPECT_EQ(topo.vnode(rep.vnodes[0]).loc.line, 8);

  ASSERT_EQ(rep.links.size(), 5u);  // the self-loop is skipped
  EXPECT_EQ(rep.geo_delay_links, 3u);
  EXPECT_EQ(rep.default_delay_links, 2u);
  EXPECT_EQ(rep.components, 2u);
  EXPECT_THAT(rep.notes, ElementsAre("skipped 1 self-loop edge (a link needs two different vnodes)",
                                     "2 links got the default delay: an end has no coordinates",
                                     "graph is disconnected: 2 components"));

  const Link& ny_chi = topo.link(rep.links[0]);
  const nanoseconds geo = FibreDelay(GreatCircleMeters(40.71427, -74.00597, 41.85003, -87.65005));
  EXPECT_EQ(ny_chi.forward.delay, geo);
  EXPECT_NEAR(Ms(geo), 5.73, 0.03);
  EXPECT_EQ(ny_chi.forward.rate_bps, 10'000'000'000u);
  EXPECT_EQ(ny_chi.forward.loss, 0.01);
  EXPECT_EQ(ny_chi.forward.queue_packets, 50u);
  EXPECT_EQ(ny_chi.forward, ny_chi.reverse);
  // Parallel edge, reversed in the file: same geo delay, its own speed.
  const Link& chi_ny = topo.link(rep.links[1]);
  EXPECT_EQ(chi_ny.a, rep.vnodes[1]);
  EXPECT_EQ(chi_ny.forward.delay, geo);
  EXPECT_EQ(chi_ny.forward.rate_bps, 155'000'000u);
  EXPECT_EQ(topo.LinkName(rep.links[1]), "f-chicago--f-new-york#2");
  // Chicago -- None: no coordinates on one end, no speed.
  const Link& chi_none = topo.link(rep.links[2]);
  EXPECT_EQ(chi_none.forward.delay, milliseconds(3));
  EXPECT_EQ(chi_none.forward.rate_bps, 100'000'000u);
  EXPECT_EQ(chi_none.reverse, chi_none.forward);
  EXPECT_EQ(topo.link(rep.links[3]).forward.rate_bps, 2'500'000'000u);
  EXPECT_EQ(topo.link(rep.links[4]).forward.delay, milliseconds(3));
}

TEST(ImportGml, RateOptions) {
  const GmlGraph g = LoadFixture("small.gml");
  Topology topo;
  GmlImportOptions opts;
  opts.use_link_speed = false;
  opts.default_rate_bps = 1'000'000;
  auto r = ImportGml(g, opts, topo);
  ASSERT_TRUE(r.ok());
  for (LinkId l : r->links) {
    EXPECT_EQ(topo.link(l).forward.rate_bps, 1'000'000u);
    EXPECT_EQ(topo.link(l).forward.delay, milliseconds(1));  // not from geo
  }
  EXPECT_EQ(r->geo_delay_links, 0u);
  EXPECT_EQ(r->default_delay_links, 5u);

  Topology t2;
  GmlImportOptions plain;  // no default rate: links without LinkSpeed stay unshaped in rate
  r = ImportGml(g, plain, t2);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(t2.link(r->links[0]).forward.rate_bps, 10'000'000'000u);
  EXPECT_FALSE(t2.link(r->links[2]).forward.rate_bps.has_value());
}

TEST(ImportGml, NamesAvoidExistingVnodes) {
  const GmlGraph g = LoadFixture("small.gml");
  Topology topo;
  Vnode existing;
  existing.name = "chicago";
  ASSERT_TRUE(topo.AddVnode(existing).ok());
  auto r = ImportGml(g, GmlImportOptions{}, topo);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(topo.vnode(r->vnodes[1]).name, "chicago-2");
  // Importing the same graph again: every name gets a suffix.
  r = ImportGml(g, GmlImportOptions{}, topo);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(topo.vnode(r->vnodes[0]).name, "new-york-2");
  EXPECT_EQ(topo.vnode(r->vnodes[1]).name, "chicago-3");
  EXPECT_EQ(topo.vnode(r->vnodes[2]).name, "none-3");
  EXPECT_EQ(topo.vnode(r->vnodes[3]).name, "none-4");
  EXPECT_EQ(topo.num_vnodes(), 13u);
}

TEST(ImportGml, ErrorsAddNothing) {
  const GmlGraph g = LoadFixture("small.gml");
  Topology topo;
  Vnode existing;
  existing.name = "keep";
  ASSERT_TRUE(topo.AddVnode(existing).ok());
  GmlImportOptions opts;
  opts.prefix = "Bad_";
  auto r = ImportGml(g, opts, topo);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(r.status().message(), HasSubstr("gives 'Bad_new-york', not a valid vnode name"));
  EXPECT_EQ(topo.num_vnodes(), 1u);
  EXPECT_EQ(topo.num_links(), 0u);

  GmlGraph broken = g;
  broken.edges.push_back(GmlEdge{0, 99, std::nullopt, SourceLoc{"h.gml", 9, 3}});
  r = ImportGml(broken, GmlImportOptions{}, topo);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message(), "h.gml:9:3: edge to unknown node id 99");
  EXPECT_EQ(topo.num_vnodes(), 1u);
  EXPECT_EQ(topo.num_links(), 0u);
}

TEST(ImportGml, LongLabelsStayValidNames) {
  GmlGraph g;
  const std::string label(80, 'x');
  for (int64_t id = 0; id < 3; ++id) g.nodes.push_back(GmlNode{id, label, {}, {}, {}});
  Topology topo;
  GmlImportOptions opts;
  opts.prefix = "pre-";
  auto r = ImportGml(g, opts, topo);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(topo.vnode(r->vnodes[0]).name, "pre-" + std::string(59, 'x'));
  EXPECT_EQ(topo.vnode(r->vnodes[1]).name, "pre-" + std::string(57, 'x') + "-2");
  EXPECT_EQ(topo.vnode(r->vnodes[2]).name.size(), 63u);
  EXPECT_EQ(r->components, 3u);
}

// ---------------------------------------------------------------------------
// The Internet Topology Zoo, as shipped in the shared data directory.

fs::path ZooDir() { return testing::SharedDir() / "data" / "topologyzoo"; }

TEST(TopologyZoo, Abilene) {
  auto g = LoadGml((ZooDir() / "Abilene.gml").string());
  ASSERT_TRUE(g.ok()) << g.status().ToString();
  Topology topo;
  GmlImportOptions opts;
  opts.prefix = "ab-";
  opts.delay_from_geo = true;
  opts.default_rate_bps = 1'000'000'000;
  auto r = ImportGml(*g, opts, topo);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(topo.num_vnodes(), 11u);
  EXPECT_EQ(topo.num_links(), 14u);
  EXPECT_EQ(r->geo_delay_links, 14u);
  EXPECT_EQ(r->default_delay_links, 0u);
  EXPECT_EQ(r->components, 1u);
  EXPECT_TRUE(r->notes.empty());
  for (const Link& l : topo.links()) {
    ASSERT_TRUE(l.forward.delay.has_value());
    EXPECT_GT(*l.forward.delay, milliseconds(1));  // every Abilene hop is hundreds of km
    EXPECT_EQ(l.forward, l.reverse);
    EXPECT_EQ(l.forward.rate_bps, 1'000'000'000u);
  }
  auto ny_chi = topo.FindLink("ab-new-york--ab-chicago");
  ASSERT_TRUE(ny_chi.ok());
  EXPECT_NEAR(Ms(*topo.link(*ny_chi).forward.delay), 5.73, 0.05);
  EXPECT_EQ(topo.vnode(*topo.Find("ab-washington-dc")).label, "Washington DC");
  // Coast to coast: New York to Seattle crosses the continent (~3,900 km as
  // the crow flies, more along the links).
  auto path = ShortestPath(topo, *topo.Find("ab-new-york"), *topo.Find("ab-seattle"));
  ASSERT_TRUE(path.ok());
  const PathProperties props = PathPropertiesOf(topo, *path);
  EXPECT_GT(props.delay, milliseconds(19));
  EXPECT_LT(props.delay, milliseconds(40));
}

struct ZooCounts {
  size_t nodes = 0, edges = 0, self_loops = 0;
};

// Counts the blocks with regular expressions, independently of the parser.
ZooCounts CountBlocks(const std::string& text) {
  static const std::regex kNode(R"(\bnode\s*\[)");
  static const std::regex kEdge(R"(\bedge\s*\[)");
  static const std::regex kEnds(R"(\bedge\s*\[\s*source\s+(-?\d+)\s+target\s+(-?\d+))");
  ZooCounts c;
  c.nodes = std::distance(std::sregex_iterator(text.begin(), text.end(), kNode), {});
  c.edges = std::distance(std::sregex_iterator(text.begin(), text.end(), kEdge), {});
  size_t with_ends = 0;
  for (auto it = std::sregex_iterator(text.begin(), text.end(), kEnds);
       it != std::sregex_iterator(); ++it) {
    ++with_ends;
    if ((*it)[1] == (*it)[2]) ++c.self_loops;
  }
  EXPECT_EQ(with_ends, c.edges) << "an edge does not start with source/target";
  return c;
}

TEST(TopologyZoo, EveryFileImports) {
  const fs::path dir = ZooDir();
  ASSERT_TRUE(fs::is_directory(dir))
      << "Topology Zoo not found at " << dir << " (set GRIDEMU_SHARED_DIR)";
  std::vector<fs::path> files;
  for (const auto& e : fs::directory_iterator(dir)) {
    if (e.path().extension() == ".gml") files.push_back(e.path());
  }
  std::sort(files.begin(), files.end());
  ASSERT_GE(files.size(), 250u);
  size_t total_vnodes = 0, total_links = 0, disconnected = 0, with_self_loops = 0;
  for (const fs::path& f : files) {
    SCOPED_TRACE(f.filename().string());
    const ZooCounts expect = CountBlocks(ReadFile(f));
    auto g = LoadGml(f.string());
    ASSERT_TRUE(g.ok()) << g.status().ToString();
    EXPECT_EQ(g->nodes.size(), expect.nodes);
    EXPECT_EQ(g->edges.size(), expect.edges);
    Topology topo;
    GmlImportOptions opts;
    opts.prefix = "z-";
    opts.delay_from_geo = true;
    auto r = ImportGml(*g, opts, topo);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_EQ(topo.num_vnodes(), expect.nodes);
    EXPECT_EQ(topo.num_links(), expect.edges - expect.self_loops);
    EXPECT_EQ(r->vnodes.size(), expect.nodes);
    EXPECT_EQ(r->links.size(), expect.edges - expect.self_loops);
    EXPECT_EQ(r->geo_delay_links + r->default_delay_links, topo.num_links());
    for (const Vnode& v : topo.vnodes()) EXPECT_TRUE(IsValidVnodeName(v.name)) << v.name;
    size_t components = 0;
    ConnectedComponents(topo, &components);
    EXPECT_EQ(r->components, components);
    if (components > 1) {
      ++disconnected;
      EXPECT_THAT(r->notes, ::testing::Contains("graph is disconnected: " +
                                                std::to_string(components) + " components"));
    }
    if (expect.self_loops > 0) {
      ++with_self_loops;
      EXPECT_THAT(r->notes, ::testing::Contains(HasSubstr("self-loop")));
    }
    total_vnodes += topo.num_vnodes();
    total_links += topo.num_links();
  }
  std::printf(
      "topology zoo: %zu files, %zu vnodes, %zu links, %zu disconnected, "
      "%zu with self-loops\n",
      files.size(), total_vnodes, total_links, disconnected, with_self_loops);
  EXPECT_GT(disconnected, 0u);     // the zoo has disconnected graphs...
  EXPECT_GT(with_self_loops, 0u);  // ...and self-loops (Interoute)
}

}  // namespace
}  // namespace gridemu::topology

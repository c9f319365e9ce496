#include "gridemu/cli/topo.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <ostream>

#include "gridemu/common/units.h"
#include "gridemu/experiments/parse.h"
#include "gridemu/topology/gml.h"
#include "gridemu/topology/routing.h"

namespace gridemu::cli {
namespace {

using topology::Topology;
using topology::VnodeKind;

bool EndsWith(const std::string& s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::string Lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

// Summary of one direction-independent link quantity.
struct Summary {
  size_t count = 0;
  double min = 0, median = 0, max = 0;
};

Summary Summarize(std::vector<double> v) {
  Summary s;
  s.count = v.size();
  if (v.empty()) return s;
  std::sort(v.begin(), v.end());
  s.min = v.front();
  s.max = v.back();
  s.median = v[v.size() / 2];
  return s;
}

std::string Ms(double ns) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3fms", ns / 1e6);
  return buf;
}

}  // namespace

Result<LoadedTopology> LoadTopologyInput(const std::string& path) {
  LoadedTopology lt;
  lt.source = path;
  if (EndsWith(Lower(path), ".gml")) {
    GRIDEMU_ASSIGN_OR_RETURN(topology::GmlGraph g, topology::LoadGml(path));
    topology::GmlImportOptions opts;
    opts.delay_from_geo = true;
    GRIDEMU_ASSIGN_OR_RETURN(auto report, topology::ImportGml(g, opts, lt.topo));
    (void)report;
    lt.from_gml = true;
    lt.name = topology::SanitizeGmlLabel(std::filesystem::path(path).stem().string(), 0);
    return lt;
  }
  GRIDEMU_ASSIGN_OR_RETURN(experiments::Experiment exp, experiments::LoadExperiment(path));
  lt.topo = std::move(exp.topology);
  lt.tasks = exp.tasks.size();
  lt.events = exp.events.size();
  lt.name = exp.name;
  return lt;
}

int TopoValidate(const std::string& path, std::ostream& out, std::ostream& err) {
  auto lt = LoadTopologyInput(path);
  if (!lt.ok()) {
    err << lt.status().message() << "\n";
    return 1;
  }
  out << "ok: " << path << ": " << lt->topo.num_vnodes() << " vnodes, " << lt->topo.num_links()
      << " links";
  if (!lt->from_gml) out << ", " << lt->tasks << " tasks, " << lt->events << " events";
  out << "\n";
  return 0;
}

int TopoStats(const std::string& path, bool links, bool json, std::ostream& out, std::ostream& err) {
  auto lt = LoadTopologyInput(path);
  if (!lt.ok()) {
    err << lt.status().message() << "\n";
    return 1;
  }
  const Topology& t = lt->topo;
  topology::TopologyStats st = topology::ComputeStats(t);
  std::vector<double> delays, rates;
  size_t with_delay = 0, with_rate = 0;
  for (const auto& l : t.links()) {
    for (const LinkProfile* p : {&l.forward, &l.reverse}) {
      if (p->delay) delays.push_back(static_cast<double>(p->delay->count()));
      if (p->rate_bps) rates.push_back(static_cast<double>(*p->rate_bps));
    }
    if (l.forward.delay && l.reverse.delay) ++with_delay;
    if (l.forward.rate_bps && l.reverse.rate_bps) ++with_rate;
  }
  Summary ds = Summarize(delays), rs = Summarize(rates);

  if (json) {
    nlohmann::json j;
    j["source"] = path;
    j["vnodes"] = st.vnodes;
    j["links"] = st.links;
    j["hosts"] = st.hosts;
    j["routers"] = st.routers;
    j["switches"] = st.switches;
    j["components"] = st.components;
    j["largest_component"] = st.largest_component;
    j["degree"] = {{"min", st.min_degree}, {"mean", st.mean_degree}, {"max", st.max_degree}};
    nlohmann::json hist = nlohmann::json::array();
    for (auto [d, n] : st.degree_histogram) hist.push_back({d, n});
    j["degree_histogram"] = hist;
    j["diameter_hops"] = st.diameter_hops;
    j["diameter_exact"] = st.diameter_exact;
    j["links_with_delay"] = with_delay;
    j["links_with_rate"] = with_rate;
    if (ds.count) j["delay_ns"] = {{"min", ds.min}, {"median", ds.median}, {"max", ds.max}};
    if (rs.count) j["rate_bps"] = {{"min", rs.min}, {"median", rs.median}, {"max", rs.max}};
    if (links) {
      nlohmann::json arr = nlohmann::json::array();
      for (topology::LinkId i = 0; i < t.num_links(); ++i) {
        const auto& l = t.link(i);
        nlohmann::json e = {{"name", t.LinkName(i)}};
        if (l.forward.delay) e["delay_ns"] = l.forward.delay->count();
        if (l.reverse.delay) e["reverse_delay_ns"] = l.reverse.delay->count();
        if (l.forward.rate_bps) e["rate_bps"] = *l.forward.rate_bps;
        arr.push_back(e);
      }
      j["link_list"] = arr;
    }
    out << j.dump(2) << "\n";
    return 0;
  }

  out << path << "\n";
  out << "  vnodes      " << st.vnodes << " (" << st.hosts << " hosts, " << st.routers << " routers, "
      << st.switches << " switches)\n";
  out << "  links       " << st.links << "\n";
  out << "  components  " << st.components;
  if (st.components > 1) out << " (disconnected; largest has " << st.largest_component << " vnodes)";
  out << "\n";
  out << "  diameter    " << st.diameter_hops << " hops" << (st.diameter_exact ? "" : " (lower bound)")
      << "\n";
  char mean[32];
  std::snprintf(mean, sizeof mean, "%.2f", st.mean_degree);
  out << "  degree      min " << st.min_degree << ", mean " << mean << ", max " << st.max_degree << "\n";
  out << "  degree distribution (degree: vnodes)\n   ";
  size_t shown = 0;
  for (auto [d, n] : st.degree_histogram) {
    if (shown++ == 24) {
      out << " ... (" << st.degree_histogram.size() - 24 << " more degrees; use --json)";
      break;
    }
    out << " " << d << ":" << n;
  }
  out << "\n";
  out << "  link delay  " << with_delay << "/" << st.links << " links";
  if (ds.count) out << "; min " << Ms(ds.min) << ", median " << Ms(ds.median) << ", max " << Ms(ds.max);
  out << "\n";
  out << "  link rate   " << with_rate << "/" << st.links << " links";
  if (rs.count) {
    out << "; min " << FormatRate(static_cast<uint64_t>(rs.min)) << ", max "
        << FormatRate(static_cast<uint64_t>(rs.max));
  }
  out << "\n";
  if (links) {
    out << "  links:\n";
    for (topology::LinkId i = 0; i < t.num_links(); ++i) {
      const auto& l = t.link(i);
      out << "    " << t.LinkName(i) << "  delay "
          << (l.forward.delay ? FormatTime(*l.forward.delay) : std::string("-"));
      if (l.reverse.delay != l.forward.delay) {
        out << "/" << (l.reverse.delay ? FormatTime(*l.reverse.delay) : std::string("-"));
      }
      out << "  rate " << (l.forward.rate_bps ? FormatRate(*l.forward.rate_bps) : std::string("-"))
          << "\n";
    }
  }
  return 0;
}

int TopoRender(const std::string& path, const std::string& format, std::ostream& out,
               std::ostream& err) {
  if (format != "dot" && format != "json") {
    err << "unknown format '" << format << "'; expected dot or json\n";
    return 2;
  }
  auto lt = LoadTopologyInput(path);
  if (!lt.ok()) {
    err << lt.status().message() << "\n";
    return 1;
  }
  const Topology& t = lt->topo;
  if (format == "json") {
    nlohmann::json j;
    j["name"] = lt->name;
    nlohmann::json vs = nlohmann::json::array();
    for (const auto& v : t.vnodes()) {
      nlohmann::json e = {{"name", v.name}, {"kind", topology::VnodeKindName(v.kind)}};
      if (!v.group.empty()) {
        e["group"] = v.group;
        e["index"] = v.group_index;
      }
      if (!v.label.empty()) e["label"] = v.label;
      if (v.latitude && v.longitude) e["position"] = {*v.latitude, *v.longitude};
      vs.push_back(e);
    }
    j["vnodes"] = vs;
    nlohmann::json ls = nlohmann::json::array();
    for (topology::LinkId i = 0; i < t.num_links(); ++i) {
      const auto& l = t.link(i);
      ls.push_back({{"name", t.LinkName(i)},
                    {"endpoints", {t.vnode(l.a).name, t.vnode(l.b).name}},
                    {"forward", l.forward.ToString()},
                    {"reverse", l.reverse.ToString()}});
    }
    j["links"] = ls;
    out << j.dump(2) << "\n";
    return 0;
  }
  out << "graph \"" << lt->name << "\" {\n  node [fontsize=10];\n";
  for (const auto& v : t.vnodes()) {
    const char* shape = v.kind == VnodeKind::kRouter ? "circle"
                        : v.kind == VnodeKind::kSwitch ? "box"
                                                       : "ellipse";
    out << "  \"" << v.name << "\" [shape=" << shape << "];\n";
  }
  for (topology::LinkId i = 0; i < t.num_links(); ++i) {
    const auto& l = t.link(i);
    std::string label = l.forward.ToString();
    if (l.reverse != l.forward) label += " / " + l.reverse.ToString();
    out << "  \"" << t.vnode(l.a).name << "\" -- \"" << t.vnode(l.b).name << "\" [label=\"" << label
        << "\"];\n";
  }
  out << "}\n";
  return 0;
}

int TopoPaths(const std::string& path, bool json, std::ostream& out, std::ostream& err) {
  auto lt = LoadTopologyInput(path);
  if (!lt.ok()) {
    err << lt.status().message() << "\n";
    return 1;
  }
  const Topology& t = lt->topo;
  std::vector<topology::VnodeId> ends;
  for (topology::VnodeId v = 0; v < t.num_vnodes(); ++v) {
    if (t.vnode(v).kind == VnodeKind::kHost) ends.push_back(v);
  }
  if (ends.empty()) {
    for (topology::VnodeId v = 0; v < t.num_vnodes(); ++v) ends.push_back(v);
  }
  const size_t pairs = ends.size() * (ends.size() - (ends.empty() ? 0 : 1));
  if (pairs > 10'000) {
    err << path << ": " << pairs << " pairs of " << ends.size()
        << " vnodes is over the limit of 10000 for `topo paths`\n";
    return 2;
  }
  nlohmann::json arr = nlohmann::json::array();
  for (topology::VnodeId s : ends) {
    for (topology::VnodeId d : ends) {
      if (s == d) continue;
      auto p = topology::ShortestPath(t, s, d);
      const std::string& sn = t.vnode(s).name;
      const std::string& dn = t.vnode(d).name;
      if (!p.ok()) {
        if (json) {
          arr.push_back({{"src", sn}, {"dst", dn}, {"reachable", false}});
        } else {
          out << sn << " -> " << dn << "  unreachable\n";
        }
        continue;
      }
      topology::PathProperties pp = topology::PathPropertiesOf(t, *p);
      if (json) {
        nlohmann::json e = {{"src", sn},
                            {"dst", dn},
                            {"reachable", true},
                            {"delay_ns", pp.delay.count()},
                            {"loss", pp.loss},
                            {"hops", pp.hops}};
        if (pp.rate_bps) e["rate_bps"] = *pp.rate_bps;
        arr.push_back(e);
      } else {
        out << sn << " -> " << dn << "  delay " << FormatTime(pp.delay) << "  rate "
            << (pp.rate_bps ? FormatRate(*pp.rate_bps) : std::string("-")) << "  loss "
            << FormatRatio(pp.loss) << "  hops " << pp.hops << "\n";
      }
    }
  }
  if (json) out << nlohmann::json{{"source", path}, {"paths", arr}}.dump(2) << "\n";
  return 0;
}

namespace {

// Writes the keys of a profile in experiment-file syntax.
void EmitProfile(YAML::Emitter& y, const LinkProfile& p) {
  if (p.rate_bps) y << YAML::Key << "rate" << YAML::Value << FormatRate(*p.rate_bps);
  if (p.delay) y << YAML::Key << "delay" << YAML::Value << FormatTime(*p.delay);
  if (p.jitter) y << YAML::Key << "jitter" << YAML::Value << FormatTime(*p.jitter);
  if (p.loss) y << YAML::Key << "loss" << YAML::Value << FormatRatio(*p.loss);
  if (p.queue_packets) y << YAML::Key << "queue" << YAML::Value << *p.queue_packets;
}

}  // namespace

int TopoConvert(const std::string& path, const std::string& to, std::ostream& out, std::ostream& err) {
  if (to != "yaml") {
    err << "unknown target format '" << to << "'; expected yaml\n";
    return 2;
  }
  auto lt = LoadTopologyInput(path);
  if (!lt.ok()) {
    err << lt.status().message() << "\n";
    return 1;
  }
  const Topology& t = lt->topo;
  YAML::Emitter y;
  y << YAML::Comment("converted by `gridemu topo convert` from " +
                     std::filesystem::path(path).filename().string());
  y << YAML::BeginMap;
  y << YAML::Key << "name" << YAML::Value << lt->name;
  y << YAML::Key << "duration" << YAML::Value << "10m";
  y << YAML::Key << "topology" << YAML::Value << YAML::BeginMap;
  y << YAML::Key << "nodes" << YAML::Value << YAML::BeginMap;
  for (const auto& v : t.vnodes()) {
    y << YAML::Key << v.name << YAML::Value << YAML::Flow << YAML::BeginMap;
    y << YAML::Key << "kind" << YAML::Value << std::string(topology::VnodeKindName(v.kind));
    y << YAML::EndMap;
    if (!v.label.empty() && v.label != v.name) y << YAML::Comment(v.label);
  }
  y << YAML::EndMap;
  y << YAML::Key << "links" << YAML::Value << YAML::BeginSeq;
  for (const auto& l : t.links()) {
    y << YAML::Flow << YAML::BeginMap;
    y << YAML::Key << "endpoints" << YAML::Value << YAML::Flow << YAML::BeginSeq << t.vnode(l.a).name
      << t.vnode(l.b).name << YAML::EndSeq;
    if (l.forward == l.reverse) {
      EmitProfile(y, l.forward);
    } else {
      y << YAML::Key << "forward" << YAML::Value << YAML::Flow << YAML::BeginMap;
      EmitProfile(y, l.forward);
      y << YAML::EndMap;
      y << YAML::Key << "reverse" << YAML::Value << YAML::Flow << YAML::BeginMap;
      EmitProfile(y, l.reverse);
      y << YAML::EndMap;
    }
    y << YAML::EndMap;
  }
  y << YAML::EndSeq;
  y << YAML::EndMap;
  y << YAML::EndMap;
  out << y.c_str() << "\n";
  return 0;
}

}  // namespace gridemu::cli

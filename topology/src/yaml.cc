#include "gridemu/topology/yaml.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>
#include <utility>

#include "gridemu/common/random.h"
#include "gridemu/topology/generators.h"
#include "gridemu/topology/gml.h"
#include "gridemu/topology/selector.h"
#include "yaml_reader_internal.h"

namespace gridemu::topology {
namespace {

// clang-format off
constexpr std::string_view kProfileKeys[] = {
    "rate", "delay", "jitter", "delay_distribution", "delay_correlation", "loss",
    "loss_correlation", "loss_model", "duplicate", "reorder", "gap", "corrupt", "queue"};
constexpr std::string_view kDirectedProfileKeys[] = {
    "forward", "reverse",
    "rate", "delay", "jitter", "delay_distribution", "delay_correlation", "loss",
    "loss_correlation", "loss_model", "duplicate", "reorder", "gap", "corrupt", "queue"};
// clang-format on
constexpr std::string_view kLossModelKeys[] = {"p", "r", "1-h", "1-k"};

const std::string kNameRule =
    "use 1-63 characters of a-z, 0-9 and '-', not starting or ending with '-'";

// A prefix for generated names: [a-z0-9-]*, not starting with '-'.
bool IsValidPrefix(std::string_view p) {
  if (p.size() > 62) return false;
  for (char c : p) {
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-')) return false;
  }
  return p.empty() || p.front() != '-';
}

}  // namespace

using internal::Contains;
using internal::Join;
using internal::LineCol;
using internal::ScalarOf;
using internal::Wrap;

// ---------------------------------------------------------------------------
// Link profiles.

std::span<const std::string_view> ProfileKeys() { return kProfileKeys; }
std::span<const std::string_view> DirectedProfileKeys() { return kDirectedProfileKeys; }

bool ParseLinkProfileYaml(const YamlMap& map, const YamlContext& ctx, LinkProfile& out) {
  bool ok = true;
  auto set = [&ok](auto& dst, auto v) {
    if (v) {
      dst = *v;
    } else {
      ok = false;
    }
  };
  for (const YamlEntry& e : map.entries()) {
    const std::string& k = e.key;
    if (k == "rate") {
      set(out.rate_bps, ReadRate(e, ctx));
    } else if (k == "delay") {
      set(out.delay, ReadTime(e, ctx));
    } else if (k == "jitter") {
      set(out.jitter, ReadTime(e, ctx));
    } else if (k == "delay_distribution") {
      const std::string* s = ScalarOf(e, "a distribution name", ctx);
      if (s == nullptr) {
        ok = false;
      } else {
        set(out.delay_distribution, Wrap(e, ParseDelayDistribution(*s), ctx));
      }
    } else if (k == "delay_correlation") {
      set(out.delay_correlation, ReadRatio(e, ctx));
    } else if (k == "loss") {
      set(out.loss, ReadRatio(e, ctx));
    } else if (k == "loss_correlation") {
      set(out.loss_correlation, ReadRatio(e, ctx));
    } else if (k == "duplicate") {
      set(out.duplicate, ReadRatio(e, ctx));
    } else if (k == "reorder") {
      set(out.reorder, ReadRatio(e, ctx));
    } else if (k == "corrupt") {
      set(out.corrupt, ReadRatio(e, ctx));
    } else if (k == "gap") {
      auto v = ReadUint(e, 0, std::numeric_limits<uint32_t>::max(), ctx);
      if (v) {
        out.reorder_gap = static_cast<uint32_t>(*v);
      } else {
        ok = false;
      }
    } else if (k == "queue") {
      auto v = ReadUint(e, 0, std::numeric_limits<uint32_t>::max(), ctx);
      if (v) {
        out.queue_packets = static_cast<uint32_t>(*v);
      } else {
        ok = false;
      }
    } else if (k == "loss_model") {
      YamlMap lm(e, "loss_model", kLossModelKeys, ctx, e.field);
      if (!lm.valid()) {
        ok = false;
        continue;
      }
      GilbertElliott ge;
      bool ge_ok = lm.Require("p", ctx) != nullptr;
      for (const YamlEntry& x : lm.entries()) {
        auto v = ReadRatio(x, ctx);
        if (!v) {
          ge_ok = false;
          continue;
        }
        if (x.key == "p") ge.p = *v;
        if (x.key == "r") ge.r = *v;
        if (x.key == "1-h") ge.one_minus_h = *v;
        if (x.key == "1-k") ge.one_minus_k = *v;
      }
      if (ge_ok) {
        out.loss_gemodel = ge;
      } else {
        ok = false;
      }
    }
  }
  // Merging would silently keep neither (LinkProfile::MergedWith), so catch it here.
  if (const YamlEntry* lm = map.Find("loss_model"); lm != nullptr && map.Has("loss")) {
    ctx.Error(lm->key_node, lm->field + ": cannot be combined with loss (choose one)");
    ok = false;
  }
  return ok;
}

bool ParseDirectedProfileYaml(const YamlMap& map, const YamlContext& ctx, DirectedProfile& out) {
  bool ok = ParseLinkProfileYaml(map, ctx, out.both);
  LinkProfile dir[2];
  const char* names[2] = {"forward", "reverse"};
  for (int i = 0; i < 2; ++i) {
    const YamlEntry* e = map.Find(names[i]);
    if (e == nullptr) continue;
    YamlMap m(*e, names[i], kProfileKeys, ctx, e->field);
    ok = m.valid() && ParseLinkProfileYaml(m, ctx, dir[i]) && ok;
  }
  out.forward = out.both.MergedWith(dir[0]);
  out.reverse = out.both.MergedWith(dir[1]);
  return ok;
}

namespace {

// The entry that set a field named in a ValidateAll() message ("loss",
// "loss_model.p") inside a profile mapping, or nullptr.
const YamlEntry* FindField(const YamlMap& map, std::string_view field, const YamlContext& quiet,
                           YamlMap& scratch) {
  size_t dot = field.find('.');
  const YamlEntry* e = map.Find(field.substr(0, dot));
  if (e == nullptr || dot == std::string_view::npos) return e;
  scratch = YamlMap(*e, "loss_model", kLossModelKeys, quiet, e->field);
  if (const YamlEntry* sub = scratch.Find(field.substr(dot + 1))) return sub;
  return e;
}

std::vector<std::string> NewProblems(const LinkProfile& p, const LinkProfile* base) {
  std::vector<std::string> errs = p.ValidateAll();
  if (base == nullptr) return errs;
  std::vector<std::string> old = base->ValidateAll();
  std::erase_if(errs, [&](const std::string& s) {
    return std::find(old.begin(), old.end(), s) != old.end();
  });
  return errs;
}

}  // namespace

bool ReportProfileProblems(const YamlMap& map, const LinkProfile& forward,
                           const LinkProfile& reverse, const YamlContext& ctx,
                           const LinkProfile* base_forward, const LinkProfile* base_reverse) {
  std::vector<std::string> errs[2] = {NewProblems(forward, base_forward),
                                      NewProblems(reverse, base_reverse)};
  if (errs[0].empty() && errs[1].empty()) return true;
  YamlContext quiet = ctx;
  quiet.diags = nullptr;
  const char* names[2] = {"forward", "reverse"};
  YamlMap dir[2];
  for (int i = 0; i < 2; ++i) {
    if (const YamlEntry* e = map.Find(names[i]))
      dir[i] = YamlMap(*e, names[i], kProfileKeys, quiet);
  }
  std::vector<bool> done(errs[1].size(), false);
  for (int i = 0; i < 2; ++i) {
    for (size_t j = 0; j < errs[i].size(); ++j) {
      if (i == 1 && done[j]) continue;
      const std::string& err = errs[i][j];
      const std::string field = err.substr(0, err.find(':'));
      YamlMap scratch;
      if (const YamlEntry* e = FindField(dir[i], field, quiet, scratch)) {
        ctx.Error(e->at(), std::string(names[i]) + "." + err);
        continue;
      }
      YamlMap scratch_top;
      const YamlEntry* top = FindField(map, field, quiet, scratch_top);
      if (i == 0 && top != nullptr) {
        // Same problem in the other direction, from the same top-level key?
        YamlMap scratch_rev;
        auto it = std::find(errs[1].begin(), errs[1].end(), err);
        if (it != errs[1].end() && FindField(dir[1], field, quiet, scratch_rev) == nullptr) {
          done[static_cast<size_t>(it - errs[1].begin())] = true;
          ctx.Error(top->at(), err);
          continue;
        }
      }
      ctx.Error(top != nullptr ? top->at() : map.node(), std::string(names[i]) + "." + err);
    }
  }
  return false;
}

// ---------------------------------------------------------------------------
// The topology section.

bool TopologyYamlInfo::IsFailedName(std::string_view name) const {
  std::string_view base = name.substr(0, name.find('['));
  if (failed_names.count(std::string(base)) != 0) return true;
  for (const std::string& p : failed_prefixes) {
    if (base.substr(0, p.size()) == p) return true;
  }
  for (const auto& [prefix, suffix] : failed_patterns) {
    if (base.size() <= prefix.size() + suffix.size()) continue;
    if (base.substr(0, prefix.size()) != prefix) continue;
    if (base.substr(base.size() - suffix.size()) != suffix) continue;
    std::string_view digits =
        base.substr(prefix.size(), base.size() - prefix.size() - suffix.size());
    if (std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; })) {
      return true;
    }
  }
  return false;
}

namespace {

constexpr std::string_view kTopologyKeys[] = {"defaults", "nodes",  "groups",
                                              "links",    "import", "generate"};
constexpr std::string_view kDefaultsKeys[] = {"runtime", "kind", "resources"};
constexpr std::string_view kNodeKeys[] = {"kind", "runtime", "resources", "host"};
constexpr std::string_view kGroupKeys[] = {"count", "name",    "link_to",   "link",
                                           "kind",  "runtime", "resources", "host"};
constexpr std::string_view kResourceKeys[] = {"cpu", "memory", "pids"};
// clang-format off
constexpr std::string_view kLinkKeys[] = {
    "endpoints", "forward", "reverse",
    "rate", "delay", "jitter", "delay_distribution", "delay_correlation", "loss",
    "loss_correlation", "loss_model", "duplicate", "reorder", "gap", "corrupt", "queue"};
// clang-format on
constexpr std::string_view kImportKeys[] = {"gml",  "prefix",     "delay", "default_delay",
                                            "rate", "link_speed", "kind",  "link"};
// clang-format off
constexpr std::string_view kGenerateKeys[] = {
    "model", "n", "m", "fanout", "depth", "rows", "cols", "alpha", "beta", "transit_domains",
    "transit_nodes", "stubs_per_transit", "stub_nodes", "prefix", "kind", "link", "seed"};
// The model parameters among them.
constexpr std::string_view kModelParams[] = {
    "n", "m", "fanout", "depth", "rows", "cols", "alpha", "beta", "transit_domains",
    "transit_nodes", "stubs_per_transit", "stub_nodes"};
// clang-format on

// Models, their names and the parameters each reads (generators.h).
struct ModelInfo {
  std::string_view name;
  GraphModel model;
  std::vector<std::string_view> params;    // keys it reads
  std::vector<std::string_view> required;  // keys without a usable default
};

const std::vector<ModelInfo>& Models() {
  static const std::vector<ModelInfo> models = {
      {"line", GraphModel::kLine, {"n"}, {"n"}},
      {"ring", GraphModel::kRing, {"n"}, {"n"}},
      {"star", GraphModel::kStar, {"n"}, {"n"}},
      {"tree", GraphModel::kTree, {"fanout", "depth"}, {}},
      {"grid", GraphModel::kGrid, {"rows", "cols"}, {"rows", "cols"}},
      {"torus", GraphModel::kTorus, {"rows", "cols"}, {"rows", "cols"}},
      {"full-mesh", GraphModel::kFullMesh, {"n"}, {"n"}},
      {"dumbbell", GraphModel::kDumbbell, {"n"}, {"n"}},
      {"waxman", GraphModel::kWaxman, {"n", "alpha", "beta"}, {"n"}},
      {"barabasi-albert", GraphModel::kBarabasiAlbert, {"n", "m"}, {"n"}},
      {"transit-stub",
       GraphModel::kTransitStub,
       {"transit_domains", "transit_nodes", "stubs_per_transit", "stub_nodes"},
       {}},
  };
  return models;
}

constexpr uint64_t kMaxVnodes = 1'000'000;
constexpr uint64_t kMaxGroupCount = 1'000'000;
constexpr uint64_t kMaxPids = 4'194'304;  // the kernel's PID_MAX_LIMIT

// Saturating arithmetic for size estimates.
uint64_t SatMul(uint64_t a, uint64_t b) {
  if (a != 0 && b > std::numeric_limits<uint64_t>::max() / a) {
    return std::numeric_limits<uint64_t>::max();
  }
  return a * b;
}
uint64_t SatAdd(uint64_t a, uint64_t b) {
  return a > std::numeric_limits<uint64_t>::max() - b ? std::numeric_limits<uint64_t>::max()
                                                      : a + b;
}

// Vnodes a spec would create (saturating).
uint64_t NodeCount(const GraphSpec& s) {
  switch (s.model) {
    case GraphModel::kTree: {
      uint64_t total = 1, level = 1;
      for (uint32_t d = 0; d < s.depth && total <= kMaxVnodes; ++d) {
        level = SatMul(level, s.fanout);
        total = SatAdd(total, level);
      }
      return total;
    }
    case GraphModel::kGrid:
    case GraphModel::kTorus:
      return SatMul(s.rows, s.cols);
    case GraphModel::kDumbbell:
      return SatAdd(SatMul(2, s.n), 2);
    case GraphModel::kTransitStub: {
      uint64_t transit = SatMul(s.transit_domains, s.transit_nodes);
      return SatAdd(transit, SatMul(transit, SatMul(s.stubs_per_transit, s.stub_nodes)));
    }
    default:
      return s.n;
  }
}

// Settings shared by defaults, nodes and groups.
struct VnodeSettings {
  std::optional<VnodeKind> kind;
  std::optional<Runtime> runtime;
  Resources resources;
  std::string host;
};

class TopologyParser {
 public:
  TopologyParser(const YamlContext& ctx, Topology& topo) : ctx_(ctx), topo_(topo) {}

  TopologyYamlInfo Run(const YAML::Node& node, const YAML::Node* key, std::string_view field) {
    YamlMap top;
    if (key != nullptr) {
      YamlEntry e;
      e.key = e.field = std::string(field);
      e.key_node = *key;
      e.value = node;
      top = YamlMap(e, "topology", kTopologyKeys, ctx_);
    } else {
      top = YamlMap(node, "topology", kTopologyKeys, ctx_);
    }
    if (!top.valid()) return std::move(info_);
    if (const YamlEntry* e = top.Find("defaults")) ParseDefaults(*e);
    if (const YamlEntry* e = top.Find("nodes")) ParseNodes(*e);
    if (const YamlEntry* e = top.Find("groups")) ParseGroups(*e);
    if (const YamlEntry* e = top.Find("import")) ParseImports(*e);
    if (const YamlEntry* e = top.Find("generate")) ParseGenerators(*e);
    LinkGroups();
    if (const YamlEntry* e = top.Find("links")) ParseLinks(*e);
    CheckGroupNames();
    return std::move(info_);
  }

 private:
  // A `groups:` entry, kept until its links can be made.
  struct GroupDecl {
    std::string name;
    YAML::Node key;
    std::optional<YamlEntry> link_to;
    std::optional<YamlEntry> link;
    DirectedProfile profile;
    bool profile_ok = true;
    bool created = false;
    std::vector<VnodeId> members;
  };

  // Names starting with `prefix` were meant to be created by a failed entry.
  void AddFailedPrefix(const std::string& prefix) {
    if (!prefix.empty()) info_.failed_prefixes.push_back(prefix);
  }

  // --- settings --------------------------------------------------------------

  std::optional<Resources> ParseResources(const YamlEntry& e) {
    YamlMap m(e, "resources", kResourceKeys, ctx_);
    if (!m.valid()) return std::nullopt;
    Resources r;
    bool ok = true;
    for (const YamlEntry& x : m.entries()) {
      if (x.key == "cpu") {
        auto v = ReadDouble(x, ctx_);
        if (v && *v <= 0) {
          ctx_.Error(x.at(),
                     x.field + ": must be greater than 0 cores, got '" + x.value.Scalar() + "'");
          v.reset();
        }
        if (v) r.cpu = *v;
        ok = ok && v.has_value();
      } else if (x.key == "memory") {
        auto v = ReadSize(x, ctx_);
        if (v && *v == 0) {
          ctx_.Error(x.at(), x.field + ": must be greater than 0 bytes");
          v.reset();
        }
        if (v) r.memory_bytes = *v;
        ok = ok && v.has_value();
      } else if (x.key == "pids") {
        auto v = ReadUint(x, 1, kMaxPids, ctx_);
        if (v) r.pids = static_cast<uint32_t>(*v);
        ok = ok && v.has_value();
      }
    }
    if (!ok) return std::nullopt;
    return r;
  }

  std::optional<VnodeKind> ParseKind(const YamlEntry& e) {
    const std::string* s = ScalarOf(e, "a vnode kind (host, router or switch)", ctx_);
    if (s == nullptr) return std::nullopt;
    return Wrap(e, ParseVnodeKind(*s), ctx_);
  }

  // Reads kind, runtime, resources and host from `m`; false if any was bad.
  bool ParseSettings(const YamlMap& m, VnodeSettings& s) {
    bool ok = true;
    if (const YamlEntry* e = m.Find("kind")) {
      s.kind = ParseKind(*e);
      ok = ok && s.kind.has_value();
    }
    if (const YamlEntry* e = m.Find("runtime")) {
      const std::string* t = ScalarOf(*e, "a runtime (netns, lxc or qemu)", ctx_);
      if (t != nullptr) s.runtime = Wrap(*e, ParseRuntime(*t), ctx_);
      ok = ok && s.runtime.has_value();
    }
    if (const YamlEntry* e = m.Find("resources")) {
      auto r = ParseResources(*e);
      if (r) s.resources = *r;
      ok = ok && r.has_value();
    }
    if (const YamlEntry* e = m.Find("host")) {
      auto h = ReadString(*e, ctx_);
      if (h) s.host = *h;
      ok = ok && h.has_value();
    }
    return ok;
  }

  void ParseDefaults(const YamlEntry& e) {
    YamlMap m(e, "defaults", kDefaultsKeys, ctx_, "", NullMap::kEmpty);
    if (!m.valid()) return;
    VnodeSettings s;
    ParseSettings(m, s);
    default_kind_ = s.kind;
    if (s.runtime) default_runtime_ = *s.runtime;
    default_resources_ = s.resources;
  }

  // A vnode with the defaults applied, then `s` over them.
  Vnode MakeVnode(const VnodeSettings& s) const {
    Vnode v;
    v.kind = s.kind.value_or(default_kind_.value_or(VnodeKind::kHost));
    v.runtime = s.runtime.value_or(default_runtime_);
    v.resources = default_resources_.MergedWith(s.resources);
    v.host = s.host;
    return v;
  }

  // --- vnodes ----------------------------------------------------------------

  size_t AddOrigin(std::string text) {
    origins_.push_back(std::move(text));
    return origins_.size() - 1;
  }

  std::string OriginOf(VnodeId id) const {
    return id < origin_of_.size() ? origins_[origin_of_[id]] : "an earlier definition";
  }

  // Adds a vnode whose name is known to be valid; nullopt when the name is
  // taken (reported by the caller, with `clash` set to the existing vnode).
  // `name` is v.name (kept by the caller: `v` is consumed).
  std::optional<VnodeId> AddVnode(Vnode v, const std::string& name, size_t origin,
                                  std::optional<VnodeId>* clash) {
    auto r = topo_.AddVnode(std::move(v));
    if (!r.ok()) {
      *clash = topo_.Find(name);
      return std::nullopt;
    }
    origin_of_.push_back(static_cast<uint32_t>(origin));
    return *r;
  }

  std::string DuplicateMessage(const std::string& name, std::optional<VnodeId> existing) const {
    return "duplicate vnode name '" + name + "' (also defined by " +
           (existing ? OriginOf(*existing) : std::string("an earlier definition")) + ")";
  }

  bool CheckName(const std::string& name, const YAML::Node& at, std::string_view what) {
    if (IsValidVnodeName(name)) return true;
    ctx_.Error(at, "invalid " + std::string(what) + " name '" + name + "': " + kNameRule);
    info_.failed_names.insert(name);
    return false;
  }

  void ParseNodes(const YamlEntry& e) {
    YamlMap nodes(e, "nodes", {}, ctx_, "", NullMap::kEmpty);
    for (const YamlEntry& n : nodes.entries()) {
      const std::string& name = n.key;
      bool ok = CheckName(name, n.key_node, "vnode");
      YamlMap m(n, "node '" + name + "'", kNodeKeys, ctx_, "", NullMap::kEmpty);
      VnodeSettings s;
      ok = m.valid() && ParseSettings(m, s) && ok;
      if (!ok) {
        info_.failed_names.insert(name);
        continue;
      }
      Vnode v = MakeVnode(s);
      v.name = name;
      v.loc = LocOf(n.key_node, ctx_);
      std::optional<VnodeId> clash;
      if (!AddVnode(std::move(v), name, AddOrigin("the node at " + LineCol(n.key_node)), &clash)) {
        ctx_.Error(n.key_node, DuplicateMessage(name, clash));
      }
    }
  }

  void ParseGroups(const YamlEntry& e) {
    YamlMap groups(e, "groups", {}, ctx_, "", NullMap::kEmpty);
    groups_.reserve(groups.entries().size());
    for (const YamlEntry& g : groups.entries()) ParseGroup(g);
  }

  void ParseGroup(const YamlEntry& g) {
    GroupDecl decl;
    decl.name = g.key;
    decl.key = g.key_node;
    bool ok = CheckName(decl.name, g.key_node, "group");
    YamlMap m(g, "group '" + decl.name + "'", kGroupKeys, ctx_);
    if (!m.valid()) {
      info_.failed_names.insert(decl.name);
      return;
    }
    VnodeSettings s;
    ok = ParseSettings(m, s) && ok;
    std::optional<uint64_t> count;
    if (const YamlEntry* c = m.Require("count", ctx_))
      count = ReadUint(*c, 1, kMaxGroupCount, ctx_);
    ok = ok && count.has_value();
    // Name pattern: exactly one {i}.
    std::string prefix = decl.name, suffix;
    if (const YamlEntry* n = m.Find("name")) {
      auto pattern = ReadString(*n, ctx_);
      if (!pattern) {
        ok = false;
      } else {
        size_t at = pattern->find("{i}");
        if (at == std::string::npos || pattern->find("{i}", at + 1) != std::string::npos) {
          ctx_.Error(n->at(), "name: pattern '" + *pattern + "' must contain {i} exactly once");
          ok = false;
        } else {
          prefix = pattern->substr(0, at);
          suffix = pattern->substr(at + 3);
          // The first and the longest names bound every member's validity.
          for (uint64_t i : {uint64_t{0}, count.value_or(1) - 1}) {
            std::string sample = prefix + std::to_string(i) + suffix;
            if (!IsValidVnodeName(sample)) {
              ctx_.Error(n->at(), "name: pattern '" + *pattern + "' gives an invalid vnode name '" +
                                      sample + "': " + kNameRule);
              ok = false;
              break;
            }
          }
        }
      }
    } else if (count && IsValidVnodeName(decl.name) &&
               !IsValidVnodeName(prefix + std::to_string(*count - 1))) {
      ctx_.Error(g.key_node, "group '" + decl.name + "': member names such as '" + prefix +
                                 std::to_string(*count - 1) +
                                 "' are longer than 63 characters; give a name: pattern");
      ok = false;
    }
    if (const YamlEntry* l = m.Find("link_to")) {
      decl.link_to = *l;
      if (!l->value.IsScalar()) {
        ctx_.Error(l->at(), "link_to: expected a vnode name, got " + DescribeYamlValue(l->value));
        decl.link_to.reset();
        ok = false;
      }
    }
    if (const YamlEntry* l = m.Find("link")) {
      decl.link = *l;
      YamlMap lm(*l, "link of group '" + decl.name + "'", kDirectedProfileKeys, ctx_);
      decl.profile_ok = lm.valid() && ParseDirectedProfileYaml(lm, ctx_, decl.profile);
      if (decl.profile_ok) {
        decl.profile_ok =
            ReportProfileProblems(lm, decl.profile.forward, decl.profile.reverse, ctx_);
      }
      if (!m.Has("link_to")) {
        ctx_.Error(l->key_node, "link: needs link_to (the vnode that every member links to)");
        ok = false;
      }
    }
    if (!ok) {
      info_.failed_names.insert(decl.name);
      info_.failed_patterns.emplace_back(prefix, suffix);
      groups_.push_back(std::move(decl));
      return;
    }
    // Expand the members.
    const size_t origin = AddOrigin("group '" + decl.name + "' at " + LineCol(g.key_node));
    const SourceLoc loc = LocOf(g.key_node, ctx_);
    Vnode proto = MakeVnode(s);
    proto.group = decl.name;
    proto.loc = loc;
    decl.members.reserve(*count);
    topo_.Reserve(*count, decl.link_to ? *count : 0);
    std::optional<VnodeId> first_clash;
    std::string first_clash_name;
    uint64_t clashes = 0;
    std::string name;
    for (uint64_t i = 0; i < *count; ++i) {
      name = prefix;
      name += std::to_string(i);
      name += suffix;
      Vnode v = proto;
      v.name = name;
      v.group_index = static_cast<int64_t>(i);
      std::optional<VnodeId> clash;
      auto id = AddVnode(std::move(v), name, origin, &clash);
      if (id) {
        decl.members.push_back(*id);
      } else if (clashes++ == 0) {
        first_clash = clash;
        first_clash_name = name;
      }
    }
    if (clashes > 0) {
      std::string msg = DuplicateMessage(first_clash_name, first_clash);
      if (clashes > 1) {
        msg += "; " + std::to_string(clashes - 1) + " more member name" + (clashes > 2 ? "s" : "") +
               " of group '" + decl.name + "' clash too";
      }
      ctx_.Error(g.key_node, std::move(msg));
      info_.failed_names.insert(decl.name);
      groups_.push_back(std::move(decl));
      return;
    }
    Group group;
    group.name = decl.name;
    group.members = decl.members;
    group.loc = loc;
    Status st = topo_.AddGroup(std::move(group));
    if (!st.ok()) {
      ctx_.Error(g.key_node, st.message());
      info_.failed_names.insert(decl.name);
    } else {
      decl.created = true;
    }
    groups_.push_back(std::move(decl));
  }

  // Resolves a vnode reference; reports "<field>: no vnode named 'x'" (or that
  // it is a group) unless the name failed earlier. nullopt on failure.
  std::optional<VnodeId> ResolveVnode(const std::string& name, const YAML::Node& at,
                                      const std::string& field) {
    if (auto id = topo_.Find(name)) return id;
    if (info_.IsFailedName(name)) return std::nullopt;
    if (topo_.FindGroup(name) != nullptr) {
      ctx_.Error(at, field + ": '" + name + "' is a group; expected a vnode name");
    } else {
      ctx_.Error(at, field + ": no vnode named '" + name + "'");
    }
    return std::nullopt;
  }

  void LinkGroups() {
    for (GroupDecl& g : groups_) {
      if (!g.link_to) continue;
      const std::string& target_name = g.link_to->value.Scalar();
      auto target = ResolveVnode(target_name, g.link_to->value, "link_to");
      if (!target || !g.created || !g.profile_ok) continue;
      const Vnode& t = topo_.vnode(*target);
      if (t.group == g.name) {
        ctx_.Error(g.link_to->value, "link_to: '" + target_name + "' is a member of group '" +
                                         g.name + "' itself; a vnode cannot link to itself");
        continue;
      }
      const SourceLoc loc = LocOf(g.key, ctx_);
      for (VnodeId member : g.members) {
        Link l;
        l.a = member;
        l.b = *target;
        l.forward = g.profile.forward;
        l.reverse = g.profile.reverse;
        l.loc = loc;
        (void)topo_.AddLink(std::move(l));  // ends exist and differ
      }
    }
  }

  void ParseLinks(const YamlEntry& e) {
    if (!ExpectList(e, "links", ctx_) || e.value.IsNull()) return;
    for (const YAML::Node& item : e.value) {
      YamlMap m(item, "link", kLinkKeys, ctx_);
      if (!m.valid()) continue;
      bool ok = true;
      std::optional<VnodeId> ends[2];
      if (const YamlEntry* ep = m.Require("endpoints", ctx_)) {
        const YAML::Node& v = ep->value;
        if (!v.IsSequence() || v.size() != 2 || !v[0].IsScalar() || !v[1].IsScalar()) {
          ctx_.Error(ep->at(), "endpoints: expected a list of two vnode names, got " +
                                   (v.IsSequence() ? "a list of " + std::to_string(v.size()) +
                                                         (v.size() == 1 ? " item" : " items")
                                                   : DescribeYamlValue(v)));
          ok = false;
        } else {
          for (int i = 0; i < 2; ++i) {
            ends[i] = ResolveVnode(v[i].Scalar(), v[i], "endpoints");
            ok = ok && ends[i].has_value();
          }
          if (ok && *ends[0] == *ends[1]) {
            ctx_.Error(v, "endpoints: self-link on '" + v[0].Scalar() +
                              "': a link needs two different vnodes");
            ok = false;
          }
        }
      } else {
        ok = false;
      }
      DirectedProfile p;
      if (ParseDirectedProfileYaml(m, ctx_, p))
        ReportProfileProblems(m, p.forward, p.reverse, ctx_);
      // A link with bad profile values is still added (the parse fails anyway),
      // so that events naming it do not report it as missing.
      if (!ok) continue;
      Link l;
      l.a = *ends[0];
      l.b = *ends[1];
      l.forward = p.forward;
      l.reverse = p.reverse;
      l.loc = LocOf(m.node(), ctx_);
      (void)topo_.AddLink(std::move(l));
    }
  }

  // A `prefix:` entry; nullopt (reported) when it cannot start vnode names.
  std::optional<std::string> ReadPrefix(const YamlEntry& e) {
    auto p = ReadString(e, ctx_, /*allow_empty=*/true);
    if (!p) return std::nullopt;
    if (!IsValidPrefix(*p)) {
      ctx_.Error(e.at(), "prefix: '" + *p + "' may only contain a-z, 0-9 and '-', must not " +
                             "start with '-' and must be shorter than 63 characters");
      return std::nullopt;
    }
    return p;
  }

  void ParseImports(const YamlEntry& e) {
    if (!ExpectList(e, "imports", ctx_) || e.value.IsNull()) return;
    for (const YAML::Node& item : e.value) ParseImport(item);
  }

  void ParseImport(const YAML::Node& item) {
    YamlMap m(item, "import", kImportKeys, ctx_);
    if (!m.valid()) return;
    bool ok = true;
    GmlImportOptions opts;
    if (const YamlEntry* p = m.Find("prefix")) {
      auto v = ReadPrefix(*p);
      if (v) opts.prefix = *v;
      ok = ok && v.has_value();
    }
    const YamlEntry* delay = m.Find("delay");
    if (delay != nullptr) {
      if (delay->value.IsScalar() && delay->value.Scalar() == "from-geo") {
        opts.delay_from_geo = true;
      } else if (auto t = ReadTime(*delay, ctx_)) {
        opts.default_delay = *t;
      } else {
        ok = false;
      }
    }
    if (const YamlEntry* d = m.Find("default_delay")) {
      if (auto t = ReadTime(*d, ctx_)) {
        if (!opts.delay_from_geo) {
          ctx_.Error(d->key_node,
                     "default_delay: only used with delay: from-geo (for ends "
                     "without coordinates)");
          ok = false;
        } else {
          opts.default_delay = *t;
        }
      } else {
        ok = false;
      }
    }
    if (const YamlEntry* r = m.Find("rate")) {
      auto v = ReadRate(*r, ctx_);
      if (v && *v == 0) {
        ctx_.Error(r->at(), "rate: must be greater than 0bit");
        v.reset();
      }
      if (v) opts.default_rate_bps = *v;
      ok = ok && v.has_value();
    }
    if (const YamlEntry* b = m.Find("link_speed")) {
      auto v = ReadBool(*b, ctx_);
      if (v) opts.use_link_speed = *v;
      ok = ok && v.has_value();
    }
    if (const YamlEntry* k = m.Find("kind")) {
      auto v = ParseKind(*k);
      if (v) opts.kind = *v;
      ok = ok && v.has_value();
    }
    if (const YamlEntry* l = m.Find("link")) {
      YamlMap lm(*l, "import link", kProfileKeys, ctx_);
      bool lok = lm.valid() && ParseLinkProfileYaml(lm, ctx_, opts.extra);
      for (const char* key : {"rate", "delay"}) {
        if (const YamlEntry* x = lm.Find(key)) {
          ctx_.Error(x->key_node,
                     "link: set " + std::string(key) + " at the import's top level, not in link");
          lok = false;
        }
      }
      if (lok) {
        LinkProfile sample;
        sample.delay = opts.default_delay;
        sample = sample.MergedWith(opts.extra);
        lok = ReportProfileProblems(lm, sample, sample, ctx_);
      }
      ok = ok && lok;
    }
    // The GML file, read here so that its diagnostics name it as the user
    // wrote it (relative to the experiment file), not as resolved.
    std::string gml_text, gml_name;
    if (const YamlEntry* g = m.Require("gml", ctx_)) {
      if (auto v = ReadString(*g, ctx_)) {
        gml_name = *v;
        std::filesystem::path p(*v);
        if (p.is_relative()) p = std::filesystem::path(ctx_.base_dir) / p;
        std::error_code ec;
        const bool is_dir = std::filesystem::is_directory(p, ec);
        std::ifstream in;
        errno = 0;
        if (!is_dir) in.open(p, std::ios::binary);
        std::ostringstream text;
        if (in) text << in.rdbuf();
        if (is_dir || !in || in.bad()) {
          const std::string why = is_dir ? "it is a directory" : std::strerror(errno);
          ctx_.Error(g->at(), "gml: cannot read '" + *v + "': " + why);
          ok = false;
        }
        gml_text = text.str();
      } else {
        ok = false;
      }
    } else {
      ok = false;
    }
    if (!ok) {
      AddFailedPrefix(opts.prefix);
      return;
    }
    const YamlEntry* g = m.Find("gml");
    auto graph = ParseGml(gml_text, gml_name);
    if (!graph.ok()) {
      // One diagnostic per GML problem, each quoting the GML file's position.
      const std::string msg = graph.status().message();
      size_t start = 0;
      while (start <= msg.size()) {
        size_t end = msg.find('\n', start);
        if (end == std::string::npos) end = msg.size();
        if (end > start) ctx_.Error(g->at(), "gml: " + msg.substr(start, end - start));
        start = end + 1;
      }
      AddFailedPrefix(opts.prefix);
      return;
    }
    const size_t first_vnode = topo_.num_vnodes();
    auto report = ImportGml(*graph, opts, topo_);
    if (!report.ok()) {
      ctx_.Error(m.node(), "import: " + report.status().message());
      AddFailedPrefix(opts.prefix);
      return;
    }
    const size_t origin = AddOrigin("the import at " + LineCol(m.node()));
    for (size_t id = first_vnode; id < topo_.num_vnodes(); ++id) {
      Vnode& v = topo_.mutable_vnode(static_cast<VnodeId>(id));
      v.runtime = default_runtime_;
      v.resources = default_resources_.MergedWith(v.resources);
      origin_of_.push_back(static_cast<uint32_t>(origin));
    }
  }

  void ParseGenerators(const YamlEntry& e) {
    if (!ExpectList(e, "generators", ctx_) || e.value.IsNull()) return;
    size_t index = 0;
    for (const YAML::Node& item : e.value) ParseGenerator(item, index++);
  }

  void ParseGenerator(const YAML::Node& item, size_t index) {
    YamlMap m(item, "generate", kGenerateKeys, ctx_);
    if (!m.valid()) return;
    bool ok = true;
    std::string prefix = "g" + std::to_string(index) + "-";
    if (const YamlEntry* p = m.Find("prefix")) {
      auto v = ReadPrefix(*p);
      if (v) prefix = *v;
      ok = ok && v.has_value();
    }
    const ModelInfo* model = nullptr;
    const YamlEntry* model_entry = m.Require("model", ctx_);
    if (model_entry != nullptr) {
      if (const std::string* s = ScalarOf(*model_entry, "a model name", ctx_)) {
        for (const ModelInfo& mi : Models()) {
          if (mi.name == *s) model = &mi;
        }
        if (model == nullptr) {
          std::vector<std::string_view> names;
          for (const ModelInfo& mi : Models()) names.push_back(mi.name);
          ctx_.Error(model_entry->at(),
                     "model: unknown model '" + *s + "'; expected one of " + Join(names));
        }
      }
    }
    ok = ok && model != nullptr;
    GraphSpec spec;
    if (model != nullptr) spec.model = model->model;
    for (const YamlEntry& x : m.entries()) {
      if (!Contains(kModelParams, x.key)) continue;
      if (model != nullptr && !Contains(model->params, x.key)) {
        ctx_.Error(x.key_node, x.field + ": not used by model '" + std::string(model->name) +
                                   "' (it reads " + Join(model->params) + ")");
        ok = false;
        continue;
      }
      if (x.key == "alpha" || x.key == "beta") {
        auto v = ReadDouble(x, ctx_);
        if (v && !(*v > 0 && *v <= 1)) {
          ctx_.Error(x.at(), x.field + ": must be in (0, 1], got '" + x.value.Scalar() + "'");
          v.reset();
        }
        if (v) (x.key == "alpha" ? spec.alpha : spec.beta) = *v;
        ok = ok && v.has_value();
        continue;
      }
      auto v = ReadUint(x, 1, kMaxVnodes, ctx_);
      ok = ok && v.has_value();
      if (!v) continue;
      const auto u = static_cast<uint32_t>(*v);
      if (x.key == "n") spec.n = u;
      if (x.key == "m") spec.m = u;
      if (x.key == "fanout") spec.fanout = u;
      if (x.key == "depth") spec.depth = u;
      if (x.key == "rows") spec.rows = u;
      if (x.key == "cols") spec.cols = u;
      if (x.key == "transit_domains") spec.transit_domains = u;
      if (x.key == "transit_nodes") spec.transit_nodes = u;
      if (x.key == "stubs_per_transit") spec.stubs_per_transit = u;
      if (x.key == "stub_nodes") spec.stub_nodes = u;
    }
    if (model != nullptr) {
      for (std::string_view req : model->required) {
        if (!m.Has(req)) {
          ctx_.Error(m.node(), "missing required key '" + std::string(req) +
                                   "' in generate (model '" + std::string(model->name) +
                                   "' needs it)");
          ok = false;
        }
      }
    }
    std::optional<VnodeKind> kind;
    if (const YamlEntry* k = m.Find("kind")) {
      kind = ParseKind(*k);
      ok = ok && kind.has_value();
    }
    uint64_t seed = Rng::ForStream(ctx_.seed, "generate/" + std::to_string(index)).Next();
    if (const YamlEntry* s = m.Find("seed")) {
      auto v = ReadUint(*s, 0, std::numeric_limits<uint64_t>::max(), ctx_);
      if (v) seed = *v;
      ok = ok && v.has_value();
    }
    DirectedProfile profile;
    if (const YamlEntry* l = m.Find("link")) {
      YamlMap lm(*l, "generate link", kDirectedProfileKeys, ctx_);
      bool lok = lm.valid() && ParseDirectedProfileYaml(lm, ctx_, profile);
      lok = lok && ReportProfileProblems(lm, profile.forward, profile.reverse, ctx_);
      ok = ok && lok;
    }
    if (ok) {
      const uint64_t count = NodeCount(spec);
      if (count > kMaxVnodes) {
        ctx_.Error(model_entry->at(), "model: this " + std::string(model->name) + " would create " +
                                          std::to_string(count) + " vnodes; the limit is " +
                                          std::to_string(kMaxVnodes));
        ok = false;
      }
    }
    if (!ok) {
      AddFailedPrefix(prefix);
      return;
    }
    auto graph = Generate(spec, seed);
    if (!graph.ok()) {
      // Messages name the parameter ("m: must be below n ..."): point at it.
      const std::string msg = graph.status().message();
      const YamlEntry* at = m.Find(msg.substr(0, msg.find(':')));
      ctx_.Error(at != nullptr ? at->at() : model_entry->at(), msg);
      AddFailedPrefix(prefix);
      return;
    }
    AddGenerated(*graph, m, prefix, kind, profile);
  }

  void AddGenerated(const GeneratedGraph& g, const YamlMap& m, const std::string& prefix,
                    std::optional<VnodeKind> kind, const DirectedProfile& profile) {
    const size_t origin = AddOrigin("the generator at " + LineCol(m.node()));
    const SourceLoc loc = LocOf(m.node(), ctx_);
    std::vector<VnodeId> ids;
    ids.reserve(g.num_nodes);
    topo_.Reserve(g.num_nodes, g.edges.size());
    std::optional<VnodeId> first_clash;
    std::string first_clash_name;
    uint64_t clashes = 0;
    for (uint32_t i = 0; i < g.num_nodes; ++i) {
      Vnode v;
      v.name = prefix + (i < g.names.size() ? g.names[i] : std::to_string(i));
      const NodeRole role = i < g.roles.size() ? g.roles[i] : NodeRole::kAny;
      v.kind = kind.value_or(role == NodeRole::kEdge ? VnodeKind::kHost : VnodeKind::kRouter);
      v.runtime = default_runtime_;
      v.resources = default_resources_;
      v.loc = loc;
      if (!IsValidVnodeName(v.name)) {
        ctx_.Error(m.node(), "generate: invalid vnode name '" + v.name + "': " + kNameRule);
        AddFailedPrefix(prefix);
        return;
      }
      std::string name = v.name;
      std::optional<VnodeId> clash;
      auto id = AddVnode(std::move(v), name, origin, &clash);
      if (id) {
        ids.push_back(*id);
      } else if (clashes++ == 0) {
        first_clash = clash;
        first_clash_name = name;
      }
    }
    if (clashes > 0) {
      std::string msg = DuplicateMessage(first_clash_name, first_clash);
      if (clashes > 1) {
        msg += "; " + std::to_string(clashes - 1) + " more generated name" +
               (clashes > 2 ? "s" : "") + " clash too";
      }
      ctx_.Error(m.node(), std::move(msg));
      AddFailedPrefix(prefix);
      return;
    }
    for (const auto& [u, v] : g.edges) {
      Link l;
      l.a = ids[u];
      l.b = ids[v];
      l.forward = profile.forward;
      l.reverse = profile.reverse;
      l.loc = loc;
      (void)topo_.AddLink(std::move(l));
    }
  }

  // A group and a vnode with the same name would make selectors ambiguous.
  void CheckGroupNames() {
    for (const GroupDecl& g : groups_) {
      if (!g.created) continue;
      if (auto id = topo_.Find(g.name)) {
        ctx_.Error(g.key, "group name '" + g.name + "' is also a vnode name (defined by " +
                              OriginOf(*id) + "); selectors would be ambiguous");
      }
    }
  }

  const YamlContext& ctx_;
  Topology& topo_;
  TopologyYamlInfo info_;
  std::optional<VnodeKind> default_kind_;
  Runtime default_runtime_ = Runtime::kNetns;
  Resources default_resources_;
  std::vector<GroupDecl> groups_;
  std::vector<std::string> origins_;
  std::vector<uint32_t> origin_of_;  // vnode id -> index in origins_
};

}  // namespace

TopologyYamlInfo ParseTopologyYaml(const YAML::Node& node, const YamlContext& ctx, Topology& topo) {
  try {
    return TopologyParser(ctx, topo).Run(node, nullptr, "topology");
  } catch (const YAML::Exception& ex) {
    ctx.Error(node, "internal YAML error: " + ex.msg);
    return {};
  }
}

TopologyYamlInfo ParseTopologyYaml(const YamlEntry& entry, const YamlContext& ctx, Topology& topo) {
  try {
    return TopologyParser(ctx, topo).Run(entry.value, &entry.key_node, entry.field);
  } catch (const YAML::Exception& ex) {
    ctx.Error(entry.key_node, "internal YAML error: " + ex.msg);
    return {};
  }
}

}  // namespace gridemu::topology

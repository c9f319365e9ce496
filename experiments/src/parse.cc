#include "gridemu/experiments/parse.h"

#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>
#include <unordered_map>
#include <utility>

#include "gridemu/common/units.h"
#include "gridemu/topology/selector.h"
#include "gridemu/topology/yaml.h"
#include "gridemu/topology/yaml_reader.h"

namespace gridemu::experiments {
namespace {

using std::chrono::nanoseconds;
using topology::ExpectList;
using topology::ReadBool;
using topology::ReadString;
using topology::ReadStringList;
using topology::ReadTime;
using topology::ReadUint;
using topology::Topology;
using topology::YamlContext;
using topology::YamlEntry;
using topology::YamlMap;

constexpr std::string_view kTopKeys[] = {
    "name",     "slice",  "seed",    "duration", "description", "on_pnode_failure", "topology",
    "workload", "events", "collect", "shared",   "prepare",     "analyze"};
constexpr std::string_view kTaskKeys[] = {"name",    "on",  "at",         "stagger",
                                          "run",     "argv", "wait",      "timeout",
                                          "env",     "stop_grace", "restart"};
constexpr std::string_view kEventKeys[] = {"at", "link",  "set",    "down",
                                           "up", "nodes", "action", "churn"};
constexpr std::string_view kChurnKeys[] = {"group", "rate", "down_for", "until"};
constexpr std::string_view kCollectKeys[] = {"metrics", "files"};
constexpr std::string_view kMetricsKeys[] = {"interval"};

const std::string kExperimentNameRule = "use 1-63 characters of a-z, 0-9 and '-'";

bool IsValidTaskName(std::string_view s) {
  if (s.empty() || s.size() > 63 || s.front() == '.') return false;
  for (char c : s) {
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.')) {
      return false;
    }
  }
  return true;
}

bool IsValidEnvName(std::string_view s) {
  if (s.empty() || (s.front() >= '0' && s.front() <= '9')) return false;
  for (char c : s) {
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_')) {
      return false;
    }
  }
  return true;
}

std::string LineCol(const YAML::Node& n) {
  const YAML::Mark m = n.Mark();
  return std::to_string(m.line + 1) + ":" + std::to_string(m.column + 1);
}

// "0.2/s", "3/m", "10/h": events per second; nullopt when malformed.
std::optional<double> ParseEventRate(std::string_view s) {
  size_t slash = s.find('/');
  if (slash == std::string_view::npos || slash == 0) return std::nullopt;
  double v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + slash, v);
  if (ec != std::errc() || p != s.data() + slash || !std::isfinite(v)) return std::nullopt;
  std::string_view unit = s.substr(slash + 1);
  if (unit == "s" || unit == "sec") return v;
  if (unit == "m" || unit == "min") return v / 60;
  if (unit == "h" || unit == "hour") return v / 3600;
  return std::nullopt;
}

// Records where each YAML document starts; ignores everything else.
class DocumentCounter : public YAML::EventHandler {
 public:
  explicit DocumentCounter(std::vector<YAML::Mark>* starts) : starts_(starts) {}
  void OnDocumentStart(const YAML::Mark& mark) override { starts_->push_back(mark); }
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark&, YAML::anchor_t) override {}
  void OnAlias(const YAML::Mark&, YAML::anchor_t) override {}
  void OnScalar(const YAML::Mark&, const std::string&, YAML::anchor_t,
                const std::string&) override {}
  void OnSequenceStart(const YAML::Mark&, const std::string&, YAML::anchor_t,
                       YAML::EmitterStyle::value) override {}
  void OnSequenceEnd() override {}
  void OnMapStart(const YAML::Mark&, const std::string&, YAML::anchor_t,
                  YAML::EmitterStyle::value) override {}
  void OnMapEnd() override {}

 private:
  std::vector<YAML::Mark>* starts_;
};

class ExperimentParser {
 public:
  ExperimentParser(const std::string& filename, const std::string& base_dir) {
    ctx_.file = filename;
    ctx_.base_dir = base_dir;
    ctx_.diags = &diags_;
  }

  Result<Experiment> Run(std::string_view text) {
    exp_.source_path = ctx_.file;
    exp_.source_text = std::string(text);
    // yaml-cpp 0.7's LoadAll() never returns on some inputs (e.g. a
    // document starting with ','): it yields the same document forever.
    // So count documents with a bounded event-level pass, then Load() one.
    YAML::Node root;
    std::vector<YAML::Mark> starts;
    try {
      std::istringstream in(exp_.source_text);
      YAML::Parser parser(in);
      DocumentCounter counter(&starts);
      for (int i = 0; i < 2 && parser.HandleNextDocument(counter); ++i) {
      }
      if (!starts.empty()) root = YAML::Load(exp_.source_text);
    } catch (const YAML::Exception& ex) {
      SourceLoc loc{ctx_.file, 1, 1};
      if (!ex.mark.is_null()) loc = {ctx_.file, ex.mark.line + 1, ex.mark.column + 1};
      ctx_.Error(loc, "YAML syntax error: " + ex.msg);
      return Finish();
    }
    if (starts.empty()) {
      ctx_.Error(SourceLoc{ctx_.file, 1, 1},
                 "empty experiment file; expected a mapping with name, duration and topology");
      return Finish();
    }
    if (starts.size() > 1) {
      ctx_.Error(SourceLoc{ctx_.file, starts[1].line + 1, starts[1].column + 1},
                 "expected one YAML document, found another one here");
    }
    std::vector<YAML::Node> docs{root};
    try {
      ParseRoot(docs[0]);
    } catch (const YAML::Exception& ex) {
      ctx_.Error(SourceLoc{ctx_.file, ex.mark.line + 1, ex.mark.column + 1},
                 "internal YAML error: " + ex.msg);
    }
    return Finish();
  }

 private:
  Result<Experiment> Finish() {
    if (diags_.empty()) return std::move(exp_);
    std::vector<Diagnostic> items = diags_.items();
    std::stable_sort(items.begin(), items.end(), [](const Diagnostic& a, const Diagnostic& b) {
      return std::pair(a.loc.line, a.loc.column) < std::pair(b.loc.line, b.loc.column);
    });
    std::string msg;
    for (const Diagnostic& d : items) {
      if (!msg.empty()) msg += '\n';
      msg += d.ToString();
    }
    return InvalidArgumentError(std::move(msg));
  }

  std::optional<std::string> ReadName(const YamlEntry& e, std::string_view what) {
    auto s = ReadString(e, ctx_);
    if (!s) return std::nullopt;
    if (!IsValidExperimentName(*s)) {
      ctx_.Error(e.at(), e.field + ": invalid " + std::string(what) + " name '" + *s +
                             "': " + kExperimentNameRule);
      return std::nullopt;
    }
    return s;
  }

  void ParseRoot(const YAML::Node& root) {
    YamlMap m(root, "experiment", kTopKeys, ctx_);
    if (!m.valid()) return;
    if (const YamlEntry* e = m.Require("name", ctx_)) {
      if (auto v = ReadName(*e, "experiment")) exp_.name = *v;
    }
    if (const YamlEntry* e = m.Find("slice")) {
      if (auto v = ReadName(*e, "slice")) exp_.slice = *v;
    }
    if (const YamlEntry* e = m.Find("seed")) {
      if (auto v = ReadUint(*e, 0, std::numeric_limits<uint64_t>::max(), ctx_)) exp_.seed = *v;
    }
    if (const YamlEntry* e = m.Require("duration", ctx_)) {
      if (auto v = ReadTime(*e, ctx_)) {
        if (v->count() == 0) {
          ctx_.Error(e->at(), "duration: must be greater than 0s");
        } else {
          exp_.duration = *v;
          duration_ok_ = true;
        }
      }
    }
    if (const YamlEntry* e = m.Find("description")) {
      if (auto v = ReadString(*e, ctx_, /*allow_empty=*/true)) exp_.description = *v;
    }
    if (const YamlEntry* e = m.Find("on_pnode_failure")) {
      if (auto v = ReadString(*e, ctx_)) {
        if (*v == "fail") {
          exp_.on_pnode_failure = PnodeFailurePolicy::kFail;
        } else if (*v == "continue") {
          exp_.on_pnode_failure = PnodeFailurePolicy::kContinue;
        } else {
          ctx_.Error(e->at(), "on_pnode_failure: unknown policy '" + *v +
                                  "'; expected one of fail, continue");
        }
      }
    }
    ctx_.seed = exp_.seed;
    if (const YamlEntry* e = m.Require("topology", ctx_)) {
      info_ = topology::ParseTopologyYaml(*e, ctx_, exp_.topology);
    }
    if (const YamlEntry* e = m.Find("workload")) {
      if (ExpectList(*e, "tasks", ctx_) && e->value.IsSequence()) {
        exp_.tasks.reserve(e->value.size());
        for (const YAML::Node& item : e->value) ParseTask(item);
      }
    }
    if (const YamlEntry* e = m.Find("events")) {
      if (ExpectList(*e, "events", ctx_) && e->value.IsSequence()) {
        for (const YAML::Node& item : e->value) ParseEvent(item);
        CheckLinkSets();
      }
    }
    if (const YamlEntry* e = m.Find("collect")) ParseCollect(*e);
    if (const YamlEntry* e = m.Find("shared")) {
      if (auto v = ReadString(*e, ctx_)) {
        std::filesystem::path p(*v);
        if (p.is_relative()) p = std::filesystem::path(ctx_.base_dir) / p;
        std::error_code ec;
        if (!std::filesystem::is_directory(p, ec)) {
          ctx_.Error(e->at(), "shared: '" + *v + "' is not a directory (paths are relative to " +
                                  "the experiment file)");
        } else {
          exp_.shared_dir = p.lexically_normal().string();
        }
      }
    }
    ParseHostCommands(m, "prepare", &exp_.prepare);
    ParseHostCommands(m, "analyze", &exp_.analyze);
  }

  // "<what>: <t> is not before the end of the experiment (duration: <d>)"
  // when t >= duration; false then.
  bool CheckBeforeEnd(nanoseconds t, const YAML::Node& at, const std::string& what) {
    if (!duration_ok_ || t < exp_.duration) return true;
    ctx_.Error(at, what + ": " + FormatTime(t) + " is not before the end of the experiment " +
                       "(duration: " + FormatTime(exp_.duration) + ")");
    return false;
  }

  // Resolves a selector entry ("on", "nodes") to vnode ids; nullopt on error
  // (not reported when it names something that failed earlier).
  // A list of selectors is their concatenation ("on: [a, peers[1:3]]"); a
  // vnode selected twice is an error.
  std::optional<std::vector<VnodeId>> ResolveTargets(const YamlEntry& e, std::string* text) {
    if (e.value.IsSequence()) {
      std::vector<VnodeId> all;
      std::unordered_map<VnodeId, size_t> seen;
      bool ok = e.value.size() > 0;
      if (!ok)
        ctx_.Error(e.at(), e.field + ": expected a selector or a non-empty list of selectors");
      for (size_t i = 0; i < e.value.size(); ++i) {
        YamlEntry item{e.key, e.field + "[" + std::to_string(i) + "]", e.key_node, e.value[i]};
        std::string one;
        auto ids = ResolveTargets(item, &one);
        if (!ids) {
          ok = false;
          continue;
        }
        if (!text->empty()) *text += ", ";
        *text += one;
        for (VnodeId v : *ids) {
          if (!seen.emplace(v, i).second) {
            ctx_.Error(item.at(), item.field + ": vnode '" + exp_.topology.vnode(v).name +
                                      "' is already selected by an earlier entry");
            ok = false;
            break;
          }
          all.push_back(v);
        }
      }
      if (!ok) return std::nullopt;
      return all;
    }
    auto s = ReadString(e, ctx_);
    if (!s) return std::nullopt;
    *text = *s;
    auto sel = topology::ParseSelector(*s);
    if (!sel.ok()) {
      ctx_.Error(e.at(), e.field + ": " + sel.status().message());
      return std::nullopt;
    }
    auto ids = topology::ResolveSelector(exp_.topology, *s);
    if (!ids.ok()) {
      if (!info_.IsFailedName(sel->name))
        ctx_.Error(e.at(), e.field + ": " + ids.status().message());
      return std::nullopt;
    }
    return std::move(ids).value();
  }

  void ParseTask(const YAML::Node& item) {
    YamlMap m(item, "task", kTaskKeys, ctx_);
    if (!m.valid()) return;
    Task t;
    t.loc = topology::LocOf(m.node(), ctx_);
    bool ok = true;
    if (const YamlEntry* e = m.Require("name", ctx_)) {
      auto v = ReadString(*e, ctx_);
      if (v && !IsValidTaskName(*v)) {
        ctx_.Error(e->at(), "name: invalid task name '" + *v +
                                "': use 1-63 characters of a-z, 0-9, '-', '_' and '.', not "
                                "starting with '.'");
        v.reset();
      }
      if (v) {
        auto [it, inserted] = task_names_.emplace(*v, e->at());
        if (!inserted) {
          ctx_.Error(e->at(), "name: duplicate task name '" + *v + "' (first at " +
                                  LineCol(it->second) + ")");
          v.reset();
        }
      }
      if (v) t.name = *v;
      ok = ok && v.has_value();
    } else {
      ok = false;
    }
    bool targets_ok = false;
    if (const YamlEntry* e = m.Require("on", ctx_)) {
      auto ids = ResolveTargets(*e, &t.on);
      if (ids) {
        t.targets = std::move(*ids);
        targets_ok = true;
      }
    }
    ok = ok && targets_ok;
    const YamlEntry* at = m.Find("at");
    if (at != nullptr) {
      auto v = ReadTime(*at, ctx_);
      if (v && !CheckBeforeEnd(*v, at->at(), "at")) v.reset();
      if (v) t.at = *v;
      ok = ok && v.has_value();
    }
    if (const YamlEntry* e = m.Find("stagger")) {
      auto v = ReadTime(*e, ctx_);
      if (v) {
        t.stagger = *v;
        if (targets_ok && t.targets.size() > 1 && duration_ok_ && t.at < exp_.duration) {
          // at + (n-1) * stagger, saturating.
          const auto n = static_cast<double>(t.targets.size() - 1);
          const double last =
              static_cast<double>(t.at.count()) + n * static_cast<double>(v->count());
          if (last >= static_cast<double>(exp_.duration.count())) {
            const std::string when = last >= 9.2e18
                                         ? std::string("an overflowing time")
                                         : FormatTime(t.StartTimeOf(t.targets.size() - 1));
            ctx_.Error(e->at(), "stagger: the last target (" +
                                    std::to_string(t.targets.size() - 1) + ") would start at " +
                                    when + ", not before the end of the experiment (duration: " +
                                    FormatTime(exp_.duration) + ")");
            v.reset();
          }
        }
      }
      ok = ok && v.has_value();
    }
    const YamlEntry* run = m.Find("run");
    const YamlEntry* argv = m.Find("argv");
    if (run != nullptr) {
      auto v = ReadString(*run, ctx_);
      if (v) t.run = *v;
      ok = ok && v.has_value();
    }
    if (argv != nullptr) {
      auto v = ReadStringList(*argv, "argument", ctx_);
      if (v && v->empty()) {
        ctx_.Error(argv->at(), "argv: expected a non-empty list of arguments");
        v.reset();
      }
      if (v) t.argv = std::move(*v);
      ok = ok && v.has_value();
    }
    if (run != nullptr && argv != nullptr) {
      const YamlEntry* second = run->key_node.Mark().pos < argv->key_node.Mark().pos ? argv : run;
      ctx_.Error(second->key_node, second->key + ": a task has run or argv, not both");
      ok = false;
    } else if (run == nullptr && argv == nullptr) {
      ctx_.Error(m.node(), "missing required key 'run' or 'argv' in task");
      ok = false;
    }
    if (const YamlEntry* e = m.Find("wait")) {
      auto v = ReadBool(*e, ctx_);
      if (v) t.wait = *v;
      ok = ok && v.has_value();
    }
    if (const YamlEntry* e = m.Find("timeout")) {
      auto v = ReadTime(*e, ctx_);
      if (v && v->count() == 0) {
        ctx_.Error(e->at(), "timeout: must be greater than 0s");
        v.reset();
      }
      if (v) t.timeout = *v;
      ok = ok && v.has_value();
    }
    if (const YamlEntry* e = m.Find("stop_grace")) {
      auto v = ReadTime(*e, ctx_);
      if (v) t.stop_grace = *v;
      ok = ok && v.has_value();
    }
    // A task without `at` runs whenever its vnode runs: again when it comes back.
    t.restart = at == nullptr ? TaskRestart::kOnNodeStart : TaskRestart::kNever;
    if (const YamlEntry* e = m.Find("restart")) {
      auto v = ReadString(*e, ctx_);
      if (v && *v != "never" && *v != "on-node-start") {
        ctx_.Error(e->at(), "restart: expected never or on-node-start, got '" + *v + "'");
        v.reset();
      }
      if (v) t.restart = *v == "never" ? TaskRestart::kNever : TaskRestart::kOnNodeStart;
      ok = ok && v.has_value();
    }
    if (const YamlEntry* e = m.Find("env")) {
      YamlMap env(*e, "env", {}, ctx_, "env", topology::NullMap::kEmpty);
      for (const YamlEntry& x : env.entries()) {
        if (!IsValidEnvName(x.key)) {
          ctx_.Error(x.key_node, "env: invalid variable name '" + x.key +
                                     "': use letters, digits and '_', not starting with a digit");
          ok = false;
          continue;
        }
        if (x.key.rfind("GRIDEMU_", 0) == 0) {
          ctx_.Error(x.key_node, "env: " + x.key + " is set by gridemu; choose another name");
          ok = false;
          continue;
        }
        auto v = ReadString(x, ctx_, /*allow_empty=*/true);
        if (v) t.env[x.key] = *v;
        ok = ok && v.has_value();
      }
      ok = ok && env.valid();
    }
    if (ok) exp_.tasks.push_back(std::move(t));
  }

  void ParseEvent(const YAML::Node& item) {
    YamlMap m(item, "event", kEventKeys, ctx_);
    if (!m.valid()) return;
    Event ev;
    ev.loc = topology::LocOf(m.node(), ctx_);
    bool ok = true;
    if (const YamlEntry* e = m.Require("at", ctx_)) {
      auto v = ReadTime(*e, ctx_);
      if (v && !CheckBeforeEnd(*v, e->at(), "at")) v.reset();
      if (v) ev.at = *v;
      ok = ok && v.has_value();
    } else {
      ok = false;
    }
    // Which kind: exactly one of link, nodes, churn.
    const YamlEntry* kind = nullptr;
    for (const YamlEntry& e : m.entries()) {
      if (e.key != "link" && e.key != "nodes" && e.key != "churn") continue;
      if (kind == nullptr) {
        kind = &e;
      } else {
        ctx_.Error(e.key_node, e.key + ": an event has one of link, nodes or churn, not several");
        ok = false;
      }
    }
    if (kind == nullptr) {
      ctx_.Error(m.node(), "missing required key 'link', 'nodes' or 'churn' in event");
      return;
    }
    // Keys that belong to another kind.
    for (const YamlEntry& e : m.entries()) {
      const bool link_key = e.key == "set" || e.key == "down" || e.key == "up";
      if ((link_key && kind->key != "link") || (e.key == "action" && kind->key != "nodes")) {
        ctx_.Error(e.key_node, e.key + ": only allowed in a " +
                                   std::string(link_key ? "link" : "nodes") + " event");
        ok = false;
      }
    }
    YamlMap set_map;
    bool swapped = false;
    if (kind->key == "link") {
      ok = ParseLinkEvent(m, *kind, ev, set_map, swapped) && ok;
    } else if (kind->key == "nodes") {
      ev.kind = EventKind::kNodeAction;
      auto ids = ResolveTargets(*kind, &ev.nodes);
      if (ids) ev.targets = std::move(*ids);
      ok = ok && ids.has_value();
      if (const YamlEntry* a = m.Require("action", ctx_)) {
        const auto v = ReadString(*a, ctx_);
        if (v) {
          auto act = ParseNodeAction(*v);
          if (act.ok()) {
            ev.action = *act;
          } else {
            ctx_.Error(a->at(), "action: " + act.status().message());
            ok = false;
          }
        } else {
          ok = false;
        }
      } else {
        ok = false;
      }
    } else {
      ev.kind = EventKind::kChurn;
      ok = ParseChurn(*kind, ev) && ok;
    }
    if (!ok) return;
    if (ev.kind == EventKind::kLinkSet) {
      link_sets_.push_back({exp_.events.size(), std::move(set_map), swapped});
    }
    exp_.events.push_back(std::move(ev));
  }

  // Topology::FindLink() scans the first end's links: name the end with
  // fewer links first (a hub of 100,000 members would make it O(members)).
  // Parallel links keep their order from either end (ids grow).
  Result<LinkId> FindLink(const std::string& name) const {
    const Topology& t = exp_.topology;
    const size_t sep = name.find("--");
    if (sep != std::string::npos) {
      const size_t hash = name.find('#', sep);
      const std::string a = name.substr(0, sep);
      const std::string b = name.substr(sep + 2, hash == std::string::npos ? hash : hash - sep - 2);
      const auto ia = t.Find(a);
      const auto ib = t.Find(b);
      if (ia && ib && t.incident(*ia).size() > t.incident(*ib).size()) {
        const std::string ordinal = hash == std::string::npos ? "" : name.substr(hash);
        if (auto id = t.FindLink(b + "--" + a + ordinal); id.ok()) return id;
      }
    }
    return t.FindLink(name);
  }

  // `swapped`: the event wrote the link as "b--a" for a topology link a -> b.
  bool ParseLinkEvent(const YamlMap& m, const YamlEntry& link, Event& ev, YamlMap& set_map,
                      bool& swapped) {
    bool ok = true;
    // The operation: exactly one of set, down, up.
    const YamlEntry* op = nullptr;
    for (const YamlEntry& e : m.entries()) {
      if (e.key != "set" && e.key != "down" && e.key != "up") continue;
      if (op == nullptr) {
        op = &e;
      } else {
        ctx_.Error(e.key_node, e.key + ": a link event has one of set, down or up, not several");
        ok = false;
      }
    }
    if (op == nullptr) {
      ctx_.Error(m.node(), "missing required key 'set', 'down' or 'up' in link event");
      ok = false;
    }
    // The link.
    bool link_ok = false;
    if (auto name = ReadString(link, ctx_)) {
      ev.link = *name;
      auto id = FindLink(*name);
      if (id.ok()) {
        ev.link_id = *id;
        const auto first = exp_.topology.Find(name->substr(0, name->find("--")));
        swapped = first && *first != exp_.topology.link(*id).a;
        link_ok = true;
      } else {
        // Do not repeat an error about a vnode that failed to be declared.
        std::string_view n = *name;
        size_t sep = n.find("--");
        std::string_view a = n.substr(0, sep);
        std::string_view b = sep == std::string_view::npos ? "" : n.substr(sep + 2);
        b = b.substr(0, b.find('#'));
        if (!info_.IsFailedName(a) && (b.empty() || !info_.IsFailedName(b))) {
          ctx_.Error(link.at(), "link: " + id.status().message());
        }
      }
    }
    ok = ok && link_ok;
    if (op == nullptr) return false;
    if (op->key == "down" || op->key == "up") {
      ev.kind = op->key == "down" ? EventKind::kLinkDown : EventKind::kLinkUp;
      auto v = ReadBool(*op, ctx_);
      if (v && !*v) {
        ctx_.Error(op->at(), op->key == "down"
                                 ? "down: must be true (use up: true to bring the link up)"
                                 : "up: must be true (use down: true to take the link down)");
        v.reset();
      }
      return ok && v.has_value();
    }
    ev.kind = EventKind::kLinkSet;
    set_map = YamlMap(*op, "set", topology::DirectedProfileKeys(), ctx_);
    if (!set_map.valid()) return false;
    topology::DirectedProfile p;
    if (!topology::ParseDirectedProfileYaml(set_map, ctx_, p)) return false;
    if (p.forward.empty() && p.reverse.empty()) {
      ctx_.Error(op->at(), "set: expected at least one profile parameter to change");
      return false;
    }
    // Stored per the topology's direction of the link.
    ev.forward = swapped ? p.reverse : p.forward;
    ev.reverse = swapped ? p.forward : p.reverse;
    return ok;
  }

  bool ParseChurn(const YamlEntry& e, Event& ev) {
    YamlMap c(e, "churn", kChurnKeys, ctx_, "churn");
    if (!c.valid()) return false;
    bool ok = true;
    if (const YamlEntry* g = c.Require("group", ctx_)) {
      auto name = ReadString(*g, ctx_);
      if (name) {
        ev.churn.group = *name;
        if (const topology::Group* grp = exp_.topology.FindGroup(*name)) {
          ev.targets = grp->members;
        } else {
          if (!info_.IsFailedName(*name)) {
            ctx_.Error(g->at(), exp_.topology.Find(*name)
                                    ? "churn.group: '" + *name + "' is a vnode; expected a group"
                                    : "churn.group: no group named '" + *name + "'");
          }
          ok = false;
        }
      } else {
        ok = false;
      }
    } else {
      ok = false;
    }
    if (const YamlEntry* r = c.Require("rate", ctx_)) {
      std::optional<double> v;
      if (r->value.IsScalar()) v = ParseEventRate(r->value.Scalar());
      if (!v) {
        ctx_.Error(r->at(), "churn.rate: expected a rate of events such as 0.2/s or 3/m, got " +
                                topology::DescribeYamlValue(r->value));
      } else if (*v <= 0) {
        ctx_.Error(r->at(), "churn.rate: must be greater than 0");
        v.reset();
      }
      if (v) ev.churn.rate_per_s = *v;
      ok = ok && v.has_value();
    } else {
      ok = false;
    }
    if (const YamlEntry* d = c.Require("down_for", ctx_)) {
      auto v = ReadTime(*d, ctx_);
      if (v && v->count() == 0) {
        ctx_.Error(d->at(), "churn.down_for: must be greater than 0s");
        v.reset();
      }
      if (v) ev.churn.down_for = *v;
      ok = ok && v.has_value();
    } else {
      ok = false;
    }
    if (const YamlEntry* u = c.Find("until")) {
      auto v = ReadTime(*u, ctx_);
      if (v && *v <= ev.at) {
        ctx_.Error(u->at(), "churn.until: " + FormatTime(*v) + " is not after the event's at (" +
                                FormatTime(ev.at) + ")");
        v.reset();
      } else if (v && duration_ok_ && *v > exp_.duration) {
        ctx_.Error(u->at(), "churn.until: " + FormatTime(*v) +
                                " is after the end of the experiment (duration: " +
                                FormatTime(exp_.duration) + ")");
        v.reset();
      }
      if (v) ev.churn.until = *v;
      ok = ok && v.has_value();
    }
    return ok;
  }

  // Validates each `set:` over the link's profile as changed by the earlier
  // sets (in time order), so "jitter: needs a delay" is only reported when
  // the link really has no delay at that time.
  void CheckLinkSets() {
    std::stable_sort(link_sets_.begin(), link_sets_.end(), [&](const auto& x, const auto& y) {
      return exp_.events[x.index].at < exp_.events[y.index].at;
    });
    std::unordered_map<LinkId, std::pair<LinkProfile, LinkProfile>> current;
    std::vector<bool> bad(exp_.events.size(), false);
    for (const LinkSet& set : link_sets_) {
      const size_t index = set.index;
      const YamlMap& map = set.map;
      const Event& ev = exp_.events[index];
      auto it = current.find(ev.link_id);
      if (it == current.end()) {
        const topology::Link& l = exp_.topology.link(ev.link_id);
        it = current.emplace(ev.link_id, std::pair(l.forward, l.reverse)).first;
      }
      const LinkProfile& base_f = it->second.first;
      const LinkProfile& base_r = it->second.second;
      LinkProfile f = base_f.MergedWith(ev.forward);
      LinkProfile r = base_r.MergedWith(ev.reverse);
      // The map speaks in the written direction; so do the profiles passed.
      const bool good = set.swapped
                            ? topology::ReportProfileProblems(map, r, f, ctx_, &base_r, &base_f)
                            : topology::ReportProfileProblems(map, f, r, ctx_, &base_f, &base_r);
      if (!good) {
        bad[index] = true;
        continue;
      }
      it->second = {f, r};
    }
    if (std::find(bad.begin(), bad.end(), true) != bad.end()) {
      std::vector<Event> kept;
      kept.reserve(exp_.events.size());
      for (size_t i = 0; i < exp_.events.size(); ++i) {
        if (!bad[i]) kept.push_back(std::move(exp_.events[i]));
      }
      exp_.events = std::move(kept);
    }
    std::stable_sort(exp_.events.begin(), exp_.events.end(),
                     [](const Event& a, const Event& b) { return a.at < b.at; });
  }

  // `prepare:` / `analyze:`: a list of non-blank shell commands.
  void ParseHostCommands(const YamlMap& m, const char* key, std::vector<std::string>* out) {
    const YamlEntry* e = m.Find(key);
    if (e == nullptr) return;
    auto v = ReadStringList(*e, "shell command", ctx_);
    if (!v) return;
    for (size_t i = 0; i < v->size(); ++i) {
      if ((*v)[i].find_first_not_of(" \t\n") == std::string::npos) {
        ctx_.Error(e->value[i], std::string(key) + ": command " + std::to_string(i) + " is blank");
      }
    }
    *out = std::move(*v);
  }

  void ParseCollect(const YamlEntry& e) {
    YamlMap c(e, "collect", kCollectKeys, ctx_, "", topology::NullMap::kEmpty);
    if (const YamlEntry* m = c.Find("metrics")) {
      if (m->value.IsMap()) {
        YamlMap mm(*m, "metrics", kMetricsKeys, ctx_, "metrics");
        exp_.collect.metrics = true;
        if (const YamlEntry* i = mm.Find("interval")) {
          auto v = ReadTime(*i, ctx_);
          if (v && v->count() == 0) {
            ctx_.Error(i->at(), "metrics.interval: must be greater than 0s");
          } else if (v) {
            exp_.collect.metrics_interval = *v;
          }
        }
      } else if (m->value.IsScalar()) {
        if (auto v = ReadBool(*m, ctx_)) exp_.collect.metrics = *v;
      } else {
        ctx_.Error(m->at(),
                   "metrics: expected true, false or a mapping such as {interval: 1s}, "
                   "got " +
                       topology::DescribeYamlValue(m->value));
      }
    }
    if (const YamlEntry* f = c.Find("files")) {
      if (auto v = ReadStringList(*f, "path pattern", ctx_)) exp_.collect.files = std::move(*v);
    }
  }

  Diagnostics diags_;
  YamlContext ctx_;
  Experiment exp_;
  topology::TopologyYamlInfo info_;
  bool duration_ok_ = false;
  std::unordered_map<std::string, YAML::Node> task_names_;
  struct LinkSet {
    size_t index;  // in exp_.events
    YamlMap map;   // its set: mapping
    bool swapped;  // written as "b--a"
  };
  std::vector<LinkSet> link_sets_;
};

}  // namespace

Result<Experiment> ParseExperiment(std::string_view yaml_text, const std::string& filename,
                                   const std::string& base_dir) {
  return ExperimentParser(filename, base_dir).Run(yaml_text);
}

Result<Experiment> LoadExperiment(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return NotFoundError("cannot read '" + path + "': " + std::strerror(errno));
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) return NotFoundError("cannot read '" + path + "': " + std::strerror(errno));
  std::string dir = std::filesystem::path(path).parent_path().string();
  if (dir.empty()) dir = ".";
  return ParseExperiment(text.str(), path, dir);
}

}  // namespace gridemu::experiments

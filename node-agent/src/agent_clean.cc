// Removing gridemu's objects from a pnode. See agent_clean.h.
#include "gridemu/node-agent/agent_clean.h"

#include <unistd.h>

#include <set>

#include "gridemu/netshape/shaper.h"
#include "gridemu/node-agent/netns_runtime.h"

namespace gridemu::agent {

Result<CleanReport> CleanLeftovers(const CleanOptions& options, const CleanDeps& deps) {
  if (options.prefix.empty() || options.prefix.find_first_of("/ \t:") != std::string::npos) {
    return InvalidArgumentError("prefix '" + options.prefix +
                                "': expected a name without '/', ':' or spaces");
  }
  if (!options.experiment.empty()) {
    GRIDEMU_RETURN_IF_ERROR(ValidateExperimentId(options.experiment));
  }
  CleanReport rep;
  auto note_err = [&](const std::string& what, const Status& s) {
    if (!s.ok()) rep.errors.push_back(what + ": " + s.ToString());
  };
  // The experiments gridemu has records of: runtime state directories and
  // cgroups, agent shard records. (The runtime's ListLeftovers("") also names
  // every namespace that merely starts with "<prefix>-": not used.)
  std::set<std::string> exps;
  if (!options.experiment.empty()) {
    exps.insert(options.experiment);
  } else {
    GRIDEMU_ASSIGN_OR_RETURN(Leftovers all, deps.runtime->ListLeftovers(""));
    exps = ExperimentsWithObjects(all, options.prefix);
    Result<std::vector<std::string>> recorded = deps.records->List();
    if (recorded.ok()) {
      exps.insert(recorded->begin(), recorded->end());
    } else {
      note_err("listing shard records", recorded.status());
    }
  }
  Leftovers left;
  std::vector<std::string> cleanup;  // experiments with runtime objects
  for (const std::string& e : exps) {
    Result<Leftovers> l = deps.runtime->ListLeftovers(e);
    if (!l.ok()) {
      rep.errors.push_back("listing experiment " + e + ": " + l.status().ToString());
      continue;
    }
    if (l->empty()) continue;
    cleanup.push_back(e);
    left.netns.insert(left.netns.end(), l->netns.begin(), l->netns.end());
    left.cgroups.insert(left.cgroups.end(), l->cgroups.begin(), l->cgroups.end());
    left.processes.insert(left.processes.end(), l->processes.begin(), l->processes.end());
    left.state_dirs.insert(left.state_dirs.end(), l->state_dirs.begin(), l->state_dirs.end());
  }

  const std::string tag =
      options.prefix + ":" + (options.experiment.empty() ? "" : options.experiment + ":");
  const std::string rule_tag = options.experiment.empty() ? "" : options.experiment + ":";
  auto exists = [&](const std::string& path) {
    return deps.path_exists ? deps.path_exists(path) : ::access(path.c_str(), F_OK) == 0;
  };

  // Shaping inside the vnode namespaces, named before the namespaces go.
  for (const std::string& n : left.netns) {
    const std::string path = options.netns_dir + "/" + n;
    if (!exists(path)) continue;
    Result<std::vector<LinkInfo>> links =
        deps.plumbing->ListTagged(NetnsRef::AtPath(path), options.prefix + ":");
    if (links.ok()) {
      for (const LinkInfo& l : *links) {
        rep.objects.push_back("interface " + n + "/" + l.name + " (" + l.alias + ")");
        if (options.dry_run) continue;
        Result<bool> q = deps.remove_qdisc(path, l.name);
        if (q.ok() && *q) rep.objects.push_back("qdisc " + n + "/" + l.name);
        if (!q.ok() && q.status().code() != StatusCode::kNotFound) {
          note_err("qdisc " + n + "/" + l.name, q.status());
        }
      }
    }
    if (!options.dry_run) {
      Result<int> r = deps.remove_rules(path, rule_tag);
      if (r.ok() && *r > 0) {
        rep.objects.push_back("rule " + n + ": " + std::to_string(*r) + " NFQUEUE rule(s)");
      }
      if (!r.ok()) note_err("rules in " + n, r.status());
    }
  }
  deps.plumbing->CloseNamespaces();

  // Tagged interfaces of the home namespace (VXLAN devices, bridges).
  Result<std::vector<LinkInfo>> home = deps.plumbing->ListTagged(NetnsRef::Home(), tag);
  if (home.ok()) {
    for (const LinkInfo& l : *home) {
      rep.objects.push_back("interface " + l.name + " (" + l.alias + ", home namespace)");
    }
    if (!options.dry_run && !home->empty()) {
      Result<size_t> d = deps.plumbing->DeleteTagged(NetnsRef::Home(), tag);
      if (!d.ok()) note_err("home-namespace interfaces", d.status());
    }
  } else {
    note_err("listing home-namespace interfaces", home.status());
  }

  // Vnodes: namespaces, processes, cgroups, state.
  for (const std::string& n : left.netns) rep.objects.push_back("netns " + n);
  for (pid_t p : left.processes) rep.objects.push_back("process " + std::to_string(p));
  for (const std::string& c : left.cgroups) rep.objects.push_back("cgroup " + c);
  for (const std::string& s : left.state_dirs) rep.objects.push_back("state " + s);
  if (!options.dry_run) {
    for (const std::string& e : cleanup) {
      note_err("experiment " + e, deps.runtime->CleanupExperiment(e));
    }
  }

  // Agent records.
  Result<std::vector<std::string>> recorded = deps.records->List();
  if (recorded.ok()) {
    for (const std::string& e : *recorded) {
      if (!options.experiment.empty() && e != options.experiment) continue;
      for (const std::string& line : deps.records->Describe(e)) rep.objects.push_back(line);
      if (!options.dry_run) note_err("records of " + e, deps.records->Remove(e));
    }
  }
  return rep;
}

Result<CleanReport> CleanLeftovers(const CleanOptions& options) {
  if (options.prefix.empty() || options.prefix.find_first_of("/ \t:") != std::string::npos) {
    return InvalidArgumentError("prefix '" + options.prefix +
                                "': expected a name without '/', ':' or spaces");
  }
  if (!options.experiment.empty()) {
    GRIDEMU_RETURN_IF_ERROR(ValidateExperimentId(options.experiment));
  }
  if (::geteuid() != 0) return PermissionDeniedError("gridemu clean needs root");
  RuntimeOptions ro;
  ro.prefix = options.prefix;
  ro.state_root = options.state_root;
  ro.netns_dir = options.netns_dir;
  ro.init_path = options.init_path;
  GRIDEMU_ASSIGN_OR_RETURN(std::unique_ptr<NetnsRuntime> rt, NetnsRuntime::Open(ro));
  GRIDEMU_ASSIGN_OR_RETURN(std::unique_ptr<Plumbing> plumbing, NewNetlinkPlumbing());
  const std::string records_dir = options.agent_state_dir.empty()
                                      ? "/run/" + options.prefix + "-agent"
                                      : options.agent_state_dir;
  std::unique_ptr<ShardRecords> records = NewFileShardRecords(records_dir);
  CleanDeps deps;
  deps.runtime = rt.get();
  deps.plumbing = plumbing.get();
  deps.remove_qdisc = netshape::RemoveLeftoverQdisc;
  deps.remove_rules = netshape::RemoveLeftoverRules;
  deps.records = records.get();
  Result<CleanReport> rep = CleanLeftovers(options, deps);
  if (rep.ok() && !options.dry_run) ::rmdir(records_dir.c_str());  // only if empty
  return rep;
}

}  // namespace gridemu::agent

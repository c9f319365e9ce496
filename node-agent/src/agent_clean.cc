#include "gridemu/node-agent/agent_clean.h"

#include <dirent.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <set>

#include "gridemu/node-agent/netns_runtime.h"
#include "gridemu/node-agent/plumbing.h"
#include "gridemu/node-agent/runtime.h"
#include "gridemu/netshape/shaper.h"

namespace gridemu::agent {

Result<CleanReport> CleanLeftovers(const CleanOptions& options) {
  if (options.prefix.empty() || options.prefix.find_first_of("/ \t:") != std::string::npos) {
    return InvalidArgumentError("prefix '" + options.prefix +
                                "': expected a name without '/', ':' or spaces");
  }
  if (!options.experiment.empty())
    GRIDEMU_RETURN_IF_ERROR(ValidateExperimentId(options.experiment));
  if (::geteuid() != 0) return PermissionDeniedError("gridemu clean needs root");
  CleanReport rep;
  RuntimeOptions ro;
  ro.prefix = options.prefix;
  ro.state_root = options.state_root;
  ro.netns_dir = options.netns_dir;
  ro.init_path = options.init_path;
  GRIDEMU_ASSIGN_OR_RETURN(std::unique_ptr<NetnsRuntime> rt, NetnsRuntime::Open(ro));
  // The experiments gridemu has records of: runtime state directories and
  // cgroups, agent shard records. (The runtime's ListLeftovers("") would also
  // name every namespace that merely starts with "<prefix>-": not used.)
  const std::string records = options.agent_state_dir.empty() ? "/run/" + options.prefix + "-agent"
                                                              : options.agent_state_dir;
  std::set<std::string> exps;
  if (!options.experiment.empty()) {
    exps.insert(options.experiment);
  } else {
    GRIDEMU_ASSIGN_OR_RETURN(Leftovers all, rt->ListLeftovers(""));
    const std::string root = StateRoot(ro);
    for (const std::string& d : all.state_dirs) {
      if (d.size() > root.size() + 1 && d.compare(0, root.size() + 1, root + "/") == 0) {
        exps.insert(d.substr(root.size() + 1));
      }
    }
    const std::string marker = "/" + options.prefix + "/";
    for (const std::string& c : all.cgroups) {
      size_t p = c.rfind(marker);
      if (p == std::string::npos) continue;
      std::string rest = c.substr(p + marker.size());
      exps.insert(rest.substr(0, rest.find('/')));
    }
    if (DIR* d = ::opendir(records.c_str())) {
      while (struct dirent* e = ::readdir(d)) {
        std::string name = e->d_name;
        size_t dot = name.find('.');
        if (dot != std::string::npos && (name.compare(dot, std::string::npos, ".shard") == 0 ||
                                         name.compare(dot, std::string::npos, ".phase") == 0)) {
          exps.insert(name.substr(0, dot));
        }
      }
      ::closedir(d);
    }
  }
  Leftovers left;
  std::vector<std::string> cleanup;  // experiments with runtime objects
  for (const std::string& e : exps) {
    if (e.empty() || !ValidateExperimentId(e).ok()) continue;
    Result<Leftovers> l = rt->ListLeftovers(e);
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
  GRIDEMU_ASSIGN_OR_RETURN(std::unique_ptr<Plumbing> plumbing, NewNetlinkPlumbing());

  const std::string tag =
      options.prefix + ":" + (options.experiment.empty() ? "" : options.experiment + ":");
  const std::string rule_tag = options.experiment.empty() ? "" : options.experiment + ":";
  auto note_err = [&](const std::string& what, const Status& s) {
    if (!s.ok()) rep.errors.push_back(what + ": " + s.ToString());
  };

  // Shaping inside the vnode namespaces, named before the namespaces go.
  for (const std::string& n : left.netns) {
    const std::string path = options.netns_dir + "/" + n;
    if (::access(path.c_str(), F_OK) != 0) continue;
    Result<std::vector<LinkInfo>> links =
        plumbing->ListTagged(NetnsRef::AtPath(path), options.prefix + ":");
    if (links.ok()) {
      for (const LinkInfo& l : *links) {
        rep.objects.push_back("interface " + n + "/" + l.name + " (" + l.alias + ")");
        if (options.dry_run) continue;
        Result<bool> q = netshape::RemoveLeftoverQdisc(path, l.name);
        if (q.ok() && *q) rep.objects.push_back("qdisc " + n + "/" + l.name);
        if (!q.ok() && q.status().code() != StatusCode::kNotFound) {
          note_err("qdisc " + n + "/" + l.name, q.status());
        }
      }
    }
    if (!options.dry_run) {
      Result<int> r = netshape::RemoveLeftoverRules(path, rule_tag);
      if (r.ok() && *r > 0) {
        rep.objects.push_back("rule " + n + ": " + std::to_string(*r) + " NFQUEUE rule(s)");
      }
      if (!r.ok()) note_err("rules in " + n, r.status());
    }
  }
  plumbing->CloseNamespaces();

  // Tagged interfaces of the home namespace (VXLAN devices, bridges).
  Result<std::vector<LinkInfo>> home = plumbing->ListTagged(NetnsRef::Home(), tag);
  if (home.ok()) {
    for (const LinkInfo& l : *home) {
      rep.objects.push_back("interface " + l.name + " (" + l.alias + ", home namespace)");
    }
    if (!options.dry_run && !home->empty()) {
      Result<size_t> d = plumbing->DeleteTagged(NetnsRef::Home(), tag);
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
    for (const std::string& e : cleanup) note_err("experiment " + e, rt->CleanupExperiment(e));
  }

  // Agent records.
  std::vector<std::string> files;
  if (DIR* d = ::opendir(records.c_str())) {
    while (struct dirent* e = ::readdir(d)) {
      std::string name = e->d_name;
      for (const char* ext : {".shard", ".phase", ".shard.tmp", ".phase.tmp"}) {
        const std::string x = ext;
        if (name.size() <= x.size() || name.compare(name.size() - x.size(), x.size(), x) != 0) {
          continue;
        }
        const std::string exp = name.substr(0, name.size() - x.size());
        if (!ValidateExperimentId(exp).ok()) continue;
        if (options.experiment.empty() || exp == options.experiment) {
          files.push_back(records + "/" + name);
        }
      }
    }
    ::closedir(d);
  }
  for (const std::string& f : files) {
    rep.objects.push_back("record " + f);
    if (!options.dry_run && ::unlink(f.c_str()) != 0 && errno != ENOENT) {
      rep.errors.push_back("record " + f + ": " + std::strerror(errno));
    }
  }
  if (!options.dry_run) ::rmdir(records.c_str());  // only if empty
  return rep;
}

}  // namespace gridemu::agent

#include "gridemu/node-agent/runtime.h"

#include "gridemu/node-agent/netns_runtime.h"

namespace gridemu::agent {

std::string_view VnodeStateName(VnodeState s) {
  switch (s) {
    case VnodeState::kRunning:
      return "running";
    case VnodeState::kFrozen:
      return "frozen";
    case VnodeState::kStopped:
      return "stopped";
  }
  return "?";
}

std::string Leftovers::ToString() const {
  std::string out;
  for (const std::string& n : netns) out += "netns " + n + "\n";
  for (const std::string& c : cgroups) out += "cgroup " + c + "\n";
  for (pid_t p : processes) out += "process " + std::to_string(p) + "\n";
  for (const std::string& s : state_dirs) out += "state " + s + "\n";
  return out;
}

Status RuntimeRegistry::Register(std::string name, RuntimeFactory factory) {
  if (name.empty()) return InvalidArgumentError("runtime name is empty");
  if (!factory) return InvalidArgumentError("runtime '" + name + "': null factory");
  if (factories_.count(name) != 0) {
    return AlreadyExistsError("runtime '" + name + "' is already registered");
  }
  factories_.emplace(std::move(name), std::move(factory));
  return Status::Ok();
}

bool RuntimeRegistry::Has(std::string_view name) const {
  return factories_.find(name) != factories_.end();
}

std::vector<std::string> RuntimeRegistry::Names() const {
  std::vector<std::string> out;
  for (const auto& [n, f] : factories_) out.push_back(n);
  return out;
}

Result<std::unique_ptr<VnodeRuntime>> RuntimeRegistry::Make(std::string_view name,
                                                            const RuntimeOptions& options) const {
  auto it = factories_.find(name);
  if (it == factories_.end()) {
    std::string known;
    for (const auto& [n, f] : factories_) known += (known.empty() ? "" : ", ") + n;
    return NotFoundError("unknown vnode runtime '" + std::string(name) +
                         "' (available: " + (known.empty() ? "none" : known) + ")");
  }
  return it->second(options);
}

void RegisterBuiltinRuntimes(RuntimeRegistry& registry) {
  Status s = registry.Register(
      "netns", [](const RuntimeOptions& options) -> Result<std::unique_ptr<VnodeRuntime>> {
        GRIDEMU_ASSIGN_OR_RETURN(std::unique_ptr<NetnsRuntime> rt, NetnsRuntime::Open(options));
        return std::unique_ptr<VnodeRuntime>(std::move(rt));
      });
  (void)s;  // only fails if already registered, which is fine
}

std::set<std::string> ExperimentsWithObjects(const Leftovers& leftovers, std::string_view prefix) {
  std::set<std::string> out;
  auto add = [&](const std::string& e) {
    if (ValidateExperimentId(e).ok()) out.insert(e);
  };
  for (const std::string& d : leftovers.state_dirs) add(d.substr(d.rfind('/') + 1));
  const std::string marker = "/" + std::string(prefix) + "/";
  for (const std::string& c : leftovers.cgroups) {
    const size_t p = c.rfind(marker);
    if (p == std::string::npos) continue;
    const std::string rest = c.substr(p + marker.size());
    add(rest.substr(0, rest.find('/')));
  }
  return out;
}

Status ValidateExperimentId(std::string_view e) {
  if (e.empty() || e.size() > 48) {
    return InvalidArgumentError("experiment id '" + std::string(e) + "': must be 1..48 characters");
  }
  if (e.front() == '-') {
    return InvalidArgumentError("experiment id '" + std::string(e) + "': must not start with '-'");
  }
  for (char c : e) {
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-')) {
      return InvalidArgumentError("experiment id '" + std::string(e) +
                                  "': only a-z, 0-9 and '-' are allowed");
    }
  }
  return Status::Ok();
}

Status ValidateVnodeName(std::string_view n) {
  if (n.empty() || n.size() > 63) {
    return InvalidArgumentError("vnode name '" + std::string(n) + "': must be 1..63 characters");
  }
  if (n.front() == '-' || n.front() == '.') {
    return InvalidArgumentError("vnode name '" + std::string(n) +
                                "': must not start with '-' or '.'");
  }
  for (char c : n) {
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
          c == '.' || c == '_')) {
      return InvalidArgumentError("vnode name '" + std::string(n) +
                                  "': only A-Z, a-z, 0-9, '.', '_' and '-' are allowed");
    }
  }
  return Status::Ok();
}

}  // namespace gridemu::agent

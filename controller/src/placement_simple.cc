// SinglePnodePlacer. See placement_simple.h.

#include "gridemu/controller/placement_simple.h"

#include <algorithm>
#include <set>

namespace gridemu::controller {

Result<Placement> SinglePnodePlacer::Place(const experiments::Experiment& experiment,
                                           const std::vector<PnodeCandidate>& candidates) const {
  const topology::Topology& topo = experiment.topology;
  const size_t n = topo.num_vnodes();
  if (candidates.empty()) {
    return UnavailableError(
        "no agent is registered with the controller: start gridemu-agent on a pnode "
        "(or use `gridemu run`, which starts a local one)");
  }
  // Pinned vnodes decide the pnode; they must agree.
  std::string pinned;
  std::string pinned_by;
  std::set<std::string> runtimes_needed;
  for (const auto& v : topo.vnodes()) {
    runtimes_needed.insert(std::string(topology::RuntimeName(v.runtime)));
    if (v.host.empty()) continue;
    if (pinned.empty()) {
      pinned = v.host;
      pinned_by = v.name;
    } else if (v.host != pinned) {
      return FailedPreconditionError("vnode " + pinned_by + " is pinned to pnode '" + pinned +
                                     "' and vnode " + v.name + " to pnode '" + v.host +
                                     "': the single-pnode placer puts every vnode on one pnode "
                                     "(a multi-pnode placer spreads them: gridemu-controller "
                                     "--placement metis)");
    }
  }
  std::string why;
  for (const auto& c : candidates) {
    std::string no;
    if (!pinned.empty() && c.host_id != pinned) {
      continue;
    }
    if (c.max_vnodes != 0 &&
        (c.vnodes_in_use > c.max_vnodes || n > c.max_vnodes - c.vnodes_in_use)) {
      no = "room for " + std::to_string(c.max_vnodes - std::min(c.max_vnodes, c.vnodes_in_use)) +
           " vnodes, " + std::to_string(n) + " needed";
    } else if (!c.runtimes.empty()) {
      for (const auto& r : runtimes_needed) {
        if (std::find(c.runtimes.begin(), c.runtimes.end(), r) == c.runtimes.end()) {
          no = "no '" + r + "' runtime";
          break;
        }
      }
    }
    if (!no.empty()) {
      why += (why.empty() ? "" : "; ") + c.host_id + ": " + no;
      continue;
    }
    Placement p;
    p.pnodes = {c.host_id};
    p.pnode_of_vnode.assign(n, 0);
    p.algorithm = pinned.empty() ? "single-pnode" : "pinned";
    return p;
  }
  if (!pinned.empty() && why.empty()) {
    return FailedPreconditionError("vnode " + pinned_by + " is pinned to pnode '" + pinned +
                                   "', which has no registered agent");
  }
  return ResourceExhaustedError("no pnode can take the " + std::to_string(n) +
                                " vnodes of experiment " + experiment.name + " (" + why + ")");
}

}  // namespace gridemu::controller

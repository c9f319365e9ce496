#include "gridemu/experiments/experiment.h"

#include <string>

namespace gridemu::experiments {

std::string_view EventKindName(EventKind k) {
  switch (k) {
    case EventKind::kLinkSet:
      return "link-set";
    case EventKind::kLinkDown:
      return "link-down";
    case EventKind::kLinkUp:
      return "link-up";
    case EventKind::kNodeAction:
      return "node-action";
    case EventKind::kChurn:
      return "churn";
  }
  return "link-set";
}

std::string_view NodeActionName(NodeAction a) {
  switch (a) {
    case NodeAction::kKill:
      return "kill";
    case NodeAction::kStop:
      return "stop";
    case NodeAction::kStart:
      return "start";
    case NodeAction::kFreeze:
      return "freeze";
    case NodeAction::kThaw:
      return "thaw";
  }
  return "kill";
}

Result<NodeAction> ParseNodeAction(std::string_view s) {
  for (auto a : {NodeAction::kKill, NodeAction::kStop, NodeAction::kStart, NodeAction::kFreeze,
                 NodeAction::kThaw}) {
    if (s == NodeActionName(a)) return a;
  }
  return InvalidArgumentError("unknown action '" + std::string(s) +
                              "'; expected one of kill, stop, start, freeze, thaw");
}

bool IsValidExperimentName(std::string_view name) {
  if (name.empty() || name.size() > 63) return false;
  for (char c : name) {
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-')) return false;
  }
  return true;
}

}  // namespace gridemu::experiments

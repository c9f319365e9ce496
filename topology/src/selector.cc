#include "gridemu/topology/selector.h"

#include <charconv>

namespace gridemu::topology {
namespace {

Result<std::optional<int64_t>> ParseBound(std::string_view s, std::string_view whole) {
  while (!s.empty() && s.front() == ' ') s.remove_prefix(1);
  while (!s.empty() && s.back() == ' ') s.remove_suffix(1);
  if (s.empty()) return std::optional<int64_t>();
  int64_t v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size()) {
    return InvalidArgumentError("bad selector '" + std::string(whole) + "': '" + std::string(s) +
                                "' is not an integer");
  }
  return std::optional<int64_t>(v);
}

}  // namespace

Result<Selector> ParseSelector(std::string_view text) {
  Selector sel;
  const std::string whole(text);
  size_t open = text.find('[');
  sel.name = std::string(text.substr(0, open));
  if (sel.name.empty()) return InvalidArgumentError("bad selector '" + whole + "': missing a name before '['");
  if (open == std::string_view::npos) {
    if (text.find(']') != std::string_view::npos) {
      return InvalidArgumentError("bad selector '" + whole + "': ']' without '['");
    }
    return sel;
  }
  if (text.back() != ']') return InvalidArgumentError("bad selector '" + whole + "': missing ']' at the end");
  std::string_view inner = text.substr(open + 1, text.size() - open - 2);
  if (inner.find_first_of("[]") != std::string_view::npos) {
    return InvalidArgumentError("bad selector '" + whole + "': nested brackets");
  }
  size_t colon = inner.find(':');
  if (colon == std::string_view::npos) {
    GRIDEMU_ASSIGN_OR_RETURN(sel.start, ParseBound(inner, whole));
    if (!sel.start) return InvalidArgumentError("bad selector '" + whole + "': empty index");
    sel.has_index = true;
    return sel;
  }
  if (inner.find(':', colon + 1) != std::string_view::npos) {
    return InvalidArgumentError("bad selector '" + whole + "': steps are not supported; use [start:stop]");
  }
  GRIDEMU_ASSIGN_OR_RETURN(sel.start, ParseBound(inner.substr(0, colon), whole));
  GRIDEMU_ASSIGN_OR_RETURN(sel.stop, ParseBound(inner.substr(colon + 1), whole));
  sel.has_slice = true;
  return sel;
}

Result<std::vector<VnodeId>> ResolveSelector(const Topology& topo, std::string_view text) {
  GRIDEMU_ASSIGN_OR_RETURN(Selector sel, ParseSelector(text));
  const std::string whole(text);
  if (!sel.has_index && !sel.has_slice) {
    if (auto id = topo.Find(sel.name)) return std::vector<VnodeId>{*id};
    if (const Group* g = topo.FindGroup(sel.name)) return g->members;
    return NotFoundError("no vnode or group named '" + sel.name + "'");
  }
  const Group* g = topo.FindGroup(sel.name);
  if (!g) {
    if (topo.Find(sel.name)) {
      return InvalidArgumentError("bad selector '" + whole + "': '" + sel.name +
                                  "' is a vnode, not a group; only groups can be indexed");
    }
    return NotFoundError("no group named '" + sel.name + "'");
  }
  const auto count = static_cast<int64_t>(g->members.size());
  const std::string has = "group '" + g->name + "' has " + std::to_string(count) + " members";
  if (sel.has_index) {
    int64_t i = *sel.start < 0 ? *sel.start + count : *sel.start;
    if (i < 0 || i >= count) return OutOfRangeError("index " + whole + " is out of range: " + has);
    return std::vector<VnodeId>{g->members[static_cast<size_t>(i)]};
  }
  int64_t start = sel.start.value_or(0);
  int64_t stop = sel.stop.value_or(count);
  if (start < 0) start += count;
  if (stop < 0) stop += count;
  if (start < 0 || start > count || stop < 0 || stop > count) {
    return OutOfRangeError("slice " + whole + " is out of range: " + has);
  }
  if (start >= stop) return InvalidArgumentError("slice " + whole + " is empty");
  return std::vector<VnodeId>(g->members.begin() + start, g->members.begin() + stop);
}

}  // namespace gridemu::topology

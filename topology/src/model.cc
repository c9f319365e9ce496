#include "gridemu/topology/model.h"

#include <charconv>

namespace gridemu::topology {

std::string_view VnodeKindName(VnodeKind k) {
  switch (k) {
    case VnodeKind::kHost: return "host";
    case VnodeKind::kRouter: return "router";
    case VnodeKind::kSwitch: return "switch";
  }
  return "host";
}

std::string_view RuntimeName(Runtime r) {
  switch (r) {
    case Runtime::kNetns: return "netns";
    case Runtime::kLxc: return "lxc";
    case Runtime::kQemu: return "qemu";
  }
  return "netns";
}

Result<VnodeKind> ParseVnodeKind(std::string_view s) {
  for (auto k : {VnodeKind::kHost, VnodeKind::kRouter, VnodeKind::kSwitch}) {
    if (s == VnodeKindName(k)) return k;
  }
  return InvalidArgumentError("unknown vnode kind '" + std::string(s) +
                              "'; expected one of host, router, switch");
}

Result<Runtime> ParseRuntime(std::string_view s) {
  for (auto r : {Runtime::kNetns, Runtime::kLxc, Runtime::kQemu}) {
    if (s == RuntimeName(r)) return r;
  }
  return InvalidArgumentError("unknown runtime '" + std::string(s) +
                              "'; expected one of netns, lxc, qemu");
}

bool IsValidVnodeName(std::string_view name) {
  if (name.empty() || name.size() > 63) return false;
  for (char c : name) {
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-')) return false;
  }
  return name.front() != '-' && name.back() != '-';
}

Resources Resources::MergedWith(const Resources& over) const {
  Resources r = *this;
  if (over.cpu) r.cpu = over.cpu;
  if (over.memory_bytes) r.memory_bytes = over.memory_bytes;
  if (over.pids) r.pids = over.pids;
  return r;
}

Result<VnodeId> Topology::AddVnode(Vnode v) {
  if (!IsValidVnodeName(v.name)) {
    return InvalidArgumentError("invalid vnode name '" + v.name +
                                "': use 1-63 characters of a-z, 0-9 and '-', not starting or "
                                "ending with '-'");
  }
  auto id = static_cast<VnodeId>(vnodes_.size());
  auto [it, inserted] = by_name_.emplace(v.name, id);
  if (!inserted) return AlreadyExistsError("duplicate vnode name '" + v.name + "'");
  vnodes_.push_back(std::move(v));
  adjacency_.emplace_back();
  return id;
}

Result<LinkId> Topology::AddLink(Link l) {
  if (l.a >= vnodes_.size() || l.b >= vnodes_.size()) {
    return NotFoundError("link end out of range (" + std::to_string(l.a) + ", " +
                         std::to_string(l.b) + ")");
  }
  if (l.a == l.b) {
    return InvalidArgumentError("self-link on '" + vnodes_[l.a].name +
                                "': a link needs two different vnodes");
  }
  auto id = static_cast<LinkId>(links_.size());
  adjacency_[l.a].push_back(id);
  adjacency_[l.b].push_back(id);
  links_.push_back(std::move(l));
  return id;
}

void Topology::Reserve(size_t vnodes, size_t links) {
  vnodes_.reserve(vnodes_.size() + vnodes);
  adjacency_.reserve(adjacency_.size() + vnodes);
  by_name_.reserve(by_name_.size() + vnodes);
  links_.reserve(links_.size() + links);
}

Status Topology::AddGroup(Group g) {
  if (group_by_name_.count(g.name)) return AlreadyExistsError("duplicate group name '" + g.name + "'");
  for (VnodeId m : g.members) {
    if (m >= vnodes_.size()) return NotFoundError("group member out of range in '" + g.name + "'");
  }
  group_by_name_.emplace(g.name, groups_.size());
  groups_.push_back(std::move(g));
  return Status::Ok();
}

std::optional<VnodeId> Topology::Find(std::string_view name) const {
  auto it = by_name_.find(std::string(name));
  if (it == by_name_.end()) return std::nullopt;
  return it->second;
}

const Group* Topology::FindGroup(std::string_view name) const {
  auto it = group_by_name_.find(std::string(name));
  return it == group_by_name_.end() ? nullptr : &groups_[it->second];
}

std::string Topology::LinkName(LinkId l) const {
  const Link& link = links_[l];
  // Ordinal among the parallel links joining the same two vnodes (either order).
  int ordinal = 1;
  for (LinkId other : adjacency_[link.a]) {
    if (other >= l) break;
    const Link& o = links_[other];
    if ((o.a == link.a && o.b == link.b) || (o.a == link.b && o.b == link.a)) ++ordinal;
  }
  std::string name = vnodes_[link.a].name + "--" + vnodes_[link.b].name;
  if (ordinal > 1) name += "#" + std::to_string(ordinal);
  return name;
}

Result<LinkId> Topology::FindLink(std::string_view name) const {
  const std::string text(name);
  size_t sep = name.find("--");
  if (sep == std::string_view::npos || sep == 0) {
    return InvalidArgumentError("'" + text + "' is not a link name; expected 'a--b' (two vnode names)");
  }
  std::string_view a = name.substr(0, sep);
  std::string_view rest = name.substr(sep + 2);
  int ordinal = 1;
  if (size_t hash = rest.find('#'); hash != std::string_view::npos) {
    std::string_view num = rest.substr(hash + 1);
    auto [p, ec] = std::from_chars(num.data(), num.data() + num.size(), ordinal);
    if (ec != std::errc() || p != num.data() + num.size() || ordinal < 1) {
      return InvalidArgumentError("'" + text + "' has a bad parallel-link number; expected 'a--b#2'");
    }
    rest = rest.substr(0, hash);
  }
  if (rest.empty()) return InvalidArgumentError("'" + text + "' is not a link name; expected 'a--b'");
  auto ia = Find(a);
  if (!ia) return NotFoundError("link '" + text + "': no vnode named '" + std::string(a) + "'");
  auto ib = Find(rest);
  if (!ib) return NotFoundError("link '" + text + "': no vnode named '" + std::string(rest) + "'");
  int seen = 0;
  for (LinkId l : adjacency_[*ia]) {
    const Link& o = links_[l];
    if ((o.a == *ia && o.b == *ib) || (o.a == *ib && o.b == *ia)) {
      if (++seen == ordinal) return l;
    }
  }
  return NotFoundError("no link '" + text + "': '" + std::string(a) + "' and '" + std::string(rest) +
                       "' are not joined" + (ordinal > 1 ? " by that many parallel links" : ""));
}

}  // namespace gridemu::topology

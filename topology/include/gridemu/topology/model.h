// The topology model: vnodes, links with per-direction profiles, and groups
// (DESIGN.md §3, §4). Knows nothing of runtimes, agents or the kernel.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "gridemu/common/diagnostics.h"
#include "gridemu/common/link_profile.h"
#include "gridemu/common/status.h"

namespace gridemu::topology {

/// Dense index of a vnode in Topology::vnodes().
using VnodeId = uint32_t;
/// Dense index of a link in Topology::links().
using LinkId = uint32_t;

/// host: runs programs, does not forward. router: forwards IP between its
/// links. switch: an L2 bridge joining its links into one LAN.
enum class VnodeKind { kHost, kRouter, kSwitch };
/// Where a vnode runs: netns (namespaces + cgroups), lxc or qemu (libvirt).
enum class Runtime { kNetns, kLxc, kQemu };

std::string_view VnodeKindName(VnodeKind k);  ///< "host", "router", "switch"
std::string_view RuntimeName(Runtime r);      ///< "netns", "lxc", "qemu"
/// Parses "host" | "router" | "switch"; kInvalidArgument listing the choices.
Result<VnodeKind> ParseVnodeKind(std::string_view s);
/// Parses "netns" | "lxc" | "qemu"; kInvalidArgument listing the choices.
Result<Runtime> ParseRuntime(std::string_view s);

/// True for a valid vnode name: 1–63 characters of [a-z0-9-], starting with a
/// letter or digit and not ending with '-' (an RFC 1123 host label, since the
/// name becomes the vnode's hostname).
bool IsValidVnodeName(std::string_view name);

/// Resource limits of one vnode; unset = no limit / the defaults' value.
struct Resources {
  std::optional<double> cpu;             ///< cores, e.g. 0.25
  std::optional<uint64_t> memory_bytes;  ///< bytes
  std::optional<uint32_t> pids;          ///< max processes
  /// Fields set in `over` replace ours.
  Resources MergedWith(const Resources& over) const;
  friend bool operator==(const Resources&, const Resources&) = default;
};

/// A virtual node.
struct Vnode {
  std::string name;                 ///< unique, IsValidVnodeName()
  VnodeKind kind = VnodeKind::kHost;
  Runtime runtime = Runtime::kNetns;
  Resources resources;
  std::string group;                ///< owning group's name, "" if none
  int64_t group_index = -1;         ///< position in the group (GRIDEMU_INDEX), -1 if none
  std::string host;                 ///< pinned pnode id, "" = placement decides
  std::string label;                ///< original name (GML label), informational
  std::optional<double> latitude;   ///< degrees, when known (GML import)
  std::optional<double> longitude;  ///< degrees, when known
  SourceLoc loc;                    ///< where it was declared
};

/// A point-to-point link between vnodes a and b (a != b). Parallel links
/// between the same pair are allowed (GML multigraphs).
struct Link {
  VnodeId a = 0;
  VnodeId b = 0;
  LinkProfile forward;  ///< direction a -> b
  LinkProfile reverse;  ///< direction b -> a
  SourceLoc loc;
};

/// A named group of vnodes created from one `groups:` entry.
struct Group {
  std::string name;
  std::vector<VnodeId> members;  ///< in index order: members[i] has group_index i
  SourceLoc loc;
};

/// A whole topology. Ids are dense and stable (never reused). Not
/// thread-safe for writes; concurrent reads are fine.
/// Memory: O(vnodes + links); about 400 B per vnode and 500 B per link
/// (two LinkProfiles of optional fields), measured by bench/topology.
class Topology {
 public:
  /// Adds a vnode. kAlreadyExists if the name is taken, kInvalidArgument if
  /// the name is not IsValidVnodeName().
  Result<VnodeId> AddVnode(Vnode v);
  /// Adds a link. kInvalidArgument for a self-link, kNotFound for an id out of range.
  Result<LinkId> AddLink(Link l);
  /// Reserves room for `vnodes` more vnodes and `links` more links (an
  /// optimisation for expanding large groups and generated graphs).
  void Reserve(size_t vnodes, size_t links);
  /// Adds a group whose members already exist. kAlreadyExists if the name is taken.
  Status AddGroup(Group g);

  std::optional<VnodeId> Find(std::string_view name) const;
  const Group* FindGroup(std::string_view name) const;

  const Vnode& vnode(VnodeId id) const { return vnodes_[id]; }
  Vnode& mutable_vnode(VnodeId id) { return vnodes_[id]; }
  const Link& link(LinkId id) const { return links_[id]; }
  Link& mutable_link(LinkId id) { return links_[id]; }
  const std::vector<Vnode>& vnodes() const { return vnodes_; }
  const std::vector<Link>& links() const { return links_; }
  const std::vector<Group>& groups() const { return groups_; }
  size_t num_vnodes() const { return vnodes_.size(); }
  size_t num_links() const { return links_.size(); }

  /// Links incident to a vnode, in insertion order.
  const std::vector<LinkId>& incident(VnodeId id) const { return adjacency_[id]; }
  /// The other end of link `l` seen from `from` (which must be one of its ends).
  VnodeId Peer(LinkId l, VnodeId from) const {
    return links_[l].a == from ? links_[l].b : links_[l].a;
  }
  /// Profile of link `l` in the direction leaving `from`.
  const LinkProfile& ProfileFrom(LinkId l, VnodeId from) const {
    return links_[l].a == from ? links_[l].forward : links_[l].reverse;
  }

  /// "a--b" for the first link between a and b (in that order), "a--b#2",
  /// "a--b#3", ... for parallel ones. Names are how events refer to links.
  std::string LinkName(LinkId l) const;
  /// Resolves "a--b" or "b--a" (and "#k" suffixes) to a link; kNotFound
  /// when no such link exists, kInvalidArgument when the text is not a link name.
  Result<LinkId> FindLink(std::string_view name) const;

 private:
  std::vector<Vnode> vnodes_;
  std::vector<Link> links_;
  std::vector<Group> groups_;
  std::vector<std::vector<LinkId>> adjacency_;
  std::unordered_map<std::string, VnodeId> by_name_;
  std::unordered_map<std::string, size_t> group_by_name_;
};

}  // namespace gridemu::topology

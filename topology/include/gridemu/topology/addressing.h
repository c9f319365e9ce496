// Address and route planning for the explicit-link model (DESIGN.md §4):
// which interfaces every vnode has, their IPv4 addresses, whether the vnode
// forwards, and its static routes. Pure planning: no kernel, no I/O. The
// controller turns an AddressPlan into the agent's concrete link objects.
//
// Allocation, from one pool (default 10.0.0.0/8):
// - a /31 per point-to-point link between two non-switch vnodes (RFC 3021);
// - one subnet per switch LAN: a switch, the switches joined to it (directly or
//   through other switches) and every non-switch vnode linked to any of them.
//   The subnet fits the members plus network and broadcast addresses and is at
//   least AddressingOptions::max_lan_prefix_len wide (a /24 by default).
//   Switches get no address: they are L2 bridges.
// Blocks are carved from the start of the pool, largest first (so every block is
// aligned with no holes), LANs in order of their lowest link id, then /31s in
// link id order. The plan is deterministic for a given topology and options.
// Every function here is a pure function of its arguments (thread-safe).
//
// Limits: addresses given by the user are not taken into account yet (the
// model has no field for them); a vnode with two links into the same LAN gets
// two addresses of one subnet.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "gridemu/common/status.h"
#include "gridemu/topology/model.h"
#include "gridemu/topology/routing.h"

namespace gridemu::topology {

/// An IPv4 address; `value` is in host byte order (10.0.0.1 = 0x0A000001).
struct Ipv4Address {
  uint32_t value = 0;
  /// Dotted quad, e.g. "10.0.0.1".
  std::string ToString() const;
  friend auto operator<=>(const Ipv4Address&, const Ipv4Address&) = default;
};

/// An IPv4 prefix: `address` with its low (32 - length) bits zero, length 0..32.
struct Ipv4Prefix {
  Ipv4Address address;
  uint8_t length = 0;
  /// Number of addresses covered: 2^(32 - length).
  uint64_t size() const { return uint64_t{1} << (32 - length); }
  /// True if `a` lies inside this prefix.
  bool Contains(Ipv4Address a) const;
  /// "10.0.0.0/8".
  std::string ToString() const;
  friend bool operator==(const Ipv4Prefix&, const Ipv4Prefix&) = default;
};

/// Parses a dotted quad ("10.1.2.3"); kInvalidArgument naming the text otherwise.
Result<Ipv4Address> ParseIpv4Address(std::string_view text);
/// Parses "a.b.c.d/len" (len 0..32). kInvalidArgument for bad syntax or when
/// host bits are set ("10.0.0.1/8"), naming the text and the expected form.
Result<Ipv4Prefix> ParseIpv4Prefix(std::string_view text);

/// Knobs of PlanAddressing().
struct AddressingOptions {
  /// Pool every subnet is carved from.
  Ipv4Prefix pool{Ipv4Address{0x0A000000}, 8};  // 10.0.0.0/8
  /// Edge weight of the shortest paths that routes follow.
  RouteMetric metric = RouteMetric::kDelay;
  /// Longest prefix a LAN gets: LANs are at least this wide (24 = 256
  /// addresses). Larger LANs get the shortest prefix that fits them.
  uint8_t max_lan_prefix_len = 24;
  /// Upper bound on the total number of routes in the plan; beyond it
  /// PlanAddressing() fails with kResourceExhausted (16 B per route).
  size_t max_routes = 20'000'000;
};

/// One interface of a vnode: the vnode's end of one link.
struct InterfacePlan {
  std::string name;  ///< "eth0", "eth1", ... in Topology::incident() order
  LinkId link = 0;   ///< the link this interface is an end of
  VnodeId peer = 0;  ///< the vnode at the other end of `link`
  /// The interface's address; unset on switch ports (bridge members).
  std::optional<Ipv4Address> address;
  /// Prefix length of `address`' subnet: 31 on a point-to-point link, the LAN's otherwise.
  uint8_t prefix_len = 0;
  /// Index into AddressPlan::lans when the link belongs to a switch LAN, else -1.
  int32_t lan = -1;
};

/// One static route. The kernel adds routes to connected subnets by itself;
/// these are the others.
struct RoutePlan {
  Ipv4Prefix dst;          ///< a /32 (one address of another vnode) or 0.0.0.0/0 (default)
  Ipv4Address gateway;     ///< next hop: its address on the subnet shared with `interface`
  uint32_t interface = 0;  ///< index into VnodePlan::interfaces: the outgoing device
};

/// Everything one vnode needs for its network.
struct VnodePlan {
  /// One per incident link, in Topology::incident() order.
  std::vector<InterfacePlan> interfaces;
  /// Enable IPv4 forwarding (routers).
  bool forwarding = false;
  /// A switch: bridge all `interfaces` together; they get no addresses.
  bool bridge = false;
  /// Sorted by destination.
  std::vector<RoutePlan> routes;
};

/// A switch LAN: switches joined by switch-to-switch links, and the
/// non-switch vnodes attached to them.
struct LanPlan {
  Ipv4Prefix subnet;
  std::vector<VnodeId> switches;  ///< ascending
  /// Attached non-switch vnodes, one per attachment link in link id order;
  /// members[k] has address subnet + 1 + k.
  std::vector<VnodeId> members;
  std::vector<LinkId> links;  ///< every link of the LAN, ascending
};

/// The result of PlanAddressing(). Memory: O(vnodes + links + routes).
struct AddressPlan {
  Ipv4Prefix pool;
  std::vector<VnodePlan> vnodes;  ///< indexed by VnodeId
  std::vector<LanPlan> lans;
  /// Subnet of every link, indexed by LinkId: its /31, or its LAN's subnet.
  std::vector<Ipv4Prefix> link_subnet;
  /// Addresses of the pool taken by subnets (network and broadcast included).
  uint64_t addresses_used = 0;
  size_t num_routes = 0;  ///< sum of VnodePlan::routes sizes
};

/// Plans interfaces, addresses, forwarding and routes for every vnode.
///
/// Routes: a host with exactly one interface gets one default route, via its
/// link peer when that peer is a router, or via the LAN's router when its LAN
/// has exactly one; a host alone with other hosts needs none. Every other
/// non-switch vnode (routers, multi-homed hosts, hosts on LANs with several
/// routers) gets a /32 route to each address of each other vnode that is not
/// on one of its own subnets, through the next hop of NextHopsTowards() (one
/// Dijkstra per destination vnode that some vnode needs a route to; none at
/// all for a star of hosts around one router). A next hop across a switch LAN
/// is the L3 vnode where the path leaves the LAN. Unreachable destinations get
/// no route.
///
/// Errors: kInvalidArgument for a bad pool or option; kResourceExhausted when
/// the pool is too small (the message gives the pool size, what is needed and
/// the counts of links and LANs) or routes exceed `max_routes`.
/// Time: O(V + E) without routes; O(D (V + E) log V + routes) with D destinations.
Result<AddressPlan> PlanAddressing(const Topology& topo, const AddressingOptions& options = {});

/// One /etc/hosts entry: a vnode's name and addresses; addresses[0] is the
/// primary one (its first interface that has an address).
struct HostsEntry {
  std::string name;
  std::vector<Ipv4Address> addresses;
};

/// /etc/hosts input for every vnode with at least one address, in VnodeId order.
std::vector<HostsEntry> HostsEntries(const Topology& topo, const AddressPlan& plan);

/// Renders /etc/hosts text: the loopback lines, then "ADDRESS NAME" for each
/// entry's primary address, one line per vnode.
std::string RenderEtcHosts(const std::vector<HostsEntry>& entries);

}  // namespace gridemu::topology

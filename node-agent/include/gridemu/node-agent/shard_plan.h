// A DeployShard resolved once into typed objects (the model: containerlab's
// LinkVEthRaw.Resolve() -> LinkVEth, links/link_veth.go): ResolveShard() checks
// the raw v1::DeployShard (names, interfaces, addresses, routes, tunnels,
// every profile against the shaping backend) and, when it is sound, returns a
// ShardPlan — vnode specs, veth and VXLAN links with parsed addresses and
// profiles, bridges, routes — that the ShardApplier (shard_applier.h) acts on
// without parsing anything again. Pure: no effects, no kernel, thread-safe.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "gridemu/common/link_profile.h"
#include "gridemu/common/status.h"
#include "gridemu/netshape/capabilities.h"
#include "gridemu/netshape/plan.h"
#include "gridemu/node-agent/agent_core.h"
#include "gridemu/node-agent/runtime.h"
#include "gridemu/v1/agent.pb.h"

namespace gridemu::agent {

/// What a vnode is, beside what the runtime needs to make it (VnodeSpec).
struct VnodeRole {
  std::string kind;         ///< "host", "router" or "switch"
  bool forwarding = false;  ///< net.ipv4.ip_forward = 1 (routers)
};

/// The other half of a cross-pnode link (DESIGN.md §4): this pnode makes only
/// the local end, a VXLAN device.
struct TunnelPlan {
  uint32_t vni = 0;    ///< 1 .. 2^24 - 1
  std::string remote;  ///< the other pnode's underlay IPv4 address
  bool local_a = true; ///< end a is the local one (else end b)
};

/// How a link reaches the wire namespace (userspace backend, see ShardPlan::wire):
/// its local ends are veths to two ports of a bridge of its own there (a tunnel's
/// remote side is the VXLAN device, in the wire namespace as the bridge's other port).
struct WirePlan {
  std::string bridge;         ///< "l<index>"
  std::string port_a;         ///< "l<index>a": the port facing end a
  std::string port_b;         ///< "l<index>b", or the VXLAN device "l<index>x" for a tunnel end b
  uint32_t group = 0;         ///< the bridge's interface group: index + 1
  /// The ports' interface indexes in the wire namespace: kPortIfindexBase + 2 x index
  /// (+1 for port_b), never an index their peers in the vnodes have (VethSpec::ifindex_a).
  uint32_t ifindex_a = 0, ifindex_b = 0;
};

/// Interface indexes given to bridge ports (wire ports, and switch vnodes' ports) start
/// here: above what the kernel hands out in a namespace of fewer than 65,536 interfaces.
inline constexpr uint32_t kPortIfindexBase = 0x10000;

/// One link: a veth pair between two vnodes here, or one end of a tunnel.
struct LinkPlan {
  std::string name;  ///< "a--b"
  /// Interface alias of its devices: "<prefix>:<experiment>:<name>".
  std::string tag;
  std::string vnode_a, vnode_b;
  std::string if_a, if_b;
  /// Dotted quads ("" = none) and prefix lengths.
  std::string addr_a, addr_b;
  uint8_t len_a = 0, len_b = 0;
  uint32_t mtu = 0;  ///< bytes; 0 = the default
  /// a -> b and b -> a; empty() = not shaped.
  LinkProfile forward, reverse;
  /// netshape tags of the two directions: "<experiment>:<name>:fwd|rev".
  std::string forward_tag, reverse_tag;
  std::optional<TunnelPlan> tunnel;
  /// Set when the link runs through the wire namespace. (A tunnel whose local end is b
  /// is mirrored: port_a is then the VXLAN device and port_b faces end b.)
  std::optional<WirePlan> wire;
  /// Events set a profile on it (v1::LinkSpec.reshaped).
  bool reshaped = false;
  /// The interface index of end a / end b when that end is a port of a switch vnode's
  /// bridge (kPortIfindexBase + the link's index; of a link between two switches, end a
  /// only); 0 = the kernel's choice.
  uint32_t port_ifindex_a = 0, port_ifindex_b = 0;

  bool has_a() const { return !tunnel || tunnel->local_a; }
  bool has_b() const { return !tunnel || !tunnel->local_a; }
  /// Which half of a direction this pnode shapes: both for a veth link; for a
  /// tunnel, the sender half of the direction the local end sends.
  netshape::ShapeHalf Half(bool forward_dir) const;
  /// Objects this link counts for in progress reports: 1, or 2 when shaped.
  uint32_t objects() const { return forward.empty() && reverse.empty() ? 1 : 2; }
};

/// A Linux bridge in a switch vnode.
struct BridgePlan {
  std::string vnode;
  std::string name;
  std::vector<std::string> ports;
  std::string tag;  ///< "<prefix>:<experiment>:<vnode>/<name>"
};

/// A static IPv4 route in a vnode.
struct RoutePlan {
  std::string vnode;
  std::string dst = "0.0.0.0";  ///< network; with prefix_len 0: the default route
  uint8_t prefix_len = 0;
  std::string gateway;  ///< "" = on-link out of ifname
  std::string ifname;   ///< "" = chosen by the kernel from the gateway
};

/// A whole resolved shard.
struct ShardPlan {
  std::string experiment;
  uint64_t generation = 0;
  uint64_t seed = 0;
  /// What the runtime makes (experiment, name, group index, resources, the
  /// shared hosts table, output and shared directories, GRIDEMU_GROUP, and
  /// GRIDEMU_ADDR / GRIDEMU_ADDRS: the primary address and all addresses,
  /// space-separated, from the vnode's hosts entry), in
  /// shard order, ready for VnodeRuntime::CreateBatch; roles[i] is vnodes[i]'s.
  std::vector<VnodeSpec> vnodes;
  std::vector<VnodeRole> roles;
  std::vector<LinkPlan> links;
  std::vector<BridgePlan> bridges;
  std::vector<RoutePlan> routes;
  std::string shared_dir;  ///< GRIDEMU_SHARED ("" = none)
  std::string output_dir;  ///< where the vnodes' GRIDEMU_OUT live ("" = the agent's default)
  std::chrono::milliseconds metrics_interval{0};
  std::map<std::string, size_t> vnode_index;  ///< name -> position in vnodes
  std::map<std::string, size_t> link_index;   ///< name -> position in links
  /// The shard as received, kept as the record a restarted agent adopts from.
  v1::DeployShard source;
  /// The wire namespace: with the userspace backend, every link that impairs (delay,
  /// jitter, loss, duplicate, reorder) in either direction, or that events reshape, runs
  /// through a per-experiment namespace of bridges where the delay line holds its
  /// packets (netshape HoldPoint): receivers see them, and stamp them, only once
  /// released. It is made as a vnode of the experiment named kWireVnode (a name no
  /// topology can give: they are [a-z0-9-]). Unset = no link needs it.
  std::optional<VnodeSpec> wire;

  static constexpr const char* kWireVnode = "_wire";

  /// Objects a deploy makes: vnodes + links + shaped links.
  uint32_t objects() const;
  /// The routes whose device is `ifname` of `vnode` (to put back when a link
  /// comes up again: taking a device down deletes its routes).
  std::vector<const RoutePlan*> RoutesVia(const std::string& vnode,
                                          const std::string& ifname) const;
};

/// What ResolveShard needs to know of this pnode.
struct ResolveOptions {
  /// Object prefix: interface tags are "<prefix>:<experiment>:...".
  std::string prefix = "gridemu";
  /// The runtime vnodes are made with; a vnode asking for another is an error.
  std::string runtime_name = "netns";
  /// This pnode's underlay address ("" = none: tunnel links are errors).
  std::string local_address;
  /// The shaping backend in use; unset = none works here (a link with a
  /// profile is an error).
  std::optional<netshape::Backend> shaping_backend;
  netshape::Capabilities capabilities;
  /// Where a vnode's outputs go when the shard has no output_dir:
  /// <default_output_dir>/<experiment>/<vnode>.
  std::string default_output_dir = "/tmp/gridemu-out";
};

/// Checks `shard` and resolves it. Every problem is one ShardObjectError in
/// `*errors` (when given), in shard order; the call then fails with
/// kInvalidArgument whose message is the first problem and how many there
/// are. Problems: a bad experiment id; a shaping backend asked for that is not
/// the one here; per vnode: a bad or duplicate name, another runtime, an
/// unknown kind; per link: no or a duplicate name, an end on a vnode not in
/// the shard, a bad or duplicate interface name, a bad address, both ends on
/// one vnode, a profile that does not validate or that the backend cannot
/// honour; per tunnel: a VNI out of range or used twice, a bad or own remote
/// address, no local address here, a bad local_end, the remote end in this
/// shard, a bad MTU; per bridge: an unknown vnode, a bad or taken name, a port
/// that is not an interface of the vnode; per route: an unknown vnode, a bad
/// destination or gateway, neither gateway nor device, an unknown device.
Result<ShardPlan> ResolveShard(const v1::DeployShard& shard, const ResolveOptions& options,
                               std::vector<ShardObjectError>* errors = nullptr);

/// True when a profile asks for more than a rate and a queue (a delay line with the
/// userspace backend).
bool HasImpairment(const LinkProfile& profile);

/// "10.0.0.1/31" -> address "10.0.0.1", length 31; without "/len" the length
/// is 32 unless `need_len`. Errors: kInvalidArgument naming the text.
Status ParseCidr(const std::string& text, std::string* address, uint8_t* prefix_len,
                 bool need_len);

}  // namespace gridemu::agent

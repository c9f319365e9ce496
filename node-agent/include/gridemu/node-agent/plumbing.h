// Link plumbing (DESIGN.md §4, §6): veth pairs, bridges, addresses, IPv4
// forwarding and static routes inside network namespaces, applied through
// rtnetlink (libnl-route) with no `ip`/`tc` subprocesses.
//
// The specs below are plain values with no tie to the topology model: the
// controller plans (topology/addressing.h) and ships concrete objects; the
// agent applies them here. Every object a caller creates should carry a tag
// (an interface alias such as "gridemu:<experiment>:<link>") so that cleanup
// finds exactly the objects of one experiment (ListTagged(), DeleteTagged()).
//
// Cost model of the netlink implementation: one netlink socket per namespace
// and call, opened on first use (the calling thread enters the namespace,
// opens the socket and returns) and reused for every object of that namespace
// in the call (Apply() groups a batch by namespace); a veth pair is created
// with one request that places each end directly in its namespace; no
// per-object process. Measured (tests/node-agent/plumbing_scale_root_test.cc,
// 2 shared cores, kernel 6.18): 1,000 veth pairs between 1,000 namespaces and
// a hub, with 2,000 addresses and 1,000 routes, in 0.7-1.2 s wall, 0.5 s CPU;
// DeleteTagged() of the 1,000 pairs in 0.4 s.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "gridemu/netshape/netns.h"
#include "gridemu/common/status.h"

namespace gridemu::agent {

// The namespace abstraction is netshape's (netns.h), shared with the shaping.
using netshape::NetnsRef;
using netshape::OpenNetns;
using netshape::ScopedNetns;

/// A veth pair: end a named `name_a` in `ns_a`, end b named `name_b` in `ns_b`.
/// Both ends are created in their namespaces directly (never in the home
/// namespace first), get the MTU and the tag as interface alias, and are up
/// when `up` is set. A pair costs one request to create it plus one per end
/// (alias, IPv6 mode and up together).
struct VethSpec {
  NetnsRef ns_a;
  std::string name_a;  ///< 1-15 bytes, no '/', ':' or whitespace (e.g. "eth0")
  NetnsRef ns_b;
  std::string name_b;
  uint32_t mtu = 0;  ///< bytes; 0 = kernel default (1500)
  std::string tag;   ///< ifalias of both ends, at most 255 bytes; "" = none
  bool up = true;
  /// false (default): IPv6 address generation is off on both ends
  /// (IN6_ADDR_GEN_MODE_NONE): no link-local address, hence no DAD, MLD or
  /// router solicitations on emulated links, and a cheaper set-up. true: the
  /// kernel's default. Ignored on kernels without IPv6.
  bool ipv6_link_local = false;
  /// The interface index end a must have in ns_a; 0 = the kernel's choice. Give one to
  /// an end that becomes a bridge port, from a range its peer's namespace does not
  /// reach (e.g. >= 65536): the kernel's link watcher delays a veth's carrier event by
  /// up to 1 s when the veth's ifindex equals its peer's (linkwatch_urgent_event(), as
  /// both do when each is the first interface of a fresh namespace), and a bridge port
  /// forwards nothing until that event. Errors: kAlreadyExists when ns_a has it.
  uint32_t ifindex_a = 0;
};

/// An IPv4 address on an interface. Re-adding the same address is not an error.
struct AddressSpec {
  NetnsRef ns;
  std::string ifname;
  std::string address;      ///< dotted quad, e.g. "10.0.0.1"
  uint8_t prefix_len = 32;  ///< 0..32; 31 for a point-to-point link (RFC 3021)
};

/// An IPv4 route in the main table. Adding a route that exists replaces it
/// (so applying a plan twice is harmless).
struct RouteSpec {
  NetnsRef ns;
  std::string dst = "0.0.0.0";  ///< destination network; with prefix_len 0: the default route
  uint8_t prefix_len = 0;       ///< 0..32
  std::string gateway;          ///< next hop, dotted quad; "" = on-link route out of `ifname`
  std::string ifname;           ///< outgoing interface; "" = let the kernel pick by gateway
  uint32_t metric = 0;          ///< route priority; lower wins
};

/// A Linux bridge (a switch vnode) with the named interfaces enslaved to it.
/// The ports must exist in the same namespace. STP is off and the forward
/// delay 0, so ports forward as soon as they are up.
struct BridgeSpec {
  NetnsRef ns;
  std::string name;                ///< e.g. "br0"
  std::vector<std::string> ports;  ///< interfaces to enslave, e.g. {"eth0", "eth1"}
  uint32_t mtu = 0;                ///< bytes; 0 = kernel default
  std::string tag;                 ///< ifalias of the bridge; "" = none
  bool up = true;
  /// As VethSpec::ipv6_link_local, for the bridge device.
  bool ipv6_link_local = false;
  /// Interface group (IFLA_GROUP); 0 = the kernel's default. netshape dispatches the
  /// delay-line rules of a wire namespace on it (netshape/shape_request.h HoldPoint).
  uint32_t group = 0;
  /// IGMP/MLD snooping (IFLA_BR_MCAST_SNOOPING), the kernel's default. Off, the bridge
  /// floods multicast like a wire and sends no queries or reports of its own (a
  /// snooping bridge joins the all-snoopers groups and reports them on its ports).
  bool multicast_snooping = true;
};

/// One interface as listed by ListTagged().
struct LinkInfo {
  std::string name;
  int ifindex = 0;
  std::string alias;   ///< the tag
  std::string kind;    ///< "veth", "bridge", ... ("" for plain devices)
  uint32_t mtu = 0;    ///< bytes
  bool up = false;     ///< administratively up (IFF_UP)
  int master = 0;      ///< ifindex of the bridge it is enslaved to, 0 if none
  uint32_t group = 0;  ///< interface group (IFLA_GROUP); 0 is the kernel's default
};

/// A batch of plumbing, applied by Plumbing::Apply() in this order: veths,
/// bridges, addresses, forwarding, routes (each step may need the previous).
struct PlumbingBatch {
  std::vector<VethSpec> veths;
  std::vector<BridgeSpec> bridges;
  std::vector<AddressSpec> addresses;
  std::vector<NetnsRef> forwarding;  ///< namespaces that get net.ipv4.ip_forward = 1
  std::vector<RouteSpec> routes;
};

/// Applies link objects to network namespaces. The kernel sits behind this
/// interface so that callers can be tested with a fake.
///
/// Errors, for every method: kInvalidArgument for a malformed spec (bad name,
/// address, prefix length, tag too long), kNotFound when a namespace or an
/// interface does not exist, kAlreadyExists when an interface name is taken,
/// kPermissionDenied without CAP_NET_ADMIN / CAP_SYS_ADMIN, kUnimplemented when
/// the kernel lacks a feature (e.g. no veth or bridge support), kInternal for
/// other kernel errors. Messages name the object and the namespace.
///
/// Thread-safety: an instance is used by one thread at a time (it caches
/// netlink sockets); use one instance per thread for parallel work. Methods
/// may move the calling thread into other namespaces for the duration of a
/// system call, and always move it back (ScopedNetns).
class Plumbing {
 public:
  virtual ~Plumbing() = default;

  /// Creates a veth pair as described by `spec` (one request), then sets the
  /// tag on both ends.
  virtual Status CreateVeth(const VethSpec& spec) = 0;
  /// Creates a bridge, tags it, brings it up and enslaves `spec.ports`.
  virtual Status CreateBridge(const BridgeSpec& spec) = 0;
  /// Sets an interface administratively up or down.
  virtual Status SetLinkUp(const NetnsRef& ns, std::string_view ifname, bool up) = 0;
  /// Adds an IPv4 address (idempotent).
  virtual Status AddAddress(const AddressSpec& spec) = 0;
  /// Sets net.ipv4.ip_forward = 1 in the namespace (by writing
  /// /proc/sys/net/ipv4/ip_forward from inside it).
  virtual Status EnableForwarding(const NetnsRef& ns) = 0;
  /// Writes a sysctl of the namespace, e.g. key "net.bridge.bridge-nf-call-iptables",
  /// value "1" (through /proc/sys opened from inside it). Errors: kNotFound (no such
  /// key), kInvalidArgument (a key with "..", '/' or spaces), kInternal.
  virtual Status SetSysctl(const NetnsRef& ns, std::string_view key, std::string_view value) = 0;
  /// Adds or replaces an IPv4 route.
  virtual Status AddRoute(const RouteSpec& spec) = 0;
  /// Deletes an interface (for a veth end, the kernel deletes its peer too).
  /// kNotFound when it does not exist.
  virtual Status DeleteLink(const NetnsRef& ns, std::string_view ifname) = 0;
  /// Interfaces of the namespace whose alias starts with `tag_prefix`
  /// (a non-empty prefix; kInvalidArgument otherwise), in ifindex order.
  virtual Result<std::vector<LinkInfo>> ListTagged(const NetnsRef& ns,
                                                   std::string_view tag_prefix) = 0;
  /// Deletes every interface that ListTagged() returns (with their veth peers,
  /// wherever those are) and returns how many it found. The netlink
  /// implementation deletes them in one batch: it moves them into an interface
  /// group that no other interface of the namespace is in, then deletes that
  /// group with one request (deleting devices one by one costs the kernel an
  /// RCU grace period each; 1,000 veths took 20 s that way).
  virtual Result<size_t> DeleteTagged(const NetnsRef& ns, std::string_view tag_prefix);
  /// Applies a whole batch in PlumbingBatch order and stops at the first error,
  /// which names the failing object; objects made before it stay (remove them
  /// by tag). Implementations may reorder work between namespaces to reuse
  /// sockets, but never run a step before the steps it depends on.
  virtual Status Apply(const PlumbingBatch& batch);
  /// Closes cached namespace sockets and descriptors (they reopen on demand).
  virtual void CloseNamespaces() {}
};

/// Options of the netlink implementation.
struct NetlinkPlumbingOptions {
  /// Within a call, at most this many namespaces keep an open netlink socket
  /// and nsfs descriptor (2 fds each); the least recently used is closed
  /// beyond it. Apply() visits each namespace once, so a small cache suffices.
  size_t max_cached_namespaces = 256;
  /// false (default): every call closes its namespace sockets and descriptors
  /// when it returns, so the Plumbing never keeps a namespace alive (an open
  /// descriptor or socket would keep a deleted namespace, and its veths, in
  /// existence) nor talks to a namespace that was deleted and re-created under
  /// the same path. true: they stay open across calls (saving a setns() pair
  /// and a socket per namespace per call); the caller must then call
  /// CloseNamespaces() before deleting or re-creating namespaces.
  bool keep_namespaces_open = false;
};

/// The rtnetlink implementation. Its home namespace is the calling thread's
/// current one. Errors: kInternal when no netlink socket can be opened.
Result<std::unique_ptr<Plumbing>> NewNetlinkPlumbing(const NetlinkPlumbingOptions& options = {});

/// Checks an interface name: 1-15 bytes, not "." or "..", no '/', ':' or
/// whitespace. kInvalidArgument naming the name otherwise.
Status ValidateIfname(std::string_view name);

}  // namespace gridemu::agent

// Cross-pnode links over VXLAN (DESIGN.md §4; RFC 7348): a link between a
// vnode on this pnode and a vnode on another pnode is one VXLAN segment (one
// VNI) carried point to point between the two pnodes' underlay addresses.
//
// Design. Each end of such a link is a VXLAN device that *is* the vnode's
// interface: it is created in the pnode's underlay namespace (where its UDP
// socket and its route to the peer pnode live, so the kernel keeps
// encapsulating there), tagged, moved into the vnode's namespace, renamed
// (e.g. "eth1") and brought up. Frames the vnode sends on it leave the
// underlay as UDP to `remote`:dst_port; frames arriving for the VNI come out
// of it inside the vnode. The alternative, a veth from the vnode to a per-VNI
// bridge enslaving the VXLAN device on the pnode, costs two more devices and
// a bridge hop per link for nothing on a point-to-point segment; with the
// device in the vnode, shaping (netshape) applies to it like to a veth end.
// The VXLAN device has learning off and `remote` as its default destination
// (the all-zeros FDB entry), so no multicast group or FDB management is
// needed. No topology types here: the controller plans VNIs and addresses and
// the agent applies them.
//
// MTU. Every frame carries 50 more bytes on the underlay (outer IPv4 20 +
// UDP 8 + VXLAN 8 + the inner Ethernet header 14), so the vnode's interface
// MTU is the underlay MTU less 50 (VxlanInnerMtu()); a larger one would
// fragment or drop on the underlay, and the kernel refuses it.
//
// Requests. CreateVxlan() costs two lookups (the underlay device, and that
// the name is free in the vnode's namespace) and four requests: in the
// underlay namespace, create (under a temporary name "gvx<vni><port>", with
// the MTU), tag (the ifalias: a crash from here on leaves an object that
// cleanup finds; the kernel ignores an alias given at creation), and move
// (renamed, IPv6 address generation turned off: a namespace move resets the
// IPv6 settings); then, in the vnode's namespace, up (the kernel applies a
// request's flags before its IPv6 settings, so "up" in the move request would
// add a link-local address first). If a step fails, what it made is deleted.
//
// Cleanup. A VXLAN device is an ordinary interface carrying its tag: delete
// it with DeleteTagged() (or Plumbing::DeleteTagged()) in the vnode's
// namespace, and in the underlay namespace for leftovers of an interrupted
// create (CreateVxlan() itself replaces a leftover carrying its own tag).
// Deleting the vnode's namespace deletes the device too, and so does deleting
// the underlay namespace (the kernel removes the VXLAN devices of a dying
// namespace wherever they were moved); both happen in the kernel's
// asynchronous namespace cleanup, so the VNI may stay in use for a few
// milliseconds after the namespace is gone.
//
// Errors, for every method: kInvalidArgument for a malformed spec (bad name,
// address, VNI, MTU, tag), kNotFound when a namespace or the underlay device
// does not exist, kAlreadyExists when the name is taken in the vnode's
// namespace or the VNI is in use on that port in the underlay namespace,
// kPermissionDenied without CAP_NET_ADMIN / CAP_SYS_ADMIN, kUnimplemented when
// the kernel has no VXLAN support, kInternal for other kernel errors.
// Messages name the device, the VNI and the namespaces.
//
// Thread-safety: an instance is used by one thread at a time. Calls move the
// calling thread into the underlay and the vnode's namespaces for the time it
// takes to open a netlink socket in each, and always move it back
// (ScopedNetns). No socket or descriptor is kept between calls.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "gridemu/node-agent/plumbing.h"
#include "gridemu/netshape/netns.h"
#include "gridemu/common/status.h"

namespace gridemu::agent {

/// Bytes VXLAN over IPv4 adds to each frame: outer IPv4 header 20 + UDP 8 +
/// VXLAN header 8 + the encapsulated Ethernet header 14 (RFC 7348 §5).
inline constexpr uint32_t kVxlanIpv4OverheadBytes = 50;
/// IANA's port for VXLAN (RFC 7348 §5). (Linux's own default is 8472.)
inline constexpr uint16_t kVxlanDefaultPort = 4789;
/// VNIs are 24 bits.
inline constexpr uint32_t kVxlanMaxVni = (1u << 24) - 1;

/// MTU, in bytes, of an interface whose frames ride VXLAN over IPv4 on an
/// underlay whose MTU is `underlay_mtu` bytes: underlay_mtu - 50 (1450 on a
/// 1500-byte Ethernet). kInvalidArgument when that would be below 68, the
/// smallest MTU IPv4 allows (RFC 791).
Result<uint32_t> VxlanInnerMtu(uint32_t underlay_mtu);

/// One end of a cross-pnode link: a VXLAN device made in `underlay_ns` and
/// moved into `ns` as `name`.
struct VxlanSpec {
  /// The pnode's underlay namespace, whose interfaces and routes reach the
  /// peer pnode (home = the namespace the VxlanPlumbing was created in).
  NetnsRef underlay_ns;
  /// Underlay interface in `underlay_ns` (e.g. "eth0"): the tunnel's packets
  /// leave through it and its MTU sets the default `mtu`. "" = routed by
  /// `remote` and a 1500-byte underlay assumed.
  std::string underlay_dev;
  /// VXLAN network identifier, 0..16,777,215; unique per underlay namespace
  /// and port (the kernel refuses a second device with the same VNI).
  uint32_t vni = 0;
  std::string local;                      ///< this pnode's underlay IPv4 address, dotted quad
  std::string remote;                     ///< the peer pnode's underlay IPv4 address (unicast)
  uint16_t dst_port = kVxlanDefaultPort;  ///< UDP port on both pnodes
  /// The vnode's namespace, where the device ends up.
  NetnsRef ns;
  std::string name;  ///< its name there, 1-15 bytes (e.g. "eth1")
  /// Bytes; 0 = VxlanInnerMtu(underlay_dev's MTU), or 1450 without
  /// underlay_dev. With underlay_dev, more than that is kInvalidArgument.
  uint32_t mtu = 0;
  /// Interface alias, e.g. "gridemu:<experiment>:<link>"; required (1-255
  /// bytes): cleanup finds the device by it.
  std::string tag;
  bool up = true;
  /// As VethSpec::ipv6_link_local: false = IPv6 address generation off.
  bool ipv6_link_local = false;
};

/// A VXLAN device as listed by ListVxlan().
struct VxlanInfo {
  LinkInfo link;  ///< name, ifindex, alias, kind "vxlan", MTU, up
  uint32_t vni = 0;
  std::string local;   ///< "" when not set
  std::string remote;  ///< "" when not set
  uint16_t dst_port = 0;
  int underlay_ifindex = 0;  ///< in the underlay namespace; 0 = none
};

/// Creates and removes VXLAN link ends. The kernel sits behind this interface
/// so that callers can be tested with a fake.
class VxlanPlumbing {
 public:
  virtual ~VxlanPlumbing() = default;
  /// Creates the device described by `spec` (see the file comment).
  virtual Status CreateVxlan(const VxlanSpec& spec) = 0;
  /// VXLAN devices of the namespace whose alias starts with `tag_prefix`
  /// (non-empty; kInvalidArgument otherwise), in ifindex order.
  virtual Result<std::vector<VxlanInfo>> ListVxlan(const NetnsRef& ns,
                                                   std::string_view tag_prefix) = 0;
  /// Deletes every interface of the namespace whose alias starts with
  /// `tag_prefix` (as Plumbing::DeleteTagged(), in one batch) and returns how
  /// many it found.
  virtual Result<size_t> DeleteTagged(const NetnsRef& ns, std::string_view tag_prefix) = 0;
};

/// The rtnetlink implementation (libnl-route, rtnl_link_vxlan_*). Its home
/// namespace is the calling thread's current one. Errors: kInternal when the
/// home namespace cannot be opened.
Result<std::unique_ptr<VxlanPlumbing>> NewNetlinkVxlanPlumbing();

}  // namespace gridemu::agent

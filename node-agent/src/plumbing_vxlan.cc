// VXLAN link ends over rtnetlink with libnl-route (plumbing_vxlan.h).
#include "gridemu/node-agent/plumbing_vxlan.h"

#include "plumbing_nl.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_link.h>
#include <netlink/addr.h>
#include <netlink/cache.h>
#include <netlink/errno.h>
#include <netlink/netlink.h>
#include <netlink/route/link.h>
#include <netlink/route/link/inet6.h>
#include <netlink/route/link/vxlan.h>
#include <netlink/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <utility>

namespace gridemu::agent {
namespace {

using internal::Fd;
using internal::NlStatus;

constexpr uint32_t kMinIpv4Mtu = 68;  // RFC 791
constexpr uint32_t kAssumedUnderlayMtu = 1500;
constexpr size_t kMaxAliasBytes = 255;  // IFALIASZ - 1

struct SockDeleter {
  void operator()(nl_sock* s) const { nl_socket_free(s); }
};
using Sock = std::unique_ptr<nl_sock, SockDeleter>;
struct LinkDeleter {
  void operator()(rtnl_link* l) const { rtnl_link_put(l); }
};
using Link = std::unique_ptr<rtnl_link, LinkDeleter>;
struct AddrDeleter {
  void operator()(nl_addr* a) const { nl_addr_put(a); }
};
using Addr = std::unique_ptr<nl_addr, AddrDeleter>;
struct CacheDeleter {
  void operator()(nl_cache* c) const { nl_cache_free(c); }
};
using Cache = std::unique_ptr<nl_cache, CacheDeleter>;



// A netlink route socket bound to the namespace of `ns_fd`.
Result<Sock> SocketIn(int ns_fd, const NetnsRef& ns) {
  Sock sock(nl_socket_alloc());
  if (!sock) return ResourceExhaustedError("cannot allocate a netlink socket");
  int err;
  {
    GRIDEMU_ASSIGN_OR_RETURN(ScopedNetns inside, ScopedNetns::Enter(ns_fd));
    err = nl_connect(sock.get(), NETLINK_ROUTE);
  }  // back in the original namespace
  if (err < 0) return NlStatus(err, "netlink socket in " + ns.ToString());
  return sock;
}

Result<Addr> ParseIpv4(const std::string& text, std::string_view field, bool unicast) {
  in_addr a{};
  if (inet_pton(AF_INET, text.c_str(), &a) != 1) {
    return InvalidArgumentError(std::string(field) + " '" + text +
                                "' is not an IPv4 address; expected a dotted quad like 10.0.0.1");
  }
  const uint32_t host = ntohl(a.s_addr);
  if (unicast && (host == 0 || (host >> 28) == 0xe || host == 0xffffffffu)) {
    return InvalidArgumentError(std::string(field) + " '" + text +
                                "' is not a unicast address (VXLAN links here are point to point)");
  }
  Addr addr(nl_addr_build(AF_INET, &a, sizeof(a)));
  if (!addr) return ResourceExhaustedError("cannot allocate an address");
  return addr;
}

std::string AddrText(nl_addr* a) {
  if (!a || nl_addr_get_len(a) != 4) return "";
  char buf[INET_ADDRSTRLEN] = {};
  inet_ntop(AF_INET, nl_addr_get_binary_addr(a), buf, sizeof(buf));
  return buf;
}

// The interface `name` in the socket's namespace; nullptr when there is none.
Result<Link> GetLink(nl_sock* sock, const std::string& name, const std::string& where) {
  rtnl_link* l = nullptr;
  int err = rtnl_link_get_kernel(sock, 0, name.c_str(), &l);
  if (err == -NLE_OBJ_NOTFOUND || err == -NLE_NODEV) return Link();
  if (err < 0) return NlStatus(err, "looking up interface '" + name + "' in " + where);
  return Link(l);
}

// Deletes `name` in the socket's namespace if it exists and, when `tag` is
// not null, carries that alias (so that nothing of anyone else goes).
void DeleteQuietly(nl_sock* sock, const std::string& name, const std::string* tag = nullptr) {
  rtnl_link* raw = nullptr;
  if (rtnl_link_get_kernel(sock, 0, name.c_str(), &raw) < 0) return;
  Link l(raw);
  const char* alias = rtnl_link_get_ifalias(l.get());
  if (tag && (!alias || *tag != alias)) return;
  rtnl_link_delete(sock, l.get());
}

bool Exists(nl_sock* sock, const std::string& name) {
  rtnl_link* raw = nullptr;
  if (rtnl_link_get_kernel(sock, 0, name.c_str(), &raw) < 0) return false;
  rtnl_link_put(raw);
  return true;
}

class NetlinkVxlanPlumbing final : public VxlanPlumbing {
 public:
  NetlinkVxlanPlumbing(Fd home, std::unique_ptr<Plumbing> plumbing)
      : home_(std::move(home)), plumbing_(std::move(plumbing)) {}

  Status CreateVxlan(const VxlanSpec& spec) override;
  Result<std::vector<VxlanInfo>> ListVxlan(const NetnsRef& ns,
                                           std::string_view tag_prefix) override;
  Result<size_t> DeleteTagged(const NetnsRef& ns, std::string_view tag_prefix) override {
    return plumbing_->DeleteTagged(ns, tag_prefix);
  }

 private:
  // A descriptor of the namespace (the home one for a home reference).
  Result<Fd> Open(const NetnsRef& ns) const {
    if (ns.is_home()) {
      int fd = fcntl(home_.get(), F_DUPFD_CLOEXEC, 0);
      if (fd < 0) return InternalError("cannot duplicate the home namespace descriptor");
      return Fd(fd);
    }
    GRIDEMU_ASSIGN_OR_RETURN(int fd, OpenNetns(ns));
    return Fd(fd);
  }

  Fd home_;
  std::unique_ptr<Plumbing> plumbing_;
};

Status NetlinkVxlanPlumbing::CreateVxlan(const VxlanSpec& spec) {
  // Checks first: nothing is created for a malformed spec.
  std::string what = "VXLAN device '" + spec.name + "' (VNI " + std::to_string(spec.vni) + ", " +
                     spec.local + " -> " + spec.remote + ":" + std::to_string(spec.dst_port) + ")";
  GRIDEMU_RETURN_IF_ERROR(ValidateIfname(spec.name).WithContext(what));
  if (!spec.underlay_dev.empty()) {
    GRIDEMU_RETURN_IF_ERROR(
        ValidateIfname(spec.underlay_dev).WithContext(what + ": underlay device"));
  }
  if (spec.vni > kVxlanMaxVni) {
    return InvalidArgumentError(what + ": VNI " + std::to_string(spec.vni) +
                                " is out of range; expected 0..16777215 (24 bits)");
  }
  if (spec.dst_port == 0) return InvalidArgumentError(what + ": UDP port 0 is not a port");
  if (spec.tag.empty()) {
    return InvalidArgumentError(what + ": a tag is required, so that cleanup can find the device");
  }
  if (spec.tag.size() > kMaxAliasBytes) {
    return InvalidArgumentError(what + ": tag of " + std::to_string(spec.tag.size()) +
                                " bytes is too long; an interface alias holds at most 255");
  }
  if (spec.mtu != 0 && spec.mtu < kMinIpv4Mtu) {
    return InvalidArgumentError(what + ": MTU " + std::to_string(spec.mtu) +
                                " is below 68, the IPv4 minimum");
  }
  GRIDEMU_ASSIGN_OR_RETURN(Addr local, ParseIpv4(spec.local, "local address", true));
  GRIDEMU_ASSIGN_OR_RETURN(Addr remote, ParseIpv4(spec.remote, "remote address", true));

  const std::string under_where = spec.underlay_ns.ToString();
  const std::string vnode_where = spec.ns.ToString();
  GRIDEMU_ASSIGN_OR_RETURN(Fd under_fd, Open(spec.underlay_ns));
  GRIDEMU_ASSIGN_OR_RETURN(Fd vnode_fd, Open(spec.ns));
  GRIDEMU_ASSIGN_OR_RETURN(Sock under, SocketIn(under_fd.get(), spec.underlay_ns));
  GRIDEMU_ASSIGN_OR_RETURN(Sock vnode, SocketIn(vnode_fd.get(), spec.ns));

  // The name must be free in the vnode's namespace (checked before anything
  // exists, as the move would otherwise leave the device half-configured).
  {
    GRIDEMU_ASSIGN_OR_RETURN(Link taken, GetLink(vnode.get(), spec.name, vnode_where));
    if (taken) {
      return AlreadyExistsError(what + ": interface '" + spec.name + "' exists already in " +
                                vnode_where);
    }
  }
  // Underlay device and MTU.
  uint32_t underlay_ifindex = 0;
  uint32_t underlay_mtu = kAssumedUnderlayMtu;
  if (!spec.underlay_dev.empty()) {
    GRIDEMU_ASSIGN_OR_RETURN(Link dev, GetLink(under.get(), spec.underlay_dev, under_where));
    if (!dev) {
      return NotFoundError(what + ": underlay interface '" + spec.underlay_dev +
                           "' does not exist in " + under_where);
    }
    underlay_ifindex = static_cast<uint32_t>(rtnl_link_get_ifindex(dev.get()));
    underlay_mtu = rtnl_link_get_mtu(dev.get());
  }
  auto max_mtu = VxlanInnerMtu(underlay_mtu);
  if (!max_mtu.ok()) return max_mtu.status().WithContext(what);
  const uint32_t mtu = spec.mtu ? spec.mtu : *max_mtu;
  if (!spec.underlay_dev.empty() && mtu > *max_mtu) {
    return InvalidArgumentError(
        what + ": MTU " + std::to_string(mtu) + " is above " + std::to_string(*max_mtu) +
        ", the most VXLAN over IPv4 carries on '" + spec.underlay_dev + "' (MTU " +
        std::to_string(underlay_mtu) + " less 50 bytes of encapsulation)");
  }

  // 1. Create it in the underlay namespace under a temporary name.
  char tmp_buf[IFNAMSIZ];
  std::snprintf(tmp_buf, sizeof(tmp_buf), "gvx%06x%04x", spec.vni, spec.dst_port);
  const std::string tmp = tmp_buf;
  Link link(rtnl_link_vxlan_alloc());
  if (!link) return ResourceExhaustedError(what + ": cannot allocate a link object");
  rtnl_link_set_name(link.get(), tmp.c_str());
  rtnl_link_set_mtu(link.get(), mtu);
  int err = 0;
  if ((err = rtnl_link_vxlan_set_id(link.get(), spec.vni)) < 0 ||
      (err = rtnl_link_vxlan_set_group(link.get(), remote.get())) < 0 ||
      (err = rtnl_link_vxlan_set_local(link.get(), local.get())) < 0 ||
      (err = rtnl_link_vxlan_set_port(link.get(), spec.dst_port)) < 0 ||
      (err = rtnl_link_vxlan_set_learning(link.get(), 0)) < 0 ||
      (underlay_ifindex && (err = rtnl_link_vxlan_set_link(link.get(), underlay_ifindex)) < 0)) {
    return NlStatus(err, what + ": building the request");
  }
  const std::string creating = "creating " + what + " in " + under_where;
  err = rtnl_link_add(under.get(), link.get(), NLM_F_CREATE | NLM_F_EXCL);
  if (err == -NLE_EXIST) {
    // A leftover of an interrupted earlier call with the same tag goes; any
    // other conflict is the caller's.
    GRIDEMU_ASSIGN_OR_RETURN(Link old, GetLink(under.get(), tmp, under_where));
    const char* alias = old ? rtnl_link_get_ifalias(old.get()) : nullptr;
    if (alias && spec.tag == alias) {
      rtnl_link_delete(under.get(), old.get());
      err = rtnl_link_add(under.get(), link.get(), NLM_F_CREATE | NLM_F_EXCL);
    }
    if (err == -NLE_EXIST) {
      return AlreadyExistsError(creating + ": another VXLAN device of that namespace uses VNI " +
                                std::to_string(spec.vni) + " on port " +
                                std::to_string(spec.dst_port) + " (or the name '" + tmp +
                                "' is taken)");
    }
  }
  if (err < 0) return NlStatus(err, creating);

  // 2. Tag it where it is, so that a crash from here on leaves a findable object.
  GRIDEMU_ASSIGN_OR_RETURN(Link made, GetLink(under.get(), tmp, under_where));
  if (!made) return InternalError(creating + ": the device vanished right after its creation");
  {
    Link change(rtnl_link_alloc());
    if (!change) return ResourceExhaustedError(what + ": cannot allocate a link object");
    rtnl_link_set_ifalias(change.get(), spec.tag.c_str());
    err = rtnl_link_change(under.get(), made.get(), change.get(), 0);
    if (err < 0) {
      DeleteQuietly(under.get(), tmp);  // ours: created with NLM_F_EXCL above
      return NlStatus(err, "tagging " + what + " in " + under_where);
    }
  }

  // 3. Move it into the vnode's namespace under its name (IPv6 address
  // generation off there: the namespace move resets IPv6 settings).
  const std::string moving = "moving " + what + " from " + under_where + " to " + vnode_where;
  for (bool with_ipv6 = !spec.ipv6_link_local;; with_ipv6 = false) {
    Link change(rtnl_link_alloc());
    if (!change) return ResourceExhaustedError(what + ": cannot allocate a link object");
    rtnl_link_set_ns_fd(change.get(), vnode_fd.get());
    rtnl_link_set_name(change.get(), spec.name.c_str());
    if (with_ipv6) rtnl_link_inet6_set_addr_gen_mode(change.get(), IN6_ADDR_GEN_MODE_NONE);
    err = rtnl_link_change(under.get(), made.get(), change.get(), 0);
    if (err >= 0) break;
    // Without IPv6 (kernel, or an MTU below 1280) the device has no IPv6
    // settings: move it without them.
    const bool not_moved = Exists(under.get(), tmp);
    if (with_ipv6 && (err == -NLE_AF_NOSUPPORT || err == -NLE_OPNOTSUPP) && not_moved) continue;
    DeleteQuietly(under.get(), tmp, &spec.tag);
    DeleteQuietly(vnode.get(), tmp, &spec.tag);        // moved, not renamed
    DeleteQuietly(vnode.get(), spec.name, &spec.tag);  // moved and renamed, then failed
    if (err == -NLE_EXIST) {
      return AlreadyExistsError(moving + ": interface '" + spec.name + "' exists already there");
    }
    return NlStatus(err, moving);
  }
  // If the AF_SPEC part failed after the move (a kernel that refuses it
  // late), the device is in place anyway; IPv6 is only a cost there.

  // 4. Up, from inside the vnode's namespace.
  if (spec.up) {
    GRIDEMU_ASSIGN_OR_RETURN(Link moved, GetLink(vnode.get(), spec.name, vnode_where));
    if (!moved) return InternalError(moving + ": the device is not there afterwards");
    Link change(rtnl_link_alloc());
    if (!change) return ResourceExhaustedError(what + ": cannot allocate a link object");
    rtnl_link_set_flags(change.get(), IFF_UP);
    err = rtnl_link_change(vnode.get(), moved.get(), change.get(), 0);
    if (err < 0) {
      DeleteQuietly(vnode.get(), spec.name, &spec.tag);
      return NlStatus(err, "bringing up " + what + " in " + vnode_where);
    }
  }
  return Status::Ok();
}

Result<std::vector<VxlanInfo>> NetlinkVxlanPlumbing::ListVxlan(const NetnsRef& ns,
                                                               std::string_view tag_prefix) {
  if (tag_prefix.empty()) {
    return InvalidArgumentError("listing VXLAN devices in " + ns.ToString() +
                                ": the tag prefix must not be empty");
  }
  GRIDEMU_ASSIGN_OR_RETURN(Fd fd, Open(ns));
  GRIDEMU_ASSIGN_OR_RETURN(Sock sock, SocketIn(fd.get(), ns));
  nl_cache* raw = nullptr;
  int err = rtnl_link_alloc_cache(sock.get(), AF_UNSPEC, &raw);
  if (err < 0) return NlStatus(err, "listing interfaces in " + ns.ToString());
  Cache cache(raw);
  std::vector<VxlanInfo> out;
  for (nl_object* o = nl_cache_get_first(cache.get()); o; o = nl_cache_get_next(o)) {
    auto* l = reinterpret_cast<rtnl_link*>(o);
    const char* alias = rtnl_link_get_ifalias(l);
    if (!alias || std::string_view(alias).substr(0, tag_prefix.size()) != tag_prefix) continue;
    if (!rtnl_link_is_vxlan(l)) continue;
    VxlanInfo v;
    v.link.name = rtnl_link_get_name(l);
    v.link.ifindex = rtnl_link_get_ifindex(l);
    v.link.alias = alias;
    const char* type = rtnl_link_get_type(l);
    v.link.kind = type ? type : "";
    v.link.mtu = rtnl_link_get_mtu(l);
    v.link.up = (rtnl_link_get_flags(l) & IFF_UP) != 0;
    v.link.master = rtnl_link_get_master(l);
    v.link.group = rtnl_link_get_group(l);
    rtnl_link_vxlan_get_id(l, &v.vni);
    nl_addr* a = nullptr;
    if (rtnl_link_vxlan_get_local(l, &a) == 0) {
      v.local = AddrText(a);
      nl_addr_put(a);
    }
    a = nullptr;
    if (rtnl_link_vxlan_get_group(l, &a) == 0) {
      v.remote = AddrText(a);
      nl_addr_put(a);
    }
    uint32_t port = 0;
    if (rtnl_link_vxlan_get_port(l, &port) == 0) v.dst_port = static_cast<uint16_t>(port);
    uint32_t under = 0;
    if (rtnl_link_vxlan_get_link(l, &under) == 0) v.underlay_ifindex = static_cast<int>(under);
    out.push_back(std::move(v));
  }
  std::sort(out.begin(), out.end(),
            [](const VxlanInfo& a, const VxlanInfo& b) { return a.link.ifindex < b.link.ifindex; });
  return out;
}

}  // namespace

Result<uint32_t> VxlanInnerMtu(uint32_t underlay_mtu) {
  if (underlay_mtu < kMinIpv4Mtu + kVxlanIpv4OverheadBytes) {
    return InvalidArgumentError("an underlay MTU of " + std::to_string(underlay_mtu) +
                                " bytes leaves less than 68 (the IPv4 minimum) after the 50 "
                                "bytes of VXLAN encapsulation");
  }
  return underlay_mtu - kVxlanIpv4OverheadBytes;
}

Result<std::unique_ptr<VxlanPlumbing>> NewNetlinkVxlanPlumbing() {
  GRIDEMU_ASSIGN_OR_RETURN(int home, OpenNetns(NetnsRef::Home()));
  Fd home_fd(home);
  GRIDEMU_ASSIGN_OR_RETURN(std::unique_ptr<Plumbing> plumbing, NewNetlinkPlumbing());
  return std::unique_ptr<VxlanPlumbing>(
      new NetlinkVxlanPlumbing(std::move(home_fd), std::move(plumbing)));
}

}  // namespace gridemu::agent

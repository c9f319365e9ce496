// Link plumbing over rtnetlink (plumbing.h). Messages are built with libnl's
// message helpers so that every attribute is explicit (a veth request puts
// IFLA_NET_NS_FD on both ends, which libnl's rtnl_link_veth API cannot).
#include "gridemu/node-agent/plumbing.h"

#include "plumbing_nl.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_link.h>
#include <linux/rtnetlink.h>
#include <linux/veth.h>
#include <netlink/attr.h>
#include <netlink/cache.h>
#include <netlink/errno.h>
#include <netlink/msg.h>
#include <netlink/netlink.h>
#include <netlink/route/link.h>
#include <netlink/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <optional>
#include <unordered_map>
#include <unordered_set>
#include <utility>

namespace gridemu::agent {
namespace {

using internal::Fd;
using internal::NlStatus;

constexpr size_t kMaxAliasBytes = 255;  // IFALIASZ - 1
// Interface groups used transiently by DeleteTagged(): "ge" << 16 | pid.
constexpr uint32_t kDeleteGroupBase = 0x67650000;

struct NlSockDeleter {
  void operator()(nl_sock* s) const { nl_socket_free(s); }
};
using NlSock = std::unique_ptr<nl_sock, NlSockDeleter>;

struct NlMsgDeleter {
  void operator()(nl_msg* m) const { nlmsg_free(m); }
};
using NlMsg = std::unique_ptr<nl_msg, NlMsgDeleter>;



// Maps a kernel errno from a netlink answer to a Status.
Status ErrnoStatus(int e, const std::string& what) {
  std::string msg = what + ": " + std::strerror(e);
  switch (e) {
    case EEXIST:
    case EADDRINUSE:
      return AlreadyExistsError(std::move(msg));
    case ENOENT:
    case ENODEV:
    case ESRCH:
      return NotFoundError(std::move(msg));
    case EPERM:
    case EACCES:
      return PermissionDeniedError(msg + " (needs CAP_NET_ADMIN)");
    case EINVAL:
    case ERANGE:
    case ENETUNREACH:
    case EADDRNOTAVAIL:
      return InvalidArgumentError(std::move(msg));
    case EOPNOTSUPP:
    case EAFNOSUPPORT:
    case EPROTONOSUPPORT:
      return UnimplementedError(msg + " (not supported by this kernel)");
    case ENOMEM:
    case ENOBUFS:
    case ENOSPC:
      return ResourceExhaustedError(std::move(msg));
    case EBUSY:
      return UnavailableError(std::move(msg));
    default:
      return InternalError(std::move(msg));
  }
}

Status BuildError(const std::string& what) {
  return InternalError(what + ": netlink message too large");
}

// "name in namespace" for messages.
std::string Where(std::string_view ifname, const NetnsRef& ns) {
  return "interface '" + std::string(ifname) + "' in " + ns.ToString();
}

Result<uint32_t> ParseAddress(const std::string& text, std::string_view field) {
  in_addr a{};
  if (inet_pton(AF_INET, text.c_str(), &a) != 1) {
    return InvalidArgumentError(std::string(field) + " '" + text +
                                "' is not an IPv4 address; expected a dotted quad like 10.0.0.1");
  }
  return a.s_addr;  // network byte order
}

Status ValidatePrefixLen(unsigned len, std::string_view what) {
  if (len > 32) {
    return InvalidArgumentError(std::string(what) + ": prefix length " + std::to_string(len) +
                                " is out of range; expected 0..32");
  }
  return Status::Ok();
}

Status ValidateTag(const std::string& tag, std::string_view what) {
  if (tag.size() > kMaxAliasBytes) {
    return InvalidArgumentError(std::string(what) + ": tag of " + std::to_string(tag.size()) +
                                " bytes is too long; an interface alias holds at most 255");
  }
  return Status::Ok();
}

// Starts an RTM_*LINK message with an ifinfomsg.
NlMsg LinkMsg(int type, int flags, int ifindex, bool set_up_flag, bool up) {
  NlMsg msg(nlmsg_alloc_simple(type, flags));
  if (!msg) return msg;
  ifinfomsg ifi{};
  ifi.ifi_family = AF_UNSPEC;
  ifi.ifi_index = ifindex;
  if (set_up_flag) {
    ifi.ifi_change = IFF_UP;
    ifi.ifi_flags = up ? IFF_UP : 0;
  }
  if (nlmsg_append(msg.get(), &ifi, sizeof(ifi), NLMSG_ALIGNTO) < 0) msg.reset();
  return msg;
}

// One namespace: its nsfs descriptor and, once needed, a netlink socket that
// was opened inside it (sockets stay bound to the namespace they were created in).
struct NsConn {
  NetnsRef ref;
  Fd ns_fd;
  NlSock sock;
  std::unordered_map<std::string, int> ifindex;  // name -> ifindex cache
  uint64_t last_use = 0;
  bool ipv6 = true;  // false once the kernel refused IPv6 link settings
};

class NetlinkPlumbing final : public Plumbing {
 public:
  NetlinkPlumbing(const NetlinkPlumbingOptions& options, std::shared_ptr<NsConn> home)
      : options_(options), home_(std::move(home)) {}

  Status CreateVeth(const VethSpec& spec) override {
    CallScope scope(this);
    GRIDEMU_RETURN_IF_ERROR(CreateVethPair(spec));
    GRIDEMU_RETURN_IF_ERROR(SetupEnd(spec.ns_a, EndOf(spec, false)));
    return SetupEnd(spec.ns_b, EndOf(spec, true));
  }

  Status CreateBridge(const BridgeSpec& spec) override;
  Status SetLinkUp(const NetnsRef& ns, std::string_view ifname, bool up) override;
  Status AddAddress(const AddressSpec& spec) override;
  Status EnableForwarding(const NetnsRef& ns) override;
  Status SetSysctl(const NetnsRef& ns, std::string_view key, std::string_view value) override;
  Status AddRoute(const RouteSpec& spec) override;
  Status DeleteLink(const NetnsRef& ns, std::string_view ifname) override;
  Result<std::vector<LinkInfo>> ListTagged(const NetnsRef& ns,
                                           std::string_view tag_prefix) override;
  Result<size_t> DeleteTagged(const NetnsRef& ns, std::string_view tag_prefix) override;
  Status Apply(const PlumbingBatch& batch) override;
  void CloseNamespaces() override { cache_.clear(); }

 private:
  // The connection of a namespace, with its socket opened when `need_socket`.
  Result<std::shared_ptr<NsConn>> Conn(const NetnsRef& ns, bool need_socket);
  // The ifindex of `ifname` (cached per namespace).
  Result<int> IfIndex(NsConn& conn, std::string_view ifname);
  // Runs `op(ifindex)`; if it fails with kNotFound on a cached index, forgets
  // the index and retries once (the interface may have been re-created).
  template <typename Op>
  Status WithIfIndex(NsConn& conn, std::string_view ifname, Op op);
  // Sends a request on `conn`'s socket and waits for the kernel's answer.
  Status Send(NsConn& conn, NlMsg msg, const std::string& what);

  // Every interface of the namespace; returns those tagged with `tag_prefix`
  // and, when `groups` is set, collects the interface groups in use.
  Result<std::vector<LinkInfo>> Dump(NsConn& conn, std::string_view tag_prefix,
                                     std::unordered_set<uint32_t>* groups);
  Status CreateVethPair(const VethSpec& spec);
  // What to set on an interface after creating it, in one RTM_SETLINK.
  struct EndSetup {
    const std::string* name;
    const std::string* tag;  // alias; empty = leave
    bool up;                 // set IFF_UP
    bool no_ipv6_ll;         // IPv6 address generation off
    bool needed() const { return !tag->empty() || up || no_ipv6_ll; }
  };
  static EndSetup EndOf(const VethSpec& spec, bool b_end) {
    return EndSetup{b_end ? &spec.name_b : &spec.name_a, &spec.tag, spec.up, !spec.ipv6_link_local};
  }
  Status SetupEnd(NsConn& conn, const EndSetup& end);
  Status SetupEnd(const NetnsRef& ns, const EndSetup& end);

  // Marks a public call; when the outermost one returns, the namespace
  // connections are closed unless options_.keep_namespaces_open.
  class CallScope {
   public:
    explicit CallScope(NetlinkPlumbing* p) : p_(p) { ++p_->depth_; }
    ~CallScope() {
      if (--p_->depth_ == 0 && !p_->options_.keep_namespaces_open) p_->cache_.clear();
    }
    CallScope(const CallScope&) = delete;
    CallScope& operator=(const CallScope&) = delete;

   private:
    NetlinkPlumbing* p_;
  };

  NetlinkPlumbingOptions options_;
  int depth_ = 0;
  std::shared_ptr<NsConn> home_;
  std::unordered_map<std::string, std::shared_ptr<NsConn>> cache_;
  uint64_t clock_ = 0;
};

Result<std::shared_ptr<NsConn>> NetlinkPlumbing::Conn(const NetnsRef& ns, bool need_socket) {
  std::shared_ptr<NsConn> conn;
  if (ns.is_home()) {
    conn = home_;
  } else {
    std::string key = ns.Key();
    auto it = cache_.find(key);
    if (it != cache_.end()) {
      conn = it->second;
    } else {
      GRIDEMU_ASSIGN_OR_RETURN(int fd, OpenNetns(ns));
      conn = std::make_shared<NsConn>();
      conn->ref = ns;
      conn->ns_fd = Fd(fd);
      if (cache_.size() >= std::max<size_t>(options_.max_cached_namespaces, 1)) {
        auto oldest = cache_.begin();
        for (auto i = cache_.begin(); i != cache_.end(); ++i) {
          if (i->second->last_use < oldest->second->last_use) oldest = i;
        }
        cache_.erase(oldest);
      }
      cache_.emplace(std::move(key), conn);
    }
  }
  conn->last_use = ++clock_;
  if (need_socket && !conn->sock) {
    NlSock sock(nl_socket_alloc());
    if (!sock) return ResourceExhaustedError("cannot allocate a netlink socket");
    int err;
    {
      GRIDEMU_ASSIGN_OR_RETURN(ScopedNetns inside, ScopedNetns::Enter(conn->ns_fd.get()));
      err = nl_connect(sock.get(), NETLINK_ROUTE);
    }  // back in the original namespace
    if (err < 0) return NlStatus(err, "netlink socket in " + ns.ToString());
    conn->sock = std::move(sock);
  }
  return conn;
}

Status NetlinkPlumbing::Send(NsConn& conn, NlMsg msg, const std::string& what) {
  if (!msg) return BuildError(what);
  // Custom ack handling keeps the kernel's errno (libnl would fold e.g.
  // ENETUNREACH into an unspecific failure).
  struct Ack {
    int error = 0;  // negative errno from the kernel
    bool done = false;
  } ack;
  std::unique_ptr<nl_cb, void (*)(nl_cb*)> cb(nl_cb_alloc(NL_CB_DEFAULT), nl_cb_put);
  if (!cb) return ResourceExhaustedError(what + ": cannot allocate a netlink callback");
  nl_cb_err(
      cb.get(), NL_CB_CUSTOM,
      [](sockaddr_nl*, nlmsgerr* e, void* arg) {
        auto* a = static_cast<Ack*>(arg);
        a->error = e->error;
        a->done = true;
        return static_cast<int>(NL_STOP);
      },
      &ack);
  nl_cb_set(
      cb.get(), NL_CB_ACK, NL_CB_CUSTOM,
      [](nl_msg*, void* arg) {
        static_cast<Ack*>(arg)->done = true;
        return static_cast<int>(NL_STOP);
      },
      &ack);
  int err = nl_send_auto(conn.sock.get(), msg.get());
  if (err < 0) return NlStatus(err, what);
  while (!ack.done) {
    err = nl_recvmsgs(conn.sock.get(), cb.get());
    if (err < 0 && !ack.done) return NlStatus(err, what);
  }
  if (ack.error < 0) return ErrnoStatus(-ack.error, what);
  return Status::Ok();
}

Result<int> NetlinkPlumbing::IfIndex(NsConn& conn, std::string_view ifname) {
  std::string name(ifname);
  if (auto it = conn.ifindex.find(name); it != conn.ifindex.end()) return it->second;
  rtnl_link* link = nullptr;
  int err = rtnl_link_get_kernel(conn.sock.get(), 0, name.c_str(), &link);
  if (err < 0) {
    if (err == -NLE_OBJ_NOTFOUND || err == -NLE_NODEV) {
      return NotFoundError("no " + Where(name, conn.ref));
    }
    return NlStatus(err, "looking up " + Where(name, conn.ref));
  }
  int index = rtnl_link_get_ifindex(link);
  rtnl_link_put(link);
  conn.ifindex[name] = index;
  return index;
}

template <typename Op>
Status NetlinkPlumbing::WithIfIndex(NsConn& conn, std::string_view ifname, Op op) {
  bool cached = conn.ifindex.count(std::string(ifname)) > 0;
  GRIDEMU_ASSIGN_OR_RETURN(int index, IfIndex(conn, ifname));
  Status s = op(index);
  if (s.code() == StatusCode::kNotFound && cached) {
    conn.ifindex.erase(std::string(ifname));
    GRIDEMU_ASSIGN_OR_RETURN(index, IfIndex(conn, ifname));
    s = op(index);
  }
  return s;
}

Status NetlinkPlumbing::CreateVethPair(const VethSpec& spec) {
  const std::string what =
      "veth " + Where(spec.name_a, spec.ns_a) + " <-> " + Where(spec.name_b, spec.ns_b);
  GRIDEMU_RETURN_IF_ERROR(ValidateIfname(spec.name_a).WithContext(what));
  GRIDEMU_RETURN_IF_ERROR(ValidateIfname(spec.name_b).WithContext(what));
  GRIDEMU_RETURN_IF_ERROR(ValidateTag(spec.tag, what));
  GRIDEMU_ASSIGN_OR_RETURN(auto a, Conn(spec.ns_a, false));
  GRIDEMU_ASSIGN_OR_RETURN(auto b, Conn(spec.ns_b, false));
  GRIDEMU_ASSIGN_OR_RETURN(auto home, Conn(NetnsRef::Home(), true));

  // Both ends are created down and brought up by SetupEnd() in their own
  // namespaces: the peer cannot be opened within this request (the kernel
  // configures it before the pair is joined: ENOTCONN), and IPv6 address
  // generation must be off before the carrier comes up.
  NlMsg msg = LinkMsg(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, static_cast<int>(spec.ifindex_a),
                      false, false);
  if (!msg) return BuildError(what);
  nl_msg* m = msg.get();
  bool ok = nla_put_string(m, IFLA_IFNAME, spec.name_a.c_str()) == 0 &&
            (spec.mtu == 0 || nla_put_u32(m, IFLA_MTU, spec.mtu) == 0) &&
            nla_put_u32(m, IFLA_NET_NS_FD, static_cast<uint32_t>(a->ns_fd.get())) == 0;
  nlattr* info = ok ? nla_nest_start(m, IFLA_LINKINFO) : nullptr;
  ok = info && nla_put_string(m, IFLA_INFO_KIND, "veth") == 0;
  nlattr* data = ok ? nla_nest_start(m, IFLA_INFO_DATA) : nullptr;
  nlattr* peer = data ? nla_nest_start(m, VETH_INFO_PEER) : nullptr;
  if (peer) {
    ifinfomsg ifi{};
    ifi.ifi_family = AF_UNSPEC;
    ok = nlmsg_append(m, &ifi, sizeof(ifi), NLMSG_ALIGNTO) == 0 &&
         nla_put_string(m, IFLA_IFNAME, spec.name_b.c_str()) == 0 &&
         (spec.mtu == 0 || nla_put_u32(m, IFLA_MTU, spec.mtu) == 0) &&
         nla_put_u32(m, IFLA_NET_NS_FD, static_cast<uint32_t>(b->ns_fd.get())) == 0;
  } else {
    ok = false;
  }
  if (!ok) return BuildError(what);
  nla_nest_end(m, peer);
  nla_nest_end(m, data);
  nla_nest_end(m, info);
  GRIDEMU_RETURN_IF_ERROR(Send(*home, std::move(msg), "creating " + what));
  a->ifindex.erase(spec.name_a);
  b->ifindex.erase(spec.name_b);
  return Status::Ok();
}

Status NetlinkPlumbing::SetupEnd(NsConn& conn, const EndSetup& end) {
  if (!end.needed()) return Status::Ok();
  const std::string& name = *end.name;
  const std::string what = "setting up " + Where(name, conn.ref);
  auto build = [&](bool with_af_spec, bool up) {
    // RTM_SETLINK by name (ifi_index 0): the kernel resolves IFLA_IFNAME. It
    // applies IFLA_AF_SPEC after the flags, and an end whose peer is up has its
    // carrier as soon as it opens (IPv6 then configures a link-local address at
    // once): so IPv6 address generation goes off in a request of its own, first.
    NlMsg msg = LinkMsg(RTM_SETLINK, 0, 0, up, true);
    if (!msg || nla_put_string(msg.get(), IFLA_IFNAME, name.c_str()) < 0 ||
        (!end.tag->empty() && nla_put_string(msg.get(), IFLA_IFALIAS, end.tag->c_str()) < 0)) {
      return NlMsg();
    }
    if (with_af_spec) {
      nlattr* af = nla_nest_start(msg.get(), IFLA_AF_SPEC);
      nlattr* inet6 = af ? nla_nest_start(msg.get(), AF_INET6) : nullptr;
      if (!inet6 || nla_put_u8(msg.get(), IFLA_INET6_ADDR_GEN_MODE, IN6_ADDR_GEN_MODE_NONE) < 0) {
        return NlMsg();
      }
      nla_nest_end(msg.get(), inet6);
      nla_nest_end(msg.get(), af);
    }
    return msg;
  };
  bool af_spec = end.no_ipv6_ll && conn.ipv6;
  Status s = Send(conn, build(af_spec, end.up && !af_spec), what);
  if (af_spec && s.code() == StatusCode::kUnimplemented) {
    conn.ipv6 = false;  // a kernel without IPv6: nothing to turn off
    af_spec = false;
    s = Send(conn, build(false, end.up), what);
  }
  if (s.ok() && af_spec && end.up) {
    NlMsg up = LinkMsg(RTM_SETLINK, 0, 0, true, true);
    if (up && nla_put_string(up.get(), IFLA_IFNAME, name.c_str()) < 0) up.reset();
    s = Send(conn, std::move(up), what);
  }
  return s;
}

Status NetlinkPlumbing::SetupEnd(const NetnsRef& ns, const EndSetup& end) {
  if (!end.needed()) return Status::Ok();
  GRIDEMU_ASSIGN_OR_RETURN(auto conn, Conn(ns, true));
  return SetupEnd(*conn, end);
}

Status NetlinkPlumbing::CreateBridge(const BridgeSpec& spec) {
  CallScope scope(this);
  const std::string what = "bridge " + Where(spec.name, spec.ns);
  GRIDEMU_RETURN_IF_ERROR(ValidateIfname(spec.name).WithContext(what));
  GRIDEMU_RETURN_IF_ERROR(ValidateTag(spec.tag, what));
  for (const std::string& port : spec.ports) {
    GRIDEMU_RETURN_IF_ERROR(ValidateIfname(port).WithContext(what));
  }
  GRIDEMU_ASSIGN_OR_RETURN(auto conn, Conn(spec.ns, true));

  // Created down; SetupEnd() below sets the alias, turns IPv6 address
  // generation off when asked and brings it up, before any port gives it a carrier.
  NlMsg msg = LinkMsg(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, 0, false, false);
  if (!msg) return BuildError(what);
  nl_msg* m = msg.get();
  bool ok = nla_put_string(m, IFLA_IFNAME, spec.name.c_str()) == 0 &&
            (spec.mtu == 0 || nla_put_u32(m, IFLA_MTU, spec.mtu) == 0);
  nlattr* info = ok ? nla_nest_start(m, IFLA_LINKINFO) : nullptr;
  ok = info && nla_put_string(m, IFLA_INFO_KIND, "bridge") == 0;
  nlattr* data = ok ? nla_nest_start(m, IFLA_INFO_DATA) : nullptr;
  ok = data && nla_put_u32(m, IFLA_BR_STP_STATE, 0) == 0 &&
       nla_put_u32(m, IFLA_BR_FORWARD_DELAY, 0) == 0 &&
       (spec.multicast_snooping || nla_put_u8(m, IFLA_BR_MCAST_SNOOPING, 0) == 0);
  if (!ok) return BuildError(what);
  nla_nest_end(m, data);
  nla_nest_end(m, info);
  if (spec.group != 0 && nla_put_u32(m, IFLA_GROUP, spec.group) < 0) return BuildError(what);
  GRIDEMU_RETURN_IF_ERROR(Send(*conn, std::move(msg), "creating " + what));
  conn->ifindex.erase(spec.name);
  GRIDEMU_RETURN_IF_ERROR(
      SetupEnd(*conn, EndSetup{&spec.name, &spec.tag, spec.up, !spec.ipv6_link_local}));
  GRIDEMU_ASSIGN_OR_RETURN(int bridge_index, IfIndex(*conn, spec.name));
  for (const std::string& port : spec.ports) {
    NlMsg enslave = LinkMsg(RTM_SETLINK, 0, 0, false, false);
    if (!enslave || nla_put_string(enslave.get(), IFLA_IFNAME, port.c_str()) < 0 ||
        nla_put_u32(enslave.get(), IFLA_MASTER, static_cast<uint32_t>(bridge_index)) < 0) {
      return BuildError(what);
    }
    GRIDEMU_RETURN_IF_ERROR(
        Send(*conn, std::move(enslave), "enslaving " + Where(port, spec.ns) + " to " + what));
  }
  return Status::Ok();
}

Status NetlinkPlumbing::SetLinkUp(const NetnsRef& ns, std::string_view ifname, bool up) {
  CallScope scope(this);
  GRIDEMU_RETURN_IF_ERROR(ValidateIfname(ifname));
  GRIDEMU_ASSIGN_OR_RETURN(auto conn, Conn(ns, true));
  NlMsg msg = LinkMsg(RTM_SETLINK, 0, 0, true, up);
  std::string name(ifname);
  if (!msg || nla_put_string(msg.get(), IFLA_IFNAME, name.c_str()) < 0) {
    return BuildError("setting " + Where(ifname, ns) + (up ? " up" : " down"));
  }
  return Send(*conn, std::move(msg), "setting " + Where(ifname, ns) + (up ? " up" : " down"));
}

Status NetlinkPlumbing::AddAddress(const AddressSpec& spec) {
  CallScope scope(this);
  const std::string what = "address " + spec.address + "/" + std::to_string(spec.prefix_len) +
                           " on " + Where(spec.ifname, spec.ns);
  GRIDEMU_RETURN_IF_ERROR(ValidateIfname(spec.ifname).WithContext(what));
  GRIDEMU_RETURN_IF_ERROR(ValidatePrefixLen(spec.prefix_len, what));
  GRIDEMU_ASSIGN_OR_RETURN(uint32_t addr, ParseAddress(spec.address, "address"));
  GRIDEMU_ASSIGN_OR_RETURN(auto conn, Conn(spec.ns, true));
  return WithIfIndex(*conn, spec.ifname, [&](int index) {
    NlMsg msg(nlmsg_alloc_simple(RTM_NEWADDR, NLM_F_CREATE | NLM_F_REPLACE));
    if (!msg) return BuildError(what);
    ifaddrmsg ifa{};
    ifa.ifa_family = AF_INET;
    ifa.ifa_prefixlen = spec.prefix_len;
    ifa.ifa_scope = RT_SCOPE_UNIVERSE;
    ifa.ifa_index = static_cast<uint32_t>(index);
    if (nlmsg_append(msg.get(), &ifa, sizeof(ifa), NLMSG_ALIGNTO) < 0 ||
        nla_put_u32(msg.get(), IFA_LOCAL, addr) < 0 ||
        nla_put_u32(msg.get(), IFA_ADDRESS, addr) < 0) {
      return BuildError(what);
    }
    return Send(*conn, std::move(msg), "adding " + what);
  });
}

Status NetlinkPlumbing::EnableForwarding(const NetnsRef& ns) {
  return SetSysctl(ns, "net.ipv4.ip_forward", "1")
      .WithContext("enabling IPv4 forwarding in " + ns.ToString());
}

Status NetlinkPlumbing::SetSysctl(const NetnsRef& ns, std::string_view key,
                                  std::string_view value) {
  CallScope scope(this);
  const std::string what = "sysctl " + std::string(key) + " in " + ns.ToString();
  if (key.empty() || key.find("..") != std::string_view::npos ||
      key.find_first_of("/ \t\n") != std::string_view::npos) {
    return InvalidArgumentError(what + ": bad key");
  }
  std::string path = "/proc/sys/" + std::string(key);
  std::replace(path.begin() + 10, path.end(), '.', '/');
  GRIDEMU_ASSIGN_OR_RETURN(auto conn, Conn(ns, false));
  int fd;
  {
    // /proc/sys/net resolves to the namespace of the opener at open time.
    GRIDEMU_ASSIGN_OR_RETURN(ScopedNetns inside, ScopedNetns::Enter(conn->ns_fd.get()));
    fd = open(path.c_str(), O_WRONLY | O_CLOEXEC);
  }
  if (fd < 0) {
    const int e = errno;
    if (e == ENOENT) {
      return NotFoundError(what + ": no such key" +
                           (key.rfind("net.bridge.", 0) == 0
                                ? std::string(" (the kernel's br_netfilter is not loaded: run "
                                              "`modprobe br_netfilter`)")
                                : std::string()));
    }
    return InternalError(what + ": " + std::strerror(e));
  }
  Fd file(fd);
  const std::string text = std::string(value) + "\n";
  if (write(file.get(), text.data(), text.size()) != static_cast<ssize_t>(text.size())) {
    return InternalError(what + ": " + std::strerror(errno));
  }
  return Status::Ok();
}

Status NetlinkPlumbing::AddRoute(const RouteSpec& spec) {
  CallScope scope(this);
  std::string what = "route " + spec.dst + "/" + std::to_string(spec.prefix_len);
  if (!spec.gateway.empty()) what += " via " + spec.gateway;
  if (!spec.ifname.empty()) what += " dev " + spec.ifname;
  what += " in " + spec.ns.ToString();
  GRIDEMU_RETURN_IF_ERROR(ValidatePrefixLen(spec.prefix_len, what));
  GRIDEMU_ASSIGN_OR_RETURN(
      uint32_t dst, ParseAddress(spec.dst.empty() ? "0.0.0.0" : spec.dst, "route destination"));
  uint32_t mask = spec.prefix_len == 0 ? 0 : htonl(~uint32_t{0} << (32 - spec.prefix_len));
  if ((dst & ~mask) != 0) {
    return InvalidArgumentError(what + ": the destination has host bits set for /" +
                                std::to_string(spec.prefix_len));
  }
  std::optional<uint32_t> gateway;
  if (!spec.gateway.empty()) {
    GRIDEMU_ASSIGN_OR_RETURN(gateway, ParseAddress(spec.gateway, "gateway"));
  }
  if (!gateway && spec.ifname.empty()) {
    return InvalidArgumentError(what + ": needs a gateway, an interface or both");
  }
  if (!spec.ifname.empty()) GRIDEMU_RETURN_IF_ERROR(ValidateIfname(spec.ifname).WithContext(what));
  GRIDEMU_ASSIGN_OR_RETURN(auto conn, Conn(spec.ns, true));
  auto send = [&](int oif) {
    NlMsg msg(nlmsg_alloc_simple(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_REPLACE));
    if (!msg) return BuildError(what);
    rtmsg rtm{};
    rtm.rtm_family = AF_INET;
    rtm.rtm_dst_len = spec.prefix_len;
    rtm.rtm_table = RT_TABLE_MAIN;
    rtm.rtm_protocol = RTPROT_STATIC;
    rtm.rtm_scope = gateway ? RT_SCOPE_UNIVERSE : RT_SCOPE_LINK;
    rtm.rtm_type = RTN_UNICAST;
    nl_msg* m = msg.get();
    bool ok = nlmsg_append(m, &rtm, sizeof(rtm), NLMSG_ALIGNTO) == 0 &&
              (spec.prefix_len == 0 || nla_put_u32(m, RTA_DST, dst) == 0) &&
              (!gateway || nla_put_u32(m, RTA_GATEWAY, *gateway) == 0) &&
              (oif == 0 || nla_put_u32(m, RTA_OIF, static_cast<uint32_t>(oif)) == 0) &&
              (spec.metric == 0 || nla_put_u32(m, RTA_PRIORITY, spec.metric) == 0);
    if (!ok) return BuildError(what);
    return Send(*conn, std::move(msg), "adding " + what);
  };
  if (spec.ifname.empty()) return send(0);
  return WithIfIndex(*conn, spec.ifname, send);
}

Status NetlinkPlumbing::DeleteLink(const NetnsRef& ns, std::string_view ifname) {
  CallScope scope(this);
  GRIDEMU_RETURN_IF_ERROR(ValidateIfname(ifname));
  GRIDEMU_ASSIGN_OR_RETURN(auto conn, Conn(ns, true));
  std::string name(ifname);
  NlMsg msg = LinkMsg(RTM_DELLINK, 0, 0, false, false);
  if (!msg || nla_put_string(msg.get(), IFLA_IFNAME, name.c_str()) < 0) {
    return BuildError("deleting " + Where(name, ns));
  }
  conn->ifindex.erase(name);
  Status s = Send(*conn, std::move(msg), "deleting " + Where(name, ns));
  if (s.code() == StatusCode::kNotFound) return NotFoundError("no " + Where(name, ns));
  return s;
}

Result<std::vector<LinkInfo>> NetlinkPlumbing::Dump(NsConn& conn, std::string_view tag_prefix,
                                                    std::unordered_set<uint32_t>* groups) {
  nl_cache* cache = nullptr;
  int err = rtnl_link_alloc_cache(conn.sock.get(), AF_UNSPEC, &cache);
  if (err < 0) return NlStatus(err, "listing interfaces in " + conn.ref.ToString());
  std::vector<LinkInfo> out;
  conn.ifindex.clear();
  for (nl_object* o = nl_cache_get_first(cache); o != nullptr; o = nl_cache_get_next(o)) {
    auto* link = reinterpret_cast<rtnl_link*>(o);
    const char* name = rtnl_link_get_name(link);
    if (name) conn.ifindex[name] = rtnl_link_get_ifindex(link);
    if (groups) groups->insert(rtnl_link_get_group(link));
    const char* alias = rtnl_link_get_ifalias(link);
    if (!alias || std::string_view(alias).substr(0, tag_prefix.size()) != tag_prefix) continue;
    LinkInfo info;
    info.name = name ? name : "";
    info.ifindex = rtnl_link_get_ifindex(link);
    info.alias = alias;
    const char* kind = rtnl_link_get_type(link);
    info.kind = kind ? kind : "";
    info.mtu = rtnl_link_get_mtu(link);
    info.up = (rtnl_link_get_flags(link) & IFF_UP) != 0;
    info.master = rtnl_link_get_master(link);
    info.group = rtnl_link_get_group(link);
    out.push_back(std::move(info));
  }
  nl_cache_free(cache);
  std::sort(out.begin(), out.end(),
            [](const LinkInfo& x, const LinkInfo& y) { return x.ifindex < y.ifindex; });
  return out;
}

Status CheckTagPrefix(const NetnsRef& ns, std::string_view tag_prefix) {
  if (tag_prefix.empty()) {
    return InvalidArgumentError("tagged interfaces in " + ns.ToString() +
                                ": the tag prefix is empty (it would match every tagged "
                                "interface, including other tools')");
  }
  return Status::Ok();
}

Result<std::vector<LinkInfo>> NetlinkPlumbing::ListTagged(const NetnsRef& ns,
                                                          std::string_view tag_prefix) {
  CallScope scope(this);
  GRIDEMU_RETURN_IF_ERROR(CheckTagPrefix(ns, tag_prefix));
  GRIDEMU_ASSIGN_OR_RETURN(auto conn, Conn(ns, true));
  return Dump(*conn, tag_prefix, nullptr);
}

Result<size_t> NetlinkPlumbing::DeleteTagged(const NetnsRef& ns, std::string_view tag_prefix) {
  CallScope scope(this);
  GRIDEMU_RETURN_IF_ERROR(CheckTagPrefix(ns, tag_prefix));
  GRIDEMU_ASSIGN_OR_RETURN(auto conn, Conn(ns, true));
  std::unordered_set<uint32_t> groups;
  GRIDEMU_ASSIGN_OR_RETURN(std::vector<LinkInfo> links, Dump(*conn, tag_prefix, &groups));
  if (links.empty()) return size_t{0};
  conn->ifindex.clear();
  // Deleting devices one by one costs the kernel an RCU grace period each
  // (about 20 ms: 1,000 veths took 20 s). Instead, move the tagged devices
  // into an interface group that nothing else in the namespace uses and
  // delete that group with one request: one batched unregistration.
  uint32_t group = kDeleteGroupBase + static_cast<uint32_t>(getpid() & 0xffff);
  while (groups.count(group)) ++group;
  const std::string what = "deleting " + std::to_string(links.size()) + " interfaces tagged '" +
                           std::string(tag_prefix) + "' in " + ns.ToString();
  bool grouped = true;
  for (const LinkInfo& l : links) {
    NlMsg msg = LinkMsg(RTM_SETLINK, 0, l.ifindex, false, false);
    if (!msg || nla_put_u32(msg.get(), IFLA_GROUP, group) < 0) return BuildError(what);
    Status s = Send(*conn, std::move(msg), what + ": regrouping '" + l.name + "'");
    if (s.code() == StatusCode::kNotFound) continue;  // a veth peer of one deleted meanwhile
    if (!s.ok()) {
      grouped = false;
      break;
    }
  }
  if (grouped) {
    NlMsg msg = LinkMsg(RTM_DELLINK, 0, 0, false, false);
    if (!msg || nla_put_u32(msg.get(), IFLA_GROUP, group) < 0) return BuildError(what);
    Status s = Send(*conn, std::move(msg), what);
    if (s.ok() || s.code() == StatusCode::kNotFound) return links.size();
  }
  // Fallback: one request per device.
  size_t deleted = 0;
  for (const LinkInfo& l : links) {
    Status s = DeleteLink(ns, l.name);
    if (!s.ok() && s.code() != StatusCode::kNotFound) return s;
    ++deleted;
  }
  return deleted;
}

Status NetlinkPlumbing::Apply(const PlumbingBatch& batch) {
  CallScope scope(this);
  // 1. Veth pairs, each one request on the home socket.
  for (size_t i = 0; i < batch.veths.size(); ++i) {
    GRIDEMU_RETURN_IF_ERROR(
        CreateVethPair(batch.veths[i]).WithContext("veth #" + std::to_string(i)));
  }
  // 2. Everything else is per namespace: visit each namespace once, in order of
  // first appearance, so that its socket is opened once.
  struct Work {
    NetnsRef ref;
    std::vector<EndSetup> ends;  // veth ends to tag and bring up
    std::vector<const BridgeSpec*> bridges;
    std::vector<const AddressSpec*> addresses;
    bool forwarding = false;
    std::vector<const RouteSpec*> routes;
  };
  std::vector<Work> work;
  std::unordered_map<std::string, size_t> index;
  auto at = [&](const NetnsRef& ns) -> Work& {
    auto [it, inserted] = index.emplace(ns.Key(), work.size());
    if (inserted) work.push_back(Work{ns, {}, {}, {}, false, {}});
    return work[it->second];
  };
  for (const VethSpec& v : batch.veths) {
    if (EndOf(v, false).needed()) at(v.ns_a).ends.push_back(EndOf(v, false));
    if (EndOf(v, true).needed()) at(v.ns_b).ends.push_back(EndOf(v, true));
  }
  for (const BridgeSpec& b : batch.bridges) at(b.ns).bridges.push_back(&b);
  for (const AddressSpec& a : batch.addresses) at(a.ns).addresses.push_back(&a);
  for (const NetnsRef& ns : batch.forwarding) at(ns).forwarding = true;
  for (const RouteSpec& r : batch.routes) at(r.ns).routes.push_back(&r);

  for (const Work& w : work) {
    if (!w.ends.empty()) {
      GRIDEMU_ASSIGN_OR_RETURN(auto conn, Conn(w.ref, true));
      for (const EndSetup& e : w.ends) GRIDEMU_RETURN_IF_ERROR(SetupEnd(*conn, e));
    }
    for (const BridgeSpec* b : w.bridges) GRIDEMU_RETURN_IF_ERROR(CreateBridge(*b));
    for (const AddressSpec* a : w.addresses) GRIDEMU_RETURN_IF_ERROR(AddAddress(*a));
    if (w.forwarding) GRIDEMU_RETURN_IF_ERROR(EnableForwarding(w.ref));
    for (const RouteSpec* r : w.routes) GRIDEMU_RETURN_IF_ERROR(AddRoute(*r));
  }
  return Status::Ok();
}

}  // namespace

Status ValidateIfname(std::string_view name) {
  auto bad = [&](const char* why) {
    return InvalidArgumentError("bad interface name '" + std::string(name) + "': " + why);
  };
  if (name.empty()) return bad("empty");
  if (name.size() > IFNAMSIZ - 1) return bad("longer than 15 bytes");
  if (name == "." || name == "..") return bad("reserved");
  for (char c : name) {
    if (c == '/' || c == ':' || c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\0') {
      return bad("contains '/', ':', a NUL or whitespace");
    }
  }
  return Status::Ok();
}

Result<size_t> Plumbing::DeleteTagged(const NetnsRef& ns, std::string_view tag_prefix) {
  GRIDEMU_ASSIGN_OR_RETURN(std::vector<LinkInfo> links, ListTagged(ns, tag_prefix));
  for (const LinkInfo& l : links) {
    Status s = DeleteLink(ns, l.name);
    if (!s.ok() && s.code() != StatusCode::kNotFound) return s;  // kNotFound: a veth peer, gone
  }
  return links.size();
}

Status Plumbing::Apply(const PlumbingBatch& batch) {
  for (const VethSpec& v : batch.veths) GRIDEMU_RETURN_IF_ERROR(CreateVeth(v));
  for (const BridgeSpec& b : batch.bridges) GRIDEMU_RETURN_IF_ERROR(CreateBridge(b));
  for (const AddressSpec& a : batch.addresses) GRIDEMU_RETURN_IF_ERROR(AddAddress(a));
  for (const NetnsRef& ns : batch.forwarding) GRIDEMU_RETURN_IF_ERROR(EnableForwarding(ns));
  for (const RouteSpec& r : batch.routes) GRIDEMU_RETURN_IF_ERROR(AddRoute(r));
  return Status::Ok();
}

Result<std::unique_ptr<Plumbing>> NewNetlinkPlumbing(const NetlinkPlumbingOptions& options) {
  auto home = std::make_shared<NsConn>();
  home->ref = NetnsRef::Home();
  GRIDEMU_ASSIGN_OR_RETURN(int fd, OpenNetns(NetnsRef::Home()));
  home->ns_fd = Fd(fd);
  NlSock sock(nl_socket_alloc());
  if (!sock) return ResourceExhaustedError("cannot allocate a netlink socket");
  if (int err = nl_connect(sock.get(), NETLINK_ROUTE); err < 0) {
    return NlStatus(err, "opening a netlink socket in the home namespace");
  }
  home->sock = std::move(sock);
  return std::unique_ptr<Plumbing>(new NetlinkPlumbing(options, std::move(home)));
}

}  // namespace gridemu::agent

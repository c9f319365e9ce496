#include "gridemu/topology/addressing.h"

#include <algorithm>
#include <bit>
#include <charconv>
#include <numeric>

namespace gridemu::topology {
namespace {

constexpr int32_t kNoLan = -1;

uint32_t Mask(uint8_t length) { return length == 0 ? 0 : ~uint32_t{0} << (32 - length); }

bool IsSwitch(const Topology& topo, VnodeId v) { return topo.vnode(v).kind == VnodeKind::kSwitch; }

// Smallest prefix length whose block holds `n` members plus the network and
// broadcast addresses, capped at `max_len`.
uint8_t LanPrefixLength(uint64_t n, uint8_t max_len) {
  uint64_t need = n + 2;
  int bits = std::bit_width(need - 1);  // ceil(log2(need)) for need >= 2
  int len = 32 - bits;
  return static_cast<uint8_t>(std::min<int>(len, max_len));
}

// Union-find over switches, to merge switch-to-switch links into one LAN.
class DisjointSets {
 public:
  explicit DisjointSets(size_t n) : parent_(n) { std::iota(parent_.begin(), parent_.end(), 0); }
  uint32_t Find(uint32_t x) {
    while (parent_[x] != x) {
      parent_[x] = parent_[parent_[x]];
      x = parent_[x];
    }
    return x;
  }
  void Union(uint32_t a, uint32_t b) {
    a = Find(a);
    b = Find(b);
    if (a != b) parent_[std::max(a, b)] = std::min(a, b);
  }

 private:
  std::vector<uint32_t> parent_;
};

Status ValidateOptions(const AddressingOptions& o) {
  if (o.pool.length > 31) {
    return InvalidArgumentError("address pool " + o.pool.ToString() +
                                " is too small: it must be a /31 or wider");
  }
  if ((o.pool.address.value & ~Mask(o.pool.length)) != 0) {
    return InvalidArgumentError("address pool " + o.pool.ToString() +
                                " has host bits set; expected a network address");
  }
  if (o.max_lan_prefix_len < 1 || o.max_lan_prefix_len > 30) {
    return InvalidArgumentError("max_lan_prefix_len " + std::to_string(o.max_lan_prefix_len) +
                                " is out of range; expected 1..30");
  }
  return Status::Ok();
}

}  // namespace

std::string Ipv4Address::ToString() const {
  return std::to_string(value >> 24) + "." + std::to_string((value >> 16) & 0xff) + "." +
         std::to_string((value >> 8) & 0xff) + "." + std::to_string(value & 0xff);
}

bool Ipv4Prefix::Contains(Ipv4Address a) const { return (a.value & Mask(length)) == address.value; }

std::string Ipv4Prefix::ToString() const {
  return address.ToString() + "/" + std::to_string(length);
}

Result<Ipv4Address> ParseIpv4Address(std::string_view text) {
  auto bad = [&] {
    return InvalidArgumentError("'" + std::string(text) +
                                "' is not an IPv4 address; expected a dotted quad like 10.0.0.1");
  };
  uint32_t value = 0;
  const char* p = text.data();
  const char* end = text.data() + text.size();
  for (int i = 0; i < 4; ++i) {
    if (i > 0) {
      if (p == end || *p != '.') return bad();
      ++p;
    }
    if (p == end || *p < '0' || *p > '9') return bad();
    unsigned octet = 0;
    auto [next, ec] = std::from_chars(p, end, octet);
    if (ec != std::errc() || octet > 255 || next - p > 3) return bad();
    p = next;
    value = (value << 8) | octet;
  }
  if (p != end) return bad();
  return Ipv4Address{value};
}

Result<Ipv4Prefix> ParseIpv4Prefix(std::string_view text) {
  size_t slash = text.find('/');
  auto bad = [&](std::string why) {
    return InvalidArgumentError("'" + std::string(text) + "' is not an IPv4 prefix: " + why +
                                "; expected a.b.c.d/len like 10.0.0.0/8");
  };
  if (slash == std::string_view::npos) return bad("no '/len'");
  auto addr = ParseIpv4Address(text.substr(0, slash));
  if (!addr.ok()) return bad("bad address");
  std::string_view len_text = text.substr(slash + 1);
  unsigned len = 0;
  auto [next, ec] = std::from_chars(len_text.data(), len_text.data() + len_text.size(), len);
  if (len_text.empty() || ec != std::errc() || next != len_text.data() + len_text.size() ||
      len > 32) {
    return bad("length must be 0..32");
  }
  Ipv4Prefix prefix{*addr, static_cast<uint8_t>(len)};
  if ((addr->value & ~Mask(prefix.length)) != 0) return bad("host bits are set");
  return prefix;
}

Result<AddressPlan> PlanAddressing(const Topology& topo, const AddressingOptions& options) {
  GRIDEMU_RETURN_IF_ERROR(ValidateOptions(options));
  const size_t num_vnodes = topo.num_vnodes();
  const size_t num_links = topo.num_links();

  AddressPlan plan;
  plan.pool = options.pool;
  plan.vnodes.resize(num_vnodes);
  plan.link_subnet.resize(num_links);

  // 1. LANs: connected components of switches (over switch-switch links).
  DisjointSets sets(num_vnodes);
  for (LinkId l = 0; l < num_links; ++l) {
    const Link& link = topo.link(l);
    if (IsSwitch(topo, link.a) && IsSwitch(topo, link.b)) sets.Union(link.a, link.b);
  }
  std::vector<int32_t> lan_of_root(num_vnodes, kNoLan);
  std::vector<int32_t> link_lan(num_links, kNoLan);
  // LANs are numbered in order of their lowest link id; isolated switches come last.
  auto lan_for_switch = [&](VnodeId s) {
    uint32_t root = sets.Find(s);
    if (lan_of_root[root] == kNoLan) {
      lan_of_root[root] = static_cast<int32_t>(plan.lans.size());
      plan.lans.emplace_back();
    }
    return lan_of_root[root];
  };
  for (LinkId l = 0; l < num_links; ++l) {
    const Link& link = topo.link(l);
    bool sa = IsSwitch(topo, link.a), sb = IsSwitch(topo, link.b);
    if (!sa && !sb) continue;
    int32_t lan = lan_for_switch(sa ? link.a : link.b);
    link_lan[l] = lan;
    LanPlan& lp = plan.lans[lan];
    lp.links.push_back(l);
    if (!sa) lp.members.push_back(link.a);
    if (!sb) lp.members.push_back(link.b);
  }
  for (VnodeId v = 0; v < num_vnodes; ++v) {
    if (IsSwitch(topo, v)) plan.lans[lan_for_switch(v)].switches.push_back(v);
  }

  // 2. Carve blocks, largest first (LANs are always >= 4 addresses, /31s 2).
  struct Block {
    uint8_t length;
    int32_t lan;  // or kNoLan for a link
    LinkId link;
  };
  std::vector<Block> blocks;
  size_t num_p2p = 0;
  for (size_t i = 0; i < plan.lans.size(); ++i) {
    blocks.push_back({LanPrefixLength(plan.lans[i].members.size(), options.max_lan_prefix_len),
                      static_cast<int32_t>(i), 0});
  }
  for (LinkId l = 0; l < num_links; ++l) {
    if (link_lan[l] == kNoLan) {
      blocks.push_back({31, kNoLan, l});
      ++num_p2p;
    }
  }
  std::stable_sort(blocks.begin(), blocks.end(),
                   [](const Block& x, const Block& y) { return x.length < y.length; });
  uint64_t needed = 0;
  for (const Block& b : blocks) needed += uint64_t{1} << (32 - b.length);
  if (needed > options.pool.size()) {
    uint64_t lan_addresses = needed - 2 * num_p2p;
    return ResourceExhaustedError(
        "address pool " + options.pool.ToString() + " has " + std::to_string(options.pool.size()) +
        " addresses but the topology needs " + std::to_string(needed) + ": " +
        std::to_string(num_p2p) + " point-to-point links x /31 = " + std::to_string(2 * num_p2p) +
        ", " + std::to_string(plan.lans.size()) +
        " switch LANs = " + std::to_string(lan_addresses) + "; use a wider pool");
  }
  uint64_t cursor = 0;
  for (const Block& b : blocks) {
    Ipv4Prefix subnet{Ipv4Address{options.pool.address.value + static_cast<uint32_t>(cursor)},
                      b.length};
    cursor += uint64_t{1} << (32 - b.length);
    if (b.lan == kNoLan) {
      plan.link_subnet[b.link] = subnet;
    } else {
      plan.lans[b.lan].subnet = subnet;
      for (LinkId l : plan.lans[b.lan].links) plan.link_subnet[l] = subnet;
    }
  }
  plan.addresses_used = cursor;

  // 3. Interfaces. Address of the non-switch end of LAN link l: in link order.
  std::vector<uint32_t> lan_next(plan.lans.size(), 1);
  std::vector<Ipv4Address> lan_link_address(num_links);
  for (LinkId l = 0; l < num_links; ++l) {
    if (link_lan[l] == kNoLan) continue;
    const Link& link = topo.link(l);
    if (IsSwitch(topo, link.a) && IsSwitch(topo, link.b)) continue;
    const Ipv4Prefix& subnet = plan.lans[link_lan[l]].subnet;
    lan_link_address[l] = Ipv4Address{subnet.address.value + lan_next[link_lan[l]]++};
  }
  // Interface index of each link end, to find a vnode's device for a link in O(1).
  std::vector<uint32_t> ifindex_a(num_links), ifindex_b(num_links);
  for (VnodeId v = 0; v < num_vnodes; ++v) {
    VnodePlan& vp = plan.vnodes[v];
    const auto& incident = topo.incident(v);
    vp.interfaces.reserve(incident.size());
    const bool is_switch = IsSwitch(topo, v);
    vp.bridge = is_switch;
    vp.forwarding = topo.vnode(v).kind == VnodeKind::kRouter;
    for (size_t i = 0; i < incident.size(); ++i) {
      LinkId l = incident[i];
      const Link& link = topo.link(l);
      InterfacePlan ip;
      ip.name = "eth" + std::to_string(i);
      ip.link = l;
      ip.peer = topo.Peer(l, v);
      ip.lan = link_lan[l];
      ip.prefix_len = plan.link_subnet[l].length;
      if (!is_switch) {
        if (ip.lan == kNoLan) {
          ip.address = Ipv4Address{plan.link_subnet[l].address.value + (link.a == v ? 0u : 1u)};
        } else {
          ip.address = lan_link_address[l];
        }
      }
      (link.a == v ? ifindex_a : ifindex_b)[l] = static_cast<uint32_t>(i);
      vp.interfaces.push_back(std::move(ip));
    }
  }
  auto interface_on = [&](VnodeId v, LinkId l) {
    return topo.link(l).a == v ? ifindex_a[l] : ifindex_b[l];
  };

  // 4. Routes. Default routes for single-homed hosts; the set R of vnodes that
  // need per-destination routes.
  std::vector<uint8_t> in_r(num_vnodes, 0);
  std::vector<VnodeId> routed;  // R, ascending
  // The single router of each LAN: its id, -1 when none, -2 when several.
  std::vector<int64_t> lan_router(plan.lans.size(), -1);
  std::vector<uint32_t> lan_router_link(plan.lans.size(), 0);
  for (size_t i = 0; i < plan.lans.size(); ++i) {
    const LanPlan& lp = plan.lans[i];
    for (LinkId l : lp.links) {
      const Link& link = topo.link(l);
      VnodeId m = IsSwitch(topo, link.a) ? link.b : link.a;
      if (IsSwitch(topo, m)) continue;
      if (topo.vnode(m).kind != VnodeKind::kRouter) continue;
      if (lan_router[i] == -1) {
        lan_router[i] = m;
        lan_router_link[i] = l;
      } else if (lan_router[i] != static_cast<int64_t>(m)) {
        lan_router[i] = -2;
      }
    }
  }
  for (VnodeId v = 0; v < num_vnodes; ++v) {
    const Vnode& vn = topo.vnode(v);
    VnodePlan& vp = plan.vnodes[v];
    if (vn.kind == VnodeKind::kSwitch || vp.interfaces.empty()) continue;
    if (vn.kind == VnodeKind::kHost && vp.interfaces.size() == 1) {
      const InterfacePlan& ip = vp.interfaces[0];
      if (ip.lan == kNoLan) {
        if (topo.vnode(ip.peer).kind == VnodeKind::kRouter) {
          const InterfacePlan& peer_if =
              plan.vnodes[ip.peer].interfaces[interface_on(ip.peer, ip.link)];
          vp.routes.push_back({Ipv4Prefix{}, *peer_if.address, 0});
        }
        continue;  // a host joined to a host reaches only it: connected
      }
      int64_t router = lan_router[ip.lan];
      if (router == -1) continue;  // LAN of hosts: all connected
      if (router >= 0) {
        LinkId rl = lan_router_link[ip.lan];
        VnodeId r = static_cast<VnodeId>(router);
        vp.routes.push_back(
            {Ipv4Prefix{}, *plan.vnodes[r].interfaces[interface_on(r, rl)].address, 0});
        continue;
      }
      // Several routers on the LAN: fall through to per-destination routes.
    }
    in_r[v] = 1;
    routed.push_back(v);
  }
  plan.num_routes = 0;
  for (const VnodePlan& vp : plan.vnodes) plan.num_routes += vp.routes.size();
  if (routed.empty()) return plan;

  // Subnet ids: a /31 is its link id, a LAN is num_links + its index.
  auto subnet_id = [&](const InterfacePlan& ip) -> uint64_t {
    return ip.lan == kNoLan ? ip.link : num_links + static_cast<uint64_t>(ip.lan);
  };
  // For each subnet, how many distinct vnodes of R have an address on it;
  // for each vnode of R, its sorted subnet ids (to test "connected").
  std::vector<uint32_t> r_on_subnet(num_links + plan.lans.size(), 0);
  std::vector<std::vector<uint64_t>> subnets_of(num_vnodes);
  for (VnodeId r : routed) {
    auto& ids = subnets_of[r];
    for (const InterfacePlan& ip : plan.vnodes[r].interfaces) ids.push_back(subnet_id(ip));
    std::sort(ids.begin(), ids.end());
    ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
    for (uint64_t s : ids) ++r_on_subnet[s];
  }
  auto connected = [&](VnodeId r, uint64_t s) {
    return std::binary_search(subnets_of[r].begin(), subnets_of[r].end(), s);
  };

  for (VnodeId d = 0; d < num_vnodes; ++d) {
    if (IsSwitch(topo, d)) continue;
    const VnodePlan& dp = plan.vnodes[d];
    bool needed_by_someone = false;
    for (const InterfacePlan& ip : dp.interfaces) {
      if (r_on_subnet[subnet_id(ip)] < routed.size()) {
        needed_by_someone = true;
        break;
      }
    }
    if (!needed_by_someone) continue;
    NextHopTree tree = NextHopsTowards(topo, d, options.metric);
    for (VnodeId r : routed) {
      if (r == d || r >= tree.via.size() || !tree.via[r]) continue;
      LinkId l = *tree.via[r];
      VnodeId hop = topo.Peer(l, r);
      LinkId hop_link = l;
      // Across a switch LAN, the gateway is where the path leaves the LAN.
      for (size_t guard = 0; IsSwitch(topo, hop) && guard <= num_vnodes; ++guard) {
        if (hop >= tree.via.size() || !tree.via[hop]) break;
        hop_link = *tree.via[hop];
        hop = topo.Peer(hop_link, hop);
      }
      if (IsSwitch(topo, hop)) continue;  // no L3 next hop: unreachable
      const InterfacePlan& gw_if = plan.vnodes[hop].interfaces[interface_on(hop, hop_link)];
      if (!gw_if.address) continue;
      uint32_t out_if = interface_on(r, l);
      VnodePlan& rp = plan.vnodes[r];
      for (const InterfacePlan& ip : dp.interfaces) {
        if (!ip.address || connected(r, subnet_id(ip))) continue;
        if (plan.num_routes >= options.max_routes) {
          return ResourceExhaustedError("the route plan exceeds " +
                                        std::to_string(options.max_routes) + " routes (" +
                                        std::to_string(routed.size()) +
                                        " vnodes need per-destination routes); use fewer routers, "
                                        "the access model, or raise max_routes");
        }
        rp.routes.push_back({Ipv4Prefix{*ip.address, 32}, *gw_if.address, out_if});
        ++plan.num_routes;
      }
    }
  }
  for (VnodeId r : routed) {
    auto& routes = plan.vnodes[r].routes;
    std::sort(routes.begin(), routes.end(), [](const RoutePlan& x, const RoutePlan& y) {
      return x.dst.address != y.dst.address ? x.dst.address < y.dst.address
                                            : x.dst.length < y.dst.length;
    });
  }
  return plan;
}

std::vector<HostsEntry> HostsEntries(const Topology& topo, const AddressPlan& plan) {
  std::vector<HostsEntry> out;
  for (VnodeId v = 0; v < plan.vnodes.size() && v < topo.num_vnodes(); ++v) {
    HostsEntry e;
    for (const InterfacePlan& ip : plan.vnodes[v].interfaces) {
      if (ip.address) e.addresses.push_back(*ip.address);
    }
    if (e.addresses.empty()) continue;
    e.name = topo.vnode(v).name;
    out.push_back(std::move(e));
  }
  return out;
}

std::string RenderEtcHosts(const std::vector<HostsEntry>& entries) {
  std::string out =
      "127.0.0.1\tlocalhost\n"
      "::1\tlocalhost ip6-localhost ip6-loopback\n";
  out.reserve(out.size() + entries.size() * 24);
  for (const HostsEntry& e : entries) {
    if (e.addresses.empty()) continue;
    out += e.addresses.front().ToString();
    out += '\t';
    out += e.name;
    out += '\n';
  }
  return out;
}

}  // namespace gridemu::topology

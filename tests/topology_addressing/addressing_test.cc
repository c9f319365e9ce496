#include "gridemu/topology/addressing.h"

#include <gtest/gtest.h>

#include <chrono>
#include <set>
#include <string>

namespace gridemu::topology {
namespace {

using std::chrono::milliseconds;

VnodeId Add(Topology& t, const std::string& name, VnodeKind kind = VnodeKind::kHost) {
  Vnode v;
  v.name = name;
  v.kind = kind;
  auto id = t.AddVnode(std::move(v));
  EXPECT_TRUE(id.ok()) << id.status().ToString();
  return *id;
}

LinkId Join(Topology& t, VnodeId a, VnodeId b, milliseconds delay = milliseconds(1)) {
  Link l;
  l.a = a;
  l.b = b;
  l.forward.delay = delay;
  l.reverse.delay = delay;
  auto id = t.AddLink(std::move(l));
  EXPECT_TRUE(id.ok()) << id.status().ToString();
  return *id;
}

Ipv4Address Addr(const std::string& s) { return *ParseIpv4Address(s); }

const InterfacePlan& IfaceOn(const AddressPlan& plan, VnodeId v, LinkId l) {
  for (const InterfacePlan& ip : plan.vnodes[v].interfaces) {
    if (ip.link == l) return ip;
  }
  ADD_FAILURE() << "vnode " << v << " has no interface on link " << l;
  static InterfacePlan none;
  return none;
}

// The /32 route of `v` to `dst`, else its default route, else nullptr.
const RoutePlan* RouteTo(const AddressPlan& plan, VnodeId v, Ipv4Address dst) {
  const RoutePlan* fallback = nullptr;
  for (const RoutePlan& r : plan.vnodes[v].routes) {
    if (r.dst.length == 32 && r.dst.address == dst) return &r;
    if (r.dst.length == 0) fallback = &r;
  }
  return fallback;
}

TEST(Ipv4, ParseAndFormat) {
  EXPECT_EQ(Addr("10.1.2.3").value, 0x0A010203u);
  EXPECT_EQ(Addr("10.1.2.3").ToString(), "10.1.2.3");
  auto p = ParseIpv4Prefix("192.168.0.0/16");
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->ToString(), "192.168.0.0/16");
  EXPECT_EQ(p->size(), 65536u);
  EXPECT_TRUE(p->Contains(Addr("192.168.7.9")));
  EXPECT_FALSE(p->Contains(Addr("192.169.0.1")));
  for (const char* bad : {"10.0.0", "10.0.0.256", "10.0.0.1.", "a.b.c.d", "10..0.1", ""}) {
    EXPECT_EQ(ParseIpv4Address(bad).status().code(), StatusCode::kInvalidArgument) << bad;
  }
  EXPECT_EQ(ParseIpv4Prefix("10.0.0.1/8").status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(ParseIpv4Prefix("10.0.0.0/33").status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(ParseIpv4Prefix("10.0.0.0").status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(ParseIpv4Prefix("10.0.0.1/8").status().message().find("host bits"), std::string::npos);
}

// h0 - r0 - r1 - r2 - r3 - r4 - h1
TEST(Addressing, ChainOfRouters) {
  Topology t;
  VnodeId h0 = Add(t, "h0");
  std::vector<VnodeId> r;
  for (int i = 0; i < 5; ++i) r.push_back(Add(t, "r" + std::to_string(i), VnodeKind::kRouter));
  VnodeId h1 = Add(t, "h1");
  std::vector<LinkId> links;
  links.push_back(Join(t, h0, r[0]));
  for (int i = 0; i + 1 < 5; ++i) links.push_back(Join(t, r[i], r[i + 1]));
  links.push_back(Join(t, r[4], h1));

  auto plan_or = PlanAddressing(t);
  ASSERT_TRUE(plan_or.ok()) << plan_or.status().ToString();
  const AddressPlan& plan = *plan_or;
  EXPECT_TRUE(plan.lans.empty());
  EXPECT_EQ(plan.addresses_used, 2 * links.size());

  // Unique addresses; each link is a /31 with a at the even address.
  std::set<uint32_t> seen;
  for (VnodeId v = 0; v < t.num_vnodes(); ++v) {
    for (const InterfacePlan& ip : plan.vnodes[v].interfaces) {
      ASSERT_TRUE(ip.address);
      EXPECT_TRUE(seen.insert(ip.address->value).second) << ip.address->ToString();
      EXPECT_EQ(ip.prefix_len, 31);
      EXPECT_TRUE(plan.pool.Contains(*ip.address));
    }
  }
  for (LinkId l : links) {
    const Link& link = t.link(l);
    const InterfacePlan& ia = IfaceOn(plan, link.a, l);
    const InterfacePlan& ib = IfaceOn(plan, link.b, l);
    EXPECT_EQ(ia.address->value % 2, 0u);
    EXPECT_EQ(ib.address->value, ia.address->value + 1);
    EXPECT_EQ(plan.link_subnet[l], (Ipv4Prefix{*ia.address, 31}));
    EXPECT_EQ(ia.peer, link.b);
    EXPECT_EQ(ib.peer, link.a);
  }
  // Interface names follow incident order.
  EXPECT_EQ(plan.vnodes[r[2]].interfaces[0].name, "eth0");
  EXPECT_EQ(plan.vnodes[r[2]].interfaces[0].link, links[2]);
  EXPECT_EQ(plan.vnodes[r[2]].interfaces[1].name, "eth1");
  EXPECT_EQ(plan.vnodes[r[2]].interfaces[1].link, links[3]);

  // Hosts: one default route via their router.
  ASSERT_EQ(plan.vnodes[h0].routes.size(), 1u);
  EXPECT_EQ(plan.vnodes[h0].routes[0].dst.length, 0);
  EXPECT_EQ(plan.vnodes[h0].routes[0].gateway, *IfaceOn(plan, r[0], links[0]).address);
  EXPECT_FALSE(plan.vnodes[h0].forwarding);
  ASSERT_EQ(plan.vnodes[h1].routes.size(), 1u);
  EXPECT_EQ(plan.vnodes[h1].routes[0].gateway, *IfaceOn(plan, r[4], links[5]).address);

  // Every router reaches both far hosts through the right neighbour.
  Ipv4Address a_h0 = *plan.vnodes[h0].interfaces[0].address;
  Ipv4Address a_h1 = *plan.vnodes[h1].interfaces[0].address;
  for (int i = 0; i < 5; ++i) {
    const VnodePlan& vp = plan.vnodes[r[i]];
    EXPECT_TRUE(vp.forwarding);
    if (i > 0) {  // towards h0: via r[i-1] on links[i]
      const RoutePlan* rt = RouteTo(plan, r[i], a_h0);
      ASSERT_NE(rt, nullptr) << "r" << i << " -> h0";
      EXPECT_EQ(rt->dst.length, 32);
      EXPECT_EQ(rt->gateway, *IfaceOn(plan, r[i - 1], links[i]).address);
      EXPECT_EQ(vp.interfaces[rt->interface].link, links[i]);
    } else {
      EXPECT_EQ(RouteTo(plan, r[i], a_h0), nullptr) << "h0 is connected to r0";
    }
    if (i < 4) {  // towards h1: via r[i+1] on links[i+1]
      const RoutePlan* rt = RouteTo(plan, r[i], a_h1);
      ASSERT_NE(rt, nullptr) << "r" << i << " -> h1";
      EXPECT_EQ(rt->gateway, *IfaceOn(plan, r[i + 1], links[i + 1]).address);
      EXPECT_EQ(vp.interfaces[rt->interface].link, links[i + 1]);
    }
    // A route to every address that is not connected: 12 addresses minus the
    // two of each own /31.
    size_t own = vp.interfaces.size();
    EXPECT_EQ(vp.routes.size(), 12 - 2 * own) << "r" << i;
    for (const RoutePlan& rt : vp.routes) {
      for (const InterfacePlan& ip : vp.interfaces) {
        EXPECT_FALSE(
            (Ipv4Prefix{Ipv4Address{ip.address->value & ~1u}, 31}).Contains(rt.dst.address))
            << "route to a connected address";
      }
    }
  }
  EXPECT_EQ(plan.num_routes, 2u + 5 * 8);
}

// Delay metric: r0 -> r1 direct costs 10 ms, through r2 2 ms.
TEST(Addressing, RoutesFollowDelay) {
  Topology t;
  VnodeId r0 = Add(t, "r0", VnodeKind::kRouter);
  VnodeId r1 = Add(t, "r1", VnodeKind::kRouter);
  VnodeId r2 = Add(t, "r2", VnodeKind::kRouter);
  VnodeId h = Add(t, "h");
  LinkId slow = Join(t, r0, r1, milliseconds(10));
  LinkId fast1 = Join(t, r0, r2, milliseconds(1));
  Join(t, r2, r1, milliseconds(1));
  LinkId lh = Join(t, r1, h);
  auto plan = PlanAddressing(t);
  ASSERT_TRUE(plan.ok()) << plan.status().ToString();
  const RoutePlan* rt = RouteTo(*plan, r0, *IfaceOn(*plan, h, lh).address);
  ASSERT_NE(rt, nullptr);
  EXPECT_EQ(rt->gateway, *IfaceOn(*plan, r2, fast1).address);
  // With hop count, the direct link wins.
  AddressingOptions hops;
  hops.metric = RouteMetric::kHops;
  plan = PlanAddressing(t, hops);
  ASSERT_TRUE(plan.ok());
  rt = RouteTo(*plan, r0, *IfaceOn(*plan, h, lh).address);
  ASSERT_NE(rt, nullptr);
  EXPECT_EQ(rt->gateway, *IfaceOn(*plan, r1, slow).address);
}

// s0 == s1 (merged LAN) with h0, h1 on s0, h2 on s1, router r0 on s0; r0 - r1 - h3.
TEST(Addressing, SwitchLan) {
  Topology t;
  VnodeId s0 = Add(t, "s0", VnodeKind::kSwitch);
  VnodeId s1 = Add(t, "s1", VnodeKind::kSwitch);
  VnodeId h0 = Add(t, "h0"), h1 = Add(t, "h1"), h2 = Add(t, "h2"), h3 = Add(t, "h3");
  VnodeId r0 = Add(t, "r0", VnodeKind::kRouter), r1 = Add(t, "r1", VnodeKind::kRouter);
  LinkId l_h0 = Join(t, h0, s0);
  LinkId l_h1 = Join(t, s0, h1);
  LinkId l_ss = Join(t, s0, s1);
  LinkId l_h2 = Join(t, h2, s1);
  LinkId l_r0 = Join(t, r0, s0);
  LinkId l_rr = Join(t, r0, r1);
  LinkId l_h3 = Join(t, r1, h3);

  auto plan_or = PlanAddressing(t);
  ASSERT_TRUE(plan_or.ok()) << plan_or.status().ToString();
  const AddressPlan& plan = *plan_or;
  ASSERT_EQ(plan.lans.size(), 1u);
  const LanPlan& lan = plan.lans[0];
  EXPECT_EQ(lan.subnet.ToString(), "10.0.0.0/24");  // LAN first, largest block
  EXPECT_EQ(lan.switches, (std::vector<VnodeId>{s0, s1}));
  EXPECT_EQ(lan.members, (std::vector<VnodeId>{h0, h1, h2, r0}));
  EXPECT_EQ(lan.links, (std::vector<LinkId>{l_h0, l_h1, l_ss, l_h2, l_r0}));
  EXPECT_EQ(IfaceOn(plan, h0, l_h0).address->ToString(), "10.0.0.1");
  EXPECT_EQ(IfaceOn(plan, h1, l_h1).address->ToString(), "10.0.0.2");
  EXPECT_EQ(IfaceOn(plan, h2, l_h2).address->ToString(), "10.0.0.3");
  EXPECT_EQ(IfaceOn(plan, r0, l_r0).address->ToString(), "10.0.0.4");
  EXPECT_EQ(IfaceOn(plan, h0, l_h0).prefix_len, 24);
  EXPECT_EQ(IfaceOn(plan, h0, l_h0).lan, 0);
  EXPECT_EQ(plan.link_subnet[l_rr].ToString(), "10.0.1.0/31");
  EXPECT_EQ(plan.link_subnet[l_h3].ToString(), "10.0.1.2/31");

  // Switches: bridge, ports without addresses, no routes.
  for (VnodeId s : {s0, s1}) {
    EXPECT_TRUE(plan.vnodes[s].bridge);
    EXPECT_FALSE(plan.vnodes[s].forwarding);
    EXPECT_TRUE(plan.vnodes[s].routes.empty());
    for (const InterfacePlan& ip : plan.vnodes[s].interfaces) {
      EXPECT_FALSE(ip.address);
      EXPECT_EQ(ip.lan, 0);
    }
  }
  EXPECT_EQ(plan.vnodes[s0].interfaces.size(), 4u);

  // LAN hosts: default route via the LAN's only router.
  for (VnodeId h : {h0, h1, h2}) {
    ASSERT_EQ(plan.vnodes[h].routes.size(), 1u);
    EXPECT_EQ(plan.vnodes[h].routes[0].dst.length, 0);
    EXPECT_EQ(plan.vnodes[h].routes[0].gateway.ToString(), "10.0.0.4");
  }
  // r1 reaches the LAN hosts through r0; r0 reaches h3 through r1.
  for (VnodeId h : {h0, h1, h2}) {
    const RoutePlan* rt = RouteTo(plan, r1, *plan.vnodes[h].interfaces[0].address);
    ASSERT_NE(rt, nullptr);
    EXPECT_EQ(rt->gateway, *IfaceOn(plan, r0, l_rr).address);
  }
  const RoutePlan* rt = RouteTo(plan, r0, *IfaceOn(plan, h3, l_h3).address);
  ASSERT_NE(rt, nullptr);
  EXPECT_EQ(rt->gateway, *IfaceOn(plan, r1, l_rr).address);
  EXPECT_EQ(plan.vnodes[r0].routes.size(), 2u);  // h3 and r1's end of r1--h3; the rest is connected

  // /etc/hosts input.
  auto hosts = HostsEntries(t, plan);
  ASSERT_EQ(hosts.size(), 6u);  // every vnode but the switches
  EXPECT_EQ(hosts[0].name, "h0");
  EXPECT_EQ(hosts[0].addresses.front().ToString(), "10.0.0.1");
  std::string text = RenderEtcHosts(hosts);
  EXPECT_NE(text.find("127.0.0.1\tlocalhost\n"), std::string::npos);
  EXPECT_NE(text.find("10.0.0.1\th0\n"), std::string::npos);
  EXPECT_NE(text.find("10.0.0.4\tr0\n"), std::string::npos);
}

// A LAN with two routers: its hosts need per-destination routes; a path through
// the LAN uses the exit router's LAN address as gateway.
TEST(Addressing, LanWithTwoRouters) {
  Topology t;
  VnodeId s = Add(t, "s", VnodeKind::kSwitch);
  VnodeId h = Add(t, "h");
  VnodeId ra = Add(t, "ra", VnodeKind::kRouter), rb = Add(t, "rb", VnodeKind::kRouter);
  VnodeId ha = Add(t, "ha"), hb = Add(t, "hb");
  Join(t, h, s);
  LinkId l_ra = Join(t, ra, s);
  LinkId l_rb = Join(t, rb, s);
  LinkId l_ha = Join(t, ra, ha);
  LinkId l_hb = Join(t, rb, hb);
  auto plan = PlanAddressing(t);
  ASSERT_TRUE(plan.ok()) << plan.status().ToString();
  const VnodePlan& hp = plan->vnodes[h];
  ASSERT_EQ(hp.routes.size(), 4u);  // ha, hb and the routers' far ends
  const RoutePlan* to_ha = RouteTo(*plan, h, *IfaceOn(*plan, ha, l_ha).address);
  ASSERT_NE(to_ha, nullptr);
  EXPECT_EQ(to_ha->gateway, *IfaceOn(*plan, ra, l_ra).address);
  const RoutePlan* to_hb = RouteTo(*plan, h, *IfaceOn(*plan, hb, l_hb).address);
  ASSERT_NE(to_hb, nullptr);
  EXPECT_EQ(to_hb->gateway, *IfaceOn(*plan, rb, l_rb).address);
  // ra reaches hb across the LAN via rb's LAN address.
  const RoutePlan* ra_hb = RouteTo(*plan, ra, *IfaceOn(*plan, hb, l_hb).address);
  ASSERT_NE(ra_hb, nullptr);
  EXPECT_EQ(ra_hb->gateway, *IfaceOn(*plan, rb, l_rb).address);
  EXPECT_EQ(plan->vnodes[ra].interfaces[ra_hb->interface].link, l_ra);
  // ha, hb hang off one router each: default routes.
  ASSERT_EQ(plan->vnodes[ha].routes.size(), 1u);
  EXPECT_EQ(plan->vnodes[ha].routes[0].dst.length, 0);
}

TEST(Addressing, PoolExhausted) {
  Topology t;
  VnodeId r = Add(t, "r", VnodeKind::kRouter);
  for (int i = 0; i < 3; ++i) Join(t, r, Add(t, "h" + std::to_string(i)));
  AddressingOptions o;
  o.pool = *ParseIpv4Prefix("192.168.1.0/30");
  auto plan = PlanAddressing(t, o);
  ASSERT_EQ(plan.status().code(), StatusCode::kResourceExhausted);
  EXPECT_EQ(plan.status().message(),
            "address pool 192.168.1.0/30 has 4 addresses but the topology needs 6: 3 "
            "point-to-point links x /31 = 6, 0 switch LANs = 0; use a wider pool");
  o.pool = *ParseIpv4Prefix("192.168.1.0/29");
  plan = PlanAddressing(t, o);
  ASSERT_TRUE(plan.ok()) << plan.status().ToString();
  EXPECT_EQ(plan->vnodes[1].interfaces[0].address->ToString(), "192.168.1.1");

  // A LAN counts its whole subnet.
  Topology lan;
  VnodeId s = Add(lan, "s", VnodeKind::kSwitch);
  for (int i = 0; i < 3; ++i) Join(lan, s, Add(lan, "h" + std::to_string(i)));
  o.pool = *ParseIpv4Prefix("10.9.0.0/25");
  plan = PlanAddressing(lan, o);
  ASSERT_EQ(plan.status().code(), StatusCode::kResourceExhausted);
  EXPECT_NE(plan.status().message().find("1 switch LANs = 256"), std::string::npos)
      << plan.status().message();
  o.max_lan_prefix_len = 29;
  plan = PlanAddressing(lan, o);
  ASSERT_TRUE(plan.ok()) << plan.status().ToString();
  EXPECT_EQ(plan->lans[0].subnet.ToString(), "10.9.0.0/29");
}

TEST(Addressing, BadOptions) {
  Topology t;
  AddressingOptions o;
  o.pool = Ipv4Prefix{Addr("10.0.0.1"), 8};
  EXPECT_EQ(PlanAddressing(t, o).status().code(), StatusCode::kInvalidArgument);
  o.pool = Ipv4Prefix{Addr("10.0.0.1"), 32};
  EXPECT_EQ(PlanAddressing(t, o).status().code(), StatusCode::kInvalidArgument);
  o = {};
  o.max_lan_prefix_len = 31;
  EXPECT_EQ(PlanAddressing(t, o).status().code(), StatusCode::kInvalidArgument);
}

TEST(Addressing, LargeLanGetsWiderSubnet) {
  Topology t;
  VnodeId s = Add(t, "s", VnodeKind::kSwitch);
  for (int i = 0; i < 300; ++i) Join(t, s, Add(t, "h" + std::to_string(i)));
  auto plan = PlanAddressing(t);
  ASSERT_TRUE(plan.ok());
  EXPECT_EQ(plan->lans[0].subnet.ToString(), "10.0.0.0/23");
  EXPECT_EQ(plan->vnodes[300].interfaces[0].address->ToString(), "10.0.1.44");
  EXPECT_TRUE(plan->vnodes[300].routes.empty());  // no router: all connected
}

// DESIGN §11-scale sanity: 100,000 hosts around one router.
TEST(Addressing, StarOf100kHosts) {
  constexpr int kHosts = 100'000;
  Topology t;
  VnodeId r = Add(t, "core", VnodeKind::kRouter);
  for (int i = 0; i < kHosts; ++i) Join(t, Add(t, "peer" + std::to_string(i)), r);
  auto start = std::chrono::steady_clock::now();
  auto plan = PlanAddressing(t);
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  ASSERT_TRUE(plan.ok()) << plan.status().ToString();
  RecordProperty("plan_seconds", std::to_string(seconds));
  std::printf("PlanAddressing, star of %d hosts: %.3f s\n", kHosts, seconds);
#ifdef NDEBUG
  EXPECT_LT(seconds, 2.0);
#endif
  EXPECT_TRUE(plan->vnodes[r].routes.empty());
  EXPECT_EQ(plan->vnodes[r].interfaces.size(), size_t{kHosts});
  EXPECT_EQ(plan->vnodes[r].interfaces.back().name, "eth99999");
  EXPECT_EQ(plan->num_routes, size_t{kHosts});
  EXPECT_EQ(plan->addresses_used, 2u * kHosts);
  std::set<uint32_t> seen;
  for (VnodeId v = 1; v <= kHosts; ++v) {
    const VnodePlan& vp = plan->vnodes[v];
    ASSERT_EQ(vp.routes.size(), 1u);
    EXPECT_EQ(vp.routes[0].dst.length, 0);
    EXPECT_EQ(vp.routes[0].gateway, *plan->vnodes[r].interfaces[v - 1].address);
    seen.insert(vp.interfaces[0].address->value);
  }
  EXPECT_EQ(seen.size(), size_t{kHosts});
}

}  // namespace
}  // namespace gridemu::topology

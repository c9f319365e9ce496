// End-to-end check of address planning (topology/addressing.h) applied with
// the agent's netlink plumbing (agent/plumbing.h) in real namespaces: one
// namespace per vnode, named "gepl<pid>-<vnode>", removed by RAII even when a
// test fails. Traffic flows only between these namespaces.
#include <dirent.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <memory>
#include <regex>
#include <string>
#include <vector>

#include "gridemu/node-agent/plumbing.h"
#include "gridemu/topology/addressing.h"

namespace gridemu {
namespace {

using agent::NetnsRef;
using topology::AddressPlan;
using topology::VnodeId;
using topology::VnodeKind;

const std::string& Prefix() {
  static const std::string p = "gepl" + std::to_string(getpid()) + "-";
  return p;
}

struct CmdResult {
  int code = -1;
  std::string out;
};

CmdResult Shell(const std::string& cmd) {
  CmdResult r;
  FILE* f = popen((cmd + " 2>&1").c_str(), "r");
  if (!f) return r;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, f)) > 0) r.out.append(buf, n);
  int st = pclose(f);
  r.code = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return r;
}

// A network namespace made with `ip netns add` and deleted on destruction.
class TestNetns {
 public:
  explicit TestNetns(const std::string& name) : name_(Prefix() + name) {
    CmdResult r = Shell("ip netns add " + name_);
    ok_ = r.code == 0;
    EXPECT_TRUE(ok_) << r.out;
  }
  ~TestNetns() {
    if (ok_) Shell("ip netns del " + name_);
  }
  TestNetns(const TestNetns&) = delete;
  TestNetns& operator=(const TestNetns&) = delete;
  NetnsRef ref() const { return NetnsRef::AtPath("/run/netns/" + name_); }
  CmdResult Exec(const std::string& cmd) const {
    return Shell("ip netns exec " + name_ + " " + cmd);
  }

 private:
  std::string name_;
  bool ok_ = false;
};

// One namespace per vnode and the plan turned into a plumbing batch: what the
// controller will ship to the agent.
class Emulation {
 public:
  Emulation(const topology::Topology& topo, const AddressPlan& plan) : topo_(topo), plan_(plan) {
    for (const auto& v : topo.vnodes()) ns_.push_back(std::make_unique<TestNetns>(v.name));
  }

  agent::PlumbingBatch Batch() const {
    agent::PlumbingBatch b;
    for (topology::LinkId l = 0; l < topo_.num_links(); ++l) {
      const auto& link = topo_.link(l);
      b.veths.push_back({ns_[link.a]->ref(), Iface(link.a, l).name, ns_[link.b]->ref(),
                         Iface(link.b, l).name, 0, "gepl:" + Prefix() + ":" + topo_.LinkName(l),
                         true});
    }
    for (VnodeId v = 0; v < topo_.num_vnodes(); ++v) {
      const auto& vp = plan_.vnodes[v];
      if (vp.bridge) {
        agent::BridgeSpec br{ns_[v]->ref(), "br0", {}, 0, "gepl:" + Prefix() + ":br", true};
        for (const auto& ip : vp.interfaces) br.ports.push_back(ip.name);
        b.bridges.push_back(br);
      }
      for (const auto& ip : vp.interfaces) {
        if (ip.address) {
          b.addresses.push_back({ns_[v]->ref(), ip.name, ip.address->ToString(), ip.prefix_len});
        }
      }
      if (vp.forwarding) b.forwarding.push_back(ns_[v]->ref());
      for (const auto& r : vp.routes) {
        b.routes.push_back({ns_[v]->ref(), r.dst.address.ToString(), r.dst.length,
                            r.gateway.ToString(), vp.interfaces[r.interface].name, 0});
      }
    }
    return b;
  }

  const TestNetns& ns(VnodeId v) const { return *ns_[v]; }
  std::string Address(VnodeId v) const { return plan_.vnodes[v].interfaces[0].address->ToString(); }

 private:
  const topology::InterfacePlan& Iface(VnodeId v, topology::LinkId l) const {
    for (const auto& ip : plan_.vnodes[v].interfaces) {
      if (ip.link == l) return ip;
    }
    return plan_.vnodes[v].interfaces.front();
  }

  const topology::Topology& topo_;
  const AddressPlan& plan_;
  std::vector<std::unique_ptr<TestNetns>> ns_;
};

VnodeId Add(topology::Topology& t, const std::string& name, VnodeKind kind) {
  topology::Vnode v;
  v.name = name;
  v.kind = kind;
  return *t.AddVnode(std::move(v));
}

void Join(topology::Topology& t, VnodeId a, VnodeId b) {
  topology::Link l;
  l.a = a;
  l.b = b;
  ASSERT_TRUE(t.AddLink(std::move(l)).ok());
}

class AddressingPlumbingRoot : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "needs root";
    auto p = agent::NewNetlinkPlumbing();
    ASSERT_TRUE(p.ok()) << p.status().ToString();
    plumbing_ = std::move(p).value();
  }
  std::unique_ptr<agent::Plumbing> plumbing_;
};

// h0 - r0 - r1 - r2 - r3 - r4 - h1: five routers, static routes from the plan.
TEST_F(AddressingPlumbingRoot, ChainOfFiveRouters) {
  topology::Topology t;
  VnodeId h0 = Add(t, "h0", VnodeKind::kHost);
  std::vector<VnodeId> r;
  for (int i = 0; i < 5; ++i) r.push_back(Add(t, "r" + std::to_string(i), VnodeKind::kRouter));
  VnodeId h1 = Add(t, "h1", VnodeKind::kHost);
  Join(t, h0, r[0]);
  for (int i = 0; i + 1 < 5; ++i) Join(t, r[i], r[i + 1]);
  Join(t, r[4], h1);
  auto plan = topology::PlanAddressing(t);
  ASSERT_TRUE(plan.ok()) << plan.status().ToString();

  Emulation emu(t, *plan);
  Status s = plumbing_->Apply(emu.Batch());
  ASSERT_TRUE(s.ok()) << s.ToString();

  const TestNetns& src = emu.ns(h0);
  const std::string dst = emu.Address(h1);
  CmdResult ping = src.Exec("ping -n -c1 -W2 " + dst);
  ASSERT_EQ(ping.code, 0) << ping.out;
  // The reply left h1 with TTL 64 and crossed five routers.
  EXPECT_NE(ping.out.find("ttl=59"), std::string::npos) << ping.out;
  // Reverse direction and a router-to-router probe.
  EXPECT_EQ(emu.ns(h1).Exec("ping -n -c1 -W2 " + emu.Address(h0)).code, 0);
  EXPECT_EQ(emu.ns(r[0]).Exec("ping -n -c1 -W2 " + emu.Address(r[4])).code, 0);
  // TTL 5 dies at the fifth router; 6 is enough.
  EXPECT_NE(src.Exec("ping -n -c1 -W2 -t 5 " + dst).code, 0);
  EXPECT_EQ(src.Exec("ping -n -c1 -W2 -t 6 " + dst).code, 0);
  // TTL 3 expires at r2, which says so from its address facing h0.
  CmdResult probe = src.Exec("ping -n -c1 -W2 -t 3 " + dst);
  std::string r2_addr = plan->vnodes[r[2]].interfaces[0].address->ToString();
  EXPECT_NE(probe.out.find("From " + r2_addr), std::string::npos) << probe.out;
  EXPECT_NE(probe.out.find("Time to live exceeded"), std::string::npos) << probe.out;
}

// A switch LAN (hosts a, b and router r on switch s) and a far host f behind r.
TEST_F(AddressingPlumbingRoot, SwitchLanBehindRouter) {
  topology::Topology t;
  VnodeId s = Add(t, "s", VnodeKind::kSwitch);
  VnodeId a = Add(t, "a", VnodeKind::kHost);
  VnodeId b = Add(t, "b", VnodeKind::kHost);
  VnodeId r = Add(t, "r", VnodeKind::kRouter);
  VnodeId f = Add(t, "f", VnodeKind::kHost);
  Join(t, a, s);
  Join(t, b, s);
  Join(t, r, s);
  Join(t, r, f);
  auto plan = topology::PlanAddressing(t);
  ASSERT_TRUE(plan.ok()) << plan.status().ToString();
  Emulation emu(t, *plan);
  Status st = plumbing_->Apply(emu.Batch());
  ASSERT_TRUE(st.ok()) << st.ToString();
  EXPECT_EQ(emu.ns(a).Exec("ping -n -c1 -W2 " + emu.Address(b)).code, 0);
  CmdResult far = emu.ns(a).Exec("ping -n -c1 -W2 " + emu.Address(f));
  EXPECT_EQ(far.code, 0) << far.out;
  EXPECT_NE(far.out.find("ttl=63"), std::string::npos) << far.out;
  EXPECT_EQ(emu.ns(f).Exec("ping -n -c1 -W2 " + emu.Address(b)).code, 0);
}

}  // namespace
}  // namespace gridemu

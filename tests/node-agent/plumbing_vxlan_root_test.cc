// Root tests of the VXLAN plumbing (plumbing_vxlan.h): two "pnode"
// namespaces joined by a veth underlay (10.250.0.1/24 and 10.250.0.2/24),
// each with a "vnode" namespace; a VXLAN segment between the pnodes carries
// the vnode-to-vnode link (10.251.0.0/31). Every namespace is named
// "gevx<pid>-..." and removed by RAII even when a test fails; interfaces live
// only inside those namespaces; traffic flows only between them.
#include <dirent.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "gridemu/node-agent/plumbing.h"
#include "gridemu/node-agent/plumbing_vxlan.h"

namespace gridemu::agent {
namespace {

const std::string& Prefix() {
  static const std::string p = "gevx" + std::to_string(getpid()) + "-";
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

// Removes namespaces of earlier runs of this test whose process is gone
// (only names of the form gevx<pid>-*, never anything else).
void SweepStale() {
  DIR* d = opendir("/run/netns");
  if (!d) return;
  std::vector<std::string> stale;
  while (dirent* e = readdir(d)) {
    std::string name = e->d_name;
    if (name.rfind("gevx", 0) != 0) continue;
    size_t dash = name.find('-');
    if (dash == std::string::npos || dash == 4) continue;
    std::string digits = name.substr(4, dash - 4);
    if (digits.find_first_not_of("0123456789") != std::string::npos) continue;
    pid_t pid = static_cast<pid_t>(std::stol(digits));
    if (kill(pid, 0) != 0 && errno == ESRCH) stale.push_back(name);
  }
  closedir(d);
  for (const auto& n : stale) Shell("ip netns del " + n);
}

// A network namespace made with `ip netns add` and deleted on destruction
// (or earlier, by Delete()).
class TestNetns {
 public:
  explicit TestNetns(const std::string& name) : name_(Prefix() + name) {
    CmdResult r = Shell("ip netns add " + name_);
    ok_ = r.code == 0;
    EXPECT_TRUE(ok_) << r.out;
  }
  ~TestNetns() { Delete(); }
  TestNetns(const TestNetns&) = delete;
  TestNetns& operator=(const TestNetns&) = delete;

  void Delete() {
    if (ok_) Shell("ip netns del " + name_);
    ok_ = false;
  }
  const std::string& name() const { return name_; }
  NetnsRef ref() const { return NetnsRef::AtPath("/run/netns/" + name_); }
  CmdResult Exec(const std::string& cmd) const {
    return Shell("ip netns exec " + name_ + " " + cmd);
  }
  bool Ping(const std::string& addr, const std::string& extra = "") const {
    return Exec("ping -n -c1 -W2 " + extra + " " + addr).code == 0;
  }
  uint64_t Counter(const std::string& ifname, const std::string& stat) const {
    CmdResult r = Exec("cat /sys/class/net/" + ifname + "/statistics/" + stat);
    return r.code == 0 ? std::stoull(r.out) : 0;
  }

 private:
  std::string name_;
  bool ok_ = false;
};

ino_t ThreadNetnsInode() {
  struct stat st {};
  stat("/proc/thread-self/ns/net", &st);
  return st.st_ino;
}

constexpr uint32_t kVni = 4242;

class VxlanRoot : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "needs root";
    SweepStale();
    home_inode_ = ThreadNetnsInode();
    auto p = NewNetlinkPlumbing();
    ASSERT_TRUE(p.ok()) << p.status().ToString();
    plumbing_ = std::move(p).value();
    auto v = NewNetlinkVxlanPlumbing();
    ASSERT_TRUE(v.ok()) << v.status().ToString();
    vxlan_ = std::move(v).value();
    pa_ = std::make_unique<TestNetns>("pa");
    pb_ = std::make_unique<TestNetns>("pb");
    va_ = std::make_unique<TestNetns>("va");
    vb_ = std::make_unique<TestNetns>("vb");
    // The underlay: a veth between the two pnodes.
    Status s = plumbing_->CreateVeth({pa_->ref(), "ul0", pb_->ref(), "ul0", 0, Tag("ul"), true});
    ASSERT_TRUE(s.ok()) << s.ToString();
    ASSERT_TRUE(plumbing_->AddAddress({pa_->ref(), "ul0", "10.250.0.1", 24}).ok());
    ASSERT_TRUE(plumbing_->AddAddress({pb_->ref(), "ul0", "10.250.0.2", 24}).ok());
    ASSERT_TRUE(pa_->Ping("10.250.0.2"));
  }
  void TearDown() override {
    if (geteuid() != 0) return;
    EXPECT_EQ(ThreadNetnsInode(), home_inode_) << "thread left in another namespace";
    va_.reset();
    vb_.reset();
    pa_.reset();
    pb_.reset();
  }
  std::string Tag(const std::string& what) const { return "gevx:" + Prefix() + ":" + what; }
  // The end of link `l` on pnode a (to vnode va) or b.
  VxlanSpec End(bool a, const std::string& l = "l1") const {
    VxlanSpec s;
    s.underlay_ns = (a ? pa_ : pb_)->ref();
    s.underlay_dev = "ul0";
    s.vni = kVni;
    s.local = a ? "10.250.0.1" : "10.250.0.2";
    s.remote = a ? "10.250.0.2" : "10.250.0.1";
    s.ns = (a ? va_ : vb_)->ref();
    s.name = "eth0";
    s.tag = Tag(l);
    return s;
  }
  void Link(uint32_t mtu = 0) {
    VxlanSpec a = End(true), b = End(false);
    a.mtu = b.mtu = mtu;
    Status s = vxlan_->CreateVxlan(a);
    ASSERT_TRUE(s.ok()) << s.ToString();
    s = vxlan_->CreateVxlan(b);
    ASSERT_TRUE(s.ok()) << s.ToString();
    ASSERT_TRUE(plumbing_->AddAddress({va_->ref(), "eth0", "10.251.0.0", 31}).ok());
    ASSERT_TRUE(plumbing_->AddAddress({vb_->ref(), "eth0", "10.251.0.1", 31}).ok());
  }
  // Interfaces of the namespace tagged by this test.
  size_t Tagged(const TestNetns& ns) const {
    auto l = plumbing_->ListTagged(ns.ref(), Tag(""));
    EXPECT_TRUE(l.ok()) << l.status().ToString();
    return l.ok() ? l->size() : 0;
  }

  std::unique_ptr<Plumbing> plumbing_;
  std::unique_ptr<VxlanPlumbing> vxlan_;
  std::unique_ptr<TestNetns> pa_, pb_, va_, vb_;
  ino_t home_inode_ = 0;
};

TEST(VxlanMtu, InnerMtuIsUnderlayLess50) {
  EXPECT_EQ(*VxlanInnerMtu(1500), 1450u);
  EXPECT_EQ(*VxlanInnerMtu(9000), 8950u);
  EXPECT_EQ(*VxlanInnerMtu(118), 68u);
  EXPECT_EQ(VxlanInnerMtu(117).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(kVxlanIpv4OverheadBytes, 50u);
}

TEST_F(VxlanRoot, VnodesOnTwoPnodesPingOverVxlan) {
  const uint64_t under_before = pa_->Counter("ul0", "tx_packets");
  Link();
  EXPECT_TRUE(va_->Ping("10.251.0.1"));
  EXPECT_TRUE(vb_->Ping("10.251.0.0"));
  // The traffic rode the underlay (ARP, echo request: at least 2 frames out of pa).
  EXPECT_GE(pa_->Counter("ul0", "tx_packets"), under_before + 2);

  // The vnode's interface: a VXLAN device with the MTU lowered by 50 bytes.
  auto listed = vxlan_->ListVxlan(va_->ref(), Tag(""));
  ASSERT_TRUE(listed.ok()) << listed.status().ToString();
  ASSERT_EQ(listed->size(), 1u);
  const VxlanInfo& v = (*listed)[0];
  EXPECT_EQ(v.link.name, "eth0");
  EXPECT_EQ(v.link.kind, "vxlan");
  EXPECT_EQ(v.link.alias, Tag("l1"));
  EXPECT_EQ(v.link.mtu, 1450u);
  EXPECT_TRUE(v.link.up);
  EXPECT_EQ(v.vni, kVni);
  EXPECT_EQ(v.local, "10.250.0.1");
  EXPECT_EQ(v.remote, "10.250.0.2");
  EXPECT_EQ(v.dst_port, kVxlanDefaultPort);
  EXPECT_GT(v.underlay_ifindex, 0);
  CmdResult d = va_->Exec("ip -d link show eth0");
  EXPECT_NE(d.out.find("vxlan id 4242"), std::string::npos) << d.out;
  EXPECT_NE(d.out.find("dstport 4789"), std::string::npos) << d.out;
  EXPECT_NE(d.out.find("mtu 1450"), std::string::npos) << d.out;
  // Full-size packets pass without fragmentation; one byte more does not.
  EXPECT_TRUE(va_->Ping("10.251.0.1", "-M do -s 1422"));
  EXPECT_FALSE(va_->Ping("10.251.0.1", "-M do -s 1423"));
  // No IPv6 link-local address on the emulated link.
  EXPECT_EQ(va_->Exec("ip -6 addr show dev eth0").out, "");
  // Nothing of the link stayed in the pnode namespaces: only the underlay veth.
  EXPECT_EQ(Tagged(*pa_), 1u);
  EXPECT_EQ(Tagged(*pb_), 1u);
  auto pl = vxlan_->ListVxlan(pa_->ref(), Tag(""));
  ASSERT_TRUE(pl.ok());
  EXPECT_TRUE(pl->empty());

  // Cleanup by tag leaves nothing.
  auto n = vxlan_->DeleteTagged(va_->ref(), Tag(""));
  ASSERT_TRUE(n.ok()) << n.status().ToString();
  EXPECT_EQ(*n, 1u);
  n = vxlan_->DeleteTagged(vb_->ref(), Tag(""));
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(*n, 1u);
  EXPECT_EQ(Tagged(*va_), 0u);
  EXPECT_EQ(Tagged(*vb_), 0u);
  EXPECT_FALSE(va_->Ping("10.251.0.1"));
  EXPECT_EQ(va_->Exec("ip -o link show").out.find("eth0"), std::string::npos);
  n = plumbing_->DeleteTagged(pa_->ref(), Tag(""));
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(*n, 1u);  // the underlay veth
  EXPECT_EQ(Tagged(*pa_), 0u);
  EXPECT_EQ(Tagged(*pb_), 0u);
  // The VNI is free again on both pnodes' underlays (the UDP sockets are gone).
  EXPECT_EQ(pa_->Exec("cat /proc/net/udp").out.find(":12B5 "), std::string::npos);
}

TEST_F(VxlanRoot, ExplicitMtuAndJumboUnderlay) {
  ASSERT_EQ(pa_->Exec("ip link set ul0 mtu 9000").code, 0);
  ASSERT_EQ(pb_->Exec("ip link set ul0 mtu 9000").code, 0);
  Link();  // default: 9000 - 50
  auto l = vxlan_->ListVxlan(va_->ref(), Tag(""));
  ASSERT_TRUE(l.ok());
  ASSERT_EQ(l->size(), 1u);
  EXPECT_EQ((*l)[0].link.mtu, 8950u);
  EXPECT_TRUE(va_->Ping("10.251.0.1", "-M do -s 8922"));
  ASSERT_TRUE(vxlan_->DeleteTagged(va_->ref(), Tag("")).ok());
  // A smaller MTU is kept; a larger one is refused before anything is made.
  // (And IPv6 link-local addresses when asked for.)
  VxlanSpec s = End(true);
  s.mtu = 1400;
  s.ipv6_link_local = true;
  ASSERT_TRUE(vxlan_->CreateVxlan(s).ok());
  l = vxlan_->ListVxlan(va_->ref(), Tag(""));
  ASSERT_TRUE(l.ok());
  ASSERT_EQ(l->size(), 1u);
  EXPECT_EQ((*l)[0].link.mtu, 1400u);
  if (va_->Exec("test -e /proc/net/if_inet6").code == 0) {
    EXPECT_NE(va_->Exec("ip -6 addr show dev eth0").out.find("fe80::"), std::string::npos);
  }
  ASSERT_TRUE(vxlan_->DeleteTagged(va_->ref(), Tag("")).ok());
  s.mtu = 8951;
  Status st = vxlan_->CreateVxlan(s);
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument) << st.ToString();
  EXPECT_NE(st.message().find("above 8950"), std::string::npos) << st.message();
  EXPECT_EQ(Tagged(*pa_), 1u);
  EXPECT_EQ(Tagged(*va_), 0u);
}

TEST_F(VxlanRoot, ErrorsLeaveNothingBehind) {
  VxlanSpec s = End(true);
  s.remote = "239.1.1.1";
  EXPECT_EQ(vxlan_->CreateVxlan(s).code(), StatusCode::kInvalidArgument);
  s = End(true);
  s.vni = 1u << 24;
  EXPECT_EQ(vxlan_->CreateVxlan(s).code(), StatusCode::kInvalidArgument);
  s = End(true);
  s.tag = "";
  EXPECT_EQ(vxlan_->CreateVxlan(s).code(), StatusCode::kInvalidArgument);
  s = End(true);
  s.underlay_dev = "nosuch0";
  Status st = vxlan_->CreateVxlan(s);
  EXPECT_EQ(st.code(), StatusCode::kNotFound) << st.ToString();
  s = End(true);
  s.ns = NetnsRef::AtPath("/run/netns/" + Prefix() + "absent");
  EXPECT_EQ(vxlan_->CreateVxlan(s).code(), StatusCode::kNotFound);

  // The name is taken in the vnode's namespace.
  ASSERT_TRUE(
      plumbing_->CreateVeth({va_->ref(), "eth0", vb_->ref(), "x0", 0, Tag("v"), true}).ok());
  st = vxlan_->CreateVxlan(End(true));
  EXPECT_EQ(st.code(), StatusCode::kAlreadyExists) << st.ToString();
  ASSERT_TRUE(plumbing_->DeleteTagged(va_->ref(), Tag("v")).ok());

  // The VNI is in use on that underlay.
  ASSERT_TRUE(vxlan_->CreateVxlan(End(true)).ok());
  s = End(true, "l2");
  s.name = "eth1";
  st = vxlan_->CreateVxlan(s);
  EXPECT_EQ(st.code(), StatusCode::kAlreadyExists) << st.ToString();
  EXPECT_NE(st.message().find("VNI 4242"), std::string::npos) << st.message();
  // Another VNI is fine.
  s.vni = kVni + 1;
  st = vxlan_->CreateVxlan(s);
  EXPECT_TRUE(st.ok()) << st.ToString();
  EXPECT_EQ(Tagged(*va_), 2u);

  // Nothing stayed in the underlay namespace but the underlay itself.
  EXPECT_EQ(Tagged(*pa_), 1u);
  EXPECT_EQ(pa_->Exec("ip -o link show type vxlan").out, "");
  auto n = vxlan_->DeleteTagged(va_->ref(), Tag(""));
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(*n, 2u);
}

TEST_F(VxlanRoot, LeftoverOfAnInterruptedCreateIsReplaced) {
  // A crash between "create" and "move" leaves the tagged temporary device
  // in the underlay namespace: cleanup by tag finds it, and a retry replaces it.
  char tmp[32];
  std::snprintf(tmp, sizeof tmp, "gvx%06x%04x", kVni, kVxlanDefaultPort);
  ASSERT_EQ(pa_->Exec(std::string("ip link add ") + tmp +
                      " type vxlan id 4242 local 10.250.0.1 remote 10.250.0.2 dstport 4789")
                .code,
            0);
  ASSERT_EQ(pa_->Exec(std::string("ip link set ") + tmp + " alias " + Tag("l1")).code, 0);
  EXPECT_EQ(Tagged(*pa_), 2u);
  Link();
  EXPECT_TRUE(va_->Ping("10.251.0.1"));
  EXPECT_EQ(Tagged(*pa_), 1u);
  // A leftover with another tag is not ours: it stays and the create fails.
  ASSERT_TRUE(vxlan_->DeleteTagged(va_->ref(), Tag("")).ok());
  ASSERT_EQ(pa_->Exec(std::string("ip link add ") + tmp +
                      " type vxlan id 4242 local 10.250.0.1 remote 10.250.0.2 dstport 4789")
                .code,
            0);
  ASSERT_EQ(pa_->Exec(std::string("ip link set ") + tmp + " alias " + Tag("other")).code, 0);
  EXPECT_EQ(vxlan_->CreateVxlan(End(true)).code(), StatusCode::kAlreadyExists);
  auto n = vxlan_->DeleteTagged(pa_->ref(), Tag("other"));
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(*n, 1u);
}

TEST_F(VxlanRoot, DeletingANamespaceTakesTheDeviceAlong) {
  Link();
  ASSERT_TRUE(va_->Ping("10.251.0.1"));
  // The vnode goes: its end goes with it, and the VNI is free again on pa
  // (once the kernel's asynchronous namespace cleanup has run).
  va_->Delete();
  TestNetns va2("va2");
  VxlanSpec s = End(true);
  s.ns = va2.ref();
  Status st = vxlan_->CreateVxlan(s);
  for (int i = 0; i < 100 && st.code() == StatusCode::kAlreadyExists; ++i) {
    usleep(20'000);
    st = vxlan_->CreateVxlan(s);
  }
  EXPECT_TRUE(st.ok()) << st.ToString();
  EXPECT_EQ(pa_->Exec("ip -o link show type vxlan").out, "");
  // The pnode (underlay) goes: the kernel removes its VXLAN devices wherever
  // they were moved.
  EXPECT_EQ(Tagged(*vb_), 1u);
  pb_->Delete();
  for (int i = 0; i < 50 && Tagged(*vb_) != 0; ++i) usleep(20'000);  // netns exit is async
  EXPECT_EQ(Tagged(*vb_), 0u);
  ASSERT_TRUE(vxlan_->DeleteTagged(va2.ref(), Tag("")).ok());
  EXPECT_EQ(Tagged(va2), 0u);
}

}  // namespace
}  // namespace gridemu::agent

// Root test of cross-pnode (VXLAN) links in the ShardApplier (shard_applier.h):
// two "pnodes" in one process. Each pnode is a network namespace
// ("gvxt<pid>p1", "gvxt<pid>p2") with an underlay interface eth0 on a test
// bridge (in "gvxt<pid>br"), addresses 172.31.77.1/.2 (a /24 nobody else here
// uses). Each pnode has its own ShardApplier (underlay namespace = its pnode
// namespace) and its own VnodeRuntime (prefix "gvxt<pid>a" / "gvxt<pid>b");
// both share one Shaper (one delay-line engine per process). One experiment is
// deployed as two shards: vnode h1 on pnode 1, h2 on pnode 2, and the link
// h1--h2 sent to both with its tunnel (VNI, the other pnode's address, the
// local end). Checked: the VXLAN interface (MTU 1450 = underlay 1500 - 50,
// tag), ping through it, the RTT of 20 ms each way (userspace backend: the
// sender half rate-limits, the receiver half delays), the rate with iperf3, a
// run-time change of the delay applied on both pnodes, link down/up, the local
// halves' counters, adoption by a restarted pnode-1 applier, a failed deploy that leaves nothing,
// and a teardown that leaves no VXLAN device, namespace or rule.
//
// Every object carries this process's prefix; the fixture removes everything
// in TearDown, also on failure. Traffic only between the test's namespaces.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <thread>

#include "gridemu/node-agent/agent_convert.h"
#include "gridemu/node-agent/netns_runtime.h"
#include "gridemu/node-agent/shard_applier.h"
#include "gridemu/netshape/capabilities.h"
#include "gridemu/netshape/shaper.h"

namespace gridemu::agent {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using namespace std::chrono_literals;

struct Cmd {
  int code = -1;
  std::string out;
};

Cmd Shell(const std::string& cmd) {
  Cmd r;
  FILE* f = ::popen((cmd + " 2>&1").c_str(), "r");
  if (f == nullptr) return r;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) r.out.append(buf, n);
  int st = ::pclose(f);
  r.code = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return r;
}

std::string Base() { return "gvxt" + std::to_string(::getpid()); }

std::string Errors(const std::vector<ShardObjectError>& errs) {
  std::string out;
  for (const auto& e : errs) out += e.object + ": " + e.message + "\n";
  return out;
}

constexpr uint64_t kRateBps = 20'000'000;

// The shard of pnode `pnode` (1 or 2): its vnode and the tunnel link h1--h2
// with `vni`, 20 ms and kRateBps each way.
v1::DeployShard Shard(const std::string& exp, int pnode, uint32_t vni) {
  v1::DeployShard s;
  s.set_experiment_id(exp);
  s.set_generation(1);
  s.set_shaping_backend("userspace");
  v1::VnodeSpec* v = s.add_vnodes();
  v->set_name(pnode == 1 ? "h1" : "h2");
  v->set_kind("host");
  v->set_runtime("netns");
  v1::LinkSpec* l = s.add_links();
  l->set_name("h1--h2");
  l->mutable_a()->set_vnode("h1");
  l->mutable_a()->set_ifname("eth0");
  l->mutable_a()->set_address("10.77.0.0/31");
  l->mutable_b()->set_vnode("h2");
  l->mutable_b()->set_ifname("eth0");
  l->mutable_b()->set_address("10.77.0.1/31");
  LinkProfile p;
  p.delay = 20ms;
  p.rate_bps = kRateBps;
  *l->mutable_forward() = ProfileToProto(p);
  *l->mutable_reverse() = ProfileToProto(p);
  l->mutable_tunnel()->set_vni(vni);
  l->mutable_tunnel()->set_remote_address(pnode == 1 ? "172.31.77.2" : "172.31.77.1");
  l->mutable_tunnel()->set_local_end(pnode == 1 ? "a" : "b");
  v1::HostEntry* h = s.add_hosts();
  h->set_name("h2");
  h->add_addresses("10.77.0.1");
  return s;
}

class VxlanShardRoot : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root (creates namespaces, VXLAN devices)";
    static int counter = 0;
    exp_ = "x" + std::to_string(counter++);
    ns_[0] = Base() + "p1";
    ns_[1] = Base() + "p2";
    br_ = Base() + "br";
    // The underlay: two pnode namespaces on a bridge.
    const std::string setup =
        "set -e; ip netns add " + ns_[0] + "; ip netns add " + ns_[1] + "; ip netns add " + br_ +
        "; ip -n " + br_ + " link add br0 type bridge; ip -n " + br_ + " link set br0 up" +
        "; ip -n " + br_ + " link add u1 type veth peer name eth0 netns " + ns_[0] + "; ip -n " +
        br_ + " link add u2 type veth peer name eth0 netns " + ns_[1] + "; ip -n " + br_ +
        " link set u1 master br0 up; ip -n " + br_ + " link set u2 master br0 up" + "; ip -n " +
        ns_[0] + " addr add 172.31.77.1/24 dev eth0; ip -n " + ns_[0] +
        " link set eth0 up; ip -n " + ns_[0] + " link set lo up" + "; ip -n " + ns_[1] +
        " addr add 172.31.77.2/24 dev eth0; ip -n " + ns_[1] + " link set eth0 up; ip -n " +
        ns_[1] + " link set lo up";
    setup_done_ = true;
    Cmd c = Shell(setup);
    ASSERT_EQ(c.code, 0) << c.out;
    static Result<netshape::Capabilities> caps = netshape::ProbeCapabilities();
    ASSERT_TRUE(caps.ok()) << caps.status().ToString();
    netshape::ShaperOptions so;
    so.capabilities = *caps;
    so.backend = netshape::BackendChoice::kUserspace;
    auto shaper = netshape::Shaper::Create(so);
    ASSERT_TRUE(shaper.ok()) << shaper.status().ToString();
    shaper_ = std::move(*shaper);
    for (int i = 0; i < 2; ++i) {
      RuntimeOptions ro;
      ro.prefix = Prefix(i);
      Result<std::unique_ptr<NetnsRuntime>> rt = NetnsRuntime::Open(ro);
      ASSERT_TRUE(rt.ok()) << rt.status().ToString();
      rt_[i] = std::move(*rt);
      ShardApplierOptions ao;
      ao.prefix = Prefix(i);
      records_[i] = NewFileShardRecords("/run/" + Prefix(i) + "-agent");
      ao.default_output_dir = "/run/" + Prefix(i) + "-agent/out";
      ao.local_address = i == 0 ? "172.31.77.1" : "172.31.77.2";
      ao.underlay_dev = "eth0";
      ao.underlay_ns = NetnsRef::AtPath("/run/netns/" + ns_[i]);
      applier_[i] = std::make_unique<ShardApplier>(
          KernelApplierDeps(rt_[i].get(), shaper_.get(), records_[i].get()), ao);
    }
  }

  void TearDown() override {
    if (!iperf_pidfile_.empty()) {
      std::ifstream f(iperf_pidfile_);
      int pid = 0;
      if (f >> pid && pid > 1) ::kill(pid, SIGTERM);
      ::unlink(iperf_pidfile_.c_str());
    }
    for (int i = 0; i < 2; ++i) {
      if (applier_[i] != nullptr) {
        TeardownReport rep = applier_[i]->Teardown(exp_);
        EXPECT_TRUE(rep.errors.empty()) << Errors(rep.errors);
        applier_[i].reset();
      }
      if (rt_[i] != nullptr) {
        EXPECT_TRUE(rt_[i]->CleanupAll().ok());
        rt_[i].reset();
      }
      Shell("rm -rf /run/" + Prefix(i) + "-agent /tmp/" + Prefix(i) + "-out");
    }
    shaper_.reset();
    if (setup_done_) {
      for (const std::string& n : {ns_[0], ns_[1], br_}) Shell("ip netns del " + n);
      EXPECT_EQ(Shell("ip netns list | grep -c '^" + Base() + "'").out, "0\n");
    }
  }

  static std::string Prefix(int i) { return Base() + (i == 0 ? "a" : "b"); }
  // The netns path of vnode `v` of pnode i.
  std::string VnodeNs(int i, const std::string& v) {
    Result<VnodeInfo> info = rt_[i]->Info(VnodeRef{exp_, v});
    return info.ok() ? info->netns_path : "/nonexistent";
  }
  Cmd In(int i, const std::string& v, const std::string& cmd) {
    return Shell("nsenter --net=" + VnodeNs(i, v) + " " + cmd);
  }
  // The netns path of pnode i's wire namespace (shard_plan.h ShardPlan::wire).
  std::string WireNs(int i) { return VnodeNs(i, ShardPlan::kWireVnode); }
  // Average RTT (ms) of pings from h1 to h2; -1 when ping fails.
  double Rtt(int n = 8) {
    Cmd c = In(0, "h1", "ping -n -q -c " + std::to_string(n) + " -i 0.1 -W 2 10.77.0.1");
    size_t p = c.out.find("rtt min/avg/max/mdev = ");
    if (c.code != 0 || p == std::string::npos) return -1;
    double mn = 0, avg = 0;
    std::sscanf(c.out.c_str() + p, "rtt min/avg/max/mdev = %lf/%lf", &mn, &avg);
    return avg;
  }
  void DeployBoth(uint32_t vni) {
    for (int i = 0; i < 2; ++i) {
      DeployReport rep = applier_[i]->Deploy(Shard(exp_, i + 1, vni));
      ASSERT_TRUE(rep.ok) << "pnode " << i + 1 << ": " << Errors(rep.errors);
      EXPECT_EQ(rep.done, rep.total);
    }
  }
  // Tagged VXLAN devices (of any of our prefixes) in a pnode namespace.
  std::string UnderlayVxlans(int i) {
    return Shell("ip -n " + ns_[i] + " -d -o link show type vxlan").out;
  }

  std::string exp_, ns_[2], br_, iperf_pidfile_;
  bool setup_done_ = false;
  std::unique_ptr<netshape::Shaper> shaper_;
  std::unique_ptr<NetnsRuntime> rt_[2];
  std::unique_ptr<ShardRecords> records_[2];
  std::unique_ptr<ShardApplier> applier_[2];
};

TEST_F(VxlanShardRoot, PingRateChangesAndTeardown) {
  ASSERT_NO_FATAL_FAILURE(DeployBoth(4242));
  // The local end is the vnode's interface (MTU 1500 - 50), a veth to the pnode's wire
  // namespace, where a bridge joins it to the VXLAN device of the link, tagged.
  for (int i = 0; i < 2; ++i) {
    Cmd link = In(i, i == 0 ? "h1" : "h2", "ip -d -o link show eth0");
    ASSERT_EQ(link.code, 0) << link.out;
    EXPECT_THAT(link.out, HasSubstr("mtu 1450 "));
    EXPECT_THAT(link.out, HasSubstr("alias " + Prefix(i) + ":" + exp_ + ":h1--h2"));
    Cmd vx = Shell("nsenter --net=" + WireNs(i) + " ip -d -o link show l0x");
    ASSERT_EQ(vx.code, 0) << vx.out;
    EXPECT_THAT(vx.out, HasSubstr("master l0 "));
    EXPECT_THAT(vx.out, HasSubstr("vxlan id 4242 remote " +
                                  std::string(i == 0 ? "172.31.77.2" : "172.31.77.1")));
    // Nothing of it stays in the underlay namespace.
    EXPECT_EQ(UnderlayVxlans(i), "");
  }
  // The sender halves (HTB) are on each vnode's egress, the receiver halves
  // (delay line) on the wire namespace's bridge, where the receiver cannot see them.
  EXPECT_THAT(In(0, "h1", "tc qdisc show dev eth0").out, HasSubstr("htb 1:"));
  EXPECT_THAT(Shell("nsenter --net=" + WireNs(1) + " iptables-save -t raw").out,
              HasSubstr("gridemu:" + exp_ + ":h1--h2:fwd"));
  EXPECT_THAT(Shell("nsenter --net=" + WireNs(0) + " iptables-save -t raw").out,
              HasSubstr("gridemu:" + exp_ + ":h1--h2:rev"));
  EXPECT_THAT(In(1, "h2", "iptables-save").out, Not(HasSubstr("gridemu:")));

  // 20 ms each way: 40 ms user-to-user RTT.
  double rtt = Rtt();
  EXPECT_GT(rtt, 39.0);
  EXPECT_LT(rtt, 46.0);

  // The rate through the tunnel (h1 -> h2: forward).
  iperf_pidfile_ = "/tmp/" + Base() + "-iperf.pid";
  Cmd srv = In(1, "h2", "iperf3 -s -1 -D -p 5277 --pidfile " + iperf_pidfile_);
  ASSERT_EQ(srv.code, 0) << srv.out;
  std::this_thread::sleep_for(300ms);
  Cmd cli = In(0, "h1", "iperf3 -c 10.77.0.1 -p 5277 -t 4 -J");
  ASSERT_EQ(cli.code, 0) << cli.out;
  size_t p = cli.out.find("\"sum_received\"");
  ASSERT_NE(p, std::string::npos) << cli.out;
  p = cli.out.find("\"bits_per_second\":", p);
  ASSERT_NE(p, std::string::npos) << cli.out;
  const double bps = std::atof(cli.out.c_str() + p + 18);
  std::printf("iperf3 through the tunnel: %.2f Mbit/s (rate %.0f Mbit/s), RTT %.2f ms\n", bps / 1e6,
              kRateBps / 1e6, rtt);
  EXPECT_GT(bps, 0.7 * kRateBps);
  EXPECT_LT(bps, 1.05 * kRateBps);

  // Counters of the local halves: pnode 1 sends forward (HTB) and receives
  // reverse (delay line); pnode 2 the other way round.
  for (int i = 0; i < 2; ++i) {
    v1::MetricsBatch mb = applier_[i]->CollectMetrics(exp_);
    ASSERT_EQ(mb.links_size(), 2) << "pnode " << i + 1;
    for (const v1::LinkCounters& c : mb.links()) {
      const bool sends = (c.direction() == "forward") == (i == 0);
      EXPECT_GT(c.tx_packets(), 0u) << "pnode " << i + 1 << " " << c.direction();
      if (sends) {
        EXPECT_EQ(c.delayed(), 0u) << "pnode " << i + 1 << " " << c.direction();
      } else {
        EXPECT_GT(c.delayed(), 0u) << "pnode " << i + 1 << " " << c.direction();
      }
    }
  }

  // A run-time change sent to both pnodes (as the controller does): 5 ms each
  // way, then 10 ms RTT.
  v1::ApplyEvent ev;
  ev.set_event_id("d5");
  LinkProfile d5;
  d5.delay = 5ms;
  ev.mutable_link_set()->set_link("h1--h2");
  *ev.mutable_link_set()->mutable_forward() = ProfileToProto(d5);
  *ev.mutable_link_set()->mutable_reverse() = ProfileToProto(d5);
  for (int i = 0; i < 2; ++i) {
    Status st = applier_[i]->ApplyEvent(exp_, ev);
    ASSERT_TRUE(st.ok()) << st.ToString();
  }
  rtt = Rtt();
  EXPECT_GT(rtt, 9.5);
  EXPECT_LT(rtt, 15.0);

  // Link down on pnode 1 (its end only), then up again.
  v1::ApplyEvent down;
  down.set_event_id("down");
  down.mutable_link_state()->set_link("h1--h2");
  down.mutable_link_state()->set_up(false);
  ASSERT_TRUE(applier_[0]->ApplyEvent(exp_, down).ok());
  EXPECT_EQ(Rtt(2), -1);
  down.mutable_link_state()->set_up(true);
  ASSERT_TRUE(applier_[0]->ApplyEvent(exp_, down).ok());
  EXPECT_GT(Rtt(), 9.5);

  // An agent restart on pnode 1: a new applier adopts the experiment from its
  // record and shapes its halves again with the recorded profiles: reverse
  // (received on pnode 1) back to 20 ms, forward still 5 ms at pnode 2.
  {
    ShardApplierOptions ao;
    ao.prefix = Prefix(0);
    ao.default_output_dir = "/run/" + Prefix(0) + "-agent/out";
    ao.local_address = "172.31.77.1";
    ao.underlay_dev = "eth0";
    ao.underlay_ns = NetnsRef::AtPath("/run/netns/" + ns_[0]);
    applier_[0].reset();  // its shaping goes, the vnode and its tunnel stay
    applier_[0] = std::make_unique<ShardApplier>(
        KernelApplierDeps(rt_[0].get(), shaper_.get(), records_[0].get()), ao);
    Status st = applier_[0]->Adopt(exp_);
    ASSERT_TRUE(st.ok()) << st.ToString();
    rtt = Rtt();
    EXPECT_GT(rtt, 24.5);
    EXPECT_LT(rtt, 30.0);
    EXPECT_THAT(In(0, "h1", "tc qdisc show dev eth0").out, HasSubstr("htb 1:"));
  }

  // Teardown leaves nothing: no vnode namespace, no VXLAN device, no rule.
  const std::string h1ns = VnodeNs(0, "h1");
  for (int i = 0; i < 2; ++i) {
    TeardownReport rep = applier_[i]->Teardown(exp_);
    EXPECT_TRUE(rep.errors.empty()) << Errors(rep.errors);
    EXPECT_EQ(rep.vnodes_removed, 1u);
    Result<Leftovers> left = rt_[i]->ListLeftovers(exp_);
    ASSERT_TRUE(left.ok());
    EXPECT_TRUE(left->empty()) << left->ToString();
    EXPECT_EQ(UnderlayVxlans(i), "");
    EXPECT_THAT(Shell("ip netns exec " + ns_[i] + " iptables-save").out,
                Not(HasSubstr("gridemu:")));
  }
  EXPECT_NE(::access(h1ns.c_str(), F_OK), 0) << h1ns;
  EXPECT_EQ(Shell("ip netns list | grep -c '^" + Prefix(0) + "-\\|^" + Prefix(1) + "-'").out,
            "0\n");
}

// A VNI already taken in the underlay namespace: the deploy fails, names the
// link, and leaves nothing behind (no vnode, no device, no record).
// Loss and jitter across pnodes, as on a local link: each is applied once,
// by the receiving pnode's delay line (the forward direction's on pnode 2).
TEST_F(VxlanShardRoot, LossAndJitterAcrossPnodes) {
  ASSERT_NO_FATAL_FAILURE(DeployBoth(4244));
  v1::ApplyEvent ev;
  ev.set_event_id("impair");
  LinkProfile fwd;
  fwd.delay = 10ms;
  fwd.jitter = 4ms;
  fwd.delay_distribution = DelayDistribution::kUniform;
  fwd.loss = 0.10;
  LinkProfile rev;
  rev.delay = 10ms;
  rev.jitter = 0ms;
  ev.mutable_link_set()->set_link("h1--h2");
  *ev.mutable_link_set()->mutable_forward() = ProfileToProto(fwd);
  *ev.mutable_link_set()->mutable_reverse() = ProfileToProto(rev);
  for (int i = 0; i < 2; ++i) {
    Status st = applier_[i]->ApplyEvent(exp_, ev);
    ASSERT_TRUE(st.ok()) << st.ToString();
  }
  // 1,000 probes: only the forward direction drops, 10 %; the 95 % binomial
  // interval is 10 % +- 1.9 % (widened to +- 3 %).
  Cmd c = In(0, "h1", "ping -n -q -c 1000 -i 0.005 -W 1 10.77.0.1");
  size_t p = c.out.find("packets transmitted, ");
  ASSERT_NE(p, std::string::npos) << c.out;
  int sent = 0, received = 0;
  std::sscanf(c.out.c_str() + c.out.rfind('\n', p) + 1, "%d packets transmitted, %d received",
              &sent, &received);
  ASSERT_EQ(sent, 1000) << c.out;
  const double loss = 1.0 - received / 1000.0;
  // Uniform jitter of +-4 ms: a standard deviation of 4/sqrt(3) = 2.31 ms
  // (the reverse direction adds none); ping's mdev is that deviation.
  double mn = 0, avg = 0, mx = 0, mdev = 0;
  p = c.out.find("rtt min/avg/max/mdev = ");
  ASSERT_NE(p, std::string::npos) << c.out;
  std::sscanf(c.out.c_str() + p, "rtt min/avg/max/mdev = %lf/%lf/%lf/%lf", &mn, &avg, &mx, &mdev);
  std::printf("across pnodes: loss %.1f %% (10 %% set), RTT avg %.2f ms (20 set), sd %.2f ms "
              "(2.31 expected)\n",
              loss * 100, avg, mdev);
  EXPECT_GT(loss, 0.07);
  EXPECT_LT(loss, 0.13);
  EXPECT_GT(avg, 19.5);
  EXPECT_LT(avg, 23.0);
  EXPECT_GT(mdev, 1.8);
  EXPECT_LT(mdev, 3.0);
  EXPECT_GT(mn, 15.5);  // 20 ms - 4 ms at the least
}

TEST_F(VxlanShardRoot, FailedDeployLeavesNothing) {
  Cmd c = Shell("ip -n " + ns_[0] + " link add " + Base() +
                "v type vxlan id 4343 dstport 4789 local 172.31.77.1 remote 172.31.77.9");
  ASSERT_EQ(c.code, 0) << c.out;
  DeployReport rep = applier_[0]->Deploy(Shard(exp_, 1, 4343));
  EXPECT_FALSE(rep.ok);
  EXPECT_THAT(Errors(rep.errors), HasSubstr("link h1--h2"));
  EXPECT_THAT(Errors(rep.errors), HasSubstr("VNI 4343"));
  EXPECT_TRUE(applier_[0]->Experiments().empty());
  Result<Leftovers> left = rt_[0]->ListLeftovers(exp_);
  ASSERT_TRUE(left.ok());
  EXPECT_TRUE(left->empty()) << left->ToString();
  // Only the test's own device is there.
  const std::string vx = UnderlayVxlans(0);
  EXPECT_THAT(vx, HasSubstr(Base() + "v"));
  EXPECT_THAT(vx, Not(HasSubstr("alias")));
  EXPECT_NE(::access(("/run/" + Prefix(0) + "-agent/" + exp_ + ".shard").c_str(), F_OK), 0);
  // A shard without an underlay address is refused by the check.
  ShardApplierOptions ao;
  ao.prefix = Prefix(0);
  std::unique_ptr<ShardRecords> none = NewFileShardRecords("");
  ShardApplier bare(KernelApplierDeps(rt_[0].get(), shaper_.get(), none.get()), ao);
  rep = bare.Deploy(Shard(exp_, 1, 4344));
  EXPECT_FALSE(rep.ok);
  EXPECT_THAT(Errors(rep.errors), HasSubstr("no underlay address"));
}

}  // namespace
}  // namespace gridemu::agent

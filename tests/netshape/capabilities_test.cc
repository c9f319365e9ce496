#include "gridemu/netshape/capabilities.h"

#include <gtest/gtest.h>

namespace gridemu::netshape {
namespace {
using namespace std::chrono_literals;

Capabilities All() {
  Capabilities c;
  c.htb = c.netem = c.nfqueue = c.iptables = c.ip6tables = true;
  return c;
}

Capabilities NoNetem() {  // this workplace's machines
  Capabilities c = All();
  c.netem = false;
  c.notes = "netem: Specified qdisc kind is unknown";
  return c;
}

TEST(NetshapeSelectBackend, AutoPrefersNetem) {
  EXPECT_EQ(*SelectBackend(BackendChoice::kAuto, All()), Backend::kNetem);
  EXPECT_EQ(*SelectBackend(BackendChoice::kAuto, NoNetem()), Backend::kUserspace);
  Capabilities none;
  none.notes = "everything is missing";
  auto r = SelectBackend(BackendChoice::kAuto, none);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kUnavailable);
  EXPECT_EQ(r.status().message(), "no shaping backend works on this kernel: everything is missing");
}

TEST(NetshapeSelectBackend, ForcedIsHonoured) {
  EXPECT_EQ(*SelectBackend(BackendChoice::kNetem, NoNetem()), Backend::kNetem);
  EXPECT_EQ(*SelectBackend(BackendChoice::kUserspace, All()), Backend::kUserspace);
  EXPECT_EQ(*ParseBackendChoice("auto"), BackendChoice::kAuto);
  EXPECT_EQ(ParseBackendChoice("ebpf").status().message(),
            "unknown shaping backend 'ebpf'; expected auto, netem or userspace");
}

TEST(NetshapeCheckBackendSupports, CorruptOnUserspace) {
  LinkProfile p;
  p.corrupt = 0.01;
  Status s = CheckBackendSupports(p, Backend::kUserspace, All());
  EXPECT_EQ(s.code(), StatusCode::kUnimplemented);
  EXPECT_EQ(s.message(), "corrupt: not supported by the userspace backend");
  EXPECT_TRUE(CheckBackendSupports(p, Backend::kNetem, All()).ok());
}

TEST(NetshapeCheckBackendSupports, NetemWithoutSchNetemNamesTheFirstParameter) {
  LinkProfile p;
  p.rate_bps = 1'000'000;
  EXPECT_TRUE(CheckBackendSupports(p, Backend::kNetem, NoNetem()).ok());  // HTB only
  p.delay = 10ms;
  p.loss = 0.01;
  Status s = CheckBackendSupports(p, Backend::kNetem, NoNetem());
  EXPECT_EQ(s.code(), StatusCode::kUnimplemented);
  EXPECT_EQ(s.message(),
            "delay: not supported by the netem backend on this kernel (sch_netem is missing)");
  LinkProfile l;
  l.loss = 0.01;
  EXPECT_EQ(CheckBackendSupports(l, Backend::kNetem, NoNetem()).message(),
            "loss: not supported by the netem backend on this kernel (sch_netem is missing)");
  LinkProfile q;
  q.queue_packets = 10;
  EXPECT_EQ(CheckBackendSupports(q, Backend::kNetem, NoNetem()).message(),
            "queue: not supported by the netem backend on this kernel (sch_netem is missing)");
  EXPECT_TRUE(CheckBackendSupports(p, Backend::kUserspace, NoNetem()).ok());
}

TEST(NetshapeCheckBackendSupports, MissingHtbAndNfqueue) {
  Capabilities c = All();
  c.htb = false;
  LinkProfile p;
  p.rate_bps = 1'000'000;
  EXPECT_EQ(CheckBackendSupports(p, Backend::kUserspace, c).message(),
            "rate: not supported by the userspace backend on this kernel (sch_htb is missing)");
  c = All();
  c.nfqueue = false;
  LinkProfile d;
  d.duplicate = 0.1;
  EXPECT_EQ(CheckBackendSupports(d, Backend::kUserspace, c).message(),
            "duplicate: not supported by the userspace backend on this kernel (NFQUEUE is "
            "missing)");
  c = All();
  c.iptables = false;
  EXPECT_EQ(CheckBackendSupports(d, Backend::kUserspace, c).message(),
            "duplicate: not supported by the userspace backend on this kernel (iptables NFQUEUE "
            "target is missing)");
}

TEST(NetshapeCheckBackendSupports, EmptyProfileAlwaysOk) {
  EXPECT_TRUE(CheckBackendSupports(LinkProfile{}, Backend::kNetem, Capabilities{}).ok());
  EXPECT_TRUE(CheckBackendSupports(LinkProfile{}, Backend::kUserspace, Capabilities{}).ok());
}

TEST(NetshapeCapabilities, ToString) {
  EXPECT_EQ(NoNetem().ToString(), "htb=yes netem=no nfqueue=yes iptables=yes ip6tables=yes");
}

}  // namespace
}  // namespace gridemu::netshape

// Unit tests (no privileges) of the agent's pure parts: proto conversions
// (agent_convert.h) and ShardApplier::Check / CheckEvent against a fake
// runtime that creates nothing.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "gridemu/common/clock.h"
#include "gridemu/node-agent/agent_convert.h"
#include "gridemu/node-agent/shard_applier.h"

namespace gridemu::agent {
namespace {

using ::testing::HasSubstr;
using namespace std::chrono_literals;

// A runtime that refuses everything: Check() only asks for its name.
class FakeRuntime final : public VnodeRuntime {
 public:
  std::string_view name() const override { return "netns"; }
  std::vector<Status> CreateBatch(std::span<const VnodeSpec> s) override {
    return std::vector<Status>(s.size(), UnimplementedError("fake"));
  }
  Status Start(const VnodeRef&) override { return UnimplementedError("fake"); }
  Status Stop(const VnodeRef&) override { return UnimplementedError("fake"); }
  std::vector<Status> DestroyBatch(std::span<const VnodeRef> v) override {
    return std::vector<Status>(v.size(), NotFoundError("fake"));
  }
  Result<VnodeInfo> Info(const VnodeRef&) const override { return NotFoundError("fake"); }
  std::vector<VnodeRef> List() const override { return {}; }
  Result<int> OpenNetns(const VnodeRef&) const override { return NotFoundError("fake"); }
  Result<TaskId> Exec(const VnodeRef&, const TaskSpec&) override { return NotFoundError("fake"); }
  Status Signal(TaskId, TaskSignal) override { return NotFoundError("fake"); }
  Result<TaskStatus> GetTask(TaskId) const override { return NotFoundError("fake"); }
  Status Freeze(const VnodeRef&) override { return NotFoundError("fake"); }
  Status Thaw(const VnodeRef&) override { return NotFoundError("fake"); }
  Result<VnodeStats> Stats(const VnodeRef&) const override { return NotFoundError("fake"); }
  int event_fd() const override { return -1; }
  std::vector<RuntimeEvent> Poll(std::chrono::milliseconds) override { return {}; }
  Result<TaskResult> Wait(TaskId, std::chrono::milliseconds) override {
    return NotFoundError("fake");
  }
  void SetEventCallback(EventCallback) override {}
  Result<Leftovers> ListLeftovers(std::string_view) const override { return Leftovers{}; }
  Status CleanupExperiment(std::string_view) override { return Status::Ok(); }
  Status CleanupAll() override { return Status::Ok(); }
  Result<std::vector<VnodeRef>> Adopt(std::string_view) override { return std::vector<VnodeRef>{}; }
};

// An applier that only checks: a runtime for its name, no records kept.
ApplierDeps CheckOnly(VnodeRuntime* rt) {
  static const std::unique_ptr<ShardRecords> none = NewFileShardRecords("");
  ApplierDeps d;
  d.runtime = rt;
  d.records = none.get();
  return d;
}

v1::DeployShard TwoNodes() {
  v1::DeployShard s;
  s.set_experiment_id("e1");
  s.set_generation(1);
  for (const char* n : {"a", "b"}) {
    v1::VnodeSpec* v = s.add_vnodes();
    v->set_name(n);
    v->set_kind("host");
    v->set_runtime("netns");
  }
  v1::LinkSpec* l = s.add_links();
  l->set_name("a--b");
  l->mutable_a()->set_vnode("a");
  l->mutable_a()->set_ifname("eth0");
  l->mutable_a()->set_address("10.0.0.0/31");
  l->mutable_b()->set_vnode("b");
  l->mutable_b()->set_ifname("eth0");
  l->mutable_b()->set_address("10.0.0.1/31");
  return s;
}

std::string All(const std::vector<ShardObjectError>& errs) {
  std::string out;
  for (const auto& e : errs) out += e.object + ": " + e.message + "\n";
  return out;
}

TEST(AgentConvert, ProfileRoundTrip) {
  LinkProfile p;
  p.rate_bps = 1'000'000;
  p.delay = 10ms;
  p.jitter = 1ms;
  p.delay_distribution = DelayDistribution::kNormal;
  p.loss = 0.05;
  p.reorder = 0.25;
  p.reorder_gap = 3;
  p.queue_packets = 50;
  v1::LinkProfile pp = ProfileToProto(p);
  EXPECT_EQ(pp.loss_ppm(), 50000u);
  EXPECT_EQ(pp.delay_ns(), 10'000'000u);
  Result<LinkProfile> back = ProfileFromProto(pp);
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(*back, p);
  v1::LinkProfile bad;
  bad.set_reorder_ppm(1'500'000);
  EXPECT_THAT(ProfileFromProto(bad).status().message(), HasSubstr("reorder_ppm"));
}

TEST(AgentConvert, ErrorFromStatus) {
  v1::Error e = ErrorFromStatus(NotFoundError("no link x"));
  EXPECT_EQ(e.code(), "not found");
  EXPECT_EQ(e.message(), "no link x");
  EXPECT_GT(UnixNanosNow(), int64_t{1'600'000'000'000'000'000});
}

TEST(ShardCheck, AcceptsAGoodShard) {
  FakeRuntime rt;
  ShardApplier ap(CheckOnly(&rt), {});
  EXPECT_EQ(All(ap.Check(TwoNodes())), "");
}

TEST(ShardCheck, NamesEveryBadObject) {
  FakeRuntime rt;
  ShardApplier ap(CheckOnly(&rt), {});
  v1::DeployShard s = TwoNodes();
  s.set_experiment_id("Bad_Id");
  s.mutable_vnodes(1)->set_runtime("qemu");
  s.add_vnodes()->set_name("a");  // duplicate
  v1::LinkSpec* l = s.mutable_links(0);
  l->mutable_b()->set_address("10.0.0.300/31");
  l->mutable_forward()->set_delay_ns(5'000'000);  // no shaper: refused
  v1::LinkSpec* l2 = s.add_links();
  l2->set_name("a--ghost");
  l2->mutable_a()->set_vnode("a");
  l2->mutable_a()->set_ifname("eth0");  // taken by a--b
  l2->mutable_b()->set_vnode("ghost");
  l2->mutable_b()->set_ifname("eth0");
  v1::LinkSpec* l3 = s.add_links();
  l3->set_name("x--y");
  l3->mutable_tunnel()->set_vni(42);
  v1::RouteSpec* r = s.add_routes();
  r->set_vnode("a");
  r->set_destination("10.9.0.0/8x");
  r->set_dev("eth7");
  v1::BridgeSpec* br = s.add_bridges();
  br->set_vnode("b");
  br->set_name("br0");
  br->add_ports("eth9");
  const std::string all = All(ap.Check(s));
  EXPECT_THAT(all, HasSubstr("shard: invalid argument"));
  EXPECT_THAT(all, HasSubstr("vnode b: runtime 'qemu'"));
  EXPECT_THAT(all, HasSubstr("vnode a: duplicate vnode name"));
  EXPECT_THAT(all, HasSubstr("link a--b: end b address"));
  EXPECT_THAT(all, HasSubstr("link a--b: forward: no shaping backend"));
  EXPECT_THAT(all, HasSubstr("link a--ghost: end a: vnode a has two interfaces named eth0"));
  EXPECT_THAT(all, HasSubstr("link a--ghost: end b: vnode 'ghost' is not in this shard"));
  EXPECT_THAT(all, HasSubstr("link x--y: tunnel: this pnode has no underlay address"));
  EXPECT_THAT(all, HasSubstr("route a 10.9.0.0/8x: destination"));
  EXPECT_THAT(all, HasSubstr("dev eth7 is not an interface of a"));
  EXPECT_THAT(all, HasSubstr("bridge b/br0: port eth9"));
}

// One end of a cross-pnode link: vnode a here, vnode r on the pnode 192.0.2.9.
v1::DeployShard TunnelShard() {
  v1::DeployShard s = TwoNodes();
  v1::LinkSpec* l = s.add_links();
  l->set_name("a--r");
  l->mutable_a()->set_vnode("a");
  l->mutable_a()->set_ifname("eth1");
  l->mutable_a()->set_address("10.0.1.0/31");
  l->mutable_b()->set_vnode("r");
  l->mutable_b()->set_ifname("eth0");
  l->mutable_b()->set_address("10.0.1.1/31");
  l->mutable_tunnel()->set_vni(100);
  l->mutable_tunnel()->set_remote_address("192.0.2.9");
  l->mutable_tunnel()->set_local_end("a");
  return s;
}

TEST(ShardCheck, AcceptsATunnelLink) {
  FakeRuntime rt;
  ShardApplierOptions o;
  o.local_address = "192.0.2.1";
  ShardApplier ap(CheckOnly(&rt), o);
  EXPECT_EQ(All(ap.Check(TunnelShard())), "");
  // The same link seen from the other pnode: only vnode r, end b is local.
  v1::DeployShard other;
  other.set_experiment_id("e1");
  other.set_generation(1);
  other.add_vnodes()->set_name("r");
  v1::LinkSpec* l = other.add_links();
  *l = TunnelShard().links(1);
  l->mutable_tunnel()->set_local_end("b");
  l->mutable_tunnel()->set_remote_address("192.0.2.1");
  ShardApplierOptions o2;
  o2.local_address = "192.0.2.9";
  ShardApplier ap2(CheckOnly(&rt), o2);
  EXPECT_EQ(All(ap2.Check(other)), "");
  // ... but not with the wrong end named local: a is not here, r is.
  other.mutable_links(0)->mutable_tunnel()->set_local_end("a");
  const std::string all = All(ap2.Check(other));
  EXPECT_THAT(all, HasSubstr("link a--r: end a: vnode 'a' is not in this shard"));
  EXPECT_THAT(all, HasSubstr("link a--r: end b: vnode 'r' is in this shard"));
}

TEST(ShardCheck, NamesEveryBadTunnelLink) {
  FakeRuntime rt;
  ShardApplierOptions o;
  o.local_address = "192.0.2.1";
  ShardApplier ap(CheckOnly(&rt), o);
  v1::DeployShard s = TunnelShard();
  auto add = [&](const std::string& name, uint32_t vni, const std::string& remote,
                 const std::string& local_end, const std::string& va, const std::string& vb,
                 const std::string& ifa) {
    v1::LinkSpec* l = s.add_links();
    l->set_name(name);
    l->mutable_a()->set_vnode(va);
    l->mutable_a()->set_ifname(ifa);
    l->mutable_b()->set_vnode(vb);
    l->mutable_b()->set_ifname("eth0");
    l->mutable_tunnel()->set_vni(vni);
    l->mutable_tunnel()->set_remote_address(remote);
    l->mutable_tunnel()->set_local_end(local_end);
  };
  add("vni0", 0, "192.0.2.9", "a", "a", "r1", "eth2");
  add("vnibig", 1u << 24, "192.0.2.9", "a", "a", "r2", "eth3");
  add("vnidup", 100, "192.0.2.9", "a", "a", "r3", "eth4");
  add("noremote", 7, "", "a", "a", "r4", "eth5");
  add("self", 8, "192.0.2.1", "a", "a", "r5", "eth6");
  add("badend", 9, "192.0.2.9", "c", "a", "r6", "eth7");
  add("bothhere", 10, "192.0.2.9", "a", "a", "b", "eth8");
  add("nonehere", 11, "192.0.2.9", "b", "a", "ghost", "eth9");
  const std::string all = All(ap.Check(s));
  EXPECT_THAT(all, HasSubstr("link vni0: tunnel: VNI 0 is out of range"));
  EXPECT_THAT(all, HasSubstr("link vnibig: tunnel: VNI 16777216 is out of range"));
  EXPECT_THAT(all, HasSubstr("link vnidup: tunnel: VNI 100 is also used by link a--r"));
  EXPECT_THAT(all, HasSubstr("link noremote: tunnel: remote address '' is not an IPv4"));
  EXPECT_THAT(all, HasSubstr("link self: tunnel: remote address 192.0.2.1 is this pnode's own"));
  EXPECT_THAT(all, HasSubstr("link badend: tunnel: local_end 'c': expected a or b"));
  EXPECT_THAT(all, HasSubstr("link bothhere: end b: vnode 'b' is in this shard, but the other "
                             "end of a tunnel link must be on another pnode"));
  EXPECT_THAT(all, HasSubstr("link nonehere: end b: vnode 'ghost' is not in this shard"));
  EXPECT_EQ(all.find("link a--r:"), std::string::npos) << all;  // the good one
  // Without an underlay address, every tunnel link is refused.
  ShardApplier none(CheckOnly(&rt), {});
  EXPECT_THAT(All(none.Check(TunnelShard())),
              HasSubstr("link a--r: tunnel: this pnode has no underlay address"));
}

TEST(ShardCheck, DeployOfABadShardReportsAndCreatesNothing) {
  FakeRuntime rt;
  ShardApplier ap(CheckOnly(&rt), {});
  v1::DeployShard s = TwoNodes();
  s.mutable_links(0)->mutable_a()->set_ifname("");
  int calls = 0;
  DeployReport rep = ap.Deploy(s, [&](uint32_t, uint32_t) { ++calls; });
  EXPECT_FALSE(rep.ok);
  EXPECT_EQ(calls, 0);
  EXPECT_THAT(All(rep.errors), HasSubstr("link a--b"));
  EXPECT_FALSE(ap.Generation("e1").has_value());
  // A runtime failure is reported per vnode, and the shard is gone again.
  rep = ap.Deploy(TwoNodes());
  EXPECT_FALSE(rep.ok);
  EXPECT_THAT(All(rep.errors), HasSubstr("vnode a: unimplemented: fake"));
  EXPECT_TRUE(ap.Experiments().empty());
}

TEST(ShardCheck, EventsNeedADeployedShard) {
  FakeRuntime rt;
  ShardApplier ap(CheckOnly(&rt), {});
  v1::ApplyEvent ev;
  ev.mutable_link_state()->set_link("a--b");
  EXPECT_EQ(ap.CheckEvent("e1", ev).code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(ap.CollectMetrics("e1").links_size(), 0);
  TeardownReport td = ap.Teardown("e1");
  EXPECT_EQ(td.vnodes_removed, 0u);
  EXPECT_TRUE(td.errors.empty());
}

}  // namespace
}  // namespace gridemu::agent

// Unit tests of the plumbing API that need no privileges: validation,
// namespace references, and the generic Apply()/DeleteTagged() logic over a fake.
#include "gridemu/node-agent/plumbing.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace gridemu::agent {
namespace {

TEST(PlumbingValidate, Ifname) {
  EXPECT_TRUE(ValidateIfname("eth0").ok());
  EXPECT_TRUE(ValidateIfname("abcdefghijklmno").ok());  // 15 bytes
  EXPECT_EQ(ValidateIfname("abcdefghijklmnop").code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(ValidateIfname("").code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(ValidateIfname("..").code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(ValidateIfname("a/b").code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(ValidateIfname("a:b").code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(ValidateIfname("a b").code(), StatusCode::kInvalidArgument);
  EXPECT_NE(ValidateIfname("a b").message().find("'a b'"), std::string::npos);
}

TEST(PlumbingNetns, RefKeys) {
  EXPECT_TRUE(NetnsRef::Home().is_home());
  EXPECT_EQ(NetnsRef::Home().Key(), "home");
  EXPECT_EQ(NetnsRef::AtPath("/run/netns/x").Key(), "/run/netns/x");
  EXPECT_EQ(NetnsRef::FromFd(7).Key(), "fd:7");
  EXPECT_EQ(NetnsRef::FromFd(7).ToString(), "fd 7");
  EXPECT_EQ(NetnsRef::Home().ToString(), "the home namespace");
  EXPECT_FALSE(NetnsRef::AtPath("/run/netns/x").is_home());
}

TEST(PlumbingNetns, OpenMissing) {
  auto fd = OpenNetns(NetnsRef::AtPath("/run/netns/gepl-no-such-namespace"));
  EXPECT_EQ(fd.status().code(), StatusCode::kNotFound);
  EXPECT_NE(fd.status().message().find("gepl-no-such-namespace"), std::string::npos);
}

// Records calls; fails DeleteLink for names in `gone`.
class FakePlumbing : public Plumbing {
 public:
  std::vector<std::string> calls;
  std::vector<LinkInfo> tagged;
  std::vector<std::string> gone;

  Status CreateVeth(const VethSpec& s) override { return Record("veth " + s.name_a); }
  Status CreateBridge(const BridgeSpec& s) override { return Record("bridge " + s.name); }
  Status SetLinkUp(const NetnsRef&, std::string_view n, bool) override {
    return Record("up " + std::string(n));
  }
  Status AddAddress(const AddressSpec& s) override { return Record("addr " + s.address); }
  Status EnableForwarding(const NetnsRef& ns) override { return Record("fwd " + ns.Key()); }
  Status SetSysctl(const NetnsRef& ns, std::string_view k, std::string_view) override {
    return Record("sysctl " + std::string(k));
  }
  Status AddRoute(const RouteSpec& s) override { return Record("route " + s.dst); }
  Status DeleteLink(const NetnsRef&, std::string_view n) override {
    for (const auto& g : gone) {
      if (g == n) return NotFoundError("gone");
    }
    return Record("del " + std::string(n));
  }
  Result<std::vector<LinkInfo>> ListTagged(const NetnsRef&, std::string_view) override {
    return tagged;
  }

 private:
  Status Record(std::string c) {
    if (c == "addr 10.9.9.9") return InvalidArgumentError("bad");
    calls.push_back(std::move(c));
    return Status::Ok();
  }
};

TEST(PlumbingApply, OrderAndFirstError) {
  FakePlumbing fake;
  PlumbingBatch b;
  b.routes.push_back(RouteSpec{NetnsRef::AtPath("/x"), "10.0.0.0", 8, "10.1.0.1", "eth0", 0});
  b.forwarding.push_back(NetnsRef::AtPath("/x"));
  b.addresses.push_back(AddressSpec{NetnsRef::AtPath("/x"), "eth0", "10.1.0.2", 24});
  b.bridges.push_back(BridgeSpec{NetnsRef::AtPath("/y"), "br0", {"eth0"}, 0, "t", true});
  b.veths.push_back(
      VethSpec{NetnsRef::AtPath("/x"), "eth0", NetnsRef::AtPath("/y"), "eth0", 0, "t", true});
  ASSERT_TRUE(fake.Apply(b).ok());
  EXPECT_EQ(fake.calls, (std::vector<std::string>{"veth eth0", "bridge br0", "addr 10.1.0.2",
                                                  "fwd /x", "route 10.0.0.0"}));
  fake.calls.clear();
  b.addresses.push_back(AddressSpec{NetnsRef::AtPath("/x"), "eth0", "10.9.9.9", 24});
  EXPECT_EQ(fake.Apply(b).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(fake.calls.back(), "addr 10.1.0.2");  // stopped before forwarding and routes
}

TEST(PlumbingApply, DeleteTaggedSkipsVanishedPeers) {
  FakePlumbing fake;
  fake.tagged = {LinkInfo{"eth0", 2, "gridemu:e:l", "veth", 1500, true, 0, 0},
                 LinkInfo{"eth1", 3, "gridemu:e:l", "veth", 1500, true, 0, 0}};
  fake.gone = {"eth1"};
  auto n = fake.DeleteTagged(NetnsRef::Home(), "gridemu:e:");
  ASSERT_TRUE(n.ok()) << n.status().ToString();
  EXPECT_EQ(*n, 2u);  // both found; eth1 went with eth0
  EXPECT_EQ(fake.calls, (std::vector<std::string>{"del eth0"}));
}

}  // namespace
}  // namespace gridemu::agent

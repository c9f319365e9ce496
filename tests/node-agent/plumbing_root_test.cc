// Root tests of the netlink plumbing: real namespaces, veths, bridges,
// addresses, routes. Every namespace is named "gepl<pid>-..." and removed by
// RAII even when a test fails; interfaces live only inside those namespaces;
// traffic flows only between them.
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

namespace gridemu::agent {
namespace {

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

// Removes namespaces of earlier runs of this test whose process is gone
// (only names of the form gepl<pid>-*, never anything else).
void SweepStale() {
  DIR* d = opendir("/run/netns");
  if (!d) return;
  std::vector<std::string> stale;
  while (dirent* e = readdir(d)) {
    std::string name = e->d_name;
    if (name.rfind("gepl", 0) != 0) continue;
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

  const std::string& name() const { return name_; }
  NetnsRef ref() const { return NetnsRef::AtPath("/run/netns/" + name_); }
  CmdResult Exec(const std::string& cmd) const {
    return Shell("ip netns exec " + name_ + " " + cmd);
  }
  bool Ping(const std::string& addr, int ttl = 0) const {
    std::string cmd = "ping -n -c1 -W2 ";
    if (ttl > 0) cmd += "-t " + std::to_string(ttl) + " ";
    return Exec(cmd + addr).code == 0;
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

class PlumbingRoot : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "needs root";
    SweepStale();
    home_inode_ = ThreadNetnsInode();
    auto p = NewNetlinkPlumbing();
    ASSERT_TRUE(p.ok()) << p.status().ToString();
    plumbing_ = std::move(p).value();
  }
  void TearDown() override {
    if (geteuid() != 0) return;
    EXPECT_EQ(ThreadNetnsInode(), home_inode_) << "thread left in another namespace";
  }
  std::string Tag(const std::string& link) const { return "gepl:" + Prefix() + ":" + link; }

  std::unique_ptr<Plumbing> plumbing_;
  ino_t home_inode_ = 0;
};

TEST_F(PlumbingRoot, VethBetweenTwoNamespacesPings) {
  TestNetns a("a"), b("b");
  ASSERT_TRUE(
      plumbing_->CreateVeth({a.ref(), "eth0", b.ref(), "eth0", 1400, Tag("ab"), true}).ok());
  ASSERT_TRUE(plumbing_->AddAddress({a.ref(), "eth0", "10.0.0.0", 31}).ok());
  Status s = plumbing_->AddAddress({b.ref(), "eth0", "10.0.0.1", 31});
  ASSERT_TRUE(s.ok()) << s.ToString();
  // Idempotent.
  EXPECT_TRUE(plumbing_->AddAddress({b.ref(), "eth0", "10.0.0.1", 31}).ok());
  EXPECT_TRUE(a.Ping("10.0.0.1"));
  EXPECT_TRUE(b.Ping("10.0.0.0"));

  auto listed = plumbing_->ListTagged(a.ref(), Tag(""));
  ASSERT_TRUE(listed.ok()) << listed.status().ToString();
  ASSERT_EQ(listed->size(), 1u);
  EXPECT_EQ((*listed)[0].name, "eth0");
  EXPECT_EQ((*listed)[0].alias, Tag("ab"));
  EXPECT_EQ((*listed)[0].kind, "veth");
  EXPECT_EQ((*listed)[0].mtu, 1400u);
  EXPECT_TRUE((*listed)[0].up);
  // Nothing landed in the home namespace.
  auto home = plumbing_->ListTagged(NetnsRef::Home(), Tag(""));
  ASSERT_TRUE(home.ok());
  EXPECT_TRUE(home->empty());
  EXPECT_EQ(Shell("ip -br link").out.find(Prefix()), std::string::npos);
}

TEST_F(PlumbingRoot, ErrorsNameTheObject) {
  TestNetns a("a"), b("b");
  Status s = plumbing_->CreateVeth({NetnsRef::AtPath("/run/netns/" + Prefix() + "missing"), "eth0",
                                    b.ref(), "eth0", 0, "", true});
  EXPECT_EQ(s.code(), StatusCode::kNotFound) << s.ToString();
  EXPECT_NE(s.message().find("missing"), std::string::npos);
  ASSERT_TRUE(plumbing_->CreateVeth({a.ref(), "eth0", b.ref(), "eth0", 0, Tag("x"), true}).ok());
  s = plumbing_->CreateVeth({a.ref(), "eth0", b.ref(), "eth9", 0, Tag("x"), true});
  EXPECT_EQ(s.code(), StatusCode::kAlreadyExists) << s.ToString();
  s = plumbing_->CreateVeth({a.ref(), "this-name-is-too-long", b.ref(), "eth1", 0, "", true});
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s.ToString();
  s = plumbing_->AddAddress({a.ref(), "eth7", "10.0.0.1", 31});
  EXPECT_EQ(s.code(), StatusCode::kNotFound) << s.ToString();
  EXPECT_NE(s.message().find("eth7"), std::string::npos);
  s = plumbing_->AddAddress({a.ref(), "eth0", "10.0.0.300", 31});
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s.ToString();
  ASSERT_TRUE(plumbing_->AddAddress({a.ref(), "eth0", "10.0.0.0", 31}).ok());
  // Gateway not on any connected subnet.
  s = plumbing_->AddRoute({a.ref(), "10.5.0.0", 16, "10.9.9.9", "eth0", 0});
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("10.9.9.9"), std::string::npos) << s.ToString();
  s = plumbing_->AddRoute({a.ref(), "10.5.0.1", 16, "10.0.0.1", "eth0", 0});
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s.ToString();
  s = plumbing_->ListTagged(a.ref(), "").status();
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
}

TEST_F(PlumbingRoot, ForwardingIsPerNamespace) {
  TestNetns r("r");
  std::string before = Shell("cat /proc/sys/net/ipv4/ip_forward").out;
  EXPECT_EQ(r.Exec("cat /proc/sys/net/ipv4/ip_forward").out, "0\n");
  ASSERT_TRUE(plumbing_->EnableForwarding(r.ref()).ok());
  EXPECT_EQ(r.Exec("cat /proc/sys/net/ipv4/ip_forward").out, "1\n");
  EXPECT_EQ(Shell("cat /proc/sys/net/ipv4/ip_forward").out, before);
}

// h0 -- r -- h1 with routes through r, built as one batch.
TEST_F(PlumbingRoot, BatchWithRouterAndDefaultRoutes) {
  TestNetns h0("h0"), r("r"), h1("h1");
  PlumbingBatch b;
  b.veths.push_back({h0.ref(), "eth0", r.ref(), "eth0", 0, Tag("h0r"), true});
  b.veths.push_back({r.ref(), "eth1", h1.ref(), "eth0", 0, Tag("rh1"), true});
  b.addresses = {{h0.ref(), "eth0", "10.0.0.0", 31},
                 {r.ref(), "eth0", "10.0.0.1", 31},
                 {r.ref(), "eth1", "10.0.0.2", 31},
                 {h1.ref(), "eth0", "10.0.0.3", 31}};
  b.forwarding = {r.ref()};
  b.routes = {{h0.ref(), "0.0.0.0", 0, "10.0.0.1", "eth0", 0},
              {h1.ref(), "0.0.0.0", 0, "10.0.0.2", "", 0}};
  Status s = plumbing_->Apply(b);
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_TRUE(h0.Ping("10.0.0.3"));
  EXPECT_TRUE(h1.Ping("10.0.0.0"));
  EXPECT_NE(h0.Exec("ip route").out.find("default via 10.0.0.1 dev eth0"), std::string::npos);
  // Applying again: veths exist (kAlreadyExists), the rest is idempotent.
  EXPECT_EQ(plumbing_->Apply(b).code(), StatusCode::kAlreadyExists);
  b.veths.clear();
  EXPECT_TRUE(plumbing_->Apply(b).ok());
}

TEST_F(PlumbingRoot, BridgeLanOfThreeNamespaces) {
  TestNetns sw("sw"), h0("h0"), h1("h1"), h2("h2");
  const TestNetns* hosts[] = {&h0, &h1, &h2};
  PlumbingBatch b;
  BridgeSpec br{sw.ref(), "br0", {}, 0, Tag("br"), true};
  for (int i = 0; i < 3; ++i) {
    std::string port = "eth" + std::to_string(i);
    b.veths.push_back({hosts[i]->ref(), "eth0", sw.ref(), port, 0, Tag("lan" + port), true});
    br.ports.push_back(port);
    b.addresses.push_back({hosts[i]->ref(), "eth0", "10.1.0." + std::to_string(i + 1), 24});
  }
  b.bridges.push_back(br);
  Status s = plumbing_->Apply(b);
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_TRUE(h0.Ping("10.1.0.2"));
  EXPECT_TRUE(h0.Ping("10.1.0.3"));
  EXPECT_TRUE(h2.Ping("10.1.0.2"));
  auto links = plumbing_->ListTagged(sw.ref(), Tag(""));
  ASSERT_TRUE(links.ok());
  ASSERT_EQ(links->size(), 4u);
  int bridge_index = 0;
  for (const LinkInfo& l : *links) {
    if (l.kind == "bridge") bridge_index = l.ifindex;
  }
  ASSERT_NE(bridge_index, 0);
  for (const LinkInfo& l : *links) {
    if (l.kind == "veth") {
      EXPECT_EQ(l.master, bridge_index) << l.name;
    }
  }
}

TEST_F(PlumbingRoot, TagListingAndDeletion) {
  TestNetns x("x"), y("y");
  ASSERT_TRUE(plumbing_->CreateVeth({x.ref(), "eth0", y.ref(), "eth0", 0, Tag("l0"), true}).ok());
  ASSERT_TRUE(plumbing_->CreateVeth({x.ref(), "eth1", y.ref(), "eth1", 0, Tag("l1"), true}).ok());
  // A foreign interface: another tool's alias, and one with no alias at all.
  ASSERT_TRUE(
      plumbing_->CreateVeth({x.ref(), "other0", y.ref(), "other0", 0, "othertool:l0", true}).ok());
  ASSERT_TRUE(plumbing_->CreateVeth({x.ref(), "plain0", y.ref(), "plain0", 0, "", true}).ok());
  // A tag that merely starts like ours must not match a longer prefix.
  ASSERT_TRUE(
      plumbing_->CreateVeth({x.ref(), "near0", y.ref(), "near0", 0, "gepl:" + Prefix() + "x", true})
          .ok());

  auto listed = plumbing_->ListTagged(x.ref(), Tag(""));
  ASSERT_TRUE(listed.ok()) << listed.status().ToString();
  std::vector<std::string> names;
  for (const LinkInfo& l : *listed) names.push_back(l.name);
  EXPECT_EQ(names, (std::vector<std::string>{"eth0", "eth1"}));

  // Delete one link: its peer in y goes too.
  ASSERT_TRUE(plumbing_->DeleteLink(x.ref(), "eth0").ok());
  EXPECT_EQ(plumbing_->DeleteLink(x.ref(), "eth0").code(), StatusCode::kNotFound);
  auto in_y = plumbing_->ListTagged(y.ref(), Tag(""));
  ASSERT_TRUE(in_y.ok());
  ASSERT_EQ(in_y->size(), 1u);
  EXPECT_EQ((*in_y)[0].name, "eth1");

  auto n = plumbing_->DeleteTagged(x.ref(), Tag(""));
  ASSERT_TRUE(n.ok()) << n.status().ToString();
  EXPECT_EQ(*n, 1u);
  EXPECT_TRUE(plumbing_->ListTagged(x.ref(), Tag(""))->empty());
  EXPECT_TRUE(plumbing_->ListTagged(y.ref(), Tag(""))->empty());
  // The foreign ones are untouched.
  EXPECT_EQ(x.Exec("ip link show other0").code, 0);
  EXPECT_EQ(x.Exec("ip link show plain0").code, 0);
  EXPECT_EQ(x.Exec("ip link show near0").code, 0);
  EXPECT_EQ(plumbing_->ListTagged(x.ref(), "othertool:")->size(), 1u);
}

TEST_F(PlumbingRoot, FdReferencesAndSocketReuseAfterEviction) {
  TestNetns a("a"), b("b"), c("c");
  auto fd = OpenNetns(a.ref());
  ASSERT_TRUE(fd.ok());
  NetlinkPlumbingOptions o;
  o.max_cached_namespaces = 1;  // force evictions
  auto p = NewNetlinkPlumbing(o);
  ASSERT_TRUE(p.ok());
  Plumbing& pl = **p;
  ASSERT_TRUE(
      pl.CreateVeth({NetnsRef::FromFd(*fd), "eth0", b.ref(), "eth0", 0, Tag("ab"), true}).ok());
  ASSERT_TRUE(pl.CreateVeth({b.ref(), "eth1", c.ref(), "eth0", 0, Tag("bc"), true}).ok());
  ASSERT_TRUE(pl.AddAddress({NetnsRef::FromFd(*fd), "eth0", "10.2.0.0", 31}).ok());
  ASSERT_TRUE(pl.AddAddress({b.ref(), "eth0", "10.2.0.1", 31}).ok());
  ASSERT_TRUE(pl.AddAddress({c.ref(), "eth0", "10.2.0.3", 31}).ok());
  ASSERT_TRUE(pl.AddAddress({b.ref(), "eth1", "10.2.0.2", 31}).ok());
  EXPECT_TRUE(a.Ping("10.2.0.1"));
  EXPECT_TRUE(c.Ping("10.2.0.2"));
  // Re-created interface with the same name: the cached ifindex is refreshed.
  ASSERT_TRUE(pl.DeleteLink(c.ref(), "eth0").ok());
  ASSERT_TRUE(pl.CreateVeth({b.ref(), "eth1", c.ref(), "eth0", 0, Tag("bc"), true}).ok());
  Status s = pl.AddAddress({b.ref(), "eth1", "10.2.0.2", 31});
  EXPECT_TRUE(s.ok()) << s.ToString();
  close(*fd);
}

// The plumbing holds no namespace after a call: deleting a namespace destroys
// its veth ends (and their peers), and a namespace re-created under the same
// path is the one used next.
TEST_F(PlumbingRoot, HoldsNoNamespaceBetweenCalls) {
  TestNetns b("b");
  {
    TestNetns a("a");
    ASSERT_TRUE(plumbing_->CreateVeth({a.ref(), "eth0", b.ref(), "eth0", 0, Tag("ab"), true}).ok());
    ASSERT_TRUE(plumbing_->AddAddress({a.ref(), "eth0", "10.3.0.0", 31}).ok());
  }  // `ip netns del` of a
  bool gone = false;
  for (int i = 0; i < 100 && !gone; ++i) {  // namespace cleanup is asynchronous
    auto left = plumbing_->ListTagged(b.ref(), Tag(""));
    ASSERT_TRUE(left.ok());
    gone = left->empty();
    if (!gone) usleep(20'000);
  }
  EXPECT_TRUE(gone) << "the peer of a veth in a deleted namespace is still there";
  TestNetns again("a");
  Status s = plumbing_->CreateVeth({again.ref(), "eth0", b.ref(), "eth0", 0, Tag("ab"), true});
  ASSERT_TRUE(s.ok()) << s.ToString();
  ASSERT_TRUE(plumbing_->AddAddress({again.ref(), "eth0", "10.3.0.0", 31}).ok());
  ASSERT_TRUE(plumbing_->AddAddress({b.ref(), "eth0", "10.3.0.1", 31}).ok());
  EXPECT_TRUE(again.Ping("10.3.0.1"));
}

}  // namespace
}  // namespace gridemu::agent

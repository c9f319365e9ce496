// The timeline as declared (issue 12), through `gridemu run` with the real agent
// (root): what a program sees inside a vnode (its own resolv.conf, so names resolve
// at once; GRIDEMU_ADDR and GRIDEMU_ADDRS). Every object carries this test's own
// agent prefix (root_run_fixture.h).
#include <gtest/gtest.h>

#include <iostream>
#include <sstream>
#include <string>

#include "e2e_util.h"
#include "root_run_fixture.h"

namespace gridemu::e2e {
namespace {

using std::chrono::seconds;

class TimelineRootTest : public RootRunTest {
 protected:
  TimelineRootTest() : RootRunTest("gtl", "gridemu-timeline-root") {}

  // Runs `yaml` (written as `name`.yaml) to its end; the results directory.
  std::string Run(const std::string& name, const std::string& yaml) {
    WriteFile(tmp_.path() + "/" + name + ".yaml", yaml);
    Child run(Args(name + ".yaml"), tmp_.path(), name, Env());
    auto rc = run.Wait(seconds(180));
    EXPECT_TRUE(rc.has_value()) << run.out() << run.err();
    EXPECT_EQ(rc.value_or(-1), 0) << run.out() << run.err();
    out_ = run.out();
    return ResultsDirOf(out_);
  }
  std::string out_;
};

// A value after `key ` in a line of words ("known 3 unknown 1 ..."), or "".
std::string Word(const std::string& text, const std::string& key) {
  std::istringstream in(text);
  std::string w;
  while (in >> w) {
    if (w == key && (in >> w)) return w;
  }
  return "";
}

// Behind a router, `getent hosts` of a known name (a router's, several lines of
// /etc/hosts; a host's) and of an unknown one answer within 50 ms: the vnode's
// resolv.conf asks nothing outside it. GRIDEMU_ADDR is the address /etc/hosts gives
// the vnode's name, and one of its interfaces' addresses.
TEST_F(TimelineRootTest, NamesResolveAtOnceAndEachVnodeKnowsItsAddress) {
  const std::string probe =
      "ms() { echo $(( $(date +%s%N) / 1000000 )); }; "
      "t0=$(ms); getent hosts r > /dev/null; t1=$(ms); getent hosts h2 > /dev/null; t2=$(ms); "
      "getent hosts no-such-name.example; unknown_rc=$?; t3=$(ms); "
      "echo router $((t1 - t0)) host $((t2 - t1)) unknown $((t3 - t2)) rc $unknown_rc "
      "addr $GRIDEMU_ADDR self $(getent hosts $(hostname) | cut -d' ' -f1) "
      "ifaddr $(ip -4 -o addr show scope global | grep -c \" $GRIDEMU_ADDR/\") "
      "naddrs $(echo $GRIDEMU_ADDRS | wc -w); "
      "grep -c nameserver /etc/resolv.conf | sed 's/^/servers /'";
  const std::string dir = Run("env",
                              "name: tl-env\nduration: 60s\n"
                              "topology:\n"
                              "  nodes: {h1: {}, h2: {}, r: {kind: router}}\n"
                              "  links:\n"
                              "    - {endpoints: [h1, r], delay: 1ms}\n"
                              "    - {endpoints: [h2, r]}\n"
                              "workload:\n"
                              "  - name: probe\n    on: [h1, r]\n    at: 100ms\n    wait: true\n"
                              "    timeout: 30s\n"
                              "    run: |\n      " + probe + "\n");
  ASSERT_FALSE(dir.empty()) << out_;
  for (const char* vnode : {"0", "1"}) {
    const std::string o = ReadFile(dir + "/tasks/probe/" + vnode + ".stdout");
    SCOPED_TRACE(o);
    std::cout << "[timeline] " << vnode << ": " << o;
    for (const char* k : {"router", "host", "unknown"}) {
      const std::string ms = Word(o, k);
      ASSERT_FALSE(ms.empty()) << k;
      EXPECT_LE(std::stoi(ms), 50) << "getent hosts of the " << k << " name took " << ms << " ms";
    }
    EXPECT_EQ(Word(o, "rc"), "2") << "an unknown name is not found";
    EXPECT_FALSE(Word(o, "addr").empty());
    EXPECT_EQ(Word(o, "addr"), Word(o, "self")) << "GRIDEMU_ADDR is the vnode's /etc/hosts address";
    EXPECT_EQ(Word(o, "ifaddr"), "1") << "GRIDEMU_ADDR is an address of the vnode";
    EXPECT_EQ(Word(o, "servers"), "1");
    EXPECT_EQ(Word(o, "naddrs"), std::string(vnode) == "0" ? "1" : "2") << "the router has two";
  }
}

}  // namespace
}  // namespace gridemu::e2e

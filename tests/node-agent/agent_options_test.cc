// Agent::Create() refuses bad options before it opens anything (no root
// needed: the checks come first).
#include <gtest/gtest.h>

#include "gridemu/node-agent/agent.h"

namespace gridemu::agent {
namespace {

// Options with this test's own object prefix, so that a regression (a check
// that no longer refuses) cannot touch another agent's objects.
AgentOptions TestOptions() {
  AgentOptions o;
  o.prefix = "gagentopt";
  o.state_dir = "/tmp/gagentopt-state";
  o.runtime_state_root = "/tmp/gagentopt-rt";
  return o;
}

Status CreateStatus(const AgentOptions& o) {
  auto a = Agent::Create(o);
  return a.ok() ? Status::Ok() : a.status();
}

TEST(AgentOptions, AddressMustBeIpv4) {
  for (const char* bad : {"foo", "10.0.0.300", "10.0.0", "::1", "192.0.2.7/24"}) {
    AgentOptions o = TestOptions();
    o.address = bad;
    Status st = CreateStatus(o);
    EXPECT_EQ(st.code(), StatusCode::kInvalidArgument) << bad << ": " << st.ToString();
    EXPECT_EQ(st.message(), std::string("address '") + bad +
                                "': expected this pnode's underlay IPv4 address, e.g. 192.0.2.7");
  }
}

TEST(AgentOptions, UnderlayDeviceMustBeAnInterfaceName) {
  for (const char* bad : {"eth0/1", "a name", "sixteen-chars-xx"}) {
    AgentOptions o = TestOptions();
    o.address = "192.0.2.7";
    o.underlay_dev = bad;
    Status st = CreateStatus(o);
    EXPECT_EQ(st.code(), StatusCode::kInvalidArgument) << bad << ": " << st.ToString();
    EXPECT_EQ(st.message(), std::string("underlay device '") + bad +
                                "': expected an interface name of at most 15 characters");
  }
}

TEST(AgentOptions, PrefixAndHeartbeatAreChecked) {
  AgentOptions o = TestOptions();
  o.prefix = "a/b";
  EXPECT_EQ(CreateStatus(o).code(), StatusCode::kInvalidArgument);
  AgentOptions h = TestOptions();
  h.heartbeat = std::chrono::milliseconds(0);
  EXPECT_EQ(CreateStatus(h).message(), "heartbeat: must be positive");
}

}  // namespace
}  // namespace gridemu::agent

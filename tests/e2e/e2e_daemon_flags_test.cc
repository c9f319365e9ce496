// gridemu-controller and gridemu-agent as processes: bad flags are refused
// with an exact message and a non-zero exit, before the database, the socket
// or any runtime object exists.
#include <gtest/gtest.h>

#include "e2e_util.h"

namespace gridemu::e2e {
namespace {

using std::chrono::seconds;

struct Ran {
  int code = -1;
  std::string err;
};

Ran RunIn(const TempDir& tmp, std::vector<std::string> argv) {
  Child c(argv, tmp.path(), "run");
  std::optional<int> code = c.Wait(seconds(20));
  return {code.value_or(-1), c.err()};
}

TEST(ControllerFlags, BadValuesAreRefusedAndNoDatabaseIsCreated) {
  TempDir tmp("gridemu-e2e-flags");
  const std::string db = tmp.path() + "/c.db";
  const std::vector<std::string> base = {GRIDEMU_CONTROLLER_BIN, "--db", db, "--agents",
                                         "tcp://127.0.0.1:0", "--http", "127.0.0.1:0"};
  struct Case {
    std::vector<std::string> flags;
    int code;
    std::string message;
  };
  const std::vector<Case> cases = {
      {{"--vni-first", "5000", "--vni-last", "4999"},
       2,
       "gridemu-controller: --vni-first 5000 is above --vni-last 4999\n"},
      {{"--stop-grace", "3"},
       2,
       "gridemu-controller: --stop-grace: time '3' has no unit; write e.g. 10ms or 1.5s"},
      {{"--stop-grace", "0s"}, 2, "gridemu-controller: --stop-grace: must be positive\n"},
      {{"--heartbeat-timeout", "fast"}, 2, "gridemu-controller: --heartbeat-timeout: "},
  };
  for (const Case& c : cases) {
    std::vector<std::string> argv = base;
    argv.insert(argv.end(), c.flags.begin(), c.flags.end());
    Ran r = RunIn(tmp, argv);
    EXPECT_EQ(r.code, c.code) << c.flags[0] << ": " << r.err;
    EXPECT_EQ(r.err.substr(0, c.message.size()), c.message) << c.flags[0];
    EXPECT_FALSE(fs::exists(db)) << c.flags[0] << " created the database";
  }
  // Choices and ranges are checked by CLI11 (exit 105), naming the flag.
  for (const std::vector<std::string>& flags :
       {std::vector<std::string>{"--placement", "best"},
        std::vector<std::string>{"--vni-first", "0"},
        std::vector<std::string>{"--underlay-mtu", "100"}}) {
    std::vector<std::string> argv = base;
    argv.insert(argv.end(), flags.begin(), flags.end());
    Ran r = RunIn(tmp, argv);
    EXPECT_EQ(r.code, 105) << flags[0] << ": " << r.err;
    EXPECT_NE(r.err.find(flags[0]), std::string::npos) << r.err;
    EXPECT_FALSE(fs::exists(db)) << flags[0] << " created the database";
  }
}

TEST(AgentFlags, BadAddressOrUnderlayDeviceIsRefusedBeforeAnythingIsMade) {
  TempDir tmp("gridemu-e2e-flags");
  const std::string state = tmp.path() + "/state";
  const std::vector<std::string> base = {GRIDEMU_AGENT_BIN,      "--controller",
                                         "tcp://127.0.0.1:1",    "--prefix",
                                         "ge2eflags",            "--state-dir",
                                         state};
  {
    std::vector<std::string> argv = base;
    argv.insert(argv.end(), {"--address", "10.0.0.300"});
    Ran r = RunIn(tmp, argv);
    EXPECT_EQ(r.code, 1) << r.err;
    EXPECT_NE(r.err.find("cannot start: invalid argument: address '10.0.0.300': expected this "
                         "pnode's underlay IPv4 address, e.g. 192.0.2.7"),
              std::string::npos)
        << r.err;
  }
  {
    std::vector<std::string> argv = base;
    argv.insert(argv.end(), {"--address", "192.0.2.7", "--underlay-dev", "eth0/1"});
    Ran r = RunIn(tmp, argv);
    EXPECT_EQ(r.code, 1) << r.err;
    EXPECT_NE(r.err.find("cannot start: invalid argument: underlay device 'eth0/1': expected an "
                         "interface name of at most 15 characters"),
              std::string::npos)
        << r.err;
  }
  EXPECT_FALSE(fs::exists(state));
  EXPECT_FALSE(fs::exists("/run/ge2eflags"));
}

}  // namespace
}  // namespace gridemu::e2e

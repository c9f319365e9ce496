// The fixture of the root tests that drive `gridemu run` with the real agent: an
// agent prefix of this process's own ("<stem><pid>"), a temporary directory for
// experiment files, results and the run lock, and a TearDown that removes whatever
// a failed run left under that prefix (and nothing else). Skips without root.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "e2e_util.h"
#include "gridemu/node-agent/agent_clean.h"

namespace gridemu::e2e {

class RootRunTest : public ::testing::Test {
 protected:
  /// `stem`: the agent prefix's first letters (a few, [a-z]).
  explicit RootRunTest(std::string stem, std::string tmp_stem)
      : stem_(std::move(stem)), tmp_(tmp_stem) {}

  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root (network namespaces, cgroups, qdiscs)";
    prefix_ = stem_ + std::to_string(::getpid() % 100000);
  }
  void TearDown() override {
    if (prefix_.empty()) return;
    // Whatever a failed test left: remove it (only this test's prefix).
    agent::CleanOptions co;
    co.prefix = prefix_;
    (void)agent::CleanLeftovers(co);
    std::error_code ec;
    fs::remove("/run/" + prefix_ + "-agent", ec);
  }
  /// `gridemu run FILE` with results, prefix and plain progress of this test.
  std::vector<std::string> Args(const std::string& file) {
    return {GRIDEMU_CLI_BIN,  "run",   file,         "--results", tmp_.path() + "/results",
            "--agent-prefix", prefix_, "--progress", "plain"};
  }
  /// The run lock in the temporary directory (tests do not wait for other runs).
  std::vector<std::string> Env() { return {"GRIDEMU_RUN_LOCK=" + tmp_.path() + "/run.lock"}; }

  std::string stem_;
  std::string prefix_;
  TempDir tmp_;
};

}  // namespace gridemu::e2e

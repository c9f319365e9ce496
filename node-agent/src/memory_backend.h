// The part of an AgentBackend (agent_core.h) that the backends which create
// nothing in the kernel share: the simulated agents' (sim_agent.cc) and the
// process agent's (process_agent.cc). They keep what they were given in
// memory: per experiment its generation, its deploy job, whether it is READY,
// and the names of its vnodes and links, against which events are checked.
// Everything they hold is live (deployed by this process): there is never a
// leftover to adopt. Private to node-agent. Not thread-safe (the core's thread).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <unordered_set>
#include <vector>

#include "gridemu/node-agent/agent_core.h"

namespace gridemu::agent::internal {

class MemoryBackend : public AgentBackend {
 public:
  void Bind(AgentEvents* events) override { events_ = events; }
  /// Every shard kept: live, complete once READY.
  Result<std::vector<HeldExperiment>> Held() override;
  uint32_t VnodeCount() override { return vnodes_; }
  /// Forgets the experiment (OnForget first) and reports TeardownDone.
  void Teardown(uint64_t job, const std::string& experiment) override;
  /// Always fails (kFailedPrecondition): nothing outlives this process.
  void Adopt(uint64_t job, const std::string& experiment, uint64_t generation) override;
  /// kNotFound for a link or vnode the shard did not name.
  Status CheckEvent(const std::string& experiment, const v1::ApplyEvent& event) override;
  void ForgetAll() override;

 protected:
  /// What is kept of a deployed shard.
  struct Shard {
    uint64_t generation = 0;
    uint64_t job = 0;    ///< its deploy's (timers of an older deploy are stale)
    uint32_t total = 0;  ///< vnodes + links
    bool ready = false;
    std::unordered_set<std::string> vnodes;
    std::unordered_set<std::string> links;
  };

  /// Keeps the names of `shard` for `job` (forgetting an older shard of the
  /// same experiment first).
  Shard& Keep(uint64_t job, const v1::DeployShard& shard);
  /// The kept shard of `experiment`, or nullptr.
  Shard* Find(const std::string& experiment);
  /// Forgets one experiment: OnForget(experiment), then its names.
  void Forget(const std::string& experiment);
  /// Called before an experiment is forgotten (teardown, ForgetAll): drop
  /// what the derived backend keeps of it.
  virtual void OnForget(const std::string& experiment, const Shard& shard) {
    (void)experiment;
    (void)shard;
  }

  AgentEvents* events_ = nullptr;
  std::map<std::string, Shard> shards_;

 private:
  uint32_t vnodes_ = 0;  // over all shards
};

}  // namespace gridemu::agent::internal

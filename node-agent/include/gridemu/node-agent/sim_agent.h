// Simulated agents (`gridemu-agent --simulate`, DESIGN.md §11): many agents in
// one process, each an AgentCore (agent_core.h: the real conversation,
// answer cache, generations and errors) over a SimBackend that creates
// nothing: no namespace, no link, no process, no file, no root needed. Used
// to load the controller at scale (bench/controlplane part b: 1,000 agents,
// 100,000 vnodes).
//
// Each simulated agent has its own ZeroMQ DEALER socket (routing id = host
// id). What differs from the real agent is only the backend:
//   AgentHello: capacity max_vnodes, cores, memory; capabilities: runtime
//            "netns", backend "userspace" (also active); a loopback underlay
//            address (announce_address); the agents' first hellos spread over
//            100 ms and their heartbeats evenly over one interval;
//   DeployShard -> refused with ShardStatus FAILED + ObjectError{"shard", ...}
//            when its vnodes plus those the agent already holds (of other
//            experiments) exceed max_vnodes; else ShardStatus DEPLOYING
//            (done/total, total = vnodes + links) after every `chunk` objects
//            (one message per 250 objects by default, like the real agent's
//            ShardApplierOptions::vnode_chunk), `object_time` simulated per
//            object, then READY. Only the vnode and link names are kept (the
//            hosts entries are parsed, as the real agent does, then dropped);
//   Exec -> TaskEvent STARTED at once, EXITED (exit code 0, reason "exited")
//            `task_time` later;
//   Signal -> term/kill/int/hup end the task: TaskEvent EXITED with exit code
//            -1, the signal's number and reason "signalled" (no other
//            answer); stop/cont change nothing visible;
//   ApplyEvent -> EventApplied (links and vnodes are checked by name); kill
//            and stop end the vnodes' tasks (signal 9 or 15);
//   no MetricsBatch (nothing is measured); Teardown -> TornDown with
//            vnodes_removed.
//
// Logs (spdlog, info) "all N simulated agents welcomed" each time every
// agent has a Welcome (scripts wait for it).
//
// Threads: Run() serves every agent on the calling thread (one zmq::poll over
// all the sockets and a stop fd; each core's Tick for its timers). Stop() is
// async-signal-safe; Stats() is thread-safe.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "gridemu/common/status.h"

namespace zmq {
class context_t;
}  // namespace zmq

namespace gridemu::agent {

/// Options of SimAgents.
struct SimAgentOptions {
  /// The controller's ROUTER endpoint (tcp://, ipc://, inproc:// with `context`).
  std::string controller = "tcp://127.0.0.1:7100";
  /// Host id; with count > 1 agent i is "<host_id>-<i>", i zero-padded to at
  /// least 4 digits ("sim-0000" .. "sim-0249"). Must not be empty.
  std::string host_id = "sim";
  /// Number of agents (1 .. 100,000).
  uint32_t count = 1;
  /// Capacity announced by each agent (and enforced on DeployShard).
  uint32_t max_vnodes = 1000;
  uint32_t cores = 8;
  uint64_t memory_bytes = uint64_t{32} << 30;
  /// Heartbeat interval until a Welcome sets one.
  std::chrono::milliseconds heartbeat{1000};
  /// AgentHello is repeated this often until a Welcome arrives.
  std::chrono::milliseconds hello_retry{5000};
  /// Objects (vnodes + links) per DEPLOYING progress message (>= 1).
  uint32_t chunk = 250;
  /// Simulated time to make one object (0 = as fast as messages go).
  std::chrono::microseconds object_time{0};
  /// How long a task "runs" before its EXITED event.
  std::chrono::milliseconds task_time{10};
  /// Version announced in AgentHello.
  std::string version = "dev-sim";
  /// Announce an underlay address (AgentHello.address) so that shards with
  /// cross-pnode links (VXLAN tunnels) can be built: agent i says
  /// "127.<1 + i / 65536>.<(i / 256) % 256>.<i % 256>" (nothing listens there:
  /// tunnels are not made). false = none (such shards fail to build).
  bool announce_address = true;
  /// ZeroMQ context to use (needed for inproc://); null = one of its own
  /// (with one I/O thread). Must outlive the SimAgents.
  zmq::context_t* context = nullptr;
};

/// Counters over all agents of a SimAgents (a snapshot).
struct SimAgentStats {
  uint32_t agents = 0;
  uint32_t welcomed = 0;           ///< agents welcomed now
  uint64_t hellos = 0;             ///< AgentHello sent
  uint64_t heartbeats = 0;         ///< Heartbeat sent
  uint64_t deploys_accepted = 0;   ///< DeployShard taken (first time per request)
  uint64_t deploys_refused = 0;    ///< answered FAILED for capacity
  uint64_t shards_ready = 0;       ///< READY sent for a fresh deploy
  uint64_t vnodes_held = 0;        ///< over all agents and experiments
  uint64_t teardowns = 0;
  uint64_t execs = 0;
  uint64_t events_applied = 0;
  uint64_t errors_sent = 0;        ///< Error replies sent
  uint64_t errors_received = 0;    ///< Error messages from the controller
  uint64_t messages_received = 0;
  uint64_t bytes_received = 0;
  uint64_t messages_sent = 0;
  uint64_t bytes_sent = 0;
};

/// N simulated agents served by one thread. Create() anywhere, Run() on the
/// thread that will own the sockets, Stop() from anywhere.
class SimAgents {
 public:
  /// Makes the sockets (connected lazily by ZeroMQ). Errors: kInvalidArgument
  /// (empty host id, count 0 or over 100,000, chunk 0, non-positive
  /// heartbeat), kUnavailable (a socket cannot be made or connected).
  static Result<std::unique_ptr<SimAgents>> Create(const SimAgentOptions& options);
  ~SimAgents();
  SimAgents(const SimAgents&) = delete;
  SimAgents& operator=(const SimAgents&) = delete;

  /// Serves every agent until Stop(): returns ok then, or the error that
  /// ended the loop (the context was terminated: kUnavailable).
  Status Run();
  /// Makes Run() return soon. Thread-safe and async-signal-safe (one write(2)).
  void Stop();

  /// Host ids, in agent order.
  const std::vector<std::string>& host_ids() const;
  /// Counters (thread-safe; updated by Run()).
  SimAgentStats Stats() const;

 private:
  struct Impl;
  explicit SimAgents(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace gridemu::agent

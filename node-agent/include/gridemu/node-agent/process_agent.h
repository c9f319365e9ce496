// The process agent: an AgentCore (agent_core.h) over a ProcessBackend that
// runs each task as a plain host process — no namespaces, no links, no
// shaping, no root needed — served by an AgentLoop on a thread of its own.
// `gridemu run --simulate` uses it to try an experiment's timeline; the
// controller's and the CLI's tests use it, with its fault knobs, as the agent
// at the other end of the real conversation.
//
// ProcessBackend:
//   Deploy -> ShardStatus DEPLOYING (0 done) at once, READY after
//             `deploy_time` (creates each vnode's output directory);
//   Exec -> the task in its own process group, cwd and GRIDEMU_OUT =
//             <output_dir>/<vnode> (or <work_dir>/<experiment>/out/<vnode>
//             without output_dir), with GRIDEMU_NODE, GRIDEMU_INDEX,
//             GRIDEMU_EXPERIMENT, GRIDEMU_SHARED, the agent's environment
//             and the Exec's; stdout/stderr to <GRIDEMU_OUT>/<task file
//             name>.stdout|.stderr (agent_convert.h TaskFileName); a task
//             past its timeout is killed (reason "timeout");
//   Signal -> the signal to the task's process group;
//   ApplyEvent -> node actions signal the vnode's tasks (kill: SIGKILL,
//             reason "vnode-killed"; stop: SIGTERM, "vnode-stopped"; freeze:
//             SIGSTOP; thaw: SIGCONT); link events are acknowledged (nothing
//             is shaped);
//   MetricsBatch -> per vnode the number of running tasks; per link
//             direction zero counters;
//   Teardown -> kills every process group of the experiment, removes its
//             work directory (not an output_dir the controller gave).
// Task ends are found by polling waitpid() every 10 ms while tasks run.
//
// Threads: Start() anywhere; every method is thread-safe (they run on the
// loop's thread through AgentLoop::Call/Post).
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

/// Options of a ProcessAgent.
struct ProcessAgentOptions {
  /// The controller's endpoint.
  std::string controller;
  /// Context for inproc endpoints (not owned); null = its own.
  zmq::context_t* context = nullptr;
  std::string host_id = "sim";
  /// Where task outputs go when a shard has no output_dir; "" = a temporary
  /// directory ($TMPDIR or /tmp, "gridemu-sim-XXXXXX") removed at Stop().
  std::string work_dir;
  uint32_t max_vnodes = 0;                    ///< announced; 0 = 100000
  std::chrono::milliseconds heartbeat{1000};  ///< until Welcome says otherwise
  std::chrono::milliseconds hello_retry{1000};
  /// Time between DEPLOYING and READY.
  std::chrono::milliseconds deploy_time{0};
  // Fault knobs (tests).
  std::string fail_deploy;   ///< non-empty: deploys fail with this message
  bool never_ready = false;  ///< deploys stay DEPLOYING forever
  /// Say AgentHello again when the controller refuses a heartbeat (false:
  /// keep heartbeating regardless, as an agent that does not).
  bool rehello_on_error = true;
};

/// Counters of a ProcessAgent, for tests.
struct ProcessAgentStats {
  int hellos = 0;
  int welcomes = 0;
  int deploys = 0;  ///< DeployShard requests handled
  int execs = 0;
  int signals = 0;
  int events = 0;
  int teardowns = 0;  ///< Teardown requests accepted
  int errors_received = 0;
  std::vector<std::string> kept;         ///< Welcome.keep of the last Welcome
  std::vector<std::string> experiments;  ///< held now
  size_t processes = 0;                  ///< task processes (groups) alive now
};

/// See the file comment.
class ProcessAgent {
 public:
  /// Connects and starts the loop thread. Errors: kUnavailable (no work
  /// directory, no socket).
  static Result<std::unique_ptr<ProcessAgent>> Start(ProcessAgentOptions options);
  /// Stop().
  ~ProcessAgent();
  ProcessAgent(const ProcessAgent&) = delete;
  ProcessAgent& operator=(const ProcessAgent&) = delete;

  /// Kills every task process, closes the socket, joins the thread. Idempotent.
  void Stop();
  /// While silent the agent sends nothing (no heartbeats, no answers) and
  /// ignores what it receives: to the controller it looks dead.
  void SetSilent(bool silent);
  /// Says AgentHello again (as an agent restarted with its state would), with
  /// what it holds and the latest event of every task.
  void Rehello();
  /// Forgets every experiment without telling anyone (kills its processes):
  /// an agent restarted without its state. The next hello holds nothing.
  void Forget();
  /// Sends raw bytes as one message (tests of malformed input).
  void SendRaw(const std::string& bytes);
  /// The Errors the controller sent, as "code: message".
  std::vector<std::string> ErrorsReceived() const;
  ProcessAgentStats Stats() const;

  struct Impl;

 private:
  explicit ProcessAgent(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace gridemu::agent

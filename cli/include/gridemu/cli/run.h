// `gridemu run EXPERIMENT.yaml` (DESIGN.md §1): the embedded default — an
// in-process controller (controller/controller.h) and one local agent on the
// same machine, over ZeroMQ inproc with the same protocol as a cluster, a
// progress display, results on disk, teardown at the end or on Ctrl-C.
//
// Also SimAgent: a simulated agent speaking the agent protocol, which runs
// each task as a plain host process (no namespaces, no links, no shaping).
// `gridemu run --simulate` uses it (no root needed; for trying an experiment's
// timeline and for tests); the controller's tests drive it with their knobs.
#pragma once

#include <chrono>
#include <cstdint>
#include <iosfwd>
#include <memory>
#include <string>
#include <vector>

#include "gridemu/common/status.h"

namespace zmq {
class context_t;
}  // namespace zmq

namespace gridemu::cli {

// ---------------------------------------------------------------- gridemu run

/// Arguments of `gridemu run`.
struct RunArgs {
  std::string file;                 ///< the experiment file
  std::string results = "results";  ///< base directory of results directories
  /// Keep the run's working files in the results directory: the raw
  /// $GRIDEMU_OUT directories (.work/) and the controller database
  /// (controller.db). Kernel objects are torn down whatever this says.
  bool keep = false;
  /// Object prefix of the local agent (netns, cgroups, interface tags).
  std::string agent_prefix = "gridemu";
  /// Use the SimAgent instead of the real agent (no kernel objects).
  bool simulate = false;
  /// Lock file that makes a second `gridemu run` refuse to start; "" = the
  /// default (see DefaultRunLockPath()).
  std::string lock_path;
  /// Progress display: "auto" (a redrawn line on a TTY, plain lines
  /// otherwise), "tty", "plain" or "none".
  std::string progress = "auto";
  /// Port of the embedded HTTP API on 127.0.0.1 (0 = ephemeral), which
  /// `gridemu status|logs|cancel` find through the lock file.
  uint16_t http_port = 0;
  /// How long to wait for the local agent to register.
  std::chrono::milliseconds agent_timeout{std::chrono::seconds(30)};
};

/// Runs the experiment; returns the exit code:
///   0   finished and every waited task exited 0;
///   1   finished otherwise, failed, or cancelled through `gridemu cancel`;
///   2   could not start (invalid file, another run holds the lock, no agent);
///   130 interrupted by SIGINT (143 by SIGTERM): cancelled, torn down.
/// Installs SIGINT/SIGTERM handlers for its duration.
int Run(const RunArgs& args, std::ostream& out, std::ostream& err);

/// /run/gridemu/run.lock when /run/gridemu can be created (root), else
/// $XDG_RUNTIME_DIR/gridemu-run.lock, else /tmp/gridemu-<uid>/run.lock.
/// $GRIDEMU_RUN_LOCK overrides all of them.
std::string DefaultRunLockPath();

/// What the lock file of a running `gridemu run` says (it is JSON).
struct RunLockInfo {
  int pid = 0;
  std::string experiment_id;
  std::string file;
  std::string url;  ///< its HTTP API
  std::string started;
};
/// Reads the lock file of a `gridemu run` that is still running (the file is
/// locked); kNotFound otherwise.
Result<RunLockInfo> ReadRunningLock(const std::string& path);

// ---------------------------------------------------------------- local agent

/// Options of StartLocalAgent().
struct LocalAgentOptions {
  std::string endpoint;               ///< the embedded controller's
  zmq::context_t* context = nullptr;  ///< shared with the controller (inproc)
  std::string prefix = "gridemu";     ///< object prefix of the real agent
  bool simulate = false;              ///< a SimAgent instead of the real agent
  /// Where the real agent's log goes (it logs with spdlog); "" = stderr.
  std::string log_path;
};

/// The agent `gridemu run` starts in-process, on its own thread.
class LocalAgent {
 public:
  virtual ~LocalAgent() = default;
  /// Stops it; the real agent tears down every experiment it still holds
  /// (AgentOptions::teardown_on_exit). Idempotent.
  virtual void Stop() = 0;
};

/// Starts the real agent (node-agent's Agent; needs root: kPermissionDenied
/// otherwise) or, with `simulate`, a SimAgent.
Result<std::unique_ptr<LocalAgent>> StartLocalAgent(const LocalAgentOptions& options);

// ---------------------------------------------------------------- SimAgent

/// Options of SimAgent.
struct SimAgentOptions {
  /// The controller's endpoint.
  std::string controller;
  /// Context for inproc endpoints (not owned); null = its own.
  zmq::context_t* context = nullptr;
  std::string host_id = "sim";
  /// Where task outputs go when a shard has no output_dir; "" = a temporary
  /// directory removed at Stop().
  std::string work_dir;
  uint32_t max_vnodes = 0;                    ///< announced; 0 = 100000
  std::chrono::milliseconds heartbeat{1000};  ///< until Welcome says otherwise
  std::chrono::milliseconds hello_retry{1000};
  /// Time between DEPLOYING and READY.
  std::chrono::milliseconds deploy_time{0};
  // Test knobs.
  std::string fail_deploy;   ///< non-empty: deploys fail with this message
  bool never_ready = false;  ///< deploys stay DEPLOYING forever
  /// Say AgentHello again when the controller answers "send AgentHello"
  /// (false: keep heartbeating regardless, as an agent that does not).
  bool rehello_on_error = true;
};

/// Counters of a SimAgent, for tests.
struct SimAgentStats {
  int hellos = 0;
  int welcomes = 0;
  int deploys = 0;
  int execs = 0;
  int signals = 0;
  int events = 0;
  int teardowns = 0;
  int errors_received = 0;
  std::vector<std::string> kept;         ///< Welcome.keep of the last Welcome
  std::vector<std::string> experiments;  ///< deployed now
  size_t processes = 0;                  ///< task processes (groups) alive now
};

/// A simulated agent on its own thread. See the file comment. Tasks run as
/// host processes in their own process groups with GRIDEMU_NODE, GRIDEMU_INDEX,
/// GRIDEMU_EXPERIMENT, GRIDEMU_OUT (created) and GRIDEMU_SHARED set; their
/// outputs go to <GRIDEMU_OUT>/<task id with '/' as '_'>.stdout|.stderr, as
/// the real agent's. Teardown (and Stop()) kill every process group it made.
/// Node actions kill/stop/freeze/thaw signal the vnode's tasks; link events
/// are acknowledged (applied at once, nothing shaped).
/// Thread-safety: every method is thread-safe.
class SimAgent {
 public:
  static Result<std::unique_ptr<SimAgent>> Start(SimAgentOptions options);
  /// Stop().
  ~SimAgent();
  SimAgent(const SimAgent&) = delete;
  SimAgent& operator=(const SimAgent&) = delete;

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
  /// Raw messages received that were not Envelopes the agent handles
  /// (Error bodies are recorded here as "code: message").
  std::vector<std::string> ErrorsReceived() const;
  SimAgentStats Stats() const;

  struct Impl;

 private:
  explicit SimAgent(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace gridemu::cli

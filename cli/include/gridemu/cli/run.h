// `gridemu run EXPERIMENT.yaml` (DESIGN.md §1): the embedded default — an
// in-process controller (controller/controller.h) and one local agent on the
// same machine, over ZeroMQ inproc with the same protocol as a cluster, a
// progress display, results on disk, teardown at the end or on Ctrl-C.
//
// `gridemu run --simulate` uses node-agent's process agent instead of the
// real one (process_agent.h: tasks as host processes, no namespaces, links or
// shaping, no root needed), for trying an experiment's timeline.
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
  /// Use the process agent instead of the real agent (no kernel objects).
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
  bool simulate = false;              ///< the process agent instead of the real agent
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
/// otherwise) or, with `simulate`, the process agent (process_agent.h).
Result<std::unique_ptr<LocalAgent>> StartLocalAgent(const LocalAgentOptions& options);

}  // namespace gridemu::cli

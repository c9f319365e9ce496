// Tasks: programs run inside a vnode (DESIGN.md §3, §7 Exec/Signal/TaskEvent).
// A task is a shell command (/bin/sh -c) or an argv, started by the vnode's
// init with its stdout/stderr going to host files, in its own cgroup so that
// every process it starts (daemons included) can be signalled or killed.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "gridemu/common/status.h"

namespace gridemu::agent {

/// Task ids are unique per runtime instance (and stay unique across an agent
/// restart that adopts the vnodes: adoption raises the counter past them).
using TaskId = uint64_t;

/// Environment as ordered (name, value) pairs; a later pair overrides an
/// earlier one of the same name.
using EnvList = std::vector<std::pair<std::string, std::string>>;

/// What to run.
struct TaskSpec {
  /// Run through `/bin/sh -c shell_command` when not empty ...
  std::string shell_command;
  /// ... else this program and its arguments; argv[0] is searched in PATH.
  std::vector<std::string> argv;
  /// Added to the vnode's environment (HOME, GRIDEMU_*, PATH, ...), overriding it.
  EnvList env;
  /// Working directory inside the vnode; empty = $HOME.
  std::string cwd;
  /// Host paths the task's stdout/stderr are written to (created or
  /// truncated, mode 0644). Empty = /dev/null. The same path for both shares
  /// one file (like 2>&1).
  std::string stdout_path;
  std::string stderr_path;
  /// Killed (every process of the task) when still running after this long;
  /// reported as ExitReason::kTimedOut. Zero = no timeout.
  std::chrono::milliseconds timeout{0};
  /// When the task's main process exits, kill what it left running (its
  /// background children, daemons). Default: they keep running until killed
  /// or the vnode is destroyed.
  bool kill_leftovers_on_exit = false;
};

/// The signals a task can be sent (DESIGN.md §3 events, `gridemu` CLI). They
/// go to every process of the task. kKill kills them all and reaps the task.
enum class TaskSignal { kTerm, kKill, kStop, kCont, kInt, kHup };

/// The POSIX signal number of `s` (SIGTERM, SIGKILL, ...).
int SignalNumber(TaskSignal s);
/// Lower-case name: "term", "kill", "stop", "cont", "int", "hup".
std::string_view TaskSignalName(TaskSignal s);
/// Parses a name as TaskSignalName() writes it (also "sigterm", "SIGTERM").
/// Errors: kInvalidArgument.
Result<TaskSignal> ParseTaskSignal(std::string_view name);

/// Why a task ended.
enum class ExitReason {
  kExited,       ///< the main process exited; see exit_code
  kSignaled,     ///< the main process died from a signal; see signal
  kTimedOut,     ///< killed by gridemu when TaskSpec::timeout expired
  kOomKilled,    ///< a process of the task was killed by the OOM killer
  kKilled,       ///< killed on request: Signal(kKill), vnode stop or destroy
  kStartFailed,  ///< could not be started (program not found, bad cwd...); see error
  kLost,         ///< its vnode's init died; the real outcome is unknown
};

/// "exited", "signaled", "timed-out", "oom-killed", "killed", "start-failed", "lost".
std::string_view ExitReasonName(ExitReason r);

/// Start and end of a task, in wall-clock time (for reports) and monotonic
/// time (for durations; CLOCK_MONOTONIC, the same inside every vnode).
struct TaskTimes {
  std::chrono::system_clock::time_point start_wall{};
  std::chrono::system_clock::time_point end_wall{};
  std::chrono::steady_clock::time_point start_mono{};
  std::chrono::steady_clock::time_point end_mono{};
  /// end_mono - start_mono.
  std::chrono::nanoseconds duration() const { return end_mono - start_mono; }
};

/// The outcome of a finished task.
struct TaskResult {
  ExitReason reason = ExitReason::kExited;
  /// Exit status of the main process (0..255) when it exited, else -1.
  int exit_code = -1;
  /// Signal that ended the main process, else 0.
  int signal = 0;
  /// The OOM killer killed a process of the task (reason is kOomKilled unless
  /// the task also timed out or was killed on request).
  bool oom_killed = false;
  bool timed_out = false;
  /// Why it could not start (kStartFailed) or what was lost (kLost).
  std::string error;
  TaskTimes times;

  /// "exited 0", "signaled 15 (SIGTERM)", "oom-killed", "timed-out after ...".
  std::string ToString() const;
};

/// Decodes a wait(2) status into reason/exit_code/signal (kExited or kSignaled).
void DecodeWaitStatus(int wait_status, TaskResult* result);

/// The environment of a task: `base` (the vnode's environment) overridden by
/// `task` pairs, as "NAME=value" strings, in first-appearance order of names.
/// Names must be non-empty and contain no '='; such pairs are dropped.
std::vector<std::string> MergeEnv(const EnvList& base, const EnvList& task);

}  // namespace gridemu::agent

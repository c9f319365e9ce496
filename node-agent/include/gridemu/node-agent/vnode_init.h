// The vnode init (gridemu-vnode-init) and its protocol with the agent.
//
// The netns runtime starts one init per vnode as PID 1 of the vnode's PID
// namespace, with a SOCK_SEQPACKET unix socket to the agent as fd 3. Init
//   1. reads a Config message and sets the vnode up from inside (hostname,
//      /proc for the new PID namespace, private /tmp and /dev/shm, bind mounts
//      of /etc/hosts, /etc/hostname, HOME, GRIDEMU_OUT and GRIDEMU_SHARED,
//      loopback up), then answers Ready;
//   2. runs tasks on Exec (their stdout, stderr and cgroup arrive as file
//      descriptors with the message), answers Started or StartFailed, kills a
//      task whose timeout expired (its whole cgroup), reports Exited;
//   3. reaps every orphan of the vnode;
//   4. when the agent goes away, keeps running, queues its reports and listens
//      on Config::listen_path; a new agent connects, sends Hello and receives
//      Started for each running task, then the queued reports, then Ready.
// Init never exits on its own after Ready; the agent kills it (SIGKILL), which
// makes the kernel kill every process of the PID namespace.
//
// Messages are one datagram each: u32 type, then fields in a fixed order
// (u32/u64 little-endian, strings as u32 length + bytes). Encode/Decode are
// pure and unit-tested.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "gridemu/common/status.h"

namespace gridemu::agent::vnode_init {

/// The control socket's fd number in init.
inline constexpr int kControlFd = 3;
/// Largest message either side sends or accepts (bytes).
inline constexpr size_t kMaxMessageBytes = 1 << 20;

/// A tmpfs that init mounts (e.g. /tmp).
struct TmpfsMount {
  std::string target;
  /// mount(2) data, e.g. "mode=1777,size=67108864".
  std::string options;
  friend bool operator==(const TmpfsMount&, const TmpfsMount&) = default;
};

/// A host file or directory that init bind-mounts at `target` (created if
/// missing: an empty file or a directory). Sources are opened before any
/// tmpfs is mounted, so a source under /tmp is still found.
struct BindMount {
  std::string source;
  std::string target;
  bool read_only = false;
  bool is_file = false;
  friend bool operator==(const BindMount&, const BindMount&) = default;
};

/// Agent -> init, first message: how to set the vnode up.
struct Config {
  std::string hostname;
  bool mount_proc = true;
  std::vector<TmpfsMount> tmpfs;  ///< mounted after /proc, in order
  std::vector<BindMount> binds;   ///< mounted after the tmpfs, in order
  bool loopback_up = true;
  /// Where init listens for a new agent after losing the connection.
  std::string listen_path;
  friend bool operator==(const Config&, const Config&) = default;
};

/// Init -> agent: answer to Config; also ends the replay that answers Hello.
struct Ready {
  bool ok = true;
  std::string error;  ///< what failed, when !ok (init then exits)
  friend bool operator==(const Ready&, const Ready&) = default;
};

/// Agent -> init: start a task. Sent with 2 or 3 descriptors (SCM_RIGHTS):
/// stdout, stderr, and optionally the task's cgroup directory, which the task
/// joins (writes "0" to its cgroup.procs) before exec.
struct Exec {
  uint64_t task_id = 0;
  std::vector<std::string> argv;
  std::vector<std::string> env;  ///< "NAME=value"; PATH from here is used to find argv[0]
  std::string cwd;
  uint64_t timeout_ms = 0;  ///< 0 = none
  bool kill_leftovers = false;
  friend bool operator==(const Exec&, const Exec&) = default;
};

/// Init -> agent: a task runs. Also re-sent for each running task after Hello.
struct Started {
  uint64_t task_id = 0;
  int32_t pid = 0;            ///< in the vnode's PID namespace
  int64_t start_wall_ns = 0;  ///< CLOCK_REALTIME
  int64_t start_mono_ns = 0;  ///< CLOCK_MONOTONIC
  friend bool operator==(const Started&, const Started&) = default;
};

/// Init -> agent: a task could not start.
struct StartFailed {
  uint64_t task_id = 0;
  int32_t error_number = 0;  ///< errno
  std::string message;
  int64_t wall_ns = 0;
  int64_t mono_ns = 0;
  friend bool operator==(const StartFailed&, const StartFailed&) = default;
};

/// Init -> agent: a task's main process ended.
struct Exited {
  uint64_t task_id = 0;
  int32_t wait_status = 0;  ///< as waitpid(2) returns it
  bool timed_out = false;   ///< init killed it because its timeout expired
  int64_t start_wall_ns = 0;
  int64_t start_mono_ns = 0;
  int64_t end_wall_ns = 0;
  int64_t end_mono_ns = 0;
  friend bool operator==(const Exited&, const Exited&) = default;
};

/// Agent -> init after reconnecting: please re-send your state.
struct Hello {
  friend bool operator==(const Hello&, const Hello&) = default;
};

using Message = std::variant<Config, Ready, Exec, Started, StartFailed, Exited, Hello>;

/// Serializes a message into one datagram.
std::string Encode(const Message& message);
/// Parses a datagram. Errors: kInvalidArgument (unknown type, truncated,
/// trailing bytes, oversized counts).
Result<Message> Decode(std::string_view datagram);

/// The init program: `argv[1]` is a label for `ps` ("<experiment>/<vnode>").
/// Returns the process exit code (only on setup failure).
int RunVnodeInit(int argc, char** argv);

}  // namespace gridemu::agent::vnode_init

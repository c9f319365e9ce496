// A multi-pnode gridemu cluster on one machine for GoogleTest (DESIGN.md §12):
// an RAII wrapper around the shell helper tests/cluster/cluster, which does
// the work (see its header comment for names, addresses and flags): K pnodes as
// network namespaces on a test bridge, one `gridemu-agent` per pnode (started
// with nsenter), one `gridemu-controller` in the root namespace with its HTTP
// API on 127.0.0.1. Cluster::Up() returns once every agent is registered; the
// destructor (also when a test fails or throws) runs `cluster down`: the
// processes it started are killed by pid, `gridemu clean` runs per agent
// prefix, the namespaces and the bridge are deleted.
//
// Binaries: compile definitions GRIDEMU_CLI_BIN, GRIDEMU_CONTROLLER_BIN,
// GRIDEMU_AGENT_BIN and GRIDEMU_CLUSTER_SCRIPT (set by tests/cluster/
// CMakeLists.txt from the build the test belongs to), each overridable by the
// environment variable of the same name.
//
// Thread-safety: none; one test thread drives a Cluster.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace gridemu::cluster_test {

/// What a finished child process left: its exit code (128 + signal when
/// killed, -1 when it could not be started or timed out) and its output.
struct CmdResult {
  int code = -1;
  std::string out;
  std::string err;
};

/// Runs argv[0] (an absolute path) with `argv`, stdin /dev/null, stdout and
/// stderr captured, killing it (SIGKILL, by pid) after `timeout`.
CmdResult RunCmd(const std::vector<std::string>& argv,
                 std::chrono::milliseconds timeout = std::chrono::seconds(60));

/// The whole contents of a file ("" when it cannot be read).
std::string ReadFileOrEmpty(const std::string& path);

/// A cluster of K pnodes (see the file comment).
class Cluster {
 public:
  /// Brings up `pnodes` pnodes (1..16) under the new directory `dir` (which
  /// must not exist yet or be empty of a cluster). On failure returns null and
  /// sets *error to the helper's output (everything it made is removed).
  static std::unique_ptr<Cluster> Up(int pnodes, const std::string& dir, std::string* error);
  /// Down(), see there.
  ~Cluster();
  Cluster(const Cluster&) = delete;
  Cluster& operator=(const Cluster&) = delete;

  /// Tears the cluster down (idempotent). The directory (logs, results, the
  /// controller database) is kept.
  void Down();

  int size() const { return k_; }
  const std::string& dir() const { return dir_; }
  /// The controller's HTTP API, e.g. "http://127.0.0.1:40213".
  const std::string& url() const { return url_; }
  /// The controller's --results-dir.
  std::string results_dir() const { return dir_ + "/results"; }
  /// "gcl<pid>": the prefix of every name the cluster makes.
  const std::string& tag() const { return tag_; }
  /// Host id of pnode i: "p<i>".
  static std::string host_id(int i) { return "p" + std::to_string(i); }
  /// Object prefix of pnode i's agent: "<tag>a<i>".
  std::string agent_prefix(int i) const { return tag_ + "a" + std::to_string(i); }
  /// Network namespace of pnode i: "<tag>-p<i>".
  std::string pnode_netns(int i) const { return tag_ + "-p" + std::to_string(i); }
  /// The pid of pnode i's running agent, -1 when none.
  pid_t agent_pid(int i) const;

  /// SIGKILLs pnode i's agent (by pid). Returns its pid, -1 when none ran.
  pid_t KillAgent(int i);
  /// (Re)starts pnode i's agent and waits (up to 30 s) until its host is up
  /// in the controller's database. False on failure (see the agent's log).
  bool StartAgent(int i);

  /// Runs the `gridemu` CLI with `args` and `--controller <url>` appended
  /// (client subcommands only: submit, status, logs, results, cancel).
  CmdResult Gridemu(std::vector<std::string> args,
                    std::chrono::milliseconds timeout = std::chrono::seconds(30)) const;
  /// `gridemu submit FILE`: the experiment id, "" on failure (*error set).
  std::string Submit(const std::string& yaml_path, std::string* error) const;
  /// `gridemu status ID --json` parsed; a null json when it failed.
  nlohmann::json StatusJson(const std::string& id) const;
  /// `gridemu status ID` (text).
  std::string StatusText(const std::string& id) const;
  /// Polls the status until its state is one of `states` (e.g. {"running"})
  /// or is final (finished, failed, cancelled), or `timeout` passes. Returns
  /// the last state seen ("" when the controller never answered).
  std::string WaitState(const std::string& id, const std::vector<std::string>& states,
                        std::chrono::milliseconds timeout) const;

  /// The vnode network namespaces (/run/netns entries) of pnode i's agent
  /// prefix whose name contains `experiment` (any experiment when "").
  std::vector<std::string> VnodeNamespaces(int i, const std::string& experiment = "") const;

 private:
  Cluster() = default;
  std::string Helper(const std::vector<std::string>& args, int* code) const;

  int k_ = 0;
  std::string dir_, url_, tag_;
  bool up_ = false;
};

}  // namespace gridemu::cluster_test

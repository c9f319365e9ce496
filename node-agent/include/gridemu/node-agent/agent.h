// The agent daemon (DESIGN.md §1, §7): one per pnode. An AgentCore
// (agent_core.h: the conversation, answer cache, generations and error
// codes) over a PnodeBackend (pnode_backend.h: vnodes, links, shaping and
// tasks through the ShardApplier and the vnode runtime), served by an
// AgentLoop (agent_loop.h: one ZeroMQ DEALER socket, routing id = host id,
// connected to the controller's ROUTER).
//
// Create() wires the real kernel: the netns runtime, the shaper (probed
// once), the netlink plumbing and the shard records; tests that want fakes
// build the same parts by hand (pnode_backend.h, shard_applier.h).
//
// Threads: Run() is a single event loop; deploys, teardowns and the
// adoption/cleanup after Welcome run on the backend's worker thread, in
// arrival order, so heartbeats never wait for them.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "gridemu/node-agent/cgroup.h"
#include "gridemu/common/status.h"
#include "gridemu/netshape/capabilities.h"

namespace zmq {
class context_t;
}  // namespace zmq

namespace gridemu::agent {

/// Options of an Agent.
struct AgentOptions {
  /// The controller's ROUTER endpoint: tcp://host:port, ipc://path, inproc://name.
  std::string controller = "tcp://127.0.0.1:7100";
  /// Routing id and AgentHello.host_id; "" = the host name.
  std::string host_id;
  /// Object prefix (netns "<prefix>-<exp>-<vnode>", cgroups, tags); tests use
  /// their own.
  std::string prefix = "gridemu";
  /// "auto", "netem" or "userspace".
  std::string shaping_backend = "auto";
  /// Heartbeat interval until the Welcome says otherwise.
  std::chrono::milliseconds heartbeat{1000};
  /// How often AgentHello is repeated while no Welcome came.
  std::chrono::milliseconds hello_retry{5000};
  /// Shard records ("" = /run/<prefix>-agent); they let a restarted agent adopt.
  std::string state_dir;
  /// Runtime state root ("" = /run/<prefix>) and netns directory.
  std::string runtime_state_root;
  std::string netns_dir = "/run/netns";
  /// gridemu-vnode-init ("" = the runtime's search).
  std::string init_path;
  /// Force a cgroup API (tests); unset = detect.
  std::optional<CgroupVersion> cgroup_version;
  /// Skip the kernel probe (tests).
  std::optional<netshape::Capabilities> capabilities;
  /// Capacity announced; 0 = this machine's cores / memory, max_vnodes 1000.
  uint32_t max_vnodes = 0;
  /// A ZeroMQ context to use (in-process controller and inproc:// endpoints);
  /// null = the agent makes its own. Must outlive the agent.
  zmq::context_t* context = nullptr;
  /// Tear every experiment down when Run() returns (the embedded `gridemu run`);
  /// by default vnodes survive for adoption by the next agent.
  bool teardown_on_exit = false;
  /// This pnode's underlay IPv4 address, announced in AgentHello and used as
  /// the local end of VXLAN tunnels ("" = none: shards with tunnels fail).
  std::string address;
  /// Underlay interface the tunnels leave through (its MTU bounds the vnode
  /// interfaces' MTU); "" = routed by the remote address, 1500-byte underlay.
  std::string underlay_dev;
  /// Version announced in AgentHello.
  std::string version = "dev";
};

/// The agent. Create() on any thread, then Run() on the thread that will own
/// the socket; Stop() from anywhere (also from a signal handler).
class Agent {
 public:
  /// Opens the runtime (netns), probes shaping, makes the socket (not yet
  /// connected). Errors: the runtime's (kPermissionDenied without root,
  /// kNotFound without gridemu-vnode-init), kInvalidArgument (bad options:
  /// prefix, heartbeat, an address that is not IPv4, an underlay device name
  /// longer than 15 characters), checked before anything is opened.
  /// A kernel without any shaping backend is not an error: shards with link
  /// profiles fail their check then.
  static Result<std::unique_ptr<Agent>> Create(const AgentOptions& options);
  /// Joins the worker. Leaves vnodes running unless teardown_on_exit.
  ~Agent();
  Agent(const Agent&) = delete;
  Agent& operator=(const Agent&) = delete;

  /// Connects and serves until Stop(). Returns ok after Stop(), or the error
  /// that ended the loop (e.g. the socket failed).
  Status Run();
  /// Makes Run() return soon. Thread-safe and async-signal-safe (one write(2)).
  void Stop();

  /// The host id in use.
  const std::string& host_id() const;

 private:
  struct Impl;
  explicit Agent(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace gridemu::agent

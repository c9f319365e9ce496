// The agent registry (DESIGN.md §7, §8): which agents (pnodes) are connected,
// what they offer, and whether they are still alive. An agent registers with
// AgentHello, is answered Welcome, then sends a Heartbeat every interval; an
// agent silent for longer than the timeout is declared lost (host state
// `down` in the store) and must say AgentHello again to come back.
//
// Thread-safety: not thread-safe; owned and used by the controller's event
// loop thread only.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "gridemu/common/status.h"
#include "gridemu/controller/store.h"
#include "gridemu/v1/agent.pb.h"

namespace gridemu::controller {

/// Options of the AgentRegistry.
struct RegistryOptions {
  /// What Welcome asks of agents: a Heartbeat this often.
  std::chrono::milliseconds heartbeat_interval{1000};
  /// An agent is lost when nothing arrived from it for this long.
  std::chrono::milliseconds heartbeat_timeout{5000};
  /// Heartbeats are written to the store at most this often per agent (each
  /// is a SQLite transaction); liveness itself is tracked in memory.
  std::chrono::milliseconds store_heartbeat_every{5000};
};

/// One registered agent.
struct AgentInfo {
  std::string host_id;
  /// The ZeroMQ routing id of its connection (equal to host_id).
  std::string identity;
  /// Its last AgentHello: capacity, capabilities, version, address, held.
  v1::AgentHello hello;
  bool alive = true;
  std::chrono::steady_clock::time_point last_seen{};
  std::chrono::steady_clock::time_point last_stored_heartbeat{};
  int64_t registered_unix_ns = 0;
  /// vnodes, from its last Heartbeat.
  uint32_t vnodes = 0;
  /// Why it was declared lost ("" while alive).
  std::string lost_reason;
};

/// See the file comment.
class AgentRegistry {
 public:
  using Clock = std::chrono::steady_clock;

  /// `store` may be null (no persistence, tests); it must outlive the registry.
  AgentRegistry(Store* store, RegistryOptions options);

  const RegistryOptions& options() const { return options_; }

  /// Registers (or re-registers) the agent of `identity`. Checks the hello:
  /// kInvalidArgument when host_id is empty, is not printable ASCII of at most
  /// 255 bytes, or differs from the connection's identity, or when address is
  /// set but not an IPv4 address (nothing is registered then). Upserts the host in
  /// the store (state up). Returns the stored record's store error, if any.
  Status OnHello(const std::string& identity, const v1::AgentHello& hello, Clock::time_point now);

  /// Records a heartbeat. kFailedPrecondition when the agent is unknown or
  /// was declared lost (it must say AgentHello again).
  Status OnHeartbeat(const std::string& identity, const v1::Heartbeat& heartbeat,
                     Clock::time_point now);

  /// Any message from a live agent proves it alive. False when `identity`
  /// is not a live registered agent.
  bool Touch(const std::string& identity, Clock::time_point now);

  /// Declares lost every live agent silent for longer than the timeout;
  /// returns their host ids (store state `down`).
  std::vector<std::string> ExpireSilent(Clock::time_point now);

  /// Marks an agent lost now (e.g. its connection refused a message).
  void MarkLost(const std::string& host_id, const std::string& reason);

  /// The agent, or nullptr.
  const AgentInfo* Find(const std::string& host_id) const;
  /// True when `host_id` is registered and alive.
  bool IsAlive(const std::string& host_id) const;
  /// Live agents, by host id.
  std::vector<const AgentInfo*> Alive() const;
  /// Every agent ever registered since start, by host id.
  const std::map<std::string, AgentInfo>& agents() const { return agents_; }

  /// When the next agent would expire (unset when none is alive).
  std::optional<Clock::time_point> NextExpiry() const;

 private:
  Store* store_;
  RegistryOptions options_;
  std::map<std::string, AgentInfo> agents_;
};

}  // namespace gridemu::controller

// The event loop of one agent (DESIGN.md §7): one ZeroMQ DEALER socket
// (routing id = host id) connected to the controller's ROUTER, one message
// per v1::Envelope, serving one AgentCore. Used by the real agent (agent.h)
// and the process agent (process_agent.h); the simulated agents serve many
// cores on one thread with a loop of their own (sim_agent.h).
//
//   auto loop = AgentLoop::Create({.controller = "tcp://c:7100", .routing_id = "pn7"});
//   AgentCore core(core_options, &backend, &(*loop)->wire());
//   (*loop)->Run(core);   // until Stop()
//
// Run() polls the socket, the backend's descriptors (AgentBackend::PollFds),
// a wake-up descriptor (Post) and a stop descriptor, and calls the core's
// Tick() whenever something arrived or a timer is due (at least every
// `max_wait`).
//
// Threads: Run() on one thread (the socket's owner); Post(), Call(),
// SetMuted() and Stop() from any thread; Stop() is also async-signal-safe.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "gridemu/common/status.h"
#include "gridemu/node-agent/agent_core.h"

namespace zmq {
class context_t;
class socket_t;
}  // namespace zmq

namespace gridemu::agent {

/// Options of an AgentLoop.
struct AgentLoopOptions {
  /// The controller's ROUTER endpoint: tcp://host:port, ipc://path, inproc://name.
  std::string controller = "tcp://127.0.0.1:7100";
  /// The socket's routing id: the agent's host id.
  std::string routing_id;
  /// A ZeroMQ context to use (needed for inproc://; must outlive the loop);
  /// null = the loop makes its own with one I/O thread.
  zmq::context_t* context = nullptr;
  /// ZMQ_LINGER of the socket, milliseconds (how long queued messages are
  /// kept after close).
  int linger_ms = 1000;
  /// Send/receive high-water marks, messages (0 = unlimited).
  int send_hwm = 100000;
  int receive_hwm = 100000;
  /// ZMQ_RECONNECT_IVL, milliseconds; 0 = ZeroMQ's default (100).
  int reconnect_ivl_ms = 0;
  /// Messages handled per wake-up before timers run again.
  int batch = 256;
  /// Longest wait between two Tick()s.
  std::chrono::milliseconds max_wait{100};
};

/// See the file comment.
class AgentLoop {
 public:
  /// Makes the socket (connected by Run). Errors: kInvalidArgument (empty
  /// routing id), kInternal (the socket or an eventfd cannot be made).
  static Result<std::unique_ptr<AgentLoop>> Create(const AgentLoopOptions& options);
  ~AgentLoop();
  AgentLoop(const AgentLoop&) = delete;
  AgentLoop& operator=(const AgentLoop&) = delete;

  /// Sends on the socket without blocking (a message the full queue cannot
  /// take is dropped with a warning). Run()'s thread only.
  Wire& wire();

  /// Connects (if not yet) and serves `core` until Stop(): returns ok then,
  /// kInvalidArgument for a bad endpoint, kInternal when polling failed.
  /// `core` must have been made with wire().
  Status Run(AgentCore& core);
  /// Makes Run() return soon. Thread-safe and async-signal-safe (one write(2)).
  void Stop();

  /// Runs `fn` on Run()'s thread at its next wake-up (soon). Thread-safe.
  void Post(std::function<void()> fn);
  /// Runs `fn` on Run()'s thread and waits for it; runs it here when Run()
  /// is not running. Thread-safe; never call it from Run()'s thread.
  void Call(const std::function<void()>& fn);
  /// While muted the loop drops every message it receives (and the caller
  /// is expected to mute its Wire too): tests of an agent that looks dead.
  void SetMuted(bool muted) { muted_.store(muted); }

 private:
  class SocketWire;
  AgentLoop() = default;
  void RunPosted();

  AgentLoopOptions options_;
  std::unique_ptr<zmq::context_t> own_context_;
  std::unique_ptr<zmq::socket_t> socket_;
  std::unique_ptr<SocketWire> wire_;
  bool connected_ = false;
  int stop_fd_ = -1;
  int wake_fd_ = -1;
  std::atomic<bool> muted_{false};
  std::atomic<bool> running_{false};
  std::mutex posted_mu_;
  std::vector<std::function<void()>> posted_;
  std::mutex call_mu_;  // serialises Call() when Run() is not running
};

}  // namespace gridemu::agent

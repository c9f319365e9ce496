// gridemu-agent: the per-pnode daemon (DESIGN.md §1, §7). See agent.h.
//
//   gridemu-agent [--controller tcp://127.0.0.1:7100] [--host-id ID] [--prefix gridemu]
//                 [--shaping-backend auto|netem|userspace] [--heartbeat-ms 1000]
//                 [--address IP] [--underlay-dev DEV] [--max-vnodes N]
//                 [--state-dir DIR] [--log-level info]
//   gridemu-agent --simulate [--count N] [--controller ...] [--host-id ID]
//                 [--max-vnodes N] [--heartbeat-ms 1000] [--sim-object-us 0]
//                 [--sim-task-ms 10]
//
// --simulate runs N simulated agents (sim_agent.h) on one thread, host ids
// "<host-id>-0000".. (just <host-id> when N = 1): the real protocol, nothing
// created, no root needed; the real runtime is never opened.
// SIGINT/SIGTERM stop the loop; vnodes keep running and are adopted (or
// removed) by the next agent after its Welcome.
#include <signal.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <cstdio>
#include <iostream>

#include "gridemu/node-agent/agent.h"
#include "gridemu/node-agent/sim_agent.h"

namespace {

std::atomic<gridemu::agent::Agent*> g_agent{nullptr};
std::atomic<gridemu::agent::SimAgents*> g_sim{nullptr};

void OnSignal(int) {
  if (gridemu::agent::Agent* a = g_agent.load()) a->Stop();
  if (gridemu::agent::SimAgents* s = g_sim.load()) s->Stop();
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "gridemu-agent: runs vnodes, links and shaping on this pnode for a gridemu controller",
      "gridemu-agent"};
  app.set_version_flag("--version", std::string("gridemu-agent ") + GRIDEMU_VERSION);
  gridemu::agent::AgentOptions opt;
  int heartbeat_ms = 1000;
  std::string log_level = "info";
  app.add_option("--controller", opt.controller,
                 "controller endpoint: tcp://HOST:PORT, ipc://PATH or inproc://NAME")
      ->capture_default_str();
  app.add_option("--host-id", opt.host_id, "host id (ZeroMQ routing id); default: the host name");
  app.add_option("--prefix", opt.prefix, "name prefix of every object this agent makes")
      ->capture_default_str();
  app.add_option("--shaping-backend", opt.shaping_backend, "auto | netem | userspace")
      ->check(CLI::IsMember({"auto", "netem", "userspace"}))
      ->capture_default_str();
  app.add_option("--heartbeat-ms", heartbeat_ms, "heartbeat interval until the Welcome sets one")
      ->check(CLI::Range(10, 3600000))
      ->capture_default_str();
  app.add_option("--address", opt.address,
                 "this pnode's underlay IPv4 address (local end of VXLAN tunnels)");
  app.add_option("--underlay-dev", opt.underlay_dev,
                 "underlay interface VXLAN tunnels leave through (e.g. eth0)");
  app.add_option("--max-vnodes", opt.max_vnodes,
                 "capacity announced to the controller; 0 = 1000")
      ->capture_default_str();
  app.add_option("--state-dir", opt.state_dir,
                 "where shard records are kept for adoption; default /run/<prefix>-agent");
  app.add_option("--log-level", log_level, "trace | debug | info | warn | error | off")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "critical", "off"}))
      ->capture_default_str();
  bool simulate = false;
  uint32_t count = 1;
  int64_t sim_object_us = 0;
  int64_t sim_task_ms = 10;
  app.add_flag("--simulate", simulate,
               "run simulated agents: the real protocol, nothing created, no root needed");
  app.add_option("--count", count, "with --simulate: number of agents (host ids <host-id>-0000..)")
      ->check(CLI::Range(1, 100000))
      ->capture_default_str();
  app.add_option("--sim-object-us", sim_object_us,
                 "with --simulate: simulated time to make one vnode or link, in microseconds")
      ->check(CLI::Range(int64_t{0}, int64_t{10'000'000}))
      ->capture_default_str();
  app.add_option("--sim-task-ms", sim_task_ms,
                 "with --simulate: how long each task runs before it exits 0")
      ->check(CLI::Range(int64_t{0}, int64_t{86'400'000}))
      ->capture_default_str();
  try {
    app.parse(argc, argv);
    if (!simulate && (app.count("--count") > 0 || app.count("--sim-object-us") > 0 ||
                      app.count("--sim-task-ms") > 0)) {
      throw CLI::ValidationError("--count, --sim-object-us and --sim-task-ms need --simulate");
    }
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  auto logger = spdlog::stderr_color_mt("gridemu-agent");
  spdlog::set_default_logger(logger);
  spdlog::set_level(spdlog::level::from_str(log_level));
  spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ %v");
  opt.heartbeat = std::chrono::milliseconds(heartbeat_ms);
  opt.version = GRIDEMU_VERSION;

  struct sigaction sa = {};
  sa.sa_handler = OnSignal;
  sigemptyset(&sa.sa_mask);
  if (simulate) {
    gridemu::agent::SimAgentOptions so;
    so.controller = opt.controller;
    so.host_id = opt.host_id.empty() ? "sim" : opt.host_id;
    so.count = count;
    so.max_vnodes = opt.max_vnodes != 0 ? opt.max_vnodes : 1000;
    so.heartbeat = opt.heartbeat;
    so.object_time = std::chrono::microseconds(sim_object_us);
    so.task_time = std::chrono::milliseconds(sim_task_ms);
    so.version = std::string(GRIDEMU_VERSION) + "-sim";
    auto sim = gridemu::agent::SimAgents::Create(so);
    if (!sim.ok()) {
      spdlog::critical("cannot start: {}", sim.status().ToString());
      return 1;
    }
    g_sim.store(sim->get());
    sigaction(SIGINT, &sa, nullptr);
    sigaction(SIGTERM, &sa, nullptr);
    signal(SIGPIPE, SIG_IGN);
    spdlog::info("{} simulated agent(s) ({} .. {}) for {}", count, (*sim)->host_ids().front(),
                 (*sim)->host_ids().back(), so.controller);
    gridemu::Status st = (*sim)->Run();
    g_sim.store(nullptr);
    const auto stats = (*sim)->Stats();
    spdlog::info("simulated agents done: {} deploys ({} refused), {} ready, {} messages in ({} "
                 "bytes), {} out",
                 stats.deploys_accepted, stats.deploys_refused, stats.shards_ready,
                 stats.messages_received, stats.bytes_received, stats.messages_sent);
    if (!st.ok()) {
      spdlog::critical("simulated agents failed: {}", st.ToString());
      return 1;
    }
    return 0;
  }

  auto agent = gridemu::agent::Agent::Create(opt);
  if (!agent.ok()) {
    spdlog::critical("cannot start: {}", agent.status().ToString());
    return 1;
  }
  g_agent.store(agent->get());
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  signal(SIGPIPE, SIG_IGN);
  gridemu::Status st = (*agent)->Run();
  g_agent.store(nullptr);
  agent->reset();
  if (!st.ok()) {
    spdlog::critical("agent failed: {}", st.ToString());
    return 1;
  }
  return 0;
}

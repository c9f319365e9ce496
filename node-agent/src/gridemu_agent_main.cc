// gridemu-agent: the per-pnode daemon (DESIGN.md §1, §7). See agent.h.
//
//   gridemu-agent [--controller tcp://127.0.0.1:7100] [--host-id ID] [--prefix gridemu]
//                 [--shaping-backend auto|netem|userspace] [--heartbeat-ms 1000]
//                 [--address IP] [--underlay-dev DEV] [--max-vnodes N]
//                 [--state-dir DIR] [--log-level info]
//
// SIGINT/SIGTERM stop the loop; vnodes keep running and are adopted (or
// removed) by the next agent after its Welcome.
#include <signal.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <cstdio>
#include <iostream>

#include "gridemu/agent/agent.h"

namespace {

std::atomic<gridemu::agent::Agent*> g_agent{nullptr};

void OnSignal(int) {
  if (gridemu::agent::Agent* a = g_agent.load()) a->Stop();
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
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  auto logger = spdlog::stderr_color_mt("gridemu-agent");
  spdlog::set_default_logger(logger);
  spdlog::set_level(spdlog::level::from_str(log_level));
  spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ %v");
  opt.heartbeat = std::chrono::milliseconds(heartbeat_ms);
  opt.version = GRIDEMU_VERSION;

  auto agent = gridemu::agent::Agent::Create(opt);
  if (!agent.ok()) {
    spdlog::critical("cannot start: {}", agent.status().ToString());
    return 1;
  }
  g_agent.store(agent->get());
  struct sigaction sa = {};
  sa.sa_handler = OnSignal;
  sigemptyset(&sa.sa_mask);
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

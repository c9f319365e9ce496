// gridemu-controller (DESIGN.md §1, §8): the ZeroMQ ROUTER for agents, the
// HTTP API, state in SQLite. Stops cleanly on SIGINT/SIGTERM (experiments
// stay in the database; a restarted controller recovers them).
#include <signal.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <thread>

#include "gridemu/common/units.h"
#include "gridemu/controller/controller.h"
#include "gridemu/controller/http_api.h"
#include "gridemu/controller/placement.h"

namespace {

std::atomic<int> g_signal{0};

void OnSignal(int sig) { g_signal.store(sig); }

}  // namespace

int main(int argc, char** argv) {
  using namespace gridemu::controller;
  CLI::App app{"gridemu-controller: placement, lifecycle, agent registry and HTTP API",
               "gridemu-controller"};
  app.set_version_flag("--version", "gridemu-controller " + std::string(GridemuVersion()));
  ControllerOptions opt;
  std::string http = "127.0.0.1:7080";
  std::string heartbeat_timeout = "5s", heartbeat_interval = "1s", recovery_timeout = "30s";
  std::string stop_grace = "3s";
  app.add_option("--db", opt.db_path, "SQLite database")->capture_default_str();
  app.add_option("--agents", opt.agents_endpoint, "ZeroMQ endpoint agents connect to")
      ->capture_default_str();
  app.add_option("--http", http, "HTTP API address:port (loopback only by default)")
      ->capture_default_str();
  app.add_option("--results-dir", opt.results_dir, "base directory of results directories")
      ->capture_default_str();
  app.add_option("--heartbeat-interval", heartbeat_interval, "asked of agents")
      ->capture_default_str();
  app.add_option("--heartbeat-timeout", heartbeat_timeout,
                 "an agent silent this long is lost; its experiments fail (or go on without "
                 "it with on_pnode_failure: continue)")
      ->capture_default_str();
  app.add_option("--stop-grace", stop_grace,
                 "at the end of a run, how long killed tasks have to report their end")
      ->capture_default_str();
  app.add_option("--recovery-timeout", recovery_timeout,
                 "after a restart, how long to wait for the agents of recovered experiments")
      ->capture_default_str();
  std::string placement = "metis";
  app.add_option("--placement", placement,
                 "how vnodes are spread over the pnodes: metis (METIS k-way: fewest cross-pnode "
                 "links at balanced load), random, round-robin, or single (every vnode on one "
                 "pnode)")
      ->check(CLI::IsMember({"metis", "metis-kway", "random", "round-robin", "single"}))
      ->capture_default_str();
  app.add_option("--vni-first", opt.vni_first,
                 "first VXLAN VNI given to experiments (cross-pnode links)")
      ->check(CLI::Range(1u, (1u << 24) - 1))
      ->capture_default_str();
  app.add_option("--vni-last", opt.vni_last, "last VXLAN VNI given to experiments")
      ->check(CLI::Range(1u, (1u << 24) - 1))
      ->capture_default_str();
  app.add_option("--underlay-mtu", opt.underlay_mtu,
                 "MTU of the network between pnodes (cross-pnode links get 50 bytes less)")
      ->check(CLI::Range(576u, 65535u))
      ->capture_default_str();
  app.add_option("--import-base-dir", opt.import_base_dir,
                 "where relative paths in submitted files (import: gml:) start")
      ->capture_default_str();
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  auto parse_ms = [](const std::string& text, const char* what,
                     std::chrono::milliseconds* out) -> bool {
    auto t = gridemu::ParseTime(text);
    if (!t.ok() || t->count() <= 0) {
      std::cerr << "gridemu-controller: --" << what << ": "
                << (t.ok() ? std::string("must be positive") : t.status().message()) << "\n";
      return false;
    }
    *out = std::chrono::duration_cast<std::chrono::milliseconds>(*t);
    if (out->count() == 0) *out = std::chrono::milliseconds(1);
    return true;
  };
  if (!parse_ms(heartbeat_interval, "heartbeat-interval", &opt.heartbeat_interval) ||
      !parse_ms(heartbeat_timeout, "heartbeat-timeout", &opt.heartbeat_timeout) ||
      !parse_ms(recovery_timeout, "recovery-timeout", &opt.recovery_timeout) ||
      !parse_ms(stop_grace, "stop-grace", &opt.stop_grace)) {
    return 2;
  }
  if (opt.vni_first > opt.vni_last) {
    std::cerr << "gridemu-controller: --vni-first " << opt.vni_first << " is above --vni-last "
              << opt.vni_last << "\n";
    return 2;
  }
  if (placement == "single") {
    opt.placer = std::make_shared<SinglePnodePlacer>();
  } else {
    auto algorithm = ParsePlacementAlgorithm(placement);
    if (!algorithm.ok()) {
      std::cerr << "gridemu-controller: --placement: " << algorithm.status().message() << "\n";
      return 2;
    }
    opt.placer = std::make_shared<PartitionPlacer>(*algorithm);
  }
  HttpApiOptions hopt;
  const size_t colon = http.rfind(':');
  if (colon == std::string::npos || colon == 0) {
    std::cerr << "gridemu-controller: --http: expected ADDRESS:PORT, got '" << http << "'\n";
    return 2;
  }
  hopt.address = http.substr(0, colon);
  if (hopt.address.size() > 2 && hopt.address.front() == '[' && hopt.address.back() == ']') {
    hopt.address = hopt.address.substr(1, hopt.address.size() - 2);
  }
  try {
    const int port = std::stoi(http.substr(colon + 1));
    if (port < 0 || port > 65535) throw std::out_of_range("port");
    hopt.port = static_cast<uint16_t>(port);
  } catch (const std::exception&) {
    std::cerr << "gridemu-controller: --http: bad port in '" << http << "'\n";
    return 2;
  }
  if (opt.db_path != ":memory:") {
    std::error_code ec;
    auto parent = std::filesystem::path(opt.db_path).parent_path();
    if (!parent.empty()) std::filesystem::create_directories(parent, ec);
  }

  // Signals: handled by this thread's loop below, not asynchronously.
  struct sigaction sa {};
  sa.sa_handler = OnSignal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  signal(SIGPIPE, SIG_IGN);

  auto controller = Controller::Start(opt);
  if (!controller.ok()) {
    std::cerr << "gridemu-controller: " << controller.status().ToString() << "\n";
    return 1;
  }
  auto server = HttpApiServer::Start((*controller)->service(), hopt);
  if (!server.ok()) {
    std::cerr << "gridemu-controller: HTTP API: " << server.status().ToString() << "\n";
    return 1;
  }
  std::cerr << "gridemu-controller " << GridemuVersion() << ": agents on "
            << (*controller)->endpoint() << ", HTTP API on " << (*server)->url() << ", database "
            << opt.db_path << "\n";
  while (g_signal.load() == 0) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  std::cerr << "gridemu-controller: signal " << g_signal.load()
            << ": stopping (experiments stay in the database and are recovered at the next "
               "start)\n";
  (*server)->Stop();
  (*controller)->Stop();
  return 0;
}

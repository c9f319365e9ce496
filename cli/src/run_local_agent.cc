// The local agent of `gridemu run`: node-agent's Agent on a thread of its own,
// or the process agent. See run.h.

#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <thread>

#include "gridemu/node-agent/agent.h"
#include "gridemu/node-agent/process_agent.h"
#include "gridemu/cli/run.h"

namespace gridemu::cli {

namespace {

class RealLocalAgent : public LocalAgent {
 public:
  RealLocalAgent(std::unique_ptr<agent::Agent> a, std::string prefix)
      : agent_(std::move(a)), prefix_(std::move(prefix)) {
    thread_ = std::thread([this] { status_ = agent_->Run(); });
  }
  ~RealLocalAgent() override { Stop(); }
  void Stop() override {
    if (!thread_.joinable()) return;
    agent_->Stop();
    thread_.join();
    agent_.reset();  // tears down what it still holds (teardown_on_exit)
    // Its record directory, when empty (rmdir removes nothing else).
    ::rmdir(("/run/" + prefix_ + "-agent").c_str());
  }

 private:
  std::unique_ptr<agent::Agent> agent_;
  std::string prefix_;
  std::thread thread_;
  Status status_;
};

class SimLocalAgent : public LocalAgent {
 public:
  explicit SimLocalAgent(std::unique_ptr<agent::ProcessAgent> a) : agent_(std::move(a)) {}
  void Stop() override { agent_->Stop(); }

 private:
  std::unique_ptr<agent::ProcessAgent> agent_;
};

}  // namespace

Result<std::unique_ptr<LocalAgent>> StartLocalAgent(const LocalAgentOptions& options) {
  if (options.simulate) {
    agent::ProcessAgentOptions so;
    so.controller = options.endpoint;
    so.context = options.context;
    so.host_id = "local-sim";
    so.heartbeat = std::chrono::milliseconds(500);
    GRIDEMU_ASSIGN_OR_RETURN(std::unique_ptr<agent::ProcessAgent> a, agent::ProcessAgent::Start(so));
    return std::unique_ptr<LocalAgent>(new SimLocalAgent(std::move(a)));
  }
  if (!options.log_path.empty()) {
    try {
      auto logger = spdlog::basic_logger_mt("gridemu-run-agent", options.log_path, true);
      logger->flush_on(spdlog::level::info);
      spdlog::set_default_logger(logger);
    } catch (const spdlog::spdlog_ex&) {
      // Keep the default logger.
    }
  }
  agent::AgentOptions ao;
  ao.controller = options.endpoint;
  ao.context = options.context;
  ao.prefix = options.prefix;
  ao.teardown_on_exit = true;
  ao.heartbeat = std::chrono::milliseconds(500);
  ao.hello_retry = std::chrono::milliseconds(500);
  GRIDEMU_ASSIGN_OR_RETURN(std::unique_ptr<agent::Agent> a, agent::Agent::Create(ao));
  return std::unique_ptr<LocalAgent>(new RealLocalAgent(std::move(a), options.prefix));
}

}  // namespace gridemu::cli

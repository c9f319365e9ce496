// The client commands (cli/client.h) against a real controller's HTTP API:
// an in-process Controller + HttpApiServer on 127.0.0.1:0 and a simulated
// agent over inproc.
#include <gtest/gtest.h>

#include <regex>

#include <algorithm>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>
#include <zmq.hpp>

#include "e2e_util.h"
#include "gridemu/cli/client.h"
#include "gridemu/controller/controller.h"
#include "gridemu/node-agent/process_agent.h"
#include "gridemu/controller/http_api.h"
#include "gridemu/controller/placement.h"

namespace gridemu::e2e {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

class ClientTest : public ::testing::Test {
 protected:
  void SetUp() override {
    controller::ControllerOptions o;
    o.db_path = tmp_.path() + "/c.db";
    o.agents_endpoint = "inproc://client-test";
    o.context = &context_;
    o.results_dir = tmp_.path() + "/results";
    o.heartbeat_interval = milliseconds(100);
    o.heartbeat_timeout = milliseconds(1000);
    o.placer = std::make_shared<controller::PartitionPlacer>();  // METIS, as gridemu-controller
    o.log = [](std::string_view) {};
    auto c = controller::Controller::Start(o);
    ASSERT_TRUE(c.ok()) << c.status().ToString();
    controller_ = std::move(c).value();
    controller::HttpApiOptions h;
    h.port = 0;
    auto s = controller::HttpApiServer::Start(controller_->service(), h);
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    server_ = std::move(s).value();
    agent::ProcessAgentOptions a;
    a.controller = "inproc://client-test";
    a.context = &context_;
    auto agent = agent::ProcessAgent::Start(a);
    ASSERT_TRUE(agent.ok());
    agent_ = std::move(agent).value();
    ASSERT_TRUE(controller_->WaitForAgents(1, seconds(10)));
    args_.controller = server_->url();
  }
  void TearDown() override {
    server_.reset();
    agent_.reset();
    controller_.reset();
  }

  std::string File(const std::string& name, const std::string& text) {
    WriteFile(tmp_.path() + "/" + name, text);
    return tmp_.path() + "/" + name;
  }

  TempDir tmp_{"gridemu-e2e-client"};
  zmq::context_t context_{1};
  std::unique_ptr<controller::Controller> controller_;
  std::unique_ptr<controller::HttpApiServer> server_;
  std::unique_ptr<agent::ProcessAgent> agent_;
  cli::ClientArgs args_;
};

const char* kExperiment = R"(name: cl
duration: 30s
topology:
  nodes: {h1: {}, h2: {}}
  links: [{endpoints: [h1, h2], delay: 1ms}]
workload:
  - name: talk
    on: [h1, h2]
    run: echo said $GRIDEMU_NODE; echo warn >&2
    wait: true
)";

TEST_F(ClientTest, SubmitStatusLogsResults) {
  const std::string file = File("cl.yaml", kExperiment);
  std::ostringstream out, err;
  ASSERT_EQ(cli::Submit(args_, file, out, err), 0) << err.str();
  EXPECT_EQ(out.str(), "cl-1\n");
  auto rec = controller_->WaitFinal("cl-1", seconds(20));
  ASSERT_TRUE(rec.ok());
  EXPECT_EQ(rec->state, controller::ExperimentState::kFinished);

  out.str("");
  ASSERT_EQ(cli::Status(args_, "", out, err), 0) << err.str();
  EXPECT_NE(out.str().find("cl-1"), std::string::npos);
  EXPECT_NE(out.str().find("finished"), std::string::npos) << out.str();

  out.str("");
  ASSERT_EQ(cli::Status(args_, "cl-1", out, err), 0) << err.str();
  const std::string st = out.str();
  EXPECT_NE(st.find("state:    finished"), std::string::npos) << st;
  EXPECT_NE(st.find("tasks:    2 exited"), std::string::npos) << st;
  EXPECT_NE(st.find("placed:   single-pnode on sim (2)"), std::string::npos) << st;
  EXPECT_NE(st.find("deploying"), std::string::npos);

  out.str("");
  ASSERT_EQ(cli::Logs(args_, "cl-1", "talk/1", false, 0, out, err), 0) << err.str();
  EXPECT_EQ(out.str(), "said h2\n");
  out.str("");
  ASSERT_EQ(cli::Logs(args_, "cl-1", "talk/0", true, 0, out, err), 0) << err.str();
  EXPECT_EQ(out.str(), "warn\n");

  out.str("");
  ASSERT_EQ(cli::Results(args_, "cl-1", out, err), 0) << err.str();
  EXPECT_NE(out.str().find("results: " + rec->results_dir), std::string::npos) << out.str();
  EXPECT_NE(out.str().find("state in manifest: finished"), std::string::npos);
  EXPECT_NE(out.str().find("talk*"), std::string::npos) << "summary.txt is shown";

  // JSON output is the controller's.
  args_.json = true;
  out.str("");
  ASSERT_EQ(cli::Status(args_, "cl-1", out, err), 0);
  auto j = nlohmann::json::parse(out.str(), nullptr, false);
  ASSERT_FALSE(j.is_discarded());
  EXPECT_EQ(j["state"], "finished");
}

TEST_F(ClientTest, MultiPnodeStatusLostVnodesAndInfeasibleSubmit) {
  agent::ProcessAgentOptions a;
  a.controller = "inproc://client-test";
  a.context = &context_;
  a.host_id = "sim2";
  auto agent2 = agent::ProcessAgent::Start(a);
  ASSERT_TRUE(agent2.ok());
  ASSERT_TRUE(controller_->WaitForAgents(2, seconds(10)));
  std::ostringstream out, err;

  // A pin to a pnode without an agent: refused by Submit (HTTP 409), nothing stored.
  const std::string bad = File("bad.yaml", "name: bad\nduration: 1s\ntopology:\n"
                                           "  nodes: {h1: {host: p9}}\n");
  EXPECT_EQ(cli::Submit(args_, bad, out, err), 1);
  EXPECT_NE(err.str().find("p9"), std::string::npos) << err.str();
  EXPECT_NE(err.str().find("(HTTP 409)"), std::string::npos) << err.str();
  EXPECT_TRUE(controller_->store().ListExperiments()->empty());

  // Two halves on two pnodes; sim2 goes silent and the run continues.
  const std::string file = File("two.yaml", R"(name: two
duration: 4s
on_pnode_failure: continue
topology:
  nodes: {h1: {host: sim}, h2: {host: sim2}, h3: {host: sim2}}
  links: [{endpoints: [h2, h3], rate: 5mbit}]
)");
  out.str("");
  err.str("");
  ASSERT_EQ(cli::Submit(args_, file, out, err), 0) << err.str();
  const std::string id = "two-1";
  ASSERT_EQ(out.str(), id + "\n");
  ASSERT_TRUE(controller_->WaitForAgents(2, seconds(5)));
  for (int i = 0; i < 500; ++i) {
    auto r = controller_->store().GetExperiment(id);
    if (r.ok() && r->state == controller::ExperimentState::kRunning) break;
    std::this_thread::sleep_for(milliseconds(10));
  }
  (*agent2)->SetSilent(true);
  auto rec = controller_->WaitFinal(id, seconds(20));
  ASSERT_TRUE(rec.ok());
  EXPECT_EQ(rec->state, controller::ExperimentState::kFinished) << rec->failure_reason;

  out.str("");
  ASSERT_EQ(cli::Status(args_, id, out, err), 0) << err.str();
  const std::string st = out.str();
  EXPECT_NE(st.find("placed:   pinned on sim (1) sim2 (2)"), std::string::npos) << st;
  EXPECT_NE(st.find("0 cross-pnode links ("), std::string::npos) << st;
  EXPECT_NE(st.find("imbalance "), std::string::npos) << st;
  EXPECT_NE(st.find("lost:     pnode sim2 lost ("), std::string::npos) << st;
  EXPECT_NE(st.find("2 vnodes: h2, h3"), std::string::npos) << st;

  // `gridemu hosts`: sim is up, the silent sim2 down.
  out.str("");
  ASSERT_EQ(cli::Hosts(args_, out, err), 0) << err.str();
  const std::string hosts = out.str();
  EXPECT_TRUE(std::regex_search(hosts, std::regex("\\nsim +up ")) ) << hosts;
  EXPECT_TRUE(std::regex_search(hosts, std::regex("\\nsim2 +down ")) ) << hosts;

  args_.json = true;
  out.str("");
  ASSERT_EQ(cli::Status(args_, id, out, err), 0);
  auto j = nlohmann::json::parse(out.str(), nullptr, false);
  ASSERT_FALSE(j.is_discarded());
  ASSERT_TRUE(j["lost_vnodes"].is_array());
  ASSERT_EQ(j["lost_vnodes"].size(), 1u);
  EXPECT_EQ(j["placement"]["vnodes_per_pnode"]["sim2"], 2);
  EXPECT_EQ(j["placement"]["cut_links"], 0);
  EXPECT_GE(j["placement"]["imbalance"].get<double>(), 1.0);
  (*agent2)->Stop();
}

TEST_F(ClientTest, InvalidSubmissionPrintsEveryDiagnosticWithPosition) {
  const std::string file = File("bad.yaml",
                                "name: bad\nduration: 10s\ntopology:\n  nodes: {h1: {}}\n"
                                "workload:\n  - {name: t, on: nobody, run: x}\ncolour: red\n");
  std::ostringstream out, err;
  EXPECT_EQ(cli::Submit(args_, file, out, err), 1);
  EXPECT_EQ(out.str(), "");
  EXPECT_EQ(err.str().rfind(file + ":6:19: on: no vnode or group named 'nobody'\n" + file +
                                ":7:1: unknown key 'colour'",
                            0),
            0u)
      << err.str();
  const std::string text = err.str();
  EXPECT_EQ(std::count(text.begin(), text.end(), '\n'), 2) << text;
}

TEST_F(ClientTest, CancelUnknownAndUnreachable) {
  const std::string file = File("long.yaml",
                                "name: cl\nduration: 30s\ntopology:\n  nodes: {h1: {}}\n"
                                "workload:\n  - {name: talk, on: h1, run: sleep 60, wait: true}\n");
  std::ostringstream out, err;
  ASSERT_EQ(cli::Submit(args_, file, out, err), 0) << err.str();
  ASSERT_TRUE(Eventually(
      [&] {
        auto r = controller_->store().GetExperiment("cl-1");
        return r.ok() && r->state == controller::ExperimentState::kRunning;
      },
      seconds(10)));
  out.str("");
  ASSERT_EQ(cli::Cancel(args_, "cl-1", out, err), 0) << err.str();
  EXPECT_EQ(out.str(), "cl-1: cancelling\n");
  auto rec = controller_->WaitFinal("cl-1", seconds(20));
  ASSERT_TRUE(rec.ok());
  EXPECT_EQ(rec->state, controller::ExperimentState::kCancelled);
  err.str("");
  EXPECT_EQ(cli::Cancel(args_, "cl-1", out, err), 1);
  EXPECT_EQ(err.str(), "gridemu: experiment cl-1 is already cancelled (HTTP 409)\n");
  err.str("");
  EXPECT_EQ(cli::Status(args_, "nope-9", out, err), 1);
  EXPECT_EQ(err.str(), "gridemu: unknown experiment 'nope-9' (HTTP 404)\n");
  err.str("");
  EXPECT_EQ(cli::Logs(args_, "cl-1", "talk/7", false, 0, out, err), 1);
  EXPECT_NE(err.str().find("has no task 'talk/7'"), std::string::npos) << err.str();

  cli::ClientArgs nowhere;
  nowhere.controller = "http://127.0.0.1:1";
  err.str("");
  EXPECT_EQ(cli::Status(nowhere, "", out, err), 2);
  EXPECT_EQ(err.str().rfind("gridemu: cannot reach the controller at http://127.0.0.1:1: ", 0), 0u)
      << err.str();
  nowhere.controller = "https://example.org";
  err.str("");
  EXPECT_EQ(cli::Status(nowhere, "", out, err), 2);
  EXPECT_NE(err.str().find("only http:// is supported"), std::string::npos);
}

}  // namespace
}  // namespace gridemu::e2e

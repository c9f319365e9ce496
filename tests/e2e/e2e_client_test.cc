// The client commands (cli/client.h) against a real controller's HTTP API:
// an in-process Controller + HttpApiServer on 127.0.0.1:0 and a simulated
// agent over inproc.
#include <gtest/gtest.h>

#include <algorithm>
#include <nlohmann/json.hpp>
#include <sstream>
#include <zmq.hpp>

#include "e2e_util.h"
#include "gridemu/cli/client.h"
#include "gridemu/cli/run.h"
#include "gridemu/controller/controller.h"
#include "gridemu/controller/http_api.h"

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
    o.log = [](std::string_view) {};
    auto c = controller::Controller::Start(o);
    ASSERT_TRUE(c.ok()) << c.status().ToString();
    controller_ = std::move(c).value();
    controller::HttpApiOptions h;
    h.port = 0;
    auto s = controller::HttpApiServer::Start(controller_->service(), h);
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    server_ = std::move(s).value();
    cli::SimAgentOptions a;
    a.controller = "inproc://client-test";
    a.context = &context_;
    auto agent = cli::SimAgent::Start(a);
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
  std::unique_ptr<cli::SimAgent> agent_;
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

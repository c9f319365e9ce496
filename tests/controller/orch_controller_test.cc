// The Controller (controller.h) driven end to end by the simulated agent
// (node-agent/process_agent.h: tasks are host processes) over inproc:// and ipc://:
// lifecycle, failures, cancel, heartbeat timeout, malformed messages and a
// controller restart (resume or fail, never hang). No privileges needed.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>
#include <zmq.hpp>

#include "gridemu/controller/controller.h"
#include "gridemu/node-agent/process_agent.h"
#include "gridemu/controller/results.h"
#include "gridemu/v1/agent.pb.h"

namespace gridemu::controller {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using std::chrono::milliseconds;
using std::chrono::seconds;
using S = ExperimentState;

std::string Read(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

// A tiny experiment: two hosts and a router; `tasks` is the workload block.
std::string Experiment(const std::string& name, const std::string& workload,
                       const std::string& extra = "", const std::string& duration = "20s") {
  return "name: " + name + "\nduration: " + duration +
         "\nseed: 5\n"
         "topology:\n"
         "  nodes: {h1: {}, h2: {}, r: {kind: router}}\n"
         "  links:\n"
         "    - {endpoints: [h1, r], rate: 10mbit, delay: 5ms}\n"
         "    - {endpoints: [h2, r], rate: 10mbit, delay: 5ms}\n"
         "workload:\n" +
         workload + extra;
}

template <typename F>
bool Eventually(F f, milliseconds timeout = seconds(10)) {
  const auto end = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < end) {
    if (f()) return true;
    std::this_thread::sleep_for(milliseconds(10));
  }
  return f();
}

class OrchControllerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string t = (fs::temp_directory_path() / "gridemu-orch-XXXXXX").string();
    dir_ = ::mkdtemp(t.data());
    endpoint_ = "inproc://orch-" + std::to_string(::getpid()) + "-" +
                ::testing::UnitTest::GetInstance()->current_test_info()->name();
  }
  void TearDown() override {
    agent_.reset();
    controller_.reset();
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  ControllerOptions Options() {
    ControllerOptions o;
    o.db_path = dir_ + "/controller.db";
    o.agents_endpoint = endpoint_;
    o.context = endpoint_.rfind("inproc://", 0) == 0 ? &context_ : nullptr;
    o.results_dir = dir_ + "/results";
    o.heartbeat_interval = milliseconds(100);
    o.heartbeat_timeout = milliseconds(800);
    o.stop_grace = milliseconds(1500);
    o.teardown_timeout = seconds(3);
    o.task_timeout_grace = milliseconds(500);
    o.recovery_timeout = seconds(3);
    o.log = [this](std::string_view line) {
      std::lock_guard<std::mutex> l(log_mu_);
      log_.emplace_back(line);
    };
    return o;
  }

  void StartController(ControllerOptions o) {
    auto c = Controller::Start(std::move(o));
    ASSERT_TRUE(c.ok()) << c.status().ToString();
    controller_ = std::move(c).value();
  }

  void StartAgent(agent::ProcessAgentOptions o = {}) {
    o.controller = endpoint_;
    o.context = endpoint_.rfind("inproc://", 0) == 0 ? &context_ : nullptr;
    if (o.work_dir.empty()) o.work_dir = dir_ + "/agent";
    auto a = agent::ProcessAgent::Start(std::move(o));
    ASSERT_TRUE(a.ok()) << a.status().ToString();
    agent_ = std::move(a).value();
    ASSERT_TRUE(controller_->WaitForAgents(1, seconds(10)));
  }

  std::string Submit(const std::string& yaml) {
    SubmitRequest r;
    r.yaml = yaml;
    r.filename = "exp.yaml";
    auto s = controller_->service().Submit(r);
    EXPECT_TRUE(s.ok()) << s.status().ToString();
    return s.ok() ? s->id : "";
  }

  ExperimentRecord WaitFinal(const std::string& id, milliseconds t = seconds(20)) {
    auto r = controller_->WaitFinal(id, t);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return r.ok() ? *r : ExperimentRecord{};
  }

  bool WaitState(const std::string& id, S state, milliseconds t = seconds(10)) {
    return Eventually(
        [&] {
          auto r = controller_->store().GetExperiment(id);
          return r.ok() && r->state == state;
        },
        t);
  }

  std::vector<S> States(const std::string& id) {
    std::vector<S> out;
    auto t = controller_->store().ListTransitions(id);
    EXPECT_TRUE(t.ok());
    for (const auto& x : *t) {
      EXPECT_FALSE(x.reason.empty()) << "every transition has a reason";
      out.push_back(x.to);
    }
    return out;
  }

  std::string Log() {
    std::lock_guard<std::mutex> l(log_mu_);
    std::string s;
    for (const auto& x : log_) s += x + "\n";
    return s;
  }

  json Manifest(const ExperimentRecord& rec) {
    EXPECT_FALSE(rec.results_dir.empty());
    return json::parse(Read(rec.results_dir + "/manifest.json"), nullptr, false);
  }

  std::string dir_;
  std::string endpoint_;
  zmq::context_t context_{1};
  std::mutex log_mu_;
  std::vector<std::string> log_;
  std::unique_ptr<Controller> controller_;
  std::unique_ptr<agent::ProcessAgent> agent_;
};

TEST_F(OrchControllerTest, DeployRunTasksExitFinish) {
  StartController(Options());
  StartAgent();
  const std::string id =
      Submit(Experiment("ok",
                        "  - name: hello\n"
                        "    on: [h1, h2]\n"
                        "    at: 200ms\n"
                        "    stagger: 100ms\n"
                        "    run: echo hi from $GRIDEMU_NODE; echo x > $GRIDEMU_OUT/out.txt\n"
                        "    wait: true\n"
                        "  - name: server\n"
                        "    on: r\n"
                        "    run: sleep 60\n",
                        "events:\n"
                        "  - {at: 100ms, link: h1--r, set: {loss: 1%}}\n"
                        "  - {at: 15s, link: h1--r, down: true}\n"
                        "collect:\n"
                        "  metrics: {interval: 100ms}\n"));
  ExperimentRecord rec = WaitFinal(id);
  EXPECT_EQ(rec.state, S::kFinished) << rec.failure_reason << "\n" << Log();
  EXPECT_EQ(States(id), (std::vector<S>{S::kSubmitted, S::kPlaced, S::kDeploying, S::kRunning,
                                        S::kCollecting, S::kFinished}));
  auto tasks = controller_->store().ListTasks(id);
  ASSERT_TRUE(tasks.ok());
  ASSERT_EQ(tasks->size(), 3u);
  for (const auto& t : *tasks) {
    if (t.task_name == "hello") {
      EXPECT_EQ(t.state, TaskState::kExited) << t.task_id << " " << t.reason;
      EXPECT_EQ(t.exit_code, 0);
      ASSERT_TRUE(t.start_unix_ns && t.end_unix_ns);
      EXPECT_EQ(Read(t.stdout_path), "hi from " + t.vnode + "\n");
      EXPECT_EQ(t.stdout_path,
                rec.results_dir + "/tasks/hello/" + std::to_string(t.index) + ".stdout");
    } else {
      EXPECT_EQ(t.state, TaskState::kKilled);
      EXPECT_TRUE(StoppedAtEnd(t)) << t.reason;
    }
  }
  // hello/1 starts 100 ms after hello/0.
  EXPECT_GE(*(*tasks)[1].start_unix_ns - *(*tasks)[0].start_unix_ns, 90'000'000);
  auto events = controller_->store().ListEvents(id);
  ASSERT_TRUE(events.ok());
  ASSERT_EQ(events->size(), 2u);
  EXPECT_EQ((*events)[0].state, EventState::kApplied);
  ASSERT_TRUE((*events)[0].applied_ns.has_value());
  EXPECT_GE(*(*events)[0].applied_ns, 100'000'000);
  EXPECT_EQ((*events)[1].state, EventState::kPending) << "the run ended before 15s";
  auto metrics = controller_->store().ListMetrics(id);
  ASSERT_TRUE(metrics.ok());
  EXPECT_FALSE(metrics->empty());

  json m = Manifest(rec);
  ASSERT_FALSE(m.is_discarded());
  EXPECT_EQ(m["state"], "finished");
  EXPECT_EQ(m["reason"], "every waited task ended");
  EXPECT_EQ(m["experiment"]["id"], id);
  EXPECT_EQ(m["pnodes"][0]["host_id"], "sim");
  EXPECT_EQ(Read(rec.results_dir + "/files/h1/out.txt"), "x\n");
  EXPECT_TRUE(fs::exists(rec.results_dir + "/tasks.csv"));
  EXPECT_FALSE(fs::exists(rec.results_dir + "/.work")) << "working files are removed";
  auto events_csv = Read(rec.results_dir + "/events.csv");
  EXPECT_NE(events_csv.find("1,0,link-down,h1--r,15.000000,,,not reached: the run ended first"),
            std::string::npos)
      << events_csv;

  // Teardown happened; nothing left on the agent.
  EXPECT_TRUE(Eventually([&] { return agent_->Stats().experiments.empty(); }));
  EXPECT_EQ(agent_->Stats().teardowns, 1);
  EXPECT_EQ(agent_->Stats().processes, 0u);
  auto progress = controller_->Progress(id);
  ASSERT_TRUE(progress.ok());
  EXPECT_TRUE(progress->final);
  EXPECT_EQ(progress->tasks_ended, 3u);
  EXPECT_EQ(progress->tasks_failed, 0u) << "the server was stopped at the end, not failed";
}

TEST_F(OrchControllerTest, FailingAndTimedOutTasksAndDurationEnd) {
  StartController(Options());
  StartAgent();
  const std::string id = Submit(Experiment("fails",
                                           "  - name: bad\n"
                                           "    on: h1\n"
                                           "    run: exit 3\n"
                                           "  - name: slow\n"
                                           "    on: h2\n"
                                           "    run: sleep 30\n"
                                           "    timeout: 300ms\n"
                                           "  - name: missing\n"
                                           "    on: r\n"
                                           "    argv: [/nonexistent/program]\n",
                                           "", "1500ms"));
  ExperimentRecord rec = WaitFinal(id);
  EXPECT_EQ(rec.state, S::kFinished);
  auto tasks = controller_->store().ListTasks(id);
  ASSERT_TRUE(tasks.ok());
  std::map<std::string, TaskRecord> by;
  for (const auto& t : *tasks) by[t.task_id] = t;
  EXPECT_EQ(by["bad/0"].state, TaskState::kExited);
  EXPECT_EQ(by["bad/0"].exit_code, 3);
  EXPECT_EQ(by["slow/0"].state, TaskState::kKilled);
  EXPECT_EQ(by["slow/0"].signal, 9);
  EXPECT_EQ(by["slow/0"].reason, "timeout");
  EXPECT_EQ(by["missing/0"].state, TaskState::kFailed);
  EXPECT_NE(by["missing/0"].reason.find("/nonexistent/program"), std::string::npos);
  EXPECT_EQ(Manifest(rec)["reason"], "duration reached (1.5s)");
}

TEST_F(OrchControllerTest, DeployFailureFailsWithTheAgentsErrorsAndTearsDown) {
  StartController(Options());
  agent::ProcessAgentOptions o;
  o.fail_deploy = "cannot create namespace: out of memory";
  StartAgent(o);
  const std::string id =
      Submit(Experiment("df", "  - {name: t, on: h1, run: 'true', wait: true}\n"));
  ExperimentRecord rec = WaitFinal(id);
  EXPECT_EQ(rec.state, S::kFailed);
  EXPECT_EQ(rec.failure_reason,
            "deploy failed on sim: vnode h1: cannot create namespace: out of memory");
  EXPECT_EQ(States(id), (std::vector<S>{S::kSubmitted, S::kPlaced, S::kDeploying, S::kFailed}));
  EXPECT_EQ(agent_->Stats().teardowns, 1) << "teardown always";
  EXPECT_EQ(Manifest(rec)["state"], "failed");
  auto tasks = controller_->store().ListTasks(id);
  ASSERT_TRUE(tasks.ok());
  EXPECT_EQ((*tasks)[0].state, TaskState::kPending);
  EXPECT_NE((*tasks)[0].reason.find("not started: deploy failed"), std::string::npos);
}

TEST_F(OrchControllerTest, DeployTimeoutFails) {
  ControllerOptions opt = Options();
  opt.deploy_timeout = milliseconds(400);
  StartController(opt);
  agent::ProcessAgentOptions o;
  o.never_ready = true;
  StartAgent(o);
  const std::string id = Submit(Experiment("dt", "  - {name: t, on: h1, run: 'true'}\n"));
  ExperimentRecord rec = WaitFinal(id);
  EXPECT_EQ(rec.state, S::kFailed);
  EXPECT_EQ(rec.failure_reason, "deploy timed out: no progress from sim for 400ms");
  EXPECT_EQ(agent_->Stats().teardowns, 1);
}

TEST_F(OrchControllerTest, SubmitWithoutAgentIsRefusedAndStoresNothing) {
  StartController(Options());
  SubmitRequest r;
  r.yaml = Experiment("noagent", "  - {name: t, on: h1, run: 'true'}\n");
  auto s = controller_->service().Submit(r);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), StatusCode::kUnavailable);
  EXPECT_NE(s.status().message().find("no agent is registered with the controller at " + endpoint_),
            std::string::npos)
      << s.status().message();
  EXPECT_TRUE(controller_->store().ListExperiments()->empty());
  // An invalid file is reported as such even without agents.
  r.yaml = "name: x\nduration: 1s\nbogus: 1\n";
  s = controller_->service().Submit(r);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.status().message().find("experiment.yaml:3:1: unknown key 'bogus'"),
            std::string::npos)
      << s.status().message();
}

TEST_F(OrchControllerTest, CancelMidRunTearsDownAndMarksCancelled) {
  StartController(Options());
  StartAgent();
  const std::string id = Submit(Experiment(
      "cx", "  - name: long\n    on: [h1, h2]\n    run: sleep 60 & sleep 60\n    wait: true\n"));
  ASSERT_TRUE(WaitState(id, S::kRunning));
  ASSERT_TRUE(Eventually([&] { return agent_->Stats().processes == 2; }));
  auto st = controller_->Cancel(id, "user pressed cancel");
  ASSERT_TRUE(st.ok()) << st.status().ToString();
  EXPECT_EQ(*st, S::kCancelling);
  ExperimentRecord rec = WaitFinal(id);
  EXPECT_EQ(rec.state, S::kCancelled);
  EXPECT_EQ(States(id), (std::vector<S>{S::kSubmitted, S::kPlaced, S::kDeploying, S::kRunning,
                                        S::kCancelling, S::kCancelled}));
  json m = Manifest(rec);
  EXPECT_EQ(m["state"], "cancelled");
  EXPECT_EQ(m["reason"], "user pressed cancel");
  EXPECT_EQ(agent_->Stats().processes, 0u);
  EXPECT_TRUE(agent_->Stats().experiments.empty());
  auto tasks = controller_->store().ListTasks(id);
  for (const auto& t : *tasks) {
    EXPECT_EQ(t.state, TaskState::kKilled);
    EXPECT_EQ(t.reason.rfind("cancelled", 0), 0u) << t.reason;
  }
  // A second cancel: it is final now.
  auto again = controller_->Cancel(id);
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(again.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(again.status().message(), "experiment " + id + " is already cancelled");
}

TEST_F(OrchControllerTest, CancelDuringDeployThroughTheService) {
  StartController(Options());
  agent::ProcessAgentOptions o;
  o.never_ready = true;
  StartAgent(o);
  const std::string id = Submit(Experiment("cd", "  - {name: t, on: h1, run: 'true'}\n"));
  ASSERT_TRUE(WaitState(id, S::kDeploying));
  auto st = controller_->service().Cancel("default", id);
  ASSERT_TRUE(st.ok()) << st.status().ToString();
  EXPECT_EQ(*st, S::kCancelling);
  EXPECT_EQ(WaitFinal(id).state, S::kCancelled);
  EXPECT_EQ(agent_->Stats().teardowns, 1);
  auto other = controller_->service().Cancel("other-slice", id);
  EXPECT_EQ(other.status().code(), StatusCode::kNotFound);
}

TEST_F(OrchControllerTest, SilentAgentIsLostAndItsExperimentFails) {
  StartController(Options());
  StartAgent();
  const std::string id =
      Submit(Experiment("hb", "  - name: long\n    on: h1\n    run: sleep 60\n    wait: true\n"));
  ASSERT_TRUE(WaitState(id, S::kRunning));
  ASSERT_TRUE(Eventually([&] { return agent_->Stats().processes == 1; }));
  agent_->SetSilent(true);
  ExperimentRecord rec = WaitFinal(id, seconds(10));
  EXPECT_EQ(rec.state, S::kFailed);
  EXPECT_EQ(rec.failure_reason.rfind("agent sim lost: no message from agent 'sim' for ", 0), 0u)
      << rec.failure_reason;
  EXPECT_NE(rec.failure_reason.find("(heartbeat timeout 800ms)"), std::string::npos);
  auto host = controller_->store().GetHost("sim");
  ASSERT_TRUE(host.ok());
  EXPECT_EQ(host->state, HostState::kDown);
  json m = Manifest(rec);
  EXPECT_EQ(m["state"], "failed");
  bool noted = false;
  for (const auto& n : m["notes"]) {
    noted = noted || n.get<std::string>().find("sim is not connected") != std::string::npos;
  }
  EXPECT_TRUE(noted) << m["notes"].dump();
  // The agent speaks again: it is told to register, is welcomed without the
  // experiment and removes it: no residue.
  agent_->SetSilent(false);
  EXPECT_TRUE(Eventually([&] { return agent_->Stats().welcomes >= 2; }));
  EXPECT_TRUE(Eventually([&] { return agent_->Stats().processes == 0; }));
  EXPECT_TRUE(agent_->Stats().experiments.empty());
  EXPECT_TRUE(agent_->Stats().kept.empty());
  EXPECT_TRUE(
      Eventually([&] { return controller_->store().GetHost("sim")->state == HostState::kUp; }));
}

TEST_F(OrchControllerTest, MalformedAgentMessagesGetErrorReplies) {
  StartController(Options());
  StartAgent();
  agent_->SendRaw("this is not a protobuf \xff\xff\xff");
  v1::Envelope empty;
  empty.set_request_id(7);
  agent_->SendRaw(empty.SerializeAsString());
  v1::Envelope exec;
  exec.mutable_exec()->set_task_id("x/0");
  agent_->SendRaw(exec.SerializeAsString());
  v1::Envelope te;
  te.set_experiment_id("nope-1");
  te.mutable_task_event()->set_task_id("x/0");
  agent_->SendRaw(te.SerializeAsString());
  v1::Envelope no_exp;
  no_exp.mutable_shard_status()->set_phase(v1::ShardStatus::PHASE_READY);
  agent_->SendRaw(no_exp.SerializeAsString());
  ASSERT_TRUE(Eventually([&] { return agent_->ErrorsReceived().size() >= 5; }))
      << agent_->ErrorsReceived().size();
  auto errors = agent_->ErrorsReceived();
  EXPECT_EQ(errors[0].rfind("invalid argument: malformed message: not a gridemu.v1.Envelope", 0),
            0u)
      << errors[0];
  EXPECT_EQ(errors[1], "invalid argument: envelope without a body");
  EXPECT_EQ(errors[2], "invalid argument: the controller does not accept exec messages");
  EXPECT_EQ(errors[3], "not found: unknown or finished experiment 'nope-1'");
  EXPECT_EQ(errors[4], "invalid argument: shard_status without an experiment_id");

  // A peer that never said hello; a hello whose host id is not its identity.
  zmq::socket_t raw(context_, zmq::socket_type::dealer);
  raw.set(zmq::sockopt::routing_id, "stranger");
  raw.set(zmq::sockopt::linger, 0);
  raw.connect(endpoint_);
  v1::Envelope hb;
  hb.mutable_heartbeat()->set_unix_ms(1);
  raw.send(zmq::buffer(hb.SerializeAsString()));
  v1::Envelope hello;
  hello.mutable_agent_hello()->set_host_id("somebody-else");
  raw.send(zmq::buffer(hello.SerializeAsString()));
  v1::Envelope bad_address;
  bad_address.mutable_agent_hello()->set_host_id("stranger");
  bad_address.mutable_agent_hello()->set_address("10.0.0.300");
  raw.send(zmq::buffer(bad_address.SerializeAsString()));
  for (const char* want :
       {"failed precondition: unknown agent 'stranger': send AgentHello to register first",
        "invalid argument: AgentHello.host_id 'somebody-else' differs from the connection's "
        "identity 'stranger' (the agent's ZeroMQ routing id must be its host id)",
        "invalid argument: AgentHello.address '10.0.0.300' is not an IPv4 address (the pnode's "
        "underlay address, the local end of its VXLAN tunnels)"}) {
    zmq::pollitem_t item{raw.handle(), 0, ZMQ_POLLIN, 0};
    ASSERT_EQ(zmq::poll(&item, 1, milliseconds(5000)), 1) << want;
    zmq::message_t msg;
    ASSERT_TRUE(raw.recv(msg));
    v1::Envelope e;
    ASSERT_TRUE(e.ParseFromArray(msg.data(), static_cast<int>(msg.size())));
    ASSERT_TRUE(e.has_error());
    EXPECT_EQ(e.error().code() + ": " + e.error().message(), want);
  }
  EXPECT_EQ(controller_->store().GetHost("stranger").status().code(), StatusCode::kNotFound);
  // The controller still works.
  const std::string id =
      Submit(Experiment("after", "  - {name: t, on: h1, run: 'true', wait: true}\n"));
  EXPECT_EQ(WaitFinal(id).state, S::kFinished);
}

// --- Restart --------------------------------------------------------------

class OrchRestartTest : public OrchControllerTest {
 protected:
  void SetUp() override {
    OrchControllerTest::SetUp();
    endpoint_ = "ipc://" + dir_ + "/agents.sock";  // agents reconnect by themselves
  }
  void Restart() {
    controller_->Stop();
    controller_.reset();
    StartController(Options());
  }
};

TEST_F(OrchRestartTest, RunningExperimentIsResumedWhenTheAgentStillHoldsIt) {
  StartController(Options());
  StartAgent();
  const std::string id = Submit(Experiment(
      "resume",
      "  - name: quick\n    on: h1\n    run: 'true'\n    wait: true\n"
      "  - name: slow\n    on: h2\n    at: 300ms\n    run: sleep 1.5\n    wait: true\n"
      "  - name: late\n    on: r\n    at: 2500ms\n    run: echo late\n    wait: true\n"));
  ASSERT_TRUE(WaitState(id, S::kRunning));
  ASSERT_TRUE(Eventually([&] {
    auto t = controller_->store().GetTask(id, "slow/0");
    return t.ok() && t->state == TaskState::kRunning;
  }));
  Restart();  // mid-run: slow/0 is running, late/0 not started
  ExperimentRecord rec = WaitFinal(id);
  EXPECT_EQ(rec.state, S::kFinished) << rec.failure_reason << "\n" << Log();
  EXPECT_NE(Log().find("resumed after the controller restart"), std::string::npos) << Log();
  auto tasks = controller_->store().ListTasks(id);
  ASSERT_TRUE(tasks.ok());
  for (const auto& t : *tasks) {
    EXPECT_EQ(t.state, TaskState::kExited) << t.task_id << " " << t.reason;
    EXPECT_EQ(t.exit_code, 0) << t.task_id;
  }
  EXPECT_EQ(agent_->Stats().kept, std::vector<std::string>{id});
  EXPECT_TRUE(Eventually([&] { return agent_->Stats().experiments.empty(); }));
  EXPECT_EQ(Manifest(rec)["state"], "finished");
}

TEST_F(OrchRestartTest, RunningExperimentFailsWhenTheAgentLostTheShard) {
  StartController(Options());
  StartAgent();
  const std::string id =
      Submit(Experiment("lost", "  - name: long\n    on: h1\n    run: sleep 60\n    wait: true\n"));
  ASSERT_TRUE(WaitState(id, S::kRunning));
  controller_->Stop();
  controller_.reset();
  agent_->Forget();  // as an agent restarted without its state
  StartController(Options());
  ExperimentRecord rec = WaitFinal(id);
  EXPECT_EQ(rec.state, S::kFailed);
  EXPECT_EQ(rec.failure_reason,
            "controller restarted; agent sim did not hold the shard (generation 1)");
  EXPECT_EQ(Manifest(rec)["state"], "failed");
  EXPECT_TRUE(agent_->Stats().experiments.empty());
  EXPECT_EQ(agent_->Stats().processes, 0u);
}

TEST_F(OrchRestartTest, AnAgentThatNeverSaysHelloAgainIsRegisteredFromItsRecordAndCleaned) {
  StartController(Options());
  agent::ProcessAgentOptions o;
  o.rehello_on_error = false;
  StartAgent(o);
  const std::string id =
      Submit(Experiment("mute", "  - name: long\n    on: h1\n    run: sleep 60\n    wait: true\n"));
  ASSERT_TRUE(WaitState(id, S::kRunning));
  ASSERT_TRUE(Eventually([&] { return agent_->Stats().processes == 1; }));
  ControllerOptions opt = Options();
  opt.recovery_timeout = seconds(30);  // the implicit registration comes first
  controller_->Stop();
  controller_.reset();
  StartController(opt);
  ExperimentRecord rec = WaitFinal(id, seconds(15));
  EXPECT_EQ(rec.state, S::kFailed);
  EXPECT_EQ(rec.failure_reason,
            "controller restarted; agent sim did not say AgentHello again (it only sends "
            "heartbeats), so its shard cannot be re-synced");
  EXPECT_TRUE(Eventually([&] { return agent_->Stats().experiments.empty(); }))
      << "torn down: no residue";
  EXPECT_EQ(agent_->Stats().processes, 0u);
  EXPECT_NE(Log().find("agent sim sends messages without AgentHello"), std::string::npos);
}

TEST_F(OrchControllerTest, LostAgentThatComesBackWithoutHelloGetsTheTeardownItMissed) {
  StartController(Options());
  agent::ProcessAgentOptions o;
  o.rehello_on_error = false;
  StartAgent(o);
  const std::string id =
      Submit(Experiment("back", "  - name: long\n    on: h1\n    run: sleep 60\n    wait: true\n"));
  ASSERT_TRUE(WaitState(id, S::kRunning));
  ASSERT_TRUE(Eventually([&] { return agent_->Stats().processes == 1; }));
  agent_->SetSilent(true);
  EXPECT_EQ(WaitFinal(id, seconds(10)).state, S::kFailed);
  EXPECT_EQ(agent_->Stats().teardowns, 0);
  agent_->SetSilent(false);
  EXPECT_TRUE(Eventually([&] { return agent_->Stats().teardowns == 1; }, seconds(10)));
  EXPECT_TRUE(Eventually([&] { return agent_->Stats().experiments.empty(); }));
  EXPECT_EQ(agent_->Stats().processes, 0u);
}

TEST_F(OrchRestartTest, DeployingExperimentIsFailedAndTornDown) {
  StartController(Options());
  agent::ProcessAgentOptions o;
  o.never_ready = true;
  StartAgent(o);
  const std::string id = Submit(Experiment("dep", "  - {name: t, on: h1, run: 'true'}\n"));
  ASSERT_TRUE(WaitState(id, S::kDeploying));
  const int teardowns = agent_->Stats().teardowns;
  Restart();
  ExperimentRecord rec = WaitFinal(id);
  EXPECT_EQ(rec.state, S::kFailed);
  EXPECT_EQ(rec.failure_reason, "controller restarted during deploy; the deployment was abandoned");
  EXPECT_TRUE(Eventually([&] { return agent_->Stats().experiments.empty(); }));
  EXPECT_TRUE(agent_->Stats().kept.empty());
  EXPECT_GE(agent_->Stats().teardowns, teardowns + 1);
}

TEST_F(OrchRestartTest, NoAgentComingBackFailsAfterTheRecoveryTimeout) {
  StartController(Options());
  StartAgent();
  const std::string id =
      Submit(Experiment("gone", "  - name: long\n    on: h1\n    run: sleep 60\n    wait: true\n"));
  ASSERT_TRUE(WaitState(id, S::kRunning));
  controller_->Stop();
  controller_.reset();
  agent_->Stop();  // kills its processes: nothing left behind
  agent_.reset();
  ControllerOptions o = Options();
  o.recovery_timeout = milliseconds(500);
  StartController(o);
  ExperimentRecord rec = WaitFinal(id, seconds(5));
  EXPECT_EQ(rec.state, S::kFailed);
  EXPECT_EQ(rec.failure_reason,
            "controller restarted; agent(s) sim did not register again within 500ms");
  json m = Manifest(rec);
  EXPECT_EQ(m["state"], "failed");
}

}  // namespace
}  // namespace gridemu::controller

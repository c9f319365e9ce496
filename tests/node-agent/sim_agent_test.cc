// Simulated agents (sim_agent.h): the protocol driven by hand through a
// ROUTER socket (hello, welcome, deploy with progress and capacity refusal,
// idempotency, errors, exec/signal/events/teardown), and 20 of them in one
// SimAgents serving a real Controller that places an experiment across them
// with METIS, runs it and tears it down. No privileges needed.
#include "gridemu/node-agent/sim_agent.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <map>
#include <thread>
#include <zmq.hpp>

#include "gridemu/controller/controller.h"
#include "gridemu/controller/placement.h"
#include "gridemu/v1/agent.pb.h"

namespace gridemu::agent {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

// SimAgents running on a thread of their own.
class Running {
 public:
  explicit Running(SimAgentOptions o) {
    auto s = SimAgents::Create(o);
    EXPECT_TRUE(s.ok()) << s.status().ToString();
    sim_ = std::move(s).value();
    thread_ = std::thread([this] { status_ = sim_->Run(); });
  }
  ~Running() {
    sim_->Stop();
    thread_.join();
    EXPECT_TRUE(status_.ok()) << status_.ToString();
  }
  SimAgents& sim() { return *sim_; }

 private:
  std::unique_ptr<SimAgents> sim_;
  std::thread thread_;
  Status status_;
};

// A hand-driven controller: a ROUTER socket.
class Router {
 public:
  Router(zmq::context_t& ctx, const std::string& endpoint) : sock_(ctx, zmq::socket_type::router) {
    sock_.set(zmq::sockopt::linger, 0);
    sock_.bind(endpoint);
  }
  // The next message from anyone (identity, envelope); false on timeout.
  bool Recv(std::string* who, v1::Envelope* env, milliseconds timeout = seconds(5)) {
    zmq::pollitem_t item{sock_.handle(), 0, ZMQ_POLLIN, 0};
    if (zmq::poll(&item, 1, timeout) <= 0) return false;
    zmq::message_t id, body;
    if (!sock_.recv(id) || !sock_.recv(body)) return false;
    *who = id.to_string();
    return env->ParseFromArray(body.data(), static_cast<int>(body.size()));
  }
  // The next message from `who` that is not a heartbeat.
  bool RecvFrom(const std::string& who, v1::Envelope* env, milliseconds timeout = seconds(5)) {
    const auto end = std::chrono::steady_clock::now() + timeout;
    std::string from;
    while (std::chrono::steady_clock::now() < end) {
      if (!Recv(&from, env, milliseconds(200))) continue;
      if (from == who && !env->has_heartbeat()) return true;
    }
    return false;
  }
  void Send(const std::string& who, const v1::Envelope& env) {
    SendBytes(who, env.SerializeAsString());
  }
  void SendBytes(const std::string& who, const std::string& bytes) {
    sock_.send(zmq::buffer(who), zmq::send_flags::sndmore);
    sock_.send(zmq::buffer(bytes));
  }

 private:
  zmq::socket_t sock_;
};

std::string Endpoint(const std::string& name) {
  return "inproc://sim-" + std::to_string(::getpid()) + "-" + name;
}

v1::Envelope Deploy(uint64_t request, const std::string& exp, uint64_t gen, int vnodes, int links) {
  v1::Envelope env;
  env.set_request_id(request);
  env.set_experiment_id(exp);
  env.set_generation(gen);
  v1::DeployShard* d = env.mutable_deploy_shard();
  for (int i = 0; i < vnodes; ++i) {
    d->add_vnodes()->set_name("v" + std::to_string(i));
    d->add_hosts()->set_name("v" + std::to_string(i));
  }
  for (int i = 0; i < links; ++i) d->add_links()->set_name("v" + std::to_string(i) + "--x");
  return env;
}

TEST(SimAgent, HelloWelcomeHeartbeatsAndNames) {
  zmq::context_t ctx;
  Router r(ctx, Endpoint("hello"));
  SimAgentOptions o;
  o.controller = Endpoint("hello");
  o.context = &ctx;
  o.host_id = "pn";
  o.count = 3;
  o.max_vnodes = 77;
  Running run(o);
  EXPECT_EQ(run.sim().host_ids(), (std::vector<std::string>{"pn-0000", "pn-0001", "pn-0002"}));
  std::map<std::string, v1::AgentHello> hellos;
  std::string who;
  v1::Envelope env;
  while (hellos.size() < 3 && r.Recv(&who, &env)) {
    ASSERT_TRUE(env.has_agent_hello());
    hellos[who] = env.agent_hello();
  }
  ASSERT_EQ(hellos.size(), 3u);
  const v1::AgentHello& h = hellos["pn-0001"];
  EXPECT_EQ(h.host_id(), "pn-0001");
  EXPECT_EQ(h.capacity().max_vnodes(), 77u);
  EXPECT_GT(h.capacity().cores(), 0u);
  EXPECT_GT(h.capacity().memory_bytes(), 0u);
  ASSERT_EQ(h.capabilities().runtimes_size(), 1);
  EXPECT_EQ(h.capabilities().runtimes(0), "netns");
  EXPECT_EQ(h.capabilities().active_shaping_backend(), "userspace");
  EXPECT_EQ(h.address(), "127.1.0.1");
  EXPECT_FALSE(h.version().empty());
  EXPECT_EQ(h.held_size(), 0);

  // A request before the Welcome is refused.
  r.Send("pn-0000", Deploy(1, "e1", 1, 1, 0));
  ASSERT_TRUE(r.RecvFrom("pn-0000", &env));
  ASSERT_TRUE(env.has_error());
  EXPECT_EQ(env.error().code(), "failed precondition");

  // Welcome with a 50 ms interval: heartbeats follow at about that pace.
  v1::Envelope w;
  w.mutable_welcome()->set_heartbeat_interval_ms(50);
  r.Send("pn-0000", w);
  int beats = 0;
  const auto start = std::chrono::steady_clock::now();
  while (beats < 6 && std::chrono::steady_clock::now() - start < seconds(5)) {
    if (r.Recv(&who, &env, milliseconds(500)) && who == "pn-0000" && env.has_heartbeat()) ++beats;
  }
  const auto took = std::chrono::steady_clock::now() - start;
  EXPECT_EQ(beats, 6);
  EXPECT_GE(took, milliseconds(200));   // not a burst
  EXPECT_LT(took, milliseconds(2000));  // the Welcome's interval, not the default 1 s
  EXPECT_EQ(run.sim().Stats().welcomed, 1u);
}

class SimProtocol : public ::testing::Test {
 protected:
  void SetUp() override {
    endpoint_ = Endpoint(::testing::UnitTest::GetInstance()->current_test_info()->name());
    router_ = std::make_unique<Router>(ctx_, endpoint_);
    SimAgentOptions o;
    o.controller = endpoint_;
    o.context = &ctx_;
    o.host_id = "a";
    o.max_vnodes = 600;
    o.task_time = milliseconds(30);
    run_ = std::make_unique<Running>(o);
    std::string who;
    v1::Envelope env;
    ASSERT_TRUE(router_->Recv(&who, &env));
    ASSERT_EQ(who, "a");
    v1::Envelope w;
    w.mutable_welcome()->set_heartbeat_interval_ms(60000);
    router_->Send("a", w);
  }
  void TearDown() override {
    run_.reset();
    router_.reset();
  }
  // Statuses answering request `req` until READY or FAILED.
  std::vector<v1::ShardStatus> Statuses(uint64_t req) {
    std::vector<v1::ShardStatus> out;
    v1::Envelope env;
    while (router_->RecvFrom("a", &env)) {
      EXPECT_EQ(env.request_id(), req);
      if (!env.has_shard_status()) {
        ADD_FAILURE() << env.ShortDebugString();
        break;
      }
      out.push_back(env.shard_status());
      if (env.shard_status().phase() != v1::ShardStatus::PHASE_DEPLOYING) break;
    }
    return out;
  }
  zmq::context_t ctx_;
  std::string endpoint_;
  std::unique_ptr<Router> router_;
  std::unique_ptr<Running> run_;
};

TEST_F(SimProtocol, DeployProgressCapacityAndIdempotency) {
  // 500 vnodes + 100 links = 600 objects: DEPLOYING at 250 and 500, then READY.
  router_->Send("a", Deploy(7, "e1", 1, 500, 100));
  auto st = Statuses(7);
  ASSERT_EQ(st.size(), 3u);
  EXPECT_EQ(st[0].phase(), v1::ShardStatus::PHASE_DEPLOYING);
  EXPECT_EQ(st[0].done(), 250u);
  EXPECT_EQ(st[0].total(), 600u);
  EXPECT_EQ(st[1].done(), 500u);
  EXPECT_EQ(st[2].phase(), v1::ShardStatus::PHASE_READY);
  EXPECT_EQ(st[2].done(), 600u);
  EXPECT_EQ(run_->sim().Stats().vnodes_held, 500u);

  // The same request again: the same (last) answer, no second deploy.
  router_->Send("a", Deploy(7, "e1", 1, 500, 100));
  st = Statuses(7);
  ASSERT_EQ(st.size(), 1u);
  EXPECT_EQ(st[0].phase(), v1::ShardStatus::PHASE_READY);
  EXPECT_EQ(run_->sim().Stats().deploys_accepted, 1u);

  // 101 more vnodes exceed max_vnodes 600 with the 500 held: refused.
  router_->Send("a", Deploy(8, "e2", 1, 101, 0));
  st = Statuses(8);
  ASSERT_EQ(st.size(), 1u);
  EXPECT_EQ(st[0].phase(), v1::ShardStatus::PHASE_FAILED);
  ASSERT_EQ(st[0].errors_size(), 1);
  EXPECT_EQ(st[0].errors(0).object(), "shard");
  EXPECT_NE(st[0].errors(0).message().find("holds 500 of at most 600"), std::string::npos)
      << st[0].errors(0).message();
  EXPECT_EQ(run_->sim().Stats().deploys_refused, 1u);
  EXPECT_EQ(run_->sim().Stats().vnodes_held, 500u);
  // 100 fit.
  router_->Send("a", Deploy(9, "e2", 1, 100, 0));
  st = Statuses(9);
  ASSERT_FALSE(st.empty());
  EXPECT_EQ(st.back().phase(), v1::ShardStatus::PHASE_READY);
  EXPECT_EQ(run_->sim().Stats().vnodes_held, 600u);

  // Older and newer generations.
  v1::Envelope env;
  router_->Send("a", Deploy(10, "e2", 0 + 1, 100, 0));  // same gen, new request: READY again
  st = Statuses(10);
  ASSERT_EQ(st.size(), 1u);
  EXPECT_EQ(st[0].phase(), v1::ShardStatus::PHASE_READY);
  router_->Send("a", Deploy(11, "e2", 2, 100, 0));
  ASSERT_TRUE(router_->RecvFrom("a", &env));
  ASSERT_TRUE(env.has_error());
  EXPECT_EQ(env.error().code(), "unimplemented");

  // Teardown: TornDown with the count; capacity is free again.
  v1::Envelope td;
  td.set_request_id(12);
  td.set_experiment_id("e1");
  td.set_generation(1);
  td.mutable_teardown()->set_experiment_id("e1");
  router_->Send("a", td);
  ASSERT_TRUE(router_->RecvFrom("a", &env));
  ASSERT_TRUE(env.has_torn_down()) << env.ShortDebugString();
  EXPECT_EQ(env.torn_down().vnodes_removed(), 500u);
  EXPECT_EQ(env.request_id(), 12u);
  EXPECT_EQ(run_->sim().Stats().vnodes_held, 100u);
}

TEST_F(SimProtocol, TasksEventsAndErrors) {
  v1::Envelope env;
  // Exec before the deploy: failed precondition.
  v1::Envelope x;
  x.set_request_id(2);
  x.set_experiment_id("e1");
  x.set_generation(1);
  x.mutable_exec()->set_task_id("t/0");
  x.mutable_exec()->set_vnode("v1");
  x.mutable_exec()->set_shell("sleep 1");
  router_->Send("a", x);
  ASSERT_TRUE(router_->RecvFrom("a", &env));
  ASSERT_TRUE(env.has_error());
  EXPECT_EQ(env.error().code(), "failed precondition");

  router_->Send("a", Deploy(1, "e1", 1, 3, 2));
  ASSERT_EQ(Statuses(1).back().phase(), v1::ShardStatus::PHASE_READY);

  // Exec: STARTED, then EXITED(0) after task_time.
  x.set_request_id(3);
  router_->Send("a", x);
  ASSERT_TRUE(router_->RecvFrom("a", &env));
  ASSERT_TRUE(env.has_task_event()) << env.ShortDebugString();
  EXPECT_EQ(env.task_event().state(), v1::TaskEvent::STATE_STARTED);
  EXPECT_EQ(env.request_id(), 3u);
  ASSERT_TRUE(router_->RecvFrom("a", &env));
  ASSERT_TRUE(env.has_task_event());
  EXPECT_EQ(env.task_event().state(), v1::TaskEvent::STATE_EXITED);
  EXPECT_EQ(env.task_event().exit_code(), 0);
  EXPECT_EQ(env.task_event().reason(), "exited");
  EXPECT_GE(env.task_event().end_unix_ns(), env.task_event().start_unix_ns() + 20'000'000u);

  // Unknown vnode; Signal ending a task early.
  x.set_request_id(4);
  x.mutable_exec()->set_task_id("t/1");
  x.mutable_exec()->set_vnode("nope");
  router_->Send("a", x);
  ASSERT_TRUE(router_->RecvFrom("a", &env));
  EXPECT_EQ(env.error().code(), "not found");
  x.set_request_id(5);
  x.mutable_exec()->set_vnode("v2");
  router_->Send("a", x);
  ASSERT_TRUE(router_->RecvFrom("a", &env));
  EXPECT_EQ(env.task_event().state(), v1::TaskEvent::STATE_STARTED);
  v1::Envelope sig;
  sig.set_request_id(6);
  sig.set_experiment_id("e1");
  sig.set_generation(1);
  sig.mutable_signal()->set_task_id("t/1");
  sig.mutable_signal()->set_signal("kill");
  router_->Send("a", sig);
  ASSERT_TRUE(router_->RecvFrom("a", &env));
  ASSERT_TRUE(env.has_task_event());
  EXPECT_EQ(env.task_event().state(), v1::TaskEvent::STATE_EXITED);
  EXPECT_EQ(env.task_event().signal(), 9);
  EXPECT_EQ(env.request_id(), 5u);  // the Exec's: the task's events answer it

  // ApplyEvent on a known and an unknown link.
  v1::Envelope ev;
  ev.set_request_id(7);
  ev.set_experiment_id("e1");
  ev.set_generation(1);
  ev.mutable_apply_event()->set_event_id("ev0");
  ev.mutable_apply_event()->mutable_link_state()->set_link("v1--x");
  router_->Send("a", ev);
  ASSERT_TRUE(router_->RecvFrom("a", &env));
  ASSERT_TRUE(env.has_event_applied()) << env.ShortDebugString();
  EXPECT_EQ(env.event_applied().event_id(), "ev0");
  ev.set_request_id(8);
  ev.mutable_apply_event()->mutable_link_state()->set_link("v2--x");
  router_->Send("a", ev);
  ASSERT_TRUE(router_->RecvFrom("a", &env));
  EXPECT_EQ(env.error().code(), "not found");

  // Malformed bytes and a message agents do not take.
  router_->SendBytes("a", std::string("\xff\xff\xff", 3));
  ASSERT_TRUE(router_->RecvFrom("a", &env));
  EXPECT_EQ(env.error().code(), "invalid argument");
  v1::Envelope bad;
  bad.set_request_id(9);
  bad.mutable_torn_down()->set_experiment_id("e1");
  router_->Send("a", bad);
  ASSERT_TRUE(router_->RecvFrom("a", &env));
  EXPECT_EQ(env.error().code(), "invalid argument");
  EXPECT_EQ(run_->sim().Stats().execs, 2u);
}

// 20 agents in one SimAgents, a real controller placing with METIS.
TEST(SimAgentController, TwentyAgentsDeployAcrossAndFinish) {
  namespace fs = std::filesystem;
  std::string tmpl = (fs::temp_directory_path() / "gridemu-simtest-XXXXXX").string();
  const std::string dir = ::mkdtemp(tmpl.data());
  zmq::context_t ctx;
  controller::ControllerOptions co;
  co.db_path = ":memory:";
  co.agents_endpoint = Endpoint("ctl");
  co.context = &ctx;
  co.results_dir = dir + "/results";
  co.heartbeat_interval = milliseconds(200);
  co.placer = std::make_shared<controller::PartitionPlacer>();
  co.log = [](std::string_view) {};
  auto c = controller::Controller::Start(co);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  {
    SimAgentOptions o;
    o.controller = Endpoint("ctl");
    o.context = &ctx;
    o.host_id = "pn";
    o.count = 20;
    o.max_vnodes = 10;
    Running run(o);
    ASSERT_TRUE((*c)->WaitForAgents(20, seconds(10)));
    EXPECT_EQ((*c)->Agents().size(), 20u);

    // A router and 60 hosts: 61 vnodes, at least 7 pnodes of 10.
    controller::SubmitRequest req;
    req.yaml =
        "name: sim\nduration: 30s\nseed: 3\n"
        "topology:\n"
        "  nodes: {r: {kind: router}}\n"
        "  groups:\n"
        "    peers: {count: 60, name: \"p{i}\", link_to: r, link: {rate: 10mbit, delay: 5ms}}\n"
        "workload:\n"
        "  - {name: job, on: peers, run: \"true\", wait: true}\n";
    auto s = (*c)->service().Submit(req);
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    auto rec = (*c)->WaitFinal(s->id, seconds(30));
    ASSERT_TRUE(rec.ok()) << rec.status().ToString();
    EXPECT_EQ(rec->state, controller::ExperimentState::kFinished) << rec->failure_reason;
    const SimAgentStats st = run.sim().Stats();
    EXPECT_GE(st.deploys_accepted, 7u);
    EXPECT_EQ(st.shards_ready, st.deploys_accepted);
    EXPECT_EQ(st.deploys_refused, 0u);
    EXPECT_EQ(st.execs, 60u);
    EXPECT_GE(st.teardowns, st.deploys_accepted);
    EXPECT_EQ(st.vnodes_held, 0u);  // all torn down
    EXPECT_EQ(st.welcomed, 20u);
  }
  c->reset();
  std::error_code ec;
  fs::remove_all(dir, ec);
}

}  // namespace
}  // namespace gridemu::agent

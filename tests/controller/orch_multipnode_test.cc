// The Controller (controller.h) across several pnodes, without privileges:
//  - scripted agents (FakeAgent below: a DEALER that records what it gets and
//    acknowledges it) with underlay addresses: METIS/pinned placement over two
//    pnodes, the cross-pnode link in both shards with its tunnel, link events
//    sent to both pnodes, node actions to the vnode's pnode, disjoint VNI
//    blocks for concurrent experiments, the placement report in the store;
//  - process agents (node-agent/process_agent.h) without addresses: an infeasible experiment refused
//    at Submit (nothing stored), a cross-pnode link to a pnode without an
//    address failed before any DeployShard, a lost pnode under
//    on_pnode_failure: fail and continue (its vnodes named), and a restarted
//    agent reconciling through Welcome.keep;
//  - Store::AllocateVnis() (blocks, reuse, persistence, exhaustion).
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <mutex>
#include <set>
#include <thread>
#include <zmq.hpp>

#include "gridemu/controller/controller.h"
#include "gridemu/node-agent/process_agent.h"
#include "gridemu/controller/placement.h"
#include "gridemu/v1/agent.pb.h"

namespace gridemu::controller {
namespace {

namespace fs = std::filesystem;
using std::chrono::milliseconds;
using std::chrono::seconds;
using S = ExperimentState;

template <typename F>
bool Eventually(F f, milliseconds timeout = seconds(10)) {
  const auto end = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < end) {
    if (f()) return true;
    std::this_thread::sleep_for(milliseconds(10));
  }
  return f();
}

// A scripted agent: says AgentHello (with an address), heartbeats, answers
// DeployShard READY, ApplyEvent applied, Exec started + exited 0, Teardown
// torn down; records every DeployShard and ApplyEvent.
class FakeAgent {
 public:
  FakeAgent(zmq::context_t& ctx, std::string endpoint, std::string host, std::string address,
            uint32_t max_vnodes = 1000, std::string backend = "",
            std::vector<std::string> parameters = {})
      : ctx_(ctx),
        endpoint_(std::move(endpoint)),
        host_(std::move(host)),
        address_(std::move(address)),
        max_vnodes_(max_vnodes),
        backend_(std::move(backend)),
        parameters_(std::move(parameters)) {
    thread_ = std::thread([this] { Loop(); });
  }
  ~FakeAgent() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }
  std::vector<v1::DeployShard> Deploys() {
    std::lock_guard l(mu_);
    return deploys_;
  }
  std::vector<v1::ApplyEvent> Events() {
    std::lock_guard l(mu_);
    return events_;
  }
  int Teardowns() {
    std::lock_guard l(mu_);
    return teardowns_;
  }

 private:
  void Send(zmq::socket_t& s, const v1::Envelope& env) {
    std::string bytes = env.SerializeAsString();
    (void)s.send(zmq::buffer(bytes), zmq::send_flags::dontwait);
  }
  void Loop() {
    zmq::socket_t s(ctx_, zmq::socket_type::dealer);
    s.set(zmq::sockopt::routing_id, host_);
    s.set(zmq::sockopt::linger, 0);
    s.connect(endpoint_);
    v1::Envelope hello;
    hello.set_request_id(1);
    v1::AgentHello* h = hello.mutable_agent_hello();
    h->set_host_id(host_);
    h->set_address(address_);
    h->mutable_capacity()->set_cores(4);
    h->mutable_capacity()->set_memory_bytes(uint64_t{1} << 33);
    h->mutable_capacity()->set_max_vnodes(max_vnodes_);
    h->mutable_capabilities()->add_runtimes("netns");
    h->mutable_capabilities()->set_active_shaping_backend(backend_);
    for (const std::string& p : parameters_) h->mutable_capabilities()->add_shaping_parameters(p);
    Send(s, hello);
    auto next_beat = std::chrono::steady_clock::now();
    while (!stop_) {
      if (std::chrono::steady_clock::now() >= next_beat) {
        v1::Envelope hb;
        hb.mutable_heartbeat()->set_unix_ms(1);
        Send(s, hb);
        next_beat = std::chrono::steady_clock::now() + milliseconds(100);
      }
      zmq::pollitem_t item{s.handle(), 0, ZMQ_POLLIN, 0};
      zmq::poll(&item, 1, milliseconds(20));
      zmq::message_t msg;
      while (s.recv(msg, zmq::recv_flags::dontwait)) {
        v1::Envelope in;
        if (!in.ParseFromArray(msg.data(), static_cast<int>(msg.size()))) continue;
        v1::Envelope out;
        out.set_request_id(in.request_id());
        out.set_experiment_id(in.experiment_id());
        out.set_generation(in.generation());
        switch (in.body_case()) {
          case v1::Envelope::kDeployShard: {
            {
              std::lock_guard l(mu_);
              deploys_.push_back(in.deploy_shard());
            }
            out.mutable_shard_status()->set_phase(v1::ShardStatus::PHASE_READY);
            out.mutable_shard_status()->set_total(in.deploy_shard().vnodes_size() +
                                                  in.deploy_shard().links_size());
            Send(s, out);
            break;
          }
          case v1::Envelope::kApplyEvent:
            {
              std::lock_guard l(mu_);
              events_.push_back(in.apply_event());
            }
            out.mutable_event_applied()->set_event_id(in.apply_event().event_id());
            out.mutable_event_applied()->set_applied_unix_ns(1);
            Send(s, out);
            break;
          case v1::Envelope::kExec: {
            out.mutable_task_event()->set_task_id(in.exec().task_id());
            out.mutable_task_event()->set_state(v1::TaskEvent::STATE_STARTED);
            Send(s, out);
            out.mutable_task_event()->set_state(v1::TaskEvent::STATE_EXITED);
            out.mutable_task_event()->set_exit_code(0);
            Send(s, out);
            break;
          }
          case v1::Envelope::kTeardown:
            {
              std::lock_guard l(mu_);
              ++teardowns_;
            }
            out.mutable_torn_down()->set_experiment_id(in.experiment_id());
            Send(s, out);
            break;
          default:
            break;
        }
      }
    }
  }

  zmq::context_t& ctx_;
  const std::string endpoint_, host_, address_;
  const uint32_t max_vnodes_;
  const std::string backend_;
  const std::vector<std::string> parameters_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
  std::mutex mu_;
  std::vector<v1::DeployShard> deploys_;
  std::vector<v1::ApplyEvent> events_;
  int teardowns_ = 0;
};

const v1::LinkSpec* FindLink(const v1::DeployShard& s, const std::string& name) {
  for (const auto& l : s.links()) {
    if (l.name() == name) return &l;
  }
  return nullptr;
}

class MultiPnodeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string t = (fs::temp_directory_path() / "gridemu-ctl-multi-XXXXXX").string();
    dir_ = ::mkdtemp(t.data());
    endpoint_ = "inproc://ctl-multi-" + std::to_string(::getpid()) + "-" +
                ::testing::UnitTest::GetInstance()->current_test_info()->name();
  }
  void TearDown() override {
    fakes_.clear();
    sims_.clear();
    controller_.reset();
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  ControllerOptions Options(PlacementAlgorithm algo = PlacementAlgorithm::kMetis) {
    ControllerOptions o;
    o.db_path = dir_ + "/controller.db";
    o.agents_endpoint = endpoint_;
    o.context = &context_;
    o.results_dir = dir_ + "/results";
    o.heartbeat_interval = milliseconds(100);
    o.heartbeat_timeout = milliseconds(800);
    o.stop_grace = milliseconds(1000);
    o.teardown_timeout = seconds(3);
    o.recovery_timeout = seconds(3);
    o.placer = std::make_shared<PartitionPlacer>(algo);
    o.log = [](std::string_view) {};
    return o;
  }
  void StartController(ControllerOptions o) {
    auto c = Controller::Start(std::move(o));
    ASSERT_TRUE(c.ok()) << c.status().ToString();
    controller_ = std::move(c).value();
  }
  FakeAgent& AddFake(const std::string& host, const std::string& address,
                     const std::string& backend = "", std::vector<std::string> parameters = {}) {
    fakes_.push_back(std::make_unique<FakeAgent>(context_, endpoint_, host, address, 1000,
                                                 backend, std::move(parameters)));
    EXPECT_TRUE(controller_->WaitForAgents(fakes_.size() + sims_.size(), seconds(10)));
    return *fakes_.back();
  }
  agent::ProcessAgent& AddSim(const std::string& host, uint32_t max_vnodes = 0) {
    agent::ProcessAgentOptions o;
    o.controller = endpoint_;
    o.context = &context_;
    o.host_id = host;
    o.max_vnodes = max_vnodes;
    o.work_dir = dir_ + "/agent-" + host;
    auto a = agent::ProcessAgent::Start(std::move(o));
    EXPECT_TRUE(a.ok()) << a.status().ToString();
    sims_.push_back(std::move(a).value());
    EXPECT_TRUE(controller_->WaitForAgents(fakes_.size() + sims_.size(), seconds(10)));
    return *sims_.back();
  }
  Result<SubmitResponse> TrySubmit(const std::string& yaml) {
    SubmitRequest r;
    r.yaml = yaml;
    r.filename = "exp.yaml";
    return controller_->service().Submit(r);
  }
  std::string Submit(const std::string& yaml) {
    auto s = TrySubmit(yaml);
    EXPECT_TRUE(s.ok()) << s.status().ToString();
    return s.ok() ? s->id : "";
  }
  bool WaitState(const std::string& id, S state, milliseconds t = seconds(10)) {
    return Eventually(
        [&] {
          auto r = controller_->store().GetExperiment(id);
          return r.ok() && r->state == state;
        },
        t);
  }
  ExperimentRecord WaitFinal(const std::string& id, milliseconds t = seconds(20)) {
    auto r = controller_->WaitFinal(id, t);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return r.ok() ? *r : ExperimentRecord{};
  }

  zmq::context_t context_{1};
  std::string dir_, endpoint_;
  std::unique_ptr<Controller> controller_;
  std::vector<std::unique_ptr<FakeAgent>> fakes_;
  std::vector<std::unique_ptr<agent::ProcessAgent>> sims_;
};

// h1 on fa; h2, h3 on fb (pinned): h1--h2 crosses, h2--h3 does not.
std::string CrossYaml(const std::string& name, const std::string& duration = "2s") {
  return "name: " + name + "\nduration: " + duration +
         "\nseed: 3\n"
         "topology:\n"
         "  nodes: {h1: {host: fa}, h2: {host: fb}, h3: {host: fb}}\n"
         "  links:\n"
         "    - {endpoints: [h1, h2], rate: 10mbit, delay: 5ms}\n"
         "    - {endpoints: [h2, h3], rate: 20mbit}\n"
         "events:\n"
         "  - {at: 300ms, link: h1--h2, set: {delay: 50ms}}\n"
         "  - {at: 400ms, link: h1--h2, down: true}\n"
         "  - {at: 500ms, link: h2--h3, down: true}\n"
         "  - {at: 600ms, nodes: h3, action: kill}\n";
}

TEST_F(MultiPnodeTest, CrossPnodeLinkIsTunnelledAndItsEventsGoToBothPnodes) {
  StartController(Options());
  FakeAgent& fa = AddFake("fa", "192.0.2.1");
  FakeAgent& fb = AddFake("fb", "192.0.2.2");
  const std::string id = Submit(CrossYaml("cross"));
  ExperimentRecord rec = WaitFinal(id);
  EXPECT_EQ(rec.state, S::kFinished) << rec.failure_reason;

  // Shards: the cross link on both pnodes, with matching tunnel ends.
  ASSERT_EQ(fa.Deploys().size(), 1u);
  ASSERT_EQ(fb.Deploys().size(), 1u);
  const v1::DeployShard sa = fa.Deploys()[0], sb = fb.Deploys()[0];
  EXPECT_EQ(sa.vnodes_size(), 1);
  EXPECT_EQ(sb.vnodes_size(), 2);
  const v1::LinkSpec* la = FindLink(sa, "h1--h2");
  const v1::LinkSpec* lb = FindLink(sb, "h1--h2");
  ASSERT_NE(la, nullptr);
  ASSERT_NE(lb, nullptr);
  EXPECT_EQ(FindLink(sa, "h2--h3"), nullptr);
  ASSERT_NE(FindLink(sb, "h2--h3"), nullptr);
  EXPECT_FALSE(FindLink(sb, "h2--h3")->has_tunnel());
  EXPECT_EQ(la->tunnel().local_end(), "a");
  EXPECT_EQ(lb->tunnel().local_end(), "b");
  EXPECT_EQ(la->tunnel().remote_address(), "192.0.2.2");
  EXPECT_EQ(lb->tunnel().remote_address(), "192.0.2.1");
  EXPECT_EQ(la->tunnel().vni(), lb->tunnel().vni());
  EXPECT_EQ(la->tunnel().vni(), 4096u);  // the first block of ControllerOptions
  EXPECT_EQ(la->mtu(), 1450u);

  // Events: the cross link's set/down on both, h2--h3 and h3's kill on fb only.
  auto count = [](const std::vector<v1::ApplyEvent>& evs, auto pred) {
    return std::count_if(evs.begin(), evs.end(), pred);
  };
  for (FakeAgent* f : {&fa, &fb}) {
    const auto evs = f->Events();
    EXPECT_EQ(count(evs, [](const v1::ApplyEvent& e) {
                return e.has_link_set() && e.link_set().link() == "h1--h2";
              }),
              1);
    EXPECT_EQ(count(evs, [](const v1::ApplyEvent& e) {
                return e.has_link_state() && e.link_state().link() == "h1--h2" &&
                       !e.link_state().up();
              }),
              1);
  }
  EXPECT_EQ(fa.Events().size(), 2u);
  EXPECT_EQ(fb.Events().size(), 4u);
  EXPECT_EQ(count(fb.Events(), [](const v1::ApplyEvent& e) { return e.has_node_action(); }), 1);
  auto events = controller_->store().ListEvents(id);
  ASSERT_TRUE(events.ok());
  for (const auto& e : *events) {
    EXPECT_EQ(e.state, EventState::kApplied) << e.target << ": " << e.error;
  }

  // The placement report.
  auto p = controller_->store().GetPlacement(id);
  ASSERT_TRUE(p.ok() && p->has_value());
  const PlacementSummary& ps = **p;
  EXPECT_EQ(ps.algorithm, "pinned");
  EXPECT_EQ(ps.cut_links, 1u);
  EXPECT_EQ(ps.cut_rate_bps, 20'000'000u);  // 10 Mbit/s each way
  EXPECT_EQ(ps.vnodes_per_pnode.at("fa"), 1u);
  EXPECT_EQ(ps.vnodes_per_pnode.at("fb"), 2u);
  EXPECT_GE(ps.imbalance, 1.0);  // max load / target load
  EXPECT_EQ(ps.vni_base, 4096u);
  EXPECT_EQ(ps.vni_count, 1u);
  EXPECT_EQ(fa.Teardowns(), 1);
  EXPECT_EQ(fb.Teardowns(), 1);
}

TEST_F(MultiPnodeTest, MetisSpreadsAndConcurrentExperimentsGetDisjointVnis) {
  StartController(Options());
  FakeAgent& fa = AddFake("fa", "192.0.2.1");
  FakeAgent& fb = AddFake("fb", "192.0.2.2");
  // Two 8-vnode rings: METIS splits each over both pnodes (cut 2 links).
  auto ring = [](const std::string& name) {
    std::string y = "name: " + name + "\nduration: 1500ms\ntopology:\n  nodes: {";
    for (int i = 0; i < 8; ++i) y += std::string(i ? ", " : "") + "n" + std::to_string(i) + ": {}";
    y += "}\n  links:\n";
    for (int i = 0; i < 8; ++i) {
      y += "    - {endpoints: [n" + std::to_string(i) + ", n" + std::to_string((i + 1) % 8) +
           "], rate: 1mbit}\n";
    }
    return y;
  };
  const std::string a = Submit(ring("ra"));
  const std::string b = Submit(ring("rb"));
  ASSERT_TRUE(WaitState(a, S::kRunning));
  ASSERT_TRUE(WaitState(b, S::kRunning));
  auto ra = controller_->store().GetExperiment(a);
  auto rb = controller_->store().GetExperiment(b);
  ASSERT_TRUE(ra.ok() && rb.ok());
  ASSERT_GT(ra->vni_count, 0u);
  ASSERT_GT(rb->vni_count, 0u);
  // Disjoint blocks.
  EXPECT_TRUE(ra->vni_base + ra->vni_count <= rb->vni_base ||
              rb->vni_base + rb->vni_count <= ra->vni_base)
      << ra->vni_base << "+" << ra->vni_count << " vs " << rb->vni_base << "+" << rb->vni_count;
  // Every VNI seen by the agents is unique per (experiment, link) and inside its block.
  std::map<std::pair<std::string, std::string>, uint32_t> vni_of;
  std::set<uint32_t> distinct;
  for (FakeAgent* f : {&fa, &fb}) {
    for (const auto& s : f->Deploys()) {
      EXPECT_GT(s.vnodes_size(), 0);  // METIS used both pnodes
      const auto& rec = s.experiment_id() == a ? *ra : *rb;
      for (const auto& l : s.links()) {
        if (!l.has_tunnel()) continue;
        EXPECT_GE(l.tunnel().vni(), rec.vni_base);
        EXPECT_LT(l.tunnel().vni(), rec.vni_base + rec.vni_count);
        auto [it, inserted] = vni_of.emplace(std::make_pair(s.experiment_id(), l.name()),
                                             l.tunnel().vni());
        if (!inserted) EXPECT_EQ(it->second, l.tunnel().vni());  // both halves agree
        distinct.insert(l.tunnel().vni());
      }
    }
  }
  EXPECT_EQ(distinct.size(), vni_of.size());
  EXPECT_EQ(vni_of.size(), ra->vni_count + rb->vni_count);
  auto pa = controller_->store().GetPlacement(a);
  ASSERT_TRUE(pa.ok() && pa->has_value());
  EXPECT_EQ((*pa)->algorithm, "metis-kway");
  EXPECT_EQ((*pa)->vnodes_per_pnode.size(), 2u);
  EXPECT_EQ((*pa)->cut_links, ra->vni_count);
  EXPECT_EQ((*pa)->cut_rate_bps, (*pa)->cut_links * 2'000'000u);  // 1 Mbit/s each way
  EXPECT_EQ(WaitFinal(a).state, S::kFinished);
  EXPECT_EQ(WaitFinal(b).state, S::kFinished);
}

// Concurrent submissions cannot count the same free room twice: 8 threads
// submit a 2-vnode experiment each at once on room for 4; at most 2 pass.
TEST_F(MultiPnodeTest, ConcurrentSubmissionsDoNotShareTheSameRoom) {
  StartController(Options());
  AddSim("sa", 2);
  AddSim("sb", 2);
  constexpr int kThreads = 8;
  std::atomic<int> accepted{0}, refused{0};
  std::atomic<bool> go{false};
  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&, i] {
      while (!go.load()) std::this_thread::yield();
      auto r = TrySubmit("name: c" + std::to_string(i) +
                         "\nduration: 1s\ntopology:\n  nodes: {a: {}, b: {}}\n");
      if (r.ok()) {
        ++accepted;
      } else if (r.status().code() == StatusCode::kResourceExhausted) {
        ++refused;
      }
    });
  }
  go = true;
  for (auto& t : threads) t.join();
  EXPECT_EQ(accepted.load() + refused.load(), kThreads);
  EXPECT_LE(accepted.load(), 2) << "2-vnode experiments accepted on room for 4 vnodes";
  EXPECT_GE(accepted.load(), 1);
  auto list = controller_->store().ListExperiments();
  ASSERT_TRUE(list.ok());
  EXPECT_EQ(list->size(), static_cast<size_t>(accepted.load()));
}

TEST_F(MultiPnodeTest, InfeasibleExperimentsAreRefusedAtSubmitAndNothingIsStored) {
  StartController(Options());
  AddSim("sa", 2);
  AddSim("sb", 2);
  // 5 vnodes, room for 4.
  auto too_big = TrySubmit(
      "name: big\nduration: 1s\ntopology:\n  nodes: {a: {}, b: {}, c: {}, d: {}, e: {}}\n");
  ASSERT_FALSE(too_big.ok());
  EXPECT_EQ(too_big.status().code(), StatusCode::kResourceExhausted);
  EXPECT_NE(too_big.status().message().find("cannot place experiment 'big'"), std::string::npos)
      << too_big.status().message();
  EXPECT_NE(too_big.status().message().find("nothing was stored"), std::string::npos);
  // A pin to a pnode with no agent.
  auto pinned =
      TrySubmit("name: pin\nduration: 1s\ntopology:\n  nodes: {a: {host: p9}, b: {}}\n");
  ASSERT_FALSE(pinned.ok());
  EXPECT_EQ(pinned.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(pinned.status().message().find("p9"), std::string::npos)
      << pinned.status().message();
  auto list = controller_->store().ListExperiments();
  ASSERT_TRUE(list.ok());
  EXPECT_TRUE(list->empty());
  for (const auto& s : sims_) EXPECT_EQ(s->Stats().deploys, 0);
}

// Capabilities at submit: a parameter the backend of a pnode it is placed on cannot
// honour is a file error (HTTP 422) naming link, direction, parameter, backend and pnode;
// nothing is stored or deployed.
TEST_F(MultiPnodeTest, AParameterNoPlacedPnodeHonoursIsRefusedAtSubmit) {
  StartController(Options());
  const std::vector<std::string> userspace{"rate", "delay", "jitter", "loss", "duplicate",
                                           "reorder", "reorder_gap", "queue"};
  std::vector<std::string> netem = userspace;
  netem.push_back("corrupt");
  FakeAgent& u = AddFake("pu", "192.0.2.1", "userspace", userspace);
  FakeAgent& n = AddFake("pn", "192.0.2.2", "netem", netem);
  auto file = [](const std::string& host) {
    return "name: cap\nduration: 5s\ntopology:\n  nodes: {h1: {host: " + host +
           "}, r: {host: " + host + "}}\n  links:\n    - {endpoints: [h1, r], delay: 5ms, "
           "forward: {corrupt: 5%}}\n";
  };
  auto refused = TrySubmit(file("pu"));
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(refused.status().message(),
            "exp.yaml:6:7: link h1--r forward: corrupt: not supported by the userspace backend "
            "of pnode pu (nothing was stored)");
  // A `set` event is checked as well.
  auto by_event = TrySubmit(
      "name: cap\nduration: 5s\ntopology:\n  nodes: {h1: {host: pu}, r: {host: pu}}\n"
      "  links:\n    - {endpoints: [h1, r], delay: 5ms}\n"
      "events:\n  - {at: 1s, link: h1--r, set: {reverse: {corrupt: 1%}}}\n");
  ASSERT_FALSE(by_event.ok());
  EXPECT_EQ(by_event.status().message(),
            "exp.yaml:8:5: link h1--r reverse: corrupt: not supported by the userspace backend "
            "of pnode pu (nothing was stored)");
  auto list = controller_->store().ListExperiments();
  ASSERT_TRUE(list.ok());
  EXPECT_TRUE(list->empty());
  EXPECT_TRUE(u.Deploys().empty());
  // Where it can be honoured, it is accepted.
  const std::string id = Submit(file("pn"));
  EXPECT_FALSE(id.empty());
  EXPECT_TRUE(Eventually([&] { return !n.Deploys().empty(); }));
}

TEST_F(MultiPnodeTest, CrossPnodeLinkWithoutAnAddressIsRefusedAtSubmit) {
  StartController(Options());
  AddSim("sa");
  AddSim("sb");
  auto r = TrySubmit(
      "name: noaddr\nduration: 1s\ntopology:\n  nodes: {a: {host: sa}, b: {host: sb}}\n"
      "  links:\n    - {endpoints: [a, b]}\n");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kFailedPrecondition) << r.status().ToString();
  const std::string msg = r.status().message();
  EXPECT_NE(msg.find("announced no underlay address"), std::string::npos) << msg;
  EXPECT_NE(msg.find("sa, sb"), std::string::npos) << msg;
  EXPECT_NE(msg.find("nothing was stored"), std::string::npos) << msg;
  EXPECT_TRUE(controller_->store().ListExperiments()->empty());
  for (const auto& s : sims_) EXPECT_EQ(s->Stats().deploys, 0);
}

// Two disconnected halves pinned to sa and sb: no cross-pnode link, so
// SimAgents (no address) can run it.
std::string HalvesYaml(const std::string& name, const std::string& policy) {
  return "name: " + name +
         "\nduration: 6s\nseed: 1\non_pnode_failure: " + policy +
         "\n"
         "topology:\n"
         "  nodes: {a1: {host: sa}, a2: {host: sa}, b1: {host: sb}, b2: {host: sb}, "
         "b3: {host: sb}}\n"
         "  links:\n"
         "    - {endpoints: [a1, a2]}\n"
         "    - {endpoints: [b1, b2]}\n"
         "    - {endpoints: [b2, b3]}\n"
         "workload:\n"
         "  - name: wa\n    on: a1\n    run: sleep 60\n"
         "  - name: wb\n    on: b1\n    run: sleep 60\n";
}

TEST_F(MultiPnodeTest, LostPnodeFailsTheExperimentAndNamesItsVnodes) {
  StartController(Options());
  agent::ProcessAgent& sa = AddSim("sa");
  agent::ProcessAgent& sb = AddSim("sb");
  const std::string id = Submit(HalvesYaml("lostfail", "fail"));
  ASSERT_TRUE(WaitState(id, S::kRunning));
  ASSERT_TRUE(Eventually([&] { return sb.Stats().processes == 1; }));
  sb.SetSilent(true);
  ExperimentRecord rec = WaitFinal(id, seconds(10));
  EXPECT_EQ(rec.state, S::kFailed);
  EXPECT_EQ(rec.failure_reason.rfind("agent sb lost: ", 0), 0u) << rec.failure_reason;
  EXPECT_NE(rec.failure_reason.find("; it held 3 vnodes: b1, b2, b3"), std::string::npos)
      << rec.failure_reason;
  EXPECT_NE(rec.lost_vnodes.find("3 vnodes: b1, b2, b3"), std::string::npos) << rec.lost_vnodes;
  // The live pnode was torn down; the lost one reconciles when it is back:
  // welcomed without the experiment, it removes it.
  EXPECT_TRUE(Eventually([&] { return sa.Stats().experiments.empty(); }));
  sb.SetSilent(false);
  EXPECT_TRUE(Eventually([&] { return sb.Stats().welcomes >= 2; }));
  EXPECT_TRUE(Eventually([&] { return sb.Stats().experiments.empty(); }));
  EXPECT_TRUE(sb.Stats().kept.empty());
  EXPECT_TRUE(Eventually([&] { return sb.Stats().processes == 0; }));
}

TEST_F(MultiPnodeTest, LostPnodeWithContinueGoesOnAndTheAgentIsKeptWhenBack) {
  StartController(Options());
  agent::ProcessAgent& sa = AddSim("sa");
  agent::ProcessAgent& sb = AddSim("sb");
  const std::string id = Submit(HalvesYaml("lostcont", "continue"));
  ASSERT_TRUE(WaitState(id, S::kRunning));
  ASSERT_TRUE(Eventually([&] { return sb.Stats().processes == 1; }));
  sb.SetSilent(true);
  // Lost after the heartbeat timeout; the experiment keeps running.
  ASSERT_TRUE(Eventually(
      [&] { return !controller_->store().GetExperiment(id)->lost_vnodes.empty(); }, seconds(5)));
  auto rec = controller_->store().GetExperiment(id);
  ASSERT_TRUE(rec.ok());
  EXPECT_EQ(rec->state, S::kRunning);
  EXPECT_NE(rec->lost_vnodes.find("pnode sb lost"), std::string::npos) << rec->lost_vnodes;
  EXPECT_NE(rec->lost_vnodes.find("3 vnodes: b1, b2, b3"), std::string::npos);
  auto task = controller_->store().GetTask(id, "wb/0");
  ASSERT_TRUE(task.ok());
  EXPECT_EQ(task->state, TaskState::kLost);
  EXPECT_EQ(controller_->store().GetTask(id, "wa/0")->state, TaskState::kRunning);
  // The agent comes back holding the shard: it is told to keep it.
  sb.SetSilent(false);
  EXPECT_TRUE(Eventually([&] { return sb.Stats().welcomes >= 2; }));
  EXPECT_EQ(sb.Stats().kept, std::vector<std::string>{id});
  ExperimentRecord fin = WaitFinal(id, seconds(15));
  EXPECT_EQ(fin.state, S::kFinished) << fin.failure_reason;
  // Reported once, in the record and the results.
  EXPECT_EQ(fin.lost_vnodes.find('\n'), std::string::npos) << fin.lost_vnodes;
  std::ifstream m(fin.results_dir + "/manifest.json");
  std::string manifest((std::istreambuf_iterator<char>(m)), std::istreambuf_iterator<char>());
  EXPECT_NE(manifest.find("\"lost_vnodes\""), std::string::npos);
  EXPECT_NE(manifest.find("3 vnodes: b1, b2, b3"), std::string::npos) << manifest;
  std::ifstream su(fin.results_dir + "/summary.txt");
  std::string summary((std::istreambuf_iterator<char>(su)), std::istreambuf_iterator<char>());
  EXPECT_NE(summary.find("pnode sb lost"), std::string::npos) << summary;
  // Both pnodes were torn down at the end.
  EXPECT_TRUE(Eventually([&] { return sa.Stats().experiments.empty(); }));
  EXPECT_TRUE(Eventually([&] { return sb.Stats().experiments.empty(); }));
}

TEST(StoreVnis, BlocksAreDisjointPersistentAndFreedByFinalExperiments) {
  std::string t = (fs::temp_directory_path() / "gridemu-ctl-vni-XXXXXX").string();
  const std::string dir = ::mkdtemp(t.data());
  const std::string db = dir + "/c.db";
  auto parse = [](const std::string& name) {
    experiments::Experiment e;
    e.name = name;
    return e;
  };
  std::string a, b, c;
  {
    auto store = Store::Open(db);
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    Store& s = **store;
    auto ea = s.CreateExperiment(parse("a"), "name: a");
    auto eb = s.CreateExperiment(parse("b"), "name: b");
    auto ec = s.CreateExperiment(parse("c"), "name: c");
    ASSERT_TRUE(ea.ok() && eb.ok() && ec.ok()) << ea.status().ToString();
    a = ea->id, b = eb->id, c = ec->id;
    EXPECT_EQ(*s.AllocateVnis(a, 3, 100, 109), 100u);
    EXPECT_EQ(*s.AllocateVnis(b, 4, 100, 109), 103u);
    EXPECT_EQ(*s.AllocateVnis(a, 2, 100, 109), 100u);  // already holds enough
    auto full = s.AllocateVnis(c, 4, 100, 109);
    ASSERT_FALSE(full.ok());
    EXPECT_EQ(full.status().code(), StatusCode::kResourceExhausted);
    EXPECT_NE(full.status().message().find("no block of 4"), std::string::npos);
    EXPECT_EQ(*s.AllocateVnis(c, 3, 100, 109), 107u);
    EXPECT_EQ(s.AllocateVnis(c, 0, 100, 109).status().code(), StatusCode::kInvalidArgument);
    EXPECT_EQ(s.AllocateVnis("nope-1", 1, 100, 109).status().code(), StatusCode::kNotFound);
    ASSERT_TRUE(s.AddLostVnodes(b, "pnode x lost (t): 1 vnode: v").ok());
    ASSERT_TRUE(s.AddLostVnodes(b, "pnode y lost (t): 0 vnodes").ok());
  }
  {
    // Reopened (a restarted controller): blocks kept; a final experiment's freed.
    auto store = Store::Open(db);
    ASSERT_TRUE(store.ok());
    Store& s = **store;
    auto rb = s.GetExperiment(b);
    ASSERT_TRUE(rb.ok());
    EXPECT_EQ(rb->vni_base, 103u);
    EXPECT_EQ(rb->vni_count, 4u);
    EXPECT_EQ(rb->lost_vnodes, "pnode x lost (t): 1 vnode: v\npnode y lost (t): 0 vnodes");
    EXPECT_EQ(*s.AllocateVnis(b, 4, 100, 109), 103u);
    ASSERT_TRUE(s.Transition(b, S::kFailed, "test").ok());
    auto d = s.CreateExperiment(parse("d"), "name: d");
    ASSERT_TRUE(d.ok());
    EXPECT_EQ(*s.AllocateVnis(d->id, 4, 100, 109), 103u);
  }
  std::error_code ec;
  fs::remove_all(dir, ec);
}

// Experiments run one after another do not get the block the previous one just freed
// (a pnode may still hold its VXLAN devices): blocks go round the range, then wrap.
TEST(StoreVnis, BlocksGoRoundTheRangeBeforeAFreedOneIsReused) {
  std::string t = (fs::temp_directory_path() / "gridemu-ctl-vnirr-XXXXXX").string();
  const std::string dir = ::mkdtemp(t.data());
  {
    auto store = Store::Open(dir + "/c.db");
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    Store& s = **store;
    std::vector<uint32_t> got;
    for (const char* name : {"a", "b", "c", "d", "e"}) {
      experiments::Experiment e;
      e.name = name;
      auto rec = s.CreateExperiment(e, std::string("name: ") + name);
      ASSERT_TRUE(rec.ok()) << rec.status().ToString();
      auto vni = s.AllocateVnis(rec->id, 3, 100, 109);
      ASSERT_TRUE(vni.ok()) << vni.status().ToString();
      got.push_back(*vni);
      ASSERT_TRUE(s.Transition(rec->id, S::kFailed, "ended").ok());  // frees its block
    }
    // 100-102, 103-105, 106-108; 109 alone is too short: wrap to 100.
    EXPECT_THAT(got, ::testing::ElementsAre(100u, 103u, 106u, 100u, 103u));
  }
  std::error_code ec;
  fs::remove_all(dir, ec);
}

}  // namespace
}  // namespace gridemu::controller

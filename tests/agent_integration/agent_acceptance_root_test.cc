// Acceptance tests of the agent daemon (issue 4): a real `gridemu-agent`
// process (and, once, an in-process Agent over inproc://) driven through a
// ZeroMQ ROUTER socket that this test owns and that plays the controller.
// Experiments are built as the controller builds them: ParseExperiment() of
// YAML text, PlanAddressing(), BuildShards().
//
// Isolation: every object carries this process's prefix "ga<pid>" (agent
// --prefix, --state-dir /run/ga<pid>-agent, outputs in /tmp/ga<pid>-out);
// every test stops its agent and removes everything of the prefix in
// TearDown (CleanLeftovers), also when it fails. Traffic flows only between
// the test's own namespaces. Needs root; skipped otherwise.
#include <dirent.h>
#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <fstream>
#include <functional>
#include <optional>
#include <sstream>
#include <thread>
#include <zmq.hpp>

#include "gridemu/node-agent/agent.h"
#include "gridemu/node-agent/agent_clean.h"
#include "gridemu/node-agent/shard_plan.h"
#include "gridemu/controller/shard_builder.h"
#include "gridemu/experiments/parse.h"
#include "gridemu/topology/addressing.h"
#include "gridemu/v1/agent.pb.h"

extern char** environ;

namespace gridemu {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using namespace std::chrono_literals;

// ---------------------------------------------------------------------------
// Helpers.

struct Cmd {
  int code = -1;
  std::string out;
};

Cmd Shell(const std::string& cmd) {
  Cmd r;
  FILE* f = ::popen((cmd + " 2>&1").c_str(), "r");
  if (f == nullptr) return r;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) r.out.append(buf, n);
  int st = ::pclose(f);
  r.code = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return r;
}

std::string ReadFile(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

const std::string& Prefix() {
  static const std::string p = "ga" + std::to_string(::getpid());
  return p;
}
std::string RecordsDir() { return "/run/" + Prefix() + "-agent"; }
std::string OutDir() { return "/tmp/" + Prefix() + "-out"; }

std::string Body(const v1::Envelope& e) {
  const auto* f = v1::Envelope::descriptor()->FindFieldByNumber(static_cast<int>(e.body_case()));
  return f == nullptr ? "none" : f->name();
}

// The controller's side: a ROUTER socket, a backlog of received messages.
class TestController {
 public:
  TestController(zmq::context_t& ctx, const std::string& endpoint)
      : sock_(ctx, zmq::socket_type::router) {
    sock_.set(zmq::sockopt::linger, 0);
    sock_.bind(endpoint);
  }

  // The first message (backlog first, then the socket) that satisfies
  // `pred`; others stay in the backlog. Heartbeats are counted, not kept.
  std::optional<v1::Envelope> WaitFor(const std::function<bool(const v1::Envelope&)>& pred,
                                      std::chrono::milliseconds timeout = 30s) {
    for (auto it = backlog_.begin(); it != backlog_.end(); ++it) {
      if (pred(*it)) {
        v1::Envelope e = *it;
        backlog_.erase(it);
        return e;
      }
    }
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      zmq::pollitem_t item{sock_.handle(), 0, ZMQ_POLLIN, 0};
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      zmq::poll(&item, 1, std::max(0ms, left));
      if (!(item.revents & ZMQ_POLLIN)) continue;
      zmq::message_t id, body;
      if (!sock_.recv(id, zmq::recv_flags::dontwait)) continue;
      (void)sock_.recv(body, zmq::recv_flags::none);
      peer_ = id.to_string();
      v1::Envelope e;
      if (!e.ParseFromArray(body.data(), static_cast<int>(body.size()))) {
        ADD_FAILURE() << "agent sent an unparsable message";
        continue;
      }
      if (e.has_heartbeat()) {
        ++heartbeats_;
        heartbeat_times_.push_back(std::chrono::steady_clock::now());
        continue;
      }
      if (pred(e)) return e;
      if (backlog_.size() > 10000) backlog_.pop_front();
      backlog_.push_back(e);
    }
    return std::nullopt;
  }

  // The next message answering `request_id` of `experiment` (any body).
  std::optional<v1::Envelope> Answer(uint64_t request_id, const std::string& experiment = "",
                                     std::chrono::milliseconds timeout = 30s) {
    return WaitFor(
        [&](const v1::Envelope& e) {
          return e.request_id() == request_id && e.experiment_id() == experiment &&
                 !e.has_metrics_batch() && !e.has_agent_hello();
        },
        timeout);
  }

  // The final ShardStatus (READY or FAILED) of a request.
  std::optional<v1::Envelope> FinalStatus(uint64_t rid, const std::string& exp,
                                          std::chrono::milliseconds timeout = 60s) {
    return WaitFor(
        [&](const v1::Envelope& e) {
          return e.request_id() == rid && e.experiment_id() == exp &&
                 (e.has_error() || (e.has_shard_status() &&
                                    e.shard_status().phase() != v1::ShardStatus::PHASE_DEPLOYING));
        },
        timeout);
  }

  // The TaskEvent of `task_id` in state `state`.
  std::optional<v1::TaskEvent> TaskEvent(const std::string& task_id, v1::TaskEvent::State state,
                                         std::chrono::milliseconds timeout = 30s) {
    auto e = WaitFor(
        [&](const v1::Envelope& x) {
          return x.has_task_event() && x.task_event().task_id() == task_id &&
                 x.task_event().state() == state;
        },
        timeout);
    if (!e) return std::nullopt;
    return e->task_event();
  }

  void Send(v1::Envelope e) {
    std::string bytes;
    e.SerializeToString(&bytes);
    SendRaw(bytes);
  }
  void SendRaw(const std::string& bytes) {
    ASSERT_FALSE(peer_.empty()) << "no agent has spoken yet";
    sock_.send(zmq::buffer(peer_), zmq::send_flags::sndmore);
    sock_.send(zmq::buffer(bytes), zmq::send_flags::none);
  }

  void Welcome(const std::vector<std::pair<std::string, uint64_t>>& keep = {}) {
    v1::Envelope e;
    e.mutable_welcome()->set_heartbeat_interval_ms(200);
    e.mutable_welcome()->set_controller_version("test");
    for (const auto& [exp, gen] : keep) {
      v1::ExperimentHeld* k = e.mutable_welcome()->add_keep();
      k->set_experiment_id(exp);
      k->set_generation(gen);
    }
    Send(e);
  }

  int heartbeats() const { return heartbeats_; }
  void ClearBacklog() { backlog_.clear(); }
  // The longest time between two heartbeats received in [from, to], counting
  // from `from` and up to `to`.
  std::chrono::milliseconds MaxHeartbeatGap(std::chrono::steady_clock::time_point from,
                                            std::chrono::steady_clock::time_point to) const {
    auto last = from;
    std::chrono::steady_clock::duration gap{0};
    for (auto t : heartbeat_times_) {
      if (t < from || t > to) continue;
      gap = std::max(gap, t - last);
      last = t;
    }
    gap = std::max(gap, to - last);
    return std::chrono::duration_cast<std::chrono::milliseconds>(gap);
  }

 private:
  std::vector<std::chrono::steady_clock::time_point> heartbeat_times_;
  zmq::socket_t sock_;
  std::string peer_;
  std::deque<v1::Envelope> backlog_;
  int heartbeats_ = 0;
};

// A gridemu-agent child process with its log in a file.
class AgentProcess {
 public:
  AgentProcess(const std::string& endpoint, const std::string& log) : log_(log) {
    std::vector<std::string> args = {GRIDEMU_AGENT_BIN,
                                     "--controller",
                                     endpoint,
                                     "--host-id",
                                     "pnode-" + Prefix(),
                                     "--prefix",
                                     Prefix(),
                                     "--state-dir",
                                     RecordsDir(),
                                     "--heartbeat-ms",
                                     "200",
                                     "--log-level",
                                     "debug"};
    std::vector<char*> argv;
    for (std::string& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
    int rc = posix_spawn(&pid_, GRIDEMU_AGENT_BIN, &fa, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&fa);
    EXPECT_EQ(rc, 0) << "cannot start " << GRIDEMU_AGENT_BIN;
    if (rc != 0) pid_ = -1;
  }
  ~AgentProcess() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      Wait();
    }
  }
  // Sends `sig` and waits for the exit; returns the wait status.
  int Kill(int sig) {
    if (pid_ <= 0) return -1;
    ::kill(pid_, sig);
    return Wait();
  }
  int Wait() {
    int st = 0;
    while (::waitpid(pid_, &st, 0) < 0 && errno == EINTR) {
    }
    pid_ = -1;
    return st;
  }
  std::string Log() const { return ReadFile(log_); }

 private:
  std::string log_;
  pid_t pid_ = -1;
};

// An experiment as the controller ships it: one shard, all on this pnode.
v1::DeployShard BuildShard(const std::string& yaml, const std::string& exp, uint64_t gen) {
  Result<experiments::Experiment> e = experiments::ParseExperiment(yaml, exp + ".yaml");
  EXPECT_TRUE(e.ok()) << e.status().ToString();
  if (!e.ok()) return {};
  Result<topology::AddressPlan> plan = topology::PlanAddressing(e->topology);
  EXPECT_TRUE(plan.ok()) << plan.status().ToString();
  if (!plan.ok()) return {};
  controller::ShardOptions so;
  so.output_dir = OutDir() + "/" + exp;
  auto shards = controller::BuildShards(
      *e, exp, gen, std::vector<uint32_t>(e->topology.num_vnodes(), 0), *plan, so);
  EXPECT_TRUE(shards.ok()) << shards.status().ToString();
  if (!shards.ok()) return {};
  return (*shards)[0];
}

v1::Envelope Request(uint64_t rid, const std::string& exp, uint64_t gen) {
  v1::Envelope e;
  e.set_request_id(rid);
  e.set_experiment_id(exp);
  e.set_generation(gen);
  return e;
}

// Namespaces of `exp`: its vnodes' and, with `wire`, its wire namespace
// ("<prefix>-<exp>-_wire", shard_plan.h).
int CountNetns(const std::string& exp, bool wire = false) {
  const std::string p = Prefix() + "-" + exp + "-";
  int n = 0;
  if (DIR* d = ::opendir("/run/netns")) {
    while (dirent* e = ::readdir(d)) {
      const std::string name = e->d_name;
      n += name.rfind(p, 0) == 0 && (wire || name != p + agent::ShardPlan::kWireVnode);
    }
    ::closedir(d);
  }
  return n;
}

// Every kind of object of `exp` that could be left on the host, one line each.
std::string LeftoversOf(const std::string& exp) {
  std::string out;
  const std::string tag = Prefix() + ":" + exp + ":";
  if (int n = CountNetns(exp, /*wire=*/true)) out += std::to_string(n) + " namespaces\n";
  Cmd links = Shell("ip -d -o link show | grep -F '" + tag + "'");
  if (!links.out.empty()) out += "interfaces: " + links.out;
  Cmd rules = Shell("iptables-save 2>/dev/null | grep -F 'gridemu:" + exp + ":'");
  if (!rules.out.empty()) out += "rules: " + rules.out;
  Cmd qd =
      Shell("for i in $(ip -o link show | grep -F '" + tag +
            "' | cut -d: -f2 | cut -d@ -f1); do tc qdisc show dev $i | grep -F 'htb 1:'; done");
  if (!qd.out.empty()) out += "qdiscs: " + qd.out;
  Cmd cg = Shell("find /sys/fs/cgroup -maxdepth 8 -type d -path '*/" + Prefix() + "/" + exp + "*'");
  if (!cg.out.empty()) out += "cgroups: " + cg.out;
  Cmd procs = Shell("grep -s -l -F '/" + Prefix() + "/" + exp + "/' /proc/[0-9]*/cgroup");
  if (!procs.out.empty()) out += "processes: " + procs.out;
  Cmd rec = Shell("ls " + RecordsDir() + " 2>/dev/null | grep -F '" + exp + ".'");
  if (!rec.out.empty()) out += "records: " + rec.out;
  if (::access(("/run/" + Prefix() + "/" + exp).c_str(), F_OK) == 0) out += "state dir\n";
  return out;
}

// The avg (or min) RTT in ms of a ping's summary line, or -1.
double AvgRtt(const std::string& text, bool min = false) {
  size_t p = text.find("rtt min/avg/max/mdev = ");
  if (p == std::string::npos) return -1;
  double mn = -1, avg = -1;
  std::sscanf(text.c_str() + p, "rtt min/avg/max/mdev = %lf/%lf", &mn, &avg);
  return min ? mn : avg;
}

// ---------------------------------------------------------------------------

class AgentAcceptance : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root (namespaces, cgroups, qdiscs, rules)";
    static int counter = 0;
    const int n = counter++;
    exp_ = "a" + std::to_string(n);
    endpoint_ = "ipc:///tmp/" + Prefix() + "-" + std::to_string(n) + ".sock";
    log_ = "/tmp/" + Prefix() + "-agent-" + std::to_string(n) + ".log";
    ::unlink(log_.c_str());
    ctl_ = std::make_unique<TestController>(ctx_, endpoint_);
  }

  void TearDown() override {
    if (::geteuid() != 0) return;
    if (agent_) {
      agent_->Kill(SIGTERM);
      if (HasFailure() || std::getenv("GRIDEMU_AGENT_TEST_LOG") != nullptr) {
        std::printf("---- agent log ----\n%s\n", agent_->Log().c_str());
      }
      agent_.reset();
    }
    ctl_.reset();
    agent::CleanOptions co;
    co.prefix = Prefix();
    co.agent_state_dir = RecordsDir();
    Result<agent::CleanReport> rep = agent::CleanLeftovers(co);
    EXPECT_TRUE(rep.ok()) << rep.status().ToString();
    if (rep.ok()) {
      EXPECT_TRUE(rep->errors.empty()) << rep->errors.front();
    }
    Shell("rm -rf " + OutDir() + " " + log_ + " /tmp/" + Prefix() + "-*.sock");
  }

  // Starts the agent process and completes the handshake; returns the Hello.
  v1::AgentHello StartAgent(const std::vector<std::pair<std::string, uint64_t>>& keep = {},
                            bool welcome = true) {
    agent_ = std::make_unique<AgentProcess>(endpoint_, log_);
    auto hello = ctl_->WaitFor([](const v1::Envelope& e) { return e.has_agent_hello(); }, 30s);
    EXPECT_TRUE(hello.has_value()) << "no AgentHello; log:\n" << agent_->Log();
    if (!hello) return {};
    if (welcome) ctl_->Welcome(keep);
    return hello->agent_hello();
  }

  // Deploys and waits for READY.
  void Deploy(const v1::DeployShard& shard, uint64_t rid) {
    v1::Envelope e = Request(rid, shard.experiment_id(), shard.generation());
    *e.mutable_deploy_shard() = shard;
    ctl_->Send(e);
    auto st = ctl_->FinalStatus(rid, shard.experiment_id(), 120s);
    ASSERT_TRUE(st.has_value()) << "no final ShardStatus";
    ASSERT_TRUE(st->has_shard_status()) << Body(*st) << " " << st->error().message();
    std::string errs;
    for (const auto& oe : st->shard_status().errors())
      errs += oe.object() + ": " + oe.message() + "\n";
    ASSERT_EQ(st->shard_status().phase(), v1::ShardStatus::PHASE_READY) << errs;
  }

  // Runs a shell command in a vnode and waits for its end.
  v1::TaskEvent Run(const std::string& vnode, const std::string& cmd, uint64_t gen = 1,
                    uint64_t timeout_ms = 0) {
    const std::string task = "t" + std::to_string(++tasks_);
    v1::Envelope e = Request(1000 + tasks_, exp_, gen);
    e.mutable_exec()->set_task_id(task);
    e.mutable_exec()->set_vnode(vnode);
    e.mutable_exec()->set_shell(cmd);
    e.mutable_exec()->set_timeout_ms(timeout_ms);
    ctl_->Send(e);
    auto ev = ctl_->TaskEvent(task, v1::TaskEvent::STATE_EXITED, 60s);
    EXPECT_TRUE(ev.has_value()) << "task " << task << " (" << cmd << ") never ended";
    return ev.value_or(v1::TaskEvent{});
  }

  void Teardown(uint64_t rid, uint32_t expect_vnodes) {
    v1::Envelope e = Request(rid, exp_, 1);
    e.mutable_teardown()->set_experiment_id(exp_);
    ctl_->Send(e);
    auto td = ctl_->Answer(rid, exp_, 60s);
    ASSERT_TRUE(td.has_value());
    ASSERT_TRUE(td->has_torn_down()) << Body(*td) << " " << td->error().message();
    EXPECT_EQ(td->torn_down().vnodes_removed(), expect_vnodes);
    EXPECT_EQ(td->torn_down().errors_size(), 0);
    EXPECT_EQ(LeftoversOf(exp_), "");
  }

  zmq::context_t ctx_;
  std::unique_ptr<TestController> ctl_;
  std::unique_ptr<AgentProcess> agent_;
  std::string exp_, endpoint_, log_;
  int tasks_ = 0;
};

// h0 - r0 - r1 - ... - r49 - h1: ping, TTL, iperf3, a 10 ms delay set at run
// time, metrics, teardown.
TEST_F(AgentAcceptance, ChainOfFiftyRouters) {
  const std::string yaml = R"(
name: chain
duration: 10m
topology:
  nodes:
    h0: {}
    h1: {}
  generate:
    - {model: line, n: 50, prefix: r}
  links:
    - {endpoints: [h0, r0], rate: 1gbit}
    - {endpoints: [r49, h1]}
events:
  # Never fires (this test plays the controller and sends the event itself); it
  # marks h0--r0 as reshaped, so that the agent deploys it through the wire
  # namespace where a delay set at run time can hold its packets.
  - {at: 9m, link: h0--r0, set: {delay: 10ms}}
collect:
  metrics: {interval: 300ms}
)";
  v1::AgentHello hello = StartAgent();
  EXPECT_EQ(hello.host_id(), "pnode-" + Prefix());
  EXPECT_GT(hello.capacity().cores(), 0u);
  EXPECT_GT(hello.capacity().memory_bytes(), 0u);
  EXPECT_THAT(hello.capabilities().runtimes(), testing::Contains("netns"));
  EXPECT_FALSE(hello.capabilities().kernel_release().empty());
  EXPECT_FALSE(hello.capabilities().active_shaping_backend().empty());
  EXPECT_EQ(hello.held_size(), 0);
  v1::DeployShard shard = BuildShard(yaml, exp_, 1);
  ASSERT_EQ(shard.vnodes_size(), 52);
  const auto t0 = std::chrono::steady_clock::now();
  ASSERT_NO_FATAL_FAILURE(Deploy(shard, 1));
  std::printf("[agent] chain of 52 vnodes deployed in %.3f s\n",
              std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  EXPECT_GT(ctl_->heartbeats(), 0);

  // Host to host, by name (the vnodes' /etc/hosts): 50 routers on the way.
  v1::TaskEvent ping = Run("h0", "ping -n -c 2 -i 0.2 -W 3 h1");
  ASSERT_EQ(ping.exit_code(), 0) << ReadFile(ping.stdout_path());
  EXPECT_EQ(ping.reason(), "exited");
  EXPECT_THAT(ReadFile(ping.stdout_path()), HasSubstr("ttl=14"));  // 64 - 50 hops
  EXPECT_GT(ping.end_unix_ns(), ping.start_unix_ns());
  EXPECT_THAT(ping.stdout_path(), HasSubstr(OutDir() + "/" + exp_ + "/h0/"));
  // TTL 51 is enough; 50 expires at r49, which says so.
  EXPECT_EQ(Run("h0", "ping -n -c 1 -W 3 -t 51 h1").exit_code(), 0);
  v1::TaskEvent ttl = Run("h0", "ping -n -c 1 -W 3 -t 50 h1");
  EXPECT_NE(ttl.exit_code(), 0);
  EXPECT_THAT(ReadFile(ttl.stdout_path()), HasSubstr("Time to live exceeded"));

  // iperf3 through the chain.
  {
    v1::Envelope srv = Request(50, exp_, 1);
    srv.mutable_exec()->set_task_id("iperf-server");
    srv.mutable_exec()->set_vnode("h1");
    srv.mutable_exec()->add_argv("iperf3");
    srv.mutable_exec()->add_argv("-s");
    srv.mutable_exec()->add_argv("-1");
    ctl_->Send(srv);
    ASSERT_TRUE(ctl_->TaskEvent("iperf-server", v1::TaskEvent::STATE_STARTED).has_value());
    std::this_thread::sleep_for(300ms);
    v1::TaskEvent client = Run("h0", "iperf3 -c h1 -t 2 -f m");
    const std::string out = ReadFile(client.stdout_path());
    EXPECT_EQ(client.exit_code(), 0) << out << ReadFile(client.stderr_path());
    EXPECT_THAT(out, HasSubstr("receiver"));
    auto server = ctl_->TaskEvent("iperf-server", v1::TaskEvent::STATE_EXITED);
    ASSERT_TRUE(server.has_value());
    EXPECT_EQ(server->exit_code(), 0);
  }

  // 10 ms each way on h0--r0, set at run time: +20 ms round trip.
  // The minimum of 10 RTTs: the delay line adds at least the delay, and a
  // loaded 2-core host can only add scheduling delay on top of it.
  const std::string rtt_cmd = "ping -n -q -c 10 -i 0.05 -W 3 h1";
  const std::string before_out = ReadFile(Run("h0", rtt_cmd).stdout_path());
  const double before = AvgRtt(before_out, true);
  ASSERT_GT(before, 0) << before_out;
  v1::Envelope ev = Request(60, exp_, 1);
  ev.mutable_apply_event()->set_event_id("slow");
  ev.mutable_apply_event()->mutable_link_set()->set_link("h0--r0");
  ev.mutable_apply_event()->mutable_link_set()->mutable_forward()->set_delay_ns(10'000'000);
  ev.mutable_apply_event()->mutable_link_set()->mutable_reverse()->set_delay_ns(10'000'000);
  ctl_->Send(ev);
  auto applied = ctl_->Answer(60, exp_);
  ASSERT_TRUE(applied.has_value());
  ASSERT_TRUE(applied->has_event_applied()) << Body(*applied) << applied->error().message();
  EXPECT_FALSE(applied->event_applied().has_error()) << applied->event_applied().error().message();
  EXPECT_EQ(applied->event_applied().event_id(), "slow");
  EXPECT_GT(applied->event_applied().applied_unix_ns(), 0u);
  const std::string after_out = ReadFile(Run("h0", rtt_cmd).stdout_path());
  const double after = AvgRtt(after_out, true);
  std::printf(
      "[agent] RTT h0->h1 over 51 links (min of 10): %.3f ms, with 10 ms each way on "
      "h0--r0: %.3f ms (avg %.3f -> %.3f ms)\n",
      before, after, AvgRtt(before_out), AvgRtt(after_out));
  EXPECT_NEAR(after - before, 20.0, 1.0) << after_out;
  EXPECT_LT(AvgRtt(after_out) - AvgRtt(before_out), 25.0) << after_out;

  // Metrics of the shaped link and of the vnodes.
  auto mb = ctl_->WaitFor(
      [&](const v1::Envelope& e) {
        if (!e.has_metrics_batch() || e.experiment_id() != exp_) return false;
        for (const auto& l : e.metrics_batch().links()) {
          if (l.link() == "h0--r0" && l.delayed() > 0) return true;
        }
        return false;
      },
      10s);
  ASSERT_TRUE(mb.has_value()) << "no MetricsBatch with the delayed link";
  EXPECT_EQ(mb->metrics_batch().vnodes_size(), 52);

  Teardown(99, 52);
}

// Tasks: output files, timeout, Signal kill of a task whose processes forked,
// and the OOM killer in a 64 MiB vnode.
TEST_F(AgentAcceptance, TasksKillAndOom) {
  const std::string yaml = R"(
name: tasks
duration: 10m
topology:
  nodes:
    small: {resources: {memory: 64MiB}}
    big: {}
  links:
    - {endpoints: [small, big]}
)";
  StartAgent();
  ASSERT_NO_FATAL_FAILURE(Deploy(BuildShard(yaml, exp_, 1), 1));

  v1::TaskEvent echo = Run("big", "echo hello $GRIDEMU_NODE; echo oops >&2; exit 3");
  EXPECT_EQ(echo.reason(), "exited");
  EXPECT_EQ(echo.exit_code(), 3);
  EXPECT_EQ(ReadFile(echo.stdout_path()), "hello big\n");
  EXPECT_EQ(ReadFile(echo.stderr_path()), "oops\n");

  v1::TaskEvent slow = Run("big", "sleep 30", 1, 300);
  EXPECT_EQ(slow.reason(), "timeout");

  // A task that forks: background children, a grandchild in a subshell.
  const std::string marker = std::to_string(800000 + ::getpid() % 100000);
  v1::Envelope x = Request(20, exp_, 1);
  x.mutable_exec()->set_task_id("forker");
  x.mutable_exec()->set_vnode("big");
  x.mutable_exec()->set_shell("sleep " + marker + " & sleep " + marker + " & (sleep " + marker +
                              " &) ; sh -c 'sleep " + marker + " & wait' & wait");
  ctl_->Send(x);
  ASSERT_TRUE(ctl_->TaskEvent("forker", v1::TaskEvent::STATE_STARTED).has_value());
  std::string pids;
  for (int i = 0; i < 100; ++i) {
    pids = Shell("pgrep -f -x 'sleep " + marker + "'").out;
    if (std::count(pids.begin(), pids.end(), '\n') >= 4) break;
    std::this_thread::sleep_for(50ms);
  }
  ASSERT_GE(std::count(pids.begin(), pids.end(), '\n'), 4) << pids;
  v1::Envelope sig = Request(21, exp_, 1);
  sig.mutable_signal()->set_task_id("forker");
  sig.mutable_signal()->set_signal("kill");
  ctl_->Send(sig);
  auto killed = ctl_->TaskEvent("forker", v1::TaskEvent::STATE_EXITED);
  ASSERT_TRUE(killed.has_value());
  EXPECT_EQ(killed->reason(), "signalled");
  EXPECT_EQ(killed->signal(), SIGKILL);
  EXPECT_EQ(Shell("pgrep -f -x 'sleep " + marker + "'").out, "");
  // Signalling it again: it is gone.
  v1::Envelope again = Request(22, exp_, 1);
  again.mutable_signal()->set_task_id("forker");
  again.mutable_signal()->set_signal("term");
  ctl_->Send(again);
  auto err = ctl_->Answer(22, exp_);
  ASSERT_TRUE(err.has_value());
  EXPECT_TRUE(err->has_error());

  // 200 MB in a 64 MiB vnode.
  v1::TaskEvent oom = Run("small", "dd if=/dev/zero of=/dev/null bs=200M count=1");
  EXPECT_EQ(oom.reason(), "oom-killed") << ReadFile(oom.stderr_path());
  // The vnode survives its task.
  EXPECT_EQ(Run("small", "true").exit_code(), 0);

  Teardown(99, 2);
}

// SIGKILL in the middle of a deploy of 200 vnodes, restart, Welcome with an
// empty keep list: every object of the experiment goes.
TEST_F(AgentAcceptance, CrashMidDeployThenReconcile) {
  const std::string yaml = R"(
name: crash
duration: 10m
topology:
  nodes:
    core: {kind: router}
  groups:
    peers:
      count: 199
      name: "p{i}"
      link_to: core
      link: {rate: 10mbit, delay: 1ms}
)";
  StartAgent();
  v1::DeployShard shard = BuildShard(yaml, exp_, 1);
  ASSERT_EQ(shard.vnodes_size(), 200);
  v1::Envelope e = Request(1, exp_, 1);
  *e.mutable_deploy_shard() = shard;
  ctl_->Send(e);
  auto progress = ctl_->WaitFor(
      [&](const v1::Envelope& m) {
        return m.has_shard_status() && m.experiment_id() == exp_ &&
               m.shard_status().phase() == v1::ShardStatus::PHASE_DEPLOYING &&
               m.shard_status().done() > 0;
      },
      60s);
  ASSERT_TRUE(progress.has_value()) << agent_->Log();
  ASSERT_LT(progress->shard_status().done(), progress->shard_status().total());
  int st = agent_->Kill(SIGKILL);
  EXPECT_TRUE(WIFSIGNALED(st));
  const int made = CountNetns(exp_);
  EXPECT_GT(made, 0);
  std::printf("[agent] killed at %u/%u objects; %d namespaces left behind\n",
              progress->shard_status().done(), progress->shard_status().total(), made);
  ctl_->ClearBacklog();

  // Restart: the leftovers are reported, then removed after the Welcome.
  v1::AgentHello hello = StartAgent({}, /*welcome=*/false);
  ASSERT_EQ(hello.held_size(), 1);
  EXPECT_EQ(hello.held(0).experiment_id(), exp_);
  EXPECT_EQ(hello.held(0).generation(), 1u);
  EXPECT_EQ(hello.held(0).vnodes(), static_cast<uint32_t>(made));
  ctl_->Welcome({});
  auto td = ctl_->WaitFor(
      [&](const v1::Envelope& m) { return m.has_torn_down() && m.experiment_id() == exp_; }, 60s);
  ASSERT_TRUE(td.has_value());
  EXPECT_EQ(td->request_id(), 0u);
  EXPECT_EQ(td->torn_down().vnodes_removed(), static_cast<uint32_t>(made));
  EXPECT_EQ(td->torn_down().errors_size(), 0);
  EXPECT_EQ(LeftoversOf(exp_), "");
  // The agent goes on working.
  ctl_->ClearBacklog();
  v1::Envelope exec = Request(5, exp_, 1);
  exec.mutable_exec()->set_task_id("late");
  exec.mutable_exec()->set_vnode("core");
  exec.mutable_exec()->set_shell("true");
  ctl_->Send(exec);
  auto refused = ctl_->Answer(5, exp_);
  ASSERT_TRUE(refused.has_value());
  EXPECT_EQ(refused->error().code(), "failed precondition");
  int stopped = agent_->Kill(SIGTERM);
  EXPECT_TRUE(WIFEXITED(stopped) && WEXITSTATUS(stopped) == 0) << stopped;
  agent_.reset();
}

// SIGKILL after a complete deploy, restart, Welcome keeps the experiment: the
// agent adopts it (its fail-closed shaping rules are replaced by working
// ones), reports it READY and serves it again.
TEST_F(AgentAcceptance, CrashThenAdopt) {
  const std::string yaml = R"(
name: adopt
duration: 10m
topology:
  nodes: {a: {}, b: {}, r: {kind: router}}
  links:
    - {endpoints: [a, r], delay: 5ms}
    - {endpoints: [r, b], rate: 50mbit}
)";
  StartAgent();
  v1::DeployShard shard = BuildShard(yaml, exp_, 4);
  std::string b_addr;
  for (const auto& h : shard.hosts()) {
    if (h.name() == "b") b_addr = h.addresses(0);
  }
  ASSERT_NO_FATAL_FAILURE(Deploy(shard, 1));
  const std::string ping_b =
      "ip netns exec " + Prefix() + "-" + exp_ + "-a ping -n -c 1 -W 1 " + b_addr;
  EXPECT_EQ(Shell(ping_b).code, 0);
  agent_->Kill(SIGKILL);
  // Fail closed: with no delay line serving the queues, a--r drops packets.
  EXPECT_NE(Shell(ping_b).code, 0);
  ctl_->ClearBacklog();
  v1::AgentHello hello = StartAgent({}, /*welcome=*/false);
  ASSERT_EQ(hello.held_size(), 1);
  EXPECT_EQ(hello.held(0).experiment_id(), exp_);
  EXPECT_EQ(hello.held(0).generation(), 4u);
  EXPECT_EQ(hello.held(0).vnodes(), 3u);
  ctl_->Welcome({{exp_, 4}});
  auto ready = ctl_->WaitFor(
      [&](const v1::Envelope& m) { return m.has_shard_status() && m.experiment_id() == exp_; },
      30s);
  ASSERT_TRUE(ready.has_value());
  EXPECT_EQ(ready->shard_status().phase(), v1::ShardStatus::PHASE_READY)
      << (ready->shard_status().errors_size() ? ready->shard_status().errors(0).message() : "");
  EXPECT_EQ(ready->generation(), 4u);
  v1::TaskEvent ping = Run("a", "ping -n -q -c 5 -i 0.05 -W 2 b", 4);
  EXPECT_EQ(ping.exit_code(), 0) << ReadFile(ping.stdout_path());
  const double rtt = AvgRtt(ReadFile(ping.stdout_path()));
  EXPECT_GT(rtt, 9.5);
  EXPECT_LT(rtt, 13.0);
  v1::Envelope e = Request(99, exp_, 4);
  e.mutable_teardown()->set_experiment_id(exp_);
  ctl_->Send(e);
  auto td = ctl_->Answer(99, exp_);
  ASSERT_TRUE(td.has_value());
  ASSERT_TRUE(td->has_torn_down());
  EXPECT_EQ(td->torn_down().vnodes_removed(), 3u);
  EXPECT_EQ(LeftoversOf(exp_), "");
}

// `gridemu clean` removes the leftovers of a killed agent (namespaces with
// fail-closed NFQUEUE rules, a tagged home-namespace interface, cgroups,
// processes, records) and nothing else: a foreign namespace, a namespace
// named like ours but not in our records, their interfaces.
TEST_F(AgentAcceptance, CleanRemovesOnlyGridemuObjects) {
  const std::string pid = std::to_string(::getpid());
  const std::string foreign = "foreign" + pid;
  const std::string lookalike = Prefix() + "-foreign" + pid;
  const std::string home_foreign = "gaf" + pid;
  const std::string home_ours = "gao" + pid;
  struct Cleanup {
    std::string cmd;
    ~Cleanup() { Shell(cmd); }
  } cleanup{"ip netns del " + foreign + "; ip netns del " + lookalike + "; ip link del " +
            home_foreign + "; ip link del " + home_ours};
  ASSERT_EQ(Shell("ip netns add " + foreign).code, 0);
  ASSERT_EQ(Shell("ip netns add " + lookalike).code, 0);
  // (This kernel has no dummy devices: veth pairs everywhere.)
  ASSERT_EQ(Shell("ip -n " + foreign + " link add fdummy0 type veth peer name fdummy1").code, 0);
  ASSERT_EQ(
      Shell("ip -n " + foreign + " link add fveth0 type veth peer name fveth1 netns " + lookalike)
          .code,
      0);
  ASSERT_EQ(Shell("ip link add " + home_foreign + " type veth peer name " + home_foreign +
                  "p && ip link set " + home_foreign + " alias other:foreign")
                .code,
            0);
  ASSERT_EQ(Shell("ip link add " + home_ours + " type veth peer name " + home_ours +
                  "p && ip link set " + home_ours + " alias " + Prefix() + ":" + exp_ + ":vx")
                .code,
            0);

  const std::string yaml = R"(
name: clean
duration: 10m
topology:
  nodes: {a: {}, b: {}, c: {kind: router}}
  links:
    - {endpoints: [a, c], delay: 2ms}
    - {endpoints: [c, b], rate: 10mbit}
)";
  StartAgent();
  ASSERT_NO_FATAL_FAILURE(Deploy(BuildShard(yaml, exp_, 1), 1));
  v1::TaskEvent bg = Run("a", "sleep 1000 >/dev/null 2>&1 & echo started");
  EXPECT_EQ(bg.exit_code(), 0);
  EXPECT_THAT(Shell("ip netns exec " + Prefix() + "-" + exp_ + "-_wire iptables-save -t raw").out,
              HasSubstr("gridemu:" + exp_ + ":"));
  agent_->Kill(SIGKILL);
  agent_.reset();
  ASSERT_NE(LeftoversOf(exp_), "");

  auto clean = [&](const std::string& args) -> Cmd {
#ifdef GRIDEMU_CLI_BIN
    if (Shell(std::string(GRIDEMU_CLI_BIN) + " clean --help").code == 0) {
      return Shell(std::string(GRIDEMU_CLI_BIN) + " clean --prefix " + Prefix() + " --state-dir " +
                   RecordsDir() + " " + args);
    }
#endif
    agent::CleanOptions co;
    co.prefix = Prefix();
    co.agent_state_dir = RecordsDir();
    co.dry_run = args.find("--dry-run") != std::string::npos;
    Result<agent::CleanReport> r = agent::CleanLeftovers(co);
    Cmd c;
    c.code = r.ok() && r->errors.empty() ? 0 : 1;
    if (r.ok()) {
      for (const std::string& o : r->objects) c.out += "removed " + o + "\n";
    }
    return c;
  };
  Cmd dry = clean("--dry-run");
  EXPECT_EQ(dry.code, 0) << dry.out;
  EXPECT_THAT(dry.out, HasSubstr(Prefix() + "-" + exp_ + "-a"));
  EXPECT_THAT(dry.out, HasSubstr(home_ours));
  EXPECT_THAT(dry.out, Not(HasSubstr(foreign)));
  EXPECT_THAT(dry.out, Not(HasSubstr(home_foreign)));
  EXPECT_EQ(CountNetns(exp_), 3);  // a dry run removes nothing

  Cmd real = clean("");
  EXPECT_EQ(real.code, 0) << real.out;
  std::printf("[agent] gridemu clean:\n%s", real.out.c_str());
  EXPECT_THAT(real.out, HasSubstr("rule"));
  EXPECT_THAT(real.out, HasSubstr("netns " + Prefix() + "-" + exp_ + "-c"));
  EXPECT_THAT(real.out, HasSubstr("process"));
  EXPECT_EQ(LeftoversOf(exp_), "");
  EXPECT_NE(Shell("ip link show " + home_ours).code, 0);
  EXPECT_NE(Shell("ip link show " + home_ours + "p").code, 0);
  // Foreign objects are untouched.
  EXPECT_EQ(Shell("ip -n " + foreign + " link show fdummy0").code, 0);
  EXPECT_EQ(Shell("ip -n " + foreign + " link show fdummy1").code, 0);
  EXPECT_EQ(Shell("ip -n " + foreign + " link show fveth0").code, 0);
  EXPECT_EQ(Shell("ip -n " + lookalike + " link show fveth1").code, 0);
  EXPECT_EQ(Shell("ip link show " + home_foreign).code, 0);
}

// Deploy and teardown as the controller sees them (GRIDEMU_AGENT_SCALE vnodes,
// default 100: a router and its peers, one link each shaped both ways), and
// heartbeats keep coming during the deploy (it runs off the event loop).
TEST_F(AgentAcceptance, DeployThroughAgentKeepsHeartbeats) {
  int n = 100;
  if (const char* e = std::getenv("GRIDEMU_AGENT_SCALE")) n = std::max(2, std::atoi(e));
  const std::string yaml = R"(
name: scale
duration: 10m
topology:
  nodes:
    core: {kind: router}
  groups:
    peers:
      count: )" + std::to_string(n - 1) +
                           R"(
      name: "p{i}"
      link_to: core
      link: {rate: 100mbit}
)";
  StartAgent();
  v1::DeployShard shard = BuildShard(yaml, exp_, 1);
  ASSERT_EQ(shard.vnodes_size(), n);
  ASSERT_TRUE(ctl_->WaitFor([](const v1::Envelope&) { return false; }, 500ms) == std::nullopt);
  const auto t0 = std::chrono::steady_clock::now();
  ASSERT_NO_FATAL_FAILURE(Deploy(shard, 1));
  const auto t1 = std::chrono::steady_clock::now();
  EXPECT_EQ(Run("p0", "ping -n -c 1 -W 2 p" + std::to_string(n - 2)).exit_code(), 0);
  const auto t2 = std::chrono::steady_clock::now();
  ASSERT_NO_FATAL_FAILURE(Teardown(99, static_cast<uint32_t>(n)));
  const auto t3 = std::chrono::steady_clock::now();
  const auto gap = ctl_->MaxHeartbeatGap(t0, t1);
  std::printf(
      "[agent] %d vnodes + %d links shaped both ways, through the agent process: "
      "deploy %.3f s, teardown %.3f s; longest heartbeat gap during the deploy %lld ms "
      "(interval 200 ms)\n",
      n, n - 1, std::chrono::duration<double>(t1 - t0).count(),
      std::chrono::duration<double>(t3 - t2).count(), static_cast<long long>(gap.count()));
  EXPECT_LT(gap, 1000ms);
}

// Protocol rules, with an in-process Agent over inproc:// (as `gridemu run`
// embeds one): Errors for malformed and out-of-order requests, idempotent
// repeats.
TEST_F(AgentAcceptance, InProcessProtocolErrorsAndIdempotency) {
  const std::string inproc = "inproc://" + Prefix() + "-agent";
  TestController ctl(ctx_, inproc);
  agent::AgentOptions opt;
  opt.controller = inproc;
  opt.context = &ctx_;
  opt.host_id = "inproc-" + Prefix();
  opt.prefix = Prefix();
  opt.state_dir = RecordsDir();
  opt.heartbeat = 200ms;
  auto created = agent::Agent::Create(opt);
  ASSERT_TRUE(created.ok()) << created.status().ToString();
  std::unique_ptr<agent::Agent> a = std::move(*created);
  Status run_status;
  std::thread loop([&] { run_status = a->Run(); });
  struct Stopper {
    agent::Agent* a;
    std::thread* t;
    ~Stopper() {
      a->Stop();
      if (t->joinable()) t->join();
    }
  } stopper{a.get(), &loop};

  ASSERT_TRUE(ctl.WaitFor([](const v1::Envelope& e) { return e.has_agent_hello(); }).has_value());
  auto expect_error = [&](uint64_t rid, const std::string& exp, const std::string& code) {
    auto r = ctl.Answer(rid, exp, 10s);
    ASSERT_TRUE(r.has_value()) << "no answer to request " << rid;
    ASSERT_TRUE(r->has_error()) << "request " << rid << " got " << Body(*r);
    EXPECT_EQ(r->error().code(), code) << r->error().message();
  };
  const std::string yaml = R"(
name: proto
duration: 10m
topology:
  nodes: {x: {}, y: {}}
  links:
    - {endpoints: [x, y], rate: 100mbit}
)";
  v1::DeployShard shard = BuildShard(yaml, exp_, 2);

  // Before the Welcome.
  v1::Envelope early = Request(1, exp_, 2);
  *early.mutable_deploy_shard() = shard;
  ctl.Send(early);
  expect_error(1, exp_, "failed precondition");
  ctl.Welcome();
  // Unparsable bytes; an envelope without a body; a message agents do not take.
  ctl.SendRaw(std::string("\xff\xff\xff garbage", 12));
  expect_error(0, "", "invalid argument");
  ctl.Send(Request(3, exp_, 2));
  expect_error(3, exp_, "invalid argument");
  v1::Envelope wrong = Request(4, exp_, 2);
  wrong.mutable_shard_status()->set_phase(v1::ShardStatus::PHASE_READY);
  ctl.Send(wrong);
  expect_error(4, exp_, "invalid argument");
  // Exec before the shard is deployed.
  v1::Envelope exec = Request(5, exp_, 2);
  exec.mutable_exec()->set_task_id("count");
  exec.mutable_exec()->set_vnode("x");
  exec.mutable_exec()->set_shell("echo x >> $GRIDEMU_OUT/count");
  ctl.Send(exec);
  expect_error(5, exp_, "failed precondition");
  EXPECT_EQ(CountNetns(exp_), 0);

  // Deploy; the same request again; the same shard under a new request id.
  v1::Envelope dep = Request(10, exp_, 2);
  *dep.mutable_deploy_shard() = shard;
  ctl.Send(dep);
  auto ready = ctl.FinalStatus(10, exp_);
  ASSERT_TRUE(ready.has_value());
  ASSERT_EQ(ready->shard_status().phase(), v1::ShardStatus::PHASE_READY);
  EXPECT_EQ(CountNetns(exp_), 2);
  ctl.Send(dep);
  auto repeat = ctl.FinalStatus(10, exp_);
  ASSERT_TRUE(repeat.has_value());
  EXPECT_EQ(repeat->SerializeAsString(), ready->SerializeAsString());
  dep.set_request_id(11);
  ctl.Send(dep);
  auto same = ctl.FinalStatus(11, exp_);
  ASSERT_TRUE(same.has_value());
  EXPECT_EQ(same->shard_status().phase(), v1::ShardStatus::PHASE_READY);
  EXPECT_EQ(CountNetns(exp_), 2);
  // An older generation.
  v1::Envelope old = Request(12, exp_, 1);
  *old.mutable_deploy_shard() = BuildShard(yaml, exp_, 1);
  ctl.Send(old);
  expect_error(12, exp_, "failed precondition");
  exec.set_generation(1);
  exec.set_request_id(13);
  ctl.Send(exec);
  expect_error(13, exp_, "failed precondition");
  // Unknown link, unknown vnode, unknown task.
  v1::Envelope ev = Request(14, exp_, 2);
  ev.mutable_apply_event()->set_event_id("bad");
  ev.mutable_apply_event()->mutable_link_set()->set_link("x--nowhere");
  ev.mutable_apply_event()->mutable_link_set()->mutable_forward()->set_delay_ns(1000000);
  ctl.Send(ev);
  expect_error(14, exp_, "not found");
  v1::Envelope na = Request(15, exp_, 2);
  na.mutable_apply_event()->mutable_node_action()->set_action("kill");
  na.mutable_apply_event()->mutable_node_action()->add_vnodes("ghost");
  ctl.Send(na);
  expect_error(15, exp_, "not found");
  v1::Envelope sig = Request(16, exp_, 2);
  sig.mutable_signal()->set_task_id("nope");
  sig.mutable_signal()->set_signal("kill");
  ctl.Send(sig);
  expect_error(16, exp_, "not found");
  EXPECT_EQ(CountNetns(exp_), 2);

  // An Exec, then the same request again: the same events, one run.
  exec.set_generation(2);
  exec.set_request_id(20);
  ctl.Send(exec);
  auto done = ctl.TaskEvent("count", v1::TaskEvent::STATE_EXITED);
  ASSERT_TRUE(done.has_value());
  EXPECT_EQ(done->exit_code(), 0);
  ctl.Send(exec);
  auto done2 = ctl.TaskEvent("count", v1::TaskEvent::STATE_EXITED);
  ASSERT_TRUE(done2.has_value());
  EXPECT_EQ(done2->SerializeAsString(), done->SerializeAsString());
  std::this_thread::sleep_for(200ms);
  EXPECT_EQ(ReadFile(OutDir() + "/" + exp_ + "/x/count"), "x\n");
  // The same task id under a new request: refused.
  exec.set_request_id(21);
  ctl.Send(exec);
  expect_error(21, exp_, "already exists");

  // The controller restarted and does not know the agent: it refuses a
  // heartbeat; the agent says hello again, with what it runs and its tasks.
  v1::Envelope unknown;
  unknown.mutable_error()->set_code("failed precondition");
  unknown.mutable_error()->set_message("unknown agent: send AgentHello to register first");
  ctl.Send(unknown);
  auto rehello = ctl.WaitFor([](const v1::Envelope& e) { return e.has_agent_hello(); }, 10s);
  ASSERT_TRUE(rehello.has_value());
  ASSERT_EQ(rehello->agent_hello().held_size(), 1);
  const v1::ExperimentHeld& held = rehello->agent_hello().held(0);
  EXPECT_EQ(held.experiment_id(), exp_);
  EXPECT_EQ(held.generation(), 2u);
  EXPECT_EQ(held.vnodes(), 2u);
  ASSERT_EQ(held.tasks_size(), 1);
  EXPECT_EQ(held.tasks(0).task_id(), "count");
  EXPECT_EQ(held.tasks(0).state(), v1::TaskEvent::STATE_EXITED);
  ctl.Welcome({{exp_, 2}});
  v1::Envelope after = Request(25, exp_, 2);
  after.mutable_exec()->set_task_id("after");
  after.mutable_exec()->set_vnode("y");
  after.mutable_exec()->set_shell("true");
  ctl.Send(after);
  auto after_done = ctl.TaskEvent("after", v1::TaskEvent::STATE_EXITED);
  ASSERT_TRUE(after_done.has_value());
  EXPECT_EQ(after_done->exit_code(), 0);
  EXPECT_EQ(CountNetns(exp_), 2);

  // Teardown, twice under one request id: one effect, the same answer.
  v1::Envelope td = Request(30, exp_, 2);
  td.mutable_teardown()->set_experiment_id(exp_);
  ctl.Send(td);
  auto gone = ctl.Answer(30, exp_);
  ASSERT_TRUE(gone.has_value());
  ASSERT_TRUE(gone->has_torn_down()) << Body(*gone);
  EXPECT_EQ(gone->torn_down().vnodes_removed(), 2u);
  ctl.Send(td);
  auto gone2 = ctl.Answer(30, exp_);
  ASSERT_TRUE(gone2.has_value());
  EXPECT_EQ(gone2->SerializeAsString(), gone->SerializeAsString());
  EXPECT_EQ(LeftoversOf(exp_), "");
  exec.set_request_id(31);
  ctl.Send(exec);
  expect_error(31, exp_, "failed precondition");
  EXPECT_GT(ctl.heartbeats(), 0);

  a->Stop();
  loop.join();
  EXPECT_TRUE(run_status.ok()) << run_status.ToString();
}

}  // namespace
}  // namespace gridemu

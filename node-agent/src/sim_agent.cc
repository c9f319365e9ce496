// Simulated agents. See sim_agent.h.

#include "gridemu/node-agent/sim_agent.h"

#include <google/protobuf/arena.h>
#include <spdlog/spdlog.h>
#include <sys/eventfd.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>
#include <queue>
#include <set>
#include <unordered_map>
#include <unordered_set>
#include <zmq.hpp>

#include "gridemu/common/clock.h"
#include "gridemu/node-agent/agent_convert.h"
#include "gridemu/node-agent/runtime.h"
#include "gridemu/v1/agent.pb.h"

namespace gridemu::agent {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

namespace {

constexpr size_t kMaxAnswers = 65536;

uint64_t UnixNs() {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                   std::chrono::system_clock::now().time_since_epoch())
                                   .count());
}

struct ReqKey {
  std::string experiment;
  uint64_t generation = 0;
  uint64_t request_id = 0;
  bool operator<(const ReqKey& o) const {
    return std::tie(experiment, generation, request_id) <
           std::tie(o.experiment, o.generation, o.request_id);
  }
};

int SignalNumber(const std::string& s) {
  if (s == "term") return 15;
  if (s == "kill") return 9;
  if (s == "int") return 2;
  if (s == "hup") return 1;
  if (s == "stop") return 19;
  if (s == "cont") return 18;
  return 0;
}

std::string BodyName(v1::Envelope::BodyCase c) {
  const auto* f = v1::Envelope::descriptor()->FindFieldByNumber(static_cast<int>(c));
  return f != nullptr ? f->name() : "unknown";
}

}  // namespace

struct SimAgents::Impl {
  enum class Phase { kDeploying, kReady };
  struct Task {
    ReqKey key;
    v1::TaskEvent last;
    bool running = false;
  };
  struct Exp {
    uint64_t generation = 0;
    Phase phase = Phase::kDeploying;
    uint64_t deploy_seq = 0;
    std::vector<ReqKey> waiters;  // DeployShard requests answered at READY
    v1::ShardStatus last_status;
    std::unordered_set<std::string> vnodes;
    std::unordered_set<std::string> links;
    std::map<std::string, Task> tasks;
  };
  struct One {
    std::string host_id;
    std::string address;  // announced underlay address
    std::unique_ptr<zmq::socket_t> sock;
    bool welcomed = false;
    milliseconds heartbeat{1000};
    Clock::time_point next_hello{}, next_heartbeat{};
    std::map<std::string, Exp> exps;
    std::map<ReqKey, std::vector<std::pair<v1::Envelope::BodyCase, std::string>>> answers;
    std::deque<ReqKey> answer_order;
    uint32_t Held() const {
      uint32_t n = 0;
      for (const auto& [id, e] : exps) n += static_cast<uint32_t>(e.vnodes.size());
      return n;
    }
  };
  // A timed action: a deploy step or a task's end.
  struct Timer {
    Clock::time_point at;
    uint32_t agent = 0;
    std::string experiment;
    uint64_t seq = 0;     // deploy step: the deploy it belongs to
    uint32_t done = 0;    // deploy step: objects done after it
    std::string task_id;  // task end when not empty
    bool operator>(const Timer& o) const { return at > o.at; }
  };

  SimAgentOptions opt;
  std::unique_ptr<zmq::context_t> own_context;
  std::vector<One> agents;
  std::vector<std::string> ids;
  int stop_fd = -1;
  uint64_t next_seq = 0;
  std::priority_queue<Timer, std::vector<Timer>, std::greater<Timer>> timers;
  std::string kernel_release;

  mutable std::mutex stats_mu;
  SimAgentStats stats;

  ~Impl() {
    for (One& a : agents) a.sock.reset();
    own_context.reset();
    if (stop_fd >= 0) ::close(stop_fd);
  }

  // ---------------------------------------------------------------- sending

  void SendRaw(One& a, const std::string& bytes) {
    try {
      (void)a.sock->send(zmq::buffer(bytes), zmq::send_flags::dontwait);
    } catch (const zmq::error_t&) {
      return;
    }
    std::lock_guard<std::mutex> l(stats_mu);
    ++stats.messages_sent;
    stats.bytes_sent += bytes.size();
  }

  void Send(One& a, const v1::Envelope& env) {
    std::string bytes;
    env.SerializeToString(&bytes);
    SendRaw(a, bytes);
  }

  // Answers `key` and remembers the answer (a newer ShardStatus replaces an older one).
  void Reply(One& a, const ReqKey& key, v1::Envelope env) {
    env.set_request_id(key.request_id);
    env.set_experiment_id(key.experiment);
    env.set_generation(key.generation);
    std::string bytes;
    env.SerializeToString(&bytes);
    auto [it, fresh] = a.answers.try_emplace(key);
    if (fresh) {
      a.answer_order.push_back(key);
      while (a.answer_order.size() > kMaxAnswers) {
        a.answers.erase(a.answer_order.front());
        a.answer_order.pop_front();
      }
    }
    auto& list = it->second;
    if (env.body_case() == v1::Envelope::kShardStatus && !list.empty() &&
        list.back().first == v1::Envelope::kShardStatus) {
      list.back().second = bytes;
    } else {
      list.emplace_back(env.body_case(), bytes);
    }
    SendRaw(a, bytes);
  }

  void NoteHandled(One& a, const ReqKey& key) {
    if (a.answers.try_emplace(key).second) a.answer_order.push_back(key);
  }

  void ReplyError(One& a, const ReqKey& key, const Status& st) {
    v1::Envelope env;
    *env.mutable_error() = ErrorFromStatus(st);
    {
      std::lock_guard<std::mutex> l(stats_mu);
      ++stats.errors_sent;
    }
    Reply(a, key, std::move(env));
  }

  // An error about a message without a usable key: not remembered.
  void SendError(One& a, const ReqKey& key, const Status& st) {
    v1::Envelope env;
    env.set_request_id(key.request_id);
    env.set_experiment_id(key.experiment);
    env.set_generation(key.generation);
    *env.mutable_error() = ErrorFromStatus(st);
    {
      std::lock_guard<std::mutex> l(stats_mu);
      ++stats.errors_sent;
    }
    Send(a, env);
  }

  // ---------------------------------------------------------------- hello

  void SendHello(One& a) {
    v1::Envelope env;
    v1::AgentHello* h = env.mutable_agent_hello();
    h->set_host_id(a.host_id);
    h->set_version(opt.version);
    if (opt.announce_address) h->set_address(a.address);
    v1::Capacity* c = h->mutable_capacity();
    c->set_cores(opt.cores);
    c->set_memory_bytes(opt.memory_bytes);
    c->set_max_vnodes(opt.max_vnodes);
    v1::Capabilities* cap = h->mutable_capabilities();
    cap->add_runtimes("netns");
    cap->add_shaping_backends("userspace");
    cap->add_kernel_features("nfqueue");
    cap->add_kernel_features("vxlan");
    cap->set_kernel_release(kernel_release);
    cap->set_active_shaping_backend("userspace");
    for (const auto& [id, e] : a.exps) {
      v1::ExperimentHeld* x = h->add_held();
      x->set_experiment_id(id);
      x->set_generation(e.generation);
      x->set_vnodes(static_cast<uint32_t>(e.vnodes.size()));
      for (const auto& [tid, t] : e.tasks) *x->add_tasks() = t.last;
    }
    {
      std::lock_guard<std::mutex> l(stats_mu);
      ++stats.hellos;
    }
    Send(a, env);
  }

  void RemoveExp(One& a, std::map<std::string, Exp>::iterator it) {
    {
      std::lock_guard<std::mutex> l(stats_mu);
      stats.vnodes_held -= it->second.vnodes.size();
    }
    a.exps.erase(it);
  }

  void HandleWelcome(uint32_t i, const v1::Welcome& w) {
    One& a = agents[i];
    if (a.welcomed) return;  // duplicate
    a.welcomed = true;
    uint32_t welcomed = 0;
    {
      std::lock_guard<std::mutex> l(stats_mu);
      welcomed = ++stats.welcomed;
    }
    if (welcomed == opt.count) spdlog::info("all {} simulated agents welcomed", opt.count);
    if (w.heartbeat_interval_ms() > 0) a.heartbeat = milliseconds(w.heartbeat_interval_ms());
    // Spread the agents' heartbeats evenly over one interval.
    a.next_heartbeat = Clock::now() + a.heartbeat * i / std::max<uint32_t>(1, opt.count);
    std::set<std::string> keep;
    for (const auto& k : w.keep()) keep.insert(k.experiment_id());
    for (auto it = a.exps.begin(); it != a.exps.end();) {
      if (keep.count(it->first) != 0 && it->second.phase == Phase::kReady) {
        ++it;
        continue;
      }
      v1::Envelope env;
      env.set_experiment_id(it->first);
      env.set_generation(it->second.generation);
      env.mutable_torn_down()->set_experiment_id(it->first);
      env.mutable_torn_down()->set_vnodes_removed(
          static_cast<uint32_t>(it->second.vnodes.size()));
      Send(a, env);
      auto next = std::next(it);
      RemoveExp(a, it);
      it = next;
    }
  }

  // ---------------------------------------------------------------- deploy

  void HandleDeploy(uint32_t i, const ReqKey& key, const v1::DeployShard& d) {
    One& a = agents[i];
    const uint32_t total = static_cast<uint32_t>(d.vnodes_size() + d.links_size());
    auto it = a.exps.find(key.experiment);
    if (it != a.exps.end()) {
      Exp& e = it->second;
      if (key.generation < e.generation) {
        return ReplyError(a, key,
                          FailedPreconditionError("generation " + std::to_string(key.generation) +
                                                  " is older than generation " +
                                                  std::to_string(e.generation) +
                                                  " of experiment " + key.experiment +
                                                  " on this pnode"));
      }
      if (key.generation == e.generation) {
        v1::Envelope env;
        *env.mutable_shard_status() = e.last_status;
        if (e.phase == Phase::kDeploying) e.waiters.push_back(key);
        return Reply(a, key, std::move(env));
      }
      return ReplyError(
          a, key,
          UnimplementedError("experiment " + key.experiment + " is deployed at generation " +
                             std::to_string(e.generation) +
                             "; changing a deployed shard is not supported yet (tear it down "
                             "first)"));
    }
    const uint32_t held = a.Held();
    if (static_cast<uint64_t>(held) + d.vnodes_size() > opt.max_vnodes) {
      v1::Envelope env;
      v1::ShardStatus* s = env.mutable_shard_status();
      s->set_phase(v1::ShardStatus::PHASE_FAILED);
      s->set_total(total);
      v1::ObjectError* oe = s->add_errors();
      oe->set_object("shard");
      oe->set_message(std::to_string(d.vnodes_size()) + " vnodes do not fit: this pnode holds " +
                      std::to_string(held) + " of at most " + std::to_string(opt.max_vnodes));
      {
        std::lock_guard<std::mutex> l(stats_mu);
        ++stats.deploys_refused;
      }
      return Reply(a, key, std::move(env));
    }
    Exp& e = a.exps[key.experiment];
    e.generation = key.generation;
    e.phase = Phase::kDeploying;
    e.deploy_seq = ++next_seq;
    e.waiters = {key};
    e.vnodes.reserve(d.vnodes_size());
    for (const auto& v : d.vnodes()) e.vnodes.insert(v.name());
    for (const auto& l : d.links()) e.links.insert(l.name());
    e.last_status.set_phase(v1::ShardStatus::PHASE_DEPLOYING);
    e.last_status.set_total(total);
    {
      std::lock_guard<std::mutex> l(stats_mu);
      ++stats.deploys_accepted;
      stats.vnodes_held += e.vnodes.size();
    }
    // One progress step per chunk, then READY (the step with done == total).
    const auto now = Clock::now();
    uint32_t done = 0;
    do {
      done = std::min(total, done + opt.chunk);
      Timer t;
      t.at = now + std::chrono::duration_cast<Clock::duration>(opt.object_time * done);
      t.agent = i;
      t.experiment = key.experiment;
      t.seq = e.deploy_seq;
      t.done = done;
      timers.push(std::move(t));
    } while (done < total);
  }

  void DeployStep(const Timer& t) {
    One& a = agents[t.agent];
    auto it = a.exps.find(t.experiment);
    if (it == a.exps.end() || it->second.deploy_seq != t.seq ||
        it->second.phase != Phase::kDeploying) {
      return;
    }
    Exp& e = it->second;
    const uint32_t total = e.last_status.total();
    e.last_status.set_done(t.done);
    if (t.done >= total) {
      e.phase = Phase::kReady;
      e.last_status.set_phase(v1::ShardStatus::PHASE_READY);
      std::lock_guard<std::mutex> l(stats_mu);
      ++stats.shards_ready;
    }
    for (const ReqKey& k : e.waiters) {
      v1::Envelope env;
      *env.mutable_shard_status() = e.last_status;
      Reply(a, k, std::move(env));
    }
    if (e.phase == Phase::kReady) e.waiters.clear();
  }

  // ---------------------------------------------------------------- tasks, events, teardown

  Result<Exp*> CheckReady(One& a, const ReqKey& key) {
    auto it = a.exps.find(key.experiment);
    if (it == a.exps.end() || it->second.phase != Phase::kReady) {
      return FailedPreconditionError("experiment '" + key.experiment +
                                     "' is not deployed (READY) on this pnode");
    }
    if (key.generation != it->second.generation) {
      return FailedPreconditionError("generation " + std::to_string(key.generation) +
                                     " of experiment " + key.experiment +
                                     " is not the deployed generation " +
                                     std::to_string(it->second.generation));
    }
    return &it->second;
  }

  void HandleExec(uint32_t i, const ReqKey& key, const v1::Exec& x) {
    One& a = agents[i];
    auto e = CheckReady(a, key);
    if (!e.ok()) return ReplyError(a, key, e.status());
    if (x.task_id().empty()) return ReplyError(a, key, InvalidArgumentError("Exec without a task_id"));
    if ((*e)->tasks.count(x.task_id()) != 0) {
      return ReplyError(a, key, AlreadyExistsError("task '" + x.task_id() +
                                                   "' exists already in " + key.experiment));
    }
    if ((*e)->vnodes.count(x.vnode()) == 0) {
      return ReplyError(a, key, NotFoundError("no vnode '" + x.vnode() + "' in experiment " +
                                              key.experiment + " on this pnode"));
    }
    if (x.shell().empty() == (x.argv_size() == 0)) {
      return ReplyError(a, key, InvalidArgumentError("Exec needs exactly one of shell and argv"));
    }
    Task& t = (*e)->tasks[x.task_id()];
    t.key = key;
    t.running = true;
    t.last.set_task_id(x.task_id());
    t.last.set_vnode(x.vnode());
    t.last.set_state(v1::TaskEvent::STATE_STARTED);
    t.last.set_start_unix_ns(UnixNs());
    {
      std::lock_guard<std::mutex> l(stats_mu);
      ++stats.execs;
    }
    v1::Envelope env;
    *env.mutable_task_event() = t.last;
    Reply(a, key, std::move(env));
    Timer tm;
    tm.at = Clock::now() + opt.task_time;
    tm.agent = i;
    tm.experiment = key.experiment;
    tm.task_id = x.task_id();
    timers.push(std::move(tm));
  }

  // Ends a running task: EXITED with `code`, or signalled by `sig`.
  void EndTask(One& a, Task& t, int code, int sig) {
    if (!t.running) return;
    t.running = false;
    t.last.set_state(v1::TaskEvent::STATE_EXITED);
    t.last.set_exit_code(sig != 0 ? -1 : code);
    t.last.set_signal(sig);
    t.last.set_reason(sig != 0 ? "signalled" : "exited");
    t.last.set_end_unix_ns(UnixNs());
    v1::Envelope env;
    *env.mutable_task_event() = t.last;
    Reply(a, t.key, std::move(env));
  }

  void TaskTimer(const Timer& tm) {
    One& a = agents[tm.agent];
    auto it = a.exps.find(tm.experiment);
    if (it == a.exps.end()) return;
    auto t = it->second.tasks.find(tm.task_id);
    if (t != it->second.tasks.end()) EndTask(a, t->second, 0, 0);
  }

  void HandleSignal(uint32_t i, const ReqKey& key, const v1::Signal& s) {
    One& a = agents[i];
    auto e = CheckReady(a, key);
    if (!e.ok()) return ReplyError(a, key, e.status());
    auto t = (*e)->tasks.find(s.task_id());
    if (t == (*e)->tasks.end()) {
      return ReplyError(a, key, NotFoundError("no task '" + s.task_id() + "' in experiment " +
                                              key.experiment));
    }
    const int sig = SignalNumber(s.signal());
    if (sig == 0) {
      return ReplyError(a, key, InvalidArgumentError("unknown signal '" + s.signal() +
                                                     "' (term, kill, int, hup, stop, cont)"));
    }
    NoteHandled(a, key);
    if (s.signal() != "stop" && s.signal() != "cont") EndTask(a, t->second, 0, sig);
  }

  void HandleApplyEvent(uint32_t i, const ReqKey& key, const v1::ApplyEvent& ev) {
    One& a = agents[i];
    auto e = CheckReady(a, key);
    if (!e.ok()) return ReplyError(a, key, e.status());
    std::string link;
    if (ev.has_link_set()) link = ev.link_set().link();
    if (ev.has_link_state()) link = ev.link_state().link();
    if (ev.has_link_set() || ev.has_link_state()) {
      if ((*e)->links.count(link) == 0) {
        return ReplyError(a, key, NotFoundError("no link '" + link + "' in experiment " +
                                                key.experiment + " on this pnode"));
      }
    } else if (ev.has_node_action()) {
      for (const auto& v : ev.node_action().vnodes()) {
        if ((*e)->vnodes.count(v) == 0) {
          return ReplyError(a, key, NotFoundError("no vnode '" + v + "' in experiment " +
                                                  key.experiment + " on this pnode"));
        }
      }
      const std::string& act = ev.node_action().action();
      if (act != "kill" && act != "stop" && act != "start" && act != "freeze" && act != "thaw") {
        return ReplyError(a, key, InvalidArgumentError("unknown node action '" + act + "'"));
      }
      if (act == "kill" || act == "stop") {
        std::set<std::string> vn(ev.node_action().vnodes().begin(), ev.node_action().vnodes().end());
        for (auto& [tid, t] : (*e)->tasks) {
          if (vn.count(t.last.vnode()) != 0) EndTask(a, t, 0, act == "kill" ? 9 : 15);
        }
      }
    } else {
      return ReplyError(a, key, InvalidArgumentError("ApplyEvent without an action"));
    }
    {
      std::lock_guard<std::mutex> l(stats_mu);
      ++stats.events_applied;
    }
    v1::Envelope env;
    env.mutable_event_applied()->set_event_id(ev.event_id());
    env.mutable_event_applied()->set_applied_unix_ns(UnixNs());
    Reply(a, key, std::move(env));
  }

  void HandleTeardown(uint32_t i, const ReqKey& key) {
    One& a = agents[i];
    auto it = a.exps.find(key.experiment);
    if (it != a.exps.end() && key.generation < it->second.generation) {
      return ReplyError(a, key,
                        FailedPreconditionError("generation " + std::to_string(key.generation) +
                                                " is older than generation " +
                                                std::to_string(it->second.generation) +
                                                " of experiment " + key.experiment +
                                                " on this pnode"));
    }
    uint32_t removed = 0;
    if (it != a.exps.end()) {
      removed = static_cast<uint32_t>(it->second.vnodes.size());
      RemoveExp(a, it);
    }
    {
      std::lock_guard<std::mutex> l(stats_mu);
      ++stats.teardowns;
    }
    v1::Envelope env;
    env.mutable_torn_down()->set_experiment_id(key.experiment);
    env.mutable_torn_down()->set_vnodes_removed(removed);
    Reply(a, key, std::move(env));
  }

  // ---------------------------------------------------------------- dispatch

  void OnMessage(uint32_t i, const zmq::message_t& msg) {
    One& a = agents[i];
    {
      std::lock_guard<std::mutex> l(stats_mu);
      ++stats.messages_received;
      stats.bytes_received += msg.size();
    }
    // An arena: a shard's 100,000 hosts entries are parsed (as the real agent
    // does) and freed at once.
    google::protobuf::Arena arena;
    auto* env = google::protobuf::Arena::CreateMessage<v1::Envelope>(&arena);
    if (!env->ParseFromArray(msg.data(), static_cast<int>(msg.size()))) {
      return SendError(a, {}, InvalidArgumentError("unparsable message: not a gridemu.v1.Envelope (" +
                                                   std::to_string(msg.size()) + " bytes)"));
    }
    ReqKey key{env->experiment_id(), env->generation(), env->request_id()};
    switch (env->body_case()) {
      case v1::Envelope::BODY_NOT_SET:
        return SendError(a, key, InvalidArgumentError("envelope without a body"));
      case v1::Envelope::kWelcome:
        return HandleWelcome(i, env->welcome());
      case v1::Envelope::kHeartbeat:
        return;
      case v1::Envelope::kError: {
        {
          std::lock_guard<std::mutex> l(stats_mu);
          ++stats.errors_received;
        }
        // The controller does not know this agent any more: register again.
        if (a.welcomed && env->experiment_id().empty() &&
            env->error().code() == StatusCodeName(StatusCode::kFailedPrecondition)) {
          a.welcomed = false;
          a.next_hello = Clock::now();
          std::lock_guard<std::mutex> l(stats_mu);
          --stats.welcomed;
        }
        return;
      }
      case v1::Envelope::kDeployShard:
      case v1::Envelope::kExec:
      case v1::Envelope::kSignal:
      case v1::Envelope::kApplyEvent:
      case v1::Envelope::kTeardown:
        break;
      default:
        return SendError(a, key, InvalidArgumentError("agents do not accept " +
                                                      BodyName(env->body_case()) + " messages"));
    }
    if (env->has_deploy_shard()) {
      const v1::DeployShard& d = env->deploy_shard();
      if (key.experiment.empty()) key.experiment = d.experiment_id();
      if (key.generation == 0) key.generation = d.generation();
      if ((!d.experiment_id().empty() && d.experiment_id() != key.experiment) ||
          (d.generation() != 0 && d.generation() != key.generation)) {
        return SendError(a, key,
                         InvalidArgumentError("DeployShard names experiment " + d.experiment_id() +
                                              " generation " + std::to_string(d.generation()) +
                                              ", its envelope " + env->experiment_id() +
                                              " generation " + std::to_string(env->generation())));
      }
    }
    if (env->has_teardown()) {
      const std::string& t = env->teardown().experiment_id();
      if (key.experiment.empty()) key.experiment = t;
      if (!t.empty() && t != key.experiment) {
        return SendError(a, key, InvalidArgumentError("Teardown names experiment " + t +
                                                      ", its envelope " + env->experiment_id()));
      }
    }
    if (auto it = a.answers.find(key); it != a.answers.end()) {
      for (const auto& [kind, bytes] : it->second) SendRaw(a, bytes);
      return;
    }
    if (!a.welcomed) {
      return SendError(a, key, FailedPreconditionError("the agent has not been welcomed yet"));
    }
    if (!ValidateExperimentId(key.experiment).ok()) {
      return ReplyError(
          a, key, InvalidArgumentError("bad or missing experiment id '" + key.experiment + "'"));
    }
    switch (env->body_case()) {
      case v1::Envelope::kDeployShard:
        return HandleDeploy(i, key, env->deploy_shard());
      case v1::Envelope::kExec:
        return HandleExec(i, key, env->exec());
      case v1::Envelope::kSignal:
        return HandleSignal(i, key, env->signal());
      case v1::Envelope::kApplyEvent:
        return HandleApplyEvent(i, key, env->apply_event());
      case v1::Envelope::kTeardown:
        return HandleTeardown(i, key);
      default:
        return;
    }
  }

  // ---------------------------------------------------------------- loop

  // Hellos, heartbeats and due timers; returns when the next one is due.
  Clock::time_point Timers() {
    const auto now = Clock::now();
    Clock::time_point next = now + milliseconds(500);
    for (One& a : agents) {
      if (!a.welcomed) {
        if (now >= a.next_hello) {
          SendHello(a);
          a.next_hello = now + opt.hello_retry;
        }
        next = std::min(next, a.next_hello);
      } else {
        if (now >= a.next_heartbeat) {
          v1::Envelope env;
          env.mutable_heartbeat()->set_unix_ms(UnixNs() / 1000000);
          env.mutable_heartbeat()->set_vnodes(a.Held());
          Send(a, env);
          a.next_heartbeat = std::max(a.next_heartbeat + a.heartbeat, now);
          std::lock_guard<std::mutex> l(stats_mu);
          ++stats.heartbeats;
        }
        next = std::min(next, a.next_heartbeat);
      }
    }
    while (!timers.empty() && timers.top().at <= now) {
      Timer t = timers.top();
      timers.pop();
      if (t.task_id.empty()) {
        DeployStep(t);
      } else {
        TaskTimer(t);
      }
    }
    if (!timers.empty()) next = std::min(next, timers.top().at);
    return next;
  }

  Status Loop() {
    const auto start = Clock::now();
    for (size_t i = 0; i < agents.size(); ++i) {
      // Hellos spread over the first 100 ms.
      agents[i].next_hello = start + milliseconds(100) * i / std::max<size_t>(1, agents.size());
    }
    std::vector<zmq::pollitem_t> items(agents.size() + 1);
    for (size_t i = 0; i < agents.size(); ++i) {
      items[i] = zmq::pollitem_t{agents[i].sock->handle(), 0, ZMQ_POLLIN, 0};
    }
    items.back() = zmq::pollitem_t{nullptr, stop_fd, ZMQ_POLLIN, 0};
    while (true) {
      const auto next = Timers();
      const auto wait = std::max(
          milliseconds(0), std::chrono::duration_cast<milliseconds>(next - Clock::now()) +
                               milliseconds(1));
      try {
        zmq::poll(items.data(), items.size(), wait);
      } catch (const zmq::error_t& e) {
        if (e.num() == ETERM) return UnavailableError("the ZeroMQ context was terminated");
        if (e.num() == EINTR) continue;
        return UnavailableError(std::string("poll: ") + e.what());
      }
      if (items.back().revents & ZMQ_POLLIN) return Status::Ok();
      for (size_t i = 0; i < agents.size(); ++i) {
        if (!(items[i].revents & ZMQ_POLLIN)) continue;
        // A bounded batch per socket per round: fairness between agents.
        for (int n = 0; n < 64; ++n) {
          zmq::message_t msg;
          try {
            if (!agents[i].sock->recv(msg, zmq::recv_flags::dontwait)) break;
          } catch (const zmq::error_t& e) {
            if (e.num() == ETERM) return UnavailableError("the ZeroMQ context was terminated");
            break;
          }
          OnMessage(static_cast<uint32_t>(i), msg);
        }
      }
    }
  }
};

SimAgents::SimAgents(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
SimAgents::~SimAgents() = default;

Result<std::unique_ptr<SimAgents>> SimAgents::Create(const SimAgentOptions& options) {
  if (options.host_id.empty()) return InvalidArgumentError("host id: must not be empty");
  if (options.count == 0 || options.count > 100000) {
    return InvalidArgumentError("count: must be 1 .. 100000 (got " +
                                std::to_string(options.count) + ")");
  }
  if (options.chunk == 0) return InvalidArgumentError("chunk: must be at least 1");
  if (options.heartbeat.count() <= 0) return InvalidArgumentError("heartbeat: must be positive");
  auto impl = std::make_unique<Impl>();
  Impl& m = *impl;
  m.opt = options;
  struct utsname u {};
  if (::uname(&u) == 0) m.kernel_release = u.release;
  m.stop_fd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (m.stop_fd < 0) return InternalError(std::string("eventfd: ") + std::strerror(errno));
  zmq::context_t* ctx = options.context;
  if (ctx == nullptr) {
    m.own_context = std::make_unique<zmq::context_t>(1);
    m.own_context->set(zmq::ctxopt::max_sockets, static_cast<int>(options.count) + 64);
    ctx = m.own_context.get();
  }
  const size_t width = std::max<size_t>(4, std::to_string(options.count - 1).size());
  m.agents.resize(options.count);
  for (uint32_t i = 0; i < options.count; ++i) {
    Impl::One& a = m.agents[i];
    if (options.count == 1) {
      a.host_id = options.host_id;
    } else {
      std::string n = std::to_string(i);
      a.host_id = options.host_id + "-" + std::string(width - n.size(), '0') + n;
    }
    a.heartbeat = options.heartbeat;
    a.address = "127." + std::to_string(1 + i / 65536) + "." + std::to_string((i / 256) % 256) +
                "." + std::to_string(i % 256);
    try {
      a.sock = std::make_unique<zmq::socket_t>(*ctx, zmq::socket_type::dealer);
      a.sock->set(zmq::sockopt::routing_id, a.host_id);
      a.sock->set(zmq::sockopt::linger, 0);
      a.sock->set(zmq::sockopt::reconnect_ivl, 100);
      a.sock->set(zmq::sockopt::rcvhwm, 0);
      a.sock->connect(options.controller);
    } catch (const zmq::error_t& e) {
      return UnavailableError("agent " + a.host_id + ": cannot connect to " + options.controller +
                              ": " + e.what());
    }
    m.ids.push_back(a.host_id);
  }
  m.stats.agents = options.count;
  return std::unique_ptr<SimAgents>(new SimAgents(std::move(impl)));
}

Status SimAgents::Run() { return impl_->Loop(); }

void SimAgents::Stop() {
  const uint64_t one = 1;
  (void)!::write(impl_->stop_fd, &one, sizeof one);
}

const std::vector<std::string>& SimAgents::host_ids() const { return impl_->ids; }

SimAgentStats SimAgents::Stats() const {
  std::lock_guard<std::mutex> l(impl_->stats_mu);
  return impl_->stats;
}

}  // namespace gridemu::agent

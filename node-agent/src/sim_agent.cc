// Simulated agents: N AgentCores over SimBackends on one thread. See sim_agent.h.
#include "gridemu/node-agent/sim_agent.h"

#include <spdlog/spdlog.h>
#include <sys/eventfd.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <map>
#include <queue>
#include <set>
#include <zmq.hpp>

#include "gridemu/common/clock.h"
#include "gridemu/netshape/capabilities.h"
#include "gridemu/node-agent/agent_core.h"
#include "memory_backend.h"

namespace gridemu::agent {

using std::chrono::milliseconds;

namespace {

// Counters the backends of one SimAgents share (relaxed atomics).
struct SimCounters {
  std::atomic<uint64_t> deploys_accepted{0}, deploys_refused{0}, shards_ready{0};
  std::atomic<uint64_t> vnodes_held{0}, execs{0}, events_applied{0};
};

// What a simulated agent does with requests: keeps the names of what it was
// given (MemoryBackend), counts capacity, and makes time pass (deploy steps,
// task ends).
class SimBackend final : public internal::MemoryBackend {
 public:
  SimBackend(const SimAgentOptions& opt, const std::string& kernel_release, SimCounters* counters)
      : opt_(opt), kernel_release_(kernel_release), counters_(counters) {}

  void Describe(v1::AgentHello* h) override {
    v1::Capacity* c = h->mutable_capacity();
    c->set_cores(opt_.cores);
    c->set_memory_bytes(opt_.memory_bytes);
    c->set_max_vnodes(opt_.max_vnodes);
    v1::Capabilities* cap = h->mutable_capabilities();
    cap->add_runtimes("netns");
    cap->add_shaping_backends("userspace");
    cap->add_kernel_features("nfqueue");
    cap->add_kernel_features("vxlan");
    cap->set_kernel_release(kernel_release_);
    cap->set_active_shaping_backend("userspace");
    netshape::Capabilities caps;
    caps.htb = caps.nfqueue = caps.iptables = caps.ip6tables = true;
    for (const std::string& p : netshape::HonouredParameters(netshape::Backend::kUserspace, caps)) {
      cap->add_shaping_parameters(p);
    }
  }

  void Deploy(uint64_t job, const v1::DeployShard& d) override {
    Forget(d.experiment_id());
    const uint32_t held = VnodeCount();
    if (static_cast<uint64_t>(held) + d.vnodes_size() > opt_.max_vnodes) {
      counters_->deploys_refused.fetch_add(1, std::memory_order_relaxed);
      DeployOutcome out;
      out.total = static_cast<uint32_t>(d.vnodes_size() + d.links_size());
      out.errors.push_back({"shard", std::to_string(d.vnodes_size()) +
                                         " vnodes do not fit: this pnode holds " +
                                         std::to_string(held) + " of at most " +
                                         std::to_string(opt_.max_vnodes)});
      return events_->DeployDone(job, std::move(out));
    }
    const Shard& s = Keep(job, d);
    counters_->deploys_accepted.fetch_add(1, std::memory_order_relaxed);
    counters_->vnodes_held.fetch_add(s.vnodes.size(), std::memory_order_relaxed);
    // One progress step per chunk of objects, the last one READY.
    const auto now = AgentClock::now();
    uint32_t done = 0;
    do {
      done = std::min(s.total, done + opt_.chunk);
      timers_.push(Timer{now + std::chrono::duration_cast<AgentClock::duration>(
                                   opt_.object_time * done),
                         d.experiment_id(), job, done, {}});
    } while (done < s.total);
  }

  Status Exec(const std::string& experiment, const v1::Exec& x) override {
    const Shard& s = *Find(experiment);
    if (s.vnodes.count(x.vnode()) == 0) {
      return NotFoundError("no vnode '" + x.vnode() + "' in experiment " + experiment +
                           " on this pnode");
    }
    Task& t = tasks_[experiment][x.task_id()];
    t.running = true;
    t.last.set_task_id(x.task_id());
    t.last.set_vnode(x.vnode());
    t.last.set_state(v1::TaskEvent::STATE_STARTED);
    t.last.set_start_unix_ns(UnixNanosNow());
    counters_->execs.fetch_add(1, std::memory_order_relaxed);
    events_->TaskChanged(experiment, t.last);
    timers_.push(Timer{AgentClock::now() + opt_.task_time, experiment, s.job, 0, x.task_id()});
    return Status::Ok();
  }

  Status Signal(const std::string& experiment, const std::string& task_id,
                TaskSignal signal) override {
    if (signal == TaskSignal::kStop || signal == TaskSignal::kCont) return Status::Ok();
    auto& tasks = tasks_[experiment];
    if (auto t = tasks.find(task_id); t != tasks.end()) {
      EndTask(experiment, t->second, 0, SignalNumber(signal));
    }
    return Status::Ok();
  }

  Status ApplyEvent(const std::string& experiment, const v1::ApplyEvent& ev) override {
    const std::string& act = ev.node_action().action();
    if (act == "kill" || act == "stop") {
      const std::set<std::string> vn(ev.node_action().vnodes().begin(),
                                     ev.node_action().vnodes().end());
      for (auto& [tid, t] : tasks_[experiment]) {
        if (vn.count(t.last.vnode()) != 0) EndTask(experiment, t, 0, act == "kill" ? 9 : 15);
      }
    }
    counters_->events_applied.fetch_add(1, std::memory_order_relaxed);
    return Status::Ok();
  }

  // A simulated agent has no counters: it never sends MetricsBatch (its
  // deploys report no metrics interval).
  v1::MetricsBatch CollectMetrics(const std::string&) override { return {}; }

  AgentClock::time_point Tick(AgentClock::time_point now) override {
    while (!timers_.empty() && timers_.top().at <= now) {
      const Timer t = timers_.top();
      timers_.pop();
      Shard* s = Find(t.experiment);
      if (s == nullptr || s->job != t.job) continue;  // torn down meanwhile
      if (!t.task_id.empty()) {
        auto& tasks = tasks_[t.experiment];
        if (auto task = tasks.find(t.task_id); task != tasks.end()) {
          EndTask(t.experiment, task->second, 0, 0);
        }
      } else if (t.done >= s->total) {
        s->ready = true;
        counters_->shards_ready.fetch_add(1, std::memory_order_relaxed);
        DeployOutcome out;
        out.ok = true;
        out.done = out.total = s->total;
        events_->DeployDone(t.job, std::move(out));
      } else {
        events_->DeployProgress(t.job, t.done, s->total);
      }
    }
    return timers_.empty() ? AgentClock::time_point::max() : timers_.top().at;
  }

 private:
  struct Task {
    v1::TaskEvent last;
    bool running = false;
  };
  // A deploy step (task_id empty; `done` objects after it) or a task's end.
  struct Timer {
    AgentClock::time_point at;
    std::string experiment;
    uint64_t job = 0;
    uint32_t done = 0;
    std::string task_id;
    bool operator>(const Timer& o) const { return at > o.at; }
  };

  void OnForget(const std::string& experiment, const Shard& shard) override {
    counters_->vnodes_held.fetch_sub(shard.vnodes.size(), std::memory_order_relaxed);
    tasks_.erase(experiment);
  }

  // Ends a running task: EXITED with `code`, or signalled by `sig`.
  void EndTask(const std::string& experiment, Task& t, int code, int sig) {
    if (!t.running) return;
    t.running = false;
    t.last.set_state(v1::TaskEvent::STATE_EXITED);
    t.last.set_exit_code(sig != 0 ? -1 : code);
    t.last.set_signal(sig);
    t.last.set_reason(sig != 0 ? "signalled" : "exited");
    t.last.set_end_unix_ns(UnixNanosNow());
    events_->TaskChanged(experiment, t.last);
  }

  const SimAgentOptions& opt_;
  const std::string& kernel_release_;
  SimCounters* counters_;
  std::map<std::string, std::map<std::string, Task>> tasks_;  // experiment -> task id ->
  std::priority_queue<Timer, std::vector<Timer>, std::greater<Timer>> timers_;
};

// Sends on one agent's socket.
class SocketWire final : public Wire {
 public:
  explicit SocketWire(zmq::socket_t* socket) : socket_(socket) {}
  void Send(std::string_view bytes) override {
    try {
      (void)socket_->send(zmq::buffer(bytes.data(), bytes.size()), zmq::send_flags::dontwait);
    } catch (const zmq::error_t&) {
    }
  }

 private:
  zmq::socket_t* socket_;
};

}  // namespace

struct SimAgents::Impl {
  struct One {
    std::unique_ptr<zmq::socket_t> sock;
    std::unique_ptr<SocketWire> wire;
    std::unique_ptr<SimBackend> backend;
    std::unique_ptr<AgentCore> core;
  };

  SimAgentOptions opt;
  std::unique_ptr<zmq::context_t> own_context;
  std::vector<One> agents;
  std::vector<std::string> ids;
  int stop_fd = -1;
  std::string kernel_release;
  SimCounters counters;

  ~Impl() {
    for (One& a : agents) {
      a.core.reset();
      a.backend.reset();
      a.wire.reset();
      a.sock.reset();
    }
    own_context.reset();
    if (stop_fd >= 0) ::close(stop_fd);
  }

  uint32_t Welcomed() const {
    uint32_t n = 0;
    for (const One& a : agents) n += a.core->welcomed() ? 1 : 0;
    return n;
  }

  Status Loop() {
    const auto start = AgentClock::now();
    for (One& a : agents) a.core->Start(start);
    std::vector<zmq::pollitem_t> items(agents.size() + 1);
    for (size_t i = 0; i < agents.size(); ++i) {
      items[i] = zmq::pollitem_t{agents[i].sock->handle(), 0, ZMQ_POLLIN, 0};
    }
    items.back() = zmq::pollitem_t{nullptr, stop_fd, ZMQ_POLLIN, 0};
    while (true) {
      const auto now = AgentClock::now();
      AgentClock::time_point next = now + milliseconds(500);
      for (One& a : agents) next = std::min(next, a.core->Tick(now));
      const auto wait = std::max(milliseconds(0), std::chrono::duration_cast<milliseconds>(
                                                      next - AgentClock::now()) +
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
          agents[i].core->OnMessage(
              std::string_view(static_cast<const char*>(msg.data()), msg.size()));
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
    std::string host_id = options.host_id;
    if (options.count > 1) {
      const std::string n = std::to_string(i);
      host_id += "-" + std::string(width - n.size(), '0') + n;
    }
    try {
      a.sock = std::make_unique<zmq::socket_t>(*ctx, zmq::socket_type::dealer);
      a.sock->set(zmq::sockopt::routing_id, host_id);
      a.sock->set(zmq::sockopt::linger, 0);
      a.sock->set(zmq::sockopt::reconnect_ivl, 100);
      a.sock->set(zmq::sockopt::rcvhwm, 0);
      a.sock->connect(options.controller);
    } catch (const zmq::error_t& e) {
      return UnavailableError("agent " + host_id + ": cannot connect to " + options.controller +
                              ": " + e.what());
    }
    a.wire = std::make_unique<SocketWire>(a.sock.get());
    a.backend = std::make_unique<SimBackend>(m.opt, m.kernel_release, &m.counters);
    CoreOptions co;
    co.host_id = host_id;
    co.version = options.version;
    if (options.announce_address) {
      co.address = "127." + std::to_string(1 + i / 65536) + "." + std::to_string((i / 256) % 256) +
                   "." + std::to_string(i % 256);
    }
    co.heartbeat = options.heartbeat;
    co.hello_retry = options.hello_retry;
    // Hellos spread over the first 100 ms, heartbeats over one interval.
    co.first_hello_delay = milliseconds(100) * i / options.count;
    co.heartbeat_phase = static_cast<double>(i) / options.count;
    co.log = false;
    a.core = std::make_unique<AgentCore>(co, a.backend.get(), a.wire.get());
    a.core->on_welcomed = [&m] {
      if (m.Welcomed() == m.opt.count) {
        spdlog::info("all {} simulated agents welcomed", m.opt.count);
      }
    };
    m.ids.push_back(host_id);
  }
  return std::unique_ptr<SimAgents>(new SimAgents(std::move(impl)));
}

Status SimAgents::Run() { return impl_->Loop(); }

void SimAgents::Stop() {
  const uint64_t one = 1;
  (void)!::write(impl_->stop_fd, &one, sizeof one);
}

const std::vector<std::string>& SimAgents::host_ids() const { return impl_->ids; }

SimAgentStats SimAgents::Stats() const {
  const Impl& m = *impl_;
  SimAgentStats s;
  s.agents = m.opt.count;
  for (const Impl::One& a : m.agents) {
    const CoreStats c = a.core->Stats();
    s.welcomed += a.core->welcomed() ? 1 : 0;
    s.hellos += c.hellos;
    s.heartbeats += c.heartbeats;
    s.teardowns += c.teardowns;
    s.errors_sent += c.errors_sent;
    s.errors_received += c.errors_received;
    s.messages_received += c.messages_received;
    s.bytes_received += c.bytes_received;
    s.messages_sent += c.messages_sent;
    s.bytes_sent += c.bytes_sent;
  }
  s.deploys_accepted = m.counters.deploys_accepted.load(std::memory_order_relaxed);
  s.deploys_refused = m.counters.deploys_refused.load(std::memory_order_relaxed);
  s.shards_ready = m.counters.shards_ready.load(std::memory_order_relaxed);
  s.vnodes_held = m.counters.vnodes_held.load(std::memory_order_relaxed);
  s.execs = m.counters.execs.load(std::memory_order_relaxed);
  s.events_applied = m.counters.events_applied.load(std::memory_order_relaxed);
  return s;
}

}  // namespace gridemu::agent

#include "gridemu/node-agent/agent.h"

#include <arpa/inet.h>

#include <spdlog/spdlog.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <sys/sysinfo.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <set>
#include <thread>
#include <tuple>
#include <zmq.hpp>

#include "gridemu/common/clock.h"
#include "gridemu/node-agent/agent_convert.h"
#include "gridemu/node-agent/netns_runtime.h"
#include "gridemu/node-agent/runtime.h"
#include "gridemu/node-agent/shard_applier.h"
#include "gridemu/netshape/shaper.h"
#include "gridemu/v1/agent.pb.h"

namespace gridemu::agent {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

constexpr size_t kMaxAnswers = 65536;

struct ReqKey {
  std::string experiment;
  uint64_t generation = 0;
  uint64_t request_id = 0;
  friend auto operator<=>(const ReqKey&, const ReqKey&) = default;
};

std::string SafeFileName(const std::string& s) {
  std::string out = s;
  for (char& c : out) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-')) c = '_';
  }
  if (out.empty() || out[0] == '.') out = "_" + out;
  return out;
}

std::string BodyName(v1::Envelope::BodyCase c) {
  const auto* d = v1::Envelope::descriptor()->FindFieldByNumber(static_cast<int>(c));
  return d == nullptr ? "nothing" : d->name();
}

std::string ReasonName(const TaskResult& r, bool kill_requested) {
  switch (r.reason) {
    case ExitReason::kExited:
      return "exited";
    case ExitReason::kSignaled:
      return "signalled";
    case ExitReason::kTimedOut:
      return "timeout";
    case ExitReason::kOomKilled:
      return "oom-killed";
    case ExitReason::kKilled:
      return kill_requested ? "signalled" : "vnode-killed";
    case ExitReason::kStartFailed:
      return "start-failed: " + r.error;
    case ExitReason::kLost:
      return "lost: " + r.error;
  }
  return "unknown";
}

uint64_t WallNs(std::chrono::system_clock::time_point t) {
  if (t.time_since_epoch().count() == 0) return 0;
  return static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count());
}

Status MakeDirs(const std::string& path) {
  std::string cur;
  size_t pos = 0;
  while (pos != std::string::npos) {
    pos = path.find('/', pos + 1);
    cur = path.substr(0, pos);
    if (cur.empty()) continue;
    if (::mkdir(cur.c_str(), 0755) != 0 && errno != EEXIST) {
      return InternalError("mkdir " + cur + ": " + std::strerror(errno));
    }
  }
  return Status::Ok();
}

}  // namespace

struct Agent::Impl {
  enum class Phase { kDeploying, kReady, kFailed, kTearingDown, kAdopting };

  struct Exp {
    uint64_t generation = 0;
    Phase phase = Phase::kDeploying;
    uint64_t last_job = 0;    // the job whose end decides the phase
    uint64_t deploy_job = 0;  // the deploy job whose progress is reported
    std::vector<ReqKey> deploy_waiters;
    v1::ShardStatus last_status;
    milliseconds metrics_interval{0};
    Clock::time_point next_metrics{};
    std::map<std::string, TaskId> tasks;  // task_id -> runtime id
  };

  struct TaskRec {
    std::string experiment;
    uint64_t generation = 0;
    std::string task_id;
    std::string vnode;
    ReqKey key;
    std::string stdout_path, stderr_path;
    bool kill_requested = false;
    v1::TaskEvent last_event;  // reported in AgentHello.held[].tasks
  };

  AgentOptions opt;
  std::string host_id;
  std::unique_ptr<zmq::context_t> own_ctx;
  zmq::context_t* ctx = nullptr;
  std::unique_ptr<zmq::socket_t> sock;
  std::vector<std::string> runtime_names;
  std::unique_ptr<VnodeRuntime> runtime;
  std::string cgroup_feature;
  netshape::Capabilities caps;
  std::unique_ptr<netshape::Shaper> shaper;
  std::unique_ptr<ShardApplier> applier;
  int stop_fd = -1;
  int wake_fd = -1;

  // Worker.
  std::thread worker;
  std::mutex wmu;
  std::condition_variable wcv;
  std::deque<std::function<void()>> jobs;
  bool wstop = false;
  uint64_t job_seq = 0;

  // Posted back to the loop.
  std::mutex pmu;
  std::deque<std::function<void()>> posted;

  // Loop state.
  bool welcomed = false;
  milliseconds heartbeat{1000};
  Clock::time_point next_hello{}, next_heartbeat{};
  std::vector<HeldExperiment> held;
  std::map<std::string, Exp> exps;
  std::map<TaskId, TaskRec> tasks;
  std::map<ReqKey, std::vector<std::pair<v1::Envelope::BodyCase, std::string>>> answers;
  std::deque<ReqKey> answer_order;

  ~Impl() {
    {
      std::lock_guard<std::mutex> l(wmu);
      wstop = true;
    }
    wcv.notify_all();
    if (worker.joinable()) worker.join();
    sock.reset();
    applier.reset();
    shaper.reset();
    runtime.reset();
    if (stop_fd >= 0) ::close(stop_fd);
    if (wake_fd >= 0) ::close(wake_fd);
  }

  // ------------------------------------------------------------------ plumbing

  void Post(std::function<void()> fn) {
    {
      std::lock_guard<std::mutex> l(pmu);
      posted.push_back(std::move(fn));
    }
    uint64_t one = 1;
    ssize_t n = ::write(wake_fd, &one, sizeof one);
    (void)n;
  }

  uint64_t Enqueue(std::function<void()> job) {
    {
      std::lock_guard<std::mutex> l(wmu);
      jobs.push_back(std::move(job));
    }
    wcv.notify_one();
    return ++job_seq;
  }

  void WorkerMain() {
    while (true) {
      std::function<void()> job;
      {
        std::unique_lock<std::mutex> l(wmu);
        wcv.wait(l, [&] { return wstop || !jobs.empty(); });
        if (wstop) return;
        job = std::move(jobs.front());
        jobs.pop_front();
      }
      job();
    }
  }

  void RunPosted() {
    std::deque<std::function<void()>> now;
    {
      std::lock_guard<std::mutex> l(pmu);
      now.swap(posted);
    }
    for (auto& fn : now) fn();
  }

  void SendRaw(const std::string& bytes) {
    try {
      auto r = sock->send(zmq::buffer(bytes), zmq::send_flags::dontwait);
      if (!r) spdlog::warn("controller queue full: a message was dropped");
    } catch (const zmq::error_t& e) {
      spdlog::warn("send failed: {}", e.what());
    }
  }

  void Send(const v1::Envelope& env) {
    std::string bytes;
    env.SerializeToString(&bytes);
    SendRaw(bytes);
  }

  // Sends an answer to `key` and remembers it for repeats. A newer ShardStatus
  // replaces an older one in the memory (a repeat gets the latest).
  void Reply(const ReqKey& key, v1::Envelope env) {
    env.set_request_id(key.request_id);
    env.set_experiment_id(key.experiment);
    env.set_generation(key.generation);
    std::string bytes;
    env.SerializeToString(&bytes);
    auto [it, fresh] = answers.try_emplace(key);
    if (fresh) {
      answer_order.push_back(key);
      while (answer_order.size() > kMaxAnswers) {
        answers.erase(answer_order.front());
        answer_order.pop_front();
      }
    }
    auto& list = it->second;
    if (env.body_case() == v1::Envelope::kShardStatus && !list.empty() &&
        list.back().first == v1::Envelope::kShardStatus) {
      list.back().second = bytes;
    } else {
      list.emplace_back(env.body_case(), bytes);
    }
    SendRaw(bytes);
  }

  // Remembers that `key` was handled without an answer (Signal).
  void NoteHandled(const ReqKey& key) {
    if (answers.try_emplace(key).second) answer_order.push_back(key);
  }

  void ReplyError(const ReqKey& key, const Status& st) {
    spdlog::info("request {} of {} (gen {}) refused: {}", key.request_id, key.experiment,
                 key.generation, st.ToString());
    v1::Envelope env;
    *env.mutable_error() = ErrorFromStatus(st);
    Reply(key, std::move(env));
  }

  // An error about a message that has no usable key: not remembered.
  void SendError(const ReqKey& key, const Status& st) {
    spdlog::info("message refused: {}", st.ToString());
    v1::Envelope env;
    env.set_request_id(key.request_id);
    env.set_experiment_id(key.experiment);
    env.set_generation(key.generation);
    *env.mutable_error() = ErrorFromStatus(st);
    Send(env);
  }

  // ------------------------------------------------------------------ hello

  void SendHello() {
    v1::Envelope env;
    v1::AgentHello* h = env.mutable_agent_hello();
    h->set_host_id(host_id);
    h->set_version(opt.version);
    h->set_address(opt.address);
    v1::Capacity* c = h->mutable_capacity();
    c->set_cores(std::max(1u, std::thread::hardware_concurrency()));
    struct sysinfo si {};
    if (::sysinfo(&si) == 0) c->set_memory_bytes(static_cast<uint64_t>(si.totalram) * si.mem_unit);
    c->set_max_vnodes(opt.max_vnodes != 0 ? opt.max_vnodes : 1000);
    v1::Capabilities* cap = h->mutable_capabilities();
    for (const std::string& r : runtime_names) cap->add_runtimes(r);
    if (caps.netem && caps.htb) cap->add_shaping_backends("netem");
    if (caps.userspace_ok()) cap->add_shaping_backends("userspace");
    if (caps.htb) cap->add_kernel_features("sch_htb");
    if (caps.netem) cap->add_kernel_features("sch_netem");
    if (caps.nfqueue) cap->add_kernel_features("nfqueue");
    if (caps.iptables) cap->add_kernel_features("iptables_nfqueue");
    if (caps.ip6tables) cap->add_kernel_features("ip6tables_nfqueue");
    if (!cgroup_feature.empty()) cap->add_kernel_features(cgroup_feature);
    struct utsname u {};
    if (::uname(&u) == 0) cap->set_kernel_release(u.release);
    if (shaper)
      cap->set_active_shaping_backend(std::string(netshape::BackendName(shaper->backend())));
    Result<std::vector<HeldExperiment>> found = applier->FindHeld();
    if (found.ok()) {
      held = *found;
    } else {
      spdlog::warn("cannot list leftovers: {}", found.status().ToString());
      held.clear();
    }
    for (const HeldExperiment& e : held) {
      v1::ExperimentHeld* x = h->add_held();
      x->set_experiment_id(e.experiment);
      x->set_generation(e.generation);
      x->set_vnodes(e.vnodes);
      // A live experiment (the controller restarted): the state of its tasks.
      auto it = exps.find(e.experiment);
      if (!e.live || it == exps.end()) continue;
      for (const auto& [task_id, id] : it->second.tasks) {
        auto t = tasks.find(id);
        if (t != tasks.end() && t->second.last_event.state() != v1::TaskEvent::STATE_UNSPECIFIED) {
          *x->add_tasks() = t->second.last_event;
        }
      }
    }
    spdlog::info("hello to {} as {} ({} experiments held)", opt.controller, host_id, held.size());
    Send(env);
  }

  void HandleWelcome(const v1::Welcome& w) {
    if (welcomed) {
      spdlog::debug("duplicate Welcome ignored");
      return;
    }
    welcomed = true;
    if (w.heartbeat_interval_ms() > 0) heartbeat = milliseconds(w.heartbeat_interval_ms());
    next_heartbeat = Clock::now();
    std::map<std::string, uint64_t> keep;
    for (const v1::ExperimentHeld& k : w.keep()) keep[k.experiment_id()] = k.generation();
    spdlog::info("welcomed by controller {} (keep {} of {} held)", w.controller_version(),
                 keep.size(), held.size());
    for (const HeldExperiment& h : held) {
      const std::string exp = h.experiment;
      const bool kept = keep.count(exp) != 0;
      if (h.live) {
        if (!kept) StartTeardown(exp, std::nullopt);
        continue;
      }
      if (kept && h.complete) {
        Exp& e = exps[exp];
        e.generation = h.generation;
        e.phase = Phase::kAdopting;
        const uint64_t gen = h.generation;
        const uint64_t seq = Enqueue([this, exp, gen, seq = job_seq + 1] {
          Status st = applier->Adopt(exp);
          TeardownReport rep;
          if (!st.ok()) rep = applier->Teardown(exp);
          Post([this, exp, gen, seq, st, rep] { OnAdopted(exp, gen, seq, st, rep); });
        });
        e.last_job = seq;
      } else {
        if (kept) spdlog::warn("cannot keep {}: its deploy never finished; removing it", exp);
        StartTeardown(exp, std::nullopt);
      }
    }
  }

  void OnAdopted(const std::string& exp, uint64_t gen, uint64_t seq, const Status& st,
                 const TeardownReport& rep) {
    auto it = exps.find(exp);
    v1::Envelope env;
    env.set_experiment_id(exp);
    env.set_generation(gen);
    v1::ShardStatus* ss = env.mutable_shard_status();
    if (st.ok()) {
      spdlog::info("adopted experiment {} (generation {})", exp, gen);
      ss->set_phase(v1::ShardStatus::PHASE_READY);
      if (const v1::DeployShard* shard = applier->Shard(exp)) {
        ss->set_total(static_cast<uint32_t>(shard->vnodes_size() + shard->links_size()));
        ss->set_done(ss->total());
        if (it != exps.end()) {
          it->second.metrics_interval = milliseconds(shard->metrics_interval_ms());
          it->second.next_metrics = Clock::now() + it->second.metrics_interval;
        }
      }
    } else {
      spdlog::warn("could not adopt {}: {}; removed it ({} vnodes)", exp, st.ToString(),
                   rep.vnodes_removed);
      ss->set_phase(v1::ShardStatus::PHASE_FAILED);
      v1::ObjectError* oe = ss->add_errors();
      oe->set_object("shard");
      oe->set_message("adoption after an agent restart failed: " + st.ToString());
    }
    if (it != exps.end() && it->second.last_job == seq) {
      if (st.ok()) {
        it->second.phase = Phase::kReady;
        it->second.last_status = *ss;
      } else {
        exps.erase(it);
      }
    }
    Send(env);
  }

  // ------------------------------------------------------------------ deploy

  void HandleDeploy(const ReqKey& key, v1::DeployShard shard) {
    shard.set_experiment_id(key.experiment);
    shard.set_generation(key.generation);
    auto it = exps.find(key.experiment);
    if (it != exps.end()) {
      Exp& e = it->second;
      if (key.generation < e.generation) {
        return ReplyError(key, FailedPreconditionError(
                                   "generation " + std::to_string(key.generation) +
                                   " is older than generation " + std::to_string(e.generation) +
                                   " of experiment " + key.experiment + " on this pnode"));
      }
      const bool busy = e.phase == Phase::kDeploying || e.phase == Phase::kAdopting;
      if (key.generation == e.generation) {
        if (e.phase == Phase::kReady) {
          v1::Envelope env;
          *env.mutable_shard_status() = e.last_status;
          env.mutable_shard_status()->set_phase(v1::ShardStatus::PHASE_READY);
          return Reply(key, std::move(env));
        }
        if (busy) {
          e.deploy_waiters.push_back(key);
          v1::Envelope env;
          *env.mutable_shard_status() = e.last_status;
          env.mutable_shard_status()->set_phase(v1::ShardStatus::PHASE_DEPLOYING);
          return Reply(key, std::move(env));
        }
      } else if (busy || e.phase == Phase::kReady) {
        return ReplyError(
            key, UnimplementedError("experiment " + key.experiment + " is deployed at generation " +
                                    std::to_string(e.generation) +
                                    "; changing a deployed shard is not supported yet (tear it "
                                    "down first)"));
      }
    }
    // Deploy (after whatever is queued for this experiment, e.g. a teardown).
    Exp& e = exps[key.experiment];
    e.generation = key.generation;
    e.phase = Phase::kDeploying;
    e.deploy_waiters = {key};
    e.last_status.Clear();
    e.last_status.set_phase(v1::ShardStatus::PHASE_DEPLOYING);
    e.last_status.set_total(static_cast<uint32_t>(shard.vnodes_size() + shard.links_size()));
    const std::string exp = key.experiment;
    const uint64_t seq = job_seq + 1;
    Enqueue([this, exp, seq, shard = std::move(shard)] {
      auto last = std::make_shared<Clock::time_point>();
      DeployReport rep =
          applier->Deploy(shard, [this, exp, seq, last](uint32_t done, uint32_t total) {
            Post([this, exp, seq, done, total] { OnDeployProgress(exp, seq, done, total); });
          });
      Post([this, exp, seq, rep] { OnDeployDone(exp, seq, rep); });
    });
    e.last_job = seq;
    e.deploy_job = seq;
  }

  void OnDeployProgress(const std::string& exp, uint64_t seq, uint32_t done, uint32_t total) {
    auto it = exps.find(exp);
    if (it == exps.end() || it->second.deploy_job != seq) return;
    Exp& e = it->second;
    e.last_status.set_phase(v1::ShardStatus::PHASE_DEPLOYING);
    e.last_status.set_done(done);
    e.last_status.set_total(total);
    for (const ReqKey& k : e.deploy_waiters) {
      v1::Envelope env;
      *env.mutable_shard_status() = e.last_status;
      Reply(k, std::move(env));
    }
  }

  void OnDeployDone(const std::string& exp, uint64_t seq, const DeployReport& rep) {
    auto it = exps.find(exp);
    if (rep.ok) {
      spdlog::info("experiment {}: deployed {} objects in {:.3f}s ({})", exp, rep.total,
                   rep.timings.total_s, rep.timings.ToString());
    } else {
      spdlog::warn("experiment {}: deploy failed ({} errors, first: {} {})", exp, rep.errors.size(),
                   rep.errors.empty() ? "" : rep.errors[0].object,
                   rep.errors.empty() ? "" : rep.errors[0].message);
    }
    if (it == exps.end() || it->second.deploy_job != seq) return;
    Exp& e = it->second;
    v1::ShardStatus st;
    st.set_phase(rep.ok ? v1::ShardStatus::PHASE_READY : v1::ShardStatus::PHASE_FAILED);
    st.set_done(rep.done);
    st.set_total(rep.total);
    for (const ShardObjectError& oe : rep.errors) {
      v1::ObjectError* x = st.add_errors();
      x->set_object(oe.object);
      x->set_message(oe.message);
    }
    e.last_status = st;
    for (const ReqKey& k : e.deploy_waiters) {
      v1::Envelope env;
      *env.mutable_shard_status() = st;
      Reply(k, std::move(env));
    }
    e.deploy_waiters.clear();
    if (e.last_job == seq) {
      e.phase = rep.ok ? Phase::kReady : Phase::kFailed;
      if (rep.ok) {
        const v1::DeployShard* shard = applier->Shard(exp);
        e.metrics_interval = milliseconds(shard != nullptr ? shard->metrics_interval_ms() : 0);
        e.next_metrics = Clock::now() + e.metrics_interval;
      }
    }
  }

  // ------------------------------------------------------------------ teardown

  // Queues a teardown of `exp`; answers `key` (if any) with TornDown, else
  // announces it unsolicited (request id 0).
  void StartTeardown(const std::string& exp, std::optional<ReqKey> key) {
    Exp& e = exps[exp];
    e.phase = Phase::kTearingDown;
    const uint64_t seq = job_seq + 1;
    const uint64_t gen = e.generation;
    Enqueue([this, exp, seq, key, gen] {
      TeardownReport rep = applier->Teardown(exp);
      Post([this, exp, seq, key, gen, rep] { OnTornDown(exp, seq, key, gen, rep); });
    });
    e.last_job = seq;
  }

  void OnTornDown(const std::string& exp, uint64_t seq, const std::optional<ReqKey>& key,
                  uint64_t gen, const TeardownReport& rep) {
    spdlog::info("experiment {}: torn down, {} vnodes removed in {:.3f}s ({} errors)", exp,
                 rep.vnodes_removed, rep.timings.total_s, rep.errors.size());
    v1::Envelope env;
    v1::TornDown* td = env.mutable_torn_down();
    td->set_experiment_id(exp);
    td->set_vnodes_removed(rep.vnodes_removed);
    for (const ShardObjectError& oe : rep.errors) {
      v1::ObjectError* x = td->add_errors();
      x->set_object(oe.object);
      x->set_message(oe.message);
    }
    PumpRuntime();  // the TaskEvents of the tasks the teardown killed go first
    auto it = exps.find(exp);
    if (it != exps.end()) {
      // Tasks end with their vnodes; a deploy queued after this teardown
      // starts with none.
      for (auto& [task_id, id] : it->second.tasks) tasks.erase(id);
      it->second.tasks.clear();
      if (it->second.last_job == seq) exps.erase(it);
    }
    if (key) {
      Reply(*key, std::move(env));
    } else {
      env.set_experiment_id(exp);
      env.set_generation(gen);
      Send(env);
    }
  }

  void HandleTeardown(const ReqKey& key) {
    auto it = exps.find(key.experiment);
    if (it != exps.end() && key.generation < it->second.generation) {
      return ReplyError(
          key, FailedPreconditionError("generation " + std::to_string(key.generation) +
                                       " is older than generation " +
                                       std::to_string(it->second.generation) + " of experiment " +
                                       key.experiment + " on this pnode"));
    }
    if (it != exps.end()) it->second.generation = std::max(it->second.generation, key.generation);
    StartTeardown(key.experiment, key);
  }

  // ------------------------------------------------------------------ tasks and events

  Status CheckReady(const ReqKey& key) const {
    auto it = exps.find(key.experiment);
    if (it == exps.end() || it->second.phase != Phase::kReady) {
      return FailedPreconditionError("experiment '" + key.experiment +
                                     "' is not deployed (READY) on this pnode");
    }
    if (key.generation != it->second.generation) {
      return FailedPreconditionError(
          "generation " + std::to_string(key.generation) + " of experiment " + key.experiment +
          (key.generation < it->second.generation ? " is older than" : " is not") +
          " the deployed generation " + std::to_string(it->second.generation));
    }
    return Status::Ok();
  }

  void HandleExec(const ReqKey& key, const v1::Exec& x) {
    Status st = CheckReady(key);
    if (!st.ok()) return ReplyError(key, st);
    Exp& e = exps[key.experiment];
    if (x.task_id().empty()) return ReplyError(key, InvalidArgumentError("Exec without a task_id"));
    if (e.tasks.count(x.task_id()) != 0) {
      return ReplyError(key, AlreadyExistsError("task '" + x.task_id() + "' exists already in " +
                                                key.experiment));
    }
    if (!applier->HasVnode(key.experiment, x.vnode())) {
      return ReplyError(key, NotFoundError("no vnode '" + x.vnode() + "' in experiment " +
                                           key.experiment + " on this pnode"));
    }
    if (x.shell().empty() == (x.argv_size() == 0)) {
      return ReplyError(key, InvalidArgumentError("Exec needs exactly one of shell and argv"));
    }
    TaskSpec spec;
    spec.shell_command = x.shell();
    spec.argv.assign(x.argv().begin(), x.argv().end());
    for (const auto& [k, v] : x.env()) spec.env.emplace_back(k, v);
    const std::string dir = applier->VnodeOutputDir(key.experiment, x.vnode());
    st = MakeDirs(dir);
    if (!st.ok()) return ReplyError(key, st);
    spec.stdout_path = dir + "/" + SafeFileName(x.task_id()) + ".stdout";
    spec.stderr_path = dir + "/" + SafeFileName(x.task_id()) + ".stderr";
    spec.timeout = milliseconds(x.timeout_ms());
    Result<TaskId> id = runtime->Exec(VnodeRef{key.experiment, x.vnode()}, spec);
    if (!id.ok()) return ReplyError(key, id.status());
    TaskRec rec;
    rec.experiment = key.experiment;
    rec.generation = key.generation;
    rec.task_id = x.task_id();
    rec.vnode = x.vnode();
    rec.key = key;
    rec.stdout_path = spec.stdout_path;
    rec.stderr_path = spec.stderr_path;
    tasks[*id] = rec;
    e.tasks[x.task_id()] = *id;
    NoteHandled(key);
    PumpRuntime();
  }

  void HandleSignal(const ReqKey& key, const v1::Signal& s) {
    Status st = CheckReady(key);
    if (!st.ok()) return ReplyError(key, st);
    Exp& e = exps[key.experiment];
    auto it = e.tasks.find(s.task_id());
    if (it == e.tasks.end()) {
      return ReplyError(
          key, NotFoundError("no task '" + s.task_id() + "' in experiment " + key.experiment));
    }
    Result<TaskSignal> sig = ParseTaskSignal(s.signal());
    if (!sig.ok()) return ReplyError(key, sig.status());
    auto rec = tasks.find(it->second);
    if (*sig == TaskSignal::kKill && rec != tasks.end()) rec->second.kill_requested = true;
    st = runtime->Signal(it->second, *sig);
    if (!st.ok()) return ReplyError(key, st);
    NoteHandled(key);
    PumpRuntime();
  }

  void HandleApplyEvent(const ReqKey& key, const v1::ApplyEvent& ev) {
    Status st = CheckReady(key);
    if (st.ok()) st = applier->CheckEvent(key.experiment, ev);
    if (!st.ok()) return ReplyError(key, st);
    st = applier->ApplyEvent(key.experiment, ev);
    v1::Envelope env;
    v1::EventApplied* ea = env.mutable_event_applied();
    ea->set_event_id(ev.event_id());
    ea->set_applied_unix_ns(UnixNanosNow());
    if (!st.ok()) *ea->mutable_error() = ErrorFromStatus(st);
    Reply(key, std::move(env));
    PumpRuntime();
  }

  void OnRuntimeEvent(const RuntimeEvent& ev) {
    auto it = tasks.find(ev.task);
    if (ev.kind == RuntimeEventKind::kVnodeDied) {
      spdlog::warn("vnode {} died", ev.vnode.ToString());
      return;
    }
    if (it == tasks.end()) return;  // a task of an adopted vnode, or of a torn-down experiment
    TaskRec& rec = it->second;
    v1::Envelope env;
    v1::TaskEvent* te = env.mutable_task_event();
    te->set_task_id(rec.task_id);
    te->set_vnode(rec.vnode);
    te->set_stdout_path(rec.stdout_path);
    te->set_stderr_path(rec.stderr_path);
    if (ev.kind == RuntimeEventKind::kTaskStarted) {
      te->set_state(v1::TaskEvent::STATE_STARTED);
      Result<TaskStatus> ts = runtime->GetTask(ev.task);
      te->set_start_unix_ns(ts.ok() ? WallNs(ts->result.times.start_wall) : UnixNanosNow());
      rec.last_event = *te;
      Reply(rec.key, std::move(env));
      return;
    }
    const TaskResult& r = ev.result;
    te->set_state(r.reason == ExitReason::kStartFailed ? v1::TaskEvent::STATE_FAILED_TO_START
                                                       : v1::TaskEvent::STATE_EXITED);
    te->set_exit_code(r.exit_code);
    te->set_signal(r.signal);
    te->set_reason(ReasonName(r, rec.kill_requested));
    te->set_start_unix_ns(WallNs(r.times.start_wall));
    te->set_end_unix_ns(WallNs(r.times.end_wall));
    rec.last_event = *te;
    Reply(rec.key, std::move(env));
    // The record stays (a repeated Exec gets the same events) until teardown.
  }

  void PumpRuntime() {
    for (const RuntimeEvent& ev : runtime->Poll(milliseconds(0))) OnRuntimeEvent(ev);
  }

  // ------------------------------------------------------------------ dispatch

  void OnMessage(const zmq::message_t& msg) {
    v1::Envelope env;
    if (!env.ParseFromArray(msg.data(), static_cast<int>(msg.size()))) {
      return SendError({}, InvalidArgumentError("unparsable message: not a gridemu.v1.Envelope (" +
                                                std::to_string(msg.size()) + " bytes)"));
    }
    ReqKey key{env.experiment_id(), env.generation(), env.request_id()};
    switch (env.body_case()) {
      case v1::Envelope::BODY_NOT_SET:
        return SendError(key, InvalidArgumentError("envelope without a body"));
      case v1::Envelope::kWelcome:
        return HandleWelcome(env.welcome());
      case v1::Envelope::kHeartbeat:
        return;
      case v1::Envelope::kError:
        spdlog::warn("controller error for request {}: {} {}", env.request_id(), env.error().code(),
                     env.error().message());
        // A controller that does not know this agent (it restarted and lost
        // the registration) refuses its heartbeats: register again. The new
        // AgentHello lists what the agent holds, with its tasks' states.
        if (welcomed && env.experiment_id().empty() &&
            env.error().code() == StatusCodeName(StatusCode::kFailedPrecondition)) {
          spdlog::info("the controller does not know this agent: saying hello again");
          welcomed = false;
          next_hello = Clock::now();
        }
        return;
      case v1::Envelope::kDeployShard:
      case v1::Envelope::kExec:
      case v1::Envelope::kSignal:
      case v1::Envelope::kApplyEvent:
      case v1::Envelope::kTeardown:
        break;
      default:
        return SendError(key, InvalidArgumentError("agents do not accept " +
                                                   BodyName(env.body_case()) + " messages"));
    }
    // Experiment id and generation may also be in the body.
    if (env.has_deploy_shard()) {
      const v1::DeployShard& d = env.deploy_shard();
      if (key.experiment.empty()) key.experiment = d.experiment_id();
      if (key.generation == 0) key.generation = d.generation();
      if ((!d.experiment_id().empty() && d.experiment_id() != key.experiment) ||
          (d.generation() != 0 && d.generation() != key.generation)) {
        return SendError(
            key, InvalidArgumentError("DeployShard names experiment " + d.experiment_id() +
                                      " generation " + std::to_string(d.generation()) +
                                      ", its envelope " + env.experiment_id() + " generation " +
                                      std::to_string(env.generation())));
      }
    }
    if (env.has_teardown()) {
      const std::string& t = env.teardown().experiment_id();
      if (key.experiment.empty()) key.experiment = t;
      if (!t.empty() && t != key.experiment) {
        return SendError(key, InvalidArgumentError("Teardown names experiment " + t +
                                                   ", its envelope " + env.experiment_id()));
      }
    }
    if (auto it = answers.find(key); it != answers.end()) {
      spdlog::debug("repeated request {} of {}: answering again", key.request_id, key.experiment);
      for (const auto& [kind, bytes] : it->second) SendRaw(bytes);
      return;
    }
    if (!welcomed) {
      return SendError(key, FailedPreconditionError("the agent has not been welcomed yet"));
    }
    if (!ValidateExperimentId(key.experiment).ok()) {
      return ReplyError(
          key, InvalidArgumentError("bad or missing experiment id '" + key.experiment + "'"));
    }
    switch (env.body_case()) {
      case v1::Envelope::kDeployShard:
        return HandleDeploy(key, env.deploy_shard());
      case v1::Envelope::kExec:
        return HandleExec(key, env.exec());
      case v1::Envelope::kSignal:
        return HandleSignal(key, env.signal());
      case v1::Envelope::kApplyEvent:
        return HandleApplyEvent(key, env.apply_event());
      case v1::Envelope::kTeardown:
        return HandleTeardown(key);
      default:
        return;
    }
  }

  // ------------------------------------------------------------------ timers

  void Timers() {
    const auto now = Clock::now();
    if (!welcomed && now >= next_hello) {
      SendHello();
      next_hello = now + opt.hello_retry;
    }
    if (welcomed && now >= next_heartbeat) {
      v1::Envelope env;
      v1::Heartbeat* hb = env.mutable_heartbeat();
      hb->set_unix_ms(UnixNanosNow() / 1000000);
      hb->set_vnodes(static_cast<uint32_t>(runtime->List().size()));
      Send(env);
      next_heartbeat = now + heartbeat;
    }
    for (auto& [exp, e] : exps) {
      if (e.phase != Phase::kReady || e.metrics_interval.count() <= 0 || now < e.next_metrics) {
        continue;
      }
      v1::Envelope env;
      env.set_experiment_id(exp);
      env.set_generation(e.generation);
      *env.mutable_metrics_batch() = applier->CollectMetrics(exp);
      Send(env);
      e.next_metrics = std::max(e.next_metrics + e.metrics_interval, now);
    }
  }

  milliseconds NextTimeout() const {
    const auto now = Clock::now();
    auto next = now + milliseconds(100);  // runtime events queued by other threads
    if (!welcomed) next = std::min(next, next_hello);
    if (welcomed) next = std::min(next, next_heartbeat);
    for (const auto& [exp, e] : exps) {
      if (e.phase == Phase::kReady && e.metrics_interval.count() > 0) {
        next = std::min(next, e.next_metrics);
      }
    }
    return std::max(milliseconds(0), std::chrono::duration_cast<milliseconds>(next - now));
  }

  Status Loop() {
    next_hello = Clock::now();
    while (true) {
      Timers();
      zmq_pollitem_t items[4] = {};
      items[0].socket = sock->handle();
      items[0].events = ZMQ_POLLIN;
      items[1].fd = runtime->event_fd();
      items[1].events = ZMQ_POLLIN;
      items[2].fd = wake_fd;
      items[2].events = ZMQ_POLLIN;
      items[3].fd = stop_fd;
      items[3].events = ZMQ_POLLIN;
      int rc = zmq_poll(items, 4, static_cast<long>(NextTimeout().count()));
      if (rc < 0) {
        if (zmq_errno() == EINTR) continue;
        return InternalError(std::string("zmq_poll: ") + zmq_strerror(zmq_errno()));
      }
      if (items[3].revents & ZMQ_POLLIN) return Status::Ok();
      if (items[2].revents & ZMQ_POLLIN) {
        uint64_t v;
        ssize_t n = ::read(wake_fd, &v, sizeof v);
        (void)n;
      }
      RunPosted();
      for (int i = 0; i < 256; ++i) {
        zmq::message_t msg;
        zmq::recv_result_t r;
        try {
          r = sock->recv(msg, zmq::recv_flags::dontwait);
        } catch (const zmq::error_t& e) {
          if (e.num() == EINTR) break;
          return InternalError(std::string("receive: ") + e.what());
        }
        if (!r) break;
        OnMessage(msg);
      }
      PumpRuntime();
    }
  }
};

// ---------------------------------------------------------------------------

Agent::Agent(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Agent::~Agent() = default;

const std::string& Agent::host_id() const { return impl_->host_id; }

void Agent::Stop() {
  uint64_t one = 1;
  ssize_t n = ::write(impl_->stop_fd, &one, sizeof one);
  (void)n;
}

Result<std::unique_ptr<Agent>> Agent::Create(const AgentOptions& options) {
  auto impl = std::make_unique<Impl>();
  impl->opt = options;
  if (options.prefix.empty() || options.prefix.find_first_of("/ \t:") != std::string::npos) {
    return InvalidArgumentError("prefix '" + options.prefix +
                                "': expected a name without '/', ':' or spaces");
  }
  impl->host_id = options.host_id;
  if (impl->host_id.empty()) {
    char buf[256] = {};
    if (::gethostname(buf, sizeof buf - 1) != 0) return InternalError("gethostname failed");
    impl->host_id = buf;
  }
  if (options.heartbeat.count() <= 0) return InvalidArgumentError("heartbeat: must be positive");
  if (in_addr a{}; !options.address.empty() &&
                   ::inet_pton(AF_INET, options.address.c_str(), &a) != 1) {
    return InvalidArgumentError("address '" + options.address +
                                "': expected this pnode's underlay IPv4 address, e.g. 192.0.2.7");
  }
  if (options.underlay_dev.size() > 15 ||
      options.underlay_dev.find_first_of("/: \t") != std::string::npos) {
    return InvalidArgumentError("underlay device '" + options.underlay_dev +
                                "': expected an interface name of at most 15 characters");
  }
  impl->heartbeat = options.heartbeat;
  impl->stop_fd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  impl->wake_fd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (impl->stop_fd < 0 || impl->wake_fd < 0) return InternalError("eventfd failed");

  // Runtime.
  RuntimeRegistry registry;
  RegisterBuiltinRuntimes(registry);
  impl->runtime_names = registry.Names();
  RuntimeOptions ro;
  ro.prefix = options.prefix;
  ro.state_root = options.runtime_state_root;
  ro.netns_dir = options.netns_dir;
  ro.init_path = options.init_path;
  ro.cgroup_version = options.cgroup_version;
  GRIDEMU_ASSIGN_OR_RETURN(impl->runtime, registry.Make("netns", ro));
  if (auto* nr = dynamic_cast<NetnsRuntime*>(impl->runtime.get())) {
    impl->cgroup_feature =
        nr->cgroup_layout().version == CgroupVersion::kV1 ? "cgroup_v1" : "cgroup_v2";
  }

  // Shaping.
  GRIDEMU_ASSIGN_OR_RETURN(netshape::BackendChoice choice,
                           netshape::ParseBackendChoice(options.shaping_backend));
  if (options.capabilities) {
    impl->caps = *options.capabilities;
  } else {
    Result<netshape::Capabilities> c = netshape::ProbeCapabilities();
    if (c.ok()) {
      impl->caps = *c;
    } else {
      spdlog::warn("shaping probe failed: {}", c.status().ToString());
    }
  }
  netshape::ShaperOptions so;
  so.backend = choice;
  so.capabilities = impl->caps;
  Result<std::unique_ptr<netshape::Shaper>> shaper = netshape::Shaper::Create(so);
  if (shaper.ok()) {
    impl->shaper = std::move(*shaper);
    spdlog::info("shaping backend: {} ({})", netshape::BackendName(impl->shaper->backend()),
                 impl->caps.ToString());
  } else {
    spdlog::warn("no link shaping: {}", shaper.status().ToString());
  }

  ShardApplierOptions ao;
  ao.prefix = options.prefix;
  ao.records_dir =
      options.state_dir.empty() ? "/run/" + options.prefix + "-agent" : options.state_dir;
  // Cross-pnode links: VXLAN between this address and the peers', in the
  // agent's own (the host's) namespace.
  ao.local_address = options.address;
  ao.underlay_dev = options.underlay_dev;
  impl->applier = std::make_unique<ShardApplier>(impl->runtime.get(), impl->shaper.get(), ao);

  // Socket.
  try {
    if (options.context != nullptr) {
      impl->ctx = options.context;
    } else {
      impl->own_ctx = std::make_unique<zmq::context_t>(1);
      impl->ctx = impl->own_ctx.get();
    }
    impl->sock = std::make_unique<zmq::socket_t>(*impl->ctx, zmq::socket_type::dealer);
    impl->sock->set(zmq::sockopt::routing_id, impl->host_id);
    impl->sock->set(zmq::sockopt::linger, 1000);
    impl->sock->set(zmq::sockopt::sndhwm, 100000);
    impl->sock->set(zmq::sockopt::rcvhwm, 100000);
  } catch (const zmq::error_t& e) {
    return InternalError(std::string("ZeroMQ socket: ") + e.what());
  }
  return std::unique_ptr<Agent>(new Agent(std::move(impl)));
}

Status Agent::Run() {
  Impl& m = *impl_;
  try {
    m.sock->connect(m.opt.controller);
  } catch (const zmq::error_t& e) {
    return InvalidArgumentError("controller endpoint '" + m.opt.controller + "': " + e.what());
  }
  {
    std::lock_guard<std::mutex> l(m.wmu);
    m.wstop = false;
  }
  m.worker = std::thread([&m] { m.WorkerMain(); });
  Status st = m.Loop();
  {
    std::lock_guard<std::mutex> l(m.wmu);
    m.wstop = true;
    m.jobs.clear();
  }
  m.wcv.notify_all();
  m.worker.join();
  m.RunPosted();
  if (m.opt.teardown_on_exit) {
    for (const auto& [exp, gen] : m.applier->Experiments()) {
      TeardownReport rep = m.applier->Teardown(exp);
      spdlog::info("experiment {}: torn down on exit ({} vnodes)", exp, rep.vnodes_removed);
    }
  }
  spdlog::info("agent {} stopped", m.host_id);
  return st;
}

}  // namespace gridemu::agent

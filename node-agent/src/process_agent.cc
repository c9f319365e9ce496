// The process agent: tasks as host processes. See process_agent.h.
#include "gridemu/node-agent/process_agent.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <sys/types.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <map>
#include <optional>
#include <set>
#include <thread>

#include "gridemu/common/clock.h"
#include "gridemu/node-agent/agent_convert.h"
#include "gridemu/node-agent/agent_core.h"
#include "gridemu/node-agent/agent_loop.h"
#include "memory_backend.h"

extern char** environ;

namespace gridemu::agent {
namespace {

namespace fs = std::filesystem;
using std::chrono::milliseconds;

// Runs tasks as host processes in their own process groups.
class ProcessBackend final : public internal::MemoryBackend {
 public:
  ProcessBackend(const ProcessAgentOptions& opt, std::string work_dir)
      : opt_(opt), work_dir_(std::move(work_dir)) {}
  ~ProcessBackend() override { ForgetAll(); }

  void Describe(v1::AgentHello* h) override {
    h->mutable_capacity()->set_cores(std::max(1u, std::thread::hardware_concurrency()));
    h->mutable_capacity()->set_memory_bytes(uint64_t{1} << 34);
    h->mutable_capacity()->set_max_vnodes(opt_.max_vnodes != 0 ? opt_.max_vnodes : 100000);
    h->mutable_capabilities()->add_runtimes("netns");
    h->mutable_capabilities()->set_active_shaping_backend("none (simulated)");
    struct utsname u {};
    if (::uname(&u) == 0) h->mutable_capabilities()->set_kernel_release(u.release);
  }

  void Deploy(uint64_t job, const v1::DeployShard& d) override {
    const std::string& id = d.experiment_id();
    const uint32_t total = static_cast<uint32_t>(d.vnodes_size() + d.links_size());
    events_->DeployProgress(job, 0, total);
    Forget(id);
    if (!opt_.fail_deploy.empty()) {
      DeployOutcome out;
      out.total = total;
      out.errors.push_back(
          {d.vnodes_size() > 0 ? "vnode " + d.vnodes(0).name() : "shard", opt_.fail_deploy});
      return events_->DeployDone(job, std::move(out));
    }
    Keep(job, d);
    Exp& e = exps_[id];
    e.shard = d;
    for (const auto& v : d.vnodes()) {
      std::error_code ec;
      fs::create_directories(OutDir(e, id, v.name()), ec);
    }
    if (opt_.never_ready) return;
    e.ready_at = AgentClock::now() + opt_.deploy_time;
    MaybeReady(id, e);
  }

  Status Exec(const std::string& experiment, const v1::Exec& x) override {
    Exp& e = exps_.at(experiment);
    const v1::VnodeSpec* v = FindVnode(e, x.vnode());
    if (v == nullptr) return NotFoundError("no vnode '" + x.vnode() + "'");
    const std::string out = OutDir(e, experiment, x.vnode());
    std::error_code ec;
    fs::create_directories(out, ec);
    Task t;
    t.vnode = x.vnode();
    const std::string stdout_path = out + "/" + TaskFileName(x.task_id()) + ".stdout";
    const std::string stderr_path = out + "/" + TaskFileName(x.task_id()) + ".stderr";

    // Environment: ours, then GRIDEMU_*, then the task's.
    std::map<std::string, std::string> env;
    for (char** p = environ; p && *p; ++p) {
      const std::string kv = *p;
      const size_t eq = kv.find('=');
      if (eq != std::string::npos) env[kv.substr(0, eq)] = kv.substr(eq + 1);
    }
    env["GRIDEMU_NODE"] = x.vnode();
    env["GRIDEMU_INDEX"] = std::to_string(v->group_index());
    env["GRIDEMU_EXPERIMENT"] = experiment;
    env["GRIDEMU_OUT"] = out;
    env["GRIDEMU_SHARED"] = e.shard.shared_dir();
    for (const auto& [k, val] : x.env()) env[k] = val;
    std::vector<std::string> env_strings;
    for (const auto& [k, val] : env) env_strings.push_back(k + "=" + val);
    std::vector<char*> envp;
    for (auto& s : env_strings) envp.push_back(s.data());
    envp.push_back(nullptr);
    std::vector<std::string> args;
    if (!x.shell().empty()) {
      args = {"/bin/sh", "-c", x.shell()};
    } else {
      args.assign(x.argv().begin(), x.argv().end());
    }
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);

    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 1, stdout_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC,
                                     0644);
    posix_spawn_file_actions_addopen(&fa, 2, stderr_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC,
                                     0644);
    posix_spawn_file_actions_addchdir_np(&fa, out.c_str());
    posix_spawnattr_t attr;
    posix_spawnattr_init(&attr);
    posix_spawnattr_setflags(&attr,
                             POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    posix_spawnattr_setpgroup(&attr, 0);
    sigset_t none, all;
    sigemptyset(&none);
    sigfillset(&all);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setsigdefault(&attr, &all);
    pid_t pid = -1;
    const int rc = posix_spawnp(&pid, argv[0], &fa, &attr, argv.data(), envp.data());
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);

    v1::TaskEvent& te = t.last;
    te.set_task_id(x.task_id());
    te.set_vnode(x.vnode());
    te.set_stdout_path(stdout_path);
    te.set_stderr_path(stderr_path);
    te.set_start_unix_ns(UnixNanosNow());
    if (rc != 0) {
      te.set_state(v1::TaskEvent::STATE_FAILED_TO_START);
      te.set_reason(std::string("cannot start '") + args[0] + "': " + std::strerror(rc));
      te.set_end_unix_ns(UnixNanosNow());
    } else {
      t.pid = pid;
      t.running = true;
      e.groups.insert(pid);
      if (x.timeout_ms() > 0) t.deadline = AgentClock::now() + milliseconds(x.timeout_ms());
      te.set_state(v1::TaskEvent::STATE_STARTED);
    }
    const v1::TaskEvent first = te;
    e.tasks[x.task_id()] = std::move(t);
    events_->TaskChanged(experiment, first);
    return Status::Ok();
  }

  Status Signal(const std::string& experiment, const std::string& task_id,
                TaskSignal signal) override {
    Exp& e = exps_.at(experiment);
    auto it = e.tasks.find(task_id);
    if (it == e.tasks.end()) return NotFoundError("no task '" + task_id + "'");
    Task& t = it->second;
    if (!t.running) return Status::Ok();
    if (signal == TaskSignal::kKill) t.kill_requested = true;
    ::kill(-t.pid, SignalNumber(signal));
    return Status::Ok();
  }

  Status ApplyEvent(const std::string& experiment, const v1::ApplyEvent& ev) override {
    if (!ev.has_node_action()) return Status::Ok();
    Exp& e = exps_.at(experiment);
    const std::set<std::string> vnodes(ev.node_action().vnodes().begin(),
                                       ev.node_action().vnodes().end());
    const std::string& a = ev.node_action().action();
    if (a == "kill") {
      SignalVnodes(e, vnodes, SIGKILL, "vnode-killed");
    } else if (a == "stop") {
      // The core sent SIGTERM and waited for the tasks' stop grace: kill what is left.
      SignalVnodes(e, vnodes, SIGKILL, "vnode-stopped");
    } else if (a == "freeze") {
      SignalVnodes(e, vnodes, SIGSTOP, "");
    } else if (a == "thaw") {
      SignalVnodes(e, vnodes, SIGCONT, "");
    }
    return Status::Ok();
  }

  v1::MetricsBatch CollectMetrics(const std::string& experiment) override {
    const Exp& e = exps_.at(experiment);
    v1::MetricsBatch m;
    m.set_unix_ns(UnixNanosNow());
    for (const auto& v : e.shard.vnodes()) {
      v1::VnodeStats* s = m.add_vnodes();
      s->set_vnode(v.name());
      uint32_t pids = 0;
      for (const auto& [tid, t] : e.tasks) pids += (t.running && t.vnode == v.name()) ? 1 : 0;
      s->set_pids(pids);
    }
    for (const auto& l : e.shard.links()) {
      for (const char* dir : {"forward", "reverse"}) {
        v1::LinkCounters* c = m.add_links();
        c->set_link(l.name());
        c->set_direction(dir);
      }
    }
    return m;
  }

  AgentClock::time_point Tick(AgentClock::time_point now) override {
    bool busy = false;
    for (auto& [id, e] : exps_) {
      MaybeReady(id, e);
      busy = busy || (!Find(id)->ready && e.ready_at);
      for (auto& [tid, t] : e.tasks) {
        if (!t.running) continue;
        Reap(id, t, now);
        busy = busy || t.running;
      }
    }
    return busy ? now + milliseconds(10) : AgentClock::time_point::max();
  }

  size_t Processes() const {
    size_t n = 0;
    for (const auto& [id, e] : exps_) {
      for (const auto& [tid, t] : e.tasks) n += t.running ? 1 : 0;
    }
    return n;
  }
  std::vector<std::string> Experiments() const {
    std::vector<std::string> out;
    for (const auto& [id, e] : exps_) out.push_back(id);
    return out;
  }

 private:
  struct Task {
    std::string vnode;
    pid_t pid = -1;  // also the process group id
    bool running = false;
    bool kill_requested = false;
    std::string kill_reason;
    std::optional<AgentClock::time_point> deadline;
    v1::TaskEvent last;  // the latest event sent
  };
  // What runs for a kept shard (MemoryBackend keeps its names and state).
  struct Exp {
    v1::DeployShard shard;
    std::optional<AgentClock::time_point> ready_at;
    std::map<std::string, Task> tasks;  // by task id
    std::set<pid_t> groups;             // every process group made
  };

  std::string OutDir(const Exp& e, const std::string& experiment, const std::string& vnode) const {
    if (!e.shard.output_dir().empty()) return e.shard.output_dir() + "/" + vnode;
    return work_dir_ + "/" + experiment + "/out/" + vnode;
  }

  static const v1::VnodeSpec* FindVnode(const Exp& e, const std::string& name) {
    for (const auto& v : e.shard.vnodes()) {
      if (v.name() == name) return &v;
    }
    return nullptr;
  }

  void MaybeReady(const std::string& id, Exp& e) {
    Shard& s = *Find(id);
    if (s.ready || !e.ready_at || AgentClock::now() < *e.ready_at) return;
    s.ready = true;
    DeployOutcome out;
    out.ok = true;
    out.total = out.done = s.total;
    out.metrics_interval = milliseconds(e.shard.metrics_interval_ms());
    events_->DeployDone(s.job, std::move(out));
  }

  void SignalVnodes(Exp& e, const std::set<std::string>& vnodes, int sig, const char* reason) {
    for (auto& [id, t] : e.tasks) {
      if (!t.running || vnodes.count(t.vnode) == 0) continue;
      if (sig == SIGKILL || sig == SIGTERM) {
        t.kill_requested = true;
        t.kill_reason = reason;
      }
      ::kill(-t.pid, sig);
    }
  }

  void Reap(const std::string& experiment, Task& t, AgentClock::time_point now) {
    if (t.deadline && now >= *t.deadline && !t.kill_requested) {
      t.kill_requested = true;
      t.kill_reason = "timeout";
      ::kill(-t.pid, SIGKILL);
    }
    int st = 0;
    if (::waitpid(t.pid, &st, WNOHANG) != t.pid) return;
    t.running = false;
    v1::TaskEvent& te = t.last;
    te.set_state(v1::TaskEvent::STATE_EXITED);
    te.set_end_unix_ns(UnixNanosNow());
    if (WIFSIGNALED(st)) {
      te.set_exit_code(-1);
      te.set_signal(WTERMSIG(st));
      te.set_reason(!t.kill_reason.empty() ? t.kill_reason
                    : t.kill_requested     ? "killed"
                                           : "signaled");
    } else {
      te.set_exit_code(WEXITSTATUS(st));
      te.set_signal(0);
      te.set_reason(t.kill_reason.empty() ? "exited" : t.kill_reason);
    }
    events_->TaskChanged(experiment, te);
  }

  // Kills every process group of the experiment, reaps the leaders, removes
  // its work directory.
  void OnForget(const std::string& experiment, const Shard&) override {
    auto it = exps_.find(experiment);
    if (it == exps_.end()) return;
    Exp& e = it->second;
    for (pid_t g : e.groups) ::kill(-g, SIGKILL);
    for (auto& [id, t] : e.tasks) {
      if (t.running && t.pid > 0) {
        int st = 0;
        ::waitpid(t.pid, &st, 0);
        t.running = false;
      }
    }
    std::error_code ec;
    fs::remove_all(work_dir_ + "/" + it->first, ec);
    exps_.erase(it);
  }

  const ProcessAgentOptions& opt_;
  const std::string work_dir_;
  std::map<std::string, Exp> exps_;
};

// A Wire that can be silenced.
class MutableWire final : public Wire {
 public:
  explicit MutableWire(Wire* inner) : inner_(inner) {}
  void Send(std::string_view bytes) override {
    if (!muted_.load()) inner_->Send(bytes);
  }
  void SetMuted(bool m) { muted_.store(m); }

 private:
  Wire* inner_;
  std::atomic<bool> muted_{false};
};

}  // namespace

struct ProcessAgent::Impl {
  ProcessAgentOptions opt;
  std::string work_dir;
  bool own_work_dir = false;
  std::unique_ptr<AgentLoop> loop;
  std::unique_ptr<MutableWire> wire;
  std::unique_ptr<ProcessBackend> backend;
  std::unique_ptr<AgentCore> core;
  std::thread thread;
  bool stopped = false;
  std::vector<std::string> errors;  // loop thread
};

ProcessAgent::ProcessAgent(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

ProcessAgent::~ProcessAgent() { Stop(); }

Result<std::unique_ptr<ProcessAgent>> ProcessAgent::Start(ProcessAgentOptions options) {
  auto impl = std::make_unique<Impl>();
  Impl& m = *impl;
  m.opt = std::move(options);
  if (m.opt.work_dir.empty()) {
    const char* tmp = std::getenv("TMPDIR");
    std::string templ = std::string(tmp && *tmp ? tmp : "/tmp") + "/gridemu-sim-XXXXXX";
    if (::mkdtemp(templ.data()) == nullptr) {
      return UnavailableError(std::string("cannot make a work directory: ") + std::strerror(errno));
    }
    m.work_dir = templ;
    m.own_work_dir = true;
  } else {
    m.work_dir = m.opt.work_dir;
  }
  AgentLoopOptions lo;
  lo.controller = m.opt.controller;
  lo.routing_id = m.opt.host_id;
  lo.context = m.opt.context;
  lo.linger_ms = 0;
  lo.reconnect_ivl_ms = 50;
  lo.max_wait = milliseconds(10);
  Result<std::unique_ptr<AgentLoop>> loop = AgentLoop::Create(lo);
  if (!loop.ok()) return UnavailableError(loop.status().ToString());
  m.loop = std::move(*loop);
  m.wire = std::make_unique<MutableWire>(&m.loop->wire());
  m.backend = std::make_unique<ProcessBackend>(m.opt, m.work_dir);
  CoreOptions co;
  co.host_id = m.opt.host_id;
  co.version = "sim";
  co.heartbeat = m.opt.heartbeat;
  co.hello_retry = m.opt.hello_retry;
  co.rehello_on_refusal = m.opt.rehello_on_error;
  co.log = false;
  m.core = std::make_unique<AgentCore>(co, m.backend.get(), m.wire.get());
  m.core->on_controller_error = [&m](const v1::Error& e) {
    m.errors.push_back(e.code() + ": " + e.message());
  };
  m.thread = std::thread([&m] {
    Status st = m.loop->Run(*m.core);
    (void)st;
  });
  return std::unique_ptr<ProcessAgent>(new ProcessAgent(std::move(impl)));
}

void ProcessAgent::Stop() {
  if (!impl_ || impl_->stopped) return;
  impl_->stopped = true;
  impl_->loop->Stop();
  if (impl_->thread.joinable()) impl_->thread.join();
  impl_->core.reset();
  impl_->backend.reset();  // kills every task process
  impl_->wire.reset();
  impl_->loop.reset();
  if (impl_->own_work_dir) {
    std::error_code ec;
    fs::remove_all(impl_->work_dir, ec);
  }
}

void ProcessAgent::SetSilent(bool silent) {
  impl_->wire->SetMuted(silent);
  impl_->loop->SetMuted(silent);
}

void ProcessAgent::Rehello() {
  impl_->loop->Post([m = impl_.get()] { m->core->Rehello(); });
}

void ProcessAgent::Forget() {
  impl_->loop->Post([m = impl_.get()] { m->core->ForgetAll(); });
}

void ProcessAgent::SendRaw(const std::string& bytes) {
  impl_->loop->Post([m = impl_.get(), bytes] { m->loop->wire().Send(bytes); });
}

std::vector<std::string> ProcessAgent::ErrorsReceived() const {
  std::vector<std::string> out;
  if (impl_->stopped) return impl_->errors;
  impl_->loop->Call([&] { out = impl_->errors; });
  return out;
}

ProcessAgentStats ProcessAgent::Stats() const {
  ProcessAgentStats s;
  const Impl& m = *impl_;
  auto fill = [&] {
    const CoreStats c = m.core->Stats();
    s.hellos = static_cast<int>(c.hellos);
    s.welcomes = static_cast<int>(c.welcomes);
    s.deploys = static_cast<int>(c.deploys);
    s.execs = static_cast<int>(c.execs);
    s.signals = static_cast<int>(c.signals);
    s.events = static_cast<int>(c.events);
    s.teardowns = static_cast<int>(c.teardowns);
    s.errors_received = static_cast<int>(c.errors_received);
    s.kept = m.core->last_keep();
    s.experiments = m.backend->Experiments();
    s.processes = m.backend->Processes();
  };
  if (m.stopped) return s;
  m.loop->Call(fill);
  return s;
}

}  // namespace gridemu::agent

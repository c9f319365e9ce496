// SimAgent: a simulated agent that runs tasks as host processes. See run.h.

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <deque>
#include <filesystem>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <thread>
#include <zmq.hpp>

#include "gridemu/cli/run.h"
#include "gridemu/v1/agent.pb.h"

extern char** environ;

namespace gridemu::cli {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

namespace {

uint64_t UnixNs() {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                   std::chrono::system_clock::now().time_since_epoch())
                                   .count());
}

std::string SafeName(const std::string& s) {
  std::string out = s;
  for (char& c : out) {
    if (c == '/' || c == '\0') c = '_';
  }
  return out;
}

}  // namespace

struct SimAgent::Impl {
  struct Task {
    std::string experiment;
    uint64_t generation = 0;
    uint64_t request_id = 0;
    std::string task_id;
    std::string vnode;
    pid_t pid = -1;  // also the process group id
    bool running = false;
    bool kill_requested = false;
    std::string kill_reason;
    std::optional<Clock::time_point> deadline;
    v1::TaskEvent last;  // the latest event sent
  };
  struct Exp {
    uint64_t generation = 0;
    v1::DeployShard shard;
    bool ready = false;
    std::optional<Clock::time_point> ready_at;
    uint64_t deploy_request = 0;
    std::map<std::string, Task> tasks;  // by task id
    std::set<pid_t> groups;             // every process group made
    std::chrono::milliseconds metrics_interval{0};
    Clock::time_point next_metrics{};
  };

  SimAgentOptions opt;
  std::unique_ptr<zmq::context_t> own_context;
  std::unique_ptr<zmq::socket_t> sock;
  std::thread thread;
  std::atomic<bool> stop{false};
  std::atomic<bool> silent{false};
  bool stopped = false;
  std::string work_dir;
  bool own_work_dir = false;

  mutable std::mutex mu;  // guards everything below (the loop holds it while working)
  std::deque<std::function<void()>> commands;
  std::map<std::string, Exp> exps;
  bool welcomed = false;
  milliseconds heartbeat{1000};
  Clock::time_point next_hello{}, next_heartbeat{};
  SimAgentStats stats;
  std::vector<std::string> errors;

  void Send(v1::Envelope env) {
    if (silent) return;
    std::string bytes;
    env.SerializeToString(&bytes);
    try {
      (void)sock->send(zmq::buffer(bytes), zmq::send_flags::dontwait);
    } catch (const zmq::error_t&) {
    }
  }

  void Reply(const v1::Envelope& req, v1::Envelope env) {
    env.set_request_id(req.request_id());
    env.set_experiment_id(req.experiment_id());
    env.set_generation(req.generation());
    Send(std::move(env));
  }

  void ReplyError(const v1::Envelope& req, const std::string& code, const std::string& message) {
    v1::Envelope env;
    env.mutable_error()->set_code(code);
    env.mutable_error()->set_message(message);
    Reply(req, std::move(env));
  }

  void SendHello() {
    v1::Envelope env;
    v1::AgentHello* h = env.mutable_agent_hello();
    h->set_host_id(opt.host_id);
    h->set_version("sim");
    h->mutable_capacity()->set_cores(std::max(1u, std::thread::hardware_concurrency()));
    h->mutable_capacity()->set_memory_bytes(uint64_t{1} << 34);
    h->mutable_capacity()->set_max_vnodes(opt.max_vnodes != 0 ? opt.max_vnodes : 100000);
    h->mutable_capabilities()->add_runtimes("netns");
    h->mutable_capabilities()->set_active_shaping_backend("none (simulated)");
    struct utsname u {};
    if (::uname(&u) == 0) h->mutable_capabilities()->set_kernel_release(u.release);
    for (const auto& [id, e] : exps) {
      v1::ExperimentHeld* x = h->add_held();
      x->set_experiment_id(id);
      x->set_generation(e.generation);
      x->set_vnodes(static_cast<uint32_t>(e.shard.vnodes_size()));
      for (const auto& [tid, t] : e.tasks) *x->add_tasks() = t.last;
    }
    ++stats.hellos;
    Send(std::move(env));
  }

  // Kills every process group of the experiment and reaps the leaders.
  void KillExperiment(Exp& e) {
    for (pid_t g : e.groups) ::kill(-g, SIGKILL);
    for (auto& [id, t] : e.tasks) {
      if (t.running && t.pid > 0) {
        int st = 0;
        ::waitpid(t.pid, &st, 0);
        t.running = false;
      }
    }
    e.groups.clear();
  }

  void RemoveExperiment(const std::string& id) {
    auto it = exps.find(id);
    if (it == exps.end()) return;
    KillExperiment(it->second);
    std::error_code ec;
    fs::remove_all(work_dir + "/" + id, ec);
    exps.erase(it);
  }

  std::string OutDir(const Exp& e, const std::string& experiment, const std::string& vnode) {
    if (!e.shard.output_dir().empty()) return e.shard.output_dir() + "/" + vnode;
    return work_dir + "/" + experiment + "/out/" + vnode;
  }

  void HandleDeploy(const v1::Envelope& req) {
    ++stats.deploys;
    const v1::DeployShard& d = req.deploy_shard();
    const std::string id = req.experiment_id().empty() ? d.experiment_id() : req.experiment_id();
    auto old = exps.find(id);
    if (old != exps.end() && old->second.generation == req.generation() && old->second.ready) {
      v1::Envelope env;
      env.mutable_shard_status()->set_phase(v1::ShardStatus::PHASE_READY);
      env.mutable_shard_status()->set_total(d.vnodes_size() + d.links_size());
      env.mutable_shard_status()->set_done(d.vnodes_size() + d.links_size());
      Reply(req, std::move(env));
      return;
    }
    if (old != exps.end()) RemoveExperiment(id);
    const uint32_t total = static_cast<uint32_t>(d.vnodes_size() + d.links_size());
    {
      v1::Envelope env;
      env.mutable_shard_status()->set_phase(v1::ShardStatus::PHASE_DEPLOYING);
      env.mutable_shard_status()->set_total(total);
      Reply(req, std::move(env));
    }
    if (!opt.fail_deploy.empty()) {
      v1::Envelope env;
      v1::ShardStatus* s = env.mutable_shard_status();
      s->set_phase(v1::ShardStatus::PHASE_FAILED);
      s->set_total(total);
      v1::ObjectError* e = s->add_errors();
      e->set_object(d.vnodes_size() > 0 ? "vnode " + d.vnodes(0).name() : "shard");
      e->set_message(opt.fail_deploy);
      Reply(req, std::move(env));
      return;
    }
    Exp& e = exps[id];
    e.generation = req.generation();
    e.shard = d;
    e.deploy_request = req.request_id();
    e.metrics_interval = milliseconds(d.metrics_interval_ms());
    for (const auto& v : d.vnodes()) {
      std::error_code ec;
      fs::create_directories(OutDir(e, id, v.name()), ec);
    }
    if (opt.never_ready) return;
    e.ready_at = Clock::now() + opt.deploy_time;
  }

  void MaybeReady(const std::string& id, Exp& e) {
    if (e.ready || !e.ready_at || Clock::now() < *e.ready_at) return;
    e.ready = true;
    e.next_metrics = Clock::now() + e.metrics_interval;
    v1::Envelope env;
    env.set_request_id(e.deploy_request);
    env.set_experiment_id(id);
    env.set_generation(e.generation);
    v1::ShardStatus* s = env.mutable_shard_status();
    s->set_phase(v1::ShardStatus::PHASE_READY);
    const uint32_t total = static_cast<uint32_t>(e.shard.vnodes_size() + e.shard.links_size());
    s->set_total(total);
    s->set_done(total);
    Send(std::move(env));
  }

  Exp* Ready(const v1::Envelope& req) {
    auto it = exps.find(req.experiment_id());
    if (it == exps.end() || !it->second.ready) {
      ReplyError(req, "failed precondition",
                 "experiment " + req.experiment_id() + " is not deployed on " + opt.host_id);
      return nullptr;
    }
    if (req.generation() != it->second.generation) {
      ReplyError(req, "failed precondition",
                 "experiment " + req.experiment_id() + " is at generation " +
                     std::to_string(it->second.generation));
      return nullptr;
    }
    return &it->second;
  }

  const v1::VnodeSpec* FindVnode(const Exp& e, const std::string& name) {
    for (const auto& v : e.shard.vnodes()) {
      if (v.name() == name) return &v;
    }
    return nullptr;
  }

  void HandleExec(const v1::Envelope& req) {
    ++stats.execs;
    Exp* e = Ready(req);
    if (e == nullptr) return;
    const v1::Exec& x = req.exec();
    if (x.task_id().empty()) return ReplyError(req, "invalid argument", "Exec without a task_id");
    if (e->tasks.count(x.task_id()) != 0) {
      return ReplyError(req, "already exists", "task '" + x.task_id() + "' exists already");
    }
    const v1::VnodeSpec* v = FindVnode(*e, x.vnode());
    if (v == nullptr) return ReplyError(req, "not found", "no vnode '" + x.vnode() + "'");
    if (x.shell().empty() == (x.argv_size() == 0)) {
      return ReplyError(req, "invalid argument", "Exec needs exactly one of shell and argv");
    }
    const std::string out = OutDir(*e, req.experiment_id(), x.vnode());
    std::error_code ec;
    fs::create_directories(out, ec);
    Task t;
    t.experiment = req.experiment_id();
    t.generation = req.generation();
    t.request_id = req.request_id();
    t.task_id = x.task_id();
    t.vnode = x.vnode();
    const std::string stdout_path = out + "/" + SafeName(x.task_id()) + ".stdout";
    const std::string stderr_path = out + "/" + SafeName(x.task_id()) + ".stderr";

    // Environment: ours, then GRIDEMU_*, then the task's.
    std::map<std::string, std::string> env;
    for (char** p = environ; p && *p; ++p) {
      std::string kv = *p;
      size_t eq = kv.find('=');
      if (eq != std::string::npos) env[kv.substr(0, eq)] = kv.substr(eq + 1);
    }
    env["GRIDEMU_NODE"] = x.vnode();
    env["GRIDEMU_INDEX"] = std::to_string(v->group_index());
    env["GRIDEMU_EXPERIMENT"] = req.experiment_id();
    env["GRIDEMU_OUT"] = out;
    env["GRIDEMU_SHARED"] = e->shard.shared_dir();
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
    posix_spawnattr_setflags(
        &attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
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

    v1::Envelope ev;
    v1::TaskEvent* te = ev.mutable_task_event();
    te->set_task_id(t.task_id);
    te->set_vnode(t.vnode);
    te->set_stdout_path(stdout_path);
    te->set_stderr_path(stderr_path);
    te->set_start_unix_ns(UnixNs());
    if (rc != 0) {
      te->set_state(v1::TaskEvent::STATE_FAILED_TO_START);
      te->set_reason(std::string("cannot start '") + args[0] + "': " + std::strerror(rc));
      te->set_end_unix_ns(UnixNs());
      t.last = *te;
      e->tasks[t.task_id] = t;
      Reply(req, std::move(ev));
      return;
    }
    t.pid = pid;
    t.running = true;
    e->groups.insert(pid);
    if (x.timeout_ms() > 0) t.deadline = Clock::now() + milliseconds(x.timeout_ms());
    te->set_state(v1::TaskEvent::STATE_STARTED);
    t.last = *te;
    e->tasks[t.task_id] = t;
    Reply(req, std::move(ev));
  }

  static int SignalOf(const std::string& name) {
    if (name == "term") return SIGTERM;
    if (name == "kill") return SIGKILL;
    if (name == "stop") return SIGSTOP;
    if (name == "cont") return SIGCONT;
    if (name == "int") return SIGINT;
    if (name == "hup") return SIGHUP;
    return 0;
  }

  void HandleSignal(const v1::Envelope& req) {
    ++stats.signals;
    Exp* e = Ready(req);
    if (e == nullptr) return;
    auto it = e->tasks.find(req.signal().task_id());
    if (it == e->tasks.end()) {
      return ReplyError(req, "not found", "no task '" + req.signal().task_id() + "'");
    }
    const int sig = SignalOf(req.signal().signal());
    if (sig == 0) {
      return ReplyError(req, "invalid argument", "unknown signal '" + req.signal().signal() + "'");
    }
    Task& t = it->second;
    if (!t.running) return;
    if (sig == SIGKILL) t.kill_requested = true;
    ::kill(-t.pid, sig);
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

  void HandleApplyEvent(const v1::Envelope& req) {
    ++stats.events;
    Exp* e = Ready(req);
    if (e == nullptr) return;
    const v1::ApplyEvent& ev = req.apply_event();
    std::string link;
    if (ev.has_link_set()) link = ev.link_set().link();
    if (ev.has_link_state()) link = ev.link_state().link();
    if (!link.empty()) {
      bool found = false;
      for (const auto& l : e->shard.links()) found = found || l.name() == link;
      if (!found) return ReplyError(req, "not found", "no link '" + link + "'");
    } else if (ev.has_node_action()) {
      std::set<std::string> vnodes;
      for (const auto& v : ev.node_action().vnodes()) {
        if (FindVnode(*e, v) == nullptr)
          return ReplyError(req, "not found", "no vnode '" + v + "'");
        vnodes.insert(v);
      }
      const std::string& a = ev.node_action().action();
      if (a == "kill") {
        SignalVnodes(*e, vnodes, SIGKILL, "vnode-killed");
      } else if (a == "stop") {
        SignalVnodes(*e, vnodes, SIGTERM, "vnode-stopped");
      } else if (a == "freeze") {
        SignalVnodes(*e, vnodes, SIGSTOP, "");
      } else if (a == "thaw") {
        SignalVnodes(*e, vnodes, SIGCONT, "");
      } else if (a != "start") {
        return ReplyError(req, "invalid argument", "unknown node action '" + a + "'");
      }
    } else {
      return ReplyError(req, "invalid argument", "ApplyEvent without an action");
    }
    v1::Envelope out;
    out.mutable_event_applied()->set_event_id(ev.event_id());
    out.mutable_event_applied()->set_applied_unix_ns(UnixNs());
    Reply(req, std::move(out));
  }

  void HandleTeardown(const v1::Envelope& req) {
    ++stats.teardowns;
    const std::string id =
        req.experiment_id().empty() ? req.teardown().experiment_id() : req.experiment_id();
    uint32_t removed = 0;
    if (auto it = exps.find(id); it != exps.end()) {
      removed = static_cast<uint32_t>(it->second.shard.vnodes_size());
      RemoveExperiment(id);
    }
    v1::Envelope out;
    out.mutable_torn_down()->set_experiment_id(id);
    out.mutable_torn_down()->set_vnodes_removed(removed);
    Reply(req, std::move(out));
  }

  void HandleWelcome(const v1::Welcome& w) {
    ++stats.welcomes;
    welcomed = true;
    if (w.heartbeat_interval_ms() > 0) heartbeat = milliseconds(w.heartbeat_interval_ms());
    next_heartbeat = Clock::now() + heartbeat;
    std::set<std::string> keep;
    stats.kept.clear();
    for (const auto& k : w.keep()) {
      keep.insert(k.experiment_id());
      stats.kept.push_back(k.experiment_id());
    }
    std::vector<std::string> drop;
    for (const auto& [id, e] : exps) {
      if (keep.count(id) == 0) drop.push_back(id);
    }
    for (const auto& id : drop) RemoveExperiment(id);
  }

  void OnMessage(const zmq::message_t& msg) {
    v1::Envelope env;
    if (!env.ParseFromArray(msg.data(), static_cast<int>(msg.size()))) {
      errors.push_back("unparsable message (" + std::to_string(msg.size()) + " bytes)");
      return;
    }
    switch (env.body_case()) {
      case v1::Envelope::kWelcome:
        return HandleWelcome(env.welcome());
      case v1::Envelope::kError:
        ++stats.errors_received;
        errors.push_back(env.error().code() + ": " + env.error().message());
        if (opt.rehello_on_error &&
            env.error().message().find("send AgentHello") != std::string::npos) {
          welcomed = false;  // the controller restarted: register again
          next_hello = Clock::now();
        }
        return;
      default:
        break;
    }
    if (!welcomed) return ReplyError(env, "failed precondition", "not welcomed yet");
    switch (env.body_case()) {
      case v1::Envelope::kDeployShard:
        return HandleDeploy(env);
      case v1::Envelope::kExec:
        return HandleExec(env);
      case v1::Envelope::kSignal:
        return HandleSignal(env);
      case v1::Envelope::kApplyEvent:
        return HandleApplyEvent(env);
      case v1::Envelope::kTeardown:
        return HandleTeardown(env);
      default:
        return ReplyError(env, "invalid argument", "agents do not accept this message");
    }
  }

  void Reap() {
    const auto now = Clock::now();
    for (auto& [id, e] : exps) {
      for (auto& [tid, t] : e.tasks) {
        if (!t.running) continue;
        if (t.deadline && now >= *t.deadline && !t.kill_requested) {
          t.kill_requested = true;
          t.kill_reason = "timeout";
          ::kill(-t.pid, SIGKILL);
        }
        int st = 0;
        const pid_t r = ::waitpid(t.pid, &st, WNOHANG);
        if (r != t.pid) continue;
        t.running = false;
        v1::Envelope env;
        env.set_request_id(t.request_id);
        env.set_experiment_id(t.experiment);
        env.set_generation(t.generation);
        v1::TaskEvent* te = env.mutable_task_event();
        *te = t.last;
        te->set_state(v1::TaskEvent::STATE_EXITED);
        te->set_end_unix_ns(UnixNs());
        if (WIFSIGNALED(st)) {
          te->set_exit_code(-1);
          te->set_signal(WTERMSIG(st));
          te->set_reason(!t.kill_reason.empty() ? t.kill_reason
                         : t.kill_requested     ? "killed"
                                                : "signaled");
        } else {
          te->set_exit_code(WEXITSTATUS(st));
          te->set_signal(0);
          te->set_reason(t.kill_reason.empty() ? "exited" : t.kill_reason);
        }
        t.last = *te;
        Send(std::move(env));
      }
    }
  }

  void Metrics() {
    const auto now = Clock::now();
    for (auto& [id, e] : exps) {
      if (!e.ready || e.metrics_interval.count() <= 0 || now < e.next_metrics) continue;
      e.next_metrics = now + e.metrics_interval;
      v1::Envelope env;
      env.set_experiment_id(id);
      env.set_generation(e.generation);
      v1::MetricsBatch* m = env.mutable_metrics_batch();
      m->set_unix_ns(UnixNs());
      for (const auto& v : e.shard.vnodes()) {
        v1::VnodeStats* s = m->add_vnodes();
        s->set_vnode(v.name());
        uint32_t pids = 0;
        for (const auto& [tid, t] : e.tasks) pids += (t.running && t.vnode == v.name()) ? 1 : 0;
        s->set_pids(pids);
      }
      for (const auto& l : e.shard.links()) {
        for (const char* dir : {"forward", "reverse"}) {
          v1::LinkCounters* c = m->add_links();
          c->set_link(l.name());
          c->set_direction(dir);
        }
      }
      Send(std::move(env));
    }
  }

  void Loop() {
    next_hello = Clock::now();
    while (!stop) {
      {
        std::unique_lock<std::mutex> lock(mu);
        while (!commands.empty()) {
          auto fn = std::move(commands.front());
          commands.pop_front();
          fn();
        }
        const auto now = Clock::now();
        if (!welcomed && now >= next_hello) {
          SendHello();
          next_hello = now + opt.hello_retry;
        }
        if (welcomed && now >= next_heartbeat) {
          v1::Envelope env;
          env.mutable_heartbeat()->set_unix_ms(UnixNs() / 1000000);
          uint32_t vnodes = 0;
          for (const auto& [id, e] : exps) vnodes += static_cast<uint32_t>(e.shard.vnodes_size());
          env.mutable_heartbeat()->set_vnodes(vnodes);
          Send(std::move(env));
          next_heartbeat = now + heartbeat;
        }
        for (auto& [id, e] : exps) MaybeReady(id, e);
        Reap();
        Metrics();
      }
      zmq::pollitem_t item{sock->handle(), 0, ZMQ_POLLIN, 0};
      try {
        zmq::poll(&item, 1, milliseconds(10));
      } catch (const zmq::error_t& e) {
        if (e.num() == ETERM) return;
        continue;
      }
      if (!(item.revents & ZMQ_POLLIN)) continue;
      while (true) {
        zmq::message_t msg;
        try {
          if (!sock->recv(msg, zmq::recv_flags::dontwait)) break;
        } catch (const zmq::error_t&) {
          break;
        }
        if (silent) continue;
        std::lock_guard<std::mutex> lock(mu);
        OnMessage(msg);
      }
    }
  }
};

SimAgent::SimAgent(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

SimAgent::~SimAgent() { Stop(); }

Result<std::unique_ptr<SimAgent>> SimAgent::Start(SimAgentOptions options) {
  auto impl = std::make_unique<Impl>();
  Impl& m = *impl;
  m.opt = std::move(options);
  m.heartbeat = m.opt.heartbeat;
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
  zmq::context_t* ctx = m.opt.context;
  if (ctx == nullptr) {
    m.own_context = std::make_unique<zmq::context_t>(1);
    ctx = m.own_context.get();
  }
  try {
    m.sock = std::make_unique<zmq::socket_t>(*ctx, zmq::socket_type::dealer);
    m.sock->set(zmq::sockopt::routing_id, m.opt.host_id);
    m.sock->set(zmq::sockopt::linger, 0);
    m.sock->set(zmq::sockopt::reconnect_ivl, 50);
    m.sock->connect(m.opt.controller);
  } catch (const zmq::error_t& e) {
    return UnavailableError("cannot connect to " + m.opt.controller + ": " + e.what());
  }
  m.thread = std::thread([&m] { m.Loop(); });
  return std::unique_ptr<SimAgent>(new SimAgent(std::move(impl)));
}

void SimAgent::Stop() {
  if (!impl_ || impl_->stopped) return;
  impl_->stopped = true;
  impl_->stop = true;
  if (impl_->thread.joinable()) impl_->thread.join();
  std::lock_guard<std::mutex> lock(impl_->mu);
  std::vector<std::string> ids;
  for (const auto& [id, e] : impl_->exps) ids.push_back(id);
  for (const auto& id : ids) impl_->RemoveExperiment(id);
  impl_->sock.reset();
  impl_->own_context.reset();
  if (impl_->own_work_dir) {
    std::error_code ec;
    fs::remove_all(impl_->work_dir, ec);
  }
}

void SimAgent::SetSilent(bool silent) { impl_->silent = silent; }

void SimAgent::Rehello() {
  std::lock_guard<std::mutex> lock(impl_->mu);
  impl_->commands.push_back([m = impl_.get()] {
    m->welcomed = false;
    m->next_hello = Clock::now();
  });
}

void SimAgent::Forget() {
  std::lock_guard<std::mutex> lock(impl_->mu);
  impl_->commands.push_back([m = impl_.get()] {
    for (auto& [id, e] : m->exps) m->KillExperiment(e);
    m->exps.clear();
  });
}

void SimAgent::SendRaw(const std::string& bytes) {
  std::lock_guard<std::mutex> lock(impl_->mu);
  impl_->commands.push_back([m = impl_.get(), bytes] {
    try {
      (void)m->sock->send(zmq::buffer(bytes), zmq::send_flags::dontwait);
    } catch (const zmq::error_t&) {
    }
  });
}

std::vector<std::string> SimAgent::ErrorsReceived() const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  return impl_->errors;
}

SimAgentStats SimAgent::Stats() const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  SimAgentStats s = impl_->stats;
  s.experiments.clear();
  s.processes = 0;
  for (const auto& [id, e] : impl_->exps) {
    s.experiments.push_back(id);
    for (const auto& [tid, t] : e.tasks) s.processes += t.running ? 1 : 0;
  }
  return s;
}

}  // namespace gridemu::cli

// `gridemu run`: an embedded controller + one local agent. See run.h.

#include "gridemu/cli/run.h"

#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>
#include <zmq.hpp>

#include "gridemu/common/clock.h"
#include "gridemu/common/units.h"
#include "gridemu/controller/controller.h"
#include "gridemu/controller/http_api.h"
#include "gridemu/controller/results.h"
#include "gridemu/experiments/parse.h"

namespace gridemu::cli {

namespace fs = std::filesystem;
using json = nlohmann::json;
using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

namespace {

// Runs `prepare:` / `analyze:` commands with /bin/sh in `cwd`, with the
// GRIDEMU_* variables of experiment.h added to the environment. stdout goes
// to `out` (and `log`), stderr to the terminal. Stops at the first failure;
// returns a message naming the command and its exit status.
Status RunHostCommands(const char* what, const std::vector<std::string>& cmds,
                       const std::string& cwd, const std::map<std::string, std::string>& env,
                       std::ostream& out, std::ostream* log) {
  for (size_t i = 0; i < cmds.size(); ++i) {
    std::string script;
    for (const auto& [k, v] : env) {
      std::string q;
      for (char c : v) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
      script += "export " + k + "='" + q + "'; ";
    }
    script += "cd '" + cwd + "' && { " + cmds[i] + "\n}";
    int fds[2];
    if (::pipe(fds) != 0)
      return InternalError(std::string(what) + ": pipe: " + std::strerror(errno));
    pid_t pid = ::fork();
    if (pid < 0) return InternalError(std::string(what) + ": fork: " + std::strerror(errno));
    if (pid == 0) {
      ::dup2(fds[1], 1);
      ::close(fds[0]);
      ::close(fds[1]);
      ::execl("/bin/sh", "sh", "-c", script.c_str(), static_cast<char*>(nullptr));
      ::_exit(127);
    }
    ::close(fds[1]);
    char buf[4096];
    ssize_t n;
    while ((n = ::read(fds[0], buf, sizeof buf)) > 0) {
      out.write(buf, n);
      if (log) log->write(buf, n);
    }
    ::close(fds[0]);
    int st = 0;
    while (::waitpid(pid, &st, 0) < 0 && errno == EINTR) {
    }
    out.flush();
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
      return InternalError(std::string(what) + " command " + std::to_string(i) + " (" + cmds[i] +
                           ") failed with " +
                           (WIFEXITED(st) ? "exit code " + std::to_string(WEXITSTATUS(st))
                                          : "signal " + std::to_string(WTERMSIG(st))));
    }
  }
  return Status::Ok();
}

std::atomic<int> g_signal{0};
std::atomic<int> g_signals{0};

void OnRunSignal(int sig) {
  g_signal.store(sig);
  g_signals.fetch_add(1);
  if (g_signals.load() >= 3) {
    static const char msg[] =
        "\ngridemu run: third interrupt: quitting without cleanup (run `gridemu clean`)\n";
    ssize_t n = ::write(2, msg, sizeof(msg) - 1);
    (void)n;
    ::_exit(128 + sig);
  }
}

// Restores the previous SIGINT/SIGTERM handlers on scope exit.
class SignalScope {
 public:
  SignalScope() {
    g_signal = 0;
    g_signals = 0;
    struct sigaction sa {};
    sa.sa_handler = OnRunSignal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &old_int_);
    sigaction(SIGTERM, &sa, &old_term_);
  }
  ~SignalScope() {
    sigaction(SIGINT, &old_int_, nullptr);
    sigaction(SIGTERM, &old_term_, nullptr);
  }

 private:
  struct sigaction old_int_ {};
  struct sigaction old_term_ {};
};

std::string Clock2(std::chrono::nanoseconds d) {
  int64_t s = std::max<int64_t>(0, d.count() / 1000000000);
  char buf[32];
  if (s >= 3600) {
    std::snprintf(buf, sizeof(buf), "%lld:%02lld:%02lld", static_cast<long long>(s / 3600),
                  static_cast<long long>((s / 60) % 60), static_cast<long long>(s % 60));
  } else {
    std::snprintf(buf, sizeof(buf), "%lld:%02lld", static_cast<long long>(s / 60),
                  static_cast<long long>(s % 60));
  }
  return buf;
}

std::string ProgressLine(const controller::RunProgress& p) {
  std::ostringstream out;
  out << "[" << p.phase << "]";
  if (p.deploy_total > 0) {
    out << " deploy " << p.deploy_done << "/" << p.deploy_total << " objects";
  }
  if (p.elapsed.count() > 0 || p.state == controller::ExperimentState::kRunning) {
    out << "  " << Clock2(p.elapsed) << " / " << Clock2(p.duration) << " ("
        << Clock2(p.duration > p.elapsed ? p.duration - p.elapsed : std::chrono::nanoseconds(0))
        << " left)";
  }
  if (p.tasks_total > 0) {
    out << "  tasks: " << p.tasks_running << " running, " << p.tasks_ended << "/" << p.tasks_total
        << " ended";
    if (p.tasks_failed > 0) out << " (" << p.tasks_failed << " not ok)";
  }
  if (p.events_total > 0) out << "  events " << p.events_done << "/" << p.events_total;
  return out.str();
}

// The run lock: flock() on a file holding JSON about the run.
class RunLock {
 public:
  ~RunLock() {
    if (fd_ >= 0) {
      if (::ftruncate(fd_, 0) != 0) {
        // Nothing to do: the lock is released with the descriptor anyway.
      }
      ::close(fd_);
    }
  }
  Status Acquire(const std::string& path) {
    path_ = path;
    std::error_code ec;
    fs::create_directories(fs::path(path).parent_path(), ec);
    fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd_ < 0) {
      return UnavailableError("cannot open the run lock '" + path + "': " + std::strerror(errno));
    }
    if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
      const int e = errno;
      ::close(fd_);
      fd_ = -1;
      if (e != EWOULDBLOCK) {
        return UnavailableError("cannot lock '" + path + "': " + std::strerror(e));
      }
      auto info = ReadRunningLock(path);
      std::string who = "another `gridemu run`";
      if (info.ok()) {
        who += " (pid " + std::to_string(info->pid);
        if (!info->experiment_id.empty()) who += ", experiment " + info->experiment_id;
        if (!info->file.empty()) who += " from " + info->file;
        if (!info->started.empty()) who += ", started " + info->started;
        who += ")";
      }
      std::string how = "wait for it to end";
      if (info.ok() && !info->experiment_id.empty()) {
        how += ", or stop it with `gridemu cancel " + info->experiment_id + "`";
      }
      return FailedPreconditionError(who + " is running on this machine (lock " + path + "); " +
                                     how);
    }
    return Status::Ok();
  }
  void Write(const RunLockInfo& info) {
    if (fd_ < 0) return;
    json j = {{"pid", info.pid},
              {"experiment_id", info.experiment_id},
              {"file", info.file},
              {"url", info.url},
              {"started", info.started}};
    const std::string text = j.dump() + "\n";
    if (::ftruncate(fd_, 0) != 0) return;
    if (::pwrite(fd_, text.data(), text.size(), 0) < 0) return;
  }

 private:
  std::string path_;
  int fd_ = -1;
};

bool StdoutIsTty() { return ::isatty(1) == 1; }

}  // namespace

std::string DefaultRunLockPath() {
  if (const char* env = std::getenv("GRIDEMU_RUN_LOCK"); env != nullptr && *env) return env;
  std::error_code ec;
  fs::create_directories("/run/gridemu", ec);
  if (!ec && ::access("/run/gridemu", W_OK) == 0) return "/run/gridemu/run.lock";
  if (const char* xdg = std::getenv("XDG_RUNTIME_DIR"); xdg != nullptr && *xdg) {
    return std::string(xdg) + "/gridemu-run.lock";
  }
  return "/tmp/gridemu-" + std::to_string(::getuid()) + "/run.lock";
}

Result<RunLockInfo> ReadRunningLock(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return NotFoundError("no run lock at '" + path + "'");
  // Locked by someone? Probe with a shared lock.
  const bool free = ::flock(fd, LOCK_SH | LOCK_NB) == 0;
  if (free) ::flock(fd, LOCK_UN);
  std::string text;
  char buf[4096];
  ssize_t n;
  while ((n = ::read(fd, buf, sizeof(buf))) > 0) text.append(buf, static_cast<size_t>(n));
  ::close(fd);
  if (free) return NotFoundError("no `gridemu run` is running (lock '" + path + "' is free)");
  RunLockInfo info;
  json j = json::parse(text, nullptr, false);
  if (j.is_object()) {
    info.pid = j.value("pid", 0);
    info.experiment_id = j.value("experiment_id", "");
    info.file = j.value("file", "");
    info.url = j.value("url", "");
    info.started = j.value("started", "");
  }
  return info;
}

int Run(const RunArgs& args, std::ostream& out, std::ostream& err) {
  SignalScope signals;
  // 1. The file, fully validated before anything starts.
  auto exp = experiments::LoadExperiment(args.file);
  if (!exp.ok()) {
    err << (exp.status().code() == StatusCode::kInvalidArgument ? exp.status().message()
                                                                : exp.status().ToString())
        << "\n";
    return 2;
  }
  std::string yaml;
  {
    std::ifstream in(args.file, std::ios::binary);
    std::ostringstream text;
    text << in.rdbuf();
    yaml = text.str();
  }

  // 2. One run at a time on this machine.
  RunLock lock;
  const std::string lock_path = args.lock_path.empty() ? DefaultRunLockPath() : args.lock_path;
  if (Status s = lock.Acquire(lock_path); !s.ok()) {
    err << "gridemu run: " << s.message() << "\n";
    return 2;
  }
  RunLockInfo info;
  info.pid = static_cast<int>(::getpid());
  info.file = args.file;
  info.started = controller::FormatUnixTime(UnixNanosNow());
  lock.Write(info);

  // 3. A private work directory: the controller database and logs.
  const char* tmp = std::getenv("TMPDIR");
  std::string work = std::string(tmp && *tmp ? tmp : "/tmp") + "/gridemu-run-XXXXXX";
  if (::mkdtemp(work.data()) == nullptr) {
    err << "gridemu run: cannot make a work directory: " << std::strerror(errno) << "\n";
    return 2;
  }
  struct WorkDir {
    std::string path;
    ~WorkDir() {
      std::error_code ec;
      fs::remove_all(path, ec);
    }
  } work_dir{work};
  auto log = std::make_shared<std::ofstream>(work + "/controller.log");
  auto log_mu = std::make_shared<std::mutex>();

  zmq::context_t context(1);
  controller::ControllerOptions copt;
  copt.db_path = work + "/controller.db";
  copt.agents_endpoint = "inproc://gridemu-run-" + std::to_string(::getpid());
  copt.context = &context;
  copt.results_dir = args.results;
  copt.import_base_dir = fs::path(args.file).parent_path().string();
  if (copt.import_base_dir.empty()) copt.import_base_dir = ".";
  copt.keep_work_files = args.keep;
  copt.recovery_timeout = args.agent_timeout;
  copt.log = [log, log_mu](std::string_view line) {
    std::lock_guard<std::mutex> l(*log_mu);
    *log << controller::FormatUnixTime(UnixNanosNow()) << " " << line << "\n";
    log->flush();
  };
  auto ctl = controller::Controller::Start(copt);
  if (!ctl.ok()) {
    err << "gridemu run: cannot start the controller: " << ctl.status().ToString() << "\n";
    return 2;
  }
  controller::Controller& c = **ctl;

  controller::HttpApiOptions hopt;
  hopt.address = "127.0.0.1";
  hopt.port = args.http_port;
  auto http = controller::HttpApiServer::Start(c.service(), hopt);
  if (http.ok()) {
    info.url = (*http)->url();
    lock.Write(info);
  } else {
    err << "gridemu run: warning: no HTTP API (" << http.status().message()
        << "); `gridemu status|cancel` cannot reach this run\n";
  }

  // 4. The local agent.
  LocalAgentOptions aopt;
  aopt.endpoint = c.endpoint();
  aopt.context = &context;
  aopt.prefix = args.agent_prefix;
  aopt.simulate = args.simulate;
  aopt.log_path = work + "/agent.log";
  auto agent = StartLocalAgent(aopt);
  if (!agent.ok()) {
    err << "gridemu run: cannot start the local agent: " << agent.status().message() << "\n";
    if (agent.status().code() == StatusCode::kPermissionDenied) {
      err << "gridemu run needs root for network namespaces and cgroups (or try --simulate, "
             "which runs tasks as plain processes)\n";
    }
    if (http.ok()) (*http)->Stop();
    c.Stop();
    return 2;
  }
  if (!c.WaitForAgents(1, args.agent_timeout)) {
    err << "gridemu run: the local agent did not register within " << FormatTime(args.agent_timeout)
        << "\n";
    (*agent)->Stop();
    if (http.ok()) (*http)->Stop();
    c.Stop();
    return 2;
  }

  // 5. Shared files and `prepare:` (host commands, in a copy of `shared:`).
  std::map<std::string, std::string> host_env;
  {
    std::error_code ec;
    host_env["GRIDEMU_EXPERIMENT_FILE"] = fs::absolute(args.file, ec).string();
    host_env["GRIDEMU_EXPERIMENT_DIR"] = fs::absolute(args.file, ec).parent_path().string();
    host_env["GRIDEMU"] = fs::read_symlink("/proc/self/exe", ec).string();
  }
  std::string shared_copy;
  if (!exp->shared_dir.empty() || !exp->prepare.empty()) {
    shared_copy = work + "/shared";
    std::error_code ec;
    fs::create_directories(shared_copy, ec);
    if (!exp->shared_dir.empty()) {
      fs::copy(exp->shared_dir, shared_copy, fs::copy_options::recursive, ec);
    }
    if (ec) {
      err << "gridemu run: cannot copy shared: " << exp->shared_dir << ": " << ec.message() << "\n";
      (*agent)->Stop();
      if (http.ok()) (*http)->Stop();
      c.Stop();
      return 2;
    }
    ::chmod(work.c_str(), 0755);  // vnodes (user nobody, e.g. opentracker) read it
    host_env["GRIDEMU_SHARED"] = shared_copy;
    if (!exp->prepare.empty()) {
      if (args.progress != "none")
        out << "gridemu run: prepare (" << exp->prepare.size() << " commands)\n";
      Status st = RunHostCommands("prepare", exp->prepare, shared_copy, host_env, out, nullptr);
      if (!st.ok()) {
        err << "gridemu run: " << args.file << ": " << st.message() << " (nothing was deployed)\n";
        (*agent)->Stop();
        if (http.ok()) (*http)->Stop();
        c.Stop();
        return 2;
      }
    }
  }

  // 6. Submit.
  controller::SubmitRequest req;
  req.yaml = yaml;
  req.filename = args.file;
  req.allow_host_commands = true;
  req.shared_dir = shared_copy;
  auto sub = c.service().Submit(req);
  if (!sub.ok()) {
    err << "gridemu run: " << sub.status().message() << "\n";
    (*agent)->Stop();
    if (http.ok()) (*http)->Stop();
    c.Stop();
    return 2;
  }
  const std::string id = sub->id;
  info.experiment_id = id;
  lock.Write(info);

  const bool tty = args.progress == "tty" || (args.progress == "auto" && StdoutIsTty());
  const bool quiet = args.progress == "none";
  out << "gridemu run: experiment " << id << " (" << exp->topology.num_vnodes() << " vnodes, "
      << exp->topology.num_links() << " links, " << exp->tasks.size() << " tasks, "
      << exp->events.size() << " events, duration " << FormatTime(exp->duration) << ")"
      << (args.simulate ? " [simulated agent: tasks run as host processes]" : "") << "\n";
  out.flush();

  // 7. Progress until final; Ctrl-C cancels.
  int interrupted = 0;
  std::string last_plain;
  auto last_plain_at = Clock::now() - std::chrono::hours(1);
  controller::RunProgress last;
  while (true) {
    if (g_signal.load() != 0 && interrupted == 0) {
      interrupted = g_signal.load();
      if (tty) out << "\r\033[K";
      out << "gridemu run: interrupted (" << (interrupted == SIGINT ? "SIGINT" : "SIGTERM")
          << "): cancelling " << id << " and tearing down (Ctrl-C twice more quits without "
          << "cleanup)\n";
      out.flush();
      auto st = c.Cancel(id, std::string("interrupted by ") +
                                 (interrupted == SIGINT ? "SIGINT (Ctrl-C)" : "SIGTERM"));
      if (!st.ok() && st.status().code() != StatusCode::kFailedPrecondition) {
        err << "gridemu run: cancel failed: " << st.status().message() << "\n";
      }
    }
    auto p = c.Progress(id);
    if (!p.ok() && p.status().code() == StatusCode::kDeadlineExceeded) {
      continue;  // the controller is busy (e.g. copying outputs): ask again
    }
    if (!p.ok()) {
      err << "gridemu run: " << p.status().message() << "\n";
      break;
    }
    last = *p;
    if (p->final) break;
    if (!quiet) {
      const std::string line = ProgressLine(*p);
      if (tty) {
        out << "\r\033[K" << line;
        out.flush();
      } else if (line.substr(0, line.find(']')) != last_plain.substr(0, last_plain.find(']')) ||
                 Clock::now() - last_plain_at >= std::chrono::seconds(10)) {
        out << line << "\n";
        out.flush();
        last_plain = line;
        last_plain_at = Clock::now();
      }
    }
    std::this_thread::sleep_for(milliseconds(tty ? 200 : 100));
  }
  if (tty && !quiet) out << "\r\033[K";

  // 8. Stop everything; the agent tears down whatever is left.
  if (http.ok()) (*http)->Stop();
  (*agent)->Stop();
  auto rec = c.store().GetExperiment(id);
  auto tasks = c.store().ListTasks(id);
  c.Stop();

  // 9. Summary.
  const std::string dir = rec.ok() ? rec->results_dir : last.results_dir;
  const controller::ExperimentState state = rec.ok() ? rec->state : last.state;
  if (!dir.empty()) {
    std::error_code ec;
    fs::copy_file(work + "/controller.log", dir + "/controller.log",
                  fs::copy_options::overwrite_existing, ec);
    if (fs::exists(work + "/agent.log")) {
      fs::copy_file(work + "/agent.log", dir + "/agent.log", fs::copy_options::overwrite_existing,
                    ec);
    }
    if (args.keep) {
      fs::copy_file(work + "/controller.db", dir + "/controller.db",
                    fs::copy_options::overwrite_existing, ec);
    }
  }
  out << "experiment " << id << ": " << controller::ExperimentStateName(state);
  if (rec.ok() && !rec->failure_reason.empty()) {
    out << " (" << rec->failure_reason << ")";
  } else if (!last.reason.empty()) {
    out << " (" << last.reason << ")";
  }
  out << "\n";
  if (tasks.ok() && !tasks->empty()) {
    out << "\n" << controller::FormatTaskTable(controller::SummarizeTasks(*tasks));
    size_t shown = 0;
    for (const auto& t : *tasks) {
      if (!t.wait ||
          (t.state == controller::TaskState::kExited && t.exit_code && *t.exit_code == 0)) {
        continue;
      }
      if (shown++ == 10) {
        out << "  ...\n";
        break;
      }
      out << "  " << t.task_id << " on " << t.vnode << ": " << controller::TaskStateName(t.state);
      if (t.exit_code) out << " exit " << *t.exit_code;
      if (t.signal) out << " signal " << *t.signal;
      if (!t.reason.empty()) out << " (" << t.reason << ")";
      out << "\n";
    }
  }
  // 10. `analyze:` in the results directory; its output joins the summary.
  if (!dir.empty() && !exp->analyze.empty() && interrupted == 0) {
    out << "\nanalysis:\n";
    host_env["GRIDEMU_RESULTS"] = dir;
    if (!shared_copy.empty()) host_env["GRIDEMU_SHARED"] = shared_copy;
    std::ofstream summary(dir + "/summary.txt", std::ios::app);
    summary << "\nanalysis:\n";
    Status st = RunHostCommands("analyze", exp->analyze, dir, host_env, out, &summary);
    if (!st.ok()) err << "gridemu run: " << st.message() << "\n";
  }
  if (!dir.empty()) out << "\nresults: " << dir << "\n";
  out.flush();

  if (interrupted != 0) return 128 + interrupted;
  if (state == controller::ExperimentState::kFinished && tasks.ok() &&
      controller::WaitedTasksSucceeded(*tasks)) {
    return 0;
  }
  return 1;
}

}  // namespace gridemu::cli

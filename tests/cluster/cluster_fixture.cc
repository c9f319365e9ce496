// See cluster_fixture.h.
#include "cluster_fixture.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

extern char** environ;

namespace gridemu::cluster_test {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

std::string Binary(const char* env, const char* compiled) {
  if (const char* v = std::getenv(env); v != nullptr && *v) return v;
  return compiled;
}

std::vector<std::string> HelperEnv() {
  return {"GRIDEMU_CLI=" + Binary("GRIDEMU_CLI_BIN", GRIDEMU_CLI_BIN),
          "GRIDEMU_CONTROLLER_BIN=" + Binary("GRIDEMU_CONTROLLER_BIN", GRIDEMU_CONTROLLER_BIN),
          "GRIDEMU_AGENT_BIN=" + Binary("GRIDEMU_AGENT_BIN", GRIDEMU_AGENT_BIN)};
}

CmdResult RunCmdEnv(const std::vector<std::string>& argv, std::chrono::milliseconds timeout,
                    const std::vector<std::string>& extra_env) {
  CmdResult r;
  char tmpl[] = "/tmp/gcl-cmd-XXXXXX";
  if (::mkdtemp(tmpl) == nullptr) return r;
  const std::string tmp = tmpl, out = tmp + "/out", err = tmp + "/err";
  std::vector<std::string> env;
  for (char** p = environ; p != nullptr && *p != nullptr; ++p) env.emplace_back(*p);
  for (const auto& e : extra_env) env.push_back(e);
  std::vector<char*> envp, args;
  for (auto& e : env) envp.push_back(e.data());
  envp.push_back(nullptr);
  std::vector<std::string> a = argv;
  for (auto& s : a) args.push_back(s.data());
  args.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 1, out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_addopen(&fa, 2, err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  pid_t pid = -1;
  const int rc = posix_spawn(&pid, args[0], &fa, nullptr, args.data(), envp.data());
  posix_spawn_file_actions_destroy(&fa);
  if (rc == 0) {
    const auto end = std::chrono::steady_clock::now() + timeout;
    while (true) {
      int st = 0;
      if (::waitpid(pid, &st, WNOHANG) == pid) {
        r.code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        break;
      }
      if (std::chrono::steady_clock::now() >= end) {
        ::kill(pid, SIGKILL);
        ::waitpid(pid, &st, 0);
        r.code = -1;
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  } else {
    r.err = "cannot start " + argv[0];
  }
  r.out = ReadFileOrEmpty(out);
  r.err += ReadFileOrEmpty(err);
  std::error_code ec;
  fs::remove_all(tmp, ec);
  return r;
}

}  // namespace

CmdResult RunCmd(const std::vector<std::string>& argv, std::chrono::milliseconds timeout) {
  return RunCmdEnv(argv, timeout, {});
}

std::string ReadFileOrEmpty(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

std::unique_ptr<Cluster> Cluster::Up(int pnodes, const std::string& dir, std::string* error) {
  std::unique_ptr<Cluster> c(new Cluster());
  c->k_ = pnodes;
  c->dir_ = dir;
  const std::string script = Binary("GRIDEMU_CLUSTER_SCRIPT", GRIDEMU_CLUSTER_SCRIPT);
  CmdResult r =
      RunCmdEnv({script, "up", std::to_string(pnodes), dir}, std::chrono::seconds(90), HelperEnv());
  // Whatever happened, `down` must run if anything was made.
  c->up_ = fs::exists(dir + "/cluster.env");
  const std::string marker = "export GRIDEMU_CONTROLLER=";
  const size_t at = r.out.find(marker);
  if (r.code != 0 || at == std::string::npos) {
    if (error != nullptr) {
      *error = "cluster up " + std::to_string(pnodes) + " " + dir + " exited " +
               std::to_string(r.code) + ":\n" + r.out + r.err;
    }
    return nullptr;  // the destructor runs `down`
  }
  size_t end = r.out.find('\n', at);
  c->url_ = r.out.substr(at + marker.size(),
                         end == std::string::npos ? std::string::npos : end - at - marker.size());
  // TAG=gcl<pid> from cluster.env.
  std::istringstream env(ReadFileOrEmpty(dir + "/cluster.env"));
  for (std::string line; std::getline(env, line);) {
    if (line.rfind("TAG=", 0) == 0) c->tag_ = line.substr(4);
  }
  return c;
}

Cluster::~Cluster() { Down(); }

void Cluster::Down() {
  if (!up_) return;
  int code = 0;
  Helper({"down", dir_}, &code);
  up_ = false;
}

std::string Cluster::Helper(const std::vector<std::string>& args, int* code) const {
  std::vector<std::string> argv = {Binary("GRIDEMU_CLUSTER_SCRIPT", GRIDEMU_CLUSTER_SCRIPT)};
  argv.insert(argv.end(), args.begin(), args.end());
  CmdResult r = RunCmdEnv(argv, std::chrono::seconds(90), HelperEnv());
  if (code != nullptr) *code = r.code;
  return r.out + r.err;
}

pid_t Cluster::agent_pid(int i) const {
  const std::string text = ReadFileOrEmpty(dir_ + "/p" + std::to_string(i) + "/agent.pid");
  if (text.empty()) return -1;
  const pid_t pid = static_cast<pid_t>(std::atoi(text.c_str()));
  return pid > 0 && ::kill(pid, 0) == 0 ? pid : -1;
}

pid_t Cluster::KillAgent(int i) {
  const pid_t pid = agent_pid(i);
  int code = 0;
  Helper({"kill-agent", dir_, std::to_string(i)}, &code);
  return code == 0 ? pid : -1;
}

bool Cluster::StartAgent(int i) {
  int code = 0;
  Helper({"start-agent", dir_, std::to_string(i)}, &code);
  return code == 0;
}

CmdResult Cluster::Gridemu(std::vector<std::string> args, std::chrono::milliseconds timeout) const {
  std::vector<std::string> argv = {Binary("GRIDEMU_CLI_BIN", GRIDEMU_CLI_BIN)};
  argv.insert(argv.end(), args.begin(), args.end());
  argv.push_back("--controller");
  argv.push_back(url_);
  return RunCmd(argv, timeout);
}

std::string Cluster::Submit(const std::string& yaml_path, std::string* error) const {
  CmdResult r = Gridemu({"submit", yaml_path});
  if (r.code != 0) {
    if (error != nullptr) *error = "gridemu submit exited " + std::to_string(r.code) + ": " + r.err;
    return "";
  }
  std::string id = r.out;
  while (!id.empty() && (id.back() == '\n' || id.back() == ' ')) id.pop_back();
  return id;
}

json Cluster::StatusJson(const std::string& id) const {
  CmdResult r = Gridemu({"status", id, "--json"});
  if (r.code != 0) return json();
  json j = json::parse(r.out, nullptr, false);
  return j.is_discarded() ? json() : j;
}

std::string Cluster::StatusText(const std::string& id) const {
  CmdResult r = Gridemu({"status", id});
  return r.out + r.err;
}

std::string Cluster::WaitState(const std::string& id, const std::vector<std::string>& states,
                               std::chrono::milliseconds timeout) const {
  const auto end = std::chrono::steady_clock::now() + timeout;
  std::string state;
  while (true) {
    json j = StatusJson(id);
    if (j.is_object() && j.contains("state") && j["state"].is_string()) {
      state = j["state"].get<std::string>();
      for (const auto& s : states) {
        if (s == state) return state;
      }
      if (state == "finished" || state == "failed" || state == "cancelled") return state;
    }
    if (std::chrono::steady_clock::now() >= end) return state;
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
}

std::vector<std::string> Cluster::VnodeNamespaces(int i, const std::string& experiment) const {
  std::vector<std::string> out;
  const std::string prefix = agent_prefix(i) + "-";
  std::error_code ec;
  for (const auto& e : fs::directory_iterator("/run/netns", ec)) {
    const std::string name = e.path().filename().string();
    if (name.rfind(prefix, 0) != 0) continue;
    if (!experiment.empty() && name.find(experiment) == std::string::npos) continue;
    out.push_back(name);
  }
  return out;
}

}  // namespace gridemu::cluster_test

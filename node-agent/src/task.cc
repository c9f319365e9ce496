#include "gridemu/node-agent/task.h"

#include <signal.h>
#include <string.h>
#include <sys/wait.h>

#include <algorithm>
#include <cctype>
#include <map>

namespace gridemu::agent {

int SignalNumber(TaskSignal s) {
  switch (s) {
    case TaskSignal::kTerm:
      return SIGTERM;
    case TaskSignal::kKill:
      return SIGKILL;
    case TaskSignal::kStop:
      return SIGSTOP;
    case TaskSignal::kCont:
      return SIGCONT;
    case TaskSignal::kInt:
      return SIGINT;
    case TaskSignal::kHup:
      return SIGHUP;
  }
  return SIGTERM;
}

std::string_view TaskSignalName(TaskSignal s) {
  switch (s) {
    case TaskSignal::kTerm:
      return "term";
    case TaskSignal::kKill:
      return "kill";
    case TaskSignal::kStop:
      return "stop";
    case TaskSignal::kCont:
      return "cont";
    case TaskSignal::kInt:
      return "int";
    case TaskSignal::kHup:
      return "hup";
  }
  return "?";
}

Result<TaskSignal> ParseTaskSignal(std::string_view name) {
  std::string n;
  for (char c : name) n.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(c))));
  if (n.rfind("sig", 0) == 0) n.erase(0, 3);
  for (TaskSignal s : {TaskSignal::kTerm, TaskSignal::kKill, TaskSignal::kStop, TaskSignal::kCont,
                       TaskSignal::kInt, TaskSignal::kHup}) {
    if (n == TaskSignalName(s)) return s;
  }
  return InvalidArgumentError("unknown signal '" + std::string(name) +
                              "': expected term, kill, stop, cont, int or hup");
}

std::string_view ExitReasonName(ExitReason r) {
  switch (r) {
    case ExitReason::kExited:
      return "exited";
    case ExitReason::kSignaled:
      return "signaled";
    case ExitReason::kTimedOut:
      return "timed-out";
    case ExitReason::kOomKilled:
      return "oom-killed";
    case ExitReason::kKilled:
      return "killed";
    case ExitReason::kStartFailed:
      return "start-failed";
    case ExitReason::kLost:
      return "lost";
  }
  return "?";
}

std::string TaskResult::ToString() const {
  std::string out(ExitReasonName(reason));
  if (exit_code >= 0) out += " code=" + std::to_string(exit_code);
  if (signal != 0) {
    out += " signal=" + std::to_string(signal);
    if (const char* abbrev = ::sigabbrev_np(signal)) out += std::string(" (SIG") + abbrev + ")";
  }
  if (oom_killed && reason != ExitReason::kOomKilled) out += " oom-killed";
  if (timed_out && reason != ExitReason::kTimedOut) out += " timed-out";
  if (!error.empty()) out += ": " + error;
  return out;
}

void DecodeWaitStatus(int wait_status, TaskResult* result) {
  if (WIFEXITED(wait_status)) {
    result->reason = ExitReason::kExited;
    result->exit_code = WEXITSTATUS(wait_status);
    result->signal = 0;
  } else if (WIFSIGNALED(wait_status)) {
    result->reason = ExitReason::kSignaled;
    result->exit_code = -1;
    result->signal = WTERMSIG(wait_status);
  } else {
    result->reason = ExitReason::kLost;
    result->error = "unexpected wait status " + std::to_string(wait_status);
  }
}

std::vector<std::string> MergeEnv(const EnvList& base, const EnvList& task) {
  std::vector<std::string> names;
  std::map<std::string, std::string, std::less<>> values;
  auto add = [&](const EnvList& list) {
    for (const auto& [k, v] : list) {
      if (k.empty() || k.find('=') != std::string::npos || k.find('\0') != std::string::npos) {
        continue;
      }
      auto [it, inserted] = values.insert_or_assign(k, v);
      if (inserted) names.push_back(k);
    }
  };
  add(base);
  add(task);
  std::vector<std::string> out;
  out.reserve(names.size());
  for (const std::string& n : names) out.push_back(n + "=" + values[n]);
  return out;
}

}  // namespace gridemu::agent

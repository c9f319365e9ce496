#include "gridemu/node-agent/cgroup.h"

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <thread>

#include "runtime_util.h"

namespace gridemu::agent {
namespace {

using internal::ErrnoStatus;

// The controllers gridemu uses, in the order hierarchies are listed.
constexpr std::string_view kWantedControllers[] = {"cpu", "cpuacct", "memory", "pids", "freezer"};

std::vector<std::string_view> Split(std::string_view s, char sep) {
  std::vector<std::string_view> out;
  size_t start = 0;
  while (true) {
    size_t p = s.find(sep, start);
    out.push_back(
        s.substr(start, p == std::string_view::npos ? std::string_view::npos : p - start));
    if (p == std::string_view::npos) break;
    start = p + 1;
  }
  return out;
}

std::vector<std::string_view> SplitLines(std::string_view s) {
  std::vector<std::string_view> out;
  for (std::string_view line : Split(s, '\n')) {
    if (!line.empty()) out.push_back(line);
  }
  return out;
}

// mountinfo escapes space, tab, newline and backslash as \ooo.
std::string Unescape(std::string_view s) {
  auto octal = [](char c) { return c >= '0' && c <= '7'; };
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 3 < s.size() && octal(s[i + 1]) && octal(s[i + 2]) && octal(s[i + 3])) {
      out.push_back(
          static_cast<char>((s[i + 1] - '0') * 64 + (s[i + 2] - '0') * 8 + (s[i + 3] - '0')));
      i += 3;
    } else {
      out.push_back(s[i]);
    }
  }
  return out;
}

struct MountEntry {
  std::string root;
  std::string mount_point;
  std::string fstype;
  std::vector<std::string> super_options;
};

Result<std::vector<MountEntry>> ParseMountinfo(std::string_view text) {
  std::vector<MountEntry> out;
  for (std::string_view line : SplitLines(text)) {
    std::vector<std::string_view> f = Split(line, ' ');
    auto dash = std::find(f.begin(), f.end(), std::string_view("-"));
    if (f.size() < 10 || dash == f.end() || dash - f.begin() < 6 || f.end() - dash < 4) {
      return InvalidArgumentError("mountinfo: cannot parse line '" + std::string(line) + "'");
    }
    MountEntry e;
    e.root = Unescape(f[3]);
    e.mount_point = Unescape(f[4]);
    e.fstype = std::string(*(dash + 1));
    for (std::string_view o : Split(*(dash + 3), ',')) e.super_options.emplace_back(o);
    out.push_back(std::move(e));
  }
  return out;
}

struct SelfCgroupLine {
  std::vector<std::string> controllers;  // empty for the v2 line
  std::string path;
  bool v2 = false;
};

Result<std::vector<SelfCgroupLine>> ParseSelfCgroup(std::string_view text) {
  std::vector<SelfCgroupLine> out;
  for (std::string_view line : SplitLines(text)) {
    size_t a = line.find(':');
    size_t b = a == std::string_view::npos ? a : line.find(':', a + 1);
    if (b == std::string_view::npos) {
      return InvalidArgumentError("/proc/self/cgroup: cannot parse line '" + std::string(line) +
                                  "'");
    }
    SelfCgroupLine l;
    std::string_view ctrls = line.substr(a + 1, b - a - 1);
    l.path = std::string(line.substr(b + 1));
    l.v2 = line.substr(0, a) == "0" && ctrls.empty();
    if (!ctrls.empty()) {
      for (std::string_view c : Split(ctrls, ',')) l.controllers.emplace_back(c);
    }
    out.push_back(std::move(l));
  }
  return out;
}

bool Contains(const std::vector<std::string>& v, std::string_view s) {
  return std::find(v.begin(), v.end(), s) != v.end();
}

std::string JoinPath(std::string_view a, std::string_view b) {
  std::string out(a);
  while (out.size() > 1 && out.back() == '/') out.pop_back();
  while (!b.empty() && b.front() == '/') b.remove_prefix(1);
  if (b.empty()) return out;
  if (out != "/") out.push_back('/');
  out.append(b);
  return out;
}

void SleepMs(int ms) { std::this_thread::sleep_for(std::chrono::milliseconds(ms)); }

}  // namespace

bool CgroupHierarchy::Has(std::string_view controller) const {
  return Contains(controllers, controller);
}

std::string CgroupHierarchy::AgentDir() const {
  std::string_view rel = agent_path;
  if (mount_root != "/" && rel.substr(0, mount_root.size()) == mount_root &&
      (rel.size() == mount_root.size() || rel[mount_root.size()] == '/')) {
    rel.remove_prefix(mount_root.size());
  }
  return JoinPath(mount_point, rel);
}

Result<CgroupLayout> CgroupLayout::Parse(std::string_view mountinfo, std::string_view self_cgroup,
                                         std::optional<CgroupVersion> force) {
  GRIDEMU_ASSIGN_OR_RETURN(std::vector<MountEntry> mounts, ParseMountinfo(mountinfo));
  GRIDEMU_ASSIGN_OR_RETURN(std::vector<SelfCgroupLine> lines, ParseSelfCgroup(self_cgroup));

  CgroupLayout layout;
  // v1: one hierarchy per distinct controller set among the wanted controllers.
  bool v1_memory = false;
  for (std::string_view want : kWantedControllers) {
    bool have = false;
    for (const CgroupHierarchy& h : layout.hierarchies) have = have || h.Has(want);
    if (have) continue;
    for (const MountEntry& m : mounts) {
      if (m.fstype != "cgroup" || !Contains(m.super_options, want)) continue;
      CgroupHierarchy h;
      h.mount_point = m.mount_point;
      h.mount_root = m.root;
      for (std::string_view c : kWantedControllers) {
        if (Contains(m.super_options, c)) h.controllers.emplace_back(c);
      }
      for (const SelfCgroupLine& l : lines) {
        if (!l.v2 && Contains(l.controllers, want)) h.agent_path = l.path;
      }
      if (want == "memory") v1_memory = true;
      layout.hierarchies.push_back(std::move(h));
      break;
    }
  }
  if (v1_memory && force != CgroupVersion::kV2) {
    layout.version = CgroupVersion::kV1;
    return layout;
  }
  if (force == CgroupVersion::kV1) {
    return UnavailableError(
        "cgroup v1 requested but no v1 hierarchy carries the memory controller");
  }
  layout.hierarchies.clear();
  for (const MountEntry& m : mounts) {
    if (m.fstype != "cgroup2") continue;
    CgroupHierarchy h;
    h.mount_point = m.mount_point;
    h.mount_root = m.root;
    for (const SelfCgroupLine& l : lines) {
      if (l.v2) h.agent_path = l.path;
    }
    layout.version = CgroupVersion::kV2;
    layout.hierarchies.push_back(std::move(h));
    return layout;
  }
  return UnavailableError(
      "no usable cgroup hierarchy: neither a cgroup v1 memory hierarchy nor a cgroup2 "
      "filesystem is mounted");
}

Result<CgroupLayout> CgroupLayout::Detect(std::optional<CgroupVersion> force) {
  GRIDEMU_ASSIGN_OR_RETURN(std::string mountinfo, internal::ReadWholeFile("/proc/self/mountinfo"));
  GRIDEMU_ASSIGN_OR_RETURN(std::string self, internal::ReadWholeFile("/proc/self/cgroup"));
  GRIDEMU_ASSIGN_OR_RETURN(CgroupLayout layout, Parse(mountinfo, self, force));
  if (layout.version == CgroupVersion::kV2) {
    CgroupHierarchy& h = layout.hierarchies.front();
    Result<std::string> ctl = internal::ReadWholeFile(JoinPath(h.AgentDir(), "cgroup.controllers"));
    if (ctl.ok()) {
      for (std::string_view c : Split(*ctl, ' ')) {
        while (!c.empty() && (c.back() == '\n' || c.back() == ' ')) c.remove_suffix(1);
        if (!c.empty()) h.controllers.emplace_back(c);
      }
    }
  }
  return layout;
}

const CgroupHierarchy* CgroupLayout::ForController(std::string_view controller) const {
  for (const CgroupHierarchy& h : hierarchies) {
    if (h.Has(controller)) return &h;
  }
  if (version == CgroupVersion::kV2 && !hierarchies.empty() &&
      hierarchies.front().controllers.empty()) {
    return &hierarchies.front();
  }
  return nullptr;
}

const CgroupHierarchy& CgroupLayout::TaskHierarchy() const {
  if (version == CgroupVersion::kV1) {
    for (std::string_view c : {"freezer", "pids", "memory"}) {
      if (const CgroupHierarchy* h = ForController(c)) return *h;
    }
  }
  return hierarchies.front();
}

std::vector<std::string> CgroupLayout::Dirs(std::string_view rel) const {
  std::vector<std::string> out;
  out.reserve(hierarchies.size());
  for (const CgroupHierarchy& h : hierarchies) out.push_back(JoinPath(h.AgentDir(), rel));
  return out;
}

std::string VnodeCgroupRel(std::string_view prefix, std::string_view experiment,
                           std::string_view vnode) {
  std::string out(prefix);
  out += '/';
  out += experiment;
  out += '/';
  out += vnode;
  return out;
}

std::string TaskCgroupName(uint64_t task_id) { return "task-" + std::to_string(task_id); }

CpuBandwidth ComputeCpuBandwidth(double cores, std::chrono::microseconds period) {
  CpuBandwidth b;
  b.period_us = static_cast<uint64_t>(std::max<int64_t>(period.count(), 1000));
  if (!(cores > 0) || !std::isfinite(cores)) return b;
  double q = std::round(cores * static_cast<double>(b.period_us));
  constexpr double kMaxQuota = 1e12;  // far above any real machine
  b.quota_us = static_cast<int64_t>(std::clamp(q, 1000.0, kMaxQuota));
  return b;
}

uint64_t CpuWeightToShares(uint32_t weight) {
  if (weight == 0) return 1024;
  uint64_t shares = static_cast<uint64_t>(weight) * 1024 / 100;
  return std::clamp<uint64_t>(shares, 2, 262144);
}

std::vector<CgroupWrite> PlanCgroupLimits(CgroupVersion version, const VnodeResources& r) {
  std::vector<CgroupWrite> w;
  CpuBandwidth bw = ComputeCpuBandwidth(r.cpu_cores);
  const std::string mem = std::to_string(r.memory_bytes);
  if (version == CgroupVersion::kV1) {
    if (bw.quota_us >= 0) {
      w.push_back({"cpu", "cpu.cfs_period_us", std::to_string(bw.period_us)});
      w.push_back({"cpu", "cpu.cfs_quota_us", std::to_string(bw.quota_us)});
    }
    if (r.cpu_weight != 0) {
      w.push_back({"cpu", "cpu.shares", std::to_string(CpuWeightToShares(r.cpu_weight))});
    }
    if (r.memory_bytes != 0) {
      w.push_back({"memory", "memory.limit_in_bytes", mem});
      w.push_back({"memory", "memory.memsw.limit_in_bytes", mem, true});
      w.push_back({"memory", "memory.swappiness", "0", true});
    }
  } else {
    if (bw.quota_us >= 0) {
      w.push_back(
          {"cpu", "cpu.max", std::to_string(bw.quota_us) + " " + std::to_string(bw.period_us)});
    }
    if (r.cpu_weight != 0) {
      w.push_back(
          {"cpu", "cpu.weight", std::to_string(std::clamp<uint32_t>(r.cpu_weight, 1, 10000))});
    }
    if (r.memory_bytes != 0) {
      w.push_back({"memory", "memory.max", mem});
      w.push_back({"memory", "memory.swap.max", "0", true});
    }
  }
  if (r.pids != 0) {
    w.push_back({"pids", "pids.max", std::to_string(static_cast<uint64_t>(r.pids) + 1)});
  }
  return w;
}

Result<uint64_t> ParseKeyedValue(std::string_view text, std::string_view key) {
  for (std::string_view line : SplitLines(text)) {
    size_t sp = line.find(' ');
    if (sp == std::string_view::npos || line.substr(0, sp) != key) continue;
    std::string_view v = line.substr(sp + 1);
    while (!v.empty() && v.front() == ' ') v.remove_prefix(1);
    uint64_t out = 0;
    auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), out);
    if (ec != std::errc()) break;
    return out;
  }
  return NotFoundError("no key '" + std::string(key) + "'");
}

Result<std::vector<pid_t>> ParseProcs(std::string_view text) {
  std::vector<pid_t> out;
  for (std::string_view line : SplitLines(text)) {
    pid_t pid = 0;
    auto [p, ec] = std::from_chars(line.data(), line.data() + line.size(), pid);
    if (ec != std::errc() || p != line.data() + line.size()) {
      return InvalidArgumentError("cgroup.procs: bad line '" + std::string(line) + "'");
    }
    out.push_back(pid);
  }
  return out;
}

Status CgroupWrite1(const std::string& dir, std::string_view file, std::string_view value) {
  return internal::WriteKernelFile(JoinPath(dir, file), value);
}

Result<std::string> CgroupRead(const std::string& dir, std::string_view file) {
  return internal::ReadWholeFile(JoinPath(dir, file));
}

Result<std::vector<pid_t>> CgroupProcs(const std::string& dir, bool recursive) {
  Result<std::string> text = CgroupRead(dir, "cgroup.procs");
  if (!text.ok()) {
    if (text.status().code() == StatusCode::kNotFound) return std::vector<pid_t>{};
    return text.status();
  }
  GRIDEMU_ASSIGN_OR_RETURN(std::vector<pid_t> pids, ParseProcs(*text));
  if (recursive) {
    GRIDEMU_ASSIGN_OR_RETURN(std::vector<std::string> subs, internal::ListDir(dir, true));
    for (const std::string& s : subs) {
      GRIDEMU_ASSIGN_OR_RETURN(std::vector<pid_t> more, CgroupProcs(JoinPath(dir, s), true));
      pids.insert(pids.end(), more.begin(), more.end());
    }
  }
  return pids;
}

Result<int> CgroupSignalAll(const std::string& dir, int sig) {
  GRIDEMU_ASSIGN_OR_RETURN(std::vector<pid_t> pids, CgroupProcs(dir, true));
  int n = 0;
  for (pid_t p : pids) {
    if (p > 0 && ::kill(p, sig) == 0) ++n;
  }
  return n;
}

namespace {

// Thaws dir (and, on v1, what the kernel lets us) so that SIGKILLed frozen
// processes can die.
void ThawForKill(const std::string& dir) {
  if (internal::PathExists(JoinPath(dir, "freezer.state"))) {
    (void)CgroupWrite1(dir, "freezer.state", "THAWED");
  }
  if (internal::PathExists(JoinPath(dir, "cgroup.freeze"))) {
    (void)CgroupWrite1(dir, "cgroup.freeze", "0");
  }
}

}  // namespace

Status CgroupKillAll(const std::string& dir, std::chrono::milliseconds timeout) {
  if (!internal::PathExists(dir)) return Status::Ok();
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  const bool has_kill = internal::PathExists(JoinPath(dir, "cgroup.kill"));
  if (has_kill) (void)CgroupWrite1(dir, "cgroup.kill", "1");
  for (int round = 0;; ++round) {
    GRIDEMU_ASSIGN_OR_RETURN(std::vector<pid_t> pids, CgroupProcs(dir, true));
    if (pids.empty()) return Status::Ok();
    for (pid_t p : pids) {
      if (p > 0) ::kill(p, SIGKILL);
    }
    if (round == 0) ThawForKill(dir);
    if (std::chrono::steady_clock::now() > deadline) {
      return DeadlineExceededError("cgroup " + dir + ": " + std::to_string(pids.size()) +
                                   " processes still alive after SIGKILL");
    }
    SleepMs(round < 10 ? 1 : 10);
  }
}

Status CgroupRemoveTree(const std::string& dir, std::chrono::milliseconds timeout) {
  // Fast path: a leaf without processes goes at once.
  if (::rmdir(dir.c_str()) == 0 || errno == ENOENT) return Status::Ok();
  Result<std::vector<std::string>> subs = internal::ListDir(dir, true);
  if (!subs.ok()) return subs.status();
  for (const std::string& s : *subs) {
    GRIDEMU_RETURN_IF_ERROR(CgroupRemoveTree(JoinPath(dir, s), timeout));
  }
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (::rmdir(dir.c_str()) != 0) {
    if (errno == ENOENT) return Status::Ok();
    if (errno != EBUSY || std::chrono::steady_clock::now() > deadline) {
      Status s = ErrnoStatus(errno, "rmdir cgroup", dir);
      if (errno == EBUSY) return FailedPreconditionError(s.message() + " (processes left?)");
      return s;
    }
    SleepMs(2);
  }
  return Status::Ok();
}

Status CgroupFreeze(CgroupVersion version, const std::string& dir, bool frozen,
                    std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  if (version == CgroupVersion::kV1) {
    const char* want = frozen ? "FROZEN" : "THAWED";
    GRIDEMU_RETURN_IF_ERROR(CgroupWrite1(dir, "freezer.state", want));
    while (true) {
      GRIDEMU_ASSIGN_OR_RETURN(std::string st, CgroupRead(dir, "freezer.state"));
      if (st.rfind(want, 0) == 0) return Status::Ok();
      if (std::chrono::steady_clock::now() > deadline) {
        return DeadlineExceededError("cgroup " + dir + " did not become " + want);
      }
      // Re-writing FROZEN retries a freeze that stalled in FREEZING.
      if (frozen) (void)CgroupWrite1(dir, "freezer.state", want);
      SleepMs(1);
    }
  }
  GRIDEMU_RETURN_IF_ERROR(CgroupWrite1(dir, "cgroup.freeze", frozen ? "1" : "0"));
  while (true) {
    GRIDEMU_ASSIGN_OR_RETURN(std::string ev, CgroupRead(dir, "cgroup.events"));
    Result<uint64_t> f = ParseKeyedValue(ev, "frozen");
    if (f.ok() && (*f != 0) == frozen) return Status::Ok();
    if (std::chrono::steady_clock::now() > deadline) {
      return DeadlineExceededError(std::string("cgroup ") + dir + " did not become " +
                                   (frozen ? "frozen" : "thawed"));
    }
    SleepMs(1);
  }
}

}  // namespace gridemu::agent

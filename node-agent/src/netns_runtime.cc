#include "gridemu/node-agent/netns_runtime.h"

#include <fcntl.h>
#include <linux/magic.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <cerrno>
#include <cstring>
#include <mutex>
#include <set>
#include <sstream>
#include <thread>
#include <unordered_set>

#include "runtime_util.h"

#ifndef P_PIDFD
#define P_PIDFD static_cast<idtype_t>(3)
#endif
#ifndef CLONE_PIDFD
#define CLONE_PIDFD 0x00001000
#endif

namespace gridemu::agent {

using internal::ErrnoStatus;
using internal::UniqueFd;

namespace {

constexpr char kDefaultPath[] = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
constexpr char kInitName[] = "gridemu-vnode-init";
// v2: the leaf the agent moves itself into when its own cgroup must become
// an inner node (no-internal-processes rule).
constexpr char kAgentLeaf[] = "gridemu-agent";
constexpr size_t kCloneStackBytes = 64 * 1024;

bool UnderDir(std::string_view path, std::string_view dir) {
  return path == dir || (path.size() > dir.size() && path.substr(0, dir.size()) == dir &&
                         (dir.back() == '/' || path[dir.size()] == '/'));
}

uint64_t Fnv1a64(std::string_view s) {
  uint64_t h = 1469598103934665603ull;
  for (char c : s) {
    h ^= static_cast<uint8_t>(c);
    h *= 1099511628211ull;
  }
  return h;
}

std::string Hex16(uint64_t v) {
  static const char* d = "0123456789abcdef";
  std::string s(16, '0');
  for (int i = 15; i >= 0; --i, v >>= 4) s[static_cast<size_t>(i)] = d[v & 15];
  return s;
}

bool HostsTokenOk(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s) {
    if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '#' || c == '\0') return false;
  }
  return true;
}

// Meta files: "key=value" lines; '\\' and '\n' in values are escaped.
std::string EscapeMeta(std::string_view v) {
  std::string o;
  for (char c : v) {
    if (c == '\\') {
      o += "\\\\";
    } else if (c == '\n') {
      o += "\\n";
    } else {
      o.push_back(c);
    }
  }
  return o;
}

std::string UnescapeMeta(std::string_view v) {
  std::string o;
  for (size_t i = 0; i < v.size(); ++i) {
    if (v[i] == '\\' && i + 1 < v.size()) {
      o.push_back(v[i + 1] == 'n' ? '\n' : v[i + 1]);
      ++i;
    } else {
      o.push_back(v[i]);
    }
  }
  return o;
}

std::vector<std::pair<std::string, std::string>> ParseMeta(std::string_view text) {
  std::vector<std::pair<std::string, std::string>> out;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t nl = text.find('\n', pos);
    if (nl == std::string_view::npos) nl = text.size();
    std::string_view line = text.substr(pos, nl - pos);
    size_t eq = line.find('=');
    if (eq != std::string_view::npos) {
      out.emplace_back(std::string(line.substr(0, eq)), UnescapeMeta(line.substr(eq + 1)));
    }
    pos = nl + 1;
  }
  return out;
}

int PidfdOpen(pid_t pid) { return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)); }

int PidfdSendSignal(int pidfd, int sig) {
  return static_cast<int>(::syscall(SYS_pidfd_send_signal, pidfd, sig, nullptr, 0));
}

// Sends one datagram with optional descriptors. Non-blocking.
Status SendDatagram(int fd, const std::string& data, const int* fds, size_t nfds) {
  struct iovec iov = {const_cast<char*>(data.data()), data.size()};
  struct msghdr m = {};
  m.msg_iov = &iov;
  m.msg_iovlen = 1;
  alignas(struct cmsghdr) char control[CMSG_SPACE(sizeof(int) * 8)];
  if (nfds > 0) {
    m.msg_control = control;
    m.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
    struct cmsghdr* c = CMSG_FIRSTHDR(&m);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
    std::memcpy(CMSG_DATA(c), fds, sizeof(int) * nfds);
  }
  while (true) {
    ssize_t n = ::sendmsg(fd, &m, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n >= 0) return Status::Ok();
    if (errno == EINTR) continue;
    if (errno == EAGAIN) return UnavailableError("vnode init is not reading its control socket");
    return ErrnoStatus(errno, "send to vnode init");
  }
}

// Receives one datagram (non-blocking). >0 ok, 0 EOF, -1 errno (EAGAIN: none).
ssize_t RecvDatagram(int fd, std::string* buf) {
  while (true) {
    char probe;
    ssize_t n = ::recv(fd, &probe, 1, MSG_PEEK | MSG_TRUNC | MSG_DONTWAIT);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return n;
    buf->assign(static_cast<size_t>(n), '\0');
    n = ::recv(fd, buf->data(), buf->size(), MSG_DONTWAIT);
    if (n < 0 && errno == EINTR) continue;
    if (n > 0) buf->resize(static_cast<size_t>(n));
    return n;
  }
}

std::string FindInitProgram(const RuntimeOptions& o) {
  if (!o.init_path.empty()) return o.init_path;
  if (const char* env = std::getenv("GRIDEMU_VNODE_INIT"); env != nullptr && *env != '\0') {
    return env;
  }
  std::vector<std::string> candidates;
  char self[4096];
  ssize_t n = ::readlink("/proc/self/exe", self, sizeof(self) - 1);
  if (n > 0) {
    std::string dir(self, static_cast<size_t>(n));
    dir = dir.substr(0, dir.find_last_of('/'));
    candidates.push_back(dir + "/" + kInitName);
    candidates.push_back(dir + "/../node-agent/" + kInitName);
    candidates.push_back(dir + "/../../node-agent/" + kInitName);
  }
  candidates.push_back(std::string("/usr/local/libexec/gridemu/") + kInitName);
  candidates.push_back(std::string("/usr/libexec/gridemu/") + kInitName);
  for (const std::string& c : candidates) {
    if (::access(c.c_str(), X_OK) == 0) return c;
  }
  return {};
}

}  // namespace

// ---------------------------------------------------------------------------
// Pure helpers.

std::string StateRoot(const RuntimeOptions& options) {
  return options.state_root.empty() ? "/run/" + options.prefix : options.state_root;
}

VnodePaths ComputeVnodePaths(const RuntimeOptions& options, std::string_view experiment,
                             std::string_view vnode) {
  VnodePaths p;
  p.netns_name = options.prefix + "-" + std::string(experiment) + "-" + std::string(vnode);
  p.netns_path = options.netns_dir + "/" + p.netns_name;
  p.experiment_dir = StateRoot(options) + "/" + std::string(experiment);
  p.state_dir = p.experiment_dir + "/" + std::string(vnode);
  p.hostname_file = p.state_dir + "/hostname";
  p.hosts_file = p.state_dir + "/hosts";
  p.resolv_file = p.experiment_dir + "/resolv.conf";
  p.home_dir = p.state_dir + "/home";
  p.meta_file = p.state_dir + "/vnode.meta";
  p.listen_path = p.state_dir + "/init.sock";
  p.cgroup_rel = VnodeCgroupRel(options.prefix, experiment, vnode);
  return p;
}

bool HostsTableHas(const HostsTable* table, std::string_view name) {
  if (table == nullptr) return false;
  for (const HostsEntry& e : *table) {
    if (e.name == name && !e.addresses.empty()) return true;
  }
  return false;
}

std::string RenderResolvConf() {
  return "# generated by gridemu: names of the experiment come from /etc/hosts;\n"
         "# no DNS server outside the experiment is reachable from a vnode.\n"
         "nameserver 127.0.0.1\n"
         "options timeout:1 attempts:1\n";
}

std::string RenderHosts(const HostsTable* table, std::string_view self) {
  std::string out =
      "# generated by gridemu\n"
      "127.0.0.1\tlocalhost\n"
      "::1\tlocalhost ip6-localhost ip6-loopback\n";
  if (!self.empty() && !HostsTableHas(table, self) && HostsTokenOk(self)) {
    out += "127.0.1.1\t";
    out += self;
    out += "\n";
  }
  if (table == nullptr) return out;
  for (const HostsEntry& e : *table) {
    if (!HostsTokenOk(e.name)) continue;
    for (const std::string& a : e.addresses) {
      if (!HostsTokenOk(a)) continue;
      out += a;
      out += '\t';
      out += e.name;
      out += '\n';
    }
  }
  return out;
}

EnvList BuildVnodeEnv(const VnodeSpec& spec, std::string_view home_dir) {
  EnvList env = {
      {"PATH", kDefaultPath},
      {"HOME", std::string(home_dir)},
      {"HOSTNAME", spec.name},
      {"GRIDEMU_NODE", spec.name},
      {"GRIDEMU_INDEX", std::to_string(spec.index)},
      {"GRIDEMU_EXPERIMENT", spec.experiment},
  };
  if (!spec.out_dir.empty()) env.emplace_back("GRIDEMU_OUT", spec.out_dir);
  if (!spec.shared_dir.empty()) env.emplace_back("GRIDEMU_SHARED", spec.shared_dir);
  env.insert(env.end(), spec.env.begin(), spec.env.end());
  return env;
}

vnode_init::Config BuildInitConfig(const VnodeSpec& spec, const VnodePaths& paths,
                                   std::string_view hosts_file) {
  vnode_init::Config c;
  c.hostname = spec.name;
  c.mount_proc = true;
  std::string tmp_opts = "mode=1777";
  if (spec.tmp_size_bytes > 0) tmp_opts += ",size=" + std::to_string(spec.tmp_size_bytes);
  c.tmpfs.push_back({"/tmp", tmp_opts});
  c.tmpfs.push_back({"/dev/shm", "mode=1777"});
  c.binds.push_back({std::string(hosts_file), "/etc/hosts", true, true});
  c.binds.push_back({paths.hostname_file, "/etc/hostname", true, true});
  c.binds.push_back({paths.resolv_file, "/etc/resolv.conf", true, true});
  auto hidden = [&](const std::string& p) {
    for (const vnode_init::TmpfsMount& t : c.tmpfs) {
      if (UnderDir(p, t.target)) return true;
    }
    return false;
  };
  // Directories that are visible at their host path anyway need no mount,
  // unless a private tmpfs hides them or they must be read-only.
  if (hidden(paths.home_dir)) c.binds.push_back({paths.home_dir, paths.home_dir, false, false});
  if (!spec.out_dir.empty() && hidden(spec.out_dir)) {
    c.binds.push_back({spec.out_dir, spec.out_dir, false, false});
  }
  if (!spec.shared_dir.empty()) c.binds.push_back({spec.shared_dir, spec.shared_dir, true, false});
  c.loopback_up = true;
  c.listen_path = paths.listen_path;
  return c;
}

std::string_view NetnsNameRest(std::string_view prefix, std::string_view netns_name) {
  if (netns_name.size() <= prefix.size() + 1 || netns_name.substr(0, prefix.size()) != prefix ||
      netns_name[prefix.size()] != '-') {
    return {};
  }
  return netns_name.substr(prefix.size() + 1);
}

// ---------------------------------------------------------------------------
// Runtime state.

// A vnode's cgroup directories.
struct VnodeCgroups {
  std::vector<std::string> dirs;       // the vnode cgroup, one per hierarchy
  std::vector<std::string> init_dirs;  // where init lives (v2: <vnode>/init)
  std::string task_parent;             // parent of task-<id> cgroups
  std::string freezer;                 // what Freeze freezes
  std::map<std::string, std::string> by_controller;
};

struct NetnsRuntime::Vnode {
  VnodeSpec spec;
  VnodePaths paths;
  VnodeCgroups cg;
  std::string hosts_file;
  uint64_t serial = 0;
  VnodeState state = VnodeState::kStopped;
  pid_t init_pid = 0;
  int pidfd = -1;
  int ctl = -1;
  bool own_child = false;
  bool adopted = false;
  bool stopping = false;
  bool destroying = false;
  // What this runtime created (or adopted) and so may remove.
  bool netns_bound = false;
  bool owns_state_dir = false;
  bool owns_cgroups = false;
  std::vector<TaskId> live_tasks;
};

struct NetnsRuntime::Task {
  TaskId id = 0;
  VnodeRef vnode;
  TaskState state = TaskState::kStarting;
  int pid = 0;
  std::string cgroup_dir;
  uint64_t oom_base = 0;
  bool kill_requested = false;
  TaskResult result;
};

namespace {

VnodeCgroups ComputeCgroups(const CgroupLayout& layout, const std::string& rel) {
  VnodeCgroups cg;
  cg.dirs = layout.Dirs(rel);
  for (size_t i = 0; i < layout.hierarchies.size(); ++i) {
    const CgroupHierarchy& h = layout.hierarchies[i];
    if (layout.version == CgroupVersion::kV2) {
      for (const char* c : {"cpu", "cpuacct", "memory", "pids", "freezer"}) {
        cg.by_controller[c] = cg.dirs[i];
      }
    } else {
      for (const std::string& c : h.controllers) cg.by_controller[c] = cg.dirs[i];
    }
    if (&h == &layout.TaskHierarchy()) cg.task_parent = cg.dirs[i];
  }
  if (layout.version == CgroupVersion::kV2) {
    cg.init_dirs = {cg.dirs.front() + "/init"};
    cg.freezer = cg.dirs.front();
  } else {
    cg.init_dirs = cg.dirs;
    auto f = cg.by_controller.find("freezer");
    cg.freezer = f == cg.by_controller.end() ? std::string() : f->second;
  }
  return cg;
}

std::string RenderMeta(const VnodeSpec& s, const VnodePaths& p, const VnodeCgroups& cg,
                       const std::string& hosts_file) {
  std::string m;
  auto kv = [&m](std::string_view k, std::string_view v) {
    m += k;
    m += '=';
    m += EscapeMeta(v);
    m += '\n';
  };
  kv("format", "1");
  kv("experiment", s.experiment);
  kv("name", s.name);
  kv("index", std::to_string(s.index));
  kv("netns", p.netns_name);
  kv("out_dir", s.out_dir);
  kv("shared_dir", s.shared_dir);
  kv("hosts_file", hosts_file);
  for (const auto& [k, v] : s.env) kv("env", k + "=" + v);
  for (const std::string& d : cg.dirs) kv("cgroup", d);
  for (const std::string& d : cg.init_dirs) kv("cgroup.init", d);
  kv("cgroup.task_parent", cg.task_parent);
  kv("cgroup.freezer", cg.freezer);
  for (const auto& [c, d] : cg.by_controller) kv("cgroup." + c, d);
  return m;
}

#ifndef CLOSE_RANGE_UNSHARE
#define CLOSE_RANGE_UNSHARE (1U << 1)
#endif

struct CloneArgs {
  const struct rlimit* nofile = nullptr;  // restored in init: tasks get the usual limit
  // Where the child finds its end of the control socket. With `slot` (the
  // clone shares the agent's fd table, CLONE_FILES) it is the reserved low
  // descriptor `slot`, and the child keeps only descriptors 0..slot.
  int ctl_child = -1;
  bool slot = false;
  int template_fd = -1;
  int netns_fd = -1;
  const char* path = nullptr;
  char* const* argv = nullptr;
  char* const* envp = nullptr;
  int err = 0;
  int stage = 0;
};

// Runs in the vfork-like child (CLONE_VM|CLONE_VFORK): raw syscalls only.
int CloneChild(void* p) {
  auto* a = static_cast<CloneArgs*>(p);
  if (a->nofile != nullptr) ::setrlimit(RLIMIT_NOFILE, a->nofile);
  if (a->netns_fd >= 0 && ::setns(a->netns_fd, CLONE_NEWNET) != 0) {
    a->err = errno;
    a->stage = 2;
    ::_exit(127);
  }
  if (::setns(a->template_fd, CLONE_NEWNS) != 0) {
    a->err = errno;
    a->stage = 3;
    ::_exit(127);
  }
  if (::unshare(CLONE_NEWNS) != 0) {
    a->err = errno;
    a->stage = 4;
    ::_exit(127);
  }
  if (a->slot) {
    // Leave the agent's table: a private copy of descriptors 0..slot only,
    // so that neither this clone nor execve's close-on-exec sweep touches
    // the agent's thousands of descriptors. Older kernels: a full copy.
    if (::syscall(SYS_close_range, static_cast<unsigned>(a->ctl_child) + 1, ~0U,
                  CLOSE_RANGE_UNSHARE) != 0 &&
        ::unshare(CLONE_FILES) != 0) {
      a->err = errno;
      a->stage = 5;
      ::_exit(127);
    }
  }
  if (a->ctl_child == vnode_init::kControlFd) {
    ::fcntl(a->ctl_child, F_SETFD, 0);
  } else if (::dup2(a->ctl_child, vnode_init::kControlFd) < 0) {
    a->err = errno;
    a->stage = 5;
    ::_exit(127);
  }
  ::execve(a->path, a->argv, a->envp);
  a->err = errno;
  a->stage = 6;
  ::_exit(127);
}

const char* CloneStageName(int stage) {
  switch (stage) {
    case 2:
      return "entering the network namespace";
    case 3:
      return "entering the template mount namespace";
    case 4:
      return "creating the mount namespace";
    case 5:
      return "passing the control socket";
    case 6:
      return "executing the init program";
  }
  return "starting init";
}

struct TemplateArgs {
  const char* netns_dir = nullptr;
  int fd = -1;
  int err = 0;
  int stage = 0;
};

// Child (CLONE_VM|CLONE_VFORK|CLONE_FILES|CLONE_NEWNS) that shapes the
// template mount namespace and leaves an fd to it in the shared fd table.
int TemplateChild(void* p) {
  auto* a = static_cast<TemplateArgs*>(p);
  if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) {
    a->err = errno;
    a->stage = 1;
    ::_exit(1);
  }
  // Named netns bind mounts must not be copied into vnodes: copies would pin
  // other vnodes' namespaces and make every creation O(number of vnodes).
  ::umount2(a->netns_dir, MNT_DETACH);
  a->fd = ::open("/proc/self/ns/mnt", O_RDONLY | O_CLOEXEC);
  if (a->fd < 0) {
    a->err = errno;
    a->stage = 2;
    ::_exit(1);
  }
  ::_exit(0);
}

char* CloneStack() {
  thread_local std::unique_ptr<char[]> stack(new char[kCloneStackBytes]);
  return stack.get() + kCloneStackBytes;
}

// iproute2's netns_add: make the netns directory a shared mount point so that
// bind mounts in it propagate to every mount namespace that has a copy.
Status PrepareNetnsDir(const std::string& dir) {
  GRIDEMU_RETURN_IF_ERROR(internal::MakeDirs(dir));
  if (::mount("", dir.c_str(), "none", MS_SHARED | MS_REC, nullptr) == 0) return Status::Ok();
  if (errno != EINVAL) return ErrnoStatus(errno, "make shared", dir);
  if (::mount(dir.c_str(), dir.c_str(), "none", MS_BIND | MS_REC, nullptr) != 0) {
    return ErrnoStatus(errno, "bind mount", dir);
  }
  if (::mount("", dir.c_str(), "none", MS_SHARED | MS_REC, nullptr) != 0) {
    return ErrnoStatus(errno, "make shared", dir);
  }
  return Status::Ok();
}

// The agent holds two descriptors per vnode: raise its soft limit once, and
// remember the original for the processes it starts.
struct rlimit g_original_nofile;
bool g_have_original_nofile = false;

void RaiseFdLimit() {
  static std::once_flag once;
  std::call_once(once, [] {
    struct rlimit rl;
    if (::getrlimit(RLIMIT_NOFILE, &rl) != 0) return;
    g_original_nofile = rl;
    g_have_original_nofile = true;
    if (rl.rlim_cur < rl.rlim_max) {
      rl.rlim_cur = rl.rlim_max;
      ::setrlimit(RLIMIT_NOFILE, &rl);
    }
  });
}

Result<uint64_t> ReadCounter(const std::string& dir, std::string_view file,
                             std::string_view key = {}) {
  if (dir.empty()) return NotFoundError("no cgroup");
  GRIDEMU_ASSIGN_OR_RETURN(std::string text, CgroupRead(dir, file));
  if (!key.empty()) return ParseKeyedValue(text, key);
  uint64_t v = 0;
  size_t i = 0;
  while (i < text.size() && text[i] >= '0' && text[i] <= '9') {
    v = v * 10 + static_cast<uint64_t>(text[i] - '0');
    ++i;
  }
  if (i == 0) return InvalidArgumentError(dir + "/" + std::string(file) + ": not a number");
  return v;
}

// Source name of the tmpfs the runtime mounts on a disk-backed state root.
constexpr char kStateTmpfsSource[] = "gridemu-state";

// True if `dir` is the mount point of a tmpfs this runtime mounted (source
// kStateTmpfsSource in /proc/self/mountinfo).
bool IsOwnStateTmpfs(const std::string& dir) {
  std::ifstream f("/proc/self/mountinfo");
  std::string line;
  while (std::getline(f, line)) {
    // "<id> <parent> <maj:min> <root> <mount point> <opts> ... - <fstype> <source> <super opts>"
    std::istringstream in(line);
    std::string id, parent, dev, root, point;
    if (!(in >> id >> parent >> dev >> root >> point) || point != dir) continue;
    size_t dash = line.find(" - ");
    if (dash == std::string::npos) continue;
    std::istringstream tail(line.substr(dash + 3));
    std::string fstype, source;
    tail >> fstype >> source;
    if (fstype == "tmpfs" && source == kStateTmpfsSource) return true;
  }
  return false;
}

}  // namespace

// ---------------------------------------------------------------------------
// Open / close.

Result<std::unique_ptr<NetnsRuntime>> NetnsRuntime::Open(const RuntimeOptions& options) {
  if (options.prefix.empty() || options.prefix.find('/') != std::string::npos) {
    return InvalidArgumentError("runtime prefix '" + options.prefix + "' is not a plain name");
  }
  if (::geteuid() != 0) {
    return PermissionDeniedError("the netns runtime needs root (CAP_SYS_ADMIN)");
  }
  std::string init = FindInitProgram(options);
  if (init.empty() || ::access(init.c_str(), X_OK) != 0) {
    return NotFoundError(std::string("vnode init program ") + kInitName +
                         " not found (set RuntimeOptions::init_path or GRIDEMU_VNODE_INIT)" +
                         (init.empty() ? "" : ": " + init));
  }
  GRIDEMU_ASSIGN_OR_RETURN(CgroupLayout layout, CgroupLayout::Detect(options.cgroup_version));
  if (layout.version == CgroupVersion::kV2) {
    CgroupHierarchy& h = layout.hierarchies.front();
    // An agent that moved itself into its leaf earlier nests under the parent.
    const std::string leaf = std::string("/") + kAgentLeaf;
    if (h.agent_path.size() > leaf.size() &&
        h.agent_path.compare(h.agent_path.size() - leaf.size(), leaf.size(), leaf) == 0) {
      h.agent_path.resize(h.agent_path.size() - leaf.size());
    }
  }
  GRIDEMU_RETURN_IF_ERROR(PrepareNetnsDir(options.netns_dir));
  RaiseFdLimit();
  int ep = ::epoll_create1(EPOLL_CLOEXEC);
  if (ep < 0) return ErrnoStatus(errno, "epoll_create1");
  std::unique_ptr<NetnsRuntime> rt(new NetnsRuntime(options, std::move(layout), init, ep));
  // Reserve low descriptors now, while the table is small (see SpawnInit).
  rt->devnull_fd_ = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (rt->devnull_fd_ >= 0) {
    const int slots = std::max(2, options.create_threads + 2);
    for (int i = 0; i < slots; ++i) {
      int fd = ::fcntl(rt->devnull_fd_, F_DUPFD_CLOEXEC, 0);
      if (fd < 0) break;
      rt->free_slots_.push_back(fd);
    }
  }
  return rt;
}

NetnsRuntime::NetnsRuntime(const RuntimeOptions& options, CgroupLayout layout,
                           std::string init_path, int epoll_fd)
    : options_(options),
      layout_(std::move(layout)),
      init_path_(std::move(init_path)),
      state_root_(StateRoot(options)),
      epoll_fd_(epoll_fd) {}

NetnsRuntime::~NetnsRuntime() {
  // Vnodes keep running (see VnodeRuntime); their inits switch to listening.
  for (auto& [ref, v] : vnodes_) {
    if (v->ctl >= 0) ::close(v->ctl);
    if (v->pidfd >= 0) ::close(v->pidfd);
  }
  if (netns_anchor_fd_ >= 0) ::close(netns_anchor_fd_);
  for (int fd : free_slots_) ::close(fd);
  if (devnull_fd_ >= 0) ::close(devnull_fd_);
  ::close(epoll_fd_);
}

// ---------------------------------------------------------------------------
// Creation.

Status NetnsRuntime::RefreshTemplate() {
  TemplateArgs a;
  a.netns_dir = options_.netns_dir.c_str();
  sigset_t all, old;
  sigfillset(&all);
  ::pthread_sigmask(SIG_SETMASK, &all, &old);
  pid_t pid = ::clone(TemplateChild, CloneStack(),
                      CLONE_VM | CLONE_VFORK | CLONE_FILES | CLONE_NEWNS | SIGCHLD, &a);
  int clone_errno = errno;
  ::pthread_sigmask(SIG_SETMASK, &old, nullptr);
  if (pid < 0) return ErrnoStatus(clone_errno, "clone (template mount namespace)");
  int st;
  while (::waitpid(pid, &st, __WALL) < 0 && errno == EINTR) {
  }
  if (a.stage != 0 || a.fd < 0) {
    if (a.fd >= 0) ::close(a.fd);
    return ErrnoStatus(a.err, a.stage == 1 ? "make / private in template mount namespace"
                                           : "open template mount namespace");
  }
  std::shared_ptr<const int> fd(new int(a.fd), [](const int* p) {
    ::close(*p);
    delete p;
  });
  std::lock_guard<std::mutex> l(mu_);
  template_fd_ = std::move(fd);
  return Status::Ok();
}

Status NetnsRuntime::EnsureStateRootLocked() {
  GRIDEMU_RETURN_IF_ERROR(internal::MakeDirs(state_root_));
  if (!options_.state_root_tmpfs) return Status::Ok();
  struct statfs fs;
  if (::statfs(state_root_.c_str(), &fs) != 0) return ErrnoStatus(errno, "statfs", state_root_);
  if (fs.f_type == TMPFS_MAGIC || fs.f_type == RAMFS_MAGIC) return Status::Ok();
  // Only an empty root: a populated one holds vnodes of an earlier instance.
  GRIDEMU_ASSIGN_OR_RETURN(std::vector<std::string> entries, internal::ListDir(state_root_, false));
  if (!entries.empty()) return Status::Ok();
  if (::mount(kStateTmpfsSource, state_root_.c_str(), "tmpfs", MS_NOSUID | MS_NODEV,
              "mode=0755") != 0) {
    return ErrnoStatus(errno, "mount tmpfs on state root", state_root_);
  }
  return Status::Ok();
}

void NetnsRuntime::ReleaseStateRootLocked() {
  if (creating_ != 0 || !vnodes_.empty()) return;
  Result<std::vector<std::string>> entries = internal::ListDir(state_root_, false);
  if (!entries.ok() || !entries->empty()) return;
  if (IsOwnStateTmpfs(state_root_)) ::umount2(state_root_.c_str(), MNT_DETACH);
  ::rmdir(state_root_.c_str());
}

Status NetnsRuntime::EnsureExperimentCgroups(const std::string& experiment) {
  {
    std::lock_guard<std::mutex> l(mu_);
    if (experiment_cgroups_ready_.count(experiment) != 0) return Status::Ok();
  }
  const std::string prefix_rel = options_.prefix;
  const std::string exp_rel = options_.prefix + "/" + experiment;
  if (layout_.version == CgroupVersion::kV1) {
    for (const std::string& d : layout_.Dirs(exp_rel))
      GRIDEMU_RETURN_IF_ERROR(internal::MakeDirs(d));
  } else {
    const CgroupHierarchy& h = layout_.hierarchies.front();
    std::string enable;
    for (const char* c : {"cpu", "memory", "pids"}) {
      if (h.controllers.empty() || h.Has(c)) enable += std::string(enable.empty() ? "+" : " +") + c;
    }
    const std::string agent_dir = h.AgentDir();
    if (!enable.empty()) {
      Status s = CgroupWrite1(agent_dir, "cgroup.subtree_control", enable);
      if (!s.ok() && h.agent_path != "/") {
        // No internal processes: move this process into a leaf and retry.
        const std::string leaf = agent_dir + "/" + kAgentLeaf;
        GRIDEMU_RETURN_IF_ERROR(internal::MakeDirs(leaf));
        GRIDEMU_RETURN_IF_ERROR(CgroupWrite1(leaf, "cgroup.procs", "0"));
        s = CgroupWrite1(agent_dir, "cgroup.subtree_control", enable);
        if (!s.ok()) {
          return FailedPreconditionError(
              "cannot enable cgroup controllers below the agent's cgroup " + agent_dir + " (" +
              s.message() +
              "); run the agent in a delegated cgroup (e.g. systemd Delegate=yes) of its own");
        }
      }
    }
    for (const std::string& rel : {prefix_rel, exp_rel}) {
      const std::string d = agent_dir + "/" + rel;
      GRIDEMU_RETURN_IF_ERROR(internal::MakeDirs(d));
      if (!enable.empty())
        GRIDEMU_RETURN_IF_ERROR(CgroupWrite1(d, "cgroup.subtree_control", enable));
    }
  }
  std::lock_guard<std::mutex> l(mu_);
  experiment_cgroups_ready_[experiment] = true;
  return Status::Ok();
}

Status NetnsRuntime::PrepareVnode(const VnodeSpec& spec, Vnode* v, const std::string& hosts_file) {
  const VnodePaths& p = v->paths;
  // Refuse before creating anything: an existing object may be a live vnode.
  if (internal::PathExists(p.netns_path)) {
    return AlreadyExistsError("network namespace " + p.netns_name + " exists (" + p.netns_path +
                              "); adopt or clean the experiment first");
  }
  for (const std::string& d : v->cg.dirs) {
    if (internal::PathExists(d)) return AlreadyExistsError("cgroup " + d + " exists");
  }
  if (::mkdir(p.state_dir.c_str(), 0755) != 0) {
    if (errno == EEXIST) {
      return AlreadyExistsError("vnode " + spec.experiment + "/" + spec.name +
                                ": state directory " + p.state_dir +
                                " exists (adopt or clean the experiment first)");
    }
    return ErrnoStatus(errno, "mkdir", p.state_dir);
  }
  v->owns_state_dir = true;
  v->hosts_file = hosts_file.empty() ? p.hosts_file : hosts_file;
  if (hosts_file.empty()) {
    GRIDEMU_RETURN_IF_ERROR(
        internal::WriteNewFile(p.hosts_file, RenderHosts(spec.hosts.get(), spec.name)));
  }
  GRIDEMU_RETURN_IF_ERROR(internal::WriteNewFile(p.hostname_file, spec.name + "\n"));
  if (::mkdir(p.home_dir.c_str(), 0700) != 0 && errno != EEXIST) {
    return ErrnoStatus(errno, "mkdir", p.home_dir);
  }
  if (!spec.out_dir.empty()) GRIDEMU_RETURN_IF_ERROR(internal::MakeDirs(spec.out_dir));
  if (!spec.shared_dir.empty() && !internal::PathExists(spec.shared_dir)) {
    return NotFoundError("vnode " + spec.name + ": shared directory " + spec.shared_dir +
                         " does not exist");
  }
  // cgroups and limits.
  v->owns_cgroups = true;
  for (const std::string& d : v->cg.dirs) {
    if (::mkdir(d.c_str(), 0755) != 0) {
      if (errno == EEXIST) return AlreadyExistsError("cgroup " + d + " exists");
      return ErrnoStatus(errno, "mkdir cgroup", d);
    }
  }
  for (const CgroupWrite& w : PlanCgroupLimits(layout_.version, spec.resources)) {
    auto it = v->cg.by_controller.find(w.controller);
    if (it == v->cg.by_controller.end() || layout_.ForController(w.controller) == nullptr) {
      return UnavailableError("vnode " + spec.name + ": limit " + w.file +
                              " needs the cgroup controller '" + w.controller +
                              "', which is not mounted");
    }
    Status s = CgroupWrite1(it->second, w.file, w.value);
    if (!s.ok() && !(w.optional && s.code() == StatusCode::kNotFound)) return s;
  }
  if (layout_.version == CgroupVersion::kV2) {
    const CgroupHierarchy& h = layout_.hierarchies.front();
    if (h.controllers.empty() || h.Has("memory")) {
      // Per-task memory.events, for exact OOM attribution.
      (void)CgroupWrite1(v->cg.dirs.front(), "cgroup.subtree_control", "+memory");
    }
    for (const std::string& d : v->cg.init_dirs) {
      if (::mkdir(d.c_str(), 0755) != 0 && errno != EEXIST) return ErrnoStatus(errno, "mkdir", d);
    }
  }
  return internal::WriteNewFile(p.meta_file, RenderMeta(spec, p, v->cg, v->hosts_file));
}

Status NetnsRuntime::SpawnInit(Vnode* v, bool new_netns) {
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) {
    return ErrnoStatus(errno, "socketpair");
  }
  UniqueFd agent_end(sv[0]);
  UniqueFd child_end(sv[1]);
  int bufsize = static_cast<int>(2 * vnode_init::kMaxMessageBytes);
  ::setsockopt(agent_end.get(), SOL_SOCKET, SO_SNDBUFFORCE, &bufsize, sizeof(bufsize));
  ::fcntl(agent_end.get(), F_SETFL, ::fcntl(agent_end.get(), F_GETFL) | O_NONBLOCK);

  UniqueFd netns_fd;
  if (!new_netns) {
    netns_fd.reset(::open(v->paths.netns_path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!netns_fd.valid()) return ErrnoStatus(errno, "open network namespace", v->paths.netns_path);
  }
  std::shared_ptr<const int> template_fd;
  {
    std::lock_guard<std::mutex> l(mu_);
    template_fd = template_fd_;
  }
  if (template_fd == nullptr) return FailedPreconditionError("no template mount namespace");

  std::string label = v->spec.experiment + "/" + v->spec.name;
  std::string arg0 = kInitName;
  char* argv[] = {arg0.data(), label.data(), nullptr};
  char* envp[] = {nullptr};
  // A reserved low descriptor for the child's socket end lets the clone
  // share the fd table (see CloneChild); none free: the child copies it.
  int slot = -1;
  {
    std::lock_guard<std::mutex> l(anchor_mu_);
    if (!free_slots_.empty()) {
      slot = free_slots_.back();
      free_slots_.pop_back();
    }
  }
  if (slot >= 0 && ::dup3(child_end.get(), slot, O_CLOEXEC) < 0) {
    std::lock_guard<std::mutex> l(anchor_mu_);
    free_slots_.push_back(slot);
    slot = -1;
  }
  auto release_slot = [&] {
    if (slot < 0) return;
    // Back to /dev/null: the agent must not keep a reference to the child's end.
    ::dup3(devnull_fd_, slot, O_CLOEXEC);
    std::lock_guard<std::mutex> l(anchor_mu_);
    free_slots_.push_back(slot);
    slot = -1;
  };
  CloneArgs a;
  a.ctl_child = slot >= 0 ? slot : child_end.get();
  a.slot = slot >= 0;
  a.template_fd = *template_fd;
  a.netns_fd = netns_fd.get();
  a.nofile = g_have_original_nofile ? &g_original_nofile : nullptr;
  a.path = init_path_.c_str();
  a.argv = argv;
  a.envp = envp;

  int flags =
      CLONE_VM | CLONE_VFORK | CLONE_PIDFD | CLONE_NEWPID | CLONE_NEWUTS | CLONE_NEWIPC | SIGCHLD;
  if (new_netns) flags |= CLONE_NEWNET;
  if (a.slot) flags |= CLONE_FILES;
  int pidfd = -1;
  sigset_t all, old;
  sigfillset(&all);
  ::pthread_sigmask(SIG_SETMASK, &all, &old);
  pid_t pid = ::clone(CloneChild, CloneStack(), flags, &a, &pidfd);
  int clone_errno = errno;
  ::pthread_sigmask(SIG_SETMASK, &old, nullptr);
  release_slot();
  if (pid < 0) return ErrnoStatus(clone_errno, "clone (vnode namespaces)");
  if (a.stage != 0) {
    siginfo_t si;
    ::waitid(P_PIDFD, static_cast<id_t>(pidfd), &si, WEXITED);
    ::close(pidfd);
    return ErrnoStatus(a.err, std::string("vnode init: ") + CloneStageName(a.stage));
  }
  v->init_pid = pid;
  v->pidfd = pidfd;
  v->own_child = true;
  v->ctl = agent_end.release();
  child_end.reset();

  GRIDEMU_RETURN_IF_ERROR(SendDatagram(
      v->ctl, vnode_init::Encode(BuildInitConfig(v->spec, v->paths, v->hosts_file)), nullptr, 0));
  if (new_netns) {
    const std::string& path = v->paths.netns_path;
    GRIDEMU_RETURN_IF_ERROR(CreateNetnsMountPoint(path));
    const std::string src = "/proc/" + std::to_string(pid) + "/ns/net";
    if (::mount(src.c_str(), path.c_str(), "none", MS_BIND, nullptr) != 0) {
      Status s = ErrnoStatus(errno, "bind mount " + src + " on", path);
      ::unlink(path.c_str());
      return s;
    }
    v->netns_bound = true;
  }
  return Status::Ok();
}

Status NetnsRuntime::CreateNetnsMountPoint(const std::string& path) {
  {
    std::lock_guard<std::mutex> l(anchor_mu_);
    if (netns_anchor_fd_ >= 0) {
      if (::linkat(netns_anchor_fd_, "", AT_FDCWD, path.c_str(), AT_EMPTY_PATH) == 0) {
        return Status::Ok();
      }
      if (errno == EEXIST) return ErrnoStatus(errno, "create", path);
      // EMLINK (link limit), ENOENT (every name unlinked), EXDEV (another
      // mount), EPERM: start a new anchor below.
    }
  }
  int f = ::open(path.c_str(), O_RDONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0);
  if (f < 0) return ErrnoStatus(errno, "create", path);
  std::lock_guard<std::mutex> l(anchor_mu_);
  if (netns_anchor_fd_ >= 0) ::close(netns_anchor_fd_);
  netns_anchor_fd_ = f;
  return Status::Ok();
}

Status NetnsRuntime::JoinCgroups(Vnode* v) {
  const std::string pid = std::to_string(v->init_pid);
  for (const std::string& d : v->cg.init_dirs) {
    GRIDEMU_RETURN_IF_ERROR(CgroupWrite1(d, "cgroup.procs", pid));
  }
  return Status::Ok();
}

Status NetnsRuntime::AwaitReady(Vnode* v, std::chrono::steady_clock::time_point deadline) {
  std::string buf;
  while (true) {
    ssize_t n = RecvDatagram(v->ctl, &buf);
    if (n > 0) {
      Result<vnode_init::Message> m = vnode_init::Decode(buf);
      if (!m.ok()) return InternalError("vnode init: " + m.status().message());
      if (auto* r = std::get_if<vnode_init::Ready>(&*m)) {
        if (!r->ok) return InternalError("vnode " + v->spec.name + " setup failed: " + r->error);
        return Status::Ok();
      }
      continue;
    }
    if (n == 0) return InternalError("vnode " + v->spec.name + ": init exited during setup");
    if (errno != EAGAIN) return ErrnoStatus(errno, "receive from vnode init");
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      return DeadlineExceededError("vnode " + v->spec.name + ": init not ready in time");
    }
    struct pollfd p = {v->ctl, POLLIN, 0};
    ::poll(&p, 1, static_cast<int>(std::min<int64_t>(left.count(), 1000)));
  }
}

void NetnsRuntime::RegisterLocked(Vnode* v) {
  v->serial = next_serial_++;
  by_serial_[v->serial] = v;
  if (v->ctl >= 0) {
    struct epoll_event ev = {};
    ev.events = EPOLLIN;
    ev.data.u64 = v->serial << 1;
    ::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, v->ctl, &ev);
  }
  if (v->pidfd >= 0) {
    struct epoll_event ev = {};
    ev.events = EPOLLIN;
    ev.data.u64 = (v->serial << 1) | 1;
    ::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, v->pidfd, &ev);
  }
}

void NetnsRuntime::UnregisterLocked(Vnode* v) {
  if (v->ctl >= 0) {
    ::epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, v->ctl, nullptr);
    ::close(v->ctl);
    v->ctl = -1;
  }
  if (v->pidfd >= 0) {
    ::epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, v->pidfd, nullptr);
    ::close(v->pidfd);
    v->pidfd = -1;
  }
  by_serial_.erase(v->serial);
}

std::vector<Status> NetnsRuntime::CreateBatch(std::span<const VnodeSpec> specs) {
  const size_t n = specs.size();
  std::vector<Status> result(n);
  std::vector<std::unique_ptr<Vnode>> made(n);
  {
    std::lock_guard<std::mutex> l(mu_);
    std::set<VnodeRef> seen;
    for (size_t i = 0; i < n; ++i) {
      const VnodeSpec& s = specs[i];
      Status st = ValidateExperimentId(s.experiment);
      if (st.ok()) st = ValidateVnodeName(s.name);
      VnodeRef ref{s.experiment, s.name};
      if (st.ok() && (vnodes_.count(ref) != 0 || !seen.insert(ref).second)) {
        st = AlreadyExistsError("vnode " + ref.ToString() + " exists");
      }
      result[i] = st;
    }
    ++creating_;
  }
  // Every return below goes through this: ends the batch for ReleaseStateRootLocked.
  struct CreatingGuard {
    NetnsRuntime* rt;
    ~CreatingGuard() {
      std::lock_guard<std::mutex> l(rt->mu_);
      --rt->creating_;
    }
  } creating_guard{this};
  Status common;
  {
    std::lock_guard<std::mutex> l(mu_);
    common = EnsureStateRootLocked();
  }
  // The template is copied after the state root's tmpfs exists, so vnodes see it.
  if (common.ok()) common = RefreshTemplate();
  std::map<std::pair<std::string, const HostsTable*>, std::string> shared_hosts;
  std::map<const HostsTable*, std::unordered_set<std::string>> names;
  std::vector<std::string> hosts_for(n);
  std::map<std::string, Status> experiments_ready;
  for (size_t i = 0; i < n && common.ok(); ++i) {
    if (!result[i].ok()) continue;
    const VnodeSpec& s = specs[i];
    const VnodePaths paths = ComputeVnodePaths(options_, s.experiment, s.name);
    auto [ready, first] = experiments_ready.try_emplace(s.experiment);
    if (first) {
      ready->second = internal::MakeDirs(paths.experiment_dir);
      if (ready->second.ok() && !internal::PathExists(paths.resolv_file)) {
        ready->second = internal::WriteFileAtomic(paths.resolv_file, RenderResolvConf());
      }
      if (ready->second.ok()) ready->second = EnsureExperimentCgroups(s.experiment);
    }
    Status st = ready->second;
    // An experiment's vnodes share one hosts file when it names them all.
    const HostsTable* table = s.hosts.get();
    if (st.ok() && table != nullptr) {
      auto nit = names.find(table);
      if (nit == names.end()) {
        std::unordered_set<std::string> set;
        for (const HostsEntry& e : *table) {
          if (!e.addresses.empty()) set.insert(e.name);
        }
        nit = names.emplace(table, std::move(set)).first;
      }
      if (nit->second.count(s.name) != 0) {
        auto key = std::make_pair(s.experiment, table);
        auto hit = shared_hosts.find(key);
        if (hit == shared_hosts.end()) {
          std::string text = RenderHosts(table, {});
          std::string path = paths.experiment_dir + "/hosts-" + Hex16(Fnv1a64(text));
          if (!internal::PathExists(path)) st = internal::WriteFileAtomic(path, text);
          hit = shared_hosts.emplace(key, path).first;
        }
        hosts_for[i] = hit->second;
      }
    }
    result[i] = st;
  }
  if (!common.ok()) {
    for (Status& s : result) {
      if (s.ok()) s = common;
    }
    return result;
  }

  // Build in parallel: directories, files, cgroups, clone + exec of init.
  using Clock = std::chrono::steady_clock;
  auto secs = [](Clock::duration d) { return std::chrono::duration<double>(d).count(); };
  std::atomic<int64_t> prepare_ns{0}, spawn_ns{0};
  auto build = [&](size_t i) {
    if (!result[i].ok()) return;
    auto v = std::make_unique<Vnode>();
    v->spec = specs[i];
    v->paths = ComputeVnodePaths(options_, v->spec.experiment, v->spec.name);
    v->cg = ComputeCgroups(layout_, v->paths.cgroup_rel);
    const auto t0 = Clock::now();
    Status st = PrepareVnode(v->spec, v.get(), hosts_for[i]);
    const auto t1 = Clock::now();
    if (st.ok()) st = SpawnInit(v.get(), /*new_netns=*/true);
    prepare_ns += std::chrono::nanoseconds(t1 - t0).count();
    spawn_ns += std::chrono::nanoseconds(Clock::now() - t1).count();
    result[i] = st;
    made[i] = std::move(v);
  };
  const auto build_start = Clock::now();
  const size_t threads =
      std::max<size_t>(1, std::min<size_t>(static_cast<size_t>(options_.create_threads), n));
  if (threads <= 1) {
    for (size_t i = 0; i < n; ++i) build(i);
  } else {
    std::vector<std::thread> pool;
    std::atomic<size_t> next{0};
    for (size_t t = 0; t < threads; ++t) {
      pool.emplace_back([&] {
        for (size_t i = next++; i < n; i = next++) build(i);
      });
    }
    for (std::thread& th : pool) th.join();
  }

  const auto join_start = Clock::now();
  // Move the new inits into their cgroups in one tight loop: every migration
  // takes the kernel's global cgroup_threadgroup_rwsem for writing, which
  // waits for an RCU grace period unless another writer just released it.
  for (size_t i = 0; i < n; ++i) {
    if (result[i].ok()) result[i] = JoinCgroups(made[i].get());
  }
  // Wait for every init (they set up in parallel), then publish.
  const auto ready_start = Clock::now();
  const auto deadline = ready_start + options_.ready_timeout;
  for (size_t i = 0; i < n; ++i) {
    if (result[i].ok()) result[i] = AwaitReady(made[i].get(), deadline);
  }
  BatchProfile profile;
  profile.vnodes = n;
  profile.prepare_thread_s = static_cast<double>(prepare_ns.load()) / 1e9;
  profile.spawn_thread_s = static_cast<double>(spawn_ns.load()) / 1e9;
  profile.build_s = secs(join_start - build_start);
  profile.join_s = secs(ready_start - join_start);
  profile.ready_s = secs(Clock::now() - ready_start);
  for (size_t i = 0; i < n; ++i) {
    if (made[i] == nullptr || result[i].ok()) continue;
    Vnode* v = made[i].get();
    KillInit(v);
    ReapInit(v, std::chrono::steady_clock::now() + std::chrono::seconds(5));
    if (v->ctl >= 0) ::close(v->ctl);
    v->ctl = -1;
    (void)TeardownObjects(v);
  }
  std::lock_guard<std::mutex> l(mu_);
  create_profile_ = profile;
  for (size_t i = 0; i < n; ++i) {
    if (!result[i].ok() || made[i] == nullptr) continue;
    Vnode* v = made[i].get();
    v->state = VnodeState::kRunning;
    RegisterLocked(v);
    vnodes_[VnodeRef{v->spec.experiment, v->spec.name}] = std::move(made[i]);
  }
  return result;
}

// ---------------------------------------------------------------------------
// Stopping and destroying.

void NetnsRuntime::KillInit(Vnode* v) {
  if (v->pidfd >= 0) {
    PidfdSendSignal(v->pidfd, SIGKILL);
  } else if (v->init_pid > 0) {
    ::kill(v->init_pid, SIGKILL);
  }
  // A v1-frozen init cannot die until thawed.
  if (v->state == VnodeState::kFrozen && !v->cg.freezer.empty()) {
    (void)CgroupWrite1(v->cg.freezer,
                       layout_.version == CgroupVersion::kV1 ? "freezer.state" : "cgroup.freeze",
                       layout_.version == CgroupVersion::kV1 ? "THAWED" : "0");
  }
}

// Waits for init's exit without the event loop (used before registration).
void NetnsRuntime::ReapInit(Vnode* v, std::chrono::steady_clock::time_point deadline) {
  if (v->pidfd < 0) return;
  while (std::chrono::steady_clock::now() < deadline) {
    struct pollfd p = {v->pidfd, POLLIN, 0};
    if (::poll(&p, 1, 100) > 0) break;
  }
  if (v->own_child) {
    siginfo_t si = {};
    ::waitid(P_PIDFD, static_cast<id_t>(v->pidfd), &si, WEXITED | WNOHANG);
  }
  ::close(v->pidfd);
  v->pidfd = -1;
  v->init_pid = 0;
}

Status NetnsRuntime::TeardownObjects(Vnode* v) {
  Status first;
  auto note = [&first](Status s) {
    if (!s.ok() && first.ok()) first = std::move(s);
  };
  // Processes: normally gone with the PID namespace; sweep whatever is left.
  // Every process of the vnode is in the task hierarchy's subtree.
  if (v->owns_cgroups) note(CgroupKillAll(v->cg.task_parent));
  if (v->netns_bound) {
    if (::umount2(v->paths.netns_path.c_str(), MNT_DETACH) != 0 && errno != EINVAL &&
        errno != ENOENT) {
      note(ErrnoStatus(errno, "umount", v->paths.netns_path));
    }
    if (::unlink(v->paths.netns_path.c_str()) != 0 && errno != ENOENT) {
      note(ErrnoStatus(errno, "unlink", v->paths.netns_path));
    }
    v->netns_bound = false;
  }
  if (v->owns_cgroups) {
    for (const std::string& d : v->cg.dirs) {
      Status s = CgroupRemoveTree(d, std::chrono::milliseconds(200));
      if (s.code() == StatusCode::kFailedPrecondition) {
        // Something was moved into this hierarchy only: sweep it too.
        note(CgroupKillAll(d));
        s = CgroupRemoveTree(d);
      }
      note(s);
    }
  }
  if (v->owns_state_dir) note(internal::RemoveTree(v->paths.state_dir));
  return first;
}

void NetnsRuntime::EndTasksOfVnodeLocked(Vnode* v, ExitReason reason, const std::string& why) {
  std::vector<TaskId> live;
  live.swap(v->live_tasks);
  for (TaskId id : live) {
    auto it = tasks_.find(id);
    if (it == tasks_.end() || it->second->state == TaskState::kFinished) continue;
    TaskResult r;
    r.reason = reason;
    r.signal = reason == ExitReason::kKilled ? SIGKILL : 0;
    r.error = why;
    r.times.end_wall = std::chrono::system_clock::now();
    r.times.end_mono = std::chrono::steady_clock::now();
    r.times.start_wall = it->second->result.times.start_wall;
    r.times.start_mono = it->second->result.times.start_mono;
    FinishTaskLocked(it->second.get(), std::move(r));
  }
}

void NetnsRuntime::HandleInitExitLocked(Vnode* v) {
  if (v->pidfd >= 0 && v->own_child) {
    siginfo_t si = {};
    if (::waitid(P_PIDFD, static_cast<id_t>(v->pidfd), &si, WEXITED | WNOHANG) == 0 &&
        si.si_pid == 0) {
      return;  // not exited yet
    }
  }
  // Reports init sent before dying still count.
  if (v->ctl >= 0) HandleControlLocked(v);
  const uint64_t serial = v->serial;
  UnregisterLocked(v);
  by_serial_[serial] = v;  // stays findable until destroyed
  v->init_pid = 0;
  v->state = VnodeState::kStopped;
  if (v->stopping) {
    EndTasksOfVnodeLocked(v, ExitReason::kKilled,
                          v->destroying ? "vnode destroyed" : "vnode stopped");
  } else {
    EndTasksOfVnodeLocked(v, ExitReason::kLost, "vnode init died");
    RuntimeEvent e;
    e.kind = RuntimeEventKind::kVnodeDied;
    e.vnode = {v->spec.experiment, v->spec.name};
    EmitLocked(std::move(e));
  }
  cv_.notify_all();
}

Status NetnsRuntime::Stop(const VnodeRef& ref) {
  Vnode* v;
  {
    std::lock_guard<std::mutex> l(mu_);
    v = FindLocked(ref);
    if (v == nullptr) return NotFoundError("no vnode " + ref.ToString());
    if (v->destroying)
      return FailedPreconditionError("vnode " + ref.ToString() + " is being destroyed");
    if (v->init_pid == 0) return Status::Ok();
    v->stopping = true;
    KillInit(v);
  }
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (true) {
    {
      std::lock_guard<std::mutex> l(mu_);
      if (v->init_pid == 0) break;
    }
    if (std::chrono::steady_clock::now() > deadline) {
      return DeadlineExceededError("vnode " + ref.ToString() + ": init did not exit after SIGKILL");
    }
    Pump(std::chrono::milliseconds(20));
  }
  DeliverPending();
  Status first;
  for (const std::string& d : v->cg.dirs) {
    Status s = CgroupKillAll(d);
    if (!s.ok() && first.ok()) first = s;
  }
  // Old task cgroups go; the vnode cgroups stay for Start.
  Result<std::vector<std::string>> subs = internal::ListDir(v->cg.task_parent, true);
  if (subs.ok()) {
    for (const std::string& s : *subs) {
      if (s.rfind("task-", 0) == 0) (void)CgroupRemoveTree(v->cg.task_parent + "/" + s);
    }
  }
  std::lock_guard<std::mutex> l(mu_);
  v->stopping = false;
  return first;
}

Status NetnsRuntime::Start(const VnodeRef& ref) {
  Vnode* v;
  {
    std::lock_guard<std::mutex> l(mu_);
    v = FindLocked(ref);
    if (v == nullptr) return NotFoundError("no vnode " + ref.ToString());
    if (v->destroying || v->stopping || v->init_pid != 0 || v->state != VnodeState::kStopped) {
      return FailedPreconditionError("vnode " + ref.ToString() + " is not stopped");
    }
    v->stopping = true;  // keeps concurrent Start/Stop out
  }
  // The new init is built on a private copy, published under the lock.
  Vnode fresh;
  {
    std::lock_guard<std::mutex> l(mu_);
    fresh.spec = v->spec;
    fresh.paths = v->paths;
    fresh.cg = v->cg;
    fresh.hosts_file = v->hosts_file;
  }
  Status s = RefreshTemplate();
  if (s.ok() && !internal::PathExists(fresh.paths.netns_path)) {
    s = NotFoundError("network namespace " + fresh.paths.netns_path + " is gone");
  }
  if (s.ok()) s = SpawnInit(&fresh, /*new_netns=*/false);
  if (s.ok()) s = JoinCgroups(&fresh);
  if (s.ok()) s = AwaitReady(&fresh, std::chrono::steady_clock::now() + options_.ready_timeout);
  if (!s.ok()) {
    KillInit(&fresh);
    ReapInit(&fresh, std::chrono::steady_clock::now() + std::chrono::seconds(5));
    if (fresh.ctl >= 0) ::close(fresh.ctl);
    std::lock_guard<std::mutex> l(mu_);
    v->stopping = false;
    return s;
  }
  std::lock_guard<std::mutex> l(mu_);
  v->stopping = false;
  v->init_pid = fresh.init_pid;
  v->pidfd = fresh.pidfd;
  v->ctl = fresh.ctl;
  v->own_child = fresh.own_child;
  by_serial_.erase(v->serial);
  RegisterLocked(v);
  v->state = VnodeState::kRunning;
  v->adopted = false;
  return Status::Ok();
}

std::vector<Status> NetnsRuntime::DestroyBatch(std::span<const VnodeRef> refs) {
  std::vector<Status> result(refs.size());
  std::vector<Vnode*> targets(refs.size(), nullptr);
  {
    std::lock_guard<std::mutex> l(mu_);
    for (size_t i = 0; i < refs.size(); ++i) {
      Vnode* v = FindLocked(refs[i]);
      if (v == nullptr) {
        result[i] = NotFoundError("no vnode " + refs[i].ToString());
      } else if (v->destroying) {
        result[i] = FailedPreconditionError("vnode " + refs[i].ToString() + " is being destroyed");
      } else {
        v->destroying = true;
        v->stopping = true;
        targets[i] = v;
        KillInit(v);
      }
    }
  }
  // Wait for every init to die (the kernel then kills each PID namespace).
  using Clock = std::chrono::steady_clock;
  auto secs = [](Clock::duration d) { return std::chrono::duration<double>(d).count(); };
  const auto kill_start = Clock::now();
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (true) {
    size_t alive = 0;
    {
      std::lock_guard<std::mutex> l(mu_);
      for (Vnode* v : targets) alive += (v != nullptr && v->init_pid != 0) ? 1 : 0;
    }
    if (alive == 0 || std::chrono::steady_clock::now() > deadline) break;
    Pump(std::chrono::milliseconds(20));
  }
  // Tear down in parallel: cgroups, netns bind mount, state.
  const auto teardown_start = Clock::now();
  auto teardown = [&](size_t i) {
    Vnode* v = targets[i];
    if (v == nullptr) return;
    if (v->init_pid != 0) {
      result[i] = DeadlineExceededError("vnode " + refs[i].ToString() + ": init did not die");
      return;
    }
    result[i] = TeardownObjects(v);
  };
  const size_t threads = std::max<size_t>(
      1, std::min<size_t>(static_cast<size_t>(options_.create_threads), refs.size()));
  if (threads <= 1 || refs.size() < 8) {
    for (size_t i = 0; i < refs.size(); ++i) teardown(i);
  } else {
    std::vector<std::thread> pool;
    std::atomic<size_t> next{0};
    for (size_t t = 0; t < threads; ++t) {
      pool.emplace_back([&] {
        for (size_t i = next++; i < refs.size(); i = next++) teardown(i);
      });
    }
    for (std::thread& th : pool) th.join();
  }
  std::set<std::string> experiments;
  {
    std::lock_guard<std::mutex> l(mu_);
    destroy_profile_ = BatchProfile{};
    destroy_profile_.vnodes = refs.size();
    destroy_profile_.kill_s = secs(teardown_start - kill_start);
    destroy_profile_.teardown_s = secs(Clock::now() - teardown_start);
    for (size_t i = 0; i < refs.size(); ++i) {
      Vnode* v = targets[i];
      if (v == nullptr) continue;
      if (!result[i].ok() && v->init_pid != 0) {
        v->destroying = false;  // still alive: keep it, let the caller retry
        continue;
      }
      EndTasksOfVnodeLocked(v, ExitReason::kKilled, "vnode destroyed");
      UnregisterLocked(v);
      experiments.insert(v->spec.experiment);
      vnodes_.erase(refs[i]);
    }
    for (auto it = experiments.begin(); it != experiments.end();) {
      auto lb = vnodes_.lower_bound(VnodeRef{*it, ""});
      if (lb != vnodes_.end() && lb->first.experiment == *it) {
        it = experiments.erase(it);
      } else {
        experiment_cgroups_ready_.erase(*it);
        ++it;
      }
    }
  }
  // Experiments with no vnode left: drop their (empty) directories.
  for (const std::string& e : experiments) {
    const std::string exp_dir = state_root_ + "/" + e;
    Result<std::vector<std::string>> subdirs = internal::ListDir(exp_dir, true);
    if (subdirs.ok() && subdirs->empty()) (void)internal::RemoveTree(exp_dir);
    for (const std::string& d : layout_.Dirs(options_.prefix + "/" + e)) ::rmdir(d.c_str());
    for (const std::string& d : layout_.Dirs(options_.prefix)) ::rmdir(d.c_str());
  }
  if (!experiments.empty()) {
    std::lock_guard<std::mutex> l(mu_);
    ReleaseStateRootLocked();
  }
  DeliverPending();
  return result;
}

// ---------------------------------------------------------------------------
// Queries.

BatchProfile NetnsRuntime::last_create_profile() const {
  std::lock_guard<std::mutex> l(mu_);
  return create_profile_;
}

BatchProfile NetnsRuntime::last_destroy_profile() const {
  std::lock_guard<std::mutex> l(mu_);
  return destroy_profile_;
}

NetnsRuntime::Vnode* NetnsRuntime::FindLocked(const VnodeRef& ref) const {
  auto it = vnodes_.find(ref);
  return it == vnodes_.end() ? nullptr : it->second.get();
}

Result<VnodeInfo> NetnsRuntime::Info(const VnodeRef& ref) const {
  std::lock_guard<std::mutex> l(mu_);
  Vnode* v = FindLocked(ref);
  if (v == nullptr) return NotFoundError("no vnode " + ref.ToString());
  VnodeInfo i;
  i.ref = ref;
  i.state = v->state;
  i.init_pid = v->init_pid;
  i.netns_name = v->paths.netns_name;
  i.netns_path = v->paths.netns_path;
  i.state_dir = v->paths.state_dir;
  i.home_dir = v->paths.home_dir;
  i.cgroup_dirs = v->cg.dirs;
  i.adopted = v->adopted;
  i.connected = v->ctl >= 0;
  return i;
}

std::vector<VnodeRef> NetnsRuntime::List() const {
  std::lock_guard<std::mutex> l(mu_);
  std::vector<VnodeRef> out;
  for (const auto& [ref, v] : vnodes_) out.push_back(ref);
  return out;
}

Result<int> NetnsRuntime::OpenNetns(const VnodeRef& ref) const {
  std::string path;
  {
    std::lock_guard<std::mutex> l(mu_);
    Vnode* v = FindLocked(ref);
    if (v == nullptr) return NotFoundError("no vnode " + ref.ToString());
    path = v->paths.netns_path;
  }
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ErrnoStatus(errno, "open network namespace", path);
  return fd;
}

Result<VnodeStats> NetnsRuntime::Stats(const VnodeRef& ref) const {
  std::map<std::string, std::string> dirs;
  {
    std::lock_guard<std::mutex> l(mu_);
    Vnode* v = FindLocked(ref);
    if (v == nullptr) return NotFoundError("no vnode " + ref.ToString());
    dirs = v->cg.by_controller;
  }
  auto dir = [&dirs](const char* c) {
    auto it = dirs.find(c);
    return it == dirs.end() ? std::string() : it->second;
  };
  VnodeStats s;
  if (layout_.version == CgroupVersion::kV1) {
    if (auto r = ReadCounter(dir("cpuacct"), "cpuacct.usage"); r.ok()) {
      s.cpu_usage = std::chrono::nanoseconds(*r);
    }
    if (auto r = ReadCounter(dir("memory"), "memory.usage_in_bytes"); r.ok()) {
      s.memory_current_bytes = *r;
    }
    if (auto r = ReadCounter(dir("memory"), "memory.max_usage_in_bytes"); r.ok()) {
      s.memory_peak_bytes = *r;
    }
    if (auto r = ReadCounter(dir("memory"), "memory.oom_control", "oom_kill"); r.ok()) {
      s.oom_kills = *r;
    }
  } else {
    if (auto r = ReadCounter(dir("cpu"), "cpu.stat", "usage_usec"); r.ok()) {
      s.cpu_usage = std::chrono::microseconds(*r);
    }
    if (auto r = ReadCounter(dir("memory"), "memory.current"); r.ok()) s.memory_current_bytes = *r;
    if (auto r = ReadCounter(dir("memory"), "memory.peak"); r.ok()) s.memory_peak_bytes = *r;
    if (auto r = ReadCounter(dir("memory"), "memory.events", "oom_kill"); r.ok()) {
      s.oom_kills = *r;
    }
  }
  if (auto r = ReadCounter(dir("pids"), "pids.current"); r.ok()) s.pids_current = *r;
  return s;
}

uint64_t NetnsRuntime::OomKillsLocked(const Vnode& v, const Task* t) const {
  if (layout_.version == CgroupVersion::kV2) {
    if (t != nullptr) {
      if (auto r = ReadCounter(t->cgroup_dir, "memory.events", "oom_kill"); r.ok()) return *r;
    }
    auto it = v.cg.by_controller.find("memory");
    if (it == v.cg.by_controller.end()) return 0;
    auto r = ReadCounter(it->second, "memory.events", "oom_kill");
    return r.ok() ? *r : 0;
  }
  auto it = v.cg.by_controller.find("memory");
  if (it == v.cg.by_controller.end()) return 0;
  auto r = ReadCounter(it->second, "memory.oom_control", "oom_kill");
  return r.ok() ? *r : 0;
}

// ---------------------------------------------------------------------------
// Tasks.

Result<TaskId> NetnsRuntime::Exec(const VnodeRef& ref, const TaskSpec& spec) {
  vnode_init::Exec msg;
  if (!spec.shell_command.empty()) {
    msg.argv = {"/bin/sh", "-c", spec.shell_command};
  } else {
    msg.argv = spec.argv;
  }
  if (msg.argv.empty() || msg.argv.front().empty()) {
    return InvalidArgumentError("task has neither a shell command nor an argv");
  }
  std::lock_guard<std::mutex> l(mu_);
  Vnode* v = FindLocked(ref);
  if (v == nullptr) return NotFoundError("no vnode " + ref.ToString());
  if (v->state == VnodeState::kStopped || v->init_pid == 0 || v->destroying) {
    return FailedPreconditionError("vnode " + ref.ToString() + " is not running");
  }
  if (v->ctl < 0) {
    return UnavailableError("vnode " + ref.ToString() +
                            ": no connection to its init (adopted without reconnecting)");
  }
  const TaskId id = next_task_id_++;
  msg.task_id = id;
  msg.env = MergeEnv(BuildVnodeEnv(v->spec, v->paths.home_dir), spec.env);
  msg.cwd = spec.cwd.empty() ? v->paths.home_dir : spec.cwd;
  msg.timeout_ms = static_cast<uint64_t>(std::max<int64_t>(0, spec.timeout.count()));
  msg.kill_leftovers = spec.kill_leftovers_on_exit;

  auto t = std::make_unique<Task>();
  t->id = id;
  t->vnode = ref;
  t->cgroup_dir = v->cg.task_parent + "/" + TaskCgroupName(id);
  if (::mkdir(t->cgroup_dir.c_str(), 0755) != 0) {
    return ErrnoStatus(errno, "mkdir task cgroup", t->cgroup_dir);
  }
  auto fail = [&](Status s) {
    ::rmdir(t->cgroup_dir.c_str());
    return s;
  };
  UniqueFd cg(::open(t->cgroup_dir.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!cg.valid()) return fail(ErrnoStatus(errno, "open", t->cgroup_dir));
  auto open_out = [](const std::string& path) {
    if (path.empty()) return ::open("/dev/null", O_WRONLY | O_CLOEXEC);
    return ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOCTTY, 0644);
  };
  UniqueFd out(open_out(spec.stdout_path));
  if (!out.valid()) return fail(ErrnoStatus(errno, "open task stdout", spec.stdout_path));
  UniqueFd err;
  if (!spec.stderr_path.empty() && spec.stderr_path == spec.stdout_path) {
    err.reset(::dup(out.get()));
  } else {
    err.reset(open_out(spec.stderr_path));
  }
  if (!err.valid()) return fail(ErrnoStatus(errno, "open task stderr", spec.stderr_path));
  t->oom_base = OomKillsLocked(*v, layout_.version == CgroupVersion::kV2 ? t.get() : nullptr);
  t->result.times.start_wall = std::chrono::system_clock::now();
  t->result.times.start_mono = std::chrono::steady_clock::now();
  const int fds[3] = {out.get(), err.get(), cg.get()};
  Status s = SendDatagram(v->ctl, vnode_init::Encode(msg), fds, 3);
  if (!s.ok()) return fail(s.WithContext("vnode " + ref.ToString()));
  v->live_tasks.push_back(id);
  tasks_[id] = std::move(t);
  return id;
}

Status NetnsRuntime::Signal(TaskId id, TaskSignal signal) {
  std::string dir;
  {
    std::lock_guard<std::mutex> l(mu_);
    auto it = tasks_.find(id);
    if (it == tasks_.end()) return NotFoundError("no task " + std::to_string(id));
    Task* t = it->second.get();
    if (t->state == TaskState::kFinished) {
      return FailedPreconditionError("task " + std::to_string(id) + " already finished");
    }
    if (signal == TaskSignal::kKill) t->kill_requested = true;
    dir = t->cgroup_dir;
  }
  if (signal == TaskSignal::kKill) return CgroupKillAll(dir);
  Result<int> n = CgroupSignalAll(dir, SignalNumber(signal));
  return n.ok() ? Status::Ok() : n.status();
}

Result<TaskStatus> NetnsRuntime::GetTask(TaskId id) const {
  std::lock_guard<std::mutex> l(mu_);
  auto it = tasks_.find(id);
  if (it == tasks_.end()) return NotFoundError("no task " + std::to_string(id));
  const Task& t = *it->second;
  TaskStatus s;
  s.id = t.id;
  s.vnode = t.vnode;
  s.state = t.state;
  s.pid_in_vnode = t.pid;
  s.cgroup_dir = t.cgroup_dir;
  s.result = t.result;
  return s;
}

void NetnsRuntime::FinishTaskLocked(Task* t, TaskResult result) {
  t->state = TaskState::kFinished;
  t->result = std::move(result);
  auto vit = vnodes_.find(t->vnode);
  if (vit != vnodes_.end()) {
    auto& live = vit->second->live_tasks;
    live.erase(std::remove(live.begin(), live.end(), t->id), live.end());
  }
  ::rmdir(t->cgroup_dir.c_str());  // fails (and stays) while leftovers run
  RuntimeEvent e;
  e.kind = RuntimeEventKind::kTaskExited;
  e.vnode = t->vnode;
  e.task = t->id;
  e.pid_in_vnode = t->pid;
  e.result = t->result;
  EmitLocked(std::move(e));
  cv_.notify_all();
}

void NetnsRuntime::HandleMessageLocked(Vnode* v, const vnode_init::Message& m) {
  const VnodeRef ref{v->spec.experiment, v->spec.name};
  auto find_or_adopt = [&](uint64_t id) -> Task* {
    auto it = tasks_.find(id);
    if (it != tasks_.end()) return it->second.get();
    // A task started by an earlier agent (after Adopt).
    auto t = std::make_unique<Task>();
    t->id = id;
    t->vnode = ref;
    t->cgroup_dir = v->cg.task_parent + "/" + TaskCgroupName(id);
    t->oom_base = OomKillsLocked(*v, layout_.version == CgroupVersion::kV2 ? t.get() : nullptr);
    next_task_id_ = std::max(next_task_id_, id + 1);
    v->live_tasks.push_back(id);
    Task* raw = t.get();
    tasks_[id] = std::move(t);
    return raw;
  };
  auto ns = [](int64_t v) { return std::chrono::nanoseconds(v); };
  if (auto* s = std::get_if<vnode_init::Started>(&m)) {
    Task* t = find_or_adopt(s->task_id);
    if (t->state == TaskState::kFinished) return;
    t->state = TaskState::kRunning;
    t->pid = s->pid;
    t->result.times.start_wall = std::chrono::system_clock::time_point(
        std::chrono::duration_cast<std::chrono::system_clock::duration>(ns(s->start_wall_ns)));
    t->result.times.start_mono = std::chrono::steady_clock::time_point(ns(s->start_mono_ns));
    RuntimeEvent e;
    e.kind = RuntimeEventKind::kTaskStarted;
    e.vnode = ref;
    e.task = t->id;
    e.pid_in_vnode = t->pid;
    EmitLocked(std::move(e));
    if (t->kill_requested) (void)CgroupSignalAll(t->cgroup_dir, SIGKILL);
  } else if (auto* f = std::get_if<vnode_init::StartFailed>(&m)) {
    Task* t = find_or_adopt(f->task_id);
    if (t->state == TaskState::kFinished) return;
    TaskResult r;
    r.reason = ExitReason::kStartFailed;
    r.error = f->message;
    r.times.start_wall = r.times.end_wall = std::chrono::system_clock::time_point(
        std::chrono::duration_cast<std::chrono::system_clock::duration>(ns(f->wall_ns)));
    r.times.start_mono = r.times.end_mono = std::chrono::steady_clock::time_point(ns(f->mono_ns));
    FinishTaskLocked(t, std::move(r));
  } else if (auto* x = std::get_if<vnode_init::Exited>(&m)) {
    Task* t = find_or_adopt(x->task_id);
    if (t->state == TaskState::kFinished) return;
    TaskResult r;
    DecodeWaitStatus(x->wait_status, &r);
    r.timed_out = x->timed_out;
    r.times.start_wall = std::chrono::system_clock::time_point(
        std::chrono::duration_cast<std::chrono::system_clock::duration>(ns(x->start_wall_ns)));
    r.times.end_wall = std::chrono::system_clock::time_point(
        std::chrono::duration_cast<std::chrono::system_clock::duration>(ns(x->end_wall_ns)));
    r.times.start_mono = std::chrono::steady_clock::time_point(ns(x->start_mono_ns));
    r.times.end_mono = std::chrono::steady_clock::time_point(ns(x->end_mono_ns));
    const uint64_t ooms = OomKillsLocked(*v, layout_.version == CgroupVersion::kV2 ? t : nullptr);
    if (ooms > t->oom_base) {
      // v2 counts per task cgroup (exact). v1 counts per vnode: attribute the
      // kill to this task if its main process shows a SIGKILL.
      const bool killed9 = r.signal == SIGKILL || r.exit_code == 128 + SIGKILL;
      r.oom_killed = layout_.version == CgroupVersion::kV2 || killed9;
    }
    if (r.timed_out) {
      r.reason = ExitReason::kTimedOut;
    } else if (t->kill_requested) {
      r.reason = ExitReason::kKilled;
    } else if (r.oom_killed) {
      r.reason = ExitReason::kOomKilled;
    }
    FinishTaskLocked(t, std::move(r));
  }
}

void NetnsRuntime::HandleControlLocked(Vnode* v) {
  std::string buf;
  while (v->ctl >= 0) {
    ssize_t n = RecvDatagram(v->ctl, &buf);
    if (n > 0) {
      Result<vnode_init::Message> m = vnode_init::Decode(buf);
      if (m.ok()) HandleMessageLocked(v, *m);
      continue;
    }
    if (n < 0 && errno == EAGAIN) return;
    // EOF or error: init is gone or closed the socket.
    ::epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, v->ctl, nullptr);
    ::close(v->ctl);
    v->ctl = -1;
  }
}

void NetnsRuntime::EmitLocked(RuntimeEvent e) {
  if (callback_) {
    pending_callbacks_.push_back(std::move(e));
  } else {
    queue_.push_back(std::move(e));
  }
}

void NetnsRuntime::DeliverPending() {
  std::vector<RuntimeEvent> events;
  EventCallback cb;
  {
    std::lock_guard<std::mutex> l(mu_);
    events.swap(pending_callbacks_);
    cb = callback_;
  }
  if (!cb) return;
  for (const RuntimeEvent& e : events) cb(e);
}

void NetnsRuntime::Pump(std::chrono::milliseconds timeout) {
  struct epoll_event evs[64];
  int n = ::epoll_wait(epoll_fd_, evs, 64, static_cast<int>(std::max<int64_t>(0, timeout.count())));
  if (n <= 0) return;
  std::lock_guard<std::mutex> l(mu_);
  for (int i = 0; i < n; ++i) {
    auto it = by_serial_.find(evs[i].data.u64 >> 1);
    if (it == by_serial_.end()) continue;
    Vnode* v = it->second;
    if (evs[i].data.u64 & 1) {
      if (v->pidfd >= 0) HandleInitExitLocked(v);
    } else if (v->ctl >= 0) {
      HandleControlLocked(v);
    }
  }
  cv_.notify_all();
}

std::vector<RuntimeEvent> NetnsRuntime::Poll(std::chrono::milliseconds timeout) {
  bool have;
  {
    std::lock_guard<std::mutex> l(mu_);
    have = !queue_.empty();
  }
  Pump(have ? std::chrono::milliseconds(0) : timeout);
  DeliverPending();
  std::lock_guard<std::mutex> l(mu_);
  std::vector<RuntimeEvent> out(std::make_move_iterator(queue_.begin()),
                                std::make_move_iterator(queue_.end()));
  queue_.clear();
  return out;
}

Result<TaskResult> NetnsRuntime::Wait(TaskId id, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (true) {
    {
      std::lock_guard<std::mutex> l(mu_);
      auto it = tasks_.find(id);
      if (it == tasks_.end()) return NotFoundError("no task " + std::to_string(id));
      if (it->second->state == TaskState::kFinished) return it->second->result;
    }
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      return DeadlineExceededError("task " + std::to_string(id) + " still running");
    }
    Pump(std::min(left, std::chrono::milliseconds(100)));
    DeliverPending();
  }
}

void NetnsRuntime::SetEventCallback(EventCallback callback) {
  std::vector<RuntimeEvent> flush;
  {
    std::lock_guard<std::mutex> l(mu_);
    callback_ = std::move(callback);
    if (callback_) {
      flush.assign(queue_.begin(), queue_.end());
      queue_.clear();
      pending_callbacks_.insert(pending_callbacks_.begin(), flush.begin(), flush.end());
    }
  }
  DeliverPending();
}

// ---------------------------------------------------------------------------
// Freezer.

Status NetnsRuntime::Freeze(const VnodeRef& ref) {
  std::string dir;
  {
    std::lock_guard<std::mutex> l(mu_);
    Vnode* v = FindLocked(ref);
    if (v == nullptr) return NotFoundError("no vnode " + ref.ToString());
    if (v->state == VnodeState::kStopped) {
      return FailedPreconditionError("vnode " + ref.ToString() + " is stopped");
    }
    if (v->cg.freezer.empty()) return UnavailableError("no freezer cgroup controller mounted");
    dir = v->cg.freezer;
  }
  GRIDEMU_RETURN_IF_ERROR(CgroupFreeze(layout_.version, dir, true));
  std::lock_guard<std::mutex> l(mu_);
  if (Vnode* v = FindLocked(ref); v != nullptr && v->state == VnodeState::kRunning) {
    v->state = VnodeState::kFrozen;
  }
  return Status::Ok();
}

Status NetnsRuntime::Thaw(const VnodeRef& ref) {
  std::string dir;
  {
    std::lock_guard<std::mutex> l(mu_);
    Vnode* v = FindLocked(ref);
    if (v == nullptr) return NotFoundError("no vnode " + ref.ToString());
    if (v->state == VnodeState::kStopped) {
      return FailedPreconditionError("vnode " + ref.ToString() + " is stopped");
    }
    if (v->cg.freezer.empty()) return UnavailableError("no freezer cgroup controller mounted");
    dir = v->cg.freezer;
  }
  GRIDEMU_RETURN_IF_ERROR(CgroupFreeze(layout_.version, dir, false));
  std::lock_guard<std::mutex> l(mu_);
  if (Vnode* v = FindLocked(ref); v != nullptr && v->state == VnodeState::kFrozen) {
    v->state = VnodeState::kRunning;
  }
  return Status::Ok();
}

// ---------------------------------------------------------------------------
// Leftovers, cleanup, adoption.

namespace {

struct FoundVnode {
  std::string experiment;
  std::string name;
  std::string netns_name;
  std::vector<std::string> cgroup_dirs;
};

bool IsDir(const std::string& p) {
  struct stat st;
  return ::lstat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

}  // namespace

Result<Leftovers> NetnsRuntime::ListLeftovers(std::string_view experiment) const {
  if (!experiment.empty()) GRIDEMU_RETURN_IF_ERROR(ValidateExperimentId(experiment));
  Leftovers out;
  // Experiments: from state directories and from cgroup directories.
  std::set<std::string> exps;
  if (experiment.empty()) {
    GRIDEMU_ASSIGN_OR_RETURN(std::vector<std::string> st, internal::ListDir(state_root_, true));
    exps.insert(st.begin(), st.end());
    for (const std::string& d : layout_.Dirs(options_.prefix)) {
      GRIDEMU_ASSIGN_OR_RETURN(std::vector<std::string> cg, internal::ListDir(d, true));
      exps.insert(cg.begin(), cg.end());
    }
  } else {
    exps.insert(std::string(experiment));
  }
  std::set<std::string> cgroups;
  std::set<std::string> own_netns;    // netns names of vnodes of `exps`
  std::set<std::string> other_netns;  // of other experiments (exclusion)
  auto add_meta_cgroups = [&](const std::string& exp, std::set<std::string>* netns) {
    const std::string dir = state_root_ + "/" + exp;
    Result<std::vector<std::string>> vns = internal::ListDir(dir, true);
    if (!vns.ok()) return;
    for (const std::string& vn : *vns) {
      netns->insert(ComputeVnodePaths(options_, exp, vn).netns_name);
      Result<std::string> meta = internal::ReadWholeFile(dir + "/" + vn + "/vnode.meta");
      if (!meta.ok() || netns != &own_netns) continue;
      for (const auto& [k, v] : ParseMeta(*meta)) {
        if (k == "cgroup" && IsDir(v)) cgroups.insert(v);
        if (k == "netns") netns->insert(v);
      }
    }
  };
  for (const std::string& e : exps) {
    if (!ValidateExperimentId(e).ok()) continue;
    if (IsDir(state_root_ + "/" + e)) out.state_dirs.push_back(state_root_ + "/" + e);
    for (const std::string& d : layout_.Dirs(options_.prefix + "/" + e)) {
      if (!IsDir(d)) continue;
      cgroups.insert(d);
      GRIDEMU_ASSIGN_OR_RETURN(std::vector<std::string> vns, internal::ListDir(d, true));
      for (const std::string& vn : vns) {
        cgroups.insert(d + "/" + vn);
        own_netns.insert(ComputeVnodePaths(options_, e, vn).netns_name);
      }
    }
    add_meta_cgroups(e, &own_netns);
  }
  if (!experiment.empty()) {
    // Vnodes of other experiments whose netns names share our prefix
    // ("<prefix>-a-b-x" may be experiment "a-b" or experiment "a").
    Result<std::vector<std::string>> all = internal::ListDir(state_root_, true);
    if (all.ok()) {
      for (const std::string& e : *all) {
        if (e != experiment) add_meta_cgroups(e, &other_netns);
      }
    }
    for (const std::string& d : layout_.Dirs(options_.prefix)) {
      Result<std::vector<std::string>> es = internal::ListDir(d, true);
      if (!es.ok()) continue;
      for (const std::string& e : *es) {
        if (e == experiment) continue;
        Result<std::vector<std::string>> vns = internal::ListDir(d + "/" + e, true);
        if (!vns.ok()) continue;
        for (const std::string& vn : *vns) {
          other_netns.insert(ComputeVnodePaths(options_, e, vn).netns_name);
        }
      }
    }
  } else {
    for (const std::string& d : layout_.Dirs(options_.prefix)) {
      if (IsDir(d)) cgroups.insert(d);
    }
    if (IsDir(state_root_)) out.state_dirs.push_back(state_root_);
  }
  {
    std::lock_guard<std::mutex> l(mu_);
    for (const auto& [ref, v] : vnodes_) {
      if (!experiment.empty() && ref.experiment != experiment) {
        other_netns.insert(v->paths.netns_name);
        continue;
      }
      own_netns.insert(v->paths.netns_name);
      for (const std::string& d : v->cg.dirs) {
        if (IsDir(d)) cgroups.insert(d);
      }
    }
  }
  // Named network namespaces carrying the prefix (and the experiment).
  GRIDEMU_ASSIGN_OR_RETURN(std::vector<std::string> names,
                           internal::ListDir(options_.netns_dir, false));
  for (const std::string& n : names) {
    std::string_view rest = NetnsNameRest(options_.prefix, n);
    if (rest.empty()) continue;
    // All experiments: only namespaces that a record (state directory,
    // cgroup, live vnode) proves ours; a look-alike name alone is not enough.
    if (experiment.empty() && own_netns.count(n) == 0) continue;
    if (!experiment.empty()) {
      const std::string want = std::string(experiment) + "-";
      if (own_netns.count(n) == 0 &&
          (rest.substr(0, want.size()) != want || other_netns.count(n) != 0)) {
        continue;
      }
    }
    out.netns.push_back(n);
  }
  for (const std::string& c : cgroups) {
    Result<std::vector<pid_t>> pids = CgroupProcs(c, true);
    if (pids.ok()) out.processes.insert(out.processes.end(), pids->begin(), pids->end());
  }
  std::sort(out.processes.begin(), out.processes.end());
  out.processes.erase(std::unique(out.processes.begin(), out.processes.end()), out.processes.end());
  out.cgroups.assign(cgroups.begin(), cgroups.end());
  return out;
}

Status NetnsRuntime::CleanupImpl(std::string_view experiment, bool all) {
  // 1. This instance's vnodes, the normal way.
  std::vector<VnodeRef> mine;
  {
    std::lock_guard<std::mutex> l(mu_);
    for (const auto& [ref, v] : vnodes_) {
      if (all || ref.experiment == experiment) mine.push_back(ref);
    }
  }
  Status first;
  auto note = [&first](Status s) {
    if (!s.ok() && first.ok()) first = std::move(s);
  };
  for (const Status& s : DestroyBatch(mine)) note(s);
  // 2. Whatever earlier instances left.
  GRIDEMU_ASSIGN_OR_RETURN(Leftovers left, ListLeftovers(all ? "" : experiment));
  // Processes, by cgroup membership (deepest cgroups are swept with their parents).
  for (const std::string& c : left.cgroups) note(CgroupKillAll(c));
  for (const std::string& n : left.netns) {
    const std::string path = options_.netns_dir + "/" + n;
    if (::umount2(path.c_str(), MNT_DETACH) != 0 && errno != EINVAL && errno != ENOENT) {
      note(ErrnoStatus(errno, "umount", path));
    }
    if (::unlink(path.c_str()) != 0 && errno != ENOENT) note(ErrnoStatus(errno, "unlink", path));
  }
  // Deepest first: sort by length, descending.
  std::vector<std::string> cgs = left.cgroups;
  std::sort(cgs.begin(), cgs.end(),
            [](const std::string& a, const std::string& b) { return a.size() > b.size(); });
  for (const std::string& c : cgs) note(CgroupRemoveTree(c));
  std::vector<std::string> states = left.state_dirs;
  std::sort(states.begin(), states.end(),
            [](const std::string& a, const std::string& b) { return a.size() > b.size(); });
  for (const std::string& s : states) {
    // The state root itself may be the runtime's tmpfs: released below.
    if (s == state_root_) {
      Result<std::vector<std::string>> subs = internal::ListDir(s, false);
      if (subs.ok()) {
        for (const std::string& e : *subs) note(internal::RemoveTree(s + "/" + e));
      }
      continue;
    }
    note(internal::RemoveTree(s));
  }
  if (!all) {
    for (const std::string& d : layout_.Dirs(options_.prefix)) ::rmdir(d.c_str());
  }
  {
    std::lock_guard<std::mutex> l(mu_);
    ReleaseStateRootLocked();
    if (all) {
      experiment_cgroups_ready_.clear();
    } else {
      experiment_cgroups_ready_.erase(std::string(experiment));
    }
    // Task records of the experiment's (now gone) vnodes are dropped.
    for (auto it = tasks_.begin(); it != tasks_.end();) {
      if ((all || it->second->vnode.experiment == experiment) &&
          vnodes_.count(it->second->vnode) == 0) {
        it = tasks_.erase(it);
      } else {
        ++it;
      }
    }
  }
  GRIDEMU_ASSIGN_OR_RETURN(Leftovers after, ListLeftovers(all ? "" : experiment));
  if (!after.empty()) {
    return InternalError(
        "cleanup of " +
        (all ? std::string("all experiments") : "experiment " + std::string(experiment)) +
        " left:\n" + after.ToString() +
        (first.ok() ? std::string() : "first error: " + first.message()));
  }
  return first;
}

Status NetnsRuntime::CleanupExperiment(std::string_view experiment) {
  GRIDEMU_RETURN_IF_ERROR(ValidateExperimentId(experiment));
  return CleanupImpl(experiment, false);
}

Status NetnsRuntime::CleanupAll() { return CleanupImpl("", true); }

Result<std::vector<VnodeRef>> NetnsRuntime::Adopt(std::string_view experiment) {
  if (!experiment.empty()) GRIDEMU_RETURN_IF_ERROR(ValidateExperimentId(experiment));
  std::vector<std::string> exps;
  if (experiment.empty()) {
    GRIDEMU_ASSIGN_OR_RETURN(exps, internal::ListDir(state_root_, true));
  } else {
    exps.push_back(std::string(experiment));
  }
  std::vector<VnodeRef> adopted;
  for (const std::string& e : exps) {
    if (!ValidateExperimentId(e).ok()) continue;
    GRIDEMU_ASSIGN_OR_RETURN(std::vector<std::string> names,
                             internal::ListDir(state_root_ + "/" + e, true));
    for (const std::string& name : names) {
      VnodeRef ref{e, name};
      {
        std::lock_guard<std::mutex> l(mu_);
        if (vnodes_.count(ref) != 0) continue;
      }
      auto v = std::make_unique<Vnode>();
      v->paths = ComputeVnodePaths(options_, e, name);
      Result<std::string> meta = internal::ReadWholeFile(v->paths.meta_file);
      if (!meta.ok()) continue;  // not a vnode directory
      v->spec.experiment = e;
      v->spec.name = name;
      for (const auto& [k, val] : ParseMeta(*meta)) {
        if (k == "index") {
          v->spec.index = static_cast<uint32_t>(std::strtoul(val.c_str(), nullptr, 10));
        } else if (k == "out_dir") {
          v->spec.out_dir = val;
        } else if (k == "shared_dir") {
          v->spec.shared_dir = val;
        } else if (k == "hosts_file") {
          v->hosts_file = val;
        } else if (k == "env") {
          size_t eq = val.find('=');
          if (eq != std::string::npos)
            v->spec.env.emplace_back(val.substr(0, eq), val.substr(eq + 1));
        } else if (k == "cgroup") {
          v->cg.dirs.push_back(val);
        } else if (k == "cgroup.init") {
          v->cg.init_dirs.push_back(val);
        } else if (k == "cgroup.task_parent") {
          v->cg.task_parent = val;
        } else if (k == "cgroup.freezer") {
          v->cg.freezer = val;
        } else if (k.rfind("cgroup.", 0) == 0) {
          v->cg.by_controller[k.substr(7)] = val;
        }
      }
      if (v->cg.dirs.empty() || v->cg.task_parent.empty()) continue;
      v->netns_bound = internal::PathExists(v->paths.netns_path);
      v->owns_state_dir = true;
      v->owns_cgroups = true;
      v->adopted = true;
      // init: the only process where init lives (tasks are in task-<id> below).
      pid_t init_pid = 0;
      for (const std::string& d : v->cg.init_dirs) {
        Result<std::vector<pid_t>> pids = CgroupProcs(d, false);
        if (pids.ok() && !pids->empty()) {
          init_pid = pids->front();
          break;
        }
      }
      if (init_pid > 0) {
        Result<std::string> cmd =
            internal::ReadWholeFile("/proc/" + std::to_string(init_pid) + "/cmdline");
        if (cmd.ok() && cmd->rfind(kInitName, 0) == 0) {
          v->init_pid = init_pid;
          v->pidfd = PidfdOpen(init_pid);
        }
      }
      // Task ids in use: never reuse them.
      Result<std::vector<std::string>> subs = internal::ListDir(v->cg.task_parent, true);
      if (subs.ok()) {
        std::lock_guard<std::mutex> l(mu_);
        for (const std::string& s : *subs) {
          if (s.rfind("task-", 0) == 0) {
            next_task_id_ =
                std::max<TaskId>(next_task_id_, std::strtoull(s.c_str() + 5, nullptr, 10) + 1);
          }
        }
      }
      if (v->init_pid > 0) {
        v->state = VnodeState::kRunning;
        if (!v->cg.freezer.empty()) {
          Result<std::string> fs = layout_.version == CgroupVersion::kV1
                                       ? CgroupRead(v->cg.freezer, "freezer.state")
                                       : CgroupRead(v->cg.freezer, "cgroup.events");
          if (fs.ok() && (fs->rfind("FROZEN", 0) == 0 || (layout_.version == CgroupVersion::kV2 &&
                                                          ParseKeyedValue(*fs, "frozen").ok() &&
                                                          *ParseKeyedValue(*fs, "frozen") == 1))) {
            v->state = VnodeState::kFrozen;
          }
        }
        // Reconnect: init listens once its agent is gone.
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
        while (std::chrono::steady_clock::now() < deadline) {
          UniqueFd s(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
          if (s.valid() && internal::UnixSocketAt(s.get(), v->paths.listen_path, false).ok()) {
            ::fcntl(s.get(), F_SETFL, ::fcntl(s.get(), F_GETFL) | O_NONBLOCK);
            if (SendDatagram(s.get(), vnode_init::Encode(vnode_init::Hello{}), nullptr, 0).ok()) {
              v->ctl = s.release();
            }
            break;
          }
          if (v->state == VnodeState::kFrozen) break;  // a frozen init cannot accept
          std::this_thread::sleep_for(std::chrono::milliseconds(20));
        }
      }
      Vnode* raw = v.get();
      {
        std::lock_guard<std::mutex> l(mu_);
        vnodes_[ref] = std::move(v);
      }
      // Init answers Hello with Started for each running task, the reports
      // queued while no agent listened, then Ready.
      if (raw->ctl >= 0) {
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
        std::string buf;
        bool done = false;
        while (!done && std::chrono::steady_clock::now() < deadline) {
          ssize_t n = RecvDatagram(raw->ctl, &buf);
          if (n > 0) {
            Result<vnode_init::Message> m = vnode_init::Decode(buf);
            if (!m.ok()) continue;
            if (std::holds_alternative<vnode_init::Ready>(*m)) {
              done = true;
            } else {
              std::lock_guard<std::mutex> l(mu_);
              HandleMessageLocked(raw, *m);
            }
          } else if (n == 0 || errno != EAGAIN) {
            ::close(raw->ctl);
            raw->ctl = -1;
            break;
          } else {
            struct pollfd p = {raw->ctl, POLLIN, 0};
            ::poll(&p, 1, 50);
          }
        }
      }
      std::lock_guard<std::mutex> l(mu_);
      RegisterLocked(raw);
      adopted.push_back(ref);
    }
  }
  DeliverPending();
  return adopted;
}

}  // namespace gridemu::agent

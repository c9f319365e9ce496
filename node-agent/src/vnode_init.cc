// gridemu-vnode-init: PID 1 of a netns-runtime vnode, and its protocol codec.
// Kept small: it runs once per vnode (1,000 per pnode), so it uses no threads,
// no iostreams and no heap beyond a few strings per task.
#include "gridemu/node-agent/vnode_init.h"

#include <fcntl.h>
#include <net/if.h>
#include <poll.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <deque>

#include "runtime_util.h"

extern char** environ;

namespace gridemu::agent::vnode_init {
namespace {

enum Type : uint32_t {
  kConfig = 1,
  kReady = 2,
  kExec = 3,
  kStarted = 4,
  kStartFailed = 5,
  kExited = 6,
  kHello = 7,
};

class Writer {
 public:
  void U32(uint32_t v) {
    for (int i = 0; i < 4; ++i) out_.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
  }
  void U64(uint64_t v) {
    for (int i = 0; i < 8; ++i) out_.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
  }
  void I64(int64_t v) { U64(static_cast<uint64_t>(v)); }
  void Bool(bool v) { U32(v ? 1 : 0); }
  void Str(std::string_view s) {
    U32(static_cast<uint32_t>(s.size()));
    out_.append(s);
  }
  void Strs(const std::vector<std::string>& v) {
    U32(static_cast<uint32_t>(v.size()));
    for (const std::string& s : v) Str(s);
  }
  std::string Take() { return std::move(out_); }

 private:
  std::string out_;
};

class Reader {
 public:
  explicit Reader(std::string_view in) : in_(in) {}
  bool ok() const { return ok_; }
  bool AtEnd() const { return pos_ == in_.size(); }
  uint32_t U32() {
    uint32_t v = 0;
    if (!Need(4)) return 0;
    for (int i = 0; i < 4; ++i)
      v |= static_cast<uint32_t>(static_cast<uint8_t>(in_[pos_ + i])) << (8 * i);
    pos_ += 4;
    return v;
  }
  uint64_t U64() {
    uint64_t v = 0;
    if (!Need(8)) return 0;
    for (int i = 0; i < 8; ++i)
      v |= static_cast<uint64_t>(static_cast<uint8_t>(in_[pos_ + i])) << (8 * i);
    pos_ += 8;
    return v;
  }
  int64_t I64() { return static_cast<int64_t>(U64()); }
  bool Bool() {
    uint32_t v = U32();
    if (v > 1) ok_ = false;
    return v == 1;
  }
  std::string Str() {
    uint32_t n = U32();
    if (!Need(n)) return {};
    std::string s(in_.substr(pos_, n));
    pos_ += n;
    return s;
  }
  std::vector<std::string> Strs() {
    uint32_t n = U32();
    // Each string needs at least its 4-byte length: reject absurd counts early.
    if (!ok_ || n > (in_.size() - pos_) / 4) {
      ok_ = false;
      return {};
    }
    std::vector<std::string> v;
    v.reserve(n);
    for (uint32_t i = 0; i < n && ok_; ++i) v.push_back(Str());
    return v;
  }

 private:
  bool Need(size_t n) {
    if (!ok_ || in_.size() - pos_ < n) ok_ = false;
    return ok_;
  }
  std::string_view in_;
  size_t pos_ = 0;
  bool ok_ = true;
};

struct EncodeVisitor {
  Writer& w;
  void operator()(const Config& m) {
    w.U32(kConfig);
    w.Str(m.hostname);
    w.Bool(m.mount_proc);
    w.U32(static_cast<uint32_t>(m.tmpfs.size()));
    for (const TmpfsMount& t : m.tmpfs) {
      w.Str(t.target);
      w.Str(t.options);
    }
    w.U32(static_cast<uint32_t>(m.binds.size()));
    for (const BindMount& b : m.binds) {
      w.Str(b.source);
      w.Str(b.target);
      w.Bool(b.read_only);
      w.Bool(b.is_file);
    }
    w.Bool(m.loopback_up);
    w.Str(m.listen_path);
  }
  void operator()(const Ready& m) {
    w.U32(kReady);
    w.Bool(m.ok);
    w.Str(m.error);
  }
  void operator()(const Exec& m) {
    w.U32(kExec);
    w.U64(m.task_id);
    w.Strs(m.argv);
    w.Strs(m.env);
    w.Str(m.cwd);
    w.U64(m.timeout_ms);
    w.Bool(m.kill_leftovers);
  }
  void operator()(const Started& m) {
    w.U32(kStarted);
    w.U64(m.task_id);
    w.U32(static_cast<uint32_t>(m.pid));
    w.I64(m.start_wall_ns);
    w.I64(m.start_mono_ns);
  }
  void operator()(const StartFailed& m) {
    w.U32(kStartFailed);
    w.U64(m.task_id);
    w.U32(static_cast<uint32_t>(m.error_number));
    w.Str(m.message);
    w.I64(m.wall_ns);
    w.I64(m.mono_ns);
  }
  void operator()(const Exited& m) {
    w.U32(kExited);
    w.U64(m.task_id);
    w.U32(static_cast<uint32_t>(m.wait_status));
    w.Bool(m.timed_out);
    w.I64(m.start_wall_ns);
    w.I64(m.start_mono_ns);
    w.I64(m.end_wall_ns);
    w.I64(m.end_mono_ns);
  }
  void operator()(const Hello&) { w.U32(kHello); }
};

}  // namespace

std::string Encode(const Message& message) {
  Writer w;
  std::visit(EncodeVisitor{w}, message);
  return w.Take();
}

Result<Message> Decode(std::string_view datagram) {
  if (datagram.size() > kMaxMessageBytes) {
    return InvalidArgumentError("vnode init message too large: " + std::to_string(datagram.size()) +
                                " bytes");
  }
  Reader r(datagram);
  uint32_t type = r.U32();
  Message out;
  switch (type) {
    case kConfig: {
      Config m;
      m.hostname = r.Str();
      m.mount_proc = r.Bool();
      uint32_t n = r.U32();
      for (uint32_t i = 0; i < n && r.ok(); ++i) {
        TmpfsMount t;
        t.target = r.Str();
        t.options = r.Str();
        m.tmpfs.push_back(std::move(t));
      }
      n = r.U32();
      for (uint32_t i = 0; i < n && r.ok(); ++i) {
        BindMount b;
        b.source = r.Str();
        b.target = r.Str();
        b.read_only = r.Bool();
        b.is_file = r.Bool();
        m.binds.push_back(std::move(b));
      }
      m.loopback_up = r.Bool();
      m.listen_path = r.Str();
      out = std::move(m);
      break;
    }
    case kReady: {
      Ready m;
      m.ok = r.Bool();
      m.error = r.Str();
      out = std::move(m);
      break;
    }
    case kExec: {
      Exec m;
      m.task_id = r.U64();
      m.argv = r.Strs();
      m.env = r.Strs();
      m.cwd = r.Str();
      m.timeout_ms = r.U64();
      m.kill_leftovers = r.Bool();
      out = std::move(m);
      break;
    }
    case kStarted: {
      Started m;
      m.task_id = r.U64();
      m.pid = static_cast<int32_t>(r.U32());
      m.start_wall_ns = r.I64();
      m.start_mono_ns = r.I64();
      out = m;
      break;
    }
    case kStartFailed: {
      StartFailed m;
      m.task_id = r.U64();
      m.error_number = static_cast<int32_t>(r.U32());
      m.message = r.Str();
      m.wall_ns = r.I64();
      m.mono_ns = r.I64();
      out = std::move(m);
      break;
    }
    case kExited: {
      Exited m;
      m.task_id = r.U64();
      m.wait_status = static_cast<int32_t>(r.U32());
      m.timed_out = r.Bool();
      m.start_wall_ns = r.I64();
      m.start_mono_ns = r.I64();
      m.end_wall_ns = r.I64();
      m.end_mono_ns = r.I64();
      out = m;
      break;
    }
    case kHello:
      out = Hello{};
      break;
    default:
      return InvalidArgumentError("vnode init message: unknown type " + std::to_string(type));
  }
  if (!r.ok()) return InvalidArgumentError("vnode init message: truncated or malformed");
  if (!r.AtEnd()) return InvalidArgumentError("vnode init message: trailing bytes");
  return out;
}

// ---------------------------------------------------------------------------
// The init program.

namespace {


// Receives one datagram and the descriptors that came with it (O_CLOEXEC).
// Returns >0 on a message, 0 on EOF, -1 with errno otherwise.
ssize_t RecvDatagram(int fd, std::string* buf, std::vector<int>* fds, int flags) {
  fds->clear();
  char probe;
  struct iovec iov = {&probe, 1};
  struct msghdr m = {};
  m.msg_iov = &iov;
  m.msg_iovlen = 1;
  ssize_t n = ::recvmsg(fd, &m, MSG_PEEK | MSG_TRUNC | flags);
  if (n <= 0) return n;
  buf->assign(static_cast<size_t>(n), '\0');
  iov = {buf->data(), buf->size()};
  alignas(struct cmsghdr) char control[CMSG_SPACE(sizeof(int) * 8)];
  m = {};
  m.msg_iov = &iov;
  m.msg_iovlen = 1;
  m.msg_control = control;
  m.msg_controllen = sizeof(control);
  n = ::recvmsg(fd, &m, MSG_CMSG_CLOEXEC | flags);
  if (n <= 0) return n;
  for (struct cmsghdr* c = CMSG_FIRSTHDR(&m); c != nullptr; c = CMSG_NXTHDR(&m, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    const unsigned char* data = CMSG_DATA(c);
    for (size_t i = 0; i < count; ++i) {
      int f;
      std::memcpy(&f, data + i * sizeof(int), sizeof(int));
      fds->push_back(f);
    }
  }
  buf->resize(static_cast<size_t>(n));
  return n;
}

struct InitTask {
  uint64_t id = 0;
  pid_t pid = 0;
  int cgroup_fd = -1;
  int64_t start_wall = 0;
  int64_t start_mono = 0;
  int64_t deadline_mono = 0;  // 0 = none
  bool timed_out = false;
  bool kill_leftovers = false;
};

class Init {
 public:
  int Run(int argc, char** argv);

 private:
  std::string Setup(const Config& c);
  void Loop();
  void ReadControl();
  void HandleExec(Exec e, std::vector<int>& fds);
  void Reap();
  void CheckDeadlines();
  void Sweep(const InitTask& t);
  void Send(const Message& m);
  void Flush();
  void LostAgent();
  void Accept();
  int PollTimeoutMs() const;

  int ctl_ = kControlFd;
  int listen_ = -1;
  int sigfd_ = -1;
  std::string listen_path_;
  std::vector<InitTask> tasks_;
  std::deque<std::string> pending_;
};

std::string Errno(const char* what, const std::string& path) {
  return std::string(what) + " " + path + ": " + std::strerror(errno);
}

std::string Init::Setup(const Config& c) {
  if (!c.hostname.empty() && ::sethostname(c.hostname.data(), c.hostname.size()) != 0) {
    return Errno("sethostname", c.hostname);
  }
  // Open every bind source before mounting anything that could hide it.
  std::vector<int> sources;
  for (const BindMount& b : c.binds) {
    int fd = ::open(b.source.c_str(), O_PATH | O_CLOEXEC);
    if (fd < 0) return Errno("open bind source", b.source);
    sources.push_back(fd);
  }
  if (c.mount_proc &&
      ::mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr) != 0) {
    return Errno("mount proc on", "/proc");
  }
  for (const TmpfsMount& t : c.tmpfs) {
    Status s = internal::MakeDirs(t.target);
    if (!s.ok()) return s.message();
    if (::mount("tmpfs", t.target.c_str(), "tmpfs", MS_NOSUID | MS_NODEV, t.options.c_str()) != 0) {
      return Errno("mount tmpfs on", t.target);
    }
  }
  for (size_t i = 0; i < c.binds.size(); ++i) {
    const BindMount& b = c.binds[i];
    if (b.is_file) {
      if (!internal::PathExists(b.target)) {
        int fd = ::open(b.target.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
        if (fd < 0) return Errno("create bind target", b.target);
        ::close(fd);
      }
    } else {
      Status s = internal::MakeDirs(b.target);
      if (!s.ok()) return s.message();
    }
    char src[64];
    std::snprintf(src, sizeof(src), "/proc/self/fd/%d", sources[i]);
    if (::mount(src, b.target.c_str(), nullptr, MS_BIND, nullptr) != 0) {
      return Errno("bind mount", b.source + " on " + b.target);
    }
    if (b.read_only && ::mount(nullptr, b.target.c_str(), nullptr, MS_BIND | MS_REMOUNT | MS_RDONLY,
                               nullptr) != 0) {
      return Errno("remount read-only", b.target);
    }
    ::close(sources[i]);
  }
  if (c.loopback_up) {
    int s = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (s < 0) return Errno("socket", "AF_INET");
    struct ifreq ifr = {};
    std::strncpy(ifr.ifr_name, "lo", IFNAMSIZ - 1);
    if (::ioctl(s, SIOCGIFFLAGS, &ifr) != 0) {
      ::close(s);
      return Errno("SIOCGIFFLAGS", "lo");
    }
    ifr.ifr_flags = static_cast<short>(ifr.ifr_flags | IFF_UP);
    if (::ioctl(s, SIOCSIFFLAGS, &ifr) != 0) {
      ::close(s);
      return Errno("SIOCSIFFLAGS", "lo");
    }
    ::close(s);
  }
  if (::chdir("/") != 0) return Errno("chdir", "/");
  listen_path_ = c.listen_path;
  return {};
}

void Init::Send(const Message& m) {
  pending_.push_back(Encode(m));
  Flush();
}

void Init::Flush() {
  while (ctl_ >= 0 && !pending_.empty()) {
    const std::string& d = pending_.front();
    ssize_t n = ::send(ctl_, d.data(), d.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) return;  // retried on POLLOUT
      LostAgent();
      return;
    }
    pending_.pop_front();
  }
}

void Init::LostAgent() {
  if (ctl_ >= 0) ::close(ctl_);
  ctl_ = -1;
  if (listen_ >= 0 || listen_path_.empty()) return;
  int s = ::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (s < 0) return;
  if (!internal::UnixSocketAt(s, listen_path_, /*listen=*/true).ok()) {
    ::close(s);
    return;
  }
  listen_ = s;
}

void Init::Accept() {
  int c = ::accept4(listen_, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
  if (c < 0) return;
  ::close(listen_);
  listen_ = -1;
  ::unlink(listen_path_.c_str());
  ctl_ = c;
  // Reports queue until the new agent says Hello.
}

void Init::ReadControl() {
  std::string buf;
  std::vector<int> fds;
  while (ctl_ >= 0) {
    ssize_t n = RecvDatagram(ctl_, &buf, &fds, MSG_DONTWAIT);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) return;
    if (n <= 0) {
      for (int f : fds) ::close(f);
      LostAgent();
      return;
    }
    Result<Message> m = Decode(buf);
    if (!m.ok()) {
      for (int f : fds) ::close(f);
      continue;
    }
    if (Exec* e = std::get_if<Exec>(&*m)) {
      HandleExec(std::move(*e), fds);
    } else if (std::holds_alternative<Hello>(*m)) {
      for (int f : fds) ::close(f);
      // Running tasks first, then what happened while nobody listened.
      std::deque<std::string> queued;
      queued.swap(pending_);
      for (const InitTask& t : tasks_) {
        pending_.push_back(Encode(Started{t.id, t.pid, t.start_wall, t.start_mono}));
      }
      for (std::string& q : queued) pending_.push_back(std::move(q));
      pending_.push_back(Encode(Ready{true, {}}));
      Flush();
    } else {
      for (int f : fds) ::close(f);
    }
  }
}

void Init::HandleExec(Exec e, std::vector<int>& fds) {
  auto fail = [&](int err, std::string msg) {
    for (int f : fds) ::close(f);
    Send(StartFailed{e.task_id, err, std::move(msg), UnixNanosNow(), MonotonicNanosNow()});
  };
  if (fds.size() < 2 || e.argv.empty()) {
    fail(EINVAL, "exec request without argv or output descriptors");
    return;
  }
  const int out_fd = fds[0];
  const int err_fd = fds[1];
  const int cg_fd = fds.size() > 2 ? fds[2] : -1;
  int pipefd[2];
  if (::pipe2(pipefd, O_CLOEXEC) != 0) {
    fail(errno, std::string("pipe2: ") + std::strerror(errno));
    return;
  }
  std::vector<char*> argv;
  for (std::string& a : e.argv) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::vector<char*> envp;
  for (std::string& v : e.env) envp.push_back(v.data());
  envp.push_back(nullptr);

  const int64_t start_wall = UnixNanosNow();
  const int64_t start_mono = MonotonicNanosNow();
  pid_t pid = ::fork();
  if (pid < 0) {
    int err = errno;
    ::close(pipefd[0]);
    ::close(pipefd[1]);
    fail(err, std::string("fork: ") + std::strerror(err));
    return;
  }
  if (pid == 0) {
    auto die = [&](const char* what) {
      int err = errno;
      char msg[512];
      int len = std::snprintf(msg, sizeof(msg), "%s%s: %s", what,
                              std::strcmp(what, "exec ") == 0 ? e.argv[0].c_str() : "",
                              std::strerror(err));
      std::string payload(reinterpret_cast<const char*>(&err), sizeof(err));
      payload.append(msg, static_cast<size_t>(std::max(0, std::min(len, 511))));
      ssize_t ignored = ::write(pipefd[1], payload.data(), payload.size());
      (void)ignored;
      ::_exit(127);
    };
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    ::setsid();
    // Init is exempt from the OOM killer; its tasks are not.
    int adj = ::open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC);
    if (adj >= 0) {
      ssize_t ignored = ::write(adj, "0", 1);
      (void)ignored;
      ::close(adj);
    }
    if (cg_fd >= 0) {
      int f = ::openat(cg_fd, "cgroup.procs", O_WRONLY | O_CLOEXEC);
      if (f < 0 || ::write(f, "0", 1) != 1) die("join task cgroup");
      ::close(f);
    }
    int null_fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (null_fd < 0) die("open /dev/null");
    if (::dup2(null_fd, 0) < 0 || ::dup2(out_fd, 1) < 0 || ::dup2(err_fd, 2) < 0) die("dup2");
    if (!e.cwd.empty() && ::chdir(e.cwd.c_str()) != 0) die("chdir");
    environ = envp.data();
    ::execvp(argv[0], argv.data());
    die("exec ");
  }
  ::close(pipefd[1]);
  ::close(out_fd);
  ::close(err_fd);
  char buf[600];
  ssize_t n;
  do {
    n = ::read(pipefd[0], buf, sizeof(buf));
  } while (n < 0 && errno == EINTR);
  ::close(pipefd[0]);
  if (n > 0) {
    int st;
    while (::waitpid(pid, &st, 0) < 0 && errno == EINTR) {
    }
    int err = 0;
    std::string msg;
    if (n >= static_cast<ssize_t>(sizeof(int))) {
      std::memcpy(&err, buf, sizeof(int));
      msg.assign(buf + sizeof(int), static_cast<size_t>(n) - sizeof(int));
    }
    if (cg_fd >= 0) ::close(cg_fd);
    Send(StartFailed{e.task_id, err, msg, UnixNanosNow(), MonotonicNanosNow()});
    return;
  }
  InitTask t;
  t.id = e.task_id;
  t.pid = pid;
  t.cgroup_fd = cg_fd;
  t.start_wall = start_wall;
  t.start_mono = start_mono;
  t.deadline_mono =
      e.timeout_ms > 0 ? start_mono + static_cast<int64_t>(e.timeout_ms) * 1000000 : 0;
  t.kill_leftovers = e.kill_leftovers;
  tasks_.push_back(t);
  Send(Started{t.id, pid, start_wall, start_mono});
}

// Kills every process of the task's cgroup (the main process included).
void Init::Sweep(const InitTask& t) {
  if (t.cgroup_fd < 0) {
    ::kill(-t.pid, SIGKILL);
    ::kill(t.pid, SIGKILL);
    return;
  }
  // v2: cgroup.kill signals them all at once, but returns before they are
  // gone; the loop below then waits (and kills what v1 lets fork meanwhile).
  int k = ::openat(t.cgroup_fd, "cgroup.kill", O_WRONLY | O_CLOEXEC);
  if (k >= 0) {
    ssize_t ignored = ::write(k, "1", 1);
    (void)ignored;
    ::close(k);
  }
  for (int round = 0; round < 500; ++round) {
    int f = ::openat(t.cgroup_fd, "cgroup.procs", O_RDONLY | O_CLOEXEC);
    if (f < 0) return;
    std::string text;
    char buf[4096];
    ssize_t n;
    while ((n = ::read(f, buf, sizeof(buf))) > 0) text.append(buf, static_cast<size_t>(n));
    ::close(f);
    int killed = 0;
    size_t pos = 0;
    while (pos < text.size()) {
      size_t nl = text.find('\n', pos);
      if (nl == std::string::npos) nl = text.size();
      long pid = std::strtol(text.c_str() + pos, nullptr, 10);
      // 0: a process outside our PID namespace (cannot happen for tasks); never 1 (us).
      if (pid > 1 && ::kill(static_cast<pid_t>(pid), SIGKILL) == 0) ++killed;
      pos = nl + 1;
    }
    if (killed == 0) return;
    struct timespec ts = {0, 1000000};
    ::nanosleep(&ts, nullptr);
  }
}

void Init::Reap() {
  int st;
  pid_t pid;
  while ((pid = ::waitpid(-1, &st, WNOHANG)) > 0) {
    auto it = std::find_if(tasks_.begin(), tasks_.end(),
                           [pid](const InitTask& t) { return t.pid == pid; });
    if (it == tasks_.end()) continue;  // an orphan: reaped, nothing to report
    InitTask t = *it;
    tasks_.erase(it);
    const int64_t end_wall = UnixNanosNow();
    const int64_t end_mono = MonotonicNanosNow();
    if (t.kill_leftovers) Sweep(t);
    if (t.cgroup_fd >= 0) ::close(t.cgroup_fd);
    Send(Exited{t.id, st, t.timed_out, t.start_wall, t.start_mono, end_wall, end_mono});
  }
}

void Init::CheckDeadlines() {
  const int64_t now = MonotonicNanosNow();
  for (size_t i = 0; i < tasks_.size(); ++i) {
    InitTask& t = tasks_[i];
    if (t.deadline_mono == 0 || t.timed_out || now < t.deadline_mono) continue;
    t.timed_out = true;
    Sweep(t);  // the main process is reaped (and reported) by the next Reap()
  }
}

int Init::PollTimeoutMs() const {
  int64_t next = 0;
  for (const InitTask& t : tasks_) {
    if (t.deadline_mono != 0 && !t.timed_out && (next == 0 || t.deadline_mono < next)) {
      next = t.deadline_mono;
    }
  }
  if (next == 0) return -1;
  int64_t ms = (next - MonotonicNanosNow() + 999999) / 1000000;
  return static_cast<int>(std::clamp<int64_t>(ms, 0, 1 << 30));
}

void Init::Loop() {
  while (true) {
    struct pollfd p[3];
    int n = 0;
    p[n++] = {sigfd_, POLLIN, 0};
    int ctl_index = -1, listen_index = -1;
    if (ctl_ >= 0) {
      ctl_index = n;
      p[n++] = {ctl_, static_cast<short>(POLLIN | (pending_.empty() ? 0 : POLLOUT)), 0};
    }
    if (listen_ >= 0) {
      listen_index = n;
      p[n++] = {listen_, POLLIN, 0};
    }
    int r = ::poll(p, static_cast<nfds_t>(n), PollTimeoutMs());
    if (r < 0 && errno != EINTR) {
      struct timespec ts = {0, 10000000};
      ::nanosleep(&ts, nullptr);
      continue;
    }
    if (r > 0 && (p[0].revents & POLLIN)) {
      struct signalfd_siginfo si;
      while (::read(sigfd_, &si, sizeof(si)) == sizeof(si)) {
      }
    }
    Reap();  // cheap; also catches children whose SIGCHLD coalesced
    if (r > 0 && ctl_index >= 0 && p[ctl_index].revents != 0) {
      if (p[ctl_index].revents & POLLOUT) Flush();
      if (p[ctl_index].revents & (POLLIN | POLLHUP | POLLERR)) ReadControl();
    }
    if (r > 0 && listen_index >= 0 && (p[listen_index].revents & POLLIN)) Accept();
    CheckDeadlines();
  }
}

int Init::Run(int argc, char** argv) {
  (void)argc;
  (void)argv;
  // Leaked descriptors of the agent must not reach tasks.
  if (::syscall(SYS_close_range, kControlFd + 1, ~0U, 0) != 0) {
    for (int fd = kControlFd + 1; fd < 1024; ++fd) ::close(fd);
  }
  ::fcntl(ctl_, F_SETFD, FD_CLOEXEC);
  // Dispositions the agent ignored (SIGPIPE...) must not reach tasks.
  for (int sig = 1; sig < NSIG; ++sig) {
    if (sig != SIGKILL && sig != SIGSTOP) ::signal(sig, SIG_DFL);
  }
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGCHLD);
  ::sigprocmask(SIG_SETMASK, &set, nullptr);
  sigfd_ = ::signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
  if (sigfd_ < 0) return 2;

  std::string buf;
  std::vector<int> fds;
  ssize_t n;
  do {
    n = RecvDatagram(ctl_, &buf, &fds, 0);
  } while (n < 0 && errno == EINTR);
  for (int f : fds) ::close(f);
  if (n <= 0) return 3;
  Result<Message> m = Decode(buf);
  if (!m.ok() || !std::holds_alternative<Config>(*m)) {
    Send(Ready{false, "first message is not a valid Config"});
    return 4;
  }
  // Never the OOM killer's victim: its death would end the whole vnode.
  int adj = ::open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC);
  if (adj >= 0) {
    ssize_t ignored = ::write(adj, "-1000", 5);
    (void)ignored;
    ::close(adj);
  }
  std::string err = Setup(std::get<Config>(*m));
  Send(Ready{err.empty(), err});
  if (!err.empty()) return 5;
  int flags = ::fcntl(ctl_, F_GETFL);
  ::fcntl(ctl_, F_SETFL, flags | O_NONBLOCK);
  Loop();
  return 0;
}

}  // namespace

int RunVnodeInit(int argc, char** argv) {
  Init init;
  return init.Run(argc, argv);
}

}  // namespace gridemu::agent::vnode_init

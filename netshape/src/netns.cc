#include "gridemu/netshape/netns.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>

#include "internal.h"

extern char** environ;

namespace gridemu::netshape {

Status ErrnoStatus(int err, const std::string& what) {
  std::string msg = what + ": " + strerror(err);
  switch (err) {
    case ENOENT:
    case ENODEV:
    case ESRCH:
    case ENXIO:
      return NotFoundError(msg);
    case EEXIST:
      return AlreadyExistsError(msg);
    case EPERM:
    case EACCES:
      return PermissionDeniedError(msg);
    case EOPNOTSUPP:
      return UnimplementedError(msg);
    case EINVAL:
    case ERANGE:
      return InvalidArgumentError(msg);
    case EBUSY:
    case EAGAIN:
    case ENOBUFS:
      return UnavailableError(msg);
    default:
      return InternalError(msg);
  }
}

namespace {

const char* const kSelfNetns = "/proc/thread-self/ns/net";

// Opens a namespace file and checks that it is one.
Result<UniqueFd> OpenNetnsFile(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return ErrnoStatus(errno, "network namespace " + path);
  struct statfs sfs;
  if (fstatfs(fd.get(), &sfs) != 0 || sfs.f_type != NSFS_MAGIC) {
    return InvalidArgumentError("network namespace " + path + ": not a namespace file");
  }
  return fd;
}

}  // namespace

std::string NetnsRef::Key() const {
  if (fd >= 0) return "fd:" + std::to_string(fd);
  if (!path.empty()) return path;
  return "home";
}

std::string NetnsRef::ToString() const {
  if (fd >= 0) return "fd " + std::to_string(fd);
  if (!path.empty()) return path;
  return "the home namespace";
}

Result<int> OpenNetns(const NetnsRef& ns) {
  int fd = -1;
  if (ns.fd >= 0) {
    fd = ::fcntl(ns.fd, F_DUPFD_CLOEXEC, 0);
  } else {
    fd = ::open(ns.is_home() ? kSelfNetns : ns.path.c_str(), O_RDONLY | O_CLOEXEC);
  }
  if (fd >= 0) return fd;
  const int e = errno;
  std::string what = "cannot open network namespace " + ns.ToString() + ": " + strerror(e);
  if (e == ENOENT) return NotFoundError(what);
  if (e == EACCES || e == EPERM) return PermissionDeniedError(what);
  if (e == EBADF) return InvalidArgumentError(what);
  return InternalError(what);
}

Result<ScopedNetns> ScopedNetns::Enter(int ns_fd) {
  const int saved = ::open(kSelfNetns, O_RDONLY | O_CLOEXEC);
  if (saved < 0) {
    return InternalError(std::string("cannot open the current network namespace (") + kSelfNetns +
                         "): " + strerror(errno));
  }
  if (::setns(ns_fd, CLONE_NEWNET) != 0) {
    const int e = errno;
    ::close(saved);
    std::string what = std::string("setns into a network namespace failed: ") + strerror(e);
    if (e == EPERM) return PermissionDeniedError(what + " (needs CAP_SYS_ADMIN)");
    if (e == EINVAL || e == EBADF) {
      return InvalidArgumentError(what + " (not a network namespace descriptor)");
    }
    return InternalError(what);
  }
  return ScopedNetns(saved);
}

ScopedNetns::ScopedNetns(ScopedNetns&& other) noexcept : saved_fd_(other.saved_fd_) {
  other.saved_fd_ = -1;
}

ScopedNetns::~ScopedNetns() {
  if (saved_fd_ < 0) return;
  if (::setns(saved_fd_, CLONE_NEWNET) != 0) {
    // Going on would run this thread's later work in the wrong namespace.
    std::fprintf(stderr, "gridemu: fatal: cannot return to the original network namespace: %s\n",
                 strerror(errno));
    std::abort();
  }
  ::close(saved_fd_);
}

Result<NetnsId> GetNetnsId(const std::string& path) {
  const std::string p = path.empty() ? kSelfNetns : path;
  struct stat st;
  if (::stat(p.c_str(), &st) != 0) return ErrnoStatus(errno, "network namespace " + p);
  struct statfs sfs;
  if (::statfs(p.c_str(), &sfs) != 0 || sfs.f_type != NSFS_MAGIC) {
    return InvalidArgumentError("network namespace " + p + ": not a namespace file");
  }
  return NetnsId{static_cast<uint64_t>(st.st_dev), static_cast<uint64_t>(st.st_ino)};
}

Status RunInNetns(const std::string& path, const std::function<Status()>& fn) {
  if (path.empty()) return fn();
  GRIDEMU_ASSIGN_OR_RETURN(UniqueFd target, OpenNetnsFile(path));
  Result<ScopedNetns> in = ScopedNetns::Enter(target.get());
  if (!in.ok()) return in.status().WithContext("entering network namespace " + path);
  return fn();
}

Result<std::string> FindProgram(const std::string& name) {
  if (name.find('/') != std::string::npos) {
    if (::access(name.c_str(), X_OK) == 0) return name;
    return NotFoundError(name + ": not found");
  }
  std::string path = getenv("PATH") ? getenv("PATH") : "";
  path += ":/usr/sbin:/sbin:/usr/bin:/bin";
  size_t start = 0;
  while (start <= path.size()) {
    size_t end = path.find(':', start);
    if (end == std::string::npos) end = path.size();
    std::string dir = path.substr(start, end - start);
    if (!dir.empty()) {
      std::string full = dir + "/" + name;
      if (::access(full.c_str(), X_OK) == 0) return full;
    }
    start = end + 1;
  }
  return NotFoundError(name + ": not found in PATH, /usr/sbin or /sbin");
}

Result<ProcessResult> RunProcess(const std::string& netns_path,
                                 const std::vector<std::string>& argv, const std::string& input) {
  if (argv.empty()) return InvalidArgumentError("RunProcess: empty argv");
  GRIDEMU_ASSIGN_OR_RETURN(std::string prog, FindProgram(argv[0]));
  int in[2], out[2], err[2];
  if (pipe2(in, O_CLOEXEC) != 0) return ErrnoStatus(errno, "pipe");
  if (pipe2(out, O_CLOEXEC) != 0) {
    close(in[0]);
    close(in[1]);
    return ErrnoStatus(errno, "pipe");
  }
  if (pipe2(err, O_CLOEXEC) != 0) {
    for (int fd : {in[0], in[1], out[0], out[1]}) close(fd);
    return ErrnoStatus(errno, "pipe");
  }
  UniqueFd in_w(in[1]), out_r(out[0]), err_r(err[0]);
  UniqueFd in_r(in[0]), out_w(out[1]), err_w(err[1]);

  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, in_r.get(), 0);
  posix_spawn_file_actions_adddup2(&fa, out_w.get(), 1);
  posix_spawn_file_actions_adddup2(&fa, err_w.get(), 2);
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = -1;
  // posix_spawn clones the calling thread, so the child starts in the namespace this
  // thread is in while inside RunInNetns.
  Status st = RunInNetns(netns_path, [&]() -> Status {
    int rc = posix_spawn(&pid, prog.c_str(), &fa, nullptr, args.data(), environ);
    if (rc != 0) return ErrnoStatus(rc, "spawning " + prog);
    return Status::Ok();
  });
  posix_spawn_file_actions_destroy(&fa);
  if (!st.ok()) return st;
  in_r.reset();
  out_w.reset();
  err_w.reset();

  ProcessResult res;
  size_t written = 0;
  if (input.empty()) in_w.reset();
  // Feed stdin and drain stdout/stderr together so that neither side blocks. SIGPIPE
  // (a child that exits without reading its input) is blocked on this thread and
  // discarded afterwards, so the process's disposition is left alone.
  sigset_t pipe_set, old_set;
  sigemptyset(&pipe_set);
  sigaddset(&pipe_set, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &pipe_set, &old_set);
  while (out_r.valid() || err_r.valid()) {
    struct pollfd pfd[3];
    int n = 0;
    int idx_in = -1, idx_out = -1, idx_err = -1;
    if (in_w.valid()) {
      pfd[n] = {in_w.get(), POLLOUT, 0};
      idx_in = n++;
    }
    if (out_r.valid()) {
      pfd[n] = {out_r.get(), POLLIN, 0};
      idx_out = n++;
    }
    if (err_r.valid()) {
      pfd[n] = {err_r.get(), POLLIN, 0};
      idx_err = n++;
    }
    if (poll(pfd, n, -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    if (idx_in >= 0 && pfd[idx_in].revents) {
      ssize_t w = write(in_w.get(), input.data() + written, input.size() - written);
      if (w > 0) written += w;
      if (w < 0 || written == input.size()) in_w.reset();
    }
    auto drain = [](UniqueFd& fd, std::string& dst) {
      char buf[4096];
      ssize_t r = read(fd.get(), buf, sizeof buf);
      if (r > 0) {
        dst.append(buf, r);
      } else if (r == 0 || errno != EINTR) {
        fd.reset();
      }
    };
    if (idx_out >= 0 && pfd[idx_out].revents) drain(out_r, res.out);
    if (idx_err >= 0 && pfd[idx_err].revents) drain(err_r, res.err);
  }
  in_w.reset();
  struct timespec zero = {0, 0};
  while (sigtimedwait(&pipe_set, nullptr, &zero) > 0) {
  }
  pthread_sigmask(SIG_SETMASK, &old_set, nullptr);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) return ErrnoStatus(errno, "waitpid");
  }
  res.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return res;
}

}  // namespace gridemu::netshape

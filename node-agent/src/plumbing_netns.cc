// Network namespace references and the ScopedNetns guard (plumbing_netns.h).
#include "gridemu/agent/plumbing_netns.h"

#include <fcntl.h>
#include <sched.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace gridemu::agent {
namespace {

constexpr const char* kThreadNetns = "/proc/thread-self/ns/net";

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
    fd = fcntl(ns.fd, F_DUPFD_CLOEXEC, 0);
  } else {
    fd = open(ns.is_home() ? kThreadNetns : ns.path.c_str(), O_RDONLY | O_CLOEXEC);
  }
  if (fd >= 0) return fd;
  int e = errno;
  std::string what = "cannot open network namespace " + ns.ToString() + ": " + std::strerror(e);
  if (e == ENOENT) return NotFoundError(what);
  if (e == EACCES || e == EPERM) return PermissionDeniedError(what);
  if (e == EBADF) return InvalidArgumentError(what);
  return InternalError(what);
}

Result<ScopedNetns> ScopedNetns::Enter(int ns_fd) {
  int saved = open(kThreadNetns, O_RDONLY | O_CLOEXEC);
  if (saved < 0) {
    return InternalError(std::string("cannot open the current network namespace (") + kThreadNetns +
                         "): " + std::strerror(errno));
  }
  if (setns(ns_fd, CLONE_NEWNET) != 0) {
    int e = errno;
    close(saved);
    std::string what = std::string("setns into a network namespace failed: ") + std::strerror(e);
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
  if (setns(saved_fd_, CLONE_NEWNET) != 0) {
    // Going on would run this thread's later work in the wrong namespace.
    std::fprintf(stderr, "gridemu: fatal: cannot return to the original network namespace: %s\n",
                 std::strerror(errno));
    std::abort();
  }
  close(saved_fd_);
}

}  // namespace gridemu::agent

// Network namespace references and a guard that moves the calling thread into
// a namespace and always moves it back (DESIGN.md §6). Used by the link
// plumbing (plumbing.h) to open one netlink socket per namespace.
#pragma once

#include <string>

#include "gridemu/common/status.h"

namespace gridemu::agent {

/// Names a network namespace: either a path to an nsfs file
/// (`/run/netns/NAME`, `/proc/PID/ns/net`) or an open file descriptor of one,
/// which stays owned by the caller. A default-constructed NetnsRef (no path,
/// fd -1) means "the home namespace": the one the thread using the plumbing
/// was in when the Plumbing object was created. Plain value type.
struct NetnsRef {
  std::string path;  ///< nsfs path; used when fd < 0
  int fd = -1;       ///< borrowed descriptor; takes precedence over `path`

  /// The namespace at `path`, e.g. "/run/netns/vnode-1".
  static NetnsRef AtPath(std::string path) { return NetnsRef{std::move(path), -1}; }
  /// The namespace of an open descriptor (borrowed: the caller keeps it open
  /// for as long as the reference is used).
  static NetnsRef FromFd(int fd) { return NetnsRef{{}, fd}; }
  /// The home namespace.
  static NetnsRef Home() { return NetnsRef{}; }

  bool is_home() const { return fd < 0 && path.empty(); }
  /// A key that is equal for equal references: "fd:N", the path, or "home".
  std::string Key() const;
  /// For messages: the path, "fd N" or "the home namespace".
  std::string ToString() const;
};

/// RAII guard: while alive, the calling thread is in another network
/// namespace; the destructor moves it back to the namespace it was in. If
/// moving back fails (which only happens if the kernel refuses a setns() into
/// a namespace the thread was just in), the process aborts with a message
/// rather than let the thread go on in the wrong namespace. Must be destroyed
/// on the thread that created it. Movable, not copyable.
class ScopedNetns {
 public:
  /// Moves the calling thread into the namespace of `ns_fd` (an nsfs
  /// descriptor, borrowed). Errors: kPermissionDenied without CAP_SYS_ADMIN,
  /// kInvalidArgument if `ns_fd` is not a network namespace, kInternal when the
  /// current namespace cannot be opened.
  static Result<ScopedNetns> Enter(int ns_fd);

  ScopedNetns(ScopedNetns&& other) noexcept;
  ScopedNetns& operator=(ScopedNetns&& other) = delete;
  ScopedNetns(const ScopedNetns&) = delete;
  ScopedNetns& operator=(const ScopedNetns&) = delete;
  ~ScopedNetns();

 private:
  explicit ScopedNetns(int saved_fd) : saved_fd_(saved_fd) {}
  int saved_fd_ = -1;  ///< the namespace to return to; -1 once moved from
};

/// Opens the namespace named by `ns` (O_RDONLY | O_CLOEXEC) and returns the new
/// descriptor, which the caller closes. For a fd reference, returns a dup().
/// For the home reference, opens the calling thread's current namespace.
/// Errors: kNotFound when the path does not exist, kPermissionDenied,
/// kInternal otherwise; the message names the namespace.
Result<int> OpenNetns(const NetnsRef& ns);

}  // namespace gridemu::agent

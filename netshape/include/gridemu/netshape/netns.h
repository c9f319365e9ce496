// Network namespaces, named and entered safely: the one namespace abstraction
// of gridemu (netshape's shaping and node-agent's plumbing both use it).
//
// A namespace is named by a NetnsRef: a path to a namespace file
// ("/run/netns/NAME" as made by `ip netns add`, "/proc/PID/ns/net", or any
// bind mount of one), a borrowed descriptor of one, or "home" (the calling
// thread's current namespace). Netlink, NFQUEUE and raw sockets belong to the
// namespace they were created in, so callers enter a namespace only to create
// sockets (and to spawn helper processes), then return: ScopedNetns and
// RunInNetns never leave a thread in a namespace it did not start in.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "gridemu/common/status.h"

namespace gridemu::netshape {

/// Names a network namespace: either a path to an nsfs file
/// (`/run/netns/NAME`, `/proc/PID/ns/net`) or an open file descriptor of one,
/// which stays owned by the caller. A default-constructed NetnsRef (no path,
/// fd -1) means "the home namespace": for plumbing, the one the thread was in
/// when the Plumbing object was created; for OpenNetns and RunInNetns, the
/// calling thread's current one. Plain value type.
struct NetnsRef {
  std::string path;  ///< nsfs path; used when fd < 0
  int fd = -1;       ///< borrowed descriptor; takes precedence over `path`

  /// The namespace at `path`, e.g. "/run/netns/vnode-1" ("" = home).
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

/// Opens the namespace named by `ns` (O_RDONLY | O_CLOEXEC) and returns the new
/// descriptor, which the caller closes. For a fd reference, returns a dup().
/// For the home reference, opens the calling thread's current namespace.
/// Errors: kNotFound when the path does not exist, kPermissionDenied,
/// kInvalidArgument for a bad descriptor, kInternal otherwise; the message
/// names the namespace.
Result<int> OpenNetns(const NetnsRef& ns);

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

/// Identity of a network namespace (device and inode of its nsfs file): two paths name
/// the same namespace iff their ids are equal.
struct NetnsId {
  uint64_t dev = 0;
  uint64_t ino = 0;
  friend auto operator<=>(const NetnsId&, const NetnsId&) = default;
};

/// The id of the namespace at `path` ("" = the calling thread's).
/// Errors: kNotFound if the path does not exist, kInvalidArgument if it is not a
/// network-namespace file.
Result<NetnsId> GetNetnsId(const std::string& path);

/// Runs `fn` on the calling thread inside the namespace at `path` ("" = no switch), then
/// switches the thread back (a ScopedNetns). Returns fn's status. Errors before fn runs:
/// kNotFound (no such path), kPermissionDenied (no CAP_SYS_ADMIN), kInvalidArgument (not
/// a network-namespace file). If the thread cannot be switched back the process aborts,
/// because every later socket it opened would land in the wrong namespace. Thread-safe
/// (affects the calling thread only).
Status RunInNetns(const std::string& path, const std::function<Status()>& fn);

}  // namespace gridemu::netshape

// Entering network namespaces safely. A namespace is named by a path to a namespace file
// ("/var/run/netns/NAME" as made by `ip netns add`, "/proc/PID/ns/net", or any bind
// mount of one); the empty path means "the calling thread's current namespace".
//
// Netlink, NFQUEUE and raw sockets belong to the namespace they were created in, so
// netshape enters a namespace only to create sockets (and to spawn iptables-restore),
// then returns: no thread is ever left in a namespace it did not start in.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "gridemu/common/status.h"

namespace gridemu::netshape {

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
/// switches the thread back (setns(2) on a saved descriptor of its previous namespace).
/// Returns fn's status. Errors before fn runs: kNotFound (no such path), kPermissionDenied
/// (no CAP_SYS_ADMIN), kInvalidArgument (not a network namespace). If the thread cannot
/// be switched back the process aborts, because every later socket it opened would land
/// in the wrong namespace. Thread-safe (affects the calling thread only).
Status RunInNetns(const std::string& path, const std::function<Status()>& fn);

}  // namespace gridemu::netshape

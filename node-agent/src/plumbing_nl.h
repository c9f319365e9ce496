// Private helpers shared by the netlink plumbing (plumbing.cc) and the VXLAN
// plumbing (plumbing_vxlan.cc): an owned file descriptor and the mapping of
// libnl errors to Status.
#pragma once

#include <unistd.h>

#include <string>
#include <utility>

#include "gridemu/common/status.h"

namespace gridemu::agent::internal {

/// An owned file descriptor (closed on destruction). Move-only.
class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  Fd(Fd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  Fd& operator=(Fd&& o) noexcept {
    if (this != &o) {
      Reset();
      fd_ = std::exchange(o.fd_, -1);
    }
    return *this;
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() { Reset(); }
  int get() const { return fd_; }
  void Reset() {
    if (fd_ >= 0) close(fd_);
    fd_ = -1;
  }

 private:
  int fd_ = -1;
};

/// Maps a libnl error (an NLE_* code, either sign) to a Status whose message
/// is "<what>: <libnl's text>": kAlreadyExists, kNotFound, kPermissionDenied,
/// kInvalidArgument, kUnimplemented, kResourceExhausted, kUnavailable or kInternal.
Status NlStatus(int err, const std::string& what);

}  // namespace gridemu::agent::internal

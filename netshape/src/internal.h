// Private helpers shared by netshape's sources.
#pragma once

#include <unistd.h>

#include <string>
#include <utility>
#include <vector>

#include "gridemu/common/link_profile.h"
#include "gridemu/common/status.h"

namespace gridemu::netshape {

/// Owns a file descriptor.
class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  UniqueFd(UniqueFd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  UniqueFd& operator=(UniqueFd&& o) noexcept {
    if (this != &o) {
      reset();
      fd_ = std::exchange(o.fd_, -1);
    }
    return *this;
  }
  ~UniqueFd() { reset(); }
  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  int release() { return std::exchange(fd_, -1); }
  void reset(int fd = -1) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
  }

 private:
  int fd_ = -1;
};

/// A Status for an errno value: ENOENT/ENODEV/ESRCH -> kNotFound, EEXIST -> kAlreadyExists,
/// EPERM/EACCES -> kPermissionDenied, EOPNOTSUPP -> kUnimplemented, EINVAL/ERANGE ->
/// kInvalidArgument, EBUSY/EAGAIN/ENOBUFS -> kUnavailable, else kInternal.
/// Message: "<what>: <strerror>".
Status ErrnoStatus(int err, const std::string& what);

/// The impairment fields of a profile, in LinkProfile order, with experiment-file names.
std::vector<std::pair<const char*, bool>> ImpairmentFieldsOf(const LinkProfile& p);

/// Result of a child process.
struct ProcessResult {
  int exit_code = -1;  ///< exit status, or 128 + signal
  std::string out;
  std::string err;
};

/// Runs `argv` (argv[0] is looked up in PATH, then /usr/sbin and /sbin) inside the
/// network namespace at `netns_path` ("" = the calling thread's), feeding `input` on its
/// stdin and collecting stdout and stderr. The child is spawned from the calling thread
/// while it is inside the namespace (so it inherits it), and waited for.
/// Errors: kNotFound if the program is missing; namespace errors (RunInNetns).
Result<ProcessResult> RunProcess(const std::string& netns_path,
                                 const std::vector<std::string>& argv, const std::string& input);

/// Full path of a program: PATH, then /usr/sbin, /sbin. kNotFound if absent.
Result<std::string> FindProgram(const std::string& name);

}  // namespace gridemu::netshape

// Small OS helpers shared by the runtime, cgroup and init code (private to
// node-agent). Every function is thread-safe and returns a Status whose
// message names the path and the errno text.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "gridemu/common/clock.h"
#include "gridemu/common/files.h"
#include "gridemu/common/status.h"

namespace gridemu::agent::internal {

// Written once in common/ (files.h, clock.h) for every module.
using ::gridemu::ErrnoStatus;
using ::gridemu::MakeDirs;
using ::gridemu::ReadWholeFile;
using ::gridemu::WriteFileAtomic;

/// Closes fd on destruction. Move-only.
class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  UniqueFd(UniqueFd&& o) noexcept : fd_(o.release()) {}
  UniqueFd& operator=(UniqueFd&& o) noexcept;
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  ~UniqueFd() { reset(); }
  int get() const { return fd_; }
  int release() {
    int f = fd_;
    fd_ = -1;
    return f;
  }
  void reset(int fd = -1);
  bool valid() const { return fd_ >= 0; }

 private:
  int fd_ = -1;
};

/// Writes `data` to path with one write(2) (O_WRONLY|O_CLOEXEC, no create,
/// no truncate): the way kernel interface files (cgroupfs, procfs) want it.
Status WriteKernelFile(const std::string& path, std::string_view data);
/// Creates path (which must not exist: O_EXCL, mode 0644) with `data`: for
/// files in a directory nobody reads yet. Errors: kAlreadyExists, ErrnoStatus.
Status WriteNewFile(const std::string& path, std::string_view data);
/// rm -rf of a directory tree on one filesystem; never follows symlinks and
/// never crosses into mounts (a mounted subdirectory is an error).
/// Missing path is ok.
Status RemoveTree(const std::string& path);
/// Names in a directory (no "." or ".."); missing dir -> empty.
Result<std::vector<std::string>> ListDir(const std::string& path, bool dirs_only);
/// True if path exists (lstat).
bool PathExists(const std::string& path);
/// Binds (listen=true, then listen(2)) or connects a unix socket to `path`.
/// Paths longer than sun_path (108 bytes) go through
/// /proc/self/fd/<dir fd>/<name>. Errors: as ErrnoStatus.
Status UnixSocketAt(int fd, const std::string& path, bool listen);

}  // namespace gridemu::agent::internal

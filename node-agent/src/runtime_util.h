// Small OS helpers shared by the runtime, cgroup and init code (private to
// node-agent). Every function is thread-safe and returns a Status whose
// message names the path and the errno text.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "gridemu/common/status.h"

namespace gridemu::agent::internal {

/// "what: path: strerror(err)" with a code chosen from errno (ENOENT ->
/// kNotFound, EEXIST -> kAlreadyExists, EPERM/EACCES -> kPermissionDenied,
/// ENOMEM/ENOSPC/EAGAIN -> kResourceExhausted, else kInternal).
Status ErrnoStatus(int err, std::string_view what, std::string_view path = {});

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

/// Reads a whole file (up to `limit` bytes). Errors: as ErrnoStatus.
Result<std::string> ReadWholeFile(const std::string& path, size_t limit = 16 << 20);
/// Writes `data` to path with one write(2) (O_WRONLY|O_CLOEXEC, no create,
/// no truncate): the way kernel interface files (cgroupfs, procfs) want it.
Status WriteKernelFile(const std::string& path, std::string_view data);
/// Creates/truncates path with `data` (mode 0644), via a temporary file and
/// rename so that readers never see a partial file.
Status WriteFileAtomic(const std::string& path, std::string_view data);
/// Creates path (which must not exist: O_EXCL, mode 0644) with `data`: for
/// files in a directory nobody reads yet. Errors: kAlreadyExists, ErrnoStatus.
Status WriteNewFile(const std::string& path, std::string_view data);
/// mkdir -p with mode 0755. Existing directories are fine.
Status MakeDirs(const std::string& path);
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

/// CLOCK_REALTIME / CLOCK_MONOTONIC in nanoseconds.
int64_t WallNowNs();
int64_t MonoNowNs();

}  // namespace gridemu::agent::internal

#include "gridemu/common/files.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>

namespace gridemu {

Status ErrnoStatus(int err, std::string_view what, std::string_view path) {
  std::string msg(what);
  if (!path.empty()) {
    msg += ": ";
    msg += path;
  }
  msg += ": ";
  msg += std::strerror(err);
  StatusCode code = StatusCode::kInternal;
  switch (err) {
    case ENOENT:
      code = StatusCode::kNotFound;
      break;
    case EEXIST:
      code = StatusCode::kAlreadyExists;
      break;
    case EPERM:
    case EACCES:
      code = StatusCode::kPermissionDenied;
      break;
    case ENOMEM:
    case ENOSPC:
    case EAGAIN:
    case EMFILE:
    case ENFILE:
      code = StatusCode::kResourceExhausted;
      break;
    default:
      break;
  }
  return Status(code, std::move(msg));
}

Status MakeDirs(const std::string& path) {
  if (path.empty()) return InvalidArgumentError("MakeDirs: empty path");
  // Retried: another process may remove an empty parent (e.g. the state root
  // when its last experiment goes) between our two mkdirs.
  for (int attempt = 0; attempt < 8; ++attempt) {
    if (::mkdir(path.c_str(), 0755) == 0 || errno == EEXIST) return Status::Ok();
    if (errno != ENOENT) return ErrnoStatus(errno, "mkdir", path);
    const size_t slash = path.find_last_of('/');
    if (slash == std::string::npos || slash == 0) return ErrnoStatus(ENOENT, "mkdir", path);
    GRIDEMU_RETURN_IF_ERROR(MakeDirs(path.substr(0, slash)));
  }
  return ErrnoStatus(ENOENT, "mkdir (parent keeps vanishing)", path);
}

Status WriteFileAtomic(const std::string& path, std::string_view data, bool sync) {
  static std::atomic<unsigned> counter{0};
  const std::string tmp = path + ".tmp" + std::to_string(::getpid()) + "." +
                          std::to_string(counter.fetch_add(1, std::memory_order_relaxed));
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return ErrnoStatus(errno, "create", tmp);
  auto fail = [&](int err, std::string_view what, const std::string& where) {
    Status s = ErrnoStatus(err, what, where);
    ::close(fd);
    ::unlink(tmp.c_str());
    return s;
  };
  size_t off = 0;
  while (off < data.size()) {
    const ssize_t n = ::write(fd, data.data() + off, data.size() - off);
    if (n < 0) {
      if (errno == EINTR) continue;
      return fail(errno, "write", tmp);
    }
    off += static_cast<size_t>(n);
  }
  if (sync && ::fsync(fd) != 0) return fail(errno, "fsync", tmp);
  if (::close(fd) != 0) {
    Status s = ErrnoStatus(errno, "close", tmp);
    ::unlink(tmp.c_str());
    return s;
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    Status s = ErrnoStatus(errno, "rename to", path);
    ::unlink(tmp.c_str());
    return s;
  }
  return Status::Ok();
}

Result<std::string> ReadWholeFile(const std::string& path, size_t limit) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ErrnoStatus(errno, "open", path);
  std::string out;
  char buf[8192];
  while (out.size() < limit) {
    const ssize_t n = ::read(fd, buf, std::min(sizeof(buf), limit - out.size()));
    if (n < 0) {
      if (errno == EINTR) continue;
      Status s = ErrnoStatus(errno, "read", path);
      ::close(fd);
      return s;
    }
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  return out;
}

}  // namespace gridemu

#include "runtime_util.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace gridemu::agent::internal {


UniqueFd& UniqueFd::operator=(UniqueFd&& o) noexcept {
  if (this != &o) reset(o.release());
  return *this;
}

void UniqueFd::reset(int fd) {
  if (fd_ >= 0) ::close(fd_);
  fd_ = fd;
}


Status WriteKernelFile(const std::string& path, std::string_view data) {
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
  if (!fd.valid()) return ErrnoStatus(errno, "open", path);
  ssize_t n;
  do {
    n = ::write(fd.get(), data.data(), data.size());
  } while (n < 0 && errno == EINTR);
  if (n < 0) return ErrnoStatus(errno, "write '" + std::string(data) + "' to", path);
  return Status::Ok();
}


Status WriteNewFile(const std::string& path, std::string_view data) {
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644));
  if (!fd.valid()) return ErrnoStatus(errno, "create", path);
  size_t off = 0;
  while (off < data.size()) {
    ssize_t n = ::write(fd.get(), data.data() + off, data.size() - off);
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoStatus(errno, "write", path);
    }
    off += static_cast<size_t>(n);
  }
  return Status::Ok();
}


namespace {

Status RemoveTreeAt(int parent, const char* name, const std::string& path, dev_t dev) {
  struct stat st;
  if (::fstatat(parent, name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
    if (errno == ENOENT) return Status::Ok();
    return ErrnoStatus(errno, "stat", path);
  }
  if (!S_ISDIR(st.st_mode)) {
    if (::unlinkat(parent, name, 0) != 0 && errno != ENOENT) {
      return ErrnoStatus(errno, "unlink", path);
    }
    return Status::Ok();
  }
  if (st.st_dev != dev) return FailedPreconditionError("refusing to remove mount point " + path);
  int fd = ::openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return ErrnoStatus(errno, "open", path);
  DIR* d = ::fdopendir(fd);
  if (d == nullptr) {
    ::close(fd);
    return ErrnoStatus(errno, "fdopendir", path);
  }
  Status result;
  while (struct dirent* e = ::readdir(d)) {
    if (std::strcmp(e->d_name, ".") == 0 || std::strcmp(e->d_name, "..") == 0) continue;
    Status s = RemoveTreeAt(::dirfd(d), e->d_name, path + "/" + e->d_name, dev);
    if (!s.ok() && result.ok()) result = s;
  }
  ::closedir(d);
  if (!result.ok()) return result;
  if (::unlinkat(parent, name, AT_REMOVEDIR) != 0 && errno != ENOENT) {
    return ErrnoStatus(errno, "rmdir", path);
  }
  return Status::Ok();
}

}  // namespace

Status RemoveTree(const std::string& path) {
  struct stat st;
  if (::lstat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return Status::Ok();
    return ErrnoStatus(errno, "stat", path);
  }
  return RemoveTreeAt(AT_FDCWD, path.c_str(), path, st.st_dev);
}

Result<std::vector<std::string>> ListDir(const std::string& path, bool dirs_only) {
  std::vector<std::string> out;
  DIR* d = ::opendir(path.c_str());
  if (d == nullptr) {
    if (errno == ENOENT || errno == ENOTDIR) return out;
    return ErrnoStatus(errno, "opendir", path);
  }
  while (struct dirent* e = ::readdir(d)) {
    if (std::strcmp(e->d_name, ".") == 0 || std::strcmp(e->d_name, "..") == 0) continue;
    if (dirs_only) {
      bool is_dir = e->d_type == DT_DIR;
      if (e->d_type == DT_UNKNOWN) {
        struct stat st;
        is_dir =
            ::fstatat(::dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode);
      }
      if (!is_dir) continue;
    }
    out.emplace_back(e->d_name);
  }
  ::closedir(d);
  return out;
}

Status UnixSocketAt(int fd, const std::string& path, bool listen) {
  struct sockaddr_un addr = {};
  addr.sun_family = AF_UNIX;
  UniqueFd dir;
  std::string target = path;
  if (path.size() >= sizeof(addr.sun_path)) {
    size_t slash = path.find_last_of('/');
    if (slash == std::string::npos) return InvalidArgumentError("socket path too long: " + path);
    dir.reset(::open(path.substr(0, slash).c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
    if (!dir.valid()) return ErrnoStatus(errno, "open", path.substr(0, slash));
    target = "/proc/self/fd/" + std::to_string(dir.get()) + path.substr(slash);
    if (target.size() >= sizeof(addr.sun_path)) {
      return InvalidArgumentError("socket name too long: " + path);
    }
  }
  std::memcpy(addr.sun_path, target.data(), target.size());
  auto* sa = reinterpret_cast<struct sockaddr*>(&addr);
  if (listen) {
    ::unlink(path.c_str());
    if (::bind(fd, sa, sizeof(addr)) != 0) return ErrnoStatus(errno, "bind", path);
    if (::listen(fd, 4) != 0) return ErrnoStatus(errno, "listen", path);
  } else if (::connect(fd, sa, sizeof(addr)) != 0) {
    return ErrnoStatus(errno, "connect", path);
  }
  return Status::Ok();
}

bool PathExists(const std::string& path) {
  struct stat st;
  return ::lstat(path.c_str(), &st) == 0;
}



}  // namespace gridemu::agent::internal

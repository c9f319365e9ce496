// Small file-system helpers written once for every module: errno as a
// Status, mkdir -p, and an atomic whole-file write. Thread-safe (they touch
// only the paths given); async-signal-unsafe (they allocate).
#pragma once

#include <string>
#include <string_view>

#include "gridemu/common/status.h"

namespace gridemu {

/// A Status for a failed system call: message "what: path: strerror(err)"
/// ("what: strerror(err)" without a path); code from errno: ENOENT ->
/// kNotFound, EEXIST -> kAlreadyExists, EPERM/EACCES -> kPermissionDenied,
/// ENOMEM/ENOSPC/EAGAIN/EMFILE/ENFILE -> kResourceExhausted, else kInternal.
Status ErrnoStatus(int err, std::string_view what, std::string_view path = {});

/// mkdir -p with mode 0755: creates `path` and its missing parents; existing
/// directories are fine. A parent that another process removes meanwhile is
/// created again (up to 8 tries). Errors: kInvalidArgument for an empty path,
/// else ErrnoStatus of the mkdir(2) that failed (kPermissionDenied, or
/// kInternal for ENOTDIR when a component is a file).
Status MakeDirs(const std::string& path);

/// Replaces `path` with `data` (mode 0644) so that a reader sees either the
/// old or the new contents, never a partial file: writes a temporary file
/// "<path>.tmp<pid>.<n>" in the same directory, then rename(2)s it over
/// `path`. With `sync`, the data is fsync(2)ed before the rename (durable
/// across a power loss, at the cost of a disk flush). The temporary file is
/// removed on every error. Errors: ErrnoStatus of the failing call.
Status WriteFileAtomic(const std::string& path, std::string_view data, bool sync = false);

/// The whole contents of a file, up to `limit` bytes (more are not read).
/// Errors: ErrnoStatus (kNotFound when it does not exist).
Result<std::string> ReadWholeFile(const std::string& path, size_t limit = 16 << 20);

}  // namespace gridemu

// Shard records in a directory. See shard_records.h.
#include "gridemu/node-agent/shard_records.h"

#include <dirent.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <set>
#include <sstream>

#include "gridemu/common/files.h"
#include "gridemu/node-agent/runtime.h"

namespace gridemu::agent {
namespace {

constexpr const char* kExtensions[] = {".shard", ".phase"};

class FileShardRecords final : public ShardRecords {
 public:
  explicit FileShardRecords(std::string dir) : dir_(std::move(dir)) {}

  Status WriteShard(const v1::DeployShard& shard) override {
    if (dir_.empty()) return Status::Ok();
    GRIDEMU_RETURN_IF_ERROR(MakeDirs(dir_));
    std::string bytes;
    if (!shard.SerializeToString(&bytes)) return InternalError("cannot serialise the shard");
    return WriteFileAtomic(Base(shard.experiment_id()) + ".shard", bytes);
  }

  Status WritePhase(const std::string& experiment, const ShardPhase& phase) override {
    if (dir_.empty()) return Status::Ok();
    GRIDEMU_RETURN_IF_ERROR(MakeDirs(dir_));
    return WriteFileAtomic(Base(experiment) + ".phase",
                           phase.phase + " " + std::to_string(phase.generation) + "\n");
  }

  Result<ShardPhase> ReadPhase(const std::string& experiment) const override {
    if (dir_.empty()) return NotFoundError("no shard records are kept");
    GRIDEMU_ASSIGN_OR_RETURN(std::string text, ReadWholeFile(Base(experiment) + ".phase"));
    std::istringstream in(text);
    ShardPhase p;
    if (!(in >> p.phase >> p.generation) || (p.phase != "deploying" && p.phase != "ready")) {
      return FailedPreconditionError("the phase record of " + experiment + " is unreadable");
    }
    return p;
  }

  Result<v1::DeployShard> ReadShard(const std::string& experiment) const override {
    if (dir_.empty()) return NotFoundError("no shard records are kept");
    GRIDEMU_ASSIGN_OR_RETURN(std::string bytes, ReadWholeFile(Base(experiment) + ".shard", 1 << 30));
    v1::DeployShard shard;
    if (!shard.ParseFromString(bytes) || shard.experiment_id() != experiment) {
      return FailedPreconditionError("the shard record of " + experiment + " is unreadable");
    }
    return shard;
  }

  Status Remove(const std::string& experiment) override {
    if (dir_.empty()) return Status::Ok();
    Status first;
    for (const std::string& f : Files(experiment)) {
      if (::unlink(f.c_str()) != 0 && errno != ENOENT && first.ok()) {
        first = ErrnoStatus(errno, "unlink", f);
      }
    }
    return first;
  }

  Result<std::vector<std::string>> List() const override {
    std::set<std::string> out;
    for (const std::string& f : Files("")) {
      const std::string name = f.substr(dir_.size() + 1);
      out.insert(name.substr(0, name.find('.')));
    }
    return std::vector<std::string>(out.begin(), out.end());
  }

  std::vector<std::string> Describe(const std::string& experiment) const override {
    std::vector<std::string> out;
    for (const std::string& f : Files(experiment)) out.push_back("record " + f);
    return out;
  }

 private:
  std::string Base(const std::string& experiment) const { return dir_ + "/" + experiment; }

  // The record files of `experiment` ("" = every experiment) that exist,
  // half-written ones (".shard.tmp<pid>.<n>") included, sorted.
  std::vector<std::string> Files(const std::string& experiment) const {
    std::vector<std::string> out;
    if (dir_.empty()) return out;
    DIR* d = ::opendir(dir_.c_str());
    if (d == nullptr) return out;
    while (struct dirent* e = ::readdir(d)) {
      const std::string name = e->d_name;
      const size_t dot = name.find('.');
      if (dot == std::string::npos) continue;
      const std::string exp = name.substr(0, dot);
      if (!ValidateExperimentId(exp).ok()) continue;
      if (!experiment.empty() && exp != experiment) continue;
      const std::string ext = name.substr(dot);
      bool ours = false;
      for (const char* x : kExtensions) {
        ours = ours || ext == x || ext.rfind(std::string(x) + ".tmp", 0) == 0;
      }
      if (ours) out.push_back(dir_ + "/" + name);
    }
    ::closedir(d);
    std::sort(out.begin(), out.end());
    return out;
  }

  std::string dir_;
};

}  // namespace

std::unique_ptr<ShardRecords> NewFileShardRecords(const std::string& dir) {
  return std::make_unique<FileShardRecords>(dir);
}

}  // namespace gridemu::agent

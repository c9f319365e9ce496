// Shard records: what an agent writes down before it builds a shard, so that
// an agent restarted after a crash knows what it held and can adopt it
// (DESIGN.md §1: "after a crash it adopts or removes what it finds"). Per
// experiment: the shard as received, and its phase ("deploying" while it is
// built, "ready" once it is complete) with the generation.
//
// The interface lets the ShardApplier's logic be tested without a disk
// (MemoryShardRecords in node-agent/testing). FileShardRecords keeps them in a
// directory: <dir>/<experiment>.shard (the serialized v1::DeployShard) and
// <dir>/<experiment>.phase ("<phase> <generation>\n"), each written atomically
// (common/files.h WriteFileAtomic).
//
// Thread-safety: implementations are thread-safe.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "gridemu/common/status.h"
#include "gridemu/v1/agent.pb.h"

namespace gridemu::agent {

/// The phase a record names.
struct ShardPhase {
  std::string phase;  ///< "deploying" or "ready"
  uint64_t generation = 0;
  bool ready() const { return phase == "ready"; }
};

/// Where shard records are kept. See the file comment.
class ShardRecords {
 public:
  virtual ~ShardRecords() = default;
  /// Records the shard (before anything of it is made). Errors: the store's.
  virtual Status WriteShard(const v1::DeployShard& shard) = 0;
  /// Records the phase of an experiment. Errors: the store's.
  virtual Status WritePhase(const std::string& experiment, const ShardPhase& phase) = 0;
  /// kNotFound when the experiment has no phase record; kFailedPrecondition
  /// when it is unreadable.
  virtual Result<ShardPhase> ReadPhase(const std::string& experiment) const = 0;
  /// kNotFound without a shard record; kFailedPrecondition when it does not parse or
  /// names another experiment.
  virtual Result<v1::DeployShard> ReadShard(const std::string& experiment) const = 0;
  /// Removes both records (and any half-written one). Missing is fine.
  virtual Status Remove(const std::string& experiment) = 0;
  /// Experiments with any record (valid experiment ids only), sorted.
  virtual Result<std::vector<std::string>> List() const = 0;
  /// One line per record file for reports ("record /run/gridemu-agent/e1.shard"),
  /// of `experiment` ("" = all).
  virtual std::vector<std::string> Describe(const std::string& experiment) const = 0;
};

/// Records in `dir` (created on the first write). An empty `dir` keeps no
/// records: writes succeed and do nothing, reads find nothing (an agent that
/// cannot adopt after a restart).
std::unique_ptr<ShardRecords> NewFileShardRecords(const std::string& dir);

}  // namespace gridemu::agent

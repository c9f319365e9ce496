// The shaping a caller needs, as an interface (DESIGN.md §13: the OS behind an
// interface, as LevelDB's Env): shape directions of links, change them, read
// their counters, remove them, and clean up what a crashed process left.
// Shaper (shaper.h) implements it on the kernel; tests substitute a fake
// (node-agent/testing) to check a caller's logic without root.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "gridemu/common/link_profile.h"
#include "gridemu/common/status.h"
#include "gridemu/netshape/capabilities.h"
#include "gridemu/netshape/plan.h"
#include "gridemu/netshape/shape_request.h"

namespace gridemu::netshape {

/// One shaped direction, as a LinkShaper hands it out. Destroying it removes
/// the shaping (errors ignored; Remove() reports them). Must not outlive its
/// LinkShaper. Thread-safe.
class ShapedDirection {
 public:
  virtual ~ShapedDirection() = default;
  /// Changes the named parameters in place: the new profile is
  /// profile().MergedWith(changes). Errors: as LinkShaper::ShapeDirections for
  /// the merged profile (the previous shaping stays); kFailedPrecondition
  /// after Remove().
  virtual Status Change(const LinkProfile& changes) = 0;
  /// Cumulative counters (shape_request.h). Errors: kFailedPrecondition after
  /// Remove(); the backend's.
  virtual Result<Counters> GetCounters() = 0;
  /// Removes everything this direction created. Idempotent.
  virtual Status Remove() = 0;
  /// The profile in force.
  virtual const LinkProfile& profile() const = 0;
};

/// Shapes link directions with one backend. Thread-safe.
class LinkShaper {
 public:
  virtual ~LinkShaper() = default;
  /// The backend in use.
  virtual Backend backend() const = 0;
  /// What the kernel offers (CheckBackendSupports needs it).
  virtual const Capabilities& capabilities() const = 0;
  /// Shapes every request, all or nothing (on error what was made is
  /// removed). Errors: the profile's (kInvalidArgument), the backend's
  /// (kUnimplemented), kInvalidArgument for a bad tag, kNotFound for a missing
  /// namespace or interface, kAlreadyExists when the sender's interface has a
  /// root qdisc already, and kernel errors.
  virtual Result<std::vector<std::unique_ptr<ShapedDirection>>> ShapeDirections(
      const std::vector<ShapeRequest>& requests) = 0;
  /// Removes the directions (each must come from this LinkShaper), batching
  /// where the backend can. Directions already removed are skipped. Returns
  /// the first error but removes all it can.
  virtual Status RemoveDirections(std::vector<std::unique_ptr<ShapedDirection>>& directions) = 0;
  /// Removes the delay-line rules whose comment starts with
  /// "gridemu:<tag_prefix>" in the namespace at `netns_path` (a crashed
  /// process's: they black-hole their links). Returns how many.
  /// Errors: kNotFound (no such namespace), the kernel's.
  virtual Result<int> RemoveLeftoverRules(const std::string& netns_path,
                                          const std::string& tag_prefix) = 0;
  /// Deletes the root qdisc of `ifname` in `netns_path` if it is netshape's.
  /// Returns whether one was deleted. Errors: kNotFound, the kernel's.
  virtual Result<bool> RemoveLeftoverQdisc(const std::string& netns_path,
                                           const std::string& ifname) = 0;
};

}  // namespace gridemu::netshape

// Diagnostics: positioned error messages for user input (experiment files,
// GML, NS2). Validation collects every problem before failing so a user fixes
// a file in one pass (DESIGN.md §3).
#pragma once

#include <string>
#include <vector>

#include "gridemu/common/status.h"

namespace gridemu {

/// A position in a source file. Lines and columns are 1-based; 0 = unknown.
struct SourceLoc {
  std::string file;
  int line = 0;
  int column = 0;

  /// "file:line:column" (or "file" / "file:line" when column/line are unknown).
  std::string ToString() const;
};

/// One error about user input, at a position.
struct Diagnostic {
  SourceLoc loc;
  std::string message;

  /// "file:line:column: message" — the format every gridemu error uses.
  std::string ToString() const;
};

/// An ordered list of diagnostics. Not thread-safe.
class Diagnostics {
 public:
  void Add(SourceLoc loc, std::string message) { items_.push_back({std::move(loc), std::move(message)}); }
  bool empty() const { return items_.empty(); }
  size_t size() const { return items_.size(); }
  const std::vector<Diagnostic>& items() const { return items_; }
  void Append(const Diagnostics& other) { items_.insert(items_.end(), other.items_.begin(), other.items_.end()); }

  /// All diagnostics, one per line, in the order they were added.
  std::string ToString() const;

  /// Ok when empty; otherwise kInvalidArgument carrying ToString().
  Status ToStatus() const;

 private:
  std::vector<Diagnostic> items_;
};

}  // namespace gridemu

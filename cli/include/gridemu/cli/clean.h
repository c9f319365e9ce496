// `gridemu clean [--experiment ID] [--dry-run] [--prefix P]`: removes exactly
// gridemu's objects from this machine (agent/agent_clean.h says how they are
// found) and prints one line per object removed. Needs root.
#pragma once

#include <iosfwd>
#include <string>

namespace gridemu::cli {

struct CleanArgs {
  std::string experiment;  ///< "" = every experiment
  bool dry_run = false;
  std::string prefix = "gridemu";
  std::string state_dir;  ///< agent records; "" = /run/<prefix>-agent
};

/// Returns the exit code: 0 when everything found was removed (or listed, with
/// dry_run), 1 when something could not be removed or on error (on `err`).
int Clean(const CleanArgs& args, std::ostream& out, std::ostream& err);

}  // namespace gridemu::cli

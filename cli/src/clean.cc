#include "gridemu/cli/clean.h"

#include <ostream>

#include "gridemu/node-agent/agent_clean.h"

namespace gridemu::cli {

int Clean(const CleanArgs& args, std::ostream& out, std::ostream& err) {
  agent::CleanOptions opt;
  opt.prefix = args.prefix;
  opt.experiment = args.experiment;
  opt.dry_run = args.dry_run;
  opt.agent_state_dir = args.state_dir;
  Result<agent::CleanReport> rep = agent::CleanLeftovers(opt);
  if (!rep.ok()) {
    err << "gridemu clean: " << rep.status().ToString() << "\n";
    return 1;
  }
  const char* verb = args.dry_run ? "would remove " : "removed ";
  for (const std::string& o : rep->objects) out << verb << o << "\n";
  if (rep->objects.empty()) {
    out << "nothing to clean"
        << (args.experiment.empty() ? std::string() : " for experiment " + args.experiment)
        << " (prefix " << args.prefix << ")\n";
  }
  for (const std::string& e : rep->errors) err << "gridemu clean: could not remove " << e << "\n";
  return rep->errors.empty() ? 0 : 1;
}

}  // namespace gridemu::cli

// `gridemu topo ...`: offline commands on topologies and experiment files
// (validate, stats, render, convert). Each returns the process exit code and
// writes results to `out`, errors to `err`, so tests can run them in-process.
#pragma once

#include <iosfwd>
#include <string>

#include "gridemu/common/status.h"
#include "gridemu/topology/model.h"

namespace gridemu::cli {

/// A topology read from a user's file, with what it was read from.
struct LoadedTopology {
  topology::Topology topo;
  std::string source;   ///< the path
  bool from_gml = false;
  size_t tasks = 0;     ///< experiment files only
  size_t events = 0;    ///< experiment files only
  std::string name;     ///< experiment name, or the GML file's stem
};

/// Reads an experiment file (*.yaml / *.yml) or a GML graph (*.gml; imported
/// as routers named from their labels, delay from geography, LinkSpeed as rate).
/// Errors: kNotFound (unreadable), kInvalidArgument (all diagnostics, one per line).
Result<LoadedTopology> LoadTopologyInput(const std::string& path);

/// `topo validate FILE`: 0 when valid (prints a one-line summary), 1 with
/// every error on `err`.
int TopoValidate(const std::string& path, std::ostream& out, std::ostream& err);

/// `topo stats FILE [--links] [--json]`: vnode and link counts by kind, degree
/// distribution, connected components, hop diameter, link delay and rate
/// summary; `links` adds one row per link (name, delay each way, rate).
int TopoStats(const std::string& path, bool links, bool json, std::ostream& out, std::ostream& err);

/// `topo render FILE --format dot|json`: the graph in Graphviz DOT or JSON
/// ({"vnodes": [...], "links": [...]}). 2 for an unknown format.
int TopoRender(const std::string& path, const std::string& format, std::ostream& out,
               std::ostream& err);

/// `topo paths FILE [--json]`: for every ordered pair of host vnodes (or of
/// all vnodes when there are no hosts), the shortest path by delay and its
/// properties in the direction of travel: one-way delay (sum), rate (min),
/// random loss (1 - prod(1 - p)), hops. Refuses more than 10,000 pairs
/// (exit 2). Unreachable pairs are listed as such.
int TopoPaths(const std::string& path, bool json, std::ostream& out, std::ostream& err);

/// `topo convert IN.gml --to yaml`: an experiment file (name, duration,
/// topology.nodes and topology.links with delay and rate) equivalent to the
/// GML import, which `topo validate` accepts. 2 for an unknown target format.
int TopoConvert(const std::string& path, const std::string& to, std::ostream& out,
                std::ostream& err);

}  // namespace gridemu::cli

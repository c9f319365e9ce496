// Importer for GML graphs (Himsolt, "GML: A portable Graph File Format",
// 1997) as published by the Internet Topology Zoo (Knight et al., IEEE JSAC
// 2011; data CC BY 3.0/4.0 — keep the attribution when shipping files).
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "gridemu/common/diagnostics.h"
#include "gridemu/common/link_profile.h"
#include "gridemu/common/status.h"
#include "gridemu/topology/model.h"

namespace gridemu::topology {

/// One GML node, with the attributes gridemu uses.
struct GmlNode {
  int64_t id = 0;
  std::string label;                ///< "label" (falls back to the id)
  std::optional<double> latitude;   ///< "Latitude", degrees
  std::optional<double> longitude;  ///< "Longitude", degrees
  SourceLoc loc;
};

/// One GML edge. Parallel edges are kept.
struct GmlEdge {
  int64_t source = 0;
  int64_t target = 0;
  std::optional<uint64_t> link_speed_bps;  ///< "LinkSpeedRaw", or "LinkSpeed" x "LinkSpeedUnits"
  SourceLoc loc;
};

/// A parsed GML graph.
struct GmlGraph {
  bool directed = false;
  std::vector<GmlNode> nodes;
  std::vector<GmlEdge> edges;
};

/// Parses GML text. Tolerates every construct of the GML grammar (nested
/// lists, comments '#', unknown keys, string escapes as &quot;). Errors carry
/// file:line:column: unterminated string or list, node without id, duplicate
/// node id, edge to an unknown node id. All errors are collected.
Result<GmlGraph> ParseGml(std::string_view text, std::string_view filename);
/// Reads and parses a file; kNotFound when it cannot be read.
Result<GmlGraph> LoadGml(const std::string& path);

/// How to turn a GML graph into vnodes and links.
struct GmlImportOptions {
  std::string prefix;                 ///< prepended to every vnode name
  VnodeKind kind = VnodeKind::kRouter;
  bool delay_from_geo = false;        ///< delay = great-circle distance / (2/3 c)
  /// Delay when not from geo, or when an end has no coordinates.
  std::chrono::nanoseconds default_delay = std::chrono::milliseconds(1);
  /// Rate when the edge has no LinkSpeed (or always, if use_link_speed is false).
  std::optional<uint64_t> default_rate_bps;
  bool use_link_speed = true;         ///< honour LinkSpeed when present
  LinkProfile extra;                  ///< other profile fields applied to every link (loss, queue, ...)
};

/// Result of an import: what was added and what the user should know.
struct GmlImportReport {
  std::vector<VnodeId> vnodes;  ///< in GML node order
  std::vector<LinkId> links;    ///< in GML edge order (parallel edges included)
  size_t geo_delay_links = 0;   ///< links whose delay came from coordinates
  size_t default_delay_links = 0;
  size_t components = 0;        ///< connected components of the imported graph
  std::vector<std::string> notes;  ///< e.g. "graph is disconnected: 3 components"
};

/// Vnode name for a GML label: lower-case, runs of other characters become
/// '-', trimmed, prefixed; empty results fall back to "n<id>". Uniqueness is
/// the importer's job (it appends "-2", "-3", ...).
std::string SanitizeGmlLabel(std::string_view label, int64_t id);

/// Great-circle distance in metres (haversine, mean Earth radius 6,371,008.8 m).
double GreatCircleMeters(double lat1, double lon1, double lat2, double lon2);
/// Propagation delay over `meters` of fibre at 2/3 of c (c = 299,792,458 m/s).
std::chrono::nanoseconds FibreDelay(double meters);

/// Adds the graph to `topo`. Errors (kInvalidArgument / kAlreadyExists) for a
/// name clash with an existing vnode; nothing is added on error.
Result<GmlImportReport> ImportGml(const GmlGraph& g, const GmlImportOptions& opts, Topology& topo);

}  // namespace gridemu::topology

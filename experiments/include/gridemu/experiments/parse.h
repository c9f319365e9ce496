// Parsing an experiment file (DESIGN.md §3) into a validated Experiment.
//
// Errors: every problem in the file is collected in one pass (a YAML syntax
// error is the only early stop). On failure the Status is kInvalidArgument
// and its message holds every diagnostic, one per line, each exactly
// "<file>:<line>:<column>: <message>" (1-based), sorted by position (stable
// for equal positions). Messages start with the field they are about:
//   "unknown key 'colour' in link; expected one of endpoints, forward, ..."
//   "duplicate key 'rate' in link (first at 4:7)"
//   "count: expected a positive integer, got 'many'"
//   "delay: unknown time unit 'xs' in '10xs'; expected one of ..."
//   "on: no vnode or group named 'peerz'"
//   "at: 11m is not before the end of the experiment (duration: 10m)"
//   "YAML syntax error: end of map not found"
// Thread-safe: parses share nothing.
#pragma once

#include <string>
#include <string_view>

#include "gridemu/common/status.h"
#include "gridemu/experiments/experiment.h"

namespace gridemu::experiments {

/// Parses and validates an experiment. `filename` is used in diagnostics and
/// kept as source_path; `base_dir` is where relative paths (import `gml:`)
/// start. Top-level keys: name, slice, seed, duration, description,
/// on_pnode_failure, topology (see topology/yaml.h), workload, events, collect.
/// Cost: O(size of the file + vnodes + links + task targets).
Result<Experiment> ParseExperiment(std::string_view yaml_text, const std::string& filename,
                                   const std::string& base_dir = ".");

/// Reads `path` and parses it with base_dir = the file's directory.
/// kNotFound when the file cannot be read; otherwise as ParseExperiment().
Result<Experiment> LoadExperiment(const std::string& path);

}  // namespace gridemu::experiments

// Fuzz entry points for the parsers that take outside input (DESIGN.md §12):
// experiment YAML and GML. Each must return normally for ANY input: errors
// are Status values, never crashes, hangs or uncaught exceptions.
#pragma once

#include <cstddef>
#include <cstdint>

namespace gridemu::fuzz {
/// Parses `data` as an experiment file.
void FuzzExperiment(const uint8_t* data, size_t size);
/// Parses `data` as a GML graph and imports it into an empty topology.
void FuzzGml(const uint8_t* data, size_t size);
}  // namespace gridemu::fuzz

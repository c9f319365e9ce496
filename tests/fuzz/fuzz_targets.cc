#include "fuzz_targets.h"

#include <string_view>

#include "gridemu/experiments/parse.h"
#include "gridemu/topology/gml.h"

namespace gridemu::fuzz {

void FuzzExperiment(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  // base_dir points nowhere so `import: gml:` cannot read real files.
  auto r = experiments::ParseExperiment(text, "fuzz.yaml", "/nonexistent-fuzz-dir");
  if (!r.ok() && r.status().message().empty()) __builtin_trap();  // errors must say something
}

void FuzzGml(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto g = topology::ParseGml(text, "fuzz.gml");
  if (!g.ok()) {
    if (g.status().message().empty()) __builtin_trap();
    return;
  }
  topology::Topology topo;
  topology::GmlImportOptions opts;
  opts.delay_from_geo = true;
  auto rep = topology::ImportGml(*g, opts, topo);
  (void)rep;
}

}  // namespace gridemu::fuzz

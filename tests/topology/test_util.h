// Helpers shared by the topology tests.
#pragma once

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <string>

#include "gridemu/topology/generators.h"
#include "gridemu/topology/model.h"

namespace gridemu::topology::testing {

/// Builds a topology from a generated graph: vnodes "<i>" (the generator's
/// names), kCore -> router, kEdge -> host, kAny -> `any_kind`; every link gets
/// `delay` in both directions.
inline Topology ToTopology(const GeneratedGraph& g, VnodeKind any_kind = VnodeKind::kRouter,
                           std::chrono::nanoseconds delay = std::chrono::milliseconds(1)) {
  Topology topo;
  for (uint32_t i = 0; i < g.num_nodes; ++i) {
    Vnode v;
    v.name = "v" + g.names[i];
    v.kind = g.roles[i] == NodeRole::kCore   ? VnodeKind::kRouter
             : g.roles[i] == NodeRole::kEdge ? VnodeKind::kHost
                                             : any_kind;
    auto id = topo.AddVnode(std::move(v));
    (void)id;
  }
  for (const auto& [u, v] : g.edges) {
    Link l;
    l.a = u;
    l.b = v;
    l.forward.delay = delay;
    l.reverse.delay = delay;
    auto id = topo.AddLink(std::move(l));
    (void)id;
  }
  return topo;
}

/// The shared data directory: $GRIDEMU_SHARED_DIR, else <source>/../shared,
/// else /work/shared.
inline std::filesystem::path SharedDir() {
  if (const char* env = std::getenv("GRIDEMU_SHARED_DIR"); env != nullptr && *env != '\0') {
    return env;
  }
#ifdef GRIDEMU_DEFAULT_SHARED_DIR
  if (std::filesystem::is_directory(GRIDEMU_DEFAULT_SHARED_DIR)) return GRIDEMU_DEFAULT_SHARED_DIR;
#endif
  return "/work/shared";
}

/// topology/testdata of the source tree.
inline std::filesystem::path TestdataDir() {
  if (const char* env = std::getenv("GRIDEMU_SOURCE_DIR"); env != nullptr && *env != '\0') {
    return std::filesystem::path(env) / "topology" / "testdata";
  }
  return GRIDEMU_TOPOLOGY_TESTDATA_DIR;
}

}  // namespace gridemu::topology::testing

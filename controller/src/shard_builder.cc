#include "gridemu/controller/shard_builder.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace gridemu::controller {
namespace {

std::string Cidr(const topology::Ipv4Address& a, uint8_t len) {
  return a.ToString() + "/" + std::to_string(len);
}

}  // namespace

uint64_t CountCrossPnodeLinks(const topology::Topology& topology,
                              const std::vector<uint32_t>& placement) {
  uint64_t n = 0;
  for (topology::LinkId l = 0; l < topology.num_links(); ++l) {
    const topology::Link& link = topology.link(l);
    if (link.a >= placement.size() || link.b >= placement.size() ||
        placement[link.a] != placement[link.b]) {
      ++n;
    }
  }
  return n;
}

Result<std::vector<v1::DeployShard>> BuildShards(const experiments::Experiment& experiment,
                                                 const std::string& experiment_id,
                                                 uint64_t generation,
                                                 const std::vector<uint32_t>& placement,
                                                 const topology::AddressPlan& plan,
                                                 const ShardOptions& options) {
  const topology::Topology& topo = experiment.topology;
  const size_t nv = topo.num_vnodes();
  if (experiment_id.empty()) return InvalidArgumentError("experiment id: must not be empty");
  if (placement.size() != nv) {
    return InvalidArgumentError("placement: has " + std::to_string(placement.size()) +
                                " entries for " + std::to_string(nv) + " vnodes");
  }
  if (plan.vnodes.size() != nv) {
    return InvalidArgumentError("addressing plan: has " + std::to_string(plan.vnodes.size()) +
                                " vnodes, the topology " + std::to_string(nv));
  }
  uint32_t pnodes = options.num_pnodes;
  if (pnodes == 0) {
    pnodes = 1;
    for (uint32_t p : placement) pnodes = std::max(pnodes, p + 1);
  }
  for (size_t v = 0; v < nv; ++v) {
    if (placement[v] >= pnodes) {
      return InvalidArgumentError("placement: vnode " + topo.vnode(v).name + " is on pnode " +
                                  std::to_string(placement[v]) + " but there are only " +
                                  std::to_string(pnodes) + " pnodes");
    }
  }

  // Interface of each end of each link.
  const size_t nl = topo.num_links();
  std::vector<const topology::InterfacePlan*> end_a(nl, nullptr), end_b(nl, nullptr);
  for (topology::VnodeId v = 0; v < nv; ++v) {
    for (const topology::InterfacePlan& ip : plan.vnodes[v].interfaces) {
      if (ip.link >= nl) return InvalidArgumentError("addressing plan: link id out of range");
      (topo.link(ip.link).a == v ? end_a : end_b)[ip.link] = &ip;
    }
  }
  // Cross-pnode links: VNI k = vni_base + k, both ends' pnodes must have an
  // underlay address.
  auto address_of = [&](uint32_t p) -> const std::string& {
    static const std::string kNone;
    return p < options.pnode_addresses.size() ? options.pnode_addresses[p] : kNone;
  };
  for (topology::LinkId l = 0; l < nl; ++l) {
    const topology::Link& link = topo.link(l);
    if (placement[link.a] != placement[link.b]) {
      for (uint32_t p : {placement[link.a], placement[link.b]}) {
        if (address_of(p).empty()) {
          return FailedPreconditionError(
              "link " + topo.LinkName(l) + " spans pnodes " + std::to_string(placement[link.a]) +
              " and " + std::to_string(placement[link.b]) + " but pnode " + std::to_string(p) +
              " announced no underlay address (AgentHello.address): a VXLAN tunnel needs "
              "one on both sides (start its agent with an address)");
        }
      }
    }
    if (end_a[l] == nullptr || end_b[l] == nullptr) {
      return InvalidArgumentError("addressing plan: link " + topo.LinkName(l) +
                                  " has no interface at one of its ends");
    }
  }
  const uint64_t cross = CountCrossPnodeLinks(topo, placement);
  if (cross > 0) {
    if (options.vni_base == 0 || options.vni_base > kMaxVni) {
      return InvalidArgumentError("vni_base " + std::to_string(options.vni_base) +
                                  ": must be in 1.." + std::to_string(kMaxVni) + " (" +
                                  std::to_string(cross) + " cross-pnode links need VNIs)");
    }
    const uint64_t space = uint64_t{kMaxVni} - options.vni_base + 1;
    const uint64_t limit =
        options.vni_count == 0 ? space : std::min<uint64_t>(space, options.vni_count);
    if (cross > limit) {
      return ResourceExhaustedError(
          std::to_string(cross) + " links span pnodes and need one VNI each, but the " +
          "experiment's VNI block holds " + std::to_string(limit) + " (from " +
          std::to_string(options.vni_base) + ")");
    }
    if (options.underlay_mtu <= kVxlanOverheadBytes + 68) {
      return InvalidArgumentError("underlay_mtu " + std::to_string(options.underlay_mtu) +
                                  ": too small for VXLAN (overhead " +
                                  std::to_string(kVxlanOverheadBytes) + " bytes)");
    }
  }

  std::vector<v1::DeployShard> shards(pnodes);
  const uint32_t metrics_ms = experiment.collect.metrics
                                  ? static_cast<uint32_t>(std::max<int64_t>(
                                        1, std::chrono::duration_cast<std::chrono::milliseconds>(
                                               experiment.collect.metrics_interval)
                                               .count()))
                                  : 0;
  // Hosts entries are the same for every shard: build them once.
  v1::DeployShard common;
  if (options.include_hosts) {
    for (const topology::HostsEntry& e : topology::HostsEntries(topo, plan)) {
      v1::HostEntry* h = common.add_hosts();
      h->set_name(e.name);
      for (const topology::Ipv4Address& a : e.addresses) h->add_addresses(a.ToString());
    }
  }
  for (v1::DeployShard& s : shards) {
    s = common;
    s.set_experiment_id(experiment_id);
    s.set_generation(generation);
    s.set_seed(experiment.seed);
    s.set_shared_dir(options.shared_dir);
    s.set_output_dir(options.output_dir);
    s.set_metrics_interval_ms(metrics_ms);
    s.set_shaping_backend(options.shaping_backend);
  }

  for (topology::VnodeId v = 0; v < nv; ++v) {
    const topology::Vnode& vn = topo.vnode(v);
    const topology::VnodePlan& vp = plan.vnodes[v];
    v1::DeployShard& s = shards[placement[v]];
    v1::VnodeSpec* spec = s.add_vnodes();
    spec->set_name(vn.name);
    spec->set_kind(std::string(topology::VnodeKindName(vn.kind)));
    spec->set_runtime(std::string(topology::RuntimeName(vn.runtime)));
    v1::Resources* r = spec->mutable_resources();
    if (vn.resources.cpu) {
      r->set_cpu_millicores(static_cast<uint32_t>(std::llround(*vn.resources.cpu * 1000.0)));
    }
    if (vn.resources.memory_bytes) r->set_memory_bytes(*vn.resources.memory_bytes);
    if (vn.resources.pids) r->set_pids(*vn.resources.pids);
    spec->set_group(vn.group);
    spec->set_group_index(vn.group_index);
    spec->set_forwarding(vp.forwarding);
    if (vp.bridge && !vp.interfaces.empty()) {
      v1::BridgeSpec* br = s.add_bridges();
      br->set_vnode(vn.name);
      br->set_name("br0");
      for (const topology::InterfacePlan& ip : vp.interfaces) br->add_ports(ip.name);
    }
    for (const topology::RoutePlan& rp : vp.routes) {
      v1::RouteSpec* route = s.add_routes();
      route->set_vnode(vn.name);
      route->set_destination(rp.dst.length == 0 ? std::string("default") : rp.dst.ToString());
      route->set_via(rp.gateway.ToString());
      if (rp.interface < vp.interfaces.size()) route->set_dev(vp.interfaces[rp.interface].name);
    }
  }

  auto fill_end = [&](v1::LinkEnd* end, topology::VnodeId v, const topology::InterfacePlan& ip) {
    end->set_vnode(topo.vnode(v).name);
    end->set_ifname(ip.name);
    if (ip.address) end->set_address(Cidr(*ip.address, ip.prefix_len));
  };
  const uint32_t tunnel_mtu =
      std::min(options.mtu == 0 ? 1500u : options.mtu, options.underlay_mtu - kVxlanOverheadBytes);
  uint32_t next_vni = options.vni_base;
  std::vector<char> reshaped(nl, 0);
  for (const experiments::Event& e : experiment.events) {
    if (e.kind == experiments::EventKind::kLinkSet && e.link_id < nl) reshaped[e.link_id] = 1;
  }
  for (topology::LinkId l = 0; l < nl; ++l) {
    const topology::Link& link = topo.link(l);
    const uint32_t pa = placement[link.a];
    const uint32_t pb = placement[link.b];
    v1::DeployShard& s = shards[pa];
    v1::LinkSpec* ls = s.add_links();
    ls->set_name(topo.LinkName(l));
    fill_end(ls->mutable_a(), link.a, *end_a[l]);
    fill_end(ls->mutable_b(), link.b, *end_b[l]);
    if (!link.forward.empty()) *ls->mutable_forward() = LinkProfileToProto(link.forward);
    if (!link.reverse.empty()) *ls->mutable_reverse() = LinkProfileToProto(link.reverse);
    ls->set_reshaped(reshaped[l] != 0);
    ls->set_mtu(options.mtu);
    if (pa == pb) continue;
    // Cross-pnode: the same spec in both shards, each with its tunnel end.
    const uint32_t vni = next_vni++;
    ls->set_mtu(tunnel_mtu);
    v1::LinkSpec* other = shards[pb].add_links();
    *other = *ls;
    v1::Tunnel* ta = ls->mutable_tunnel();
    ta->set_vni(vni);
    ta->set_remote_address(address_of(pb));
    ta->set_local_end("a");
    v1::Tunnel* tb = other->mutable_tunnel();
    tb->set_vni(vni);
    tb->set_remote_address(address_of(pa));
    tb->set_local_end("b");
  }
  return shards;
}

}  // namespace gridemu::controller

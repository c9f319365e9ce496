// The ShardApplier: a resolved shard deployed in phases. See shard_applier.h.
#include "gridemu/node-agent/shard_applier.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <set>

#include "gridemu/common/clock.h"
#include "gridemu/node-agent/agent_convert.h"

namespace gridemu::agent {

// ---------------------------------------------------------------------------
// State.

// What is made of one link of the plan.
struct ShardApplier::LinkState {
  std::string ns_a, ns_b;  // netns paths of the local ends, once their vnodes exist
  std::unique_ptr<netshape::ShapedDirection> fwd, rev;
};

// A deployed (or deploying, or adopted) shard.
struct ShardApplier::ShardState {
  explicit ShardState(ShardPlan p) : plan(std::move(p)), links(plan.links.size()) {
    for (const VnodeSpec& v : plan.vnodes) netns[v.name] = "";
  }
  // The plan; a link's profiles are those in force (link events change them).
  ShardPlan plan;
  // vnode -> netns path ("" until made). Every key exists from the start, so
  // that the link step may read the paths of made vnodes while later ones
  // are being made.
  std::map<std::string, std::string> netns;
  std::string wire_ns;           // the wire namespace's path, once made ("" = none)
  std::vector<LinkState> links;  // parallel to plan.links
  bool complete = false;
};

namespace {

using Clock = std::chrono::steady_clock;

double Secs(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

std::string Obj(const char* kind, const std::string& name) {
  return std::string(kind) + " " + name;
}

// Vnodes among network namespace names: not the wire namespace ("<prefix>-<exp>-_wire").
uint32_t CountVnodes(const std::vector<std::string>& netns) {
  const std::string wire = std::string("-") + ShardPlan::kWireVnode;
  uint32_t n = 0;
  for (const std::string& name : netns) {
    n += name.size() > wire.size() &&
                 name.compare(name.size() - wire.size(), wire.size(), wire) == 0
             ? 0
             : 1;
  }
  return n;
}


}  // namespace

std::string ShardTimings::ToString() const {
  char buf[320];
  std::snprintf(buf, sizeof buf,
                "check %.3fs vnodes %.3fs plumbing %.3fs shaping %.3fs links-tail %.3fs "
                "teardown-shaping %.3fs teardown-vnodes %.3fs cleanup %.3fs total %.3fs",
                check_s, vnodes_s, plumbing_s, shaping_s, links_tail_s, teardown_shaping_s,
                teardown_vnodes_s, cleanup_s, total_s);
  return buf;
}

ApplierDeps KernelApplierDeps(VnodeRuntime* runtime, netshape::LinkShaper* shaper,
                              ShardRecords* records) {
  ApplierDeps d;
  d.runtime = runtime;
  d.new_plumbing = [] { return NewNetlinkPlumbing(); };
  d.new_vxlan = [] { return NewNetlinkVxlanPlumbing(); };
  d.shaper = shaper;
  d.records = records;
  return d;
}

// ---------------------------------------------------------------------------

ShardApplier::ShardApplier(ApplierDeps deps, ShardApplierOptions options)
    : deps_(std::move(deps)), options_(std::move(options)) {
  if (options_.default_output_dir.empty()) {
    options_.default_output_dir = "/tmp/" + options_.prefix + "-out";
  }
}

ShardApplier::~ShardApplier() {
  std::map<std::string, std::shared_ptr<ShardState>> shards;
  {
    std::lock_guard<std::mutex> l(mu_);
    shards.swap(shards_);
  }
  for (auto& [exp, s] : shards) RemoveShaping(*s, nullptr);
}

std::shared_ptr<ShardApplier::ShardState> ShardApplier::Find(const std::string& experiment) const {
  std::lock_guard<std::mutex> l(mu_);
  auto it = shards_.find(experiment);
  return it == shards_.end() ? nullptr : it->second;
}

void ShardApplier::Forget(const std::string& experiment) {
  std::lock_guard<std::mutex> l(mu_);
  shards_.erase(experiment);
}

std::optional<uint64_t> ShardApplier::Generation(const std::string& experiment) const {
  auto s = Find(experiment);
  if (s == nullptr || !s->complete) return std::nullopt;
  return s->plan.generation;
}

std::map<std::string, uint64_t> ShardApplier::Experiments() const {
  std::map<std::string, uint64_t> out;
  std::lock_guard<std::mutex> l(mu_);
  for (const auto& [e, s] : shards_) out[e] = s->plan.generation;
  return out;
}

bool ShardApplier::HasVnode(const std::string& experiment, const std::string& vnode) const {
  auto s = Find(experiment);
  return s != nullptr && s->netns.count(vnode) != 0;
}

const v1::DeployShard* ShardApplier::Shard(const std::string& experiment) const {
  auto s = Find(experiment);
  return s == nullptr ? nullptr : &s->plan.source;
}

std::string ShardApplier::VnodeOutputDir(const std::string& experiment,
                                         const std::string& vnode) const {
  auto s = Find(experiment);
  if (s != nullptr && !s->plan.output_dir.empty()) return s->plan.output_dir + "/" + vnode;
  return options_.default_output_dir + "/" + experiment + "/" + vnode;
}

ResolveOptions ShardApplier::resolve_options() const {
  ResolveOptions r;
  r.prefix = options_.prefix;
  r.runtime_name = std::string(deps_.runtime->name());
  r.local_address = options_.local_address;
  if (deps_.shaper != nullptr) {
    r.shaping_backend = deps_.shaper->backend();
    r.capabilities = deps_.shaper->capabilities();
  }
  r.default_output_dir = options_.default_output_dir;
  return r;
}

Result<ShardPlan> ShardApplier::Resolve(const v1::DeployShard& shard,
                                        std::vector<ShardObjectError>* errors) const {
  return ResolveShard(shard, resolve_options(), errors);
}

std::vector<ShardObjectError> ShardApplier::Check(const v1::DeployShard& shard) const {
  std::vector<ShardObjectError> errors;
  Result<ShardPlan> plan = Resolve(shard, &errors);
  if (!plan.ok() && errors.empty()) errors.push_back({"shard", plan.status().ToString()});
  return errors;
}

// ---------------------------------------------------------------------------
// Deploy.

DeployReport ShardApplier::Deploy(const v1::DeployShard& shard, const DeployProgressFn& progress) {
  const auto t0 = Clock::now();
  DeployReport rep;
  Result<ShardPlan> plan = Resolve(shard, &rep.errors);
  if (!plan.ok()) {
    if (rep.errors.empty()) rep.errors.push_back({"shard", plan.status().ToString()});
    rep.timings.check_s = rep.timings.total_s = Secs(t0, Clock::now());
    return rep;
  }
  const double check_s = Secs(t0, Clock::now());
  rep = DeployPlan(std::move(*plan), progress);
  rep.timings.check_s = check_s;
  rep.timings.total_s += check_s;
  return rep;
}

DeployReport ShardApplier::Deploy(const ShardPlan& plan, const DeployProgressFn& progress) {
  return DeployPlan(ShardPlan(plan), progress);
}

DeployReport ShardApplier::DeployPlan(ShardPlan&& owned, const DeployProgressFn& progress) {
  DeployReport rep;
  const auto t0 = Clock::now();
  const std::string exp = owned.experiment;
  auto finish = [&]() -> DeployReport {
    rep.timings.total_s = Secs(t0, Clock::now());
    return rep;
  };
  if (auto existing = Find(exp)) {
    const ShardPlan& plan = owned;
    if (existing->plan.generation == plan.generation && existing->complete) {
      rep.ok = true;
      rep.already_deployed = true;
      rep.total = rep.done = static_cast<uint32_t>(existing->plan.vnodes.size() +
                                                   existing->plan.links.size());
      return finish();
    }
    if (plan.generation < existing->plan.generation) {
      rep.errors.push_back({"shard", "failed precondition: generation " +
                                         std::to_string(plan.generation) +
                                         " is older than the deployed generation " +
                                         std::to_string(existing->plan.generation)});
    } else {
      rep.errors.push_back({"shard", "unimplemented: experiment " + exp +
                                         " is deployed at generation " +
                                         std::to_string(existing->plan.generation) +
                                         "; changing a deployed shard is not supported yet "
                                         "(tear it down first)"});
    }
    return finish();
  }
  auto s = std::make_shared<ShardState>(std::move(owned));
  const ShardPlan& plan = s->plan;
  rep.total = plan.objects();
  {
    std::lock_guard<std::mutex> l(mu_);
    shards_[exp] = s;
  }
  auto fail = [&]() -> DeployReport {
    Rollback(*s, &rep.errors);
    rep.ok = false;
    return finish();
  };
  auto report = [&] {
    if (progress) progress(rep.done, rep.total);
  };

  // 1. Record what is about to be made.
  if (Status st = RecordPhase(plan, "deploying"); !st.ok()) {
    rep.errors.push_back({"record", st.ToString()});
    return fail();
  }
  report();
  // 2. The wire namespace, where the delay line holds packets (ShardPlan::wire).
  if (Status st = MakeWire(*s); !st.ok()) {
    rep.errors.push_back({Obj("vnode", ShardPlan::kWireVnode), st.ToString()});
    return fail();
  }
  // 3. Vnodes, and links (plumbed and shaped) as soon as their ends exist.
  PipelineResult made = MakeVnodesAndLinks(*s, progress, rep);
  if (!made.ok()) return fail();
  // 4. The LANs and routes, which need every interface.
  const auto tr = Clock::now();
  if (Status st = PlumbLanAndRoutes(*s); !st.ok()) {
    rep.errors.push_back({"routes", st.ToString()});
    return fail();
  }
  rep.timings.links_tail_s += Secs(tr, Clock::now());
  report();
  // 5. Record that it is complete.
  if (Status st = RecordPhase(plan, "ready"); !st.ok()) {
    rep.errors.push_back({"record", st.ToString()});
    return fail();
  }
  s->complete = true;
  rep.ok = true;
  return finish();
}

Status ShardApplier::MakeWire(ShardState& s) {
  if (!s.plan.wire) return Status::Ok();
  GRIDEMU_RETURN_IF_ERROR(deps_.runtime->Create(*s.plan.wire));
  GRIDEMU_ASSIGN_OR_RETURN(VnodeInfo info,
                           deps_.runtime->Info(VnodeRef{s.plan.experiment, ShardPlan::kWireVnode}));
  s.wire_ns = info.netns_path;
  // Bridged IP packets go through its iptables (br_netfilter), where the delay line's
  // rules hold them; ARP and the rest pass.
  GRIDEMU_ASSIGN_OR_RETURN(std::unique_ptr<Plumbing> p, deps_.new_plumbing());
  const NetnsRef ns = NetnsRef::AtPath(s.wire_ns);
  GRIDEMU_RETURN_IF_ERROR(p->SetSysctl(ns, "net.bridge.bridge-nf-call-iptables", "1"));
  GRIDEMU_RETURN_IF_ERROR(p->SetSysctl(ns, "net.bridge.bridge-nf-call-ip6tables", "1"));
  return p->SetSysctl(ns, "net.bridge.bridge-nf-call-arptables", "0");
}

Status ShardApplier::RecordPhase(const ShardPlan& plan, const char* phase) {
  if (std::string_view(phase) == "deploying") {
    GRIDEMU_RETURN_IF_ERROR(deps_.records->WriteShard(plan.source));
  }
  return deps_.records->WritePhase(plan.experiment, ShardPhase{phase, plan.generation});
}

PipelineResult ShardApplier::MakeVnodesAndLinks(ShardState& s, const DeployProgressFn& progress,
                                                DeployReport& rep) {
  const ShardPlan& plan = s.plan;
  const std::vector<VnodeSpec>& specs = plan.vnodes;
  std::vector<std::vector<size_t>> needs(plan.links.size());
  for (size_t i = 0; i < plan.links.size(); ++i) {
    const LinkPlan& l = plan.links[i];
    if (l.has_a()) needs[i].push_back(plan.vnode_index.at(l.vnode_a));
    if (l.has_b()) needs[i].push_back(plan.vnode_index.at(l.vnode_b));
  }
  auto make_vnodes = [&](size_t first, size_t n, std::vector<char>& made, StepResult& r) {
    std::vector<Status> st = deps_.runtime->CreateBatch(std::span(specs.data() + first, n));
    for (size_t k = 0; k < n; ++k) {
      const std::string& name = specs[first + k].name;
      if (!st[k].ok()) {
        r.errors.push_back({Obj("vnode", name), st[k].ToString()});
        continue;
      }
      Result<VnodeInfo> info = deps_.runtime->Info(VnodeRef{plan.experiment, name});
      if (!info.ok()) {
        r.errors.push_back({Obj("vnode", name), info.status().ToString()});
        continue;
      }
      s.netns.at(name) = info->netns_path;
      made[k] = 1;
    }
  };
  std::mutex tmu;  // guards the two sums
  double plumb_s = 0, shape_s = 0;
  auto make_links = [&](std::span<const size_t> links) -> StepResult {
    for (size_t i : links) {
      const LinkPlan& l = plan.links[i];
      if (l.has_a()) s.links[i].ns_a = s.netns.at(l.vnode_a);
      if (l.has_b()) s.links[i].ns_b = s.netns.at(l.vnode_b);
    }
    StepResult r;
    const auto a = Clock::now();
    Status st = PlumbLinks(s, links);
    const auto b = Clock::now();
    Status sh = st.ok() ? ShapeLinks(s, links) : Status::Ok();
    const auto c = Clock::now();
    if (!st.ok()) r.errors.push_back({"links", st.ToString()});
    if (!sh.ok()) r.errors.push_back({"shaping", sh.ToString()});
    if (r.errors.empty()) {
      for (size_t i : links) r.done += plan.links[i].objects();
    }
    std::lock_guard<std::mutex> l(tmu);
    plumb_s += Secs(a, b);
    shape_s += Secs(b, c);
    return r;
  };
  PipelineOptions po;
  po.vnode_chunk = options_.vnode_chunk;
  po.link_batch = std::max<size_t>(1, options_.link_chunk / 2);
  po.overlap = options_.overlap_links;
  DeployPipeline pipeline(po);
  PipelineResult r = pipeline.Run(plan.vnodes.size(), needs, make_vnodes, make_links,
                                  [&](uint32_t done) {
                                    rep.done = done;
                                    if (progress) progress(rep.done, rep.total);
                                  });
  rep.done = r.vnodes_done + r.links_done;
  rep.errors.insert(rep.errors.end(), r.errors.begin(), r.errors.end());
  rep.timings.vnodes_s = r.vnodes_s;
  rep.timings.links_tail_s = r.links_tail_s;
  rep.timings.plumbing_s = plumb_s;
  rep.timings.shaping_s = shape_s;
  return r;
}

Status ShardApplier::PlumbLinks(const ShardState& s, std::span<const size_t> links) {
  PlumbingBatch b;
  std::vector<VxlanSpec> tunnels;
  for (size_t i : links) {
    const LinkPlan& l = s.plan.links[i];
    const LinkState& ls = s.links[i];
    if (l.wire) {
      AddWiredLink(s, l, ls, b, tunnels);
      continue;
    }
    if (l.tunnel) {
      const bool la = l.tunnel->local_a;
      VxlanSpec v;
      v.underlay_ns = options_.underlay_ns;
      v.underlay_dev = options_.underlay_dev;
      v.vni = l.tunnel->vni;
      v.local = options_.local_address;
      v.remote = l.tunnel->remote;
      v.dst_port = options_.vxlan_port;
      v.ns = NetnsRef::AtPath(la ? ls.ns_a : ls.ns_b);
      v.name = la ? l.if_a : l.if_b;
      v.mtu = l.mtu;
      v.tag = l.tag;
      tunnels.push_back(std::move(v));
      const std::string& addr = la ? l.addr_a : l.addr_b;
      if (!addr.empty()) {
        b.addresses.push_back({NetnsRef::AtPath(la ? ls.ns_a : ls.ns_b), la ? l.if_a : l.if_b,
                               addr, la ? l.len_a : l.len_b});
      }
      continue;
    }
    VethSpec v;
    v.ns_a = NetnsRef::AtPath(ls.ns_a);
    v.name_a = l.if_a;
    v.ifindex_a = l.port_ifindex_a;
    v.ns_b = NetnsRef::AtPath(ls.ns_b);
    v.name_b = l.if_b;
    if (l.port_ifindex_b != 0) {  // end b is a switch's port: it is the pair's end a
      std::swap(v.ns_a, v.ns_b);
      std::swap(v.name_a, v.name_b);
      v.ifindex_a = l.port_ifindex_b;
    }
    v.mtu = l.mtu;
    v.tag = l.tag;
    b.veths.push_back(std::move(v));
    if (!l.addr_a.empty()) {
      b.addresses.push_back({NetnsRef::AtPath(ls.ns_a), l.if_a, l.addr_a, l.len_a});
    }
    if (!l.addr_b.empty()) {
      b.addresses.push_back({NetnsRef::AtPath(ls.ns_b), l.if_b, l.addr_b, l.len_b});
    }
  }
  if (!tunnels.empty()) {
    // One device at a time (four requests each, plumbing_vxlan.h); on failure
    // the rollback removes the vnodes, and the devices with them.
    GRIDEMU_ASSIGN_OR_RETURN(std::unique_ptr<VxlanPlumbing> vx, deps_.new_vxlan());
    for (const VxlanSpec& v : tunnels) {
      GRIDEMU_RETURN_IF_ERROR(vx->CreateVxlan(v).WithContext(
          "link " + v.tag.substr(options_.prefix.size() + s.plan.experiment.size() + 2)));
    }
  }
  GRIDEMU_ASSIGN_OR_RETURN(std::unique_ptr<Plumbing> p, deps_.new_plumbing());
  return p->Apply(b);
}

void ShardApplier::AddWiredLink(const ShardState& s, const LinkPlan& l, const LinkState& ls,
                                PlumbingBatch& b, std::vector<VxlanSpec>& tunnels) const {
  const WirePlan& w = *l.wire;
  const NetnsRef wire = NetnsRef::AtPath(s.wire_ns);
  // A tunnel's frames are at most the underlay's MTU less 50 bytes: so are the veth's.
  const uint32_t mtu = l.mtu != 0 ? l.mtu : (l.tunnel ? 1450 : 0);
  std::vector<std::string> ports;
  for (bool end_a : {true, false}) {
    if (end_a ? !l.has_a() : !l.has_b()) {
      // The remote end of a tunnel: the VXLAN device, as the bridge's other port.
      VxlanSpec v;
      v.underlay_ns = options_.underlay_ns;
      v.underlay_dev = options_.underlay_dev;
      v.vni = l.tunnel->vni;
      v.local = options_.local_address;
      v.remote = l.tunnel->remote;
      v.dst_port = options_.vxlan_port;
      v.ns = wire;
      v.name = end_a ? w.port_a : w.port_b;
      v.mtu = mtu;
      v.tag = l.tag;
      tunnels.push_back(std::move(v));
      ports.push_back(end_a ? w.port_a : w.port_b);
      continue;
    }
    // The wire's port is the pair's end a, with an index its peer cannot have (and the
    // vnode's end, a port of a switch's bridge, gets the kernel's choice).
    VethSpec v;
    v.ns_a = wire;
    v.name_a = end_a ? w.port_a : w.port_b;
    v.ifindex_a = end_a ? w.ifindex_a : w.ifindex_b;
    v.ns_b = NetnsRef::AtPath(end_a ? ls.ns_a : ls.ns_b);
    v.name_b = end_a ? l.if_a : l.if_b;
    v.mtu = mtu;
    v.tag = l.tag;
    ports.push_back(v.name_a);
    b.veths.push_back(std::move(v));
    const std::string& addr = end_a ? l.addr_a : l.addr_b;
    if (!addr.empty()) {
      b.addresses.push_back({NetnsRef::AtPath(end_a ? ls.ns_a : ls.ns_b), end_a ? l.if_a : l.if_b,
                             addr, end_a ? l.len_a : l.len_b});
    }
  }
  BridgeSpec br;
  br.ns = wire;
  br.name = w.bridge;
  br.ports = std::move(ports);
  br.mtu = mtu;
  br.tag = l.tag;
  br.group = w.group;
  br.multicast_snooping = false;  // a wire: it forwards, and says nothing of its own
  b.bridges.push_back(std::move(br));
}

Status ShardApplier::PlumbLanAndRoutes(const ShardState& s) {
  PlumbingBatch b;
  for (const BridgePlan& br : s.plan.bridges) {
    BridgeSpec bs;
    bs.ns = NetnsRef::AtPath(s.netns.at(br.vnode));
    bs.name = br.name;
    bs.ports = br.ports;
    bs.tag = br.tag;
    b.bridges.push_back(std::move(bs));
  }
  for (size_t i = 0; i < s.plan.vnodes.size(); ++i) {
    if (s.plan.roles[i].forwarding) {
      b.forwarding.push_back(NetnsRef::AtPath(s.netns.at(s.plan.vnodes[i].name)));
    }
  }
  for (const RoutePlan& r : s.plan.routes) {
    b.routes.push_back(
        RouteSpec{NetnsRef::AtPath(s.netns.at(r.vnode)), r.dst, r.prefix_len, r.gateway, r.ifname});
  }
  if (b.bridges.empty() && b.forwarding.empty() && b.routes.empty()) return Status::Ok();
  GRIDEMU_ASSIGN_OR_RETURN(std::unique_ptr<Plumbing> p, deps_.new_plumbing());
  return p->Apply(b);
}

Status ShardApplier::ShapeLinks(ShardState& s, std::span<const size_t> links) {
  if (deps_.shaper == nullptr) return Status::Ok();
  std::vector<netshape::ShapeRequest> reqs;
  std::vector<std::pair<size_t, bool>> where;  // (link, forward)
  for (size_t i : links) {
    const LinkPlan& l = s.plan.links[i];
    LinkState& ls = s.links[i];
    for (bool fwd : {true, false}) {
      const LinkProfile& prof = fwd ? l.forward : l.reverse;
      if (prof.empty() || (fwd ? ls.fwd : ls.rev) != nullptr) continue;
      netshape::ShapeRequest r;
      r.sender = fwd ? netshape::Endpoint{ls.ns_a, l.if_a} : netshape::Endpoint{ls.ns_b, l.if_b};
      r.receiver = fwd ? netshape::Endpoint{ls.ns_b, l.if_b} : netshape::Endpoint{ls.ns_a, l.if_a};
      r.profile = prof;
      r.tag = fwd ? l.forward_tag : l.reverse_tag;
      r.direction = fwd ? netshape::Direction::kForward : netshape::Direction::kReverse;
      r.half = l.Half(fwd);
      // Every run of an experiment draws the same decisions for the same packets: the
      // experiment's seed, and a stream named by the link (not by its experiment id).
      r.seed = s.plan.seed;
      r.stream = l.name;
      if (l.wire) {
        r.hold = netshape::HoldPoint{s.wire_ns, fwd ? l.wire->port_a : l.wire->port_b,
                                     l.wire->group, fwd ? l.wire->port_b : l.wire->port_a};
      }
      reqs.push_back(std::move(r));
      where.emplace_back(i, fwd);
    }
  }
  if (reqs.empty()) return Status::Ok();
  GRIDEMU_ASSIGN_OR_RETURN(auto shaped, deps_.shaper->ShapeDirections(reqs));
  for (size_t k = 0; k < shaped.size(); ++k) {
    LinkState& ls = s.links[where[k].first];
    (where[k].second ? ls.fwd : ls.rev) = std::move(shaped[k]);
  }
  return Status::Ok();
}

void ShardApplier::RemoveShaping(ShardState& s, std::vector<ShardObjectError>* errors) {
  if (deps_.shaper == nullptr) return;
  std::vector<std::unique_ptr<netshape::ShapedDirection>> all;
  for (LinkState& l : s.links) {
    if (l.fwd) all.push_back(std::move(l.fwd));
    if (l.rev) all.push_back(std::move(l.rev));
  }
  if (all.empty()) return;
  Status st = deps_.shaper->RemoveDirections(all);
  if (!st.ok() && errors != nullptr) errors->push_back({"shaping", st.ToString()});
  all.clear();  // destructors retry what RemoveDirections could not remove
}

void ShardApplier::Rollback(ShardState& s, std::vector<ShardObjectError>* errors) {
  const std::string exp = s.plan.experiment;
  RemoveShaping(s, errors);
  Status c = deps_.runtime->CleanupExperiment(exp);
  if (!c.ok()) errors->push_back({"cleanup", c.ToString()});
  Status u = CleanupUnderlay(exp);
  if (!u.ok()) errors->push_back({"cleanup", u.ToString()});
  Status r = deps_.records->Remove(exp);
  if (!r.ok()) errors->push_back({"record", r.ToString()});
  Forget(exp);
}

Status ShardApplier::CleanupUnderlay(const std::string& experiment) const {
  // Without an underlay address no tunnel was made by this configuration;
  // `gridemu clean` sweeps the home namespace anyway.
  if (options_.local_address.empty()) return Status::Ok();
  GRIDEMU_ASSIGN_OR_RETURN(std::unique_ptr<VxlanPlumbing> vx, deps_.new_vxlan());
  Result<size_t> n =
      vx->DeleteTagged(options_.underlay_ns, options_.prefix + ":" + experiment + ":");
  if (!n.ok()) return n.status().WithContext("underlay interfaces");
  return Status::Ok();
}

// ---------------------------------------------------------------------------
// Teardown.

TeardownReport ShardApplier::Teardown(const std::string& experiment) {
  TeardownReport rep;
  const auto t0 = Clock::now();
  if (!ValidateExperimentId(experiment).ok()) {
    rep.errors.push_back({"shard", "invalid argument: bad experiment id '" + experiment + "'"});
    return rep;
  }
  std::shared_ptr<ShardState> s;
  {
    std::lock_guard<std::mutex> l(mu_);
    auto it = shards_.find(experiment);
    if (it != shards_.end()) {
      s = it->second;
      shards_.erase(it);
    }
  }
  // Vnodes first: their namespaces take veths, qdiscs and rules with them, so
  // that removing the shaping afterwards only releases the delay-line queues
  // and netlink sockets (no iptables process per namespace).
  const auto tv = Clock::now();
  if (s != nullptr) {
    std::vector<VnodeRef> refs;
    for (const auto& [name, path] : s->netns) refs.push_back(VnodeRef{experiment, name});
    const size_t vnodes = refs.size();
    if (!s->wire_ns.empty()) refs.push_back(VnodeRef{experiment, ShardPlan::kWireVnode});
    std::vector<Status> st = deps_.runtime->DestroyBatch(refs);
    for (size_t i = 0; i < refs.size(); ++i) {
      if (i >= vnodes) {
        if (!st[i].ok() && st[i].code() != StatusCode::kNotFound) {
          rep.errors.push_back({Obj("vnode", refs[i].name), st[i].ToString()});
        }
        continue;
      }
      if (st[i].ok()) {
        ++rep.vnodes_removed;
      } else if (st[i].code() != StatusCode::kNotFound) {
        rep.errors.push_back({Obj("vnode", refs[i].name), st[i].ToString()});
      }
    }
  }
  rep.timings.teardown_vnodes_s = Secs(tv, Clock::now());
  const auto ts = Clock::now();
  if (s != nullptr) RemoveShaping(*s, &rep.errors);
  rep.timings.teardown_shaping_s = Secs(ts, Clock::now());
  const auto tc = Clock::now();
  Result<Leftovers> left = deps_.runtime->ListLeftovers(experiment);
  if (left.ok() && !left->empty()) {
    rep.vnodes_removed += CountVnodes(left->netns);
    Status c = deps_.runtime->CleanupExperiment(experiment);
    if (!c.ok()) rep.errors.push_back({"cleanup", c.ToString()});
  }
  Status u = CleanupUnderlay(experiment);
  if (!u.ok()) rep.errors.push_back({"cleanup", u.ToString()});
  Status r = deps_.records->Remove(experiment);
  if (!r.ok()) rep.errors.push_back({"record", r.ToString()});
  // The experiment's default output directory, if it was used and is empty.
  ::rmdir((options_.default_output_dir + "/" + experiment).c_str());
  rep.timings.cleanup_s = Secs(tc, Clock::now());
  rep.timings.total_s = Secs(t0, Clock::now());
  return rep;
}

// ---------------------------------------------------------------------------
// Events.

Status ShardApplier::CheckEvent(const std::string& experiment, const v1::ApplyEvent& ev) const {
  auto s = Find(experiment);
  if (s == nullptr || !s->complete) {
    return FailedPreconditionError("experiment " + experiment + " is not deployed on this pnode");
  }
  GRIDEMU_RETURN_IF_ERROR(CheckEventShape(ev));
  auto check_profile = [&](const v1::LinkProfile& p, const char* dir) -> Status {
    GRIDEMU_ASSIGN_OR_RETURN(LinkProfile lp, ProfileFromProto(p));
    if (lp.empty()) return Status::Ok();
    if (deps_.shaper == nullptr) {
      return UnimplementedError(std::string(dir) + ": no shaping backend works on this pnode");
    }
    return netshape::CheckBackendSupports(lp, deps_.shaper->backend(),
                                          deps_.shaper->capabilities())
        .WithContext(dir);
  };
  const std::string where = " in experiment " + experiment;
  switch (ev.action_case()) {
    case v1::ApplyEvent::kLinkSet: {
      const v1::LinkSet& ls = ev.link_set();
      if (s->plan.link_index.count(ls.link()) == 0) {
        return NotFoundError("no link '" + ls.link() + "'" + where);
      }
      if (ls.has_forward()) GRIDEMU_RETURN_IF_ERROR(check_profile(ls.forward(), "forward"));
      if (ls.has_reverse()) GRIDEMU_RETURN_IF_ERROR(check_profile(ls.reverse(), "reverse"));
      // With the userspace backend a delay line must hold packets in the wire namespace,
      // or the receiver's kernel would stamp them before their delay: a link can gain an
      // impairment at run time only if it was deployed there (LinkSpec.reshaped).
      const LinkPlan& lp = s->plan.links[s->plan.link_index.at(ls.link())];
      if (deps_.shaper != nullptr && deps_.shaper->backend() == netshape::Backend::kUserspace &&
          !lp.wire) {
        for (const v1::LinkProfile* p : {ls.has_forward() ? &ls.forward() : nullptr,
                                         ls.has_reverse() ? &ls.reverse() : nullptr}) {
          if (p == nullptr) continue;
          GRIDEMU_ASSIGN_OR_RETURN(LinkProfile lp2, ProfileFromProto(*p));
          if (HasImpairment(lp2)) {
            return FailedPreconditionError(
                "link '" + ls.link() + "'" + where +
                " was deployed without a hold point in the wire namespace (its LinkSpec is "
                "not marked reshaped), so the userspace backend cannot delay, drop or "
                "duplicate its packets; mark every link that a link_set event changes");
          }
        }
      }
      return Status::Ok();
    }
    case v1::ApplyEvent::kLinkState:
      if (s->plan.link_index.count(ev.link_state().link()) == 0) {
        return NotFoundError("no link '" + ev.link_state().link() + "'" + where);
      }
      return Status::Ok();
    case v1::ApplyEvent::kNodeAction:
      for (const std::string& v : ev.node_action().vnodes()) {
        if (s->netns.count(v) == 0) return NotFoundError("no vnode '" + v + "'" + where);
      }
      return Status::Ok();
    case v1::ApplyEvent::ACTION_NOT_SET:
      break;
  }
  return InvalidArgumentError("ApplyEvent without an action");
}

Status ShardApplier::ApplyEvent(const std::string& experiment, const v1::ApplyEvent& ev) {
  GRIDEMU_RETURN_IF_ERROR(CheckEvent(experiment, ev));
  std::shared_ptr<ShardState> s = Find(experiment);
  std::vector<std::string> errs;
  auto note = [&](const std::string& obj, const Status& st) {
    if (!st.ok()) errs.push_back(obj + ": " + st.ToString());
  };
  switch (ev.action_case()) {
    case v1::ApplyEvent::kLinkSet: {
      const v1::LinkSet& set = ev.link_set();
      const size_t i = s->plan.link_index.at(set.link());
      LinkState& ls = s->links[i];
      for (bool fwd : {true, false}) {
        if (fwd ? !set.has_forward() : !set.has_reverse()) continue;
        Result<LinkProfile> p = ProfileFromProto(fwd ? set.forward() : set.reverse());
        if (!p.ok() || p->empty()) continue;
        std::unique_ptr<netshape::ShapedDirection>& dir = fwd ? ls.fwd : ls.rev;
        LinkProfile& prof = fwd ? s->plan.links[i].forward : s->plan.links[i].reverse;
        const std::string obj = "link " + set.link() + (fwd ? " forward" : " reverse");
        if (dir != nullptr) {
          Status st = dir->Change(*p);
          note(obj, st);
          if (st.ok()) prof = dir->profile();
        } else {
          prof = prof.MergedWith(*p);
          const size_t one[] = {i};
          note(obj, ShapeLinks(*s, one));
        }
      }
      break;
    }
    case v1::ApplyEvent::kLinkState: {
      const v1::LinkState& st = ev.link_state();
      const size_t i = s->plan.link_index.at(st.link());
      const LinkPlan& l = s->plan.links[i];
      const LinkState& ls = s->links[i];
      Result<std::unique_ptr<Plumbing>> p = deps_.new_plumbing();
      if (!p.ok()) return p.status();
      // A tunnel link: only the local end is here (the other pnode sets its own).
      for (bool end_a : {true, false}) {
        if (end_a ? !l.has_a() : !l.has_b()) continue;
        const std::string& ns = end_a ? ls.ns_a : ls.ns_b;
        const std::string& vnode = end_a ? l.vnode_a : l.vnode_b;
        const std::string& ifname = end_a ? l.if_a : l.if_b;
        note("link " + l.name + (end_a ? " end a" : " end b"),
             (*p)->SetLinkUp(NetnsRef::AtPath(ns), ifname, st.up()));
        if (!st.up()) continue;
        // Taking a device down deletes the routes through it: put them back.
        for (const RoutePlan* r : s->plan.RoutesVia(vnode, ifname)) {
          note("route " + r->vnode + " " + r->dst + "/" + std::to_string(r->prefix_len),
               (*p)->AddRoute(
                   RouteSpec{NetnsRef::AtPath(ns), r->dst, r->prefix_len, r->gateway, r->ifname}));
        }
      }
      break;
    }
    case v1::ApplyEvent::kNodeAction: {
      const v1::NodeAction& na = ev.node_action();
      for (const std::string& v : na.vnodes()) {
        VnodeRef ref{experiment, v};
        Status st;
        if (na.action() == "kill" || na.action() == "stop") {
          st = deps_.runtime->Stop(ref);
        } else if (na.action() == "start") {
          Result<VnodeInfo> info = deps_.runtime->Info(ref);
          st = info.ok() && info->state == VnodeState::kStopped ? deps_.runtime->Start(ref)
                                                                : info.status();
        } else if (na.action() == "freeze") {
          st = deps_.runtime->Freeze(ref);
        } else {
          st = deps_.runtime->Thaw(ref);
        }
        note("vnode " + v, st);
      }
      break;
    }
    case v1::ApplyEvent::ACTION_NOT_SET:
      break;
  }
  if (errs.empty()) return Status::Ok();
  std::string msg;
  for (const std::string& e : errs) msg += (msg.empty() ? "" : "; ") + e;
  return InternalError(msg);
}

// ---------------------------------------------------------------------------
// Metrics.

v1::MetricsBatch ShardApplier::CollectMetrics(const std::string& experiment) const {
  v1::MetricsBatch mb;
  mb.set_unix_ns(UnixNanosNow());
  auto s = Find(experiment);
  if (s == nullptr) return mb;
  for (size_t i = 0; i < s->links.size(); ++i) {
    for (bool fwd : {true, false}) {
      netshape::ShapedDirection* d = (fwd ? s->links[i].fwd : s->links[i].rev).get();
      if (d == nullptr) continue;
      Result<netshape::Counters> c = d->GetCounters();
      if (!c.ok()) continue;
      v1::LinkCounters* lc = mb.add_links();
      lc->set_link(s->plan.links[i].name);
      lc->set_direction(fwd ? "forward" : "reverse");
      lc->set_tx_packets(c->passed_packets);
      lc->set_tx_bytes(c->passed_bytes);
      lc->set_dropped_loss(c->loss_dropped_packets);
      lc->set_dropped_queue(c->overflow_dropped_packets);
      lc->set_delayed(c->delayed_packets);
    }
  }
  for (const auto& [name, path] : s->netns) {
    Result<VnodeStats> st = deps_.runtime->Stats(VnodeRef{experiment, name});
    if (!st.ok()) continue;
    v1::VnodeStats* vs = mb.add_vnodes();
    vs->set_vnode(name);
    vs->set_cpu_ns(static_cast<uint64_t>(st->cpu_usage.count()));
    vs->set_memory_bytes(st->memory_current_bytes);
    vs->set_pids(static_cast<uint32_t>(st->pids_current));
  }
  return mb;
}

// ---------------------------------------------------------------------------
// Leftovers and adoption.

Result<std::vector<HeldExperiment>> ShardApplier::FindHeld() const {
  std::map<std::string, HeldExperiment> held;
  {
    std::lock_guard<std::mutex> l(mu_);
    for (const auto& [e, s] : shards_) {
      held[e] = HeldExperiment{e, s->plan.generation, static_cast<uint32_t>(s->netns.size()),
                               s->complete, true};
    }
  }
  GRIDEMU_ASSIGN_OR_RETURN(Leftovers all, deps_.runtime->ListLeftovers(""));
  std::set<std::string> candidates = ExperimentsWithObjects(all, options_.prefix);
  GRIDEMU_ASSIGN_OR_RETURN(std::vector<std::string> recorded, deps_.records->List());
  candidates.insert(recorded.begin(), recorded.end());
  for (const std::string& e : candidates) {
    if (held.count(e) != 0) continue;
    HeldExperiment h;
    h.experiment = e;
    Result<Leftovers> left = deps_.runtime->ListLeftovers(e);
    if (left.ok()) h.vnodes = CountVnodes(left->netns);
    Result<ShardPhase> phase = deps_.records->ReadPhase(e);
    if (phase.ok()) {
      h.generation = phase->generation;
      h.complete = phase->ready();
    }
    // Names that are only directories above the vnodes' (the state root, the
    // prefix's cgroup) hold nothing.
    const bool recorded_here = std::binary_search(recorded.begin(), recorded.end(), e);
    if (!recorded_here && (!left.ok() || left->empty())) continue;
    held[e] = h;
  }
  std::vector<HeldExperiment> out;
  for (auto& [e, h] : held) out.push_back(std::move(h));
  return out;
}

Status ShardApplier::Adopt(const std::string& experiment) {
  GRIDEMU_RETURN_IF_ERROR(ValidateExperimentId(experiment));
  if (auto existing = Find(experiment); existing != nullptr && existing->complete) {
    return Status::Ok();  // ours already
  }
  Result<ShardPhase> phase = deps_.records->ReadPhase(experiment);
  if (!phase.ok() || !phase->ready()) {
    return FailedPreconditionError("experiment " + experiment +
                                   " was not completely deployed (no READY record)");
  }
  GRIDEMU_ASSIGN_OR_RETURN(v1::DeployShard shard, deps_.records->ReadShard(experiment));
  GRIDEMU_ASSIGN_OR_RETURN(ShardPlan plan, Resolve(shard));
  auto s = std::make_shared<ShardState>(std::move(plan));
  GRIDEMU_ASSIGN_OR_RETURN(std::vector<VnodeRef> adopted, deps_.runtime->Adopt(experiment));
  (void)adopted;
  for (auto& [name, path] : s->netns) {
    Result<VnodeInfo> info = deps_.runtime->Info(VnodeRef{experiment, name});
    if (!info.ok()) {
      return FailedPreconditionError("vnode " + name + " of " + experiment +
                                     " is gone: " + info.status().message());
    }
    path = info->netns_path;
  }
  if (s->plan.wire) {
    Result<VnodeInfo> info =
        deps_.runtime->Info(VnodeRef{experiment, ShardPlan::kWireVnode});
    if (!info.ok()) {
      return FailedPreconditionError("the wire namespace of " + experiment +
                                     " is gone: " + info.status().message());
    }
    s->wire_ns = info->netns_path;
  }
  for (size_t i = 0; i < s->links.size(); ++i) {
    const LinkPlan& l = s->plan.links[i];
    if (l.has_a()) s->links[i].ns_a = s->netns.at(l.vnode_a);
    if (l.has_b()) s->links[i].ns_b = s->netns.at(l.vnode_b);
  }
  // Remove the shaping the crashed process left (its rules drop packets now:
  // fail closed), then shape again.
  std::set<std::string> rule_ns;
  if (deps_.shaper != nullptr) {
    for (size_t i = 0; i < s->links.size(); ++i) {
      const LinkPlan& l = s->plan.links[i];
      const LinkState& ls = s->links[i];
      // Only the local ends (of a tunnel link, one end is on another pnode).
      if (!l.forward.empty()) {
        if (l.has_a()) (void)deps_.shaper->RemoveLeftoverQdisc(ls.ns_a, l.if_a);
        if (l.has_b() && HasImpairment(l.forward)) rule_ns.insert(l.wire ? s->wire_ns : ls.ns_b);
      }
      if (!l.reverse.empty()) {
        if (l.has_b()) (void)deps_.shaper->RemoveLeftoverQdisc(ls.ns_b, l.if_b);
        if (l.has_a() && HasImpairment(l.reverse)) rule_ns.insert(l.wire ? s->wire_ns : ls.ns_a);
      }
    }
    for (const std::string& ns : rule_ns) {
      Result<int> n = deps_.shaper->RemoveLeftoverRules(ns, experiment + ":");
      if (!n.ok()) return n.status().WithContext("removing leftover rules in " + ns);
    }
  }
  {
    std::lock_guard<std::mutex> l(mu_);
    shards_[experiment] = s;
  }
  std::vector<size_t> all(s->links.size());
  for (size_t i = 0; i < all.size(); ++i) all[i] = i;
  Status st = ShapeLinks(*s, all);
  if (!st.ok()) {
    RemoveShaping(*s, nullptr);
    Forget(experiment);
    return st;
  }
  s->complete = true;
  return Status::Ok();
}

}  // namespace gridemu::agent

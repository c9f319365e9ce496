// Resolving a DeployShard into a ShardPlan. See shard_plan.h.
#include "gridemu/node-agent/shard_plan.h"

#include <arpa/inet.h>

#include <cctype>
#include <set>
#include <string_view>
#include <unordered_map>

#include "gridemu/netshape/capabilities.h"
#include "gridemu/node-agent/agent_convert.h"
#include "gridemu/node-agent/plumbing.h"
#include "gridemu/node-agent/plumbing_vxlan.h"

namespace gridemu::agent {
namespace {

std::string Obj(const char* kind, const std::string& name) {
  return std::string(kind) + " " + name;
}

// A link sent to this pnode as one end of a cross-pnode link. (An empty Tunnel
// message counts as none.)
bool IsTunnel(const v1::LinkSpec& l) {
  return l.has_tunnel() && (l.tunnel().vni() != 0 || !l.tunnel().remote_address().empty() ||
                            !l.tunnel().local_end().empty());
}

bool IsIpv4(const std::string& a) {
  in_addr in{};
  return inet_pton(AF_INET, a.c_str(), &in) == 1;
}

// netshape tags: [A-Za-z0-9_.:/-], at most 200 characters.
std::string ShapeTag(const std::string& experiment, const std::string& link, bool forward) {
  std::string l = link;
  for (char& c : l) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.' || c == ':' ||
          c == '/' || c == '-')) {
      c = '.';
    }
  }
  std::string tag = experiment + ":" + l;
  if (tag.size() > 190) tag.resize(190);
  return tag + (forward ? ":fwd" : ":rev");
}

// Every problem of the shard, in shard order (the checks of ResolveShard).
std::vector<ShardObjectError> CheckShard(const v1::DeployShard& shard, const ResolveOptions& opt) {
  std::vector<ShardObjectError> errs;
  auto add = [&](std::string obj, std::string msg) {
    errs.push_back({std::move(obj), std::move(msg)});
  };
  Status es = ValidateExperimentId(shard.experiment_id());
  if (!es.ok()) add("shard", es.ToString());
  if (!shard.shaping_backend().empty()) {
    if (!opt.shaping_backend) {
      add("shard", "shaping backend '" + shard.shaping_backend() +
                       "' asked for, but no shaping backend works on this pnode");
    } else if (shard.shaping_backend() != netshape::BackendName(*opt.shaping_backend)) {
      add("shard", "shaping backend '" + shard.shaping_backend() +
                       "' asked for, this agent uses '" +
                       std::string(netshape::BackendName(*opt.shaping_backend)) + "'");
    }
  }
  // Interface names per vnode (links, bridges).
  std::map<std::string, std::set<std::string>> ifaces;
  for (const v1::VnodeSpec& v : shard.vnodes()) {
    const std::string obj = Obj("vnode", v.name());
    Status s = ValidateVnodeName(v.name());
    if (!s.ok()) add(obj, s.ToString());
    if (!ifaces.emplace(v.name(), std::set<std::string>{}).second) add(obj, "duplicate vnode name");
    if (!v.runtime().empty() && v.runtime() != opt.runtime_name) {
      add(obj, "runtime '" + v.runtime() + "' is not available on this pnode (it has '" +
                   opt.runtime_name + "')");
    }
    if (!v.kind().empty() && v.kind() != "host" && v.kind() != "router" && v.kind() != "switch") {
      add(obj, "kind '" + v.kind() + "': expected host, router or switch");
    }
  }
  std::set<std::string> link_names;
  std::map<uint32_t, std::string> vnis;  // VNI -> link
  auto check_end = [&](const std::string& obj, const v1::LinkEnd& e, const char* which) {
    auto it = ifaces.find(e.vnode());
    if (it == ifaces.end()) {
      add(obj, std::string("end ") + which + ": vnode '" + e.vnode() + "' is not in this shard");
      return;
    }
    Status s = ValidateIfname(e.ifname());
    if (!s.ok())
      add(obj, std::string("end ") + which + ": " + s.message());
    else if (!it->second.insert(e.ifname()).second) {
      add(obj, std::string("end ") + which + ": vnode " + e.vnode() + " has two interfaces named " +
                   e.ifname());
    }
    if (!e.address().empty()) {
      std::string a;
      uint8_t l;
      Status as = ParseCidr(e.address(), &a, &l, true);
      if (!as.ok()) add(obj, std::string("end ") + which + " address: " + as.message());
    }
  };
  auto check_profile = [&](const std::string& obj, const v1::LinkProfile& p, const char* dir) {
    Result<LinkProfile> lp = ProfileFromProto(p);
    if (!lp.ok()) {
      add(obj, std::string(dir) + ": " + lp.status().message());
      return;
    }
    if (lp->empty()) return;
    Status s = lp->Validate();
    if (!s.ok()) {
      add(obj, std::string(dir) + ": " + s.message());
      return;
    }
    if (!opt.shaping_backend) {
      add(obj, std::string(dir) + ": no shaping backend works on this pnode");
      return;
    }
    s = netshape::CheckBackendSupports(*lp, *opt.shaping_backend, opt.capabilities);
    if (!s.ok()) add(obj, std::string(dir) + ": " + s.message());
  };
  for (const v1::LinkSpec& l : shard.links()) {
    const std::string obj = Obj("link", l.name());
    if (l.name().empty()) add(obj, "link without a name");
    if (!link_names.insert(l.name()).second) add(obj, "duplicate link name");
    if (IsTunnel(l)) {
      const v1::Tunnel& t = l.tunnel();
      if (t.vni() == 0 || t.vni() > kVxlanMaxVni) {
        add(obj, "tunnel: VNI " + std::to_string(t.vni()) + " is out of range (1 to " +
                     std::to_string(kVxlanMaxVni) + ")");
      } else if (auto [it, fresh] = vnis.emplace(t.vni(), l.name()); !fresh) {
        add(obj, "tunnel: VNI " + std::to_string(t.vni()) + " is also used by link " + it->second);
      }
      if (!IsIpv4(t.remote_address())) {
        add(obj, "tunnel: remote address '" + t.remote_address() +
                     "' is not an IPv4 address (the other pnode's underlay address)");
      } else if (t.remote_address() == opt.local_address) {
        add(obj, "tunnel: remote address " + t.remote_address() + " is this pnode's own");
      }
      if (opt.local_address.empty()) {
        add(obj,
            "tunnel: this pnode has no underlay address (agent --address): it cannot "
            "make cross-pnode links");
      }
      if (t.local_end() != "a" && t.local_end() != "b") {
        add(obj, "tunnel: local_end '" + t.local_end() + "': expected a or b");
      } else {
        const bool la = t.local_end() == "a";
        const v1::LinkEnd& local = la ? l.a() : l.b();
        const v1::LinkEnd& remote = la ? l.b() : l.a();
        const char* rw = la ? "b" : "a";
        check_end(obj, local, la ? "a" : "b");
        if (ifaces.count(remote.vnode()) != 0) {
          add(obj, std::string("end ") + rw + ": vnode '" + remote.vnode() +
                       "' is in this shard, but the other end of a tunnel link must be on "
                       "another pnode");
        }
        if (remote.vnode().empty()) add(obj, std::string("end ") + rw + ": no vnode");
        Status rs = ValidateIfname(remote.ifname());
        if (!rs.ok()) add(obj, std::string("end ") + rw + ": " + rs.message());
        if (!remote.address().empty()) {
          std::string a;
          uint8_t len;
          Status as = ParseCidr(remote.address(), &a, &len, true);
          if (!as.ok()) add(obj, std::string("end ") + rw + " address: " + as.message());
        }
      }
      if (l.mtu() != 0 && (l.mtu() < 68 || l.mtu() > 65535)) {
        add(obj, "mtu " + std::to_string(l.mtu()) + " is out of range (68 to 65535)");
      }
      if (l.has_forward()) check_profile(obj, l.forward(), "forward");
      if (l.has_reverse()) check_profile(obj, l.reverse(), "reverse");
      continue;
    }
    check_end(obj, l.a(), "a");
    check_end(obj, l.b(), "b");
    if (l.a().vnode() == l.b().vnode()) add(obj, "both ends are on vnode " + l.a().vnode());
    if (l.has_forward()) check_profile(obj, l.forward(), "forward");
    if (l.has_reverse()) check_profile(obj, l.reverse(), "reverse");
  }
  for (const v1::BridgeSpec& b : shard.bridges()) {
    const std::string obj = Obj("bridge", b.vnode() + "/" + b.name());
    auto it = ifaces.find(b.vnode());
    if (it == ifaces.end()) {
      add(obj, "vnode '" + b.vnode() + "' is not in this shard");
      continue;
    }
    Status s = ValidateIfname(b.name());
    if (!s.ok()) add(obj, s.message());
    for (const std::string& p : b.ports()) {
      if (it->second.count(p) == 0) add(obj, "port " + p + " is not an interface of " + b.vnode());
    }
    if (s.ok() && !it->second.insert(b.name()).second) {
      add(obj, "name " + b.name() + " is taken by another interface");
    }
  }
  for (const v1::RouteSpec& r : shard.routes()) {
    const std::string obj = "route " + r.vnode() + " " + r.destination();
    auto it = ifaces.find(r.vnode());
    if (it == ifaces.end()) {
      add(obj, "vnode '" + r.vnode() + "' is not in this shard");
      continue;
    }
    std::string a;
    uint8_t len;
    if (r.destination() != "default") {
      Status s = ParseCidr(r.destination(), &a, &len, false);
      if (!s.ok()) add(obj, "destination " + s.message());
    }
    if (!r.via().empty()) {
      Status s = ParseCidr(r.via(), &a, &len, false);
      if (!s.ok()) add(obj, "via " + s.message());
    }
    if (r.via().empty() && r.dev().empty()) add(obj, "needs a gateway (via) or a device (dev)");
    if (!r.dev().empty() && it->second.count(r.dev()) == 0) {
      add(obj, "dev " + r.dev() + " is not an interface of " + r.vnode());
    }
  }
  return errs;
}


// The plan of a shard CheckShard found sound.
Result<ShardPlan> Build(const v1::DeployShard& shard, const ResolveOptions& opt) {
  ShardPlan p;
  p.experiment = shard.experiment_id();
  p.generation = shard.generation();
  p.seed = shard.seed();
  p.shared_dir = shard.shared_dir();
  p.output_dir = shard.output_dir();
  p.metrics_interval = std::chrono::milliseconds(shard.metrics_interval_ms());
  p.source = shard;
  auto hosts = std::make_shared<HostsTable>();
  hosts->reserve(shard.hosts_size());
  for (const v1::HostEntry& h : shard.hosts()) {
    hosts->push_back(HostsEntry{h.name(), {h.addresses().begin(), h.addresses().end()}});
  }
  // Each local vnode's addresses (its hosts entry; the first is the primary one).
  std::unordered_map<std::string_view, const v1::HostEntry*> own;
  own.reserve(shard.vnodes_size());
  for (const v1::VnodeSpec& v : shard.vnodes()) own.emplace(v.name(), nullptr);
  for (const v1::HostEntry& h : shard.hosts()) {
    if (auto it = own.find(h.name()); it != own.end() && it->second == nullptr) it->second = &h;
  }
  const std::string tag_base = opt.prefix + ":" + p.experiment + ":";
  p.vnodes.reserve(shard.vnodes_size());
  p.roles.reserve(shard.vnodes_size());
  for (const v1::VnodeSpec& v : shard.vnodes()) {
    VnodeSpec vs;
    vs.experiment = p.experiment;
    vs.name = v.name();
    vs.index = v.group_index() > 0 ? static_cast<uint32_t>(v.group_index()) : 0;
    if (v.resources().has_cpu_millicores()) {
      vs.resources.cpu_cores = v.resources().cpu_millicores() / 1000.0;
    }
    if (v.resources().has_memory_bytes()) vs.resources.memory_bytes = v.resources().memory_bytes();
    if (v.resources().has_pids()) vs.resources.pids = v.resources().pids();
    vs.hosts = hosts;
    vs.out_dir = p.output_dir.empty()
                     ? opt.default_output_dir + "/" + p.experiment + "/" + v.name()
                     : p.output_dir + "/" + v.name();
    vs.shared_dir = p.shared_dir;
    if (!v.group().empty()) vs.env.emplace_back("GRIDEMU_GROUP", v.group());
    if (const v1::HostEntry* h = own[v.name()]; h != nullptr && h->addresses_size() > 0) {
      std::string all;
      for (const std::string& a : h->addresses()) all += (all.empty() ? "" : " ") + a;
      vs.env.emplace_back("GRIDEMU_ADDR", h->addresses(0));
      vs.env.emplace_back("GRIDEMU_ADDRS", std::move(all));
    }
    p.vnode_index[v.name()] = p.vnodes.size();
    p.vnodes.push_back(std::move(vs));
    p.roles.push_back(VnodeRole{v.kind().empty() ? "host" : v.kind(), v.forwarding()});
  }
  p.links.reserve(shard.links_size());
  for (const v1::LinkSpec& l : shard.links()) {
    LinkPlan lp;
    lp.name = l.name();
    lp.tag = tag_base + l.name();
    lp.vnode_a = l.a().vnode();
    lp.vnode_b = l.b().vnode();
    lp.if_a = l.a().ifname();
    lp.if_b = l.b().ifname();
    if (!l.a().address().empty())
      GRIDEMU_RETURN_IF_ERROR(ParseCidr(l.a().address(), &lp.addr_a, &lp.len_a, true));
    if (!l.b().address().empty())
      GRIDEMU_RETURN_IF_ERROR(ParseCidr(l.b().address(), &lp.addr_b, &lp.len_b, true));
    lp.mtu = l.mtu();
    if (IsTunnel(l)) {
      lp.tunnel = TunnelPlan{l.tunnel().vni(), l.tunnel().remote_address(),
                             l.tunnel().local_end() == "a"};
    }
    if (l.has_forward()) {
      GRIDEMU_ASSIGN_OR_RETURN(lp.forward, ProfileFromProto(l.forward()));
    }
    if (l.has_reverse()) {
      GRIDEMU_ASSIGN_OR_RETURN(lp.reverse, ProfileFromProto(l.reverse()));
    }
    lp.forward_tag = ShapeTag(p.experiment, l.name(), true);
    lp.reverse_tag = ShapeTag(p.experiment, l.name(), false);
    lp.reshaped = l.reshaped();
    if (opt.shaping_backend == netshape::Backend::kUserspace &&
        (HasImpairment(lp.forward) || HasImpairment(lp.reverse) || lp.reshaped)) {
      const std::string base = "l" + std::to_string(p.links.size());
      const auto n = static_cast<uint32_t>(p.links.size());
      WirePlan w{base, base + "a", base + "b", n + 1, kPortIfindexBase + 2 * n,
                 kPortIfindexBase + 2 * n + 1};
      if (lp.tunnel) (lp.tunnel->local_a ? w.port_b : w.port_a) = base + "x";
      lp.wire = w;
    }
    p.link_index[lp.name] = p.links.size();
    p.links.push_back(std::move(lp));
  }
  if (p.links.size() >= 0xffff) {
    bool any = false;
    for (const LinkPlan& l : p.links) any = any || l.wire.has_value();
    if (any) {
      return InvalidArgumentError("shard: " + std::to_string(p.links.size()) +
                                  " links; a wire namespace takes at most 65,534");
    }
  }
  for (const LinkPlan& l : p.links) {
    if (!l.wire) continue;
    VnodeSpec w;
    w.experiment = p.experiment;
    w.name = ShardPlan::kWireVnode;
    p.wire = std::move(w);
    break;
  }
  for (const v1::BridgeSpec& b : shard.bridges()) {
    p.bridges.push_back(BridgePlan{b.vnode(), b.name(), {b.ports().begin(), b.ports().end()},
                                   tag_base + b.vnode() + "/" + b.name()});
  }
  // Ends that are ports of a switch vnode's bridge get an interface index of their own
  // (see VethSpec::ifindex_a).
  std::set<std::pair<std::string, std::string>> ports;
  for (const BridgePlan& b : p.bridges) {
    for (const std::string& port : b.ports) ports.emplace(b.vnode, port);
  }
  for (size_t i = 0; i < p.links.size() && !ports.empty(); ++i) {
    LinkPlan& l = p.links[i];
    const uint32_t index = kPortIfindexBase + static_cast<uint32_t>(i);
    if (l.has_a() && ports.count({l.vnode_a, l.if_a})) l.port_ifindex_a = index;
    // Of a switch--switch link only end a: the other end's kernel-chosen index then
    // differs from its peer's too.
    if (l.has_b() && l.port_ifindex_a == 0 && ports.count({l.vnode_b, l.if_b})) {
      l.port_ifindex_b = index;
    }
  }
  for (const v1::RouteSpec& r : shard.routes()) {
    RoutePlan rp;
    rp.vnode = r.vnode();
    if (r.destination() == "default") {
      rp.dst = "0.0.0.0";
      rp.prefix_len = 0;
    } else {
      GRIDEMU_RETURN_IF_ERROR(ParseCidr(r.destination(), &rp.dst, &rp.prefix_len, false));
    }
    rp.gateway = r.via();
    rp.ifname = r.dev();
    p.routes.push_back(std::move(rp));
  }
  return p;
}

}  // namespace

netshape::ShapeHalf LinkPlan::Half(bool forward_dir) const {
  if (!tunnel) return netshape::ShapeHalf::kBoth;
  // forward = a -> b: its sender is local when a is.
  return forward_dir == tunnel->local_a ? netshape::ShapeHalf::kSenderOnly
                                        : netshape::ShapeHalf::kReceiverOnly;
}

bool HasImpairment(const LinkProfile& p) {
  LinkProfile kernel_only;
  kernel_only.rate_bps = p.rate_bps;
  kernel_only.queue_packets = p.queue_packets;
  return !p.empty() && !(p == kernel_only);
}

uint32_t ShardPlan::objects() const {
  uint32_t n = static_cast<uint32_t>(vnodes.size());
  for (const LinkPlan& l : links) n += l.objects();
  return n;
}

std::vector<const RoutePlan*> ShardPlan::RoutesVia(const std::string& vnode,
                                                   const std::string& ifname) const {
  std::vector<const RoutePlan*> out;
  for (const RoutePlan& r : routes) {
    if (r.vnode == vnode && r.ifname == ifname) out.push_back(&r);
  }
  return out;
}

Status ParseCidr(const std::string& text, std::string* addr, uint8_t* len, bool need_len) {
  std::string a = text;
  int l = 32;
  const size_t slash = text.find('/');
  if (slash != std::string::npos) {
    a = text.substr(0, slash);
    const std::string ls = text.substr(slash + 1);
    if (ls.empty() || ls.size() > 2 || ls.find_first_not_of("0123456789") != std::string::npos) {
      return InvalidArgumentError("'" + text + "': bad prefix length; expected a.b.c.d/0-32");
    }
    l = std::stoi(ls);
    if (l > 32) return InvalidArgumentError("'" + text + "': prefix length above 32");
  } else if (need_len) {
    return InvalidArgumentError("'" + text + "': expected a.b.c.d/len");
  }
  in_addr in{};
  if (inet_pton(AF_INET, a.c_str(), &in) != 1) {
    return InvalidArgumentError("'" + text + "': not an IPv4 address");
  }
  *addr = a;
  *len = static_cast<uint8_t>(l);
  return Status::Ok();
}

Result<ShardPlan> ResolveShard(const v1::DeployShard& shard, const ResolveOptions& options,
                               std::vector<ShardObjectError>* errors) {
  std::vector<ShardObjectError> errs = CheckShard(shard, options);
  if (!errs.empty()) {
    Status st = InvalidArgumentError(
        errs.front().object + ": " + errs.front().message +
        (errs.size() > 1 ? " (and " + std::to_string(errs.size() - 1) + " more problems)" : ""));
    if (errors != nullptr) *errors = std::move(errs);
    return st;
  }
  if (errors != nullptr) errors->clear();
  return Build(shard, options);
}

}  // namespace gridemu::agent

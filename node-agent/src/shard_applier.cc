#include "gridemu/node-agent/shard_applier.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <deque>
#include <fstream>
#include <set>
#include <sstream>
#include <thread>

#include "gridemu/common/clock.h"
#include "gridemu/node-agent/agent_convert.h"
#include "gridemu/netshape/capabilities.h"

namespace gridemu::agent {

// ---------------------------------------------------------------------------
// State.

struct ShardApplier::LinkState {
  std::string name;
  std::string vnode_a, vnode_b;
  std::string if_a, if_b;
  std::string ns_a, ns_b;  // netns paths, filled once the vnodes exist
  std::string addr_a, addr_b;
  uint8_t len_a = 0, len_b = 0;
  uint32_t mtu = 0;
  LinkProfile fwd_profile, rev_profile;
  std::unique_ptr<netshape::ShapedLink> fwd, rev;
  // A cross-pnode link: only one end is here (a VXLAN device).
  bool tunnel = false;
  bool local_a = true;  // tunnel: end a is the local one (else end b)
  uint32_t vni = 0;
  std::string remote;  // the other pnode's underlay address
  bool has_a() const { return !tunnel || local_a; }
  bool has_b() const { return !tunnel || !local_a; }
  // The shaping half of a direction on this pnode.
  netshape::ShapeHalf Half(bool forward) const {
    if (!tunnel) return netshape::ShapeHalf::kBoth;
    // forward = a -> b: its sender is local when a is.
    return forward == local_a ? netshape::ShapeHalf::kSenderOnly
                              : netshape::ShapeHalf::kReceiverOnly;
  }
};

struct ShardApplier::ShardState {
  v1::DeployShard spec;
  std::string experiment;
  uint64_t generation = 0;
  std::map<std::string, std::string> netns;  // vnode -> netns path
  std::vector<LinkState> links;
  std::map<std::string, size_t> link_index;
  std::shared_ptr<const HostsTable> hosts;
  bool complete = false;
};

namespace {

using Clock = std::chrono::steady_clock;

double Secs(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

// "10.0.0.1/31" -> address and length. `need_len`: the "/len" part is required.
Status ParseCidr(const std::string& text, std::string* addr, uint8_t* len, bool need_len) {
  std::string a = text;
  int l = 32;
  size_t slash = text.find('/');
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

Status MakeDirs(const std::string& path) {
  if (path.empty()) return Status::Ok();
  std::string cur;
  std::stringstream ss(path);
  std::string part;
  if (path[0] == '/') cur = "/";
  while (std::getline(ss, part, '/')) {
    if (part.empty()) continue;
    cur += (cur.empty() || cur.back() == '/' ? "" : "/") + part;
    if (::mkdir(cur.c_str(), 0755) != 0 && errno != EEXIST) {
      return InternalError("mkdir " + cur + ": " + std::strerror(errno));
    }
  }
  return Status::Ok();
}

Status WriteFileAtomic(const std::string& path, const std::string& data) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    if (!f) return InternalError("cannot write " + tmp + ": " + std::strerror(errno));
    f.write(data.data(), static_cast<std::streamsize>(data.size()));
    f.flush();
    if (!f) return InternalError("cannot write " + tmp);
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    return InternalError("rename " + tmp + ": " + std::strerror(errno));
  }
  return Status::Ok();
}

Result<std::string> ReadFile(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return NotFoundError("cannot read " + path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

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

// True when a profile asks for more than a rate and a queue (a delay line with
// the userspace backend).
bool HasImpairment(const LinkProfile& p) {
  LinkProfile kernel_only;
  kernel_only.rate_bps = p.rate_bps;
  kernel_only.queue_packets = p.queue_packets;
  return !(p == kernel_only);
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

// ---------------------------------------------------------------------------

ShardApplier::ShardApplier(VnodeRuntime* runtime, netshape::Shaper* shaper,
                           ShardApplierOptions options)
    : runtime_(runtime), shaper_(shaper), options_(std::move(options)) {}

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

std::optional<uint64_t> ShardApplier::Generation(const std::string& experiment) const {
  auto s = Find(experiment);
  if (s == nullptr || !s->complete) return std::nullopt;
  return s->generation;
}

std::map<std::string, uint64_t> ShardApplier::Experiments() const {
  std::map<std::string, uint64_t> out;
  std::lock_guard<std::mutex> l(mu_);
  for (const auto& [e, s] : shards_) out[e] = s->generation;
  return out;
}

bool ShardApplier::HasVnode(const std::string& experiment, const std::string& vnode) const {
  auto s = Find(experiment);
  return s != nullptr && s->netns.count(vnode) != 0;
}

const v1::DeployShard* ShardApplier::Shard(const std::string& experiment) const {
  auto s = Find(experiment);
  return s == nullptr ? nullptr : &s->spec;
}

std::string ShardApplier::VnodeOutputDir(const std::string& experiment,
                                         const std::string& vnode) const {
  auto s = Find(experiment);
  if (s != nullptr && !s->spec.output_dir().empty()) return s->spec.output_dir() + "/" + vnode;
  std::string base = options_.records_dir.empty() ? "/tmp/" + options_.prefix + "-out"
                                                  : options_.records_dir + "/out";
  return base + "/" + experiment + "/" + vnode;
}

// ---------------------------------------------------------------------------
// Checking.

std::vector<ShardObjectError> ShardApplier::Check(const v1::DeployShard& shard) const {
  std::vector<ShardObjectError> errs;
  auto add = [&](std::string obj, std::string msg) {
    errs.push_back({std::move(obj), std::move(msg)});
  };
  Status es = ValidateExperimentId(shard.experiment_id());
  if (!es.ok()) add("shard", es.ToString());
  if (!shard.shaping_backend().empty()) {
    if (shaper_ == nullptr) {
      add("shard", "shaping backend '" + shard.shaping_backend() +
                       "' asked for, but no shaping backend works on this pnode");
    } else if (shard.shaping_backend() != netshape::BackendName(shaper_->backend())) {
      add("shard", "shaping backend '" + shard.shaping_backend() +
                       "' asked for, this agent uses '" +
                       std::string(netshape::BackendName(shaper_->backend())) + "'");
    }
  }
  // Interface names per vnode (links, bridges).
  std::map<std::string, std::set<std::string>> ifaces;
  for (const v1::VnodeSpec& v : shard.vnodes()) {
    const std::string obj = Obj("vnode", v.name());
    Status s = ValidateVnodeName(v.name());
    if (!s.ok()) add(obj, s.ToString());
    if (!ifaces.emplace(v.name(), std::set<std::string>{}).second) add(obj, "duplicate vnode name");
    if (!v.runtime().empty() && v.runtime() != runtime_->name()) {
      add(obj, "runtime '" + v.runtime() + "' is not available on this pnode (it has '" +
                   std::string(runtime_->name()) + "')");
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
    if (shaper_ == nullptr) {
      add(obj, std::string(dir) + ": no shaping backend works on this pnode");
      return;
    }
    s = netshape::CheckBackendSupports(*lp, shaper_->backend(), shaper_->capabilities());
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
      } else if (t.remote_address() == options_.local_address) {
        add(obj, "tunnel: remote address " + t.remote_address() + " is this pnode's own");
      }
      if (options_.local_address.empty()) {
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

Result<std::shared_ptr<ShardApplier::ShardState>> ShardApplier::BuildState(
    const v1::DeployShard& shard) const {
  auto s = std::make_shared<ShardState>();
  s->spec = shard;
  s->experiment = shard.experiment_id();
  s->generation = shard.generation();
  auto hosts = std::make_shared<HostsTable>();
  for (const v1::HostEntry& h : shard.hosts()) {
    hosts->push_back(HostsEntry{h.name(), {h.addresses().begin(), h.addresses().end()}});
  }
  s->hosts = std::move(hosts);
  for (const v1::VnodeSpec& v : shard.vnodes()) s->netns[v.name()] = "";
  s->links.reserve(shard.links_size());
  for (const v1::LinkSpec& l : shard.links()) {
    LinkState ls;
    ls.name = l.name();
    ls.vnode_a = l.a().vnode();
    ls.vnode_b = l.b().vnode();
    ls.if_a = l.a().ifname();
    ls.if_b = l.b().ifname();
    if (!l.a().address().empty())
      GRIDEMU_RETURN_IF_ERROR(ParseCidr(l.a().address(), &ls.addr_a, &ls.len_a, true));
    if (!l.b().address().empty())
      GRIDEMU_RETURN_IF_ERROR(ParseCidr(l.b().address(), &ls.addr_b, &ls.len_b, true));
    ls.mtu = l.mtu();
    if (IsTunnel(l)) {
      ls.tunnel = true;
      ls.local_a = l.tunnel().local_end() == "a";
      ls.vni = l.tunnel().vni();
      ls.remote = l.tunnel().remote_address();
    }
    if (l.has_forward()) {
      GRIDEMU_ASSIGN_OR_RETURN(ls.fwd_profile, ProfileFromProto(l.forward()));
    }
    if (l.has_reverse()) {
      GRIDEMU_ASSIGN_OR_RETURN(ls.rev_profile, ProfileFromProto(l.reverse()));
    }
    s->link_index[ls.name] = s->links.size();
    s->links.push_back(std::move(ls));
  }
  return s;
}

// ---------------------------------------------------------------------------
// Records.

Status ShardApplier::WriteRecord(const v1::DeployShard& shard, const std::string& phase) const {
  if (options_.records_dir.empty()) return Status::Ok();
  GRIDEMU_RETURN_IF_ERROR(MakeDirs(options_.records_dir));
  const std::string base = options_.records_dir + "/" + shard.experiment_id();
  if (phase == "deploying") {
    std::string bytes;
    if (!shard.SerializeToString(&bytes)) return InternalError("cannot serialise the shard");
    GRIDEMU_RETURN_IF_ERROR(WriteFileAtomic(base + ".shard", bytes));
  }
  return WriteFileAtomic(base + ".phase", phase + " " + std::to_string(shard.generation()) + "\n");
}

Status ShardApplier::RemoveRecord(const std::string& records_dir, const std::string& experiment) {
  if (records_dir.empty()) return Status::Ok();
  Status first;
  for (const char* ext : {".shard", ".phase", ".shard.tmp", ".phase.tmp"}) {
    const std::string p = records_dir + "/" + experiment + ext;
    if (::unlink(p.c_str()) != 0 && errno != ENOENT && first.ok()) {
      first = InternalError("unlink " + p + ": " + std::strerror(errno));
    }
  }
  // The experiment's default output directory, if it was used and is empty.
  ::rmdir((records_dir + "/out/" + experiment).c_str());
  return first;
}

// ---------------------------------------------------------------------------
// Deploy.

Status ShardApplier::Plumb(const ShardState& s, const std::vector<size_t>& links, bool links_only) {
  PlumbingBatch b;
  const std::string tag_base = options_.prefix + ":" + s.experiment + ":";
  std::vector<VxlanSpec> tunnels;
  for (size_t i : links) {
    const LinkState& l = s.links[i];
    if (l.tunnel) {
      VxlanSpec v;
      v.underlay_ns = options_.underlay_ns;
      v.underlay_dev = options_.underlay_dev;
      v.vni = l.vni;
      v.local = options_.local_address;
      v.remote = l.remote;
      v.dst_port = options_.vxlan_port;
      v.ns = NetnsRef::AtPath(l.local_a ? l.ns_a : l.ns_b);
      v.name = l.local_a ? l.if_a : l.if_b;
      v.mtu = l.mtu;
      v.tag = tag_base + l.name;
      tunnels.push_back(std::move(v));
      const std::string& addr = l.local_a ? l.addr_a : l.addr_b;
      if (!addr.empty()) {
        b.addresses.push_back({NetnsRef::AtPath(l.local_a ? l.ns_a : l.ns_b),
                               l.local_a ? l.if_a : l.if_b, addr, l.local_a ? l.len_a : l.len_b});
      }
      continue;
    }
    VethSpec v;
    v.ns_a = NetnsRef::AtPath(l.ns_a);
    v.name_a = l.if_a;
    v.ns_b = NetnsRef::AtPath(l.ns_b);
    v.name_b = l.if_b;
    v.mtu = l.mtu;
    v.tag = tag_base + l.name;
    b.veths.push_back(std::move(v));
    if (!l.addr_a.empty())
      b.addresses.push_back({NetnsRef::AtPath(l.ns_a), l.if_a, l.addr_a, l.len_a});
    if (!l.addr_b.empty())
      b.addresses.push_back({NetnsRef::AtPath(l.ns_b), l.if_b, l.addr_b, l.len_b});
  }
  if (!links_only) {
    for (const v1::BridgeSpec& br : s.spec.bridges()) {
      BridgeSpec bs;
      bs.ns = NetnsRef::AtPath(s.netns.at(br.vnode()));
      bs.name = br.name();
      bs.ports.assign(br.ports().begin(), br.ports().end());
      bs.tag = tag_base + br.vnode() + "/" + br.name();
      b.bridges.push_back(std::move(bs));
    }
    for (const v1::VnodeSpec& v : s.spec.vnodes()) {
      if (v.forwarding()) b.forwarding.push_back(NetnsRef::AtPath(s.netns.at(v.name())));
    }
    for (const v1::RouteSpec& r : s.spec.routes()) {
      RouteSpec rs;
      rs.ns = NetnsRef::AtPath(s.netns.at(r.vnode()));
      if (r.destination() == "default") {
        rs.dst = "0.0.0.0";
        rs.prefix_len = 0;
      } else {
        GRIDEMU_RETURN_IF_ERROR(ParseCidr(r.destination(), &rs.dst, &rs.prefix_len, false));
      }
      rs.gateway = r.via();
      rs.ifname = r.dev();
      b.routes.push_back(std::move(rs));
    }
  }
  if (!tunnels.empty()) {
    // One device at a time (four requests each, plumbing_vxlan.h); on failure
    // the caller removes the vnodes, and the devices with them.
    GRIDEMU_ASSIGN_OR_RETURN(std::unique_ptr<VxlanPlumbing> vx, NewNetlinkVxlanPlumbing());
    for (const VxlanSpec& v : tunnels) {
      GRIDEMU_RETURN_IF_ERROR(
          vx->CreateVxlan(v).WithContext("link " + v.tag.substr(tag_base.size())));
    }
  }
  GRIDEMU_ASSIGN_OR_RETURN(std::unique_ptr<Plumbing> p, NewNetlinkPlumbing());
  return p->Apply(b);
}

Status ShardApplier::CleanupUnderlay(const std::string& experiment) const {
  // Without an underlay address no tunnel was made by this configuration;
  // `gridemu clean` sweeps the home namespace anyway.
  if (options_.local_address.empty()) return Status::Ok();
  GRIDEMU_ASSIGN_OR_RETURN(std::unique_ptr<VxlanPlumbing> vx, NewNetlinkVxlanPlumbing());
  Result<size_t> n =
      vx->DeleteTagged(options_.underlay_ns, options_.prefix + ":" + experiment + ":");
  if (!n.ok()) return n.status().WithContext("underlay interfaces");
  return Status::Ok();
}

Status ShardApplier::ShapeLinks(ShardState& s, const std::vector<size_t>& links) {
  if (shaper_ == nullptr) return Status::Ok();
  std::vector<netshape::ShapeRequest> reqs;
  std::vector<std::pair<size_t, bool>> where;  // (link, forward)
  for (size_t i : links) {
    LinkState& l = s.links[i];
    if (!l.fwd_profile.empty() && l.fwd == nullptr) {
      netshape::ShapeRequest r;
      r.sender = {l.ns_a, l.if_a};
      r.receiver = {l.ns_b, l.if_b};
      r.profile = l.fwd_profile;
      r.tag = ShapeTag(s.experiment, l.name, true);
      r.direction = netshape::Direction::kForward;
      r.half = l.Half(true);
      reqs.push_back(std::move(r));
      where.emplace_back(i, true);
    }
    if (!l.rev_profile.empty() && l.rev == nullptr) {
      netshape::ShapeRequest r;
      r.sender = {l.ns_b, l.if_b};
      r.receiver = {l.ns_a, l.if_a};
      r.profile = l.rev_profile;
      r.tag = ShapeTag(s.experiment, l.name, false);
      r.direction = netshape::Direction::kReverse;
      r.half = l.Half(false);
      reqs.push_back(std::move(r));
      where.emplace_back(i, false);
    }
  }
  if (reqs.empty()) return Status::Ok();
  GRIDEMU_ASSIGN_OR_RETURN(auto shaped, shaper_->ShapeMany(reqs));
  for (size_t k = 0; k < shaped.size(); ++k) {
    LinkState& l = s.links[where[k].first];
    (where[k].second ? l.fwd : l.rev) = std::move(shaped[k]);
  }
  return Status::Ok();
}

void ShardApplier::RemoveShaping(ShardState& s, std::vector<ShardObjectError>* errors) {
  if (shaper_ == nullptr) return;
  std::vector<std::unique_ptr<netshape::ShapedLink>> all;
  for (LinkState& l : s.links) {
    if (l.fwd) all.push_back(std::move(l.fwd));
    if (l.rev) all.push_back(std::move(l.rev));
  }
  if (all.empty()) return;
  Status st = shaper_->RemoveMany(all);
  if (!st.ok() && errors != nullptr) errors->push_back({"shaping", st.ToString()});
  all.clear();  // destructors retry what RemoveMany could not remove
}

DeployReport ShardApplier::Deploy(const v1::DeployShard& shard, const DeployProgressFn& progress) {
  DeployReport rep;
  const auto t0 = Clock::now();
  const std::string& exp = shard.experiment_id();
  auto finish = [&]() -> DeployReport {
    rep.timings.total_s = Secs(t0, Clock::now());
    return rep;
  };
  if (auto existing = Find(exp)) {
    if (existing->generation == shard.generation() && existing->complete) {
      rep.ok = true;
      rep.already_deployed = true;
      rep.total = rep.done =
          static_cast<uint32_t>(existing->spec.vnodes_size() + existing->spec.links_size());
      return finish();
    }
    if (shard.generation() < existing->generation) {
      rep.errors.push_back({"shard", "failed precondition: generation " +
                                         std::to_string(shard.generation()) +
                                         " is older than the deployed generation " +
                                         std::to_string(existing->generation)});
    } else {
      rep.errors.push_back({"shard", "unimplemented: experiment " + exp +
                                         " is deployed at generation " +
                                         std::to_string(existing->generation) +
                                         "; changing a deployed shard is not supported yet "
                                         "(tear it down first)"});
    }
    return finish();
  }
  rep.errors = Check(shard);
  rep.timings.check_s = Secs(t0, Clock::now());
  if (!rep.errors.empty()) return finish();
  Result<std::shared_ptr<ShardState>> built = BuildState(shard);
  if (!built.ok()) {
    rep.errors.push_back({"shard", built.status().ToString()});
    return finish();
  }
  std::shared_ptr<ShardState> s = *built;
  size_t shaped_links = 0;
  for (const LinkState& l : s->links) {
    if (!l.fwd_profile.empty() || !l.rev_profile.empty()) ++shaped_links;
  }
  rep.total = static_cast<uint32_t>(s->netns.size() + s->links.size() + shaped_links);
  auto report = [&] {
    if (progress) progress(rep.done, rep.total);
  };
  {
    std::lock_guard<std::mutex> l(mu_);
    shards_[exp] = s;
  }
  auto rollback = [&]() -> DeployReport {
    RemoveShaping(*s, &rep.errors);
    Status c = runtime_->CleanupExperiment(exp);
    if (!c.ok()) rep.errors.push_back({"cleanup", c.ToString()});
    Status u = CleanupUnderlay(exp);
    if (!u.ok()) rep.errors.push_back({"cleanup", u.ToString()});
    Status r = RemoveRecord(options_.records_dir, exp);
    if (!r.ok()) rep.errors.push_back({"record", r.ToString()});
    {
      std::lock_guard<std::mutex> l(mu_);
      shards_.erase(exp);
    }
    rep.ok = false;
    return finish();
  };
  Status rec = WriteRecord(shard, "deploying");
  if (!rec.ok()) {
    rep.errors.push_back({"record", rec.ToString()});
    return rollback();
  }
  report();

  // 1. Vnodes.
  const auto tv = Clock::now();
  std::vector<VnodeSpec> specs;
  specs.reserve(shard.vnodes_size());
  for (const v1::VnodeSpec& v : shard.vnodes()) {
    VnodeSpec vs;
    vs.experiment = exp;
    vs.name = v.name();
    vs.index = v.group_index() > 0 ? static_cast<uint32_t>(v.group_index()) : 0;
    if (v.resources().has_cpu_millicores()) {
      vs.resources.cpu_cores = v.resources().cpu_millicores() / 1000.0;
    }
    if (v.resources().has_memory_bytes()) vs.resources.memory_bytes = v.resources().memory_bytes();
    if (v.resources().has_pids()) vs.resources.pids = v.resources().pids();
    vs.hosts = s->hosts;
    vs.out_dir = VnodeOutputDir(exp, v.name());
    vs.shared_dir = shard.shared_dir();
    if (!v.group().empty()) vs.env.emplace_back("GRIDEMU_GROUP", v.group());
    specs.push_back(std::move(vs));
  }
  // Vnodes are made in chunks on this thread. Links whose two vnodes exist
  // are handed, in batches, to a worker that plumbs and shapes them while the
  // next chunk of vnodes is being made (creating namespaces mostly waits on
  // the kernel, so the two overlap well). Once every vnode exists this thread
  // drains the remaining batches with the worker; then bridges, forwarding
  // and routes, which need every interface, are applied in one batch.
  std::map<std::string, size_t> vnode_index;
  for (size_t i = 0; i < specs.size(); ++i) vnode_index[specs[i].name] = i;
  std::vector<char> made(specs.size(), 0);
  std::vector<std::vector<size_t>> links_of(specs.size());
  for (size_t i = 0; i < s->links.size(); ++i) {
    if (s->links[i].has_a()) links_of[vnode_index.at(s->links[i].vnode_a)].push_back(i);
    if (s->links[i].has_b()) links_of[vnode_index.at(s->links[i].vnode_b)].push_back(i);
  }
  std::vector<char> handed(s->links.size(), 0);
  const size_t batch_max = std::max<size_t>(1, options_.link_chunk / 2);

  struct Pipe {
    std::mutex mu;
    std::condition_variable cv;
    std::deque<std::vector<size_t>> queue;
    size_t busy = 0;  // batches being worked on
    bool closing = false;
    std::vector<ShardObjectError> errors;
    uint32_t done = 0;
    double plumb_s = 0, shape_s = 0;
  } pipe;
  auto work = [&](std::vector<size_t> batch) {
    const auto a = Clock::now();
    Status st = Plumb(*s, batch, true);
    const auto b = Clock::now();
    Status sh = st.ok() ? ShapeLinks(*s, batch) : Status::Ok();
    const auto c = Clock::now();
    uint32_t n = 0;
    for (size_t k : batch) {
      ++n;
      if (!s->links[k].fwd_profile.empty() || !s->links[k].rev_profile.empty()) ++n;
    }
    std::lock_guard<std::mutex> l(pipe.mu);
    pipe.plumb_s += Secs(a, b);
    pipe.shape_s += Secs(b, c);
    if (!st.ok()) pipe.errors.push_back({"links", st.ToString()});
    if (!sh.ok()) pipe.errors.push_back({"shaping", sh.ToString()});
    if (st.ok() && sh.ok()) pipe.done += n;
  };
  // Takes one batch; false when there is none (and, if `wait`, none will come).
  auto take_one = [&](bool wait) -> bool {
    std::vector<size_t> batch;
    {
      std::unique_lock<std::mutex> l(pipe.mu);
      if (wait) pipe.cv.wait(l, [&] { return !pipe.queue.empty() || pipe.closing; });
      if (pipe.queue.empty() || !pipe.errors.empty()) {
        pipe.queue.clear();
        return false;
      }
      batch = std::move(pipe.queue.front());
      pipe.queue.pop_front();
      ++pipe.busy;
    }
    work(std::move(batch));
    {
      std::lock_guard<std::mutex> l(pipe.mu);
      --pipe.busy;
    }
    pipe.cv.notify_all();
    return true;
  };
  std::thread worker;
  auto start_worker = [&] {
    if (!worker.joinable()) {
      worker = std::thread([&] {
        while (take_one(true)) {
        }
      });
    }
  };
  if (options_.overlap_links) start_worker();
  auto pipe_done = [&] {
    std::lock_guard<std::mutex> l(pipe.mu);
    return pipe.done;
  };
  uint32_t vnodes_done = 0;
  const size_t vchunk = std::max<size_t>(1, options_.vnode_chunk);
  for (size_t i = 0; i < specs.size(); i += vchunk) {
    const size_t n = std::min(vchunk, specs.size() - i);
    std::vector<Status> st = runtime_->CreateBatch(std::span(specs.data() + i, n));
    for (size_t k = 0; k < n; ++k) {
      if (!st[k].ok()) {
        rep.errors.push_back({Obj("vnode", specs[i + k].name), st[k].ToString()});
        continue;
      }
      Result<VnodeInfo> info = runtime_->Info(VnodeRef{exp, specs[i + k].name});
      if (!info.ok()) {
        rep.errors.push_back({Obj("vnode", specs[i + k].name), info.status().ToString()});
        continue;
      }
      s->netns[specs[i + k].name] = info->netns_path;
      made[i + k] = 1;
      ++vnodes_done;
    }
    if (!rep.errors.empty()) break;
    // Links now complete.
    std::vector<size_t> ready;
    for (size_t k = i; k < i + n; ++k) {
      for (size_t li : links_of[k]) {
        LinkState& l = s->links[li];
        if (handed[li] || (l.has_a() && !made[vnode_index.at(l.vnode_a)]) ||
            (l.has_b() && !made[vnode_index.at(l.vnode_b)])) {
          continue;
        }
        handed[li] = 1;
        if (l.has_a()) l.ns_a = s->netns.at(l.vnode_a);
        if (l.has_b()) l.ns_b = s->netns.at(l.vnode_b);
        ready.push_back(li);
      }
    }
    {
      std::lock_guard<std::mutex> l(pipe.mu);
      const size_t per = std::max<size_t>(1, std::min(batch_max, (ready.size() + 1) / 2));
      for (size_t b = 0; b < ready.size(); b += per) {
        pipe.queue.emplace_back(
            ready.begin() + static_cast<std::ptrdiff_t>(b),
            ready.begin() + static_cast<std::ptrdiff_t>(std::min(ready.size(), b + per)));
      }
    }
    pipe.cv.notify_all();
    rep.done = vnodes_done + pipe_done();
    report();
  }
  rep.timings.vnodes_s = Secs(tv, Clock::now());
  const auto tl = Clock::now();
  start_worker();
  // Help the worker with what is left, then let it go.
  if (rep.errors.empty()) {
    while (take_one(false)) {
      rep.done = vnodes_done + pipe_done();
      report();
    }
  }
  {
    std::unique_lock<std::mutex> l(pipe.mu);
    pipe.closing = true;
    if (!rep.errors.empty()) pipe.queue.clear();
    pipe.cv.notify_all();
    pipe.cv.wait(l, [&] { return pipe.busy == 0; });
  }
  worker.join();
  rep.errors.insert(rep.errors.end(), pipe.errors.begin(), pipe.errors.end());
  rep.done = vnodes_done + pipe.done;
  if (rep.errors.empty()) {
    Status st = Plumb(*s, {}, false);
    if (!st.ok()) rep.errors.push_back({"routes", st.ToString()});
  }
  rep.timings.links_tail_s = Secs(tl, Clock::now());
  rep.timings.plumbing_s = pipe.plumb_s;
  rep.timings.shaping_s = pipe.shape_s;
  if (!rep.errors.empty()) return rollback();
  report();

  rec = WriteRecord(shard, "ready");
  if (!rec.ok()) {
    rep.errors.push_back({"record", rec.ToString()});
    return rollback();
  }
  s->complete = true;
  rep.ok = true;
  return finish();
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
    std::vector<Status> st = runtime_->DestroyBatch(refs);
    for (size_t i = 0; i < refs.size(); ++i) {
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
  Result<Leftovers> left = runtime_->ListLeftovers(experiment);
  if (left.ok() && !left->empty()) {
    rep.vnodes_removed += static_cast<uint32_t>(left->netns.size());
    Status c = runtime_->CleanupExperiment(experiment);
    if (!c.ok()) rep.errors.push_back({"cleanup", c.ToString()});
  }
  Status u = CleanupUnderlay(experiment);
  if (!u.ok()) rep.errors.push_back({"cleanup", u.ToString()});
  Status r = RemoveRecord(options_.records_dir, experiment);
  if (!r.ok()) rep.errors.push_back({"record", r.ToString()});
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
  auto check_profile = [&](const v1::LinkProfile& p, const char* dir) -> Status {
    GRIDEMU_ASSIGN_OR_RETURN(LinkProfile lp, ProfileFromProto(p));
    if (lp.empty()) return Status::Ok();
    if (shaper_ == nullptr) {
      return UnimplementedError(std::string(dir) + ": no shaping backend works on this pnode");
    }
    return netshape::CheckBackendSupports(lp, shaper_->backend(), shaper_->capabilities())
        .WithContext(dir);
  };
  switch (ev.action_case()) {
    case v1::ApplyEvent::kLinkSet: {
      const v1::LinkSet& ls = ev.link_set();
      if (s->link_index.count(ls.link()) == 0) {
        return NotFoundError("no link '" + ls.link() + "' in experiment " + experiment);
      }
      if (ls.has_forward()) GRIDEMU_RETURN_IF_ERROR(check_profile(ls.forward(), "forward"));
      if (ls.has_reverse()) GRIDEMU_RETURN_IF_ERROR(check_profile(ls.reverse(), "reverse"));
      return Status::Ok();
    }
    case v1::ApplyEvent::kLinkState:
      if (s->link_index.count(ev.link_state().link()) == 0) {
        return NotFoundError("no link '" + ev.link_state().link() + "' in experiment " +
                             experiment);
      }
      return Status::Ok();
    case v1::ApplyEvent::kNodeAction: {
      const v1::NodeAction& na = ev.node_action();
      static const std::set<std::string> kActions = {"kill", "stop", "start", "freeze", "thaw"};
      if (kActions.count(na.action()) == 0) {
        return InvalidArgumentError("node action '" + na.action() +
                                    "': expected kill, stop, start, freeze or thaw");
      }
      if (na.vnodes().empty()) return InvalidArgumentError("node action without vnodes");
      for (const std::string& v : na.vnodes()) {
        if (s->netns.count(v) == 0) {
          return NotFoundError("no vnode '" + v + "' in experiment " + experiment);
        }
      }
      return Status::Ok();
    }
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
      const v1::LinkSet& ls = ev.link_set();
      LinkState& l = s->links[s->link_index.at(ls.link())];
      for (bool fwd : {true, false}) {
        if (fwd ? !ls.has_forward() : !ls.has_reverse()) continue;
        Result<LinkProfile> p = ProfileFromProto(fwd ? ls.forward() : ls.reverse());
        if (!p.ok() || p->empty()) continue;
        std::unique_ptr<netshape::ShapedLink>& dir = fwd ? l.fwd : l.rev;
        LinkProfile& prof = fwd ? l.fwd_profile : l.rev_profile;
        const std::string obj = "link " + l.name + (fwd ? " forward" : " reverse");
        if (dir != nullptr) {
          Status st = dir->Change(*p);
          note(obj, st);
          if (st.ok()) prof = dir->profile();
        } else {
          prof = prof.MergedWith(*p);
          note(obj, ShapeLinks(*s, {s->link_index.at(ls.link())}));
        }
      }
      break;
    }
    case v1::ApplyEvent::kLinkState: {
      const v1::LinkState& st = ev.link_state();
      const LinkState& l = s->links[s->link_index.at(st.link())];
      Result<std::unique_ptr<Plumbing>> p = NewNetlinkPlumbing();
      if (!p.ok()) return p.status();
      // A tunnel link: only the local end is here (the other pnode sets its own).
      if (l.has_a()) {
        note("link " + l.name + " end a",
             (*p)->SetLinkUp(NetnsRef::AtPath(l.ns_a), l.if_a, st.up()));
      }
      if (l.has_b()) {
        note("link " + l.name + " end b",
             (*p)->SetLinkUp(NetnsRef::AtPath(l.ns_b), l.if_b, st.up()));
      }
      if (st.up()) {
        // Taking a device down deletes the routes through it: put them back.
        for (const v1::RouteSpec& r : s->spec.routes()) {
          bool on_a = l.has_a() && r.vnode() == l.vnode_a && r.dev() == l.if_a;
          bool on_b = l.has_b() && r.vnode() == l.vnode_b && r.dev() == l.if_b;
          if (!on_a && !on_b) continue;
          RouteSpec rs;
          rs.ns = NetnsRef::AtPath(on_a ? l.ns_a : l.ns_b);
          if (r.destination() == "default") {
            rs.dst = "0.0.0.0";
            rs.prefix_len = 0;
          } else if (!ParseCidr(r.destination(), &rs.dst, &rs.prefix_len, false).ok()) {
            continue;
          }
          rs.gateway = r.via();
          rs.ifname = r.dev();
          note("route " + r.vnode() + " " + r.destination(), (*p)->AddRoute(rs));
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
          st = runtime_->Stop(ref);
        } else if (na.action() == "start") {
          Result<VnodeInfo> info = runtime_->Info(ref);
          st = info.ok() && info->state == VnodeState::kStopped ? runtime_->Start(ref)
                                                                : info.status();
        } else if (na.action() == "freeze") {
          st = runtime_->Freeze(ref);
        } else {
          st = runtime_->Thaw(ref);
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
  for (const LinkState& l : s->links) {
    for (bool fwd : {true, false}) {
      netshape::ShapedLink* d = (fwd ? l.fwd : l.rev).get();
      if (d == nullptr) continue;
      Result<netshape::Counters> c = d->GetCounters();
      if (!c.ok()) continue;
      v1::LinkCounters* lc = mb.add_links();
      lc->set_link(l.name);
      lc->set_direction(fwd ? "forward" : "reverse");
      lc->set_tx_packets(c->passed_packets);
      lc->set_tx_bytes(c->passed_bytes);
      lc->set_dropped_loss(c->loss_dropped_packets);
      lc->set_dropped_queue(c->overflow_dropped_packets);
      lc->set_delayed(c->delayed_packets);
    }
  }
  for (const auto& [name, path] : s->netns) {
    Result<VnodeStats> st = runtime_->Stats(VnodeRef{experiment, name});
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
      HeldExperiment h;
      h.experiment = e;
      h.generation = s->generation;
      h.vnodes = static_cast<uint32_t>(s->netns.size());
      h.complete = s->complete;
      h.live = true;
      held[e] = h;
    }
  }
  std::set<std::string> candidates;
  GRIDEMU_ASSIGN_OR_RETURN(Leftovers all, runtime_->ListLeftovers(""));
  for (const std::string& d : all.state_dirs) {
    candidates.insert(d.substr(d.rfind('/') + 1));
  }
  const std::string marker = "/" + options_.prefix + "/";
  for (const std::string& d : all.cgroups) {
    size_t p = d.rfind(marker);
    if (p == std::string::npos) continue;
    std::string rest = d.substr(p + marker.size());
    candidates.insert(rest.substr(0, rest.find('/')));
  }
  if (!options_.records_dir.empty()) {
    if (DIR* dir = ::opendir(options_.records_dir.c_str())) {
      while (struct dirent* e = ::readdir(dir)) {
        std::string n = e->d_name;
        if (n.size() > 6 && n.compare(n.size() - 6, 6, ".phase") == 0) {
          candidates.insert(n.substr(0, n.size() - 6));
        } else if (n.size() > 6 && n.compare(n.size() - 6, 6, ".shard") == 0) {
          candidates.insert(n.substr(0, n.size() - 6));
        }
      }
      ::closedir(dir);
    }
  }
  for (const std::string& e : candidates) {
    if (e.empty() || held.count(e) != 0 || !ValidateExperimentId(e).ok()) continue;
    HeldExperiment h;
    h.experiment = e;
    Result<Leftovers> left = runtime_->ListLeftovers(e);
    if (left.ok()) h.vnodes = static_cast<uint32_t>(left->netns.size());
    bool has_record = false;
    if (!options_.records_dir.empty()) {
      Result<std::string> phase = ReadFile(options_.records_dir + "/" + e + ".phase");
      if (phase.ok()) {
        std::istringstream in(*phase);
        std::string word;
        uint64_t gen = 0;
        in >> word >> gen;
        h.generation = gen;
        h.complete = word == "ready";
        has_record = true;
      }
    }
    // Names that are only directories above the vnodes' (the state root, the
    // prefix's cgroup) hold nothing.
    if (!has_record && (!left.ok() || left->empty())) continue;
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
  if (options_.records_dir.empty()) {
    return FailedPreconditionError("no shard records are kept: cannot adopt " + experiment);
  }
  const std::string base = options_.records_dir + "/" + experiment;
  Result<std::string> phase = ReadFile(base + ".phase");
  if (!phase.ok() || phase->rfind("ready ", 0) != 0) {
    return FailedPreconditionError("experiment " + experiment +
                                   " was not completely deployed (no READY record)");
  }
  GRIDEMU_ASSIGN_OR_RETURN(std::string bytes, ReadFile(base + ".shard"));
  v1::DeployShard shard;
  if (!shard.ParseFromString(bytes) || shard.experiment_id() != experiment) {
    return FailedPreconditionError("the shard record of " + experiment + " is unreadable");
  }
  GRIDEMU_ASSIGN_OR_RETURN(std::shared_ptr<ShardState> s, BuildState(shard));
  GRIDEMU_ASSIGN_OR_RETURN(std::vector<VnodeRef> adopted, runtime_->Adopt(experiment));
  (void)adopted;
  for (auto& [name, path] : s->netns) {
    Result<VnodeInfo> info = runtime_->Info(VnodeRef{experiment, name});
    if (!info.ok()) {
      return FailedPreconditionError("vnode " + name + " of " + experiment +
                                     " is gone: " + info.status().message());
    }
    path = info->netns_path;
  }
  for (LinkState& l : s->links) {
    if (l.has_a()) l.ns_a = s->netns.at(l.vnode_a);
    if (l.has_b()) l.ns_b = s->netns.at(l.vnode_b);
  }
  // Remove the shaping the crashed process left (its rules drop packets now:
  // fail closed), then shape again.
  std::set<std::string> rule_ns;
  for (const LinkState& l : s->links) {
    // Only the local ends (of a tunnel link, one end is on another pnode).
    if (!l.fwd_profile.empty()) {
      if (l.has_a()) (void)netshape::RemoveLeftoverQdisc(l.ns_a, l.if_a);
      if (l.has_b() && HasImpairment(l.fwd_profile)) rule_ns.insert(l.ns_b);
    }
    if (!l.rev_profile.empty()) {
      if (l.has_b()) (void)netshape::RemoveLeftoverQdisc(l.ns_b, l.if_b);
      if (l.has_a() && HasImpairment(l.rev_profile)) rule_ns.insert(l.ns_a);
    }
  }
  for (const std::string& ns : rule_ns) {
    Result<int> n = netshape::RemoveLeftoverRules(ns, experiment + ":");
    if (!n.ok()) return n.status().WithContext("removing leftover rules in " + ns);
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
    std::lock_guard<std::mutex> l(mu_);
    shards_.erase(experiment);
    return st;
  }
  s->complete = true;
  return Status::Ok();
}

}  // namespace gridemu::agent

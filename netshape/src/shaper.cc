#include "gridemu/netshape/shaper.h"

#include <errno.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <future>
#include <map>
#include <sstream>

#include "gridemu/netshape/netlink_ops.h"
#include "internal.h"
#include "netlink_internal.h"

namespace gridemu::netshape {

namespace detail {
/// Per-namespace state shared by the links whose sender is in it.
struct NetnsCtx {
  std::string path;
  NetnsId id;
  std::shared_ptr<RtnlSocket> sock;
};
}  // namespace detail

namespace {

bool ValidTag(const std::string& tag) {
  if (tag.empty() || tag.size() > 200) return false;
  for (char c : tag) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.' || c == ':' ||
          c == '/' || c == '-')) {
      return false;
    }
  }
  return true;
}

bool ValidIfname(const std::string& n) {
  if (n.empty() || n.size() >= IFNAMSIZ) return false;
  for (char c : n) {
    if (c <= ' ' || c == '"' || c == '\'' || c == '\\' || c == '#' || c == '/' || c == 127) {
      return false;
    }
  }
  return true;
}

std::string NetnsLabel(const std::string& p) { return p.empty() ? "(current namespace)" : p; }

}  // namespace

// One NFQUEUE rule (shaper.h documents its exact form): in PREROUTING matching the
// receiver's interface, or in the leaf chain of a hold tree matching the bridge port.
struct Rule {
  std::string chain;
  std::string match;
  uint16_t queue_num;
  std::string tag;
  std::string Text(char op) const {
    return std::string("-") + op + " " + chain + " " + match +
           " -m comment --comment \"gridemu:" + tag + "\" -j NFQUEUE --queue-num " +
           std::to_string(queue_num) + "\n";
  }
};

namespace {

// The hold tree (shape_request.h HoldPoint): PREROUTING jumps to kHoldRoot, which
// dispatches on the bridge's group one hex digit (of 16 bits) per level.
constexpr const char* kHoldRoot = "GRIDEMU-HOLD";

// Chain of the tree node for the top `digits` hex digits of `group` (digits 0 = root).
std::string HoldChain(uint32_t group, int digits) {
  if (digits == 0) return kHoldRoot;
  char buf[16];
  std::snprintf(buf, sizeof buf, "GH-%0*x", digits, group >> (4 * (4 - digits)));
  return buf;
}

// The rule of `r`'s direction, for its queue `queue_num`.
Rule RuleOf(const ShapeRequest& r, uint16_t queue_num) {
  if (r.hold) {
    return {HoldChain(r.hold->group, 4), "-m physdev --physdev-in " + r.hold->port, queue_num,
            r.tag};
  }
  return {"PREROUTING", "-i " + r.receiver.ifname, queue_num, r.tag};
}

// The namespace the rule and the queue of `r` live in.
const std::string& QueueNetns(const ShapeRequest& r) {
  return r.hold ? r.hold->netns : r.receiver.netns;
}

// The table of the rules on a receiver's PREROUTING, and of a hold tree. A hold namespace
// has no other tables: raw registers two hooks (PREROUTING, OUTPUT) where mangle registers
// five, each of which a bridged packet would cross (br_netfilter runs PREROUTING, FORWARD
// and POSTROUTING for it).
constexpr const char* kReceiverTable = "mangle";
constexpr const char* kHoldTable = "raw";

// Applies `op` ('A' or 'D') for `rules` in one namespace, one process per family, in
// `table`. `preamble`: lines that come first (chains of a hold tree).
// `flush`: replace the whole table (a namespace that holds only our rules).
Status RunRules(const std::string& netns, const std::vector<Rule>& rules, char op, bool ipv6,
                const std::string& preamble = "", bool flush = false,
                const char* table = kReceiverTable) {
  if (rules.empty() && preamble.empty()) return Status::Ok();
  std::string text = "*" + std::string(table) + "\n" + preamble;
  for (const Rule& r : rules) text += r.Text(op);
  text += "COMMIT\n";
  auto run = [&](const char* prog) -> Status {
    std::vector<std::string> argv{prog, "-w"};
    if (!flush) argv.push_back("--noflush");
    GRIDEMU_ASSIGN_OR_RETURN(ProcessResult r, RunProcess(netns, argv, text));
    if (r.exit_code == 0) return Status::Ok();
    std::string err = r.err;
    while (!err.empty() && (err.back() == '\n' || err.back() == ' ')) err.pop_back();
    std::string msg = std::string(prog) + " in " + NetnsLabel(netns) + " (" +
                      (op == 'A' ? "adding" : "deleting") + " " + std::to_string(rules.size()) +
                      " NFQUEUE rule(s)) failed with exit " + std::to_string(r.exit_code) + ": " +
                      err;
    if (op == 'D' && err.find("does a matching rule exist") != std::string::npos) {
      return NotFoundError(msg);
    }
    return InternalError(msg);
  };
  // The two families are independent tables: run both processes at once.
  std::future<Status> v6;
  if (ipv6) v6 = std::async(std::launch::async, run, "ip6tables-restore");
  Status s4 = run("iptables-restore");
  Status s6 = ipv6 ? v6.get() : Status::Ok();
  return s4.ok() ? s6 : s4;
}

Result<std::pair<int, uint32_t>> IfIndexAndMtu(const std::string& netns,
                                               const std::string& ifname) {
  std::pair<int, uint32_t> out{0, 1500};
  GRIDEMU_RETURN_IF_ERROR(RunInNetns(netns, [&]() -> Status {
    out.first = static_cast<int>(if_nametoindex(ifname.c_str()));
    if (out.first == 0) {
      return NotFoundError("interface " + ifname + " not found in " + NetnsLabel(netns));
    }
    UniqueFd fd(socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    if (fd.valid()) {
      ifreq ifr;
      std::memset(&ifr, 0, sizeof ifr);
      std::strncpy(ifr.ifr_name, ifname.c_str(), IFNAMSIZ - 1);
      if (ioctl(fd.get(), SIOCGIFMTU, &ifr) == 0 && ifr.ifr_mtu > 0) out.second = ifr.ifr_mtu;
    }
    return Status::Ok();
  }));
  return out;
}

}  // namespace

std::string Counters::ToString() const {
  std::ostringstream s;
  s << "passed " << passed_packets << "/" << passed_bytes << "B loss " << loss_dropped_packets
    << " overflow " << overflow_dropped_packets << " delayed " << delayed_packets << " dup "
    << duplicated_packets << " reorder " << reordered_packets << " held " << held_packets;
  return s.str();
}

// ---------------------------------------------------------------------------------------

Result<std::unique_ptr<Shaper>> Shaper::Create(const ShaperOptions& options) {
  std::unique_ptr<Shaper> s(new Shaper());
  s->options_ = options;
  if (options.capabilities) {
    s->caps_ = *options.capabilities;
  } else {
    GRIDEMU_ASSIGN_OR_RETURN(s->caps_, ProbeCapabilities());
  }
  GRIDEMU_ASSIGN_OR_RETURN(s->backend_, SelectBackend(options.backend, s->caps_));
  return s;
}

Shaper::~Shaper() {
  std::vector<ShapedLink*> live;
  {
    std::lock_guard<std::mutex> lock(mu_);
    live = live_;
  }
  for (ShapedLink* l : live) {
    (void)l->Remove();
    // Whatever could not be removed is abandoned: the link must not reach back into this
    // Shaper once it is gone (its rules then fail closed; see RemoveLeftoverRules).
    std::lock_guard<std::mutex> lock(l->mu_);
    l->removed_ = true;
  }
  delay_line_.reset();
}

Result<std::shared_ptr<detail::NetnsCtx>> Shaper::GetCtx(const std::string& netns) {
  GRIDEMU_ASSIGN_OR_RETURN(NetnsId id, GetNetnsId(netns));
  std::lock_guard<std::mutex> lock(mu_);
  auto it = ctxs_.find(id);
  if (it != ctxs_.end()) {
    if (auto c = it->second.lock()) return c;
  }
  auto ctx = std::make_shared<detail::NetnsCtx>();
  ctx->path = netns;
  ctx->id = id;
  GRIDEMU_ASSIGN_OR_RETURN(ctx->sock, RtnlSocket::Open(netns));
  ctxs_[id] = ctx;
  // Drop entries of namespaces no link uses any more.
  for (auto i = ctxs_.begin(); i != ctxs_.end();) {
    i = i->second.expired() ? ctxs_.erase(i) : std::next(i);
  }
  return ctx;
}

Status Shaper::EnsureDelayLine() {
  std::lock_guard<std::mutex> lock(mu_);
  if (delay_line_) return Status::Ok();
  GRIDEMU_ASSIGN_OR_RETURN(delay_line_, DelayLine::Start(options_.delay_line));
  return Status::Ok();
}

Status Shaper::CheckRequest(const ShapeRequest& r) const {
  if (!ValidTag(r.tag)) {
    return InvalidArgumentError("tag '" + r.tag +
                                "': expected 1 to 200 characters of [A-Za-z0-9_.:/-]");
  }
  if (r.half != ShapeHalf::kReceiverOnly && !ValidIfname(r.sender.ifname)) {
    return InvalidArgumentError("sender interface '" + r.sender.ifname + "': not a valid name");
  }
  if (r.half != ShapeHalf::kSenderOnly && !ValidIfname(r.receiver.ifname)) {
    return InvalidArgumentError("receiver interface '" + r.receiver.ifname + "': not a valid name");
  }
  if (r.hold) {
    if (r.hold->netns.empty() || !ValidIfname(r.hold->port) || !ValidIfname(r.hold->out_port)) {
      return InvalidArgumentError("hold point: expected a namespace and two bridge port names");
    }
    if (r.hold->group == 0 || r.hold->group > 0xffff) {
      return InvalidArgumentError("hold point: group " + std::to_string(r.hold->group) +
                                  " is out of range (1 to 65535)");
    }
  }
  return Status::Ok();
}

Result<Plan> Shaper::PlanFor(const ShapeRequest& r, const LinkProfile& profile,
                             uint32_t mtu) const {
  GRIDEMU_RETURN_IF_ERROR(profile.Validate());
  GRIDEMU_RETURN_IF_ERROR(CheckBackendSupports(profile, backend_, caps_));
  PlanOptions po;
  po.backend = backend_;
  po.seed = r.seed.value_or(options_.seed);
  po.stream = r.stream.empty() ? r.tag : r.stream;
  po.mtu_bytes = mtu;
  po.default_queue_packets = options_.default_queue_packets;
  po.half = r.half;
  GRIDEMU_ASSIGN_OR_RETURN(Plan plan, BuildPlan(profile, r.direction, po));
  if (plan.delay_line && options_.ipv6 && !caps_.ip6tables) {
    for (const auto& [field, set] : ImpairmentFieldsOf(profile)) {
      if (set) {
        return UnimplementedError(std::string(field) +
                                  ": not supported by the userspace backend on this kernel "
                                  "(ip6tables NFQUEUE target is missing; shape IPv4 only with "
                                  "ShaperOptions.ipv6 = false)");
      }
    }
  }
  return plan;
}

Status Shaper::InstallRules(const std::string& netns, const std::vector<Rule>& rules,
                            const std::vector<uint32_t>& hold_groups) {
  if (hold_groups.empty()) return RunRules(netns, rules, 'A', options_.ipv6);
  GRIDEMU_ASSIGN_OR_RETURN(std::shared_ptr<HoldTree> tree, Tree(netns));
  std::lock_guard<std::mutex> lock(tree->mu);
  // The first rules of a hold namespace rewrite its raw table: only ours live there, and
  // a crashed process's tree goes with it.
  const bool first = tree->chains.empty();
  std::set<std::string> chains = tree->chains;
  std::string decl, dispatch;
  if (first) {
    decl = ":PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:" + std::string(kHoldRoot) +
           " - [0:0]\n";
    dispatch = "-A PREROUTING -j " + std::string(kHoldRoot) + "\n";
    chains.insert(kHoldRoot);
  }
  for (uint32_t g : hold_groups) {
    for (int digits = 1; digits <= 4; ++digits) {
      const std::string chain = HoldChain(g, digits);
      if (!chains.insert(chain).second) continue;
      const int shift = 4 * (4 - digits);
      char match[96];
      std::snprintf(match, sizeof match, "-m devgroup --src-group 0x%x/0x%x",
                    (g >> shift) << shift, 0xffffffffu << shift);
      decl += first ? ":" + chain + " - [0:0]\n" : "-N " + chain + "\n";
      dispatch += "-A " + HoldChain(g, digits - 1) + " " + match + " -j " + chain + "\n";
    }
  }
  GRIDEMU_RETURN_IF_ERROR(
      RunRules(netns, rules, 'A', options_.ipv6, decl + dispatch, first, kHoldTable));
  tree->chains = std::move(chains);
  tree->rules += rules.size();
  return Status::Ok();
}

Status Shaper::DeleteRules(const std::string& netns, const std::vector<Rule>& rules, bool hold) {
  if (!hold) return RunRules(netns, rules, 'D', options_.ipv6);
  GRIDEMU_ASSIGN_OR_RETURN(std::shared_ptr<HoldTree> tree, Tree(netns));
  std::lock_guard<std::mutex> lock(tree->mu);
  Status s = RunRules(netns, rules, 'D', options_.ipv6, "", false, kHoldTable);
  // A single rule that is not there (NotFound) is not ours to count any more either (a
  // batch that fails deletes nothing: its links retry one by one).
  if (s.ok() || (s.code() == StatusCode::kNotFound && rules.size() == 1)) {
    tree->rules -= std::min(tree->rules, rules.size());
    // No rule left: the next install rewrites the table (a namespace made later under
    // this inode starts with an empty one).
    if (tree->rules == 0) tree->chains.clear();
  }
  return s;
}

Result<std::shared_ptr<Shaper::HoldTree>> Shaper::Tree(const std::string& netns) {
  Result<NetnsId> id = GetNetnsId(netns);
  std::lock_guard<std::mutex> lock(mu_);
  if (!id.ok()) {
    for (auto it = holds_.begin(); it != holds_.end();) {
      it = it->second->path == netns ? holds_.erase(it) : std::next(it);
    }
    return id.status();
  }
  std::shared_ptr<HoldTree>& t = holds_[*id];
  if (!t || t->path != netns) {
    t = std::make_shared<HoldTree>();
    t->path = netns;
  }
  return t;
}

Result<QueueOptions> Shaper::QueueOptionsFor(const ShapeRequest& r) {
  QueueOptions o;
  if (!r.hold) return o;
  o.inject_ifname = r.hold->out_port;
  // Duplicates go to the receiver's MAC address; a receiver that is itself a bridge
  // port (a switch) forwards frames addressed beyond it: broadcast then.
  if (r.half == ShapeHalf::kSenderOnly) return o;
  GRIDEMU_ASSIGN_OR_RETURN(int ifindex, InterfaceIndex(r.receiver.netns, r.receiver.ifname));
  GRIDEMU_ASSIGN_OR_RETURN(auto ctx, GetCtx(r.receiver.netns));
  GRIDEMU_ASSIGN_OR_RETURN(LinkFacts facts, GetLinkFacts(*ctx->sock, ifindex));
  if (facts.master == 0) o.dst_mac = facts.mac;
  return o;
}

void Shaper::Forget(ShapedLink* link) {
  std::lock_guard<std::mutex> lock(mu_);
  live_.erase(std::remove(live_.begin(), live_.end(), link), live_.end());
}

Result<std::unique_ptr<ShapedLink>> Shaper::Shape(const ShapeRequest& request) {
  GRIDEMU_ASSIGN_OR_RETURN(auto links, ShapeMany({request}));
  return std::move(links.front());
}

Result<std::vector<std::unique_ptr<ShapedLink>>> Shaper::ShapeMany(
    const std::vector<ShapeRequest>& requests) {
  std::vector<std::unique_ptr<ShapedLink>> links;
  links.reserve(requests.size());
  auto fail = [&](const Status& s) -> Status {
    (void)RemoveMany(links);
    return s;
  };
  // 1. Plans (pure), qdiscs on the senders, delay-line queues at the receivers.
  for (const ShapeRequest& r : requests) {
    GRIDEMU_RETURN_IF_ERROR(CheckRequest(r).WithContext(r.tag));
    auto link = std::unique_ptr<ShapedLink>(new ShapedLink(this));
    link->request_ = r;
    link->profile_ = r.profile;
    // The sender's interface must exist even if this direction has no qdisc (a receiver
    // half has no sender here: the receiver's interface gives the MTU; a VXLAN link has
    // the same MTU at both ends).
    if (r.half == ShapeHalf::kReceiverOnly) {
      auto rim = IfIndexAndMtu(r.receiver.netns, r.receiver.ifname);
      if (!rim.ok()) return fail(rim.status().WithContext(r.tag));
      link->mtu_ = rim->second;
    } else {
      auto im = IfIndexAndMtu(r.sender.netns, r.sender.ifname);
      if (!im.ok()) return fail(im.status().WithContext(r.tag));
      link->sender_ifindex_ = im->first;
      link->mtu_ = im->second;
    }
    auto plan = PlanFor(r, r.profile, link->mtu_);
    if (!plan.ok()) return fail(plan.status());
    link->plan_ = *plan;
    {
      std::lock_guard<std::mutex> lock(mu_);
      live_.push_back(link.get());
    }
    links.push_back(std::move(link));
    ShapedLink& l = *links.back();
    if (l.plan_.has_qdiscs() || l.plan_.gso_max_segs) {
      auto ctx = GetCtx(r.sender.netns);
      if (!ctx.ok()) return fail(ctx.status().WithContext(r.tag));
      l.sender_ctx_ = *ctx;
    }
    if (l.plan_.gso_max_segs) {
      Status s = l.SetGso(*l.plan_.gso_max_segs);
      if (!s.ok()) return fail(s.WithContext(r.tag));
    }
    if (l.plan_.has_qdiscs()) {
      auto ops = MakeRtnlOps(l.sender_ctx_->sock, l.sender_ifindex_, r.sender.ifname);
      Status s = Apply(l.plan_, *ops);
      if (!s.ok()) {
        if (s.code() == StatusCode::kAlreadyExists) {
          s = AlreadyExistsError(s.message() + " (interface " + r.sender.ifname + " in " +
                                 NetnsLabel(r.sender.netns) + " already has a root qdisc)");
        }
        return fail(s.WithContext(r.tag));
      }
      l.qdiscs_installed_ = true;
    }
    if (l.plan_.delay_line) {
      GRIDEMU_RETURN_IF_ERROR(EnsureDelayLine());
      // The interface packets are diverted from must exist first.
      auto rim = r.hold ? IfIndexAndMtu(r.hold->netns, r.hold->port)
                        : IfIndexAndMtu(r.receiver.netns, r.receiver.ifname);
      if (!rim.ok()) return fail(rim.status().WithContext(r.tag));
      auto qo = QueueOptionsFor(r);
      if (!qo.ok()) return fail(qo.status().WithContext(r.tag));
      auto q = delay_line_->AddQueue(QueueNetns(r), *l.plan_.delay_line, *qo);
      if (!q.ok()) return fail(q.status().WithContext(r.tag));
      l.queue_ = *q;
    }
  }
  // 2. Rules: one iptables-restore (and one ip6tables-restore) per namespace the queues
  // are in (the receivers', or hold namespaces).
  std::map<NetnsId, std::vector<ShapedLink*>> by_ns;
  for (auto& l : links) {
    if (!l->queue_) continue;
    auto id = GetNetnsId(QueueNetns(l->request_));
    if (!id.ok()) return fail(id.status());
    by_ns[*id].push_back(l.get());
  }
  for (auto& [id, group] : by_ns) {
    std::vector<Rule> rules;
    std::vector<uint32_t> groups;
    for (ShapedLink* l : group) {
      rules.push_back(RuleOf(l->request_, l->queue_->queue_num));
      if (l->request_.hold) groups.push_back(l->request_.hold->group);
    }
    const std::string& netns = QueueNetns(group.front()->request_);
    Status s = InstallRules(netns, rules, groups);
    if (!s.ok()) {
      // iptables-restore applies a batch atomically per family; the IPv4 one may have
      // succeeded: delete what may be there, ignoring "no such rule".
      (void)RunRules(netns, rules, 'D', false);
      return fail(s);
    }
    for (ShapedLink* l : group) l->rules_installed_ = true;
  }
  return links;
}

Status Shaper::RemoveMany(std::vector<std::unique_ptr<ShapedLink>>& links) {
  Status first;
  auto note = [&](const Status& s) {
    if (!s.ok() && first.ok()) first = s;
  };
  // Rules first (per namespace, batched), so that no packet is queued to a queue that is
  // about to go away (fail closed would drop it).
  std::map<NetnsId, std::vector<ShapedLink*>> by_ns;
  for (auto& l : links) {
    if (!l) continue;
    std::lock_guard<std::mutex> lock(l->mu_);
    if (!l->rules_installed_ || !l->queue_) continue;
    auto id = GetNetnsId(QueueNetns(l->request_));
    if (!id.ok()) continue;  // the namespace is gone, and its rules with it
    by_ns[*id].push_back(l.get());
  }
  for (auto& [id, group] : by_ns) {
    std::vector<Rule> rules;
    for (ShapedLink* l : group) rules.push_back(RuleOf(l->request_, l->queue_->queue_num));
    Status s = DeleteRules(QueueNetns(group.front()->request_), rules,
                           group.front()->request_.hold.has_value());
    if (s.ok()) {
      for (ShapedLink* l : group) {
        std::lock_guard<std::mutex> lock(l->mu_);
        l->rules_installed_ = false;
      }
    }
    // On failure each link retries its own rule below.
  }
  for (auto& l : links) {
    if (l) note(l->Remove());
  }
  return first;
}

// ---------------------------------------------------------------------------------------

Result<std::vector<std::unique_ptr<ShapedDirection>>> Shaper::ShapeDirections(
    const std::vector<ShapeRequest>& requests) {
  GRIDEMU_ASSIGN_OR_RETURN(auto links, ShapeMany(requests));
  std::vector<std::unique_ptr<ShapedDirection>> out;
  out.reserve(links.size());
  for (auto& l : links) out.push_back(std::move(l));
  return out;
}

Status Shaper::RemoveDirections(std::vector<std::unique_ptr<ShapedDirection>>& directions) {
  std::vector<std::unique_ptr<ShapedLink>> links;
  Status first;
  for (auto& d : directions) {
    if (d == nullptr) continue;
    auto* l = dynamic_cast<ShapedLink*>(d.get());
    if (l == nullptr || l->shaper_ != this) {
      if (first.ok()) first = InvalidArgumentError("RemoveDirections: not a direction of this Shaper");
      continue;
    }
    d.release();
    links.emplace_back(l);
  }
  directions.erase(std::remove(directions.begin(), directions.end(), nullptr), directions.end());
  Status st = RemoveMany(links);
  return first.ok() ? st : first;
}

Result<int> Shaper::RemoveLeftoverRules(const std::string& netns_path,
                                        const std::string& tag_prefix) {
  return netshape::RemoveLeftoverRules(netns_path, tag_prefix);
}

Result<bool> Shaper::RemoveLeftoverQdisc(const std::string& netns_path,
                                         const std::string& ifname) {
  return netshape::RemoveLeftoverQdisc(netns_path, ifname);
}

ShapedLink::~ShapedLink() { (void)Remove(); }

Status ShapedLink::SetGso(uint32_t segs) {
  if (!saved_gso_segs_) {
    GRIDEMU_ASSIGN_OR_RETURN(uint32_t old, GetGsoMaxSegs(*sender_ctx_->sock, sender_ifindex_));
    GRIDEMU_RETURN_IF_ERROR(SetGsoMaxSegs(*sender_ctx_->sock, sender_ifindex_, segs));
    saved_gso_segs_ = old;
    return Status::Ok();
  }
  return SetGsoMaxSegs(*sender_ctx_->sock, sender_ifindex_, segs);
}

int ShapedLink::queue_num() const { return queue_ ? queue_->queue_num : -1; }

Status ShapedLink::Remove() {
  std::lock_guard<std::mutex> lock(mu_);
  if (removed_) return Status::Ok();
  Status first;
  auto note = [&](const Status& s) {
    if (!s.ok() && first.ok()) first = s.WithContext(request_.tag);
  };
  if (rules_installed_ && queue_) {
    const std::string& netns = QueueNetns(request_);
    Status s = shaper_->DeleteRules(netns, {RuleOf(request_, queue_->queue_num)},
                                    request_.hold.has_value());
    // A namespace or rule that is gone already is what we want.
    if (s.ok() || s.code() == StatusCode::kNotFound || !GetNetnsId(netns).ok()) {
      rules_installed_ = false;
    } else {
      note(s);
    }
  }
  if (queue_ && !rules_installed_) {
    note(shaper_->delay_line_->RemoveQueue(queue_->id));
    queue_.reset();
  }
  if (qdiscs_installed_) {
    auto ops = MakeRtnlOps(sender_ctx_->sock, sender_ifindex_, request_.sender.ifname);
    Status s = netshape::Remove(plan_, *ops);
    if (s.ok()) {
      qdiscs_installed_ = false;
    } else {
      note(s);
    }
  }
  if (saved_gso_segs_) {
    Status s = SetGsoMaxSegs(*sender_ctx_->sock, sender_ifindex_, *saved_gso_segs_);
    if (s.ok() || s.code() == StatusCode::kNotFound) {
      saved_gso_segs_.reset();
    } else {
      note(s);
    }
  }
  if (!rules_installed_ && !queue_ && !qdiscs_installed_ && !saved_gso_segs_) {
    removed_ = true;
    sender_ctx_.reset();
    shaper_->Forget(this);
  }
  return first;
}

Status ShapedLink::Change(const LinkProfile& changes) {
  std::lock_guard<std::mutex> lock(mu_);
  if (removed_) return FailedPreconditionError(request_.tag + ": link was removed");
  LinkProfile merged = profile_.MergedWith(changes);
  GRIDEMU_ASSIGN_OR_RETURN(Plan next, shaper_->PlanFor(request_, merged, mtu_));
  if ((plan_.has_qdiscs() || next.has_qdiscs() || next.gso_max_segs) && !sender_ctx_) {
    GRIDEMU_ASSIGN_OR_RETURN(sender_ctx_, shaper_->GetCtx(request_.sender.netns));
  }
  if (next.gso_max_segs != plan_.gso_max_segs) {
    if (next.gso_max_segs) {
      GRIDEMU_RETURN_IF_ERROR(SetGso(*next.gso_max_segs).WithContext(request_.tag));
    } else if (saved_gso_segs_) {
      GRIDEMU_RETURN_IF_ERROR(SetGsoMaxSegs(*sender_ctx_->sock, sender_ifindex_, *saved_gso_segs_));
      saved_gso_segs_.reset();
    }
  }
  // Kernel objects on the sender: in-place changes (netlink_ops.h ChangeOps).
  if (plan_.has_qdiscs() || next.has_qdiscs()) {
    auto ops = MakeRtnlOps(sender_ctx_->sock, sender_ifindex_, request_.sender.ifname);
    GRIDEMU_RETURN_IF_ERROR(netshape::Change(plan_, next, *ops).WithContext(request_.tag));
    qdiscs_installed_ = next.has_qdiscs();
  }
  // The delay line.
  if (queue_ && next.delay_line) {
    GRIDEMU_RETURN_IF_ERROR(shaper_->delay_line_->UpdateQueue(queue_->id, *next.delay_line));
  } else if (!queue_ && next.delay_line) {
    GRIDEMU_RETURN_IF_ERROR(shaper_->EnsureDelayLine());
    GRIDEMU_ASSIGN_OR_RETURN(QueueOptions qo, shaper_->QueueOptionsFor(request_));
    GRIDEMU_ASSIGN_OR_RETURN(
        auto q, shaper_->delay_line_->AddQueue(QueueNetns(request_), *next.delay_line, qo));
    queue_ = q;
    std::vector<uint32_t> groups;
    if (request_.hold) groups.push_back(request_.hold->group);
    Status s =
        shaper_->InstallRules(QueueNetns(request_), {RuleOf(request_, queue_->queue_num)}, groups);
    if (!s.ok()) {
      (void)shaper_->delay_line_->RemoveQueue(queue_->id);
      queue_.reset();
      return s.WithContext(request_.tag);
    }
    rules_installed_ = true;
  } else if (queue_ && !next.delay_line) {
    GRIDEMU_RETURN_IF_ERROR(shaper_->DeleteRules(QueueNetns(request_),
                                                 {RuleOf(request_, queue_->queue_num)},
                                                 request_.hold.has_value())
                                .WithContext(request_.tag));
    rules_installed_ = false;
    (void)shaper_->delay_line_->RemoveQueue(queue_->id);
    queue_.reset();
  }
  plan_ = next;
  profile_ = merged;
  return Status::Ok();
}

Result<Counters> ShapedLink::GetCounters() {
  std::lock_guard<std::mutex> lock(mu_);
  if (removed_) return FailedPreconditionError(request_.tag + ": link was removed");
  Counters c;
  std::optional<TcInfo> cls, leaf;
  if (qdiscs_installed_ && sender_ctx_) {
    RtnlSocket& sock = *sender_ctx_->sock;
    if (plan_.htb) {
      GRIDEMU_ASSIGN_OR_RETURN(
          cls, GetTcInfo(sock, sender_ifindex_, TcOp::Object::kClass, kRateClassId));
      GRIDEMU_ASSIGN_OR_RETURN(
          leaf, GetTcInfo(sock, sender_ifindex_, TcOp::Object::kQdisc, kLeafQdiscHandle));
    } else if (plan_.netem) {
      GRIDEMU_ASSIGN_OR_RETURN(
          leaf, GetTcInfo(sock, sender_ifindex_, TcOp::Object::kQdisc, kRootQdiscHandle));
    }
  }
  if (plan_.backend == Backend::kNetem) {
    // netem counts its losses and its overflows in one `drops`; under HTB, the class
    // counts the overflows alone (netem's losses bypass it).
    if (cls) {
      c.passed_packets = cls->stats.packets;
      c.passed_bytes = cls->stats.bytes;
      c.overflow_dropped_packets = cls->stats.drops;
    }
    if (leaf) {
      if (!cls) {
        c.passed_packets = leaf->stats.packets;
        c.passed_bytes = leaf->stats.bytes;
      }
      uint64_t overflow = cls ? cls->stats.drops : 0;
      c.loss_dropped_packets = leaf->stats.drops > overflow ? leaf->stats.drops - overflow : 0;
      if (plan_.netem && plan_.netem->impairment.latency.count() != 0) {
        c.delayed_packets = leaf->stats.packets;
      }
      c.held_packets = leaf->stats.qlen;
    }
    return c;
  }
  if (cls) {
    c.passed_packets = cls->stats.packets;
    c.passed_bytes = cls->stats.bytes;
    c.overflow_dropped_packets = cls->stats.drops;
    if (leaf) c.held_packets = leaf->stats.qlen;
  }
  if (queue_) {
    GRIDEMU_ASSIGN_OR_RETURN(DelayLineCounters d,
                             shaper_->delay_line_->ReadCounters(queue_->id, true));
    c.passed_packets = d.passed_packets;
    c.passed_bytes = d.passed_bytes;
    c.loss_dropped_packets = d.loss_dropped_packets;
    c.overflow_dropped_packets += d.kernel_dropped_packets;
    c.delayed_packets = d.delayed_packets;
    c.duplicated_packets = d.duplicated_packets;
    c.reordered_packets = d.reordered_packets;
    c.held_packets += d.held_packets;
  }
  return c;
}

// ---------------------------------------------------------------------------------------

Result<int> RemoveLeftoverRules(const std::string& netns_path, const std::string& tag_prefix) {
  int removed = 0;
  const std::string needle1 = "--comment \"gridemu:" + tag_prefix;
  const std::string needle2 = "--comment gridemu:" + tag_prefix;
  for (const auto& [save, restore] : {std::pair{"iptables-save", "iptables-restore"},
                                      std::pair{"ip6tables-save", "ip6tables-restore"}}) {
    if (!FindProgram(save).ok()) continue;
    // A receiver's PREROUTING (mangle), a hold tree's leaves (raw).
    for (const char* table : {kReceiverTable, kHoldTable}) {
      GRIDEMU_ASSIGN_OR_RETURN(ProcessResult r, RunProcess(netns_path, {save, "-t", table}, ""));
      if (r.exit_code != 0) continue;  // no such table/family here
      std::string text = "*" + std::string(table) + "\n";
      int n = 0;
      std::istringstream in(r.out);
      std::string line;
      while (std::getline(in, line)) {
        if (line.rfind("-A ", 0) != 0) continue;
        if (line.find(needle1) == std::string::npos && line.find(needle2) == std::string::npos) {
          continue;
        }
        if (line.find("-j NFQUEUE") == std::string::npos) continue;
        text += "-D" + line.substr(2) + "\n";
        ++n;
      }
      if (n == 0) continue;
      text += "COMMIT\n";
      GRIDEMU_ASSIGN_OR_RETURN(ProcessResult d,
                               RunProcess(netns_path, {restore, "-w", "--noflush"}, text));
      if (d.exit_code != 0) {
        return InternalError(std::string(restore) + " in " + NetnsLabel(netns_path) +
                             " failed: " + d.err);
      }
      removed += n;
    }
  }
  return removed;
}

Result<bool> RemoveLeftoverQdisc(const std::string& netns_path, const std::string& ifname) {
  GRIDEMU_ASSIGN_OR_RETURN(int ifindex, InterfaceIndex(netns_path, ifname));
  GRIDEMU_ASSIGN_OR_RETURN(auto sock, RtnlSocket::Open(netns_path));
  auto info = GetTcInfo(*sock, ifindex, TcOp::Object::kQdisc, 0, kTcRoot);
  if (!info.ok())
    return info.status().code() == StatusCode::kNotFound ? Result<bool>(false) : info.status();
  if (info->handle != kRootQdiscHandle || (info->kind != "htb" && info->kind != "netem")) {
    return false;
  }
  auto ops = MakeRtnlOps(sock, ifindex, ifname);
  GRIDEMU_RETURN_IF_ERROR(
      ops->Execute({TcVerb::kDelete, TcOp::Object::kQdisc, kTcRoot, kRootQdiscHandle, {}}));
  return true;
}

}  // namespace gridemu::netshape

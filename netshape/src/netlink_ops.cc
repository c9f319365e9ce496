#include "gridemu/netshape/netlink_ops.h"

#include <errno.h>
#include <linux/gen_stats.h>
#include <linux/if_link.h>
#include <linux/netlink.h>
#include <linux/pkt_sched.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <netlink/attr.h>
#include <netlink/msg.h>
#include <netlink/netlink.h>
#include <netlink/route/class.h>
#include <netlink/route/qdisc.h>
#include <netlink/route/qdisc/fifo.h>
#include <netlink/route/qdisc/htb.h>
#include <netlink/route/tc.h>
#include <netlink/socket.h>
#include <sys/socket.h>

#include <cstdio>
#include <cstring>
#include <limits>
#include <optional>

#include "gridemu/common/units.h"
#include "gridemu/netshape/netns.h"
#include "internal.h"
#include "netlink_internal.h"

#ifndef SOL_NETLINK
#define SOL_NETLINK 270
#endif

namespace gridemu::netshape {
namespace {

// TCA_NETEM_PRNG_SEED (Linux 6.3) may be missing from the installed UAPI headers.
constexpr int kTcaNetemPrngSeed = 14;

std::string HandleStr(uint32_t h) {
  if (h == kTcRoot) return "root";
  char buf[32];
  if ((h & 0xffff) == 0) {
    std::snprintf(buf, sizeof buf, "%x:", h >> 16);
  } else {
    std::snprintf(buf, sizeof buf, "%x:%x", h >> 16, h & 0xffff);
  }
  return buf;
}

const char* VerbName(TcVerb v) {
  switch (v) {
    case TcVerb::kAdd:
      return "add";
    case TcVerb::kChange:
      return "change";
    case TcVerb::kReplace:
      return "replace";
    case TcVerb::kDelete:
      return "delete";
  }
  return "?";
}

uint16_t VerbFlags(TcVerb v) {
  switch (v) {
    case TcVerb::kAdd:
      return NLM_F_CREATE | NLM_F_EXCL;
    case TcVerb::kChange:
      return 0;
    case TcVerb::kReplace:
      return NLM_F_CREATE | NLM_F_REPLACE;
    case TcVerb::kDelete:
      return 0;
  }
  return 0;
}

struct NlMsgDeleter {
  void operator()(nl_msg* m) const { nlmsg_free(m); }
};
using NlMsgPtr = std::unique_ptr<nl_msg, NlMsgDeleter>;

Status NlError(int err, const std::string& what) {
  return InternalError(what + ": " + nl_geterror(err));
}

// netem's TCA_OPTIONS: struct tc_netem_qopt followed by netem attributes in the same
// payload (iproute2 q_netem.c netem_parse_opt; kernel sch_netem.c parse_attr()).
Result<NlMsgPtr> BuildNetem(const TcOp& op, const NetemSpec& n, int ifindex) {
  // Room for a 4096-entry delay table (8 KiB) besides the options.
  NlMsgPtr msg(nlmsg_alloc_size(32 * 1024));
  if (!msg || !nlmsg_put(msg.get(), 0, 0, RTM_NEWQDISC, 0, 0))
    return InternalError("out of memory");
  struct tcmsg t;
  std::memset(&t, 0, sizeof t);
  t.tcm_family = AF_UNSPEC;
  t.tcm_ifindex = ifindex;
  t.tcm_handle = op.handle;
  t.tcm_parent = op.parent;
  if (nlmsg_append(msg.get(), &t, sizeof t, NLMSG_ALIGNTO) < 0) return InternalError("nlmsg");
  if (nla_put_string(msg.get(), TCA_KIND, "netem") < 0) return InternalError("nla");

  const ImpairmentSpec& im = n.impairment;
  auto ticks = [](std::chrono::nanoseconds t) -> uint32_t {
    // PSCHED_NS2TICKS: one tick = 64 ns (PSCHED_SHIFT 6).
    uint64_t v = static_cast<uint64_t>(std::max<int64_t>(0, t.count())) >> 6;
    return static_cast<uint32_t>(std::min<uint64_t>(v, std::numeric_limits<uint32_t>::max()));
  };
  struct tc_netem_qopt q;
  std::memset(&q, 0, sizeof q);
  q.latency = ticks(im.latency);
  q.jitter = ticks(im.jitter);
  q.limit = n.limit_packets;
  q.loss = im.gemodel ? 0 : im.loss;
  q.gap = im.gap;
  q.duplicate = im.duplicate;
  struct nlattr* opts = nla_reserve(msg.get(), TCA_OPTIONS, sizeof q);
  if (!opts) return InternalError("nla");
  std::memcpy(nla_data(opts), &q, sizeof q);

  struct tc_netem_corr corr = {im.delay_corr, im.gemodel ? 0 : im.loss_corr, im.dup_corr};
  struct tc_netem_reorder reorder = {im.reorder, im.reorder_corr};
  struct tc_netem_corrupt corrupt = {im.corrupt, im.corrupt_corr};
  int64_t latency64 = im.latency.count(), jitter64 = im.jitter.count();
  uint64_t seed = n.seed;
  if (nla_put(msg.get(), TCA_NETEM_CORR, sizeof corr, &corr) < 0 ||
      nla_put(msg.get(), TCA_NETEM_REORDER, sizeof reorder, &reorder) < 0 ||
      nla_put(msg.get(), TCA_NETEM_CORRUPT, sizeof corrupt, &corrupt) < 0 ||
      nla_put(msg.get(), TCA_NETEM_LATENCY64, sizeof latency64, &latency64) < 0 ||
      nla_put(msg.get(), TCA_NETEM_JITTER64, sizeof jitter64, &jitter64) < 0 ||
      nla_put(msg.get(), kTcaNetemPrngSeed, sizeof seed, &seed) < 0) {
    return InternalError("nla");
  }
  if (im.distribution) {
    const std::vector<int16_t>& table = DistributionTable(*im.distribution);
    if (!table.empty() &&
        nla_put(msg.get(), TCA_NETEM_DELAY_DIST, static_cast<int>(table.size() * sizeof(int16_t)),
                table.data()) < 0) {
      return InternalError("nla");
    }
  }
  if (im.gemodel) {
    struct nlattr* loss = nla_nest_start(msg.get(), TCA_NETEM_LOSS);
    struct tc_netem_gemodel ge = {im.gemodel->p, im.gemodel->r, im.gemodel->h, im.gemodel->k1};
    if (!loss || nla_put(msg.get(), NETEM_LOSS_GE, sizeof ge, &ge) < 0) {
      return InternalError("nla");
    }
    nla_nest_end(msg.get(), loss);
  }
  // TCA_OPTIONS covers the qopt and every netem attribute after it.
  struct nlmsghdr* nlh = nlmsg_hdr(msg.get());
  opts->nla_len = static_cast<uint16_t>(reinterpret_cast<char*>(nlh) + nlh->nlmsg_len -
                                        reinterpret_cast<char*>(opts));
  return msg;
}

struct QdiscDeleter {
  void operator()(rtnl_qdisc* q) const { rtnl_qdisc_put(q); }
};
struct ClassDeleter {
  void operator()(rtnl_class* c) const { rtnl_class_put(c); }
};

}  // namespace

std::string TcOp::ToString() const {
  std::string s = VerbName(verb);
  s += object == Object::kQdisc ? " qdisc" : " class";
  if (const auto* h = std::get_if<HtbQdiscParams>(&params)) {
    s += " htb " + HandleStr(handle) +
         (parent == kTcRoot ? " root" : " parent " + HandleStr(parent));
    s += " default " + std::to_string(h->default_minor) + " r2q " + std::to_string(h->r2q);
  } else if (const auto* c = std::get_if<HtbSpec>(&params)) {
    s += " htb " + HandleStr(handle) + " parent " + HandleStr(parent) + " rate " +
         FormatRate(c->rate_bps) + " ceil " + FormatRate(c->ceil_bps) + " burst " +
         std::to_string(c->burst_bytes) + "b cburst " + std::to_string(c->cburst_bytes) +
         "b quantum " + std::to_string(c->quantum_bytes);
  } else if (const auto* f = std::get_if<FifoParams>(&params)) {
    s += " pfifo " + HandleStr(handle) +
         (parent == kTcRoot ? " root" : " parent " + HandleStr(parent));
    s += " limit " + std::to_string(f->limit_packets);
  } else if (const auto* n = std::get_if<NetemSpec>(&params)) {
    s += " netem " + HandleStr(handle) +
         (parent == kTcRoot ? " root" : " parent " + HandleStr(parent));
    s += " limit " + std::to_string(n->limit_packets);
    std::string imp = n->impairment.ToString();
    if (!imp.empty()) s += " " + imp;
    s += " seed " + std::to_string(n->seed);
  } else {
    s += " " + HandleStr(handle) + (parent == kTcRoot ? " root" : " parent " + HandleStr(parent));
  }
  return s;
}

Result<NlMsgHandle> BuildTcMessage(const TcOp& op, int ifindex) {
  NlMsgPtr msg;
  const bool is_qdisc = op.object == TcOp::Object::kQdisc;
  auto bad = [&](const char* why) { return InvalidArgumentError(op.ToString() + ": " + why); };
  if (op.verb == TcVerb::kDelete) {
    if (!std::holds_alternative<std::monostate>(op.params)) return bad("a delete takes no params");
    nl_msg* m = nullptr;
    int err;
    if (is_qdisc) {
      std::unique_ptr<rtnl_qdisc, QdiscDeleter> q(rtnl_qdisc_alloc());
      rtnl_tc_set_ifindex(TC_CAST(q.get()), ifindex);
      rtnl_tc_set_parent(TC_CAST(q.get()), op.parent);
      rtnl_tc_set_handle(TC_CAST(q.get()), op.handle);
      err = rtnl_qdisc_build_delete_request(q.get(), &m);
    } else {
      std::unique_ptr<rtnl_class, ClassDeleter> c(rtnl_class_alloc());
      rtnl_tc_set_ifindex(TC_CAST(c.get()), ifindex);
      rtnl_tc_set_parent(TC_CAST(c.get()), op.parent);
      rtnl_tc_set_handle(TC_CAST(c.get()), op.handle);
      err = rtnl_class_build_delete_request(c.get(), &m);
    }
    if (err < 0) return NlError(err, op.ToString());
    msg.reset(m);
  } else if (const auto* n = std::get_if<NetemSpec>(&op.params)) {
    if (!is_qdisc) return bad("netem is a qdisc");
    GRIDEMU_ASSIGN_OR_RETURN(msg, BuildNetem(op, *n, ifindex));
  } else if (is_qdisc && (std::holds_alternative<HtbQdiscParams>(op.params) ||
                          std::holds_alternative<FifoParams>(op.params))) {
    std::unique_ptr<rtnl_qdisc, QdiscDeleter> q(rtnl_qdisc_alloc());
    rtnl_tc_set_ifindex(TC_CAST(q.get()), ifindex);
    rtnl_tc_set_parent(TC_CAST(q.get()), op.parent);
    rtnl_tc_set_handle(TC_CAST(q.get()), op.handle);
    if (const auto* h = std::get_if<HtbQdiscParams>(&op.params)) {
      rtnl_tc_set_kind(TC_CAST(q.get()), "htb");
      rtnl_htb_set_defcls(q.get(), h->default_minor);
      rtnl_htb_set_rate2quantum(q.get(), h->r2q);
    } else {
      rtnl_tc_set_kind(TC_CAST(q.get()), "pfifo");
      rtnl_qdisc_fifo_set_limit(q.get(),
                                static_cast<int>(std::get<FifoParams>(op.params).limit_packets));
    }
    nl_msg* m = nullptr;
    int err = rtnl_qdisc_build_add_request(q.get(), 0, &m);
    if (err < 0) return NlError(err, op.ToString());
    msg.reset(m);
  } else if (!is_qdisc && std::holds_alternative<HtbSpec>(op.params)) {
    const HtbSpec& h = std::get<HtbSpec>(op.params);
    if (h.rate_bps < 8) return bad("rate below 8bit (1 byte/s)");
    std::unique_ptr<rtnl_class, ClassDeleter> c(rtnl_class_alloc());
    rtnl_tc_set_ifindex(TC_CAST(c.get()), ifindex);
    rtnl_tc_set_parent(TC_CAST(c.get()), op.parent);
    rtnl_tc_set_handle(TC_CAST(c.get()), op.handle);
    rtnl_tc_set_kind(TC_CAST(c.get()), "htb");
    // libnl-route takes HTB rates in bytes per second (struct tc_ratespec).
    rtnl_htb_set_rate64(c.get(), h.rate_bps / 8);
    rtnl_htb_set_ceil64(c.get(), std::max<uint64_t>(h.ceil_bps, h.rate_bps) / 8);
    rtnl_htb_set_rbuffer(c.get(), h.burst_bytes);
    rtnl_htb_set_cbuffer(c.get(), h.cburst_bytes);
    rtnl_htb_set_quantum(c.get(), h.quantum_bytes);
    nl_msg* m = nullptr;
    int err = rtnl_class_build_add_request(c.get(), 0, &m);
    if (err < 0) return NlError(err, op.ToString());
    msg.reset(m);
  } else {
    return bad("params do not match the object");
  }
  // The exact flags of the verb (libnl's builders add NLM_F_CREATE on their own).
  nlmsg_hdr(msg.get())->nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK | VerbFlags(op.verb);
  return NlMsgHandle(msg.release());
}

void NlMsgHandle::Free(nl_msg* m) { nlmsg_free(m); }

Result<std::vector<uint8_t>> EncodeTcOp(const TcOp& op, int ifindex) {
  GRIDEMU_ASSIGN_OR_RETURN(NlMsgHandle msg, BuildTcMessage(op, ifindex));
  struct nlmsghdr* nlh = nlmsg_hdr(msg.get());
  nlh->nlmsg_seq = 0;
  nlh->nlmsg_pid = 0;
  const uint8_t* p = reinterpret_cast<const uint8_t*>(nlh);
  return std::vector<uint8_t>(p, p + nlh->nlmsg_len);
}

// ---- the real ops ----

RtnlSocket::~RtnlSocket() {
  if (sk_) nl_socket_free(sk_);
}

Result<std::shared_ptr<RtnlSocket>> RtnlSocket::Open(const std::string& netns_path) {
  auto s = std::shared_ptr<RtnlSocket>(new RtnlSocket());
  Status st = RunInNetns(netns_path, [&]() -> Status {
    s->sk_ = nl_socket_alloc();
    if (!s->sk_) return InternalError("nl_socket_alloc failed");
    nl_socket_disable_auto_ack(s->sk_);
    int err = nl_connect(s->sk_, NETLINK_ROUTE);
    if (err < 0) return NlError(err, "rtnetlink socket");
    return Status::Ok();
  });
  if (!st.ok()) return st;
  int one = 1;
  setsockopt(nl_socket_get_fd(s->sk_), SOL_NETLINK, NETLINK_EXT_ACK, &one, sizeof one);
  setsockopt(nl_socket_get_fd(s->sk_), SOL_NETLINK, NETLINK_CAP_ACK, &one, sizeof one);
  s->netns_ = netns_path;
  return s;
}

Status RtnlSocket::Transact(nl_msg* msg, const std::string& what,
                            const std::function<void(const nlmsghdr*)>& on_reply) {
  std::lock_guard<std::mutex> lock(mu_);
  nl_complete_msg(sk_, msg);
  const uint32_t seq = nlmsg_hdr(msg)->nlmsg_seq;
  const bool want_ack = nlmsg_hdr(msg)->nlmsg_flags & NLM_F_ACK;
  int err = nl_send(sk_, msg);
  if (err < 0) return NlError(err, what);
  const int fd = nl_socket_get_fd(sk_);
  std::vector<char> buf(64 * 1024);
  bool got_reply = false, multi = false;
  while (true) {
    ssize_t n = recv(fd, buf.data(), buf.size(), 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoStatus(errno, what + ": receiving the kernel's answer");
    }
    int len = static_cast<int>(n);
    for (auto* h = reinterpret_cast<nlmsghdr*>(buf.data()); NLMSG_OK(h, len);
         h = NLMSG_NEXT(h, len)) {
      if (h->nlmsg_seq != seq) continue;  // stale answer to an earlier request
      if (h->nlmsg_type == NLMSG_ERROR) {
        auto* e = static_cast<nlmsgerr*>(NLMSG_DATA(h));
        if (e->error == 0) return Status::Ok();
        // Extended ack: the kernel's own message (e.g. "Specified qdisc kind is unknown").
        std::string ext;
        if (h->nlmsg_flags & NLM_F_ACK_TLVS) {
          size_t off = NLMSG_HDRLEN + sizeof(nlmsgerr);
          if (!(h->nlmsg_flags & NLM_F_CAPPED)) off += e->msg.nlmsg_len - NLMSG_HDRLEN;
          auto* a = reinterpret_cast<nlattr*>(reinterpret_cast<char*>(h) + NLMSG_ALIGN(off));
          int rem = static_cast<int>(h->nlmsg_len) - static_cast<int>(NLMSG_ALIGN(off));
          for (; nla_ok(a, rem); a = nla_next(a, &rem)) {
            if (nla_type(a) == NLMSGERR_ATTR_MSG) ext = static_cast<const char*>(nla_data(a));
          }
        }
        std::string w = ext.empty() ? what : what + ": " + ext;
        return ErrnoStatus(-e->error, w);
      }
      if (h->nlmsg_type == NLMSG_DONE) return Status::Ok();
      if (on_reply) on_reply(h);
      got_reply = true;
      if (h->nlmsg_flags & NLM_F_MULTI) multi = true;  // a dump: read on to NLMSG_DONE
    }
    if (got_reply && !want_ack && !multi) return Status::Ok();
  }
}

namespace {

class RtnlOps : public NetlinkOps {
 public:
  RtnlOps(std::shared_ptr<RtnlSocket> sock, int ifindex, std::string ifname)
      : sock_(std::move(sock)), ifindex_(ifindex), ifname_(std::move(ifname)) {}

  Status Execute(const TcOp& op) override {
    GRIDEMU_ASSIGN_OR_RETURN(NlMsgHandle msg, BuildTcMessage(op, ifindex_));
    Status s = sock_->Transact(msg.get(), ifname_ + ": " + op.ToString(), nullptr);
    if (!s.ok() && s.code() == StatusCode::kNotFound &&
        s.message().find("qdisc kind is unknown") != std::string::npos) {
      return UnimplementedError(s.message());
    }
    return s;
  }

  Result<TcStats> Stats(TcOp::Object object, uint32_t handle) override {
    GRIDEMU_ASSIGN_OR_RETURN(TcInfo info, GetTcInfo(*sock_, ifindex_, object, handle));
    return info.stats;
  }

 private:
  std::shared_ptr<RtnlSocket> sock_;
  int ifindex_;
  std::string ifname_;
};

}  // namespace

Result<TcInfo> GetTcInfo(RtnlSocket& sock, int ifindex, TcOp::Object object, uint32_t handle,
                         uint32_t parent) {
  const bool qdisc = object == TcOp::Object::kQdisc;
  NlMsgPtr msg(nlmsg_alloc_simple(qdisc ? RTM_GETQDISC : RTM_GETTCLASS, 0));
  struct tcmsg t;
  std::memset(&t, 0, sizeof t);
  t.tcm_family = AF_UNSPEC;
  t.tcm_ifindex = ifindex;
  t.tcm_handle = handle;
  t.tcm_parent = parent;
  nlmsg_append(msg.get(), &t, sizeof t, NLMSG_ALIGNTO);
  // Recent kernels answer a get on the RTNLGRP_TC multicast group only, unless the request
  // asks for NLM_F_ECHO; the ack ends the answer (a builtin root such as noqueue gets no
  // reply at all, only the ack).
  nlmsg_hdr(msg.get())->nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_ECHO;
  TcInfo info;
  bool found = false;
  std::string what = std::string(qdisc ? "qdisc " : "class ") + HandleStr(handle) + " stats";
  GRIDEMU_RETURN_IF_ERROR(sock.Transact(msg.get(), what, [&](const nlmsghdr* h) {
    if (h->nlmsg_type != (qdisc ? RTM_NEWQDISC : RTM_NEWTCLASS)) return;
    struct nlattr* tb[TCA_MAX + 1];
    if (nlmsg_parse(const_cast<nlmsghdr*>(h), sizeof(struct tcmsg), tb, TCA_MAX, nullptr) < 0) {
      return;
    }
    const auto* tm = static_cast<const tcmsg*>(NLMSG_DATA(h));
    if (!qdisc && tm->tcm_handle != handle) return;
    if (found) return;
    info.handle = tm->tcm_handle;
    info.parent = tm->tcm_parent;
    found = true;
    if (tb[TCA_KIND]) info.kind = nla_get_string(tb[TCA_KIND]);
    if (tb[TCA_STATS2]) {
      struct nlattr* st[TCA_STATS_MAX + 1];
      if (nla_parse_nested(st, TCA_STATS_MAX, tb[TCA_STATS2], nullptr) == 0) {
        if (st[TCA_STATS_BASIC]) {
          struct gnet_stats_basic b;
          std::memset(&b, 0, sizeof b);
          std::memcpy(&b, nla_data(st[TCA_STATS_BASIC]),
                      std::min<size_t>(sizeof b, nla_len(st[TCA_STATS_BASIC])));
          info.stats.bytes = b.bytes;
          info.stats.packets = b.packets;
        }
        if (st[TCA_STATS_PKT64]) info.stats.packets = nla_get_u64(st[TCA_STATS_PKT64]);
        if (st[TCA_STATS_QUEUE]) {
          struct gnet_stats_queue q;
          std::memset(&q, 0, sizeof q);
          std::memcpy(&q, nla_data(st[TCA_STATS_QUEUE]),
                      std::min<size_t>(sizeof q, nla_len(st[TCA_STATS_QUEUE])));
          info.stats.qlen = q.qlen;
          info.stats.backlog = q.backlog;
          info.stats.drops = q.drops;
          info.stats.overlimits = q.overlimits;
        }
      }
    }
  }));
  if (!found) return NotFoundError(what + ": no such object");
  return info;
}

Result<uint32_t> GetGsoMaxSegs(RtnlSocket& sock, int ifindex) {
  NlMsgPtr msg(nlmsg_alloc_simple(RTM_GETLINK, 0));
  struct ifinfomsg ifi;
  std::memset(&ifi, 0, sizeof ifi);
  ifi.ifi_family = AF_UNSPEC;
  ifi.ifi_index = ifindex;
  nlmsg_append(msg.get(), &ifi, sizeof ifi, NLMSG_ALIGNTO);
  nlmsg_hdr(msg.get())->nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK;
  std::optional<uint32_t> segs;
  GRIDEMU_RETURN_IF_ERROR(
      sock.Transact(msg.get(), "link " + std::to_string(ifindex), [&](const nlmsghdr* h) {
        if (h->nlmsg_type != RTM_NEWLINK) return;
        struct nlattr* tb[IFLA_MAX + 1];
        if (nlmsg_parse(const_cast<nlmsghdr*>(h), sizeof(struct ifinfomsg), tb, IFLA_MAX, nullptr) <
            0) {
          return;
        }
        if (tb[IFLA_GSO_MAX_SEGS]) segs = nla_get_u32(tb[IFLA_GSO_MAX_SEGS]);
      }));
  if (!segs) return NotFoundError("link " + std::to_string(ifindex) + ": no gso_max_segs");
  return *segs;
}

Result<LinkFacts> GetLinkFacts(RtnlSocket& sock, int ifindex) {
  NlMsgPtr msg(nlmsg_alloc_simple(RTM_GETLINK, 0));
  struct ifinfomsg ifi;
  std::memset(&ifi, 0, sizeof ifi);
  ifi.ifi_family = AF_UNSPEC;
  ifi.ifi_index = ifindex;
  nlmsg_append(msg.get(), &ifi, sizeof ifi, NLMSG_ALIGNTO);
  nlmsg_hdr(msg.get())->nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK;
  LinkFacts facts;
  bool seen = false;
  GRIDEMU_RETURN_IF_ERROR(
      sock.Transact(msg.get(), "link " + std::to_string(ifindex), [&](const nlmsghdr* h) {
        if (h->nlmsg_type != RTM_NEWLINK) return;
        struct nlattr* tb[IFLA_MAX + 1];
        if (nlmsg_parse(const_cast<nlmsghdr*>(h), sizeof(struct ifinfomsg), tb, IFLA_MAX,
                        nullptr) < 0) {
          return;
        }
        seen = true;
        if (tb[IFLA_ADDRESS] && nla_len(tb[IFLA_ADDRESS]) == 6) {
          std::array<uint8_t, 6> mac;
          std::memcpy(mac.data(), nla_data(tb[IFLA_ADDRESS]), 6);
          facts.mac = mac;
        }
        if (tb[IFLA_MASTER]) facts.master = static_cast<int>(nla_get_u32(tb[IFLA_MASTER]));
      }));
  if (!seen) return NotFoundError("link " + std::to_string(ifindex) + ": no answer");
  return facts;
}

Status SetGsoMaxSegs(RtnlSocket& sock, int ifindex, uint32_t segs) {
  NlMsgPtr msg(nlmsg_alloc_simple(RTM_NEWLINK, 0));
  struct ifinfomsg ifi;
  std::memset(&ifi, 0, sizeof ifi);
  ifi.ifi_family = AF_UNSPEC;
  ifi.ifi_index = ifindex;
  nlmsg_append(msg.get(), &ifi, sizeof ifi, NLMSG_ALIGNTO);
  nla_put_u32(msg.get(), IFLA_GSO_MAX_SEGS, segs);
  nlmsg_hdr(msg.get())->nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK;
  return sock.Transact(
      msg.get(), "link " + std::to_string(ifindex) + ": set gso_max_segs " + std::to_string(segs),
      nullptr);
}

Result<int> InterfaceIndex(const std::string& netns_path, const std::string& ifname) {
  int idx = 0;
  GRIDEMU_RETURN_IF_ERROR(RunInNetns(netns_path, [&]() -> Status {
    idx = static_cast<int>(if_nametoindex(ifname.c_str()));
    if (idx == 0) {
      return NotFoundError("interface " + ifname + " not found in network namespace " +
                           (netns_path.empty() ? std::string("(current)") : netns_path));
    }
    return Status::Ok();
  }));
  return idx;
}

std::unique_ptr<NetlinkOps> MakeRtnlOps(std::shared_ptr<RtnlSocket> sock, int ifindex,
                                        std::string ifname) {
  return std::make_unique<RtnlOps>(std::move(sock), ifindex, std::move(ifname));
}

Result<std::unique_ptr<NetlinkOps>> OpenNetlinkOps(const std::string& netns_path,
                                                   std::string_view ifname) {
  GRIDEMU_ASSIGN_OR_RETURN(int ifindex, InterfaceIndex(netns_path, std::string(ifname)));
  GRIDEMU_ASSIGN_OR_RETURN(std::shared_ptr<RtnlSocket> sock, RtnlSocket::Open(netns_path));
  return MakeRtnlOps(std::move(sock), ifindex, std::string(ifname));
}

// ---- recording fake ----

Status RecordingNetlinkOps::Execute(const TcOp& op) {
  ops.push_back(op);
  if (static_cast<int>(ops.size()) - 1 == fail_at) return failure;
  return Status::Ok();
}

Result<TcStats> RecordingNetlinkOps::Stats(TcOp::Object, uint32_t) { return stats; }

// ---- plans -> ops ----

std::vector<TcOp> ApplyOps(const Plan& plan) {
  std::vector<TcOp> ops;
  using O = TcOp::Object;
  if (plan.htb) {
    ops.push_back({TcVerb::kAdd, O::kQdisc, kTcRoot, kRootQdiscHandle, HtbQdiscParams{}});
    ops.push_back({TcVerb::kAdd, O::kClass, kRootQdiscHandle, kRateClassId, *plan.htb});
    if (plan.netem) {
      ops.push_back({TcVerb::kAdd, O::kQdisc, plan.netem->parent, plan.netem->handle, *plan.netem});
    } else if (plan.fifo_limit_packets) {
      ops.push_back({TcVerb::kAdd, O::kQdisc, kRateClassId, kLeafQdiscHandle,
                     FifoParams{*plan.fifo_limit_packets}});
    }
  } else if (plan.netem) {
    ops.push_back({TcVerb::kAdd, O::kQdisc, kTcRoot, kRootQdiscHandle, *plan.netem});
  }
  return ops;
}

std::vector<TcOp> RemoveOps(const Plan& plan) {
  if (!plan.has_qdiscs()) return {};
  return {{TcVerb::kDelete, TcOp::Object::kQdisc, kTcRoot, kRootQdiscHandle, std::monostate{}}};
}

std::vector<TcOp> ChangeOps(const Plan& from, const Plan& to) {
  using O = TcOp::Object;
  const bool from_htb = from.htb.has_value(), to_htb = to.htb.has_value();
  const bool from_root_netem = !from_htb && from.netem, to_root_netem = !to_htb && to.netem;
  if (!from.has_qdiscs()) return ApplyOps(to);
  if (!to.has_qdiscs()) return RemoveOps(from);
  if (from_htb != to_htb || from_root_netem != to_root_netem) {
    std::vector<TcOp> ops = RemoveOps(from);
    for (auto& op : ApplyOps(to)) ops.push_back(op);
    return ops;
  }
  std::vector<TcOp> ops;
  if (!to_htb) {  // netem root on both sides
    if (*from.netem != *to.netem) {
      ops.push_back({TcVerb::kChange, O::kQdisc, kTcRoot, kRootQdiscHandle, *to.netem});
    }
    return ops;
  }
  if (*from.htb != *to.htb) {
    ops.push_back({TcVerb::kChange, O::kClass, kRootQdiscHandle, kRateClassId, *to.htb});
  }
  // The leaf under 1:1.
  if (from.netem && to.netem) {
    if (*from.netem != *to.netem) {
      ops.push_back({TcVerb::kChange, O::kQdisc, kRateClassId, kLeafQdiscHandle, *to.netem});
    }
  } else if (from.fifo_limit_packets && to.fifo_limit_packets) {
    if (*from.fifo_limit_packets != *to.fifo_limit_packets) {
      ops.push_back({TcVerb::kChange, O::kQdisc, kRateClassId, kLeafQdiscHandle,
                     FifoParams{*to.fifo_limit_packets}});
    }
  } else if (to.netem) {
    ops.push_back({TcVerb::kReplace, O::kQdisc, kRateClassId, kLeafQdiscHandle, *to.netem});
  } else if (to.fifo_limit_packets) {
    ops.push_back({TcVerb::kReplace, O::kQdisc, kRateClassId, kLeafQdiscHandle,
                   FifoParams{*to.fifo_limit_packets}});
  }
  return ops;
}

Status Apply(const Plan& plan, NetlinkOps& ops) {
  std::vector<TcOp> list = ApplyOps(plan);
  for (size_t i = 0; i < list.size(); ++i) {
    Status s = ops.Execute(list[i]);
    if (!s.ok()) {
      if (i > 0) {
        for (const TcOp& undo : RemoveOps(plan)) (void)ops.Execute(undo);
      }
      return s;
    }
  }
  return Status::Ok();
}

Status Change(const Plan& from, const Plan& to, NetlinkOps& ops) {
  for (const TcOp& op : ChangeOps(from, to)) {
    Status s = ops.Execute(op);
    if (!s.ok() && !(op.verb == TcVerb::kDelete && s.code() == StatusCode::kNotFound)) return s;
  }
  return Status::Ok();
}

Status Remove(const Plan& plan, NetlinkOps& ops) {
  for (const TcOp& op : RemoveOps(plan)) {
    Status s = ops.Execute(op);
    if (!s.ok() && s.code() != StatusCode::kNotFound) return s;
  }
  return Status::Ok();
}

}  // namespace gridemu::netshape

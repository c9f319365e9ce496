// Plans -> tc operations -> rtnetlink messages, checked without a kernel: this is how the
// netem backend is tested where the kernel has no sch_netem (see root_test.cc for the
// real-kernel part).
#include "gridemu/netshape/netlink_ops.h"

#include <gtest/gtest.h>
#include <linux/netlink.h>
#include <linux/pkt_sched.h>
#include <linux/rtnetlink.h>

#include <cstring>
#include <map>

namespace gridemu::netshape {
namespace {
using namespace std::chrono_literals;

PlanOptions Opts(Backend b) {
  PlanOptions o;
  o.backend = b;
  o.seed = 1;
  o.stream = "t";
  return o;
}

Plan MustPlan(const LinkProfile& p, Backend b) {
  auto r = BuildPlan(p, Direction::kForward, Opts(b));
  EXPECT_TRUE(r.ok()) << r.status().ToString();
  return r.ok() ? *r : Plan{};
}

std::vector<std::string> Strings(const std::vector<TcOp>& ops) {
  std::vector<std::string> out;
  for (const auto& op : ops) {
    std::string s = op.ToString();
    out.push_back(s.substr(0, s.find(" seed ")));  // seeds are checked elsewhere
  }
  return out;
}

// ---- ops ----

TEST(NetshapeTcOps, ApplyRateOnly) {
  LinkProfile p;
  p.rate_bps = 10'000'000;
  p.queue_packets = 100;
  EXPECT_EQ(Strings(ApplyOps(MustPlan(p, Backend::kUserspace))),
            (std::vector<std::string>{
                "add qdisc htb 1: root default 1 r2q 10",
                "add class htb 1:1 parent 1: rate 10mbit ceil 10mbit burst 3000b cburst 3000b "
                "quantum 125000",
                "add qdisc pfifo 10: parent 1:1 limit 100"}));
}

TEST(NetshapeTcOps, ApplyNetemUnderHtb) {
  LinkProfile p;
  p.rate_bps = 10'000'000;
  p.delay = 20ms;
  p.loss = 0.01;
  p.queue_packets = 100;
  EXPECT_EQ(Strings(ApplyOps(MustPlan(p, Backend::kNetem))),
            (std::vector<std::string>{
                "add qdisc htb 1: root default 1 r2q 10",
                "add class htb 1:1 parent 1: rate 10mbit ceil 10mbit burst 3000b cburst 3000b "
                "quantum 125000",
                "add qdisc netem 10: parent 1:1 limit 117 delay 20ms loss 1%"}));
}

TEST(NetshapeTcOps, ApplyNetemAlone) {
  LinkProfile p;
  p.delay = 20ms;
  EXPECT_EQ(Strings(ApplyOps(MustPlan(p, Backend::kNetem))),
            (std::vector<std::string>{"add qdisc netem 1: root limit 1000 delay 20ms"}));
  // The userspace backend puts no qdisc for a delay: the delay line does it.
  EXPECT_TRUE(ApplyOps(MustPlan(p, Backend::kUserspace)).empty());
}

TEST(NetshapeTcOps, RemoveDeletesTheRoot) {
  LinkProfile p;
  p.rate_bps = 1'000'000;
  EXPECT_EQ(Strings(RemoveOps(MustPlan(p, Backend::kNetem))),
            (std::vector<std::string>{"delete qdisc 1: root"}));
  EXPECT_TRUE(RemoveOps(Plan{}).empty());
}

TEST(NetshapeTcOps, ChangingDelayChangesOnlyNetemInPlace) {
  LinkProfile p;
  p.rate_bps = 10'000'000;
  p.delay = 20ms;
  p.loss = 0.01;
  p.queue_packets = 100;
  Plan from = MustPlan(p, Backend::kNetem);
  LinkProfile delta;
  delta.delay = 50ms;
  Plan to = MustPlan(p.MergedWith(delta), Backend::kNetem);
  std::vector<TcOp> ops = ChangeOps(from, to);
  // One netem change: no class op (rate untouched), no delete (queue kept), the loss
  // carried over (netem_change() resets whatever a change request leaves out).
  EXPECT_EQ(
      Strings(ops),
      (std::vector<std::string>{"change qdisc netem 10: parent 1:1 limit 142 delay 50ms loss 1%"}));
  ASSERT_EQ(ops.size(), 1u);
  EXPECT_EQ(ops[0].verb, TcVerb::kChange);
  EXPECT_EQ(std::get<NetemSpec>(ops[0].params).seed, from.netem->seed);
}

TEST(NetshapeTcOps, ChangingRateChangesOnlyTheClass) {
  LinkProfile p;
  p.rate_bps = 10'000'000;
  p.delay = 20ms;
  Plan from = MustPlan(p, Backend::kUserspace);
  LinkProfile delta;
  delta.rate_bps = 20'000'000;
  Plan to = MustPlan(p.MergedWith(delta), Backend::kUserspace);
  EXPECT_EQ(Strings(ChangeOps(from, to)),
            (std::vector<std::string>{"change class htb 1:1 parent 1: rate 20mbit ceil 20mbit "
                                      "burst 4000b cburst 4000b quantum 200000"}));
  delta = {};
  delta.queue_packets = 10;
  EXPECT_EQ(Strings(ChangeOps(from, MustPlan(p.MergedWith(delta), Backend::kUserspace))),
            (std::vector<std::string>{"change qdisc pfifo 10: parent 1:1 limit 10"}));
  EXPECT_TRUE(ChangeOps(from, from).empty());
}

TEST(NetshapeTcOps, NetemRootChangeAndLeafReplace) {
  LinkProfile p;
  p.delay = 20ms;
  Plan netem_root = MustPlan(p, Backend::kNetem);
  LinkProfile d;
  d.loss = 0.1;
  EXPECT_EQ(
      Strings(ChangeOps(netem_root, MustPlan(p.MergedWith(d), Backend::kNetem))),
      (std::vector<std::string>{"change qdisc netem 1: root limit 1000 delay 20ms loss 10%"}));
  // pfifo leaf -> netem leaf: swapped under the class, the class is kept.
  LinkProfile r;
  r.rate_bps = 1'000'000;
  Plan rate_only = MustPlan(r, Backend::kNetem);
  LinkProfile dd;
  dd.delay = 5ms;
  EXPECT_EQ(Strings(ChangeOps(rate_only, MustPlan(r.MergedWith(dd), Backend::kNetem))),
            (std::vector<std::string>{"replace qdisc netem 10: parent 1:1 limit 1001 delay 5ms"}));
  // A netem root getting a rate needs a new root (documented: its queue is dropped).
  EXPECT_EQ(Strings(ChangeOps(netem_root, MustPlan(p.MergedWith(r), Backend::kNetem))),
            (std::vector<std::string>{
                "delete qdisc 1: root", "add qdisc htb 1: root default 1 r2q 10",
                "add class htb 1:1 parent 1: rate 1mbit ceil 1mbit burst 3000b cburst 3000b "
                "quantum 12500",
                "add qdisc netem 10: parent 1:1 limit 1002 delay 20ms"}));
}

TEST(NetshapeTcOps, ApplyUndoesAPartialSetup) {
  LinkProfile p;
  p.rate_bps = 10'000'000;
  p.delay = 1ms;
  RecordingNetlinkOps rec;
  rec.fail_at = 2;  // the netem leaf
  rec.failure = UnimplementedError("Specified qdisc kind is unknown");
  Status s = Apply(MustPlan(p, Backend::kNetem), rec);
  EXPECT_EQ(s, rec.failure);
  EXPECT_EQ(Strings(rec.ops),
            (std::vector<std::string>{
                "add qdisc htb 1: root default 1 r2q 10",
                "add class htb 1:1 parent 1: rate 10mbit ceil 10mbit burst 3000b cburst 3000b "
                "quantum 125000",
                "add qdisc netem 10: parent 1:1 limit 1001 delay 1ms", "delete qdisc 1: root"}));
}

TEST(NetshapeTcOps, RemoveToleratesAMissingRoot) {
  LinkProfile p;
  p.rate_bps = 1'000'000;
  RecordingNetlinkOps rec;
  rec.fail_at = 0;
  rec.failure = NotFoundError("no such qdisc");
  EXPECT_TRUE(Remove(MustPlan(p, Backend::kNetem), rec).ok());
  rec.ops.clear();
  rec.failure = PermissionDeniedError("nope");
  EXPECT_FALSE(Remove(MustPlan(p, Backend::kNetem), rec).ok());
}

// ---- messages ----

struct Msg {
  nlmsghdr hdr;
  tcmsg tc;
  std::map<int, std::vector<uint8_t>> attrs;  // top-level TCA_*
};

std::map<int, std::vector<uint8_t>> ParseAttrs(const uint8_t* p, size_t len) {
  std::map<int, std::vector<uint8_t>> out;
  size_t off = 0;
  while (off + sizeof(nlattr) <= len) {
    nlattr a;
    std::memcpy(&a, p + off, sizeof a);
    if (a.nla_len < sizeof a || off + a.nla_len > len) break;
    out[a.nla_type & NLA_TYPE_MASK] = std::vector<uint8_t>(p + off + sizeof a, p + off + a.nla_len);
    off += NLA_ALIGN(a.nla_len);
  }
  return out;
}

Msg Parse(const std::vector<uint8_t>& b) {
  Msg m;
  EXPECT_GE(b.size(), NLMSG_LENGTH(sizeof(tcmsg)));
  std::memcpy(&m.hdr, b.data(), sizeof m.hdr);
  EXPECT_EQ(m.hdr.nlmsg_len, b.size());
  std::memcpy(&m.tc, b.data() + NLMSG_HDRLEN, sizeof m.tc);
  size_t off = NLMSG_HDRLEN + NLMSG_ALIGN(sizeof(tcmsg));
  m.attrs = ParseAttrs(b.data() + off, b.size() - off);
  return m;
}

template <typename T>
T As(const std::vector<uint8_t>& v) {
  T t;
  EXPECT_GE(v.size(), sizeof t);
  std::memcpy(&t, v.data(), sizeof t);
  return t;
}

std::string Str(const std::vector<uint8_t>& v) {
  return std::string(v.begin(), std::find(v.begin(), v.end(), 0));
}

TEST(NetshapeTcMessages, NetemAddCarriesEveryParameter) {
  LinkProfile p;
  p.rate_bps = 100'000'000;
  p.delay = 100ms;
  p.jitter = 10ms;
  p.delay_distribution = DelayDistribution::kNormal;
  p.delay_correlation = 0.25;
  p.duplicate = 0.01;
  p.reorder = 0.25;
  p.reorder_gap = 5;
  p.corrupt = 0.001;
  p.loss_gemodel = GilbertElliott{0.01, 0.3, 0.8, 0.001};
  Plan plan = MustPlan(p, Backend::kNetem);
  std::vector<TcOp> ops = ApplyOps(plan);
  ASSERT_EQ(ops.size(), 3u);
  auto bytes = EncodeTcOp(ops[2], 7);
  ASSERT_TRUE(bytes.ok()) << bytes.status().ToString();
  Msg m = Parse(*bytes);
  EXPECT_EQ(m.hdr.nlmsg_type, RTM_NEWQDISC);
  EXPECT_EQ(m.hdr.nlmsg_flags, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL);
  EXPECT_EQ(m.tc.tcm_ifindex, 7);
  EXPECT_EQ(m.tc.tcm_parent, kRateClassId);
  EXPECT_EQ(m.tc.tcm_handle, kLeafQdiscHandle);
  EXPECT_EQ(Str(m.attrs[TCA_KIND]), "netem");
  const auto& opts = m.attrs[TCA_OPTIONS];
  auto q = As<tc_netem_qopt>(opts);
  EXPECT_EQ(q.latency, 100'000'000u >> 6);  // psched ticks of 64 ns
  EXPECT_EQ(q.jitter, 10'000'000u >> 6);
  EXPECT_EQ(q.limit, plan.netem->limit_packets);
  EXPECT_EQ(q.loss, 0u);  // the Gilbert–Elliott model replaces random loss
  EXPECT_EQ(q.gap, 5u);
  EXPECT_EQ(q.duplicate, ProbabilityToU32(0.01));
  auto na = ParseAttrs(opts.data() + NLA_ALIGN(sizeof(tc_netem_qopt)),
                       opts.size() - NLA_ALIGN(sizeof(tc_netem_qopt)));
  auto corr = As<tc_netem_corr>(na[TCA_NETEM_CORR]);
  EXPECT_EQ(corr.delay_corr, ProbabilityToU32(0.25));
  EXPECT_EQ(corr.loss_corr, 0u);
  auto reo = As<tc_netem_reorder>(na[TCA_NETEM_REORDER]);
  EXPECT_EQ(reo.probability, ProbabilityToU32(0.25));
  auto cor = As<tc_netem_corrupt>(na[TCA_NETEM_CORRUPT]);
  EXPECT_EQ(cor.probability, ProbabilityToU32(0.001));
  EXPECT_EQ(As<int64_t>(na[TCA_NETEM_LATENCY64]), 100'000'000);
  EXPECT_EQ(As<int64_t>(na[TCA_NETEM_JITTER64]), 10'000'000);
  EXPECT_EQ(As<uint64_t>(na[14 /* TCA_NETEM_PRNG_SEED */]), plan.netem->seed);
  const auto& dist = na[TCA_NETEM_DELAY_DIST];
  ASSERT_EQ(dist.size(), 4096 * sizeof(int16_t));
  EXPECT_EQ(
      std::memcmp(dist.data(), DistributionTable(DelayDistribution::kNormal).data(), dist.size()),
      0);
  auto loss = ParseAttrs(na[TCA_NETEM_LOSS].data(), na[TCA_NETEM_LOSS].size());
  auto ge = As<tc_netem_gemodel>(loss[NETEM_LOSS_GE]);
  EXPECT_EQ(ge.p, ProbabilityToU32(0.01));
  EXPECT_EQ(ge.r, ProbabilityToU32(0.3));
  EXPECT_EQ(ge.h, ProbabilityToU32(0.2));
  EXPECT_EQ(ge.k1, ProbabilityToU32(0.001));
}

TEST(NetshapeTcMessages, NetemChangeIsAChangeRequestWithTheFullParameterSet) {
  LinkProfile p;
  p.delay = 20ms;
  p.loss = 0.05;
  Plan from = MustPlan(p, Backend::kNetem);
  LinkProfile d;
  d.delay = 80ms;
  auto ops = ChangeOps(from, MustPlan(p.MergedWith(d), Backend::kNetem));
  ASSERT_EQ(ops.size(), 1u);
  auto bytes = EncodeTcOp(ops[0], 3);
  ASSERT_TRUE(bytes.ok());
  Msg m = Parse(*bytes);
  EXPECT_EQ(m.hdr.nlmsg_type, RTM_NEWQDISC);
  // No NLM_F_CREATE/EXCL/REPLACE: the kernel calls netem_change() on the existing qdisc.
  EXPECT_EQ(m.hdr.nlmsg_flags, NLM_F_REQUEST | NLM_F_ACK);
  EXPECT_EQ(m.tc.tcm_parent, kTcRoot);
  EXPECT_EQ(m.tc.tcm_handle, kRootQdiscHandle);
  auto q = As<tc_netem_qopt>(m.attrs[TCA_OPTIONS]);
  EXPECT_EQ(q.latency, 80'000'000u >> 6);
  EXPECT_EQ(q.loss, ProbabilityToU32(0.05));  // loss kept
  EXPECT_EQ(q.limit, 1000u);
  EXPECT_EQ(q.gap, 0u);
  auto na = ParseAttrs(m.attrs[TCA_OPTIONS].data() + NLA_ALIGN(sizeof(tc_netem_qopt)),
                       m.attrs[TCA_OPTIONS].size() - NLA_ALIGN(sizeof(tc_netem_qopt)));
  EXPECT_FALSE(na.count(TCA_NETEM_DELAY_DIST));
  EXPECT_FALSE(na.count(TCA_NETEM_LOSS));
}

TEST(NetshapeTcMessages, HtbClassRatesAreBytesPerSecond) {
  LinkProfile p;
  p.rate_bps = 100'000'000;
  auto ops = ApplyOps(MustPlan(p, Backend::kUserspace));
  ASSERT_EQ(ops.size(), 3u);
  // Root qdisc.
  Msg root = Parse(*EncodeTcOp(ops[0], 9));
  EXPECT_EQ(root.hdr.nlmsg_type, RTM_NEWQDISC);
  EXPECT_EQ(root.tc.tcm_parent, TC_H_ROOT);
  EXPECT_EQ(root.tc.tcm_handle, 0x10000u);
  EXPECT_EQ(Str(root.attrs[TCA_KIND]), "htb");
  auto rq = ParseAttrs(root.attrs[TCA_OPTIONS].data(), root.attrs[TCA_OPTIONS].size());
  auto glob = As<tc_htb_glob>(rq[TCA_HTB_INIT]);
  EXPECT_EQ(glob.defcls, 1u);
  EXPECT_EQ(glob.rate2quantum, 10u);
  // Class.
  Msg cls = Parse(*EncodeTcOp(ops[1], 9));
  EXPECT_EQ(cls.hdr.nlmsg_type, RTM_NEWTCLASS);
  EXPECT_EQ(cls.hdr.nlmsg_flags, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL);
  EXPECT_EQ(cls.tc.tcm_parent, 0x10000u);
  EXPECT_EQ(cls.tc.tcm_handle, 0x10001u);
  EXPECT_EQ(Str(cls.attrs[TCA_KIND]), "htb");
  auto ca = ParseAttrs(cls.attrs[TCA_OPTIONS].data(), cls.attrs[TCA_OPTIONS].size());
  auto opt = As<tc_htb_opt>(ca[TCA_HTB_PARMS]);
  EXPECT_EQ(opt.rate.rate, 12'500'000u);
  EXPECT_EQ(opt.ceil.rate, 12'500'000u);
  EXPECT_EQ(opt.quantum, 200000u);
  EXPECT_GT(opt.buffer, 0u);
  // Leaf.
  Msg leaf = Parse(*EncodeTcOp(ops[2], 9));
  EXPECT_EQ(Str(leaf.attrs[TCA_KIND]), "pfifo");
  EXPECT_EQ(As<tc_fifo_qopt>(leaf.attrs[TCA_OPTIONS]).limit, 1000u);
  EXPECT_EQ(leaf.tc.tcm_parent, 0x10001u);
  EXPECT_EQ(leaf.tc.tcm_handle, 0x100000u);
}

TEST(NetshapeTcMessages, HtbChangeHasNoCreateFlag) {
  TcOp op{TcVerb::kChange, TcOp::Object::kClass, kRootQdiscHandle, kRateClassId,
          HtbSpec{8'000'000, 8'000'000, 3000, 3000, 100000}};
  Msg m = Parse(*EncodeTcOp(op, 2));
  EXPECT_EQ(m.hdr.nlmsg_type, RTM_NEWTCLASS);
  EXPECT_EQ(m.hdr.nlmsg_flags, NLM_F_REQUEST | NLM_F_ACK);
  auto ca = ParseAttrs(m.attrs[TCA_OPTIONS].data(), m.attrs[TCA_OPTIONS].size());
  EXPECT_EQ(As<tc_htb_opt>(ca[TCA_HTB_PARMS]).rate.rate, 1'000'000u);
}

TEST(NetshapeTcMessages, DeleteAndReplace) {
  Msg del = Parse(*EncodeTcOp(RemoveOps(MustPlan(
                                  [] {
                                    LinkProfile p;
                                    p.rate_bps = 1'000'000;
                                    return p;
                                  }(),
                                  Backend::kNetem))[0],
                              4));
  EXPECT_EQ(del.hdr.nlmsg_type, RTM_DELQDISC);
  EXPECT_EQ(del.hdr.nlmsg_flags, NLM_F_REQUEST | NLM_F_ACK);
  EXPECT_EQ(del.tc.tcm_parent, TC_H_ROOT);
  EXPECT_EQ(del.tc.tcm_handle, 0x10000u);
  TcOp rep{TcVerb::kReplace, TcOp::Object::kQdisc, kRateClassId, kLeafQdiscHandle, FifoParams{5}};
  Msg r = Parse(*EncodeTcOp(rep, 4));
  EXPECT_EQ(r.hdr.nlmsg_flags, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE);
}

TEST(NetshapeTcMessages, MismatchedParamsAreRejected) {
  TcOp bad{TcVerb::kAdd, TcOp::Object::kClass, kTcRoot, kRootQdiscHandle, FifoParams{}};
  auto r = EncodeTcOp(bad, 1);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  TcOp del_with_params{TcVerb::kDelete, TcOp::Object::kQdisc, kTcRoot, kRootQdiscHandle,
                       FifoParams{}};
  EXPECT_FALSE(EncodeTcOp(del_with_params, 1).ok());
}

}  // namespace
}  // namespace gridemu::netshape

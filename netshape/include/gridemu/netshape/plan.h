// Link shaping plans (DESIGN.md §5): what one direction of a link needs from the kernel
// and from the userspace delay line, computed from a LinkProfile by a pure function.
//
// A Plan is plain data: comparable, printable, built without touching the system, and
// applied later through NetlinkOps (netlink_ops.h) and the delay line (delay_line.h).
//
// Kernel objects on the sender's egress (both backends; handles are fixed so that a plan
// can be changed and removed without reading the kernel back):
//
//   with a rate:  qdisc htb 1: root default 1            (Devera, "HTB Linux queuing
//                 class htb 1:1 parent 1: rate R ceil R   discipline manual - user guide")
//                 leaf 10: parent 1:1 = netem (netem backend) or pfifo limit Q (userspace)
//   no rate:      qdisc netem 1: root                     (netem backend only)
//
// The userspace backend puts delay, jitter, loss, duplication and reordering in a delay
// line on the receiver's side (an NFQUEUE queue in the receiving namespace); the kernel
// keeps only the rate (HTB) on the sender's egress.
//
// Impairments follow sch_netem's semantics exactly (tc-netem(8); Linux
// net/sched/sch_netem.c), in netem's kernel units, so that both backends shape alike.
#pragma once

#include <chrono>
#include <compare>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "gridemu/common/link_profile.h"
#include "gridemu/common/status.h"

namespace gridemu::netshape {

/// Which way a profile applies on a link (DESIGN.md §3): forward = first endpoint to
/// second, reverse = second to first. A direction is shaped on its sender's egress and,
/// with the userspace backend, on its receiver's ingress.
enum class Direction { kForward, kReverse };

/// "forward" or "reverse".
std::string_view DirectionName(Direction d);

/// Which part of a direction's shaping this host builds. A direction whose sender and
/// receiver interfaces are on one host gets both halves (kBoth). A direction crossing two
/// hosts (a VXLAN link between two pnodes) is split: the sender's host builds the
/// sender half, the receiver's host the receiver half, and together they shape exactly
/// as kBoth does on one host (same plan, same random stream):
///  - sender half: everything on the sender's egress: the HTB rate class and its leaf
///    (pfifo, or netem with the whole impairment with the netem backend) and the GSO
///    cap;
///  - receiver half: everything on the receiver's ingress: the userspace backend's delay
///    line (delay, jitter, loss, duplication, reordering); nothing with the netem backend.
enum class ShapeHalf {
  kBoth,          ///< sender and receiver on this host
  kSenderOnly,    ///< only the sender's interface is on this host
  kReceiverOnly,  ///< only the receiver's interface is on this host
};

/// "both", "sender" or "receiver".
std::string_view ShapeHalfName(ShapeHalf h);

/// How impairments are emulated (DESIGN.md §5).
enum class Backend {
  kNetem,      ///< HTB + sch_netem on the sender's egress, all in the kernel
  kUserspace,  ///< HTB on the sender's egress + NFQUEUE delay line at the receiver
};

/// "netem" or "userspace".
std::string_view BackendName(Backend b);
/// Parses "netem" or "userspace"; kInvalidArgument naming the accepted values otherwise.
Result<Backend> ParseBackend(std::string_view name);

/// tc handles used by every plan (major:minor in hex, as tc(8) writes them: 0x00010000 is
/// "1:", 0x00100000 is "10:").
inline constexpr uint32_t kRootQdiscHandle = 0x00010000;  ///< 1:   HTB root, or netem root
inline constexpr uint32_t kRateClassId = 0x00010001;      ///< 1:1  the HTB class at `rate`
inline constexpr uint32_t kLeafQdiscHandle = 0x00100000;  ///< 10:  leaf under 1:1
inline constexpr uint32_t kTcRoot = 0xffffffff;           ///< TC_H_ROOT (parent of a root qdisc)

/// A probability or correlation as netem takes it: a 32-bit fraction where 0 is 0 % and
/// 0xffffffff is 100 % (iproute2 tc/tc_util.c get_percent, rounded to nearest).
uint32_t ProbabilityToU32(double fraction);
/// The inverse of ProbabilityToU32.
double U32ToProbability(uint32_t p);

/// Gilbert–Elliott parameters in sch_netem's kernel fields (struct tc_netem_gemodel).
/// The kernel's loss test (sch_netem.c loss_gilb_ell) is: good state: lost if
/// rnd < k1; bad state: lost if rnd > h. So `h` holds the probability of *delivery* in the
/// bad state: h = 1 - (1-h) where the profile's `one_minus_h` is the loss probability in
/// the bad state (tc-netem(8) "1-h"). k1 holds the profile's 1-k (loss in the good state).
struct GeModelU32 {
  uint32_t p = 0;   ///< P(good -> bad)
  uint32_t r = 0;   ///< P(bad -> good)
  uint32_t h = 0;   ///< P(delivered | bad)
  uint32_t k1 = 0;  ///< P(lost | good)
  friend auto operator<=>(const GeModelU32&, const GeModelU32&) = default;
};

/// netem's impairment parameters in kernel units; shared by both backends so that the
/// userspace delay line reproduces netem's decisions (impairment.h).
struct ImpairmentSpec {
  std::chrono::nanoseconds latency{0};  ///< mean added delay (netem "delay")
  std::chrono::nanoseconds jitter{0};   ///< netem's sigma: uniform +-jitter, or table * jitter
  /// Delay table; nullopt = netem's default uniform distribution (no table is sent).
  std::optional<DelayDistribution> distribution;
  uint32_t delay_corr = 0;            ///< u32 fraction (ProbabilityToU32)
  uint32_t loss = 0;                  ///< u32 fraction; random loss (netem CLG_RANDOM)
  uint32_t loss_corr = 0;             ///< u32 fraction
  std::optional<GeModelU32> gemodel;  ///< Gilbert–Elliott loss instead of `loss`
  uint32_t duplicate = 0;             ///< u32 fraction
  uint32_t dup_corr = 0;              ///< u32 fraction (LinkProfile has none: always 0)
  uint32_t reorder = 0;               ///< u32 fraction of packets sent at once (needs gap >= 1)
  uint32_t reorder_corr = 0;          ///< u32 fraction (always 0)
  uint32_t gap = 0;           ///< packets; 0 = no reordering (tc: reorder without gap = gap 1)
  uint32_t corrupt = 0;       ///< u32 fraction (netem backend only)
  uint32_t corrupt_corr = 0;  ///< u32 fraction (always 0)

  /// True when nothing is impaired (no delay line / netem needed).
  bool empty() const;
  /// tc-netem(8)-like text, e.g. "delay 20ms 5ms distribution normal loss 1% gap 5".
  std::string ToString() const;
  friend bool operator==(const ImpairmentSpec&, const ImpairmentSpec&) = default;
};

/// The HTB class 1:1 (Devera's HTB user guide; tc-htb(8)). Rates in bits/s, sizes in bytes.
struct HtbSpec {
  uint64_t rate_bps = 0;       ///< guaranteed rate = the link's rate
  uint64_t ceil_bps = 0;       ///< = rate_bps (no borrowing: one class)
  uint32_t burst_bytes = 0;    ///< bucket size at `rate`: MTU + 1 ms of traffic (>= 2 MTU)
  uint32_t cburst_bytes = 0;   ///< bucket size at `ceil` (= burst_bytes)
  uint32_t quantum_bytes = 0;  ///< DRR quantum: rate/8/10 clamped to [MTU, 200000]
  friend bool operator==(const HtbSpec&, const HtbSpec&) = default;
};

/// The netem qdisc of the netem backend.
struct NetemSpec {
  uint32_t parent = kTcRoot;           ///< kTcRoot, or kRateClassId under HTB
  uint32_t handle = kRootQdiscHandle;  ///< 1: at the root, 10: under HTB
  /// netem's limit (packets held, delayed or waiting for HTB): the profile's queue, plus
  /// the packets in flight in the delay at `rate` (rate * (delay + jitter) / MTU) under HTB.
  uint32_t limit_packets = 1000;
  ImpairmentSpec impairment;
  /// netem PRNG seed (TCA_NETEM_PRNG_SEED, Linux >= 6.3; older kernels ignore it).
  uint64_t seed = 0;
  friend bool operator==(const NetemSpec&, const NetemSpec&) = default;
};

/// The userspace delay line of one direction (delay_line.h), on the receiver's ingress.
struct DelayLineSpec {
  ImpairmentSpec impairment;
  /// The kernel queue's maximum (NFQA_CFG_QUEUE_MAXLEN): packets held by the delay line.
  /// Beyond it the kernel drops (fail closed), counted as queue-overflow drops.
  uint32_t max_pending_packets = 65536;
  /// Bytes of each packet copied to userspace: 64 normally (headers, for lengths), the
  /// whole packet (0xffff) when duplicating (the copy is re-injected).
  uint32_t copy_range_bytes = 64;
  uint64_t seed = 0;  ///< the direction's RNG seed (gridemu::Rng)
  friend bool operator==(const DelayLineSpec&, const DelayLineSpec&) = default;
};

/// Everything one direction of a link needs. Pure data; see the file comment for layout.
struct Plan {
  Backend backend = Backend::kUserspace;
  std::optional<HtbSpec> htb;                  ///< sender egress: HTB root 1: + class 1:1
  std::optional<uint32_t> fifo_limit_packets;  ///< sender egress: pfifo 10: under 1:1
  std::optional<NetemSpec> netem;              ///< sender egress: netem (netem backend)
  std::optional<DelayLineSpec> delay_line;     ///< receiver ingress (userspace backend)
  /// Cap on the segments of one GSO packet on the sender's interface (IFLA_GSO_MAX_SEGS).
  /// Qdiscs see a TCP GSO packet (up to 64 KiB) as one packet: HTB would release it as a
  /// single burst (0.5 s of traffic at 1 Mbit/s) and netem would drop, duplicate or
  /// reorder 45 segments at once. With a rate, one GSO packet is capped at about 1 ms of
  /// traffic (rate * 1 ms / MTU, 1 to 64 segments); with a netem loss, duplication,
  /// reordering or corruption, at 1 segment. Applies to connections opened afterwards.
  /// An interface setting, not a tc object: Shaper sets and restores it; Apply() does not.
  std::optional<uint32_t> gso_max_segs;

  /// True when the direction is not shaped at all.
  bool empty() const;
  /// True when the plan creates qdiscs on the sender's egress.
  bool has_qdiscs() const { return htb.has_value() || netem.has_value(); }
  /// Multi-line tc-like description, e.g.
  /// "qdisc htb 1: root default 1\nclass htb 1:1 parent 1: rate 10mbit ...".
  std::string ToString() const;
  friend bool operator==(const Plan&, const Plan&) = default;
};

/// Inputs of BuildPlan besides the profile.
struct PlanOptions {
  Backend backend = Backend::kUserspace;
  /// Experiment seed; each direction draws from Rng::ForStream(seed, "<stream>/<direction>").
  uint64_t seed = 0;
  /// Names the random stream of this link (e.g. its id), so links get independent streams.
  std::string stream;
  uint32_t mtu_bytes = 1500;  ///< the interface MTU (HTB burst/quantum, netem limit)
  /// Tail-drop limit when the profile sets no `queue` (Linux's default txqueuelen).
  uint32_t default_queue_packets = 1000;
  /// The part of the direction to plan (ShapeHalf); the other half's fields stay empty.
  ShapeHalf half = ShapeHalf::kBoth;
};

/// Builds the plan of one direction. Validates the profile first (LinkProfile::Validate,
/// kInvalidArgument) and then what the backend can express at all (CheckBackendSupports
/// in capabilities.h adds what this kernel can do): kUnimplemented with
/// "<field>: not supported by the <backend> backend", e.g.
/// "corrupt: not supported by the userspace backend".
/// An empty profile gives an empty plan (unshaped). Pure and deterministic.
/// With options.half != kBoth, the plan is the kBoth plan restricted to that half
/// (ShapeHalf): kSenderOnly keeps htb, fifo_limit_packets, netem and gso_max_segs;
/// kReceiverOnly keeps delay_line. The two halves of a direction together equal its
/// kBoth plan.
Result<Plan> BuildPlan(const LinkProfile& profile, Direction direction, const PlanOptions& options);

/// The first profile field (in LinkProfile order, named as in experiment files) that the
/// backend cannot express on any kernel, or ok. Errors: kUnimplemented,
/// "<field>: not supported by the <backend> backend" (see BuildPlan).
///  - userspace: `corrupt` (the delay line does not rewrite packets).
///  - netem: `jitter` above 2^31-1 ns (netem's tabledist takes sigma as s32 nanoseconds).
Status CheckBackendExpresses(const LinkProfile& profile, Backend backend);

/// netem's delay table for a distribution (NETEM_DIST_SCALE = 8192 units of sigma, 4096
/// signed 16-bit entries, as the iproute2 *.dist files): entries have mean 0 and standard
/// deviation 8192 (1 sigma), clipped to the int16 range (+-4 sigma). Generated here, so
/// that no iproute2 data files are needed:
///  - normal: quantiles of N(0,1) at (i + 1/2) / 4096, rescaled to unit variance.
///  - pareto: quantiles of Pareto(shape 3) standardized (iproute2 maketable uses shape 3).
///  - paretonormal: 1/4 Pareto + 3/4 normal, as iproute2's paretonormal.c, standardized.
/// kUniform returns an empty table (netem's built-in uniform distribution).
const std::vector<int16_t>& DistributionTable(DelayDistribution d);

}  // namespace gridemu::netshape

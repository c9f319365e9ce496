// Traffic-control operations on one interface, behind an interface (LevelDB's Env idea,
// DESIGN.md §13): the real implementation talks rtnetlink through libnl (libnl-route
// builds the HTB and pfifo requests; netem's options are assembled with libnl's message
// API because libnl-route's netem object lacks 64-bit delays, the Gilbert–Elliott model
// and the PRNG seed); RecordingNetlinkOps records operations for unit tests.
//
// Apply/Change/Remove turn Plans into ordered TcOps (pure: ApplyOps, ChangeOps,
// RemoveOps) and execute them. A run-time change is a qdisc/class *change* request
// (RTM_NEWQDISC / RTM_NEWTCLASS without NLM_F_CREATE): the kernel updates the object in
// place, keeping its queue, its other parameters and its statistics.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "gridemu/common/status.h"
#include "gridemu/netshape/plan.h"

namespace gridemu::netshape {

/// What a TcOp does, with the rtnetlink flags it maps to (tc(8) verbs).
enum class TcVerb {
  kAdd,      ///< NLM_F_CREATE | NLM_F_EXCL: fails if the object exists (tc add)
  kChange,   ///< no create flags: modifies an existing object in place (tc change)
  kReplace,  ///< NLM_F_CREATE | NLM_F_REPLACE: swaps a qdisc for another kind (tc replace)
  kDelete,   ///< RTM_DELQDISC / RTM_DELTCLASS
};

/// HTB root qdisc options (TCA_HTB_INIT): unclassified traffic goes to class 1:`default_minor`.
struct HtbQdiscParams {
  uint32_t default_minor = 1;
  uint32_t r2q = 10;
  friend bool operator==(const HtbQdiscParams&, const HtbQdiscParams&) = default;
};
/// pfifo options: the tail-drop limit in packets.
struct FifoParams {
  uint32_t limit_packets = 1000;
  friend bool operator==(const FifoParams&, const FifoParams&) = default;
};

/// One rtnetlink request on a qdisc or a class of the target interface.
struct TcOp {
  enum class Object { kQdisc, kClass };
  TcVerb verb = TcVerb::kAdd;
  Object object = Object::kQdisc;
  uint32_t parent = kTcRoot;  ///< kTcRoot or a class id
  uint32_t handle = 0;        ///< qdisc handle or class id
  /// Kind and options; monostate for deletes.
  std::variant<std::monostate, HtbQdiscParams, HtbSpec, FifoParams, NetemSpec> params;

  /// tc(8)-like text, e.g. "change qdisc netem 10: parent 1:1 limit 1100 delay 50ms".
  std::string ToString() const;
  friend bool operator==(const TcOp&, const TcOp&) = default;
};

/// Counters of one qdisc or class, from the kernel (struct gnet_stats_basic / queue).
struct TcStats {
  uint64_t packets = 0;     ///< packets sent (dequeued)
  uint64_t bytes = 0;       ///< bytes sent, at L2 as the qdisc counts them
  uint64_t drops = 0;       ///< packets dropped (overflow; netem also counts its losses)
  uint64_t overlimits = 0;  ///< times the rate held a packet back
  uint64_t qlen = 0;        ///< packets queued now
  uint64_t backlog = 0;     ///< bytes queued now
};

/// Traffic control on one interface of one network namespace. Implementations are not
/// required to be thread-safe; use one per thread or lock around it.
class NetlinkOps {
 public:
  virtual ~NetlinkOps() = default;
  /// Sends one request and waits for the kernel's acknowledgement.
  /// Errors: kAlreadyExists (EEXIST: e.g. another root qdisc is there), kNotFound
  /// (ENOENT/ENODEV: no such qdisc, class or interface), kUnimplemented (the qdisc kind is
  /// not in this kernel), kPermissionDenied, kInvalidArgument (EINVAL), kInternal.
  /// Messages start with the op (TcOp::ToString()).
  virtual Status Execute(const TcOp& op) = 0;
  /// Reads the counters of a qdisc (by handle) or class (by class id).
  /// Errors: kNotFound when it does not exist; as Execute otherwise.
  virtual Result<TcStats> Stats(TcOp::Object object, uint32_t handle) = 0;
};

/// Opens real rtnetlink ops on `ifname` inside the network namespace at `netns_path`
/// (e.g. "/var/run/netns/NAME" or "/proc/PID/ns/net"; "" = the calling thread's own).
/// The socket is created inside the namespace (the calling thread enters it and comes back
/// before returning), so later calls work from any thread.
/// Errors: kNotFound (no such namespace or interface), kPermissionDenied, kInternal.
Result<std::unique_ptr<NetlinkOps>> OpenNetlinkOps(const std::string& netns_path,
                                                   std::string_view ifname);

/// Records operations instead of executing them. `fail_at` makes the Nth Execute (0-based)
/// fail with `failure`, to test error paths. Stats() returns `stats` for any object.
class RecordingNetlinkOps : public NetlinkOps {
 public:
  Status Execute(const TcOp& op) override;
  Result<TcStats> Stats(TcOp::Object object, uint32_t handle) override;

  std::vector<TcOp> ops;  ///< every op Execute received, in order (failed ones too)
  int fail_at = -1;       ///< index of the Execute call to fail; -1 = never
  Status failure = InternalError("injected failure");
  TcStats stats;
};

/// The ops that create `plan`'s qdiscs/classes, in order (parents first). Pure.
std::vector<TcOp> ApplyOps(const Plan& plan);
/// The ops that remove them: one delete of the root qdisc (children go with it). Pure.
std::vector<TcOp> RemoveOps(const Plan& plan);
/// The ops that turn `from` into `to` in place where the qdisc layout is the same (an HTB
/// class change, a pfifo or netem change: queues and untouched parameters are kept); a
/// leaf of another kind is swapped with kReplace; a root of another kind (netem root <->
/// HTB root) is deleted and re-added, which drops the packets queued in it. Pure.
std::vector<TcOp> ChangeOps(const Plan& from, const Plan& to);

/// Executes ApplyOps(plan). On failure, removes what it created and returns the error.
Status Apply(const Plan& plan, NetlinkOps& ops);
/// Executes ChangeOps(from, to), stopping at the first error.
Status Change(const Plan& from, const Plan& to, NetlinkOps& ops);
/// Executes RemoveOps(plan); a root qdisc or interface that is already gone is not an error.
Status Remove(const Plan& plan, NetlinkOps& ops);

/// The exact rtnetlink request that the real NetlinkOps sends for `op` on `ifindex`
/// (nlmsghdr + tcmsg + attributes; nlmsg_seq and nlmsg_pid are 0, NLM_F_ACK is set).
/// Errors: kInvalidArgument if `op`'s params do not fit its object and verb.
Result<std::vector<uint8_t>> EncodeTcOp(const TcOp& op, int ifindex);

}  // namespace gridemu::netshape

// The netshape facade for the agent: shape one direction of a link between two
// interfaces in two network namespaces, change it at run time, read its counters,
// remove it (DESIGN.md §5).
//
//   auto shaper = Shaper::Create({.backend = BackendChoice::kAuto});
//   auto link = (*shaper)->Shape({.sender = {"/var/run/netns/a", "veth0"},
//                                 .receiver = {"/var/run/netns/b", "veth1"},
//                                 .profile = profile, .tag = "exp42:l7:fwd"});
//   (*link)->Change(delta);  (*link)->GetCounters();  (*link)->Remove();
//
// What is created for one direction (names carry the tag):
//  - netem backend: on the sender's egress, HTB root 1: + class 1:1 at `rate` + netem 10:
//    (or netem 1: alone without a rate); see plan.h.
//  - userspace backend: on the sender's egress, HTB root 1: + class 1:1 + pfifo 10: when
//    there is a rate; when there is any impairment, an NFQUEUE queue served by the delay
//    line (delay_line.h) and one rule per IP family, where ShapeRequest::hold says:
//    * a hold point (what the agent uses): in the hold namespace's raw table, under a
//      tree of chains dispatched on the bridge's interface group (shape_request.h
//      HoldPoint), a leaf rule
//        -A GH-<group, 4 hex digits> -m physdev --physdev-in <port> -m comment --comment
//          "gridemu:<tag>" -j NFQUEUE --queue-num <n>
//      The receiver sees each packet only once it is released, so its kernel
//      timestamps (plain ping, tcpdump) include the delay; and held packets own no
//      socket, so TCP is not throttled.
//    * no hold point: in the receiver's namespace,
//        -t mangle -A PREROUTING -i <receiver ifname> -m comment --comment "gridemu:<tag>"
//          -j NFQUEUE --queue-num <n>
//      The receiver's kernel has stamped the packets before they are held: programs that
//      read kernel timestamps miss this direction's delay.
//    (The third place, the sender's OUTPUT, is not offered: a held packet still counts
//    against its socket and TCP small queues throttle the flow, 5 Mbit/s instead of 1.4
//    Gbit/s through an unrated 10 ms link: bench/netshape/run "userspace_designs".)
//    Rules are installed with iptables-restore --noflush / ip6tables-restore --noflush
//    (one process per namespace and family per batch; netshape never runs `tc`). Fail
//    closed: see delay_line.h.
//
// The sender's interface also gets a GSO segment cap (Plan::gso_max_segs), restored on
// removal.
//
// Split directions (ShapeRequest::half, plan.h ShapeHalf): a direction whose sender and
// receiver are on two hosts (a VXLAN link between pnodes) is shaped by two Shapers, one
// per host: the sender's host asks for kSenderOnly (the egress objects above: HTB, its
// leaf or netem, the GSO cap; the receiver endpoint is not touched and need not exist
// here), the receiver's host for kReceiverOnly (the delay line and its rules; the sender
// endpoint is not touched). Both build their half of the same plan (give both the same
// tag or stream), so the pair shapes exactly like one kBoth direction on one host.
//
// Limits of the userspace backend: only IPv4 and IPv6 go through the delay line (ARP and
// other non-IP frames are rate-limited by HTB but not delayed or lost); `corrupt` is
// rejected (CheckBackendExpresses); a rule change costs an iptables-restore process
// (about 5 ms to add, 15 ms to delete per namespace and family; batch with ShapeMany /
// RemoveMany).
//
// Removal deletes the rules, then releases held packets and unbinds the queue, then
// deletes the root qdisc and restores the GSO cap: nothing is left behind (no qdisc,
// rule, queue or thread).
#pragma once

#include <cstdint>
#include <map>
#include <set>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "gridemu/common/link_profile.h"
#include "gridemu/common/status.h"
#include "gridemu/netshape/capabilities.h"
#include "gridemu/netshape/delay_line.h"
#include "gridemu/netshape/netns.h"
#include "gridemu/netshape/link_shaper.h"
#include "gridemu/netshape/plan.h"
#include "gridemu/netshape/shape_request.h"

namespace gridemu::netshape {

/// Shaper options.
struct ShaperOptions {
  BackendChoice backend = BackendChoice::kAuto;
  /// Skip probing and use these (tests, or an agent that probed already).
  std::optional<Capabilities> capabilities;
  uint64_t seed = 0;                      ///< experiment seed for loss/jitter decisions
  DelayLineOptions delay_line;            ///< started lazily, on the first delay-line direction
  bool ipv6 = true;                       ///< also divert IPv6 (ip6tables) in the userspace backend
  uint32_t default_queue_packets = 1000;  ///< tail-drop limit when a profile sets no queue
};

class Shaper;
namespace detail {
struct NetnsCtx;
}  // namespace detail

/// A shaped direction. Thread-safe. Destroying it removes the shaping (errors ignored;
/// call Remove() to see them). Must not outlive its Shaper.
class ShapedLink final : public ShapedDirection {
 public:
  ~ShapedLink() override;
  ShapedLink(const ShapedLink&) = delete;
  ShapedLink& operator=(const ShapedLink&) = delete;

  /// Changes the named parameters at run time: the new profile is
  /// profile().MergedWith(changes) (LinkProfile::MergedWith). Only what differs is
  /// touched, in place: a delay change is a netem change (netem backend) or a delay-line
  /// update (userspace) and leaves rate, loss and queued packets alone; a rate change is
  /// an HTB class change. Errors: as Shaper::Shape for the merged profile; on error the
  /// previous shaping stays. kFailedPrecondition after Remove().
  Status Change(const LinkProfile& changes) override;
  /// Counters, read from the delay line (atomics) and the kernel (qdisc/class stats, and
  /// the NFQUEUE drop counters). Errors: kFailedPrecondition after Remove(); netlink errors.
  Result<Counters> GetCounters() override;
  /// Removes everything this direction created. Idempotent.
  Status Remove() override;

  const LinkProfile& profile() const override { return profile_; }
  const Plan& plan() const { return plan_; }
  const ShapeRequest& request() const { return request_; }
  /// The NFQUEUE number in the receiver's namespace, or -1 without a delay line.
  int queue_num() const;

 private:
  friend class Shaper;
  explicit ShapedLink(Shaper* shaper) : shaper_(shaper) {}
  Status SetGso(uint32_t segs);  // saves the interface's value the first time
  Shaper* shaper_;
  std::mutex mu_;
  ShapeRequest request_;
  LinkProfile profile_;
  Plan plan_;
  bool removed_ = false;
  bool qdiscs_installed_ = false;
  bool rules_installed_ = false;
  int sender_ifindex_ = 0;
  uint32_t mtu_ = 1500;
  std::optional<uint32_t> saved_gso_segs_;        // the sender interface's value before shaping
  std::shared_ptr<detail::NetnsCtx> sender_ctx_;  // the sender namespace's netlink socket
  std::optional<DelayLine::QueueInfo> queue_;
};

/// Shapes link directions with one backend. Thread-safe. Owns the delay-line engine (one
/// per process: create a single Shaper per process when the userspace backend is used).
/// Destroying it removes every direction still shaped and stops the engine.
class Shaper final : public LinkShaper {
 public:
  /// Probes the kernel (unless options.capabilities is given) and selects the backend.
  /// Errors: as ProbeCapabilities and SelectBackend.
  static Result<std::unique_ptr<Shaper>> Create(const ShaperOptions& options);
  ~Shaper() override;

  Backend backend() const override { return backend_; }
  const Capabilities& capabilities() const override { return caps_; }

  /// Shapes one direction. Errors: the profile's (kInvalidArgument, LinkProfile::Validate),
  /// the backend's (kUnimplemented, CheckBackendSupports: "<field>: not supported by the
  /// <backend> backend..."), kInvalidArgument for a bad tag, kNotFound for a missing
  /// namespace or interface, kAlreadyExists if the sender's interface already has a root
  /// qdisc, and kernel/iptables errors. On error nothing is left behind.
  Result<std::unique_ptr<ShapedLink>> Shape(const ShapeRequest& request);

  /// Shapes many directions at once, with one iptables-restore per receiving namespace and
  /// family instead of one per direction (what an agent deploying a shard uses). All or
  /// nothing: on error, what was created is removed.
  Result<std::vector<std::unique_ptr<ShapedLink>>> ShapeMany(
      const std::vector<ShapeRequest>& requests);
  /// Removes many directions, batching the rule deletions per namespace. Links already
  /// removed are skipped. Returns the first error but removes all it can.
  Status RemoveMany(std::vector<std::unique_ptr<ShapedLink>>& links);

  // LinkShaper: ShapeMany / RemoveMany for directions handed out as the
  // interface (RemoveDirections refuses, with kInvalidArgument, a direction
  // that is not one of this Shaper's ShapedLinks, and removes the others),
  // and the free functions below.
  Result<std::vector<std::unique_ptr<ShapedDirection>>> ShapeDirections(
      const std::vector<ShapeRequest>& requests) override;
  Status RemoveDirections(std::vector<std::unique_ptr<ShapedDirection>>& directions) override;
  Result<int> RemoveLeftoverRules(const std::string& netns_path,
                                  const std::string& tag_prefix) override;
  Result<bool> RemoveLeftoverQdisc(const std::string& netns_path,
                                   const std::string& ifname) override;

  /// The delay line, once started (nullptr before the first userspace delay line).
  DelayLine* delay_line() { return delay_line_.get(); }

 private:
  friend class ShapedLink;
  Shaper() = default;
  Result<std::shared_ptr<detail::NetnsCtx>> GetCtx(const std::string& netns);
  Status EnsureDelayLine();
  Result<Plan> PlanFor(const ShapeRequest& r, const LinkProfile& profile, uint32_t mtu) const;
  Status CheckRequest(const ShapeRequest& r) const;
  void Forget(ShapedLink* link);
  // The chains of a hold namespace's dispatch tree made so far (shape_request.h
  // HoldPoint); its mutex serialises rule changes there.
  // The chains of one hold namespace's tree, and how many of our rules use them. A new
  // namespace may get a deleted one's inode, hence its NetnsId: its tree must not be
  // taken for the old one's. So the chains are forgotten when the last rule is deleted,
  // the tree is replaced when the inode shows up under another path, and trees of a
  // path found gone are dropped.
  struct HoldTree {
    std::mutex mu;
    std::string path;  // the namespace file it was made for
    std::set<std::string> chains;
    size_t rules = 0;
  };
  // The tree of `netns`; a fresh one when none is known or the known one was made for
  // another path. When `netns` is gone: its error, and the trees made for it dropped.
  Result<std::shared_ptr<HoldTree>> Tree(const std::string& netns);
  // Adds rules in one namespace; for hold rules (their groups given), makes the tree
  // chains they need first (the first rules of a hold namespace rewrite its table).
  Status InstallRules(const std::string& netns, const std::vector<struct Rule>& rules,
                      const std::vector<uint32_t>& hold_groups);
  Status DeleteRules(const std::string& netns, const std::vector<struct Rule>& rules, bool hold);
  // Where a direction's duplicates are injected (DelayLine QueueOptions).
  Result<QueueOptions> QueueOptionsFor(const ShapeRequest& r);

  ShaperOptions options_;
  Capabilities caps_;
  Backend backend_ = Backend::kUserspace;
  std::mutex mu_;  // guards ctxs_, live_ and delay_line_ creation
  std::map<NetnsId, std::weak_ptr<detail::NetnsCtx>> ctxs_;
  std::unique_ptr<DelayLine> delay_line_;
  std::vector<ShapedLink*> live_;  // guarded by mu_
  std::map<NetnsId, std::shared_ptr<HoldTree>> holds_;  // guarded by mu_
};

/// Removes the NFQUEUE rules whose comment starts with "gridemu:<tag_prefix>" from the
/// mangle chains (PREROUTING, and the leaves of a hold tree; IPv4 and IPv6) of the
/// namespace at `netns_path`: the cleanup
/// of a crashed process's rules (fail closed: they black-hole their links until removed).
/// Returns the number of rules removed. Errors: kNotFound, iptables errors.
Result<int> RemoveLeftoverRules(const std::string& netns_path, const std::string& tag_prefix);

/// Deletes the root qdisc of `ifname` in `netns_path` if it is netshape's (handle 1: with
/// kind htb or netem). Returns whether one was deleted. For cleanup after a crash.
Result<bool> RemoveLeftoverQdisc(const std::string& netns_path, const std::string& ifname);

}  // namespace gridemu::netshape

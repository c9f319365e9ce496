// ShardApplier: builds, changes and removes this pnode's part of experiments
// (a v1::DeployShard, DESIGN.md §7) with the vnode runtime (runtime.h), the
// link plumbing (plumbing.h) and link shaping (netshape/shaper.h).
//
// Deploy(shard), in batches:
//   1. checks the whole shard (names, interfaces, addresses, routes, every
//      profile against the shaping backend); any problem fails the shard with
//      one ObjectError per object and nothing is created;
//   2. writes a record of the shard (records_dir/<experiment>.shard), so that an
//      agent restarted after a crash can adopt it;
//   3. creates the vnodes (VnodeRuntime::CreateBatch, in chunks for progress);
//   4. plumbs every link as a veth pair made directly in the two vnodes'
//      namespaces, tagged (ifalias) "<prefix>:<experiment>:<link>", then bridges,
//      addresses, IPv4 forwarding and routes (Plumbing::Apply, in chunks);
//   5. shapes both directions of every link with a profile (Shaper::ShapeMany):
//      forward = a's egress toward b (and b's ingress with the userspace
//      backend), reverse = b's egress toward a; netshape tags "<experiment>:
//      <link>:fwd|rev" (rule comments "gridemu:<tag>").
//
// Cross-pnode links (LinkSpec.tunnel set; DESIGN.md §4): the controller sends
// the link to both pnodes, each copy naming the end that lives here
// (tunnel.local_end) and the other pnode's underlay address. Here only the
// local end exists: a VXLAN device (plumbing_vxlan.h) made in the underlay
// namespace (ShardApplierOptions::underlay_ns) between local_address and
// tunnel.remote_address, VNI tunnel.vni, moved into the local vnode as its
// interface, tagged like a veth ("<prefix>:<experiment>:<link>"), with the
// link's MTU or else the underlay's less 50 bytes (1450 on Ethernet). Each
// pnode shapes its half of each direction (netshape ShapeHalf): the direction
// the local vnode sends gets its sender half (egress: HTB rate, or the whole
// netem profile), the direction it receives gets its receiver half (ingress:
// the userspace delay line; nothing with netem). Together the two pnodes shape
// a tunnel link exactly as one pnode shapes a veth link.
// When a step fails the whole shard is removed again (shaping, vnodes — whose
// namespaces take their veths, qdiscs and rules with them — and the record):
// a failed Deploy leaves nothing behind. Deploying a shard that is deployed at
// the same generation changes nothing and reports success.
//
// Teardown(experiment) removes shaping, vnodes and the record, then sweeps any
// leftover of the experiment (VnodeRuntime::CleanupExperiment) and the tagged
// interfaces of the experiment left in the underlay namespace (a VXLAN device
// whose creation was interrupted before its move into the vnode). The VXLAN
// devices in the vnodes go with their namespaces (the kernel frees their VNIs
// a few milliseconds later, asynchronously).
//
// Thread-safety: calls for different experiments may run concurrently on
// different threads; calls for one experiment must not overlap (the agent
// serialises them). The runtime and shaper must be thread-safe (they are).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "gridemu/node-agent/agent_core.h"
#include "gridemu/node-agent/plumbing.h"
#include "gridemu/node-agent/plumbing_vxlan.h"
#include "gridemu/node-agent/runtime.h"
#include "gridemu/common/status.h"
#include "gridemu/netshape/shaper.h"
#include "gridemu/v1/agent.pb.h"

namespace gridemu::agent {

/// Options of a ShardApplier.
struct ShardApplierOptions {
  /// Object prefix (as RuntimeOptions::prefix): interface tags are
  /// "<prefix>:<experiment>:<link>".
  std::string prefix = "gridemu";
  /// Directory of shard records ("<experiment>.shard" and "<experiment>.phase");
  /// created on demand. "" = no records (no adoption after a restart).
  std::string records_dir;
  /// Vnodes per CreateBatch call; progress is reported after each.
  size_t vnode_chunk = 250;
  /// At most link_chunk / 2 links per Plumbing::Apply / Shaper::ShapeMany call.
  size_t link_chunk = 250;
  /// Plumb and shape links on a second thread while later vnodes are being
  /// created (else only once every vnode exists; both use two threads then).
  bool overlap_links = true;

  // Underlay of cross-pnode (VXLAN) links.
  /// This pnode's underlay IPv4 address (dotted quad), the local end of every
  /// tunnel. "" = none: shards with tunnel links fail their check.
  std::string local_address;
  /// Underlay interface in underlay_ns that tunnels leave through; its MTU less
  /// 50 is the default MTU of tunnel interfaces. "" = routed by the remote
  /// address, 1500-byte underlay assumed (MTU 1450).
  std::string underlay_dev;
  /// Network namespace of the underlay (where the VXLAN devices' UDP sockets
  /// live). Home (default) = the namespace of the thread that deploys, i.e.
  /// the one the applier was created in (its worker threads inherit it). A
  /// test can run two "pnodes" in one process by giving each applier another
  /// namespace (NetnsRef::AtPath; a borrowed fd must stay open meanwhile).
  NetnsRef underlay_ns;
  /// UDP destination port of the tunnels, the same on every pnode.
  uint16_t vxlan_port = kVxlanDefaultPort;
};

/// Where a Deploy's or Teardown's time went (wall seconds).
struct ShardTimings {
  double check_s = 0;
  /// Wall time of vnode creation (links are plumbed and shaped meanwhile).
  double vnodes_s = 0;
  /// Summed time of the plumbing and shaping batches (they overlap with vnode
  /// creation and with each other, so these are not wall times).
  double plumbing_s = 0;
  double shaping_s = 0;
  /// Wall time from the last vnode to every link plumbed and shaped and every
  /// route applied.
  double links_tail_s = 0;
  double teardown_shaping_s = 0;
  double teardown_vnodes_s = 0;
  double cleanup_s = 0;
  double total_s = 0;
  /// "check 0.001s vnodes 1.2s plumbing 0.8s shaping 0.3s links-tail 0.2s ... total 2.3s".
  std::string ToString() const;
};

/// The outcome of Deploy().
struct DeployReport {
  bool ok = false;
  /// The shard was already deployed at this generation: nothing was done.
  bool already_deployed = false;
  uint32_t done = 0;   ///< objects made (vnodes + links + shaped links)
  uint32_t total = 0;  ///< objects to make
  std::vector<ShardObjectError> errors;
  ShardTimings timings;
};

/// The outcome of Teardown().
struct TeardownReport {
  uint32_t vnodes_removed = 0;
  std::vector<ShardObjectError> errors;
  ShardTimings timings;
};

/// Called after each batch of a Deploy: objects done so far of `total`.
/// Called on the thread that runs Deploy.
using DeployProgressFn = std::function<void(uint32_t done, uint32_t total)>;

class ShardApplier {
 public:
  /// `runtime` must outlive the applier. `shaper` may be null (no shaping
  /// backend): shards with profiles then fail their check.
  ShardApplier(VnodeRuntime* runtime, netshape::Shaper* shaper, ShardApplierOptions options);
  /// Forgets the shards: their vnodes stay (for adoption), their shaping is
  /// removed (netshape removes it with its ShapedLink objects).
  ~ShardApplier();
  ShardApplier(const ShardApplier&) = delete;
  ShardApplier& operator=(const ShardApplier&) = delete;

  /// Checks a shard without effects; one error per object at fault.
  std::vector<ShardObjectError> Check(const v1::DeployShard& shard) const;

  /// Builds (or converges to) `shard`. See the file comment.
  DeployReport Deploy(const v1::DeployShard& shard, const DeployProgressFn& progress = {});

  /// Removes every object of `experiment` (deployed by this instance or
  /// left over). Unknown experiments are not an error (0 vnodes removed).
  TeardownReport Teardown(const std::string& experiment);

  /// The generation `experiment` is deployed at, if this applier holds it
  /// (deployed or adopted and complete).
  std::optional<uint64_t> Generation(const std::string& experiment) const;
  /// The experiments this applier holds, with their generations.
  std::map<std::string, uint64_t> Experiments() const;
  /// True if `vnode` is part of the deployed `experiment`.
  bool HasVnode(const std::string& experiment, const std::string& vnode) const;
  /// The shard as deployed (nullptr if unknown). Valid until Teardown.
  const v1::DeployShard* Shard(const std::string& experiment) const;
  /// Host directory of a vnode's outputs: <output_dir>/<vnode>, or
  /// <records_dir>/out/<experiment>/<vnode> when the shard has no output_dir.
  std::string VnodeOutputDir(const std::string& experiment, const std::string& vnode) const;

  /// Checks an ApplyEvent against the deployed shard without effects:
  /// kFailedPrecondition if the experiment is not deployed, kNotFound for an
  /// unknown link or vnode, kInvalidArgument for an empty event, a bad action
  /// or a profile the backend cannot honour.
  Status CheckEvent(const std::string& experiment, const v1::ApplyEvent& event) const;
  /// Applies an event (after CheckEvent): link set changes only the given
  /// parameters of each direction, in place (a direction not shaped yet is
  /// shaped with them); link down/up sets both veth ends down/up (and re-adds
  /// the routes through them on up); node actions: kill and stop = Stop,
  /// start, freeze, thaw. On a tunnel link only the local end and the local
  /// half of each direction's shaping are changed (the other pnode gets the
  /// same event for its end). Errors name every object that failed.
  Status ApplyEvent(const std::string& experiment, const v1::ApplyEvent& event);

  /// Counters of every shaped direction and statistics of every vnode.
  /// Objects whose counters cannot be read are skipped. For a tunnel link,
  /// what the local half counts: the sender half's HTB class for the direction
  /// the local vnode sends, the delay line for the direction it receives.
  v1::MetricsBatch CollectMetrics(const std::string& experiment) const;

  /// Experiments with objects on this pnode: those deployed by this instance
  /// and leftovers of earlier processes (runtime leftovers and records).
  Result<std::vector<HeldExperiment>> FindHeld() const;
  /// Takes over a leftover experiment whose record says it is complete:
  /// adopts its vnodes, removes leftover shaping rules and qdiscs, shapes its
  /// links again. Errors: kFailedPrecondition without a complete record (the
  /// caller should then Teardown it), or what adoption/shaping returned.
  Status Adopt(const std::string& experiment);

  /// Removes every record in records_dir of an experiment this instance does
  /// not hold (used by cleanup).
  static Status RemoveRecord(const std::string& records_dir, const std::string& experiment);

 private:
  struct LinkState;
  struct ShardState;

  // Veths (or, for tunnel links, the local VXLAN end) and addresses of
  // `links`; with !links_only, also every bridge, forwarding switch and route
  // of the shard.
  Status Plumb(const ShardState& s, const std::vector<size_t>& links, bool links_only);
  Status ShapeLinks(ShardState& s, const std::vector<size_t>& links);
  void RemoveShaping(ShardState& s, std::vector<ShardObjectError>* errors);
  // Deletes the experiment's tagged interfaces left in the underlay namespace.
  Status CleanupUnderlay(const std::string& experiment) const;
  Status WriteRecord(const v1::DeployShard& shard, const std::string& phase) const;
  std::shared_ptr<ShardState> Find(const std::string& experiment) const;
  Result<std::shared_ptr<ShardState>> BuildState(const v1::DeployShard& shard) const;

  VnodeRuntime* runtime_;
  netshape::Shaper* shaper_;
  ShardApplierOptions options_;
  mutable std::mutex mu_;  // guards shards_ (the map, not the states)
  std::map<std::string, std::shared_ptr<ShardState>> shards_;
};

}  // namespace gridemu::agent

// ShardApplier: builds, changes and removes this pnode's part of experiments
// (DESIGN.md §7). A raw v1::DeployShard is resolved once (shard_plan.h
// ResolveShard: every check, nothing made) into a ShardPlan, which Deploy
// acts on. Everything that touches the OS is passed in (ApplierDeps, as
// LevelDB's Env): the vnode runtime (runtime.h), the link plumbing and VXLAN
// plumbing (plumbing.h, plumbing_vxlan.h), the link shaper
// (netshape/link_shaper.h) and the shard records (shard_records.h); tests
// give fakes (node-agent/testing) and inject failures.
//
// Deploy(plan), in phases:
//   1. record: the shard and phase "deploying" (an agent restarted after a
//      crash finds what it was building);
//   2. vnodes and links (DeployPipeline, deploy_pipeline.h): vnodes in chunks
//      (VnodeRuntime::CreateBatch); meanwhile every link whose local ends
//      exist is plumbed — a veth pair made directly in the two vnodes'
//      namespaces, or a tunnel's VXLAN end, tagged (ifalias) "<prefix>:
//      <experiment>:<link>", with its addresses — and shaped (forward = a's
//      egress toward b, and b's ingress with the userspace backend; reverse =
//      b's egress toward a; netshape tags "<experiment>:<link>:fwd|rev");
//   3. LAN and routes: bridges, IPv4 forwarding, static routes (they need
//      every interface);
//   4. record: phase "ready".
// When a phase fails the whole shard is rolled back (shaping, then every
// vnode of the experiment — whose namespaces take their veths, qdiscs and
// rules with them — then the tagged interfaces left in the underlay
// namespace, then the records): a failed Deploy leaves nothing behind.
// Deploying a shard that is deployed at the same generation changes nothing
// and reports success.
//
// Cross-pnode links (LinkPlan::tunnel; DESIGN.md §4): only the local end is
// here, a VXLAN device made in the underlay namespace between local_address
// and the other pnode's, VNI from the plan, moved into the local vnode as its
// interface, with the link's MTU or else the underlay's less 50 bytes. Each
// pnode shapes its half of each direction (netshape ShapeHalf): together the
// two pnodes shape a tunnel link exactly as one pnode shapes a veth link.
//
// Teardown(experiment) removes the vnodes, then the shaping, then sweeps any
// leftover of the experiment (VnodeRuntime::CleanupExperiment) and the tagged
// interfaces left in the underlay namespace, then the records.
//
// Thread-safety: calls for different experiments may run concurrently on
// different threads; calls for one experiment must not overlap (the agent
// serialises them). The dependencies must be thread-safe (the kernel ones
// are; a plumbing object is made per call and thread).
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

#include "gridemu/common/status.h"
#include "gridemu/netshape/link_shaper.h"
#include "gridemu/node-agent/agent_core.h"
#include "gridemu/node-agent/deploy_pipeline.h"
#include "gridemu/node-agent/plumbing.h"
#include "gridemu/node-agent/plumbing_vxlan.h"
#include "gridemu/node-agent/runtime.h"
#include "gridemu/node-agent/shard_plan.h"
#include "gridemu/node-agent/shard_records.h"
#include "gridemu/v1/agent.pb.h"

namespace gridemu::agent {

/// What a ShardApplier acts through. The pointers must outlive the applier.
struct ApplierDeps {
  VnodeRuntime* runtime = nullptr;
  /// A plumbing object for the calling thread (one per batch: a Plumbing is
  /// used by one thread at a time).
  std::function<Result<std::unique_ptr<Plumbing>>()> new_plumbing;
  /// A VXLAN plumbing object for the calling thread.
  std::function<Result<std::unique_ptr<VxlanPlumbing>>()> new_vxlan;
  /// The link shaper; null = no shaping backend works here (shards with
  /// profiles then fail their check).
  netshape::LinkShaper* shaper = nullptr;
  /// Where shard records go.
  ShardRecords* records = nullptr;
};

/// The kernel's: `runtime` and `shaper` as given, netlink plumbing
/// (NewNetlinkPlumbing, NewNetlinkVxlanPlumbing), `records`.
ApplierDeps KernelApplierDeps(VnodeRuntime* runtime, netshape::LinkShaper* shaper,
                              ShardRecords* records);

/// Options of a ShardApplier.
struct ShardApplierOptions {
  /// Object prefix (as RuntimeOptions::prefix): interface tags are
  /// "<prefix>:<experiment>:<link>".
  std::string prefix = "gridemu";
  /// Where a vnode's outputs go when its shard has no output_dir:
  /// <default_output_dir>/<experiment>/<vnode>; "" = /tmp/<prefix>-out.
  std::string default_output_dir;
  /// Vnodes per CreateBatch call; progress is reported after each.
  size_t vnode_chunk = 250;
  /// At most link_chunk / 2 links per plumbing and shaping batch.
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
  ShardApplier(ApplierDeps deps, ShardApplierOptions options);
  /// Forgets the shards: their vnodes stay (for adoption), their shaping is
  /// removed (with the ShapedDirection objects).
  ~ShardApplier();
  ShardApplier(const ShardApplier&) = delete;
  ShardApplier& operator=(const ShardApplier&) = delete;

  /// What ResolveShard is told of this pnode (prefix, runtime, address,
  /// shaping backend, default output directory).
  ResolveOptions resolve_options() const;
  /// ResolveShard(shard, resolve_options(), errors).
  Result<ShardPlan> Resolve(const v1::DeployShard& shard,
                            std::vector<ShardObjectError>* errors = nullptr) const;
  /// The problems of a shard, without effects (one per object at fault).
  std::vector<ShardObjectError> Check(const v1::DeployShard& shard) const;

  /// Builds (or converges to) `plan`. See the file comment.
  DeployReport Deploy(const ShardPlan& plan, const DeployProgressFn& progress = {});
  /// Resolve, then Deploy the plan; a shard that does not resolve fails with
  /// its problems and nothing made.
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
  /// <default_output_dir>/<experiment>/<vnode> when the shard has none.
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

 private:
  struct LinkState;
  struct ShardState;

  DeployReport DeployPlan(ShardPlan&& plan, const DeployProgressFn& progress);
  // Phases of Deploy.
  Status RecordPhase(const ShardPlan& plan, const char* phase);
  // The wire namespace (ShardPlan::wire), with br_netfilter on.
  Status MakeWire(ShardState& s);
  // The veths (and a tunnel's VXLAN end) and the bridge of a link through the wire.
  void AddWiredLink(const ShardState& s, const LinkPlan& l, const LinkState& ls,
                    PlumbingBatch& b, std::vector<VxlanSpec>& tunnels) const;
  PipelineResult MakeVnodesAndLinks(ShardState& s, const DeployProgressFn& progress,
                                    DeployReport& rep);
  // Veths (or, for tunnel links, the local VXLAN end) and addresses of `links`.
  Status PlumbLinks(const ShardState& s, std::span<const size_t> links);
  // Bridges, forwarding switches and routes of the shard.
  Status PlumbLanAndRoutes(const ShardState& s);
  Status ShapeLinks(ShardState& s, std::span<const size_t> links);
  void Rollback(ShardState& s, std::vector<ShardObjectError>* errors);

  void RemoveShaping(ShardState& s, std::vector<ShardObjectError>* errors);
  // Deletes the experiment's tagged interfaces left in the underlay namespace.
  Status CleanupUnderlay(const std::string& experiment) const;
  std::shared_ptr<ShardState> Find(const std::string& experiment) const;
  void Forget(const std::string& experiment);

  ApplierDeps deps_;
  ShardApplierOptions options_;
  mutable std::mutex mu_;  // guards shards_ (the map, not the states)
  std::map<std::string, std::shared_ptr<ShardState>> shards_;
};

}  // namespace gridemu::agent

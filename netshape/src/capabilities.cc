#include "gridemu/netshape/capabilities.h"

#include <chrono>

#include <errno.h>
#include <sched.h>

#include <thread>

#include "gridemu/netshape/netlink_ops.h"
#include "internal.h"
#include "netlink_internal.h"
#include "nfq_internal.h"

namespace gridemu::netshape {

std::string Capabilities::ToString() const {
  auto yn = [](bool b) { return b ? "yes" : "no"; };
  return std::string("htb=") + yn(htb) + " netem=" + yn(netem) + " nfqueue=" + yn(nfqueue) +
         " iptables=" + yn(iptables) + " ip6tables=" + yn(ip6tables);
}

namespace {

void Note(std::string& notes, const std::string& line) {
  if (!notes.empty()) notes += '\n';
  notes += line;
}

// Runs on a fresh thread that owns a scratch network namespace.
Status ProbeInScratchNetns(Capabilities& caps) {
  if (unshare(CLONE_NEWNET) != 0) {
    return ErrnoStatus(errno, "creating a scratch network namespace for the probe");
  }
  // Qdiscs on the scratch namespace's loopback.
  auto ops_or = OpenNetlinkOps("", "lo");
  if (!ops_or.ok()) return ops_or.status();
  NetlinkOps& ops = **ops_or;
  const TcOp del{TcVerb::kDelete, TcOp::Object::kQdisc, kTcRoot, kRootQdiscHandle,
                 std::monostate{}};
  Status s = ops.Execute(
      {TcVerb::kAdd, TcOp::Object::kQdisc, kTcRoot, kRootQdiscHandle, HtbQdiscParams{}});
  caps.htb = s.ok();
  if (s.ok()) {
    (void)ops.Execute(del);
  } else {
    Note(caps.notes, "htb: " + s.message());
  }
  NetemSpec n;
  n.impairment.latency = std::chrono::milliseconds(1);
  s = ops.Execute({TcVerb::kAdd, TcOp::Object::kQdisc, kTcRoot, kRootQdiscHandle, n});
  caps.netem = s.ok();
  if (s.ok()) {
    (void)ops.Execute(del);
  } else {
    Note(caps.notes, "netem: " + s.message());
  }
  // NFQUEUE: bind a queue.
  auto q = BindNfQueue(18000, 64, 16);
  caps.nfqueue = q.ok();
  if (!q.ok()) Note(caps.notes, "nfqueue: " + q.status().message());
  // iptables / ip6tables with the NFQUEUE target.
  for (const char* prog : {"iptables-restore", "ip6tables-restore"}) {
    const std::string rules =
        "*mangle\n-A PREROUTING -i lo -m comment --comment gridemu:probe -j NFQUEUE "
        "--queue-num 18000\nCOMMIT\n";
    auto r = RunProcess("", {prog, "-w", "--noflush"}, rules);
    bool ok = r.ok() && r->exit_code == 0;
    if (std::string(prog) == "iptables-restore") {
      caps.iptables = ok;
    } else {
      caps.ip6tables = ok;
    }
    if (!ok) {
      Note(caps.notes, std::string(prog) + ": " +
                           (r.ok() ? "exit " + std::to_string(r->exit_code) + ": " + r->err
                                   : r.status().message()));
    }
  }
  return Status::Ok();
}

}  // namespace

Result<Capabilities> ProbeCapabilities() {
  Capabilities caps;
  Status status;
  // unshare() changes the calling thread's namespace: do it on a thread of its own, which
  // takes the scratch namespace with it when it ends.
  std::thread t([&] { status = ProbeInScratchNetns(caps); });
  t.join();
  if (!status.ok()) return status;
  return caps;
}

Result<BackendChoice> ParseBackendChoice(std::string_view name) {
  if (name == "auto") return BackendChoice::kAuto;
  if (name == "netem") return BackendChoice::kNetem;
  if (name == "userspace") return BackendChoice::kUserspace;
  return InvalidArgumentError("unknown shaping backend '" + std::string(name) +
                              "'; expected auto, netem or userspace");
}

Result<Backend> SelectBackend(BackendChoice choice, const Capabilities& caps) {
  switch (choice) {
    case BackendChoice::kNetem:
      return Backend::kNetem;
    case BackendChoice::kUserspace:
      return Backend::kUserspace;
    case BackendChoice::kAuto:
      if (caps.netem && caps.htb) return Backend::kNetem;
      if (caps.userspace_ok()) return Backend::kUserspace;
      return UnavailableError("no shaping backend works on this kernel: " +
                              (caps.notes.empty() ? caps.ToString() : caps.notes));
  }
  return InternalError("bad backend choice");
}

Status CheckBackendSupports(const LinkProfile& profile, Backend backend, const Capabilities& caps) {
  GRIDEMU_RETURN_IF_ERROR(CheckBackendExpresses(profile, backend));
  const std::string name(BackendName(backend));
  auto missing = [&](const std::string& field, const char* feature) {
    return UnimplementedError(field + ": not supported by the " + name +
                              " backend on this kernel (" + feature + " is missing)");
  };
  if (profile.rate_bps && !caps.htb) return missing("rate", "sch_htb");
  for (const auto& [field, set] : ImpairmentFieldsOf(profile)) {
    if (!set) continue;
    if (backend == Backend::kNetem && !caps.netem) return missing(field, "sch_netem");
    if (backend == Backend::kUserspace && !caps.nfqueue) return missing(field, "NFQUEUE");
    if (backend == Backend::kUserspace && !caps.iptables) {
      return missing(field, "iptables NFQUEUE target");
    }
  }
  // A queue limit without a rate is netem's limit (netem backend) or the delay line's
  // (userspace backend).
  if (profile.queue_packets && !profile.rate_bps) {
    if (backend == Backend::kNetem && !caps.netem) return missing("queue", "sch_netem");
  }
  return Status::Ok();
}

std::vector<std::string> HonouredParameters(Backend backend, const Capabilities& caps) {
  using namespace std::chrono_literals;
  std::vector<std::pair<const char*, LinkProfile>> one;
  auto with = [&](const char* name, auto set) {
    LinkProfile p;
    set(p);
    one.emplace_back(name, p);
  };
  with("rate", [](LinkProfile& p) { p.rate_bps = 1000000; });
  with("delay", [](LinkProfile& p) { p.delay = 1ms; });
  with("jitter", [](LinkProfile& p) { p.jitter = 1ms; });
  with("delay_distribution", [](LinkProfile& p) { p.delay_distribution = DelayDistribution::kNormal; });
  with("delay_correlation", [](LinkProfile& p) { p.delay_correlation = 0.1; });
  with("loss", [](LinkProfile& p) { p.loss = 0.01; });
  with("loss_correlation", [](LinkProfile& p) { p.loss_correlation = 0.1; });
  with("loss_model", [](LinkProfile& p) { p.loss_gemodel = GilbertElliott{}; });
  with("duplicate", [](LinkProfile& p) { p.duplicate = 0.01; });
  with("reorder", [](LinkProfile& p) { p.reorder = 0.01; });
  with("reorder_gap", [](LinkProfile& p) { p.reorder_gap = 5; });
  with("corrupt", [](LinkProfile& p) { p.corrupt = 0.01; });
  with("queue", [](LinkProfile& p) { p.queue_packets = 100; });
  std::vector<std::string> out;
  for (const auto& [name, p] : one) {
    if (CheckBackendSupports(p, backend, caps).ok()) out.emplace_back(name);
  }
  return out;
}

}  // namespace gridemu::netshape

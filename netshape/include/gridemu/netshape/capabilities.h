// What this kernel can shape with, and which backend to use (DESIGN.md §5: "selection is
// automatic (probe once at agent start) and can be forced").
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "gridemu/common/link_profile.h"
#include "gridemu/common/status.h"
#include "gridemu/netshape/plan.h"

namespace gridemu::netshape {

/// Kernel features found by ProbeCapabilities(). Value type.
struct Capabilities {
  bool htb = false;        ///< sch_htb: a "htb" qdisc can be created
  bool netem = false;      ///< sch_netem: a "netem" qdisc can be created
  bool nfqueue = false;    ///< nfnetlink_queue: a queue can be bound from userspace
  bool iptables = false;   ///< iptables-restore accepts an NFQUEUE rule (mangle PREROUTING)
  bool ip6tables = false;  ///< the same for ip6tables-restore
  /// One line per feature found missing, with the kernel's or tool's error, e.g.
  /// "netem: Specified qdisc kind is unknown (No such file or directory)".
  std::string notes;

  /// True when the userspace backend can run here (NFQUEUE + iptables).
  bool userspace_ok() const { return nfqueue && iptables; }
  /// "htb=yes netem=no nfqueue=yes iptables=yes ip6tables=yes".
  std::string ToString() const;
  friend bool operator==(const Capabilities&, const Capabilities&) = default;
};

/// Probes the running kernel, without touching any existing namespace: on a short-lived
/// thread it creates a scratch network namespace (unshare(CLONE_NEWNET)), tries to add an
/// htb and a netem qdisc on its loopback device through rtnetlink (the kernel loads
/// sch_* modules on demand), binds an NFQUEUE queue, and runs iptables-restore and
/// ip6tables-restore with an NFQUEUE rule there. The namespace vanishes with the thread.
/// Takes a few milliseconds. Needs CAP_NET_ADMIN (and CAP_SYS_ADMIN for unshare).
/// Errors: kPermissionDenied without privileges, kInternal if no namespace can be made.
/// Thread-safe.
Result<Capabilities> ProbeCapabilities();

/// How to pick a backend.
enum class BackendChoice {
  kAuto,       ///< netem where the kernel has sch_netem, else userspace
  kNetem,      ///< forced
  kUserspace,  ///< forced
};

/// Parses "auto", "netem" or "userspace"; kInvalidArgument otherwise.
Result<BackendChoice> ParseBackendChoice(std::string_view name);

/// Picks the backend for `choice` on a kernel with `caps`.
/// kAuto: netem when caps.netem && caps.htb; else userspace when caps.userspace_ok();
/// else kUnavailable "no shaping backend works on this kernel: <caps.notes>".
/// A forced backend is returned as is, even if the kernel lacks its features: profiles
/// then fail in CheckBackendSupports with a message naming the parameter and the backend.
Result<Backend> SelectBackend(BackendChoice choice, const Capabilities& caps);

/// Whether `backend` can honour every parameter of `profile` on a kernel with `caps`.
/// Checks CheckBackendExpresses() (plan.h) first, then the kernel, naming the first field
/// (in LinkProfile order, with the experiment-file name) that cannot be honoured:
///   "<field>: not supported by the <backend> backend" (never on any kernel), or
///   "<field>: not supported by the <backend> backend on this kernel (<feature> is missing)"
/// where <feature> is "sch_netem", "sch_htb", "NFQUEUE" or "iptables NFQUEUE target".
/// Error code: kUnimplemented. An empty profile is always supported.
Status CheckBackendSupports(const LinkProfile& profile, Backend backend, const Capabilities& caps);

/// The profile parameters (LinkProfile::SetParameters names) that `backend` honours on a
/// kernel with `caps`: each one alone passes CheckBackendSupports. What an agent
/// announces (AgentHello.capabilities.shaping_parameters) so that the controller refuses,
/// at submit, a parameter that no placed pnode can honour.
std::vector<std::string> HonouredParameters(Backend backend, const Capabilities& caps);

}  // namespace gridemu::netshape

// Test bed for netshape's root tests and benchmark: two network namespaces joined by a
// veth pair, and runners for ping (iputils) and iperf3 inside them.
//
// Every object carries the bed's prefix "gnsT<pid>-<n>" (namespaces "<prefix>a"/"<prefix>b",
// interfaces of the same names) and is deleted by the destructor, also when a test fails.
// Traffic stays between the two namespaces. Needs root. This uses `ip`, `ping` and
// `iperf3` processes; the netshape library itself never does.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "gridemu/common/status.h"
#include "gridemu/netshape/shaper.h"

namespace gridemu::netshape::testing {

/// True when running as root (uid 0).
bool IsRoot();

/// Output of a shell command.
struct CmdResult {
  int exit_code = -1;
  std::string out;  ///< stdout and stderr together
};
/// Runs `/bin/sh -c cmd`, capturing stdout+stderr.
CmdResult Sh(const std::string& cmd);

/// How A and B are joined.
enum class Layout {
  /// One veth pair A <-> B: the userspace backend holds packets in the receiver's
  /// namespace (its kernel stamps them before the delay: measure with ping -U).
  kDirect,
  /// The agent's design (node-agent shard_plan.h WirePlan): a third namespace W with a
  /// bridge "br" (group 1, no multicast snooping, br_netfilter on) whose ports "wa" and
  /// "wb" are veths to A's and B's interfaces; hold() gives the hold points there.
  kWire,
};

/// Two namespaces A and B joined by a veth pair (or through W, Layout::kWire), with
/// 10.0.0.1/24 (A) and 10.0.0.2/24 (B), both up, IPv6 disabled (so that only the tests'
/// own packets are shaped). Optionally more links between them (no addresses) for
/// scale tests.
class VethTestbed {
 public:
  /// `extra_pairs` more links, down: veth pairs "<prefix>x<i>" (A) <-> "<prefix>y<i>"
  /// (B); with kWire, each through its own bridge "b<i>" (group i + 2) of W, ports
  /// "xa<i>" and "xb<i>".
  static Result<std::unique_ptr<VethTestbed>> Create(int extra_pairs = 0,
                                                     Layout layout = Layout::kDirect);
  ~VethTestbed();

  Layout layout() const { return layout_; }
  std::string ns_w() const { return prefix_ + "w"; }  ///< kWire only
  std::string path_w() const { return "/var/run/netns/" + ns_w(); }
  /// Where the userspace backend holds the A -> B (forward) or B -> A direction of the
  /// main link (`extra` >= 0: of extra link `extra`); nullopt with kDirect.
  std::optional<HoldPoint> hold(bool forward, int extra = -1) const;

  const std::string& prefix() const { return prefix_; }
  std::string ns_a() const { return prefix_ + "a"; }  ///< namespace name (ip netns)
  std::string ns_b() const { return prefix_ + "b"; }
  std::string path_a() const { return "/var/run/netns/" + ns_a(); }
  std::string path_b() const { return "/var/run/netns/" + ns_b(); }
  std::string if_a() const { return prefix_ + "a"; }  ///< veth end in A
  std::string if_b() const { return prefix_ + "b"; }  ///< veth end in B
  std::string addr_a() const { return "10.0.0.1"; }
  std::string addr_b() const { return "10.0.0.2"; }
  Endpoint a() const { return {path_a(), if_a()}; }
  Endpoint b() const { return {path_b(), if_b()}; }
  std::string extra_if_a(int i) const { return prefix_ + "x" + std::to_string(i); }
  std::string extra_if_b(int i) const { return prefix_ + "y" + std::to_string(i); }

  /// "ip netns exec <ns> " + cmd, run with Sh().
  CmdResult Exec(const std::string& ns, const std::string& cmd) const;

 private:
  VethTestbed() = default;
  std::string prefix_;
  Layout layout_ = Layout::kDirect;
  bool created_ = false;
};

/// Deletes namespaces left by earlier runs of netshape tests whose process is gone
/// (names "gnsT<pid>-<n>a|b" where <pid> no longer exists). Returns how many.
int RemoveStaleTestbeds();

/// Result of a ping run.
struct PingStats {
  int transmitted = 0;
  int received = 0;
  int duplicates = 0;          ///< replies marked (DUP!)
  std::vector<double> rtt_ms;  ///< one per reply, in order
  double mean_ms = 0, stddev_ms = 0, median_ms = 0, min_ms = 0, max_ms = 0;
  double loss() const { return transmitted ? 1.0 - double(received) / transmitted : 0; }
};

/// `chrt -f 1 ping -n -c count -i interval -s size -W wait dst` inside namespace `ns`, at
/// real-time priority so that host load does not skew the RTTs; plain ping (kernel
/// timestamps), or with `user_timestamps` ping -U (user-level times, what a receiver
/// that is stamped before the delay line needs: Layout::kDirect). Duplicate replies
/// are counted apart. Errors: kInternal when ping cannot run.
Result<PingStats> Ping(const std::string& ns, const std::string& dst, int count, double interval_s,
                       int wait_s = 2, int size_bytes = 56, bool user_timestamps = false);

/// Mean and sample standard deviation.
void MeanStddev(const std::vector<double>& v, double* mean, double* stddev);

/// An iperf3 server (one-off) running in a namespace; killed by pid when destroyed.
class IperfServer {
 public:
  static Result<std::unique_ptr<IperfServer>> Start(const std::string& ns, int port);
  ~IperfServer();
  int port() const { return port_; }

 private:
  pid_t pid_ = -1;
  int port_ = 0;
};

/// Result of an iperf3 TCP client run.
struct IperfResult {
  /// end.sum_received: goodput measured by the receiving side. With -R the client is the
  /// receiver and the figure covers the non-omitted seconds (-O) only.
  double receiver_bps = 0;
  double sender_bps = 0;
  uint64_t retransmits = 0;
  std::vector<double> interval_bps;  ///< per-interval goodput seen by the client
  std::string json;
};

/// `iperf3 -c dst -p port -t seconds -O omit -J` inside `ns`.
Result<IperfResult> RunIperf(const std::string& ns, const std::string& dst, int port, int seconds,
                             int omit_seconds, const std::string& extra = "");

}  // namespace gridemu::netshape::testing

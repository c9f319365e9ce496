// The values a caller of netshape passes and reads for one shaped direction:
// where it goes (Endpoint, ShapeRequest) and what it counted (Counters). Used
// by the Shaper (shaper.h) and the LinkShaper interface (link_shaper.h).
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "gridemu/common/link_profile.h"
#include "gridemu/netshape/plan.h"

namespace gridemu::netshape {

/// An interface inside a network namespace (netns.h for the path forms).
struct Endpoint {
  std::string netns;   ///< "/var/run/netns/NAME", "/proc/PID/ns/net", "" = current
  std::string ifname;  ///< interface name inside that namespace
};

/// Counters of one shaped direction, readable while it runs. Cumulative, except
/// held_packets. Sources: userspace backend: the delay line (passed, loss, delayed,
/// duplicated, reordered, held) plus the HTB class (overflow drops, or passed when there
/// is no delay line) and the kernel's NFQUEUE drops (overflow); netem backend: the HTB
/// class and the netem qdisc stats (netem keeps no duplicate/reorder counters: 0; without
/// HTB, netem's overflow drops cannot be told from its losses and count as loss).
struct Counters {
  uint64_t passed_packets = 0;            ///< delivered past the shaping (to the receiver)
  uint64_t passed_bytes = 0;              ///< their bytes (L2 from qdiscs, L3 from the delay line)
  uint64_t loss_dropped_packets = 0;      ///< dropped by the loss model
  uint64_t overflow_dropped_packets = 0;  ///< dropped by a full queue (tail drop)
  uint64_t delayed_packets = 0;           ///< packets that were held for a delay
  uint64_t duplicated_packets = 0;
  uint64_t reordered_packets = 0;
  uint64_t held_packets = 0;  ///< in the queues/delay line now

  /// "passed 10/14800B loss 1 overflow 0 delayed 10 dup 0 reorder 0 held 0".
  std::string ToString() const;
};

/// Where the userspace backend holds a direction's packets when the receiver must not
/// see them before their delay is over: a bridge hop in a namespace of its own (the
/// agent's wire namespace), between the sender's and the receiver's interfaces. Packets
/// enter the receiver's namespace only when released, so the kernel stamps their
/// arrival (SO_TIMESTAMP, tcpdump) after the emulated delay; and they are held in a
/// namespace that owns none of their sockets, so holding them does not throttle the
/// sender's TCP (TCP small queues).
///
/// The delay line's rule there matches bridged packets arriving on `port` (with
/// br_netfilter: bridge-nf-call-iptables must be on in that namespace); rules are
/// dispatched on the bridge's interface group (IFLA_GROUP) through a 16-ary tree of
/// chains, so a packet crosses about 4 x 8 rules whatever the number of held links
/// (a linear list of 2,000 physdev rules cut a veth's TCP throughput from 19.7 to
/// 4.7 Gbit/s here).
struct HoldPoint {
  std::string netns;  ///< the hold namespace's path
  std::string port;   ///< the bridge port the direction's packets arrive on
  /// The bridge's interface group: 1..65535, the same for both directions of a link and
  /// unique among the bridges of the namespace.
  uint32_t group = 0;
  /// The bridge port the packets leave by, toward the receiver: duplicates are sent there
  /// as Ethernet frames.
  std::string out_port;
};

/// One direction to shape.
struct ShapeRequest {
  /// Where the traffic leaves (HTB/netem on its egress). With half == kReceiverOnly it is
  /// on another host: not touched (its ifname may be empty).
  Endpoint sender;
  /// Where it arrives (delay line on its ingress; userspace backend). With half ==
  /// kSenderOnly it is on another host: not touched (its ifname may be empty).
  Endpoint receiver;
  LinkProfile profile;
  /// Identifies the direction in rule comments ("gridemu:<tag>"): [A-Za-z0-9_.:/-], at
  /// most 200 characters, unique on the host, e.g. "<experiment>:<link>:fwd".
  std::string tag;
  Direction direction = Direction::kForward;
  /// Names the direction's random stream (loss, jitter, ... decisions derive from
  /// ShaperOptions::seed, this name and `direction`); "" = the tag. Give a name that is
  /// stable across runs (e.g. the link's id) for reproducible experiments.
  std::string stream{};
  /// The experiment's seed for this direction's random stream; unset = ShaperOptions::seed.
  std::optional<uint64_t> seed{};
  /// Hold the delay line's packets on a bridge hop instead of in the receiver's namespace
  /// (userspace backend; see HoldPoint). Unset = a rule on the receiver's PREROUTING
  /// (`-i <receiver ifname>`): the receiver's kernel then stamps packets before the delay.
  std::optional<HoldPoint> hold{};
  /// Which half of the direction this host builds (plan.h ShapeHalf); kBoth = both
  /// interfaces are here. GetCounters() then reports what this half has: the HTB class
  /// (passed, overflow drops) for a sender half, the delay line for a receiver half.
  ShapeHalf half = ShapeHalf::kBoth;
};

}  // namespace gridemu::netshape

// The userspace delay line (DESIGN.md §5, backend "userspace"): emulates delay, jitter,
// loss, duplication and reordering for kernels without sch_netem.
//
// Packets of a shaped direction are diverted by an NFQUEUE rule (on a bridge hop of the
// agent's wire namespace, or on the receiver's PREROUTING: see shaper.h) to a queue bound
// here with libnetfilter_queue. Each queue is served by exactly one worker thread;
// queues are spread over the workers (least-loaded first) and workers are pinned one per
// core; workers share nothing per packet. A worker reads packets in batches (recvmmsg),
// decides each with an ImpairmentModel (netem's semantics, impairment.h), holds delayed
// packets in a min-heap on their release time (CLOCK_MONOTONIC; the worker sleeps in
// epoll_pwait2 until the next one), and releases them with batched verdicts: one
// NFQNL_MSG_VERDICT_BATCH when the released packets are every pending packet up to an id,
// otherwise individual verdicts, all of a queue's verdicts of one wake-up going to the
// kernel in a single send. Losses are NF_DROP verdicts. Duplicates are copied out
// (the queue then copies whole packets) and re-injected after their own delay: with a
// raw IP socket in the queue's namespace, or as Ethernet frames on a bridge port of it
// (QueueOptions).
//
// Cost: almost all of a worker's CPU is kernel time (reads, verdicts, and the released
// packets' onward path, which runs in its context), paid per wake-up and per packet, so
// a worker wakes as rarely as the timing allows: a queue whose packets all get the same
// delay is read a quarter of that delay (at most 500 us) after its first unread packet
// arrived (delays count from the kernel's receive time, so reading later changes
// nothing), or at once when it has more than one wake-up can read; sparse releases are
// exact (the worker wakes spin_us early and spins to the release time), dense ones go
// in rounds at most a twentieth of the shortest delay (at most 100 us) late. No memory
// is allocated per packet (rings, heap and duplicate buffers keep their capacity;
// bench/netshape/run counts allocations), and a queue costs a few KiB (one verdict
// buffer per worker).
//
// Timing: a delay counts from the packet's kernel receive timestamp in the queue's
// namespace (see DelayLineOptions::kernel_timestamps) to its verdict. Where the queue
// sits decides what applications see: in the receiver's own namespace (a rule on its
// PREROUTING) the receiver's kernel has stamped the packet (SO_TIMESTAMP, tcpdump)
// before it is held; on a bridge hop the receiver cannot see (shape_request.h
// HoldPoint, what the agent uses) the packet reaches the receiver, and is stamped, only
// once released.
//
// Fail closed: rules carry no --queue-bypass and queues no NFQA_CFG_F_FAIL_OPEN. While
// no delay line serves a queue (the process crashed or was killed before removing its
// rules), or when a queue holds max_pending_packets already, the kernel DROPS the
// packets of that direction: a shaped link never silently becomes an unshaped one.
// Leftover rules are removed by tag (RemoveLeftoverRules in shaper.h).
// NFQUEUE ids are per queue and queues are per namespace; the engine numbers its queues
// from DelayLineOptions::first_queue_num in each namespace, skipping numbers in use.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "gridemu/common/status.h"
#include "gridemu/netshape/plan.h"

namespace gridemu::netshape {

/// Counters of one queue (one shaped direction). Cumulative except held_packets.
struct DelayLineCounters {
  uint64_t received_packets = 0;  ///< packets the queue delivered to the delay line
  uint64_t received_bytes = 0;    ///< their length at L3 (IP header included)
  uint64_t passed_packets = 0;    ///< released to the receiver (duplicates included)
  uint64_t passed_bytes = 0;
  uint64_t loss_dropped_packets = 0;  ///< dropped by the loss model
  uint64_t delayed_packets = 0;       ///< held for a delay > 0
  uint64_t duplicated_packets = 0;    ///< copies injected
  uint64_t reordered_packets = 0;     ///< sent at once ahead of held packets (netem reorder)
  uint64_t held_packets = 0;          ///< held right now
  /// Dropped by the kernel queue: full (max_pending_packets), or its message could not be
  /// delivered to the delay line (/proc/net/netfilter/nfnetlink_queue queue_dropped +
  /// queue_user_dropped). Read only when asked (ReadCounters(..., true)).
  uint64_t kernel_dropped_packets = 0;
};

/// Engine options.
struct DelayLineOptions {
  int workers = 0;                   ///< worker threads; 0 = one per available core
  bool pin_workers = true;           ///< pin worker i to the i-th available core
  uint16_t first_queue_num = 18000;  ///< NFQUEUE numbers used start here, per namespace
  int recv_batch = 64;               ///< packets read per recvmmsg call
  /// A worker's timer wakes it this long before a release time and it spins until then,
  /// so that wake-up latency does not add to the delay (CPU cost: at most this per timer
  /// wake-up; a worker woken by packets does not spin).
  int spin_us = 50;
  /// Delays count from the kernel's receive timestamp of each packet (NFQA_TIMESTAMP)
  /// rather than from the moment a worker reads it, so that queueing to userspace does not
  /// add to the delay. This enables receive timestamps host-wide (as any socket with
  /// SO_TIMESTAMP does, e.g. ping): the engine holds one such socket.
  bool kernel_timestamps = true;
  /// SCHED_FIFO priority of the workers (1-99); 0 keeps the default scheduler. With the
  /// default 1, a busy host does not delay releases (measured on 2 cores with 3 CPU hogs:
  /// RTT for 10 ms each way 20.18 ms on average instead of 21.2 ms, max 20.6 instead of
  /// 32 ms). The cost: a worker flooded beyond its capacity keeps its core, less the
  /// kernel's RT throttling share (sched_rt_runtime_us, 5 % by default) left to others.
  /// Ignored without CAP_SYS_NICE.
  int realtime_priority = 1;
};

/// Where a queue injects its duplicates.
struct QueueOptions {
  /// "" (default): as IP packets through raw sockets of the queue's namespace (it is the
  /// receiver's own). Else: as Ethernet frames sent on this interface of the queue's
  /// namespace (a bridge port toward the receiver), from the packet's source MAC address
  /// to `dst_mac`.
  std::string inject_ifname;
  /// The receiver's MAC address, for inject_ifname; unset = broadcast (a receiver that is
  /// a bridge port itself: its frames' destinations lie beyond it).
  std::optional<std::array<uint8_t, 6>> dst_mac;
  friend bool operator==(const QueueOptions&, const QueueOptions&) = default;
};

/// The delay-line engine: one per process (queues cannot be shared between processes).
/// All methods are thread-safe. Destroying it releases every held packet (NF_ACCEPT),
/// unbinds every queue and joins the workers.
class DelayLine {
 public:
  /// Starts the worker threads. Raises RLIMIT_NOFILE's soft limit to the hard limit (one
  /// socket per queue). Errors: kInternal if threads or timers cannot be created.
  static Result<std::unique_ptr<DelayLine>> Start(const DelayLineOptions& options);
  virtual ~DelayLine() = default;

  /// A queue bound for one direction.
  struct QueueInfo {
    uint64_t id = 0;         ///< engine-wide handle
    uint16_t queue_num = 0;  ///< the NFQUEUE number to put in the rule (--queue-num)
    int worker = 0;          ///< the worker thread that serves it
  };

  /// Binds a new NFQUEUE queue inside the namespace at `netns_path` (the socket is opened
  /// there) with `spec`, and hands it to a worker. Packets reach it once a rule sends them
  /// there. Errors: kUnavailable (nfnetlink_queue missing, or no free queue number),
  /// kNotFound (no such namespace), kPermissionDenied, kInternal.
  virtual Result<QueueInfo> AddQueue(const std::string& netns_path, const DelayLineSpec& spec,
                                     const QueueOptions& options) = 0;
  /// AddQueue with default QueueOptions.
  Result<QueueInfo> AddQueue(const std::string& netns_path, const DelayLineSpec& spec) {
    return AddQueue(netns_path, spec, QueueOptions{});
  }
  /// Changes a queue's parameters at run time (ImpairmentModel::Update semantics: held
  /// packets keep their release times; nothing is flushed). Errors: kNotFound.
  virtual Status UpdateQueue(uint64_t id, const DelayLineSpec& spec) = 0;
  /// Releases the queue's held packets at once (NF_ACCEPT), unbinds it and closes its
  /// socket. Remove the rule first, or later packets are dropped (fail closed).
  /// Errors: kNotFound.
  virtual Status RemoveQueue(uint64_t id) = 0;
  /// The queue's counters, readable while it runs (relaxed atomics). With
  /// `with_kernel_drops`, also reads the kernel's drop counters for it (enters its
  /// namespace briefly). Errors: kNotFound.
  virtual Result<DelayLineCounters> ReadCounters(uint64_t id, bool with_kernel_drops) = 0;

  /// Number of worker threads.
  virtual int workers() const = 0;
  /// CPU time (user + system) used so far by worker `index` (for benchmarks).
  virtual Result<std::chrono::nanoseconds> WorkerCpuTime(int index) = 0;
};

}  // namespace gridemu::netshape

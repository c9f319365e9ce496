#include "gridemu/netshape/delay_line.h"

#include <arpa/inet.h>
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <libmnl/libmnl.h>
#include <libnetfilter_queue/libnetfilter_queue.h>
#include <linux/netfilter.h>
#include <netinet/in.h>
#include <netinet/ip.h>
#include <netinet/ip6.h>
#include <net/if.h>
#include <linux/if_packet.h>
#include <pthread.h>
#include <sched.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <cstring>
#include <fstream>
#include <functional>
#include <future>
#include <map>
#include <mutex>
#include <queue>
#include <set>
#include <sstream>
#include <thread>
#include <unordered_map>
#include <vector>

#include <boost/circular_buffer.hpp>

#include "gridemu/netshape/impairment.h"
#include "gridemu/netshape/netns.h"
#include "internal.h"
#include "nfq_internal.h"

#ifndef SOL_NETLINK
#define SOL_NETLINK 270
#endif

namespace gridemu::netshape {

// ---------------------------------------------------------------------------------------
// Binding a queue.

namespace {

Status SendAndAck(int fd, nlmsghdr* nlh, const std::string& what) {
  static std::atomic<uint32_t> seq_counter{1};
  nlh->nlmsg_flags |= NLM_F_ACK;
  nlh->nlmsg_seq = seq_counter.fetch_add(1);
  const uint32_t seq = nlh->nlmsg_seq;
  if (send(fd, nlh, nlh->nlmsg_len, 0) < 0) return ErrnoStatus(errno, what);
  char buf[8192];
  while (true) {
    ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoStatus(errno, what);
    }
    int len = static_cast<int>(n);
    for (auto* h = reinterpret_cast<nlmsghdr*>(buf); NLMSG_OK(h, len); h = NLMSG_NEXT(h, len)) {
      if (h->nlmsg_type != NLMSG_ERROR || h->nlmsg_seq != seq) continue;
      auto* e = static_cast<nlmsgerr*>(NLMSG_DATA(h));
      if (e->error == 0) return Status::Ok();
      return ErrnoStatus(-e->error, what);
    }
  }
}

}  // namespace

Result<UniqueFd> BindNfQueue(uint16_t queue_num, uint32_t copy_range, uint32_t max_len) {
  UniqueFd fd(socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_NETFILTER));
  if (!fd.valid()) return ErrnoStatus(errno, "NFQUEUE socket");
  sockaddr_nl addr;
  std::memset(&addr, 0, sizeof addr);
  addr.nl_family = AF_NETLINK;
  if (bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    return ErrnoStatus(errno, "NFQUEUE socket bind");
  }
  const std::string what = "NFQUEUE queue " + std::to_string(queue_num);
  alignas(nlmsghdr) char buf[512];
  nlmsghdr* nlh = nfq_nlmsg_put(buf, NFQNL_MSG_CONFIG, queue_num);
  nfq_nlmsg_cfg_put_cmd(nlh, AF_INET, NFQNL_CFG_CMD_BIND);
  GRIDEMU_RETURN_IF_ERROR(SendAndAck(fd.get(), nlh, what + ": bind"));
  nlh = nfq_nlmsg_put(buf, NFQNL_MSG_CONFIG, queue_num);
  nfq_nlmsg_cfg_put_params(nlh, NFQNL_COPY_PACKET, static_cast<int>(copy_range));
  nfq_nlmsg_cfg_put_qmaxlen(nlh, max_len);
  // Fail closed: clear NFQA_CFG_F_FAIL_OPEN (and GSO: the kernel segments GSO packets so
  // that loss and delay apply per segment, as on a wire).
  mnl_attr_put_u32(nlh, NFQA_CFG_FLAGS, htonl(0));
  mnl_attr_put_u32(nlh, NFQA_CFG_MASK, htonl(NFQA_CFG_F_FAIL_OPEN | NFQA_CFG_F_GSO));
  GRIDEMU_RETURN_IF_ERROR(SendAndAck(fd.get(), nlh, what + ": configure"));
  int one = 1;
  setsockopt(fd.get(), SOL_NETLINK, NETLINK_NO_ENOBUFS, &one, sizeof one);
  int rcvbuf = 8 << 20;
  if (setsockopt(fd.get(), SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof rcvbuf) != 0) {
    setsockopt(fd.get(), SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
  }
  return fd;
}

// ---------------------------------------------------------------------------------------
// The engine.

namespace {

int64_t NowNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

struct CounterBlock {
  std::atomic<uint64_t> received_packets{0}, received_bytes{0}, passed_packets{0}, passed_bytes{0},
      loss_dropped{0}, delayed{0}, duplicated{0}, reordered{0}, held{0};
};

void Inc(std::atomic<uint64_t>& a, uint64_t v = 1) { a.fetch_add(v, std::memory_order_relaxed); }

// A packet waiting for its verdict, in kernel id order.
struct Pending {
  uint32_t id;
  uint32_t len;
  uint8_t state;  // 0 = held, 1 = verdict sent individually, 2 = released this round
};

// Where a queue's duplicates are sent (QueueOptions): raw IP sockets of the receiver's
// namespace, or an AF_PACKET socket on a bridge port toward the receiver.
struct Injector {
  UniqueFd raw4, raw6;
  UniqueFd packet;
  int ifindex = 0;
  std::array<uint8_t, 6> dst_mac{};
  bool valid() const { return raw4.valid() || packet.valid(); }
};

struct Queue {
  uint64_t id = 0;
  uint16_t num = 0;
  UniqueFd fd;
  DelayLineSpec spec;
  std::unique_ptr<ImpairmentModel> model;
  std::shared_ptr<CounterBlock> counters;
  // Every packet handed to us and not yet answered, oldest first. A ring that grows by
  // doubling (PushPending) and never shrinks: no allocation per packet once it has
  // reached the queue's working size (a std::deque allocates and frees a block every
  // few dozen packets).
  boost::circular_buffer<Pending> pending{64};
  std::vector<uint32_t> release;  // ids to accept this round
  Injector inject;  // where duplicates go
  bool removed = false;
  bool in_dirty = false;
  // Lazy reading (ReadSlack): how long a packet may wait in the kernel's queue before
  // the worker reads it; when the next read is due (INT64_MAX = none scheduled); whether
  // every packet of the last read carried the kernel's receive time (lazy reading needs
  // it: the delay counts from that time).
  int64_t read_slack_ns = 0;
  int64_t read_at = INT64_MAX;
  bool stamped = true;
};

// How long a queue's packets may wait in the kernel before the worker reads them: a
// quarter of the shortest delay any of them gets (at most 500 us), when every packet is
// delayed by the same amount (no jitter, no reordering: those decide per packet when to
// send one at once). A packet's delay counts from its kernel receive time, so reading it
// later does not change when it is released; it lets one wake-up read many packets
// instead of one, which is what a worker's CPU per packet is made of (syscalls and
// wake-ups: 97 % of it is kernel time).
int64_t ReadSlack(const DelayLineSpec& spec) {
  const ImpairmentSpec& i = spec.impairment;
  if (i.jitter.count() != 0 || i.reorder != 0 || i.gap != 0) return 0;
  return std::min<int64_t>(i.latency.count() / 4, 500000);
}

struct HeapEntry {
  int64_t t;
  uint64_t seq;
  uint64_t qid;
  uint32_t id;
  uint32_t len;
  uint32_t dup;  // a duplicate to inject: its buffer's index in Worker::dups_ + 1; 0 = none
  bool operator>(const HeapEntry& o) const { return t != o.t ? t > o.t : seq > o.seq; }
};

constexpr size_t kOutBuf = 64 * 1024;
constexpr size_t kVerdictMsgMax = 64;  // bytes one verdict message takes at most

int64_t RealNs() {
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

class Worker {
 public:
  Worker(int index, int cpu, int recv_batch, int64_t spin_ns, int rt_priority,
         bool kernel_timestamps)
      : index_(index),
        cpu_(cpu),
        batch_(recv_batch),
        spin_ns_(spin_ns),
        rt_(rt_priority),
        kernel_timestamps_(kernel_timestamps) {}

  Status Start() {
    epfd_.reset(epoll_create1(EPOLL_CLOEXEC));
    eventfd_.reset(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    if (!epfd_.valid() || !eventfd_.valid()) {
      return ErrnoStatus(errno, "delay line worker setup");
    }
    for (int fd : {eventfd_.get()}) {
      epoll_event ev{};
      ev.events = EPOLLIN;
      ev.data.u64 = static_cast<uint64_t>(fd) | (1ull << 63);
      epoll_ctl(epfd_.get(), EPOLL_CTL_ADD, fd, &ev);
    }
    small_.assign(static_cast<size_t>(batch_) * kSmallSlot, 0);
    out_.assign(kOutBuf, 0);
    big_.assign(kBigBatch * kBigSlot, 0);
    thread_ = std::thread([this] { Run(); });
    return Status::Ok();
  }

  void Stop() {
    Post([this] { stop_ = true; });
    if (thread_.joinable()) thread_.join();
  }

  // Runs `fn` on the worker thread and waits for it.
  void Call(std::function<void()> fn) {
    std::promise<void> done;
    auto fut = done.get_future();
    Post([&] {
      fn();
      done.set_value();
    });
    fut.wait();
  }

  void Post(std::function<void()> fn) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      cmds_.push_back(std::move(fn));
    }
    uint64_t one = 1;
    (void)!write(eventfd_.get(), &one, sizeof one);
  }

  std::atomic<int> load{0};
  pthread_t native() { return thread_.native_handle(); }

  // --- on the worker thread ---

  void AddQueue(std::unique_ptr<Queue> q) {
    // One-shot: after each event the queue is read (now, or once its read slack has
    // passed) and then re-armed (Rearm).
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLONESHOT;
    ev.data.u64 = q->id;
    epoll_ctl(epfd_.get(), EPOLL_CTL_ADD, q->fd.get(), &ev);
    q->read_slack_ns = kernel_timestamps_ ? ReadSlack(q->spec) : 0;
    queues_[q->id] = std::move(q);
    UpdateCoalesce();
  }

  void Rearm(Queue& q) {
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLONESHOT;
    ev.data.u64 = q.id;
    epoll_ctl(epfd_.get(), EPOLL_CTL_MOD, q.fd.get(), &ev);
  }

  // Reads `q` now, or schedules the read `read_slack_ns` from now.
  void OnReadable(Queue& q, int64_t now) {
    if (q.read_slack_ns > 0 && q.stamped) {
      if (q.read_at == INT64_MAX) {
        q.read_at = now + q.read_slack_ns;
        lazy_.push_back(&q);
      }
      return;
    }
    if (ReadQueue(q)) {
      Rearm(q);
    } else {
      Behind(q, NowNs());
    }
  }

  // A queue that had more than a wake-up reads: the worker is behind (saturated). Read it
  // again at the next turn of the loop, without waiting for its slack or an event.
  void Behind(Queue& q, int64_t now) {
    if (q.read_at == INT64_MAX) lazy_.push_back(&q);
    q.read_at = now;
  }

  // Reads the queues whose scheduled read is due (each once: one that is still behind
  // is read again at the next turn of the loop, after the releases).
  void ReadDue(int64_t now) {
    due_.clear();
    for (size_t i = 0; i < lazy_.size();) {
      Queue* q = lazy_[i];
      if (q->read_at > now) {
        ++i;
        continue;
      }
      q->read_at = INT64_MAX;
      lazy_[i] = lazy_.back();
      lazy_.pop_back();
      due_.push_back(q);
    }
    for (Queue* q : due_) {
      if (ReadQueue(*q)) {
        Rearm(*q);
      } else {
        Behind(*q, now);
      }
    }
  }

  void UpdateQueue(uint64_t id, const DelayLineSpec& spec, Injector inject) {
    auto it = queues_.find(id);
    if (it == queues_.end()) return;
    Queue& q = *it->second;
    if (spec.copy_range_bytes != q.spec.copy_range_bytes ||
        spec.max_pending_packets != q.spec.max_pending_packets) {
      alignas(nlmsghdr) char buf[256];
      nlmsghdr* nlh = nfq_nlmsg_put(buf, NFQNL_MSG_CONFIG, q.num);
      nfq_nlmsg_cfg_put_params(nlh, NFQNL_COPY_PACKET, static_cast<int>(spec.copy_range_bytes));
      nfq_nlmsg_cfg_put_qmaxlen(nlh, spec.max_pending_packets);
      (void)!send(q.fd.get(), nlh, nlh->nlmsg_len, 0);
    }
    q.spec = spec;
    q.model->Update(spec.impairment);
    q.read_slack_ns = kernel_timestamps_ ? ReadSlack(spec) : 0;
    if (inject.valid()) q.inject = std::move(inject);
    UpdateCoalesce();
  }

  void RemoveQueue(uint64_t id) {
    auto it = queues_.find(id);
    if (it == queues_.end()) return;
    Queue& q = *it->second;
    // Release everything still held: one batch verdict up to the newest pending id.
    Flush(q);
    uint32_t held = 0;
    for (const Pending& p : q.pending) held += p.state == 0;
    if (!q.pending.empty()) {
      AppendVerdict(q, NFQNL_MSG_VERDICT_BATCH, q.pending.back().id, NF_ACCEPT);
      for (const Pending& p : q.pending) {
        if (p.state == 0) {
          Inc(q.counters->passed_packets);
          Inc(q.counters->passed_bytes, p.len);
        }
      }
      SendOut(q);
    }
    q.counters->held.fetch_sub(held, std::memory_order_relaxed);
    q.pending.clear();
    q.removed = true;
    epoll_ctl(epfd_.get(), EPOLL_CTL_DEL, q.fd.get(), nullptr);
    // Unbind explicitly (closing the socket would too).
    alignas(nlmsghdr) char buf[256];
    nlmsghdr* nlh = nfq_nlmsg_put(buf, NFQNL_MSG_CONFIG, q.num);
    nfq_nlmsg_cfg_put_cmd(nlh, AF_INET, NFQNL_CFG_CMD_UNBIND);
    (void)!send(q.fd.get(), nlh, nlh->nlmsg_len, 0);
    // Its heap entries are skipped when they come due (looked up by id).
    if (q.in_dirty) dirty_.erase(std::find(dirty_.begin(), dirty_.end(), &q));
    if (q.read_at != INT64_MAX) lazy_.erase(std::find(lazy_.begin(), lazy_.end(), &q));
    if (out_owner_ == &q) {
      SendOut(q);
      out_owner_ = nullptr;
    }
    queues_.erase(it);
    UpdateCoalesce();
  }

 private:
  static constexpr size_t kSmallSlot = 1024;
  static constexpr size_t kBigSlot = 66 * 1024;
  static constexpr size_t kBigBatch = 4;

  void Run() {
    pthread_setname_np(pthread_self(), ("gridemu-dl" + std::to_string(index_)).c_str());
    prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);
    if (cpu_ >= 0) {
      cpu_set_t set;
      CPU_ZERO(&set);
      CPU_SET(cpu_, &set);
      pthread_setaffinity_np(pthread_self(), sizeof set, &set);
    }
    if (rt_ > 0) {
      sched_param sp{};
      sp.sched_priority = std::min(rt_, 99);
      pthread_setschedparam(pthread_self(), SCHED_FIFO, &sp);  // best effort
    }
    std::vector<epoll_event> events(64);
    while (!stop_) {
      // The wait ends at wake_at_ (Arm): epoll_pwait2's nanosecond timeout, with the
      // thread's 1 ns timer slack (no timerfd to re-arm: a syscall per wake-up less).
      int64_t left = wake_at_ == INT64_MAX ? -1 : std::max<int64_t>(0, wake_at_ - NowNs());
      timespec ts{static_cast<time_t>(left / 1000000000), static_cast<long>(left % 1000000000)};
      int n = epoll_pwait2(epfd_.get(), events.data(), static_cast<int>(events.size()),
                           left < 0 ? nullptr : &ts, nullptr);
      if (n < 0) {
        if (errno == EINTR) continue;
        break;
      }
      const bool timer_fired = wake_at_ != INT64_MAX && NowNs() >= wake_at_;
      for (int i = 0; i < n; ++i) {
        uint64_t tag = events[i].data.u64;
        if (tag & (1ull << 63)) {
          int fd = static_cast<int>(tag & 0xffffffff);
          uint64_t v;
          (void)!read(fd, &v, sizeof v);
          if (fd == eventfd_.get()) RunCommands();
          continue;
        }
        auto it = queues_.find(tag);
        if (it != queues_.end()) OnReadable(*it->second, NowNs());
      }
      int64_t now = NowNs();
      ReadDue(now);
      if (timer_fired && !Dense() && !heap_.empty() && heap_.top().t > now &&
          heap_.top().t - now <= spin_ns_) {
        // Woken early on purpose by the timer (Arm): spin to the release time. (Woken by
        // packets, the worker does not spin: under load releases happen at the next
        // wake-up, a few microseconds late at most, instead of burning the core.)
        const int64_t due = heap_.top().t;
        while ((now = NowNs()) < due) {
          __builtin_ia32_pause();
        }
      }
      ReleaseDue(now);
      FlushDirty();
      Arm();
    }
    // Stopping: release what is held (the engine removes queues before stopping).
    for (auto& [id, q] : queues_) RemoveQueueNoErase(*q);
  }

  void RemoveQueueNoErase(Queue& q) {
    if (!q.pending.empty()) {
      AppendVerdict(q, NFQNL_MSG_VERDICT_BATCH, q.pending.back().id, NF_ACCEPT);
      SendOut(q);
    }
  }

  void RunCommands() {
    std::vector<std::function<void()>> cmds;
    {
      std::lock_guard<std::mutex> lock(mu_);
      cmds.swap(cmds_);
    }
    for (auto& c : cmds) c();
  }

  void MarkDirty(Queue& q) {
    if (!q.in_dirty) {
      q.in_dirty = true;
      dirty_.push_back(&q);
    }
  }

  // Verdict messages go to one buffer of the worker (not one per queue: 64 KiB each for
  // 100,000 directions would be 6 GiB), which holds one queue's messages at a time: a
  // verdict for another queue sends the buffer's first.
  void AppendVerdict(Queue& q, int type, uint32_t id, int verdict) {
    if (out_owner_ != &q) {
      if (out_owner_ != nullptr) SendOut(*out_owner_);
      out_owner_ = &q;
    }
    if (out_len_ + kVerdictMsgMax > out_.size()) SendOut(q);
    nlmsghdr* nlh = nfq_nlmsg_put(out_.data() + out_len_, type, q.num);
    nfq_nlmsg_verdict_put(nlh, static_cast<int>(id), verdict);
    out_len_ += NLMSG_ALIGN(nlh->nlmsg_len);
  }

  void SendOut(Queue& q) {
    if (out_owner_ != &q || out_len_ == 0) return;
    size_t off = 0;
    while (off < out_len_) {
      ssize_t w = send(q.fd.get(), out_.data() + off, out_len_ - off, 0);
      if (w < 0) {
        if (errno == EINTR) continue;
        break;  // the kernel rejected the batch; packets stay queued until removal
      }
      off += static_cast<size_t>(w);
    }
    out_len_ = 0;
  }

  Pending* FindPending(Queue& q, uint32_t id) {
    if (q.pending.empty()) return nullptr;
    uint32_t idx = id - q.pending.front().id;
    if (idx < q.pending.size() && q.pending[idx].id == id) return &q.pending[idx];
    for (Pending& p : q.pending) {
      if (p.id == id) return &p;
    }
    return nullptr;
  }

  void HandlePacket(Queue& q, const nlmsghdr* nlh, size_t avail, int64_t now) {
    // Walk the attributes within what was received (a message can be truncated).
    const char* base = reinterpret_cast<const char*>(nlh);
    size_t end = std::min<size_t>(nlh->nlmsg_len, avail);
    size_t off = NLMSG_HDRLEN + NLMSG_ALIGN(sizeof(nfgenmsg));
    bool have_id = false;
    uint32_t id = 0, cap_len = 0, payload_len = 0;
    int64_t stamp_real = 0;
    const uint8_t* payload = nullptr;
    const uint8_t* src_mac = nullptr;
    while (off + sizeof(nlattr) <= end) {
      const auto* a = reinterpret_cast<const nlattr*>(base + off);
      if (a->nla_len < sizeof(nlattr)) break;
      const size_t alen = a->nla_len - sizeof(nlattr);
      const char* data = base + off + sizeof(nlattr);
      const bool whole = off + a->nla_len <= end;
      switch (a->nla_type & NLA_TYPE_MASK) {
        case NFQA_PACKET_HDR:
          if (whole && alen >= sizeof(nfqnl_msg_packet_hdr)) {
            id = ntohl(reinterpret_cast<const nfqnl_msg_packet_hdr*>(data)->packet_id);
            have_id = true;
          }
          break;
        case NFQA_CAP_LEN:
          if (whole && alen >= 4) {
            uint32_t v;
            std::memcpy(&v, data, 4);
            cap_len = ntohl(v);
          }
          break;
        case NFQA_TIMESTAMP:
          if (whole && alen >= sizeof(nfqnl_msg_packet_timestamp)) {
            nfqnl_msg_packet_timestamp ts;
            std::memcpy(&ts, data, sizeof ts);
            stamp_real = static_cast<int64_t>(be64toh(ts.sec)) * 1000000000 +
                         static_cast<int64_t>(be64toh(ts.usec)) * 1000;
          }
          break;
        case NFQA_HWADDR:
          if (whole && alen >= sizeof(nfqnl_msg_packet_hw)) {
            const auto* hw = reinterpret_cast<const nfqnl_msg_packet_hw*>(data);
            if (ntohs(hw->hw_addrlen) == 6) src_mac = hw->hw_addr;
          }
          break;
        case NFQA_PAYLOAD:
          payload_len = static_cast<uint32_t>(alen);
          if (whole) payload = reinterpret_cast<const uint8_t*>(data);
          break;
        default:
          break;
      }
      off += NLA_ALIGN(a->nla_len);
    }
    if (!have_id) return;
    const uint32_t len = cap_len ? cap_len : payload_len;
    bool stamped = false;
    if (stamp_real > 0) {
      // The kernel's receive time, moved to CLOCK_MONOTONIC; ignored if implausible.
      int64_t age = real_now_ - stamp_real;
      if (age > 0 && age < 1000000000) {
        now -= age;
        stamped = true;
      }
    }
    // A packet without its receive time counts from now: read this queue at once from now
    // on (OnReadable), or its packets would be late by the read slack.
    if (!stamped) q.stamped = false;
    CounterBlock& c = *q.counters;
    Inc(c.received_packets);
    Inc(c.received_bytes, len);
    if (q.pending.full()) q.pending.set_capacity(q.pending.capacity() * 2);
    q.pending.push_back({id, len, 0});
    MarkDirty(q);
    PacketDecision d = q.model->Next();
    if (d.drop) {
      Inc(c.loss_dropped);
      AppendVerdict(q, NFQNL_MSG_VERDICT, id, NF_DROP);
      q.pending.back().state = 1;
    } else if (d.reorder || d.delay.count() == 0) {
      if (d.reorder) Inc(c.reordered);
      q.release.push_back(id);
      Inc(c.passed_packets);
      Inc(c.passed_bytes, len);
    } else {
      Inc(c.delayed);
      Inc(c.held);
      heap_.push({now + d.delay.count(), seq_++, q.id, id, len, 0});
    }
    if (d.duplicate && payload && cap_len == 0 && payload_len >= 20) {
      PacketDecision d2 = q.model->NextForDuplicate();
      if (!d2.drop) {
        // A buffer of the pool (reused with its capacity: no allocation per duplicate
        // once the pool has the working set's size).
        uint32_t slot;
        if (!free_dups_.empty()) {
          slot = free_dups_.back();
          free_dups_.pop_back();
        } else {
          slot = static_cast<uint32_t>(dups_.size());
          dups_.emplace_back();
          free_dups_.reserve(dups_.size());
        }
        std::vector<uint8_t>* copy = &dups_[slot];
        copy->clear();
        if (q.inject.packet.valid()) {
          // An Ethernet header: to the receiver (or broadcast), from the original sender.
          copy->reserve(14 + payload_len);
          copy->insert(copy->end(), q.inject.dst_mac.begin(), q.inject.dst_mac.end());
          if (src_mac != nullptr) {
            copy->insert(copy->end(), src_mac, src_mac + 6);
          } else {
            copy->insert(copy->end(), 6, 0);
          }
          const uint16_t type = (payload[0] >> 4) == 6 ? 0x86dd : 0x0800;
          copy->push_back(static_cast<uint8_t>(type >> 8));
          copy->push_back(static_cast<uint8_t>(type & 0xff));
        }
        copy->insert(copy->end(), payload, payload + payload_len);
        int64_t t = d2.reorder ? now : now + d2.delay.count();
        heap_.push({t, seq_++, q.id, 0, payload_len, slot + 1});
      }
    }
  }

  // Reads what the queue holds, up to 8 batches; returns false when it may hold more.
  bool ReadQueue(Queue& q) {
    const bool big = q.spec.copy_range_bytes > kSmallSlot - 256;
    const size_t slot = big ? kBigSlot : kSmallSlot;
    const size_t nslots = big ? kBigBatch : static_cast<size_t>(batch_);
    char* arena = big ? big_.data() : small_.data();
    std::vector<mmsghdr>& msgs = msgs_;
    std::vector<iovec>& iovs = iovs_;
    msgs.resize(nslots);
    iovs.resize(nslots);
    for (int round = 0; round < 8; ++round) {
      for (size_t i = 0; i < nslots; ++i) {
        iovs[i] = {arena + i * slot, slot};
        std::memset(&msgs[i], 0, sizeof msgs[i]);
        msgs[i].msg_hdr.msg_iov = &iovs[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
      }
      int n =
          recvmmsg(q.fd.get(), msgs.data(), static_cast<unsigned>(nslots), MSG_DONTWAIT, nullptr);
      if (n <= 0) return true;
      const int64_t now = NowNs();
      real_now_ = RealNs();
      for (int i = 0; i < n; ++i) {
        size_t got = std::min<size_t>(msgs[i].msg_len, slot);
        int len = static_cast<int>(got);
        for (auto* h = reinterpret_cast<nlmsghdr*>(arena + i * slot);
             len >= static_cast<int>(NLMSG_HDRLEN) && h->nlmsg_len >= NLMSG_HDRLEN;) {
          if ((h->nlmsg_type & 0xff) == NFQNL_MSG_PACKET &&
              (h->nlmsg_type >> 8) == NFNL_SUBSYS_QUEUE) {
            HandlePacket(q, h, static_cast<size_t>(len), now);
          }
          if (static_cast<int>(NLMSG_ALIGN(h->nlmsg_len)) >= len) break;
          len -= NLMSG_ALIGN(h->nlmsg_len);
          h = reinterpret_cast<nlmsghdr*>(reinterpret_cast<char*>(h) + NLMSG_ALIGN(h->nlmsg_len));
        }
      }
      if (static_cast<size_t>(n) < nslots) return true;
    }
    return false;
  }

  void Inject(Queue& q, const std::vector<uint8_t>& pkt) {
    if (q.inject.packet.valid()) {
      if (pkt.size() < 14 + 20) return;
      sockaddr_ll to{};
      to.sll_family = AF_PACKET;
      to.sll_ifindex = q.inject.ifindex;
      to.sll_halen = 6;
      std::memcpy(to.sll_addr, pkt.data(), 6);
      if (sendto(q.inject.packet.get(), pkt.data(), pkt.size(), 0,
                 reinterpret_cast<sockaddr*>(&to), sizeof to) < 0) {
        return;
      }
    } else {
      const uint8_t version = pkt[0] >> 4;
      if (version == 4 && pkt.size() >= sizeof(ip)) {
        if (!q.inject.raw4.valid()) return;
        sockaddr_in dst{};
        dst.sin_family = AF_INET;
        std::memcpy(&dst.sin_addr, pkt.data() + offsetof(ip, ip_dst), 4);
        (void)!sendto(q.inject.raw4.get(), pkt.data(), pkt.size(), 0,
                      reinterpret_cast<sockaddr*>(&dst), sizeof dst);
      } else if (version == 6 && pkt.size() >= sizeof(ip6_hdr)) {
        if (!q.inject.raw6.valid()) return;
        sockaddr_in6 dst{};
        dst.sin6_family = AF_INET6;
        std::memcpy(&dst.sin6_addr, pkt.data() + offsetof(ip6_hdr, ip6_dst), 16);
        (void)!sendto(q.inject.raw6.get(), pkt.data(), pkt.size(), 0,
                      reinterpret_cast<sockaddr*>(&dst), sizeof dst);
      } else {
        return;
      }
    }
    Inc(q.counters->duplicated);
    Inc(q.counters->passed_packets);
    Inc(q.counters->passed_bytes, pkt.size() - (q.inject.packet.valid() ? 14 : 0));
  }

  // Release rounds. Sparse releases (a ping, a slow flow) are exact: the timer wakes the
  // worker spin_ns_ early and it spins to the release time. Dense ones (more than two
  // per coalescing window in the last millisecond) are released in rounds: the timer
  // wakes the worker coalesce_ns_ after the first release time of a round and every
  // packet due by then goes in one verdict message. A dense packet is late by at most
  // coalesce_ns_ (a twentieth of the shortest delay of the worker's queues, at most
  // 100 us; DESIGN.md §11 allows max(0.2 ms, 2 %)) plus the timer's wake-up latency, and
  // the worker neither spins nor wakes per packet: at 100,000 packets/s one wake-up
  // releases about ten instead of one.
  bool Dense() const { return coalesce_ns_ > 0 && released_last_ms_ * coalesce_ns_ > 2000000; }

  void CountRelease(int64_t now) {
    if (now - window_start_ >= 1000000) {
      released_last_ms_ = now - window_start_ < 2000000 ? released_this_ms_ : 0;
      released_this_ms_ = 0;
      window_start_ = now;
    }
    ++released_this_ms_;
  }

  // The coalescing window of the worker's queues (see Dense).
  void UpdateCoalesce() {
    int64_t c = INT64_MAX;
    for (const auto& [id, q] : queues_) {
      c = std::min<int64_t>(c, std::min<int64_t>(q->spec.impairment.latency.count() / 20,
                                                 100000));
    }
    coalesce_ns_ = c == INT64_MAX ? 0 : c;
  }

  void ReleaseDue(int64_t now) {
    while (!heap_.empty() && heap_.top().t <= now) {
      CountRelease(now);
      HeapEntry e = heap_.top();
      heap_.pop();
      auto it = queues_.find(e.qid);
      if (e.dup != 0) free_dups_.push_back(e.dup - 1);  // its contents stay valid until reused
      if (it == queues_.end()) continue;  // removed meanwhile
      Queue& q = *it->second;
      if (e.dup != 0) {
        Inject(q, dups_[e.dup - 1]);
        continue;
      }
      q.release.push_back(e.id);
      q.counters->held.fetch_sub(1, std::memory_order_relaxed);
      Inc(q.counters->passed_packets);
      Inc(q.counters->passed_bytes, e.len);
      MarkDirty(q);
    }
  }

  // Sends this round's verdicts of `q`: a single batch verdict when the released packets
  // are exactly the oldest pending ones, else one verdict per packet.
  void Flush(Queue& q) {
    if (!q.release.empty()) {
      for (uint32_t id : q.release) {
        if (Pending* p = FindPending(q, id)) p->state = 2;
      }
      size_t popped_released = 0;
      uint32_t last_id = 0;
      while (!q.pending.empty() && q.pending.front().state != 0) {
        if (q.pending.front().state == 2) {
          ++popped_released;
          last_id = q.pending.front().id;
        }
        q.pending.pop_front();
      }
      if (popped_released == q.release.size()) {
        AppendVerdict(q, NFQNL_MSG_VERDICT_BATCH, last_id, NF_ACCEPT);
      } else {
        for (uint32_t id : q.release) AppendVerdict(q, NFQNL_MSG_VERDICT, id, NF_ACCEPT);
        for (Pending& p : q.pending) {
          if (p.state == 2) p.state = 1;
        }
      }
      q.release.clear();
    } else {
      while (!q.pending.empty() && q.pending.front().state != 0) q.pending.pop_front();
    }
    SendOut(q);
  }

  void FlushDirty() {
    for (Queue* q : dirty_) {
      q->in_dirty = false;
      if (!q->removed) Flush(*q);
    }
    dirty_.clear();
  }

  // When the next wait ends: spin_ns_ before the next release (coalesce_ns_ after it when
  // releases are dense), or at the next scheduled read.
  void Arm() {
    int64_t next = heap_.empty()  ? INT64_MAX
                   : Dense()      ? heap_.top().t + coalesce_ns_
                                  : heap_.top().t - spin_ns_;
    for (const Queue* q : lazy_) next = std::min(next, q->read_at);
    wake_at_ = next;
  }

  int index_;
  int cpu_;
  int batch_;
  int64_t spin_ns_;
  int rt_;
  bool kernel_timestamps_;
  int64_t real_now_ = 0;
  std::thread thread_;
  UniqueFd epfd_, eventfd_;
  std::mutex mu_;
  std::vector<std::function<void()>> cmds_;
  bool stop_ = false;
  std::unordered_map<uint64_t, std::unique_ptr<Queue>> queues_;
  std::priority_queue<HeapEntry, std::vector<HeapEntry>, std::greater<HeapEntry>> heap_;
  // Buffers of duplicates waiting in heap_ (HeapEntry::dup), and those free for reuse.
  std::deque<std::vector<uint8_t>> dups_;
  std::vector<uint32_t> free_dups_;
  uint64_t seq_ = 0;
  int64_t wake_at_ = INT64_MAX;  // Arm: CLOCK_MONOTONIC ns
  std::vector<Queue*> dirty_;
  std::vector<char> out_;  // verdict messages of out_owner_ (AppendVerdict)
  size_t out_len_ = 0;
  Queue* out_owner_ = nullptr;
  std::vector<Queue*> lazy_;  // queues with a scheduled read (Queue::read_at)
  std::vector<Queue*> due_;   // ReadDue's list (kept: no allocation per turn)
  int64_t coalesce_ns_ = 0;   // UpdateCoalesce
  int64_t window_start_ = 0;  // CountRelease: releases in the current and the last ms
  int64_t released_this_ms_ = 0, released_last_ms_ = 0;
  std::vector<char> small_, big_;
  std::vector<mmsghdr> msgs_;
  std::vector<iovec> iovs_;
};

// What callers need about a queue, outside the worker.
struct QueueRef {
  std::string netns;
  NetnsId netns_id;
  uint16_t num = 0;
  int worker = 0;
  std::shared_ptr<CounterBlock> counters;
  DelayLineSpec spec;
  QueueOptions options;
};

// The sockets duplicates are sent with (QueueOptions), opened in the queue's namespace.
Result<Injector> OpenInjector(const std::string& netns, const QueueOptions& opts) {
  Injector inj;
  GRIDEMU_RETURN_IF_ERROR(RunInNetns(netns, [&]() -> Status {
    if (!opts.inject_ifname.empty()) {
      inj.ifindex = static_cast<int>(if_nametoindex(opts.inject_ifname.c_str()));
      if (inj.ifindex == 0) {
        return NotFoundError("interface " + opts.inject_ifname + " (for duplicates) in " + netns);
      }
      inj.packet.reset(socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, 0));
      if (!inj.packet.valid()) return ErrnoStatus(errno, "packet socket for duplicates");
      inj.dst_mac.fill(0xff);
      if (opts.dst_mac) inj.dst_mac = *opts.dst_mac;
      return Status::Ok();
    }
    inj.raw4.reset(socket(AF_INET, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_RAW));
    if (!inj.raw4.valid()) return ErrnoStatus(errno, "raw IPv4 socket for duplicates");
    inj.raw6.reset(socket(AF_INET6, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_RAW));
    // IPv6 may be disabled in the namespace: duplicates are then IPv4 only.
    return Status::Ok();
  }));
  return inj;
}

class DelayLineImpl : public DelayLine {
 public:
  explicit DelayLineImpl(const DelayLineOptions& o) : opts_(o) {}

  ~DelayLineImpl() override {
    std::vector<uint64_t> ids;
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (auto& [id, ref] : refs_) ids.push_back(id);
    }
    for (uint64_t id : ids) (void)RemoveQueue(id);
    for (auto& w : workers_) w->Stop();
  }

  Status Init() {
    // One socket per queue: make room for thousands of them.
    rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
      rl.rlim_cur = rl.rlim_max;
      setrlimit(RLIMIT_NOFILE, &rl);
    }
    std::vector<int> cpus;
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof set, &set) == 0) {
      for (int c = 0; c < CPU_SETSIZE; ++c) {
        if (CPU_ISSET(c, &set)) cpus.push_back(c);
      }
    }
    if (opts_.kernel_timestamps) {
      // Any socket with SO_TIMESTAMP turns on receive timestamps for every packet
      // (net_enable_timestamp); the queue messages then carry NFQA_TIMESTAMP.
      stamp_sock_.reset(socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
      int one = 1;
      if (stamp_sock_.valid()) {
        setsockopt(stamp_sock_.get(), SOL_SOCKET, SO_TIMESTAMP, &one, sizeof one);
      }
    }
    int n = opts_.workers > 0 ? opts_.workers : std::max<int>(1, static_cast<int>(cpus.size()));
    for (int i = 0; i < n; ++i) {
      int cpu = (opts_.pin_workers && !cpus.empty()) ? cpus[i % cpus.size()] : -1;
      auto w = std::make_unique<Worker>(i, cpu, std::max(1, opts_.recv_batch),
                                        std::max(0, opts_.spin_us) * int64_t{1000},
                                        opts_.realtime_priority, opts_.kernel_timestamps);
      GRIDEMU_RETURN_IF_ERROR(w->Start());
      workers_.push_back(std::move(w));
    }
    return Status::Ok();
  }

  Result<QueueInfo> AddQueue(const std::string& netns, const DelayLineSpec& spec,
                             const QueueOptions& options) override {
    GRIDEMU_ASSIGN_OR_RETURN(NetnsId nsid, GetNetnsId(netns));
    UniqueFd fd;
    uint16_t num = 0;
    Status last = UnavailableError("no free NFQUEUE number");
    {
      // Numbers are allocated under the lock so that two callers never try the same one.
      std::lock_guard<std::mutex> lock(alloc_mu_);
      std::set<uint16_t>& used = used_[nsid];
      uint32_t candidate = opts_.first_queue_num;
      int tries = 0;
      while (candidate <= 0xffff && tries < 4096) {
        if (used.count(static_cast<uint16_t>(candidate))) {
          ++candidate;
          continue;
        }
        ++tries;
        Result<UniqueFd> r = UnavailableError("");
        Status st = RunInNetns(netns, [&]() -> Status {
          r = BindNfQueue(static_cast<uint16_t>(candidate), spec.copy_range_bytes,
                          spec.max_pending_packets);
          return r.status();
        });
        if (st.ok()) {
          fd = std::move(r).value();
          num = static_cast<uint16_t>(candidate);
          used.insert(num);
          break;
        }
        last = st;
        // Taken by someone else (EBUSY/EEXIST): try the next number; anything else is fatal.
        if (st.code() != StatusCode::kUnavailable && st.code() != StatusCode::kAlreadyExists) {
          if (used.empty()) used_.erase(nsid);
          return st;
        }
        ++candidate;
      }
      if (!fd.valid()) {
        return UnavailableError("no free NFQUEUE number in " + netns + ": " + last.message());
      }
    }
    Injector inject;
    if (spec.impairment.duplicate) {
      auto inj = OpenInjector(netns, options);
      if (!inj.ok()) {
        ReleaseNumber(nsid, num);
        return inj.status();
      }
      inject = std::move(*inj);
    }
    auto q = std::make_unique<Queue>();
    q->num = num;
    q->fd = std::move(fd);
    q->spec = spec;
    q->model = std::make_unique<ImpairmentModel>(spec.impairment, spec.seed);
    q->counters = std::make_shared<CounterBlock>();
    q->inject = std::move(inject);
    QueueRef ref;
    ref.netns = netns;
    ref.netns_id = nsid;
    ref.num = num;
    ref.counters = q->counters;
    ref.spec = spec;
    ref.options = options;
    // Least-loaded worker.
    int best = 0;
    for (int i = 1; i < static_cast<int>(workers_.size()); ++i) {
      if (workers_[i]->load.load() < workers_[best]->load.load()) best = i;
    }
    ref.worker = best;
    uint64_t id;
    {
      std::lock_guard<std::mutex> lock(mu_);
      id = next_id_++;
      q->id = id;
      refs_[id] = ref;
    }
    workers_[best]->load.fetch_add(1);
    Worker* w = workers_[best].get();
    auto* raw = q.release();
    w->Call([w, raw] { w->AddQueue(std::unique_ptr<Queue>(raw)); });
    return QueueInfo{id, num, best};
  }

  Status UpdateQueue(uint64_t id, const DelayLineSpec& spec) override {
    QueueRef ref;
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = refs_.find(id);
      if (it == refs_.end()) return NotFoundError("delay line queue " + std::to_string(id));
      ref = it->second;
    }
    auto inject = std::make_shared<Injector>();
    if (spec.impairment.duplicate && !ref.spec.impairment.duplicate) {
      GRIDEMU_ASSIGN_OR_RETURN(*inject, OpenInjector(ref.netns, ref.options));
    }
    Worker* w = workers_[ref.worker].get();
    w->Call([w, id, spec, inject] { w->UpdateQueue(id, spec, std::move(*inject)); });
    std::lock_guard<std::mutex> lock(mu_);
    auto it = refs_.find(id);
    if (it != refs_.end()) it->second.spec = spec;
    return Status::Ok();
  }

  Status RemoveQueue(uint64_t id) override {
    QueueRef ref;
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = refs_.find(id);
      if (it == refs_.end()) return NotFoundError("delay line queue " + std::to_string(id));
      ref = it->second;
      refs_.erase(it);
    }
    Worker* w = workers_[ref.worker].get();
    w->Call([w, id] { w->RemoveQueue(id); });
    w->load.fetch_sub(1);
    ReleaseNumber(ref.netns_id, ref.num);
    return Status::Ok();
  }

  Result<DelayLineCounters> ReadCounters(uint64_t id, bool with_kernel_drops) override {
    QueueRef ref;
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = refs_.find(id);
      if (it == refs_.end()) return NotFoundError("delay line queue " + std::to_string(id));
      ref = it->second;
    }
    const CounterBlock& c = *ref.counters;
    auto ld = [](const std::atomic<uint64_t>& a) { return a.load(std::memory_order_relaxed); };
    DelayLineCounters out;
    out.received_packets = ld(c.received_packets);
    out.received_bytes = ld(c.received_bytes);
    out.passed_packets = ld(c.passed_packets);
    out.passed_bytes = ld(c.passed_bytes);
    out.loss_dropped_packets = ld(c.loss_dropped);
    out.delayed_packets = ld(c.delayed);
    out.duplicated_packets = ld(c.duplicated);
    out.reordered_packets = ld(c.reordered);
    out.held_packets = ld(c.held);
    if (with_kernel_drops) {
      // /proc/net/netfilter/nfnetlink_queue, read from inside the queue's namespace:
      // queue_num portid queue_total copy_mode copy_range queue_dropped user_dropped id_seq 1
      GRIDEMU_RETURN_IF_ERROR(RunInNetns(ref.netns, [&]() -> Status {
        std::ifstream f("/proc/thread-self/net/netfilter/nfnetlink_queue");
        std::string line;
        while (std::getline(f, line)) {
          std::istringstream ss(line);
          uint64_t num, portid, total, mode, range, dropped, user_dropped;
          if (ss >> num >> portid >> total >> mode >> range >> dropped >> user_dropped &&
              num == ref.num) {
            out.kernel_dropped_packets = dropped + user_dropped;
          }
        }
        return Status::Ok();
      }));
    }
    return out;
  }

  int workers() const override { return static_cast<int>(workers_.size()); }

  Result<std::chrono::nanoseconds> WorkerCpuTime(int index) override {
    if (index < 0 || index >= static_cast<int>(workers_.size())) {
      return OutOfRangeError("worker " + std::to_string(index));
    }
    clockid_t cid;
    if (int rc = pthread_getcpuclockid(workers_[index]->native(), &cid); rc != 0) {
      return ErrnoStatus(rc, "pthread_getcpuclockid");
    }
    timespec ts;
    if (clock_gettime(cid, &ts) != 0) return ErrnoStatus(errno, "clock_gettime");
    return std::chrono::nanoseconds(static_cast<int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec);
  }

 private:
  void ReleaseNumber(NetnsId nsid, uint16_t num) {
    std::lock_guard<std::mutex> lock(alloc_mu_);
    auto it = used_.find(nsid);
    if (it == used_.end()) return;
    it->second.erase(num);
    if (it->second.empty()) used_.erase(it);
  }

  DelayLineOptions opts_;
  UniqueFd stamp_sock_;
  std::vector<std::unique_ptr<Worker>> workers_;
  std::mutex mu_;
  std::map<uint64_t, QueueRef> refs_;
  uint64_t next_id_ = 1;
  std::mutex alloc_mu_;
  std::map<NetnsId, std::set<uint16_t>> used_;
};

}  // namespace

Result<std::unique_ptr<DelayLine>> DelayLine::Start(const DelayLineOptions& options) {
  auto impl = std::make_unique<DelayLineImpl>(options);
  GRIDEMU_RETURN_IF_ERROR(impl->Init());
  return std::unique_ptr<DelayLine>(std::move(impl));
}

}  // namespace gridemu::netshape

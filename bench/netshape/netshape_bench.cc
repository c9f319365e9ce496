// netshape benchmark helper (driven by bench/netshape/run, which assembles the JSON).
//
//   netshape_bench probe
//   netshape_bench fidelity   --backend userspace|netem [--quick]
//   netshape_bench saturation [--seconds 5] [--delay-us 1000] [--payload 64] [--senders 1]
//                             [--rt-priority 1]
//   netshape_bench scale      --backend userspace|netem [--links 1000] [--one-by-one 100]
//
// Each prints one JSON object on stdout. Needs root; every namespace is "gnsT<pid>-*" and
// is deleted at exit. DESIGN.md §11 targets: delay within max(0.2 ms, 2 %), TCP goodput
// within 3 % after header overhead, loss inside the 95 % binomial interval.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sched.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "gridemu/netshape/capabilities.h"
#include "gridemu/netshape/netns.h"
#include "gridemu/netshape/shaper.h"
#include "gridemu/netshape/testing/testbed.h"

namespace ns = gridemu::netshape;
using gridemu::LinkProfile;
using gridemu::Status;
using namespace std::chrono_literals;

namespace {

std::string Arg(int argc, char** argv, const std::string& name, const std::string& def) {
  for (int i = 1; i + 1 < argc; ++i) {
    if (argv[i] == name) return argv[i + 1];
  }
  return def;
}
bool Flag(int argc, char** argv, const std::string& name) {
  for (int i = 1; i < argc; ++i) {
    if (argv[i] == name) return true;
  }
  return false;
}

double Seconds(std::chrono::steady_clock::duration d) {
  return std::chrono::duration<double>(d).count();
}

std::string Num(double v, int prec = 4) {
  if (!std::isfinite(v)) return "null";
  char b[64];
  std::snprintf(b, sizeof b, "%.*f", prec, v);
  return b;
}

[[noreturn]] void Die(const std::string& what, const Status& s) {
  std::fprintf(stderr, "netshape_bench: %s: %s\n", what.c_str(), s.ToString().c_str());
  std::exit(1);
}

template <typename T>
T Must(gridemu::Result<T> r, const std::string& what) {
  if (!r.ok()) Die(what, r.status());
  return std::move(r).value();
}

std::unique_ptr<ns::Shaper> MakeShaper(ns::Backend b, const ns::Capabilities& caps, int workers = 0,
                                       int rt_priority = 1) {
  ns::ShaperOptions o;
  o.backend = b == ns::Backend::kNetem ? ns::BackendChoice::kNetem : ns::BackendChoice::kUserspace;
  o.capabilities = caps;
  o.ipv6 = caps.ip6tables;
  o.seed = 1;
  o.delay_line.workers = workers;
  o.delay_line.realtime_priority = rt_priority;
  return Must(ns::Shaper::Create(o), "creating the shaper");
}

struct Row {
  std::string metric, configured, unit, tolerance;
  double expected, measured;
  bool pass;
  std::string detail;
};

std::string RowsJson(const std::vector<Row>& rows) {
  std::string s = "[";
  for (size_t i = 0; i < rows.size(); ++i) {
    const Row& r = rows[i];
    if (i) s += ",";
    s += "\n    {\"metric\": \"" + r.metric + "\", \"configured\": \"" + r.configured +
         "\", \"expected\": " + Num(r.expected) + ", \"measured\": " + Num(r.measured) +
         ", \"unit\": \"" + r.unit + "\", \"tolerance\": \"" + r.tolerance +
         "\", \"pass\": " + (r.pass ? "true" : "false") +
         (r.detail.empty() ? "" : ", \"detail\": {" + r.detail + "}") + "}";
  }
  return s + "\n  ]";
}

// ---- fidelity ----

int Fidelity(const ns::Capabilities& caps, ns::Backend backend, bool quick) {
  auto bed = Must(ns::testing::VethTestbed::Create(), "test bed");
  auto shaper = MakeShaper(backend, caps);
  std::vector<Row> rows;
  std::unique_ptr<ns::ShapedLink> fwd, rev;
  auto shape = [&](const LinkProfile& f, const LinkProfile& r) {
    if (fwd) (void)fwd->Remove();
    if (rev) (void)rev->Remove();
    fwd.reset();
    rev.reset();
    if (!f.empty()) {
      fwd = Must(shaper->Shape({bed->a(), bed->b(), f, bed->prefix() + ":f",
                                ns::Direction::kForward, "bench"}),
                 "shape forward");
    }
    if (!r.empty()) {
      rev = Must(shaper->Shape({bed->b(), bed->a(), r, bed->prefix() + ":r",
                                ns::Direction::kReverse, "bench"}),
                 "shape reverse");
    }
  };
  // Delay: RTT with D each way.
  for (int d : {10, 50, 200}) {
    LinkProfile p;
    p.delay = std::chrono::milliseconds(d);
    shape(p, p);
    int count = d == 10 ? 300 : d == 50 ? 150 : 60;
    if (quick) count /= 3;
    auto st = Must(ns::testing::Ping(bed->ns_a(), bed->addr_b(), count, d == 200 ? 0.05 : 0.02, 3),
                   "ping");
    std::vector<double> v = st.rtt_ms;
    std::sort(v.begin(), v.end());
    const double want = 2.0 * d, tol = std::max(0.2, 0.02 * want);
    rows.push_back({"rtt_median", std::to_string(d) + "ms each way", "ms",
                    "max(0.2ms, 2%) = " + Num(tol, 2) + "ms", want, st.median_ms,
                    std::abs(st.median_ms - want) <= tol,
                    "\"mean\": " + Num(st.mean_ms) +
                        ", \"p99\": " + Num(v[std::min(v.size() - 1, v.size() * 99 / 100)]) +
                        ", \"max\": " + Num(st.max_ms) +
                        ", \"probes\": " + std::to_string(st.transmitted)});
  }
  // Jitter: RTT standard deviation (two independent directions).
  for (auto dist : {gridemu::DelayDistribution::kUniform, gridemu::DelayDistribution::kNormal}) {
    LinkProfile p;
    p.delay = 50ms;
    p.jitter = 10ms;
    p.delay_distribution = dist;
    shape(p, p);
    auto st =
        Must(ns::testing::Ping(bed->ns_a(), bed->addr_b(), quick ? 300 : 1000, 0.005, 3), "ping");
    const double want = dist == gridemu::DelayDistribution::kUniform ? 10 * std::sqrt(2.0 / 3)
                                                                     : 10 * std::sqrt(2.0);
    rows.push_back({"rtt_stddev",
                    "delay 50ms jitter 10ms " + std::string(gridemu::DelayDistributionName(dist)) +
                        " each way",
                    "ms", "20%", want, st.stddev_ms, std::abs(st.stddev_ms - want) <= 0.2 * want,
                    "\"rtt_mean\": " + Num(st.mean_ms)});
  }
  // Loss: one direction, 5,000 probes.
  for (double loss : {0.01, 0.10}) {
    LinkProfile p;
    p.loss = loss;
    shape(p, LinkProfile{});
    const int n = quick ? 2000 : 5000;
    auto st = Must(ns::testing::Ping(bed->ns_a(), bed->addr_b(), n, 0.001, 2), "ping");
    const double half = 1.96 * std::sqrt(loss * (1 - loss) / n);
    rows.push_back({"loss", Num(loss * 100, 0) + "% forward", "fraction",
                    "95% binomial interval [" + Num(loss - half) + ", " + Num(loss + half) + "]",
                    loss, st.loss(), std::abs(st.loss() - loss) <= half,
                    "\"probes\": " + std::to_string(st.transmitted) +
                        ", \"lost\": " + std::to_string(st.transmitted - st.received)});
  }
  // TCP goodput at the receiver; overhead model 1448/1514 (see root_test.cc).
  for (uint64_t rate : {1'000'000ull, 10'000'000ull, 100'000'000ull}) {
    LinkProfile p;
    p.rate_bps = rate;
    p.queue_packets = 100;
    shape(p, LinkProfile{});
    auto srv = Must(ns::testing::IperfServer::Start(bed->ns_a(), 5301), "iperf3 server");
    auto r = Must(ns::testing::RunIperf(bed->ns_b(), bed->addr_a(), 5301, quick ? 4 : 10, 2, "-R"),
                  "iperf3");
    const double want = rate * 1448.0 / 1514.0;
    rows.push_back({"tcp_goodput", std::to_string(rate / 1000000) + "mbit", "bit/s",
                    "3% after overhead (x 1448/1514)", want, r.receiver_bps,
                    std::abs(r.receiver_bps - want) <= 0.03 * want,
                    "\"retransmits\": " + std::to_string(r.retransmits)});
  }
  fwd.reset();
  rev.reset();
  int passed = 0;
  for (const Row& r : rows) passed += r.pass;
  std::printf(
      "{\n  \"backend\": \"%s\",\n  \"passed\": %d,\n  \"total\": %zu,\n  \"rows\": %s\n}\n",
      std::string(ns::BackendName(backend)).c_str(), passed, rows.size(), RowsJson(rows).c_str());
  return 0;
}

// ---- saturation: one queue, one worker ----

int Saturation(const ns::Capabilities& caps, double seconds, int delay_us, int payload, int senders,
               int rt_priority) {
  auto bed = Must(ns::testing::VethTestbed::Create(), "test bed");
  auto shaper = MakeShaper(ns::Backend::kUserspace, caps, /*workers=*/1, rt_priority);
  LinkProfile p;
  p.delay = std::chrono::microseconds(delay_us);
  auto link = Must(shaper->Shape({bed->a(), bed->b(), p, bed->prefix() + ":sat"}), "shape");
  ns::DelayLine* dl = shaper->delay_line();
  if (!dl) Die("saturation", gridemu::InternalError("no delay line"));
  // UDP flood from A to B's discard port (nothing listens: B answers with ICMP
  // port-unreachable, rate-limited by the kernel, which is fine).
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> sent{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < senders; ++t) {
    threads.emplace_back([&] {
      int fd = -1;
      Status st = ns::RunInNetns(bed->path_a(), [&]() -> Status {
        fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        return Status::Ok();
      });
      if (!st.ok() || fd < 0) return;
      sockaddr_in dst{};
      dst.sin_family = AF_INET;
      dst.sin_port = htons(9);
      inet_pton(AF_INET, bed->addr_b().c_str(), &dst.sin_addr);
      std::vector<char> buf(payload, 'x');
      constexpr int kBatch = 64;
      mmsghdr msgs[kBatch];
      iovec iov[kBatch];
      for (int i = 0; i < kBatch; ++i) {
        iov[i] = {buf.data(), buf.size()};
        std::memset(&msgs[i], 0, sizeof msgs[i]);
        msgs[i].msg_hdr.msg_name = &dst;
        msgs[i].msg_hdr.msg_namelen = sizeof dst;
        msgs[i].msg_hdr.msg_iov = &iov[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
      }
      while (!stop.load(std::memory_order_relaxed)) {
        int n = sendmmsg(fd, msgs, kBatch, 0);
        if (n > 0) sent.fetch_add(n, std::memory_order_relaxed);
      }
      close(fd);
    });
  }
  std::this_thread::sleep_for(1s);  // warm up
  auto c0 = Must(link->GetCounters(), "counters");
  auto cpu0 = Must(dl->WorkerCpuTime(0), "cpu");
  uint64_t sent0 = sent.load();
  auto t0 = std::chrono::steady_clock::now();
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
  auto c1 = Must(link->GetCounters(), "counters");
  auto cpu1 = Must(dl->WorkerCpuTime(0), "cpu");
  uint64_t sent1 = sent.load();
  double el = Seconds(std::chrono::steady_clock::now() - t0);
  stop = true;
  for (auto& t : threads) t.join();
  const double passed = double(c1.passed_packets - c0.passed_packets);
  const double cpu_s = std::chrono::duration<double>(cpu1 - cpu0).count();
  std::printf(
      "{\n  \"queues\": 1,\n  \"workers\": 1,\n  \"worker_realtime_priority\": %d,\n"
      "  \"delay_us\": %d,\n  \"udp_payload_bytes\": "
      "%d,\n  \"sender_threads\": %d,\n  \"seconds\": %s,\n  \"offered_pps\": %s,\n"
      "  \"passed_pps_per_queue\": %s,\n  \"kernel_dropped_pps\": %s,\n"
      "  \"worker_cpu_fraction\": %s,\n  \"worker_cpu_ms_per_100k_packets\": %s,\n"
      "  \"cpu_bound_pps_per_queue_estimate\": %s\n}\n",
      rt_priority, delay_us, payload, senders, Num(el, 2).c_str(),
      Num((sent1 - sent0) / el, 0).c_str(), Num(passed / el, 0).c_str(),
      Num((c1.overflow_dropped_packets - c0.overflow_dropped_packets) / el, 0).c_str(),
      Num(cpu_s / el, 3).c_str(), Num(passed > 0 ? cpu_s * 1e3 * 1e5 / passed : NAN, 2).c_str(),
      Num(cpu_s > 0 ? passed / cpu_s : NAN, 0).c_str());
  link.reset();
  return 0;
}

// ---- scale: apply/remove time for many links ----

int Scale(const ns::Capabilities& caps, ns::Backend backend, int links, int one_by_one) {
  auto t_bed = std::chrono::steady_clock::now();
  auto bed = Must(ns::testing::VethTestbed::Create(links), "test bed");
  const double bed_s = Seconds(std::chrono::steady_clock::now() - t_bed);
  auto shaper = MakeShaper(backend, caps);
  auto requests = [&](int n, const std::string& tag) {
    std::vector<ns::ShapeRequest> reqs;
    for (int i = 0; i < n; ++i) {
      LinkProfile f;
      f.rate_bps = 10'000'000;
      f.delay = 5ms;
      f.loss = 0.001;
      LinkProfile r = f;
      reqs.push_back({{bed->path_a(), bed->extra_if_a(i)},
                      {bed->path_b(), bed->extra_if_b(i)},
                      f,
                      bed->prefix() + ":" + tag + std::to_string(i) + ":f"});
      reqs.push_back({{bed->path_b(), bed->extra_if_b(i)},
                      {bed->path_a(), bed->extra_if_a(i)},
                      r,
                      bed->prefix() + ":" + tag + std::to_string(i) + ":r",
                      ns::Direction::kReverse});
    }
    return reqs;
  };
  // Batched: one ShapeMany for every link, both directions.
  auto reqs = requests(links, "b");
  auto t0 = std::chrono::steady_clock::now();
  auto shaped = Must(shaper->ShapeMany(reqs), "ShapeMany");
  const double apply_s = Seconds(std::chrono::steady_clock::now() - t0);
  t0 = std::chrono::steady_clock::now();
  Status rm = shaper->RemoveMany(shaped);
  const double remove_s = Seconds(std::chrono::steady_clock::now() - t0);
  if (!rm.ok()) Die("RemoveMany", rm);
  // One by one: Shape() per direction (one iptables-restore each), then Remove().
  double one_apply_s = 0, one_remove_s = 0;
  int n1 = std::min(one_by_one, links);
  if (n1 > 0) {
    auto r1 = requests(n1, "o");
    std::vector<std::unique_ptr<ns::ShapedLink>> l1;
    t0 = std::chrono::steady_clock::now();
    for (const auto& r : r1) l1.push_back(Must(shaper->Shape(r), "Shape"));
    one_apply_s = Seconds(std::chrono::steady_clock::now() - t0);
    t0 = std::chrono::steady_clock::now();
    for (auto& l : l1) {
      Status s = l->Remove();
      if (!s.ok()) Die("Remove", s);
    }
    one_remove_s = Seconds(std::chrono::steady_clock::now() - t0);
  }
  std::printf(
      "{\n  \"backend\": \"%s\",\n  \"links\": %d,\n  \"directions_per_link\": 2,\n"
      "  \"profile\": \"rate 10mbit delay 5ms loss 0.1%% each way\",\n"
      "  \"testbed_setup_s\": %s,\n"
      "  \"batched\": {\"apply_s\": %s, \"remove_s\": %s, \"apply_ms_per_link\": %s, "
      "\"remove_ms_per_link\": %s},\n"
      "  \"one_by_one\": {\"links\": %d, \"apply_ms_per_link\": %s, \"remove_ms_per_link\": %s}\n"
      "}\n",
      std::string(ns::BackendName(backend)).c_str(), links, Num(bed_s, 2).c_str(),
      Num(apply_s, 3).c_str(), Num(remove_s, 3).c_str(), Num(apply_s * 1e3 / links, 3).c_str(),
      Num(remove_s * 1e3 / links, 3).c_str(), n1, Num(n1 ? one_apply_s * 1e3 / n1 : NAN, 3).c_str(),
      Num(n1 ? one_remove_s * 1e3 / n1 : NAN, 3).c_str());
  shaper.reset();
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(
        stderr,
        "usage: netshape_bench probe | fidelity --backend B [--quick] | saturation "
        "[--seconds S] [--delay-us U] [--payload B] [--senders N] [--rt-priority P] | scale "
        "--backend B "
        "[--links N] [--one-by-one N]\n");
    return 2;
  }
  if (!ns::testing::IsRoot()) {
    std::fprintf(stderr, "netshape_bench: needs root (creates network namespaces)\n");
    return 2;
  }
  ns::testing::RemoveStaleTestbeds();
  auto caps = Must(ns::ProbeCapabilities(), "probe");
  const std::string cmd = argv[1];
  if (cmd == "probe") {
    auto b = ns::SelectBackend(ns::BackendChoice::kAuto, caps);
    std::string notes;
    for (char c : caps.notes) {
      if (c == '"' || c == '\\') notes += '\\';
      notes += c == '\n' ? ' ' : c;
    }
    std::printf(
        "{\"htb\": %s, \"netem\": %s, \"nfqueue\": %s, \"iptables\": %s, \"ip6tables\": "
        "%s, \"auto_backend\": \"%s\", \"notes\": \"%s\"}\n",
        caps.htb ? "true" : "false", caps.netem ? "true" : "false", caps.nfqueue ? "true" : "false",
        caps.iptables ? "true" : "false", caps.ip6tables ? "true" : "false",
        b.ok() ? std::string(ns::BackendName(*b)).c_str() : "none", notes.c_str());
    return 0;
  }
  ns::Backend backend =
      Must(ns::ParseBackend(Arg(argc, argv, "--backend", "userspace")), "--backend");
  if (cmd == "fidelity") return Fidelity(caps, backend, Flag(argc, argv, "--quick"));
  if (cmd == "saturation") {
    return Saturation(caps, std::stod(Arg(argc, argv, "--seconds", "5")),
                      std::stoi(Arg(argc, argv, "--delay-us", "1000")),
                      std::stoi(Arg(argc, argv, "--payload", "64")),
                      std::stoi(Arg(argc, argv, "--senders", "1")),
                      std::stoi(Arg(argc, argv, "--rt-priority", "1")));
  }
  if (cmd == "scale") {
    return Scale(caps, backend, std::stoi(Arg(argc, argv, "--links", "1000")),
                 std::stoi(Arg(argc, argv, "--one-by-one", "100")));
  }
  std::fprintf(stderr, "netshape_bench: unknown command %s\n", cmd.c_str());
  return 2;
}

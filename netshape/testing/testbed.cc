#include "gridemu/netshape/testing/testbed.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <regex>
#include <sstream>
#include <thread>

extern char** environ;

namespace gridemu::netshape::testing {

bool IsRoot() { return geteuid() == 0; }

CmdResult Sh(const std::string& cmd) {
  CmdResult r;
  std::string full = cmd + " 2>&1";
  FILE* p = popen(full.c_str(), "r");
  if (!p) return r;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) r.out.append(buf, n);
  int st = pclose(p);
  r.exit_code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  return r;
}

namespace {
std::atomic<int> g_bed_counter{0};
}

Result<std::unique_ptr<VethTestbed>> VethTestbed::Create(int extra_pairs, Layout layout) {
  std::unique_ptr<VethTestbed> bed(new VethTestbed());
  bed->prefix_ = "gnsT" + std::to_string(getpid()) + "-" + std::to_string(g_bed_counter++ % 100);
  bed->layout_ = layout;
  const bool wire = layout == Layout::kWire;
  const std::string a = bed->ns_a(), b = bed->ns_b(), w = bed->ns_w();
  // A leftover of a crashed run with the same pid would make `ip netns add` fail.
  Sh("ip netns del " + a + " 2>/dev/null; ip netns del " + b + " 2>/dev/null; ip netns del " + w +
     " 2>/dev/null");
  std::string script = "set -e\n";
  script += "ip netns add " + a + "\n";
  script += "ip netns add " + b + "\n";
  if (wire) script += "ip netns add " + w + "\n";
  // No IPv6 chatter (DAD, router and MLD solicitations) on the test links: only the test's
  // own probes reach the delay line, so its seeded decisions are reproducible.
  for (const std::string& n : wire ? std::vector<std::string>{a, b, w} : std::vector{a, b}) {
    script += "ip netns exec " + n +
              " sysctl -q -w net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1"
              "\n";
  }
  bed->created_ = true;
  // A bridge of W with two ports that are veths to (ns1, if1) and (ns2, if2); the ports
  // get interface indexes their peers cannot have (node-agent plumbing.h
  // VethSpec::ifindex_a: the kernel delays the carrier of a veth whose index equals its
  // peer's by up to 1 s).
  auto wire_link = [&](const std::string& br, uint32_t group, const std::string& pa,
                       const std::string& if1, const std::string& pb, const std::string& if2,
                       uint32_t index, bool up) {
    std::string s;
    s += "ip -n " + w + " link add name " + br +
         " type bridge stp_state 0 forward_delay 0 mcast_snooping 0\n";
    s += "ip -n " + w + " link set dev " + br + " group " + std::to_string(group) + "\n";
    s += "ip -n " + w + " link add name " + pa + " index " + std::to_string(index) +
         " type veth peer name " + if1 + " netns " + a + "\n";
    s += "ip -n " + w + " link add name " + pb + " index " + std::to_string(index + 1) +
         " type veth peer name " + if2 + " netns " + b + "\n";
    s += "ip -n " + w + " link set dev " + pa + " master " + br + (up ? " up" : "") + "\n";
    s += "ip -n " + w + " link set dev " + pb + " master " + br + (up ? " up" : "") + "\n";
    if (up) s += "ip -n " + w + " link set dev " + br + " up\n";
    return s;
  };
  if (wire) {
    script += "ip netns exec " + w +
              " sysctl -q -w net.bridge.bridge-nf-call-iptables=1"
              " net.bridge.bridge-nf-call-ip6tables=1 net.bridge.bridge-nf-call-arptables=0\n";
    script += wire_link("br", 1, "wa", bed->if_a(), "wb", bed->if_b(), 0x10000, true);
  } else {
    script += "ip -n " + a + " link add " + bed->if_a() + " type veth peer name " + bed->if_b() +
              " netns " + b + "\n";
  }
  script += "ip -n " + a + " addr add 10.0.0.1/24 dev " + bed->if_a() + "\n";
  script += "ip -n " + b + " addr add 10.0.0.2/24 dev " + bed->if_b() + "\n";
  script += "ip -n " + a + " link set lo up\n";
  script += "ip -n " + b + " link set lo up\n";
  script += "ip -n " + a + " link set " + bed->if_a() + " up\n";
  script += "ip -n " + b + " link set " + bed->if_b() + " up\n";
  CmdResult r = Sh(script);
  if (r.exit_code != 0) {
    return InternalError("creating test bed " + bed->prefix_ + ": " + r.out + "\nscript:\n" +
                         script);
  }
  if (extra_pairs > 0) {
    // One `ip -batch` per namespace: fast enough for thousands of pairs.
    char path[] = "/tmp/gnsT-batch-XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0) return InternalError("mkstemp");
    std::string batch;
    for (int i = 0; i < extra_pairs; ++i) {
      if (wire) {
        // The same commands as wire_link(), without "ip -n W" (the batch runs in W).
        std::string l = wire_link("b" + std::to_string(i), i + 2, "xa" + std::to_string(i),
                                  bed->extra_if_a(i), "xb" + std::to_string(i),
                                  bed->extra_if_b(i), 0x10002 + 2 * i, false);
        const std::string drop = "ip -n " + w + " ";
        for (size_t at; (at = l.find(drop)) != std::string::npos;) l.erase(at, drop.size());
        batch += l;
      } else {
        batch += "link add " + bed->extra_if_a(i) + " type veth peer name " +
                 bed->extra_if_b(i) + " netns " + b + "\n";
      }
    }
    (void)!write(fd, batch.data(), batch.size());
    close(fd);
    r = Sh("ip -n " + (wire ? w : a) + " -batch " + path);
    unlink(path);
    if (r.exit_code != 0) return InternalError("creating extra veth pairs: " + r.out);
  }
  // Wait for the link to be usable (IPv4 needs no DAD; one ping settles ARP).
  for (int i = 0; i < 50; ++i) {
    if (bed->Exec(a, "ping -c1 -W1 -q 10.0.0.2 >/dev/null").exit_code == 0) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return bed;
}

VethTestbed::~VethTestbed() {
  if (!created_) return;
  // Kill anything still running inside (iperf3 servers), then delete the namespaces;
  // the veth pairs go with them.
  for (const std::string& ns : {ns_a(), ns_b(), ns_w()}) {
    if (ns == ns_w() && layout_ != Layout::kWire) continue;
    CmdResult pids = Sh("ip netns pids " + ns);
    std::istringstream in(pids.out);
    std::string pid;
    while (in >> pid) {
      if (std::all_of(pid.begin(), pid.end(), ::isdigit)) kill(std::stoi(pid), SIGKILL);
    }
    Sh("ip netns del " + ns);
  }
}

std::optional<HoldPoint> VethTestbed::hold(bool forward, int extra) const {
  if (layout_ != Layout::kWire) return std::nullopt;
  const std::string a = extra < 0 ? "wa" : "xa" + std::to_string(extra);
  const std::string b = extra < 0 ? "wb" : "xb" + std::to_string(extra);
  const uint32_t group = extra < 0 ? 1 : static_cast<uint32_t>(extra) + 2;
  return HoldPoint{path_w(), forward ? a : b, group, forward ? b : a};
}

CmdResult VethTestbed::Exec(const std::string& ns, const std::string& cmd) const {
  return Sh("ip netns exec " + ns + " " + cmd);
}

int RemoveStaleTestbeds() {
  int removed = 0;
  DIR* d = opendir("/var/run/netns");
  if (!d) return 0;
  std::vector<std::string> names;
  while (dirent* e = readdir(d)) names.push_back(e->d_name);
  closedir(d);
  static const std::regex kName("gnsT([0-9]+)-[0-9]+[abw]");
  for (const std::string& n : names) {
    std::smatch m;
    if (!std::regex_match(n, m, kName)) continue;
    std::string pid = m[1];
    struct stat st;
    if (stat(("/proc/" + pid).c_str(), &st) == 0) continue;  // still running
    if (Sh("ip netns del " + n).exit_code == 0) ++removed;
  }
  return removed;
}

void MeanStddev(const std::vector<double>& v, double* mean, double* stddev) {
  *mean = 0;
  *stddev = 0;
  if (v.empty()) return;
  for (double x : v) *mean += x;
  *mean /= v.size();
  if (v.size() < 2) return;
  double s = 0;
  for (double x : v) s += (x - *mean) * (x - *mean);
  *stddev = std::sqrt(s / (v.size() - 1));
}

Result<PingStats> Ping(const std::string& ns, const std::string& dst, int count, double interval_s,
                       int wait_s, int size_bytes, bool user_timestamps) {
  char interval[32];
  std::snprintf(interval, sizeof interval, "%.4f", interval_s);
  // ping runs at real-time priority (chrt -f 1) so that a busy host does not add its own
  // scheduling delays to the RTTs it measures.
  static const bool have_chrt = access("/usr/bin/chrt", X_OK) == 0;
  std::string cmd = "ip netns exec " + ns + (have_chrt ? " chrt -f 1" : "") + " ping -n " +
                    (user_timestamps ? "-U " : "") + "-c " +
                    std::to_string(count) + " -i " + interval + " -W " + std::to_string(wait_s) +
                    " -s " + std::to_string(size_bytes) + " " + dst;
  CmdResult r = Sh(cmd);
  PingStats s;
  static const std::regex kReply("icmp_seq=(\\d+) ttl=\\d+ time=([0-9.]+) ms( \\(DUP!\\))?");
  static const std::regex kSummary("(\\d+) packets transmitted, (\\d+) received");
  std::istringstream in(r.out);
  std::string line;
  bool summary = false;
  while (std::getline(in, line)) {
    std::smatch m;
    if (std::regex_search(line, m, kReply)) {
      if (m[3].matched) {
        ++s.duplicates;
        continue;
      }
      s.rtt_ms.push_back(std::stod(m[2]));
    } else if (std::regex_search(line, m, kSummary)) {
      s.transmitted = std::stoi(m[1]);
      s.received = std::stoi(m[2]);
      summary = true;
    }
  }
  if (!summary) return InternalError("ping failed: " + cmd + ": " + r.out.substr(0, 500));
  if (!s.rtt_ms.empty()) {
    MeanStddev(s.rtt_ms, &s.mean_ms, &s.stddev_ms);
    std::vector<double> sorted = s.rtt_ms;
    std::sort(sorted.begin(), sorted.end());
    s.median_ms = sorted[sorted.size() / 2];
    s.min_ms = sorted.front();
    s.max_ms = sorted.back();
  }
  return s;
}

Result<std::unique_ptr<IperfServer>> IperfServer::Start(const std::string& ns, int port) {
  auto srv = std::make_unique<IperfServer>();
  srv->port_ = port;
  std::string p = std::to_string(port);
  const char* argv[] = {"/usr/sbin/ip", "netns", "exec", ns.c_str(), "iperf3",
                        "-s",           "-1",    "-p",   p.c_str(),  nullptr};
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
  const char* ip = access("/usr/sbin/ip", X_OK) == 0 ? "/usr/sbin/ip" : "/sbin/ip";
  argv[0] = ip;
  int rc = posix_spawn(&srv->pid_, ip, &fa, nullptr, const_cast<char**>(argv), environ);
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0) return InternalError("spawning iperf3 server: " + std::string(strerror(rc)));
  // Wait until it listens.
  for (int i = 0; i < 100; ++i) {
    CmdResult r = Sh("ip netns exec " + ns + " ss -ltnH 'sport = :" + p + "'");
    if (r.out.find(p) != std::string::npos) return srv;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return InternalError("iperf3 server did not start listening on port " + p);
}

IperfServer::~IperfServer() {
  if (pid_ > 0) {
    int st;
    if (waitpid(pid_, &st, WNOHANG) == 0) {
      kill(pid_, SIGTERM);
      waitpid(pid_, &st, 0);
    }
  }
}

namespace {
// Minimal extraction of numbers from iperf3's JSON (no JSON library in this module).
bool FindNumberAfter(const std::string& s, size_t from, const std::string& key, double* out,
                     size_t* at = nullptr) {
  size_t k = s.find("\"" + key + "\"", from);
  if (k == std::string::npos) return false;
  size_t colon = s.find(':', k);
  if (colon == std::string::npos) return false;
  *out = std::strtod(s.c_str() + colon + 1, nullptr);
  if (at) *at = colon;
  return true;
}
}  // namespace

Result<IperfResult> RunIperf(const std::string& ns, const std::string& dst, int port, int seconds,
                             int omit_seconds, const std::string& extra) {
  std::string cmd = "ip netns exec " + ns + " iperf3 -J -c " + dst + " -p " + std::to_string(port) +
                    " -t " + std::to_string(seconds) + " -O " + std::to_string(omit_seconds) + " " +
                    extra;
  CmdResult r = Sh(cmd);
  IperfResult res;
  res.json = r.out;
  if (r.exit_code != 0) return InternalError("iperf3 failed: " + r.out.substr(0, 800));
  // The top-level "end" object (intervals also have numeric "end" fields).
  static const std::regex kEnd("\"end\":\\s*\\{");
  size_t end = std::string::npos;
  for (auto it = std::sregex_iterator(r.out.begin(), r.out.end(), kEnd);
       it != std::sregex_iterator(); ++it) {
    end = it->position();
  }
  if (end == std::string::npos) return InternalError("iperf3: no end section");
  size_t sr = r.out.find("\"sum_received\"", end);
  size_t ss = r.out.find("\"sum_sent\"", end);
  double v;
  if (sr != std::string::npos && FindNumberAfter(r.out, sr, "bits_per_second", &v)) {
    res.receiver_bps = v;
  }
  if (ss != std::string::npos && FindNumberAfter(r.out, ss, "bits_per_second", &v)) {
    res.sender_bps = v;
  }
  if (ss != std::string::npos && FindNumberAfter(r.out, ss, "retransmits", &v)) {
    res.retransmits = static_cast<uint64_t>(v);
  }
  // Intervals: each "sum" object inside "intervals".
  size_t iv = r.out.find("\"intervals\"");
  size_t pos = iv;
  while (iv != std::string::npos) {
    size_t sum = r.out.find("\"sum\"", pos);
    if (sum == std::string::npos || sum > end) break;
    size_t at;
    if (!FindNumberAfter(r.out, sum, "bits_per_second", &v, &at)) break;
    res.interval_bps.push_back(v);
    pos = at;
  }
  return res;
}

}  // namespace gridemu::netshape::testing

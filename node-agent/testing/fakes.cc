// Fakes of the pnode's kernel objects. See fakes.h.
#include "gridemu/node-agent/testing/fakes.h"

#include <algorithm>
#include <sstream>

namespace gridemu::agent::testing {

namespace {

constexpr const char* kHome = "home";

std::string KeyOf(const std::string& path) { return path.empty() ? kHome : path; }

bool StartsWith(std::string_view s, std::string_view p) { return s.rfind(p, 0) == 0; }

Status NoNetns(const std::string& key) {
  return NotFoundError("fake: no network namespace " + key);
}

}  // namespace

// ---------------------------------------------------------------- kernel

FakeKernel::FakeKernel() { ns_[kHome]; }

void FakeKernel::FailAt(uint64_t n) {
  std::lock_guard<std::mutex> l(mu_);
  fail_at_ = n;
}

uint64_t FakeKernel::calls() const {
  std::lock_guard<std::mutex> l(mu_);
  return calls_;
}

std::vector<std::string> FakeKernel::log() const {
  std::lock_guard<std::mutex> l(mu_);
  return log_;
}

Status FakeKernel::Call(const std::string& what) {
  // Called with mu_ held by the fakes.
  ++calls_;
  log_.push_back(std::to_string(calls_) + " " + what);
  if (calls_ == fail_at_) {
    fail_at_ = 0;
    return InternalError("injected failure at call " + std::to_string(calls_) + " (" + what + ")");
  }
  return Status::Ok();
}

bool FakeKernel::Empty() const {
  std::lock_guard<std::mutex> l(mu_);
  if (!vnodes_.empty()) return false;
  for (const auto& [key, n] : ns_) {
    if (key != kHome && foreign_netns_.count(key) == 0) return false;
  }
  const Netns& home = ns_.at(kHome);
  for (const auto& [name, d] : home.devices) {
    if (foreign_devices_.count({kHome, name}) == 0) return false;
  }
  return home.qdiscs.empty() && home.rules.empty() && home.routes.empty();
}

std::string FakeKernel::Dump() const {
  std::lock_guard<std::mutex> l(mu_);
  std::ostringstream o;
  for (const auto& [ref, v] : vnodes_) o << "vnode " << ref.ToString() << " " << v.netns << "\n";
  for (const auto& [key, n] : ns_) {
    o << "netns " << key << (foreign_netns_.count(key) ? " (foreign)" : "") << "\n";
    for (const auto& [name, d] : n.devices) {
      o << "  dev " << name << " " << d.kind << " tag=" << d.tag << (d.up ? " up" : " down");
      if (d.vni != 0) o << " vni=" << d.vni;
      for (const std::string& a : d.addresses) o << " " << a;
      o << "\n";
    }
    for (const std::string& r : n.routes) o << "  route " << r << "\n";
    for (const auto& [ifname, tag] : n.qdiscs) o << "  qdisc " << ifname << " " << tag << "\n";
    for (const std::string& r : n.rules) o << "  rule " << r << "\n";
  }
  return o.str();
}

bool FakeKernel::HasNetns(const std::string& key) const {
  std::lock_guard<std::mutex> l(mu_);
  return ns_.count(key) != 0;
}

FakeKernel::Netns FakeKernel::GetNetns(const std::string& key) const {
  std::lock_guard<std::mutex> l(mu_);
  auto it = ns_.find(key);
  return it == ns_.end() ? Netns{} : it->second;
}

std::map<VnodeRef, FakeKernel::Vnode> FakeKernel::vnodes() const {
  std::lock_guard<std::mutex> l(mu_);
  return vnodes_;
}

void FakeKernel::AddForeignNetns(const std::string& path) {
  std::lock_guard<std::mutex> l(mu_);
  ns_[path];
  foreign_netns_.insert(path);
}

void FakeKernel::AddForeignDevice(const std::string& key, const std::string& name,
                                  const std::string& tag) {
  std::lock_guard<std::mutex> l(mu_);
  Device d;
  d.kind = "veth";
  d.tag = tag;
  ns_[key].devices[name] = d;
  foreign_devices_.insert({key, name});
}

void FakeKernel::DropDeviceLocked(const std::string& key, const std::string& name) {
  auto n = ns_.find(key);
  if (n == ns_.end()) return;
  auto d = n->second.devices.find(name);
  if (d == n->second.devices.end()) return;
  const Device dev = d->second;
  n->second.devices.erase(d);
  n->second.qdiscs.erase(name);
  for (auto& [port, pd] : n->second.devices) {
    if (pd.master == name) pd.master.clear();
  }
  if (dev.kind == "veth" && !dev.peer_ns.empty()) {
    auto pn = ns_.find(dev.peer_ns);
    if (pn != ns_.end()) {
      pn->second.devices.erase(dev.peer);
      pn->second.qdiscs.erase(dev.peer);
    }
  }
}

void FakeKernel::DropNetnsLocked(const std::string& key) {
  auto n = ns_.find(key);
  if (n == ns_.end() || key == kHome) return;
  std::vector<std::string> names;
  for (const auto& [name, d] : n->second.devices) names.push_back(name);
  for (const std::string& name : names) DropDeviceLocked(key, name);
  ns_.erase(key);
  foreign_netns_.erase(key);
}

// ---------------------------------------------------------------- runtime

FakeRuntime::FakeRuntime(FakeKernel* kernel, std::string prefix)
    : k_(kernel), prefix_(std::move(prefix)) {}

std::string FakeRuntime::NetnsPath(const VnodeRef& v) const {
  return "/fake/netns/" + prefix_ + "-" + v.experiment + "-" + v.name;
}

std::vector<Status> FakeRuntime::CreateBatch(std::span<const VnodeSpec> specs) {
  std::vector<Status> out;
  std::lock_guard<std::mutex> l(k_->mu());
  for (const VnodeSpec& s : specs) {
    const VnodeRef ref{s.experiment, s.name};
    Status st = ValidateExperimentId(s.experiment);
    if (st.ok()) st = ValidateVnodeName(s.name);
    if (st.ok()) st = k_->Call("create vnode " + ref.ToString());
    if (st.ok() && k_->vnodes_.count(ref) != 0) {
      st = AlreadyExistsError("fake: vnode " + ref.ToString() + " exists");
    }
    if (st.ok()) {
      const std::string path = NetnsPath(ref);
      k_->ns_[path];
      k_->vnodes_[ref] = FakeKernel::Vnode{path, VnodeState::kRunning};
      mine_.insert(ref);
    }
    out.push_back(st);
  }
  return out;
}

Status FakeRuntime::SetState(const VnodeRef& vnode, const char* what, VnodeState from_not,
                             VnodeState to) {
  std::lock_guard<std::mutex> l(k_->mu());
  if (mine_.count(vnode) == 0) return NotFoundError("fake: no vnode " + vnode.ToString());
  GRIDEMU_RETURN_IF_ERROR(k_->Call(std::string(what) + " vnode " + vnode.ToString()));
  FakeKernel::Vnode& v = k_->vnodes_.at(vnode);
  if (v.state == from_not) {
    return FailedPreconditionError("fake: vnode " + vnode.ToString() + " is " +
                                   std::string(VnodeStateName(v.state)));
  }
  if (to == VnodeState::kStopped) EndTasksOfLocked(vnode, ExitReason::kKilled);
  v.state = to;
  return Status::Ok();
}

Status FakeRuntime::Start(const VnodeRef& vnode) {
  std::lock_guard<std::mutex> l(k_->mu());
  if (mine_.count(vnode) == 0) return NotFoundError("fake: no vnode " + vnode.ToString());
  GRIDEMU_RETURN_IF_ERROR(k_->Call("start vnode " + vnode.ToString()));
  FakeKernel::Vnode& v = k_->vnodes_.at(vnode);
  if (v.state != VnodeState::kStopped) {
    return FailedPreconditionError("fake: vnode " + vnode.ToString() + " is not stopped");
  }
  v.state = VnodeState::kRunning;
  return Status::Ok();
}

Status FakeRuntime::Stop(const VnodeRef& vnode) {
  return SetState(vnode, "stop", VnodeState::kStopped, VnodeState::kStopped);
}

Status FakeRuntime::Freeze(const VnodeRef& vnode) {
  return SetState(vnode, "freeze", VnodeState::kStopped, VnodeState::kFrozen);
}

Status FakeRuntime::Thaw(const VnodeRef& vnode) {
  return SetState(vnode, "thaw", VnodeState::kStopped, VnodeState::kRunning);
}

std::vector<Status> FakeRuntime::DestroyBatch(std::span<const VnodeRef> vnodes) {
  std::vector<Status> out;
  std::lock_guard<std::mutex> l(k_->mu());
  for (const VnodeRef& v : vnodes) {
    if (mine_.count(v) == 0) {
      out.push_back(NotFoundError("fake: no vnode " + v.ToString()));
      continue;
    }
    Status st = k_->Call("destroy vnode " + v.ToString());
    if (st.ok()) {
      EndTasksOfLocked(v, ExitReason::kKilled);
      k_->DropNetnsLocked(k_->vnodes_.at(v).netns);
      k_->vnodes_.erase(v);
      mine_.erase(v);
    }
    out.push_back(st);
  }
  return out;
}

Result<VnodeInfo> FakeRuntime::Info(const VnodeRef& vnode) const {
  std::lock_guard<std::mutex> l(k_->mu());
  if (mine_.count(vnode) == 0) return NotFoundError("fake: no vnode " + vnode.ToString());
  const FakeKernel::Vnode& v = k_->vnodes_.at(vnode);
  VnodeInfo i;
  i.ref = vnode;
  i.state = v.state;
  i.netns_path = v.netns;
  i.netns_name = v.netns.substr(v.netns.rfind('/') + 1);
  i.connected = true;
  return i;
}

std::vector<VnodeRef> FakeRuntime::List() const {
  std::lock_guard<std::mutex> l(k_->mu());
  return {mine_.begin(), mine_.end()};
}

Result<int> FakeRuntime::OpenNetns(const VnodeRef& vnode) const {
  return UnimplementedError("fake: no namespace descriptors");
}

Result<TaskId> FakeRuntime::Exec(const VnodeRef& vnode, const TaskSpec& task) {
  std::lock_guard<std::mutex> l(k_->mu());
  if (mine_.count(vnode) == 0) return NotFoundError("fake: no vnode " + vnode.ToString());
  if (k_->vnodes_.at(vnode).state == VnodeState::kStopped) {
    return FailedPreconditionError("fake: vnode " + vnode.ToString() + " is stopped");
  }
  GRIDEMU_RETURN_IF_ERROR(k_->Call("exec in " + vnode.ToString()));
  const TaskId id = ++next_task_;
  Task& t = tasks_[id];
  t.vnode = vnode;
  t.spec = task;
  t.ignore_term = ignore_term_;
  t.result.times.start_wall = std::chrono::system_clock::now();
  RuntimeEvent ev;
  ev.kind = RuntimeEventKind::kTaskStarted;
  ev.vnode = vnode;
  ev.task = id;
  ev.pid_in_vnode = static_cast<int>(id) + 1;
  events_.push_back(ev);
  return id;
}

void FakeRuntime::EndLocked(TaskId id, Task& t, ExitReason reason, int code, int sig) {
  if (t.state == TaskState::kFinished) return;
  t.state = TaskState::kFinished;
  t.result.reason = reason;
  t.result.exit_code = code;
  t.result.signal = sig;
  t.result.times.end_wall = std::chrono::system_clock::now();
  RuntimeEvent ev;
  ev.kind = RuntimeEventKind::kTaskExited;
  ev.vnode = t.vnode;
  ev.task = id;
  ev.result = t.result;
  events_.push_back(ev);
}

void FakeRuntime::EndTasksOfLocked(const VnodeRef& vnode, ExitReason reason) {
  for (auto& [id, t] : tasks_) {
    if (t.vnode == vnode) EndLocked(id, t, reason, -1, 9);
  }
}

void FakeRuntime::FinishTask(TaskId task, int exit_code) {
  std::lock_guard<std::mutex> l(k_->mu());
  auto it = tasks_.find(task);
  if (it != tasks_.end()) EndLocked(task, it->second, ExitReason::kExited, exit_code, 0);
}

std::map<TaskId, TaskSpec> FakeRuntime::tasks() const {
  std::lock_guard<std::mutex> l(k_->mu());
  std::map<TaskId, TaskSpec> out;
  for (const auto& [id, t] : tasks_) out[id] = t.spec;
  return out;
}

void FakeRuntime::set_ignore_term(bool ignore) {
  std::lock_guard<std::mutex> l(k_->mu());
  ignore_term_ = ignore;
}

std::vector<std::pair<TaskId, TaskSignal>> FakeRuntime::signals() const {
  std::lock_guard<std::mutex> l(k_->mu());
  return signals_;
}

Status FakeRuntime::Signal(TaskId task, TaskSignal signal) {
  std::lock_guard<std::mutex> l(k_->mu());
  auto it = tasks_.find(task);
  if (it == tasks_.end()) return NotFoundError("fake: no task " + std::to_string(task));
  if (it->second.state == TaskState::kFinished) {
    return FailedPreconditionError("fake: task " + std::to_string(task) + " has ended");
  }
  GRIDEMU_RETURN_IF_ERROR(k_->Call("signal task " + std::to_string(task)));
  signals_.emplace_back(task, signal);
  const bool caught =
      it->second.ignore_term && (signal == TaskSignal::kTerm || signal == TaskSignal::kInt);
  if (signal == TaskSignal::kKill) {
    EndLocked(task, it->second, ExitReason::kKilled, -1, SignalNumber(signal));
  } else if (signal != TaskSignal::kStop && signal != TaskSignal::kCont && !caught) {
    EndLocked(task, it->second, ExitReason::kSignaled, -1, SignalNumber(signal));
  }
  return Status::Ok();
}

Result<TaskStatus> FakeRuntime::GetTask(TaskId task) const {
  std::lock_guard<std::mutex> l(k_->mu());
  auto it = tasks_.find(task);
  if (it == tasks_.end()) return NotFoundError("fake: no task " + std::to_string(task));
  TaskStatus s;
  s.id = task;
  s.vnode = it->second.vnode;
  s.state = it->second.state;
  s.result = it->second.result;
  return s;
}

Result<VnodeStats> FakeRuntime::Stats(const VnodeRef& vnode) const {
  std::lock_guard<std::mutex> l(k_->mu());
  if (mine_.count(vnode) == 0) return NotFoundError("fake: no vnode " + vnode.ToString());
  return VnodeStats{};
}

std::vector<RuntimeEvent> FakeRuntime::Poll(std::chrono::milliseconds) {
  std::vector<RuntimeEvent> out;
  EventCallback cb;
  {
    std::lock_guard<std::mutex> l(k_->mu());
    out.swap(events_);
    cb = callback_;
  }
  if (!cb) return out;
  for (const RuntimeEvent& e : out) cb(e);
  return {};
}

Result<TaskResult> FakeRuntime::Wait(TaskId task, std::chrono::milliseconds) {
  std::lock_guard<std::mutex> l(k_->mu());
  auto it = tasks_.find(task);
  if (it == tasks_.end()) return NotFoundError("fake: no task " + std::to_string(task));
  if (it->second.state != TaskState::kFinished) {
    return DeadlineExceededError("fake: task " + std::to_string(task) + " still runs");
  }
  return it->second.result;
}

void FakeRuntime::SetEventCallback(EventCallback callback) {
  std::lock_guard<std::mutex> l(k_->mu());
  callback_ = std::move(callback);
}

Result<Leftovers> FakeRuntime::ListLeftovers(std::string_view experiment) const {
  std::lock_guard<std::mutex> l(k_->mu());
  Leftovers out;
  std::set<std::string> exps;
  for (const auto& [ref, v] : k_->vnodes_) {
    if (!experiment.empty() && ref.experiment != experiment) continue;
    out.netns.push_back(v.netns.substr(v.netns.rfind('/') + 1));
    out.cgroups.push_back("/fake/cgroup/" + prefix_ + "/" + ref.experiment + "/" + ref.name);
    exps.insert(ref.experiment);
  }
  for (const std::string& e : exps) out.state_dirs.push_back("/fake/state/" + e);
  // As the netns runtime: every namespace named like ours, records or not.
  if (experiment.empty()) {
    for (const std::string& f : k_->foreign_netns_) {
      const std::string name = f.substr(f.rfind('/') + 1);
      if (StartsWith(name, prefix_ + "-")) out.netns.push_back(name);
    }
  }
  return out;
}

Status FakeRuntime::CleanupExperiment(std::string_view experiment) {
  std::lock_guard<std::mutex> l(k_->mu());
  GRIDEMU_RETURN_IF_ERROR(k_->Call("cleanup experiment " + std::string(experiment)));
  for (auto it = k_->vnodes_.begin(); it != k_->vnodes_.end();) {
    if (it->first.experiment != experiment) {
      ++it;
      continue;
    }
    EndTasksOfLocked(it->first, ExitReason::kKilled);
    k_->DropNetnsLocked(it->second.netns);
    mine_.erase(it->first);
    it = k_->vnodes_.erase(it);
  }
  return Status::Ok();
}

Status FakeRuntime::CleanupAll() {
  std::set<std::string> exps;
  {
    std::lock_guard<std::mutex> l(k_->mu());
    for (const auto& [ref, v] : k_->vnodes_) exps.insert(ref.experiment);
  }
  for (const std::string& e : exps) GRIDEMU_RETURN_IF_ERROR(CleanupExperiment(e));
  return Status::Ok();
}

Result<std::vector<VnodeRef>> FakeRuntime::Adopt(std::string_view experiment) {
  std::lock_guard<std::mutex> l(k_->mu());
  GRIDEMU_RETURN_IF_ERROR(k_->Call("adopt " + std::string(experiment)));
  std::vector<VnodeRef> out;
  for (const auto& [ref, v] : k_->vnodes_) {
    if (!experiment.empty() && ref.experiment != experiment) continue;
    if (mine_.insert(ref).second) out.push_back(ref);
  }
  return out;
}

// ---------------------------------------------------------------- plumbing

Status FakePlumbing::CreateVeth(const VethSpec& spec) {
  std::lock_guard<std::mutex> l(k_->mu());
  const std::string a = spec.ns_a.Key(), b = spec.ns_b.Key();
  GRIDEMU_RETURN_IF_ERROR(k_->Call("veth " + a + ":" + spec.name_a + " " + b + ":" + spec.name_b));
  if (k_->ns_.count(a) == 0) return NoNetns(a);
  if (k_->ns_.count(b) == 0) return NoNetns(b);
  if (k_->ns_[a].devices.count(spec.name_a) != 0 || k_->ns_[b].devices.count(spec.name_b) != 0 ||
      (a == b && spec.name_a == spec.name_b)) {
    return AlreadyExistsError("fake: interface name taken");
  }
  for (const auto& [name, d] : k_->ns_[a].devices) {
    if (spec.ifindex_a != 0 && d.ifindex == spec.ifindex_a) {
      return AlreadyExistsError("fake: interface index taken");
    }
  }
  FakeKernel::Device da{"veth", spec.tag, spec.up, b, spec.name_b};
  da.ifindex = spec.ifindex_a;
  FakeKernel::Device db{"veth", spec.tag, spec.up, a, spec.name_a};
  da.mtu = db.mtu = spec.mtu;
  k_->ns_[a].devices[spec.name_a] = da;
  k_->ns_[b].devices[spec.name_b] = db;
  return Status::Ok();
}

Status FakePlumbing::CreateBridge(const BridgeSpec& spec) {
  std::lock_guard<std::mutex> l(k_->mu());
  const std::string k = spec.ns.Key();
  GRIDEMU_RETURN_IF_ERROR(k_->Call("bridge " + k + ":" + spec.name));
  if (k_->ns_.count(k) == 0) return NoNetns(k);
  FakeKernel::Netns& n = k_->ns_[k];
  if (n.devices.count(spec.name) != 0) return AlreadyExistsError("fake: " + spec.name + " taken");
  for (const std::string& p : spec.ports) {
    if (n.devices.count(p) == 0) return NotFoundError("fake: no port " + p + " in " + k);
  }
  FakeKernel::Device d;
  d.kind = "bridge";
  d.tag = spec.tag;
  d.up = spec.up;
  d.group = spec.group;
  d.mtu = spec.mtu;
  n.devices[spec.name] = d;
  for (const std::string& p : spec.ports) n.devices[p].master = spec.name;
  return Status::Ok();
}

Status FakePlumbing::SetLinkUp(const NetnsRef& ns, std::string_view ifname, bool up) {
  std::lock_guard<std::mutex> l(k_->mu());
  const std::string k = ns.Key();
  GRIDEMU_RETURN_IF_ERROR(
      k_->Call(std::string(up ? "up " : "down ") + k + ":" + std::string(ifname)));
  auto n = k_->ns_.find(k);
  if (n == k_->ns_.end()) return NoNetns(k);
  auto d = n->second.devices.find(std::string(ifname));
  if (d == n->second.devices.end()) return NotFoundError("fake: no " + std::string(ifname));
  d->second.up = up;
  if (!up) {
    // The kernel deletes the routes through a device taken down.
    auto& r = n->second.routes;
    const std::string dev = " dev " + std::string(ifname);
    r.erase(std::remove_if(r.begin(), r.end(),
                           [&](const std::string& x) {
                             return x.size() >= dev.size() &&
                                    x.compare(x.size() - dev.size(), dev.size(), dev) == 0;
                           }),
            r.end());
  }
  return Status::Ok();
}

Status FakePlumbing::AddAddress(const AddressSpec& spec) {
  std::lock_guard<std::mutex> l(k_->mu());
  const std::string k = spec.ns.Key();
  GRIDEMU_RETURN_IF_ERROR(k_->Call("address " + k + ":" + spec.ifname + " " + spec.address));
  auto n = k_->ns_.find(k);
  if (n == k_->ns_.end()) return NoNetns(k);
  auto d = n->second.devices.find(spec.ifname);
  if (d == n->second.devices.end()) return NotFoundError("fake: no " + spec.ifname);
  d->second.addresses.push_back(spec.address + "/" + std::to_string(spec.prefix_len));
  return Status::Ok();
}

Status FakePlumbing::EnableForwarding(const NetnsRef& ns) {
  std::lock_guard<std::mutex> l(k_->mu());
  const std::string k = ns.Key();
  GRIDEMU_RETURN_IF_ERROR(k_->Call("forwarding " + k));
  auto n = k_->ns_.find(k);
  if (n == k_->ns_.end()) return NoNetns(k);
  n->second.forwarding = true;
  return Status::Ok();
}

Status FakePlumbing::SetSysctl(const NetnsRef& ns, std::string_view key, std::string_view value) {
  std::lock_guard<std::mutex> l(k_->mu());
  const std::string k = ns.Key();
  GRIDEMU_RETURN_IF_ERROR(k_->Call("sysctl " + k + " " + std::string(key)));
  auto n = k_->ns_.find(k);
  if (n == k_->ns_.end()) return NoNetns(k);
  n->second.sysctls[std::string(key)] = std::string(value);
  return Status::Ok();
}

Status FakePlumbing::AddRoute(const RouteSpec& spec) {
  std::lock_guard<std::mutex> l(k_->mu());
  const std::string k = spec.ns.Key();
  const std::string r = spec.dst + "/" + std::to_string(spec.prefix_len) +
                        (spec.gateway.empty() ? "" : " via " + spec.gateway) +
                        (spec.ifname.empty() ? "" : " dev " + spec.ifname);
  GRIDEMU_RETURN_IF_ERROR(k_->Call("route " + k + " " + r));
  auto n = k_->ns_.find(k);
  if (n == k_->ns_.end()) return NoNetns(k);
  if (!spec.ifname.empty() && n->second.devices.count(spec.ifname) == 0) {
    return NotFoundError("fake: no " + spec.ifname);
  }
  auto& routes = n->second.routes;
  if (std::find(routes.begin(), routes.end(), r) == routes.end()) routes.push_back(r);
  return Status::Ok();
}

Status FakePlumbing::DeleteLink(const NetnsRef& ns, std::string_view ifname) {
  std::lock_guard<std::mutex> l(k_->mu());
  const std::string k = ns.Key();
  GRIDEMU_RETURN_IF_ERROR(k_->Call("delete " + k + ":" + std::string(ifname)));
  auto n = k_->ns_.find(k);
  if (n == k_->ns_.end() || n->second.devices.count(std::string(ifname)) == 0) {
    return NotFoundError("fake: no " + std::string(ifname));
  }
  k_->DropDeviceLocked(k, std::string(ifname));
  return Status::Ok();
}

Result<std::vector<LinkInfo>> FakePlumbing::ListTagged(const NetnsRef& ns,
                                                       std::string_view tag_prefix) {
  if (tag_prefix.empty()) return InvalidArgumentError("fake: empty tag prefix");
  std::lock_guard<std::mutex> l(k_->mu());
  auto n = k_->ns_.find(ns.Key());
  if (n == k_->ns_.end()) return NoNetns(ns.Key());
  std::vector<LinkInfo> out;
  int index = 0;
  for (const auto& [name, d] : n->second.devices) {
    ++index;
    if (!StartsWith(d.tag, tag_prefix)) continue;
    LinkInfo li;
    li.name = name;
    li.ifindex = index;
    li.alias = d.tag;
    li.kind = d.kind;
    li.up = d.up;
    out.push_back(li);
  }
  return out;
}

Result<size_t> FakePlumbing::DeleteTagged(const NetnsRef& ns, std::string_view tag_prefix) {
  GRIDEMU_ASSIGN_OR_RETURN(std::vector<LinkInfo> found, ListTagged(ns, tag_prefix));
  std::lock_guard<std::mutex> l(k_->mu());
  if (found.empty()) return size_t{0};
  GRIDEMU_RETURN_IF_ERROR(k_->Call("delete tagged " + ns.Key() + " " + std::string(tag_prefix)));
  for (const LinkInfo& li : found) k_->DropDeviceLocked(ns.Key(), li.name);
  return found.size();
}

// ---------------------------------------------------------------- vxlan

Status FakeVxlanPlumbing::CreateVxlan(const VxlanSpec& spec) {
  std::lock_guard<std::mutex> l(k_->mu());
  const std::string u = spec.underlay_ns.Key(), target = spec.ns.Key();
  if (spec.tag.empty()) return InvalidArgumentError("fake: a VXLAN device needs a tag");
  GRIDEMU_RETURN_IF_ERROR(k_->Call("vxlan " + std::to_string(spec.vni) + " in " + u));
  if (k_->ns_.count(u) == 0) return NoNetns(u);
  for (const auto& [key, n] : k_->ns_) {
    for (const auto& [name, d] : n.devices) {
      if (d.kind == "vxlan" && d.underlay == u && d.vni == spec.vni) {
        return AlreadyExistsError("fake: VNI " + std::to_string(spec.vni) + " is in use in " + u);
      }
    }
  }
  FakeKernel::Device d;
  d.kind = "vxlan";
  d.tag = spec.tag;
  d.vni = spec.vni;
  d.underlay = u;
  d.up = false;
  const std::string temp = "gvx" + std::to_string(spec.vni);
  k_->ns_[u].devices[temp] = d;
  // The move: a failure here leaves the tagged device in the underlay, as a
  // crash between the two steps would.
  GRIDEMU_RETURN_IF_ERROR(k_->Call("vxlan move " + temp + " to " + target + ":" + spec.name));
  if (k_->ns_.count(target) == 0) return NoNetns(target);
  if (k_->ns_[target].devices.count(spec.name) != 0) {
    return AlreadyExistsError("fake: " + spec.name + " taken in " + target);
  }
  k_->ns_[u].devices.erase(temp);
  d.up = spec.up;
  k_->ns_[target].devices[spec.name] = d;
  return Status::Ok();
}

Result<std::vector<VxlanInfo>> FakeVxlanPlumbing::ListVxlan(const NetnsRef& ns,
                                                            std::string_view tag_prefix) {
  std::lock_guard<std::mutex> l(k_->mu());
  auto n = k_->ns_.find(ns.Key());
  if (n == k_->ns_.end()) return NoNetns(ns.Key());
  std::vector<VxlanInfo> out;
  for (const auto& [name, d] : n->second.devices) {
    if (d.kind != "vxlan" || !StartsWith(d.tag, tag_prefix)) continue;
    VxlanInfo vi;
    vi.link.name = name;
    vi.link.alias = d.tag;
    vi.link.kind = "vxlan";
    vi.vni = d.vni;
    out.push_back(vi);
  }
  return out;
}

Result<size_t> FakeVxlanPlumbing::DeleteTagged(const NetnsRef& ns, std::string_view tag_prefix) {
  FakePlumbing p(k_);
  return p.DeleteTagged(ns, tag_prefix);
}

// ---------------------------------------------------------------- shaper

class FakeLinkShaper::Direction final : public netshape::ShapedDirection {
 public:
  Direction(FakeKernel* k, std::shared_ptr<bool> alive, netshape::ShapeRequest req, bool rule)
      : k_(k), alive_(std::move(alive)), req_(std::move(req)), rule_(rule) {}
  ~Direction() override { (void)Remove(); }
  Status Change(const LinkProfile& changes) override {
    std::lock_guard<std::mutex> l(k_->mu());
    if (removed_) return FailedPreconditionError("fake: direction removed");
    GRIDEMU_RETURN_IF_ERROR(k_->Call("change shaping " + req_.tag));
    req_.profile = req_.profile.MergedWith(changes);
    ++changes_;
    return Status::Ok();
  }
  Result<netshape::Counters> GetCounters() override {
    std::lock_guard<std::mutex> l(k_->mu());
    if (removed_) return FailedPreconditionError("fake: direction removed");
    netshape::Counters c;
    c.passed_packets = 10;
    c.passed_bytes = 1000;
    return c;
  }
  Status Remove() override {
    std::lock_guard<std::mutex> l(k_->mu());
    if (removed_) return Status::Ok();
    removed_ = true;
    if (!*alive_) return Status::Ok();  // a crashed process removes nothing
    GRIDEMU_RETURN_IF_ERROR(k_->Call("unshape " + req_.tag));
    Unmake();
    return Status::Ok();
  }
  const LinkProfile& profile() const override { return req_.profile; }
  int changes() const { return changes_; }
  // Forgets the kernel objects undone by a failed ShapeDirections (held mu).
  void MarkRemoved() { removed_ = true; }

  // The namespace the delay line's rule is in.
  std::string RuleKey() const {
    return KeyOf(req_.hold ? req_.hold->netns : req_.receiver.netns);
  }
  // Puts the qdisc and rule in the kernel (held mu).
  void Make() {
    if (req_.half != netshape::ShapeHalf::kReceiverOnly) {
      k_->ns_[KeyOf(req_.sender.netns)].qdiscs[req_.sender.ifname] = req_.tag;
    }
    if (rule_) k_->ns_[RuleKey()].rules.insert(req_.tag);
  }
  // Takes them out again, from whatever namespaces still exist.
  void Unmake() {
    if (req_.half != netshape::ShapeHalf::kReceiverOnly) {
      auto n = k_->ns_.find(KeyOf(req_.sender.netns));
      if (n != k_->ns_.end() && n->second.qdiscs.count(req_.sender.ifname) != 0 &&
          n->second.qdiscs[req_.sender.ifname] == req_.tag) {
        n->second.qdiscs.erase(req_.sender.ifname);
      }
    }
    if (rule_) {
      auto n = k_->ns_.find(RuleKey());
      if (n != k_->ns_.end()) n->second.rules.erase(req_.tag);
    }
  }

 private:
  FakeKernel* k_;
  std::shared_ptr<bool> alive_;
  netshape::ShapeRequest req_;
  bool rule_;
  bool removed_ = false;
  int changes_ = 0;
};

FakeLinkShaper::FakeLinkShaper(FakeKernel* kernel, netshape::Backend backend)
    : k_(kernel), backend_(backend) {
  caps_.htb = caps_.nfqueue = caps_.iptables = caps_.ip6tables = true;
  caps_.netem = backend == netshape::Backend::kNetem;
}

void FakeLinkShaper::Crash() {
  std::lock_guard<std::mutex> l(k_->mu());
  *alive_ = false;
  alive_ = std::make_shared<bool>(true);
}

Result<std::vector<std::unique_ptr<netshape::ShapedDirection>>> FakeLinkShaper::ShapeDirections(
    const std::vector<netshape::ShapeRequest>& requests) {
  std::vector<std::unique_ptr<netshape::ShapedDirection>> out;
  std::lock_guard<std::mutex> l(k_->mu());
  std::vector<Direction*> made;
  auto undo = [&](Status st) {
    for (Direction* d : made) {
      d->Unmake();
      d->MarkRemoved();
    }
    return st;
  };
  for (const netshape::ShapeRequest& r : requests) {
    Status st = r.profile.Validate();
    if (st.ok()) st = netshape::CheckBackendSupports(r.profile, backend_, caps_);
    if (st.ok()) st = k_->Call("shape " + r.tag);
    if (!st.ok()) return undo(st);
    const bool sender = r.half != netshape::ShapeHalf::kReceiverOnly;
    const bool receiver = r.half != netshape::ShapeHalf::kSenderOnly;
    if (sender) {
      auto n = k_->ns_.find(KeyOf(r.sender.netns));
      if (n == k_->ns_.end()) return undo(NoNetns(KeyOf(r.sender.netns)));
      if (n->second.devices.count(r.sender.ifname) == 0) {
        return undo(NotFoundError("fake: no " + r.sender.ifname + " in " + n->first));
      }
      if (n->second.qdiscs.count(r.sender.ifname) != 0) {
        return undo(AlreadyExistsError("fake: " + r.sender.ifname + " has a root qdisc"));
      }
    }
    LinkProfile kernel_only;
    kernel_only.rate_bps = r.profile.rate_bps;
    kernel_only.queue_packets = r.profile.queue_packets;
    const bool rule =
        receiver && backend_ == netshape::Backend::kUserspace && !(r.profile == kernel_only);
    if (rule && r.hold) {
      auto h = k_->ns_.find(KeyOf(r.hold->netns));
      if (h == k_->ns_.end()) return undo(NoNetns(KeyOf(r.hold->netns)));
      if (h->second.devices.count(r.hold->port) == 0) {
        return undo(NotFoundError("fake: no hold port " + r.hold->port + " in " + h->first));
      }
    } else if (rule && k_->ns_.count(KeyOf(r.receiver.netns)) == 0) {
      return undo(NoNetns(KeyOf(r.receiver.netns)));
    }
    auto d = std::make_unique<Direction>(k_, alive_, r, rule);
    d->Make();
    made.push_back(d.get());
    out.push_back(std::move(d));
  }
  return out;
}

Status FakeLinkShaper::RemoveDirections(
    std::vector<std::unique_ptr<netshape::ShapedDirection>>& directions) {
  Status first;
  for (auto& d : directions) {
    if (d == nullptr) continue;
    Status st = d->Remove();
    if (first.ok() && !st.ok()) first = st;
  }
  return first;
}

Result<int> FakeLinkShaper::RemoveLeftoverRules(const std::string& netns_path,
                                                const std::string& tag_prefix) {
  std::lock_guard<std::mutex> l(k_->mu());
  GRIDEMU_RETURN_IF_ERROR(k_->Call("remove leftover rules " + netns_path + " " + tag_prefix));
  auto n = k_->ns_.find(KeyOf(netns_path));
  if (n == k_->ns_.end()) return NoNetns(KeyOf(netns_path));
  int removed = 0;
  for (auto it = n->second.rules.begin(); it != n->second.rules.end();) {
    if (StartsWith(*it, tag_prefix)) {
      it = n->second.rules.erase(it);
      ++removed;
    } else {
      ++it;
    }
  }
  return removed;
}

Result<bool> FakeLinkShaper::RemoveLeftoverQdisc(const std::string& netns_path,
                                                 const std::string& ifname) {
  std::lock_guard<std::mutex> l(k_->mu());
  GRIDEMU_RETURN_IF_ERROR(k_->Call("remove leftover qdisc " + netns_path + ":" + ifname));
  auto n = k_->ns_.find(KeyOf(netns_path));
  if (n == k_->ns_.end()) return NoNetns(KeyOf(netns_path));
  return n->second.qdiscs.erase(ifname) != 0;
}

// ---------------------------------------------------------------- records

Status MemoryShardRecords::WriteShard(const v1::DeployShard& shard) {
  {
    std::lock_guard<std::mutex> l(k_->mu());
    GRIDEMU_RETURN_IF_ERROR(k_->Call("record shard " + shard.experiment_id()));
  }
  std::lock_guard<std::mutex> l(mu_);
  shards_[shard.experiment_id()] = shard;
  return Status::Ok();
}

Status MemoryShardRecords::WritePhase(const std::string& experiment, const ShardPhase& phase) {
  {
    std::lock_guard<std::mutex> l(k_->mu());
    GRIDEMU_RETURN_IF_ERROR(k_->Call("record phase " + experiment + " " + phase.phase));
  }
  std::lock_guard<std::mutex> l(mu_);
  phases_[experiment] = phase;
  return Status::Ok();
}

Result<ShardPhase> MemoryShardRecords::ReadPhase(const std::string& experiment) const {
  std::lock_guard<std::mutex> l(mu_);
  auto it = phases_.find(experiment);
  if (it == phases_.end()) return NotFoundError("fake: no phase record of " + experiment);
  return it->second;
}

Result<v1::DeployShard> MemoryShardRecords::ReadShard(const std::string& experiment) const {
  std::lock_guard<std::mutex> l(mu_);
  auto it = shards_.find(experiment);
  if (it == shards_.end()) return NotFoundError("fake: no shard record of " + experiment);
  return it->second;
}

Status MemoryShardRecords::Remove(const std::string& experiment) {
  {
    std::lock_guard<std::mutex> l(mu_);
    if (shards_.count(experiment) == 0 && phases_.count(experiment) == 0) return Status::Ok();
  }
  {
    std::lock_guard<std::mutex> l(k_->mu());
    GRIDEMU_RETURN_IF_ERROR(k_->Call("remove records " + experiment));
  }
  std::lock_guard<std::mutex> l(mu_);
  shards_.erase(experiment);
  phases_.erase(experiment);
  return Status::Ok();
}

Result<std::vector<std::string>> MemoryShardRecords::List() const {
  std::lock_guard<std::mutex> l(mu_);
  std::set<std::string> out;
  for (const auto& [e, s] : shards_) out.insert(e);
  for (const auto& [e, p] : phases_) out.insert(e);
  return std::vector<std::string>(out.begin(), out.end());
}

std::vector<std::string> MemoryShardRecords::Describe(const std::string& experiment) const {
  std::lock_guard<std::mutex> l(mu_);
  std::vector<std::string> out;
  for (const auto& [e, s] : shards_) {
    if (experiment.empty() || e == experiment) out.push_back("record " + e + ".shard");
  }
  for (const auto& [e, p] : phases_) {
    if (experiment.empty() || e == experiment) out.push_back("record " + e + ".phase");
  }
  return out;
}

bool MemoryShardRecords::empty() const {
  std::lock_guard<std::mutex> l(mu_);
  return shards_.empty() && phases_.empty();
}

ApplierDeps FakeApplierDeps(FakeKernel* kernel, FakeRuntime* runtime, FakeLinkShaper* shaper,
                            MemoryShardRecords* records) {
  ApplierDeps d;
  d.runtime = runtime;
  d.new_plumbing = [kernel]() -> Result<std::unique_ptr<Plumbing>> {
    return std::unique_ptr<Plumbing>(new FakePlumbing(kernel));
  };
  d.new_vxlan = [kernel]() -> Result<std::unique_ptr<VxlanPlumbing>> {
    return std::unique_ptr<VxlanPlumbing>(new FakeVxlanPlumbing(kernel));
  };
  d.shaper = shaper;
  d.records = records;
  return d;
}

}  // namespace gridemu::agent::testing

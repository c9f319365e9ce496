// The agent registry. See registry.h.

#include "gridemu/controller/registry.h"

#include <arpa/inet.h>

#include <utility>

#include "gridemu/common/clock.h"
#include "gridemu/common/units.h"

namespace gridemu::controller {

namespace {

bool IsPrintableId(const std::string& s) {
  if (s.empty() || s.size() > 255) return false;
  for (unsigned char c : s) {
    if (c <= 0x20 || c >= 0x7f) return false;
  }
  return true;
}

}  // namespace

AgentRegistry::AgentRegistry(Store* store, RegistryOptions options)
    : store_(store), options_(options) {}

Status AgentRegistry::OnHello(const std::string& identity, const v1::AgentHello& hello,
                              Clock::time_point now) {
  const std::string& id = hello.host_id();
  if (id.empty()) return InvalidArgumentError("AgentHello.host_id is empty");
  if (!IsPrintableId(id)) {
    return InvalidArgumentError(
        "AgentHello.host_id must be 1-255 printable ASCII characters without spaces");
  }
  if (!identity.empty() && identity != id) {
    return InvalidArgumentError("AgentHello.host_id '" + id +
                                "' differs from the connection's identity '" + identity +
                                "' (the agent's ZeroMQ routing id must be its host id)");
  }
  if (in_addr ip{};
      !hello.address().empty() && ::inet_pton(AF_INET, hello.address().c_str(), &ip) != 1) {
    return InvalidArgumentError("AgentHello.address '" + hello.address() +
                                "' is not an IPv4 address (the pnode's underlay address, the "
                                "local end of its VXLAN tunnels)");
  }
  AgentInfo& a = agents_[id];
  a.host_id = id;
  a.identity = identity.empty() ? id : identity;
  a.hello = hello;
  a.alive = true;
  a.lost_reason.clear();
  a.last_seen = now;
  a.last_stored_heartbeat = now;
  a.registered_unix_ns = UnixNanosNow();
  a.vnodes = 0;
  for (const auto& h : hello.held()) a.vnodes += h.vnodes();
  if (store_ != nullptr) {
    HostRecord rec;
    rec.host_id = id;
    rec.address = hello.address();
    rec.cores = hello.capacity().cores();
    rec.memory_bytes = hello.capacity().memory_bytes();
    rec.max_vnodes = hello.capacity().max_vnodes();
    rec.state = HostState::kUp;
    GRIDEMU_RETURN_IF_ERROR(store_->UpsertHost(rec));
    GRIDEMU_RETURN_IF_ERROR(store_->RecordHeartbeat(id));
  }
  return Status::Ok();
}

Status AgentRegistry::OnHeartbeat(const std::string& identity, const v1::Heartbeat& heartbeat,
                                  Clock::time_point now) {
  auto it = agents_.find(identity);
  if (it == agents_.end() || !it->second.alive) {
    return FailedPreconditionError("unknown agent '" + identity +
                                   "': send AgentHello to register first");
  }
  AgentInfo& a = it->second;
  a.last_seen = now;
  a.vnodes = heartbeat.vnodes();
  if (store_ != nullptr && now - a.last_stored_heartbeat >= options_.store_heartbeat_every) {
    a.last_stored_heartbeat = now;
    // A failed write only delays the stored time; liveness is in memory.
    (void)store_->RecordHeartbeat(a.host_id);
  }
  return Status::Ok();
}

bool AgentRegistry::Touch(const std::string& identity, Clock::time_point now) {
  auto it = agents_.find(identity);
  if (it == agents_.end() || !it->second.alive) return false;
  it->second.last_seen = now;
  return true;
}

std::vector<std::string> AgentRegistry::ExpireSilent(Clock::time_point now) {
  std::vector<std::string> lost;
  for (auto& [id, a] : agents_) {
    if (!a.alive || now - a.last_seen <= options_.heartbeat_timeout) continue;
    lost.push_back(id);
    MarkLost(id, "no message from agent '" + id + "' for " +
                     FormatTime(
                         std::chrono::duration_cast<std::chrono::milliseconds>(now - a.last_seen)) +
                     " (heartbeat timeout " + FormatTime(options_.heartbeat_timeout) + ")");
  }
  return lost;
}

void AgentRegistry::MarkLost(const std::string& host_id, const std::string& reason) {
  auto it = agents_.find(host_id);
  if (it == agents_.end() || !it->second.alive) return;
  it->second.alive = false;
  it->second.lost_reason = reason;
  if (store_ != nullptr) (void)store_->SetHostState(host_id, HostState::kDown);
}

const AgentInfo* AgentRegistry::Find(const std::string& host_id) const {
  auto it = agents_.find(host_id);
  return it == agents_.end() ? nullptr : &it->second;
}

bool AgentRegistry::IsAlive(const std::string& host_id) const {
  const AgentInfo* a = Find(host_id);
  return a != nullptr && a->alive;
}

std::vector<const AgentInfo*> AgentRegistry::Alive() const {
  std::vector<const AgentInfo*> out;
  for (const auto& [id, a] : agents_) {
    if (a.alive) out.push_back(&a);
  }
  return out;
}

std::optional<AgentRegistry::Clock::time_point> AgentRegistry::NextExpiry() const {
  std::optional<Clock::time_point> next;
  for (const auto& [id, a] : agents_) {
    if (!a.alive) continue;
    auto t = a.last_seen + options_.heartbeat_timeout + std::chrono::milliseconds(1);
    if (!next || t < *next) next = t;
  }
  return next;
}

}  // namespace gridemu::controller

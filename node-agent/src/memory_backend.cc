// Shared part of the in-memory backends. See memory_backend.h.
#include "memory_backend.h"

namespace gridemu::agent::internal {

Result<std::vector<HeldExperiment>> MemoryBackend::Held() {
  std::vector<HeldExperiment> out;
  for (const auto& [id, s] : shards_) {
    out.push_back({id, s.generation, static_cast<uint32_t>(s.vnodes.size()), s.ready, true});
  }
  return out;
}

void MemoryBackend::Teardown(uint64_t job, const std::string& experiment) {
  uint32_t removed = 0;
  if (const Shard* s = Find(experiment)) {
    removed = static_cast<uint32_t>(s->vnodes.size());
    Forget(experiment);
  }
  events_->TeardownDone(job, TeardownOutcome{removed, {}});
}

void MemoryBackend::Adopt(uint64_t job, const std::string& experiment, uint64_t generation) {
  (void)generation;
  events_->AdoptDone(
      job, AdoptOutcome{FailedPreconditionError("this agent holds no leftover of " + experiment +
                                                ": it keeps nothing across restarts")});
}

Status MemoryBackend::CheckEvent(const std::string& experiment, const v1::ApplyEvent& ev) {
  const Shard& s = shards_.at(experiment);
  const std::string where = " in experiment " + experiment + " on this pnode";
  std::string link;
  if (ev.has_link_set()) link = ev.link_set().link();
  if (ev.has_link_state()) link = ev.link_state().link();
  if ((ev.has_link_set() || ev.has_link_state()) && s.links.count(link) == 0) {
    return NotFoundError("no link '" + link + "'" + where);
  }
  for (const std::string& v : ev.node_action().vnodes()) {
    if (s.vnodes.count(v) == 0) return NotFoundError("no vnode '" + v + "'" + where);
  }
  return Status::Ok();
}

void MemoryBackend::ForgetAll() {
  while (!shards_.empty()) Forget(shards_.begin()->first);
}

MemoryBackend::Shard& MemoryBackend::Keep(uint64_t job, const v1::DeployShard& d) {
  Forget(d.experiment_id());
  Shard& s = shards_[d.experiment_id()];
  s.generation = d.generation();
  s.job = job;
  s.total = static_cast<uint32_t>(d.vnodes_size() + d.links_size());
  s.vnodes.reserve(d.vnodes_size());
  for (const auto& v : d.vnodes()) s.vnodes.insert(v.name());
  for (const auto& l : d.links()) s.links.insert(l.name());
  vnodes_ += static_cast<uint32_t>(s.vnodes.size());
  return s;
}

MemoryBackend::Shard* MemoryBackend::Find(const std::string& experiment) {
  auto it = shards_.find(experiment);
  return it == shards_.end() ? nullptr : &it->second;
}

void MemoryBackend::Forget(const std::string& experiment) {
  auto it = shards_.find(experiment);
  if (it == shards_.end()) return;
  OnForget(experiment, it->second);
  vnodes_ -= static_cast<uint32_t>(it->second.vnodes.size());
  shards_.erase(it);
}

}  // namespace gridemu::agent::internal

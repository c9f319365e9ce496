// The vnode/link overlap of a deploy. See deploy_pipeline.h.
#include "gridemu/node-agent/deploy_pipeline.h"

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>

namespace gridemu::agent {
namespace {

using Clock = std::chrono::steady_clock;

double Secs(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

}  // namespace

PipelineResult DeployPipeline::Run(size_t vnode_count,
                                   const std::vector<std::vector<size_t>>& link_vnodes,
                                   const MakeVnodesFn& make_vnodes, const MakeLinksFn& make_links,
                                   const ProgressFn& progress) {
  PipelineResult res;
  // Links waiting on each vnode; a link is handed over when its last one is made.
  std::vector<std::vector<size_t>> links_of(vnode_count);
  std::vector<size_t> missing(link_vnodes.size(), 0);
  for (size_t l = 0; l < link_vnodes.size(); ++l) {
    for (size_t v : link_vnodes[l]) links_of.at(v).push_back(l);
    missing[l] = link_vnodes[l].size();
  }
  const size_t batch_max = std::max<size_t>(1, options_.link_batch);

  struct Queue {
    std::mutex mu;
    std::condition_variable cv;
    std::deque<std::vector<size_t>> batches;
    size_t busy = 0;  // batches being worked on
    bool closing = false;
    bool failed = false;
    StepResult links;
  } q;
  // Takes and works one batch; false when there is none (and, if `wait`, none will come).
  auto take_one = [&](bool wait) -> bool {
    std::vector<size_t> batch;
    {
      std::unique_lock<std::mutex> l(q.mu);
      if (wait) q.cv.wait(l, [&] { return !q.batches.empty() || q.closing; });
      if (q.batches.empty() || q.failed) {
        q.batches.clear();
        return false;
      }
      batch = std::move(q.batches.front());
      q.batches.pop_front();
      ++q.busy;
    }
    StepResult r = make_links(batch);
    {
      std::lock_guard<std::mutex> l(q.mu);
      --q.busy;
      q.links.done += r.done;
      if (!r.errors.empty()) q.failed = true;
      q.links.errors.insert(q.links.errors.end(), r.errors.begin(), r.errors.end());
    }
    q.cv.notify_all();
    return true;
  };
  auto links_done = [&] {
    std::lock_guard<std::mutex> l(q.mu);
    return q.links.done;
  };
  auto report = [&] {
    if (progress) progress(res.vnodes_done + links_done());
  };
  std::thread worker;
  auto start_worker = [&] {
    if (!worker.joinable()) {
      worker = std::thread([&] {
        while (take_one(true)) {
        }
      });
    }
  };
  if (options_.overlap) start_worker();
  {
    std::vector<size_t> free;  // links that need no vnode
    for (size_t l = 0; l < missing.size(); ++l) {
      if (missing[l] == 0) free.push_back(l);
    }
    if (!free.empty()) q.batches.push_back(std::move(free));
  }

  const auto t0 = Clock::now();
  const size_t chunk = std::max<size_t>(1, options_.vnode_chunk);
  StepResult vnodes;
  for (size_t first = 0; first < vnode_count; first += chunk) {
    const size_t n = std::min(chunk, vnode_count - first);
    std::vector<char> made(n, 0);
    make_vnodes(first, n, made, vnodes);
    std::vector<size_t> ready;
    for (size_t k = 0; k < n; ++k) {
      if (!made[k]) continue;
      ++res.vnodes_done;
      for (size_t l : links_of[first + k]) {
        if (--missing[l] == 0) ready.push_back(l);
      }
    }
    if (!vnodes.errors.empty()) break;
    {
      std::lock_guard<std::mutex> l(q.mu);
      const size_t per = std::max<size_t>(1, std::min(batch_max, (ready.size() + 1) / 2));
      for (size_t b = 0; b < ready.size(); b += per) {
        q.batches.emplace_back(ready.begin() + static_cast<std::ptrdiff_t>(b),
                               ready.begin() + static_cast<std::ptrdiff_t>(
                                                   std::min(ready.size(), b + per)));
      }
    }
    q.cv.notify_all();
    report();
    std::lock_guard<std::mutex> l(q.mu);
    if (q.failed) break;
  }
  res.vnodes_s = Secs(t0, Clock::now());
  const auto tl = Clock::now();
  start_worker();
  // Help the worker with what is left, then let it go.
  if (vnodes.errors.empty()) {
    while (take_one(false)) report();
  }
  {
    std::unique_lock<std::mutex> l(q.mu);
    q.closing = true;
    if (!vnodes.errors.empty()) q.batches.clear();
    q.cv.notify_all();
    q.cv.wait(l, [&] { return q.busy == 0; });
  }
  worker.join();
  res.links_tail_s = Secs(tl, Clock::now());
  res.links_done = q.links.done;
  res.errors = std::move(vnodes.errors);
  res.errors.insert(res.errors.end(), q.links.errors.begin(), q.links.errors.end());
  report();
  return res;
}

}  // namespace gridemu::agent

// The vnode/link overlap of a deploy (deploy_pipeline.h): links are handed
// over only once their vnodes exist, each exactly once; a failed vnode or
// link stops further work; the link step runs on two threads at once.
#include "gridemu/node-agent/deploy_pipeline.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <mutex>
#include <set>
#include <thread>

namespace gridemu::agent {
namespace {

// A chain: link i joins vnodes i and i + 1 (and link `n - 1` only vnode 0).
std::vector<std::vector<size_t>> Chain(size_t n) {
  std::vector<std::vector<size_t>> links;
  for (size_t i = 0; i + 1 < n; ++i) links.push_back({i, i + 1});
  links.push_back({0});
  return links;
}

struct Recorder {
  std::mutex mu;
  std::vector<char> made;
  std::vector<int> linked;  // times each link was made
  std::vector<uint32_t> progress;
};

class Pipeline : public ::testing::TestWithParam<bool> {};

TEST_P(Pipeline, LinksFollowTheirVnodesExactlyOnce) {
  const size_t n = 23;
  const auto links = Chain(n);
  Recorder r;
  r.made.assign(n, 0);
  r.linked.assign(links.size(), 0);
  PipelineOptions o;
  o.vnode_chunk = 4;
  o.link_batch = 2;
  o.overlap = GetParam();
  DeployPipeline p(o);
  PipelineResult res = p.Run(
      n, links,
      [&](size_t first, size_t count, std::vector<char>& made, StepResult&) {
        std::lock_guard<std::mutex> l(r.mu);
        for (size_t k = 0; k < count; ++k) {
          r.made[first + k] = 1;
          made[k] = 1;
        }
      },
      [&](std::span<const size_t> batch) {
        StepResult s;
        std::lock_guard<std::mutex> l(r.mu);
        for (size_t li : batch) {
          for (size_t v : links[li]) EXPECT_TRUE(r.made[v]) << "link " << li << " before vnode " << v;
          ++r.linked[li];
          s.done += 2;
        }
        return s;
      },
      [&](uint32_t done) { r.progress.push_back(done); });
  ASSERT_TRUE(res.ok());
  EXPECT_EQ(res.vnodes_done, n);
  EXPECT_EQ(res.links_done, 2 * links.size());
  for (size_t i = 0; i < links.size(); ++i) EXPECT_EQ(r.linked[i], 1) << "link " << i;
  EXPECT_TRUE(std::is_sorted(r.progress.begin(), r.progress.end()));
  EXPECT_EQ(r.progress.back(), n + 2 * links.size());
}

TEST_P(Pipeline, AFailedVnodeStopsAndItsLinksAreNeverMade) {
  const size_t n = 20;
  const auto links = Chain(n);
  std::mutex mu;
  std::set<size_t> linked;
  size_t last_first = 0;
  PipelineOptions o;
  o.vnode_chunk = 5;
  o.overlap = GetParam();
  PipelineResult res = DeployPipeline(o).Run(
      n, links,
      [&](size_t first, size_t count, std::vector<char>& made, StepResult& s) {
        last_first = first;
        for (size_t k = 0; k < count; ++k) {
          if (first + k == 7) {
            s.errors.push_back({"vnode v7", "no room"});
          } else {
            made[k] = 1;
          }
        }
      },
      [&](std::span<const size_t> batch) {
        std::lock_guard<std::mutex> l(mu);
        linked.insert(batch.begin(), batch.end());
        return StepResult{static_cast<uint32_t>(batch.size()), {}};
      });
  ASSERT_FALSE(res.ok());
  EXPECT_EQ(res.errors.front().object, "vnode v7");
  EXPECT_EQ(last_first, 5u) << "no chunk after the failed one";
  EXPECT_EQ(res.vnodes_done, 9u);
  // At most the links of the first chunk's vnodes (0-1 .. 3-4 and the one on
  // vnode 0 alone) that the worker had started; never 6 (6-7) nor 7 (7-8),
  // which join the failed vnode. Without the overlap nothing is linked.
  const std::set<size_t> first_chunk{0, 1, 2, 3, 19};
  EXPECT_TRUE(std::includes(first_chunk.begin(), first_chunk.end(), linked.begin(), linked.end()));
  if (!GetParam()) EXPECT_TRUE(linked.empty());
}

TEST_P(Pipeline, AFailedLinkBatchStopsFurtherBatches) {
  const size_t n = 40;
  const auto links = Chain(n);
  std::atomic<int> batches{0};
  PipelineOptions o;
  o.vnode_chunk = 4;
  o.link_batch = 1;
  o.overlap = GetParam();
  PipelineResult res = DeployPipeline(o).Run(
      n, links,
      [&](size_t, size_t count, std::vector<char>& made, StepResult&) {
        std::fill(made.begin(), made.begin() + static_cast<std::ptrdiff_t>(count), 1);
      },
      [&](std::span<const size_t> batch) {
        StepResult s;
        if (++batches == 3) s.errors.push_back({"links", "kernel refused"});
        return s;
      });
  ASSERT_FALSE(res.ok());
  EXPECT_EQ(res.errors.size(), 1u);
  EXPECT_EQ(res.errors.front().message, "kernel refused");
  EXPECT_LT(batches.load(), static_cast<int>(links.size())) << "stopped early";
}

INSTANTIATE_TEST_SUITE_P(Overlap, Pipeline, ::testing::Bool(),
                         [](const auto& i) { return i.param ? "overlap" : "sequential"; });

}  // namespace
}  // namespace gridemu::agent

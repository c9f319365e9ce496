// Runs the fuzz entry points in every build (no libFuzzer needed): over the
// bad-input corpora and over deterministic mutations of them (byte flips,
// truncations, splices), so that CI catches a parser that crashes, hangs or
// throws on input it has never seen. Coverage-guided fuzzing proper:
// cmake -DGRIDEMU_FUZZ=ON with clang (see tests/fuzz/CMakeLists.txt).
#include <gtest/gtest.h>
#include <sys/resource.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "fuzz_targets.h"
#include "gridemu/common/random.h"

namespace gridemu::fuzz {
namespace {

std::vector<std::string> ReadAll(const std::string& dir, const std::string& ext) {
  std::vector<std::string> out;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    if (e.path().extension() != ext) continue;
    std::ifstream f(e.path());
    std::stringstream ss;
    ss << f.rdbuf();
    out.push_back(ss.str());
  }
  return out;
}

// A parser that allocates without bound must fail this test, not take the
// machine's memory: cap the address space at 4 GiB.
class MemoryCap : public ::testing::Environment {
 public:
  void SetUp() override {
    rlimit rl{4ull << 30, 4ull << 30};
    setrlimit(RLIMIT_AS, &rl);
  }
};
const auto* const kCap = ::testing::AddGlobalTestEnvironment(new MemoryCap);

std::string Src() {
  const char* s = std::getenv("GRIDEMU_SOURCE_DIR");
  return s ? s : GRIDEMU_TEST_SOURCE_DIR;
}

// Deterministic mutations of `seed` inputs.
std::string Mutate(const std::vector<std::string>& corpus, Rng& rng) {
  std::string s = corpus[rng.Below(corpus.size())];
  const int ops = 1 + static_cast<int>(rng.Below(4));
  static const char kInteresting[] = "[]{}:,-#\"'\n\t &*!|>%0123456789abcdez\xff\x00";
  for (int i = 0; i < ops && !s.empty(); ++i) {
    size_t pos = rng.Below(s.size());
    switch (rng.Below(5)) {
      case 0: s[pos] = kInteresting[rng.Below(sizeof kInteresting - 1)]; break;
      case 1: s.erase(pos, rng.Below(16) + 1); break;
      case 2: s.insert(pos, 1, kInteresting[rng.Below(sizeof kInteresting - 1)]); break;
      case 3: s.resize(pos); break;
      case 4: {
        const std::string& other = corpus[rng.Below(corpus.size())];
        if (!other.empty()) s.insert(pos, other.substr(rng.Below(other.size())));
        break;
      }
    }
  }
  return s;
}

void Feed(void (*target)(const uint8_t*, size_t), const std::string& s) {
  target(reinterpret_cast<const uint8_t*>(s.data()), s.size());
}

TEST(FuzzReplay, ExperimentParserSurvivesCorpusAndMutations) {
  auto corpus = ReadAll(Src() + "/tests/experiments/bad", ".yaml");
  auto good = ReadAll(Src() + "/tests/experiments/testdata", ".yaml");
  corpus.insert(corpus.end(), good.begin(), good.end());
  ASSERT_GE(corpus.size(), 45u);
  for (const auto& s : corpus) Feed(FuzzExperiment, s);
  Rng rng(20261121);
  const char* dump = std::getenv("GRIDEMU_FUZZ_DUMP");  // debugging: write each input first
  for (int i = 0; i < 3000; ++i) {
    std::string in = Mutate(corpus, rng);
    if (dump) std::ofstream(dump) << in;
    Feed(FuzzExperiment, in);
  }
}

TEST(FuzzReplay, GmlParserSurvivesCorpusAndMutations) {
  auto corpus = ReadAll(Src() + "/topology/testdata/gml/bad", ".gml");
  auto zoo = ReadAll(Src() + "/examples/topologies", ".gml");
  corpus.insert(corpus.end(), zoo.begin(), zoo.end());
  ASSERT_GE(corpus.size(), 2u);
  for (const auto& s : corpus) Feed(FuzzGml, s);
  Rng rng(1121);
  for (int i = 0; i < 3000; ++i) Feed(FuzzGml, Mutate(corpus, rng));
}

}  // namespace
}  // namespace gridemu::fuzz

// The bad-input corpus (DESIGN.md §12): every file under bad/ is a malformed
// experiment whose leading "# expect: <line>:<column>: <message>" comments
// list, in order, every diagnostic the parser must report — no more, no fewer.

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "gridemu/experiments/parse.h"

namespace gridemu::experiments {
namespace {

namespace fs = std::filesystem;

fs::path BadDir() {
  const char* env = std::getenv("GRIDEMU_SOURCE_DIR");
  fs::path root = env != nullptr ? fs::path(env) : fs::path(GRIDEMU_TEST_SOURCE_DIR);
  return root / "tests" / "experiments" / "bad";
}

std::vector<std::string> CorpusNames() {
  std::vector<std::string> names;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(BadDir(), ec)) {
    if (entry.path().extension() == ".yaml") names.push_back(entry.path().stem().string());
  }
  std::sort(names.begin(), names.end());
  return names;
}

std::string ReadFile(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

std::vector<std::string> SplitLines(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

class BadCorpus : public testing::TestWithParam<std::string> {};

TEST_P(BadCorpus, ReportsExactlyTheExpectedDiagnostics) {
  const std::string name = GetParam();
  const std::string text = ReadFile(BadDir() / (name + ".yaml"));
  const std::string display = "bad/" + name + ".yaml";
  std::vector<std::string> expected;
  for (const std::string& line : SplitLines(text)) {
    constexpr std::string_view kTag = "# expect: ";
    if (line.rfind(kTag, 0) == 0) expected.push_back(display + ":" + line.substr(kTag.size()));
  }
  ASSERT_FALSE(expected.empty()) << display << " has no '# expect:' lines";

  auto result = ParseExperiment(text, display, BadDir().string());
  ASSERT_FALSE(result.ok()) << display << " parsed without errors";
  EXPECT_EQ(result.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(SplitLines(result.status().message()), expected);
}

// Test names may only hold [A-Za-z0-9_].
std::string TestName(const testing::TestParamInfo<std::string>& info) {
  std::string s = info.param;
  std::replace_if(
      s.begin(), s.end(), [](char c) { return !std::isalnum(static_cast<unsigned char>(c)); }, '_');
  return s;
}

INSTANTIATE_TEST_SUITE_P(Files, BadCorpus, testing::ValuesIn(CorpusNames()), TestName);

TEST(BadCorpusMeta, HasAtLeast45Files) { EXPECT_GE(CorpusNames().size(), 45u); }

// A file with several problems reports all of them, sorted by position.
TEST(BadCorpusMeta, SeveralProblemsAreCollectedInOnePass) {
  const std::string text = ReadFile(BadDir() / "multi-everywhere.yaml");
  auto result = ParseExperiment(text, "m.yaml", BadDir().string());
  ASSERT_FALSE(result.ok());
  EXPECT_GE(SplitLines(result.status().message()).size(), 8u);
}

}  // namespace
}  // namespace gridemu::experiments

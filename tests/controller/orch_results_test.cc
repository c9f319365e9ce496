// The results directory (results.h): naming, collection of task outputs and
// files, manifest fields, CSV headers and rows, the task summary, report.html
// written with the rest (its content: report_html_test.cc).
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "gridemu/controller/results.h"
#include "gridemu/experiments/parse.h"

namespace gridemu::controller {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

class TempDir {
 public:
  TempDir() {
    std::string t = (fs::temp_directory_path() / "gridemu-orch-results-XXXXXX").string();
    path_ = ::mkdtemp(t.data());
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

std::string Read(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

void Write(const std::string& path, const std::string& text) {
  fs::create_directories(fs::path(path).parent_path());
  std::ofstream(path, std::ios::binary) << text;
}

std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string l; std::getline(in, l);) out.push_back(l);
  return out;
}

constexpr int64_t kT0 = 1'700'000'000'000'000'000;  // 2023-11-14T22:13:20Z
constexpr int64_t kS = 1'000'000'000;

TaskRecord Task(const std::string& name, uint32_t index, const std::string& vnode, TaskState st,
                std::optional<int> code, double start_s, double end_s, bool wait) {
  TaskRecord t;
  t.task_id = name + "/" + std::to_string(index);
  t.task_name = name;
  t.index = index;
  t.vnode = vnode;
  t.state = st;
  t.exit_code = code;
  t.wait = wait;
  t.start_unix_ns = kT0 + static_cast<int64_t>(start_s * kS);
  t.end_unix_ns = kT0 + static_cast<int64_t>(end_s * kS);
  return t;
}

TEST(OrchResults, DirectoryNameIsExperimentAndUtcTimestampAndUnique) {
  TempDir tmp;
  auto a = MakeResultsDir(tmp.path() + "/results/", "ping", kT0);
  ASSERT_TRUE(a.ok()) << a.status().ToString();
  EXPECT_EQ(*a, tmp.path() + "/results/ping-20231114T221320Z");
  EXPECT_TRUE(fs::is_directory(*a));
  auto b = MakeResultsDir(tmp.path() + "/results", "ping", kT0);
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(*b, tmp.path() + "/results/ping-20231114T221320Z-2");
  Write(tmp.path() + "/file", "x");
  auto bad = MakeResultsDir(tmp.path() + "/file", "ping", kT0);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), StatusCode::kUnavailable);
}

TEST(OrchResults, WritesManifestCsvFilesAndSummary) {
  TempDir tmp;
  const std::string dir = tmp.path();
  ResultsInput in;
  in.gridemu_version = "0.1.0";
  in.experiment.id = "ping-3";
  in.experiment.name = "ping";
  in.experiment.slice = "default";
  in.experiment.yaml = "name: ping\nduration: 10s\n";
  in.experiment.yaml_sha256 = "abc123";
  in.experiment.source_path = "examples/ping.yaml";
  in.experiment.seed = 42;
  in.experiment.duration = std::chrono::seconds(10);
  in.experiment.created_unix_ns = kT0 - kS;
  in.start_unix_ns = kT0;
  in.end_unix_ns = kT0 + 5 * kS;
  in.final_state = ExperimentState::kCancelled;
  in.final_reason = "interrupted by SIGINT (Ctrl-C)";
  in.tasks.push_back(Task("ping", 0, "h1", TaskState::kExited, 0, 1.0, 2.5, true));
  in.tasks.push_back(Task("ping", 1, "h2", TaskState::kExited, 1, 1.5, 3.0, true));
  TaskRecord killed = Task("srv", 0, "r", TaskState::kKilled, std::nullopt, 0, 5, false);
  killed.signal = 9;
  killed.reason = "stopped at the end of the run (killed)";
  in.tasks.push_back(killed);
  in.events.push_back(EventRow{0, 0, "link-set", "h1--r", 2 * kS, 2 * kS + 1500000, ""});
  in.events.push_back(EventRow{1, 0, "node-kill", "h2", 4 * kS, std::nullopt, "h2, \"gone\""});
  in.metrics.push_back(MetricSample{kT0 + kS, "h1--r", "forward_tx_bytes", 1234});
  in.pnodes.push_back(PnodeReport{"host-a", "10.1.0.7", "6.1.0", "netem", "dev", 3});
  PlacementSummary p;
  p.algorithm = "single-pnode";
  p.generation = 1;
  p.vnodes_per_pnode = {{"host-a", 3}};
  in.placement = p;
  in.collected_files = {"files/h1/rtt.txt"};
  in.notes = {"a note"};
  ASSERT_TRUE(WriteResults(dir, in).ok());

  json m = json::parse(Read(dir + "/manifest.json"));
  EXPECT_EQ(m["gridemu_version"], "0.1.0");
  EXPECT_EQ(m["experiment"]["id"], "ping-3");
  EXPECT_EQ(m["experiment"]["file"], "examples/ping.yaml");
  EXPECT_EQ(m["experiment"]["sha256"], "abc123");
  EXPECT_EQ(m["experiment"]["seed"], 42);
  EXPECT_EQ(m["state"], "cancelled");
  EXPECT_EQ(m["reason"], "interrupted by SIGINT (Ctrl-C)");
  EXPECT_EQ(m["start"], "2023-11-14T22:13:20.000Z");
  EXPECT_EQ(m["end"], "2023-11-14T22:13:25.000Z");
  ASSERT_EQ(m["pnodes"].size(), 1u);
  EXPECT_EQ(m["pnodes"][0]["host_id"], "host-a");
  EXPECT_EQ(m["pnodes"][0]["kernel"], "6.1.0");
  EXPECT_EQ(m["pnodes"][0]["shaping_backend"], "netem");
  EXPECT_EQ(m["placement"]["algorithm"], "single-pnode");
  EXPECT_EQ(m["placement"]["vnodes_per_pnode"]["host-a"], 3);
  EXPECT_EQ(m["tasks"]["total"], 3);
  EXPECT_EQ(m["tasks"]["by_state"]["exited"], 2);
  EXPECT_EQ(m["events"]["applied"], 1);
  EXPECT_EQ(m["events"]["failed"], 1);
  EXPECT_EQ(m["collected_files"][0], "files/h1/rtt.txt");
  EXPECT_EQ(m["notes"][0], "a note");

  EXPECT_EQ(Read(dir + "/experiment.yaml"), in.experiment.yaml);

  auto tasks = Lines(Read(dir + "/tasks.csv"));
  ASSERT_EQ(tasks.size(), 4u);
  EXPECT_EQ(tasks[0], "task_id,task,index,vnode,state,start,end,duration,exit_code,signal,reason");
  EXPECT_EQ(tasks[1], "ping/0,ping,0,h1,exited,1.000000,2.500000,1.500000,0,,");
  EXPECT_EQ(tasks[2], "ping/1,ping,1,h2,exited,1.500000,3.000000,1.500000,1,,");
  EXPECT_EQ(tasks[3],
            "srv/0,srv,0,r,killed,0.000000,5.000000,5.000000,,9,stopped at the end of the run "
            "(killed)");

  auto events = Lines(Read(dir + "/events.csv"));
  ASSERT_EQ(events.size(), 3u);
  EXPECT_EQ(events[0], "event,step,kind,target,planned,applied,lateness,error");
  EXPECT_EQ(events[1], "0,0,link-set,h1--r,2.000000,2.001500,0.001500,");
  EXPECT_EQ(events[2], "1,0,node-kill,h2,4.000000,,,\"h2, \"\"gone\"\"\"");

  auto metrics = Lines(Read(dir + "/metrics.csv"));
  ASSERT_EQ(metrics.size(), 2u);
  EXPECT_EQ(metrics[0], "time,unix_ns,subject,metric,value");
  EXPECT_EQ(metrics[1], "1.000000," + std::to_string(kT0 + kS) + ",h1--r,forward_tx_bytes,1234");

  const std::string summary = Read(dir + "/summary.txt");
  EXPECT_NE(summary.find("state: cancelled (interrupted by SIGINT (Ctrl-C))"), std::string::npos)
      << summary;
  EXPECT_NE(summary.find("ping*"), std::string::npos);
  EXPECT_NE(summary.find("results: " + dir), std::string::npos);

  // report.html, next to the others, from the same data.
  const std::string report = Read(dir + "/report.html");
  EXPECT_EQ(report.rfind("<!DOCTYPE html>", 0), 0u);
  EXPECT_NE(report.find("<title>gridemu report: ping (ping-3)</title>"), std::string::npos);
  EXPECT_NE(report.find("interrupted by SIGINT (Ctrl-C)"), std::string::npos);
  EXPECT_NE(report.find("<td>ping/1*</td>"), std::string::npos);
  EXPECT_NE(report.find("<td>h2, &quot;gone&quot;</td>"), std::string::npos);
  EXPECT_NE(report.find("data-plot=\"gantt\""), std::string::npos);

  // Exactly these files (tasks/ and files/ are made by the collect functions).
  std::set<std::string> names;
  for (const auto& f : fs::directory_iterator(dir)) names.insert(f.path().filename().string());
  EXPECT_EQ(names, (std::set<std::string>{"events.csv", "experiment.yaml", "manifest.json",
                                          "metrics.csv", "report.html", "summary.txt",
                                          "tasks.csv"}));
}

TEST(OrchResults, SummaryCountsOkFailedAndStopped) {
  std::vector<TaskRecord> tasks = {
      Task("ping", 0, "h1", TaskState::kExited, 0, 1.0, 2.0, true),
      Task("ping", 1, "h2", TaskState::kExited, 0, 1.0, 4.0, true),
      Task("ping", 2, "h3", TaskState::kExited, 2, 1.0, 3.0, true),
  };
  TaskRecord srv = Task("srv", 0, "r", TaskState::kKilled, std::nullopt, 0, 5, false);
  srv.signal = 9;
  srv.reason = "stopped at the end of the run (killed)";
  tasks.push_back(srv);
  auto s = SummarizeTasks(tasks);
  ASSERT_EQ(s.size(), 2u);
  EXPECT_EQ(s[0].task, "ping");
  EXPECT_EQ(s[0].instances, 3u);
  EXPECT_EQ(s[0].ok, 2u);
  EXPECT_EQ(s[0].failed, 1u);
  EXPECT_EQ(*s[0].min, std::chrono::seconds(1));
  EXPECT_EQ(*s[0].median, std::chrono::seconds(2));
  EXPECT_EQ(*s[0].max, std::chrono::seconds(3));
  EXPECT_EQ(s[0].outcomes.at("exit 0"), 2u);
  EXPECT_EQ(s[0].outcomes.at("exit 2"), 1u);
  EXPECT_EQ(s[1].stopped, 1u);
  EXPECT_EQ(s[1].failed, 0u);
  EXPECT_FALSE(WaitedTasksSucceeded(tasks));
  tasks[2].exit_code = 0;
  EXPECT_TRUE(WaitedTasksSucceeded(tasks)) << "a non-waited task does not count";
  const std::string table = FormatTaskTable(SummarizeTasks(tasks));
  EXPECT_NE(table.find("tasks: 4 instances, 3 ok, 0 failed, 1 stopped at the end"),
            std::string::npos)
      << table;
}

TEST(OrchResults, CollectsTaskOutputsAndFilesUnderGridemuOut) {
  TempDir tmp;
  const std::string dir = tmp.path() + "/res";
  const std::string out = tmp.path() + "/out";
  fs::create_directories(dir);
  Write(out + "/h1/rtt.txt", "rtt");
  Write(out + "/h1/sub/deep.txt", "deep");
  Write(out + "/h1/ping_0.stdout", "task output");
  Write(out + "/h2/other.log", "log");
  auto exp = experiments::ParseExperiment(R"(
name: c
duration: 10s
topology:
  nodes: {h1: {}, h2: {}}
  links: [{endpoints: [h1, h2]}]
collect:
  files: ["$GRIDEMU_OUT/*.txt", "${GRIDEMU_OUT}/sub", "/etc/passwd", "$GRIDEMU_OUT/../x"]
)",
                                          "c.yaml");
  ASSERT_TRUE(exp.ok()) << exp.status().ToString();
  std::vector<std::string> notes;
  auto files = CollectFiles(dir, *exp, out, {out + "/h1/ping_0.stdout"}, &notes);
  EXPECT_EQ(files, (std::vector<std::string>{"files/h1/rtt.txt", "files/h1/sub"}));
  EXPECT_EQ(Read(dir + "/files/h1/rtt.txt"), "rtt");
  EXPECT_EQ(Read(dir + "/files/h1/sub/deep.txt"), "deep");
  EXPECT_FALSE(fs::exists(dir + "/files/h2/other.log"));
  ASSERT_EQ(notes.size(), 2u);
  EXPECT_NE(notes[0].find("'/etc/passwd' is not under $GRIDEMU_OUT"), std::string::npos);
  EXPECT_NE(notes[1].find("must not contain '..'"), std::string::npos);

  // No collect.files: everything under $GRIDEMU_OUT but the excluded task outputs.
  exp->collect.files.clear();
  const std::string dir2 = tmp.path() + "/res2";
  fs::create_directories(dir2);
  notes.clear();
  files = CollectFiles(dir2, *exp, out, {out + "/h1/ping_0.stdout"}, &notes);
  EXPECT_EQ(files,
            (std::vector<std::string>{"files/h1/rtt.txt", "files/h1/sub", "files/h2/other.log"}));
  EXPECT_TRUE(notes.empty());

  // Task outputs go to tasks/<task>/<index>.stdout and the records follow them.
  std::vector<TaskRecord> tasks = {Task("ping", 0, "h1", TaskState::kExited, 0, 0, 1, true)};
  tasks[0].stdout_path = out + "/h1/ping_0.stdout";
  tasks[0].stderr_path = out + "/h1/missing.stderr";
  auto updates = CollectTaskOutputs(dir, tasks, &notes);
  ASSERT_EQ(updates.size(), 1u);
  EXPECT_EQ(*updates[0].stdout_path, dir + "/tasks/ping/0.stdout");
  EXPECT_EQ(tasks[0].stdout_path, dir + "/tasks/ping/0.stdout");
  EXPECT_EQ(Read(dir + "/tasks/ping/0.stdout"), "task output");
  ASSERT_EQ(notes.size(), 1u);
  EXPECT_NE(notes[0].find("1 task output file(s) could not be found"), std::string::npos);
}

}  // namespace
}  // namespace gridemu::controller

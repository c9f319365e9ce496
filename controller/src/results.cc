// The results directory of a run. See results.h.

#include "gridemu/controller/results.h"

#include <glob.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "gridemu/common/units.h"
#include "report_html.h"

namespace gridemu::controller {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

std::string Timestamp(int64_t unix_ns) {
  std::time_t secs = static_cast<std::time_t>(unix_ns / 1000000000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[32];
  size_t n = std::strftime(buf, sizeof(buf), "%Y%m%dT%H%M%SZ", &tm);
  return std::string(buf, n);
}

std::string CsvField(const std::string& s) {
  if (s.find_first_of(",\"\n\r") == std::string::npos) return s;
  std::string out = "\"";
  for (char c : s) {
    if (c == '"') out += '"';
    out += c;
  }
  out += '"';
  return out;
}

// Seconds with microsecond precision: "12.345678".
std::string Seconds(int64_t ns) {
  char buf[40];
  const bool neg = ns < 0;
  const uint64_t a = neg ? static_cast<uint64_t>(-ns) : static_cast<uint64_t>(ns);
  std::snprintf(buf, sizeof(buf), "%s%" PRIu64 ".%06" PRIu64, neg ? "-" : "", a / 1000000000,
                (a % 1000000000) / 1000);
  return buf;
}

std::string RelSeconds(const std::optional<int64_t>& unix_ns, int64_t start) {
  if (!unix_ns || start == 0) return "";
  return Seconds(*unix_ns - start);
}

Status WriteFile(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) {
    return UnavailableError("cannot write '" + path + "': " + std::strerror(errno));
  }
  out << text;
  out.close();
  if (!out) return UnavailableError("cannot write '" + path + "': write failed");
  return Status::Ok();
}



std::string Pad(const std::string& s, size_t w) {
  return s.size() >= w ? s : s + std::string(w - s.size(), ' ');
}

std::string FormatDur(std::optional<std::chrono::nanoseconds> d) {
  if (!d) return "-";
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.3fs", static_cast<double>(d->count()) / 1e9);
  return buf;
}

bool CopyOne(const fs::path& from, const fs::path& to, std::string* error) {
  std::error_code ec;
  fs::create_directories(to.parent_path(), ec);
  if (ec) {
    *error = "cannot create '" + to.parent_path().string() + "': " + ec.message();
    return false;
  }
  if (fs::is_directory(from, ec)) {
    fs::copy(from, to,
             fs::copy_options::recursive | fs::copy_options::overwrite_existing |
                 fs::copy_options::copy_symlinks,
             ec);
  } else {
    fs::copy_file(from, to, fs::copy_options::overwrite_existing, ec);
  }
  if (ec) {
    *error = "cannot copy '" + from.string() + "' to '" + to.string() + "': " + ec.message();
    return false;
  }
  return true;
}

}  // namespace

std::string FormatUnixTime(int64_t unix_ns) {
  std::time_t secs = static_cast<std::time_t>(unix_ns / 1000000000);
  int64_t ms = (unix_ns % 1000000000) / 1000000;
  if (ms < 0) {
    ms += 1000;
    --secs;
  }
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[64];
  size_t n = std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S", &tm);
  char frac[8];
  std::snprintf(frac, sizeof(frac), ".%03dZ", static_cast<int>(ms));
  return std::string(buf, n) + frac;
}

Result<std::string> MakeResultsDir(const std::string& base, const std::string& name,
                                   int64_t unix_ns) {
  std::error_code ec;
  fs::create_directories(base.empty() ? "." : base, ec);
  if (ec) {
    return UnavailableError("cannot create the results directory '" + base + "': " + ec.message());
  }
  std::string root = base.empty() ? std::string(".") : base;
  while (root.size() > 1 && root.back() == '/') root.pop_back();
  const std::string stem = (root == "/" ? "" : root) + "/" + name + "-" + Timestamp(unix_ns);
  for (int i = 1; i < 1000; ++i) {
    std::string dir = i == 1 ? stem : stem + "-" + std::to_string(i);
    if (::mkdir(dir.c_str(), 0755) == 0) return dir;
    if (errno != EEXIST) {
      return UnavailableError("cannot create the results directory '" + dir +
                              "': " + std::strerror(errno));
    }
  }
  return UnavailableError("cannot create a results directory: '" + stem +
                          "' and 998 variants exist");
}

std::string VnodeOutDir(const std::string& out_root, const std::string& vnode) {
  return out_root + "/" + vnode;
}

std::vector<TaskUpdate> CollectTaskOutputs(const std::string& dir, std::vector<TaskRecord>& tasks,
                                           std::vector<std::string>* notes) {
  std::vector<TaskUpdate> updates;
  size_t missing = 0;
  std::string first_missing;
  for (auto& t : tasks) {
    TaskUpdate u;
    u.task_id = t.task_id;
    u.state = t.state;
    bool changed = false;
    for (int s = 0; s < 2; ++s) {
      std::string& path = s == 0 ? t.stdout_path : t.stderr_path;
      if (path.empty()) continue;
      const std::string rel =
          "tasks/" + t.task_name + "/" + std::to_string(t.index) + (s == 0 ? ".stdout" : ".stderr");
      const std::string dest = dir + "/" + rel;
      if (path == dest) continue;
      std::error_code ec;
      if (!fs::exists(path, ec)) {
        if (missing++ == 0) first_missing = path;
        continue;
      }
      std::string error;
      if (!CopyOne(path, dest, &error)) {
        if (notes) notes->push_back("task " + t.task_id + ": " + error);
        continue;
      }
      path = dest;
      (s == 0 ? u.stdout_path : u.stderr_path) = dest;
      changed = true;
    }
    if (changed) updates.push_back(std::move(u));
  }
  if (missing > 0 && notes) {
    notes->push_back(std::to_string(missing) +
                     " task output file(s) could not be found on this host (first: '" +
                     first_missing + "'); agents on other hosts keep them");
  }
  return updates;
}

std::vector<std::string> CollectFiles(const std::string& dir,
                                      const experiments::Experiment& experiment,
                                      const std::string& out_root,
                                      const std::set<std::string>& exclude,
                                      std::vector<std::string>* notes) {
  std::vector<std::string> copied;
  std::vector<std::string> patterns;  // relative to a vnode's GRIDEMU_OUT
  if (experiment.collect.files.empty()) {
    patterns.push_back("*");
  }
  for (const std::string& p : experiment.collect.files) {
    std::string rest;
    for (std::string_view var : {"$GRIDEMU_OUT", "${GRIDEMU_OUT}"}) {
      if (p.compare(0, var.size(), var) == 0) {
        rest = p.substr(var.size());
        break;
      }
    }
    if (rest.empty() && p != "$GRIDEMU_OUT" && p != "${GRIDEMU_OUT}") {
      if (notes) {
        notes->push_back("collect.files: '" + p +
                         "' is not under $GRIDEMU_OUT; only files under $GRIDEMU_OUT can be "
                         "collected");
      }
      continue;
    }
    while (!rest.empty() && rest.front() == '/') rest.erase(0, 1);
    if (rest.find("..") != std::string::npos) {
      if (notes) notes->push_back("collect.files: '" + p + "' must not contain '..'");
      continue;
    }
    patterns.push_back(rest.empty() ? "*" : rest);
  }
  std::error_code ec;
  if (!fs::is_directory(out_root, ec)) return copied;
  std::set<std::string> seen;
  for (const auto& v : experiment.topology.vnodes()) {
    const std::string vdir = VnodeOutDir(out_root, v.name);
    if (!fs::is_directory(vdir, ec)) continue;
    for (const std::string& pat : patterns) {
      glob_t g{};
      const std::string full = vdir + "/" + pat;
      if (::glob(full.c_str(), 0, nullptr, &g) == 0) {
        for (size_t i = 0; i < g.gl_pathc; ++i) {
          const std::string src = g.gl_pathv[i];
          if (exclude.count(src) != 0) continue;
          const std::string rel = "files/" + v.name + src.substr(vdir.size());
          if (!seen.insert(rel).second) continue;
          std::string error;
          if (CopyOne(src, dir + "/" + rel, &error)) {
            copied.push_back(rel);
          } else if (notes) {
            notes->push_back("collect.files: " + error);
          }
        }
      }
      globfree(&g);
    }
  }
  std::sort(copied.begin(), copied.end());
  return copied;
}

bool StoppedAtEnd(const TaskRecord& t) {
  return t.state == TaskState::kKilled &&
         t.reason.compare(0, kStoppedAtEndReason.size(), kStoppedAtEndReason) == 0;
}

std::string TaskOutcome(const TaskRecord& t) {
  if (StoppedAtEnd(t)) return "stopped at end";
  switch (t.state) {
    case TaskState::kExited:
      return t.exit_code ? "exit " + std::to_string(*t.exit_code) : "exit ?";
    case TaskState::kKilled:
      return t.signal ? "signal " + std::to_string(*t.signal) : "killed";
    case TaskState::kFailed:
      return "failed to start";
    case TaskState::kLost:
      return "lost";
    default:
      return std::string(TaskStateName(t.state));
  }
}

std::vector<TaskSummary> SummarizeTasks(const std::vector<TaskRecord>& tasks) {
  std::vector<TaskSummary> out;
  std::map<std::string, size_t> index;
  std::vector<std::vector<std::chrono::nanoseconds>> durations;
  for (const auto& t : tasks) {
    auto [it, inserted] = index.emplace(t.task_name, out.size());
    if (inserted) {
      out.push_back(TaskSummary{});
      out.back().task = t.task_name;
      durations.emplace_back();
    }
    TaskSummary& s = out[it->second];
    ++s.instances;
    s.wait = s.wait || t.wait;
    if (!IsEndedTaskState(t.state)) {
      ++s.not_ended;
    } else if (StoppedAtEnd(t)) {
      ++s.stopped;
    } else if (t.state == TaskState::kExited && t.exit_code && *t.exit_code == 0) {
      ++s.ok;
    } else {
      ++s.failed;
    }
    ++s.outcomes[TaskOutcome(t)];
    if (IsEndedTaskState(t.state) && t.start_unix_ns && t.end_unix_ns &&
        *t.end_unix_ns >= *t.start_unix_ns) {
      durations[it->second].emplace_back(*t.end_unix_ns - *t.start_unix_ns);
    }
  }
  for (size_t i = 0; i < out.size(); ++i) {
    auto& d = durations[i];
    if (d.empty()) continue;
    std::sort(d.begin(), d.end());
    out[i].min = d.front();
    out[i].max = d.back();
    out[i].median = d.size() % 2 ? d[d.size() / 2] : (d[d.size() / 2 - 1] + d[d.size() / 2]) / 2;
  }
  return out;
}

bool WaitedTasksSucceeded(const std::vector<TaskRecord>& tasks) {
  for (const auto& t : tasks) {
    if (!t.wait) continue;
    if (t.state != TaskState::kExited || !t.exit_code || *t.exit_code != 0) return false;
  }
  return true;
}

std::string FormatTaskTable(const std::vector<TaskSummary>& summary) {
  size_t wname = 4;
  for (const auto& s : summary) wname = std::max(wname, s.task.size() + (s.wait ? 1 : 0));
  std::ostringstream out;
  out << Pad("TASK", wname) << "  " << Pad("N", 5) << Pad("OK", 5) << Pad("FAIL", 5)
      << Pad("STOP", 5) << Pad("MIN", 10) << Pad("MEDIAN", 10) << Pad("MAX", 10) << "OUTCOMES\n";
  size_t n = 0, ok = 0, failed = 0, stopped = 0, not_ended = 0;
  for (const auto& s : summary) {
    std::string outcomes;
    for (const auto& [k, c] : s.outcomes) {
      if (!outcomes.empty()) outcomes += ", ";
      outcomes += k + " x" + std::to_string(c);
    }
    out << Pad(s.task + (s.wait ? "*" : ""), wname) << "  " << Pad(std::to_string(s.instances), 5)
        << Pad(std::to_string(s.ok), 5) << Pad(std::to_string(s.failed), 5)
        << Pad(std::to_string(s.stopped), 5) << Pad(FormatDur(s.min), 10)
        << Pad(FormatDur(s.median), 10) << Pad(FormatDur(s.max), 10) << outcomes << "\n";
    n += s.instances;
    ok += s.ok;
    failed += s.failed;
    stopped += s.stopped;
    not_ended += s.not_ended;
  }
  out << "tasks: " << n << " instances, " << ok << " ok, " << failed << " failed";
  if (stopped) out << ", " << stopped << " stopped at the end";
  if (not_ended) out << ", " << not_ended << " not ended";
  out << " (* = waited for)\n";
  return out.str();
}

std::string FormatSummary(const ResultsInput& in, const std::string& dir) {
  std::ostringstream out;
  const auto& e = in.experiment;
  out << "experiment " << e.id << " (" << e.name << ", seed " << e.seed << ", duration "
      << FormatTime(e.duration) << ")\n";
  out << "state: " << ExperimentStateName(in.final_state);
  if (!in.final_reason.empty()) out << " (" << in.final_reason << ")";
  out << "\n";
  if (in.start_unix_ns != 0) {
    out << "ran: " << FormatUnixTime(in.start_unix_ns) << " .. " << FormatUnixTime(in.end_unix_ns)
        << " (" << Seconds(in.end_unix_ns - in.start_unix_ns) << " s)\n";
  }
  if (in.placement && in.placement->vnodes_per_pnode.size() > 1) {
    char imb[32];
    std::snprintf(imb, sizeof(imb), "%.3f", in.placement->imbalance);
    out << "placement: " << in.placement->algorithm << " on "
        << in.placement->vnodes_per_pnode.size() << " pnodes, " << in.placement->cut_links
        << " cross-pnode links (" << FormatRate(in.placement->cut_rate_bps)
        << "), imbalance " << imb << " (max load / target load)\n";
  }
  out << "\n" << FormatTaskTable(SummarizeTasks(in.tasks));
  size_t applied = 0, failed = 0, missed = 0;
  for (const auto& r : in.events) {
    if (!r.error.empty() && r.applied_ns) {
      ++failed;
    } else if (r.applied_ns) {
      ++applied;
    } else if (!r.error.empty()) {
      ++failed;
    } else {
      ++missed;
    }
  }
  if (!in.events.empty()) {
    out << "events: " << applied << " applied, " << failed << " failed";
    if (missed) out << ", " << missed << " not reached";
    out << "\n";
  }
  for (const auto& n : in.notes) out << "note: " << n << "\n";
  out << "results: " << dir << "\n";
  return out.str();
}

Status WriteResults(const std::string& dir, const ResultsInput& in) {
  const auto& e = in.experiment;
  const int64_t t0 = in.start_unix_ns;

  // experiment.yaml
  GRIDEMU_RETURN_IF_ERROR(WriteFile(dir + "/experiment.yaml", e.yaml));

  // tasks.csv
  {
    std::ostringstream csv;
    csv << "task_id,task,index,vnode,state,start,end,duration,exit_code,signal,reason\n";
    for (const auto& t : in.tasks) {
      std::string duration;
      if (t.start_unix_ns && t.end_unix_ns) duration = Seconds(*t.end_unix_ns - *t.start_unix_ns);
      csv << CsvField(t.task_id) << ',' << CsvField(t.task_name) << ',' << t.index << ','
          << CsvField(t.vnode) << ',' << TaskStateName(t.state) << ','
          << RelSeconds(t.start_unix_ns, t0) << ',' << RelSeconds(t.end_unix_ns, t0) << ','
          << duration << ',' << (t.exit_code ? std::to_string(*t.exit_code) : "") << ','
          << (t.signal ? std::to_string(*t.signal) : "") << ',' << CsvField(t.reason) << '\n';
    }
    GRIDEMU_RETURN_IF_ERROR(WriteFile(dir + "/tasks.csv", csv.str()));
  }

  // events.csv
  {
    std::ostringstream csv;
    csv << "event,step,kind,target,planned,applied,lateness,error\n";
    for (const auto& r : in.events) {
      csv << r.event_index << ',' << r.step << ',' << CsvField(r.kind) << ',' << CsvField(r.target)
          << ',' << Seconds(r.planned_ns) << ',' << (r.applied_ns ? Seconds(*r.applied_ns) : "")
          << ',' << (r.applied_ns ? Seconds(*r.applied_ns - r.planned_ns) : "") << ','
          << CsvField(r.error) << '\n';
    }
    GRIDEMU_RETURN_IF_ERROR(WriteFile(dir + "/events.csv", csv.str()));
  }

  // metrics.csv
  {
    std::ostringstream csv;
    csv << "time,unix_ns,subject,metric,value\n";
    for (const auto& m : in.metrics) {
      char value[64];
      std::snprintf(value, sizeof(value), "%.17g", m.value);
      csv << (t0 ? Seconds(m.unix_ns - t0) : "") << ',' << m.unix_ns << ',' << CsvField(m.subject)
          << ',' << CsvField(m.name) << ',' << value << '\n';
    }
    GRIDEMU_RETURN_IF_ERROR(WriteFile(dir + "/metrics.csv", csv.str()));
  }

  // manifest.json
  {
    json pnodes = json::array();
    for (const auto& p : in.pnodes) {
      pnodes.push_back(json{{"host_id", p.host_id},
                            {"address", p.address},
                            {"kernel", p.kernel_release},
                            {"shaping_backend", p.shaping_backend},
                            {"agent_version", p.agent_version},
                            {"vnodes", p.vnodes}});
    }
    json placement = nullptr;
    if (in.placement) {
      json per = json::object();
      for (const auto& [h, n] : in.placement->vnodes_per_pnode) per[h] = n;
      placement = json{{"algorithm", in.placement->algorithm},
                       {"generation", in.placement->generation},
                       {"pnodes", in.placement->vnodes_per_pnode.size()},
                       {"vnodes_per_pnode", per},
                       {"cut_links", in.placement->cut_links},
                       {"cut_rate_bps", in.placement->cut_rate_bps},
                       {"imbalance", in.placement->imbalance},
                       {"vni_base", in.placement->vni_base},
                       {"vni_count", in.placement->vni_count}};
    }
    // One line per lost pnode (Store::AddLostVnodes()).
    json lost = json::array();
    {
      std::istringstream lines(in.experiment.lost_vnodes);
      for (std::string l; std::getline(lines, l);) {
        if (!l.empty()) lost.push_back(l);
      }
    }
    json transitions = json::array();
    for (const auto& t : in.transitions) {
      transitions.push_back(json{{"from", t.from ? json(ExperimentStateName(*t.from)) : json()},
                                 {"to", ExperimentStateName(t.to)},
                                 {"time", FormatUnixTime(t.unix_ns)},
                                 {"reason", t.reason}});
    }
    std::map<std::string, size_t> task_states;
    for (const auto& t : in.tasks) ++task_states[std::string(TaskStateName(t.state))];
    size_t applied = 0, failed = 0;
    for (const auto& r : in.events) {
      if (!r.error.empty()) {
        ++failed;
      } else if (r.applied_ns) {
        ++applied;
      }
    }
    json m = {
        {"gridemu_version", in.gridemu_version},
        {"experiment",
         {{"id", e.id},
          {"name", e.name},
          {"slice", e.slice},
          {"file", e.source_path},
          {"sha256", e.yaml_sha256},
          {"seed", e.seed},
          {"duration", FormatTime(e.duration)},
          {"duration_ns", e.duration.count()},
          {"vnodes", e.num_vnodes},
          {"links", e.num_links},
          {"generation", e.generation}}},
        {"state", ExperimentStateName(in.final_state)},
        {"reason", in.final_reason},
        {"submitted", FormatUnixTime(e.created_unix_ns)},
        {"start", t0 ? json(FormatUnixTime(t0)) : json()},
        {"start_unix_ns", t0 ? json(t0) : json()},
        {"end", FormatUnixTime(in.end_unix_ns)},
        {"end_unix_ns", in.end_unix_ns},
        {"pnodes", pnodes},
        {"placement", placement},
        {"lost_vnodes", lost},
        {"tasks", {{"total", in.tasks.size()}, {"by_state", task_states}}},
        {"events", {{"actions", in.events.size()}, {"applied", applied}, {"failed", failed}}},
        {"metrics", {{"samples", in.metrics.size()}}},
        {"collected_files", in.collected_files},
        {"notes", in.notes},
        {"transitions", transitions},
    };
    GRIDEMU_RETURN_IF_ERROR(WriteFile(dir + "/manifest.json", m.dump(2) + "\n"));
  }

  // summary.txt
  GRIDEMU_RETURN_IF_ERROR(WriteFile(dir + "/summary.txt", FormatSummary(in, dir)));

  // report.html: the same data as a self-contained page with plots.
  GRIDEMU_RETURN_IF_ERROR(WriteFile(dir + "/report.html", RenderReportHtml(in, dir)));
  return Status::Ok();
}

}  // namespace gridemu::controller

// StoreService: the ControllerService whose only work is the store.

#include <algorithm>
#include <fstream>
#include <sstream>
#include <utility>

#include "gridemu/controller/service.h"
#include "gridemu/experiments/parse.h"

namespace gridemu::controller {

std::string_view LogStreamName(LogStream s) {
  return s == LogStream::kStdout ? "stdout" : "stderr";
}

Result<LogStream> ParseLogStream(std::string_view s) {
  if (s == "stdout") return LogStream::kStdout;
  if (s == "stderr") return LogStream::kStderr;
  return InvalidArgumentError("unknown stream '" + std::string(s) +
                              "'; expected one of stdout, stderr");
}

Result<LogsResponse> ReadFileTail(const std::string& path, uint64_t tail_bytes) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) return NotFoundError("cannot read '" + path + "'");
  LogsResponse r;
  r.path = path;
  const std::streamoff end = in.tellg();
  r.size_bytes = end > 0 ? static_cast<uint64_t>(end) : 0;
  const uint64_t n = std::min(r.size_bytes, tail_bytes);
  r.truncated = n < r.size_bytes;
  in.seekg(static_cast<std::streamoff>(r.size_bytes - n));
  r.text.resize(n);
  in.read(r.text.data(), static_cast<std::streamsize>(n));
  r.text.resize(static_cast<size_t>(in.gcount()));
  return r;
}

StoreService::StoreService(Store& store, StoreServiceOptions options)
    : store_(store), options_(std::move(options)) {}

Status StoreService::Authorize(const std::string& slice, std::string_view token) {
  return store_.CheckSliceToken(slice, token);
}

Status StoreService::Health() { return store_.SchemaVersion().status(); }

Result<SubmitResponse> StoreService::Submit(const SubmitRequest& request) {
  if (!request.slice.empty()) {
    GRIDEMU_RETURN_IF_ERROR(store_.GetSlice(request.slice).status());
  }
  GRIDEMU_ASSIGN_OR_RETURN(
      experiments::Experiment exp,
      experiments::ParseExperiment(request.yaml, request.filename, options_.import_base_dir));
  std::string slice = exp.slice;
  if (!request.slice.empty()) {
    if (exp.slice != request.slice && exp.slice != "default") {
      return InvalidArgumentError(request.filename + ": slice: the file is for slice '" +
                                  exp.slice + "' but it was submitted to slice '" + request.slice +
                                  "'");
    }
    slice = request.slice;
  }
  CreateExperimentOptions options;
  options.slice = slice;
  options.reason = "submitted to slice " + slice;
  GRIDEMU_ASSIGN_OR_RETURN(ExperimentRecord rec,
                           store_.CreateExperiment(exp, request.yaml, options));
  return SubmitResponse{rec.id, rec.state};
}

Result<std::vector<ExperimentRecord>> StoreService::List(const std::string& slice) {
  GRIDEMU_RETURN_IF_ERROR(store_.GetSlice(slice).status());
  return store_.ListExperiments(slice);
}

Result<ExperimentRecord> StoreService::GetOwned(const std::string& slice, const std::string& id) {
  auto rec = store_.GetExperiment(id);
  if (!rec.ok()) return rec.status();
  // Another slice's experiment is reported exactly as a missing one.
  if (rec->slice != slice) return NotFoundError("unknown experiment '" + id + "'");
  return rec;
}

Result<ExperimentStatus> StoreService::GetStatus(const std::string& slice, const std::string& id) {
  ExperimentStatus st;
  GRIDEMU_ASSIGN_OR_RETURN(st.experiment, GetOwned(slice, id));
  GRIDEMU_ASSIGN_OR_RETURN(st.transitions, store_.ListTransitions(id));
  GRIDEMU_ASSIGN_OR_RETURN(st.tasks_by_state, store_.CountTasksByState(id));
  GRIDEMU_ASSIGN_OR_RETURN(std::vector<EventRecord> events, store_.ListEvents(id));
  for (const auto& e : events) ++st.events_by_state[std::string(EventStateName(e.state))];
  GRIDEMU_ASSIGN_OR_RETURN(st.placement, store_.GetPlacement(id));
  return st;
}

Result<ExperimentState> StoreService::Cancel(const std::string& slice, const std::string& id) {
  GRIDEMU_ASSIGN_OR_RETURN(ExperimentRecord rec, GetOwned(slice, id));
  if (IsFinalState(rec.state)) {
    return FailedPreconditionError("experiment " + id + " is already " +
                                   std::string(ExperimentStateName(rec.state)));
  }
  using S = ExperimentState;
  if (rec.state != S::kSubmitted && rec.state != S::kPlaced && rec.state != S::kCancelling) {
    GRIDEMU_RETURN_IF_ERROR(store_.Transition(id, S::kCancelling, "cancel requested"));
  }
  const char* reason = rec.state == S::kSubmitted || rec.state == S::kPlaced
                           ? "cancel requested; nothing was deployed"
                           : "cancel requested; no agents to tear down";
  Status s = store_.Transition(id, S::kCancelled, reason);
  if (!s.ok()) {
    // A concurrent cancel or end may have won the race: report the state it left.
    auto now = store_.GetExperiment(id);
    if (now.ok() && IsFinalState(now->state)) {
      return FailedPreconditionError("experiment " + id + " is already " +
                                     std::string(ExperimentStateName(now->state)));
    }
    return s;
  }
  return S::kCancelled;
}

Result<LogsResponse> StoreService::Logs(const std::string& slice, const std::string& id,
                                        const std::string& task_id, LogStream stream,
                                        uint64_t tail_bytes) {
  GRIDEMU_RETURN_IF_ERROR(GetOwned(slice, id).status());
  GRIDEMU_ASSIGN_OR_RETURN(TaskRecord task, store_.GetTask(id, task_id));
  const std::string& path = stream == LogStream::kStdout ? task.stdout_path : task.stderr_path;
  if (path.empty()) {
    return NotFoundError("task " + task_id + " of experiment " + id + " has no " +
                         std::string(LogStreamName(stream)) + " yet (state " +
                         std::string(TaskStateName(task.state)) + ")");
  }
  auto r = ReadFileTail(path, tail_bytes);
  if (!r.ok()) {
    return NotFoundError("the " + std::string(LogStreamName(stream)) + " of task " + task_id +
                         " of experiment " + id + " is not readable: " + r.status().message());
  }
  r->task_id = task_id;
  r->stream = stream;
  return r;
}

Result<ResultsResponse> StoreService::Results(const std::string& slice, const std::string& id) {
  GRIDEMU_ASSIGN_OR_RETURN(ExperimentRecord rec, GetOwned(slice, id));
  ResultsResponse r;
  r.id = rec.id;
  r.state = rec.state;
  r.results_dir = rec.results_dir;
  if (!r.results_dir.empty()) {
    std::ifstream in(r.results_dir + "/manifest.json", std::ios::binary);
    if (in) {
      std::ostringstream text;
      text << in.rdbuf();
      r.manifest_json = text.str();
    }
  }
  GRIDEMU_ASSIGN_OR_RETURN(r.entries, store_.ListResults(id));
  return r;
}

Result<std::vector<HostRecord>> StoreService::Hosts() { return store_.ListHosts(); }

}  // namespace gridemu::controller

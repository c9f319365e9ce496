// What the controller offers its clients (the HTTP API, the embedded
// `gridemu run`): submit, list, status, cancel, logs and results of
// experiments, each scoped to a slice (DESIGN.md §8, §9). The HTTP layer
// (http_api.h) only translates requests and answers; the work is here.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "gridemu/common/status.h"
#include "gridemu/controller/store.h"

namespace gridemu::controller {

/// A task's output stream.
enum class LogStream { kStdout, kStderr };
/// "stdout", "stderr".
std::string_view LogStreamName(LogStream s);
/// Parses a LogStreamName(); kInvalidArgument naming the choices.
Result<LogStream> ParseLogStream(std::string_view s);

/// Input of ControllerService::Submit().
struct SubmitRequest {
  /// The submitting slice. "" = the file's `slice:`. When set, the file's
  /// `slice:` must be the same or 'default' (which it is when omitted).
  std::string slice;
  std::string yaml;                          ///< the experiment file's text
  std::string filename = "experiment.yaml";  ///< used in diagnostics and stored
  /// `prepare:` and `analyze:` run commands on the host: only `gridemu run`
  /// (which sets this) may submit such a file; a shared controller refuses it.
  bool allow_host_commands = false;
  /// When set, replaces the file's `shared:` directory (gridemu run passes the
  /// copy its `prepare:` commands ran in).
  std::string shared_dir;
};

/// Output of ControllerService::Submit().
struct SubmitResponse {
  std::string id;
  ExperimentState state = ExperimentState::kSubmitted;
};

/// Output of ControllerService::GetStatus().
struct ExperimentStatus {
  ExperimentRecord experiment;  ///< with yaml
  std::vector<TransitionRecord> transitions;
  std::map<std::string, uint64_t> tasks_by_state;   ///< TaskStateName() -> count
  std::map<std::string, uint64_t> events_by_state;  ///< EventStateName() -> count
  std::optional<PlacementSummary> placement;        ///< unset until placed
};

/// Output of ControllerService::Logs().
struct LogsResponse {
  std::string task_id;
  LogStream stream = LogStream::kStdout;
  std::string path;         ///< where the output is stored
  uint64_t size_bytes = 0;  ///< the whole output's size
  std::string text;         ///< its last bytes (may cut a UTF-8 sequence)
  bool truncated = false;   ///< text is shorter than the whole output
};

/// Output of ControllerService::Results().
struct ResultsResponse {
  std::string id;
  ExperimentState state = ExperimentState::kSubmitted;
  std::string results_dir;                     ///< "" until results exist
  std::string manifest_json;                   ///< results_dir/manifest.json's text, "" if none
  std::map<std::string, std::string> entries;  ///< stored result entries (key -> value/path)
};

/// The controller's operations, as the HTTP API calls them.
///
/// Every call names the caller's slice; an experiment of another slice is
/// reported exactly as an unknown one (kNotFound "unknown experiment 'x'").
/// Errors (the HTTP layer maps them to status codes):
///   kInvalidArgument  the submitted file is invalid; the message holds every
///                     diagnostic, one per line "file:line:column: message"
///   kNotFound         unknown slice ("unknown slice 'x'"), experiment, task, output
///   kPermissionDenied wrong or missing slice token
///   kFailedPrecondition the experiment's state forbids it (cancel of a final one)
///   kResourceExhausted the slice's quota would be exceeded
///   kUnavailable / kInternal  the store failed
/// Thread-safety: implementations are thread-safe.
class ControllerService {
 public:
  virtual ~ControllerService() = default;

  /// Ok when `token` may act for `slice` (always, for a slice without a
  /// token); kPermissionDenied otherwise; kNotFound for an unknown slice.
  virtual Status Authorize(const std::string& slice, std::string_view token) = 0;
  /// Ok when the service can serve requests (its store answers).
  virtual Status Health() = 0;

  /// Validates and stores an experiment; it starts in state submitted.
  /// Nothing is stored when it fails.
  virtual Result<SubmitResponse> Submit(const SubmitRequest& request) = 0;
  /// The slice's experiments, oldest first, without YAML.
  virtual Result<std::vector<ExperimentRecord>> List(const std::string& slice) = 0;
  /// State, transitions, task and event counts, placement.
  virtual Result<ExperimentStatus> GetStatus(const std::string& slice, const std::string& id) = 0;
  /// Cancels an experiment that is not final; returns its new state
  /// (cancelling or cancelled). kFailedPrecondition "experiment x is already
  /// finished" when it is final.
  virtual Result<ExperimentState> Cancel(const std::string& slice, const std::string& id) = 0;
  /// The last `tail_bytes` bytes of a task instance's output ("leech/3").
  virtual Result<LogsResponse> Logs(const std::string& slice, const std::string& id,
                                    const std::string& task_id, LogStream stream,
                                    uint64_t tail_bytes) = 0;
  /// The results directory and manifest (empty until the results exist).
  virtual Result<ResultsResponse> Results(const std::string& slice, const std::string& id) = 0;
  /// Every pnode an agent ever registered, by host id, with its state (up,
  /// down, ...), underlay address, capacity and last heartbeat.
  virtual Result<std::vector<HostRecord>> Hosts() = 0;
};

/// Options of StoreService.
struct StoreServiceOptions {
  /// Where relative paths in submitted files (topology `import: gml:`) start.
  std::string import_base_dir = ".";
};

/// A ControllerService whose only work is the store: Submit parses with
/// experiments::ParseExperiment() and stores (state submitted); Cancel moves
/// a non-final experiment to cancelled (through cancelling when it was
/// deploying or later: there are no agents to tear down); Logs reads the
/// output files recorded for the task. Nothing drives agents.
/// Thread-safe (the Store is). The Store must outlive it.
class StoreService : public ControllerService {
 public:
  explicit StoreService(Store& store, StoreServiceOptions options = {});

  Status Authorize(const std::string& slice, std::string_view token) override;
  Status Health() override;
  Result<SubmitResponse> Submit(const SubmitRequest& request) override;
  Result<std::vector<ExperimentRecord>> List(const std::string& slice) override;
  Result<ExperimentStatus> GetStatus(const std::string& slice, const std::string& id) override;
  Result<ExperimentState> Cancel(const std::string& slice, const std::string& id) override;
  Result<LogsResponse> Logs(const std::string& slice, const std::string& id,
                            const std::string& task_id, LogStream stream,
                            uint64_t tail_bytes) override;
  Result<ResultsResponse> Results(const std::string& slice, const std::string& id) override;
  Result<std::vector<HostRecord>> Hosts() override;

 protected:
  /// The experiment if it exists and belongs to `slice` (kNotFound otherwise).
  Result<ExperimentRecord> GetOwned(const std::string& slice, const std::string& id);
  Store& store() { return store_; }

 private:
  Store& store_;
  const StoreServiceOptions options_;
};

/// Reads at most the last `tail_bytes` bytes of the file at `path`.
/// kNotFound when it cannot be opened. Thread-safe.
Result<LogsResponse> ReadFileTail(const std::string& path, uint64_t tail_bytes);

}  // namespace gridemu::controller

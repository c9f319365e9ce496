#include "gridemu/controller/store.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <utility>

#include "gridemu/common/clock.h"
#include "gridemu/common/units.h"
#include "store_schema.h"
#include "store_sqlite.h"

namespace gridemu::controller {

using store_internal::SqliteDb;
using store_internal::Stmt;
using store_internal::Txn;

// ---------------------------------------------------------------------------
// Names

namespace {

template <typename E, size_t N>
Result<E> ParseName(std::string_view s, const std::array<std::pair<E, std::string_view>, N>& names,
                    std::string_view what) {
  std::string choices;
  for (const auto& [e, name] : names) {
    if (name == s) return e;
    if (!choices.empty()) choices += ", ";
    choices += name;
  }
  return InvalidArgumentError("unknown " + std::string(what) + " '" + std::string(s) +
                              "'; expected one of " + choices);
}

template <typename E, size_t N>
std::string_view NameOf(E e, const std::array<std::pair<E, std::string_view>, N>& names) {
  for (const auto& [v, name] : names) {
    if (v == e) return name;
  }
  return "unknown";
}

constexpr std::array<std::pair<ExperimentState, std::string_view>, 9> kExperimentStates = {{
    {ExperimentState::kSubmitted, "submitted"},
    {ExperimentState::kPlaced, "placed"},
    {ExperimentState::kDeploying, "deploying"},
    {ExperimentState::kRunning, "running"},
    {ExperimentState::kCollecting, "collecting"},
    {ExperimentState::kCancelling, "cancelling"},
    {ExperimentState::kFinished, "finished"},
    {ExperimentState::kFailed, "failed"},
    {ExperimentState::kCancelled, "cancelled"},
}};

constexpr std::array<std::pair<TaskState, std::string_view>, 7> kTaskStates = {{
    {TaskState::kPending, "pending"},
    {TaskState::kStarting, "starting"},
    {TaskState::kRunning, "running"},
    {TaskState::kExited, "exited"},
    {TaskState::kKilled, "killed"},
    {TaskState::kFailed, "failed"},
    {TaskState::kLost, "lost"},
}};

constexpr std::array<std::pair<EventState, std::string_view>, 3> kEventStates = {{
    {EventState::kPending, "pending"},
    {EventState::kApplied, "applied"},
    {EventState::kFailed, "failed"},
}};

constexpr std::array<std::pair<HostState, std::string_view>, 4> kHostStates = {{
    {HostState::kUp, "up"},
    {HostState::kSuspect, "suspect"},
    {HostState::kDown, "down"},
    {HostState::kDrained, "drained"},
}};

}  // namespace

std::string_view ExperimentStateName(ExperimentState s) { return NameOf(s, kExperimentStates); }
Result<ExperimentState> ParseExperimentState(std::string_view s) {
  return ParseName(s, kExperimentStates, "experiment state");
}
std::string_view TaskStateName(TaskState s) { return NameOf(s, kTaskStates); }
Result<TaskState> ParseTaskState(std::string_view s) {
  return ParseName(s, kTaskStates, "task state");
}
std::string_view EventStateName(EventState s) { return NameOf(s, kEventStates); }
Result<EventState> ParseEventState(std::string_view s) {
  return ParseName(s, kEventStates, "event state");
}
std::string_view HostStateName(HostState s) { return NameOf(s, kHostStates); }
Result<HostState> ParseHostState(std::string_view s) {
  return ParseName(s, kHostStates, "host state");
}

bool IsFinalState(ExperimentState s) {
  return s == ExperimentState::kFinished || s == ExperimentState::kFailed ||
         s == ExperimentState::kCancelled;
}

bool IsEndedTaskState(TaskState s) {
  return s == TaskState::kExited || s == TaskState::kKilled || s == TaskState::kFailed ||
         s == TaskState::kLost;
}

bool IsLegalTransition(ExperimentState from, ExperimentState to) {
  using S = ExperimentState;
  if (IsFinalState(from)) return false;
  if (to == S::kFailed) return true;  // from any non-final state
  switch (from) {
    case S::kSubmitted:
      return to == S::kPlaced || to == S::kCancelling || to == S::kCancelled;
    case S::kPlaced:
      return to == S::kDeploying || to == S::kCancelling || to == S::kCancelled;
    case S::kDeploying:
      return to == S::kRunning || to == S::kCancelling;
    case S::kRunning:
      return to == S::kCollecting || to == S::kCancelling;
    case S::kCollecting:
      return to == S::kFinished || to == S::kCancelling;
    case S::kCancelling:
      return to == S::kCancelled;
    default:
      return false;
  }
}

std::string Sha256Hex(std::string_view data) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_Digest(data.data(), data.size(), digest, &len, EVP_sha256(), nullptr) != 1) {
    return {};
  }
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(2 * len);
  for (unsigned int i = 0; i < len; ++i) {
    out += kHex[digest[i] >> 4];
    out += kHex[digest[i] & 0xf];
  }
  return out;
}

// ---------------------------------------------------------------------------
// Helpers (all called with the store's mutex held)

namespace {

constexpr std::string_view kFinalStatesSql = "('finished', 'failed', 'cancelled')";

Status UnknownExperiment(const std::string& id) {
  return NotFoundError("unknown experiment '" + id + "'");
}

Status UnknownSlice(const std::string& name) {
  return NotFoundError("unknown slice '" + name + "'");
}

Status Corrupt(std::string_view what, const Status& s) {
  return InternalError("database holds an invalid " + std::string(what) + ": " + s.message());
}

std::optional<std::string> NullIfEmpty(const std::string& s) {
  if (s.empty()) return std::nullopt;
  return s;
}

// The integer key of experiment `id`.
Result<int64_t> ExpSeq(SqliteDb& db, const std::string& id) {
  GRIDEMU_ASSIGN_OR_RETURN(Stmt st, db.Prepare("SELECT seq FROM experiments WHERE id = ?"));
  st.Bind(id);
  GRIDEMU_ASSIGN_OR_RETURN(bool row, st.Step());
  if (!row) return UnknownExperiment(id);
  return st.Int(0);
}

constexpr std::string_view kExperimentColumns =
    "id, slice, name, state, yaml_sha256, source_path, seed, duration_ns, generation, "
    "num_vnodes, num_links, num_tasks, num_events, created_unix_ns, updated_unix_ns, "
    "results_dir, failure_reason, vni_base, vni_count, lost_vnodes";

Result<ExperimentRecord> ReadExperimentRow(const Stmt& st) {
  ExperimentRecord r;
  r.id = st.Text(0);
  r.slice = st.Text(1);
  r.name = st.Text(2);
  auto state = ParseExperimentState(st.Text(3));
  if (!state.ok()) return Corrupt("experiment state", state.status());
  r.state = *state;
  r.yaml_sha256 = st.Text(4);
  r.source_path = st.Text(5);
  r.seed = static_cast<uint64_t>(st.Int(6));
  r.duration = std::chrono::nanoseconds(st.Int(7));
  r.generation = static_cast<uint64_t>(st.Int(8));
  r.num_vnodes = static_cast<uint64_t>(st.Int(9));
  r.num_links = static_cast<uint64_t>(st.Int(10));
  r.num_tasks = static_cast<uint64_t>(st.Int(11));
  r.num_events = static_cast<uint64_t>(st.Int(12));
  r.created_unix_ns = st.Int(13);
  r.updated_unix_ns = st.Int(14);
  r.results_dir = st.Text(15);
  r.failure_reason = st.Text(16);
  r.vni_base = static_cast<uint32_t>(st.OptInt(17).value_or(0));
  r.vni_count = static_cast<uint32_t>(st.OptInt(18).value_or(0));
  r.lost_vnodes = st.Text(19);
  return r;
}

Result<ExperimentRecord> ReadExperiment(SqliteDb& db, const std::string& id) {
  static const std::string sql =
      "SELECT " + std::string(kExperimentColumns) + ", yaml FROM experiments WHERE id = ?";
  GRIDEMU_ASSIGN_OR_RETURN(Stmt st, db.Prepare(sql));
  st.Bind(id);
  GRIDEMU_ASSIGN_OR_RETURN(bool row, st.Step());
  if (!row) return UnknownExperiment(id);
  GRIDEMU_ASSIGN_OR_RETURN(ExperimentRecord r, ReadExperimentRow(st));
  r.yaml = st.Text(20);
  return r;
}

Result<std::vector<TransitionRecord>> ReadTransitions(SqliteDb& db, int64_t seq) {
  GRIDEMU_ASSIGN_OR_RETURN(
      Stmt st, db.Prepare("SELECT from_state, to_state, unix_ns, reason FROM transitions "
                          "WHERE exp = ? ORDER BY n"));
  st.Bind(seq);
  std::vector<TransitionRecord> out;
  while (true) {
    GRIDEMU_ASSIGN_OR_RETURN(bool row, st.Step());
    if (!row) break;
    TransitionRecord t;
    if (!st.IsNull(0)) {
      auto from = ParseExperimentState(st.Text(0));
      if (!from.ok()) return Corrupt("transition", from.status());
      t.from = *from;
    }
    auto to = ParseExperimentState(st.Text(1));
    if (!to.ok()) return Corrupt("transition", to.status());
    t.to = *to;
    t.unix_ns = st.Int(2);
    t.reason = st.Text(3);
    out.push_back(std::move(t));
  }
  return out;
}

Result<std::vector<TaskRecord>> ReadTasks(SqliteDb& db, int64_t seq,
                                          std::optional<std::string> task_id) {
  static const std::string base =
      "SELECT t.task_id, t.task_name, t.idx, t.vnode_id, v.name, t.planned_start_ns, t.wait, "
      "t.state, t.exit_code, t.signal, t.reason, t.start_unix_ns, t.end_unix_ns, t.stdout_path, "
      "t.stderr_path FROM tasks t JOIN vnodes v ON v.exp = t.exp AND v.vnode_id = t.vnode_id "
      "WHERE t.exp = ?";
  static const std::string all = base + " ORDER BY t.ord";
  static const std::string one = base + " AND t.task_id = ?";
  GRIDEMU_ASSIGN_OR_RETURN(Stmt st, db.Prepare(task_id ? one : all));
  st.Bind(seq);
  if (task_id) st.Bind(*task_id);
  std::vector<TaskRecord> out;
  while (true) {
    GRIDEMU_ASSIGN_OR_RETURN(bool row, st.Step());
    if (!row) break;
    TaskRecord t;
    t.task_id = st.Text(0);
    t.task_name = st.Text(1);
    t.index = static_cast<uint32_t>(st.Int(2));
    t.vnode_id = static_cast<uint32_t>(st.Int(3));
    t.vnode = st.Text(4);
    t.planned_start_ns = st.Int(5);
    t.wait = st.Int(6) != 0;
    auto state = ParseTaskState(st.Text(7));
    if (!state.ok()) return Corrupt("task state", state.status());
    t.state = *state;
    if (!st.IsNull(8)) t.exit_code = static_cast<int>(st.Int(8));
    if (!st.IsNull(9)) t.signal = static_cast<int>(st.Int(9));
    t.reason = st.Text(10);
    t.start_unix_ns = st.OptInt(11);
    t.end_unix_ns = st.OptInt(12);
    t.stdout_path = st.Text(13);
    t.stderr_path = st.Text(14);
    out.push_back(std::move(t));
  }
  return out;
}

Result<std::vector<EventRecord>> ReadEvents(SqliteDb& db, int64_t seq) {
  GRIDEMU_ASSIGN_OR_RETURN(
      Stmt st, db.Prepare("SELECT idx, kind, target, detail, at_ns, state, applied_ns, error "
                          "FROM events WHERE exp = ? ORDER BY idx"));
  st.Bind(seq);
  std::vector<EventRecord> out;
  while (true) {
    GRIDEMU_ASSIGN_OR_RETURN(bool row, st.Step());
    if (!row) break;
    EventRecord e;
    e.index = static_cast<uint32_t>(st.Int(0));
    e.kind = st.Text(1);
    e.target = st.Text(2);
    e.detail = st.Text(3);
    e.at_ns = st.Int(4);
    auto state = ParseEventState(st.Text(5));
    if (!state.ok()) return Corrupt("event state", state.status());
    e.state = *state;
    e.applied_ns = st.OptInt(6);
    e.error = st.Text(7);
    out.push_back(std::move(e));
  }
  return out;
}

Result<std::optional<PlacementSummary>> ReadPlacement(SqliteDb& db, int64_t seq) {
  GRIDEMU_ASSIGN_OR_RETURN(
      Stmt st, db.Prepare("SELECT generation, algorithm, cut_links, cut_rate_bps, imbalance, "
                          "unix_ns FROM placements WHERE exp = ? ORDER BY generation DESC "
                          "LIMIT 1"));
  st.Bind(seq);
  GRIDEMU_ASSIGN_OR_RETURN(bool row, st.Step());
  if (!row) return std::optional<PlacementSummary>();
  PlacementSummary p;
  p.generation = static_cast<uint64_t>(st.Int(0));
  p.algorithm = st.Text(1);
  p.cut_links = static_cast<uint64_t>(st.Int(2));
  p.cut_rate_bps = static_cast<uint64_t>(st.Int(3));
  p.imbalance = st.Double(4);
  p.unix_ns = st.Int(5);
  st.Reset();
  GRIDEMU_ASSIGN_OR_RETURN(
      Stmt counts, db.Prepare("SELECT pnode, COUNT(*) FROM vnodes WHERE exp = ? AND pnode IS "
                              "NOT NULL GROUP BY pnode"));
  counts.Bind(seq);
  while (true) {
    GRIDEMU_ASSIGN_OR_RETURN(bool r, counts.Step());
    if (!r) break;
    p.vnodes_per_pnode[counts.Text(0)] = static_cast<uint64_t>(counts.Int(1));
  }
  counts.Reset();
  GRIDEMU_ASSIGN_OR_RETURN(Stmt vni,
                           db.Prepare("SELECT vni_base, vni_count FROM experiments WHERE seq = ?"));
  vni.Bind(seq);
  GRIDEMU_ASSIGN_OR_RETURN(bool vrow, vni.Step());
  if (vrow) {
    p.vni_base = static_cast<uint32_t>(vni.OptInt(0).value_or(0));
    p.vni_count = static_cast<uint32_t>(vni.OptInt(1).value_or(0));
  }
  return std::optional<PlacementSummary>(std::move(p));
}

// A human-readable summary of what an event does (the events.detail column).
std::string EventDetail(const experiments::Event& e) {
  using experiments::EventKind;
  switch (e.kind) {
    case EventKind::kLinkSet:
      if (e.forward == e.reverse) return e.forward.ToString();
      return "forward: " + e.forward.ToString() + "; reverse: " + e.reverse.ToString();
    case EventKind::kLinkDown:
      return "down";
    case EventKind::kLinkUp:
      return "up";
    case EventKind::kNodeAction:
      return std::string(experiments::NodeActionName(e.action)) + " " +
             std::to_string(e.targets.size()) + " vnode(s)";
    case EventKind::kChurn: {
      std::string s = "rate " + std::to_string(e.churn.rate_per_s) + "/s, down for " +
                      FormatTime(e.churn.down_for);
      if (e.churn.until) s += ", until " + FormatTime(*e.churn.until);
      return s;
    }
  }
  return "";
}

std::string EventTarget(const experiments::Event& e) {
  using experiments::EventKind;
  switch (e.kind) {
    case EventKind::kLinkSet:
    case EventKind::kLinkDown:
    case EventKind::kLinkUp:
      return e.link;
    case EventKind::kNodeAction:
      return e.nodes;
    case EventKind::kChurn:
      return e.churn.group;
  }
  return "";
}

Status Migrate(SqliteDb& db, const std::string& path) {
  const auto& migrations = store_internal::Migrations();
  const int latest = static_cast<int>(migrations.size());
  while (true) {
    Txn txn(db);
    GRIDEMU_RETURN_IF_ERROR(txn.BeginWrite());
    GRIDEMU_RETURN_IF_ERROR(
        db.Exec("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)",
                "creating table schema_version"));
    int version = 0;
    {
      GRIDEMU_ASSIGN_OR_RETURN(Stmt st, db.Prepare("SELECT MAX(version) FROM schema_version"));
      GRIDEMU_ASSIGN_OR_RETURN(bool row, st.Step());
      if (row && !st.IsNull(0)) {
        version = static_cast<int>(st.Int(0));
      } else {
        GRIDEMU_RETURN_IF_ERROR(
            db.Exec("INSERT INTO schema_version (version) VALUES (0)", "initialising schema"));
      }
    }
    if (version > latest) {
      return FailedPreconditionError("database '" + path + "' has schema version " +
                                     std::to_string(version) + ", newer than this gridemu knows (" +
                                     std::to_string(latest) +
                                     "); use a newer gridemu or another database");
    }
    if (version < 0) {
      return FailedPreconditionError("database '" + path + "' has an invalid schema version " +
                                     std::to_string(version));
    }
    if (version == latest) return txn.Commit();
    GRIDEMU_RETURN_IF_ERROR(
        db.Exec(migrations[static_cast<size_t>(version)],
                "applying schema migration " + std::to_string(version + 1) + " to '" + path + "'"));
    {
      GRIDEMU_ASSIGN_OR_RETURN(Stmt st, db.Prepare("UPDATE schema_version SET version = ?"));
      st.Bind(version + 1);
      GRIDEMU_RETURN_IF_ERROR(st.Run());
    }
    GRIDEMU_RETURN_IF_ERROR(txn.Commit());
  }
}

}  // namespace

// ---------------------------------------------------------------------------
// Store

Store::Store(std::string path, StoreOptions options, std::unique_ptr<SqliteDb> db)
    : path_(std::move(path)), options_(std::move(options)), db_(std::move(db)) {}

Store::~Store() = default;

int Store::LatestSchemaVersion() { return static_cast<int>(store_internal::Migrations().size()); }

int64_t Store::Now() const {
  if (options_.now_unix_ns) return options_.now_unix_ns();
  return UnixNanosNow();
}

Result<std::unique_ptr<Store>> Store::Open(const std::string& path, StoreOptions options) {
  GRIDEMU_ASSIGN_OR_RETURN(std::unique_ptr<SqliteDb> db, SqliteDb::Open(path));
  sqlite3_busy_timeout(db->raw(), static_cast<int>(options.busy_timeout.count()));
  GRIDEMU_RETURN_IF_ERROR(db->Exec("PRAGMA foreign_keys = ON", "opening '" + path + "'"));
  // WAL for files (":memory:" stays "memory"); NORMAL sync is durable across
  // a controller crash (only an OS crash may lose the latest transactions).
  GRIDEMU_RETURN_IF_ERROR(db->Exec("PRAGMA journal_mode = WAL", "opening '" + path + "'"));
  GRIDEMU_RETURN_IF_ERROR(db->Exec("PRAGMA synchronous = NORMAL", "opening '" + path + "'"));
  GRIDEMU_RETURN_IF_ERROR(Migrate(*db, path));
  return std::unique_ptr<Store>(new Store(path, std::move(options), std::move(db)));
}

Result<int> Store::SchemaVersion() {
  std::lock_guard lock(mu_);
  GRIDEMU_ASSIGN_OR_RETURN(Stmt st, db_->Prepare("SELECT MAX(version) FROM schema_version"));
  GRIDEMU_ASSIGN_OR_RETURN(bool row, st.Step());
  if (!row) return InternalError("schema_version is empty");
  return static_cast<int>(st.Int(0));
}

Result<std::string> Store::JournalMode() {
  std::lock_guard lock(mu_);
  GRIDEMU_ASSIGN_OR_RETURN(Stmt st, db_->Prepare("PRAGMA journal_mode"));
  GRIDEMU_ASSIGN_OR_RETURN(bool row, st.Step());
  if (!row) return InternalError("PRAGMA journal_mode returned nothing");
  return st.Text(0);
}

// --- Slices -----------------------------------------------------------------

Status Store::CreateSlice(const SliceRecord& slice, std::string_view token) {
  if (!experiments::IsValidExperimentName(slice.name)) {
    return InvalidArgumentError("invalid slice name '" + slice.name +
                                "': expected 1-63 characters of [a-z0-9-]");
  }
  std::lock_guard lock(mu_);
  GRIDEMU_ASSIGN_OR_RETURN(
      Stmt st, db_->Prepare("INSERT INTO slices (name, max_vnodes, max_cpu, max_memory_bytes, "
                            "token_hash, created_unix_ns) VALUES (?, ?, ?, ?, ?, ?)"));
  std::optional<std::string> hash;
  if (!token.empty()) hash = Sha256Hex(token);
  st.Bind(slice.name, slice.max_vnodes, slice.max_cpu, slice.max_memory_bytes, hash, Now());
  Status s = st.Run();
  if (s.code() == StatusCode::kAlreadyExists) {
    return AlreadyExistsError("slice '" + slice.name + "' exists already");
  }
  return s;
}

Result<SliceRecord> Store::GetSlice(const std::string& name) {
  std::lock_guard lock(mu_);
  GRIDEMU_ASSIGN_OR_RETURN(
      Stmt st, db_->Prepare("SELECT name, max_vnodes, max_cpu, max_memory_bytes, token_hash IS "
                            "NOT NULL, created_unix_ns FROM slices WHERE name = ?"));
  st.Bind(name);
  GRIDEMU_ASSIGN_OR_RETURN(bool row, st.Step());
  if (!row) return UnknownSlice(name);
  SliceRecord r;
  r.name = st.Text(0);
  if (!st.IsNull(1)) r.max_vnodes = static_cast<uint64_t>(st.Int(1));
  r.max_cpu = st.OptDouble(2);
  if (!st.IsNull(3)) r.max_memory_bytes = static_cast<uint64_t>(st.Int(3));
  r.has_token = st.Int(4) != 0;
  r.created_unix_ns = st.Int(5);
  return r;
}

Result<std::vector<SliceRecord>> Store::ListSlices() {
  std::vector<std::string> names;
  {
    std::lock_guard lock(mu_);
    GRIDEMU_ASSIGN_OR_RETURN(Stmt st, db_->Prepare("SELECT name FROM slices ORDER BY name"));
    while (true) {
      GRIDEMU_ASSIGN_OR_RETURN(bool row, st.Step());
      if (!row) break;
      names.push_back(st.Text(0));
    }
  }
  std::vector<SliceRecord> out;
  for (const auto& n : names) {
    auto r = GetSlice(n);
    if (r.ok()) out.push_back(std::move(r).value());  // a slice deleted meanwhile is skipped
  }
  return out;
}

Status Store::SetSliceToken(const std::string& name, std::string_view token) {
  std::lock_guard lock(mu_);
  GRIDEMU_ASSIGN_OR_RETURN(Stmt st,
                           db_->Prepare("UPDATE slices SET token_hash = ? WHERE name = ?"));
  std::optional<std::string> hash;
  if (!token.empty()) hash = Sha256Hex(token);
  st.Bind(hash, name);
  GRIDEMU_RETURN_IF_ERROR(st.Run());
  if (db_->Changes() == 0) return UnknownSlice(name);
  return Status::Ok();
}

Status Store::CheckSliceToken(const std::string& name, std::string_view token) {
  std::optional<std::string> stored;
  {
    std::lock_guard lock(mu_);
    GRIDEMU_ASSIGN_OR_RETURN(Stmt st, db_->Prepare("SELECT token_hash FROM slices WHERE name = ?"));
    st.Bind(name);
    GRIDEMU_ASSIGN_OR_RETURN(bool row, st.Step());
    if (!row) return UnknownSlice(name);
    if (!st.IsNull(0)) stored = st.Text(0);
  }
  if (!stored) return Status::Ok();
  std::string given = Sha256Hex(token);
  if (!token.empty() && given.size() == stored->size() &&
      CRYPTO_memcmp(given.data(), stored->data(), given.size()) == 0) {
    return Status::Ok();
  }
  return PermissionDeniedError(token.empty() ? "slice '" + name + "' needs an API token"
                                             : "wrong API token for slice '" + name + "'");
}

// --- Hosts --------------------------------------------------------------------

Status Store::UpsertHost(const HostRecord& host) {
  if (host.host_id.empty()) return InvalidArgumentError("empty host id");
  std::lock_guard lock(mu_);
  GRIDEMU_ASSIGN_OR_RETURN(
      Stmt st,
      db_->Prepare("INSERT INTO hosts (host_id, address, cores, memory_bytes, max_vnodes, state, "
                   "last_heartbeat_unix_ns, registered_unix_ns) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
                   "ON CONFLICT (host_id) DO UPDATE SET address = excluded.address, cores = "
                   "excluded.cores, memory_bytes = excluded.memory_bytes, max_vnodes = "
                   "excluded.max_vnodes, state = excluded.state, last_heartbeat_unix_ns = "
                   "COALESCE(excluded.last_heartbeat_unix_ns, last_heartbeat_unix_ns)"));
  st.Bind(host.host_id, host.address, host.cores, host.memory_bytes, host.max_vnodes,
          HostStateName(host.state), host.last_heartbeat_unix_ns, Now());
  return st.Run();
}

Status Store::RecordHeartbeat(const std::string& host_id, std::optional<int64_t> unix_ns) {
  std::lock_guard lock(mu_);
  GRIDEMU_ASSIGN_OR_RETURN(
      Stmt st, db_->Prepare("UPDATE hosts SET last_heartbeat_unix_ns = ? WHERE host_id = ?"));
  st.Bind(unix_ns.value_or(Now()), host_id);
  GRIDEMU_RETURN_IF_ERROR(st.Run());
  if (db_->Changes() == 0) return NotFoundError("unknown host '" + host_id + "'");
  return Status::Ok();
}

Status Store::SetHostState(const std::string& host_id, HostState state) {
  std::lock_guard lock(mu_);
  GRIDEMU_ASSIGN_OR_RETURN(Stmt st, db_->Prepare("UPDATE hosts SET state = ? WHERE host_id = ?"));
  st.Bind(HostStateName(state), host_id);
  GRIDEMU_RETURN_IF_ERROR(st.Run());
  if (db_->Changes() == 0) return NotFoundError("unknown host '" + host_id + "'");
  return Status::Ok();
}

namespace {

constexpr std::string_view kHostSelect =
    "SELECT host_id, address, cores, memory_bytes, max_vnodes, state, last_heartbeat_unix_ns, "
    "registered_unix_ns FROM hosts";

Result<HostRecord> ReadHostRow(const Stmt& st) {
  HostRecord h;
  h.host_id = st.Text(0);
  h.address = st.Text(1);
  h.cores = static_cast<uint32_t>(st.Int(2));
  h.memory_bytes = static_cast<uint64_t>(st.Int(3));
  h.max_vnodes = static_cast<uint32_t>(st.Int(4));
  auto state = ParseHostState(st.Text(5));
  if (!state.ok()) return Corrupt("host state", state.status());
  h.state = *state;
  h.last_heartbeat_unix_ns = st.OptInt(6);
  h.registered_unix_ns = st.Int(7);
  return h;
}

}  // namespace

Result<HostRecord> Store::GetHost(const std::string& host_id) {
  std::lock_guard lock(mu_);
  static const std::string sql = std::string(kHostSelect) + " WHERE host_id = ?";
  GRIDEMU_ASSIGN_OR_RETURN(Stmt st, db_->Prepare(sql));
  st.Bind(host_id);
  GRIDEMU_ASSIGN_OR_RETURN(bool row, st.Step());
  if (!row) return NotFoundError("unknown host '" + host_id + "'");
  return ReadHostRow(st);
}

Result<std::vector<HostRecord>> Store::ListHosts() {
  std::lock_guard lock(mu_);
  static const std::string sql = std::string(kHostSelect) + " ORDER BY host_id";
  GRIDEMU_ASSIGN_OR_RETURN(Stmt st, db_->Prepare(sql));
  std::vector<HostRecord> out;
  while (true) {
    GRIDEMU_ASSIGN_OR_RETURN(bool row, st.Step());
    if (!row) break;
    GRIDEMU_ASSIGN_OR_RETURN(HostRecord h, ReadHostRow(st));
    out.push_back(std::move(h));
  }
  return out;
}

// --- Experiments --------------------------------------------------------------

Result<ExperimentRecord> Store::CreateExperiment(const experiments::Experiment& exp,
                                                 std::string_view yaml,
                                                 const CreateExperimentOptions& options) {
  if (!experiments::IsValidExperimentName(exp.name)) {
    return InvalidArgumentError("invalid experiment name '" + exp.name +
                                "': expected 1-63 characters of [a-z0-9-]");
  }
  const std::string slice = options.slice.empty() ? exp.slice : options.slice;
  const auto& topo = exp.topology;
  uint64_t num_tasks = 0;
  for (const auto& t : exp.tasks) num_tasks += t.targets.size();

  ExperimentRecord rec;
  rec.slice = slice;
  rec.name = exp.name;
  rec.state = ExperimentState::kSubmitted;
  rec.yaml = std::string(yaml);
  rec.yaml_sha256 = Sha256Hex(yaml);
  rec.source_path = exp.source_path;
  rec.seed = exp.seed;
  rec.duration = exp.duration;
  rec.num_vnodes = topo.num_vnodes();
  rec.num_links = topo.num_links();
  rec.num_tasks = num_tasks;
  rec.num_events = exp.events.size();

  std::lock_guard lock(mu_);
  SqliteDb& db = *db_;
  const int64_t now = Now();
  rec.created_unix_ns = rec.updated_unix_ns = now;
  Txn txn(db);
  GRIDEMU_RETURN_IF_ERROR(txn.BeginWrite());

  // The slice and its quota.
  {
    GRIDEMU_ASSIGN_OR_RETURN(Stmt st, db.Prepare("SELECT max_vnodes FROM slices WHERE name = ?"));
    st.Bind(slice);
    GRIDEMU_ASSIGN_OR_RETURN(bool row, st.Step());
    if (!row) return UnknownSlice(slice);
    if (!st.IsNull(0)) {
      const uint64_t quota = static_cast<uint64_t>(st.Int(0));
      st.Reset();
      static const std::string sql =
          "SELECT COALESCE(SUM(num_vnodes), 0) FROM experiments WHERE slice = ? AND state NOT "
          "IN " +
          std::string(kFinalStatesSql);
      GRIDEMU_ASSIGN_OR_RETURN(Stmt used_st, db.Prepare(sql));
      used_st.Bind(slice);
      GRIDEMU_ASSIGN_OR_RETURN(bool r, used_st.Step());
      const uint64_t used = r ? static_cast<uint64_t>(used_st.Int(0)) : 0;
      if (used + rec.num_vnodes > quota) {
        return ResourceExhaustedError(
            "slice '" + slice + "' quota exceeded: the experiment has " +
            std::to_string(rec.num_vnodes) + " vnodes, its other active experiments " +
            std::to_string(used) + ", and the slice may use " + std::to_string(quota));
      }
    }
  }

  // The id.
  int64_t seq = 0;
  {
    GRIDEMU_ASSIGN_OR_RETURN(Stmt st,
                             db.Prepare("SELECT next FROM sequences WHERE name = 'experiment'"));
    GRIDEMU_ASSIGN_OR_RETURN(bool row, st.Step());
    if (!row) return InternalError("sequence 'experiment' is missing");
    seq = st.Int(0);
  }
  {
    GRIDEMU_ASSIGN_OR_RETURN(
        Stmt st, db.Prepare("UPDATE sequences SET next = next + 1 WHERE name = 'experiment'"));
    GRIDEMU_RETURN_IF_ERROR(st.Run());
  }
  rec.id = options.id.empty() ? exp.name + "-" + std::to_string(seq) : options.id;
  const std::string context = "storing experiment '" + rec.id + "'";

  {
    GRIDEMU_ASSIGN_OR_RETURN(
        Stmt st, db.Prepare("INSERT INTO experiments (seq, id, slice, name, state, yaml, "
                            "yaml_sha256, source_path, seed, duration_ns, generation, num_vnodes, "
                            "num_links, num_tasks, num_events, created_unix_ns, updated_unix_ns) "
                            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?, ?, ?, ?, ?, ?)"));
    st.Bind(seq, rec.id, slice, rec.name, ExperimentStateName(rec.state), rec.yaml, rec.yaml_sha256,
            rec.source_path, static_cast<int64_t>(rec.seed),
            static_cast<int64_t>(rec.duration.count()), rec.num_vnodes, rec.num_links,
            rec.num_tasks, rec.num_events, now, now);
    Status s = st.Run();
    if (s.code() == StatusCode::kAlreadyExists) {
      return AlreadyExistsError("experiment id '" + rec.id + "' exists already");
    }
    GRIDEMU_RETURN_IF_ERROR(s.WithContext(context));
  }
  {
    GRIDEMU_ASSIGN_OR_RETURN(
        Stmt st, db.Prepare("INSERT INTO transitions (exp, n, from_state, to_state, unix_ns, "
                            "reason) VALUES (?, 0, NULL, ?, ?, ?)"));
    st.Bind(seq, ExperimentStateName(rec.state), now, options.reason);
    GRIDEMU_RETURN_IF_ERROR(st.Run().WithContext(context));
  }
  {
    GRIDEMU_ASSIGN_OR_RETURN(
        Stmt st, db.Prepare("INSERT INTO vnodes (exp, vnode_id, name, kind, runtime, group_name, "
                            "group_index, pinned_host, cpu, memory_bytes, pids) VALUES (?, ?, ?, "
                            "?, ?, ?, ?, ?, ?, ?, ?)"));
    const auto& vnodes = topo.vnodes();
    for (size_t i = 0; i < vnodes.size(); ++i) {
      const auto& v = vnodes[i];
      st.Bind(seq, i, v.name, topology::VnodeKindName(v.kind), topology::RuntimeName(v.runtime),
              NullIfEmpty(v.group),
              v.group_index >= 0 ? std::optional<int64_t>(v.group_index) : std::nullopt,
              NullIfEmpty(v.host), v.resources.cpu, v.resources.memory_bytes, v.resources.pids);
      Status s = st.Run();
      if (!s.ok()) return s.WithContext(context + ": vnode '" + v.name + "'");
      st.Reset();
    }
  }
  {
    GRIDEMU_ASSIGN_OR_RETURN(
        Stmt st, db.Prepare("INSERT INTO links (exp, link_id, name, a, b, forward_rate_bps, "
                            "reverse_rate_bps, forward_delay_ns, reverse_delay_ns) VALUES (?, ?, "
                            "?, ?, ?, ?, ?, ?, ?)"));
    const auto& links = topo.links();
    auto ns = [](const std::optional<std::chrono::nanoseconds>& d) {
      return d ? std::optional<int64_t>(d->count()) : std::nullopt;
    };
    for (size_t i = 0; i < links.size(); ++i) {
      const auto& l = links[i];
      std::string name = topo.LinkName(static_cast<topology::LinkId>(i));
      st.Bind(seq, i, name, l.a, l.b, l.forward.rate_bps, l.reverse.rate_bps, ns(l.forward.delay),
              ns(l.reverse.delay));
      Status s = st.Run();
      if (!s.ok()) return s.WithContext(context + ": link '" + name + "'");
      st.Reset();
    }
  }
  {
    GRIDEMU_ASSIGN_OR_RETURN(
        Stmt st, db.Prepare("INSERT INTO tasks (exp, task_id, ord, task_name, idx, vnode_id, "
                            "planned_start_ns, wait, state) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"));
    int64_t ord = 0;
    for (const auto& t : exp.tasks) {
      for (size_t i = 0; i < t.targets.size(); ++i) {
        std::string task_id = t.name + "/" + std::to_string(i);
        st.Bind(seq, task_id, ord++, t.name, i, t.targets[i],
                static_cast<int64_t>(t.StartTimeOf(i).count()), t.wait,
                TaskStateName(TaskState::kPending));
        Status s = st.Run();
        if (!s.ok()) return s.WithContext(context + ": task '" + task_id + "'");
        st.Reset();
      }
    }
  }
  {
    GRIDEMU_ASSIGN_OR_RETURN(
        Stmt st, db.Prepare("INSERT INTO events (exp, idx, kind, target, detail, at_ns, state) "
                            "VALUES (?, ?, ?, ?, ?, ?, ?)"));
    for (size_t i = 0; i < exp.events.size(); ++i) {
      const auto& e = exp.events[i];
      st.Bind(seq, i, experiments::EventKindName(e.kind), EventTarget(e), EventDetail(e),
              static_cast<int64_t>(e.at.count()), EventStateName(EventState::kPending));
      Status s = st.Run();
      if (!s.ok()) return s.WithContext(context + ": event " + std::to_string(i));
      st.Reset();
    }
  }
  GRIDEMU_RETURN_IF_ERROR(txn.Commit());
  return rec;
}

Result<ExperimentRecord> Store::GetExperiment(const std::string& id) {
  std::lock_guard lock(mu_);
  return ReadExperiment(*db_, id);
}

Result<std::vector<ExperimentRecord>> Store::ListExperiments(const std::string& slice) {
  std::lock_guard lock(mu_);
  static const std::string all =
      "SELECT " + std::string(kExperimentColumns) + " FROM experiments ORDER BY seq";
  static const std::string one = "SELECT " + std::string(kExperimentColumns) +
                                 " FROM experiments WHERE slice = ? ORDER BY seq";
  GRIDEMU_ASSIGN_OR_RETURN(Stmt st, db_->Prepare(slice.empty() ? all : one));
  if (!slice.empty()) st.Bind(slice);
  std::vector<ExperimentRecord> out;
  while (true) {
    GRIDEMU_ASSIGN_OR_RETURN(bool row, st.Step());
    if (!row) break;
    GRIDEMU_ASSIGN_OR_RETURN(ExperimentRecord r, ReadExperimentRow(st));
    out.push_back(std::move(r));
  }
  return out;
}

Status Store::Transition(const std::string& id, ExperimentState to, const std::string& reason) {
  std::lock_guard lock(mu_);
  SqliteDb& db = *db_;
  Txn txn(db);
  GRIDEMU_RETURN_IF_ERROR(txn.BeginWrite());
  int64_t seq = 0;
  ExperimentState from;
  {
    GRIDEMU_ASSIGN_OR_RETURN(Stmt st,
                             db.Prepare("SELECT seq, state FROM experiments WHERE id = ?"));
    st.Bind(id);
    GRIDEMU_ASSIGN_OR_RETURN(bool row, st.Step());
    if (!row) return UnknownExperiment(id);
    seq = st.Int(0);
    auto s = ParseExperimentState(st.Text(1));
    if (!s.ok()) return Corrupt("experiment state", s.status());
    from = *s;
  }
  if (!IsLegalTransition(from, to)) {
    return FailedPreconditionError("experiment " + id + " cannot go from " +
                                   std::string(ExperimentStateName(from)) + " to " +
                                   std::string(ExperimentStateName(to)));
  }
  int64_t n = 0;
  {
    GRIDEMU_ASSIGN_OR_RETURN(
        Stmt st, db.Prepare("SELECT COALESCE(MAX(n), -1) + 1 FROM transitions WHERE exp = ?"));
    st.Bind(seq);
    GRIDEMU_ASSIGN_OR_RETURN(bool row, st.Step());
    if (row) n = st.Int(0);
  }
  const int64_t now = Now();
  {
    GRIDEMU_ASSIGN_OR_RETURN(
        Stmt st, db.Prepare("UPDATE experiments SET state = ?, updated_unix_ns = ?, "
                            "failure_reason = CASE WHEN ? THEN ? ELSE failure_reason END "
                            "WHERE seq = ?"));
    st.Bind(ExperimentStateName(to), now, to == ExperimentState::kFailed, reason, seq);
    GRIDEMU_RETURN_IF_ERROR(st.Run());
  }
  {
    GRIDEMU_ASSIGN_OR_RETURN(
        Stmt st, db.Prepare("INSERT INTO transitions (exp, n, from_state, to_state, unix_ns, "
                            "reason) VALUES (?, ?, ?, ?, ?, ?)"));
    st.Bind(seq, n, ExperimentStateName(from), ExperimentStateName(to), now, reason);
    GRIDEMU_RETURN_IF_ERROR(st.Run());
  }
  return txn.Commit();
}

Result<std::vector<TransitionRecord>> Store::ListTransitions(const std::string& id) {
  std::lock_guard lock(mu_);
  GRIDEMU_ASSIGN_OR_RETURN(int64_t seq, ExpSeq(*db_, id));
  return ReadTransitions(*db_, seq);
}

Result<uint64_t> Store::BumpGeneration(const std::string& id) {
  std::lock_guard lock(mu_);
  Txn txn(*db_);
  GRIDEMU_RETURN_IF_ERROR(txn.BeginWrite());
  GRIDEMU_ASSIGN_OR_RETURN(int64_t seq, ExpSeq(*db_, id));
  {
    GRIDEMU_ASSIGN_OR_RETURN(Stmt st,
                             db_->Prepare("UPDATE experiments SET generation = generation + 1, "
                                          "updated_unix_ns = ? WHERE seq = ?"));
    st.Bind(Now(), seq);
    GRIDEMU_RETURN_IF_ERROR(st.Run());
  }
  uint64_t generation = 0;
  {
    GRIDEMU_ASSIGN_OR_RETURN(Stmt st,
                             db_->Prepare("SELECT generation FROM experiments WHERE seq = ?"));
    st.Bind(seq);
    GRIDEMU_ASSIGN_OR_RETURN(bool row, st.Step());
    if (row) generation = static_cast<uint64_t>(st.Int(0));
  }
  GRIDEMU_RETURN_IF_ERROR(txn.Commit());
  return generation;
}

Status Store::RecordPlacement(const std::string& id, const PlacementInput& placement) {
  std::lock_guard lock(mu_);
  SqliteDb& db = *db_;
  Txn txn(db);
  GRIDEMU_RETURN_IF_ERROR(txn.BeginWrite());
  int64_t seq = 0;
  int64_t generation = 0;
  uint64_t num_vnodes = 0;
  {
    GRIDEMU_ASSIGN_OR_RETURN(
        Stmt st, db.Prepare("SELECT seq, generation, num_vnodes FROM experiments WHERE id = ?"));
    st.Bind(id);
    GRIDEMU_ASSIGN_OR_RETURN(bool row, st.Step());
    if (!row) return UnknownExperiment(id);
    seq = st.Int(0);
    generation = st.Int(1);
    num_vnodes = static_cast<uint64_t>(st.Int(2));
  }
  if (placement.pnode_of_vnode.size() != num_vnodes) {
    return InvalidArgumentError("placement of experiment " + id + " names " +
                                std::to_string(placement.pnode_of_vnode.size()) +
                                " vnodes; the experiment has " + std::to_string(num_vnodes));
  }
  {
    GRIDEMU_ASSIGN_OR_RETURN(
        Stmt st, db.Prepare("UPDATE vnodes SET pnode = ? WHERE exp = ? AND vnode_id = ?"));
    for (size_t i = 0; i < placement.pnode_of_vnode.size(); ++i) {
      st.Bind(NullIfEmpty(placement.pnode_of_vnode[i]), seq, i);
      GRIDEMU_RETURN_IF_ERROR(st.Run());
      st.Reset();
    }
  }
  {
    GRIDEMU_ASSIGN_OR_RETURN(
        Stmt st, db.Prepare("UPDATE links SET a_pnode = (SELECT pnode FROM vnodes v WHERE v.exp "
                            "= links.exp AND v.vnode_id = links.a), b_pnode = (SELECT pnode FROM "
                            "vnodes v WHERE v.exp = links.exp AND v.vnode_id = links.b) WHERE exp "
                            "= ?"));
    st.Bind(seq);
    GRIDEMU_RETURN_IF_ERROR(st.Run());
  }
  const int64_t now = Now();
  {
    GRIDEMU_ASSIGN_OR_RETURN(
        Stmt st, db.Prepare("INSERT OR REPLACE INTO placements (exp, generation, algorithm, "
                            "cut_links, cut_rate_bps, imbalance, unix_ns) VALUES (?, ?, ?, ?, ?, "
                            "?, ?)"));
    st.Bind(seq, generation, placement.algorithm, placement.cut_links, placement.cut_rate_bps,
            placement.imbalance, now);
    GRIDEMU_RETURN_IF_ERROR(st.Run());
  }
  {
    GRIDEMU_ASSIGN_OR_RETURN(
        Stmt st, db.Prepare("UPDATE experiments SET updated_unix_ns = ? WHERE seq = ?"));
    st.Bind(now, seq);
    GRIDEMU_RETURN_IF_ERROR(st.Run());
  }
  return txn.Commit();
}

Result<std::optional<PlacementSummary>> Store::GetPlacement(const std::string& id) {
  std::lock_guard lock(mu_);
  GRIDEMU_ASSIGN_OR_RETURN(int64_t seq, ExpSeq(*db_, id));
  return ReadPlacement(*db_, seq);
}

Result<std::vector<VnodeRecord>> Store::ListVnodes(const std::string& id) {
  std::lock_guard lock(mu_);
  GRIDEMU_ASSIGN_OR_RETURN(int64_t seq, ExpSeq(*db_, id));
  GRIDEMU_ASSIGN_OR_RETURN(
      Stmt st, db_->Prepare("SELECT vnode_id, name, kind, runtime, group_name, group_index, "
                            "pinned_host, cpu, memory_bytes, pids, pnode FROM vnodes WHERE exp = "
                            "? ORDER BY vnode_id"));
  st.Bind(seq);
  std::vector<VnodeRecord> out;
  while (true) {
    GRIDEMU_ASSIGN_OR_RETURN(bool row, st.Step());
    if (!row) break;
    VnodeRecord v;
    v.vnode_id = static_cast<uint32_t>(st.Int(0));
    v.name = st.Text(1);
    v.kind = st.Text(2);
    v.runtime = st.Text(3);
    v.group = st.Text(4);
    v.group_index = st.IsNull(5) ? -1 : st.Int(5);
    v.pinned_host = st.Text(6);
    v.cpu = st.OptDouble(7);
    if (!st.IsNull(8)) v.memory_bytes = static_cast<uint64_t>(st.Int(8));
    if (!st.IsNull(9)) v.pids = static_cast<uint32_t>(st.Int(9));
    v.pnode = st.Text(10);
    out.push_back(std::move(v));
  }
  return out;
}

Result<std::vector<LinkRecord>> Store::ListLinks(const std::string& id) {
  std::lock_guard lock(mu_);
  GRIDEMU_ASSIGN_OR_RETURN(int64_t seq, ExpSeq(*db_, id));
  GRIDEMU_ASSIGN_OR_RETURN(
      Stmt st,
      db_->Prepare("SELECT l.link_id, l.name, l.a, l.b, va.name, vb.name, l.forward_rate_bps, "
                   "l.reverse_rate_bps, l.forward_delay_ns, l.reverse_delay_ns, l.a_pnode, "
                   "l.b_pnode FROM links l JOIN vnodes va ON va.exp = l.exp AND va.vnode_id = "
                   "l.a JOIN vnodes vb ON vb.exp = l.exp AND vb.vnode_id = l.b WHERE l.exp = ? "
                   "ORDER BY l.link_id"));
  st.Bind(seq);
  std::vector<LinkRecord> out;
  while (true) {
    GRIDEMU_ASSIGN_OR_RETURN(bool row, st.Step());
    if (!row) break;
    LinkRecord l;
    l.link_id = static_cast<uint32_t>(st.Int(0));
    l.name = st.Text(1);
    l.a = static_cast<uint32_t>(st.Int(2));
    l.b = static_cast<uint32_t>(st.Int(3));
    l.a_name = st.Text(4);
    l.b_name = st.Text(5);
    if (!st.IsNull(6)) l.forward_rate_bps = static_cast<uint64_t>(st.Int(6));
    if (!st.IsNull(7)) l.reverse_rate_bps = static_cast<uint64_t>(st.Int(7));
    l.forward_delay_ns = st.OptInt(8);
    l.reverse_delay_ns = st.OptInt(9);
    l.a_pnode = st.Text(10);
    l.b_pnode = st.Text(11);
    out.push_back(std::move(l));
  }
  return out;
}

// --- Tasks, events, metrics, results ------------------------------------------

Status Store::UpdateTasks(const std::string& id, const std::vector<TaskUpdate>& updates) {
  std::lock_guard lock(mu_);
  SqliteDb& db = *db_;
  Txn txn(db);
  GRIDEMU_RETURN_IF_ERROR(txn.BeginWrite());
  GRIDEMU_ASSIGN_OR_RETURN(int64_t seq, ExpSeq(db, id));
  GRIDEMU_ASSIGN_OR_RETURN(
      Stmt st,
      db.Prepare("UPDATE tasks SET state = ?, exit_code = COALESCE(?, exit_code), signal = "
                 "COALESCE(?, signal), reason = COALESCE(?, reason), start_unix_ns = COALESCE(?, "
                 "start_unix_ns), end_unix_ns = COALESCE(?, end_unix_ns), stdout_path = "
                 "COALESCE(?, stdout_path), stderr_path = COALESCE(?, stderr_path) WHERE exp = ? "
                 "AND task_id = ?"));
  for (const auto& u : updates) {
    st.Bind(TaskStateName(u.state), u.exit_code, u.signal, u.reason, u.start_unix_ns, u.end_unix_ns,
            u.stdout_path, u.stderr_path, seq, u.task_id);
    GRIDEMU_RETURN_IF_ERROR(st.Run());
    st.Reset();
    if (db.Changes() == 0) {
      return NotFoundError("experiment " + id + " has no task '" + u.task_id + "'");
    }
  }
  return txn.Commit();
}

Result<std::vector<TaskRecord>> Store::ListTasks(const std::string& id) {
  std::lock_guard lock(mu_);
  GRIDEMU_ASSIGN_OR_RETURN(int64_t seq, ExpSeq(*db_, id));
  return ReadTasks(*db_, seq, std::nullopt);
}

Result<TaskRecord> Store::GetTask(const std::string& id, const std::string& task_id) {
  std::lock_guard lock(mu_);
  GRIDEMU_ASSIGN_OR_RETURN(int64_t seq, ExpSeq(*db_, id));
  GRIDEMU_ASSIGN_OR_RETURN(std::vector<TaskRecord> tasks, ReadTasks(*db_, seq, task_id));
  if (tasks.empty()) return NotFoundError("experiment " + id + " has no task '" + task_id + "'");
  return std::move(tasks.front());
}

Result<std::map<std::string, uint64_t>> Store::CountTasksByState(const std::string& id) {
  std::lock_guard lock(mu_);
  GRIDEMU_ASSIGN_OR_RETURN(int64_t seq, ExpSeq(*db_, id));
  GRIDEMU_ASSIGN_OR_RETURN(
      Stmt st, db_->Prepare("SELECT state, COUNT(*) FROM tasks WHERE exp = ? GROUP BY state"));
  st.Bind(seq);
  std::map<std::string, uint64_t> out;
  while (true) {
    GRIDEMU_ASSIGN_OR_RETURN(bool row, st.Step());
    if (!row) break;
    out[st.Text(0)] = static_cast<uint64_t>(st.Int(1));
  }
  return out;
}

Status Store::UpdateEvents(const std::string& id, const std::vector<EventUpdate>& updates) {
  std::lock_guard lock(mu_);
  SqliteDb& db = *db_;
  Txn txn(db);
  GRIDEMU_RETURN_IF_ERROR(txn.BeginWrite());
  GRIDEMU_ASSIGN_OR_RETURN(int64_t seq, ExpSeq(db, id));
  GRIDEMU_ASSIGN_OR_RETURN(
      Stmt st, db.Prepare("UPDATE events SET state = ?, applied_ns = COALESCE(?, applied_ns), "
                          "error = ? WHERE exp = ? AND idx = ?"));
  for (const auto& u : updates) {
    st.Bind(EventStateName(u.state), u.applied_ns, NullIfEmpty(u.error), seq, u.index);
    GRIDEMU_RETURN_IF_ERROR(st.Run());
    st.Reset();
    if (db.Changes() == 0) {
      return NotFoundError("experiment " + id + " has no event " + std::to_string(u.index));
    }
  }
  return txn.Commit();
}

Result<std::vector<EventRecord>> Store::ListEvents(const std::string& id) {
  std::lock_guard lock(mu_);
  GRIDEMU_ASSIGN_OR_RETURN(int64_t seq, ExpSeq(*db_, id));
  return ReadEvents(*db_, seq);
}

Status Store::AppendMetrics(const std::string& id, const std::vector<MetricSample>& samples) {
  std::lock_guard lock(mu_);
  SqliteDb& db = *db_;
  Txn txn(db);
  GRIDEMU_RETURN_IF_ERROR(txn.BeginWrite());
  GRIDEMU_ASSIGN_OR_RETURN(int64_t seq, ExpSeq(db, id));
  GRIDEMU_ASSIGN_OR_RETURN(
      Stmt st, db.Prepare("INSERT INTO metrics (exp, unix_ns, subject, name, value) VALUES (?, ?, "
                          "?, ?, ?)"));
  for (const auto& m : samples) {
    st.Bind(seq, m.unix_ns, m.subject, m.name, m.value);
    GRIDEMU_RETURN_IF_ERROR(st.Run());
    st.Reset();
  }
  return txn.Commit();
}

Result<std::vector<MetricSample>> Store::ListMetrics(const std::string& id, int64_t since_unix_ns,
                                                     size_t limit) {
  std::lock_guard lock(mu_);
  GRIDEMU_ASSIGN_OR_RETURN(int64_t seq, ExpSeq(*db_, id));
  GRIDEMU_ASSIGN_OR_RETURN(
      Stmt st, db_->Prepare("SELECT unix_ns, subject, name, value FROM metrics WHERE exp = ? AND "
                            "unix_ns >= ? ORDER BY unix_ns, rowid LIMIT ?"));
  st.Bind(seq, since_unix_ns, static_cast<int64_t>(std::min<size_t>(limit, INT64_MAX)));
  std::vector<MetricSample> out;
  while (true) {
    GRIDEMU_ASSIGN_OR_RETURN(bool row, st.Step());
    if (!row) break;
    out.push_back({st.Int(0), st.Text(1), st.Text(2), st.Double(3)});
  }
  return out;
}

Result<uint32_t> Store::AllocateVnis(const std::string& id, uint32_t count, uint32_t first,
                                     uint32_t last) {
  if (count == 0 || first == 0 || first > last) {
    return InvalidArgumentError("VNI allocation: count " + std::to_string(count) + " in [" +
                                std::to_string(first) + ", " + std::to_string(last) +
                                "]: need count > 0 and 0 < first <= last");
  }
  std::lock_guard lock(mu_);
  SqliteDb& db = *db_;
  Txn txn(db);
  GRIDEMU_RETURN_IF_ERROR(txn.BeginWrite());
  int64_t seq = 0;
  {
    GRIDEMU_ASSIGN_OR_RETURN(
        Stmt st, db.Prepare("SELECT seq, vni_base, vni_count FROM experiments WHERE id = ?"));
    st.Bind(id);
    GRIDEMU_ASSIGN_OR_RETURN(bool row, st.Step());
    if (!row) return UnknownExperiment(id);
    seq = st.Int(0);
    const int64_t base = st.OptInt(1).value_or(0);
    const int64_t n = st.OptInt(2).value_or(0);
    if (base > 0 && n >= count) return static_cast<uint32_t>(base);
  }
  // Blocks of the other non-final experiments, by start.
  std::vector<std::pair<int64_t, int64_t>> taken;  // [begin, end)
  {
    static const std::string sql =
        "SELECT vni_base, vni_count FROM experiments WHERE seq != ? AND vni_base IS NOT NULL "
        "AND vni_count > 0 AND state NOT IN " +
        std::string(kFinalStatesSql) + " ORDER BY vni_base";
    GRIDEMU_ASSIGN_OR_RETURN(Stmt st, db.Prepare(sql));
    st.Bind(seq);
    while (true) {
      GRIDEMU_ASSIGN_OR_RETURN(bool row, st.Step());
      if (!row) break;
      taken.emplace_back(st.Int(0), st.Int(0) + st.Int(1));
    }
  }
  // Round robin: start after the block of the latest experiment that got one (final or
  // not), so that a VNI freed by an experiment that just ended is not handed out again
  // while a pnode may still hold its VXLAN device; wrap to `first` when the range ends.
  int64_t cursor = first;
  {
    GRIDEMU_ASSIGN_OR_RETURN(
        Stmt st, db.Prepare("SELECT vni_base + vni_count FROM experiments WHERE seq != ? AND "
                            "vni_base IS NOT NULL AND vni_count > 0 ORDER BY seq DESC LIMIT 1"));
    st.Bind(seq);
    GRIDEMU_ASSIGN_OR_RETURN(bool row, st.Step());
    if (row) cursor = std::clamp<int64_t>(st.Int(0), first, static_cast<int64_t>(last) + 1);
  }
  // The lowest start >= from of `count` free VNIs ending at or below `last`; -1 if none.
  auto gap = [&](int64_t from) -> int64_t {
    int64_t candidate = from;
    for (const auto& [b, e] : taken) {
      if (e <= candidate) continue;
      if (candidate + count <= b) break;  // fits before this block
      candidate = e;
    }
    return candidate + count - 1 <= static_cast<int64_t>(last) ? candidate : -1;
  };
  int64_t candidate = gap(cursor);
  if (candidate < 0) candidate = gap(first);
  if (candidate < 0) {
    return ResourceExhaustedError("no block of " + std::to_string(count) +
                                  " VXLAN VNIs is free in [" + std::to_string(first) + ", " +
                                  std::to_string(last) + "]: " + std::to_string(taken.size()) +
                                  " running experiment(s) hold the rest; wait for one to end");
  }
  {
    GRIDEMU_ASSIGN_OR_RETURN(
        Stmt st, db.Prepare("UPDATE experiments SET vni_base = ?, vni_count = ? WHERE seq = ?"));
    st.Bind(candidate, count, seq);
    GRIDEMU_RETURN_IF_ERROR(st.Run());
  }
  GRIDEMU_RETURN_IF_ERROR(txn.Commit());
  return static_cast<uint32_t>(candidate);
}

Status Store::AddLostVnodes(const std::string& id, const std::string& line) {
  std::lock_guard lock(mu_);
  GRIDEMU_ASSIGN_OR_RETURN(
      Stmt st, db_->Prepare("UPDATE experiments SET lost_vnodes = CASE WHEN lost_vnodes IS NULL "
                            "OR lost_vnodes = '' THEN ? ELSE lost_vnodes || char(10) || ? END, "
                            "updated_unix_ns = ? WHERE id = ?"));
  st.Bind(line, line, Now(), id);
  GRIDEMU_RETURN_IF_ERROR(st.Run());
  if (db_->Changes() == 0) return UnknownExperiment(id);
  return Status::Ok();
}

Status Store::SetResultsDir(const std::string& id, const std::string& dir) {
  std::lock_guard lock(mu_);
  GRIDEMU_ASSIGN_OR_RETURN(
      Stmt st, db_->Prepare("UPDATE experiments SET results_dir = ?, updated_unix_ns = ? WHERE "
                            "id = ?"));
  st.Bind(NullIfEmpty(dir), Now(), id);
  GRIDEMU_RETURN_IF_ERROR(st.Run());
  if (db_->Changes() == 0) return UnknownExperiment(id);
  return Status::Ok();
}

Status Store::PutResults(const std::string& id, const std::map<std::string, std::string>& entries) {
  std::lock_guard lock(mu_);
  SqliteDb& db = *db_;
  Txn txn(db);
  GRIDEMU_RETURN_IF_ERROR(txn.BeginWrite());
  GRIDEMU_ASSIGN_OR_RETURN(int64_t seq, ExpSeq(db, id));
  GRIDEMU_ASSIGN_OR_RETURN(
      Stmt st, db.Prepare("INSERT OR REPLACE INTO results (exp, key, value) VALUES (?, ?, ?)"));
  for (const auto& [key, value] : entries) {
    st.Bind(seq, key, value);
    GRIDEMU_RETURN_IF_ERROR(st.Run());
    st.Reset();
  }
  return txn.Commit();
}

Result<std::map<std::string, std::string>> Store::ListResults(const std::string& id) {
  std::lock_guard lock(mu_);
  GRIDEMU_ASSIGN_OR_RETURN(int64_t seq, ExpSeq(*db_, id));
  GRIDEMU_ASSIGN_OR_RETURN(Stmt st, db_->Prepare("SELECT key, value FROM results WHERE exp = ?"));
  st.Bind(seq);
  std::map<std::string, std::string> out;
  while (true) {
    GRIDEMU_ASSIGN_OR_RETURN(bool row, st.Step());
    if (!row) break;
    out[st.Text(0)] = st.Text(1);
  }
  return out;
}

// --- Restart --------------------------------------------------------------------

Result<std::vector<RecoveredExperiment>> Store::Recover() {
  std::lock_guard lock(mu_);
  SqliteDb& db = *db_;
  Txn txn(db);
  GRIDEMU_RETURN_IF_ERROR(txn.BeginRead());
  std::vector<std::pair<int64_t, std::string>> active;
  {
    static const std::string sql = "SELECT seq, id FROM experiments WHERE state NOT IN " +
                                   std::string(kFinalStatesSql) + " ORDER BY seq";
    GRIDEMU_ASSIGN_OR_RETURN(Stmt st, db.Prepare(sql));
    while (true) {
      GRIDEMU_ASSIGN_OR_RETURN(bool row, st.Step());
      if (!row) break;
      active.emplace_back(st.Int(0), st.Text(1));
    }
  }
  std::vector<RecoveredExperiment> out;
  out.reserve(active.size());
  for (const auto& [seq, id] : active) {
    RecoveredExperiment r;
    GRIDEMU_ASSIGN_OR_RETURN(r.record, ReadExperiment(db, id));
    GRIDEMU_ASSIGN_OR_RETURN(r.transitions, ReadTransitions(db, seq));
    GRIDEMU_ASSIGN_OR_RETURN(r.tasks, ReadTasks(db, seq, std::nullopt));
    GRIDEMU_ASSIGN_OR_RETURN(r.events, ReadEvents(db, seq));
    GRIDEMU_ASSIGN_OR_RETURN(r.placement, ReadPlacement(db, seq));
    if (r.placement) {
      r.pnode_of_vnode.resize(r.record.num_vnodes);
      GRIDEMU_ASSIGN_OR_RETURN(
          Stmt st, db.Prepare("SELECT vnode_id, pnode FROM vnodes WHERE exp = ? AND pnode IS "
                              "NOT NULL"));
      st.Bind(seq);
      while (true) {
        GRIDEMU_ASSIGN_OR_RETURN(bool row, st.Step());
        if (!row) break;
        const auto v = static_cast<size_t>(st.Int(0));
        if (v < r.pnode_of_vnode.size()) r.pnode_of_vnode[v] = st.Text(1);
      }
    }
    out.push_back(std::move(r));
  }
  GRIDEMU_RETURN_IF_ERROR(txn.Commit());
  return out;
}

}  // namespace gridemu::controller

// Tests of the controller's SQLite store: migrations, atomic experiment
// creation, the lifecycle state machine, reload after a restart, batched
// task/event/metric updates, slices, hosts, and a 100,000-vnode insert.

#include "gridemu/controller/store.h"

#include <gtest/gtest.h>
#include <sqlite3.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "gridemu/experiments/parse.h"

namespace gridemu::controller {
namespace {

namespace fs = std::filesystem;
using S = ExperimentState;

// A fresh directory under the system temp dir, removed at the end.
class TempDir {
 public:
  TempDir() {
    static std::atomic<int> counter{0};
    path_ = fs::temp_directory_path() /
            ("gridemu-store-test-" + std::to_string(getpid()) + "-" + std::to_string(counter++));
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  std::string File(const std::string& name) const { return (path_ / name).string(); }

 private:
  fs::path path_;
};

constexpr const char* kSwarm = R"(name: swarm
seed: 7
duration: 10m
topology:
  nodes:
    tracker: {}
    core: {kind: router}
  groups:
    peers:
      count: 4
      name: "peer{i}"
      link_to: core
      link: {rate: 10mbit, delay: 5ms}
  links:
    - {endpoints: [tracker, core], rate: 100mbit, delay: 1ms}
workload:
  - {name: tracker, on: tracker, run: "opentracker"}
  - name: leech
    on: "peers[1:]"
    at: 5s
    stagger: 50ms
    run: "aria2c x"
    wait: true
events:
  - {at: 60s, link: tracker--core, set: {loss: 5%}}
  - {at: 90s, link: tracker--core, down: true}
  - {at: 120s, nodes: "peers[0:2]", action: kill}
)";

experiments::Experiment Parse(const std::string& yaml, const std::string& file = "swarm.yaml") {
  auto r = experiments::ParseExperiment(yaml, file, ".");
  EXPECT_TRUE(r.ok()) << r.status().message();
  return r.ok() ? std::move(r).value() : experiments::Experiment{};
}

std::unique_ptr<Store> MustOpen(const std::string& path, StoreOptions options = {}) {
  auto r = Store::Open(path, std::move(options));
  EXPECT_TRUE(r.ok()) << r.status().ToString();
  return r.ok() ? std::move(r).value() : nullptr;
}

// A clock that advances by 1 ms each time it is read.
StoreOptions FakeClock(int64_t start = 1'700'000'000'000'000'000) {
  auto now = std::make_shared<std::atomic<int64_t>>(start);
  StoreOptions o;
  o.now_unix_ns = [now] { return now->fetch_add(1'000'000); };
  return o;
}

// Row count of `table`, read through a separate raw connection.
int64_t CountRows(const std::string& db_path, const std::string& table) {
  sqlite3* db = nullptr;
  EXPECT_EQ(sqlite3_open_v2(db_path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr), SQLITE_OK);
  sqlite3_stmt* st = nullptr;
  std::string sql = "SELECT COUNT(*) FROM " + table;
  EXPECT_EQ(sqlite3_prepare_v2(db, sql.c_str(), -1, &st, nullptr), SQLITE_OK) << sqlite3_errmsg(db);
  int64_t n = -1;
  if (sqlite3_step(st) == SQLITE_ROW) n = sqlite3_column_int64(st, 0);
  sqlite3_finalize(st);
  sqlite3_close(db);
  return n;
}

void ExecRaw(const std::string& db_path, const std::string& sql) {
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(db_path.c_str(), &db), SQLITE_OK);
  char* err = nullptr;
  EXPECT_EQ(sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err), SQLITE_OK) << (err ? err : "");
  sqlite3_free(err);
  sqlite3_close(db);
}

// --- Migrations ---------------------------------------------------------------

TEST(StoreMigrations, FreshDatabaseIsAtLatestVersionInWalMode) {
  TempDir dir;
  auto store = MustOpen(dir.File("c.db"));
  ASSERT_NE(store, nullptr);
  EXPECT_GE(Store::LatestSchemaVersion(), 1);
  EXPECT_EQ(*store->SchemaVersion(), Store::LatestSchemaVersion());
  EXPECT_EQ(*store->JournalMode(), "wal");
  auto def = store->GetSlice("default");
  ASSERT_TRUE(def.ok()) << def.status().ToString();
  EXPECT_FALSE(def->max_vnodes.has_value());
  EXPECT_FALSE(def->has_token);
  EXPECT_EQ(CountRows(dir.File("c.db"), "schema_version"), 1);
}

TEST(StoreMigrations, ReopenIsANoOpAndKeepsData) {
  TempDir dir;
  const std::string path = dir.File("c.db");
  std::string id;
  {
    auto store = MustOpen(path);
    ASSERT_NE(store, nullptr);
    auto rec = store->CreateExperiment(Parse(kSwarm), kSwarm);
    ASSERT_TRUE(rec.ok()) << rec.status().ToString();
    id = rec->id;
  }
  auto store = MustOpen(path);
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(*store->SchemaVersion(), Store::LatestSchemaVersion());
  EXPECT_EQ(CountRows(path, "schema_version"), 1);
  EXPECT_EQ(CountRows(path, "slices"), 1);  // 'default' not created twice
  auto rec = store->GetExperiment(id);
  ASSERT_TRUE(rec.ok()) << rec.status().ToString();
  EXPECT_EQ(rec->yaml, kSwarm);
}

TEST(StoreMigrations, FutureVersionIsRefused) {
  TempDir dir;
  const std::string path = dir.File("c.db");
  { ASSERT_NE(MustOpen(path), nullptr); }
  const int future = Store::LatestSchemaVersion() + 5;
  ExecRaw(path, "UPDATE schema_version SET version = " + std::to_string(future));
  auto r = Store::Open(path);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(r.status().message(), "database '" + path + "' has schema version " +
                                      std::to_string(future) + ", newer than this gridemu knows (" +
                                      std::to_string(Store::LatestSchemaVersion()) +
                                      "); use a newer gridemu or another database");
}

TEST(StoreMigrations, Version1IsUpgradedWithVniBlocksAndLostVnodes) {
  TempDir dir;
  const std::string path = dir.File("c.db");
  std::string id;
  {
    auto store = MustOpen(path);
    ASSERT_NE(store, nullptr);
    auto rec = store->CreateExperiment(Parse(kSwarm), kSwarm);
    ASSERT_TRUE(rec.ok()) << rec.status().ToString();
    id = rec->id;
  }
  // Back to a version-1 database (as written by an older controller).
  ExecRaw(path,
          "ALTER TABLE experiments DROP COLUMN vni_base; "
          "ALTER TABLE experiments DROP COLUMN vni_count; "
          "ALTER TABLE experiments DROP COLUMN lost_vnodes; "
          "UPDATE schema_version SET version = 1");
  auto store = MustOpen(path);
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(*store->SchemaVersion(), 2);
  auto rec = store->GetExperiment(id);
  ASSERT_TRUE(rec.ok()) << rec.status().ToString();
  EXPECT_EQ(rec->vni_base, 0u);
  EXPECT_EQ(rec->lost_vnodes, "");
  auto vni = store->AllocateVnis(id, 10, 4096, 5000);
  ASSERT_TRUE(vni.ok()) << vni.status().ToString();
  EXPECT_EQ(*vni, 4096u);
  ASSERT_TRUE(store->AddLostVnodes(id, "pnode p lost (x): 1 vnode: v").ok());
  EXPECT_EQ(store->GetExperiment(id)->lost_vnodes, "pnode p lost (x): 1 vnode: v");
}

TEST(StoreMigrations, NotADatabaseIsAnError) {
  TempDir dir;
  const std::string path = dir.File("junk.db");
  FILE* f = std::fopen(path.c_str(), "w");
  ASSERT_NE(f, nullptr);
  std::fputs("this is not an SQLite database, just some text that is long enough\n", f);
  std::fclose(f);
  auto r = Store::Open(path);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("not a database"), std::string::npos) << r.status().message();
}

TEST(StoreMigrations, InMemory) {
  auto store = MustOpen(":memory:");
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(*store->SchemaVersion(), Store::LatestSchemaVersion());
  EXPECT_EQ(*store->JournalMode(), "memory");
}

// --- Creation -------------------------------------------------------------------

TEST(StoreCreate, StoresEveryRowWithReadableIds) {
  auto store = MustOpen(":memory:", FakeClock());
  ASSERT_NE(store, nullptr);
  experiments::Experiment exp = Parse(kSwarm);
  auto rec = store->CreateExperiment(exp, kSwarm);
  ASSERT_TRUE(rec.ok()) << rec.status().ToString();
  EXPECT_EQ(rec->id, "swarm-1");
  EXPECT_EQ(rec->slice, "default");
  EXPECT_EQ(rec->state, S::kSubmitted);
  EXPECT_EQ(rec->num_vnodes, 6u);
  EXPECT_EQ(rec->num_links, 5u);
  EXPECT_EQ(rec->num_tasks, 4u);  // tracker/0 + leech/0..2
  EXPECT_EQ(rec->num_events, 3u);
  EXPECT_EQ(rec->yaml_sha256, Sha256Hex(kSwarm));
  EXPECT_EQ(Sha256Hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");

  auto again = store->CreateExperiment(exp, kSwarm);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->id, "swarm-2");

  auto got = store->GetExperiment("swarm-1");
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(got->yaml, kSwarm);
  EXPECT_EQ(got->seed, 7u);
  EXPECT_EQ(got->duration, std::chrono::minutes(10));
  EXPECT_EQ(got->source_path, "swarm.yaml");

  auto vnodes = store->ListVnodes("swarm-1");
  ASSERT_TRUE(vnodes.ok());
  ASSERT_EQ(vnodes->size(), 6u);
  EXPECT_EQ((*vnodes)[1].name, "core");
  EXPECT_EQ((*vnodes)[1].kind, "router");
  EXPECT_EQ((*vnodes)[2].name, "peer0");
  EXPECT_EQ((*vnodes)[2].group, "peers");
  EXPECT_EQ((*vnodes)[2].group_index, 0);
  EXPECT_EQ((*vnodes)[0].group_index, -1);

  auto links = store->ListLinks("swarm-1");
  ASSERT_TRUE(links.ok());
  ASSERT_EQ(links->size(), 5u);
  bool found = false;
  for (const auto& l : *links) {
    if (l.name != "tracker--core") continue;
    found = true;
    EXPECT_EQ(l.a_name, "tracker");
    EXPECT_EQ(l.b_name, "core");
    EXPECT_EQ(l.forward_rate_bps, 100'000'000u);
    EXPECT_EQ(l.reverse_delay_ns, 1'000'000);
  }
  EXPECT_TRUE(found);

  auto tasks = store->ListTasks("swarm-1");
  ASSERT_TRUE(tasks.ok());
  std::vector<std::string> ids;
  for (const auto& t : *tasks) ids.push_back(t.task_id);
  EXPECT_EQ(ids, (std::vector<std::string>{"tracker/0", "leech/0", "leech/1", "leech/2"}));
  EXPECT_EQ((*tasks)[3].vnode, "peer3");
  EXPECT_EQ((*tasks)[3].planned_start_ns, 5'100'000'000);
  EXPECT_TRUE((*tasks)[3].wait);
  EXPECT_EQ((*tasks)[3].state, TaskState::kPending);

  auto events = store->ListEvents("swarm-1");
  ASSERT_TRUE(events.ok());
  ASSERT_EQ(events->size(), 3u);
  EXPECT_EQ((*events)[0].kind, "link-set");
  EXPECT_EQ((*events)[0].target, "tracker--core");
  EXPECT_EQ((*events)[0].at_ns, 60'000'000'000);
  EXPECT_EQ((*events)[2].target, "peers[0:2]");
  EXPECT_EQ((*events)[2].detail, "kill 2 vnode(s)");
  EXPECT_EQ((*events)[2].state, EventState::kPending);

  auto list = store->ListExperiments("default");
  ASSERT_TRUE(list.ok());
  ASSERT_EQ(list->size(), 2u);
  EXPECT_EQ((*list)[0].id, "swarm-1");
  EXPECT_TRUE((*list)[0].yaml.empty());
  EXPECT_EQ(store->ListExperiments("other")->size(), 0u);
}

TEST(StoreCreate, FailureMidInsertLeavesNoRows) {
  TempDir dir;
  const std::string path = dir.File("c.db");
  auto store = MustOpen(path);
  ASSERT_NE(store, nullptr);
  experiments::Experiment exp = Parse(kSwarm);
  // The same task twice: its instance ids collide when the task rows are
  // inserted, after the experiment, vnode and link rows.
  exp.tasks.push_back(exp.tasks[1]);
  auto rec = store->CreateExperiment(exp, kSwarm);
  ASSERT_FALSE(rec.ok());
  EXPECT_EQ(rec.status().code(), StatusCode::kAlreadyExists);
  EXPECT_NE(rec.status().message().find("task 'leech/0'"), std::string::npos)
      << rec.status().message();
  for (const char* table :
       {"experiments", "transitions", "vnodes", "links", "tasks", "events", "placements"}) {
    EXPECT_EQ(CountRows(path, table), 0) << table;
  }
  // The id counter was rolled back too: the next experiment is swarm-1.
  auto ok = store->CreateExperiment(Parse(kSwarm), kSwarm);
  ASSERT_TRUE(ok.ok()) << ok.status().ToString();
  EXPECT_EQ(ok->id, "swarm-1");
}

TEST(StoreCreate, DuplicateChosenIdIsRefusedAndChangesNothing) {
  TempDir dir;
  const std::string path = dir.File("c.db");
  auto store = MustOpen(path);
  ASSERT_NE(store, nullptr);
  CreateExperimentOptions o;
  o.id = "e3";
  ASSERT_TRUE(store->CreateExperiment(Parse(kSwarm), kSwarm, o).ok());
  const int64_t vnodes = CountRows(path, "vnodes");
  auto dup = store->CreateExperiment(Parse(kSwarm), "other text", o);
  ASSERT_FALSE(dup.ok());
  EXPECT_EQ(dup.status(), AlreadyExistsError("experiment id 'e3' exists already"));
  EXPECT_EQ(CountRows(path, "experiments"), 1);
  EXPECT_EQ(CountRows(path, "vnodes"), vnodes);
  EXPECT_EQ(store->GetExperiment("e3")->yaml, kSwarm);
}

TEST(StoreCreate, UnknownSliceAndQuota) {
  auto store = MustOpen(":memory:");
  ASSERT_NE(store, nullptr);
  CreateExperimentOptions o;
  o.slice = "nope";
  auto r = store->CreateExperiment(Parse(kSwarm), kSwarm, o);
  EXPECT_EQ(r.status(), NotFoundError("unknown slice 'nope'"));

  SliceRecord small;
  small.name = "small";
  small.max_vnodes = 10;
  ASSERT_TRUE(store->CreateSlice(small).ok());
  EXPECT_EQ(store->CreateSlice(small).code(), StatusCode::kAlreadyExists);
  o.slice = "small";
  auto first = store->CreateExperiment(Parse(kSwarm), kSwarm, o);  // 6 vnodes
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  auto second = store->CreateExperiment(Parse(kSwarm), kSwarm, o);
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), StatusCode::kResourceExhausted);
  EXPECT_EQ(second.status().message(),
            "slice 'small' quota exceeded: the experiment has 6 vnodes, its other active "
            "experiments 6, and the slice may use 10");
  // A final experiment no longer counts.
  ASSERT_TRUE(store->Transition(first->id, S::kCancelled, "test").ok());
  EXPECT_TRUE(store->CreateExperiment(Parse(kSwarm), kSwarm, o).ok());
}

// --- Lifecycle --------------------------------------------------------------------

TEST(StoreLifecycle, LegalTransitionTable) {
  const std::vector<S> all = {S::kSubmitted, S::kPlaced,     S::kDeploying,
                              S::kRunning,   S::kCollecting, S::kCancelling,
                              S::kFinished,  S::kFailed,     S::kCancelled};
  std::set<std::pair<S, S>> legal = {
      {S::kSubmitted, S::kPlaced},    {S::kSubmitted, S::kCancelling},
      {S::kSubmitted, S::kCancelled}, {S::kSubmitted, S::kFailed},
      {S::kPlaced, S::kDeploying},    {S::kPlaced, S::kCancelling},
      {S::kPlaced, S::kCancelled},    {S::kPlaced, S::kFailed},
      {S::kDeploying, S::kRunning},   {S::kDeploying, S::kCancelling},
      {S::kDeploying, S::kFailed},    {S::kRunning, S::kCollecting},
      {S::kRunning, S::kCancelling},  {S::kRunning, S::kFailed},
      {S::kCollecting, S::kFinished}, {S::kCollecting, S::kCancelling},
      {S::kCollecting, S::kFailed},   {S::kCancelling, S::kCancelled},
      {S::kCancelling, S::kFailed},
  };
  for (S from : all) {
    for (S to : all) {
      EXPECT_EQ(IsLegalTransition(from, to), legal.count({from, to}) == 1)
          << ExperimentStateName(from) << " -> " << ExperimentStateName(to);
    }
    auto parsed = ParseExperimentState(ExperimentStateName(from));
    ASSERT_TRUE(parsed.ok());
    EXPECT_EQ(*parsed, from);
  }
  EXPECT_EQ(ParseExperimentState("done").status().message(),
            "unknown experiment state 'done'; expected one of submitted, placed, deploying, "
            "running, collecting, cancelling, finished, failed, cancelled");
}

TEST(StoreLifecycle, EveryTransitionIsPersistedWithTimeAndReason) {
  const int64_t t0 = 1'700'000'000'000'000'000;
  auto store = MustOpen(":memory:", FakeClock(t0));
  ASSERT_NE(store, nullptr);
  CreateExperimentOptions o;
  o.id = "e3";
  o.reason = "submitted by test";
  ASSERT_TRUE(store->CreateExperiment(Parse(kSwarm), kSwarm, o).ok());
  const std::vector<std::pair<S, std::string>> path = {
      {S::kPlaced, "placed on 1 pnode"},   {S::kDeploying, "deploying generation 1"},
      {S::kRunning, "every shard is up"},  {S::kCollecting, "every waited task ended"},
      {S::kFinished, "results collected"},
  };
  for (const auto& [to, reason] : path) {
    Status s = store->Transition("e3", to, reason);
    ASSERT_TRUE(s.ok()) << s.ToString();
    EXPECT_EQ(store->GetExperiment("e3")->state, to);
  }
  auto ts = store->ListTransitions("e3");
  ASSERT_TRUE(ts.ok());
  ASSERT_EQ(ts->size(), path.size() + 1);
  EXPECT_FALSE((*ts)[0].from.has_value());
  EXPECT_EQ((*ts)[0].to, S::kSubmitted);
  EXPECT_EQ((*ts)[0].reason, "submitted by test");
  for (size_t i = 0; i < path.size(); ++i) {
    const auto& t = (*ts)[i + 1];
    ASSERT_TRUE(t.from.has_value());
    EXPECT_EQ(*t.from, i == 0 ? S::kSubmitted : path[i - 1].first);
    EXPECT_EQ(t.to, path[i].first);
    EXPECT_EQ(t.reason, path[i].second);
    EXPECT_GT(t.unix_ns, (*ts)[i].unix_ns);  // the fake clock moves on every read
    EXPECT_GE(t.unix_ns, t0);
  }
  // Final: nothing leaves it, with the exact message, and nothing is recorded.
  Status s = store->Transition("e3", S::kRunning, "again");
  EXPECT_EQ(s, FailedPreconditionError("experiment e3 cannot go from finished to running"));
  EXPECT_EQ(store->ListTransitions("e3")->size(), path.size() + 1);
  EXPECT_EQ(store->Transition("nope", S::kPlaced, "x"), NotFoundError("unknown experiment 'nope'"));
}

TEST(StoreLifecycle, IllegalTransitionsAreRejected) {
  auto store = MustOpen(":memory:");
  ASSERT_NE(store, nullptr);
  CreateExperimentOptions o;
  o.id = "e1";
  ASSERT_TRUE(store->CreateExperiment(Parse(kSwarm), kSwarm, o).ok());
  EXPECT_EQ(store->Transition("e1", S::kRunning, "skip ahead"),
            FailedPreconditionError("experiment e1 cannot go from submitted to running"));
  EXPECT_EQ(store->Transition("e1", S::kSubmitted, "same"),
            FailedPreconditionError("experiment e1 cannot go from submitted to submitted"));
  ASSERT_TRUE(store->Transition("e1", S::kPlaced, "ok").ok());
  ASSERT_TRUE(store->Transition("e1", S::kDeploying, "ok").ok());
  EXPECT_EQ(store->Transition("e1", S::kCancelled, "too fast"),
            FailedPreconditionError("experiment e1 cannot go from deploying to cancelled"));
  ASSERT_TRUE(store->Transition("e1", S::kFailed, "agent host-a lost").ok());
  auto rec = store->GetExperiment("e1");
  EXPECT_EQ(rec->state, S::kFailed);
  EXPECT_EQ(rec->failure_reason, "agent host-a lost");
  EXPECT_EQ(store->Transition("e1", S::kCancelling, "late cancel"),
            FailedPreconditionError("experiment e1 cannot go from failed to cancelling"));
}

// --- Restart ------------------------------------------------------------------------

TEST(StoreRestart, RecoverReturnsNonFinalExperimentsAfterReopen) {
  TempDir dir;
  const std::string path = dir.File("c.db");
  std::string done, running, queued;
  {
    auto store = MustOpen(path);
    ASSERT_NE(store, nullptr);
    done = store->CreateExperiment(Parse(kSwarm), kSwarm)->id;
    running = store->CreateExperiment(Parse(kSwarm), kSwarm)->id;
    queued = store->CreateExperiment(Parse(kSwarm), kSwarm)->id;
    for (S s : {S::kPlaced, S::kDeploying, S::kRunning, S::kCollecting, S::kFinished}) {
      ASSERT_TRUE(store->Transition(done, s, "run").ok());
    }
    ASSERT_EQ(*store->BumpGeneration(running), 1u);
    PlacementInput p;
    p.pnode_of_vnode = {"host-a", "host-a", "host-b", "host-b", "host-b", "host-a"};
    p.algorithm = "metis-kway";
    p.cut_links = 3;
    p.cut_rate_bps = 60'000'000;
    p.imbalance = 0.0;
    ASSERT_TRUE(store->RecordPlacement(running, p).ok());
    for (S s : {S::kPlaced, S::kDeploying, S::kRunning}) {
      ASSERT_TRUE(store->Transition(running, s, "run").ok());
    }
    TaskUpdate u;
    u.task_id = "leech/1";
    u.state = TaskState::kRunning;
    u.start_unix_ns = 123;
    ASSERT_TRUE(store->UpdateTasks(running, {u}).ok());
    EventUpdate e;
    e.index = 0;
    e.applied_ns = 60'000'100'000;
    ASSERT_TRUE(store->UpdateEvents(running, {e}).ok());
  }  // the controller "dies" here

  auto store = MustOpen(path);
  ASSERT_NE(store, nullptr);
  auto rec = store->Recover();
  ASSERT_TRUE(rec.ok()) << rec.status().ToString();
  ASSERT_EQ(rec->size(), 2u);
  const RecoveredExperiment& r = (*rec)[0];
  EXPECT_EQ(r.record.id, running);
  EXPECT_EQ(r.record.state, S::kRunning);
  EXPECT_EQ(r.record.generation, 1u);
  EXPECT_EQ(r.record.yaml, kSwarm);
  EXPECT_EQ(r.transitions.size(), 4u);
  ASSERT_EQ(r.tasks.size(), 4u);
  EXPECT_EQ(r.tasks[2].task_id, "leech/1");
  EXPECT_EQ(r.tasks[2].state, TaskState::kRunning);
  EXPECT_EQ(r.tasks[2].start_unix_ns, 123);
  ASSERT_EQ(r.events.size(), 3u);
  EXPECT_EQ(r.events[0].state, EventState::kApplied);
  EXPECT_EQ(r.events[0].applied_ns, 60'000'100'000);
  ASSERT_TRUE(r.placement.has_value());
  EXPECT_EQ(r.placement->algorithm, "metis-kway");
  EXPECT_EQ(r.placement->generation, 1u);
  EXPECT_EQ(r.placement->vnodes_per_pnode,
            (std::map<std::string, uint64_t>{{"host-a", 3}, {"host-b", 3}}));
  EXPECT_EQ(r.pnode_of_vnode,
            (std::vector<std::string>{"host-a", "host-a", "host-b", "host-b", "host-b", "host-a"}));
  // Link ends follow their vnodes.
  auto links = store->ListLinks(running);
  ASSERT_TRUE(links.ok());
  for (const auto& l : *links) {
    EXPECT_EQ(l.a_pnode, r.pnode_of_vnode[l.a]) << l.name;
    EXPECT_EQ(l.b_pnode, r.pnode_of_vnode[l.b]) << l.name;
  }
  // The YAML re-parses to the same topology.
  auto again = experiments::ParseExperiment(r.record.yaml, r.record.source_path, ".");
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->topology.num_vnodes(), r.record.num_vnodes);

  const RecoveredExperiment& q = (*rec)[1];
  EXPECT_EQ(q.record.id, queued);
  EXPECT_EQ(q.record.state, S::kSubmitted);
  EXPECT_FALSE(q.placement.has_value());
  EXPECT_TRUE(q.pnode_of_vnode.empty());
}

// --- Batches ------------------------------------------------------------------------

TEST(StoreBatches, TaskUpdatesAreAppliedTogetherOrNotAtAll) {
  auto store = MustOpen(":memory:");
  ASSERT_NE(store, nullptr);
  const std::string id = store->CreateExperiment(Parse(kSwarm), kSwarm)->id;
  std::vector<TaskUpdate> batch(3);
  batch[0].task_id = "leech/0";
  batch[0].state = TaskState::kExited;
  batch[0].exit_code = 0;
  batch[0].end_unix_ns = 99;
  batch[0].stdout_path = "/tmp/out";
  batch[1].task_id = "leech/1";
  batch[1].state = TaskState::kKilled;
  batch[1].signal = 9;
  batch[1].reason = "timeout";
  batch[2].task_id = "leech/2";
  batch[2].state = TaskState::kRunning;
  ASSERT_TRUE(store->UpdateTasks(id, batch).ok());
  auto t0 = store->GetTask(id, "leech/0");
  ASSERT_TRUE(t0.ok());
  EXPECT_EQ(t0->state, TaskState::kExited);
  EXPECT_EQ(t0->exit_code, 0);
  EXPECT_EQ(t0->end_unix_ns, 99);
  EXPECT_EQ(t0->stdout_path, "/tmp/out");
  auto t1 = store->GetTask(id, "leech/1");
  EXPECT_EQ(t1->signal, 9);
  EXPECT_EQ(t1->reason, "timeout");
  EXPECT_EQ(*store->CountTasksByState(id),
            (std::map<std::string, uint64_t>{
                {"exited", 1}, {"killed", 1}, {"running", 1}, {"pending", 1}}));

  // Unset fields are kept.
  TaskUpdate keep;
  keep.task_id = "leech/0";
  keep.state = TaskState::kExited;
  ASSERT_TRUE(store->UpdateTasks(id, {keep}).ok());
  EXPECT_EQ(store->GetTask(id, "leech/0")->stdout_path, "/tmp/out");

  // One unknown task id: nothing of the batch is applied.
  std::vector<TaskUpdate> bad(2);
  bad[0].task_id = "tracker/0";
  bad[0].state = TaskState::kRunning;
  bad[1].task_id = "leech/9";
  bad[1].state = TaskState::kRunning;
  EXPECT_EQ(store->UpdateTasks(id, bad),
            NotFoundError("experiment " + id + " has no task 'leech/9'"));
  EXPECT_EQ(store->GetTask(id, "tracker/0")->state, TaskState::kPending);
  EXPECT_EQ(store->GetTask(id, "nope/0").status(),
            NotFoundError("experiment " + id + " has no task 'nope/0'"));
}

TEST(StoreBatches, EventsMetricsAndResults) {
  auto store = MustOpen(":memory:");
  ASSERT_NE(store, nullptr);
  const std::string id = store->CreateExperiment(Parse(kSwarm), kSwarm)->id;
  std::vector<EventUpdate> ev(2);
  ev[0].index = 0;
  ev[0].applied_ns = 60'000'200'000;
  ev[1].index = 1;
  ev[1].state = EventState::kFailed;
  ev[1].error = "agent host-a did not answer";
  ASSERT_TRUE(store->UpdateEvents(id, ev).ok());
  auto events = store->ListEvents(id);
  EXPECT_EQ((*events)[0].state, EventState::kApplied);
  EXPECT_EQ((*events)[1].state, EventState::kFailed);
  EXPECT_EQ((*events)[1].error, "agent host-a did not answer");
  EXPECT_EQ((*events)[2].state, EventState::kPending);
  EventUpdate missing;
  missing.index = 7;
  EXPECT_EQ(store->UpdateEvents(id, {missing}),
            NotFoundError("experiment " + id + " has no event 7"));

  std::vector<MetricSample> samples;
  for (int i = 0; i < 1000; ++i) {
    samples.push_back({1000 + i, "peer" + std::to_string(i % 4), "tx_bytes", i * 1.5});
  }
  ASSERT_TRUE(store->AppendMetrics(id, samples).ok());
  auto got = store->ListMetrics(id, 1500, 10);
  ASSERT_TRUE(got.ok());
  ASSERT_EQ(got->size(), 10u);
  EXPECT_EQ((*got)[0].unix_ns, 1500);
  EXPECT_EQ((*got)[0].subject, "peer0");
  EXPECT_DOUBLE_EQ((*got)[0].value, 750.0);

  ASSERT_TRUE(store->SetResultsDir(id, "/results/swarm-1-20240501T120000Z").ok());
  ASSERT_TRUE(store->PutResults(id, {{"metrics.csv", "metrics.csv"}, {"exit", "0"}}).ok());
  ASSERT_TRUE(store->PutResults(id, {{"exit", "1"}}).ok());
  EXPECT_EQ(*store->ListResults(id),
            (std::map<std::string, std::string>{{"exit", "1"}, {"metrics.csv", "metrics.csv"}}));
  EXPECT_EQ(store->GetExperiment(id)->results_dir, "/results/swarm-1-20240501T120000Z");
  EXPECT_EQ(store->SetResultsDir("nope", "/x"), NotFoundError("unknown experiment 'nope'"));
}

// --- Slices and hosts ---------------------------------------------------------------

TEST(StoreSlices, TokensAreStoredHashedAndChecked) {
  TempDir dir;
  const std::string path = dir.File("c.db");
  auto store = MustOpen(path);
  ASSERT_NE(store, nullptr);
  SliceRecord team;
  team.name = "team-a";
  team.max_cpu = 8;
  ASSERT_TRUE(store->CreateSlice(team, "s3cret").ok());
  EXPECT_TRUE(store->GetSlice("team-a")->has_token);
  EXPECT_EQ(store->GetSlice("team-a")->max_cpu, 8.0);
  EXPECT_TRUE(store->CheckSliceToken("team-a", "s3cret").ok());
  EXPECT_EQ(store->CheckSliceToken("team-a", "guess"),
            PermissionDeniedError("wrong API token for slice 'team-a'"));
  EXPECT_EQ(store->CheckSliceToken("team-a", ""),
            PermissionDeniedError("slice 'team-a' needs an API token"));
  EXPECT_TRUE(store->CheckSliceToken("default", "").ok());
  EXPECT_EQ(store->CheckSliceToken("zzz", ""), NotFoundError("unknown slice 'zzz'"));
  // A raw connection sees only the hash.
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  sqlite3_stmt* st = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(db, "SELECT token_hash FROM slices WHERE name = 'team-a'", -1, &st,
                               nullptr),
            SQLITE_OK);
  ASSERT_EQ(sqlite3_step(st), SQLITE_ROW);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(sqlite3_column_text(st, 0))),
            Sha256Hex("s3cret"));
  sqlite3_finalize(st);
  sqlite3_close(db);
  ASSERT_TRUE(store->SetSliceToken("team-a", "").ok());
  EXPECT_TRUE(store->CheckSliceToken("team-a", "").ok());
  SliceRecord bad;
  bad.name = "Bad_Name";
  EXPECT_EQ(store->CreateSlice(bad).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(store->ListSlices()->size(), 2u);
}

TEST(StoreHosts, RegisterHeartbeatState) {
  auto store = MustOpen(":memory:", FakeClock());
  ASSERT_NE(store, nullptr);
  HostRecord h;
  h.host_id = "host-a";
  h.address = "10.1.0.7";
  h.cores = 2;
  h.memory_bytes = 4ull << 30;
  h.max_vnodes = 100;
  ASSERT_TRUE(store->UpsertHost(h).ok());
  const int64_t registered = store->GetHost("host-a")->registered_unix_ns;
  h.cores = 4;
  ASSERT_TRUE(store->UpsertHost(h).ok());
  ASSERT_TRUE(store->RecordHeartbeat("host-a", 42).ok());
  ASSERT_TRUE(store->SetHostState("host-a", HostState::kSuspect).ok());
  auto got = store->GetHost("host-a");
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(got->cores, 4u);
  EXPECT_EQ(got->registered_unix_ns, registered);
  EXPECT_EQ(got->last_heartbeat_unix_ns, 42);
  EXPECT_EQ(got->state, HostState::kSuspect);
  EXPECT_EQ(store->RecordHeartbeat("host-z"), NotFoundError("unknown host 'host-z'"));
  EXPECT_EQ(store->ListHosts()->size(), 1u);
}

// --- Concurrency --------------------------------------------------------------------

TEST(StoreConcurrency, ThreadsAndTwoConnectionsOnOneFile) {
  TempDir dir;
  const std::string path = dir.File("c.db");
  auto a = MustOpen(path);
  auto b = MustOpen(path);  // a second "process" on the same file
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  const experiments::Experiment exp = Parse(kSwarm);
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int t = 0; t < 4; ++t) {
    Store* store = t % 2 == 0 ? a.get() : b.get();
    threads.emplace_back([&, store] {
      for (int i = 0; i < 10; ++i) {
        auto rec = store->CreateExperiment(exp, kSwarm);
        if (!rec.ok() || !store->Transition(rec->id, S::kPlaced, "placed").ok()) ++failures;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(failures.load(), 0);
  auto list = a->ListExperiments();
  ASSERT_TRUE(list.ok());
  ASSERT_EQ(list->size(), 40u);
  std::set<std::string> ids;
  for (const auto& r : *list) {
    ids.insert(r.id);
    EXPECT_EQ(r.state, S::kPlaced);
  }
  EXPECT_EQ(ids.size(), 40u);
  EXPECT_EQ(ids.count("swarm-40"), 1u);
}

// --- Scale --------------------------------------------------------------------------

TEST(StoreScale, HundredThousandVnodesAndLinks) {
  TempDir dir;
  const std::string path = dir.File("big.db");
  auto store = MustOpen(path);
  ASSERT_NE(store, nullptr);
  const std::string yaml = R"(name: big
duration: 10m
topology:
  nodes:
    hub: {kind: switch}
  groups:
    peers:
      count: 99999
      name: "p{i}"
      link_to: hub
      link: {rate: 1mbit, delay: 20ms}
  links:
    - {endpoints: [p0, p1], rate: 1mbit}
workload:
  - {name: run, on: peers, run: "true"}
)";
  auto t0 = std::chrono::steady_clock::now();
  experiments::Experiment exp = Parse(yaml, "big.yaml");
  auto t1 = std::chrono::steady_clock::now();
  ASSERT_EQ(exp.topology.num_vnodes(), 100000u);
  ASSERT_EQ(exp.topology.num_links(), 100000u);
  auto rec = store->CreateExperiment(exp, yaml);
  auto t2 = std::chrono::steady_clock::now();
  ASSERT_TRUE(rec.ok()) << rec.status().ToString();
  PlacementInput p;
  p.algorithm = "round-robin";
  for (size_t i = 0; i < exp.topology.num_vnodes(); ++i) {
    p.pnode_of_vnode.push_back("host-" + std::to_string(i % 1000));
  }
  ASSERT_TRUE(store->RecordPlacement(rec->id, p).ok());
  auto t3 = std::chrono::steady_clock::now();
  auto recovered = store->Recover();
  auto t4 = std::chrono::steady_clock::now();
  ASSERT_TRUE(recovered.ok());
  ASSERT_EQ(recovered->size(), 1u);
  EXPECT_EQ((*recovered)[0].tasks.size(), 99999u);
  EXPECT_EQ((*recovered)[0].placement->vnodes_per_pnode.size(), 1000u);
  auto secs = [](auto a, auto b) { return std::chrono::duration<double>(b - a).count(); };
  std::printf(
      "[ scale    ] parse %.3f s; insert 100000 vnodes + 100000 links + 99999 tasks %.3f s; "
      "placement %.3f s; recover %.3f s\n",
      secs(t0, t1), secs(t1, t2), secs(t2, t3), secs(t3, t4));
  EXPECT_EQ(CountRows(path, "vnodes"), 100000);
  EXPECT_EQ(CountRows(path, "links"), 100000);
  // Loose bound (shared CI machines); the target is well under 5 s.
  EXPECT_LT(secs(t1, t2), 30.0);
}

}  // namespace
}  // namespace gridemu::controller

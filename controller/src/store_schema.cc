#include "store_schema.h"

namespace gridemu::controller::store_internal {
namespace {

// Version 1: the initial schema. Conventions: times are Unix nanoseconds
// (*_unix_ns) or offsets from the experiment start (*_ns); child rows of an
// experiment key on experiments.seq (an integer) rather than its text id;
// unsigned 64-bit values (seeds) are stored as their two's-complement bit
// pattern; NULL means "unset".
constexpr std::string_view kV1 = R"sql(
CREATE TABLE slices (
  name             TEXT PRIMARY KEY,
  max_vnodes       INTEGER,
  max_cpu          REAL,
  max_memory_bytes INTEGER,
  token_hash       TEXT,            -- hex SHA-256 of the API token; NULL = none
  created_unix_ns  INTEGER NOT NULL
);
-- The slice of single-user setups (DESIGN.md §3): no quota, no token.
INSERT INTO slices (name, created_unix_ns)
  VALUES ('default', CAST(strftime('%s', 'now') AS INTEGER) * 1000000000);

CREATE TABLE hosts (
  host_id                TEXT PRIMARY KEY,
  address                TEXT NOT NULL DEFAULT '',
  cores                  INTEGER NOT NULL DEFAULT 0,
  memory_bytes           INTEGER NOT NULL DEFAULT 0,
  max_vnodes             INTEGER NOT NULL DEFAULT 0,
  state                  TEXT NOT NULL,
  last_heartbeat_unix_ns INTEGER,
  registered_unix_ns     INTEGER NOT NULL
);

-- Counters that only grow (experiment ids are never reused).
CREATE TABLE sequences (
  name TEXT PRIMARY KEY,
  next INTEGER NOT NULL
);
INSERT INTO sequences (name, next) VALUES ('experiment', 1);

CREATE TABLE experiments (
  seq             INTEGER PRIMARY KEY,
  id              TEXT NOT NULL UNIQUE,
  slice           TEXT NOT NULL REFERENCES slices(name),
  name            TEXT NOT NULL,
  state           TEXT NOT NULL,
  yaml            TEXT NOT NULL,
  yaml_sha256     TEXT NOT NULL,
  source_path     TEXT NOT NULL,
  seed            INTEGER NOT NULL,
  duration_ns     INTEGER NOT NULL,
  generation      INTEGER NOT NULL DEFAULT 0,
  num_vnodes      INTEGER NOT NULL,
  num_links       INTEGER NOT NULL,
  num_tasks       INTEGER NOT NULL,
  num_events      INTEGER NOT NULL,
  created_unix_ns INTEGER NOT NULL,
  updated_unix_ns INTEGER NOT NULL,
  results_dir     TEXT,
  failure_reason  TEXT
);
CREATE INDEX experiments_by_slice ON experiments (slice, seq);
CREATE INDEX experiments_by_state ON experiments (state);

CREATE TABLE transitions (
  exp        INTEGER NOT NULL REFERENCES experiments(seq) ON DELETE CASCADE,
  n          INTEGER NOT NULL,      -- 0 = the submission
  from_state TEXT,                  -- NULL for the submission
  to_state   TEXT NOT NULL,
  unix_ns    INTEGER NOT NULL,
  reason     TEXT NOT NULL,
  PRIMARY KEY (exp, n)
) WITHOUT ROWID;

CREATE TABLE vnodes (
  exp          INTEGER NOT NULL REFERENCES experiments(seq) ON DELETE CASCADE,
  vnode_id     INTEGER NOT NULL,    -- topology::VnodeId
  name         TEXT NOT NULL,
  kind         TEXT NOT NULL,
  runtime      TEXT NOT NULL,
  group_name   TEXT,
  group_index  INTEGER,
  pinned_host  TEXT,
  cpu          REAL,
  memory_bytes INTEGER,
  pids         INTEGER,
  pnode        TEXT,                -- placement; NULL until placed
  PRIMARY KEY (exp, vnode_id),
  UNIQUE (exp, name)
) WITHOUT ROWID;

CREATE TABLE placements (
  exp          INTEGER NOT NULL REFERENCES experiments(seq) ON DELETE CASCADE,
  generation   INTEGER NOT NULL,
  algorithm    TEXT NOT NULL,
  cut_links    INTEGER NOT NULL,
  cut_rate_bps INTEGER NOT NULL,
  imbalance    REAL NOT NULL,
  unix_ns      INTEGER NOT NULL,
  PRIMARY KEY (exp, generation)
) WITHOUT ROWID;

CREATE TABLE links (
  exp              INTEGER NOT NULL REFERENCES experiments(seq) ON DELETE CASCADE,
  link_id          INTEGER NOT NULL,  -- topology::LinkId
  name             TEXT NOT NULL,     -- "a--b", "a--b#2"
  a                INTEGER NOT NULL,  -- vnode ids of the endpoints
  b                INTEGER NOT NULL,
  forward_rate_bps INTEGER,
  reverse_rate_bps INTEGER,
  forward_delay_ns INTEGER,
  reverse_delay_ns INTEGER,
  a_pnode          TEXT,
  b_pnode          TEXT,
  PRIMARY KEY (exp, link_id),
  UNIQUE (exp, name),
  FOREIGN KEY (exp, a) REFERENCES vnodes (exp, vnode_id),
  FOREIGN KEY (exp, b) REFERENCES vnodes (exp, vnode_id)
) WITHOUT ROWID;

CREATE TABLE tasks (
  exp              INTEGER NOT NULL REFERENCES experiments(seq) ON DELETE CASCADE,
  task_id          TEXT NOT NULL,     -- "leech/7"
  ord              INTEGER NOT NULL,  -- creation order
  task_name        TEXT NOT NULL,
  idx              INTEGER NOT NULL,
  vnode_id         INTEGER NOT NULL,
  planned_start_ns INTEGER NOT NULL,
  wait             INTEGER NOT NULL,
  state            TEXT NOT NULL,
  exit_code        INTEGER,
  signal           INTEGER,
  reason           TEXT,
  start_unix_ns    INTEGER,
  end_unix_ns      INTEGER,
  stdout_path      TEXT,
  stderr_path      TEXT,
  PRIMARY KEY (exp, task_id),
  FOREIGN KEY (exp, vnode_id) REFERENCES vnodes (exp, vnode_id)
) WITHOUT ROWID;

CREATE TABLE events (
  exp        INTEGER NOT NULL REFERENCES experiments(seq) ON DELETE CASCADE,
  idx        INTEGER NOT NULL,
  kind       TEXT NOT NULL,
  target     TEXT NOT NULL,
  detail     TEXT NOT NULL,
  at_ns      INTEGER NOT NULL,
  state      TEXT NOT NULL,
  applied_ns INTEGER,
  error      TEXT,
  PRIMARY KEY (exp, idx)
) WITHOUT ROWID;

CREATE TABLE metrics (
  exp     INTEGER NOT NULL REFERENCES experiments(seq) ON DELETE CASCADE,
  unix_ns INTEGER NOT NULL,
  subject TEXT NOT NULL,
  name    TEXT NOT NULL,
  value   REAL NOT NULL
);
CREATE INDEX metrics_by_exp_time ON metrics (exp, unix_ns);

CREATE TABLE results (
  exp   INTEGER NOT NULL REFERENCES experiments(seq) ON DELETE CASCADE,
  key   TEXT NOT NULL,
  value TEXT NOT NULL,
  PRIMARY KEY (exp, key)
) WITHOUT ROWID;
)sql";

// Version 2: multi-pnode experiments. Each experiment's block of VXLAN VNIs
// [vni_base, vni_base + vni_count) (NULL = none allocated; blocks of
// non-final experiments never overlap, see Store::AllocateVnis()), and the
// vnodes it lost with a pnode (one line per lost pnode; NULL = none).
constexpr std::string_view kV2 = R"sql(
ALTER TABLE experiments ADD COLUMN vni_base INTEGER;
ALTER TABLE experiments ADD COLUMN vni_count INTEGER;
ALTER TABLE experiments ADD COLUMN lost_vnodes TEXT;
)sql";

}  // namespace

const std::vector<std::string_view>& Migrations() {
  static const std::vector<std::string_view> kMigrations = {kV1, kV2};
  return kMigrations;
}

}  // namespace gridemu::controller::store_internal

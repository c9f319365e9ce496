#include "store_sqlite.h"

#include <string>

namespace gridemu::controller::store_internal {

Status SqliteError(sqlite3* db, int rc, std::string_view context) {
  std::string message(context);
  message += ": ";
  // The connection's message describes the latest failure; fall back to the
  // generic text of the code when it does not match (e.g. after a reset).
  if (db != nullptr && (sqlite3_errcode(db) & 0xff) == (rc & 0xff)) {
    message += sqlite3_errmsg(db);
  } else {
    message += sqlite3_errstr(rc);
  }
  switch (rc) {
    case SQLITE_CONSTRAINT_UNIQUE:
    case SQLITE_CONSTRAINT_PRIMARYKEY:
      return AlreadyExistsError(std::move(message));
    case SQLITE_CONSTRAINT_FOREIGNKEY:
      return FailedPreconditionError(std::move(message));
    default:
      break;
  }
  switch (rc & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
    case SQLITE_CANTOPEN:
    case SQLITE_READONLY:
    case SQLITE_FULL:
    case SQLITE_IOERR:
      return UnavailableError(std::move(message));
    default:
      return InternalError(std::move(message));
  }
}

Result<bool> Stmt::Step() {
  if (bind_rc_ != SQLITE_OK) {
    return SqliteError(db_, bind_rc_, std::string("binding parameters of: ") + sqlite3_sql(stmt_));
  }
  int rc = sqlite3_step(stmt_);
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  // With the v2/v3 prepare interface, step returns the (extended) code directly.
  return SqliteError(db_, rc, "sqlite");
}

Status Stmt::Run() {
  while (true) {
    GRIDEMU_ASSIGN_OR_RETURN(bool row, Step());
    if (!row) return Status::Ok();
  }
}

void Stmt::Reset() {
  if (stmt_ == nullptr) return;
  sqlite3_reset(stmt_);
  sqlite3_clear_bindings(stmt_);
  next_ = 0;
  bind_rc_ = SQLITE_OK;
}

std::string Stmt::Text(int col) const {
  const unsigned char* p = sqlite3_column_text(stmt_, col);
  if (p == nullptr) return {};
  int n = sqlite3_column_bytes(stmt_, col);
  return std::string(reinterpret_cast<const char*>(p), static_cast<size_t>(n));
}

Result<std::unique_ptr<SqliteDb>> SqliteDb::Open(const std::string& path) {
  sqlite3* db = nullptr;
  int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX;
  int rc = sqlite3_open_v2(path.c_str(), &db, flags, nullptr);
  if (rc != SQLITE_OK) {
    Status s = UnavailableError("cannot open database '" + path +
                                "': " + (db != nullptr ? sqlite3_errmsg(db) : sqlite3_errstr(rc)));
    sqlite3_close_v2(db);
    return s;
  }
  sqlite3_extended_result_codes(db, 1);
  return std::unique_ptr<SqliteDb>(new SqliteDb(db));
}

SqliteDb::~SqliteDb() {
  for (auto& [sql, stmt] : cache_) sqlite3_finalize(stmt);
  sqlite3_close_v2(db_);
}

Status SqliteDb::Exec(std::string_view sql, std::string_view context) {
  std::string text(sql);
  char* err = nullptr;
  int rc = sqlite3_exec(db_, text.c_str(), nullptr, nullptr, &err);
  if (rc == SQLITE_OK) return Status::Ok();
  std::string message = std::string(context) + ": " + (err != nullptr ? err : sqlite3_errstr(rc));
  sqlite3_free(err);
  Status s = SqliteError(db_, sqlite3_extended_errcode(db_), context);
  return Status(s.code(), std::move(message));
}

Result<Stmt> SqliteDb::Prepare(std::string_view sql) {
  std::string key(sql);
  auto it = cache_.find(key);
  if (it != cache_.end()) return Stmt(db_, it->second);
  sqlite3_stmt* stmt = nullptr;
  int rc = sqlite3_prepare_v3(db_, key.data(), static_cast<int>(key.size()),
                              SQLITE_PREPARE_PERSISTENT, &stmt, nullptr);
  if (rc != SQLITE_OK) {
    return SqliteError(db_, rc, "preparing '" + key + "'");
  }
  cache_.emplace(std::move(key), stmt);
  return Stmt(db_, stmt);
}

Txn::~Txn() {
  if (active_) {
    // Best effort: a failed rollback leaves SQLite to roll back on close.
    sqlite3_exec(db_.raw(), "ROLLBACK", nullptr, nullptr, nullptr);
  }
}

Status Txn::Begin(std::string_view sql) {
  GRIDEMU_RETURN_IF_ERROR(db_.Exec(sql, "starting a transaction"));
  active_ = true;
  return Status::Ok();
}

Status Txn::Commit() {
  Status s = db_.Exec("COMMIT", "committing a transaction");
  if (s.ok()) active_ = false;
  return s;
}

}  // namespace gridemu::controller::store_internal

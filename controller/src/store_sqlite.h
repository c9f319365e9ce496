// A thin C++ layer over the SQLite C API for the store: a connection with a
// cache of prepared statements, a statement handle that binds and reads
// columns, and a transaction guard that rolls back unless committed. SQLite
// result codes become Status values here; nothing throws.
// Not thread-safe: the Store serialises access with its mutex.
#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <unordered_map>

#include "gridemu/common/status.h"

namespace gridemu::controller::store_internal {

/// Maps an SQLite result code (and the connection's message) to a Status:
/// constraint UNIQUE/PRIMARY KEY -> kAlreadyExists, FOREIGN KEY ->
/// kFailedPrecondition, BUSY/LOCKED/CANTOPEN -> kUnavailable, else kInternal.
/// The message is "<context>: <sqlite message>".
Status SqliteError(sqlite3* db, int rc, std::string_view context);

/// A prepared statement borrowed from SqliteDb's cache. Binds parameters in
/// order, steps, reads columns; resets the statement when destroyed. Movable.
class Stmt {
 public:
  Stmt(sqlite3* db, sqlite3_stmt* stmt) : db_(db), stmt_(stmt) {}
  Stmt(Stmt&& o) noexcept : db_(o.db_), stmt_(o.stmt_), next_(o.next_), bind_rc_(o.bind_rc_) {
    o.stmt_ = nullptr;
  }
  Stmt& operator=(Stmt&&) = delete;
  Stmt(const Stmt&) = delete;
  ~Stmt() { Reset(); }

  /// Binds the next parameters, in order. Accepts integers, double, strings,
  /// nullptr (NULL) and std::optional of those (nullopt = NULL).
  template <typename... Args>
  Stmt& Bind(Args&&... args) {
    (BindOne(std::forward<Args>(args)), ...);
    return *this;
  }

  /// Steps once: true when a row is available, false when done.
  Result<bool> Step();
  /// Steps to completion, ignoring rows (INSERT/UPDATE/DELETE).
  Status Run();
  /// Clears bindings and resets for the next execution (done on destruction).
  void Reset();

  bool IsNull(int col) const { return sqlite3_column_type(stmt_, col) == SQLITE_NULL; }
  int64_t Int(int col) const { return sqlite3_column_int64(stmt_, col); }
  double Double(int col) const { return sqlite3_column_double(stmt_, col); }
  std::string Text(int col) const;
  std::optional<int64_t> OptInt(int col) const {
    return IsNull(col) ? std::nullopt : std::optional<int64_t>(Int(col));
  }
  std::optional<double> OptDouble(int col) const {
    return IsNull(col) ? std::nullopt : std::optional<double>(Double(col));
  }

 private:
  void BindOne(std::nullptr_t) { Check(sqlite3_bind_null(stmt_, ++next_)); }
  void BindOne(double v) { Check(sqlite3_bind_double(stmt_, ++next_, v)); }
  void BindOne(std::string_view v) {
    Check(sqlite3_bind_text64(stmt_, ++next_, v.data(), v.size(), SQLITE_TRANSIENT, SQLITE_UTF8));
  }
  void BindOne(const std::string& v) { BindOne(std::string_view(v)); }
  void BindOne(const char* v) { BindOne(std::string_view(v)); }
  template <typename T>
  requires std::is_integral_v<std::remove_cvref_t<T>>
  void BindOne(T v) { Check(sqlite3_bind_int64(stmt_, ++next_, static_cast<sqlite3_int64>(v))); }
  template <typename T>
  void BindOne(const std::optional<T>& v) {
    if (v.has_value()) {
      BindOne(*v);
    } else {
      BindOne(nullptr);
    }
  }
  void Check(int rc) {
    if (rc != SQLITE_OK && bind_rc_ == SQLITE_OK) bind_rc_ = rc;
  }

  sqlite3* db_;
  sqlite3_stmt* stmt_;
  int next_ = 0;
  int bind_rc_ = SQLITE_OK;
};

/// One SQLite connection with a statement cache.
class SqliteDb {
 public:
  /// Opens or creates `path` (":memory:" allowed). kUnavailable on failure.
  static Result<std::unique_ptr<SqliteDb>> Open(const std::string& path);
  ~SqliteDb();
  SqliteDb(const SqliteDb&) = delete;
  SqliteDb& operator=(const SqliteDb&) = delete;

  /// Runs one or more statements without parameters.
  Status Exec(std::string_view sql, std::string_view context);
  /// A cached prepared statement for `sql` (prepared on first use). Do not
  /// hold two Stmt of the same SQL at once.
  Result<Stmt> Prepare(std::string_view sql);
  /// Rows changed by the last INSERT/UPDATE/DELETE.
  int64_t Changes() const { return sqlite3_changes(db_); }
  sqlite3* raw() const { return db_; }

 private:
  explicit SqliteDb(sqlite3* db) : db_(db) {}
  sqlite3* db_;
  std::unordered_map<std::string, sqlite3_stmt*> cache_;
};

/// A transaction: Begin() starts it (IMMEDIATE takes the write lock at once,
/// so writers never deadlock on a lock upgrade); Commit() ends it; the
/// destructor rolls back a transaction that was begun and not committed.
class Txn {
 public:
  explicit Txn(SqliteDb& db) : db_(db) {}
  ~Txn();
  Txn(const Txn&) = delete;
  Txn& operator=(const Txn&) = delete;

  Status BeginWrite() { return Begin("BEGIN IMMEDIATE"); }
  Status BeginRead() { return Begin("BEGIN DEFERRED"); }
  Status Commit();

 private:
  Status Begin(std::string_view sql);
  SqliteDb& db_;
  bool active_ = false;
};

}  // namespace gridemu::controller::store_internal

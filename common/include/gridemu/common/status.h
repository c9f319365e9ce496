// Status and Result<T>: gridemu's error type (DESIGN.md §13). No exceptions
// cross module boundaries; functions return a Status or a Result<T> whose
// message says what went wrong and where.
#pragma once

#include <cassert>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace gridemu {

/// Named error codes, after the canonical codes of gRPC/absl.
enum class StatusCode {
  kOk = 0,
  kInvalidArgument,    ///< the caller's input is wrong (bad file, bad value)
  kNotFound,           ///< a named object does not exist
  kAlreadyExists,      ///< a named object exists already
  kOutOfRange,         ///< a value is outside its allowed range
  kFailedPrecondition, ///< the system is not in a state where this can run
  kUnimplemented,      ///< not supported (by this backend, kernel, runtime)
  kUnavailable,        ///< a peer, service or kernel feature is not reachable now
  kPermissionDenied,   ///< not allowed (needs root, wrong slice token)
  kResourceExhausted,  ///< out of memory, quota, capacity
  kDeadlineExceeded,   ///< timed out
  kCancelled,          ///< cancelled by the user (Ctrl-C, `gridemu cancel`)
  kInternal,           ///< a bug or an unexpected OS failure
};

/// Lower-case name of a code, e.g. "invalid argument".
std::string_view StatusCodeName(StatusCode code);

/// The outcome of an operation: ok, or a code with a human-readable message.
/// Cheap to copy when ok. Thread-compatible.
class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(StatusCode code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status Ok() { return Status(); }

  bool ok() const { return code_ == StatusCode::kOk; }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }

  /// "invalid argument: <message>", or "ok".
  std::string ToString() const;

  /// Returns a copy whose message is prefixed with `context + ": "`.
  Status WithContext(std::string_view context) const;

  friend bool operator==(const Status& a, const Status& b) {
    return a.code_ == b.code_ && a.message_ == b.message_;
  }

 private:
  StatusCode code_ = StatusCode::kOk;
  std::string message_;
};

inline Status InvalidArgumentError(std::string m) { return {StatusCode::kInvalidArgument, std::move(m)}; }
inline Status NotFoundError(std::string m) { return {StatusCode::kNotFound, std::move(m)}; }
inline Status AlreadyExistsError(std::string m) { return {StatusCode::kAlreadyExists, std::move(m)}; }
inline Status OutOfRangeError(std::string m) { return {StatusCode::kOutOfRange, std::move(m)}; }
inline Status FailedPreconditionError(std::string m) { return {StatusCode::kFailedPrecondition, std::move(m)}; }
inline Status UnimplementedError(std::string m) { return {StatusCode::kUnimplemented, std::move(m)}; }
inline Status UnavailableError(std::string m) { return {StatusCode::kUnavailable, std::move(m)}; }
inline Status PermissionDeniedError(std::string m) { return {StatusCode::kPermissionDenied, std::move(m)}; }
inline Status ResourceExhaustedError(std::string m) { return {StatusCode::kResourceExhausted, std::move(m)}; }
inline Status DeadlineExceededError(std::string m) { return {StatusCode::kDeadlineExceeded, std::move(m)}; }
inline Status CancelledError(std::string m) { return {StatusCode::kCancelled, std::move(m)}; }
inline Status InternalError(std::string m) { return {StatusCode::kInternal, std::move(m)}; }

/// A value of type T, or a non-ok Status. Accessing value() of an error is a
/// programming error (asserts in debug builds).
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}  // NOLINT: implicit by design
  Result(Status status) : v_(std::move(status)) {  // NOLINT: implicit by design
    assert(!std::get<Status>(v_).ok() && "Result built from an ok Status");
  }

  bool ok() const { return std::holds_alternative<T>(v_); }
  /// The error; Status::Ok() when this holds a value.
  Status status() const { return ok() ? Status::Ok() : std::get<Status>(v_); }

  T& value() & { assert(ok()); return std::get<T>(v_); }
  const T& value() const& { assert(ok()); return std::get<T>(v_); }
  T&& value() && { assert(ok()); return std::get<T>(std::move(v_)); }

  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T&& operator*() && { return std::move(*this).value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

 private:
  std::variant<T, Status> v_;
};

}  // namespace gridemu

/// Returns early from the enclosing function if `expr` (a Status) is not ok.
#define GRIDEMU_RETURN_IF_ERROR(expr)        \
  do {                                       \
    ::gridemu::Status _st = (expr);          \
    if (!_st.ok()) return _st;               \
  } while (0)

#define GRIDEMU_CONCAT_INNER_(a, b) a##b
#define GRIDEMU_CONCAT_(a, b) GRIDEMU_CONCAT_INNER_(a, b)
/// `GRIDEMU_ASSIGN_OR_RETURN(auto x, F());` binds the value or returns the error.
#define GRIDEMU_ASSIGN_OR_RETURN(lhs, expr) \
  GRIDEMU_ASSIGN_OR_RETURN_IMPL_(GRIDEMU_CONCAT_(_res_, __LINE__), lhs, expr)
#define GRIDEMU_ASSIGN_OR_RETURN_IMPL_(res, lhs, expr) \
  auto res = (expr);                                   \
  if (!res.ok()) return res.status();                  \
  lhs = std::move(res).value()

// Errors as values at module edges. A Status carries one line that names the file,
// tensor or field at fault; Expected<T> is a value or such a Status.
#pragma once
#include <cstdio>
#include <optional>
#include <string>
#include <utility>
#include <variant>

namespace qw {

class Status {
 public:
  Status() = default;
  static Status Ok() { return Status(); }
  static Status Error(std::string message) { return Status(std::move(message)); }

  bool ok() const { return !message_.has_value(); }
  explicit operator bool() const { return ok(); }
  const std::string& message() const {
    static const std::string kOk = "ok";
    return message_ ? *message_ : kOk;
  }
  // Prefixes context ("while reading X: ") so callers can name what they were doing.
  Status context(const std::string& where) const {
    return ok() ? *this : Status(where + ": " + *message_);
  }

 private:
  explicit Status(std::string m) : message_(std::move(m)) {}
  std::optional<std::string> message_;
};

template <typename T>
class Expected {
 public:
  Expected(T value) : v_(std::move(value)) {}  // NOLINT: implicit by design
  Expected(Status error) : v_(std::move(error)) {}  // NOLINT
  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }
  T& value() & { return std::get<0>(v_); }
  const T& value() const& { return std::get<0>(v_); }
  T&& value() && { return std::get<0>(std::move(v_)); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  const Status& status() const {
    static const Status kOk;
    return ok() ? kOk : std::get<1>(v_);
  }

 private:
  std::variant<T, Status> v_;
};

template <typename... Args>
Status Errorf(const char* fmt, Args... args) {
  int n = std::snprintf(nullptr, 0, fmt, args...);
  std::string s(n > 0 ? size_t(n) : 0, '\0');
  if (n > 0) std::snprintf(s.data(), s.size() + 1, fmt, args...);
  return Status::Error(std::move(s));
}

}  // namespace qw

#define QW_CONCAT_INNER(a, b) a##b
#define QW_CONCAT(a, b) QW_CONCAT_INNER(a, b)

// Return early on a failed Status.
#define QW_RETURN_IF_ERROR(expr)          \
  do {                                    \
    ::qw::Status _qw_st = (expr);         \
    if (!_qw_st.ok()) return _qw_st;      \
  } while (0)

// `QW_ASSIGN_OR_RETURN(auto x, f());` : unwrap an Expected or return its Status.
#define QW_ASSIGN_OR_RETURN(lhs, expr) \
  QW_ASSIGN_OR_RETURN_IMPL(QW_CONCAT(_qw_exp_, __LINE__), lhs, expr)
#define QW_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                             \
  if (!tmp.ok()) return tmp.status();            \
  lhs = std::move(tmp).value()

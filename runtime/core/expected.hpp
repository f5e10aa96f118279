#pragma once

#include <cassert>
#include <string>
#include <utility>
#include <variant>

namespace kontor {

/// A value or an error, for APIs that must not throw across module boundaries.
/// `E` is a module's error type (usually `{errc code; std::string message;}`).
template <class T, class E>
class expected {
public:
  expected(T value) : v_(std::in_place_index<0>, std::move(value)) {}
  expected(E error) : v_(std::in_place_index<1>, std::move(error)) {}

  bool has_value() const noexcept { return v_.index() == 0; }
  explicit operator bool() const noexcept { return has_value(); }

  T& value() & { assert(has_value()); return std::get<0>(v_); }
  const T& value() const& { assert(has_value()); return std::get<0>(v_); }
  T&& value() && { assert(has_value()); return std::get<0>(std::move(v_)); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T&& operator*() && { return std::move(*this).value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

  const E& error() const& { assert(!has_value()); return std::get<1>(v_); }
  E&& error() && { assert(!has_value()); return std::get<1>(std::move(v_)); }

private:
  std::variant<T, E> v_;
};

/// `expected<void, E>`: success or an error.
template <class E>
class expected<void, E> {
public:
  expected() = default;
  expected(E error) : err_(std::move(error)), ok_(false) {}

  bool has_value() const noexcept { return ok_; }
  explicit operator bool() const noexcept { return ok_; }
  const E& error() const& { assert(!ok_); return err_; }

private:
  E err_{};
  bool ok_ = true;
};

} // namespace kontor

#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace kontor {

/// `v` as 8 big-endian bytes: keys that sort like the numbers (LMDB's MDB_APPEND needs that).
inline std::string to_be64(std::uint64_t v) {
  std::string out(8, '\0');
  for (int i = 7; i >= 0; --i, v >>= 8)
    out[static_cast<std::size_t>(i)] = static_cast<char>(v & 0xff);
  return out;
}

/// The big-endian number in the first 8 bytes of `s` (inverse of to_be64).
inline std::uint64_t from_be64(std::string_view s) {
  std::uint64_t v = 0;
  for (unsigned char c : s.substr(0, 8))
    v = (v << 8) | c;
  return v;
}

/// `values` as 8 big-endian bytes each, one after the other (per-shard positions, for instance).
inline std::string to_be64s(const std::vector<std::uint64_t>& values) {
  std::string out;
  out.reserve(values.size() * 8);
  for (auto v : values)
    out += to_be64(v);
  return out;
}

/// The numbers to_be64s wrote; nullopt when `s` is not a whole number of them.
inline std::optional<std::vector<std::uint64_t>> from_be64s(std::string_view s) {
  if (s.size() % 8 != 0)
    return std::nullopt;
  std::vector<std::uint64_t> out;
  out.reserve(s.size() / 8);
  for (std::size_t at = 0; at < s.size(); at += 8)
    out.push_back(from_be64(s.substr(at, 8)));
  return out;
}

} // namespace kontor

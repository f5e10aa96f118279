#pragma once

#include <cstdint>
#include <string>
#include <string_view>

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

} // namespace kontor

#include "runtime/projection/feed_cursor.hpp"

#include <array>

namespace kontor::projection {

namespace {

constexpr unsigned char cursor_version = 1;
constexpr std::string_view alphabet =
  "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

void put_varint(std::string& out, std::uint64_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<char>((v & 0x7f) | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<char>(v));
}

std::optional<std::uint64_t> get_varint(std::string_view& in) {
  std::uint64_t v = 0;
  for (int shift = 0; shift < 64 && !in.empty(); shift += 7) {
    const auto byte = static_cast<unsigned char>(in.front());
    in.remove_prefix(1);
    v |= std::uint64_t{byte & 0x7fu} << shift;
    if ((byte & 0x80) == 0)
      return v;
  }
  return std::nullopt;
}

std::string to_base64url(std::string_view bytes) {
  std::string out;
  std::uint32_t acc = 0;
  int bits = 0;
  for (unsigned char c : bytes) {
    acc = (acc << 8) | c;
    bits += 8;
    while (bits >= 6) {
      bits -= 6;
      out.push_back(alphabet[(acc >> bits) & 0x3f]);
    }
  }
  if (bits > 0)
    out.push_back(alphabet[(acc << (6 - bits)) & 0x3f]);
  return out;
}

std::optional<std::string> from_base64url(std::string_view text) {
  std::array<int, 256> value;
  value.fill(-1);
  for (std::size_t i = 0; i < alphabet.size(); ++i)
    value[static_cast<unsigned char>(alphabet[i])] = static_cast<int>(i);
  std::string out;
  std::uint32_t acc = 0;
  int bits = 0;
  for (unsigned char c : text) {
    if (value[c] < 0)
      return std::nullopt;
    acc = (acc << 6) | static_cast<std::uint32_t>(value[c]);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((acc >> bits) & 0xff));
    }
  }
  if (bits >= 6 || (acc & ((1u << bits) - 1)) != 0) // leftover bits must be padding zeros
    return std::nullopt;
  return out;
}

} // namespace

std::string encode_feed_cursor(const std::vector<shard_offset>& delivered) {
  std::string bytes(1, static_cast<char>(cursor_version));
  for (std::size_t s = 0; s < delivered.size(); ++s) {
    if (delivered[s] == 0)
      continue;
    put_varint(bytes, s);
    put_varint(bytes, delivered[s]);
  }
  return to_base64url(bytes);
}

std::optional<std::vector<shard_offset>> decode_feed_cursor(std::string_view token,
                                                            std::uint32_t shards) {
  auto bytes = from_base64url(token);
  if (!bytes || bytes->empty() || static_cast<unsigned char>((*bytes)[0]) != cursor_version)
    return std::nullopt;
  std::string_view in{*bytes};
  in.remove_prefix(1);
  std::vector<shard_offset> out(shards, 0);
  while (!in.empty()) {
    auto shard = get_varint(in);
    auto pos = get_varint(in);
    if (!shard || !pos || *shard >= shards || *pos == 0 || out[*shard] != 0)
      return std::nullopt;
    out[*shard] = *pos;
  }
  return out;
}

} // namespace kontor::projection

#include "runtime/persistence/log_record.hpp"

#include <algorithm>

namespace kontor::persistence::detail {

namespace {

constexpr std::uint8_t record_version = 2;
constexpr std::uint8_t flag_append_end = 1;
constexpr std::size_t shard_at = 1;
constexpr std::size_t pos_at = shard_at + 4;
constexpr std::size_t seq_at = pos_at + 8;
constexpr std::size_t time_at = seq_at + 8;
constexpr std::size_t flags_at = time_at + 8;
constexpr std::size_t id_size_at = flags_at + 1;
constexpr std::size_t fixed_size = id_size_at + 1;

} // namespace

std::size_t record_size(std::string_view id, std::string_view payload) noexcept {
  return fixed_size + id.size() + payload.size();
}

void encode_record(char* out, const record_header& h, std::string_view payload) noexcept {
  out[0] = static_cast<char>(record_version);
  store_be(out + shard_at, h.shard, 4);
  store_be(out + pos_at, h.shard_pos, 8);
  store_be(out + seq_at, h.seq, 8);
  store_be(out + time_at, static_cast<std::uint64_t>(h.written_at), 8);
  out[flags_at] = static_cast<char>(h.append_end ? flag_append_end : 0);
  out[id_size_at] = static_cast<char>(static_cast<unsigned char>(h.id.size()));
  std::copy(h.id.begin(), h.id.end(), out + fixed_size);
  std::copy(payload.begin(), payload.end(), out + fixed_size + h.id.size());
}

std::optional<record_header> peek_record(std::string_view rec, std::uint32_t shards) noexcept {
  if (rec.size() < fixed_size || static_cast<std::uint8_t>(rec[0]) != record_version)
    return std::nullopt;
  record_header h;
  h.shard = static_cast<shard_id>(load_be(rec.data() + shard_at, 4));
  if (h.shard >= shards)
    return std::nullopt;
  const std::size_t id_size = static_cast<unsigned char>(rec[id_size_at]);
  if (id_size == 0 || rec.size() < fixed_size + id_size)
    return std::nullopt;
  h.shard_pos = load_be(rec.data() + pos_at, 8);
  h.seq = load_be(rec.data() + seq_at, 8);
  h.written_at = static_cast<epoch_ms>(load_be(rec.data() + time_at, 8));
  h.append_end = (static_cast<std::uint8_t>(rec[flags_at]) & flag_append_end) != 0;
  h.id = rec.substr(fixed_size, id_size);
  if (h.shard_pos == 0 || h.seq == 0)
    return std::nullopt;
  return h;
}

bool decode_record(std::string_view rec, std::uint32_t shards, log_offset offset,
                   stored_event& out) {
  auto h = peek_record(rec, shards);
  if (!h)
    return false;
  out.persistence_id.assign(h->id);
  out.seq = h->seq;
  out.shard = h->shard;
  out.offset = offset;
  out.written_at = h->written_at;
  out.payload.assign(rec.substr(fixed_size + h->id.size()));
  out.shard_pos = h->shard_pos;
  out.append_end = h->append_end;
  return true;
}

id_key::id_key(std::string_view id) noexcept : prefix_size(1 + id.size()) {
  bytes[0] = static_cast<char>(static_cast<unsigned char>(id.size()));
  std::copy(id.begin(), id.end(), bytes + 1);
}

std::optional<sequence_nr> id_key::seq_of(const MDB_val& key) const noexcept {
  auto k = to_view(key);
  if (k.size() != prefix_size + 8 || k.substr(0, prefix_size) != prefix())
    return std::nullopt;
  return load_be(k.data() + prefix_size, 8);
}

std::optional<std::pair<shard_id, shard_offset>> shard_key::parse(const MDB_val& key) noexcept {
  if (key.mv_size != 12)
    return std::nullopt;
  const auto* p = static_cast<const char*>(key.mv_data);
  return std::pair{static_cast<shard_id>(load_be(p, 4)), load_be(p + 4, 8)};
}

} // namespace kontor::persistence::detail

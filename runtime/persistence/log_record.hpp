#pragma once

// Internal to kontor_persistence: the journal's on-disk record and key formats.
//
// Log record (value of the log database, key = log offset u64 BE), version 2:
//   [version u8 = 2][shard u32 BE][shard position u64 BE][seq u64 BE][written_at i64 BE]
//   [flags u8: bit 0 = last event of its append][id length u8][id][payload]
// Index keys (the derived index environment):
//   by id:    [id length u8][id][seq u64 BE]      -> log offset u64 BE
//   by shard: [shard u32 BE][shard position u64 BE] -> log offset u64 BE

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

#include "runtime/core/ids.hpp"
#include "runtime/persistence/journal.hpp"
#include "runtime/persistence/lmdb_env.hpp"

namespace kontor::persistence::detail {

inline constexpr std::size_t max_id_size = 255;

/// Whether `id` can be stored (1..255 bytes).
inline bool valid_id(std::string_view id) noexcept {
  return !id.empty() && id.size() <= max_id_size;
}

/// The fields of a log record besides its payload. `id` views the record (or the caller's id).
struct record_header {
  shard_id shard = 0;
  shard_offset shard_pos = 0;
  sequence_nr seq = 0;
  epoch_ms written_at = 0;
  bool append_end = true;
  std::string_view id;
};

/// The size of the record for `id` and `payload`.
std::size_t record_size(std::string_view id, std::string_view payload) noexcept;

/// Writes a record into `out` (record_size(h.id, payload) bytes, reserved by LMDB).
void encode_record(char* out, const record_header& h, std::string_view payload) noexcept;

/// The header of a record (its id a view into `rec`); nullopt if it is not a well-formed
/// version-2 record of a shard below `shards`.
std::optional<record_header> peek_record(std::string_view rec, std::uint32_t shards) noexcept;

/// Decodes a whole record found at `offset`; false if it is malformed.
bool decode_record(std::string_view rec, std::uint32_t shards, log_offset offset,
                   stored_event& out);

/// Index keys by id ([len][id][seq BE]) and snapshot keys ([len][id]), built without allocating.
struct id_key {
  char bytes[1 + max_id_size + 8];
  std::size_t prefix_size;
  explicit id_key(std::string_view id) noexcept;
  std::string_view prefix() const noexcept { return {bytes, prefix_size}; }
  MDB_val prefix_val() noexcept { return MDB_val{prefix_size, bytes}; }
  MDB_val with_seq(sequence_nr seq) noexcept {
    store_be(bytes + prefix_size, seq, 8);
    return MDB_val{prefix_size + 8, bytes};
  }
  /// The sequence number of `key` if it is an index key of this id.
  std::optional<sequence_nr> seq_of(const MDB_val& key) const noexcept;
};

/// Index keys by shard: [shard u32 BE][position u64 BE].
struct shard_key {
  char bytes[12];
  shard_key(shard_id shard, shard_offset pos) noexcept {
    store_be(bytes, shard, 4);
    store_be(bytes + 4, pos, 8);
  }
  MDB_val val() noexcept { return MDB_val{sizeof bytes, bytes}; }
  /// The shard and position of `key`; nullopt if it is not a shard key.
  static std::optional<std::pair<shard_id, shard_offset>> parse(const MDB_val& key) noexcept;
};

} // namespace kontor::persistence::detail

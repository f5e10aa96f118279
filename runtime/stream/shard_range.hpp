#pragma once

#include <cstddef>
#include <cstdint>

#include "runtime/persistence/journal.hpp"
#include "runtime/stream/messages.hpp"

namespace kontor::stream {

/// What a source puts into one range page at most, whatever the receiver asks for.
struct range_limits {
  std::uint32_t max_positions = 4096;   ///< positions per range (a longer range is cut short)
  std::uint32_t max_bytes = 4u << 20;   ///< event bytes per page (and as much in snapshots)
                                        ///< beyond the first append and the first snapshot
};

/// Reads the page that answers `req` from `journal` (see range_page for what it holds), within
/// `limits` and req.max_bytes. A page holds at least one whole append whenever an append starts
/// in the range, however large. Fails when the journal does (a shard out of range, I/O) or when
/// the range is empty (to <= from).
persistence::expected<range_page> read_range(const persistence::journal& journal,
                                             const range_request& req, range_limits limits = {});

} // namespace kontor::stream

#include "runtime/stream/shard_range.hpp"

#include <algorithm>
#include <string>
#include <unordered_map>
#include <utility>

namespace kontor::stream {

namespace {

using persistence::errc;
using persistence::stored_event;

/// What one event costs in a page: its bytes plus its fixed fields, roughly as serialized.
std::size_t event_bytes(const stored_event& e) {
  return e.payload.size() + e.persistence_id.size() + 48;
}

persistence::error range_error(errc code, const range_request& req, const std::string& what) {
  return persistence::error{code, "range [" + std::to_string(req.from) + ", "
                                    + std::to_string(req.to) + ") of shard "
                                    + std::to_string(req.shard) + ": " + what};
}

} // namespace

persistence::expected<range_page> read_range(const persistence::journal& journal,
                                             const range_request& req, range_limits limits) {
  const shard_offset from = std::max<shard_offset>(req.from, 1);
  if (req.to <= from)
    return range_error(errc::invalid_argument, req, "the range is empty");
  const shard_offset to = std::min<shard_offset>(
    req.to, from + std::max<std::uint32_t>(limits.max_positions, 1));
  const std::size_t byte_cap = std::max<std::size_t>(std::min(req.max_bytes, limits.max_bytes), 1);
  // Read from the position before the range: it tells whether `from` starts an append, and it
  // is the page's `prev`. The journal rounds the read up to the end of the last append.
  const shard_offset read_from = from > 1 ? from - 1 : 1;
  auto read = journal.read_shard_log(req.shard, read_from, static_cast<std::size_t>(to - read_from));
  if (!read)
    return std::move(read).error();
  auto& events = read->events;

  range_page page;
  page.shard = req.shard;
  page.from = from;
  page.end = read->end;
  std::size_t i = 0;
  bool at_start = true; // whether events[i] starts an append
  if (from > 1 && !events.empty() && events[0].shard_pos == from - 1) {
    page.prev = events[0];
    page.prev.payload.clear();
    at_start = events[0].append_end;
    i = 1;
  }
  // The rest of an append that began before `from` belongs to the previous page.
  while (i < events.size() && !at_start)
    at_start = events[i++].append_end;

  // Whole appends that start before `to`, cut between appends at the byte budget.
  std::size_t bytes = 0;
  bool cut = false;
  while (i < events.size() && events[i].shard_pos < to) {
    std::size_t k = i;
    std::size_t append_bytes = 0;
    bool whole = false;
    while (k < events.size() && !whole) {
      append_bytes += event_bytes(events[k]);
      whole = events[k++].append_end;
    }
    if (!whole || (!page.events.empty() && bytes + append_bytes > byte_cap)) {
      cut = true;
      page.next = events[i].shard_pos;
      break;
    }
    bytes += append_bytes;
    std::move(events.begin() + static_cast<std::ptrdiff_t>(i),
              events.begin() + static_cast<std::ptrdiff_t>(k), std::back_inserter(page.events));
    i = k;
  }
  if (!cut)
    page.next = std::max(from, std::min(to, page.end + 1));

  // The latest snapshot of each id in the page, when an import of the page can take it.
  std::unordered_map<std::string, sequence_nr> last_seq;
  std::vector<const std::string*> ids; // in order of first appearance: a deterministic page
  for (const auto& e : page.events) {
    auto [it, added] = last_seq.try_emplace(e.persistence_id, e.seq);
    if (added)
      ids.push_back(&it->first);
    else
      it->second = std::max(it->second, e.seq);
  }
  std::size_t snapshot_bytes = 0;
  for (const auto* id : ids) {
    auto snap = journal.load_snapshot(*id);
    if (!snap)
      return std::move(snap).error();
    if (!*snap || (*snap)->seq == 0 || (*snap)->seq > last_seq[*id])
      continue;
    const std::size_t size = (*snap)->payload.size() + id->size() + 16;
    if (snapshot_bytes > 0 && snapshot_bytes + size > byte_cap)
      continue; // a later page with this id carries it
    snapshot_bytes += size;
    page.snapshots.push_back(std::move(**snap));
  }
  return page;
}

} // namespace kontor::stream

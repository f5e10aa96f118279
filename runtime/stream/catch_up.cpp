#include "runtime/stream/catch_up.hpp"

#include <algorithm>
#include <map>
#include <string>
#include <utility>

#include <caf/all.hpp>

namespace kontor::stream {

namespace {

using persistence::stored_event;

/// An import's outcome, posted by the journal's writer thread to the worker (local only).
struct import_done {
  shard_offset last = 0; ///< the page's last position
  persistence::expected<persistence::import_result> result;
};

} // namespace

} // namespace kontor::stream

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(kontor::stream::import_done)

namespace kontor::stream {

const char* to_string(catch_up_errc code) noexcept {
  switch (code) {
    case catch_up_errc::ok:
      return "ok";
    case catch_up_errc::invalid_argument:
      return "invalid_argument";
    case catch_up_errc::source_unreachable:
      return "source_unreachable";
    case catch_up_errc::timeout:
      return "timeout";
    case catch_up_errc::source_failed:
      return "source_failed";
    case catch_up_errc::bad_reply:
      return "bad_reply";
    case catch_up_errc::source_behind:
      return "source_behind";
    case catch_up_errc::diverged:
      return "diverged";
    case catch_up_errc::import_refused:
      return "import_refused";
    case catch_up_errc::journal_failed:
      return "journal_failed";
    case catch_up_errc::cancelled:
      return "cancelled";
  }
  return "unknown";
}

namespace {

/// One range [from, to) of the shard: requested, then its page held until it is imported.
struct range_slot {
  shard_offset to = 0;
  std::uint32_t attempts = 0; ///< requests sent for it
  std::uint64_t tag = 0;      ///< the request whose answer counts (older ones are stale)
  bool received = false;
  range_page page;
};

struct catch_up_state {
  persistence::journal* journal = nullptr;
  catch_up_spec spec;
  catch_up_settings settings;
  caf::response_promise answer;
  bool started = false;
  bool failed = false;   ///< stop asking; answer once the queued imports are done
  bool answered = false;
  catch_up_result result;
  shard_offset start = 0;          ///< the receiver's end when it started
  stored_event own_last;           ///< the receiver's event at `start` (when start > 0)
  bool target_known = false;
  shard_offset target = 0;         ///< copy the appends that start at or before this position
  shard_offset cursor = 0;         ///< the first position not in any range yet
  shard_offset handed = 0;         ///< the last position handed to the journal
  std::map<shard_offset, range_slot> ranges; ///< by first position; imported in this order
  std::size_t imports_in_flight = 0;
  std::uint64_t next_tag = 0;
  static inline const char* name = "kontor.catch_up";
};

using worker = caf::stateful_actor<catch_up_state>*;

std::string range_text(shard_offset from, shard_offset to) {
  return "[" + std::to_string(from) + ", " + std::to_string(to) + ")";
}

void pump(worker self);

/// Records the first failure and stops asking; the next pump() answers once the queued imports
/// are done (every handler ends with a pump).
void fail(worker self, catch_up_errc code, std::string message) {
  auto& st = self->state;
  if (st.failed)
    return;
  st.failed = true;
  st.result.code = code;
  st.result.message = "catch-up of shard " + std::to_string(st.spec.shard) + ": "
                      + std::move(message);
  st.ranges.clear();
}

void send_request(worker self, shard_offset from);

/// A failed request: retried while attempts are left, else the catch-up fails.
void on_request_error(worker self, shard_offset from, std::uint64_t tag, const caf::error& err) {
  auto& st = self->state;
  auto it = st.ranges.find(from);
  if (st.failed || it == st.ranges.end() || it->second.tag != tag)
    return;
  if (err == caf::sec::request_receiver_down) {
    fail(self, catch_up_errc::source_unreachable,
         "the source is down (request for " + range_text(from, it->second.to) + ")");
    pump(self);
    return;
  }
  const bool timed_out = err == caf::sec::request_timeout;
  if (it->second.attempts > st.settings.max_retries) {
    fail(self, timed_out ? catch_up_errc::timeout : catch_up_errc::source_failed,
         "the request for " + range_text(from, it->second.to) + " failed "
           + std::to_string(it->second.attempts) + " times, last: "
           + (timed_out ? std::string{"no answer within "}
                            + std::to_string(st.settings.request_timeout.count()) + " ms"
                        : self->system().render(err)));
    pump(self);
    return;
  }
  send_request(self, from);
}

/// Checks a page against its range and what the source said before; the reason when it is bad.
std::string check_page(const catch_up_state& st, shard_offset from, const range_slot& slot,
                       const range_page& page) {
  if (page.shard != st.spec.shard || page.from != from)
    return "the answer for " + range_text(from, slot.to) + " is for " + range_text(page.from, page.next)
           + " of shard " + std::to_string(page.shard);
  if (page.next < from || page.next > slot.to)
    return "the answer for " + range_text(from, slot.to) + " says the next page starts at "
           + std::to_string(page.next);
  if (st.target_known && page.end < st.target)
    return "the source's end went back from " + std::to_string(st.target) + " to "
           + std::to_string(page.end);
  const auto& evs = page.events;
  if (evs.empty()) {
    // No progress although the source holds the range: it would be asked for it forever.
    const shard_offset known_end = st.target_known ? st.target : page.end;
    if (page.next == from && from <= known_end)
      return "the answer for " + range_text(from, slot.to) + " is empty although the source's end is "
             + std::to_string(page.end);
    return {};
  }
  for (std::size_t k = 0; k < evs.size(); ++k) {
    const auto& e = evs[k];
    if (e.shard != st.spec.shard)
      return "the answer for " + range_text(from, slot.to) + " holds an event of shard "
             + std::to_string(e.shard);
    if (k > 0 && e.shard_pos != evs[k - 1].shard_pos + 1)
      return "the answer for " + range_text(from, slot.to) + " skips from position "
             + std::to_string(evs[k - 1].shard_pos) + " to " + std::to_string(e.shard_pos);
    const bool starts_append = k == 0 || evs[k - 1].append_end;
    if (starts_append && (e.shard_pos < from || e.shard_pos >= page.next))
      return "the answer for " + range_text(from, slot.to) + " holds an append starting at "
             + std::to_string(e.shard_pos) + ", outside " + range_text(from, page.next);
  }
  if (!evs.back().append_end)
    return "the answer for " + range_text(from, slot.to) + " ends inside an append";
  if (evs.back().shard_pos + 1 < page.next)
    return "the answer for " + range_text(from, slot.to) + " leaves positions "
           + std::to_string(evs.back().shard_pos + 1) + " to " + std::to_string(page.next - 1)
           + " out";
  if (page.end < evs.back().shard_pos)
    return "the answer for " + range_text(from, slot.to) + " holds positions past its end "
           + std::to_string(page.end);
  return {};
}

/// The first answer: is the receiver's shard a prefix of the source's, and how far to copy.
/// Fails the catch-up, or removes the first range when there is nothing to copy.
void check_first(worker self, const range_page& page) {
  auto& st = self->state;
  if (st.start > 0) {
    const auto& p = page.prev;
    if (p.shard_pos != st.start) {
      if (page.end < st.start)
        fail(self, catch_up_errc::diverged,
             "the receiver holds the shard up to position " + std::to_string(st.start)
               + ", the source only up to " + std::to_string(page.end));
      else
        fail(self, catch_up_errc::bad_reply,
             "the first answer lacks the source's event at position " + std::to_string(st.start));
      return;
    }
    const auto& mine = st.own_last;
    if (p.persistence_id != mine.persistence_id || p.seq != mine.seq
        || p.written_at != mine.written_at || p.append_end != mine.append_end) {
      fail(self, catch_up_errc::diverged,
           "position " + std::to_string(st.start) + " holds '" + mine.persistence_id + "' seq "
             + std::to_string(mine.seq) + " written at " + std::to_string(mine.written_at)
             + " here, '" + p.persistence_id + "' seq " + std::to_string(p.seq) + " written at "
             + std::to_string(p.written_at) + " on the source");
      return;
    }
  }
  if (st.spec.until > 0 && page.end < st.spec.until) {
    fail(self, catch_up_errc::source_behind,
         "asked up to position " + std::to_string(st.spec.until) + ", the source ends at "
           + std::to_string(page.end));
    return;
  }
  st.target = st.spec.until > 0 ? st.spec.until : page.end;
  st.target_known = true;
  if (st.target <= st.start) {
    st.ranges.clear(); // verified, and nothing to copy: the page's events are past the target
    st.cursor = st.target + 1;
  }
}

void on_page(worker self, shard_offset from, std::uint64_t tag, range_page& page) {
  auto& st = self->state;
  auto it = st.ranges.find(from);
  if (st.failed || it == st.ranges.end() || it->second.tag != tag)
    return;
  auto& slot = it->second;
  st.result.source_end = std::max(st.result.source_end, page.end);
  if (auto bad = check_page(st, from, slot, page); !bad.empty()) {
    fail(self, catch_up_errc::bad_reply, std::move(bad));
    pump(self);
    return;
  }
  if (!st.target_known)
    check_first(self, page);
  if (st.ranges.find(from) == st.ranges.end()) { // failed, or nothing to copy (check_first)
    pump(self);
    return;
  }
  // A page cut short: the rest of its range is a range of its own, asked for at once.
  const shard_offset rest_to = std::min(slot.to, st.target + 1);
  if (page.next < rest_to) {
    st.ranges.emplace(page.next, range_slot{rest_to, 0, 0, false, {}});
    send_request(self, page.next);
  }
  auto& kept = st.ranges.at(from);
  kept.to = page.next;
  kept.received = true;
  kept.page = std::move(page);
  pump(self);
}

void send_request(worker self, shard_offset from) {
  auto& st = self->state;
  auto& slot = st.ranges.at(from);
  ++slot.attempts;
  slot.tag = ++st.next_tag;
  const auto tag = slot.tag;
  self->request(st.spec.source, st.settings.request_timeout, read_range_atom::value,
                range_request{st.spec.shard, from, slot.to, st.settings.page_bytes})
    .then([self, from, tag](range_page& page) { on_page(self, from, tag, page); },
          [self, from, tag](caf::error& err) { on_request_error(self, from, tag, err); });
}

void finish(worker self) {
  auto& st = self->state;
  if (st.answered)
    return;
  st.answered = true;
  st.result.end = std::max(st.result.end, st.start);
  st.answer.deliver(st.result);
  self->quit();
}

/// Imports every page whose predecessors are imported, asks for more while the window allows,
/// and answers when the target is reached or after a failure once no import is queued.
void pump(worker self) {
  auto& st = self->state;
  if (st.failed) {
    if (st.imports_in_flight == 0)
      finish(self);
    return;
  }
  while (!st.ranges.empty() && st.ranges.begin()->second.received) {
    auto node = st.ranges.extract(st.ranges.begin());
    auto& page = node.mapped().page;
    if (page.events.empty()) {
      // No append starts in the range: the previous page's last append must cover it.
      if (st.handed + 1 < page.next) {
        fail(self, catch_up_errc::bad_reply,
             "no event covers positions " + std::to_string(st.handed + 1) + " to "
               + std::to_string(page.next - 1));
        pump(self);
        return;
      }
      continue;
    }
    if (page.events.front().shard_pos != st.handed + 1) {
      fail(self, catch_up_errc::bad_reply,
           "the page for " + range_text(page.from, page.next) + " starts at position "
             + std::to_string(page.events.front().shard_pos) + ", expected "
             + std::to_string(st.handed + 1));
      pump(self);
      return;
    }
    const shard_offset last = page.events.back().shard_pos;
    st.handed = last;
    ++st.imports_in_flight;
    auto me = caf::actor_cast<caf::actor>(self);
    st.journal->import_async(
      persistence::shard_import{st.spec.shard, std::move(page.events), std::move(page.snapshots)},
      [me, last](persistence::expected<persistence::import_result> r) {
        caf::anon_send(me, import_done{last, std::move(r)});
      });
  }
  if (st.target_known) {
    while (st.cursor <= st.target && st.ranges.size() + st.imports_in_flight < st.settings.window) {
      const shard_offset from = st.cursor;
      const shard_offset to = std::min<shard_offset>(from + st.settings.page_positions, st.target + 1);
      st.ranges.emplace(from, range_slot{to, 0, 0, false, {}});
      st.cursor = to;
      send_request(self, from);
    }
    if (st.cursor > st.target && st.ranges.empty() && st.imports_in_flight == 0)
      finish(self);
  }
}

void on_imported(worker self, import_done& done) {
  auto& st = self->state;
  --st.imports_in_flight;
  if (!done.result) {
    const auto& err = done.result.error();
    const bool refused = err.code == persistence::errc::sequence_conflict
                         || err.code == persistence::errc::invalid_argument;
    fail(self, refused ? catch_up_errc::import_refused : catch_up_errc::journal_failed,
         "the journal did not import the page ending at " + std::to_string(done.last) + ": "
           + persistence::to_string(err.code) + ": " + err.message);
  } else {
    st.result.end = std::max(st.result.end, done.result->shard_end);
    st.result.imported += done.result->imported;
  }
  pump(self);
}

/// Reads where the receiver stands and sends the first request (or fails the catch-up).
void begin(worker self) {
  auto& st = self->state;
  st.result.shard = st.spec.shard;
  if (!st.spec.source) {
    fail(self, catch_up_errc::invalid_argument, "no source given");
    return;
  }
  if (st.spec.shard >= st.journal->number_of_shards()) {
    fail(self, catch_up_errc::invalid_argument,
         "the receiver's journal has " + std::to_string(st.journal->number_of_shards())
           + " shards");
    return;
  }
  auto end = st.journal->shard_end(st.spec.shard);
  if (!end) {
    fail(self, catch_up_errc::journal_failed, "reading the receiver's end: " + end.error().message);
    return;
  }
  st.start = *end;
  st.result.end = st.start;
  st.handed = st.start;
  if (st.start > 0) {
    auto own = st.journal->read_shard_log(st.spec.shard, st.start, 1);
    if (!own || own->events.empty() || own->events.front().shard_pos != st.start) {
      fail(self, catch_up_errc::journal_failed,
           "reading the receiver's event at position " + std::to_string(st.start)
             + (own ? std::string{} : ": " + own.error().message));
      return;
    }
    st.own_last = std::move(own->events.front());
  }
  self->monitor(st.spec.source);
  // The first range alone: its answer verifies the prefix and fixes the target.
  const shard_offset from = st.start + 1;
  shard_offset to = from + std::max<std::uint32_t>(st.settings.page_positions, 1);
  if (st.spec.until > st.start)
    to = std::min(to, st.spec.until + 1);
  st.ranges.emplace(from, range_slot{to, 0, 0, false, {}});
  st.cursor = to;
  send_request(self, from);
}

caf::behavior catch_up_actor(worker self, persistence::journal* journal, catch_up_spec spec,
                             catch_up_settings settings) {
  self->state.journal = journal;
  self->state.spec = std::move(spec);
  settings.window = std::max<std::size_t>(settings.window, 1);
  settings.page_positions = std::max<std::uint32_t>(settings.page_positions, 1);
  self->state.settings = settings;
  self->set_down_handler([self](caf::down_msg& msg) {
    if (msg.source != self->state.spec.source.address())
      return;
    fail(self, catch_up_errc::source_unreachable,
         "the source went down (" + self->system().render(msg.reason) + ")");
    pump(self);
  });
  self->set_exit_handler([self](caf::exit_msg& msg) {
    if (!self->state.started) {
      self->quit(msg.reason);
      return;
    }
    fail(self, catch_up_errc::cancelled,
         "told to exit (" + self->system().render(msg.reason) + ")");
    pump(self);
  });
  return {
    [self](catch_up_atom) -> caf::result<catch_up_result> {
      auto& st = self->state;
      if (st.started)
        return caf::make_error(caf::sec::runtime_error, "this catch-up has already been started");
      st.started = true;
      st.answer = self->make_response_promise();
      begin(self);
      pump(self);
      return st.answer;
    },
    [self](import_done& done) { on_imported(self, done); },
  };
}

} // namespace

caf::actor spawn_catch_up(caf::actor_system& sys, persistence::journal& journal,
                          catch_up_spec spec, catch_up_settings settings) {
  return sys.spawn(catch_up_actor, &journal, std::move(spec), settings);
}

catch_up_result run_catch_up(caf::actor_system& sys, persistence::journal& journal,
                             catch_up_spec spec, catch_up_settings settings,
                             std::chrono::milliseconds wait) {
  const shard_id shard = spec.shard;
  auto worker_handle = spawn_catch_up(sys, journal, std::move(spec), settings);
  catch_up_result out;
  caf::scoped_actor self{sys};
  self->request(worker_handle, wait, catch_up_atom::value)
    .receive([&](catch_up_result& r) { out = std::move(r); },
             [&](caf::error& err) {
               out.shard = shard;
               out.code = err == caf::sec::request_timeout ? catch_up_errc::timeout
                                                           : catch_up_errc::cancelled;
               out.message = "catch-up of shard " + std::to_string(shard)
                             + " gave no answer: " + sys.render(err);
               auto end = journal.shard_end(shard);
               out.end = end ? *end : 0;
               caf::anon_send_exit(worker_handle, caf::exit_reason::user_shutdown);
             });
  return out;
}

} // namespace kontor::stream

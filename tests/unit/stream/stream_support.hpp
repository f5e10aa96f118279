#pragma once

// Shared by the stream tests: real LMDB journals in temp dirs filled with a shard history of
// appends of 1-3 events (fixed seed), actor systems as every node has them (Kontor's types, the
// io middleman), and comparisons of two copies of a shard.

#include <caf/all.hpp>
#include <caf/io/all.hpp>
#include <catch2/catch.hpp>

#include <cstdint>
#include <future>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "runtime/message_types.hpp"
#include "runtime/persistence/lmdb_journal.hpp"
#include "runtime/stream/catch_up.hpp"
#include "runtime/stream/log_server.hpp"
#include "tests/support/temp_dir.hpp"

namespace kontor::stream::testing {

using persistence::stored_event;

/// The shard the tests copy (the journals have 4; shards 0 and 2 get other events in between).
constexpr shard_id copied_shard = 1;

/// A real journal on real LMDB in its own temp dir, removed at the end.
struct journal_fixture {
  journal_fixture() {
    persistence::lmdb_options opts;
    opts.dir = dir.path() / "journal";
    opts.number_of_shards = 4;
    auto j = persistence::open_lmdb_journal(opts);
    if (!j)
      FAIL("open_lmdb_journal: " << j.error().message);
    journal = std::move(*j);
  }
  kontor::test::temp_dir dir{"kontor-stream"};
  std::unique_ptr<persistence::journal> journal;
};

/// Writes a shard history: appends of 1-3 events to ids of `copied_shard`, payloads of varying
/// size, an event of shard 0 or 2 every few appends (so offsets and positions differ), and a
/// snapshot of some ids now and then. Deterministic for a seed; continues earlier calls.
class history_writer {
public:
  explicit history_writer(std::uint32_t seed, std::size_t ids = 300) : rng_(seed), ids_(ids) {}

  /// Appends at least `events` events to `copied_shard` (whole appends), with the rest.
  void write(persistence::journal& j, std::size_t events) {
    touched_.clear();
    std::vector<persistence::append_request> reqs;
    std::size_t written = 0;
    while (written < events) {
      const std::string id = "id-" + std::to_string(pick(ids_));
      const std::size_t n = 1 + pick(3);
      persistence::append_request req{copied_shard, id, seq_[id] + 1, {}};
      for (std::size_t k = 0; k < n; ++k)
        req.events.push_back(id + "#" + std::to_string(seq_[id] + 1 + k) + ":"
                             + std::string(pick(180), 'x'));
      seq_[id] += n;
      written += n;
      touched_.insert(id);
      reqs.push_back(std::move(req));
      if (pick(4) == 0) {
        const shard_id other = pick(2) == 0 ? 0 : 2;
        const std::string oid = "other-" + std::to_string(other);
        reqs.push_back(persistence::append_request{other, oid, ++seq_[oid], {"o"}});
      }
    }
    append_all(j, std::move(reqs));
    // Snapshots of about one id in ten, at its current seq or a little before.
    for (std::size_t i = 0; i < ids_; i += 1 + pick(19)) {
      const std::string id = "id-" + std::to_string(i);
      if (seq_[id] == 0)
        continue;
      const sequence_nr at = seq_[id] - pick(std::min<sequence_nr>(seq_[id], 3));
      save(j, persistence::snapshot{id, at, "snap of " + id + " at " + std::to_string(at)});
    }
  }

  /// The ids written so far.
  std::vector<std::string> ids() const {
    std::vector<std::string> out;
    for (const auto& [id, seq] : seq_)
      if (id.rfind("id-", 0) == 0)
        out.push_back(id);
    return out;
  }

  /// The ids of `copied_shard` that the last write() appended to.
  std::vector<std::string> touched_ids() const { return {touched_.begin(), touched_.end()}; }

  /// Appends all requests at once (they share group commits) and requires every one to land.
  static void append_all(persistence::journal& j, std::vector<persistence::append_request> reqs) {
    std::vector<std::future<persistence::expected<persistence::append_result>>> futures;
    for (auto& req : reqs) {
      auto p = std::make_shared<std::promise<persistence::expected<persistence::append_result>>>();
      futures.push_back(p->get_future());
      j.append_async(std::move(req), [p](persistence::expected<persistence::append_result> r) {
        p->set_value(std::move(r));
      });
    }
    for (auto& f : futures) {
      auto r = f.get();
      if (!r)
        FAIL("append failed: " << r.error().message);
    }
  }

  /// Saves a snapshot and requires it to be durable.
  static void save(persistence::journal& j, persistence::snapshot snap) {
    auto p = std::make_shared<std::promise<persistence::expected<void>>>();
    auto f = p->get_future();
    j.save_snapshot_async(std::move(snap), [p](persistence::expected<void> r) { p->set_value(r); });
    REQUIRE(f.get().has_value());
  }

private:
  std::size_t pick(std::size_t n) { return n == 0 ? 0 : static_cast<std::size_t>(rng_() % n); }
  std::mt19937 rng_;
  std::size_t ids_;
  std::map<std::string, sequence_nr> seq_;
  std::set<std::string> touched_;
};

/// Every event of `shard` in `j` from position `from` on.
inline std::vector<stored_event> shard_log(const persistence::journal& j,
                                           shard_id shard = copied_shard, shard_offset from = 1) {
  std::vector<stored_event> out;
  for (;;) {
    auto page = j.read_shard_log(shard, from, 1000);
    if (!page)
      FAIL("read_shard_log: " << page.error().message);
    if (page->events.empty())
      return out;
    out.insert(out.end(), page->events.begin(), page->events.end());
    from = page->next;
  }
}

/// What a copy of a shard must keep of each event (all but the local log offset), one string
/// per event so that a mismatch prints readably.
inline std::vector<std::string> kept(const std::vector<stored_event>& events) {
  std::vector<std::string> out;
  out.reserve(events.size());
  for (const auto& e : events)
    out.push_back(std::to_string(e.shard) + "@" + std::to_string(e.shard_pos) + " "
                  + e.persistence_id + "/" + std::to_string(e.seq) + (e.append_end ? "." : ",")
                  + " t" + std::to_string(e.written_at) + " " + e.payload);
  return out;
}

/// The snapshots of `ids` in `j`, "id seq payload" each ("id -" when none).
inline std::vector<std::string> snapshots_of(const persistence::journal& j,
                                             const std::vector<std::string>& ids) {
  std::vector<std::string> out;
  for (const auto& id : ids) {
    auto s = j.load_snapshot(id);
    REQUIRE(s.has_value());
    out.push_back(*s ? id + " " + std::to_string((*s)->seq) + " " + (*s)->payload : id + " -");
  }
  return out;
}

/// Snapshots are copied with the pages holding events of their id (range_page): after a
/// catch-up, each id with events in the copied positions has the source's latest snapshot
/// (here never ahead of its events), and no id has a snapshot ahead of its events.
inline void require_snapshots_copied(const persistence::journal& receiver,
                                     const persistence::journal& source,
                                     const std::vector<std::string>& copied_ids,
                                     const std::vector<std::string>& all_ids) {
  CHECK(snapshots_of(receiver, copied_ids) == snapshots_of(source, copied_ids));
  for (const auto& id : all_ids) {
    auto snap = receiver.load_snapshot(id);
    REQUIRE(snap.has_value());
    if (*snap)
      CHECK((*snap)->seq <= receiver.highest_sequence_nr(id).value());
  }
}

/// An actor system as every Kontor node has it: Kontor's types and the io middleman.
struct node {
  node() : sys{configure(cfg)} {}
  static caf::actor_system_config& configure(caf::actor_system_config& c) {
    add_message_types(c);
    c.load<caf::io::middleman>();
    return c;
  }
  caf::actor_system_config cfg;
  caf::actor_system sys;
};

/// Stops the actors it holds when the test leaves its scope, also through a failed REQUIRE
/// (an actor system waits for every actor before it goes away).
struct stop_all {
  std::vector<caf::actor> actors;
  ~stop_all() {
    for (auto& a : actors)
      caf::anon_send_exit(a, caf::exit_reason::kill);
  }
};

/// The receiver's shard must be exactly the source's first `end` positions, `end` at an append
/// boundary (a consistent prefix).
inline void require_prefix(const persistence::journal& receiver, const persistence::journal& source,
                           shard_offset end) {
  auto got = shard_log(receiver);
  REQUIRE(got.size() == end);
  REQUIRE(receiver.shard_end(copied_shard).value() == end);
  auto all = shard_log(source);
  REQUIRE(all.size() >= end);
  all.resize(end);
  CHECK(kept(got) == kept(all));
  if (end > 0)
    CHECK(got.back().append_end);
}

} // namespace kontor::stream::testing

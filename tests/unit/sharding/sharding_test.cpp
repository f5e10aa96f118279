// The generic sharding runtime with a small counter entity on a real LMDB journal.

#include <caf/all.hpp>
#include <catch2/catch.hpp>

#include <charconv>
#include <future>

#include "runtime/persistence/lmdb_journal.hpp"
#include "runtime/policy/checkpoint.hpp"
#include "runtime/sharding/cluster_messages.hpp"
#include "runtime/sharding/messages.hpp"
#include "runtime/sharding/shard_region.hpp"
#include "tests/support/temp_dir.hpp"
#include "tests/support/wait.hpp"

using namespace kontor;
using namespace std::chrono_literals;

namespace {

std::int64_t to_i64(std::string_view s) {
  std::int64_t v = 0;
  std::from_chars(s.data(), s.data() + s.size(), v);
  return v;
}

/// Commands: "add N" (appends event "N") or "get". Replies: "sum/count". Snapshot: "sum/count".
class counter final : public sharding::entity_logic {
public:
  restored restore(sequence_nr seq, std::string_view snap) override {
    auto slash = snap.find('/');
    if (slash == std::string_view::npos)
      return restored::unreadable;
    if (snapshots_outdated)
      return restored::outdated;
    sum_ = to_i64(snap.substr(0, slash));
    count_ = to_i64(snap.substr(slash + 1));
    return static_cast<sequence_nr>(count_) == seq ? restored::ok : restored::unreadable;
  }
  bool recover(sequence_nr, std::string_view ev) override {
    sum_ += to_i64(ev);
    ++count_;
    ++recovered_events;
    return true;
  }
  sharding::effect handle(std::string_view cmd, epoch_ms) override {
    if (cmd.rfind("add ", 0) == 0) {
      pending_ = to_i64(cmd.substr(4));
      return {{std::string(cmd.substr(4))}, {}};
    }
    return {{}, snapshot()};
  }
  std::string persisted() override {
    sum_ += pending_;
    ++count_;
    return snapshot();
  }
  void aborted() override { pending_ = 0; }
  std::string snapshot() const override {
    return std::to_string(sum_) + "/" + std::to_string(count_);
  }
  inline static std::atomic<int> recovered_events{0};
  /// Makes restore answer `outdated` (a snapshot written under other settings).
  inline static std::atomic<bool> snapshots_outdated{false};

private:
  std::int64_t sum_ = 0, count_ = 0, pending_ = 0;
};

struct fixture {
  explicit fixture(std::size_t snapshot_every = 0, std::chrono::milliseconds passivate = 10min,
                   std::size_t replay_batch = 1024) {
    persistence::lmdb_options opts;
    opts.dir = dir.path() / "journal";
    opts.number_of_shards = 8;
    auto j = persistence::open_lmdb_journal(opts);
    REQUIRE(j);
    journal = std::move(*j);
    cfg.add_message_types<caf::id_block::kontor>();
    sys = std::make_unique<caf::actor_system>(cfg);
    settings.number_of_shards = 8;
    settings.journal = journal.get();
    settings.factory = [](const entity_id&) { return std::make_unique<counter>(); };
    settings.snapshot_every = snapshot_every;
    settings.passivate_after = passivate;
    settings.replay_batch = replay_batch;
    stats = settings.stats;
    region = sharding::spawn_shard_region(*sys, settings);
  }
  ~fixture() {
    caf::anon_send_exit(region, caf::exit_reason::user_shutdown);
    sys->await_all_actors_done();
  }

  /// Asks entity `id` and waits for the reply (test code only: scoped actors block).
  std::string ask(const std::string& id, const std::string& cmd) {
    caf::scoped_actor self{*sys};
    std::string out;
    self->request(region, 10s, sharding::entity_envelope{id, cmd})
      .receive([&](std::string& reply) { out = std::move(reply); },
               [&](caf::error& err) { out = "error: " + sys->render(err); });
    return out;
  }

  /// Asks the region about entity `id` and waits for the answer.
  sharding::entity_info info(const std::string& id) {
    caf::scoped_actor self{*sys};
    sharding::entity_info out;
    self->request(region, 10s, sharding::entity_info_request{id})
      .receive([&](sharding::entity_info& r) { out = std::move(r); },
               [&](caf::error& err) { FAIL("entity info failed: " << sys->render(err)); });
    return out;
  }

  test::temp_dir dir;
  std::unique_ptr<persistence::journal> journal;
  caf::actor_system_config cfg;
  std::unique_ptr<caf::actor_system> sys;
  sharding::region_settings settings;
  std::shared_ptr<sharding::region_stats> stats;
  caf::actor region;
};

} // namespace

TEST_CASE("entities persist, answer after the append, and keep one stream per id", "[sharding]") {
  fixture f;
  CHECK(f.ask("a", "add 5") == "5/1");
  CHECK(f.ask("a", "add 7") == "12/2");
  CHECK(f.ask("b", "add 1") == "1/1");
  CHECK(f.ask("a", "get") == "12/2");
  auto events = f.journal->replay("a", 1, 100);
  REQUIRE(events);
  REQUIRE(events->size() == 2);
  CHECK((*events)[1].payload == "7");
  CHECK(f.stats->events_appended == 3);
}

TEST_CASE("commands sent while an entity recovers are stashed, not dropped, and keep order",
          "[sharding]") {
  fixture f{0, 10min, 100}; // replay in steps of 100 events: 50 recovery messages
  // A long history, written straight to the journal before the entity ever starts.
  persistence::append_request req{shard_of("long", 8), "long", 1, {}};
  for (int i = 0; i < 5000; ++i)
    req.events.push_back("1");
  REQUIRE(f.journal->append(std::move(req)));

  // Fire 50 commands without waiting; the first one starts the recovery.
  caf::scoped_actor self{*f.sys};
  std::vector<caf::response_handle<caf::blocking_actor, caf::message, true>> handles;
  for (int i = 1; i <= 50; ++i)
    handles.push_back(self->request(f.region, 20s, sharding::entity_envelope{"long", "add 2"}));
  std::vector<std::string> replies;
  for (auto& h : handles)
    h.receive([&](std::string& r) { replies.push_back(r); },
              [&](caf::error& e) { replies.push_back("error " + f.sys->render(e)); });
  REQUIRE(replies.size() == 50);
  for (int i = 1; i <= 50; ++i) {
    INFO(i);
    CHECK(replies[i - 1] == std::to_string(5000 + 2 * i) + "/" + std::to_string(5000 + i));
  }
}

TEST_CASE("recovery from snapshot + events equals recovery from events alone", "[sharding]") {
  test::temp_dir keep;
  auto run = [&](std::size_t snapshot_every, bool fresh) {
    persistence::lmdb_options opts;
    opts.dir = keep.path() / "journal";
    opts.number_of_shards = 8;
    auto j = persistence::open_lmdb_journal(opts);
    REQUIRE(j);
    caf::actor_system_config cfg;
    cfg.add_message_types<caf::id_block::kontor>();
    caf::actor_system sys{cfg};
    sharding::region_settings s;
    s.number_of_shards = 8;
    s.journal = j->get();
    s.factory = [](const entity_id&) { return std::make_unique<counter>(); };
    s.snapshot_every = snapshot_every;
    s.recover_from_snapshots = snapshot_every > 0;
    auto region = sharding::spawn_shard_region(sys, s);
    std::string last;
    auto ask = [&](const std::string& cmd) {
      caf::scoped_actor self{sys}; // must be gone before await_all_actors_done
      self->request(region, 10s, sharding::entity_envelope{"acc", cmd})
        .receive([&](std::string& r) { last = r; }, [&](caf::error&) { last = "error"; });
      return last;
    };
    if (fresh)
      for (int i = 1; i <= 257; ++i)
        ask("add " + std::to_string(i));
    auto state = ask("get");
    caf::anon_send_exit(region, caf::exit_reason::user_shutdown);
    sys.await_all_actors_done();
    return state;
  };
  auto written = run(50, true); // snapshots at 50, 100, 150, 200, 250
  counter::recovered_events = 0;
  auto from_snapshot = run(50, false);
  auto replayed_with_snapshot = counter::recovered_events.load();
  counter::recovered_events = 0;
  auto from_events = run(0, false);
  auto replayed_without = counter::recovered_events.load();
  CHECK(written == "33153/257");
  CHECK(from_snapshot == written);
  CHECK(from_events == written);
  // The snapshot really was used: only the 7 events after it were replayed.
  CHECK(replayed_with_snapshot == 7);
  CHECK(replayed_without == 257);
}

TEST_CASE("an outdated snapshot is passed over: recovery replays every event, then snapshots",
          "[sharding]") {
  fixture f{50}; // a snapshot every 50 events
  for (int i = 1; i <= 120; ++i)
    REQUIRE(f.ask("o", "add 1") == std::to_string(i) + "/" + std::to_string(i));
  REQUIRE(test::wait_until([&] {
    auto snap = f.journal->load_snapshot("o");
    return snap && snap->has_value() && (*snap)->seq == 100;
  }));

  // A fresh region on the same journal whose entities find every snapshot outdated.
  caf::anon_send_exit(f.region, caf::exit_reason::user_shutdown);
  f.sys->await_all_actors_done();
  f.region = sharding::spawn_shard_region(*f.sys, f.settings);
  counter::recovered_events = 0;
  counter::snapshots_outdated = true;
  auto state = f.ask("o", "get");
  auto replayed = counter::recovered_events.load();
  counter::snapshots_outdated = false;
  CHECK(state == "120/120");
  CHECK(replayed == 120); // from the first event, not from the snapshot at 100

  // The history is longer than snapshot_every, so the next command writes a fresh snapshot.
  CHECK(f.ask("o", "add 1") == "121/121");
  REQUIRE(test::wait_until([&] {
    auto snap = f.journal->load_snapshot("o");
    return snap && snap->has_value() && (*snap)->seq == 121;
  }));
}

TEST_CASE("an entity that cannot recover fails every command queued behind it, writing nothing",
          "[sharding]") {
  fixture f;
  REQUIRE(f.ask("bad", "add 1") == "1/1");
  // An unreadable snapshot (no '/') as if written by a broken build, then a fresh region.
  std::promise<bool> saved;
  f.journal->save_snapshot_async({"bad", 1, "garbage"},
                                 [&](persistence::expected<void> r) { saved.set_value(bool(r)); });
  REQUIRE(saved.get_future().get());
  caf::anon_send_exit(f.region, caf::exit_reason::user_shutdown);
  f.sys->await_all_actors_done();
  f.region = sharding::spawn_shard_region(*f.sys, f.settings);
  auto live_before = f.stats->live_entities.load(); // a region's exit does not count its own down

  // Commands sent at once: the first starts the recovery, the rest queue behind it. Each gets
  // the reason; one that reaches the entity after it stopped (before its shard saw it go) gets
  // request_receiver_down. Neither was decided.
  auto is_recovery_failed = [](const caf::error& e) {
    return e.category() == sharding::error_category
           && e.code() == static_cast<std::uint8_t>(sharding::errc::recovery_failed);
  };
  caf::scoped_actor self{*f.sys};
  std::vector<caf::response_handle<caf::blocking_actor, caf::message, true>> handles;
  for (int i = 0; i < 20; ++i)
    handles.push_back(self->request(f.region, 10s, sharding::entity_envelope{"bad", "add 1"}));
  int recovery_failed = 0;
  for (auto& h : handles)
    h.receive([&](std::string& r) { FAIL("answered " << r); },
              [&](caf::error& e) {
                INFO(f.sys->render(e));
                if (is_recovery_failed(e)) {
                  ++recovery_failed;
                  CHECK(sharding::error_message(e)
                        == "entity bad cannot recover: unreadable snapshot at 1");
                } else {
                  CHECK(e == caf::sec::request_receiver_down);
                }
              });
  CHECK(recovery_failed >= 1);
  // Every later command fails the same way (each starts a new incarnation), and nothing was
  // written.
  REQUIRE(test::wait_until([&] { return f.stats->live_entities == live_before; }));
  self->request(f.region, 10s, sharding::entity_envelope{"bad", "add 1"})
    .receive([&](std::string& r) { FAIL("answered " << r); },
             [&](caf::error& e) { CHECK(is_recovery_failed(e)); });
  auto events = f.journal->replay("bad", 1, 100);
  REQUIRE(events);
  CHECK(events->size() == 1);
}

TEST_CASE("idle entities passivate and come back with their state", "[sharding]") {
  fixture f{0, 50ms};
  CHECK(f.ask("p", "add 3") == "3/1");
  CHECK(f.stats->live_entities == 1);
  REQUIRE(test::wait_until([&] { return f.stats->live_entities == 0; }));
  CHECK(f.stats->passivations >= 1);
  CHECK(f.ask("p", "add 4") == "7/2");
  CHECK(f.stats->recoveries == 2);
}

TEST_CASE("an entity whose stream is empty stops after each command: a flood of unknown ids "
          "leaves no actor, and a stream that gets events stays",
          "[sharding]") {
  fixture f; // idle entities would stop only after 10 minutes
  caf::scoped_actor self{*f.sys};
  std::vector<caf::response_handle<caf::blocking_actor, caf::message, true>> handles;
  for (int i = 0; i < 300; ++i)
    handles.push_back(self->request(f.region, 20s, sharding::entity_envelope{"nobody-" + std::to_string(i), "get"}));
  // Among them, commands that give an empty id its first events right behind a read: the
  // entity may be stopped after them, but nothing is lost.
  for (int i = 0; i < 3; ++i)
    handles.push_back(self->request(f.region, 20s, sharding::entity_envelope{"nobody-7", "add 5"}));
  int answered = 0;
  for (auto& h : handles)
    h.receive([&](std::string&) { ++answered; }, [&](caf::error& err) { FAIL(f.sys->render(err)); });
  CHECK(answered == 303);
  // The 299 empty ones stopped without waiting for the idle sweep.
  REQUIRE(test::wait_until([&] { return f.stats->live_entities <= 1; }));
  CHECK(!f.info("nobody-8").live);
  CHECK(f.ask("nobody-7", "get") == "15/3");
  // A stream with events keeps its actor.
  CHECK(f.ask("somebody", "add 2") == "2/1");
  CHECK(f.ask("somebody", "get") == "2/1");
  CHECK(f.info("somebody").live);
  CHECK(f.info("nobody-7").live);
  CHECK(f.ask("nobody-8", "get") == "0/0");
  REQUIRE(test::wait_until([&] { return f.stats->live_entities == 2; }));
  CHECK(!f.info("nobody-8").live);
}

TEST_CASE("entity info: the journal's last seq and snapshot, and whether the entity runs, "
          "without starting it",
          "[sharding]") {
  fixture f{2, 500ms}; // a snapshot every 2 events; idle entities stop after 500 ms
  auto none = f.info("i");
  CHECK(none.highest == 0);
  CHECK(none.snapshot_seq == 0);
  CHECK(!none.live);
  CHECK(f.stats->live_entities == 0);
  CHECK(f.ask("i", "add 1") == "1/1");
  CHECK(f.ask("i", "add 2") == "3/2");
  CHECK(f.ask("i", "add 3") == "6/3");
  auto live = f.info("i");
  CHECK(live.highest == 3);
  CHECK(live.live);
  CHECK(live.shard_end == 3); // the only entity of its shard
  REQUIRE(test::wait_until([&] { return f.info("i").snapshot_seq == 2; }));
  REQUIRE(test::wait_until([&] { return !f.info("i").live; }));
  CHECK(f.stats->live_entities == 0);
  CHECK(f.info("i").highest == 3);
  CHECK(f.stats->live_entities == 0); // asking did not start it
}

TEST_CASE("many entities across shards under concurrent load", "[sharding]") {
  fixture f;
  caf::scoped_actor self{*f.sys};
  constexpr int ids = 200, per_id = 10;
  std::vector<caf::response_handle<caf::blocking_actor, caf::message, true>> handles;
  for (int round = 0; round < per_id; ++round)
    for (int i = 0; i < ids; ++i)
      handles.push_back(
        self->request(f.region, 20s, sharding::entity_envelope{"e" + std::to_string(i), "add 1"}));
  int ok = 0;
  for (auto& h : handles)
    h.receive([&](std::string&) { ++ok; }, [&](caf::error&) {});
  CHECK(ok == ids * per_id);
  for (int i = 0; i < ids; i += 37)
    CHECK(f.ask("e" + std::to_string(i), "get") == std::to_string(per_id) + "/" + std::to_string(per_id));
  CHECK(f.stats->live_entities == ids);
}

namespace {

/// A second entity type: "say X" appends X, every command answers "said:" + all it appended.
class parrot final : public sharding::entity_logic {
public:
  restored restore(sequence_nr, std::string_view snap) override {
    said_ = std::string(snap);
    return restored::ok;
  }
  bool recover(sequence_nr, std::string_view ev) override {
    said_ += ev;
    return true;
  }
  sharding::effect handle(std::string_view cmd, epoch_ms) override {
    if (cmd.rfind("say ", 0) == 0) {
      pending_ = std::string(cmd.substr(4));
      return {{pending_}, {}};
    }
    return {{}, "said:" + said_};
  }
  std::string persisted() override {
    said_ += pending_;
    return "said:" + said_;
  }
  void aborted() override { pending_.clear(); }
  std::string snapshot() const override { return said_; }

private:
  std::string said_, pending_;
};

} // namespace

TEST_CASE("entities of another type key run their own logic in the same region and journal",
          "[sharding]") {
  CHECK(entity_type_of("parrot:polly") == "parrot");
  CHECK(entity_type_of("polly").empty());
  fixture f;
  caf::anon_send_exit(f.region, caf::exit_reason::user_shutdown);
  f.sys->await_all_actors_done();
  f.settings.types = {{"parrot", [](const entity_id&) { return std::make_unique<parrot>(); }}};
  f.region = sharding::spawn_shard_region(*f.sys, f.settings);
  CHECK(f.ask("polly", "add 2") == "2/1");
  CHECK(f.ask("parrot:polly", "say hi") == "said:hi");
  CHECK(f.ask("parrot:polly", "say !") == "said:hi!");
  // An id with an unregistered key belongs to the default type.
  CHECK(f.ask("cat:tom", "add 3") == "3/1");
  // Each stream in the one journal, and back after a restart of the region.
  auto events = f.journal->replay("parrot:polly", 1, 10);
  REQUIRE(events);
  CHECK(events->size() == 2);
  caf::anon_send_exit(f.region, caf::exit_reason::user_shutdown);
  f.sys->await_all_actors_done();
  f.region = sharding::spawn_shard_region(*f.sys, f.settings);
  CHECK(f.ask("parrot:polly", "get") == "said:hi!");
  CHECK(f.ask("polly", "get") == "2/1");
}

TEST_CASE("a policy checkpoint entity only ever raises its positions, per shard", "[sharding][policy]") {
  fixture f;
  caf::anon_send_exit(f.region, caf::exit_reason::user_shutdown);
  f.sys->await_all_actors_done();
  f.settings.types = {policy::checkpoint_entity_type()};
  f.region = sharding::spawn_shard_region(*f.sys, f.settings);
  const auto id = policy::checkpoint_id("p");
  CHECK(id == "policy:p");
  auto positions = [&](const std::string& cmd) {
    auto p = policy::parse_reply(f.ask(id, cmd));
    REQUIRE(p.has_value());
    return *p;
  };
  CHECK(positions(policy::read_command()).empty());
  CHECK(positions(policy::advance_command({3, 1, 7})) == std::vector<shard_offset>{3, 1, 7});
  CHECK(positions(policy::advance_command({2, 5, 7})) == std::vector<shard_offset>{3, 5, 7});
  // Nothing raised: nothing appended. Another shard count: ignored.
  CHECK(positions(policy::advance_command({1, 1, 1})) == std::vector<shard_offset>{3, 5, 7});
  CHECK(positions(policy::advance_command({9, 9})) == std::vector<shard_offset>{3, 5, 7});
  auto events = f.journal->replay(id, 1, 10);
  REQUIRE(events);
  CHECK(events->size() == 2);
  caf::anon_send_exit(f.region, caf::exit_reason::user_shutdown);
  f.sys->await_all_actors_done();
  f.region = sharding::spawn_shard_region(*f.sys, f.settings);
  CHECK(positions(policy::read_command()) == std::vector<shard_offset>{3, 5, 7});
  CHECK_FALSE(policy::parse_reply("garbage").has_value());
}

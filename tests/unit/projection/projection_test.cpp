// The singleton manager, the poller and read models, on a real journal and real LMDB stores.

#include <caf/all.hpp>
#include <catch2/catch.hpp>

#include <atomic>
#include <future>

#include "runtime/core/bytes.hpp"
#include "runtime/persistence/lmdb_journal.hpp"
#include "runtime/message_types.hpp"
#include "runtime/projection/messages.hpp"
#include "runtime/projection/poller.hpp"
#include "runtime/projection/read_model.hpp"
#include "runtime/singleton/singleton_manager.hpp"
#include "runtime/stream/log_server.hpp"
#include "tests/support/temp_dir.hpp"
#include "tests/support/wait.hpp"

using namespace kontor;
using namespace std::chrono_literals;

namespace {

using ping_atom = caf::atom_constant<caf::atom("ping")>;
using crash_atom = caf::atom_constant<caf::atom("crash")>;

/// Counts events per persistence id in table 0 ("counts") and keeps the last seq per id in
/// table 1 ("seqs") to skip redeliveries; table 2 ("order") records every applied offset.
class counting_handler final : public projection::projection_handler {
public:
  explicit counting_handler(std::string format = "counting/1") : format_(std::move(format)) {}
  std::string format() const override { return format_; }
  std::vector<std::string> tables() const override { return {"counts", "seqs", "order"}; }
  void apply(persistence::store_writer& txn, const persistence::stored_event& ev) override {
    std::uint64_t last = 0;
    if (auto s = txn.get(1, ev.persistence_id))
      last = from_be64(*s);
    if (ev.seq <= last)
      return;
    std::uint64_t count = 0;
    if (auto c = txn.get(0, ev.persistence_id))
      count = from_be64(*c);
    txn.put(0, ev.persistence_id, to_be64(count + 1));
    txn.put(1, ev.persistence_id, to_be64(ev.seq));
    txn.put(2, to_be64(ev.offset), ev.persistence_id);
  }

private:
  std::string format_;
};

std::uint64_t count_of(const projection::read_model& rm, const std::string& id) {
  std::uint64_t n = 0;
  REQUIRE(rm.store().read([&](const persistence::store_reader& r) {
    if (auto c = r.get(0, id))
      n = from_be64(*c);
  }));
  return n;
}

struct journal_fixture {
  journal_fixture() {
    persistence::lmdb_options opts;
    opts.dir = dir.path() / "journal";
    opts.number_of_shards = 4;
    auto j = persistence::open_lmdb_journal(opts);
    REQUIRE(j);
    journal = std::move(*j);
  }
  void append(const std::string& id, sequence_nr first, int n) {
    persistence::append_request req{shard_of(id, 4), id, first, {}};
    for (int i = 0; i < n; ++i)
      req.events.push_back("e");
    REQUIRE(journal->append(std::move(req)));
  }
  test::temp_dir dir;
  std::unique_ptr<persistence::journal> journal;
};

/// An actor system with Kontor's message types, as every node has.
struct kontor_system {
  kontor_system() : sys{(add_message_types(cfg), cfg)} {}
  caf::actor_system_config cfg;
  caf::actor_system sys;
};

/// Stops the actors it holds when the test leaves its scope, also through a failed REQUIRE
/// (an actor system waits for every actor before it goes away).
struct stop_all {
  std::vector<caf::actor> actors;
  ~stop_all() {
    for (auto& a : actors)
      caf::anon_send_exit(a, caf::exit_reason::user_shutdown);
  }
};

/// A poller that reads every shard from one log server on `journal`, and that server.
struct local_poller {
  local_poller(caf::actor_system& sys, const persistence::journal& journal, std::size_t batch,
               projection::shard_locator locate = {}) {
    server = stream::spawn_log_server(sys, &journal);
    projection::poller_settings ps;
    auto srv = server;
    ps.locate = locate ? std::move(locate) : [srv](shard_id) { return srv; };
    ps.batch_size = batch;
    poller = projection::spawn_poller(sys, ps);
  }
  ~local_poller() {
    caf::anon_send_exit(poller, caf::exit_reason::user_shutdown);
    caf::anon_send_exit(server, caf::exit_reason::user_shutdown);
  }
  caf::actor server;
  caf::actor poller;
};

/// Read-model settings for the fixture's 4 shards.
projection::read_model_settings model_settings(const std::filesystem::path& dir,
                                               std::shared_ptr<projection::projection_handler> h) {
  projection::read_model_settings s;
  s.dir = dir;
  s.number_of_shards = 4;
  s.handler = std::move(h);
  return s;
}

} // namespace

TEST_CASE("a singleton is restarted after a failure and its proxy parks messages meanwhile",
          "[singleton]") {
  caf::actor_system_config cfg;
  caf::actor_system sys{cfg};
  std::atomic<int> starts{0};
  std::promise<void> release;
  auto released = release.get_future().share();
  {
    singleton::singleton_manager manager{sys, 10ms};
    auto proxy = manager.start("echo", [&, released](caf::actor_system& s) {
      int incarnation = ++starts;
      if (incarnation == 2)
        released.wait(); // hold the restart until the test has sent its pings
      return s.spawn([incarnation](caf::event_based_actor* self) -> caf::behavior {
        return {
          [=](ping_atom) { return incarnation; },
          [=](crash_atom) { self->quit(caf::sec::runtime_error); },
        };
      });
    });
    caf::scoped_actor self{sys};
    auto ask = [&] {
      int answer = -1;
      self->request(proxy, 5s, ping_atom::value)
        .receive([&](int n) { answer = n; }, [&](caf::error&) { answer = 0; });
      return answer;
    };
    CHECK(ask() == 1);
    // An error message sent to the proxy itself does not stop it.
    caf::anon_send(proxy, caf::make_error(caf::sec::runtime_error, "stray error"));
    CHECK(ask() == 1);
    self->send(proxy, crash_atom::value);
    // The host noticed the failure and is restarting (blocked in the factory): no instance now.
    REQUIRE(test::wait_until([&] { return starts == 2; }));
    std::vector<caf::response_handle<caf::blocking_actor, caf::message, true>> pending;
    for (int i = 0; i < 3; ++i)
      pending.push_back(self->request(proxy, 5s, ping_atom::value));
    release.set_value();
    for (auto& h : pending) {
      int answer = -1;
      h.receive([&](int n) { answer = n; }, [&](caf::error&) { answer = 0; });
      CHECK(answer == 2); // parked, then delivered to the new incarnation
    }
    CHECK(ask() == 2);
  }
  CHECK(test::wait_until([&] { return sys.registry().running() <= 1; }, 5s));
}

TEST_CASE("the poller feeds every read model from its own positions, exactly once",
          "[projection]") {
  journal_fixture jf;
  jf.append("a", 1, 30);
  jf.append("b", 1, 20);
  kontor_system ks;
  auto& sys = ks.sys;
  local_poller lp{sys, *jf.journal, 7};

  auto rm1 = projection::read_model::open(sys, model_settings(jf.dir.path() / "rm1",
                                                              std::make_shared<counting_handler>()));
  REQUIRE(rm1);
  stop_all stop1{{(*rm1)->actor()}};
  (*rm1)->subscribe(lp.poller);
  REQUIRE(test::wait_until([&] { return (*rm1)->stats().applied == 50; }));
  CHECK(count_of(**rm1, "a") == 30);
  CHECK(count_of(**rm1, "b") == 20);

  // New events reach it after the poller went idle; a second read model starts from 0.
  jf.append("a", 31, 5);
  auto rm2 = projection::read_model::open(sys, model_settings(jf.dir.path() / "rm2",
                                                              std::make_shared<counting_handler>()));
  REQUIRE(rm2);
  stop_all stop2{{(*rm2)->actor()}};
  (*rm2)->subscribe(lp.poller);
  REQUIRE(test::wait_until([&] { return (*rm1)->stats().applied == 55 && (*rm2)->stats().applied == 55; }));
  CHECK(count_of(**rm1, "a") == 35);
  CHECK(count_of(**rm2, "a") == 35);
  CHECK(count_of(**rm2, "b") == 20);

  // Every journal offset applied once; per shard in position order.
  std::vector<std::uint64_t> order;
  REQUIRE((*rm2)->store().read([&](const persistence::store_reader& r) {
    r.scan(2, {}, [&](std::string_view k, std::string_view) {
      order.push_back(from_be64(k));
      return true;
    });
  }));
  REQUIRE(order.size() == 55);
  for (std::size_t i = 0; i < order.size(); ++i)
    CHECK(order[i] == i + 1);
  auto applied = (*rm2)->stats().applied_by_shard();
  REQUIRE(applied.size() == 4);
  CHECK(applied[shard_of("a", 4)] + (shard_of("a", 4) == shard_of("b", 4) ? 0 : applied[shard_of("b", 4)])
        == 55);
}

TEST_CASE("a read model resumes from its stored positions and rebuilds on a new format",
          "[projection]") {
  journal_fixture jf;
  jf.append("x", 1, 12);
  auto run = [&](const std::string& format, std::uint64_t expect_start) {
    kontor_system ks;
    local_poller lp{ks.sys, *jf.journal, 5};
    auto rm = projection::read_model::open(ks.sys, model_settings(jf.dir.path() / "rm",
                                                                  std::make_shared<counting_handler>(format)));
    REQUIRE(rm);
    stop_all stop{{(*rm)->actor()}};
    CHECK((*rm)->stats().applied == expect_start);
    (*rm)->subscribe(lp.poller);
    REQUIRE(test::wait_until([&] { return (*rm)->stats().applied == 12; }));
    return count_of(**rm, "x");
  };
  CHECK(run("counting/1", 0) == 12);
  CHECK(run("counting/1", 12) == 12);  // resumed: nothing applied twice
  CHECK(run("counting/2", 0) == 12);   // other format: rebuilt from the start, not added on top
}

namespace {

/// Counts every event it is handed (no skipping of its own: the read model's positions must
/// make delivery exactly-once), and makes the commit of the batch holding `fail_on` fail the
/// first `failures` times (a put LMDB refuses, as a full disk or a failed resize would).
class failing_handler final : public projection::projection_handler {
public:
  failing_handler(std::string fail_id, sequence_nr fail_seq, int failures)
    : failures_(failures), fail_id_(std::move(fail_id)), fail_seq_(fail_seq) {}
  std::string format() const override { return "failing/1"; }
  std::vector<std::string> tables() const override { return {"counts", "last"}; }
  void apply(persistence::store_writer& txn, const persistence::stored_event& ev) override {
    if (ev.persistence_id == fail_id_ && ev.seq == fail_seq_ && failures_ > 0) {
      --failures_;
      txn.put(0, std::string(600, 'k'), "LMDB refuses keys over 511 bytes"); // fails the commit
    }
    std::uint64_t count = 0;
    if (auto c = txn.get(0, ev.persistence_id))
      count = from_be64(*c);
    txn.put(0, ev.persistence_id, to_be64(count + 1));
    txn.put(1, ev.persistence_id, to_be64(ev.seq));
  }
  std::atomic<int> failures_;

private:
  std::string fail_id_;
  sequence_nr fail_seq_;
};

std::uint64_t last_of(const projection::read_model& rm, const std::string& id) {
  std::uint64_t n = 0;
  REQUIRE(rm.store().read([&](const persistence::store_reader& r) {
    if (auto c = r.get(1, id))
      n = from_be64(*c);
  }));
  return n;
}

} // namespace

TEST_CASE("a batch whose commit failed is delivered again from its first position",
          "[projection]") {
  // 40 events of one shard in batches of 10; the commit of events 11-20 fails once. Without
  // redelivery the read model would go on after the failed batch and never have them.
  journal_fixture jf;
  jf.append("acct", 1, 40);
  kontor_system ks;
  local_poller lp{ks.sys, *jf.journal, 10};
  auto handler = std::make_shared<failing_handler>("acct", 15, 1);
  auto rm = projection::read_model::open(ks.sys, model_settings(jf.dir.path() / "rm", handler));
  REQUIRE(rm);
  stop_all stop{{(*rm)->actor()}};
  (*rm)->subscribe(lp.poller);
  REQUIRE(test::wait_until([&] { return (*rm)->stats().applied == 40; }));
  CHECK(handler->failures_ == 0); // the failure happened
  CHECK(count_of(**rm, "acct") == 40);
  CHECK(last_of(**rm, "acct") == 40);
}

TEST_CASE("batches never split an append, whatever the batch size", "[projection]") {
  journal_fixture jf;
  // Appends of 1, 2 and 3 events (a lock is 2), interleaved over two ids of one shard.
  for (sequence_nr seq = 1, round = 0; round < 10; ++round) {
    jf.append("p", seq, 1 + static_cast<int>(round % 3));
    jf.append("q", 1 + round, 1);
    seq += 1 + round % 3;
  }
  kontor_system ks;
  local_poller lp{ks.sys, *jf.journal, 1};
  auto batches = std::make_shared<std::vector<projection::event_batch>>();
  std::mutex m;
  auto sub = ks.sys.spawn([&m, batches](caf::event_based_actor*) -> caf::behavior {
    auto next = std::make_shared<std::vector<shard_offset>>(4, 1);
    return {
      [&m, batches, next](projection::event_batch& b) {
        for (const auto& g : b.shards)
          next->at(g.shard) = g.next;
        std::lock_guard lock{m};
        batches->push_back(b);
        return caf::make_message(projection::applied_atom::value, projection::shard_positions{*next});
      },
    };
  });
  stop_all stop{{sub}};
  caf::anon_send(lp.poller, projection::subscribe_atom::value, sub,
                 projection::shard_positions{std::vector<shard_offset>(4, 1)});
  const auto total = jf.journal->log_end().value();
  auto delivered = [&] {
    std::lock_guard lock{m};
    std::size_t n = 0;
    for (const auto& b : *batches)
      for (const auto& g : b.shards)
        n += g.events.size();
    return n;
  };
  REQUIRE(test::wait_until([&] { return delivered() == total; }));
  std::lock_guard lock{m};
  std::size_t multi = 0;
  for (const auto& b : *batches)
    for (const auto& g : b.shards) {
      REQUIRE(!g.events.empty());
      CHECK(g.events.back().append_end); // ends with a whole append
      CHECK(g.events.front().shard_pos == g.from);
      if (g.events.size() > 1)
        ++multi;
    }
  CHECK(multi > 0); // appends of several events came whole although batches are 1
}

TEST_CASE("a shard with no home is skipped until it has one", "[projection]") {
  journal_fixture jf;
  for (int i = 0; i < 8; ++i)
    jf.append("id-" + std::to_string(i), 1, 2);
  const shard_id homeless = shard_of("id-0", 4);
  std::atomic<bool> found{false};
  kontor_system ks;
  caf::actor server = stream::spawn_log_server(ks.sys, jf.journal.get());
  stop_all stop_server{{server}};
  local_poller lp{ks.sys, *jf.journal, 100, [&, server](shard_id s) {
                    return s != homeless || found ? server : caf::actor{};
                  }};
  auto rm = projection::read_model::open(ks.sys, model_settings(jf.dir.path() / "rm",
                                                                std::make_shared<counting_handler>()));
  REQUIRE(rm);
  stop_all stop{{(*rm)->actor()}};
  (*rm)->subscribe(lp.poller);
  std::uint64_t in_homeless = 0;
  for (int i = 0; i < 8; ++i)
    if (shard_of("id-" + std::to_string(i), 4) == homeless)
      in_homeless += 2;
  REQUIRE(test::wait_until([&] { return (*rm)->stats().applied == 16 - in_homeless; }));
  CHECK(count_of(**rm, "id-0") == 0);
  found = true;
  REQUIRE(test::wait_until([&] { return (*rm)->stats().applied == 16; }));
  CHECK(count_of(**rm, "id-0") == 2);
}

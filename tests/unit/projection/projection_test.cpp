// The singleton manager, the poller and read models, on a real journal and real LMDB stores.

#include <caf/all.hpp>
#include <catch2/catch.hpp>

#include <atomic>
#include <future>

#include "runtime/core/bytes.hpp"
#include "runtime/persistence/lmdb_journal.hpp"
#include "runtime/projection/poller.hpp"
#include "runtime/projection/read_model.hpp"
#include "runtime/singleton/singleton_manager.hpp"
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
    txn.append(2, to_be64(ev.offset), ev.persistence_id);
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

TEST_CASE("the poller feeds every read model from its own offset, exactly once",
          "[projection]") {
  journal_fixture jf;
  jf.append("a", 1, 30);
  jf.append("b", 1, 20);
  caf::actor_system_config cfg;
  caf::actor_system sys{cfg};
  projection::poller_settings ps;
  ps.journal = jf.journal.get();
  ps.batch_size = 7;
  auto poller = projection::spawn_poller(sys, ps);

  projection::read_model_settings s1;
  s1.dir = jf.dir.path() / "rm1";
  s1.handler = std::make_shared<counting_handler>();
  auto rm1 = projection::read_model::open(sys, s1);
  REQUIRE(rm1);
  (*rm1)->subscribe(poller);
  REQUIRE(test::wait_until([&] { return (*rm1)->stats().applied == 50; }));
  CHECK(count_of(**rm1, "a") == 30);
  CHECK(count_of(**rm1, "b") == 20);

  // New events reach it after the poller went idle; a second read model starts from 0.
  jf.append("a", 31, 5);
  projection::read_model_settings s2;
  s2.dir = jf.dir.path() / "rm2";
  s2.handler = std::make_shared<counting_handler>();
  auto rm2 = projection::read_model::open(sys, s2);
  REQUIRE(rm2);
  (*rm2)->subscribe(poller);
  REQUIRE(test::wait_until([&] { return (*rm1)->stats().applied == 55 && (*rm2)->stats().applied == 55; }));
  CHECK(count_of(**rm1, "a") == 35);
  CHECK(count_of(**rm2, "a") == 35);
  CHECK(count_of(**rm2, "b") == 20);

  // Every offset applied once, in journal order.
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
  caf::anon_send_exit(poller, caf::exit_reason::user_shutdown);
  caf::anon_send_exit((*rm1)->actor(), caf::exit_reason::user_shutdown);
  caf::anon_send_exit((*rm2)->actor(), caf::exit_reason::user_shutdown);
}

TEST_CASE("a read model resumes from its stored offset and rebuilds on a new format",
          "[projection]") {
  journal_fixture jf;
  jf.append("x", 1, 12);
  auto run = [&](const std::string& format, log_offset expect_start) {
    caf::actor_system_config cfg;
    caf::actor_system sys{cfg};
    auto poller = projection::spawn_poller(sys, {jf.journal.get(), 5});
    projection::read_model_settings s;
    s.dir = jf.dir.path() / "rm";
    s.handler = std::make_shared<counting_handler>(format);
    auto rm = projection::read_model::open(sys, s);
    REQUIRE(rm);
    CHECK((*rm)->stats().applied == expect_start);
    (*rm)->subscribe(poller);
    REQUIRE(test::wait_until([&] { return (*rm)->stats().applied == 12; }));
    auto n = count_of(**rm, "x");
    caf::anon_send_exit(poller, caf::exit_reason::user_shutdown);
    caf::anon_send_exit((*rm)->actor(), caf::exit_reason::user_shutdown);
    return n;
  };
  CHECK(run("counting/1", 0) == 12);
  CHECK(run("counting/1", 12) == 12);  // resumed: nothing applied twice
  CHECK(run("counting/2", 0) == 12);   // other format: rebuilt from offset 0, not added on top
}

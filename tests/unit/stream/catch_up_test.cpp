// The catch-up stream end to end: a shard copied from a source journal's log server into a
// receiver's journal, inside one actor system and across two over CAF's io middleman on
// 127.0.0.1; what a failure (dead or silent source, garbage, refused import, diverged receiver)
// answers and leaves behind (a consistent prefix that a later catch-up completes).

#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <functional>
#include <future>
#include <optional>

#include "stream_support.hpp"
#include "tests/support/wait.hpp"

using namespace kontor;
using namespace kontor::stream;
using namespace kontor::stream::testing;
using namespace std::chrono_literals;

namespace {

/// What a test proxy in front of a log server does with the n-th range request (0-based).
struct proxy_control {
  std::function<bool(std::size_t)> park;                    ///< hold it, never answer
  std::function<bool(std::size_t)> refuse;                  ///< answer with an error
  std::function<void(std::size_t, range_page&)> transform;  ///< change the real answer
  std::atomic<std::size_t> requests{0};
  std::atomic<std::size_t> parked{0};
};

struct proxy_state {
  std::vector<caf::response_promise> parked;
};

/// A log server's stand-in: forwards range requests to `server`, or parks, refuses or alters
/// them as `ctl` says (a source that dies, freezes or answers garbage at a chosen point).
caf::behavior proxy_actor(caf::stateful_actor<proxy_state>* self, caf::actor server,
                          std::shared_ptr<proxy_control> ctl) {
  return {
    [=](read_range_atom, range_request& req) -> caf::result<range_page> {
      const std::size_t n = ctl->requests++;
      if (ctl->refuse && ctl->refuse(n))
        return caf::make_error(caf::sec::runtime_error, "planted source failure");
      auto rp = self->make_response_promise();
      if (ctl->park && ctl->park(n)) {
        self->state.parked.push_back(rp);
        ++ctl->parked;
        return rp;
      }
      self->request(server, std::chrono::seconds(10), read_range_atom::value, req)
        .then(
          [=](range_page& page) mutable {
            if (ctl->transform)
              ctl->transform(n, page);
            rp.deliver(std::move(page));
          },
          [=](caf::error& err) mutable { rp.deliver(std::move(err)); });
      return rp;
    },
  };
}

/// A source node: an actor system with a log server on `journal` (and optionally a proxy in
/// front of it), published on 127.0.0.1. Stops its actors before its system goes away.
struct source_node {
  explicit source_node(const persistence::journal& journal,
                       std::shared_ptr<proxy_control> ctl = nullptr, range_limits limits = {}) {
    server = spawn_log_server(n.sys, &journal, limits);
    front = server;
    if (ctl)
      front = n.sys.spawn(proxy_actor, server, std::move(ctl));
    auto p = n.sys.middleman().publish(front, 0, "127.0.0.1");
    if (!p)
      FAIL("publish: " << n.sys.render(p.error()));
    port = *p;
  }
  ~source_node() { stop(); }
  /// Kills its actors (as a crash of the source process would end them).
  void stop() {
    if (front != server)
      caf::anon_send_exit(front, caf::exit_reason::kill);
    caf::anon_send_exit(server, caf::exit_reason::kill);
  }
  node n;
  caf::actor server;
  caf::actor front; ///< what is published: the proxy, or the server itself
  std::uint16_t port = 0;
};

/// The receiver's handle on a published source.
caf::actor connect(node& receiver, std::uint16_t port) {
  auto a = receiver.sys.middleman().remote_actor("127.0.0.1", port);
  if (!a)
    FAIL("remote_actor: " << receiver.sys.render(a.error()));
  return *a;
}

/// Catch-up settings with small pages, so that a few thousand events make many pages.
catch_up_settings small_pages() {
  catch_up_settings s;
  s.page_positions = 100;
  s.window = 4;
  return s;
}

/// The last position of the append that holds position `pos` in `log` (positions from 1).
shard_offset append_end_at(const std::vector<stored_event>& log, shard_offset pos) {
  while (!log.at(pos - 1).append_end)
    ++pos;
  return pos;
}

std::string describe(const catch_up_result& r) {
  return std::string{to_string(r.code)} + " end " + std::to_string(r.end) + " imported "
         + std::to_string(r.imported) + " source_end " + std::to_string(r.source_end) + ": "
         + r.message;
}

} // namespace

TEST_CASE("a catch-up inside one actor system copies the shard exactly, then only what is new",
          "[stream][catch_up]") {
  journal_fixture src, dst;
  history_writer writer{42};
  writer.write(*src.journal, 3000);
  const shard_offset total = src.journal->shard_end(copied_shard).value();
  node one;
  stop_all guard;
  auto server = spawn_log_server(one.sys, src.journal.get());
  guard.actors.push_back(server);
  auto settings = small_pages();
  settings.page_bytes = 4000; // cut many pages short: the rest of a range is asked for again

  auto r = run_catch_up(one.sys, *dst.journal, catch_up_spec{server, copied_shard}, settings);
  INFO(describe(r));
  REQUIRE(r.ok());
  CHECK(r.shard == copied_shard);
  CHECK(r.end == total);
  CHECK(r.source_end == total);
  CHECK(r.imported == total);
  CHECK(kept(shard_log(*dst.journal)) == kept(shard_log(*src.journal)));
  CHECK(snapshots_of(*dst.journal, writer.ids()) == snapshots_of(*src.journal, writer.ids()));
  CHECK(shard_log(*dst.journal, 0).empty()); // nothing of the other shards

  writer.write(*src.journal, 500);
  const shard_offset more = src.journal->shard_end(copied_shard).value();
  auto again = run_catch_up(one.sys, *dst.journal, catch_up_spec{server, copied_shard}, settings);
  INFO(describe(again));
  REQUIRE(again.ok());
  CHECK(again.end == more);
  CHECK(again.imported == more - total);
  CHECK(kept(shard_log(*dst.journal)) == kept(shard_log(*src.journal)));
  require_snapshots_copied(*dst.journal, *src.journal, writer.touched_ids(), writer.ids());

  // Nothing new: verified against the source, nothing written.
  auto idle = run_catch_up(one.sys, *dst.journal, catch_up_spec{server, copied_shard}, settings);
  REQUIRE(idle.ok());
  CHECK(idle.imported == 0);
  CHECK(idle.end == more);
}

TEST_CASE("across two actor systems over the io middleman, 10k events arrive exactly",
          "[stream][catch_up][remote]") {
  journal_fixture src, dst;
  history_writer writer{2024};
  writer.write(*src.journal, 10000);
  const shard_offset total = src.journal->shard_end(copied_shard).value();
  REQUIRE(total >= 10000);
  source_node source{*src.journal};
  node receiver;
  auto remote = connect(receiver, source.port);

  auto r = run_catch_up(receiver.sys, *dst.journal, catch_up_spec{remote, copied_shard});
  INFO(describe(r));
  REQUIRE(r.ok());
  CHECK(r.end == total);
  CHECK(r.imported == total);
  // Ids, seqs, positions, write times, append boundaries and payloads; and the snapshots.
  CHECK(kept(shard_log(*dst.journal)) == kept(shard_log(*src.journal)));
  CHECK(snapshots_of(*dst.journal, writer.ids()) == snapshots_of(*src.journal, writer.ids()));
  // The receiver's own log and per-id streams hold them too.
  CHECK(dst.journal->log_end().value() == total);
  for (const auto& id : {std::string{"id-0"}, std::string{"id-150"}})
    CHECK(dst.journal->highest_sequence_nr(id).value()
          == src.journal->highest_sequence_nr(id).value());

  SECTION("a second catch-up after more events copies only the new ones") {
    writer.write(*src.journal, 700);
    const shard_offset more = src.journal->shard_end(copied_shard).value();
    auto again = run_catch_up(receiver.sys, *dst.journal, catch_up_spec{remote, copied_shard});
    INFO(describe(again));
    REQUIRE(again.ok());
    CHECK(again.end == more);
    CHECK(again.imported == more - total);
    CHECK(dst.journal->log_end().value() == more);
    CHECK(kept(shard_log(*dst.journal)) == kept(shard_log(*src.journal)));
    require_snapshots_copied(*dst.journal, *src.journal, writer.touched_ids(), writer.ids());
  }
}

TEST_CASE("a catch-up into a receiver that already holds a prefix copies the rest",
          "[stream][catch_up][remote]") {
  journal_fixture src, dst;
  history_writer writer{99};
  writer.write(*src.journal, 2000);
  const auto all = shard_log(*src.journal);
  // The receiver holds the first appends up to position ~700, imported earlier.
  const shard_offset prefix = append_end_at(all, 700);
  REQUIRE(dst.journal
            ->import(persistence::shard_import{copied_shard, {all.begin(), all.begin() + prefix}, {}})
            .has_value());
  source_node source{*src.journal};
  node receiver;
  auto remote = connect(receiver, source.port);

  auto r = run_catch_up(receiver.sys, *dst.journal, catch_up_spec{remote, copied_shard},
                        small_pages());
  INFO(describe(r));
  REQUIRE(r.ok());
  CHECK(r.imported == all.size() - prefix);
  CHECK(r.end == all.size());
  CHECK(kept(shard_log(*dst.journal)) == kept(all));
}

TEST_CASE("a source that dies mid-stream fails the catch-up at once and leaves a prefix",
          "[stream][catch_up][remote]") {
  journal_fixture src, dst;
  history_writer writer{5};
  writer.write(*src.journal, 3000);
  const shard_offset total = src.journal->shard_end(copied_shard).value();
  auto ctl = std::make_shared<proxy_control>();
  ctl->park = [](std::size_t n) { return n >= 6; }; // six pages pass, then the source hangs
  auto source = std::make_unique<source_node>(*src.journal, ctl);
  node receiver;
  std::optional<caf::actor> remote = connect(receiver, source->port);
  auto settings = small_pages();
  settings.request_timeout = 20s; // the failure must come from the death, not from a timeout

  auto running = std::async(std::launch::async, [&] {
    return run_catch_up(receiver.sys, *dst.journal, catch_up_spec{*remote, copied_shard}, settings);
  });
  REQUIRE(kontor::test::wait_until([&] { return ctl->parked.load() > 0; }));
  SECTION("the source actor exits") {
    source->stop();
  }
  SECTION("the source's actor system shuts down") {
    source.reset();
  }
  // Well before any request could time out: the death is noticed, not waited out.
  REQUIRE(running.wait_for(15s) == std::future_status::ready);
  auto r = running.get();
  INFO(describe(r));
  CHECK(r.code == catch_up_errc::source_unreachable);
  CHECK(r.end > 0); // it was mid-stream: some pages arrived ...
  CHECK(r.end < total); // ... not all
  require_prefix(*dst.journal, *src.journal, r.end);

  // A later catch-up from the source's next incarnation continues from the receiver's end.
  remote.reset();
  source.reset();
  source_node restarted{*src.journal};
  auto again_remote = connect(receiver, restarted.port);
  auto again = run_catch_up(receiver.sys, *dst.journal, catch_up_spec{again_remote, copied_shard},
                            small_pages());
  INFO(describe(again));
  REQUIRE(again.ok());
  CHECK(again.imported == total - r.end);
  CHECK(kept(shard_log(*dst.journal)) == kept(shard_log(*src.journal)));
}

TEST_CASE("a source that stops answering fails the catch-up with a timeout after the retries",
          "[stream][catch_up][remote]") {
  journal_fixture src, dst;
  history_writer writer{6};
  writer.write(*src.journal, 1500);
  auto ctl = std::make_shared<proxy_control>();
  ctl->park = [](std::size_t n) { return n >= 3; }; // frozen after three pages
  source_node source{*src.journal, ctl};
  node receiver;
  auto remote = connect(receiver, source.port);
  auto settings = small_pages();
  settings.request_timeout = 1s;
  settings.max_retries = 2;

  auto r = run_catch_up(receiver.sys, *dst.journal, catch_up_spec{remote, copied_shard}, settings);
  INFO(describe(r));
  CHECK(r.code == catch_up_errc::timeout);
  CHECK_THAT(r.message, Catch::Contains("failed 3 times"));
  CHECK(ctl->parked.load() >= 3); // every retry was asked and went unanswered
  require_prefix(*dst.journal, *src.journal, r.end);
  CHECK(r.end > 0);
  CHECK(r.end < src.journal->shard_end(copied_shard).value());
}

TEST_CASE("a source that answers garbage fails the catch-up, the receiver keeps a prefix",
          "[stream][catch_up]") {
  journal_fixture src, dst;
  history_writer writer{8};
  writer.write(*src.journal, 1500);
  const auto all = shard_log(*src.journal);
  node one;
  stop_all guard;
  auto server = spawn_log_server(one.sys, src.journal.get());
  guard.actors.push_back(server);
  auto ctl = std::make_shared<proxy_control>();
  auto proxy = one.sys.spawn(proxy_actor, server, ctl);
  guard.actors.push_back(proxy);
  auto settings = small_pages();
  // Requests 0 and 1 are the ranges [1, 101) and [101, 201); pages are imported in that order,
  // so a bad third page leaves exactly the first two imported or fewer (never a gap).
  const shard_offset two_pages = append_end_at(all, 200);
  catch_up_errc expected = catch_up_errc::bad_reply;
  std::string says;

  SECTION("a page of another shard") {
    ctl->transform = [](std::size_t n, range_page& p) { if (n == 2) p.shard = 3; };
    says = "of shard 3";
  }
  SECTION("a page that skips a position") {
    ctl->transform = [](std::size_t n, range_page& p) {
      if (n == 2 && p.events.size() > 4)
        p.events.erase(p.events.begin() + 2);
    };
    says = "skips from position";
  }
  SECTION("a page whose next position is outside its range") {
    ctl->transform = [](std::size_t n, range_page& p) { if (n == 2) p.next += 5000; };
    says = "says the next page starts at";
  }
  SECTION("an event of another shard inside a page") {
    ctl->transform = [](std::size_t n, range_page& p) {
      if (n == 2 && !p.events.empty())
        p.events.back().shard = 0;
    };
    says = "holds an event of shard 0";
  }
  SECTION("a source whose end goes back") {
    ctl->transform = [](std::size_t n, range_page& p) { if (n == 2) p.end = 10; };
    says = "end went back";
  }
  SECTION("a page that ends inside an append") {
    ctl->transform = [](std::size_t n, range_page& p) {
      if (n != 2)
        return;
      while (!p.events.empty() && p.events.back().append_end)
        p.events.pop_back(); // drop appends from the back until one is cut open
      REQUIRE_FALSE(p.events.empty());
    };
    says = "ends inside an append";
  }
  SECTION("an empty answer for positions the source holds") {
    ctl->transform = [](std::size_t n, range_page& p) {
      if (n == 2) {
        p.events.clear();
        p.next = p.from;
      }
    };
    says = "is empty although";
  }
  SECTION("a page whose seqs do not continue: the journal refuses it, nothing of it written") {
    ctl->transform = [](std::size_t n, range_page& p) {
      if (n == 2)
        for (auto& e : p.events)
          e.seq += 1000;
    };
    expected = catch_up_errc::import_refused;
    says = "sequence_conflict";
  }
  SECTION("a source that keeps failing") {
    ctl->refuse = [](std::size_t n) { return n >= 2; };
    expected = catch_up_errc::source_failed;
    says = "planted source failure";
  }

  auto r = run_catch_up(one.sys, *dst.journal, catch_up_spec{proxy, copied_shard}, settings);
  INFO(describe(r));
  CHECK(r.code == expected);
  CHECK_THAT(r.message, Catch::Contains(says));
  CHECK(r.end <= two_pages);
  require_prefix(*dst.journal, *src.journal, r.end);

  // A later catch-up from a sane source continues from the receiver's end and completes.
  auto again = run_catch_up(one.sys, *dst.journal, catch_up_spec{server, copied_shard}, settings);
  INFO(describe(again));
  REQUIRE(again.ok());
  CHECK(again.imported == all.size() - r.end);
  CHECK(kept(shard_log(*dst.journal)) == kept(all));
}

TEST_CASE("a receiver whose shard is not a prefix of the source's is refused, nothing written",
          "[stream][catch_up][remote]") {
  journal_fixture src, dst;
  history_writer writer{13};
  writer.write(*src.journal, 800);
  const auto all = shard_log(*src.journal);
  source_node source{*src.journal};
  node receiver;
  auto remote = connect(receiver, source.port);
  std::string says;

  SECTION("the same first append, written by another writer at another time") {
    // The same ids, seqs and payloads at the first positions, but the receiver wrote them
    // itself, later.
    const auto& first = all.front();
    persistence::append_request same{copied_shard, first.persistence_id, first.seq, {}};
    for (std::size_t k = 0; k == 0 || !all[k - 1].append_end; ++k)
      same.events.push_back(all[k].payload);
    REQUIRE(kontor::test::wait_until([&] {
      return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::system_clock::now().time_since_epoch())
               .count()
             > first.written_at;
    }));
    REQUIRE(dst.journal->append(std::move(same)).has_value());
    says = "on the source";
  }
  SECTION("another id at the receiver's end") {
    REQUIRE(dst.journal->append(persistence::append_request{copied_shard, "mine", 1, {"m1", "m2"}})
              .has_value());
    says = "'mine' seq 2";
  }
  SECTION("a receiver ahead of the source") {
    REQUIRE(dst.journal->import(persistence::shard_import{copied_shard, all, {}}).has_value());
    REQUIRE(dst.journal->append(persistence::append_request{copied_shard, "late", 1, {"l1"}})
              .has_value());
    says = "the source only up to";
  }
  const auto before = kept(shard_log(*dst.journal));
  const auto log_end = dst.journal->log_end().value();

  auto r = run_catch_up(receiver.sys, *dst.journal, catch_up_spec{remote, copied_shard});
  INFO(describe(r));
  CHECK(r.code == catch_up_errc::diverged);
  CHECK_THAT(r.message, Catch::Contains(says));
  CHECK(r.imported == 0);
  CHECK(kept(shard_log(*dst.journal)) == before);
  CHECK(dst.journal->log_end().value() == log_end);
}

TEST_CASE("a catch-up until a position copies the appends that start up to it",
          "[stream][catch_up]") {
  journal_fixture src, dst;
  auto& j = *src.journal;
  history_writer::append_all(j, {persistence::append_request{copied_shard, "a", 1, {"a1"}},
                                 persistence::append_request{copied_shard, "b", 1, {"b1", "b2", "b3"}},
                                 persistence::append_request{copied_shard, "a", 2, {"a2"}}});
  // Positions: 1 a1 | 2 b1, 3 b2, 4 b3 | 5 a2.
  node one;
  stop_all guard;
  auto server = spawn_log_server(one.sys, &j);
  guard.actors.push_back(server);

  auto to3 = run_catch_up(one.sys, *dst.journal, catch_up_spec{server, copied_shard, 3});
  INFO(describe(to3));
  REQUIRE(to3.ok());
  CHECK(to3.end == 4); // position 3 is inside b's append: all of it
  CHECK(to3.imported == 4);

  auto below = run_catch_up(one.sys, *dst.journal, catch_up_spec{server, copied_shard, 2});
  REQUIRE(below.ok());
  CHECK(below.end == 4);
  CHECK(below.imported == 0);

  auto behind = run_catch_up(one.sys, *dst.journal, catch_up_spec{server, copied_shard, 9});
  INFO(describe(behind));
  CHECK(behind.code == catch_up_errc::source_behind);
  CHECK(behind.end == 4);
  CHECK(dst.journal->shard_end(copied_shard).value() == 4);

  auto rest = run_catch_up(one.sys, *dst.journal, catch_up_spec{server, copied_shard, 5});
  REQUIRE(rest.ok());
  CHECK(rest.end == 5);
  CHECK(kept(shard_log(*dst.journal)) == kept(shard_log(j)));
}

TEST_CASE("a catch-up worker answers once: bad arguments, a second request, an exit",
          "[stream][catch_up]") {
  journal_fixture src, dst;
  history_writer writer{21};
  writer.write(*src.journal, 600);
  node one;
  stop_all guard;
  auto server = spawn_log_server(one.sys, src.journal.get());
  guard.actors.push_back(server);

  SECTION("a shard the receiver does not have, or no source") {
    auto r = run_catch_up(one.sys, *dst.journal, catch_up_spec{server, 7});
    CHECK(r.code == catch_up_errc::invalid_argument);
    auto none = run_catch_up(one.sys, *dst.journal, catch_up_spec{caf::actor{}, copied_shard});
    CHECK(none.code == catch_up_errc::invalid_argument);
    CHECK(dst.journal->log_end().value() == 0);
  }
  SECTION("a second request to a worker gets an error, the first its answer") {
    auto worker = spawn_catch_up(one.sys, *dst.journal, catch_up_spec{server, copied_shard});
    caf::scoped_actor self{one.sys};
    self->send(worker, catch_up_atom::value); // the first: starts it (its answer goes to self)
    bool refused = false;
    self->request(worker, 10s, catch_up_atom::value)
      .receive([&](const catch_up_result&) {}, [&](caf::error&) { refused = true; });
    CHECK(refused);
    std::optional<catch_up_result> answer;
    self->receive([&](catch_up_result& r) { answer = std::move(r); },
                  caf::after(std::chrono::seconds(20)) >> [] {});
    REQUIRE(answer.has_value());
    CHECK(answer->ok());
  }
  SECTION("an exit message stops it with `cancelled` after its queued imports") {
    auto ctl = std::make_shared<proxy_control>();
    ctl->park = [](std::size_t n) { return n >= 2; };
    auto proxy = one.sys.spawn(proxy_actor, server, ctl);
    guard.actors.push_back(proxy);
    auto worker = spawn_catch_up(one.sys, *dst.journal, catch_up_spec{proxy, copied_shard},
                                 small_pages());
    caf::scoped_actor self{one.sys};
    std::optional<catch_up_result> answer;
    auto pending = std::async(std::launch::async, [&] {
      caf::scoped_actor asker{one.sys};
      asker->request(worker, std::chrono::seconds(20), catch_up_atom::value)
        .receive([&](catch_up_result& r) { answer = std::move(r); }, [](caf::error&) {});
    });
    REQUIRE(kontor::test::wait_until([&] { return ctl->parked.load() > 0; }));
    caf::anon_send_exit(worker, caf::exit_reason::user_shutdown);
    pending.get();
    REQUIRE(answer.has_value());
    CHECK(answer->code == catch_up_errc::cancelled);
    require_prefix(*dst.journal, *src.journal, answer->end);
  }
}

TEST_CASE("every catch-up message survives serialization", "[stream][catch_up]") {
  node one;
  range_page page;
  page.shard = 2;
  page.from = 5;
  page.prev = stored_event{"p", 3, 2, 0, 17, "", 4, true};
  page.events = {stored_event{"a", 1, 2, 9, 18, "payload", 5, false},
                 stored_event{"a", 2, 2, 10, 18, "more", 6, true}};
  page.snapshots = {persistence::snapshot{"a", 2, "state"}};
  page.next = 7;
  page.end = 12;
  catch_up_result res{2, catch_up_errc::diverged, 4, 12, 3, "why"};
  range_request req{2, 5, 105, 4096};

  std::vector<char> buf;
  caf::binary_serializer sink{one.sys, buf};
  REQUIRE(!sink(page, res, req));
  range_page page2;
  catch_up_result res2;
  range_request req2;
  caf::binary_deserializer source{one.sys, buf};
  REQUIRE(!source(page2, res2, req2));
  CHECK(kept(page2.events) == kept(page.events));
  CHECK(kept({page2.prev}) == kept({page.prev}));
  CHECK(page2.snapshots.at(0).payload == "state");
  CHECK((page2.shard == 2 && page2.from == 5 && page2.next == 7 && page2.end == 12));
  CHECK((res2.code == catch_up_errc::diverged && res2.end == 4 && res2.source_end == 12
         && res2.imported == 3 && res2.message == "why"));
  CHECK((req2.shard == 2 && req2.from == 5 && req2.to == 105 && req2.max_bytes == 4096));
}

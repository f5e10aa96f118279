// The accounts read model's handler (gateway/account_projection.cpp) on a real LMDB store: a
// redelivered event is skipped, so views, country totals and the global log count it once.

#include <catch2/catch.hpp>

#include <memory>
#include <vector>

#include "domain/account/account.hpp"
#include "gateway/account_projection.hpp"
#include "runtime/persistence/lmdb_store.hpp"
#include "tests/support/temp_dir.hpp"

using namespace kontor;

namespace {

/// The journal record of `ev` as the poller delivers it: event n of the log at offset n.
persistence::stored_event stored(account::pb::Event ev, const std::string& id, sequence_nr seq,
                                 log_offset offset) {
  ev.set_schema_version(account::current_event_version(ev.payload_case()));
  ev.set_account_id(id);
  ev.set_seq(seq);
  ev.set_at_ms(1'700'000'000'000 + static_cast<std::int64_t>(offset));
  // All in shard 0, so the shard positions are the log offsets.
  return {id, seq, 0, offset, ev.at_ms(), ev.SerializeAsString(), offset, true};
}

/// Two accounts' histories, interleaved in the log (offsets 1..8): "a" opens in DE, raises its
/// limit, moves to AT and takes a deposit; "b" opens in AT and is locked (two events).
std::vector<persistence::stored_event> history() {
  std::vector<persistence::stored_event> log;
  auto add = [&](account::pb::Event ev, const std::string& id, sequence_nr seq) {
    log.push_back(stored(std::move(ev), id, seq, log.size() + 1));
  };
  account::pb::Event e;
  auto* a_opened = e.mutable_account_opened();
  a_opened->set_owner("Ann");
  a_opened->set_country("DE");
  a_opened->set_currency("EUR");
  a_opened->set_limit(100);
  add(e, "a", 1);
  e.Clear();
  auto* b_opened = e.mutable_account_opened();
  b_opened->set_owner("Bob");
  b_opened->set_country("AT");
  b_opened->set_currency("EUR");
  b_opened->set_limit(50);
  add(e, "b", 1);
  e.Clear();
  e.mutable_limit_updated()->set_new_limit(300);
  e.mutable_limit_updated()->set_old_limit(100);
  add(e, "a", 2);
  e.Clear();
  e.mutable_limit_changed()->set_new_limit(0);
  e.mutable_limit_changed()->set_old_limit(50);
  add(e, "b", 2);
  e.Clear();
  e.mutable_status_changed()->set_from(account::pb::ACTIVE);
  e.mutable_status_changed()->set_to(account::pb::LOCKED);
  add(e, "b", 3);
  e.Clear();
  auto* moved = e.mutable_address_updated();
  moved->mutable_address()->set_street("Ring 1");
  moved->mutable_address()->set_city("Wien");
  moved->mutable_address()->set_zip("1010");
  moved->mutable_address()->set_country("AT");
  add(e, "a", 3);
  e.Clear();
  auto* dep = e.mutable_money_deposited();
  dep->set_tx_id("d1");
  dep->set_amount(70);
  dep->set_currency("EUR");
  dep->set_new_balance(70);
  add(e, "a", 4);
  e.Clear();
  e.mutable_phone_number_added()->set_number("+43 1 555 555");
  add(e, "b", 4);
  return log;
}

/// A store with the handler's tables in `dir`.
std::unique_ptr<persistence::lmdb_store> open_store(const std::filesystem::path& dir,
                                                    const projection::projection_handler& h) {
  auto store = persistence::lmdb_store::open({dir, h.tables()});
  REQUIRE(store);
  return std::move(*store);
}

/// Applies log[first-1 .. last-1] in one transaction, as one batch of the poller.
void deliver(persistence::lmdb_store& store, projection::projection_handler& h,
             const std::vector<persistence::stored_event>& log, std::size_t first, std::size_t last) {
  auto written = store.write([&](persistence::store_writer& txn) {
    for (std::size_t i = first; i <= last; ++i)
      h.apply(txn, log[i - 1]);
  });
  INFO("batch " << first << ".." << last << ": " << (written ? "" : written.error().message));
  REQUIRE(written);
}

/// Everything the read model serves, comparable.
struct served {
  std::string a, b;
  std::map<std::string, std::pair<std::int64_t, std::int64_t>> countries;
  std::vector<std::pair<log_offset, std::string>> log;
  bool operator==(const served&) const = default;
};

served read_all(const persistence::lmdb_store& store) {
  gateway::account_queries q{store};
  served out;
  auto a = q.account("a");
  auto b = q.account("b");
  REQUIRE(a);
  REQUIRE(b);
  REQUIRE(a->has_value());
  REQUIRE(b->has_value());
  out.a = (*a)->SerializeAsString();
  out.b = (*b)->SerializeAsString();
  auto totals = q.countries();
  REQUIRE(totals);
  for (const auto& [country, t] : *totals)
    out.countries[country] = {t.total_accounts, t.combined_limit};
  auto page = q.events(std::vector<shard_offset>(1, 0), 100);
  REQUIRE(page);
  for (const auto& e : page->events)
    out.log.emplace_back(e.position, e.event.SerializeAsString());
  return out;
}

} // namespace

TEST_CASE("the accounts read model skips redelivered events: each counts once", "[projection]") {
  const auto log = history();
  auto handler = gateway::account_projection();
  test::temp_dir dir;

  // Once: two batches in order.
  auto once = open_store(dir.path() / "once", *handler);
  deliver(*once, *handler, log, 1, 4);
  deliver(*once, *handler, log, 5, 8);
  const auto expected = read_all(*once);
  CHECK(expected.countries
        == std::map<std::string, std::pair<std::int64_t, std::int64_t>>{{"AT", {2, 300}}});
  REQUIRE(expected.log.size() == 8);
  for (std::size_t i = 0; i < expected.log.size(); ++i)
    CHECK(expected.log[i].first == i + 1);

  // Redelivered: batches that overlap what was applied, a whole replay, a repeated last batch.
  auto again = open_store(dir.path() / "again", *handler);
  deliver(*again, *handler, log, 1, 4);
  deliver(*again, *handler, log, 3, 6);
  deliver(*again, *handler, log, 1, 8);
  deliver(*again, *handler, log, 8, 8);
  CHECK(read_all(*again) == expected);
}

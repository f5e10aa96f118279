// Read-side projections: the view equals the entity's view; country stats follow every change.

#include "tests/unit/domain/account_support.hpp"

#include <map>

#include "domain/account/projections.hpp"

using namespace kontor::account;
using namespace kontor::account::testing;

namespace {

pb::AccountView projected(const std::vector<pb::Event>& events) {
  pb::AccountView view;
  for (const auto& ev : events)
    project_view(view, ev);
  return view;
}

/// Country totals after each account's events, through country_deltas view by view.
std::map<std::string, country_totals>
stats_of(const std::vector<std::vector<pb::Event>>& accounts) {
  std::map<std::string, country_totals> stats;
  for (const auto& events : accounts) {
    pb::AccountView view;
    for (const auto& ev : events) {
      auto before = view;
      project_view(view, ev);
      for (const auto& d : country_deltas(before, view))
        apply(stats[d.country], d);
    }
  }
  return stats;
}

} // namespace

TEST_CASE("the projected view equals the entity's view for every event type", "[projections]") {
  auto events = history({opened("Mike Magic", "DE", "EUR", 1000), deposited("t1", 700, 700),
                         purchased("t2", 500, 200), limit_updated(2000, 1000),
                         phone_added("+49 126 555 555"),
                         address_updated(address("Ring 1", "Wien", "1010", "AT"), "DE")});
  auto locked = locked_events(2000, "fraud");
  for (auto& ev : locked) {
    ev.set_seq(events.size() + 1);
    ev.set_account_id(account);
    ev.set_at_ms(t0 + static_cast<std::int64_t>(events.size()));
    events.push_back(ev);
  }
  for (std::size_t n = 1; n <= events.size(); ++n) {
    std::vector<pb::Event> prefix(events.begin(), events.begin() + static_cast<long>(n));
    INFO("after " << n << " events");
    CHECK(same(projected(prefix), view_of(replayed(prefix))));
  }
}

TEST_CASE("country stats: open, limit changes, lock, address moves", "[projections]") {
  auto de = history({opened("A", "DE", "EUR", 1000)});
  auto stats = stats_of({de});
  CHECK(stats["DE"].total_accounts == 1);
  CHECK(stats["DE"].combined_limit == 1000);

  auto moved = history({opened("A", "DE", "EUR", 1000), limit_updated(3000, 1000),
                        address_updated(address("Ring 1", "Wien", "1010", "AT"), "DE")});
  auto other = history({opened("B", "DE", "EUR", 500)});
  stats = stats_of({moved, other});
  CHECK(stats["DE"].total_accounts == 1);
  CHECK(stats["DE"].combined_limit == 500);
  CHECK(stats["AT"].total_accounts == 1);
  CHECK(stats["AT"].combined_limit == 3000);

  // A lock takes the limit to 0 through LimitChanged; the status change alone moves nothing.
  auto locked = history({opened("C", "AT", "EUR", 700)});
  for (auto& ev : locked_events(700, "x")) {
    ev.set_seq(locked.size() + 1);
    ev.set_account_id(account);
    locked.push_back(ev);
  }
  stats = stats_of({locked});
  CHECK(stats["AT"].total_accounts == 1);
  CHECK(stats["AT"].combined_limit == 0);

  // Same country again (a new street): no delta at all.
  pb::AccountView a = projected(history({opened("D", "DE", "EUR", 5)}));
  pb::AccountView b = a;
  project_view(b, [] {
    auto ev = address_updated(address("x", "y", "z", "DE"), "DE");
    ev.set_seq(2);
    return ev;
  }());
  CHECK(country_deltas(a, b).empty());
}

#include "projections.hpp"

#include <cassert>

namespace kontor::account {

void project_view(pb::AccountView& view, const pb::Event& ev) {
  assert(ev.seq() == view.version() + 1);
  switch (ev.payload_case()) {
    case pb::Event::kAccountOpened: {
      const auto& e = ev.account_opened();
      view.set_id(ev.account_id());
      view.set_owner(e.owner());
      view.set_country(e.country());
      view.set_currency(e.currency());
      view.set_limit(e.limit());
      view.set_balance(0);
      view.set_status(pb::ACTIVE);
      view.set_opened_at_ms(ev.at_ms());
      break;
    }
    case pb::Event::kLimitUpdated:
      view.set_limit(ev.limit_updated().new_limit());
      break;
    case pb::Event::kLimitChanged:
      view.set_limit(ev.limit_changed().new_limit());
      break;
    case pb::Event::kItemPurchased:
      view.set_balance(ev.item_purchased().new_balance());
      break;
    case pb::Event::kMoneyDeposited:
      view.set_balance(ev.money_deposited().new_balance());
      break;
    case pb::Event::kStatusChanged:
      view.set_status(ev.status_changed().to());
      break;
    case pb::Event::kAddressUpdated:
      *view.mutable_address() = ev.address_updated().address();
      view.set_country(ev.address_updated().address().country());
      break;
    case pb::Event::kPhoneNumberAdded:
      view.add_phones(ev.phone_number_added().number());
      break;
    case pb::Event::kEmailChanged:
      view.set_email(ev.email_changed().email());
      break;
    case pb::Event::kEmailChangeFailed:
    case pb::Event::PAYLOAD_NOT_SET:
      break;
  }
  view.set_version(ev.seq());
  view.set_updated_at_ms(ev.at_ms());
}

std::vector<country_delta> country_deltas(const pb::AccountView& before,
                                          const pb::AccountView& after) {
  std::vector<country_delta> out;
  bool was_open = before.version() > 0;
  bool is_open = after.version() > 0;
  if (was_open && is_open && before.country() == after.country()) {
    if (before.limit() != after.limit())
      out.push_back({after.country(), 0, after.limit() - before.limit()});
    return out;
  }
  if (was_open)
    out.push_back({before.country(), -1, -before.limit()});
  if (is_open)
    out.push_back({after.country(), 1, after.limit()});
  return out;
}

void apply(country_totals& totals, const country_delta& d) {
  totals.total_accounts += d.accounts;
  totals.combined_limit += d.limit;
}

} // namespace kontor::account

// Reading stored events: parsing, schema versions and upcasting, and the API names of types.

#include <climits>

#include "domain/account/account.hpp"

namespace kontor::account {

std::optional<pb::Event> parse_event(std::string_view bytes) {
  if (bytes.size() > static_cast<std::size_t>(INT_MAX))
    return std::nullopt;
  pb::Event ev;
  if (!ev.ParseFromArray(bytes.data(), static_cast<int>(bytes.size())))
    return std::nullopt;
  // A payload written by a newer schema is an unknown field here: not an event we can apply;
  // neither is a version of its type newer than this build knows (upcast refuses both).
  return upcast(std::move(ev));
}

std::string_view event_type(const pb::Event& ev) {
  switch (ev.payload_case()) {
    case pb::Event::kAccountOpened:
      return "AccountOpened";
    case pb::Event::kLimitUpdated:
      return "LimitUpdated";
    case pb::Event::kLimitChanged:
      return "LimitChanged";
    case pb::Event::kItemPurchased:
      return "ItemPurchased";
    case pb::Event::kMoneyDeposited:
      return "MoneyDeposited";
    case pb::Event::kStatusChanged:
      return "StatusChanged";
    case pb::Event::kAddressUpdated:
      return "AddressUpdated";
    case pb::Event::kPhoneNumberAdded:
      return "PhoneNumberAdded";
    case pb::Event::kEmailChanged:
      return "EmailChanged";
    case pb::Event::kEmailChangeFailed:
      return "EmailChangeFailed";
    case pb::Event::PAYLOAD_NOT_SET:
      break;
  }
  return {};
}

} // namespace kontor::account

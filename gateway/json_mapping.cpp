#include "gateway/json_mapping.hpp"

#include <cstdio>
#include <ctime>
#include <limits>
#include <unordered_set>
#include <vector>

#include <boost/json/basic_parser_impl.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

namespace json = boost::json;

namespace kontor::gateway {

namespace {

/// Reads typed fields of one JSON object; remembers the first problem.
class field_reader {
public:
  explicit field_reader(const json::object& in) : in_(in) {}

  std::string string(const char* name, bool required = true) {
    auto* v = find(name, required);
    if (!v)
      return {};
    if (!v->is_string()) {
      fail(name, std::string{"field '"} + name + "' must be a string");
      return {};
    }
    return std::string(v->get_string());
  }

  std::int64_t integer(const char* name) {
    auto* v = find(name, true);
    if (!v)
      return 0;
    if (v->is_int64())
      return v->get_int64();
    if (v->is_uint64()) {
      fail(name, std::string{"field '"} + name + "' is out of range");
      return 0;
    }
    fail(name, std::string{"field '"} + name + "' must be an integer (minor units)");
    return 0;
  }

  std::optional<field_error> error() const { return err_; }

private:
  const json::value* find(const char* name, bool required) {
    if (err_)
      return nullptr;
    auto i = in_.find(name);
    if (i == in_.end()) {
      if (required)
        fail(name, std::string{"field '"} + name + "' is required");
      return nullptr;
    }
    if (i->value().is_null()) {
      fail(name, std::string{"field '"} + name + "' must not be null");
      return nullptr;
    }
    return &i->value();
  }

  void fail(const char* name, std::string message) {
    if (!err_)
      err_ = field_error{"invalid_field", name, std::move(message)};
  }

  const json::object& in_;
  std::optional<field_error> err_;
};

/// A boost::json::basic_parser handler that only looks for an object with a key twice (at any
/// depth): JSON leaves that undefined (RFC 8259 4) and Boost.JSON keeps the last one.
class duplicate_key_finder {
public:
  static constexpr std::size_t max_array_size = -1;
  static constexpr std::size_t max_object_size = -1;
  static constexpr std::size_t max_string_size = -1;
  static constexpr std::size_t max_key_size = -1;

  bool on_document_begin(json::error_code&) { return true; }
  bool on_document_end(json::error_code&) { return true; }
  bool on_object_begin(json::error_code&) {
    keys_.emplace_back();
    return true;
  }
  bool on_object_end(std::size_t, json::error_code&) {
    keys_.pop_back();
    return true;
  }
  bool on_array_begin(json::error_code&) { return true; }
  bool on_array_end(std::size_t, json::error_code&) { return true; }
  bool on_key_part(json::string_view s, std::size_t, json::error_code&) {
    key_.append(s.data(), s.size());
    return true;
  }
  bool on_key(json::string_view s, std::size_t, json::error_code& ec) {
    key_.append(s.data(), s.size());
    if (!keys_.back().insert(key_).second) {
      duplicate = std::move(key_);
      ec = json::error::syntax; // stops the parser; `duplicate` says why
      return false;
    }
    key_.clear();
    return true;
  }
  bool on_string_part(json::string_view, std::size_t, json::error_code&) { return true; }
  bool on_string(json::string_view, std::size_t, json::error_code&) { return true; }
  bool on_number_part(json::string_view, json::error_code&) { return true; }
  bool on_int64(std::int64_t, json::string_view, json::error_code&) { return true; }
  bool on_uint64(std::uint64_t, json::string_view, json::error_code&) { return true; }
  bool on_double(double, json::string_view, json::error_code&) { return true; }
  bool on_bool(bool, json::error_code&) { return true; }
  bool on_null(json::error_code&) { return true; }
  bool on_comment_part(json::string_view, json::error_code&) { return true; }
  bool on_comment(json::string_view, json::error_code&) { return true; }

  std::optional<std::string> duplicate; ///< the first key seen twice in one object

private:
  std::vector<std::unordered_set<std::string>> keys_; // one set per open object
  std::string key_;
};

const char* status_name(account::pb::Status s) {
  switch (s) {
    case account::pb::ACTIVE:
      return "active";
    case account::pb::LOCKED:
      return "locked";
    default:
      return "unknown";
  }
}

json::object address_to_json(const account::pb::Address& a) {
  return {{"street", a.street()}, {"city", a.city()}, {"zip", a.zip()}, {"country", a.country()}};
}

} // namespace

std::optional<field_error> parse_object(std::string_view body, json::object& out) {
  json::error_code ec;
  json::parse_options opts;
  opts.max_depth = 16;
  auto v = json::parse(body, ec, {}, opts);
  if (ec)
    return field_error{"malformed_json", {}, "request body is not valid JSON: " + ec.message()};
  if (!v.is_object())
    return field_error{"malformed_json", {}, "request body must be a JSON object"};
  // A second pass over valid JSON, since the parsed value no longer shows a repeated key.
  json::basic_parser<duplicate_key_finder> finder(opts);
  finder.write_some(false, body.data(), body.size(), ec);
  if (auto& key = finder.handler().duplicate)
    return field_error{"malformed_json", {},
                       "request body has key \"" + *key + "\" twice in one object (ambiguous)"};
  out = std::move(v.get_object());
  return std::nullopt;
}

std::optional<field_error> open_account_from_json(const json::object& in, account::pb::Command& cmd) {
  field_reader r(in);
  auto* open = cmd.mutable_open_account();
  cmd.set_account_id(r.string("id"));
  open->set_owner(r.string("owner"));
  open->set_country(r.string("country"));
  open->set_currency(r.string("currency"));
  open->set_limit(r.integer("limit"));
  return r.error();
}

std::optional<field_error> update_limit_from_json(const json::object& in, account::pb::Command& cmd) {
  field_reader r(in);
  cmd.mutable_update_limit()->set_limit(r.integer("limit"));
  return r.error();
}

std::optional<field_error> transaction_from_json(const json::object& in, account::pb::Command& cmd) {
  field_reader r(in);
  auto tx_id = r.string("txId");
  auto kind = r.string("kind");
  auto amount = r.integer("amount");
  auto currency = r.string("currency");
  if (auto err = r.error())
    return err;
  // PurchaseItem and DepositMoney carry the same fields.
  auto fill = [&](auto* p) {
    p->set_tx_id(std::move(tx_id));
    p->set_amount(amount);
    p->set_currency(std::move(currency));
  };
  if (kind == "purchase")
    fill(cmd.mutable_purchase_item());
  else if (kind == "deposit") {
    fill(cmd.mutable_deposit_money());
    // A deposit through the HTTP API is always recorded as such; a body's "source" is an
    // unknown field like any other (ignored).
    cmd.mutable_deposit_money()->set_source(std::string{account::deposit_source_api});
  } else
    return field_error{"invalid_field", "kind", "field 'kind' must be \"purchase\" or \"deposit\""};
  return std::nullopt;
}

std::optional<field_error> lock_from_json(const json::object& in, account::pb::Command& cmd) {
  field_reader r(in);
  cmd.mutable_lock_account()->set_reason(r.string("reason", false));
  return r.error();
}

std::optional<field_error> address_from_json(const json::object& in, account::pb::Command& cmd) {
  field_reader r(in);
  auto* a = cmd.mutable_update_address()->mutable_address();
  a->set_street(r.string("street"));
  a->set_city(r.string("city"));
  a->set_zip(r.string("zip"));
  a->set_country(r.string("country"));
  return r.error();
}

std::optional<field_error> phone_from_json(const json::object& in, account::pb::Command& cmd) {
  field_reader r(in);
  cmd.mutable_add_phone_number()->set_number(r.string("number"));
  return r.error();
}

std::optional<field_error> email_from_json(const json::object& in, account::pb::Command& cmd) {
  field_reader r(in);
  auto given = r.string("email");
  if (auto err = r.error())
    return err;
  auto normal = email::normalize(given);
  if (!normal)
    return field_error{"invalid_field", "email",
                       "email must be an address like mike@example.com (at most "
                         + std::to_string(email::max_address_bytes) + " bytes)"};
  cmd.mutable_change_email()->set_email(std::move(*normal));
  return std::nullopt;
}

json::object account_to_json(const account::pb::AccountView& v) {
  json::array phones;
  for (const auto& p : v.phones())
    phones.emplace_back(p);
  json::object out{{"id", v.id()},           {"owner", v.owner()},
                   {"country", v.country()}, {"currency", v.currency()},
                   {"limit", v.limit()},     {"balance", v.balance()},
                   {"status", status_name(v.status())}, {"phones", std::move(phones)}};
  if (v.has_address())
    out["address"] = address_to_json(v.address());
  else
    out["address"] = nullptr;
  if (v.email().empty())
    out["email"] = nullptr;
  else
    out["email"] = v.email();
  out["version"] = v.version();
  out["openedAt"] = format_time(v.opened_at_ms());
  out["updatedAt"] = format_time(v.updated_at_ms());
  return out;
}

json::object event_data_to_json(const account::pb::Event& ev) {
  using E = account::pb::Event;
  switch (ev.payload_case()) {
    case E::kAccountOpened: {
      const auto& e = ev.account_opened();
      return {{"owner", e.owner()}, {"country", e.country()}, {"currency", e.currency()},
              {"limit", e.limit()}};
    }
    case E::kLimitUpdated:
      return {{"newLimit", ev.limit_updated().new_limit()},
              {"oldLimit", ev.limit_updated().old_limit()}};
    case E::kLimitChanged:
      return {{"newLimit", ev.limit_changed().new_limit()},
              {"oldLimit", ev.limit_changed().old_limit()},
              {"reason", ev.limit_changed().reason()}};
    case E::kItemPurchased: {
      const auto& e = ev.item_purchased();
      return {{"txId", e.tx_id()}, {"amount", e.amount()}, {"currency", e.currency()},
              {"newBalance", e.new_balance()}};
    }
    case E::kMoneyDeposited: {
      const auto& e = ev.money_deposited();
      return {{"txId", e.tx_id()}, {"amount", e.amount()}, {"currency", e.currency()},
              {"newBalance", e.new_balance()}, {"source", e.source()}};
    }
    case E::kStatusChanged:
      return {{"from", status_name(ev.status_changed().from())},
              {"to", status_name(ev.status_changed().to())},
              {"reason", ev.status_changed().reason()}};
    case E::kAddressUpdated: {
      auto out = address_to_json(ev.address_updated().address());
      out["oldCountry"] = ev.address_updated().old_country();
      return out;
    }
    case E::kPhoneNumberAdded:
      return {{"number", ev.phone_number_added().number()}};
    case E::kEmailChanged:
      return {{"email", ev.email_changed().email()},
              {"previous", ev.email_changed().previous().empty()
                             ? json::value(nullptr) : json::value(ev.email_changed().previous())}};
    case E::kEmailChangeFailed:
      return {{"email", ev.email_change_failed().email()},
              {"reason", ev.email_change_failed().reason()}};
    default:
      return {};
  }
}

json::object event_to_flat_json(const account::pb::Event& ev) {
  json::object out{{"type", account::event_type(ev)},
                   {"seq", ev.seq()},
                   {"at", format_time(ev.at_ms())}};
  for (auto& kv : event_data_to_json(ev))
    out.emplace(kv.key(), std::move(kv.value()));
  return out;
}

json::object event_to_log_json(const account::pb::Event& ev) {
  return {{"seq", ev.seq()},
          {"type", account::event_type(ev)},
          {"at", format_time(ev.at_ms())},
          {"data", event_data_to_json(ev)}};
}

std::string format_time(std::int64_t epoch_ms) {
  auto secs = static_cast<std::time_t>(epoch_ms / 1000);
  auto ms = static_cast<int>(epoch_ms % 1000);
  if (ms < 0) {
    ms += 1000;
    --secs;
  }
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[96];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ms);
  return buf;
}

std::optional<std::int64_t> parse_time(std::string_view t) {
  // YYYY-MM-DDTHH:MM:SS[.fff...](Z|+hh:mm|-hh:mm)
  auto digits = [&](std::size_t pos, std::size_t n) -> std::optional<int> {
    if (pos + n > t.size())
      return std::nullopt;
    int v = 0;
    for (std::size_t i = pos; i < pos + n; ++i) {
      if (t[i] < '0' || t[i] > '9')
        return std::nullopt;
      v = v * 10 + (t[i] - '0');
    }
    return v;
  };
  auto days_in = [](int year, int month) {
    static constexpr int days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    bool leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    return month == 2 && leap ? 29 : days[month - 1];
  };
  if (t.size() < 20 || t[4] != '-' || t[7] != '-' || (t[10] != 'T' && t[10] != 't')
      || t[13] != ':' || t[16] != ':')
    return std::nullopt;
  auto y = digits(0, 4), mo = digits(5, 2), d = digits(8, 2), h = digits(11, 2),
       mi = digits(14, 2), s = digits(17, 2);
  // Second 60 is a leap second (RFC 3339 allows it): it counts as the next second's start.
  if (!y || !mo || !d || !h || !mi || !s || *mo < 1 || *mo > 12 || *d < 1 || *d > days_in(*y, *mo)
      || *h > 23 || *mi > 59 || *s > 60)
    return std::nullopt;
  std::size_t pos = 19;
  std::int64_t ms = 0;
  if (pos < t.size() && t[pos] == '.') {
    // Any number of digits; those below a millisecond are cut off (events are stamped in ms).
    ++pos;
    int scale = 100, n = 0;
    while (pos < t.size() && t[pos] >= '0' && t[pos] <= '9') {
      ms += (t[pos] - '0') * scale;
      scale /= 10;
      ++pos;
      ++n;
    }
    if (n == 0)
      return std::nullopt;
  }
  std::int64_t offset_min = 0;
  if (pos < t.size() && (t[pos] == 'Z' || t[pos] == 'z')) {
    ++pos;
  } else if (pos < t.size() && (t[pos] == '+' || t[pos] == '-')) {
    auto oh = digits(pos + 1, 2), om = digits(pos + 4, 2);
    if (!oh || !om || pos + 3 >= t.size() || t[pos + 3] != ':' || *oh > 23 || *om > 59)
      return std::nullopt;
    offset_min = (*oh * 60 + *om) * (t[pos] == '+' ? 1 : -1);
    pos += 6;
  } else {
    return std::nullopt;
  }
  if (pos != t.size())
    return std::nullopt;
  // Days from civil (Howard Hinnant's algorithm).
  int yy = *y - (*mo <= 2 ? 1 : 0);
  int era = (yy >= 0 ? yy : yy - 399) / 400;
  unsigned yoe = static_cast<unsigned>(yy - era * 400);
  unsigned mp = static_cast<unsigned>(*mo + (*mo > 2 ? -3 : 9));
  unsigned doy = (153 * mp + 2) / 5 + static_cast<unsigned>(*d) - 1;
  unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  std::int64_t days = static_cast<std::int64_t>(era) * 146097 + static_cast<std::int64_t>(doe) - 719468;
  std::int64_t secs = days * 86400 + *h * 3600 + *mi * 60 + *s - offset_min * 60;
  return secs * 1000 + ms;
}

std::string error_json(std::string_view code, std::string_view message, std::string_view field) {
  json::object out{{"error", code}, {"message", message}};
  if (!field.empty())
    out["field"] = field;
  return json::serialize(out);
}

} // namespace kontor::gateway

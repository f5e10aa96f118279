#include "gateway/account_projection.hpp"

#include "domain/account/account.hpp"
#include "runtime/core/bytes.hpp"
#include "runtime/core/log.hpp"

namespace kontor::gateway {

namespace {

enum table : persistence::table_id { accounts = 0, countries = 1, global_log = 2 };

std::string encode(const account::country_totals& t) {
  return to_be64(static_cast<std::uint64_t>(t.total_accounts))
         + to_be64(static_cast<std::uint64_t>(t.combined_limit));
}

account::country_totals decode_totals(std::string_view s) {
  if (s.size() != 16)
    return {};
  return {static_cast<std::int64_t>(from_be64(s.substr(0, 8))),
          static_cast<std::int64_t>(from_be64(s.substr(8, 8)))};
}

class handler final : public projection::projection_handler {
public:
  std::string format() const override { return "accounts/1"; }

  std::vector<std::string> tables() const override { return {"accounts", "countries", "log"}; }

  void apply(persistence::store_writer& txn, const persistence::stored_event& stored) override {
    auto ev = account::parse_event(stored.payload);
    if (!ev) {
      log(log_level::warn, "read-model",
          "skipping unreadable event at offset " + std::to_string(stored.offset));
      return;
    }
    account::pb::AccountView view;
    if (auto bytes = txn.get(accounts, ev->account_id()))
      view.ParseFromArray(bytes->data(), static_cast<int>(bytes->size()));
    if (ev->seq() <= view.version())
      return; // applied before (redelivery)
    if (ev->seq() != view.version() + 1) {
      log(log_level::error, "read-model",
          "account " + ev->account_id() + ": event " + std::to_string(ev->seq())
            + " arrived after " + std::to_string(view.version()) + "; skipped");
      return;
    }
    auto before = view;
    account::project_view(view, *ev);
    txn.put(accounts, ev->account_id(), view.SerializeAsString());
    for (const auto& d : account::country_deltas(before, view)) {
      account::country_totals totals;
      if (auto t = txn.get(countries, d.country))
        totals = decode_totals(*t);
      account::apply(totals, d);
      txn.put(countries, d.country, encode(totals));
    }
    txn.append(global_log, to_be64(stored.offset), stored.payload);
  }
};

} // namespace

std::shared_ptr<projection::projection_handler> account_projection() {
  return std::make_shared<handler>();
}

persistence::expected<std::optional<account::pb::AccountView>>
account_queries::account(const std::string& id) const {
  std::optional<account::pb::AccountView> out;
  auto r = store_.read([&](const persistence::store_reader& txn) {
    if (auto bytes = txn.get(accounts, id)) {
      out.emplace();
      out->ParseFromArray(bytes->data(), static_cast<int>(bytes->size()));
    }
  });
  if (!r)
    return r.error();
  return out;
}

persistence::expected<std::map<std::string, account::country_totals>>
account_queries::countries() const {
  std::map<std::string, account::country_totals> out;
  auto r = store_.read([&](const persistence::store_reader& txn) {
    txn.scan(table::countries, {}, [&](std::string_view key, std::string_view value) {
      auto t = decode_totals(value);
      if (t.total_accounts != 0 || t.combined_limit != 0)
        out.emplace(std::string(key), t);
      return true;
    });
  });
  if (!r)
    return r.error();
  return out;
}

persistence::expected<std::vector<std::pair<log_offset, account::pb::Event>>>
account_queries::events(log_offset from, std::size_t limit) const {
  std::vector<std::pair<log_offset, account::pb::Event>> out;
  auto r = store_.read([&](const persistence::store_reader& txn) {
    txn.scan(global_log, to_be64(from), [&](std::string_view key, std::string_view value) {
      if (out.size() >= limit)
        return false;
      if (auto ev = account::parse_event(value))
        out.emplace_back(from_be64(key), std::move(*ev));
      return true;
    });
  });
  if (!r)
    return r.error();
  return out;
}

} // namespace kontor::gateway

#include "gateway/account_projection.hpp"
#include "gateway/account_entity.hpp"

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

/// The feed's key: [shard u32 BE][position u64 BE].
std::string feed_key(shard_id shard, shard_offset pos) {
  return to_be64(shard).substr(4) + to_be64(pos);
}

/// The feed's value: [written_at i64 BE][append end u8][event bytes].
std::string feed_value(const persistence::stored_event& ev) {
  std::string out = to_be64(static_cast<std::uint64_t>(ev.written_at));
  out.push_back(ev.append_end ? '\1' : '\0');
  out += ev.payload;
  return out;
}

class handler final : public projection::projection_handler {
public:
  std::string format() const override { return "accounts/2"; }

  std::vector<std::string> tables() const override { return {"accounts", "countries", "log"}; }

  void apply(persistence::store_writer& txn, const persistence::stored_event& stored) override {
    if (!is_account_stream(stored))
      return; // another entity type's (an e-mail reservation): not part of the account views
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
    txn.put(global_log, feed_key(stored.shard, stored.shard_pos), feed_value(stored));
  }
};

} // namespace

std::shared_ptr<projection::projection_handler> account_projection() {
  return std::make_shared<handler>();
}

persistence::expected<std::optional<account::pb::AccountView>>
account_queries::account(const std::string& id) const {
  std::optional<account::pb::AccountView> out;
  const auto store = current_();
  auto r = store->read([&](const persistence::store_reader& txn) {
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
  const auto store = current_();
  auto r = store->read([&](const persistence::store_reader& txn) {
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

persistence::expected<feed_page> account_queries::events(const std::vector<shard_offset>& after,
                                                         std::size_t limit) const {
  /// One stored feed entry, read ahead per shard.
  struct entry {
    epoch_ms at = 0;
    shard_id shard = 0;
    shard_offset pos = 0;
    bool append_end = true;
    std::string bytes;
  };
  feed_page out;
  out.next = after;
  std::vector<std::vector<entry>> heads(after.size());
  const auto store = current_();
  auto r = store->read([&](const persistence::store_reader& txn) {
    // Per shard, up to `limit` entries after its position (then on to the end of an append).
    for (std::size_t s = 0; s < after.size(); ++s) {
      const auto shard = static_cast<shard_id>(s);
      const std::string prefix = feed_key(shard, 0).substr(0, 4);
      txn.scan(global_log, feed_key(shard, after[s] + 1), [&](std::string_view key, std::string_view value) {
        if (key.size() != 12 || key.substr(0, 4) != prefix || value.size() < 9)
          return false;
        auto& v = heads[s];
        if (v.size() >= limit && v.back().append_end)
          return false;
        v.push_back(entry{static_cast<epoch_ms>(from_be64(value.substr(0, 8))), shard,
                          from_be64(key.substr(4, 8)), value[8] != 0, std::string(value.substr(9))});
        return true;
      });
    }
  });
  if (!r)
    return r.error();
  // Merge by (write time, shard, position): each shard's events stay in order, an append's
  // events stay together (one write time, one shard, consecutive positions), and a node with
  // the same events gives the same page.
  std::vector<std::size_t> at(heads.size(), 0);
  for (;;) {
    std::optional<std::size_t> best;
    for (std::size_t s = 0; s < heads.size(); ++s) {
      if (at[s] >= heads[s].size())
        continue;
      const auto& e = heads[s][at[s]];
      if (!best)
        best = s;
      else if (const auto& b = heads[*best][at[*best]]; e.at < b.at)
        best = s;
    }
    if (!best)
      break;
    const auto& e = heads[*best][at[*best]++];
    auto ev = account::parse_event(e.bytes);
    if (ev)
      out.events.push_back(feed_entry{e.shard, e.pos, std::move(*ev)});
    out.next[e.shard] = e.pos;
    if (out.events.size() >= limit && e.append_end)
      break;
  }
  return out;
}

} // namespace kontor::gateway

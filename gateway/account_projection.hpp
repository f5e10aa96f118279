#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "account.pb.h"
#include "domain/account/projections.hpp"
#include "runtime/persistence/lmdb_store.hpp"
#include "runtime/projection/read_model.hpp"

namespace kontor::gateway {

/// The accounts read model: every account's view, per-country totals and the global event log,
/// maintained from journal events by the domain's pure projections.
std::shared_ptr<projection::projection_handler> account_projection();

/// One event of the feed and where it is in its shard's log.
struct feed_entry {
  shard_id shard = 0;
  shard_offset position = 0;
  account::pb::Event event;
};

/// A page of the feed and, per shard, the last position it covers (the next page's `after`).
struct feed_page {
  std::vector<feed_entry> events;
  std::vector<shard_offset> next;
};

/// Queries on the accounts read model (read transactions, any thread).
class account_queries {
public:
  /// The store each query reads: the one answering at that moment (a rebuild switches it); the
  /// query holds it until it ends.
  using store_source = std::function<std::shared_ptr<const persistence::lmdb_store>()>;

  explicit account_queries(store_source current) : current_(std::move(current)) {}
  /// Queries on one store, which outlives this object.
  explicit account_queries(const persistence::lmdb_store& store)
    : current_([&store] { return std::shared_ptr<const persistence::lmdb_store>(std::shared_ptr<void>{}, &store); }) {}

  /// The view of one account, if the read model has it.
  persistence::expected<std::optional<account::pb::AccountView>> account(const std::string& id) const;

  /// Totals per country, sorted by country code.
  persistence::expected<std::map<std::string, account::country_totals>> countries() const;

  /// The feed after `after` (per shard, the last position already delivered): at most `limit`
  /// events (rounded up to whole appends), ordered by write time, then shard, then position.
  persistence::expected<feed_page> events(const std::vector<shard_offset>& after,
                                          std::size_t limit) const;

private:
  store_source current_;
};

} // namespace kontor::gateway

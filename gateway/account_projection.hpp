#pragma once

#include <cstdint>
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

/// Queries on the accounts read model (read transactions, any thread).
class account_queries {
public:
  explicit account_queries(const persistence::lmdb_store& store) : store_(store) {}

  /// The view of one account, if the read model has it.
  persistence::expected<std::optional<account::pb::AccountView>> account(const std::string& id) const;

  /// Totals per country, sorted by country code.
  persistence::expected<std::map<std::string, account::country_totals>> countries() const;

  /// Global log entries with offset >= from, at most `limit`.
  persistence::expected<std::vector<std::pair<log_offset, account::pb::Event>>>
  events(log_offset from, std::size_t limit) const;

private:
  const persistence::lmdb_store& store_;
};

} // namespace kontor::gateway

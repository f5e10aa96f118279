#pragma once

// JSON <-> Protobuf for the HTTP API (API.md): request bodies to commands, events and accounts
// to JSON. Field names and error texts are the public contract.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include <boost/json/object.hpp>
#include <boost/json/value.hpp>

#include "domain/account/account.hpp"

namespace kontor::gateway {

/// A request that cannot become a command: 400 with the field named.
struct field_error {
  std::string code = "invalid_field"; ///< or "malformed_json"
  std::string field;
  std::string message;
};

/// Parses a JSON object body; `malformed_json` for anything else.
std::optional<field_error> parse_object(std::string_view body, boost::json::object& out);

/// Fills `cmd`'s body from a request body, per route. The account id is set by the caller.
std::optional<field_error> open_account_from_json(const boost::json::object& in,
                                                  account::pb::Command& cmd);
std::optional<field_error> update_limit_from_json(const boost::json::object& in,
                                                  account::pb::Command& cmd);
std::optional<field_error> transaction_from_json(const boost::json::object& in,
                                                 account::pb::Command& cmd);
std::optional<field_error> lock_from_json(const boost::json::object& in, account::pb::Command& cmd);
std::optional<field_error> address_from_json(const boost::json::object& in,
                                             account::pb::Command& cmd);
std::optional<field_error> phone_from_json(const boost::json::object& in,
                                           account::pb::Command& cmd);
/// {"email": "..."} to ChangeEmail with the normalized address.
std::optional<field_error> email_from_json(const boost::json::object& in,
                                           account::pb::Command& cmd);

/// The account as GET /accounts/{id} shows it.
boost::json::object account_to_json(const account::pb::AccountView& view);

/// An event's own fields ({"newLimit":2000,"oldLimit":1000}).
boost::json::object event_data_to_json(const account::pb::Event& ev);

/// An event in a command's answer: type, seq, at and its fields side by side.
boost::json::object event_to_flat_json(const account::pb::Event& ev);

/// An event in the audit log: {"seq","type","at","data":{...}}.
boost::json::object event_to_log_json(const account::pb::Event& ev);

/// RFC 3339 UTC with milliseconds, e.g. "2026-11-22T10:00:00.123Z".
std::string format_time(std::int64_t epoch_ms);

/// Parses any RFC 3339 date-time to epoch milliseconds: fractions of any length (cut to ms),
/// `Z`/`z` or `+hh:mm`/`-hh:mm`, `T` or `t`. Nullopt for anything else (e.g. February 30).
std::optional<std::int64_t> parse_time(std::string_view text);

/// {"error":code,"message":message} (+ "field" when given).
std::string error_json(std::string_view code, std::string_view message, std::string_view field = {});

} // namespace kontor::gateway

#include "gateway/api.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <charconv>
#include <exception>
#include <vector>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include "gateway/json_mapping.hpp"
#include "runtime/core/log.hpp"
#include "runtime/policy/policy.hpp"
#include "runtime/projection/feed_cursor.hpp"

namespace json = boost::json;

namespace kontor::gateway {

std::span<const route_spec> served_routes() {
  static constexpr route_spec routes[] = {
    {"GET", "/health"},
    {"GET", "/ready"},
    {"GET", "/metrics"},
    {"GET", "/openapi.json"},
    {"GET", "/dashboard"},
    {"GET", "/cluster/members"},
    {"GET", "/cluster/shards"},
    {"GET", "/events"},
    {"GET", "/stats/countries"},
    {"POST", "/accounts"},
    {"GET", "/accounts/{id}"},
    {"GET", "/accounts/{id}/events"},
    {"GET", "/accounts/{id}/explain"},
    {"PUT", "/accounts/{id}/limit"},
    {"POST", "/accounts/{id}/transactions"},
    {"POST", "/accounts/{id}/lock"},
    {"POST", "/accounts/{id}/unlock"},
    {"PUT", "/accounts/{id}/address"},
    {"POST", "/accounts/{id}/phones"},
    {"PUT", "/accounts/{id}/email"},
    {"GET", "/admin/emails/{address}"},
    {"POST", "/admin/read-models/{name}/rebuild"},
    {"GET", "/admin/policies/{name}/dead-letters"},
    {"POST", "/admin/policies/{name}/dead-letters/retry"},
  };
  return routes;
}

namespace {

constexpr std::size_t max_events_page = 1000;
constexpr std::size_t default_events_page = 100;
constexpr std::string_view invalid_id_message =
  "id must be 1-64 characters of A-Z a-z 0-9 . _ - (and not . or ..)";

/// How a successful command answer is shown.
enum class answer_shape {
  created_account, ///< 201, the account
  change,          ///< 200, {"id","version","events"}
  transaction,     ///< 201, {"id","version","balance","events"}
  account,         ///< 200, the account
};

http_response json_response(unsigned status, std::string body) {
  http_response r;
  r.status = status;
  r.body = std::move(body);
  return r;
}

http_response error_response(unsigned status, std::string_view code, std::string_view message,
                             std::string_view field = {}) {
  return json_response(status, error_json(code, message, field));
}

http_response unavailable(std::string_view code, std::string_view message) {
  auto r = error_response(503, code, message);
  r.headers.emplace_back("Retry-After", "1");
  return r;
}

/// A stored event of `id` that cannot be parsed (a journal written by a newer build?).
http_response unreadable_event(const std::string& id, sequence_nr seq) {
  return error_response(500, "unreadable_event",
                        "event " + std::to_string(seq) + " of account " + id + " cannot be read");
}

http_response method_not_allowed(std::string_view allow) {
  // Every GET route answers HEAD too (RFC 9110 9.3.2).
  std::string methods = allow == "GET" ? "GET, HEAD" : std::string(allow);
  auto r = error_response(405, "method_not_allowed", "allowed: " + methods);
  r.headers.emplace_back("Allow", std::move(methods));
  return r;
}

std::pair<unsigned, const char*> status_of(account::pb::RejectionCode code) {
  using namespace account::pb;
  switch (code) {
    case INVALID_FIELD:
      return {400, "invalid_field"};
    case ACCOUNT_EXISTS:
      return {409, "account_exists"};
    case ACCOUNT_NOT_FOUND:
      return {404, "account_not_found"};
    case ACCOUNT_LOCKED:
      return {409, "account_locked"};
    case ACCOUNT_NOT_LOCKED:
      return {409, "account_not_locked"};
    case INSUFFICIENT_FUNDS:
      return {400, "insufficient_funds"};
    case CURRENCY_MISMATCH:
      return {400, "currency_mismatch"};
    case DUPLICATE_PHONE:
      return {409, "duplicate_phone"};
    case VERSION_MISMATCH:
      return {412, "version_mismatch"};
    case TX_ID_REUSED:
      return {409, "tx_id_reused"};
    case IDEMPOTENCY_KEY_REUSED:
      return {409, "idempotency_key_reused"};
    case BALANCE_CAP_REACHED:
      return {409, "balance_cap_reached"};
    case RESERVATION_EXPIRED:
      return {503, "reservation_expired"};
    default:
      return {500, "internal_error"};
  }
}

json::array events_json(const account::pb::Reply& reply) {
  json::array out;
  for (const auto& ev : reply.events())
    out.push_back(event_to_flat_json(ev));
  return out;
}

http_response to_http(answer_shape shape, entity_answer answer) {
  using status = entity_answer::status;
  switch (answer.code) {
    case status::timeout:
      return unavailable("timeout", answer.message);
    case status::unavailable:
      return unavailable("journal_unavailable", answer.message);
    case status::stopped:
      return unavailable("entity_unavailable", answer.message);
    case status::no_shard:
      return unavailable("shard_unavailable", answer.message);
    case status::overloaded:
      return unavailable("overloaded", answer.message);
    case status::failed:
      return error_response(500, "entity_failed", answer.message);
    case status::ok:
      break;
  }
  account::pb::Reply reply;
  if (!reply.ParseFromString(answer.reply))
    return error_response(500, "internal_error", "unreadable answer from the account");
  if (reply.has_rejection()) {
    const auto& rej = reply.rejection();
    auto [code, name] = status_of(rej.code());
    return error_response(code, name, rej.message(), rej.field());
  }
  const auto& acc = reply.account();
  http_response r;
  switch (shape) {
    case answer_shape::created_account:
      r = json_response(201, json::serialize(account_to_json(acc)));
      r.headers.emplace_back("Location", "/accounts/" + acc.id());
      break;
    case answer_shape::account:
      r = json_response(200, json::serialize(account_to_json(acc)));
      break;
    case answer_shape::change:
      r = json_response(200, json::serialize(json::object{
                               {"id", acc.id()}, {"version", acc.version()}, {"events", events_json(reply)}}));
      break;
    case answer_shape::transaction: {
      json::object body{{"id", acc.id()}, {"version", acc.version()}};
      // The balance right after this transaction (for a replay: after the first attempt).
      const auto& ev = reply.events(0);
      body["balance"] = ev.has_item_purchased() ? ev.item_purchased().new_balance()
                                                : ev.money_deposited().new_balance();
      body["events"] = events_json(reply);
      if (reply.replayed())
        body["replayed"] = true;
      r = json_response(201, json::serialize(body));
      break;
    }
  }
  if (reply.replayed())
    r.headers.emplace_back("Idempotent-Replayed", "true");
  r.headers.emplace_back("ETag", "\"" + std::to_string(acc.version()) + "\"");
  return r;
}

/// Percent-decodes `in` into `out` (RFC 3986 2.1; `+` is a space when `plus_is_space`, as HTML
/// forms and URL encoders write queries). False for a `%` not followed by two hex digits.
bool percent_decode(std::string_view in, bool plus_is_space, std::string& out) {
  auto hex = [](char c) {
    if (c >= '0' && c <= '9')
      return c - '0';
    if (c >= 'a' && c <= 'f')
      return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
      return c - 'A' + 10;
    return -1;
  };
  out.clear();
  for (std::size_t i = 0; i < in.size(); ++i) {
    if (in[i] == '%') {
      if (i + 2 >= in.size() || hex(in[i + 1]) < 0 || hex(in[i + 2]) < 0)
        return false;
      out += static_cast<char>(hex(in[i + 1]) * 16 + hex(in[i + 2]));
      i += 2;
    } else {
      out += plus_is_space && in[i] == '+' ? ' ' : in[i];
    }
  }
  return true;
}

/// The path split at '/' into percent-decoded segments (so "%2F" inside one stays in it), and
/// the raw query string.
struct target_parts {
  std::vector<std::string> segments;
  std::string_view query;
  bool malformed = false; ///< a bad percent escape in the path
};

target_parts split_target(std::string_view target) {
  target_parts out;
  auto q = target.find('?');
  if (q != std::string_view::npos) {
    out.query = target.substr(q + 1);
    target = target.substr(0, q);
  }
  std::size_t pos = 0;
  std::string decoded;
  while (pos < target.size()) {
    auto next = target.find('/', pos);
    if (next == std::string_view::npos)
      next = target.size();
    if (next > pos) {
      if (!percent_decode(target.substr(pos, next - pos), false, decoded))
        out.malformed = true;
      out.segments.push_back(decoded);
    }
    pos = next + 1;
  }
  return out;
}

/// Whether every name and value of `query` percent-decodes.
bool valid_query(std::string_view query) {
  std::string ignored;
  return percent_decode(query, true, ignored);
}

/// The percent-decoded value of query parameter `name` (first occurrence), if any.
std::optional<std::string> query_param(std::string_view query, std::string_view name) {
  std::string key, value;
  while (!query.empty()) {
    auto amp = query.find('&');
    auto item = query.substr(0, amp);
    auto eq = item.find('=');
    if (percent_decode(item.substr(0, eq), true, key) && key == name) {
      if (eq == std::string_view::npos || !percent_decode(item.substr(eq + 1), true, value))
        return std::string{};
      return value;
    }
    if (amp == std::string_view::npos)
      break;
    query = query.substr(amp + 1);
  }
  return std::nullopt;
}

/// A query parameter that must be an integer >= `min`; nullopt when absent, error when bad.
std::optional<std::uint64_t> integer_param(std::string_view query, std::string_view name,
                                           std::uint64_t min, std::optional<http_response>& error) {
  auto text = query_param(query, name);
  if (!text)
    return std::nullopt;
  std::uint64_t v = 0;
  auto [p, ec] = std::from_chars(text->data(), text->data() + text->size(), v);
  if (ec != std::errc{} || p != text->data() + text->size() || v < min) {
    error = error_response(400, "invalid_parameter",
                           "query parameter '" + std::string(name) + "' must be "
                             + (min == 0 ? "a non-negative" : "a positive") + " integer",
                           name);
    return std::nullopt;
  }
  return v;
}

/// `from` of a page (offset or seq): 0 and absent both mean from the beginning, which is 1.
std::optional<std::uint64_t> from_param(std::string_view query,
                                        std::optional<http_response>& error) {
  auto from = integer_param(query, "from", 0, error);
  return std::max<std::uint64_t>(from.value_or(1), 1);
}

/// GET /accounts/{id}?asOf=: an RFC 3339 time. A `+` of an offset that a URL decoder turned into
/// a space (the client did not encode it as %2B) is read as the `+` it was.
std::optional<std::int64_t> as_of_param(std::string text) {
  if (auto at = parse_time(text))
    return at;
  std::replace(text.begin(), text.end(), ' ', '+');
  return parse_time(text);
}

/// If-Match: "7", 7 or W/"7"; "*" means any version.
bool parse_if_match(std::string_view text, std::optional<std::uint64_t>& out) {
  if (text.empty() || text == "*")
    return true;
  if (text.substr(0, 2) == "W/")
    text.remove_prefix(2);
  if (text.size() >= 2 && text.front() == '"' && text.back() == '"')
    text = text.substr(1, text.size() - 2);
  std::uint64_t v = 0;
  auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc{} || p != text.data() + text.size())
    return false;
  out = v;
  return true;
}

/// The answer to an If-Match parse_if_match refuses.
http_response bad_if_match() {
  return error_response(400, "invalid_field", "If-Match must be a quoted version, e.g. \"3\"", "If-Match");
}

using body_mapper = std::optional<field_error> (*)(const json::object&, account::pb::Command&);

/// Whether the path `segments` match the template `path` ("{...}" matches any one segment).
bool matches(std::string_view path, const std::vector<std::string>& segments) {
  std::size_t i = 0;
  while (!path.empty()) {
    path.remove_prefix(1); // '/'
    auto part = path.substr(0, path.find('/'));
    path.remove_prefix(part.size());
    if (i >= segments.size() || (!(part.starts_with('{') && part.ends_with('}')) && part != segments[i]))
      return false;
    ++i;
  }
  return i == segments.size();
}

/// The route template of a request, for metrics (bounded set of values).
std::string route_label(const std::string& method, const target_parts& t) {
  const auto routes = served_routes();
  auto route = std::find_if(routes.begin(), routes.end(),
                            [&](const route_spec& r) { return matches(r.path, t.segments); });
  if (route == routes.end())
    return "other";
  const std::string path{route->path};
  static const char* methods[] = {"GET", "POST", "PUT", "DELETE", "PATCH", "HEAD"};
  for (auto m : methods)
    if (method == m)
      return method + " " + path;
  return "other " + path;
}

/// Whether one more failure line may be logged this second (at most 20).
bool failure_log_allowed() {
  static std::atomic<std::int64_t> second{0};
  static std::atomic<int> lines{0};
  const auto now = std::chrono::duration_cast<std::chrono::seconds>(
                     std::chrono::steady_clock::now().time_since_epoch())
                     .count();
  auto seen = second.load();
  if (seen != now && second.compare_exchange_strong(seen, now))
    lines = 0;
  return ++lines <= 20;
}

} // namespace

void api::operator()(http_request&& req, responder respond) const {
  auto target = split_target(req.target);
  // HEAD is GET without the body; the server leaves the body out (RFC 9110 9.3.2).
  const std::string method = req.method == "HEAD" ? "GET" : req.method;
  if (ctx_.metrics) {
    // Count every answer by route template and status.
    respond = [label = route_label(req.method, target), metrics = ctx_.metrics,
               inner = std::move(respond)](http_response r) {
      metrics
        ->counter("kontor_http_requests_total", "HTTP requests by route and status",
                  {{"route", label}, {"status", std::to_string(r.status)}})
        .inc();
      inner(std::move(r));
    };
  }
  const auto& seg = target.segments;
  // A server-side failure is logged with its account and request id (at most 20 lines a second:
  // a moving shard can answer many 503s at once).
  respond = [method = req.method, path = req.target.substr(0, req.target.find('?')), request_id = req.request_id,
             account = seg.size() >= 2 && seg[0] == "accounts" ? seg[1] : std::string{},
             inner = std::move(respond)](http_response r) {
    if (r.status >= 500 && failure_log_allowed()) {
      json::error_code ec;
      auto body = json::parse(r.body, ec);
      std::string code = !ec && body.is_object() && body.as_object().contains("error")
                             && body.at("error").is_string()
                           ? std::string(body.at("error").as_string())
                           : std::string{};
      log(r.status == 503 ? log_level::warn : log_level::error, "http",
          method + " " + path + " answered " + std::to_string(r.status) + (code.empty() ? "" : " " + code),
          {{"account", account}, {"request_id", request_id}});
    }
    inner(std::move(r));
  };

  auto fail = [&](http_response r) { respond(std::move(r)); };
  if (ctx_.auth != nullptr) {
    const auto path = req.target.substr(0, req.target.find('?'));
    switch (ctx_.auth->check(method, path, req.authorization)) {
      case authorizer::verdict::allowed:
        break;
      case authorizer::verdict::unauthorized: {
        auto r = error_response(401, "unauthorized",
                                "this route needs a bearer token (Authorization: Bearer <token>)");
        r.headers.emplace_back("WWW-Authenticate", "Bearer");
        return fail(std::move(r));
      }
      case authorizer::verdict::forbidden:
        return fail(error_response(
          403, "forbidden",
          std::string("the token's scope does not cover this route (it needs ")
            + to_string(required_scope(method, path)) + ")"));
    }
  }
  if (target.malformed || !valid_query(target.query))
    return fail(error_response(400, "bad_request",
                               "the request target has a malformed percent-encoding (% then two "
                               "hex digits)"));

  // Sends `cmd` (account id already set) to its entity and answers with `shape`.
  auto send = [&](account::pb::Command&& cmd, answer_shape shape) {
    std::optional<std::uint64_t> expected;
    if (!parse_if_match(req.if_match, expected))
      return fail(bad_if_match());
    if (expected)
      cmd.set_expected_version(*expected);
    if (req.idempotency_key && !cmd.has_get_account()) {
      if (!account::valid_idempotency_key(*req.idempotency_key))
        return fail(error_response(400, "invalid_field",
                                   "Idempotency-Key must be 1-255 visible ASCII characters",
                                   "Idempotency-Key"));
      cmd.set_idempotency_key(*req.idempotency_key);
    }
    auto id = cmd.account_id();
    ctx_.entities->ask(std::move(id), cmd.SerializeAsString(),
                       [respond = std::move(respond), shape](entity_answer a) {
                         respond(to_http(shape, std::move(a)));
                       });
  };

  // A command with a JSON body, mapped by `mapper`.
  auto command = [&](std::string_view id, body_mapper mapper, answer_shape shape,
                     bool body_optional = false) {
    json::object body;
    if (!(body_optional && req.body.empty())) {
      if (auto err = parse_object(req.body, body))
        return fail(error_response(400, err->code, err->message, err->field));
    }
    account::pb::Command cmd;
    if (auto err = mapper(body, cmd))
      return fail(error_response(400, err->code, err->message, err->field));
    if (!id.empty())
      cmd.set_account_id(std::string(id));
    if (!account::valid_account_id(cmd.account_id()))
      return fail(error_response(400, "invalid_field", invalid_id_message, "id"));
    send(std::move(cmd), shape);
  };

  if (seg.size() == 1 && seg[0] == "health") {
    if (method != "GET")
      return fail(method_not_allowed("GET"));
    return respond(json_response(200, "{\"status\":\"ok\",\"node\":\"" + ctx_.node_name + "\"}"));
  }
  if (seg.size() == 2 && seg[0] == "cluster" && seg[1] == "members") {
    if (method != "GET" && method != "HEAD")
      return fail(method_not_allowed("GET, HEAD"));
    return respond(cluster_members());
  }
  if (seg.size() == 2 && seg[0] == "cluster" && seg[1] == "shards") {
    if (method != "GET" && method != "HEAD")
      return fail(method_not_allowed("GET, HEAD"));
    return cluster_shards(std::move(respond));
  }
  if (seg.size() == 1 && seg[0] == "ready") {
    if (method != "GET")
      return fail(method_not_allowed("GET"));
    if (!ctx_.ready->load())
      return respond(unavailable("not_ready", "the node is starting or stopping"));
    if (ctx_.cluster) {
      const auto state = ctx_.cluster();
      const auto* me = state.find(state.self);
      if (!state.joined || me == nullptr || me->status != cluster::member_status::up)
        return respond(unavailable("not_ready", "this node is not an up member of a cluster yet"));
    }
    if (ctx_.shards && !ctx_.shards->routable())
      return respond(unavailable("not_ready", "this node has no shard table from the coordinator yet"));
    return respond(json_response(200, "{\"status\":\"ready\"}"));
  }
  if (seg.size() == 1 && seg[0] == "openapi.json") {
    if (method != "GET")
      return fail(method_not_allowed("GET"));
    return respond(json_response(200, std::string(openapi_document())));
  }
  if (seg.size() == 1 && seg[0] == "dashboard") {
    if (method != "GET")
      return fail(method_not_allowed("GET"));
    auto r = json_response(200, std::string(dashboard_page()));
    r.content_type = "text/html; charset=utf-8";
    r.headers.emplace_back("Cache-Control", "no-cache");
    return respond(std::move(r));
  }
  if (seg.size() == 1 && seg[0] == "metrics") {
    if (method != "GET")
      return fail(method_not_allowed("GET"));
    http_response r;
    r.body = ctx_.metrics ? ctx_.metrics->render() : std::string{};
    r.content_type = "text/plain; version=0.0.4";
    return respond(std::move(r));
  }
  if ((seg.size() == 1 && seg[0] == "events") || (seg.size() == 2 && seg[0] == "stats" && seg[1] == "countries")) {
    if (method != "GET")
      return fail(method_not_allowed("GET"));
    if (!ctx_.reads)
      return respond(unavailable("read_side_disabled", "this node runs with read-side = off"));
    return respond(read_model_query(seg.size() == 1 ? "events" : "countries", {}, target.query));
  }
  if (seg.size() == 4 && seg[0] == "admin" && seg[1] == "read-models" && seg[3] == "rebuild") {
    if (method != "POST")
      return fail(method_not_allowed("POST"));
    return respond(rebuild_read_model(seg[2]));
  }
  if (seg.size() >= 4 && seg[0] == "admin" && seg[1] == "policies" && seg[3] == "dead-letters") {
    if (seg.size() == 4) {
      if (method != "GET")
        return fail(method_not_allowed("GET"));
      return policy_admin(seg[2], false, std::move(respond));
    }
    if (seg.size() == 5 && seg[4] == "retry") {
      if (method != "POST")
        return fail(method_not_allowed("POST"));
      return policy_admin(seg[2], true, std::move(respond));
    }
  }
  if (seg.size() == 3 && seg[0] == "admin" && seg[1] == "emails") {
    if (method != "GET")
      return fail(method_not_allowed("GET"));
    return email_reservation(seg[2], std::move(respond));
  }
  if (seg.empty() || seg[0] != "accounts" || seg.size() > 3)
    return fail(error_response(404, "not_found", "no such route: " + std::string(req.target)));

  if (seg.size() == 1) {
    if (method != "POST")
      return fail(method_not_allowed("POST"));
    return command({}, open_account_from_json, answer_shape::created_account);
  }

  std::string_view id = seg[1];
  if (!account::valid_account_id(id))
    return fail(error_response(400, "invalid_field", invalid_id_message, "id"));

  if (seg.size() == 2) {
    if (method != "GET")
      return fail(method_not_allowed("GET"));
    if (auto as_of = query_param(target.query, "asOf")) {
      auto at = as_of_param(std::move(*as_of));
      if (!at)
        return fail(error_response(400, "invalid_parameter",
                                   "asOf must be an RFC 3339 time, e.g. 2026-11-22T10:00:00Z", "asOf"));
      return as_of_query(std::string(id), *at, std::move(respond));
    }
    auto consistent = query_param(target.query, "consistent");
    if (consistent && *consistent != "true" && *consistent != "false")
      return fail(error_response(400, "invalid_parameter", "consistent must be true or false",
                                 "consistent"));
    if (!(consistent && *consistent == "true") && ctx_.reads)
      return respond(read_model_query("account", id, target.query));
    account::pb::Command cmd;
    cmd.set_account_id(std::string(id));
    cmd.mutable_get_account();
    return send(std::move(cmd), answer_shape::account);
  }

  auto sub = seg[2];
  struct route {
    std::string_view name;
    const char* method;
    body_mapper mapper;
    answer_shape shape;
    bool body_optional;
  };
  static constexpr route routes[] = {
    {"limit", "PUT", update_limit_from_json, answer_shape::change, false},
    {"transactions", "POST", transaction_from_json, answer_shape::transaction, false},
    {"lock", "POST", lock_from_json, answer_shape::change, true},
    {"unlock", "POST", nullptr, answer_shape::change, true},
    {"address", "PUT", address_from_json, answer_shape::change, false},
    {"phones", "POST", phone_from_json, answer_shape::change, false},
  };
  if (sub == "email") {
    if (method != "PUT")
      return fail(method_not_allowed("PUT"));
    return change_email(std::string(id), req, std::move(respond));
  }
  if (sub == "explain") {
    if (method != "GET")
      return fail(method_not_allowed("GET"));
    return explain(std::string(id), std::move(respond));
  }
  if (sub == "events") {
    if (method != "GET")
      return fail(method_not_allowed("GET"));
    std::optional<http_response> bad;
    auto from = from_param(target.query, bad);
    auto limit = integer_param(target.query, "limit", 1, bad);
    if (bad)
      return fail(std::move(*bad));
    return events_query(std::string(id), *from,
                        std::min<std::size_t>(limit.value_or(default_events_page), max_events_page),
                        std::move(respond));
  }
  for (const auto& r : routes) {
    if (r.name != sub)
      continue;
    if (method != r.method)
      return fail(method_not_allowed(r.method));
    if (!r.mapper) {
      account::pb::Command cmd;
      cmd.set_account_id(std::string(id));
      cmd.mutable_unlock_account();
      return send(std::move(cmd), r.shape);
    }
    return command(id, r.mapper, r.shape, r.body_optional);
  }
  return fail(error_response(404, "not_found", "no such route: " + std::string(req.target)));
}

void api::change_email(std::string id, const http_request& req, responder respond) const {
  json::object body;
  if (auto err = parse_object(req.body, body))
    return respond(error_response(400, err->code, err->message, err->field));
  account::pb::Command cmd;
  if (auto err = email_from_json(body, cmd))
    return respond(error_response(400, err->code, err->message, err->field));
  std::optional<std::uint64_t> expected;
  if (!parse_if_match(req.if_match, expected))
    return respond(bad_if_match());
  auto address = cmd.change_email().email();
  gateway::change_email(
    *ctx_.entities, ctx_.email ? *ctx_.email : email_settings{}, std::move(id), address, expected,
    [respond = std::move(respond), address](email_change_result r) {
      using kind = email_change_result::kind;
      if (r.outcome == kind::taken) {
        if (r.answer.code != entity_answer::status::ok)
          log(log_level::warn, "email",
              "recording EmailChangeFailed for " + address + " failed: " + r.answer.message);
        return respond(error_response(409, "email_taken",
                                      "The e-mail " + address + " belongs to another account",
                                      "email"));
      }
      if (r.outcome == kind::failed && r.answer.code == entity_answer::status::failed)
        return respond(error_response(500, "email_reservation_failed", r.answer.message));
      respond(to_http(answer_shape::change, std::move(r.answer)));
    });
}

void api::email_reservation(const std::string& given, responder respond) const {
  auto address = email::normalize(given);
  if (!address)
    return respond(error_response(400, "invalid_field", "not an e-mail address", "address"));
  auto cmd = reservation_command(*address);
  cmd.mutable_get();
  ctx_.entities->ask(email::entity_id_of(*address), cmd.SerializeAsString(),
                     [respond = std::move(respond)](entity_answer a) {
    if (a.code != entity_answer::status::ok)
      return respond(to_http(answer_shape::change, std::move(a)));
    email::pb::Reply reply;
    if (!reply.ParseFromString(a.reply))
      return respond(error_response(500, "internal_error", "unreadable answer from the reservation"));
    const auto& v = reply.view();
    json::object out{{"address", v.address()},
                     {"status", v.status() == email::pb::HELD       ? "held"
                                : v.status() == email::pb::RESERVED ? "reserved"
                                                                    : "free"},
                     {"account", v.account().empty() ? json::value(nullptr) : json::value(v.account())},
                     {"version", v.version()}};
    if (v.status() == email::pb::RESERVED)
      out["expiresAt"] = format_time(v.expires_at_ms());
    respond(json_response(200, json::serialize(out)));
  });
}

http_response api::read_model_query(const std::string& what, std::string_view id,
                                    std::string_view query) const {
  auto offset = std::to_string(ctx_.projection ? ctx_.projection->applied.load() : 0);
  auto with_offset = [&](http_response r) {
    r.headers.emplace_back("X-Projection-Offset", offset);
    return r;
  };
  if (what == "account") {
    auto view = ctx_.reads->account(std::string(id));
    if (!view)
      return unavailable("read_model_unavailable", view.error().message);
    if (!*view)
      return with_offset(error_response(
        404, "account_not_found",
        "Account " + std::string(id)
          + " is not in the read model (yet); ?consistent=true asks the account itself"));
    auto r = json_response(200, json::serialize(account_to_json(**view)));
    r.headers.emplace_back("ETag", "\"" + std::to_string((*view)->version()) + "\"");
    return with_offset(std::move(r));
  }
  if (what == "countries") {
    auto totals = ctx_.reads->countries();
    if (!totals)
      return unavailable("read_model_unavailable", totals.error().message);
    json::object out;
    for (const auto& [country, t] : *totals)
      out[country] = json::object{{"totalAccounts", t.total_accounts},
                                  {"combinedLimit", t.combined_limit}};
    return with_offset(json_response(200, json::serialize(out)));
  }
  // The feed: from the beginning (no `after`, or from=0), or after a cursor it gave.
  std::optional<http_response> bad;
  auto from = integer_param(query, "from", 0, bad);
  auto limit = integer_param(query, "limit", 1, bad);
  if (bad)
    return std::move(*bad);
  if (from && *from != 0)
    return error_response(400, "invalid_parameter",
                          "from: only 0 (the beginning) is accepted; continue with after=<next> "
                          "from the previous page",
                          "from");
  std::vector<shard_offset> after(ctx_.number_of_shards, 0);
  if (auto token = query_param(query, "after"); token && !token->empty()) {
    auto decoded = projection::decode_feed_cursor(*token, ctx_.number_of_shards);
    if (!decoded)
      return error_response(400, "invalid_parameter",
                            "after must be a cursor this API returned as `next`", "after");
    after = std::move(*decoded);
  }
  auto page = ctx_.reads->events(after, std::min<std::size_t>(limit.value_or(default_events_page),
                                                              max_events_page));
  if (!page)
    return unavailable("read_model_unavailable", page.error().message);
  json::array out;
  for (const auto& e : page->events) {
    auto entry = event_to_log_json(e.event);
    entry["shard"] = e.shard;
    entry["position"] = e.position;
    entry["accountId"] = e.event.account_id();
    out.push_back(std::move(entry));
  }
  return with_offset(json_response(
    200, json::serialize(json::object{{"events", std::move(out)},
                                      {"next", projection::encode_feed_cursor(page->next)}})));
}

http_response api::rebuild_read_model(const std::string& name) const {
  auto* models = ctx_.read_models;
  if (models == nullptr || name != models->name())
    return error_response(404, "read_model_not_found",
                          "this node has no read model named '" + name + "'"
                            + (models ? " (it has '" + models->name() + "')" : " (read-side = off)"));
  const auto a = models->rebuild();
  using outcome = projection::read_model_manager::rebuild_answer::outcome;
  if (a.result == outcome::failed)
    return unavailable("rebuild_failed", a.error);
  json::object body{{"readModel", name},
                    {"rebuild", a.number},
                    {"directory", a.dir.filename().string()},
                    {"eventsApplied", models->progress().events.load()}};
  if (a.result == outcome::running) {
    body["error"] = "rebuild_running";
    body["message"] = "rebuild " + std::to_string(a.number) + " of " + name
                      + " is running on this node; it answers until the switch";
    return json_response(409, json::serialize(body));
  }
  body["status"] = "started";
  body["message"] = "rebuilding " + name + " from the start of every shard's log; the current "
                    "read model answers until the switch (kontor_read_model_rebuilding in /metrics)";
  return json_response(202, json::serialize(body));
}

http_response api::cluster_members() const {
  if (!ctx_.cluster)
    return unavailable("no_cluster", "this node runs without a cluster daemon");
  const auto state = ctx_.cluster();
  auto name_of = [&](const cluster::node_id& id) -> json::value {
    if (const auto* m = state.find(id))
      return json::value(m->name);
    return nullptr;
  };
  json::array members;
  for (const auto& m : state.view.members) {
    members.push_back(json::object{
      {"node", m.name},
      {"address", m.address.empty() ? json::value(nullptr) : json::value(m.address)},
      {"status", cluster::to_string(m.status)},
      {"reachable", state.reaches(m.id)},
      {"age", m.age},
      {"incarnation", m.incarnation == 0 ? std::string{} : std::to_string(m.incarnation)},
      {"roles", json::array{}},
    });
  }
  return json_response(200, json::serialize(json::object{
                              {"self", name_of(state.self)},
                              {"leader", state.leader.empty() ? json::value(nullptr) : name_of(state.leader)},
                              {"version", state.view.version},
                              {"members", std::move(members)},
                            }));
}

namespace {

/// A shard's state as GET /cluster/shards and /accounts/{id}/explain show it. Not yet allocated
/// counts as unavailable (owner null), as API.md has it.
const char* shard_state_name(const sharding::shard_directory::entry& e) {
  return e.moving                          ? "handoff"
         : (e.available && !e.owner.empty()) ? "allocated"
                                             : "unavailable";
}

} // namespace

void api::cluster_shards(responder respond) const {
  if (!ctx_.cluster || !ctx_.shards)
    return respond(unavailable("no_cluster", "this node runs without a cluster daemon"));
  const auto state = ctx_.cluster();
  auto [version, shards] = ctx_.shards->shards();
  // The coordinator runs on the oldest up member (a cluster singleton).
  const cluster::member* oldest = nullptr;
  for (const auto& m : state.view.members)
    if (m.status == cluster::member_status::up && (oldest == nullptr || m.age < oldest->age))
      oldest = &m;
  auto render = [state, version = version, shards = std::move(shards), oldest = oldest ? oldest->name : std::string{},
                 respond](bridge::census census) {
    const auto& entities = census.entities;
    json::array out;
    for (std::size_t s = 0; s < shards.size(); ++s) {
      const auto& e = shards[s];
      const auto* owner = state.find(e.owner);
      json::value owner_name = owner ? json::value(owner->name) : json::value(nullptr);
      const char* shard_state = shard_state_name(e);
      auto n = entities.find(static_cast<shard_id>(s));
      out.push_back(json::object{
        {"shard", s},
        {"owner", owner_name},
        {"state", shard_state},
        {"entities", n == entities.end() ? std::uint64_t{0} : n->second},
      });
    }
    // Per node: what its entities appended since it started (a dashboard's write rate).
    json::array nodes;
    for (const auto& [node, appended] : census.events_appended)
      nodes.push_back(json::object{{"node", node}, {"eventsAppended", appended}});
    respond(json_response(200, json::serialize(json::object{
                                 {"coordinator", oldest.empty() ? json::value(nullptr) : json::value(oldest)},
                                 {"version", version},
                                 {"shards", std::move(out)},
                                 {"nodes", std::move(nodes)},
                               })));
  };
  if (ctx_.entity_counts)
    ctx_.entity_counts(std::move(render));
  else
    render({});
}

namespace {

/// The error code of a read at the owner (events, entity info) that did not succeed.
const char* read_failure_code(entity_answer::status code) {
  using status = entity_answer::status;
  switch (code) {
    case status::timeout:
      return "timeout";
    case status::no_shard:
      return "shard_unavailable";
    case status::overloaded:
      return "overloaded";
    default:
      return "journal_unavailable";
  }
}

/// The HTTP answer to a read at the owner that did not succeed.
http_response read_failure(entity_answer::status code, const std::string& message) {
  return unavailable(read_failure_code(code), message);
}

} // namespace

void api::events_query(std::string id, std::uint64_t from, std::size_t limit,
                       responder respond) const {
  // The account's events are read from the journal of the node that owns its shard.
  ctx_.entities->read_events(
    id, from, static_cast<std::uint32_t>(limit),
    [id, respond](bridge::events_answer a) {
      if (a.code != entity_answer::status::ok)
        return respond(read_failure(a.code, a.message));
      if (a.events.empty() && a.highest == 0)
        return respond(error_response(404, "account_not_found", "Account " + id + " does not exist"));
      json::array out;
      for (const auto& stored : a.events) {
        auto ev = account::parse_event(stored.payload);
        if (!ev)
          return respond(unreadable_event(id, stored.seq));
        out.push_back(event_to_log_json(*ev));
      }
      respond(json_response(200, json::serialize(out)));
    });
}

namespace {

/// An asOf query in progress: reads the account's events page by page from its owner, folding
/// those stamped at or before the instant.
struct as_of_fold : std::enable_shared_from_this<as_of_fold> {
  static constexpr std::uint32_t page = 1000;
  const bridge* entities;
  const account::rules* rules;
  std::string id;
  std::int64_t at_ms;
  responder respond;
  account::state st;

  void next(sequence_nr from) {
    entities->read_events(id, from, page, [self = shared_from_this()](bridge::events_answer a) {
      self->on_page(std::move(a));
    });
  }

  void on_page(bridge::events_answer a) {
    if (a.code != entity_answer::status::ok)
      return respond(read_failure(a.code, a.message));
    for (const auto& stored : a.events) {
      auto ev = account::parse_event(stored.payload);
      if (!ev)
        return respond(unreadable_event(id, stored.seq));
      if (ev->at_ms() > at_ms)
        return finish();
      account::evolve(st, *ev, *rules);
    }
    if (a.events.size() < page)
      return finish();
    next(a.events.back().seq + 1);
  }

  void finish() {
    if (!st.opened)
      return respond(error_response(404, "account_not_found",
                                    "Account " + id + " did not exist at " + format_time(at_ms)));
    auto r = json_response(200, json::serialize(account_to_json(account::view_of(st))));
    r.headers.emplace_back("ETag", "\"" + std::to_string(st.version) + "\"");
    respond(std::move(r));
  }
};

} // namespace

void api::as_of_query(std::string id, std::int64_t at_ms, responder respond) const {
  auto fold = std::make_shared<as_of_fold>();
  fold->entities = ctx_.entities;
  fold->rules = ctx_.rules;
  fold->id = id;
  fold->at_ms = at_ms;
  fold->respond = std::move(respond);
  fold->st = account::initial_state(id);
  fold->next(1);
}

void api::explain(std::string id, responder respond) const {
  // This node's facts first: where its table puts the shard, and its read model's positions.
  const auto shard = shard_of(id, ctx_.number_of_shards);
  const auto state = ctx_.cluster ? ctx_.cluster() : cluster::cluster_state{};
  auto name_of = [&](const std::string& node) -> json::value {
    if (node.empty())
      return nullptr;
    const auto* m = state.find(node);
    return m ? json::value(m->name) : json::value(node);
  };
  json::object here{{"id", id}, {"shard", shard}, {"node", ctx_.node_name}};
  if (ctx_.shards) {
    auto [version, shards] = ctx_.shards->shards();
    const auto entry = shard < shards.size() ? shards[shard] : sharding::shard_directory::entry{};
    here["owner"] = name_of(entry.owner);
    here["ownedHere"] = !entry.owner.empty() && entry.owner == state.self;
    here["tableVersion"] = version;
    here["shardState"] = shard_state_name(entry);
  }
  json::value read_side = nullptr;
  if (ctx_.reads && ctx_.projection) {
    auto applied = ctx_.projection->applied_by_shard();
    json::object rm{{"shardPosition", shard < applied.size() ? applied[shard] : shard_offset{0}}};
    auto view = ctx_.reads->account(id);
    if (!view)
      return respond(unavailable("read_model_unavailable", view.error().message));
    rm["accountVersion"] = *view ? json::value((*view)->version()) : json::value(nullptr);
    read_side = std::move(rm);
  }
  // Then the owner's: whether the account runs there, its last seq and snapshot.
  ctx_.entities->entity_info(
    id, [id, here = std::move(here), read_side = std::move(read_side), state,
         respond](bridge::info_answer a) mutable {
      if (a.code != entity_answer::status::ok) {
        // The owner cannot be asked (down, unreachable, the shard moving): that is the answer
        // an operator needs, so this node's facts come with why the owner's are missing.
        for (const char* key : {"answeredBy", "entity", "version", "snapshotSeq", "ownerShardPosition"})
          here[key] = nullptr;
        here["ownerError"] = json::object{{"error", read_failure_code(a.code)}, {"message", a.message}};
        if (read_side.is_object())
          read_side.as_object()["eventsBehind"] = nullptr;
        here["readModel"] = std::move(read_side);
        return respond(json_response(200, json::serialize(here)));
      }
      if (a.highest == 0)
        return respond(error_response(404, "account_not_found", "Account " + id + " does not exist"));
      here["ownerError"] = nullptr;
      const auto* owner = state.find(a.node);
      here["answeredBy"] = owner ? json::value(owner->name) : json::value(a.node);
      here["entity"] = a.live ? "live" : "passivated";
      here["version"] = a.highest;
      here["snapshotSeq"] = a.snapshot_seq;
      here["ownerShardPosition"] = a.shard_end;
      if (read_side.is_object()) {
        auto& rm = read_side.as_object();
        const auto seen = rm["accountVersion"].is_null() ? std::uint64_t{0}
                                                         : rm["accountVersion"].to_number<std::uint64_t>();
        rm["eventsBehind"] = a.highest > seen ? a.highest - seen : 0;
      }
      here["readModel"] = std::move(read_side);
      respond(json_response(200, json::serialize(here)));
    });
}

void api::policy_admin(const std::string& name, bool retry, responder respond) const {
  const caf::actor* target = nullptr;
  if (ctx_.policies && ctx_.system)
    if (auto i = ctx_.policies->find(name); i != ctx_.policies->end())
      target = &i->second;
  if (target == nullptr)
    return respond(error_response(404, "policy_not_found",
                                  "no policy " + name + " runs in this cluster (is it configured?)"));
  constexpr auto timeout = std::chrono::seconds(5);
  auto no_answer = [name] {
    return unavailable("policy_unavailable", "the policy " + name + " did not answer (starting or moving?)");
  };
  if (retry) {
    return policy::retry_dead_letters(
      *ctx_.system, *target, timeout, [respond, name, no_answer](std::optional<std::uint64_t> n) {
        if (!n)
          return respond(no_answer());
        respond(json_response(200, json::serialize(json::object{{"policy", name}, {"retried", *n}})));
      });
  }
  policy::ask_dead_letters(
    *ctx_.system, *target, timeout,
    [respond, no_answer](std::optional<std::vector<policy::dead_letter>> letters) {
      if (!letters)
        return respond(no_answer());
      json::array out;
      for (const auto& d : *letters) {
        json::error_code ec;
        auto payload = json::parse(d.payload, ec);
        out.push_back(json::object{{"key", d.key},
                                   {"shard", d.shard},
                                   {"position", d.position},
                                   {"attempts", d.attempts},
                                   {"reason", d.reason},
                                   {"failedAt", d.failed_at},
                                   {"payload", ec ? json::value(d.payload) : payload}});
      }
      respond(json_response(200, json::serialize(out)));
    });
}

} // namespace kontor::gateway

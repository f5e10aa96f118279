#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <span>
#include <string>
#include <string_view>

#include "domain/account/account.hpp"
#include "gateway/account_projection.hpp"
#include "gateway/auth.hpp"
#include "gateway/bridge.hpp"
#include "gateway/email_change.hpp"
#include "gateway/http_types.hpp"
#include "runtime/cluster/member.hpp"
#include "runtime/sharding/shard_region.hpp"
#include "runtime/core/metrics.hpp"
#include "runtime/persistence/journal.hpp"
#include "runtime/projection/read_model.hpp"
#include "runtime/projection/read_model_manager.hpp"

#include <caf/actor.hpp>
#include <caf/fwd.hpp>

namespace kontor::gateway {

/// One route the API serves: a method and a path template ("/accounts/{id}"). Every GET route
/// answers HEAD too.
struct route_spec {
  std::string_view method;
  std::string_view path;
};

/// Every route the API serves, in one table: metrics label requests by it, and the OpenAPI
/// document is checked against it (tests/component/openapi_test.cpp).
std::span<const route_spec> served_routes();

/// The OpenAPI 3.0 document of the API: gateway/openapi.json, embedded at build time.
std::string_view openapi_document();
/// The dashboard page (gateway/dashboard.html, compiled in).
std::string_view dashboard_page();

/// What the API needs from the node. Everything is owned by the node and outlives the API.
struct api_context {
  const bridge* entities = nullptr;            ///< commands, consistent reads, audit log, asOf
  const account::rules* rules = nullptr;
  const std::atomic<bool>* ready = nullptr;    ///< readiness of the node
  const account_queries* reads = nullptr;      ///< the read model (eventually consistent)
  const projection::read_model_stats* projection = nullptr; ///< events it has applied
  metrics_registry* metrics = nullptr;         ///< GET /metrics, request counters
  std::string node_name;
  std::uint32_t number_of_shards = 64;          ///< for the feed's cursors
  /// This node's view of the cluster (GET /cluster/members; readiness). Unset: no cluster.
  std::function<cluster::cluster_state()> cluster;
  /// Where the shards live as this node knows it (GET /cluster/shards; readiness).
  const sharding::shard_directory* shards = nullptr;
  /// Live entities per shard of every reachable node (GET /cluster/shards), asynchronously.
  std::function<void(std::function<void(bridge::census)>)> entity_counts;
  const authorizer* auth = nullptr; ///< bearer tokens (unset, or none configured: open)
  /// This node's read model, for POST /admin/read-models/{name}/rebuild (unset: none).
  projection::read_model_manager* read_models = nullptr;
  caf::actor_system* system = nullptr; ///< to ask the policies (/admin/policies/...)
  const std::map<std::string, caf::actor>* policies = nullptr; ///< running policies by name
  const email_settings* email = nullptr; ///< e-mail changes (unset: the defaults)
};

/// The HTTP API of API.md: maps each route to a command or query and each answer to JSON with
/// the right status. Stateless; callable concurrently from every I/O thread.
class api {
public:
  explicit api(api_context ctx) : ctx_(std::move(ctx)) {}

  /// Handles one request; answers through `respond` (maybe later, from another thread).
  void operator()(http_request&& req, responder respond) const;

private:
  /// GET /cluster/members.
  http_response cluster_members() const;
  /// GET /cluster/shards.
  void cluster_shards(responder respond) const;
  /// GET /accounts/{id}/events: the audit log, read from the journal on the query pool.
  void events_query(std::string id, std::uint64_t from, std::size_t limit, responder respond) const;
  /// GET /accounts/{id}?asOf=: the account rebuilt from its events up to `at_ms`.
  void as_of_query(std::string id, std::int64_t at_ms, responder respond) const;
  /// GET /accounts/{id}/explain: where the account lives and why, its owner's facts about it
  /// and how far this node's read model is.
  void explain(std::string id, responder respond) const;
  /// The read-side routes: GET /accounts/{id}, /stats/countries, /events.
  http_response read_model_query(const std::string& what, std::string_view id,
                                 std::string_view query) const;
  /// GET /admin/policies/{name}/dead-letters, POST .../dead-letters/retry.
  void policy_admin(const std::string& name, bool retry, responder respond) const;

  /// PUT /accounts/{id}/email: the change through the address's reservation (email_change.hpp).
  void change_email(std::string id, const http_request& req, responder respond) const;
  /// GET /admin/emails/{address}: who holds or claims the address.
  void email_reservation(const std::string& address, responder respond) const;

  /// POST /admin/read-models/{name}/rebuild.
  http_response rebuild_read_model(const std::string& name) const;

  api_context ctx_;
};

} // namespace kontor::gateway

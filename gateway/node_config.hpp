#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "runtime/core/expected.hpp"

namespace kontor::gateway {

/// Every setting of a node. Defaults here equal config/kontor.conf (a test keeps them equal).
struct node_config {
  // node
  std::string node_name = "kontor-1";
  std::string data_dir = "./data";
  // http
  std::string http_address = "0.0.0.0";
  unsigned short http_port = 8080;
  unsigned http_threads = 1;
  std::size_t http_body_limit = 64 * 1024;
  std::chrono::milliseconds http_read_timeout{30'000};
  std::chrono::milliseconds command_timeout{5'000};
  // sharding and persistence
  std::uint32_t number_of_shards = 64;
  std::size_t snapshot_every = 1000;
  std::chrono::milliseconds passivate_after{120'000};
  std::size_t journal_initial_map_mb = 1024;
  std::size_t journal_max_batch = 4096;
  std::size_t journal_preallocate_mb = 64;
  std::chrono::milliseconds journal_index_interval{1000};
  // read side
  bool read_side = true;
  std::size_t projection_batch = 1000;
  std::chrono::milliseconds projection_idle_min{2};
  std::chrono::milliseconds projection_idle_max{50};
  std::chrono::milliseconds projection_min_interval{20};
  // actors
  unsigned scheduler_threads = 0; ///< 0: one per core
  std::string scheduler_policy = "sharing"; ///< CAF scheduler: sharing or stealing
  std::string log_format = "text";          ///< text, or json (one object per line)
  // domain
  std::int64_t max_limit = 1'000'000'000'000;
  std::int64_t max_amount = 1'000'000'000'000;
  std::size_t tx_window = 1024;
  std::uint32_t deposit_event_version = 2; ///< 1 during a rolling update from a build before v2
  // cluster
  unsigned short cluster_port = 0;                 ///< 0: a single node, no cluster port
  std::string cluster_bind_address = "0.0.0.0";
  std::string cluster_advertise_address;           ///< empty: the bind address, or the host name
  std::vector<std::string> seeds;
  std::string cluster_secret;
  std::string cluster_tls_cert_file; ///< cluster port TLS: this node's PEM certificate chain
  std::string cluster_tls_key_file;  ///< its PEM private key
  std::string cluster_tls_ca_file;   ///< the cluster's CA (PEM): peers need a certificate it signed
  std::string tls_cert_file; ///< HTTPS: PEM certificate chain (with tls_key_file)
  std::string tls_key_file;  ///< HTTPS: PEM private key
  std::string api_tokens_file; ///< bearer tokens and their scopes (empty: the API is open)
  std::vector<std::string> auth_open_routes{"/health", "/ready", "/metrics"}; ///< GET without a token
  std::chrono::milliseconds seed_timeout{5'000};
  std::chrono::milliseconds heartbeat_interval{200};
  double failure_threshold = 8.0;
  std::chrono::milliseconds acceptable_heartbeat_pause{800};
  std::chrono::milliseconds stable_after{3'000};
  std::size_t min_members = 1;
  std::size_t required_contact_points = 0; ///< seed addresses needed to form a new cluster
  std::chrono::milliseconds rebalance_interval{2'000};
  std::size_t max_simultaneous_rebalance = 4;
  std::chrono::milliseconds route_timeout{3'000};
  std::size_t route_buffer = 10'000;
  std::size_t max_entity_queue = 128; ///< commands one account may have waiting (0: unbounded)
  std::size_t max_shard_queue = 4096; ///< commands one shard's accounts may have waiting
  // policies
  std::string thank_you_url;                 ///< the thank-you webhook (empty: policy off)
  std::int64_t thank_you_min_amount = 1000;  ///< deposits of at least this are thanked for
  std::string bonus_account;                 ///< the CEO bonus account (empty: policy off)
  std::int64_t bonus_rate = 10;              ///< bonus per 1000 of a deposit (10: 1 %)
  std::int64_t bonus_max_balance = 0;        ///< cap on the bonus account's balance (0: none)
  std::chrono::milliseconds policy_retry_initial{200};  ///< first backoff after a failed attempt
  std::chrono::milliseconds policy_retry_max{30'000};   ///< backoff cap (it doubles up to this)
  std::uint32_t policy_max_attempts = 60;    ///< attempts before an effect is a dead letter
  std::chrono::milliseconds policy_attempt_timeout{5'000}; ///< per attempt (connect to answer)
  std::chrono::milliseconds email_reservation_timeout{10'000}; ///< an unconfirmed e-mail claim's life
};

/// What `parse_node_config` can end with besides a config.
struct config_exit {
  int code = 0;        ///< 0: --help was printed; 2: bad input
  std::string text;    ///< help text or the error message
};

/// Parses flags (highest precedence), KONTOR_* environment variables, then the file given by
/// --config (if any), over the built-in defaults. Bad values are errors, never silently dropped.
kontor::expected<node_config, config_exit> parse_node_config(int argc, const char* const* argv,
                                                             const char* const* envp);

} // namespace kontor::gateway

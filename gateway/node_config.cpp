#include "gateway/node_config.hpp"

#include <charconv>
#include <fstream>
#include <functional>
#include <limits>
#include <sstream>

#include <boost/make_shared.hpp>
#include <boost/program_options.hpp>

namespace po = boost::program_options;

namespace kontor::gateway {

namespace {

/// Thrown inside this file only; parse_node_config turns it into a config_exit.
struct bad_value {
  std::string message;
};

std::int64_t to_int(const std::string& name, const std::string& text, std::int64_t lo,
                    std::int64_t hi) {
  std::int64_t v = 0;
  auto* end = text.data() + text.size();
  auto [p, ec] = std::from_chars(text.data(), end, v);
  if (ec != std::errc{} || p != end || v < lo || v > hi)
    throw bad_value{name + ": '" + text + "' is not an integer in " + std::to_string(lo) + ".."
                    + std::to_string(hi)};
  return v;
}

/// "250ms", "30s", "2m", "1h".
std::chrono::milliseconds to_duration(const std::string& name, const std::string& text) {
  auto digits = text.find_first_not_of("0123456789");
  auto fail = [&]() -> bad_value {
    return {name + ": '" + text + "' is not a duration like 250ms, 30s, 2m or 1h"};
  };
  if (digits == 0 || digits == std::string::npos)
    throw fail();
  auto n = to_int(name, text.substr(0, digits), 0, 1'000'000'000);
  auto unit = text.substr(digits);
  if (unit == "ms")
    return std::chrono::milliseconds(n);
  if (unit == "s")
    return std::chrono::seconds(n);
  if (unit == "m")
    return std::chrono::minutes(n);
  if (unit == "h")
    return std::chrono::hours(n);
  throw fail();
}

/// "host:port" items separated by commas.
std::vector<std::string> to_seeds(const std::string& name, const std::string& text) {
  std::vector<std::string> out;
  std::stringstream in(text);
  std::string item;
  while (std::getline(in, item, ',')) {
    auto colon = item.rfind(':');
    if (colon == std::string::npos || colon == 0)
      throw bad_value{name + ": '" + item + "' is not host:port"};
    to_int(name, item.substr(colon + 1), 1, 65535);
    out.push_back(item);
  }
  return out;
}

/// One setting: its name (flag, config key, KONTOR_ variable), default, help, and where it goes.
struct option {
  const char* name;
  std::string default_text;
  const char* help;
  std::function<void(node_config&, const std::string& name, const std::string& text)> apply;
};

std::string ms_text(std::chrono::milliseconds d) {
  if (d.count() % 1000 == 0)
    return std::to_string(d.count() / 1000) + "s";
  return std::to_string(d.count()) + "ms";
}

template <class T>
auto int_setter(T node_config::*field, std::int64_t lo, std::int64_t hi) {
  return [=](node_config& c, const std::string& n, const std::string& t) {
    c.*field = static_cast<T>(to_int(n, t, lo, hi));
  };
}

auto duration_setter(std::chrono::milliseconds node_config::*field, std::int64_t min_ms) {
  return [=](node_config& c, const std::string& n, const std::string& t) {
    auto d = to_duration(n, t);
    if (d.count() < min_ms)
      throw bad_value{n + ": '" + t + "' is shorter than " + std::to_string(min_ms) + "ms"};
    c.*field = d;
  };
}

auto string_setter(std::string node_config::*field) {
  return [=](node_config& c, const std::string& n, const std::string& t) {
    if (t.empty())
      throw bad_value{n + ": must not be empty"};
    c.*field = t;
  };
}

std::vector<option> options() {
  const node_config d;
  constexpr std::int64_t max_money = 4'000'000'000'000'000'000;
  return {
    {"node-name", d.node_name, "name of this node in logs and cluster views",
     string_setter(&node_config::node_name)},
    {"data-dir", d.data_dir, "directory of the journal (LMDB); created if missing",
     string_setter(&node_config::data_dir)},
    {"http-address", d.http_address, "address the HTTP API listens on",
     string_setter(&node_config::http_address)},
    {"http-port", std::to_string(d.http_port), "HTTP API port (0: any free port)",
     int_setter(&node_config::http_port, 0, 65535)},
    {"http-threads", std::to_string(d.http_threads), "HTTP I/O threads",
     int_setter(&node_config::http_threads, 1, 64)},
    {"http-body-limit", std::to_string(d.http_body_limit),
     "largest accepted request body in bytes (larger: 413)",
     int_setter(&node_config::http_body_limit, 1, 64 * 1024 * 1024)},
    {"http-read-timeout", ms_text(d.http_read_timeout),
     "time allowed to read one request, including keep-alive idle time",
     duration_setter(&node_config::http_read_timeout, 100)},
    {"command-timeout", ms_text(d.command_timeout),
     "how long the gateway waits for an entity's answer before 503 (outcome unknown)",
     duration_setter(&node_config::command_timeout, 10)},
    {"number-of-shards", std::to_string(d.number_of_shards),
     "shards per cluster; fixed for the life of the data directory",
     int_setter(&node_config::number_of_shards, 1, 4096)},
    {"snapshot-every", std::to_string(d.snapshot_every),
     "events between two snapshots of an entity (0: never)",
     int_setter(&node_config::snapshot_every, 0, 1'000'000'000)},
    {"passivate-after", ms_text(d.passivate_after),
     "idle time after which an entity is stopped (it restarts on its next command)",
     duration_setter(&node_config::passivate_after, 10)},
    {"journal-initial-map-mb", std::to_string(d.journal_initial_map_mb),
     "initial LMDB map size in MiB (grows on demand)",
     int_setter(&node_config::journal_initial_map_mb, 1, 1 << 24)},
    {"journal-max-batch", std::to_string(d.journal_max_batch),
     "most appends in one group commit",
     int_setter(&node_config::journal_max_batch, 1, 1'000'000)},
    {"journal-preallocate-mb", std::to_string(d.journal_preallocate_mb),
     "MiB of zero-filled file kept ahead of the journal's used end (0: off); commits then write "
     "no file-size metadata, which halves their latency on ext4",
     int_setter(&node_config::journal_preallocate_mb, 0, 1 << 20)},
    {"read-side", d.read_side ? "on" : "off",
     "run the poller and read models (off: reads go to the accounts themselves)",
     [](node_config& c, const std::string& n, const std::string& t) {
       if (t != "on" && t != "off")
         throw bad_value{n + ": '" + t + "' is neither on nor off"};
       c.read_side = t == "on";
     }},
    {"journal-index-interval", ms_text(d.journal_index_interval),
     "how often the journal folds new events into its per-account index (newer ones are in memory)",
     duration_setter(&node_config::journal_index_interval, 0)},
    {"projection-batch", std::to_string(d.projection_batch),
     "events per batch the poller delivers to the read models",
     int_setter(&node_config::projection_batch, 1, 100000)},
    {"projection-idle-min", ms_text(d.projection_idle_min),
     "first wait of the poller after it found nothing new (doubles while idle)",
     duration_setter(&node_config::projection_idle_min, 1)},
    {"projection-idle-max", ms_text(d.projection_idle_max),
     "longest wait of an idle poller: bounds the lag of the first event after a quiet spell",
     duration_setter(&node_config::projection_idle_max, 1)},
    {"projection-min-interval", ms_text(d.projection_min_interval),
     "shortest time between two batches to one read model (under load batches grow instead)",
     duration_setter(&node_config::projection_min_interval, 0)},
    {"scheduler-threads", std::to_string(d.scheduler_threads),
     "actor scheduler threads (0: one per core)",
     int_setter(&node_config::scheduler_threads, 0, 256)},
    {"scheduler-policy", d.scheduler_policy,
     "actor scheduler: stealing (work-stealing, workers poll) or sharing (one queue)",
     [](node_config& c, const std::string& n, const std::string& t) {
       if (t != "stealing" && t != "sharing")
         throw bad_value{n + ": '" + t + "' is neither stealing nor sharing"};
       c.scheduler_policy = t;
     }},
    {"log-format", d.log_format,
     "log lines: text, or json (one object per line: time, level, node, component, message and, "
     "for commands, account and request_id)",
     [](node_config& c, const std::string& n, const std::string& t) {
       if (t != "text" && t != "json")
         throw bad_value{n + ": '" + t + "' is neither text nor json"};
       c.log_format = t;
     }},
    {"max-limit", std::to_string(d.max_limit), "MAX_LIMIT: highest credit limit, minor units",
     int_setter(&node_config::max_limit, 0, max_money)},
    {"max-amount", std::to_string(d.max_amount), "MAX_AMOUNT: highest transaction amount",
     int_setter(&node_config::max_amount, 1, max_money)},
    {"tx-window", std::to_string(d.tx_window),
     "accepted commands (txIds, Idempotency-Keys) remembered per account",
     int_setter(&node_config::tx_window, 1, 1'000'000)},
    {"deposit-event-version", std::to_string(d.deposit_event_version),
     "schema version of new MoneyDeposited events: 2, or 1 while nodes of a build before v2 "
     "still run",
     int_setter(&node_config::deposit_event_version, 1, 2)},
    {"cluster-port", std::to_string(d.cluster_port), "cluster port (0: a single node, no cluster)",
     int_setter(&node_config::cluster_port, 0, 65535)},
    {"cluster-bind-address", d.cluster_bind_address, "address the cluster port listens on",
     string_setter(&node_config::cluster_bind_address)},
    {"cluster-advertise-address", d.cluster_advertise_address,
     "host name or address other nodes reach this one at (empty: the bind address, or this "
     "host's name when binding to all)",
     [](node_config& c, const std::string&, const std::string& t) { c.cluster_advertise_address = t; }},
    {"seeds", "", "seed nodes host:port,... (a host may resolve to several addresses)",
     [](node_config& c, const std::string& n, const std::string& t) {
       c.seeds = t.empty() ? std::vector<std::string>{} : to_seeds(n, t);
     }},
    {"cluster-secret", "", "shared secret: a node with another one is refused",
     [](node_config& c, const std::string&, const std::string& t) { c.cluster_secret = t; }},
    {"cluster-tls-cert-file", "",
     "cluster port over TLS 1.3: this node's PEM certificate chain, signed by cluster-tls-ca-file "
     "(set all three cluster-tls-* files or none; none: plaintext)",
     [](node_config& c, const std::string&, const std::string& t) { c.cluster_tls_cert_file = t; }},
    {"cluster-tls-key-file", "", "cluster port over TLS: the PEM private key of cluster-tls-cert-file",
     [](node_config& c, const std::string&, const std::string& t) { c.cluster_tls_key_file = t; }},
    {"cluster-tls-ca-file", "",
     "cluster port over TLS: the cluster's CA (PEM); a peer is admitted, and connected to, only "
     "with a certificate this CA signed",
     [](node_config& c, const std::string&, const std::string& t) { c.cluster_tls_ca_file = t; }},
    {"tls-cert-file", "",
     "HTTPS: the server's PEM certificate chain (with tls-key-file); empty: plain HTTP",
     [](node_config& c, const std::string&, const std::string& t) { c.tls_cert_file = t; }},
    {"tls-key-file", "", "HTTPS: the PEM private key of tls-cert-file",
     [](node_config& c, const std::string&, const std::string& t) { c.tls_key_file = t; }},
    {"api-tokens-file", "",
     "bearer tokens of the HTTP API, one per line with its scope: read, write (includes read) or "
     "admin (everything); empty: no tokens, the API is open",
     [](node_config& c, const std::string&, const std::string& t) { c.api_tokens_file = t; }},
    {"auth-open-routes", "/health,/ready,/metrics",
     "paths anyone may GET without a token when tokens are configured (comma-separated)",
     [](node_config& c, const std::string& n, const std::string& t) {
       c.auth_open_routes.clear();
       std::size_t pos = 0;
       while (pos <= t.size() && !t.empty()) {
         auto comma = t.find(',', pos);
         auto route = t.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
         if (route.empty() || route[0] != '/')
           throw bad_value{n + ": '" + route + "' is not a path (starts with /)"};
         c.auth_open_routes.push_back(route);
         if (comma == std::string::npos)
           break;
         pos = comma + 1;
       }
     }},
    {"seed-timeout", ms_text(d.seed_timeout),
     "the first seed forms a new cluster when no other seed answered for this long",
     duration_setter(&node_config::seed_timeout, 100)},
    {"heartbeat-interval", ms_text(d.heartbeat_interval), "heartbeats to every member this often",
     duration_setter(&node_config::heartbeat_interval, 10)},
    {"failure-threshold", "8", "phi above which a member is unreachable",
     [](node_config& c, const std::string& n, const std::string& t) {
       c.failure_threshold = static_cast<double>(to_int(n, t, 1, 100));
     }},
    {"acceptable-heartbeat-pause", ms_text(d.acceptable_heartbeat_pause),
     "heartbeat pause tolerated before phi rises (GC-free C++ needs little)",
     duration_setter(&node_config::acceptable_heartbeat_pause, 0)},
    {"stable-after", ms_text(d.stable_after),
     "unreachable members are downed (or this node exits, on the minority side) after the "
     "reachability view was stable this long",
     duration_setter(&node_config::stable_after, 100)},
    {"required-contact-points", std::to_string(d.required_contact_points),
     "the first seed forms a new cluster only when the seeds expand to at least this many "
     "addresses, its own included (Kubernetes: the replica count; 0: no such condition)",
     int_setter(&node_config::required_contact_points, 0, 1000)},
    {"min-members", std::to_string(d.min_members),
     "no shard is allocated before this many members are up (a new cluster then spreads them "
     "at once instead of moving them as nodes join)",
     int_setter(&node_config::min_members, 1, 1000)},
    {"rebalance-interval", ms_text(d.rebalance_interval),
     "how often the coordinator moves shards to even out their spread",
     duration_setter(&node_config::rebalance_interval, 100)},
    {"max-simultaneous-rebalance", std::to_string(d.max_simultaneous_rebalance),
     "most shards moving at once",
     int_setter(&node_config::max_simultaneous_rebalance, 1, 4096)},
    {"route-timeout", ms_text(d.route_timeout),
     "longest a request waits for its shard (moving, owner unreachable) before 503",
     duration_setter(&node_config::route_timeout, 10)},
    {"route-buffer", std::to_string(d.route_buffer),
     "requests a node holds while their shards move or the coordinator moves (more: 503)",
     int_setter(&node_config::route_buffer, 1, 10'000'000)},
    {"max-entity-queue", std::to_string(d.max_entity_queue),
     "commands one account may have waiting, the one it handles included; one more gets 503 "
     "overloaded at once (0: unbounded)",
     int_setter(&node_config::max_entity_queue, 0, 10'000'000)},
    {"max-shard-queue", std::to_string(d.max_shard_queue),
     "commands the accounts of one shard may have waiting together; one more gets 503 overloaded "
     "at once (0: unbounded)",
     int_setter(&node_config::max_shard_queue, 0, 10'000'000)},
    {"thank-you-webhook-url", "",
     "http://host[:port]/path the thank-you policy POSTs a notification to for every deposit of "
     "at least thank-you-min-amount, with Idempotency-Key: <event id> (empty: the policy is off)",
     [](node_config& c, const std::string& n, const std::string& t) {
       if (!t.empty() && t.rfind("http://", 0) != 0)
         throw bad_value{n + ": '" + t + "' is not an http:// URL"};
       c.thank_you_url = t;
     }},
    {"thank-you-min-amount", std::to_string(d.thank_you_min_amount),
     "smallest deposit (in minor units) the thank-you policy notifies about",
     int_setter(&node_config::thank_you_min_amount, 1, max_money)},
    {"bonus-account", "",
     "the CEO bonus account: every deposit into another account deposits bonus-rate of it here "
     "(source \"bonus\"; empty: the policy is off)",
     [](node_config& c, const std::string&, const std::string& t) { c.bonus_account = t; }},
    {"bonus-rate", std::to_string(d.bonus_rate),
     "the CEO bonus per 1000 of a deposit (10 = 1 %), rounded down to minor units",
     int_setter(&node_config::bonus_rate, 1, 1000)},
    {"bonus-max-balance", std::to_string(d.bonus_max_balance),
     "the cap on the bonus account's balance: a bonus credits only up to it (0: no cap)",
     int_setter(&node_config::bonus_max_balance, 0, max_money)},
    {"policy-retry-initial", ms_text(d.policy_retry_initial),
     "a policy's first wait after a failed attempt (doubles up to policy-retry-max)",
     duration_setter(&node_config::policy_retry_initial, 1)},
    {"policy-retry-max", ms_text(d.policy_retry_max),
     "a policy's longest wait between two attempts of one effect",
     duration_setter(&node_config::policy_retry_max, 1)},
    {"policy-max-attempts", std::to_string(d.policy_max_attempts),
     "attempts of one effect before it becomes a dead letter (a 4xx answer makes one at once)",
     int_setter(&node_config::policy_max_attempts, 1, 1'000'000)},
    {"policy-attempt-timeout", ms_text(d.policy_attempt_timeout),
     "longest one attempt of a policy may take (connect, send, answer); past it, it is retried",
     duration_setter(&node_config::policy_attempt_timeout, 1)},
    {"email-reservation-timeout", ms_text(d.email_reservation_timeout),
     "how long a claim holds an e-mail address for an account that has not recorded it yet; "
     "then the e-mail policy releases it (a gateway died mid-change)",
     duration_setter(&node_config::email_reservation_timeout, 1000)},
  };
}

std::string env_to_option(const std::string& var) {
  std::string out;
  for (char ch : var.substr(7))
    out += ch == '_' ? '-' : static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  return out;
}

} // namespace

kontor::expected<node_config, config_exit> parse_node_config(int argc, const char* const* argv,
                                                             const char* const* envp) {
  auto table = options();
  po::options_description desc("kontor-node: a Kontor node (HTTP API, shards, journal)\n\n"
                               "Every setting is also read from the --config file (name = value)\n"
                               "and from the environment as KONTOR_<NAME> (e.g. KONTOR_HTTP_PORT);\n"
                               "flags win over the environment, which wins over the file.\n\nOptions");
  desc.add_options()("help,h", "print this help and exit")(
    "config", po::value<std::string>(), "settings file (see config/kontor.conf)");
  for (const auto& o : table) {
    auto help = std::string(o.help) + (o.default_text.empty() ? "" : " [" + o.default_text + "]");
    desc.add(boost::make_shared<po::option_description>(o.name, po::value<std::string>(),
                                                        help.c_str()));
  }
  try {
    po::variables_map vm;
    po::store(po::command_line_parser(argc, argv).options(desc).run(), vm);
    if (vm.count("help")) {
      std::ostringstream out;
      out << desc;
      return config_exit{0, out.str()};
    }
    // Only KONTOR_* names that are settings; Kubernetes also injects KONTOR_SERVICE_HOST & co.
    po::options_description env_desc;
    for (const auto& o : table)
      env_desc.add(boost::make_shared<po::option_description>(o.name, po::value<std::string>(), ""));
    auto known = [&](const std::string& var) -> std::string {
      if (var.rfind("KONTOR_", 0) != 0)
        return {};
      auto name = env_to_option(var);
      return env_desc.find_nothrow(name, false) ? name : std::string{};
    };
    if (envp) {
      // parse_environment reads ::environ; feed it the given envp instead.
      std::vector<std::string> pairs;
      for (auto p = envp; *p; ++p)
        pairs.emplace_back(*p);
      po::parsed_options env_parsed(&env_desc);
      for (auto& kv : pairs) {
        auto eq = kv.find('=');
        if (eq == std::string::npos)
          continue;
        auto name = known(kv.substr(0, eq));
        if (name.empty())
          continue;
        po::option opt;
        opt.string_key = name;
        opt.value.push_back(kv.substr(eq + 1));
        env_parsed.options.push_back(opt);
      }
      po::store(env_parsed, vm);
    }
    if (vm.count("config")) {
      auto path = vm["config"].as<std::string>();
      std::ifstream in(path);
      if (!in)
        return config_exit{2, "--config: cannot read '" + path + "'"};
      po::store(po::parse_config_file(in, env_desc, false), vm);
    }
    node_config cfg;
    for (const auto& o : table) {
      std::string text = o.default_text;
      if (vm.count(o.name))
        text = vm[o.name].as<std::string>();
      o.apply(cfg, o.name, text);
    }
    return cfg;
  } catch (const bad_value& e) {
    return config_exit{2, e.message};
  } catch (const po::error& e) {
    return config_exit{2, e.what()};
  }
}

} // namespace kontor::gateway

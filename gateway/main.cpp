// kontor-node: wires config → journal → actor system and shard region → HTTP gateway, then runs
// until SIGTERM or SIGINT and shuts down in the reverse order.

#include <csignal>
#include <mutex>
#include <cstdio>
#include <iostream>
#include <map>
#include <memory>
#include <thread>

#include <caf/all.hpp>
#include <caf/io/all.hpp>

#include "domain/account/account.hpp"
#include "gateway/account_entity.hpp"
#include "gateway/account_projection.hpp"
#include "gateway/api.hpp"
#include "gateway/bonus_policy.hpp"
#include "gateway/email_entity.hpp"
#include "gateway/email_policy.hpp"
#include "gateway/bridge.hpp"
#include "gateway/http_server.hpp"
#include "gateway/node_config.hpp"
#include "gateway/thank_you_policy.hpp"
#include "runtime/cluster/cluster.hpp"
#include "runtime/core/log.hpp"
#include "runtime/core/metrics.hpp"
#include "runtime/persistence/lmdb_journal.hpp"
#include "runtime/policy/checkpoint.hpp"
#include "runtime/policy/policy.hpp"
#include "runtime/projection/poller.hpp"
#include "runtime/projection/read_model.hpp"
#include "runtime/projection/read_model_manager.hpp"
#include "runtime/message_types.hpp"
#include "runtime/sharding/allocation.hpp"
#include "runtime/sharding/coordinator.hpp"
#include "runtime/sharding/shard_region.hpp"
#include "runtime/singleton/singleton_manager.hpp"
#include "runtime/stream/log_server.hpp"

using namespace kontor;

namespace {

constexpr const char* component = "node";

/// Set by the cluster daemon when the cluster ends this node (then main wakes on SIGUSR1).
std::atomic<int> cluster_exit_code{-1};
std::mutex cluster_exit_mutex;
std::string cluster_exit_reason;

/// Latency buckets in seconds, 0.1 ms to 10 s.
std::vector<double> latency_buckets() {
  return {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10};
}

/// Graceful leave: the node becomes leaving (its shards and singletons move away), then exiting;
/// returns when the cluster let it go, or after a bound (then it stops anyway).
void leave_cluster(cluster::cluster& node, const sharding::shard_directory& directory,
                   const singleton::singleton_manager& singletons, sigset_t& signals) {
  using namespace std::chrono;
  node.leave();
  const auto deadline = steady_clock::now() + seconds(30);
  auto wait_for = [&](auto done, milliseconds step) {
    while (!done() && steady_clock::now() < deadline) {
      timespec ts{0, static_cast<long>(duration_cast<nanoseconds>(step).count())};
      int sig = sigtimedwait(&signals, nullptr, &ts);
      if (sig == SIGUSR1 && cluster_exit_code.load() >= 0)
        return;
    }
  };
  wait_for([&] {
             auto s = node.state();
             const auto* me = s.find(s.self);
             return !s.joined || me == nullptr || me->status != cluster::member_status::up;
           },
           milliseconds(20));
  // The coordinator moves this node's shards away and the singletons hand over.
  wait_for([&] {
             if (singletons.running_here() != 0)
               return false;
             // With no other up member reachable, nobody could take the shards: they stay
             // allocated to this node and serve again when it returns.
             auto state = node.state();
             bool others = false;
             for (const auto& m : state.view.members)
               others = others
                        || (m.id != state.self && m.status == cluster::member_status::up
                            && state.reaches(m.id));
             if (!others)
               return true;
             auto [version, shards] = directory.shards();
             for (const auto& s : shards)
               if (s.owner == node.self())
                 return false;
             return true;
           },
           milliseconds(20));
  node.ready_to_exit();
  wait_for([&] { return cluster_exit_code.load() >= 0; }, milliseconds(20));
  if (cluster_exit_code.load() < 0)
    log(log_level::warn, component, "the cluster did not confirm the leave in time; stopping anyway");
}

/// Registers the metrics of policy `name` (so the series exist when it is off) and returns its
/// statistics, which outlive its instances on this node (it may start, move away and come back):
/// counters stay monotonic.
std::shared_ptr<policy::policy_stats> policy_metrics(const std::string& name, metrics_registry& metrics) {
  auto stats = std::make_shared<policy::policy_stats>();
  const metric_labels labels{{"policy", name}};
  metrics.gauge("kontor_policy_lag_events",
                "events a policy running on this node has not carried out yet (0 where it does not run)",
                labels, [stats] { return stats->running ? static_cast<double>(stats->lag()) : 0.0; });
  metrics.gauge("kontor_policy_dead_letters",
                "effects a policy running on this node gave up on and keeps (0 where it does not run)",
                labels,
                [stats] { return stats->running ? static_cast<double>(stats->dead_letters.load()) : 0.0; });
  for (const auto& [outcome, count] : {std::pair{"delivered", &stats->delivered},
                                       std::pair{"rejected", &stats->rejected},
                                       std::pair{"gave_up", &stats->gave_up}})
    metrics.counter_from("kontor_policy_deliveries_total",
                         "effects a policy finished on this node, by outcome (rejected and gave_up "
                         "became dead letters)",
                         {{"policy", name}, {"outcome", outcome}},
                         [count] { return static_cast<double>(count->load()); });
  metrics.counter_from("kontor_policy_retries_total", "failed attempts a policy retried on this node",
                       labels, [stats] { return static_cast<double>(stats->retries.load()); });
  metrics.counter_from("kontor_policy_checkpoints_total",
                       "checkpoints of a policy's progress the cluster acknowledged from this node",
                       labels, [stats] { return static_cast<double>(stats->checkpoints.load()); });
  metrics.gauge("kontor_policy_checkpoint_behind",
                "effects a policy running on this node finished that its last checkpoint does not cover "
                "yet (a move now would carry them out again; 0 where it does not run)",
                labels, [stats] {
                  return stats->running ? static_cast<double>(stats->finished() - stats->checkpointed.load()) : 0.0;
                });
  return stats;
}

/// Starts policy `handler` as the cluster singleton policy-<name> (into `policies`).
void start_policy(const gateway::node_config& cfg, singleton::singleton_manager& singletons,
                  const caf::actor& poller, const caf::actor& region,
                  std::shared_ptr<policy::policy_handler> handler,
                  std::shared_ptr<policy::policy_stats> stats, std::map<std::string, caf::actor>& policies) {
  auto name = handler->name();
  policy::policy_settings pol;
  pol.dir = std::filesystem::path(cfg.data_dir) / ("policy-" + name);
  pol.number_of_shards = cfg.number_of_shards;
  pol.handler = std::move(handler);
  pol.retry = {cfg.policy_retry_initial, cfg.policy_retry_max, cfg.policy_max_attempts};
  pol.stats = std::move(stats);
  pol.poller = poller;
  pol.region = region;
  policies[name] = singletons.start("policy-" + name, [pol](caf::actor_system& s) {
    return policy::spawn_policy(s, pol);
  });
}

/// Starts the configured policies as cluster singletons (into `policies`, by name) and registers
/// their metrics (every known policy's, so the series exist when it is off). False: bad config.
bool start_policies(const gateway::node_config& cfg, singleton::singleton_manager& singletons, const caf::actor& poller,
                    const caf::actor& region,
                    metrics_registry& metrics, const gateway::bridge& entities,
                    std::map<std::string, caf::actor>& policies) {
  auto thank_you_stats = policy_metrics("thank-you", metrics);
  auto bonus_stats = policy_metrics("bonus", metrics);
  auto email_stats = policy_metrics("email", metrics);
  if (poller) {
    start_policy(cfg, singletons, poller, region, gateway::email_policy(entities, cfg.policy_attempt_timeout),
                 email_stats, policies);
  } else {
    log(log_level::warn, component,
        "read-side = off: the policy email does not run here, so an e-mail claim whose gateway "
        "died mid-change is not released by its timeout on this node");
  }
  if ((!cfg.thank_you_url.empty() || !cfg.bonus_account.empty()) && !poller) {
    log(log_level::error, component,
        "thank-you-webhook-url and bonus-account need read-side = on (policies follow the read "
        "side's poller)");
    return false;
  }
  if (!cfg.thank_you_url.empty()) {
    gateway::thank_you_settings ty;
    ty.url = cfg.thank_you_url;
    ty.min_amount = cfg.thank_you_min_amount;
    ty.timeout = cfg.policy_attempt_timeout;
    auto handler = gateway::thank_you_policy(ty);
    if (!handler) {
      log(log_level::error, component, "thank-you-webhook-url: '" + cfg.thank_you_url + "' is not http://host[:port]/path");
      return false;
    }
    start_policy(cfg, singletons, poller, region, std::move(handler), thank_you_stats, policies);
    log(log_level::info, component,
        "policy thank-you: deposits of at least " + std::to_string(cfg.thank_you_min_amount) + " → "
          + cfg.thank_you_url);
  }
  if (!cfg.bonus_account.empty()) {
    if (!account::valid_account_id(cfg.bonus_account)) {
      log(log_level::error, component, "bonus-account: '" + cfg.bonus_account + "' is not an account id");
      return false;
    }
    gateway::bonus_settings bs;
    bs.account = cfg.bonus_account;
    bs.rate_per_mille = cfg.bonus_rate;
    bs.max_balance = cfg.bonus_max_balance;
    bs.timeout = cfg.policy_attempt_timeout;
    start_policy(cfg, singletons, poller, region, gateway::bonus_policy(bs, entities), bonus_stats, policies);
    log(log_level::info, component,
        "policy bonus: " + std::to_string(cfg.bonus_rate) + " per 1000 of every deposit → account "
          + cfg.bonus_account
          + (cfg.bonus_max_balance > 0 ? " (up to a balance of " + std::to_string(cfg.bonus_max_balance) + ")"
                                       : std::string{}));
  }
  return true;
}

int run(const gateway::node_config& cfg, sigset_t& stop_signals) {
  configure_log(cfg.log_format == "json" ? log_format::json : log_format::text, cfg.node_name);
  if (cfg.tls_cert_file.empty() != cfg.tls_key_file.empty()) {
    log(log_level::error, component, "tls-cert-file and tls-key-file go together: set both or neither");
    return 2;
  }
  {
    const int set = !cfg.cluster_tls_cert_file.empty() + !cfg.cluster_tls_key_file.empty()
                    + !cfg.cluster_tls_ca_file.empty();
    if (set != 0 && set != 3) {
      log(log_level::error, component,
          "cluster-tls-cert-file, cluster-tls-key-file and cluster-tls-ca-file go together: set all "
          "three or none");
      return 2;
    }
  }
  gateway::authorizer auth;
  if (cfg.api_tokens_file.empty()) {
    log(log_level::warn, component,
        "no API tokens (api-tokens-file): the HTTP API is open to anyone who reaches it");
  } else {
    auto loaded = gateway::authorizer::from_file(cfg.api_tokens_file, cfg.auth_open_routes);
    if (!loaded) {
      log(log_level::error, component, "cannot use the API tokens: " + loaded.error());
      return 2;
    }
    auth = std::move(*loaded);
    if (!auth.enabled())
      log(log_level::warn, component,
          cfg.api_tokens_file + " lists no tokens: the HTTP API is open to anyone who reaches it");
    std::string open;
    for (const auto& r : cfg.auth_open_routes)
      open += (open.empty() ? "" : ", ") + r;
    log(log_level::info, component,
        std::to_string(auth.size()) + " API tokens; open without one: "
          + (open.empty() ? "nothing" : open));
  }
  metrics_registry metrics;
  auto& fsync = metrics.histogram("kontor_journal_commit_seconds",
                                  "journal group commit time (write + fsync)", latency_buckets());
  auto& appended = metrics.counter("kontor_events_appended_total", "events made durable in the journal");
  auto& batches = metrics.counter("kontor_journal_commits_total", "journal group commits");

  persistence::lmdb_options jopts;
  jopts.dir = std::filesystem::path(cfg.data_dir) / "journal";
  jopts.on_commit = [&](std::size_t, std::size_t events, std::chrono::nanoseconds t) {
    fsync.observe(std::chrono::duration<double>(t).count());
    appended.inc(events);
    batches.inc();
  };
  jopts.number_of_shards = cfg.number_of_shards;
  jopts.initial_map_size = cfg.journal_initial_map_mb << 20;
  jopts.max_batch_appends = cfg.journal_max_batch;
  jopts.index_interval = cfg.journal_index_interval;
  jopts.preallocate = cfg.journal_preallocate_mb * 1024 * 1024;
  auto journal = persistence::open_lmdb_journal(jopts);
  if (!journal) {
    log(log_level::error, component,
        std::string("cannot open the journal: ") + journal.error().message);
    return 1;
  }
  log(log_level::info, component, "journal open in " + jopts.dir.string());
  auto* jrnl = journal->get();

  caf::actor_system_config caf_cfg;
  add_message_types(caf_cfg);
  caf_cfg.load<caf::io::middleman>();
  // Only Kontor nodes of this protocol talk to each other; direct connections only (every node
  // connects to every member itself), no relayed routes.
  caf_cfg.set("middleman.app-identifiers", std::vector<std::string>{"kontor/1"});
  caf_cfg.set("middleman.enable-automatic-connections", false);
  caf_cfg.set("scheduler.policy", caf::atom_from_string(cfg.scheduler_policy));
  // 0 means one per core (CAF's own default is at least 4, which oversubscribes small nodes).
  auto threads = cfg.scheduler_threads > 0 ? cfg.scheduler_threads
                                           : std::max(1u, std::thread::hardware_concurrency());
  caf_cfg.set("scheduler.max-threads", static_cast<std::size_t>(threads));
  caf::actor_system sys{caf_cfg};

  account::rules rules;
  rules.max_limit = cfg.max_limit;
  rules.max_amount = cfg.max_amount;
  rules.tx_window = cfg.tx_window;
  rules.deposit_event_version = cfg.deposit_event_version;

  // Every node is a cluster member (alone when it has no cluster port): its region serves the
  // shards the coordinator allocated to it and passes the others on.
  auto self_id = cluster::load_or_create_node_id(cfg.data_dir);
  if (!self_id) {
    log(log_level::error, component, self_id.error().message);
    return 1;
  }
  auto directory = std::make_shared<sharding::shard_directory>();
  sharding::region_settings rs;
  rs.number_of_shards = cfg.number_of_shards;
  rs.journal = jrnl;
  rs.factory = gateway::account_entity_factory(rules);
  rs.types = {gateway::email_entity_type(), policy::checkpoint_entity_type()};
  rs.snapshot_every = cfg.snapshot_every;
  rs.passivate_after = cfg.passivate_after;
  rs.clustered = true;
  rs.self_node = *self_id;
  rs.route_timeout = cfg.route_timeout;
  rs.route_buffer = cfg.route_buffer;
  rs.max_entity_queue = cfg.max_entity_queue;
  rs.max_shard_queue = cfg.max_shard_queue;
  auto region = sharding::spawn_shard_region(sys, rs, directory);
  gateway::bridge entities{sys, region, cfg.command_timeout};

  // This node's shard logs (for the read side's poller and catch-up streams of other nodes) and
  // its copy of the allocation table.
  auto log_server = stream::spawn_log_server(sys, jrnl);
  auto table_store =
    sharding::spawn_table_store(sys, std::filesystem::path(cfg.data_dir) / "cluster");

  // The cluster singletons: the shard coordinator and the read side's poller.
  singleton::singleton_settings ss;
  ss.clustered = true;
  singleton::singleton_manager singletons{sys, ss};
  auto daemon = std::make_shared<caf::actor>(); // set once the cluster daemon exists
  sharding::coordinator_settings co;
  co.number_of_shards = cfg.number_of_shards;
  co.min_members = cfg.min_members;
  co.rebalance_interval = cfg.rebalance_interval;
  co.max_simultaneous_rebalance = cfg.max_simultaneous_rebalance;
  auto coordinator = singletons.start("coordinator", [co, daemon](caf::actor_system& s) mutable {
    co.cluster = *daemon;
    return sharding::spawn_coordinator(s, co);
  });
  std::unique_ptr<projection::read_model_manager> read_model;
  std::unique_ptr<gateway::account_queries> read_queries;
  // Stops what runs so far (a start that fails half-way: the actor system's destructor waits for
  // every actor, so one left running would hang the exit).
  auto stop_early = [&] {
    singletons.stop_all();
    if (read_model)
      read_model->stop();
    for (auto& a : {log_server, table_store, region, entities.actor()})
      caf::anon_send_exit(a, caf::exit_reason::user_shutdown);
  };
  caf::actor poller; // the poller singleton's proxy (read side on)
  if (cfg.read_side) {
    projection::poller_settings ps;
    // Each shard is read from the node that holds it.
    ps.locate = [directory](shard_id s) { return directory->service_of(s, "log"); };
    ps.batch_size = cfg.projection_batch;
    ps.idle_min = cfg.projection_idle_min;
    ps.idle_max = cfg.projection_idle_max;
    ps.min_interval = cfg.projection_min_interval;
    poller = singletons.start("poller", [ps](caf::actor_system& s) {
      return projection::spawn_poller(s, ps);
    });
    projection::read_model_settings rms;
    rms.dir = std::filesystem::path(cfg.data_dir) / "read";
    rms.number_of_shards = cfg.number_of_shards;
    rms.handler = gateway::account_projection();
    rms.stats->lag_seconds = &metrics.histogram(
      "kontor_projection_lag_seconds", "time from journal commit to read-model commit, per event",
      latency_buckets());
    // One read model ("accounts"), rebuilt on demand (POST /admin/read-models/accounts/rebuild).
    auto opened = projection::read_model_manager::open(sys, {"accounts", rms, poller});
    if (!opened) {
      log(log_level::error, component, "cannot open the read model: " + opened.error().message);
      stop_early();
      return 1;
    }
    read_model = std::move(*opened);
    auto* rm = read_model.get();
    read_queries = std::make_unique<gateway::account_queries>([rm] {
      auto model = rm->current();
      return std::shared_ptr<const persistence::lmdb_store>(model, &model->store());
    });
    metrics.gauge("kontor_read_model_rebuilding", "1 while a rebuild of the read model runs",
                  [rm] { return rm->progress().running ? 1.0 : 0.0; });
    metrics.gauge("kontor_read_model_rebuild_events",
                  "events the running (or last) rebuild of the read model has applied",
                  [rm] { return static_cast<double>(rm->progress().events.load()); });
    metrics.counter_from("kontor_read_model_rebuilds_total",
                         "rebuilds of the read model since start, by outcome", {{"outcome", "switched"}},
                         [rm] { return static_cast<double>(rm->progress().completed.load()); });
    metrics.counter_from("kontor_read_model_rebuilds_total",
                         "rebuilds of the read model since start, by outcome", {{"outcome", "failed"}},
                         [rm] { return static_cast<double>(rm->progress().failed.load()); });
    metrics.gauge("kontor_projection_offset", "events the read model has applied (all shards)",
                  [rm] { return static_cast<double>(rm->stats().applied.load()); });
    metrics.gauge("kontor_projection_lag_events", "events not yet in the read model",
                  [rm, jrnl] {
                    // Per shard: the newest end known (this node's journal, or the poller's
                    // report from the shard's owner) minus what the read model applied.
                    auto applied = rm->stats().applied_by_shard();
                    auto ends = rm->stats().known_ends();
                    double behind = 0;
                    for (std::size_t s = 0; s < applied.size(); ++s) {
                      auto end = s < ends.size() ? ends[s] : 0;
                      if (auto local = jrnl->shard_end(static_cast<shard_id>(s)))
                        end = std::max(end, *local);
                      if (end > applied[s])
                        behind += static_cast<double>(end - applied[s]);
                    }
                    return behind;
                  });
    // Base units (seconds), as Prometheus's linter asks; kontor_projection_lag_seconds is the
    // histogram over every event.
    metrics.gauge("kontor_projection_last_event_lag_seconds",
                  "time from journal commit to read-model commit of the last event applied",
                  [rm] { return static_cast<double>(rm->stats().lag_ms.load()) / 1000.0; });
  }

  // Policies: each a cluster singleton that follows the poller (see runtime/policy/policy.hpp).
  std::map<std::string, caf::actor> policies;
  if (!start_policies(cfg, singletons, poller, region, metrics, entities, policies)) {
    stop_early();
    return 2;
  }

  auto stats = rs.stats;
  metrics.gauge("kontor_live_entities", "accounts with a running actor",
                [stats] { return static_cast<double>(stats->live_entities.load()); });
  metrics.gauge("kontor_entity_recoveries", "entity starts (recoveries) since node start",
                [stats] { return static_cast<double>(stats->recoveries.load()); });
  metrics.gauge("kontor_journal_index_failures", "failed commits of the journal's index since start",
                [jrnl] {
                  return static_cast<double>(persistence::lmdb_index_failures(*jrnl).value_or(0));
                });
  metrics.gauge("kontor_journal_failures", "appends the journal refused since node start",
                [stats] { return static_cast<double>(stats->journal_failures.load()); });
  // Backpressure (max-entity-queue, max-shard-queue).
  metrics.gauge("kontor_queued_commands", "commands handed to this node's accounts and not yet answered",
                [stats] {
                  std::int64_t sum = 0;
                  for (const auto& q : stats->queued_by_shard)
                    sum += q.load();
                  return static_cast<double>(sum);
                });
  metrics.gauge("kontor_shard_queue_depth_max", "the deepest queue of one shard on this node",
                [stats] {
                  std::int64_t deepest = 0;
                  for (const auto& q : stats->queued_by_shard)
                    deepest = std::max(deepest, q.load());
                  return static_cast<double>(deepest);
                });
  for (const auto& [queue, count] : {std::pair{"entity", &stats->refused_entity_full},
                                     std::pair{"shard", &stats->refused_shard_full}})
    metrics.counter_from("kontor_commands_refused_total",
                         "commands refused at once with 503 overloaded because a queue was full",
                         {{"queue", queue}}, [count] { return static_cast<double>(count->load()); });

  // Membership: this node's daemon, published on the cluster port (a node without one is a
  // cluster of one).
  cluster::cluster_settings cs;
  cs.data_dir = cfg.data_dir;
  cs.node_name = cfg.node_name;
  cs.port = cfg.cluster_port;
  cs.bind_address = cfg.cluster_bind_address;
  cs.advertise_address = cfg.cluster_advertise_address;
  cs.seeds = cfg.seeds;
  cs.secret = cfg.cluster_secret;
  cs.number_of_shards = cfg.number_of_shards;
  cs.failure_detector.heartbeat_interval = cfg.heartbeat_interval;
  cs.failure_detector.threshold = cfg.failure_threshold;
  cs.failure_detector.acceptable_pause = cfg.acceptable_heartbeat_pause;
  cs.stable_after = cfg.stable_after;
  cs.seed_timeout = cfg.seed_timeout;
  cs.required_contact_points = cfg.required_contact_points;
  cs.tls = {cfg.cluster_tls_cert_file, cfg.cluster_tls_key_file, cfg.cluster_tls_ca_file};
  cs.services = {{"region", region},
                 {"log", log_server},
                 {"tables", table_store},
                 {"singletons", singletons.manager()}};
  cs.on_exit = [](cluster::exit_code code, const std::string& why) {
    {
      std::lock_guard lock{cluster_exit_mutex};
      cluster_exit_reason = why;
    }
    cluster_exit_code = static_cast<int>(code);
    ::kill(::getpid(), SIGUSR1);
  };
  auto membership = cluster::cluster::start(sys, cs);
  if (!membership) {
    log(log_level::error, component, "cannot start the cluster daemon: " + membership.error().message);
    stop_early();
    return 1;
  }
  auto* node = membership->get();
  if (node->port() != 0)
    log(log_level::info, component,
        "cluster port " + std::to_string(node->port())
          + (cs.tls.enabled() ? " (TLS 1.3, peers signed by " + cs.tls.ca_file + ")" : ""));
  *daemon = node->daemon();
  singletons.attach(node->daemon());
  sharding::attach_region(region, node->daemon(), coordinator);

  std::atomic<bool> ready{false};
  gateway::email_settings email;
  email.reservation_timeout = cfg.email_reservation_timeout;
  email.lease_guard = std::min<std::chrono::milliseconds>(cfg.email_reservation_timeout / 4,
                                                          std::chrono::seconds(1));
  gateway::api api{{&entities, &rules, &ready, read_queries.get(),
                    read_model ? &read_model->stats() : nullptr, &metrics, cfg.node_name,
                    cfg.number_of_shards, [node] { return node->state(); }, directory.get(),
                    [&entities, directory](auto done) {
                      std::vector<std::pair<std::string, caf::actor>> regions;
                      auto state = directory->cluster();
                      for (const auto& m : state.view.members)
                        if (auto r = state.service(m.id, "region"); r && state.reaches(m.id))
                          regions.emplace_back(m.name, r);
                      entities.entity_counts(std::move(regions), std::move(done));
                    },
                    &auth, read_model.get(), &sys, &policies, &email}};

  auto stop_actors = [&] {
    node->stop();
    singletons.stop_all();
    if (read_model)
      read_model->stop();
    for (auto& a : {log_server, table_store, region, entities.actor()})
      caf::anon_send_exit(a, caf::exit_reason::user_shutdown);
    sys.await_all_actors_done();
  };

  gateway::http_settings hs;
  hs.address = cfg.http_address;
  hs.port = cfg.http_port;
  hs.threads = cfg.http_threads;
  hs.body_limit = cfg.http_body_limit;
  hs.read_timeout = cfg.http_read_timeout;
  hs.tls_cert_file = cfg.tls_cert_file;
  hs.tls_key_file = cfg.tls_key_file;
  std::unique_ptr<gateway::http_server> server;
  try {
    server = std::make_unique<gateway::http_server>(
      hs, [&api](gateway::http_request&& req, gateway::responder respond) {
        api(std::move(req), std::move(respond));
      });
  } catch (const std::exception& e) {
    log(log_level::error, component, e.what());
    stop_actors();
    return 1;
  }
  server->start();
  if (!cfg.tls_cert_file.empty())
    log(log_level::info, component, "HTTP over TLS (1.2 or newer) with " + cfg.tls_cert_file);
  ready = true;
  log(log_level::info, component,
      cfg.node_name + " ready: HTTP on " + cfg.http_address + ":" + std::to_string(server->port()));

  int sig = 0;
  sigwait(&stop_signals, &sig);
  int exit_status = 0;
  if (sig == SIGUSR1) {
    // The cluster ended this node (downed, minority side, refused, or it finished leaving).
    exit_status = cluster_exit_code.load();
    std::lock_guard lock{cluster_exit_mutex};
    log(log_level::info, component, "stopping: " + cluster_exit_reason);
  } else {
    log(log_level::info, component,
        std::string("stopping on ") + (sig == SIGINT ? "SIGINT" : "SIGTERM")
          + "; leaving the cluster");
    leave_cluster(*node, *directory, singletons, stop_signals);
  }

  // Reverse order: no new requests, then no actors (appends in flight still complete in the
  // journal), then the HTTP machinery, then the journal.
  ready = false;
  server->stop();
  stop_actors();
  server.reset();
  log(log_level::info, component, "stopped");
  return exit_status;
}

} // namespace

int main(int argc, char** argv, char** envp) {
  auto cfg = gateway::parse_node_config(argc, argv, envp);
  if (!cfg) {
    if (cfg.error().code == 0) {
      std::cout << cfg.error().text;
      return 0;
    }
    std::cerr << "kontor-node: " << cfg.error().text << "\n(see kontor-node --help)\n";
    return cfg.error().code;
  }
  // Every thread started from here on inherits the blocked mask; main waits for them in sigwait.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGUSR1); // the cluster ends this node
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  std::signal(SIGPIPE, SIG_IGN);
  // A file-size limit must make a write fail (the journal answers io_error) instead of killing
  // the node.
  std::signal(SIGXFSZ, SIG_IGN);
  return run(*cfg, stop_signals);
}

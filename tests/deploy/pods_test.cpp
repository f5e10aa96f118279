// Three kontor-node processes started with exactly the command line and environment the rendered
// StatefulSet gives pods kontor-0..2, each in a namespace of a netns_lab whose /etc/hosts stands
// in for the cluster DNS (the headless Service's name resolves to all three, each pod's DNS name
// to its own address): they form one cluster, allocate every shard, and a SIGTERM is a graceful
// leave that exits 0 within the pod's termination grace period. Registered only as root with
// `ip` (like tests/cluster/partition_test.cpp): a test that skips itself but reports success
// would prove nothing.

#include <chrono>
#include <iostream>
#include <set>
#include <string>
#include <vector>

#include <boost/json.hpp>
#include <catch2/catch.hpp>

#include "tests/deploy/manifests.hpp"
#include "tests/support/cluster.hpp"
#include "tests/support/netns_lab.hpp"

using namespace kontor::test;
using namespace kontor::test::deploy;
namespace json = boost::json;
using namespace std::chrono_literals;
using steady = std::chrono::steady_clock;

namespace {

void three_pods_form_one_cluster() {
  const auto objects = parse_yaml(render("k8s/overlays/dev-3"));
  const auto& set = find_object(objects, "StatefulSet");
  const auto replicas = set.at("spec").at("replicas").to_number<std::size_t>();
  REQUIRE(replicas == 3);
  const auto set_name = string_at(set, "/metadata/name");
  const auto service = string_at(set, "/spec/serviceName");
  const auto ns = string_at(set, "/metadata/namespace");
  const auto args = container_args(node_container(objects));
  const auto seeds = flag_value(args, "seeds");
  const auto seed_host = seeds.substr(0, seeds.rfind(':'));
  REQUIRE(seed_host == service); // the seeds are the headless service (checked in detail elsewhere)
  const auto cluster_port = static_cast<unsigned short>(std::stoi(flag_value(args, "cluster-port")));

  netns_lab lab{replicas};
  std::vector<std::string> names;
  std::string hosts = "127.0.0.1 localhost\n";
  for (std::size_t i = 0; i < replicas; ++i) {
    names.push_back(set_name + "-" + std::to_string(i));
    // What the cluster DNS answers: the pod's own name, and the service's name for every pod.
    const auto domain = service + "." + ns + ".svc.cluster.local";
    hosts += lab.address(i) + " " + names[i] + "." + domain + " " + names[i] + "." + service + "\n";
    hosts += lab.address(i) + " " + service + " " + domain + "\n";
  }
  lab.set_hosts(hosts);

  cluster_options options;
  options.nodes = replicas;
  options.lab = &lab;
  options.lab_cluster_port = cluster_port;
  options.names = names;
  options.ready_timeout = 45s; // the first seed waits seed-timeout (15 s) before it forms the cluster
  options.launch = [&](std::size_t i, const std::string& dir) {
    return pod_launch(objects, names[i], lab.address(i), dir);
  };
  test_cluster c{options};
  INFO("pod kontor-0: kontor-node " << [&] {
    std::string s;
    for (const auto& a : c.command_line(0))
      s += a + " ";
    return s;
  }());
  try {
    c.start_all();
  } catch (const std::exception& e) {
    FAIL(e.what());
  }
  const std::vector<std::size_t> all{0, 1, 2};
  auto up = c.wait_members_up(all, all, 20s);
  INFO(c.describe());
  REQUIRE(up);
  // Each member advertises its pod IP at the cluster port.
  for (std::size_t i : all) {
    auto view = c.members(i);
    REQUIRE(view);
    for (std::size_t k : all) {
      const auto* m = view->find(names[k]);
      REQUIRE(m);
      CHECK(m->address == lab.address(k) + ":" + std::to_string(cluster_port));
    }
  }
  auto allocated = c.wait_shards_allocated(all, 20s);
  REQUIRE(allocated);

  // SIGTERM, as the kubelet sends it: a graceful leave that exits 0 within the grace period, and
  // the others hold every shard afterwards.
  const auto grace = std::chrono::seconds(
    set.at("spec").at("template").at("spec").at("terminationGracePeriodSeconds").to_number<long long>());
  const auto started = steady::now();
  CHECK(c.stop(0, grace) == 0);
  CHECK(steady::now() - started < grace);
  INFO(c.describe());
  CHECK(c.wait_members_up({1, 2}, {1, 2}, 20s));
  auto moved = c.wait_all(
    {1, 2}, "/cluster/shards",
    [&](std::size_t, const json::value& body) {
      auto v = parse_shards(body);
      return v && all_allocated(*v, {names[1], names[2]});
    },
    20s);
  CHECK(moved);
}

/// Registers the test when this machine can run it; says why not otherwise.
struct lab_registration {
  lab_registration() {
    auto why = netns_lab::unavailable_reason();
    if (!why.empty()) {
      std::cerr << "deploy_tests: the pods-in-a-lab test is not registered: " << why << "\n";
      return;
    }
    Catch::AutoReg registered{
      Catch::makeTestInvoker(&three_pods_form_one_cluster), CATCH_INTERNAL_LINEINFO,
      Catch::StringRef(),
      Catch::NameAndTags{"three pods with the StatefulSet's args and env, the headless service's "
                         "name in /etc/hosts, form one cluster, allocate every shard and leave "
                         "gracefully on SIGTERM",
                         "[deploy][lab]"}};
  }
} const registration;

} // namespace

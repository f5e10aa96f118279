// The k8s/ manifests and the Dockerfile against the binary they run: rendered by the real
// kubectl (a missing kubectl fails, it does not skip), every flag and KONTOR_* variable one
// kontor-node knows, ports and probes that match its settings and routes, a ConfigMap whose
// kontor.conf a node starts with, and an image that installs exactly the libraries it links.

#include <algorithm>
#include <fstream>
#include <iterator>
#include <regex>
#include <set>
#include <sstream>

#include <boost/json.hpp>
#include <catch2/catch.hpp>

#include "tests/deploy/manifests.hpp"
#include "tests/support/child_process.hpp"
#include "tests/support/http_client.hpp"
#include "tests/support/node_process.hpp"
#include "tests/support/temp_dir.hpp"

using namespace kontor::test;
using namespace kontor::test::deploy;
namespace json = boost::json;

namespace {

constexpr const char* overlay = "k8s/overlays/dev-3";

/// The overlay's objects, rendered and parsed once for the whole run.
const json::array& rendered() {
  static const json::array objects = parse_yaml(render(overlay));
  return objects;
}

const json::object& pod_spec() {
  return find_object(rendered(), "StatefulSet").at("spec").at("template").at("spec").as_object();
}

/// The containerPort named `name` (0 when none).
long long container_port(const std::string& name) {
  for (const auto& p : node_container(rendered()).at("ports").as_array())
    if (string_at(p, "/name") == name)
      return p.at("containerPort").to_number<long long>();
  return 0;
}

/// The effective value of a setting for a pod: its flag, else its KONTOR_* variable, else the
/// ConfigMap's kontor.conf, else "".
std::string pod_setting(const std::string& name) {
  const auto& container = node_container(rendered());
  if (auto v = flag_value(container_args(container), name); !v.empty())
    return v;
  if (auto* env = container.if_contains("env"))
    for (const auto& e : env->as_array()) {
      auto var = string_at(e, "/name");
      if (var.rfind("KONTOR_", 0) == 0 && setting_of_env(var) == name)
        return string_at(e, "/value");
    }
  const auto& conf = find_object(rendered(), "ConfigMap");
  std::istringstream lines{std::string(conf.at("data").at("kontor.conf").as_string())};
  std::regex line_re{"^\\s*" + name + "\\s*=\\s*(.*?)\\s*$"};
  for (std::string line; std::getline(lines, line);) {
    std::smatch m;
    if (std::regex_match(line, m, line_re))
      return m[1].str();
  }
  return {};
}

/// Reads a file of the source tree.
std::string source_file(const std::string& relative) {
  std::ifstream in{source_path(relative), std::ios::binary};
  REQUIRE(in);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

/// The packages the last stage of the Dockerfile installs with apt-get install (unused in a
/// build not made like the image: see tests/deploy/CMakeLists.txt).
[[maybe_unused]] std::set<std::string> runtime_stage_packages(const std::string& dockerfile) {
  // Join continuation lines, then keep the lines after the last FROM.
  std::string joined = std::regex_replace(dockerfile, std::regex{"\\\\\n"}, " ");
  std::istringstream lines{joined};
  std::vector<std::string> stage;
  for (std::string line; std::getline(lines, line);) {
    if (line.rfind("FROM ", 0) == 0)
      stage.clear();
    stage.push_back(line);
  }
  std::set<std::string> out;
  for (const auto& line : stage) {
    if (line.rfind("RUN ", 0) != 0)
      continue;
    for (auto at = line.find("apt-get install"); at != std::string::npos;
         at = line.find("apt-get install", at + 1)) {
      std::istringstream words{line.substr(at + std::string("apt-get install").size())};
      for (std::string w; words >> w && w != "&&" && w != ";";)
        if (w[0] != '-')
          out.insert(w);
    }
  }
  return out;
}

} // namespace

TEST_CASE("kubectl kustomize renders the dev-3 overlay: a StatefulSet of 3 pods with its services, "
          "budget, policy, config and secret",
          "[deploy]") {
  std::string yaml;
  try {
    yaml = render(overlay);
  } catch (const std::exception& e) {
    FAIL(e.what());
  }
  INFO(yaml);
  const auto& objects = rendered();
  std::multiset<std::string> kinds;
  for (const auto& o : objects)
    kinds.insert(string_at(o, "/kind"));
  CHECK(kinds == std::multiset<std::string>{"ConfigMap", "NetworkPolicy", "PodDisruptionBudget",
                                            "Secret", "Service", "Service", "StatefulSet"});
  const auto& set = find_object(objects, "StatefulSet");
  CHECK(set.at("spec").at("replicas") == 3);
  CHECK(string_at(set, "/spec/podManagementPolicy") == "Parallel");
  CHECK(set.at("spec").at("volumeClaimTemplates").as_array().size() == 1);
  for (const auto& o : objects)
    CHECK(string_at(o, "/metadata/namespace") == "kontor-dev");
  const auto& pdb = find_object(objects, "PodDisruptionBudget");
  CHECK(pdb.at("spec").at("maxUnavailable") == 1);
}

TEST_CASE("every flag in the StatefulSet's args and every KONTOR_* variable it sets is a setting "
          "kontor-node knows, and every $(VAR) is one of its variables",
          "[deploy]") {
  const auto flags = node_flags();
  REQUIRE(flags.count("node-name") == 1); // the --help parse works
  const auto& container = node_container(rendered());
  auto args = container_args(container);
  REQUIRE(!args.empty());
  std::set<std::string> vars;
  for (const auto& e : container.at("env").as_array())
    vars.insert(string_at(e, "/name"));
  for (const auto& a : args) {
    INFO("arg " << a);
    CHECK(!flag_of(a).empty()); // "--name=value": no flag's value in a separate argument
    CHECK(flags.count(flag_of(a)) == 1);
    static const std::regex ref{R"(\$\(([A-Za-z_][A-Za-z0-9_]*)\))"};
    for (std::sregex_iterator it{a.begin(), a.end(), ref}, end; it != end; ++it)
      CHECK(vars.count((*it)[1].str()) == 1);
  }
  std::size_t settings_from_env = 0;
  for (const auto& var : vars) {
    if (var.rfind("KONTOR_", 0) != 0)
      continue;
    INFO("env " << var << " → setting " << setting_of_env(var));
    ++settings_from_env;
    auto setting = setting_of_env(var);
    CHECK(flags.count(setting) == 1);
    CHECK(setting != "config"); // a flag only: kontor-node does not read KONTOR_CONFIG
    CHECK(setting != "help");
  }
  CHECK(settings_from_env >= 2); // the cluster secret and min-members come from the environment
  // Kubernetes would inject KONTOR_<SERVICE>_PORT=tcp://… for a Service with a cluster IP, and
  // KONTOR_CLUSTER_PORT is a setting.
  CHECK(pod_spec().at("enableServiceLinks") == false);
}

TEST_CASE("ports match the settings: containerPorts, services and network policy use the HTTP "
          "and cluster ports the pod's settings give kontor-node",
          "[deploy]") {
  const auto http = std::stoll(pod_setting("http-port"));
  const auto cluster = std::stoll(pod_setting("cluster-port"));
  CHECK(http == 8080);
  CHECK(cluster == 7355);
  CHECK(container_port("http") == http);
  CHECK(container_port("cluster") == cluster);
  CHECK(pod_setting("http-address") == "0.0.0.0");
  CHECK(pod_setting("cluster-bind-address") == "0.0.0.0");

  const auto& set = find_object(rendered(), "StatefulSet");
  const auto headless_name = string_at(set, "/spec/serviceName");
  const auto& headless = find_object(rendered(), "Service", headless_name);
  CHECK(string_at(headless, "/spec/clusterIP") == "None");
  CHECK(headless.at("spec").at("publishNotReadyAddresses") == true);
  // The seeds are the headless service's name at the cluster port.
  CHECK(pod_setting("seeds") == headless_name + ":" + std::to_string(cluster));
  CHECK(string_at(headless, "/spec/ports/0/targetPort") == "cluster");
  CHECK(headless.at("spec").at("ports").at(0).at("port") == cluster);

  const auto& client = find_object(rendered(), "Service", "kontor");
  CHECK(string_at(client, "/spec/ports/0/targetPort") == "http");

  // The policy: the cluster port only from the set's pods, HTTP from anywhere.
  const auto& labels = set.at("spec").at("template").at("metadata").at("labels").as_object();
  auto selects_pods = [&](const json::value& selector) {
    for (const auto& [k, v] : selector.at("matchLabels").as_object())
      if (!labels.contains(k) || labels.at(k) != v)
        return false;
    return true;
  };
  const auto& policy = find_object(rendered(), "NetworkPolicy");
  CHECK(selects_pods(policy.at("spec").at("podSelector")));
  bool cluster_rule = false;
  bool http_rule = false;
  for (const auto& rule : policy.at("spec").at("ingress").as_array()) {
    const auto& r = rule.as_object();
    REQUIRE(r.at("ports").as_array().size() == 1);
    auto port = r.at("ports").at(0).at("port").to_number<long long>();
    if (port == cluster) {
      REQUIRE(r.contains("from"));
      REQUIRE(r.at("from").as_array().size() == 1);
      CHECK(selects_pods(r.at("from").at(0).at("podSelector")));
      cluster_rule = true;
    } else if (port == http) {
      CHECK(!r.contains("from"));
      http_rule = true;
    }
  }
  CHECK(cluster_rule);
  CHECK(http_rule);
}

TEST_CASE("probes: readiness GET /ready, liveness and startup GET /health, on the HTTP port",
          "[deploy]") {
  const auto& container = node_container(rendered());
  CHECK(string_at(container, "/readinessProbe/httpGet/path") == "/ready");
  CHECK(string_at(container, "/readinessProbe/httpGet/port") == "http");
  CHECK(string_at(container, "/livenessProbe/httpGet/path") == "/health");
  CHECK(string_at(container, "/livenessProbe/httpGet/port") == "http");
  CHECK(string_at(container, "/startupProbe/httpGet/path") == "/health");
  CHECK(string_at(container, "/startupProbe/httpGet/port") == "http");
  // Longer than kontor-node's bound on a graceful leave (30 s in gateway/main.cpp).
  CHECK(pod_spec().at("terminationGracePeriodSeconds").to_number<long long>() > 30);
}

TEST_CASE("the pod runs non-root on a read-only root filesystem and writes only under the data "
          "volume, as the image's user",
          "[deploy]") {
  const auto& pod = pod_spec();
  const auto& container = node_container(rendered());
  CHECK(pod.at("securityContext").at("runAsNonRoot") == true);
  const auto uid = pod.at("securityContext").at("runAsUser").to_number<long long>();
  CHECK(uid != 0);
  CHECK(container.at("securityContext").at("readOnlyRootFilesystem") == true);
  CHECK(container.at("securityContext").at("allowPrivilegeEscalation") == false);
  // The data volume is the claim template's, and the data dir lies below its mount path.
  const auto& set = find_object(rendered(), "StatefulSet");
  auto claim = string_at(set, "/spec/volumeClaimTemplates/0/metadata/name");
  std::string data_mount;
  for (const auto& m : container.at("volumeMounts").as_array()) {
    if (string_at(m, "/name") == claim)
      data_mount = string_at(m, "/mountPath");
    else
      CHECK(m.at("readOnly") == true);
  }
  REQUIRE(!data_mount.empty());
  CHECK(pod_setting("data-dir").rfind(data_mount + "/", 0) == 0);
  // The Dockerfile runs as that uid and declares that mount a volume.
  auto dockerfile = source_file("Dockerfile");
  CHECK(dockerfile.find("\nUSER " + std::to_string(uid) + ":") != std::string::npos);
  CHECK(dockerfile.find("VOLUME [\"" + data_mount + "\"]") != std::string::npos);
  CHECK(dockerfile.find("ENTRYPOINT [\"/usr/local/bin/kontor-node\"]") != std::string::npos);
}

TEST_CASE("the ConfigMap's kontor.conf is config/kontor.conf, and a node started with it becomes "
          "ready and answers the probes' paths",
          "[deploy]") {
  const auto& map = find_object(rendered(), "ConfigMap");
  const std::string conf{map.at("data").at("kontor.conf").as_string()};
  {
    INFO("k8s/base/kontor.conf must be a copy of config/kontor.conf (kustomize reads no file "
         "outside k8s/base): cp config/kontor.conf k8s/base/kontor.conf");
    CHECK((conf == source_file("config/kontor.conf")));
  }
  temp_dir dir{"kontor-deploy-conf"};
  auto path = (dir.path() / "kontor.conf").string();
  std::ofstream{path} << conf;
  // node_process puts HTTP on 127.0.0.1 with a free port (flags beat the file): the file's
  // 0.0.0.0:8080 would collide with whatever else runs here.
  node_process node{(dir.path() / "data").string(), (dir.path() / "node.log").string(),
                    {"--config", path}};
  bool ready = node.wait_ready();
  INFO(node.log());
  REQUIRE(ready);
  const auto& container = node_container(rendered());
  for (const auto* probe : {"/readinessProbe", "/livenessProbe", "/startupProbe"}) {
    auto target = string_at(container, std::string(probe) + "/httpGet/path");
    http_client c{"127.0.0.1", node.port(), 5000};
    INFO(probe << " GET " << target);
    CHECK(c.get(target).status == 200);
  }
  CHECK(node.stop() == 0);
}

#ifdef KONTOR_BUILT_LIKE_THE_IMAGE // see tests/deploy/CMakeLists.txt
TEST_CASE("the Dockerfile's runtime stage installs exactly the packages scripts/runtime-libs.sh "
          "lists for the built kontor-node",
          "[deploy]") {
  auto r = run_command({source_path("scripts/runtime-libs.sh"), node_binary()});
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  std::set<std::string> listed;
  std::istringstream lines{r.out};
  for (std::string p; lines >> p;)
    listed.insert(p);
  CHECK(listed.count("libcaf-core0.17") == 1); // the list is not empty or garbage
  CHECK(listed.count("libc6") == 0);           // debian:12-slim has it
  auto installed = runtime_stage_packages(source_file("Dockerfile"));
  CHECK(installed == listed);
}
#endif

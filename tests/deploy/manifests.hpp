// The k8s/ manifests as the deploy tests see them: rendered by the real kubectl, parsed into
// JSON, and the StatefulSet's container turned into a local command line for one pod.
#pragma once

#include <chrono>
#include <set>
#include <string>
#include <vector>

#include <boost/json.hpp>

#include "tests/support/command.hpp"
#include "tests/support/cluster.hpp"

namespace kontor::test::deploy {

/// A path under the source tree.
std::string source_path(const std::string& relative);

/// `kubectl kustomize <source>/<overlay>`'s output. Throws std::runtime_error saying what to do
/// when there is no kubectl (scripts/setup.sh installs Debian 12's kubernetes-client) or it fails.
std::string render(const std::string& overlay);

/// The YAML documents of `yaml` as JSON values (tests/deploy/yaml_to_json.py); throws on failure.
boost::json::array parse_yaml(const std::string& yaml);

/// The one object of `kind` (and `name`, when given) among `objects`; throws when there is not
/// exactly one.
const boost::json::object& find_object(const boost::json::array& objects, const std::string& kind,
                                       const std::string& name = {});

/// The value at JSON pointer `pointer` as a string, "" when absent or not a string.
std::string string_at(const boost::json::value& v, const std::string& pointer);

/// The settings `kontor-node --help` lists, as flags without dashes (node-name, http-port, …).
std::set<std::string> node_flags();

/// The setting a KONTOR_* variable sets (KONTOR_MIN_MEMBERS → min-members), as kontor-node maps it.
std::string setting_of_env(const std::string& var);

/// The flag of a "--name=value" or "--name" argument ("" for other arguments).
std::string flag_of(const std::string& arg);

/// The value of flag `name` among `args` ("--name=value" or "--name value"); "" when absent.
std::string flag_value(const std::vector<std::string>& args, const std::string& name);

/// The StatefulSet's (only) container.
const boost::json::object& node_container(const boost::json::array& objects);

/// The container's args as strings.
std::vector<std::string> container_args(const boost::json::object& container);

/// Pod `pod_name` of the StatefulSet as a local process: its environment as Kubernetes sets it
/// (downward API: metadata.name, metadata.namespace, status.podIP = `pod_ip`; secretKeyRef and
/// configMapKeyRef from the rendered objects), its args with $(VAR) expanded, and every volume
/// mount path replaced by a directory under `dir` (configMap volumes get their files, claim
/// templates an empty directory). Throws on anything it cannot reproduce (an unknown env source,
/// a $(VAR) that is not defined: Kubernetes would pass it on literally).
node_launch pod_launch(const boost::json::array& objects, const std::string& pod_name,
                       const std::string& pod_ip, const std::string& dir);

} // namespace kontor::test::deploy

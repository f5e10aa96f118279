#include "tests/deploy/manifests.hpp"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cctype>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <sstream>
#include <stdexcept>

#include "tests/support/child_process.hpp"
#include "tests/support/node_process.hpp"
#include "tests/support/temp_dir.hpp"
#include "tests/support/wait.hpp"

extern char** environ;

namespace kontor::test::deploy {

namespace json = boost::json;
namespace fs = std::filesystem;

std::string source_path(const std::string& relative) {
  return std::string(KONTOR_SOURCE_DIR) + "/" + relative;
}

std::string render(const std::string& overlay) {
  auto r = run_command({"kubectl", "kustomize", source_path(overlay)});
  if (r.exit_code == -1 && r.err.rfind("cannot run", 0) == 0)
    throw std::runtime_error("no kubectl on PATH (" + r.err
                             + "): scripts/setup.sh installs it (Debian 12's kubernetes-client, "
                               "kubectl 1.20 with kustomize v2.0.3, the version k8s/ is written for)");
  if (r.exit_code != 0)
    throw std::runtime_error("kubectl kustomize " + overlay + " failed (exit "
                             + std::to_string(r.exit_code) + "):\n" + r.err);
  return r.out;
}

json::array parse_yaml(const std::string& yaml) {
  temp_dir dir{"kontor-deploy-yaml"};
  auto path = (dir.path() / "rendered.yaml").string();
  std::ofstream{path} << yaml;
  auto r = run_command({"python3", source_path("tests/deploy/yaml_to_json.py"), path});
  if (r.exit_code != 0)
    throw std::runtime_error("yaml_to_json.py failed (exit " + std::to_string(r.exit_code)
                             + "; scripts/setup.sh installs python3-yaml):\n" + r.err);
  json::error_code ec;
  auto v = json::parse(r.out, ec);
  if (ec || !v.is_array())
    throw std::runtime_error("yaml_to_json.py printed no JSON array: " + r.out.substr(0, 300));
  return v.as_array();
}

const json::object& find_object(const json::array& objects, const std::string& kind,
                                const std::string& name) {
  const json::object* found = nullptr;
  int count = 0;
  for (const auto& o : objects) {
    if (!o.is_object() || string_at(o, "/kind") != kind)
      continue;
    if (!name.empty() && string_at(o, "/metadata/name") != name)
      continue;
    found = &o.as_object();
    ++count;
  }
  if (count != 1)
    throw std::runtime_error("expected one " + kind + (name.empty() ? "" : " named " + name)
                             + " in the rendered manifests, found " + std::to_string(count));
  return *found;
}

std::string string_at(const json::value& v, const std::string& pointer) {
  json::error_code ec;
  auto* p = v.find_pointer(pointer, ec);
  return p && p->is_string() ? std::string(p->as_string()) : std::string();
}

std::set<std::string> node_flags() {
  auto r = run_command({node_binary(), "--help"}, std::chrono::seconds(20));
  if (r.exit_code != 0)
    throw std::runtime_error("kontor-node --help failed: " + r.err);
  std::set<std::string> out;
  static const std::regex flag{R"(^\s+--([a-z0-9][a-z0-9-]*))"};
  std::istringstream lines{r.out};
  for (std::string line; std::getline(lines, line);) {
    std::smatch m;
    if (std::regex_search(line, m, flag))
      out.insert(m[1].str());
  }
  return out;
}

std::string setting_of_env(const std::string& var) {
  std::string out;
  for (char ch : var.substr(std::string("KONTOR_").size()))
    out += ch == '_' ? '-' : static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  return out;
}

std::string flag_of(const std::string& arg) {
  if (arg.rfind("--", 0) != 0)
    return {};
  return arg.substr(2, arg.find('=') == std::string::npos ? std::string::npos : arg.find('=') - 2);
}

std::string flag_value(const std::vector<std::string>& args, const std::string& name) {
  for (std::size_t k = 0; k < args.size(); ++k) {
    if (flag_of(args[k]) != name)
      continue;
    auto eq = args[k].find('=');
    if (eq != std::string::npos)
      return args[k].substr(eq + 1);
    return k + 1 < args.size() ? args[k + 1] : std::string();
  }
  return {};
}

const json::object& node_container(const json::array& objects) {
  const auto& set = find_object(objects, "StatefulSet");
  const auto& containers = set.at("spec").at("template").at("spec").at("containers").as_array();
  if (containers.size() != 1)
    throw std::runtime_error("the StatefulSet's pod has " + std::to_string(containers.size())
                             + " containers, the tests know one");
  return containers[0].as_object();
}

std::vector<std::string> container_args(const json::object& container) {
  std::vector<std::string> out;
  if (auto* args = container.if_contains("args"))
    for (const auto& a : args->as_array())
      out.emplace_back(a.as_string());
  return out;
}

namespace {

std::string base64_decode(const std::string& in) {
  static const std::string alphabet =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  unsigned bits = 0;
  int count = 0;
  for (char ch : in) {
    if (ch == '=' || std::isspace(static_cast<unsigned char>(ch)))
      continue;
    auto pos = alphabet.find(ch);
    if (pos == std::string::npos)
      throw std::runtime_error("not base64: " + in);
    bits = (bits << 6) | static_cast<unsigned>(pos);
    count += 6;
    if (count >= 8) {
      count -= 8;
      out += static_cast<char>((bits >> count) & 0xff);
    }
  }
  return out;
}

/// Expands $(VAR) from `env` as Kubernetes does; an undefined VAR throws (Kubernetes would leave
/// the text as it is, which is never what a manifest means).
std::string expand(const std::string& text, const std::map<std::string, std::string>& env) {
  static const std::regex ref{R"(\$\(([A-Za-z_][A-Za-z0-9_]*)\))"};
  std::string out;
  auto begin = text.cbegin();
  for (std::sregex_iterator it{text.begin(), text.end(), ref}, end; it != end; ++it) {
    auto name = (*it)[1].str();
    auto found = env.find(name);
    if (found == env.end())
      throw std::runtime_error("$(" + name + ") in '" + text + "' names no variable of the container");
    out.append(begin, (*it)[0].first);
    out += found->second;
    begin = (*it)[0].second;
  }
  out.append(begin, text.cend());
  return out;
}

} // namespace

node_launch pod_launch(const json::array& objects, const std::string& pod_name,
                       const std::string& pod_ip, const std::string& dir) {
  const auto& set = find_object(objects, "StatefulSet");
  const auto& pod = set.at("spec").at("template").at("spec").as_object();
  const auto& container = node_container(objects);
  const auto ns = string_at(set, "/metadata/namespace");

  // Volumes: mount path → local directory.
  std::set<std::string> claims;
  if (auto* templates = set.at("spec").as_object().if_contains("volumeClaimTemplates"))
    for (const auto& t : templates->as_array())
      claims.insert(string_at(t, "/metadata/name"));
  std::vector<std::pair<std::string, std::string>> mounts;
  if (auto* list = container.if_contains("volumeMounts")) {
    for (const auto& m : list->as_array()) {
      auto name = string_at(m, "/name");
      auto local = (fs::path(dir) / "volumes" / name).string();
      fs::create_directories(local);
      bool known = claims.count(name) > 0;
      if (auto* volumes = pod.if_contains("volumes"))
        for (const auto& v : volumes->as_array()) {
          if (string_at(v, "/name") != name)
            continue;
          if (auto map_name = string_at(v, "/configMap/name"); !map_name.empty()) {
            const auto& map = find_object(objects, "ConfigMap", map_name);
            for (const auto& [file, text] : map.at("data").as_object())
              std::ofstream{fs::path(local) / std::string(file)} << std::string(text.as_string());
            known = true;
          }
          if (auto secret_name = string_at(v, "/secret/secretName"); !secret_name.empty()) {
            const auto& secret = find_object(objects, "Secret", secret_name);
            for (const auto& [file, text] : secret.at("data").as_object())
              std::ofstream{fs::path(local) / std::string(file)} << base64_decode(std::string(text.as_string()));
            known = true;
          }
        }
      if (!known)
        throw std::runtime_error("volume " + name + ": neither a claim template, a configMap nor a secret");
      mounts.emplace_back(string_at(m, "/mountPath"), local);
    }
  }
  auto localize = [&](std::string text) {
    for (const auto& [path, local] : mounts)
      for (auto at = text.find(path); at != std::string::npos; at = text.find(path, at + local.size())) {
        auto after = at + path.size();
        if (after < text.size() && text[after] != '/')
          continue;
        text.replace(at, path.size(), local);
      }
    return text;
  };

  node_launch out;
  std::map<std::string, std::string> env;
  if (auto* list = container.if_contains("env")) {
    for (const auto& e : list->as_array()) {
      auto name = string_at(e, "/name");
      std::string value;
      if (e.as_object().contains("value")) {
        value = expand(string_at(e, "/value"), env);
      } else if (auto field = string_at(e, "/valueFrom/fieldRef/fieldPath"); !field.empty()) {
        if (field == "metadata.name")
          value = pod_name;
        else if (field == "metadata.namespace")
          value = ns;
        else if (field == "status.podIP")
          value = pod_ip;
        else
          throw std::runtime_error("env " + name + ": fieldRef " + field + " is not reproduced here");
      } else if (auto secret = string_at(e, "/valueFrom/secretKeyRef/name"); !secret.empty()) {
        const auto& s = find_object(objects, "Secret", secret);
        value = base64_decode(std::string(s.at("data").at(string_at(e, "/valueFrom/secretKeyRef/key")).as_string()));
      } else if (auto map = string_at(e, "/valueFrom/configMapKeyRef/name"); !map.empty()) {
        const auto& m = find_object(objects, "ConfigMap", map);
        value = std::string(m.at("data").at(string_at(e, "/valueFrom/configMapKeyRef/key")).as_string());
      } else {
        throw std::runtime_error("env " + name + ": a source the tests do not reproduce");
      }
      value = localize(value);
      env[name] = value;
      out.env.push_back(name + "=" + value);
    }
  }
  if (container.contains("command"))
    throw std::runtime_error("the container sets `command`: the image's ENTRYPOINT (kontor-node) "
                             "would not run");
  for (const auto& a : container_args(container))
    out.args.push_back(localize(expand(a, env)));
  return out;
}

} // namespace kontor::test::deploy

// GET /openapi.json against the gateway's route table and its real answers: every route served
// is documented and every documented operation is served, and the statuses real requests get
// are among those the document lists for them.

#include <algorithm>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <boost/json.hpp>
#include <catch2/catch.hpp>

#include "gateway/api.hpp"
#include "tests/component/node_fixture.hpp"

using namespace kontor::test;
namespace json = boost::json;

namespace {

const std::vector<std::string> http_methods = {"GET", "POST", "PUT", "DELETE", "PATCH"};

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

/// (METHOD, path template) of every operation in the document.
std::set<std::pair<std::string, std::string>> documented(const json::object& doc) {
  std::set<std::pair<std::string, std::string>> out;
  for (const auto& [path, item] : doc.at("paths").as_object())
    for (const auto& [method, op] : item.as_object()) {
      std::string m{method};
      if (m == "parameters" || m == "summary" || m == "description" || m == "servers")
        continue;
      std::transform(m.begin(), m.end(), m.begin(), [](unsigned char c) { return std::toupper(c); });
      out.emplace(m, std::string(path));
    }
  return out;
}

/// The route table of the gateway (gateway/api.cpp).
std::set<std::pair<std::string, std::string>> served() {
  std::set<std::pair<std::string, std::string>> out;
  for (const auto& r : kontor::gateway::served_routes())
    out.emplace(std::string(r.method), std::string(r.path));
  return out;
}

/// The response codes the document lists for an operation.
std::set<std::string> documented_codes(const json::object& doc, const std::string& method,
                                       const std::string& path) {
  std::set<std::string> out;
  for (const auto& [code, r] : doc.at("paths").at(path).at(lower(method)).at("responses").as_object())
    out.emplace(code);
  return out;
}

/// Follows a local "$ref" ("#/components/parameters/id"); nullptr when it does not resolve.
const json::value* resolve(const json::object& doc, std::string_view ref) {
  if (!ref.starts_with("#/"))
    return nullptr;
  const json::value* at = nullptr;
  const json::object* in = &doc;
  ref.remove_prefix(2);
  while (in) {
    auto part = ref.substr(0, ref.find('/'));
    auto i = in->find(part);
    if (i == in->end())
      return nullptr;
    at = &i->value();
    if (part.size() == ref.size())
      return at;
    ref.remove_prefix(part.size() + 1);
    in = at->if_object();
  }
  return nullptr;
}

/// Every "$ref" anywhere under `v` that does not resolve in `doc`.
void unresolved_refs(const json::object& doc, const json::value& v, std::vector<std::string>& out) {
  if (const auto* o = v.if_object()) {
    for (const auto& [key, child] : *o) {
      if (key == "$ref" && child.is_string() && !resolve(doc, child.as_string()))
        out.emplace_back(child.as_string());
      unresolved_refs(doc, child, out);
    }
  } else if (const auto* a = v.if_array()) {
    for (const auto& child : *a)
      unresolved_refs(doc, child, out);
  }
}

/// The names of `{...}` segments of a path template.
std::set<std::string> template_names(std::string_view path) {
  std::set<std::string> out;
  for (auto open = path.find('{'); open != std::string_view::npos; open = path.find('{', open + 1))
    out.emplace(path.substr(open + 1, path.find('}', open) - open - 1));
  return out;
}

/// Every field the schema `name` requires is in `body`.
void check_required(const json::object& doc, const std::string& name, const json::value& body) {
  const auto& schema = doc.at("components").at("schemas").at(name).as_object();
  REQUIRE(body.is_object());
  for (const auto& field : schema.at("required").as_array()) {
    INFO("schema " << name << " requires " << field << "; answer: " << json::serialize(body));
    CHECK(body.as_object().contains(field.as_string()));
  }
}

} // namespace

TEST_CASE("GET /openapi.json documents exactly the routes the gateway serves, with the statuses "
          "they answer",
          "[component][openapi]") {
  running_node node;
  http_client c{node.port()};

  auto r = c.get("/openapi.json");
  REQUIRE(r.status == 200);
  CHECK(r.header("content-type").find("application/json") == 0);
  const auto doc_value = body_json(r);
  REQUIRE(doc_value.is_object());
  const auto& doc = doc_value.as_object();
  REQUIRE(doc.contains("openapi"));
  CHECK(std::string(doc.at("openapi").as_string()).rfind("3.0.", 0) == 0);
  REQUIRE(doc.contains("info"));
  CHECK(doc.at("info").at("title").is_string());
  CHECK(doc.at("info").at("version").is_string());
  REQUIRE(doc.contains("paths"));
  REQUIRE(doc.at("paths").is_object());

  SECTION("every $ref resolves, and each operation declares exactly its path's parameters") {
    std::vector<std::string> bad;
    unresolved_refs(doc, doc_value, bad);
    INFO("unresolved: " << bad.size() << (bad.empty() ? "" : " e.g. " + bad.front()));
    CHECK(bad.empty());
    for (const auto& [method, path] : documented(doc)) {
      std::set<std::string> declared;
      const auto& op = doc.at("paths").at(path).at(lower(method)).as_object();
      if (const auto* params = op.if_contains("parameters"))
        for (const auto& p : params->as_array()) {
          const json::value* param = &p;
          if (const auto* ref = p.as_object().if_contains("$ref"))
            param = resolve(doc, ref->as_string());
          REQUIRE(param);
          if (param->at("in") == "path") {
            CHECK(param->at("required") == true);
            declared.emplace(param->at("name").as_string());
          }
        }
      INFO(method << " " << path);
      CHECK(declared == template_names(path));
      CHECK(op.at("responses").as_object().size() > 0);
    }
  }

  SECTION("the document and the route table name the same operations") {
    const auto docs = documented(doc);
    const auto routes = served();
    for (const auto& op : routes) {
      INFO("served but not documented: " << op.first << " " << op.second);
      CHECK(docs.count(op) == 1);
    }
    for (const auto& op : docs) {
      INFO("documented but not served: " << op.first << " " << op.second);
      CHECK(routes.count(op) == 1);
    }
  }

  SECTION("every route is served, other methods on its path get 405, and each status is documented") {
    REQUIRE(c.post("/accounts", open_body("oa-1")).status == 201);
    REQUIRE(c.post("/accounts/oa-1/transactions", tx_body("t1", "deposit", 100)).status == 201);
    REQUIRE(caught_up(c));
    auto concrete = [](std::string path) {
      if (auto p = path.find("{id}"); p != std::string::npos)
        path.replace(p, 4, "oa-1");
      return path;
    };
    std::set<std::string> paths;
    for (const auto& [method, path] : served())
      paths.insert(path);
    for (const auto& path : paths) {
      std::set<std::string> allowed;
      for (const auto& [method, p] : served())
        if (p == path)
          allowed.insert(method);
      for (const auto& method : http_methods) {
        // No body: commands that need one answer 400, which is documented for each of them.
        auto answer = c.request(method, concrete(path));
        INFO(method << " " << path << " → " << answer.status << " " << answer.body);
        if (allowed.count(method)) {
          CHECK(answer.status != 405);
          CHECK(!(answer.status == 404 && answer.body.find("\"not_found\"") != std::string::npos));
          CHECK(documented_codes(doc, method, path).count(std::to_string(answer.status)) == 1);
        } else {
          CHECK(answer.status == 405);
          std::string allow;
          for (const auto& m : allowed)
            allow += (allow.empty() ? "" : ", ") + m + (m == "GET" ? ", HEAD" : "");
          CHECK(answer.header("allow") == allow);
        }
      }
    }
    CHECK(c.get("/no/such/route").status == 404);
  }

  SECTION("representative answers have the documented status and the schema's fields") {
    struct probe {
      std::string method, target, body, path;
      int status;
    };
    REQUIRE(c.post("/accounts", open_body("oa-2")).status == 201);
    const std::vector<probe> probes = {
      {"GET", "/accounts/nobody/explain", "", "/accounts/{id}/explain", 404},
      {"GET", "/accounts/nobody?consistent=true", "", "/accounts/{id}", 404},
      {"GET", "/accounts/nobody/events", "", "/accounts/{id}/events", 404},
      {"POST", "/accounts/nobody/transactions", tx_body("x", "deposit", 1),
       "/accounts/{id}/transactions", 404},
      {"POST", "/accounts", open_body("oa-2"), "/accounts", 409},
      {"PUT", "/accounts/oa-2/limit", R"({"limit":-1})", "/accounts/{id}/limit", 400},
      {"POST", "/accounts/oa-2/unlock", "", "/accounts/{id}/unlock", 409},
      {"PUT", "/accounts/oa-2/limit", R"({"limit":5})", "/accounts/{id}/limit", 200},
      {"GET", "/events?limit=0", "", "/events", 400},
      {"GET", "/accounts/bad%20id/explain", "", "/accounts/{id}/explain", 400},
    };
    for (const auto& p : probes) {
      auto answer = c.request(p.method, p.target, p.body);
      INFO(p.method << " " << p.target << " → " << answer.status << " " << answer.body);
      CHECK(answer.status == p.status);
      CHECK(documented_codes(doc, p.method, p.path).count(std::to_string(p.status)) == 1);
      if (answer.status >= 400)
        check_required(doc, "Error", body_json(answer));
    }
    REQUIRE(caught_up(c));
    check_required(doc, "Account", body_json(c.get("/accounts/oa-2")));
    check_required(doc, "Explain", body_json(c.get("/accounts/oa-2/explain")));
    check_required(doc, "Shards", body_json(c.get("/cluster/shards")));
    check_required(doc, "Members", body_json(c.get("/cluster/members")));
    check_required(doc, "FeedPage", body_json(c.get("/events")));
    check_required(doc, "TransactionResult",
                   body_json(c.post("/accounts/oa-2/transactions", tx_body("t2", "deposit", 5))));
  }
  CHECK(node.stop() == 0);
}

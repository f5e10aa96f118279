#include "tests/support/cluster_views.hpp"

#include <algorithm>
#include <limits>

#include <boost/json.hpp>

namespace kontor::test {

namespace json = boost::json;

namespace {

const json::value* field(const json::object& o, const char* name) {
  return o.if_contains(name);
}

std::optional<std::string> string_field(const json::object& o, const char* name) {
  auto* v = field(o, name);
  if (!v || !v->is_string())
    return std::nullopt;
  return std::string(v->get_string());
}

/// A string or null ("" / nullopt for null); false when absent or of another type.
bool nullable_string(const json::object& o, const char* name, std::optional<std::string>& out) {
  auto* v = field(o, name);
  if (!v)
    return false;
  if (v->is_null()) {
    out.reset();
    return true;
  }
  if (!v->is_string())
    return false;
  out = std::string(v->get_string());
  return true;
}

std::optional<std::int64_t> int_field(const json::object& o, const char* name) {
  auto* v = field(o, name);
  if (!v)
    return std::nullopt;
  if (v->is_int64())
    return v->get_int64();
  constexpr auto max = static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max());
  if (v->is_uint64() && v->get_uint64() <= max)
    return static_cast<std::int64_t>(v->get_uint64());
  return std::nullopt;
}

std::vector<std::string> names_where(const std::vector<member_view>& members, bool reachable) {
  std::vector<std::string> out;
  for (auto& m : members)
    if (m.status == "up" && m.reachable == reachable)
      out.push_back(m.node);
  std::sort(out.begin(), out.end());
  return out;
}

} // namespace

const member_view* members_view::find(const std::string& node) const {
  for (auto& m : members)
    if (m.node == node)
      return &m;
  return nullptr;
}

std::vector<std::string> members_view::up_and_reachable() const {
  return names_where(members, true);
}

std::vector<std::string> members_view::up_unreachable() const {
  return names_where(members, false);
}

std::optional<members_view> parse_members(const json::value& body) {
  if (!body.is_object())
    return std::nullopt;
  auto& o = body.get_object();
  members_view out;
  auto self = string_field(o, "self");
  std::optional<std::string> leader;
  auto* list = field(o, "members");
  if (!self || !nullable_string(o, "leader", leader) || !list || !list->is_array())
    return std::nullopt;
  out.self = *self;
  out.leader = leader.value_or("");
  for (auto& item : list->get_array()) {
    if (!item.is_object())
      return std::nullopt;
    auto& m = item.get_object();
    auto node = string_field(m, "node");
    auto address = string_field(m, "address");
    auto status = string_field(m, "status");
    auto* reachable = field(m, "reachable");
    auto age = int_field(m, "age");
    if (!node || !address || !status || !reachable || !reachable->is_bool() || !age)
      return std::nullopt;
    member_view mv{*node, *address, *status, reachable->get_bool(), *age,
                   string_field(m, "incarnation").value_or(""), {}};
    if (auto* roles = field(m, "roles"); roles && roles->is_array())
      for (auto& r : roles->get_array())
        if (r.is_string())
          mv.roles.emplace_back(r.get_string());
    out.members.push_back(std::move(mv));
  }
  return out;
}

std::optional<shards_view> parse_shards(const json::value& body) {
  if (!body.is_object())
    return std::nullopt;
  auto& o = body.get_object();
  shards_view out;
  auto* list = field(o, "shards");
  if (!nullable_string(o, "coordinator", out.coordinator) || !list || !list->is_array())
    return std::nullopt;
  for (auto& item : list->get_array()) {
    if (!item.is_object())
      return std::nullopt;
    auto& s = item.get_object();
    shard_view sv;
    auto shard = int_field(s, "shard");
    auto state = string_field(s, "state");
    auto entities = int_field(s, "entities");
    if (!shard || !state || !entities || !nullable_string(s, "owner", sv.owner))
      return std::nullopt;
    sv.shard = *shard;
    sv.state = *state;
    sv.entities = *entities;
    out.shards.push_back(std::move(sv));
  }
  return out;
}

bool converged_up(const members_view& v, std::size_t n) {
  return v.up_and_reachable().size() == n && v.up_unreachable().empty();
}

bool converged_up(const members_view& v, std::vector<std::string> up) {
  std::sort(up.begin(), up.end());
  return v.up_and_reachable() == up && v.up_unreachable().empty();
}

bool leader_agreed(const std::vector<members_view>& views) {
  if (views.empty())
    return false;
  for (auto& v : views) {
    auto* leader = v.find(v.leader);
    if (v.leader != views.front().leader || !leader || leader->status != "up" || !leader->reachable)
      return false;
  }
  return !views.front().leader.empty();
}

bool all_allocated(const shards_view& v, const std::set<std::string>& nodes) {
  return !v.shards.empty() && std::all_of(v.shards.begin(), v.shards.end(), [&](const shard_view& s) {
    return s.state == "allocated" && s.owner && nodes.count(*s.owner) == 1;
  });
}

} // namespace kontor::test

#include "runtime/cluster/member.hpp"

namespace kontor::cluster {

const char* to_string(member_status s) noexcept {
  switch (s) {
    case member_status::joining:
      return "joining";
    case member_status::up:
      return "up";
    case member_status::leaving:
      return "leaving";
    case member_status::exiting:
      return "exiting";
    case member_status::down:
      return "down";
    case member_status::removed:
      return "removed";
  }
  return "unknown";
}

const member* membership::find(const node_id& id) const {
  for (const auto& m : members)
    if (m.id == id)
      return &m;
  return nullptr;
}

member* membership::find(const node_id& id) {
  for (auto& m : members)
    if (m.id == id)
      return &m;
  return nullptr;
}

bool cluster_state::reaches(const node_id& id) const {
  if (id == self)
    return true;
  auto i = reachable.find(id);
  return i != reachable.end() && i->second;
}

caf::actor cluster_state::service(const node_id& id, const std::string& name) const {
  auto i = services.find(id);
  if (i == services.end())
    return {};
  auto j = i->second.find(name);
  return j == i->second.end() ? caf::actor{} : j->second;
}

std::vector<const member*> cluster_state::serving() const {
  std::vector<const member*> out;
  for (const auto& m : view.members)
    if (m.status == member_status::up || m.status == member_status::leaving)
      out.push_back(&m);
  return out;
}

} // namespace kontor::cluster

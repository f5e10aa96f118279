#include "gateway/email_entity.hpp"

namespace kontor::gateway {

namespace {

/// One address's reservation and the runtime's hooks around decide/evolve.
class reservation_logic final : public sharding::entity_logic {
public:
  explicit reservation_logic(const entity_id& id)
    : state_(email::initial(std::string_view{id}.substr(email::entity_type.size() + 1))) {}

  restored restore(sequence_nr seq, std::string_view bytes) override {
    email::pb::Snapshot snap;
    if (!snap.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))
        || snap.address() != state_.address || snap.version() != seq)
      return restored::unreadable;
    if (snap.schema_version() != 1)
      return restored::outdated;
    state_ = email::from_snapshot(snap);
    return restored::ok;
  }

  bool recover(sequence_nr seq, std::string_view bytes) override {
    auto ev = email::parse_event(bytes);
    if (!ev || ev->seq() != seq || ev->address() != state_.address)
      return false;
    email::evolve(state_, *ev);
    return true;
  }

  sharding::effect handle(std::string_view bytes, epoch_ms now) override {
    sharding::effect out;
    email::pb::Command cmd;
    if (!cmd.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) {
      email::decision bad;
      bad.invalid = true;
      bad.message = "unreadable command";
      out.reply = email::reply_for(state_, bad).SerializeAsString();
      return out;
    }
    auto d = email::decide(state_, cmd, now);
    if (d.events.empty()) {
      out.reply = email::reply_for(state_, d).SerializeAsString();
      return out;
    }
    for (const auto& ev : d.events)
      out.events.push_back(ev.SerializeAsString());
    pending_ = std::move(d);
    return out;
  }

  std::string persisted() override {
    for (const auto& ev : pending_.events)
      email::evolve(state_, ev);
    auto reply = email::reply_for(state_, pending_).SerializeAsString();
    pending_ = {};
    return reply;
  }

  void aborted() override { pending_ = {}; }

  std::string snapshot() const override { return email::to_snapshot(state_).SerializeAsString(); }

private:
  email::reservation state_;
  email::decision pending_;
};

} // namespace

sharding::entity_type email_entity_type() {
  return {std::string{email::entity_type}, [](const entity_id& id) -> std::unique_ptr<sharding::entity_logic> {
            return std::make_unique<reservation_logic>(id);
          }};
}

} // namespace kontor::gateway

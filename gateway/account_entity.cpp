#include "gateway/account_entity.hpp"

namespace kontor::gateway {

namespace {

/// One account's state and the runtime's hooks around decide/evolve.
class account_logic final : public sharding::entity_logic {
public:
  account_logic(const entity_id& id, const account::rules& rules)
    : state_(account::initial_state(id)), rules_(rules) {}

  restored restore(sequence_nr seq, std::string_view bytes) override {
    account::pb::Snapshot stored;
    if (!stored.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))
        || stored.account_id() != state_.id || stored.version() != seq)
      return restored::unreadable;
    // Written by a newer build: its state may hold what this one cannot represent, while the
    // events (if this build can read them) say everything.
    if (stored.schema_version() > account::current_snapshot_version)
      return restored::outdated;
    auto snap = account::upcast(std::move(stored));
    if (!snap)
      return restored::unreadable;
    // Written under a smaller tx-window than today's: it has forgotten txIds and keys that a
    // replay of the events remembers.
    if (!account::snapshot_covers_window(*snap, rules_))
      return restored::outdated;
    state_ = account::from_snapshot(*snap, rules_);
    return restored::ok;
  }

  bool recover(sequence_nr seq, std::string_view bytes) override {
    auto ev = account::parse_event(bytes);
    if (!ev || ev->seq() != seq || ev->account_id() != state_.id)
      return false;
    account::evolve(state_, *ev, rules_);
    return true;
  }

  sharding::effect handle(std::string_view bytes, epoch_ms now) override {
    sharding::effect out;
    account::pb::Command cmd;
    if (!cmd.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) {
      account::decision bad;
      bad.rejection.emplace();
      bad.rejection->set_code(account::pb::INVALID_FIELD);
      bad.rejection->set_field("body");
      bad.rejection->set_message("unreadable command");
      out.reply = account::reply_for(state_, bad).SerializeAsString();
      return out;
    }
    auto d = account::decide(state_, cmd, now, rules_);
    if (d.events.empty()) {
      out.reply = account::reply_for(state_, d).SerializeAsString();
      return out;
    }
    out.events.reserve(d.events.size());
    for (const auto& ev : d.events)
      out.events.push_back(ev.SerializeAsString());
    pending_ = std::move(d);
    return out;
  }

  std::string persisted() override {
    for (const auto& ev : pending_.events)
      account::evolve(state_, ev, rules_);
    auto reply = account::reply_for(state_, pending_).SerializeAsString();
    pending_ = {};
    return reply;
  }

  void aborted() override { pending_ = {}; }

  std::string snapshot() const override {
    return account::to_snapshot(state_).SerializeAsString();
  }

private:
  account::state state_;
  const account::rules& rules_;
  account::decision pending_;
};

} // namespace

sharding::entity_factory account_entity_factory(const account::rules& rules) {
  return [&rules](const entity_id& id) -> std::unique_ptr<sharding::entity_logic> {
    return std::make_unique<account_logic>(id, rules);
  };
}

} // namespace kontor::gateway

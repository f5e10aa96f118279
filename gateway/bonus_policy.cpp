#include "gateway/bonus_policy.hpp"
#include "gateway/account_entity.hpp"

#include <google/protobuf/util/json_util.h>

#include "domain/account/account.hpp"

namespace kontor::gateway {

namespace {

using account::pb::Command;
using account::pb::Reply;

/// How one answer of the bonus account's entity ends the attempt.
policy::attempt_result from_answer(const entity_answer& a) {
  using status = entity_answer::status;
  switch (a.code) {
    case status::ok:
      break;
    case status::timeout:     // outcome unknown: the same txId again is harmless
    case status::unavailable: // the journal refused: nothing appended
    case status::stopped:
    case status::no_shard:    // the shard's owner is down or the shard moves
    case status::overloaded:
    case status::failed:
      return {policy::outcome::retry, a.message};
  }
  Reply reply;
  if (!reply.ParseFromString(a.reply))
    return {policy::outcome::retry, "the bonus account's answer could not be read"};
  if (!reply.has_rejection())
    return {policy::outcome::done, reply.replayed() ? "already paid (txId replayed)" : ""};
  const auto& rej = reply.rejection();
  // The cap is a normal end of a bonus; anything else (no such account, another currency, a
  // txId taken by another transaction) would fail every time: a dead letter.
  if (rej.code() == account::pb::BALANCE_CAP_REACHED)
    return {policy::outcome::done, rej.message()};
  return {policy::outcome::rejected,
          account::pb::RejectionCode_Name(rej.code()) + ": " + rej.message()};
}

class bonus final : public policy::policy_handler {
public:
  bonus(bonus_settings s, const bridge& entities) : settings_(std::move(s)), entities_(entities) {}

  std::string name() const override { return "bonus"; }

  std::optional<policy::effect> select(const persistence::stored_event& stored) override {
    if (!is_account_stream(stored))
      return std::nullopt;
    auto ev = account::parse_event(stored.payload);
    if (!ev || !ev->has_money_deposited() || ev->account_id() == settings_.account)
      return std::nullopt;
    const auto& d = ev->money_deposited();
    // A bonus never earns a bonus (no feedback loop, even into another account).
    if (d.source() == account::deposit_source_bonus)
      return std::nullopt;
    auto amount = bonus_of(d.amount(), settings_.rate_per_mille);
    if (amount <= 0)
      return std::nullopt;
    auto tx = bonus_tx_id(ev->account_id(), ev->seq());
    Command cmd;
    cmd.set_account_id(settings_.account);
    auto* dep = cmd.mutable_deposit_money();
    dep->set_tx_id(tx);
    dep->set_amount(amount);
    dep->set_currency(d.currency());
    dep->set_source(std::string{account::deposit_source_bonus});
    if (settings_.max_balance > 0)
      dep->set_max_balance(settings_.max_balance);
    // JSON in the outbox, so the dead-letter route shows it readably.
    std::string json;
    google::protobuf::util::JsonPrintOptions opts;
    opts.preserve_proto_field_names = false;
    if (!google::protobuf::util::MessageToJsonString(cmd, &json, opts).ok())
      return std::nullopt;
    return policy::effect{tx, std::move(json)};
  }

  policy::attempt_result carry_out(const policy::effect& e) override {
    Command cmd;
    if (!google::protobuf::util::JsonStringToMessage(e.payload, &cmd).ok())
      return {policy::outcome::rejected, "not a deposit command: " + e.payload};
    auto answer = entities_.ask_and_wait(cmd.account_id(), cmd.SerializeAsString(), settings_.timeout);
    if (!answer)
      return {policy::outcome::retry, "no answer from the bonus account in time"};
    return from_answer(*answer);
  }

private:
  bonus_settings settings_;
  const bridge& entities_;
};

} // namespace

std::int64_t bonus_of(std::int64_t amount, std::int64_t rate_per_mille) {
  if (amount <= 0 || rate_per_mille <= 0)
    return 0;
  // floor(amount * rate / 1000) without overflow (rate <= 1000).
  return amount / 1000 * rate_per_mille + amount % 1000 * rate_per_mille / 1000;
}

std::string bonus_tx_id(const std::string& account, std::uint64_t seq) {
  return "bonus:" + account + ":" + std::to_string(seq);
}

std::shared_ptr<policy::policy_handler> bonus_policy(bonus_settings settings, const bridge& entities) {
  return std::make_shared<bonus>(std::move(settings), entities);
}

} // namespace kontor::gateway

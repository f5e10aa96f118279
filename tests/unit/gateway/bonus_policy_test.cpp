// The CEO bonus policy's choice of effects: which deposits pay a bonus, how much, and under
// which txId (carrying them out is the component test's).

#include <catch2/catch.hpp>
#include <google/protobuf/util/json_util.h>

#include <caf/all.hpp>

#include "domain/account/account.hpp"
#include "gateway/bonus_policy.hpp"

using namespace kontor;

namespace {

/// A stored MoneyDeposited of `amount` into `account` at `seq`, with `source`.
persistence::stored_event deposited(const std::string& account, std::uint64_t seq,
                                    std::int64_t amount, const std::string& source = "api") {
  account::pb::Event ev;
  ev.set_schema_version(2);
  ev.set_account_id(account);
  ev.set_seq(seq);
  auto* d = ev.mutable_money_deposited();
  d->set_tx_id("t" + std::to_string(seq));
  d->set_amount(amount);
  d->set_currency("EUR");
  d->set_source(source);
  persistence::stored_event stored;
  stored.persistence_id = account;
  stored.seq = seq;
  stored.payload = ev.SerializeAsString();
  return stored;
}

/// A policy into "bonus" at `rate` per mille with cap `cap`, over a bridge that is never asked.
struct fixture {
  caf::actor_system_config cfg;
  caf::actor_system sys{cfg};
  gateway::bridge entities{sys, caf::actor{}, std::chrono::seconds(1)};
  std::shared_ptr<policy::policy_handler> handler;
  fixture(std::int64_t rate, std::int64_t cap)
    : handler(gateway::bonus_policy({"bonus", rate, cap, std::chrono::seconds(1)}, entities)) {}
  ~fixture() { caf::anon_send_exit(entities.actor(), caf::exit_reason::user_shutdown); }
};

} // namespace

TEST_CASE("bonus_of rounds down to minor units", "[bonus]") {
  CHECK(gateway::bonus_of(99, 10) == 0);
  CHECK(gateway::bonus_of(100, 10) == 1);
  CHECK(gateway::bonus_of(12345, 10) == 123);
  CHECK(gateway::bonus_of(12345, 25) == 308);
  CHECK(gateway::bonus_of(4'000'000'000'000'000'000, 1000) == 4'000'000'000'000'000'000);
}

TEST_CASE("the bonus policy deposits floor(amount * rate) with source bonus, a txId from the "
          "event and the cap",
          "[bonus]") {
  fixture f{10, 5000};
  auto e = f.handler->select(deposited("acc-1", 7, 12345));
  REQUIRE(e);
  CHECK(e->key == "bonus:acc-1:7");
  account::pb::Command cmd;
  REQUIRE(google::protobuf::util::JsonStringToMessage(e->payload, &cmd).ok());
  CHECK(cmd.account_id() == "bonus");
  REQUIRE(cmd.has_deposit_money());
  CHECK(cmd.deposit_money().tx_id() == "bonus:acc-1:7");
  CHECK(cmd.deposit_money().amount() == 123);
  CHECK(cmd.deposit_money().currency() == "EUR");
  CHECK(cmd.deposit_money().source() == "bonus");
  CHECK(cmd.deposit_money().max_balance() == 5000);
  // The same event gives the same effect (a redelivery is the same transaction).
  auto again = f.handler->select(deposited("acc-1", 7, 12345));
  REQUIRE(again);
  CHECK(again->key == e->key);
  CHECK(again->payload == e->payload);
}

TEST_CASE("the bonus policy skips the bonus account, bonuses and bonuses of 0", "[bonus]") {
  fixture f{10, 0};
  CHECK_FALSE(f.handler->select(deposited("bonus", 3, 100000)));
  CHECK_FALSE(f.handler->select(deposited("acc-1", 3, 100000, "bonus")));
  CHECK_FALSE(f.handler->select(deposited("acc-1", 3, 99)));
  auto e = f.handler->select(deposited("acc-1", 3, 100));
  REQUIRE(e);
  account::pb::Command cmd;
  REQUIRE(google::protobuf::util::JsonStringToMessage(e->payload, &cmd).ok());
  CHECK_FALSE(cmd.deposit_money().has_max_balance()); // no cap configured
}

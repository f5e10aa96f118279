#include "gateway/email_change.hpp"

#include <memory>

#include "domain/account/account.hpp"
#include "runtime/core/log.hpp"

namespace kontor::gateway {

namespace {

using status = entity_answer::status;

/// True when the request surely never reached the entity (or it appended nothing): a claim
/// made for it may be cancelled.
bool surely_not_recorded(const entity_answer& a) {
  switch (a.code) {
    case status::unavailable:
    case status::stopped:
    case status::no_shard:
    case status::overloaded:
      return true;
    case status::ok:
    case status::timeout:
    case status::failed:
      break;
  }
  return false;
}

/// One change in progress: the steps share it.
struct change : std::enable_shared_from_this<change> {
  const bridge* entities;
  email_settings settings;
  std::string account;
  std::string address;
  std::optional<std::uint64_t> expected_version;
  std::function<void(email_change_result)> done;
  std::uint64_t claim = 0;

  void finish(email_change_result::kind k, entity_answer a) { done({k, std::move(a)}); }

  void ask_account(account::pb::Command cmd, std::function<void(entity_answer)> then) {
    cmd.set_account_id(account);
    entities->ask(account, cmd.SerializeAsString(), std::move(then));
  }

  void ask_reservation(const std::string& addr, email::pb::Command cmd,
                       std::function<void(entity_answer, email::pb::Reply)> then) {
    entities->ask(email::entity_id_of(addr), cmd.SerializeAsString(),
                  [then = std::move(then)](entity_answer a) {
                    email::pb::Reply reply;
                    if (a.code == status::ok && !reply.ParseFromString(a.reply)) {
                      a.code = status::failed;
                      a.message = "unreadable answer from the e-mail reservation";
                    }
                    then(std::move(a), std::move(reply));
                  });
  }

  /// 1. The account as it is now.
  void start() {
    account::pb::Command cmd;
    cmd.mutable_get_account();
    if (expected_version)
      cmd.set_expected_version(*expected_version);
    ask_account(std::move(cmd), [self = shared_from_this()](entity_answer a) { self->on_account(std::move(a)); });
  }

  void on_account(entity_answer a) {
    account::pb::Reply reply;
    if (a.code != status::ok || !reply.ParseFromString(a.reply) || reply.has_rejection())
      return finish(email_change_result::kind::account, std::move(a));
    if (reply.account().email() == address)
      return finish(email_change_result::kind::account, std::move(a)); // nothing to change
    email::pb::Command cmd = reservation_command(address);
    auto* r = cmd.mutable_reserve();
    r->set_account(account);
    r->set_timeout_ms(settings.reservation_timeout.count());
    ask_reservation(address, std::move(cmd), [self = shared_from_this()](entity_answer a, email::pb::Reply r) {
      self->on_reserved(std::move(a), std::move(r));
    });
  }

  /// 2. The claim.
  void on_reserved(entity_answer a, email::pb::Reply reply) {
    if (a.code != status::ok)
      return finish(email_change_result::kind::failed, std::move(a));
    if (reply.invalid()) {
      a.code = status::failed;
      a.message = reply.message();
      return finish(email_change_result::kind::failed, std::move(a));
    }
    if (reply.taken()) {
      account::pb::Command cmd;
      auto* f = cmd.mutable_record_email_change_failed();
      f->set_email(address);
      f->set_reason("email_taken");
      return ask_account(std::move(cmd), [self = shared_from_this()](entity_answer a) {
        self->finish(email_change_result::kind::taken, std::move(a));
      });
    }
    claim = reply.view().claim();
    account::pb::Command cmd;
    auto* c = cmd.mutable_change_email();
    c->set_email(address);
    c->set_lease_until_ms(reply.view().expires_at_ms() - settings.lease_guard.count());
    if (expected_version)
      cmd.set_expected_version(*expected_version);
    ask_account(std::move(cmd), [self = shared_from_this()](entity_answer a) { self->on_changed(std::move(a)); });
  }

  /// 3. The account's record of it.
  void on_changed(entity_answer a) {
    account::pb::Reply reply;
    const bool answered = a.code == status::ok && reply.ParseFromString(a.reply);
    if (!answered || reply.has_rejection()) {
      if ((answered && reply.has_rejection()) || surely_not_recorded(a)) {
        // Not recorded: the address is free again at once (not only after the timeout).
        auto cmd = reservation_command(address);
        cmd.mutable_cancel()->set_account(account);
        cmd.mutable_cancel()->set_claim(claim);
        return ask_reservation(address, std::move(cmd),
                               [self = shared_from_this(), a](entity_answer, email::pb::Reply) mutable {
                                 self->finish(email_change_result::kind::account, std::move(a));
                               });
      }
      // Unknown (a timeout): the claim's timeout settles it against the account.
      return finish(email_change_result::kind::account, std::move(a));
    }
    std::string previous;
    for (const auto& ev : reply.events())
      if (ev.has_email_changed())
        previous = ev.email_changed().previous();
    auto cmd = reservation_command(address);
    cmd.mutable_confirm()->set_account(account);
    ask_reservation(address, std::move(cmd),
                    [self = shared_from_this(), a = std::move(a), previous](entity_answer c, email::pb::Reply) mutable {
                      if (c.code != status::ok)
                        log(log_level::warn, "email",
                            "confirming " + self->address + " for account " + self->account
                              + " failed (" + c.message + "); its timeout confirms it");
                      self->release_previous(std::move(a), previous);
                    });
  }

  /// 4. The old address goes (the e-mail policy does it too, from EmailChanged, should this
  ///    node die first).
  void release_previous(entity_answer a, const std::string& previous) {
    if (previous.empty())
      return finish(email_change_result::kind::account, std::move(a));
    release_if_dropped(*entities, account, previous,
                       [self = shared_from_this(), a = std::move(a), previous](entity_answer r) mutable {
                         if (r.code != status::ok)
                           log(log_level::warn, "email",
                               "releasing " + previous + " of account " + self->account + " failed ("
                                 + r.message + "); the policy email releases it");
                         self->finish(email_change_result::kind::account, std::move(a));
                       });
  }
};

/// One release_if_dropped in progress.
struct release_check : std::enable_shared_from_this<release_check> {
  const bridge* entities;
  std::string account;
  std::string address;
  std::function<void(entity_answer)> done;

  void start() {
    auto cmd = reservation_command(address);
    cmd.mutable_get();
    entities->ask(email::entity_id_of(address), cmd.SerializeAsString(),
                  [self = shared_from_this()](entity_answer a) { self->on_reservation(std::move(a)); });
  }

  void on_reservation(entity_answer a) {
    email::pb::Reply reply;
    if (a.code != status::ok || !reply.ParseFromString(a.reply))
      return done(std::move(a));
    const auto& v = reply.view();
    if (v.status() != email::pb::HELD || v.account() != account)
      return done(std::move(a)); // not its hold (free, another's, or a claim its settle decides)
    ask_account_state(*entities, account, [self = shared_from_this(), claim = v.claim()](entity_answer a) {
      self->on_account(std::move(a), claim);
    });
  }

  void on_account(entity_answer a, std::uint64_t claim) {
    auto has = email_in_answer(a);
    if (!has)
      return done(std::move(a));
    if (*has == address)
      return done(std::move(a)); // it has it (again): keep the hold
    auto cmd = reservation_command(address);
    cmd.mutable_release()->set_account(account);
    cmd.mutable_release()->set_claim(claim);
    entities->ask(email::entity_id_of(address), cmd.SerializeAsString(), done);
  }
};

} // namespace

void release_if_dropped(const bridge& entities, std::string account, std::string address,
                        std::function<void(entity_answer)> done) {
  auto r = std::make_shared<release_check>();
  r->entities = &entities;
  r->account = std::move(account);
  r->address = std::move(address);
  r->done = std::move(done);
  r->start();
}

void ask_account_state(const bridge& entities, const std::string& account,
                       std::function<void(entity_answer)> done) {
  account::pb::Command cmd;
  cmd.set_account_id(account);
  cmd.mutable_get_account();
  entities.ask(account, cmd.SerializeAsString(), std::move(done));
}

std::optional<std::string> email_in_answer(const entity_answer& a) {
  account::pb::Reply reply;
  if (a.code != status::ok || !reply.ParseFromString(a.reply))
    return std::nullopt;
  if (reply.has_rejection())
    return std::string{}; // no such account: it has none
  return reply.account().email();
}

email::pb::Command reservation_command(const std::string& address) {
  email::pb::Command cmd;
  cmd.set_address(address);
  return cmd;
}

void change_email(const bridge& entities, const email_settings& settings, std::string account,
                  std::string address, std::optional<std::uint64_t> expected_version,
                  std::function<void(email_change_result)> done) {
  auto c = std::make_shared<change>();
  c->entities = &entities;
  c->settings = settings;
  c->account = std::move(account);
  c->address = std::move(address);
  c->expected_version = expected_version;
  c->done = std::move(done);
  c->start();
}

} // namespace kontor::gateway

#include "runtime/policy/checkpoint.hpp"

#include <algorithm>
#include <memory>

#include "runtime/core/bytes.hpp"

namespace kontor::policy {

namespace {

// Commands: 'A' + positions (advance), 'G' (read). Events and snapshots: 'P' + positions.
// Replies: 'P' + positions. Positions: one big-endian u64 per shard.
constexpr char advance_tag = 'A';
constexpr char read_tag = 'G';
constexpr char positions_tag = 'P';

std::string encode(char tag, const std::vector<shard_offset>& p) {
  return std::string(1, tag) + to_be64s(p);
}

std::optional<std::vector<shard_offset>> decode(char tag, std::string_view bytes) {
  if (bytes.empty() || bytes.front() != tag)
    return std::nullopt;
  return from_be64s(bytes.substr(1));
}

class checkpoint_logic final : public sharding::entity_logic {
public:
  restored restore(sequence_nr, std::string_view bytes) override {
    auto p = decode(positions_tag, bytes);
    if (!p)
      return restored::unreadable;
    done_ = std::move(*p);
    return restored::ok;
  }

  bool recover(sequence_nr, std::string_view bytes) override {
    auto p = decode(positions_tag, bytes);
    if (!p)
      return false;
    done_ = std::move(*p);
    return true;
  }

  sharding::effect handle(std::string_view command, epoch_ms) override {
    sharding::effect out;
    auto wanted = decode(advance_tag, command);
    if (!wanted || (!done_.empty() && wanted->size() != done_.size())) {
      // A read, or an advance for another shard count (ignored): the positions as they are.
      out.reply = encode(positions_tag, done_);
      return out;
    }
    pending_ = done_.empty() ? *wanted : done_;
    bool raised = done_.empty();
    for (std::size_t s = 0; s < pending_.size(); ++s)
      if ((*wanted)[s] > pending_[s]) {
        pending_[s] = (*wanted)[s];
        raised = true;
      }
    if (!raised) {
      out.reply = encode(positions_tag, done_);
      return out;
    }
    out.events.push_back(encode(positions_tag, pending_));
    return out;
  }

  std::string persisted() override {
    done_ = std::move(pending_);
    pending_.clear();
    return encode(positions_tag, done_);
  }

  void aborted() override { pending_.clear(); }

  std::string snapshot() const override { return encode(positions_tag, done_); }

private:
  std::vector<shard_offset> done_;
  std::vector<shard_offset> pending_;
};

} // namespace

entity_id checkpoint_id(std::string_view name) {
  std::string id{checkpoint_type};
  id += entity_type_separator;
  id += name;
  return id;
}

sharding::entity_type checkpoint_entity_type() {
  return {std::string{checkpoint_type}, [](const entity_id&) -> std::unique_ptr<sharding::entity_logic> {
            return std::make_unique<checkpoint_logic>();
          }};
}

std::string advance_command(const std::vector<shard_offset>& done) {
  return encode(advance_tag, done);
}

std::string read_command() {
  return std::string(1, read_tag);
}

std::optional<std::vector<shard_offset>> parse_reply(std::string_view reply) {
  return decode(positions_tag, reply);
}

} // namespace kontor::policy

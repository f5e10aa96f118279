#include "runtime/sharding/shard_region.hpp"

#include <vector>

#include <caf/all.hpp>

#include "runtime/sharding/internal.hpp"

namespace kontor::sharding {

namespace {

struct region_state {
  shared_settings settings;
  std::vector<caf::actor> shards; // index: shard id; started on first use
  static inline const char* name = "kontor.region";
};

caf::behavior region_actor(caf::stateful_actor<region_state>* self, shared_settings settings) {
  self->state.settings = settings;
  self->state.shards.resize(settings->number_of_shards);
  return {
    [=](entity_envelope& env) {
      auto& st = self->state;
      auto shard = shard_of(env.id, st.settings->number_of_shards);
      auto& target = st.shards[shard];
      if (!target)
        target = self->spawn<caf::linked>(shard_actor, shard, st.settings);
      return self->delegate(target, std::move(env));
    },
  };
}

} // namespace

caf::actor spawn_shard_region(caf::actor_system& sys, region_settings settings) {
  auto shared = std::make_shared<const region_settings>(std::move(settings));
  return sys.spawn(region_actor, std::move(shared));
}

} // namespace kontor::sharding

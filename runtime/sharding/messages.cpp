#include "runtime/sharding/messages.hpp"

#include <caf/make_message.hpp>
#include <caf/message.hpp>

namespace kontor::sharding {

caf::error make_error(errc code, std::string message) {
  return caf::error(static_cast<std::uint8_t>(code), error_category,
                    caf::make_message(std::move(message)));
}

std::string error_message(const caf::error& err) {
  if (err.category() != error_category)
    return {};
  const auto& ctx = err.context();
  if (ctx.match_elements<std::string>())
    return ctx.get_as<std::string>(0);
  return {};
}

} // namespace kontor::sharding

#include "runtime/persistence/journal.hpp"

#include <future>
#include <memory>
#include <utility>

namespace kontor::persistence {

expected<append_result> journal::append(append_request req) {
  // The promise is shared with the callback so that it outlives set_value(): the waiting thread
  // may return (and drop its reference) while the writer thread is still inside set_value().
  auto result = std::make_shared<std::promise<expected<append_result>>>();
  auto future = result->get_future();
  append_async(std::move(req),
               [result](expected<append_result> r) { result->set_value(std::move(r)); });
  return future.get();
}

expected<import_result> journal::import(shard_import batch) {
  auto result = std::make_shared<std::promise<expected<import_result>>>();
  auto future = result->get_future();
  import_async(std::move(batch),
               [result](expected<import_result> r) { result->set_value(std::move(r)); });
  return future.get();
}

} // namespace kontor::persistence

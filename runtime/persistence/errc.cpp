#include "runtime/persistence/errc.hpp"

namespace kontor::persistence {

const char* to_string(errc code) noexcept {
  switch (code) {
    case errc::sequence_conflict:
      return "sequence_conflict";
    case errc::invalid_argument:
      return "invalid_argument";
    case errc::io_error:
      return "io_error";
    case errc::corrupt:
      return "corrupt";
    case errc::unknown_format:
      return "unknown_format";
    case errc::config_mismatch:
      return "config_mismatch";
    case errc::closed:
      return "closed";
  }
  return "unknown_errc";
}

} // namespace kontor::persistence

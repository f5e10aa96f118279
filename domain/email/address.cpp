#include "domain/email/address.hpp"

#include <algorithm>

namespace kontor::email {

namespace {

bool local_char(char c) {
  if (c <= 0x20 || c >= 0x7f)
    return false;
  switch (c) {
    case '"': case '(': case ')': case ',': case ':': case ';':
    case '<': case '>': case '@': case '[': case '\\': case ']':
      return false;
    default:
      return true;
  }
}

bool alnum(char c) {
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

bool valid_local(std::string_view local) {
  if (local.empty() || local.size() > 64 || local.front() == '.' || local.back() == '.'
      || local.find("..") != std::string_view::npos)
    return false;
  return std::ranges::all_of(local, local_char);
}

bool valid_domain(std::string_view domain) {
  std::size_t labels = 0;
  while (true) {
    auto dot = domain.find('.');
    auto label = domain.substr(0, dot);
    if (label.empty() || label.size() > 63 || !alnum(label.front()) || !alnum(label.back())
        || !std::ranges::all_of(label, [](char c) { return alnum(c) || c == '-'; }))
      return false;
    ++labels;
    if (dot == std::string_view::npos)
      break;
    domain.remove_prefix(dot + 1);
  }
  return labels >= 2;
}

} // namespace

std::optional<std::string> normalize(std::string_view address) {
  while (!address.empty() && (address.front() == ' ' || address.front() == '\t'))
    address.remove_prefix(1);
  while (!address.empty() && (address.back() == ' ' || address.back() == '\t'))
    address.remove_suffix(1);
  if (address.empty() || address.size() > max_address_bytes)
    return std::nullopt;
  std::string out{address};
  std::ranges::transform(out, out.begin(), [](char c) {
    return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
  });
  auto at = out.find('@');
  if (at == std::string::npos || out.find('@', at + 1) != std::string::npos)
    return std::nullopt;
  if (!valid_local(std::string_view{out}.substr(0, at))
      || !valid_domain(std::string_view{out}.substr(at + 1)))
    return std::nullopt;
  return out;
}

} // namespace kontor::email

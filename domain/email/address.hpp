#pragma once

// E-mail addresses as Kontor keeps them: one normalized form, so that two spellings of one
// address are one reservation.

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace kontor::email {

/// The longest normalized address: what fits an entity id ("email:" + address, 255 bytes).
inline constexpr std::size_t max_address_bytes = 249;

/// The normalized form of `address` (surrounding spaces removed, lower case), or nullopt when it
/// is not an address: exactly one '@'; a local part of 1-64 printable ASCII characters without
/// spaces, quotes, brackets, commas, colons, semicolons or backslashes and without leading,
/// trailing or double dots; a domain of at least two dot-separated labels of letters, digits and
/// inner hyphens (1-63 each); at most max_address_bytes in all. Addresses are compared in lower
/// case (as nearly every mail system treats them), so Mike@Example.com and mike@example.com are
/// one address.
std::optional<std::string> normalize(std::string_view address);

} // namespace kontor::email

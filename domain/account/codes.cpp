// Value checks from API.md "Values": account ids, ISO 3166-1 countries, ISO 4217 currencies and
// phone numbers. The code lists are sorted constexpr arrays searched without allocating.

#include <algorithm>
#include <array>
#include <string_view>

#include "domain/account/account.hpp"

namespace kontor::account {

namespace {

// ISO 3166-1 alpha-2: the 249 officially assigned codes (exceptionally and transitionally
// reserved codes such as UK, EU or AN are not countries of an address).
constexpr std::array<std::string_view, 249> countries = {
  "AD", "AE", "AF", "AG", "AI", "AL", "AM", "AO", "AQ", "AR", "AS", "AT", "AU", "AW", "AX", "AZ",
  "BA", "BB", "BD", "BE", "BF", "BG", "BH", "BI", "BJ", "BL", "BM", "BN", "BO", "BQ", "BR", "BS",
  "BT", "BV", "BW", "BY", "BZ", "CA", "CC", "CD", "CF", "CG", "CH", "CI", "CK", "CL", "CM", "CN",
  "CO", "CR", "CU", "CV", "CW", "CX", "CY", "CZ", "DE", "DJ", "DK", "DM", "DO", "DZ", "EC", "EE",
  "EG", "EH", "ER", "ES", "ET", "FI", "FJ", "FK", "FM", "FO", "FR", "GA", "GB", "GD", "GE", "GF",
  "GG", "GH", "GI", "GL", "GM", "GN", "GP", "GQ", "GR", "GS", "GT", "GU", "GW", "GY", "HK", "HM",
  "HN", "HR", "HT", "HU", "ID", "IE", "IL", "IM", "IN", "IO", "IQ", "IR", "IS", "IT", "JE", "JM",
  "JO", "JP", "KE", "KG", "KH", "KI", "KM", "KN", "KP", "KR", "KW", "KY", "KZ", "LA", "LB", "LC",
  "LI", "LK", "LR", "LS", "LT", "LU", "LV", "LY", "MA", "MC", "MD", "ME", "MF", "MG", "MH", "MK",
  "ML", "MM", "MN", "MO", "MP", "MQ", "MR", "MS", "MT", "MU", "MV", "MW", "MX", "MY", "MZ", "NA",
  "NC", "NE", "NF", "NG", "NI", "NL", "NO", "NP", "NR", "NU", "NZ", "OM", "PA", "PE", "PF", "PG",
  "PH", "PK", "PL", "PM", "PN", "PR", "PS", "PT", "PW", "PY", "QA", "RE", "RO", "RS", "RU", "RW",
  "SA", "SB", "SC", "SD", "SE", "SG", "SH", "SI", "SJ", "SK", "SL", "SM", "SN", "SO", "SR", "SS",
  "ST", "SV", "SX", "SY", "SZ", "TC", "TD", "TF", "TG", "TH", "TJ", "TK", "TL", "TM", "TN", "TO",
  "TR", "TT", "TV", "TW", "TZ", "UA", "UG", "UM", "US", "UY", "UZ", "VA", "VC", "VE", "VG", "VI",
  "VN", "VU", "WF", "WS", "YE", "YT", "ZA", "ZM", "ZW",
};

// ISO 4217 List One: the active alphabetic codes, including fund and precious-metal codes,
// without the test and "no currency" codes XTS and XXX. HRK is gone (Croatia uses EUR since
// 2023); codes still listed during a changeover (ANG/XCG, SLL/SLE, ZWL/ZWG) are accepted.
constexpr std::array<std::string_view, 180> currencies = {
  "AED", "AFN", "ALL", "AMD", "ANG", "AOA", "ARS", "AUD", "AWG", "AZN", "BAM", "BBD",
  "BDT", "BGN", "BHD", "BIF", "BMD", "BND", "BOB", "BOV", "BRL", "BSD", "BTN", "BWP",
  "BYN", "BZD", "CAD", "CDF", "CHE", "CHF", "CHW", "CLF", "CLP", "CNY", "COP", "COU",
  "CRC", "CUC", "CUP", "CVE", "CZK", "DJF", "DKK", "DOP", "DZD", "EGP", "ERN", "ETB",
  "EUR", "FJD", "FKP", "GBP", "GEL", "GHS", "GIP", "GMD", "GNF", "GTQ", "GYD", "HKD",
  "HNL", "HTG", "HUF", "IDR", "ILS", "INR", "IQD", "IRR", "ISK", "JMD", "JOD", "JPY",
  "KES", "KGS", "KHR", "KMF", "KPW", "KRW", "KWD", "KYD", "KZT", "LAK", "LBP", "LKR",
  "LRD", "LSL", "LYD", "MAD", "MDL", "MGA", "MKD", "MMK", "MNT", "MOP", "MRU", "MUR",
  "MVR", "MWK", "MXN", "MXV", "MYR", "MZN", "NAD", "NGN", "NIO", "NOK", "NPR", "NZD",
  "OMR", "PAB", "PEN", "PGK", "PHP", "PKR", "PLN", "PYG", "QAR", "RON", "RSD", "RUB",
  "RWF", "SAR", "SBD", "SCR", "SDG", "SEK", "SGD", "SHP", "SLE", "SLL", "SOS", "SRD",
  "SSP", "STN", "SVC", "SYP", "SZL", "THB", "TJS", "TMT", "TND", "TOP", "TRY", "TTD",
  "TWD", "TZS", "UAH", "UGX", "USD", "USN", "UYI", "UYU", "UYW", "UZS", "VED", "VES",
  "VND", "VUV", "WST", "XAF", "XAG", "XAU", "XBA", "XBB", "XBC", "XBD", "XCD", "XCG",
  "XDR", "XOF", "XPD", "XPF", "XPT", "XSU", "XUA", "YER", "ZAR", "ZMW", "ZWG", "ZWL",
};

static_assert(std::ranges::is_sorted(countries), "binary search needs a sorted list");
static_assert(std::ranges::adjacent_find(countries) == countries.end(), "duplicate country");
static_assert(std::ranges::is_sorted(currencies), "binary search needs a sorted list");
static_assert(std::ranges::adjacent_find(currencies) == currencies.end(), "duplicate currency");

constexpr bool is_digit(char c) noexcept {
  return c >= '0' && c <= '9';
}

constexpr bool is_id_char(char c) noexcept {
  return is_digit(c) || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '.' || c == '_'
         || c == '-';
}

constexpr std::size_t max_account_id_chars = 64;
constexpr std::size_t min_phone_digits = 7;
constexpr std::size_t max_phone_digits = 15;
constexpr std::size_t max_idempotency_key_chars = 255;

} // namespace

bool valid_account_id(std::string_view id) {
  // "." and ".." are path segments with a meaning of their own: no URL could address them.
  return !id.empty() && id.size() <= max_account_id_chars && std::ranges::all_of(id, is_id_char)
         && id != "." && id != "..";
}

bool valid_country(std::string_view code) {
  return code.size() == 2 && std::ranges::binary_search(countries, code);
}

bool valid_currency(std::string_view code) {
  return code.size() == 3 && std::ranges::binary_search(currencies, code);
}

bool valid_phone(std::string_view number) {
  // '+', then groups of digits separated by single spaces: "+49 126 555 555".
  if (number.empty() || number.front() != '+')
    return false;
  std::size_t digits = 0;
  bool after_space = true; // a space right after '+' is not allowed either
  for (char c : number.substr(1)) {
    if (is_digit(c)) {
      if (++digits > max_phone_digits)
        return false;
      after_space = false;
    } else if (c == ' ' && !after_space) {
      after_space = true;
    } else {
      return false;
    }
  }
  return !after_space && digits >= min_phone_digits;
}

bool valid_idempotency_key(std::string_view key) {
  return !key.empty() && key.size() <= max_idempotency_key_chars
         && std::ranges::all_of(key, [](char c) { return c >= 0x21 && c <= 0x7e; });
}

} // namespace kontor::account

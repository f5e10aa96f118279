// The value checks of API.md "Values".

#include <string>

#include "tests/unit/domain/account_support.hpp"

using namespace kontor::account;

TEST_CASE("account ids are 1-64 characters of A-Z a-z 0-9 . _ -, not . or ..", "[codes]") {
  CHECK(valid_account_id("333"));
  CHECK(valid_account_id("a"));
  CHECK(valid_account_id("Az09._-"));
  CHECK(valid_account_id(std::string(64, 'x')));
  CHECK_FALSE(valid_account_id(""));
  CHECK_FALSE(valid_account_id(std::string(65, 'x')));
  CHECK_FALSE(valid_account_id("a/b"));
  CHECK_FALSE(valid_account_id("a b"));
  CHECK_FALSE(valid_account_id("a%2F"));
  CHECK_FALSE(valid_account_id("caf\xc3\xa9"));
  CHECK_FALSE(valid_account_id(std::string_view{"a\0b", 3}));
  // Path segments with a meaning of their own: no URL could address such an account.
  CHECK_FALSE(valid_account_id("."));
  CHECK_FALSE(valid_account_id(".."));
  CHECK(valid_account_id("..."));
  CHECK(valid_account_id(".a"));
  CHECK(valid_account_id("a.."));
}

TEST_CASE("countries are assigned ISO 3166-1 alpha-2 codes", "[codes]") {
  for (auto code : {"DE", "AT", "US", "AD", "ZW", "GB", "CH", "SS", "XK"}) {
    INFO(code);
    // XK (Kosovo) is user-assigned, not an ISO code.
    CHECK(valid_country(code) == (std::string_view{code} != "XK"));
  }
  for (auto code : {"XX", "de", "De", "DEU", "D", "", "UK", "EU", "AN", "ZZ", "AA"}) {
    INFO(code);
    CHECK_FALSE(valid_country(code));
  }
}

TEST_CASE("exactly 249 country codes are known", "[codes]") {
  int count = 0;
  for (char a = 'A'; a <= 'Z'; ++a)
    for (char b = 'A'; b <= 'Z'; ++b)
      count += valid_country(std::string{a, b}) ? 1 : 0;
  CHECK(count == 249);
}

TEST_CASE("currencies are active ISO 4217 codes", "[codes]") {
  for (auto code : {"EUR", "USD", "GBP", "CHF", "JPY", "SEK", "AED", "ZWG", "XAU", "CHE"}) {
    INFO(code);
    CHECK(valid_currency(code));
  }
  for (auto code : {"ZZZ", "eur", "Eur", "EU", "EURO", "", "XXX", "XTS", "DEM", "HRK"}) {
    INFO(code);
    CHECK_FALSE(valid_currency(code));
  }
}

TEST_CASE("phone numbers are '+' and 7-15 digits with single spaces", "[codes]") {
  for (auto number : {"+49 126 555 555", "+49126555555", "+1234567", "+123456789012345",
                      "+1 2 3 4 5 6 7", "+43 1 234 5678"}) {
    INFO(number);
    CHECK(valid_phone(number));
  }
  for (auto number : {"", "+", "+123456", "+1234567890123456", "49126555555", "0049 126 555",
                      "+49-126-555-555", "+49 (126) 555", "+49  126555555", "+ 49126555555",
                      "+49126555555 ", " +49126555555", "+49 126 555 555x", "++49126555555"}) {
    INFO("'" << number << "'");
    CHECK_FALSE(valid_phone(number));
  }
}

// A seeded HTTP fuzz run against a real node: valid requests mutated (methods, targets, headers,
// bodies), pipelined, sent whole or in pieces, mixed with garbage bytes. It checks that no
// answer is a 5xx, no connection hangs, every answer is well-formed HTTP, /health keeps
// answering, no sanitizer report appears in the node's log, and at the end every account's
// state equals the fold of its audit log.
//
// KONTOR_FUZZ_SEED replays a run (the seed is printed); KONTOR_FUZZ_REQUESTS sets its length
// (default 20000, about 10 s here; run a long one against a -DKONTOR_SANITIZE=ON build).

#include <cstdlib>
#include <iostream>
#include <random>
#include <set>

#include "tests/component/node_fixture.hpp"

using namespace kontor::test;
using namespace std::chrono_literals;
namespace json = boost::json;

namespace {

std::uint64_t env_number(const char* name, std::uint64_t fallback) {
  const char* v = std::getenv(name);
  return v && *v ? std::strtoull(v, nullptr, 10) : fallback;
}

/// One request before it is turned into bytes.
struct request_spec {
  std::string method;
  std::string target;
  std::vector<std::string> headers; ///< "Name: value" lines, Host and Content-Length not included
  std::string body;
  bool host = true;            ///< send a Host header
  bool content_length = true;  ///< send a matching Content-Length (when there is a body)
  bool chunked = false;        ///< send the body chunked instead
  std::string raw;             ///< when set: these bytes instead of a request
  bool mutated = false;        ///< anything done that may make it invalid
};

request_spec make(std::string method, std::string target, std::string body,
                  std::string header = {}) {
  request_spec r;
  r.method = std::move(method);
  r.target = std::move(target);
  r.body = std::move(body);
  if (!header.empty())
    r.headers.push_back(std::move(header));
  return r;
}

class generator {
public:
  explicit generator(std::uint64_t seed) : rng_(seed) {}

  int pick(int n) { return std::uniform_int_distribution<int>(0, n - 1)(rng_); }
  bool chance(double p) { return std::bernoulli_distribution(p)(rng_); }
  template <class T> const T& one_of(const std::vector<T>& v) {
    return v[static_cast<std::size_t>(pick(static_cast<int>(v.size())))];
  }

  std::string id() { return "fz" + std::to_string(pick(8)); }
  std::int64_t amount() { return 1 + pick(chance(0.1) ? 5000 : 300); }
  std::string time() {
    return one_of<std::string>({"2000-01-01T00:00:00Z", "2099-01-01T00:00:00Z",
                                "2099-01-01T00%3A00%3A00Z", "2099-01-01T01:00:00%2B01:00",
                                "2026-02-30T00:00:00Z", "yesterday", "2099-01-01T00:00:00.123456789z"});
  }

  /// A valid request of API.md, picked at random.
  request_spec valid() {
    auto acc = "/accounts/" + id();
    switch (pick(17)) {
      case 0:
        return make("POST", "/accounts",
                    open_body(id(), pick(2000), chance(0.9) ? "EUR" : "USD",
                              one_of<std::string>({"DE", "AT", "FR"})));
      case 1:
      case 2:
      case 3:
      case 4:
        return make("POST", acc + "/transactions",
                    tx_body("tx" + std::to_string(pick(400)), chance(0.5) ? "deposit" : "purchase",
                            amount(), chance(0.95) ? "EUR" : "USD"));
      case 5:
        return make("PUT", acc + "/limit", R"({"limit":)" + std::to_string(pick(3000)) + "}");
      case 6:
        return make("POST", acc + (chance(0.5) ? "/lock" : "/unlock"),
                    chance(0.5) ? R"({"reason":"fuzz"})" : "");
      case 7:
        return make("PUT", acc + "/address",
                    R"({"street":"S 1","city":"C","zip":"1","country":")"
                      + one_of<std::string>({"DE", "AT", "IT"}) + R"("})");
      case 8:
        return make("POST", acc + "/phones",
                    R"({"number":"+49 )" + std::to_string(1000000 + pick(50)) + R"("})");
      case 9:
        return make("GET", acc + (chance(0.5) ? "?consistent=true" : ""), "");
      case 10:
        return make("GET", acc + "?asOf=" + time(), "");
      case 11:
        return make("GET", acc + "/events?from=" + std::to_string(pick(5))
                             + "&limit=" + std::to_string(1 + pick(20)), "");
      case 12:
        return make("GET", "/events?from=" + std::to_string(pick(50))
                             + "&limit=" + std::to_string(1 + pick(50)), "");
      case 13:
        return make("GET", one_of<std::string>({"/stats/countries", "/health", "/ready", "/metrics"}),
                    "");
      case 14:
        return make("HEAD", one_of<std::string>({acc, acc + "/events", "/health", "/events"}), "");
      case 15:
        // A small pool of addresses (two spellings of one): claims collide, 409 email_taken.
        return make("PUT", acc + "/email",
                    R"({"email":")" + one_of<std::string>({"a@x.de", " A@X.de", "b@x.de", "c@x.de"}) + R"("})");
      default:
        return make("GET", acc + "?consistent=true", "", "Connection: close");
    }
  }

  /// `r` with 0-3 mutations (or replaced by garbage).
  request_spec mutate(request_spec r) {
    if (chance(0.03)) {
      r.raw.clear();
      for (int i = 0, n = 1 + pick(200); i < n; ++i)
        r.raw += static_cast<char>(pick(256));
      if (chance(0.5))
        r.raw += "\r\n\r\n";
      r.mutated = true;
      return r;
    }
    for (int m = 0, n = pick(4); m < n; ++m) {
      r.mutated = true;
      switch (pick(14)) {
        case 0:
          r.method = one_of<std::string>({"GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS",
                                           "BREW", "get", "G\x01T", "TRACE", "CONNECT"});
          break;
        case 1: { // a random byte somewhere in the target
          auto pos = static_cast<std::size_t>(pick(static_cast<int>(r.target.size()) + 1));
          r.target.insert(pos, 1, static_cast<char>(33 + pick(94)));
          break;
        }
        case 2:
          r.target += one_of<std::string>({"%", "%zz", "%2F", "/..", "/.", "?asOf=%", "&from=0",
                                           "?limit=-1", "?consistent=maybe", "%00", "#frag", "?a=%2"});
          break;
        case 3:
          r.target = one_of<std::string>({"/accounts/.", "/accounts/..", "/accounts/%2E",
                                          "/accounts/" + std::string(70, 'x'), "*", "",
                                          "http://x/accounts/fz1", "/accounts/fz1/../fz2",
                                          "/" + std::string(20000, 'a')});
          break;
        case 4:
          r.host = false;
          break;
        case 5:
          r.headers.push_back(one_of<std::string>({"Host: second", "Content-Length: banana",
                                                   "Content-Length: 3", "Expect: 100-continue",
                                                   "Connection: close", "Transfer-Encoding: gzip",
                                                   "X-Big: " + std::string(20000, 'b'), "NoColon",
                                                   "If-Match: \"1\"", "If-Match: nonsense",
                                                   "Content-Type: text/plain", " folded: x"}));
          break;
        case 6:
          r.chunked = true;
          break;
        case 7:
          r.content_length = false;
          break;
        case 8: // flip bytes of the body
          for (int i = 0, k = 1 + pick(4); i < k && !r.body.empty(); ++i)
            r.body[static_cast<std::size_t>(pick(static_cast<int>(r.body.size())))] =
              static_cast<char>(pick(256));
          break;
        case 9:
          if (!r.body.empty())
            r.body.resize(static_cast<std::size_t>(pick(static_cast<int>(r.body.size()))));
          break;
        case 10: // a key twice, a huge or fractional number, deep nesting
          if (r.body.size() > 2 && r.body.back() == '}')
            r.body.insert(r.body.size() - 1,
                          one_of<std::string>({R"(,"amount":7)", R"(,"limit":1e300)",
                                               R"(,"limit":-5)", R"(,"amount":99999999999999999999)",
                                               R"(,"x":)" + std::string(40, '[') + std::string(40, ']'),
                                               R"(,"owner":"\ud800")", R"(,"id":".")"}));
          break;
        case 11:
          r.body = std::string(70000, '{');
          break;
        case 12:
          r.body = one_of<std::string>({"", "null", "[]", "{}", "\"x\"", "{\"a\":", "{}{}"});
          break;
        default:
          r.target += "?asOf=" + time();
          break;
      }
    }
    return r;
  }

  /// The bytes of `r`.
  std::string bytes(const request_spec& r) {
    if (!r.raw.empty())
      return r.raw;
    std::string out = r.method + " " + r.target + " HTTP/1.1\r\n";
    if (r.host)
      out += "Host: fuzz\r\n";
    for (const auto& h : r.headers)
      out += h + "\r\n";
    if (r.chunked) {
      out += "Transfer-Encoding: chunked\r\n\r\n";
      std::size_t pos = 0;
      while (pos < r.body.size()) {
        auto n = std::min<std::size_t>(r.body.size() - pos, 1 + static_cast<std::size_t>(pick(40)));
        char len[16];
        std::snprintf(len, sizeof len, "%zx", n);
        out += std::string(len) + "\r\n" + r.body.substr(pos, n) + "\r\n";
        pos += n;
      }
      return out + "0\r\n\r\n";
    }
    if (r.content_length && (!r.body.empty() || r.method == "POST" || r.method == "PUT"))
      out += "Content-Length: " + std::to_string(r.body.size()) + "\r\n";
    return out + "\r\n" + r.body;
  }

private:
  std::mt19937_64 rng_;
};

/// The responses in `bytes` for a batch whose requests may not be parsed one to one (a mutated
/// one can read as two): a HEAD answer is recognized by what follows its header (the next status
/// line or the end) when the batch had a HEAD in it.
std::vector<http_result> split_answers(std::string& bytes, bool batch_has_head) {
  std::vector<http_result> out;
  for (;;) {
    auto header_end = bytes.find("\r\n\r\n");
    if (header_end == std::string::npos)
      return out;
    auto rest = std::string_view(bytes).substr(header_end + 4);
    bool bodiless = batch_has_head && (rest.empty() || rest.substr(0, 7) == "HTTP/1.");
    auto one = take_responses(bytes, {bodiless}, 1);
    if (one.empty())
      return out;
    out.push_back(std::move(one[0]));
  }
}

/// An account folded from its audit log: what GET ?consistent=true must show.
struct folded {
  std::int64_t version = 0, balance = 0, limit = 0;
  std::string status = "active", country;
  std::size_t phones = 0;
  std::string email; ///< "" for none
};

folded fold(const json::array& events) {
  folded f;
  for (const auto& e : events) {
    INFO(json::serialize(e));
    CHECK(e.at("seq").as_int64() == f.version + 1); // no gap, no repeat
    f.version = e.at("seq").as_int64();
    const auto& type = e.at("type").as_string();
    const auto& d = e.at("data");
    if (type == "AccountOpened") {
      f.limit = d.at("limit").as_int64();
      f.country = std::string(d.at("country").as_string());
    } else if (type == "LimitUpdated" || type == "LimitChanged") {
      CHECK(d.at("oldLimit").as_int64() == f.limit);
      f.limit = d.at("newLimit").as_int64();
    } else if (type == "MoneyDeposited" || type == "ItemPurchased") {
      f.balance += (type == "MoneyDeposited" ? 1 : -1) * d.at("amount").as_int64();
      CHECK(d.at("newBalance").as_int64() == f.balance);
      if (type == "ItemPurchased")
        CHECK(f.balance >= -f.limit); // a purchase never overdraws
    } else if (type == "StatusChanged") {
      CHECK(d.at("from").as_string() == f.status);
      f.status = std::string(d.at("to").as_string());
    } else if (type == "AddressUpdated") {
      f.country = std::string(d.at("country").as_string());
    } else if (type == "PhoneNumberAdded") {
      ++f.phones;
    } else if (type == "EmailChanged") {
      const auto& previous = d.at("previous");
      CHECK((previous.is_null() ? std::string{} : std::string(previous.as_string())) == f.email);
      f.email = std::string(d.at("email").as_string());
    }
  }
  return f;
}

} // namespace

TEST_CASE("a seeded HTTP fuzz run: no 5xx, no hang, state equals the fold of the events",
          "[fuzz]") {
  auto seed = env_number("KONTOR_FUZZ_SEED", std::random_device{}());
  auto total = env_number("KONTOR_FUZZ_REQUESTS", 20000);
  std::cout << "fuzz: seed " << seed << ", " << total
            << " requests (KONTOR_FUZZ_SEED / KONTOR_FUZZ_REQUESTS)" << std::endl;
  INFO("fuzz seed " << seed << " (replay: KONTOR_FUZZ_SEED=" << seed << ")");

  running_node node;
  http_client c{node.port()};
  for (int i = 0; i < 6; ++i)
    REQUIRE(c.post("/accounts", open_body("fz" + std::to_string(i), 500)).status == 201);

  generator gen{seed};
  std::uint64_t sent = 0, answered = 0, batches = 0;
  while (sent < total) {
    // A batch: 1-4 requests on one connection, pipelined.
    std::vector<request_spec> batch;
    for (int i = 0, n = 1 + gen.pick(4); i < n; ++i)
      batch.push_back(gen.chance(0.4) ? gen.mutate(gen.valid()) : gen.valid());
    std::string bytes;
    bool has_head = false, all_valid = true;
    for (const auto& r : batch) {
      bytes += gen.bytes(r);
      has_head = has_head || r.method == "HEAD";
      all_valid = all_valid && !r.mutated;
    }
    // Valid requests all get an answer, up to one with Connection: close (their only header).
    auto expected = batch.size();
    for (std::size_t i = 0; i < batch.size(); ++i)
      if (!batch[i].headers.empty()) {
        expected = i + 1;
        break;
      }
    sent += batch.size();
    ++batches;
    INFO("batch " << batches << ":\n" << bytes.substr(0, 2000));

    // Some clients take answers slowly (small receive buffer): answers wait in the server's send
    // queue, where an abrupt close would discard them.
    raw_connection conn{node.port(), gen.chance(0.2) ? 2048 : 0};
    REQUIRE(conn.connected());
    bool whole = gen.chance(0.6);
    bool delivered = true;
    for (std::size_t pos = 0; pos < bytes.size() && delivered;) {
      auto n = whole ? bytes.size() : 1 + static_cast<std::size_t>(gen.pick(64));
      delivered = conn.send_all(std::string_view(bytes).substr(pos, n));
      pos += n;
    }
    conn.shutdown_send(); // so that a request cut short ends instead of waiting for more
    auto end = conn.read_until_closed(15s);
    REQUIRE_FALSE(end.timed_out); // no hang
    // Valid requests are answered one to one, so HEAD answers are known to have no body.
    std::vector<bool> bodiless;
    for (const auto& r : batch)
      bodiless.push_back(r.method == "HEAD");
    auto answers = all_valid ? take_responses(conn.received(), bodiless)
                             : split_answers(conn.received(), has_head);
    INFO("unparsed rest: " << conn.received().substr(0, 300));
    CHECK(conn.received().empty()); // every byte is part of a well-formed answer
    if (delivered) {
      CHECK(end.error == 0);
      if (all_valid)
        CHECK(answers.size() == expected);
    }
    for (const auto& a : answers) {
      INFO("status " << a.status << ": " << a.body.substr(0, 300));
      CHECK(a.status >= 100);
      CHECK(a.status < 500);
    }
    answered += answers.size();
    if (batches % 100 == 0)
      REQUIRE(http_client{node.port()}.get("/health").status == 200);
  }
  std::cout << "fuzz: " << batches << " connections, " << sent << " requests, " << answered
            << " answers" << std::endl;

  http_client check{node.port()};
  REQUIRE(check.get("/health").status == 200);
  std::set<std::string> emails;
  for (int i = 0; i < 8; ++i) {
    auto id = "fz" + std::to_string(i);
    INFO(id);
    auto acc = check.get("/accounts/" + id + "?consistent=true");
    if (acc.status == 404) {
      CHECK(check.get("/accounts/" + id + "/events").status == 404);
      continue;
    }
    REQUIRE(acc.status == 200);
    auto a = body_json(acc);
    auto f = fold(all_events(check, id));
    CHECK(a.at("version") == f.version);
    CHECK(a.at("balance") == f.balance);
    CHECK(a.at("limit") == f.limit);
    CHECK(a.at("status").as_string() == f.status);
    CHECK(a.at("country").as_string() == f.country);
    CHECK(a.at("phones").as_array().size() == f.phones);
    const auto& email = a.at("email");
    CHECK((email.is_null() ? std::string{} : std::string(email.as_string())) == f.email);
    if (!f.email.empty()) {
      // One account per address, and its reservation says so.
      CHECK(emails.insert(f.email).second);
      auto r = check.get("/admin/emails/" + f.email);
      REQUIRE(r.status == 200);
      CHECK(body_json(r).at("status") == "held");
      CHECK(body_json(r).at("account").as_string() == id);
    }
  }
  CHECK(!emails.empty()); // the run changed e-mails (about 1 in 17 requests tries)
  // Sanitizer reports from the run (after "ready"; a UBSan build of this CAF reports
  // init_fun_factory.hpp at startup, once per location, whatever the requests).
  auto log = node.log();
  if (auto ready = log.find(" ready: "); ready != std::string::npos)
    log.erase(0, ready);
  for (auto report : {"AddressSanitizer", "runtime error:"}) {
    auto at = log.find(report);
    INFO("node log: " << (at == std::string::npos ? "" : log.substr(at < 300 ? 0 : at - 300, 3000)));
    CHECK(at == std::string::npos);
  }
  CHECK(node.stop() == 0);
}

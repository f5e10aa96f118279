#include "tests/cluster/common.hpp"

#include <algorithm>
#include <optional>

#include <catch2/catch.hpp>

namespace kontor::test {

namespace json = boost::json;

std::vector<std::string> quick_args(std::size_t min_members) {
  return {"--seed-timeout", "500ms", "--min-members", std::to_string(min_members),
          "--rebalance-interval", "300ms"};
}

std::string open_body(const std::string& id, std::int64_t limit) {
  return R"({"id":")" + id + R"(","owner":"Owner","country":"DE","currency":"EUR","limit":)"
         + std::to_string(limit) + "}";
}

std::string tx_body(const std::string& tx, const std::string& kind, std::int64_t amount) {
  return R"({"txId":")" + tx + R"(","kind":")" + kind + R"(","amount":)" + std::to_string(amount)
         + R"(,"currency":"EUR"})";
}

json::value body_json(const http_result& r) {
  json::error_code ec;
  auto v = json::parse(r.body, ec);
  if (ec)
    FAIL("not JSON (status " << r.status << "): " << r.body);
  return v;
}

std::string error_of(const http_result& r) {
  json::error_code ec;
  auto v = json::parse(r.body, ec);
  if (ec || !v.is_object() || !v.as_object().contains("error") || !v.at("error").is_string())
    return {};
  return std::string(v.at("error").as_string());
}

std::map<std::string, std::size_t> owners(const shards_view& v) {
  std::map<std::string, std::size_t> out;
  for (const auto& s : v.shards)
    if (s.owner)
      ++out[*s.owner];
  return out;
}

std::vector<std::string> owner_table(const shards_view& v) {
  std::vector<std::string> out;
  for (const auto& s : v.shards)
    out.push_back(s.owner.value_or(""));
  return out;
}

std::string oldest_up(const members_view& v) {
  const member_view* best = nullptr;
  for (const auto& m : v.members)
    if (m.status == "up" && (best == nullptr || m.age < best->age))
      best = &m;
  return best ? best->node : std::string{};
}

wait_outcome wait_spread(test_cluster& c, const std::vector<std::size_t>& nodes,
                         const std::set<std::string>& names, std::chrono::milliseconds timeout) {
  return c.wait_joint(
    nodes, "/cluster/shards",
    [&](const std::vector<json::value>& bodies) {
      std::optional<std::vector<std::string>> first;
      for (const auto& body : bodies) {
        auto v = parse_shards(body);
        if (!v || !all_allocated(*v, names))
          return false;
        auto counts = owners(*v);
        if (counts.size() != names.size())
          return false;
        auto [lo, hi] = std::minmax_element(counts.begin(), counts.end(),
                                            [](auto& a, auto& b) { return a.second < b.second; });
        if (hi->second > lo->second + 1)
          return false;
        auto table = owner_table(*v);
        if (first && *first != table)
          return false;
        first = std::move(table);
      }
      return true;
    },
    timeout);
}

void start_three(test_cluster& c, bool spread) {
  using namespace std::chrono_literals;
  for (std::size_t i = 0; i < 3; ++i)
    c.start(i);
  for (std::size_t i = 0; i < 3; ++i)
    REQUIRE(c.wait_ready(i, 30s));
  REQUIRE(c.wait_members_up({0, 1, 2}, {0, 1, 2}));
  if (spread)
    REQUIRE(wait_spread(c, {0, 1, 2}, {c.name(0), c.name(1), c.name(2)}));
}

json::array events_of(test_cluster& c, std::size_t i, const std::string& id) {
  json::array out;
  for (std::uint64_t from = 1;;) {
    auto r = c.get(i, "/accounts/" + id + "/events?from=" + std::to_string(from) + "&limit=1000");
    INFO(id << " through " << c.name(i) << ": " << r.status << " " << r.body);
    REQUIRE(r.status == 200);
    auto page = body_json(r).as_array();
    for (auto& e : page)
      out.push_back(e);
    if (page.size() < 1000)
      return out;
    from += page.size();
  }
}

void check_acked(test_cluster& c, std::size_t via,
                 const std::map<std::string, std::vector<std::string>>& acked) {
  for (const auto& [account, txs] : acked) {
    INFO(account);
    std::map<std::string, int> seen;
    for (const auto& e : events_of(c, via, account))
      if (e.at("type") == "MoneyDeposited" || e.at("type") == "ItemPurchased")
        ++seen[std::string(e.at("data").at("txId").as_string())];
    for (const auto& [tx, n] : seen) {
      INFO(tx);
      CHECK(n == 1);
    }
    for (const auto& tx : txs) {
      INFO(tx);
      CHECK(seen[tx] == 1);
    }
  }
}

std::vector<std::size_t> nodes_logging(test_cluster& c, const std::string& text) {
  std::vector<std::size_t> out;
  for (std::size_t i = 0; i < c.size(); ++i)
    if (c.log(i).find(text) != std::string::npos)
      out.push_back(i);
  return out;
}

std::vector<std::size_t> all_but(test_cluster& c, std::size_t i) {
  std::vector<std::size_t> out;
  for (std::size_t k = 0; k < c.size(); ++k)
    if (k != i)
      out.push_back(k);
  return out;
}

double metric_value(test_cluster& c, std::size_t i, const std::string& series) {
  auto r = c.request(i, "GET", "/metrics");
  if (r.status != 200)
    return -1;
  auto pos = r.body.find("\n" + series + " ");
  return pos == std::string::npos ? -1 : std::stod(r.body.substr(pos + series.size() + 2));
}

} // namespace kontor::test

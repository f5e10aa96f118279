#include "gateway/auth.hpp"

#include <algorithm>
#include <fstream>
#include <sstream>

namespace kontor::gateway {

namespace {

/// Equal, in time that depends on `secret`'s length only.
bool same_secret(std::string_view secret, std::string_view given) {
  unsigned char diff = secret.size() == given.size() ? 0 : 1;
  for (std::size_t i = 0; i < secret.size(); ++i) {
    const unsigned char g = i < given.size() ? static_cast<unsigned char>(given[i]) : 0;
    diff |= static_cast<unsigned char>(secret[i]) ^ g;
  }
  return diff == 0;
}

bool starts_with(std::string_view s, std::string_view prefix) {
  return s.substr(0, prefix.size()) == prefix;
}

} // namespace

const char* to_string(scope s) {
  switch (s) {
    case scope::read:
      return "read";
    case scope::write:
      return "write";
    case scope::admin:
      return "admin";
  }
  return "?";
}

scope required_scope(std::string_view method, std::string_view path) {
  // Everything under /admin/, reads too (dead letters carry what a policy was to send).
  if (path == "/admin" || starts_with(path, "/admin/"))
    return scope::admin;
  const bool reading = method == "GET" || method == "HEAD";
  if (reading)
    return scope::read;
  if (path == "/cluster" || starts_with(path, "/cluster/"))
    return scope::admin;
  return scope::write;
}

expected<authorizer, std::string> authorizer::from_file(const std::string& path,
                                                        std::vector<std::string> open_routes) {
  std::ifstream in(path);
  if (!in)
    return std::string("cannot read the tokens file " + path);
  std::ostringstream text;
  text << in.rdbuf();
  return parse(text.str(), path, std::move(open_routes));
}

expected<authorizer, std::string> authorizer::parse(std::string_view text, std::string_view source,
                                                    std::vector<std::string> open_routes) {
  authorizer out;
  out.open_routes_ = std::move(open_routes);
  std::size_t line_no = 0;
  while (!text.empty()) {
    ++line_no;
    auto nl = text.find('\n');
    auto line = text.substr(0, nl);
    text = nl == std::string_view::npos ? std::string_view{} : text.substr(nl + 1);
    if (!line.empty() && line.back() == '\r')
      line.remove_suffix(1);
    auto where = std::string(source) + ":" + std::to_string(line_no) + ": ";
    auto first = line.find_first_not_of(" \t");
    if (first == std::string_view::npos || line[first] == '#')
      continue;
    line = line.substr(first);
    auto gap = line.find_first_of(" \t");
    if (gap == std::string_view::npos)
      return where + "a token needs a scope after it (read, write or admin)";
    auto token = line.substr(0, gap);
    auto rest = line.substr(gap);
    rest = rest.substr(std::min(rest.size(), rest.find_first_not_of(" \t")));
    while (!rest.empty() && (rest.back() == ' ' || rest.back() == '\t'))
      rest.remove_suffix(1);
    if (token.size() < 16 || token.size() > 256
        || std::any_of(token.begin(), token.end(), [](char c) { return c < 0x21 || c > 0x7e; }))
      return where + "a token is 16-256 visible ASCII characters";
    scope s;
    if (rest == "read")
      s = scope::read;
    else if (rest == "write")
      s = scope::write;
    else if (rest == "admin")
      s = scope::admin;
    else
      return where + "unknown scope '" + std::string(rest) + "' (read, write or admin)";
    for (const auto& e : out.tokens_)
      if (e.token == token)
        return where + "this token is listed twice";
    out.tokens_.push_back({std::string(token), s});
  }
  return out;
}

authorizer::verdict authorizer::check(std::string_view method, std::string_view path,
                                      std::string_view authorization) const {
  if (tokens_.empty())
    return verdict::allowed;
  if ((method == "GET" || method == "HEAD")
      && std::find(open_routes_.begin(), open_routes_.end(), path) != open_routes_.end())
    return verdict::allowed;
  constexpr std::string_view bearer = "Bearer ";
  if (authorization.size() <= bearer.size() || authorization.substr(0, bearer.size()) != bearer)
    return verdict::unauthorized;
  const auto given = authorization.substr(bearer.size());
  // Every token is compared (no early exit), so the time does not tell which one matched.
  int granted = 0;
  for (const auto& e : tokens_)
    if (same_secret(e.token, given))
      granted = std::max(granted, static_cast<int>(e.granted));
  if (granted == 0)
    return verdict::unauthorized;
  return granted >= static_cast<int>(required_scope(method, path)) ? verdict::allowed
                                                                   : verdict::forbidden;
}

} // namespace kontor::gateway

// HTTPS on a real node with a self-signed certificate made by the test (openssl), curl as the
// client: the handshake and a command work, the certificate is checked, plain HTTP to the TLS
// port gets nothing, and a half or bad TLS configuration stops the start.

#include <fstream>

#include "tests/component/node_fixture.hpp"
#include "tests/support/command.hpp"
#include "tests/support/wait.hpp"

using namespace kontor::test;

namespace {

/// curl's exit code and what it printed: the body, then " <status>".
std::pair<int, std::string> curl(const std::string& ca, const std::string& url,
                                 const std::vector<std::string>& more = {}) {
  std::vector<std::string> argv{"curl", "-s", "-m", "10", "-o", "-", "-w", " %{http_code}", "--cacert", ca};
  argv.insert(argv.end(), more.begin(), more.end());
  argv.push_back(url);
  auto r = run_command(argv, std::chrono::seconds(20));
  return {r.exit_code, r.out};
}

/// A self-signed certificate for 127.0.0.1 and its key in `dir`.
void make_certificate(const std::filesystem::path& dir, const std::string& name) {
  auto r = run_command({"openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
                        "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1", "-keyout",
                        (dir / (name + ".key")).string(), "-out", (dir / (name + ".crt")).string()});
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
}

} // namespace

TEST_CASE("with a TLS certificate the node speaks HTTPS: the handshake, a command and a read "
          "work, the certificate is checked, plain HTTP gets nothing",
          "[tls]") {
  temp_dir dir{"kontor-tls"};
  make_certificate(dir.path(), "node");
  make_certificate(dir.path(), "other");
  const auto crt = (dir.path() / "node.crt").string();
  node_process node((dir.path() / "data").string(), (dir.path() / "node.log").string(),
                    {"--tls-cert-file", crt, "--tls-key-file", (dir.path() / "node.key").string()});
  INFO(node.log());
  REQUIRE(node.wait_port());
  const auto base = "https://127.0.0.1:" + std::to_string(node.port());
  REQUIRE(wait_until([&] { return curl(crt, base + "/ready").second.find(" 200") != std::string::npos; }));

  auto [rc, health] = curl(crt, base + "/health");
  INFO(health);
  CHECK(rc == 0);
  CHECK(health.size() >= 4);
  CHECK(health.substr(health.size() - 4) == " 200");

  auto [rc2, opened] = curl(crt, base + "/accounts",
                            {"-H", "Content-Type: application/json", "-d", open_body("tls-1", 0)});
  INFO(opened);
  CHECK(rc2 == 0);
  CHECK(opened.find("\"id\":\"tls-1\"") != std::string::npos);
  CHECK(opened.substr(opened.size() - 4) == " 201");
  auto [rc3, read] = curl(crt, base + "/accounts/tls-1?consistent=true");
  CHECK(read.substr(read.size() - 4) == " 200");

  // Another certificate is not trusted: curl refuses (exit 60, peer certificate not verified).
  auto [rc4, untrusted] = curl((dir.path() / "other.crt").string(), base + "/health");
  INFO(untrusted);
  CHECK(rc4 == 60);
  // Plain HTTP to the TLS port gets no HTTP answer, and the node keeps serving.
  http_client plain{node.port(), 3000};
  CHECK(plain.get("/health").status == 0);
  auto [rc5, again] = curl(crt, base + "/health");
  CHECK(again.substr(again.size() - 4) == " 200");
  CHECK(node.log().find("HTTP over TLS (1.2 or newer) with " + crt) != std::string::npos);
}

TEST_CASE("a certificate without its key, or a file that is no certificate, stops the start",
          "[tls]") {
  temp_dir dir{"kontor-tls"};
  make_certificate(dir.path(), "node");
  const auto data = (dir.path() / "data").string();
  auto half = run_node({"--tls-cert-file", (dir.path() / "node.crt").string(), "--data-dir", data,
                        "--http-port", "0"},
                       (dir.path() / "half.log").string());
  INFO(half.output);
  CHECK(half.exit_code == 2);
  CHECK(half.output.find("tls-cert-file and tls-key-file go together") != std::string::npos);

  const auto junk = (dir.path() / "junk.crt").string();
  std::ofstream(junk) << "not a certificate\n";
  auto bad = run_node({"--tls-cert-file", junk, "--tls-key-file", (dir.path() / "node.key").string(),
                       "--data-dir", data, "--http-port", "0"},
                      (dir.path() / "bad.log").string());
  INFO(bad.output);
  CHECK(bad.exit_code != 0);
  CHECK(bad.output.find("cannot use the TLS certificate " + junk) != std::string::npos);
}

// The cluster port over TLS: nodes with certificates of the cluster's CA form a cluster and serve
// across it; a node without TLS and a node with another CA's certificate cannot join, and the
// nodes say why; a half or inconsistent TLS configuration stops the start. Certificates are made
// by the test with openssl (a CA, one certificate per node, a second CA for the intruder).

#include <filesystem>

#include <catch2/catch.hpp>

#include "tests/cluster/common.hpp"
#include "tests/support/cluster.hpp"
#include "tests/support/command.hpp"
#include "tests/support/temp_dir.hpp"
#include "tests/support/wait.hpp"

using namespace kontor::test;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

void openssl(const std::vector<std::string>& args) {
  std::vector<std::string> argv{"openssl"};
  argv.insert(argv.end(), args.begin(), args.end());
  auto r = run_command(argv, 30s);
  INFO("openssl " << args.front() << ": " << r.err);
  REQUIRE(r.exit_code == 0);
}

/// A CA: dir/<name>.crt and dir/<name>.key.
void make_ca(const fs::path& dir, const std::string& name) {
  openssl({"req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1",
           "-subj", "/CN=" + name, "-keyout", (dir / (name + ".key")).string(), "-out",
           (dir / (name + ".crt")).string()});
}

/// A node certificate signed by CA `ca`: dir/<name>.crt and dir/<name>.key.
void make_node_certificate(const fs::path& dir, const std::string& name, const std::string& ca) {
  auto csr = (dir / (name + ".csr")).string();
  openssl({"req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-subj",
           "/CN=" + name, "-keyout", (dir / (name + ".key")).string(), "-out", csr});
  openssl({"x509", "-req", "-in", csr, "-CA", (dir / (ca + ".crt")).string(), "-CAkey",
           (dir / (ca + ".key")).string(), "-CAcreateserial", "-days", "1", "-out",
           (dir / (name + ".crt")).string()});
}

/// The three cluster-tls-* arguments.
std::vector<std::string> tls_args(const fs::path& dir, const std::string& name, const std::string& ca) {
  return {"--cluster-tls-cert-file", (dir / (name + ".crt")).string(), "--cluster-tls-key-file",
          (dir / (name + ".key")).string(), "--cluster-tls-ca-file", (dir / (ca + ".crt")).string()};
}

bool logged(test_cluster& c, const std::vector<std::size_t>& nodes, const std::string& what) {
  for (auto i : nodes)
    if (c.log(i).find(what) != std::string::npos)
      return true;
  return false;
}

} // namespace

TEST_CASE("three nodes with certificates of the cluster's CA form a cluster over TLS and serve "
          "across it, a node without TLS and a node of another CA cannot join and the nodes say why",
          "[cluster][tls]") {
  temp_dir certs{"kontor-cluster-tls"};
  const auto& dir = certs.path();
  make_ca(dir, "cluster-ca");
  make_ca(dir, "other-ca");
  test_cluster c{{.nodes = 5, .args = quick_args(3)}};
  for (std::size_t i = 0; i < 3; ++i) {
    make_node_certificate(dir, c.name(i), "cluster-ca");
    c.node_args(i) = tls_args(dir, c.name(i), "cluster-ca");
  }
  start_three(c, true);
  for (std::size_t i = 0; i < 3; ++i)
    CHECK(c.log(i).find("(TLS 1.3, peers signed by") != std::string::npos);

  // Commands reach their accounts' owners through every gateway: the cluster connections work.
  std::map<std::string, std::vector<std::string>> acked;
  for (int k = 0; k < 12; ++k) {
    auto id = "tls-" + std::to_string(k);
    auto opened = c.request(static_cast<std::size_t>(k) % 3, "POST", "/accounts", open_body(id));
    INFO(opened.status << " " << opened.body);
    REQUIRE(opened.status == 201);
    auto tx = "d-" + id;
    auto deposited = c.request(static_cast<std::size_t>(k + 1) % 3, "POST",
                               "/accounts/" + id + "/transactions", tx_body(tx, "deposit", 5));
    INFO(deposited.status << " " << deposited.body);
    REQUIRE(deposited.status == 201);
    acked[id].push_back(tx);
  }
  check_acked(c, 2, acked);

  SECTION("a node without TLS") {
    c.start(3);
    REQUIRE(c.wait_http(3, 30s));
    INFO(c.describe());
    CHECK(wait_until([&] {
      return logged(c, {0, 1, 2}, "a cluster peer without TLS, but this cluster port requires TLS");
    }, 30s));
  }
  SECTION("a node whose certificate another CA signed") {
    make_node_certificate(dir, c.name(4), "other-ca");
    c.node_args(4) = tls_args(dir, c.name(4), "other-ca");
    c.start(4);
    REQUIRE(c.wait_http(4, 30s));
    INFO(c.describe());
    // Both ends of a refused handshake log it with OpenSSL's reason.
    CHECK(wait_until([&] { return logged(c, {0, 1, 2}, "TLS handshake failed:"); }, 30s));
    CHECK(wait_until([&] { return c.log(4).find("TLS handshake with ") != std::string::npos; }, 30s));
  }
  // The cluster is the three: the intruder is no member, and was never one.
  auto members = c.members(0);
  REQUIRE(members);
  CHECK(members->members.size() == 3);
  for (std::size_t i : {3u, 4u})
    CHECK(members->find(c.name(i)) == nullptr);
  REQUIRE(c.wait_members_up({0, 1, 2}, {0, 1, 2}));
  auto again = c.request(1, "POST", "/accounts/tls-0/transactions", tx_body("after", "deposit", 1));
  CHECK(again.status == 201);
}

TEST_CASE("a half or inconsistent cluster TLS configuration stops the start and says why",
          "[cluster][tls]") {
  temp_dir certs{"kontor-cluster-tls-bad"};
  const auto& dir = certs.path();
  make_ca(dir, "cluster-ca");
  make_ca(dir, "other-ca");
  make_node_certificate(dir, "alpha", "cluster-ca");
  test_cluster c{{.nodes = 1, .args = quick_args(1)}};
  auto exits_with = [&](std::vector<std::string> args, int code, const std::string& why) {
    c.node_args(0) = std::move(args);
    c.start(0);
    REQUIRE(wait_until([&] { return !c.running(0); }, 30s));
    INFO(c.log(0));
    CHECK(c.exit_code(0) == code);
    CHECK(c.log(0).find(why) != std::string::npos);
  };
  SECTION("a certificate without its key and CA") {
    exits_with({"--cluster-tls-cert-file", (dir / "alpha.crt").string()}, 2,
               "cluster-tls-cert-file, cluster-tls-key-file and cluster-tls-ca-file go together");
  }
  SECTION("a certificate the cluster's CA file did not sign") {
    auto args = tls_args(dir, "alpha", "cluster-ca");
    args.back() = (dir / "other-ca.crt").string();
    exits_with(args, 1, "does not pass a check against the cluster CA");
  }
  SECTION("a key that is not the certificate's") {
    make_node_certificate(dir, "beta", "cluster-ca");
    auto args = tls_args(dir, "alpha", "cluster-ca");
    args[3] = (dir / "beta.key").string();
    exits_with(args, 1, "with the certificate " + (dir / "alpha.crt").string() + ": key values mismatch");
  }
  SECTION("a file that does not exist") {
    auto args = tls_args(dir, "alpha", "cluster-ca");
    args[1] = (dir / "missing.crt").string();
    exits_with(args, 1, "cannot use the cluster certificate");
  }
}

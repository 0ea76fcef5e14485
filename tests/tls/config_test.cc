// config_test.cc: tls_config_new errors and warnings, key logging, the demo
// PKI and the small helpers of tls.h.
#include <errno.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <sstream>
#include <string>

#include "shim/tls/internal.h"
#include "tls/helpers.h"

using tlstest::CertDir;
using tlstest::Handshake;
using tlstest::MakeConfig;
using tlstest::MakePair;
using tlstest::MakePolicy;
using tlstest::Pair;
using tlstest::RuleSpec;

namespace {

RuleSpec Server() {
  RuleSpec s;
  s.inbound = true;
  s.identity = "server";
  return s;
}

// ConfigError builds |spec| expecting failure and returns the diagnostic.
struct policy_diag ConfigError(const RuleSpec &spec) {
  struct policy *p = MakePolicy(spec);
  struct tls_config *cfg = nullptr;
  struct policy_diag err;
  memset(&err, 0, sizeof(err));
  EXPECT_EQ(-1, tls_config_new(&cfg, p, nullptr, &err, nullptr));
  EXPECT_EQ(nullptr, cfg);
  policy_free(p);  // still the caller's after a failure
  return err;
}

TEST(TlsConfig, UnknownCipher) {
  RuleSpec s = Server();
  s.ciphers = {"ECDHE-ECDSA-AES128-GCM-SHA256", "FOO"};
  struct policy_diag d = ConfigError(s);
  EXPECT_STREQ("unknown cipher 'FOO'", d.message);
  EXPECT_EQ(11, d.line);
  EXPECT_EQ(7, d.col);
  EXPECT_EQ(CertDir() + "/policy.yaml", d.file);
}

TEST(TlsConfig, CipherAliasIsNotACipher) {
  RuleSpec s = Server();
  s.ciphers = {"ALL"};
  EXPECT_STREQ("unknown cipher 'ALL'", ConfigError(s).message);
}

TEST(TlsConfig, UnknownGroup) {
  RuleSpec s = Server();
  s.groups = {"X25519", "P-999"};
  struct policy_diag d = ConfigError(s);
  EXPECT_STREQ("unknown group 'P-999'", d.message);
  EXPECT_EQ(11, d.line);
  EXPECT_EQ(7, d.col);
}

TEST(TlsConfig, KeyDoesNotMatchCertificate) {
  RuleSpec s = Server();
  s.identity_key = "client";
  struct policy_diag d = ConfigError(s);
  EXPECT_STREQ("key client.key does not match certificate server.pem",
               d.message);
  EXPECT_EQ(5, d.line);
  EXPECT_EQ(5, d.col);
}

TEST(TlsConfig, ExpiredIdentity) {
  RuleSpec s = Server();
  s.identity = "expired";
  struct policy_diag d = ConfigError(s);
  EXPECT_STREQ(
      "certificate expired.pem has expired (not after Jan  1 00:00:00 2021 "
      "GMT)",
      d.message);
  EXPECT_EQ(4, d.line);
  EXPECT_EQ(5, d.col);
}

TEST(TlsConfig, NotYetValidIdentity) {
  RuleSpec s = Server();
  s.identity = "notyet";
  EXPECT_STREQ(
      "certificate notyet.pem is not yet valid (not before Jan  1 00:00:00 "
      "2099 GMT)",
      ConfigError(s).message);
}

TEST(TlsConfig, ExpiringIdentityWarns) {
  RuleSpec s = Server();
  s.identity = "expiring";
  struct policy *p = MakePolicy(s);
  struct tls_config *cfg = nullptr;
  struct policy_diag err;
  struct policy_diags warnings = {nullptr, 0};
  ASSERT_EQ(0, tls_config_new(&cfg, p, nullptr, &err, &warnings));
  ASSERT_EQ(1u, warnings.count);
  // Made "valid 10 more days" moments ago: 9 or 10 whole days remain.
  std::string msg = warnings.items[0].message;
  EXPECT_TRUE(
      msg.rfind("certificate expiring.pem expires in 9 days (not after ", 0) ==
          0 ||
      msg.rfind("certificate expiring.pem expires in 10 days (not after ", 0) ==
          0)
      << msg;
  EXPECT_EQ(4, warnings.items[0].line);
  free(warnings.items);
  EXPECT_EQ(p, tls_config_policy(cfg));
  tls_config_ref(cfg);
  tls_config_unref(cfg);
  tls_config_unref(cfg);  // frees the policy too (ASan checks)
}

TEST(TlsConfig, InboundWithoutIdentity) {
  RuleSpec s = Server();
  s.identity = "";
  EXPECT_STREQ("rule 'in' serves TLS but names no identity",
               ConfigError(s).message);
}

TEST(TlsConfig, BadCrl) {
  RuleSpec s = Server();
  s.client_auth = POLICY_CLIENT_AUTH_REQUIRED;
  s.crl = "ca.pem";
  struct policy_diag d = ConfigError(s);
  EXPECT_STREQ("CRL file ca.pem holds no usable CRL", d.message);
  EXPECT_EQ(8, d.line);
}

TEST(TlsKeylog, NothingWithoutThePolicysOptIn) {
  std::string path = CertDir() + "/keylog-off.txt";
  tls_set_keylog_file(path.c_str());
  struct tls_config *cli = MakeConfig(RuleSpec());
  struct tls_config *srv = MakeConfig(Server());
  {
    Pair p;
    MakePair(&p, cli, srv);
    Handshake(&p);
    ASSERT_EQ(0, p.client_rc);
  }
  tls_set_keylog_file(nullptr);
  tls_config_unref(cli);
  tls_config_unref(srv);
  struct stat st;
  if (stat(path.c_str(), &st) == 0) {
    EXPECT_EQ(0, st.st_size) << "secrets logged without allow_keylog";
  }
}

TEST(TlsKeylog, WritesNssLines) {
  std::string path = CertDir() + "/keylog.txt";
  tls_set_keylog_file(path.c_str());
  RuleSpec c;
  c.allow_keylog = true;
  RuleSpec sv = Server();
  sv.allow_keylog = true;
  struct tls_config *cli = MakeConfig(c);
  struct tls_config *srv = MakeConfig(sv);
  {
    Pair p;
    MakePair(&p, cli, srv);
    Handshake(&p);
    ASSERT_EQ(0, p.client_rc);
  }
  tls_set_keylog_file(nullptr);
  tls_config_unref(cli);
  tls_config_unref(srv);
  struct stat st;
  ASSERT_EQ(0, stat(path.c_str(), &st));
  EXPECT_EQ(0600u, st.st_mode & 0777);
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  std::string text = ss.str();
  EXPECT_NE(std::string::npos, text.find("CLIENT_HANDSHAKE_TRAFFIC_SECRET "));
  // Every line: LABEL <64 hex client random> <hex secret>.
  std::istringstream lines(text);
  std::string line;
  int count = 0;
  while (std::getline(lines, line)) {
    count++;
    size_t sp1 = line.find(' ');
    ASSERT_NE(std::string::npos, sp1) << line;
    size_t sp2 = line.find(' ', sp1 + 1);
    ASSERT_EQ(sp1 + 65, sp2) << line;
  }
  EXPECT_GE(count, 4);
  EXPECT_NE(std::string::npos, text.find("SERVER_TRAFFIC_SECRET_0 "));
  EXPECT_EQ('\n', text.back());
}

TEST(TlsPki, InitMakesAWorkingPki) {
  std::string dir = CertDir() + "/demo";
  char err[256] = "";
  const char *names[] = {"svc.example", "localhost"};
  ASSERT_EQ(0,
            tls_pki_init(dir.c_str(), names, 2, nullptr, 0, err, sizeof(err)))
      << err;
  struct stat st;
  ASSERT_EQ(0, stat((dir + "/server.key").c_str(), &st));
  EXPECT_EQ(0600u, st.st_mode & 0777);

  // server.pem chains to ca.pem and carries the SANs.
  BIO *b = BIO_new_file((dir + "/server.pem").c_str(), "r");
  ASSERT_NE(nullptr, b);
  X509 *leaf = PEM_read_bio_X509(b, nullptr, nullptr, nullptr);
  BIO_free(b);
  ASSERT_NE(nullptr, leaf);
  X509_STORE *store = X509_STORE_new();
  ASSERT_EQ(
      1, X509_STORE_load_locations(store, (dir + "/ca.pem").c_str(), nullptr));
  X509_STORE_CTX *ctx = X509_STORE_CTX_new();
  ASSERT_EQ(1, X509_STORE_CTX_init(ctx, store, leaf, nullptr));
  X509_STORE_CTX_set_purpose(ctx, X509_PURPOSE_SSL_SERVER);
  EXPECT_EQ(1, X509_verify_cert(ctx))
      << X509_verify_cert_error_string(X509_STORE_CTX_get_error(ctx));
  char names_text[256];
  tls_cert_names(leaf, names_text, sizeof(names_text));
  EXPECT_STREQ("DNS:svc.example, DNS:localhost, IP:127.0.0.1", names_text);
  X509_STORE_CTX_free(ctx);
  X509_STORE_free(store);
  X509_free(leaf);

  b = BIO_new_file((dir + "/client.pem").c_str(), "r");
  ASSERT_NE(nullptr, b);
  X509 *client = PEM_read_bio_X509(b, nullptr, nullptr, nullptr);
  BIO_free(b);
  ASSERT_NE(nullptr, client);
  char id[256];
  tls_cert_identity(client, id, sizeof(id));
  EXPECT_STREQ("spiffe://tlsshim.demo/client", id);
  X509_free(client);
}

TEST(TlsMisc, LooksLikeClientHello) {
  const uint8_t hello[] = {0x16, 0x03, 0x01, 0x02, 0x00};
  const uint8_t get[] = {'G', 'E', 'T'};
  const uint8_t ssl2[] = {0x16, 0x03, 0x05};
  EXPECT_TRUE(tlsconn_looks_like_client_hello(hello, sizeof(hello)));
  EXPECT_FALSE(tlsconn_looks_like_client_hello(hello, 2));
  EXPECT_FALSE(tlsconn_looks_like_client_hello(get, sizeof(get)));
  EXPECT_FALSE(tlsconn_looks_like_client_hello(ssl2, sizeof(ssl2)));
}

TEST(TlsMisc, LibraryVersion) {
  EXPECT_EQ(0, strncmp("BoringSSL ", tls_library_version(), 10));
  EXPECT_GT(strlen(tls_library_version()), 20u);
}

TEST(TlsMisc, GlobalInitIsIdempotent) {
  tls_global_init();
  tls_global_init();
  SUCCEED();
}

}  // namespace

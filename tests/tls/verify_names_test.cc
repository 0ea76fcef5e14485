// verify_names_test.cc: names in peer certificates that try to pass as
// others (a NUL inside a SAN or the CN), and outbound rules with both
// server_name and peer_names. The certificates are made here with
// BoringSSL, signed by the test CA: no command-line tool embeds a NUL.
#include <errno.h>
#include <gtest/gtest.h>
#include <stdio.h>

#include <string>
#include <utility>
#include <vector>

#include <openssl/bio.h>
#include <openssl/ec_key.h>
#include <openssl/evp.h>
#include <openssl/obj.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "tls/helpers.h"

using tlstest::CertDir;
using tlstest::ClientSpec;
using tlstest::Config;
using tlstest::Handshake;
using tlstest::MakeConfig;
using tlstest::MakePair;
using tlstest::OverrideIdentity;
using tlstest::Pair;
using tlstest::RuleSpec;
using tlstest::ServerRefusal;
using tlstest::ServerSpec;

namespace {

using Sans = std::vector<std::pair<int, std::string>>;  // GEN_DNS/GEN_URI

bool AddExt(X509 *x, int nid, const char *value) {
  X509_EXTENSION *ext = X509V3_EXT_nconf_nid(nullptr, nullptr, nid, value);
  bool ok = ext != nullptr && X509_add_ext(x, ext, -1);
  X509_EXTENSION_free(ext);
  return ok;
}

// MakeLeaf writes CertDir()/NAME.pem and NAME.key: an ECDSA P-256 leaf
// signed by ca.pem/ca.key, valid for 30 days, with subject CN |cn| and the
// SANs |sans| taken as raw bytes (a NUL stays a NUL), and EKU |eku|
// ("clientAuth" or "serverAuth").
void MakeLeaf(const std::string &name, const std::string &cn,
              const Sans &sans, const char *eku) {
  const std::string dir = CertDir();
  BIO *b = BIO_new_file((dir + "/ca.pem").c_str(), "r");
  ASSERT_NE(nullptr, b);
  X509 *ca = PEM_read_bio_X509(b, nullptr, nullptr, nullptr);
  BIO_free(b);
  b = BIO_new_file((dir + "/ca.key").c_str(), "r");
  ASSERT_NE(nullptr, b);
  EVP_PKEY *ca_key = PEM_read_bio_PrivateKey(b, nullptr, nullptr, nullptr);
  BIO_free(b);
  ASSERT_NE(nullptr, ca);
  ASSERT_NE(nullptr, ca_key);

  EC_KEY *ec = EC_KEY_new_by_curve_name(NID_X9_62_prime256v1);
  ASSERT_TRUE(ec != nullptr && EC_KEY_generate_key(ec));
  EVP_PKEY *key = EVP_PKEY_new();
  ASSERT_TRUE(EVP_PKEY_assign_EC_KEY(key, ec));

  X509 *x = X509_new();
  ASSERT_TRUE(X509_set_version(x, 2));
  uint64_t serial;
  RAND_bytes(reinterpret_cast<uint8_t *>(&serial), sizeof(serial));
  ASSERT_TRUE(ASN1_INTEGER_set_uint64(X509_get_serialNumber(x), serial >> 1));
  ASSERT_TRUE(X509_set_issuer_name(x, X509_get_subject_name(ca)));
  X509_gmtime_adj(X509_getm_notBefore(x), -3600);
  X509_gmtime_adj(X509_getm_notAfter(x), 30L * 86400);
  X509_NAME *subject = X509_get_subject_name(x);
  ASSERT_TRUE(X509_NAME_add_entry_by_NID(
      subject, NID_commonName, V_ASN1_UTF8STRING,
      reinterpret_cast<const uint8_t *>(cn.data()), static_cast<int>(cn.size()),
      -1, 0));
  ASSERT_TRUE(X509_set_pubkey(x, key));
  ASSERT_TRUE(AddExt(x, NID_basic_constraints, "critical,CA:FALSE"));
  ASSERT_TRUE(AddExt(x, NID_key_usage, "critical,digitalSignature"));
  ASSERT_TRUE(AddExt(x, NID_ext_key_usage, eku));
  if (!sans.empty()) {
    GENERAL_NAMES *gens = sk_GENERAL_NAME_new_null();
    for (const auto &san : sans) {
      ASN1_IA5STRING *ia5 = ASN1_IA5STRING_new();
      ASSERT_TRUE(ASN1_STRING_set(ia5, san.second.data(),
                                  static_cast<int>(san.second.size())));
      GENERAL_NAME *g = GENERAL_NAME_new();
      GENERAL_NAME_set0_value(g, san.first, ia5);
      ASSERT_TRUE(sk_GENERAL_NAME_push(gens, g));
    }
    ASSERT_TRUE(X509_add1_ext_i2d(x, NID_subject_alt_name, gens, 0,
                              X509V3_ADD_DEFAULT));
    GENERAL_NAMES_free(gens);
  }
  ASSERT_TRUE(X509_sign(x, ca_key, EVP_sha256()));

  b = BIO_new_file((dir + "/" + name + ".pem").c_str(), "w");
  ASSERT_TRUE(b != nullptr && PEM_write_bio_X509(b, x));
  BIO_free(b);
  b = BIO_new_file((dir + "/" + name + ".key").c_str(), "w");
  ASSERT_TRUE(b != nullptr && PEM_write_bio_PrivateKey(b, key, nullptr,
                                                       nullptr, 0, nullptr,
                                                       nullptr));
  BIO_free(b);
  X509_free(x);
  EVP_PKEY_free(key);
  X509_free(ca);
  EVP_PKEY_free(ca_key);
}

const std::string kAllowed = "spiffe://tlsshim.demo/only-this-client";
const std::string kNulUri =
    std::string("spiffe://tlsshim.demo/only-this-client\0.attacker/ns/x", 53);

struct tlsconn_info Info(struct tlsconn *c) {
  struct tlsconn_info info;
  tlsconn_get_info(c, &info);
  return info;
}

RuleSpec AllowListServer(const std::vector<std::string> &names) {
  RuleSpec ss = ServerSpec();
  ss.client_auth = POLICY_CLIENT_AUTH_REQUIRED;
  ss.peer_names = names;
  return ss;
}

// ServerAccepts handshakes a client presenting |identity| with |srv|.
bool ServerAccepts(const std::string &identity, struct tls_config *srv) {
  RuleSpec cs = ClientSpec();
  cs.identity = identity;
  Config cli(MakeConfig(cs));
  Pair p;
  MakePair(&p, cli.get(), srv);
  Handshake(&p);
  return p.server_rc == 0 && p.client_rc == 0;
}

std::string ClientRefusal(const RuleSpec &cs, const std::string &presented,
                          const char *name) {
  Config cli(MakeConfig(cs)), srv(MakeConfig(ServerSpec()));
  Pair p;
  MakePair(&p, cli.get(), srv.get(), name);
  OverrideIdentity(p.server, presented);
  Handshake(&p);
  EXPECT_EQ(-EPROTO, p.client_rc);
  return tlsconn_error(p.client);
}

bool ClientAccepts(const RuleSpec &cs, const std::string &presented,
                   const char *name) {
  Config cli(MakeConfig(cs)), srv(MakeConfig(ServerSpec()));
  Pair p;
  MakePair(&p, cli.get(), srv.get(), name);
  OverrideIdentity(p.server, presented);
  Handshake(&p);
  return p.client_rc == 0;
}

TEST(TlsVerifyNames, NulInsideUriSanMatchesNothing) {
  MakeLeaf("nul_uri", "nul_uri", {{GEN_URI, kNulUri}}, "clientAuth");
  MakeLeaf("exact_uri", "exact_uri", {{GEN_URI, kAllowed}}, "clientAuth");
  Config srv(MakeConfig(AllowListServer({kAllowed})));
  // The control: the exact identity passes, so the refusal below is the
  // NUL's doing.
  EXPECT_TRUE(ServerAccepts("exact_uri", srv.get()));
  RuleSpec cs = ClientSpec();
  cs.identity = "nul_uri";
  Config cli(MakeConfig(cs));
  EXPECT_EQ("peer identity not allowed: "
            "spiffe://tlsshim.demo/only-this-client\\x00.attacker/ns/x not "
            "in peer_names [spiffe://tlsshim.demo/only-this-client]",
            ServerRefusal(cli.get(), srv.get()));
}

TEST(TlsVerifyNames, NulInsideCnMatchesNothing) {
  MakeLeaf("nul_cn", std::string("client\0.evil", 12), {}, "clientAuth");
  MakeLeaf("plain_cn", "client", {}, "clientAuth");
  Config srv(MakeConfig(AllowListServer({"client"})));
  EXPECT_TRUE(ServerAccepts("plain_cn", srv.get()));
  RuleSpec cs = ClientSpec();
  cs.identity = "nul_cn";
  Config cli(MakeConfig(cs));
  EXPECT_EQ(
      "peer identity not allowed: client\\x00.evil not in peer_names [client]",
      ServerRefusal(cli.get(), srv.get()));
}

TEST(TlsVerifyNames, NulInsideDnsSanMatchesNothing) {
  MakeLeaf("nul_dns", "nul_dns",
           {{GEN_DNS, std::string("db.internal\0.server.test", 24)}},
           "serverAuth");
  MakeLeaf("exact_dns", "exact_dns", {{GEN_DNS, "db.internal"}}, "serverAuth");
  RuleSpec cs = ClientSpec();
  cs.peer_names = {"db.internal"};
  EXPECT_TRUE(ClientAccepts(cs, "exact_dns", "db.internal"));
  EXPECT_EQ("peer identity not allowed: db.internal\\x00.server.test not in "
            "peer_names [db.internal]",
            ClientRefusal(cs, "nul_dns", "db.internal"));
  // The host-name check (no peer_names) refuses it too, and says so whole.
  EXPECT_TRUE(ClientAccepts(ClientSpec(), "exact_dns", "db.internal"));
  EXPECT_EQ("peer name mismatch: wanted db.internal, certificate has "
            "[DNS:db.internal\\x00.server.test]",
            ClientRefusal(ClientSpec(), "nul_dns", "db.internal"));
}

TEST(TlsVerifyNames, IdentityIsReportedWholeAndEscaped) {
  MakeLeaf("ctl_uri", "ctl_uri",
           {{GEN_URI, kNulUri}, {GEN_DNS, "a\x1b[31m\\b"}}, "clientAuth");
  RuleSpec ss = ServerSpec();
  ss.client_auth = POLICY_CLIENT_AUTH_OPTIONAL;  // no allow-list
  Config srv(MakeConfig(ss));
  RuleSpec cs = ClientSpec();
  cs.identity = "ctl_uri";
  Config cli(MakeConfig(cs));
  Pair p;
  MakePair(&p, cli.get(), srv.get());
  Handshake(&p);
  ASSERT_EQ(0, p.server_rc) << tlsconn_error(p.server);
  EXPECT_STREQ("spiffe://tlsshim.demo/only-this-client\\x00.attacker/ns/x",
               Info(p.server).peer_identity);
}

TEST(TlsVerifyNames, ServerNameAndPeerNamesAreBothChecked) {
  MakeLeaf("web_svc", "web_svc", {{GEN_DNS, "web.svc.cluster.local"}},
           "serverAuth");
  MakeLeaf("redis_svc", "redis_svc", {{GEN_DNS, "redis.svc.cluster.local"}},
           "serverAuth");
  RuleSpec cs = ClientSpec();
  cs.server_name = "redis.svc.cluster.local";
  cs.peer_names = {"*.svc.cluster.local"};
  const char *name = "redis.svc.cluster.local";
  EXPECT_TRUE(ClientAccepts(cs, "redis_svc", name));
  // In the allow-list's wildcard, but not the server_name.
  EXPECT_EQ("peer name mismatch: wanted redis.svc.cluster.local, certificate "
            "has [DNS:web.svc.cluster.local]",
            ClientRefusal(cs, "web_svc", name));
  // The server_name, but not in the allow-list.
  cs.peer_names = {"*.other.cluster.local"};
  EXPECT_EQ("peer identity not allowed: redis.svc.cluster.local not in "
            "peer_names [*.other.cluster.local]",
            ClientRefusal(cs, "redis_svc", name));
  // Without server_name the allow-list stands in for the name check.
  RuleSpec only = ClientSpec();
  only.peer_names = {"*.svc.cluster.local"};
  EXPECT_TRUE(ClientAccepts(only, "web_svc", name));
}

}  // namespace

// verify_cache_test.cc: a peer chain that verified is not verified again for
// a while, and nothing else about verification changes: the name is checked
// on every connection, other chains are checked in full, and an entry is not
// used outside its lifetime or the validity of its certificates and CRLs.
#include <errno.h>
#include <gtest/gtest.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <time.h>

#include <algorithm>
#include <memory>
#include <string>

#include "shim/tls/internal.h"
#include "tls/helpers.h"

using tlstest::CertDir;
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

// Every handshake of these clients is a full one and verifies a chain.
RuleSpec ClientSpec() {
  RuleSpec s = tlstest::ClientSpec();
  s.session_resumption = false;
  return s;
}

struct Result {
  int rc;
  bool verified, cached;
  std::string error;
};

// Connect makes one handshake from |cli| to |srv| and reports the client's
// view; |server_identity| overrides the certificate the server presents.
Result Connect(struct tls_config *cli, struct tls_config *srv,
               const char *name = "localhost",
               const std::string &server_identity = "") {
  Pair p;
  MakePair(&p, cli, srv, name, "127.0.0.1");
  if (!server_identity.empty()) {
    OverrideIdentity(p.server, server_identity);
  }
  Handshake(&p);
  struct tlsconn_info info;
  tlsconn_get_info(p.client, &info);
  return {p.client_rc, info.peer_verified, info.verify_cached,
          tlsconn_error(p.client)};
}

X509 *ReadCert(const std::string &base) {
  std::string path = CertDir() + "/" + base + ".pem";
  FILE *f = fopen(path.c_str(), "r");
  if (f == nullptr) {
    ADD_FAILURE() << "cannot open " << path;
    return nullptr;
  }
  X509 *x = PEM_read_X509(f, nullptr, nullptr, nullptr);
  fclose(f);
  return x;
}

}  // namespace

TEST(TlsVerifyCache, SecondHandshakeUsesTheVerifiedChain) {
  Config cli(MakeConfig(ClientSpec())), srv(MakeConfig(ServerSpec()));
  Result a = Connect(cli.get(), srv.get());
  ASSERT_EQ(0, a.rc) << a.error;
  EXPECT_TRUE(a.verified);
  EXPECT_FALSE(a.cached);
  Result b = Connect(cli.get(), srv.get());
  ASSERT_EQ(0, b.rc) << b.error;
  EXPECT_TRUE(b.verified);
  EXPECT_TRUE(b.cached);
  // A new config (a policy reload) starts empty.
  Config cli2(MakeConfig(ClientSpec()));
  Result c = Connect(cli2.get(), srv.get());
  ASSERT_EQ(0, c.rc) << c.error;
  EXPECT_FALSE(c.cached);
}

TEST(TlsVerifyCache, TheNameIsCheckedOnEveryConnection) {
  Config cli(MakeConfig(ClientSpec())), srv(MakeConfig(ServerSpec()));
  ASSERT_EQ(0, Connect(cli.get(), srv.get()).rc);
  ASSERT_TRUE(Connect(cli.get(), srv.get()).cached);
  Result r = Connect(cli.get(), srv.get(), "redis.internal");
  EXPECT_EQ(-EPROTO, r.rc);
  EXPECT_EQ(
      "peer name mismatch: wanted redis.internal, certificate has "
      "[DNS:localhost, DNS:server.test, IP:127.0.0.1, IP:::1, "
      "URI:spiffe://test/ns/default/sa/server]",
      r.error);
  // Another name the certificate holds is verified once, then remembered.
  Result s = Connect(cli.get(), srv.get(), "server.test");
  ASSERT_EQ(0, s.rc) << s.error;
  EXPECT_FALSE(s.cached);
  EXPECT_TRUE(Connect(cli.get(), srv.get(), "server.test").cached);
}

TEST(TlsVerifyCache, OtherChainsAreVerifiedInFull) {
  Config cli(MakeConfig(ClientSpec())), srv(MakeConfig(ServerSpec()));
  ASSERT_EQ(0, Connect(cli.get(), srv.get()).rc);
  ASSERT_TRUE(Connect(cli.get(), srv.get()).cached);
  struct {
    const char *identity, *reason;
  } cases[] = {
      {"wrongca",
       "certificate not signed by a trusted CA (unable to get local issuer "
       "certificate)"},
      {"expired", "certificate has expired"},
      {"sha1", "certificate signed with SHA-1"},
      {"noeku", "certificate not allowed for TLS server use (key usage)"},
  };
  for (const auto &tc : cases) {
    for (int round = 0; round < 2; round++) {  // failures are not remembered
      Result r = Connect(cli.get(), srv.get(), "localhost", tc.identity);
      EXPECT_EQ(-EPROTO, r.rc) << tc.identity;
      EXPECT_FALSE(r.cached) << tc.identity;
      EXPECT_EQ(tc.reason, r.error) << tc.identity;
    }
  }
}

TEST(TlsVerifyCache, ClientChainsOnTheServerSide) {
  RuleSpec ss = ServerSpec();
  ss.client_auth = POLICY_CLIENT_AUTH_REQUIRED;
  ss.peer_names = {"spiffe://test/ns/default/sa/client"};
  Config srv(MakeConfig(ss));
  RuleSpec cs = ClientSpec();
  cs.identity = "client";
  Config cli(MakeConfig(cs));
  for (int i = 0; i < 2; i++) {
    Pair p;
    MakePair(&p, cli.get(), srv.get());
    Handshake(&p);
    ASSERT_EQ(0, p.server_rc) << tlsconn_error(p.server);
    struct tlsconn_info info;
    tlsconn_get_info(p.server, &info);
    EXPECT_TRUE(info.peer_verified);
    EXPECT_EQ(i == 1, info.verify_cached);
  }
  // Another client identity is checked against peer_names again.
  cs.identity = "other_client";
  Config other(MakeConfig(cs));
  EXPECT_EQ(
      "peer identity not allowed: spiffe://test/ns/default/sa/other not in "
      "peer_names [spiffe://test/ns/default/sa/client]",
      ServerRefusal(other.get(), srv.get()));
}

TEST(TlsVerifyCache, EntriesEndWithTheirLifetime) {
  Config cli(MakeConfig(ClientSpec())), srv(MakeConfig(ServerSpec()));
  ASSERT_EQ(0, Connect(cli.get(), srv.get()).rc);
  struct tls_config *c = cli.get();
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  // The entry lives TLS_VERIFIED_TTL seconds from now...
  struct tls_verified *v = &c->verified[0];
  EXPECT_GE(v->mono_until, ts.tv_sec + TLS_VERIFIED_TTL - 1);
  EXPECT_LE(v->mono_until, ts.tv_sec + TLS_VERIFIED_TTL + 1);
  // ...and is not used once that has passed,
  v->mono_until = ts.tv_sec;
  Result r = Connect(cli.get(), srv.get());
  ASSERT_EQ(0, r.rc) << r.error;
  EXPECT_FALSE(r.cached);
  // nor after the end of a certificate's validity (the new entry is slot 1),
  v = &c->verified[1];
  ASSERT_GT(v->mono_until, ts.tv_sec);
  v->wall_until = time(nullptr);
  EXPECT_FALSE(Connect(cli.get(), srv.get()).cached);
  // nor before its start.
  v = &c->verified[2];
  v->wall_from = time(nullptr) + 5;
  EXPECT_FALSE(Connect(cli.get(), srv.get()).cached);
  EXPECT_TRUE(Connect(cli.get(), srv.get()).cached);
}

TEST(TlsVerifyCache, ValidityWindowIsTheIntersectionOfTheChain) {
  int64_t from = 0, until = 0;
  for (const char *base : {"expiring", "expired"}) {
    X509 *leaf = ReadCert(base), *ca = ReadCert("ca");
    ASSERT_NE(nullptr, leaf);
    ASSERT_NE(nullptr, ca);
    // Expected: the latest start and the earliest end of the two (dates
    // read with tls_asn1_time_unix, checked on its own below).
    int64_t starts[2], ends[2];
    X509 *both[2] = {leaf, ca};
    for (int i = 0; i < 2; i++) {
      ASSERT_TRUE(tls_asn1_time_unix(X509_get0_notBefore(both[i]), &starts[i]));
      ASSERT_TRUE(tls_asn1_time_unix(X509_get0_notAfter(both[i]), &ends[i]));
    }
    STACK_OF(X509) *chain = sk_X509_new_null();
    sk_X509_push(chain, leaf);
    sk_X509_push(chain, ca);
    ASSERT_TRUE(tls_validity_window(chain, &from, &until)) << base;
    EXPECT_EQ(std::max(starts[0], starts[1]), from) << base;
    EXPECT_EQ(std::min(ends[0], ends[1]), until) << base;
    sk_X509_pop_free(chain, X509_free);
  }
  // expired.pem ended 2021-01-01, before the test CA began: an empty window.
  EXPECT_EQ(1609459200, until);
  EXPECT_GT(from, until);
  EXPECT_FALSE(tls_validity_window(nullptr, &from, &until));
}

TEST(TlsVerifyCache, Asn1TimesAreReadExactly) {
  struct {
    const char *text;
    int64_t unix_time;
  } cases[] = {
      {"20200101000000Z", 1577836800},  // GeneralizedTime
      {"210101000000Z", 1609459200},    // UTCTime
      {"20991231235959Z", 4102444799},
  };
  for (const auto &tc : cases) {
    ASN1_TIME *t = ASN1_TIME_new();
    ASSERT_TRUE(ASN1_TIME_set_string(t, tc.text)) << tc.text;
    int64_t got = 0;
    EXPECT_TRUE(tls_asn1_time_unix(t, &got)) << tc.text;
    EXPECT_EQ(tc.unix_time, got) << tc.text;
    ASN1_TIME_free(t);
  }
  int64_t got = 0;
  EXPECT_FALSE(tls_asn1_time_unix(nullptr, &got));
}

TEST(TlsVerifyCache, CrlsBoundTheEntries) {
  Config plain(MakeConfig(ClientSpec()));
  EXPECT_EQ(INT64_MIN, plain->crl_from);
  EXPECT_EQ(INT64_MAX, plain->crl_until);

  RuleSpec cs = ClientSpec();
  cs.crl = "ca.crl.pem";
  Config cli(MakeConfig(cs));
  std::string path = CertDir() + "/ca.crl.pem";
  FILE *f = fopen(path.c_str(), "r");
  ASSERT_NE(nullptr, f);
  X509_CRL *crl = PEM_read_X509_CRL(f, nullptr, nullptr, nullptr);
  fclose(f);
  ASSERT_NE(nullptr, crl);
  int64_t next = 0, last = 0;
  ASSERT_TRUE(tls_asn1_time_unix(X509_CRL_get0_nextUpdate(crl), &next));
  ASSERT_TRUE(tls_asn1_time_unix(X509_CRL_get0_lastUpdate(crl), &last));
  EXPECT_EQ(next, cli->crl_until);
  EXPECT_EQ(last, cli->crl_from);
  // Both lie around now (the test PKI is made per run, valid 3650 days).
  EXPECT_LE(last, time(nullptr) + 5);
  EXPECT_GT(next, time(nullptr) + 3000 * 86400LL);
  X509_CRL_free(crl);

  // An entry made under CRLs ends when the first of them does.
  Config srv(MakeConfig(ServerSpec()));
  ASSERT_EQ(0, Connect(cli.get(), srv.get()).rc);
  EXPECT_LE(cli->verified[0].wall_until, cli->crl_until);
  EXPECT_GE(cli->verified[0].wall_from, cli->crl_from);
  EXPECT_TRUE(Connect(cli.get(), srv.get()).cached);
  // A revoked certificate is refused whatever was remembered before.
  Result r = Connect(cli.get(), srv.get(), "localhost", "revoked");
  EXPECT_EQ(-EPROTO, r.rc);
  EXPECT_EQ("certificate revoked", r.error);
}

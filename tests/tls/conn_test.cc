// conn_test.cc: handshakes, verification failures, resumption and data
// transfer between two tlsconns over a socketpair.
#include <errno.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <malloc.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <memory>
#include <string>
#include <vector>

#include "tls/helpers.h"

using tlstest::ClientSpec;
using tlstest::Config;
using tlstest::Handshake;
using tlstest::MakeConfig;
using tlstest::MakePair;
using tlstest::OverrideIdentity;
using tlstest::Pair;
using tlstest::ReadSome;
using tlstest::RuleSpec;
using tlstest::ServerRefusal;
using tlstest::ServerSpec;

namespace {

struct tlsconn_info Info(struct tlsconn *c) {
  struct tlsconn_info info;
  tlsconn_get_info(c, &info);
  return info;
}

// ClientFailure handshakes and returns the client's reason, expecting the
// client to fail.
std::string ClientFailure(const RuleSpec &cs, const RuleSpec &ss,
                          const std::string &server_override = "",
                          const char *name = "localhost",
                          const char *ip = "127.0.0.1") {
  Config cli(MakeConfig(cs)), srv(MakeConfig(ss));
  if (!cli || !srv) {
    return "config failed";
  }
  Pair p;
  MakePair(&p, cli.get(), srv.get(), name, ip);
  if (!server_override.empty()) {
    OverrideIdentity(p.server, server_override);
  }
  Handshake(&p);
  EXPECT_EQ(-EPROTO, p.client_rc);
  EXPECT_EQ(TLSCONN_FAILED, tlsconn_state(p.client));
  return tlsconn_error(p.client);
}

// BothRefuse handshakes |cs| with |ss|, expecting both sides to fail
// (EPROTO), and returns both reasons.
struct Refusal {
  std::string server, client;
};
Refusal BothRefuse(const RuleSpec &cs, const RuleSpec &ss) {
  Config cli(MakeConfig(cs)), srv(MakeConfig(ss));
  Pair p;
  MakePair(&p, cli.get(), srv.get());
  Handshake(&p);
  EXPECT_EQ(-EPROTO, p.server_rc);
  EXPECT_EQ(-EPROTO, p.client_rc);
  return {tlsconn_error(p.server), tlsconn_error(p.client)};
}

TEST(TlsHandshake, HighestCommonVersion) {
  Config cli(MakeConfig(ClientSpec())), srv(MakeConfig(ServerSpec()));
  Pair p;
  MakePair(&p, cli.get(), srv.get());
  Handshake(&p);
  ASSERT_EQ(0, p.client_rc);
  ASSERT_EQ(0, p.server_rc);
  EXPECT_STREQ("TLSv1.3", Info(p.client).version);
  EXPECT_STREQ("TLSv1.3", Info(p.server).version);
  EXPECT_STREQ("localhost", Info(p.server).server_name);
  EXPECT_STREQ("spiffe://test/ns/default/sa/server",
               Info(p.client).peer_identity);
  EXPECT_TRUE(Info(p.client).peer_verified);
  EXPECT_STREQ("CN=server", Info(p.client).peer_subject);

  RuleSpec s12 = ServerSpec();
  s12.max_version = POLICY_TLS1_2;
  Config srv12(MakeConfig(s12));
  Pair q;
  MakePair(&q, cli.get(), srv12.get());
  Handshake(&q);
  ASSERT_EQ(0, q.client_rc) << tlsconn_error(q.client);
  EXPECT_STREQ("TLSv1.2", Info(q.client).version);
}

TEST(TlsHandshake, ServerCipherPreferenceWins) {
  RuleSpec cs = ClientSpec();
  cs.max_version = POLICY_TLS1_2;
  cs.ciphers = {"ECDHE-ECDSA-AES128-GCM-SHA256",
                "ECDHE-ECDSA-CHACHA20-POLY1305"};
  RuleSpec ss = ServerSpec();
  ss.ciphers = {"ECDHE-ECDSA-CHACHA20-POLY1305",
                "ECDHE-ECDSA-AES128-GCM-SHA256"};
  Config cli(MakeConfig(cs)), srv(MakeConfig(ss));
  Pair p;
  MakePair(&p, cli.get(), srv.get());
  Handshake(&p);
  ASSERT_EQ(0, p.client_rc) << tlsconn_error(p.client);
  EXPECT_STREQ("ECDHE-ECDSA-CHACHA20-POLY1305", Info(p.client).cipher);
  EXPECT_STREQ("ECDHE-ECDSA-CHACHA20-POLY1305", Info(p.server).cipher);
}

TEST(TlsHandshake, GroupChoice) {
  RuleSpec cs = ClientSpec();
  cs.groups = {"X25519", "P-384"};
  RuleSpec ss = ServerSpec();
  ss.groups = {"P-384"};
  Config cli(MakeConfig(cs)), srv(MakeConfig(ss));
  Pair p;
  MakePair(&p, cli.get(), srv.get());
  Handshake(&p);
  ASSERT_EQ(0, p.client_rc) << tlsconn_error(p.client);
  EXPECT_STREQ("P-384", Info(p.client).group);
  EXPECT_STREQ("P-384", Info(p.server).group);
}

TEST(TlsHandshake, NoCommonVersion) {
  RuleSpec cs = ClientSpec();
  cs.max_version = POLICY_TLS1_2;
  RuleSpec ss = ServerSpec();
  ss.min_version = POLICY_TLS1_3;
  Refusal r = BothRefuse(cs, ss);
  EXPECT_EQ(
      "no common protocol version: client offered [TLS1.2], server accepts "
      "[TLS1.3]",
      r.server);
  EXPECT_EQ(
      "no common protocol version: client offered [TLS1.2], server refused it "
      "(alert protocol version)",
      r.client);
}

TEST(TlsHandshake, NoCommonCipher) {
  RuleSpec cs = ClientSpec();
  cs.max_version = POLICY_TLS1_2;
  cs.ciphers = {"ECDHE-ECDSA-AES128-GCM-SHA256"};
  RuleSpec ss = ServerSpec();
  ss.ciphers = {"ECDHE-ECDSA-CHACHA20-POLY1305"};
  Refusal r = BothRefuse(cs, ss);
  EXPECT_EQ("no common cipher: client offered [ECDHE-ECDSA-AES128-GCM-SHA256], "
            "server accepts [ECDHE-ECDSA-CHACHA20-POLY1305]",
            r.server);
  EXPECT_EQ(
      "server refused the handshake (alert handshake failure): no common "
      "cipher or group? client offered ciphers [ECDHE-ECDSA-AES128-GCM-SHA256]"
      ", groups []",
      r.client);
}

TEST(TlsHandshake, NoCommonGroup) {
  RuleSpec cs = ClientSpec();
  cs.min_version = POLICY_TLS1_3;
  cs.groups = {"P-384"};
  RuleSpec ss = ServerSpec();
  ss.groups = {"X25519"};
  EXPECT_EQ("no common group: client offered [P-384], server accepts [X25519]",
            BothRefuse(cs, ss).server);
}

TEST(TlsHandshake, MutualAuthRequired) {
  RuleSpec ss = ServerSpec();
  ss.client_auth = POLICY_CLIENT_AUTH_REQUIRED;
  Config srv(MakeConfig(ss));
  {
    Config cli(MakeConfig(ClientSpec()));
    Pair p;
    MakePair(&p, cli.get(), srv.get());
    Handshake(&p);
    EXPECT_EQ(-EPROTO, p.server_rc);
    EXPECT_STREQ("client certificate required but none was sent",
                 tlsconn_error(p.server));
    // TLS 1.3: the client learns it on its first read.
    ssize_t rc = 0;
    if (p.client_rc == 0) {
      ReadSome(p.client, p.cfd, 1, &rc);
    } else {
      rc = p.client_rc;
    }
    EXPECT_EQ(-EPROTO, rc);
    EXPECT_STREQ(
        "server requires a client certificate (alert certificate "
        "required)",
        tlsconn_error(p.client));
  }
  {
    RuleSpec cs = ClientSpec();
    cs.identity = "client";
    Config cli(MakeConfig(cs));
    Pair p;
    MakePair(&p, cli.get(), srv.get());
    Handshake(&p);
    ASSERT_EQ(0, p.client_rc);
    ASSERT_EQ(0, p.server_rc) << tlsconn_error(p.server);
    EXPECT_TRUE(Info(p.server).peer_verified);
    EXPECT_STREQ("spiffe://test/ns/default/sa/client",
                 Info(p.server).peer_identity);
  }
}

TEST(TlsHandshake, MutualAuthOptional) {
  RuleSpec ss = ServerSpec();
  ss.client_auth = POLICY_CLIENT_AUTH_OPTIONAL;
  Config srv(MakeConfig(ss));
  {
    Config cli(MakeConfig(ClientSpec()));
    Pair p;
    MakePair(&p, cli.get(), srv.get());
    Handshake(&p);
    ASSERT_EQ(0, p.server_rc) << tlsconn_error(p.server);
    EXPECT_FALSE(Info(p.server).peer_verified);
    EXPECT_STREQ("", Info(p.server).peer_identity);
  }
  {
    RuleSpec cs = ClientSpec();
    cs.identity = "client";
    Config cli(MakeConfig(cs));
    Pair p;
    MakePair(&p, cli.get(), srv.get());
    Handshake(&p);
    ASSERT_EQ(0, p.server_rc) << tlsconn_error(p.server);
    EXPECT_TRUE(Info(p.server).peer_verified);
  }
  {
    // A certificate that is sent must pass: one from another CA is refused.
    RuleSpec cs = ClientSpec();
    cs.identity = "wrongca";
    Config cli(MakeConfig(cs));
    EXPECT_EQ(
        "certificate not signed by a trusted CA (unable to get local issuer "
        "certificate)",
        ServerRefusal(cli.get(), srv.get()));
  }
}

TEST(TlsVerify, ExpiredRefused) {
  EXPECT_EQ("certificate has expired",
            ClientFailure(ClientSpec(), ServerSpec(), "expired"));
}

TEST(TlsVerify, NotYetValidRefused) {
  EXPECT_EQ("certificate is not yet valid",
            ClientFailure(ClientSpec(), ServerSpec(), "notyet"));
}

TEST(TlsVerify, WrongCaRefused) {
  EXPECT_EQ(
      "certificate not signed by a trusted CA (unable to get local issuer "
      "certificate)",
      ClientFailure(ClientSpec(), ServerSpec(), "wrongca"));
}

TEST(TlsVerify, RevokedRefused) {
  RuleSpec cs = ClientSpec();
  cs.crl = "ca.crl.pem";
  EXPECT_EQ("certificate revoked", ClientFailure(cs, ServerSpec(), "revoked"));
  // The same CRL lets a good certificate through, leaf or whole chain.
  cs.crl_check = POLICY_CRL_CHAIN;
  Config cli(MakeConfig(cs)), srv(MakeConfig(ServerSpec()));
  Pair p;
  MakePair(&p, cli.get(), srv.get());
  Handshake(&p);
  EXPECT_EQ(0, p.client_rc) << tlsconn_error(p.client);
}

TEST(TlsVerify, Sha1Refused) {
  EXPECT_EQ("certificate signed with SHA-1",
            ClientFailure(ClientSpec(), ServerSpec(), "sha1"));
}

TEST(TlsVerify, WrongNameRefused) {
  EXPECT_EQ(
      "peer name mismatch: wanted redis.internal, certificate has "
      "[DNS:localhost, DNS:server.test, IP:127.0.0.1, IP:::1, "
      "URI:spiffe://test/ns/default/sa/server]",
      ClientFailure(ClientSpec(), ServerSpec(), "", "redis.internal"));
}

TEST(TlsVerify, IpChecksIpSans) {
  Config cli(MakeConfig(ClientSpec())), srv(MakeConfig(ServerSpec()));
  Pair p;
  MakePair(&p, cli.get(), srv.get(), nullptr, "127.0.0.1");
  Handshake(&p);
  ASSERT_EQ(0, p.client_rc) << tlsconn_error(p.client);
  EXPECT_STREQ("", Info(p.server).server_name);  // no SNI for an IP

  EXPECT_EQ(
      "peer name mismatch: wanted 10.1.2.3, certificate has [DNS:localhost, "
      "DNS:server.test, IP:127.0.0.1, IP:::1, "
      "URI:spiffe://test/ns/default/sa/server]",
      ClientFailure(ClientSpec(), ServerSpec(), "", nullptr, "10.1.2.3"));
}

TEST(TlsVerify, WrongEkuRefused) {
  EXPECT_EQ("certificate not allowed for TLS server use (key usage)",
            ClientFailure(ClientSpec(), ServerSpec(), "noeku"));
}

TEST(TlsVerify, VerifyPeerFalseAcceptsAnything) {
  RuleSpec cs = ClientSpec();
  cs.verify_peer = false;
  Config cli(MakeConfig(cs)), srv(MakeConfig(ServerSpec()));
  Pair p;
  MakePair(&p, cli.get(), srv.get(), "redis.internal");
  OverrideIdentity(p.server, "wrongca");
  Handshake(&p);
  ASSERT_EQ(0, p.client_rc) << tlsconn_error(p.client);
  EXPECT_FALSE(Info(p.client).peer_verified);
}

TEST(TlsVerify, PeerNamesInbound) {
  RuleSpec ss = ServerSpec();
  ss.client_auth = POLICY_CLIENT_AUTH_REQUIRED;
  ss.peer_names = {"spiffe://test/ns/default/sa/client"};
  Config srv(MakeConfig(ss));
  {
    RuleSpec cs = ClientSpec();
    cs.identity = "client";
    Config cli(MakeConfig(cs));
    Pair p;
    MakePair(&p, cli.get(), srv.get());
    Handshake(&p);
    ASSERT_EQ(0, p.server_rc) << tlsconn_error(p.server);
  }
  {
    RuleSpec cs = ClientSpec();
    cs.identity = "other_client";
    Config cli(MakeConfig(cs));
    EXPECT_EQ(
        "peer identity not allowed: spiffe://test/ns/default/sa/other not in "
        "peer_names [spiffe://test/ns/default/sa/client]",
        ServerRefusal(cli.get(), srv.get()));
  }
}

TEST(TlsVerify, PeerNamesOutbound) {
  RuleSpec cs = ClientSpec();
  cs.peer_names = {"db.internal", "*.test"};
  Config cli(MakeConfig(cs)), srv(MakeConfig(ServerSpec()));
  Pair p;
  MakePair(&p, cli.get(), srv.get());
  Handshake(&p);
  ASSERT_EQ(0, p.client_rc) << tlsconn_error(p.client);

  cs.peer_names = {"db.internal", "*.server.test"};
  EXPECT_EQ(
      "peer identity not allowed: spiffe://test/ns/default/sa/server not in "
      "peer_names [db.internal, *.server.test]",
      ClientFailure(cs, ServerSpec()));
}

// Resume makes two connections from |cli| to |srv1| then |srv2| and
// returns whether the second resumed (both sides agree).
bool Resume(struct tls_config *cli, struct tls_config *srv1,
            struct tls_config *srv2) {
  for (int i = 0; i < 2; i++) {
    Pair p;
    MakePair(&p, cli, i == 0 ? srv1 : srv2);
    Handshake(&p);
    EXPECT_EQ(0, p.client_rc) << tlsconn_error(p.client);
    EXPECT_EQ(0, p.server_rc) << tlsconn_error(p.server);
    // The client takes its tickets while reading the server's data.
    EXPECT_EQ(2, tlsconn_write(p.server, "hi", 2));
    ssize_t rc = 0;
    EXPECT_EQ("hi", ReadSome(p.client, p.cfd, 2, &rc));
    if (i == 1) {
      EXPECT_EQ(Info(p.client).resumed, Info(p.server).resumed);
      return Info(p.client).resumed;
    }
    EXPECT_FALSE(Info(p.client).resumed);
  }
  return false;
}

TEST(TlsResume, Tls13) {
  Config cli(MakeConfig(ClientSpec())), srv(MakeConfig(ServerSpec()));
  EXPECT_TRUE(Resume(cli.get(), srv.get(), srv.get()));
}

TEST(TlsResume, Tls12) {
  RuleSpec cs = ClientSpec();
  cs.max_version = POLICY_TLS1_2;
  Config cli(MakeConfig(cs)), srv(MakeConfig(ServerSpec()));
  EXPECT_TRUE(Resume(cli.get(), srv.get(), srv.get()));
}

TEST(TlsResume, AcrossConfigsWithSameTicketKeys) {
  uint8_t keys[80];
  for (int i = 0; i < 80; i++) {
    keys[i] = static_cast<uint8_t>(i * 7 + 1);
  }
  Config cli(MakeConfig(ClientSpec()));
  Config a(MakeConfig(ServerSpec(), keys)), b(MakeConfig(ServerSpec(), keys));
  uint8_t got[80];
  tls_config_ticket_keys(b.get(), got);
  EXPECT_EQ(0, memcmp(keys, got, 80));
  EXPECT_TRUE(Resume(cli.get(), a.get(), b.get()));

  // Different keys (a fresh config): no resumption.
  Config cli2(MakeConfig(ClientSpec())), c(MakeConfig(ServerSpec()));
  EXPECT_FALSE(Resume(cli2.get(), a.get(), c.get()));
}

// Keys is fixed ticket key material, as a pre-fork server's workers and its
// reloads share.
const uint8_t *Keys() {
  static uint8_t keys[80];
  for (int i = 0; i < 80; i++) {
    keys[i] = static_cast<uint8_t>(i * 5 + 3);
  }
  return keys;
}

RuleSpec MutualServer() {
  RuleSpec ss = ServerSpec();
  ss.client_auth = POLICY_CLIENT_AUTH_REQUIRED;
  ss.crl = "ca.empty.crl.pem";
  return ss;
}

RuleSpec ClientWith(const std::string &identity) {
  RuleSpec cs = ClientSpec();
  cs.identity = identity;
  return cs;
}

// A reload that rebuilds the same settings from the same files (or another
// worker of a pre-fork server) resumes, TLS 1.3 and 1.2.
TEST(TlsResume, SameSettingsResumeAcrossConfigs) {
  for (uint16_t max : {POLICY_TLS1_3, POLICY_TLS1_2}) {
    RuleSpec cs = ClientWith("client");
    cs.max_version = max;
    Config cli(MakeConfig(cs));
    Config a(MakeConfig(MutualServer(), Keys()));
    Config b(MakeConfig(MutualServer(), Keys()));
    EXPECT_TRUE(Resume(cli.get(), a.get(), b.get())) << max;
  }
}

// Sessions are bound to the CRL bytes: a new CRL, even one that revokes
// someone else, means a full handshake (with the CRL checked).
TEST(TlsResume, NewCrlRefusesOldSessions) {
  for (uint16_t max : {POLICY_TLS1_3, POLICY_TLS1_2}) {
    RuleSpec cs = ClientWith("client");
    cs.max_version = max;
    RuleSpec revoking = MutualServer();
    revoking.crl = "ca.crl.pem";
    Config cli(MakeConfig(cs));
    Config a(MakeConfig(MutualServer(), Keys()));
    Config b(MakeConfig(revoking, Keys()));
    EXPECT_FALSE(Resume(cli.get(), a.get(), b.get())) << max;
  }
}

// A client without a certificate got a session from a rule that did not
// ask for one; once the rule requires one, it is refused, not resumed.
TEST(TlsResume, TighteningRefusesOldSessions) {
  for (uint16_t max : {POLICY_TLS1_3, POLICY_TLS1_2}) {
    RuleSpec cs = ClientSpec();
    cs.max_version = max;
    RuleSpec open = ServerSpec();
    RuleSpec tight = ServerSpec();
    tight.client_auth = POLICY_CLIENT_AUTH_REQUIRED;
    tight.peer_names = {"spiffe://test/ns/default/sa/client"};
    Config cli(MakeConfig(cs));
    Config a(MakeConfig(open, Keys())), a2(MakeConfig(open, Keys()));
    Config b(MakeConfig(tight, Keys()));
    // The control: the unchanged rule resumes this client's session.
    EXPECT_TRUE(Resume(cli.get(), a.get(), a2.get())) << max;
    Pair p;
    MakePair(&p, cli.get(), b.get());
    Handshake(&p);
    EXPECT_EQ(-EPROTO, p.server_rc) << max;
    EXPECT_STREQ("client certificate required but none was sent",
                 tlsconn_error(p.server));
  }
}

// The client side: a reloaded config keeps the sessions made under the
// settings it still has, and drops those made under others.
TEST(TlsResume, ClientSessionsFollowTheirSettings) {
  Config srv(MakeConfig(ServerSpec(), Keys()));
  RuleSpec cs = ClientSpec();
  cs.peer_names = {"spiffe://test/ns/default/sa/server"};
  for (bool same : {true, false}) {
    Config old_cli(MakeConfig(cs));
    {
      Pair p;
      MakePair(&p, old_cli.get(), srv.get());
      Handshake(&p);
      ASSERT_EQ(0, p.client_rc) << tlsconn_error(p.client);
      EXPECT_EQ(2, tlsconn_write(p.server, "hi", 2));
      ssize_t rc = 0;
      EXPECT_EQ("hi", ReadSome(p.client, p.cfd, 2, &rc));
    }
    RuleSpec next = cs;
    if (!same) {
      next.peer_names.push_back("spiffe://test/ns/default/sa/other");
    }
    Config new_cli(MakeConfig(next));
    tls_config_inherit_sessions(new_cli.get(), old_cli.get());
    Pair p;
    MakePair(&p, new_cli.get(), srv.get());
    Handshake(&p);
    ASSERT_EQ(0, p.client_rc) << tlsconn_error(p.client);
    EXPECT_EQ(same, Info(p.client).resumed) << same;
  }
}

TEST(TlsResume, OffMeansFullHandshakes) {
  RuleSpec cs = ClientSpec();
  cs.session_resumption = false;
  Config cli(MakeConfig(cs)), srv(MakeConfig(ServerSpec()));
  EXPECT_FALSE(Resume(cli.get(), srv.get(), srv.get()));
}

// Transfer moves |data| from |w| to |r| in this thread, interleaving
// writes and reads. Returns what |r| received.
std::string Transfer(struct tlsconn *w, int wfd, struct tlsconn *r, int rfd,
                     const std::string &data) {
  std::string got;
  size_t off = 0;
  char buf[16384];
  int idle = 0;
  while (got.size() < data.size() && idle < 2) {
    bool progress = false;
    if (off < data.size()) {
      ssize_t n = tlsconn_write(w, data.data() + off, data.size() - off);
      if (n > 0) {
        off += static_cast<size_t>(n);
        progress = true;
      } else {
        EXPECT_EQ(-EAGAIN, n);
      }
    } else if (tlsconn_out_pending(w)) {
      int f = tlsconn_flush(w);
      EXPECT_TRUE(f == 0 || f == -EAGAIN);
    }
    ssize_t n = tlsconn_read(r, buf, sizeof(buf), false);
    if (n > 0) {
      got.append(buf, static_cast<size_t>(n));
      progress = true;
    } else {
      EXPECT_EQ(-EAGAIN, n) << tlsconn_error(r);
    }
    if (!progress) {
      struct pollfd fds[2] = {{wfd, tlsconn_wants(w), 0},
                              {rfd, tlsconn_wants(r), 0}};
      idle = poll(fds, 2, 0) == 0 ? idle + 1 : 0;
    }
  }
  return got;
}

TEST(TlsData, BothWaysWithPartialWrites) {
  Config cli(MakeConfig(ClientSpec())), srv(MakeConfig(ServerSpec()));
  Pair p;
  MakePair(&p, cli.get(), srv.get());
  int small = 4096;
  ASSERT_EQ(0, setsockopt(p.cfd, SOL_SOCKET, SO_SNDBUF, &small, sizeof(small)));
  ASSERT_EQ(0, setsockopt(p.sfd, SOL_SOCKET, SO_SNDBUF, &small, sizeof(small)));
  Handshake(&p);
  ASSERT_EQ(0, p.client_rc);
  ASSERT_EQ(0, p.server_rc);
  std::string mb(1 << 20, '\0');
  for (size_t i = 0; i < mb.size(); i++) {
    mb[i] = static_cast<char>(i * 31 + i / 977);
  }
  EXPECT_TRUE(Transfer(p.client, p.cfd, p.server, p.sfd, mb) == mb);
  EXPECT_TRUE(Transfer(p.server, p.sfd, p.client, p.cfd, mb) == mb);
}

TEST(TlsData, PeekAndPending) {
  Config cli(MakeConfig(ClientSpec())), srv(MakeConfig(ServerSpec()));
  Pair p;
  MakePair(&p, cli.get(), srv.get());
  Handshake(&p);
  ASSERT_EQ(0, p.server_rc);
  ASSERT_EQ(5, tlsconn_write(p.server, "hello", 5));
  EXPECT_EQ(0u, tlsconn_pending(p.client));
  EXPECT_EQ(0, tlsconn_pump(p.client));
  // The TLS 1.3 tickets come first; pump until the data is decrypted.
  for (int i = 0; i < 4 && tlsconn_pending(p.client) == 0; i++) {
    EXPECT_EQ(0, tlsconn_pump(p.client));
  }
  EXPECT_EQ(5u, tlsconn_pending(p.client));
  char buf[16] = {};
  EXPECT_EQ(3, tlsconn_read(p.client, buf, 3, true));
  EXPECT_STREQ("hel", buf);
  EXPECT_EQ(5, tlsconn_read(p.client, buf, sizeof(buf), false));
  EXPECT_EQ(0, memcmp("hello", buf, 5));
  EXPECT_EQ(-EAGAIN, tlsconn_read(p.client, buf, sizeof(buf), false));
  EXPECT_EQ(POLLIN, tlsconn_wants(p.client) & POLLIN);
}

TEST(TlsData, CloseNotifyReadsAsEof) {
  Config cli(MakeConfig(ClientSpec())), srv(MakeConfig(ServerSpec()));
  Pair p;
  MakePair(&p, cli.get(), srv.get());
  Handshake(&p);
  ASSERT_EQ(0, p.server_rc);
  EXPECT_EQ(0, tlsconn_shutdown(p.server));
  ssize_t rc = -1;
  EXPECT_EQ("", ReadSome(p.client, p.cfd, 1, &rc));
  EXPECT_EQ(0, rc);
  EXPECT_EQ(TLSCONN_CLOSED, tlsconn_state(p.client));
  // Half-close: the client can still write to the server.
  EXPECT_EQ(3, tlsconn_write(p.client, "bye", 3));
  EXPECT_EQ("bye", ReadSome(p.server, p.sfd, 3, &rc));
}

TEST(TlsData, TcpEofAfterHandshakeIsEof) {
  Config cli(MakeConfig(ClientSpec())), srv(MakeConfig(ServerSpec()));
  Pair p;
  MakePair(&p, cli.get(), srv.get());
  Handshake(&p);
  ASSERT_EQ(0, p.server_rc);
  ASSERT_EQ(0, shutdown(p.sfd, SHUT_WR));
  ssize_t rc = -1;
  ReadSome(p.client, p.cfd, 1, &rc);
  EXPECT_EQ(0, rc);
  EXPECT_EQ(TLSCONN_CLOSED, tlsconn_state(p.client));
}

TEST(TlsData, TruncatedRecordIsReset) {
  Config cli(MakeConfig(ClientSpec())), srv(MakeConfig(ServerSpec()));
  Pair p;
  MakePair(&p, cli.get(), srv.get());
  Handshake(&p);
  ASSERT_EQ(0, p.server_rc);
  ssize_t rc = 0;
  // Let the client take the tickets first.
  ASSERT_EQ(1, tlsconn_write(p.server, "x", 1));
  ASSERT_EQ("x", ReadSome(p.client, p.cfd, 1, &rc));
  const uint8_t partial[] = {0x17, 0x03, 0x03, 0x00, 0x40, 1, 2, 3};
  ASSERT_EQ(static_cast<ssize_t>(sizeof(partial)),
            write(p.sfd, partial, sizeof(partial)));
  ASSERT_EQ(0, shutdown(p.sfd, SHUT_WR));
  ReadSome(p.client, p.cfd, 1, &rc);
  EXPECT_EQ(-ECONNRESET, rc);
  EXPECT_STREQ("peer closed the connection in the middle of a record",
               tlsconn_error(p.client));
}

TEST(TlsData, GarbageIsRefused) {
  Config srv(MakeConfig(ServerSpec()));
  Config cli(MakeConfig(ClientSpec()));
  Pair p;
  MakePair(&p, cli.get(), srv.get());
  const char req[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
  ASSERT_EQ(static_cast<ssize_t>(sizeof(req) - 1),
            write(p.cfd, req, sizeof(req) - 1));
  EXPECT_EQ(-EPROTO, tlsconn_handshake(p.server));
  EXPECT_STREQ("peer sent garbage (not TLS)", tlsconn_error(p.server));
  char buf[8];
  EXPECT_EQ(-EPROTO, tlsconn_read(p.server, buf, sizeof(buf), false));
}

TEST(TlsData, EofDuringHandshake) {
  Config srv(MakeConfig(ServerSpec()));
  Config cli(MakeConfig(ClientSpec()));
  Pair p;
  MakePair(&p, cli.get(), srv.get());
  ASSERT_EQ(0, shutdown(p.cfd, SHUT_WR));
  EXPECT_EQ(-EPROTO, tlsconn_handshake(p.server));
  EXPECT_STREQ("peer closed the connection during the handshake",
               tlsconn_error(p.server));
}

TEST(TlsData, Alpn) {
  RuleSpec cs = ClientSpec();
  cs.alpn = {"http/1.1", "h2"};
  RuleSpec ss = ServerSpec();
  ss.alpn = {"h2", "http/1.1"};
  Config cli(MakeConfig(cs)), srv(MakeConfig(ss));
  Pair p;
  MakePair(&p, cli.get(), srv.get());
  Handshake(&p);
  ASSERT_EQ(0, p.client_rc);
  EXPECT_STREQ("h2", Info(p.client).alpn);
  EXPECT_STREQ("h2", Info(p.server).alpn);
}

TEST(TlsData, OtherKeyTypes) {
  for (const char *base : {"rsa", "ed25519"}) {
    RuleSpec ss = ServerSpec();
    ss.identity = base;
    Config cli(MakeConfig(ClientSpec())), srv(MakeConfig(ss));
    Pair p;
    MakePair(&p, cli.get(), srv.get());
    Handshake(&p);
    EXPECT_EQ(0, p.client_rc) << base << ": " << tlsconn_error(p.client);
  }
}

}  // namespace

namespace {

TEST(TlsData, SetFdAfterDup) {
  Config cli(MakeConfig(ClientSpec())), srv(MakeConfig(ServerSpec()));
  Pair p;
  MakePair(&p, cli.get(), srv.get());
  Handshake(&p);
  ASSERT_EQ(0, p.client_rc);
  int nfd = dup(p.cfd);
  ASSERT_GE(nfd, 0);
  close(p.cfd);
  p.cfd = nfd;
  tlsconn_set_fd(p.client, nfd);
  EXPECT_EQ(4, tlsconn_write(p.client, "ping", 4));
  ssize_t rc = 0;
  EXPECT_EQ("ping", ReadSome(p.server, p.sfd, 4, &rc));
}

#if !defined(__SANITIZE_ADDRESS__)
// An idle established connection must stay small (target: 32 KiB resident
// each, both buffers released once empty).
TEST(TlsData, IdleConnectionsAreSmall) {
  Config cli(MakeConfig(ClientSpec())), srv(MakeConfig(ServerSpec()));
  const int n = 32;
  std::vector<std::unique_ptr<Pair>> pairs;
  // Warm up (lazy initialisation inside BoringSSL).
  {
    Pair p;
    MakePair(&p, cli.get(), srv.get());
    Handshake(&p);
  }
  size_t before = mallinfo2().uordblks;
  for (int i = 0; i < n; i++) {
    pairs.emplace_back(new Pair);
    Pair *p = pairs.back().get();
    MakePair(p, cli.get(), srv.get());
    Handshake(p);
    ASSERT_EQ(0, p->server_rc);
    ASSERT_EQ(2, tlsconn_write(p->server, "hi", 2));
    ssize_t rc = 0;
    ASSERT_EQ("hi", ReadSome(p->client, p->cfd, 2, &rc));
    EXPECT_FALSE(tlsconn_out_pending(p->client));
  }
  size_t after = mallinfo2().uordblks;
  size_t per_conn = (after - before) / (2 * n);
  EXPECT_LT(per_conn, 32u * 1024) << per_conn;
  RecordProperty("heap_bytes_per_idle_connection", static_cast<int>(per_conn));
  printf("heap bytes per idle TLS connection: %zu\n", per_conn);
}
#endif

}  // namespace

// load_test.cc: valid policies load with the right values, defaults merge
// key by key, relative paths resolve against the policy's folder.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <string>
#include <vector>

#include "policy/policy.h"
#include "policy/test_util.h"

namespace {

std::vector<std::string> Items(const struct policy_strings &s) {
  return std::vector<std::string>(s.items, s.items + s.count);
}

class PolicyLoad : public testing::Test {
 protected:
  void SetUp() override { policytest::WriteCerts(dir_.path()); }
  void TearDown() override {
    policy_free(p_);
    policy_diags_cleanup(&warnings_);
  }

  // Loads |text| as DIR/policy.yaml; fails the test on an error.
  const struct policy *Load(const std::string &text) {
    std::string path = dir_.Join("policy.yaml");
    policytest::WriteFile(path, text);
    policy_free(p_);
    p_ = nullptr;
    int rc = policy_load(&p_, path.c_str(), &err_, &warnings_);
    char buf[1200];
    EXPECT_EQ(rc, 0) << policy_diag_format(&err_, buf, sizeof(buf));
    return p_;
  }

  std::string Abs(const std::string &rel) { return dir_.Join(rel); }

  policytest::TempDir dir_;
  struct policy *p_ = nullptr;
  struct policy_diag err_;
  struct policy_diags warnings_ = {};
};

const char kFull[] = R"(version: 1
default_action: deny
identities:
  svc:
    cert: certs/svc.pem
    key: certs/svc.key
    ocsp_staple: certs/svc.ocsp
  ec:
    cert: certs/svc.pem
    key: certs/ec.key
trust:
  internal:
    ca: certs/ca.pem
    crl: certs/ca.crl.pem
  public:
    ca: system
defaults:
  protocols: {min: TLS1.2, max: TLS1.3}
  ciphers:
    - ECDHE-ECDSA-AES256-GCM-SHA384
    - ECDHE-RSA-AES256-GCM-SHA384
  groups: [X25519, P-256]
  handshake_timeout_ms: 8000
  session_resumption: false
rules:
  - name: redis-out
    direction: outbound
    match:
      addresses: [127.0.0.1, 10.0.0.0/8, "::1"]
      names: [redis.internal, "*.svc.cluster.local"]
      ports: [6379, "7000-7010"]
    action: tls
    tls:
      identity: svc
      trust: internal
      verify_peer: true
      server_name: redis.internal
      peer_names: ["spiffe://prod/ns/db/sa/redis", redis.internal]
      protocols: {min: TLS1.3}
      ciphers: [ECDHE-RSA-CHACHA20-POLY1305]
      groups: [P-384]
      alpn: [h2, http/1.1]
      handshake_timeout_ms: 5000
      session_resumption: true
      crl_check: chain
  - name: web-in
    direction: inbound
    match:
      ports: [8443]
    action: permissive
    tls:
      identity: ec
      trust: internal
      client_auth: optional
  - name: plain
    direction: outbound
    action: plaintext
log:
  level: debug
  file: logs/tlsshim.log
  format: json
debug:
  allow_keylog: true
)";

TEST_F(PolicyLoad, EveryKey) {
  const struct policy *p = Load(kFull);
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(std::string(p->path), Abs("policy.yaml"));
  EXPECT_EQ(std::string(p->dir), dir_.path());
  EXPECT_EQ(p->version, 1);
  EXPECT_EQ(p->default_action, POLICY_ACTION_DENY);

  ASSERT_EQ(p->identity_count, 2u);
  EXPECT_STREQ(p->identities[0].name, "svc");
  EXPECT_EQ(std::string(p->identities[0].cert), Abs("certs/svc.pem"));
  EXPECT_EQ(std::string(p->identities[0].key), Abs("certs/svc.key"));
  EXPECT_EQ(std::string(p->identities[0].ocsp_staple), Abs("certs/svc.ocsp"));
  EXPECT_EQ(p->identities[0].pos.line, 4);
  EXPECT_EQ(p->identities[0].pos.col, 3);
  EXPECT_EQ(p->identities[0].cert_pos.line, 5);
  EXPECT_EQ(p->identities[0].cert_pos.col, 5);
  EXPECT_EQ(p->identities[0].key_pos.line, 6);
  EXPECT_EQ(p->identities[0].ocsp_pos.line, 7);
  EXPECT_EQ(p->identities[1].ocsp_staple, nullptr);

  ASSERT_EQ(p->trust_count, 2u);
  EXPECT_STREQ(p->trusts[0].name, "internal");
  EXPECT_EQ(std::string(p->trusts[0].ca), Abs("certs/ca.pem"));
  EXPECT_FALSE(p->trusts[0].ca_system);
  EXPECT_EQ(std::string(p->trusts[0].crl), Abs("certs/ca.crl.pem"));
  EXPECT_EQ(p->trusts[0].crl_pos.line, 14);
  EXPECT_TRUE(p->trusts[1].ca_system);
  EXPECT_STREQ(p->trusts[1].ca, "/etc/ssl/certs/ca-certificates.crt");
  EXPECT_EQ(p->trusts[1].crl, nullptr);

  const struct policy_tls &d = p->defaults;
  EXPECT_EQ(d.min_version, POLICY_TLS1_2);
  EXPECT_EQ(d.max_version, POLICY_TLS1_3);
  EXPECT_EQ(Items(d.ciphers),
            (std::vector<std::string>{"ECDHE-ECDSA-AES256-GCM-SHA384",
                                      "ECDHE-RSA-AES256-GCM-SHA384"}));
  EXPECT_EQ(d.ciphers.pos[1].line, 21);
  EXPECT_EQ(d.ciphers.pos[1].col, 7);
  EXPECT_EQ(Items(d.groups), (std::vector<std::string>{"X25519", "P-256"}));
  EXPECT_EQ(d.handshake_timeout_ms, 8000);
  EXPECT_FALSE(d.session_resumption);
  EXPECT_EQ(d.protocols_pos.line, 18);
  EXPECT_EQ(d.pos.line, 17);

  ASSERT_EQ(p->rule_count, 3u);
  const struct policy_rule &r = p->rules[0];
  EXPECT_STREQ(r.name, "redis-out");
  EXPECT_EQ(r.index, 0u);
  EXPECT_EQ(r.direction, POLICY_OUTBOUND);
  EXPECT_EQ(r.pos.line, 26);
  EXPECT_EQ(r.pos.col, 5);
  ASSERT_EQ(r.address_count, 3u);
  char buf[64];
  EXPECT_STREQ(policy_format_address(r.addresses[0].addr, buf, sizeof(buf)),
               "127.0.0.1");
  EXPECT_EQ(r.addresses[0].prefix, 128);
  EXPECT_STREQ(policy_format_address(r.addresses[1].addr, buf, sizeof(buf)),
               "10.0.0.0");
  EXPECT_EQ(r.addresses[1].prefix, 104);
  EXPECT_STREQ(policy_format_address(r.addresses[2].addr, buf, sizeof(buf)),
               "::1");
  EXPECT_EQ(r.addresses[2].prefix, 128);
  EXPECT_EQ(Items(r.names), (std::vector<std::string>{"redis.internal",
                                                      "*.svc.cluster.local"}));
  ASSERT_EQ(r.port_count, 2u);
  EXPECT_EQ(r.ports[0].low, 6379);
  EXPECT_EQ(r.ports[0].high, 6379);
  EXPECT_EQ(r.ports[1].low, 7000);
  EXPECT_EQ(r.ports[1].high, 7010);
  EXPECT_EQ(r.action, POLICY_ACTION_TLS);

  const struct policy_tls &t = r.tls;
  EXPECT_EQ(t.identity, &p->identities[0]);
  EXPECT_EQ(t.trust, &p->trusts[0]);
  EXPECT_TRUE(t.verify_peer);
  EXPECT_EQ(t.client_auth, POLICY_CLIENT_AUTH_NONE);
  EXPECT_STREQ(t.server_name, "redis.internal");
  EXPECT_EQ(Items(t.peer_names),
            (std::vector<std::string>{"spiffe://prod/ns/db/sa/redis",
                                      "redis.internal"}));
  EXPECT_EQ(t.min_version, POLICY_TLS1_3);
  EXPECT_EQ(t.max_version, POLICY_TLS1_3);
  EXPECT_EQ(Items(t.ciphers),
            (std::vector<std::string>{"ECDHE-RSA-CHACHA20-POLY1305"}));
  EXPECT_EQ(Items(t.groups), (std::vector<std::string>{"P-384"}));
  EXPECT_EQ(Items(t.alpn), (std::vector<std::string>{"h2", "http/1.1"}));
  EXPECT_EQ(t.handshake_timeout_ms, 5000);
  EXPECT_TRUE(t.session_resumption);
  EXPECT_EQ(t.crl_check, POLICY_CRL_CHAIN);
  EXPECT_EQ(t.pos.line, 33);
  EXPECT_EQ(t.identity_pos.line, 34);
  EXPECT_EQ(t.identity_pos.col, 7);
  EXPECT_EQ(t.trust_pos.line, 35);
  EXPECT_EQ(t.verify_peer_pos.line, 36);
  EXPECT_EQ(t.server_name_pos.line, 37);
  EXPECT_EQ(t.peer_names_pos.line, 38);
  EXPECT_EQ(t.protocols_pos.line, 39);
  EXPECT_EQ(t.ciphers_pos.line, 40);
  EXPECT_EQ(t.groups_pos.line, 41);
  EXPECT_EQ(t.alpn_pos.line, 42);
  EXPECT_EQ(t.crl_check_pos.line, 45);
  EXPECT_EQ(t.ciphers.pos[0].line, 40);
  EXPECT_EQ(t.ciphers.pos[0].col, 17);

  const struct policy_rule &in = p->rules[1];
  EXPECT_EQ(in.direction, POLICY_INBOUND);
  EXPECT_EQ(in.action, POLICY_ACTION_PERMISSIVE);
  EXPECT_EQ(in.tls.identity, &p->identities[1]);
  EXPECT_EQ(in.tls.client_auth, POLICY_CLIENT_AUTH_OPTIONAL);
  EXPECT_EQ(in.address_count, 0u);
  EXPECT_EQ(in.names.count, 0u);
  // Keys the rule does not name come from `defaults`.
  EXPECT_EQ(in.tls.handshake_timeout_ms, 8000);
  EXPECT_FALSE(in.tls.session_resumption);
  EXPECT_EQ(Items(in.tls.groups),
            (std::vector<std::string>{"X25519", "P-256"}));
  EXPECT_EQ(in.tls.groups_pos.line, 22);

  EXPECT_EQ(p->rules[2].action, POLICY_ACTION_PLAINTEXT);
  EXPECT_EQ(p->rules[2].tls.pos.line, 55);

  EXPECT_EQ(p->log.level, POLICY_LOG_DEBUG);
  EXPECT_EQ(std::string(p->log.file), Abs("logs/tlsshim.log"));
  EXPECT_EQ(p->log.format, POLICY_LOG_JSON);
  EXPECT_TRUE(p->allow_keylog);
  EXPECT_EQ(warnings_.count, 0u);
}

TEST_F(PolicyLoad, BuiltInDefaults) {
  const struct policy *p = Load("version: 1\n");
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(p->default_action, POLICY_ACTION_PLAINTEXT);
  EXPECT_EQ(p->identity_count, 0u);
  EXPECT_EQ(p->trust_count, 0u);
  EXPECT_EQ(p->rule_count, 0u);
  const struct policy_tls &d = p->defaults;
  EXPECT_EQ(d.min_version, POLICY_TLS1_2);
  EXPECT_EQ(d.max_version, POLICY_TLS1_3);
  EXPECT_EQ(Items(d.ciphers),
            (std::vector<std::string>{"ECDHE-ECDSA-AES128-GCM-SHA256",
                                      "ECDHE-RSA-AES128-GCM-SHA256",
                                      "ECDHE-ECDSA-CHACHA20-POLY1305"}));
  EXPECT_EQ(Items(d.groups),
            (std::vector<std::string>{"X25519", "P-256", "P-384"}));
  EXPECT_EQ(d.handshake_timeout_ms, 10000);
  EXPECT_TRUE(d.session_resumption);
  EXPECT_TRUE(d.verify_peer);
  EXPECT_EQ(d.client_auth, POLICY_CLIENT_AUTH_NONE);
  EXPECT_EQ(d.crl_check, POLICY_CRL_LEAF);
  EXPECT_EQ(d.identity, nullptr);
  EXPECT_EQ(d.trust, nullptr);
  EXPECT_EQ(d.server_name, nullptr);
  EXPECT_EQ(d.ciphers_pos.line, 0);
  EXPECT_EQ(d.pos.line, 0);
  EXPECT_EQ(p->log.level, POLICY_LOG_WARN);
  EXPECT_EQ(p->log.file, nullptr);
  EXPECT_EQ(p->log.format, POLICY_LOG_TEXT);
  EXPECT_FALSE(p->allow_keylog);
}

TEST_F(PolicyLoad, DefaultsMergeKeyByKey) {
  const struct policy *p = Load(R"(version: 1
trust:
  internal:
    ca: certs/ca.pem
defaults:
  protocols: {max: TLS1.2}
  handshake_timeout_ms: 3000
  trust: internal
rules:
  - name: a
    direction: outbound
    action: tls
    tls:
      protocols: {min: TLS1.2}
      groups: [P-256]
  - name: b
    direction: outbound
    action: tls
)");
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(p->defaults.min_version, POLICY_TLS1_2);
  EXPECT_EQ(p->defaults.max_version, POLICY_TLS1_2);
  const struct policy_tls &a = p->rules[0].tls;
  EXPECT_EQ(a.min_version, POLICY_TLS1_2);
  EXPECT_EQ(a.max_version, POLICY_TLS1_2);  // kept from defaults
  EXPECT_EQ(a.handshake_timeout_ms, 3000);
  EXPECT_EQ(a.trust, &p->trusts[0]);
  EXPECT_EQ(a.trust_pos.line, 8);  // the defaults' key
  EXPECT_EQ(Items(a.groups), (std::vector<std::string>{"P-256"}));
  EXPECT_EQ(a.groups_pos.line, 15);
  EXPECT_EQ(Items(a.ciphers).size(), 3u);  // built-in
  EXPECT_EQ(a.ciphers_pos.line, 0);
  const struct policy_tls &b = p->rules[1].tls;
  EXPECT_EQ(b.max_version, POLICY_TLS1_2);
  EXPECT_EQ(b.pos.line, 16);  // no tls key: the rule itself
  EXPECT_EQ(Items(b.groups),
            (std::vector<std::string>{"X25519", "P-256", "P-384"}));
}

TEST_F(PolicyLoad, ProtocolsMinKeepsDefaultMax) {
  const struct policy *p = Load(R"(version: 1
rules:
  - name: a
    direction: outbound
    action: tls
    tls:
      verify_peer: false
      protocols: {min: TLS1.3}
)");
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(p->rules[0].tls.min_version, POLICY_TLS1_3);
  EXPECT_EQ(p->rules[0].tls.max_version, POLICY_TLS1_3);
  EXPECT_FALSE(p->rules[0].tls.verify_peer);
}

TEST_F(PolicyLoad, DirectionKeysFromDefaultsDoNotLeak) {
  const struct policy *p = Load(R"(version: 1
identities:
  svc: {cert: certs/svc.pem, key: certs/svc.key}
trust:
  internal: {ca: certs/ca.pem}
defaults:
  trust: internal
  client_auth: required
  server_name: db.internal
rules:
  - {name: out, direction: outbound, action: tls}
  - {name: in, direction: inbound, action: tls, tls: {identity: svc}}
)");
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(p->rules[0].tls.client_auth, POLICY_CLIENT_AUTH_NONE);
  EXPECT_STREQ(p->rules[0].tls.server_name, "db.internal");
  EXPECT_EQ(p->rules[1].tls.client_auth, POLICY_CLIENT_AUTH_REQUIRED);
  EXPECT_EQ(p->rules[1].tls.server_name, nullptr);
}

TEST_F(PolicyLoad, RelativePathsResolveAgainstPolicyFolder) {
  policytest::WriteCerts(dir_.Join("sub"));
  std::string path = dir_.Join("sub/p.yaml");
  policytest::WriteFile(path, R"(version: 1
identities:
  svc:
    cert: certs/svc.pem
    key: ./certs/svc.key
trust:
  abs:
    ca: )" + dir_.Join("certs/ca.pem") +
                                  "\n");
  struct policy *p = nullptr;
  ASSERT_EQ(policy_load(&p, path.c_str(), &err_, nullptr), 0) << err_.message;
  EXPECT_EQ(std::string(p->dir), dir_.Join("sub"));
  EXPECT_EQ(std::string(p->identities[0].cert), dir_.Join("sub/certs/svc.pem"));
  EXPECT_EQ(std::string(p->identities[0].key),
            dir_.Join("sub/./certs/svc.key"));
  EXPECT_EQ(std::string(p->trusts[0].ca), dir_.Join("certs/ca.pem"));
  policy_free(p);
}

TEST_F(PolicyLoad, RelativePolicyPathIsMadeAbsolute) {
  char cwd[4096];
  ASSERT_NE(getcwd(cwd, sizeof(cwd)), nullptr);
  ASSERT_EQ(chdir(dir_.path().c_str()), 0);
  policytest::WriteFile(dir_.Join("rel.yaml"),
                        "version: 1\ntrust: {t: {ca: certs/ca.pem}}\n");
  struct policy *p = nullptr;
  int rc = policy_load(&p, "rel.yaml", &err_, nullptr);
  ASSERT_EQ(chdir(cwd), 0);
  ASSERT_EQ(rc, 0) << err_.message;
  EXPECT_EQ(std::string(p->path), dir_.Join("rel.yaml"));
  EXPECT_EQ(std::string(p->trusts[0].ca), dir_.Join("certs/ca.pem"));
  policy_free(p);
}

TEST_F(PolicyLoad, KeyReadableByOthersIsAWarning) {
  const struct policy *p = Load(R"(version: 1
identities:
  svc:
    cert: certs/svc.pem
    key: certs/open.key
)");
  ASSERT_NE(p, nullptr);
  ASSERT_EQ(warnings_.count, 1u);
  EXPECT_EQ(warnings_.items[0].line, 5);
  EXPECT_EQ(warnings_.items[0].col, 10);
  char buf[1200];
  EXPECT_EQ(
      std::string(policy_diag_format(&warnings_.items[0], buf, sizeof(buf))),
      "policy " + Abs("policy.yaml") +
          ": line 5 col 10: key file 'certs/open.key' is readable by "
          "other users (mode 0644)");
  EXPECT_STREQ(warnings_.items[0].source_line, "    key: certs/open.key");
}

// Files that others can write: the policy itself, a certificate, a CA
// bundle, a CRL; a key that others can both read and write gets both
// warnings. None is an error.
TEST_F(PolicyLoad, FilesOthersCanWriteAreWarnings) {
  policytest::WriteFile(Abs("certs/w.pem"), policytest::Pem("CERTIFICATE"),
                        0664);
  policytest::WriteFile(Abs("certs/w.key"), policytest::Pem("PRIVATE KEY"),
                        0646);
  policytest::WriteFile(Abs("certs/w.crl.pem"), policytest::Pem("X509 CRL"),
                        0602);
  const std::string text = R"(version: 1
identities:
  svc:
    cert: certs/w.pem
    key: certs/w.key
trust:
  t:
    ca: certs/w.pem
    crl: certs/w.crl.pem
)";
  std::string path = Abs("policy.yaml");
  policytest::WriteFile(path, text, 0666);
  ASSERT_EQ(0, policy_load(&p_, path.c_str(), &err_, &warnings_))
      << err_.message;
  std::vector<std::string> got;
  char buf[1200];
  for (size_t i = 0; i < warnings_.count; i++) {
    got.push_back(policy_diag_format(&warnings_.items[i], buf, sizeof(buf)));
  }
  const std::string at = "policy " + path + ": ";
  EXPECT_EQ(got,
            (std::vector<std::string>{
                at + "line 4 col 11: file 'certs/w.pem' is writable by other "
                     "users (mode 0664)",
                at + "line 5 col 10: key file 'certs/w.key' is readable by "
                     "other users (mode 0646)",
                at + "line 5 col 10: file 'certs/w.key' is writable by other "
                     "users (mode 0646)",
                at + "line 8 col 9: file 'certs/w.pem' is writable by other "
                     "users (mode 0664)",
                at + "line 9 col 10: file 'certs/w.crl.pem' is writable by "
                     "other users (mode 0602)",
                at + "the policy file is writable by other users (mode 0666)",
            }));
  // The same files kept to their owner: no warning at all.
  for (const char *f : {"certs/w.pem", "certs/w.crl.pem", "policy.yaml"}) {
    ASSERT_EQ(0, chmod(Abs(f).c_str(), 0644));
  }
  ASSERT_EQ(0, chmod(Abs("certs/w.key").c_str(), 0600));
  policy_free(p_);
  p_ = nullptr;
  policy_diags_cleanup(&warnings_);
  ASSERT_EQ(0, policy_load(&p_, path.c_str(), &err_, &warnings_));
  EXPECT_EQ(0u, warnings_.count);
}

TEST_F(PolicyLoad, LogFileStderrIsNull) {
  const struct policy *p = Load("version: 1\nlog: {file: stderr}\n");
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(p->log.file, nullptr);
}

TEST_F(PolicyLoad, CommentsQuotesAndFlowStyle) {
  const struct policy *p = Load(
      "# a comment\nversion: \"1\"\ndefault_action: 'deny'  # trailing\n"
      "rules: [{name: x, direction: inbound, action: deny, match: {ports: "
      "['1-65535']}}]\n");
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(p->default_action, POLICY_ACTION_DENY);
  ASSERT_EQ(p->rule_count, 1u);
  EXPECT_EQ(p->rules[0].ports[0].low, 1);
  EXPECT_EQ(p->rules[0].ports[0].high, 65535);
}

TEST(PolicyLoadBuffer, EmptyAndNullText) {
  struct policy *p = nullptr;
  struct policy_diag err;
  EXPECT_LT(policy_load_buffer(&p, "/x/p.yaml", "", 0, &err, nullptr), 0);
  EXPECT_EQ(p, nullptr);
  EXPECT_STREQ(err.message, "the policy file is empty");
  EXPECT_EQ(err.line, 1);
  EXPECT_LT(policy_load_buffer(&p, "/x/p.yaml", nullptr, 0, &err, nullptr), 0);
  EXPECT_STREQ(err.message, "the policy file is empty");
}

TEST(PolicyLoadBuffer, NulByteIsASyntaxError) {
  const char text[] = "version: 1\nx: a\0b\n";
  struct policy *p = nullptr;
  struct policy_diag err;
  EXPECT_LT(policy_load_buffer(&p, "/x/p.yaml", text, sizeof(text) - 1, &err,
                               nullptr),
            0);
  EXPECT_EQ(p, nullptr);
  EXPECT_EQ(std::string(err.message).rfind("YAML syntax error: ", 0), 0u)
      << err.message;
  EXPECT_EQ(err.line, 3 - 1);
}

TEST(PolicyDiag, FormatWithoutLine) {
  struct policy_diag d;
  policy_diag_set(&d, "/etc/p.yaml", 0, 0, "cannot open: %s", "boom");
  char buf[100];
  EXPECT_STREQ(policy_diag_format(&d, buf, sizeof(buf)),
               "policy /etc/p.yaml: cannot open: boom");
  policy_diag_set(&d, "/etc/p.yaml", 12, 5, "unknown key '%s'", "cipher");
  EXPECT_STREQ(policy_diag_format(&d, buf, sizeof(buf)),
               "policy /etc/p.yaml: line 12 col 5: unknown key 'cipher'");
  char small[10];
  EXPECT_STREQ(policy_diag_format(&d, small, sizeof(small)), "policy /e");
}

}  // namespace

namespace {

// Every file in tests/policy/valid/ loads without error or warning.
TEST(PolicyValid, FixturesLoad) {
  std::string dir = std::string(TLSSHIM_TEST_DIR) + "/policy/valid";
  int n = 0;
  for (const auto &entry : std::filesystem::directory_iterator(dir)) {
    if (entry.path().extension() != ".yaml") {
      continue;
    }
    policytest::TempDir tmp;
    policytest::WriteCerts(tmp.path());
    std::string path = tmp.Join("policy.yaml");
    policytest::WriteFile(path, policytest::ReadFile(entry.path().string()));
    struct policy *p = nullptr;
    struct policy_diag err;
    struct policy_diags warnings = {};
    char buf[1200];
    EXPECT_EQ(policy_load(&p, path.c_str(), &err, &warnings), 0)
        << entry.path() << ": " << policy_diag_format(&err, buf, sizeof(buf));
    EXPECT_EQ(warnings.count, 0u) << entry.path();
    policy_free(p);
    policy_diags_cleanup(&warnings);
    n++;
  }
  EXPECT_GE(n, 2);
}

}  // namespace

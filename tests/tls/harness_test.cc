// harness_test.cc: the shared test harness of tls_test (test PKI, policies,
// handshake driver). Named *_test.cc so the tests' glob builds it into the
// binary. Policies are built by hand (MakePolicy) and freed by the policy
// module's own policy_free.
#include <errno.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <mutex>

#include "shim/tls/internal.h"
#include "tls/helpers.h"

namespace tlstest {
namespace {

std::string g_root;  // the temporary folder, removed at the end
std::string g_dir;   // the PKI inside it

class CertEnvironment : public ::testing::Environment {
 public:
  void TearDown() override {
    if (!g_root.empty()) {
      std::string cmd = "rm -rf '" + g_root + "'";
      EXPECT_EQ(0, system(cmd.c_str()));
    }
  }
};

::testing::Environment *const g_env =
    ::testing::AddGlobalTestEnvironment(new CertEnvironment);

char *Dup(const std::string &s) { return strdup(s.c_str()); }

void FillStrings(struct policy_strings *out,
                 const std::vector<std::string> &in) {
  out->count = in.size();
  out->items = static_cast<char **>(calloc(in.size() + 1, sizeof(char *)));
  out->pos = static_cast<struct policy_pos *>(
      calloc(in.size() + 1, sizeof(struct policy_pos)));
  for (size_t i = 0; i < in.size(); i++) {
    out->items[i] = Dup(in[i]);
    out->pos[i] = {10 + static_cast<int>(i), 7};
  }
}

int64_t NowMs() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

}  // namespace

const std::string &CertDir() {
  static std::once_flag once;
  std::call_once(once, [] {
    char tmpl[] = "/tmp/tlsshim-tls-test-XXXXXX";
    char *d = mkdtemp(tmpl);
    if (d == nullptr) {
      abort();
    }
    g_root = d;
    g_dir = g_root;
    std::string cmd = std::string("sh ") + TLSSHIM_TEST_DIR +
                      "/gen_certs.sh '" + g_dir + "/pki'";
    if (system(cmd.c_str()) != 0) {
      fprintf(stderr, "gen_certs.sh failed\n");
      abort();
    }
    g_dir += "/pki";
  });
  static std::string pki;
  pki = g_dir;
  return pki;
}

RuleSpec ServerSpec() {
  RuleSpec s;
  s.inbound = true;
  s.identity = "server";
  s.ca = "ca";
  return s;
}

RuleSpec ClientSpec() {
  RuleSpec s;
  s.inbound = false;
  s.ca = "ca";
  return s;
}

struct policy *MakePolicy(const RuleSpec &spec) {
  const std::string &dir = CertDir();
  auto *p = static_cast<struct policy *>(calloc(1, sizeof(struct policy)));
  p->path = Dup(dir + "/policy.yaml");
  p->dir = Dup(dir);
  p->version = 1;
  p->allow_keylog = spec.allow_keylog;
  if (!spec.identity.empty()) {
    p->identity_count = 1;
    p->identities = static_cast<struct policy_identity *>(
        calloc(1, sizeof(struct policy_identity)));
    struct policy_identity *id = &p->identities[0];
    id->name = Dup("id");
    id->cert = Dup(dir + "/" + spec.identity + ".pem");
    std::string key =
        spec.identity_key.empty() ? spec.identity : spec.identity_key;
    id->key = Dup(dir + "/" + key + ".key");
    id->pos = {3, 3};
    id->cert_pos = {4, 5};
    id->key_pos = {5, 5};
  }
  if (!spec.ca.empty()) {
    p->trust_count = 1;
    p->trusts = static_cast<struct policy_trust *>(
        calloc(1, sizeof(struct policy_trust)));
    struct policy_trust *t = &p->trusts[0];
    t->name = Dup("trust");
    t->ca = Dup(dir + "/" + spec.ca + ".pem");
    if (!spec.crl.empty()) {
      t->crl = Dup(dir + "/" + spec.crl);
    }
    t->pos = {6, 3};
    t->ca_pos = {7, 5};
    t->crl_pos = {8, 5};
  }
  p->rule_count = 1;
  p->rules =
      static_cast<struct policy_rule *>(calloc(1, sizeof(struct policy_rule)));
  struct policy_rule *r = &p->rules[0];
  r->name = Dup(spec.inbound ? "in" : "out");
  r->index = 0;
  r->direction = spec.inbound ? POLICY_INBOUND : POLICY_OUTBOUND;
  r->action = POLICY_ACTION_TLS;
  r->pos = {9, 5};
  struct policy_tls *t = &r->tls;
  t->min_version = spec.min_version;
  t->max_version = spec.max_version;
  FillStrings(&t->ciphers, spec.ciphers);
  FillStrings(&t->groups, spec.groups);
  FillStrings(&t->peer_names, spec.peer_names);
  FillStrings(&t->alpn, spec.alpn);
  t->handshake_timeout_ms = 10000;
  t->session_resumption = spec.session_resumption;
  t->identity = p->identities;
  t->trust = p->trusts;
  t->verify_peer = spec.verify_peer;
  t->client_auth = spec.client_auth;
  t->crl_check = spec.crl_check;
  if (!spec.server_name.empty()) {
    t->server_name = Dup(spec.server_name);
  }
  t->pos = {9, 5};
  t->ciphers_pos = {10, 5};
  t->groups_pos = {10, 5};
  return p;
}

struct tls_config *MakeConfig(const RuleSpec &spec,
                              const uint8_t *ticket_keys) {
  struct policy *p = MakePolicy(spec);
  struct tls_config *cfg = nullptr;
  struct policy_diag err;
  memset(&err, 0, sizeof(err));
  int rc = tls_config_new(&cfg, p, ticket_keys, &err, nullptr);
  EXPECT_EQ(0, rc) << err.message;
  if (rc != 0) {
    policy_free(p);
    return nullptr;
  }
  return cfg;
}

Pair::~Pair() {
  tlsconn_free(client);
  tlsconn_free(server);
  if (cfd >= 0) {
    close(cfd);
  }
  if (sfd >= 0) {
    close(sfd);
  }
}

void MakePair(Pair *p, struct tls_config *cli, struct tls_config *srv,
              const char *verify_name, const char *peer_ip,
              const char *peer_key) {
  int sv[2];
  ASSERT_EQ(0, socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv));
  p->cfd = sv[0];
  p->sfd = sv[1];
  struct tlsconn_params cp = {};
  cp.config = cli;
  cp.rule = &tls_config_policy(cli)->rules[0];
  cp.is_server = false;
  cp.fd = p->cfd;
  cp.verify_name = verify_name;
  cp.peer_ip = peer_ip;
  cp.peer_key = peer_key;
  ASSERT_EQ(0, tlsconn_new(&p->client, &cp));
  struct tlsconn_params sp = {};
  sp.config = srv;
  sp.rule = &tls_config_policy(srv)->rules[0];
  sp.is_server = true;
  sp.fd = p->sfd;
  ASSERT_EQ(0, tlsconn_new(&p->server, &sp));
}

void Handshake(Pair *p) {
  bool cdone = false, sdone = false;
  int64_t deadline = NowMs() + 5000;
  while (NowMs() < deadline) {
    if (!cdone) {
      p->client_rc = tlsconn_handshake(p->client);
      cdone = p->client_rc != -EAGAIN;
    }
    if (!sdone) {
      p->server_rc = tlsconn_handshake(p->server);
      sdone = p->server_rc != -EAGAIN;
    }
    if (cdone && sdone) {
      return;
    }
    struct pollfd fds[2];
    nfds_t n = 0;
    if (!cdone) {
      fds[n++] = {p->cfd, tlsconn_wants(p->client), 0};
    }
    if (!sdone) {
      fds[n++] = {p->sfd, tlsconn_wants(p->server), 0};
    }
    // Everything happens in this thread over a local socketpair: when a side
    // waits and nothing is ready, it will wait forever. Stop there.
    int r = poll(fds, n, 0);
    if (r == 0) {
      return;
    }
    ASSERT_GT(r, 0);
  }
  ADD_FAILURE() << "handshake did not finish in 5 s";
}

std::string ServerRefusal(struct tls_config *cli, struct tls_config *srv) {
  Pair p;
  MakePair(&p, cli, srv);
  Handshake(&p);
  EXPECT_EQ(-EPROTO, p.server_rc);
  return tlsconn_error(p.server);
}

std::string ReadSome(struct tlsconn *c, int fd, size_t want, ssize_t *rc) {
  std::string out;
  char buf[16384];
  int64_t deadline = NowMs() + 5000;
  *rc = 0;
  while (out.size() < want && NowMs() < deadline) {
    ssize_t n = tlsconn_read(c, buf, sizeof(buf), false);
    *rc = n;
    if (n > 0) {
      out.append(buf, static_cast<size_t>(n));
      continue;
    }
    if (n != -EAGAIN) {
      break;
    }
    struct pollfd pfd = {fd, tlsconn_wants(c), 0};
    if (poll(&pfd, 1, 0) == 0) {
      break;  // nothing more will come in this single-threaded test
    }
  }
  return out;
}

void OverrideIdentity(struct tlsconn *c, const std::string &base) {
  std::string dir = CertDir();
  ASSERT_EQ(
      1, SSL_use_certificate_file(c->ssl, (dir + "/" + base + ".pem").c_str(),
                                  SSL_FILETYPE_PEM));
  ASSERT_EQ(1,
            SSL_use_PrivateKey_file(c->ssl, (dir + "/" + base + ".key").c_str(),
                                    SSL_FILETYPE_PEM));
}

}  // namespace tlstest

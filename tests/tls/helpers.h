// helpers.h: test PKI, hand-built policies and an in-memory handshake driver
// for the TLS layer tests.
#ifndef TLSSHIM_TESTS_TLS_HELPERS_H
#define TLSSHIM_TESTS_TLS_HELPERS_H

#include <stdint.h>

#include <memory>
#include <string>
#include <vector>

#include "shim/tls/tls.h"

namespace tlstest {

// CertDir returns the folder where tests/gen_certs.sh made the test PKI
// (made once per test binary).
const std::string &CertDir();

// A rule as the tests describe it.
struct RuleSpec {
  bool inbound = false;
  std::string identity;      // base name in CertDir ("server"), "" for none
  std::string identity_key;  // base name of the key if different
  std::string ca = "ca";     // trust CA base name, "" for no trust
  std::string crl;           // CRL file name in CertDir, "" for none
  enum policy_crl_check crl_check = POLICY_CRL_LEAF;
  uint16_t min_version = POLICY_TLS1_2, max_version = POLICY_TLS1_3;
  std::vector<std::string> ciphers;
  std::vector<std::string> groups;
  std::vector<std::string> peer_names;
  std::string server_name;  // outbound: the rule's server_name, "" for none
  std::vector<std::string> alpn;
  bool verify_peer = true;
  enum policy_client_auth client_auth = POLICY_CLIENT_AUTH_NONE;
  bool session_resumption = true;
  bool allow_keylog = false;  // the policy's debug.allow_keylog
};

// ServerSpec: an inbound rule presenting "server", trusting "ca".
// ClientSpec: an outbound rule trusting "ca".
RuleSpec ServerSpec();
RuleSpec ClientSpec();

// MakePolicy builds a one-rule policy with malloc'd fields, as the loader
// would (policy_free releases it). Item i of a list sits at line 10 + i,
// column 7.
struct policy *MakePolicy(const RuleSpec &spec);

// MakeConfig builds a config from |spec| and fails the test if it cannot.
struct tls_config *MakeConfig(const RuleSpec &spec,
                              const uint8_t *ticket_keys = nullptr);

// Config owns a config (tls_config_unref on destruction).
struct ConfigDeleter {
  void operator()(struct tls_config *c) const { tls_config_unref(c); }
};
using Config = std::unique_ptr<struct tls_config, ConfigDeleter>;

// A client and a server connection over a non-blocking socketpair.
struct Pair {
  int cfd = -1, sfd = -1;
  struct tlsconn *client = nullptr, *server = nullptr;
  int client_rc = -EAGAIN, server_rc = -EAGAIN;
  ~Pair();
};

// MakePair connects |cli| and |srv| configs (first rule of each).
void MakePair(Pair *p, struct tls_config *cli, struct tls_config *srv,
              const char *verify_name = "localhost",
              const char *peer_ip = "127.0.0.1",
              const char *peer_key = "127.0.0.1:443");

// Handshake drives both handshakes in this thread until both are done or
// one is stuck; results land in client_rc/server_rc. Bounded by 5 s.
void Handshake(Pair *p);

// ServerRefusal handshakes |cli| with |srv| (first rule of each), expects
// the server to refuse with EPROTO and returns its reason.
std::string ServerRefusal(struct tls_config *cli, struct tls_config *srv);

// ReadSome reads from |c| (polling |fd|) until |want| bytes or EOF/error.
// Returns the bytes read; |*rc| gets the last return code.
std::string ReadSome(struct tlsconn *c, int fd, size_t want, ssize_t *rc);

// OverrideIdentity makes the server connection present |base|.pem/.key
// (certificates the config would refuse, such as expired ones).
void OverrideIdentity(struct tlsconn *c, const std::string &base);

}  // namespace tlstest

#endif  // TLSSHIM_TESTS_TLS_HELPERS_H

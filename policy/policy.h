/* policy.h: the policy file as plain data, its loader, and rule matching.
 *
 * This module knows nothing of sockets or TLS libraries. It never prints and
 * never exits: every problem is returned as a policy_diag (file, line,
 * column, message) and the caller decides what to do with it. */
#ifndef TLSSHIM_POLICY_POLICY_H
#define TLSSHIM_POLICY_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* A place in the policy file, 1-based; 0/0 when not from the file. */
struct policy_pos {
  int line;
  int col;
};

enum policy_action {
  POLICY_ACTION_PLAINTEXT = 0,
  POLICY_ACTION_DENY,
  POLICY_ACTION_TLS,
  POLICY_ACTION_PERMISSIVE,
};

enum policy_direction {
  POLICY_OUTBOUND = 0,
  POLICY_INBOUND,
};

enum policy_client_auth {
  POLICY_CLIENT_AUTH_NONE = 0,
  POLICY_CLIENT_AUTH_OPTIONAL,
  POLICY_CLIENT_AUTH_REQUIRED,
};

enum policy_crl_check {
  POLICY_CRL_LEAF = 0,
  POLICY_CRL_CHAIN,
};

enum policy_log_level {
  POLICY_LOG_ERROR = 0,
  POLICY_LOG_WARN,
  POLICY_LOG_INFO,
  POLICY_LOG_DEBUG,
};

enum policy_log_format {
  POLICY_LOG_TEXT = 0,
  POLICY_LOG_JSON,
};

/* TLS versions use their wire values. */
#define POLICY_TLS1_2 0x0303
#define POLICY_TLS1_3 0x0304

/* A list of strings with the position of each item. */
struct policy_strings {
  char **items;
  struct policy_pos *pos;
  size_t count;
};

struct policy_identity {
  char *name;
  char *cert; /* absolute path */
  char *key;  /* absolute path */
  char *ocsp_staple; /* absolute path or NULL */
  struct policy_pos pos, cert_pos, key_pos, ocsp_pos;
};

struct policy_trust {
  char *name;
  char *ca; /* absolute path (for `system`, the OS bundle path) */
  bool ca_system;
  char *crl; /* absolute path or NULL */
  struct policy_pos pos, ca_pos, crl_pos;
};

/* The effective `tls:` settings of a rule: `defaults` merged key by key with
 * the rule's own keys. The *_pos fields point at the key that set the value
 * (the rule's, or the defaults', or 0/0 for a built-in default). */
struct policy_tls {
  uint16_t min_version, max_version;
  struct policy_strings ciphers;
  struct policy_strings groups;
  int handshake_timeout_ms;
  bool session_resumption;
  const struct policy_identity *identity; /* NULL if none */
  const struct policy_trust *trust;       /* NULL if none */
  bool verify_peer;
  enum policy_client_auth client_auth;
  char *server_name; /* NULL if none */
  struct policy_strings peer_names;
  struct policy_strings alpn;
  enum policy_crl_check crl_check;
  struct policy_pos pos; /* the rule's `tls:` key, or the rule itself */
  struct policy_pos protocols_pos, ciphers_pos, groups_pos, identity_pos,
      trust_pos, verify_peer_pos, client_auth_pos, server_name_pos,
      peer_names_pos, alpn_pos, crl_check_pos;
};

/* One address block; IPv4 is stored as an IPv4-mapped IPv6 address
 * (::ffff:a.b.c.d) with prefix + 96, so one comparison serves both. */
struct policy_cidr {
  uint8_t addr[16];
  int prefix; /* 0..128 */
};

struct policy_port_range {
  uint16_t low, high;
};

struct policy_rule {
  char *name;
  size_t index; /* position in policy.rules */
  enum policy_direction direction;
  struct policy_cidr *addresses;
  size_t address_count; /* 0: any address */
  struct policy_strings names; /* outbound only; 0: any name */
  struct policy_port_range *ports;
  size_t port_count; /* 0: any port */
  enum policy_action action;
  struct policy_tls tls; /* meaningful for tls and permissive */
  struct policy_pos pos;
};

struct policy_log {
  enum policy_log_level level;
  char *file; /* NULL: stderr */
  enum policy_log_format format;
};

/* status: where the live connection table and counters go (SPEC 9). */
struct policy_status {
  char *dir;    /* NULL: the default (shim/status/statusfile.h) */
  bool enabled; /* default true */
};

struct policy {
  char *path; /* absolute path of the policy file */
  char *dir;  /* its folder, for relative paths */
  int version;
  enum policy_action default_action;
  struct policy_identity *identities;
  size_t identity_count;
  struct policy_trust *trusts;
  size_t trust_count;
  struct policy_tls defaults;
  struct policy_rule *rules;
  size_t rule_count;
  struct policy_log log;
  bool allow_keylog;
  struct policy_status status;
};

/* A diagnostic: an error or a warning about the policy file. `file` is the
 * policy file or the file named by the key (a certificate, say). */
struct policy_diag {
  char file[512];
  int line, col;
  char message[512];
  char source_line[256]; /* the policy line quoted, or "" */
};

struct policy_diags {
  struct policy_diag *items;
  size_t count;
};

/* policy_load parses and validates the file at |path|. On success it returns
 * 0 and sets |*out| to a new policy, and appends any warnings (a key file
 * readable by others, a certificate expiring within 30 days) to |warnings|
 * (may be NULL). On failure it returns -1 (or a negative errno) and fills
 * |err|; |*out| is NULL. It checks syntax, keys, types, ranges, references
 * between sections, that named files exist and are readable, and that the
 * PEM files parse as PEM blocks of the right kind. Checks that need a TLS
 * library (cipher and group names, key/certificate match, expiry) are done
 * by the TLS layer, with the positions kept here. */
int policy_load(struct policy **out, const char *path, struct policy_diag *err,
                struct policy_diags *warnings);

/* policy_load_buffer is policy_load for text already in memory; |path| names
 * it in diagnostics and sets the folder for relative paths. */
int policy_load_buffer(struct policy **out, const char *path, const char *text,
                       size_t text_len, struct policy_diag *err,
                       struct policy_diags *warnings);

/* policy_free releases |p|. NULL-safe. */
void policy_free(struct policy *p);

/* policy_diags_cleanup frees the items of |d| and zeroes it. */
void policy_diags_cleanup(struct policy_diags *d);

/* policy_diag_set fills |d|. Line and column may be 0. */
void policy_diag_set(struct policy_diag *d, const char *file, int line,
                     int col, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

/* policy_diag_format writes the one-line form of |d| into |buf|:
 *   "policy /path: line 12 col 5: unknown key 'cipher' (did you mean 'ciphers'?)"
 * ("policy /path: message" when the line is 0). Returns |buf|. */
const char *policy_diag_format(const struct policy_diag *d, char *buf,
                               size_t buf_len);

/* What a connection looks like to the matcher. */
struct policy_endpoint {
  uint8_t addr[16];  /* IPv6 or IPv4-mapped IPv6 */
  uint16_t port;     /* host order */
  const char *name;  /* outbound: the host name the program resolved, or NULL */
};

/* policy_match returns the first rule of |p| for |dir| that matches |ep|, or
 * NULL when none does (then p->default_action applies). For outbound rules
 * the endpoint is the remote one; for inbound rules, the local one. */
const struct policy_rule *policy_match(const struct policy *p,
                                       enum policy_direction dir,
                                       const struct policy_endpoint *ep);

/* policy_action_of returns the action for a match result |rule| (NULL: the
 * default action). */
enum policy_action policy_action_of(const struct policy *p,
                                    const struct policy_rule *rule);

/* Names for logs and the CLI. */
const char *policy_action_name(enum policy_action a);
const char *policy_direction_name(enum policy_direction d);
const char *policy_version_name(uint16_t v); /* "TLS1.2", "TLS1.3" */

/* policy_name_matches reports whether host |name| matches |pattern|, which is
 * a name or "*." followed by a name (the wildcard covers exactly one label).
 * Case-insensitive; a trailing dot is ignored. */
bool policy_name_matches(const char *pattern, const char *name);

/* policy_parse_address parses an IPv4 or IPv6 literal into |out| (IPv4 as
 * IPv4-mapped). Returns true on success. */
bool policy_parse_address(const char *text, uint8_t out[16]);

/* policy_format_address writes |addr| as text ("127.0.0.1" for a mapped
 * IPv4 address, "::1" otherwise) into |buf|. Returns |buf|. */
const char *policy_format_address(const uint8_t addr[16], char *buf,
                                  size_t buf_len);

#ifdef __cplusplus
}
#endif

#endif /* TLSSHIM_POLICY_POLICY_H */

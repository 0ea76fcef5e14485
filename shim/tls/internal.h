/* internal.h: private types and helpers shared by the files of shim/tls/. */
#ifndef TLSSHIM_SHIM_TLS_INTERNAL_H
#define TLSSHIM_SHIM_TLS_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "shim/tls/tls.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Size of one read-ahead refill: a whole maximal record plus slack, so one
 * recv() usually serves several small records or one large one. */
#define TLS_READ_AHEAD (16384 + 5 + 256)
/* Most plaintext one tlsconn_write() call encrypts. */
#define TLS_WRITE_MAX 16384
/* Bound of the client session cache of one config. */
#define TLS_SESSION_CACHE_MAX 256

/* Bound of the verified-chain cache of one config, and how long an entry
 * lives at most. */
#define TLS_VERIFIED_MAX 64
#define TLS_VERIFIED_TTL 60

/* A peer chain that verified (verify.c): the SHA-256 of the rule, the name
 * checked and the chain's bytes, and the time it may be trusted again. */
struct tls_verified {
  uint8_t key[32];
  int64_t mono_until;           /* CLOCK_MONOTONIC seconds */
  int64_t wall_from, wall_until; /* time(NULL) within every validity period */
};

/* One client session remembered for resumption. */
struct tls_cached_session {
  char *key; /* "settings digest (hex)|name|peer", see tls_session_key */
  SSL_SESSION *session;
  uint64_t stamp; /* insertion order, the oldest is evicted */
};

struct tls_config {
  int refs; /* atomic */
  struct policy *policy;
  SSL_CTX **ctxs; /* one per rule, NULL for rules without TLS */
  /* Per rule: the session id context, the digest of its verification
   * settings (config.c, tls_settings_digest). */
  uint8_t (*sids)[32];
  uint8_t ticket_keys[80];

  /* The client session cache; |cache_lock| guards the three fields. */
  pthread_mutex_t cache_lock;
  struct tls_cached_session *cache;
  size_t cache_count;
  uint64_t cache_stamp;

  /* Chains that verified; |verified_lock| guards the two fields. */
  pthread_mutex_t verified_lock;
  struct tls_verified verified[TLS_VERIFIED_MAX];
  size_t verified_next; /* the slot the next entry replaces */
  /* time(NULL) range in which every CRL of the config is current. */
  int64_t crl_from, crl_until;
};

/* What a client offered, recorded from its ClientHello on the server side so
 * that a failed negotiation can name both sides' lists. Freed once the
 * handshake ends. */
struct tls_hello {
  char versions[64];
  char ciphers[768];
  char groups[192];
};

struct tlsconn {
  SSL *ssl;
  struct tls_config *config;
  const struct policy_rule *rule;
  int fd;
  bool is_server;
  enum tlsconn_state state;
  int fail_code; /* the -errno reads and writes report once FAILED */
  short want;    /* POLLIN when the last operation waits for the peer */

  /* Read-ahead buffer: bytes received but not yet handed to BoringSSL.
   * Allocated when a refill needs it; freed when it runs empty unless a
   * stream is flowing (in_keep), and always when the socket has no more. */
  uint8_t *in;
  size_t in_off, in_len;
  bool in_keep; /* the last refill was full: keep the buffer when drained */
  bool eof;     /* recv() returned 0 */
  bool kernel_drained; /* the last recv() was short, EAGAIN or EOF */
  unsigned kernel_reads; /* recv() calls so far */
  int sock_err; /* errno of a failed recv()/send(), 0 if none */

  /* Record framing of the incoming stream, to tell a clean EOF (at a record
   * boundary) from a truncated record. */
  uint8_t rec_hdr_have;
  uint8_t rec_len_hi;
  uint32_t rec_body_left;
  uint8_t first[3]; /* the first bytes the peer sent, to spot non-TLS */
  uint8_t first_len;

  /* Write-behind buffer: records made but not yet sent. */
  uint8_t *out;
  size_t out_off, out_len, out_cap;
  bool nosignal; /* flush with MSG_NOSIGNAL (close_notify, failure alerts) */
  bool fin_follows; /* close_notify: the FIN follows at once, send with it */
  bool shutdown_sent;

  bool peer_verified;
  bool verify_cached; /* the chain verified earlier: not checked again */
  char *verify_name; /* outbound: the name or IP checked, for messages */
  bool verify_is_ip;
  char *session_key; /* client session cache key, NULL: no resumption */
  struct tls_hello *hello;
  char *error; /* the failure reason, NULL if none */
};

/* tls_conn_from_ssl returns the connection that owns |ssl|. */
struct tlsconn *tls_conn_from_ssl(const SSL *ssl);

/* tls_conn_set_error records |fmt| as the failure reason, unless one is
 * already recorded. */
void tls_conn_set_error(struct tlsconn *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* tls_cert_verify is the certificate verification callback of every
 * context (SSL_CTX_set_cert_verify_callback). */
int tls_cert_verify(X509_STORE_CTX *store_ctx, void *arg);

/* tls_asn1_time_unix converts |t| to seconds since the epoch. */
bool tls_asn1_time_unix(const ASN1_TIME *t, int64_t *out);

/* tls_validity_window sets [*from, *until) to the time(NULL) range in which
 * every certificate of |chain| is valid; false if a date cannot be read or
 * the chain is empty. */
bool tls_validity_window(STACK_OF(X509) *chain, int64_t *from, int64_t *until);

/* tls_select_cert records the client's offers
 * (SSL_CTX_set_select_certificate_cb). */
enum ssl_select_cert_result_t tls_select_cert(const SSL_CLIENT_HELLO *hello);

/* tls_describe_failure sets the reason of a failed handshake or record
 * operation from the BoringSSL error queue and what the connection saw. */
void tls_describe_failure(struct tlsconn *c);

/* tls_cert_names writes the SANs of |x| as "DNS:a, IP:b, URI:c" (the CN as
 * "CN:x" when there is no SAN) into |buf|. */
void tls_cert_names(X509 *x, char *buf, size_t buf_len);

/* tls_cert_identity writes the first URI SAN, else the first DNS SAN, else
 * the subject CN of |x| into |buf| ("" if none). */
void tls_cert_identity(X509 *x, char *buf, size_t buf_len);

/* tls_version_name returns "TLS1.2" etc. for a wire version. */
const char *tls_version_name(uint16_t v);

/* tls_session_key returns the client session cache key of a connection of
 * rule index |rule| to |peer| checked against |name| (either may be NULL):
 * the rule's settings digest first, so a session is only ever offered under
 * the verification settings it was made under. NULL when out of memory. */
char *tls_session_key(const struct tls_config *cfg, size_t rule,
                      const char *name, const char *peer);

/* tls_session_lookup returns a new reference to the cached session for
 * |key|, or NULL. */
SSL_SESSION *tls_session_lookup(struct tls_config *cfg, const char *key);

/* tls_session_store caches |session| (taking the reference) under |key|. */
void tls_session_store(struct tls_config *cfg, const char *key,
                       SSL_SESSION *session);

/* tls_keylog_line writes one key-log line (SSL_CTX_set_keylog_callback). */
void tls_keylog_line(const SSL *ssl, const char *line);

/* tls_bio_method returns the BIO method of tlsconn (made by
 * tls_global_init). */
const BIO_METHOD *tls_bio_method(void);

#ifdef __cplusplus
}
#endif

#endif /* TLSSHIM_SHIM_TLS_INTERNAL_H */

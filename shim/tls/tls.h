/* tls.h: the TLS layer, the only code that includes BoringSSL headers.
 *
 * A tls_config turns a validated policy into BoringSSL contexts, one per rule
 * whose action is tls or permissive, built once per policy load and shared
 * by every connection of that rule. A tlsconn is one TLS connection over a
 * socket descriptor, with its own read-ahead and write-behind buffers so that
 * the shim above sees plain read(2)/write(2) semantics:
 *
 *   - tlsconn_write() accepts plaintext only when it can take it without
 *     blocking: the record it makes is kept in the connection's out-buffer
 *     and flushed as the socket allows. While the out-buffer holds bytes the
 *     connection "wants" POLLOUT even if the program only waits to read.
 *   - tlsconn_read() returns plaintext, 0 for the peer's close_notify, or
 *     -EAGAIN with tlsconn_wants() saying what the kernel socket must become.
 *
 * The socket itself is always non-blocking underneath; blocking is the
 * caller's business (it waits with poll() on tlsconn_wants()). All raw I/O
 * goes through the real libc functions of shim/libc.h, never through hooks.
 *
 * Threads: a tls_config is immutable once built and reference counted. A
 * tlsconn is used by one thread at a time; the caller holds its lock. */
#ifndef TLSSHIM_SHIM_TLS_TLS_H
#define TLSSHIM_SHIM_TLS_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "policy/policy.h"

#ifdef __cplusplus
extern "C" {
#endif

struct tls_config;
struct tlsconn;

/* tls_global_init initialises BoringSSL once. Safe to call repeatedly and
 * from several threads. */
void tls_global_init(void);

/* tls_config_new builds the contexts of every tls/permissive rule of |p|.
 * It checks what the policy module could not: cipher and group names,
 * certificates and keys parse, each key matches its certificate, CA bundles
 * and CRLs parse, identity certificates are not expired nor not yet valid
 * (an error) and do not expire within 30 days (a warning appended to
 * |warnings|, which may be NULL). Errors point at the policy line of the key
 * at fault. |ticket_keys| is 80 bytes of session-ticket key material kept
 * across reloads (NULL: made fresh). On success returns 0 and |*out| owns
 * |p|; on failure returns -1, fills |err|, and |p| still belongs to the
 * caller. */
int tls_config_new(struct tls_config **out, struct policy *p,
                   const uint8_t *ticket_keys, struct policy_diag *err,
                   struct policy_diags *warnings);

/* tls_config_ticket_keys copies the config's 80 bytes of ticket keys. */
void tls_config_ticket_keys(const struct tls_config *c, uint8_t out[80]);

/* tls_checks_name reports whether an outbound connection of |rule| checks
 * the verified name (server_name, the resolved name or the IP address)
 * against the server's certificate: always, except for a rule with
 * peer_names and no server_name, where the allow-list takes its place. */
bool tls_checks_name(const struct policy_rule *rule);

/* tls_config_inherit_sessions copies into |to| (a reloaded configuration)
 * the client sessions of |from| that were made under settings a rule of |to|
 * still has (same settings digest: trust and CRL bytes, verify_peer,
 * peer_names, server_name, rule name), so that a reload that changes none of
 * them keeps outbound resumption; the others are dropped. */
void tls_config_inherit_sessions(struct tls_config *to,
                                 struct tls_config *from);

void tls_config_ref(struct tls_config *c);
/* tls_config_unref drops a reference; the last one frees |c| and its policy.
 * NULL-safe. */
void tls_config_unref(struct tls_config *c);

const struct policy *tls_config_policy(const struct tls_config *c);

/* Where the connection stands. */
enum tlsconn_state {
  TLSCONN_HANDSHAKING = 0,
  TLSCONN_ESTABLISHED,
  TLSCONN_CLOSED, /* close_notify received (reads give EOF) */
  TLSCONN_FAILED, /* handshake or record error: see tlsconn_error() */
};

/* Parameters of a new connection. */
struct tlsconn_params {
  struct tls_config *config; /* referenced by the connection */
  const struct policy_rule *rule; /* a tls or permissive rule of config */
  bool is_server;
  int fd;
  /* Outbound: the name to send as SNI and verify (server_name, or the name
   * the program resolved); NULL to verify |peer_ip| against IP SANs and send
   * no SNI. */
  const char *verify_name;
  const char *peer_ip; /* text form of the peer address, for IP checks */
  /* Session cache key part for clients: "ip:port" of the peer. */
  const char *peer_key;
  /* Bytes already read from the socket that belong to the TLS stream
   * (permissive peeking does not consume, so usually none). */
  const uint8_t *preread;
  size_t preread_len;
};

/* tlsconn_new makes a connection. Returns 0 or -ENOMEM/-EINVAL. */
int tlsconn_new(struct tlsconn **out, const struct tlsconn_params *params);

/* tlsconn_set_fd makes the connection use descriptor |fd| from now on (the
 * one it had was closed while a dup of it lives on). */
void tlsconn_set_fd(struct tlsconn *c, int fd);

/* tlsconn_free frees |c| without any I/O. NULL-safe. */
void tlsconn_free(struct tlsconn *c);

/* tlsconn_handshake advances the handshake without blocking. Returns 0 when
 * established, -EAGAIN when it must wait (see tlsconn_wants), -EPROTO when
 * the handshake or verification failed, or another -errno from the socket
 * (-ECONNRESET, -EPIPE, ...). After a failure tlsconn_error() has the
 * reason. Calling it when established returns 0. */
int tlsconn_handshake(struct tlsconn *c);

/* tlsconn_read reads up to |len| bytes of plaintext, handshaking first if
 * needed. |peek| leaves the bytes in place (MSG_PEEK). Returns the count,
 * 0 at the peer's close_notify or a TCP EOF after the handshake (an EOF
 * without close_notify, mid-record, is -ECONNRESET), -EAGAIN, -EPROTO, or a
 * socket -errno. */
ssize_t tlsconn_read(struct tlsconn *c, void *buf, size_t len, bool peek);

/* tlsconn_write encrypts up to |len| bytes and returns how many it took
 * (at most one record's worth per call is fine: callers loop), or -EAGAIN
 * when the out-buffer is still full, -EPIPE/-ECONNRESET, -EPROTO. */
ssize_t tlsconn_write(struct tlsconn *c, const void *buf, size_t len);

/* tlsconn_flush writes the out-buffer to the socket. Returns 0 when empty,
 * -EAGAIN when the socket is full, or a socket -errno. */
int tlsconn_flush(struct tlsconn *c);

/* tlsconn_shutdown queues a close_notify and tries to flush it without
 * blocking. Returns 0 or -errno (-EAGAIN: queued, not yet sent). The caller
 * ends the stream right after (close, shutdown): the alert is sent with
 * MSG_MORE so that the kernel puts it in one segment with the FIN (a FIN
 * that never comes, as when another process still holds the socket,
 * delays it by at most the kernel's 200 ms cork limit). */
int tlsconn_shutdown(struct tlsconn *c);

/* tlsconn_pending returns how many plaintext bytes can be read now without
 * touching the socket. */
size_t tlsconn_pending(const struct tlsconn *c);

/* tlsconn_pump makes whatever progress it can without blocking: flushes the
 * out-buffer, advances the handshake, and decrypts buffered or available
 * records into plaintext (at most what fits SSL's one-record buffer). Used by
 * the readiness calls. Returns 0 or a -errno that the next read/write will
 * report (the state becomes FAILED or CLOSED). */
int tlsconn_pump(struct tlsconn *c);

/* tlsconn_wants returns the poll events (POLLIN, POLLOUT) the kernel socket
 * must show for the connection to progress: POLLOUT while the out-buffer
 * holds bytes or the handshake must write, POLLIN when the handshake or a
 * read waits for the peer. */
short tlsconn_wants(const struct tlsconn *c);

/* tlsconn_in_buffered reports whether a read could make progress without
 * the kernel: decrypted plaintext, or bytes already received from the
 * socket that BoringSSL has not processed yet (a further record, a
 * close_notify). No kernel readiness edge will announce them. */
bool tlsconn_in_buffered(const struct tlsconn *c);
/* tlsconn_drained_since reports whether the socket was read since
 * tlsconn_read_mark returned |mark| and its last read came back short,
 * empty or with EAGAIN: the kernel had nothing more then, so whatever
 * arrives later raises a new readiness edge. */
bool tlsconn_drained_since(const struct tlsconn *c, unsigned mark);
unsigned tlsconn_read_mark(const struct tlsconn *c);

/* tlsconn_out_pending reports whether the out-buffer holds unsent bytes. */
bool tlsconn_out_pending(const struct tlsconn *c);
/* tlsconn_out_len is how many bytes the out-buffer holds. */
size_t tlsconn_out_len(const struct tlsconn *c);

enum tlsconn_state tlsconn_state(const struct tlsconn *c);

/* tlsconn_error returns the reason of a failure, for the log
 * ("certificate has expired", "no common cipher: client offered [...]",
 * "peer name mismatch: wanted redis.internal, certificate has [...]"), or "". */
const char *tlsconn_error(const struct tlsconn *c);

/* What an established connection negotiated, for logs and the public API. */
struct tlsconn_info {
  char version[16];       /* "TLSv1.3" */
  char cipher[64];        /* "TLS_AES_128_GCM_SHA256" */
  char group[32];         /* "X25519" */
  char alpn[32];          /* "" if none */
  char server_name[256];  /* SNI sent or received, "" if none */
  char peer_identity[512]; /* first URI SAN, else first DNS SAN, else the
                              subject CN; "" without a peer certificate */
  char peer_subject[256];  /* one-line subject, "" if none */
  bool resumed;
  bool peer_verified; /* a peer certificate was presented and verified */
  bool verify_cached; /* its chain had verified moments before: not re-checked */
};

void tlsconn_get_info(const struct tlsconn *c, struct tlsconn_info *out);

/* tlsconn_looks_like_client_hello reports whether |buf| starts a TLS
 * handshake record (for permissive rules). Needs at least 3 bytes; with fewer
 * it returns false. */
bool tlsconn_looks_like_client_hello(const uint8_t *buf, size_t len);

/* Key logging (SSLKEYLOGFILE): lines in the NSS format are appended to
 * |path| for every new connection of every config. NULL turns it off. */
void tls_set_keylog_file(const char *path);

/* tls_version_string returns BoringSSL's revision, for `tlsshim version`. */
const char *tls_library_version(void);

/* tls_pki_init writes a demo PKI into |dir|: ca.pem (+ ca.key), server.pem/
 * server.key and client.pem/client.key, all ECDSA P-256, valid for a year,
 * the server with SANs |names| (DNS) and |ips| (IP), the client with URI SAN
 * spiffe://tlsshim.demo/client and DNS SAN client. NULL lists mean
 * "localhost" and "127.0.0.1". Returns 0 or -1 with |err| set. */
int tls_pki_init(const char *dir, const char *const *names, size_t name_count,
                 const char *const *ips, size_t ip_count, char *err,
                 size_t err_len);

#ifdef __cplusplus
}
#endif

#endif /* TLSSHIM_SHIM_TLS_TLS_H */

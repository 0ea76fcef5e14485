/* conn.c: one TLS connection over a non-blocking socket, with its own BIO.
 *
 * I/O contract. BoringSSL talks to a custom BIO, never to the socket:
 *   - the read side serves bytes from a read-ahead buffer, refilled with one
 *     real recv() of up to a whole record plus slack when empty, so one
 *     system call usually serves several small records or one large one;
 *   - the write side always accepts: it appends to the out-buffer, which the
 *     connection then flushes with real send(). SSL_write() therefore never
 *     sees WANT_WRITE; back-pressure is tlsconn_write() refusing with -EAGAIN
 *     while the out-buffer still holds bytes.
 * Both buffers are allocated when needed and freed as soon as they are
 * empty, so an idle connection costs its SSL object and this struct.
 * Sends use plain flags so that the program gets SIGPIPE exactly as it would
 * on plain TCP, except for the close_notify and failure alerts that the
 * program did not ask for (MSG_NOSIGNAL).
 *
 * A tlsconn is used by one thread at a time (the caller holds its lock). */
#include "shim/tls/internal.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "shim/libc.h"

/* The BIO. */

/* tls_track follows the record framing of the incoming stream and keeps its
 * first bytes. */
static void tls_track(struct tlsconn *c, const uint8_t *p, size_t n) {
  for (size_t i = 0; i < n && c->first_len < sizeof(c->first); i++) {
    c->first[c->first_len++] = p[i];
  }
  while (n > 0) {
    if (c->rec_body_left > 0) {
      size_t k = n < c->rec_body_left ? n : c->rec_body_left;
      c->rec_body_left -= (uint32_t)k;
      p += k;
      n -= k;
      continue;
    }
    if (c->rec_hdr_have == 3) {
      c->rec_len_hi = *p;
    } else if (c->rec_hdr_have == 4) {
      c->rec_body_left = (uint32_t)c->rec_len_hi << 8 | *p;
    }
    c->rec_hdr_have = (uint8_t)((c->rec_hdr_have + 1) % 5);
    p++;
    n--;
  }
}

static void tls_in_release(struct tlsconn *c) {
  free(c->in);
  c->in = NULL;
  c->in_off = c->in_len = 0;
}

static int tls_bio_read(BIO *bio, char *out, int out_len) {
  struct tlsconn *c = BIO_get_data(bio);
  BIO_clear_retry_flags(bio);
  if (out_len <= 0) {
    return 0;
  }
  if (c->in_off == c->in_len) {
    if (c->eof) {
      return 0;
    }
    if (c->sock_err != 0) {
      return -1;
    }
    if (c->in == NULL) {
      c->in = malloc(TLS_READ_AHEAD);
      if (c->in == NULL) {
        c->sock_err = ENOMEM;
        return -1;
      }
    }
    ssize_t n;
    do {
      n = real_recv(c->fd, c->in, TLS_READ_AHEAD, 0);
    } while (n < 0 && errno == EINTR);
    c->kernel_drained = n < TLS_READ_AHEAD;
    c->kernel_reads++;
    if (n <= 0) {
      int e = errno;
      tls_in_release(c);
      if (n == 0) {
        c->eof = true;
        return 0;
      }
      if (e == EAGAIN || e == EWOULDBLOCK) {
        BIO_set_retry_read(bio);
      } else {
        c->sock_err = e;
      }
      return -1;
    }
    c->in_off = 0;
    c->in_len = (size_t)n;
    /* A full read means a stream is flowing: keep the buffer for the next
     * one instead of a free and a malloc per record. A short read (a
     * request, a reply) lets it go once drained, so idle connections hold
     * no read buffer. */
    c->in_keep = n == TLS_READ_AHEAD;
  }
  size_t take = c->in_len - c->in_off;
  if (take > (size_t)out_len) {
    take = (size_t)out_len;
  }
  memcpy(out, c->in + c->in_off, take);
  tls_track(c, c->in + c->in_off, take);
  c->in_off += take;
  if (c->in_off == c->in_len) {
    if (c->in_keep) {
      c->in_off = c->in_len = 0;
    } else {
      tls_in_release(c);
    }
  }
  return (int)take;
}

static int tls_bio_write(BIO *bio, const char *in, int in_len) {
  struct tlsconn *c = BIO_get_data(bio);
  BIO_clear_retry_flags(bio);
  if (in_len <= 0) {
    return 0;
  }
  int whole = in_len;
  if (c->out_off == c->out_len && c->fd >= 0) {
    /* Nothing queued: send the record straight from BoringSSL's buffer and
     * keep only what the socket did not take. Errors other than a full
     * socket are left to the flush that follows, which reports them (and
     * raises SIGPIPE as plain TCP would, once). */
    ssize_t n;
    do {
      n = real_send(c->fd, in, (size_t)in_len,
                    MSG_NOSIGNAL | (c->fin_follows ? MSG_MORE : 0));
    } while (n < 0 && errno == EINTR);
    if (n == in_len) {
      return whole;
    }
    if (n > 0) {
      in += n;
      in_len -= (int)n;
    }
  }
  if (c->out_off > 0) {
    memmove(c->out, c->out + c->out_off, c->out_len - c->out_off);
    c->out_len -= c->out_off;
    c->out_off = 0;
  }
  size_t need = c->out_len + (size_t)in_len;
  if (need > c->out_cap) {
    size_t cap = c->out_cap * 2;
    if (cap < need) {
      cap = need;
    }
    uint8_t *nb = realloc(c->out, cap);
    if (nb == NULL) {
      return -1;
    }
    c->out = nb;
    c->out_cap = cap;
  }
  memcpy(c->out + c->out_len, in, (size_t)in_len);
  c->out_len += (size_t)in_len;
  return whole;
}

static long tls_bio_ctrl(BIO *bio, int cmd, long num, void *ptr) {
  switch (cmd) {
  case BIO_CTRL_FLUSH:
    return 1; /* the connection flushes after every SSL call */
  default:
    return 0;
  }
}

static int tls_bio_create(BIO *bio) { return 1; }

static int tls_bio_destroy(BIO *bio) { return 1; }

BIO_METHOD *tls_bio_method_new(void);
BIO_METHOD *tls_bio_method_new(void) {
  BIO_METHOD *m = BIO_meth_new(BIO_TYPE_SOURCE_SINK | 0x7f, "tlsshim");
  if (m == NULL) {
    return NULL;
  }
  BIO_meth_set_read(m, tls_bio_read);
  BIO_meth_set_write(m, tls_bio_write);
  BIO_meth_set_ctrl(m, tls_bio_ctrl);
  BIO_meth_set_create(m, tls_bio_create);
  BIO_meth_set_destroy(m, tls_bio_destroy);
  return m;
}

/* The connection. */

int tlsconn_new(struct tlsconn **out, const struct tlsconn_params *p) {
  *out = NULL;
  if (p == NULL || p->config == NULL || p->rule == NULL ||
      p->rule->index >= p->config->policy->rule_count ||
      p->config->ctxs[p->rule->index] == NULL) {
    return -EINVAL;
  }
  const BIO_METHOD *method = tls_bio_method();
  if (method == NULL) {
    return -ENOMEM;
  }
  SSL_CTX *ctx = p->config->ctxs[p->rule->index];
  struct tlsconn *c = calloc(1, sizeof(*c));
  if (c == NULL) {
    return -ENOMEM;
  }
  c->fd = p->fd;
  c->rule = p->rule;
  c->is_server = p->is_server;
  c->state = TLSCONN_HANDSHAKING;
  c->want = p->is_server ? POLLIN : POLLOUT;
  c->ssl = SSL_new(ctx);
  BIO *bio = BIO_new(method);
  if (c->ssl == NULL || bio == NULL) {
    BIO_free(bio);
    goto nomem;
  }
  BIO_set_data(bio, c);
  BIO_set_init(bio, 1);
  SSL_set_bio(c->ssl, bio, bio);
  SSL_set_app_data(c->ssl, c);
  if (p->is_server) {
    SSL_set_accept_state(c->ssl);
  } else {
    SSL_set_connect_state(c->ssl);
    const char *name = p->verify_name;
    if (name != NULL && name[0] == '\0') {
      name = NULL;
    }
    /* The name the program meant, or the address it dialled, must match,
     * unless peer_names stands in for it: with peer_names and no
     * server_name the allow-list is the server's identity check (a SPIFFE
     * certificate carries only its URI SAN); with both, both are checked.
     * SNI is sent either way. */
    if ((SSL_get_verify_mode(c->ssl) & SSL_VERIFY_PEER) &&
        tls_checks_name(p->rule)) {
      X509_VERIFY_PARAM *param = SSL_get0_param(c->ssl);
      X509_VERIFY_PARAM_set_hostflags(param,
                                      X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
      if (name != NULL) {
        if (!X509_VERIFY_PARAM_set1_host(param, name, strlen(name))) {
          goto inval;
        }
      } else if (p->peer_ip != NULL) {
        if (!X509_VERIFY_PARAM_set1_ip_asc(param, p->peer_ip)) {
          goto inval;
        }
        c->verify_is_ip = true;
      }
    }
    if (name != NULL && !SSL_set_tlsext_host_name(c->ssl, name)) {
      goto inval;
    }
    const char *shown = name != NULL ? name : p->peer_ip;
    if (shown != NULL && (c->verify_name = strdup(shown)) == NULL) {
      goto nomem;
    }
    if (p->rule->tls.session_resumption) {
      c->session_key =
          tls_session_key(p->config, p->rule->index, name, p->peer_key);
      if (c->session_key == NULL) {
        goto nomem;
      }
      SSL_SESSION *s = tls_session_lookup(p->config, c->session_key);
      if (s != NULL) {
        SSL_set_session(c->ssl, s);
        SSL_SESSION_free(s);
      }
    }
  }
  if (p->preread_len > 0) {
    size_t cap =
        p->preread_len > TLS_READ_AHEAD ? p->preread_len : TLS_READ_AHEAD;
    c->in = malloc(cap);
    if (c->in == NULL) {
      goto nomem;
    }
    memcpy(c->in, p->preread, p->preread_len);
    c->in_len = p->preread_len;
  }
  tls_config_ref(p->config);
  c->config = p->config;
  ERR_clear_error();
  *out = c;
  return 0;
nomem:
  tlsconn_free(c);
  ERR_clear_error();
  return -ENOMEM;
inval:
  tlsconn_free(c);
  ERR_clear_error();
  return -EINVAL;
}

void tlsconn_set_fd(struct tlsconn *c, int fd) { c->fd = fd; }

void tlsconn_free(struct tlsconn *c) {
  if (c == NULL) {
    return;
  }
  SSL_free(c->ssl);
  free(c->in);
  free(c->out);
  free(c->verify_name);
  free(c->session_key);
  free(c->hello);
  free(c->error);
  tls_config_unref(c->config);
  free(c);
}

static int tls_flush(struct tlsconn *c) {
  while (c->out_off < c->out_len) {
    ssize_t n = real_send(c->fd, c->out + c->out_off, c->out_len - c->out_off,
                          (c->nosignal ? MSG_NOSIGNAL : 0) |
                              (c->fin_follows ? MSG_MORE : 0));
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        return -EAGAIN;
      }
      return -errno;
    }
    c->out_off += (size_t)n;
  }
  free(c->out);
  c->out = NULL;
  c->out_off = c->out_len = c->out_cap = 0;
  return 0;
}

int tlsconn_flush(struct tlsconn *c) { return tls_flush(c); }

/* tls_fail marks |c| failed with |code| and sends any alert BoringSSL
 * queued, without blocking. */
static int tls_fail(struct tlsconn *c, int code) {
  if (code != -EPROTO && c->error == NULL) {
    tls_conn_set_error(c, "%s", strerror(-code));
  }
  c->state = TLSCONN_FAILED;
  c->fail_code = code;
  c->want = 0;
  c->nosignal = true;
  (void)tls_flush(c);
  free(c->hello);
  c->hello = NULL;
  ERR_clear_error();
  return code;
}

/* tls_ssl_failure turns a failed SSL call into a -errno, recording why. */
static int tls_ssl_failure(struct tlsconn *c) {
  if (c->sock_err != 0 && c->error == NULL) {
    return tls_fail(c, -c->sock_err); /* a reset is reported as such */
  }
  tls_describe_failure(c);
  return tls_fail(c, -EPROTO);
}

int tlsconn_handshake(struct tlsconn *c) {
  if (c->state == TLSCONN_FAILED) {
    return c->fail_code;
  }
  if (c->state != TLSCONN_HANDSHAKING) {
    return 0;
  }
  int r = tls_flush(c);
  if (r < 0 && r != -EAGAIN) {
    return tls_fail(c, r);
  }
  ERR_clear_error();
  int ret = SSL_do_handshake(c->ssl);
  int err = ret == 1 ? SSL_ERROR_NONE : SSL_get_error(c->ssl, ret);
  if (err == SSL_ERROR_NONE) {
    c->state = TLSCONN_ESTABLISHED;
    c->want = 0;
    free(c->hello);
    c->hello = NULL;
    r = tls_flush(c);
    if (r < 0 && r != -EAGAIN) {
      return tls_fail(c, r);
    }
    return 0;
  }
  if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) {
    r = tls_flush(c);
    if (r < 0 && r != -EAGAIN) {
      return tls_fail(c, r);
    }
    c->want = err == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT;
    return -EAGAIN;
  }
  return tls_ssl_failure(c);
}

/* tls_read_result maps a non-positive SSL_read/SSL_peek result. */
static ssize_t tls_read_result(struct tlsconn *c, int ret) {
  int err = SSL_get_error(c->ssl, ret);
  switch (err) {
  case SSL_ERROR_WANT_READ:
    c->want = POLLIN;
    return -EAGAIN;
  case SSL_ERROR_WANT_WRITE:
    c->want = POLLOUT;
    return -EAGAIN;
  case SSL_ERROR_ZERO_RETURN:
    c->state = TLSCONN_CLOSED;
    c->want = 0;
    return 0;
  default:
    break;
  }
  if (c->eof && c->error == NULL) {
    if (c->rec_hdr_have == 0 && c->rec_body_left == 0) {
      /* TCP EOF between records: many servers omit close_notify. */
      ERR_clear_error();
      c->state = TLSCONN_CLOSED;
      c->want = 0;
      return 0;
    }
    tls_conn_set_error(c, "peer closed the connection in the middle of a "
                          "record");
    return tls_fail(c, -ECONNRESET);
  }
  if (c->sock_err != 0 && c->error == NULL) {
    return tls_fail(c, -c->sock_err);
  }
  tls_describe_failure(c);
  return tls_fail(c, -EPROTO);
}

ssize_t tlsconn_read(struct tlsconn *c, void *buf, size_t len, bool peek) {
  int r = tlsconn_handshake(c); /* the failure, or 0 once established */
  if (r < 0) {
    return r;
  }
  if (c->state == TLSCONN_CLOSED || len == 0) {
    return 0;
  }
  (void)tls_flush(c); /* write errors are the writer's to report */
  int n = len > INT_MAX ? INT_MAX : (int)len;
  ERR_clear_error();
  int ret = peek ? SSL_peek(c->ssl, buf, n) : SSL_read(c->ssl, buf, n);
  (void)tls_flush(c); /* post-handshake replies (KeyUpdate) */
  if (ret > 0) {
    c->want = 0;
    return ret;
  }
  return tls_read_result(c, ret);
}

ssize_t tlsconn_write(struct tlsconn *c, const void *buf, size_t len) {
  int r = tlsconn_handshake(c); /* the failure, or 0 once established */
  if (r < 0) {
    return r;
  }
  r = tls_flush(c);
  if (r == -EAGAIN) {
    return -EAGAIN;
  }
  if (r < 0) {
    return r;
  }
  if (len == 0) {
    return 0;
  }
  int n = len > TLS_WRITE_MAX ? TLS_WRITE_MAX : (int)len;
  ERR_clear_error();
  int ret = SSL_write(c->ssl, buf, n);
  if (ret <= 0) {
    int err = SSL_get_error(c->ssl, ret);
    if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) {
      c->want = err == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT;
      return -EAGAIN;
    }
    return tls_ssl_failure(c);
  }
  r = tls_flush(c);
  if (r < 0 && r != -EAGAIN) {
    return r;
  }
  return ret;
}

int tlsconn_shutdown(struct tlsconn *c) {
  if (c->state == TLSCONN_FAILED || c->state == TLSCONN_HANDSHAKING) {
    return 0;
  }
  c->nosignal = true;
  c->fin_follows = true;
  if (!c->shutdown_sent) {
    c->shutdown_sent = true;
    ERR_clear_error();
    (void)SSL_shutdown(c->ssl);
    ERR_clear_error();
  }
  return tls_flush(c);
}

size_t tlsconn_pending(const struct tlsconn *c) {
  int n = SSL_pending(c->ssl);
  return n > 0 ? (size_t)n : 0;
}

int tlsconn_pump(struct tlsconn *c) {
  if (c->state == TLSCONN_FAILED) {
    return c->fail_code;
  }
  int r = tls_flush(c);
  if (r < 0 && r != -EAGAIN) {
    return r;
  }
  if (c->state == TLSCONN_HANDSHAKING) {
    r = tlsconn_handshake(c);
    if (r == -EAGAIN) {
      return 0;
    }
    if (r < 0) {
      return r;
    }
  }
  if (c->state != TLSCONN_ESTABLISHED || SSL_pending(c->ssl) > 0) {
    return 0;
  }
  uint8_t b;
  ERR_clear_error();
  int ret = SSL_peek(c->ssl, &b, 1);
  (void)tls_flush(c);
  if (ret > 0) {
    return 0;
  }
  ssize_t rr = tls_read_result(c, ret);
  return rr == -EAGAIN ? 0 : (int)rr;
}

short tlsconn_wants(const struct tlsconn *c) {
  short w = c->want;
  if (c->out_off < c->out_len) {
    w |= POLLOUT;
  }
  return w;
}

bool tlsconn_drained_since(const struct tlsconn *c, unsigned mark) {
  return c->kernel_reads != mark && c->kernel_drained;
}

unsigned tlsconn_read_mark(const struct tlsconn *c) { return c->kernel_reads; }

bool tlsconn_in_buffered(const struct tlsconn *c) {
  return c->in_off < c->in_len || SSL_has_pending(c->ssl);
}

bool tlsconn_out_pending(const struct tlsconn *c) {
  return c->out_off < c->out_len;
}

size_t tlsconn_out_len(const struct tlsconn *c) {
  return c->out_len - c->out_off;
}

enum tlsconn_state tlsconn_state(const struct tlsconn *c) { return c->state; }

const char *tlsconn_error(const struct tlsconn *c) {
  return c->error != NULL ? c->error : "";
}

static void tls_copy(char *dst, size_t dst_len, const char *src) {
  if (src == NULL) {
    dst[0] = '\0';
    return;
  }
  snprintf(dst, dst_len, "%s", src);
}

void tlsconn_get_info(const struct tlsconn *c, struct tlsconn_info *out) {
  memset(out, 0, sizeof(*out));
  if (c->state == TLSCONN_HANDSHAKING || c->state == TLSCONN_FAILED) {
    return;
  }
  SSL *ssl = c->ssl;
  tls_copy(out->version, sizeof(out->version), SSL_get_version(ssl));
  const SSL_CIPHER *ci = SSL_get_current_cipher(ssl);
  tls_copy(out->cipher, sizeof(out->cipher),
           ci != NULL ? SSL_CIPHER_get_name(ci) : NULL);
  tls_copy(out->group, sizeof(out->group),
           SSL_get_curve_name(SSL_get_curve_id(ssl)));
  const uint8_t *alpn = NULL;
  unsigned alpn_len = 0;
  SSL_get0_alpn_selected(ssl, &alpn, &alpn_len);
  if (alpn != NULL && alpn_len < sizeof(out->alpn)) {
    memcpy(out->alpn, alpn, alpn_len);
    out->alpn[alpn_len] = '\0';
  }
  tls_copy(out->server_name, sizeof(out->server_name),
           SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name));
  out->resumed = SSL_session_reused(ssl) != 0;
  X509 *peer = SSL_get_peer_certificate(ssl);
  if (peer != NULL) {
    tls_cert_identity(peer, out->peer_identity, sizeof(out->peer_identity));
    BIO *m = BIO_new(BIO_s_mem());
    if (m != NULL) {
      if (X509_NAME_print_ex(m, X509_get_subject_name(peer), 0,
                             XN_FLAG_RFC2253) >= 0) {
        const uint8_t *data;
        size_t len;
        if (BIO_mem_contents(m, &data, &len)) {
          if (len >= sizeof(out->peer_subject)) {
            len = sizeof(out->peer_subject) - 1;
          }
          memcpy(out->peer_subject, data, len);
          out->peer_subject[len] = '\0';
        }
      }
      BIO_free(m);
    }
    out->peer_verified = (SSL_get_verify_mode(ssl) & SSL_VERIFY_PEER) != 0 &&
                         (c->peer_verified || out->resumed);
    out->verify_cached = c->verify_cached;
    X509_free(peer);
  }
  ERR_clear_error();
}

bool tlsconn_looks_like_client_hello(const uint8_t *buf, size_t len) {
  return len >= 3 && buf[0] == 0x16 && buf[1] == 0x03 && buf[2] <= 0x04;
}

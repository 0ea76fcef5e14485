/* verify.c: peer certificate checks and precise failure reasons.
 *
 * BoringSSL verifies the chain (dates, trust, CRLs, purpose, host name or
 * IP); this file adds what it does not do (no SHA-1/MD5 signatures, the
 * peer_names allow-list) and turns every failure into one sentence a person
 * can act on, naming both sides' offers when a negotiation fails. */
#include "shim/tls/internal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/obj.h>
#include <openssl/sha.h>
#include <openssl/x509v3.h>
#include <time.h>

bool tls_checks_name(const struct policy_rule *rule) {
  return rule->tls.peer_names.count == 0 || rule->tls.server_name != NULL;
}

struct tlsconn *tls_conn_from_ssl(const SSL *ssl) {
  return (struct tlsconn *)SSL_get_app_data(ssl);
}

void tls_conn_set_error(struct tlsconn *c, const char *fmt, ...) {
  if (c == NULL || c->error != NULL) {
    return;
  }
  char buf[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof(buf), fmt, ap);
  va_end(ap);
  c->error = strdup(buf);
}

/* A small string builder that truncates quietly. */
struct sbuf {
  char *buf;
  size_t len, cap;
};

static void sb_add(struct sbuf *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void sb_add(struct sbuf *s, const char *fmt, ...) {
  if (s->len + 1 >= s->cap) {
    return;
  }
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(s->buf + s->len, s->cap - s->len, fmt, ap);
  va_end(ap);
  if (n > 0) {
    s->len += (size_t)n;
    if (s->len >= s->cap) {
      s->len = s->cap - 1;
    }
  }
}

static void tls_ip_text(const ASN1_OCTET_STRING *ip, char *buf, size_t len) {
  const unsigned char *d = ASN1_STRING_get0_data(ip);
  int n = ASN1_STRING_length(ip);
  buf[0] = '\0';
  if (n == 4) {
    inet_ntop(AF_INET, d, buf, (socklen_t)len);
  } else if (n == 16) {
    inet_ntop(AF_INET6, d, buf, (socklen_t)len);
  }
}

/* tls_name_escape writes the |n| bytes of a certificate name into |buf|
 * with every byte that is not printable ASCII, and the backslash, as \xNN
 * (a backslash as \\), so that a name holding a NUL or a control is shown
 * whole and cannot pose as another. If the text does not fit, |buf| is ""
 * rather than a cut-off name. */
static void tls_name_escape(const uint8_t *d, size_t n, char *buf, size_t len) {
  size_t o = 0;
  for (size_t i = 0; i < n; i++) {
    uint8_t ch = d[i];
    bool plain = ch >= 0x20 && ch < 0x7f && ch != '\\';
    size_t need = plain ? 1 : ch == '\\' ? 2 : 4;
    if (o + need >= len) {
      buf[0] = '\0';
      return;
    }
    if (plain) {
      buf[o++] = (char)ch;
    } else if (ch == '\\') {
      buf[o++] = '\\';
      buf[o++] = '\\';
    } else {
      snprintf(buf + o, len - o, "\\x%02x", ch);
      o += 4;
    }
  }
  buf[o] = '\0';
}

/* tls_name_exact copies the bytes of |s| into |buf| as a C string for
 * matching. False when the name can match nothing: empty, too long, or its
 * bytes hold a NUL (the C string would be shorter than the ASN.1 length, and
 * "a.example\0.evil" would pass as "a.example"). */
static bool tls_name_exact(const ASN1_STRING *s, char *buf, size_t len) {
  buf[0] = '\0';
  int n = s != NULL ? ASN1_STRING_length(s) : -1;
  if (n <= 0 || (size_t)n >= len ||
      memchr(ASN1_STRING_get0_data(s), 0, (size_t)n) != NULL) {
    return false;
  }
  memcpy(buf, ASN1_STRING_get0_data(s), (size_t)n);
  buf[n] = '\0';
  return true;
}

static const ASN1_STRING *tls_cn_string(X509 *x) {
  X509_NAME *name = X509_get_subject_name(x);
  int i = X509_NAME_get_index_by_NID(name, NID_commonName, -1);
  return i < 0 ? NULL : X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, i));
}

/* tls_cn writes the subject CN of |x| into |buf|, escaped for display;
 * returns false if none. */
static bool tls_cn(X509 *x, char *buf, size_t len) {
  buf[0] = '\0';
  const ASN1_STRING *s = tls_cn_string(x);
  if (s == NULL || ASN1_STRING_length(s) <= 0) {
    return false;
  }
  tls_name_escape(ASN1_STRING_get0_data(s), (size_t)ASN1_STRING_length(s), buf,
                  len);
  return buf[0] != '\0';
}

static const ASN1_STRING *tls_gen_string(const GENERAL_NAME *g) {
  switch (g->type) {
  case GEN_DNS:
    return g->d.dNSName;
  case GEN_URI:
    return g->d.uniformResourceIdentifier;
  default:
    return NULL;
  }
}

/* tls_gen_text writes a DNS, URI or IP SAN into |buf| for display (DNS and
 * URI escaped as tls_name_escape does). */
static void tls_gen_text(const GENERAL_NAME *g, char *buf, size_t len) {
  buf[0] = '\0';
  if (g->type == GEN_IPADD) {
    tls_ip_text(g->d.iPAddress, buf, len);
    return;
  }
  const ASN1_STRING *s = tls_gen_string(g);
  if (s == NULL || ASN1_STRING_length(s) < 0) {
    return;
  }
  tls_name_escape(ASN1_STRING_get0_data(s), (size_t)ASN1_STRING_length(s), buf,
                  len);
}

void tls_cert_names(X509 *x, char *buf, size_t buf_len) {
  struct sbuf s = {buf, 0, buf_len};
  buf[0] = '\0';
  GENERAL_NAMES *gens = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
  size_t shown = 0;
  for (size_t i = 0; gens != NULL && i < sk_GENERAL_NAME_num(gens); i++) {
    const GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);
    const char *tag = g->type == GEN_DNS     ? "DNS"
                      : g->type == GEN_URI   ? "URI"
                      : g->type == GEN_IPADD ? "IP"
                                             : NULL;
    if (tag == NULL) {
      continue;
    }
    char text[256];
    tls_gen_text(g, text, sizeof(text));
    sb_add(&s, "%s%s:%s", shown++ ? ", " : "", tag, text);
  }
  GENERAL_NAMES_free(gens);
  if (shown == 0) {
    char cn[256];
    if (tls_cn(x, cn, sizeof(cn))) {
      sb_add(&s, "CN:%s", cn);
    }
  }
}

void tls_cert_identity(X509 *x, char *buf, size_t buf_len) {
  buf[0] = '\0';
  GENERAL_NAMES *gens = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
  for (int want = GEN_URI; gens != NULL && buf[0] == '\0';
       want = want == GEN_URI ? GEN_DNS : -1) {
    if (want < 0) {
      break;
    }
    for (size_t i = 0; i < sk_GENERAL_NAME_num(gens); i++) {
      const GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);
      if (g->type == want) {
        tls_gen_text(g, buf, buf_len);
        break;
      }
    }
  }
  GENERAL_NAMES_free(gens);
  if (buf[0] == '\0') {
    tls_cn(x, buf, buf_len);
  }
}

static bool tls_ip_equal(const char *text, const ASN1_OCTET_STRING *ip) {
  uint8_t a[16];
  int n = ASN1_STRING_length(ip);
  if (n == 4 && inet_pton(AF_INET, text, a) == 1) {
    return memcmp(a, ASN1_STRING_get0_data(ip), 4) == 0;
  }
  if (n == 16 && inet_pton(AF_INET6, text, a) == 1) {
    return memcmp(a, ASN1_STRING_get0_data(ip), 16) == 0;
  }
  return false;
}

/* tls_peer_allowed checks the leaf against the rule's peer_names. Names are
 * compared on their exact bytes: one that tls_name_exact refuses (a NUL
 * inside, for one) matches nothing. */
static bool tls_peer_allowed(const struct policy_strings *allow, X509 *x) {
  GENERAL_NAMES *gens = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
  bool ok = false;
  bool any_san = false;
  for (size_t i = 0; gens != NULL && i < sk_GENERAL_NAME_num(gens) && !ok;
       i++) {
    const GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);
    char text[512];
    if (g->type == GEN_DNS || g->type == GEN_URI || g->type == GEN_IPADD) {
      any_san = true;
    }
    bool exact = (g->type == GEN_DNS || g->type == GEN_URI) &&
                 tls_name_exact(tls_gen_string(g), text, sizeof(text));
    for (size_t j = 0; j < allow->count && !ok; j++) {
      const char *p = allow->items[j];
      switch (g->type) {
      case GEN_DNS:
        ok = exact && (policy_name_matches(p, text) ||
                       (text[0] == '*' && strchr(p, '*') == NULL &&
                        policy_name_matches(text, p)));
        break;
      case GEN_URI:
        ok = exact && strcmp(p, text) == 0;
        break;
      case GEN_IPADD:
        ok = tls_ip_equal(p, g->d.iPAddress);
        break;
      default:
        break;
      }
    }
  }
  GENERAL_NAMES_free(gens);
  if (!ok && !any_san) {
    char cn[256];
    if (tls_name_exact(tls_cn_string(x), cn, sizeof(cn))) {
      for (size_t j = 0; j < allow->count && !ok; j++) {
        ok = policy_name_matches(allow->items[j], cn);
      }
    }
  }
  return ok;
}

static void tls_list_text(const struct policy_strings *l, char *buf,
                          size_t len) {
  struct sbuf s = {buf, 0, len};
  buf[0] = '\0';
  for (size_t i = 0; i < l->count; i++) {
    sb_add(&s, "%s%s", i ? ", " : "", l->items[i]);
  }
}

/* tls_chain_error describes an X509 verification error. */
static void tls_chain_error(struct tlsconn *c, X509_STORE_CTX *sctx) {
  int err = X509_STORE_CTX_get_error(sctx);
  int depth = X509_STORE_CTX_get_error_depth(sctx);
  char where[48] = "";
  if (depth > 0) {
    snprintf(where, sizeof(where), " (chain depth %d)", depth);
  }
  switch (err) {
  case X509_V_ERR_CERT_HAS_EXPIRED:
    tls_conn_set_error(c, "certificate has expired%s", where);
    return;
  case X509_V_ERR_CERT_NOT_YET_VALID:
    tls_conn_set_error(c, "certificate is not yet valid%s", where);
    return;
  case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
  case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
  case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
  case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
  case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
    tls_conn_set_error(c, "certificate not signed by a trusted CA (%s)%s",
                       X509_verify_cert_error_string(err), where);
    return;
  case X509_V_ERR_CERT_REVOKED:
    tls_conn_set_error(c, "certificate revoked%s", where);
    return;
  case X509_V_ERR_UNABLE_TO_GET_CRL:
    tls_conn_set_error(c, "no CRL from the certificate's issuer%s", where);
    return;
  case X509_V_ERR_INVALID_PURPOSE:
    tls_conn_set_error(c,
                       "certificate not allowed for TLS %s use (key usage)%s",
                       c->is_server ? "client" : "server", where);
    return;
  case X509_V_ERR_HOSTNAME_MISMATCH:
  case X509_V_ERR_IP_ADDRESS_MISMATCH: {
    char names[768] = "";
    X509 *leaf = X509_STORE_CTX_get0_cert(sctx);
    if (leaf != NULL) {
      tls_cert_names(leaf, names, sizeof(names));
    }
    tls_conn_set_error(c, "peer name mismatch: wanted %s, certificate has [%s]",
                       c->verify_name != NULL ? c->verify_name : "?", names);
    return;
  }
  default:
    tls_conn_set_error(c, "certificate verify failed: %s%s",
                       X509_verify_cert_error_string(err), where);
  }
}

/* tls_weak_digest returns "SHA-1"/"MD5" if |x| is signed with one. */
static const char *tls_weak_digest(X509 *x) {
  int md = NID_undef, pk = NID_undef;
  if (!OBJ_find_sigid_algs(X509_get_signature_nid(x), &md, &pk)) {
    return NULL;
  }
  if (md == NID_sha1) {
    return "SHA-1";
  }
  if (md == NID_md5 || md == NID_md5_sha1 || md == NID_md4) {
    return "MD5";
  }
  return NULL;
}

/* Verified chains.
 *
 * Checking a chain costs one signature verification per certificate above
 * the leaf (about 50 us for ECDSA P-256 here), paid again on every full
 * handshake with the same peer. A chain that verified is remembered on its
 * exact bytes, the rule and the name checked, for at most TLS_VERIFIED_TTL
 * seconds and never outside the validity period of any certificate in it or
 * of the config's CRLs (a new policy is a new config, with an empty cache).
 * Only successes are remembered. The handshake signature that proves the
 * peer holds the leaf's key (CertificateVerify) is checked by BoringSSL on
 * every handshake, remembered chain or not. */

static int64_t tls_mono_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec;
}

/* tls_verified_key hashes what the verification of this handshake depends
 * on besides the config: the rule, the name or IP checked and the peer's
 * chain as sent. */
static bool tls_verified_key(const struct tlsconn *c, const SSL *ssl,
                             uint8_t key[32]) {
  const STACK_OF(CRYPTO_BUFFER) *certs = SSL_get0_peer_certificates(ssl);
  if (certs == NULL || sk_CRYPTO_BUFFER_num(certs) == 0) {
    return false;
  }
  SHA256_CTX h;
  SHA256_Init(&h);
  uint64_t rule = c->rule->index;
  SHA256_Update(&h, &rule, sizeof(rule));
  const char *name = c->verify_name != NULL ? c->verify_name : "";
  SHA256_Update(&h, name, strlen(name) + 1);
  uint8_t is_ip = c->verify_is_ip;
  SHA256_Update(&h, &is_ip, 1);
  for (size_t i = 0; i < sk_CRYPTO_BUFFER_num(certs); i++) {
    const CRYPTO_BUFFER *b = sk_CRYPTO_BUFFER_value(certs, i);
    uint64_t len = CRYPTO_BUFFER_len(b);
    SHA256_Update(&h, &len, sizeof(len));
    SHA256_Update(&h, CRYPTO_BUFFER_data(b), CRYPTO_BUFFER_len(b));
  }
  SHA256_Final(key, &h);
  return true;
}

static bool tls_verified_lookup(struct tls_config *cfg, const uint8_t key[32],
                                int64_t *wall_until) {
  int64_t mono = tls_mono_now(), wall = (int64_t)time(NULL);
  bool hit = false;
  pthread_mutex_lock(&cfg->verified_lock);
  for (size_t i = 0; i < TLS_VERIFIED_MAX && !hit; i++) {
    const struct tls_verified *v = &cfg->verified[i];
    hit = v->mono_until > mono && wall >= v->wall_from &&
          wall < v->wall_until && memcmp(v->key, key, 32) == 0;
    if (hit) {
      *wall_until = v->wall_until;
    }
  }
  pthread_mutex_unlock(&cfg->verified_lock);
  return hit;
}

bool tls_asn1_time_unix(const ASN1_TIME *t, int64_t *out) {
  ASN1_TIME *epoch = ASN1_TIME_set(NULL, 0);
  int days = 0, secs = 0;
  bool ok = epoch != NULL && t != NULL && ASN1_TIME_diff(&days, &secs, epoch, t);
  ASN1_TIME_free(epoch);
  if (ok) {
    *out = (int64_t)days * 86400 + secs;
  }
  return ok;
}

bool tls_validity_window(STACK_OF(X509) *chain, int64_t *from,
                         int64_t *until) {
  *from = INT64_MIN;
  *until = INT64_MAX;
  size_t n = chain != NULL ? sk_X509_num(chain) : 0;
  for (size_t i = 0; i < n; i++) {
    X509 *x = sk_X509_value(chain, i);
    int64_t nb, na;
    if (!tls_asn1_time_unix(X509_get0_notBefore(x), &nb) ||
        !tls_asn1_time_unix(X509_get0_notAfter(x), &na)) {
      return false;
    }
    if (nb > *from) {
      *from = nb;
    }
    if (na < *until) {
      *until = na;
    }
  }
  return n > 0;
}

static void tls_verified_store(struct tls_config *cfg, const uint8_t key[32],
                               X509_STORE_CTX *sctx) {
  struct tls_verified v;
  memcpy(v.key, key, 32);
  v.mono_until = tls_mono_now() + TLS_VERIFIED_TTL;
  if (!tls_validity_window(X509_STORE_CTX_get0_chain(sctx), &v.wall_from,
                           &v.wall_until)) {
    return;
  }
  if (cfg->crl_from > v.wall_from) {
    v.wall_from = cfg->crl_from;
  }
  if (cfg->crl_until < v.wall_until) {
    v.wall_until = cfg->crl_until;
  }
  pthread_mutex_lock(&cfg->verified_lock);
  cfg->verified[cfg->verified_next] = v;
  cfg->verified_next = (cfg->verified_next + 1) % TLS_VERIFIED_MAX;
  pthread_mutex_unlock(&cfg->verified_lock);
}

/* tls_bound_session keeps the session being made from outliving what the
 * verification relied on: it may not resume once a certificate of the
 * chain has expired or a CRL is past its next update (|until|, time(NULL)
 * seconds). */
static void tls_bound_session(SSL *ssl, int64_t until) {
  SSL_SESSION *session = SSL_get_session(ssl);
  int64_t now = (int64_t)time(NULL);
  if (session == NULL || until == INT64_MAX) {
    return;
  }
  int64_t left = until > now ? until - now : 0;
  if ((uint64_t)left < SSL_SESSION_get_timeout(session)) {
    SSL_SESSION_set_timeout(session, (uint32_t)left);
  }
}

int tls_cert_verify(X509_STORE_CTX *sctx, void *arg) {
  SSL *ssl =
      X509_STORE_CTX_get_ex_data(sctx, SSL_get_ex_data_X509_STORE_CTX_idx());
  struct tlsconn *c = ssl != NULL ? tls_conn_from_ssl(ssl) : NULL;
  if (c == NULL) {
    return 0;
  }
  if ((SSL_get_verify_mode(ssl) & SSL_VERIFY_PEER) == 0) {
    /* verify_peer: false: encryption only, nothing is checked. */
    return 1;
  }
  uint8_t key[32];
  bool keyed = tls_verified_key(c, ssl, key);
  int64_t until = INT64_MAX;
  if (keyed && tls_verified_lookup(c->config, key, &until)) {
    c->peer_verified = true;
    c->verify_cached = true;
    tls_bound_session(ssl, until);
    return 1;
  }
  if (X509_verify_cert(sctx) != 1) {
    tls_chain_error(c, sctx);
    return 0;
  }
  STACK_OF(X509) *chain = X509_STORE_CTX_get0_chain(sctx);
  size_t n = chain != NULL ? sk_X509_num(chain) : 0;
  for (size_t i = 0; i < n; i++) {
    X509 *x = sk_X509_value(chain, i);
    /* A self-signed root's own signature is never checked, so its digest
     * does not matter. */
    if (i + 1 == n &&
        X509_NAME_cmp(X509_get_subject_name(x), X509_get_issuer_name(x)) == 0) {
      continue;
    }
    const char *weak = tls_weak_digest(x);
    if (weak != NULL) {
      if (i > 0) {
        tls_conn_set_error(c, "certificate signed with %s (chain depth %zu)",
                           weak, i);
      } else {
        tls_conn_set_error(c, "certificate signed with %s", weak);
      }
      X509_STORE_CTX_set_error(sctx, X509_V_ERR_CERT_SIGNATURE_FAILURE);
      return 0;
    }
  }
  X509 *leaf = n > 0 ? sk_X509_value(chain, 0) : NULL;
  const struct policy_strings *allow = &c->rule->tls.peer_names;
  if (leaf != NULL && allow->count > 0 && !tls_peer_allowed(allow, leaf)) {
    char id[512], list[512];
    tls_cert_identity(leaf, id, sizeof(id));
    tls_list_text(allow, list, sizeof(list));
    tls_conn_set_error(c,
                       "peer identity not allowed: %s not in peer_names [%s]",
                       id[0] != '\0' ? id : "(none)", list);
    X509_STORE_CTX_set_error(sctx, X509_V_ERR_APPLICATION_VERIFICATION);
    return 0;
  }
  if (keyed) {
    tls_verified_store(c->config, key, sctx);
  }
  int64_t from;
  if (tls_validity_window(chain, &from, &until)) {
    if (c->config->crl_until < until) {
      until = c->config->crl_until;
    }
    tls_bound_session(ssl, until);
  }
  c->peer_verified = true;
  return 1;
}

/* ClientHello recording (server side). */

static bool tls_grease(uint16_t v) { return (v & 0x0f0f) == 0x0a0a; }

enum ssl_select_cert_result_t tls_select_cert(const SSL_CLIENT_HELLO *hello) {
  struct tlsconn *c = tls_conn_from_ssl(hello->ssl);
  if (c == NULL) {
    return ssl_select_cert_success;
  }
  if (c->hello == NULL) {
    c->hello = calloc(1, sizeof(*c->hello));
    if (c->hello == NULL) {
      return ssl_select_cert_success;
    }
  }
  struct tls_hello *h = c->hello;
  const uint8_t *data;
  size_t len;

  struct sbuf s = {h->versions, 0, sizeof(h->versions)};
  h->versions[0] = '\0';
  if (SSL_early_callback_ctx_extension_get(
          hello, TLSEXT_TYPE_supported_versions, &data, &len) &&
      len >= 1) {
    size_t n = data[0];
    int shown = 0;
    for (size_t i = 1; i + 1 < len && i + 1 <= n; i += 2) {
      uint16_t v = (uint16_t)(data[i] << 8 | data[i + 1]);
      if (tls_grease(v)) {
        continue;
      }
      sb_add(&s, "%s%s", shown++ ? ", " : "", tls_version_name(v));
    }
  } else {
    sb_add(&s, "%s", tls_version_name(hello->version));
  }

  s = (struct sbuf){h->ciphers, 0, sizeof(h->ciphers)};
  h->ciphers[0] = '\0';
  int shown = 0;
  for (size_t i = 0; i + 1 < hello->cipher_suites_len; i += 2) {
    uint16_t v =
        (uint16_t)(hello->cipher_suites[i] << 8 | hello->cipher_suites[i + 1]);
    if (tls_grease(v) || v == 0x00ff) {
      continue;
    }
    const SSL_CIPHER *ci = SSL_get_cipher_by_value(v);
    if (ci != NULL) {
      sb_add(&s, "%s%s", shown++ ? ", " : "", SSL_CIPHER_get_name(ci));
    } else {
      sb_add(&s, "%s0x%04x", shown++ ? ", " : "", v);
    }
  }

  s = (struct sbuf){h->groups, 0, sizeof(h->groups)};
  h->groups[0] = '\0';
  if (SSL_early_callback_ctx_extension_get(hello, TLSEXT_TYPE_supported_groups,
                                           &data, &len) &&
      len >= 2) {
    shown = 0;
    for (size_t i = 2; i + 1 < len; i += 2) {
      uint16_t v = (uint16_t)(data[i] << 8 | data[i + 1]);
      if (tls_grease(v)) {
        continue;
      }
      const char *name = SSL_get_curve_name(v);
      if (name != NULL) {
        sb_add(&s, "%s%s", shown++ ? ", " : "", name);
      } else {
        sb_add(&s, "%s0x%04x", shown++ ? ", " : "", v);
      }
    }
  }
  return ssl_select_cert_success;
}

/* Failure reasons. */

static const char *tls_alert_name(int alert) {
  switch (alert) {
  case 0:
    return "close notify";
  case 10:
    return "unexpected message";
  case 20:
    return "bad record mac";
  case 22:
    return "record overflow";
  case 40:
    return "handshake failure";
  case 42:
    return "bad certificate";
  case 43:
    return "unsupported certificate";
  case 44:
    return "certificate revoked";
  case 45:
    return "certificate expired";
  case 46:
    return "certificate unknown";
  case 47:
    return "illegal parameter";
  case 48:
    return "unknown CA";
  case 49:
    return "access denied";
  case 50:
    return "decode error";
  case 51:
    return "decrypt error";
  case 70:
    return "protocol version";
  case 71:
    return "insufficient security";
  case 80:
    return "internal error";
  case 86:
    return "inappropriate fallback";
  case 90:
    return "user canceled";
  case 109:
    return "missing extension";
  case 110:
    return "unsupported extension";
  case 112:
    return "unrecognized name";
  case 116:
    return "certificate required";
  case 120:
    return "no application protocol";
  default:
    return "unknown alert";
  }
}

static void tls_versions_text(const struct policy_tls *t, char *buf,
                              size_t len) {
  struct sbuf s = {buf, 0, len};
  buf[0] = '\0';
  uint16_t min = t->min_version ? t->min_version : TLS1_2_VERSION;
  uint16_t max = t->max_version ? t->max_version : TLS1_3_VERSION;
  int shown = 0;
  for (uint16_t v = min; v <= max; v++) {
    sb_add(&s, "%s%s", shown++ ? ", " : "", tls_version_name(v));
  }
}

static bool tls_looks_like_record(const uint8_t *b, size_t n) {
  if (n >= 1 && b[0] != 0x16 && b[0] != 0x15 && b[0] != 0x17 && b[0] != 0x14) {
    return false;
  }
  if (n >= 2 && b[1] != 0x03) {
    return false;
  }
  if (n >= 3 && b[2] > 0x04) {
    return false;
  }
  return true;
}

void tls_describe_failure(struct tlsconn *c) {
  uint32_t e = ERR_peek_error();
  int lib = ERR_GET_LIB(e), reason = ERR_GET_REASON(e);
  bool handshaking = c->state == TLSCONN_HANDSHAKING;
  if (c->error != NULL) {
    ERR_clear_error();
    return;
  }
  if (c->first_len > 0 && !tls_looks_like_record(c->first, c->first_len)) {
    tls_conn_set_error(c, "peer sent garbage (not TLS)");
    ERR_clear_error();
    return;
  }
  if (c->sock_err != 0) {
    tls_conn_set_error(c, "%s", strerror(c->sock_err));
    ERR_clear_error();
    return;
  }
  if (c->eof) {
    tls_conn_set_error(
        c, handshaking ? "peer closed the connection during the handshake"
                       : "peer closed the connection in the middle of a "
                         "record");
    ERR_clear_error();
    return;
  }
  const struct policy_tls *t = &c->rule->tls;
  char mine[768];
  const struct tls_hello *h = c->hello;
  if (lib == ERR_LIB_SSL && reason >= SSL_AD_REASON_OFFSET) {
    int alert = reason - SSL_AD_REASON_OFFSET;
    if (!c->is_server && alert == SSL_AD_PROTOCOL_VERSION) {
      tls_versions_text(t, mine, sizeof(mine));
      tls_conn_set_error(c,
                         "no common protocol version: client offered [%s], "
                         "server refused it (alert protocol version)",
                         mine);
    } else if (!c->is_server && alert == SSL_AD_HANDSHAKE_FAILURE) {
      char groups[256];
      tls_list_text(&t->ciphers, mine, sizeof(mine));
      tls_list_text(&t->groups, groups, sizeof(groups));
      tls_conn_set_error(c,
                         "server refused the handshake (alert handshake "
                         "failure): no common cipher or group? client offered "
                         "ciphers [%s], groups [%s]",
                         mine, groups);
    } else if (!c->is_server && alert == SSL_AD_CERTIFICATE_REQUIRED) {
      tls_conn_set_error(c, "server requires a client certificate (alert "
                            "certificate required)");
    } else if (alert == SSL_AD_BAD_CERTIFICATE ||
               alert == SSL_AD_UNSUPPORTED_CERTIFICATE ||
               alert == SSL_AD_CERTIFICATE_REVOKED ||
               alert == SSL_AD_CERTIFICATE_EXPIRED ||
               alert == SSL_AD_CERTIFICATE_UNKNOWN ||
               alert == SSL_AD_UNKNOWN_CA || alert == SSL_AD_ACCESS_DENIED) {
      tls_conn_set_error(c, "peer rejected our certificate (alert %s)",
                         tls_alert_name(alert));
    } else {
      tls_conn_set_error(c, "peer sent alert: %s", tls_alert_name(alert));
    }
  } else if (lib == ERR_LIB_SSL && reason == SSL_R_UNSUPPORTED_PROTOCOL &&
             c->is_server) {
    tls_versions_text(t, mine, sizeof(mine));
    tls_conn_set_error(c,
                       "no common protocol version: client offered [%s], "
                       "server accepts [%s]",
                       h != NULL ? h->versions : "?", mine);
  } else if (lib == ERR_LIB_SSL && reason == SSL_R_NO_SHARED_CIPHER &&
             c->is_server) {
    tls_list_text(&t->ciphers, mine, sizeof(mine));
    tls_conn_set_error(c,
                       "no common cipher: client offered [%s], server accepts "
                       "[%s]",
                       h != NULL ? h->ciphers : "?", mine);
  } else if (lib == ERR_LIB_SSL && reason == SSL_R_NO_SHARED_GROUP &&
             c->is_server) {
    tls_list_text(&t->groups, mine, sizeof(mine));
    tls_conn_set_error(c,
                       "no common group: client offered [%s], server accepts "
                       "[%s]",
                       h != NULL ? h->groups : "?", mine);
  } else if (lib == ERR_LIB_SSL &&
             reason == SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE) {
    tls_conn_set_error(c, "client certificate required but none was sent");
  } else if (lib == ERR_LIB_SSL && (reason == SSL_R_WRONG_VERSION_NUMBER ||
                                    reason == SSL_R_HTTP_REQUEST ||
                                    reason == SSL_R_HTTPS_PROXY_REQUEST)) {
    tls_conn_set_error(c, "peer sent garbage (not TLS)");
  } else if (lib == ERR_LIB_SSL && reason == SSL_R_UNSUPPORTED_PROTOCOL &&
             !c->is_server) {
    tls_versions_text(t, mine, sizeof(mine));
    tls_conn_set_error(c,
                       "no common protocol version: server chose a version "
                       "outside [%s]",
                       mine);
  } else if (e != 0) {
    const char *r = ERR_reason_error_string(e);
    tls_conn_set_error(c, "TLS error: %s", r != NULL ? r : "unknown");
  } else {
    tls_conn_set_error(c, "TLS error");
  }
  ERR_clear_error();
}

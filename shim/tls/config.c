/* config.c: builds one SSL_CTX per TLS rule of a policy, the client session
 * cache, key logging and library-wide initialisation.
 *
 * A tls_config is built completely by tls_config_new() and never changes
 * afterwards, so every thread may use its contexts without a lock; only the
 * client session cache is mutable, under its own mutex. */
#include "shim/tls/internal.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include "shim/libc.h"

/* The OS bundles tried, in order, for `ca: system`. */
static const char *const tls_system_bundles[] = {
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
    "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
};

static pthread_once_t tls_once = PTHREAD_ONCE_INIT;
static BIO_METHOD *tls_method;
static int tls_keylog_fd = -1; /* atomic */

/* Defined in conn.c. */
BIO_METHOD *tls_bio_method_new(void);

static void tls_init_once(void) {
  CRYPTO_library_init();
  tls_method = tls_bio_method_new();
}

void tls_global_init(void) { pthread_once(&tls_once, tls_init_once); }

const BIO_METHOD *tls_bio_method(void) {
  tls_global_init();
  return tls_method;
}

const char *tls_library_version(void) {
  return "BoringSSL " TLSSHIM_BORINGSSL_REVISION;
}

const char *tls_version_name(uint16_t v) {
  switch (v) {
  case TLS1_3_VERSION:
    return "TLS1.3";
  case TLS1_2_VERSION:
    return "TLS1.2";
  case TLS1_1_VERSION:
    return "TLS1.1";
  case TLS1_VERSION:
    return "TLS1.0";
  case SSL3_VERSION:
    return "SSL3";
  default:
    return "unknown";
  }
}

/* Key logging. */

void tls_set_keylog_file(const char *path) {
  int fd = -1;
  if (path != NULL && path[0] != '\0') {
    fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  }
  /* The previous descriptor is left open on purpose: another thread may be
   * writing to it right now, and closing it could make that write land in
   * whatever file reuses the number. Toggling is rare. */
  __atomic_store_n(&tls_keylog_fd, fd, __ATOMIC_RELEASE);
}

void tls_keylog_line(const SSL *ssl, const char *line) {
  int fd = __atomic_load_n(&tls_keylog_fd, __ATOMIC_ACQUIRE);
  if (fd < 0) {
    return;
  }
  char buf[512];
  size_t n = strlen(line);
  if (n + 1 > sizeof(buf)) {
    return;
  }
  memcpy(buf, line, n);
  buf[n++] = '\n';
  int saved = errno;
  /* One write per line so concurrent writers never interleave. */
  ssize_t w = real_write(fd, buf, n);
  (void)w;
  errno = saved;
}

/* The client session cache. */

SSL_SESSION *tls_session_lookup(struct tls_config *cfg, const char *key) {
  SSL_SESSION *s = NULL;
  pthread_mutex_lock(&cfg->cache_lock);
  for (size_t i = 0; i < cfg->cache_count; i++) {
    if (strcmp(cfg->cache[i].key, key) == 0) {
      s = cfg->cache[i].session;
      SSL_SESSION_up_ref(s);
      break;
    }
  }
  pthread_mutex_unlock(&cfg->cache_lock);
  return s;
}

void tls_session_store(struct tls_config *cfg, const char *key,
                       SSL_SESSION *session) {
  char *k = strdup(key);
  if (k == NULL) {
    SSL_SESSION_free(session);
    return;
  }
  pthread_mutex_lock(&cfg->cache_lock);
  struct tls_cached_session *slot = NULL;
  for (size_t i = 0; i < cfg->cache_count; i++) {
    if (strcmp(cfg->cache[i].key, key) == 0) {
      slot = &cfg->cache[i];
      break;
    }
  }
  if (slot == NULL && cfg->cache_count < TLS_SESSION_CACHE_MAX) {
    slot = &cfg->cache[cfg->cache_count++];
    slot->key = NULL;
    slot->session = NULL;
  }
  if (slot == NULL) {
    /* Full: evict the oldest entry. */
    slot = &cfg->cache[0];
    for (size_t i = 1; i < cfg->cache_count; i++) {
      if (cfg->cache[i].stamp < slot->stamp) {
        slot = &cfg->cache[i];
      }
    }
  }
  free(slot->key);
  SSL_SESSION_free(slot->session);
  slot->key = k;
  slot->session = session;
  slot->stamp = ++cfg->cache_stamp;
  pthread_mutex_unlock(&cfg->cache_lock);
}

char *tls_session_key(const struct tls_config *cfg, size_t rule,
                      const char *name, const char *peer) {
  char hex[65];
  for (size_t i = 0; i < 32; i++) {
    snprintf(hex + 2 * i, 3, "%02x", cfg->sids[rule][i]);
  }
  size_t n = sizeof(hex) + 3 + (name != NULL ? strlen(name) : 0) +
             (peer != NULL ? strlen(peer) : 0);
  char *key = malloc(n);
  if (key != NULL) {
    snprintf(key, n, "%s|%s|%s", hex, name != NULL ? name : "",
             peer != NULL ? peer : "");
  }
  return key;
}

/* tls_sid_in_use reports whether the cache key |key| starts with the
 * settings digest of a rule of |cfg| that resumes sessions. */
static bool tls_sid_in_use(const struct tls_config *cfg, const char *key) {
  for (size_t i = 0; i < cfg->policy->rule_count; i++) {
    if (cfg->ctxs[i] == NULL || !cfg->policy->rules[i].tls.session_resumption ||
        cfg->policy->rules[i].direction != POLICY_OUTBOUND) {
      continue;
    }
    char *mine = tls_session_key(cfg, i, NULL, NULL);
    bool same = mine != NULL && strncmp(mine, key, 64) == 0;
    free(mine);
    if (same) {
      return true;
    }
  }
  return false;
}

void tls_config_inherit_sessions(struct tls_config *to,
                                 struct tls_config *from) {
  if (to == NULL || from == NULL || to == from) {
    return;
  }
  pthread_mutex_lock(&from->cache_lock);
  for (size_t i = 0; i < from->cache_count; i++) {
    const struct tls_cached_session *e = &from->cache[i];
    if (!tls_sid_in_use(to, e->key)) {
      continue; /* made under settings that no rule has any more */
    }
    SSL_SESSION_up_ref(e->session);
    tls_session_store(to, e->key, e->session);
  }
  pthread_mutex_unlock(&from->cache_lock);
}

static int tls_new_session_cb(SSL *ssl, SSL_SESSION *session) {
  struct tlsconn *c = tls_conn_from_ssl(ssl);
  if (c == NULL || c->session_key == NULL ||
      !SSL_SESSION_is_resumable(session)) {
    return 0;
  }
  tls_session_store(c->config, c->session_key, session);
  return 1; /* we took the reference */
}

/* Server-side ALPN: the first protocol of the rule's list that the client
 * offers. */
static int tls_alpn_select_cb(SSL *ssl, const uint8_t **out, uint8_t *out_len,
                              const uint8_t *in, unsigned in_len, void *arg) {
  const struct policy_rule *rule = arg;
  const struct policy_strings *alpn = &rule->tls.alpn;
  for (size_t i = 0; i < alpn->count; i++) {
    size_t want = strlen(alpn->items[i]);
    for (unsigned off = 0; off < in_len;) {
      unsigned n = in[off];
      if (off + 1 + n > in_len) {
        break;
      }
      if (n == want && memcmp(in + off + 1, alpn->items[i], n) == 0) {
        *out = in + off + 1;
        *out_len = (uint8_t)n;
        return SSL_TLSEXT_ERR_OK;
      }
      off += 1 + n;
    }
  }
  return SSL_TLSEXT_ERR_NOACK;
}

/* Building. */

struct tls_build {
  struct policy *p;
  struct policy_diag *err;
  struct policy_diags *warnings;
  X509_STORE **stores; /* one per trust, shared by the rules using it */
  uint8_t (*trust_digests)[32]; /* SHA-256 of each store's CA and CRL bytes */
  int64_t crl_from, crl_until; /* time(NULL) range where every CRL is current */
};

/* tls_note_crl narrows the range in which every CRL of the config is
 * current: a remembered verification (verify.c) is not used outside it. */
static void tls_note_crl(struct tls_build *b, const X509_CRL *crl) {
  const ASN1_TIME *next = X509_CRL_get0_nextUpdate(crl);
  int64_t last_at, next_at;
  if (!tls_asn1_time_unix(X509_CRL_get0_lastUpdate(crl), &last_at) ||
      (next != NULL && !tls_asn1_time_unix(next, &next_at))) {
    b->crl_until = INT64_MIN; /* unreadable: never remember */
    return;
  }
  if (last_at > b->crl_from) {
    b->crl_from = last_at;
  }
  if (next != NULL && next_at < b->crl_until) {
    b->crl_until = next_at;
  }
}

/* tls_short_path names |path| relative to the policy folder when it lies
 * inside it, as the user wrote it. */
static const char *tls_short_path(const struct policy *p, const char *path) {
  size_t n = p->dir != NULL ? strlen(p->dir) : 0;
  if (n > 0 && strncmp(path, p->dir, n) == 0 && path[n] == '/') {
    return path + n + 1;
  }
  return path;
}

static const char *tls_policy_file(const struct policy *p) {
  return p->path != NULL ? p->path : "";
}

static void tls_diag(struct tls_build *b, struct policy_pos pos,
                     const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void tls_diag(struct tls_build *b, struct policy_pos pos,
                     const char *fmt, ...) {
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);
  if (b->err != NULL) {
    policy_diag_set(b->err, tls_policy_file(b->p), pos.line, pos.col, "%s",
                    msg);
  }
  ERR_clear_error();
}

static void tls_warn(struct tls_build *b, struct policy_pos pos,
                     const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void tls_warn(struct tls_build *b, struct policy_pos pos,
                     const char *fmt, ...) {
  if (b->warnings == NULL) {
    return;
  }
  struct policy_diag *items =
      realloc(b->warnings->items,
              (b->warnings->count + 1) * sizeof(struct policy_diag));
  if (items == NULL) {
    return;
  }
  b->warnings->items = items;
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);
  struct policy_diag *d = &items[b->warnings->count++];
  memset(d, 0, sizeof(*d));
  policy_diag_set(d, tls_policy_file(b->p), pos.line, pos.col, "%s", msg);
}

static void tls_time_text(const ASN1_TIME *t, char *buf, size_t buf_len) {
  buf[0] = '\0';
  BIO *m = BIO_new(BIO_s_mem());
  if (m == NULL) {
    return;
  }
  if (ASN1_TIME_print(m, t)) {
    const uint8_t *data;
    size_t len;
    if (BIO_mem_contents(m, &data, &len)) {
      if (len >= buf_len) {
        len = buf_len - 1;
      }
      memcpy(buf, data, len);
      buf[len] = '\0';
    }
  }
  BIO_free(m);
}

/* tls_check_validity checks the identity certificate's dates. */
static int tls_check_validity(struct tls_build *b,
                              const struct policy_identity *id, X509 *leaf) {
  const char *path = tls_short_path(b->p, id->cert);
  char when[64];
  if (X509_cmp_current_time(X509_get0_notBefore(leaf)) > 0) {
    tls_time_text(X509_get0_notBefore(leaf), when, sizeof(when));
    tls_diag(b, id->cert_pos, "certificate %s is not yet valid (not before %s)",
             path, when);
    return -1;
  }
  if (X509_cmp_current_time(X509_get0_notAfter(leaf)) < 0) {
    tls_time_text(X509_get0_notAfter(leaf), when, sizeof(when));
    tls_diag(b, id->cert_pos, "certificate %s has expired (not after %s)", path,
             when);
    return -1;
  }
  int days = 0, secs = 0;
  if (ASN1_TIME_diff(&days, &secs, NULL, X509_get0_notAfter(leaf)) &&
      days < 30) {
    tls_time_text(X509_get0_notAfter(leaf), when, sizeof(when));
    tls_warn(b, id->cert_pos,
             "certificate %s expires in %d days (not after %s)", path, days,
             when);
  }
  return 0;
}

static uint8_t *tls_read_file(const char *path, size_t *out_len) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return NULL;
  }
  size_t cap = 4096, len = 0;
  uint8_t *buf = malloc(cap);
  while (buf != NULL) {
    if (len == cap) {
      uint8_t *nb = cap < (1u << 24) ? realloc(buf, cap * 2) : NULL;
      if (nb == NULL) {
        free(buf);
        buf = NULL;
        break;
      }
      buf = nb;
      cap *= 2;
    }
    ssize_t n = real_read(fd, buf + len, cap - len);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n < 0) {
      free(buf);
      buf = NULL;
      break;
    }
    if (n == 0) {
      break;
    }
    len += (size_t)n;
  }
  real_close(fd);
  *out_len = len;
  return buf;
}

static int tls_load_identity(struct tls_build *b, SSL_CTX *ctx,
                             const struct policy_identity *id) {
  const char *cert_path = tls_short_path(b->p, id->cert);
  const char *key_path = tls_short_path(b->p, id->key);
  BIO *bio = BIO_new_file(id->cert, "r");
  if (bio == NULL) {
    tls_diag(b, id->cert_pos, "cannot read certificate %s", cert_path);
    return -1;
  }
  X509 *leaf = PEM_read_bio_X509(bio, NULL, NULL, NULL);
  if (leaf == NULL) {
    BIO_free(bio);
    tls_diag(b, id->cert_pos, "certificate %s holds no PEM certificate",
             cert_path);
    return -1;
  }
  int rc = -1;
  EVP_PKEY *key = NULL;
  if (!SSL_CTX_use_certificate(ctx, leaf)) {
    tls_diag(b, id->cert_pos, "certificate %s cannot be used", cert_path);
    goto out;
  }
  for (;;) {
    X509 *extra = PEM_read_bio_X509(bio, NULL, NULL, NULL);
    if (extra == NULL) {
      break;
    }
    if (!SSL_CTX_add1_chain_cert(ctx, extra)) {
      X509_free(extra);
      tls_diag(b, id->cert_pos, "certificate %s: bad chain certificate",
               cert_path);
      goto out;
    }
    X509_free(extra);
  }
  ERR_clear_error();

  BIO *kbio = BIO_new_file(id->key, "r");
  if (kbio == NULL) {
    tls_diag(b, id->key_pos, "cannot read key %s", key_path);
    goto out;
  }
  key = PEM_read_bio_PrivateKey(kbio, NULL, NULL, NULL);
  BIO_free(kbio);
  if (key == NULL) {
    tls_diag(b, id->key_pos, "key %s holds no PEM private key", key_path);
    goto out;
  }
  int type = EVP_PKEY_id(key);
  if (type != EVP_PKEY_RSA && type != EVP_PKEY_EC && type != EVP_PKEY_ED25519) {
    tls_diag(b, id->key_pos, "key %s: unsupported key type", key_path);
    goto out;
  }
  if (!X509_check_private_key(leaf, key)) {
    tls_diag(b, id->key_pos, "key %s does not match certificate %s", key_path,
             cert_path);
    goto out;
  }
  if (!SSL_CTX_use_PrivateKey(ctx, key)) {
    tls_diag(b, id->key_pos, "key %s cannot be used", key_path);
    goto out;
  }
  if (tls_check_validity(b, id, leaf) < 0) {
    goto out;
  }
  if (id->ocsp_staple != NULL) {
    size_t len = 0;
    uint8_t *der = tls_read_file(id->ocsp_staple, &len);
    if (der == NULL || len == 0 || !SSL_CTX_set_ocsp_response(ctx, der, len)) {
      free(der);
      tls_diag(b, id->ocsp_pos, "cannot use OCSP response %s",
               tls_short_path(b->p, id->ocsp_staple));
      goto out;
    }
    free(der);
  }
  rc = 0;
out:
  EVP_PKEY_free(key);
  X509_free(leaf);
  BIO_free(bio);
  return rc;
}

/* tls_store_add_pem adds every certificate and CRL of the PEM |bytes| to
 * |store| (as X509_STORE_load_locations does with a file), noting each CRL's
 * dates. Returns how many CRLs (|crls|) or certificates it added. */
static int tls_store_add_pem(struct tls_build *b, X509_STORE *store,
                             const uint8_t *bytes, size_t len, bool crls) {
  BIO *bio = BIO_new_mem_buf(bytes, len);
  STACK_OF(X509_INFO) *infos =
      bio != NULL ? PEM_X509_INFO_read_bio(bio, NULL, NULL, NULL) : NULL;
  int n = 0;
  for (size_t i = 0; infos != NULL && i < sk_X509_INFO_num(infos); i++) {
    X509_INFO *info = sk_X509_INFO_value(infos, i);
    if (info->x509 != NULL && X509_STORE_add_cert(store, info->x509) &&
        !crls) {
      n++;
    }
    if (info->crl != NULL && X509_STORE_add_crl(store, info->crl)) {
      tls_note_crl(b, info->crl);
      n += crls;
    }
  }
  sk_X509_INFO_pop_free(infos, X509_INFO_free);
  BIO_free(bio);
  ERR_clear_error();
  return n;
}

/* tls_digest_add hashes |len| then the bytes, so that two fields can never
 * run into each other. */
static void tls_digest_add(SHA256_CTX *h, const void *data, size_t len) {
  uint64_t n = len;
  SHA256_Update(h, &n, sizeof(n));
  SHA256_Update(h, data, len);
}

/* tls_trust_store returns the (shared) store of trust |t|, built on first
 * use, and puts the SHA-256 of the CA and CRL bytes it was built from in
 * |digest|: the store is made from exactly the bytes hashed, so sessions
 * bound to the digest (tls_settings_digest) are bound to what verified. */
static X509_STORE *tls_trust_store(struct tls_build *b,
                                   const struct policy_trust *t,
                                   uint8_t digest[32]) {
  size_t idx = (size_t)(t - b->p->trusts);
  if (idx < b->p->trust_count && b->stores[idx] != NULL) {
    memcpy(digest, b->trust_digests[idx], 32);
    return b->stores[idx];
  }
  X509_STORE *store = X509_STORE_new();
  uint8_t *bytes = NULL;
  size_t len = 0;
  if (store == NULL) {
    tls_diag(b, t->pos, "out of memory");
    return NULL;
  }
  const char *ca = t->ca;
  if (t->ca_system || ca == NULL) {
    ca = NULL;
    for (size_t i = 0;
         i < sizeof(tls_system_bundles) / sizeof(*tls_system_bundles); i++) {
      if (access(tls_system_bundles[i], R_OK) == 0) {
        ca = tls_system_bundles[i];
        break;
      }
    }
    if (ca == NULL) {
      tls_diag(b, t->ca_pos, "no system CA bundle found");
      goto fail;
    }
  }
  SHA256_CTX h;
  SHA256_Init(&h);
  bytes = tls_read_file(ca, &len);
  if (bytes == NULL || tls_store_add_pem(b, store, bytes, len, false) == 0) {
    tls_diag(b, t->ca_pos, "CA bundle %s holds no usable certificate",
             tls_short_path(b->p, ca));
    goto fail;
  }
  tls_digest_add(&h, bytes, len);
  free(bytes);
  bytes = NULL;
  if (t->crl != NULL) {
    bytes = tls_read_file(t->crl, &len);
    if (bytes == NULL || tls_store_add_pem(b, store, bytes, len, true) == 0) {
      tls_diag(b, t->crl_pos, "CRL file %s holds no usable CRL",
               tls_short_path(b->p, t->crl));
      goto fail;
    }
    tls_digest_add(&h, bytes, len);
    free(bytes);
    bytes = NULL;
  } else {
    tls_digest_add(&h, "", 0);
  }
  SHA256_Final(digest, &h);
  ERR_clear_error();
  if (idx < b->p->trust_count) {
    b->stores[idx] = store;
    memcpy(b->trust_digests[idx], digest, 32);
  }
  return store;
fail:
  free(bytes);
  X509_STORE_free(store);
  return NULL;
}

/* tls_set_ciphers checks each cipher name, then installs the list in order. */
static int tls_set_ciphers(struct tls_build *b, SSL_CTX *ctx,
                           const struct policy_tls *t) {
  if (t->ciphers.count == 0) {
    return 0;
  }
  size_t total = 1;
  for (size_t i = 0; i < t->ciphers.count; i++) {
    const char *name = t->ciphers.items[i];
    struct policy_pos pos =
        t->ciphers.pos != NULL ? t->ciphers.pos[i] : t->ciphers_pos;
    /* One name must select exactly one suite: no operators, no aliases. */
    if (name[0] == '\0' || strchr("!+-@", name[0]) != NULL ||
        strpbrk(name, ":,[] ") != NULL ||
        !SSL_CTX_set_strict_cipher_list(ctx, name) ||
        sk_SSL_CIPHER_num(SSL_CTX_get_ciphers(ctx)) != 1) {
      tls_diag(b, pos, "unknown cipher '%s'", name);
      return -1;
    }
    total += strlen(name) + 1;
  }
  char *list = malloc(total);
  if (list == NULL) {
    tls_diag(b, t->ciphers_pos, "out of memory");
    return -1;
  }
  list[0] = '\0';
  for (size_t i = 0; i < t->ciphers.count; i++) {
    if (i > 0) {
      strcat(list, ":");
    }
    strcat(list, t->ciphers.items[i]);
  }
  int ok = SSL_CTX_set_strict_cipher_list(ctx, list);
  free(list);
  if (!ok) {
    tls_diag(b, t->ciphers_pos, "invalid cipher list");
    return -1;
  }
  return 0;
}

static int tls_set_groups(struct tls_build *b, SSL_CTX *ctx,
                          const struct policy_tls *t) {
  if (t->groups.count == 0) {
    return 0;
  }
  size_t total = 1;
  for (size_t i = 0; i < t->groups.count; i++) {
    const char *name = t->groups.items[i];
    struct policy_pos pos =
        t->groups.pos != NULL ? t->groups.pos[i] : t->groups_pos;
    if (name[0] == '\0' || strchr(name, ':') != NULL ||
        !SSL_CTX_set1_curves_list(ctx, name)) {
      tls_diag(b, pos, "unknown group '%s'", name);
      return -1;
    }
    total += strlen(name) + 1;
  }
  char *list = malloc(total);
  if (list == NULL) {
    tls_diag(b, t->groups_pos, "out of memory");
    return -1;
  }
  list[0] = '\0';
  for (size_t i = 0; i < t->groups.count; i++) {
    if (i > 0) {
      strcat(list, ":");
    }
    strcat(list, t->groups.items[i]);
  }
  int ok = SSL_CTX_set1_curves_list(ctx, list);
  free(list);
  if (!ok) {
    tls_diag(b, t->groups_pos, "invalid group list");
    return -1;
  }
  return 0;
}

static int tls_set_alpn(struct tls_build *b, SSL_CTX *ctx,
                        const struct policy_rule *r) {
  const struct policy_strings *alpn = &r->tls.alpn;
  if (alpn->count == 0) {
    return 0;
  }
  if (r->direction == POLICY_INBOUND) {
    SSL_CTX_set_alpn_select_cb(ctx, tls_alpn_select_cb, (void *)r);
    return 0;
  }
  size_t total = 0;
  for (size_t i = 0; i < alpn->count; i++) {
    total += 1 + strlen(alpn->items[i]);
  }
  uint8_t *wire = malloc(total);
  if (wire == NULL) {
    tls_diag(b, r->tls.alpn_pos, "out of memory");
    return -1;
  }
  size_t off = 0;
  for (size_t i = 0; i < alpn->count; i++) {
    size_t n = strlen(alpn->items[i]);
    if (n == 0 || n > 255) {
      free(wire);
      tls_diag(b, alpn->pos != NULL ? alpn->pos[i] : r->tls.alpn_pos,
               "invalid ALPN protocol '%s'", alpn->items[i]);
      return -1;
    }
    wire[off++] = (uint8_t)n;
    memcpy(wire + off, alpn->items[i], n);
    off += n;
  }
  /* SSL_CTX_set_alpn_protos returns 0 on success. */
  int bad = SSL_CTX_set_alpn_protos(ctx, wire, off);
  free(wire);
  if (bad) {
    tls_diag(b, r->tls.alpn_pos, "cannot set ALPN protocols");
    return -1;
  }
  return 0;
}

/* tls_settings_digest is the session id context of rule |r|: the SHA-256 of
 * everything a full handshake's verdict on the peer depends on (the rule's
 * name and direction, whether and how the peer is verified, client_auth,
 * peer_names, server_name, crl_check, and the bytes of its CA bundle and
 * CRLs, |trust_digest|, NULL without verification). BoringSSL resumes a
 * session or ticket only under the context it was made in, so a reload that
 * changes any of these makes every earlier session do a full handshake, while
 * other reloads and the other workers of a pre-fork server, which build the
 * same digest from the same files, still resume. */
static void tls_settings_digest(const struct policy_rule *r, bool verify,
                                const uint8_t *trust_digest,
                                uint8_t out[32]) {
  const struct policy_tls *t = &r->tls;
  SHA256_CTX h;
  SHA256_Init(&h);
  static const char tag[] = "tlsshim session context 1";
  tls_digest_add(&h, tag, sizeof(tag) - 1);
  const char *name = r->name != NULL ? r->name : "";
  tls_digest_add(&h, name, strlen(name));
  uint8_t fixed[4] = {(uint8_t)r->direction, verify, (uint8_t)t->client_auth,
                      (uint8_t)t->crl_check};
  tls_digest_add(&h, fixed, sizeof(fixed));
  static const uint8_t none[32];
  tls_digest_add(&h, trust_digest != NULL ? trust_digest : none, 32);
  const char *sn = t->server_name != NULL ? t->server_name : "";
  tls_digest_add(&h, sn, strlen(sn));
  uint64_t count = t->peer_names.count;
  SHA256_Update(&h, &count, sizeof(count));
  for (size_t i = 0; i < t->peer_names.count; i++) {
    tls_digest_add(&h, t->peer_names.items[i], strlen(t->peer_names.items[i]));
  }
  SHA256_Final(out, &h);
}

static SSL_CTX *tls_build_rule(struct tls_build *b, const struct policy_rule *r,
                               const uint8_t keys[80], uint8_t sid[32]) {
  const struct policy_tls *t = &r->tls;
  bool server = r->direction == POLICY_INBOUND;
  SSL_CTX *ctx = SSL_CTX_new(TLS_method());
  if (ctx == NULL) {
    tls_diag(b, r->pos, "out of memory");
    return NULL;
  }
  uint16_t min = t->min_version ? t->min_version : TLS1_2_VERSION;
  uint16_t max = t->max_version ? t->max_version : TLS1_3_VERSION;
  if (min < TLS1_2_VERSION || max > TLS1_3_VERSION || min > max ||
      !SSL_CTX_set_min_proto_version(ctx, min) ||
      !SSL_CTX_set_max_proto_version(ctx, max)) {
    tls_diag(b, t->protocols_pos, "unsupported protocol range");
    goto fail;
  }
  if (tls_set_ciphers(b, ctx, t) < 0 || tls_set_groups(b, ctx, t) < 0 ||
      tls_set_alpn(b, ctx, r) < 0) {
    goto fail;
  }
  if (t->identity != NULL) {
    if (tls_load_identity(b, ctx, t->identity) < 0) {
      goto fail;
    }
  } else if (server) {
    tls_diag(b, t->pos, "rule '%s' serves TLS but names no identity",
             r->name != NULL ? r->name : "");
    goto fail;
  }

  bool verify =
      server ? t->client_auth != POLICY_CLIENT_AUTH_NONE : t->verify_peer;
  uint8_t trust_digest[32];
  if (verify) {
    const struct policy_trust *trust = t->trust;
    X509_STORE *store = NULL;
    if (trust != NULL) {
      store = tls_trust_store(b, trust, trust_digest);
    } else {
      struct policy_trust sys = {
          .name = "system", .ca_system = true, .pos = t->pos, .ca_pos = t->pos};
      store = tls_trust_store(b, &sys, trust_digest);
    }
    if (store == NULL) {
      goto fail;
    }
    X509_STORE_up_ref(store);
    SSL_CTX_set_cert_store(ctx, store);
    if (trust != NULL && trust->crl != NULL) {
      unsigned long flags = X509_V_FLAG_CRL_CHECK;
      if (t->crl_check == POLICY_CRL_CHAIN) {
        flags |= X509_V_FLAG_CRL_CHECK_ALL;
      }
      X509_VERIFY_PARAM_set_flags(SSL_CTX_get0_param(ctx), flags);
    }
  }
  int mode = SSL_VERIFY_NONE;
  if (verify) {
    mode = SSL_VERIFY_PEER;
    if (server && t->client_auth == POLICY_CLIENT_AUTH_REQUIRED) {
      mode |= SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
    }
  }
  /* Handshake signatures we accept from peers: BoringSSL's defaults without
   * SHA-1, plus Ed25519 (off by default). */
  static const uint16_t verify_prefs[] = {
      SSL_SIGN_ECDSA_SECP256R1_SHA256,
      SSL_SIGN_RSA_PSS_RSAE_SHA256,
      SSL_SIGN_RSA_PKCS1_SHA256,
      SSL_SIGN_ECDSA_SECP384R1_SHA384,
      SSL_SIGN_RSA_PSS_RSAE_SHA384,
      SSL_SIGN_RSA_PKCS1_SHA384,
      SSL_SIGN_RSA_PSS_RSAE_SHA512,
      SSL_SIGN_RSA_PKCS1_SHA512,
      SSL_SIGN_ED25519,
  };
  if (!SSL_CTX_set_verify_algorithm_prefs(
          ctx, verify_prefs, sizeof(verify_prefs) / sizeof(*verify_prefs))) {
    tls_diag(b, r->pos, "cannot set signature algorithms");
    goto fail;
  }
  SSL_CTX_set_verify(ctx, mode, NULL);
  SSL_CTX_set_cert_verify_callback(ctx, tls_cert_verify, NULL);
  /* Key logging is the policy's explicit opt-in: without it BoringSSL never
   * formats a secret at all. */
  if (b->p->allow_keylog) {
    SSL_CTX_set_keylog_callback(ctx, tls_keylog_line);
  }

  /* Sessions: a ticket-only server (no stateful cache to grow) and a client
   * cache kept in the config, keyed per settings digest, name and peer. */
  tls_settings_digest(r, verify, verify ? trust_digest : NULL, sid);
  if (!SSL_CTX_set_session_id_context(ctx, sid, 32)) {
    tls_diag(b, r->pos, "cannot set the session context");
    goto fail;
  }
  if (server) {
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_options(ctx, SSL_OP_CIPHER_SERVER_PREFERENCE);
    SSL_CTX_set_select_certificate_cb(ctx, tls_select_cert);
    if (t->session_resumption) {
      /* BoringSSL's ticket keys are 48 bytes: name, HMAC and AES keys. */
      if (!SSL_CTX_set_tlsext_ticket_keys(ctx, keys, 48)) {
        tls_diag(b, r->pos, "cannot set session ticket keys");
        goto fail;
      }
    } else {
      SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
    }
  } else {
    if (t->session_resumption) {
      SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT |
                                              SSL_SESS_CACHE_NO_INTERNAL);
      SSL_CTX_sess_set_new_cb(ctx, tls_new_session_cb);
    } else {
      SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
      SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
    }
  }
  ERR_clear_error();
  return ctx;
fail:
  SSL_CTX_free(ctx);
  return NULL;
}

static void tls_config_free(struct tls_config *c) {
  if (c->ctxs != NULL) {
    for (size_t i = 0; i < c->policy->rule_count; i++) {
      SSL_CTX_free(c->ctxs[i]);
    }
    free(c->ctxs);
  }
  for (size_t i = 0; i < c->cache_count; i++) {
    free(c->cache[i].key);
    SSL_SESSION_free(c->cache[i].session);
  }
  free(c->cache);
  free(c->sids);
  pthread_mutex_destroy(&c->cache_lock);
  pthread_mutex_destroy(&c->verified_lock);
}

/* tls_check_unused_identities checks the identities no TLS rule uses as
 * strictly as used ones (parse, key match, dates): a certificate waiting in
 * the policy for a later rule is still an error when it has expired. */
static int tls_check_unused_identities(struct tls_build *b) {
  const struct policy *p = b->p;
  for (size_t i = 0; i < p->identity_count; i++) {
    const struct policy_identity *id = &p->identities[i];
    bool used = false;
    for (size_t j = 0; j < p->rule_count && !used; j++) {
      const struct policy_rule *r = &p->rules[j];
      used = (r->action == POLICY_ACTION_TLS ||
              r->action == POLICY_ACTION_PERMISSIVE) &&
             r->tls.identity == id;
    }
    if (used) {
      continue;
    }
    SSL_CTX *scratch = SSL_CTX_new(TLS_method());
    if (scratch == NULL) {
      tls_diag(b, id->pos, "out of memory");
      return -1;
    }
    int r = tls_load_identity(b, scratch, id);
    SSL_CTX_free(scratch);
    if (r < 0) {
      return -1;
    }
  }
  return 0;
}

/* tls_check_tls_values checks the protocol range, cipher, group and ALPN
 * names of |t| on a scratch context, as a rule that used them would. */
static int tls_check_tls_values(struct tls_build *b, const struct policy_tls *t) {
  SSL_CTX *scratch = SSL_CTX_new(TLS_method());
  if (scratch == NULL) {
    tls_diag(b, t->pos, "out of memory");
    return -1;
  }
  int rc = -1;
  uint16_t min = t->min_version ? t->min_version : TLS1_2_VERSION;
  uint16_t max = t->max_version ? t->max_version : TLS1_3_VERSION;
  if (min < TLS1_2_VERSION || max > TLS1_3_VERSION || min > max ||
      !SSL_CTX_set_min_proto_version(scratch, min) ||
      !SSL_CTX_set_max_proto_version(scratch, max)) {
    tls_diag(b, t->protocols_pos, "unsupported protocol range");
    goto out;
  }
  if (tls_set_ciphers(b, scratch, t) < 0 || tls_set_groups(b, scratch, t) < 0) {
    goto out;
  }
  for (size_t i = 0; i < t->alpn.count; i++) {
    size_t n = strlen(t->alpn.items[i]);
    if (n == 0 || n > 255) {
      tls_diag(b, t->alpn.pos != NULL ? t->alpn.pos[i] : t->alpn_pos,
               "invalid ALPN protocol '%s'", t->alpn.items[i]);
      goto out;
    }
  }
  rc = 0;
out:
  SSL_CTX_free(scratch);
  return rc;
}

/* tls_check_unused_values checks what no TLS context was built from as
 * strictly as what was: the `defaults:` block (even when every rule sets
 * its own values), the `tls:` of plaintext and deny rules, and every trust
 * (its CA bundle and CRLs parse), so that a value is never an error only
 * once a rule starts using it. */
static int tls_check_unused_values(struct tls_build *b, SSL_CTX *const *ctxs) {
  const struct policy *p = b->p;
  if (tls_check_tls_values(b, &p->defaults) < 0) {
    return -1;
  }
  for (size_t i = 0; i < p->rule_count; i++) {
    if (ctxs[i] == NULL && tls_check_tls_values(b, &p->rules[i].tls) < 0) {
      return -1;
    }
  }
  for (size_t i = 0; i < p->trust_count; i++) {
    uint8_t digest[32];
    if (tls_trust_store(b, &p->trusts[i], digest) == NULL) {
      return -1;
    }
  }
  return 0;
}

int tls_config_new(struct tls_config **out, struct policy *p,
                   const uint8_t *ticket_keys, struct policy_diag *err,
                   struct policy_diags *warnings) {
  tls_global_init();
  *out = NULL;
  struct tls_build b = {.p = p,
                        .err = err,
                        .warnings = warnings,
                        .crl_from = INT64_MIN,
                        .crl_until = INT64_MAX};
  struct tls_config *c = calloc(1, sizeof(*c));
  if (c == NULL) {
    tls_diag(&b, (struct policy_pos){0, 0}, "out of memory");
    return -1;
  }
  c->refs = 1;
  c->policy = p;
  pthread_mutex_init(&c->cache_lock, NULL);
  pthread_mutex_init(&c->verified_lock, NULL);
  c->ctxs = calloc(p->rule_count > 0 ? p->rule_count : 1, sizeof(SSL_CTX *));
  c->cache = calloc(TLS_SESSION_CACHE_MAX, sizeof(*c->cache));
  c->sids = calloc(p->rule_count > 0 ? p->rule_count : 1, sizeof(*c->sids));
  b.stores =
      calloc(p->trust_count > 0 ? p->trust_count : 1, sizeof(X509_STORE *));
  b.trust_digests = calloc(p->trust_count > 0 ? p->trust_count : 1,
                           sizeof(*b.trust_digests));
  if (c->ctxs == NULL || c->cache == NULL || b.stores == NULL ||
      c->sids == NULL || b.trust_digests == NULL) {
    tls_diag(&b, (struct policy_pos){0, 0}, "out of memory");
    goto fail;
  }
  if (ticket_keys != NULL) {
    memcpy(c->ticket_keys, ticket_keys, sizeof(c->ticket_keys));
  } else if (!RAND_bytes(c->ticket_keys, sizeof(c->ticket_keys))) {
    tls_diag(&b, (struct policy_pos){0, 0}, "cannot make session ticket keys");
    goto fail;
  }
  for (size_t i = 0; i < p->rule_count; i++) {
    const struct policy_rule *r = &p->rules[i];
    if (r->action != POLICY_ACTION_TLS &&
        r->action != POLICY_ACTION_PERMISSIVE) {
      continue;
    }
    c->ctxs[i] = tls_build_rule(&b, r, c->ticket_keys, c->sids[i]);
    if (c->ctxs[i] == NULL) {
      goto fail;
    }
  }
  if (tls_check_unused_identities(&b) < 0 ||
      tls_check_unused_values(&b, c->ctxs) < 0) {
    goto fail;
  }
  c->crl_from = b.crl_from;
  c->crl_until = b.crl_until;
  for (size_t i = 0; i < p->trust_count; i++) {
    X509_STORE_free(b.stores[i]);
  }
  free(b.stores);
  free(b.trust_digests);
  *out = c;
  return 0;
fail:
  if (b.stores != NULL) {
    for (size_t i = 0; i < p->trust_count; i++) {
      X509_STORE_free(b.stores[i]);
    }
    free(b.stores);
  }
  free(b.trust_digests);
  tls_config_free(c);
  free(c);
  return -1;
}

void tls_config_ticket_keys(const struct tls_config *c, uint8_t out[80]) {
  memcpy(out, c->ticket_keys, 80);
}

void tls_config_ref(struct tls_config *c) {
  __atomic_add_fetch(&c->refs, 1, __ATOMIC_RELAXED);
}

void tls_config_unref(struct tls_config *c) {
  if (c == NULL) {
    return;
  }
  if (__atomic_sub_fetch(&c->refs, 1, __ATOMIC_ACQ_REL) != 0) {
    return;
  }
  struct policy *p = c->policy;
  tls_config_free(c);
  free(c);
  policy_free(p);
}

const struct policy *tls_config_policy(const struct tls_config *c) {
  return c->policy;
}

/* pki.c: `tlsshim pki init`: a demo CA with a server and a client
 * certificate, made with BoringSSL's X509 functions (ECDSA P-256, SHA-256). */
#include "shim/tls/internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/ec_key.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include "shim/libc.h"

static EVP_PKEY *pki_new_key(void) {
  EC_KEY *ec = EC_KEY_new_by_curve_name(NID_X9_62_prime256v1);
  EVP_PKEY *pkey = EVP_PKEY_new();
  if (ec == NULL || pkey == NULL || !EC_KEY_generate_key(ec) ||
      !EVP_PKEY_assign_EC_KEY(pkey, ec)) {
    EC_KEY_free(ec);
    EVP_PKEY_free(pkey);
    return NULL;
  }
  return pkey;
}

static int pki_add_ext(X509 *cert, X509 *issuer, int nid, const char *value) {
  X509V3_CTX ctx;
  X509V3_set_ctx(&ctx, issuer, cert, NULL, NULL, 0);
  X509_EXTENSION *ext = X509V3_EXT_nconf_nid(NULL, &ctx, nid, value);
  if (ext == NULL) {
    return -1;
  }
  int ok = X509_add_ext(cert, ext, -1);
  X509_EXTENSION_free(ext);
  return ok ? 0 : -1;
}

/* pki_make_cert makes a certificate for |key| named |cn|, signed by
 * |issuer|/|issuer_key| (self-signed when |issuer| is NULL). */
static X509 *pki_make_cert(EVP_PKEY *key, const char *cn, X509 *issuer,
                           EVP_PKEY *issuer_key, const char *const *exts) {
  X509 *x = X509_new();
  if (x == NULL) {
    return NULL;
  }
  uint8_t serial_bytes[16];
  BIGNUM *serial = NULL;
  if (!RAND_bytes(serial_bytes, sizeof(serial_bytes))) {
    goto fail;
  }
  serial_bytes[0] &= 0x7f;
  serial = BN_bin2bn(serial_bytes, sizeof(serial_bytes), NULL);
  X509_NAME *name = X509_get_subject_name(x);
  if (serial == NULL || !X509_set_version(x, X509_VERSION_3) ||
      BN_to_ASN1_INTEGER(serial, X509_get_serialNumber(x)) == NULL ||
      !X509_NAME_add_entry_by_txt(name, "O", MBSTRING_UTF8,
                                  (const uint8_t *)"tlsshim demo", -1, -1, 0) ||
      !X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8,
                                  (const uint8_t *)cn, -1, -1, 0) ||
      !X509_set_issuer_name(x, issuer != NULL ? X509_get_subject_name(issuer)
                                              : name) ||
      X509_gmtime_adj(X509_getm_notBefore(x), -3600) == NULL ||
      X509_gmtime_adj(X509_getm_notAfter(x), 365L * 24 * 3600) == NULL ||
      !X509_set_pubkey(x, key)) {
    goto fail;
  }
  for (size_t i = 0; exts[i] != NULL; i += 2) {
    int nid = OBJ_txt2nid(exts[i]);
    if (nid == NID_undef ||
        pki_add_ext(x, issuer != NULL ? issuer : x, nid, exts[i + 1]) < 0) {
      goto fail;
    }
  }
  if (!X509_sign(x, issuer_key != NULL ? issuer_key : key, EVP_sha256())) {
    goto fail;
  }
  BN_free(serial);
  return x;
fail:
  BN_free(serial);
  X509_free(x);
  return NULL;
}

static int pki_write(const char *dir, const char *file, mode_t mode,
                     BIO *contents) {
  char path[4096];
  snprintf(path, sizeof(path), "%s/%s", dir, file);
  const uint8_t *data;
  size_t len;
  if (!BIO_mem_contents(contents, &data, &len)) {
    return -1;
  }
  (void)unlink(path);
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
  if (fd < 0) {
    return -1;
  }
  size_t off = 0;
  while (off < len) {
    ssize_t n = real_write(fd, data + off, len - off);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n <= 0) {
      real_close(fd);
      return -1;
    }
    off += (size_t)n;
  }
  return real_close(fd) == 0 ? 0 : -1;
}

static int pki_save(const char *dir, const char *base, X509 *x, EVP_PKEY *k,
                    char *err, size_t err_len) {
  char name[64];
  BIO *cb = BIO_new(BIO_s_mem());
  BIO *kb = BIO_new(BIO_s_mem());
  int rc = -1;
  if (cb == NULL || kb == NULL || !PEM_write_bio_X509(cb, x) ||
      !PEM_write_bio_PrivateKey(kb, k, NULL, NULL, 0, NULL, NULL)) {
    snprintf(err, err_len, "cannot encode %s", base);
    goto out;
  }
  snprintf(name, sizeof(name), "%s.pem", base);
  if (pki_write(dir, name, 0644, cb) < 0) {
    snprintf(err, err_len, "cannot write %s/%s: %s", dir, name,
             strerror(errno));
    goto out;
  }
  snprintf(name, sizeof(name), "%s.key", base);
  if (pki_write(dir, name, 0600, kb) < 0) {
    snprintf(err, err_len, "cannot write %s/%s: %s", dir, name,
             strerror(errno));
    goto out;
  }
  rc = 0;
out:
  BIO_free(cb);
  BIO_free(kb);
  return rc;
}

int tls_pki_init(const char *dir, const char *const *names, size_t name_count,
                 const char *const *ips, size_t ip_count, char *err,
                 size_t err_len) {
  tls_global_init();
  static const char *const default_name = "localhost";
  static const char *const default_ip = "127.0.0.1";
  if (names == NULL) {
    names = &default_name;
    name_count = 1;
  }
  if (ips == NULL) {
    ips = &default_ip;
    ip_count = 1;
  }
  if (mkdir(dir, 0755) < 0 && errno != EEXIST) {
    snprintf(err, err_len, "cannot create %s: %s", dir, strerror(errno));
    return -1;
  }
  size_t san_len = 1;
  for (size_t i = 0; i < name_count; i++) {
    san_len += strlen(names[i]) + 6;
  }
  for (size_t i = 0; i < ip_count; i++) {
    san_len += strlen(ips[i]) + 5;
  }
  char *san = malloc(san_len);
  if (san == NULL) {
    snprintf(err, err_len, "out of memory");
    return -1;
  }
  san[0] = '\0';
  for (size_t i = 0; i < name_count; i++) {
    strcat(san, san[0] ? ",DNS:" : "DNS:");
    strcat(san, names[i]);
  }
  for (size_t i = 0; i < ip_count; i++) {
    strcat(san, san[0] ? ",IP:" : "IP:");
    strcat(san, ips[i]);
  }

  int rc = -1;
  EVP_PKEY *ca_key = pki_new_key(), *srv_key = pki_new_key(),
           *cli_key = pki_new_key();
  X509 *ca = NULL, *srv = NULL, *cli = NULL;
  if (ca_key == NULL || srv_key == NULL || cli_key == NULL) {
    snprintf(err, err_len, "cannot generate keys");
    goto out;
  }
  const char *const ca_exts[] = {"basicConstraints",
                                 "critical,CA:TRUE",
                                 "keyUsage",
                                 "critical,keyCertSign,cRLSign",
                                 "subjectKeyIdentifier",
                                 "hash",
                                 NULL};
  const char *const srv_exts[] = {"basicConstraints",
                                  "critical,CA:FALSE",
                                  "keyUsage",
                                  "critical,digitalSignature",
                                  "extendedKeyUsage",
                                  "serverAuth",
                                  "subjectAltName",
                                  san,
                                  "authorityKeyIdentifier",
                                  "keyid",
                                  NULL};
  const char *const cli_exts[] = {"basicConstraints",
                                  "critical,CA:FALSE",
                                  "keyUsage",
                                  "critical,digitalSignature",
                                  "extendedKeyUsage",
                                  "clientAuth",
                                  "subjectAltName",
                                  "URI:spiffe://tlsshim.demo/client,DNS:client",
                                  "authorityKeyIdentifier",
                                  "keyid",
                                  NULL};
  ca = pki_make_cert(ca_key, "tlsshim demo CA", NULL, NULL, ca_exts);
  if (ca != NULL) {
    srv = pki_make_cert(srv_key, names[0], ca, ca_key, srv_exts);
    cli = pki_make_cert(cli_key, "client", ca, ca_key, cli_exts);
  }
  if (ca == NULL || srv == NULL || cli == NULL) {
    snprintf(err, err_len, "cannot make certificates (bad name or address?)");
    goto out;
  }
  if (pki_save(dir, "ca", ca, ca_key, err, err_len) < 0 ||
      pki_save(dir, "server", srv, srv_key, err, err_len) < 0 ||
      pki_save(dir, "client", cli, cli_key, err, err_len) < 0) {
    goto out;
  }
  rc = 0;
out:
  X509_free(ca);
  X509_free(srv);
  X509_free(cli);
  EVP_PKEY_free(ca_key);
  EVP_PKEY_free(srv_key);
  EVP_PKEY_free(cli_key);
  free(san);
  ERR_clear_error();
  return rc;
}

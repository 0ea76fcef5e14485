/* In-memory BoringSSL ceiling: handshakes/s, resumed handshakes/s and 16 KiB records/s, one thread. */
/*
 *   ceiling --cert SRV.pem --key SRV.key --ca CA.pem [--seconds S]
 *
 * Client and server SSL objects talk through a BIO pair, so no socket and no
 * kernel is involved: this is what BoringSSL itself can do on one core with
 * the settings the benchmark uses for the shim (TLS 1.3, X25519, ECDSA P-256,
 * the client verifying the chain and the IP SAN 127.0.0.1). Prints one line:
 *   RESULT full_hs=N resumed_hs=N records=N record_mbps=N
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#define RECORD 16384

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void fail(const char *what) {
  char buf[256];
  ERR_error_string_n(ERR_get_error(), buf, sizeof(buf));
  printf("ERROR %s: %s\n", what, buf);
  exit(1);
}

struct pair {
  SSL *client;
  SSL *server;
};

static void pair_new(struct pair *p, SSL_CTX *cctx, SSL_CTX *sctx,
                     SSL_SESSION *session) {
  BIO *cb, *sb;
  p->client = SSL_new(cctx);
  p->server = SSL_new(sctx);
  if (p->client == NULL || p->server == NULL ||
      !BIO_new_bio_pair(&cb, 65536, &sb, 65536)) {
    fail("SSL_new");
  }
  SSL_set_bio(p->client, cb, cb);
  SSL_set_bio(p->server, sb, sb);
  SSL_set_connect_state(p->client);
  SSL_set_accept_state(p->server);
  if (!X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(p->client), "127.0.0.1")) {
    fail("set1_ip_asc");
  }
  if (session != NULL && !SSL_set_session(p->client, session)) {
    fail("SSL_set_session");
  }
}

static void pair_free(struct pair *p) {
  SSL_free(p->client);
  SSL_free(p->server);
}

static int step(SSL *ssl, int rc) {
  if (rc == 1) {
    return 1;
  }
  int err = SSL_get_error(ssl, rc);
  if (err != SSL_ERROR_WANT_READ && err != SSL_ERROR_WANT_WRITE) {
    fail("handshake");
  }
  return 0;
}

/* Runs both handshakes to completion, then lets the client read the
 * server's post-handshake messages (session tickets). */
static void pair_handshake(struct pair *p) {
  int cdone = 0, sdone = 0;
  while (!cdone || !sdone) {
    if (!cdone) {
      cdone = step(p->client, SSL_do_handshake(p->client));
    }
    if (!sdone) {
      sdone = step(p->server, SSL_do_handshake(p->server));
    }
  }
  /* BoringSSL holds TLS 1.3 tickets until the server's first write. */
  char c = 0;
  if (SSL_write(p->server, &c, 0) < 0) {
    fail("flushing tickets");
  }
  int rc = SSL_read(p->client, &c, 1);
  if (rc > 0 || SSL_get_error(p->client, rc) != SSL_ERROR_WANT_READ) {
    fail("post-handshake read");
  }
}

static SSL_SESSION *g_ticket_session;

/* Keeps the newest ticket the client received; returns 1: we own it. */
static int on_new_session(SSL *ssl, SSL_SESSION *session) {
  SSL_SESSION_free(g_ticket_session);
  g_ticket_session = session;
  return 1;
}

static SSL_CTX *make_ctx(int server, int tickets, const char *cert,
                         const char *key, const char *ca) {
  SSL_CTX *ctx = SSL_CTX_new(TLS_method());
  if (ctx == NULL || !SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION) ||
      !SSL_CTX_set1_curves_list(ctx, "X25519")) {
    fail("SSL_CTX_new");
  }
  if (server) {
    if (!SSL_CTX_use_certificate_chain_file(ctx, cert) ||
        !SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM)) {
      fail("loading the server certificate");
    }
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    if (!tickets) {
      SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
    }
  } else {
    if (!SSL_CTX_load_verify_locations(ctx, ca, NULL)) {
      fail("loading the CA");
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    SSL_CTX_set_session_cache_mode(ctx, tickets ? SSL_SESS_CACHE_CLIENT
                                                : SSL_SESS_CACHE_OFF);
    if (tickets) {
      SSL_CTX_sess_set_new_cb(ctx, on_new_session);
    }
  }
  return ctx;
}

int main(int argc, char **argv) {
  const char *cert = NULL, *key = NULL, *ca = NULL;
  double seconds = 1.0;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (strcmp(argv[i], "--cert") == 0) {
      cert = argv[i + 1];
    } else if (strcmp(argv[i], "--key") == 0) {
      key = argv[i + 1];
    } else if (strcmp(argv[i], "--ca") == 0) {
      ca = argv[i + 1];
    } else if (strcmp(argv[i], "--seconds") == 0) {
      seconds = atof(argv[i + 1]);
    }
  }
  if (cert == NULL || key == NULL || ca == NULL || seconds <= 0) {
    fprintf(stderr, "usage: ceiling --cert SRV.pem --key SRV.key --ca CA.pem "
                    "[--seconds S]\n");
    return 2;
  }

  /* Full handshakes: no tickets, no cache (session_resumption: false). */
  SSL_CTX *cfull = make_ctx(0, 0, cert, key, ca);
  SSL_CTX *sfull = make_ctx(1, 0, cert, key, ca);
  uint64_t full = 0;
  double t0 = now_s(), t1;
  do {
    struct pair p;
    pair_new(&p, cfull, sfull, NULL);
    pair_handshake(&p);
    if (SSL_session_reused(p.client)) {
      fail("unexpected resumption");
    }
    pair_free(&p);
    full++;
  } while ((t1 = now_s()) - t0 < seconds);
  double full_rate = full / (t1 - t0);

  /* Resumed handshakes: tickets on, the client offers the first session. */
  SSL_CTX *cres = make_ctx(0, 1, cert, key, ca);
  SSL_CTX *sres = make_ctx(1, 1, cert, key, ca);
  struct pair first;
  pair_new(&first, cres, sres, NULL);
  pair_handshake(&first);
  pair_free(&first);
  SSL_SESSION *session = g_ticket_session;
  g_ticket_session = NULL;
  if (session == NULL || !SSL_SESSION_is_resumable(session)) {
    printf("ERROR no resumable session after the first handshake\n");
    return 1;
  }
  uint64_t resumed = 0;
  t0 = now_s();
  do {
    struct pair p;
    pair_new(&p, cres, sres, session);
    pair_handshake(&p);
    if (!SSL_session_reused(p.client)) {
      printf("ERROR the session was not resumed\n");
      return 1;
    }
    pair_free(&p);
    resumed++;
  } while ((t1 = now_s()) - t0 < seconds);
  double resumed_rate = resumed / (t1 - t0);

  /* Records: client seals 16 KiB, server opens it. */
  static unsigned char buf[RECORD], out[RECORD];
  memset(buf, 'r', sizeof(buf));
  struct pair p;
  pair_new(&p, cfull, sfull, NULL);
  pair_handshake(&p);
  uint64_t records = 0;
  t0 = now_s();
  do {
    for (int k = 0; k < 64; k++) {
      if (SSL_write(p.client, buf, RECORD) != RECORD) {
        fail("SSL_write");
      }
      int got = 0;
      while (got < RECORD) {
        int n = SSL_read(p.server, out + got, RECORD - got);
        if (n <= 0) {
          fail("SSL_read");
        }
        got += n;
      }
    }
    records += 64;
  } while ((t1 = now_s()) - t0 < seconds);
  pair_free(&p);
  double rec_rate = records / (t1 - t0);

  printf("RESULT full_hs=%.1f resumed_hs=%.1f records=%.1f record_mbps=%.1f\n",
         full_rate, resumed_rate, rec_rate, rec_rate * RECORD / 1e6);
  SSL_SESSION_free(session);
  SSL_SESSION_free(g_ticket_session);
  SSL_CTX_free(cfull);
  SSL_CTX_free(sfull);
  SSL_CTX_free(cres);
  SSL_CTX_free(sres);
  return 0;
}

/* tls_fuzz.c: libFuzzer target for the TLS layer's read and handshake path:
 * the input is the peer's side of a connection, fed to a server and to a
 * client tlsconn over a socketpair.
 *
 * TLSSHIM_FUZZ_POLICY names a policy (made by run_tls_fuzz.sh with test
 * certificates) whose first inbound tls rule serves and first outbound tls
 * rule connects. Input layout: byte 0 chooses whether the peer's end is shut
 * after the bytes (a TCP EOF) or left open (the connection waits); the rest
 * is what the peer sends. */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "policy/policy.h"
#include "shim/tls/tls.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct tls_config *config;
static const struct policy_rule *server_rule;
static const struct policy_rule *client_rule;

static void fail(const char *what, const char *detail) {
  fprintf(stderr, "tls_fuzz: %s: %s\n", what, detail);
  abort();
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  const char *path = getenv("TLSSHIM_FUZZ_POLICY");
  if (path == NULL) {
    fail("setup", "TLSSHIM_FUZZ_POLICY is not set (use run_tls_fuzz.sh)");
  }
  FILE *f = fopen(path, "r");
  if (f == NULL) {
    fail(path, strerror(errno));
  }
  static char text[65536];
  size_t n = fread(text, 1, sizeof(text), f);
  fclose(f);
  tls_global_init();
  struct policy *p = NULL;
  struct policy_diag err;
  memset(&err, 0, sizeof(err));
  if (policy_load_buffer(&p, path, text, n, &err, NULL) != 0) {
    fail(path, err.message);
  }
  uint8_t keys[80];
  memset(keys, 7, sizeof(keys)); /* fixed ticket keys: reproducible runs */
  if (tls_config_new(&config, p, keys, &err, NULL) != 0) {
    policy_free(p);
    fail(path, err.message);
  }
  const struct policy *cp = tls_config_policy(config);
  for (size_t i = 0; i < cp->rule_count; i++) {
    const struct policy_rule *r = &cp->rules[i];
    if (r->action != POLICY_ACTION_TLS) {
      continue;
    }
    if (r->direction == POLICY_INBOUND && server_rule == NULL) {
      server_rule = r;
    } else if (r->direction == POLICY_OUTBOUND && client_rule == NULL) {
      client_rule = r;
    }
  }
  if (server_rule == NULL || client_rule == NULL) {
    fail(path, "needs an inbound and an outbound tls rule");
  }
  return 0;
}

static void drain(int fd) {
  uint8_t buf[16384];
  while (read(fd, buf, sizeof(buf)) > 0) {
  }
}

/* One connection: |data| arrives from the peer; drive the connection until
 * it waits, fails or sees the end. */
static void run_one(bool is_server, const uint8_t *data, size_t size,
                    bool eof) {
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) != 0) {
    fail("socketpair", strerror(errno));
  }
  int sz = 1 << 20;
  (void)setsockopt(sv[1], SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
  (void)setsockopt(sv[0], SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz));
  size_t off = 0;
  while (off < size) {
    ssize_t w = write(sv[1], data + off, size - off);
    if (w <= 0) {
      break; /* buffer full: the rest is dropped, as a stalled peer */
    }
    off += (size_t)w;
  }
  if (eof) {
    (void)shutdown(sv[1], SHUT_WR);
  }
  struct tlsconn_params params;
  memset(&params, 0, sizeof(params));
  params.config = config;
  params.rule = is_server ? server_rule : client_rule;
  params.is_server = is_server;
  params.fd = sv[0];
  params.verify_name = is_server ? NULL : "localhost";
  params.peer_ip = "127.0.0.1";
  params.peer_key = "127.0.0.1:443";
  struct tlsconn *c = NULL;
  if (tlsconn_new(&c, &params) != 0) {
    fail("tlsconn_new", "failed");
  }
  uint8_t buf[4096];
  for (int round = 0; round < 64; round++) {
    int r = tlsconn_handshake(c);
    (void)tlsconn_wants(c);
    drain(sv[1]);
    if (r == -EAGAIN) {
      break;
    }
    if (r < 0) {
      break;
    }
    ssize_t n = tlsconn_read(c, buf, sizeof(buf), round % 2 == 1);
    if (n > 0) {
      (void)tlsconn_write(c, buf, (size_t)n);
      (void)tlsconn_flush(c);
      continue;
    }
    (void)tlsconn_pump(c);
    (void)tlsconn_pending(c);
    break;
  }
  struct tlsconn_info info;
  tlsconn_get_info(c, &info);
  const char *e = tlsconn_error(c);
  if (e == NULL) {
    fail("tlsconn_error", "returned NULL");
  }
  (void)tlsconn_state(c);
  (void)tlsconn_shutdown(c);
  tlsconn_free(c);
  close(sv[0]);
  close(sv[1]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) {
    return 0;
  }
  bool eof = (data[0] & 1) != 0;
  (void)tlsconn_looks_like_client_hello(data + 1, size - 1);
  run_one(true, data + 1, size - 1, eof);
  run_one(false, data + 1, size - 1, eof);
  return 0;
}

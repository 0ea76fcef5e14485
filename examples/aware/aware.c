/* aware.c: an "aware" TCP client that asks the shim (if any) about its TLS. */
/*
 * The optional API of SPEC section 7.
 *
 * Usage: aware HOST PORT [LINE]
 *
 * Connects to HOST:PORT, sends LINE (default "hello from aware") and a
 * newline, then looks up tlsshim_conn_info with dlsym(RTLD_DEFAULT, ...):
 *
 *   under the shim, on a TLS connection:  TLS: version=... cipher=... peer=...
 *   without the shim, or not TLS:         not TLS
 *
 * The program is the same binary either way: it never links against the
 * shim, so it runs unchanged with or without LD_PRELOAD.
 *
 *   cc -I include examples/aware/aware.c -o aware -ldl
 *   ./aware 127.0.0.1 4433                                  # not TLS
 *   tlsshim run -p client.yaml -- ./aware 127.0.0.1 4433    # TLS: ...
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* RTLD_DEFAULT */
#endif

#include <dlfcn.h>
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <unistd.h>

#include "tlsshim.h"

typedef int (*conn_info_fn)(int fd, struct tlsshim_conn_info *out,
                            size_t out_size);

/* Connects to host:port; returns the descriptor or -1 after a message. */
static int dial(const char *host, const char *port) {
  struct addrinfo hints;
  struct addrinfo *res = NULL;
  memset(&hints, 0, sizeof(hints));
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  int rc = getaddrinfo(host, port, &hints, &res);
  if (rc != 0) {
    fprintf(stderr, "aware: %s:%s: %s\n", host, port, gai_strerror(rc));
    return -1;
  }
  int fd = -1;
  int err = 0;
  for (struct addrinfo *ai = res; ai != NULL; ai = ai->ai_next) {
    fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
    if (fd < 0) {
      err = errno;
      continue;
    }
    /* Under the shim, a blocking connect returns once TLS is established. */
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) {
      break;
    }
    err = errno;
    close(fd);
    fd = -1;
  }
  freeaddrinfo(res);
  if (fd < 0) {
    fprintf(stderr, "aware: connect %s:%s: %s\n", host, port, strerror(err));
  }
  return fd;
}

/* Writes all of buf; returns 0 or -1 after a message. */
static int send_all(int fd, const char *buf, size_t len) {
  while (len > 0) {
    ssize_t n = write(fd, buf, len);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n <= 0) {
      fprintf(stderr, "aware: write: %s\n", strerror(errno));
      return -1;
    }
    buf += n;
    len -= (size_t)n;
  }
  return 0;
}

int main(int argc, char **argv) {
  if (argc < 3 || argc > 4) {
    fprintf(stderr, "usage: aware HOST PORT [LINE]\n");
    return 2;
  }
  const char *line = argc == 4 ? argv[3] : "hello from aware";

  int fd = dial(argv[1], argv[2]);
  if (fd < 0) {
    return 1;
  }
  if (send_all(fd, line, strlen(line)) != 0 || send_all(fd, "\n", 1) != 0) {
    close(fd);
    return 1;
  }

  /* The optional API: present only when libtlsshim.so is loaded. */
  conn_info_fn info = (conn_info_fn)dlsym(RTLD_DEFAULT, "tlsshim_conn_info");
  struct tlsshim_conn_info ci;
  memset(&ci, 0, sizeof(ci));
  if (info != NULL && info(fd, &ci, sizeof(ci)) != 0) {
    fprintf(stderr, "aware: tlsshim_conn_info: %s\n", strerror(errno));
    close(fd);
    return 1;
  }
  if (info != NULL && ci.is_tls && ci.handshake_done) {
    printf("TLS: version=%s cipher=%s peer=%s\n", ci.version, ci.cipher,
           ci.peer_identity[0] != '\0' ? ci.peer_identity : "(none)");
  } else {
    printf("not TLS\n");
  }
  if (fflush(stdout) != 0) {
    close(fd);
    return 1;
  }
  if (shutdown(fd, SHUT_WR) != 0 && errno != ENOTCONN) {
    fprintf(stderr, "aware: shutdown: %s\n", strerror(errno));
  }
  if (close(fd) != 0) {
    fprintf(stderr, "aware: close: %s\n", strerror(errno));
    return 1;
  }
  return 0;
}

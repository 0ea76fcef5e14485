/* ready_bigreq.c: a large non-blocking write through a small SO_SNDBUF,
 * then waiting only for readability: the last encrypted bytes must leave
 * even though the program never asks for POLLOUT again.
 *
 * Protocol: the client sends --req-bytes, the server reads them all and
 * sends --reply-bytes, the client reads them all and sends "ACK\n", the
 * server reads it and closes; the client expects EOF. Each side writes
 * non-blocking (waiting for POLLOUT on EAGAIN) and, after its last write,
 * waits only for POLLIN (--wait poll|select|epoll-lt|epoll-et). --sndbuf sets
 * SO_SNDBUF on both sides' sockets. Prints "ready_bigreq ROLE: ok" and exits
 * 0; 1 on an error, 3 on --timeout with what it waited for. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "progs.h"

enum wait_mode { W_POLL, W_SELECT, W_EPOLL_LT, W_EPOLL_ET };

static struct {
  bool server;
  int port;
  size_t req_bytes;
  size_t reply_bytes;
  int sndbuf;
  enum wait_mode wait;
  const char *ready_file;
  int timeout;
} opt = {false, 0, 1 << 20, 16, 4096, W_POLL, NULL, 30};

static const char *role;
static int64_t deadline;
static int ep = -1;
static uint32_t ep_events;
static size_t progress_done, progress_total;
static long write_eagain; /* partial progress: how often a write said EAGAIN */

static void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void fail(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "ready_bigreq %s: ", role);
  vexit_with(fmt, ap);
}

static uint8_t pattern(uint32_t salt, size_t i) {
  uint32_t x = ((uint32_t)i + salt) * 2654435761u;
  return (uint8_t)(x >> 24);
}

/* Waits until |fd| is ready for |what| (POLLIN or POLLOUT), by the chosen
 * mechanism only; exits 3 at the deadline naming what it waited for. */
static void wait_ready(int fd, short what, const char *phase) {
  for (;;) {
    int64_t left = deadline - now_ms();
    if (left <= 0) {
      fprintf(stderr,
              "ready_bigreq %s: timeout waiting for %s (%s) with %zu of %zu bytes done\n", role,
              what == POLLIN ? "readability" : "writability", phase, progress_done,
              progress_total);
      exit(3);
    }
    int slice = left > 500 ? 500 : (int)left;
    int n;
    switch (opt.wait) {
    case W_POLL: {
      struct pollfd p = {.fd = fd, .events = what};
      n = poll(&p, 1, slice);
      if (n > 0 && (p.revents & POLLNVAL)) {
        fail("poll: POLLNVAL");
      }
      break;
    }
    case W_SELECT: {
      fd_set s;
      FD_ZERO(&s);
      FD_SET(fd, &s);
      struct timeval tv = {slice / 1000, (slice % 1000) * 1000};
      n = select(fd + 1, what == POLLIN ? &s : NULL, what == POLLOUT ? &s : NULL, NULL, &tv);
      break;
    }
    default: {
      uint32_t want = (what == POLLIN ? EPOLLIN : EPOLLOUT) |
                      (opt.wait == W_EPOLL_ET ? EPOLLET : 0);
      if (want != ep_events) {
        struct epoll_event ev = {.events = want, .data.fd = fd};
        if (epoll_ctl(ep, ep_events == 0 ? EPOLL_CTL_ADD : EPOLL_CTL_MOD, fd, &ev) != 0) {
          fail("epoll_ctl: %s", strerror(errno));
        }
        ep_events = want;
      }
      struct epoll_event out;
      n = epoll_wait(ep, &out, 1, slice);
      if (n > 0 && out.data.fd != fd) {
        fail("epoll_wait: bad user data %d", out.data.fd);
      }
      break;
    }
    }
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      fail("wait: %s", strerror(errno));
    }
    if (n > 0) {
      return;
    }
  }
}

/* Reads exactly |len| bytes matching pattern(|salt|). */
static void read_all(int fd, size_t len, uint32_t salt, const char *phase) {
  static char buf[65536];
  size_t got = 0;
  progress_done = 0;
  progress_total = len;
  while (got < len) {
    size_t want = len - got < sizeof(buf) ? len - got : sizeof(buf);
    ssize_t r = read(fd, buf, want);
    if (r < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        wait_ready(fd, POLLIN, phase);
        continue;
      }
      if (errno == EINTR) {
        continue;
      }
      fail("read (%s): %s", phase, strerror(errno));
    }
    if (r == 0) {
      fail("unexpected EOF (%s) after %zu of %zu bytes", phase, got, len);
    }
    for (ssize_t i = 0; i < r; i++) {
      if ((uint8_t)buf[i] != pattern(salt, got + (size_t)i)) {
        fail("%s: byte %zu differs", phase, got + (size_t)i);
      }
    }
    got += (size_t)r;
    progress_done = got;
  }
}

/* Writes |len| bytes of pattern(|salt|) non-blocking, large writes. */
static void write_all(int fd, size_t len, uint32_t salt, const char *phase) {
  char *buf = malloc(len);
  if (buf == NULL) {
    fail("malloc failed");
  }
  for (size_t i = 0; i < len; i++) {
    buf[i] = (char)pattern(salt, i);
  }
  size_t off = 0;
  progress_done = 0;
  progress_total = len;
  while (off < len) {
    ssize_t w = write(fd, buf + off, len - off);
    if (w < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        write_eagain++;
        wait_ready(fd, POLLOUT, phase);
        continue;
      }
      if (errno == EINTR) {
        continue;
      }
      fail("write (%s): %s", phase, strerror(errno));
    }
    off += (size_t)w;
    progress_done = off;
  }
  free(buf);
}

static void set_sndbuf(int fd) {
  if (opt.sndbuf > 0 &&
      setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &opt.sndbuf, sizeof(opt.sndbuf)) != 0) {
    fail("setsockopt SO_SNDBUF: %s", strerror(errno));
  }
}

static void set_nonblock(int fd) {
  int fl = fcntl(fd, F_GETFL);
  if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) != 0) {
    fail("fcntl: %s", strerror(errno));
  }
}

static void ack_and_eof(int fd, bool send_ack) {
  if (send_ack) {
    const char ack[] = "ACK\n";
    ssize_t w;
    while ((w = write(fd, ack, 4)) < 0 && (errno == EAGAIN || errno == EINTR)) {
      wait_ready(fd, POLLOUT, "sending the ack");
    }
    if (w != 4) {
      fail("write ack: %s", w < 0 ? strerror(errno) : "short write");
    }
  }
  /* Only readability from here on. */
  char b[8];
  size_t got = 0;
  const char *phase = send_ack ? "EOF after the ack" : "the ack";
  for (;;) {
    ssize_t r = read(fd, b + got, sizeof(b) - got);
    if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
      wait_ready(fd, POLLIN, phase);
      continue;
    }
    if (r < 0) {
      fail("read (%s): %s", phase, strerror(errno));
    }
    if (r == 0) {
      break;
    }
    got += (size_t)r;
    if (!send_ack && got == 4) {
      break;
    }
    if (got >= sizeof(b)) {
      fail("unexpected bytes while waiting for %s", phase);
    }
  }
  if (send_ack && got != 0) {
    fail("unexpected %zu bytes before EOF", got);
  }
  if (!send_ack && memcmp(b, "ACK\n", 4) != 0) {
    fail("bad ack");
  }
}

static long parse_long(const char *s, const char *what) {
  long v;
  if (!parse_count(s, &v)) {
    fail("bad %s: %s", what, s);
  }
  return v;
}

int main(int argc, char **argv) {
  role = "?";
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (i + 1 >= argc) {
      fail("missing value for %s", a);
    }
    const char *v = argv[++i];
    if (strcmp(a, "--role") == 0) {
      opt.server = strcmp(v, "server") == 0;
      if (!opt.server && strcmp(v, "client") != 0) {
        fail("bad --role %s", v);
      }
    } else if (strcmp(a, "--port") == 0) {
      opt.port = (int)parse_long(v, a);
    } else if (strcmp(a, "--req-bytes") == 0) {
      opt.req_bytes = (size_t)parse_long(v, a);
    } else if (strcmp(a, "--reply-bytes") == 0) {
      opt.reply_bytes = (size_t)parse_long(v, a);
    } else if (strcmp(a, "--sndbuf") == 0) {
      opt.sndbuf = (int)parse_long(v, a);
    } else if (strcmp(a, "--ready-file") == 0) {
      opt.ready_file = v;
    } else if (strcmp(a, "--timeout") == 0) {
      opt.timeout = (int)parse_long(v, a);
    } else if (strcmp(a, "--wait") == 0) {
      static const char *names[] = {"poll", "select", "epoll-lt", "epoll-et"};
      int k = -1;
      for (int j = 0; j < 4; j++) {
        if (strcmp(v, names[j]) == 0) {
          k = j;
        }
      }
      if (k < 0) {
        fail("bad --wait %s", v);
      }
      opt.wait = (enum wait_mode)k;
    } else {
      fail("unknown option %s", a);
    }
  }
  role = opt.server ? "server" : "client";
  if (opt.wait == W_EPOLL_LT || opt.wait == W_EPOLL_ET) {
    ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0) {
      fail("epoll_create1: %s", strerror(errno));
    }
  }
  struct sockaddr_in sa;
  memset(&sa, 0, sizeof(sa));
  sa.sin_family = AF_INET;
  sa.sin_port = htons((uint16_t)opt.port);
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  int fd;
  if (opt.server) {
    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    if (lfd < 0 || setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
        bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) != 0 || listen(lfd, 4) != 0) {
      fail("listen: %s", strerror(errno));
    }
    socklen_t len = sizeof(sa);
    if (getsockname(lfd, (struct sockaddr *)&sa, &len) != 0) {
      fail("getsockname: %s", strerror(errno));
    }
    if (opt.ready_file != NULL) {
      char tmp[4096];
      snprintf(tmp, sizeof(tmp), "%s.tmp", opt.ready_file);
      FILE *f = fopen(tmp, "w");
      if (f == NULL || fprintf(f, "%d\n", ntohs(sa.sin_port)) < 0 || fclose(f) != 0 ||
          rename(tmp, opt.ready_file) != 0) {
        fail("cannot write %s", opt.ready_file);
      }
    }
    fd = accept(lfd, NULL, NULL);
    if (fd < 0) {
      fail("accept: %s", strerror(errno));
    }
    close(lfd);
    set_sndbuf(fd);
  } else {
    fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) {
      fail("socket: %s", strerror(errno));
    }
    set_sndbuf(fd);
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
      fail("connect: %s", strerror(errno));
    }
  }
  set_nonblock(fd);
  deadline = now_ms() + (int64_t)opt.timeout * 1000;
  if (opt.server) {
    read_all(fd, opt.req_bytes, 1, "the request");
    write_all(fd, opt.reply_bytes, 2, "the reply");
    ack_and_eof(fd, false);
  } else {
    write_all(fd, opt.req_bytes, 1, "the request");
    read_all(fd, opt.reply_bytes, 2, "the reply");
    ack_and_eof(fd, true);
  }
  if (close(fd) != 0) {
    fail("close: %s", strerror(errno));
  }
  printf("ready_bigreq %s: ok req=%zu reply=%zu write_eagain=%ld\n", role, opt.req_bytes,
         opt.reply_bytes, write_eagain);
  return 0;
}

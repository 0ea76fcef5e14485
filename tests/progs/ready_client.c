/* ready_client.c: many non-blocking echo connections driven by one event
 * loop (epoll LT/ET, poll or select), reading replies in small pieces and
 * checking every byte, to exercise TLS-level readiness under the shim.
 *
 * Each connection sends --messages/--conns messages of --size bytes, each in
 * one write() call (continued on partial writes), and reads the echo back
 * with read() calls of at most --read-chunk bytes before sending the next.
 * At the end it half-closes and expects EOF. Prints one "ready_client: ok"
 * line and exits 0 on success; exits 1 on an error and 3 on --timeout, with
 * the progress of every unfinished connection on stderr. */
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

enum loop { LOOP_EPOLL_LT, LOOP_EPOLL_ET, LOOP_POLL, LOOP_SELECT };
enum state { ST_CONNECTING, ST_RUN, ST_SHUT, ST_DONE };

struct conn {
  int fd;
  int idx;
  enum state st;
  long total; /* messages to send */
  long done;  /* messages echoed back completely */
  size_t sent, rcvd; /* of the current message */
  uint32_t lt_events; /* epoll-lt: what is registered now */
};

static struct {
  const char *host;
  int port;
  int conns;
  long messages;
  size_t size;
  size_t read_chunk;
  enum loop loop;
  int timeout;
} opt = {"127.0.0.1", 0, 50, 1000, 16384, 100, LOOP_EPOLL_ET, 60};

static char *msgbuf;
static long long bytes_in, bytes_out;

static void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void fail(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fputs("ready_client: ", stderr);
  vexit_with(fmt, ap);
}

/* Byte |i| of message |m| on connection |c|: differs per byte, message
 * and connection, so misordered or crossed data is caught. */
static uint8_t pattern(int c, long m, size_t i) {
  uint32_t x = (uint32_t)c * 1000003u + (uint32_t)m * 7919u + (uint32_t)i;
  x *= 2654435761u;
  return (uint8_t)(x >> 24);
}

static void fill_message(int c, long m) {
  for (size_t i = 0; i < opt.size; i++) {
    msgbuf[i] = (char)pattern(c, m, i);
  }
}

static void start_connect(struct conn *c) {
  c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  if (c->fd < 0) {
    fail("socket: %s", strerror(errno));
  }
  struct sockaddr_in sa;
  memset(&sa, 0, sizeof(sa));
  sa.sin_family = AF_INET;
  sa.sin_port = htons((uint16_t)opt.port);
  if (inet_pton(AF_INET, opt.host, &sa.sin_addr) != 1) {
    fail("bad --host %s", opt.host);
  }
  if (connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 && errno != EINPROGRESS) {
    fail("conn %d: connect: %s", c->idx, strerror(errno));
  }
  c->st = ST_CONNECTING;
}

/* Progress until the connection would block. Sets |*want_out| when a
 * write is pending. Returns false once the connection is finished. */
static bool step(struct conn *c, bool *want_out) {
  *want_out = false;
  char rb[65536];
  for (;;) {
    switch (c->st) {
    case ST_CONNECTING: {
      struct pollfd p = {.fd = c->fd, .events = POLLOUT};
      int r = poll(&p, 1, 0);
      if (r < 0) {
        fail("conn %d: poll: %s", c->idx, strerror(errno));
      }
      if (r == 0) {
        *want_out = true;
        return true;
      }
      int err = 0;
      socklen_t len = sizeof(err);
      if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) {
        fail("conn %d: getsockopt: %s", c->idx, strerror(errno));
      }
      if (err != 0) {
        fail("conn %d: connect: %s", c->idx, strerror(err));
      }
      c->st = ST_RUN;
      break;
    }
    case ST_RUN: {
      bool blocked_w = false, blocked_r = false;
      if (c->sent < opt.size) {
        fill_message(c->idx, c->done);
        ssize_t w = write(c->fd, msgbuf + c->sent, opt.size - c->sent);
        if (w < 0) {
          if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
            fail("conn %d: write: %s", c->idx, strerror(errno));
          }
          blocked_w = true;
        } else {
          c->sent += (size_t)w;
          bytes_out += w;
        }
      } else {
        blocked_w = true;
      }
      size_t want = opt.read_chunk;
      ssize_t r = read(c->fd, rb, want);
      if (r < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
          fail("conn %d: read: %s", c->idx, strerror(errno));
        }
        blocked_r = true;
      } else if (r == 0) {
        fail("conn %d: unexpected EOF in message %ld after %zu bytes", c->idx, c->done,
             c->rcvd);
      } else {
        if (c->rcvd + (size_t)r > c->sent) {
          fail("conn %d: message %ld: got %zu bytes back, only %zu sent", c->idx,
               c->done, c->rcvd + (size_t)r, c->sent);
        }
        for (ssize_t i = 0; i < r; i++) {
          uint8_t e = pattern(c->idx, c->done, c->rcvd + (size_t)i);
          if ((uint8_t)rb[i] != e) {
            fail("conn %d: message %ld byte %zu: got 0x%02x, expected 0x%02x", c->idx,
                 c->done, c->rcvd + (size_t)i, (uint8_t)rb[i], e);
          }
        }
        c->rcvd += (size_t)r;
        bytes_in += r;
        if (c->rcvd == opt.size) {
          c->done++;
          c->sent = c->rcvd = 0;
          if (c->done == c->total) {
            if (shutdown(c->fd, SHUT_WR) != 0) {
              fail("conn %d: shutdown: %s", c->idx, strerror(errno));
            }
            c->st = ST_SHUT;
          }
        }
      }
      if (blocked_r && blocked_w) {
        *want_out = c->sent < opt.size;
        return true;
      }
      break;
    }
    case ST_SHUT: {
      ssize_t r = read(c->fd, rb, opt.read_chunk);
      if (r < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
          return true;
        }
        fail("conn %d: read after shutdown: %s", c->idx, strerror(errno));
      }
      if (r > 0) {
        fail("conn %d: %zd unexpected bytes after the last message", c->idx, r);
      }
      c->st = ST_DONE;
      break;
    }
    case ST_DONE:
      return false;
    }
  }
}

static void report_progress(struct conn *cs, const char *why) {
  fprintf(stderr, "ready_client: %s\n", why);
  for (int i = 0; i < opt.conns; i++) {
    if (cs[i].st != ST_DONE) {
      fprintf(stderr,
              "ready_client: conn %d fd %d state %d: %ld/%ld messages, current sent %zu "
              "received %zu\n",
              i, cs[i].fd, (int)cs[i].st, cs[i].done, cs[i].total, cs[i].sent, cs[i].rcvd);
    }
  }
  exit(3);
}

static void finish(struct conn *c) {
  if (close(c->fd) != 0) {
    fail("conn %d: close: %s", c->idx, strerror(errno));
  }
  c->fd = -1;
}

static void run_epoll(struct conn *cs, bool et) {
  int ep = epoll_create1(EPOLL_CLOEXEC);
  if (ep < 0) {
    fail("epoll_create1: %s", strerror(errno));
  }
  for (int i = 0; i < opt.conns; i++) {
    struct epoll_event ev = {0};
    ev.data.ptr = &cs[i];
    ev.events = et ? (EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET) : (EPOLLIN | EPOLLOUT);
    cs[i].lt_events = ev.events;
    if (epoll_ctl(ep, EPOLL_CTL_ADD, cs[i].fd, &ev) != 0) {
      fail("epoll_ctl ADD: %s", strerror(errno));
    }
  }
  int live = opt.conns;
  int64_t deadline = now_ms() + (int64_t)opt.timeout * 1000;
  struct epoll_event evs[64];
  while (live > 0) {
    if (now_ms() > deadline) {
      report_progress(cs, "timeout waiting for epoll events");
    }
    int n = epoll_wait(ep, evs, 64, 1000);
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      fail("epoll_wait: %s", strerror(errno));
    }
    for (int i = 0; i < n; i++) {
      struct conn *c = evs[i].data.ptr;
      if (c < cs || c >= cs + opt.conns) {
        fail("epoll_wait returned bad user data %p", evs[i].data.ptr);
      }
      if (c->fd < 0) {
        /* The kernel reports a descriptor at most once per call, and a
         * closed one never: this event is a duplicate in the batch. */
        fail("epoll_wait returned event %d of %d (events 0x%x) for conn %d, which was "
             "closed while handling an earlier event of the same batch",
             i, n, evs[i].events, c->idx);
      }
      bool want_out;
      if (!step(c, &want_out)) {
        finish(c); /* close removes it from the set */
        live--;
        continue;
      }
      if (!et) {
        uint32_t want = EPOLLIN | (want_out ? EPOLLOUT : 0);
        if (want != c->lt_events) {
          struct epoll_event ev = {0};
          ev.data.ptr = c;
          ev.events = want;
          if (epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev) != 0) {
            fail("epoll_ctl MOD: %s", strerror(errno));
          }
          c->lt_events = want;
        }
      }
    }
  }
  close(ep);
}

static void run_poll(struct conn *cs) {
  struct pollfd *p = calloc((size_t)opt.conns, sizeof(*p));
  int *map = calloc((size_t)opt.conns, sizeof(*map));
  bool *want_out = calloc((size_t)opt.conns, sizeof(*want_out));
  if (p == NULL || map == NULL || want_out == NULL) {
    fail("calloc failed");
  }
  for (int i = 0; i < opt.conns; i++) {
    want_out[i] = true;
  }
  int live = opt.conns;
  int64_t deadline = now_ms() + (int64_t)opt.timeout * 1000;
  while (live > 0) {
    if (now_ms() > deadline) {
      report_progress(cs, "timeout waiting for poll events");
    }
    int n = 0;
    for (int i = 0; i < opt.conns; i++) {
      if (cs[i].fd >= 0) {
        p[n].fd = cs[i].fd;
        p[n].events = (short)(POLLIN | (want_out[i] ? POLLOUT : 0));
        p[n].revents = 0;
        map[n++] = i;
      }
    }
    int r = poll(p, (nfds_t)n, 1000);
    if (r < 0) {
      if (errno == EINTR) {
        continue;
      }
      fail("poll: %s", strerror(errno));
    }
    for (int k = 0; k < n; k++) {
      if (p[k].revents == 0) {
        continue;
      }
      if (p[k].revents & POLLNVAL) {
        fail("poll: POLLNVAL on conn %d", map[k]);
      }
      struct conn *c = &cs[map[k]];
      if (!step(c, &want_out[map[k]])) {
        finish(c);
        live--;
      }
    }
  }
  free(p);
  free(map);
  free(want_out);
}

static void run_select(struct conn *cs) {
  bool *want_out = calloc((size_t)opt.conns, sizeof(*want_out));
  if (want_out == NULL) {
    fail("calloc failed");
  }
  for (int i = 0; i < opt.conns; i++) {
    want_out[i] = true;
    if (cs[i].fd >= FD_SETSIZE) {
      fail("fd %d too large for select", cs[i].fd);
    }
  }
  int live = opt.conns;
  int64_t deadline = now_ms() + (int64_t)opt.timeout * 1000;
  while (live > 0) {
    if (now_ms() > deadline) {
      report_progress(cs, "timeout waiting for select");
    }
    fd_set r, w;
    FD_ZERO(&r);
    FD_ZERO(&w);
    int maxfd = -1;
    for (int i = 0; i < opt.conns; i++) {
      if (cs[i].fd < 0) {
        continue;
      }
      FD_SET(cs[i].fd, &r);
      if (want_out[i]) {
        FD_SET(cs[i].fd, &w);
      }
      if (cs[i].fd > maxfd) {
        maxfd = cs[i].fd;
      }
    }
    struct timeval tv = {1, 0};
    int n = select(maxfd + 1, &r, &w, NULL, &tv);
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      fail("select: %s", strerror(errno));
    }
    for (int i = 0; i < opt.conns; i++) {
      struct conn *c = &cs[i];
      if (c->fd >= 0 && (FD_ISSET(c->fd, &r) || FD_ISSET(c->fd, &w))) {
        if (!step(c, &want_out[i])) {
          finish(c);
          live--;
        }
      }
    }
  }
  free(want_out);
}

static long parse_long(const char *s, const char *what) {
  long v;
  if (!parse_count(s, &v)) {
    fail("bad %s: %s", what, s);
  }
  return v;
}

int main(int argc, char **argv) {
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (i + 1 >= argc) {
      fail("missing value for %s", a);
    }
    const char *v = argv[++i];
    if (strcmp(a, "--host") == 0) {
      opt.host = v;
    } else if (strcmp(a, "--port") == 0) {
      opt.port = (int)parse_long(v, a);
    } else if (strcmp(a, "--conns") == 0) {
      opt.conns = (int)parse_long(v, a);
    } else if (strcmp(a, "--messages") == 0) {
      opt.messages = parse_long(v, a);
    } else if (strcmp(a, "--size") == 0) {
      opt.size = (size_t)parse_long(v, a);
    } else if (strcmp(a, "--read-chunk") == 0) {
      opt.read_chunk = (size_t)parse_long(v, a);
    } else if (strcmp(a, "--timeout") == 0) {
      opt.timeout = (int)parse_long(v, a);
    } else if (strcmp(a, "--loop") == 0) {
      if (strcmp(v, "epoll-lt") == 0) {
        opt.loop = LOOP_EPOLL_LT;
      } else if (strcmp(v, "epoll-et") == 0) {
        opt.loop = LOOP_EPOLL_ET;
      } else if (strcmp(v, "poll") == 0) {
        opt.loop = LOOP_POLL;
      } else if (strcmp(v, "select") == 0) {
        opt.loop = LOOP_SELECT;
      } else {
        fail("unknown --loop %s", v);
      }
    } else {
      fail("unknown option %s", a);
    }
  }
  if (opt.port <= 0 || opt.conns <= 0 || opt.size == 0 || opt.read_chunk == 0 ||
      opt.read_chunk > 65536 || opt.messages < opt.conns) {
    fail("usage: ready_client --port P [--host H] [--conns N] [--messages N] [--size B] "
         "[--read-chunk B] [--loop epoll-lt|epoll-et|poll|select] [--timeout S]");
  }
  msgbuf = malloc(opt.size);
  struct conn *cs = calloc((size_t)opt.conns, sizeof(*cs));
  if (msgbuf == NULL || cs == NULL) {
    fail("out of memory");
  }
  int64_t t0 = now_ms();
  for (int i = 0; i < opt.conns; i++) {
    cs[i].idx = i;
    cs[i].total = opt.messages / opt.conns + (i < opt.messages % opt.conns ? 1 : 0);
    start_connect(&cs[i]);
  }
  switch (opt.loop) {
  case LOOP_EPOLL_LT:
    run_epoll(cs, false);
    break;
  case LOOP_EPOLL_ET:
    run_epoll(cs, true);
    break;
  case LOOP_POLL:
    run_poll(cs);
    break;
  case LOOP_SELECT:
    run_select(cs);
    break;
  }
  long msgs = 0;
  for (int i = 0; i < opt.conns; i++) {
    msgs += cs[i].done;
  }
  if (bytes_in != bytes_out || msgs != opt.messages) {
    fail("finished with %ld messages, %lld bytes out, %lld in", msgs, bytes_out, bytes_in);
  }
  printf("ready_client: ok conns=%d messages=%ld bytes_out=%lld bytes_in=%lld ms=%lld\n",
         opt.conns, msgs, bytes_out, bytes_in, (long long)(now_ms() - t0));
  return 0;
}

/* ready_epoll_misc.c: epoll corner cases over connections to an echo server
 * (TLS under the shim's outbound rule): EPOLLONESHOT re-armed with
 * EPOLL_CTL_MOD, user data returned intact, a TLS descriptor closed while
 * registered, TLS and plain descriptors in one set, two threads sharing one
 * set, and user data that looks like the shim's own tag.
 *
 * usage: ready_epoll_misc --port P --test NAME [--timeout S]
 * Prints "ready_epoll_misc NAME: ok" and exits 0; otherwise one line saying
 * what differed or what it waited for, and exits 1. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "progs.h"

static int port;
static const char *test_name = "?";
static int timeout_s = 30;

static void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void fail(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "ready_epoll_misc %s: FAIL: ", test_name);
  vexit_with(fmt, ap);
}

static void set_nonblock(int fd) {
  int fl = fcntl(fd, F_GETFL);
  if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) != 0) {
    fail("fcntl: %s", strerror(errno));
  }
}

/* A blocking connect to the echo server (the handshake is done when it
 * returns under the shim), then non-blocking. */
static int echo_connect(void) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) {
    fail("socket: %s", strerror(errno));
  }
  struct sockaddr_in sa;
  memset(&sa, 0, sizeof(sa));
  sa.sin_family = AF_INET;
  sa.sin_port = htons((uint16_t)port);
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
    fail("connect: %s", strerror(errno));
  }
  set_nonblock(fd);
  return fd;
}

static void write_full(int fd, const void *buf, size_t len) {
  size_t off = 0;
  int64_t end = now_ms() + timeout_s * 1000;
  while (off < len) {
    ssize_t w = write(fd, (const char *)buf + off, len - off);
    if (w < 0 && (errno == EAGAIN || errno == EINTR)) {
      if (now_ms() > end) {
        fail("timeout writing %zu bytes to fd %d", len, fd);
      }
      continue;
    }
    if (w < 0) {
      fail("write fd %d: %s", fd, strerror(errno));
    }
    off += (size_t)w;
  }
}

static void ctl(int ep, int op, int fd, uint32_t events, uint64_t data) {
  struct epoll_event ev = {.events = events, .data.u64 = data};
  if (epoll_ctl(ep, op, fd, &ev) != 0) {
    fail("epoll_ctl(op %d, fd %d): %s", op, fd, strerror(errno));
  }
}

/* epoll_wait that must return exactly one event with |data| and EPOLLIN. */
static void expect_one(int ep, uint64_t data, const char *what) {
  struct epoll_event evs[8];
  int n = epoll_wait(ep, evs, 8, timeout_s * 1000);
  if (n < 0) {
    fail("epoll_wait (%s): %s", what, strerror(errno));
  }
  if (n == 0) {
    fail("timed out after %ds waiting for an event: %s", timeout_s, what);
  }
  if (n != 1 || evs[0].data.u64 != data || !(evs[0].events & EPOLLIN)) {
    fail("%s: got %d event(s), first data 0x%llx events 0x%x; wanted one EPOLLIN with "
         "data 0x%llx",
         what, n, (unsigned long long)evs[0].data.u64, evs[0].events,
         (unsigned long long)data);
  }
}

/* epoll_wait must report nothing within |ms| (absence of an event cannot be
 * seen any other way). */
static void expect_none(int ep, int ms, const char *what) {
  struct epoll_event evs[8];
  int n = epoll_wait(ep, evs, 8, ms);
  if (n != 0) {
    fail("%s: epoll_wait returned %d (first data 0x%llx events 0x%x), wanted 0", what, n,
         n > 0 ? (unsigned long long)evs[0].data.u64 : 0ULL, n > 0 ? evs[0].events : 0);
  }
}

/* Reads exactly |len| bytes (non-blocking fd; waits with poll-free spins
 * bounded by the timeout, the data being already on its way). */
static void read_exact(int fd, char *buf, size_t len, const char *what) {
  size_t got = 0;
  int64_t end = now_ms() + timeout_s * 1000;
  while (got < len) {
    ssize_t r = read(fd, buf + got, len - got);
    if (r > 0) {
      got += (size_t)r;
      continue;
    }
    if (r == 0) {
      fail("%s: EOF after %zu of %zu bytes", what, got, len);
    }
    if (errno != EAGAIN && errno != EINTR) {
      fail("%s: read: %s", what, strerror(errno));
    }
    if (now_ms() > end) {
      fail("%s: timed out with %zu of %zu bytes", what, got, len);
    }
    struct epoll_event ev;
    int ep = epoll_create1(0);
    struct epoll_event r1 = {.events = EPOLLIN, .data.fd = fd};
    if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, fd, &r1) != 0) {
      fail("epoll setup: %s", strerror(errno));
    }
    epoll_wait(ep, &ev, 1, 1000);
    close(ep);
  }
}

static void expect_eagain(int fd, const char *what) {
  char b;
  ssize_t r = read(fd, &b, 1);
  if (r != -1 || errno != EAGAIN) {
    fail("%s: read returned %zd (%s), wanted EAGAIN", what, r, r < 0 ? strerror(errno) : "");
  }
}

/* ---- EPOLLONESHOT re-armed with EPOLL_CTL_MOD ---- */
static void test_oneshot(void) {
  int fd = echo_connect();
  int ep = epoll_create1(0);
  if (ep < 0) {
    fail("epoll_create1: %s", strerror(errno));
  }
  static int marker;
  ctl(ep, EPOLL_CTL_ADD, fd, EPOLLIN | EPOLLONESHOT, (uint64_t)(uintptr_t)&marker);
  expect_none(ep, 100, "oneshot registered, nothing sent");
  write_full(fd, "hello world", 11);
  expect_one(ep, (uint64_t)(uintptr_t)&marker, "the echo of 'hello world'");
  char b[16];
  read_exact(fd, b, 1, "first byte");
  if (b[0] != 'h') {
    fail("first byte %c", b[0]);
  }
  expect_none(ep, 200, "after the one shot fired (10 bytes still unread)");
  ctl(ep, EPOLL_CTL_MOD, fd, EPOLLIN | EPOLLONESHOT, 0x0123456789abcdefULL);
  expect_one(ep, 0x0123456789abcdefULL, "re-armed with 10 bytes buffered");
  expect_none(ep, 200, "after the re-armed shot fired");
  read_exact(fd, b, 10, "the other 10 bytes");
  if (memcmp(b, "ello world", 10) != 0) {
    fail("echo differs: %.10s", b);
  }
  expect_eagain(fd, "all read");
  ctl(ep, EPOLL_CTL_MOD, fd, EPOLLIN | EPOLLONESHOT, 42);
  expect_none(ep, 200, "re-armed with nothing to read");
  write_full(fd, "x", 1);
  expect_one(ep, 42, "the echo of 'x' after re-arming");
  read_exact(fd, b, 1, "x");
  expect_none(ep, 200, "after the third shot");
  /* Disabled registrations still count: ADD again is EEXIST. */
  struct epoll_event ev = {.events = EPOLLIN, .data.u64 = 1};
  if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) != -1 || errno != EEXIST) {
    fail("ADD of a disabled oneshot registration: wanted EEXIST, got %s",
         strerror(errno));
  }
  close(fd);
  close(ep);
}

/* epoll_wait must return at least one event, every one EPOLLIN with
 * |data| (duplicates are the business of test_nodup). */
static void expect_data(int ep, uint64_t data, const char *what) {
  struct epoll_event evs[8];
  int n = epoll_wait(ep, evs, 8, timeout_s * 1000);
  if (n <= 0) {
    fail("%s: epoll_wait returned %d (%s), wanted an event", what, n,
         n < 0 ? strerror(errno) : "timeout");
  }
  for (int i = 0; i < n; i++) {
    if (evs[i].data.u64 != data || !(evs[i].events & EPOLLIN)) {
      fail("%s: event %d of %d has data 0x%llx events 0x%x; wanted EPOLLIN with data "
           "0x%llx",
           what, i, n, (unsigned long long)evs[i].data.u64, evs[i].events,
           (unsigned long long)data);
    }
  }
}

/* ---- one epoll_wait reports a descriptor at most once ---- */
static void test_nodup(void) {
  int fd = echo_connect();
  int ep = epoll_create1(0);
  if (ep < 0) {
    fail("epoll_create1: %s", strerror(errno));
  }
  ctl(ep, EPOLL_CTL_ADD, fd, EPOLLIN, 5);
  write_full(fd, "0123456789", 10);
  expect_one(ep, 5, "the echo of 10 bytes");
  char b[10];
  read_exact(fd, b, 1, "one byte");
  /* 9 bytes are now buffered inside the shim (or in the kernel without
   * it). A level-triggered registration is reported once per call, also
   * when the kernel socket shows an edge (here: writability, at ADD). */
  ctl(ep, EPOLL_CTL_DEL, fd, 0, 0);
  ctl(ep, EPOLL_CTL_ADD, fd, EPOLLIN | EPOLLOUT, 6);
  struct epoll_event evs[8];
  int n = epoll_wait(ep, evs, 8, timeout_s * 1000);
  if (n != 1) {
    fail("epoll_wait after re-adding a level-triggered TLS descriptor with buffered "
         "plaintext returned %d events (data 0x%llx events 0x%x, data 0x%llx events 0x%x), "
         "wanted 1: the kernel reports a descriptor at most once per call",
         n, (unsigned long long)evs[0].data.u64, evs[0].events,
         (unsigned long long)evs[1].data.u64, evs[1].events);
  }
  if (evs[0].data.u64 != 6 || evs[0].events != (EPOLLIN | EPOLLOUT)) {
    fail("wanted EPOLLIN|EPOLLOUT with data 6, got events 0x%x data 0x%llx", evs[0].events,
         (unsigned long long)evs[0].data.u64);
  }
  for (int round = 0; round < 3; round++) {
    ctl(ep, EPOLL_CTL_MOD, fd, EPOLLIN, 7 + (uint64_t)round);
    n = epoll_wait(ep, evs, 8, timeout_s * 1000);
    if (n != 1) {
      fail("epoll_wait after EPOLL_CTL_MOD (round %d) returned %d events, wanted 1", round,
           n);
    }
  }
  read_exact(fd, b, 9, "the other 9 bytes");
  if (memcmp(b, "123456789", 9) != 0) {
    fail("echo differs");
  }
  close(fd);
  close(ep);
}

/* ---- user data comes back intact, for TLS and plain descriptors ---- */
static void test_userdata(void) {
  int fd = echo_connect();
  int sp[2];
  if (socketpair(AF_UNIX, SOCK_STREAM, 0, sp) != 0) {
    fail("socketpair: %s", strerror(errno));
  }
  int ep = epoll_create1(0);
  if (ep < 0) {
    fail("epoll_create1: %s", strerror(errno));
  }
  static char object[1];
  const uint64_t values[] = {(uint64_t)(uintptr_t)object, 0, 1, 0xffffffffffffffffULL,
                             0x8000000000000001ULL, 0x00007fffdeadbeefULL,
                             (uint64_t)(uint32_t)fd};
  write_full(fd, "ab", 2);
  write_full(sp[0], "ab", 2);
  ctl(ep, EPOLL_CTL_ADD, fd, EPOLLIN, 7);
  expect_one(ep, 7, "the echo");
  ctl(ep, EPOLL_CTL_DEL, fd, 0, 0);
  ctl(ep, EPOLL_CTL_ADD, sp[1], EPOLLIN, 8);
  expect_one(ep, 8, "the socketpair");
  ctl(ep, EPOLL_CTL_DEL, sp[1], 0, 0);
  ctl(ep, EPOLL_CTL_ADD, fd, EPOLLIN, 0);
  for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
    ctl(ep, EPOLL_CTL_MOD, fd, EPOLLIN, values[i]);
    expect_data(ep, values[i], "TLS registration with a new user data");
    struct epoll_event ev = {.events = EPOLLIN};
    ev.data.ptr = object;
    if (epoll_ctl(ep, EPOLL_CTL_MOD, fd, &ev) != 0) {
      fail("epoll_ctl MOD: %s", strerror(errno));
    }
    expect_data(ep, (uint64_t)(uintptr_t)object, "TLS registration with data.ptr");
  }
  /* A plain descriptor in a set that holds a TLS one (the shim's path). */
  ctl(ep, EPOLL_CTL_DEL, fd, 0, 0);
  char b[2];
  read_exact(fd, b, 2, "the echo");
  ctl(ep, EPOLL_CTL_ADD, fd, EPOLLIN, 99);
  ctl(ep, EPOLL_CTL_ADD, sp[1], EPOLLIN, 0);
  for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
    ctl(ep, EPOLL_CTL_MOD, sp[1], EPOLLIN, values[i]);
    expect_data(ep, values[i], "plain registration beside a TLS one");
  }
  close(fd);
  close(ep);
  close(sp[0]);
  close(sp[1]);
}

/* ---- user data that happens to look like the shim's own tag ---- */
static void test_tagdata(void) {
  int fd = echo_connect();
  int sp[2];
  if (socketpair(AF_UNIX, SOCK_STREAM, 0, sp) != 0) {
    fail("socketpair: %s", strerror(errno));
  }
  int ep = epoll_create1(0);
  if (ep < 0) {
    fail("epoll_create1: %s", strerror(errno));
  }
  ctl(ep, EPOLL_CTL_ADD, fd, EPOLLIN, 1);
  /* Any 64-bit value is the program's to choose, e.g. a hash. */
  const uint64_t tagged[] = {0x7153000000000000ULL | (uint32_t)sp[1],
                             0x7153000000000000ULL | (uint32_t)fd,
                             0x7153000000000000ULL | 12345u};
  write_full(sp[0], "z", 1);
  for (size_t i = 0; i < sizeof(tagged) / sizeof(tagged[0]); i++) {
    ctl(ep, i == 0 ? EPOLL_CTL_ADD : EPOLL_CTL_MOD, sp[1], EPOLLIN, tagged[i]);
    expect_one(ep, tagged[i], "a readable socketpair whose user data looks like a shim tag");
  }
  close(fd);
  close(ep);
}

/* ---- a TLS descriptor closed while registered ---- */
static void test_close(void) {
  int a = echo_connect();
  int b = echo_connect();
  int sp[2];
  if (socketpair(AF_UNIX, SOCK_STREAM, 0, sp) != 0) {
    fail("socketpair: %s", strerror(errno));
  }
  int ep = epoll_create1(0);
  if (ep < 0) {
    fail("epoll_create1: %s", strerror(errno));
  }
  ctl(ep, EPOLL_CTL_ADD, a, EPOLLIN, 100);
  ctl(ep, EPOLL_CTL_ADD, b, EPOLLIN, 200);
  ctl(ep, EPOLL_CTL_ADD, sp[1], EPOLLIN, 300);
  /* Leave plaintext buffered for |a|, so it is ready at the TLS level. */
  write_full(a, "abc", 3);
  expect_one(ep, 100, "the echo on a");
  char c[4];
  read_exact(a, c, 1, "one byte of a");
  int a_num = a;
  if (close(a) != 0) {
    fail("close(a): %s", strerror(errno));
  }
  expect_none(ep, 200, "after closing a with data buffered");
  write_full(sp[0], "s", 1);
  expect_one(ep, 300, "the socketpair after a was closed");
  read_exact(sp[1], c, 1, "socketpair byte");
  write_full(b, "b", 1);
  expect_one(ep, 200, "the echo on b after a was closed");
  read_exact(b, c, 1, "b's echo");
  struct epoll_event ev = {.events = EPOLLIN};
  if (epoll_ctl(ep, EPOLL_CTL_DEL, a_num, &ev) != -1 || errno != EBADF) {
    fail("DEL of the closed descriptor: wanted EBADF, got %s", strerror(errno));
  }
  /* The number is reused by a new connection: a fresh registration. */
  int d = echo_connect();
  if (d != a_num) {
    fail("expected the new connection to reuse descriptor %d, got %d", a_num, d);
  }
  ctl(ep, EPOLL_CTL_ADD, d, EPOLLIN, 400);
  expect_none(ep, 100, "the new connection before it has data");
  write_full(d, "dd", 2);
  expect_one(ep, 400, "the echo on the reused descriptor");
  read_exact(d, c, 2, "d's echo");
  if (memcmp(c, "dd", 2) != 0) {
    fail("d's echo differs");
  }
  close(d);
  close(b);
  close(ep);
}

/* ---- TLS and plain descriptors in one set, level- and edge-triggered ---- */
static void run_mixed(bool et) {
  enum { NTLS = 3, ROUNDS = 200 };
  int tls[NTLS];
  for (int i = 0; i < NTLS; i++) {
    tls[i] = echo_connect();
  }
  int sp[2], pp[2];
  if (socketpair(AF_UNIX, SOCK_STREAM, 0, sp) != 0 || pipe(pp) != 0) {
    fail("socketpair/pipe: %s", strerror(errno));
  }
  set_nonblock(sp[1]);
  set_nonblock(pp[0]);
  int ep = epoll_create1(0);
  if (ep < 0) {
    fail("epoll_create1: %s", strerror(errno));
  }
  uint32_t mode = EPOLLIN | (et ? EPOLLET : 0);
  int fds[NTLS + 2];
  for (int i = 0; i < NTLS; i++) {
    fds[i] = tls[i];
  }
  fds[NTLS] = sp[1];
  fds[NTLS + 1] = pp[0];
  for (int i = 0; i < NTLS + 2; i++) {
    ctl(ep, EPOLL_CTL_ADD, fds[i], mode, 1000 + (uint64_t)i);
  }
  for (int round = 0; round < ROUNDS; round++) {
    char msg[64];
    int len = snprintf(msg, sizeof(msg), "round %d", round);
    for (int i = 0; i < NTLS; i++) {
      write_full(tls[i], msg, (size_t)len);
    }
    write_full(sp[0], msg, (size_t)len);
    write_full(pp[1], msg, (size_t)len);
    int got[NTLS + 2] = {0};
    int pending = NTLS + 2;
    int64_t end = now_ms() + timeout_s * 1000;
    while (pending > 0) {
      if (now_ms() > end) {
        fail("%s round %d: timed out waiting for %d source(s)", et ? "ET" : "LT", round,
             pending);
      }
      struct epoll_event evs[8];
      int n = epoll_wait(ep, evs, 8, 1000);
      if (n < 0) {
        fail("epoll_wait: %s", strerror(errno));
      }
      for (int k = 0; k < n; k++) {
        uint64_t i = evs[k].data.u64 - 1000;
        if (i >= NTLS + 2) {
          fail("bad user data 0x%llx", (unsigned long long)evs[k].data.u64);
        }
        /* Read in 3-byte pieces until EAGAIN (ET needs it). */
        for (;;) {
          char buf[3];
          ssize_t r = read(fds[i], buf, sizeof(buf));
          if (r < 0 && errno == EAGAIN) {
            break;
          }
          if (r <= 0) {
            fail("read source %d: %s", (int)i, r == 0 ? "EOF" : strerror(errno));
          }
          if (got[i] + r > len || memcmp(buf, msg + got[i], (size_t)r) != 0) {
            fail("source %d round %d: data differs", (int)i, round);
          }
          got[i] += (int)r;
          if (got[i] == len) {
            pending--;
          }
          if (!et) {
            break; /* LT: one piece per event; the rest must be reported again */
          }
        }
      }
    }
  }
  expect_none(ep, 50, "after all rounds");
  for (int i = 0; i < NTLS; i++) {
    close(tls[i]);
  }
  close(ep);
}

static void test_mixed(void) {
  run_mixed(false);
  run_mixed(true);
}

/* ---- two threads sharing one epoll set (EPOLLONESHOT, re-armed) ---- */
enum { TH_CONNS = 8, TH_ROUNDS = 100, TH_MSG = 3000 };
struct th_conn {
  int fd;
  int round;
  size_t got;
  char msg[TH_MSG];
};
static struct th_conn th_conns[TH_CONNS];
static int th_ep;
static int th_done;
static int th_events[2];

static void th_fill(struct th_conn *c, int idx) {
  for (int i = 0; i < TH_MSG; i++) {
    c->msg[i] = (char)((idx * 31 + c->round * 7 + i) & 0xff);
  }
}

static void *th_worker(void *arg) {
  int me = (int)(intptr_t)arg;
  int64_t end = now_ms() + timeout_s * 1000;
  while (__atomic_load_n(&th_done, __ATOMIC_ACQUIRE) < TH_CONNS) {
    if (now_ms() > end) {
      fail("thread %d: timed out with %d of %d connections done", me,
           __atomic_load_n(&th_done, __ATOMIC_ACQUIRE), TH_CONNS);
    }
    struct epoll_event ev;
    int n = epoll_wait(th_ep, &ev, 1, 100);
    if (n < 0) {
      fail("epoll_wait: %s", strerror(errno));
    }
    if (n == 0) {
      continue;
    }
    th_events[me]++;
    int idx = (int)ev.data.u64;
    if (idx < 0 || idx >= TH_CONNS) {
      fail("bad user data %llu", (unsigned long long)ev.data.u64);
    }
    struct th_conn *c = &th_conns[idx];
    for (;;) {
      char buf[512];
      ssize_t r = read(c->fd, buf, sizeof(buf));
      if (r < 0 && errno == EAGAIN) {
        break;
      }
      if (r <= 0) {
        fail("conn %d: read: %s", idx, r == 0 ? "EOF" : strerror(errno));
      }
      if (c->got + (size_t)r > TH_MSG || memcmp(buf, c->msg + c->got, (size_t)r) != 0) {
        fail("conn %d round %d: data differs", idx, c->round);
      }
      c->got += (size_t)r;
      if (c->got == TH_MSG) {
        c->got = 0;
        c->round++;
        if (c->round == TH_ROUNDS) {
          __atomic_add_fetch(&th_done, 1, __ATOMIC_ACQ_REL);
          break;
        }
        th_fill(c, idx);
        write_full(c->fd, c->msg, TH_MSG);
      }
    }
    if (c->round < TH_ROUNDS) {
      ctl(th_ep, EPOLL_CTL_MOD, c->fd, EPOLLIN | EPOLLONESHOT, (uint64_t)idx);
    }
  }
  return NULL;
}

static void test_threads(void) {
  th_ep = epoll_create1(0);
  if (th_ep < 0) {
    fail("epoll_create1: %s", strerror(errno));
  }
  for (int i = 0; i < TH_CONNS; i++) {
    th_conns[i].fd = echo_connect();
    ctl(th_ep, EPOLL_CTL_ADD, th_conns[i].fd, EPOLLIN | EPOLLONESHOT, (uint64_t)i);
  }
  for (int i = 0; i < TH_CONNS; i++) {
    th_fill(&th_conns[i], i);
    write_full(th_conns[i].fd, th_conns[i].msg, TH_MSG);
  }
  pthread_t t[2];
  for (int i = 0; i < 2; i++) {
    if (pthread_create(&t[i], NULL, th_worker, (void *)(intptr_t)i) != 0) {
      fail("pthread_create failed");
    }
  }
  for (int i = 0; i < 2; i++) {
    pthread_join(t[i], NULL);
  }
  for (int i = 0; i < TH_CONNS; i++) {
    if (th_conns[i].round != TH_ROUNDS) {
      fail("conn %d finished %d rounds", i, th_conns[i].round);
    }
    close(th_conns[i].fd);
  }
  printf("ready_epoll_misc threads: events thread0=%d thread1=%d\n", th_events[0],
         th_events[1]);
}

int main(int argc, char **argv) {
  for (int i = 1; i + 1 < argc; i += 2) {
    if (strcmp(argv[i], "--port") == 0) {
      port = atoi(argv[i + 1]);
    } else if (strcmp(argv[i], "--test") == 0) {
      test_name = argv[i + 1];
    } else if (strcmp(argv[i], "--timeout") == 0) {
      timeout_s = atoi(argv[i + 1]);
    } else {
      fail("unknown option %s", argv[i]);
    }
  }
  static const struct {
    const char *name;
    void (*fn)(void);
  } tests[] = {{"oneshot", test_oneshot}, {"userdata", test_userdata},
               {"tagdata", test_tagdata}, {"nodup", test_nodup},
               {"close", test_close},
               {"mixed", test_mixed},     {"threads", test_threads}};
  for (size_t i = 0; i < sizeof(tests) / sizeof(tests[0]); i++) {
    if (strcmp(test_name, tests[i].name) == 0) {
      if (port <= 0) {
        fail("--port missing");
      }
      tests[i].fn();
      printf("ready_epoll_misc %s: ok\n", test_name);
      return 0;
    }
  }
  fail("usage: ready_epoll_misc --port P --test "
       "{oneshot,userdata,tagdata,nodup,close,mixed,threads} [--timeout S]");
}

/* ready_plain_epoll.c: a fixed epoll workload on non-TLS descriptors only
 * (a socketpair and a pipe), for counting its system calls with and without
 * the shim: --rounds N round trips, each 2 writes, 2 epoll_waits, 2 reads. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

static void fail(const char *what) {
  fprintf(stderr, "ready_plain_epoll: %s: %s\n", what, strerror(errno));
  exit(1);
}

/* One epoll_wait that must report exactly |fd| readable. */
static void expect_readable(int ep, int fd) {
  struct epoll_event ev;
  int n = epoll_wait(ep, &ev, 1, 5000);
  if (n != 1 || ev.data.fd != fd || !(ev.events & EPOLLIN)) {
    fprintf(stderr, "ready_plain_epoll: epoll_wait returned %d (fd %d), wanted fd %d\n", n,
            n == 1 ? ev.data.fd : -1, fd);
    exit(1);
  }
}

int main(int argc, char **argv) {
  long rounds = 10000;
  if (argc == 3 && strcmp(argv[1], "--rounds") == 0) {
    rounds = strtol(argv[2], NULL, 10);
  } else if (argc != 1) {
    fprintf(stderr, "usage: ready_plain_epoll [--rounds N]\n");
    return 2;
  }
  int sp[2], pp[2];
  if (socketpair(AF_UNIX, SOCK_STREAM, 0, sp) != 0) {
    fail("socketpair");
  }
  if (pipe(pp) != 0) {
    fail("pipe");
  }
  int ep = epoll_create1(0);
  if (ep < 0) {
    fail("epoll_create1");
  }
  struct epoll_event ev = {.events = EPOLLIN, .data.fd = sp[1]};
  if (epoll_ctl(ep, EPOLL_CTL_ADD, sp[1], &ev) != 0) {
    fail("epoll_ctl");
  }
  ev.data.fd = pp[0];
  if (epoll_ctl(ep, EPOLL_CTL_ADD, pp[0], &ev) != 0) {
    fail("epoll_ctl");
  }
  char c = 'x';
  for (long i = 0; i < rounds; i++) {
    if (write(sp[0], &c, 1) != 1) {
      fail("write socketpair");
    }
    expect_readable(ep, sp[1]);
    if (read(sp[1], &c, 1) != 1) {
      fail("read socketpair");
    }
    if (write(pp[1], &c, 1) != 1) {
      fail("write pipe");
    }
    expect_readable(ep, pp[0]);
    if (read(pp[0], &c, 1) != 1) {
      fail("read pipe");
    }
  }
  printf("ready_plain_epoll: ok rounds=%ld\n", rounds);
  return 0;
}

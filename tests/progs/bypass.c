/* bypass.c: one subcommand per way a program can move bytes on a TCP
 * connection (test_bypass.py). Each writes MARKER to an echo peer at
 * HOST:PORT through the path it names and reads the echo back (through the
 * path, for the receive side), printing one `key=value` line per step, so
 * the test can compare a run under the shim with a control run without it.
 *
 *   bypass CASE HOST PORT MARKER [NAME...]
 *
 * A step that fails prints `key=ERRNAME`; the program exits 0 once it has
 * run its steps (the test judges them), 2 on a usage error. */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "progs.h"

#ifndef IPPROTO_MPTCP
#define IPPROTO_MPTCP 262
#endif

static const char *host, *marker;
static int port;
static size_t mlen;

static void step(const char *key, long r) {
  if (r < 0) {
    printf("%s=%s\n", key, errname(errno));
  } else {
    printf("%s=%ld\n", key, r);
  }
  fflush(stdout);
}

/* The peer's address in |family| (AF_INET6: ::ffff:a.b.c.d for an IPv4
 * HOST). */
static socklen_t peer_addr(int family, struct sockaddr_storage *ss) {
  memset(ss, 0, sizeof(*ss));
  if (family == AF_INET) {
    struct sockaddr_in *in = (struct sockaddr_in *)ss;
    in->sin_family = AF_INET;
    in->sin_port = htons((uint16_t)port);
    inet_pton(AF_INET, host, &in->sin_addr);
    return sizeof(*in);
  }
  struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
  in6->sin6_family = AF_INET6;
  in6->sin6_port = htons((uint16_t)port);
  if (inet_pton(AF_INET6, host, &in6->sin6_addr) != 1) {
    char mapped[80];
    snprintf(mapped, sizeof(mapped), "::ffff:%s", host);
    inet_pton(AF_INET6, mapped, &in6->sin6_addr);
  }
  return sizeof(*in6);
}

static int conn_with(int family, int proto, socklen_t len_override) {
  int fd = socket(family, SOCK_STREAM, proto);
  if (fd < 0) {
    step("socket", -1);
    exit(0);
  }
  struct sockaddr_storage ss;
  socklen_t len = peer_addr(family, &ss);
  if (len_override != 0) {
    len = len_override;
  }
  int r = connect(fd, (struct sockaddr *)&ss, len);
  step("connect", r);
  if (r != 0) {
    exit(0);
  }
  return fd;
}

static int conn(void) { return conn_with(AF_INET, 0, 0); }

/* Reads |len| bytes with read(), at most 10 s. */
static ssize_t read_n(int fd, char *buf, size_t len) {
  size_t got = 0;
  int64_t deadline = now_ms() + 10000;
  while (got < len) {
    struct pollfd p = {.fd = fd, .events = POLLIN};
    int left = (int)(deadline - now_ms());
    if (left <= 0 || poll(&p, 1, left) <= 0) {
      errno = ETIMEDOUT;
      return got > 0 ? (ssize_t)got : -1;
    }
    ssize_t n = read(fd, buf + got, len - got);
    if (n <= 0) {
      return n < 0 && got == 0 ? -1 : (ssize_t)got;
    }
    got += (size_t)n;
  }
  return (ssize_t)got;
}

static void report_echo(const char *buf, ssize_t n) {
  bool ok = n == (ssize_t)mlen && memcmp(buf, marker, mlen) == 0;
  printf("echo=%s\n", ok ? "ok" : "bad");
  fflush(stdout);
}

/* The echo of MARKER, read with plain read(). */
static void echo_read(int fd) {
  char buf[4096];
  ssize_t n = read_n(fd, buf, mlen);
  report_echo(buf, n);
}

static void write_all(int fd) { step("write", write(fd, marker, mlen)); }

/* ---- the send side ---- */

static void case_sendmmsg(void) {
  int fd = conn();
  size_t half = mlen / 2;
  struct iovec iov[2] = {{(void *)marker, half},
                         {(void *)(marker + half), mlen - half}};
  struct mmsghdr v[2];
  memset(v, 0, sizeof(v));
  v[0].msg_hdr.msg_iov = &iov[0];
  v[0].msg_hdr.msg_iovlen = 1;
  v[1].msg_hdr.msg_iov = &iov[1];
  v[1].msg_hdr.msg_iovlen = 1;
  int r = sendmmsg(fd, v, 2, 0);
  step("sendmmsg", r);
  if (r == 2) {
    printf("msg_len=%u,%u\n", v[0].msg_len, v[1].msg_len);
  }
  echo_read(fd);
}

static void case_pwritev2(void) {
  int fd = conn();
  struct iovec iov = {(void *)marker, mlen};
  step("pwritev2_at_0", pwritev2(fd, &iov, 1, 0, 0)); /* ESPIPE */
  step("pwritev2", pwritev2(fd, &iov, 1, -1, 0));
  echo_read(fd);
}

static void case_pio(void) {
  int fd = conn();
  struct iovec iov = {(void *)"secret-pwrite", 13};
  char b[16];
  struct iovec riov = {b, sizeof(b)};
  step("pwrite", pwrite(fd, "secret-pwrite", 13, 0));
  step("pwrite64", pwrite64(fd, "secret-pwrite", 13, 0));
  step("pwritev", pwritev(fd, &iov, 1, 0));
  step("pread", pread(fd, b, sizeof(b), 0));
  step("preadv", preadv(fd, &riov, 1, 0));
  write_all(fd);
  echo_read(fd);
}

static void case_splice_in(void) {
  int fd = conn();
  int p[2];
  if (pipe(p) != 0) {
    step("pipe", -1);
    return;
  }
  /* An empty pipe under SPLICE_F_NONBLOCK: EAGAIN, nothing taken. */
  step("splice_empty", splice(p[0], NULL, fd, NULL, 4096, SPLICE_F_NONBLOCK));
  step("pipe_write", write(p[1], marker, mlen));
  size_t moved = 0;
  while (moved < mlen) {
    ssize_t n = splice(p[0], NULL, fd, NULL, mlen - moved, SPLICE_F_MORE);
    if (n <= 0) {
      step("splice", n < 0 ? -1 : 0);
      return;
    }
    moved += (size_t)n;
  }
  step("splice", (long)moved);
  echo_read(fd);
}

static void case_vmsplice(void) {
  int fd = conn();
  int p[2];
  if (pipe(p) != 0) {
    step("pipe", -1);
    return;
  }
  /* Pages of our own memory go into the pipe, then on to the socket. */
  char *page = mmap(NULL, 4096, PROT_READ | PROT_WRITE,
                    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  memcpy(page, marker, mlen);
  struct iovec iov = {page, mlen};
  step("vmsplice", vmsplice(p[1], &iov, 1, 0));
  step("splice", splice(p[0], NULL, fd, NULL, mlen, 0));
  echo_read(fd);
}

static void case_sendto_fastopen(bool use_sendmsg) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_storage ss;
  socklen_t len = peer_addr(AF_INET, &ss);
  ssize_t r;
  if (use_sendmsg) {
    struct iovec iov = {(void *)marker, mlen};
    struct msghdr m = {.msg_name = &ss, .msg_namelen = len, .msg_iov = &iov,
                       .msg_iovlen = 1};
    r = sendmsg(fd, &m, MSG_FASTOPEN);
    step("sendmsg", r);
  } else {
    r = sendto(fd, marker, mlen, MSG_FASTOPEN, (struct sockaddr *)&ss, len);
    step("sendto", r);
  }
  if (r > 0) {
    echo_read(fd);
  }
}

static void case_fastopen_connect(void) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  int one = 1;
  step("setsockopt",
       setsockopt(fd, IPPROTO_TCP, TCP_FASTOPEN_CONNECT, &one, sizeof(one)));
  struct sockaddr_storage ss;
  socklen_t len = peer_addr(AF_INET, &ss);
  step("connect", connect(fd, (struct sockaddr *)&ss, len));
  write_all(fd);
  echo_read(fd);
}

static void case_family(int family, int proto, socklen_t len) {
  int fd = conn_with(family, proto, len);
  write_all(fd);
  echo_read(fd);
}

/* ---- the receive side ---- */

static void case_recvmmsg(void) {
  int fd = conn();
  write_all(fd);
  char buf[4096];
  size_t got = 0;
  int64_t deadline = now_ms() + 10000;
  while (got < mlen && now_ms() < deadline) {
    struct pollfd p = {.fd = fd, .events = POLLIN};
    poll(&p, 1, 1000);
    struct iovec iov[2] = {{buf + got, 3}, {buf + got + 3, sizeof(buf) - got - 3}};
    struct mmsghdr v[2];
    memset(v, 0, sizeof(v));
    v[0].msg_hdr.msg_iov = &iov[0];
    v[0].msg_hdr.msg_iovlen = 1;
    v[1].msg_hdr.msg_iov = &iov[1];
    v[1].msg_hdr.msg_iovlen = 1;
    int r = recvmmsg(fd, v, 2, MSG_WAITFORONE, NULL);
    if (r < 0 && errno == EAGAIN) {
      continue;
    }
    if (r <= 0) {
      step("recvmmsg", r);
      return;
    }
    size_t n = v[0].msg_len;
    if (r == 2) {
      /* The second message's bytes follow the first one's three. */
      memmove(buf + got + n, buf + got + 3, v[1].msg_len);
      n += v[1].msg_len;
    }
    got += n;
  }
  step("recvmmsg", (long)got);
  report_echo(buf, (ssize_t)got);
}

static void case_preadv2(void) {
  int fd = conn();
  write_all(fd);
  char buf[4096];
  struct iovec iov = {buf, sizeof(buf)};
  step("preadv2_at_0", preadv2(fd, &iov, 1, 0, 0)); /* ESPIPE */
  size_t got = 0;
  while (got < mlen) {
    struct iovec part = {buf + got, sizeof(buf) - got};
    ssize_t n = preadv2(fd, &part, 1, -1, 0);
    if (n <= 0) {
      break;
    }
    got += (size_t)n;
  }
  step("preadv2", (long)got);
  report_echo(buf, (ssize_t)got);
}

static void case_splice_out(void) {
  int fd = conn();
  write_all(fd);
  int p[2];
  if (pipe(p) != 0) {
    step("pipe", -1);
    return;
  }
  size_t moved = 0;
  while (moved < mlen) {
    ssize_t n = splice(fd, NULL, p[1], NULL, mlen - moved, 0);
    if (n <= 0) {
      break;
    }
    moved += (size_t)n;
  }
  step("splice", (long)moved);
  char buf[4096];
  ssize_t n = read(p[0], buf, moved);
  report_echo(buf, n);
}

/* ---- calls that must not touch a TLS socket ---- */

static void case_not_socket_calls(void) {
  int fd = conn();
  char path[] = "/tmp/bypass-XXXXXX";
  int f = mkstemp(path);
  unlink(path);
  if (write(f, "secret-cfr", 10) != 10) {
    step("file", -1);
  }
  off64_t off = 0;
  step("copy_file_range", copy_file_range(f, &off, fd, NULL, 10, 0));
  int p[2];
  if (pipe(p) != 0 || write(p[1], "secret-tee", 10) != 10) {
    step("pipe", -1);
  }
  step("tee", tee(p[0], fd, 10, SPLICE_F_NONBLOCK));
  write_all(fd);
  echo_read(fd);
}

/* ---- sessions that a failed call or allocation must not lose ---- */

static void case_dup3_einval(void) {
  int fd = conn();
  int fd2 = dup(fd);
  step("dup", fd2);
  step("dup3_flags", dup3(fd, fd2, O_NONBLOCK)); /* EINVAL */
  step("dup3_same", dup3(fd2, fd2, 0));          /* EINVAL */
  close(fd);
  step("write", write(fd2, marker, mlen));
  echo_read(fd2);
}

static void case_dup_fail(void) {
  int fd = conn();
  /* Under TLSSHIM_TEST_FAIL_FDTABLE=2 every second table entry fails: the
   * connect's (1) is made, the dup's (2) not, F_DUPFD's (3) is, and
   * F_DUPFD_CLOEXEC's (4) not. */
  step("dup", dup(fd));
  int d = fcntl(fd, F_DUPFD, 10);
  step("fcntl_dupfd", d);
  step("fcntl_dupfd_cloexec", fcntl(fd, F_DUPFD_CLOEXEC, 10));
  close(fd);
  step("write", write(d, marker, mlen));
  echo_read(d);
}

static void case_connect_fail(void) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_storage ss;
  socklen_t len = peer_addr(AF_INET, &ss);
  step("connect", connect(fd, (struct sockaddr *)&ss, len));
  step("write", write(fd, marker, mlen));
}

/* close_range/closefrom end the session: the number, reused for a pipe,
 * is a plain pipe. */
static void case_close_range(bool use_closefrom) {
  int fd = conn();
  write_all(fd);
  echo_read(fd);
  if (use_closefrom) {
    closefrom(fd);
    step("closefrom", 0);
  } else {
    step("close_range", close_range((unsigned)fd, (unsigned)fd, 0));
  }
  int p[2];
  if (pipe(p) != 0) {
    step("pipe", -1);
    return;
  }
  printf("reused=%s\n", p[0] == fd || p[1] == fd ? "yes" : "no");
  step("pipe_write", write(p[1], "plain", 5));
  char b[8];
  ssize_t n = read(p[0], b, sizeof(b));
  printf("pipe=%s\n", n == 5 && memcmp(b, "plain", 5) == 0 ? "ok" : "bad");
}

/* ---- names ---- */

static void resolve(const char *name) {
  struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_STREAM};
  struct addrinfo *res = NULL;
  int r = getaddrinfo(name, NULL, &hints, &res);
  printf("resolve_%s=%s\n", name, r == 0 ? "ok" : gai_strerror(r));
  if (res != NULL) {
    freeaddrinfo(res);
  }
}

static void case_names(int argc, char **argv) {
  for (int i = 5; i < argc; i++) {
    resolve(argv[i]);
  }
  case_family(AF_INET, 0, 0);
}

int main(int argc, char **argv) {
  if (argc < 5) {
    fprintf(stderr, "usage: bypass CASE HOST PORT MARKER [NAME...]\n");
    return 2;
  }
  const char *c = argv[1];
  host = argv[2];
  port = atoi(argv[3]);
  marker = argv[4];
  mlen = strlen(marker);
  signal(SIGPIPE, SIG_IGN);
  if (strcmp(c, "sendmmsg") == 0) {
    case_sendmmsg();
  } else if (strcmp(c, "recvmmsg") == 0) {
    case_recvmmsg();
  } else if (strcmp(c, "pwritev2") == 0) {
    case_pwritev2();
  } else if (strcmp(c, "preadv2") == 0) {
    case_preadv2();
  } else if (strcmp(c, "pio") == 0) {
    case_pio();
  } else if (strcmp(c, "splice-in") == 0) {
    case_splice_in();
  } else if (strcmp(c, "splice-out") == 0) {
    case_splice_out();
  } else if (strcmp(c, "vmsplice") == 0) {
    case_vmsplice();
  } else if (strcmp(c, "not-socket-calls") == 0) {
    case_not_socket_calls();
  } else if (strcmp(c, "sendto-fastopen") == 0) {
    case_sendto_fastopen(false);
  } else if (strcmp(c, "sendmsg-name") == 0) {
    case_sendto_fastopen(true);
  } else if (strcmp(c, "fastopen-connect") == 0) {
    case_fastopen_connect();
  } else if (strcmp(c, "mptcp") == 0) {
    case_family(AF_INET, IPPROTO_MPTCP, 0);
  } else if (strcmp(c, "ipv6-len24") == 0) {
    case_family(AF_INET6, 0, 24);
  } else if (strcmp(c, "v4mapped") == 0) {
    case_family(AF_INET6, 0, 0);
  } else if (strcmp(c, "plain") == 0) {
    case_family(AF_INET, 0, 0);
  } else if (strcmp(c, "dup3-einval") == 0) {
    case_dup3_einval();
  } else if (strcmp(c, "dup-fail") == 0) {
    case_dup_fail();
  } else if (strcmp(c, "connect-fail") == 0) {
    case_connect_fail();
  } else if (strcmp(c, "close-range") == 0) {
    case_close_range(false);
  } else if (strcmp(c, "closefrom") == 0) {
    case_close_range(true);
  } else if (strcmp(c, "names") == 0) {
    case_names(argc, argv);
  } else {
    fprintf(stderr, "bypass: unknown case %s\n", c);
    return 2;
  }
  return 0;
}

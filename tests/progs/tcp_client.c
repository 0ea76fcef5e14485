/* tcp_client.c: a plain TCP echo client (no TLS inside) that sends a
 * deterministic stream with one of several I/O styles and checks the echo. */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "progs.h"

/* ---- SHA-256 (FIPS 180-4), self-contained ---- */

struct sha256 {
  uint32_t h[8];
  uint64_t len;
  uint8_t buf[64];
  size_t fill;
};

static const uint32_t sha256_k[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1,
    0x923f82a4, 0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3,
    0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786,
    0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147,
    0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13,
    0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
    0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a,
    0x5b9cca4f, 0x682e6ff3, 0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208,
    0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};

static uint32_t ror32(uint32_t x, int n) { return (x >> n) | (x << (32 - n)); }

static void sha256_init(struct sha256 *s) {
  static const uint32_t iv[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372,
                                 0xa54ff53a, 0x510e527f, 0x9b05688c,
                                 0x1f83d9ab, 0x5be0cd19};
  memcpy(s->h, iv, sizeof(iv));
  s->len = 0;
  s->fill = 0;
}

static void sha256_block(struct sha256 *s, const uint8_t *p) {
  uint32_t w[64];
  for (int i = 0; i < 16; i++) {
    w[i] = ((uint32_t)p[4 * i] << 24) | ((uint32_t)p[4 * i + 1] << 16) |
           ((uint32_t)p[4 * i + 2] << 8) | p[4 * i + 3];
  }
  for (int i = 16; i < 64; i++) {
    uint32_t s0 = ror32(w[i - 15], 7) ^ ror32(w[i - 15], 18) ^ (w[i - 15] >> 3);
    uint32_t s1 = ror32(w[i - 2], 17) ^ ror32(w[i - 2], 19) ^ (w[i - 2] >> 10);
    w[i] = w[i - 16] + s0 + w[i - 7] + s1;
  }
  uint32_t a = s->h[0], b = s->h[1], c = s->h[2], d = s->h[3];
  uint32_t e = s->h[4], f = s->h[5], g = s->h[6], h = s->h[7];
  for (int i = 0; i < 64; i++) {
    uint32_t t1 = h + (ror32(e, 6) ^ ror32(e, 11) ^ ror32(e, 25)) +
                  ((e & f) ^ (~e & g)) + sha256_k[i] + w[i];
    uint32_t t2 = (ror32(a, 2) ^ ror32(a, 13) ^ ror32(a, 22)) +
                  ((a & b) ^ (a & c) ^ (b & c));
    h = g;
    g = f;
    f = e;
    e = d + t1;
    d = c;
    c = b;
    b = a;
    a = t1 + t2;
  }
  s->h[0] += a;
  s->h[1] += b;
  s->h[2] += c;
  s->h[3] += d;
  s->h[4] += e;
  s->h[5] += f;
  s->h[6] += g;
  s->h[7] += h;
}

static void sha256_update(struct sha256 *s, const void *data, size_t n) {
  const uint8_t *p = data;
  s->len += n;
  if (s->fill > 0) {
    size_t take = 64 - s->fill < n ? 64 - s->fill : n;
    memcpy(s->buf + s->fill, p, take);
    s->fill += take;
    p += take;
    n -= take;
    if (s->fill == 64) {
      sha256_block(s, s->buf);
      s->fill = 0;
    }
  }
  while (n >= 64) {
    sha256_block(s, p);
    p += 64;
    n -= 64;
  }
  if (n > 0) {
    memcpy(s->buf, p, n);
    s->fill = n;
  }
}

static void sha256_hex(struct sha256 *s, char out[65]) {
  uint64_t bits = s->len * 8;
  uint8_t pad = 0x80;
  sha256_update(s, &pad, 1);
  pad = 0;
  while (s->fill != 56) {
    sha256_update(s, &pad, 1);
  }
  uint8_t lenb[8];
  for (int i = 0; i < 8; i++) {
    lenb[i] = (uint8_t)(bits >> (56 - 8 * i));
  }
  sha256_update(s, lenb, 8);
  for (int i = 0; i < 8; i++) {
    snprintf(out + 8 * i, 9, "%08x", s->h[i]);
  }
  out[64] = '\0';
}

/* ---- options ---- */

enum style { STYLE_RW, STYLE_SENDRECV, STYLE_IOV, STYLE_MSG, STYLE_SENDFILE,
             STYLE_THREADS2 };

static struct {
  const char *host;
  const char *port;
  enum style style;
  uint64_t bytes;
  int conns;
  int threads;
  size_t chunk;
  int sndbuf;
  bool nonblock;
  const char *expect_error;
  int timeout;
} opt = {NULL, NULL, STYLE_RW, 1 << 20, 1, 1, 16384, 0, false, NULL, 120};

static pthread_mutex_t out_lock = PTHREAD_MUTEX_INITIALIZER;

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fputs("tcp_client: ", stderr);
  vexit_with(fmt, ap);
}

static void on_alarm(int sig) {
  static const char msg[] = "tcp_client: timeout: gave up (alarm)\n";
  ssize_t r = write(2, msg, sizeof(msg) - 1);
  (void)r;
  (void)sig;
  _exit(3);
}

static void usage(void) {
  fprintf(stderr,
          "usage: tcp_client --host H --port P --style "
          "{rw,sendrecv,iov,msg,sendfile,threads2} --bytes N [--conns K] "
          "[--threads T] [--chunk N] [--sndbuf N] [--nonblock] "
          "[--expect-error ERRNO_NAME] [--timeout S]\n");
  exit(2);
}

/* ---- the stream: xorshift64*, seeded per connection ---- */

struct gen {
  uint64_t state;
  uint8_t block[8];
  int used;
};

static void gen_init(struct gen *g, int conn) {
  g->state = 0x9e3779b97f4a7c15ULL ^ ((uint64_t)conn * 0x100000001b3ULL + 1);
  g->used = 8;
}

static void gen_fill(struct gen *g, uint8_t *p, size_t n) {
  for (size_t i = 0; i < n; i++) {
    if (g->used == 8) {
      g->state ^= g->state >> 12;
      g->state ^= g->state << 25;
      g->state ^= g->state >> 27;
      uint64_t v = g->state * 0x2545f4914f6cdd1dULL;
      memcpy(g->block, &v, 8);
      g->used = 0;
    }
    p[i] = g->block[g->used++];
  }
}

/* ---- one connection ---- */

struct conn {
  int index;
  int fd;
  uint64_t sent;
  uint64_t received;
  struct sha256 out_hash;
  struct sha256 in_hash;
  struct gen gen;
  uint8_t *sendbuf;    /* pending bytes not yet written */
  size_t send_off;
  size_t send_len;
  uint8_t *recvbuf;
  uint64_t iter;
  int file_fd;         /* sendfile style */
  off_t file_off;
  char err[256];
  int err_errno;       /* errno of the first failure, 0 if none */
};

static void conn_fail(struct conn *c, int e, const char *what) {
  if (c->err_errno == 0 && c->err[0] == '\0') {
    c->err_errno = e;
    snprintf(c->err, sizeof(c->err), "conn %d: %s: %s (%s)", c->index, what,
             e != 0 ? errname(e) : "-", e != 0 ? strerror(e) : "protocol");
  }
}

/* Connects; returns 0 or fills c->err. */
static int do_connect(struct conn *c) {
  struct addrinfo hints, *res = NULL;
  memset(&hints, 0, sizeof(hints));
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  int rc = getaddrinfo(opt.host, opt.port, &hints, &res);
  if (rc != 0) {
    snprintf(c->err, sizeof(c->err), "getaddrinfo %s: %s", opt.host,
             gai_strerror(rc));
    return -1;
  }
  int last = 0;
  for (struct addrinfo *ai = res; ai != NULL; ai = ai->ai_next) {
    int fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
    if (fd < 0) {
      last = errno;
      continue;
    }
    if (opt.sndbuf > 0 &&
        setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &opt.sndbuf, sizeof(opt.sndbuf)) != 0) {
      last = errno;
      close(fd);
      continue;
    }
    if (opt.nonblock) {
      int fl = fcntl(fd, F_GETFL);
      if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) != 0) {
        last = errno;
        close(fd);
        continue;
      }
      if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
        if (errno != EINPROGRESS) {
          last = errno;
          close(fd);
          continue;
        }
        struct pollfd p = {fd, POLLOUT, 0};
        int pr;
        do {
          pr = poll(&p, 1, opt.timeout * 1000);
        } while (pr < 0 && errno == EINTR);
        if (pr <= 0) {
          last = pr == 0 ? ETIMEDOUT : errno;
          close(fd);
          continue;
        }
        int soerr = 0;
        socklen_t sl = sizeof(soerr);
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) != 0) {
          last = errno;
          close(fd);
          continue;
        }
        if (soerr != 0) {
          last = soerr;
          close(fd);
          continue;
        }
      }
    } else if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
      last = errno;
      close(fd);
      continue;
    }
    c->fd = fd;
    freeaddrinfo(res);
    return 0;
  }
  freeaddrinfo(res);
  conn_fail(c, last, "connect");
  return -1;
}

/* Refills c->sendbuf with up to one chunk of the stream. */
static void next_chunk(struct conn *c) {
  uint64_t left = opt.bytes - c->sent;
  size_t n = left < opt.chunk ? (size_t)left : opt.chunk;
  gen_fill(&c->gen, c->sendbuf, n);
  sha256_update(&c->out_hash, c->sendbuf, n);
  c->send_off = 0;
  c->send_len = n;
}

/* Writes some pending bytes with the chosen style. Returns bytes or -errno. */
static ssize_t style_write(struct conn *c) {
  uint8_t *p = c->sendbuf + c->send_off;
  size_t n = c->send_len - c->send_off;
  ssize_t w;
  switch (opt.style) {
    case STYLE_SENDRECV:
      w = send(c->fd, p, n, MSG_NOSIGNAL);
      break;
    case STYLE_IOV: {
      struct iovec iov[64];
      int cnt = 0;
      size_t off = 0;
      while (cnt < 64 && off < n) {
        size_t len = n - off < 100 ? n - off : 100;
        iov[cnt].iov_base = p + off;
        iov[cnt].iov_len = len;
        off += len;
        cnt++;
      }
      w = writev(c->fd, iov, cnt);
      break;
    }
    case STYLE_MSG: {
      /* Uneven pieces: 1, 7, 100, 1000, rest. */
      static const size_t sizes[] = {1, 7, 100, 1000};
      struct iovec iov[5];
      int cnt = 0;
      size_t off = 0;
      for (int i = 0; i < 4 && off < n; i++) {
        size_t len = n - off < sizes[i] ? n - off : sizes[i];
        iov[cnt].iov_base = p + off;
        iov[cnt].iov_len = len;
        off += len;
        cnt++;
      }
      if (off < n) {
        iov[cnt].iov_base = p + off;
        iov[cnt].iov_len = n - off;
        cnt++;
      }
      struct msghdr m;
      memset(&m, 0, sizeof(m));
      m.msg_iov = iov;
      m.msg_iovlen = cnt;
      w = sendmsg(c->fd, &m, MSG_NOSIGNAL);
      break;
    }
    case STYLE_SENDFILE: {
      off_t before = c->file_off;
      w = sendfile(c->fd, c->file_fd, &c->file_off, n);
      if (w >= 0 && c->file_off != before + w) {
        errno = EINVAL;
        w = -1;
      }
      break;
    }
    default:
      w = write(c->fd, p, n);
      break;
  }
  if (w < 0) {
    return -errno;
  }
  c->send_off += (size_t)w;
  c->sent += (uint64_t)w;
  return w;
}

/* Reads some echoed bytes with the chosen style. Returns bytes, 0 at EOF,
 * or -errno. |want| bytes are known to be in flight. */
static ssize_t style_read(struct conn *c, size_t want) {
  size_t cap = opt.chunk;
  uint8_t *p = c->recvbuf;
  ssize_t r;
  c->iter++;
  switch (opt.style) {
    case STYLE_SENDRECV:
      if (c->iter % 3 == 0) {
        /* MSG_PEEK, then read and compare the same bytes. */
        r = recv(c->fd, p, cap, MSG_PEEK);
        if (r > 0) {
          uint8_t *q = p + cap;
          ssize_t r2 = read(c->fd, q, (size_t)r);
          if (r2 < 0) {
            return -errno;
          }
          if (r2 == 0 || memcmp(p, q, (size_t)r2) != 0) {
            conn_fail(c, 0, "MSG_PEEK data differs from the data then read");
            return -EBADMSG;
          }
          memmove(p, q, (size_t)r2);
          r = r2;
        }
      } else if (c->iter % 3 == 1 && !opt.nonblock) {
        size_t n = want < cap ? want : cap;
        r = recv(c->fd, p, n, MSG_WAITALL);
        if (r >= 0 && (size_t)r != n && r != 0) {
          conn_fail(c, 0, "MSG_WAITALL returned a short read");
          return -EBADMSG;
        }
      } else {
        r = recv(c->fd, p, cap, 0);
      }
      break;
    case STYLE_IOV: {
      struct iovec iov[64];
      size_t n = cap < 6400 ? cap : 6400;
      int cnt = 0;
      for (size_t off = 0; off < n; off += 100) {
        iov[cnt].iov_base = p + off;
        iov[cnt].iov_len = n - off < 100 ? n - off : 100;
        cnt++;
      }
      r = readv(c->fd, iov, cnt);
      break;
    }
    case STYLE_MSG: {
      struct iovec iov[3];
      size_t a = cap / 4, b = cap / 2;
      iov[0].iov_base = p;
      iov[0].iov_len = a;
      iov[1].iov_base = p + a;
      iov[1].iov_len = b - a;
      iov[2].iov_base = p + b;
      iov[2].iov_len = cap - b;
      struct msghdr m;
      memset(&m, 0, sizeof(m));
      m.msg_iov = iov;
      m.msg_iovlen = 3;
      r = recvmsg(c->fd, &m, 0);
      break;
    }
    default:
      r = read(c->fd, p, cap);
      break;
  }
  if (r < 0) {
    return -errno;
  }
  if (r > 0) {
    sha256_update(&c->in_hash, p, (size_t)r);
    c->received += (uint64_t)r;
    if (c->received > opt.bytes) {
      conn_fail(c, 0, "received more bytes than were sent");
      return -EBADMSG;
    }
  }
  return r;
}

static int wait_fd(int fd, short events) {
  struct pollfd p = {fd, events, 0};
  int r;
  do {
    r = poll(&p, 1, opt.timeout * 1000);
  } while (r < 0 && errno == EINTR);
  if (r == 0) {
    return -ETIMEDOUT;
  }
  return r < 0 ? -errno : 0;
}

/* Lock-step with a window: keep at most |window| bytes in flight, so a
 * blocking echo never deadlocks on full socket buffers. */
static void run_pipelined(struct conn *c) {
  const uint64_t window = 4 * (uint64_t)opt.chunk;
  while (c->received < opt.bytes) {
    bool can_send = c->sent < opt.bytes && c->sent - c->received < window;
    if (can_send && c->send_off == c->send_len) {
      next_chunk(c);
    }
    if (opt.nonblock) {
      short ev = POLLIN | (can_send ? POLLOUT : 0);
      struct pollfd p = {c->fd, ev, 0};
      int pr;
      do {
        pr = poll(&p, 1, opt.timeout * 1000);
      } while (pr < 0 && errno == EINTR);
      if (pr <= 0) {
        conn_fail(c, pr == 0 ? ETIMEDOUT : errno, "poll");
        return;
      }
      if ((p.revents & (POLLOUT | POLLERR | POLLHUP)) && can_send) {
        ssize_t w = style_write(c);
        if (w < 0 && w != -EAGAIN) {
          conn_fail(c, (int)-w, "write");
          return;
        }
      }
      if (p.revents & (POLLIN | POLLERR | POLLHUP)) {
        ssize_t r = style_read(c, (size_t)(c->sent - c->received));
        if (r == 0) {
          conn_fail(c, 0, "read: unexpected EOF");
          return;
        }
        if (r < 0 && r != -EAGAIN) {
          conn_fail(c, (int)-r, "read");
          return;
        }
      }
      continue;
    }
    if (can_send) {
      ssize_t w = style_write(c);
      if (w < 0) {
        conn_fail(c, (int)-w, "write");
        return;
      }
      continue;
    }
    ssize_t r = style_read(c, (size_t)(c->sent - c->received));
    if (r == 0) {
      conn_fail(c, 0, "read: unexpected EOF");
      return;
    }
    if (r < 0) {
      conn_fail(c, (int)-r, "read");
      return;
    }
  }
}

static void *writer_main(void *arg) {
  struct conn *c = arg;
  while (c->sent < opt.bytes) {
    if (c->send_off == c->send_len) {
      next_chunk(c);
    }
    ssize_t w = write(c->fd, c->sendbuf + c->send_off, c->send_len - c->send_off);
    if (w < 0) {
      if (errno == EAGAIN && wait_fd(c->fd, POLLOUT) == 0) {
        continue;
      }
      conn_fail(c, errno, "write (writer thread)");
      return NULL;
    }
    c->send_off += (size_t)w;
    c->sent += (uint64_t)w;
  }
  return NULL;
}

/* One reader thread (this one) and one writer thread on the same socket. */
static void run_threads2(struct conn *c) {
  pthread_t t;
  int rc = pthread_create(&t, NULL, writer_main, c);
  if (rc != 0) {
    conn_fail(c, rc, "pthread_create");
    return;
  }
  while (c->received < opt.bytes) {
    ssize_t r = read(c->fd, c->recvbuf, opt.chunk);
    if (r < 0 && errno == EAGAIN) {
      int e = wait_fd(c->fd, POLLIN);
      if (e != 0) {
        conn_fail(c, -e, "poll (reader thread)");
        break;
      }
      continue;
    }
    if (r <= 0) {
      conn_fail(c, r == 0 ? 0 : errno, r == 0 ? "read: unexpected EOF" : "read");
      /* Unblock the writer. */
      shutdown(c->fd, SHUT_RDWR);
      break;
    }
    sha256_update(&c->in_hash, c->recvbuf, (size_t)r);
    c->received += (uint64_t)r;
  }
  pthread_join(t, NULL);
}

static int make_stream_file(struct conn *c) {
  char path[] = "/tmp/tcp_client_sendfile_XXXXXX";
  int fd = mkstemp(path);
  if (fd < 0) {
    conn_fail(c, errno, "mkstemp");
    return -1;
  }
  if (unlink(path) != 0) {
    conn_fail(c, errno, "unlink");
    close(fd);
    return -1;
  }
  struct gen g;
  gen_init(&g, c->index);
  uint64_t left = opt.bytes;
  while (left > 0) {
    size_t n = left < opt.chunk ? (size_t)left : opt.chunk;
    gen_fill(&g, c->recvbuf, n);
    size_t off = 0;
    while (off < n) {
      ssize_t w = write(fd, c->recvbuf + off, n - off);
      if (w < 0) {
        conn_fail(c, errno, "write temp file");
        close(fd);
        return -1;
      }
      off += (size_t)w;
    }
    left -= n;
  }
  c->file_fd = fd;
  c->file_off = 0;
  return 0;
}

/* Half-close and expect the server's EOF after the echo. */
static void finish(struct conn *c) {
  if (shutdown(c->fd, SHUT_WR) != 0) {
    conn_fail(c, errno, "shutdown(SHUT_WR)");
    return;
  }
  for (;;) {
    ssize_t r = read(c->fd, c->recvbuf, opt.chunk);
    if (r == 0) {
      return;
    }
    if (r < 0 && errno == EAGAIN) {
      int e = wait_fd(c->fd, POLLIN);
      if (e != 0) {
        conn_fail(c, -e, "waiting for EOF");
        return;
      }
      continue;
    }
    if (r < 0) {
      conn_fail(c, errno, "read at EOF");
    } else {
      conn_fail(c, 0, "extra bytes after the echo");
    }
    return;
  }
}

static void conn_run(struct conn *c) {
  c->fd = -1;
  c->file_fd = -1;
  sha256_init(&c->out_hash);
  sha256_init(&c->in_hash);
  gen_init(&c->gen, c->index);
  c->sendbuf = malloc(opt.chunk);
  c->recvbuf = malloc(2 * opt.chunk);
  if (c->sendbuf == NULL || c->recvbuf == NULL) {
    conn_fail(c, ENOMEM, "malloc");
    return;
  }
  if (opt.style == STYLE_SENDFILE && make_stream_file(c) != 0) {
    return;
  }
  if (do_connect(c) != 0) {
    return;
  }
  if (opt.style == STYLE_THREADS2) {
    run_threads2(c);
  } else {
    run_pipelined(c);
  }
  if (c->err[0] == '\0') {
    finish(c);
  }
}

static void conn_cleanup(struct conn *c) {
  if (c->fd >= 0 && close(c->fd) != 0 && c->err[0] == '\0') {
    conn_fail(c, errno, "close");
  }
  if (c->file_fd >= 0) {
    close(c->file_fd);
  }
  free(c->sendbuf);
  free(c->recvbuf);
}

/* Expect-error mode: connect, then one small exchange; the first failure
 * must carry the expected errno. */
static int run_expect_error(void) {
  struct conn c;
  memset(&c, 0, sizeof(c));
  c.fd = -1;
  c.file_fd = -1;
  if (do_connect(&c) == 0) {
    static const char msg[] = "hello, plaintext that must never leak\n";
    ssize_t w = send(c.fd, msg, sizeof(msg) - 1, MSG_NOSIGNAL);
    if (w < 0) {
      conn_fail(&c, errno, "write");
    } else {
      char buf[256];
      ssize_t r = read(c.fd, buf, sizeof(buf));
      if (r < 0) {
        conn_fail(&c, errno, "read");
      } else if (r == 0) {
        conn_fail(&c, 0, "read: EOF");
      }
    }
    close(c.fd);
  }
  if (c.err_errno == 0) {
    fprintf(stderr, "tcp_client: expected %s but %s\n", opt.expect_error,
            c.err[0] ? c.err : "the connection and first exchange succeeded");
    return 1;
  }
  const char *got = errname(c.err_errno);
  printf("error=%s\n", got);
  if (strcmp(got, opt.expect_error) != 0) {
    fprintf(stderr, "tcp_client: expected %s, got %s\n", opt.expect_error,
            c.err);
    return 1;
  }
  return 0;
}

struct worker {
  pthread_t tid;
  int first;
  struct conn *conns;
};

static void *worker_main(void *arg) {
  struct worker *w = arg;
  for (int i = w->first; i < opt.conns; i += opt.threads) {
    conn_run(&w->conns[i]);
  }
  return NULL;
}

static uint64_t parse_u64(const char *s, const char *what) {
  char *end;
  errno = 0;
  unsigned long long v = strtoull(s, &end, 10);
  if (errno != 0 || end == s || *end != '\0') {
    die("bad %s: %s", what, s);
  }
  return v;
}

int main(int argc, char **argv) {
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (strcmp(a, "--nonblock") == 0) {
      opt.nonblock = true;
      continue;
    }
    if (v == NULL) {
      usage();
    }
    i++;
    if (strcmp(a, "--host") == 0) {
      opt.host = v;
    } else if (strcmp(a, "--port") == 0) {
      opt.port = v;
    } else if (strcmp(a, "--style") == 0) {
      static const char *names[] = {"rw", "sendrecv", "iov", "msg", "sendfile",
                                    "threads2"};
      int k = -1;
      for (int j = 0; j < 6; j++) {
        if (strcmp(v, names[j]) == 0) {
          k = j;
        }
      }
      if (k < 0) {
        die("unknown style %s", v);
      }
      opt.style = (enum style)k;
    } else if (strcmp(a, "--bytes") == 0) {
      opt.bytes = parse_u64(v, "--bytes");
    } else if (strcmp(a, "--conns") == 0) {
      opt.conns = (int)parse_u64(v, "--conns");
    } else if (strcmp(a, "--threads") == 0) {
      opt.threads = (int)parse_u64(v, "--threads");
    } else if (strcmp(a, "--chunk") == 0) {
      opt.chunk = (size_t)parse_u64(v, "--chunk");
    } else if (strcmp(a, "--sndbuf") == 0) {
      opt.sndbuf = (int)parse_u64(v, "--sndbuf");
    } else if (strcmp(a, "--expect-error") == 0) {
      opt.expect_error = v;
    } else if (strcmp(a, "--timeout") == 0) {
      opt.timeout = (int)parse_u64(v, "--timeout");
    } else {
      usage();
    }
  }
  if (opt.host == NULL || opt.port == NULL || opt.conns < 1 ||
      opt.threads < 1 || opt.chunk < 1 || opt.timeout < 1) {
    usage();
  }
  if (opt.threads > opt.conns) {
    opt.threads = opt.conns;
  }
  if (signal(SIGALRM, on_alarm) == SIG_ERR || signal(SIGPIPE, SIG_IGN) == SIG_ERR) {
    die("signal: %s", strerror(errno));
  }
  alarm((unsigned)opt.timeout);

  if (opt.expect_error != NULL) {
    return run_expect_error();
  }

  struct conn *conns = calloc((size_t)opt.conns, sizeof(*conns));
  struct worker *workers = calloc((size_t)opt.threads, sizeof(*workers));
  if (conns == NULL || workers == NULL) {
    die("calloc failed");
  }
  for (int i = 0; i < opt.conns; i++) {
    conns[i].index = i;
  }
  if (opt.threads == 1) {
    workers[0].first = 0;
    workers[0].conns = conns;
    worker_main(&workers[0]);
  } else {
    for (int t = 0; t < opt.threads; t++) {
      workers[t].first = t;
      workers[t].conns = conns;
      int rc = pthread_create(&workers[t].tid, NULL, worker_main, &workers[t]);
      if (rc != 0) {
        die("pthread_create: %s", strerror(rc));
      }
    }
    for (int t = 0; t < opt.threads; t++) {
      pthread_join(workers[t].tid, NULL);
    }
  }

  int status = 0;
  uint64_t total_sent = 0, total_received = 0;
  pthread_mutex_lock(&out_lock);
  for (int i = 0; i < opt.conns; i++) {
    struct conn *c = &conns[i];
    conn_cleanup(c);
    char out_hex[65], in_hex[65];
    sha256_hex(&c->out_hash, out_hex);
    sha256_hex(&c->in_hash, in_hex);
    total_sent += c->sent;
    total_received += c->received;
    if (c->err[0] != '\0') {
      fprintf(stderr, "tcp_client: %s\n", c->err);
      status = 1;
    } else if (c->sent != opt.bytes || c->received != opt.bytes ||
               strcmp(out_hex, in_hex) != 0) {
      fprintf(stderr, "tcp_client: conn %d: echo mismatch: sent=%llu "
              "received=%llu\n", i, (unsigned long long)c->sent,
              (unsigned long long)c->received);
      status = 1;
    }
    if (opt.conns == 1) {
      printf("sent=%llu received=%llu sha256_out=%s sha256_in=%s\n",
             (unsigned long long)c->sent, (unsigned long long)c->received,
             out_hex, in_hex);
    } else {
      printf("conn=%d sent=%llu received=%llu sha256_out=%s sha256_in=%s\n", i,
             (unsigned long long)c->sent, (unsigned long long)c->received,
             out_hex, in_hex);
    }
  }
  if (opt.conns > 1) {
    printf("conns=%d total_sent=%llu total_received=%llu\n", opt.conns,
           (unsigned long long)total_sent, (unsigned long long)total_received);
  }
  pthread_mutex_unlock(&out_lock);
  if (fflush(stdout) != 0) {
    die("stdout: %s", strerror(errno));
  }
  free(conns);
  free(workers);
  return status;
}

/* Plain-TCP load program for the benchmarks: server and client in one binary, no TLS inside. */
/*
 * The shim (or nothing, or a local stunnel) provides the TLS; this program
 * only speaks plain TCP, so the same binary measures every transport.
 *
 *   loadgen server --port P --proto echo|sink|crr --model thread|epoll-lt|epoll-et
 *   loadgen client --port P --test stream|rr|crr|idle [--seconds S] [--size B]
 *                  [--threads T] [--conns N] [--cpu-wait]
 *   loadgen startup --runs N --preload LIB --policy FILE -- CMD [ARGS...]
 *
 * Protocols (the server is started with the one the test needs):
 *   echo  writes back every byte it reads (rr, idle).
 *   sink  reads 16 KiB chunks; the first byte of each chunk is 0, or 1 for
 *         the last one; after the last chunk it replies with the 8-byte total
 *         it received (stream). No half-close is needed, so stunnel works too.
 *   crr   reads a 64-byte request, writes a 64-byte reply and closes first,
 *         so TIME_WAIT stays on the server side and the client's ephemeral
 *         ports do not run out; the client reads to EOF before closing.
 *
 * The server prints "READY" on stdout once it listens. The client prints one
 * "RESULT key=value ..." line, or "ERROR reason" and exits 1.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

#define CHUNK 16384
#define CRR_LEN 64

enum proto { PROTO_ECHO, PROTO_SINK, PROTO_CRR };
enum model { MODEL_THREAD, MODEL_EPOLL_LT, MODEL_EPOLL_ET };

struct opts {
  const char *host;
  int port;
  enum proto proto;
  enum model model;
  const char *test;
  double seconds;
  size_t size;
  int threads;
  int conns;
};

static struct opts g_opts = {.host = "127.0.0.1", .seconds = 2.0, .size = 1,
                             .threads = 1, .conns = 100};

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what, int err) {
  printf("ERROR %s: %s\n", what, strerror(err));
  fflush(stdout);
  exit(1);
}

/* Raises the soft descriptor limit to the hard one (idle needs many). */
static void raise_nofile(void) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0) {
      fprintf(stderr, "loadgen: setrlimit: %s\n", strerror(errno));
    }
  }
}

static long rss_kb(void) {
  FILE *f = fopen("/proc/self/status", "r");
  char line[256];
  long kb = -1;
  if (f == NULL) {
    return -1;
  }
  while (fgets(line, sizeof(line), f) != NULL) {
    if (strncmp(line, "VmRSS:", 6) == 0) {
      kb = strtol(line + 6, NULL, 10);
      break;
    }
  }
  fclose(f);
  return kb;
}

/* Writes all of buf, waiting with poll() when a non-blocking socket is full. */
static int write_all(int fd, const void *buf, size_t len) {
  const char *p = buf;
  while (len > 0) {
    ssize_t n = write(fd, p, len);
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        struct pollfd pfd = {.fd = fd, .events = POLLOUT};
        if (poll(&pfd, 1, 10000) <= 0) {
          return -ETIMEDOUT;
        }
        continue;
      }
      return -errno;
    }
    p += n;
    len -= (size_t)n;
  }
  return 0;
}

/* Reads exactly len bytes (blocking socket); 0, -EPIPE at early EOF, -errno. */
static int read_full(int fd, void *buf, size_t len) {
  char *p = buf;
  while (len > 0) {
    ssize_t n = read(fd, p, len);
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      return -errno;
    }
    if (n == 0) {
      return -EPIPE;
    }
    p += n;
    len -= (size_t)n;
  }
  return 0;
}

/* ---- server ---- */

struct conn {
  int fd;
  uint64_t total;  /* sink: bytes received */
  uint64_t end_at; /* sink: offset after the last chunk, 0 until seen */
  size_t got;      /* crr: request bytes received */
  char req[CRR_LEN];
};

/* Feeds n received bytes to the protocol. Returns 1 to keep the connection,
 * 0 to close it, -errno on error. */
static int conn_feed(struct conn *c, const char *buf, size_t n) {
  switch (g_opts.proto) {
  case PROTO_ECHO:
    return write_all(c->fd, buf, n) == 0 ? 1 : 0;
  case PROTO_SINK: {
    uint64_t first = (c->total + CHUNK - 1) / CHUNK * CHUNK;
    for (uint64_t pos = first; pos < c->total + n; pos += CHUNK) {
      if (buf[pos - c->total] == 1) {
        c->end_at = pos + CHUNK;
      }
    }
    c->total += n;
    if (c->end_at != 0 && c->total >= c->end_at) {
      uint64_t total = c->total;
      c->end_at = 0;
      return write_all(c->fd, &total, sizeof(total)) == 0 ? 1 : 0;
    }
    return 1;
  }
  case PROTO_CRR: {
    size_t take = n < CRR_LEN - c->got ? n : CRR_LEN - c->got;
    memcpy(c->req + c->got, buf, take);
    c->got += take;
    if (c->got == CRR_LEN) {
      (void)write_all(c->fd, c->req, CRR_LEN);
      return 0;
    }
    return 1;
  }
  }
  return 0;
}

static void *serve_thread(void *arg) {
  struct conn *c = arg;
  static __thread char buf[262144];
  for (;;) {
    ssize_t n = read(c->fd, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n <= 0 || conn_feed(c, buf, (size_t)n) <= 0) {
      break;
    }
  }
  close(c->fd);
  free(c);
  return NULL;
}

static void set_nodelay(int fd) {
  int one = 1;
  (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

static void server_thread_model(int lfd) {
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  pthread_attr_setstacksize(&attr, 512 * 1024);
  for (;;) {
    int fd = accept(lfd, NULL, NULL);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED || errno == EMFILE) {
        continue;
      }
      die("accept", errno);
    }
    set_nodelay(fd);
    struct conn *c = calloc(1, sizeof(*c));
    pthread_t t;
    if (c == NULL) {
      close(fd);
      continue;
    }
    c->fd = fd;
    int rc = pthread_create(&t, &attr, serve_thread, c);
    if (rc != 0) {
      fprintf(stderr, "loadgen: pthread_create: %s\n", strerror(rc));
      close(fd);
      free(c);
    }
  }
}

static void conn_close_epoll(int ep, struct conn *c) {
  (void)epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
  close(c->fd);
  free(c);
}

static void server_epoll_model(int lfd, bool et) {
  static char buf[262144];
  static struct conn listener;
  struct epoll_event evs[256];
  uint32_t flag = et ? EPOLLET : 0;
  int ep = epoll_create1(EPOLL_CLOEXEC);
  if (ep < 0) {
    die("epoll_create1", errno);
  }
  if (fcntl(lfd, F_SETFL, O_NONBLOCK) != 0) {
    die("fcntl", errno);
  }
  listener.fd = lfd;
  struct epoll_event lev = {.events = EPOLLIN | flag, .data.ptr = &listener};
  if (epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &lev) != 0) {
    die("epoll_ctl", errno);
  }
  for (;;) {
    int n = epoll_wait(ep, evs, 256, -1);
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      die("epoll_wait", errno);
    }
    for (int i = 0; i < n; i++) {
      struct conn *c = evs[i].data.ptr;
      if (c == &listener) {
        /* Level-triggered: one accept per wakeup; edge: until EAGAIN. */
        do {
          int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK);
          if (fd < 0) {
            break;
          }
          set_nodelay(fd);
          struct conn *nc = calloc(1, sizeof(*nc));
          if (nc == NULL) {
            close(fd);
            continue;
          }
          nc->fd = fd;
          struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP | flag,
                                   .data.ptr = nc};
          if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) != 0) {
            close(fd);
            free(nc);
          }
        } while (et);
        continue;
      }
      bool keep = true;
      do {
        ssize_t r = read(c->fd, buf, sizeof(buf));
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
          break;
        }
        if (r < 0 && errno == EINTR) {
          continue;
        }
        if (r <= 0 || conn_feed(c, buf, (size_t)r) <= 0) {
          keep = false;
        }
      } while (keep && et);
      if (!keep) {
        conn_close_epoll(ep, c);
      }
    }
  }
}

/* Names whoever terminates the server, so a stray kill from outside the
 * benchmark shows in its failure reason. snprintf is not async-signal-safe,
 * but nothing else runs after it: the process exits. */
static void on_term(int sig, siginfo_t *si, void *ctx) {
  char msg[512], comm[64] = "?";
  char path[64];
  snprintf(path, sizeof(path), "/proc/%d/comm", (int)si->si_pid);
  int fd = open(path, O_RDONLY);
  if (fd >= 0) {
    ssize_t n = read(fd, comm, sizeof(comm) - 1);
    comm[n > 0 ? n - 1 : 0] = 0;
    close(fd);
  }
  int len = snprintf(msg, sizeof(msg), "loadgen: signal %d from pid %d (%s)\n",
                     sig, (int)si->si_pid, comm);
  if (len > 0) {
    (void)write(2, msg, (size_t)len);
  }
  _exit(128 + sig);
}

static int cmd_server(void) {
  raise_nofile();
  signal(SIGPIPE, SIG_IGN);
  struct sigaction sa_term = {.sa_sigaction = on_term, .sa_flags = SA_SIGINFO};
  sigaction(SIGTERM, &sa_term, NULL);
  sigaction(SIGINT, &sa_term, NULL);
  int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (lfd < 0) {
    die("socket", errno);
  }
  int one = 1;
  (void)setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  struct sockaddr_in sa = {.sin_family = AF_INET,
                           .sin_port = htons((uint16_t)g_opts.port)};
  if (inet_pton(AF_INET, g_opts.host, &sa.sin_addr) != 1) {
    die("bad --host", EINVAL);
  }
  if (bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
    die("bind", errno);
  }
  if (listen(lfd, 4096) != 0) {
    die("listen", errno);
  }
  printf("READY\n");
  fflush(stdout);
  if (g_opts.model == MODEL_THREAD) {
    server_thread_model(lfd);
  } else {
    server_epoll_model(lfd, g_opts.model == MODEL_EPOLL_ET);
  }
  return 0;
}

/* ---- client ---- */

static int dial(int *out_fd) {
  struct sockaddr_in sa = {.sin_family = AF_INET,
                           .sin_port = htons((uint16_t)g_opts.port)};
  if (inet_pton(AF_INET, g_opts.host, &sa.sin_addr) != 1) {
    return -EINVAL;
  }
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    return -errno;
  }
  set_nodelay(fd);
  if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
    int err = errno;
    close(fd);
    return -err;
  }
  *out_fd = fd;
  return 0;
}

static int client_stream(void) {
  static char buf[CHUNK];
  int fd;
  int rc = dial(&fd);
  if (rc != 0) {
    die("connect", -rc);
  }
  uint64_t sent = 0;
  double start = now_s();
  double deadline = start + g_opts.seconds;
  buf[0] = 0;
  do {
    if ((rc = write_all(fd, buf, CHUNK)) != 0) {
      die("write", -rc);
    }
    sent += CHUNK;
  } while (now_s() < deadline);
  buf[0] = 1;
  if ((rc = write_all(fd, buf, CHUNK)) != 0) {
    die("write", -rc);
  }
  sent += CHUNK;
  uint64_t got = 0;
  if ((rc = read_full(fd, &got, sizeof(got))) != 0) {
    die("read ack", -rc);
  }
  double secs = now_s() - start;
  close(fd);
  if (got != sent) {
    printf("ERROR server received %" PRIu64 " bytes, sent %" PRIu64 "\n", got,
           sent);
    return 1;
  }
  printf("RESULT mbps=%.2f bytes=%" PRIu64 " secs=%.3f\n", sent / secs / 1e6,
         sent, secs);
  return 0;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static int client_rr(void) {
  size_t size = g_opts.size;
  char *buf = malloc(size);
  size_t cap = 1 << 16, count = 0;
  double *lat = malloc(cap * sizeof(*lat));
  int fd, rc;
  if (buf == NULL || lat == NULL) {
    die("malloc", ENOMEM);
  }
  memset(buf, 'x', size);
  if ((rc = dial(&fd)) != 0) {
    die("connect", -rc);
  }
  for (int i = 0; i < 200; i++) { /* warm-up, includes the handshake */
    if ((rc = write_all(fd, buf, size)) != 0 ||
        (rc = read_full(fd, buf, size)) != 0) {
      die("warm-up round trip", -rc);
    }
  }
  double start = now_s();
  double deadline = start + g_opts.seconds;
  double t1 = start;
  while (t1 < deadline) {
    double t0 = now_s();
    if ((rc = write_all(fd, buf, size)) != 0 ||
        (rc = read_full(fd, buf, size)) != 0) {
      die("round trip", -rc);
    }
    t1 = now_s();
    if (count == cap) {
      cap *= 2;
      lat = realloc(lat, cap * sizeof(*lat));
      if (lat == NULL) {
        die("realloc", ENOMEM);
      }
    }
    lat[count++] = t1 - t0;
  }
  close(fd);
  qsort(lat, count, sizeof(*lat), cmp_double);
  printf("RESULT rtps=%.1f p50_us=%.2f p99_us=%.2f count=%zu\n",
         count / (t1 - start), lat[count / 2] * 1e6,
         lat[(size_t)(count * 0.99)] * 1e6, count);
  free(lat);
  free(buf);
  return 0;
}

struct crr_thread {
  pthread_t tid;
  double deadline;
  uint64_t done;
  int err;
  const char *where;
};

static void *crr_worker(void *arg) {
  struct crr_thread *t = arg;
  char req[CRR_LEN], rep[CRR_LEN];
  memset(req, 'q', sizeof(req));
  while (now_s() < t->deadline) {
    int fd, rc;
    if ((rc = dial(&fd)) != 0) {
      t->err = -rc;
      t->where = "connect";
      return NULL;
    }
    if ((rc = write_all(fd, req, CRR_LEN)) != 0) {
      t->where = "write request";
    } else if ((rc = read_full(fd, rep, CRR_LEN)) != 0) {
      t->where = "read reply";
    } else {
      char c;
      ssize_t n;
      while ((n = read(fd, &c, 1)) < 0 && errno == EINTR) {
      }
      if (n != 0) {
        rc = n < 0 ? -errno : -EPROTO;
        t->where = "read EOF";
      }
    }
    close(fd);
    if (rc != 0) {
      t->err = -rc;
      return NULL;
    }
    t->done++;
  }
  return NULL;
}

static int client_crr(void) {
  int n = g_opts.threads;
  struct crr_thread *ts = calloc((size_t)n, sizeof(*ts));
  if (ts == NULL) {
    die("calloc", ENOMEM);
  }
  double start = now_s();
  for (int i = 0; i < n; i++) {
    ts[i].deadline = start + g_opts.seconds;
    if (pthread_create(&ts[i].tid, NULL, crr_worker, &ts[i]) != 0) {
      die("pthread_create", errno);
    }
  }
  uint64_t total = 0;
  for (int i = 0; i < n; i++) {
    pthread_join(ts[i].tid, NULL);
    total += ts[i].done;
  }
  double secs = now_s() - start;
  for (int i = 0; i < n; i++) {
    if (ts[i].err != 0) {
      printf("ERROR %s after %" PRIu64 " connections: %s\n", ts[i].where,
             ts[i].done, strerror(ts[i].err));
      return 1;
    }
  }
  printf("RESULT cps=%.1f conns=%" PRIu64 " secs=%.3f\n", total / secs, total,
         secs);
  free(ts);
  return 0;
}

struct idle_thread {
  pthread_t tid;
  int *fds;
  int count;
  int err;
};

static void *idle_worker(void *arg) {
  struct idle_thread *t = arg;
  for (int i = 0; i < t->count; i++) {
    char c = 'i';
    int rc;
    if ((rc = dial(&t->fds[i])) != 0 ||
        (rc = write_all(t->fds[i], &c, 1)) != 0 ||
        (rc = read_full(t->fds[i], &c, 1)) != 0) {
      t->err = -rc;
      return NULL;
    }
  }
  return NULL;
}

static int client_idle(void) {
  int n = g_opts.conns, nt = g_opts.threads;
  int *fds = calloc((size_t)n, sizeof(*fds));
  struct idle_thread *ts = calloc((size_t)nt, sizeof(*ts));
  if (fds == NULL || ts == NULL) {
    die("calloc", ENOMEM);
  }
  long before = rss_kb();
  double start = now_s();
  for (int i = 0, off = 0; i < nt; i++) {
    ts[i].fds = fds + off;
    ts[i].count = n / nt + (i < n % nt);
    off += ts[i].count;
    if (pthread_create(&ts[i].tid, NULL, idle_worker, &ts[i]) != 0) {
      die("pthread_create", errno);
    }
  }
  int err = 0;
  for (int i = 0; i < nt; i++) {
    pthread_join(ts[i].tid, NULL);
    if (ts[i].err != 0) {
      err = ts[i].err;
    }
  }
  if (err != 0) {
    die("opening idle connections", err);
  }
  long after = rss_kb();
  printf("RESULT rss_before_kb=%ld rss_after_kb=%ld open_secs=%.3f\n", before,
         after, now_s() - start);
  fflush(stdout);
  /* Hold the connections until the driver closes our stdin. */
  char c;
  while (read(0, &c, 1) > 0) {
  }
  return 0;
}

static int cmd_client(void) {
  raise_nofile();
  signal(SIGPIPE, SIG_IGN);
  alarm((unsigned)g_opts.seconds + 300); /* never hang a benchmark run */
  int rc;
  if (strcmp(g_opts.test, "stream") == 0) {
    rc = client_stream();
  } else if (strcmp(g_opts.test, "rr") == 0) {
    rc = client_rr();
  } else if (strcmp(g_opts.test, "crr") == 0) {
    rc = client_crr();
  } else if (strcmp(g_opts.test, "idle") == 0) {
    rc = client_idle();
  } else {
    fprintf(stderr, "loadgen: unknown --test %s\n", g_opts.test);
    return 2;
  }
  fflush(stdout);
  return rc;
}

/* ---- startup: /bin/true with and without the shim, interleaved ---- */

static int spawn_once(char **argv, char **envp, double *out_secs) {
  pid_t pid;
  int status;
  double t0 = now_s();
  int rc = posix_spawn(&pid, argv[0], NULL, NULL, argv, envp);
  if (rc != 0) {
    return -rc;
  }
  if (waitpid(pid, &status, 0) < 0) {
    return -errno;
  }
  *out_secs = now_s() - t0;
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }
  return 0;
}

static int cmd_startup(int runs, const char *preload, const char *policy,
                       char **argv) {
  size_t nenv = 0;
  while (environ[nenv] != NULL) {
    nenv++;
  }
  char **envp = calloc(nenv + 3, sizeof(*envp));
  double *base = calloc((size_t)runs, sizeof(double));
  double *shim = calloc((size_t)runs, sizeof(double));
  char pre[4096], pol[4096];
  if (envp == NULL || base == NULL || shim == NULL) {
    die("calloc", ENOMEM);
  }
  size_t k = 0;
  for (size_t i = 0; i < nenv; i++) {
    if (strncmp(environ[i], "LD_PRELOAD=", 11) != 0 &&
        strncmp(environ[i], "TLSSHIM_POLICY=", 15) != 0) {
      envp[k++] = environ[i];
    }
  }
  snprintf(pre, sizeof(pre), "LD_PRELOAD=%s", preload);
  snprintf(pol, sizeof(pol), "TLSSHIM_POLICY=%s", policy);
  envp[k] = NULL; /* base environment */
  for (int i = 0; i < runs; i++) {
    int rc = spawn_once(argv, envp, &base[i]);
    if (rc != 0) {
      printf("ERROR %s without the shim: status %d\n", argv[0], rc);
      return 1;
    }
    envp[k] = pre;
    envp[k + 1] = pol;
    rc = spawn_once(argv, envp, &shim[i]);
    envp[k] = NULL;
    if (rc != 0) {
      printf("ERROR %s under the shim: %s %d\n", argv[0],
             rc < 0 ? "spawn error" : "exit status", rc);
      return 1;
    }
  }
  qsort(base, (size_t)runs, sizeof(double), cmp_double);
  qsort(shim, (size_t)runs, sizeof(double), cmp_double);
  printf("RESULT base_ms=%.3f shim_ms=%.3f added_ms=%.3f runs=%d\n",
         base[runs / 2] * 1e3, shim[runs / 2] * 1e3,
         (shim[runs / 2] - base[runs / 2]) * 1e3, runs);
  return 0;
}

static void usage(void) {
  fprintf(stderr,
          "usage: loadgen server --port P [--host A] --proto echo|sink|crr "
          "--model thread|epoll-lt|epoll-et\n"
          "       loadgen client --port P [--host A] --test stream|rr|crr|idle "
          "[--seconds S] [--size B] [--threads T] [--conns N]\n"
          "       loadgen startup --runs N --preload LIB --policy FILE -- CMD "
          "[ARGS...]\n");
  exit(2);
}

int main(int argc, char **argv) {
  if (argc < 2) {
    usage();
  }
  const char *cmd = argv[1];
  const char *preload = NULL, *policy = NULL;
  int runs = 200;
  int i;
  for (i = 2; i < argc; i++) {
    const char *a = argv[i];
    if (strcmp(a, "--") == 0) {
      i++;
      break;
    }
    if (i + 1 >= argc) {
      usage();
    }
    const char *v = argv[++i];
    if (strcmp(a, "--port") == 0) {
      g_opts.port = atoi(v);
    } else if (strcmp(a, "--host") == 0) {
      g_opts.host = v;
    } else if (strcmp(a, "--proto") == 0) {
      g_opts.proto = strcmp(v, "sink") == 0  ? PROTO_SINK
                     : strcmp(v, "crr") == 0 ? PROTO_CRR
                                             : PROTO_ECHO;
    } else if (strcmp(a, "--model") == 0) {
      g_opts.model = strcmp(v, "epoll-lt") == 0   ? MODEL_EPOLL_LT
                     : strcmp(v, "epoll-et") == 0 ? MODEL_EPOLL_ET
                                                  : MODEL_THREAD;
    } else if (strcmp(a, "--test") == 0) {
      g_opts.test = v;
    } else if (strcmp(a, "--seconds") == 0) {
      g_opts.seconds = atof(v);
    } else if (strcmp(a, "--size") == 0) {
      g_opts.size = (size_t)atol(v);
    } else if (strcmp(a, "--threads") == 0) {
      g_opts.threads = atoi(v);
    } else if (strcmp(a, "--conns") == 0) {
      g_opts.conns = atoi(v);
    } else if (strcmp(a, "--runs") == 0) {
      runs = atoi(v);
    } else if (strcmp(a, "--preload") == 0) {
      preload = v;
    } else if (strcmp(a, "--policy") == 0) {
      policy = v;
    } else {
      usage();
    }
  }
  if (strcmp(cmd, "server") == 0 && g_opts.port > 0) {
    return cmd_server();
  }
  if (strcmp(cmd, "client") == 0 && g_opts.port > 0 && g_opts.test != NULL &&
      g_opts.size > 0 && g_opts.threads > 0 && g_opts.conns > 0) {
    return cmd_client();
  }
  if (strcmp(cmd, "startup") == 0 && preload != NULL && policy != NULL &&
      i < argc && runs > 0) {
    return cmd_startup(runs, preload, policy, argv + i);
  }
  usage();
  return 2;
}

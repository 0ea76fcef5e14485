/* tcp_echo_server.c: a plain TCP echo server (no TLS inside) with several
 * concurrency models: thread, fork, prefork, epoll-lt, epoll-et, poll, select. */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "progs.h"

enum mode { MODE_THREAD, MODE_FORK, MODE_PREFORK, MODE_EPOLL_LT, MODE_EPOLL_ET,
            MODE_POLL, MODE_SELECT };

static struct {
  const char *port;
  const char *addr;
  enum mode mode;
  size_t read_chunk;
  long max_conns; /* 0: unlimited */
  const char *ready_file;
  int workers;
  int timeout;
} opt = {NULL, "127.0.0.1", MODE_THREAD, 16384, 0, NULL, 4, 300};

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fputs("tcp_echo_server: ", stderr);
  vexit_with(fmt, ap);
}

/* Per-connection errors: one line on stderr with the errno name, which the
 * failure tests look for (e.g. "conn 3: read: ECONNRESET"). */
static void conn_error(long id, const char *what, int e) {
  fprintf(stderr, "tcp_echo_server: conn %ld: %s: %s (%s)\n", id, what,
          errname(e), strerror(e));
  fflush(stderr);
}

static void on_alarm(int sig) {
  static const char msg[] = "tcp_echo_server: timeout: exiting (alarm)\n";
  ssize_t r = write(2, msg, sizeof(msg) - 1);
  (void)r;
  (void)sig;
  _exit(3);
}

static void usage(void) {
  fprintf(stderr,
          "usage: tcp_echo_server --port P [--addr A] --mode "
          "{thread,fork,prefork,epoll-lt,epoll-et,poll,select} "
          "[--read-chunk N] [--max-conns N] [--ready-file F] [--workers N] "
          "[--timeout S]\n");
  exit(2);
}

static int set_nonblock(int fd) {
  int fl = fcntl(fd, F_GETFL);
  if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) != 0) {
    return -errno;
  }
  return 0;
}

static int make_listener(int *out_port) {
  struct addrinfo hints, *res = NULL;
  memset(&hints, 0, sizeof(hints));
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICHOST | AI_NUMERICSERV;
  int rc = getaddrinfo(opt.addr, opt.port, &hints, &res);
  if (rc != 0) {
    die("getaddrinfo %s: %s", opt.addr, gai_strerror(rc));
  }
  int fd = socket(res->ai_family, SOCK_STREAM, 0);
  if (fd < 0) {
    die("socket: %s", strerror(errno));
  }
  int one = 1;
  if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0) {
    die("setsockopt: %s", strerror(errno));
  }
  if (bind(fd, res->ai_addr, res->ai_addrlen) != 0) {
    die("bind %s:%s: %s", opt.addr, opt.port, strerror(errno));
  }
  freeaddrinfo(res);
  if (listen(fd, 128) != 0) {
    die("listen: %s", strerror(errno));
  }
  struct sockaddr_storage ss;
  socklen_t sl = sizeof(ss);
  if (getsockname(fd, (struct sockaddr *)&ss, &sl) != 0) {
    die("getsockname: %s", strerror(errno));
  }
  *out_port = ss.ss_family == AF_INET6
                  ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
                  : ntohs(((struct sockaddr_in *)&ss)->sin_port);
  return fd;
}

static void write_ready_file(int port) {
  if (opt.ready_file == NULL) {
    return;
  }
  char tmp[4096];
  snprintf(tmp, sizeof(tmp), "%s.tmp", opt.ready_file);
  FILE *f = fopen(tmp, "w");
  if (f == NULL) {
    die("open %s: %s", tmp, strerror(errno));
  }
  if (fprintf(f, "%d\n", port) < 0 || fclose(f) != 0) {
    die("write %s: %s", tmp, strerror(errno));
  }
  if (rename(tmp, opt.ready_file) != 0) {
    die("rename %s: %s", tmp, strerror(errno));
  }
}

/* ---- blocking echo (thread, fork, prefork) ---- */

static void echo_blocking(int fd, long id) {
  char *buf = malloc(opt.read_chunk);
  if (buf == NULL) {
    conn_error(id, "malloc", ENOMEM);
    return;
  }
  for (;;) {
    ssize_t r = read(fd, buf, opt.read_chunk);
    if (r < 0) {
      if (errno == EINTR) {
        continue;
      }
      conn_error(id, "read", errno);
      break;
    }
    if (r == 0) {
      if (shutdown(fd, SHUT_WR) != 0) {
        conn_error(id, "shutdown", errno);
      }
      break;
    }
    ssize_t off = 0;
    while (off < r) {
      ssize_t w = write(fd, buf + off, (size_t)(r - off));
      if (w < 0) {
        if (errno == EINTR) {
          continue;
        }
        conn_error(id, "write", errno);
        goto out;
      }
      off += w;
    }
  }
out:
  free(buf);
}

struct thread_arg {
  int fd;
  long id;
};

static void *conn_thread(void *p) {
  struct thread_arg *a = p;
  echo_blocking(a->fd, a->id);
  if (close(a->fd) != 0) {
    conn_error(a->id, "close", errno);
  }
  free(a);
  return NULL;
}

static int accept_one(int lfd) {
  for (;;) {
    int fd = accept(lfd, NULL, NULL);
    if (fd >= 0) {
      return fd;
    }
    if (errno == EINTR || errno == ECONNABORTED) {
      continue;
    }
    die("accept: %s (%s)", errname(errno), strerror(errno));
  }
}

static void serve_thread(int lfd) {
  for (long id = 0; opt.max_conns == 0 || id < opt.max_conns; id++) {
    int fd = accept_one(lfd);
    struct thread_arg *a = malloc(sizeof(*a));
    if (a == NULL) {
      die("malloc failed");
    }
    a->fd = fd;
    a->id = id;
    pthread_t t;
    int rc = pthread_create(&t, NULL, conn_thread, a);
    if (rc != 0) {
      die("pthread_create: %s", strerror(rc));
    }
    pthread_detach(t);
  }
  /* Let the last connections finish: exit the main thread only. */
  pthread_exit(NULL);
}

static void serve_fork(int lfd) {
  long id;
  for (id = 0; opt.max_conns == 0 || id < opt.max_conns; id++) {
    int fd = accept_one(lfd);
    pid_t pid = fork();
    if (pid < 0) {
      die("fork: %s", strerror(errno));
    }
    if (pid == 0) {
      close(lfd);
      echo_blocking(fd, id);
      if (close(fd) != 0) {
        conn_error(id, "close", errno);
      }
      _exit(0);
    }
    close(fd);
    while (waitpid(-1, NULL, WNOHANG) > 0) {
    }
  }
  while (wait(NULL) > 0) {
  }
}

static void serve_prefork(int lfd) {
  for (int w = 0; w < opt.workers; w++) {
    pid_t pid = fork();
    if (pid < 0) {
      die("fork: %s", strerror(errno));
    }
    if (pid == 0) {
      /* Workers die with the parent, so killing the server kills them. */
      if (prctl(PR_SET_PDEATHSIG, SIGTERM) != 0 || getppid() == 1) {
        _exit(1);
      }
      /* Each worker accepts on the shared listener; ids are worker*1e6+n. */
      for (long n = 0; opt.max_conns == 0 || n < opt.max_conns; n++) {
        int fd = accept_one(lfd);
        echo_blocking(fd, (long)w * 1000000 + n);
        if (close(fd) != 0) {
          conn_error((long)w * 1000000 + n, "close", errno);
        }
      }
      _exit(0);
    }
  }
  close(lfd);
  int status = 0;
  while (wait(&status) > 0) {
  }
}

/* ---- non-blocking event loops ---- */

struct nbconn {
  int fd;
  long id;
  char *buf;
  size_t len; /* bytes pending to write back */
  size_t off;
  bool eof;
  bool in_use;
};

static struct nbconn *conns;
static int conns_cap;

static struct nbconn *conn_new(int fd, long id) {
  if (fd >= conns_cap) {
    int ncap = conns_cap ? conns_cap : 64;
    while (ncap <= fd) {
      ncap *= 2;
    }
    struct nbconn *n = realloc(conns, (size_t)ncap * sizeof(*n));
    if (n == NULL) {
      die("realloc failed");
    }
    memset(n + conns_cap, 0, (size_t)(ncap - conns_cap) * sizeof(*n));
    conns = n;
    conns_cap = ncap;
  }
  struct nbconn *c = &conns[fd];
  c->fd = fd;
  c->id = id;
  c->buf = malloc(opt.read_chunk);
  if (c->buf == NULL) {
    die("malloc failed");
  }
  c->len = c->off = 0;
  c->eof = false;
  c->in_use = true;
  return c;
}

static void conn_close(struct nbconn *c) {
  if (close(c->fd) != 0) {
    conn_error(c->id, "close", errno);
  }
  free(c->buf);
  c->buf = NULL;
  c->in_use = false;
}

/* Makes progress on |c| until it would block. Returns 1 to keep, 0 when
 * finished (closed by the caller). */
static int conn_step(struct nbconn *c) {
  for (;;) {
    while (c->off < c->len) {
      ssize_t w = write(c->fd, c->buf + c->off, c->len - c->off);
      if (w < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
          return 1;
        }
        if (errno == EINTR) {
          continue;
        }
        conn_error(c->id, "write", errno);
        return 0;
      }
      c->off += (size_t)w;
    }
    c->off = c->len = 0;
    if (c->eof) {
      if (shutdown(c->fd, SHUT_WR) != 0) {
        conn_error(c->id, "shutdown", errno);
      }
      return 0;
    }
    ssize_t r = read(c->fd, c->buf, opt.read_chunk);
    if (r < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        return 1;
      }
      if (errno == EINTR) {
        continue;
      }
      conn_error(c->id, "read", errno);
      return 0;
    }
    if (r == 0) {
      c->eof = true;
      continue;
    }
    c->len = (size_t)r;
  }
}

/* Accepts every pending connection on the non-blocking listener; returns
 * the number accepted, calling |added| for each. */
static long next_id;

static bool limit_reached(void) {
  return opt.max_conns != 0 && next_id >= opt.max_conns;
}

static int accept_pending(int lfd, void (*added)(struct nbconn *)) {
  int n = 0;
  while (!limit_reached()) {
    int fd = accept(lfd, NULL, NULL);
    if (fd < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        break;
      }
      if (errno == EINTR || errno == ECONNABORTED) {
        continue;
      }
      die("accept: %s (%s)", errname(errno), strerror(errno));
    }
    int e = set_nonblock(fd);
    if (e != 0) {
      die("fcntl: %s", strerror(-e));
    }
    added(conn_new(fd, next_id++));
    n++;
  }
  return n;
}

static int live_count(void) {
  int n = 0;
  for (int i = 0; i < conns_cap; i++) {
    n += conns[i].in_use;
  }
  return n;
}

static int epfd = -1;
static bool edge;

static void epoll_added(struct nbconn *c) {
  struct epoll_event ev;
  memset(&ev, 0, sizeof(ev));
  ev.data.fd = c->fd;
  ev.events = edge ? (EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET) : EPOLLIN;
  if (epoll_ctl(epfd, EPOLL_CTL_ADD, c->fd, &ev) != 0) {
    die("epoll_ctl ADD: %s", strerror(errno));
  }
  if (edge && !conn_step(c)) {
    /* ET: drain now; the edge for data already queued may be gone. */
    conn_close(c);
  }
}

static void serve_epoll(int lfd, bool et) {
  edge = et;
  epfd = epoll_create1(EPOLL_CLOEXEC);
  if (epfd < 0) {
    die("epoll_create1: %s", strerror(errno));
  }
  struct epoll_event ev;
  memset(&ev, 0, sizeof(ev));
  ev.events = EPOLLIN | (et ? EPOLLET : 0);
  ev.data.fd = lfd;
  if (epoll_ctl(epfd, EPOLL_CTL_ADD, lfd, &ev) != 0) {
    die("epoll_ctl: %s", strerror(errno));
  }
  struct epoll_event evs[64];
  while (!limit_reached() || live_count() > 0) {
    int n = epoll_wait(epfd, evs, 64, -1);
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      die("epoll_wait: %s", strerror(errno));
    }
    for (int i = 0; i < n; i++) {
      int fd = evs[i].data.fd;
      if (fd == lfd) {
        accept_pending(lfd, epoll_added);
        continue;
      }
      struct nbconn *c = &conns[fd];
      if (!c->in_use) {
        continue;
      }
      if (!conn_step(c)) {
        conn_close(c); /* close removes it from the epoll set */
        continue;
      }
      if (!et) {
        /* LT: wait for writability only while output is pending. */
        struct epoll_event mod;
        memset(&mod, 0, sizeof(mod));
        mod.data.fd = fd;
        mod.events = c->len > c->off ? EPOLLOUT : EPOLLIN;
        if (epoll_ctl(epfd, EPOLL_CTL_MOD, fd, &mod) != 0) {
          die("epoll_ctl MOD: %s", strerror(errno));
        }
      }
    }
  }
}

static void nothing_added(struct nbconn *c) { (void)c; }

static void serve_poll(int lfd) {
  struct pollfd *pfds = NULL;
  int pcap = 0;
  while (!limit_reached() || live_count() > 0) {
    int need = 1 + conns_cap;
    if (need > pcap) {
      struct pollfd *n = realloc(pfds, (size_t)need * sizeof(*n));
      if (n == NULL) {
        die("realloc failed");
      }
      pfds = n;
      pcap = need;
    }
    int cnt = 0;
    pfds[cnt++] = (struct pollfd){lfd, limit_reached() ? 0 : POLLIN, 0};
    for (int i = 0; i < conns_cap; i++) {
      if (conns[i].in_use) {
        short evm = conns[i].len > conns[i].off ? POLLOUT : POLLIN;
        pfds[cnt++] = (struct pollfd){i, evm, 0};
      }
    }
    int r = poll(pfds, (nfds_t)cnt, -1);
    if (r < 0) {
      if (errno == EINTR) {
        continue;
      }
      die("poll: %s", strerror(errno));
    }
    for (int i = 1; i < cnt; i++) {
      if (pfds[i].revents != 0) {
        struct nbconn *c = &conns[pfds[i].fd];
        if (!conn_step(c)) {
          conn_close(c);
        }
      }
    }
    if (pfds[0].revents & POLLIN) {
      accept_pending(lfd, nothing_added);
    }
  }
  free(pfds);
}

static void serve_select(int lfd) {
  while (!limit_reached() || live_count() > 0) {
    fd_set rfds, wfds;
    FD_ZERO(&rfds);
    FD_ZERO(&wfds);
    int maxfd = -1;
    if (!limit_reached()) {
      FD_SET(lfd, &rfds);
      maxfd = lfd;
    }
    for (int i = 0; i < conns_cap; i++) {
      if (!conns[i].in_use) {
        continue;
      }
      if (i >= FD_SETSIZE) {
        die("fd %d too large for select", i);
      }
      if (conns[i].len > conns[i].off) {
        FD_SET(i, &wfds);
      } else {
        FD_SET(i, &rfds);
      }
      if (i > maxfd) {
        maxfd = i;
      }
    }
    int r = select(maxfd + 1, &rfds, &wfds, NULL, NULL);
    if (r < 0) {
      if (errno == EINTR) {
        continue;
      }
      die("select: %s", strerror(errno));
    }
    for (int i = 0; i < conns_cap && i <= maxfd; i++) {
      if (i != lfd && conns[i].in_use &&
          (FD_ISSET(i, &rfds) || FD_ISSET(i, &wfds))) {
        if (!conn_step(&conns[i])) {
          conn_close(&conns[i]);
        }
      }
    }
    if (FD_ISSET(lfd, &rfds)) {
      accept_pending(lfd, nothing_added);
    }
  }
}

static long parse_long(const char *s, const char *what) {
  long v;
  if (!parse_count(s, &v)) {
    die("bad %s: %s", what, s);
  }
  return v;
}

int main(int argc, char **argv) {
  static const char *modes[] = {"thread", "fork", "prefork", "epoll-lt",
                                "epoll-et", "poll", "select"};
  bool have_mode = false;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (v == NULL) {
      usage();
    }
    i++;
    if (strcmp(a, "--port") == 0) {
      opt.port = v;
    } else if (strcmp(a, "--addr") == 0) {
      opt.addr = v;
    } else if (strcmp(a, "--mode") == 0) {
      int k = -1;
      for (int j = 0; j < 7; j++) {
        if (strcmp(v, modes[j]) == 0) {
          k = j;
        }
      }
      if (k < 0) {
        die("unknown mode %s", v);
      }
      opt.mode = (enum mode)k;
      have_mode = true;
    } else if (strcmp(a, "--read-chunk") == 0) {
      opt.read_chunk = (size_t)parse_long(v, "--read-chunk");
    } else if (strcmp(a, "--max-conns") == 0) {
      opt.max_conns = parse_long(v, "--max-conns");
    } else if (strcmp(a, "--ready-file") == 0) {
      opt.ready_file = v;
    } else if (strcmp(a, "--workers") == 0) {
      opt.workers = (int)parse_long(v, "--workers");
    } else if (strcmp(a, "--timeout") == 0) {
      opt.timeout = (int)parse_long(v, "--timeout");
    } else {
      usage();
    }
  }
  if (opt.port == NULL || !have_mode || opt.read_chunk == 0 || opt.workers < 1) {
    usage();
  }
  if (signal(SIGALRM, on_alarm) == SIG_ERR || signal(SIGPIPE, SIG_IGN) == SIG_ERR) {
    die("signal: %s", strerror(errno));
  }
  if (opt.timeout > 0) {
    alarm((unsigned)opt.timeout);
  }
  int port;
  int lfd = make_listener(&port);
  bool nb = opt.mode == MODE_EPOLL_LT || opt.mode == MODE_EPOLL_ET ||
            opt.mode == MODE_POLL || opt.mode == MODE_SELECT;
  if (nb) {
    int e = set_nonblock(lfd);
    if (e != 0) {
      die("fcntl: %s", strerror(-e));
    }
  }
  write_ready_file(port);
  switch (opt.mode) {
    case MODE_THREAD:
      serve_thread(lfd);
      break;
    case MODE_FORK:
      serve_fork(lfd);
      break;
    case MODE_PREFORK:
      serve_prefork(lfd);
      break;
    case MODE_EPOLL_LT:
      serve_epoll(lfd, false);
      break;
    case MODE_EPOLL_ET:
      serve_epoll(lfd, true);
      break;
    case MODE_POLL:
      serve_poll(lfd);
      break;
    case MODE_SELECT:
      serve_select(lfd);
      break;
  }
  return 0;
}

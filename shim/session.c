/* session.c: the I/O engine of one TLS connection: blocking emulation over a
 * non-blocking socket, errors turned into errno, and TLS-level readiness.
 *
 * I/O contract: session_recv/session_send behave like recv(2)/send(2) on a
 * socket in the program's blocking mode (user_nonblock, MSG_DONTWAIT),
 * honouring SO_RCVTIMEO/SO_SNDTIMEO, MSG_PEEK and MSG_WAITALL. The kernel
 * socket is always non-blocking underneath; waiting is done here with
 * poll() while no lock is held, so one thread may read while another
 * writes the same socket. */
#include "shim/internal.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "include/tlsshim.h"
#include "shim/libc.h"
#include "shim/log.h"
#include "shim/status.h"

int64_t shim_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int shim_wait(int fd, short events, int64_t deadline_ms) {
  for (;;) {
    int timeout = -1;
    if (deadline_ms >= 0) {
      int64_t left = deadline_ms - shim_now_ms();
      if (left <= 0) {
        return 0;
      }
      timeout = left > 0x7fffffff ? 0x7fffffff : (int)left;
    }
    struct pollfd p = {.fd = fd, .events = events ? events : POLLIN};
    int r = real_poll(&p, 1, timeout);
    if (r < 0) {
      return -errno;
    }
    if (r == 0 && deadline_ms >= 0) {
      return 0;
    }
    if (r > 0) {
      return r;
    }
  }
}

int64_t shim_sock_timeout_ms(int fd, int optname) {
  struct timeval tv;
  socklen_t len = sizeof(tv);
  if (real_getsockopt(fd, SOL_SOCKET, optname, &tv, &len) != 0) {
    return -1;
  }
  if (tv.tv_sec == 0 && tv.tv_usec == 0) {
    return -1;
  }
  return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

__thread int shim_lock_depth __attribute__((tls_model("initial-exec")));
__thread int session_deferred_count __attribute__((tls_model("initial-exec")));
#define DEFERRED_MAX 16
static __thread int deferred_fds[DEFERRED_MAX]
    __attribute__((tls_model("initial-exec")));
static void (*deferred_close_fn)(int fd);

/* What fdtable_get gives a signal handler that interrupted the shim: its
 * reads and writes fail with EAGAIN; its references are never the last. */
struct session session_busy = {
    .refs = 1 << 30,
    .lock = PTHREAD_MUTEX_INITIALIZER,
    .kind = SESSION_BUSY,
    .fd = -1,
    .linger_fd = -1,
};

bool session_defer_close(int fd, void (*fn)(int fd)) {
  if (session_deferred_count >= DEFERRED_MAX) {
    return false;
  }
  deferred_close_fn = fn;
  deferred_fds[session_deferred_count] = fd;
  __atomic_signal_fence(__ATOMIC_SEQ_CST);
  session_deferred_count++;
  return true;
}

void session_run_deferred(void) {
  while (session_deferred_count > 0 && shim_lock_depth == 0) {
    int fd = deferred_fds[--session_deferred_count];
    deferred_close_fn(fd);
  }
}

/* Test hook (TLSSHIM_TEST_FAIL_SESSIONS=N): every Nth session allocation
 * fails, to show that running out of memory fails closed. */
int session_fail_every;
static unsigned session_alloc_count;

struct session *session_new(void) {
  if (session_fail_every > 0 &&
      __atomic_add_fetch(&session_alloc_count, 1, __ATOMIC_RELAXED) %
              (unsigned)session_fail_every == 0) {
    return NULL;
  }
  struct session *s = calloc(1, sizeof(*s));
  if (s == NULL) {
    return NULL;
  }
  s->refs = 1;
  pthread_mutex_init(&s->lock, NULL);
  s->fd = -1;
  s->linger_fd = -1;
  s->fd_count = 1; /* the descriptor it is made for */
  return s;
}

void session_ref(struct session *s) {
  __atomic_add_fetch(&s->refs, 1, __ATOMIC_ACQ_REL);
}

/* The last reference frees; the goodbye was said when the last descriptor
 * went away (session_detach_fd), so nothing here touches a socket. */
static void session_end(struct session *s) {
  if (s->status != NULL) {
    status_closed(s->status);
  }
  tlsconn_free(s->conn);
  tls_config_unref(s->config);
  pthread_mutex_destroy(&s->lock);
  free(s);
}

void session_unref(struct session *s) {
  if (s != NULL && __atomic_sub_fetch(&s->refs, 1, __ATOMIC_ACQ_REL) == 0) {
    session_end(s);
  }
}

void session_attach_fd(struct session *s, int fd) {
  (void)fd;
  session_lock(s);
  s->fd_count++;
  session_unlock(s);
}

struct other_fd {
  struct session *s;
  int except;
  int found;
};

static void find_other_fd(int fd, struct session *s, void *arg) {
  struct other_fd *o = arg;
  if (s == o->s && fd != o->except && o->found < 0) {
    o->found = fd;
  }
}

/* The last descriptor: say goodbye (close_notify) while the descriptor is
 * still open, when it cannot block and is ours to say: a session inherited
 * across fork that this process never used stays silent, since the other
 * process may still be using the connection. Later I/O by a thread that
 * still holds a reference fails with EBADF instead of touching a
 * descriptor number that may already belong to another file. */
static void say_goodbye_locked(struct session *s, int fd) {
  bool lingering = s->linger_fd >= 0;
  if (s->conn != NULL && s->kind == SESSION_TLS &&
      (!s->forked || s->io_since_fork) && !s->wr_shutdown &&
      tlsconn_state(s->conn) == TLSCONN_ESTABLISHED) {
    s->wr_shutdown = true;
    if (tlsconn_shutdown(s->conn) == -EAGAIN) {
      /* The socket is full: what the program wrote last, and the
       * close_notify behind it, go out from the linger thread. */
      lingering = linger_adopt_locked(s, fd);
    }
  }
  if (s->conn != NULL && !lingering) {
    tlsconn_set_fd(s->conn, -1);
  }
  s->fd = -1;
  if (s->error == 0) {
    s->error = -EBADF;
    s->failure_logged = true;
  }
}

void session_goodbye_at_exit(struct session *s, int fd) {
  session_lock(s);
  if (s->fd == fd) { /* once per session, through the descriptor it uses */
    say_goodbye_locked(s, fd);
  }
  session_unlock(s);
}

void session_detach_fd(struct session *s, int fd) {
  session_lock(s);
  s->fd_count--;
  if (s->fd_count <= 0) {
    say_goodbye_locked(s, fd);
    session_unlock(s);
    return;
  }
  bool move = s->fd == fd;
  session_unlock(s);
  if (!move) {
    return;
  }
  struct other_fd o = {.s = s, .except = fd, .found = -1};
  fdtable_for_each(find_other_fd, &o);
  if (o.found >= 0) {
    session_lock(s);
    s->fd = o.found;
    if (s->conn != NULL && s->linger_fd < 0) {
      tlsconn_set_fd(s->conn, o.found);
    }
    session_unlock(s);
  }
}

int session_start_tls(struct session *s, const char *verify_name,
                      const char *peer_ip, const char *peer_key) {
  struct tlsconn_params params = {
      .config = s->config,
      .rule = s->rule,
      .is_server = s->is_server,
      .fd = s->fd,
      .verify_name = verify_name,
      .peer_ip = peer_ip,
      .peer_key = peer_key,
  };
  int r = tlsconn_new(&s->conn, &params);
  if (r == 0) {
    s->kind = SESSION_TLS;
  }
  return r;
}

static const char *dir_name(const struct session *s) {
  return s->is_server ? "inbound" : "outbound";
}

static void log_established(struct session *s) {
  struct tlsconn_info info;
  tlsconn_get_info(s->conn, &info);
  struct log_event ev = {
      .level = POLICY_LOG_INFO,
      .event = "established",
      .direction = dir_name(s),
      .rule = s->rule_name,
      .local = s->local,
      .peer = s->peer,
      /* Outbound: the name that was verified; inbound: the SNI asked for. */
      .name = s->is_server ? info.server_name : s->name,
      .version = info.version,
      .cipher = info.cipher,
      .group = info.group,
      .resumed = info.resumed ? 1 : 0,
      .peer_identity = info.peer_identity,
  };
  log_emit(&ev);
  s->status = status_established(s, &info);
}

/* The one place where a TLS result becomes the errno the program sees:
 * a handshake that failed is EPROTO for the client (connect, SPEC 6) and
 * ECONNRESET for a server's read/write; a timeout is ETIMEDOUT both ways;
 * socket errors pass through. Logs the failure once. Caller holds lock. */
static int session_fail(struct session *s, int err, const char *reason) {
  bool handshaking = s->conn == NULL ||
                     tlsconn_state(s->conn) == TLSCONN_HANDSHAKING ||
                     !s->established_logged;
  if (s->error == 0) {
    int mapped = err;
    if (err == -EPROTO && handshaking && s->is_server) {
      mapped = -ECONNRESET;
    }
    s->error = mapped;
  }
  if (!s->failure_logged) {
    s->failure_logged = true;
    const char *why = reason;
    if (why == NULL || why[0] == '\0') {
      why = s->conn != NULL ? tlsconn_error(s->conn) : "";
    }
    char buf[128];
    if (why == NULL || why[0] == '\0') {
      snprintf(buf, sizeof(buf), "%s", strerror(-err));
      why = buf;
    }
    session_log_failed(s, why);
  }
  return s->error;
}

void session_log_failed(const struct session *s, const char *why) {
  struct log_event ev = {
      /* Every failure is a warning (SPEC 8: the warn level shows
       * failures), a peer's reset after the handshake included. */
      .level = POLICY_LOG_WARN,
      .event = "failed",
      .direction = dir_name(s),
      .rule = s->rule_name,
      .local = s->local,
      .peer = s->peer,
      .name = s->name,
      .resumed = -1,
      .reason = why,
  };
  log_emit(&ev);
  status_failed(s->rule_name, s->is_server, why);
}

/* Sets the handshake deadline on first use; fails the session when it has
 * passed. Returns 0 or the session's error. Caller holds lock. */
static int check_deadline(struct session *s) {
  if (s->conn == NULL || tlsconn_state(s->conn) != TLSCONN_HANDSHAKING) {
    return 0;
  }
  if (s->deadline_ms == 0) {
    s->deadline_ms = shim_now_ms() + s->timeout_ms;
    return 0;
  }
  if (shim_now_ms() >= s->deadline_ms) {
    return session_fail(s, -ETIMEDOUT, "handshake timeout");
  }
  return 0;
}

/* After any progress: log the handshake's completion once. */
static void note_progress(struct session *s) {
  if (!s->established_logged && s->conn != NULL &&
      tlsconn_state(s->conn) != TLSCONN_HANDSHAKING &&
      tlsconn_state(s->conn) != TLSCONN_FAILED) {
    s->established_logged = true;
    log_established(s);
  }
}

/* Each permissive decision is logged (and so counted) with its reason. */
static void log_permissive(struct session *s, const char *event,
                           const char *reason) {
  struct log_event ev = {.level = POLICY_LOG_INFO, .event = event,
                         .direction = "inbound", .rule = s->rule_name,
                         .local = s->local, .peer = s->peer, .resumed = -1,
                         .reason = reason};
  log_emit(&ev);
  status_decision(strcmp(event, "permissive") == 0
                      ? STATUS_PERMISSIVE_TLS
                      : STATUS_PERMISSIVE_PLAINTEXT,
                  s->rule_name, true);
}

/* Permissive: decide from the first bytes whether the peer speaks TLS.
 * Returns 1 decided TLS, 0 decided plaintext, -EAGAIN undecided (wait for
 * POLLIN), or -errno. Caller holds lock. */
static int detect_locked(struct session *s, int fd, bool program_writes) {
  uint8_t head[3];
  ssize_t n = real_recv(fd, head, sizeof(head), MSG_PEEK | MSG_DONTWAIT);
  bool timed_out = s->deadline_ms != 0 && shim_now_ms() >= s->deadline_ms;
  if (s->deadline_ms == 0) {
    s->deadline_ms = shim_now_ms() + s->timeout_ms;
  }
  const char *why;
  if (n > 0 && head[0] == 0x16 && (n < 3 || tlsconn_looks_like_client_hello(head, (size_t)n))) {
    if (n < 3 && !timed_out && !program_writes) {
      return -EAGAIN;
    }
    int r = session_start_tls(s, NULL, NULL, NULL);
    if (r != 0) {
      return r;
    }
    s->deadline_ms = 0;
    log_permissive(s, "permissive", "ClientHello seen: serving TLS");
    return 1;
  }
  if (n > 0) {
    why = "first bytes are not TLS";
  } else if (n == 0) {
    why = "peer closed before sending";
  } else if (errno != EAGAIN && errno != EWOULDBLOCK) {
    return -errno;
  } else if (program_writes) {
    why = "program wrote first";
  } else if (timed_out) {
    why = "no bytes within handshake_timeout_ms";
  } else {
    return -EAGAIN;
  }
  s->kind = SESSION_PLAIN;
  char reason[128];
  snprintf(reason, sizeof(reason), "permissive: %s: serving plaintext", why);
  log_permissive(s, "plaintext", reason);
  return 0;
}

/* One non-blocking read attempt. Returns count, 0 EOF, -EAGAIN (|*wants|
 * set), or -errno. Caller holds lock. */
static ssize_t recv_once(struct session *s, int fd, void *buf, size_t len,
                         bool peek, short *wants) {
  *wants = POLLIN;
  if (s->kind == SESSION_EXEC_DEAD) {
    return -EPROTO;
  }
  if (s->kind == SESSION_DETECT) {
    int d = detect_locked(s, fd, false);
    if (d < 0) {
      return d;
    }
  }
  if (s->kind == SESSION_PLAIN) {
    ssize_t n = real_recv(fd, buf, len, MSG_DONTWAIT | (peek ? MSG_PEEK : 0));
    return n < 0 ? -errno : n;
  }
  if (s->error != 0) {
    return s->error;
  }
  int r = check_deadline(s);
  if (r != 0) {
    return r;
  }
  s->io_since_fork = true;
  ssize_t n = tlsconn_read(s->conn, buf, len, peek);
  note_progress(s);
  if (s->status != NULL && n > 0 && !peek) {
    status_count(&s->status->bytes_in, n);
  }
  if (n == -EAGAIN) {
    *wants = tlsconn_wants(s->conn);
    if (*wants == 0) {
      *wants = POLLIN;
    }
    return n;
  }
  if (n < 0) {
    return session_fail(s, (int)n, NULL);
  }
  return n;
}

static ssize_t send_once(struct session *s, int fd, const void *buf, size_t len,
                         int flags, short *wants) {
  *wants = POLLOUT;
  if (s->kind == SESSION_EXEC_DEAD) {
    return -EPROTO;
  }
  if (s->kind == SESSION_DETECT) {
    int d = detect_locked(s, fd, true);
    if (d < 0) {
      return d;
    }
  }
  if (s->kind == SESSION_PLAIN) {
    ssize_t n = real_send(fd, buf, len, (flags & MSG_NOSIGNAL) | MSG_DONTWAIT);
    return n < 0 ? -errno : n;
  }
  if (s->error != 0) {
    return s->error;
  }
  if (s->wr_shutdown) {
    return -EPIPE;
  }
  int r = check_deadline(s);
  if (r != 0) {
    return r;
  }
  s->io_since_fork = true;
  ssize_t n = tlsconn_write(s->conn, buf, len);
  note_progress(s);
  if (s->status != NULL && n > 0) {
    status_count(&s->status->bytes_out, n);
  }
  if (n == -EAGAIN) {
    *wants = tlsconn_wants(s->conn);
    if (*wants == 0) {
      *wants = POLLOUT;
    }
    return n;
  }
  if (n < 0) {
    if (n == -EPIPE || n == -ECONNRESET) {
      return n; /* the socket's own error, as plain TCP would say it */
    }
    return session_fail(s, (int)n, NULL);
  }
  return n;
}

/* The deadline of a blocking wait: the handshake's, or SO_*TIMEO's. */
static int64_t wait_deadline(struct session *s, int fd, int optname,
                             int64_t *timeo_deadline) {
  if (*timeo_deadline == -2) {
    int64_t t = shim_sock_timeout_ms(fd, optname);
    *timeo_deadline = t < 0 ? -1 : shim_now_ms() + t;
  }
  int64_t d = *timeo_deadline;
  session_lock(s);
  if (s->conn != NULL && s->deadline_ms > 0 &&
      tlsconn_state(s->conn) == TLSCONN_HANDSHAKING) {
    if (d < 0 || s->deadline_ms < d) {
      d = s->deadline_ms;
    }
  } else if (s->kind == SESSION_DETECT && s->deadline_ms > 0) {
    if (d < 0 || s->deadline_ms < d) {
      d = s->deadline_ms;
    }
  }
  session_unlock(s);
  return d;
}

ssize_t session_recv(struct session *s, int fd, void *buf, size_t len,
                     int flags) {
  bool peek = (flags & MSG_PEEK) != 0;
  bool waitall = (flags & MSG_WAITALL) != 0 && !peek;
  size_t got = 0;
  int64_t timeo = -2;
  if (s->kind == SESSION_BUSY) {
    return -EAGAIN;
  }
  if (len == 0) {
    return 0;
  }
  for (;;) {
    short wants;
    session_lock(s);
    bool nonblock = s->user_nonblock || (flags & MSG_DONTWAIT) != 0;
    unsigned mark = s->conn != NULL ? tlsconn_read_mark(s->conn) : 0;
    ssize_t n = recv_once(s, fd, (char *)buf + got, len - got, peek, &wants);
    bool more = false;
    if (n > 0 && !peek && s->kind == SESSION_TLS) {
      /* Like recv(2), also take what is already here: the records the shim
       * has received from the kernel and not yet returned and, if the
       * program uses epoll, what the kernel still holds. A program on
       * edge-triggered epoll takes a short read for "drained" (nginx
       * does), and the kernel owes no edge for bytes the shim took. */
      bool epoll = epoll_registry_in_use();
      ssize_t last = n;
      while (got + (size_t)n < len && s->error == 0 &&
             (tlsconn_in_buffered(s->conn) ||
              (epoll && !tlsconn_drained_since(s->conn, mark)))) {
        last = recv_once(s, fd, (char *)buf + got + n, len - got - n, false,
                         &wants);
        if (last <= 0) {
          break; /* EAGAIN, or EOF or an error that the next call reports */
        }
        n += last;
      }
      /* Have the next epoll_wait look again when input may be left that no
       * kernel edge will announce: after a read that filled the buffer
       * (the rest may be inside the shim already; nginx's proxy stalled
       * without this), or that ended at EOF or an error still to report.
       * A read that found the kernel drained during this call is owed an
       * edge for whatever came after. */
      more = epoll && (last <= 0 ? last != -EAGAIN : got + (size_t)n == len);
    }
    session_unlock(s);
    if (more) {
      epoll_registry_rearm(fd);
    }
    if (n > 0) {
      got += (size_t)n;
      if (!waitall || got == len) {
        return (ssize_t)got;
      }
      continue;
    }
    if (n == 0) {
      return (ssize_t)got;
    }
    if (n != -EAGAIN || nonblock) {
      return got > 0 ? (ssize_t)got : n;
    }
    int64_t deadline = wait_deadline(s, fd, SO_RCVTIMEO, &timeo);
    int w = shim_wait(fd, wants, deadline);
    if (w < 0) {
      return got > 0 ? (ssize_t)got : w;
    }
    if (w == 0 && timeo >= 0 && shim_now_ms() >= timeo) {
      return got > 0 ? (ssize_t)got : -EAGAIN; /* SO_RCVTIMEO expired */
    }
    /* Otherwise the handshake deadline passed: the next try fails it. */
  }
}

/* Blocking writers wait until their bytes have left the shim, so that a
 * program that writes and exits loses nothing. */
static int flush_blocking(struct session *s, int fd, int64_t *timeo) {
  for (;;) {
    session_lock(s);
    int r = s->conn != NULL ? tlsconn_flush(s->conn) : 0;
    short wants = s->conn != NULL ? tlsconn_wants(s->conn) : POLLOUT;
    session_unlock(s);
    if (r != -EAGAIN) {
      return r;
    }
    int64_t deadline = wait_deadline(s, fd, SO_SNDTIMEO, timeo);
    int w = shim_wait(fd, wants ? wants : POLLOUT, deadline);
    if (w < 0) {
      return w;
    }
    if (w == 0) {
      return -EAGAIN;
    }
  }
}

ssize_t session_send(struct session *s, int fd, const void *buf, size_t len,
                     int flags) {
  size_t sent = 0;
  int64_t timeo = -2;
  bool nonblock = false;
  if (s->kind == SESSION_BUSY) {
    return -EAGAIN;
  }
  for (;;) {
    short wants = POLLOUT;
    session_lock(s);
    nonblock = s->user_nonblock || (flags & MSG_DONTWAIT) != 0;
    bool plain = s->kind == SESSION_PLAIN;
    ssize_t n = sent == len && len > 0
                    ? 0
                    : send_once(s, fd, (const char *)buf + sent, len - sent,
                                flags, &wants);
    session_unlock(s);
    if (n > 0) {
      sent += (size_t)n;
    }
    /* A non-blocking write takes what it can without waiting: keep going
     * while records are accepted, stop at the first -EAGAIN. */
    if (sent == len || (nonblock && n == -EAGAIN && sent > 0)) {
      if (!nonblock && !plain && sent > 0) {
        int r = flush_blocking(s, fd, &timeo);
        if (r < 0 && r != -EAGAIN) {
          return r;
        }
      }
      return (ssize_t)sent;
    }
    if (n > 0) {
      continue;
    }
    if (n != -EAGAIN || nonblock) {
      return sent > 0 ? (ssize_t)sent : n;
    }
    int64_t deadline = wait_deadline(s, fd, SO_SNDTIMEO, &timeo);
    int w = shim_wait(fd, wants, deadline);
    if (w < 0) {
      return sent > 0 ? (ssize_t)sent : w;
    }
    if (w == 0 && timeo >= 0 && shim_now_ms() >= timeo) {
      return sent > 0 ? (ssize_t)sent : -EAGAIN;
    }
  }
}

int session_handshake_blocking(struct session *s, int fd) {
  int64_t timeo = -1;
  for (;;) {
    session_lock(s);
    int r = s->error;
    short wants = POLLIN;
    if (r == 0) {
      r = check_deadline(s);
    }
    if (r == 0) {
      s->io_since_fork = true;
      r = tlsconn_handshake(s->conn);
      note_progress(s);
      if (r == -EAGAIN) {
        wants = tlsconn_wants(s->conn);
      } else if (r < 0) {
        r = session_fail(s, r, NULL);
      }
    }
    session_unlock(s);
    if (r != -EAGAIN) {
      return r;
    }
    int64_t deadline = wait_deadline(s, fd, SO_SNDTIMEO, &timeo);
    int w = shim_wait(fd, wants ? wants : POLLIN, deadline);
    if (w < 0) {
      return w;
    }
  }
}

int session_shutdown_write(struct session *s, int fd) {
  session_lock(s);
  int r = 0;
  if (s->linger_fd >= 0) {
    r = 1; /* already queued: the FIN follows it */
  } else if (s->kind == SESSION_TLS && s->conn != NULL && !s->wr_shutdown &&
             tlsconn_state(s->conn) != TLSCONN_FAILED) {
    s->wr_shutdown = true;
    r = tlsconn_shutdown(s->conn);
    /* A full non-blocking socket: a FIN now would cut off the output
     * still queued (the last record written, then close_notify). The
     * linger thread sends it, then shuts down the write side. */
    if (r == -EAGAIN && s->user_nonblock && linger_adopt_locked(s, fd)) {
      r = 1;
    }
  }
  bool nonblock = s->user_nonblock;
  session_unlock(s);
  if (r == -EAGAIN && !nonblock) {
    int64_t timeo = -2;
    r = flush_blocking(s, fd, &timeo);
  }
  return r == -EAGAIN ? 0 : r;
}

/* The TCP connect of |s| finished (the socket polled writable): its
 * result, and the handshake clock starts. Caller holds lock. */
static int tcp_connect_done(struct session *s, int fd) {
  int err = 0;
  socklen_t len = sizeof(err);
  real_getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
  s->connecting = false;
  if (err != 0) {
    s->error = -err;
    s->failure_logged = true; /* a TCP error, as without the shim */
    return err;
  }
  s->deadline_ms = shim_now_ms() + s->timeout_ms;
  return 0;
}

int session_tcp_connected(struct session *s, int fd) {
  session_lock(s);
  int err = s->connecting ? tcp_connect_done(s, fd) : 0;
  session_unlock(s);
  return err;
}

/* Non-blocking progress of an outbound connect: the TCP part, then the
 * handshake. Caller holds lock. */
static void connect_progress(struct session *s, int fd) {
  if (s->connecting) {
    struct pollfd p = {.fd = fd, .events = POLLOUT};
    if (real_poll(&p, 1, 0) <= 0) {
      return;
    }
    (void)tcp_connect_done(s, fd);
  }
}

int session_so_error(struct session *s, int fd) {
  session_lock(s);
  if (s->kind == SESSION_TLS && !s->is_server) {
    connect_progress(s, fd);
    if (s->error == 0 && !s->connecting && s->conn != NULL &&
        tlsconn_state(s->conn) == TLSCONN_HANDSHAKING) {
      int r = check_deadline(s);
      if (r == 0) {
        r = tlsconn_handshake(s->conn);
        note_progress(s);
        if (r < 0 && r != -EAGAIN) {
          session_fail(s, r, NULL);
        }
      }
    }
  }
  int err = 0;
  if (s->error != 0 && !s->error_reported) {
    s->error_reported = true;
    err = -s->error;
  }
  session_unlock(s);
  return err;
}

short session_poll_events(struct session *s, int fd, short events,
                          short kernel, short *wants, int64_t *wake_ms) {
  short rev = 0;
  *wants = 0;
  *wake_ms = -1;
  session_lock(s);
  if (s->kind == SESSION_EXEC_DEAD) {
    rev = (short)((events & (POLLIN | POLLOUT)) | POLLERR);
    goto out;
  }
  if (s->kind == SESSION_DETECT) {
    int d = detect_locked(s, fd, false);
    if (d == -EAGAIN) {
      /* Writing now would decide plaintext: that is progress. */
      rev = (short)(events & POLLOUT);
      *wants = POLLIN;
      *wake_ms = s->deadline_ms;
      goto out;
    }
    if (d < 0) {
      rev = POLLERR;
      goto out;
    }
  }
  if (s->kind == SESSION_PLAIN) {
    /* Plaintext after all: the kernel's answer is the answer. Asked
     * without kernel events (a level-triggered re-check), ask the kernel. */
    *wants = (short)(events & (POLLIN | POLLOUT | POLLPRI | POLLRDHUP));
    if (kernel == 0) {
      struct pollfd p = {.fd = fd, .events = *wants};
      if (real_poll(&p, 1, 0) > 0) {
        kernel = p.revents;
      }
    }
    rev = (short)(kernel & (events | POLLERR | POLLHUP | POLLNVAL));
    goto out;
  }
  if (!s->is_server) {
    connect_progress(s, fd);
    if (s->connecting) {
      *wants = POLLOUT;
      goto out;
    }
  }
  if (s->error == 0) {
    int r = check_deadline(s);
    if (r == 0) {
      r = tlsconn_pump(s->conn);
      note_progress(s);
      if (r < 0 && r != -EAGAIN) {
        session_fail(s, r, NULL);
      }
    }
  }
  if (s->error != 0) {
    /* Reads and writes will report it now. */
    rev = (short)((events & (POLLIN | POLLOUT)) | POLLERR);
    if (s->error == -ECONNRESET || s->error == -EPIPE) {
      rev |= POLLHUP;
    }
    goto out;
  }
  enum tlsconn_state st = tlsconn_state(s->conn);
  if ((events & (POLLIN | POLLRDNORM)) &&
      (tlsconn_pending(s->conn) > 0 || st == TLSCONN_CLOSED)) {
    rev |= (short)(events & (POLLIN | POLLRDNORM));
  }
  if (st == TLSCONN_CLOSED && (events & POLLRDHUP)) {
    rev |= POLLRDHUP;
  }
  if ((events & (POLLOUT | POLLWRNORM)) && st != TLSCONN_HANDSHAKING &&
      !tlsconn_out_pending(s->conn)) {
    rev |= (short)(events & (POLLOUT | POLLWRNORM));
  }
  rev |= (short)(kernel & POLLHUP);
  *wants = tlsconn_wants(s->conn);
  if (st == TLSCONN_HANDSHAKING) {
    *wake_ms = s->deadline_ms;
  } else if ((events & POLLIN) && !(rev & POLLIN)) {
    *wants |= POLLIN;
  }
out:
  session_unlock(s);
  return rev;
}

int session_fionread(struct session *s, int fd) {
  short wants;
  int64_t wake;
  session_poll_events(s, fd, POLLIN, 0, &wants, &wake);
  session_lock(s);
  int n = 0;
  if (s->kind == SESSION_TLS && s->conn != NULL) {
    n = (int)tlsconn_pending(s->conn);
  } else if (s->kind == SESSION_PLAIN) {
    real_ioctl(fd, FIONREAD, &n);
  }
  session_unlock(s);
  return n;
}

static void mark_forked(int fd, struct session *s, void *arg) {
  (void)fd;
  (void)arg;
  s->forked = true;
  s->io_since_fork = false;
}

void session_mark_all_forked(void) { fdtable_for_each(mark_forked, NULL); }

static void copy_str(char *dst, size_t dst_len, const char *src) {
  snprintf(dst, dst_len, "%s", src != NULL ? src : "");
}

void session_get_info(struct session *s, struct tlsshim_conn_info *out) {
  memset(out, 0, sizeof(*out));
  session_lock(s);
  if (s->kind == SESSION_TLS && s->conn != NULL) {
    out->is_tls = 1;
    copy_str(out->direction, sizeof(out->direction), dir_name(s));
    copy_str(out->rule, sizeof(out->rule), s->rule_name);
    if (tlsconn_state(s->conn) == TLSCONN_ESTABLISHED ||
        tlsconn_state(s->conn) == TLSCONN_CLOSED) {
      struct tlsconn_info info;
      tlsconn_get_info(s->conn, &info);
      out->handshake_done = 1;
      out->resumed = info.resumed;
      out->peer_verified = info.peer_verified;
      copy_str(out->version, sizeof(out->version), info.version);
      copy_str(out->cipher, sizeof(out->cipher), info.cipher);
      copy_str(out->group, sizeof(out->group), info.group);
      copy_str(out->alpn, sizeof(out->alpn), info.alpn);
      copy_str(out->server_name, sizeof(out->server_name), info.server_name);
      copy_str(out->peer_identity, sizeof(out->peer_identity),
               info.peer_identity);
      copy_str(out->peer_subject, sizeof(out->peer_subject),
               info.peer_subject);
    }
  }
  session_unlock(s);
}

/* linger.c: what a non-blocking program wrote before close() or
 * shutdown(SHUT_WR) still reaches the peer, followed by close_notify.
 *
 * A non-blocking write returns once BoringSSL has sealed the record, even
 * when the socket took only part of it: the rest waits in the connection's
 * out-buffer until the socket drains. Plain TCP keeps such bytes in the
 * kernel after close() and sends the FIN behind them; the shim does the
 * same from one background thread. When the last descriptor of a session
 * closes, or the program shuts down the write side of a non-blocking
 * socket, while output is still queued, the session is adopted here with a
 * duplicate of its descriptor (close-on-exec, so the program's descriptor
 * number is free at once). The thread sends the rest as the socket drains,
 * then shuts down the write side (the FIN after close_notify) and closes
 * the duplicate. A peer that has not taken it all after LINGER_MS is given
 * up on (the connection closes without close_notify, so the peer can tell),
 * with a log line; at exit the process waits, at most LINGER_EXIT_MS, for
 * what is still queued.
 *
 * Locking: the session's lock is taken before the linger lock (adoption
 * happens under the session's lock); the thread never holds the linger
 * lock while it takes a session's. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "shim/internal.h"
#include "shim/libc.h"
#include "shim/tls/tls.h"

#define LINGER_MS 30000
#define LINGER_EXIT_MS 5000

int linger_give_up_ms = LINGER_MS;

struct linger_entry {
  struct session *s; /* referenced */
  int fd;            /* the duplicate the thread sends through */
  int64_t deadline_ms;
};

static pthread_mutex_t linger_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t linger_drained = PTHREAD_COND_INITIALIZER;
static struct linger_entry *entries;
static int count, cap;
static int wake_fd = -1;
static bool running;

static void wake_thread(void) {
  uint64_t one = 1;
  ssize_t w = real_write(wake_fd, &one, sizeof(one));
  (void)w;
}

/* Sends what |e|'s session still holds. Returns true when the entry is
 * done: everything sent (and the FIN after it), or given up on. */
static bool linger_step(const struct linger_entry *e, int64_t now) {
  struct session *s = e->s;
  session_lock(s);
  int r = tlsconn_flush(s->conn);
  bool done = r != -EAGAIN || now >= e->deadline_ms;
  if (done) {
    if (r == 0) {
      real_shutdown(e->fd, SHUT_WR);
    } else {
      size_t left = tlsconn_out_len(s->conn);
      char why[160];
      if (r == -EAGAIN) {
        snprintf(why, sizeof(why),
                 "peer did not take the last %zu bytes within %d ms after the "
                 "program closed; gave up",
                 left, linger_give_up_ms);
      } else {
        snprintf(why, sizeof(why),
                 "%zu bytes written before close not delivered: %s", left,
                 strerror(-r));
      }
      session_log_failed(s, why);
    }
    s->linger_fd = -1;
    /* The program's descriptor, if it still has one; -1 once closed. */
    tlsconn_set_fd(s->conn, s->fd);
  }
  session_unlock(s);
  if (done) {
    real_close(e->fd);
  }
  return done;
}

static void *linger_main(void *arg) {
  (void)arg;
  struct pollfd *pfds = NULL;
  struct linger_entry *work = NULL;
  int work_cap = 0;
  for (;;) {
    pthread_mutex_lock(&linger_lock);
    int n = count;
    if (n + 1 > work_cap) {
      int c = (n + 1) * 2;
      struct pollfd *np = realloc(pfds, (size_t)c * sizeof(*np));
      if (np != NULL) {
        pfds = np;
      }
      struct linger_entry *nw = realloc(work, (size_t)c * sizeof(*nw));
      if (nw != NULL) {
        work = nw;
      }
      if (np == NULL || nw == NULL) {
        pthread_mutex_unlock(&linger_lock);
        usleep(10000); /* out of memory: try again shortly */
        continue;
      }
      work_cap = c;
    }
    int64_t next = -1;
    for (int i = 0; i < n; i++) {
      work[i] = entries[i];
      pfds[i] = (struct pollfd){.fd = entries[i].fd, .events = POLLOUT};
      if (next < 0 || entries[i].deadline_ms < next) {
        next = entries[i].deadline_ms;
      }
    }
    pthread_mutex_unlock(&linger_lock);
    pfds[n] = (struct pollfd){.fd = wake_fd, .events = POLLIN};
    int timeout = -1;
    if (next >= 0) {
      int64_t left = next - shim_now_ms();
      timeout = left < 0 ? 0 : left > 60000 ? 60000 : (int)left;
    }
    if (real_poll(pfds, (nfds_t)n + 1, timeout) < 0 && errno != EINTR) {
      continue;
    }
    if (pfds[n].revents & POLLIN) {
      uint64_t v;
      ssize_t rd = real_read(wake_fd, &v, sizeof(v));
      (void)rd;
    }
    int64_t now = shim_now_ms();
    for (int i = 0; i < n; i++) {
      if (pfds[i].revents == 0 && now < work[i].deadline_ms) {
        continue;
      }
      if (!linger_step(&work[i], now)) {
        continue;
      }
      pthread_mutex_lock(&linger_lock);
      for (int j = 0; j < count; j++) {
        if (entries[j].s == work[i].s && entries[j].fd == work[i].fd) {
          entries[j] = entries[--count];
          break;
        }
      }
      if (count == 0) {
        pthread_cond_broadcast(&linger_drained);
      }
      pthread_mutex_unlock(&linger_lock);
      session_unref(work[i].s);
    }
  }
  return NULL;
}

/* Starts the thread with every signal blocked: signals are the program's. */
static bool start_thread_locked(void) {
  if (running) {
    return true;
  }
  if (wake_fd < 0) {
    wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (wake_fd < 0) {
      return false;
    }
  }
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  pthread_t t;
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  int r = pthread_create(&t, &attr, linger_main, NULL);
  pthread_attr_destroy(&attr);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  running = r == 0;
  return running;
}

bool linger_adopt_locked(struct session *s, int fd) {
  if (s->linger_fd >= 0) {
    return true;
  }
  int dup = real_fcntl(fd, F_DUPFD_CLOEXEC, 3);
  if (dup < 0) {
    return false;
  }
  pthread_mutex_lock(&linger_lock);
  bool ok = start_thread_locked();
  if (ok && count == cap) {
    int c = cap ? cap * 2 : 16;
    struct linger_entry *ne = realloc(entries, (size_t)c * sizeof(*ne));
    if (ne == NULL) {
      ok = false;
    } else {
      entries = ne;
      cap = c;
    }
  }
  if (ok) {
    session_ref(s);
    entries[count++] = (struct linger_entry){
        .s = s, .fd = dup, .deadline_ms = shim_now_ms() + linger_give_up_ms};
    s->linger_fd = dup;
    tlsconn_set_fd(s->conn, dup);
    wake_thread();
  }
  pthread_mutex_unlock(&linger_lock);
  if (!ok) {
    real_close(dup);
  }
  return ok;
}

void linger_atfork(enum shim_fork_phase phase) {
  if (phase == SHIM_FORK_PREPARE) {
    pthread_mutex_lock(&linger_lock);
    return;
  }
  if (phase == SHIM_FORK_PARENT) {
    pthread_mutex_unlock(&linger_lock);
    return;
  }
  pthread_mutex_t fresh = PTHREAD_MUTEX_INITIALIZER;
  linger_lock = fresh;
  pthread_cond_t fresh_cond = PTHREAD_COND_INITIALIZER;
  linger_drained = fresh_cond;
  /* The thread stayed in the parent, which goes on sending: the child lets
   * go of its copies of the duplicates. A session the child still has a
   * descriptor for (a deferred shutdown) goes back to that descriptor. */
  for (int i = 0; i < count; i++) {
    struct session *s = entries[i].s;
    real_close(entries[i].fd);
    if (s->fd_count > 0) {
      s->linger_fd = -1;
      tlsconn_set_fd(s->conn, s->fd);
    }
  }
  count = 0;
  running = false;
  if (wake_fd >= 0) {
    real_close(wake_fd);
    wake_fd = -1;
  }
}

static void goodbye_at_exit(int fd, struct session *s, void *arg) {
  (void)arg;
  session_goodbye_at_exit(s, fd);
}

/* exit() closes what the program left open, and as the kernel would after
 * close(), what is still queued goes out first (bounded: a peer that does
 * not read cannot hold the exit). */
__attribute__((destructor)) static void linger_at_exit(void) {
  fdtable_for_each(goodbye_at_exit, NULL);
  pthread_mutex_lock(&linger_lock);
  if (count > 0 && running) {
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += LINGER_EXIT_MS / 1000;
    while (count > 0) {
      if (pthread_cond_timedwait(&linger_drained, &linger_lock, &until) ==
          ETIMEDOUT) {
        break;
      }
    }
  }
  pthread_mutex_unlock(&linger_lock);
}

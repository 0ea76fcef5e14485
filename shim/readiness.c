/* readiness.c: poll() over a set that holds TLS sessions. A session is
 * ready when the program's call would make progress at the TLS level
 * (plaintext buffered, EOF or error pending, room for a write after the
 * handshake), whatever the kernel socket says; the kernel is asked only
 * for the events the TLS connection needs to move on. */
#include "shim/readiness.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "shim/libc.h"

#define STACK_FDS 64

static int64_t earlier(int64_t a, int64_t b) {
  if (a < 0) {
    return b;
  }
  if (b < 0) {
    return a;
  }
  return a < b ? a : b;
}

int readiness_poll(struct pollfd *fds, nfds_t n, int64_t deadline_ms,
                   const sigset_t *sigmask) {
  struct session *stack_sessions[STACK_FDS];
  struct pollfd stack_kfds[STACK_FDS];
  struct session **sessions = stack_sessions;
  struct pollfd *kfds = stack_kfds;
  if (n > STACK_FDS) {
    sessions = calloc(n, sizeof(*sessions));
    kfds = calloc(n, sizeof(*kfds));
    if (sessions == NULL || kfds == NULL) {
      free(sessions);
      free(kfds);
      return -ENOMEM;
    }
  }
  for (nfds_t i = 0; i < n; i++) {
    sessions[i] = fdtable_get(fds[i].fd);
  }
  int result;
  for (;;) {
    int ready = 0;
    int64_t wake = deadline_ms;
    for (nfds_t i = 0; i < n; i++) {
      kfds[i] = fds[i];
      kfds[i].revents = 0;
      fds[i].revents = 0;
      if (sessions[i] == NULL) {
        continue;
      }
      short wants;
      int64_t w;
      short rev = session_poll_events(sessions[i], fds[i].fd, fds[i].events,
                                      0, &wants, &w);
      fds[i].revents = rev;
      if (rev != 0) {
        ready++;
        kfds[i].fd = -1; /* already answered */
      } else {
        kfds[i].events = wants;
      }
      wake = earlier(wake, w);
    }
    int64_t until = ready > 0 ? 0 : wake;
    struct timespec ts, *tsp = NULL;
    if (until >= 0) {
      int64_t left = ready > 0 ? 0 : until - shim_now_ms();
      if (left < 0) {
        left = 0;
      }
      ts.tv_sec = left / 1000;
      ts.tv_nsec = (left % 1000) * 1000000;
      tsp = &ts;
    }
    int r = real_ppoll(kfds, n, tsp, sigmask);
    if (r < 0) {
      result = ready > 0 ? ready : -errno;
      break;
    }
    for (nfds_t i = 0; i < n; i++) {
      if (sessions[i] == NULL) {
        fds[i].revents = kfds[i].revents;
        if (kfds[i].revents != 0) {
          ready++;
        }
      } else if (kfds[i].fd >= 0 && kfds[i].revents != 0) {
        short wants;
        int64_t w;
        short rev = session_poll_events(sessions[i], fds[i].fd, fds[i].events,
                                        kfds[i].revents, &wants, &w);
        fds[i].revents = rev;
        if (rev != 0) {
          ready++;
        }
      }
    }
    if (ready > 0) {
      result = ready;
      break;
    }
    if (deadline_ms >= 0 && shim_now_ms() >= deadline_ms) {
      result = 0;
      break;
    }
  }
  for (nfds_t i = 0; i < n; i++) {
    session_unref(sessions[i]);
  }
  if (sessions != stack_sessions) {
    free(sessions);
    free(kfds);
  }
  return result;
}

bool readiness_any_session(const struct pollfd *fds, nfds_t n) {
  for (nfds_t i = 0; i < n; i++) {
    if (fdtable_maybe(fds[i].fd)) {
      return true;
    }
  }
  return false;
}

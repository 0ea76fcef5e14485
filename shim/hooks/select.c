/* select.c: select() and pselect(), served by the TLS-level poll when the
 * sets hold a session, untouched otherwise. */
#include <stdlib.h>
#include <sys/select.h>

#include "shim/hooks/hooks.h"
#include "shim/readiness.h"

static bool sets_hold_session(int nfds, fd_set *r, fd_set *w, fd_set *e) {
  for (int fd = 0; fd < nfds && fd < FD_SETSIZE; fd++) {
    if (((r && FD_ISSET(fd, r)) || (w && FD_ISSET(fd, w)) ||
         (e && FD_ISSET(fd, e))) &&
        fdtable_maybe(fd)) {
      return true;
    }
  }
  return false;
}

static int shim_select(int nfds, fd_set *r, fd_set *w, fd_set *e,
                       int64_t deadline_ms, const sigset_t *sigmask) {
  if (nfds < 0 || nfds > FD_SETSIZE) {
    return -EINVAL;
  }
  struct pollfd pfds[FD_SETSIZE];
  nfds_t n = 0;
  for (int fd = 0; fd < nfds; fd++) {
    short ev = 0;
    if (r && FD_ISSET(fd, r)) {
      ev |= POLLIN;
    }
    if (w && FD_ISSET(fd, w)) {
      ev |= POLLOUT;
    }
    if (e && FD_ISSET(fd, e)) {
      ev |= POLLPRI;
    }
    if (ev != 0) {
      pfds[n].fd = fd;
      pfds[n].events = ev;
      pfds[n].revents = 0;
      n++;
    }
  }
  int rc = readiness_poll(pfds, n, deadline_ms, sigmask);
  if (rc < 0) {
    return rc;
  }
  for (nfds_t i = 0; i < n; i++) {
    if (pfds[i].revents & POLLNVAL) {
      return -EBADF;
    }
  }
  if (r) {
    FD_ZERO(r);
  }
  if (w) {
    FD_ZERO(w);
  }
  if (e) {
    FD_ZERO(e);
  }
  int count = 0;
  for (nfds_t i = 0; i < n; i++) {
    short rev = pfds[i].revents;
    int fd = pfds[i].fd;
    /* As the kernel's select: errors and hang-ups make a descriptor
     * readable and writable, so the next call reports them. */
    if (r && (pfds[i].events & POLLIN) && (rev & (POLLIN | POLLHUP | POLLERR))) {
      FD_SET(fd, r);
      count++;
    }
    if (w && (pfds[i].events & POLLOUT) && (rev & (POLLOUT | POLLERR))) {
      FD_SET(fd, w);
      count++;
    }
    if (e && (pfds[i].events & POLLPRI) && (rev & POLLPRI)) {
      FD_SET(fd, e);
      count++;
    }
  }
  return count;
}

HOOK_EXPORT int select(int nfds, fd_set *r, fd_set *w, fd_set *e,
                       struct timeval *tv) {
  int saved_errno = errno;
  if (__builtin_expect(!sets_hold_session(nfds, r, w, e), 1)) {
    return real_select(nfds, r, w, e, tv);
  }
  int64_t deadline =
      tv == NULL ? -1
                 : shim_now_ms() + (int64_t)tv->tv_sec * 1000 + tv->tv_usec / 1000;
  int rc = shim_select(nfds, r, w, e, deadline, NULL);
  if (tv != NULL) {
    /* Linux reports the time left. */
    int64_t left = deadline - shim_now_ms();
    if (left < 0) {
      left = 0;
    }
    tv->tv_sec = left / 1000;
    tv->tv_usec = (left % 1000) * 1000;
  }
  return (int)hook_ret(saved_errno, rc);
}

HOOK_EXPORT int pselect(int nfds, fd_set *r, fd_set *w, fd_set *e,
                        const struct timespec *ts, const sigset_t *sigmask) {
  int saved_errno = errno;
  if (__builtin_expect(!sets_hold_session(nfds, r, w, e), 1)) {
    return real_pselect(nfds, r, w, e, ts, sigmask);
  }
  int64_t deadline =
      ts == NULL ? -1
                 : shim_now_ms() + (int64_t)ts->tv_sec * 1000 + ts->tv_nsec / 1000000;
  return (int)hook_ret(saved_errno, shim_select(nfds, r, w, e, deadline, sigmask));
}

/* close.c: close() and shutdown(). close() removes the descriptor from the
 * table first and only then closes it, so the session's goodbye
 * (close_notify, when it cannot block) still reaches the right socket. */
#include <sys/socket.h>

#include "shim/hooks/hooks.h"

/* Drops |fd|'s hold on its session; the last descriptor ends it. */
static void release_fd(int fd) {
  struct session *s = fdtable_take(fd);
  if (s != NULL) {
    epoll_registry_fd_closed(fd);
    session_detach_fd(s, fd);
    session_unref(s);
  }
}

static void close_later(int fd) {
  int saved = errno;
  release_fd(fd);
  epoll_registry_epfd_closed(fd);
  real_close(fd);
  errno = saved;
}

HOOK_EXPORT int close(int fd) {
  if (__builtin_expect(fdtable_maybe(fd), 0)) {
    /* From a signal handler that interrupted the shim on this thread: the
     * close happens when the interrupted code lets go of its locks (the
     * descriptor stays open until then; never a stale table entry). */
    if (__builtin_expect(shim_lock_depth > 0, 0) &&
        session_defer_close(fd, close_later)) {
      return 0;
    }
    int saved = errno;
    release_fd(fd);
    errno = saved;
  }
  epoll_registry_epfd_closed(fd);
  return real_close(fd);
}

HOOK_EXPORT int shutdown(int fd, int how) {
  int saved_errno = errno;
  if (__builtin_expect(!fdtable_maybe(fd), 1)) {
    return real_shutdown(fd, how);
  }
  struct session *s = fdtable_get(fd);
  if (s == NULL) {
    return real_shutdown(fd, how);
  }
  int r = 0;
  if (how == SHUT_WR || how == SHUT_RDWR) {
    r = session_shutdown_write(s, fd);
  }
  session_unref(s);
  if (r == 1) {
    /* The linger thread shuts down the write side after the queued
     * output; the read side (SHUT_RDWR) goes now. */
    return how == SHUT_RDWR ? real_shutdown(fd, SHUT_RD) : 0;
  }
  if (r < 0 && r != -EPIPE && r != -ECONNRESET) {
    return (int)hook_ret(saved_errno, r);
  }
  return real_shutdown(fd, how);
}

/* Used by dup2/dup3 when they replace a session descriptor. */
void hook_release_fd(int fd) { release_fd(fd); }

/* close_range and closefrom end the sessions of the range as close() does
 * (close_notify when it cannot block, then free), before the kernel closes
 * the descriptors, so no stale entry is left. CLOSE_RANGE_CLOEXEC closes
 * nothing and ends nothing. Epoll instances in the range are forgotten
 * too. */
static void release_range(unsigned first, unsigned last) {
  int fd;
  while ((fd = fdtable_first_in_range(first, last)) >= 0) {
    release_fd(fd);
  }
  epoll_registry_epfds_closed(first, last);
}

HOOK_EXPORT int close_range(unsigned int first, unsigned int last, int flags) {
  if (first <= last &&
      (flags & ~(CLOSE_RANGE_UNSHARE | CLOSE_RANGE_CLOEXEC)) == 0 &&
      (flags & CLOSE_RANGE_CLOEXEC) == 0) {
    int saved = errno;
    release_range(first, last);
    errno = saved;
  }
  return real_close_range(first, last, flags);
}

HOOK_EXPORT void closefrom(int lowfd) {
  if (lowfd >= 0) {
    int saved = errno;
    release_range((unsigned)lowfd, ~0U);
    errno = saved;
  }
  real_closefrom(lowfd);
}

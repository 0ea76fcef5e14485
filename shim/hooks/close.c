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

HOOK_EXPORT int close(int fd) {
  if (__builtin_expect(fdtable_maybe(fd), 0)) {
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

/* dup.c: dup, dup2, dup3: a duplicate shares the session, which ends with
 * its last descriptor. A call that fails leaves every session as it was;
 * a duplicate the table has no room for is closed and the call fails
 * (EMFILE), never left as a plain descriptor of a TLS connection. */
#include <fcntl.h>

#include "shim/hooks/hooks.h"

/* After a successful duplication of |oldfd| into |newfd|. Returns 0, or
 * -EMFILE when |newfd| could not be made a session (it is closed). */
static int share_session(int oldfd, int newfd) {
  struct session *s = fdtable_get(oldfd);
  if (s == NULL) {
    return 0;
  }
  int r = fdtable_set(newfd, s);
  if (r == 0) {
    session_attach_fd(s, newfd);
  } else {
    session_log_failed(s, "duplicate descriptor closed: out of memory");
    real_close(newfd);
  }
  session_unref(s);
  return r == 0 ? 0 : -EMFILE;
}

static int dup_result(int oldfd, int fd) {
  if (fd >= 0 && fdtable_maybe(oldfd)) {
    int r = share_session(oldfd, fd);
    if (r < 0) {
      errno = -r;
      return -1;
    }
  }
  return fd;
}

HOOK_EXPORT int dup(int oldfd) { return dup_result(oldfd, real_dup(oldfd)); }

/* The failures the kernel reports without touching |newfd|, checked before
 * |newfd|'s session is ended (dup2 closes newfd only when it succeeds). */
static bool dup3_would_fail(int oldfd, int newfd, int flags, bool is_dup3) {
  if (is_dup3 && (oldfd == newfd || (flags & ~O_CLOEXEC) != 0)) {
    errno = EINVAL;
    return true;
  }
  if (newfd < 0 || real_fcntl(oldfd, F_GETFD) < 0) {
    errno = EBADF;
    return true;
  }
  return false;
}

static int shim_dup3(int oldfd, int newfd, int flags, bool is_dup3) {
  if (oldfd != newfd && fdtable_maybe(newfd)) {
    if (dup3_would_fail(oldfd, newfd, flags, is_dup3)) {
      return -1;
    }
    hook_release_fd(newfd); /* dup2 closes newfd: end its session first */
  }
  int fd = is_dup3 ? real_dup3(oldfd, newfd, flags) : real_dup2(oldfd, newfd);
  return oldfd != newfd ? dup_result(oldfd, fd) : fd;
}

HOOK_EXPORT int dup2(int oldfd, int newfd) {
  return shim_dup3(oldfd, newfd, 0, false);
}

HOOK_EXPORT int dup3(int oldfd, int newfd, int flags) {
  return shim_dup3(oldfd, newfd, flags, true);
}

/* F_DUPFD and F_DUPFD_CLOEXEC (from fcntl.c): the new descriptor, or -1
 * with errno set. */
int hook_dup_fcntl(int oldfd, int newfd) { return dup_result(oldfd, newfd); }

/* dup.c: dup, dup2, dup3: a duplicate shares the session, which ends with
 * its last descriptor. */
#include <fcntl.h>

#include "shim/hooks/hooks.h"

/* After a successful duplication of |oldfd| into |newfd|. */
static void share_session(int oldfd, int newfd) {
  struct session *s = fdtable_get(oldfd);
  if (s != NULL) {
    fdtable_set(newfd, s);
    session_attach_fd(s, newfd);
    session_unref(s);
  }
}

HOOK_EXPORT int dup(int oldfd) {
  int fd = real_dup(oldfd);
  if (fd >= 0 && fdtable_maybe(oldfd)) {
    share_session(oldfd, fd);
  }
  return fd;
}

static int shim_dup3(int oldfd, int newfd, int flags, bool is_dup3) {
  if (oldfd != newfd && fdtable_maybe(newfd) &&
      real_fcntl(oldfd, F_GETFD) >= 0) {
    hook_release_fd(newfd); /* dup2 closes newfd: end its session first */
  }
  int fd = is_dup3 ? real_dup3(oldfd, newfd, flags) : real_dup2(oldfd, newfd);
  if (fd >= 0 && oldfd != newfd && fdtable_maybe(oldfd)) {
    share_session(oldfd, fd);
  }
  return fd;
}

HOOK_EXPORT int dup2(int oldfd, int newfd) {
  return shim_dup3(oldfd, newfd, 0, false);
}

HOOK_EXPORT int dup3(int oldfd, int newfd, int flags) {
  return shim_dup3(oldfd, newfd, flags, true);
}

/* F_DUPFD and F_DUPFD_CLOEXEC (from fcntl.c). */
void hook_dup_fcntl(int oldfd, int newfd) {
  if (newfd >= 0 && fdtable_maybe(oldfd)) {
    share_session(oldfd, newfd);
  }
}

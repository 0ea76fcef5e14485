/* fcntl.c: fcntl and ioctl. A TLS socket is non-blocking underneath; the
 * program sees and sets its own O_NONBLOCK, kept in the session. */
#include <fcntl.h>
#include <stdarg.h>
#include <sys/ioctl.h>

#include "shim/hooks/hooks.h"

static int shim_fcntl(int fd, int cmd, unsigned long arg, bool is64) {
  int (*real)(int, int, ...) = is64 ? real_fcntl64 : real_fcntl;
  if (__builtin_expect(!fdtable_maybe(fd), 1)) {
    return real(fd, cmd, arg);
  }
  switch (cmd) {
    case F_DUPFD:
    case F_DUPFD_CLOEXEC: {
      return hook_dup_fcntl(fd, real(fd, cmd, arg));
    }
    case F_GETFL:
    case F_SETFL: {
      struct session *s = fdtable_get(fd);
      if (s == NULL) {
        return real(fd, cmd, arg);
      }
      int r;
      if (cmd == F_GETFL) {
        r = real(fd, F_GETFL);
        if (r >= 0) {
          session_lock(s);
          r = (r & ~O_NONBLOCK) | (s->user_nonblock ? O_NONBLOCK : 0);
          session_unlock(s);
        }
      } else {
        r = real(fd, F_SETFL, arg | O_NONBLOCK);
        if (r == 0) {
          session_lock(s);
          s->user_nonblock = (arg & O_NONBLOCK) != 0;
          session_unlock(s);
        }
      }
      session_unref(s);
      return r;
    }
    default:
      return real(fd, cmd, arg);
  }
}

HOOK_EXPORT int fcntl(int fd, int cmd, ...) {
  va_list ap;
  va_start(ap, cmd);
  unsigned long arg = va_arg(ap, unsigned long);
  va_end(ap);
  return shim_fcntl(fd, cmd, arg, false);
}

HOOK_EXPORT int fcntl64(int fd, int cmd, ...) {
  va_list ap;
  va_start(ap, cmd);
  unsigned long arg = va_arg(ap, unsigned long);
  va_end(ap);
  return shim_fcntl(fd, cmd, arg, true);
}

HOOK_EXPORT int ioctl(int fd, unsigned long req, ...) {
  va_list ap;
  va_start(ap, req);
  void *arg = va_arg(ap, void *);
  va_end(ap);
  if (__builtin_expect(!fdtable_maybe(fd), 1) ||
      (req != FIONREAD && req != FIONBIO)) {
    return real_ioctl(fd, req, arg);
  }
  struct session *s = fdtable_get(fd);
  if (s == NULL) {
    return real_ioctl(fd, req, arg);
  }
  int r = 0;
  int saved = errno;
  if (req == FIONREAD) {
    *(int *)arg = session_fionread(s, fd);
  } else {
    session_lock(s);
    s->user_nonblock = *(const int *)arg != 0;
    session_unlock(s);
  }
  session_unref(s);
  errno = saved;
  return r;
}

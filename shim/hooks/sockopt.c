/* sockopt.c: getsockopt, where TLS changes the answer of SO_ERROR: a
 * non-blocking connect has not succeeded until its handshake has. */
#include "shim/hooks/hooks.h"

HOOK_EXPORT int getsockopt(int fd, int level, int name, void *val,
                           socklen_t *len) {
  if (__builtin_expect(!fdtable_maybe(fd), 1) || level != SOL_SOCKET ||
      name != SO_ERROR || val == NULL || len == NULL ||
      *len < (socklen_t)sizeof(int)) {
    return real_getsockopt(fd, level, name, val, len);
  }
  struct session *s = fdtable_get(fd);
  if (s == NULL) {
    return real_getsockopt(fd, level, name, val, len);
  }
  int saved = errno;
  int err = session_so_error(s, fd);
  session_unref(s);
  errno = saved;
  *(int *)val = err;
  *len = sizeof(int);
  return 0;
}

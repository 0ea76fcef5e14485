/* sockopt.c: getsockopt, where TLS changes the answer of SO_ERROR: a
 * non-blocking connect has not succeeded until its handshake has. */
#include <netinet/in.h>
#include <netinet/tcp.h>

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

/* TCP_FASTOPEN_CONNECT makes the kernel connect at the first send that
 * names an address: such a descriptor is hinted in the table so that its
 * sendto/sendmsg decide the connection first (write.c). A connect() is
 * decided by connect.c as always; the handshake's ClientHello is then
 * what rides in the SYN. */
HOOK_EXPORT int setsockopt(int fd, int level, int name, const void *val,
                           socklen_t len) {
  int r = real_setsockopt(fd, level, name, val, len);
  if (__builtin_expect(level == IPPROTO_TCP, 0) && r == 0 &&
      name == TCP_FASTOPEN_CONNECT && val != NULL &&
      len >= (socklen_t)sizeof(int) && *(const int *)val != 0 &&
      !fdtable_maybe(fd)) {
    fdtable_hint_fastopen(fd);
  }
  return r;
}

/* api.c: the optional public API of include/tlsshim.h. */
#include <fcntl.h>
#include <string.h>

#include "include/tlsshim.h"
#include "shim/hooks/hooks.h"

HOOK_EXPORT int tlsshim_conn_info(int fd, struct tlsshim_conn_info *out,
                                  size_t out_size) {
  if (out == NULL || out_size < sizeof(*out)) {
    errno = EINVAL;
    return -1;
  }
  if (real_fcntl(fd, F_GETFD) < 0) {
    errno = EBADF;
    return -1;
  }
  struct session *s = fdtable_get(fd);
  if (s == NULL) {
    memset(out, 0, sizeof(*out));
    return 0;
  }
  session_get_info(s, out);
  session_unref(s);
  return 0;
}

HOOK_EXPORT const char *tlsshim_version(void) { return TLSSHIM_VERSION; }

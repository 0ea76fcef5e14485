/* accept.c: accept() and accept4(), where an inbound connection becomes a
 * session. The handshake is not done here: it runs on the first I/O or
 * readiness check, so a slow client cannot stall an accept loop. */
#include <fcntl.h>
#include <string.h>

#include "shim/log.h"

#include "shim/hooks/hooks.h"

static int shim_accept4(int lfd, struct sockaddr *addr, socklen_t *len,
                        int flags, bool use_accept4) {
  for (;;) {
    int fd = use_accept4 ? real_accept4(lfd, addr, len, flags)
                         : real_accept(lfd, addr, len);
    if (fd < 0) {
      return -errno;
    }
    if (__builtin_expect(fdtable_maybe(fd), 0)) {
      hook_forget_stale_fd(fd);
    }
    struct session *s = NULL;
    int r = shim_decide_inbound(fd, &s);
    if (r < 0) {
      /* deny, or a selected connection the shim cannot serve (no memory):
       * closed before accept would return it, never handed over as
       * plaintext; on to the next. */
      if (r != -EACCES) {
        log_msg(POLICY_LOG_ERROR, "failed",
                "accepted connection closed: cannot make its TLS session: %s",
                strerror(-r));
      }
      real_close(fd);
      continue;
    }
    if (s == NULL) {
      return fd;
    }
    s->user_nonblock = (flags & SOCK_NONBLOCK) != 0;
    int fl = real_fcntl(fd, F_GETFL);
    if (fl >= 0 && !(fl & O_NONBLOCK)) {
      real_fcntl(fd, F_SETFL, fl | O_NONBLOCK);
    }
    if (fdtable_set(fd, s) != 0) {
      /* No table entry: the socket would be plain. Closed, never handed
       * over; on to the next, as above. */
      log_msg(POLICY_LOG_ERROR, "failed",
              "accepted connection closed: cannot make its TLS session: %s",
              strerror(ENOMEM));
      s->failure_logged = true;
      session_unref(s);
      real_close(fd);
      continue;
    }
    session_unref(s);
    return fd;
  }
}

HOOK_EXPORT int accept(int fd, struct sockaddr *addr, socklen_t *len) {
  int saved_errno = errno;
  return (int)hook_ret(saved_errno, shim_accept4(fd, addr, len, 0, false));
}

HOOK_EXPORT int accept4(int fd, struct sockaddr *addr, socklen_t *len,
                        int flags) {
  int saved_errno = errno;
  return (int)hook_ret(saved_errno, shim_accept4(fd, addr, len, flags, true));
}

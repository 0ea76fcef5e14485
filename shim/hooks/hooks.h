/* hooks.h: what every interposed call shares: the errno convention. */
#ifndef TLSSHIM_SHIM_HOOKS_HOOKS_H
#define TLSSHIM_SHIM_HOOKS_HOOKS_H

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/types.h>

#include "shim/internal.h"
#include "shim/libc.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Exported hooks are the only place that sets errno: internal functions
 * return a count or -errno. On success errno is left as the program had it
 * (saved on entry as |saved|), whatever the TLS work underneath did to it. */
static inline ssize_t hook_ret(int saved, ssize_t r) {
  if (r < 0) {
    errno = (int)-r;
    return -1;
  }
  errno = saved;
  return r;
}

/* Shared between hook files. */
void hook_release_fd(int fd);      /* close.c: end fd's hold on its session */
void hook_forget_stale_fd(int fd); /* socket.c: drop a stale table entry */
void hook_dup_fcntl(int oldfd, int newfd); /* dup.c: F_DUPFD shares */

/* glibc's _FORTIFY_SOURCE entry points, served by the same hooks. */
ssize_t __read_chk(int fd, void *buf, size_t len, size_t buflen);
ssize_t __recv_chk(int fd, void *buf, size_t len, size_t buflen, int flags);
ssize_t __recvfrom_chk(int fd, void *buf, size_t len, size_t buflen,
                       int flags, struct sockaddr *addr, socklen_t *addr_len);
int __poll_chk(struct pollfd *fds, nfds_t n, int timeout, size_t fdslen);
int __ppoll_chk(struct pollfd *fds, nfds_t n, const struct timespec *ts,
                const sigset_t *sigmask, size_t fdslen);

#define HOOK_EXPORT __attribute__((visibility("default")))

#ifdef __cplusplus
}
#endif

#endif /* TLSSHIM_SHIM_HOOKS_HOOKS_H */

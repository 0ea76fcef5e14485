/* hooks.h: what every interposed call shares: the errno convention. */
#ifndef TLSSHIM_SHIM_HOOKS_HOOKS_H
#define TLSSHIM_SHIM_HOOKS_HOOKS_H

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>

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
int hook_dup_fcntl(int oldfd, int newfd); /* dup.c: F_DUPFD shares */

/* connect.c: a sendto/sendmsg with an address on |fd|, which is not a
 * session, makes a connection when the kernel does TCP Fast Open
 * (MSG_FASTOPEN, or TCP_FASTOPEN_CONNECT set): it is decided as connect()
 * is. Returns 1 when the call may go to the kernel as it is (not such a
 * call, not TCP, or plaintext), 0 when |fd| is now a connected TLS
 * session (send the data through it), or -errno (EACCES for deny, nothing
 * sent; EINPROGRESS on a non-blocking socket, nothing sent yet). */
int hook_connect_for_send(int fd, const struct sockaddr *addr, socklen_t len,
                          int flags);

/* read.c / write.c: scatter and gather over a session (readv, writev). */
ssize_t hook_session_readv(struct session *s, int fd, const struct iovec *iov,
                           int iovcnt, int flags);
ssize_t hook_session_writev(struct session *s, int fd,
                            const struct iovec *iov, int iovcnt, int flags);

/* glibc's _FORTIFY_SOURCE entry points, served by the same hooks. */
ssize_t __read_chk(int fd, void *buf, size_t len, size_t buflen);
ssize_t __recv_chk(int fd, void *buf, size_t len, size_t buflen, int flags);
ssize_t __recvfrom_chk(int fd, void *buf, size_t len, size_t buflen,
                       int flags, struct sockaddr *addr, socklen_t *addr_len);
ssize_t __pread_chk(int fd, void *buf, size_t len, off_t off, size_t buflen);
ssize_t __pread64_chk(int fd, void *buf, size_t len, off64_t off,
                      size_t buflen);
int __poll_chk(struct pollfd *fds, nfds_t n, int timeout, size_t fdslen);
int __ppoll_chk(struct pollfd *fds, nfds_t n, const struct timespec *ts,
                const sigset_t *sigmask, size_t fdslen);

#define HOOK_EXPORT __attribute__((visibility("default")))

#ifdef __cplusplus
}
#endif

#endif /* TLSSHIM_SHIM_HOOKS_HOOKS_H */

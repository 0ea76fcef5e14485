/* mmsg.c: sendmmsg and recvmmsg. On a TLS socket each message is one
 * sendmsg/recvmsg through the session (the loop glibc's own fallback
 * makes); other sockets go to the kernel untouched. */
#include <time.h>

#include "shim/hooks/hooks.h"

static size_t iov_total(const struct msghdr *m) {
  size_t n = 0;
  for (size_t i = 0; i < m->msg_iovlen; i++) {
    n += m->msg_iov[i].iov_len;
  }
  return n;
}

/* sendmmsg's first message may carry an address that TCP Fast Open would
 * connect to: sendmsg decides it. */
static bool mmsg_fastopen(int flags, const struct mmsghdr *v, unsigned n) {
  return (flags & MSG_FASTOPEN) != 0 && n > 0 && v != NULL &&
         v[0].msg_hdr.msg_name != NULL;
}

HOOK_EXPORT int sendmmsg(int fd, struct mmsghdr *v, unsigned int n,
                         int flags) {
  if (__builtin_expect(!fdtable_maybe(fd) && !mmsg_fastopen(flags, v, n), 1)) {
    return real_sendmmsg(fd, v, n, flags);
  }
  int saved_errno = errno;
  if (n > UIO_MAXIOV) {
    n = UIO_MAXIOV; /* as the kernel caps it */
  }
  unsigned i = 0;
  for (; i < n; i++) {
    ssize_t r = sendmsg(fd, &v[i].msg_hdr, flags);
    if (r < 0) {
      if (i == 0) {
        return -1; /* sendmsg set errno */
      }
      break;
    }
    v[i].msg_len = (unsigned)r;
    if ((size_t)r < iov_total(&v[i].msg_hdr)) {
      i++;
      break; /* a short write: the next message would not follow it */
    }
  }
  errno = saved_errno;
  return (int)i;
}

HOOK_EXPORT int recvmmsg(int fd, struct mmsghdr *v, unsigned int n, int flags,
                         struct timespec *timeout) {
  if (__builtin_expect(!fdtable_maybe(fd), 1)) {
    return real_recvmmsg(fd, v, n, flags, timeout);
  }
  struct session *s = fdtable_get(fd);
  if (s == NULL) {
    return real_recvmmsg(fd, v, n, flags, timeout);
  }
  session_unref(s);
  int saved_errno = errno;
  int64_t deadline = -1;
  if (timeout != NULL) {
    if (timeout->tv_sec < 0 || timeout->tv_nsec < 0 ||
        timeout->tv_nsec >= 1000000000L) {
      errno = EINVAL;
      return -1;
    }
    deadline = shim_now_ms() + (int64_t)timeout->tv_sec * 1000 +
               timeout->tv_nsec / 1000000;
  }
  if (n > UIO_MAXIOV) {
    n = UIO_MAXIOV;
  }
  int f = flags & ~MSG_WAITFORONE;
  unsigned i = 0;
  for (; i < n; i++) {
    ssize_t r = recvmsg(fd, &v[i].msg_hdr, f);
    if (r < 0) {
      if (i == 0) {
        return -1; /* recvmsg set errno */
      }
      break; /* the error is reported by the next call, as the kernel does */
    }
    v[i].msg_len = (unsigned)r;
    if (r == 0) {
      i++;
      break; /* EOF */
    }
    if ((flags & MSG_WAITFORONE) != 0) {
      f |= MSG_DONTWAIT;
    }
    if (deadline >= 0 && shim_now_ms() >= deadline) {
      i++;
      break;
    }
  }
  errno = saved_errno;
  return (int)i;
}

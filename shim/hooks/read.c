/* read.c: the receive family: read, recv, recvfrom, readv, recvmsg and the
 * _FORTIFY_SOURCE variants. A descriptor that is not a session costs one
 * relaxed load before the real call. */
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include "shim/hooks/hooks.h"

static ssize_t session_recv_fd(int fd, void *buf, size_t len, int flags,
                               bool *handled) {
  struct session *s = fdtable_get(fd);
  if (s == NULL) {
    *handled = false;
    return 0;
  }
  *handled = true;
  ssize_t r = session_recv(s, fd, buf, len, flags);
  session_unref(s);
  return r;
}

/* Scatter plaintext over |iov| the way readv would: the first buffer with
 * the call's blocking mode, the rest only with what is already there. */
static ssize_t session_readv(struct session *s, int fd, const struct iovec *iov,
                             int iovcnt, int flags) {
  ssize_t total = 0;
  for (int i = 0; i < iovcnt; i++) {
    if (iov[i].iov_len == 0) {
      continue;
    }
    int f = total == 0 ? flags : (flags | MSG_DONTWAIT);
    ssize_t r = session_recv(s, fd, iov[i].iov_base, iov[i].iov_len, f);
    if (r < 0) {
      return total > 0 ? total : r;
    }
    total += r;
    if ((size_t)r < iov[i].iov_len) {
      break;
    }
  }
  return total;
}

HOOK_EXPORT ssize_t read(int fd, void *buf, size_t len) {
  int saved_errno = errno;
  if (__builtin_expect(!fdtable_maybe(fd), 1)) {
    return real_read(fd, buf, len);
  }
  bool handled;
  ssize_t r = session_recv_fd(fd, buf, len, 0, &handled);
  return handled ? hook_ret(saved_errno, r) : real_read(fd, buf, len);
}

HOOK_EXPORT ssize_t __read_chk(int fd, void *buf, size_t len, size_t buflen) {
  if (len > buflen) {
    __builtin_trap();
  }
  return read(fd, buf, len);
}

HOOK_EXPORT ssize_t recv(int fd, void *buf, size_t len, int flags) {
  int saved_errno = errno;
  if (__builtin_expect(!fdtable_maybe(fd), 1)) {
    return real_recv(fd, buf, len, flags);
  }
  bool handled;
  ssize_t r = session_recv_fd(fd, buf, len, flags, &handled);
  return handled ? hook_ret(saved_errno, r) : real_recv(fd, buf, len, flags);
}

HOOK_EXPORT ssize_t __recv_chk(int fd, void *buf, size_t len, size_t buflen,
                               int flags) {
  if (len > buflen) {
    __builtin_trap();
  }
  return recv(fd, buf, len, flags);
}

HOOK_EXPORT ssize_t recvfrom(int fd, void *buf, size_t len, int flags,
                             struct sockaddr *addr, socklen_t *addr_len) {
  int saved_errno = errno;
  if (__builtin_expect(!fdtable_maybe(fd), 1)) {
    return real_recvfrom(fd, buf, len, flags, addr, addr_len);
  }
  bool handled;
  ssize_t r = session_recv_fd(fd, buf, len, flags, &handled);
  if (!handled) {
    return real_recvfrom(fd, buf, len, flags, addr, addr_len);
  }
  if (r >= 0 && addr != NULL && addr_len != NULL) {
    getpeername(fd, addr, addr_len);
  }
  return hook_ret(saved_errno, r);
}

HOOK_EXPORT ssize_t __recvfrom_chk(int fd, void *buf, size_t len,
                                   size_t buflen, int flags,
                                   struct sockaddr *addr, socklen_t *addr_len) {
  if (len > buflen) {
    __builtin_trap();
  }
  return recvfrom(fd, buf, len, flags, addr, addr_len);
}

HOOK_EXPORT ssize_t readv(int fd, const struct iovec *iov, int iovcnt) {
  int saved_errno = errno;
  if (__builtin_expect(!fdtable_maybe(fd), 1)) {
    return real_readv(fd, iov, iovcnt);
  }
  struct session *s = fdtable_get(fd);
  if (s == NULL) {
    return real_readv(fd, iov, iovcnt);
  }
  ssize_t r = iovcnt < 0 || iovcnt > IOV_MAX ? -EINVAL
                                             : session_readv(s, fd, iov, iovcnt, 0);
  session_unref(s);
  return hook_ret(saved_errno, r);
}

HOOK_EXPORT ssize_t recvmsg(int fd, struct msghdr *msg, int flags) {
  int saved_errno = errno;
  if (__builtin_expect(!fdtable_maybe(fd), 1)) {
    return real_recvmsg(fd, msg, flags);
  }
  struct session *s = fdtable_get(fd);
  if (s == NULL) {
    return real_recvmsg(fd, msg, flags);
  }
  ssize_t r;
  if (msg == NULL || (int)msg->msg_iovlen < 0 || msg->msg_iovlen > IOV_MAX) {
    r = -EINVAL;
  } else {
    r = session_readv(s, fd, msg->msg_iov, (int)msg->msg_iovlen, flags);
    if (r >= 0) {
      /* No ancillary data crosses TLS; the peer is the connected one. */
      msg->msg_controllen = 0;
      msg->msg_flags = 0;
      if (msg->msg_name != NULL) {
        getpeername(fd, msg->msg_name, &msg->msg_namelen);
      }
    }
  }
  session_unref(s);
  return hook_ret(saved_errno, r);
}

ssize_t hook_session_readv(struct session *s, int fd, const struct iovec *iov,
                           int iovcnt, int flags) {
  return session_readv(s, fd, iov, iovcnt, flags);
}

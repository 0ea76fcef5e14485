/* write.c: the send family: write, send, sendto, writev, sendmsg, and
 * sendfile from a file to a TLS socket. */
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include "shim/hooks/hooks.h"

#define GATHER_MAX 16384

static ssize_t session_send_fd(int fd, const void *buf, size_t len, int flags,
                               bool *handled) {
  struct session *s = fdtable_get(fd);
  if (s == NULL) {
    *handled = false;
    return 0;
  }
  *handled = true;
  ssize_t r = session_send(s, fd, buf, len, flags);
  session_unref(s);
  return r;
}

/* Gathers |iov| into record-sized pieces so that many small buffers make
 * few records, as writev makes few segments. */
static ssize_t session_writev(struct session *s, int fd, const struct iovec *iov,
                              int iovcnt, int flags) {
  char chunk[GATHER_MAX];
  ssize_t total = 0;
  int i = 0;
  size_t off = 0; /* offset inside iov[i] */
  for (;;) {
    size_t n = 0;
    int j = i;
    size_t o = off;
    while (j < iovcnt && n < sizeof(chunk)) {
      size_t take = iov[j].iov_len - o;
      if (take > sizeof(chunk) - n) {
        take = sizeof(chunk) - n;
      }
      memcpy(chunk + n, (const char *)iov[j].iov_base + o, take);
      n += take;
      o += take;
      if (o == iov[j].iov_len) {
        j++;
        o = 0;
      }
    }
    if (n == 0) {
      return total;
    }
    ssize_t r = session_send(s, fd, chunk, n, flags);
    if (r < 0) {
      return total > 0 ? total : r;
    }
    total += r;
    if ((size_t)r < n) {
      return total;
    }
    i = j;
    off = o;
  }
}

HOOK_EXPORT ssize_t write(int fd, const void *buf, size_t len) {
  int saved_errno = errno;
  if (__builtin_expect(!fdtable_maybe(fd), 1)) {
    return real_write(fd, buf, len);
  }
  bool handled;
  ssize_t r = session_send_fd(fd, buf, len, 0, &handled);
  return handled ? hook_ret(saved_errno, r) : real_write(fd, buf, len);
}

HOOK_EXPORT ssize_t send(int fd, const void *buf, size_t len, int flags) {
  int saved_errno = errno;
  if (__builtin_expect(!fdtable_maybe(fd), 1)) {
    return real_send(fd, buf, len, flags);
  }
  bool handled;
  ssize_t r = session_send_fd(fd, buf, len, flags, &handled);
  return handled ? hook_ret(saved_errno, r) : real_send(fd, buf, len, flags);
}

HOOK_EXPORT ssize_t sendto(int fd, const void *buf, size_t len, int flags,
                           const struct sockaddr *addr, socklen_t addr_len) {
  int saved_errno = errno;
  if (__builtin_expect(!fdtable_maybe(fd), 1)) {
    return real_sendto(fd, buf, len, flags, addr, addr_len);
  }
  bool handled;
  ssize_t r = session_send_fd(fd, buf, len, flags, &handled);
  return handled ? hook_ret(saved_errno, r)
                 : real_sendto(fd, buf, len, flags, addr, addr_len);
}

HOOK_EXPORT ssize_t writev(int fd, const struct iovec *iov, int iovcnt) {
  int saved_errno = errno;
  if (__builtin_expect(!fdtable_maybe(fd), 1)) {
    return real_writev(fd, iov, iovcnt);
  }
  struct session *s = fdtable_get(fd);
  if (s == NULL) {
    return real_writev(fd, iov, iovcnt);
  }
  ssize_t r = iovcnt < 0 || iovcnt > IOV_MAX
                  ? -EINVAL
                  : session_writev(s, fd, iov, iovcnt, 0);
  session_unref(s);
  return hook_ret(saved_errno, r);
}

HOOK_EXPORT ssize_t sendmsg(int fd, const struct msghdr *msg, int flags) {
  int saved_errno = errno;
  if (__builtin_expect(!fdtable_maybe(fd), 1)) {
    return real_sendmsg(fd, msg, flags);
  }
  struct session *s = fdtable_get(fd);
  if (s == NULL) {
    return real_sendmsg(fd, msg, flags);
  }
  ssize_t r;
  if (msg == NULL || msg->msg_iovlen > IOV_MAX) {
    r = -EINVAL;
  } else {
    r = session_writev(s, fd, msg->msg_iov, (int)msg->msg_iovlen, flags);
  }
  session_unref(s);
  return hook_ret(saved_errno, r);
}

/* sendfile to a TLS socket: read the file, encrypt, send. The file offset
 * (or *offset) advances by what was sent, as sendfile's would. */
static ssize_t session_sendfile(struct session *s, int out_fd, int in_fd,
                                off_t *offset, size_t count) {
  char buf[GATHER_MAX];
  off_t pos = offset != NULL ? *offset : lseek(in_fd, 0, SEEK_CUR);
  if (pos < 0) {
    return -errno;
  }
  ssize_t total = 0;
  while ((size_t)total < count) {
    size_t want = count - (size_t)total;
    if (want > sizeof(buf)) {
      want = sizeof(buf);
    }
    ssize_t n = pread(in_fd, buf, want, pos);
    if (n < 0) {
      if (total > 0) {
        break;
      }
      return -errno;
    }
    if (n == 0) {
      break;
    }
    ssize_t w = session_send(s, out_fd, buf, (size_t)n, 0);
    if (w < 0) {
      if (total > 0) {
        break;
      }
      return w;
    }
    pos += w;
    total += w;
    if (w < n) {
      break;
    }
  }
  if (offset != NULL) {
    *offset = pos;
  } else {
    lseek(in_fd, pos, SEEK_SET);
  }
  return total;
}

HOOK_EXPORT ssize_t sendfile(int out_fd, int in_fd, off_t *offset,
                             size_t count) {
  int saved_errno = errno;
  if (__builtin_expect(!fdtable_maybe(out_fd), 1)) {
    return real_sendfile(out_fd, in_fd, offset, count);
  }
  struct session *s = fdtable_get(out_fd);
  if (s == NULL) {
    return real_sendfile(out_fd, in_fd, offset, count);
  }
  ssize_t r = session_sendfile(s, out_fd, in_fd, offset, count);
  session_unref(s);
  return hook_ret(saved_errno, r);
}

HOOK_EXPORT ssize_t sendfile64(int out_fd, int in_fd, off64_t *offset,
                               size_t count) {
  return sendfile(out_fd, in_fd, (off_t *)offset, count);
}

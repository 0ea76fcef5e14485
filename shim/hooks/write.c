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

/* A send with an address on a descriptor that is not a session, which the
 * kernel may turn into a connection (TCP Fast Open): decided as connect()
 * is (connect.c), then the data goes through the new session. |*pass|:
 * the call goes to the kernel as it is. */
static ssize_t send_with_address(int fd, const struct iovec *iov, int iovcnt,
                                 int flags, const struct sockaddr *addr,
                                 socklen_t addr_len, bool *pass) {
  *pass = false;
  int r = hook_connect_for_send(fd, addr, addr_len, flags);
  if (r == 1) {
    *pass = true;
    return 0;
  }
  if (r < 0) {
    return r;
  }
  struct session *s = fdtable_get(fd);
  if (s == NULL) {
    return -EPIPE; /* closed by another thread meanwhile */
  }
  ssize_t n = session_writev(s, fd, iov, iovcnt, flags & ~MSG_FASTOPEN);
  session_unref(s);
  return n;
}

/* Whether a send needs more than the pass-through: a session, or an
 * address that TCP Fast Open could connect to. */
static inline bool send_needs_shim(int fd, int flags, const void *addr) {
  return fdtable_maybe(fd) || (addr != NULL && (flags & MSG_FASTOPEN) != 0);
}

HOOK_EXPORT ssize_t sendto(int fd, const void *buf, size_t len, int flags,
                           const struct sockaddr *addr, socklen_t addr_len) {
  int saved_errno = errno;
  if (__builtin_expect(!send_needs_shim(fd, flags, addr), 1)) {
    return real_sendto(fd, buf, len, flags, addr, addr_len);
  }
  bool handled;
  ssize_t r = session_send_fd(fd, buf, len, flags & ~MSG_FASTOPEN, &handled);
  if (handled) {
    return hook_ret(saved_errno, r);
  }
  struct iovec iov = {.iov_base = (void *)buf, .iov_len = len};
  bool pass;
  r = send_with_address(fd, &iov, 1, flags, addr, addr_len, &pass);
  return pass ? real_sendto(fd, buf, len, flags, addr, addr_len)
              : hook_ret(saved_errno, r);
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

/* sendmsg with msg_name on a descriptor that is not a session. */
static ssize_t sendmsg_with_address(int fd, const struct msghdr *msg,
                                    int flags, bool *pass) {
  if (msg == NULL || msg->msg_name == NULL || msg->msg_iovlen > IOV_MAX) {
    *pass = true;
    return 0;
  }
  return send_with_address(fd, msg->msg_iov, (int)msg->msg_iovlen, flags,
                           msg->msg_name, msg->msg_namelen, pass);
}

HOOK_EXPORT ssize_t sendmsg(int fd, const struct msghdr *msg, int flags) {
  int saved_errno = errno;
  if (__builtin_expect(
          !send_needs_shim(fd, flags, msg != NULL ? msg->msg_name : NULL),
          1)) {
    return real_sendmsg(fd, msg, flags);
  }
  struct session *s = fdtable_get(fd);
  if (s == NULL) {
    bool pass;
    ssize_t n = sendmsg_with_address(fd, msg, flags, &pass);
    return pass ? real_sendmsg(fd, msg, flags) : hook_ret(saved_errno, n);
  }
  flags &= ~MSG_FASTOPEN;
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

ssize_t hook_session_writev(struct session *s, int fd,
                            const struct iovec *iov, int iovcnt, int flags) {
  return session_writev(s, fd, iov, iovcnt, flags);
}

/* pio.c: the positioned and flagged I/O calls: pread, pwrite, preadv,
 * pwritev (and their *64 names), preadv2, pwritev2.
 *
 * A socket has no file position: the kernel answers ESPIPE to every
 * positioned call on it, and so does the shim for a TLS socket, without a
 * system call. preadv2/pwritev2 with offset -1 use "the current position",
 * which for a socket is readv/writev: they go through the session. */
#include <sys/uio.h>

#include "shim/hooks/hooks.h"

/* Session descriptors answer ESPIPE; others go to the kernel. */
#define PIO_HOOK(name, ret, params, args)                                      \
  HOOK_EXPORT ret name params {                                                \
    if (__builtin_expect(fdtable_maybe(fd), 0)) {                              \
      struct session *s = fdtable_get(fd);                                     \
      if (s != NULL) {                                                         \
        session_unref(s);                                                      \
        errno = ESPIPE;                                                        \
        return -1;                                                             \
      }                                                                        \
    }                                                                          \
    return real_##name args;                                                   \
  }

PIO_HOOK(pread, ssize_t, (int fd, void *buf, size_t len, off_t off),
         (fd, buf, len, off))
PIO_HOOK(pread64, ssize_t, (int fd, void *buf, size_t len, off64_t off),
         (fd, buf, len, off))
PIO_HOOK(pwrite, ssize_t, (int fd, const void *buf, size_t len, off_t off),
         (fd, buf, len, off))
PIO_HOOK(pwrite64, ssize_t,
         (int fd, const void *buf, size_t len, off64_t off),
         (fd, buf, len, off))
PIO_HOOK(preadv, ssize_t,
         (int fd, const struct iovec *iov, int iovcnt, off_t off),
         (fd, iov, iovcnt, off))
PIO_HOOK(preadv64, ssize_t,
         (int fd, const struct iovec *iov, int iovcnt, off64_t off),
         (fd, iov, iovcnt, off))
PIO_HOOK(pwritev, ssize_t,
         (int fd, const struct iovec *iov, int iovcnt, off_t off),
         (fd, iov, iovcnt, off))
PIO_HOOK(pwritev64, ssize_t,
         (int fd, const struct iovec *iov, int iovcnt, off64_t off),
         (fd, iov, iovcnt, off))

HOOK_EXPORT ssize_t __pread_chk(int fd, void *buf, size_t len, off_t off,
                                size_t buflen) {
  if (len > buflen) {
    __builtin_trap();
  }
  return pread(fd, buf, len, off);
}

HOOK_EXPORT ssize_t __pread64_chk(int fd, void *buf, size_t len, off64_t off,
                                  size_t buflen) {
  if (len > buflen) {
    __builtin_trap();
  }
  return pread64(fd, buf, len, off);
}

/* The RWF_* flags a socket accepts, as MSG_* flags: RWF_NOWAIT is
 * MSG_DONTWAIT, the sync and priority hints mean nothing to a socket.
 * -EOPNOTSUPP for flags the kernel does not know. */
static int rwf_to_msg(int rwf, bool is_write) {
  int known = RWF_HIPRI | RWF_DSYNC | RWF_SYNC | RWF_NOWAIT | RWF_APPEND;
  if ((rwf & ~known) != 0) {
    return -EOPNOTSUPP;
  }
  if (!is_write && (rwf & RWF_APPEND) != 0) {
    return -EOPNOTSUPP;
  }
  return (rwf & RWF_NOWAIT) != 0 ? MSG_DONTWAIT : 0;
}

/* preadv2/pwritev2 on a session: -1 is readv/writev, any other offset is
 * ESPIPE as for pread. |*handled| false: not a session. */
static ssize_t session_pv2(int fd, const struct iovec *iov, int iovcnt,
                           off64_t off, int rwf, bool is_write,
                           bool *handled) {
  struct session *s = fdtable_get(fd);
  *handled = s != NULL;
  if (s == NULL) {
    return 0;
  }
  ssize_t r;
  int flags = rwf_to_msg(rwf, is_write);
  if (off != -1) {
    r = -ESPIPE;
  } else if (iovcnt < 0 || iovcnt > IOV_MAX) {
    r = -EINVAL;
  } else if (flags < 0) {
    r = flags;
  } else if (is_write) {
    r = hook_session_writev(s, fd, iov, iovcnt, flags);
  } else {
    r = hook_session_readv(s, fd, iov, iovcnt, flags);
  }
  session_unref(s);
  return r;
}

#define PV2_HOOK(name, offt, is_write)                                         \
  HOOK_EXPORT ssize_t name(int fd, const struct iovec *iov, int iovcnt,        \
                           offt off, int rwf) {                                \
    int saved_errno = errno;                                                   \
    if (__builtin_expect(!fdtable_maybe(fd), 1)) {                             \
      return real_##name(fd, iov, iovcnt, off, rwf);                           \
    }                                                                          \
    bool handled;                                                              \
    ssize_t r = session_pv2(fd, iov, iovcnt, off, rwf, is_write, &handled);    \
    return handled ? hook_ret(saved_errno, r)                                  \
                   : real_##name(fd, iov, iovcnt, off, rwf);                   \
  }

PV2_HOOK(preadv2, off_t, false)
PV2_HOOK(preadv64v2, off64_t, false)
PV2_HOOK(pwritev2, off_t, true)
PV2_HOOK(pwritev64v2, off64_t, true)

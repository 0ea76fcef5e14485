/* splice.c: splice, tee and copy_file_range where one end is a TLS socket.
 *
 * splice moves bytes between a pipe and a socket inside the kernel, past
 * any send or receive call: on a TLS socket the shim moves them itself,
 * through the session, in pieces of at most SPLICE_CHUNK bytes, and never
 * takes from one end more than the other end accepted, so nothing is lost
 * when a non-blocking end is full:
 *  - pipe -> TLS socket: the pipe's bytes are copied with tee() into a
 *    private pipe (the program's pipe keeps them), sent through the
 *    session, and only what the session took is then read from the
 *    program's pipe. SPLICE_F_NONBLOCK applies to the pipe, the socket's
 *    own blocking mode to the socket, as in the kernel.
 *  - TLS socket -> pipe: the session's plaintext is peeked, written to the
 *    pipe (through a non-blocking reopening of it under SPLICE_F_NONBLOCK),
 *    and only what the pipe took is consumed.
 * A socket end with an offset is ESPIPE, two non-pipe ends EINVAL, as the
 * kernel says. tee works on pipes only and copy_file_range on regular files
 * only: on a TLS socket both fail with EINVAL, as the kernel's would,
 * without a system call. */
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <sys/stat.h>

#include "shim/hooks/hooks.h"

#define SPLICE_CHUNK 16384

static bool is_pipe(int fd) {
  struct stat st;
  return fstat(fd, &st) == 0 && S_ISFIFO(st.st_mode);
}

static struct session *session_of(int fd) {
  return fdtable_maybe(fd) ? fdtable_get(fd) : NULL;
}

/* Reads exactly |len| bytes a tee() just showed to be in pipe |fd|. */
static ssize_t read_all(int fd, char *buf, size_t len) {
  size_t got = 0;
  while (got < len) {
    ssize_t n = real_read(fd, buf + got, len - got);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n <= 0) {
      return n < 0 ? -errno : (ssize_t)got;
    }
    got += (size_t)n;
  }
  return (ssize_t)got;
}

/* pipe |in| -> session |s| on |out|. */
static ssize_t splice_to_session(struct session *s, int in, int out,
                                 size_t len, unsigned flags) {
  int scratch[2];
  if (pipe2(scratch, O_CLOEXEC) != 0) {
    return -errno;
  }
  char buf[SPLICE_CHUNK];
  ssize_t total = 0;
  int msg = (flags & SPLICE_F_MORE) != 0 ? MSG_MORE : 0;
  while ((size_t)total < len) {
    size_t want = len - (size_t)total;
    if (want > sizeof(buf)) {
      want = sizeof(buf);
    }
    /* After the first piece, only what the pipe already holds. */
    unsigned tf = total > 0 ? SPLICE_F_NONBLOCK : (flags & SPLICE_F_NONBLOCK);
    ssize_t n = real_tee(in, scratch[1], want, tf);
    if (n < 0) {
      if (total == 0) {
        total = -errno;
      }
      break;
    }
    if (n == 0) {
      break; /* no writer left */
    }
    ssize_t r = read_all(scratch[0], buf, (size_t)n);
    if (r != n) {
      total = total > 0 ? total : (r < 0 ? r : -EIO);
      break;
    }
    ssize_t w = session_send(s, out, buf, (size_t)n, msg);
    if (w < 0) {
      if (total == 0) {
        total = w;
      }
      break;
    }
    /* Take from the program's pipe exactly what the session took. */
    if (w > 0 && read_all(in, buf, (size_t)w) != w) {
      total = total > 0 ? total : -EIO;
      break;
    }
    total += w;
    if (w < n) {
      break;
    }
  }
  real_close(scratch[0]);
  real_close(scratch[1]);
  return total;
}

/* A descriptor to write pipe |fd| with: itself, or under SPLICE_F_NONBLOCK
 * when the program's pipe blocks, a non-blocking reopening of the same pipe
 * (its own file status flags; the program's stay as they are). */
static int pipe_writer(int fd, unsigned flags) {
  int fl = real_fcntl(fd, F_GETFL);
  if ((flags & SPLICE_F_NONBLOCK) == 0 || (fl >= 0 && (fl & O_NONBLOCK))) {
    return fd;
  }
  char path[64];
  snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
  return open(path, O_WRONLY | O_NONBLOCK | O_CLOEXEC);
}

/* session |s| on |in| -> pipe |out|. */
static ssize_t splice_from_session(struct session *s, int in, int out,
                                   size_t len, unsigned flags) {
  char buf[SPLICE_CHUNK];
  if (len > sizeof(buf)) {
    len = sizeof(buf);
  }
  int wfd = pipe_writer(out, flags);
  if (wfd < 0) {
    return -errno;
  }
  /* Under SPLICE_F_NONBLOCK a full pipe is EAGAIN before any input is
   * taken, as in the kernel. */
  struct pollfd p = {.fd = wfd, .events = POLLOUT};
  ssize_t r;
  if ((flags & SPLICE_F_NONBLOCK) != 0 && real_poll(&p, 1, 0) == 0) {
    r = -EAGAIN;
    goto out;
  }
  r = session_recv(s, in, buf, len, MSG_PEEK);
  if (r <= 0) {
    goto out;
  }
  ssize_t w;
  do {
    w = real_write(wfd, buf, (size_t)r);
  } while (w < 0 && errno == EINTR);
  if (w < 0) {
    r = -errno;
    goto out;
  }
  /* Consume what the pipe took: it is inside the shim already. */
  r = session_recv(s, in, buf, (size_t)w, MSG_DONTWAIT);
out:
  if (wfd != out) {
    real_close(wfd);
  }
  return r;
}

HOOK_EXPORT ssize_t splice(int in, off64_t *in_off, int out, off64_t *out_off,
                           size_t len, unsigned int flags) {
  if (__builtin_expect(!fdtable_maybe(in) && !fdtable_maybe(out), 1)) {
    return real_splice(in, in_off, out, out_off, len, flags);
  }
  int saved_errno = errno;
  struct session *sin = session_of(in), *sout = session_of(out);
  ssize_t r;
  if (sin == NULL && sout == NULL) {
    return real_splice(in, in_off, out, out_off, len, flags);
  }
  if ((sin != NULL && in_off != NULL) || (sout != NULL && out_off != NULL)) {
    r = -ESPIPE;
  } else if (sin != NULL && sout != NULL) {
    r = -EINVAL;
  } else if (sout != NULL) {
    r = is_pipe(in) ? splice_to_session(sout, in, out, len, flags) : -EINVAL;
  } else {
    r = is_pipe(out) ? splice_from_session(sin, in, out, len, flags)
                     : -EINVAL;
  }
  session_unref(sin);
  session_unref(sout);
  return len == 0 && r > 0 ? 0 : hook_ret(saved_errno, r);
}

/* Fails |fd| that is a session with EINVAL, as the kernel does for a
 * socket in tee and copy_file_range; false: not a session. */
static bool session_einval(int fd) {
  struct session *s = session_of(fd);
  if (s == NULL) {
    return false;
  }
  session_unref(s);
  errno = EINVAL;
  return true;
}

HOOK_EXPORT ssize_t tee(int in, int out, size_t len, unsigned int flags) {
  if (__builtin_expect(fdtable_maybe(in) || fdtable_maybe(out), 0) &&
      (session_einval(in) || session_einval(out))) {
    return -1;
  }
  return real_tee(in, out, len, flags);
}

HOOK_EXPORT ssize_t copy_file_range(int in, off64_t *in_off, int out,
                                    off64_t *out_off, size_t len,
                                    unsigned int flags) {
  if (__builtin_expect(fdtable_maybe(in) || fdtable_maybe(out), 0) &&
      (session_einval(in) || session_einval(out))) {
    return -1;
  }
  return real_copy_file_range(in, in_off, out, out_off, len, flags);
}

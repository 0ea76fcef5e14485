/* connect.c: connect(), where an outbound connection becomes TLS. */
#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>

#include "shim/hooks/hooks.h"

/* A connect() on a descriptor that is already a session: report the state
 * as a non-blocking connect would (EALREADY until done, then EISCONN). */
static int connect_again(struct session *s, int fd) {
  int err = session_so_error(s, fd);
  if (err != 0) {
    return -err;
  }
  session_lock(s);
  bool done = !s->connecting && s->conn != NULL &&
              tlsconn_state(s->conn) != TLSCONN_HANDSHAKING;
  session_unlock(s);
  return done ? -EISCONN : -EALREADY;
}

/* Connects |fd| as the TLS session |s| (whose reference it takes) that the
 * policy decided: TCP, then for a blocking socket the handshake, before it
 * returns. The table entry is made before the SYN, so that no byte can go
 * out in clear: without memory for it, nothing is sent (ENOBUFS). */
static int connect_session(int fd, const struct sockaddr *addr, socklen_t len,
                           struct session *s) {
  int r;
  int flags = real_fcntl(fd, F_GETFL);
  s->user_nonblock = flags >= 0 && (flags & O_NONBLOCK) != 0;
  if (!s->user_nonblock) {
    real_fcntl(fd, F_SETFL, flags | O_NONBLOCK);
  }
  s->connecting = true;
  if (fdtable_set(fd, s) != 0) {
    if (!s->user_nonblock) {
      real_fcntl(fd, F_SETFL, flags);
    }
    session_log_failed(s, "cannot make its TLS session: out of memory");
    s->failure_logged = true;
    session_unref(s);
    return -ENOBUFS;
  }
  if (real_connect(fd, addr, len) != 0 && errno != EINPROGRESS) {
    int err = errno;
    session_unref(fdtable_take(fd));
    if (!s->user_nonblock) {
      real_fcntl(fd, F_SETFL, flags);
    }
    s->failure_logged = true;
    session_unref(s);
    return -err;
  }
  epoll_registry_session_created(fd);
  if (s->user_nonblock) {
    session_unref(s);
    return -EINPROGRESS;
  }
  /* Blocking: TCP first (bounded by SO_SNDTIMEO as the kernel would), then
   * the handshake, all before connect() returns. */
  int64_t timeo = shim_sock_timeout_ms(fd, SO_SNDTIMEO);
  int w = shim_wait(fd, POLLOUT, timeo < 0 ? -1 : shim_now_ms() + timeo);
  if (w <= 0) {
    session_unref(s);
    return w < 0 ? w : -EINPROGRESS;
  }
  int err = session_tcp_connected(s, fd);
  if (err != 0) {
    /* TCP failed: the socket is plain again, as it would be. */
    struct session *taken = fdtable_take(fd);
    session_unref(taken);
    session_unref(s);
    real_fcntl(fd, F_SETFL, flags);
    return -err;
  }
  r = session_handshake_blocking(s, fd);
  session_unref(s);
  return r;
}

static int shim_connect(int fd, const struct sockaddr *addr, socklen_t len) {
  struct session *s = fdtable_get(fd);
  if (s != NULL) {
    int r = connect_again(s, fd);
    session_unref(s);
    return r;
  }
  int r = shim_decide_outbound(fd, addr, len, &s);
  if (r < 0) {
    return r;
  }
  if (s == NULL) {
    return real_connect(fd, addr, len) == 0 ? 0 : -errno;
  }
  return connect_session(fd, addr, len, s);
}

int hook_connect_for_send(int fd, const struct sockaddr *addr, socklen_t len,
                          int flags) {
  if (addr == NULL ||
      ((flags & MSG_FASTOPEN) == 0 && !fdtable_fastopen_hinted(fd))) {
    return 1;
  }
  struct sockaddr_storage peer;
  socklen_t plen = sizeof(peer);
  if (getpeername(fd, (struct sockaddr *)&peer, &plen) == 0) {
    return 1; /* already connected: decided when it connected */
  }
  struct session *s;
  int r = shim_decide_outbound(fd, addr, len, &s);
  if (r < 0 || s == NULL) {
    return r < 0 ? r : 1; /* deny (logged), or plaintext: as the kernel does */
  }
  r = connect_session(fd, addr, len, s);
  return r == -EINPROGRESS ? -EINPROGRESS : (r < 0 ? r : 0);
}

HOOK_EXPORT int connect(int fd, const struct sockaddr *addr, socklen_t len) {
  int saved_errno = errno;
  return (int)hook_ret(saved_errno, shim_connect(fd, addr, len));
}

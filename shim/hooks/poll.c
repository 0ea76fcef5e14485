/* poll.c: poll() and ppoll() with TLS-level readiness. */
#include <poll.h>

#include "shim/hooks/hooks.h"
#include "shim/readiness.h"

static int64_t deadline_from_ms(int timeout) {
  return timeout < 0 ? -1 : shim_now_ms() + timeout;
}

static int64_t deadline_from_ts(const struct timespec *ts) {
  if (ts == NULL) {
    return -1;
  }
  return shim_now_ms() + (int64_t)ts->tv_sec * 1000 + ts->tv_nsec / 1000000;
}

HOOK_EXPORT int poll(struct pollfd *fds, nfds_t n, int timeout) {
  int saved_errno = errno;
  if (__builtin_expect(!readiness_any_session(fds, n), 1)) {
    return real_poll(fds, n, timeout);
  }
  return (int)hook_ret(saved_errno, readiness_poll(fds, n, deadline_from_ms(timeout), NULL));
}

HOOK_EXPORT int __poll_chk(struct pollfd *fds, nfds_t n, int timeout,
                           size_t fdslen) {
  if (fdslen / sizeof(*fds) < n) {
    __builtin_trap();
  }
  return poll(fds, n, timeout);
}

HOOK_EXPORT int ppoll(struct pollfd *fds, nfds_t n, const struct timespec *ts,
                      const sigset_t *sigmask) {
  int saved_errno = errno;
  if (__builtin_expect(!readiness_any_session(fds, n), 1)) {
    return real_ppoll(fds, n, ts, sigmask);
  }
  return (int)hook_ret(saved_errno, readiness_poll(fds, n, deadline_from_ts(ts), sigmask));
}

HOOK_EXPORT int __ppoll_chk(struct pollfd *fds, nfds_t n,
                            const struct timespec *ts, const sigset_t *sigmask,
                            size_t fdslen) {
  if (fdslen / sizeof(*fds) < n) {
    __builtin_trap();
  }
  return ppoll(fds, n, ts, sigmask);
}

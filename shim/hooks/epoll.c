/* epoll.c: epoll_create*, epoll_ctl and the epoll_wait family. Instances
 * that hold no TLS descriptor are served by the real calls as they are. */
#include <sys/epoll.h>

#include "shim/epoll_registry.h"
#include "shim/hooks/hooks.h"

HOOK_EXPORT int epoll_create(int size) {
  int fd = real_epoll_create(size);
  if (fd >= 0) {
    epoll_registry_created(fd);
  }
  return fd;
}

HOOK_EXPORT int epoll_create1(int flags) {
  int fd = real_epoll_create1(flags);
  if (fd >= 0) {
    epoll_registry_created(fd);
  }
  return fd;
}

HOOK_EXPORT int epoll_ctl(int epfd, int op, int fd, struct epoll_event *ev) {
  int saved_errno = errno;
  return (int)hook_ret(saved_errno, epoll_registry_ctl(epfd, op, fd, ev));
}

static int64_t deadline_ms(int timeout) {
  return timeout < 0 ? -1 : shim_now_ms() + timeout;
}

HOOK_EXPORT int epoll_wait(int epfd, struct epoll_event *events, int max,
                           int timeout) {
  int saved_errno = errno;
  bool handled;
  int r = epoll_registry_wait(epfd, events, max, deadline_ms(timeout), NULL,
                              &handled);
  return handled ? (int)hook_ret(saved_errno, r)
                 : real_epoll_wait(epfd, events, max, timeout);
}

HOOK_EXPORT int epoll_pwait(int epfd, struct epoll_event *events, int max,
                            int timeout, const sigset_t *sigmask) {
  int saved_errno = errno;
  bool handled;
  int r = epoll_registry_wait(epfd, events, max, deadline_ms(timeout), sigmask,
                              &handled);
  return handled ? (int)hook_ret(saved_errno, r)
                 : real_epoll_pwait(epfd, events, max, timeout, sigmask);
}

HOOK_EXPORT int epoll_pwait2(int epfd, struct epoll_event *events, int max,
                             const struct timespec *ts,
                             const sigset_t *sigmask) {
  int saved_errno = errno;
  bool handled;
  int64_t d = ts == NULL ? -1
                         : shim_now_ms() + (int64_t)ts->tv_sec * 1000 +
                               ts->tv_nsec / 1000000;
  int r = epoll_registry_wait(epfd, events, max, d, sigmask, &handled);
  return handled ? (int)hook_ret(saved_errno, r)
                 : real_epoll_pwait2(epfd, events, max, ts, sigmask);
}

/* readiness.h: TLS-level poll() for sets that hold sessions. */
#ifndef TLSSHIM_SHIM_READINESS_H
#define TLSSHIM_SHIM_READINESS_H

#include <poll.h>
#include <signal.h>
#include <stdbool.h>

#include "shim/internal.h"

#ifdef __cplusplus
extern "C" {
#endif

/* readiness_poll behaves like ppoll(2) with an absolute deadline
 * (CLOCK_MONOTONIC ms, -1 = none), returning the count or -errno. */
int readiness_poll(struct pollfd *fds, nfds_t n, int64_t deadline_ms,
                   const sigset_t *sigmask);

/* readiness_any_session reports whether any descriptor might be a session
 * (lock-free; false means the real call can be used as it is). */
bool readiness_any_session(const struct pollfd *fds, nfds_t n);

#ifdef __cplusplus
}
#endif

#endif /* TLSSHIM_SHIM_READINESS_H */

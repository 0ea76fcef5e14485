/* epoll_registry.h: what the program registered in each epoll instance,
 * and the TLS-level epoll_wait. */
#ifndef TLSSHIM_SHIM_EPOLL_REGISTRY_H
#define TLSSHIM_SHIM_EPOLL_REGISTRY_H

#include <signal.h>
#include <stdbool.h>
#include <sys/epoll.h>

#include "shim/internal.h"

#ifdef __cplusplus
extern "C" {
#endif

struct ep_inst;

/* epoll_registry_created starts tracking a new epoll descriptor. */
void epoll_registry_created(int epfd);
void epoll_registry_free(struct ep_inst *inst);

/* epoll_registry_ctl is epoll_ctl(2); returns 0 or -errno. */
int epoll_registry_ctl(int epfd, int op, int fd, struct epoll_event *ev);

/* epoll_registry_wait is epoll_pwait2 with an absolute deadline (-1: none).
 * |*handled| false means the instance holds no TLS descriptor and the
 * caller should make the real call itself. Returns the count or -errno. */
int epoll_registry_wait(int epfd, struct epoll_event *events, int max,
                        int64_t deadline_ms, const sigset_t *sigmask,
                        bool *handled);

#ifdef __cplusplus
}
#endif

#endif /* TLSSHIM_SHIM_EPOLL_REGISTRY_H */

/* atfork.c: the fork handlers that leave every lock of the shim usable in a
 * forked child (pthread_atfork).
 *
 * prepare takes the shim's global locks in one fixed order, the order in
 * which the code nests them: the configuration (reload) lock, the names
 * lock, the epoll registry (its instance list, then each instance), the fd
 * table, the linger thread's state. So no other thread is inside any of
 * them at the moment of fork: the parent releases them, the child, where
 * only the forking thread exists, makes them new. Session locks are not
 * taken (a session lock is held across BoringSSL calls, and there may be
 * many): the child makes them new, since no other thread exists there to
 * hold one. */
#include "shim/internal.h"

static void reinit_session_lock(int fd, struct session *s, void *arg) {
  (void)fd;
  (void)arg;
  pthread_mutex_t fresh = PTHREAD_MUTEX_INITIALIZER;
  s->lock = fresh;
}

static void fork_prepare(void) {
  shim_config_atfork(SHIM_FORK_PREPARE);
  names_atfork(SHIM_FORK_PREPARE);
  epoll_registry_atfork(SHIM_FORK_PREPARE);
  fdtable_atfork(SHIM_FORK_PREPARE);
  linger_atfork(SHIM_FORK_PREPARE);
}

static void fork_parent(void) {
  linger_atfork(SHIM_FORK_PARENT);
  fdtable_atfork(SHIM_FORK_PARENT);
  epoll_registry_atfork(SHIM_FORK_PARENT);
  names_atfork(SHIM_FORK_PARENT);
  shim_config_atfork(SHIM_FORK_PARENT);
}

static void fork_child(void) {
  shim_config_atfork(SHIM_FORK_CHILD);
  names_atfork(SHIM_FORK_CHILD);
  epoll_registry_atfork(SHIM_FORK_CHILD);
  fdtable_atfork(SHIM_FORK_CHILD);
  fdtable_for_each(reinit_session_lock, NULL);
  linger_atfork(SHIM_FORK_CHILD); /* after the session locks, see linger.c */
}

void shim_atfork_install(void) {
  pthread_atfork(fork_prepare, fork_parent, fork_child);
}

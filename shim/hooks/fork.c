/* fork.c: fork(). The child inherits every session; a session that one
 * side never uses after the fork does not say goodbye when that side
 * closes it, so pre-fork servers and fork-per-connection servers work. */
#include "shim/hooks/hooks.h"

static void reinit_lock(int fd, struct session *s, void *arg) {
  (void)fd;
  (void)arg;
  pthread_mutex_t fresh = PTHREAD_MUTEX_INITIALIZER;
  s->lock = fresh;
}

HOOK_EXPORT pid_t fork(void) {
  session_mark_all_forked();
  pid_t pid = real_fork();
  if (pid == 0) {
    /* Only this thread exists in the child: locks held by others at the
     * moment of fork would never be released. */
    fdtable_atfork_child();
    fdtable_for_each(reinit_lock, NULL);
    linger_atfork_child();
  }
  return pid;
}

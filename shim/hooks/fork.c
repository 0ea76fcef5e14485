/* fork.c: fork(). The child inherits every session; a session that one
 * side never uses after the fork does not say goodbye when that side
 * closes it, so pre-fork servers and fork-per-connection servers work.
 * The locks are made usable in the child by the fork handlers of
 * shim/atfork.c, which glibc's fork runs. */
#include "shim/hooks/hooks.h"

HOOK_EXPORT pid_t fork(void) {
  session_mark_all_forked();
  return real_fork();
}

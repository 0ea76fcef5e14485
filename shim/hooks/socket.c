/* socket.c: socket(). A new socket is never a session; a table entry left
 * on its number (a descriptor closed behind the shim's back, by fclose or
 * close_range) is dropped, silently. */
#include "shim/hooks/hooks.h"

HOOK_EXPORT int socket(int domain, int type, int protocol) {
  int fd = real_socket(domain, type, protocol);
  if (fd >= 0 && __builtin_expect(fdtable_maybe(fd), 0)) {
    hook_forget_stale_fd(fd);
  }
  return fd;
}

void hook_forget_stale_fd(int fd) {
  struct session *s = fdtable_take(fd);
  if (s != NULL) {
    epoll_registry_fd_closed(fd);
    session_lock(s);
    s->fd_count--;
    if (s->fd == fd && s->conn != NULL) {
      tlsconn_set_fd(s->conn, -1);
    }
    session_unlock(s);
    session_unref(s);
  }
}

/* exec.c: a TLS session cannot cross exec. Before exec, the descriptors
 * that are TLS and stay open are named in TLSSHIM_EXEC_TLS_FDS; the new
 * image's shim makes each of them fail every read and write with EPROTO,
 * and logs why, so they never carry plaintext. */
#include "shim/exec.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shim/libc.h"
#include "shim/log.h"

#define EXEC_ENV "TLSSHIM_EXEC_TLS_FDS"

struct fd_list {
  char *buf;
  size_t len, cap;
};

static void collect(int fd, struct session *s, void *arg) {
  struct fd_list *l = arg;
  if (s->kind != SESSION_TLS && s->kind != SESSION_EXEC_DEAD) {
    return;
  }
  int fl = real_fcntl(fd, F_GETFD);
  if (fl < 0 || (fl & FD_CLOEXEC)) {
    return;
  }
  if (l->len + 16 > l->cap) {
    return;
  }
  l->len += (size_t)snprintf(l->buf + l->len, l->cap - l->len, "%s%d",
                             l->len > strlen(EXEC_ENV "=") ? "," : "", fd);
}

char *exec_env_entry(void) {
  if (fdtable_count() == 0) {
    return NULL;
  }
  static __thread char entry[4096];
  struct fd_list l = {.buf = entry, .cap = sizeof(entry)};
  l.len = (size_t)snprintf(entry, sizeof(entry), "%s=", EXEC_ENV);
  size_t empty = l.len;
  fdtable_for_each(collect, &l);
  return l.len > empty ? entry : NULL;
}

char **exec_envp_with(char *const envp[], char *entry, char **storage,
                      size_t storage_len) {
  size_t n = 0;
  size_t prefix = strlen(EXEC_ENV "=");
  char **out = storage;
  for (size_t i = 0; envp != NULL && envp[i] != NULL; i++) {
    if (strncmp(envp[i], EXEC_ENV "=", prefix) == 0) {
      continue;
    }
    if (n + 2 >= storage_len) {
      return NULL;
    }
    out[n++] = envp[i];
  }
  out[n++] = entry;
  out[n] = NULL;
  return out;
}

void exec_restore_dead_fds(void) {
  const char *v = getenv(EXEC_ENV);
  if (v == NULL) {
    return;
  }
  char copy[4096];
  snprintf(copy, sizeof(copy), "%s", v);
  unsetenv(EXEC_ENV);
  char *save = NULL;
  for (char *tok = strtok_r(copy, ",", &save); tok != NULL;
       tok = strtok_r(NULL, ",", &save)) {
    int fd = atoi(tok);
    if (fd < 0 || real_fcntl(fd, F_GETFD) < 0) {
      continue;
    }
    struct session *s = session_new();
    if (s == NULL) {
      continue;
    }
    s->kind = SESSION_EXEC_DEAD;
    s->fd = fd;
    fdtable_set(fd, s);
    session_unref(s);
    log_msg(POLICY_LOG_WARN, "exec",
            "descriptor %d was a TLS connection before exec; a TLS session "
            "cannot cross exec, so its reads and writes fail with EPROTO",
            fd);
  }
}

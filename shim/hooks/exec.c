/* exec.c: the exec family. A TLS session cannot cross exec: the new image
 * is told which descriptors were TLS (see shim/exec.c). */
#include <stdarg.h>
#include <stdlib.h>
#include <unistd.h>

#include "shim/exec.h"
#include "shim/hooks/hooks.h"
#include "shim/status.h"

extern char **environ;

static size_t env_count(char *const envp[]) {
  size_t n = 0;
  while (envp != NULL && envp[n] != NULL) {
    n++;
  }
  return n;
}

/* Calls |fn| with |envp| extended by the TLS descriptor list, if any. */
#define WITH_EXEC_ENV(envp, call_plain, call_env)                              \
  do {                                                                         \
    status_before_exec();                                                      \
    char *entry = exec_env_entry();                                            \
    if (entry == NULL) {                                                       \
      return call_plain;                                                       \
    }                                                                          \
    size_t cap = env_count(envp) + 2;                                          \
    char *storage[cap];                                                        \
    char **new_env = exec_envp_with(envp, entry, storage, cap);                \
    if (new_env == NULL) {                                                     \
      return call_plain;                                                       \
    }                                                                          \
    return call_env;                                                           \
  } while (0)

HOOK_EXPORT int execve(const char *path, char *const argv[],
                       char *const envp[]) {
  WITH_EXEC_ENV(envp, real_execve(path, argv, envp),
                real_execve(path, argv, new_env));
}

HOOK_EXPORT int execvpe(const char *file, char *const argv[],
                        char *const envp[]) {
  WITH_EXEC_ENV(envp, real_execvpe(file, argv, envp),
                real_execvpe(file, argv, new_env));
}

HOOK_EXPORT int fexecve(int fd, char *const argv[], char *const envp[]) {
  WITH_EXEC_ENV(envp, real_fexecve(fd, argv, envp),
                real_fexecve(fd, argv, new_env));
}

HOOK_EXPORT int execveat(int dirfd, const char *path, char *const argv[],
                         char *const envp[], int flags) {
  WITH_EXEC_ENV(envp, real_execveat(dirfd, path, argv, envp, flags),
                real_execveat(dirfd, path, argv, new_env, flags));
}

HOOK_EXPORT int execv(const char *path, char *const argv[]) {
  return execve(path, argv, environ);
}

HOOK_EXPORT int execvp(const char *file, char *const argv[]) {
  return execvpe(file, argv, environ);
}

/* Collects execl-style arguments (up to the NULL) into |argv|. */
#define COLLECT_ARGS(first, ap, argv, max)                                     \
  do {                                                                         \
    size_t i_ = 0;                                                             \
    argv[i_++] = (char *)(first);                                              \
    while (i_ < (max)-1) {                                                     \
      char *a_ = va_arg(ap, char *);                                           \
      argv[i_++] = a_;                                                         \
      if (a_ == NULL) {                                                        \
        break;                                                                 \
      }                                                                        \
    }                                                                          \
    argv[(max)-1] = NULL;                                                      \
  } while (0)

#define EXECL_MAX_ARGS 4096

HOOK_EXPORT int execl(const char *path, const char *arg, ...) {
  char *argv[EXECL_MAX_ARGS];
  va_list ap;
  va_start(ap, arg);
  COLLECT_ARGS(arg, ap, argv, EXECL_MAX_ARGS);
  va_end(ap);
  return execve(path, argv, environ);
}

HOOK_EXPORT int execlp(const char *file, const char *arg, ...) {
  char *argv[EXECL_MAX_ARGS];
  va_list ap;
  va_start(ap, arg);
  COLLECT_ARGS(arg, ap, argv, EXECL_MAX_ARGS);
  va_end(ap);
  return execvpe(file, argv, environ);
}

HOOK_EXPORT int execle(const char *path, const char *arg, ...) {
  char *argv[EXECL_MAX_ARGS];
  va_list ap;
  va_start(ap, arg);
  COLLECT_ARGS(arg, ap, argv, EXECL_MAX_ARGS);
  char *const *envp = va_arg(ap, char *const *);
  va_end(ap);
  return execve(path, argv, envp);
}

/* statusfile.c: what the writer (shim/status.c) and the readers (tlsshim
 * status, tlsshim metrics) share: reason classes, the status directory,
 * and a consistent read of every live process's file. */
#include "shim/status/statusfile.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* The status file is a seqlock whose other side is another process: its
 * fences order the header's sequence number around the copy. TSan does not
 * model fences (GCC warns, and -Werror stops the TSan build); the file is
 * not memory TSan could check anyway. */
#if defined(__SANITIZE_THREAD__)
#pragma GCC diagnostic ignored "-Wtsan"
#endif

static const char *const class_names[STATUSFILE_CLASS_COUNT] = {
    "certificate", "name",  "protocol", "cipher", "group",
    "timeout",     "reset", "garbage",  "other",
};

const char *statusfile_class_name(enum statusfile_class c) {
  return (unsigned)c < STATUSFILE_CLASS_COUNT ? class_names[c] : "other";
}

static bool starts(const char *s, const char *prefix) {
  return strncmp(s, prefix, strlen(prefix)) == 0;
}

/* The reasons are those of shim/tls/verify.c (tls_chain_error,
 * tls_describe_failure), session.c and linger.c, and strerror() texts. */
enum statusfile_class statusfile_classify(const char *reason) {
  if (reason == NULL) {
    return STATUSFILE_OTHER;
  }
  if (starts(reason, "peer name mismatch") ||
      starts(reason, "peer identity not allowed")) {
    return STATUSFILE_NAME;
  }
  if (starts(reason, "certificate") || starts(reason, "no CRL") ||
      starts(reason, "peer rejected our certificate") ||
      starts(reason, "server requires a client certificate") ||
      starts(reason, "client certificate required")) {
    return STATUSFILE_CERTIFICATE;
  }
  if (starts(reason, "peer sent garbage")) {
    return STATUSFILE_GARBAGE;
  }
  if (starts(reason, "no common protocol version")) {
    return STATUSFILE_PROTOCOL;
  }
  if (starts(reason, "no common cipher") ||
      strstr(reason, "no common cipher or group") != NULL) {
    return STATUSFILE_CIPHER;
  }
  if (starts(reason, "no common group")) {
    return STATUSFILE_GROUP;
  }
  if (starts(reason, "handshake timeout") ||
      strstr(reason, strerror(ETIMEDOUT)) != NULL ||
      strstr(reason, "gave up") != NULL) {
    return STATUSFILE_TIMEOUT;
  }
  if (starts(reason, "peer closed") ||
      strstr(reason, strerror(ECONNRESET)) != NULL ||
      strstr(reason, strerror(EPIPE)) != NULL) {
    return STATUSFILE_RESET;
  }
  if (starts(reason, "peer sent alert") || starts(reason, "TLS error")) {
    return STATUSFILE_PROTOCOL;
  }
  return STATUSFILE_OTHER;
}

/* Ours, or ours to make: /run/tlsshim is root's in practice. */
static bool run_dir_usable(void) {
  struct stat sb;
  if (lstat("/run/tlsshim", &sb) == 0) {
    return S_ISDIR(sb.st_mode) && sb.st_uid == geteuid() &&
           access("/run/tlsshim", W_OK | X_OK) == 0;
  }
  return access("/run", W_OK | X_OK) == 0;
}

void statusfile_default_dir(char *out, size_t out_len, bool secure) {
  const char *xdg = secure ? NULL : getenv("XDG_RUNTIME_DIR");
  if (xdg != NULL && xdg[0] == '/') {
    snprintf(out, out_len, "%s/tlsshim", xdg);
  } else if (run_dir_usable()) {
    snprintf(out, out_len, "/run/tlsshim");
  } else {
    snprintf(out, out_len, "/tmp/tlsshim-%u", (unsigned)geteuid());
  }
}

int statusfile_secure_dir(const char *dir) {
  if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
    return -errno;
  }
  struct stat sb;
  if (lstat(dir, &sb) != 0) {
    return -errno;
  }
  if (!S_ISDIR(sb.st_mode) || sb.st_uid != geteuid() ||
      (sb.st_mode & 077) != 0) {
    return -EPERM;
  }
  return 0;
}

uint64_t statusfile_parse_stat(const char *stat_text, char *out_state) {
  /* The command name (field 2) may hold spaces and parentheses: count
   * fields from the last ')'. */
  const char *p = strrchr(stat_text, ')');
  if (out_state != NULL) {
    *out_state = p != NULL && p[1] == ' ' ? p[2] : '?';
  }
  if (p == NULL) {
    return 0;
  }
  int field = 2;
  for (p++; *p != '\0' && field < 22; p++) {
    if (*p == ' ') {
      field++;
    }
  }
  return field == 22 ? strtoull(p, NULL, 10) : 0;
}

/* Readers only: the shim reads its own through real_read. */
uint64_t statusfile_start_ticks(int pid, char *out_state) {
  char path[64], buf[1024];
  snprintf(path, sizeof(path), "/proc/%d/stat", pid);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return 0;
  }
  ssize_t n = read(fd, buf, sizeof(buf) - 1);
  close(fd);
  if (n <= 0) {
    return 0;
  }
  buf[n] = '\0';
  return statusfile_parse_stat(buf, out_state);
}

int statusfile_read_consistent(const volatile struct statusfile *src,
                               struct statusfile *out) {
  for (int tries = 0; tries < 10000; tries++) {
    uint32_t before = __atomic_load_n(&src->h.seq, __ATOMIC_ACQUIRE);
    if ((before & 1) != 0) {
      sched_yield();
      continue;
    }
    memcpy(out, (const void *)src, sizeof(*out));
    __atomic_thread_fence(__ATOMIC_ACQUIRE);
    if (__atomic_load_n(&src->h.seq, __ATOMIC_RELAXED) == before) {
      return 0;
    }
  }
  return -EAGAIN;
}

/* 1: live, 0: gone (its file is stale), -1: unknown (keep it). */
static int process_alive(const struct statusfile_header *h) {
  if (kill(h->pid, 0) != 0 && errno == ESRCH) {
    return 0;
  }
  char st;
  uint64_t ticks = statusfile_start_ticks(h->pid, &st);
  if (ticks == 0) {
    return kill(h->pid, 0) != 0 && errno == ESRCH ? 0 : -1;
  }
  /* A zombie has ended: only its parent has not looked yet. */
  return ticks == h->start_ticks && st != 'Z' && st != 'X' ? 1 : 0;
}

/* Reads one file. 1: |out| filled, 0: skipped, -errno. */
static int read_one(const char *path, int pid, struct statusfile *out) {
  int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) {
    return errno == ENOENT ? 0 : -errno;
  }
  struct stat sb;
  if (fstat(fd, &sb) != 0 || sb.st_size < (off_t)sizeof(struct statusfile)) {
    close(fd);
    /* A file still being made is never under its final name. */
    if (kill(pid, 0) != 0 && errno == ESRCH) {
      unlink(path);
    }
    return 0;
  }
  void *map =
      mmap(NULL, sizeof(struct statusfile), PROT_READ, MAP_SHARED, fd, 0);
  close(fd);
  if (map == MAP_FAILED) {
    return -errno;
  }
  int r = statusfile_read_consistent(map, out);
  munmap(map, sizeof(struct statusfile));
  if (r != 0) {
    return 0;
  }
  if (out->h.magic != STATUSFILE_MAGIC ||
      out->h.version != STATUSFILE_VERSION ||
      out->h.size != sizeof(struct statusfile) || out->h.pid != pid) {
    return 0;
  }
  if (process_alive(&out->h) == 0) {
    unlink(path);
    return 0;
  }
  return 1;
}

static int by_pid(const void *a, const void *b) {
  const struct statusfile_snapshot *x = a, *y = b;
  return (x->f.h.pid > y->f.h.pid) - (x->f.h.pid < y->f.h.pid);
}

static bool wanted(int pid, const int *pids, size_t pid_count) {
  if (pid_count == 0) {
    return true;
  }
  for (size_t i = 0; i < pid_count; i++) {
    if (pids[i] == pid) {
      return true;
    }
  }
  return false;
}

/* Parses "<pid>.status" (or "<pid>.status.tmp" when |tmp|). */
static int name_pid(const char *name, bool *tmp) {
  char *end;
  long pid = strtol(name, &end, 10);
  if (end == name || pid <= 0 || pid > 0x7fffffff) {
    return -1;
  }
  *tmp = strcmp(end, ".status.tmp") == 0;
  return (*tmp || strcmp(end, ".status") == 0) ? (int)pid : -1;
}

int statusfile_read_dir(const char *dir, const int *pids, size_t pid_count,
                        struct statusfile_snapshot **out, size_t *out_count) {
  *out = NULL;
  *out_count = 0;
  DIR *d = opendir(dir);
  if (d == NULL) {
    return errno == ENOENT ? 0 : -errno;
  }
  struct statusfile_snapshot *list = NULL;
  size_t count = 0, cap = 0;
  int rc = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    bool tmp;
    int pid = name_pid(e->d_name, &tmp);
    if (pid < 0) {
      continue;
    }
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
    if (tmp) {
      if (kill(pid, 0) != 0 && errno == ESRCH) {
        unlink(path); /* the process died while making its file */
      }
      continue;
    }
    if (!wanted(pid, pids, pid_count)) {
      continue;
    }
    if (count == cap) {
      size_t ncap = cap ? cap * 2 : 8;
      struct statusfile_snapshot *n = realloc(list, ncap * sizeof(*list));
      if (n == NULL) {
        rc = -ENOMEM;
        break;
      }
      list = n;
      cap = ncap;
    }
    int r = read_one(path, pid, &list[count].f);
    if (r < 0) {
      continue; /* unreadable (another user's): not ours to show */
    }
    if (r == 1) {
      snprintf(list[count].path, sizeof(list[count].path), "%s", path);
      count++;
    }
  }
  closedir(d);
  if (rc != 0) {
    free(list);
    return rc;
  }
  if (count > 1) { /* list is NULL when the directory held no file */
    qsort(list, count, sizeof(*list), by_pid);
  }
  *out = list;
  *out_count = count;
  return 0;
}

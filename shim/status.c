/* status.c: writes this process's status file (SPEC 9): the open TLS
 * connections and the counters, for `tlsshim status` and `tlsshim metrics`.
 *
 * The file is <dir>/<pid>.status, mapped shared at one address for the
 * life of the process; sessions keep a pointer to their slot in it. It is
 * made on the first event, complete under a temporary name and then
 * renamed, and removed at exit and before exec. Events write under
 * status_lock inside the file's sequence lock; byte counters are written
 * by the session that owns the slot (status_count).
 *
 * fork: the child must never write the parent's file. Its handler moves a
 * private copy of the mapping onto the same address (so inherited sessions
 * keep valid slot pointers), and the child's first event makes its own
 * file from that copy, with its counters at zero. */
#include "shim/status.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "shim/internal.h"
#include "shim/libc.h"
#include "shim/log.h"

/* The status file is a seqlock whose other side is another process: its
 * fences order the header's sequence number around the copy. TSan does not
 * model fences (GCC warns, and -Werror stops the TSan build); the file is
 * not memory TSan could check anyway. */
#if defined(__SANITIZE_THREAD__)
#pragma GCC diagnostic ignored "-Wtsan"
#endif

enum status_state {
  ST_OFF = 0, /* status.enabled false, or not configured */
  ST_LAZY,    /* the file is made at the first event */
  ST_MAPPED,  /* |map| is our file */
  ST_PRIVATE, /* |map| is a private copy (after fork or exec): the next
                 event makes our own file from it */
  ST_FAILED,  /* the file could not be made: no status, said once */
};

static pthread_mutex_t status_lock = PTHREAD_MUTEX_INITIALIZER;
static int state;              /* enum status_state, read atomically */
static struct statusfile *map; /* fixed once made */
static pid_t owner;            /* the pid |map| belongs to */
static int64_t started_ms;
static char dir[400];
static char path[420];

static int64_t realtime_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void copy_field(char *dst, size_t dst_len, const char *src) {
  snprintf(dst, dst_len, "%s", src != NULL ? src : "");
}

static void fork_child(void);
static void make_private(void);
static void make_now_if_root(void);

void status_configure(const struct policy *p, bool secure) {
  static bool registered;
  if (!p->status.enabled) {
    __atomic_store_n(&state, ST_OFF, __ATOMIC_RELEASE);
    return;
  }
  if (p->status.dir != NULL) {
    copy_field(dir, sizeof(dir), p->status.dir);
  } else {
    statusfile_default_dir(dir, sizeof(dir), secure);
  }
  started_ms = realtime_ms();
  if (!registered) {
    registered = true;
    pthread_atfork(NULL, NULL, fork_child);
  }
  __atomic_store_n(&state, ST_LAZY, __ATOMIC_RELEASE);
  make_now_if_root();
}

static uint64_t own_start_ticks(void) {
  char buf[1024];
  int fd = open("/proc/self/stat", O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return 0;
  }
  ssize_t n = real_read(fd, buf, sizeof(buf) - 1);
  real_close(fd);
  if (n <= 0) {
    return 0;
  }
  buf[n] = '\0';
  return statusfile_parse_stat(buf, NULL);
}

/* This process's identity in a fresh header; counters start at zero. */
static void reset_header(struct statusfile *f, pid_t pid) {
  memset(&f->h, 0, sizeof(f->h));
  f->h.magic = STATUSFILE_MAGIC;
  f->h.version = STATUSFILE_VERSION;
  f->h.size = sizeof(*f);
  f->h.pid = pid;
  f->h.start_ticks = own_start_ticks();
  f->h.started_ms = started_ms;
  ssize_t n =
      readlink("/proc/self/exe", f->h.program, sizeof(f->h.program) - 1);
  f->h.program[n > 0 ? n : 0] = '\0';
  for (uint32_t i = 0; i < f->rule_count && i < STATUSFILE_RULES; i++) {
    struct statusfile_rule *r = &f->rules[i];
    char name[sizeof(r->name)];
    memcpy(name, r->name, sizeof(name));
    memset(r, 0, sizeof(*r));
    memcpy(r->name, name, sizeof(name));
  }
  memset(f->combos, 0, sizeof(f->combos));
  f->combo_count = 0;
}

static int write_all(int fd, const void *buf, size_t len) {
  const char *p = buf;
  while (len > 0) {
    ssize_t n = real_write(fd, p, len);
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      return -errno;
    }
    p += n;
    len -= (size_t)n;
  }
  return 0;
}

/* Makes our file: from scratch (ST_LAZY) or from the private copy at
 * |map| (ST_PRIVATE), which it replaces at the same address. Caller holds
 * status_lock. Returns 0 or -errno. */
static int make_file(void) {
  int r = statusfile_secure_dir(dir);
  if (r != 0) {
    return r;
  }
  pid_t pid = getpid();
  char tmp[440];
  snprintf(path, sizeof(path), "%s/%d.status", dir, (int)pid);
  snprintf(tmp, sizeof(tmp), "%s.tmp", path);
  int fd = open(tmp, O_RDWR | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0) {
    return -errno;
  }
  if (map != NULL) {
    reset_header(map, pid);
    r = write_all(fd, map, sizeof(*map));
  } else if (ftruncate(fd, sizeof(struct statusfile)) != 0) {
    r = -errno;
  }
  void *m = MAP_FAILED;
  if (r == 0) {
    int flags = MAP_SHARED | (map != NULL ? MAP_FIXED : 0);
    m = mmap(map, sizeof(struct statusfile), PROT_READ | PROT_WRITE, flags, fd,
             0);
    if (m == MAP_FAILED) {
      r = -errno;
    }
  }
  real_close(fd);
  if (r == 0 && map == NULL) {
    map = m;
    reset_header(map, pid);
  }
  if (r == 0 && rename(tmp, path) != 0) {
    r = -errno;
  }
  if (r != 0) {
    unlink(tmp);
    path[0] = '\0';
    return r;
  }
  owner = pid;
  return 0;
}

/* The file, made if need be. Caller holds status_lock. */
static struct statusfile *file_locked(void) {
  int st = __atomic_load_n(&state, __ATOMIC_ACQUIRE);
  if (st == ST_MAPPED && owner != getpid()) {
    /* A child made by clone() without the fork handlers. */
    started_ms = realtime_ms();
    make_private();
    st = __atomic_load_n(&state, __ATOMIC_ACQUIRE);
  }
  if (st == ST_MAPPED) {
    return map;
  }
  if (st != ST_LAZY && st != ST_PRIVATE) {
    return NULL;
  }
  int r = make_file();
  if (r != 0) {
    __atomic_store_n(&state, ST_FAILED, __ATOMIC_RELEASE);
    log_msg(POLICY_LOG_WARN, "status",
            "cannot keep the status file in %s: %s; this process is not "
            "shown by tlsshim status",
            dir,
            r == -EPERM ? "not a private directory of this user"
                        : strerror(-r));
    return NULL;
  }
  __atomic_store_n(&state, ST_MAPPED, __ATOMIC_RELEASE);
  return map;
}

/* The write side of the sequence lock. */
static void write_begin(struct statusfile *f) {
  __atomic_store_n(&f->h.seq, f->h.seq + 1, __ATOMIC_RELAXED);
  __atomic_thread_fence(__ATOMIC_RELEASE);
}

static void write_end(struct statusfile *f) {
  __atomic_store_n(&f->h.seq, f->h.seq + 1, __ATOMIC_RELEASE);
}

/* Begins an event: the file, locked and inside the sequence lock, or NULL
 * (nothing to do, no lock held). */
static struct statusfile *event_begin(void) {
  int st = __atomic_load_n(&state, __ATOMIC_ACQUIRE);
  if (st == ST_OFF || st == ST_FAILED) {
    return NULL;
  }
  int saved = errno;
  pthread_mutex_lock(&status_lock);
  struct statusfile *f = file_locked();
  if (f == NULL) {
    pthread_mutex_unlock(&status_lock);
    errno = saved;
    return NULL;
  }
  write_begin(f);
  errno = saved;
  return f;
}

static void event_end(struct statusfile *f) {
  write_end(f);
  pthread_mutex_unlock(&status_lock);
}

/* The index of |name| in the rules, added if new; -1 when full. */
static int rule_index(struct statusfile *f, const char *name) {
  for (uint32_t i = 0; i < f->rule_count; i++) {
    if (strncmp(f->rules[i].name, name, sizeof(f->rules[i].name) - 1) == 0) {
      return (int)i;
    }
  }
  if (f->rule_count >= STATUSFILE_RULES) {
    f->h.rules_overflow++;
    return -1;
  }
  copy_field(f->rules[f->rule_count].name, sizeof(f->rules[0].name), name);
  return (int)f->rule_count++;
}

static void count_combo(struct statusfile *f, int rule, int direction,
                        const struct tlsconn_info *info) {
  for (uint32_t i = 0; i < f->combo_count; i++) {
    struct statusfile_combo *c = &f->combos[i];
    if (c->rule == rule && c->direction == direction &&
        c->resumed == info->resumed && strcmp(c->version, info->version) == 0 &&
        strcmp(c->cipher, info->cipher) == 0 &&
        strcmp(c->group, info->group) == 0) {
      c->count++;
      return;
    }
  }
  if (f->combo_count >= STATUSFILE_COMBOS) {
    f->h.combos_overflow++;
    return;
  }
  struct statusfile_combo *c = &f->combos[f->combo_count++];
  c->used = 1;
  c->rule = (uint16_t)rule;
  c->direction = (uint8_t)direction;
  c->resumed = info->resumed;
  copy_field(c->version, sizeof(c->version), info->version);
  copy_field(c->cipher, sizeof(c->cipher), info->cipher);
  copy_field(c->group, sizeof(c->group), info->group);
  c->count = 1;
}

struct statusfile_conn *status_established(const struct session *s,
                                           const struct tlsconn_info *info) {
  struct statusfile *f = event_begin();
  if (f == NULL) {
    return NULL;
  }
  int dirn = s->is_server ? STATUSFILE_INBOUND : STATUSFILE_OUTBOUND;
  int rule = rule_index(f, s->rule_name);
  struct statusfile_conn *slot = NULL;
  if (rule >= 0) {
    count_combo(f, rule, dirn, info);
    for (size_t i = 0; i < STATUSFILE_CONNS && slot == NULL; i++) {
      if (f->conns[i].used == 0) {
        slot = &f->conns[i];
      }
    }
  }
  if (slot != NULL) {
    memset(slot, 0, sizeof(*slot));
    slot->used = 1;
    slot->rule = (uint16_t)rule;
    slot->direction = (uint8_t)dirn;
    slot->resumed = info->resumed;
    slot->started_ms = realtime_ms();
    copy_field(slot->local, sizeof(slot->local), s->local);
    copy_field(slot->peer, sizeof(slot->peer), s->peer);
    copy_field(slot->name, sizeof(slot->name),
               s->name[0] ? s->name : info->server_name);
    copy_field(slot->version, sizeof(slot->version), info->version);
    copy_field(slot->cipher, sizeof(slot->cipher), info->cipher);
    copy_field(slot->group, sizeof(slot->group), info->group);
    copy_field(slot->peer_identity, sizeof(slot->peer_identity),
               info->peer_identity);
  } else {
    f->h.conns_untracked++;
  }
  event_end(f);
  return slot;
}

void status_closed(struct statusfile_conn *slot) {
  struct statusfile *f = event_begin();
  if (f == NULL) {
    return;
  }
  if (slot >= f->conns && slot < f->conns + STATUSFILE_CONNS &&
      slot->used != 0) {
    if (slot->rule < f->rule_count) {
      f->rules[slot->rule].bytes_in += slot->bytes_in;
      f->rules[slot->rule].bytes_out += slot->bytes_out;
    }
    memset(slot, 0, sizeof(*slot));
  }
  event_end(f);
}

void status_failed(const char *rule, bool inbound, const char *reason) {
  struct statusfile *f = event_begin();
  if (f == NULL) {
    return;
  }
  int i = rule_index(f, rule);
  if (i >= 0) {
    f->rules[i].failed[inbound ? 1 : 0][statusfile_classify(reason)]++;
  }
  event_end(f);
}

void status_decision(enum status_decision d, const char *rule, bool inbound) {
  struct statusfile *f = event_begin();
  if (f == NULL) {
    return;
  }
  int i = rule_index(f, rule);
  if (i >= 0) {
    struct statusfile_rule *r = &f->rules[i];
    switch (d) {
    case STATUS_DENIED:
      r->denied[inbound ? 1 : 0]++;
      break;
    case STATUS_PLAINTEXT:
      r->plaintext[inbound ? 1 : 0]++;
      break;
    case STATUS_PERMISSIVE_TLS:
      r->permissive_tls++;
      break;
    case STATUS_PERMISSIVE_PLAINTEXT:
      r->permissive_plaintext++;
      break;
    }
  }
  event_end(f);
}

void status_reload(bool accepted) {
  struct statusfile *f = event_begin();
  if (f == NULL) {
    return;
  }
  if (accepted) {
    f->h.reloads_accepted++;
  } else {
    f->h.reloads_rejected++;
  }
  event_end(f);
}

/* A private copy of the mapping onto the same address, so that nothing
 * this process does reaches the file of the one it was forked from, and
 * no file of ours yet. */
static void make_private(void) {
  int st = __atomic_load_n(&state, __ATOMIC_ACQUIRE);
  path[0] = '\0';
  if (st != ST_MAPPED && st != ST_PRIVATE) {
    return;
  }
  void *copy = mmap(NULL, sizeof(*map), PROT_READ | PROT_WRITE,
                    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (copy != MAP_FAILED) {
    memcpy(copy, map, sizeof(*map));
    if (mremap(copy, sizeof(*map), sizeof(*map), MREMAP_MAYMOVE | MREMAP_FIXED,
               map) != MAP_FAILED) {
      __atomic_store_n(&state, ST_PRIVATE, __ATOMIC_RELEASE);
      return;
    }
    munmap(copy, sizeof(*map));
  }
  /* No copy: blank private memory keeps the slot pointers valid, and this
   * process keeps no status. */
  mmap(map, sizeof(*map), PROT_READ | PROT_WRITE,
       MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
  __atomic_store_n(&state, ST_FAILED, __ATOMIC_RELEASE);
}

/* In a forked child, which has one thread. */
static void fork_child(void) {
  pthread_mutex_t fresh = PTHREAD_MUTEX_INITIALIZER;
  status_lock = fresh;
  started_ms = realtime_ms();
  make_private();
  make_now_if_root();
}

/* A process running as root may drop to another user later (nginx's and
 * postgres's workers do, right after fork), and could then no longer make
 * its file in a directory of root's: it makes it now, at start-up and in
 * each forked child, and keeps writing it through the mapping. (After
 * such a drop it cannot remove it at exit: the next reader does.) Other
 * processes make theirs at their first event. */
static void make_now_if_root(void) {
  if (geteuid() != 0) {
    return;
  }
  pthread_mutex_lock(&status_lock);
  (void)file_locked();
  pthread_mutex_unlock(&status_lock);
}

void status_before_exec(void) {
  pthread_mutex_lock(&status_lock);
  if (__atomic_load_n(&state, __ATOMIC_ACQUIRE) == ST_MAPPED &&
      owner == getpid() && path[0] != '\0') {
    unlink(path);
    path[0] = '\0';
    __atomic_store_n(&state, ST_PRIVATE, __ATOMIC_RELEASE);
  }
  pthread_mutex_unlock(&status_lock);
}

/* exit(): the file goes with the process. */
__attribute__((destructor)) static void status_at_exit(void) {
  if (__atomic_load_n(&state, __ATOMIC_ACQUIRE) == ST_MAPPED &&
      owner == getpid() && path[0] != '\0') {
    unlink(path);
  }
}

/* fdtable.c: descriptor -> session, the only file with <uthash.h>.
 *
 * A byte per descriptor (fd_flag) lets every hook ask "could this be a
 * session?" without a lock or a hash lookup; only descriptors that are
 * sessions ever have their byte set, so files, pipes and unselected sockets
 * cost one relaxed load. The hash holds the sessions under table_lock. */
#include "shim/internal.h"

#include <errno.h>
#include <stdlib.h>
#include <uthash.h>

#define FD_FLAG_MAX (1 << 20)
#define FD_FLAG_SESSION 1
#define FD_FLAG_FASTOPEN 2 /* no session yet: TCP_FASTOPEN_CONNECT was set */

struct fd_entry {
  int fd;
  struct session *session;
  UT_hash_handle hh;
};

static unsigned char fd_flag[FD_FLAG_MAX];
static int any_high_fd; /* a session exists at fd >= FD_FLAG_MAX */
static struct fd_entry *table;
static pthread_mutex_t table_lock = PTHREAD_MUTEX_INITIALIZER;
static size_t table_count;

/* The table lock counts in shim_lock_depth (signal safety, internal.h). */
static void table_lock_enter(void) {
  shim_lock_enter();
  pthread_mutex_lock(&table_lock);
}

static void table_lock_leave(void) {
  pthread_mutex_unlock(&table_lock);
  shim_lock_leave();
}

bool fdtable_maybe(int fd) {
  if (fd < 0) {
    return false;
  }
  if (fd < FD_FLAG_MAX) {
    return __atomic_load_n(&fd_flag[fd], __ATOMIC_ACQUIRE) != 0;
  }
  return __atomic_load_n(&any_high_fd, __ATOMIC_ACQUIRE) != 0;
}

static void flag_set(int fd, unsigned char v) {
  if (fd < FD_FLAG_MAX) {
    __atomic_store_n(&fd_flag[fd], v, __ATOMIC_RELEASE);
  } else if (v) {
    __atomic_store_n(&any_high_fd, 1, __ATOMIC_RELEASE);
  }
}

struct session *fdtable_get(int fd) {
  if (!fdtable_maybe(fd)) {
    return NULL;
  }
  if (__builtin_expect(shim_lock_depth > 0, 0)) {
    return &session_busy; /* a signal handler inside the shim's locks */
  }
  struct fd_entry *e;
  struct session *s = NULL;
  table_lock_enter();
  HASH_FIND_INT(table, &fd, e);
  if (e != NULL) {
    s = e->session;
    session_ref(s);
  }
  table_lock_leave();
  return s;
}

/* Test hook (TLSSHIM_TEST_FAIL_FDTABLE=N): every Nth new table entry fails
 * to allocate, to show that the calls fail closed. */
int fdtable_fail_every;
static unsigned entry_alloc_count;

static struct fd_entry *entry_new(void) {
  if (fdtable_fail_every > 0 &&
      __atomic_add_fetch(&entry_alloc_count, 1, __ATOMIC_RELAXED) %
              (unsigned)fdtable_fail_every == 0) {
    return NULL;
  }
  return calloc(1, sizeof(struct fd_entry));
}

int fdtable_set(int fd, struct session *s) {
  struct fd_entry *e;
  struct session *old = NULL;
  session_ref(s);
  table_lock_enter();
  HASH_FIND_INT(table, &fd, e);
  if (e != NULL) {
    old = e->session;
    e->session = s;
  } else {
    e = entry_new();
    if (e == NULL) {
      table_lock_leave();
      session_unref(s);
      return -ENOMEM;
    }
    e->fd = fd;
    e->session = s;
    HASH_ADD_INT(table, fd, e);
    table_count++;
  }
  flag_set(fd, FD_FLAG_SESSION);
  table_lock_leave();
  if (old != NULL) {
    session_unref(old);
  }
  return 0;
}

struct session *fdtable_take(int fd) {
  if (!fdtable_maybe(fd)) {
    return NULL;
  }
  struct fd_entry *e;
  struct session *s = NULL;
  table_lock_enter();
  HASH_FIND_INT(table, &fd, e);
  if (e != NULL) {
    s = e->session;
    HASH_DEL(table, e);
    table_count--;
    free(e);
  }
  flag_set(fd, 0); /* also a FASTOPEN hint on a descriptor with no entry */
  table_lock_leave();
  return s;
}

void fdtable_for_each(void (*fn)(int fd, struct session *s, void *arg),
                      void *arg) {
  struct fd_entry *e, *tmp;
  table_lock_enter();
  HASH_ITER(hh, table, e, tmp) { fn(e->fd, e->session, arg); }
  table_lock_leave();
}

void fdtable_hint_fastopen(int fd) {
  if (fd >= 0 && fd < FD_FLAG_MAX) {
    unsigned char zero = 0;
    __atomic_compare_exchange_n(&fd_flag[fd], &zero, FD_FLAG_FASTOPEN, false,
                                __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);
  }
}

bool fdtable_fastopen_hinted(int fd) {
  return fd >= 0 && fd < FD_FLAG_MAX &&
         __atomic_load_n(&fd_flag[fd], __ATOMIC_ACQUIRE) == FD_FLAG_FASTOPEN;
}

int fdtable_first_in_range(unsigned first, unsigned last) {
  struct fd_entry *e, *tmp;
  int best = -1;
  table_lock_enter();
  HASH_ITER(hh, table, e, tmp) {
    if ((unsigned)e->fd >= first && (unsigned)e->fd <= last &&
        (best < 0 || e->fd < best)) {
      best = e->fd;
    }
  }
  table_lock_leave();
  return best;
}

size_t fdtable_count(void) {
  table_lock_enter();
  size_t n = table_count;
  table_lock_leave();
  return n;
}

void fdtable_atfork(enum shim_fork_phase phase) {
  if (phase == SHIM_FORK_PREPARE) {
    pthread_mutex_lock(&table_lock);
  } else if (phase == SHIM_FORK_PARENT) {
    pthread_mutex_unlock(&table_lock);
  } else {
    pthread_mutex_t fresh = PTHREAD_MUTEX_INITIALIZER;
    table_lock = fresh;
  }
}

/* fdtable.c: descriptor -> session, the only file with <uthash.h>.
 *
 * A byte per descriptor (fd_flag) lets every hook ask "could this be a
 * session?" without a lock or a hash lookup; only descriptors that are
 * sessions ever have their byte set, so files, pipes and unselected sockets
 * cost one relaxed load. The hash holds the sessions under table_lock. */
#include "shim/internal.h"

#include <stdlib.h>
#include <uthash.h>

#define FD_FLAG_MAX (1 << 20)

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
  struct fd_entry *e;
  struct session *s = NULL;
  pthread_mutex_lock(&table_lock);
  HASH_FIND_INT(table, &fd, e);
  if (e != NULL) {
    s = e->session;
    session_ref(s);
  }
  pthread_mutex_unlock(&table_lock);
  return s;
}

void fdtable_set(int fd, struct session *s) {
  struct fd_entry *e;
  struct session *old = NULL;
  session_ref(s);
  pthread_mutex_lock(&table_lock);
  HASH_FIND_INT(table, &fd, e);
  if (e != NULL) {
    old = e->session;
    e->session = s;
  } else {
    e = calloc(1, sizeof(*e));
    if (e == NULL) {
      pthread_mutex_unlock(&table_lock);
      session_unref(s);
      return;
    }
    e->fd = fd;
    e->session = s;
    HASH_ADD_INT(table, fd, e);
    table_count++;
  }
  flag_set(fd, 1);
  pthread_mutex_unlock(&table_lock);
  if (old != NULL) {
    session_unref(old);
  }
}

struct session *fdtable_take(int fd) {
  if (!fdtable_maybe(fd)) {
    return NULL;
  }
  struct fd_entry *e;
  struct session *s = NULL;
  pthread_mutex_lock(&table_lock);
  HASH_FIND_INT(table, &fd, e);
  if (e != NULL) {
    s = e->session;
    HASH_DEL(table, e);
    table_count--;
    free(e);
    flag_set(fd, 0);
  }
  pthread_mutex_unlock(&table_lock);
  return s;
}

void fdtable_for_each(void (*fn)(int fd, struct session *s, void *arg),
                      void *arg) {
  struct fd_entry *e, *tmp;
  pthread_mutex_lock(&table_lock);
  HASH_ITER(hh, table, e, tmp) { fn(e->fd, e->session, arg); }
  pthread_mutex_unlock(&table_lock);
}

size_t fdtable_count(void) {
  pthread_mutex_lock(&table_lock);
  size_t n = table_count;
  pthread_mutex_unlock(&table_lock);
  return n;
}

void fdtable_atfork_child(void) {
  pthread_mutex_t fresh = PTHREAD_MUTEX_INITIALIZER;
  table_lock = fresh;
}

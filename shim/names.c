/* names.c: which host names the program resolved to which address, per
 * thread, so that an outbound connection can be matched by name, send SNI
 * and be verified against the name the program meant.
 *
 * Every (address, name) pair a lookup returned is kept, with the thread
 * that resolved it last and when: a second lookup of another name to the
 * same address adds a candidate, it never replaces the first (SPEC 4). The
 * table is bounded (NAMES_MAX pairs); when it is full the pair used least
 * recently is forgotten, with a warn log line naming it, so that a
 * decision that changes because of it is never silent. Locking: names_lock
 * guards everything here; see atfork.c for fork. */
#include "shim/internal.h"

#include <stdio.h>
#include <string.h>

#include "shim/log.h"

#define NAMES_MAX 4096
#define NAMES_BUCKETS 1024

struct name_entry {
  uint8_t addr[16];
  char name[256];
  unsigned thread; /* thread_tag() of the thread that resolved it last */
  uint64_t stamp;  /* last resolved or used */
  int next;        /* next entry of the bucket, -1 */
  bool used;
};

static struct name_entry entries[NAMES_MAX];
static int buckets[NAMES_BUCKETS];
static size_t entry_count;
static uint64_t clock_tick;
static bool buckets_ready;
static unsigned thread_tags;
static __thread unsigned my_tag;
static pthread_mutex_t names_lock = PTHREAD_MUTEX_INITIALIZER;

static unsigned thread_tag(void) {
  if (my_tag == 0) {
    my_tag = __atomic_add_fetch(&thread_tags, 1, __ATOMIC_RELAXED);
  }
  return my_tag;
}

static unsigned bucket_of(const uint8_t addr[16]) {
  uint32_t h = 2166136261u;
  for (int i = 0; i < 16; i++) {
    h = (h ^ addr[i]) * 16777619u;
  }
  return h % NAMES_BUCKETS;
}

static void buckets_init_locked(void) {
  if (!buckets_ready) {
    for (int i = 0; i < NAMES_BUCKETS; i++) {
      buckets[i] = -1;
    }
    buckets_ready = true;
  }
}

static void unlink_locked(int idx) {
  int *p = &buckets[bucket_of(entries[idx].addr)];
  while (*p != idx) {
    p = &entries[*p].next;
  }
  *p = entries[idx].next;
  entries[idx].used = false;
  entry_count--;
}

/* A free slot, forgetting the least recently used pair if need be (its
 * name and address are copied out for the log line). */
static int slot_locked(char *evicted, size_t evicted_len) {
  int oldest = -1;
  for (int i = 0; i < NAMES_MAX; i++) {
    if (!entries[i].used) {
      return i;
    }
    if (oldest < 0 || entries[i].stamp < entries[oldest].stamp) {
      oldest = i;
    }
  }
  char text[64];
  policy_format_address(entries[oldest].addr, text, sizeof(text));
  snprintf(evicted, evicted_len, "%s for %s", entries[oldest].name, text);
  unlink_locked(oldest);
  return oldest;
}

void names_remember(const uint8_t addr[16], const char *name) {
  if (name == NULL || name[0] == '\0' || strlen(name) >= 256) {
    return;
  }
  char evicted[330] = "";
  pthread_mutex_lock(&names_lock);
  buckets_init_locked();
  unsigned b = bucket_of(addr);
  for (int i = buckets[b]; i >= 0; i = entries[i].next) {
    if (memcmp(entries[i].addr, addr, 16) == 0 &&
        strcmp(entries[i].name, name) == 0) {
      entries[i].thread = thread_tag();
      entries[i].stamp = ++clock_tick;
      pthread_mutex_unlock(&names_lock);
      return;
    }
  }
  int idx = slot_locked(evicted, sizeof(evicted));
  struct name_entry *e = &entries[idx];
  memcpy(e->addr, addr, 16);
  snprintf(e->name, sizeof(e->name), "%s", name);
  e->thread = thread_tag();
  e->stamp = ++clock_tick;
  e->used = true;
  e->next = buckets[b];
  buckets[b] = idx;
  entry_count++;
  pthread_mutex_unlock(&names_lock);
  if (evicted[0] != '\0') {
    log_msg(POLICY_LOG_WARN, "names",
            "forgot the resolved name %s: more than %d names remembered; a "
            "connection to that address is no longer matched by that name",
            evicted, NAMES_MAX);
  }
}

size_t names_candidates(const uint8_t addr[16], char (*out)[256],
                        size_t max) {
  int found[NAMES_MAX_CANDIDATES];
  size_t n = 0;
  if (max > NAMES_MAX_CANDIDATES) {
    max = NAMES_MAX_CANDIDATES;
  }
  unsigned me = thread_tag();
  pthread_mutex_lock(&names_lock);
  buckets_init_locked();
  for (int i = buckets[bucket_of(addr)]; i >= 0; i = entries[i].next) {
    if (memcmp(entries[i].addr, addr, 16) != 0) {
      continue;
    }
    /* Insert by rank: this thread's latest first, then most recent. */
    size_t at = n < max ? n : max;
    while (at > 0) {
      const struct name_entry *o = &entries[found[at - 1]];
      bool mine = entries[i].thread == me, omine = o->thread == me;
      if (omine && !mine) {
        break;
      }
      if (mine == omine && o->stamp >= entries[i].stamp) {
        break;
      }
      at--;
    }
    if (at >= max) {
      continue;
    }
    size_t last = n < max ? n : max - 1;
    memmove(&found[at + 1], &found[at], (last - at) * sizeof(found[0]));
    found[at] = i;
    if (n < max) {
      n++;
    }
  }
  for (size_t k = 0; k < n; k++) {
    entries[found[k]].stamp = ++clock_tick;
    snprintf(out[k], 256, "%s", entries[found[k]].name);
  }
  pthread_mutex_unlock(&names_lock);
  return n;
}

void names_atfork(enum shim_fork_phase phase) {
  if (phase == SHIM_FORK_PREPARE) {
    pthread_mutex_lock(&names_lock);
  } else if (phase == SHIM_FORK_PARENT) {
    pthread_mutex_unlock(&names_lock);
  } else {
    pthread_mutex_t fresh = PTHREAD_MUTEX_INITIALIZER;
    names_lock = fresh;
  }
}

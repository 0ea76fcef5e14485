/* epoll_registry.c: epoll with TLS-level readiness.
 *
 * The shim keeps, per epoll instance, what the program registered (events
 * and data, returned intact). A plain descriptor is registered with the
 * kernel exactly as the program asked. A TLS session is registered with the
 * kernel edge-triggered for every event, with the shim's own tag as data;
 * the program's level- or edge-triggered view is then made here, as the
 * kernel makes it: a registration is queued when its socket shows any
 * change, evaluated (pumping the TLS connection) by epoll_wait, delivered
 * when ready, and, if level-triggered, left queued to be evaluated again by
 * the next wait. A registration is dropped from the queue only after an
 * evaluation that read or wrote the kernel socket until EAGAIN, so the
 * kernel owes an edge for whatever happens next: no hang, no spin.
 *
 * Locking: one lock per instance, taken before a session's lock, never
 * held while waiting in the kernel. */
#include "shim/epoll_registry.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "shim/libc.h"

#define EP_MAX_FD (1 << 20)
#define EP_TAG 0x7153000000000000ULL /* "qS": a shim registration */
#define EP_TAG_MASK 0xffff000000000000ULL
#define EP_KERNEL_TLS_EVENTS (EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET)

struct ep_reg {
  int fd;
  uint32_t events; /* the program's */
  epoll_data_t data;
  struct session *session; /* NULL: plain */
  bool remapped; /* plain, but its data looks like the shim's tag: the
                    kernel holds the tag and the data is returned from here */
  uint64_t delivered_call; /* the wait call that last delivered it ... */
  int delivered_slot;      /* ... and where in that call's array */
  bool queued;
  bool disabled; /* EPOLLONESHOT fired */
  struct ep_reg *next; /* ready queue */
};

struct ep_inst {
  pthread_mutex_t lock;
  struct ep_reg **regs; /* by fd */
  int regs_len;
  int tls_count;
  uint64_t calls; /* numbers each wait call, so that one call reports a
                     descriptor at most once, as the kernel does */
  struct ep_reg *head, *tail; /* ready queue */
};

static struct ep_inst *instances[EP_MAX_FD];
static pthread_mutex_t instances_lock = PTHREAD_MUTEX_INITIALIZER;
/* The epoll descriptors in use, so that a new or closed session visits
 * only them. Guarded by instances_lock; live_len is also read without it
 * (a cheap "no epoll at all"), so it is stored atomically. */
static int *live;
static int live_len, live_cap;

static void live_add(int epfd) {
  if (live_len == live_cap) {
    int cap = live_cap ? live_cap * 2 : 16;
    int *n = realloc(live, (size_t)cap * sizeof(*n));
    if (n == NULL) {
      return;
    }
    live = n;
    live_cap = cap;
  }
  live[live_len] = epfd;
  __atomic_store_n(&live_len, live_len + 1, __ATOMIC_RELAXED);
}

static void live_remove(int epfd) {
  for (int i = 0; i < live_len; i++) {
    if (live[i] == epfd) {
      live[i] = live[live_len - 1];
      __atomic_store_n(&live_len, live_len - 1, __ATOMIC_RELAXED);
      return;
    }
  }
}

static struct ep_inst *inst_get(int epfd) {
  if (epfd < 0 || epfd >= EP_MAX_FD) {
    return NULL;
  }
  return __atomic_load_n(&instances[epfd], __ATOMIC_ACQUIRE);
}

void epoll_registry_created(int epfd) {
  if (epfd < 0 || epfd >= EP_MAX_FD) {
    return;
  }
  struct ep_inst *inst = calloc(1, sizeof(*inst));
  if (inst == NULL) {
    return;
  }
  pthread_mutex_init(&inst->lock, NULL);
  pthread_mutex_lock(&instances_lock);
  struct ep_inst *old = instances[epfd];
  __atomic_store_n(&instances[epfd], inst, __ATOMIC_RELEASE);
  if (old == NULL) {
    live_add(epfd);
  }
  pthread_mutex_unlock(&instances_lock);
  if (old != NULL) {
    /* A stale instance on a reused number: its owner is gone. */
    epoll_registry_free(old);
  }
}

void epoll_registry_free(struct ep_inst *inst) {
  for (int fd = 0; fd < inst->regs_len; fd++) {
    struct ep_reg *r = inst->regs[fd];
    if (r != NULL) {
      session_unref(r->session);
      free(r);
    }
  }
  free(inst->regs);
  pthread_mutex_destroy(&inst->lock);
  free(inst);
}

void epoll_registry_epfd_closed(int fd) {
  if (fd < 0 || fd >= EP_MAX_FD ||
      __atomic_load_n(&instances[fd], __ATOMIC_RELAXED) == NULL) {
    return;
  }
  pthread_mutex_lock(&instances_lock);
  struct ep_inst *inst = instances[fd];
  __atomic_store_n(&instances[fd], NULL, __ATOMIC_RELEASE);
  if (inst != NULL) {
    live_remove(fd);
  }
  pthread_mutex_unlock(&instances_lock);
  if (inst != NULL) {
    epoll_registry_free(inst);
  }
}

void epoll_registry_atfork(enum shim_fork_phase phase) {
  if (phase == SHIM_FORK_PREPARE) {
    pthread_mutex_lock(&instances_lock);
    for (int i = 0; i < live_len; i++) {
      pthread_mutex_lock(&instances[live[i]]->lock);
    }
    return;
  }
  if (phase == SHIM_FORK_PARENT) {
    for (int i = 0; i < live_len; i++) {
      pthread_mutex_unlock(&instances[live[i]]->lock);
    }
    pthread_mutex_unlock(&instances_lock);
    return;
  }
  pthread_mutex_t fresh = PTHREAD_MUTEX_INITIALIZER;
  instances_lock = fresh;
  for (int i = 0; i < live_len; i++) {
    instances[live[i]]->lock = fresh;
  }
}

void epoll_registry_epfds_closed(unsigned first, unsigned last) {
  for (;;) {
    int found = -1;
    pthread_mutex_lock(&instances_lock);
    for (int i = 0; i < live_len; i++) {
      if ((unsigned)live[i] >= first && (unsigned)live[i] <= last) {
        found = live[i];
        break;
      }
    }
    pthread_mutex_unlock(&instances_lock);
    if (found < 0) {
      return;
    }
    epoll_registry_epfd_closed(found);
  }
}

static void enqueue(struct ep_inst *inst, struct ep_reg *r) {
  if (r->queued || r->disabled) {
    return;
  }
  r->queued = true;
  r->next = NULL;
  if (inst->tail != NULL) {
    inst->tail->next = r;
  } else {
    inst->head = r;
  }
  inst->tail = r;
}

static void dequeue_reg(struct ep_inst *inst, struct ep_reg *r) {
  struct ep_reg **pp = &inst->head;
  struct ep_reg *prev = NULL;
  while (*pp != NULL && *pp != r) {
    prev = *pp;
    pp = &(*pp)->next;
  }
  if (*pp == r) {
    *pp = r->next;
    if (inst->tail == r) {
      inst->tail = prev;
    }
  }
  r->queued = false;
  r->next = NULL;
}

static int ensure_slot(struct ep_inst *inst, int fd) {
  if (fd < inst->regs_len) {
    return 0;
  }
  int n = inst->regs_len ? inst->regs_len : 64;
  while (n <= fd) {
    n *= 2;
  }
  struct ep_reg **regs = realloc(inst->regs, (size_t)n * sizeof(*regs));
  if (regs == NULL) {
    return -ENOMEM;
  }
  memset(regs + inst->regs_len, 0,
         (size_t)(n - inst->regs_len) * sizeof(*regs));
  inst->regs = regs;
  inst->regs_len = n;
  return 0;
}

static void remove_reg(struct ep_inst *inst, int fd) {
  if (fd >= inst->regs_len || inst->regs[fd] == NULL) {
    return;
  }
  struct ep_reg *r = inst->regs[fd];
  if (r->queued) {
    dequeue_reg(inst, r);
  }
  if (r->session != NULL) {
    __atomic_sub_fetch(&inst->tls_count, 1, __ATOMIC_RELAXED);
    session_unref(r->session);
  }
  inst->regs[fd] = NULL;
  free(r);
}

static void make_tls(struct ep_inst *inst, struct ep_reg *r,
                     struct session *s) {
  r->session = s;
  __atomic_add_fetch(&inst->tls_count, 1, __ATOMIC_RELAXED);
  enqueue(inst, r);
}

int epoll_registry_ctl(int epfd, int op, int fd, struct epoll_event *ev) {
  struct ep_inst *inst = inst_get(epfd);
  struct session *s = fdtable_get(fd);
  if (inst == NULL) {
    if (s == NULL) {
      return real_epoll_ctl(epfd, op, fd, ev) == 0 ? 0 : -errno;
    }
    /* An epoll descriptor the shim did not see made (inherited): track it
     * from now on. */
    epoll_registry_created(epfd);
    inst = inst_get(epfd);
    if (inst == NULL) {
      session_unref(s);
      return -ENOMEM;
    }
  }
  pthread_mutex_lock(&inst->lock);
  int r = 0;
  struct ep_reg *reg = fd >= 0 && fd < inst->regs_len ? inst->regs[fd] : NULL;
  if (op == EPOLL_CTL_DEL) {
    if (real_epoll_ctl(epfd, op, fd, ev) != 0) {
      r = -errno;
    } else {
      remove_reg(inst, fd);
    }
    goto out;
  }
  if ((op != EPOLL_CTL_ADD && op != EPOLL_CTL_MOD) || ev == NULL || fd < 0) {
    r = real_epoll_ctl(epfd, op, fd, ev) == 0 ? 0 : -errno;
    goto out;
  }
  struct epoll_event kev = *ev;
  bool remap = s == NULL && (ev->data.u64 & EP_TAG_MASK) == EP_TAG;
  if (s != NULL) {
    kev.events = EP_KERNEL_TLS_EVENTS;
  }
  if (s != NULL || remap) {
    kev.data.u64 = EP_TAG | (uint64_t)(uint32_t)fd;
  }
  if (op == EPOLL_CTL_MOD && reg != NULL && reg->session != NULL) {
    /* The kernel side of a TLS registration never changes. */
    if (real_epoll_ctl(epfd, op, fd, &kev) != 0) {
      r = -errno;
      goto out;
    }
  } else if (real_epoll_ctl(epfd, op, fd, &kev) != 0) {
    r = -errno;
    goto out;
  }
  if (op == EPOLL_CTL_ADD) {
    remove_reg(inst, fd); /* a stale entry for a reused number */
    if ((r = ensure_slot(inst, fd)) != 0) {
      real_epoll_ctl(epfd, EPOLL_CTL_DEL, fd, NULL);
      goto out;
    }
    reg = calloc(1, sizeof(*reg));
    if (reg == NULL) {
      real_epoll_ctl(epfd, EPOLL_CTL_DEL, fd, NULL);
      r = -ENOMEM;
      goto out;
    }
    reg->fd = fd;
    inst->regs[fd] = reg;
  } else if (reg == NULL) {
    /* MOD of a registration made before the shim tracked this instance. */
    if ((r = ensure_slot(inst, fd)) != 0) {
      goto out;
    }
    reg = calloc(1, sizeof(*reg));
    if (reg == NULL) {
      r = -ENOMEM;
      goto out;
    }
    reg->fd = fd;
    inst->regs[fd] = reg;
  }
  reg->events = ev->events;
  reg->data = ev->data;
  reg->disabled = false;
  reg->remapped = remap;
  if (s != NULL) {
    if (reg->session == NULL) {
      session_ref(s);
      make_tls(inst, reg, s);
    } else {
      enqueue(inst, reg); /* re-evaluate, as the kernel does on MOD */
    }
  }
out:
  pthread_mutex_unlock(&inst->lock);
  session_unref(s);
  return r;
}

void epoll_registry_session_created(int fd) {
  struct session *s = fdtable_get(fd);
  if (s == NULL) {
    return;
  }
  pthread_mutex_lock(&instances_lock);
  for (int i = 0; i < live_len; i++) {
    int epfd = live[i];
    struct ep_inst *inst = instances[epfd];
    pthread_mutex_lock(&inst->lock);
    struct ep_reg *reg = fd < inst->regs_len ? inst->regs[fd] : NULL;
    if (reg != NULL && reg->session == NULL) {
      struct epoll_event kev = {.events = EP_KERNEL_TLS_EVENTS,
                                .data.u64 = EP_TAG | (uint64_t)(uint32_t)fd};
      if (real_epoll_ctl(epfd, EPOLL_CTL_MOD, fd, &kev) == 0) {
        session_ref(s);
        make_tls(inst, reg, s);
      } else {
        remove_reg(inst, fd); /* stale: the kernel no longer has it */
      }
    }
    pthread_mutex_unlock(&inst->lock);
  }
  pthread_mutex_unlock(&instances_lock);
  session_unref(s);
}

/* Calls |fn| on every instance's TLS registration of |fd|, with
 * instances_lock and the instance's lock held. */
static void each_tls_reg(int fd,
                         void (*fn)(struct ep_inst *inst, int epfd, int fd)) {
  pthread_mutex_lock(&instances_lock);
  for (int i = 0; i < live_len; i++) {
    struct ep_inst *inst = instances[live[i]];
    pthread_mutex_lock(&inst->lock);
    if (fd < inst->regs_len && inst->regs[fd] != NULL &&
        inst->regs[fd]->session != NULL) {
      fn(inst, live[i], fd);
    }
    pthread_mutex_unlock(&inst->lock);
  }
  pthread_mutex_unlock(&instances_lock);
}

static void forget_reg(struct ep_inst *inst, int epfd, int fd) {
  remove_reg(inst, fd);
  /* The socket may outlive the descriptor (a duplicate the program made,
   * or linger.c's): the program's epoll must not hear of it. */
  real_epoll_ctl(epfd, EPOLL_CTL_DEL, fd, NULL);
}

void epoll_registry_fd_closed(int fd) { each_tls_reg(fd, forget_reg); }

static void requeue_reg(struct ep_inst *inst, int epfd, int fd) {
  (void)epfd;
  enqueue(inst, inst->regs[fd]);
}

void epoll_registry_rearm(int fd) {
  if (!epoll_registry_in_use()) {
    return;
  }
  each_tls_reg(fd, requeue_reg);
}

bool epoll_registry_in_use(void) {
  return __atomic_load_n(&live_len, __ATOMIC_RELAXED) > 0;
}

/* Evaluates |r| and, if ready, appends its event to |out|. Caller holds the
 * instance lock. Returns 1 if delivered. */
static int evaluate(struct ep_inst *inst, struct ep_reg *r, uint32_t kernel,
                    struct epoll_event *events, int n, uint64_t call,
                    int64_t *wake) {
  short wants;
  int64_t w;
  short want_ev = (short)(r->events & (EPOLLIN | EPOLLOUT | EPOLLPRI |
                                       EPOLLRDHUP | EPOLLRDNORM | EPOLLWRNORM));
  short rev = session_poll_events(r->session, r->fd, want_ev, (short)kernel,
                                  &wants, &w);
  if (w >= 0 && (*wake < 0 || w < *wake)) {
    *wake = w;
  }
  uint32_t deliver = (uint32_t)(unsigned short)rev &
                     (r->events | EPOLLERR | EPOLLHUP);
  if (deliver == 0) {
    /* A handshake with a deadline must be looked at again when it passes,
     * even if the peer stays silent: keep it queued (the wait is bounded
     * by |wake|). Otherwise the kernel owes an edge for what comes next. */
    if (w >= 0) {
      enqueue(inst, r);
    } else if (r->queued) {
      dequeue_reg(inst, r);
    }
    return 0;
  }
  if (r->delivered_call == call) {
    /* Already in this call's array: merge, never report twice. */
    events[r->delivered_slot].events |= deliver;
    return 0;
  }
  r->delivered_call = call;
  r->delivered_slot = n;
  events[n].events = deliver;
  events[n].data = r->data;
  if (r->events & EPOLLONESHOT) {
    r->disabled = true;
    if (r->queued) {
      dequeue_reg(inst, r);
    }
  } else if (r->events & EPOLLET) {
    if (r->queued) {
      dequeue_reg(inst, r);
    }
  } else if (!r->queued) {
    enqueue(inst, r); /* level-triggered: look again next time */
  } else {
    /* Keep it queued, at the back, for fairness. */
    dequeue_reg(inst, r);
    enqueue(inst, r);
  }
  return 1;
}

#define KEV_MAX 256

int epoll_registry_wait(int epfd, struct epoll_event *events, int max,
                        int64_t deadline_ms, const sigset_t *sigmask,
                        bool *handled) {
  struct ep_inst *inst = inst_get(epfd);
  *handled = inst != NULL && __atomic_load_n(&inst->tls_count, __ATOMIC_RELAXED) > 0;
  if (!*handled) {
    return 0;
  }
  if (max <= 0) {
    return -EINVAL;
  }
  struct epoll_event kev[KEV_MAX];
  for (;;) {
    int n = 0;
    int64_t wake = -1;
    pthread_mutex_lock(&inst->lock);
    uint64_t call = ++inst->calls;
    /* 1. What is already known to be ready (or must be looked at). */
    struct ep_reg *r = inst->head;
    struct ep_reg *stop = inst->tail;
    while (r != NULL && n < max) {
      struct ep_reg *next = r->next;
      bool last = r == stop;
      n += evaluate(inst, r, 0, events, n, call, &wake);
      if (last) {
        break;
      }
      r = next;
    }
    pthread_mutex_unlock(&inst->lock);
    if (n == max) {
      return n;
    }
    /* 2. The kernel: without waiting when something is ready. */
    int64_t until = n > 0 ? 0 : deadline_ms;
    if (wake >= 0 && (until < 0 || wake < until)) {
      until = wake;
    }
    int timeout = -1;
    if (until >= 0) {
      int64_t left = n > 0 ? 0 : until - shim_now_ms();
      timeout = left < 0 ? 0 : left > 0x7fffffff ? 0x7fffffff : (int)left;
    }
    int room = max - n < KEV_MAX ? max - n : KEV_MAX;
    /* epoll_pwait, not epoll_pwait2: the deadline is in milliseconds anyway,
     * and kernels before 5.11 (and valgrind) have no epoll_pwait2. */
    int k = real_epoll_pwait(epfd, kev, room, timeout, sigmask);
    if (k < 0) {
      return n > 0 ? n : -errno;
    }
    pthread_mutex_lock(&inst->lock);
    for (int i = 0; i < k; i++) {
      if ((kev[i].data.u64 & EP_TAG_MASK) == EP_TAG) {
        int fd = (int)(kev[i].data.u64 & 0xffffffffu);
        struct ep_reg *reg = fd < inst->regs_len ? inst->regs[fd] : NULL;
        if (reg != NULL && reg->session != NULL && !reg->disabled) {
          n += evaluate(inst, reg, kev[i].events, events, n, call, &wake);
        } else if (reg != NULL && reg->remapped) {
          events[n].events = kev[i].events;
          events[n++].data = reg->data;
        }
      } else {
        events[n++] = kev[i];
      }
    }
    pthread_mutex_unlock(&inst->lock);
    if (n > 0) {
      return n;
    }
    if (deadline_ms >= 0 && shim_now_ms() >= deadline_ms) {
      return 0;
    }
  }
}

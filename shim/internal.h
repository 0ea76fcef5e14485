/* internal.h: the shim's engine, shared by the hooks: sessions, the fd
 * table, the active configuration, and the blocking/readiness helpers.
 *
 * Locking (after torsocks): one lock for the fd table, never held while
 * calling BoringSSL or blocking; one mutex per session for its tlsconn,
 * never held while waiting in poll(). A session is reference counted: each
 * descriptor that refers to it holds one reference (dup shares a session),
 * and each call in progress holds one while it works. close() removes the
 * descriptor under the table lock and then drops that reference; the last
 * reference ends the session (close_notify when possible, then free). */
#ifndef TLSSHIM_SHIM_INTERNAL_H
#define TLSSHIM_SHIM_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

#include "policy/policy.h"
#include "shim/tls/tls.h"

#ifdef __cplusplus
extern "C" {
#endif

enum session_kind {
  SESSION_TLS = 0,     /* a tls rule, or permissive that saw a ClientHello */
  SESSION_DETECT,      /* permissive: waiting for the first bytes */
  SESSION_PLAIN,       /* permissive that decided plaintext */
  SESSION_EXEC_DEAD,   /* was TLS before exec: every I/O fails EPROTO */
  SESSION_BUSY,        /* session_busy: see shim_lock_depth */
};

struct session {
  int refs; /* atomic */
  pthread_mutex_t lock;
  enum session_kind kind;
  bool is_server;
  bool user_nonblock; /* the program's view of O_NONBLOCK */
  bool connecting;    /* outbound: TCP connect still in progress */
  bool established_logged;
  bool failure_logged;
  bool wr_shutdown; /* shutdown(SHUT_WR) sent close_notify */
  bool io_since_fork; /* this process used it since the last fork */
  bool forked;        /* inherited across (or present at) a fork */
  int error;          /* sticky -errno once failed (for SO_ERROR / I/O) */
  bool error_reported; /* SO_ERROR has reported |error| */
  int64_t deadline_ms; /* handshake (or detect) deadline, CLOCK_MONOTONIC */
  int timeout_ms;
  int fd; /* a descriptor of the session, the one its BIO uses */
  int fd_count; /* descriptors in the table that refer to it */
  int linger_fd; /* -1, or the duplicate linger.c sends queued output
                    through after close() or a non-blocking shutdown() */
  struct tlsconn *conn; /* NULL until made (DETECT) */
  struct tls_config *config; /* referenced */
  const struct policy_rule *rule;
  char rule_name[128];
  char local[64], peer[64];
  char name[256]; /* verified name (outbound) or "" */
  struct statusfile_conn *status; /* its slot in the status file, or NULL */
};

/* ---- signal safety ----
 * shim_lock_depth counts the session locks and the fd table lock this
 * thread holds or is taking. A hook that finds it above zero runs inside
 * a signal handler that interrupted the shim on this thread (the shim
 * calls no hook while it holds a lock), where taking any of them could
 * deadlock: fdtable_get then returns session_busy, on which reads and
 * writes fail with EAGAIN, and close() is deferred (close.c) until the
 * interrupted code lets go of its last lock. */
extern __thread int shim_lock_depth __attribute__((tls_model("initial-exec")));
extern __thread int session_deferred_count
    __attribute__((tls_model("initial-exec")));
extern struct session session_busy;
/* session_run_deferred runs the closes deferred on this thread. */
void session_run_deferred(void);
/* session_defer_close defers close(|fd|) on this thread: false if the
 * list is full. |fn| does the close later. */
bool session_defer_close(int fd, void (*fn)(int fd));

static inline void shim_lock_enter(void) {
  shim_lock_depth++;
  __atomic_signal_fence(__ATOMIC_SEQ_CST);
}
static inline void shim_lock_leave(void) {
  __atomic_signal_fence(__ATOMIC_SEQ_CST);
  if (--shim_lock_depth == 0 &&
      __builtin_expect(session_deferred_count != 0, 0)) {
    session_run_deferred();
  }
}
static inline void session_lock(struct session *s) {
  shim_lock_enter();
  pthread_mutex_lock(&s->lock);
}
static inline void session_unlock(struct session *s) {
  pthread_mutex_unlock(&s->lock);
  shim_lock_leave();
}

/* ---- time ---- */
int64_t shim_now_ms(void);

/* ---- the active configuration (init.c) ---- */

/* shim_init runs once, from the library constructor. */
void shim_init(void);

/* shim_config_acquire returns the active configuration with a reference
 * (release with tls_config_unref), checking first, at most once a second,
 * whether the policy or any file it names changed (hot reload). NULL if the
 * shim is not initialised. */
struct tls_config *shim_config_acquire(void);

/* shim_in_shim is true on a thread inside the shim's own dependencies
 * (policy loading): hooks then pass straight through. */
bool shim_in_shim(void);

/* ---- the fd table (fdtable.c) ---- */

/* fdtable_maybe is the lock-free fast path: false means |fd| is certainly
 * not a session, so a hook passes the call straight through. */
bool fdtable_maybe(int fd);

/* fdtable_get returns the session of |fd| with a reference, or NULL. */
struct session *fdtable_get(int fd);

/* fdtable_set makes |fd| refer to |s| (taking a new reference); an old
 * session on |fd| is released. Returns 0, or -ENOMEM when no entry could
 * be made (|fd| is then unchanged: the caller fails its call closed). */
int fdtable_set(int fd, struct session *s);
extern int fdtable_fail_every; /* test hook, see fdtable.c */

/* fdtable_take removes |fd| and returns its session (whose reference passes
 * to the caller), or NULL. */
struct session *fdtable_take(int fd);

/* fdtable_for_each calls |fn| with every (fd, session) under the table
 * lock; |fn| must not block or take the table lock. */
void fdtable_for_each(void (*fn)(int fd, struct session *s, void *arg),
                      void *arg);

/* fdtable_hint_fastopen marks |fd|, not a session, as a socket with
 * TCP_FASTOPEN_CONNECT, so that its sendto/sendmsg take the slow path that
 * decides the connection the kernel would make; fdtable_take clears it. */
void fdtable_hint_fastopen(int fd);
bool fdtable_fastopen_hinted(int fd);

/* fdtable_first_in_range returns the lowest session descriptor in
 * [first, last], or -1 (close_range, closefrom). */
int fdtable_first_in_range(unsigned first, unsigned last);

/* fdtable_count returns how many descriptors are sessions. */
size_t fdtable_count(void);

/* ---- fork (atfork.c) ----
 * Each module's part of the fork handlers: PREPARE takes its locks, PARENT
 * releases them, CHILD makes them new. shim_atfork_install registers the
 * handlers (once, from shim_init), which call them in a fixed order. */
enum shim_fork_phase { SHIM_FORK_PREPARE, SHIM_FORK_PARENT, SHIM_FORK_CHILD };
void shim_atfork_install(void);
void shim_config_atfork(enum shim_fork_phase phase);
void names_atfork(enum shim_fork_phase phase);
void epoll_registry_atfork(enum shim_fork_phase phase);
void fdtable_atfork(enum shim_fork_phase phase);
void linger_atfork(enum shim_fork_phase phase);

/* ---- output queued at close (linger.c) ---- */

/* linger_adopt_locked hands |s|, whose close_notify was queued with output
 * its socket |fd| has not taken yet, to the linger thread: it sends the
 * rest through a duplicate of |fd| as the socket drains, then shuts down
 * the write side. Caller holds s->lock. false: not adopted (no descriptor
 * or memory), the queued output is lost. */
bool linger_adopt_locked(struct session *s, int fd);
/* linger_atfork (CHILD) forgets, in a forked child, what the parent's
 * linger thread goes on sending. Call after the child's session locks are
 * reset. */
/* session_goodbye_at_exit ends |s| (its descriptor |fd|) as close() would,
 * for exit(): close_notify, and queued output handed to linger.c. */
void session_goodbye_at_exit(struct session *s, int fd);
/* session_log_failed logs a `failed` event of |s| with reason |why|. */
void session_log_failed(const struct session *s, const char *why);
extern int linger_give_up_ms; /* test hook TLSSHIM_TEST_LINGER_MS */

/* ---- sessions (session.c) ---- */

/* session_new returns a new session (one reference) or NULL. */
struct session *session_new(void);
extern int session_fail_every; /* test hook, see session.c */
void session_ref(struct session *s);
/* session_unref drops a reference; the last one ends the session. */
void session_unref(struct session *s);

/* session_attach_fd / session_detach_fd count the descriptors that refer
 * to |s|; when the one its BIO uses goes away, another takes its place. */
void session_attach_fd(struct session *s, int fd);
void session_detach_fd(struct session *s, int fd);

/* session_start_tls makes the tlsconn of |s| (kind becomes SESSION_TLS).
 * Returns 0 or -errno. Caller holds s->lock or owns |s| alone. */
int session_start_tls(struct session *s, const char *verify_name,
                      const char *peer_ip, const char *peer_key);

/* I/O contract: these behave like recv(2)/send(2) on |fd| with the
 * program's blocking mode, returning the count or -errno. */
ssize_t session_recv(struct session *s, int fd, void *buf, size_t len,
                     int flags);
ssize_t session_send(struct session *s, int fd, const void *buf, size_t len,
                     int flags);

/* session_handshake_blocking completes an outbound handshake inside a
 * blocking connect(). Returns 0 or -errno (EPROTO, ETIMEDOUT, ...). */
int session_handshake_blocking(struct session *s, int fd);

/* session_shutdown_write sends close_notify (shutdown SHUT_WR). Returns 0
 * when the write side may be shut down now, 1 when linger.c will do it
 * once the queued output is sent (a non-blocking socket that is full), or
 * -errno. */
int session_shutdown_write(struct session *s, int fd);

/* session_tcp_connected ends the TCP part of a blocking connect once the
 * socket polled writable: 0, or the connect's errno (the session has
 * failed). The handshake deadline starts here. */
int session_tcp_connected(struct session *s, int fd);

/* session_so_error answers getsockopt(SO_ERROR) for a session: the
 * connect/handshake error once, else 0. Drives a non-blocking handshake. */
int session_so_error(struct session *s, int fd);

/* Readiness: session_poll_events computes the TLS-level revents for
 * |events| (POLLIN/POLLOUT/...), pumping the connection first; |kernel|
 * are the kernel revents just seen for the fd (0 if unknown). It sets
 * |*wants| to the kernel events needed for further progress and |*wake_ms|
 * to a time (CLOCK_MONOTONIC ms) when it must be asked again even without
 * kernel events (a handshake deadline), or -1. */
short session_poll_events(struct session *s, int fd, short events,
                          short kernel, short *wants, int64_t *wake_ms);

/* session_fionread returns the plaintext bytes readable now. */
int session_fionread(struct session *s, int fd);

/* session_mark_forked flags every session at fork (both sides). */
void session_mark_all_forked(void);

/* session_info fills the public API structure. */
struct tlsshim_conn_info;
void session_get_info(struct session *s, struct tlsshim_conn_info *out);

/* ---- socket decisions (decide.c) ---- */

/* shim_decide_outbound applies the policy to a connect(). On return
 * |*out_session| is NULL for plaintext, or a new session (not yet in the
 * table). Returns 0, or -EACCES for deny (logged). */
int shim_decide_outbound(int fd, const struct sockaddr *addr, socklen_t len,
                         struct session **out_session);

/* shim_decide_inbound applies the policy to an accepted socket. Returns 0
 * with |*out_session| NULL (plaintext) or a new session, or -EACCES for
 * deny (logged; the caller closes the socket and accepts the next). */
int shim_decide_inbound(int fd, struct session **out_session);

/* ---- host names the program resolved (names.c) ---- */
void names_remember(const uint8_t addr[16], const char *name);
/* names_candidates copies into |out| up to |max| (at most
 * NAMES_MAX_CANDIDATES) names resolved to |addr|: the one this thread
 * resolved most recently first, then the others, most recent first.
 * Returns the count. */
#define NAMES_MAX_CANDIDATES 8
size_t names_candidates(const uint8_t addr[16], char (*out)[256],
                        size_t max);


/* ---- helpers ---- */

/* shim_sockaddr_to_endpoint converts a sockaddr (v4/v6) to the policy's
 * form. Returns false for other families. */
bool shim_sockaddr_to_endpoint(const struct sockaddr *sa, socklen_t len,
                               uint8_t addr[16], uint16_t *port);
void shim_format_endpoint(const uint8_t addr[16], uint16_t port, char *out,
                          size_t out_len);

/* shim_wait waits with poll() until |fd| shows |events| or |deadline_ms|
 * (absolute, CLOCK_MONOTONIC; -1 = none) passes. Returns >0 ready, 0 on
 * timeout, -errno (-EINTR when a signal interrupts, as the blocking call
 * would). */
int shim_wait(int fd, short events, int64_t deadline_ms);

/* shim_sock_timeout_ms returns SO_RCVTIMEO/SO_SNDTIMEO of |fd| in ms, or
 * -1 for none. */
int64_t shim_sock_timeout_ms(int fd, int optname);

/* The epoll registry (epoll.c): a session was made for |fd| after the
 * program had registered it; and |fd| is going away. */
void epoll_registry_session_created(int fd);
void epoll_registry_fd_closed(int fd);
/* epoll_registry_rearm queues every registration of the session |fd| for
 * evaluation by the next epoll_wait: after a read that may have left input
 * inside the shim (a full read, or one that ended at EOF or an error), for
 * which the kernel will raise no edge. */
void epoll_registry_rearm(int fd);
/* epoll_registry_in_use reports whether the process has an epoll instance. */
bool epoll_registry_in_use(void);
/* epoll_registry_epfd_closed forgets an epoll instance; cheap for any fd. */
void epoll_registry_epfd_closed(int fd);
/* epoll_registry_epfds_closed forgets the instances in [first, last]. */
void epoll_registry_epfds_closed(unsigned first, unsigned last);

/* exec (exec.c): descriptors that were TLS before exec. */
void exec_restore_dead_fds(void);

#ifdef __cplusplus
}
#endif

#endif /* TLSSHIM_SHIM_INTERNAL_H */

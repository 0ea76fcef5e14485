/* status.h: the process's live connection table and counters (SPEC 9),
 * kept in its status file (layout: shim/status/statusfile.h).
 *
 * Nothing here starts a thread or opens a socket. The file is made on the
 * first event (a decision, a connection), not at start-up, so a program
 * that never connects pays nothing. Events (established, failed, denied,
 * plaintext, permissive, reload, close) are rare and take status_lock;
 * the data path only adds to its slot's byte counters (status_count). */
#ifndef TLSSHIM_SHIM_STATUS_H
#define TLSSHIM_SHIM_STATUS_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "policy/policy.h"
#include "shim/status/statusfile.h"

#ifdef __cplusplus
extern "C" {
#endif

struct session;
struct tlsconn_info;

enum status_decision {
  STATUS_DENIED = 0,
  STATUS_PLAINTEXT,
  STATUS_PERMISSIVE_TLS,
  STATUS_PERMISSIVE_PLAINTEXT,
};

/* status_configure reads the policy's status section at start-up: where
 * the file goes and whether it is kept at all. |secure|: a set-user-ID
 * program (XDG_RUNTIME_DIR is ignored). Later reloads do not move it. */
void status_configure(const struct policy *p, bool secure);

/* status_established records an established connection of |s| and returns
 * its slot for status_count and status_closed, or NULL (status off, file
 * not made, or every slot in use: then only counted). */
struct statusfile_conn *status_established(const struct session *s,
                                           const struct tlsconn_info *info);

/* status_closed frees the slot of a connection that ended; its bytes are
 * added to its rule's. */
void status_closed(struct statusfile_conn *slot);

/* status_failed counts a failure of rule |rule| under the class of
 * |reason| (statusfile_classify). */
void status_failed(const char *rule, bool inbound, const char *reason);

/* status_decision counts a deny, plaintext or permissive decision. */
void status_decision(enum status_decision d, const char *rule, bool inbound);

/* status_reload counts a policy reload, accepted or rejected. */
void status_reload(bool accepted);

/* status_before_exec removes the file (the new image is another program,
 * which makes its own if it loads the shim); a failed exec makes it again
 * at the next event. */
void status_before_exec(void);

/* status_count adds |n| bytes to a slot's counter. The slot's session
 * lock is held, so its only writer is this thread; the store is atomic so
 * that a reader in another process sees the word whole. */
static inline void status_count(uint64_t *counter, ssize_t n) {
  __atomic_store_n(counter, *counter + (uint64_t)n, __ATOMIC_RELAXED);
}

#ifdef __cplusplus
}
#endif

#endif /* TLSSHIM_SHIM_STATUS_H */

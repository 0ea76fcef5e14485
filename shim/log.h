/* log.h: the shim's event log, one line per event, text or JSON.
 *
 * Lines go to the policy's destination (stderr by default, never stdout)
 * with one real write() each, never through stdio: its buffers and locks
 * belong to the program. errno is preserved across every call. */
#ifndef TLSSHIM_SHIM_LOG_H
#define TLSSHIM_SHIM_LOG_H

#include <stdbool.h>

#include "policy/policy.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The fields of one event; NULL or "" fields are left out. */
struct log_event {
  enum policy_log_level level;
  const char *event;     /* established, failed, denied, plaintext, reload, ... */
  const char *direction; /* outbound | inbound */
  const char *rule;
  const char *local;     /* "addr:port" */
  const char *peer;      /* "addr:port" */
  const char *name;      /* the verified / SNI name */
  const char *version;
  const char *cipher;
  const char *group;
  int resumed;           /* -1: not applicable, 0 no, 1 yes */
  const char *peer_identity;
  const char *reason;
};

/* log_configure sets level, format and destination (path NULL: stderr).
 * Environment overrides (TLSSHIM_LOG, TLSSHIM_LOG_FILE) are applied by the
 * caller. Safe to call again on reload. */
void log_configure(enum policy_log_level level, enum policy_log_format format,
                   const char *path);

/* log_enabled reports whether |level| would be written. */
bool log_enabled(enum policy_log_level level);

/* log_emit writes |ev| if its level is enabled. */
void log_emit(const struct log_event *ev);

/* log_msg writes a free-form message as an event with only a reason. */
void log_msg(enum policy_log_level level, const char *event, const char *fmt,
             ...) __attribute__((format(printf, 3, 4)));

/* log_format_event renders |ev| as one line (with '\n') into |buf|;
 * exposed for tests. Returns the length. */
int log_format_event(const struct log_event *ev, enum policy_log_format fmt,
                     char *buf, int buf_len);

#ifdef __cplusplus
}
#endif

#endif /* TLSSHIM_SHIM_LOG_H */

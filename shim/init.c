/* init.c: the shim's start-up, in one order (log, libc symbols, policy, TLS
 * contexts), the active configuration, and hot reload.
 *
 * The configuration is built completely and then swapped in under cfg_lock,
 * so a reload is atomic; open connections keep the tls_config they hold a
 * reference to. A policy that fails to load at start makes the program exit
 * 78 (EX_CONFIG) before main; one that fails on reload is logged and the
 * last good one stays. */
#include "shim/internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/stat.h>
#include <unistd.h>

#include "shim/libc.h"
#include "shim/log.h"
#include "shim/status.h"

#define DEFAULT_POLICY "/etc/tlsshim/policy.yaml"
#define EX_CONFIG 78
#define RELOAD_INTERVAL_MS 1000
#define MAX_STAMPS 64

/* What a file looked like when the active policy was loaded. */
struct file_stamp {
  char path[512];
  dev_t dev;
  ino_t ino;
  off_t size;
  struct timespec mtime;
  bool exists;
};

static pthread_mutex_t cfg_lock = PTHREAD_MUTEX_INITIALIZER;
static struct tls_config *active;
static uint8_t ticket_keys[80];
static char policy_path[512];
static struct file_stamp stamps[MAX_STAMPS];
static size_t stamp_count;
static int64_t last_check_ms;
static bool initialised;
static __thread int in_shim_depth;

bool shim_in_shim(void) { return in_shim_depth > 0; }

static void stamp_file(struct file_stamp *st, const char *path) {
  if (path != st->path) {
    snprintf(st->path, sizeof(st->path), "%s", path);
  }
  struct stat sb;
  st->exists = stat(path, &sb) == 0;
  if (st->exists) {
    st->dev = sb.st_dev;
    st->ino = sb.st_ino;
    st->size = sb.st_size;
    st->mtime = sb.st_mtim;
  }
}

static bool stamp_changed_from(const struct file_stamp *st,
                               const struct file_stamp *now) {
  return now->exists != st->exists ||
         (now->exists &&
          (now->dev != st->dev || now->ino != st->ino ||
           now->size != st->size || now->mtime.tv_sec != st->mtime.tv_sec ||
           now->mtime.tv_nsec != st->mtime.tv_nsec));
}

static void add_stamp(struct file_stamp *set, size_t *count, const char *path) {
  if (path != NULL && *count < MAX_STAMPS) {
    stamp_file(&set[(*count)++], path);
  }
}

/* Records the policy file and every file it names. Caller holds cfg_lock. */
static void stamp_policy(const char *path, const struct policy *p) {
  size_t n = 0;
  add_stamp(stamps, &n, path);
  if (p != NULL) {
    for (size_t i = 0; i < p->identity_count; i++) {
      add_stamp(stamps, &n, p->identities[i].cert);
      add_stamp(stamps, &n, p->identities[i].key);
      add_stamp(stamps, &n, p->identities[i].ocsp_staple);
    }
    for (size_t i = 0; i < p->trust_count; i++) {
      add_stamp(stamps, &n, p->trusts[i].ca);
      add_stamp(stamps, &n, p->trusts[i].crl);
    }
  }
  stamp_count = n;
}

/* Loads and builds a configuration. Returns 0 or -1 with |err| set. */
static int load_config(struct tls_config **out, const char *path,
                       const uint8_t *keys, struct policy_diag *err,
                       struct policy_diags *warnings) {
  struct policy *p = NULL;
  in_shim_depth++;
  int r = policy_load(&p, path, err, warnings);
  if (r == 0) {
    r = tls_config_new(out, p, keys, err, warnings);
    if (r != 0) {
      policy_free(p);
    }
  }
  in_shim_depth--;
  return r == 0 ? 0 : -1;
}

static void log_warnings(const struct policy_diags *w) {
  char line[1200];
  for (size_t i = 0; i < w->count; i++) {
    log_msg(POLICY_LOG_WARN, "policy", "%s",
            policy_diag_format(&w->items[i], line, sizeof(line)));
  }
}

static enum policy_log_level level_from_env(const char *v,
                                            enum policy_log_level dflt) {
  if (v == NULL) {
    return dflt;
  }
  static const char *const names[] = {"error", "warn", "info", "debug"};
  for (int i = 0; i < 4; i++) {
    if (strcmp(v, names[i]) == 0) {
      return (enum policy_log_level)i;
    }
  }
  return dflt;
}

static void apply_logging(const struct policy *p, bool secure) {
  const char *env_level = secure ? NULL : getenv("TLSSHIM_LOG");
  const char *env_file = secure ? NULL : getenv("TLSSHIM_LOG_FILE");
  log_configure(level_from_env(env_level, p->log.level), p->log.format,
                env_file != NULL ? env_file : p->log.file);
}

/* Fail closed: one clear line, and the program does not start. */
static void die_config(const struct policy_diag *err) {
  char line[1400];
  char msg[1500];
  int n = snprintf(msg, sizeof(msg), "tlsshim: %s\n",
                   policy_diag_format(err, line, sizeof(line)));
  if (n > (int)sizeof(msg) - 1) {
    n = (int)sizeof(msg) - 1;
  }
  ssize_t w = real_write(STDERR_FILENO, msg, (size_t)n);
  (void)w;
  _exit(EX_CONFIG);
}

static void shim_init_once(void) {
  int saved = errno;
  libc_resolve_all();
  shim_atfork_install();
  tls_global_init();
  bool secure = getauxval(AT_SECURE) != 0;
  const char *path = secure ? NULL : getenv("TLSSHIM_POLICY");
  if (path == NULL || path[0] == '\0') {
    path = DEFAULT_POLICY;
  }
  /* A relative path is relative to where the program was started: make it
   * absolute now, and pass it on so child processes that start elsewhere
   * (shell scripts cd around) load the same file. */
  if (path[0] != '/') {
    char cwd[256];
    if (getcwd(cwd, sizeof(cwd)) != NULL) {
      snprintf(policy_path, sizeof(policy_path), "%s/%s", cwd, path);
      if (!secure) {
        setenv("TLSSHIM_POLICY", policy_path, 1);
      }
    } else {
      snprintf(policy_path, sizeof(policy_path), "%s", path);
    }
  } else {
    snprintf(policy_path, sizeof(policy_path), "%s", path);
  }
  struct policy_diag err;
  memset(&err, 0, sizeof(err));
  struct policy_diags warnings = {0};
  struct tls_config *cfg = NULL;
  if (load_config(&cfg, policy_path, NULL, &err, &warnings) != 0) {
    die_config(&err);
  }
  const struct policy *p = tls_config_policy(cfg);
  apply_logging(p, secure);
  status_configure(p, secure);
  log_warnings(&warnings);
  policy_diags_cleanup(&warnings);
  tls_config_ticket_keys(cfg, ticket_keys);
  const char *keylog = secure ? NULL : getenv("SSLKEYLOGFILE");
  if (keylog != NULL && keylog[0] != '\0') {
    if (p->allow_keylog) {
      tls_set_keylog_file(keylog);
      log_msg(POLICY_LOG_WARN, "keylog",
              "writing TLS secrets to %s (debug.allow_keylog)", keylog);
    } else {
      log_msg(POLICY_LOG_WARN, "keylog",
              "SSLKEYLOGFILE ignored: the policy does not set debug.allow_keylog");
    }
  }
  pthread_mutex_lock(&cfg_lock);
  active = cfg;
  stamp_policy(p->path, p);
  last_check_ms = shim_now_ms();
  pthread_mutex_unlock(&cfg_lock);
  __atomic_store_n(&initialised, true, __ATOMIC_RELEASE);
  exec_restore_dead_fds();
  const char *fail = secure ? NULL : getenv("TLSSHIM_TEST_FAIL_SESSIONS");
  if (fail != NULL) {
    session_fail_every = atoi(fail);
  }
  const char *fail_fd = secure ? NULL : getenv("TLSSHIM_TEST_FAIL_FDTABLE");
  if (fail_fd != NULL) {
    fdtable_fail_every = atoi(fail_fd);
  }
  const char *linger = secure ? NULL : getenv("TLSSHIM_TEST_LINGER_MS");
  if (linger != NULL && atoi(linger) > 0) {
    linger_give_up_ms = atoi(linger);
  }
  errno = saved;
}

/* Re-reads the policy if it or a file it names changed. Called with
 * cfg_lock held. */
static void maybe_reload_locked(void) {
  /* What the files look like now, before they are read: a file written
   * while the policy loads (a key just after its certificate) then differs
   * from this snapshot and is read again at the next check. */
  static struct file_stamp before[MAX_STAMPS];
  bool changed = false;
  for (size_t i = 0; i < stamp_count; i++) {
    stamp_file(&before[i], stamps[i].path);
    changed = changed || stamp_changed_from(&stamps[i], &before[i]);
  }
  if (!changed) {
    return;
  }
  size_t before_count = stamp_count;
  struct policy_diag err;
  memset(&err, 0, sizeof(err));
  struct policy_diags warnings = {0};
  struct tls_config *cfg = NULL;
  if (load_config(&cfg, policy_path, ticket_keys, &err, &warnings) != 0) {
    char line[1400];
    log_msg(POLICY_LOG_ERROR, "reload",
            "new policy rejected, keeping the last good one: %s",
            policy_diag_format(&err, line, sizeof(line)));
    /* Remember what we saw, so the same broken files are not re-read
     * every second; the next change is tried again. */
    memcpy(stamps, before, before_count * sizeof(*stamps));
    policy_diags_cleanup(&warnings);
    status_reload(false);
    return;
  }
  log_warnings(&warnings);
  policy_diags_cleanup(&warnings);
  struct tls_config *old = active;
  /* Client sessions made under settings the new policy keeps still resume;
   * the server side needs nothing: tickets carry their settings digest. */
  tls_config_inherit_sessions(cfg, old);
  active = cfg;
  const struct policy *p = tls_config_policy(cfg);
  stamp_policy(p->path, p);
  /* Files that were known before keep their pre-load snapshot. */
  for (size_t i = 0; i < stamp_count; i++) {
    for (size_t j = 0; j < before_count; j++) {
      if (strcmp(stamps[i].path, before[j].path) == 0) {
        stamps[i] = before[j];
        break;
      }
    }
  }
  apply_logging(p, getauxval(AT_SECURE) != 0);
  log_msg(POLICY_LOG_INFO, "reload", "policy %s reloaded", p->path);
  status_reload(true);
  tls_config_unref(old);
}

static pthread_once_t init_once = PTHREAD_ONCE_INIT;

/* Runs from the library constructor, or earlier from the first connection
 * decision if another library's constructor makes one first: a selected
 * connection is never let through as plaintext for want of a policy. */
void shim_init(void) { pthread_once(&init_once, shim_init_once); }

void shim_config_atfork(enum shim_fork_phase phase) {
  if (phase == SHIM_FORK_PREPARE) {
    pthread_mutex_lock(&cfg_lock);
  } else if (phase == SHIM_FORK_PARENT) {
    pthread_mutex_unlock(&cfg_lock);
  } else {
    pthread_mutex_t fresh = PTHREAD_MUTEX_INITIALIZER;
    cfg_lock = fresh;
  }
}

struct tls_config *shim_config_acquire(void) {
  if (!__atomic_load_n(&initialised, __ATOMIC_ACQUIRE)) {
    if (shim_in_shim()) {
      return NULL;
    }
    shim_init();
  }
  struct tls_config *cfg;
  int64_t now = shim_now_ms();
  pthread_mutex_lock(&cfg_lock);
  if (now - last_check_ms >= RELOAD_INTERVAL_MS) {
    last_check_ms = now;
    maybe_reload_locked();
  }
  cfg = active;
  tls_config_ref(cfg);
  pthread_mutex_unlock(&cfg_lock);
  return cfg;
}

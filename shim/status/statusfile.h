/* statusfile.h: the layout of a process's status file (SPEC 9), shared by
 * the shim that writes it and the CLI that reads it, and the reader.
 *
 * Each process under the shim owns <dir>/<pid>.status (mode 0600, its
 * directory 0700): a fixed-layout file that the process maps and writes in
 * place. Readers never lock it: everything but the byte counters is
 * written inside a sequence lock (header.seq odd while a write is in
 * progress), so a reader copies the file and retries until it saw the
 * same even seq before and after. Byte counters are single 8-byte aligned
 * words, stored with relaxed atomics without the seq: a reader sees each
 * one whole, and they only grow. The layout changes only with
 * STATUSFILE_VERSION; readers skip files of other versions. */
#ifndef TLSSHIM_SHIM_STATUS_STATUSFILE_H
#define TLSSHIM_SHIM_STATUS_STATUSFILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define STATUSFILE_MAGIC 0x3153545348534c54ULL /* "TLSHSTS1" */
#define STATUSFILE_VERSION 1
#define STATUSFILE_CONNS 512  /* open TLS connections shown per process */
#define STATUSFILE_RULES 64   /* rules with counters per process */
#define STATUSFILE_COMBOS 256 /* established (rule, direction, version, ...)   \
                               */

/* Failure reason classes (SPEC 9), from the failure reasons the shim logs. */
enum statusfile_class {
  STATUSFILE_CERTIFICATE = 0,
  STATUSFILE_NAME,
  STATUSFILE_PROTOCOL,
  STATUSFILE_CIPHER,
  STATUSFILE_GROUP,
  STATUSFILE_TIMEOUT,
  STATUSFILE_RESET,
  STATUSFILE_GARBAGE,
  STATUSFILE_OTHER, /* a local error: out of memory, a socket error */
  STATUSFILE_CLASS_COUNT,
};

enum { STATUSFILE_OUTBOUND = 0, STATUSFILE_INBOUND = 1 };

struct statusfile_header {
  uint64_t magic;
  uint32_t version;
  uint32_t size; /* sizeof(struct statusfile) */
  uint32_t seq;  /* sequence lock: odd while written */
  int32_t pid;
  uint64_t start_ticks; /* field 22 of /proc/PID/stat: tells pid reuse */
  int64_t started_ms;   /* CLOCK_REALTIME, ms */
  char program[256];    /* real path of the executable */
  uint64_t reloads_accepted;
  uint64_t reloads_rejected;
  uint64_t conns_untracked; /* established while every slot was in use */
  uint64_t combos_overflow; /* established counted under no combination */
  uint64_t rules_overflow;  /* events of rules beyond STATUSFILE_RULES */
};

/* One open TLS connection. used == 0: a free slot. */
struct statusfile_conn {
  uint32_t used;
  uint16_t rule;     /* index in rules[] */
  uint8_t direction; /* STATUSFILE_OUTBOUND / STATUSFILE_INBOUND */
  uint8_t resumed;
  int64_t started_ms; /* CLOCK_REALTIME, ms */
  uint64_t bytes_in;  /* plaintext the program read (relaxed, no seq) */
  uint64_t bytes_out; /* plaintext the program wrote (relaxed, no seq) */
  char local[64];
  char peer[64];
  char name[128];
  char version[16];
  char cipher[64];
  char group[32];
  char peer_identity[256];
};

/* Counters of one rule ("default_action" for connections no rule matched). */
struct statusfile_rule {
  char name[128];
  uint64_t failed[2][STATUSFILE_CLASS_COUNT]; /* [direction][class] */
  uint64_t denied[2];
  uint64_t plaintext[2];
  uint64_t permissive_tls;       /* permissive rules: ClientHello seen */
  uint64_t permissive_plaintext; /* permissive rules: served plaintext */
  uint64_t bytes_in;             /* of connections already closed (under seq) */
  uint64_t bytes_out;
};

/* Established connections of one kind. */
struct statusfile_combo {
  uint32_t used;
  uint16_t rule;
  uint8_t direction;
  uint8_t resumed;
  char version[16];
  char cipher[64];
  char group[32];
  uint64_t count;
};

struct statusfile {
  struct statusfile_header h;
  uint32_t rule_count;
  uint32_t combo_count;
  struct statusfile_rule rules[STATUSFILE_RULES];
  struct statusfile_combo combos[STATUSFILE_COMBOS];
  struct statusfile_conn conns[STATUSFILE_CONNS];
};

/* statusfile_class_name returns "certificate", "name", ... "other". */
const char *statusfile_class_name(enum statusfile_class c);

/* statusfile_classify maps a failure reason, as the shim logs it
 * ("certificate has expired", "handshake timeout", ...), to its class. */
enum statusfile_class statusfile_classify(const char *reason);

/* statusfile_default_dir writes the status directory used when the policy
 * names none: $XDG_RUNTIME_DIR/tlsshim (ignored when |secure|), else
 * /run/tlsshim if it is ours or we may create it, else /tmp/tlsshim-UID. */
void statusfile_default_dir(char *out, size_t out_len, bool secure);

/* statusfile_secure_dir makes |dir| (mode 0700) if missing and checks that
 * it is a real directory owned by the effective user with no group or
 * other access, so that no other user can plant or read files in it.
 * Returns 0 or -errno (-EPERM: it exists but is not safe). */
int statusfile_secure_dir(const char *dir);

/* statusfile_start_ticks returns field 22 (starttime) of /proc/PID/stat,
 * or 0 if it cannot be read, and its state letter (field 3: 'R', 'S',
 * 'Z'...) in |*out_state| (may be NULL); statusfile_parse_stat reads them
 * from the text of such a file. */
uint64_t statusfile_start_ticks(int pid, char *out_state);
uint64_t statusfile_parse_stat(const char *stat_text, char *out_state);

/* One process as a reader saw it: a consistent copy of its file. */
struct statusfile_snapshot {
  char path[512];
  struct statusfile f;
};

/* statusfile_read_dir reads every live process's file in |dir| into a new
 * array (|*out|, |*out_count|; free with free()), sorted by pid. With
 * |pids| (count |pid_count| > 0) only those. Files of processes that are
 * gone (no such pid, or the pid now belongs to a process started at
 * another time) are removed. Returns 0 (a missing |dir| is an empty
 * list), or -errno. */
int statusfile_read_dir(const char *dir, const int *pids, size_t pid_count,
                        struct statusfile_snapshot **out, size_t *out_count);

/* statusfile_read_consistent copies |src| (a mapped file) into |out|,
 * retrying while a write is in progress. Returns 0, or -EAGAIN if no
 * consistent copy was had after many tries. */
int statusfile_read_consistent(const volatile struct statusfile *src,
                               struct statusfile *out);

#ifdef __cplusplus
}
#endif

#endif /* TLSSHIM_SHIM_STATUS_STATUSFILE_H */

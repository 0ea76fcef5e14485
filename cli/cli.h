/* cli.h: the commands of the tlsshim command-line tool and their helpers. */
#ifndef TLSSHIM_CLI_CLI_H
#define TLSSHIM_CLI_CLI_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "policy/policy.h"
#include "shim/tls/tls.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Exit statuses (sysexits.h and the shell's conventions). */
#define CLI_EXIT_OK 0
#define CLI_EXIT_FAIL 1
#define CLI_EXIT_USAGE 2
#define CLI_EXIT_CONFIG 78
#define CLI_EXIT_REFUSED 126
#define CLI_EXIT_NOTFOUND 127

/* Where the policy is when no -p is given and TLSSHIM_POLICY is unset. */
#define CLI_DEFAULT_POLICY "/etc/tlsshim/policy.yaml"

/* Each command gets the arguments after its own name (argv[0] is the
 * command name) and returns the process exit status. */
int cli_check(int argc, char **argv);
int cli_explain(int argc, char **argv);
int cli_run(int argc, char **argv);
int cli_pki(int argc, char **argv);
int cli_version(int argc, char **argv);
int cli_status(int argc, char **argv);
int cli_metrics(int argc, char **argv);

/* What `status` and `metrics` share (cmd_status.c). */
struct statusfile;
struct statusfile_snapshot;
/* cli_status_dir writes the status directory: |opt| (--dir), else
 * TLSSHIM_STATUS_DIR, else the shim's default. */
void cli_status_dir(const char *opt, char *out, size_t out_len);
/* cli_status_read reads every live process's file (statusfile_read_dir);
 * prints the error and returns -1 on failure. */
int cli_status_read(const char *dir, const int *pids, size_t pid_count,
                    struct statusfile_snapshot **out, size_t *out_count);
/* cli_status_rule_bytes: bytes of rule |rule|, closed and open
 * connections. */
void cli_status_rule_bytes(const struct statusfile *f, uint32_t rule,
                           uint64_t *out_in, uint64_t *out_out);
const char *cli_status_direction(unsigned d);
/* cli_metrics_write writes the Prometheus text exposition of |s|. */
void cli_metrics_write(FILE *out, const struct statusfile_snapshot *s,
                       size_t n);

/* cli_usage writes the usage text to |f|. */
void cli_usage(FILE *f);

/* cli_error prints "tlsshim: MESSAGE" on stderr. */
void cli_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* cli_usage_error prints "tlsshim: MESSAGE" and the usage text on stderr and
 * returns CLI_EXIT_USAGE. */
int cli_usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* cli_print_diag prints |d| as "tlsshim: policy PATH: line L col C: MSG",
 * followed by the quoted policy line and a caret under the column.
 * |policy_path| (may be NULL) is the policy file, read for the quoted line
 * when |d| does not carry it. */
void cli_print_diag(const struct policy_diag *d, const char *policy_path);

/* cli_print_warnings prints each warning as "tlsshim: warning: ...". */
void cli_print_warnings(const struct policy_diags *w);

/* cli_load_config loads |path| and validates it completely (policy_load,
 * then tls_config_new). On success returns 0 with |*out| set and the
 * warnings printed when |print_warnings|; on failure prints the error lines
 * and returns -1. */
int cli_load_config(const char *path, bool print_warnings,
                    struct tls_config **out);

/* cli_default_policy returns TLSSHIM_POLICY if set and non-empty, else
 * CLI_DEFAULT_POLICY. */
const char *cli_default_policy(void);

#ifdef __cplusplus
}
#endif

#endif /* TLSSHIM_CLI_CLI_H */

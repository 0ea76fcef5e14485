/* common.c: what the commands share: error lines, policy diagnostics with
 * the quoted source line (netplan style), and complete policy validation. */
#include "cli/cli.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

static void verror(const char *fmt, va_list ap) {
  fputs("tlsshim: ", stderr);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
}

void cli_error(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  verror(fmt, ap);
  va_end(ap);
}

int cli_usage_error(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  verror(fmt, ap);
  va_end(ap);
  cli_usage(stderr);
  return CLI_EXIT_USAGE;
}

const char *cli_default_policy(void) {
  const char *env = getenv("TLSSHIM_POLICY");
  return env != NULL && env[0] != '\0' ? env : CLI_DEFAULT_POLICY;
}

/* Reads line |line| (1-based) of |path| into |buf| without its newline.
 * Returns 0, or -1 if the file or the line cannot be read. */
static int read_line(const char *path, int line, char *buf, size_t buf_len) {
  FILE *f = fopen(path, "r");
  if (f == NULL) {
    return -1;
  }
  int rc = -1;
  int l = 1;
  size_t n = 0;
  int c;
  while ((c = fgetc(f)) != EOF) {
    if (c == '\n') {
      if (l == line) {
        break;
      }
      l++;
      continue;
    }
    if (l == line && n + 1 < buf_len) {
      buf[n++] = (char)c;
    }
  }
  if (l == line) {
    buf[n] = '\0';
    rc = 0;
  }
  fclose(f);
  return rc;
}

void cli_print_diag(const struct policy_diag *d, const char *policy_path) {
  char buf[1400];
  fprintf(stderr, "tlsshim: %s\n", policy_diag_format(d, buf, sizeof(buf)));
  if (d->line <= 0) {
    return;
  }
  char src[sizeof(d->source_line)];
  if (d->source_line[0] != '\0') {
    snprintf(src, sizeof(src), "%s", d->source_line);
  } else {
    /* The TLS layer's diagnostics do not quote the line: read it, but only
     * from the policy file itself. */
    char real[4096];
    if (policy_path == NULL || realpath(policy_path, real) == NULL ||
        strcmp(real, d->file) != 0 ||
        read_line(d->file, d->line, src, sizeof(src)) < 0) {
      return;
    }
  }
  /* The caret line copies tabs so the caret sits under the column whatever
   * the terminal's tab width. */
  char caret[sizeof(src) + 2];
  size_t n = 0;
  size_t src_len = strlen(src);
  for (int i = 0; i < d->col - 1 && n + 2 < sizeof(caret); i++) {
    caret[n++] = ((size_t)i < src_len && src[i] == '\t') ? '\t' : ' ';
  }
  caret[n++] = '^';
  caret[n] = '\0';
  fprintf(stderr, "    %s\n    %s\n", src, caret);
}

void cli_print_warnings(const struct policy_diags *w) {
  char buf[1400];
  for (size_t i = 0; i < w->count; i++) {
    fprintf(stderr, "tlsshim: warning: %s\n",
            policy_diag_format(&w->items[i], buf, sizeof(buf)));
  }
}

int cli_load_config(const char *path, bool print_warnings,
                    struct tls_config **out) {
  struct policy *p = NULL;
  struct policy_diag err;
  struct policy_diags warnings = {0};
  memset(&err, 0, sizeof(err));
  *out = NULL;
  if (policy_load(&p, path, &err, &warnings) < 0) {
    cli_print_diag(&err, path);
    policy_diags_cleanup(&warnings);
    return -1;
  }
  tls_global_init();
  if (tls_config_new(out, p, NULL, &err, &warnings) < 0) {
    cli_print_diag(&err, path);
    policy_free(p);
    policy_diags_cleanup(&warnings);
    return -1;
  }
  if (print_warnings) {
    cli_print_warnings(&warnings);
  }
  policy_diags_cleanup(&warnings);
  return 0;
}

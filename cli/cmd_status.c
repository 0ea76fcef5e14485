/* cmd_status.c: `tlsshim status [PID...] [--json] [--dir DIR]`: the live TLS
 * connections of the programs under the shim and their counters, read from
 * their status files (SPEC 5, 9). */
#include "cli/cli.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "shim/status/statusfile.h"

static int64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void cli_status_dir(const char *opt, char *out, size_t out_len) {
  const char *env = getenv("TLSSHIM_STATUS_DIR");
  if (opt != NULL) {
    snprintf(out, out_len, "%s", opt);
  } else if (env != NULL && env[0] != '\0') {
    snprintf(out, out_len, "%s", env);
  } else {
    statusfile_default_dir(out, out_len, false);
  }
}

void cli_status_rule_bytes(const struct statusfile *f, uint32_t rule,
                           uint64_t *out_in, uint64_t *out_out) {
  *out_in = f->rules[rule].bytes_in;
  *out_out = f->rules[rule].bytes_out;
  for (size_t i = 0; i < STATUSFILE_CONNS; i++) {
    const struct statusfile_conn *c = &f->conns[i];
    if (c->used != 0 && c->rule == rule) {
      *out_in += c->bytes_in;
      *out_out += c->bytes_out;
    }
  }
}

const char *cli_status_direction(unsigned d) {
  return d == STATUSFILE_INBOUND ? "inbound" : "outbound";
}

/* ---- text ---- */

#define MAX_COLS 16

/* A table of strings printed with aligned columns. */
struct table {
  size_t cols;
  size_t rows, cap;
  char **cells; /* rows * cols, owned */
};

static void table_row(struct table *t, const char *const *values) {
  if (t->rows == t->cap) {
    size_t ncap = t->cap ? t->cap * 2 : 16;
    char **n = realloc(t->cells, ncap * t->cols * sizeof(char *));
    if (n == NULL) {
      return;
    }
    t->cells = n;
    t->cap = ncap;
  }
  for (size_t c = 0; c < t->cols; c++) {
    const char *v = values[c] != NULL && values[c][0] != '\0' ? values[c] : "-";
    t->cells[t->rows * t->cols + c] = strdup(v);
  }
  t->rows++;
}

static void table_free(struct table *t) {
  for (size_t i = 0; i < t->rows * t->cols; i++) {
    free(t->cells[i]);
  }
  free(t->cells);
  t->cells = NULL;
  t->rows = t->cap = 0;
}

static void table_print(struct table *t, const char *indent) {
  size_t width[MAX_COLS] = {0};
  for (size_t r = 0; r < t->rows; r++) {
    for (size_t c = 0; c < t->cols; c++) {
      const char *v = t->cells[r * t->cols + c];
      size_t n = v != NULL ? strlen(v) : 1;
      width[c] = n > width[c] ? n : width[c];
    }
  }
  for (size_t r = 0; r < t->rows; r++) {
    fputs(indent, stdout);
    for (size_t c = 0; c < t->cols; c++) {
      const char *v = t->cells[r * t->cols + c];
      if (c + 1 == t->cols) {
        printf("%s\n", v != NULL ? v : "-");
      } else {
        printf("%-*s  ", (int)width[c], v != NULL ? v : "-");
      }
    }
  }
  table_free(t);
}

static void fmt_age(int64_t ms, char *out, size_t len) {
  int64_t s = ms > 0 ? ms / 1000 : 0;
  if (s < 60) {
    snprintf(out, len, "%llds", (long long)s);
  } else if (s < 3600) {
    snprintf(out, len, "%lldm%02llds", (long long)(s / 60),
             (long long)(s % 60));
  } else if (s < 86400) {
    snprintf(out, len, "%lldh%02lldm", (long long)(s / 3600),
             (long long)(s / 60 % 60));
  } else {
    snprintf(out, len, "%lldd%02lldh", (long long)(s / 86400),
             (long long)(s / 3600 % 24));
  }
}

static void fmt_bytes(uint64_t n, char *out, size_t len) {
  static const char units[] = "KMGTP";
  if (n < 1024) {
    snprintf(out, len, "%llu", (unsigned long long)n);
    return;
  }
  double v = (double)n;
  int u = -1;
  while (v >= 1024 && u < 4) {
    v /= 1024;
    u++;
  }
  snprintf(out, len, v < 10 ? "%.1f%c" : "%.0f%c", v, units[u]);
}

static const char *base_name(const char *path) {
  const char *slash = strrchr(path, '/');
  return slash != NULL ? slash + 1 : path;
}

static uint64_t sum(const uint64_t *v, size_t n) {
  uint64_t s = 0;
  for (size_t i = 0; i < n; i++) {
    s += v[i];
  }
  return s;
}

static uint64_t rule_established(const struct statusfile *f, uint32_t rule) {
  uint64_t n = 0;
  for (uint32_t i = 0; i < f->combo_count && i < STATUSFILE_COMBOS; i++) {
    if (f->combos[i].rule == rule) {
      n += f->combos[i].count;
    }
  }
  return n;
}

static void print_connections(const struct statusfile_snapshot *s, size_t n,
                              int64_t now) {
  static const char *const head[] = {
      "PID",     "PROGRAM",       "DIRECTION", "RULE",   "LOCAL",
      "PEER",    "NAME",          "VERSION",   "CIPHER", "GROUP",
      "RESUMED", "PEER IDENTITY", "IN",        "OUT",    "AGE"};
  struct table t = {.cols = 15};
  table_row(&t, head);
  for (size_t p = 0; p < n; p++) {
    const struct statusfile *f = &s[p].f;
    char pid[16];
    snprintf(pid, sizeof(pid), "%d", f->h.pid);
    for (size_t i = 0; i < STATUSFILE_CONNS; i++) {
      const struct statusfile_conn *c = &f->conns[i];
      if (c->used == 0) {
        continue;
      }
      char in[16], out[16], age[16];
      fmt_bytes(c->bytes_in, in, sizeof(in));
      fmt_bytes(c->bytes_out, out, sizeof(out));
      fmt_age(now - c->started_ms, age, sizeof(age));
      const char *rule = c->rule < f->rule_count ? f->rules[c->rule].name : "";
      const char *row[] = {pid,
                           base_name(f->h.program),
                           cli_status_direction(c->direction),
                           rule,
                           c->local,
                           c->peer,
                           c->name,
                           c->version,
                           c->cipher,
                           c->group,
                           c->resumed ? "yes" : "no",
                           c->peer_identity,
                           in,
                           out,
                           age};
      table_row(&t, row);
    }
  }
  if (t.rows > 1) {
    table_print(&t, "");
  } else {
    table_free(&t);
  }
}

static void print_counters(const struct statusfile *f, int64_t now) {
  char up[16];
  fmt_age(now - f->h.started_ms, up, sizeof(up));
  printf("\npid %d  %s  up %s  reloads: %llu accepted, %llu rejected\n",
         f->h.pid, f->h.program[0] ? f->h.program : "?", up,
         (unsigned long long)f->h.reloads_accepted,
         (unsigned long long)f->h.reloads_rejected);
  if (f->rule_count == 0) {
    printf("  no connection decided yet\n");
    return;
  }
  static const char *const head[] = {"RULE",   "ESTABLISHED", "FAILED",
                                     "DENIED", "PLAINTEXT",   "PERMISSIVE",
                                     "IN",     "OUT"};
  struct table t = {.cols = 8};
  table_row(&t, head);
  for (uint32_t r = 0; r < f->rule_count && r < STATUSFILE_RULES; r++) {
    const struct statusfile_rule *ru = &f->rules[r];
    char est[24], failed[24], denied[24], plain[24], perm[48], in[16], out[16];
    uint64_t bin, bout;
    cli_status_rule_bytes(f, r, &bin, &bout);
    snprintf(est, sizeof(est), "%llu",
             (unsigned long long)rule_established(f, r));
    snprintf(
        failed, sizeof(failed), "%llu",
        (unsigned long long)sum(&ru->failed[0][0], 2 * STATUSFILE_CLASS_COUNT));
    snprintf(denied, sizeof(denied), "%llu",
             (unsigned long long)(ru->denied[0] + ru->denied[1]));
    snprintf(plain, sizeof(plain), "%llu",
             (unsigned long long)(ru->plaintext[0] + ru->plaintext[1]));
    snprintf(perm, sizeof(perm), "%llu tls, %llu plain",
             (unsigned long long)ru->permissive_tls,
             (unsigned long long)ru->permissive_plaintext);
    fmt_bytes(bin, in, sizeof(in));
    fmt_bytes(bout, out, sizeof(out));
    const char *row[] = {
        ru->name, est,
        failed,   denied,
        plain,    ru->permissive_tls + ru->permissive_plaintext ? perm : "0",
        in,       out};
    table_row(&t, row);
  }
  table_print(&t, "  ");
  /* What was negotiated, and why connections failed. */
  for (uint32_t i = 0; i < f->combo_count && i < STATUSFILE_COMBOS; i++) {
    const struct statusfile_combo *c = &f->combos[i];
    printf("  established  %s %s: %s %s %s%s: %llu\n",
           c->rule < f->rule_count ? f->rules[c->rule].name : "?",
           cli_status_direction(c->direction), c->version, c->cipher, c->group,
           c->resumed ? " resumed" : "", (unsigned long long)c->count);
  }
  for (uint32_t r = 0; r < f->rule_count && r < STATUSFILE_RULES; r++) {
    for (int d = 0; d < 2; d++) {
      const uint64_t *v = f->rules[r].failed[d];
      if (sum(v, STATUSFILE_CLASS_COUNT) == 0) {
        continue;
      }
      printf("  failed       %s %s:", f->rules[r].name,
             cli_status_direction((unsigned)d));
      const char *sep = " ";
      for (int c = 0; c < STATUSFILE_CLASS_COUNT; c++) {
        if (v[c] != 0) {
          printf("%s%s %llu", sep, statusfile_class_name(c),
                 (unsigned long long)v[c]);
          sep = ", ";
        }
      }
      printf("\n");
    }
  }
  if (f->h.conns_untracked != 0) {
    printf("  %llu connections established while the table was full "
           "(counted, not listed)\n",
           (unsigned long long)f->h.conns_untracked);
  }
}

static void print_text(const char *dir, const struct statusfile_snapshot *s,
                       size_t n) {
  int64_t now = now_ms();
  size_t conns = 0, in = 0;
  uint64_t est = 0, failed = 0, denied = 0;
  for (size_t p = 0; p < n; p++) {
    const struct statusfile *f = &s[p].f;
    for (size_t i = 0; i < STATUSFILE_CONNS; i++) {
      if (f->conns[i].used != 0) {
        conns++;
        in += f->conns[i].direction == STATUSFILE_INBOUND;
      }
    }
    for (uint32_t i = 0; i < f->combo_count && i < STATUSFILE_COMBOS; i++) {
      est += f->combos[i].count;
    }
    for (uint32_t r = 0; r < f->rule_count && r < STATUSFILE_RULES; r++) {
      failed += sum(&f->rules[r].failed[0][0], 2 * STATUSFILE_CLASS_COUNT);
      denied += f->rules[r].denied[0] + f->rules[r].denied[1];
    }
  }
  if (n == 0) {
    printf("no process under the shim (status directory %s)\n", dir);
    return;
  }
  print_connections(s, n, now);
  printf("%zu TLS connection%s open (%zu inbound, %zu outbound) in %zu "
         "process%s; since they started: %llu established, %llu failed, "
         "%llu denied\n",
         conns, conns == 1 ? "" : "s", in, conns - in, n, n == 1 ? "" : "es",
         (unsigned long long)est, (unsigned long long)failed,
         (unsigned long long)denied);
  for (size_t p = 0; p < n; p++) {
    print_counters(&s[p].f, now);
  }
}

/* ---- JSON ---- */

static void json_string(FILE *out, const char *s) {
  fputc('"', out);
  for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
    if (*p == '"' || *p == '\\') {
      fprintf(out, "\\%c", *p);
    } else if (*p < 0x20 || *p == 0x7f) {
      fprintf(out, "\\u%04x", *p);
    } else {
      fputc(*p, out);
    }
  }
  fputc('"', out);
}

static void json_kv(const char *key, const char *value, bool comma) {
  printf("\"%s\": ", key);
  json_string(stdout, value);
  if (comma) {
    fputs(", ", stdout);
  }
}

static void json_pair(const char *key, const uint64_t v[2]) {
  printf("\"%s\": {\"outbound\": %llu, \"inbound\": %llu}", key,
         (unsigned long long)v[0], (unsigned long long)v[1]);
}

static void print_json_process(const struct statusfile *f, int64_t now) {
  printf("{\"pid\": %d, ", f->h.pid);
  json_kv("program", f->h.program, true);
  printf("\"started_ms\": %lld, \"reloads\": {\"accepted\": %llu, "
         "\"rejected\": %llu}, \"untracked\": %llu,\n   \"connections\": [",
         (long long)f->h.started_ms, (unsigned long long)f->h.reloads_accepted,
         (unsigned long long)f->h.reloads_rejected,
         (unsigned long long)f->h.conns_untracked);
  const char *sep = "";
  for (size_t i = 0; i < STATUSFILE_CONNS; i++) {
    const struct statusfile_conn *c = &f->conns[i];
    if (c->used == 0) {
      continue;
    }
    printf("%s\n    {", sep);
    sep = ",";
    json_kv("direction", cli_status_direction(c->direction), true);
    json_kv("rule", c->rule < f->rule_count ? f->rules[c->rule].name : "",
            true);
    json_kv("local", c->local, true);
    json_kv("peer", c->peer, true);
    json_kv("name", c->name, true);
    json_kv("version", c->version, true);
    json_kv("cipher", c->cipher, true);
    json_kv("group", c->group, true);
    printf("\"resumed\": %s, ", c->resumed ? "true" : "false");
    json_kv("peer_identity", c->peer_identity, true);
    printf("\"bytes_in\": %llu, \"bytes_out\": %llu, \"started_ms\": %lld, "
           "\"age_s\": %.3f}",
           (unsigned long long)c->bytes_in, (unsigned long long)c->bytes_out,
           (long long)c->started_ms, (double)(now - c->started_ms) / 1000.0);
  }
  printf("],\n   \"rules\": [");
  for (uint32_t r = 0; r < f->rule_count && r < STATUSFILE_RULES; r++) {
    const struct statusfile_rule *ru = &f->rules[r];
    uint64_t bin, bout;
    cli_status_rule_bytes(f, r, &bin, &bout);
    printf("%s\n    {", r ? "," : "");
    json_kv("name", ru->name, true);
    printf("\"established\": %llu, \"established_by\": [",
           (unsigned long long)rule_established(f, r));
    const char *csep = "";
    for (uint32_t i = 0; i < f->combo_count && i < STATUSFILE_COMBOS; i++) {
      const struct statusfile_combo *c = &f->combos[i];
      if (c->rule != r) {
        continue;
      }
      printf("%s{", csep);
      csep = ", ";
      json_kv("direction", cli_status_direction(c->direction), true);
      json_kv("version", c->version, true);
      json_kv("cipher", c->cipher, true);
      json_kv("group", c->group, true);
      printf("\"resumed\": %s, \"count\": %llu}", c->resumed ? "true" : "false",
             (unsigned long long)c->count);
    }
    printf("],\n     \"failed\": {");
    for (int d = 0; d < 2; d++) {
      printf("%s\"%s\": {", d ? ", " : "", cli_status_direction((unsigned)d));
      for (int c = 0; c < STATUSFILE_CLASS_COUNT; c++) {
        printf("%s\"%s\": %llu", c ? ", " : "", statusfile_class_name(c),
               (unsigned long long)ru->failed[d][c]);
      }
      printf("}");
    }
    printf("},\n     ");
    json_pair("denied", ru->denied);
    printf(", ");
    json_pair("plaintext", ru->plaintext);
    printf(", \"permissive\": {\"tls\": %llu, \"plaintext\": %llu}, "
           "\"bytes_in\": %llu, \"bytes_out\": %llu}",
           (unsigned long long)ru->permissive_tls,
           (unsigned long long)ru->permissive_plaintext,
           (unsigned long long)bin, (unsigned long long)bout);
  }
  printf("]}");
}

static void print_json(const char *dir, const struct statusfile_snapshot *s,
                       size_t n) {
  int64_t now = now_ms();
  printf("{");
  json_kv("dir", dir, true);
  printf("\"processes\": [");
  for (size_t p = 0; p < n; p++) {
    printf("%s\n  ", p ? "," : "");
    print_json_process(&s[p].f, now);
  }
  printf("]}\n");
}

int cli_status_read(const char *dir, const int *pids, size_t pid_count,
                    struct statusfile_snapshot **out, size_t *out_count) {
  int r = statusfile_read_dir(dir, pids, pid_count, out, out_count);
  if (r != 0) {
    cli_error("cannot read the status directory %s: %s", dir, strerror(-r));
    return -1;
  }
  return 0;
}

int cli_status(int argc, char **argv) {
  bool json = false;
  const char *dir_opt = NULL;
  int *pids = calloc((size_t)argc, sizeof(int));
  size_t pid_count = 0;
  if (pids == NULL) {
    cli_error("out of memory");
    return CLI_EXIT_FAIL;
  }
  for (int i = 1; i < argc; i++) {
    char *end;
    if (strcmp(argv[i], "--json") == 0) {
      json = true;
    } else if (strcmp(argv[i], "--dir") == 0 && i + 1 < argc) {
      dir_opt = argv[++i];
    } else if (argv[i][0] != '-' &&
               (pids[pid_count] = (int)strtol(argv[i], &end, 10)) > 0 &&
               *end == '\0') {
      pid_count++;
    } else {
      free(pids);
      return cli_usage_error("status: unexpected argument '%s'", argv[i]);
    }
  }
  char dir[512];
  cli_status_dir(dir_opt, dir, sizeof(dir));
  struct statusfile_snapshot *s;
  size_t n;
  int r = cli_status_read(dir, pids, pid_count, &s, &n);
  free(pids);
  if (r != 0) {
    return CLI_EXIT_FAIL;
  }
  if (json) {
    print_json(dir, s, n);
  } else {
    print_text(dir, s, n);
  }
  free(s);
  return CLI_EXIT_OK;
}

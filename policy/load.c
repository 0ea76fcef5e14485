/* load.c: the policy file's YAML grammar (the only file with <yaml.h>):
 * key tables per mapping, each row naming the key, the node type it wants,
 * the handler that turns it into a field, and the field's offset. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml.h>

#include "policy/internal.h"
#include "policy/policy.h"

#define NOPOS ((size_t)-1)
#define MAX_ROWS 16
#define MAX_POLICY_SIZE (4 * 1024 * 1024)
#define MAX_TIMEOUT_MS 3600000

struct loader {
  struct policy *p;
  const char *text;
  size_t text_len;
  struct policy_diag *err;
  struct policy_diags *warnings;
  yaml_document_t doc;
  struct policy_pos names_pos; /* the current rule's match.names key */
};

struct row;
typedef int (*handler_fn)(struct loader *ld, const struct row *row,
                          yaml_node_t *key, yaml_node_t *value, void *base);

struct row {
  const char *key;
  yaml_node_type_t type;
  handler_fn handler;
  size_t offset;      /* the field the handler fills, or NOPOS */
  size_t pos_offset;  /* where the key's position goes, or NOPOS */
  const void *arg;    /* handler-specific */
  const char *expect; /* for type errors: "'key' must be EXPECT" */
  bool required;
};

struct table {
  const struct row *rows;
  size_t count;
};

struct enum_name {
  const char *name;
  int value;
};

/* An enum's accepted words, ending with a NULL name. */
struct enum_table {
  const char *what; /* "action" in "unknown action 'x'" */
  const struct enum_name *names;
};

/* ---- diagnostics ---- */

static void copy_source_line(const struct loader *ld, int line, char *out,
                             size_t out_len) {
  out[0] = '\0';
  if (ld->text == NULL || line <= 0) {
    return;
  }
  const char *s = ld->text, *end = ld->text + ld->text_len;
  for (int l = 1; l < line && s < end; l++) {
    const char *nl = memchr(s, '\n', (size_t)(end - s));
    if (nl == NULL) {
      return;
    }
    s = nl + 1;
  }
  const char *e = memchr(s, '\n', (size_t)(end - s));
  if (e == NULL) {
    e = end;
  }
  if (e > s && e[-1] == '\r') {
    e--;
  }
  size_t n = (size_t)(e - s);
  if (n >= out_len) {
    n = out_len - 1;
  }
  memcpy(out, s, n);
  out[n] = '\0';
}

static const char *path_of(const struct loader *ld) {
  return ld->p->path != NULL ? ld->p->path : "<policy>";
}

static int fail_at(struct loader *ld, int line, int col, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int fail_at(struct loader *ld, int line, int col, const char *fmt, ...) {
  if (ld->err != NULL) {
    char msg[sizeof(ld->err->message)];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    policy_diag_set(ld->err, path_of(ld), line, col, "%s", msg);
    copy_source_line(ld, line, ld->err->source_line,
                     sizeof(ld->err->source_line));
  }
  return -EINVAL;
}

static struct policy_pos mark_pos(yaml_mark_t m) {
  struct policy_pos pos = {(int)m.line + 1, (int)m.column + 1};
  return pos;
}

static struct policy_pos node_pos(const yaml_node_t *n) {
  return mark_pos(n->start_mark);
}

#define FAIL(ld, pos, ...) fail_at((ld), (pos).line, (pos).col, __VA_ARGS__)

static int warn_at(struct loader *ld, struct policy_pos pos, const char *fmt,
                   ...) __attribute__((format(printf, 3, 4)));

static int warn_at(struct loader *ld, struct policy_pos pos, const char *fmt,
                   ...) {
  if (ld->warnings == NULL) {
    return 0;
  }
  struct policy_diag *items =
      realloc(ld->warnings->items, (ld->warnings->count + 1) * sizeof(*items));
  if (items == NULL) {
    return -ENOMEM;
  }
  ld->warnings->items = items;
  struct policy_diag *d = &items[ld->warnings->count++];
  char msg[sizeof(d->message)];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);
  policy_diag_set(d, path_of(ld), pos.line, pos.col, "%s", msg);
  copy_source_line(ld, pos.line, d->source_line, sizeof(d->source_line));
  return 0;
}

static int fail_nomem(struct loader *ld) {
  policy_diag_set(ld->err, path_of(ld), 0, 0, "out of memory");
  return -ENOMEM;
}

static const char *errno_text(int e, char *buf, size_t len) {
  /* GNU strerror_r: returns the text, thread-safe. */
  return strerror_r(e, buf, len);
}

/* ---- node helpers ---- */

static yaml_node_t *node_at(struct loader *ld, yaml_node_item_t index) {
  return yaml_document_get_node(&ld->doc, index);
}

static const char *scalar(const yaml_node_t *n) {
  return (const char *)n->data.scalar.value;
}

/* A plain empty, "~" or "null" scalar: YAML's null. */
static bool is_null(const yaml_node_t *n) {
  if (n->type != YAML_SCALAR_NODE) {
    return false;
  }
  if (n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE) {
    return false;
  }
  const char *s = scalar(n);
  return s[0] == '\0' || strcmp(s, "~") == 0 || strcmp(s, "null") == 0 ||
         strcmp(s, "Null") == 0 || strcmp(s, "NULL") == 0;
}

/* A scalar that is a usable string: not null, no NUL byte inside. */
static bool is_string(const yaml_node_t *n) {
  return n->type == YAML_SCALAR_NODE && !is_null(n) &&
         strlen(scalar(n)) == n->data.scalar.length;
}

static const char *key_name(const yaml_node_t *key) { return scalar(key); }

static int type_error(struct loader *ld, const struct row *row,
                      yaml_node_t *value) {
  return FAIL(ld, node_pos(value), "'%s' must be %s", row->key, row->expect);
}

/* ---- the mapping walker ---- */

static int parse_mapping(struct loader *ld, yaml_node_t *map,
                         const struct table *t, void *base,
                         struct policy_pos owner,
                         struct policy_pos found[MAX_ROWS]);

static const struct row *find_row(const struct table *t, const char *key,
                                  size_t *out_index) {
  for (size_t i = 0; i < t->count; i++) {
    if (strcmp(t->rows[i].key, key) == 0) {
      *out_index = i;
      return &t->rows[i];
    }
  }
  return NULL;
}

static int unknown_key(struct loader *ld, const struct table *t,
                       yaml_node_t *key) {
  const char *best = NULL;
  int best_d = 3;
  for (size_t i = 0; i < t->count; i++) {
    int d = policy_edit_distance(key_name(key), t->rows[i].key, 2);
    if (d < best_d) {
      best_d = d;
      best = t->rows[i].key;
    }
  }
  if (best != NULL) {
    return FAIL(ld, node_pos(key), "unknown key '%s' (did you mean '%s'?)",
                key_name(key), best);
  }
  return FAIL(ld, node_pos(key), "unknown key '%s'", key_name(key));
}

/* Checks the keys of |map| in file order: strings, no duplicates. */
static int check_keys(struct loader *ld, yaml_node_t *map) {
  yaml_node_pair_t *start = map->data.mapping.pairs.start;
  yaml_node_pair_t *top = map->data.mapping.pairs.top;
  for (yaml_node_pair_t *pair = start; pair < top; pair++) {
    yaml_node_t *key = node_at(ld, pair->key);
    if (key == NULL || !is_string(key)) {
      return FAIL(ld, key != NULL ? node_pos(key) : node_pos(map),
                  "keys must be strings");
    }
    for (yaml_node_pair_t *prev = start; prev < pair; prev++) {
      yaml_node_t *pk = node_at(ld, prev->key);
      if (strcmp(key_name(pk), key_name(key)) == 0) {
        return FAIL(ld, node_pos(key), "duplicate key '%s' (first at line %d)",
                    key_name(key), node_pos(pk).line);
      }
    }
  }
  return 0;
}

/* Walks |map| against table |t|: unknown and duplicate keys in file order,
 * then each row in table order (so that, for example, identities are known
 * before the rules that name them), then the required keys. |owner| is where
 * a missing key is reported. |found| (may be NULL) receives each row's key
 * position, 0/0 for absent keys. */
static int parse_mapping(struct loader *ld, yaml_node_t *map,
                         const struct table *t, void *base,
                         struct policy_pos owner,
                         struct policy_pos found[MAX_ROWS]) {
  struct policy_pos local[MAX_ROWS];
  if (found == NULL) {
    found = local;
  }
  memset(found, 0, sizeof(struct policy_pos) * MAX_ROWS);
  int rc = check_keys(ld, map);
  if (rc != 0) {
    return rc;
  }
  yaml_node_pair_t *start = map->data.mapping.pairs.start;
  yaml_node_pair_t *top = map->data.mapping.pairs.top;
  for (yaml_node_pair_t *pair = start; pair < top; pair++) {
    yaml_node_t *key = node_at(ld, pair->key);
    size_t index;
    if (find_row(t, key_name(key), &index) == NULL) {
      return unknown_key(ld, t, key);
    }
  }
  for (size_t i = 0; i < t->count; i++) {
    const struct row *row = &t->rows[i];
    for (yaml_node_pair_t *pair = start; pair < top; pair++) {
      yaml_node_t *key = node_at(ld, pair->key);
      if (strcmp(key_name(key), row->key) != 0) {
        continue;
      }
      yaml_node_t *value = node_at(ld, pair->value);
      if (value == NULL || value->type != row->type ||
          (row->type == YAML_SCALAR_NODE && !is_string(value))) {
        return type_error(ld, row, value != NULL ? value : key);
      }
      if (row->type == YAML_SCALAR_NODE && scalar(value)[0] == '\0') {
        return FAIL(ld, node_pos(value), "'%s' must not be empty", row->key);
      }
      found[i] = node_pos(key);
      if (row->pos_offset != NOPOS) {
        *(struct policy_pos *)((char *)base + row->pos_offset) = found[i];
      }
      rc = row->handler(ld, row, key, value, base);
      if (rc != 0) {
        return rc;
      }
    }
    if (row->required && found[i].line == 0) {
      return FAIL(ld, owner, "missing required key '%s'", row->key);
    }
  }
  return 0;
}

/* ---- scalar handlers ---- */

#define FIELD(base, row, type) ((type *)((char *)(base) + (row)->offset))

static int parse_int(const char *s, long *out) {
  const char *p = s;
  if (*p == '-' || *p == '+') {
    p++;
  }
  if (*p == '\0' || strlen(p) > 12) {
    return -EINVAL;
  }
  for (const char *q = p; *q != '\0'; q++) {
    if (*q < '0' || *q > '9') {
      return -EINVAL;
    }
  }
  *out = strtol(s, NULL, 10);
  return 0;
}

struct int_range {
  long min, max;
};

static int h_int(struct loader *ld, const struct row *row, yaml_node_t *key,
                 yaml_node_t *value, void *base) {
  const struct int_range *range = row->arg;
  long v;
  if (parse_int(scalar(value), &v) != 0) {
    return type_error(ld, row, value);
  }
  if (v < range->min || v > range->max) {
    return FAIL(ld, node_pos(value), "'%s' must be between %ld and %ld",
                row->key, range->min, range->max);
  }
  *FIELD(base, row, int) = (int)v;
  return 0;
}

static int h_version(struct loader *ld, const struct row *row, yaml_node_t *key,
                     yaml_node_t *value, void *base) {
  long v;
  if (parse_int(scalar(value), &v) != 0) {
    return type_error(ld, row, value);
  }
  if (v != 1) {
    return FAIL(ld, node_pos(value),
                "unsupported policy version %s (expected 1)", scalar(value));
  }
  *FIELD(base, row, int) = 1;
  return 0;
}

static int h_bool(struct loader *ld, const struct row *row, yaml_node_t *key,
                  yaml_node_t *value, void *base) {
  const char *s = scalar(value);
  if (strcmp(s, "true") == 0 || strcmp(s, "True") == 0 ||
      strcmp(s, "TRUE") == 0) {
    *FIELD(base, row, bool) = true;
  } else if (strcmp(s, "false") == 0 || strcmp(s, "False") == 0 ||
             strcmp(s, "FALSE") == 0) {
    *FIELD(base, row, bool) = false;
  } else {
    return type_error(ld, row, value);
  }
  return 0;
}

static int h_string(struct loader *ld, const struct row *row, yaml_node_t *key,
                    yaml_node_t *value, void *base) {
  char **field = FIELD(base, row, char *);
  char *copy = strdup(scalar(value));
  if (copy == NULL) {
    return fail_nomem(ld);
  }
  free(*field);
  *field = copy;
  return 0;
}

static int h_enum(struct loader *ld, const struct row *row, yaml_node_t *key,
                  yaml_node_t *value, void *base) {
  const struct enum_table *et = row->arg;
  for (const struct enum_name *e = et->names; e->name != NULL; e++) {
    if (strcmp(e->name, scalar(value)) == 0) {
      *FIELD(base, row, int) = e->value;
      return 0;
    }
  }
  char expected[128] = "";
  size_t n = 0;
  for (const struct enum_name *e = et->names; e->name != NULL; e++) {
    const char *sep = "";
    if (e != et->names) {
      sep = e[1].name == NULL ? " or " : ", ";
    }
    n += (size_t)snprintf(expected + n, sizeof(expected) - n, "%s%s", sep,
                          e->name);
    if (n >= sizeof(expected)) {
      break;
    }
  }
  return FAIL(ld, node_pos(value), "unknown %s '%s' (expected %s)", et->what,
              scalar(value), expected);
}

/* warn_writable warns when a file the policy trusts (the policy itself, a
 * certificate, key, CA bundle, CRL or OCSP response) can be written by users
 * other than its owner (mode bits 022): any of them could then change who
 * is trusted or which key is used. */
static int warn_writable(struct loader *ld, struct policy_pos pos,
                         const char *what, const char *shown, unsigned mode) {
  if ((mode & 022) == 0) {
    return 0;
  }
  if (warn_at(ld, pos, "%s '%s' is writable by other users (mode %04o)", what,
              shown, mode) != 0) {
    return fail_nomem(ld);
  }
  return 0;
}

/* Resolves a file named by the policy and checks it (row->arg: the PEM
 * kind). Stores the absolute path. */
static int check_named_file(struct loader *ld, yaml_node_t *value,
                            const char *path, enum policy_pem_kind kind,
                            const char *shown) {
  unsigned mode = 0;
  int rc = policy_check_file(path, kind, &mode);
  if (rc == -EINVAL) {
    return FAIL(ld, node_pos(value), "'%s' contains no PEM %s block", shown,
                policy_pem_label(kind));
  }
  if (rc != 0) {
    char buf[128];
    return FAIL(ld, node_pos(value), "cannot read '%s': %s", shown,
                errno_text(-rc, buf, sizeof(buf)));
  }
  if (kind == POLICY_PEM_PRIVATE_KEY && (mode & 044) != 0) {
    if (warn_at(ld, node_pos(value),
                "key file '%s' is readable by other users (mode %04o)", shown,
                mode) != 0) {
      return fail_nomem(ld);
    }
  }
  return warn_writable(ld, node_pos(value), "file", shown, mode);
}

static int h_file(struct loader *ld, const struct row *row, yaml_node_t *key,
                  yaml_node_t *value, void *base) {
  enum policy_pem_kind kind = (enum policy_pem_kind)(intptr_t)row->arg;
  char *path = policy_path_join(ld->p->dir, scalar(value));
  if (path == NULL) {
    return fail_nomem(ld);
  }
  int rc = check_named_file(ld, value, path, kind, scalar(value));
  if (rc != 0) {
    free(path);
    return rc;
  }
  char **field = FIELD(base, row, char *);
  free(*field);
  *field = path;
  return 0;
}

static int h_ca(struct loader *ld, const struct row *row, yaml_node_t *key,
                yaml_node_t *value, void *base) {
  struct policy_trust *t = base;
  if (strcmp(scalar(value), "system") != 0) {
    return h_file(ld, row, key, value, base);
  }
  int rc = check_named_file(ld, value, POLICY_SYSTEM_CA_BUNDLE,
                            POLICY_PEM_CERTIFICATE, POLICY_SYSTEM_CA_BUNDLE);
  if (rc != 0) {
    return rc;
  }
  free(t->ca);
  t->ca = strdup(POLICY_SYSTEM_CA_BUNDLE);
  if (t->ca == NULL) {
    return fail_nomem(ld);
  }
  t->ca_system = true;
  return 0;
}

static int h_log_file(struct loader *ld, const struct row *row,
                      yaml_node_t *key, yaml_node_t *value, void *base) {
  struct policy_log *log = base;
  free(log->file);
  log->file = NULL;
  if (strcmp(scalar(value), "stderr") == 0) {
    return 0;
  }
  log->file = policy_path_join(ld->p->dir, scalar(value));
  return log->file != NULL ? 0 : fail_nomem(ld);
}

/* ---- lists ---- */

/* Checks that every item of |seq| is a non-empty string. */
static int check_string_items(struct loader *ld, const struct row *row,
                              yaml_node_t *seq) {
  for (yaml_node_item_t *it = seq->data.sequence.items.start;
       it < seq->data.sequence.items.top; it++) {
    yaml_node_t *item = node_at(ld, *it);
    if (item == NULL || item->type != YAML_SCALAR_NODE ||
        strlen(scalar(item)) != item->data.scalar.length) {
      return FAIL(ld, item != NULL ? node_pos(item) : node_pos(seq),
                  "'%s' items must be strings", row->key);
    }
    if (is_null(item) || scalar(item)[0] == '\0') {
      return FAIL(ld, node_pos(item), "'%s' items must not be empty", row->key);
    }
  }
  return 0;
}

static size_t seq_len(const yaml_node_t *seq) {
  return (size_t)(seq->data.sequence.items.top -
                  seq->data.sequence.items.start);
}

/* row->arg non-NULL: the list must not be empty. */
static int h_strings(struct loader *ld, const struct row *row, yaml_node_t *key,
                     yaml_node_t *value, void *base) {
  int rc = check_string_items(ld, row, value);
  if (rc != 0) {
    return rc;
  }
  if (row->arg != NULL && seq_len(value) == 0) {
    return FAIL(ld, node_pos(value), "'%s' must not be empty", row->key);
  }
  struct policy_strings *s = FIELD(base, row, struct policy_strings);
  policy_strings_cleanup(s);
  for (yaml_node_item_t *it = value->data.sequence.items.start;
       it < value->data.sequence.items.top; it++) {
    yaml_node_t *item = node_at(ld, *it);
    if (strcmp(row->key, "alpn") == 0 && strlen(scalar(item)) > 255) {
      return FAIL(ld, node_pos(item), "'alpn' items must be at most 255 bytes");
    }
    if (policy_strings_push(s, scalar(item), node_pos(item)) != 0) {
      return fail_nomem(ld);
    }
  }
  return 0;
}

static int h_addresses(struct loader *ld, const struct row *row,
                       yaml_node_t *key, yaml_node_t *value, void *base) {
  struct policy_rule *r = base;
  int rc = check_string_items(ld, row, value);
  if (rc != 0) {
    return rc;
  }
  size_t n = seq_len(value);
  r->addresses = calloc(n > 0 ? n : 1, sizeof(*r->addresses));
  if (r->addresses == NULL) {
    return fail_nomem(ld);
  }
  for (yaml_node_item_t *it = value->data.sequence.items.start;
       it < value->data.sequence.items.top; it++) {
    yaml_node_t *item = node_at(ld, *it);
    const char *text = scalar(item);
    rc = policy_parse_cidr(text, &r->addresses[r->address_count]);
    if (rc == -ERANGE) {
      return FAIL(ld, node_pos(item),
                  "invalid prefix length in '%s' (expected 0..%d)", text,
                  strchr(text, ':') != NULL ? 128 : 32);
    }
    if (rc != 0) {
      return FAIL(ld, node_pos(item), "invalid address '%s'", text);
    }
    r->address_count++;
  }
  return 0;
}

static bool name_pattern_ok(const char *s) {
  const char *rest = s;
  if (s[0] == '*') {
    if (s[1] != '.' || s[2] == '\0' || s[2] == '.') {
      return false;
    }
    rest = s + 2;
  }
  if (strchr(rest, '*') != NULL || rest[0] == '.') {
    return false;
  }
  for (const char *p = rest; *p != '\0'; p++) {
    if (*p == ' ' || *p == '\t' || *p == '/' || *p == ':') {
      return false;
    }
  }
  return true;
}

static int h_names(struct loader *ld, const struct row *row, yaml_node_t *key,
                   yaml_node_t *value, void *base) {
  struct policy_rule *r = base;
  int rc = check_string_items(ld, row, value);
  if (rc != 0) {
    return rc;
  }
  ld->names_pos = node_pos(key);
  for (yaml_node_item_t *it = value->data.sequence.items.start;
       it < value->data.sequence.items.top; it++) {
    yaml_node_t *item = node_at(ld, *it);
    if (!name_pattern_ok(scalar(item))) {
      return FAIL(ld, node_pos(item),
                  "invalid name pattern '%s' (a wildcard may only be the "
                  "whole first label, as in '*.example.com')",
                  scalar(item));
    }
    if (policy_strings_push(&r->names, scalar(item), node_pos(item)) != 0) {
      return fail_nomem(ld);
    }
  }
  return 0;
}

static int h_ports(struct loader *ld, const struct row *row, yaml_node_t *key,
                   yaml_node_t *value, void *base) {
  struct policy_rule *r = base;
  int rc = check_string_items(ld, row, value);
  if (rc != 0) {
    return rc;
  }
  size_t n = seq_len(value);
  r->ports = calloc(n > 0 ? n : 1, sizeof(*r->ports));
  if (r->ports == NULL) {
    return fail_nomem(ld);
  }
  for (yaml_node_item_t *it = value->data.sequence.items.start;
       it < value->data.sequence.items.top; it++) {
    yaml_node_t *item = node_at(ld, *it);
    const char *text = scalar(item);
    rc = policy_parse_port(text, &r->ports[r->port_count]);
    if (rc == -ERANGE) {
      return FAIL(ld, node_pos(item),
                  "invalid port range '%s' (low is above high)", text);
    }
    if (rc != 0) {
      return FAIL(ld, node_pos(item),
                  "invalid port '%s' (expected 1..65535 or \"low-high\")",
                  text);
    }
    r->port_count++;
  }
  return 0;
}

/* ---- tls settings ---- */

static int h_tls_version(struct loader *ld, const struct row *row,
                         yaml_node_t *key, yaml_node_t *value, void *base) {
  static const char *const refused[] = {
      "TLS1.0", "TLS1.1", "TLS1", "TLSv1", "TLSv1.0", "TLSv1.1",
      "SSLv3",  "SSLv2",  "SSL3", "SSL2",  "1.0",     "1.1",
  };
  const char *s = scalar(value);
  uint16_t v;
  if (strcmp(s, "TLS1.2") == 0) {
    v = POLICY_TLS1_2;
  } else if (strcmp(s, "TLS1.3") == 0) {
    v = POLICY_TLS1_3;
  } else {
    for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
      if (strcmp(s, refused[i]) == 0) {
        return FAIL(ld, node_pos(value),
                    "%s is too old: TLS versions below 1.2 are refused", s);
      }
    }
    return FAIL(ld, node_pos(value),
                "unknown TLS version '%s' (expected TLS1.2 or TLS1.3)", s);
  }
  *FIELD(base, row, uint16_t) = v;
  return 0;
}

static const struct row protocols_rows[] = {
    {"min", YAML_SCALAR_NODE, h_tls_version,
     offsetof(struct policy_tls, min_version), NOPOS, NULL, "a string", false},
    {"max", YAML_SCALAR_NODE, h_tls_version,
     offsetof(struct policy_tls, max_version), NOPOS, NULL, "a string", false},
};
static const struct table protocols_table = {protocols_rows, 2};

static int h_protocols(struct loader *ld, const struct row *row,
                       yaml_node_t *key, yaml_node_t *value, void *base) {
  struct policy_tls *t = base;
  int rc =
      parse_mapping(ld, value, &protocols_table, base, node_pos(key), NULL);
  if (rc != 0) {
    return rc;
  }
  if (t->min_version > t->max_version) {
    return FAIL(ld, node_pos(key), "protocols: min %s is above max %s",
                policy_version_name(t->min_version),
                policy_version_name(t->max_version));
  }
  return 0;
}

static const struct policy_identity *find_identity(const struct policy *p,
                                                   const char *name) {
  for (size_t i = 0; i < p->identity_count; i++) {
    if (p->identities[i].name != NULL &&
        strcmp(p->identities[i].name, name) == 0) {
      return &p->identities[i];
    }
  }
  return NULL;
}

static const struct policy_trust *find_trust(const struct policy *p,
                                             const char *name) {
  for (size_t i = 0; i < p->trust_count; i++) {
    if (p->trusts[i].name != NULL && strcmp(p->trusts[i].name, name) == 0) {
      return &p->trusts[i];
    }
  }
  return NULL;
}

static int h_identity_ref(struct loader *ld, const struct row *row,
                          yaml_node_t *key, yaml_node_t *value, void *base) {
  struct policy_tls *t = base;
  t->identity = find_identity(ld->p, scalar(value));
  if (t->identity == NULL) {
    return FAIL(ld, node_pos(value),
                "identity '%s' is not defined under 'identities'",
                scalar(value));
  }
  return 0;
}

static int h_trust_ref(struct loader *ld, const struct row *row,
                       yaml_node_t *key, yaml_node_t *value, void *base) {
  struct policy_tls *t = base;
  t->trust = find_trust(ld->p, scalar(value));
  if (t->trust == NULL) {
    return FAIL(ld, node_pos(value), "trust '%s' is not defined under 'trust'",
                scalar(value));
  }
  return 0;
}

static const struct enum_name client_auth_names[] = {
    {"none", POLICY_CLIENT_AUTH_NONE},
    {"optional", POLICY_CLIENT_AUTH_OPTIONAL},
    {"required", POLICY_CLIENT_AUTH_REQUIRED},
    {NULL, 0},
};
static const struct enum_table client_auth_enum = {"client_auth",
                                                   client_auth_names};
static const struct enum_name crl_check_names[] = {
    {"leaf", POLICY_CRL_LEAF},
    {"chain", POLICY_CRL_CHAIN},
    {NULL, 0},
};
static const struct enum_table crl_check_enum = {"crl_check", crl_check_names};
static const struct int_range timeout_range = {1, MAX_TIMEOUT_MS};
static const int nonempty = 1;

#define TLS_POS(field) offsetof(struct policy_tls, field)
static const struct row tls_rows[] = {
    {"protocols", YAML_MAPPING_NODE, h_protocols, NOPOS, TLS_POS(protocols_pos),
     NULL, "a mapping", false},
    {"ciphers", YAML_SEQUENCE_NODE, h_strings, TLS_POS(ciphers),
     TLS_POS(ciphers_pos), &nonempty, "a list", false},
    {"groups", YAML_SEQUENCE_NODE, h_strings, TLS_POS(groups),
     TLS_POS(groups_pos), &nonempty, "a list", false},
    {"handshake_timeout_ms", YAML_SCALAR_NODE, h_int,
     TLS_POS(handshake_timeout_ms), NOPOS, &timeout_range, "an integer", false},
    {"session_resumption", YAML_SCALAR_NODE, h_bool,
     TLS_POS(session_resumption), NOPOS, NULL, "true or false", false},
    {"identity", YAML_SCALAR_NODE, h_identity_ref, NOPOS, TLS_POS(identity_pos),
     NULL, "a string", false},
    {"trust", YAML_SCALAR_NODE, h_trust_ref, NOPOS, TLS_POS(trust_pos), NULL,
     "a string", false},
    {"verify_peer", YAML_SCALAR_NODE, h_bool, TLS_POS(verify_peer),
     TLS_POS(verify_peer_pos), NULL, "true or false", false},
    {"client_auth", YAML_SCALAR_NODE, h_enum, TLS_POS(client_auth),
     TLS_POS(client_auth_pos), &client_auth_enum, "a string", false},
    {"server_name", YAML_SCALAR_NODE, h_string, TLS_POS(server_name),
     TLS_POS(server_name_pos), NULL, "a string", false},
    {"peer_names", YAML_SEQUENCE_NODE, h_strings, TLS_POS(peer_names),
     TLS_POS(peer_names_pos), NULL, "a list", false},
    {"alpn", YAML_SEQUENCE_NODE, h_strings, TLS_POS(alpn), TLS_POS(alpn_pos),
     NULL, "a list", false},
    {"crl_check", YAML_SCALAR_NODE, h_enum, TLS_POS(crl_check),
     TLS_POS(crl_check_pos), &crl_check_enum, "a string", false},
};
static const struct table tls_table = {tls_rows,
                                       sizeof(tls_rows) / sizeof(tls_rows[0])};

/* Checks `crl_check` against the trust of |t|. */
static int check_crl(struct loader *ld, const struct policy_tls *t) {
  if (t->crl_check_pos.line != 0 &&
      (t->trust == NULL || t->trust->crl == NULL)) {
    return FAIL(ld, t->crl_check_pos, "'crl_check' needs a trust with a 'crl'");
  }
  return 0;
}

static int h_defaults(struct loader *ld, const struct row *row,
                      yaml_node_t *key, yaml_node_t *value, void *base) {
  struct policy *p = base;
  p->defaults.pos = node_pos(key);
  int rc =
      parse_mapping(ld, value, &tls_table, &p->defaults, node_pos(key), NULL);
  if (rc != 0) {
    return rc;
  }
  if (p->defaults.trust != NULL) {
    return check_crl(ld, &p->defaults);
  }
  return 0;
}

/* ---- identities and trust ---- */

static size_t map_len(const yaml_node_t *map) {
  return (size_t)(map->data.mapping.pairs.top - map->data.mapping.pairs.start);
}

static const struct row identity_rows[] = {
    {"cert", YAML_SCALAR_NODE, h_file, offsetof(struct policy_identity, cert),
     offsetof(struct policy_identity, cert_pos),
     (const void *)(intptr_t)POLICY_PEM_CERTIFICATE, "a string", true},
    {"key", YAML_SCALAR_NODE, h_file, offsetof(struct policy_identity, key),
     offsetof(struct policy_identity, key_pos),
     (const void *)(intptr_t)POLICY_PEM_PRIVATE_KEY, "a string", true},
    {"ocsp_staple", YAML_SCALAR_NODE, h_file,
     offsetof(struct policy_identity, ocsp_staple),
     offsetof(struct policy_identity, ocsp_pos),
     (const void *)(intptr_t)POLICY_PEM_NONE, "a string", false},
};
static const struct table identity_table = {identity_rows, 3};

static const struct row trust_rows[] = {
    {"ca", YAML_SCALAR_NODE, h_ca, offsetof(struct policy_trust, ca),
     offsetof(struct policy_trust, ca_pos),
     (const void *)(intptr_t)POLICY_PEM_CERTIFICATE, "a string", true},
    {"crl", YAML_SCALAR_NODE, h_file, offsetof(struct policy_trust, crl),
     offsetof(struct policy_trust, crl_pos),
     (const void *)(intptr_t)POLICY_PEM_CRL, "a string", false},
};
static const struct table trust_table = {trust_rows, 2};

/* Named entries (identities, trust): |what| names the section. */
static int parse_named(struct loader *ld, yaml_node_t *value,
                       const struct table *t, void *array, size_t elem_size,
                       size_t *count, size_t name_offset, size_t pos_offset) {
  int rc = check_keys(ld, value);
  if (rc != 0) {
    return rc;
  }
  size_t i = 0;
  for (yaml_node_pair_t *pair = value->data.mapping.pairs.start;
       pair < value->data.mapping.pairs.top; pair++, i++) {
    yaml_node_t *key = node_at(ld, pair->key);
    yaml_node_t *entry = node_at(ld, pair->value);
    char *elem = (char *)array + i * elem_size;
    if (entry == NULL || entry->type != YAML_MAPPING_NODE) {
      return FAIL(ld, entry != NULL ? node_pos(entry) : node_pos(key),
                  "'%s' must be a mapping", key_name(key));
    }
    char *name = strdup(key_name(key));
    if (name == NULL) {
      return fail_nomem(ld);
    }
    *(char **)(elem + name_offset) = name;
    *(struct policy_pos *)(elem + pos_offset) = node_pos(key);
    (*count)++;
    rc = parse_mapping(ld, entry, t, elem, node_pos(key), NULL);
    if (rc != 0) {
      return rc;
    }
  }
  return 0;
}

static int h_identities(struct loader *ld, const struct row *row,
                        yaml_node_t *key, yaml_node_t *value, void *base) {
  struct policy *p = base;
  p->identities = calloc(map_len(value) + 1, sizeof(*p->identities));
  if (p->identities == NULL) {
    return fail_nomem(ld);
  }
  return parse_named(ld, value, &identity_table, p->identities,
                     sizeof(*p->identities), &p->identity_count,
                     offsetof(struct policy_identity, name),
                     offsetof(struct policy_identity, pos));
}

static int h_trusts(struct loader *ld, const struct row *row, yaml_node_t *key,
                    yaml_node_t *value, void *base) {
  struct policy *p = base;
  p->trusts = calloc(map_len(value) + 1, sizeof(*p->trusts));
  if (p->trusts == NULL) {
    return fail_nomem(ld);
  }
  return parse_named(ld, value, &trust_table, p->trusts, sizeof(*p->trusts),
                     &p->trust_count, offsetof(struct policy_trust, name),
                     offsetof(struct policy_trust, pos));
}

/* ---- rules ---- */

static const struct row match_rows[] = {
    {"addresses", YAML_SEQUENCE_NODE, h_addresses, NOPOS, NOPOS, NULL, "a list",
     false},
    {"names", YAML_SEQUENCE_NODE, h_names, NOPOS, NOPOS, NULL, "a list", false},
    {"ports", YAML_SEQUENCE_NODE, h_ports, NOPOS, NOPOS, NULL, "a list", false},
};
static const struct table match_table = {match_rows, 3};

static int h_match(struct loader *ld, const struct row *row, yaml_node_t *key,
                   yaml_node_t *value, void *base) {
  return parse_mapping(ld, value, &match_table, base, node_pos(key), NULL);
}

static int h_rule_tls(struct loader *ld, const struct row *row,
                      yaml_node_t *key, yaml_node_t *value, void *base) {
  struct policy_rule *r = base;
  r->tls.pos = node_pos(key);
  return parse_mapping(ld, value, &tls_table, &r->tls, node_pos(key), NULL);
}

static const struct enum_name direction_names[] = {
    {"outbound", POLICY_OUTBOUND},
    {"inbound", POLICY_INBOUND},
    {NULL, 0},
};
static const struct enum_table direction_enum = {"direction", direction_names};
static const struct enum_name action_names[] = {
    {"tls", POLICY_ACTION_TLS},
    {"permissive", POLICY_ACTION_PERMISSIVE},
    {"plaintext", POLICY_ACTION_PLAINTEXT},
    {"deny", POLICY_ACTION_DENY},
    {NULL, 0},
};
static const struct enum_table action_enum = {"action", action_names};

enum { RULE_NAME, RULE_DIRECTION, RULE_MATCH, RULE_ACTION, RULE_TLS };
static const struct row rule_rows[] = {
    [RULE_NAME] = {"name", YAML_SCALAR_NODE, h_string,
                   offsetof(struct policy_rule, name), NOPOS, NULL, "a string",
                   true},
    [RULE_DIRECTION] = {"direction", YAML_SCALAR_NODE, h_enum,
                        offsetof(struct policy_rule, direction), NOPOS,
                        &direction_enum, "a string", true},
    [RULE_MATCH] = {"match", YAML_MAPPING_NODE, h_match, NOPOS, NOPOS, NULL,
                    "a mapping", false},
    [RULE_ACTION] = {"action", YAML_SCALAR_NODE, h_enum,
                     offsetof(struct policy_rule, action), NOPOS, &action_enum,
                     "a string", true},
    [RULE_TLS] = {"tls", YAML_MAPPING_NODE, h_rule_tls, NOPOS, NOPOS, NULL,
                  "a mapping", false},
};
static const struct table rule_table = {rule_rows, 5};

static bool same_pos(struct policy_pos a, struct policy_pos b) {
  return a.line == b.line && a.col == b.col;
}

/* The checks that need the whole rule: keys that belong to one direction,
 * references that the action needs. */
static int check_rule(struct loader *ld, struct policy_rule *r,
                      const struct policy_pos found[MAX_ROWS]) {
  const struct policy *p = ld->p;
  struct policy_tls *t = &r->tls;
  for (size_t i = 0; i < r->index; i++) {
    if (strcmp(p->rules[i].name, r->name) == 0) {
      return FAIL(ld, found[RULE_NAME],
                  "duplicate rule name '%s' (first at line %d)", r->name,
                  p->rules[i].pos.line);
    }
  }
  bool inbound = r->direction == POLICY_INBOUND;
  bool own_client_auth =
      !same_pos(t->client_auth_pos, p->defaults.client_auth_pos);
  bool own_server_name =
      !same_pos(t->server_name_pos, p->defaults.server_name_pos);
  if (inbound && r->names.count > 0) {
    return FAIL(ld, ld->names_pos, "'names' is only allowed on outbound rules");
  }
  if (!inbound && r->action == POLICY_ACTION_PERMISSIVE) {
    return FAIL(ld, found[RULE_ACTION],
                "action 'permissive' is only allowed on inbound rules");
  }
  if (!inbound && own_client_auth) {
    return FAIL(ld, t->client_auth_pos,
                "'client_auth' is only allowed on inbound rules");
  }
  if (inbound && own_server_name) {
    return FAIL(ld, t->server_name_pos,
                "'server_name' is only allowed on outbound rules");
  }
  /* Direction-specific keys inherited from `defaults` do not apply. */
  if (!inbound) {
    t->client_auth = POLICY_CLIENT_AUTH_NONE;
  } else if (t->server_name != NULL) {
    free(t->server_name);
    t->server_name = NULL;
  }
  if (r->action != POLICY_ACTION_TLS && r->action != POLICY_ACTION_PERMISSIVE) {
    return 0;
  }
  if (inbound && t->identity == NULL) {
    return FAIL(ld, t->pos,
                "inbound rule '%s' needs an identity (tls: identity: NAME)",
                r->name);
  }
  if (inbound && t->client_auth != POLICY_CLIENT_AUTH_NONE &&
      t->trust == NULL) {
    return FAIL(ld, t->client_auth_pos,
                "'client_auth: %s' needs a trust to verify clients (tls: "
                "trust: NAME)",
                t->client_auth == POLICY_CLIENT_AUTH_REQUIRED ? "required"
                                                              : "optional");
  }
  if (inbound && t->peer_names.count > 0 &&
      t->client_auth != POLICY_CLIENT_AUTH_REQUIRED) {
    return FAIL(ld, t->peer_names_pos,
                "'peer_names' on inbound rule '%s' needs 'client_auth: "
                "required' (a client that sends no certificate would pass "
                "the allow-list)",
                r->name);
  }
  if (!inbound && t->verify_peer && t->trust == NULL) {
    return FAIL(ld, t->pos,
                "outbound rule '%s' verifies the peer but has no trust (set "
                "'trust', or 'verify_peer: false')",
                r->name);
  }
  return check_crl(ld, t);
}

static int h_rules(struct loader *ld, const struct row *row, yaml_node_t *key,
                   yaml_node_t *value, void *base) {
  struct policy *p = base;
  size_t n = seq_len(value);
  p->rules = calloc(n + 1, sizeof(*p->rules));
  if (p->rules == NULL) {
    return fail_nomem(ld);
  }
  for (yaml_node_item_t *it = value->data.sequence.items.start;
       it < value->data.sequence.items.top; it++) {
    yaml_node_t *item = node_at(ld, *it);
    if (item == NULL || item->type != YAML_MAPPING_NODE) {
      return FAIL(ld, item != NULL ? node_pos(item) : node_pos(value),
                  "each rule must be a mapping");
    }
    struct policy_rule *r = &p->rules[p->rule_count];
    r->index = p->rule_count;
    p->rule_count++;
    r->pos = node_pos(item);
    if (policy_tls_copy(&r->tls, &p->defaults) != 0) {
      return fail_nomem(ld);
    }
    r->tls.pos = r->pos;
    memset(&ld->names_pos, 0, sizeof(ld->names_pos));
    struct policy_pos found[MAX_ROWS];
    int rc = parse_mapping(ld, item, &rule_table, r, r->pos, found);
    if (rc != 0) {
      return rc;
    }
    rc = check_rule(ld, r, found);
    if (rc != 0) {
      return rc;
    }
  }
  return 0;
}

/* ---- log, debug, top level ---- */

static const struct enum_name level_names[] = {
    {"error", POLICY_LOG_ERROR},
    {"warn", POLICY_LOG_WARN},
    {"info", POLICY_LOG_INFO},
    {"debug", POLICY_LOG_DEBUG},
    {NULL, 0},
};
static const struct enum_table level_enum = {"log level", level_names};
static const struct enum_name format_names[] = {
    {"text", POLICY_LOG_TEXT},
    {"json", POLICY_LOG_JSON},
    {NULL, 0},
};
static const struct enum_table format_enum = {"log format", format_names};

static const struct row log_rows[] = {
    {"level", YAML_SCALAR_NODE, h_enum, offsetof(struct policy_log, level),
     NOPOS, &level_enum, "a string", false},
    {"file", YAML_SCALAR_NODE, h_log_file, NOPOS, NOPOS, NULL, "a string",
     false},
    {"format", YAML_SCALAR_NODE, h_enum, offsetof(struct policy_log, format),
     NOPOS, &format_enum, "a string", false},
};
static const struct table log_table = {log_rows, 3};

static int h_log(struct loader *ld, const struct row *row, yaml_node_t *key,
                 yaml_node_t *value, void *base) {
  struct policy *p = base;
  return parse_mapping(ld, value, &log_table, &p->log, node_pos(key), NULL);
}

static const struct row debug_rows[] = {
    {"allow_keylog", YAML_SCALAR_NODE, h_bool,
     offsetof(struct policy, allow_keylog), NOPOS, NULL, "true or false",
     false},
};
static const struct table debug_table = {debug_rows, 1};

static int h_debug(struct loader *ld, const struct row *row, yaml_node_t *key,
                   yaml_node_t *value, void *base) {
  return parse_mapping(ld, value, &debug_table, base, node_pos(key), NULL);
}

static int h_status_dir(struct loader *ld, const struct row *row,
                        yaml_node_t *key, yaml_node_t *value, void *base) {
  struct policy_status *st = base;
  if (scalar(value)[0] == '\0') {
    return FAIL(ld, node_pos(value), "'dir' must not be empty");
  }
  free(st->dir);
  st->dir = policy_path_join(ld->p->dir, scalar(value));
  return st->dir != NULL ? 0 : fail_nomem(ld);
}

static const struct row status_rows[] = {
    {"dir", YAML_SCALAR_NODE, h_status_dir, NOPOS, NOPOS, NULL, "a string",
     false},
    {"enabled", YAML_SCALAR_NODE, h_bool,
     offsetof(struct policy_status, enabled), NOPOS, NULL, "true or false",
     false},
};
static const struct table status_table = {status_rows, 2};

static int h_status(struct loader *ld, const struct row *row, yaml_node_t *key,
                    yaml_node_t *value, void *base) {
  struct policy *p = base;
  return parse_mapping(ld, value, &status_table, &p->status, node_pos(key),
                       NULL);
}

static const struct enum_name default_action_names[] = {
    {"plaintext", POLICY_ACTION_PLAINTEXT},
    {"deny", POLICY_ACTION_DENY},
    {NULL, 0},
};
static const struct enum_table default_action_enum = {"default_action",
                                                      default_action_names};

/* Table order is processing order: sections are known before the rules
 * that refer to them. */
static const struct row top_rows[] = {
    {"version", YAML_SCALAR_NODE, h_version, offsetof(struct policy, version),
     NOPOS, NULL, "an integer", true},
    {"default_action", YAML_SCALAR_NODE, h_enum,
     offsetof(struct policy, default_action), NOPOS, &default_action_enum,
     "a string", false},
    {"identities", YAML_MAPPING_NODE, h_identities, NOPOS, NOPOS, NULL,
     "a mapping", false},
    {"trust", YAML_MAPPING_NODE, h_trusts, NOPOS, NOPOS, NULL, "a mapping",
     false},
    {"defaults", YAML_MAPPING_NODE, h_defaults, NOPOS, NOPOS, NULL, "a mapping",
     false},
    {"rules", YAML_SEQUENCE_NODE, h_rules, NOPOS, NOPOS, NULL, "a list", false},
    {"log", YAML_MAPPING_NODE, h_log, NOPOS, NOPOS, NULL, "a mapping", false},
    {"debug", YAML_MAPPING_NODE, h_debug, NOPOS, NOPOS, NULL, "a mapping",
     false},
    {"status", YAML_MAPPING_NODE, h_status, NOPOS, NOPOS, NULL, "a mapping",
     false},
};
static const struct table top_table = {top_rows, 9};

/* ---- entry points ---- */

static const char *const builtin_ciphers[] = {
    "ECDHE-ECDSA-AES128-GCM-SHA256",
    "ECDHE-RSA-AES128-GCM-SHA256",
    "ECDHE-ECDSA-CHACHA20-POLY1305",
};
static const char *const builtin_groups[] = {"X25519", "P-256", "P-384"};

static int set_builtin_defaults(struct policy *p) {
  struct policy_tls *t = &p->defaults;
  struct policy_pos none = {0, 0};
  p->default_action = POLICY_ACTION_PLAINTEXT;
  p->log.level = POLICY_LOG_WARN;
  p->log.format = POLICY_LOG_TEXT;
  p->status.enabled = true;
  t->min_version = POLICY_TLS1_2;
  t->max_version = POLICY_TLS1_3;
  for (size_t i = 0; i < 3; i++) {
    if (policy_strings_push(&t->ciphers, builtin_ciphers[i], none) != 0 ||
        policy_strings_push(&t->groups, builtin_groups[i], none) != 0) {
      return -ENOMEM;
    }
  }
  t->handshake_timeout_ms = 10000;
  t->session_resumption = true;
  t->verify_peer = true;
  t->client_auth = POLICY_CLIENT_AUTH_NONE;
  t->crl_check = POLICY_CRL_LEAF;
  return 0;
}

static int syntax_error(struct loader *ld, const yaml_parser_t *parser) {
  const char *problem = parser->problem != NULL ? parser->problem : "error";
  if (parser->error == YAML_MEMORY_ERROR) {
    return fail_nomem(ld);
  }
  int line, col;
  if (parser->error == YAML_READER_ERROR) {
    /* Reader errors carry a byte offset, not a mark. */
    line = 1;
    col = 1;
    size_t off = parser->problem_offset;
    for (size_t i = 0; i < off && i < ld->text_len; i++) {
      if (ld->text[i] == '\n') {
        line++;
        col = 1;
      } else {
        col++;
      }
    }
    return fail_at(ld, line, col, "YAML syntax error: %s", problem);
  }
  line = (int)parser->problem_mark.line + 1;
  col = (int)parser->problem_mark.column + 1;
  if (parser->context != NULL) {
    return fail_at(ld, line, col, "YAML syntax error: %s (%s)", problem,
                   parser->context);
  }
  return fail_at(ld, line, col, "YAML syntax error: %s", problem);
}

static int load_document(struct loader *ld) {
  yaml_parser_t parser;
  if (!yaml_parser_initialize(&parser)) {
    return fail_nomem(ld);
  }
  yaml_parser_set_input_string(&parser, (const unsigned char *)ld->text,
                               ld->text_len);
  int rc = 0;
  if (!yaml_parser_load(&parser, &ld->doc)) {
    rc = syntax_error(ld, &parser);
    memset(&ld->doc, 0, sizeof(ld->doc));
    goto out_parser;
  }
  yaml_node_t *root = yaml_document_get_root_node(&ld->doc);
  if (root == NULL || is_null(root)) {
    rc = fail_at(ld, 1, 1, "the policy file is empty");
    goto out_parser;
  }
  if (root->type != YAML_MAPPING_NODE) {
    rc = FAIL(ld, node_pos(root), "the top level must be a mapping");
    goto out_parser;
  }
  /* A second document would be silently ignored: refuse it. */
  yaml_document_t next;
  if (!yaml_parser_load(&parser, &next)) {
    rc = syntax_error(ld, &parser);
    goto out_parser;
  }
  yaml_node_t *next_root = yaml_document_get_root_node(&next);
  if (next_root != NULL) {
    rc = FAIL(ld, node_pos(next_root),
              "only one YAML document is allowed in a policy file");
  }
  yaml_document_delete(&next);
  if (rc != 0) {
    goto out_parser;
  }
  struct policy_pos top = node_pos(root);
  rc = parse_mapping(ld, root, &top_table, ld->p, top, NULL);
out_parser:
  yaml_parser_delete(&parser);
  return rc;
}

int policy_load_buffer(struct policy **out, const char *path, const char *text,
                       size_t text_len, struct policy_diag *err,
                       struct policy_diags *warnings) {
  *out = NULL;
  struct policy_diag scratch;
  struct loader ld;
  memset(&ld, 0, sizeof(ld));
  ld.err = err != NULL ? err : &scratch;
  ld.warnings = warnings;
  ld.text = text != NULL ? text : "";
  ld.text_len = text != NULL ? text_len : 0;
  ld.p = calloc(1, sizeof(*ld.p));
  if (ld.p == NULL) {
    policy_diag_set(ld.err, path, 0, 0, "out of memory");
    return -ENOMEM;
  }
  ld.p->path = policy_absolute_path(path != NULL ? path : "policy.yaml");
  if (ld.p->path == NULL) {
    policy_free(ld.p);
    policy_diag_set(ld.err, path, 0, 0, "cannot make the policy path absolute");
    return -ENOMEM;
  }
  ld.p->dir = policy_dir_of(ld.p->path);
  if (ld.p->dir == NULL || set_builtin_defaults(ld.p) != 0) {
    int rc = fail_nomem(&ld);
    policy_free(ld.p);
    return rc;
  }
  int rc;
  if (ld.text_len > MAX_POLICY_SIZE) {
    rc = fail_at(&ld, 0, 0, "the policy file is larger than %d bytes",
                 MAX_POLICY_SIZE);
  } else {
    rc = load_document(&ld);
  }
  yaml_document_delete(&ld.doc);
  if (rc != 0) {
    policy_free(ld.p);
    return rc;
  }
  *out = ld.p;
  return 0;
}

/* warn_policy_writable adds the warning that the policy file of |p| can be
 * written by users other than its owner. */
static int warn_policy_writable(struct policy *p, unsigned mode,
                                struct policy_diag *err,
                                struct policy_diags *warnings) {
  struct loader ld;
  memset(&ld, 0, sizeof(ld));
  ld.p = p;
  ld.err = err;
  ld.warnings = warnings;
  if (warn_at(&ld, (struct policy_pos){0, 0},
              "the policy file is writable by other users (mode %04o)",
              mode) != 0) {
    return fail_nomem(&ld);
  }
  return 0;
}

int policy_load(struct policy **out, const char *path, struct policy_diag *err,
                struct policy_diags *warnings) {
  *out = NULL;
  char *abs = policy_absolute_path(path);
  const char *shown = abs != NULL ? abs : path;
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  char buf[128];
  if (fd < 0) {
    int e = errno;
    policy_diag_set(err, shown, 0, 0, "cannot open: %s",
                    errno_text(e, buf, sizeof(buf)));
    free(abs);
    return -e;
  }
  char *text = NULL;
  size_t len = 0, cap = 0;
  int rc = 0;
  struct stat st;
  unsigned mode = fstat(fd, &st) == 0 ? (unsigned)(st.st_mode & 07777) : 0;
  for (;;) {
    if (len == cap) {
      if (cap > MAX_POLICY_SIZE) {
        policy_diag_set(err, shown, 0, 0,
                        "the policy file is larger than %d bytes",
                        MAX_POLICY_SIZE);
        rc = -EFBIG;
        break;
      }
      cap = cap == 0 ? 8192 : cap * 2;
      char *grown = realloc(text, cap);
      if (grown == NULL) {
        policy_diag_set(err, shown, 0, 0, "out of memory");
        rc = -ENOMEM;
        break;
      }
      text = grown;
    }
    ssize_t n = read(fd, text + len, cap - len);
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      rc = -errno;
      policy_diag_set(err, shown, 0, 0, "cannot read: %s",
                      errno_text(-rc, buf, sizeof(buf)));
      break;
    }
    if (n == 0) {
      break;
    }
    len += (size_t)n;
  }
  close(fd);
  if (rc == 0) {
    rc = policy_load_buffer(out, path, text != NULL ? text : "", len, err,
                            warnings);
  }
  if (rc == 0 && (mode & 022) != 0) {
    rc = warn_policy_writable(*out, mode, err, warnings);
    if (rc != 0) {
      policy_free(*out);
      *out = NULL;
    }
  }
  free(text);
  free(abs);
  return rc;
}

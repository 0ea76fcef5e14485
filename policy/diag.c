/* diag.c: diagnostics about the policy file (file, line, column, message). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "policy/policy.h"

void policy_diag_set(struct policy_diag *d, const char *file, int line, int col,
                     const char *fmt, ...) {
  if (d == NULL) {
    return;
  }
  memset(d, 0, sizeof(*d));
  snprintf(d->file, sizeof(d->file), "%s", file != NULL ? file : "");
  d->line = line;
  d->col = col;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(d->message, sizeof(d->message), fmt, ap);
  va_end(ap);
}

const char *policy_diag_format(const struct policy_diag *d, char *buf,
                               size_t buf_len) {
  if (buf_len == 0) {
    return buf;
  }
  if (d->line > 0) {
    snprintf(buf, buf_len, "policy %s: line %d col %d: %s", d->file, d->line,
             d->col, d->message);
  } else {
    snprintf(buf, buf_len, "policy %s: %s", d->file, d->message);
  }
  return buf;
}

void policy_diags_cleanup(struct policy_diags *d) {
  if (d == NULL) {
    return;
  }
  free(d->items);
  d->items = NULL;
  d->count = 0;
}

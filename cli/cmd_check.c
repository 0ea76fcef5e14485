/* cmd_check.c: `tlsshim check POLICY`: complete validation of a policy. */
#include "cli/cli.h"

#include <string.h>

/* Appends ", N WORD" (or "N WORD" first) to |buf| when |n| > 0. */
static void add_count(char *buf, size_t buf_len, size_t n, const char *word) {
  if (n == 0) {
    return;
  }
  size_t used = strlen(buf);
  snprintf(buf + used, buf_len - used, "%s%zu %s", used > 0 ? ", " : "", n,
           word);
}

int cli_check(int argc, char **argv) {
  if (argc < 2) {
    return cli_usage_error("check: missing POLICY");
  }
  if (argc > 2) {
    return cli_usage_error("check: unexpected argument '%s'", argv[2]);
  }
  struct tls_config *cfg = NULL;
  if (cli_load_config(argv[1], true, &cfg) < 0) {
    return CLI_EXIT_FAIL;
  }
  const struct policy *p = tls_config_policy(cfg);
  size_t by_action[4] = {0};
  size_t outbound = 0;
  for (size_t i = 0; i < p->rule_count; i++) {
    by_action[p->rules[i].action]++;
    if (p->rules[i].direction == POLICY_OUTBOUND) {
      outbound++;
    }
  }
  char detail[200] = "";
  add_count(detail, sizeof(detail), outbound, "outbound");
  add_count(detail, sizeof(detail), p->rule_count - outbound, "inbound");
  size_t mark = strlen(detail);
  static const enum policy_action order[] = {
      POLICY_ACTION_TLS, POLICY_ACTION_PERMISSIVE, POLICY_ACTION_PLAINTEXT,
      POLICY_ACTION_DENY};
  for (size_t i = 0; i < sizeof(order) / sizeof(order[0]); i++) {
    add_count(detail, sizeof(detail), by_action[order[i]],
              policy_action_name(order[i]));
    if (mark > 0 && detail[mark] == ',') {
      detail[mark] = ';'; /* directions; actions */
    }
  }
  printf("policy OK: %zu rule%s%s%s%s, %zu %s, %zu trust%s, default_action "
         "%s\n",
         p->rule_count, p->rule_count == 1 ? "" : "s", detail[0] ? " (" : "",
         detail, detail[0] ? ")" : "", p->identity_count,
         p->identity_count == 1 ? "identity" : "identities", p->trust_count,
         p->trust_count == 1 ? "" : "s", policy_action_name(p->default_action));
  tls_config_unref(cfg);
  return CLI_EXIT_OK;
}

/* cmd_pki.c: `tlsshim pki init DIR [--names a,b] [--ip x,y]`: a demo PKI. */
#include "cli/cli.h"

#include <stdlib.h>
#include <string.h>

/* A comma-separated list split in place. */
struct list {
  const char **items;
  size_t count;
};

/* Splits |text| (modified) at commas into |out|. Returns 0, or -1 when an
 * item is empty or memory runs out. */
static int split_list(char *text, struct list *out) {
  size_t n = 1;
  for (const char *s = text; *s != '\0'; s++) {
    n += *s == ',';
  }
  const char **items = realloc(out->items, (out->count + n) * sizeof(*items));
  if (items == NULL) {
    return -1;
  }
  out->items = items;
  char *save = NULL;
  size_t got = 0;
  for (char *tok = strtok_r(text, ",", &save); tok != NULL;
       tok = strtok_r(NULL, ",", &save)) {
    out->items[out->count++] = tok;
    got++;
  }
  return got == n ? 0 : -1;
}

/* Takes the value of option |name| from "--name VALUE" or "--name=VALUE" at
 * argv[*i]. Returns the value or NULL if argv[*i] is not that option. */
static char *option_value(int argc, char **argv, int *i, const char *name,
                          bool *missing) {
  size_t len = strlen(name);
  if (strncmp(argv[*i], name, len) != 0) {
    return NULL;
  }
  if (argv[*i][len] == '=') {
    return argv[*i] + len + 1;
  }
  if (argv[*i][len] != '\0') {
    return NULL;
  }
  if (*i + 1 >= argc) {
    *missing = true;
    return NULL;
  }
  (*i)++;
  return argv[*i];
}

int cli_pki(int argc, char **argv) {
  if (argc < 2) {
    return cli_usage_error("pki: missing subcommand (init)");
  }
  if (strcmp(argv[1], "init") != 0) {
    return cli_usage_error("pki: unknown subcommand '%s'", argv[1]);
  }
  const char *dir = NULL;
  struct list names = {0}, ips = {0};
  int rc = CLI_EXIT_USAGE;
  for (int i = 2; i < argc; i++) {
    bool missing = false;
    char *v;
    if ((v = option_value(argc, argv, &i, "--names", &missing)) != NULL ||
        (v = option_value(argc, argv, &i, "--name", &missing)) != NULL) {
      char shown[256];
      snprintf(shown, sizeof(shown), "%s", v);
      if (split_list(v, &names) < 0) {
        rc = cli_usage_error("pki init: bad --names list '%s'", shown);
        goto out;
      }
    } else if ((v = option_value(argc, argv, &i, "--ip", &missing)) != NULL ||
               (v = option_value(argc, argv, &i, "--ips", &missing)) != NULL) {
      char shown[256];
      snprintf(shown, sizeof(shown), "%s", v);
      if (split_list(v, &ips) < 0) {
        rc = cli_usage_error("pki init: bad --ip list '%s'", shown);
        goto out;
      }
    } else if (missing) {
      rc = cli_usage_error("pki init: %s needs a value", argv[i]);
      goto out;
    } else if (argv[i][0] == '-' && argv[i][1] != '\0') {
      rc = cli_usage_error("pki init: unknown option '%s'", argv[i]);
      goto out;
    } else if (dir == NULL) {
      dir = argv[i];
    } else {
      rc = cli_usage_error("pki init: unexpected argument '%s'", argv[i]);
      goto out;
    }
  }
  if (dir == NULL) {
    rc = cli_usage_error("pki init: missing DIR");
    goto out;
  }
  char err[512] = "";
  if (tls_pki_init(dir, names.count > 0 ? names.items : NULL, names.count,
                   ips.count > 0 ? ips.items : NULL, ips.count, err,
                   sizeof(err)) < 0) {
    cli_error("pki init: %s", err[0] ? err : "failed");
    rc = CLI_EXIT_FAIL;
    goto out;
  }
  static const char *const files[][2] = {
      {"ca.pem", "demo CA certificate (trust it as `ca:`)"},
      {"ca.key", "demo CA private key (keep it, or delete it)"},
      {"server.pem", "server certificate"},
      {"server.key", "server private key"},
      {"client.pem", "client certificate (spiffe://tlsshim.demo/client)"},
      {"client.key", "client private key"},
  };
  size_t dlen = strlen(dir);
  const char *sep = dlen > 0 && dir[dlen - 1] == '/' ? "" : "/";
  for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
    printf("wrote %s%s%s  %s\n", dir, sep, files[i][0], files[i][1]);
  }
  rc = CLI_EXIT_OK;
out:
  free(names.items);
  free(ips.items);
  return rc;
}

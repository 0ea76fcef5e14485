/* main.c: the tlsshim command line: usage text and dispatch to commands. */
#include "cli/cli.h"

#include <string.h>

void cli_usage(FILE *f) {
  fputs("usage: tlsshim COMMAND [ARGS...]\n"
        "\n"
        "commands:\n"
        "  run [-p POLICY] [--log LEVEL] [--allow-uninterceptable] -- CMD "
        "[ARGS...]\n"
        "      validate POLICY and run CMD with the shim preloaded\n"
        "  check POLICY\n"
        "      validate POLICY completely (files, keys, names, expiry)\n"
        "  explain [-p POLICY] outbound HOST:PORT\n"
        "  explain [-p POLICY] inbound [ADDR:]PORT\n"
        "      show the rule that matches a connection and its TLS settings\n"
        "  pki init DIR [--names NAME,...] [--ip ADDR,...]\n"
        "      write a demo CA and server/client certificates into DIR\n"
        "  status [PID...] [--json] [--dir DIR]\n"
        "      the live TLS connections of programs under the shim, and "
        "their counters\n"
        "  metrics [--listen ADDR:PORT] [--dir DIR]\n"
        "      the counters in Prometheus text format (served at /metrics "
        "with --listen)\n"
        "  version\n"
        "      show the version of tlsshim and BoringSSL\n"
        "\n"
        "POLICY defaults to $TLSSHIM_POLICY, else " CLI_DEFAULT_POLICY ".\n"
        "LEVEL is error, warn, info or debug.\n"
        "DIR defaults to $TLSSHIM_STATUS_DIR, else the shim's status "
        "directory\n"
        "($XDG_RUNTIME_DIR/tlsshim, else /run/tlsshim, else "
        "/tmp/tlsshim-UID).\n",
        f);
}

struct command {
  const char *name;
  int (*run)(int argc, char **argv);
};

static const struct command commands[] = {
    {"run", cli_run}, {"check", cli_check},     {"explain", cli_explain},
    {"pki", cli_pki}, {"version", cli_version}, {"status", cli_status},
    {"metrics", cli_metrics},
};

int main(int argc, char **argv) {
  if (argc < 2) {
    return cli_usage_error("no command given");
  }
  const char *name = argv[1];
  if (strcmp(name, "-h") == 0 || strcmp(name, "--help") == 0 ||
      strcmp(name, "help") == 0) {
    cli_usage(stdout);
    return CLI_EXIT_OK;
  }
  if (strcmp(name, "--version") == 0) {
    return cli_version(1, argv + 1);
  }
  for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
    if (strcmp(name, commands[i].name) == 0) {
      if (argc > 2 &&
          (strcmp(argv[2], "-h") == 0 || strcmp(argv[2], "--help") == 0)) {
        cli_usage(stdout);
        return CLI_EXIT_OK;
      }
      return commands[i].run(argc - 1, argv + 1);
    }
  }
  return cli_usage_error("unknown command '%s'", name);
}
